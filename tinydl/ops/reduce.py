"""Reductions: sum, mean, var/std, max/min (+ arg versions), logsumexp.

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
from .shape import gather, normalize_dim, reshape

__all__ = ["sum", "mean", "var", "std", "max", "min", "argmax", "argmin", "logsumexp"]

# What max/min over a dim return, like torch.return_types.max: a tuple that also
# has .values and .indices.
max_result = collections.namedtuple("max", ["values", "indices"])
min_result = collections.namedtuple("min", ["values", "indices"])


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


def _sum(x, axes, keepdims):
    """x summed over ``axes`` in x's dtype. NumPy adds pairwise (error ~log n) only along the
    innermost axis; along the others it adds row after row in x's dtype, and a float32 mean
    of a million values drifts by 1% (PyTorch's: 1e-7). There float32 on the CPU is summed
    in float64 and rounded back, and so is float16 everywhere (PyTorch adds it in float32)."""
    xp = get_array_module(x)
    if xp is np and x.dtype.itemsize < 8 and x.dtype.kind == "f" and (x.dtype.itemsize == 2 or not (
            x.flags.c_contiguous and axes == tuple(range(x.ndim - len(axes), x.ndim)))):
        return x.sum(axis=axes, keepdims=keepdims, dtype=np.float64).astype(x.dtype)
    return x.sum(axis=axes, keepdims=keepdims)


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
        return _sum(x, axes, keepdim) / x.dtype.type(_count(x.shape, axes))

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
        d = x - _sum(x, axes, True) / x.dtype.type(_count(x.shape, axes))
        ctx.save_for_backward(d)
        ctx.axes, ctx.keepdim = axes, keepdim
        ctx.denom = _dof(x.shape, axes, correction)
        return _sum(d * d, axes, keepdim) / ctx.denom

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
        d = x - _sum(x, axes, True) / x.dtype.type(_count(x.shape, axes))
        denom = _dof(x.shape, axes, correction)
        y = xp.sqrt(_sum(d * d, axes, True) / denom)
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
        values = gather(x, dim, Tensor(idx))
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
