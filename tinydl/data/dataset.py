"""Datasets as PyTorch defines them: anything with ``__getitem__`` and ``__len__``.

``dataset[i]`` returns one sample (usually ``(image, label)``); a DataLoader turns
lists of samples into batches. The classes here combine datasets without copying
their data: ``Subset`` (a list of indices), ``ConcatDataset`` (one after the
other), ``random_split`` (disjoint random subsets), ``TensorDataset`` (rows of
arrays).
"""
import bisect
import math
import numbers

import numpy as np

from .. import backend
from ..tensor import Tensor

__all__ = ["Dataset", "TensorDataset", "Subset", "ConcatDataset", "random_split"]


class Dataset:
    """Base class: subclasses define ``__getitem__(index)`` and ``__len__()``."""

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__")

    def __len__(self):
        raise NotImplementedError(f"{type(self).__name__} must define __len__")

    def __add__(self, other):
        return ConcatDataset([self, other])


def _rows(data):
    """The first dimension of an array or Tensor (or len() of a sequence)."""
    return data.shape[0] if hasattr(data, "shape") else len(data)


class TensorDataset(Dataset):
    """Sample i is ``(t[i] for t in tensors)``: rows of Tensors or NumPy arrays.

    Rows of a Tensor come back as (detached) Tensors, rows of an array as arrays;
    the default collate stacks either into a batch Tensor.
    """

    def __init__(self, *tensors):
        if not tensors:
            raise ValueError("TensorDataset needs at least one tensor")
        sizes = [_rows(t) for t in tensors]
        if any(s != sizes[0] for s in sizes):
            raise ValueError(f"TensorDataset: size mismatch between tensors: first dimensions {sizes}")
        self.tensors = tuple(tensors)

    def __getitem__(self, index):
        return tuple(Tensor(t.array[index]) if isinstance(t, Tensor) else t[index] for t in self.tensors)

    def __len__(self):
        return _rows(self.tensors[0])


class Subset(Dataset):
    """The samples of ``dataset`` at ``indices``, in that order."""

    def __init__(self, dataset, indices):
        self.dataset = dataset
        self.indices = [int(i) for i in indices]

    def __getitem__(self, index):
        if isinstance(index, (list, tuple, np.ndarray)):
            return [self.dataset[self.indices[int(i)]] for i in index]
        return self.dataset[self.indices[index]]

    def __len__(self):
        return len(self.indices)


class ConcatDataset(Dataset):
    """Several datasets one after the other; index i finds its dataset by bisection
    in the running totals of their lengths."""

    def __init__(self, datasets):
        self.datasets = list(datasets)
        if not self.datasets:
            raise ValueError("ConcatDataset needs at least one dataset")
        self.cumulative_sizes = []
        total = 0
        for d in self.datasets:
            total += len(d)
            self.cumulative_sizes.append(total)

    def __len__(self):
        return self.cumulative_sizes[-1]

    def __getitem__(self, index):
        if index < 0:
            if -index > len(self):
                raise IndexError(f"ConcatDataset: index {index} out of range for length {len(self)}")
            index += len(self)
        if index >= len(self):
            raise IndexError(f"ConcatDataset: index {index} out of range for length {len(self)}")
        which = bisect.bisect_right(self.cumulative_sizes, index)
        start = self.cumulative_sizes[which - 1] if which > 0 else 0
        return self.datasets[which][index - start]


def _split_lengths(lengths, total):
    """PyTorch's rule: fractions summing to 1 become floor(total * f) each, and the
    remainder is handed out one by one, round-robin from the first subset."""
    lengths = list(lengths)
    if lengths and all(isinstance(f, float) for f in lengths) and math.isclose(sum(lengths), 1.0) \
            and all(0 <= f <= 1 for f in lengths):
        counts = [int(math.floor(total * f)) for f in lengths]
        for i in range(total - sum(counts)):
            counts[i % len(counts)] += 1
        return counts
    if not all(isinstance(n, numbers.Integral) and n >= 0 for n in lengths):
        raise ValueError(f"random_split: lengths must be non-negative ints or fractions summing to 1, got {lengths}")
    if sum(lengths) != total:
        raise ValueError(f"random_split: the lengths {lengths} sum to {sum(lengths)}, "
                         f"not to the dataset's length {total}")
    return [int(n) for n in lengths]


def random_split(dataset, lengths, generator=None, seed=None):
    """Split ``dataset`` into disjoint random ``Subset``s of the given lengths.

    ``lengths``: ints summing to ``len(dataset)``, or fractions summing to 1
    (``random_split(ds, [0.8, 0.2])``). The permutation comes from ``seed`` (an
    int), else ``generator`` (a ``np.random.Generator``), else tinydl's global
    generator (``td.manual_seed``).
    """
    counts = _split_lengths(lengths, len(dataset))
    if seed is not None:
        rng = np.random.default_rng(seed)
    elif generator is not None:
        rng = generator
    else:
        rng = backend.rng_for(np)
    order = rng.permutation(len(dataset)).tolist()
    subsets, start = [], 0
    for n in counts:
        subsets.append(Subset(dataset, order[start:start + n]))
        start += n
    return subsets
