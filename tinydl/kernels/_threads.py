"""Spread the chunks of a convolution over the cores: one thread per core, each
running whole chunks with single-threaded kernels.

Why
---
A convolution on the CPU is a loop over chunks of images: im2col (a Numba
kernel), a GEMM (OpenBLAS), then a copy into the output (NumPy). Each step used
to be parallel on its own, and the two thread pools took turns: OpenBLAS's
threads spin for a while after every GEMM, and on a small machine the spinning
threads took cores from Numba's threads that ran the next im2col, and the
reverse. Measured on 2 cores, a ResNet-20 training step (batch 128) ran only
1.2-1.45x faster on 2 threads than on 1, while PyTorch's ran 1.8x faster. On
one thread tinydl took 1.13x PyTorch's time; on two, 1.7-1.9x.

How
---
``run_chunks(work, chunks)`` calls ``work(chunk, worker)`` for every chunk, the
chunks dealt round-robin to ``workers`` threads (the calling thread is worker 0).
Inside a worker:
  * Numba kernels run their serial twin (``_dispatch.njit`` compiles one per
    parallel kernel, without the GIL): ``for_this_thread`` picks it;
  * OpenBLAS runs on one thread: its thread count is set to 1 for the duration
    of the call and restored after (a process-wide setting of the OpenBLAS that
    NumPy loaded, found through ctypes);
  * NumPy releases the GIL in matmul and in array copies, so the workers really
    run at the same time.
One convolution forward of 128x16x32x32 (3x3): 26.8 -> 17.6 ms; 128x32x16x16:
16.8 -> 10.4 ms (medians, 2 cores).

``work`` must write only to its own chunk's slice of an output, or to buffers
of its own worker (see ``worker_key``). When the OpenBLAS controls are not
found (another BLAS, another OS), when Numba is off, when there is one chunk or
one core, or while another thread is running chunks, everything runs in the
calling thread, in order, with the usual parallel kernels.

Every convolution with 2 MB of columns or more takes the workers (ops/conv.py:
_batch_chunks splits it even when one chunk would hold it). Within a training
step, a convolution that uses two-thread OpenBLAS wakes its helper thread, which
then spins on a core while the next convolutions' workers need both: keeping
layers with 3 chunks on the sequential path made a ResNet-20 step 6-20% slower
(medians 628-717 against 597-625 ms). Smaller ones run sequentially, where their
kernels are serial too (_dispatch.PARALLEL_MIN_SIZE).
"""
import ctypes
import functools
import threading
from concurrent.futures import ThreadPoolExecutor, wait

from ._dispatch import HAVE_NUMBA, _chunk_worker, numba, use_numba

# None: one worker per thread Numba may use (NUMBA_NUM_THREADS, all cores by default).
MAX_WORKERS = None


def _openblas_thread_controls():
    """(set_num_threads, get_num_threads) of the OpenBLAS loaded in this process, or None.

    NumPy's wheels ship OpenBLAS with prefixed, 64-bit-integer symbol names;
    distribution builds use the plain names.
    """
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.lower() and ".so" in line}
    except OSError:                                          # not Linux
        return None
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix in (("scipy_openblas", "64_"), ("openblas", "64_"), ("openblas", "")):
            setter = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
            getter = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
            if setter is not None and getter is not None:
                setter.argtypes, setter.restype = [ctypes.c_int], None
                getter.argtypes, getter.restype = [], ctypes.c_int
                return setter, getter
    return None


# Looked up on first use (NumPy has loaded its BLAS by then), once.
_blas_controls = functools.lru_cache(maxsize=None)(_openblas_thread_controls)
_pool = None
_busy = threading.Lock()     # one run_chunks at a time owns the workers and the BLAS setting


def _mark_worker():
    _chunk_worker.active = True


def chunk_workers(n_chunks):
    """How many threads ``run_chunks`` would use for ``n_chunks`` chunks."""
    if not (HAVE_NUMBA and use_numba()) or _blas_controls() is None:
        return 1
    threads = numba.get_num_threads() if MAX_WORKERS is None else MAX_WORKERS
    return max(1, min(threads, n_chunks, numba.config.NUMBA_NUM_THREADS))


def worker_key(key, worker):
    """A workspace key of one worker: two workers must never share a scratch buffer."""
    return key if worker == 0 else f"{key}#{worker}"


def run_chunks(work, chunks):
    """Call ``work(chunk, worker)`` for each of ``chunks``, spread over the workers."""
    global _pool
    workers = chunk_workers(len(chunks))
    if workers == 1 or not _busy.acquire(blocking=False):
        for chunk in chunks:
            work(chunk, 0)
        return
    try:
        if _pool is None:
            _pool = ThreadPoolExecutor(numba.config.NUMBA_NUM_THREADS - 1, thread_name_prefix="tinydl-chunks",
                                       initializer=_mark_worker)
        set_threads, get_threads = _blas_controls()
        blas_threads = get_threads()
        set_threads(1)
        try:
            futures = [_pool.submit(_run_share, work, chunks[w::workers], w) for w in range(1, workers)]
            _chunk_worker.active = True
            try:
                _run_share(work, chunks[0::workers], 0)
            finally:
                _chunk_worker.active = False
                wait(futures)                                 # none may outlive the BLAS setting
            for future in futures:
                future.result()                               # re-raises a worker's exception
        finally:
            set_threads(blas_threads)
    finally:
        _busy.release()


def _run_share(work, share, worker):
    for chunk in share:
        work(chunk, worker)
