"""Op table rows: reshape/permute family, expand, cat/stack/split/chunk, indexing, gather."""
import numpy as np
import torch

import tinydl.ops.shape as S
from optable import OpCase


def randn(*shape):
    return lambda rng: [rng.standard_normal(s) for s in shape]


def transposed(shape):
    """A non-contiguous input: the transpose of a C-ordered array (keeps its strides through astype)."""
    return lambda rng: [rng.standard_normal(shape[::-1]).T]


def with_arrays(shape, *extra):
    """A float input followed by fixed (non-differentiable) index / mask arrays."""
    return lambda rng: [rng.standard_normal(shape)] + [np.array(e) for e in extra]


CASES = [
    # ---- reshape family
    OpCase("reshape/infer", lambda x: x.reshape(3, -1), lambda x: x.reshape(3, -1), randn((2, 3, 4))),
    OpCase("reshape/non_contiguous", lambda x: x.reshape(-1), lambda x: x.reshape(-1), transposed((3, 4, 2))),
    OpCase("view/tuple_arg", lambda x: x.view((4, 6)), lambda x: x.view((4, 6)), randn((2, 3, 4))),
    OpCase("flatten/default", S.flatten, torch.flatten, randn((2, 3, 4))),
    OpCase("flatten/middle_negative", lambda x: S.flatten(x, 1, -2), lambda x: torch.flatten(x, 1, -2),
           randn((2, 3, 4, 5))),
    OpCase("flatten/0d", S.flatten, torch.flatten, lambda rng: [np.asarray(rng.standard_normal())]),
    OpCase("permute/negative_dims", lambda x: S.permute(x, (-1, 0, 1)), lambda x: x.permute(-1, 0, 1),
           randn((2, 3, 4))),
    OpCase("permute/non_contiguous", lambda x: x.permute(2, 0, 1), lambda x: x.permute(2, 0, 1),
           transposed((2, 3, 4))),
    OpCase("transpose/negative", lambda x: S.transpose(x, 0, -1), lambda x: x.transpose(0, -1),
           randn((2, 3, 4))),
    OpCase("T", lambda x: x.T, lambda x: x.permute(2, 1, 0), randn((2, 3, 4))),
    OpCase("squeeze/all", S.squeeze, torch.squeeze, randn((1, 3, 1, 2))),
    OpCase("squeeze/non_one_dim_noop", lambda x: S.squeeze(x, 1), lambda x: x.squeeze(1), randn((1, 3, 1))),
    OpCase("squeeze/tuple_negative", lambda x: S.squeeze(x, (0, -1)), lambda x: x.squeeze((0, -1)),
           randn((1, 3, 1, 1))),
    OpCase("unsqueeze/negative", lambda x: S.unsqueeze(x, -1), lambda x: x.unsqueeze(-1), randn((2, 3))),
    OpCase("unsqueeze/middle", lambda x: x.unsqueeze(1), lambda x: x.unsqueeze(1), randn((2, 3))),
    OpCase("expand/leading_and_minus_one", lambda x: S.expand(x, (2, -1, 4)), lambda x: x.expand(2, -1, 4),
           randn((3, 1))),
    OpCase("expand_as", lambda x, y: x.expand_as(y) * y, lambda x, y: x.expand_as(y) * y,
           randn((1, 4), (3, 4))),
    # ---- cat / stack / split / chunk
    OpCase("cat/dim1_three", lambda a, b, c: S.cat([a, b, c], 1), lambda a, b, c: torch.cat([a, b, c], 1),
           randn((2, 1, 3), (2, 4, 3), (2, 2, 3))),
    OpCase("cat/negative_dim_same_tensor", lambda a, b: S.cat((a, b, a), -1),
           lambda a, b: torch.cat((a, b, a), -1), randn((2, 3), (2, 1))),
    OpCase("cat/non_contiguous", lambda a, b: S.cat([a, b]), lambda a, b: torch.cat([a, b]),
           lambda rng: [rng.standard_normal((3, 2)).T, rng.standard_normal((1, 3))]),
    OpCase("stack/dim0", lambda a, b: S.stack([a, b]), lambda a, b: torch.stack([a, b]), randn((2, 3), (2, 3))),
    OpCase("stack/negative_dim", lambda a, b, c: S.stack([a, b, c], -1),
           lambda a, b, c: torch.stack([a, b, c], -1), randn((2, 3), (2, 3), (2, 3))),
    OpCase("split/size", lambda x: S.split(x, 2, 1), lambda x: torch.split(x, 2, 1), randn((3, 5))),
    OpCase("split/sections_negative_dim", lambda x: x.split([1, 3, 1], -1), lambda x: x.split([1, 3, 1], -1),
           randn((2, 5))),
    OpCase("split/one_piece_used", lambda x: S.split(x, 2)[1] * 3, lambda x: torch.split(x, 2)[1] * 3,
           randn((5, 2))),
    OpCase("chunk/uneven", lambda x: S.chunk(x, 4), lambda x: torch.chunk(x, 4), randn((5, 2))),
    OpCase("chunk/dim_negative", lambda x: x.chunk(3, -1), lambda x: x.chunk(3, -1), randn((2, 7))),
    # ---- basic indexing
    OpCase("getitem/int", lambda x: x[1], lambda x: x[1], randn((3, 4))),
    OpCase("getitem/negative_int_scalar", lambda x: x[-1, 2], lambda x: x[-1, 2], randn((3, 4))),
    OpCase("getitem/slice_step", lambda x: x[::2, 1:4:2], lambda x: x[::2, 1:4:2], randn((5, 6))),
    # PyTorch has no negative steps; flip gives the same elements.
    OpCase("getitem/negative_step", lambda x: x[::-2, 1:], lambda x: x.flip(0)[::2, 1:], randn((5, 3))),
    OpCase("getitem/none_ellipsis", lambda x: x[None, ..., 1, None], lambda x: x[None, ..., 1, None],
           randn((2, 3, 4))),
    OpCase("getitem/non_contiguous", lambda x: x[1:, ::2], lambda x: x[1:, ::2], transposed((4, 5))),
    # ---- advanced indexing
    OpCase("getitem/repeated_indices", lambda x, i: x[i], lambda x, i: x[i],
           with_arrays((4, 3), [0, 2, 0, 0, 3])),
    OpCase("getitem/list_repeated", lambda x: x[[1, 1, 0]], lambda x: x[[1, 1, 0]], randn((3, 2))),
    OpCase("getitem/two_arrays_broadcast", lambda x, i, j: x[i, j], lambda x, i, j: x[i, j],
           with_arrays((3, 4), [[0], [2], [0]], [1, 1, 3])),
    OpCase("getitem/negative_indices", lambda x, i: x[:, i], lambda x, i: x[:, i],
           with_arrays((2, 4), [-1, 0, -1])),
    OpCase("getitem/mixed_basic_advanced", lambda x, i: x[1:, i, ::2], lambda x, i: x[1:, i, ::2],
           with_arrays((3, 4, 5), [[3, 0], [3, 3]])),
    OpCase("getitem/advanced_split_by_slice", lambda x, i: x[i, :, i], lambda x, i: x[i, :, i],
           with_arrays((3, 2, 4), [0, 2, 0])),
    # An int next to arrays: PyTorch applies the int first (NumPy would move the advanced dim to the front).
    OpCase("getitem/int_slice_array", lambda x, i: x[1, :, i], lambda x, i: x[1, :, i],
           with_arrays((3, 4, 5), [4, 4, 0])),
    OpCase("getitem/int_between_arrays", lambda x, i, j: x[i, :, 0, j], lambda x, i, j: x[i, :, 0, j],
           with_arrays((3, 2, 4, 5), [0, 2, 0], [1, 1, 4])),
    OpCase("getitem/none_int_arrays", lambda x, i, j: x[None, i, 1, None, j],
           lambda x, i, j: x[None, i, 1, None, j], with_arrays((3, 4, 5), [[2, 0]], [1, 1])),
    OpCase("getitem/int_mask", lambda x, m: x[1, m, ..., 0], lambda x, m: x[1, m, ..., 0],
           with_arrays((2, 4, 3, 2), [True, False, True, True])),
    OpCase("getitem/bool_mask", lambda x, m: x[m], lambda x, m: x[m],
           with_arrays((3, 4), [[True, False, True, True], [False] * 4, [True, True, False, True]])),
    OpCase("getitem/bool_mask_rows", lambda x, m: x[m, 1:], lambda x, m: x[m, 1:],
           with_arrays((4, 3), [True, False, True, True])),
    OpCase("getitem/comparison_mask", lambda x, y: x[y > 0], lambda x, y: x[y > 0], randn((3, 4), (3, 4)),
           grad=[0]),
    # ---- gather and friends
    OpCase("narrow", lambda x: S.narrow(x, -1, 1, 2), lambda x: torch.narrow(x, -1, 1, 2), randn((3, 4))),
    OpCase("gather/dim1_repeated", lambda x, i: S.gather(x, 1, i), lambda x, i: torch.gather(x, 1, i),
           with_arrays((3, 4), [[0, 0], [3, 1], [2, 2]])),
    OpCase("gather/dim0_smaller_index", lambda x, i: S.gather(x, 0, i), lambda x, i: torch.gather(x, 0, i),
           with_arrays((3, 4, 2), [[[2], [0], [2]], [[1], [1], [1]]])),
    OpCase("index_select/repeated", lambda x, i: S.index_select(x, -1, i),
           lambda x, i: torch.index_select(x, -1, i), with_arrays((2, 4), [3, 0, 3])),
    OpCase("flip", lambda x: S.flip(x, (0, -1)), lambda x: torch.flip(x, (0, -1)), randn((2, 3, 4))),
    OpCase("roll/dims", lambda x: S.roll(x, (1, -2), (0, 2)), lambda x: torch.roll(x, (1, -2), (0, 2)),
           randn((3, 2, 4))),
    OpCase("roll/flattened", lambda x: S.roll(x, 5), lambda x: torch.roll(x, 5), randn((3, 4))),
]


CASES += [
    # ---- repeat / tile / movedim
    OpCase("repeat/same_dims", lambda x: x.repeat(2, 3), lambda x: x.repeat(2, 3), randn((2, 3))),
    OpCase("repeat/new_leading_dims", lambda x: x.repeat(2, 1, 3), lambda x: x.repeat(2, 1, 3), randn((3,))),
    OpCase("repeat/non_contiguous", lambda x: x.repeat((1, 2)), lambda x: x.repeat((1, 2)), transposed((3, 2))),
    OpCase("tile/fewer_dims", lambda x: S.tile(x, (2,)), lambda x: torch.tile(x, (2,)), randn((2, 3))),
    OpCase("tile/more_dims", lambda x: x.tile(2, 1, 2), lambda x: x.tile(2, 1, 2), randn((2, 3))),
    OpCase("movedim/int", lambda x: S.movedim(x, 0, -1), lambda x: torch.movedim(x, 0, -1), randn((2, 3, 4))),
    OpCase("movedim/tuples", lambda x: x.movedim((0, 3), (2, 0)), lambda x: x.movedim((0, 3), (2, 0)),
           randn((2, 3, 4, 5))),
    # ---- tril / triu / diagonal
    OpCase("tril", S.tril, torch.tril, randn((4, 5))),
    OpCase("tril/batched_diagonal", lambda x: S.tril(x, -1), lambda x: torch.tril(x, -1), randn((2, 3, 4))),
    OpCase("triu/diagonal", lambda x: x.triu(1), lambda x: x.triu(1), randn((5, 3))),
    OpCase("diagonal/main", S.diagonal, torch.diagonal, randn((3, 4))),
    OpCase("diagonal/offset_dims", lambda x: S.diagonal(x, 1, 2, 0), lambda x: torch.diagonal(x, 1, 2, 0),
           randn((3, 2, 4))),
    OpCase("diagonal/negative_offset", lambda x: x.diagonal(-2, -1, -2), lambda x: x.diagonal(-2, -1, -2),
           randn((2, 5, 4))),
    # ---- masked_select / scatter / index_add / take_along_dim
    OpCase("masked_select", lambda x, y: S.masked_select(x, y > 0), lambda x, y: torch.masked_select(x, y > 0),
           randn((3, 4), (3, 4)), grad=[0]),
    OpCase("masked_select/broadcast_input", lambda x, y: x.masked_select(y > 0), lambda x, y: x.masked_select(y > 0),
           randn((4,), (3, 4)), grad=[0]),
    OpCase("scatter/src", lambda x, i, s: S.scatter(x, 1, i, s), lambda x, i, s: torch.scatter(x, 1, i, s),
           lambda rng: [rng.standard_normal((3, 5)), np.array([[0, 3], [4, 1], [2, 0]]), rng.standard_normal((3, 2))]),
    # src larger than index: its extra elements are unused (PyTorch's backward refuses this shape)
    OpCase("scatter/src_larger_than_index", lambda x, i, s: S.scatter(x, 0, i, s), None,
           lambda rng: [rng.standard_normal((3, 4)), np.array([[2, 0], [0, 1]]), rng.standard_normal((3, 3))]),
    OpCase("scatter/dim0_value", lambda x, i: x.scatter(0, i, 2.5), lambda x, i: x.scatter(0, i, 2.5),
           with_arrays((3, 4), [[2, 0, 1, 2]])),
    OpCase("scatter_add/repeated", lambda x, i, s: S.scatter_add(x, 1, i, s),
           lambda x, i, s: torch.scatter_add(x, 1, i, s),
           lambda rng: [rng.standard_normal((2, 4)), np.array([[0, 0, 3], [1, 2, 1]]), rng.standard_normal((2, 3))]),
    OpCase("scatter/reduce_add", lambda x, i, s: x.scatter(0, i, s, reduce="add"),
           lambda x, i, s: x.scatter_add(0, i, s),
           lambda rng: [rng.standard_normal((3, 2)), np.array([[1, 1], [1, 0]]), rng.standard_normal((2, 2))]),
    OpCase("index_add", lambda x, i, s: S.index_add(x, 0, i, s), lambda x, i, s: torch.index_add(x, 0, i, s),
           lambda rng: [rng.standard_normal((4, 3)), np.array([3, 0, 3]), rng.standard_normal((3, 3))]),
    OpCase("index_add/alpha_dim1", lambda x, i, s: x.index_add(-1, i, s, alpha=-2.0),
           lambda x, i, s: x.index_add(-1, i, s, alpha=-2.0),
           lambda rng: [rng.standard_normal((2, 4)), np.array([1, 1]), rng.standard_normal((2, 2))]),
    OpCase("take_along_dim/dim", lambda x, i: S.take_along_dim(x, i, 1), lambda x, i: torch.take_along_dim(x, i, 1),
           with_arrays((3, 4), [[0, 3], [1, 1], [2, 0]])),
    OpCase("take_along_dim/broadcast", lambda x, i: x.take_along_dim(i, 0), lambda x, i: x.take_along_dim(i, 0),
           with_arrays((3, 4), [[2], [0]])),
    OpCase("take_along_dim/flat", lambda x, i: S.take_along_dim(x, i), lambda x, i: torch.take_along_dim(x, i),
           with_arrays((3, 4), [11, 0, 5, 5])),
    OpCase("take_along_dim/argsort", lambda x: x.take_along_dim(x.argsort(1), 1),
           lambda x: x.take_along_dim(x.argsort(1), 1), randn((3, 4))),
]
