"""Spread the chunks of a convolution over the cores: one thread per core, each
running whole chunks with single-threaded kernels.

Why: im2col (Numba), the GEMM (OpenBLAS) and the output copy, each parallel on its
own, leave two thread pools taking turns, and OpenBLAS's spinning threads take the
cores the next im2col needs. Whole chunks per core keep every core busy.

``run_chunks(work, chunks)`` calls ``work(chunk, worker)`` for every chunk, dealt
round-robin to the workers (the calling thread is worker 0). Inside a worker, Numba
kernels run their serial twin (``for_this_thread``) and OpenBLAS runs on one thread:
its process-wide thread count is set to 1 while the workers run and restored after,
which is why the workers are used only after ``td.backends.cpu.tune()`` allowed it.
NumPy releases the GIL in matmul and in copies, so the workers really run together.

``work`` must write only to its own chunk's slice of an output, or to buffers of its
own worker (``worker_key``). Without tuning, without the OpenBLAS controls (another
BLAS, another OS), without Numba, with one chunk or one core, or while another thread
is running chunks, everything runs in the calling thread, in order.
"""
import contextlib
import ctypes
import functools
import threading
from concurrent.futures import ThreadPoolExecutor, wait

from ._dispatch import HAVE_NUMBA, _chunk_worker, numba, use_numba

# Set by td.backends.cpu.tune(): the workers change OpenBLAS's thread count while they run.
WORKERS_ALLOWED = False


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
_busy = threading.Lock()     # one single_threaded_blas block (a run_chunks among them) owns the BLAS setting


def _mark_worker():
    _chunk_worker.active = True


def chunk_workers(n_chunks):
    """How many threads ``run_chunks`` would use for ``n_chunks`` chunks."""
    if not (WORKERS_ALLOWED and HAVE_NUMBA and use_numba()) or _blas_controls() is None:
        return 1
    return max(1, min(numba.get_num_threads(), n_chunks, numba.config.NUMBA_NUM_THREADS))


def worker_key(key, worker):
    """A workspace key of one worker: two workers must never share a scratch buffer."""
    return key if worker == 0 else f"{key}#{worker}"


def run_chunks(work, chunks):
    """Call ``work(chunk, worker)`` for each of ``chunks``, spread over the workers."""
    workers = chunk_workers(len(chunks))
    if workers > 1:
        with single_threaded_blas() as owned:
            if owned:
                _run_on_workers(work, chunks, workers)
                return
    for chunk in chunks:
        work(chunk, 0)


def _run_on_workers(work, chunks, workers):
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(numba.config.NUMBA_NUM_THREADS - 1, thread_name_prefix="tinydl-chunks",
                                   initializer=_mark_worker)
    futures = [_pool.submit(_run_share, work, chunks[w::workers], w) for w in range(1, workers)]
    _chunk_worker.active = True
    try:
        _run_share(work, chunks[0::workers], 0)
    finally:
        _chunk_worker.active = False
        wait(futures)                                         # none may outlive the BLAS setting
    for future in futures:
        future.result()                                       # re-raises a worker's exception


def _run_share(work, share, worker):
    for chunk in share:
        work(chunk, worker)


def accumulate(parts, worker, value):
    """parts[worker] += value: a worker's share of a sum over chunks (dL/dW over images).
    ``value`` is a fresh product, so the first one is kept as is."""
    if worker in parts:
        parts[worker] += value
    else:
        parts[worker] = value


def add_up(parts, xp, shape, dtype):
    """The sum of the workers' shares (a dict worker -> array); zeros if none. Added in the
    workers' order, not the order they finished in: the same sum every run."""
    total = xp.zeros(shape, dtype=dtype)
    for worker in sorted(parts):
        total += parts[worker].reshape(shape)
    return total


def per_worker(n):
    """0..n in one slice per chunk worker (one slice when the workers are off)."""
    workers = chunk_workers(n)
    bounds = [i * n // workers for i in range(workers + 1)]
    return [slice(a, b) for a, b in zip(bounds, bounds[1:])]


@contextlib.contextmanager
def single_threaded_blas():
    """OpenBLAS on one thread inside the block, where the workers are allowed (after
    ``td.backends.cpu.tune()``) and no other block owns the setting (a run_chunks in
    flight); as it was otherwise. Yields whether this block owns it."""
    if chunk_workers(2) == 1 or not _busy.acquire(blocking=False):
        yield False
        return
    set_threads, get_threads = _blas_controls()
    blas_threads = get_threads()
    set_threads(1)
    try:
        yield True
    finally:
        set_threads(blas_threads)
        _busy.release()
