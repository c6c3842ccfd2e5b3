"""DataLoader: samples -> shuffled, batched, collated Tensors, optionally prefetched.

One epoch is::

    sampler         the order of the sample indices (sequential, or a seeded shuffle)
    batch sampler   groups them into lists of batch_size (the last one dropped if drop_last)
    fetch           dataset[i] for each index of a batch, then collate_fn(list) -> batch
    device          the batch's Tensors moved to ``device``

Reproducibility. The loader has one integer ``seed``: the ``seed`` argument, else
one drawn from ``generator`` (a ``np.random.Generator``), else one drawn from
tinydl's global generator, so ``td.manual_seed`` fixes it. Everything random is
a pure function of it:

* the shuffle of epoch e is ``default_rng([seed, 0, e]).permutation(n)``: a new
  order every epoch, and the same orders in every run;
* the random transforms applied to sample i in epoch e draw from
  ``default_rng([seed, 1, e, i])`` (installed with ``transforms.use_rng``), so a
  sample's augmentation does not depend on which thread fetched it, or when.

Resuming. ``state_dict()`` records the seed, the epoch and how many batches of it
were already handed out; ``load_state_dict`` on a fresh loader makes the next
``iter()`` continue that epoch with the remaining batches (identical to the
uninterrupted run), and later epochs follow as before.

Prefetch. ``prefetch=k`` loads up to k batches ahead in a background thread,
``num_workers=w`` fetches with w threads (OpenCV decoding releases the GIL).
Batches come out in order and equal to those of the plain loop, because each
batch is a pure function of its indices and the seed.

Unbatched. ``batch_size=None`` turns automatic batching off: each sample (in the
sampler's order) is passed alone through ``collate_fn``, by default
``default_convert`` (arrays and NumPy scalars become Tensors, nothing is stacked).

Streams. An ``IterableDataset`` has no indices: it is read from its start each
epoch, in the calling thread (``num_workers``/``prefetch`` have no effect on it),
and consecutive samples are grouped into batches. PyTorch instead gives each
worker process its own copy of the stream, which repeats every item per worker
unless the dataset shards itself with ``get_worker_info()``; here it is read
once, and ``get_worker_info()`` is None in it.
"""
import collections.abc
import copy
import itertools
import multiprocessing
import threading
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as _FutureTimeout
from typing import Generic, TypeVar

import numpy as np

from .. import backend
from ..tensor import Tensor
from . import transforms as _transforms
from .dataset import IterableDataset

__all__ = ["Sampler", "SequentialSampler", "RandomSampler", "SubsetRandomSampler", "WeightedRandomSampler",
           "BatchSampler", "DataLoader", "default_collate", "default_convert", "get_worker_info", "WorkerInfo"]

T_co = TypeVar("T_co", covariant=True)

_SEED_BOUND = 2 ** 63     # seeds stay below this, so a checkpoint stores them as int64


def _draw_seed(generator=None):
    rng = generator if generator is not None else backend.rng_for(np)
    return int(rng.integers(0, _SEED_BOUND))


def _check_seed(seed):
    seed = int(seed)
    if not 0 <= seed < _SEED_BOUND:
        raise ValueError(f"seed must be in [0, 2**63), got {seed}")
    return seed


# ================================================================ samplers
class Sampler(Generic[T_co]):
    """Iterates over dataset indices (or, for a batch sampler, lists of them)."""

    def __iter__(self):
        raise NotImplementedError

    def __len__(self):
        raise NotImplementedError


class SequentialSampler(Sampler):
    """0, 1, ..., len(data_source) - 1."""

    def __init__(self, data_source):
        self.data_source = data_source

    def __iter__(self):
        return iter(range(len(self.data_source)))

    def __len__(self):
        return len(self.data_source)


class RandomSampler(Sampler):
    """A seeded random order of the indices, new each epoch.

    Epoch e uses ``default_rng([seed, 0, e])``. ``set_epoch(e)`` selects the epoch
    (the DataLoader calls it); used on its own, each ``iter()`` moves to the next
    epoch. ``replacement=True`` draws ``num_samples`` indices with replacement;
    without replacement ``num_samples`` may exceed the length (whole permutations
    are chained, as PyTorch does).
    """

    def __init__(self, data_source, replacement=False, num_samples=None, generator=None, seed=None):
        if not isinstance(replacement, bool):     # (the string 'False' would be true)
            raise TypeError(f"RandomSampler: replacement must be a bool, got {replacement!r}")
        self.data_source = data_source
        self.replacement = replacement
        self._num_samples = num_samples
        if num_samples is not None and (not isinstance(num_samples, int) or num_samples <= 0):
            raise ValueError(f"RandomSampler: num_samples must be a positive int, got {num_samples}")
        if self.num_samples == 0 and not isinstance(self, SubsetRandomSampler):   # (PyTorch's takes an empty subset)
            # as PyTorch's, at construction: an empty dataset would fail later, deep in iteration
            raise ValueError("RandomSampler: num_samples should be a positive integer value, but got num_samples=0 "
                             "(the dataset is empty)")
        self.seed = _check_seed(seed) if seed is not None else _draw_seed(generator)
        self.epoch = 0

    @property
    def num_samples(self):
        return len(self.data_source) if self._num_samples is None else self._num_samples

    def set_epoch(self, epoch):
        self.epoch = int(epoch)

    def indices(self, epoch):
        """The index order of ``epoch`` (an int64 array)."""
        n = len(self.data_source)
        rng = np.random.default_rng([self.seed, 0, int(epoch)])
        if self.replacement:
            return rng.integers(0, n, size=self.num_samples)
        chunks, have = [], 0
        while have < self.num_samples:
            chunks.append(rng.permutation(n))
            have += n
        return np.concatenate(chunks)[:self.num_samples] if len(chunks) > 1 else chunks[0][:self.num_samples]

    def __iter__(self):
        order = self.indices(self.epoch)
        self.epoch += 1
        return iter(order.tolist())

    def __len__(self):
        return self.num_samples

    def state_dict(self):
        return {"seed": self.seed, "epoch": self.epoch}

    def load_state_dict(self, state):
        self.seed = _check_seed(state["seed"])
        self.epoch = int(state["epoch"])


class SubsetRandomSampler(RandomSampler):
    """The given ``indices`` in a seeded random order, new each epoch."""

    def __init__(self, indices, generator=None, seed=None):
        self.subset = [int(i) for i in indices]
        super().__init__(self.subset, generator=generator, seed=seed)

    def __iter__(self):
        order = self.indices(self.epoch)
        self.epoch += 1
        return iter([self.subset[i] for i in order.tolist()])


class WeightedRandomSampler(RandomSampler):
    """``num_samples`` indices in [0, len(weights)), index i drawn with probability
    weights[i] / sum(weights) (torch.utils.data.WeightedRandomSampler; with replacement
    by default). Class-balanced sampling (the notes' "label shuffle"): give every sample
    the weight 1 / (number of samples of its class); each class then comes up equally
    often. Epoch e draws from ``default_rng([seed, 0, e])``, as RandomSampler."""

    def __init__(self, weights, num_samples, replacement=True, generator=None, seed=None):
        if not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples <= 0:
            raise ValueError(f"WeightedRandomSampler: num_samples must be a positive int, got {num_samples!r}")
        if not isinstance(replacement, bool):
            raise ValueError(f"WeightedRandomSampler: replacement must be a bool, got {replacement!r}")
        w = np.asarray(backend.to_host(weights.array if isinstance(weights, Tensor) else weights), dtype=np.float64)
        if w.ndim != 1 or w.size == 0:
            raise ValueError(f"WeightedRandomSampler: weights must be a non-empty 1-D sequence, "
                             f"got shape {w.shape}")
        if not np.all(np.isfinite(w)) or (w < 0).any() or w.sum() <= 0:
            raise ValueError("WeightedRandomSampler: weights must be finite, non-negative and not all zero")
        if not replacement and num_samples > np.count_nonzero(w):
            raise ValueError(f"WeightedRandomSampler: cannot draw {num_samples} samples without replacement "
                             f"from {np.count_nonzero(w)} indices of non-zero weight")
        self.weights = w
        super().__init__(range(w.size), replacement, num_samples, generator, seed)

    def indices(self, epoch):
        rng = np.random.default_rng([self.seed, 0, int(epoch)])
        return rng.choice(self.weights.size, size=self.num_samples, replace=self.replacement,
                          p=self.weights / self.weights.sum())


class BatchSampler(Sampler):
    """Groups the indices of ``sampler`` into lists of ``batch_size``."""

    def __init__(self, sampler, batch_size, drop_last):
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size <= 0:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if not isinstance(drop_last, bool):
            raise ValueError(f"BatchSampler: drop_last must be a bool, got {drop_last!r}")
        self.sampler, self.batch_size, self.drop_last = sampler, batch_size, drop_last

    def set_epoch(self, epoch):
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def __iter__(self):
        it = iter(self.sampler)
        while True:
            batch = list(itertools.islice(it, self.batch_size))
            if not batch or (self.drop_last and len(batch) < self.batch_size):
                return
            yield batch

    def __len__(self):
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)


# ================================================================ collate
def _describe(x):
    return f"{type(x).__name__} of shape {tuple(x.shape)}" if hasattr(x, "shape") else type(x).__name__


def default_collate(batch):
    """Stack a list of samples into a batch, as PyTorch's default_collate.

    NumPy arrays and Tensors are stacked along a new first axis (dtype kept);
    Python ints become int64, floats float64, bools bool, NumPy scalars keep their
    dtype; tuples/lists (into a list) and mappings (keeping their type, e.g. an
    OrderedDict) are collated field by field; strings are returned as given (the
    batch list, or the tuple of a field of tuple samples: ``[(1, 'a'), (2, 'b')]``
    gives ``[tensor([1, 2]), ('a', 'b')]``). Everything numeric comes out as a
    tinydl Tensor (on the CPU).
    """
    if not batch:
        raise ValueError("default_collate: empty batch")
    elem = batch[0]
    if isinstance(elem, Tensor):
        datas = [b.array for b in batch]
        _check_same_shape(batch, datas)
        return Tensor(backend.get_array_module(*datas).stack(datas))
    if isinstance(elem, np.ndarray):
        if elem.dtype.kind in "OUS":
            raise TypeError(f"default_collate: cannot batch arrays of dtype {elem.dtype}")
        _check_same_shape(batch, batch)
        return Tensor(np.stack(batch))
    if isinstance(elem, np.generic):
        return Tensor(np.array(batch, dtype=elem.dtype))
    if isinstance(elem, bool):
        return Tensor(np.array(batch, dtype=np.bool_))
    if isinstance(elem, int):
        return Tensor(np.array(batch, dtype=np.int64))
    if isinstance(elem, float):
        return Tensor(np.array(batch, dtype=np.float64))
    if isinstance(elem, (str, bytes)):
        return batch
    if isinstance(elem, collections.abc.Mapping):
        return _same_mapping(elem, {key: default_collate([b[key] for b in batch]) for key in elem})
    if isinstance(elem, tuple) and hasattr(elem, "_fields"):          # namedtuple
        return type(elem)(*(default_collate(list(field)) for field in zip(*batch)))
    if isinstance(elem, collections.abc.Sequence):
        if any(len(b) != len(elem) for b in batch):
            raise ValueError(f"default_collate: samples have different lengths {sorted({len(b) for b in batch})}")
        # a list, also for tuple samples, as PyTorch (``images, labels = batch`` unpacks either)
        return [default_collate(field) for field in zip(*batch)]
    raise TypeError(f"default_collate: cannot batch elements of type {type(elem).__name__}; "
                    "pass collate_fn= to the DataLoader")


def _same_mapping(elem, fields):
    """``fields`` (a dict) as a mapping of ``elem``'s type where that type can be made so
    (OrderedDict, a dict subclass, ...), else the plain dict, as PyTorch."""
    if isinstance(elem, collections.abc.MutableMapping):
        try:
            out = copy.copy(elem)       # keeps any other attribute of the sample's mapping
            out.update(fields)
            return out
        except Exception:   # (a mapping that cannot be copied: fall back as PyTorch does)
            pass
    try:
        return type(elem)(fields)
    except TypeError:
        return fields


def default_convert(data):
    """One sample made Tensor-ready without batching (``DataLoader(batch_size=None)``), as
    PyTorch's: numeric NumPy arrays and scalars become Tensors (dtype kept), Tensors and
    Python numbers and strings stay, mappings/namedtuples/sequences are converted field
    by field (a tuple becomes a list, other sequences keep their type if they can)."""
    if isinstance(data, Tensor):
        return data
    if isinstance(data, (np.ndarray, np.generic)):
        return data if data.dtype.kind in "OUSV" else Tensor(np.asarray(data))
    if isinstance(data, (str, bytes)):
        return data
    if isinstance(data, collections.abc.Mapping):
        return _same_mapping(data, {key: default_convert(data[key]) for key in data})
    if isinstance(data, tuple) and hasattr(data, "_fields"):          # namedtuple
        return type(data)(*(default_convert(d) for d in data))
    if isinstance(data, tuple):
        return [default_convert(d) for d in data]
    if isinstance(data, collections.abc.Sequence):
        try:
            return type(data)([default_convert(d) for d in data])
        except TypeError:       # (a range, or a sequence type that cannot be built from a list)
            return [default_convert(d) for d in data]
    return data


def _check_same_shape(batch, arrays):
    first = arrays[0].shape
    for i, a in enumerate(arrays):
        if a.shape != first:
            raise ValueError(
                f"default_collate: cannot stack samples of different shapes: {_describe(batch[0])} at 0, "
                f"{_describe(batch[i])} at {i}. Pass a collate_fn= that pads them or keeps a list, e.g. "
                "collate_fn=lambda samples: tuple(zip(*samples))")


def _move(batch, device):
    """Every Tensor (and NumPy array) in a nested batch, on ``device``."""
    if isinstance(batch, Tensor):
        return batch.to(device)
    if isinstance(batch, np.ndarray) and batch.dtype.kind not in "OUS":
        return Tensor(backend.to_device(batch, device))
    if isinstance(batch, collections.abc.Mapping):
        return {k: _move(v, device) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(_move(v, device) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(_move(v, device) for v in batch)
    return batch


# ================================================================ the loader
class WorkerInfo:
    """What a loader thread knows about itself (``get_worker_info()`` inside it): ``id``
    (0..num_workers-1), ``num_workers``, ``seed`` (the loader's seed + id) and ``dataset``."""

    def __init__(self, id, num_workers, seed, dataset):
        self.id, self.num_workers, self.seed, self.dataset = id, num_workers, seed, dataset

    def __repr__(self):
        return f"WorkerInfo(id={self.id}, num_workers={self.num_workers}, seed={self.seed})"


_worker = threading.local()


def get_worker_info():
    """The ``WorkerInfo`` of the DataLoader worker thread this runs in; None elsewhere."""
    return getattr(_worker, "info", None)


class _SampleRng:
    """Lazily builds the generator of one sample (only if a transform asks)."""

    __slots__ = ("entropy",)

    def __init__(self, entropy):
        self.entropy = entropy

    def __call__(self):
        return np.random.default_rng(self.entropy)


class _Progress:
    """Where the live iteration is: its epoch and how many batches it handed out."""

    __slots__ = ("epoch", "done", "finished")

    def __init__(self, epoch, done):
        self.epoch, self.done, self.finished = epoch, done, False


class DataLoader:
    """Batches of ``dataset``, PyTorch's signature (see the module docstring).

    Arguments beyond PyTorch's: ``seed`` (the loader's seed; see above),
    ``prefetch`` (batches prepared ahead by a background thread) and ``device``
    (where the batch Tensors go, e.g. 'cuda').

    PyTorch's worker options, read for threads (``num_workers`` counts threads, not
    processes), with PyTorch's checks:

    * ``prefetch_factor`` (only with num_workers > 0; default 2): batches in flight
      per worker, i.e. up to ``prefetch_factor * num_workers`` ahead;
    * ``worker_init_fn(worker_id)`` runs once in each worker thread as it starts
      (``get_worker_info()`` works there and in the dataset's ``__getitem__``);
    * ``timeout`` (seconds, 0 = wait forever): RuntimeError if a worker's batch takes
      longer (iterating refuses it with num_workers=0, as PyTorch);
    * accepted and without effect here: ``pin_memory``, ``pin_memory_device`` (no
      pinned memory), ``persistent_workers`` (needs num_workers > 0; threads are
      cheap to start each epoch), ``in_order`` (batches always come in order, which
      ``in_order=False`` permits), ``multiprocessing_context`` (checked: only with
      num_workers > 0, a start method name or a context; no processes are made).
      ``generator`` is a NumPy Generator here (it draws the seed).
    """

    def __init__(self, dataset, batch_size=1, shuffle=False, sampler=None, batch_sampler=None,
                 num_workers=0, collate_fn=None, pin_memory=False, drop_last=False, timeout=0,
                 worker_init_fn=None, multiprocessing_context=None, generator=None, *,
                 prefetch_factor=None, persistent_workers=False, pin_memory_device="", in_order=True,
                 seed=None, prefetch=0, device=None):
        if num_workers < 0:
            raise ValueError(f"DataLoader: num_workers must be >= 0 (0 loads in the calling thread), "
                             f"got {num_workers}")
        if prefetch < 0:
            raise ValueError(f"DataLoader: prefetch must be >= 0, got {prefetch}")
        if timeout < 0:
            raise ValueError(f"DataLoader: timeout must be >= 0, got {timeout}")
        if num_workers == 0 and prefetch_factor is not None:
            raise ValueError("DataLoader: prefetch_factor needs num_workers > 0 "
                             f"(got prefetch_factor={prefetch_factor}, num_workers=0)")
        if prefetch_factor is None:
            prefetch_factor = 2 if num_workers > 0 else None
        elif prefetch_factor < 0:
            raise ValueError(f"DataLoader: prefetch_factor must be >= 0, got {prefetch_factor}")
        if persistent_workers and num_workers == 0:
            raise ValueError("DataLoader: persistent_workers needs num_workers > 0")
        if multiprocessing_context is not None:
            self._check_context(multiprocessing_context, num_workers)
        self._iterable = isinstance(dataset, IterableDataset)
        if self._iterable:
            for name, value in (("shuffle", shuffle), ("sampler", sampler), ("batch_sampler", batch_sampler)):
                if value not in (None, False):
                    raise ValueError(f"DataLoader with IterableDataset: expected unspecified {name} option, "
                                     f"but got {name}={value!r}")
        if batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise ValueError("batch_sampler option is mutually exclusive with batch_size, shuffle, "
                                 "sampler, and drop_last")
            batch_size, drop_last = None, False
        elif batch_size is None and drop_last:
            raise ValueError("DataLoader: batch_size=None disables batching, so drop_last must be False")
        elif batch_size is not None and (not isinstance(batch_size, int) or isinstance(batch_size, bool)
                                         or batch_size <= 0):
            raise ValueError(f"DataLoader: batch_size must be a positive int or None, got {batch_size!r}")
        if sampler is not None and shuffle:
            raise ValueError("sampler option is mutually exclusive with shuffle")
        self.dataset = dataset
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.seed = _check_seed(seed) if seed is not None else _draw_seed(generator)
        # batched: a batch sampler of index lists; unbatched (batch_size=None): the sampler alone
        self._batched = batch_sampler is not None or batch_size is not None
        if not self._iterable and sampler is None and batch_sampler is None:
            sampler = RandomSampler(dataset, seed=self.seed) if shuffle else SequentialSampler(dataset)
        if not self._iterable and batch_sampler is None and batch_size is not None:
            batch_sampler = BatchSampler(sampler, batch_size, drop_last)
        self.sampler = sampler if sampler is not None else getattr(batch_sampler, "sampler", None)
        self.batch_sampler = batch_sampler
        if collate_fn is None:
            collate_fn = default_collate if self._batched else default_convert
        self.collate_fn = collate_fn
        self.num_workers = num_workers
        self.prefetch = prefetch
        self.prefetch_factor = prefetch_factor
        self.pin_memory = pin_memory
        self.pin_memory_device = pin_memory_device
        self.timeout = timeout
        self.worker_init_fn = worker_init_fn
        self.multiprocessing_context = multiprocessing_context
        self.persistent_workers = persistent_workers
        self.in_order = in_order
        self.device = backend.parse_device(device) if device is not None else None
        self._epoch = 0            # epoch of the next fresh iteration
        self._skip = 0             # batches to skip at the next iteration (set by load_state_dict)
        self._progress = None      # the live iteration

    @staticmethod
    def _check_context(context, num_workers):
        if num_workers == 0:
            raise ValueError("DataLoader: multiprocessing_context can only be used with num_workers > 0, "
                             f"got num_workers={num_workers}")
        if isinstance(context, str):
            methods = multiprocessing.get_all_start_methods()
            if context not in methods:
                raise ValueError(f"DataLoader: multiprocessing_context should be one of the start methods "
                                 f"{methods}, got {context!r}")
        elif not isinstance(context, multiprocessing.context.BaseContext):
            raise TypeError("DataLoader: multiprocessing_context should be a multiprocessing context or a "
                            f"start method name, got {context!r}")

    def __len__(self):
        """Batches per epoch; for an IterableDataset computed from its ``len()`` (a TypeError
        if it has none)."""
        if self._iterable:
            n = len(self.dataset)
            if self.batch_size is None:
                return n
            return n // self.batch_size if self.drop_last else -(-n // self.batch_size)
        return len(self.batch_sampler if self._batched else self.sampler)

    # ------------------------------------------------------------ epochs and state
    def set_epoch(self, epoch):
        """Make the next ``iter()`` start epoch ``epoch`` (from its first batch)."""
        self._epoch, self._skip, self._progress = int(epoch), 0, None

    @property
    def epoch(self):
        """The epoch being iterated (or the next one, between epochs)."""
        live = self._progress
        return live.epoch if live is not None and not live.finished else self._epoch

    def state_dict(self):
        """{'seed', 'epoch', 'batches_done'} (+ the sampler's own state, if it has one)."""
        live = self._progress
        if live is not None and not live.finished:
            epoch, done = live.epoch, live.done
            try:
                if done >= len(self):        # every batch handed out: the epoch is over
                    epoch, done = epoch + 1, 0
            except TypeError:                # a batch sampler without a length
                pass
        else:
            epoch, done = self._epoch, 0
        state = {"seed": self.seed, "epoch": epoch, "batches_done": done}
        if hasattr(self.sampler, "state_dict"):
            state["sampler"] = self.sampler.state_dict()
        return state

    def load_state_dict(self, state):
        """Continue from ``state``: the next ``iter()`` yields the rest of its epoch."""
        self.seed = _check_seed(state["seed"])
        if "sampler" in state and hasattr(self.sampler, "load_state_dict"):
            self.sampler.load_state_dict(state["sampler"])
        self._epoch, self._skip, self._progress = int(state["epoch"]), int(state["batches_done"]), None

    # ------------------------------------------------------------ iteration
    def __iter__(self):
        if self.timeout > 0 and self.num_workers == 0:     # (PyTorch refuses it here too)
            raise ValueError(f"DataLoader: timeout={self.timeout} needs num_workers > 0")
        if self.num_workers > 0 and self.prefetch_factor == 0:
            raise ValueError("DataLoader: prefetch_factor must be > 0 to load with workers")
        epoch, skip = self._epoch, self._skip
        self._epoch, self._skip = epoch + 1, 0
        progress = self._progress = _Progress(epoch, skip)
        if self._iterable:
            return self._serial(itertools.islice(self._stream(), skip, None), progress, lambda batch, _: batch)
        order = self.batch_sampler if self._batched else self.sampler
        target = order if hasattr(order, "set_epoch") else self.sampler
        if target is not None and hasattr(target, "set_epoch"):
            target.set_epoch(epoch)
        # iter() of the (batch) sampler now, so the order is fixed when iter(loader) returns
        batches = itertools.islice(iter(order), skip, None)
        fetch = self._fetch if self._batched else self._fetch_one
        threads = self.num_workers or (1 if self.prefetch else 0)
        if threads == 0:
            return self._serial(batches, progress, fetch)
        ahead = max(self.prefetch, (self.prefetch_factor or 2) * self.num_workers, 1)
        return self._threaded(batches, progress, threads, ahead, fetch)

    def _stream(self):
        """An IterableDataset's batches (or samples): consecutive items, collated."""
        it = iter(self.dataset)
        if self.batch_size is None:
            for sample in it:
                yield self._finish(self.collate_fn(sample))
            return
        while True:
            samples = list(itertools.islice(it, self.batch_size))
            if not samples or (self.drop_last and len(samples) < self.batch_size):
                return
            yield self._finish(self.collate_fn(samples))

    def _finish(self, batch):
        return _move(batch, self.device) if self.device is not None else batch

    def _fetch(self, indices, epoch):
        """One batch: each sample fetched under its own transform generator, then collated."""
        samples = []
        for position, index in enumerate(indices):
            key = int(index) if isinstance(index, (int, np.integer)) else position
            with _transforms.use_rng(_SampleRng([self.seed, 1, epoch, key])):
                samples.append(self.dataset[index])
        return self._finish(self.collate_fn(samples))

    def _fetch_one(self, index, epoch):
        """One sample, unbatched (batch_size=None): fetched as in ``_fetch``, then collate_fn of it alone."""
        key = int(index) if isinstance(index, (int, np.integer)) else 0
        with _transforms.use_rng(_SampleRng([self.seed, 1, epoch, key])):
            sample = self.dataset[index]
        return self._finish(self.collate_fn(sample))

    def _start_worker(self, ids, threads):
        """Run in each new worker thread: its WorkerInfo, then the user's worker_init_fn."""
        worker_id = next(ids)
        _worker.info = WorkerInfo(worker_id, threads, (self.seed + worker_id) % 2 ** 64, self.dataset)
        if self.worker_init_fn is not None:
            self.worker_init_fn(worker_id)

    def _serial(self, batches, progress, fetch):
        for indices in batches:
            batch = fetch(indices, progress.epoch)
            progress.done += 1
            yield batch
        progress.finished = True

    def _threaded(self, batches, progress, threads, ahead, fetch):
        """Keep ``ahead`` batches in flight on ``threads`` threads; yield them in order."""
        pool = ThreadPoolExecutor(threads, thread_name_prefix="tinydl-loader", initializer=self._start_worker,
                                  initargs=(itertools.count(), threads))
        pending = collections.deque()
        try:
            for indices in itertools.islice(batches, ahead):
                pending.append(pool.submit(fetch, indices, progress.epoch))
            while pending:
                try:
                    batch = pending.popleft().result(self.timeout or None)   # re-raises a worker's exception
                except _FutureTimeout:
                    raise RuntimeError(f"DataLoader timed out after {self.timeout} seconds") from None
                for indices in itertools.islice(batches, 1):
                    pending.append(pool.submit(fetch, indices, progress.epoch))
                progress.done += 1
                yield batch
            progress.finished = True
        finally:
            # the consumer may stop early (break, exception): drop the batches not started
            for future in pending:
                future.cancel()
            pool.shutdown(wait=False, cancel_futures=True)
