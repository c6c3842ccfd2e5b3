"""Parity with PyTorch 2.13 for nn.init's version bumps and generator=, nn.utils (gradient
clipping, parameters <-> vector), the DataLoader's unbatched mode, new arguments and
IterableDataset, samplers' checks, random_split lengths, default_collate's container
types, Sequential + and *, and ParameterList / ParameterDict. Every case runs both."""
import math
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.utils.data as TD

import tinydl as td
import tinydl.data as DD

nn = td.nn


def _outcome(fn):
    """('ok', value) or ('error', None): both libraries must agree on which."""
    try:
        return "ok", fn()
    except (TypeError, ValueError, RuntimeError, IndexError, KeyError, NotImplementedError, AssertionError,
            AttributeError):    # (PyTorch asserts some loader options, and a missing ParameterDict key
        # is its AttributeError)
        return "error", None


# ---------------------------------------------------------------- nn.init
INIT_CALLS = [
    ("uniform_", (), {}), ("normal_", (), {}), ("constant_", (0.5,), {}), ("zeros_", (), {}), ("ones_", (), {}),
    ("eye_", (), {}), ("xavier_uniform_", (), {}), ("xavier_normal_", (), {}), ("kaiming_uniform_", (), {}),
    ("kaiming_normal_", (), {}), ("trunc_normal_", (), {}), ("orthogonal_", (), {}), ("sparse_", (0.5,), {}),
]


@pytest.mark.parametrize("name,args,kwargs", INIT_CALLS, ids=[c[0] for c in INIT_CALLS])
def test_init_bumps_version_backward_raises_in_both(name, args, kwargs):
    for lib, init, mk in ((torch, torch.nn.init, torch.tensor), (td, nn.init, td.tensor)):
        m = lib.nn.Linear(3, 3)
        x = mk([[1.0, 2.0, 3.0]], requires_grad=True)
        y = m(x)
        before = m.weight._version
        getattr(init, name)(m.weight, *args, **kwargs)
        assert m.weight._version > before, (lib.__name__, name)
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            y.sum().backward()


def test_dirac_bumps_version():
    for lib, init in ((torch, torch.nn.init), (td, nn.init)):
        w = lib.nn.Parameter(lib.zeros(2, 2, 3))
        v = w._version
        init.dirac_(w)
        assert w._version > v


@pytest.mark.parametrize("name", ["uniform_", "normal_", "trunc_normal_", "xavier_uniform_", "xavier_normal_",
                                  "kaiming_uniform_", "kaiming_normal_", "orthogonal_"])
def test_init_generator_keyword(name):
    t = torch.empty(4, 5)
    getattr(torch.nn.init, name)(t, generator=torch.Generator().manual_seed(0))
    a, b = td.empty(4, 5), td.empty(4, 5)
    getattr(nn.init, name)(a, generator=np.random.default_rng(3))
    getattr(nn.init, name)(b, generator=3)               # an int seed: the same draw
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert a.dtype == td.float32 and str(t.dtype) == "torch.float32"
    getattr(nn.init, name)(a, generator=None)
    with pytest.raises(TypeError, match=name):
        getattr(nn.init, name)(a, generator="seed")


def test_sparse_generator():
    t = torch.empty(10, 4)
    torch.nn.init.sparse_(t, 0.3, generator=torch.Generator().manual_seed(0))
    a = td.empty(10, 4)
    nn.init.sparse_(a, 0.3, generator=1)
    assert ((a.numpy() == 0).sum(0) == (t.numpy() == 0).sum(0)).all()      # 3 zeros per column in both


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("a,b", [(3.5, 5.0), (-5.0, -3.5), (10.0, 11.0), (0.1, 0.11), (-2.0, 2.0)])
def test_trunc_normal_narrow_and_tail_intervals(a, b, dtype):
    ref = torch.nn.init.trunc_normal_(torch.empty(20000, dtype=getattr(torch, dtype)), 0.0, 1.0, a, b)
    w = nn.init.trunc_normal_(td.empty(20000, dtype=getattr(td, dtype)), 0.0, 1.0, a, b).numpy()
    assert str(w.dtype) == dtype
    assert w.min() >= a and w.max() <= b
    width = b - a
    assert abs(w.mean() - ref.mean().item()) < 0.03 * width
    assert abs(w.std() - ref.std().item()) < 0.03 * width + 0.02


# ---------------------------------------------------------------- nn.utils
def _grads_pair(dtype, none_at=None, values=None):
    """The same parameters and grads in both libraries (grad None at ``none_at``)."""
    rng = np.random.default_rng(0)
    shapes = [(3, 4), (5,), (2, 2, 2)]
    tp, dp = [], []
    for i, shape in enumerate(shapes):
        w = rng.standard_normal(shape).astype(dtype)
        g = rng.standard_normal(shape).astype(dtype) * 3 if values is None else values[i].astype(dtype)
        t, d = torch.nn.Parameter(torch.from_numpy(w.copy())), nn.Parameter(td.tensor(w.copy()))
        if i != none_at:
            t.grad, d.grad = torch.from_numpy(g.copy()), td.tensor(g.copy())
        tp.append(t)
        dp.append(d)
    return tp, dp


def _same_grads(tp, dp, rtol):
    for t, d in zip(tp, dp):
        if t.grad is None:
            assert d.grad is None
        else:
            assert str(d.grad.dtype) == str(t.grad.dtype).replace("torch.", "")
            np.testing.assert_allclose(d.grad.numpy(), t.grad.numpy(), rtol=rtol, atol=1e-7)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("norm_type", [2.0, 1, math.inf, -math.inf, 3.0, 0.5, 0, "2"])
@pytest.mark.parametrize("max_norm", [0.5, 1e6])
@pytest.mark.parametrize("none_at", [None, 1])
def test_clip_grad_norm(dtype, norm_type, max_norm, none_at):
    tp, dp = _grads_pair(dtype, none_at)
    versions = [p.grad._version for p in dp if p.grad is not None]
    t_total = torch.nn.utils.clip_grad_norm_(tp, max_norm, norm_type=norm_type)
    d_total = nn.utils.clip_grad_norm_(dp, max_norm, norm_type=norm_type)
    assert isinstance(d_total, td.Tensor) and d_total.ndim == 0
    assert str(d_total.dtype) == str(t_total.dtype).replace("torch.", "")
    rtol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(d_total.item(), t_total.item(), rtol=rtol)
    _same_grads(tp, dp, rtol)
    assert all(p.grad._version > v for p, v in zip([p for p in dp if p.grad is not None], versions))


def test_clip_grad_norm_mixed_dtypes_single_tensor_and_empty():
    t1, t2 = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2, dtype=torch.float64))
    d1, d2 = nn.Parameter(td.ones(2)), nn.Parameter(td.ones(2, dtype=td.float64))
    t1.grad, t2.grad = torch.ones(2), torch.ones(2, dtype=torch.float64) * 2
    d1.grad, d2.grad = td.ones(2), td.ones(2, dtype=td.float64) * 2
    t_total, d_total = torch.nn.utils.clip_grad_norm_([t1, t2], 1.0), nn.utils.clip_grad_norm_([d1, d2], 1.0)
    assert str(d_total.dtype) == "float64" == str(t_total.dtype).replace("torch.", "")
    np.testing.assert_allclose(d_total.item(), t_total.item())
    _same_grads([t1, t2], [d1, d2], 1e-6)
    # a single Tensor, and a generator of parameters
    t_total, d_total = torch.nn.utils.clip_grad_norm_(t1, 0.1, 3), nn.utils.clip_grad_norm_(d1, 0.1, 3)
    np.testing.assert_allclose(d_total.item(), t_total.item(), rtol=1e-6)
    _same_grads([t1], [d1], 1e-6)
    lin_t, lin_d = torch.nn.Linear(2, 2), nn.Linear(2, 2)
    lin_t(torch.ones(1, 2)).backward(torch.tensor([[0.3, -1.2]]))       # a random-ish upstream: the
    lin_d(td.ones(1, 2)).backward(td.tensor([[0.3, -1.2]]))             # grads do not depend on the weights
    assert math.isclose(torch.nn.utils.clip_grad_norm_(lin_t.parameters(), 1.0).item(),
                        nn.utils.clip_grad_norm_(lin_d.parameters(), 1.0).item(), rel_tol=1e-6)
    # nothing to clip: tensor(0.) float32 in both
    t0, d0 = torch.nn.utils.clip_grad_norm_([], 1.0), nn.utils.clip_grad_norm_([], 1.0)
    assert t0.item() == d0.item() == 0.0 and str(d0.dtype) == "float32" and t0.dtype == torch.float32
    assert nn.utils.get_total_norm([]).item() == torch.nn.utils.get_total_norm([]).item()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("bad", [math.inf, math.nan])
def test_clip_grad_norm_nonfinite(dtype, bad):
    values = [np.full((3, 4), 0.5), np.array([1.0, bad, 2.0, 0.0, 1.0]), np.ones((2, 2, 2))]
    tp, dp = _grads_pair(dtype, values=values)
    with pytest.raises(RuntimeError, match="non-finite"):
        torch.nn.utils.clip_grad_norm_(tp, 1.0, error_if_nonfinite=True)
    with pytest.raises(RuntimeError, match="non-finite"):
        nn.utils.clip_grad_norm_(dp, 1.0, error_if_nonfinite=True)
    _same_grads(tp, dp, 0)                      # refused: nothing changed
    t_total = torch.nn.utils.clip_grad_norm_(tp, 1.0)
    d_total = nn.utils.clip_grad_norm_(dp, 1.0)
    np.testing.assert_equal(d_total.item(), t_total.item())
    _same_grads(tp, dp, 0)                      # scaled by the non-finite norm: nan / 0 in both


@pytest.mark.parametrize("bad_norm", ["fro", None])
def test_clip_grad_norm_bad_norm_type_refused_by_both(bad_norm):
    tp, dp = _grads_pair("float32")
    assert _outcome(lambda: torch.nn.utils.clip_grad_norm_(tp, 1.0, bad_norm))[0] == "error"
    assert _outcome(lambda: nn.utils.clip_grad_norm_(dp, 1.0, bad_norm))[0] == "error"


def test_get_total_norm_and_clip_grads_with_norm():
    tp, dp = _grads_pair("float64")
    t_norm = torch.nn.utils.get_total_norm([p.grad for p in tp], 2.0)
    d_norm = nn.utils.get_total_norm([p.grad for p in dp], 2.0)
    np.testing.assert_allclose(d_norm.item(), t_norm.item())
    torch.nn.utils.clip_grads_with_norm_(tp, 1.0, t_norm)
    assert nn.utils.clip_grads_with_norm_(dp, 1.0, d_norm) is None
    _same_grads(tp, dp, 1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("clip", [0.5, 2, -1.0])
def test_clip_grad_value(dtype, clip):
    tp, dp = _grads_pair(dtype, none_at=0)
    v = dp[1].grad._version
    assert torch.nn.utils.clip_grad_value_(tp, clip) is None
    assert nn.utils.clip_grad_value_(dp, clip) is None
    _same_grads(tp, dp, 0)
    assert dp[1].grad._version > v
    for value, outcome in (("x", "error"), ("0.25", "ok"), (None, "error")):
        assert _outcome(lambda: nn.utils.clip_grad_value_(dp, value))[0] == outcome
        assert _outcome(lambda: torch.nn.utils.clip_grad_value_(tp, value))[0] == outcome
    _same_grads(tp, dp, 0)


def test_clip_grad_norm_records_no_graph():
    p = nn.Parameter(td.ones(3))
    (p * p).sum().backward(create_graph=True)
    total = nn.utils.clip_grad_norm_([p], 1.0)
    assert total.grad_fn is None and not total.requires_grad
    np.testing.assert_allclose(np.linalg.norm(p.grad.detach().numpy()), 1.0, rtol=1e-5)


def test_parameters_to_vector_round_trip():
    tm, dm = torch.nn.Linear(3, 2), nn.Linear(3, 2)
    with torch.no_grad():
        for t, d in zip(tm.parameters(), dm.parameters()):
            t.copy_(torch.from_numpy(d.detach().numpy().copy()))
    tv, dv = torch.nn.utils.parameters_to_vector(tm.parameters()), nn.utils.parameters_to_vector(dm.parameters())
    np.testing.assert_array_equal(dv.detach().numpy(), tv.detach().numpy())
    assert dv.shape == tuple(tv.shape) and dv.requires_grad == tv.requires_grad
    new = np.arange(8, dtype=np.float32)
    torch.nn.utils.vector_to_parameters(torch.from_numpy(new.copy()), tm.parameters())
    v = dm.weight._version
    assert nn.utils.vector_to_parameters(td.tensor(new.copy()), dm.parameters()) is None
    assert dm.weight._version > v
    for t, d in zip(tm.parameters(), dm.parameters()):
        np.testing.assert_array_equal(d.detach().numpy(), t.detach().numpy())
    np.testing.assert_array_equal(nn.utils.parameters_to_vector(dm.parameters()).detach().numpy(), new)
    # both refuse a vector that is not a Tensor, or too short
    assert _outcome(lambda: torch.nn.utils.vector_to_parameters([1.0] * 8, tm.parameters()))[0] == "error"
    assert _outcome(lambda: nn.utils.vector_to_parameters([1.0] * 8, dm.parameters()))[0] == "error"
    assert _outcome(lambda: torch.nn.utils.vector_to_parameters(torch.ones(3), tm.parameters()))[0] == "error"
    assert _outcome(lambda: nn.utils.vector_to_parameters(td.ones(3), dm.parameters()))[0] == "error"


# ---------------------------------------------------------------- DataLoader
def _plain(x):
    """A batch as plain Python / NumPy values, for either library."""
    if isinstance(x, (torch.Tensor, td.Tensor)):
        arr = x.detach().numpy() if isinstance(x, torch.Tensor) else x.numpy()
        return ("T", str(arr.dtype), arr.tolist())
    if isinstance(x, dict):
        return (type(x).__name__, {k: _plain(v) for k, v in x.items()})
    if isinstance(x, (list, tuple)):
        return (type(x).__name__, [_plain(v) for v in x])
    return x


DATASETS = {
    "ints": lambda T: [1, 2, 3],
    "tensor": lambda T: (TD if T is torch.tensor else DD).TensorDataset(T([[1.0, 2.0], [3.0, 4.0]]), T([0, 1])),
    "mixed": lambda T: [np.arange(2), (1, 2.0), {"a": np.float32(1)}, "s", OrderedDict(b=np.int32(2)),
                        [np.float64(3.0), "t"]],
}


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_dataloader_batch_size_none(name):
    t = list(TD.DataLoader(DATASETS[name](torch.tensor), batch_size=None))
    d = list(DD.DataLoader(DATASETS[name](td.tensor), batch_size=None))
    assert [_plain(b) for b in d] == [_plain(b) for b in t]
    assert len(DD.DataLoader(DATASETS[name](td.tensor), batch_size=None)) == len(t)


def test_dataloader_batch_size_none_sampler_shuffle_and_batch_getitem():
    class Batched:   # __getitem__ of a list of indices, with sampler=BatchSampler
        def __getitem__(self, idx):
            return np.array(idx) * 10

        def __len__(self):
            return 5
    for D in (TD, DD):
        sampler = D.BatchSampler(D.SequentialSampler(range(5)), 2, drop_last=False)
        out = [b.tolist() for b in D.DataLoader(Batched(), batch_size=None, sampler=sampler)]
        assert out == [[0, 10], [20, 30], [40]]
        assert sorted(D.DataLoader(list(range(6)), batch_size=None, shuffle=True)) == list(range(6))
    d = list(DD.DataLoader(list(range(6)), batch_size=None, shuffle=True, num_workers=2))
    assert sorted(d) == list(range(6))


LOADER_KWARGS = [
    dict(prefetch_factor=2), dict(prefetch_factor=2, num_workers=1), dict(prefetch_factor=0, num_workers=1),
    dict(prefetch_factor=-1, num_workers=1), dict(num_workers=1), dict(persistent_workers=True),
    dict(persistent_workers=True, num_workers=1), dict(timeout=-1), dict(timeout=1), dict(num_workers=-1),
    dict(multiprocessing_context="spawn"), dict(multiprocessing_context="spawn", num_workers=1),
    dict(multiprocessing_context="bogus", num_workers=1), dict(multiprocessing_context=3, num_workers=1),
    dict(batch_size=None, drop_last=True), dict(batch_size=None, batch_sampler=[[0, 1]]), dict(batch_size=0),
    dict(in_order=False), dict(pin_memory_device="cuda"), dict(pin_memory=True), dict(worker_init_fn=None),
    dict(timeout=0, worker_init_fn=None, multiprocessing_context=None, persistent_workers=False,
         prefetch_factor=None, pin_memory_device="", in_order=True),
]


@pytest.mark.parametrize("kwargs", LOADER_KWARGS, ids=[str(k) for k in LOADER_KWARGS])
def test_dataloader_arguments_checked_as_torch(kwargs):
    t = _outcome(lambda: [b.tolist() for b in TD.DataLoader(list(range(5)), **kwargs)])
    d = _outcome(lambda: [b.tolist() for b in DD.DataLoader(list(range(5)), **kwargs)])
    assert d == t


def test_dataloader_positional_torch_order():
    # (dataset, batch_size, shuffle, sampler, batch_sampler, num_workers, collate_fn, pin_memory,
    #  drop_last, timeout, worker_init_fn, multiprocessing_context, generator)
    for D in (TD, DD):
        out = [b.tolist() for b in D.DataLoader(list(range(5)), 2, False, None, None, 0, None, False, True, 0, None)]
        assert out == [[0, 1], [2, 3]]


def test_worker_init_fn_and_worker_info_and_timeout():
    seen = []
    infos = []

    class DS(DD.Dataset):
        def __getitem__(self, i):
            infos.append(DD.get_worker_info())
            return i

        def __len__(self):
            return 6
    out = [b.tolist() for b in DD.DataLoader(DS(), batch_size=2, num_workers=2, worker_init_fn=seen.append,
                                             prefetch_factor=1)]
    assert out == [[0, 1], [2, 3], [4, 5]]
    assert set(seen) <= {0, 1} and seen
    assert all(info is not None and info.num_workers == 2 and info.id in (0, 1) for info in infos)
    assert DD.get_worker_info() is None and TD.get_worker_info() is None

    class Slow(DD.Dataset):
        def __getitem__(self, i):
            import time
            time.sleep(0.5)
            return i

        def __len__(self):
            return 2
    with pytest.raises(RuntimeError, match="timed out"):
        list(DD.DataLoader(Slow(), num_workers=1, timeout=0.05))


def test_iterable_dataset():
    def make(D):
        class Stream(D.IterableDataset[int]):
            def __iter__(self):
                return iter(range(5))
        return Stream()
    for kw in (dict(batch_size=2), dict(batch_size=2, drop_last=True), dict(batch_size=None), dict(),
               dict(batch_size=3, num_workers=1)):
        t = [_plain(b) for b in TD.DataLoader(make(TD), **kw)]
        d = [_plain(b) for b in DD.DataLoader(make(DD), **kw)]
        assert d == t, kw
    # a documented difference: PyTorch's 2 worker processes each read the whole stream (every
    # item twice); tinydl reads it once
    assert [b.tolist() for b in DD.DataLoader(make(DD), batch_size=3, num_workers=2)] == [[0, 1, 2], [3, 4]]
    for kw in (dict(shuffle=True), dict(sampler=[0]), dict(batch_sampler=[[0]])):
        assert _outcome(lambda: TD.DataLoader(make(TD), **kw))[0] == "error"
        assert _outcome(lambda: DD.DataLoader(make(DD), **kw))[0] == "error"
    with pytest.raises(TypeError):
        len(TD.DataLoader(make(TD)))
    with pytest.raises(TypeError):
        len(DD.DataLoader(make(DD)))
    assert list(make(DD) + make(DD)) == list(make(TD) + make(TD))
    assert _outcome(lambda: make(DD)[0])[0] == _outcome(lambda: make(TD)[0])[0] == "error"
    assert _outcome(lambda: DD.ConcatDataset([make(DD)]))[0] == _outcome(lambda: TD.ConcatDataset([make(TD)]))[0]


def test_dataset_generic_and_stack_dataset():
    for D in (TD, DD):
        class DS(D.Dataset[int]):
            def __getitem__(self, i):
                return i

            def __len__(self):
                return 3
        assert len(DS()) == 3
        assert D.Sampler[int] is not None
    t = TD.StackDataset([1, 2], [3, 4])
    d = DD.StackDataset([1, 2], [3, 4])
    assert d[1] == t[1] and len(d) == len(t)
    assert DD.StackDataset(a=[1, 2], b=[3, 4])[0] == TD.StackDataset(a=[1, 2], b=[3, 4])[0]
    for args, kwargs in (([[1], [1, 2]], {}), ([[1]], {"a": [1]}), ([], {})):
        assert _outcome(lambda: TD.StackDataset(*args, **kwargs))[0] == "error"
        assert _outcome(lambda: DD.StackDataset(*args, **kwargs))[0] == "error"


# ---------------------------------------------------------------- samplers, random_split, collate
@pytest.mark.parametrize("replacement", [False, True, "False", 0, None])
def test_random_sampler_replacement_must_be_bool(replacement):
    t = _outcome(lambda: TD.RandomSampler(range(5), replacement=replacement))[0]
    d = _outcome(lambda: DD.RandomSampler(range(5), replacement=replacement))[0]
    assert d == t


@pytest.mark.parametrize("drop_last", [False, True, 0, "x", None])
def test_batch_sampler_drop_last_must_be_bool(drop_last):
    t = _outcome(lambda: list(TD.BatchSampler(range(5), 2, drop_last=drop_last)))
    d = _outcome(lambda: list(DD.BatchSampler(range(5), 2, drop_last=drop_last)))
    assert d == t


SPLITS = [[0.5, 0.5, 0], [np.float32(0.8), np.float32(0.2)], [1, 0], "tensor", [0.3, 0.3, 0.4],
          [0.33, 0.33, 0.34], [0.1] * 10, [0.2] * 5, [0.5, 0.6], [3, 7], [np.int64(4), 6], [4, 5],
          "scalar-tensors", [0.7, 0.3, 0.0]]


@pytest.mark.parametrize("n", [7, 10])
@pytest.mark.parametrize("lengths", SPLITS, ids=[str(s) for s in SPLITS])
def test_random_split_lengths(lengths, n):
    def for_lib(T):
        if lengths == "tensor":
            return T([3, n - 3])
        if lengths == "scalar-tensors":
            return [T(0.5), 0.5]
        return lengths
    with _no_check():
        t = _outcome(lambda: [len(s) for s in TD.random_split(range(n), for_lib(torch.tensor))])
        d = _outcome(lambda: [len(s) for s in DD.random_split(range(n), for_lib(td.tensor))])
    assert d == t


class _no_check:      # (zero-length splits warn in both; the warning is not compared)
    def __enter__(self):
        import warnings
        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore")

    def __exit__(self, *exc):
        self._w.__exit__(*exc)


def test_random_split_subsets_disjoint():
    parts = DD.random_split(range(10), [0.33, 0.33, 0.34], seed=0)
    assert sorted(i for p in parts for i in p) == list(range(10))


def test_default_collate_container_types():
    class FrozenMap(dict):
        pass
    cases = [
        [OrderedDict(a=1, b=2.0), OrderedDict(a=3, b=4.0)],
        [(1, "x.png"), (2, "y.png")],
        [["a", "x"], ["b", "y"]],
        [{"a": "x"}, {"a": "y"}],
        [FrozenMap(a=np.int32(1)), FrozenMap(a=np.int32(2))],
        ["p", "q"],
        [(np.float32(1.0), (1, "u")), (np.float32(2.0), (2, "v"))],
    ]
    for batch in cases:
        t = TD.default_collate(batch)
        d = DD.default_collate(batch)
        assert _plain(d) == _plain(t), batch
        assert type(d) is type(t)


# ---------------------------------------------------------------- containers
def test_sequential_add_mul():
    for N in (torch.nn, nn):
        a, b = N.ReLU(), N.Tanh()
        s = N.Sequential(a, b)
        assert [type(m).__name__ for m in s + s] == ["ReLU", "Tanh", "ReLU", "Tanh"]
        assert list((s + N.Sequential(b))._modules) == ["0", "1", "2"]
        assert [m for m in s * 2] == [a, b, a, b] and [m for m in 3 * s] == [a, b] * 3
        assert type(s * 2) is N.Sequential and len(s) == 2
        s2 = N.Sequential(a)
        s2 += N.Sequential(b)
        assert list(s2) == [a, b] and list(s2._modules) == ["0", "1"]
        s2 *= 2
        assert list(s2) == [a, b, a, b] and list(s2._modules) == ["0", "1", "2", "3"]
        for bad in (lambda: s + [a], lambda: s * 0, lambda: s * 1.5, lambda: s * -1):
            assert _outcome(bad)[0] == "error"

        def iadd_list():
            s3 = N.Sequential(a)
            s3 += N.ModuleList([b])
        assert _outcome(iadd_list)[0] == "error"


def test_sequential_subclass_slice_and_modulelist_repr():
    for N in (torch.nn, nn):
        class Stage(N.Sequential):
            def forward(self, x):
                return super().forward(x) * 2

        class Blocks(N.ModuleList):
            pass
        s = Stage(N.ReLU(), N.Tanh())
        assert type(s[:1]) is Stage and type(s[1:]) is Stage
        assert repr(Blocks([N.ReLU()])).splitlines()[0] == "Blocks("
        assert repr(Blocks()) == "Blocks()"
        assert type(Blocks([N.ReLU(), N.Tanh()])[:1]) is Blocks


def _repr_like_torch(text):
    return text.replace("torch.", "")


def test_parameter_list():
    def build(N, T, P):
        pl = N.ParameterList([T([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]), P(T([1.0], dtype=None))])
        pl.append(T([7.0]))
        pl.extend([P(T([8.0, 9.0]))])
        pl += [T([10.0])]
        return pl
    pt = build(torch.nn, torch.tensor, torch.nn.Parameter)
    pd = build(nn, td.tensor, nn.Parameter)
    assert len(pd) == len(pt) == 5
    assert list(pd.state_dict().keys()) == list(pt.state_dict().keys()) == ["0", "1", "2", "3", "4"]
    assert [p.shape for p in pd.parameters()] == [tuple(p.shape) for p in pt.parameters()]
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in pd)
    assert _repr_like_torch(repr(pt)) == repr(pd)
    assert pd[-1] is list(pd)[-1] and pd[1:3][0] is pd[1] and type(pd[1:3]) is nn.ParameterList
    assert [p.detach().numpy().tolist() for p in pd[::2]] == [p.detach().numpy().tolist() for p in pt[::2]]
    for N, pl, T in ((torch.nn, pt, torch.tensor), (nn, pd, td.tensor)):
        assert _outcome(lambda: pl[5])[0] == "error"
        assert _outcome(lambda: pl.extend(T([1.0])))[0] == "error"
        assert _outcome(lambda: pl.extend(3))[0] == "error"
        assert _outcome(lambda: pl(1))[0] == "error"
        pl[0] = T([0.5])
        assert isinstance(pl[0], N.Parameter)
        other = N.ParameterList([T([1.0]), 3, "s"])
        assert len(list(other.parameters())) == 1
    other_t = torch.nn.ParameterList([torch.tensor([1.0]), 3])
    other_d = nn.ParameterList([td.tensor([1.0]), 3])
    assert _repr_like_torch(repr(other_t)) == repr(other_d)
    assert repr(nn.ParameterList()) == repr(torch.nn.ParameterList())
    # registered in a module: named model.params.0 ...
    for N, T in ((torch.nn, torch.tensor), (nn, td.tensor)):
        class M(N.Module):
            def __init__(self):
                super().__init__()
                self.params = N.ParameterList([T([1.0]), T([2.0, 3.0])])
        assert list(M().state_dict().keys()) == ["params.0", "params.1"]


def test_parameter_dict():
    def build(N, T):
        d = N.ParameterDict({"b": T([1.0, 2.0]), "a": N.Parameter(T([3.0]))})
        d["c"] = T([[4.0]])
        d.update(OrderedDict(z=T([5.0]), y=T([6.0])))
        d.update([("x", T([7.0]))])
        return d
    pt, pd = build(torch.nn, torch.tensor), build(nn, td.tensor)
    assert list(pd.keys()) == list(pt.keys()) == ["a", "b", "c", "z", "y", "x"]
    assert list(pd.state_dict().keys()) == list(pt.state_dict().keys())
    assert [k for k, _ in pd.items()] == [k for k, _ in pt.items()]
    assert [p.shape for p in pd.parameters()] == [tuple(p.shape) for p in pt.parameters()]
    assert all(isinstance(v, nn.Parameter) for v in pd.values())
    assert _repr_like_torch(repr(pt)) == repr(pd)
    one_t, one_d = torch.nn.ParameterDict({"x": torch.ones(2)}), nn.ParameterDict({"x": td.ones(2)})
    assert _repr_like_torch(repr(one_t)) == repr(one_d)
    assert repr(nn.ParameterDict()) == repr(torch.nn.ParameterDict())
    for d in (pt, pd):
        assert "a" in d and "q" not in d and len(d) == 6 and d.get("q") is None
        assert d.pop("a").shape[0] == 1 and "a" not in d and len(d) == 5
        assert d.popitem()[0] == "x"
        assert list(d.copy().keys()) == ["b", "c", "z", "y"]
        assert list((d | {"k": d["b"]}).keys())[-1] == "k"
        for bad in (lambda: d[1], lambda: d.update(3), lambda: d.update([("a",)]), lambda: d.update([3]),
                    lambda: d["missing"], lambda: d()):
            assert _outcome(bad)[0] == "error"
        d.clear()
        assert len(d) == 0 and list(d.parameters()) == []
