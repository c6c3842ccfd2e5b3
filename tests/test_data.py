"""tinydl.data: readers (on files the tests write, and the shared MNIST test set),
downloads (with a faked network), datasets utilities, collate and the DataLoader
(batching, seeded shuffles, resuming, prefetch threads)."""
import collections
import gzip
import hashlib
import io
import os
import struct
import tarfile
import urllib.error

import numpy as np
import pytest

import tinydl as td
import tinydl.data as data
import tinydl.data.transforms as T
from tinydl.data import datasets as ds_module

cv2 = pytest.importorskip("cv2")


# ================================================================ helpers
def idx_bytes(array):
    array = np.asarray(array, dtype=np.uint8)
    return bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_fake_mnist(folder, n=5, train=False, gz=False, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n).astype(np.uint8)
    prefix = "train" if train else "t10k"
    files = {}
    for part, arr in (("images-idx3", images), ("labels-idx1", labels)):
        name = f"{prefix}-{part}-ubyte"
        raw = idx_bytes(arr)
        if gz:
            raw, name = gzip.compress(raw), name + ".gz"
        (folder / name).write_bytes(raw)
        files[name] = raw
    return images, labels, files


class FakeResponse(io.BytesIO):
    """What urlopen returns, enough for download_url."""

    def __init__(self, payload):
        super().__init__(payload)
        self.headers = {"Content-Length": str(len(payload))}


# ================================================================ MNIST
def test_mnist_shared_test_split(mnist_dir):
    ds = data.MNIST(root=mnist_dir, train=False)
    assert len(ds) == 10000
    img, label = ds[0]
    assert img.shape == (28, 28) and img.dtype == np.uint8
    assert isinstance(label, int) and label == 7
    assert [ds[i][1] for i in range(5)] == [7, 2, 1, 0, 4]
    assert ds.targets.dtype == np.int64 and ds.class_to_idx["7 - seven"] == 7
    x, _ = data.MNIST(root=mnist_dir, train=False, transform=T.ToTensor())[0]
    assert x.shape == (1, 28, 28) and x.dtype == td.float32
    np.testing.assert_array_equal(x.numpy()[0], img.astype(np.float32) / np.float32(255))


def test_mnist_train_split_missing_names_files_and_folder(mnist_dir):
    with pytest.raises(FileNotFoundError) as info:
        data.MNIST(root=mnist_dir, train=True)
    msg = str(info.value)
    assert "train-images-idx3-ubyte.gz" in msg and "train-labels-idx1-ubyte.gz" in msg
    assert str(mnist_dir) in msg and "download=True" in msg


def test_mnist_reads_raw_idx_files_and_target_transform(tmp_path):
    images, labels, _ = write_fake_mnist(tmp_path, n=6, train=True)
    ds = data.MNIST(root=tmp_path, train=True, target_transform=lambda t: t + 100)
    assert len(ds) == 6
    np.testing.assert_array_equal(ds.data, images)
    assert ds[3][1] == int(labels[3]) + 100


def test_mnist_checksum_mismatch(tmp_path):
    write_fake_mnist(tmp_path, train=False, gz=True)   # right names, wrong content
    with pytest.raises(data.ChecksumError, match="md5") as info:
        data.MNIST(root=tmp_path, train=False)
    assert "t10k-images-idx3-ubyte.gz" in str(info.value)


def test_default_root_follows_TINYDL_DATA(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYDL_DATA", str(tmp_path))
    assert data.data_home() == tmp_path
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "fashion-mnist")):
        data.FashionMNIST(train=False)


def _fake_mnist_class(files):
    """MNIST with the published md5s replaced by those of our fake files."""
    md5 = {name: hashlib.md5(raw).hexdigest() for name, raw in files.items()}

    class FakeMNIST(data.MNIST):
        mirrors = ("https://mirror-one.invalid/", "https://mirror-two.invalid/")
        resources = {(False, "images"): ("t10k-images-idx3-ubyte.gz", md5["t10k-images-idx3-ubyte.gz"]),
                     (False, "labels"): ("t10k-labels-idx1-ubyte.gz", md5["t10k-labels-idx1-ubyte.gz"]),
                     (True, "images"): ("train-images-idx3-ubyte.gz", "0" * 32),
                     (True, "labels"): ("train-labels-idx1-ubyte.gz", "0" * 32)}
    return FakeMNIST


def test_download_tries_mirrors_and_writes_atomically(tmp_path, monkeypatch):
    source = tmp_path / "source"
    source.mkdir()
    images, labels, files = write_fake_mnist(source, n=4, gz=True)
    tried = []

    def fake_open(url, timeout):
        tried.append(url)
        if "mirror-one" in url:
            raise urllib.error.URLError("mirror one is down")
        return FakeResponse(files[url.rsplit("/", 1)[-1]])

    monkeypatch.setattr(ds_module, "_open_url", fake_open)
    root = tmp_path / "cache"
    ds = _fake_mnist_class(files)(root=root, train=False, download=True)
    np.testing.assert_array_equal(ds.data, images)
    np.testing.assert_array_equal(ds.targets, labels)
    assert sorted(p.name for p in root.iterdir()) == sorted(files)          # no .part files left
    assert tried == [f"https://mirror-{m}.invalid/{n}" for n in sorted(files) for m in ("one", "two")]
    tried.clear()
    _fake_mnist_class(files)(root=root, train=False, download=True)          # already there: no traffic
    assert tried == []


def test_offline_download_error_names_files_and_folder(tmp_path, monkeypatch):
    def no_network(url, timeout):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(ds_module, "_open_url", no_network)
    with pytest.raises(data.DownloadError) as info:
        data.MNIST(root=tmp_path / "mnist", train=False, download=True)
    msg = str(info.value)
    assert "t10k-images-idx3-ubyte.gz" in msg and "t10k-labels-idx1-ubyte.gz" in msg
    assert str(tmp_path / "mnist") in msg and "Without network" in msg
    assert "name resolution" in msg


def test_download_with_wrong_checksum_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(ds_module, "_open_url", lambda url, timeout: FakeResponse(b"not mnist"))
    with pytest.raises(data.DownloadError, match="md5"):
        data.MNIST(root=tmp_path, train=False, download=True)
    assert list(tmp_path.iterdir()) == []


def test_fashion_mnist_from_raw_files(tmp_path):
    images, labels, _ = write_fake_mnist(tmp_path, n=3)
    ds = data.FashionMNIST(root=tmp_path, train=False)
    np.testing.assert_array_equal(ds.data, images)
    assert ds.classes[9] == "Ankle boot" and len(ds) == 3


# ================================================================ CIFAR
def cifar_records(images, labels):
    """Records as the binary version stores them: label byte(s), then R, G, B planes."""
    planes = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    return np.concatenate([labels.astype(np.uint8).reshape(len(images), -1), planes], axis=1).tobytes()


def write_fake_cifar10(folder, per_file=3, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        images = rng.integers(0, 256, size=(per_file, 32, 32, 3), dtype=np.uint8)
        labels = rng.integers(0, 10, size=per_file)
        (folder / name).write_bytes(cifar_records(images, labels))
        out[name] = (images, labels)
    return out


def test_cifar10_binary_parsing_never_unpickles(tmp_path, monkeypatch):
    import pickle
    monkeypatch.setattr(pickle, "load", lambda *a, **k: pytest.fail("CIFAR loading unpickled"))
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: pytest.fail("CIFAR loading unpickled"))
    written = write_fake_cifar10(tmp_path / "cifar-10-batches-bin")
    (tmp_path / "cifar-10-batches-bin" / "batches.meta.txt").write_text("\n".join(f"c{i}" for i in range(10)) + "\n\n")
    train = data.CIFAR10(root=tmp_path, train=True)
    assert len(train) == 15 and train.data.shape == (15, 32, 32, 3) and train.data.dtype == np.uint8
    np.testing.assert_array_equal(train.data[3:6], written["data_batch_2.bin"][0])
    img, label = train[4]
    assert label == written["data_batch_2.bin"][1][1]
    # the first pixel's red value is the record's first pixel byte
    raw = (tmp_path / "cifar-10-batches-bin" / "data_batch_2.bin").read_bytes()
    assert img[0, 0, 0] == raw[3073 + 1] and img[0, 0, 1] == raw[3073 + 1 + 1024] and img[0, 1, 0] == raw[3073 + 2]
    assert train.classes[0] == "c0"
    test = data.CIFAR10(root=tmp_path / "cifar-10-batches-bin", train=False)   # the .bin folder itself
    np.testing.assert_array_equal(test.data, written["test_batch.bin"][0])
    assert test.classes == [f"c{i}" for i in range(10)]


def test_cifar_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="data_batch_1.bin"):
        data.CIFAR10(root=tmp_path, train=True)
    folder = tmp_path / "c"
    write_fake_cifar10(folder)
    (folder / "test_batch.bin").write_bytes((folder / "test_batch.bin").read_bytes()[:-7])
    with pytest.raises(ValueError, match="3073-byte"):
        data.CIFAR10(root=folder, train=False)
    bad = np.zeros((1, 32, 32, 3), np.uint8)
    (folder / "test_batch.bin").write_bytes(cifar_records(bad, np.array([12])))
    with pytest.raises(ValueError, match="out of range"):
        data.CIFAR10(root=folder, train=False)


def test_cifar100_two_label_bytes(tmp_path):
    rng = np.random.default_rng(1)
    folder = tmp_path / "cifar-100-binary"
    folder.mkdir()
    images = rng.integers(0, 256, size=(4, 32, 32, 3), dtype=np.uint8)
    labels = np.array([[3, 77], [19, 0], [0, 99], [7, 42]])
    (folder / "test.bin").write_bytes(cifar_records(images, labels))
    ds = data.CIFAR100(root=tmp_path, train=False)
    np.testing.assert_array_equal(ds.data, images)
    assert ds.targets.tolist() == [77, 0, 99, 42] and ds.coarse_targets.tolist() == [3, 19, 0, 7]
    assert ds[2][1] == 99 and ds.classes[99] == "worm" and len(ds.classes) == 100
    assert len(ds.coarse_classes) == 20


def test_cifar_download_extracts_only_expected_members(tmp_path, monkeypatch):
    src = tmp_path / "src" / "cifar-10-batches-bin"
    written = write_fake_cifar10(src, per_file=2)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name in written:
            tar.add(src / name, arcname=f"cifar-10-batches-bin/{name}")
        evil = tarfile.TarInfo("cifar-10-batches-bin/../../evil.bin")
        evil.size = 3
        tar.addfile(evil, io.BytesIO(b"bad"))
        link = tarfile.TarInfo("cifar-10-batches-bin/readme.html")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    payload = buffer.getvalue()

    class FakeCIFAR10(data.CIFAR10):
        md5 = hashlib.md5(payload).hexdigest()

    monkeypatch.setattr(ds_module, "_open_url", lambda url, timeout: FakeResponse(payload))
    root = tmp_path / "root"
    ds = FakeCIFAR10(root=root, train=False, download=True)
    np.testing.assert_array_equal(ds.data, written["test_batch.bin"][0])
    assert sorted(p.name for p in (root / "cifar-10-batches-bin").iterdir()) == sorted(written)
    assert not (tmp_path / "evil.bin").exists() and not (root / "evil.bin").exists()


# ================================================================ image folders
def _write_png(path, rgb):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def test_image_folder(tmp_path):
    rng = np.random.default_rng(0)
    pictures = {}
    for cls, names in {"zebra": ["b.png", "a.PNG"], "ant": ["x.png"], "cat": ["sub/y.png", "z.png"]}.items():
        for name in names:
            rgb = rng.integers(0, 256, size=(6, 5, 3), dtype=np.uint8)
            _write_png(tmp_path / cls / name, rgb)
            pictures[f"{cls}/{name}"] = rgb
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    ds = data.ImageFolder(tmp_path)
    assert ds.classes == ["ant", "cat", "zebra"]
    assert ds.class_to_idx == {"ant": 0, "cat": 1, "zebra": 2}
    rel = [os.path.relpath(p, tmp_path).replace(os.sep, "/") for p, _ in ds.samples]
    assert rel == ["ant/x.png", "cat/z.png", "cat/sub/y.png", "zebra/a.PNG", "zebra/b.png"]
    assert ds.targets == [0, 1, 1, 2, 2]
    for i, key in enumerate(rel):
        img, label = ds[i]
        assert img.dtype == np.uint8 and img.shape == (6, 5, 3)
        np.testing.assert_array_equal(img, pictures[key])        # RGB, not OpenCV's BGR
        assert label == ds.targets[i]
    only_upper = data.ImageFolder(tmp_path, extensions=(".PNG",), allow_empty=True)   # case-insensitive
    assert len(only_upper) == 5
    x, _ = data.ImageFolder(tmp_path, transform=T.Compose([T.Resize((8, 8)), T.ToTensor()]))[0]
    assert x.shape == (3, 8, 8)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty"):
        data.ImageFolder(tmp_path)


def test_cub200_official_split(tmp_path):
    root = tmp_path / "CUB_200_2011"
    rng = np.random.default_rng(0)
    rows = [(1, "001.Albatross/a.jpg", 1, 1), (2, "001.Albatross/b.jpg", 1, 0), (3, "002.Auklet/c.jpg", 2, 1)]
    for _, rel, _, _ in rows:
        _write_png(root / "images" / rel, rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8))
    (root / "images.txt").write_text("".join(f"{i} {p}\n" for i, p, _, _ in rows))
    (root / "image_class_labels.txt").write_text("".join(f"{i} {c}\n" for i, _, c, _ in rows))
    (root / "train_test_split.txt").write_text("".join(f"{i} {t}\n" for i, _, _, t in rows))
    (root / "classes.txt").write_text("1 001.Albatross\n2 002.Auklet\n")
    (root / "bounding_boxes.txt").write_text("1 1.0 2.0 3.0 4.0\n2 0 0 1 1\n3 5 6 2 2\n")
    train = data.CUB200(tmp_path, train=True)        # the parent folder works too
    assert train.targets == [0, 1] and train.classes == ["001.Albatross", "002.Auklet"]
    np.testing.assert_array_equal(train.boxes, [[1, 2, 4, 6], [5, 6, 7, 8]])
    assert train[1][0].shape == (4, 4, 3)
    test = data.CUB200(root, train=False)
    assert len(test) == 1 and test[0][1] == 0
    with pytest.raises(FileNotFoundError, match="images.txt"):
        data.CUB200(tmp_path / "nowhere")


def test_offline_digits():
    pytest.importorskip("sklearn")
    train, test = data.Digits(train=True), data.Digits(train=False)
    assert len(train) == 1497 and len(test) == 300
    img, label = train[0]
    assert img.shape == (28, 28) and img.dtype == np.uint8 and 0 <= label <= 9


# ================================================================ synthetic shapes
def test_synthetic_shapes_deterministic_and_keypoints_inside():
    a = data.SyntheticShapes(36, seed=5)
    b = data.SyntheticShapes(36, seed=5)
    counts = collections.defaultdict(int)
    for i in range(len(a)):
        img, kp = a[i]
        img2, kp2 = b[i]
        np.testing.assert_array_equal(img, img2)
        np.testing.assert_array_equal(kp, kp2)
        assert img.shape == (120, 160) and img.dtype == np.uint8
        assert kp.dtype == np.float32 and kp.ndim == 2 and kp.shape[1] == 2
        assert np.all(kp[:, 0] >= 0) and np.all(kp[:, 0] <= 159) and np.all(kp[:, 1] >= 0) and np.all(kp[:, 1] <= 119)
        counts[a.primitive(i)] += len(kp)
        assert img.std() > 5          # something was drawn on a non-flat background
    assert counts["ellipses"] == 0
    assert all(counts[p] > 0 for p in data.PRIMITIVES if p != "ellipses")
    other = data.SyntheticShapes(36, seed=6)
    assert not np.array_equal(other[0][0], a[0][0])


def test_synthetic_keypoints_sit_on_structure():
    """Around a polygon vertex or a cube corner the image is not flat."""
    ds = data.SyntheticShapes(12, primitives=("polygons", "cubes", "checkerboards"), noise_std=0, seed=1)
    for i in range(len(ds)):
        img, kp = ds[i]
        for x, y in kp.astype(int):
            patch = img[max(y - 2, 0):y + 3, max(x - 2, 0):x + 3].astype(float)
            assert patch.max() - patch.min() > 20, (ds.primitive(i), x, y)


def test_superpoint_labels_and_heatmaps():
    kp = np.array([[0, 0], [13.2, 9.7], [159, 119], [12, 9]], dtype=np.float32)   # two in one cell
    label = data.keypoints_to_label(kp, (120, 160))
    assert label.shape == (15, 20) and label.dtype == np.int64
    assert label[0, 0] == 0 and label[1, 1] == (10 - 8) * 8 + (13 - 8) and label[14, 19] == 63
    assert (label == 64).sum() == 15 * 20 - 3
    heat = data.keypoints_to_heatmap(kp[:3], (120, 160))
    np.testing.assert_array_equal(data.label_to_heatmap(label), heat)
    smooth = data.keypoints_to_heatmap(kp[:1], (120, 160), sigma=2.0)
    assert smooth[0, 0] == 1.0 and 0 < smooth[2, 0] < 1
    ds = data.SyntheticShapes(8, target="label", seed=2)
    images, labels = next(iter(data.DataLoader(ds, batch_size=4, seed=0)))
    assert images.shape == (4, 120, 160) and images.dtype == td.uint8
    assert labels.shape == (4, 15, 20) and labels.dtype == td.int64
    assert labels.numpy().min() >= 0 and labels.numpy().max() == 64


# ================================================================ dataset utilities
def test_tensor_dataset_subset_concat():
    x = np.arange(20, dtype=np.float32).reshape(10, 2)
    y = td.arange(10)
    ds = data.TensorDataset(x, y)
    a, b = ds[3]
    np.testing.assert_array_equal(a, [6, 7])
    assert isinstance(b, td.Tensor) and b.item() == 3
    with pytest.raises(ValueError, match="size mismatch"):
        data.TensorDataset(x, np.zeros(9))
    sub = data.Subset(ds, [9, 0, 4])
    assert len(sub) == 3 and sub[0][1].item() == 9
    cat = data.ConcatDataset([sub, ds])
    assert len(cat) == 13 and cat[3][1].item() == 0 and cat[-1][1].item() == 9 and cat[2][1].item() == 4
    assert len(sub + ds) == 13
    with pytest.raises(IndexError):
        cat[13]


def test_random_split_matches_pytorch_lengths():
    import torch.utils.data as tud
    ds = list(range(103))
    for lengths in ([0.7, 0.2, 0.1], [0.5, 0.5], [0.33, 0.33, 0.34], [50, 53]):
        ours = data.random_split(ds, lengths, seed=0)
        theirs = tud.random_split(ds, lengths)
        assert [len(s) for s in ours] == [len(s) for s in theirs]
        flat = sorted(i for s in ours for i in s.indices)
        assert flat == ds                                   # disjoint and complete
    first = [s.indices for s in data.random_split(ds, [0.8, 0.2], seed=3)]
    again = [s.indices for s in data.random_split(ds, [0.8, 0.2], generator=np.random.default_rng(3))]
    assert first == again
    td.manual_seed(1)
    one = data.random_split(ds, [3, 100])[0].indices
    td.manual_seed(1)
    assert data.random_split(ds, [3, 100])[0].indices == one
    with pytest.raises(ValueError, match="sum"):
        data.random_split(ds, [50, 50])


# ================================================================ collate
def test_default_collate_follows_pytorch():
    import torch
    from torch.utils.data import default_collate as torch_collate
    Point = collections.namedtuple("Point", "x y")
    batch = [{"img": np.full((2, 3), i, np.uint8), "label": i, "w": 0.5 * i, "flag": i % 2 == 0,
              "np": np.float32(i), "name": f"s{i}", "pair": (i, np.int16(i)), "pt": Point(i, 1.5)}
             for i in range(4)]
    ours = data.default_collate(batch)
    theirs = torch_collate(batch)

    def compare(a, b, where):
        if isinstance(b, torch.Tensor):
            assert isinstance(a, td.Tensor), where
            assert a.dtype == np.dtype(str(b.dtype).replace("torch.", "")), (where, a.dtype, b.dtype)
            np.testing.assert_array_equal(a.numpy(), b.numpy())
        elif isinstance(b, dict):
            assert set(a) == set(b)
            for k in b:
                compare(a[k], b[k], f"{where}.{k}")
        elif isinstance(b, (list, tuple)) and b and isinstance(b[0], str):
            assert list(a) == list(b)
        else:
            assert type(a) is type(b), (where, type(a), type(b))
            for k, (u, v) in enumerate(zip(a, b)):
                compare(u, v, f"{where}[{k}]")

    compare(ours, theirs, "batch")
    with pytest.raises(ValueError, match="different shapes.*collate_fn"):
        data.default_collate([np.zeros((3, 2)), np.zeros((5, 2))])


# ================================================================ the DataLoader
def _index_dataset(n=10):
    return data.TensorDataset(np.arange(n, dtype=np.int64), np.arange(n, dtype=np.float32) * 2)


def _orders(loader, epochs):
    return [[int(i) for x, _ in loader for i in x.numpy()] for _ in range(epochs)]


def test_loader_batches_shapes_dtypes_drop_last():
    ds = data.MNIST.__new__(data.MNIST)      # a small MNIST-like dataset without files
    ds.data = np.random.default_rng(0).integers(0, 256, size=(10, 28, 28), dtype=np.uint8)
    ds.targets = np.arange(10) % 10
    ds.transform, ds.target_transform = T.ToTensor(), None
    loader = data.DataLoader(ds, batch_size=4)
    batches = list(loader)
    assert len(loader) == 3 and [b[0].shape for b in batches] == [(4, 1, 28, 28)] * 2 + [(2, 1, 28, 28)]
    assert batches[0][0].dtype == td.float32 and batches[0][1].dtype == td.int64
    assert batches[0][1].numpy().tolist() == [0, 1, 2, 3]
    dropped = data.DataLoader(ds, batch_size=4, drop_last=True)
    assert len(dropped) == 2 and [b[0].shape[0] for b in dropped] == [4, 4]
    on_cpu = next(iter(data.DataLoader(ds, batch_size=3, device="cpu")))
    assert on_cpu[0].device == "cpu"


def test_shuffle_is_seeded_and_changes_every_epoch():
    ds = _index_dataset(50)
    a = _orders(data.DataLoader(ds, batch_size=8, shuffle=True, seed=7), 3)
    b = _orders(data.DataLoader(ds, batch_size=8, shuffle=True, seed=7), 3)
    assert a == b
    assert all(sorted(o) == list(range(50)) for o in a)
    assert a[0] != a[1] != a[2] and a[0] != list(range(50))
    c = _orders(data.DataLoader(ds, batch_size=8, shuffle=True, seed=8), 1)
    assert c[0] != a[0]
    td.manual_seed(3)
    d = _orders(data.DataLoader(ds, batch_size=8, shuffle=True), 2)
    td.manual_seed(3)
    assert _orders(data.DataLoader(ds, batch_size=8, shuffle=True), 2) == d
    g = _orders(data.DataLoader(ds, batch_size=8, shuffle=True, generator=np.random.default_rng(4)), 1)
    assert g == _orders(data.DataLoader(ds, batch_size=8, shuffle=True, generator=np.random.default_rng(4)), 1)
    assert _orders(data.DataLoader(ds, batch_size=8), 2) == [list(range(50))] * 2


def test_state_dict_resume_gives_the_same_remaining_order(tmp_path):
    ds = _index_dataset(23)
    full = data.DataLoader(ds, batch_size=4, shuffle=True, seed=11)
    reference = [[x.numpy().tolist() for x, _ in full] for _ in range(3)]

    loader = data.DataLoader(ds, batch_size=4, shuffle=True, seed=11)
    first_epoch = [x.numpy().tolist() for x, _ in loader]
    assert first_epoch == reference[0]
    seen = []
    for k, (x, _) in enumerate(loader):            # epoch 1, interrupted after 3 batches
        seen.append(x.numpy().tolist())
        if k == 2:
            state = loader.state_dict()
            break
    assert state["epoch"] == 1 and state["batches_done"] == 3
    td.save({"loader": state}, tmp_path / "ckpt.npz")

    resumed = data.DataLoader(ds, batch_size=4, shuffle=True, seed=999)     # another seed: the state wins
    resumed.load_state_dict(td.load(tmp_path / "ckpt.npz")["loader"])
    rest = [x.numpy().tolist() for x, _ in resumed]
    assert seen + rest == reference[1]
    assert [x.numpy().tolist() for x, _ in resumed] == reference[2]
    end_state = resumed.state_dict()
    assert end_state["epoch"] == 3 and end_state["batches_done"] == 0


def test_resumed_training_repeats_the_same_losses():
    """Interrupt mid-epoch, restore model, optimizer, loader and RNG: same loss sequence."""
    from tinydl import nn, optim
    import tinydl.nn.functional as F
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 5)).astype(np.float32)
    y = rng.integers(0, 3, size=40)
    noisy = T.GaussianNoise(std=0.5, clip=False)
    ds = data.TensorDataset(x, y)

    class Noisy(data.Dataset):          # random augmentation: must be replayed too
        def __len__(self):
            return len(ds)

        def __getitem__(self, i):
            a, b = ds[i]
            return noisy(a), b

    def setup():
        td.manual_seed(0)
        model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Dropout(0.3), nn.Linear(8, 3))
        opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        loader = data.DataLoader(Noisy(), batch_size=6, shuffle=True, prefetch=2)
        return model, opt, loader

    def step(model, opt, xb, yb):
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    model, opt, loader = setup()
    straight = [step(model, opt, xb, yb) for _ in range(3) for xb, yb in loader]

    model, opt, loader = setup()
    losses, checkpoint = [], None
    for epoch in range(2):
        for k, (xb, yb) in enumerate(loader):
            losses.append(step(model, opt, xb, yb))
            if epoch == 1 and k == 3:
                checkpoint = {"model": model.state_dict(), "opt": opt.state_dict(),
                              "loader": loader.state_dict(), "rng": td.backend.get_rng_state()}
                break
        if checkpoint:
            break
    model, opt, loader = setup()           # a new process, as far as the state goes
    model.load_state_dict(checkpoint["model"])
    opt.load_state_dict(checkpoint["opt"])
    loader.load_state_dict(checkpoint["loader"])
    td.backend.set_rng_state(checkpoint["rng"])
    while loader.epoch < 3:
        losses += [step(model, opt, xb, yb) for xb, yb in loader]
    assert losses == straight


class _Augmented(data.Dataset):
    def __init__(self, n=30):
        self.images = np.random.default_rng(0).integers(0, 256, size=(n, 12, 12, 3), dtype=np.uint8)
        self.tf = T.Compose([T.RandomCrop(8, padding=2), T.RandomHorizontalFlip(), T.ColorJitter(0.3, 0.3, 0.3),
                             T.ToTensor()])

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.tf(self.images[i]), i


def test_prefetch_threads_give_the_same_batches():
    ds = _Augmented()

    def run(**kw):
        loader = data.DataLoader(ds, batch_size=4, shuffle=True, seed=5, **kw)
        return [[(x.numpy().copy(), y.numpy().copy()) for x, y in loader] for _ in range(2)]

    plain = run()
    for kw in ({"prefetch": 2}, {"num_workers": 3}, {"num_workers": 2, "prefetch": 5}):
        other = run(**kw)
        for epoch_a, epoch_b in zip(plain, other):
            assert len(epoch_a) == len(epoch_b)
            for (xa, ya), (xb, yb) in zip(epoch_a, epoch_b):
                np.testing.assert_array_equal(ya, yb)
                np.testing.assert_array_equal(xa, xb)
    # augmentation differs between epochs for the same sample
    first = {int(i): x for x, y in plain[0] for i, x in zip(y, x)}
    second = {int(i): x for x, y in plain[1] for i, x in zip(y, x)}
    assert any(not np.array_equal(first[i], second[i]) for i in first)


def test_prefetch_early_break_and_errors():
    import threading
    before = threading.active_count()
    loader = data.DataLoader(_index_dataset(100), batch_size=2, prefetch=4)
    for k, _ in enumerate(loader):
        if k == 1:
            break
    state = loader.state_dict()
    assert state["batches_done"] == 2

    class Broken(data.Dataset):
        def __len__(self):
            return 8

        def __getitem__(self, i):
            if i == 5:
                raise RuntimeError("sample 5 is corrupt")
            return i

    with pytest.raises(RuntimeError, match="sample 5 is corrupt"):
        list(data.DataLoader(Broken(), batch_size=2, num_workers=2))
    import gc
    gc.collect()
    import time
    for _ in range(50):
        if threading.active_count() <= before:
            break
        time.sleep(0.02)
    assert threading.active_count() <= before


def test_loader_argument_errors_and_samplers():
    ds = _index_dataset(10)
    with pytest.raises(ValueError, match="mutually exclusive"):
        data.DataLoader(ds, shuffle=True, sampler=data.SequentialSampler(ds))
    with pytest.raises(ValueError, match="mutually exclusive"):
        data.DataLoader(ds, batch_size=4, batch_sampler=data.BatchSampler(data.SequentialSampler(ds), 2, False))
    with pytest.raises(ValueError, match="batch_size"):
        data.DataLoader(ds, batch_size=0)
    bs = data.BatchSampler(data.SubsetRandomSampler([1, 3, 5, 7], seed=0), 3, drop_last=False)
    loader = data.DataLoader(ds, batch_sampler=bs)
    got = [x.numpy().tolist() for x, _ in loader]
    assert [len(b) for b in got] == [3, 1] and sorted(sum(got, [])) == [1, 3, 5, 7]
    rs = data.RandomSampler(ds, replacement=True, num_samples=25, seed=1)
    assert len(list(rs)) == 25 and set(rs) <= set(range(10))
    long = data.RandomSampler(ds, num_samples=25, seed=1)
    drawn = list(long)
    assert len(drawn) == 25 and sorted(drawn[:10]) == list(range(10))


def _write_mnist_parts(folder, images, labels, swap=False):
    names = ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    if swap:
        names.reverse()
    (folder / names[0]).write_bytes(idx_bytes(images))
    (folder / names[1]).write_bytes(idx_bytes(labels))


@pytest.mark.parametrize("case, message", [
    ("label 200", r"t10k-labels-idx1-ubyte has label 200 at index 2; labels must be 0\.\.9"),
    ("swapped", "the two files are swapped"),
    ("flat images", r"holds uint8 of shape \(4, 784\); MNIST images are uint8 \(N, 28, 28\)"),
    ("small images", r"shape \(4, 8, 8\)"),
    ("2-d labels", r"labels-idx1-ubyte holds uint8 of shape \(4, 1\)"),
    ("count", "4 images in .* but 3 labels in"),
])
def test_mnist_files_are_checked_at_load(tmp_path, case, message):
    images = np.zeros((4, 28, 28), np.uint8)
    labels = np.array([1, 2, 3, 4], np.uint8)
    if case == "label 200":
        labels[2] = 200
    kw = dict(swap=case == "swapped")
    images = {"flat images": images.reshape(4, 784), "small images": images[:, :8, :8]}.get(case, images)
    labels = {"2-d labels": labels[:, None], "count": labels[:3]}.get(case, labels)
    _write_mnist_parts(tmp_path, images, labels, **kw)
    with pytest.raises(ValueError, match=message):
        data.MNIST(root=tmp_path, train=False)


def test_random_sampler_refuses_an_empty_dataset_at_construction_as_pytorch():
    empty = data.TensorDataset(np.zeros((0, 2), np.float32), np.zeros(0, np.int64))
    with pytest.raises(ValueError, match="num_samples should be a positive integer value, but got num_samples=0"):
        data.RandomSampler(empty)
    with pytest.raises(ValueError, match="num_samples=0"):
        data.DataLoader(empty, batch_size=2, shuffle=True)
    data.SubsetRandomSampler([], seed=0)                              # PyTorch's takes an empty subset
    assert list(data.DataLoader(empty, batch_size=2)) == []        # and a sequential loader yields nothing
