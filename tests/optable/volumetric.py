"""Op table rows: the volumetric (3-D) family: conv3d, conv_transpose3d, max / average /
adaptive pooling over (D, H, W) and max_unpool3d (tinydl/ops/volumetric.py).

The grid: odd and unequal sizes per axis, stride > kernel, padding, dilation, groups
(incl. depthwise), 'same' with even kernels (asymmetric padding) and 'valid', 1x1x1
kernels, unbatched and non-contiguous inputs, transposed convolutions with output_padding
below and above the padding, ceil_mode (with and without padding), count_include_pad=False,
divisor_override, adaptive sizes that do not divide the input or exceed it (and None),
unpooling with overlapping windows and an explicit output_size. Inputs stay a few hundred
elements at most: gradcheck runs two forward passes per element. Max-type ops get tie-free
inputs (a permutation of distinct values), so argmax, indices and finite differences agree.
"""
import warnings

import numpy as np
import torch
import torch.nn.functional as TF

import tinydl.ops.volumetric as V
from optable import OpCase
from optable.conv import arrays, sliced_input, transposed_weight
from optable.pool import distinct, randn


def both(name, **kw):
    """(tinydl fn, torch fn) for V.<name> / TF.<name> with keyword arguments ``kw``; PyTorch's
    warning that 'same' with an even kernel copies the input is silenced."""
    def theirs(*a):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return getattr(TF, name)(*a, **kw)
    return (lambda *a: getattr(V, name)(*a, **kw), theirs)


def pooled(shape, kernel, stride=None, padding=0, unique=False):
    """Inputs of max_unpool3d: (pooled values, their int64 indices) from PyTorch's max_pool3d
    of a tie-free array. ``unique``: redraw until no two windows of a volume chose the same cell."""
    def make(rng):
        for _ in range(1000):
            x = torch.tensor(rng.permutation(int(np.prod(shape))).reshape(shape) / 7.0)
            y, i = TF.max_pool3d(x, kernel, stride, padding, return_indices=True)
            flat = i.reshape(-1, int(np.prod(i.shape[-3:]))).numpy()
            if not unique or all(len(set(row)) == len(row) for row in flat):
                return [y.numpy(), i.numpy()]
        raise ValueError(f"no tie-free {shape} input pooled with kernel {kernel} gave distinct indices")
    return make


def unpool(kernel, stride=None, padding=0, output_size=None):
    return (lambda x, i: V.max_unpool3d(x, i, kernel, stride, padding, output_size),
            lambda x, i: TF.max_unpool3d(x, i, kernel, stride, padding, output_size))


TOL = dict(atol=1e-4, rtol=1e-4)   # float32: sums of up to ~100 products

CASES = [
    # ---- conv3d
    OpCase("conv3d/basic", *both("conv3d"), arrays((2, 2, 4, 4, 4), (3, 2, 2, 2, 2), (3,)), **TOL),
    OpCase("conv3d/stride_pad_dilation", *both("conv3d", stride=(2, 1, 2), padding=(1, 0, 1), dilation=(1, 2, 1)),
           arrays((1, 2, 5, 6, 5), (2, 2, 3, 2, 2), (2,)), **TOL),
    OpCase("conv3d/stride_gt_kernel", *both("conv3d", stride=3), arrays((1, 2, 5, 7, 6), (2, 2, 2, 2, 2), (2,)), **TOL),
    OpCase("conv3d/groups", *both("conv3d", groups=2, padding=(0, 1, 0)),
           arrays((1, 4, 3, 4, 4), (4, 2, 2, 2, 2), (4,)), **TOL),
    OpCase("conv3d/depthwise", *both("conv3d", groups=3, padding=1), arrays((1, 3, 4, 3, 3), (3, 1, 2, 3, 2), (3,)),
           **TOL),
    OpCase("conv3d/1x1x1", *both("conv3d"), arrays((2, 3, 3, 2, 4), (2, 3, 1, 1, 1), (2,)), **TOL),
    OpCase("conv3d/same_even_kernel", *both("conv3d", padding="same"), arrays((1, 2, 4, 3, 5), (2, 2, 2, 3, 4), (2,)),
           **TOL),
    OpCase("conv3d/same_dilated", *both("conv3d", padding="same", dilation=(2, 1, 1)),
           arrays((1, 2, 5, 3, 4), (2, 2, 2, 2, 3)), **TOL),
    OpCase("conv3d/valid", *both("conv3d", padding="valid"), arrays((1, 2, 4, 5, 3), (2, 2, 3, 2, 2), (2,)), **TOL),
    OpCase("conv3d/unbatched", *both("conv3d", padding=1), arrays((2, 3, 4, 3), (3, 2, 2, 2, 2), (3,)), **TOL),
    OpCase("conv3d/non_contiguous_input", *both("conv3d", padding=(1, 0, 1)),
           sliced_input((1, 2, 3, 4, 3), (2, 2, 2, 2, 2), (2,)), **TOL),
    OpCase("conv3d/non_contiguous_weight", *both("conv3d"), transposed_weight((1, 2, 4, 3, 4), (2, 2, 2, 2, 2)),
           **TOL),
    # ---- conv_transpose3d
    OpCase("conv_transpose3d/basic", *both("conv_transpose3d"), arrays((2, 2, 3, 3, 3), (2, 3, 2, 2, 2), (3,)),
           **TOL),
    OpCase("conv_transpose3d/stride2_pad1_outpad1", *both("conv_transpose3d", stride=2, padding=1, output_padding=1),
           arrays((1, 2, 3, 2, 3), (2, 2, 3, 3, 3), (2,)), **TOL),
    OpCase("conv_transpose3d/outpad_gt_pad", *both("conv_transpose3d", stride=3, padding=(1, 0, 0), output_padding=2),
           arrays((1, 2, 2, 2, 3), (2, 2, 2, 2, 2), (2,)), **TOL),
    OpCase("conv_transpose3d/groups_dilation",
           *both("conv_transpose3d", groups=2, dilation=(2, 1, 1), stride=(1, 2, 1), output_padding=(1, 1, 0)),
           arrays((1, 4, 2, 3, 2), (4, 1, 2, 2, 3), (2,)), **TOL),
    OpCase("conv_transpose3d/unbatched", *both("conv_transpose3d", stride=(2, 1, 2)),
           arrays((2, 2, 3, 2), (2, 3, 2, 2, 2), (3,)), **TOL),
    OpCase("conv_transpose3d/non_contiguous_input", *both("conv_transpose3d", stride=2, padding=1),
           sliced_input((1, 2, 2, 3, 2), (2, 2, 3, 3, 3), (2,)), **TOL),
    # ---- max_pool3d
    OpCase("max_pool3d/k2", *both("max_pool3d", kernel_size=2), distinct((2, 2, 4, 4, 4))),
    OpCase("max_pool3d/k3_s2_p1_odd", *both("max_pool3d", kernel_size=3, stride=2, padding=1),
           distinct((1, 2, 5, 5, 6))),
    OpCase("max_pool3d/stride_gt_kernel", *both("max_pool3d", kernel_size=2, stride=3), distinct((1, 2, 5, 7, 6))),
    OpCase("max_pool3d/ceil_mode_indices",
           *both("max_pool3d", kernel_size=3, stride=2, ceil_mode=True, return_indices=True),
           distinct((1, 2, 5, 6, 5))),
    OpCase("max_pool3d/ceil_mode_pad", *both("max_pool3d", kernel_size=(2, 3, 2), stride=2, padding=1, ceil_mode=True),
           distinct((1, 2, 4, 5, 5))),
    OpCase("max_pool3d/dilation_indices",
           *both("max_pool3d", kernel_size=2, stride=1, padding=(1, 0, 1), dilation=(2, 1, 2), return_indices=True),
           distinct((1, 1, 6, 5, 6))),
    OpCase("max_pool3d/unbatched", *both("max_pool3d", kernel_size=(2, 2, 3), return_indices=True),
           distinct((2, 4, 4, 6))),
    OpCase("max_pool3d/non_contiguous", *both("max_pool3d", kernel_size=2, stride=1),
           distinct((1, 2, 3, 4, 4), sliced=True)),
    # ---- avg_pool3d
    OpCase("avg_pool3d/k2", *both("avg_pool3d", kernel_size=2), randn((2, 2, 4, 4, 4))),
    OpCase("avg_pool3d/k3_s2_p1", *both("avg_pool3d", kernel_size=3, stride=2, padding=1), randn((1, 2, 5, 6, 5))),
    OpCase("avg_pool3d/exclude_pad", *both("avg_pool3d", kernel_size=3, stride=2, padding=1, count_include_pad=False),
           randn((1, 2, 5, 6, 5))),
    OpCase("avg_pool3d/ceil_pad_include_pad", *both("avg_pool3d", kernel_size=3, stride=2, padding=1, ceil_mode=True),
           randn((1, 2, 4, 6, 5))),
    OpCase("avg_pool3d/ceil_pad_exclude_pad",
           *both("avg_pool3d", kernel_size=(3, 2, 2), stride=2, padding=1, ceil_mode=True, count_include_pad=False),
           randn((1, 2, 4, 6, 5))),
    OpCase("avg_pool3d/divisor_override", *both("avg_pool3d", kernel_size=3, stride=2, padding=1, divisor_override=4),
           randn((1, 2, 5, 5, 5))),
    OpCase("avg_pool3d/stride_gt_kernel", *both("avg_pool3d", kernel_size=2, stride=3), randn((1, 2, 5, 7, 6))),
    OpCase("avg_pool3d/unbatched_non_contiguous", *both("avg_pool3d", kernel_size=(2, 3, 2), stride=(1, 2, 1)),
           randn((2, 3, 5, 4), sliced=True)),
    # ---- adaptive
    OpCase("adaptive_avg_pool3d/global", *both("adaptive_avg_pool3d", output_size=1), randn((2, 3, 3, 4, 3))),
    OpCase("adaptive_avg_pool3d/non_divisible", *both("adaptive_avg_pool3d", output_size=(2, 3, 2)),
           randn((1, 2, 5, 7, 4))),
    OpCase("adaptive_avg_pool3d/none_and_larger", *both("adaptive_avg_pool3d", output_size=(None, 4, 3)),
           randn((1, 2, 3, 3, 2))),
    OpCase("adaptive_avg_pool3d/unbatched_non_contiguous", *both("adaptive_avg_pool3d", output_size=(2, 2, 3)),
           randn((2, 3, 5, 5), sliced=True)),
    OpCase("adaptive_max_pool3d/global", *both("adaptive_max_pool3d", output_size=1), distinct((2, 3, 3, 4, 3))),
    OpCase("adaptive_max_pool3d/non_divisible_indices",
           *both("adaptive_max_pool3d", output_size=(2, 3, 2), return_indices=True), distinct((1, 2, 5, 7, 4))),
    OpCase("adaptive_max_pool3d/none_and_larger", *both("adaptive_max_pool3d", output_size=(4, None, 3)),
           distinct((1, 2, 3, 3, 2))),
    OpCase("adaptive_max_pool3d/unbatched_indices",
           *both("adaptive_max_pool3d", output_size=(2, 3, 2), return_indices=True), distinct((2, 4, 5, 4))),
    # ---- max_unpool3d (indices from PyTorch's own max_pool3d)
    OpCase("max_unpool3d/k2", *unpool(2), pooled((2, 2, 4, 4, 4), 2)),
    OpCase("max_unpool3d/overlapping_k3_s2", *unpool(3, 2), pooled((1, 2, 5, 5, 5), 3, 2, unique=True)),
    # Two windows that chose the same cell write the same value twice; PyTorch (and we) send
    # the gradient to both, finite differences only to the last writer: no gradcheck.
    OpCase("max_unpool3d/overlapping_shared_switches", *unpool(2, 1), pooled((1, 2, 4, 4, 4), 2, 1),
           gradcheck=False),
    OpCase("max_unpool3d/output_size", *unpool(2, output_size=(5, 4, 5)), pooled((1, 2, 5, 4, 5), 2)),
    OpCase("max_unpool3d/padding_full_output_size", *unpool(3, 3, 1, output_size=(1, 2, 6, 5, 6)),
           pooled((1, 2, 6, 5, 6), 3, 3, 1)),
    OpCase("max_unpool3d/unbatched", *unpool(2), pooled((2, 4, 4, 4), 2)),
]
