"""The Linear op's matrix products on the CPU: single-threaded, or their rows split among
the chunk workers (kernels/_threads.py), each share single-threaded.

Why: a product big enough for OpenBLAS to thread (M*N*K above 2^18) wakes OpenBLAS's
own threads, which then spin for about a tenth of a second, taking the core that
Numba's next parallel kernel needs. A LeNet-5 step (its fully connected layers are
such products) took 3.5 to 5.7 ms from one process to the next, and 3.55-3.8 ms with
OpenBLAS on one thread (two cores, "AMD EPYC", benchmarks/bench_alone.py). So such a
product runs on one thread, and a big one (AlexNet's and VGG's fully connected layers)
with its rows split among the chunk workers, which use both cores without waking those
threads. Anything but two NumPy arrays (CuPy, the Tensors of a backward recorded for
double backward) is multiplied as it is, by ``matmul``: the one product of the kernels that
a CUDA graph's capture can hold.
"""
import numpy as np

from ..backend import capture, get_array_module, is_cupy_array
from ..backends import forced_route
from . import cublas_handle
from ._threads import per_worker, run_chunks, single_threaded_blas

__all__ = ["matmul", "matmul_rows", "matmul_t", "own_cublas"]

THREADED_PRODUCT_MIN = 1 << 18     # M*N*K from which OpenBLAS threads a product itself
SPLIT_PRODUCT_MIN = 1 << 24        # ... and from which the workers' hand-off pays (0.5 ms a product)


def own_cublas():
    """Do this thread's CuPy products take tinydl's own cuBLAS handle (kernels/cublas_handle.py)?
    During a CUDA graph's capture (``td.cuda.graph``: CuPy's handle refuses it), and where
    ``td.backends.route(matmul='own_cublas')`` asks (GraphedStep's eager calls: the kernels the
    capture will use are then loaded before it)."""
    return capture.active or forced_route("matmul") == "own_cublas"


def matmul(a, b, out=None):
    """``a @ b`` (NumPy's rules), into ``out`` if given; a CuPy product on the own cuBLAS handle
    where ``own_cublas()`` says so."""
    if type(a) is not np.ndarray and is_cupy_array(a) and own_cublas():
        return cublas_handle.matmul(a, b, out=out)
    return a @ b if out is None else get_array_module(a).matmul(a, b, out=out)


def _product(a, b, rows, one_call, on_rows):
    """``one_call()``, the product of a and b (M*N*K = a.size * b.shape[1]), single-threaded
    where OpenBLAS would thread it, or ``on_rows(slices)``, ``rows`` output rows split among
    the workers, where it is big."""
    if type(a) is not np.ndarray or type(b) is not np.ndarray:
        return one_call()
    size = a.size * b.shape[-1]
    if size < THREADED_PRODUCT_MIN:
        return one_call()
    slices = per_worker(rows) if size >= SPLIT_PRODUCT_MIN else []
    if len(slices) > 1:
        return on_rows(slices)
    with single_threaded_blas():
        return one_call()


def matmul_rows(a, b):
    """a @ b for a (M, K) and b (K, N); each worker computes a share of the rows."""
    def on_rows(slices):
        out = np.empty((a.shape[0], b.shape[1]), dtype=a.dtype)
        run_chunks(lambda s, worker: np.matmul(a[s], b, out=out[s]), slices)
        return out
    return _product(a, b, a.shape[0], lambda: matmul(a, b), on_rows)


def matmul_t(a, b):
    """a^T @ b for a (M, K) and b (M, N): a sum over the M rows; each worker computes a share
    of the K output rows (a share of the M rows would leave K x N partial sums to add up)."""
    def on_columns(slices):
        out = np.empty((a.shape[1], b.shape[1]), dtype=a.dtype)
        run_chunks(lambda s, worker: np.matmul(a[:, s].T, b, out=out[s]), slices)
        return out
    return _product(a, b, a.shape[1], lambda: matmul(a.T, b), on_columns)
