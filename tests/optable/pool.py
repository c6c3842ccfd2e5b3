"""Op table rows: max / average / adaptive pooling and max unpooling (2-D and 1-D).

Max-type ops get tie-free inputs (a random permutation of distinct values), so
the argmax, PyTorch's indices and the finite differences are all unambiguous.
The grid: odd sizes, stride > kernel, padding up to k/2, dilation, ceil_mode
(with and without padding), count_include_pad=False, divisor_override,
asymmetric kernels/strides, kernel = input size, batch 1, unbatched and
non-contiguous input, adaptive sizes that do not divide the input (overlapping
bins) or exceed it, None in output_size, unpooling with overlapping windows
and with an explicit output_size.
"""
import numpy as np
import torch
import torch.nn.functional as TF

import tinydl.ops.pool as P
from optable import OpCase


def distinct(shape, sliced=False):
    """Tie-free values: a random permutation of 0..n-1, scaled; ``sliced`` makes it
    non-contiguous (every other column of a wider array)."""
    def make(rng):
        n = int(np.prod(shape))
        if not sliced:
            return [rng.permutation(n).reshape(shape) / n * 4 - 2]
        big = shape[:-1] + (2 * shape[-1],)
        return [(rng.permutation(2 * n).reshape(big) / n * 2 - 2)[..., ::2]]
    return make


def randn(shape, sliced=False):
    def make(rng):
        if not sliced:
            return [rng.standard_normal(shape)]
        return [rng.standard_normal(shape[:-2] + (shape[-2] * 2, shape[-1]))[..., ::2, :]]
    return make


def both(name, **kw):
    """(tinydl fn, torch fn) for P.<name> / TF.<name> with keyword arguments ``kw``."""
    return (lambda *a: getattr(P, name)(*a, **kw), lambda *a: getattr(TF, name)(*a, **kw))


def pooled(shape, kernel, stride=None, padding=0, dims=2, unique=False):
    """Inputs of max_unpool: (pooled values, their int64 indices) from a tie-free array.
    ``unique``: redraw until no two windows of a plane chose the same pixel."""
    def make(rng):
        pool = TF.max_pool2d if dims == 2 else TF.max_pool1d
        for _ in range(1000):
            x = torch.tensor(rng.permutation(int(np.prod(shape))).reshape(shape) / 7.0)
            y, i = pool(x, kernel, stride, padding, return_indices=True)
            flat = i.reshape(-1, i.shape[-2] * i.shape[-1] if dims == 2 else i.shape[-1]).numpy()
            if not unique or all(len(set(row)) == len(row) for row in flat):
                return [y.numpy(), i.numpy()]
        raise ValueError(f"no tie-free {shape} input pooled with kernel {kernel} gave distinct indices")
    return make


def scatter_add_planes(x, index, out_hw):
    """torch oracle of max_pool2d_transpose: per plane, out.flat[index] += x."""
    n, c = x.shape[:2]
    out = torch.zeros(n, c, out_hw[0] * out_hw[1], dtype=x.dtype)
    return out.scatter_add(2, index.reshape(n, c, -1), x.reshape(n, c, -1)).reshape(n, c, *out_hw)


CASES = [
    # ---- max_pool2d
    OpCase("max_pool2d/k2", *both("max_pool2d", kernel_size=2), distinct((2, 3, 6, 6))),
    OpCase("max_pool2d/k3_s2_p1_odd", *both("max_pool2d", kernel_size=3, stride=2, padding=1), distinct((1, 2, 7, 9))),
    OpCase("max_pool2d/stride_gt_kernel", *both("max_pool2d", kernel_size=2, stride=3), distinct((1, 2, 8, 7))),
    OpCase("max_pool2d/dilation", *both("max_pool2d", kernel_size=(2, 3), stride=1, dilation=(2, 1), padding=(1, 0)),
           distinct((1, 2, 6, 6))),
    OpCase("max_pool2d/ceil_mode", *both("max_pool2d", kernel_size=3, stride=2, ceil_mode=True),
           distinct((1, 2, 8, 6))),
    OpCase("max_pool2d/ceil_mode_pad", *both("max_pool2d", kernel_size=3, stride=2, padding=1, ceil_mode=True),
           distinct((1, 2, 6, 7))),
    OpCase("max_pool2d/ceil_mode_last_window_dropped",
           *both("max_pool2d", kernel_size=2, stride=2, padding=1, ceil_mode=True), distinct((1, 1, 5, 4))),
    OpCase("max_pool2d/asymmetric", *both("max_pool2d", kernel_size=(3, 2), stride=(1, 2)), distinct((1, 2, 5, 7))),
    OpCase("max_pool2d/kernel_equals_input", *both("max_pool2d", kernel_size=(4, 5)), distinct((2, 2, 4, 5))),
    OpCase("max_pool2d/unbatched", *both("max_pool2d", kernel_size=2), distinct((3, 5, 4))),
    OpCase("max_pool2d/non_contiguous", *both("max_pool2d", kernel_size=2, stride=1),
           distinct((1, 2, 5, 4), sliced=True)),
    OpCase("max_pool2d/return_indices", *both("max_pool2d", kernel_size=3, stride=2, padding=1, return_indices=True),
           distinct((2, 2, 7, 6))),
    OpCase("max_pool2d/return_indices_ceil_dilated",
           *both("max_pool2d", kernel_size=2, stride=2, dilation=2, ceil_mode=True, return_indices=True),
           distinct((1, 2, 7, 8))),
    OpCase("max_pool1d/k3_s2_p1_indices", *both("max_pool1d", kernel_size=3, stride=2, padding=1, return_indices=True),
           distinct((2, 3, 9))),
    # ---- avg_pool2d
    OpCase("avg_pool2d/k2", *both("avg_pool2d", kernel_size=2), randn((2, 3, 4, 6))),
    OpCase("avg_pool2d/k3_s2_p1", *both("avg_pool2d", kernel_size=3, stride=2, padding=1), randn((1, 2, 7, 6))),
    OpCase("avg_pool2d/exclude_pad", *both("avg_pool2d", kernel_size=3, stride=2, padding=1, count_include_pad=False),
           randn((1, 2, 7, 6))),
    OpCase("avg_pool2d/ceil_mode", *both("avg_pool2d", kernel_size=3, stride=2, ceil_mode=True), randn((1, 2, 8, 6))),
    OpCase("avg_pool2d/ceil_pad_exclude_pad",
           *both("avg_pool2d", kernel_size=(3, 2), stride=2, padding=1, ceil_mode=True, count_include_pad=False),
           randn((1, 2, 6, 7))),
    OpCase("avg_pool2d/ceil_pad_include_pad", *both("avg_pool2d", kernel_size=3, stride=2, padding=1, ceil_mode=True),
           randn((1, 2, 6, 7))),
    OpCase("avg_pool2d/divisor_override", *both("avg_pool2d", kernel_size=3, stride=2, padding=1, divisor_override=4),
           randn((1, 2, 5, 5))),
    OpCase("avg_pool2d/stride_gt_kernel", *both("avg_pool2d", kernel_size=2, stride=3), randn((1, 2, 8, 7))),
    OpCase("avg_pool2d/unbatched_non_contiguous", *both("avg_pool2d", kernel_size=(2, 3), stride=(1, 2)),
           randn((2, 5, 7), sliced=True)),
    OpCase("avg_pool1d/ceil_exclude_pad",
           *both("avg_pool1d", kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
           randn((2, 3, 8))),
    # ---- adaptive
    OpCase("adaptive_avg_pool2d/global", *both("adaptive_avg_pool2d", output_size=1), randn((2, 3, 5, 4))),
    OpCase("adaptive_avg_pool2d/non_divisible", *both("adaptive_avg_pool2d", output_size=(3, 2)), randn((2, 2, 7, 5))),
    OpCase("adaptive_avg_pool2d/none_and_larger", *both("adaptive_avg_pool2d", output_size=(None, 7)),
           randn((1, 2, 3, 5))),
    OpCase("adaptive_avg_pool2d/unbatched_non_contiguous", *both("adaptive_avg_pool2d", output_size=(2, 3)),
           randn((3, 5, 5), sliced=True)),
    OpCase("adaptive_avg_pool1d/non_divisible", *both("adaptive_avg_pool1d", output_size=4), randn((2, 3, 7))),
    OpCase("adaptive_max_pool2d/global", *both("adaptive_max_pool2d", output_size=1), distinct((2, 3, 5, 4))),
    OpCase("adaptive_max_pool2d/non_divisible_indices",
           *both("adaptive_max_pool2d", output_size=(3, 4), return_indices=True), distinct((2, 2, 7, 5))),
    OpCase("adaptive_max_pool2d/none_and_larger", *both("adaptive_max_pool2d", output_size=(None, 7)),
           distinct((1, 2, 3, 5))),
    OpCase("adaptive_max_pool2d/divisible_unbatched", *both("adaptive_max_pool2d", output_size=(2, 3)),
           distinct((2, 4, 6))),
    OpCase("adaptive_max_pool1d/indices", *both("adaptive_max_pool1d", output_size=3, return_indices=True),
           distinct((2, 2, 8))),
    # ---- max_unpool (indices come from PyTorch's own max_pool)
    OpCase("max_unpool2d/k2", lambda x, i: P.max_unpool2d(x, i, 2), lambda x, i: TF.max_unpool2d(x, i, 2),
           pooled((2, 2, 4, 6), 2)),
    OpCase("max_unpool2d/overlapping_k3_s2", lambda x, i: P.max_unpool2d(x, i, 3, 2),
           lambda x, i: TF.max_unpool2d(x, i, 3, 2), pooled((1, 2, 7, 7), 3, 2, unique=True)),
    # Two windows that chose the same pixel write the same value twice; PyTorch (and we)
    # send the gradient to both, finite differences only to the last writer: no gradcheck.
    OpCase("max_unpool2d/overlapping_shared_switches", lambda x, i: P.max_unpool2d(x, i, 3, 1),
           lambda x, i: TF.max_unpool2d(x, i, 3, 1), pooled((1, 2, 6, 6), 3, 1), gradcheck=False),
    OpCase("max_unpool2d/output_size", lambda x, i: P.max_unpool2d(x, i, 2, output_size=(7, 5)),
           lambda x, i: TF.max_unpool2d(x, i, 2, output_size=(7, 5)), pooled((1, 2, 7, 5), 2)),
    OpCase("max_unpool2d/padding_full_output_size",
           lambda x, i: P.max_unpool2d(x, i, 3, 3, 1, output_size=(1, 2, 6, 7)),
           lambda x, i: TF.max_unpool2d(x, i, 3, 3, 1, output_size=(1, 2, 6, 7)), pooled((1, 2, 6, 7), 3, 3, 1)),
    OpCase("max_unpool2d/unbatched", lambda x, i: P.max_unpool2d(x, i, 2), lambda x, i: TF.max_unpool2d(x, i, 2),
           pooled((3, 4, 4), 2)),
    # ---- the adjoint of max pooling (ZFNet's deconvnet): shared switches add up
    OpCase("max_pool2d_transpose/overlapping_shared_switches", lambda x, i: P.max_pool2d_transpose(x, i, (6, 6)),
           lambda x, i: scatter_add_planes(x, i, (6, 6)), pooled((1, 2, 6, 6), 3, 1)),
    OpCase("max_pool2d_transpose/k3_s2", lambda x, i: P.max_pool2d_transpose(x, i, (7, 7)),
           lambda x, i: scatter_add_planes(x, i, (7, 7)), pooled((2, 2, 7, 7), 3, 2)),
    OpCase("max_unpool1d/output_size", lambda x, i: P.max_unpool1d(x, i, 2, output_size=[9]),
           lambda x, i: TF.max_unpool1d(x, i, 2, output_size=[9]), pooled((2, 2, 9), 2, dims=1)),
]
