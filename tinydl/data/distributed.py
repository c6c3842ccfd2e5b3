"""``DistributedSampler``: each rank of a data-parallel job gets its own share of the data set."""
import math

import numpy as np

from .dataloader import Sampler, _check_seed

__all__ = ["DistributedSampler"]


class DistributedSampler(Sampler):
    """Rank ``rank``'s share of the indices, as ``torch.utils.data.DistributedSampler``.

    Every rank draws the same order of epoch e (a permutation seeded by
    (seed, e) when ``shuffle``, else 0, 1, ...), makes its length a multiple of
    ``num_replicas`` -- by repeating indices from its start, or with
    ``drop_last`` by dropping the tail -- and takes every ``num_replicas``-th
    index from position ``rank``. So in each epoch the ranks' shares are
    disjoint, of equal length, and together cover the data set (plus the
    repeats). Call ``set_epoch(e)`` before each epoch (the DataLoader does, from
    its own epoch counter); without it every epoch has the same order.

    ``num_replicas`` and ``rank`` default to the process group's world size and rank.
    """

    def __init__(self, dataset, num_replicas=None, rank=None, shuffle=True, seed=0, drop_last=False):
        if num_replicas is None or rank is None:
            from .. import distributed as dist
            if not dist.is_initialized():
                raise ValueError("DistributedSampler: no process group is initialized "
                                 "(tinydl.distributed.init_process_group); pass num_replicas= and rank=")
            num_replicas = dist.get_world_size() if num_replicas is None else num_replicas
            rank = dist.get_rank() if rank is None else rank
        if int(num_replicas) < 1:
            raise ValueError(f"DistributedSampler: num_replicas must be >= 1, got {num_replicas}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"Invalid rank {rank}, rank should be in the interval [0, {num_replicas - 1}]")
        self.dataset = dataset
        self.num_replicas, self.rank = int(num_replicas), int(rank)
        self.shuffle, self.drop_last = bool(shuffle), bool(drop_last)
        self.seed = _check_seed(seed)
        self.epoch = 0
        n = len(dataset)
        if self.drop_last and n % self.num_replicas:
            self.num_samples = math.ceil((n - self.num_replicas) / self.num_replicas)
        else:
            self.num_samples = math.ceil(n / self.num_replicas)
        self.total_size = self.num_samples * self.num_replicas

    def set_epoch(self, epoch):
        self.epoch = int(epoch)

    def indices(self, epoch):
        """This rank's indices in ``epoch`` (an int64 array)."""
        n = len(self.dataset)
        order = (np.random.default_rng([self.seed, 0, int(epoch)]).permutation(n) if self.shuffle
                 else np.arange(n, dtype=np.int64))
        if self.drop_last:
            order = order[:self.total_size]
        elif self.total_size > n:                  # pad with the first indices (again, if short)
            order = np.resize(order, self.total_size)
        return order[self.rank:self.total_size:self.num_replicas]

    def __iter__(self):
        return iter(self.indices(self.epoch).tolist())

    def __len__(self):
        return self.num_samples

    def state_dict(self):
        return {"seed": self.seed, "epoch": self.epoch, "num_replicas": self.num_replicas}

    def load_state_dict(self, state):
        if int(state.get("num_replicas", self.num_replicas)) != self.num_replicas:
            raise ValueError(f"DistributedSampler: the state was saved with {state['num_replicas']} replicas, "
                             f"this sampler has {self.num_replicas}; resume at the same world size")
        self.seed = _check_seed(state["seed"])
        self.epoch = int(state["epoch"])
