"""Datasets as PyTorch defines them: anything with ``__getitem__`` and ``__len__``.

``dataset[i]`` returns one sample (usually ``(image, label)``); a DataLoader turns
lists of samples into batches. The classes here combine datasets without copying
their data: ``Subset`` (a list of indices), ``ConcatDataset`` (one after the
other), ``random_split`` (disjoint random subsets), ``TensorDataset`` (rows of
arrays), ``StackDataset`` (the samples of several datasets side by side).

An ``IterableDataset`` is the other kind: a stream with ``__iter__`` and no
indexing (lines of a file, an endless generator); the DataLoader reads it in
order and batches consecutive items.

``Dataset`` and ``IterableDataset`` are ``typing.Generic`` in the sample type, so
``class Digits(Dataset[tuple])`` annotates like PyTorch's.
"""
import bisect
import collections.abc
import math
import numbers
import warnings
from typing import Generic, TypeVar

import numpy as np

from .. import backend
from ..tensor import Tensor

__all__ = ["Dataset", "IterableDataset", "TensorDataset", "StackDataset", "Subset", "ConcatDataset",
           "ChainDataset", "random_split"]

T_co = TypeVar("T_co", covariant=True)


class Dataset(Generic[T_co]):
    """Base class: subclasses define ``__getitem__(index)`` and ``__len__()``."""

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__")

    def __len__(self):
        raise NotImplementedError(f"{type(self).__name__} must define __len__")

    def __add__(self, other):
        return ConcatDataset([self, other])


class IterableDataset(Dataset[T_co], collections.abc.Iterable):
    """Base class of a stream of samples: subclasses define ``__iter__()`` (``__len__`` optional).

    A DataLoader iterates it from the start each epoch, without a sampler (no shuffle),
    grouping consecutive samples into batches. ``a + b`` chains two streams.
    """

    def __iter__(self):
        raise NotImplementedError(f"{type(self).__name__} must define __iter__")

    def __len__(self):
        # a stream's length is unknown unless the subclass says (TypeError, as len() of a non-sized object)
        raise TypeError(f"object of type '{type(self).__name__}' has no len()")

    def __add__(self, other):
        return ChainDataset([self, other])


class ChainDataset(IterableDataset):
    """Several IterableDatasets one after the other (each read to its end)."""

    def __init__(self, datasets):
        self.datasets = datasets

    def __iter__(self):
        for d in self.datasets:
            if not isinstance(d, IterableDataset):
                raise TypeError(f"ChainDataset only holds IterableDatasets, got {type(d).__name__}")
            yield from d

    def __len__(self):
        return sum(len(d) for d in self.datasets)


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


class StackDataset(Dataset):
    """The samples of several datasets of one length side by side, as a tuple
    (``StackDataset(images, texts)[i] == (images[i], texts[i])``) or a dict
    (``StackDataset(image=images, text=texts)[i] == {'image': ..., 'text': ...}``)."""

    def __init__(self, *args, **kwargs):
        if args and kwargs:
            raise ValueError("StackDataset: give the datasets as positional arguments (tuple samples) or "
                             "as keyword arguments (dict samples), not both")
        datasets = args or tuple(kwargs.values())
        if not datasets:
            raise ValueError("StackDataset: at least one dataset should be passed")
        lengths = [len(d) for d in datasets]
        if any(n != lengths[0] for n in lengths):
            raise ValueError(f"StackDataset: size mismatch between datasets: lengths {lengths}")
        self._length = lengths[0]
        self.datasets = args if args else kwargs

    def __getitem__(self, index):
        if isinstance(self.datasets, dict):
            return {k: d[index] for k, d in self.datasets.items()}
        return tuple(d[index] for d in self.datasets)

    def __len__(self):
        return self._length


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
        for d in self.datasets:
            if isinstance(d, IterableDataset):
                raise TypeError("ConcatDataset does not support IterableDataset (use ChainDataset)")
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
    """PyTorch's rule. ``lengths`` summing to 1 (within rounding) are fractions: each subset
    gets floor(total * f), and the remainder is handed out one by one, round-robin from the
    first subset ([1, 0] counts as fractions too). Otherwise they are counts (ints, NumPy
    ints or 0-d integer Tensors) summing to ``total``."""
    if isinstance(lengths, Tensor):
        lengths = lengths.tolist()
    lengths = [n.item() if isinstance(n, Tensor) and n.ndim == 0 else n for n in lengths]
    if not all(isinstance(n, numbers.Real) and not isinstance(n, bool) for n in lengths):
        raise ValueError(f"random_split: lengths must be numbers, got {lengths}")
    if lengths and math.isclose(sum(lengths), 1) and sum(lengths) <= 1:
        for i, f in enumerate(lengths):
            if not 0 <= f <= 1:
                raise ValueError(f"random_split: fraction at index {i} ({f}) is not between 0 and 1")
        counts = [int(math.floor(total * f)) for f in lengths]
        for i in range(total - sum(counts)):
            counts[i % len(counts)] += 1
        for i, n in enumerate(counts):
            if n == 0:
                warnings.warn(f"random_split: the split at index {i} is empty", stacklevel=3)
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
    (``random_split(ds, [0.8, 0.2])``; 10 items in [0.33, 0.33, 0.34] give 4, 3, 3).
    Unlike PyTorch, negative counts are refused. The permutation comes from ``seed`` (an
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
