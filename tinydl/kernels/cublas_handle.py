"""Matrix products on the GPU through a cuBLAS handle of tinydl's own: the route that a CUDA
graph's capture takes (``td.cuda.graph``).

Why: CuPy sets its cuBLAS handle's stream before every call, and that setter raises
NotImplementedError while the stream captures a graph, so ``cupy.matmul`` cannot be
captured. cuBLAS itself can be (NVIDIA's cuBLAS guide, "CUDA Graphs support"), given a
workspace of the caller's so that it allocates nothing during the capture. This route calls
libcublas (loaded by CuPy already) through ctypes, on a handle whose stream and workspace
are set before the capture begins.

cuBLAS is column-major. A row-major (R, C) matrix read column-major is its transpose:
(C, R), leading dimension C. So the row-major product C = A @ B (A: M x K, B: K x N) is
asked for as its transpose, C^T = B^T A^T, which cuBLAS writes column-major (N x M,
leading dimension N): exactly the row-major (M, N) array C. An operand stored column-major
(a transposed view, ``w.T``) is read as it is, with cuBLAS's transpose flag: no copy.

Like CuPy's products, they use TF32 tensor cores only where CUPY_TF32 is set (not 0).

``library`` is the one place that calls into libcublas: tests/test_graphs.py replaces it
with a NumPy stand-in that reads the same pointers column-major, to check the arguments on
a machine without a GPU.
"""
import ctypes
import os
import threading

import numpy as np

from ..backend import cupy_module, get_array_module
from ._shared_library import loaded_library

__all__ = ["matmul", "library"]

#: cuBLAS's workspace, set by us: NVIDIA recommends 32 MiB on Hopper (4 MiB before)
WORKSPACE_BYTES = 32 << 20
_OP_N, _OP_T = 0, 1
_TF32_TENSOR_OP_MATH = 3        # cublasMath_t: float32 products on TF32 tensor cores
_SCALAR = {np.dtype(np.float32): (ctypes.c_float, "cublasSgemmStridedBatched"),
           np.dtype(np.float64): (ctypes.c_double, "cublasDgemmStridedBatched")}


class _Library:
    """libcublas through ctypes: a handle per device, its stream and workspace, and the two
    strided-batched products (float32, float64)."""

    def __init__(self):
        self._lib = None
        self._lock = threading.RLock()
        self._handles = {}      # device id -> (handle, workspace array, stream pointer set)

    def _load(self):
        if self._lib is None:
            cupy = cupy_module()
            cupy.cuda.device.get_cublas_handle()        # CuPy loads libcublas (and its handle)
            major = cupy.cuda.runtime.runtimeGetVersion() // 1000
            path = loaded_library(f"libcublas.so.{major}")     # CuPy's (or PyTorch's, same CUDA)
            if path is None:
                raise RuntimeError(f"matmul (own cuBLAS handle): libcublas.so.{major} is not loaded in this process")
            lib = ctypes.CDLL(path)
            void, int_, long_ = ctypes.c_void_p, ctypes.c_int, ctypes.c_longlong
            lib.cublasCreate_v2.argtypes = [ctypes.POINTER(void)]
            lib.cublasSetStream_v2.argtypes = [void, void]
            lib.cublasSetWorkspace_v2.argtypes = [void, void, ctypes.c_size_t]
            lib.cublasSetMathMode.argtypes = [void, int_]
            for name in ("cublasSgemmStridedBatched", "cublasDgemmStridedBatched"):
                getattr(lib, name).argtypes = [void, int_, int_, int_, int_, int_, void, void, int_, long_,
                                               void, int_, long_, void, void, int_, long_, int_]
            self._lib = lib
        return self._lib

    def _handle(self, stream_ptr):
        """This device's handle, on ``stream_ptr`` with our workspace (cublasSetStream resets
        the workspace to cuBLAS's own pool, so both are set together, only when it changes)."""
        cupy = cupy_module()
        device = cupy.cuda.runtime.getDevice()
        with self._lock:
            lib = self._load()
            entry = self._handles.get(device)
            if entry is None:
                handle = ctypes.c_void_p()
                _check(lib.cublasCreate_v2(ctypes.byref(handle)), "cublasCreate")
                if os.environ.get("CUPY_TF32", "0") != "0":     # as CuPy's own products do
                    _check(lib.cublasSetMathMode(handle, _TF32_TENSOR_OP_MATH), "cublasSetMathMode")
                workspace = cupy.empty(WORKSPACE_BYTES, dtype=cupy.uint8)
                entry = self._handles[device] = [handle, workspace, None]
            handle, workspace, current = entry
            if current != stream_ptr:
                _check(lib.cublasSetStream_v2(handle, stream_ptr), "cublasSetStream")
                _check(lib.cublasSetWorkspace_v2(handle, workspace.data.ptr, WORKSPACE_BYTES),
                       "cublasSetWorkspace")
                entry[2] = stream_ptr
            return handle

    def prepare(self, stream_ptr):
        """Load the library and make this device's handle, on ``stream_ptr``: before a capture,
        which must not create them."""
        self._handle(stream_ptr)

    def gemm_strided_batched(self, dtype, trans_a, trans_b, m, n, k, a, lda, stride_a,
                             b, ldb, stride_b, c, ldc, stride_c, batch):
        """C_i = op(A_i) op(B_i) for i < batch, column-major, alpha 1 and beta 0 (cuBLAS's
        ``<t>gemmStridedBatched``; a, b and c are device addresses, strides in elements)."""
        scalar, name = _SCALAR[dtype]
        one, zero = scalar(1), scalar(0)
        with self._lock:            # one handle and workspace per device: one call at a time
            handle = self._handle(cupy_module().cuda.get_current_stream().ptr)
            status = getattr(self._lib, name)(handle, trans_a, trans_b, m, n, k, ctypes.byref(one), a, lda,
                                              stride_a, b, ldb, stride_b, ctypes.byref(zero), c, ldc, stride_c, batch)
        _check(status, name)


library = _Library()


def _check(status, name):
    if status != 0:
        raise RuntimeError(f"matmul (own cuBLAS handle): {name} failed with cuBLAS status {status}")


def _address(a):
    """The address of an array's first element (CuPy; a NumPy array in the CPU stand-in test)."""
    return a.data.ptr if hasattr(a.data, "ptr") else a.ctypes.data


def _operand(xp, a):
    """(array, stored column-major?, leading dimension, batch stride) of a (B, R, C) stack
    whose matrices cuBLAS reads in place: row-major or column-major, any batch stride
    (0: one matrix for all); any other layout is copied row-major first."""
    item = a.itemsize
    batch, rows, cols = a.shape
    strides = [s // item if s % item == 0 else -1 for s in a.strides]
    batch_stride = 0 if batch == 1 else strides[0]
    if batch_stride >= 0:
        if (cols == 1 or strides[2] == 1) and (rows == 1 or strides[1] == cols):
            return a, False, max(cols, 1), batch_stride
        if (rows == 1 or strides[1] == 1) and (cols == 1 or strides[2] == rows):
            return a, True, max(rows, 1), batch_stride
    a = xp.ascontiguousarray(a)
    return a, False, max(cols, 1), 0 if batch == 1 else rows * cols


def matmul(a, b, out=None):
    """``a @ b`` for float32 or float64 arrays of 2 or 3 dimensions (NumPy's rules: the
    batch dimension broadcasts, a 2-D operand is one matrix for the whole batch), by one
    strided-batched cuBLAS call; into ``out`` if given (``numpy.matmul``'s ``out``)."""
    if a.dtype != b.dtype or a.dtype not in _SCALAR or not (2 <= a.ndim <= 3 and 2 <= b.ndim <= 3):
        raise TypeError(f"matmul (own cuBLAS handle): float32 or float64 arrays of 2 or 3 dimensions, "
                        f"got {a.dtype} {a.shape} and {b.dtype} {b.shape}")
    xp = get_array_module(a)
    a3, b3 = a.reshape((1,) * (3 - a.ndim) + a.shape), b.reshape((1,) * (3 - b.ndim) + b.shape)
    (ba, m, k), (bb, k2, n) = a3.shape, b3.shape
    if k != k2 or (ba != bb and 1 not in (ba, bb)):
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} do not multiply")
    batch = max(ba, bb)
    shape = (batch, m, n) if a.ndim == 3 or b.ndim == 3 else (m, n)
    if out is not None and (out.shape != shape or out.dtype != a.dtype):
        raise ValueError(f"matmul: out is {out.dtype} {out.shape}, the product {a.dtype} {shape}")
    result = out if out is not None and out.flags.c_contiguous else xp.empty(shape, dtype=a.dtype)
    if result.size and k == 0:
        result[...] = 0
    elif result.size:
        a3, a_transposed, lda, stride_a = _operand(xp, a3)
        b3, b_transposed, ldb, stride_b = _operand(xp, b3)
        # C^T (n x m) = op(B-as-read) op(A-as-read): a row-major operand read column-major is
        # already the transpose we need; a column-major one needs cuBLAS's transpose flag
        library.gemm_strided_batched(a.dtype, _OP_T if b_transposed else _OP_N, _OP_T if a_transposed else _OP_N,
                                     n, m, k, _address(b3), ldb, stride_b, _address(a3), lda, stride_a,
                                     _address(result), n, m * n, batch)
    if out is not None and result is not out:
        out[...] = result
    return out if out is not None else result
