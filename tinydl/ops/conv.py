"""Convolution: conv2d, conv_transpose2d (and their 1-D forms), by im2col + GEMM
(and, on the CPU, by direct kernels for stride-1 layers with few channels).

Convolution as a matrix product
-------------------------------
A 2-D convolution (cross-correlation, as in every DL library) of x (N, C, H, W)
with W (C_out, C, kh, kw) computes, for each output pixel, a dot product of the
weights with the (C, kh, kw) patch of the input under the window. ``im2col``
copies every patch into one column of a matrix::

    cols = im2col(x)              (K, N*L)      K = C*kh*kw (channel outermost), L = Ho*Wo
    y2   = W2 @ cols              (C_out, K) @ (K, N*L) = (C_out, N*L)
    y    = y2 as (C_out, N, Ho, Wo), first two axes swapped

with W2 = W.reshape(C_out, K). One GEMM does all the arithmetic for the whole
batch; im2col only moves data. ``col2im`` is im2col's adjoint: it adds every
column entry back onto the input pixel it was copied from (a pixel under
several windows gets the sum).

Groups split the channels into G independent convolutions: input channels
[g*C/G, (g+1)*C/G) meet only output channels [g*C_out/G, (g+1)*C_out/G); the
weight is (C_out, C/G, kh, kw). Because im2col puts the channel outermost in K,
group g's rows of ``cols`` are one contiguous block, so the G products are one
batched matmul over a (G, K/G, N*L) view. Depthwise convolution is groups = C
(each channel filtered on its own).

On the CPU, stride-1 convolutions with at most _DIRECT_MAX_CHANNELS output
channels per group (depthwise ones included) skip the columns:
kernels/direct_conv.py multiplies straight from the padded input, forward and
backward (OpenBLAS is slow on products with so few rows, and the columns cost
as much again to write and read).

The transposed convolution ("deconvolution") is the adjoint of a convolution:
its forward is a convolution's input-gradient (GEMM, then col2im) and its
backward is a convolution's forward (im2col, then GEMM). Both ops use the one
im2col/col2im pair of ``tinydl.kernels.im2col``.

Output size along one axis (PyTorch's formula):
    conv:            Ho = floor((H + p_before + p_after - d*(k-1) - 1) / s) + 1
    conv_transpose:  Ho = (H - 1)*s - 2p + d*(k-1) + output_padding + 1
"""
import math
import numbers
import threading

import numpy as np

from ..autograd import Function, is_grad_enabled
from ..backend import get_array_module
from ..kernels import chunk_workers, col2im, conv_output_size, im2col, run_chunks, use_numba, worker_key, workspace
from ..kernels.direct_conv import conv2d_direct, conv2d_direct_weight_grad
from ..tensor import Tensor

__all__ = ["conv1d", "conv2d", "conv_transpose1d", "conv_transpose2d"]


# ---------------------------------------------------------------- argument parsing
def _ntuple(value, n, name, op):
    """An int or a sequence of n ints (or of 1, repeated) -> tuple of n Python ints."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return (int(value),) * n
    try:
        values = tuple(value)
    except TypeError:
        raise TypeError(f"{op}: {name} must be an int or a tuple of {n} ints, got {value!r}") from None
    if len(values) == 1:
        values = values * n
    if len(values) != n or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in values):
        raise ValueError(f"{op}: {name} must be an int or a tuple of {n} ints, got {value!r}")
    return tuple(int(v) for v in values)


def _pair(value, name="argument", op="conv2d"):
    return _ntuple(value, 2, name, op)


def _check_positive(values, name, op):
    if any(v <= 0 for v in values):
        raise ValueError(f"{op}: {name} must be positive, got {values}")


def _conv_padding(padding, kernel, stride, dilation, op):
    """PyTorch's padding argument -> (top, bottom, left, right).

    'valid' is no padding. 'same' pads so that Ho = H (stride 1 only): the
    dilated kernel overhangs by d*(k-1) in total, split as left = total // 2 and
    right = the rest, so an even kernel gets its extra pixel on the right/bottom,
    as in PyTorch (and TensorFlow's 'SAME').
    """
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0, 0, 0)
        if padding == "same":
            if any(s != 1 for s in stride):
                raise ValueError(f"{op}: padding='same' is not supported for strided convolutions "
                                 f"(stride={stride})")
            pads = []
            for k, d in zip(kernel, dilation):
                total = d * (k - 1)
                pads += [total // 2, total - total // 2]
            return tuple(pads)
        raise ValueError(f"{op}: invalid padding string {padding!r}, should be one of {{'valid', 'same'}}")
    ph, pw = _pair(padding, "padding", op)
    if ph < 0 or pw < 0:
        raise ValueError(f"{op}: negative padding is not supported, got {(ph, pw)}")
    return (ph, ph, pw, pw)


def _check_same_kind(op, input, *others):
    """Tensors of one dtype and device (PyTorch refuses float32 input with a float64 weight)."""
    for name, t in others:
        if t is None:
            continue
        if not isinstance(t, Tensor):
            raise TypeError(f"{op}: {name} must be a Tensor, got {type(t).__name__}")
        if t.dtype != input.dtype:
            raise RuntimeError(f"{op}: input type ({input.dtype}) and {name} type ({t.dtype}) should be the same")
        if t.device != input.device:
            raise RuntimeError(f"{op}: input is on {input.device} but {name} is on {t.device}")


def _check_groups(op, groups, in_channels, out_channels):
    if not isinstance(groups, numbers.Integral) or groups < 1:
        raise ValueError(f"{op}: groups must be a positive integer, got {groups!r}")
    if out_channels % groups:
        raise RuntimeError(f"{op}: groups={groups} does not divide the {out_channels} output channels")
    if in_channels % groups:
        raise RuntimeError(f"{op}: groups={groups} does not divide the {in_channels} input channels")


def _check_bias(op, bias, out_channels):
    if bias is not None and tuple(bias.shape) != (out_channels,):
        raise RuntimeError(f"{op}: expected bias of shape ({out_channels},), got {tuple(bias.shape)}")


# ---------------------------------------------------------------- the GEMM side
# Layout of the kernels (tinydl/kernels/im2col.py): cols is (K, N*L) with
# K = C*kh*kw (channel outermost) and L = Ho*Wo, columns batch-major. So a
# convolution is ONE matrix product per group for a batch of images:
#     y2 (C_out, N*L) = W2 (C_out, K) @ cols (K, N*L)
# and y2 only needs its first two axes swapped to become (N, C_out, Ho, Wo).
#
# Speed and memory on the CPU (measured on ResNet-20 / the benchmark shapes):
#  * The batch is processed in chunks of images whose columns take about
#    _CHUNK_BYTES: what im2col writes is still in the L3 cache when the GEMM
#    reads it, and in the backward pass dcols is still in cache when col2im
#    folds it (25-35% faster than one pass over a 75 MB dcols). Chunking also
#    bounds the scratch memory whatever the batch and image size.
#  * Temporaries that live only during one call (a chunk's product before its
#    transpose, dcols) go to reusable ``workspace`` buffers: a fresh 10-100 MB
#    array costs page faults on every call.
#  * The forward's columns are needed again for dL/dW. Up to _SAVE_LIMIT per
#    layer they are kept (saves rebuilding them: ~17% of a ResNet-20 step), in
#    buffers from a pool that ``release`` refills once backward is done, so the
#    next step reuses them without page faults; bigger layers (VGG on 224x224
#    images) rebuild their columns from x in backward instead of holding GBs.
#    Stride-1 layers such as ResNet's 3x3 ones keep none: their backward works
#    from the columns of gy instead (see _gy_columns_route).
#  * Orientation: with OpenBLAS the products as written here are the fastest we
#    found for ResNet-20's layers (C_out 16/32/64, 1 thread, CPU-time medians):
#    y^T = cols^T @ W^T (the long N*L axis as the GEMM's rows) costs 1.1-1.5x;
#    one matmul per image written straight into y (N, C_out, L), which skips
#    the transposition copy, costs 0.96-1.05x (the copy is ~1% of a step);
#    per-image products in backward cost 1.0-1.3x; dW^T = cols @ gy2^T ties.
#    Chunks of 2-64 MB tie too on one thread (1 MB is 5-35% slower).
#  * The chunks run on all cores at once, each on one thread with serial
#    kernels (kernels/_threads.py: run_chunks), rather than one after the
#    other with parallel kernels: a ResNet-20 step 15-22% faster on 2 cores.
#    Each worker has its own scratch buffers (worker_key) and its own partial
#    dL/dW, added up at the end. With two workers, 4 MB chunks did best
#    (ResNet-20 step medians 643-697 ms, against 688-704 for 8 MB).
# On the GPU the whole batch is one chunk and CuPy's memory pool does the reuse.

_CHUNK_BYTES = 4 << 20
_SAVE_LIMIT = 256 << 20


def _batch_chunks(xp, n, bytes_per_image):
    """Slices of the batch, each with at most ``_CHUNK_BYTES`` of columns (at least one
    image), of near-equal sizes and, where the batch allows, as many for every worker
    of run_chunks (64 images in chunks of 53 and 11 would leave one core idle).
    Columns of half a chunk or more are split among the workers even when they
    would fit in one chunk: LeNet's second convolution (3.8 MB of columns at batch
    64) took 1.1-1.5 ms in two chunks on the workers, 1.5-2.1 ms in one."""
    if xp is not np or n == 0:
        return [slice(0, n)]
    per_chunk = max(1, min(n, _CHUNK_BYTES // max(bytes_per_image, 1)))
    count = -(-n // per_chunk)
    if count == 1 and n * bytes_per_image < _CHUNK_BYTES // 2:
        return [slice(0, n)]
    workers = chunk_workers(n)
    count = min(n, -(-count // workers) * workers)
    bounds = [i * n // count for i in range(count + 1)]
    return [slice(a, b) for a, b in zip(bounds, bounds[1:])]


class _BufferPool:
    """Arrays handed back after use, handed out again for the same size and dtype
    (at most ``limit`` bytes are kept waiting; the rest is left to the garbage collector)."""

    def __init__(self, limit=1 << 30):
        self.free, self.bytes, self.limit = {}, 0, limit
        self.lock = threading.Lock()                 # the chunk workers take buffers concurrently

    def take(self, shape, dtype):
        shape, dtype = tuple(shape), np.dtype(dtype)
        with self.lock:
            waiting = self.free.get((math.prod(shape), dtype))
            if waiting:
                a = waiting.pop()
                self.bytes -= a.nbytes
                return a.reshape(shape)
        return np.empty(shape, dtype=dtype)

    def give(self, a):
        with self.lock:
            if self.bytes + a.nbytes <= self.limit:
                self.free.setdefault((a.size, a.dtype), []).append(a.reshape(-1))
                self.bytes += a.nbytes


_saved_columns = _BufferPool()


def _grouped(a, groups):
    """(G*M, P) -> (G, M, P): a free view; group g's rows are one contiguous block."""
    return a.reshape(groups, a.shape[0] // groups, a.shape[1])


def _gemm(a, b, out=None):
    """Batched over groups: (G, M, K) @ (G, K, P) -> (G, M, P); a plain 2-D GEMM when G = 1."""
    xp = get_array_module(a)
    if a.shape[0] == 1:
        return xp.matmul(a[0], b[0], out=None if out is None else out[0])[None]
    return xp.matmul(a, b, out=out)


def _scratch(xp, shape, dtype, key):
    """A reusable buffer on the CPU (see kernels.workspace); a fresh array on the GPU.
    Valid until the next request with the same key: never saved for backward."""
    if xp is np:
        return workspace(shape, dtype, key)
    return xp.empty(shape, dtype=dtype)


def _channels_first(x, key):
    """(N, C, H, W) -> (C, N*H*W) copied into a scratch buffer: the layout of cols' columns."""
    xp = get_array_module(x)
    n, c, h, w = x.shape
    out = _scratch(xp, (c, n, h * w), x.dtype, key)
    out[...] = x.reshape(n, c, h * w).transpose(1, 0, 2)
    return out.reshape(c, n * h * w)


def _batch_first(y2, out, bias=None):
    """Write y2 (C, N*L) into ``out`` (N, C, ...) swapping the first two axes,
    after adding the bias (C,) to y2 in place (y2 is scratch). Adding it during
    the transposing copy took twice as long: NumPy's add is slow with a
    broadcast operand in a 3-D loop."""
    n, c = out.shape[:2]
    if bias is not None:
        y2 += bias.reshape(c, 1)
    out.reshape(n, c, -1)[...] = y2.reshape(c, n, -1).transpose(1, 0, 2)
    return out


def _convolve(x, weight, bias, stride, padding, dilation, groups, keep_columns, with_columns=None):
    """y = conv2d(x, weight) + bias by im2col and one GEMM per group, a chunk of
    images at a time, the chunks spread over the cores (see the notes above).
    Returns y and, when ``keep_columns``, the chunks' columns (from
    ``_saved_columns``, for dL/dW in backward). ``with_columns(cols, s, worker)``,
    if given, is called with each chunk's columns while they are still in cache."""
    xp = get_array_module(x)
    n = x.shape[0]
    c_out, _, kh, kw = weight.shape
    ho, wo = conv_output_size(x.shape[2:], (kh, kw), stride, padding, dilation)
    k, l = x.shape[1] * kh * kw, ho * wo
    w3 = weight.reshape(groups, c_out // groups, -1)                       # (G, C_out/G, K/G)
    y = xp.empty((n, c_out, ho, wo), dtype=x.dtype)
    chunks = _batch_chunks(xp, n, k * l * x.itemsize)
    columns = [None] * len(chunks) if keep_columns else []

    def convolve_chunk(chunk, worker):
        i, s = chunk
        shape = (k, (s.stop - s.start) * l)
        if not keep_columns:
            out = _scratch(xp, shape, x.dtype, worker_key("conv2d.cols", worker))
        elif xp is np:
            out = _saved_columns.take(shape, x.dtype)
        else:
            out = None                                                     # CuPy's pool allocates
        cols = im2col(x[s], (kh, kw), stride, padding, dilation, out=out)  # (K, m*L)
        y2 = _gemm(w3, _grouped(cols, groups),
                   out=_scratch(xp, (groups, c_out // groups, shape[1]), x.dtype, worker_key("conv2d.y", worker)))
        _batch_first(y2.reshape(c_out, -1), y[s], bias)
        if keep_columns:
            columns[i] = cols
        if with_columns is not None:
            with_columns(cols, s, worker)

    run_chunks(convolve_chunk, list(enumerate(chunks)))
    return y, columns


def _add_up(parts, xp, shape, dtype):
    """The sum of the workers' partial results (a dict worker -> array); zeros if none."""
    total = xp.zeros(shape, dtype=dtype)
    for part in parts.values():
        total += part.reshape(shape)
    return total


def _accumulate(parts, worker, value):
    """parts[worker] += value; ``value`` is a fresh product, so the first one is kept as is."""
    if worker in parts:
        parts[worker] += value
    else:
        parts[worker] = value


# Stride-1, one-group convolutions have a second backward route
# (Conv2d._backward_from_gy_columns): both gradients from the columns of gy,
# so the forward keeps no columns. It is taken on the CPU when gy's columns
# are no bigger than x's (C_out*H*W <= C*Ho*Wo: ResNet's and VGG's 3x3 "same"
# layers, not LeNet's unpadded 5x5 ones, where they are 5x bigger). It skips
# the usual route's weak spots: the dcols = W^T @ gy product with an inner
# dimension of only C_out (OpenBLAS runs K = 16 at half its usual speed), the
# dcols matrix that col2im reads back, and the columns kept for dL/dW, written
# to and read back from cold memory. Measured fwd+bwd, 2 cores (medians):
# ResNet-20's 128x16x32x32 layers 45 -> 41 ms, 128x32x16x16 and 128x64x8x8 tie,
# 16x64x56x56 116 -> 109 ms, 16x256x14x14 ties; peak RSS of a ResNet-20
# step (batch 128) 1,271 -> 576 MB.
_GY_COLUMNS_MAX_RATIO = 1.0


def _full_padding_fits(padding, kernel, dilation):
    """Is the padding no wider than the dilated kernel? Then gy padded to the "full"
    size (dilation*(k-1) - padding on each side) is never cropped."""
    pt, pb, pl, pr = padding
    return max(pt, pb) <= dilation[0] * (kernel[0] - 1) and max(pl, pr) <= dilation[1] * (kernel[1] - 1)


def _gy_columns_route(xp, x_shape, weight_shape, stride, padding, dilation, groups, needs_input_grad):
    c_out, c, kh, kw = weight_shape
    if not (xp is np and needs_input_grad and groups == 1 and stride == (1, 1)
            and _full_padding_fits(padding, (kh, kw), dilation)):
        return False
    ho, wo = conv_output_size(x_shape[2:], (kh, kw), stride, padding, dilation)
    return c_out * x_shape[2] * x_shape[3] <= _GY_COLUMNS_MAX_RATIO * c * ho * wo


# Stride-1 convolutions with few output channels per group run as direct
# convolutions on the CPU (kernels/direct_conv.py), forward and backward: OpenBLAS
# is slow on products with so few rows, and the columns cost as much again to
# write and read. The backward's dL/dx is the "full" convolution of gy derived in
# Conv2d's docstring, so it takes the direct kernel too when C/groups (its output
# channels per group) is small and the padding is no wider than the dilated kernel.
# Measured fwd+bwd against the im2col routes, 2 cores, best times: 1->6 5x5 32x32
# N64 2.7 -> 1.7 ms; 16->16 3x3 32x32 N64 13.7 -> 11.5 ms; 3->16 32x32 N128 10.9
# -> 6.4 ms; LeNet-5 step 9.6 -> 6.9 ms; ResNet-20 step 491 -> 453 ms. Depthwise
# 3x3 (N16; 32x112x112, 128x56x56, 512x14x14): 4.8-5.3x PyTorch's time forward
# and 4.9-7.5x fwd+bwd -> 0.73-1.01x and 0.62-1.29x. ResNet-20's 32->32 layers
# (16x16, N128) on one thread (CPU time, medians) 55 -> 37 ms, its step 966 ->
# 874 ms; on two threads they tie. Its 64->64 layers on 8x8 planes are 2x slower
# direct: rows of 8 leave the vector loops too short.
_DIRECT_MAX_CHANNELS = 32


def _direct_route(xp, weight_shape, dtype, stride, padding, dilation, groups, needs_input_grad):
    c_out, c_per_group, kh, kw = weight_shape
    if not (xp is np and use_numba(dtype) and stride == (1, 1) and c_out // groups <= _DIRECT_MAX_CHANNELS):
        return False
    return not needs_input_grad or (c_per_group <= _DIRECT_MAX_CHANNELS
                                    and _full_padding_fits(padding, (kh, kw), dilation))


class Conv2d(Function):
    """y = conv2d(x, W) + b  with x (N, C, H, W), W (C_out, C/G, kh, kw), b (C_out,).

    Forward, per group g (G = groups, K = C/G*kh*kw, L = Ho*Wo):
        cols = im2col(x)                         (G, K, N*L)  every patch a column
        y[g] = W[g] @ cols[g]                    (C_out/G, K) @ (K, N*L)
        y += b                                   (then reshaped to (N, C_out, Ho, Wo))

    Backward: y is linear in W, in b and in cols, and cols is linear in x, so
        dL/dW[g]    = gy[g] @ cols[g]^T          (the GEMM sums over the images)
        dL/db       = sum of gy over n, Ho, Wo
        dL/dcols[g] = W[g]^T @ gy[g]
        dL/dx       = col2im(dL/dcols)           (im2col's adjoint: a pixel copied
                                                  into several columns receives the
                                                  sum of their gradients)
    Both passes loop over chunks of images (see the notes above); dL/dW adds
    up the chunks' products.

    Backward from the columns of gy (stride 1, one group; where faster, see
    _gy_columns_route). Written out, with the padded offsets,
        dL/dx[n, c, h, w] = sum_{o, i, j} gy[n, o, h + pt - i*dh, w + pl - j*dw] * W[o, c, i, j]
    Substituting i -> kh-1-i, j -> kw-1-j makes this a cross-correlation of gy
    (padded by dh*(kh-1) - pt on top, dh*(kh-1) - pb at the bottom, likewise for
    the width: the "full" convolution, whose output has H x W pixels again)
    with W' = W with its kernel flipped and its channel axes swapped:
        gcols = im2col(gy, padded as above)      (C_out*kh*kw, N*H*W)
        dL/dx = W' @ gcols                       W'[c, (o, i, j)] = W[o, c, kh-1-i, kw-1-j]
    The same columns give the weight gradient, since
        dL/dW[o, c, i, j] = sum_{n, h, w} gcols[(o, kh-1-i, kw-1-j), (n, h, w)] * x[n, c, h, w]
        i.e. (dL/dW')^T = gcols @ x^T            (C_out*kh*kw, N*H*W) @ (N*H*W, C)
    so the forward pass keeps no columns at all.

    Direct route (CPU, stride 1, few channels per group; see _direct_route):
    y and dL/dx (the same full convolution of gy with W') by
    kernels.direct_conv.conv2d_direct, dL/dW by conv2d_direct_weight_grad; no
    columns anywhere.
    """

    def forward(ctx, x, weight, bias=None, *, stride, padding, dilation, groups):
        xp = get_array_module(x)
        c_out, _, kh, kw = weight.shape
        ho, wo = conv_output_size(x.shape[2:], (kh, kw), stride, padding, dilation)
        ctx.direct = _direct_route(xp, weight.shape, x.dtype, stride, padding, dilation, groups,
                                   is_grad_enabled() and ctx.needs_input_grad[0])
        ctx.from_gy_columns = not ctx.direct and _gy_columns_route(xp, x.shape, weight.shape, stride, padding,
                                                                   dilation, groups, ctx.needs_input_grad[0])
        if ctx.direct:
            y, ctx.columns = conv2d_direct(x, weight, bias, padding, dilation, groups), []
        else:
            keep = (is_grad_enabled() and ctx.needs_input_grad[1] and not ctx.from_gy_columns
                    and x.shape[0] * x.shape[1] * kh * kw * ho * wo * x.itemsize <= _SAVE_LIMIT)
            y, ctx.columns = _convolve(x, weight, bias, stride, padding, dilation, groups, keep)
        ctx.save_for_backward(x, weight)
        ctx.settings = (kh, kw), stride, padding, dilation, groups
        ctx.has_bias = bias is not None
        return y

    def backward(ctx, gy):
        gb = gy.sum(axis=(0, 2, 3)) if ctx.has_bias and ctx.needs_input_grad[2] else None
        if ctx.direct:
            return ctx._backward_direct(gy) + (gb,)
        if ctx.from_gy_columns:
            return ctx._backward_from_gy_columns(gy) + (gb,)
        x, weight = ctx.saved_tensors
        kernel, stride, padding, dilation, groups = ctx.settings
        xp = get_array_module(gy)
        n, c_out = gy.shape[:2]
        k, l = x.shape[1] * kernel[0] * kernel[1], gy.shape[2] * gy.shape[3]
        w3 = weight.reshape(groups, c_out // groups, -1)
        need_x, need_w = ctx.needs_input_grad[:2]
        gx = xp.empty(x.shape, dtype=gy.dtype) if need_x else None
        gw_parts = {}                                                      # worker -> its share of dL/dW

        def backward_chunk(chunk, worker):
            i, s = chunk
            m = s.stop - s.start
            gy2 = _grouped(_channels_first(gy[s], worker_key("conv2d.gy", worker)), groups)   # (G, C_out/G, m*L)
            if need_w:
                if ctx.columns:
                    cols = ctx.columns[i]
                else:                                                      # too big to keep: rebuild
                    cols = im2col(x[s], kernel, stride, padding, dilation,
                                  out=_scratch(xp, (k, m * l), x.dtype, worker_key("conv2d.cols", worker)))
                _accumulate(gw_parts, worker, _gemm(gy2, _grouped(cols, groups).swapaxes(1, 2)))
            if need_x:
                dcols = _gemm(w3.swapaxes(1, 2), gy2, out=_scratch(xp, (groups, k // groups, m * l), gy.dtype,
                                                                   worker_key("conv2d.dcols", worker)))
                col2im(dcols.reshape(k, -1), (m,) + x.shape[1:], kernel, stride, padding, dilation, out=gx[s])

        run_chunks(backward_chunk, list(enumerate(_batch_chunks(xp, n, k * l * gy.itemsize))))
        gw = _add_up(gw_parts, xp, weight.shape, gy.dtype) if need_w else None
        return gx, gw, gb

    def _full_convolution(ctx):
        """The padding of gy and the weight W' (C, C_out/G, kh, kw) of dL/dx as a
        convolution of gy with the same groups (see the class docstring): group g's
        block of W, flipped, with its two channel axes swapped."""
        weight = ctx.saved_tensors[1]
        (kh, kw), _, (pt, pb, pl, pr), (dh, dw), groups = ctx.settings
        full = (dh * (kh - 1) - pt, dh * (kh - 1) - pb, dw * (kw - 1) - pl, dw * (kw - 1) - pr)
        c_out, c_per_group = weight.shape[:2]
        blocks = weight.reshape(groups, c_out // groups, c_per_group, kh, kw)[..., ::-1, ::-1]
        flipped = blocks.transpose(0, 2, 1, 3, 4).reshape(groups * c_per_group, c_out // groups, kh, kw)
        return full, get_array_module(weight).ascontiguousarray(flipped)

    def _backward_direct(ctx, gy):
        """(dL/dx, dL/dW) by the direct kernels: dL/dx as the full convolution of gy."""
        x = ctx.saved_tensors[0]
        kernel, _, padding, dilation, groups = ctx.settings
        gy = np.ascontiguousarray(gy)                     # once, for both kernels
        gx = gw = None
        if ctx.needs_input_grad[0]:
            full, flipped = ctx._full_convolution()
            gx = conv2d_direct(gy, flipped, None, full, dilation, groups)
        if ctx.needs_input_grad[1]:
            gw = conv2d_direct_weight_grad(x, gy, kernel, padding, dilation, groups)
        return gx, gw

    def _backward_from_gy_columns(ctx, gy):
        """(dL/dx, dL/dW) from the columns of gy, as derived in the class docstring."""
        x = ctx.saved_tensors[0]
        (kh, kw), _, _, (dh, dw), _ = ctx.settings
        xp = get_array_module(gy)
        c = x.shape[1]
        full, flipped = ctx._full_convolution()
        gw_parts = {}                                                      # worker -> its share of (dL/dW')^T

        def weight_grad(gcols, s, worker):
            _accumulate(gw_parts, worker, gcols @ _channels_first(x[s], worker_key("conv2d.x", worker)).T)

        gx, _ = _convolve(gy, flipped, None, (1, 1), full, (dh, dw), 1, keep_columns=False,
                          with_columns=weight_grad if ctx.needs_input_grad[1] else None)
        gw = None
        if ctx.needs_input_grad[1]:
            gw_flipped = _add_up(gw_parts, xp, (flipped[0].size, c), gy.dtype)    # (C_out*kh*kw, C)
            gw = xp.ascontiguousarray(gw_flipped.reshape(-1, kh, kw, c)[:, ::-1, ::-1].transpose(0, 3, 1, 2))
        return gx, gw

    def release(ctx):
        # Backward is done with the columns (autograd calls this unless
        # retain_graph=True): their buffers serve the next forward pass.
        ctx._give_back_columns()
        super().release()

    def __del__(ctx):
        # A graph dropped without a backward pass (say, an evaluation run with
        # grad enabled) hands its columns back too.
        ctx._give_back_columns()

    def _give_back_columns(ctx):
        for cols in getattr(ctx, "columns", ()):
            if isinstance(cols, np.ndarray):
                _saved_columns.give(cols)
        ctx.columns = []


class PointwiseConv2d(Function):
    """A 1x1 convolution (no padding, one group): a matrix product per image.

    With x_s = x subsampled by the stride (N, C, Ho, Wo) seen as (N, C, L) and
    W2 = W.reshape(C_out, C):
        y[n]     = W2 @ x_s[n] + b                (C_out, C) @ (C, L), straight into NCHW
        dL/dx_s  = W2^T @ gy[n]                   (then put back on the strided grid of x)
        dL/dW2   = sum_n gy[n] @ x_s[n]^T,   dL/db = sum of gy over n, Ho, Wo
    the same numbers as Conv2d's im2col route, whose columns here would just be x
    transposed to channels-first: the batched products skip that copy, the
    transposition of y back to NCHW and col2im. ResNet-50's bottlenecks are two
    thirds 1x1 convolutions; NIN and Inception are full of them. (One CPU core,
    fwd+bwd of 1x1 layers of those nets: 0.88-1.01x the im2col route's time.)
    """

    def forward(ctx, x, weight, bias=None, *, stride):
        xp = get_array_module(x)
        ctx.x_shape, ctx.stride, ctx.has_bias = x.shape, stride, bias is not None
        if stride != (1, 1):
            x = x[:, :, ::stride[0], ::stride[1]]
        n, c, ho, wo = x.shape
        x3 = xp.ascontiguousarray(x).reshape(n, c, ho * wo)
        y = xp.matmul(weight.reshape(weight.shape[0], c), x3)              # (N, C_out, L)
        if bias is not None:
            y += bias.reshape(1, -1, 1)
        ctx.save_for_backward(x3, weight)
        return y.reshape(n, -1, ho, wo)

    def backward(ctx, gy):
        x3, weight = ctx.saved_tensors
        xp = get_array_module(gy)
        n, c_out = gy.shape[:2]
        gy3 = xp.ascontiguousarray(gy).reshape(n, c_out, -1)
        w2 = weight.reshape(c_out, -1)
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx_s = xp.matmul(w2.T, gy3).reshape((n, -1) + gy.shape[2:])
            if ctx.stride == (1, 1):
                gx = gx_s
            else:
                gx = xp.zeros(ctx.x_shape, dtype=gy.dtype)
                gx[:, :, ::ctx.stride[0], ::ctx.stride[1]] = gx_s
        if ctx.needs_input_grad[1]:
            gw = xp.tensordot(gy3, x3, axes=([0, 2], [0, 2])).reshape(weight.shape)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = gy3.sum(axis=(0, 2))
        return gx, gw, gb


class ConvTranspose2d(Function):
    """y = conv_transpose2d(x, W) + b  with x (N, C_in, H, W), W (C_in, C_out/G, kh, kw).

    The adjoint of conv2d with the same kernel, stride, padding and dilation
    (from C_out channels to C_in): each input pixel scatters W-weighted copies
    of itself onto a kh x kw window of the output. Per group g (K = C_out/G*kh*kw):
        cols[g] = W[g]^T @ x[g]                  (K, C_in/G) @ (C_in/G, N*H*W)
        y = col2im(cols) + b                     (conv2d's input-gradient path)

    Backward is therefore a convolution's forward:
        gcols = im2col(gy)                       (G, K, N*H*W)
        dL/dx[g] = W[g] @ gcols[g]
        dL/dW[g] = x[g] @ gcols[g]^T
        dL/db    = sum of gy over n, Ho, Wo

    ``padding`` here is the (top, bottom, left, right) padding of that adjoint
    convolution and ``extra`` the zero rows/columns appended at the bottom/right
    that no window reaches (output_padding larger than padding). Both passes
    loop over chunks of images on all cores, like Conv2d; backward runs
    conv2d's own forward (_convolve) on gy.
    """

    def forward(ctx, x, weight, bias=None, *, stride, padding, dilation, groups, out_hw, extra):
        xp = get_array_module(x)
        n, c_in, h, w = x.shape
        _, c_out_g, kh, kw = weight.shape
        c_out = c_out_g * groups
        w3 = weight.reshape(groups, c_in // groups, -1)                    # (G, C_in/G, K/G)
        k = w3.shape[0] * w3.shape[2]
        y = xp.empty((n, c_out) + out_hw, dtype=x.dtype)

        def forward_chunk(s, worker):
            x2 = _grouped(_channels_first(x[s], worker_key("conv_transpose2d.x", worker)), groups)
            cols = _gemm(w3.swapaxes(1, 2), x2, out=_scratch(xp, (groups, k // groups, x2.shape[2]), x.dtype,
                                                             worker_key("conv_transpose2d.cols", worker)))
            col2im(cols.reshape(k, -1), y[s].shape, (kh, kw), stride, padding, dilation, out=y[s])

        run_chunks(forward_chunk, _batch_chunks(xp, n, k * h * w * x.itemsize))
        if any(extra):
            y = xp.pad(y, ((0, 0), (0, 0), (0, extra[0]), (0, extra[1])))
        if bias is not None:
            y += bias.reshape(1, c_out, 1, 1)
        ctx.save_for_backward(x, weight)
        ctx.settings = (kh, kw), stride, padding, dilation, groups, out_hw
        ctx.has_bias = bias is not None
        return y

    def backward(ctx, gy):
        x, weight = ctx.saved_tensors
        kernel, stride, padding, dilation, groups, out_hw = ctx.settings
        xp = get_array_module(gy)
        gb = gy.sum(axis=(0, 2, 3)) if ctx.has_bias and ctx.needs_input_grad[2] else None
        gy = gy[:, :, :out_hw[0], :out_hw[1]]                             # drop the unreached extra rows
        gw_parts = {}                                                      # worker -> its share of dL/dW

        def weight_grad(gcols, s, worker):
            x2 = _grouped(_channels_first(x[s], worker_key("conv_transpose2d.x", worker)), groups)
            _accumulate(gw_parts, worker, _gemm(x2, _grouped(gcols, groups).swapaxes(1, 2)))

        # dL/dx is the convolution of gy with the same weight, read as (C_in, C_out/G, kh, kw),
        # and its columns of gy give dL/dW on the way (dL/dx is computed even when only dL/dW
        # is wanted: an input that needs no gradient is rare for a transposed convolution).
        gx, _ = _convolve(gy, weight, None, stride, padding, dilation, groups, keep_columns=False,
                          with_columns=weight_grad if ctx.needs_input_grad[1] else None)
        gx = gx if ctx.needs_input_grad[0] else None
        gw = _add_up(gw_parts, xp, weight.shape, gy.dtype) if ctx.needs_input_grad[1] else None
        return gx, gw, gb


# ---------------------------------------------------------------- public functions
def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution (cross-correlation) as ``torch.nn.functional.conv2d``.

    input (N, C, H, W) or unbatched (C, H, W); weight (C_out, C/groups, kh, kw);
    bias (C_out,) or None; stride, dilation: int or pair; padding: int, pair,
    'valid' or 'same' (stride 1; an even kernel pads one more on the bottom/right).
    """
    return _conv2d(input, weight, bias, stride, padding, dilation, groups, "conv2d")


def _conv2d(input, weight, bias, stride, padding, dilation, groups, op):
    _check_same_kind(op, input, ("weight", weight), ("bias", bias))
    if weight.ndim != 4:
        raise RuntimeError(f"{op}: expected a 4-D weight (out_channels, in_channels/groups, kH, kW), "
                           f"got shape {tuple(weight.shape)}")
    if input.ndim == 3:        # unbatched (C, H, W): a batch of one
        out = _conv2d(input.reshape((1,) + input.shape), weight, bias, stride, padding, dilation, groups, op)
        return out.reshape(out.shape[1:])
    if input.ndim != 4:
        raise RuntimeError(f"{op}: expected a 3-D (C, H, W) or 4-D (N, C, H, W) input, got shape {input.shape}")
    c_out, c_per_group, kh, kw = weight.shape
    _check_groups(op, groups, c_per_group * groups, c_out)
    if input.shape[1] != c_per_group * groups:
        raise RuntimeError(f"{op}: expected input with {c_per_group * groups} channels "
                           f"(weight of shape {tuple(weight.shape)}, groups={groups}), "
                           f"got input of shape {input.shape}")
    _check_bias(op, bias, c_out)
    stride = _pair(stride, "stride", op)
    dilation = _pair(dilation, "dilation", op)
    _check_positive(stride, "stride", op)
    _check_positive(dilation, "dilation", op)
    pads = _conv_padding(padding, (kh, kw), stride, dilation, op)
    try:
        conv_output_size(input.shape[2:], (kh, kw), stride, pads, dilation)
    except ValueError:
        raise RuntimeError(f"{op}: input of shape {input.shape} padded by (top, bottom, left, right)={pads} "
                           f"is smaller than the kernel {(kh, kw)} dilated by {dilation}: "
                           "the output would be empty") from None
    if (kh, kw) == (1, 1) and pads == (0, 0, 0, 0) and groups == 1:
        return PointwiseConv2d.apply(input, weight, bias, stride=stride)
    return Conv2d.apply(input, weight, bias, stride=stride, padding=pads, dilation=dilation, groups=groups)


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """2-D transposed convolution as ``torch.nn.functional.conv_transpose2d``.

    input (N, C_in, H, W) or (C_in, H, W); weight (C_in, C_out/groups, kh, kw).
    Output size Ho = (H - 1)*stride - 2*padding + dilation*(kh - 1) + output_padding + 1;
    output_padding (< stride or < dilation) resolves the ambiguity of a strided
    convolution, which maps several input sizes to the same output size.
    """
    return _conv_transpose2d(input, weight, bias, stride, padding, output_padding, groups, dilation,
                             "conv_transpose2d")


def _conv_transpose2d(input, weight, bias, stride, padding, output_padding, groups, dilation, op):
    _check_same_kind(op, input, ("weight", weight), ("bias", bias))
    if weight.ndim != 4:
        raise RuntimeError(f"{op}: expected a 4-D weight (in_channels, out_channels/groups, kH, kW), "
                           f"got shape {tuple(weight.shape)}")
    if input.ndim == 3:
        out = _conv_transpose2d(input.reshape((1,) + input.shape), weight, bias, stride, padding,
                                output_padding, groups, dilation, op)
        return out.reshape(out.shape[1:])
    if input.ndim != 4:
        raise RuntimeError(f"{op}: expected a 3-D (C, H, W) or 4-D (N, C, H, W) input, got shape {input.shape}")
    c_in, c_out_g, kh, kw = weight.shape
    _check_groups(op, groups, c_in, c_out_g * groups)
    if input.shape[1] != c_in:
        raise RuntimeError(f"{op}: expected input with {c_in} channels (weight of shape {tuple(weight.shape)}), "
                           f"got input of shape {input.shape}")
    _check_bias(op, bias, c_out_g * groups)
    stride = _pair(stride, "stride", op)
    dilation = _pair(dilation, "dilation", op)
    pad = _pair(padding, "padding", op)
    out_pad = _pair(output_padding, "output_padding", op)
    _check_positive(stride, "stride", op)
    _check_positive(dilation, "dilation", op)
    if min(pad) < 0 or min(out_pad) < 0:
        raise ValueError(f"{op}: negative padding is not supported, got padding={pad}, output_padding={out_pad}")
    for a in range(2):
        if out_pad[a] >= stride[a] and out_pad[a] >= dilation[a]:
            raise ValueError(f"{op}: output padding must be smaller than either stride or dilation, "
                             f"got output_padding={out_pad}, stride={stride}, dilation={dilation}")
    h, w = input.shape[2:]
    size = [(n - 1) * s - 2 * p + d * (k - 1) + op_ + 1
            for n, s, p, d, k, op_ in zip((h, w), stride, pad, dilation, (kh, kw), out_pad)]
    if min(size) < 1:
        raise RuntimeError(f"{op}: input of shape {input.shape} with kernel {(kh, kw)}, stride {stride}, "
                           f"padding {pad} gives an output of size {size[0]}x{size[1]}")
    # The output is the input-gradient of a convolution with padding p on the
    # top/left and p - output_padding on the bottom/right; where output_padding
    # exceeds p, the last rows are reached by no window and stay zero ("extra").
    pads = (pad[0], max(pad[0] - out_pad[0], 0), pad[1], max(pad[1] - out_pad[1], 0))
    extra = (max(out_pad[0] - pad[0], 0), max(out_pad[1] - pad[1], 0))
    out_hw = (size[0] - extra[0], size[1] - extra[1])
    return ConvTranspose2d.apply(input, weight, bias, stride=stride, padding=pads, dilation=dilation,
                                 groups=groups, out_hw=out_hw, extra=extra)


# ---------------------------------------------------------------- 1-D, through the 2-D path
def _single(value, name, op):
    return _ntuple(value, 1, name, op)[0]


def _check_1d(op, input, weight):
    if weight.ndim != 3:
        raise RuntimeError(f"{op}: expected a 3-D weight, got shape {tuple(weight.shape)}")
    if input.ndim not in (2, 3):
        raise RuntimeError(f"{op}: expected a 2-D (C, L) or 3-D (N, C, L) input, got shape {input.shape}")


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """1-D convolution as ``torch.nn.functional.conv1d``: input (N, C, L) or (C, L),
    weight (C_out, C/groups, k). Runs as conv2d on a height-1 image (kernel (1, k))."""
    op = "conv1d"
    _check_same_kind(op, input, ("weight", weight), ("bias", bias))
    _check_1d(op, input, weight)
    if input.shape[-2] != weight.shape[1] * groups:
        raise RuntimeError(f"{op}: expected input with {weight.shape[1] * groups} channels "
                           f"(weight of shape {tuple(weight.shape)}, groups={groups}), "
                           f"got input of shape {input.shape}")
    if not isinstance(padding, str):
        padding = (0, _single(padding, "padding", op))
    out = _conv2d(input.unsqueeze(-2), weight.unsqueeze(-2), bias, (1, _single(stride, "stride", op)), padding,
                  (1, _single(dilation, "dilation", op)), groups, op)
    return out.squeeze(-2)


def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """1-D transposed convolution as ``torch.nn.functional.conv_transpose1d``
    (weight (C_in, C_out/groups, k)), through conv_transpose2d on a height-1 image."""
    op = "conv_transpose1d"
    _check_same_kind(op, input, ("weight", weight), ("bias", bias))
    _check_1d(op, input, weight)
    out = _conv_transpose2d(input.unsqueeze(-2), weight.unsqueeze(-2), bias, (1, _single(stride, "stride", op)),
                            (0, _single(padding, "padding", op)), (0, _single(output_padding, "output_padding", op)),
                            groups, (1, _single(dilation, "dilation", op)), op)
    return out.squeeze(-2)
