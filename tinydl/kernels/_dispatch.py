"""Small shared helpers for the kernels: Numba's compiled twins, which of them runs
(serial or parallel, Numba or the NumPy reference), padding normalisation, and a
reusable scratch-buffer cache.

Nothing here imports CuPy, and nothing changes the process at import: the
process-wide tuning is ``td.backends.cpu.tune()``.
"""
import functools
import math
import threading
import types

import numpy as np

from .. import backends
from ..backend import is_cupy_array

try:  # Numba is a hard dependency of tinydl, but the NumPy paths must still work without it.
    import numba
    from numba import prange

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover - exercised only on broken installs
    numba = None
    HAVE_NUMBA = False
    prange = range

# The workqueue pool serves one caller at a time: a second thread that launched a
# parallel kernel meanwhile (a DataLoader worker, say) would abort the process.
# So every parallel kernel is entered under this lock. Uncontended, the lock costs
# well under a microsecond; a parallel kernel already fills every core.
_PARALLEL_KERNEL_LOCK = threading.Lock()


def njit(*args, **options):
    """``numba.njit``, where kernels compiled with ``parallel=True`` run one at a
    time (see above) and come with a ``.serial`` twin: the same function compiled
    without ``parallel`` (``prange`` is then ``range``) and without the GIL, for
    the chunk workers of ``_threads.run_chunks``, which already fill every core.
    Without Numba, it leaves the function as plain Python.

    The twin lacks the parfor's noalias marks, so it can be slower on one thread
    (max-pool forward therefore always runs parallel)."""
    if args and callable(args[0]):
        return njit(**options)(args[0])

    def decorate(fn):
        if not HAVE_NUMBA:
            return fn
        compiled = numba.njit(**options)(fn)
        if not options.get("parallel"):
            return compiled

        @functools.wraps(fn)
        def one_at_a_time(*call_args):
            with _PARALLEL_KERNEL_LOCK:
                return compiled(*call_args)
        # A copy under its own name: Numba's disk cache files are named after the
        # function, and the two compilations must not share them.
        twin = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_serial",
                                  fn.__defaults__, fn.__closure__)
        twin.__qualname__ = fn.__qualname__ + "_serial"
        one_at_a_time.serial = numba.njit(**{**options, "parallel": False, "nogil": True})(twin)
        return one_at_a_time
    return decorate


# Set while a thread runs a share of run_chunks' work (kernels/_threads.py).
class _ChunkWorker(threading.local):
    active = False            # every thread's default, read from the class (fast)


_chunk_worker = _ChunkWorker()


def in_chunk_worker():
    """Is this thread one of run_chunks' workers? Its kernels must then be serial."""
    return _chunk_worker.active


# Below this many elements one thread finishes before parallel ones wake (benchmarks/bench_im2col.py).
PARALLEL_MIN_SIZE = 1 << 19


def runs_serial(size):
    """Should a kernel over ``size`` elements run on this thread alone? Yes inside
    a chunk worker (the workers already fill every core) and below PARALLEL_MIN_SIZE."""
    return size < PARALLEL_MIN_SIZE or in_chunk_worker()


def for_this_thread(kernel, size):
    """A parallel kernel, or its serial twin where ``runs_serial(size)``."""
    return kernel.serial if runs_serial(size) else kernel


# Numba compiles one machine-code version per argument-type signature; the
# kernels are only ever dispatched with these dtypes, so at most two versions
# of each kernel get compiled (and cached on disk).
NUMBA_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def use_numba(dtype=None):
    """Should the Numba path run? No under ``td.backends.reference()`` (or
    ``TINYDL_NO_NUMBA=1``), without Numba, or for dtypes we do not compile for
    (those take the NumPy reference path)."""
    if not HAVE_NUMBA or backends.is_reference():
        return False
    return dtype is None or np.dtype(dtype) in NUMBA_DTYPES


def kernel_route(op, x, numba_ok=True):
    """'cuda', 'numba' or 'reference' for a kernel family with those three versions, on
    array ``x``; told to ``td.backends.record_routes`` under the op's name."""
    if is_cupy_array(x):
        route = "cuda"
    else:
        route = "numba" if numba_ok and use_numba(x.dtype) else "reference"
    backends.note_route(op, route)
    return route


def numba_threads_started():
    """Has Numba started its thread pool (after which its threading layer is fixed)?"""
    if not HAVE_NUMBA:
        return False
    from numba.np.ufunc import parallel
    return bool(getattr(parallel, "_is_initialized", False))


# --------------------------------------------------------------------------- arguments
def padding4(p):
    """Padding as ``(top, bottom, left, right)``.

    Accepts ``p`` (all sides), ``(ph, pw)`` (PyTorch's symmetric pair) or
    ``(top, bottom, left, right)``. The 4-int form lets callers pad unevenly:
    'same' convolution with an even kernel, or the extra bottom/right cells that
    ``ceil_mode`` pooling needs.
    """
    if type(p) is tuple and len(p) == 4 and all([type(a) is int and a >= 0 for a in p]):
        return p                      # already normalised
    if isinstance(p, (int, np.integer)):
        p = (int(p),) * 4
    else:
        p = tuple(int(a) for a in p)
        if len(p) == 2:
            p = (p[0], p[0], p[1], p[1])
    if len(p) != 4 or min(p) < 0:
        raise ValueError(f"padding must be an int, (ph, pw) or (top, bottom, left, right) >= 0, got {p!r}")
    return p


# --------------------------------------------------------------------------- workspace
_WORKSPACE = {}


def workspace(shape, dtype, key):
    """A scratch NumPy array of ``shape``/``dtype`` whose memory is reused across calls.

    Why: a fresh 10-100 MB column matrix page-faults on first touch; a reused one does not.

    Contract (read it before using this):
      * the returned array is only valid until the next ``workspace`` call with
        the same ``key``; the next call hands out the same memory again, so
        never keep a workspace array in autograd's saved state;
      * contents are garbage (like ``np.empty``);
      * not thread-safe: two threads using the same key would share memory;
      * the buffer grows to the largest request seen for the key and is never
        shrunk; ``clear_workspace()`` frees everything.

    NumPy only: CuPy has its own caching memory pool, so GPU code just allocates.
    """
    dtype = np.dtype(dtype)
    shape = tuple(map(int, shape))
    size = math.prod(shape)
    buf = _WORKSPACE.get(key)
    if buf is None or buf.dtype != dtype or buf.size < size:
        buf = np.empty(max(size, 1), dtype=dtype)
        _WORKSPACE[key] = buf
    return buf[:size].reshape(shape)


def clear_workspace(key=None):
    """Free the workspace buffer of ``key`` (or all of them when ``key`` is None)."""
    if key is None:
        _WORKSPACE.clear()
    else:
        _WORKSPACE.pop(key, None)
