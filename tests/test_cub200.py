"""The notes' ResNet-50 / CUB-200 recipe (seed 003): `tinydl train --dataset cub200` on a folder
in CUB_200_2011's own layout, pretrained weights with a new head, a lower backbone learning
rate through param groups, resize + random crop + flip, and 10-crop testing."""
import argparse
import json

import numpy as np
import pytest

import models
import tinydl as td
import tinydl.nn as nn
import tinydl.data.transforms as T
from tinydl import cli, optim
from tinydl.data import CUB200, DataLoader
from tinydl.train import evaluate_loader

cv2 = pytest.importorskip("cv2")


def write_cub(parent, n_classes=3, train=4, test=2, size=(24, 20), seed=0):
    """A tiny CUB_200_2011 folder: one colour per class plus noise, ``train`` + ``test``
    images per class, the five files of the real archive's layout. Returns the folder."""
    root = parent / "CUB_200_2011"
    rng = np.random.default_rng(seed)
    tables = {"images.txt": [], "image_class_labels.txt": [], "train_test_split.txt": [], "classes.txt": []}
    k = 0
    for c in range(1, n_classes + 1):
        name = f"{c:03d}.Bird_{c}"
        tables["classes.txt"].append(f"{c} {name}")
        (root / "images" / name).mkdir(parents=True)
        for i in range(train + test):
            k += 1
            img = np.full(size + (3,), 40, np.uint8)
            img[..., (c - 1) % 3] = 200
            img = np.clip(img + rng.integers(0, 30, img.shape), 0, 255).astype(np.uint8)
            rel = f"{name}/Bird_{c}_{i:04d}.png"
            cv2.imwrite(str(root / "images" / rel), img)
            tables["images.txt"].append(f"{k} {rel}")
            tables["image_class_labels.txt"].append(f"{k} {c}")
            tables["train_test_split.txt"].append(f"{k} {int(i < train)}")
    for name, rows in tables.items():
        (root / name).write_text("\n".join(rows) + "\n")
    return root


def _run(capsys, *argv):
    code = cli.main(["train", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def _args(**kw):
    base = dict(model="resnet50", image_size=None, resize=None, ten_crop=False)
    return argparse.Namespace(**{**base, **kw})


# ================================================================ the recipe's transforms
def test_recipe_sizes_default_to_512_then_448():
    assert cli.cub_sizes(_args()) == (512, 448)
    assert cli.cub_sizes(_args(image_size=224)) == (256, 224)          # the same 8/7 ratio
    assert cli.cub_sizes(_args(model="alexnet")) == (259, 227)          # a net's own input size
    assert cli.cub_sizes(_args(image_size=16, resize=20)) == (20, 16)
    with pytest.raises(cli.UsageError, match="--resize 10 is smaller than the crop"):
        cli.cub_sizes(_args(image_size=16, resize=10))


def test_recipe_transforms_crop_flip_normalise_and_ten_crop():
    train_tf, test_tf, about = cli.cub_transforms(_args(image_size=8, resize=10, ten_crop=True))
    assert "resized to 10x10, random 8x8 crops" in about and "10 crops averaged" in about
    img = np.random.default_rng(0).integers(0, 256, (13, 17, 3), dtype=np.uint8)
    x = train_tf(img, rng=np.random.default_rng(1))
    assert x.shape == (3, 8, 8) and x.dtype == np.float32
    crops = test_tf(img)
    assert crops.shape == (10, 3, 8, 8)
    # ImageNet's mean/std on [0, 1] pixels of the resized image's corner crop
    resized = T.resize(img, (10, 10))
    expected = (resized[:8, :8].astype(np.float32) / 255 - np.float32(T.IMAGENET_MEAN)) / np.float32(T.IMAGENET_STD)
    np.testing.assert_allclose(crops.numpy()[0], expected.transpose(2, 0, 1), rtol=1e-6)
    # crop 5 is the mirror's top-left: the original's top-right, flipped
    np.testing.assert_allclose(crops.numpy()[5], crops.numpy()[1][:, :, ::-1], rtol=1e-6)
    # the random crop lies inside the resized image and flips or not
    seen = {train_tf(img, rng=np.random.default_rng(s)).numpy().tobytes() for s in range(30)}
    assert len(seen) > 4
    centre = cli.cub_transforms(_args(image_size=8, resize=10))[1](img)
    assert centre.shape == (3, 8, 8)


# ================================================================ 10-crop testing
class _Crops:
    """Ten-crop stacks of random uint8 images, as CUB200 + the test transform give them."""

    def __init__(self, n=6, seed=0):
        rng = np.random.default_rng(seed)
        self.images = rng.integers(0, 256, (n, 10, 10, 3), dtype=np.uint8)
        self.labels = rng.integers(0, 4, n)
        self.ten = T.TenCrop(6)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.ten(self.images[i]), int(self.labels[i])


def test_ten_crop_evaluation_averages_the_logits_of_the_ten_crops():
    torch = pytest.importorskip("torch")
    td.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 6 * 6, 4))
    data = _Crops()
    result = evaluate_loader(model, DataLoader(data, batch_size=4), topk=2)
    # PyTorch as the oracle: each crop's logits, their mean per image, cross-entropy of the mean
    w, b = (torch.tensor(p.detach().numpy()) for p in model[1].parameters())
    crops = torch.tensor(np.stack([data[i][0] for i in range(len(data))]), dtype=torch.float32) / 255
    logits = torch.nn.functional.linear(crops.permute(0, 1, 4, 2, 3).reshape(6, 10, -1), w, b).mean(dim=1)
    labels = torch.tensor(data.labels)
    assert result["loss"] == pytest.approx(torch.nn.functional.cross_entropy(logits, labels).item(), rel=1e-5)
    assert result["acc"] == pytest.approx((logits.argmax(1) == labels).double().mean().item())
    top2 = (logits.topk(2, dim=1).indices == labels[:, None]).any(1).double().mean().item()
    assert result["top2"] == pytest.approx(top2)


# ================================================================ fine-tuning pieces
def test_pretrained_weights_load_with_a_new_head(tmp_path):
    td.manual_seed(0)
    source = models.create("resnet18", num_classes=1000)
    td.save(source.state_dict(), tmp_path / "r18.npz")
    model = models.create("resnet18", num_classes=3)
    about = cli.load_pretrained(model, "resnet18", tmp_path / "r18.npz")
    assert "new head fc" in about and "(1000, 512) -> (3, 512)" in about
    src = source.state_dict()
    for name, value in model.state_dict().items():
        if name.startswith("fc."):
            assert value.shape[0] == 3
        else:
            np.testing.assert_array_equal(value.numpy(), src[name].numpy(), err_msg=name)
    same = models.create("resnet18", num_classes=1000)
    assert cli.load_pretrained(same, "resnet18", tmp_path / "r18.npz").startswith("loaded all")
    np.testing.assert_array_equal(same.fc.weight.detach().numpy(), source.fc.weight.detach().numpy())
    with pytest.raises(cli.UsageError, match="do not fit resnet34"):
        cli.load_pretrained(models.create("resnet34", num_classes=3), "resnet34", tmp_path / "r18.npz")


def test_backbone_lr_param_groups_step_each_part_at_its_rate():
    td.manual_seed(0)
    model = models.create("resnet20", num_classes=5)
    groups = cli.param_groups(model, "resnet20", backbone_lr=0.01)
    assert [id(p) for p in groups[0]["params"]] == [id(model.fc.weight), id(model.fc.bias)]
    assert len(groups[1]["params"]) == len(list(model.parameters())) - 2 and groups[1]["lr"] == 0.01
    opt = optim.SGD(groups, lr=0.1)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.01]
    before = [p.detach().numpy().copy() for p in model.parameters()]
    loss = nn.functional.cross_entropy(model(td.randn(4, 3, 8, 8)), td.tensor([0, 1, 2, 3]))
    opt.zero_grad()
    loss.backward()
    opt.step()
    head = {id(model.fc.weight), id(model.fc.bias)}
    for p, old in zip(model.parameters(), before):
        lr = 0.1 if id(p) in head else 0.01
        np.testing.assert_allclose(p.detach().numpy(), old - lr * p.grad.numpy(), rtol=1e-5, atol=1e-7)
    assert cli.param_groups(model, "resnet20", None) == list(model.parameters())
    with pytest.raises(cli.UsageError, match="no Linear classifier head"):
        cli.param_groups(nn.Sequential(nn.Conv2d(3, 4, 1)), "convnet", 0.01)


# ================================================================ the command
def test_cli_fine_tunes_a_resnet_on_a_cub_folder_and_resumes_without_the_weights(tmp_path, capsys):
    write_cub(tmp_path / "data")
    td.manual_seed(1)     # ResNet-20 stands in for ResNet-50: the same code path, 100x fewer weights
    td.save(models.create("resnet20", num_classes=10).state_dict(), tmp_path / "pretrained.npz")
    out = tmp_path / "run"
    flags = ["resnet20", "--dataset", "cub200", "--data-dir", str(tmp_path / "data"), "--image-size", "16",
             "--resize", "20", "--batch-size", "4", "--lr", "0.01", "--backbone-lr", "0.001", "--ten-crop",
             "--weights", str(tmp_path / "pretrained.npz"), "--out", str(out), "--no-progress"]
    code, text, err = _run(capsys, *flags, "--epochs", "1")
    assert code == 0, err
    assert "new head fc" in text and "12 train / 6 test images, fed as 3x16x16" in text
    assert "resized to 20x20, random 16x16 crops and flips; tested on 10 crops averaged" in text
    assert "lr 0.01 (head), 0.001 (backbone)" in text
    state = td.load(out / "checkpoint.npz")
    assert [g["lr"] for g in state["optimizer"]["param_groups"]] == [0.01, 0.001]
    (tmp_path / "pretrained.npz").unlink()           # a resumed run reads every weight from its checkpoint
    code, text, err = _run(capsys, *flags, "--epochs", "2", "--resume")
    assert code == 0, err
    log = json.loads((out / "log.json").read_text())
    rows = log["history"]
    assert [r["epoch"] for r in rows] == [1, 2] and all(np.isfinite(r["test_loss"]) for r in rows)
    assert log["config"]["ten_crop"] is True and log["config"]["backbone_lr"] == 0.001


@pytest.mark.gpu
def test_cli_fine_tunes_with_ten_crops_on_cuda(tmp_path, capsys):
    write_cub(tmp_path / "data")
    td.save(models.create("resnet20", num_classes=10).state_dict(), tmp_path / "pretrained.npz")
    code, text, err = _run(capsys, "resnet20", "--dataset", "cub200", "--data-dir", str(tmp_path / "data"),
                           "--image-size", "16", "--resize", "20", "--batch-size", "4", "--backbone-lr", "0.001",
                           "--ten-crop", "--weights", str(tmp_path / "pretrained.npz"), "--epochs", "2",
                           "--device", "cuda", "--out", str(tmp_path / "run"), "--no-progress")
    assert code == 0, err
    rows = json.loads((tmp_path / "run" / "log.json").read_text())["history"]
    assert len(rows) == 2 and all(np.isfinite(r["test_loss"]) for r in rows)


def _break(root, how):
    if how == "no images.txt":
        (root / "images.txt").unlink()
    elif how == "an image missing":
        (root / "images" / "001.Bird_1" / "Bird_1_0000.png").unlink()
    elif how == "a line without a value":
        (root / "classes.txt").write_text("1 001.Bird_1\n2\n3 003.Bird_3\n")
    elif how == "an id not in the split":
        lines = (root / "train_test_split.txt").read_text().splitlines()
        (root / "train_test_split.txt").write_text("\n".join(lines[1:]) + "\n")
    elif how == "a class out of range":
        (root / "image_class_labels.txt").write_text(
            (root / "image_class_labels.txt").read_text().replace("1 1\n", "1 9\n", 1))
    elif how == "not a number":
        (root / "classes.txt").write_text("one 001.Bird_1\n2 002.Bird_2\n3 003.Bird_3\n")
    elif how == "a split of 2":
        (root / "train_test_split.txt").write_text(
            (root / "train_test_split.txt").read_text().replace("2 1\n", "2 2\n", 1))
    elif how.startswith("boxes"):      # bounding_boxes.txt: one row per image id, 'id x y w h'
        n = len((root / "images.txt").read_text().splitlines())
        rows = [f"{k} 1 2 3 4" for k in range(1, n + 1)]
        if how == "boxes: an id missing":
            del rows[4]
        elif how == "boxes: a row of 3 numbers":
            rows[2] = "3 1 2 3"
        elif how == "boxes: not a number":
            rows[1] = "2 1 two 3 4"
        (root / "bounding_boxes.txt").write_text("\n".join(rows) + "\n")
    elif how == "a 0-byte image":
        (root / "images" / "001.Bird_1" / "Bird_1_0001.png").write_bytes(b"")
    elif how == "an undecodable image":
        (root / "images" / "001.Bird_1" / "Bird_1_0001.png").write_bytes(b"not an image at all")
    elif how in ("no training images", "no test images"):
        keep = "0" if how == "no training images" else "1"
        ids = [line.split()[0] for line in (root / "images.txt").read_text().splitlines()]
        (root / "train_test_split.txt").write_text("".join(f"{k} {keep}\n" for k in ids))


@pytest.mark.parametrize("how, message", [
    ("no images.txt", "images.txt not found"),
    ("an image missing", "1 of the 6 training images listed in images.txt are not under"),
    ("a line without a value", "classes.txt line 2 is '2'"),
    ("an id not in the split", "1 image id(s) of images.txt are not in"),
    ("a class out of range", "image 1 has class 9 in image_class_labels.txt; classes.txt lists 3"),
    ("not a number", "has 'one' where a number belongs"),
    ("a split of 2", "train_test_split.txt line 2: split '2'; expected 1 (train) or 0 (test)"),
    ("boxes: an id missing", "1 image id(s) of images.txt have no box in"),
    ("boxes: a row of 3 numbers", "bounding_boxes.txt line 3: '1 2 3'; expected x y width height"),
    ("boxes: not a number", "bounding_boxes.txt line 2: '1 two 3 4' is not four numbers"),
    ("a 0-byte image", "Bird_1_0001.png is empty (0 bytes)"),
    ("an undecodable image", "cannot decode"),
    ("no training images", "the train split has no images"),
    ("no test images", "the test split has no images"),
])
def test_cub_layout_mistakes_are_one_line_errors(tmp_path, capsys, how, message):
    root = write_cub(tmp_path, train=2, test=1)
    _break(root, how)
    code, _, err = _run(capsys, "resnet20", "--dataset", "cub200", "--data-dir", str(tmp_path),
                        "--image-size", "8", "--out", str(tmp_path / "run"))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert message in err, err


@pytest.mark.parametrize("flags, message", [
    (["--dataset", "cub200"], "--dataset cub200 needs --data-dir"),
    (["--ten-crop"], "--ten-crop applies to --dataset cub200"),
    (["--resize", "40"], "--resize applies to --dataset cub200"),
    (["--backbone-lr", "-1"], "--backbone-lr must be >= 0"),
    (["--dataset", "cub200", "DATA", "--weights", "nowhere.npz"], "weights: no file at nowhere.npz"),
    (["--dataset", "cub200", "DATA", "--weights", "R18"], "do not fit resnet20"),
    (["--dataset", "cub200", "DATA", "--weights", "TEXT"], "is not an .npz file"),
])
def test_fine_tuning_flag_mistakes_are_one_line_errors(tmp_path, capsys, flags, message):
    write_cub(tmp_path / "data", train=2, test=1)
    names = {"DATA": ["--data-dir", str(tmp_path / "data")], "R18": [str(tmp_path / "r18.npz")],
             "TEXT": [str(tmp_path / "notes.txt")]}
    if "R18" in flags:
        td.save(models.create("resnet18", num_classes=3).state_dict(), tmp_path / "r18.npz")
    (tmp_path / "notes.txt").write_text("not weights")
    argv = [a for f in flags for a in names.get(f, [f])]
    code, _, err = _run(capsys, "resnet20", "--image-size", "8", "--out", str(tmp_path / "run"), *argv)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert message in err, err


def test_cub200_reads_the_official_layout(tmp_path):
    root = write_cub(tmp_path, n_classes=2, train=3, test=1)
    train, test = CUB200(tmp_path, train=True), CUB200(root, train=False)
    assert len(train) == 6 and len(test) == 2 and train.classes == ["001.Bird_1", "002.Bird_2"]
    assert train.targets == [0, 0, 0, 1, 1, 1] and test.targets == [0, 1]
    image, label = test[1]
    assert image.shape == (24, 20, 3) and image.dtype == np.uint8 and label == 1
    assert image[..., 1].mean() > 150 > image[..., 0].mean()           # class 2 is green (RGB order)
