"""The 'mpi' backend: collectives on arrays through mpi4py.

MPI reads and writes host memory, so a CuPy array travels through a host copy
here (the 'nccl' backend, ``_nccl.py``, keeps GPU arrays on the GPU). The
group works on its own duplicate of ``MPI.COMM_WORLD``: a user's MPI calls on
COMM_WORLD never interleave with ours.

Reduction names are 'sum', 'product', 'max', 'min'; averaging is a sum
followed by a division, done by the caller.
"""
import numpy as np

from .. import backend

_MPI_OPS = {"sum": "SUM", "product": "PROD", "max": "MAX", "min": "MIN"}


class Work:
    """A collective in flight, as PyTorch's ``Work``: ``wait()`` returns once its
    result may be read (for NCCL: once the current CUDA stream is ordered after it),
    ``is_completed()`` asks without blocking. ``then(fn)`` adds a step run by
    ``wait()`` after the transfer (copy back from the host, divide by the world size)."""

    def __init__(self, test=None, wait=None, keep=None):
        self._test, self._wait = test, wait
        self._keep = keep                 # arrays the transfer reads or writes: alive until done
        self._steps = []
        self._done = test is None and wait is None

    def then(self, step):
        if self._done:
            step()
        else:
            self._steps.append(step)
        return self

    def is_completed(self):
        return self._done or bool(self._test())

    def wait(self, timeout=None):
        if not self._done:
            self._wait()
            for step in self._steps:
                step()
            self._done, self._steps, self._keep = True, [], None
        return True


def _copy_into(dst, src):
    """dst[...] = src, moving src to dst's device first (host -> GPU after an MPI call)."""
    dst[...] = backend.to_device(src, backend.device_of(dst))


def _staged(a):
    """(contiguous host array that MPI can use, step that copies it back into ``a`` or None)."""
    if backend.is_cupy_array(a):          # MPI reads host memory: one copy down, one back
        host = np.ascontiguousarray(a.get())
        return host, lambda: _copy_into(a, host)
    if a.flags.c_contiguous:
        return a, None
    buf = np.ascontiguousarray(a)
    return buf, lambda: _copy_into(a, buf)


class MPIGroup:
    """Every process of ``MPI.COMM_WORLD``; ``rank``/``size`` in it, ``local_rank``/``local_size``
    on this node (MPI's shared-memory split)."""

    name = "mpi"

    def __init__(self, MPI):
        self.MPI = MPI
        self.comm = MPI.COMM_WORLD.Dup()
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        node = self.comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
        self.local_rank, self.local_size = node.Get_rank(), node.Get_size()
        node.Free()

    def _op(self, op):
        return getattr(self.MPI, _MPI_OPS[op])

    def all_reduce(self, a, op):
        """a <- op over the ranks of a, in place; blocking."""
        buf, back = _staged(a)
        if buf.size:
            self.comm.Allreduce(self.MPI.IN_PLACE, buf, op=self._op(op))
        if back is not None:
            back()

    def all_reduce_async(self, a, op):
        """Start the in-place all-reduce of ``a``; returns its Work."""
        buf, back = _staged(a)
        request = self.comm.Iallreduce(self.MPI.IN_PLACE, buf, op=self._op(op))
        work = Work(test=request.Test, wait=request.Wait, keep=(a, buf))
        return work.then(back) if back is not None else work

    def broadcast(self, a, src):
        buf, back = _staged(a)
        if buf.size:
            self.comm.Bcast(buf, root=src)
        if back is not None and self.rank != src:
            back()

    def all_gather(self, a):
        """(size, *a.shape) array of every rank's ``a``, on a's device."""
        buf, _ = _staged(a)
        out = np.empty((self.size,) + buf.shape, dtype=buf.dtype)
        self.comm.Allgather(buf, out)
        return backend.to_device(out, backend.device_of(a))

    def barrier(self):
        self.comm.Barrier()

    def close(self):
        self.comm.Free()
