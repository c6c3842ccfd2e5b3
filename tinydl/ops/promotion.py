"""Which dtype an op of several inputs computes in: PyTorch's type promotion.

NumPy and PyTorch promote differently. NumPy widens an int64 array times a float32 one
to float64, and a float32 array times a float64 0-d array to float64 as well; PyTorch
gives float32 both times. tinydl follows PyTorch, so that float32 stays float32 where
a mask, a label tensor or a 0-d constant joins in (``x * mask``).

Dtypes come in kinds, ordered bool < integer < floating < complex.

- ``promote_types(a, b)``: of two kinds, the higher one's dtype; within a kind, the
  smaller dtype holding both (NumPy's table: int8 with uint8 is int16). So int64 with
  float16 is float16 (NumPy: float64), and complex64 with float64 is complex128.
- ``result_type(*operands)``: the operands form three groups, by priority: tensors
  with dimensions, 0-d tensors, Python numbers (bool; int as int64; float as float32,
  the default float dtype; complex as complex64). Within a group the dtypes promote;
  a later group changes the result only where its kind is higher. So float32 (2, 3)
  times a float64 0-d tensor is float32, and int64 (2, 3) times 0.5 is float32.

The ops that promote (``+ - * / ** // %``, comparisons, ``where``, ``maximum``,
``minimum``, ``clamp``, ``cat``, ``stack``, the regression losses) cast their inputs to
the result type
before computing; a floating input that requires grad is cast by the ``Cast`` op, so
its gradient comes back in its own dtype. ``/`` of integers gives float32, as
PyTorch's true division. Products of matrices and ops with weights (``matmul``,
``linear``, the convolutions) promote nothing: they refuse inputs of different dtypes,
as PyTorch's do.
"""
import numbers

import numpy as np

from ..tensor import Tensor, _default_float, bool_, int64

__all__ = ["promote_types", "result_type"]

#: the kinds' order: bool < integer < floating < complex
KIND = {"b": 0, "u": 1, "i": 1, "f": 2, "c": 3}
_COMPLEX64 = np.dtype(np.complex64)


def promote_types(type1, type2):
    """The dtype both ``type1`` and ``type2`` convert to, as ``torch.promote_types``."""
    a, b = np.dtype(type1), np.dtype(type2)
    if a == b:
        return a
    kind_a, kind_b = KIND[a.kind], KIND[b.kind]
    if kind_a == kind_b:
        return np.promote_types(a, b)
    high, low = (a, b) if kind_a > kind_b else (b, a)
    if high.kind == "c" and low.kind == "f":        # complex keeps the float's precision
        return np.promote_types(high, low)
    return high


def _number_dtype(v):
    """The dtype PyTorch gives a Python (or NumPy) number among tensors."""
    if isinstance(v, (bool, np.bool_)):
        return bool_
    if isinstance(v, numbers.Integral):
        return int64
    if isinstance(v, numbers.Real):
        return _default_float
    return _COMPLEX64


def _join(high, low):
    """``high``, the group of higher priority, unless ``low`` is of a higher kind (where
    a complex number meets floating tensors, the complex dtype of their precision)."""
    if high is None or (low is not None and KIND[low.kind] > KIND[high.kind]):
        if high is not None and high.kind == "f" and low.kind == "c":
            return promote_types(high, _COMPLEX64)
        return low
    return high


def result_type(*operands):
    """The dtype of an elementwise op on ``operands`` (Tensors, arrays, numbers), as
    ``torch.result_type``: see the module docstring."""
    dims = zero_dims = numbers_ = None
    for v in operands:
        if isinstance(v, Tensor):
            v = v.array
        if hasattr(v, "dtype") and hasattr(v, "ndim") and not isinstance(v, np.generic):
            if v.ndim:
                dims = v.dtype if dims is None else promote_types(dims, v.dtype)
            else:
                zero_dims = v.dtype if zero_dims is None else promote_types(zero_dims, v.dtype)
        elif isinstance(v, (numbers.Number, np.generic)):
            dtype = _number_dtype(v)
            numbers_ = dtype if numbers_ is None else promote_types(numbers_, dtype)
        else:
            raise TypeError(f"result_type: expected Tensors, arrays or numbers, got {type(v).__name__}")
    return _join(dims, _join(zero_dims, numbers_))
