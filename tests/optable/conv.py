"""Op table rows: conv2d, conv_transpose2d, conv1d, conv_transpose1d.

The grid covers odd sizes, stride > kernel, padding up to k-1, dilation,
groups (incl. depthwise), 1x1 kernels (the reshape fast path and its strided
neighbour), 3x3 with padding 0, 1 or 2 per axis and odd outputs (Winograd's partial
tiles), kernel = input size, batch 1, unbatched input, non-contiguous
input, 'same' (even kernels pad asymmetrically) and 'valid', asymmetric
kernels and strides, and transposed convolutions with output_padding below
and above the padding. Inputs stay small (a few hundred elements in all):
gradcheck runs two forward passes per input element.
"""
import warnings

import torch.nn.functional as TF

import tinydl.ops.conv as C
from optable import OpCase


def arrays(*shapes):
    return lambda rng: [rng.standard_normal(s) for s in shapes]


def sliced_input(shape, *others):
    """A non-contiguous (every other row and column of a bigger array) input, then the others."""
    big = shape[:-2] + (2 * shape[-2], 2 * shape[-1])
    return lambda rng: [rng.standard_normal(big)[..., 1::2, ::2]] + [rng.standard_normal(s) for s in others]


def transposed_weight(x_shape, w_shape):
    """A weight that is the transpose of a C-ordered array (non-contiguous)."""
    return lambda rng: [rng.standard_normal(x_shape), rng.standard_normal(w_shape[::-1]).T]


def _quiet(fn):
    """PyTorch warns that 'same' padding with an even kernel copies the input: not our concern."""
    def call(*args):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return fn(*args)
    return call


def conv(**kw):
    return (lambda *a: C.conv2d(*a, **kw), _quiet(lambda *a: TF.conv2d(*a, **kw)))


def convt(**kw):
    return (lambda *a: C.conv_transpose2d(*a, **kw), lambda *a: TF.conv_transpose2d(*a, **kw))


def conv1(**kw):
    return (lambda *a: C.conv1d(*a, **kw), _quiet(lambda *a: TF.conv1d(*a, **kw)))


def convt1(**kw):
    return (lambda *a: C.conv_transpose1d(*a, **kw), lambda *a: TF.conv_transpose1d(*a, **kw))


TOL = dict(atol=1e-4, rtol=1e-4)   # float32: sums of up to ~100 products

CASES = [
    # ---- conv2d
    OpCase("conv2d/basic", *conv(), arrays((2, 3, 5, 5), (4, 3, 3, 3), (4,)), **TOL),
    OpCase("conv2d/stride2_pad1", *conv(stride=2, padding=1), arrays((1, 2, 7, 7), (3, 2, 3, 3), (3,)), **TOL),
    OpCase("conv2d/stride_gt_kernel", *conv(stride=3), arrays((1, 2, 8, 9), (2, 2, 2, 2), (2,)), **TOL),
    OpCase("conv2d/pad_k_minus_1", *conv(padding=2), arrays((1, 2, 4, 5), (2, 2, 3, 3), (2,)), **TOL),
    OpCase("conv2d/dilation", *conv(dilation=(2, 1), padding=1), arrays((1, 2, 7, 6), (2, 2, 2, 3), (2,)), **TOL),
    OpCase("conv2d/dilation_stride", *conv(dilation=2, stride=2), arrays((1, 2, 9, 8), (2, 2, 3, 2)), **TOL),
    OpCase("conv2d/groups2", *conv(groups=2), arrays((1, 4, 5, 5), (6, 2, 3, 3), (6,)), **TOL),
    OpCase("conv2d/depthwise", *conv(groups=3, padding=1), arrays((2, 3, 4, 5), (3, 1, 3, 3), (3,)), **TOL),
    OpCase("conv2d/depthwise_multiplier2", *conv(groups=3, stride=2), arrays((1, 3, 5, 5), (6, 1, 3, 3), (6,)), **TOL),
    OpCase("conv2d/1x1", *conv(), arrays((2, 4, 3, 3), (3, 4, 1, 1), (3,)), **TOL),
    # 144 pixels per image: the pointwise route's dL/dW adds one product per image
    OpCase("conv2d/1x1_wide", *conv(), arrays((2, 3, 12, 12), (2, 3, 1, 1), (2,)), **TOL),
    OpCase("conv2d/1x1_stride2", *conv(stride=2), arrays((1, 4, 5, 5), (3, 4, 1, 1), (3,)), **TOL),
    OpCase("conv2d/1x1_groups", *conv(groups=2), arrays((1, 4, 3, 3), (6, 2, 1, 1)), **TOL),
    OpCase("conv2d/kernel_equals_input", *conv(), arrays((2, 2, 4, 4), (3, 2, 4, 4), (3,)), **TOL),
    OpCase("conv2d/batch1_odd_sizes", *conv(), arrays((1, 1, 7, 5), (2, 1, 3, 3), (2,)), **TOL),
    OpCase("conv2d/unbatched", *conv(padding=1), arrays((2, 5, 5), (3, 2, 3, 3), (3,)), **TOL),
    OpCase("conv2d/non_contiguous_input", *conv(padding=1), sliced_input((1, 2, 5, 4), (3, 2, 3, 3), (3,)), **TOL),
    OpCase("conv2d/non_contiguous_weight", *conv(), transposed_weight((1, 2, 5, 5), (2, 2, 3, 3)), **TOL),
    OpCase("conv2d/same_odd_kernel", *conv(padding="same"), arrays((1, 2, 5, 6), (2, 2, 3, 3), (2,)), **TOL),
    OpCase("conv2d/same_even_kernel", *conv(padding="same"), arrays((1, 2, 5, 4), (2, 2, 4, 2), (2,)), **TOL),
    OpCase("conv2d/same_dilated", *conv(padding="same", dilation=(1, 2)), arrays((1, 2, 5, 6), (2, 2, 2, 3)), **TOL),
    OpCase("conv2d/valid", *conv(padding="valid"), arrays((1, 2, 5, 6), (2, 2, 3, 3), (2,)), **TOL),
    OpCase("conv2d/asymmetric_kernel_stride", *conv(stride=(2, 1), padding=(1, 0)),
           arrays((1, 2, 7, 5), (3, 2, 3, 1), (3,)), **TOL),
    OpCase("conv2d/no_bias", *conv(stride=(1, 2)), arrays((2, 2, 5, 5), (3, 2, 2, 3)), **TOL),
    # 3x3 with other padding along H than W (Winograd's tiles: odd Ho, partial last tiles)
    OpCase("conv2d/3x3_pad_h2_w0", *conv(padding=(2, 0)), arrays((2, 2, 5, 4), (3, 2, 3, 3), (3,)), **TOL),
    OpCase("conv2d/3x3_pad_h0_w1", *conv(padding=(0, 1)), arrays((1, 3, 6, 3), (2, 3, 3, 3)), **TOL),
    # ---- conv_transpose2d
    OpCase("conv_transpose2d/basic", *convt(), arrays((2, 3, 3, 4), (3, 2, 3, 3), (2,)), **TOL),
    OpCase("conv_transpose2d/stride2_pad1_outpad1", *convt(stride=2, padding=1, output_padding=1),
           arrays((1, 3, 3, 3), (3, 2, 3, 3), (2,)), **TOL),
    OpCase("conv_transpose2d/outpad_gt_pad", *convt(stride=3, padding=(1, 0), output_padding=2),
           arrays((1, 2, 3, 2), (2, 2, 2, 3), (2,)), **TOL),
    OpCase("conv_transpose2d/outpad_below_dilation", *convt(dilation=3, output_padding=(2, 1), padding=1),
           arrays((1, 2, 3, 3), (2, 2, 2, 2), (2,)), **TOL),
    OpCase("conv_transpose2d/stride_gt_kernel", *convt(stride=3), arrays((1, 2, 3, 3), (2, 2, 2, 2), (2,)), **TOL),
    OpCase("conv_transpose2d/groups", *convt(groups=2, stride=(2, 1)), arrays((1, 4, 3, 3), (4, 2, 2, 3), (4,)), **TOL),
    OpCase("conv_transpose2d/depthwise", *convt(groups=3, stride=2), arrays((1, 3, 3, 3), (3, 1, 3, 3), (3,)), **TOL),
    OpCase("conv_transpose2d/1x1_stride2", *convt(stride=2), arrays((1, 3, 3, 3), (3, 2, 1, 1), (2,)), **TOL),
    OpCase("conv_transpose2d/4x4_stride2_pad1", *convt(stride=2, padding=1), arrays((1, 2, 3, 3), (2, 2, 4, 4)), **TOL),
    OpCase("conv_transpose2d/unbatched", *convt(stride=2), arrays((2, 3, 2), (2, 3, 2, 2), (3,)), **TOL),
    OpCase("conv_transpose2d/non_contiguous_input", *convt(stride=2, padding=1),
           sliced_input((1, 2, 3, 4), (2, 2, 3, 3), (2,)), **TOL),
    # 16 and more columns: the subpixel route's forward folds on wide rows there (narrower: col2im)
    OpCase("conv_transpose2d/wide_4x4_s2_p1_odd", *convt(stride=2, padding=1),
           arrays((1, 2, 3, 17), (2, 3, 4, 4), (3,)), **TOL),
    OpCase("conv_transpose2d/wide_3x3_s2_p1_op1", *convt(stride=2, padding=1, output_padding=1),
           arrays((2, 2, 2, 16), (2, 2, 3, 3), (2,)), **TOL),
    OpCase("conv_transpose2d/wide_2x2_s2", *convt(stride=2), arrays((1, 3, 2, 16), (3, 2, 2, 2), (2,)), **TOL),
    OpCase("conv_transpose2d/wide_kernel_not_multiple_of_stride", *convt(stride=(3, 2), padding=(1, 0)),
           arrays((1, 2, 3, 16), (2, 2, 5, 3), (2,)), **TOL),
    OpCase("conv_transpose2d/wide_padding_beyond_kernel", *convt(stride=2, padding=(3, 4)),
           arrays((1, 2, 4, 16), (2, 2, 4, 3)), **TOL),
    OpCase("conv_transpose2d/wide_stride_gt_kernel_outpad", *convt(stride=3, padding=(1, 0), output_padding=2),
           arrays((1, 2, 2, 16), (2, 2, 2, 3), (2,)), **TOL),
    OpCase("conv_transpose2d/wide_stride1_groups", *convt(padding=1, groups=2), arrays((1, 4, 2, 16), (4, 1, 3, 3)),
           **TOL),
    OpCase("conv_transpose2d/wide_non_contiguous_input", *convt(stride=2, padding=1),
           sliced_input((1, 2, 2, 16), (2, 2, 4, 4), (2,)), **TOL),
    # kernel twice the stride, the Winograd route's: other strides along H and W, padding of
    # a stride or more (no shift of the input), output padding (phases of unequal lengths)
    OpCase("conv_transpose2d/kernel_twice_stride_3x2", *convt(stride=(3, 2), padding=(4, 1), output_padding=(2, 1)),
           arrays((2, 3, 4, 5), (3, 2, 6, 4), (2,)), **TOL),
    OpCase("conv_transpose2d/kernel_twice_stride_1", *convt(padding=(0, 1)), arrays((1, 2, 3, 4), (2, 3, 2, 2)), **TOL),
    # ---- 1-D
    OpCase("conv1d/basic", *conv1(stride=2, padding=1), arrays((2, 3, 9), (4, 3, 3), (4,)), **TOL),
    OpCase("conv1d/same_dilated", *conv1(padding="same", dilation=2), arrays((2, 2, 7), (3, 2, 4)), **TOL),
    OpCase("conv1d/groups_unbatched", *conv1(groups=2), arrays((4, 8), (4, 2, 3), (4,)), **TOL),
    OpCase("conv_transpose1d/stride2_outpad", *convt1(stride=2, output_padding=1, padding=1),
           arrays((2, 3, 5), (3, 2, 3), (2,)), **TOL),
]
