"""Data parallelism across processes: ``nn.parallel.DistributedDataParallel`` (see tinydl.distributed)."""
from .distributed import DistributedDataParallel

__all__ = ["DistributedDataParallel"]
