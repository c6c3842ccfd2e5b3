"""Op table rows: sum, mean, var, std, max/min (+ arg versions), logsumexp."""
import numpy as np
import torch

import tinydl.ops.reduce as R
from optable import OpCase


def randn(*shape, scale=1.0, shift=0.0):
    return lambda rng: [rng.standard_normal(s) * scale + shift for s in shape]


def transposed(shape):
    """A non-contiguous input: the transpose of a C-ordered array."""
    return lambda rng: [rng.standard_normal(shape[::-1]).T]


def with_ties(rng):
    """Ties at the maximum and the minimum, to check how the gradient is shared."""
    x = rng.standard_normal((3, 4))
    x[0, 1] = x[0, 3] = x[2, 2] = 5.0
    x[1, 0] = x[1, 2] = -5.0
    return [x]


CASES = [
    # ---- sum / mean
    OpCase("sum/all", R.sum, torch.sum, randn((2, 3, 4))),
    OpCase("sum/dim", lambda x: R.sum(x, 1), lambda x: torch.sum(x, 1), randn((2, 3, 4))),
    OpCase("sum/negative_dim_keepdim", lambda x: x.sum(-1, keepdim=True), lambda x: x.sum(-1, keepdim=True),
           randn((2, 3, 4))),
    OpCase("sum/tuple_dims", lambda x: x.sum((0, -1)), lambda x: x.sum((0, -1)), randn((2, 3, 4))),
    OpCase("sum/empty_tuple_is_all", lambda x: x.sum(()), lambda x: x.sum(()), randn((2, 3))),
    OpCase("sum/non_contiguous", lambda x: x.sum(0), lambda x: x.sum(0), transposed((3, 5))),
    OpCase("sum/broadcast_input", lambda a, b: (a + b).sum(1), lambda a, b: (a + b).sum(1), randn((3, 1), (4,))),
    OpCase("mean/all", R.mean, torch.mean, randn((2, 3, 4))),
    OpCase("mean/tuple_keepdim", lambda x: x.mean((1, 2), keepdim=True), lambda x: x.mean((1, 2), keepdim=True),
           randn((2, 3, 4))),
    OpCase("mean/negative_dim", lambda x: R.mean(x, -2), lambda x: torch.mean(x, -2), transposed((3, 4, 2))),
    # ---- var / std
    OpCase("var/all_unbiased", R.var, torch.var, randn((3, 4))),
    OpCase("var/dim_biased_keepdim", lambda x: x.var(1, unbiased=False, keepdim=True),
           lambda x: x.var(1, unbiased=False, keepdim=True), randn((3, 5))),
    OpCase("var/correction_tuple", lambda x: R.var(x, (0, 2), correction=2),
           lambda x: torch.var(x, (0, 2), correction=2), randn((3, 2, 4))),
    OpCase("var/non_contiguous", lambda x: x.var(-1), lambda x: x.var(-1), transposed((4, 3))),
    OpCase("std/all", R.std, torch.std, randn((3, 4), shift=1.0)),
    OpCase("std/dim_biased", lambda x: x.std(0, unbiased=False), lambda x: x.std(0, unbiased=False),
           randn((5, 3))),
    OpCase("std/correction0_keepdim", lambda x: R.std(x, (-1, -2), keepdim=True, correction=0),
           lambda x: torch.std(x, (-1, -2), keepdim=True, correction=0), randn((2, 3, 4))),
    # ---- max / min (tie-free unless the name says ties)
    OpCase("max/all", R.max, torch.max, randn((3, 4))),
    OpCase("max/dim", lambda x: R.max(x, 1), lambda x: torch.max(x, 1), randn((3, 4))),
    OpCase("max/negative_dim_keepdim", lambda x: x.max(-1, keepdim=True), lambda x: x.max(-1, keepdim=True),
           randn((2, 3, 4))),
    OpCase("max/non_contiguous", lambda x: x.max(0), lambda x: x.max(0), transposed((3, 4))),
    OpCase("max/elementwise_tensor", lambda a, b: R.max(a, b), lambda a, b: torch.max(a, b), randn((3, 4), (4,))),
    OpCase("max/values_only", lambda x: R.max(x, 0).values * 2, lambda x: torch.max(x, 0).values * 2,
           randn((3, 4))),
    OpCase("min/all", R.min, torch.min, randn((3, 4))),
    OpCase("min/dim", lambda x: R.min(x, 0), lambda x: torch.min(x, 0), randn((3, 4))),
    OpCase("min/negative_dim_keepdim", lambda x: x.min(-2, keepdim=True), lambda x: x.min(-2, keepdim=True),
           randn((2, 3, 4))),
    # At a tie max is not differentiable (no finite difference); PyTorch's choices are the reference.
    OpCase("max/all_ties_share", R.max, torch.max, with_ties, gradcheck=False),
    OpCase("max/dim_ties_first", lambda x: R.max(x, 1), lambda x: torch.max(x, 1), with_ties, gradcheck=False),
    OpCase("min/all_ties_share", R.min, torch.min, with_ties, gradcheck=False),
    OpCase("min/dim_ties_first", lambda x: R.min(x, -1), lambda x: torch.min(x, -1), with_ties, gradcheck=False),
    OpCase("argmax/all", R.argmax, torch.argmax, randn((3, 4)), grad=[]),
    OpCase("argmax/dim_keepdim", lambda x: R.argmax(x, -1, keepdim=True),
           lambda x: torch.argmax(x, -1, keepdim=True), randn((2, 3, 4)), grad=[]),
    OpCase("argmax/all_keepdim", lambda x: x.argmax(keepdim=True), lambda x: x.argmax(keepdim=True),
           randn((2, 3)), grad=[]),
    OpCase("argmin/dim", lambda x: R.argmin(x, 0), lambda x: torch.argmin(x, 0), transposed((3, 4)), grad=[]),
    OpCase("argmin/ties_first", lambda x: x.argmin(1), lambda x: x.argmin(1), with_ties, grad=[]),
    # ---- logsumexp
    OpCase("logsumexp/dim", lambda x: R.logsumexp(x, 1), lambda x: torch.logsumexp(x, 1), randn((3, 4))),
    OpCase("logsumexp/tuple_keepdim", lambda x: x.logsumexp((0, -1), keepdim=True),
           lambda x: x.logsumexp((0, -1), keepdim=True), randn((2, 3, 4))),
    OpCase("logsumexp/large_values", lambda x: R.logsumexp(x, -1), lambda x: torch.logsumexp(x, -1),
           randn((3, 5), scale=300.0, shift=500.0), atol=1e-3),
    OpCase("logsumexp/very_negative", lambda x: R.logsumexp(x, 0), lambda x: torch.logsumexp(x, 0),
           randn((4, 2), scale=10.0, shift=-1000.0), atol=1e-3),
    # found by tests/test_op_fuzz.py
    OpCase("max/dim_of_empty_tensor", lambda x: R.max(x, 1), lambda x: torch.max(x, 1), randn((0, 3))),
    OpCase("min/dim_of_empty_tensor", lambda x: x.min(-1, keepdim=True), lambda x: x.min(-1, keepdim=True),
           randn((2, 0, 3))),
    OpCase("std/constant_has_zero_gradient", lambda x: x.std(1), lambda x: x.std(1),
           lambda rng: [np.repeat(rng.standard_normal((3, 1)), 4, axis=1)], gradcheck=False),
    OpCase("logsumexp/empty", lambda x: R.logsumexp(x, 0), lambda x: torch.logsumexp(x, 0), randn((0, 3))),
    OpCase("var/empty_is_nan", R.var, torch.var, randn((0,)), gradcheck=False),
]
