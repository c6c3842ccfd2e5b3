"""unfold / fold: im2col and col2im as user-facing ops (torch.nn.functional.unfold / fold).

A learner's window into the convolution: ``unfold`` copies every kh x kw window of the
input into a column, after which a convolution is one matrix product,

    cols = F.unfold(x, k, dilation=d, padding=p, stride=s)       # (N, C*kh*kw, L)
    y = (w.reshape(O, -1) @ cols).reshape(N, O, Ho, Wo)           # == F.conv2d(x, w, ...)

``fold`` goes the other way: it adds every column back into the window it came from,
summing where windows overlap. Layout (PyTorch's): column l = ho * Wo + wo is the window
whose top-left corner is at (ho * sh - ph, wo * sw - pw); row (c * kh + i) * kw + j holds
channel c at offset (i * dh, j * dw) inside the window; L = Ho * Wo with
Ho = (H + 2 ph - dh (kh - 1) - 1) // sh + 1 (and likewise Wo).

Both are linear maps, and each is the other's transpose (adjoint): <unfold(x), c> =
<x, fold(c)> for all x, c. So the backward of unfold is fold of the upstream gradient, and
the backward of fold is unfold. The work is done by the im2col / col2im kernels
(``tinydl/kernels/im2col.py``), whose layout is (C*kh*kw, N*L): the ops only move the batch
axis to the front.
"""
from ..autograd import Function
from ..backend import get_array_module
from ..kernels import col2im, conv_output_size, im2col
from ..args import pair

__all__ = ["unfold", "fold"]


def _to_kernel_layout(cols):
    """(N, K, L) -> the kernels' contiguous (K, N*L)."""
    N, K, L = cols.shape
    return get_array_module(cols).ascontiguousarray(cols.transpose(1, 0, 2)).reshape(K, N * L)


def _from_kernel_layout(cols, N, L):
    """The kernels' (K, N*L) -> (N, K, L), contiguous."""
    return get_array_module(cols).ascontiguousarray(cols.reshape(cols.shape[0], N, L).transpose(1, 0, 2))


def _unfold_array(x, geometry):
    ho, wo = conv_output_size(x.shape[2:], *geometry)
    return _from_kernel_layout(im2col(x, *geometry), x.shape[0], ho * wo)


def _fold_array(cols, x_shape, geometry):
    return col2im(_to_kernel_layout(cols), x_shape, *geometry)


class Unfold(Function):
    """cols[n, (c*kh + i)*kw + j, ho*Wo + wo] = xpad[n, c, ho*sh + i*dh, wo*sw + j*dw].

    Each output is a copy of one input (or of a zero of the padding), so
    dL/dx[n, c, h, w] = sum of gy over every (row, column) that copied x[n, c, h, w]:
    that sum over overlapping windows is exactly fold(gy).
    """

    double_backward = "linear"

    def forward(ctx, x, geometry):
        ctx.x_shape, ctx.geometry = x.shape, geometry
        return _unfold_array(x, geometry)

    def backward(ctx, gy):
        return _fold_array(gy, ctx.x_shape, ctx.geometry)


class Fold(Function):
    """y[n, c, h, w] = sum of cols[n, (c*kh + i)*kw + j, ho*Wo + wo] over every window
    (ho, wo) and offset (i, j) landing on (h, w) (ho*sh + i*dh - ph = h, likewise w).

    y is a sum of the columns, each with coefficient 1, so dL/dcols[n, row, l] is gy at the
    pixel that column entry was added to (0 if it fell in the padding): unfold(gy).
    """

    double_backward = "linear"

    def forward(ctx, cols, x_shape, geometry):
        ctx.geometry = geometry
        return _fold_array(cols, x_shape, geometry)

    def backward(ctx, gy):
        return _unfold_array(gy, ctx.geometry)


def _geometry(kernel_size, dilation, padding, stride, op):
    """(kernel, stride, padding, dilation) as pairs of ints, in the kernels' argument order."""
    kernel, dilation = pair(kernel_size, "kernel_size", op), pair(dilation, "dilation", op)
    padding, stride = pair(padding, "padding", op), pair(stride, "stride", op)
    for name, v, low in [("kernel_size", kernel, 1), ("dilation", dilation, 1), ("stride", stride, 1),
                         ("padding", padding, 0)]:
        if min(v) < low:
            raise ValueError(f"{op}: {name} must be >= {low}, got {v}")
    return kernel, stride, padding, dilation


def _blocks(op, hw, geometry):
    """(Ho, Wo), the number of window positions, or a clear error if no window fits."""
    try:
        return conv_output_size(hw, *geometry)
    except ValueError:
        kernel, stride, padding, dilation = geometry
        raise ValueError(f"{op}: a {kernel} window (dilation {dilation}) does not fit into the "
                         f"spatial size {tuple(hw)} padded by {padding}") from None


def unfold(input, kernel_size, dilation=1, padding=0, stride=1):
    """Sliding windows of ``input`` (N, C, H, W) (or unbatched (C, H, W)) as columns:
    (N, C*kh*kw, L), L the number of window positions (module docstring)."""
    if input.ndim not in (3, 4):
        raise ValueError(f"unfold: expected a 3-D (C, H, W) or 4-D (N, C, H, W) input, got shape {input.shape}")
    geometry = _geometry(kernel_size, dilation, padding, stride, "unfold")
    x = input if input.ndim == 4 else input.unsqueeze(0)
    _blocks("unfold", x.shape[2:], geometry)
    out = Unfold.apply(x, geometry=geometry)
    return out if input.ndim == 4 else out.squeeze(0)


def fold(input, output_size, kernel_size, dilation=1, padding=0, stride=1):
    """Columns ``input`` (N, C*kh*kw, L) (or unbatched (C*kh*kw, L)) summed back into an
    image (N, C, *output_size): the inverse layout of unfold, overlaps added up."""
    op = "fold"
    if input.ndim not in (2, 3):
        raise ValueError(f"{op}: expected a 2-D (C*kh*kw, L) or 3-D (N, C*kh*kw, L) input, "
                         f"got shape {input.shape}")
    geometry = _geometry(kernel_size, dilation, padding, stride, op)
    out_hw = pair(output_size, "output_size", op)
    cols = input if input.ndim == 3 else input.unsqueeze(0)
    N, K, L = cols.shape
    kh, kw = geometry[0]
    if K % (kh * kw):
        raise ValueError(f"{op}: input's dimension {input.ndim - 2} ({K}) must be divisible by "
                         f"the kernel's size {kh} * {kw} = {kh * kw}")
    Ho, Wo = _blocks(op, out_hw, geometry)
    if L != Ho * Wo:
        raise ValueError(f"{op}: output_size {out_hw} with kernel_size {geometry[0]}, dilation "
                         f"{geometry[3]}, padding {geometry[2]}, stride {geometry[1]} has {Ho} * {Wo} "
                         f"= {Ho * Wo} sliding blocks, but input's last dimension is {L}")
    out = Fold.apply(cols, x_shape=(N, K // (kh * kw)) + out_hw, geometry=geometry)
    return out if input.ndim == 3 else out.squeeze(0)
