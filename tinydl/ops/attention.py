"""Scaled dot-product attention, as ``torch.nn.functional.scaled_dot_product_attention``.

Each query vector q_i looks at every key k_j, scores how well they match, and returns
the average of the values v_j weighted by the softmax of those scores:

    scores = Q K^T * scale + B               (L, S); scale = 1 / sqrt(E) by default
    A      = softmax(scores, along S)        each row sums to 1
    out    = A V                             (L, Ev)

Q is (..., L, E), K (..., S, E), V (..., S, Ev); the leading dims (batch, heads)
broadcast. B is the attention bias built from the masks: 0 where query i may look at
key j and -inf where it may not, so exp(-inf) = 0 removes key j from row i:

  * a bool ``attn_mask``: True = may attend (note: nn.MultiheadAttention's bool masks
    mean the opposite, True = masked out);
  * a float ``attn_mask`` is added to the scores as it is;
  * ``is_causal``: query i sees keys j <= i only (the lower triangle of an (L, S)
    matrix, aligned at its top-left corner).

A row whose keys are all masked has no softmax (0 / 0); as PyTorch's, such a row gets
weights 0 and so output 0, and no gradient.

``enable_gqa`` (grouped-query attention): K and V may have fewer heads (dim -3) than
Q; each key/value head then serves Hq / Hkv consecutive query heads.

Built from differentiable ops (matmul, softmax, dropout, where): autograd gives the
gradients with respect to Q, K, V and a float mask.
"""
import math

import numpy as np

from ..tensor import Tensor
from .activation import softmax
from .dropout import dropout
from .math import matmul

__all__ = ["scaled_dot_product_attention"]


def attention_bias(mask, dtype, op, what="attn_mask", allowed=False):
    """A mask as an additive float bias in ``dtype``: a bool mask gives -inf where the
    key is masked out (where the mask is False if ``allowed``, True otherwise), a float
    mask is the bias itself; None stays None."""
    if mask is None:
        return None
    if mask.dtype == np.bool_:
        blocked = ~mask if allowed else mask
        return mask.new_zeros(*mask.shape, dtype=dtype).masked_fill(blocked, -math.inf)
    if mask.dtype != dtype:
        raise RuntimeError(f"{op}: expected {what} to be bool or of the query's dtype ({dtype}), "
                           f"got {mask.dtype} (shape {tuple(mask.shape)})")
    return mask


def causal_bias(query, key):
    """0 on and below the diagonal of an (L, S) matrix, -inf above it: query i sees keys j <= i."""
    xp = query._xp
    allowed = xp.tril(xp.ones((query.shape[-2], key.shape[-2]), dtype=bool))
    return attention_bias(Tensor(allowed), query.dtype, "", allowed=True)


def masked_softmax(scores, safe=True):
    """softmax along the last dim; with ``safe``, a row that is -inf everywhere (every key
    masked) gives weights 0 instead of 0 / 0 = nan. The row is zeroed before the softmax
    too: its nan would otherwise reach the gradients through softmax's backward."""
    if not safe:
        return softmax(scores, -1)
    # (both fills always: asking the host whether any row is dead would be a GPU sync)
    dead = Tensor((scores.array == -math.inf).all(axis=-1, keepdims=True))
    return softmax(scores.masked_fill(dead, 0), -1).masked_fill(dead, 0)


def attend(query, key, value, bias=None, dropout_p=0.0, scale=None, safe=True):
    """(A V, A) with A = dropout(softmax(Q K^T * scale + bias)); the core that
    scaled_dot_product_attention and nn.MultiheadAttention share."""
    scale = 1 / math.sqrt(query.shape[-1]) if scale is None else scale
    scores = matmul(query * scale, key.transpose(-2, -1))
    if bias is not None:
        scores = scores + bias
    weights = masked_softmax(scores, safe and bias is not None)      # (no mask: no row all -inf)
    if dropout_p > 0:
        weights = dropout(weights, dropout_p, training=True)
    return matmul(weights, value), weights


def _repeat_heads(t, groups):
    """(..., H, S, E) -> (..., H * groups, S, E), each head repeated ``groups`` times in a row
    (as repeat_interleave on dim -3); expand's backward sums the copies' gradients."""
    if groups == 1:
        return t
    *lead, h, s, e = t.shape
    return t.unsqueeze(-3).expand(*lead, h, groups, s, e).reshape(*lead, h * groups, s, e)


def _check(query, key, value, attn_mask, is_causal, enable_gqa):
    op = "scaled_dot_product_attention"
    shapes = f"query {tuple(query.shape)}, key {tuple(key.shape)}, value {tuple(value.shape)}"
    if min(query.ndim, key.ndim, value.ndim) < 2:
        raise RuntimeError(f"{op}: query, key and value need at least 2 dims (..., length, features), got {shapes}")
    if query.dtype.kind != "f" or not query.dtype == key.dtype == value.dtype:
        raise RuntimeError(f"{op}: expected query, key and value of one floating dtype, got "
                           f"{query.dtype}, {key.dtype}, {value.dtype} ({shapes})")
    if key.shape[-1] != query.shape[-1]:
        raise RuntimeError(f"{op}: query and key must have the same feature size (last dim), got {shapes}")
    if key.shape[-2] != value.shape[-2]:
        raise RuntimeError(f"{op}: key and value must have the same length (dim -2), got {shapes}")
    if is_causal and attn_mask is not None:
        raise RuntimeError(f"{op}: an explicit attn_mask should not be set when is_causal=True")
    groups = 1
    if enable_gqa and min(query.ndim, key.ndim, value.ndim) >= 3:
        hq, hk, hv = query.shape[-3], key.shape[-3], value.shape[-3]
        if hk != hv or hq % hk:
            raise RuntimeError(f"{op}: with enable_gqa, key and value need one number of heads (dim -3) that "
                               f"divides the query's, got {shapes}")
        groups = hq // hk
    key_batch, value_batch = key.shape[:-2], value.shape[:-2]
    if groups > 1:      # the heads as they will be after _repeat_heads
        key_batch, value_batch = (b[:-1] + (b[-1] * groups,) for b in (key_batch, value_batch))
    try:
        out = np.broadcast_shapes(query.shape[:-2], key_batch, value_batch) + (query.shape[-2], key.shape[-2])
        if attn_mask is not None:
            np.broadcast_shapes(attn_mask.shape, out)
    except ValueError:
        mask = "" if attn_mask is None else f", attn_mask {tuple(attn_mask.shape)}"
        raise RuntimeError(f"{op}: the batch dims do not broadcast: {shapes}{mask}") from None
    return groups


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                                 enable_gqa=False):
    """softmax(Q K^T * scale + B) V (module docstring): query (..., Hq, L, E), key (..., H, S, E),
    value (..., H, S, Ev) -> (..., Hq, L, Ev).

    ``attn_mask``: bool (True = may attend) or float (added), broadcastable to (..., L, S).
    ``dropout_p``: dropout on the attention weights, applied whenever > 0 (as PyTorch's: pass
    0.0 in evaluation). ``scale``: defaults to 1 / sqrt(E). ``enable_gqa``: H may divide Hq."""
    groups = _check(query, key, value, attn_mask, is_causal, enable_gqa)
    key, value = _repeat_heads(key, groups), _repeat_heads(value, groups)
    bias = causal_bias(query, key) if is_causal else attention_bias(
        attn_mask, query.dtype, "scaled_dot_product_attention", allowed=True)
    return attend(query, key, value, bias, dropout_p, scale)[0]
