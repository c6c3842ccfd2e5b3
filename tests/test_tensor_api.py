"""The everyday Tensor API outside the op table: ops without a gradient (argsort, nonzero,
isclose, logical_and...), dtypes of integer inputs, new_* constructors, in-place variants
and error behaviour; each run through PyTorch too, which gives the expected answer."""
import numpy as np
import pytest

import tinydl as td

torch = pytest.importorskip("torch")
# Some inputs leave the functions' domains on purpose (log2 of 0, rsqrt of -1): NumPy warns
# where PyTorch returns inf and NaN silently; the values are compared all the same.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def _dtype(x):
    return str(x.dtype).replace("torch.", "")


def _same(got, want):
    """A tinydl result equals PyTorch's: the same type, and for tensors (or tuples of them)
    the same shape, dtype and values (NaN where NaN)."""
    if isinstance(want, (tuple, list)):
        assert isinstance(got, (tuple, list)) and len(got) == len(want)
        for g, w in zip(got, want):
            _same(g, w)
        return
    if isinstance(want, torch.Tensor):
        assert isinstance(got, td.Tensor), f"got {type(got).__name__}"
        assert got.shape == tuple(want.shape), f"shape {got.shape} vs torch {tuple(want.shape)}"
        assert _dtype(got) == _dtype(want), f"dtype {got.dtype} vs torch {want.dtype}"
        np.testing.assert_allclose(got.detach().numpy().astype(np.float64),
                                   want.detach().numpy().astype(np.float64), rtol=1e-6, atol=1e-7)
        return
    assert type(got) is type(want) and got == want, f"{got!r} vs torch {want!r}"


def _both(fn, *arrays):
    """fn(lib, *tensors) for tinydl and for PyTorch, compared."""
    got = fn(td, *[td.tensor(a) for a in arrays])
    want = fn(torch, *[torch.tensor(a) for a in arrays])
    _same(got, want)


TIES = np.array([[3.0, 1.0, 3.0, 2.0, 1.0, 3.0], [0.0, -1.0, 0.0, 5.0, -1.0, 0.0]])
WITH_NAN = np.array([[2.0, np.nan, 1.0, -np.inf, 1.0], [np.inf, 0.0, np.nan, 3.0, np.nan]])


# ---------------------------------------------------------------- sorting
@pytest.mark.parametrize("values", [TIES, WITH_NAN, TIES.astype(np.int64), TIES.astype(np.int32) > 1],
                         ids=["ties", "nan_inf", "int64", "bool"])
@pytest.mark.parametrize("descending", [False, True])
@pytest.mark.parametrize("dim", [-1, 0])
def test_stable_sort_and_argsort_follow_torch_on_ties(values, descending, dim):
    _both(lambda lib, x: tuple(x.sort(dim=dim, descending=descending, stable=True)), values)
    _both(lambda lib, x: lib.sort(x, dim=dim, descending=descending, stable=True).indices, values)
    _both(lambda lib, x: lib.argsort(x, dim=dim, descending=descending, stable=True), values)
    _both(lambda lib, x: x.argsort(dim, descending), values[:, :1] if dim == -1 else values[:1])


def test_topk_kthvalue_median_values_and_indices():
    x = np.random.default_rng(0).permutation(24).reshape(2, 3, 4).astype(np.float32)
    _both(lambda lib, t: tuple(t.topk(3)), x)
    _both(lambda lib, t: tuple(lib.topk(t, 2, dim=1, largest=False)), x)
    _both(lambda lib, t: tuple(t.kthvalue(2, 0, keepdim=True)), x)
    _both(lambda lib, t: tuple(lib.median(t, -1)), x)
    _both(lambda lib, t: t.median(), x)
    _both(lambda lib, t: (t.int().median(), t.long().topk(2).values), x)


def test_median_of_rows_with_nan_is_nan():
    _both(lambda lib, x: (x.median(), x.median(1).values), WITH_NAN)
    _both(lambda lib, x: x.median(0).values, np.array([[1.0, np.nan], [3.0, 2.0], [2.0, 0.0]]))


def test_namedtuple_results():
    x = td.tensor([[1.0, 3.0, 2.0]])
    assert x.sort().values.tolist() == [[1.0, 2.0, 3.0]] and x.sort().indices.tolist() == [[0, 2, 1]]
    assert x.topk(1).indices.dtype == td.int64 and type(x.topk(1)).__name__ == "topk"
    values, indices = x.kthvalue(1)
    assert values.tolist() == [1.0] and indices.tolist() == [0]


# ---------------------------------------------------------------- nonzero / where
@pytest.mark.parametrize("values", [np.array([[0, 1, 2], [3, 0, 0]]), np.array([0.0, -1.5, np.nan]),
                                    np.array(3), np.array(0.0), np.zeros((2, 0))],
                         ids=["int2d", "float_nan", "0d", "0d_zero", "empty"])
def test_nonzero_and_one_argument_where(values):
    _both(lambda lib, x: x.nonzero(), values)
    _both(lambda lib, x: lib.nonzero(x, as_tuple=True), values)
    if values.ndim:
        _both(lambda lib, x: lib.where(x), values)


def test_masked_select_of_an_integer_tensor_with_a_broadcast_mask():
    _both(lambda lib, x: lib.masked_select(x, x.sum(0) > 2), np.array([[1, 2, 3], [4, 0, 1]]))


# ---------------------------------------------------------------- comparisons and logic
A = np.array([1.0, np.nan, np.inf, -np.inf, 1e-9, 100.0, 0.0])
B = np.array([1.0 + 1e-6, np.nan, np.inf, np.inf, 0.0, 100.001, -0.0])


@pytest.mark.parametrize("kw", [{}, {"equal_nan": True}, {"rtol": 0.0, "atol": 1e-8}, {"rtol": 1e-3}])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_isclose_allclose(kw, dtype):
    a, b = A.astype(dtype), B.astype(dtype)
    _both(lambda lib, x, y: lib.isclose(x, y, **kw), a, b)
    _both(lambda lib, x, y: x.isclose(y, **kw), a, b)
    _both(lambda lib, x, y: (lib.allclose(x, y, **kw), x[:1].allclose(y[:1], **kw)), a, b)
    _both(lambda lib, x, y: (lib.allclose(x[[0, 2]], y[[0, 2]], **kw), lib.allclose(x[[5]], y[[5]], **kw)), a, b)


def test_isclose_of_integers_and_equal():
    _both(lambda lib, x, y: lib.isclose(x, y), np.array([1, 2, 1000000]), np.array([1, 3, 1000001]))
    _both(lambda lib, x, y: (lib.equal(x, x), lib.equal(x, y), lib.equal(x, x[:1]), x.equal(x.clone())),
          np.array([1.0, 2.0]), np.array([1.0, 2.5]))
    _both(lambda lib, x: lib.equal(x, x), np.array([1.0, np.nan]))
    _both(lambda lib, x, y: lib.equal(x, y), np.array([1.0, 2.0]), np.array([1, 2]))


def test_isclose_refuses_two_dtypes_as_torch():
    with pytest.raises(RuntimeError):
        torch.isclose(torch.ones(2), torch.ones(2, dtype=torch.float64))
    with pytest.raises(RuntimeError, match="isclose"):
        td.isclose(td.ones(2), td.ones(2, dtype=td.float64))


@pytest.mark.parametrize("name", ["logical_and", "logical_or", "logical_xor"])
def test_logical_ops(name):
    a, b = np.array([[0.0, 1.5, -2.0, 0.0]]), np.array([[3], [0]])
    _both(lambda lib, x, y: getattr(lib, name)(x, y), a, b)
    _both(lambda lib, x, y: getattr(x, name)(y), a > 0, a < 0)
    _both(lambda lib, x: (lib.logical_not(x), x.logical_not()), a)


# ---------------------------------------------------------------- dtypes of integer and bool inputs
INTS = np.array([[3, -1, 2], [0, 4, -2]], dtype=np.int32)


@pytest.mark.parametrize("fn", [
    lambda lib, x: x.prod(), lambda lib, x: lib.prod(x, 1), lambda lib, x: x.prod(0, keepdim=True),
    lambda lib, x: x.cumsum(1), lambda lib, x: lib.cumprod(x, 0), lambda lib, x: x.amax(1), lambda lib, x: x.amin(),
    lambda lib, x: x.floor(), lambda lib, x: x.ceil(), lambda lib, x: lib.round(x), lambda lib, x: x.trunc(),
    lambda lib, x: x.sign(), lambda lib, x: x.square(), lambda lib, x: x.sin(), lambda lib, x: x.reciprocal(),
    lambda lib, x: x.rsqrt().isnan(), lambda lib, x: x.log1p(), lambda lib, x: x.expm1(),
    lambda lib, x: x.log2().isinf(), lambda lib, x: x.repeat(2, 1), lambda lib, x: lib.tril(x),
    lambda lib, x: x.triu(-1), lambda lib, x: x.diagonal(), lambda lib, x: lib.movedim(x, 0, 1),
    lambda lib, x: x.clamp_min(0), lambda lib, x: lib.outer(x[0], x[1]),
    lambda lib, x: x.prod(dtype=lib.float64), lambda lib, x: x.cumsum(0, dtype=lib.float32),
])
@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint8, np.bool_])
def test_integer_and_bool_inputs_give_torch_dtypes(fn, dtype):
    x = np.abs(INTS).astype(dtype) if dtype in (np.uint8, np.bool_) else INTS.astype(dtype)
    try:
        want = fn(torch, torch.tensor(x))
    except (RuntimeError, TypeError, NotImplementedError):
        with pytest.raises((RuntimeError, TypeError, NotImplementedError)):
            fn(td, td.tensor(x))
        return
    _same(fn(td, td.tensor(x)), want)


def test_round_half_to_even_and_decimals():
    x = np.array([0.5, 1.5, 2.5, -0.5, -2.5, 1.25, 1.35, 12345.678], dtype=np.float32)
    _both(lambda lib, t: (t.round(), lib.round(t, decimals=1), t.round(decimals=2), t.round(decimals=-2)), x)
    _both(lambda lib, t: lib.round(t), np.array([7, -3]))


# ---------------------------------------------------------------- new_* constructors
@pytest.mark.parametrize("dtype", [np.float64, np.int32])
def test_new_constructors_keep_dtype_and_device(dtype):
    base = np.ones((2, 2), dtype=dtype)
    _both(lambda lib, x: (x.new_zeros(3, 2), x.new_ones((2,)), x.new_full((2, 3), 7), x.new_empty(0, 4),
                          x.new_tensor([1, 2]), x.new_zeros(2, dtype=lib.float32), x.new_tensor([1.5], dtype=lib.int64)),
          base)
    t = td.tensor(base).new_ones(2, requires_grad=dtype == np.float64)
    assert t.requires_grad == (dtype == np.float64) and t.is_leaf


# ---------------------------------------------------------------- in-place variants
@pytest.mark.parametrize("fn", [
    lambda lib, x: x.clamp_(-0.5, 0.5), lambda lib, x: x.clamp_(min=0.0), lambda lib, x: x.clamp_min_(0.1),
    lambda lib, x: x.clamp_max_(0.2), lambda lib, x: x.exp_(), lambda lib, x: x.abs_().sqrt_(), lambda lib, x: x.abs_().log_(),
    lambda lib, x: x.neg_(), lambda lib, x: x.floor_(), lambda lib, x: x.ceil_(), lambda lib, x: x.round_(),
    lambda lib, x: x.trunc_(), lambda lib, x: x.sign_(), lambda lib, x: x.sin_(), lambda lib, x: x.cos_(),
    lambda lib, x: x.sigmoid_(), lambda lib, x: x.tanh_(), lambda lib, x: x.square_(), lambda lib, x: x.tril_(),
    lambda lib, x: x.triu_(1), lambda lib, x: x.masked_fill_(x > 0, -1.0), lambda lib, x: x.reciprocal_(),
    lambda lib, x: x.masked_fill_(lib.tensor([True, False, True]), 9.0),
    lambda lib, x: x.scatter_(1, lib.tensor([[2], [0]]), 1.0),
    lambda lib, x: x.scatter_add_(0, lib.tensor([[1, 1, 0]]), lib.ones(1, 3, dtype=lib.float64)),
    lambda lib, x: x.index_add_(1, lib.tensor([0, 0]), lib.ones(2, 2, dtype=lib.float64), alpha=2),
])
def test_in_place_variants_write_into_the_tensor(fn):
    values = np.array([[-1.2, 0.3, 2.0], [0.7, -0.1, -3.0]])
    x, xt = td.tensor(values), torch.tensor(values)
    out, _ = fn(td, x), fn(torch, xt)
    assert out is x
    _same(x, xt)
    # ... and recorded in the graph when x is a result that requires grad
    a, at = td.tensor(values, requires_grad=True), torch.tensor(values, requires_grad=True)
    y, yt = a * 1.5, at * 1.5
    fn(td, y), fn(torch, yt)
    g = np.random.default_rng(0).standard_normal(values.shape)
    (y * td.tensor(g)).sum().backward()
    (yt * torch.tensor(g)).sum().backward()
    _same(y, yt)
    _same(a.grad, at.grad)


def test_in_place_integer_ops_and_their_errors():
    _both(lambda lib, x: (x.clamp_(0, 2), x), np.array([-3, 1, 5]))
    _both(lambda lib, x: x.scatter_(0, lib.tensor([2, 0]), 7), np.array([-3, 1, 5]))
    for lib in (torch, td):
        with pytest.raises(RuntimeError):
            lib.tensor([1, 2]).exp_()                   # float32 can't be written into int64
        with pytest.raises(RuntimeError):
            lib.ones(2, requires_grad=True).clamp_(0, 1)   # a leaf that requires grad


def test_masked_fill_in_place_with_a_value_that_requires_grad():
    values = np.arange(6.0).reshape(2, 3)
    grads = []
    for lib in (td, torch):
        v = lib.tensor(2.0, requires_grad=True)
        x = lib.tensor(values)
        x.masked_fill_(x > 2, v)
        (x * x).backward(lib.tensor(np.random.default_rng(3).standard_normal((2, 3))))
        grads.append(v.grad.item())
    assert grads[0] == pytest.approx(grads[1])


def test_one_hot_by_scatter():
    labels = np.array([2, 0, 1, 2])
    _both(lambda lib, y: lib.zeros(4, 3).scatter_(1, y[:, None], 1.0), labels)


# ---------------------------------------------------------------- errors where PyTorch raises
@pytest.mark.parametrize("fn", [
    lambda lib, x: x.topk(5), lambda lib, x: x.kthvalue(0), lambda lib, x: x.mm(x[0]),
    lambda lib, x: lib.bmm(x, x), lambda lib, x: lib.dot(x[0], x[1, :2]), lambda lib, x: x.repeat(2),
    lambda lib, x: lib.tril(x[0]), lambda lib, x: x.long().norm(), lambda lib, x: x.diagonal(0, 1, 1),
    lambda lib, x: x.amax(1)[:0].amax(0), lambda lib, x: x.movedim((0, 0), (0, 1)),
    lambda lib, x: x.scatter(0, lib.tensor([[5]]), 1.0), lambda lib, x: x.float().scatter(0, lib.tensor([[0]]), x[:1]),
    lambda lib, x: x.masked_select(x > 0)[None].masked_select(lib.ones(3, dtype=lib.bool)),
    lambda lib, x: x.index_add(0, lib.tensor([0]), x), lambda lib, x: lib.take_along_dim(x, lib.tensor([0]), 0),
], ids=range(16))
def test_errors_as_torch(fn):
    x = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    with pytest.raises((RuntimeError, IndexError, TypeError, ValueError)):
        fn(torch, torch.tensor(x))
    with pytest.raises((RuntimeError, IndexError, TypeError, ValueError)):
        fn(td, td.tensor(x))


def test_error_messages_name_the_op_and_shapes():
    x = td.randn(2, 3)
    with pytest.raises(RuntimeError, match=r"topk: k \(4\).*\(2, 3\)"):
        x.topk(4)
    with pytest.raises(RuntimeError, match=r"mm: mat2 must be a 2-D tensor, got shape \(3,\)"):
        x.mm(x[0])
    with pytest.raises(RuntimeError, match="repeat: .*shape \\(2, 3\\)"):
        x.repeat(2)


# ---------------------------------------------------------------- property tests on drawn shapes
# The machinery of test_op_fuzz.py (hypothesis draws shapes with zero-size and size-1 dims,
# 0-d tensors, dtypes and memory layouts; ``check`` compares refusals, outputs, dtypes and
# every gradient with PyTorch's), applied to the ops added here.
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402
from test_op_fuzz import FUZZ, TD, arrays_of, check, dims, shapes  # noqa: E402


def _lib(ns):
    return td if ns is TD else torch


def _ix(ns, a):
    """An index array as the library wants it."""
    return a if ns is TD else torch.tensor(a)


NEW_UNARY = {   # name: (fn(ns, x), domain)
    "floor": (lambda ns, x: x.floor(), "real"), "ceil": (lambda ns, x: x.ceil(), "real"),
    "trunc": (lambda ns, x: x.trunc(), "real"), "round": (lambda ns, x: _lib(ns).round(x, decimals=1), "real"),
    "sign": (lambda ns, x: x.sign(), "real"), "sin": (lambda ns, x: x.sin(), "real"),
    "cos": (lambda ns, x: _lib(ns).cos(x), "real"), "log1p": (lambda ns, x: x.log1p(), "positive"),
    "expm1": (lambda ns, x: x.expm1(), "real"), "log2": (lambda ns, x: x.log2(), "positive"),
    "log10": (lambda ns, x: _lib(ns).log10(x), "positive"), "square": (lambda ns, x: x.square(), "real"),
    "rsqrt": (lambda ns, x: x.rsqrt(), "positive"), "reciprocal": (lambda ns, x: x.reciprocal(), "nonzero"),
    "clamp_min": (lambda ns, x: x.clamp_min(0.1), "real"),
    "clamp_max": (lambda ns, x: _lib(ns).clamp_max(x, -0.2), "real"),
}


@pytest.mark.parametrize("name", sorted(NEW_UNARY))
@FUZZ
@given(data=st.data())
def test_property_unary(data, name):
    fn, domain = NEW_UNARY[name]
    check(fn, data.draw(arrays_of([data.draw(shapes())], domain)))


NEW_REDUCTIONS = {   # name: fn(ns, x, dim, keepdim) with dim None, an int or a tuple
    "prod": lambda ns, x, dim, keepdim: x.prod() if dim is None else x.prod(dim, keepdim=keepdim),
    "amax": lambda ns, x, dim, keepdim: x.amax(() if dim is None else dim, keepdim=keepdim),
    "amin": lambda ns, x, dim, keepdim: _lib(ns).amin(x, () if dim is None else dim, keepdim),
    "norm": lambda ns, x, dim, keepdim: x.norm(dim=dim, keepdim=keepdim),
    "norm_p1": lambda ns, x, dim, keepdim: x.norm(1, dim, keepdim),
    "norm_p3": lambda ns, x, dim, keepdim: _lib(ns).norm(x, 3, dim, keepdim),
    "norm_inf": lambda ns, x, dim, keepdim: x.norm(float("inf"), dim, keepdim),
    "median": lambda ns, x, dim, keepdim: x.median() if dim is None else x.median(dim, keepdim),
    "cumsum": lambda ns, x, dim, keepdim: x.cumsum(0 if dim is None else dim),
    "cumprod": lambda ns, x, dim, keepdim: _lib(ns).cumprod(x, -1 if dim is None else dim),
    "sort": lambda ns, x, dim, keepdim: tuple(x.sort(-1 if dim is None else dim, descending=keepdim)),
    "argsort": lambda ns, x, dim, keepdim: x.argsort(-1 if dim is None else dim, descending=keepdim),
}
_INT_DIM = {"prod", "median", "cumsum", "cumprod", "sort", "argsort"}


@pytest.mark.parametrize("name", sorted(NEW_REDUCTIONS))
@FUZZ
@given(data=st.data())
def test_property_reductions(data, name):
    x, = data.draw(arrays_of([data.draw(shapes())]))
    dim, keepdim = data.draw(dims(x.ndim, allow_tuple=name not in _INT_DIM)), data.draw(st.booleans())
    check(lambda ns, t: NEW_REDUCTIONS[name](ns, t, dim, keepdim), [x])


@pytest.mark.parametrize("kind", ["topk", "kthvalue"])
@FUZZ
@given(data=st.data())
def test_property_topk_kthvalue(data, kind):
    x, = data.draw(arrays_of([data.draw(shapes(0, 3, 0, 4))]))
    d = data.draw(st.integers(-max(x.ndim, 1), max(x.ndim, 1) - 1))
    k = data.draw(st.integers(0, 5))
    if kind == "topk":
        largest = data.draw(st.booleans())
        check(lambda ns, t: tuple(t.topk(k, d, largest=largest)), [x])
    else:
        keepdim = data.draw(st.booleans())
        check(lambda ns, t: tuple(t.kthvalue(k, d, keepdim)), [x])


@pytest.mark.parametrize("kind", ["mm", "bmm", "dot", "mv", "outer"])
@FUZZ
@given(data=st.data())
def test_property_products(data, kind):
    b, n, k, m = (data.draw(st.integers(0, 3)) for _ in range(4))
    wrong = data.draw(st.integers(0, 5)) == 0          # now and then a size that must be refused
    shapes_of = {"mm": [(n, k), (k + wrong, m)], "bmm": [(b, n, k), (b, k + wrong, m)], "dot": [(k,), (k + wrong,)],
                 "mv": [(n, k), (k + wrong,)], "outer": [(n,), (m,)]}[kind]
    check(lambda ns, x, y: getattr(_lib(ns), kind)(x, y), data.draw(arrays_of(shapes_of)))


@pytest.mark.parametrize("kind", ["repeat", "tile", "movedim", "tril", "triu", "diagonal"])
@FUZZ
@given(data=st.data())
def test_property_shape_ops(data, kind):
    x, = data.draw(arrays_of([data.draw(shapes(0, 4, 0, 3))]))
    n = x.ndim
    if kind in ("repeat", "tile"):
        reps = tuple(data.draw(st.lists(st.integers(0, 2), min_size=0, max_size=n + 2)))
        fn = (lambda ns, t: t.repeat(*reps)) if kind == "repeat" else (lambda ns, t: _lib(ns).tile(t, reps))
    elif kind == "movedim":
        src = tuple(data.draw(st.lists(st.integers(-n, n - 1), max_size=n, unique=True))) if n else ()
        dst = tuple(data.draw(st.permutations(range(n)))[:len(src)])
        fn = lambda ns, t: t.movedim(src, dst)                                    # noqa: E731
    elif kind in ("tril", "triu"):
        k = data.draw(st.integers(-3, 3))
        fn = lambda ns, t: getattr(_lib(ns), kind)(t, k)                         # noqa: E731
    else:
        offset = data.draw(st.integers(-3, 3))
        d1, d2 = (data.draw(st.integers(-max(n, 1), max(n, 1) - 1)) for _ in range(2))
        fn = lambda ns, t: t.diagonal(offset, d1, d2)                             # noqa: E731
    check(fn, [x])


@FUZZ
@given(data=st.data())
def test_property_masked_select(data):
    pair = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=3, min_side=0, max_side=3))
    x, m = data.draw(arrays_of(pair.input_shapes))
    check(lambda ns, t, u: t.masked_select(u > 0), [x, m], grad=[0])


@pytest.mark.parametrize("kind", ["scatter", "scatter_value", "scatter_add", "index_add", "take_along_dim"])
@FUZZ
@given(data=st.data())
def test_property_scatter_index_add_take_along_dim(data, kind):
    x, = data.draw(arrays_of([data.draw(shapes(1, 3, 1, 4))]))
    d = data.draw(st.integers(0, x.ndim - 1))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    if kind == "index_add":
        index = rng.integers(0, x.shape[d], data.draw(st.integers(0, 4)))
        src, = data.draw(arrays_of([x.shape[:d] + (index.size,) + x.shape[d + 1:]], dtype=x.dtype))
        alpha = data.draw(st.sampled_from([1, -0.5]))
        check(lambda ns, t, s: t.index_add(d, _ix(ns, index), s, alpha=alpha), [x, src])
        return
    if kind == "take_along_dim":
        shape = tuple(data.draw(st.sampled_from([1, s])) if i != d else data.draw(st.integers(0, 4))
                      for i, s in enumerate(x.shape))
        index = rng.integers(0, x.shape[d], shape)
        check(lambda ns, t: _lib(ns).take_along_dim(t, _ix(ns, index), d), [x])
        return
    # scatter: index no larger than x (off dim) and the same shape as src (PyTorch's backward needs it);
    # plain scatter with distinct positions along dim (where two writes meet, which wins is unspecified)
    shape = tuple(data.draw(st.integers(0, s)) for s in x.shape)
    if kind == "scatter_add":
        index = rng.integers(0, x.shape[d], shape)
    else:
        picks = np.argsort(rng.random(shape[:d] + (x.shape[d],) + shape[d + 1:]), axis=d)
        index = np.take(picks, range(shape[d]), axis=d)
    if kind == "scatter_value":
        check(lambda ns, t: t.scatter(d, _ix(ns, index), 1.5), [x])
        return
    src, = data.draw(arrays_of([shape], dtype=x.dtype))
    check(lambda ns, t, s: getattr(_lib(ns), kind)(t, d, _ix(ns, index), s), [x, src])
