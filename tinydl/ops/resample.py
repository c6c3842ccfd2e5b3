"""Resampling ops: padding, interpolation (resizing), pixel shuffle (depth-to-space).

All of them move values around without arithmetic on them, or mix a few
neighbours with fixed weights, so each is a *linear* map y = A x. Forward applies
A; backward applies its adjoint A^T: every output sends its gradient back to the
input elements it was read from, times the weight it was read with, and an
input read several times adds up all of its contributions (scatter-add).
"""
import math
import numbers

import numpy as np

from ..autograd import Function
from ..kernels.scatter import scatter_add
from ..backend import get_array_module

__all__ = ["pad", "interpolate", "pixel_shuffle", "pixel_unshuffle"]


# ---------------------------------------------------------------- scatter-add helpers
def _take_adjoint(g, index, axis, size):
    """Adjoint of ``y = xp.take(x, index, axis)`` for an x with ``size`` entries on ``axis``:
    dL/dx[..., j, ...] = sum of dL/dy[..., o, ...] over the o with index[o] == j."""
    xp = get_array_module(g)
    shape = list(g.shape)
    shape[axis] = size
    gx = xp.zeros(shape, dtype=g.dtype)
    scatter_add(gx, (slice(None),) * axis + (index,), g)
    return gx


# ---------------------------------------------------------------- pad
def _pad_pairs(ndim, pad):
    """PyTorch's pad tuple, last dimension first: (left, right, top, bottom, ...) ->
    [(axis, before, after), ...] starting with the last axis."""
    return [(ndim - 1 - i, pad[2 * i], pad[2 * i + 1]) for i in range(len(pad) // 2)]


class ConstantPad(Function):
    """Pad with a constant (negative amounts crop), as F.pad(mode='constant').

    Forward: a tensor full of ``value`` with the (possibly cropped) input
    copied into its middle. Each kept input element lands in exactly one
    output position and the padding does not depend on x, so

        dL/dx = dL/dy at the positions the input was copied to, 0 where cropped.
    """

    double_backward = "composite"

    def forward(ctx, x, pad, value=0.0):
        xp = get_array_module(x)
        src, dst = [slice(None)] * x.ndim, [slice(None)] * x.ndim
        out_shape = list(x.shape)
        for axis, before, after in _pad_pairs(x.ndim, pad):
            n = x.shape[axis]
            lo, hi = max(-before, 0), n - max(-after, 0)     # the kept part of the input
            src[axis] = slice(lo, hi)
            dst[axis] = slice(max(before, 0), max(before, 0) + hi - lo)
            out_shape[axis] = n + before + after
        y = xp.full(out_shape, value, dtype=x.dtype)
        y[tuple(dst)] = x[tuple(src)]
        ctx.src, ctx.dst, ctx.in_shape = tuple(src), tuple(dst), x.shape
        return y

    def composite(ctx, x, pad, value=0.0):
        """Linear in x plus a constant: the zero padding of x - value, plus value."""
        if value == 0:
            return ZeroPad.apply(x, pad=pad, value=0.0)
        return ZeroPad.apply(x - value, pad=pad, value=0.0) + value

    def backward(ctx, gy):
        gx = get_array_module(gy).zeros(ctx.in_shape, dtype=gy.dtype)
        gx[ctx.src] = gy[ctx.dst]
        return gx


def _pad_source_index(xp, mode, n, before, after):
    """For each output position along one axis, the input position it copies.

    Output position o stands for input coordinate i = o - before, which runs
    from -before to n - 1 + after; the mode maps out-of-range i back inside:
      reflect    mirror about the end elements, which are not repeated:
                 -1 -> 1, n -> n - 2          (i -> (n-1) - |(n-1) - |i||)
      replicate  clamp to the nearest end:    -1 -> 0, n -> n - 1
      circular   wrap around:                 -1 -> n - 1, n -> 0. PyTorch crops
                 negative amounts first and wraps the cropped part, so do we.
    """
    if mode == "circular":
        lo, hi = max(-before, 0), n - max(-after, 0)
        kept = hi - lo
        i = xp.arange(-max(before, 0), kept + max(after, 0))
        return i % max(kept, 1) + lo
    i = xp.arange(-before, n + after)
    if mode == "reflect":
        return (n - 1) - xp.abs((n - 1) - xp.abs(i))
    return xp.clip(i, 0, n - 1)     # replicate


class ZeroPad(ConstantPad):
    """ConstantPad with value 0, a linear op: the part of a constant padding that depends on
    x, for create_graph (ConstantPad's composite, conv_transpose2d's output_padding)."""

    double_backward = "linear"


class IndexPad(Function):
    """Reflect / replicate / circular padding: along each padded axis the output
    is a gather of the input, y = take(x, idx, axis), with idx from
    ``_pad_source_index``. Border elements are read several times (replicate
    reads the edge once per padded row; reflect and circular read interior
    elements twice), so the adjoint sums:

        dL/dx[j] = sum over the o with idx[o] == j of dL/dy[o]     (per axis, in reverse order)
    """

    double_backward = "linear"

    def forward(ctx, x, pad, mode):
        xp = get_array_module(x)
        ctx.gathers = []
        for axis, before, after in _pad_pairs(x.ndim, pad):
            if before == 0 and after == 0:
                continue
            idx = _pad_source_index(xp, mode, x.shape[axis], before, after)
            ctx.gathers.append((axis, idx, x.shape[axis]))
            x = xp.take(x, idx, axis=axis)
        return x if ctx.gathers else x.copy()

    def backward(ctx, gy):
        for axis, idx, n in reversed(ctx.gathers):
            gy = _take_adjoint(gy, idx, axis, n)
        return gy


def pad(input, pad, mode="constant", value=None):
    """Pad (or, with negative amounts, crop) the last dimensions, as ``torch.nn.functional.pad``.

    ``pad`` lists (before, after) amounts starting from the LAST dimension:
    (left, right) pads the last axis, (left, right, top, bottom) the last two, ...
    Modes: 'constant' (any number of dimensions, fill with ``value``, default 0),
    'reflect', 'replicate', 'circular' (1, 2 or 3 trailing dimensions of a 2-5 D
    input with an optional batch axis, as PyTorch).
    """
    pad = tuple(int(p) for p in pad)
    if len(pad) % 2:
        raise RuntimeError(f"pad: padding length must be divisible by 2, got {pad}")
    if len(pad) > 2 * input.ndim:
        raise RuntimeError(f"pad: padding {pad} has length {len(pad)} but the input (shape "
                           f"{input.shape}) has only {input.ndim} dimensions to pad")
    pairs = _pad_pairs(input.ndim, pad)
    for axis, before, after in pairs:
        if input.shape[axis] + before + after < 0:
            raise RuntimeError(f"pad: padding ({before}, {after}) of dimension {axis} (size "
                               f"{input.shape[axis]}, input shape {input.shape}) gives a negative size")
        if mode == "constant" and input.shape[axis] + min(before, 0) + min(after, 0) < 0:  # PyTorch crops first
            raise RuntimeError(f"pad: padding ({before}, {after}) of dimension {axis} crops more than its "
                               f"{input.shape[axis]} elements (input shape {input.shape})")
    if mode == "constant":
        return ConstantPad.apply(input, pad=pad, value=0.0 if value is None else value)
    if mode not in ("reflect", "replicate", "circular"):
        raise NotImplementedError(f"pad: unknown mode {mode!r}; expected 'constant', 'reflect', "
                                  "'replicate' or 'circular'")
    if value is not None and value != 0:
        raise ValueError(f'pad: padding mode "{mode}" does not take a value argument (got {value})')
    k = len(pad) // 2
    if k not in (1, 2, 3) or input.ndim not in (k + 1, k + 2):
        raise NotImplementedError(
            f"pad: padding of length {len(pad)} in mode '{mode}' is not supported for a "
            f"{input.ndim}D input (shape {input.shape}); supported: 2D or 3D input with 2 values, "
            "3D or 4D with 4 values, 4D or 5D with 6 values")
    for axis, before, after in pairs:
        n = input.shape[axis]
        if mode in ("reflect", "replicate") and n == 0:
            raise RuntimeError(f"pad: '{mode}' padding needs a non-empty dimension {axis}, "
                               f"got input shape {input.shape}")
        if mode == "reflect" and (before >= n or after >= n):
            raise RuntimeError(f"pad: reflect padding ({before}, {after}) must be less than the "
                               f"size {n} of dimension {axis} (input shape {input.shape})")
        if mode == "circular":
            kept = n - max(-before, 0) - max(-after, 0)
            if before > kept or after > kept:
                raise RuntimeError(f"pad: circular padding ({before}, {after}) of dimension {axis} "
                                   f"wraps around more than once (size {kept} after cropping, "
                                   f"input shape {input.shape})")
    sizes = [input.shape[axis] + before + after for axis, before, after in pairs]
    if mode in ("reflect", "replicate") and max(sizes) < 1:    # PyTorch's rule: some padded axis non-empty
        raise RuntimeError(f"pad: '{mode}' padding {pad} of input shape {input.shape} leaves no element "
                           f"along any padded dimension (sizes {sizes})")
    return IndexPad.apply(input, pad=pad, mode=mode)


# ---------------------------------------------------------------- interpolate
#
# Every mode is separable: resizing an image is resizing along H, then along W.
# Along one axis, output position o reads T input positions idx[o, t] with
# weights w[o, t] ("taps"): T = 1 for nearest, 2 for linear, 4 for cubic:
#
#     y[o] = sum_t w[o, t] * x[idx[o, t]]
#
# The tap functions below reproduce PyTorch's CPU kernels, including the
# precision they compute coordinates in (float32 for float32 inputs; see
# _nearest_taps for nearest), so that the chosen neighbours agree exactly.

def _source_scale(in_size, out_size, scale_factor, align_corners, dtype):
    """Input pixels per output pixel, as PyTorch's area_pixel_compute_scale."""
    if align_corners:      # the corner pixel centres of input and output coincide
        return dtype.type(in_size - 1) / dtype.type(out_size - 1) if out_size > 1 else dtype.type(0)
    if scale_factor:       # the user's factor is used as given unless recompute_scale_factor=True
        return dtype.type(1.0 / scale_factor)
    return dtype.type(in_size) / dtype.type(out_size)


def _nearest_taps(xp, in_size, out_size, scale_factor, exact, dtype, legacy_2d):
    """'nearest' (PyTorch's legacy rule): src = floor(dst * s)
    'nearest-exact' (pixel centres):      src = floor((dst + 0.5) * s)
    both clamped to in - 1, with s = 1/scale_factor if given, else in/out.

    The roundings are those of PyTorch's CPU kernels, so that a coordinate
    landing exactly on a pixel border (such as 20.5 * 2/41 = 1) picks the same
    pixel as PyTorch: its 4-D kernel (``legacy_2d``) uses a float32 s whatever
    the dtype, and for 'nearest' copies an axis whose size does not change and
    takes dst // 2 for exact doubling, even when scale_factor says otherwise;
    its 3-D and 5-D kernels compute in the input's precision (float32 or
    float64) as (dst + 0.5) * s - 0.5 + 0.5 for 'nearest-exact'. All round the
    coordinate to float32 before the floor.
    """
    f32 = np.dtype(np.float32)
    if legacy_2d:
        if not exact and out_size == in_size:
            return xp.arange(out_size)[:, None], None
        if not exact and out_size == 2 * in_size:
            return (xp.arange(out_size) // 2)[:, None], None
        s = _source_scale(in_size, out_size, scale_factor, False, f32)
        if exact:
            src = (xp.arange(out_size, dtype=np.float64) + 0.5) * float(s)
        else:
            src = xp.arange(out_size, dtype=f32) * s
    else:
        opmath = np.dtype(np.float64) if dtype == np.float64 else f32
        s = _source_scale(in_size, out_size, scale_factor, False, opmath)
        if exact:
            dst = xp.arange(out_size, dtype=np.float64)
            src = xp.maximum((dst + 0.5) * float(s) - 0.5, 0).astype(opmath) + opmath.type(0.5)
        else:
            src = xp.arange(out_size, dtype=opmath) * s
    src = xp.floor(src.astype(f32)).astype(np.int64)
    return xp.minimum(src, in_size - 1)[:, None], None


def _source_coordinate(xp, in_size, out_size, scale_factor, align_corners, dtype, cubic):
    """Real-valued input coordinate of each output pixel, and its floor (clamped to the input):

        align_corners=True:   src = dst * (in - 1) / (out - 1)
        align_corners=False:  src = (dst + 0.5) * s - 0.5       (pixel centres line up)

    Linear modes clamp src < 0 to 0 (cubic does not: its taps are clamped instead)."""
    s = _source_scale(in_size, out_size, scale_factor, align_corners, dtype)
    dst = xp.arange(out_size, dtype=dtype)
    src = dst * s if align_corners else (dst + 0.5) * s - 0.5
    if not cubic:
        src = xp.maximum(src, 0)
    i0 = xp.minimum(xp.floor(src).astype(np.int64), in_size - 1)
    t = xp.clip(src - i0.astype(dtype), 0, 1)        # fractional position between i0 and i0 + 1
    return i0, t


def _linear_taps(xp, in_size, out_size, scale_factor, align_corners, dtype):
    """Two taps, i0 and i0 + 1 (i0 again at the last pixel), weights 1 - t and t."""
    i0, t = _source_coordinate(xp, in_size, out_size, scale_factor, align_corners, dtype, cubic=False)
    i1 = i0 + (i0 < in_size - 1)
    return xp.stack([i0, i1], axis=1), xp.stack([1 - t, t], axis=1)


#: Keys' cubic convolution parameter, as PyTorch's and OpenCV's bicubic
CUBIC_A = -0.75


def cubic_near(d):
    """Keys' cubic kernel for |d| <= 1: (A + 2)|d|^3 - (A + 3)|d|^2 + 1 (arrays or Tensors)."""
    return ((CUBIC_A + 2) * d - (CUBIC_A + 3)) * d * d + 1


def cubic_far(d):
    """Keys' cubic kernel for 1 < |d| < 2: A|d|^3 - 5A|d|^2 + 8A|d| - 4A (arrays or Tensors)."""
    return ((CUBIC_A * d - 5 * CUBIC_A) * d + 8 * CUBIC_A) * d - 4 * CUBIC_A


def _cubic_taps(xp, in_size, out_size, scale_factor, align_corners, dtype):
    """Four taps i0-1 .. i0+2, clamped into the input (border replication), with Keys'
    cubic kernel (``cubic_near``, ``cubic_far``) at distances 1+t, t, 1-t, 2-t."""
    i0, t = _source_coordinate(xp, in_size, out_size, scale_factor, align_corners, dtype, cubic=True)
    idx = xp.clip(i0[:, None] + xp.arange(-1, 3)[None, :], 0, in_size - 1)
    w = xp.stack([cubic_far(t + 1), cubic_near(t), cubic_near(1 - t), cubic_far(2 - t)], axis=1)
    return idx, w


def _tap_matrix(xp, idx, w, in_size, dtype):
    """The taps of one axis as the dense (out, in) matrix W of the linear map y = W x:
    W[o, idx[o, t]] += w[o, t] (taps clamped onto the same pixel add up)."""
    out_size, n_taps = idx.shape
    W = xp.zeros((out_size, in_size), dtype=dtype)
    rows = xp.arange(out_size)
    for t in range(n_taps):          # within one tap the rows differ, so += cannot collide
        W[rows, idx[:, t]] += 1 if w is None else w[:, t]
    return W


def _matmul_along(x, W, axis):
    """y[..., o, ...] = sum_i W[o, i] x[..., i, ...]: W applied to every line of x along ``axis``."""
    xp = get_array_module(x)
    # tensordot makes this one 2-D GEMM; a stacked ``x @ W.T`` would run one small GEMM per line group.
    return xp.moveaxis(xp.tensordot(x, W, axes=([axis], [1])), -1, axis)


class Interpolate(Function):
    """Resize the spatial axes (2, 3, ...), one axis at a time (see the comment above).

    Along one axis the resize is a linear map y = W x with W of shape (out, in),
    row o holding the tap weights of output o. W is sparse (1, 2 or 4 nonzeros
    per row) but small, one per axis rather than per pixel, so one matrix
    product (BLAS, cuBLAS) applies it faster than gathering taps would:

        forward:   y = W x      nearest: a plain gather x[idx] (an exact copy, any dtype)
        backward:  dL/dx = W^T dL/dy

    W^T is the "scatter-add of the interpolation weights": input pixel i
    receives w[o, t] * dL/dy[o] from every output o that read it, e.g. for
    nearest upsampling by 2 the sum of the gradients of its two copies.
    Applying the axes in reverse order gives the adjoint of the whole resize.
    """

    double_backward = "linear"

    def forward(ctx, x, size, scale_factor, mode, align_corners):
        xp = get_array_module(x)
        opmath = np.dtype(np.float64) if x.dtype == np.float64 else np.dtype(np.float32)
        ctx.steps = []
        for k, out_size in enumerate(size):
            axis, in_size = 2 + k, x.shape[2 + k]
            sf = scale_factor[k] if scale_factor else None
            if mode in ("nearest", "nearest-exact"):
                idx, w = _nearest_taps(xp, in_size, out_size, sf, mode == "nearest-exact", x.dtype,
                                       legacy_2d=len(size) == 2)
            elif mode == "bicubic":
                idx, w = _cubic_taps(xp, in_size, out_size, sf, align_corners, opmath)
            elif out_size == in_size:   # PyTorch's linear kernels copy such an axis, whatever the scale
                continue
            else:   # linear, bilinear, trilinear
                idx, w = _linear_taps(xp, in_size, out_size, sf, align_corners, opmath)
            W = _tap_matrix(xp, idx, w, in_size, x.dtype)
            x = xp.take(x, idx[:, 0], axis=axis) if w is None else _matmul_along(x, W, axis)
            ctx.steps.append((axis, W))
        return x if ctx.steps else x.copy()     # never hand out the input array itself

    def backward(ctx, gy):
        for axis, W in reversed(ctx.steps):
            gy = _matmul_along(gy, W.T, axis)
        return gy


_MODE_DIMS = {"linear": 1, "bilinear": 2, "bicubic": 2, "trilinear": 3}


def interpolate(input, size=None, scale_factor=None, mode="nearest", align_corners=None,
                recompute_scale_factor=None, antialias=False):
    """Resize the spatial dimensions of an (N, C, *spatial) input, as ``torch.nn.functional.interpolate``.

    Modes: 'nearest' (PyTorch's legacy rule src = floor(dst * in/out)),
    'nearest-exact' (pixel centres), 'linear' (3-D input), 'bilinear' and
    'bicubic' (4-D), 'trilinear' (5-D), 'area' (adaptive average pooling, 3-D and 4-D). Give either ``size`` or
    ``scale_factor``; with a scale factor the output size is
    floor(in * scale_factor) and the coordinates use 1/scale_factor unless
    ``recompute_scale_factor=True`` (then in/out), exactly as PyTorch.
    """
    if antialias:
        raise NotImplementedError("interpolate: antialias=True is not implemented")
    n_spatial = input.ndim - 2
    if mode in ("nearest", "nearest-exact", "area"):
        if align_corners is not None:
            raise ValueError("interpolate: align_corners option can only be set with the "
                             "interpolating modes: linear | bilinear | bicubic | trilinear")
        if mode == "area" and n_spatial not in (1, 2):
            raise NotImplementedError(f"interpolate: mode 'area' needs a 3D or 4D input, got shape {input.shape}")
        if n_spatial not in (1, 2, 3):
            raise NotImplementedError(f"interpolate: mode '{mode}' needs a 3D, 4D or 5D input, "
                                      f"got shape {input.shape}")
    elif mode in _MODE_DIMS:
        if n_spatial != _MODE_DIMS[mode]:
            raise NotImplementedError(f"interpolate: got {input.ndim}D input (shape {input.shape}), "
                                      f"but {mode} mode needs {_MODE_DIMS[mode] + 2}D input")
        align_corners = bool(align_corners)
        if input.dtype.kind != "f":
            raise RuntimeError(f"interpolate: mode '{mode}' needs a floating-point input, got {input.dtype}")
    else:
        raise NotImplementedError(f"interpolate: unknown or unsupported mode {mode!r}; expected one of "
                                  "nearest | nearest-exact | linear | bilinear | bicubic | trilinear | area")

    spatial = input.shape[2:]
    if (size is None) == (scale_factor is None):
        raise ValueError("interpolate: " + ("only one of size or scale_factor should be defined"
                                            if size is not None else
                                            "either size or scale_factor should be defined"))
    if size is not None:
        if recompute_scale_factor:
            raise ValueError("interpolate: recompute_scale_factor is not meaningful with an explicit size")
        size = _per_dim(size, n_spatial, "size", input.shape)
        scales = None
    else:
        scales = _per_dim(scale_factor, n_spatial, "scale_factor", input.shape)
        size = tuple(int(math.floor(float(n) * s)) for n, s in zip(spatial, scales))
        if recompute_scale_factor:
            scales = None       # coordinates from in/out, as if size had been given
    if any(n <= 0 for n in spatial) or any(n <= 0 for n in size):
        raise RuntimeError(f"interpolate: input and output sizes should be greater than 0, but got "
                           f"input spatial size {tuple(spatial)} and output size {tuple(size)}")
    if mode == "area":              # each output the mean of its share of the input: adaptive pooling
        from .pool import adaptive_avg_pool1d, adaptive_avg_pool2d       # (pool.py's own imports come first)
        return (adaptive_avg_pool1d if n_spatial == 1 else adaptive_avg_pool2d)(input, tuple(int(n) for n in size))
    return Interpolate.apply(input, size=tuple(int(n) for n in size), scale_factor=scales,
                             mode=mode, align_corners=align_corners)


def _per_dim(value, n, name, shape):
    """An int/float or a sequence, as one value per spatial dimension."""
    if isinstance(value, numbers.Number):
        return (value,) * n
    value = tuple(value)
    if len(value) != n:
        raise ValueError(f"interpolate: the input (shape {shape}) has {n} spatial dimensions but "
                         f"{name} has {len(value)} values: {value}")
    return value


# ---------------------------------------------------------------- pixel shuffle
def _shuffle(x, r):
    """(*, C r^2, H, W) -> (*, C, H r, W r): channel c r^2 + i r + j becomes offset (i, j) of each r x r cell."""
    lead, (crr, h, w) = x.shape[:-3], x.shape[-3:]
    k = len(lead)
    y = x.reshape(lead + (crr // (r * r), r, r, h, w))
    y = y.transpose(tuple(range(k)) + (k, k + 3, k + 1, k + 4, k + 2))    # (*, C, H, r, W, r)
    return y.reshape(lead + (crr // (r * r), h * r, w * r))


def _unshuffle(x, r):
    """(*, C, H r, W r) -> (*, C r^2, H, W): the inverse permutation of ``_shuffle``."""
    lead, (c, hr, wr) = x.shape[:-3], x.shape[-3:]
    k = len(lead)
    y = x.reshape(lead + (c, hr // r, r, wr // r, r))
    y = y.transpose(tuple(range(k)) + (k, k + 2, k + 4, k + 1, k + 3))    # (*, C, r, r, H, W)
    return y.reshape(lead + (c * r * r, hr // r, wr // r))


class PixelShuffle(Function):
    """Depth-to-space (SuperPoint's 64 channels -> 8x8 cells), as torch.pixel_shuffle:

        y[..., c, h r + i, w r + j] = x[..., c r^2 + i r + j, h, w]

    Every element moves to exactly one place, so the gradient moves back:
    dL/dx = pixel_unshuffle(dL/dy)."""

    double_backward = "linear"

    def forward(ctx, x, r):
        ctx.r = r
        return _shuffle(x, r) if r > 1 else x.copy()    # r = 1 would be a view of the input

    def backward(ctx, gy):
        return _unshuffle(gy, ctx.r)


class PixelUnshuffle(Function):
    """Space-to-depth, the inverse of PixelShuffle:

        y[..., c r^2 + i r + j, h, w] = x[..., c, h r + i, w r + j];   dL/dx = pixel_shuffle(dL/dy)."""

    double_backward = "linear"

    def forward(ctx, x, r):
        ctx.r = r
        return _unshuffle(x, r) if r > 1 else x.copy()

    def backward(ctx, gy):
        return _shuffle(gy, ctx.r)


def _check_factor(op, r):
    if int(r) != r or r < 1:
        raise ValueError(f"{op}: the factor must be a positive integer, got {r}")
    return int(r)


def pixel_shuffle(input, upscale_factor):
    """(*, C r^2, H, W) -> (*, C, H r, W r), as ``torch.nn.functional.pixel_shuffle``."""
    r = _check_factor("pixel_shuffle", upscale_factor)
    if input.ndim < 3:
        raise RuntimeError(f"pixel_shuffle: expected an input of at least 3 dimensions (*, C, H, W), "
                           f"got shape {input.shape}")
    if input.shape[-3] % (r * r):
        raise RuntimeError(f"pixel_shuffle: the channel dimension {input.shape[-3]} of the input "
                           f"(shape {input.shape}) is not divisible by upscale_factor^2 = {r * r}")
    return PixelShuffle.apply(input, r=r)


def pixel_unshuffle(input, downscale_factor):
    """(*, C, H r, W r) -> (*, C r^2, H, W), as ``torch.nn.functional.pixel_unshuffle``."""
    r = _check_factor("pixel_unshuffle", downscale_factor)
    if input.ndim < 3:
        raise RuntimeError(f"pixel_unshuffle: expected an input of at least 3 dimensions (*, C, H, W), "
                           f"got shape {input.shape}")
    if input.shape[-2] % r or input.shape[-1] % r:
        raise RuntimeError(f"pixel_unshuffle: the spatial size {input.shape[-2:]} of the input (shape "
                           f"{input.shape}) is not divisible by downscale_factor = {r}")
    return PixelUnshuffle.apply(input, r=r)
