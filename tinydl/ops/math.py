"""Elementwise arithmetic and functions (exp, sin, rounding...), matmul and its special
cases (mm, bmm, dot, mv, outer), linear, and elementwise tests (isclose, logical_and...).

Each op is a Function: ``forward`` computes on raw arrays, ``backward`` receives
dL/d(output) (``gy``) and returns dL/d(input) for each input. Binary ops
broadcast like NumPy; ``unbroadcast`` sums the gradient back to each input's
shape.
"""
import builtins
import math
import numbers

import numpy as np

from ..autograd import Function, unbroadcast
from ..backend import get_array_module, device_of, to_device as _array_to_device
from ..tensor import Tensor, _default_float
from ..kernels.matmul import matmul_rows, matmul_t
from .checks import check_same_kind
from .promotion import result_type

__all__ = ["add", "sub", "mul", "div", "pow", "remainder", "floor_divide", "neg", "exp", "log", "sqrt", "abs", "clamp",
           "maximum", "minimum", "where", "matmul", "linear",
           "floor", "ceil", "round", "trunc", "sign", "sin", "cos", "log1p", "expm1", "log2", "log10", "square",
           "rsqrt", "reciprocal", "clamp_min", "clamp_max", "mm", "bmm", "dot", "mv", "outer", "allclose", "isclose",
           "equal", "logical_and", "logical_or", "logical_xor", "logical_not"]


# ---------------------------------------------------------------- operands
def raw(x):
    """The array behind a Tensor (other values unchanged)."""
    return x.array if isinstance(x, Tensor) else x


def on_array_or_tensor(name, v):
    """``v.name()`` for a Tensor (a recorded op, when a backward runs with create_graph),
    ``xp.name(v)`` for an array: one backward for both."""
    return getattr(v, name)() if isinstance(v, Tensor) else getattr(get_array_module(v), name)(v)


def sum_kept(v, dim):
    """The sum along ``dim``, kept as a size-1 axis, of an array or a Tensor (see above)."""
    return v.sum(dim, keepdim=True) if isinstance(v, Tensor) else v.sum(axis=dim, keepdims=True)


def _operands(a, b, op, elementwise=True):
    """Make ``a op b`` well-defined: at least one Tensor, one device, and one dtype, PyTorch's
    (``promotion.py``: int64 * float32 is float32, ``/`` of integers float32), with numbers
    as NumPy scalars (0-d arrays on the GPU). ``elementwise=False`` (matmul): no broadcasting
    and no promotion, the dtypes must agree."""
    if type(a.array if isinstance(a, Tensor) else None) is np.ndarray:    # the common cases, first
        if type(b) is float and a.array.dtype.kind == "f":              # x * 0.5
            return a, a.array.dtype.type(b)
        if isinstance(b, Tensor) and type(b.array) is np.ndarray and a.array.shape == b.array.shape \
                and a.array.dtype == b.array.dtype and a.array.dtype.kind == "f":
            return a, b
    ta = a if isinstance(a, Tensor) else None
    tb = b if isinstance(b, Tensor) else None
    ref = ta if ta is not None else tb
    if ta is not None and tb is not None and ta.device != tb.device:
        raise RuntimeError(f"{op}: operands are on different devices ({ta.device} and {tb.device})")
    if op == "sub" and (_is_bool(a) or _is_bool(b)):
        raise RuntimeError(f"sub: subtraction with a bool operand is not supported (operands of "
                           f"{_describe(a)} and {_describe(b)}); to invert a mask use ~mask")
    if elementwise:
        dtype = _binary_dtype(a, b)
        if op == "div" and dtype.kind in "biu":     # true division
            dtype = _default_float
        elif op in ("floor_divide", "remainder") and dtype.kind == "b":
            raise RuntimeError(f"{op}: not defined for two bool operands, as in PyTorch (cast one to int)")
    else:
        dtype = None
    a, b = _as_operand(a, dtype, ref, op), _as_operand(b, dtype, ref, op)
    if not elementwise and a.dtype != b.dtype:
        raise RuntimeError(f"{op}: expected both operands to have the same dtype, got {a.dtype} and {b.dtype} "
                           f"(shapes {tuple(a.shape)} and {tuple(b.shape)})")
    if elementwise and a.shape != b.shape and a.ndim and b.ndim:
        try:
            np.broadcast_shapes(a.shape, b.shape)  # shapes only: fine for cupy data
        except ValueError:
            raise RuntimeError(f"{op}: shapes {tuple(a.shape)} and {tuple(b.shape)} cannot be broadcast together") from None
    return a, b


def promoted(*tensors):
    """The Tensors among ``tensors`` cast to their PyTorch promotion (``promotion.py``: int64
    and float32 join as float32), by the Cast op, so a gradient comes back in its tensor's
    dtype; the rest as they are (cat, stack, the regression losses)."""
    dtype = result_type(*tensors)
    return [cast(t, dtype) if isinstance(t, Tensor) and t.dtype != dtype else t for t in tensors]


def _binary_dtype(a, b):
    """``result_type(a, b)``, the commonest cases first (one dtype; a float Tensor and a
    Python number: the Tensor's)."""
    t, other = (a, b) if isinstance(a, Tensor) else (b, a)
    dtype = t.dtype
    if isinstance(other, Tensor) and other.dtype == dtype:
        return dtype
    if type(other) is int and dtype.kind in "iuf" or type(other) is float and dtype.kind == "f":
        return dtype
    return result_type(a, b)


def _is_bool(v):
    return type(v) is bool or isinstance(v, Tensor) and v.dtype.kind == "b"


def _describe(v):
    return f"dtype {v.dtype}, shape {tuple(v.shape)}" if hasattr(v, "dtype") else f"{type(v).__name__} {v!r}"


def _as_operand(v, dtype, ref, op):
    """``v`` (a Tensor, a number or an array on ``ref``'s device) as an operand of ``dtype``
    (None: its own; a number: ``ref``'s). A Tensor that requires grad is cast by the Cast
    op, so its gradient comes back in its own dtype."""
    if isinstance(v, Tensor):
        return v if dtype is None or v.dtype == dtype else cast(v, dtype)
    xp = ref._xp
    if isinstance(v, (numbers.Number, np.generic)):        # (np.bool_ is no numbers.Number)
        dtype = ref.dtype if dtype is None else dtype
        # a NumPy scalar: a 0-d operand that costs a fifth of a 0-d array to make, and that
        # CuPy passes to its kernels by value (a 0-d CuPy array would be a copy to the GPU)
        try:
            return dtype.type(v)
        except OverflowError:           # uint8 * -1, int8 + 200: wrapped to the dtype, as PyTorch
            return np.int64(v).astype(dtype)
    if get_array_module(v) is not xp:
        raise RuntimeError(f"{op}: an array on another device than the tensor ({ref.device})")
    return xp.asarray(v) if dtype is None else xp.asarray(v).astype(dtype, copy=False)


# ---------------------------------------------------------------- arithmetic
class Add(Function):
    """y = a + b;  dL/da = gy,  dL/db = gy  (each summed over broadcast axes)."""

    double_backward = "operators"

    def forward(ctx, a, b):
        ctx.shapes = a.shape, b.shape
        return a + b

    def backward(ctx, gy):
        sa, sb = ctx.shapes
        need_a, need_b = ctx.needs_input_grad
        return unbroadcast(gy, sa) if need_a else None, unbroadcast(gy, sb) if need_b else None


class Sub(Function):
    """y = a - b;  dL/da = gy,  dL/db = -gy."""

    double_backward = "operators"

    def forward(ctx, a, b):
        ctx.shapes = a.shape, b.shape
        return a - b

    def backward(ctx, gy):
        sa, sb = ctx.shapes
        need_a, need_b = ctx.needs_input_grad
        return unbroadcast(gy, sa) if need_a else None, unbroadcast(-gy, sb) if need_b else None


class Mul(Function):
    """y = a * b;  dL/da = gy * b,  dL/db = gy * a.

    Each factor is kept only if the other one's gradient is wanted, as in PyTorch:
    ``x * 0.5`` keeps no x (one activation less, and no version to check)."""

    double_backward = "operators"

    def forward(ctx, a, b):
        need_a, need_b = ctx.needs_input_grad
        ctx.save_for_backward(a if need_b else None, b if need_a else None)
        ctx.shapes = a.shape, b.shape
        return a * b

    def backward(ctx, gy):
        a, b = ctx.saved_tensors
        sa, sb = ctx.shapes
        need_a, need_b = ctx.needs_input_grad
        return unbroadcast(gy * b, sa) if need_a else None, unbroadcast(gy * a, sb) if need_b else None


class Div(Function):
    """y = a / b;  dL/da = gy / b,  dL/db = -gy * a / b**2 = -gy * y / b."""

    double_backward = "operators"

    def forward(ctx, a, b):
        y = a / b
        ctx.save_for_backward(b, y)
        ctx.a_shape = a.shape
        return y

    def backward(ctx, gy):
        b, y = ctx.saved_tensors
        ga = unbroadcast(gy / b, ctx.a_shape) if ctx.needs_input_grad[0] else None
        gb = unbroadcast(-gy * y / b, b.shape) if ctx.needs_input_grad[1] else None
        return ga, gb


class Pow(Function):
    """y = a ** b;  dL/da = gy * b * a**(b-1),  dL/db = gy * y * log(a).

    As PyTorch, dL/da is 0 where b == 0 (not 0 * a**-1, NaN at a == 0), and dL/db is 0 where
    a == 0 and b >= 0 (not y * log(0)); elsewhere log(a) of a < 0 is NaN."""

    double_backward = "operators"

    def forward(ctx, a, b):
        y = a ** b
        ctx.save_for_backward(a, b, y)
        return y

    def backward(ctx, gy):
        a, b, y = ctx.saved_tensors
        ga = gb = None
        if ctx.needs_input_grad[0]:
            if not hasattr(raw(b), "shape") or isinstance(raw(b), np.generic):     # a number b
                ga = gy * 0 if b == 0 else gy * b * a ** (b - 1)
            else:
                ga = zero_where(raw(b) == 0, gy * b * a ** (b - 1))
            ga = unbroadcast(ga, a.shape)
        if ctx.needs_input_grad[1]:
            gb = zero_where((raw(a) == 0) & (raw(b) >= 0), gy * y * on_array_or_tensor("log", a))
            gb = unbroadcast(gb, b.shape)
        return ga, gb


def zero_where(condition, v):
    """v with zeros where ``condition`` holds (a NaN or inf there too), v an array or a Tensor."""
    if isinstance(v, Tensor):
        return where(condition, 0.0, v)
    return get_array_module(v).where(condition, v.dtype.type(0), v)


def check_integer_divisor(op, a, b):
    """Integer division by zero raises, as in PyTorch (NumPy would give 0); on the CPU only,
    where the test costs no copy from the device."""
    xp = get_array_module(a, b)
    if xp is np and np.result_type(a, b).kind in "iub" and not np.all(b):
        raise RuntimeError(f"ZeroDivisionError: {op}: integer division by zero (divisor of shape {np.shape(b)})")


class Remainder(Function):
    """y = a - floor(a / b) * b, of b's sign where not 0 (Python's % and torch.remainder);
    dL/da = gy,  dL/db = -gy * floor(a / b)  (away from the jumps at a / b integer)."""

    double_backward = "operators"

    def forward(ctx, a, b):
        check_integer_divisor("remainder", a, b)
        xp = get_array_module(a, b)
        ctx.shapes = a.shape, b.shape
        ctx.save_for_backward(xp.floor_divide(a, b) if ctx.needs_input_grad[1] else None)
        return xp.remainder(a, b)

    def backward(ctx, gy):
        quotient, = ctx.saved_tensors
        sa, sb = ctx.shapes
        need_a, need_b = ctx.needs_input_grad
        return unbroadcast(gy, sa) if need_a else None, unbroadcast(-gy * quotient, sb) if need_b else None


class FloorDivide(Function):
    """y = floor(a / b) (Python's // and torch.floor_divide). Piecewise constant, its
    gradient is 0 wherever it exists: y is a constant, outside the graph (PyTorch's
    backward refuses it instead)."""

    non_differentiable_outputs = (0,)

    def forward(ctx, a, b):
        check_integer_divisor("floor_divide", a, b)
        return get_array_module(a, b).floor_divide(a, b)


class Neg(Function):
    """y = -x;  dL/dx = -gy."""

    double_backward = "operators"

    def forward(ctx, x):
        return -x

    def backward(ctx, gy):
        return -gy


class Exp(Function):
    """y = exp(x);  dL/dx = gy * y."""

    double_backward = "operators"

    def forward(ctx, x):
        y = get_array_module(x).exp(x)
        ctx.save_for_backward(y)
        return y

    def backward(ctx, gy):
        y, = ctx.saved_tensors
        return gy * y


class Log(Function):
    """y = log(x);  dL/dx = gy / x."""

    double_backward = "operators"

    def forward(ctx, x):
        ctx.save_for_backward(x)
        return get_array_module(x).log(x)

    def backward(ctx, gy):
        x, = ctx.saved_tensors
        return gy / x


class Sqrt(Function):
    """y = sqrt(x);  dL/dx = gy / (2 y)."""

    double_backward = "operators"

    def forward(ctx, x):
        y = get_array_module(x).sqrt(x)
        ctx.save_for_backward(y)
        return y

    def backward(ctx, gy):
        y, = ctx.saved_tensors
        return gy / (2 * y)


class Abs(Function):
    """y = |x|;  dL/dx = gy * sign(x)  (0 at x = 0, as PyTorch)."""

    double_backward = "operators"

    def forward(ctx, x):
        ctx.save_for_backward(x)
        return get_array_module(x).abs(x)

    def backward(ctx, gy):
        x, = ctx.saved_tensors
        return gy * get_array_module(raw(x)).sign(raw(x))


class Clamp(Function):
    """y = min(max(x, lo), hi);  dL/dx = gy where lo <= x <= hi, else 0 (PyTorch keeps the
    gradient at the boundaries)."""

    double_backward = "operators"

    def forward(ctx, x, lo=None, hi=None):
        xp = get_array_module(x)
        inside = xp.ones(x.shape, dtype=bool)
        if lo is not None:
            inside &= x >= lo
        if hi is not None:
            inside &= x <= hi
        ctx.save_for_backward(inside)
        return xp.clip(x, lo, hi).astype(x.dtype, copy=False)

    def backward(ctx, gy):
        inside, = ctx.saved_tensors
        return gy * inside


class ClampTensor(Function):
    """y = min(max(x, lo), hi) with tensor bounds (broadcast; a bound left out is None);
        dL/dx  = gy where lo <= x <= hi,
        dL/dlo = gy where x < lo < hi           (y is lo there),
        dL/dhi = gy where x > hi, or lo > hi    (y is hi there),
    each summed over the axes its input was broadcast along (PyTorch's clamp)."""

    double_backward = "operators"

    def forward(ctx, x, lo, hi):
        xp = get_array_module(x)
        ctx.shapes = tuple(None if v is None else v.shape for v in (x, lo, hi))
        y = x if lo is None else xp.maximum(x, lo)
        y = y if hi is None else xp.minimum(y, hi)
        inside = xp.ones(x.shape, dtype=bool)       # (a NaN x is inside no bound: no gradient)
        below = above = None
        if lo is not None:
            inside = inside & (x >= lo)
            below = x < lo if hi is None else (x < lo) & (lo < hi)
        if hi is not None:
            inside = inside & (x <= hi)
            above = x > hi if lo is None else (x > hi) | (lo > hi)
        ctx.save_for_backward(inside, below, above)
        return y.astype(x.dtype, copy=False)

    def backward(ctx, gy):
        masks, shapes = ctx.saved_tensors, ctx.shapes
        return tuple(None if mask is None or not need else unbroadcast(gy * mask, shape)
                     for mask, shape, need in zip(masks, shapes, ctx.needs_input_grad))


def _share(a, b, wins):
    """How much of the gradient of max(a, b) (``wins`` '>') or min (``'<'``) goes to a:
    1 where a wins, 0 where b does, 1/2 on ties (PyTorch)."""
    a_wins = a > b if wins == ">" else a < b
    return (a_wins + 0.5 * (a == b)).astype(get_array_module(a, b).result_type(a, b), copy=False)


class Maximum(Function):
    """y = max(a, b);  the gradient goes to the larger input, split half/half on ties (PyTorch)."""

    double_backward = "composite"

    def forward(ctx, a, b):
        xp = get_array_module(a, b)
        ctx.save_for_backward(a, b)
        return xp.maximum(a, b)

    def composite(ctx, a, b):
        share_a = Tensor(_share(raw(a), raw(b), ">"))
        return a * share_a + b * (1 - share_a)

    def backward(ctx, gy):
        a, b = ctx.saved_tensors
        share_a = _share(a, b, ">")
        ga = unbroadcast(gy * share_a, a.shape) if ctx.needs_input_grad[0] else None
        gb = unbroadcast(gy * (1 - share_a), b.shape) if ctx.needs_input_grad[1] else None
        return ga, gb


class Minimum(Function):
    """y = min(a, b);  the gradient goes to the smaller input, split half/half on ties (PyTorch)."""

    double_backward = "composite"

    def forward(ctx, a, b):
        xp = get_array_module(a, b)
        ctx.save_for_backward(a, b)
        return xp.minimum(a, b)

    def composite(ctx, a, b):
        share_a = Tensor(_share(raw(a), raw(b), "<"))
        return a * share_a + b * (1 - share_a)

    def backward(ctx, gy):
        a, b = ctx.saved_tensors
        share_a = _share(a, b, "<")
        ga = unbroadcast(gy * share_a, a.shape) if ctx.needs_input_grad[0] else None
        gb = unbroadcast(gy * (1 - share_a), b.shape) if ctx.needs_input_grad[1] else None
        return ga, gb


class Where(Function):
    """y = cond ? a : b;  dL/da = gy where cond, dL/db = gy elsewhere."""

    double_backward = "linear"

    def forward(ctx, cond, a, b):
        xp = get_array_module(cond, a, b)
        ctx.save_for_backward(cond)
        ctx.shapes = a.shape, b.shape
        return xp.where(cond, a, b)

    def backward(ctx, gy):
        cond, = ctx.saved_tensors
        sa, sb = ctx.shapes
        ga = unbroadcast(gy * cond, sa) if ctx.needs_input_grad[1] else None
        gb = unbroadcast(gy * ~cond, sb) if ctx.needs_input_grad[2] else None
        return None, ga, gb


class MatMul(Function):
    """y = a @ b (batched and broadcast over leading axes, as numpy.matmul).

    For matrices, dL/da = gy @ b^T and dL/db = a^T @ gy. Vectors are treated as
    a row (left operand) or column (right operand) and the extra axis removed.
    """

    double_backward = "operators"

    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a @ b

    def backward(ctx, gy):
        a, b = ctx.saved_tensors
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        gy2 = gy      # put back the axes the vectors dropped: the column first (a 0-d gy for vector @ vector)
        if b.ndim == 1:
            gy2 = gy2[..., None]
        if a.ndim == 1:
            gy2 = gy2[..., None, :]
        ga = gb = None
        if ctx.needs_input_grad[0]:
            ga = unbroadcast(gy2 @ b2.swapaxes(-1, -2), a2.shape).reshape(a.shape)
        if ctx.needs_input_grad[1]:
            gb = unbroadcast(a2.swapaxes(-1, -2) @ gy2, b2.shape).reshape(b.shape)
        return ga, gb


class Linear(Function):
    """y = x W^T + b  with x (..., in), W (out, in), b (out,) or broadcast to it ((1,), ()).

    dL/dx = gy W;  dL/dW = gy^T x  (summed over all leading axes);  dL/db = sum of gy over the
    rows (and over the outputs where b was broadcast).
    One GEMM each way, with the leading axes flattened into rows (on the CPU the rows
    are split among the cores: kernels/matmul.py says why).
    """

    double_backward = "operators"

    def forward(ctx, x, weight, bias=None):
        need_x, need_w = ctx.needs_input_grad[:2]      # each gradient reads only the other input
        ctx.save_for_backward(x if need_w else None, weight if need_x else None)
        ctx.x_shape, ctx.bias_shape = x.shape, None if bias is None else bias.shape
        rows = math.prod(x.shape[:-1])      # not -1: reshape cannot infer it when a size is 0
        y = matmul_rows(x.reshape(rows, x.shape[-1]), weight.T).reshape(x.shape[:-1] + weight.shape[:1])
        if bias is not None:
            y += bias
        return y

    def backward(ctx, gy):
        x, weight = ctx.saved_tensors
        rows = math.prod(gy.shape[:-1])
        gy2 = gy.reshape(rows, gy.shape[-1])
        gx = matmul_rows(gy2, weight).reshape(ctx.x_shape) if ctx.needs_input_grad[0] else None
        gw = matmul_t(gy2, x.reshape(rows, x.shape[-1])) if ctx.needs_input_grad[1] else None
        gb = unbroadcast(gy2.sum(0), ctx.bias_shape) if ctx.bias_shape is not None and ctx.needs_input_grad[2] \
            else None
        return gx, gw, gb


class Cast(Function):
    """y = x converted to another dtype;  dL/dx = gy converted back."""

    double_backward = "linear"

    def forward(ctx, x, dtype):
        ctx.dtype = x.dtype
        return x.astype(dtype)

    def backward(ctx, gy):
        return gy.astype(ctx.dtype), None


class ToDevice(Function):
    """y = x copied to another device;  dL/dx = gy copied back."""

    double_backward = "linear"

    def forward(ctx, x, device):
        ctx.source = device_of(x)
        return _array_to_device(x, device)

    def backward(ctx, gy):
        return _array_to_device(gy, ctx.source), None


class Clone(Function):
    """y = a copy of x;  dL/dx = gy."""

    double_backward = "linear"

    def forward(ctx, x):
        return x.copy()

    def backward(ctx, gy):
        return gy


# ---------------------------------------------------------------- public functions
def _binary(op, name, symbol):
    """The function ``name(a, b)``: ``op.apply`` on ``_operands(a, b)``. A float Tensor and a
    Python float (``x * 0.5``) go straight to the op, as a NumPy scalar of x's dtype: the
    commonest call, and the cost of every op in bench_alone.py's tiny-ops overhead row."""
    apply = op.apply

    def binary(a, b):
        if type(b) is float and type(a) is Tensor:
            array = a.array
            if type(array) is np.ndarray and array.dtype.kind == "f":
                return apply(a, array.dtype.type(b))
        return apply(*_operands(a, b, name))
    binary.__name__ = binary.__qualname__ = name
    code = binary.__code__              # profiles and tracebacks name the op, not "binary"
    binary.__code__ = code.replace(co_name=name, **({"co_qualname": name} if hasattr(code, "co_qualname") else {}))
    binary.__doc__ = f"``a {symbol} b`` of Tensors, arrays and numbers, broadcast (the {op.__name__} op)."
    return binary


add, sub, mul, div, pow, remainder, floor_divide = (_binary(*op) for op in (      # noqa: A001 (pow: torch's)
    (Add, "add", "+"), (Sub, "sub", "-"), (Mul, "mul", "*"), (Div, "div", "/"), (Pow, "pow", "**"),
    (Remainder, "remainder", "%"), (FloorDivide, "floor_divide", "//")))


def neg(x):
    return Neg.apply(x)


def exp(x):
    return Exp.apply(floating(x))


def log(x):
    return Log.apply(floating(x))


def sqrt(x):
    return Sqrt.apply(floating(x))


def abs(x):
    return Abs.apply(x)


def floating(x):
    """x, or x as float32 where it holds integers or bools: exp, log, sqrt, sigmoid... of an
    integer tensor are float32, as PyTorch's (NumPy's would be float64, or float16 for bools)."""
    return x if x.dtype.kind in "fc" else cast(x, _default_float)


def clamp(x, min=None, max=None):
    """The elements of x limited to [min, max], as torch.clamp: numbers or tensors (broadcast)
    as bounds; an integer x with a float bound gives float32 (``promotion.py``)."""
    if min is None and max is None:
        raise ValueError("clamp: at least one of min and max must be given")
    if x.dtype.kind != "f" or any(type(v) not in (int, float, type(None)) for v in (min, max)):
        dtype = result_type(x, *[v for v in (min, max) if v is not None])      # (a float x with number
        x = x if x.dtype == dtype else cast(x, dtype)                           # bounds keeps its dtype)
        if isinstance(min, Tensor) or isinstance(max, Tensor):
            lo, hi = (None if v is None else _as_operand(v, dtype, x, "clamp") for v in (min, max))
            return ClampTensor.apply(x, lo, hi)
    return Clamp.apply(x, lo=min, hi=max)


def maximum(a, b):
    return Maximum.apply(*_operands(a, b, "maximum"))


def minimum(a, b):
    return Minimum.apply(*_operands(a, b, "minimum"))


def where(condition, a=None, b=None):
    """Elements of ``a`` where ``condition`` holds, of ``b`` elsewhere (differentiable in a and b).
    Two numbers give a tensor of their dtype (``where(mask, 1.0, 0.0)`` is float32).
    ``where(condition)`` alone is ``nonzero(condition, as_tuple=True)``, as torch.where."""
    if a is None and b is None:
        from .shape import nonzero
        return nonzero(condition, as_tuple=True)
    if getattr(condition, "dtype", np.dtype(bool)).kind != "b":
        raise RuntimeError(f"where: the condition must be a bool tensor, got dtype {condition.dtype}")
    if not isinstance(a, Tensor) and not isinstance(b, Tensor) and isinstance(condition, Tensor):
        a = Tensor(condition._xp.asarray(a, dtype=result_type(a, b)))      # a 0-d tensor; b joins it
    a, b = _operands(a, b, "where")
    return Where.apply(raw(condition), a, b)


def matmul(a, b):
    a, b = _operands(a, b, "matmul", elementwise=False)
    if builtins.min(a.ndim, b.ndim) == 0:
        raise RuntimeError(f"matmul: both arguments need at least 1 dimension, got shapes {a.shape} and {b.shape}")
    ka = a.shape[-1]
    kb = b.shape[0] if b.ndim == 1 else b.shape[-2]
    if ka != kb:
        raise RuntimeError(f"matmul: shapes {a.shape} and {b.shape} cannot be multiplied ({ka} != {kb})")
    return MatMul.apply(a, b)


def linear(input, weight, bias=None):
    """y = input @ weight.T + bias, as torch.nn.functional.linear."""
    check_same_kind("linear", input, ("weight", weight), ("bias", bias))
    if input.shape[-1] != weight.shape[-1]:
        raise RuntimeError(f"linear: input has {input.shape[-1]} features (shape {input.shape}) "
                           f"but weight expects {weight.shape[-1]} (shape {weight.shape})")
    return Linear.apply(input, weight, bias)


def bitwise(a, b, name):
    """``a & b``, ``|``, ``^``, ``<<``, ``>>`` (NumPy's ``name``) of bool or integer tensors and
    numbers, in their promoted dtype; outside the graph."""
    a, b = _operands(a, b, name)
    if a.dtype.kind not in "biu":
        raise NotImplementedError(f"{name}: defined for bool and integer tensors only, got {_describe(a)} and "
                           f"{_describe(b)}")
    xp = get_array_module(raw(a), raw(b))
    return Tensor(getattr(xp, name)(raw(a), raw(b)))


def compare(a, b, how):
    """Elementwise comparison; a boolean tensor outside the graph."""
    a, b = _operands(a, b, how)
    xp = get_array_module(raw(a), raw(b))
    return Tensor(getattr(xp, how)(raw(a), raw(b)))


def cast(x, dtype):
    if x.requires_grad and np.dtype(dtype).kind not in "fc":
        return Tensor(x.array.astype(dtype))  # integer copies leave the graph
    return Cast.apply(x, dtype)


def to_device(x, device):
    return ToDevice.apply(x, device)


def clone(x):
    return Clone.apply(x)


# ---------------------------------------------------------------- rounding and sign
class Rounding(Function):
    """y = floor(x), ceil(x), trunc(x), round(x) (half to even, at ``decimals`` places) or
    sign(x), by ``how``. Each is piecewise constant: dL/dx = 0 wherever the derivative
    exists, and PyTorch returns that 0 (a gradient, not None); so does this op."""

    double_backward = "operators"

    def forward(ctx, x, how, decimals=0):
        xp = get_array_module(x)
        if how == "round" and decimals:     # PyTorch's way: scale, round, scale back in x's dtype
            ten = x.dtype.type(10.0 ** builtins.abs(decimals))
            return xp.rint(x * ten) / ten if decimals > 0 else xp.rint(x / ten) * ten
        if how == "sign" and x.dtype.kind == "f":
            return xp.where(x != x, x.dtype.type(0), xp.sign(x))       # sign(NaN) is 0, as PyTorch's
        return getattr(xp, "rint" if how == "round" else how)(x)

    def backward(ctx, gy):
        return _zero_gradient(gy)


def _zero_gradient(gy):
    """A zero gradient of gy's shape (not gy * 0: inf * 0 is NaN), an array or a Tensor."""
    if isinstance(gy, Tensor):
        return Tensor(gy._xp.zeros(gy.shape, gy.dtype))
    return get_array_module(gy).zeros_like(gy)


def _rounding(x, how, decimals=0):
    """Rounding of a float tensor; integers and bools come back as a copy, as PyTorch's."""
    if x.dtype.kind == "b" and how != "sign":
        raise NotImplementedError(f"{how}: not implemented for bool tensors (shape {x.shape}), as in PyTorch")
    if x.dtype.kind in "biu":
        if decimals:
            raise RuntimeError(f"round: decimals is not supported for integer tensors (dtype {x.dtype})")
        if how == "sign" and x.dtype.kind != "b":
            return Tensor(get_array_module(x.array).sign(x.array))
        return Tensor(x.array.copy())
    return Rounding.apply(x, how=how, decimals=int(decimals))


def floor(x):
    return _rounding(x, "floor")


def ceil(x):
    return _rounding(x, "ceil")


def trunc(x):
    return _rounding(x, "trunc")


def round(x, *, decimals=0):    # noqa: A001 (torch's name)
    """Round half to even (2.5 -> 2), at ``decimals`` places (negative: tens, hundreds...)."""
    return _rounding(x, "round", decimals)


def sign(x):
    return _rounding(x, "sign")


# ---------------------------------------------------------------- smooth functions
class Sin(Function):
    """y = sin(x);  dL/dx = gy * cos(x)."""

    double_backward = "operators"

    def forward(ctx, x):
        ctx.save_for_backward(x)
        return get_array_module(x).sin(x)

    def backward(ctx, gy):
        x, = ctx.saved_tensors
        return gy * on_array_or_tensor("cos", x)


class Cos(Function):
    """y = cos(x);  dL/dx = -gy * sin(x)."""

    double_backward = "operators"

    def forward(ctx, x):
        ctx.save_for_backward(x)
        return get_array_module(x).cos(x)

    def backward(ctx, gy):
        x, = ctx.saved_tensors
        return -gy * on_array_or_tensor("sin", x)


class Log1p(Function):
    """y = log(1 + x), exact for tiny x;  dL/dx = gy / (1 + x)."""

    double_backward = "operators"

    def forward(ctx, x):
        ctx.save_for_backward(x)
        return get_array_module(x).log1p(x)

    def backward(ctx, gy):
        x, = ctx.saved_tensors
        return gy / (1 + x)


class Expm1(Function):
    """y = exp(x) - 1, exact for tiny x;  dL/dx = gy * exp(x) = gy * (y + 1)."""

    double_backward = "operators"

    def forward(ctx, x):
        y = get_array_module(x).expm1(x)
        ctx.save_for_backward(y)
        return y

    def backward(ctx, gy):
        y, = ctx.saved_tensors
        return gy * (y + 1)


class LogBase(Function):
    """y = log(x) / log(base) (log2, log10);  dL/dx = gy / (x log(base))."""

    double_backward = "operators"

    def forward(ctx, x, base):
        ctx.save_for_backward(x)
        ctx.log_base = math.log(base)
        return get_array_module(x).log2(x) if base == 2 else get_array_module(x).log10(x)

    def backward(ctx, gy):
        x, = ctx.saved_tensors
        return gy / (x * ctx.log_base)


class Square(Function):
    """y = x * x;  dL/dx = 2 gy x."""

    double_backward = "operators"

    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    def backward(ctx, gy):
        x, = ctx.saved_tensors
        return gy * 2 * x


class Rsqrt(Function):
    """y = 1 / sqrt(x);  dL/dx = -gy / (2 x^(3/2)) = -gy * y^3 / 2."""

    double_backward = "operators"

    def forward(ctx, x):
        y = 1 / get_array_module(x).sqrt(x)
        ctx.save_for_backward(y)
        return y

    def backward(ctx, gy):
        y, = ctx.saved_tensors
        return gy * y * y * y * -0.5


class Reciprocal(Function):
    """y = 1 / x;  dL/dx = -gy / x^2 = -gy * y^2."""

    double_backward = "operators"

    def forward(ctx, x):
        y = 1 / x
        ctx.save_for_backward(y)
        return y

    def backward(ctx, gy):
        y, = ctx.saved_tensors
        return -gy * y * y


def sin(x):
    return Sin.apply(floating(x))


def cos(x):
    return Cos.apply(floating(x))


def log1p(x):
    return Log1p.apply(floating(x))


def expm1(x):
    return Expm1.apply(floating(x))


def log2(x):
    return LogBase.apply(floating(x), base=2)


def log10(x):
    return LogBase.apply(floating(x), base=10)


def square(x):
    """x * x; a bool tensor squares to int64, as PyTorch's."""
    return Square.apply(cast(x, np.dtype(np.int64)) if x.dtype.kind == "b" else x)


def rsqrt(x):
    return Rsqrt.apply(floating(x))


def reciprocal(x):
    return Reciprocal.apply(floating(x))


def clamp_min(x, min):      # noqa: A002 (torch's argument name)
    return clamp(x, min=min)


def clamp_max(x, max):      # noqa: A002
    return clamp(x, max=max)


# ---------------------------------------------------------------- products (matmul's special cases)
def _check_ndims(op, *pairs):
    for name, t, ndim in pairs:
        if not isinstance(t, Tensor):
            raise TypeError(f"{op}: {name} must be a Tensor, got {type(t).__name__}")
        if t.ndim != ndim:
            raise RuntimeError(f"{op}: {name} must be a {ndim}-D tensor, got shape {tuple(t.shape)}")


def mm(input, mat2):
    """(n, m) @ (m, p), both 2-D (torch.mm)."""
    _check_ndims("mm", ("input", input, 2), ("mat2", mat2, 2))
    return matmul(input, mat2)


def bmm(input, mat2):
    """(b, n, m) @ (b, m, p), one product per batch entry, no broadcasting (torch.bmm)."""
    _check_ndims("bmm", ("input", input, 3), ("mat2", mat2, 3))
    if input.shape[0] != mat2.shape[0]:
        raise RuntimeError(f"bmm: batch sizes differ: shapes {tuple(input.shape)} and {tuple(mat2.shape)}")
    return matmul(input, mat2)


def dot(input, other):
    """The inner product of two 1-D tensors of one size (torch.dot), a 0-d tensor."""
    _check_ndims("dot", ("input", input, 1), ("other", other, 1))
    if input.shape != other.shape:
        raise RuntimeError(f"dot: 1-D tensors of different sizes: {input.shape[0]} and {other.shape[0]}")
    return matmul(input, other)


def mv(input, vec):
    """(n, m) @ (m,) -> (n,) (torch.mv)."""
    _check_ndims("mv", ("input", input, 2), ("vec", vec, 1))
    return matmul(input, vec)


def outer(input, vec2):
    """out[i, j] = input[i] * vec2[j] (torch.outer), a broadcast product, so dtypes promote."""
    _check_ndims("outer", ("input", input, 1), ("vec2", vec2, 1))
    return mul(input.reshape(-1, 1), vec2)


# ---------------------------------------------------------------- elementwise tests (outside the graph)
def isclose(input, other, rtol=1e-05, atol=1e-08, equal_nan=False):
    """|input - other| <= atol + rtol * |other| elementwise, as torch.isclose: equal values
    (infinities too) are close, NaN is close to NaN only with ``equal_nan``. Both tensors
    must have one dtype (PyTorch's rule); integers are compared as float64."""
    for name, t in (("input", input), ("other", other)):
        if not isinstance(t, Tensor):
            raise TypeError(f"isclose: {name} must be a Tensor, got {type(t).__name__}")
    if input.dtype != other.dtype:
        raise RuntimeError(f"isclose: {input.dtype} did not match {other.dtype} (shapes {tuple(input.shape)} "
                           f"and {tuple(other.shape)})")
    if input.device != other.device:
        raise RuntimeError(f"isclose: tensors on different devices ({input.device} and {other.device})")
    xp = input._xp
    a, b = input.array, other.array
    same = a == b
    if a.dtype.kind == "b":
        return Tensor(same)
    if a.dtype.kind in "iu":            # (float64: exact for int32, and for int64 up to 2**53)
        a, b = a.astype(np.float64), b.astype(np.float64)
    with np.errstate(invalid="ignore"):     # inf - inf: NaN, not close (unless equal, above)
        diff = xp.abs(a - b)
        close = same | (xp.isfinite(diff) & (diff <= atol + rtol * xp.abs(b)))
    if equal_nan:
        close = close | (xp.isnan(a) & xp.isnan(b))
    return Tensor(close)


def allclose(input, other, rtol=1e-05, atol=1e-08, equal_nan=False):
    """Are all elements close (``isclose``)? A Python bool."""
    return bool(isclose(input, other, rtol, atol, equal_nan).array.all())


def equal(input, other):
    """Same shape and the same values (NaN equals nothing), a Python bool (torch.equal)."""
    if input.shape != other.shape:
        return False
    return bool(compare(input, other, "equal").array.all())


def _logical(name, *operands):
    """``name`` (NumPy's logical_and...) of the operands read as truth values (nonzero is
    True), a bool tensor outside the graph."""
    for k, t in enumerate(operands):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name}: argument {k} must be a Tensor, got {type(t).__name__}")
    if len(operands) == 2:
        a, b = operands
        if a.device != b.device:
            raise RuntimeError(f"{name}: tensors on different devices ({a.device} and {b.device})")
        try:
            np.broadcast_shapes(a.shape, b.shape)
        except ValueError:
            raise RuntimeError(f"{name}: shapes {tuple(a.shape)} and {tuple(b.shape)} cannot be broadcast "
                               f"together") from None
    xp = operands[0]._xp
    return Tensor(getattr(xp, name)(*[t.array for t in operands]))


def logical_and(input, other):
    return _logical("logical_and", input, other)


def logical_or(input, other):
    return _logical("logical_or", input, other)


def logical_xor(input, other):
    return _logical("logical_xor", input, other)


def logical_not(input):
    return _logical("logical_not", input)
