"""Convolution: conv2d and conv_transpose2d (and their 1-D forms), by im2col and one
matrix product: the textbook algorithm, as every op here runs it under
``td.backends.reference()``.

A 2-D convolution (a cross-correlation, as in every DL library) of x (N, C, H, W) with
W (C_out, C, kh, kw) is, at every output pixel, a dot product of the weights with the
(C, kh, kw) patch under the window. ``im2col`` copies every patch into one column::

    cols = im2col(x)              (K, N*L)      K = C*kh*kw (channel outermost), L = Ho*Wo
    y    = W2 @ cols              (C_out, K) @ (K, N*L), then as (N, C_out, Ho, Wo)

with W2 = W.reshape(C_out, K): one GEMM does all the arithmetic for the whole batch;
im2col only moves data. ``col2im`` is im2col's adjoint: it adds every column entry
back onto the pixel it was copied from (tinydl/kernels/im2col.py has the layout).

Groups split the channels into G independent convolutions: input channels
[g*C/G, (g+1)*C/G) meet only output channels [g*C_out/G, (g+1)*C_out/G), and the
weight is (C_out, C/G, kh, kw). Channels are outermost in K, so group g's rows of
``cols`` are one contiguous block and the G products are one batched matmul over
(G, K/G, N*L) views. Depthwise convolution is groups = C.

Faster routes compute the same numbers another way (direct kernels for few channels,
1x1 as batched products, chunks of images on all cores, ...): tinydl/kernels/conv.py,
picked by one dispatcher; the op asks it once per call and reads the same either way.

Output size along one axis (PyTorch's formula):
    conv:            Ho = floor((H + p_before + p_after - d*(k-1) - 1) / s) + 1
    conv_transpose:  Ho = (H - 1)*s - 2p + d*(k-1) + output_padding + 1
"""
import functools
import numbers

from ..args import ntuple, pair, plain, single
from ..autograd import Function, is_grad_enabled
from ..backend import get_array_module
from ..kernels import col2im, conv_output_size, im2col
from ..kernels.conv import conv2d_route, conv_transpose2d_route, grouped
from .checks import check_same_kind
from .fold import Fold, Unfold
from .resample import ZeroPad

__all__ = ["conv1d", "conv2d", "conv_transpose1d", "conv_transpose2d"]


def _bias_grad(gy):
    """dL/db = the sum of gy (N, C, H, W) over the batch and the pixels. The batch first
    (contiguous adds): 1.3-4x faster than one sum over (0, 2, 3) on bench_alone.py's conv
    rows, and in float32 1.5-4x closer to the exact (float64) sum there."""
    return gy.sum(axis=0).sum(axis=(1, 2))


# ---------------------------------------------------------------- argument checks
def _check_positive(values, name, op):
    if min(values) <= 0:
        raise ValueError(f"{op}: {name} must be positive, got {values}")


def _conv_padding(padding, kernel, stride, dilation, op):
    """PyTorch's padding argument -> (before, after) of every axis of ``kernel``, flat:
    (top, bottom, left, right) in 2-D, (front, back, top, bottom, left, right) in 3-D.

    'valid' is no padding. 'same' pads so that Ho = H (stride 1 only): the
    dilated kernel overhangs by d*(k-1) in total, split as left = total // 2 and
    right = the rest, so an even kernel gets its extra pixel on the right/bottom,
    as in PyTorch (and TensorFlow's 'SAME').
    """
    if isinstance(padding, str):
        if padding == "valid":
            return (0,) * (2 * len(kernel))
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
    pad = ntuple(padding, len(kernel), "padding", op)
    if min(pad) < 0:
        raise ValueError(f"{op}: negative padding is not supported, got {pad}")
    return tuple(p for p in pad for _ in range(2))      # each amount before and after


def _check_groups(op, groups, in_channels, out_channels):
    if not isinstance(groups, numbers.Integral) or groups < 1:
        raise ValueError(f"{op}: groups must be a positive integer, got {groups!r}")
    if out_channels % groups:
        raise RuntimeError(f"{op}: groups={groups} does not divide the {out_channels} output channels")
    if in_channels % groups:
        raise RuntimeError(f"{op}: groups={groups} does not divide the {in_channels} input channels")


def _check_bias(op, bias_shape, out_channels):
    if bias_shape is not None and tuple(bias_shape) != (out_channels,):
        raise RuntimeError(f"{op}: expected bias of shape ({out_channels},), got {tuple(bias_shape)}")


# ---------------------------------------------------------------- the ops
class Conv2d(Function):
    """y = conv2d(x, W) + b  with x (N, C, H, W), W (C_out, C/G, kh, kw), b (C_out,).

    Forward, per group g (G = groups, K = C/G*kh*kw, L = Ho*Wo):
        cols = im2col(x)                         (G, K, N*L)  every patch a column
        y[g] = W[g] @ cols[g]                    (C_out/G, K) @ (K, N*L)
        y += b                                   (then as (N, C_out, Ho, Wo))

    Backward: y is linear in W, in b and in cols, and cols is linear in x, so
        dL/dW[g]    = gy[g] @ cols[g]^T          (the product sums over the images)
        dL/db       = sum of gy over n, Ho, Wo
        dL/dcols[g] = W[g]^T @ gy[g]
        dL/dx       = col2im(dL/dcols)           (a pixel copied into several columns
                                                  gets the sum of their gradients)

    dL/dx is also a convolution, which two routes use: with stride 1, written out,
        dL/dx[n, c, h, w] = sum_{o, i, j} gy[n, o, h + pt - i*dh, w + pl - j*dw] * W[o, c, i, j]
    and with i -> kh-1-i, j -> kw-1-j this is a cross-correlation of gy padded to the
    "full" size (dh*(kh-1) - pt on top, ...; the output has H x W pixels again) with
    W'[c, o, i, j] = W[o, c, kh-1-i, kw-1-j]: the kernel flipped, its channel axes swapped.
    """

    double_backward = "composite"

    def forward(ctx, x, weight, bias=None, *, stride, padding, dilation, groups):
        ctx.geometry = (weight.shape[2:], stride, padding, dilation, groups)
        ctx.has_bias = bias is not None
        needs = ctx.needs_input_grad if is_grad_enabled() else (False,) * 3
        ctx.route = conv2d_route(x, weight.shape, ctx.geometry, needs)    # a faster way, or None
        if ctx.route is not None:
            y, saved = ctx.route.forward(x, weight, bias, ctx.geometry, needs)
            ctx.save_for_backward(x, weight, saved)
            return y
        xp = get_array_module(x)
        n, c_out = x.shape[0], weight.shape[0]
        ho, wo = conv_output_size(x.shape[2:], weight.shape[2:], stride, padding, dilation)
        cols = im2col(x, weight.shape[2:], stride, padding, dilation)          # (G*K, N*L)
        w3 = weight.reshape(groups, c_out // groups, -1)                        # (G, C_out/G, K)
        y = xp.matmul(w3, grouped(cols, groups))                                # (G, C_out/G, N*L)
        y = xp.ascontiguousarray(y.reshape(c_out, n, ho, wo).transpose(1, 0, 2, 3))
        if bias is not None:
            y += bias.reshape(1, c_out, 1, 1)
        ctx.save_for_backward(x, weight, cols)
        return y

    def composite(ctx, x, weight, bias=None, *, stride, padding, dilation, groups):
        """The forward above in recorded ops: unfold (im2col), a batched matmul, + b."""
        n, c_out = x.shape[0], weight.shape[0]
        ho, wo = conv_output_size(x.shape[2:], weight.shape[2:], stride, padding, dilation)
        cols = Unfold.apply(x, geometry=(weight.shape[2:], stride, padding, dilation))  # (N, G*K, L)
        cols = cols.reshape(n, groups, cols.shape[1] // groups, ho * wo)                 # (N, G, K, L)
        w = weight.reshape(1, groups, c_out // groups, -1)                               # (1, G, C_out/G, K)
        y = (w @ cols).reshape(n, c_out, ho, wo)
        return y if bias is None else y + bias.reshape(1, c_out, 1, 1)

    def backward(ctx, gy):
        x, weight, saved = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad
        gb = _bias_grad(gy) if ctx.has_bias and need_b else None
        if ctx.route is not None:
            return ctx.route.backward(x, weight, saved, gy, ctx.geometry, ctx.needs_input_grad) + (gb,)
        kernel, stride, padding, dilation, groups = ctx.geometry
        xp = get_array_module(gy)
        c_out = weight.shape[0]
        cols = grouped(saved, groups)                                            # (G, K, N*L)
        gy3 = grouped(gy.transpose(1, 0, 2, 3).reshape(c_out, saved.shape[1]), groups)  # (G, C_out/G, N*L)
        gx = gw = None
        if need_w:
            gw = xp.matmul(gy3, cols.swapaxes(1, 2)).reshape(weight.shape)
        if need_x:
            w3 = weight.reshape(groups, c_out // groups, -1)
            dcols = xp.matmul(w3.swapaxes(1, 2), gy3)                            # (G, K, N*L)
            gx = col2im(dcols.reshape(saved.shape), x.shape, kernel, stride, padding, dilation)
        return gx, gw, gb


class ConvTranspose2d(Function):
    """y = conv_transpose2d(x, W) + b  with x (N, C_in, H, W), W (C_in, C_out/G, kh, kw).

    The adjoint of conv2d with the same kernel, stride, padding and dilation (from
    C_out channels to C_in): each input pixel scatters W-weighted copies of itself onto
    a kh x kw window of the output. Its forward is a convolution's input gradient,
    per group g (K = C_out/G*kh*kw, x[g] as (C_in/G, N*H*W)):
        cols[g] = W[g]^T @ x[g]                  (K, C_in/G) @ (C_in/G, N*H*W)
        y = col2im(cols) + b

    and its backward a convolution's forward:
        gcols = im2col(gy)                       (G, K, N*H*W)
        dL/dx[g] = W[g] @ gcols[g]
        dL/dW[g] = x[g] @ gcols[g]^T
        dL/db    = sum of gy over n, Ho, Wo

    ``padding`` is the (top, bottom, left, right) padding of that adjoint convolution,
    and ``extra`` the zero rows/columns at the bottom/right that no window reaches
    (output_padding larger than padding).
    """

    double_backward = "composite"

    def forward(ctx, x, weight, bias=None, *, stride, padding, dilation, groups, out_hw, extra):
        xp = get_array_module(x)
        n, c_in = x.shape[:2]
        c_out = weight.shape[1] * groups
        ctx.geometry = (weight.shape[2:], stride, padding, dilation, groups)
        ctx.has_bias, ctx.out_hw = bias is not None, out_hw
        needs = ctx.needs_input_grad if is_grad_enabled() else (False,) * 3
        ctx.route = conv_transpose2d_route(x, weight.shape, ctx.geometry, needs)
        if ctx.route is not None:       # the route adds the bias, unless extra rows are padded
            y = ctx.route.forward(x, weight, None if any(extra) else bias, ctx.geometry, (n, c_out) + out_hw)
            bias = bias if any(extra) else None                 # on after it: then it is added below
        else:
            x3 = grouped(x.transpose(1, 0, 2, 3).reshape(c_in, x.size // c_in), groups)  # (G, C_in/G, N*H*W)
            w3 = weight.reshape(groups, c_in // groups, -1)                      # (G, C_in/G, K)
            cols = xp.matmul(w3.swapaxes(1, 2), x3)                              # (G, K, N*H*W)
            y = col2im(cols.reshape(groups * cols.shape[1], cols.shape[2]), (n, c_out) + out_hw, *ctx.geometry[:4])
        if any(extra):
            y = xp.pad(y, ((0, 0), (0, 0), (0, extra[0]), (0, extra[1])))
        if bias is not None:
            y += bias.reshape(1, c_out, 1, 1)
        ctx.save_for_backward(x, weight)
        return y

    def composite(ctx, x, weight, bias=None, *, stride, padding, dilation, groups, out_hw, extra):
        """The forward above in recorded ops: a batched matmul, fold (col2im), + b."""
        n, c_in, h, w = x.shape
        c_out = weight.shape[1] * groups
        x4 = x.reshape(n, groups, c_in // groups, h * w)                                 # (N, G, C_in/G, HW)
        w4 = weight.reshape(1, groups, c_in // groups, -1)                               # (1, G, C_in/G, K)
        cols = (w4.swapaxes(-1, -2) @ x4).reshape(n, groups * w4.shape[3], h * w)        # (N, G*K, HW)
        y = Fold.apply(cols, (n, c_out) + out_hw, geometry=(weight.shape[2:], stride, padding, dilation))
        if any(extra):
            y = ZeroPad.apply(y, pad=(0, extra[1], 0, extra[0]), value=0.0)
        return y if bias is None else y + bias.reshape(1, c_out, 1, 1)

    def backward(ctx, gy):
        x, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad
        gb = _bias_grad(gy) if ctx.has_bias and need_b else None
        gy = gy[:, :, :ctx.out_hw[0], :ctx.out_hw[1]]                            # drop the unreached extra rows
        if ctx.route is not None:
            return ctx.route.backward(x, weight, gy, ctx.geometry, ctx.needs_input_grad) + (gb,)
        xp = get_array_module(gy)
        groups = ctx.geometry[4]
        n, c_in, h, w = x.shape
        gcols = im2col(gy, *ctx.geometry[:4])                                    # (G*K, N*H*W)
        gcols = grouped(gcols, groups)
        gx = gw = None
        if need_x:
            w3 = weight.reshape(groups, c_in // groups, -1)
            gx = xp.matmul(w3, gcols).reshape(c_in, n, h, w).transpose(1, 0, 2, 3)
            gx = xp.ascontiguousarray(gx)
        if need_w:
            x3 = grouped(x.transpose(1, 0, 2, 3).reshape(c_in, n * h * w), groups)
            gw = xp.matmul(x3, gcols.swapaxes(1, 2)).reshape(weight.shape)
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
    check_same_kind(op, input, ("weight", weight), ("bias", bias))
    if weight.ndim != 4:
        raise RuntimeError(f"{op}: expected a 4-D weight (out_channels, in_channels/groups, kH, kW), "
                           f"got shape {tuple(weight.shape)}")
    if input.ndim == 3:        # unbatched (C, H, W): a batch of one
        out = _conv2d(input.reshape((1,) + input.shape), weight, bias, stride, padding, dilation, groups, op)
        return out.reshape(out.shape[1:])
    if input.ndim != 4:
        raise RuntimeError(f"{op}: expected a 3-D (C, H, W) or 4-D (N, C, H, W) input, got shape {input.shape}")
    arguments = (op, input.shape, weight.shape, None if bias is None else bias.shape, stride, padding, dilation,
                 groups)
    checked = _remembered_conv2d_arguments if plain(stride, padding, dilation, groups) else _conv2d_arguments
    stride, pads, dilation = checked(*arguments)
    return Conv2d.apply(input, weight, bias, stride=stride, padding=pads, dilation=dilation, groups=groups)


def _conv2d_arguments(op, x_shape, w_shape, b_shape, stride, padding, dilation, groups):
    """Checks a conv2d call's shapes and arguments; its stride, padding (top, bottom, left,
    right) and dilation as tuples of ints."""
    c_out, c_per_group, kh, kw = w_shape
    _check_groups(op, groups, c_per_group * groups, c_out)
    if x_shape[1] != c_per_group * groups:
        raise RuntimeError(f"{op}: expected input with {c_per_group * groups} channels "
                           f"(weight of shape {tuple(w_shape)}, groups={groups}), "
                           f"got input of shape {x_shape}")
    _check_bias(op, b_shape, c_out)
    stride = pair(stride, "stride", op)
    dilation = pair(dilation, "dilation", op)
    _check_positive(stride, "stride", op)
    _check_positive(dilation, "dilation", op)
    pads = _conv_padding(padding, (kh, kw), stride, dilation, op)
    try:
        conv_output_size(x_shape[2:], (kh, kw), stride, pads, dilation)
    except ValueError:
        raise RuntimeError(f"{op}: input of shape {x_shape} padded by (top, bottom, left, right)={pads} "
                           f"is smaller than the kernel {(kh, kw)} dilated by {dilation}: "
                           "the output would be empty") from None
    return stride, pads, dilation


# A network makes the same few calls at every step: their checks ran the first time
# (benchmarks/bench_alone.py's ResNet-20 batch 1 row; failing calls are not remembered).
_remembered_conv2d_arguments = functools.lru_cache(maxsize=4096)(_conv2d_arguments)


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """2-D transposed convolution as ``torch.nn.functional.conv_transpose2d``.

    input (N, C_in, H, W) or (C_in, H, W); weight (C_in, C_out/groups, kh, kw).
    Output size Ho = (H - 1)*stride - 2*padding + dilation*(kh - 1) + output_padding + 1;
    output_padding (< stride or < dilation) resolves the ambiguity of a strided
    convolution, which maps several input sizes to the same output size.
    """
    return _conv_transpose2d(input, weight, bias, stride, padding, output_padding, groups, dilation,
                             "conv_transpose2d")


def _transpose_arguments(op, input, weight, bias, stride, padding, output_padding, groups, dilation):
    """The checks of a transposed convolution of any number of spatial axes (2-D and 3-D):
    channels, groups, bias, positive stride and dilation, output_padding below one of them,
    an output of at least one cell. Returns (stride, padding, output_padding, dilation,
    output size), each a tuple with one entry per axis:

        out = (n - 1) * stride - 2 * padding + dilation * (k - 1) + output_padding + 1"""
    dims, kernel = weight.ndim - 2, tuple(weight.shape[2:])
    c_in, c_out_g = weight.shape[:2]
    _check_groups(op, groups, c_in, c_out_g * groups)
    if input.shape[1] != c_in:
        raise RuntimeError(f"{op}: expected input with {c_in} channels (weight of shape {tuple(weight.shape)}), "
                           f"got input of shape {input.shape}")
    _check_bias(op, None if bias is None else bias.shape, c_out_g * groups)
    stride, dilation = ntuple(stride, dims, "stride", op), ntuple(dilation, dims, "dilation", op)
    pad, out_pad = ntuple(padding, dims, "padding", op), ntuple(output_padding, dims, "output_padding", op)
    _check_positive(stride, "stride", op)
    _check_positive(dilation, "dilation", op)
    if min(pad) < 0 or min(out_pad) < 0:
        raise ValueError(f"{op}: negative padding is not supported, got padding={pad}, output_padding={out_pad}")
    for a in range(dims):
        if out_pad[a] >= stride[a] and out_pad[a] >= dilation[a]:
            raise ValueError(f"{op}: output padding must be smaller than either stride or dilation, "
                             f"got output_padding={out_pad}, stride={stride}, dilation={dilation}")
    size = tuple((n - 1) * s - 2 * p + d * (k - 1) + o + 1
                 for n, s, p, d, k, o in zip(input.shape[2:], stride, pad, dilation, kernel, out_pad))
    if min(size) < 1:
        raise RuntimeError(f"{op}: input of shape {input.shape} with kernel {kernel}, stride {stride}, "
                           f"padding {pad} gives an output of size {'x'.join(map(str, size))}")
    return stride, pad, out_pad, dilation, size


def _conv_transpose2d(input, weight, bias, stride, padding, output_padding, groups, dilation, op):
    check_same_kind(op, input, ("weight", weight), ("bias", bias))
    if weight.ndim != 4:
        raise RuntimeError(f"{op}: expected a 4-D weight (in_channels, out_channels/groups, kH, kW), "
                           f"got shape {tuple(weight.shape)}")
    if input.ndim == 3:
        out = _conv_transpose2d(input.reshape((1,) + input.shape), weight, bias, stride, padding,
                                output_padding, groups, dilation, op)
        return out.reshape(out.shape[1:])
    if input.ndim != 4:
        raise RuntimeError(f"{op}: expected a 3-D (C, H, W) or 4-D (N, C, H, W) input, got shape {input.shape}")
    stride, pad, out_pad, dilation, size = _transpose_arguments(op, input, weight, bias, stride, padding,
                                                                output_padding, groups, dilation)
    # The output is the input-gradient of a convolution with padding p on the
    # top/left and p - output_padding on the bottom/right; where output_padding
    # exceeds p, the last rows are reached by no window and stay zero ("extra").
    pads = (pad[0], max(pad[0] - out_pad[0], 0), pad[1], max(pad[1] - out_pad[1], 0))
    extra = (max(out_pad[0] - pad[0], 0), max(out_pad[1] - pad[1], 0))
    out_hw = (size[0] - extra[0], size[1] - extra[1])
    return ConvTranspose2d.apply(input, weight, bias, stride=stride, padding=pads, dilation=dilation,
                                 groups=groups, out_hw=out_hw, extra=extra)


# ---------------------------------------------------------------- 1-D, through the 2-D path
def _check_1d(op, input, weight):
    if weight.ndim != 3:
        raise RuntimeError(f"{op}: expected a 3-D weight, got shape {tuple(weight.shape)}")
    if input.ndim not in (2, 3):
        raise RuntimeError(f"{op}: expected a 2-D (C, L) or 3-D (N, C, L) input, got shape {input.shape}")


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """1-D convolution as ``torch.nn.functional.conv1d``: input (N, C, L) or (C, L),
    weight (C_out, C/groups, k). Runs as conv2d on a height-1 image (kernel (1, k))."""
    op = "conv1d"
    check_same_kind(op, input, ("weight", weight), ("bias", bias))
    _check_1d(op, input, weight)
    if input.shape[-2] != weight.shape[1] * groups:
        raise RuntimeError(f"{op}: expected input with {weight.shape[1] * groups} channels "
                           f"(weight of shape {tuple(weight.shape)}, groups={groups}), "
                           f"got input of shape {input.shape}")
    if not isinstance(padding, str):
        padding = (0, single(padding, "padding", op))
    out = _conv2d(input.unsqueeze(-2), weight.unsqueeze(-2), bias, (1, single(stride, "stride", op)), padding,
                  (1, single(dilation, "dilation", op)), groups, op)
    return out.squeeze(-2)


def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """1-D transposed convolution as ``torch.nn.functional.conv_transpose1d``
    (weight (C_in, C_out/groups, k)), through conv_transpose2d on a height-1 image."""
    op = "conv_transpose1d"
    check_same_kind(op, input, ("weight", weight), ("bias", bias))
    _check_1d(op, input, weight)
    out = _conv_transpose2d(input.unsqueeze(-2), weight.unsqueeze(-2), bias, (1, single(stride, "stride", op)),
                            (0, single(padding, "padding", op)), (0, single(output_padding, "output_padding", op)),
                            groups, (1, single(dilation, "dilation", op)), op)
    return out.squeeze(-2)
