"""MNIST in its original IDX format (the files LeCun's site distributes).

An IDX file is a big-endian header -- two zero bytes, a type code (0x08 for
unsigned bytes), the number of dimensions -- then one 32-bit size per
dimension, then the raw values. The four MNIST files are gzipped IDX files.
"""
import gzip
import hashlib
import pathlib

import numpy as np

# md5 of the canonical gzipped files, so a truncated download is caught early
FILES = {
    (True, "images"): ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    (True, "labels"): ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
    (False, "images"): ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
    (False, "labels"): ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
}
_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path):
    """The array stored in an IDX file (``.gz`` or raw)."""
    path = pathlib.Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise ValueError(f"{path}: not an IDX file (header {raw[:4].hex()})")
    ndim = raw[3]
    shape = tuple(int(s) for s in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    body = 4 + 4 * ndim
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - body != expected:
        raise ValueError(f"{path}: header says shape {shape} ({expected} bytes) "
                         f"but the file holds {len(raw) - body} bytes")
    return np.frombuffer(raw, dtype, offset=body).reshape(shape).astype(dtype.newbyteorder("="))


class ChecksumError(ValueError):
    """A file's checksum differs from the published one (truncated or corrupted)."""


def md5sum(path, chunk=1 << 20):
    """Hex md5 of a file, read in chunks (the CIFAR archives are 160 MB)."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def check_md5(path, md5):
    """Raise ChecksumError naming the file when its md5 is not ``md5``."""
    digest = md5sum(path)
    if digest != md5:
        raise ChecksumError(f"{path}: md5 {digest} differs from the canonical {md5} "
                            "(truncated or corrupted download? delete it and fetch it again)")


def _find(root, name):
    """``name`` in ``root``, gzipped or not."""
    for candidate in (root / name, root / name[:-3]):
        if candidate.exists():
            return candidate
    return None


def load_mnist(root, train=True, verify=True, files=None, name="MNIST"):
    """(images uint8 (N, 28, 28), labels int64 (N,)) from the IDX files in ``root``.

    Only the split asked for is needed: ``train=False`` works with just the two
    t10k files. ``files`` maps (train, "images"/"labels") to (file name, md5 of
    the .gz) and defaults to MNIST's (Fashion-MNIST passes its own). With
    ``verify``, a gzipped file must have the published md5; an uncompressed one
    is checked by its IDX header and size only.
    """
    files = FILES if files is None else files
    root = pathlib.Path(root).expanduser()
    arrays = []
    for part in ("images", "labels"):
        filename, md5 = files[(train, part)]
        path = _find(root, filename)
        if path is None:
            wanted = ", ".join(files[(train, p)][0] for p in ("images", "labels"))
            raise FileNotFoundError(f"{name} {'train' if train else 'test'} files not found in {root}: "
                                    f"put {wanted} (gzipped or not) in that folder")
        if verify and path.suffix == ".gz":
            check_md5(path, md5)
        arrays.append((path, read_idx(path)))
    (image_path, images), (label_path, labels) = arrays
    _check_mnist(name, image_path, images, label_path, labels)
    return images, labels.astype(np.int64)


def _check_mnist(name, image_path, images, label_path, labels, size=28, classes=10):
    """Refuse, at load, files that would fail deep in training: swapped or foreign files,
    images that are not (N, 28, 28) uint8, labels outside 0..9."""
    if images.ndim == 1 and labels.ndim == 3:
        raise ValueError(f"{name}: {image_path} holds labels and {label_path} images: the two files are swapped")
    if images.ndim != 3 or images.shape[1:] != (size, size) or images.dtype != np.uint8:
        raise ValueError(f"{name}: {image_path} holds {images.dtype} of shape {images.shape}; "
                         f"{name} images are uint8 (N, {size}, {size})")
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise ValueError(f"{name}: {label_path} holds {labels.dtype} of shape {labels.shape}; "
                         f"{name} labels are uint8 (N,)")
    if len(images) != len(labels):
        raise ValueError(f"{name}: {len(images)} images in {image_path} but {len(labels)} labels in {label_path}")
    if labels.size and labels.max() >= classes:
        bad = int(np.argmax(labels >= classes))
        raise ValueError(f"{name}: {label_path} has label {int(labels[bad])} at index {bad}; "
                         f"labels must be 0..{classes - 1}")
