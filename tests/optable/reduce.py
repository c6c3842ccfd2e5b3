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


def with_zeros(shape, positions):
    """Values away from 0 except exact zeros at ``positions``: products' gradients through zeros."""
    def make(rng):
        x = rng.uniform(0.5, 1.5, shape) * rng.choice([-1.0, 1.0], shape)
        for p in positions:
            x[p] = 0.0
        return [x]
    return make


def tie_free(*shape):
    """Distinct values, well apart (sort, topk, median: no finite-difference step reorders them)."""
    return lambda rng: [rng.permutation(int(np.prod(shape))).reshape(shape) * 0.1 + rng.uniform(-0.01, 0.01, shape)]


CASES += [
    # ---- prod: without zeros, one zero in a row (only it gets a gradient), two zeros (none does)
    OpCase("prod/all", R.prod, torch.prod, with_zeros((3, 4), [])),
    OpCase("prod/dim", lambda x: R.prod(x, 1), lambda x: torch.prod(x, 1), with_zeros((3, 4), [])),
    OpCase("prod/negative_dim_keepdim", lambda x: x.prod(-1, keepdim=True), lambda x: x.prod(-1, keepdim=True),
           with_zeros((2, 3, 4), [])),
    OpCase("prod/one_zero", lambda x: x.prod(1), lambda x: x.prod(1), with_zeros((3, 4), [(0, 1), (2, 3)])),
    OpCase("prod/two_zeros", lambda x: x.prod(0), lambda x: x.prod(0), with_zeros((3, 4), [(0, 1), (2, 1), (1, 2)])),
    OpCase("prod/all_one_zero", R.prod, torch.prod, with_zeros((2, 3), [(1, 1)])),
    OpCase("prod/non_contiguous", lambda x: x.prod(0), lambda x: x.prod(0), transposed((3, 4))),
    OpCase("prod/empty_dim", lambda x: x.prod(1), lambda x: x.prod(1), randn((2, 0))),
    # ---- cumsum / cumprod
    OpCase("cumsum/dim1", lambda x: R.cumsum(x, 1), lambda x: torch.cumsum(x, 1), randn((3, 4))),
    OpCase("cumsum/negative_dim", lambda x: x.cumsum(-1), lambda x: x.cumsum(-1), randn((2, 3, 4))),
    OpCase("cumsum/non_contiguous", lambda x: x.cumsum(0), lambda x: x.cumsum(0), transposed((4, 3))),
    OpCase("cumsum/0d", lambda x: x.cumsum(0), lambda x: x.cumsum(0), lambda rng: [np.asarray(rng.standard_normal())]),
    OpCase("cumprod/dim", lambda x: R.cumprod(x, 1), lambda x: torch.cumprod(x, 1), with_zeros((3, 5), [])),
    OpCase("cumprod/zeros", lambda x: x.cumprod(1), lambda x: x.cumprod(1),
           with_zeros((4, 5), [(0, 0), (1, 2), (2, 4), (3, 1), (3, 3)])),
    OpCase("cumprod/negative_dim_zero", lambda x: x.cumprod(-2), lambda x: x.cumprod(-2),
           with_zeros((2, 4, 3), [(0, 1, 0), (1, 0, 2), (1, 2, 2)])),
    # ---- amax / amin (ties share the gradient evenly)
    OpCase("amax/tuple_dims", lambda x: R.amax(x, (0, 2)), lambda x: torch.amax(x, (0, 2)), randn((2, 3, 4))),
    OpCase("amax/all", R.amax, torch.amax, randn((3, 4))),
    OpCase("amax/negative_dim_keepdim", lambda x: x.amax(-1, keepdim=True), lambda x: x.amax(-1, keepdim=True),
           randn((3, 4))),
    OpCase("amin/dim", lambda x: R.amin(x, 1), lambda x: torch.amin(x, 1), transposed((4, 3))),
    OpCase("amax/ties_share", lambda x: x.amax(1), lambda x: x.amax(1), with_ties, gradcheck=False),
    OpCase("amin/ties_share_all", lambda x: x.amin(), lambda x: x.amin(), with_ties, gradcheck=False),
    # ---- norm (torch.linalg.vector_norm's gradient: 0 at a zero vector)
    OpCase("norm/fro_all", R.norm, torch.norm, randn((3, 4))),
    OpCase("norm/p2_dim", lambda x: x.norm(2, dim=1), lambda x: x.norm(2, dim=1), randn((3, 4))),
    OpCase("norm/p1_keepdim", lambda x: R.norm(x, 1, -1, keepdim=True), lambda x: torch.norm(x, 1, -1, keepdim=True),
           randn((2, 3, 4))),
    OpCase("norm/p3_tuple", lambda x: R.norm(x, 3, (0, 2)), lambda x: torch.norm(x, 3, (0, 2)), randn((2, 3, 4))),
    OpCase("norm/p1.5", lambda x: x.norm(1.5, 0), lambda x: x.norm(1.5, 0), randn((4, 3))),
    OpCase("norm/p0.5", lambda x: x.norm(0.5, 1), lambda x: x.norm(0.5, 1), randn((3, 4)), gc_atol=1e-4),
    OpCase("norm/inf", lambda x: x.norm(float("inf"), 1), lambda x: x.norm(float("inf"), 1), randn((3, 4))),
    OpCase("norm/neg_inf", lambda x: x.norm(-float("inf")), lambda x: x.norm(-float("inf")), randn((3, 4))),
    OpCase("norm/p0", lambda x: x.norm(0, 1), lambda x: x.norm(0, 1), randn((3, 4))),
    OpCase("norm/fro_keepdim_two_dims", lambda x: x.norm(dim=(1, 2), keepdim=True),
           lambda x: x.norm(dim=(1, 2), keepdim=True), randn((2, 3, 4))),
    OpCase("norm/zero_row", lambda x: x.norm(dim=1), lambda x: x.norm(dim=1),
           lambda rng: [np.concatenate([np.zeros((1, 3)), rng.standard_normal((2, 3))])], gradcheck=False),
    OpCase("norm/p3_zero_row", lambda x: x.norm(3, 1), lambda x: x.norm(3, 1),
           lambda rng: [np.concatenate([np.zeros((1, 3)), rng.standard_normal((2, 3))])], gradcheck=False),
    OpCase("norm/inf_ties", lambda x: x.norm(float("inf"), 1), lambda x: x.norm(float("inf"), 1),
           lambda rng: [np.array([[1.0, -3.0, 3.0], [2.0, 0.5, -2.0]])], gradcheck=False),
    # ---- sort / topk / median / kthvalue: values gathered, the gradient scattered back
    OpCase("sort/default", R.sort, torch.sort, tie_free(3, 5)),
    OpCase("sort/dim0_descending", lambda x: R.sort(x, 0, descending=True),
           lambda x: torch.sort(x, 0, descending=True), tie_free(4, 3)),
    OpCase("sort/stable_ties", lambda x: x.sort(dim=-1, stable=True), lambda x: x.sort(dim=-1, stable=True),
           lambda rng: [np.array([[2.0, 1.0, 2.0, 1.0, 3.0], [0.5, 0.5, 0.5, -1.0, 0.5]])], gradcheck=False),
    OpCase("sort/stable_ties_descending", lambda x: x.sort(dim=1, descending=True, stable=True),
           lambda x: x.sort(dim=1, descending=True, stable=True),
           lambda rng: [np.array([[2.0, 1.0, 2.0, 1.0, 3.0], [0.5, 0.5, 0.5, -1.0, 0.5]])], gradcheck=False),
    OpCase("sort/non_contiguous", lambda x: x.sort(0), lambda x: x.sort(0),
           lambda rng: [tie_free(4, 3)(rng)[0].T]),
    OpCase("topk/largest", lambda x: R.topk(x, 2), lambda x: torch.topk(x, 2), tie_free(3, 5)),
    OpCase("topk/smallest_dim0", lambda x: x.topk(3, dim=0, largest=False), lambda x: x.topk(3, dim=0, largest=False),
           tie_free(4, 2, 3)),
    OpCase("topk/values_only", lambda x: x.topk(1, -1).values * 2, lambda x: x.topk(1, -1).values * 2,
           tie_free(2, 4)),
    OpCase("median/all_odd", R.median, torch.median, tie_free(3, 5)),
    OpCase("median/all_even_lower", R.median, torch.median, tie_free(2, 4)),
    OpCase("median/dim", lambda x: R.median(x, 1), lambda x: torch.median(x, 1), tie_free(3, 4)),
    OpCase("median/dim_keepdim", lambda x: x.median(0, keepdim=True), lambda x: x.median(0, keepdim=True),
           tie_free(5, 3)),
    OpCase("median/all_ties_share", R.median, torch.median,
           lambda rng: [np.array([[1.0, 2.0, 2.0], [3.0, 2.0, 0.0]])], gradcheck=False),
    OpCase("kthvalue/dim", lambda x: R.kthvalue(x, 2, 1), lambda x: torch.kthvalue(x, 2, 1), tie_free(3, 4)),
    OpCase("kthvalue/default_keepdim", lambda x: x.kthvalue(3, keepdim=True), lambda x: x.kthvalue(3, keepdim=True),
           tie_free(2, 3, 5)),
]
