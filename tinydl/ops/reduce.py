"""Reductions: sum, mean, prod, var/std, max/min (+ arg versions), amax/amin, logsumexp,
norm; the scans cumsum/cumprod; and the selections sort/argsort/topk/median/kthvalue.

A reduction maps many x elements to one y element, so its backward spreads
the upstream gradient gy back over the reduced axes: broadcast it to x's
shape (``_spread``) and multiply by dy/dx of each element: 1 for sum, 1/n for
mean, 2(x - mean)/(n - correction) for var, 1 at the maximum for max, softmax
for logsumexp.

``dim`` is an int, a tuple of ints, or None (every dim), negative dims count
from the end; ``keepdim=True`` keeps reduced dims with size 1, as in PyTorch.
"""
import collections
import math

import numpy as np

from ..autograd import Function, constant
from ..backend import get_array_module
from ..tensor import Tensor, int64, _default_float, _normalize_dtype
from . import math as _math
from .shape import Gather, cat, narrow, normalize_dim, reshape

__all__ = ["sum", "mean", "var", "std", "max", "min", "argmax", "argmin", "logsumexp", "prod", "cumsum", "cumprod",
           "amax", "amin", "norm", "sort", "argsort", "topk", "median", "kthvalue"]

# What max/min over a dim return, like torch.return_types.max: a tuple that also
# has .values and .indices.
max_result = collections.namedtuple("max", ["values", "indices"])
min_result = collections.namedtuple("min", ["values", "indices"])
sort_result = collections.namedtuple("sort", ["values", "indices"])
topk_result = collections.namedtuple("topk", ["values", "indices"])
median_result = collections.namedtuple("median", ["values", "indices"])
kthvalue_result = collections.namedtuple("kthvalue", ["values", "indices"])


# ---------------------------------------------------------------- helpers
def _axes(dim, x, op):
    """``dim`` as a sorted tuple of non-negative axes; None or () means every axis (PyTorch)."""
    if dim is None:
        return tuple(range(x.ndim))
    dims = dim if isinstance(dim, (tuple, list)) else (dim,)
    axes = tuple(sorted(normalize_dim(d, x.ndim, op, x.shape) for d in dims))
    if len(set(axes)) != len(axes):
        raise RuntimeError(f"{op}: dim {dim} names a dim more than once (tensor shape {x.shape})")
    if not axes:
        return tuple(range(x.ndim))
    return tuple(a for a in axes if a < x.ndim)   # a 0-d tensor accepts dim 0 and reduces nothing


def _count(shape, axes):
    """How many x elements meet in one y element (a Python int: keeps float32 float32)."""
    return math.prod(shape[a] for a in axes)


def _dof(shape, axes, correction):
    """n - correction, the divisor of var/std, never below 0: with too few values the result
    is inf or nan (0/0, also for no values at all), as PyTorch's."""
    dof = _count(shape, axes) - correction
    return dof if dof > 0 else 0


def _spread(gy, x_shape, axes, keepdim):
    """gy (the reduced shape) broadcast back to x's shape, as a fresh writeable array."""
    if isinstance(gy, Tensor):                      # a backward building a graph (create_graph)
        kept = tuple(1 if i in axes else n for i, n in enumerate(x_shape))
        return gy.reshape(kept).expand(*x_shape)
    xp = get_array_module(gy)
    if not keepdim:
        gy = xp.expand_dims(gy, axes) if axes else gy
    return xp.broadcast_to(gy, x_shape).copy()


def _sum(x, axes, keepdims, divisor=1):
    """x summed over ``axes`` (and divided by ``divisor``) in x's dtype. NumPy adds pairwise
    (error ~log n) only along the innermost axis; along the others it adds row after row in
    x's dtype, and a float32 mean of a million values drifts by 1% (PyTorch's: 1e-7). There
    float32 on the CPU is summed in float64 and rounded back, and so is float16 everywhere
    (PyTorch adds it in float32; and a float16 sum of 1000 x 100 overflows before the division)."""
    xp = get_array_module(x)
    if xp is np and x.dtype.itemsize < 8 and x.dtype.kind == "f" and (x.dtype.itemsize == 2 or not (
            x.flags.c_contiguous and axes == tuple(range(x.ndim - len(axes), x.ndim)))):
        total = x.sum(axis=axes, keepdims=keepdims, dtype=np.float64)
        return (total / divisor if divisor != 1 else total).astype(x.dtype)
    total = x.sum(axis=axes, keepdims=keepdims)
    return total / x.dtype.type(divisor) if divisor != 1 else total


def _require_float(x, op):
    if x.dtype.kind not in "fc":
        raise RuntimeError(f"{op}: needs a floating point tensor, got dtype {x.dtype}")


# ---------------------------------------------------------------- sum / mean
class Sum(Function):
    """y = sum of x over ``axes``;  dL/dx = gy broadcast back (every x element has dy/dx = 1)."""

    double_backward = "operators"

    def forward(ctx, x, axes, keepdim):
        ctx.x_shape, ctx.axes, ctx.keepdim = x.shape, axes, keepdim
        # Integers and booleans sum to int64 (PyTorch); NumPy would give uint64 for uint8.
        if x.dtype.kind in "biu":
            return x.sum(axis=axes, keepdims=keepdim, dtype=int64)
        return _sum(x, axes, keepdim)

    def backward(ctx, gy):
        return _spread(gy, ctx.x_shape, ctx.axes, ctx.keepdim)


class Mean(Function):
    """y = sum of x over ``axes`` / n;  dL/dx = gy / n broadcast back."""

    double_backward = "operators"

    def forward(ctx, x, axes, keepdim):
        ctx.x_shape, ctx.axes, ctx.keepdim = x.shape, axes, keepdim
        return _sum(x, axes, keepdim, _count(x.shape, axes))

    def backward(ctx, gy):
        return _spread(gy / _count(ctx.x_shape, ctx.axes), ctx.x_shape, ctx.axes, ctx.keepdim)


def sum(input, dim=None, keepdim=False, *, dtype=None):
    """Sum over ``dim`` (None: everything). Integer and bool tensors give int64; ``dtype``:
    the input is cast to it first, as PyTorch's."""
    input = input if dtype is None else _as_dtype(input, dtype)
    out = Sum.apply(input, axes=_axes(dim, input, "sum"), keepdim=keepdim)
    return out if dtype is None else _as_dtype(out, dtype)          # an int32 sum stays int32 then


def mean(input, dim=None, keepdim=False, *, dtype=None):
    input = input if dtype is None else _as_dtype(input, dtype)
    _require_float(input, "mean")
    return Mean.apply(input, axes=_axes(dim, input, "mean"), keepdim=keepdim)


def _as_dtype(input, dtype):
    dtype = _normalize_dtype(dtype)
    return input if input.dtype == dtype else _math.cast(input, dtype)


# ---------------------------------------------------------------- var / std
class Var(Function):
    """y = sum((x - m)^2) / (n - c)  with m the mean over ``axes``, c the correction
    (1: unbiased, the default; 0: population variance).

    dL/dx = gy * 2 (x - m) / (n - c). (The path through m contributes
    -2/(n-c) * sum(x - m) / n = 0, because deviations from the mean sum to 0.)
    """

    double_backward = "composite"

    def forward(ctx, x, axes, keepdim, correction):
        d = x - _sum(x, axes, True, _count(x.shape, axes))
        ctx.save_for_backward(d)
        ctx.axes, ctx.keepdim = axes, keepdim
        ctx.denom = _dof(x.shape, axes, correction)
        return _sum(d * d, axes, keepdim, ctx.denom)

    def composite(ctx, x, axes, keepdim, correction):
        d = x - x.mean(axes, keepdim=True)
        return (d * d).sum(axes, keepdim=keepdim) / _dof(x.shape, axes, correction)

    def backward(ctx, gy):
        d, = ctx.saved_tensors
        return _spread(gy, d.shape, ctx.axes, ctx.keepdim) * d * 2 / ctx.denom


class Std(Function):
    """y = sqrt(var(x));  dL/dx = gy * dvar/dx / (2 y) = gy * (x - m) / ((n - c) y).

    Where y = 0 (all values equal) that is 0/0; the gradient is taken as 0 there,
    as PyTorch does, so a constant feature never turns the weights into NaN.
    """

    double_backward = "composite"

    def forward(ctx, x, axes, keepdim, correction):
        xp = get_array_module(x)
        d = x - _sum(x, axes, True, _count(x.shape, axes))
        denom = _dof(x.shape, axes, correction)
        y = xp.sqrt(_sum(d * d, axes, True, denom))
        ctx.save_for_backward(d, y)
        ctx.axes, ctx.keepdim, ctx.denom = axes, keepdim, denom
        return y if keepdim else y.reshape([n for i, n in enumerate(y.shape) if i not in axes])

    def composite(ctx, x, axes, keepdim, correction):
        return Var.apply(x, axes=axes, keepdim=keepdim, correction=correction).sqrt()

    def backward(ctx, gy):
        d, y = ctx.saved_tensors
        xp = get_array_module(gy)
        flat = y == 0
        scale = xp.where(flat, 0, 1 / (xp.where(flat, 1, y) * ctx.denom))
        return _spread(gy, d.shape, ctx.axes, ctx.keepdim) * d * scale


def _correction(unbiased, correction):
    if correction is not None:          # a float correction is PyTorch's too (var(correction=0.5))
        return correction if isinstance(correction, float) else int(correction)
    return 1 if unbiased else 0


def var(input, dim=None, unbiased=True, keepdim=False, correction=None):
    """Variance over ``dim``; ``correction`` (if given) overrides ``unbiased`` (1 = Bessel)."""
    _require_float(input, "var")
    return Var.apply(input, axes=_axes(dim, input, "var"), keepdim=keepdim,
                     correction=_correction(unbiased, correction))


def std(input, dim=None, unbiased=True, keepdim=False, correction=None):
    _require_float(input, "std")
    return Std.apply(input, axes=_axes(dim, input, "std"), keepdim=keepdim,
                     correction=_correction(unbiased, correction))


# ---------------------------------------------------------------- max / min
class Extreme(Function):
    """y = max (or min) of all x elements, a 0-d tensor.

    dL/dx = gy at the maximal elements, 0 elsewhere; if k elements tie for
    the maximum each gets gy / k (PyTorch's rule for the full reduction: the
    gradient of the value, shared evenly).
    """

    double_backward = "composite"

    def forward(ctx, x, mode):
        y = x.max() if mode == "max" else x.min()
        ctx.save_for_backward(x == y)
        return y

    def composite(ctx, x, mode):
        at_extreme, = ctx.saved_tensors
        return (x * constant(at_extreme / at_extreme.sum(), x)).sum()

    def backward(ctx, gy):
        at_extreme, = ctx.saved_tensors
        ties = at_extreme.sum(dtype=gy.dtype)
        return at_extreme * (gy / ties)


class ExtremeDim(Function):
    """(values, indices) of the max (or min) along ``dim``, as torch.max(x, dim).

    dL/dx = gy at the returned index, 0 elsewhere (on ties the gradient goes to
    the first extreme element only, the one ``indices`` names: PyTorch's rule
    for the dim-wise version). The indices are not differentiable.
    """
    non_differentiable_outputs = (1,)

    double_backward = "composite"

    def forward(ctx, x, dim, keepdim, mode):
        xp = get_array_module(x)
        arg = xp.argmax if mode == "max" else xp.argmin
        idx = arg(x, axis=dim, keepdims=True)
        values = xp.take_along_axis(x, idx, axis=dim)
        ctx.save_for_backward(idx)
        ctx.x_shape, ctx.dim, ctx.keepdim = x.shape, dim, keepdim
        idx = idx.astype(int64, copy=False)
        if not keepdim:
            values, idx = values.squeeze(dim), idx.squeeze(dim)
        return values, idx

    def composite(ctx, x, dim, keepdim, mode):
        idx, = ctx.saved_tensors
        values = Gather.apply(x, idx, dim=dim)      # (our own indices: no range check, no sync)
        return (values if keepdim else values.squeeze(dim)), Tensor(idx)

    def backward(ctx, gy, _gidx):
        idx, = ctx.saved_tensors
        xp = get_array_module(gy)
        if not ctx.keepdim:
            gy = xp.expand_dims(gy, ctx.dim)
        # One-hot along dim: position j of dim gets gy where j is the argmax.
        positions = xp.arange(ctx.x_shape[ctx.dim]).reshape(
            [-1 if a == ctx.dim else 1 for a in range(len(ctx.x_shape))])
        return (positions == idx) * gy


def _check_not_empty(input, dim, op):
    """max/min/argmax/argmin need an element to pick along ``dim`` (None: anywhere); the
    other dims may be empty (the result is then empty too, as PyTorch)."""
    if input.numel() == 0 and (dim is None or input.ndim == 0 or input.shape[dim] == 0):
        where = "" if dim is None or input.ndim == 0 else f" along dim {dim}"
        raise RuntimeError(f"{op}: the tensor of shape {input.shape} is empty{where}; there is nothing to pick")


def _extreme(input, dim, keepdim, mode):
    if isinstance(dim, Tensor):   # torch.max(a, b) is the elementwise maximum
        return (_math.maximum if mode == "max" else _math.minimum)(input, dim)
    if dim is None:
        _check_not_empty(input, None, mode)
        return Extreme.apply(input, mode=mode)
    if isinstance(dim, (tuple, list)):
        raise TypeError(f"{mode}: dim must be one int (use amax-style reductions one dim at a time)")
    d = normalize_dim(dim, input.ndim, mode, input.shape)
    _check_not_empty(input, d, mode)
    result = max_result if mode == "max" else min_result
    if input.ndim == 0:   # a 0-d tensor: the value itself, at index 0
        return result(reshape(input, ()), Tensor(input._xp.zeros((), dtype=int64)))
    return result(*ExtremeDim.apply(input, dim=d, keepdim=keepdim, mode=mode))


def max(input, dim=None, keepdim=False):
    """torch.max: over everything a 0-d tensor; over ``dim`` a (values, indices) tuple;
    with a Tensor second argument the elementwise maximum."""
    return _extreme(input, dim, keepdim, "max")


def min(input, dim=None, keepdim=False):
    return _extreme(input, dim, keepdim, "min")


def _arg_extreme(input, dim, keepdim, mode):
    xp = input._xp
    arg = xp.argmax if mode == "max" else xp.argmin
    op = "arg" + mode
    if dim is None:   # index into the flattened tensor
        _check_not_empty(input, None, op)
        idx = arg(input.array)
        shape = (1,) * input.ndim if keepdim else ()
        return Tensor(xp.asarray(idx, dtype=int64).reshape(shape))
    d = normalize_dim(dim, input.ndim, op, input.shape)
    _check_not_empty(input, d, op)
    if input.ndim == 0:
        return Tensor(xp.zeros((), dtype=int64))
    return Tensor(arg(input.array, axis=d, keepdims=keepdim).astype(int64, copy=False))


def argmax(input, dim=None, keepdim=False):
    """Index of the (first) maximum, int64, outside the graph."""
    return _arg_extreme(input, dim, keepdim, "max")


def argmin(input, dim=None, keepdim=False):
    return _arg_extreme(input, dim, keepdim, "min")


# ---------------------------------------------------------------- logsumexp
class LogSumExp(Function):
    """y = log(sum(exp(x))) over ``axes``, computed as m + log(sum(exp(x - m)))
    with m = max(x): the exponentials are then <= 1 and cannot overflow.

    dL/dx = gy * exp(x - y) = gy * softmax(x) along the reduced axes.
    """

    double_backward = "composite"

    def forward(ctx, x, axes, keepdim):
        xp = get_array_module(x)
        if x.size == 0:          # a sum of no exponentials is 0, its log -inf (no max to shift by)
            y = xp.full([1 if i in axes else n for i, n in enumerate(x.shape)], -xp.inf, dtype=x.dtype)
        else:
            m = x.max(axis=axes, keepdims=True)
            m = xp.where(xp.isfinite(m), m, 0)   # an all -inf (or +inf) row: exp(x - m) must not be nan
            y = xp.log(_sum(xp.exp(x - m), axes, True)) + m
        ctx.save_for_backward(x, y)
        ctx.axes, ctx.keepdim = axes, keepdim
        return y if keepdim else y.reshape([n for i, n in enumerate(y.shape) if i not in axes])

    def composite(ctx, x, axes, keepdim):
        if not x.numel():
            return Tensor(ctx.saved_tensors[1]).reshape(ctx.output_meta[0][0])
        m = x.array.max(axis=axes, keepdims=True)
        m = constant(x._xp.where(x._xp.isfinite(m), m, 0), x)
        y = (x - m).exp().sum(axes, keepdim=True).log() + m
        return y if keepdim else y.reshape(ctx.output_meta[0][0])

    def backward(ctx, gy):
        x, y = ctx.saved_tensors
        xp = get_array_module(x)
        return _spread(gy, x.shape, ctx.axes, ctx.keepdim) * xp.exp(x - y)


def logsumexp(input, dim=None, keepdim=False):
    """Stable log(sum(exp(input))) over ``dim``. Integer tensors are first cast to float32."""
    if input.dtype.kind not in "fc":
        input = Tensor(input.array.astype(_default_float))
    return LogSumExp.apply(input, axes=_axes(dim, input, "logsumexp"), keepdim=keepdim)


# ---------------------------------------------------------------- prod
class Prod(Function):
    """y = the product of x over ``axes``.

    dy/dx_k is the product of the other elements: y / x_k where no element is 0. With
    zeros (z of them in x_k's group) y / x_k is 0/0, so with p the product of the
    nonzero elements:
        z = 0:  dL/dx_k = gy * p / x_k;
        z = 1:  the zero element gets gy * p (the product of the others), the rest 0;
        z >= 2: every 'product of the others' holds a zero: 0.
    """

    double_backward = "composite"

    def forward(ctx, x, axes, keepdim):
        ctx.axes, ctx.keepdim = axes, keepdim
        ctx.save_for_backward(x)
        if x.dtype.kind in "biu":           # integers and bools multiply to int64 (PyTorch)
            return x.prod(axis=axes, keepdims=keepdim, dtype=int64)
        return x.prod(axis=axes, keepdims=keepdim)

    def composite(ctx, x, axes, keepdim):
        # the product as a chain of multiplications of the reduced elements, one by one
        kept = [a for a in range(x.ndim) if a not in axes]
        n = _count(x.shape, axes)
        out_shape = ctx.output_meta[0][0]
        if n == 0:
            return constant(x._xp.ones(out_shape), x)
        rows = x.permute(*kept, *axes).reshape(*[x.shape[a] for a in kept], n)
        y = rows[..., 0]
        for k in range(1, n):
            y = y * rows[..., k]
        return y.reshape(out_shape)

    def backward(ctx, gy):
        x, = ctx.saved_tensors
        xp = get_array_module(x)
        zero = x == 0
        zeros = zero.sum(axis=ctx.axes, keepdims=True)
        x_safe = xp.where(zero, x.dtype.type(1), x)
        p = x_safe.prod(axis=ctx.axes, keepdims=True)
        share = xp.where(zero, p * (zeros == 1), p / x_safe * (zeros == 0))
        return _spread(gy, x.shape, ctx.axes, ctx.keepdim) * share


def prod(input, dim=None, keepdim=False, *, dtype=None):
    """The product over ``dim`` (one int, or None: everything), as torch.prod; integer and
    bool tensors give int64; ``dtype``: the input is cast to it first."""
    input = input if dtype is None else _as_dtype(input, dtype)
    if isinstance(dim, (tuple, list)):
        raise TypeError(f"prod: dim must be one int or None, got {dim!r} (tensor shape {input.shape})")
    axes = _axes(dim, input, "prod")
    return Prod.apply(input, axes=axes, keepdim=keepdim and dim is not None)


# ---------------------------------------------------------------- cumsum / cumprod
def _reverse_cumsum(g, dim):
    """g_k + g_{k+1} + ... along ``dim``: the cumulative sum taken from the end."""
    xp = get_array_module(g)
    return xp.flip(xp.cumsum(xp.flip(g, dim), axis=dim), dim)


class Cumsum(Function):
    """y_i = x_0 + ... + x_i along ``dim``.

    x_k appears in every y_i with i >= k, so dL/dx_k = gy_k + gy_{k+1} + ...: the
    cumulative sum of gy taken from the end.
    """

    double_backward = "linear"

    def forward(ctx, x, dim):
        ctx.dim = dim
        xp = get_array_module(x)
        if x.dtype.kind in "biu":
            return xp.cumsum(x, axis=dim, dtype=int64)
        if xp is np and x.dtype.kind == "f" and x.dtype.itemsize < 8:
            # PyTorch accumulates float32 in double on the CPU: a long float32 scan would drift
            return np.cumsum(x, axis=dim, dtype=np.float64).astype(x.dtype)
        return xp.cumsum(x, axis=dim)

    def backward(ctx, gy):
        return _reverse_cumsum(gy, ctx.dim)


class Cumprod(Function):
    """y_i = x_0 * x_1 * ... * x_i along ``dim``.

    dL/dx_k = sum over i >= k of gy_i * y_i / x_k, which divides by zero where x_k = 0.
    With the first zero of the row at position z:
        k < z:  x_k != 0, the formula holds (the terms with i >= z are 0);
        k = z:  dL/dx_z = sum over i >= z of gy_i * y'_i, with y' the cumprod of the row
                with x_z replaced by 1 (y'_i is then the product of the others);
        k > z:  every y_i with i >= k holds the factor x_z = 0: 0.
    """

    double_backward = "composite"

    def forward(ctx, x, dim):
        ctx.dim = dim
        xp = get_array_module(x)
        y = xp.cumprod(x, axis=dim, dtype=int64 if x.dtype.kind in "biu" else None)
        ctx.save_for_backward(x, y)
        return y

    def composite(ctx, x, dim):
        # the running product as a chain of multiplications, one slice at a time
        n = x.shape[dim]
        if n == 0:
            return x * 1
        parts = [narrow(x, dim, 0, 1)]
        for k in range(1, n):
            parts.append(parts[-1] * narrow(x, dim, k, 1))
        return cat(parts, dim)

    def backward(ctx, gy):
        x, y = ctx.saved_tensors
        xp = get_array_module(x)
        d, one, nought = ctx.dim, x.dtype.type(1), gy.dtype.type(0)
        zero = x == 0
        zeros_so_far = xp.cumsum(zero, axis=d)
        first = zero & (zeros_so_far == 1)
        g = xp.where(zeros_so_far == 0, _reverse_cumsum(gy * y, d) / xp.where(zero, one, x), nought)
        y_skip = xp.cumprod(xp.where(first, one, x), axis=d)
        return g + xp.where(first, _reverse_cumsum(gy * y_skip, d), nought)


def _scan(op, input, dim, dtype, name):
    input = input if dtype is None else _as_dtype(input, dtype)
    d = normalize_dim(dim, input.ndim, name, input.shape)
    if input.ndim == 0:         # a 0-d tensor scans as one element
        return reshape(op.apply(reshape(input, (1,)), dim=0), ())
    return op.apply(input, dim=d)


def cumsum(input, dim, *, dtype=None):
    """Running sums along ``dim`` (torch.cumsum); integer and bool tensors give int64."""
    return _scan(Cumsum, input, dim, dtype, "cumsum")


def cumprod(input, dim, *, dtype=None):
    """Running products along ``dim`` (torch.cumprod); the gradient holds where x has zeros."""
    return _scan(Cumprod, input, dim, dtype, "cumprod")


# ---------------------------------------------------------------- amax / amin
class AMax(Function):
    """y = the max (``mode`` 'max') or min of x over ``axes``, values only (torch.amax).

    dL/dx = gy shared evenly among the elements equal to y: with k of them tied for the
    maximum each gets gy / k (PyTorch's amax rule; max(dim) gives all of it to one).
    """

    double_backward = "composite"

    def forward(ctx, x, axes, keepdim, mode):
        y = (x.max if mode == "max" else x.min)(axis=axes, keepdims=True)
        ctx.save_for_backward(x == y)
        ctx.axes, ctx.keepdim = axes, keepdim
        return y if keepdim else y.reshape([n for i, n in enumerate(y.shape) if i not in axes])

    def composite(ctx, x, axes, keepdim, mode):
        at, = ctx.saved_tensors
        share = at / at.sum(axis=axes, keepdims=True)
        return (x * constant(share, x)).sum(axes, keepdim=keepdim)

    def backward(ctx, gy):
        at, = ctx.saved_tensors
        share = at / at.sum(axis=ctx.axes, keepdims=True, dtype=gy.dtype)
        return _spread(gy, at.shape, ctx.axes, ctx.keepdim) * share


def _amax(input, dim, keepdim, mode):
    op = "a" + mode
    axes = _axes(dim, input, op)
    for a in axes:
        if input.shape[a] == 0:
            raise RuntimeError(f"{op}: expected reduction dim {a} to have non-zero size (tensor shape {input.shape})")
    return AMax.apply(input, axes=axes, keepdim=keepdim, mode=mode)


def amax(input, dim=(), keepdim=False):
    """The maximum over ``dim`` (an int or a tuple; () or None: everything), values only."""
    return _amax(input, dim, keepdim, "max")


def amin(input, dim=(), keepdim=False):
    return _amax(input, dim, keepdim, "min")


# ---------------------------------------------------------------- norm
class VectorNorm(Function):
    """y = (sum |x|^p)^(1/p) over ``axes`` (torch.linalg.vector_norm); p = inf: max |x|,
    -inf: min |x|, 0: the count of nonzero elements.

    With g = gy spread back over the reduced axes:
        p = 2:       dL/dx = g * x / y                       (0 where y = 0)
        p = 1:       dL/dx = g * sign(x)
        p = +-inf:   dL/dx = g * sign(x) / k at the k elements with |x| = y, else 0
        p = 0:       dL/dx = 0                               (a count is piecewise constant)
        other p:     dL/dx = g * sign(x) |x|^(p-1) / y^(p-1) (0 where y = 0, and for p < 1
                     0 at x = 0, where |x|^(p-1) is infinite), as PyTorch's.
    """

    double_backward = "composite"

    def forward(ctx, x, axes, keepdim, p):
        xp = get_array_module(x)
        a = xp.abs(x)
        if p == math.inf:
            y = a.max(axis=axes, keepdims=True)
        elif p == -math.inf:
            y = a.min(axis=axes, keepdims=True)
        elif p == 0:
            y = (a != 0).sum(axis=axes, keepdims=True).astype(x.dtype)
        elif p == 1:
            y = _sum(a, axes, True)
        elif p == 2:
            y = xp.sqrt(_sum(a * a, axes, True))
        else:
            y = _sum(a ** x.dtype.type(p), axes, True) ** x.dtype.type(1 / p)
        ctx.save_for_backward(x, y)
        ctx.axes, ctx.keepdim, ctx.p = axes, keepdim, p
        return y if keepdim else y.reshape([n for i, n in enumerate(y.shape) if i not in axes])

    def composite(ctx, x, axes, keepdim, p):
        a = x.abs()
        if math.isinf(p):
            return _amax(a, axes, keepdim, "max" if p > 0 else "min")
        if p == 0:
            _, y = ctx.saved_tensors
            return (x * 0).sum(axes, keepdim=keepdim) + constant(y if keepdim else y.reshape(
                ctx.output_meta[0][0]), x)
        if p == 1:
            return a.sum(axes, keepdim=keepdim)
        # where the backward above gives 0 (a norm of 0; for p < 1 also x = 0), the restated op
        # takes a constant in place of x, so its derivative is 0 there too, not 0 * inf
        _, y = ctx.saved_tensors
        xp = get_array_module(y)
        dead = xp.broadcast_to(y == 0, x.shape) | (xp.asarray(x.array == 0) if p < 1 else False)
        powers = _math.where(dead, 1.0, a) ** p * constant(~dead, x)
        n = _math.where(y == 0, 1.0, powers.sum(axes, keepdim=True)) ** (1 / p)
        n = _math.where(y == 0, 0.0, n)
        return n if keepdim else n.reshape(ctx.output_meta[0][0])

    def backward(ctx, gy):
        x, y = ctx.saved_tensors
        xp = get_array_module(x)
        p, one, nought = ctx.p, x.dtype.type(1), x.dtype.type(0)
        g = _spread(gy, x.shape, ctx.axes, ctx.keepdim)
        if p == 0:
            return g * nought
        if p == 1:
            return g * xp.sign(x)
        if math.isinf(p):
            at = xp.abs(x) == y
            return g * xp.sign(x) * (at / at.sum(axis=ctx.axes, keepdims=True, dtype=x.dtype))
        flat = y == 0
        if p == 2:
            return g * xp.where(flat, nought, x / xp.where(flat, one, y))
        a = xp.abs(x)
        a_safe = xp.where(a == 0, one, a)
        scaled = xp.sign(x) * xp.where(a == 0, nought if p < 1 else a, a_safe ** x.dtype.type(p - 1))
        return g * scaled * xp.where(flat, nought, 1 / xp.where(flat, one, y) ** x.dtype.type(p - 1))


def norm(input, p="fro", dim=None, keepdim=False, dtype=None):
    """torch.norm: the vector p-norm over ``dim`` (None: every element), p a number or inf,
    'fro' the 2-norm (over at most 2 dims). 'nuc' (the nuclear norm, an SVD) is not here."""
    input = input if dtype is None else _as_dtype(input, dtype)
    if input.dtype.kind not in "fc":
        raise RuntimeError(f"norm: input dtype should be floating point, got {input.dtype} (shape {input.shape})")
    if isinstance(p, str):
        if p != "fro":
            raise NotImplementedError(f"norm: p={p!r} is not supported (numbers, inf and 'fro' are)")
        if isinstance(dim, (tuple, list)) and len(dim) > 2:
            raise RuntimeError(f"norm: 'fro' takes at most 2 dims, got dim={dim}")
        p = 2
    p = float(p)
    axes = _axes(dim, input, "norm")
    if p < 0 and any(input.shape[a] == 0 for a in axes):
        raise RuntimeError(f"norm: p={p} of an empty reduction (tensor shape {input.shape}) is undefined")
    return VectorNorm.apply(input, axes=axes, keepdim=keepdim, p=p)


# ---------------------------------------------------------------- sort / topk / median
def _argsort(a, axis, descending):
    """The order that sorts ``a`` along ``axis``, stable: equal elements keep their order,
    NaN counts as larger than everything, as torch.sort(stable=True). Descending: sort the
    reversed row ascending and reverse that (equal elements keep their order still)."""
    xp = get_array_module(a)
    kind = {"kind": "stable"} if xp is np else {}       # (CuPy's sort is always stable)
    if not descending:
        return xp.argsort(a, axis=axis, **kind).astype(int64, copy=False)
    back = xp.flip(xp.argsort(xp.flip(a, axis), axis=axis, **kind), axis)
    return (a.shape[axis] - 1 - back).astype(int64, copy=False)


def _scalar_pick(input, result):
    """sort / topk / median of a 0-d tensor: the value itself, at index 0 (PyTorch)."""
    return result(reshape(input, ()), Tensor(input._xp.zeros((), dtype=int64)))


def sort(input, dim=-1, descending=False, *, stable=False):
    """(values, indices) sorted along ``dim``; the values are gathered from the input, so the
    gradient goes back to where each value came from. Always stable (``stable`` accepted)."""
    d = normalize_dim(dim, input.ndim, "sort", input.shape)
    if input.ndim == 0:
        return _scalar_pick(input, sort_result)
    idx = _argsort(input.array, d, descending)
    return sort_result(Gather.apply(input, idx, dim=d), Tensor(idx))


def argsort(input, dim=-1, descending=False, stable=False):
    """The int64 indices that sort ``input`` along ``dim`` (stable), outside the graph."""
    d = normalize_dim(dim, input.ndim, "argsort", input.shape)
    if input.ndim == 0:
        return Tensor(input._xp.zeros((), dtype=int64))
    return Tensor(_argsort(input.array, d, descending))


def topk(input, k, dim=-1, largest=True, sorted=True):
    """The ``k`` largest (``largest=False``: smallest) elements along ``dim`` and their
    indices, largest first; gradient scattered back to where they came from."""
    d = normalize_dim(dim, input.ndim, "topk", input.shape)
    n = input.shape[d] if input.ndim else 1
    if not 0 <= k <= n:
        raise RuntimeError(f"topk: k ({k}) is out of range for dim {d} of size {n} (tensor shape {input.shape})")
    if input.ndim == 0:     # the value itself, for k 0 or 1 (PyTorch)
        return _scalar_pick(input, topk_result)
    idx = _argsort(input.array, d, largest)[(slice(None),) * d + (slice(0, k),)]
    return topk_result(Gather.apply(input, idx, dim=d), Tensor(idx))


class MedianAll(Function):
    """y = the median of all elements: the lower of the two middle ones for an even count
    (PyTorch), NaN if any element is NaN.

    dL/dx = gy shared evenly among the elements equal to y (PyTorch's rule for the full
    reduction, as for max()).
    """

    double_backward = "composite"

    def forward(ctx, x):
        xp = get_array_module(x)
        if x.size == 0:                     # the median of nothing: NaN (PyTorch)
            ctx.save_for_backward(xp.zeros(x.shape, dtype=bool))
            return xp.full((), xp.nan, dtype=x.dtype)
        s = xp.sort(x.reshape(-1))
        y = s[(s.size - 1) // 2]
        at = x == y
        if x.dtype.kind in "fc":            # NaN sorts last: one NaN makes the median NaN
            y = xp.where(xp.isnan(s[-1]), s[-1], y)
            at = xp.where(xp.isnan(y), xp.isnan(x), x == y)
        ctx.save_for_backward(at)
        return xp.asarray(y)

    def composite(ctx, x):
        at, = ctx.saved_tensors
        return (x * constant(at / at.sum(), x)).sum()

    def backward(ctx, gy):
        at, = ctx.saved_tensors
        return at * (gy / at.sum(dtype=gy.dtype))


def _pick(input, dim, keepdim, position, op, result):
    """(values, indices) of the element at ``position`` (an int, or an array kept along
    ``dim``) of each row sorted along ``dim``; the values gathered (differentiable)."""
    idx = _argsort(input.array, dim, False)
    xp = input._xp
    if isinstance(position, int):
        idx = idx[(slice(None),) * dim + (slice(position, position + 1),)]
    else:
        idx = xp.take_along_axis(idx, position, axis=dim)
    values = Gather.apply(input, idx, dim=dim)
    idx = Tensor(idx)
    if not keepdim:
        values, idx = values.squeeze(dim), idx.squeeze(dim)
    return result(values, idx)


def median(input, dim=None, keepdim=False):
    """torch.median: of everything, a 0-d tensor (the lower middle value); along ``dim``,
    (values, indices). A row with a NaN has median NaN (at its first NaN)."""
    if dim is None:
        if input.dtype.kind not in "fc":
            _check_not_empty(input, None, "median")
        return MedianAll.apply(input)
    d = normalize_dim(dim, input.ndim, "median", input.shape)
    _check_not_empty(input, d, "median")
    if input.ndim == 0:
        return _scalar_pick(input, median_result)
    n = input.shape[d]
    position = (n - 1) // 2
    if input.dtype.kind in "fc":            # the first NaN of a row that has some: n - (NaN count)
        xp = input._xp
        nans = xp.isnan(input.array).sum(axis=d, keepdims=True)
        position = xp.where(nans > 0, n - nans, position).astype(int64)
    return _pick(input, d, keepdim, position, "median", median_result)


def kthvalue(input, k, dim=-1, keepdim=False):
    """(values, indices) of the k-th smallest element (k from 1) along ``dim``."""
    d = normalize_dim(dim, input.ndim, "kthvalue", input.shape)
    n = input.shape[d] if input.ndim else 1
    if not 1 <= k <= n:
        raise RuntimeError(f"kthvalue: k ({k}) is out of range for dim {d} of size {n} (tensor shape {input.shape})")
    if input.ndim == 0:
        return _scalar_pick(input, kthvalue_result)
    return _pick(input, d, keepdim, k - 1, "kthvalue", kthvalue_result)
