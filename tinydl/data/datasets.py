"""The datasets of the notes, with torchvision's signatures.

Every dataset returns ``(image, label)`` with the image a NumPy array, uint8,
``(H, W)`` for grey sets (MNIST) and ``(H, W, 3)`` RGB for colour ones; ``transform``
(e.g. ``transforms.ToTensor()``) and ``target_transform`` are applied on the way out.

Files. ``root=None`` means the cache folder ``$TINYDL_DATA`` (default
``~/.cache/tinydl``) plus the dataset's own sub-folder (``mnist``, ``cifar10``...);
``root=DIR`` means the files are in DIR. ``download=True`` fetches missing files
over HTTP (trying each mirror in turn), checks their md5 and moves them into place
only when complete, so an interrupted download never leaves a half file that
looks valid. Offline, the error names the files and the folder to put them in.

Formats. MNIST/Fashion-MNIST: the IDX files (``mnist.read_idx``). CIFAR: the
official *binary* version (fixed-size records), never the Python one: loading a
dataset never unpickles anything. Image folders: OpenCV decodes the files.
"""
import os
import pathlib
import secrets
import sys
import tarfile
import urllib.request

import numpy as np

from .dataset import Dataset
from .digits import load_digits_28
from .mnist import FILES as _MNIST_FILES, ChecksumError, _find, check_md5, load_mnist, md5sum
from .synthetic import SyntheticShapes, keypoints_to_heatmap, keypoints_to_label, label_to_heatmap

__all__ = ["data_home", "download_url", "DownloadError", "ChecksumError", "imread", "read_cifar_binary",
           "MNIST", "FashionMNIST", "CIFAR10", "CIFAR100", "ImageFolder", "CUB200", "Digits",
           "SyntheticShapes", "keypoints_to_heatmap", "keypoints_to_label", "label_to_heatmap",
           "IMG_EXTENSIONS"]


# ================================================================ files and downloads
def data_home():
    """The cache folder: ``$TINYDL_DATA``, else ``~/.cache/tinydl``."""
    return pathlib.Path(os.environ.get("TINYDL_DATA") or "~/.cache/tinydl").expanduser()


def _folder(root, default_name):
    return pathlib.Path(root).expanduser() if root is not None else data_home() / default_name


class DownloadError(OSError):
    """No mirror gave a complete, correct copy of a file."""


def _open_url(url, timeout):
    """The HTTP response for ``url`` (one place for tests to fake the network)."""
    request = urllib.request.Request(url, headers={"User-Agent": "tinydl"})
    return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 (http/https mirrors only)


def download_url(urls, path, md5=None, timeout=60, progress=None):
    """Fetch ``path`` from the first of ``urls`` that works; returns the path.

    The bytes go to a temporary file in the same folder, their md5 is checked,
    and only then is the file renamed to ``path`` (atomic on one file system).
    Raises DownloadError listing what each URL did.
    """
    if isinstance(urls, str):
        urls = [urls]
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if progress is None:
        progress = sys.stderr.isatty()
    errors = []
    for url in urls:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
        try:
            with _open_url(url, timeout) as response, open(tmp, "wb") as out:
                _copy(response, out, url, progress)
                out.flush()
                os.fsync(out.fileno())
            if md5 is not None:
                check_md5(tmp, md5)
            os.replace(tmp, path)
            return path
        except (OSError, ValueError) as exc:     # URLError, HTTPError, timeouts, ChecksumError
            errors.append(f"{url}: {type(exc).__name__}: {exc}")
        finally:
            tmp.unlink(missing_ok=True)
    raise DownloadError(f"could not download {path.name} into {path.parent}:\n  " + "\n  ".join(errors))


def _copy(response, out, url, progress, chunk=1 << 20):
    total = None
    headers = getattr(response, "headers", None)
    if headers is not None and headers.get("Content-Length"):
        total = int(headers["Content-Length"])
    bar = None
    if progress:
        try:
            from tqdm import tqdm
            bar = tqdm(total=total, unit="B", unit_scale=True, desc=url.rsplit("/", 1)[-1])
        except ImportError:
            pass
    try:
        while block := response.read(chunk):
            out.write(block)
            if bar is not None:
                bar.update(len(block))
    finally:
        if bar is not None:
            bar.close()


def _offline_message(dataset, names, folder, sources, errors):
    listing = ", ".join(names)
    return (f"{dataset}: could not download {listing} into {folder}.\n{errors}\n"
            f"Without network: fetch {listing} on another machine (from {sources}) and put them "
            f"in {folder}, or pass root= the folder that holds them.")


def imread(path, mode="rgb"):
    """An image file as a uint8 array: 'rgb' (H, W, 3), 'bgr' (OpenCV's order) or 'gray' (H, W).

    Decoded from the file's bytes (np.fromfile + cv2.imdecode), which also works
    for paths cv2.imread cannot open (non-ASCII names on Windows).
    """
    try:
        import cv2
    except ImportError as exc:
        raise ImportError("reading image files needs OpenCV: pip install 'tinydl[train]'") from exc
    flags = {"rgb": cv2.IMREAD_COLOR, "bgr": cv2.IMREAD_COLOR, "gray": cv2.IMREAD_GRAYSCALE}
    if mode not in flags:
        raise ValueError(f"imread: mode must be 'rgb', 'bgr' or 'gray', got {mode!r}")
    raw = np.fromfile(str(path), dtype=np.uint8)
    if raw.size == 0:
        raise ValueError(f"imread: {path} is empty (0 bytes)")
    img = cv2.imdecode(raw, flags[mode])
    if img is None:
        raise ValueError(f"imread: OpenCV cannot decode {path} (not an image, or a format it lacks)")
    if mode == "rgb":
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return img


class _VisionDataset(Dataset):
    """(data[i], targets[i]) through transform / target_transform."""

    def __len__(self):
        return len(self.data)

    def __getitem__(self, index):
        img, target = self.data[index], int(self.targets[index])
        if self.transform is not None:
            img = self.transform(img)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return img, target

    @property
    def class_to_idx(self):
        return {c: i for i, c in enumerate(self.classes)}

    def __repr__(self):
        split = "train" if getattr(self, "train", True) else "test"
        return f"{type(self).__name__}({split}, {len(self)} images, root={getattr(self, 'root', None)})"


# ================================================================ MNIST
class MNIST(_VisionDataset):
    """MNIST from its IDX files: 60,000 train / 10,000 test digits, uint8 (28, 28).

    ``root``: the folder holding the files (``train-images-idx3-ubyte.gz`` ...,
    gzipped or not); default ``data_home() / 'mnist'``. Only the split asked for
    must be there. Gzipped files are checked against their published md5.
    Attributes: ``data`` (N, 28, 28) uint8, ``targets`` (N,) int64, ``classes``.
    """

    mirrors = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
    resources = _MNIST_FILES          # {(train, 'images'/'labels'): (file name, md5)}
    classes = ["0 - zero", "1 - one", "2 - two", "3 - three", "4 - four",
               "5 - five", "6 - six", "7 - seven", "8 - eight", "9 - nine"]
    folder_name = "mnist"

    def __init__(self, root=None, train=True, transform=None, target_transform=None, download=False):
        self.root = _folder(root, self.folder_name)
        self.train = bool(train)
        self.transform, self.target_transform = transform, target_transform
        if download:
            self.download()
        try:
            self.data, self.targets = load_mnist(self.root, self.train, files=self.resources,
                                                 name=type(self).__name__)
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"{exc}, or pass download=True on a machine with network "
                                    f"(mirror: {self.mirrors[0]})") from None

    def _files(self):
        return [self.resources[(self.train, part)] for part in ("images", "labels")]

    def download(self):
        """Fetch this split's missing (or corrupted) files into ``root``."""
        missing = []
        for name, md5 in self._files():
            path = _find(self.root, name)
            if path is not None and (path.suffix != ".gz" or md5sum(path) == md5):
                continue
            missing.append((name, md5))
        errors = []
        for name, md5 in missing:
            try:
                download_url([m + name for m in self.mirrors], self.root / name, md5)
            except DownloadError as exc:
                errors.append(str(exc))
        if errors:
            raise DownloadError(_offline_message(type(self).__name__, [n for n, _ in missing], self.root,
                                                 ", ".join(self.mirrors), "\n".join(errors)))


class FashionMNIST(MNIST):
    """Zalando's Fashion-MNIST: MNIST's format and sizes, ten kinds of clothing."""

    mirrors = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
    resources = {
        (True, "images"): ("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        (True, "labels"): ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
        (False, "images"): ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
        (False, "labels"): ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"),
    }
    classes = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
               "Bag", "Ankle boot"]
    folder_name = "fashion-mnist"


# ================================================================ CIFAR
def read_cifar_binary(path, label_bytes=1):
    """(images uint8 (N, 32, 32, 3), labels int64 (N, label_bytes)) from a CIFAR binary file.

    Each record is ``label_bytes`` label bytes (CIFAR-100: coarse then fine) and
    3072 pixel bytes: the 1024 red values of the 32x32 image row by row, then the
    green, then the blue.
    """
    record = label_bytes + 3 * 32 * 32
    raw = np.fromfile(str(path), dtype=np.uint8)
    if raw.size == 0 or raw.size % record:
        raise ValueError(f"{path}: {raw.size} bytes is not a whole number of {record}-byte CIFAR records "
                         f"({label_bytes} label byte(s) + 3072 pixels); truncated, or the wrong CIFAR version?")
    rows = raw.reshape(-1, record)
    labels = rows[:, :label_bytes].astype(np.int64)
    images = np.ascontiguousarray(rows[:, label_bytes:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    return images, labels


class CIFAR10(_VisionDataset):
    """CIFAR-10 from the binary version (``cifar-10-batches-bin``): 50,000 train /
    10,000 test RGB images, uint8 (32, 32, 3).

    ``root``: a folder holding ``cifar-10-batches-bin/`` (as the archive unpacks) or
    the .bin files themselves; default ``data_home() / 'cifar10'``.
    """

    url = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
    md5 = "c32a1d4ab5d03f1284b67883e8d87530"
    base_folder = "cifar-10-batches-bin"
    train_list = [f"data_batch_{i}.bin" for i in range(1, 6)]
    test_list = ["test_batch.bin"]
    meta_files = ["batches.meta.txt"]
    label_bytes = 1
    num_classes = 10
    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    folder_name = "cifar10"

    def __init__(self, root=None, train=True, transform=None, target_transform=None, download=False):
        self.root = _folder(root, self.folder_name)
        self.train = bool(train)
        self.transform, self.target_transform = transform, target_transform
        names = self.train_list if self.train else self.test_list
        if download and self._data_folder(names) is None:
            self.download()
        folder = self._data_folder(names)
        if folder is None:
            raise FileNotFoundError(
                f"{type(self).__name__} {'train' if self.train else 'test'} files not found in {self.root}: "
                f"put {', '.join(names)} (from {self.url}, the binary version) in {self.root / self.base_folder} "
                "or pass download=True on a machine with network")
        images, labels = zip(*(read_cifar_binary(folder / n, self.label_bytes) for n in names))
        self.data = np.concatenate(images)
        labels = np.concatenate(labels)
        self._set_targets(labels, folder)

    def _set_targets(self, labels, folder):
        self.targets = labels[:, 0]
        self._check_range(self.targets, self.num_classes, folder, "label")
        self.classes = self._read_names(folder / self.meta_files[0], type(self).classes)

    @staticmethod
    def _check_range(labels, n, folder, what):
        if labels.size and labels.max() >= n:
            raise ValueError(f"{folder}: {what} {int(labels.max())} out of range for {n} classes "
                             "(is this the right CIFAR version?)")

    @staticmethod
    def _read_names(path, default):
        if path.exists():
            names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
            if len(names) == len(default):
                return names
        return list(default)

    def _data_folder(self, names):
        for folder in (self.root / self.base_folder, self.root):
            if all((folder / n).exists() for n in names):
                return folder
        return None

    def download(self):
        """Fetch the binary archive (md5-checked) and unpack only the expected files."""
        archive = self.root / self.url.rsplit("/", 1)[-1]
        try:
            if not (archive.exists() and md5sum(archive) == self.md5):
                download_url([self.url], archive, self.md5)
        except DownloadError as exc:
            raise DownloadError(_offline_message(type(self).__name__, [archive.name], self.root, self.url,
                                                 str(exc))) from None
        wanted = set(self.train_list + self.test_list + self.meta_files)
        target = self.root / self.base_folder
        target.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                name = pathlib.PurePosixPath(member.name)
                # only regular files we expect, written to paths we build: no "../" or links can escape
                if member.isfile() and name.name in wanted and name.parent.name == self.base_folder:
                    tmp = target / f".{name.name}.{secrets.token_hex(4)}.part"
                    with tar.extractfile(member) as src, open(tmp, "wb") as out:
                        while block := src.read(1 << 20):
                            out.write(block)
                    os.replace(tmp, target / name.name)


class CIFAR100(CIFAR10):
    """CIFAR-100 from the binary version (``cifar-100-binary``): 100 fine classes in
    20 coarse superclasses. ``targets`` are the fine labels, ``coarse_targets`` the
    coarse ones; ``classes`` / ``coarse_classes`` their names."""

    url = "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz"
    md5 = "03b5dce01913d631647c71ecec9e9cb8"
    base_folder = "cifar-100-binary"
    train_list = ["train.bin"]
    test_list = ["test.bin"]
    meta_files = ["fine_label_names.txt", "coarse_label_names.txt"]
    label_bytes = 2
    num_classes = 100
    classes = [
        "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle",
        "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle",
        "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur",
        "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard",
        "lamp", "lawn_mower", "leopard", "lion", "lizard", "lobster", "man", "maple_tree", "motorcycle",
        "mountain", "mouse", "mushroom", "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear",
        "pickup_truck", "pine_tree", "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon",
        "ray", "road", "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail",
        "snake", "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank",
        "telephone", "television", "tiger", "tractor", "train", "trout", "tulip", "turtle", "wardrobe",
        "whale", "willow_tree", "wolf", "woman", "worm"]
    coarse_classes = [
        "aquatic_mammals", "fish", "flowers", "food_containers", "fruit_and_vegetables",
        "household_electrical_devices", "household_furniture", "insects", "large_carnivores",
        "large_man-made_outdoor_things", "large_natural_outdoor_scenes", "large_omnivores_and_herbivores",
        "medium_mammals", "non-insect_invertebrates", "people", "reptiles", "small_mammals", "trees",
        "vehicles_1", "vehicles_2"]
    folder_name = "cifar100"

    def _set_targets(self, labels, folder):
        self.coarse_targets, self.targets = labels[:, 0], labels[:, 1]
        self._check_range(self.targets, 100, folder, "fine label")
        self._check_range(self.coarse_targets, 20, folder, "coarse label")
        self.classes = self._read_names(folder / self.meta_files[0], type(self).classes)
        self.coarse_classes = self._read_names(folder / self.meta_files[1], type(self).coarse_classes)


# ================================================================ image folders
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


class _ImageFiles(Dataset):
    """Images read from disk on demand: ``samples`` lists (path, class index),
    ``loader(path)`` reads one (default ``imread``: OpenCV, RGB uint8)."""

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, index):
        path, target = self.samples[index]
        img = self.loader(path)
        if self.transform is not None:
            img = self.transform(img)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return img, target


class ImageFolder(_ImageFiles):
    """Images sorted into one folder per class (``root/cat/001.jpg``, ``root/dog/xyz.png``).

    Classes are the sub-folder names in sorted order (``classes``, ``class_to_idx``);
    ``samples`` lists (path, class index) over each class folder (recursively,
    sorted). Files are read by ``loader`` (default: ``imread``, OpenCV, converted
    from BGR to RGB: (H, W, 3) uint8). ``extensions`` filters the file names
    (case-insensitive), or ``is_valid_file(path)`` decides. CUB-200-2011's
    ``images/`` folder is such a tree (see also ``CUB200`` for its official split).
    """

    def __init__(self, root, transform=None, target_transform=None, loader=None, is_valid_file=None,
                 extensions=IMG_EXTENSIONS, allow_empty=False):
        self.root = pathlib.Path(root).expanduser()
        if not self.root.is_dir():
            raise FileNotFoundError(f"ImageFolder: {self.root} is not a folder")
        self.transform, self.target_transform = transform, target_transform
        self.loader = loader if loader is not None else imread
        self.extensions = tuple(e.lower() for e in extensions) if extensions else None
        self.classes = sorted(e.name for e in os.scandir(self.root) if e.is_dir())
        if not self.classes:
            raise FileNotFoundError(f"ImageFolder: no class folders in {self.root} "
                                    "(expected root/<class name>/<image files>)")
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        valid = is_valid_file if is_valid_file is not None else self._has_extension
        self.samples, empty = [], []
        for cls in self.classes:
            found = []
            for folder, subdirs, files in os.walk(self.root / cls, followlinks=True):
                subdirs.sort()
                found += [(os.path.join(folder, f), self.class_to_idx[cls]) for f in sorted(files)
                          if valid(os.path.join(folder, f))]
            if not found:
                empty.append(cls)
            self.samples += found
        if empty and not allow_empty:
            raise FileNotFoundError(f"ImageFolder: no valid image in the class folder(s) {empty} of {self.root}; "
                                    f"accepted extensions: {self.extensions} (or pass allow_empty=True)")
        self.imgs = self.samples
        self.targets = [t for _, t in self.samples]

    def _has_extension(self, path):
        return path.lower().endswith(self.extensions)

class CUB200(_ImageFiles):
    """Caltech-UCSD Birds-200-2011 with its official train/test split (5,994 / 5,794).

    ``root``: the ``CUB_200_2011`` folder (or its parent) holding ``images.txt``,
    ``image_class_labels.txt``, ``train_test_split.txt``, ``classes.txt`` and
    ``images/``. There is no download (get the archive from Caltech's page).
    Images are (H, W, 3) RGB uint8 via OpenCV, labels 0..199; ``boxes`` holds
    each image's bird box as (x1, y1, x2, y2) when ``bounding_boxes.txt`` exists.
    The notes' recipe: ``transforms.Resize((512, 512))`` then ``RandomCrop(448)``.
    """

    _needed = ("images.txt", "image_class_labels.txt", "train_test_split.txt", "classes.txt")

    def __init__(self, root, train=True, transform=None, target_transform=None, loader=None):
        root = pathlib.Path(root).expanduser()
        if not (root / "images.txt").exists() and (root / "CUB_200_2011").is_dir():
            root = root / "CUB_200_2011"
        missing = [n for n in self._needed if not (root / n).exists()]
        if missing:
            raise FileNotFoundError(f"CUB200: {', '.join(missing)} not found in {root}; unpack "
                                    "CUB_200_2011.tgz (https://www.vision.caltech.edu/datasets/cub_200_2011/) "
                                    "and pass root= its CUB_200_2011 folder")
        self.root, self.train = root, bool(train)
        self.transform, self.target_transform = transform, target_transform
        self.loader = loader if loader is not None else imread
        paths = dict(self._table(root / "images.txt"))
        labels = {k: self._number(v, root / "image_class_labels.txt") - 1
                  for k, v in self._table(root / "image_class_labels.txt")}
        is_train = {}
        for number, k, v in self._lines(root / "train_test_split.txt"):
            if v not in ("0", "1"):     # anything else would silently count as test
                raise ValueError(f"CUB200: {root / 'train_test_split.txt'} line {number}: split {v!r}; expected "
                                 "1 (train) or 0 (test)")
            is_train[k] = v == "1"
        classes = self._table(root / "classes.txt")
        self.classes = [name for _, name in sorted(classes, key=lambda kv: self._number(kv[0], root / "classes.txt"))]
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        for table, name in ((labels, "image_class_labels.txt"), (is_train, "train_test_split.txt")):
            absent = [k for k in paths if k not in table]
            if absent:
                raise ValueError(f"CUB200: {len(absent)} image id(s) of images.txt are not in {root / name} "
                                 f"(first: {absent[0]})")
        bad = [k for k in paths if not 0 <= labels[k] < len(self.classes)]
        if bad:
            raise ValueError(f"CUB200: image {bad[0]} has class {labels[bad[0]] + 1} in image_class_labels.txt; "
                             f"classes.txt lists {len(self.classes)}")
        ids = sorted((k for k in paths if is_train[k] == self.train),
                     key=lambda k: self._number(k, root / "images.txt"))
        self.samples = [(str(root / "images" / paths[k]), labels[k]) for k in ids]
        absent = [p for p, _ in self.samples if not os.path.isfile(p)]
        if absent:
            raise FileNotFoundError(f"CUB200: {len(absent)} of the {len(self.samples)} "
                                    f"{'training' if self.train else 'test'} images listed in images.txt are "
                                    f"not under {root / 'images'} (first: {absent[0]})")
        self.targets = [t for _, t in self.samples]
        box_file = root / "bounding_boxes.txt"
        if box_file.exists():
            boxes = {k: self._box(v, box_file, number) for number, k, v in self._lines(box_file)}
            absent = [k for k in ids if k not in boxes]
            if absent:
                raise ValueError(f"CUB200: {len(absent)} image id(s) of images.txt have no box in {box_file} "
                                 f"(first: {absent[0]})")
            xywh = np.array([boxes[k] for k in ids], dtype=np.float32).reshape(-1, 4)
            self.boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
        else:
            self.boxes = None

    @classmethod
    def _table(cls, path):
        """Rows 'id value...' of a CUB list file as (id, rest) pairs."""
        return [(key, rest) for _, key, rest in cls._lines(path)]

    @staticmethod
    def _lines(path):
        """Rows 'id value...' of a CUB list file as (line number, id, rest) triples."""
        rows = []
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if line.strip():
                key, _, rest = line.strip().partition(" ")
                if not rest.strip():
                    raise ValueError(f"CUB200: {path} line {number} is {line.strip()!r}; expected '<id> <value>'")
                rows.append((number, key, rest.strip()))
        return rows

    @staticmethod
    def _box(text, path, number):
        """[x, y, width, height] of one bounding_boxes.txt row; ValueError naming the file and line."""
        try:
            box = [float(v) for v in text.split()]
        except ValueError:
            raise ValueError(f"CUB200: {path} line {number}: {text!r} is not four numbers "
                             "(x y width height)") from None
        if len(box) != 4 or not all(np.isfinite(box)) or box[2] < 0 or box[3] < 0:
            raise ValueError(f"CUB200: {path} line {number}: {text!r}; expected x y width height "
                             "(four finite numbers, width and height >= 0)")
        return box

    @staticmethod
    def _number(text, path):
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"CUB200: {path} has {text!r} where a number belongs") from None

# ================================================================ offline digits
class Digits(_VisionDataset):
    """scikit-learn's 1,797 bundled 8x8 digits in MNIST's 28x28 frame (no network).

    The split is the CLI's: a seeded permutation, the last ``test_size`` images
    for testing. Images uint8 (28, 28), labels 0..9.
    """

    classes = MNIST.classes

    def __init__(self, train=True, transform=None, target_transform=None, test_size=300, split_seed=0):
        images, labels = load_digits_28()
        order = np.random.default_rng(split_seed).permutation(len(images))
        cut = len(images) - test_size
        keep = order[:cut] if train else order[cut:]
        self.train = bool(train)
        self.data, self.targets = images[keep], labels[keep]
        self.transform, self.target_transform = transform, target_transform
