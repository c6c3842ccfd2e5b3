"""The 'nccl' backend: collectives on CuPy arrays through CuPy's NCCL bindings.

Setting up (``NCCLGroup.__init__``), every process of the MPI job:

1. finds its rank on this node from MPI's shared-memory split
   (``COMM_TYPE_SHARED``) and makes GPU ``local_rank`` its current device;
2. receives the NCCL unique id that rank 0 drew, broadcast over MPI;
3. joins the NCCL communicator of ``size`` ranks with that id.

Collectives then run on the GPU, on device memory: no host copy. Blocking
calls are queued on the current CUDA stream (the host does not wait, and
what the stream runs next sees the result). ``all_reduce_async`` runs on a
stream of its own, so DDP's gradient all-reduces can overlap the backward
pass still queued on the compute stream; its ``Work.wait()`` orders the
current stream after the transfer, as PyTorch's NCCL Work does.

NumPy arrays (metadata, metrics) go through MPI: the group is an MPIGroup
too, like PyTorch's default "cpu:gloo,cuda:nccl" which picks the transport
by device.
"""
import numpy as np

from .. import backend
from ._mpi import MPIGroup, Work, _copy_into

_UNIQUE_ID_BYTES = 128      # NCCL_UNIQUE_ID_BYTES in nccl.h


class NCCLGroup(MPIGroup):
    name = "nccl"

    def __init__(self, MPI):
        super().__init__(MPI)
        cp = backend.cupy_module()
        from cupy.cuda import nccl
        self.cp, self.nccl = cp, nccl
        gpus = cp.cuda.runtime.getDeviceCount()
        if self.local_size > gpus:
            self.close()
            raise RuntimeError(f"init_process_group('nccl'): {self.local_size} processes on this node but "
                               f"{gpus} GPU(s); start one process per GPU (mpiexec -n {gpus} per node)")
        self.device_index = self.local_rank
        cp.cuda.Device(self.device_index).use()
        uid = np.asarray(nccl.get_unique_id() if self.rank == 0 else [0] * _UNIQUE_ID_BYTES, dtype=np.int16)
        self.comm.Bcast(uid, root=0)
        self.communicator = nccl.NcclCommunicator(self.size, tuple(int(v) for v in uid), self.rank)
        self.side_stream = cp.cuda.Stream(non_blocking=True)
        self._dtypes = {np.dtype(k): getattr(nccl, v) for k, v in (
            ("float16", "NCCL_FLOAT16"), ("float32", "NCCL_FLOAT32"), ("float64", "NCCL_FLOAT64"),
            ("int8", "NCCL_INT8"), ("uint8", "NCCL_UINT8"), ("bool", "NCCL_UINT8"), ("int32", "NCCL_INT32"),
            ("uint32", "NCCL_UINT32"), ("int64", "NCCL_INT64"), ("uint64", "NCCL_UINT64"))}
        self._ops = {"sum": nccl.NCCL_SUM, "product": nccl.NCCL_PROD, "max": nccl.NCCL_MAX,
                     "min": nccl.NCCL_MIN}

    def _dtype(self, a):
        if a.dtype not in self._dtypes:
            raise TypeError(f"nccl backend: arrays of dtype {a.dtype} cannot be communicated")
        return self._dtypes[a.dtype]

    def _contiguous(self, a):
        """(contiguous device array, step that copies it back into ``a`` or None)."""
        if a.flags.c_contiguous:
            return a, None
        buf = self.cp.ascontiguousarray(a)
        return buf, lambda: _copy_into(a, buf)

    def _stream_ptr(self):
        return self.cp.cuda.get_current_stream().ptr

    def all_reduce(self, a, op):
        if not backend.is_cupy_array(a):
            return super().all_reduce(a, op)
        buf, back = self._contiguous(a)
        self.communicator.allReduce(buf.data.ptr, buf.data.ptr, buf.size, self._dtype(buf), self._ops[op],
                                    self._stream_ptr())
        if back is not None:
            back()

    def all_reduce_async(self, a, op):
        if not backend.is_cupy_array(a):
            return super().all_reduce_async(a, op)
        buf, back = self._contiguous(a)
        current = self.cp.cuda.get_current_stream()
        self.side_stream.wait_event(current.record())      # what wrote ``a`` runs first
        self.communicator.allReduce(buf.data.ptr, buf.data.ptr, buf.size, self._dtype(buf), self._ops[op],
                                    self.side_stream.ptr)
        done = self.side_stream.record()
        work = Work(test=done.query, wait=lambda: current.wait_event(done), keep=(a, buf))
        return work.then(back) if back is not None else work

    def broadcast(self, a, src):
        if not backend.is_cupy_array(a):
            return super().broadcast(a, src)
        buf, back = self._contiguous(a)
        self.communicator.broadcast(buf.data.ptr, buf.data.ptr, buf.size, self._dtype(buf), src,
                                    self._stream_ptr())
        if back is not None:
            back()

    def all_gather(self, a):
        if not backend.is_cupy_array(a):
            return super().all_gather(a)
        buf, _ = self._contiguous(a)
        out = self.cp.empty((self.size,) + buf.shape, dtype=buf.dtype)
        self.communicator.allGather(buf.data.ptr, out.data.ptr, buf.size, self._dtype(buf), self._stream_ptr())
        return out

    def barrier(self):
        self.cp.cuda.get_current_stream().synchronize()     # this rank's queued GPU work is done
        super().barrier()

    def close(self):
        communicator = getattr(self, "communicator", None)
        if communicator is not None:
            communicator.destroy()
            self.communicator = None
        super().close()
