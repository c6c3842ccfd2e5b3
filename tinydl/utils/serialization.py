"""``td.save`` / ``td.load``: checkpoints as .npz files that never run code.

``torch.save`` pickles, and unpickling a file can execute anything its author
wanted. A tinydl checkpoint is a plain NumPy .npz (a zip of .npy arrays):

  * every array (a Tensor's data, a NumPy array, a NumPy scalar) is one entry,
    named ``a0``, ``a1``, ...; tensors over one array (tied weights) share one
    entry, and load sharing one array again, as with ``torch.save``;
  * the structure around them — dicts (keys of any supported type: the integer
    keys of an optimizer's state stay integers), lists, tuples, strings,
    numbers, booleans, None — is one JSON document stored as bytes in the entry
    ``__tinydl_structure__``, where arrays appear as references to their entries.

Loading reads the JSON and the arrays with ``np.load(allow_pickle=False)``: an
entry holding Python objects is refused, never unpickled.

Saving is atomic: the file is written under a temporary name in the same
folder, flushed to disk, then renamed over the target, so a crash or an error
midway never leaves a half-written checkpoint in place of a good one. The
temporary name carries the writer's process id; a process killed mid-write
leaves its temporary file behind, and the next save of the same file removes it.

Every way a file can fail to load as a checkpoint (not an .npz, a truncated
zip, a damaged or hostile structure) raises one error type, ``CheckpointError``
(a ValueError), naming the file and what is wrong.
"""
import contextlib
import glob
import json
import os
import secrets
import zipfile
import zlib
from collections import OrderedDict

import numpy as np

from .. import backend
from ..tensor import Tensor

__all__ = ["save", "load", "CheckpointError", "atomic_file"]

STRUCTURE_KEY = "__tinydl_structure__"
FORMAT = "tinydl-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A file that is not a readable checkpoint, or one that does not fit what it is loaded into."""


# ================================================================ save
class _Encoder:
    """Turns a Python object into a JSON-able tree plus a dict of arrays."""

    def __init__(self):
        self.arrays = {}
        self.stored = {}            # id of an array already stored -> (its entry, the array)

    def _store(self, array, where):
        """The entry of ``array`` (a device array is copied to the host): one entry per array,
        so tensors over one array (tied weights: a Parameter under two names) load sharing it."""
        seen = self.stored.get(id(array))
        if seen is not None:
            return seen[0]
        if array.dtype.hasobject:
            raise TypeError(f"save: the array at {where} holds Python objects (dtype object); "
                            "only numeric and boolean arrays can be saved")
        name = f"a{len(self.arrays)}"
        self.arrays[name] = backend.to_host(array)
        self.stored[id(array)] = name, array        # (holding it: its id is not reused meanwhile)
        return name

    def encode(self, obj, where):
        # bool before int (bool is an int), NumPy scalars before float (np.float64 is a float).
        if obj is None or isinstance(obj, (bool, str)):
            return obj
        if isinstance(obj, np.generic):
            return {"type": "scalar", "array": self._store(np.asarray(obj), where)}
        if isinstance(obj, (int, float)):
            return obj
        if isinstance(obj, Tensor):
            node = {"type": "tensor", "array": self._store(obj.array, where),
                    "requires_grad": bool(obj.requires_grad), "device": str(obj.device)}
            if _is_parameter(obj):
                node["type"] = "parameter"
            return node
        if isinstance(obj, np.ndarray) or backend.is_cupy_array(obj):
            return {"type": "ndarray", "array": self._store(obj, where)}
        if isinstance(obj, (dict, OrderedDict)):
            kind = "odict" if isinstance(obj, OrderedDict) else "dict"
            items = []
            for k, v in obj.items():
                key_where = f"{where}[{k!r}]"
                if not _is_plain_key(k):
                    raise TypeError(f"save: unsupported dict key {k!r} of type {type(k).__name__} at {where}; "
                                    "keys may be str, int, float, bool, None or tuples of these")
                items.append([self.encode(k, key_where), self.encode(v, key_where)])
            return {"type": kind, "items": items}
        if isinstance(obj, (list, tuple)):
            kind = "list" if isinstance(obj, list) else "tuple"
            return {"type": kind, "items": [self.encode(v, f"{where}[{i}]") for i, v in enumerate(obj)]}
        hint = ""
        if _is_module(obj):
            hint = " (save its state_dict() instead: a Module is code, not data)"
        elif hasattr(obj, "state_dict"):
            hint = " (save its state_dict() instead)"
        raise TypeError(f"save: cannot save an object of type {type(obj).__module__}.{type(obj).__qualname__} "
                        f"at {where}{hint}; supported: Tensor, NumPy/CuPy arrays and scalars, dict, list, "
                        "tuple, str, int, float, bool, None")


def _is_plain_key(k):
    if k is None or isinstance(k, (str, int, float, bool)):
        return True
    return isinstance(k, tuple) and all(_is_plain_key(e) for e in k)


def _is_parameter(t):
    from ..nn.parameter import Parameter
    return isinstance(t, Parameter)


def _is_module(obj):
    from ..nn.module import Module
    return isinstance(obj, Module)


def save(obj, f):
    """Save ``obj`` (nested dicts/lists/tuples of Tensors, arrays, numbers, strings,
    None: a state_dict, an optimizer's state_dict, a whole checkpoint) to ``f``.

    ``f`` is a path (str or pathlib.Path, written exactly as given: no ``.npz`` is
    appended) or a binary file object. A path is written atomically. Tensors on
    'cuda' are copied to the host. Unsupported objects raise TypeError naming
    where they are (e.g. ``obj['optimizer']['state'][0]``) before anything is written.
    """
    encoder = _Encoder()
    tree = encoder.encode(obj, "obj")
    doc = json.dumps({"format": FORMAT, "version": VERSION, "root": tree}, allow_nan=True)
    entries = dict(encoder.arrays)
    entries[STRUCTURE_KEY] = np.frombuffer(doc.encode("utf-8"), dtype=np.uint8)

    if hasattr(f, "write"):
        np.savez(f, **entries)
        return
    path = os.fspath(f)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"save: the folder {folder!r} does not exist (saving to {path!r})")
    with atomic_file(path) as out:
        np.savez(out, **entries)   # through a file object: np.savez adds no suffix


@contextlib.contextmanager
def atomic_file(path, mode="wb"):
    """``with atomic_file(path) as f: f.write(...)``: ``path`` holds either its old content
    or all of the new one, whatever happens midway (an exception, a kill, a power cut).

    The data goes to ``.<name>.<pid>.<random>.tmp`` in the same folder, is flushed to
    disk, and the temporary file is renamed over ``path`` (over a link's target, not the
    link). Temporary files of the same
    ``path`` left by writers that died (their process is gone) are removed first.
    """
    path = os.path.realpath(os.fspath(path))     # through a symbolic link: its target is written
    folder, name = os.path.split(path)
    _remove_orphans(folder, name)
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.{secrets.token_hex(6)}.tmp")
    # os.open with mode 0o666 lets the umask decide the permissions, as for a normal file.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, mode) as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_folder(folder)


def _remove_orphans(folder, name):
    """Delete the temporary files of ``name`` whose writer is dead (a killed save)."""
    for tmp in glob.glob(os.path.join(glob.escape(folder), f".{glob.escape(name)}.*.tmp")):
        pid = os.path.basename(tmp)[len(name) + 2:].split(".")[0]
        if pid.isdigit() and _alive(int(pid)):
            continue    # a live writer (this process's other threads included) is still at work
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _alive(pid):
    """Whether process ``pid`` exists (when it cannot be told, as on Windows: yes)."""
    if os.name != "posix":
        return True         # os.kill(pid, 0) would terminate the process on Windows
    try:
        os.kill(pid, 0)     # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except OverflowError:
        return False        # too big to be a process id
    except OSError:
        return True         # it exists but is not ours
    return True


def _fsync_folder(folder):
    # Makes the rename itself durable on POSIX; not possible (nor needed) on Windows.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ================================================================ load
class _Decoder:
    def __init__(self, npz, source, device):
        self.npz = npz
        self.names = set(npz.files)
        self.source = source
        self.device = device
        self.loaded = {}            # entry -> its array (on the device): entries shared stay shared

    def array(self, node):
        name = node.get("array")
        if not isinstance(name, str) or name not in self.names or name == STRUCTURE_KEY:
            raise CheckpointError(f"load: {self.source} is corrupt: the structure refers to a missing array {name!r}")
        if name not in self.loaded:
            self.loaded[name] = self._read(name)
        return self.loaded[name]

    def _read(self, name):
        try:
            array = self.npz[name]
        except ValueError as exc:
            if "allow_pickle" not in str(exc):     # a damaged .npy header or body
                raise CheckpointError(f"load: entry {name!r} of {self.source} is corrupt ({exc})") from exc
            raise CheckpointError(f"load: entry {name!r} of {self.source} holds pickled Python objects; "
                                  "tinydl never unpickles (it could run arbitrary code)") from exc
        if not isinstance(array, np.ndarray):      # NpzFile hands out raw bytes for non-.npy members
            raise CheckpointError(f"load: entry {name!r} of {self.source} is not a .npy array")
        return array

    def decode(self, node):
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        if not isinstance(node, dict):
            raise CheckpointError(f"load: {self.source} is corrupt: unexpected {type(node).__name__} in the structure")
        kind = node.get("type")
        if kind in ("list", "tuple"):
            items = [self.decode(v) for v in node["items"]]
            return items if kind == "list" else tuple(items)
        if kind in ("dict", "odict"):
            out = OrderedDict() if kind == "odict" else {}
            for k, v in node["items"]:
                key, value = self.decode(k), self.decode(v)
                try:
                    out[key] = value
                except TypeError as exc:   # an unhashable key: not something save writes
                    raise CheckpointError(f"load: {self.source} is corrupt: bad dict key {key!r}") from exc
            return out
        if kind == "ndarray":
            return self.array(node)
        if kind == "scalar":
            return self.array(node)[()]
        if kind in ("tensor", "parameter"):
            data = self.array(node)
            if self.device is not None and self.device.type != "cpu":
                data = self.loaded[node["array"]] = backend.to_device(data, self.device)
            requires_grad = bool(node.get("requires_grad", False))
            if kind == "parameter":
                from ..nn.parameter import Parameter
                return Parameter(data, requires_grad=requires_grad)
            return Tensor(data, requires_grad=requires_grad)
        raise CheckpointError(f"load: {self.source} is corrupt: unknown node type {kind!r}")


_ZIP_MAGIC, _NPY_MAGIC = b"PK\x03\x04", b"\x93NUMPY"


def load(f, map_location=None, weights_only=None):
    """Load what ``save`` wrote: Tensors come back as Tensors (on 'cpu', or on
    ``map_location`` such as 'cuda'), NumPy/CuPy arrays as NumPy arrays, and the
    containers and numbers as they were (integer dict keys included).

    ``f`` is a path or a binary file object. The file is read with
    ``allow_pickle=False``: no code in it is ever executed (``weights_only`` is
    accepted for PyTorch compatibility; tinydl always behaves as weights_only).
    An .npz not written by ``save`` loads as a dict of its arrays. A file that
    cannot be read as a checkpoint raises ``CheckpointError`` naming it and the fault.
    """
    device = None if map_location is None else backend.parse_device(map_location)
    source = repr(os.fspath(f)) if not hasattr(f, "read") else "the file object"
    try:
        return _load(f, source, device)
    except RecursionError:
        raise CheckpointError(f"load: {source} is corrupt: its structure is nested too deeply") from None
    except (zipfile.BadZipFile, EOFError, zlib.error, KeyError, IndexError, TypeError, AttributeError,
            UnicodeDecodeError) as exc:
        raise CheckpointError(f"load: {source} is unreadable: truncated, damaged or not written by td.save "
                              f"({type(exc).__name__}: {exc})") from exc
    except ValueError as exc:
        if isinstance(exc, CheckpointError):
            raise
        raise CheckpointError(f"load: {source} is unreadable: corrupt ({exc})") from exc


def _load(f, source, device):
    head = _peek(f, 6)
    if head[:4] != _ZIP_MAGIC:
        if head == _NPY_MAGIC:
            what = "a single .npy array (read it with numpy.load)"
        elif head[:1] == b"\x80":
            what = "a Python pickle (as torch.save writes); tinydl never unpickles (it could run arbitrary code)"
        else:
            what = f"not an .npz file (it starts with {head!r})"
        raise CheckpointError(f"load: {source} is corrupt or not a tinydl checkpoint: {what}")
    npz = np.load(f, allow_pickle=False)
    with npz:
        if STRUCTURE_KEY not in npz.files:
            decoder = _Decoder(npz, source, device)
            return {name: decoder.array({"array": name}) for name in npz.files}
        raw = npz[STRUCTURE_KEY]
        if raw.dtype != np.uint8 or raw.ndim != 1:
            raise CheckpointError(f"load: {source} is corrupt: bad {STRUCTURE_KEY} entry")
        try:
            doc = json.loads(raw.tobytes().decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"load: {source} is corrupt: unreadable structure ({exc})") from exc
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise CheckpointError(f"load: {source} is not a tinydl checkpoint")
        if not isinstance(doc.get("version", 0), int) or doc.get("version", 0) > VERSION:
            raise CheckpointError(f"load: {source} was written by a newer tinydl (format version {doc['version']})")
        return _Decoder(npz, source, device).decode(doc["root"])


def _peek(f, n):
    """The first ``n`` bytes of a path or a seekable file object, leaving its position as it was."""
    if not hasattr(f, "read"):
        with open(f, "rb") as fh:
            return fh.read(n)
    start = f.tell()
    head = f.read(n)
    f.seek(start)
    return head
