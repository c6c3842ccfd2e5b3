"""Encodings of integer labels: one-hot vectors (``torch.nn.functional.one_hot``).

Not differentiable (integers in, integers out): a plain function on the array, no
Function. Its differentiable cousins are the embedding lookup (``ops/embedding.py``:
a one-hot vector times a table, without forming the vector) and the cross entropy's
target (``ops/loss.py``).
"""
import numpy as np

from ..backend import get_array_module
from ..tensor import Tensor

__all__ = ["one_hot"]


def one_hot(tensor, num_classes=-1):
    """out[..., k] = 1 where tensor[...] == k, else 0, as ``torch.nn.functional.one_hot``.

    ``tensor`` holds int64 class indices (any shape); the result has shape
    ``tensor.shape + (num_classes,)`` and dtype int64. ``num_classes=-1`` takes the
    largest index + 1. Negative indices, and indices >= num_classes, are errors."""
    if not isinstance(tensor, Tensor):
        raise TypeError(f"one_hot: expected a Tensor of int64 class indices, got {type(tensor).__name__}")
    if tensor.dtype != np.int64:
        raise RuntimeError(f"one_hot: only applicable to an index tensor of type int64 (LongTensor), got "
                           f"dtype {tensor.dtype} (shape {tuple(tensor.shape)})")
    labels = tensor.array
    xp = get_array_module(labels)
    num_classes = int(num_classes)
    if labels.size == 0:
        if num_classes <= 0:
            raise RuntimeError(f"one_hot: can not infer the total number of classes from an empty tensor "
                               f"(shape {tuple(tensor.shape)}); pass num_classes > 0")
    else:
        low, high = int(labels.min()), int(labels.max())       # (one device sync each, on a GPU)
        if low < 0:
            raise RuntimeError(f"one_hot: class values must be non-negative, got {low} in a tensor of shape "
                               f"{tuple(tensor.shape)}")
        if num_classes == -1:
            num_classes = high + 1
        elif high >= num_classes:
            raise RuntimeError(f"one_hot: class values must be smaller than num_classes={num_classes}, got "
                               f"{high} in a tensor of shape {tuple(tensor.shape)}")
    classes = xp.arange(num_classes, dtype=np.int64)
    return Tensor((labels[..., None] == classes).astype(np.int64))
