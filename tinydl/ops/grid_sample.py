"""Spatial transformer sampling: ``affine_grid`` and ``grid_sample``, as PyTorch's.

``affine_grid`` maps every output pixel, given by its normalised position
(x, y[, z]) in [-1, 1], through an affine matrix theta to a position in the
input; ``grid_sample`` reads the input there. Together they warp an image
(Jaderberg et al., spatial transformer networks), differentiable in the image,
the grid and so in theta.

Conventions (PyTorch's). A grid value g in [-1, 1] along an axis of ``size``
pixels becomes the pixel coordinate c (pixel centres at integers)

    align_corners=True:   c = (g + 1) / 2 * (size - 1)     -1 and +1: the centres of the corner pixels
    align_corners=False:  c = ((g + 1) * size - 1) / 2     -1 and +1: the outer edges of the corner pixels

Positions outside the input follow ``padding_mode``:
    'zeros'       taps outside the input read 0
    'border'      c is clipped to [0, size - 1]
    'reflection'  c is mirrored at the borders (the corner pixel centres with
                  align_corners=True, the pixel edges -0.5 and size - 0.5 with
                  False) until it lies inside, then clipped
and the input is read at c with
    'nearest'     the pixel round(c) (half to even, as C's nearbyint)
    'bilinear'    the 2 (3-D: trilinear) pixels floor(c), floor(c) + 1 per axis, weights 1 - t, t
    'bicubic'     the 4 pixels floor(c) - 1 .. floor(c) + 2 per axis, with Keys' cubic
                  kernel (A = -0.75); here c is not padded, each of the 4x4 taps is
                  (a tap outside reads 0, its border pixel, or its mirror image)
with t = c - floor(c). The grid's last axis is (x, y[, z]): x runs along the
input's LAST axis (W), y along H, z along D.
"""
import functools
import itertools
import numbers

import numpy as np

from ..autograd import Function, constant
from ..backend import get_array_module
from ..kernels.scatter import scatter_add
from ..tensor import Tensor
from .resample import CUBIC_A, cubic_far, cubic_near

__all__ = ["affine_grid", "grid_sample"]


# ---------------------------------------------------------------- coordinates along one axis
def _unnormalize(g, size, align_corners):
    """Grid value -> pixel coordinate along an axis of ``size`` pixels, and d(coordinate)/d(grid)."""
    if align_corners:
        scale = (size - 1) / 2
        return (g + 1) * scale, scale
    scale = size / 2
    return (g + 1) * scale - 0.5, scale


def _clip(xp, c, size):
    """Clip c into [0, size - 1]; the derivative is 1 strictly inside and 0 from the ends on (at
    an end, PyTorch's choice of one-sided derivative)."""
    return xp.clip(c, 0, size - 1), (c > 0) & (c < size - 1)


def _reflect(xp, c, lo, hi):
    """Fold c into [lo, hi] by mirroring it at both ends (a triangle wave of period 2 (hi - lo)),
    and its derivative, +1 or -1."""
    span = hi - lo
    if span <= 0:                   # one pixel with align_corners=True: everything lands on it
        return xp.zeros_like(c), xp.zeros_like(c)
    u = c - lo
    a = xp.abs(u)
    e = a - xp.floor(a / (2 * span)) * (2 * span)   # a mod 2 span: where in the wave's period
    rising = e < span
    folded = xp.where(rising, e, 2 * span - e) + lo
    # d|u|/dc is -1 left of lo; the falling half of the wave flips the sign again
    sign = xp.where((u < 0) != rising, 1, -1).astype(c.dtype)
    return folded, sign


def _pad_coordinate(xp, c, size, padding_mode, align_corners):
    """Bring c inside the input as ``padding_mode`` says: (coordinate, its derivative w.r.t. c)."""
    if padding_mode == "zeros":
        return c, None
    slope = None
    if padding_mode == "reflection":
        lo, hi = (0, size - 1) if align_corners else (-0.5, size - 0.5)
        c, slope = _reflect(xp, c, lo, hi)
    c, inside = _clip(xp, c, size)
    inside = inside.astype(c.dtype)
    return c, inside if slope is None else slope * inside


class _Axis:
    """The taps of every output along one spatial axis: ``index`` and ``inside`` (one array per
    tap), ``t`` = c - floor(c) (None for nearest) and ``slope`` = dc/dg (array or number)."""

    def __init__(self, xp, taps, size, t, slope):
        self.inside = [(f >= 0) & (f <= size - 1) for f in taps]     # compared before the int cast:
        self.index = [xp.where(ok, f, 0).astype(np.int64)            # a huge or NaN c must not overflow
                      for f, ok in zip(taps, self.inside)]           # (outside: any valid index, masked)
        self.t, self.slope = t, slope


def _axis_taps(xp, g, size, mode, padding_mode, align_corners):
    """The ``_Axis`` of grid component g (N, *out) along an input axis of ``size`` pixels."""
    c, scale = _unnormalize(g, size, align_corners)
    if mode == "bicubic":           # the coordinate is not padded, each of the 4 taps is
        i0 = xp.floor(c)
        taps = [_pad_coordinate(xp, i0 + k, size, padding_mode, align_corners)[0] for k in (-1, 0, 1, 2)]
        return _Axis(xp, taps, size, c - i0, scale)
    c, pad_slope = _pad_coordinate(xp, c, size, padding_mode, align_corners)
    slope = scale if pad_slope is None else scale * pad_slope
    if mode == "nearest":
        return _Axis(xp, [xp.rint(c)], size, None, slope)
    i0 = xp.floor(c)
    return _Axis(xp, [i0, i0 + 1], size, c - i0, slope)


# ---------------------------------------------------------------- tap weights (arrays or Tensors)
def _near_slope(d):   # d/dd of resample.cubic_near
    return (3 * (CUBIC_A + 2) * d - 2 * (CUBIC_A + 3)) * d


def _far_slope(d):    # d/dd of resample.cubic_far
    return (3 * CUBIC_A * d - 10 * CUBIC_A) * d + 8 * CUBIC_A


def _weights(mode, t):
    """The weights of an axis's taps given t = c - floor(c): (1 - t, t) for linear, Keys' kernel
    at the distances 1 + t, t, 1 - t, 2 - t for cubic. Plain arithmetic: arrays or Tensors."""
    if mode == "bilinear":
        return [1 - t, t]
    return [cubic_far(t + 1), cubic_near(t), cubic_near(1 - t), cubic_far(2 - t)]


def _weight_slopes(mode, t):
    """d/dt of ``_weights``."""
    if mode == "bilinear":
        return [-1.0, 1.0]
    return [_far_slope(t + 1), _near_slope(t), -_near_slope(1 - t), -_far_slope(2 - t)]


def _product(factors):
    return functools.reduce(lambda a, b: a * b, factors)


# ---------------------------------------------------------------- grid_sample
def _channels_last(x):
    """(N, C, *spatial) -> (N, P, C), P = the number of input pixels: one row per pixel to gather.
    (A Tensor too: the composite gathers with the same indices.)"""
    n, c = x.shape[:2]
    flat = x.reshape(n, c, int(np.prod(x.shape[2:], dtype=np.int64)))      # (not -1: N or C may be 0)
    if isinstance(x, Tensor):
        return flat.permute(0, 2, 1)
    return get_array_module(x).ascontiguousarray(flat.transpose(0, 2, 1))


class GridSample(Function):
    """y[n, :, o] = the input read at grid[n, o] (see the module docstring): a sum over taps k
    (every combination of one tap per axis) of w_k * x[n, :, p_k], with w_k the product of the
    axes' weights and p_k the pixel the tap reads (x = 0 at a tap outside the input, 'zeros').

        dL/dx[n, :, p]  = sum over the (o, k) with p_k = p of w_k * dL/dy[n, :, o]   (scatter-add)
        dL/dg_a[n, o]   = sum_k <dL/dy[n, :, o], x[n, :, p_k]> * dw_k/dt_a * dc_a/dg_a

    for the grid component g_a of spatial axis a: dw_k/dt_a is the derivative of that axis's
    weight times the other axes' weights; dc_a/dg_a is the unnormalising scale times the
    padding's derivative (+1 inside, 0 where clipped, -1 on the mirrored stretches of
    'reflection'; bicubic pads the taps, not c, so only the scale). The pixels read are
    piecewise constant in g, so at a kink (c on a pixel centre, a clip or a mirror point) this
    is a one-sided derivative, chosen as PyTorch does. 'nearest' reads one pixel with weight 1:
    dL/dg = 0.
    """

    double_backward = "composite"

    def forward(ctx, x, grid, mode, padding_mode, align_corners):
        xp = get_array_module(x, grid)
        n, c, *spatial = x.shape
        nd = len(spatial)
        # grid component a (x, y[, z]) runs along input axis -1 - a
        ctx.axes = [_axis_taps(xp, grid[..., nd - 1 - j], size, mode, padding_mode, align_corners)
                    for j, size in enumerate(spatial)]
        ctx.strides = [int(np.prod(spatial[j + 1:], dtype=np.int64)) for j in range(nd)]
        ctx.mode, ctx.x_shape = mode, x.shape
        if mode != "nearest" and ctx.needs_input_grad[1]:
            ctx.save_for_backward(x)        # the grid's gradient reads the tapped values again
        xt = _channels_last(x)
        rows = xp.arange(n).reshape((n,) + (1,) * (grid.ndim - 2))
        out = xp.zeros(grid.shape[:-1] + (c,), dtype=x.dtype)
        weights = None if mode == "nearest" else [_weights(mode, ax.t) for ax in ctx.axes]
        for picks, flat, inside in _taps(ctx.axes, ctx.strides):
            # where, not a product: a tap outside must not carry an inf or NaN of pixel 0 in
            v = xp.where(inside[..., None], xt[rows, flat], 0)
            if weights is not None:
                v *= _product([w[p] for w, p in zip(weights, picks)])[..., None]
            out += v
        return xp.ascontiguousarray(xp.moveaxis(out, -1, 1))

    def composite(ctx, x, grid, mode, padding_mode, align_corners):
        """The forward on Tensors with the taps' pixels held fixed: locally c = g * dc/dg + const,
        so t and the weights are polynomials in g, the gather linear in x."""
        nd = len(ctx.axes)
        xt = _channels_last(x)
        n = x.shape[0]
        rows = x._xp.arange(n).reshape((n,) + (1,) * (grid.ndim - 2))
        weights = None
        if mode != "nearest":
            weights = []
            for j, ax in enumerate(ctx.axes):
                g = grid[..., nd - 1 - j]
                slope = constant(ax.slope, grid)
                weights.append(_weights(mode, g * slope + constant(ax.t - g.array * ax.slope, grid)))
        out = None
        for picks, flat, inside in _taps(ctx.axes, ctx.strides):
            v = xt[rows, flat] * constant(inside[..., None], x)
            if weights is not None:
                v = v * _product([w[p] for w, p in zip(weights, picks)]).unsqueeze(-1)
            out = v if out is None else out + v
        if weights is None:         # nearest: the grid's gradient is zero, not missing (as torch)
            out = out + grid.sum() * 0.0
        return out.permute(0, nd + 1, *range(1, nd + 1))

    def backward(ctx, gy):
        xp = get_array_module(gy)
        n, c = ctx.x_shape[:2]
        nd = len(ctx.axes)
        g = xp.moveaxis(gy, 1, -1)                                   # (N, *out, C)
        rows = xp.arange(n).reshape((n,) + (1,) * (g.ndim - 2))
        weights = None if ctx.mode == "nearest" else [_weights(ctx.mode, ax.t) for ax in ctx.axes]
        gx = ggrid = None
        if ctx.needs_input_grad[0]:
            gxt = xp.zeros((n, int(np.prod(ctx.x_shape[2:], dtype=np.int64)), c), dtype=gy.dtype)
            for picks, flat, inside in _taps(ctx.axes, ctx.strides):
                w = inside if weights is None else xp.where(   # (where: a NaN weight outside sends nothing)
                    inside, _product([w[p] for w, p in zip(weights, picks)]), 0)
                scatter_add(gxt, (rows, flat), g * w[..., None].astype(gy.dtype, copy=False))
            gx = xp.ascontiguousarray(gxt.transpose(0, 2, 1)).reshape(ctx.x_shape)
        if ctx.needs_input_grad[1]:
            ggrid = xp.zeros(g.shape[:-1] + (nd,), dtype=gy.dtype)
            if ctx.mode != "nearest":                                # nearest: piecewise constant, 0
                x, = ctx.saved_tensors
                xt = _channels_last(x)
                slopes = [_weight_slopes(ctx.mode, ax.t) for ax in ctx.axes]
                for picks, flat, inside in _taps(ctx.axes, ctx.strides):
                    dot = (xp.where(inside[..., None], xt[rows, flat], 0) * g).sum(axis=-1)
                    for j in range(nd):
                        dw = _product([s[p] if i == j else w[p]
                                       for i, (w, s, p) in enumerate(zip(weights, slopes, picks))])
                        ggrid[..., nd - 1 - j] += dot * dw
                for j, ax in enumerate(ctx.axes):
                    ggrid[..., nd - 1 - j] *= ax.slope
        return gx, ggrid

    def release(ctx):
        ctx.axes = None              # the taps' indices and weights go with the saved input
        super().release()


def _taps(axes, strides):
    """Every combination of one tap per axis: (the tap number on each axis, the flat input
    pixel it reads, whether it lies inside the input)."""
    for picks in itertools.product(*[range(len(ax.index)) for ax in axes]):
        flat = sum(ax.index[p] * s for ax, p, s in zip(axes, picks, strides))
        inside = _product([ax.inside[p] for ax, p in zip(axes, picks)])
        yield picks, flat, inside


_MODES = ("bilinear", "nearest", "bicubic")
_PADDINGS = ("zeros", "border", "reflection")


def grid_sample(input, grid, mode="bilinear", padding_mode="zeros", align_corners=None):
    """Read ``input`` (N, C, H, W) at the positions ``grid`` (N, Ho, Wo, 2) -> (N, C, Ho, Wo),
    or a volume (N, C, D, H, W) at (N, Do, Ho, Wo, 3) -> (N, C, Do, Ho, Wo), as
    ``torch.nn.functional.grid_sample``. grid[n, ..., :] = (x, y[, z]) in [-1, 1], normalised
    as the module docstring says. Modes 'bilinear' (trilinear for 5-D), 'nearest', 'bicubic'
    (4-D only); padding 'zeros', 'border', 'reflection'. ``align_corners=None`` means False.
    Differentiable in ``input`` and ``grid`` (nearest: the grid gets a zero gradient).
    """
    op = "grid_sample"
    if mode not in _MODES:
        raise ValueError(f"{op}: expected mode to be 'bilinear', 'nearest' or 'bicubic', got {mode!r}")
    if padding_mode not in _PADDINGS:
        raise ValueError(f"{op}: expected padding_mode to be 'zeros', 'border' or 'reflection', "
                         f"got {padding_mode!r}")
    for name, t in (("input", input), ("grid", grid)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{op}: {name} must be a Tensor, got {type(t).__name__}")
    if input.ndim not in (4, 5) or grid.ndim != input.ndim:
        raise RuntimeError(f"{op}: expected a 4-D or 5-D input and a grid with as many dimensions, got "
                           f"input of shape {input.shape} and grid of shape {grid.shape}")
    nd = input.ndim - 2
    if grid.shape[-1] != nd:
        raise RuntimeError(f"{op}: a {input.ndim}-D input needs a grid with {nd} values (x, y"
                           f"{', z' if nd == 3 else ''}) in its last dimension, got grid of shape "
                           f"{grid.shape} for input of shape {input.shape}")
    if grid.shape[0] != input.shape[0]:
        raise RuntimeError(f"{op}: the input (shape {input.shape}) and the grid (shape {grid.shape}) "
                           f"have different batch sizes {input.shape[0]} and {grid.shape[0]}")
    if mode == "bicubic" and nd != 2:
        raise RuntimeError(f"{op}: bicubic interpolation needs a 4-D input, got input of shape {input.shape}")
    if any(s == 0 for s in input.shape[2:]):
        raise RuntimeError(f"{op}: the input needs non-empty spatial dimensions, got shape {input.shape}")
    if input.dtype.kind != "f" or grid.dtype != input.dtype:
        raise RuntimeError(f"{op}: expected a floating-point input and a grid of the same dtype, got "
                           f"input {input.dtype} and grid {grid.dtype}")
    if grid.device != input.device:
        raise RuntimeError(f"{op}: the input is on {input.device} but the grid is on {grid.device}")
    return GridSample.apply(input, grid, mode=mode, padding_mode=padding_mode,
                            align_corners=bool(align_corners))


# ---------------------------------------------------------------- affine_grid
def _base_axis(xp, size, align_corners, dtype):
    """The normalised positions of ``size`` pixel centres along one axis: from -1 to 1 (the corner
    centres) with align_corners, else shrunk by (size - 1) / size (centres inside the edges +-1)."""
    if size <= 1:                   # one pixel sits in the middle
        return xp.zeros(size, dtype=dtype)
    v = xp.linspace(-1, 1, size, dtype=dtype)
    return v if align_corners else v * dtype.type((size - 1) / size)


class AffineGrid(Function):
    """grid[n, p] = theta[n] @ (x_p, y_p[, z_p], 1): every output pixel p's normalised position,
    moved by the affine map theta (N, 2, 3) or (N, 3, 4). With B the (P, k + 1) matrix of the
    homogeneous positions, grid[n] = B theta[n]^T is linear in theta:

        dL/dtheta[n] = dL/dgrid[n]^T B          ((k, P) @ (P, k + 1))
    """

    double_backward = "linear"

    def forward(ctx, theta, size, align_corners):
        xp = get_array_module(theta)
        spatial = size[2:]
        k = len(spatial)
        # (x, y[, z]) runs along the last, second-last[, third-last] output axis
        axes = [_base_axis(xp, s, align_corners, theta.dtype) for s in reversed(spatial)]
        mesh = xp.meshgrid(*axes, indexing="ij")                         # (W, H[, D]) order
        base = xp.stack([m.transpose() for m in mesh] + [xp.ones(tuple(spatial), dtype=theta.dtype)],
                        axis=-1)                                         # (*spatial, k + 1)
        ctx.base = base.reshape(-1, k + 1)
        grid = xp.matmul(ctx.base, theta.transpose(0, 2, 1))            # (N, P, k)
        return grid.reshape((theta.shape[0],) + tuple(spatial) + (k,))

    def backward(ctx, gy):
        n, k = gy.shape[0], gy.shape[-1]
        gy = gy.reshape(n, ctx.base.shape[0], k)
        return get_array_module(gy).matmul(gy.transpose(0, 2, 1), ctx.base)


def affine_grid(theta, size, align_corners=None):
    """The sampling grid of the affine maps ``theta``, as ``torch.nn.functional.affine_grid``:
    (N, 2, 3) with size (N, C, H, W) -> (N, H, W, 2); (N, 3, 4) with size (N, C, D, H, W) ->
    (N, D, H, W, 3). ``align_corners=None`` means False. Differentiable in theta.
    """
    op = "affine_grid"
    if not isinstance(theta, Tensor):
        raise TypeError(f"{op}: theta must be a Tensor, got {type(theta).__name__}")
    if theta.dtype.kind != "f":
        raise ValueError(f"{op}: expected theta to have a floating-point dtype, got {theta.dtype}")
    size = tuple(size)
    if not all(isinstance(s, numbers.Integral) for s in size):
        raise TypeError(f"{op}: size must be a sequence of ints, got {size}")
    size = tuple(int(s) for s in size)
    if len(size) not in (4, 5):
        raise NotImplementedError(f"{op}: size must be (N, C, H, W) or (N, C, D, H, W), got {size}")
    k = len(size) - 2
    if theta.ndim != 3 or theta.shape[1:] != (k, k + 1):
        raise ValueError(f"{op}: a size of {len(size)} values {size} needs a batch of {k}-D affine "
                         f"matrices of shape (N, {k}, {k + 1}), got theta of shape {theta.shape}")
    if min(size) <= 0:
        raise ValueError(f"{op}: expected a positive output size, got {size}")
    if theta.shape[0] != size[0]:
        raise RuntimeError(f"{op}: theta (shape {theta.shape}) has {theta.shape[0]} matrices but size "
                           f"{size} asks for a batch of {size[0]}")
    return AffineGrid.apply(theta, size=size, align_corners=bool(align_corners))
