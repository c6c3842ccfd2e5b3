"""Type promotion as PyTorch's (tinydl/ops/promotion.py): every binary op over every pair of
dtypes and operand forms (a tensor with dimensions, a 0-d tensor, a Python number) gives
PyTorch's dtype and values, and a cast input gets its gradient in its own dtype."""
import itertools

import numpy as np
import pytest

import tinydl as td

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning", "ignore:invalid value:RuntimeWarning")  # x / 0

REAL = ["bool", "uint8", "int8", "int16", "int32", "int64", "float16", "float32", "float64"]
ALL = REAL + ["complex64", "complex128"]


def _td(values, dtype):
    return td.tensor(np.array(values, dtype=dtype))


def _torch(values, dtype):
    return torch.tensor(np.array(values, dtype=dtype))


def _operand(form, dtype, lib):
    """One operand: 'dims' (3,), 'zero' 0-d, or a Python number of the dtype's kind."""
    values = {"b": [True, False, True], "u": [3, 1, 2], "i": [3, -1, 2], "f": [1.5, -0.25, 2.0]}[np.dtype(dtype).kind]
    if form == "number":
        return type(values[0])(values[0]) if dtype != "bool" else True
    make = _td if lib == "td" else _torch
    return make(values if form == "dims" else values[0], dtype)


BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "floor_divide": lambda a, b: a // b,
    "remainder": lambda a, b: a % b,
    "lt": lambda a, b: a < b,
    "eq": lambda a, b: a == b,
}
FORMS = [("dims", "dims"), ("dims", "zero"), ("zero", "dims"), ("dims", "number"), ("number", "dims"),
         ("zero", "zero"), ("zero", "number")]
NUMBER_DTYPES = ["bool", "int64", "float64"]        # bool, int and float Python numbers


def _cases():
    for (fa, fb), op in itertools.product(FORMS, BINARY):
        for da in (NUMBER_DTYPES if fa == "number" else REAL):
            for db in (NUMBER_DTYPES if fb == "number" else REAL):
                yield fa, da, fb, db, op


def _run(lib, fa, da, fb, db, op):
    try:
        return BINARY[op](_operand(fa, da, lib), _operand(fb, db, lib))
    except (RuntimeError, TypeError) as e:       # bool - bool, integer // 0
        return e


@pytest.mark.parametrize("fa,da,fb,db,op", list(_cases()))
def test_binary_op_dtype_and_values_match_torch(fa, da, fb, db, op):
    expected = _run("torch", fa, da, fb, db, op)
    got = _run("td", fa, da, fb, db, op)
    if isinstance(expected, Exception):
        assert isinstance(got, Exception), f"PyTorch refuses ({expected}); tinydl gave {got!r}"
        return
    assert not isinstance(got, Exception), f"tinydl refused: {got}"
    want = expected.numpy()
    assert got.dtype == want.dtype, f"{da} {fa} {op} {db} {fb}: PyTorch {want.dtype}, tinydl {got.dtype}"
    rtol = 1e-3 if want.dtype == np.float16 else 1e-6
    np.testing.assert_allclose(got.numpy(), want, rtol=rtol)


@pytest.mark.parametrize("a,b", list(itertools.combinations_with_replacement(ALL, 2)))
def test_promote_types_matches_torch(a, b):
    want = torch.promote_types(getattr(torch, a), getattr(torch, b))
    assert td.promote_types(a, b) == np.dtype(str(want).replace("torch.", ""))
    assert td.promote_types(b, a) == td.promote_types(a, b)


@pytest.mark.parametrize("dims,zero,number", [
    ("int64", "float64", None), ("float32", "float64", None), ("int32", "int64", None),
    ("bool", None, 2), ("uint8", None, 300), ("int64", None, 0.5), ("float16", None, 0.5),
    ("float32", None, 1j), ("float64", None, 1j), ("int32", None, 1j), ("bool", "bool", True),
    (None, "int32", 0.5), (None, "float64", 2), ("float64", "complex64", None), ("int8", "uint8", None),
])
def test_result_type_matches_torch(dims, zero, number):
    tds, torchs = [], []
    if dims:
        tds.append(_td([1, 0], dims))
        torchs.append(_torch([1, 0], dims))
    if zero:
        tds.append(_td(1, zero))
        torchs.append(_torch(1, zero))
    if number is not None:
        tds.append(number)
        torchs.append(number)
    want = torch.result_type(*torchs) if len(torchs) == 2 else torchs[0].dtype
    assert td.result_type(*tds) == np.dtype(str(want).replace("torch.", ""))


def test_cast_inputs_get_gradients_in_their_own_dtype():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4)).astype(np.float32)
    s = np.array(0.7)                           # float64, 0-d
    mask = rng.integers(0, 3, (3, 4))           # int64
    g = rng.standard_normal((3, 4)).astype(np.float32)
    grads = {}
    for lib, T in (("td", td.tensor), ("torch", torch.tensor)):
        xt, st = T(x, requires_grad=True), T(s, requires_grad=True)
        y = (xt * st) * T(mask)
        assert str(y.dtype).endswith("float32")
        y.backward(T(g))
        grads[lib] = xt.grad, st.grad
    for got, want in zip(grads["td"], grads["torch"]):
        assert got.dtype == want.numpy().dtype
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5)


def test_cat_and_stack_promote_with_gradients():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((2, 3)).astype(np.float32), rng.standard_normal((2, 3))
    for join in ("cat", "stack"):
        out = {}
        for lib, mod in (("td", td), ("torch", torch)):
            ta, tb = mod.tensor(a, requires_grad=True), mod.tensor(b, requires_grad=True)
            y = getattr(mod, join)([ta, tb, mod.tensor(np.ones((2, 3), np.int64))])
            y.backward(mod.tensor(np.arange(y.numel(), dtype=np.float64).reshape(tuple(y.shape))))
            out[lib] = y, ta.grad, tb.grad
        for got, want in zip(out["td"], out["torch"]):
            assert got.dtype == want.detach().numpy().dtype
            np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), rtol=1e-6)


def test_where_maximum_minimum_clamp_promote_as_torch():
    cond = np.array([True, False, True])
    ints, floats = np.array([3, -1, 2]), np.array([0.5, 1.5, -2.0], np.float32)
    cases = [
        lambda m, T: m.where(T(cond), T(ints), 0.5),
        lambda m, T: m.where(T(cond), T(floats), T(ints)),
        lambda m, T: m.maximum(T(ints), T(floats)),
        lambda m, T: m.minimum(T(floats), T(np.array(1.0))),
        lambda m, T: m.clamp(T(ints), min=0.5),
        lambda m, T: m.clamp(T(ints), max=1),
    ]
    for case in cases:
        got, want = case(td, td.tensor), case(torch, torch.tensor).numpy()
        assert got.dtype == want.dtype
        np.testing.assert_allclose(got.numpy(), want)


@pytest.mark.parametrize("other", ["float64", "int64"])
def test_matmul_refuses_mixed_dtypes_as_torch(other):
    a, b = _td(np.ones((2, 3)), "float32"), _td(np.ones((3, 2)), other)
    with pytest.raises(RuntimeError, match=rf"matmul: .*same dtype, got float32 and {other}"):
        a @ b
    with pytest.raises(RuntimeError):
        _torch(np.ones((2, 3)), "float32") @ _torch(np.ones((3, 2)), other)
