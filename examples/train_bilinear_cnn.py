"""Train a bilinear CNN (Lin et al. 2015) for fine-grained classification on an image folder.

Data (``--data-dir``), in the first layout that fits:
* a CUB-200-2011 folder (``images.txt`` ... ``images/``): its official train/test split
  (``tinydl.data.CUB200``);
* a folder with ``train/`` and ``test/``, each holding one sub-folder per class;
* one folder of class sub-folders (CUB's ``images/`` alone, say): a seeded random
  ``--test-fraction`` is held out.
Without ``--data-dir`` a tiny synthetic fine-grained set is written to a temporary
folder in the second layout, so the example runs offline: every image shows the
same kind of object -- a dull-coloured "bird" (an ellipse body with a head) at a
random place and angle on a textured background -- and the 6 classes differ only
in a small mark on the body: red or blue, and a disc, a square or a bar
(``red_disc``, ``blue_bar``...). Small marks of other colours are scattered around
as distractors. A global average of the features loses *which colour goes with
which shape*; the bilinear (outer-product) pooling keeps such co-occurrences.

Model: ``models.bilinear_cnn(backbone='small')`` (conv features, bilinear
pooling, signed square root, L2 normalisation, fc); ``--backbone vgg16`` with
``--pretrained FILE`` (VGG16 weights from ``td.save``) and ``--resize 512
--crop 448`` is the paper's CUB set-up (a GPU job).

    python examples/train_bilinear_cnn.py                         # synthetic, CPU, a few minutes
    python examples/train_bilinear_cnn.py --data-dir ~/data/CUB_200_2011 --backbone vgg16 \\
        --pretrained vgg16.npz --resize 512 --crop 448 --batch-size 16 --lr 1e-4 --device cuda
"""
import argparse
import json
import math
import pathlib
import tempfile
import time

import numpy as np

import models
import tinydl as td
import tinydl.nn.functional as F
import tinydl.data.transforms as T
from tinydl import optim
from tinydl.data import CUB200, DataLoader, ImageFolder, Subset

MARK_COLOURS = {"red": (220, 30, 30), "blue": (30, 60, 230)}
MARK_SHAPES = ("disc", "square", "bar")
DISTRACTOR_COLOURS = ((240, 220, 40), (40, 200, 60), (240, 240, 240))


# ================================================================ synthetic fine-grained images
def _draw_mark(img, shape, centre, size, angle, colour):
    import cv2
    if shape == "disc":
        cv2.circle(img, centre, size, colour, -1, cv2.LINE_AA)
        return
    w, h = (2 * size, 2 * size) if shape == "square" else (2 * size + 6, max(2, size - 1))
    pts = cv2.boxPoints(((float(centre[0]), float(centre[1])), (float(w), float(h)), float(angle)))
    cv2.fillPoly(img, [np.rint(pts).astype(np.int32)], colour, cv2.LINE_AA)


def draw_bird(rng, colour_name, shape, size=64):
    """One (size, size, 3) uint8 RGB image of class (colour_name, shape)."""
    import cv2
    coarse = rng.uniform(-30, 30, size=(4, 4, 3)).astype(np.float32)
    img = np.clip(rng.uniform(70, 190, size=3) + cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC),
                  0, 255).astype(np.uint8)
    s = size / 64
    for _ in range(int(rng.integers(1, 4))):       # distractor marks on the background
        _draw_mark(img, MARK_SHAPES[int(rng.integers(3))], tuple(int(v) for v in rng.integers(4, size - 4, 2)),
                   int(round(3 * s)), rng.uniform(0, 180), DISTRACTOR_COLOURS[int(rng.integers(3))])
    grey = rng.uniform(60, 170)
    body = tuple(int(np.clip(grey + t, 0, 255)) for t in rng.uniform(-20, 20, 3))
    centre = np.array([size / 2, size / 2]) + rng.uniform(-8, 8, 2) * s
    a, b = rng.uniform(17, 22) * s, rng.uniform(9, 12) * s
    angle = rng.uniform(0, 360)
    c = tuple(int(round(v)) for v in centre)
    cv2.ellipse(img, c, (int(a), int(b)), angle, 0, 360, body, -1, cv2.LINE_AA)
    head = centre + (a + 2 * s) * np.array([math.cos(math.radians(angle)), math.sin(math.radians(angle))])
    cv2.circle(img, tuple(int(round(v)) for v in head), int(round(7 * s)),
               tuple(max(v - 25, 0) for v in body), -1, cv2.LINE_AA)
    # the class: a small mark somewhere on the body
    u = rng.uniform(-0.45, 0.45) * a
    v = rng.uniform(-0.3, 0.3) * b
    t = math.radians(angle)
    mark = centre + np.array([u * math.cos(t) - v * math.sin(t), u * math.sin(t) + v * math.cos(t)])
    colour = tuple(int(np.clip(x + rng.uniform(-20, 20), 0, 255)) for x in MARK_COLOURS[colour_name])
    _draw_mark(img, shape, tuple(int(round(x)) for x in mark), int(round(rng.uniform(3, 4) * s)),
               rng.uniform(0, 180), colour)
    noise = rng.normal(0, 4, img.shape)
    return np.clip(np.rint(img + noise), 0, 255).astype(np.uint8)


def write_synthetic_birds(root, train_per_class=100, test_per_class=20, size=64, seed=0):
    """Write ``root/{train,test}/<colour>_<shape>/NNNN.png`` (6 classes); returns ``root``."""
    import cv2
    root = pathlib.Path(root)
    classes = [f"{c}_{s}" for c in MARK_COLOURS for s in MARK_SHAPES]
    for k, name in enumerate(classes):
        colour, shape = name.split("_")
        for split, n in (("train", train_per_class), ("test", test_per_class)):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                rng = np.random.default_rng([seed, k, split == "test", i])
                img = draw_bird(rng, colour, shape, size)
                cv2.imwrite(str(folder / f"{i:04d}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    return root


# ================================================================ data
def datasets(data_dir, train_tf, test_tf, test_fraction, seed):
    """(train set, test set, class names) from ``data_dir`` (see the module docstring)."""
    data_dir = pathlib.Path(data_dir).expanduser()
    if (data_dir / "images.txt").exists() or (data_dir / "CUB_200_2011" / "images.txt").exists():
        train, test = CUB200(data_dir, train=True, transform=train_tf), CUB200(data_dir, train=False, transform=test_tf)
        return train, test, train.classes
    if (data_dir / "train").is_dir() and (data_dir / "test").is_dir():
        train, test = ImageFolder(data_dir / "train", train_tf), ImageFolder(data_dir / "test", test_tf)
        if train.classes != test.classes:
            raise ValueError(f"train/ and test/ of {data_dir} have different class folders")
        return train, test, train.classes
    full_train, full_test = ImageFolder(data_dir, train_tf), ImageFolder(data_dir, test_tf)
    order = np.random.default_rng(seed).permutation(len(full_train))
    n_test = max(1, int(round(test_fraction * len(order))))
    return (Subset(full_train, order[n_test:].tolist()), Subset(full_test, order[:n_test].tolist()),
            full_train.classes)


def evaluate(model, loader):
    model.eval()
    correct = total = 0
    with td.no_grad():
        for x, y in loader:
            correct += int((model(x).argmax(dim=1) == y).sum().item())
            total += len(y)
    return correct / total


# ================================================================ main
def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=pathlib.Path, default=None,
                   help="CUB_200_2011, a folder with train/ and test/, or one folder of classes "
                        "(default: write a synthetic set to a temporary folder)")
    p.add_argument("--train-per-class", type=int, default=100, help="synthetic set: training images per class")
    p.add_argument("--test-per-class", type=int, default=20, help="synthetic set: test images per class")
    p.add_argument("--test-fraction", type=float, default=0.2, help="held out of a single class folder")
    p.add_argument("--backbone", choices=("small", "vgg16"), default="small")
    p.add_argument("--pretrained", type=pathlib.Path, default=None, help="VGG16 weights (td.save file)")
    p.add_argument("--resize", type=int, default=64, help="images resized to RESIZE x RESIZE ...")
    p.add_argument("--crop", type=int, default=56, help="... then a random (train) / centre (test) crop")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3, help="Adam's lr (cosine-annealed per epoch)")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=0, help="loader threads (decoding)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path("runs/train_bilinear_cnn"))
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)    # ImageNet's, as VGG expects
    train_tf = T.Compose([T.Resize((args.resize, args.resize)), T.RandomCrop(args.crop), T.RandomHorizontalFlip(),
                          T.ToTensor(), T.Normalize(mean, std)])
    test_tf = T.Compose([T.Resize((args.resize, args.resize)), T.CenterCrop(args.crop), T.ToTensor(),
                         T.Normalize(mean, std)])
    with tempfile.TemporaryDirectory(prefix="tinydl_birds_") as tmp:
        data_dir = args.data_dir
        if data_dir is None:
            data_dir = write_synthetic_birds(tmp, args.train_per_class, args.test_per_class, seed=args.seed)
            print(f"no --data-dir: wrote a synthetic fine-grained set to {data_dir}")
        train_set, test_set, classes = datasets(data_dir, train_tf, test_tf, args.test_fraction, args.seed)
        print(f"{len(classes)} classes, {len(train_set)} train / {len(test_set)} test images")
        train_loader = DataLoader(train_set, args.batch_size, shuffle=True, seed=args.seed, device=args.device,
                                  num_workers=args.workers)
        test_loader = DataLoader(test_set, args.batch_size, device=args.device, num_workers=args.workers)

        td.manual_seed(args.seed)
        model = models.create("bilinear_cnn", num_classes=len(classes), backbone=args.backbone,
                              pretrained_backbone=args.pretrained).to(args.device)
        opt = optim.Adam(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
        sched = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs)
        n_params = sum(p.numel() for p in model.parameters())
        print(f"bilinear_cnn ({args.backbone}): {n_params:,} parameters, {model.fc.in_features:,} bilinear features")
        start, history = time.perf_counter(), []
        for epoch in range(1, args.epochs + 1):
            model.train()
            total, count = 0.0, 0
            for x, y in train_loader:
                loss = F.cross_entropy(model(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total, count = total + loss.item() * len(y), count + len(y)
            sched.step()
            history.append(dict(epoch=epoch, train_loss=total / count))
            print(f"epoch {epoch:2d}/{args.epochs}  train loss {total / count:.4f}  "
                  f"({time.perf_counter() - start:.0f}s)")
        seconds = time.perf_counter() - start
        test_acc = evaluate(model, test_loader)
    print(f"test accuracy {100 * test_acc:.2f}% ({len(test_set)} images, {len(classes)} classes), "
          f"trained in {seconds:.0f}s")
    result = dict(test_acc=test_acc, train_loss=history[-1]["train_loss"], seconds=seconds,
                  num_classes=len(classes), train_images=len(train_set), test_images=len(test_set),
                  backbone=args.backbone, data_dir=str(args.data_dir) if args.data_dir else "synthetic")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "metrics.json").write_text(json.dumps(dict(result=result, history=history), indent=1))
    return result


if __name__ == "__main__":
    main()
