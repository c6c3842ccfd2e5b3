"""``tinydl.distributed``: one process per CPU socket or GPU, as ``torch.distributed``.

    mpiexec -n 2 python -m mpi4py train.py

    import tinydl.distributed as dist
    dist.init_process_group("mpi")            # or "nccl": one GPU per process
    rank, world = dist.get_rank(), dist.get_world_size()
    t = td.tensor([float(rank)])
    dist.all_reduce(t)                        # in place: every rank now holds 0 + 1 + ...

The processes are started by ``mpiexec`` (the ``[dist]`` extra installs
mpi4py and the MPICH wheel, which provides it; a system MPI works too) and
find each other through MPI: there is no address, port or store to give.

Backends
--------
``'mpi'``   mpi4py on NumPy arrays; CuPy arrays travel through a host copy.
``'nccl'``  CuPy's NCCL bindings on GPU memory (no host copy). MPI still
            starts the job: rank 0's NCCL id is broadcast over MPI, and each
            process takes GPU ``get_node_local_rank()`` (its rank among the
            processes on its node) as its current device. NumPy tensors
            (metrics, metadata) go over MPI, as PyTorch's default
            "cpu:gloo,cuda:nccl" does.

Collectives take tinydl Tensors and work on their arrays in place, like
PyTorch's: ``all_reduce`` (ReduceOp SUM, AVG, PRODUCT, MAX, MIN),
``broadcast``, ``all_gather`` (into a list of tensors), ``barrier``. With
``async_op=True`` they return a ``Work`` whose ``wait()`` finishes them.
Every rank must call the same collectives in the same order.

A rank that raises must not leave the others waiting in a collective:
``python -m mpi4py script.py`` aborts the whole job on an uncaught exception
(``tinydl train --distributed`` does the same).
"""
import enum
import importlib.util
import os

from ..tensor import Tensor
from ._mpi import Work

__all__ = ["ReduceOp", "Work", "init_process_group", "destroy_process_group", "is_available",
           "is_initialized", "is_mpi_available", "is_nccl_available", "get_backend", "get_rank",
           "get_world_size", "get_node_local_rank", "get_node_local_world_size", "all_reduce", "broadcast",
           "all_gather", "barrier", "launched_by_mpi"]

_BACKENDS = ("mpi", "nccl")
# Set by the MPI launchers (MPICH/Hydra, Open MPI, PMIx, MVAPICH) in every process they start.
_LAUNCHER_VARIABLES = ("PMI_RANK", "PMI_SIZE", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS",
                       "MV2_COMM_WORLD_SIZE")
_group = None      # the default process group (an MPIGroup or NCCLGroup) once initialised


class ReduceOp(enum.Enum):
    SUM = "sum"
    AVG = "avg"
    PRODUCT = "product"
    MAX = "max"
    MIN = "min"


# ------------------------------------------------------------------ set-up
def is_available():
    """True: the package is part of tinydl (whether MPI is installed: ``is_mpi_available``)."""
    return True


def is_mpi_available():
    return importlib.util.find_spec("mpi4py") is not None


def is_nccl_available():
    from .. import backend
    if not (is_mpi_available() and backend.cuda_is_available()):
        return False
    from cupy.cuda import nccl
    return bool(getattr(nccl, "available", False))


def launched_by_mpi():
    """True when an MPI launcher (mpiexec, mpirun, srun with PMI) started this process."""
    return any(name in os.environ for name in _LAUNCHER_VARIABLES)


def _import_mpi(backend):
    try:
        from mpi4py import MPI
    except ImportError:
        raise RuntimeError(f"init_process_group(backend={backend!r}) needs mpi4py: pip install 'tinydl[dist]' "
                           "(mpi4py and the MPICH wheel, which provides mpiexec)") from None
    return MPI


def init_process_group(backend=None, init_method=None, timeout=None, world_size=-1, rank=-1, store=None,
                       group_name="", pg_options=None, device_id=None):
    """Join the job that ``mpiexec`` started: backend 'mpi' (default) or 'nccl'.

    The rank and world size come from MPI; ``world_size`` / ``rank``, when
    given, must agree with it. ``init_method`` may only be None or 'env://',
    and ``store`` None: MPI does the rendezvous. ``timeout`` is accepted and
    ignored (MPI has none; a failing rank aborts the job instead).
    """
    global _group
    if _group is not None:
        raise RuntimeError("trying to initialize the default process group twice!")
    name = "mpi" if backend is None else str(backend).lower()
    if name not in _BACKENDS:
        raise ValueError(f"init_process_group: unknown backend {backend!r}; tinydl has {', '.join(_BACKENDS)}")
    if init_method not in (None, "env://") or store is not None:
        raise ValueError("init_process_group: the processes find each other through MPI (start them with "
                         "mpiexec); init_method and store cannot be used")
    MPI = _import_mpi(name)
    if name == "nccl":
        from ._nccl import NCCLGroup as Group
    else:
        from ._mpi import MPIGroup as Group
    group = Group(MPI)
    if world_size not in (-1, None, group.size) or rank not in (-1, None, group.rank):
        group.close()
        raise ValueError(f"init_process_group: world_size={world_size}, rank={rank} given, but MPI started "
                         f"this process as rank {group.rank} of {group.size}")
    _group = group


def destroy_process_group(group=None):
    """Leave the process group (collectives raise afterwards until the next init)."""
    global _group
    _get_default_group(group, "destroy_process_group").close()
    _group = None


def is_initialized():
    return _group is not None


def _get_default_group(group=None, caller="this call"):
    if group is not None:
        raise NotImplementedError(f"{caller}: only the default process group (group=None) exists in tinydl")
    if _group is None:
        raise ValueError("Default process group has not been initialized, please make sure to call "
                         "init_process_group.")
    return _group


def get_backend(group=None):
    return _get_default_group(group, "get_backend").name


def get_rank(group=None):
    return _get_default_group(group, "get_rank").rank


def get_world_size(group=None):
    return _get_default_group(group, "get_world_size").size


def get_node_local_rank(fallback_rank=None):
    """This process's rank among the processes on its node (its GPU under 'nccl')."""
    if _group is not None:
        return _group.local_rank
    if fallback_rank is not None:
        return fallback_rank
    raise RuntimeError("get_node_local_rank: no process group initialized and no fallback_rank given")


def get_node_local_world_size():
    """How many processes of the job run on this node (tinydl's; torchrun's LOCAL_WORLD_SIZE)."""
    return _get_default_group(None, "get_node_local_world_size").local_size


# ------------------------------------------------------------------ collectives
def _array(tensor, caller):
    if not isinstance(tensor, Tensor):
        raise TypeError(f"{caller}: expected a tinydl Tensor, got {type(tensor).__name__}")
    return tensor.array


def _reduce_op(op, caller):
    try:
        return ReduceOp(op.value if isinstance(op, ReduceOp) else str(op).lower())
    except ValueError:
        raise ValueError(f"{caller}: unknown reduce op {op!r}; use one of "
                         f"{', '.join('ReduceOp.' + o.name for o in ReduceOp)}") from None


def all_reduce(tensor, op=ReduceOp.SUM, group=None, async_op=False):
    """Reduce ``tensor`` over all ranks, in place: afterwards every rank holds the result.

    AVG is the sum divided by the world size (floating-point tensors only).
    Returns a Work with ``async_op=True``, else None.
    """
    g = _get_default_group(group, "all_reduce")
    a = _array(tensor, "all_reduce")
    op = _reduce_op(op, "all_reduce")
    if op is ReduceOp.AVG and a.dtype.kind not in "fc":
        raise TypeError(f"all_reduce: ReduceOp.AVG needs a floating-point tensor, got dtype {a.dtype}")
    name = "sum" if op is ReduceOp.AVG else op.value
    if async_op:
        work = g.all_reduce_async(a, name)
        return work.then(lambda: _divide(a, g.size)) if op is ReduceOp.AVG else work
    g.all_reduce(a, name)
    if op is ReduceOp.AVG:
        _divide(a, g.size)
    return None


def _divide(a, n):
    a /= n


def broadcast(tensor, src=None, group=None, async_op=False):
    """Copy rank ``src``'s ``tensor`` into ``tensor`` on every rank, in place."""
    g = _get_default_group(group, "broadcast")
    a = _array(tensor, "broadcast")
    if src is None or not 0 <= int(src) < g.size:
        raise ValueError(f"broadcast: src must be a rank in [0, {g.size}), got {src!r}")
    g.broadcast(a, int(src))
    return Work() if async_op else None


def all_gather(tensor_list, tensor, group=None, async_op=False):
    """``tensor_list[i]`` <- rank i's ``tensor``, for every i (list of world-size tensors, in place)."""
    g = _get_default_group(group, "all_gather")
    a = _array(tensor, "all_gather")
    if not isinstance(tensor_list, (list, tuple)) or len(tensor_list) != g.size:
        raise ValueError(f"all_gather: tensor_list must be a list of {g.size} tensors (the world size), "
                         f"got {type(tensor_list).__name__} of length {len(tensor_list)}")
    for i, t in enumerate(tensor_list):
        out = _array(t, "all_gather")
        if out.shape != a.shape or out.dtype != a.dtype:
            raise ValueError(f"all_gather: tensor_list[{i}] has shape {tuple(out.shape)} and dtype {out.dtype}, "
                             f"the input tensor {tuple(a.shape)} and {a.dtype}; they must match")
    gathered = g.all_gather(a)
    for t, row in zip(tensor_list, gathered):
        t.array[...] = row
    return Work() if async_op else None


def barrier(group=None, async_op=False, device_ids=None):
    """Wait until every rank has reached this call."""
    _get_default_group(group, "barrier").barrier()
    return Work() if async_op else None
