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
"""
import collections.abc
import itertools
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .. import backend
from ..tensor import Tensor
from . import transforms as _transforms

__all__ = ["Sampler", "SequentialSampler", "RandomSampler", "SubsetRandomSampler", "WeightedRandomSampler",
           "BatchSampler", "DataLoader", "default_collate"]

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
class Sampler:
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
        self.data_source = data_source
        self.replacement = replacement
        self._num_samples = num_samples
        if num_samples is not None and (not isinstance(num_samples, int) or num_samples <= 0):
            raise ValueError(f"RandomSampler: num_samples must be a positive int, got {num_samples}")
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
        self.sampler, self.batch_size, self.drop_last = sampler, batch_size, bool(drop_last)

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
    dtype; tuples/lists (into a list) and dicts are collated field by field;
    strings stay a list. Everything numeric comes out as a tinydl Tensor (on the CPU).
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
        return list(batch)
    if isinstance(elem, collections.abc.Mapping):
        return {key: default_collate([b[key] for b in batch]) for key in elem}
    if isinstance(elem, tuple) and hasattr(elem, "_fields"):          # namedtuple
        return type(elem)(*(default_collate(list(field)) for field in zip(*batch)))
    if isinstance(elem, collections.abc.Sequence):
        if any(len(b) != len(elem) for b in batch):
            raise ValueError(f"default_collate: samples have different lengths {sorted({len(b) for b in batch})}")
        # a list, also for tuple samples, as PyTorch (``images, labels = batch`` unpacks either)
        return [default_collate(list(field)) for field in zip(*batch)]
    raise TypeError(f"default_collate: cannot batch elements of type {type(elem).__name__}; "
                    "pass collate_fn= to the DataLoader")


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
    (where the batch Tensors go, e.g. 'cuda'). ``num_workers`` counts threads, not
    processes; ``pin_memory`` is accepted and ignored.
    """

    def __init__(self, dataset, batch_size=1, shuffle=False, sampler=None, batch_sampler=None,
                 num_workers=0, collate_fn=None, pin_memory=False, drop_last=False, *,
                 generator=None, seed=None, prefetch=0, device=None):
        if num_workers < 0 or prefetch < 0:
            raise ValueError(f"num_workers ({num_workers}) and prefetch ({prefetch}) must be >= 0")
        if batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise ValueError("batch_sampler option is mutually exclusive with batch_size, shuffle, "
                                 "sampler, and drop_last")
            batch_size, drop_last = None, False
        elif batch_size is None:
            raise ValueError("DataLoader: batch_size=None (unbatched loading) is not supported; "
                             "use batch_size=1 or iterate over the dataset")
        if sampler is not None and shuffle:
            raise ValueError("sampler option is mutually exclusive with shuffle")
        self.dataset = dataset
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.seed = _check_seed(seed) if seed is not None else _draw_seed(generator)
        if batch_sampler is None:
            if sampler is None:
                sampler = RandomSampler(dataset, seed=self.seed) if shuffle else SequentialSampler(dataset)
            batch_sampler = BatchSampler(sampler, batch_size, drop_last)
        self.sampler = sampler if sampler is not None else getattr(batch_sampler, "sampler", None)
        self.batch_sampler = batch_sampler
        self.collate_fn = collate_fn if collate_fn is not None else default_collate
        self.num_workers = num_workers
        self.prefetch = prefetch
        self.pin_memory = pin_memory
        self.device = backend.parse_device(device) if device is not None else None
        self._epoch = 0            # epoch of the next fresh iteration
        self._skip = 0             # batches to skip at the next iteration (set by load_state_dict)
        self._progress = None      # the live iteration

    def __len__(self):
        return len(self.batch_sampler)

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
        epoch, skip = self._epoch, self._skip
        self._epoch, self._skip = epoch + 1, 0
        target = self.batch_sampler if hasattr(self.batch_sampler, "set_epoch") else self.sampler
        if target is not None and hasattr(target, "set_epoch"):
            target.set_epoch(epoch)
        # iter() of the batch sampler now, so the order is fixed when iter(loader) returns
        batches = itertools.islice(iter(self.batch_sampler), skip, None)
        progress = self._progress = _Progress(epoch, skip)
        threads = self.num_workers or (1 if self.prefetch else 0)
        if threads == 0:
            return self._serial(batches, progress)
        return self._threaded(batches, progress, threads, max(self.prefetch, 2 * self.num_workers, 1))

    def _fetch(self, indices, epoch):
        """One batch: each sample fetched under its own transform generator, then collated."""
        samples = []
        for position, index in enumerate(indices):
            key = int(index) if isinstance(index, (int, np.integer)) else position
            with _transforms.use_rng(_SampleRng([self.seed, 1, epoch, key])):
                samples.append(self.dataset[index])
        batch = self.collate_fn(samples)
        return _move(batch, self.device) if self.device is not None else batch

    def _serial(self, batches, progress):
        for indices in batches:
            batch = self._fetch(indices, progress.epoch)
            progress.done += 1
            yield batch
        progress.finished = True

    def _threaded(self, batches, progress, threads, ahead):
        """Keep ``ahead`` batches in flight on ``threads`` threads; yield them in order."""
        pool = ThreadPoolExecutor(threads, thread_name_prefix="tinydl-loader")
        pending = collections.deque()
        try:
            for indices in itertools.islice(batches, ahead):
                pending.append(pool.submit(self._fetch, indices, progress.epoch))
            while pending:
                batch = pending.popleft().result()      # re-raises a worker's exception here
                for indices in itertools.islice(batches, 1):
                    pending.append(pool.submit(self._fetch, indices, progress.epoch))
                progress.done += 1
                yield batch
            progress.finished = True
        finally:
            # the consumer may stop early (break, exception): drop the batches not started
            for future in pending:
                future.cancel()
            pool.shutdown(wait=False, cancel_futures=True)
