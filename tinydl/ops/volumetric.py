"""Volumetric (3-D) convolution and pooling: conv3d, conv_transpose3d, max / average /
adaptive pooling over (D, H, W) and max unpooling, as ``torch.nn.functional``.

These are here for completeness, not speed: one textbook route in plain array code,
the same on NumPy and CuPy (the array module comes from the data), and no dispatcher.

vol2col: every window becomes a column
--------------------------------------
A 3-D window at output position (od, oh, ow) reads, along each axis, the input
positions o*s - p_before + t*d for its taps t = 0..k-1. Pad the volume, flatten its
(Dp, Hp, Wp) cells, and one table (cached per geometry) holds the flat padded position
that tap (td, th, tw) of output (od, oh, ow) reads::

    table[(td*kh + th)*kw + tw, (od*Ho + oh)*Wo + ow]       (K3, L),  K3 = kd*kh*kw, L = Do*Ho*Wo
    cols = padded.reshape(N, C, Dp*Hp*Wp)[:, :, table]      (N, C, K3, L)

a single gather (the table is copied to a GPU once, not per call: kernels.pool._table_on).
``col2vol`` is its adjoint: every column entry is added back onto the cell it was read
from, and the padding is cropped off. As ``kernels.im2col.col2im_reference``, one strided
slice add per tap (td, th, tw) into the padded volume::

    padded[:, :, td*dd : ... : sd, th*dh : ... : sh, tw*dw : ... : sw] += cols[:, :, tap]

The cells of one slice are distinct, so no index array and no atomics; a cell under
several windows collects them tap after tap. So <vol2col(x), c> = <x, col2vol(c)>, and
each one's backward is the other.

The ops on top
--------------
conv3d           cols as (N, G, C/G*K3, L) (channel outermost, as W.reshape(C_out, -1));
                 y[n, g] = W[g] @ cols[n, g], one batched matmul
conv_transpose3d conv3d's adjoint: its forward is conv3d's input gradient (W^T @ x, then
                 col2vol), its backward conv3d's forward (vol2col, then W @ ...)
max_pool3d       cols padded with -inf (an integer dtype's minimum), argmax over K3;
                 backward scatter-adds gy onto the winning cells (_max_pool3d_grad)
avg_pool3d       cols padded with 0, summed over K3 / divisor; backward col2vol(gy / divisor)
adaptive pools   PyTorch's bins along each axis: averaging matrices (avg) or gathered
                 bins (max)
max_unpool3d     writes x at its indices into a zero volume; backward gathers there

Max-pool indices follow PyTorch: the flat position d*H*W + h*W + w of the winning cell
in its own unpadded (D, H, W) volume, per (n, c). The window is scanned in (d, h, w)
order and a value wins only if strictly greater (the first maximum wins ties) or NaN
(the last NaN wins); a window whose cells are all -inf reports its first cell past the
leading padding, and a window that reads no cell (dilation stepping over a thin volume)
reports that position too, outside the volume, and passes no gradient.

Output sizes (PyTorch's formulas, per axis):
    conv:            Do = floor((D + p_before + p_after - d*(k-1) - 1) / s) + 1
    conv_transpose:  Do = (D - 1)*s - 2p + d*(k-1) + output_padding + 1
    pooling:         Do = floor_or_ceil((D + 2p - d*(k-1) - 1) / s) + 1; in ceil_mode a
                     last window that would start beyond D + p is dropped
    max_unpool:      Do = (D - 1)*s - 2p + k
"""
import functools
import math

import numpy as np

from ..args import ntuple
from ..autograd import Function
from ..backend import get_array_module
from ..kernels.pool import _first_inbounds, _table_on, _window_counts, lowest, pool_output_size
from ..kernels.scatter import scatter_add
from ..tensor import Tensor
from .checks import check_same_kind
from .conv import _check_bias, _check_groups, _check_positive, _conv_padding, _transpose_arguments
from .math import raw
from .pool import (_adaptive_output, _bin_average_matrix, _bin_taps, _check_input, _check_orderable,
                   _check_unpool_indices, _pool_args, _unpool_args)

__all__ = ["conv3d", "conv_transpose3d", "max_pool3d", "avg_pool3d", "adaptive_avg_pool3d",
           "adaptive_max_pool3d", "max_unpool3d", "max_pool3d_with_indices", "adaptive_max_pool3d_with_indices"]


def _ncdhw(x):
    """An unbatched (C, D, H, W) array as a batch of one; (N, C, D, H, W) unchanged (a view)."""
    return x.reshape((1,) * (5 - x.ndim) + x.shape)


# ---------------------------------------------------------------- geometry
# A geometry is (size, pads, kernel, stride, dilation, out): the unpadded (D, H, W), the
# ((before, after),) * 3 padding, and the windows' kernel, stride, dilation and count per
# axis. Tuples of ints throughout, so it keys the cache of window tables.

def _spread(tables):
    """Three per-axis tables (k_a, o_a) as broadcastable (kd, kh, kw, Do, Ho, Wo) arrays."""
    out = []
    for axis, t in enumerate(tables):
        shape = [1] * 6
        shape[axis], shape[axis + 3] = t.shape
        out.append(t.reshape(shape))
    return out


def _taps(geometry):
    """The padded coordinate o*s + t*d of tap t of output o along each axis, as broadcastable
    (kd, kh, kw, Do, Ho, Wo) arrays."""
    _, _, kernel, stride, dilation, out = geometry
    return _spread([np.arange(o)[None, :] * s + np.arange(k)[:, None] * d
                    for k, s, d, o in zip(kernel, stride, dilation, out)])


@functools.lru_cache(maxsize=256)      # a network asks for the same few geometries at every step
def _gather_table(geometry):
    """vol2col's host table (K3, L), read-only: the flat position in the padded volume of
    tap k of window l."""
    size, pads = geometry[:2]
    _, hp, wp = (n + b + a for n, (b, a) in zip(size, pads))
    td, th, tw = _taps(geometry)
    table = ((td * hp + th) * wp + tw).reshape(math.prod(geometry[2]), math.prod(geometry[5]))
    table.flags.writeable = False
    return table


@functools.lru_cache(maxsize=256)
def _max_pool_tables(geometry):
    """Max pooling's host tables of a geometry (read-only, shared by every call):

    unpadded  (K3, L) flat position d*H*W + h*W + w in the unpadded volume of the cell that
              tap k of window l reads
    start     (L,) flat unpadded position of each window's first cell past the leading
              padding along every axis (where PyTorch's max-pool scan starts)
    empty     (L,) mask of the windows that read no cell, or None (the usual case)
    """
    size, pads, kernel, stride, dilation, out = geometry
    (bd, _), (bh, _), (bw, _) = pads
    td, th, tw = _taps(geometry)
    unpadded = (((td - bd) * size[1] + (th - bh)) * size[2] + (tw - bw)).reshape(math.prod(kernel), -1)
    first = [np.arange(o) * s - b + _first_inbounds(o, s, b, d) * d
             for (b, _), s, d, o in zip(pads, stride, dilation, out)]
    start = ((first[0][:, None, None] * size[1] + first[1][None, :, None]) * size[2]
             + first[2][None, None, :]).reshape(-1)
    beyond = [f >= n for f, n in zip(first, size)]                      # it starts past the volume
    empty = (beyond[0][:, None, None] | beyond[1][None, :, None] | beyond[2][None, None, :]).reshape(-1)
    empty = empty if empty.any() else None
    for a in (unpadded, start, empty):
        if a is not None:
            a.flags.writeable = False
    return unpadded, start, empty


def _vol2col(x, geometry, fill=0):
    """(N, C, D, H, W) -> cols (N, C, K3, L): each window's cells, padding read as ``fill``."""
    xp = get_array_module(x)
    pads = geometry[1]
    n, c = x.shape[:2]
    if any(b or a for b, a in pads):
        x = xp.pad(x, ((0, 0), (0, 0)) + tuple(pads), mode="constant", constant_values=fill)
    table = _table_on(xp, _gather_table, geometry)
    return x.reshape(n, c, math.prod(x.shape[2:]))[:, :, table]


def _col2vol(cols, geometry):
    """vol2col's adjoint: cols (N, C, K3, L) added onto the cells they were read from, then
    the padding cropped off -> (N, C, D, H, W). One strided slice add per tap, as
    kernels.im2col.col2im_reference: no index array, no atomics, and each cell's terms in
    tap order (the order np.add.at would take them: the same sums, bit for bit)."""
    xp = get_array_module(cols)
    size, pads, kernel, stride, dilation, out = geometry
    n, c = cols.shape[:2]
    padded = xp.zeros((n, c) + tuple(s + b + a for s, (b, a) in zip(size, pads)), dtype=cols.dtype)
    cols = cols.reshape((n, c) + kernel + out)                 # a view (also of a broadcast cols)
    for tap in np.ndindex(*kernel):
        window = tuple(slice(t * d, t * d + s * (o - 1) + 1, s) for t, s, d, o in zip(tap, stride, dilation, out))
        padded[(slice(None), slice(None)) + window] += cols[(slice(None), slice(None)) + tap]
    crop = tuple(slice(b, b + s) for s, (b, _) in zip(size, pads))
    return xp.ascontiguousarray(padded[(slice(None), slice(None)) + crop])


class Vol2col(Function):
    """cols = vol2col(x) with zero padding: (N, C, D, H, W) -> (N, C, K3, L).

    Every entry of cols is a copy of one cell of x (or a zero of the padding), so the map
    is linear and dL/dx[cell] = the sum of dL/dcols over the entries copied from that cell:
        dL/dx = col2vol(dL/dcols)
    """

    double_backward = "linear"

    def forward(ctx, x, *, geometry):
        ctx.geometry = geometry
        return _vol2col(x, geometry)

    def backward(ctx, gcols):
        return _col2vol(gcols, ctx.geometry)


class Col2vol(Function):
    """y = col2vol(cols): vol2col's adjoint (linear), so dL/dcols = vol2col(dL/dy)."""

    double_backward = "linear"

    def forward(ctx, cols, *, geometry):
        ctx.geometry = geometry
        return _col2vol(cols, geometry)

    def backward(ctx, gy):
        return _vol2col(gy, ctx.geometry)


# ---------------------------------------------------------------- convolution
class Conv3d(Function):
    """y = conv3d(x, W) + b  with x (N, C, D, H, W), W (C_out, C/G, kd, kh, kw), b (C_out,).

    Forward, with K = C/G*kd*kh*kw and L = Do*Ho*Wo:
        cols = vol2col(x)                        (N, G, K, L)   every window a column
        y[n, g] = W[g] @ cols[n, g]              (C_out/G, K) @ (K, L)
        y += b                                   (then as (N, C_out, Do, Ho, Wo))

    Backward: y is linear in W, in b and in cols, and cols is linear in x, so
        dL/dW[g]       = sum_n gy[n, g] @ cols[n, g]^T     (one tensordot per group)
        dL/db          = sum of gy over n, Do, Ho, Wo
        dL/dcols[n, g] = W[g]^T @ gy[n, g]
        dL/dx          = col2vol(dL/dcols)       (a cell read by several windows gets the sum)
    The op is linear in x and in W separately: ``composite`` restates it with Vol2col and
    a matmul, and autograd differentiates that for create_graph.
    """

    double_backward = "composite"

    def forward(ctx, x, weight, bias=None, *, geometry, groups):
        xp = get_array_module(x)
        n, c, c_out = x.shape[0], x.shape[1], weight.shape[0]
        k = c // groups * math.prod(weight.shape[2:])
        cols = _vol2col(x, geometry)                                            # (N, C, K3, L)
        cols = cols.reshape(n, groups, k, cols.shape[3])                        # channels outermost in K
        w = weight.reshape(groups, c_out // groups, k)
        y = xp.matmul(w[None], cols).reshape((n, c_out) + geometry[5])          # (N, G, C_out/G, L)
        if bias is not None:
            y += bias.reshape(1, c_out, 1, 1, 1)
        ctx.geometry, ctx.groups, ctx.channels = geometry, groups, c
        ctx.has_bias = bias is not None
        ctx.save_for_backward(weight, cols)
        return y

    def composite(ctx, x, weight, bias=None, *, geometry, groups):
        """The forward above in recorded ops: Vol2col, a batched matmul, + b."""
        n, c, c_out = x.shape[0], x.shape[1], weight.shape[0]
        k = c // groups * math.prod(weight.shape[2:])
        cols = Vol2col.apply(x, geometry=geometry)                              # (N, C, K3, L)
        cols = cols.reshape(n, groups, k, cols.shape[3])
        w = weight.reshape(1, groups, c_out // groups, k)
        y = (w @ cols).reshape((n, c_out) + geometry[5])
        return y if bias is None else y + bias.reshape(1, c_out, 1, 1, 1)

    def backward(ctx, gy):
        weight, cols = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad
        xp = get_array_module(gy)
        n, groups, k, length = cols.shape
        c_out = weight.shape[0]
        gy4 = gy.reshape(n, groups, c_out // groups, length)
        gx = gw = gb = None
        if need_b and ctx.has_bias:
            gb = gy.sum(axis=(0, 2, 3, 4))
        if need_w:      # the product sums over the images and the output cells
            gw = xp.stack([xp.tensordot(gy4[:, g], cols[:, g], axes=([0, 2], [0, 2]))
                           for g in range(groups)]).reshape(weight.shape)
        if need_x:
            w = weight.reshape(groups, c_out // groups, k)
            dcols = xp.matmul(w.swapaxes(1, 2)[None], gy4)                      # (N, G, K, L)
            k3 = math.prod(weight.shape[2:])
            gx = _col2vol(dcols.reshape(n, ctx.channels, k3, length), ctx.geometry)
        return gx, gw, gb


class ConvTranspose3d(Function):
    """y = conv_transpose3d(x, W) + b  with x (N, C_in, D, H, W), W (C_in, C_out/G, kd, kh, kw).

    The adjoint of conv3d with the same kernel, stride and dilation: each input cell
    scatters W-weighted copies of itself onto a window of the output. With
    K = C_out/G*kd*kh*kw and x[n, g] as (C_in/G, D*H*W):
        cols[n, g] = W[g]^T @ x[n, g]            (K, C_in/G) @ (C_in/G, D*H*W)
        y = col2vol(cols) + b
    col2vol adds onto the output padded by p before and, after, by what output_padding
    leaves of p (so every input cell's window fits), then crops that padding off.

    Backward is a convolution's forward:
        gcols = vol2col(gy)                      (N, G, K, D*H*W)
        dL/dx[n, g] = W[g] @ gcols[n, g]
        dL/dW[g]    = sum_n x[n, g] @ gcols[n, g]^T     (one tensordot per group)
        dL/db       = sum of gy over n, Do, Ho, Wo
    """

    double_backward = "composite"

    def forward(ctx, x, weight, bias=None, *, geometry, groups):
        xp = get_array_module(x)
        n, c_in = x.shape[:2]
        c_out, k3 = weight.shape[1] * groups, math.prod(weight.shape[2:])
        length = math.prod(x.shape[2:])
        x4 = x.reshape(n, groups, c_in // groups, length)
        w = weight.reshape(groups, c_in // groups, weight.shape[1] * k3)         # (G, C_in/G, K)
        cols = xp.matmul(w.swapaxes(1, 2)[None], x4)                             # (N, G, K, DHW)
        y = _col2vol(cols.reshape(n, c_out, k3, length), geometry)
        if bias is not None:
            y += bias.reshape(1, c_out, 1, 1, 1)
        ctx.geometry, ctx.groups, ctx.has_bias = geometry, groups, bias is not None
        ctx.save_for_backward(x, weight)
        return y

    def composite(ctx, x, weight, bias=None, *, geometry, groups):
        """The forward above in recorded ops: a batched matmul, Col2vol, + b."""
        n, c_in = x.shape[:2]
        c_out, k3 = weight.shape[1] * groups, math.prod(weight.shape[2:])
        length = math.prod(x.shape[2:])
        x4 = x.reshape(n, groups, c_in // groups, length)
        w = weight.reshape(1, groups, c_in // groups, weight.shape[1] * k3)
        cols = (w.swapaxes(-1, -2) @ x4).reshape(n, c_out, k3, length)
        y = Col2vol.apply(cols, geometry=geometry)
        return y if bias is None else y + bias.reshape(1, c_out, 1, 1, 1)

    def backward(ctx, gy):
        x, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad
        xp = get_array_module(gy)
        groups = ctx.groups
        n, c_in = x.shape[:2]
        length = math.prod(x.shape[2:])
        k = weight.shape[1] * math.prod(weight.shape[2:])
        gcols = _vol2col(gy, ctx.geometry).reshape(n, groups, k, length)       # (N, G, K, DHW)
        gx = gw = gb = None
        if need_b and ctx.has_bias:
            gb = gy.sum(axis=(0, 2, 3, 4))
        if need_x:
            w = weight.reshape(groups, c_in // groups, k)
            gx = xp.matmul(w[None], gcols).reshape(x.shape)
        if need_w:
            x4 = x.reshape(n, groups, c_in // groups, length)
            gw = xp.stack([xp.tensordot(x4[:, g], gcols[:, g], axes=([0, 2], [0, 2]))
                           for g in range(groups)]).reshape(weight.shape)
        return gx, gw, gb


# ---------------------------------------------------------------- convolution: argument checks
def _check_weight(op, input, weight, bias, layout):
    check_same_kind(op, input, ("weight", weight), ("bias", bias))
    if weight.ndim != 5:
        raise RuntimeError(f"{op}: expected a 5-D weight ({layout}, kD, kH, kW), got shape {tuple(weight.shape)}")
    _check_input(op, input, 3)


def conv3d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """3-D convolution (cross-correlation) as ``torch.nn.functional.conv3d``.

    input (N, C, D, H, W) or unbatched (C, D, H, W); weight (C_out, C/groups, kd, kh, kw);
    bias (C_out,) or None; stride, dilation: int or triple; padding: int, triple,
    'valid' or 'same' (stride 1; an even kernel pads one more at the back/bottom/right).
    """
    op = "conv3d"
    _check_weight(op, input, weight, bias, "out_channels, in_channels/groups")
    if input.ndim == 4:        # unbatched (C, D, H, W): a batch of one
        out = conv3d(input.reshape((1,) + input.shape), weight, bias, stride, padding, dilation, groups)
        return out.reshape(out.shape[1:])
    c_out, c_per_group = weight.shape[:2]
    kernel = tuple(weight.shape[2:])
    _check_groups(op, groups, c_per_group * groups, c_out)
    if input.shape[1] != c_per_group * groups:
        raise RuntimeError(f"{op}: expected input with {c_per_group * groups} channels "
                           f"(weight of shape {tuple(weight.shape)}, groups={groups}), "
                           f"got input of shape {input.shape}")
    _check_bias(op, None if bias is None else bias.shape, c_out)
    stride, dilation = ntuple(stride, 3, "stride", op), ntuple(dilation, 3, "dilation", op)
    _check_positive(stride, "stride", op)
    _check_positive(dilation, "dilation", op)
    flat = _conv_padding(padding, kernel, stride, dilation, op)           # (front, back, top, ...)
    pads = tuple(zip(flat[::2], flat[1::2]))
    size = tuple(input.shape[2:])
    out = tuple((n + b + a - d * (k - 1) - 1) // s + 1
                for n, (b, a), k, s, d in zip(size, pads, kernel, stride, dilation))
    if min(out) < 1:
        raise RuntimeError(f"{op}: input of shape {input.shape} padded by ((front, back), (top, bottom), "
                           f"(left, right))={pads} is smaller than the kernel {kernel} dilated by {dilation}: "
                           "the output would be empty")
    return Conv3d.apply(input, weight, bias, geometry=(size, pads, kernel, stride, dilation, out), groups=groups)


def conv_transpose3d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """3-D transposed convolution as ``torch.nn.functional.conv_transpose3d``.

    input (N, C_in, D, H, W) or (C_in, D, H, W); weight (C_in, C_out/groups, kd, kh, kw).
    Output size Do = (D - 1)*stride - 2*padding + dilation*(kd - 1) + output_padding + 1;
    output_padding (< stride or < dilation) picks one of the input sizes that a strided
    convolution maps onto the same output size.
    """
    op = "conv_transpose3d"
    _check_weight(op, input, weight, bias, "in_channels, out_channels/groups")
    if input.ndim == 4:
        out = conv_transpose3d(input.reshape((1,) + input.shape), weight, bias, stride, padding,
                               output_padding, groups, dilation)
        return out.reshape(out.shape[1:])
    kernel = tuple(weight.shape[2:])
    stride, pad, out_pad, dilation, out = _transpose_arguments(op, input, weight, bias, stride, padding,
                                                               output_padding, groups, dilation)
    size = tuple(input.shape[2:])
    # The input cells' windows cover (n - 1)*s + d*(k - 1) + 1 cells from the output's
    # position -p on: the output is padded by p before and by what remains after.
    pads = tuple((p, max(p - o, 0)) for p, o in zip(pad, out_pad))
    return ConvTranspose3d.apply(input, weight, bias, geometry=(out, pads, kernel, stride, dilation, size),
                                 groups=groups)


# ---------------------------------------------------------------- pooling: argument checks
def _pool3d_geometry(op, input, kernel_size, stride, padding, dilation, ceil_mode):
    """Checks a 3-D pooling's arguments (ops/pool.py's rules); returns its geometry (the
    windows, with ceil_mode's overhang as extra padding at the back)."""
    kernel, stride, padding, dilation = _pool_args(op, input, kernel_size, stride, padding, dilation, ceil_mode,
                                                   dims=3)
    size = tuple(input.shape[-3:])
    out = tuple(pool_output_size(n, k, s, p, p, d, ceil_mode)
                for n, k, s, p, d in zip(size, kernel, stride, padding, dilation))
    # ceil_mode's last window may run past the padding at the back: pad that far too
    pads = tuple((p, max(p, (o - 1) * s + d * (k - 1) + 1 - n - p))
                 for n, k, s, p, d, o in zip(size, kernel, stride, padding, dilation, out))
    return size, pads, kernel, stride, dilation, out


# ---------------------------------------------------------------- max pooling
def _argmax_as_torch(cols, axis):
    """The tap PyTorch's scan picks along ``axis``: the first maximum, but the last NaN."""
    xp = get_array_module(cols)
    tap = cols.argmax(axis=axis)
    if cols.dtype.kind == "f":
        is_nan = xp.isnan(cols)
        if xp is not np or is_nan.any():    # a GPU always takes the where: asking "any NaN?" would sync
            last = cols.shape[axis] - 1 - xp.flip(is_nan, axis=axis).argmax(axis=axis)
            tap = xp.where(is_nan.any(axis=axis), last, tap)
    return tap


class _ScatterToVolumes(Function):
    """y[p].flat[index[p, j]] += x[p, j] per volume p (zeros elsewhere): the adjoint of
    max pooling with its switches fixed, and so max pooling's backward.

    Linear in x: its backward gathers, dL/dx[p, j] = dL/dy[p].flat[index[p, j]], and
    create_graph differentiates a max pool's backward through it. MaxUnpool3d is the same
    map with a write in place of the add."""

    double_backward = "linear"
    accumulate = True

    def forward(ctx, x, index, *, shape):
        xp = get_array_module(x)
        ctx.where, ctx.x_shape = _global_cells(xp, index, shape), x.shape
        y = xp.zeros(math.prod(shape), dtype=x.dtype)
        if ctx.accumulate:
            scatter_add(y, ctx.where, x.reshape(-1))
        else:
            y[ctx.where] = x.reshape(-1)
        return y.reshape(shape)

    def backward(ctx, gy):
        return gy.reshape(-1)[ctx.where].reshape(ctx.x_shape), None


def _global_cells(xp, index, shape):
    """Per-volume flat indices (..., Do, Ho, Wo) into volumes of ``shape`` (..., D, H, W) ->
    flat positions in the whole array (a 1-D int64 array)."""
    volume = math.prod(shape[-3:])
    volumes = math.prod(shape[:-3])
    index = index.reshape(volumes, index.size // max(volumes, 1))
    return (xp.arange(volumes, dtype=np.int64)[:, None] * volume + index).reshape(-1)


class MaxPool3d(Function):
    """y = max over each window, and PyTorch's indices of the maxima.

    Forward:
        cols = vol2col(x, padded with -inf)      (N, C, K3, L)   (an integer dtype: its minimum)
        t = argmax over K3 (PyTorch's scan rules), y = cols[t]
        index = d*H*W + h*W + w of the chosen cell (a table lookup per (t, window))
    Backward: only the chosen cell of each window influenced y, with slope 1:
        dL/dx.flat[index] += gy    per volume (a cell that won several overlapping
                                   windows gets the sum; a window that read no cell: none)
    The backward is linear in gy and reads no x: with create_graph it runs as
    _ScatterToVolumes, whose backward is a gather at the indices.
    """
    non_differentiable_outputs = (1,)

    double_backward = "operators"

    def forward(ctx, x, *, geometry):
        xp = get_array_module(x)
        x5 = _ncdhw(x)
        n, c = x5.shape[:2]
        bottom = lowest(x.dtype)
        cols = _vol2col(x5, geometry, bottom)                                   # (N, C, K3, L)
        tap = _argmax_as_torch(cols, 2)                                         # (N, C, L)
        y = xp.take_along_axis(cols, tap[:, :, None], axis=2)[:, :, 0]
        unpadded, start, empty = _table_on(xp, _max_pool_tables, geometry)
        index = unpadded[tap, xp.arange(tap.shape[-1])]
        # nothing beat the initial -inf (a padding cell may tie): PyTorch's starting cell
        index = xp.where(y == bottom, start, index).astype(np.int64)
        shape = x.shape[:-3] + geometry[5]
        ctx.x_shape, ctx.empty = x.shape, None
        saved = index
        if empty is not None:       # those windows point outside their volume: no gradient
            ctx.empty = empty.reshape(geometry[5])
            saved = xp.where(ctx.empty, 0, index.reshape(shape))
        ctx.save_for_backward(saved.reshape(shape))
        return y.reshape(shape), index.reshape(shape)

    def backward(ctx, gy, _gindex):
        return _max_pool3d_grad(ctx, gy)


def _max_pool3d_grad(ctx, gy):
    """dL/dx of a 3-D max pooling: gy added at the saved indices, per volume (a recorded op
    when gy is a Tensor, for create_graph). Unlike ops/pool.py's _scatter_to_maxima, it
    finds the empty windows' indices already at cell 0, and scatters in plain array code
    (no 2-D kernel)."""
    index, = ctx.saved_tensors
    index = raw(index)
    if ctx.empty is not None:
        gy = gy * get_array_module(index).asarray(~ctx.empty, dtype=gy.dtype)
    if isinstance(gy, Tensor):
        return _ScatterToVolumes.apply(gy, index, shape=ctx.x_shape)
    return _ScatterToVolumes().forward(gy, index, shape=ctx.x_shape)


def max_pool3d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """3-D max pooling as ``torch.nn.functional.max_pool3d``; with ``return_indices`` also
    the flat per-volume positions (d*H*W + h*W + w) of the maxima (for max_unpool3d).
    Integer tensors too: padding then counts as the dtype's minimum."""
    op = "max_pool3d"
    _check_orderable(op, input)
    geometry = _pool3d_geometry(op, input, kernel_size, stride, padding, dilation, ceil_mode)
    y, index = MaxPool3d.apply(input, geometry=geometry)
    return (y, index) if return_indices else y


# ---------------------------------------------------------------- average pooling
@functools.lru_cache(maxsize=256)
def _avg_divisors(geometry, padding, count_include_pad, divisor_override, dtype):
    """(L,) divisor of every window in ``dtype``, PyTorch's way (kernels.pool._window_counts
    per axis): cells of the requested padding count when count_include_pad, ceil_mode's
    overhang never does; divisor_override replaces it."""
    size, _, kernel, stride, _, out = geometry
    if divisor_override is not None:
        div = np.full(math.prod(out), float(divisor_override))
    else:
        counts = [_window_counts(n, o, k, s, p, p)[0 if count_include_pad else 1]
                  for n, k, s, p, o in zip(size, kernel, stride, padding, out)]
        div = (counts[0][:, None, None] * counts[1][None, :, None] * counts[2][None, None, :]).reshape(-1)
    div = div.astype(dtype)
    div.flags.writeable = False
    return div


class AvgPool3d(Function):
    """y = sum over each window / divisor: a linear map, so its backward is its transpose.

    Forward:  cols = vol2col(x, zero padded);  y = cols.sum(over K3) / divisor
    Backward: every cell of a window contributed 1/divisor of its output:
              dL/dcols = (gy / divisor) repeated over K3;  dL/dx = col2vol(dL/dcols)
    """

    double_backward = "linear"

    def forward(ctx, x, *, geometry, divisor):
        xp = get_array_module(x)
        ctx.geometry, ctx.divisor, ctx.x_shape = geometry, divisor, x.shape
        cols = _vol2col(_ncdhw(x), geometry)                                    # (N, C, K3, L)
        div = _table_on(xp, _avg_divisors, *divisor, x.dtype if x.dtype.kind == "f" else np.dtype(np.float64))
        y = (cols.sum(axis=2) / div).astype(x.dtype, copy=False)   # an integer input truncates, as PyTorch
        return y.reshape(x.shape[:-3] + geometry[5])

    def backward(ctx, gy):
        xp = get_array_module(gy)
        g = _ncdhw(gy)
        k3, length = math.prod(ctx.geometry[2]), math.prod(ctx.geometry[5])    # (explicit: a batch may be empty)
        g = g.reshape(g.shape[:2] + (1, length)) / _table_on(xp, _avg_divisors, *ctx.divisor, gy.dtype)
        cols = xp.broadcast_to(g, g.shape[:2] + (k3, length))
        return _col2vol(cols, ctx.geometry).reshape(ctx.x_shape)


def avg_pool3d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """3-D average pooling as ``torch.nn.functional.avg_pool3d``."""
    op = "avg_pool3d"
    geometry = _pool3d_geometry(op, input, kernel_size, stride, padding, 1, ceil_mode)
    if divisor_override is not None and divisor_override == 0:
        raise ValueError(f"{op}: divisor must be not zero")
    padding = tuple(b for b, _ in geometry[1])
    divisor = (geometry, padding, bool(count_include_pad), divisor_override)
    return AvgPool3d.apply(input, geometry=geometry, divisor=divisor)


# ---------------------------------------------------------------- adaptive pooling
def _adaptive_size(op, input, output_size):
    """ops/pool.py's checks of an adaptive pooling, in 3-D; floating inputs only (as PyTorch)."""
    out = _adaptive_output(op, input, output_size, dims=3)
    if input.dtype.kind != "f":
        raise RuntimeError(f"{op}: not implemented for {input.dtype} tensors (shape {tuple(input.shape)}); "
                           "pool a floating tensor")
    return out


class AdaptiveAvgPool3d(Function):
    """Average over PyTorch's adaptive bins, one small matrix product per axis.

    With A_d (Do, D), A_h (Ho, H), A_w (Wo, W) the bin-averaging matrices (row i holds
    1/len(bin i) on bin i), each volume X maps to
        Y[a, b, c] = sum_{d, h, w} A_d[a, d] A_h[b, h] A_w[c, w] X[d, h, w]
    linear in X, so dL/dX is the same product with the transposed matrices:
        dL/dX[d, h, w] = sum_{a, b, c} A_d[a, d] A_h[b, h] A_w[c, w] dL/dY[a, b, c]
    """

    double_backward = "linear"

    def forward(ctx, x, *, out):
        xp = get_array_module(x)
        ctx.x_shape = x.shape
        ctx.mats = [_table_on(xp, _bin_average_matrix, np, x.dtype, n, o) for n, o in zip(x.shape[-3:], out)]
        return _along_axes(x, ctx.mats)

    def backward(ctx, gy):
        return _along_axes(gy, [a.T for a in ctx.mats])


def _along_axes(x, mats):
    """x (..., D, H, W) with the matrices (Do, D), (Ho, H), (Wo, W) applied along its last
    three axes: W first (x @ A_w^T), then H (A_h @ .), then D on (D, Ho*Wo) slabs."""
    a_d, a_h, a_w = mats
    y = a_h @ (x @ a_w.T)                                                       # (..., D, Ho, Wo)
    lead, (d, ho, wo) = y.shape[:-3], y.shape[-3:]
    return (a_d @ y.reshape(lead + (d, ho * wo))).reshape(lead + (a_d.shape[0], ho, wo))


def adaptive_avg_pool3d(input, output_size):
    """As ``torch.nn.functional.adaptive_avg_pool3d``; ``output_size`` an int or a triple
    (None keeps that axis)."""
    out = _adaptive_size("adaptive_avg_pool3d", input, output_size)
    return AdaptiveAvgPool3d.apply(input, out=out)


@functools.lru_cache(maxsize=256)
def _bin_cells(size, out):
    """(K3, L) flat cell d*H*W + h*W + w of tap k of bin l: the three axes' bin taps
    (ops/pool.py's _bin_taps), outer-combined."""
    taps = [_bin_taps(np, n, o).T for n, o in zip(size, out)]                  # (k_a, o_a)
    sd, sh, sw = _spread(taps)                                                # (kd, kh, kw, Do, Ho, Wo)
    cells = ((sd * size[1] + sh) * size[2] + sw).reshape(-1, math.prod(out))
    cells.flags.writeable = False
    return cells


class AdaptiveMaxPool3d(Function):
    """Max over PyTorch's adaptive bins, with its flat per-volume indices.

    Forward: each bin's cells are gathered (the taps of the three axes, outer-combined)
    into windows (P, Do, Ho, Wo, kd*kh*kw); y = max over the window, index =
    d*H*W + h*W + w of the winner (PyTorch's scan rules).
    Backward: each output's gradient goes to its winning cell; bins may overlap, so two
    outputs can pick the same cell: scatter-ADD, dL/dx.flat[index] += gy per volume.
    """
    non_differentiable_outputs = (1,)

    double_backward = "operators"

    def forward(ctx, x, *, out):
        xp = get_array_module(x)
        size = x.shape[-3:]
        volumes = x.reshape((-1,) + size)
        cells = _table_on(xp, _bin_cells, size, tuple(out))                    # (K3, L)
        windows = volumes.reshape(volumes.shape[0], math.prod(size))[:, cells]  # (P, K3, L)
        tap = _argmax_as_torch(windows, 1)
        y = xp.take_along_axis(windows, tap[:, None], axis=1)[:, 0]
        index = cells[tap, xp.arange(cells.shape[1])].astype(np.int64)
        shape = x.shape[:-3] + tuple(out)
        ctx.x_shape, ctx.empty = x.shape, None          # every bin holds a cell
        ctx.save_for_backward(index.reshape(shape))
        return y.reshape(shape), index.reshape(shape)

    def backward(ctx, gy, _gindex):
        return _max_pool3d_grad(ctx, gy)


def adaptive_max_pool3d(input, output_size, return_indices=False):
    """As ``torch.nn.functional.adaptive_max_pool3d`` (indices: flat d*H*W + h*W + w per volume)."""
    out = _adaptive_size("adaptive_max_pool3d", input, output_size)
    y, index = AdaptiveMaxPool3d.apply(input, out=out)
    return (y, index) if return_indices else y


# (values, indices) whatever ``return_indices`` says, as PyTorch's aliases (ops/pool.py has the 1-D/2-D ones)
def max_pool3d_with_indices(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                            return_indices=False):
    return max_pool3d(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices=True)


def adaptive_max_pool3d_with_indices(input, output_size, return_indices=False):
    return adaptive_max_pool3d(input, output_size, return_indices=True)


# ---------------------------------------------------------------- max unpooling
class MaxUnpool3d(_ScatterToVolumes):
    """The partial inverse of max pooling: y is zero except y[p].flat[index[p, j]] = x[p, j].

    Forward: out = zeros; out.flat[cell of (p, j)] = x[p, j]   (a write, not an add)
    Backward: y took x[p, j] at one cell, so dL/dx[p, j] = dL/dy[p].flat[index[p, j]] (a
    gather). Overlapping pooling windows that chose the same cell wrote the same value
    there twice, and both inputs receive its gradient, as in PyTorch.
    (_ScatterToVolumes' forward and backward, with a write.)
    """

    accumulate = False


def max_unpool3d(input, indices, kernel_size, stride=None, padding=0, output_size=None):
    """As ``torch.nn.functional.max_unpool3d``: default output size
    (D - 1)*stride - 2*padding + kernel_size per axis; ``output_size`` (D, H, W) or the
    full shape picks another within one stride of it."""
    op = "max_unpool3d"
    kernel, stride, padding, out = _unpool_args(op, input, indices, kernel_size, stride, padding, output_size, dims=3)
    if min(out) < 1:
        raise RuntimeError(f"{op}: input of shape {input.shape} with kernel_size={kernel}, stride={stride}, "
                           f"padding={padding} gives an empty output {out}")
    _check_unpool_indices(op, indices, out)
    return MaxUnpool3d.apply(input, indices.array, shape=input.shape[:-3] + out)
