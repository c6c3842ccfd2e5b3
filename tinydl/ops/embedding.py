"""Embedding: a lookup table of vectors, one row per token id (torch.nn.functional.embedding).

The forward pass is plain row indexing, ``y = weight[input]``; the backward pass is the
lesson: each row of the table gets the sum of the upstream gradients of every position
that looked it up, a scatter-add (``kernels.scatter.scatter_add``), and rows nobody used
get zero. Looking a row up is the same as multiplying a one-hot vector by the table, so
this is the gradient of a linear layer whose input is one-hot, without forming it.
"""
from ..autograd import Function
from ..backend import get_array_module
from ..kernels.scatter import scatter_add
from ..tensor import Tensor
from .shape import _check_index_range

__all__ = ["embedding"]


class Embedding(Function):
    """y[..., :] = W[i[...], :]  for W of shape (num_embeddings, D) and integer ids i.

    dL/dW[r] = sum over positions p with i[p] = r of gy[p]   (scatter-add of gy's rows)
    with the row ``padding_idx`` (if any) kept at zero, and, with ``scale_grad_by_freq``,
    each gy[p] divided first by the number of times i[p] occurs in the batch.
    """

    double_backward = "linear"

    def forward(ctx, weight, indices, padding_idx, scale_grad_by_freq):
        ctx.save_for_backward(indices)
        ctx.weight_shape, ctx.padding_idx, ctx.scale = weight.shape, padding_idx, scale_grad_by_freq
        return weight[indices]

    def backward(ctx, gy):
        indices, = ctx.saved_tensors
        xp = get_array_module(gy)
        flat = indices.reshape(-1)
        rows = gy.reshape(flat.size, ctx.weight_shape[1])
        if ctx.scale:   # count of each id in this batch, looked up per position
            counts = xp.bincount(flat, minlength=ctx.weight_shape[0])
            rows = rows / counts[flat][:, None].astype(gy.dtype)
        gw = scatter_add(xp.zeros(ctx.weight_shape, dtype=gy.dtype), flat, rows)
        if ctx.padding_idx is not None:
            gw[ctx.padding_idx] = 0
        return gw, None


def _renorm_rows_(weight, indices, max_norm, norm_type):
    """PyTorch's embedding_renorm_: rows of ``weight`` used by ``indices`` whose ``norm_type``
    norm exceeds ``max_norm`` are scaled in place to max_norm / (norm + 1e-7) of themselves."""
    xp = get_array_module(weight)
    rows = xp.unique(indices)
    norms = xp.linalg.norm(weight[rows], ord=norm_type, axis=1)
    scale = xp.where(norms > max_norm, max_norm / (norms + 1e-7), 1.0).astype(weight.dtype)
    weight[rows] *= scale[:, None]


def embedding(input, weight, padding_idx=None, max_norm=None, norm_type=2.0, scale_grad_by_freq=False,
              sparse=False):
    """Rows of ``weight`` (num_embeddings, D) picked by the integer ids ``input`` (any shape):
    the output has shape input.shape + (D,).

    padding_idx   that row gets no gradient (it stays what it is, usually zeros)
    max_norm      before the lookup, rows used here whose norm exceeds it are rescaled
                  IN PLACE in ``weight`` to that norm, as PyTorch (outside the graph)
    scale_grad_by_freq  divide each position's gradient by its id's count in the batch
    sparse        PyTorch's sparse gradient; tinydl has only dense gradients
    """
    if sparse:
        raise NotImplementedError("embedding: sparse=True (sparse gradients) is not supported by "
                                  "tinydl; the gradient of weight is a dense array")
    if not isinstance(weight, Tensor) or weight.ndim != 2:
        raise ValueError(f"embedding: weight must be a 2-D tensor (num_embeddings, embedding_dim), "
                         f"got shape {getattr(weight, 'shape', None)}")
    idx = input.array if isinstance(input, Tensor) else weight._xp.asarray(input)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"embedding: input must hold integer ids (int64 or int32), got dtype {idx.dtype}")
    n = weight.shape[0]
    _check_index_range(idx, n, "embedding", f"a table of {n} embeddings")
    if padding_idx is not None:
        if not -n <= padding_idx < n:
            raise ValueError(f"embedding: padding_idx {padding_idx} must be within the "
                             f"num_embeddings ({n}) rows")
        padding_idx %= n
    if max_norm is not None:    # on the raw array: outside the graph, as PyTorch
        _renorm_rows_(weight.array, idx, max_norm, norm_type)
    return Embedding.apply(weight, idx, padding_idx=padding_idx,
                           scale_grad_by_freq=bool(scale_grad_by_freq))
