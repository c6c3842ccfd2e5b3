"""td.save / td.load: .npz checkpoints that round-trip structure and dtypes and never unpickle."""
import builtins
import io
import os
import pathlib
import zipfile
from collections import OrderedDict

import numpy as np
import pytest

import tinydl as td
import tinydl.nn as nn


def _same(a, b):
    """Deep equality that also checks types and dtypes."""
    assert type(a) is type(b), (type(a), type(b))
    if isinstance(a, td.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and a.requires_grad == b.requires_grad
        np.testing.assert_array_equal(a.array, b.array)
    elif isinstance(a, (np.ndarray, np.generic)):
        assert a.dtype == b.dtype and np.shape(a) == np.shape(b)
        np.testing.assert_array_equal(a, b)
    elif isinstance(a, dict):
        assert list(a.keys()) == list(b.keys())
        assert [type(k) for k in a] == [type(k) for k in b]
        for k in a:
            _same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _same(x, y)
    elif isinstance(a, float) and np.isnan(a):
        assert np.isnan(b)
    else:
        assert a == b


def test_roundtrip_nested_structure(tmp_path):
    obj = {
        "model": OrderedDict([("fc.weight", td.randn(3, 4)), ("fc.bias", td.zeros(3, dtype=td.float64))]),
        "optimizer": {
            "state": {0: {"step": 3, "momentum_buffer": td.ones(3, 4)}, 1: {}},      # int keys
            "param_groups": [{"lr": 0.1, "betas": (0.9, 0.999), "params": [0, 1], "nesterov": False,
                              "name": None}],
        },
        "epoch": 7, "best": 0.875, "nan": float("nan"), "inf": float("inf"), "tag": "résumé ✓",
        "history": [np.float32(0.5), np.int64(3), np.bool_(True)],
        "arrays": [np.arange(6, dtype=np.int32).reshape(2, 3), np.array(2.5), np.zeros((0, 4), np.float16),
                   np.array([True, False]), np.asfortranarray(np.arange(6.0).reshape(2, 3))],
        "scalar_tensor": td.tensor(4.0), "int_tensor": td.tensor([1, 2, 3]), "bool_tensor": td.tensor([True]),
        "empty": {}, "empty_list": [], "empty_tuple": (), "nested_empty": {"a": {"b": []}},
        (1, "x"): "tuple key", 2.5: "float key", None: "none key", True: "bool key",
    }
    path = tmp_path / "ckpt.npz"
    td.save(obj, path)
    back = td.load(path)
    _same(obj, back)
    assert back["model"]["fc.weight"].dtype == np.float32             # float32 stays float32
    assert back["arrays"][1].shape == ()                              # 0-d arrays stay 0-d
    assert isinstance(back["history"][0], np.float32)
    assert type(back["model"]) is OrderedDict and type(back["optimizer"]) is dict
    assert list(back["optimizer"]["state"]) == [0, 1]


def test_tensors_and_parameters(tmp_path):
    p = nn.Parameter(td.randn(2, 2))
    t = td.randn(3, requires_grad=True)
    path = tmp_path / "t.npz"
    td.save({"p": p, "t": t, "y": t * 2, "frozen": nn.Parameter(td.ones(1), requires_grad=False)}, path)
    back = td.load(path)
    assert type(back["p"]) is nn.Parameter and back["p"].requires_grad
    assert type(back["t"]) is td.Tensor and back["t"].requires_grad and back["t"].is_leaf
    assert back["y"].is_leaf and back["y"].requires_grad   # a graph output comes back as a leaf
    assert not back["frozen"].requires_grad
    np.testing.assert_array_equal(back["p"].array, p.array)
    assert back["p"].device == "cpu"
    assert td.load(path, map_location="cpu")["t"].device == "cpu"


def test_model_state_dict_roundtrip(tmp_path):
    def make():
        model = nn.Sequential(nn.Linear(4, 5), nn.Sequential(nn.Linear(5, 3)))
        model.register_buffer("num_batches_tracked", td.tensor(12))
        return model
    a, b = make(), make()
    td.save(a.state_dict(), tmp_path / "model.npz")
    sd = td.load(str(tmp_path / "model.npz"))
    assert list(sd) == list(a.state_dict())
    b.load_state_dict(sd)
    x = td.randn(2, 4)
    np.testing.assert_array_equal(a(x).detach().numpy(), b(x).detach().numpy())
    assert b.num_batches_tracked.item() == 12 and b.num_batches_tracked.dtype == np.int64


def test_path_without_suffix_is_kept(tmp_path):
    path = tmp_path / "checkpoint"
    td.save({"x": np.ones(2)}, path)
    assert path.exists() and not (tmp_path / "checkpoint.npz").exists()
    assert sorted(os.listdir(tmp_path)) == ["checkpoint"]
    np.testing.assert_array_equal(td.load(path)["x"], np.ones(2))
    td.save([1], str(tmp_path / "other.pt"))
    assert td.load(str(tmp_path / "other.pt")) == [1]


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        td.save({}, tmp_path / "nope" / "x.npz")


def test_file_objects():
    buf = io.BytesIO()
    td.save({"w": td.ones(2, 3)}, buf)
    buf.seek(0)
    assert zipfile.is_zipfile(buf)
    buf.seek(0)
    back = td.load(buf)
    np.testing.assert_array_equal(back["w"].array, np.ones((2, 3), np.float32))


def test_unsupported_objects_name_the_key_path(tmp_path):
    path = tmp_path / "x.npz"
    with pytest.raises(TypeError, match=r"set at obj\['opt'\]\['state'\]\[0\]\[1\]"):
        td.save({"opt": {"state": {0: [1, {2}]}}}, path)
    with pytest.raises(TypeError, match="save its state_dict"):
        td.save({"model": nn.Linear(2, 2)}, path)
    with pytest.raises(TypeError, match=r"dtype object"):
        td.save({"a": np.array([None, 1], dtype=object)}, path)
    with pytest.raises(TypeError, match="unsupported dict key"):
        td.save({frozenset(): 1}, path)
    assert not path.exists()


def test_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.npz"
    td.save({"w": np.arange(3)}, path)
    before = path.read_bytes()
    # an unsupported object: refused before the file is touched
    with pytest.raises(TypeError):
        td.save({"w": np.arange(4), "bad": object()}, path)
    assert path.read_bytes() == before
    # a failure in the middle of writing: the old file stays, no temp file is left
    real_savez = np.savez

    def crash_midway(f, **arrays):
        f.write(b"PK\x03\x04 partial garbage")
        raise OSError("disk full")
    monkeypatch.setattr(np, "savez", crash_midway)
    with pytest.raises(OSError, match="disk full"):
        td.save({"w": np.arange(5)}, path)
    monkeypatch.setattr(np, "savez", real_savez)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["ckpt.npz"]
    np.testing.assert_array_equal(td.load(path)["w"], np.arange(3))
    td.save({"w": np.arange(5)}, path)       # and a successful save replaces it
    np.testing.assert_array_equal(td.load(path)["w"], np.arange(5))
    assert sorted(os.listdir(tmp_path)) == ["ckpt.npz"]


def test_saved_file_has_normal_permissions(tmp_path):
    if os.name != "posix":
        pytest.skip("POSIX permissions")
    umask = os.umask(0o022)
    try:
        td.save({}, tmp_path / "p.npz")
    finally:
        os.umask(umask)
    assert (tmp_path / "p.npz").stat().st_mode & 0o777 == 0o644


class _Exploit:
    """Unpickling this would run code."""

    def __reduce__(self):
        return (exec, ("import builtins; builtins._tinydl_pwned = True",))


def test_malicious_object_array_is_refused(tmp_path):
    path = tmp_path / "evil.npz"
    evil = np.empty(1, dtype=object)
    evil[0] = _Exploit()
    structure = td.utils.serialization
    doc = ('{"format": "tinydl-checkpoint", "version": 1, "root": {"type": "ndarray", "array": "a0"}}')
    np.savez(path, a0=evil, **{structure.STRUCTURE_KEY: np.frombuffer(doc.encode(), np.uint8)})
    with pytest.raises(ValueError, match="never unpickles"):
        td.load(path)
    assert not hasattr(builtins, "_tinydl_pwned")
    # a plain .npz with a pickled entry, and a bare pickle, are refused too
    np.savez(tmp_path / "plain.npz", x=evil)
    with pytest.raises(ValueError, match="pickle"):
        td.load(tmp_path / "plain.npz")
    import pickle
    (tmp_path / "model.pt").write_bytes(pickle.dumps({"x": _Exploit()}))
    with pytest.raises(ValueError, match="pickle"):
        td.load(tmp_path / "model.pt")
    assert not hasattr(builtins, "_tinydl_pwned")


def test_corrupt_or_foreign_files(tmp_path):
    np.savez(tmp_path / "plain.npz", w=np.ones(2), b=np.zeros(1, np.int8))
    plain = td.load(tmp_path / "plain.npz")                 # a plain .npz: its arrays by name
    assert sorted(plain) == ["b", "w"] and plain["b"].dtype == np.int8
    np.save(tmp_path / "single.npy", np.ones(2))
    with pytest.raises(ValueError, match="single .npy array"):
        td.load(tmp_path / "single.npy")
    key = td.utils.serialization.STRUCTURE_KEY
    doc = '{"format": "tinydl-checkpoint", "version": 1, "root": {"type": "tensor", "array": "a7"}}'
    np.savez(tmp_path / "dangling.npz", **{key: np.frombuffer(doc.encode(), np.uint8)})
    with pytest.raises(ValueError, match="missing array 'a7'"):
        td.load(tmp_path / "dangling.npz")
    doc = '{"format": "tinydl-checkpoint", "version": 99, "root": null}'
    np.savez(tmp_path / "future.npz", **{key: np.frombuffer(doc.encode(), np.uint8)})
    with pytest.raises(ValueError, match="newer tinydl"):
        td.load(tmp_path / "future.npz")


def test_load_accepts_pathlib_and_str(tmp_path):
    td.save((1, "a", None), pathlib.Path(tmp_path) / "t")
    assert td.load(str(tmp_path / "t")) == (1, "a", None)
    assert td.load(tmp_path / "t", weights_only=True) == (1, "a", None)


@pytest.mark.gpu
def test_cuda_tensors_are_saved_from_host_and_mapped_back(tmp_path):
    w = td.randn(3, 3, device="cuda")
    td.save({"w": w}, tmp_path / "g.npz")
    back = td.load(tmp_path / "g.npz")
    assert back["w"].device == "cpu"
    np.testing.assert_array_equal(back["w"].array, w.cpu().numpy())
    on_gpu = td.load(tmp_path / "g.npz", map_location="cuda")
    assert on_gpu["w"].device.type == "cuda"


# ================================================================ one error type for every bad file
def _structure_file(path, root_json):
    doc = '{"format": "tinydl-checkpoint", "version": 1, "root": ' + root_json + '}'
    with open(path, "wb") as f:     # a file object: np.savez adds no .npz suffix
        np.savez(f, **{td.utils.serialization.STRUCTURE_KEY: np.frombuffer(doc.encode(), np.uint8)})


def _npz_with_member(path, member_bytes):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("a.npy", member_bytes)


def _npy_bytes():
    buf = io.BytesIO()
    np.save(buf, np.arange(1000.0))
    return buf.getvalue()


_BAD_FILES = {
    "text file": (lambda p: p.write_text("root:x:0:0:root:/root:/bin/bash\n"),
                  r"is corrupt or not a tinydl checkpoint: not an \.npz file \(it starts with b'root:x'\)"),
    "empty file": (lambda p: p.write_bytes(b""), "not an .npz file"),
    "truncated zip": (lambda p: p.write_bytes(b"PK\x03\x04 truncated"), r"unreadable: .*\(BadZipFile"),
    "truncated npy member": (lambda p: _npz_with_member(p, _npy_bytes()[:500]),
                             r"entry 'a' of .* is corrupt \(EOF: reading array data"),
    "empty member": (lambda p: _npz_with_member(p, b""), "entry 'a' of .* is not a .npy array"),
    "structure without items": (lambda p: _structure_file(p, '{"type": "dict"}'), r"\(KeyError: 'items'\)"),
    "deep structure": (lambda p: _structure_file(p, '{"type": "list", "items": [' * 3000 + "]}" * 3000),
                       "nested too deeply"),
    "deep json": (lambda p: _structure_file(p, "[" * 100000 + "]" * 100000), "nested too deeply"),
}


@pytest.mark.parametrize("case", sorted(_BAD_FILES))
def test_every_bad_file_raises_checkpoint_error_naming_it(tmp_path, case):
    write, message = _BAD_FILES[case]
    path = tmp_path / "bad.ckpt"
    write(path)
    with pytest.raises(td.utils.serialization.CheckpointError, match=message) as info:
        td.load(path)
    assert "bad.ckpt" in str(info.value) and isinstance(info.value, ValueError)
    assert "allow_pickle" not in str(info.value) and "\n" not in str(info.value)


def test_a_bit_flip_inside_a_checkpoint_is_caught(tmp_path):
    path = tmp_path / "c.npz"
    td.save({"w": np.arange(10000.0)}, path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(td.utils.serialization.CheckpointError, match="c.npz' is unreadable.*Bad CRC"):
        td.load(path)


# ================================================================ killed saves leave no orphan for long
def test_orphans_of_dead_writers_are_removed_on_the_next_save(tmp_path):
    import subprocess
    import sys
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    dead_pid = int(dead.stdout)                                      # a process that has exited
    orphan = tmp_path / f".ckpt.npz.{dead_pid}.0123456789ab.tmp"
    legacy = tmp_path / ".ckpt.npz.a1b2c3d4e5f6.tmp"                # the name before pids were added
    live = tmp_path / f".ckpt.npz.{os.getppid()}.0123456789ab.tmp"  # a live writer's: kept
    other = tmp_path / f".other.npz.{dead_pid}.0123456789ab.tmp"     # another file's: not ours to judge
    for p in (orphan, legacy, live, other):
        p.write_bytes(b"half a checkpoint")
    td.save({"w": np.arange(3)}, tmp_path / "ckpt.npz")
    assert sorted(os.listdir(tmp_path)) == sorted(["ckpt.npz", live.name, other.name])


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symbolic links")
def test_save_through_a_symbolic_link_writes_its_target(tmp_path):
    """As PyTorch (and open()): the link stays a link, its target gets the new data."""
    target, link = tmp_path / "target.npz", tmp_path / "link.npz"
    td.save(td.ones(2), target)
    os.symlink(target, link)
    td.save(td.zeros(3), link)
    assert link.is_symlink() and td.load(target).shape == (3,)


def test_tensors_over_one_array_are_saved_once_and_load_sharing_it(tmp_path):
    """Tied weights (one Parameter under two names, as state_dict gives them): one entry in
    the file, and after loading, writing one changes the other, as with torch.save."""
    shared = nn.Parameter(td.randn(50, 40))
    net = nn.Sequential(nn.Linear(40, 50), nn.Linear(40, 50))
    net[0].weight = net[1].weight = shared
    td.save(net.state_dict(), tmp_path / "tied.npz")
    td.save({"a": td.randn(50, 40), "b": td.randn(50, 40)}, tmp_path / "two.npz")
    assert os.path.getsize(tmp_path / "tied.npz") < os.path.getsize(tmp_path / "two.npz")
    state = td.load(tmp_path / "tied.npz")
    state["0.weight"].array[0, 0] = 123.0
    assert state["1.weight"].array[0, 0] == 123.0
    assert state["0.bias"].array is not state["1.bias"].array
    t = td.randn(3)
    td.save([t, t, t.array], tmp_path / "same.npz")
    first, second, raw = td.load(tmp_path / "same.npz")
    assert first.array is second.array is raw
