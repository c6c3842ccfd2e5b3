"""Pooling: max, average, adaptive (incl. global average) and max unpooling.

Pooling slides a window over each channel of each image on its own, so every
op here views the input (..., H, W) as a stack of P independent planes
(P = N*C, or C for an unbatched (C, H, W) input) and works per plane.

Max and average pooling are im2col followed by a reduction over the window
axis (``tinydl/kernels/pool.py``: a NumPy reference on im2col/col2im, a fused
Numba loop for max pooling on the CPU). Their backward passes send the
gradient back through the window: to the chosen pixel (max) or spread evenly
(average, col2im); a pixel under several overlapping windows collects the sum.

Max pooling also returns PyTorch's *indices*: for every output, the position
of the chosen input pixel in its plane, flattened as h * W + w (unpadded
coordinates). ``max_unpool2d`` uses them ("switches", as in ZFNet's
deconvnet) to put values back where they came from.

Output size (PyTorch's rule), along one axis:
    Ho = floor_or_ceil((H + 2p - d*(k-1) - 1) / s) + 1
and in ceil_mode the last window is dropped if it would start at or beyond
H + p (beyond the input and its left/top padding). The windows that ceil_mode
adds may run past the padded input; that overhang is padded with -inf (max)
or 0 (average) and does not count in the average's divisor.

Adaptive pooling picks windows to give a requested output size: output i
along an axis of length H covers [floor(i*H/Ho), ceil((i+1)*H/Ho)), PyTorch's
bins, which may differ in length and overlap when Ho does not divide H.
"""
import math
import numbers

import numpy as np

from ..autograd import Function
from ..backend import get_array_module
from ..kernels import (avg_pool2d_backward, avg_pool2d_forward, empty_windows, max_pool2d_backward,
                       max_pool2d_forward, max_unpool2d_backward, max_unpool2d_forward, pool_output_size)
from ..tensor import Tensor
from ..args import ntuple, single
from .math import raw

__all__ = ["max_pool1d", "max_pool2d", "avg_pool1d", "avg_pool2d", "adaptive_avg_pool1d",
           "adaptive_avg_pool2d", "adaptive_max_pool1d", "adaptive_max_pool2d", "max_unpool1d",
           "max_unpool2d", "max_pool2d_transpose", "max_pool1d_with_indices", "max_pool2d_with_indices",
           "adaptive_max_pool1d_with_indices", "adaptive_max_pool2d_with_indices"]


# ---------------------------------------------------------------- geometry
def _check_input(op, input, dims):
    """A Tensor of ``dims`` spatial axes, batched or not: PyTorch's errors otherwise."""
    if not isinstance(input, Tensor):
        raise TypeError(f"{op}: input must be a Tensor, got {type(input).__name__}")
    if input.ndim not in (dims + 1, dims + 2):
        axes = ", ".join("DHW"[-dims:])
        raise RuntimeError(f"{op}: expected a {dims + 1}-D (C, {axes}) or {dims + 2}-D (N, C, {axes}) input, "
                           f"got shape {input.shape}")


def _pool_args(op, input, kernel_size, stride, padding, dilation, ceil_mode, dims=2):
    """Check the arguments of a 2-D (or ``dims``-D) pooling; returns (kernel, stride, padding,
    dilation), each a tuple of ``dims`` ints, with PyTorch's errors for bad values and
    too-small inputs."""
    _check_input(op, input, dims)
    kernel = ntuple(kernel_size, dims, "kernel_size", op)
    stride = kernel if stride is None or (not isinstance(stride, numbers.Integral) and len(stride) == 0) \
        else ntuple(stride, dims, "stride", op)
    padding = ntuple(padding, dims, "padding", op)
    dilation = ntuple(dilation, dims, "dilation", op)
    for name, v in (("kernel_size", kernel), ("stride", stride), ("dilation", dilation)):
        if min(v) <= 0:
            raise ValueError(f"{op}: {name} must be greater than zero, got {v}")
    if min(padding) < 0 or any(p > k // 2 for p, k in zip(padding, kernel)):
        raise ValueError(f"{op}: pad should be smaller than or equal to half of kernel size, "
                         f"but got padding={padding} for kernel_size={kernel}")
    try:
        for n, k, s, p, d in zip(input.shape[-dims:], kernel, stride, padding, dilation):
            pool_output_size(n, k, s, p, p, d, ceil_mode)     # PyTorch's output-size rule
    except ValueError:
        raise RuntimeError(f"{op}: input of shape {input.shape} is too small for kernel_size={kernel}, "
                           f"stride={stride}, padding={padding}, dilation={dilation}: "
                           "the output would be empty") from None
    return kernel, stride, padding, dilation


def _nchw(x):
    """An unbatched (C, H, W) array as a batch of one; (N, C, H, W) unchanged (a free view)."""
    return x.reshape((-1,) + x.shape[-3:])


# ---------------------------------------------------------------- max pooling
def _scatter_to_maxima(ctx, gy):
    """dL/dx of max pooling: gy added at the saved indices of the maxima, per plane. With
    create_graph (gy a Tensor) the same scatter-add runs as the recorded MaxPoolTranspose2d,
    whose own backward is the gather of its upstream gradient at those indices."""
    index, = ctx.saved_tensors
    if ctx.empty is not None:   # windows that read no pixel pass no gradient (and point at pixel 0)
        xp = get_array_module(index)
        index = xp.where(ctx.empty, 0, index)
        gy = gy * xp.asarray(~ctx.empty, dtype=gy.dtype)
    if isinstance(gy, Tensor):
        return MaxPoolTranspose2d.apply(gy, raw(index).reshape(gy.shape), out_hw=ctx.x_shape[-2:])
    gx = max_pool2d_backward(gy.reshape(index.shape), index, _nchw_shape(ctx.x_shape))
    return gx.reshape(ctx.x_shape)


class MaxPool2d(Function):
    """y = max over each window, and PyTorch's indices of the maxima.

    Forward (kernels.max_pool2d_forward; its NumPy reference reads like this):
        cols = im2col(planes, padded with -inf)      (kh*kw, P*Ho*Wo), P = N*C
                       (an integer dtype: its minimum, kernels.pool.lowest)
        a = argmax over the window axis, y = cols[a]
        index = h*W + w of the chosen pixel (h = ho*s - p_top + i*d, ...)
    Backward: only the chosen element of each window influenced y, with slope 1:
        dL/dx.flat[index] += gy   per plane (a pixel that won several
                                  overlapping windows gets the sum).
    (A dilated window can step over a narrow image and read no pixel: its y is -inf,
    its index PyTorch's, and it passes no gradient; kernels.empty_windows.)
    The backward is linear in gy and reads no x, so the graph keeps no input for it
    (create_graph differentiates it as max_pool2d_transpose: a gather at the indices).
    """
    non_differentiable_outputs = (1,)

    double_backward = "operators"

    def forward(ctx, x, *, kernel, stride, padding, dilation, ceil_mode):
        y, index = max_pool2d_forward(_nchw(x), kernel, stride, padding, dilation, ceil_mode)
        ctx.save_for_backward(index)
        ctx.x_shape = x.shape
        ctx.empty = empty_windows(tuple(x.shape[-2:]), kernel, stride, padding, dilation, tuple(y.shape[-2:]))
        if ctx.empty is not None:
            ctx.empty = get_array_module(x).asarray(ctx.empty)
        shape = x.shape[:-2] + y.shape[-2:]
        return y.reshape(shape), index.reshape(shape)

    def backward(ctx, gy, _gindex):
        return _scatter_to_maxima(ctx, gy)


def _nchw_shape(shape):
    return (1,) + tuple(shape) if len(shape) == 3 else tuple(shape)


def _check_orderable(op, input):
    """Max pooling compares values: floating and integer tensors (PyTorch's CPU kernels too)."""
    if isinstance(input, Tensor) and input.dtype.kind not in "fiu":
        raise RuntimeError(f"{op}: not implemented for {input.dtype} tensors (shape {tuple(input.shape)}); "
                           f"pool a floating or integer tensor")


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """2-D max pooling as ``torch.nn.functional.max_pool2d``; with ``return_indices``
    also the flat per-plane positions (h*W + w) of the maxima (for max_unpool2d).
    Integer tensors too: padding then counts as the dtype's minimum."""
    _check_orderable("max_pool2d", input)
    kernel, stride, padding, dilation = _pool_args("max_pool2d", input, kernel_size, stride, padding,
                                                   dilation, ceil_mode)
    y, index = MaxPool2d.apply(input, kernel=kernel, stride=stride, padding=padding, dilation=dilation,
                               ceil_mode=bool(ceil_mode))
    return (y, index) if return_indices else y


# ---------------------------------------------------------------- average pooling
class AvgPool2d(Function):
    """y = sum over each window / divisor (a linear map: its backward is its transpose).

    Forward (kernels.avg_pool2d_forward):
        cols = im2col(planes, zero padded);  y = cols.sum(window axis) / divisor
    Backward: every element of a window contributed 1/divisor of its output:
        dcols = (gy / divisor) repeated over the window;  dx = col2im(dcols)
    The divisor is the window's size, clipped PyTorch's way (kernels.avg_pool2d_divisor):
    padding cells count when count_include_pad, ceil_mode's overhang never does;
    divisor_override replaces it.
    """

    double_backward = "linear"

    def forward(ctx, x, *, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override):
        ctx.settings = kernel, stride, padding, ceil_mode, count_include_pad, divisor_override
        ctx.x_shape = x.shape
        y = avg_pool2d_forward(_nchw(x), *ctx.settings)
        return y.reshape(x.shape[:-2] + y.shape[-2:])

    def backward(ctx, gy):
        gx = avg_pool2d_backward(_nchw(gy), _nchw_shape(ctx.x_shape), *ctx.settings)
        return gx.reshape(ctx.x_shape)


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """2-D average pooling as ``torch.nn.functional.avg_pool2d``."""
    op = "avg_pool2d"
    kernel, stride, padding, _ = _pool_args(op, input, kernel_size, stride, padding, 1, ceil_mode)
    if divisor_override is not None and divisor_override == 0:
        raise ValueError(f"{op}: divisor must be not zero")
    return AvgPool2d.apply(input, kernel=kernel, stride=stride, padding=padding, ceil_mode=bool(ceil_mode),
                           count_include_pad=bool(count_include_pad), divisor_override=divisor_override)


# ---------------------------------------------------------------- adaptive pooling
def _adaptive_output(op, input, output_size, dims=2):
    """Checks an adaptive pooling's input and output_size (an int or ``dims`` of them, None
    keeping that axis); returns the output size, a tuple of ``dims`` ints."""
    _check_input(op, input, dims)
    if min(input.shape[-dims:]) < 1:
        axes = ", ".join("DHW"[-dims:-1]) + " and W"
        raise RuntimeError(f"{op}: expected an input with non-zero {axes}, got shape {input.shape}")
    if isinstance(output_size, numbers.Integral) or output_size is None:
        output_size = (output_size,) * dims
    output_size = tuple(output_size)
    if len(output_size) != dims:
        raise ValueError(f"{op}: output_size must be an int or a {('pair', 'triple')[dims - 2]}, "
                         f"got {output_size!r}")
    out = tuple(n if o is None else int(o) for n, o in zip(input.shape[-dims:], output_size))
    if min(out) < 1:
        raise ValueError(f"{op}: output_size must be positive, got {output_size}")
    return out


def _adaptive_bins(size, out):
    """PyTorch's bins: output i covers input [floor(i*size/out), ceil((i+1)*size/out))."""
    i = np.arange(out)
    start = (i * size) // out
    end = -((-(i + 1) * size) // out)
    return start, end


def _bin_average_matrix(xp, dtype, size, out):
    """A (out, size) matrix whose row i averages bin i: y = A @ x along that axis."""
    start, end = _adaptive_bins(size, out)
    cols = np.arange(size)
    inside = (cols >= start[:, None]) & (cols < end[:, None])
    return xp.asarray((inside / (end - start)[:, None]).astype(dtype))


class AdaptiveAvgPool2d(Function):
    """Average over PyTorch's adaptive bins, written as two small matrix products.

    With A_h (Ho, H) and A_w (Wo, W) the bin-averaging matrices of each axis
    (row i holds 1/len(bin i) on bin i), every plane X maps to
        Y = A_h @ X @ A_w^T
    which is linear in X, so  dL/dX = A_h^T @ dL/dY @ A_w.
    Global average pooling is the case Ho = Wo = 1 (each A a row of 1/H): there
    it is simply the mean over H and W, and dL/dX = dL/dY / (H*W) everywhere.
    """

    double_backward = "linear"

    def forward(ctx, x, *, out_hw):
        xp = get_array_module(x)
        ctx.x_shape = x.shape
        if out_hw == (1, 1):
            ctx.save_for_backward(None, None)
            return x.mean(axis=(-2, -1), keepdims=True)
        a_h = _bin_average_matrix(xp, x.dtype, x.shape[-2], out_hw[0])
        a_w = _bin_average_matrix(xp, x.dtype, x.shape[-1], out_hw[1])
        ctx.save_for_backward(a_h, a_w)
        return a_h @ x @ a_w.T

    def backward(ctx, gy):
        a_h, a_w = ctx.saved_tensors
        if a_h is None:
            xp = get_array_module(gy)
            h, w = ctx.x_shape[-2:]
            return xp.broadcast_to(gy / gy.dtype.type(h * w), ctx.x_shape).copy()
        return a_h.T @ gy @ a_w


def adaptive_avg_pool2d(input, output_size):
    """As ``torch.nn.functional.adaptive_avg_pool2d``; ``output_size`` an int or a pair
    (None keeps that axis). ``adaptive_avg_pool2d(x, 1)`` is global average pooling."""
    out = _adaptive_output("adaptive_avg_pool2d", input, output_size)
    return AdaptiveAvgPool2d.apply(input, out_hw=out)


def _bin_taps(xp, size, out):
    """(out, longest bin) input positions of each bin; short bins repeat their last
    position (a repeated element cannot change a max or its argmax)."""
    start, end = _adaptive_bins(size, out)
    longest = int((end - start).max())
    taps = np.minimum(start[:, None] + np.arange(longest), end[:, None] - 1)
    return xp.asarray(taps)


class AdaptiveMaxPool2d(Function):
    """Max over PyTorch's adaptive bins, with its flat per-plane indices.

    Forward: gather each bin's elements (the (Ho, kh) row taps times the (Wo, kw)
    column taps) into windows (P, Ho, Wo, kh*kw); y = max over the window,
    index = h*W + w of the argmax.
    Backward: each output's gradient goes to its chosen input element; bins may
    overlap, so two outputs can pick the same element: scatter-ADD
        dL/dx.flat[index] += gy   per plane (max pooling's own backward).
    """
    non_differentiable_outputs = (1,)
    empty = None        # every bin holds a pixel (see MaxPool2d)

    double_backward = "operators"

    def forward(ctx, x, *, out_hw):
        xp = get_array_module(x)
        h, w = x.shape[-2:]
        planes = x.reshape(-1, h, w)
        th, tw = _bin_taps(xp, h, out_hw[0]), _bin_taps(xp, w, out_hw[1])            # (Ho, kh), (Wo, kw)
        windows = planes[:, th[:, None, :, None], tw[None, :, None, :]]             # (P, Ho, Wo, kh, kw)
        windows = windows.reshape(windows.shape[:3] + (th.shape[1] * tw.shape[1],))
        arg = windows.argmax(axis=-1)                                                # (P, Ho, Wo)
        y = xp.take_along_axis(windows, arg[..., None], axis=-1)[..., 0]
        ki, kj = arg // tw.shape[1], arg % tw.shape[1]
        rows = th[xp.arange(out_hw[0])[:, None], ki]
        cols = tw[xp.arange(out_hw[1])[None, :], kj]
        shape = x.shape[:-2] + out_hw
        index = (rows * w + cols).astype(np.int64).reshape(_nchw_shape(shape))
        ctx.save_for_backward(index)
        ctx.x_shape = x.shape
        return y.reshape(shape), index.reshape(shape)

    def backward(ctx, gy, _gindex):
        return _scatter_to_maxima(ctx, gy)


def adaptive_max_pool2d(input, output_size, return_indices=False):
    """As ``torch.nn.functional.adaptive_max_pool2d`` (indices: flat h*W + w per plane)."""
    out = _adaptive_output("adaptive_max_pool2d", input, output_size)
    y, index = AdaptiveMaxPool2d.apply(input, out_hw=out)
    return (y, index) if return_indices else y


# ---------------------------------------------------------------- max unpooling
class MaxUnpool2d(Function):
    """The partial inverse of max pooling: y is zero except y.flat[index] = x (per plane).

    Forward (kernels.max_unpool2d_forward): out = zeros; out[p].flat[index[p, j]] = x[p, j]
    Backward: y took x[p, j] at one place, so dL/dx[p, j] = gy[p].flat[index[p, j]]
    (a gather). When overlapping pooling windows chose the same pixel, the
    forward writes the same value twice and both inputs receive its gradient,
    as in PyTorch.
    """

    double_backward = "linear"

    def forward(ctx, x, index, *, out_hw):
        index4 = _nchw(index)
        ctx.save_for_backward(index4)
        ctx.x_shape = x.shape
        y = max_unpool2d_forward(_nchw(x), index4, out_hw)
        return y.reshape(x.shape[:-2] + out_hw)

    def backward(ctx, gy):
        index4, = ctx.saved_tensors
        return max_unpool2d_backward(_nchw(gy), index4).reshape(ctx.x_shape), None


def max_unpool2d(input, indices, kernel_size, stride=None, padding=0, output_size=None):
    """As ``torch.nn.functional.max_unpool2d``: default output size
    (H - 1)*stride - 2*padding + kernel_size per axis; ``output_size`` (H, W) or the
    full shape picks another within one stride of it."""
    op = "max_unpool2d"
    out = _unpool_args(op, input, indices, kernel_size, stride, padding, output_size)[3]
    _check_unpool_indices(op, indices, out)
    return MaxUnpool2d.apply(input, indices.array, out_hw=out)


def _unpool_args(op, input, indices, kernel_size, stride, padding, output_size, dims=2):
    """Check a 2-D (or ``dims``-D) max unpooling's input, indices and arguments; returns
    (kernel, stride, padding, out), each a tuple of ``dims`` ints, out the output size:
    (n - 1)*stride - 2*padding + kernel per axis, or ``output_size`` (its last ``dims``
    entries) within one stride of that."""
    if not isinstance(input, Tensor) or not isinstance(indices, Tensor):
        raise TypeError(f"{op}: input and indices must be Tensors")
    _check_input(op, input, dims)
    if indices.shape != input.shape:
        raise RuntimeError(f"{op}: expected indices of the input's shape {input.shape}, got {indices.shape}")
    if indices.dtype.kind not in "iu":
        raise RuntimeError(f"{op}: expected integer indices, got {indices.dtype}")
    kernel = ntuple(kernel_size, dims, "kernel_size", op)
    stride = kernel if stride is None else ntuple(stride, dims, "stride", op)
    padding = ntuple(padding, dims, "padding", op)
    default = tuple((n - 1) * s - 2 * p + k for n, s, p, k in zip(input.shape[-dims:], stride, padding, kernel))
    if output_size is None:
        return kernel, stride, padding, default
    output_size = tuple(int(v) for v in output_size)
    if len(output_size) == input.ndim:
        output_size = output_size[-dims:]
    if len(output_size) != dims:
        raise ValueError(f"{op}: output_size must have {dims} or {input.ndim} elements, got {output_size}")
    for o, d, s in zip(output_size, default, stride):
        if not d - s < o < d + s:
            raise ValueError(f"{op}: invalid output_size {output_size} (must be between "
                             f"{tuple(x - s for x in default)} and {tuple(x + s for x in default)})")
    return kernel, stride, padding, output_size


def _check_unpool_indices(op, indices, out):
    """Every index inside an output plane (volume) of size ``out`` (a validation: one host
    read of the indices' extremes, as PyTorch's own check)."""
    if indices.numel():
        lo, hi = int(indices.array.min()), int(indices.array.max())
        if lo < 0 or hi >= math.prod(out):
            bad = lo if lo < 0 else hi
            raise RuntimeError(f"{op}: found an invalid max index {bad} (output volumes are of size "
                               f"{'x'.join(str(o) for o in out)})")


class MaxPoolTranspose2d(Function):
    """The transpose (adjoint) of max pooling with fixed switches:
    y[p].flat[index[p, j]] += x[p, j]  (per plane p), zeros elsewhere.

    Max pooling with its switches frozen is the linear map  pooled = S x  (S picks
    one pixel per window); this op is  y = S^T x, the same scatter-add as max
    pooling's backward. It differs from max unpooling (PyTorch's, which *writes*)
    only where overlapping windows share a maximum: there the values add up
    instead of the last one winning (and an activation is never overwritten by a
    zero from another window).
    Backward: y is linear in x, so dL/dx = S (dL/dy), a gather at the switches.
    """

    double_backward = "linear"

    def forward(ctx, x, index, *, out_hw):
        index4 = _nchw(index)
        ctx.save_for_backward(index4)
        ctx.x_shape = x.shape
        x4 = _nchw(x)
        y = max_pool2d_backward(x4, index4, x4.shape[:2] + tuple(out_hw))
        return y.reshape(x.shape[:-2] + tuple(out_hw))

    def backward(ctx, gy):
        index4, = ctx.saved_tensors
        return max_unpool2d_backward(_nchw(gy), index4).reshape(ctx.x_shape), None


def max_pool2d_transpose(input, indices, output_size):
    """tinydl's own (PyTorch has no such op): the adjoint of ``max_pool2d`` with the
    switches ``indices`` it returned; ``output_size`` is the pooled input's (H, W).
    ZFNet's deconvnet unpools with it, so overlapping 3x3/2 windows that share a
    maximum add their reconstructions (see :class:`MaxPoolTranspose2d`)."""
    op = "max_pool2d_transpose"
    if not isinstance(input, Tensor) or not isinstance(indices, Tensor):
        raise TypeError(f"{op}: input and indices must be Tensors")
    if input.ndim not in (3, 4) or indices.shape != input.shape:
        raise RuntimeError(f"{op}: expected a 3-D or 4-D input and indices of its shape, got "
                           f"{input.shape} and {indices.shape}")
    out = tuple(int(v) for v in output_size)[-2:]
    if indices.numel() and (int(indices.array.min()) < 0 or int(indices.array.max()) >= out[0] * out[1]):
        raise RuntimeError(f"{op}: switch indices out of range for a {out[0]}x{out[1]} plane")
    return MaxPoolTranspose2d.apply(input, indices.array, out_hw=out)


# ---------------------------------------------------------------- 1-D, through the 2-D path
def _check_1d(op, input):
    if not isinstance(input, Tensor):
        raise TypeError(f"{op}: input must be a Tensor, got {type(input).__name__}")
    if input.ndim not in (2, 3):
        raise RuntimeError(f"{op}: expected a 2-D (C, L) or 3-D (N, C, L) input, got shape {input.shape}")


def max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """As ``torch.nn.functional.max_pool1d`` (indices: positions along L)."""
    op = "max_pool1d"
    _check_1d(op, input)
    _check_orderable(op, input)
    stride = kernel_size if stride is None else stride
    out = max_pool2d(input.unsqueeze(-2), (1, single(kernel_size, "kernel_size", op)), (1, single(stride, "stride", op)),
                     (0, single(padding, "padding", op)), (1, single(dilation, "dilation", op)), ceil_mode, return_indices)
    if return_indices:
        return out[0].squeeze(-2), out[1].squeeze(-2)
    return out.squeeze(-2)


def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """As ``torch.nn.functional.avg_pool1d``."""
    op = "avg_pool1d"
    _check_1d(op, input)
    stride = kernel_size if stride is None else stride
    out = avg_pool2d(input.unsqueeze(-2), (1, single(kernel_size, "kernel_size", op)), (1, single(stride, "stride", op)),
                     (0, single(padding, "padding", op)), ceil_mode, count_include_pad)
    return out.squeeze(-2)


def adaptive_avg_pool1d(input, output_size):
    """As ``torch.nn.functional.adaptive_avg_pool1d``."""
    _check_1d("adaptive_avg_pool1d", input)
    return adaptive_avg_pool2d(input.unsqueeze(-2), (1, single(output_size, "output_size", "adaptive_avg_pool1d"))
                               ).squeeze(-2)


def adaptive_max_pool1d(input, output_size, return_indices=False):
    """As ``torch.nn.functional.adaptive_max_pool1d``."""
    _check_1d("adaptive_max_pool1d", input)
    out = adaptive_max_pool2d(input.unsqueeze(-2), (1, single(output_size, "output_size", "adaptive_max_pool1d")),
                              return_indices)
    if return_indices:
        return out[0].squeeze(-2), out[1].squeeze(-2)
    return out.squeeze(-2)


def max_unpool1d(input, indices, kernel_size, stride=None, padding=0, output_size=None):
    """As ``torch.nn.functional.max_unpool1d``."""
    op = "max_unpool1d"
    _check_1d(op, input)
    stride = kernel_size if stride is None else stride
    if output_size is not None:
        output_size = (1, tuple(output_size)[-1])
    return max_unpool2d(input.unsqueeze(-2), indices.unsqueeze(-2), (1, single(kernel_size, "kernel_size", op)),
                        (1, single(stride, "stride", op)), (0, single(padding, "padding", op)), output_size).squeeze(-2)


# ---------------------------------------------------------------- PyTorch's *_with_indices aliases
# (values, indices) whatever ``return_indices`` says, as PyTorch's, which accept and ignore it.
def max_pool1d_with_indices(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                            return_indices=False):
    return max_pool1d(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices=True)


def max_pool2d_with_indices(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                            return_indices=False):
    return max_pool2d(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices=True)


def adaptive_max_pool1d_with_indices(input, output_size, return_indices=False):
    return adaptive_max_pool1d(input, output_size, return_indices=True)


def adaptive_max_pool2d_with_indices(input, output_size, return_indices=False):
    return adaptive_max_pool2d(input, output_size, return_indices=True)
