"""Property tests: the op table's elementwise, broadcasting, reduction, shape, activation
and loss ops on random shapes, compared with PyTorch (forward, every input gradient, and the same
refusals).

Hypothesis draws the shapes (broadcastable pairs and triples, size-1 and zero-size
dimensions, 0-d tensors), the dtype (float32, float64) and the memory layout of every input
(contiguous, transposed, negative strides, every other element), and for each op its
arguments (dims, keepdim, indices, slices, split sizes...). The values come from a NumPy
generator seeded by hypothesis, in each op's domain (log and sqrt get positive inputs).

Budget: the 'ci' profile (the default) tries a few examples per op, derandomized so that
CI is reproducible; ``TINYDL_FUZZ_PROFILE=long`` runs the 'long' profile, with far more
random examples, on demand::

    TINYDL_FUZZ_PROFILE=long python -m pytest -q tests/test_op_fuzz.py

When PyTorch refuses an input, tinydl must refuse it too (any exception); otherwise
outputs, dtypes, shapes and gradients must match, and no input may be written to.
"""
import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import tinydl as td
import tinydl.nn.functional as F
import tinydl.ops.shape as S

pytest.importorskip("hypothesis")
# Degenerate draws (a variance of one element, a mean of nothing) warn in both libraries, and
# kl_div's reduction='mean' warns in both that it is not 'batchmean'.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning", "ignore:var\\(\\)|std\\(\\):UserWarning",
                                        "ignore:reduction. 'mean' divides:UserWarning")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
settings.register_profile("ci", max_examples=6, deadline=None, derandomize=True, database=None,
                          suppress_health_check=_QUIET)
settings.register_profile("long", max_examples=400, deadline=None, suppress_health_check=_QUIET)
FUZZ = settings(settings.get_profile(os.environ.get("TINYDL_FUZZ_PROFILE", "ci")))

TD = SimpleNamespace(F=F, S=S, name="tinydl")
TORCH = SimpleNamespace(F=torch.nn.functional, S=torch, name="torch")


# ================================================================ inputs
def _values(rng, shape, domain, dtype):
    if domain == "positive":
        a = rng.uniform(0.5, 2.0, shape)
    elif domain == "nonzero":
        a = rng.uniform(0.5, 2.0, shape) * rng.choice([-1.0, 1.0], shape)
    elif domain == "spread":
        a = rng.standard_normal(shape) * 4
    elif domain == "probability":
        a = rng.uniform(0.05, 0.95, shape)
    else:
        a = rng.standard_normal(shape)
    return np.asarray(a, dtype=dtype)


def _laid_out(rng, shape, domain, dtype, layout):
    """An array of ``shape`` whose memory is laid out as ``layout`` says (a view, not a copy)."""
    if layout == "transposed" and len(shape) >= 2:
        return _values(rng, shape[::-1], domain, dtype).T
    if layout == "negative_stride" and len(shape) >= 1:
        return np.flip(_values(rng, shape, domain, dtype), axis=0)
    if layout == "every_other" and len(shape) >= 1:
        return _values(rng, shape[:-1] + (2 * shape[-1],), domain, dtype)[..., ::2]
    return _values(rng, shape, domain, dtype)


LAYOUTS = st.sampled_from(["contiguous", "transposed", "negative_stride", "every_other"])
DTYPES = st.sampled_from([np.float32, np.float64])


def shapes(min_dims=0, max_dims=4, min_side=0, max_side=4):
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side)


@st.composite
def arrays_of(draw, shape_list, domain="real", dtype=None):
    """One array per shape, each with its own drawn layout, all of one dtype."""
    dtype = dtype or draw(DTYPES)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return [_laid_out(rng, tuple(s), domain, dtype, draw(LAYOUTS)) for s in shape_list]


# ================================================================ the check
def _tol(dtype):
    return (2e-5, 2e-4) if dtype == np.float32 else (1e-10, 1e-7)


def _listed(out):
    return list(out) if isinstance(out, (tuple, list)) else [out]


def check(fn, arrays, grad=None):
    """``fn(ns, *tensors)`` through tinydl (ns=TD) and PyTorch (ns=TORCH): same refusals,
    outputs, dtypes and gradients of the float inputs (or those in ``grad``)."""
    grad = [i for i, a in enumerate(arrays) if a.dtype.kind == "f"] if grad is None else grad
    before = [a.copy() for a in arrays]
    t_in = [torch.from_numpy(a.copy()).requires_grad_(i in grad) for i, a in enumerate(arrays)]
    try:
        t_outs = _listed(fn(TORCH, *t_in))
    except (RuntimeError, IndexError, ValueError, TypeError) as exc:
        with pytest.raises(Exception):
            fn(TD, *[td.Tensor(a, requires_grad=i in grad) for i, a in enumerate(arrays)])
        return f"refused: {exc}"
    xs = [td.Tensor(a, requires_grad=i in grad) for i, a in enumerate(arrays)]
    outs = _listed(fn(TD, *xs))
    assert len(outs) == len(t_outs)
    atol, rtol = _tol(arrays[0].dtype if arrays else np.float64)
    rng = np.random.default_rng(1)
    for k, (o, t) in enumerate(zip(outs, t_outs)):
        want = t.detach().numpy()
        assert o.shape == tuple(want.shape), f"output {k}: shape {o.shape}, torch {tuple(want.shape)}"
        assert o.dtype == want.dtype, f"output {k}: dtype {o.dtype}, torch {want.dtype}"
        np.testing.assert_allclose(o.array, want, atol=atol, rtol=rtol, equal_nan=True, err_msg=f"output {k}")
        if t.requires_grad:                                   # a random upstream gradient, never .sum()
            up = rng.standard_normal(want.shape).astype(want.dtype)
            t.backward(torch.tensor(up), retain_graph=True)
            o.backward(td.Tensor(up), retain_graph=True)
    for i in grad:
        want, got = t_in[i].grad, xs[i].grad
        if want is None:
            assert got is None or not np.any(got.array), f"input {i}: torch gives no gradient"
            continue
        assert got is not None, f"input {i}: no gradient"
        assert got.dtype == arrays[i].dtype and got.shape == arrays[i].shape
        np.testing.assert_allclose(got.array, want.numpy(), atol=10 * atol, rtol=10 * rtol, equal_nan=True,
                                   err_msg=f"gradient of input {i}")
    for i, (a, b) in enumerate(zip(arrays, before)):
        np.testing.assert_array_equal(a, b, err_msg=f"input {i} was written to")
    return "compared"


# ================================================================ elementwise
UNARY = {   # name: (fn(ns, x), domain)
    "neg": (lambda ns, x: -x, "real"),
    "abs": (lambda ns, x: x.abs(), "real"),
    "exp": (lambda ns, x: x.exp(), "real"),
    "log": (lambda ns, x: x.log(), "positive"),
    "sqrt": (lambda ns, x: x.sqrt(), "positive"),
    "clamp": (lambda ns, x: x.clamp(-0.5, 0.7), "real"),
    "clone": (lambda ns, x: x.clone() * 2, "real"),
    "add": (lambda ns, x: 2.5 + x, "real"),
    "rsub": (lambda ns, x: 1 - x, "real"),
    "rdiv": (lambda ns, x: 2 / x, "nonzero"),
    "rremainder": (lambda ns, x: 7.5 % x if ns is TD else torch.full_like(x, 7.5) % x, "nonzero"),  # (7.5 % x:
                                                                                  # no PyTorch gradient)
    "rpow": (lambda ns, x: 2 ** x, "real"),
    "pow": (lambda ns, x: x ** 3, "real"),
    "relu": (lambda ns, x: ns.F.relu(x), "real"),
    "relu6": (lambda ns, x: ns.F.relu6(x), "spread"),
    "leaky_relu": (lambda ns, x: ns.F.leaky_relu(x, 0.2), "real"),
    "hardtanh": (lambda ns, x: ns.F.hardtanh(x, -0.5, 2.0), "spread"),
    "elu": (lambda ns, x: ns.F.elu(x, 0.5), "spread"),
    "selu": (lambda ns, x: ns.F.selu(x), "spread"),
    "sigmoid": (lambda ns, x: ns.F.sigmoid(x), "spread"),
    "logsigmoid": (lambda ns, x: ns.F.logsigmoid(x), "spread"),
    "tanh": (lambda ns, x: ns.F.tanh(x), "spread"),
    "silu": (lambda ns, x: ns.F.silu(x), "spread"),
    "gelu": (lambda ns, x: ns.F.gelu(x), "spread"),
    "softplus": (lambda ns, x: ns.F.softplus(x, beta=2, threshold=5), "spread"),
}


@pytest.mark.parametrize("name", sorted(UNARY))
@FUZZ
@given(data=st.data())
def test_unary_elementwise(data, name):
    fn, domain = UNARY[name]
    check(fn, data.draw(arrays_of([data.draw(shapes())], domain)))


BINARY = {   # name: (fn(ns, a, b), domain of a, domain of b)
    "add": (lambda ns, a, b: a + b, "real", "real"),
    "sub": (lambda ns, a, b: a - b, "real", "real"),
    "mul": (lambda ns, a, b: a * b, "real", "real"),
    "div": (lambda ns, a, b: a / b, "real", "nonzero"),
    "remainder": (lambda ns, a, b: a % b, "real", "nonzero"),
    "floor_divide": (lambda ns, a, b: a // b, "real", "nonzero"),     # no gradient (PyTorch: none defined)
    "pow": (lambda ns, a, b: a ** b, "positive", "real"),
    "maximum": (lambda ns, a, b: ns.S.maximum(a, b) if ns is TORCH else td.maximum(a, b), "real", "real"),
    "minimum": (lambda ns, a, b: ns.S.minimum(a, b) if ns is TORCH else td.minimum(a, b), "real", "real"),
}


@pytest.mark.parametrize("name", sorted(BINARY))
@FUZZ
@given(data=st.data())
def test_binary_broadcasting(data, name):
    fn, da, db = BINARY[name]
    pair = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=4, min_side=0, max_side=4))
    dtype = data.draw(DTYPES)
    a, = data.draw(arrays_of([pair.input_shapes[0]], da, dtype))
    b, = data.draw(arrays_of([pair.input_shapes[1]], db, dtype))
    check(fn, [a, b], grad=[] if name == "floor_divide" else None)


@FUZZ
@given(data=st.data())
def test_where_broadcasting_three_ways(data):
    three = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=3, max_dims=3, min_side=0, max_side=3))
    arrays = data.draw(arrays_of(three.input_shapes))
    check(lambda ns, c, a, b: (td.where if ns is TD else torch.where)(c > 0, a, b), arrays, grad=[1, 2])


@FUZZ
@given(data=st.data())
def test_matmul_with_broadcast_batches_and_vectors(data):
    n, k, m = (data.draw(st.integers(0, 4)) for _ in range(3))
    batch = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=2, min_side=1, max_side=3))
    kind = data.draw(st.sampled_from(["matrix", "vector_left", "vector_right", "both_vectors"]))
    left = (k,) if kind in ("vector_left", "both_vectors") else batch.input_shapes[0] + (n, k)
    right = (k,) if kind in ("vector_right", "both_vectors") else batch.input_shapes[1] + (k, m)
    check(lambda ns, a, b: a @ b, data.draw(arrays_of([left, right])))


@FUZZ
@given(data=st.data())
def test_linear(data):
    lead = data.draw(shapes(0, 2, 0, 3))
    n_in, n_out = data.draw(st.integers(0, 4)), data.draw(st.integers(0, 4))
    bias = data.draw(st.booleans())
    arrays = data.draw(arrays_of([lead + (n_in,), (n_out, n_in)] + [(n_out,)] * bias))
    check(lambda ns, *t: ns.F.linear(*t), arrays)


# ================================================================ reductions
@st.composite
def dims(draw, ndim, allow_tuple=True, allow_none=True):
    """None, one dim (maybe negative) or a tuple of distinct dims."""
    choices = (["none"] if allow_none else []) + (["int"] if ndim else []) + \
        (["tuple"] if allow_tuple and ndim else [])
    kind = draw(st.sampled_from(choices)) if choices else "none"
    if kind == "none":
        return None
    if kind == "int":
        return draw(st.integers(-ndim, ndim - 1))
    picked = draw(st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True))
    return tuple(d - ndim if draw(st.booleans()) else d for d in picked)


def _reduce(method, **kw):
    def fn(ns, x, dim, keepdim):
        if dim is None:
            return getattr(x, method)(**kw)
        return getattr(x, method)(dim, keepdim=keepdim, **kw)
    return fn


REDUCTIONS = {   # name: (fn(ns, x, dim, keepdim), tuples of dims allowed)
    "sum": (_reduce("sum"), True),
    "mean": (_reduce("mean"), True),
    "var": (_reduce("var"), True),
    "std": (_reduce("std", unbiased=False), True),
    "max": (_reduce("max"), False),
    "min": (_reduce("min"), False),
    "argmax": (_reduce("argmax"), False),
    "argmin": (_reduce("argmin"), False),
    "logsumexp": (lambda ns, x, dim, keepdim: x.logsumexp(dim if dim is not None else tuple(range(x.ndim)),
                                                           keepdim=keepdim), True),
}


@pytest.mark.parametrize("name", sorted(REDUCTIONS))
@FUZZ
@given(data=st.data())
def test_reductions_over_drawn_dims(data, name):
    fn, tuples = REDUCTIONS[name]
    x, = data.draw(arrays_of([data.draw(shapes())]))
    dim, keepdim = data.draw(dims(x.ndim, allow_tuple=tuples)), data.draw(st.booleans())
    check(lambda ns, t: fn(ns, t, dim, keepdim), [x])


@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
@FUZZ
@given(data=st.data())
def test_softmax_and_log_softmax_over_a_drawn_dim(data, log):
    x, = data.draw(arrays_of([data.draw(shapes())], "spread"))
    dim = data.draw(st.integers(-max(x.ndim, 1), max(x.ndim, 1) - 1))
    check(lambda ns, t: (ns.F.log_softmax if log else ns.F.softmax)(t, dim), [x])


# ================================================================ shape ops
def _merged(draw, shape):
    """A shape of the same size: adjacent dims merged, ones inserted, maybe one -1."""
    out, i = [], 0
    while i < len(shape):
        j = draw(st.integers(i + 1, len(shape)))
        out.append(int(np.prod(shape[i:j])))
        i = j
    for _ in range(draw(st.integers(0, 2))):
        out.insert(draw(st.integers(0, len(out))), 1)
    if out and int(np.prod(shape)) > 0 and draw(st.booleans()):
        out[draw(st.integers(0, len(out) - 1))] = -1
    return tuple(out)


@pytest.mark.parametrize("method", ["reshape", "view"])
@FUZZ
@given(data=st.data())
def test_reshape_and_view(data, method):
    x, = data.draw(arrays_of([data.draw(shapes())]))
    new = _merged(data.draw, x.shape)
    if method == "view":
        x = np.ascontiguousarray(x)     # torch.view refuses most strided inputs; tinydl's view copies
    check(lambda ns, t: getattr(t, method)(new), [x])


@pytest.mark.parametrize("kind", ["permute", "transpose", "T", "flatten", "flip", "roll"])
@FUZZ
@given(data=st.data())
def test_permute_transpose_flatten_flip_roll(data, kind):
    x, = data.draw(arrays_of([data.draw(shapes())]))
    n = x.ndim
    if kind == "permute":
        order = data.draw(st.permutations(range(n)))
        order = tuple(d - n if data.draw(st.booleans()) else d for d in order)
        fn = lambda ns, t: t.permute(order)             # noqa: E731
    elif kind == "transpose":
        a, b = (data.draw(st.integers(-max(n, 1), max(n, 1) - 1)) for _ in range(2))
        fn = lambda ns, t: t.transpose(a, b)            # noqa: E731
    elif kind == "T":
        fn = lambda ns, t: t.T if ns is TD else t.permute(tuple(reversed(range(t.ndim))))   # noqa: E731
    elif kind == "flatten":
        start = data.draw(st.integers(-max(n, 1), max(n, 1) - 1))
        end = data.draw(st.integers(-max(n, 1), max(n, 1) - 1))
        fn = lambda ns, t: ns.S.flatten(t, start, end)  # noqa: E731
    elif kind == "flip":
        flips = data.draw(dims(n, allow_none=False)) if n else ()
        flips = (flips,) if isinstance(flips, int) else flips
        fn = lambda ns, t: ns.S.flip(t, flips)          # noqa: E731
    else:
        over = data.draw(dims(n, allow_none=True)) if n else None
        over = (over,) if isinstance(over, int) else over
        shifts = tuple(data.draw(st.integers(-5, 5)) for _ in (over or (0,)))
        fn = (lambda ns, t: ns.S.roll(t, shifts[0])) if over is None else \
            (lambda ns, t: ns.S.roll(t, shifts, over))
    check(fn, [x])


@pytest.mark.parametrize("kind", ["squeeze", "unsqueeze", "expand", "expand_as"])
@FUZZ
@given(data=st.data())
def test_squeeze_unsqueeze_expand(data, kind):
    shape = data.draw(shapes(0, 4, 0, 3).map(lambda s: tuple(1 if d == 3 else d for d in s)))   # many ones
    x, = data.draw(arrays_of([shape]))
    n = x.ndim
    if kind == "squeeze":
        which = data.draw(dims(n))
        fn = (lambda ns, t: t.squeeze()) if which is None else (lambda ns, t: t.squeeze(which))
    elif kind == "unsqueeze":
        d = data.draw(st.integers(-n - 1, n))
        fn = lambda ns, t: t.unsqueeze(d)                # noqa: E731
    else:
        lead = data.draw(shapes(0, 2, 0, 3))
        target = lead + tuple(data.draw(st.integers(0, 3)) if s == 1 else
                              (-1 if kind == "expand" and data.draw(st.booleans()) else s) for s in shape)
        if kind == "expand":
            fn = lambda ns, t: t.expand(target)          # noqa: E731
        else:
            y, = data.draw(arrays_of([target], dtype=x.dtype))
            check(lambda ns, t, u: t.expand_as(u) * u, [x, y])
            return
    check(fn, [x])


@pytest.mark.parametrize("kind", ["cat", "stack"])
@FUZZ
@given(data=st.data())
def test_cat_and_stack(data, kind):
    base = list(data.draw(shapes(1, 3, 0, 3)))
    n = len(base)
    count = data.draw(st.integers(1, 3))
    if kind == "cat":
        d = data.draw(st.integers(-n, n - 1))
        parts = [tuple(base[:d % n] + [data.draw(st.integers(0, 3))] + base[d % n + 1:]) for _ in range(count)]
    else:
        d = data.draw(st.integers(-n - 1, n))
        parts = [tuple(base)] * count
    arrays = data.draw(arrays_of(parts))
    again = data.draw(st.booleans())     # the same tensor twice in the list
    check(lambda ns, *ts: getattr(ns.S, kind)(list(ts) + ([ts[0]] if again else []), d), arrays)


@pytest.mark.parametrize("kind", ["split_size", "split_sections", "chunk", "narrow"])
@FUZZ
@given(data=st.data())
def test_split_chunk_narrow(data, kind):
    x, = data.draw(arrays_of([data.draw(shapes(1, 3, 0, 5))]))
    d = data.draw(st.integers(-x.ndim, x.ndim - 1))
    size = x.shape[d]
    if kind == "split_size":
        k = data.draw(st.integers(1, 4))
        fn = lambda ns, t: ns.S.split(t, k, d)          # noqa: E731
    elif kind == "split_sections":
        cuts = sorted(data.draw(st.lists(st.integers(0, size), max_size=3)))
        sections = [b - a for a, b in zip([0] + cuts, cuts + [size])]
        fn = lambda ns, t: ns.S.split(t, sections, d)   # noqa: E731
    elif kind == "chunk":
        k = data.draw(st.integers(1, 4))
        fn = lambda ns, t: ns.S.chunk(t, k, d)          # noqa: E731
    else:
        start = data.draw(st.integers(-size, size)) if size else 0
        length = data.draw(st.integers(0, max(size - start % max(size, 1), 0)))
        fn = lambda ns, t: ns.S.narrow(t, d, start, length)   # noqa: E731
    check(fn, [x])


@st.composite
def basic_index(draw, shape):
    """A tuple of ints, positive-step slices, None and at most one Ellipsis."""
    index, ellipsis = [], False
    for size in shape:
        kind = draw(st.sampled_from(["int", "slice", "full", "none", "ellipsis"] if not ellipsis else
                                    ["int", "slice", "full", "none"]))
        if kind == "int" and size > 0:
            index.append(draw(st.integers(-size, size - 1)))
        elif kind == "slice":
            index.append(slice(draw(st.none() | st.integers(-size - 1, size + 1)),
                               draw(st.none() | st.integers(-size - 1, size + 1)),
                               draw(st.none() | st.integers(1, 3))))
        elif kind == "none":
            index += [None, slice(None)]
        elif kind == "ellipsis":
            index.append(Ellipsis)
            ellipsis = True
            break
        else:
            index.append(slice(None))
    return tuple(index)


@FUZZ
@given(data=st.data())
def test_basic_indexing(data):
    x, = data.draw(arrays_of([data.draw(shapes(0, 4, 0, 4))]))
    index = data.draw(basic_index(x.shape))
    check(lambda ns, t: t[index], [x])


@pytest.mark.parametrize("kind", ["array", "mask", "index_select", "gather"])
@FUZZ
@given(data=st.data())
def test_advanced_indexing_gather_index_select(data, kind):
    x, = data.draw(arrays_of([data.draw(shapes(1, 3, 1, 4))]))
    d = data.draw(st.integers(0, x.ndim - 1))
    size = x.shape[d]
    if kind == "mask":
        mask = np.asarray(data.draw(st.lists(st.booleans(), min_size=size, max_size=size)))
        check(lambda ns, t: t[(slice(None),) * d + (mask if ns is TD else torch.tensor(mask),)], [x])
        return
    picks = np.asarray(data.draw(st.lists(st.integers(-size if kind == "array" else 0, size - 1), max_size=5)),
                       dtype=np.int64)
    if kind == "array":
        check(lambda ns, t: t[(slice(None),) * d + (picks if ns is TD else torch.tensor(picks),)], [x])
    elif kind == "index_select":
        check(lambda ns, t: ns.S.index_select(t, d, picks if ns is TD else torch.tensor(picks)), [x])
    else:
        shape = tuple(data.draw(st.integers(0, s)) if i != d else data.draw(st.integers(0, 4))
                      for i, s in enumerate(x.shape))
        rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
        index = rng.integers(0, size, shape)
        check(lambda ns, t: ns.S.gather(t, d, index if ns is TD else torch.tensor(index)), [x])


# ================================================================ losses
ELEMENTWISE_LOSSES = {   # name: (fn(ns, input, target, reduction), domain of input, domain of target)
    "mse_loss": (lambda ns, x, t, r: ns.F.mse_loss(x, t, reduction=r), "real", "real"),
    "l1_loss": (lambda ns, x, t, r: ns.F.l1_loss(x, t, reduction=r), "real", "real"),
    "smooth_l1_loss": (lambda ns, x, t, r: ns.F.smooth_l1_loss(x, t, reduction=r, beta=0.5), "real", "real"),
    "huber_loss": (lambda ns, x, t, r: ns.F.huber_loss(x, t, reduction=r, delta=0.7), "real", "real"),
    "bce_with_logits": (lambda ns, x, t, r: ns.F.binary_cross_entropy_with_logits(x, t, reduction=r),
                        "spread", "probability"),
    "binary_cross_entropy": (lambda ns, x, t, r: ns.F.binary_cross_entropy(x, t, reduction=r),
                             "probability", "probability"),
    "kl_div": (lambda ns, x, t, r: ns.F.kl_div(x, t, reduction=r), "real", "probability"),
}


@pytest.mark.parametrize("name", sorted(ELEMENTWISE_LOSSES))
@FUZZ
@given(data=st.data())
def test_elementwise_losses(data, name):
    fn, dx, dt = ELEMENTWISE_LOSSES[name]
    shape, dtype = data.draw(shapes()), data.draw(DTYPES)
    reduction = data.draw(st.sampled_from(["mean", "sum", "none"] + ["batchmean"] * (name == "kl_div")))
    x, = data.draw(arrays_of([shape], dx, dtype))
    t, = data.draw(arrays_of([shape], dt, dtype))
    check(lambda ns, a, b: fn(ns, a, b, reduction), [x, t])


@pytest.mark.parametrize("name", ["cross_entropy", "nll_loss"])
@FUZZ
@given(data=st.data())
def test_class_losses(data, name):
    lead = data.draw(shapes(0, 3, 0, 3))            # (), (N,), (N, d1), (N, d1, d2): class axis after N
    classes = data.draw(st.integers(1, 5))
    shape = (classes,) if not lead else lead[:1] + (classes,) + lead[1:]
    x, = data.draw(arrays_of([shape], "spread"))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    target = rng.integers(0, classes, lead)
    ignore = int(target.flat[0]) if target.size and data.draw(st.booleans()) else -100
    weight = rng.uniform(0.5, 2.0, classes).astype(x.dtype) if data.draw(st.booleans()) else None
    kw = dict(reduction=data.draw(st.sampled_from(["mean", "sum", "none"])), ignore_index=ignore)
    if name == "cross_entropy":
        kw["label_smoothing"] = data.draw(st.sampled_from([0.0, 0.1]))
    fn = getattr(F, name), getattr(torch.nn.functional, name)
    wrap = lambda ns, a: a if ns is TD else torch.from_numpy(a)     # noqa: E731
    check(lambda ns, t: fn[ns is TORCH](t, wrap(ns, target), None if weight is None else wrap(ns, weight), **kw),
          [x])


# ================================================================ coverage of the op table
FUZZED = set(UNARY) | set(BINARY) | set(REDUCTIONS) | set(ELEMENTWISE_LOSSES) | {"cross_entropy", "nll_loss",
    "where", "matmul", "linear", "softmax", "log_softmax", "reshape", "view", "permute", "transpose", "T",
    "flatten", "flip", "roll", "squeeze", "unsqueeze", "expand", "expand_as", "cat", "stack", "split",
    "chunk", "narrow", "getitem", "index_select", "gather"} | {   # (their property tests: test_tensor_api.py)
    "amax", "amin", "bmm", "ceil", "clamp_max", "clamp_min", "cos", "cumprod", "cumsum", "diagonal", "dot",
    "expm1", "floor", "index_add", "kthvalue", "log10", "log1p", "log2", "masked_select", "median", "mm",
    "movedim", "mv", "norm", "outer", "prod", "reciprocal", "repeat", "round", "rsqrt", "scatter", "scatter_add",
    "sign", "sin", "sort", "square", "take_along_dim", "tile", "topk", "tril", "triu", "trunc"}


def test_every_row_of_the_fuzzed_families_has_a_property_test():
    import importlib
    rows = {c.name.split("/")[0] for family in ("math", "shape", "reduce", "activation", "loss")
            for c in importlib.import_module(f"optable.{family}").CASES}
    assert rows - FUZZED == set(), f"op table rows without a property test: {sorted(rows - FUZZED)}"
