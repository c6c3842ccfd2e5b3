"""Scatter-add: ``target[index] += values`` where repeated indices add up.

Plain ``target[index] += values`` is a read-modify-write per element, so with
index [0, 0] only the last write survives. NumPy spells the accumulating
version ``np.add.at`` (unbuffered, in index order: the same summation order as
the Numba loops); CuPy's ``cupy.add.at`` uses atomics, so float sums of repeated
indices may differ in the last bits. This is the one place that knows the difference; the
backward of indexing, gather, max pooling and resampling all call it.
"""
import numpy as np

from ..backend import is_cupy_array


def scatter_add(target, index, values):
    """Add ``values`` into ``target[index]`` in place (repeats accumulate); returns ``target``."""
    if is_cupy_array(target):
        import cupy
        cupy.add.at(target, index, values)
    else:
        np.add.at(target, index, values)
    return target
