"""Small shared helpers for the kernels: which implementation to run, argument
normalisation, and a reusable scratch-buffer cache.

Nothing here imports CuPy. A CuPy array is recognised by the module its type
lives in, so CPU-only installs never pay for (or fail on) ``import cupy``.
"""
import ctypes
import ctypes.util
import functools
import math
import os
import sys
import threading
import types

import numpy as np

from ..backend import get_array_module, is_cupy_array, numba_enabled

# Idle OpenMP workers must sleep, not spin. By default OpenMP threads busy-wait
# after each parallel loop; on a small machine (our 2-vCPU development VMs) the
# spinning threads starve the main thread and OpenBLAS's threads, and every
# parallel kernel call then costs ~12 ms instead of ~0.2 ms (median of 40
# max-pool-backward calls: 12 ms default vs 0.18 ms passive; PyTorch's own
# max_pool2d in the same process: 12 ms vs 2.4 ms). OpenMP reads this variable
# once, when the first OpenMP runtime is loaded -- and a process has only one
# libgomp, shared by Numba and PyTorch -- so it must be set before Numba starts its
# threads or torch is imported. An explicit user setting wins.
_USER_SET_WAIT_POLICY = "OMP_WAIT_POLICY" in os.environ
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _openmp_already_loaded():
    """Is the OpenMP runtime that Numba would share already in this process (say,
    torch was imported first)? It has then read its settings, and our
    OMP_WAIT_POLICY comes too late for it. Numba's OpenMP layer links against
    ``libgomp.so.1``; a copy vendored under another name (scikit-learn's
    ``libgomp-<hash>.so``) is a separate runtime and does not count."""
    try:
        with open("/proc/self/maps") as maps:
            return any("/libgomp.so.1" in line for line in maps)
    except OSError:                                      # not Linux: nothing to check
        return False


def _keep_freed_memory():
    """Let glibc reuse freed memory for big arrays instead of returning it to the OS.

    By default glibc serves every allocation of 128 KB or more (growing up to 32 MB)
    with a fresh mmap and unmaps it on free, so each new activation, gradient or GEMM
    output of a training step is new pages, and the first touch of each page is a
    page fault: ~17,600 faults, 50-60 ms of kernel time per ResNet-20 CPU step at
    batch 128 (an 8 MB GEMM output costs 4.4 ms fresh, 2 ms reused). Serving arrays
    up to 32 MB from the heap, and keeping up to 1 GB of freed heap, brings that to
    a dozen faults: the step took 812 instead of 938 ms (wall, 2 threads; PyTorch in
    the same process: 539 instead of 589 ms). The price: the process keeps its peak
    heap until it exits. ``TINYDL_MALLOPT=0`` leaves glibc's defaults alone.
    """
    if os.environ.get("TINYDL_MALLOPT", "1") == "0" or not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3        # glibc's malloc.h
        libc.mallopt(M_MMAP_THRESHOLD, 32 << 20)            # the largest value glibc accepts
        libc.mallopt(M_TRIM_THRESHOLD, 1 << 30)
    except (OSError, AttributeError, TypeError):           # not glibc (musl, ...): leave it
        pass


_keep_freed_memory()

try:  # Numba is a hard dependency of tinydl, but the NumPy paths must still work without it.
    import numba
    from numba import prange

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover - exercised only on broken installs
    numba = None
    HAVE_NUMBA = False
    prange = range

# Which threads run Numba's parallel loops. Numba's default here is OpenMP, and a
# process has one libgomp, shared with PyTorch. When torch was imported before
# tinydl, that libgomp started with its default wait policy: after every parallel
# kernel its idle threads spin for a while, and on a 2-core machine they starve
# OpenBLAS's threads. A ResNet-20 CPU step then took 2.7-2.9 s instead of
# 0.87-0.92 s, and an MLP step 7.5 ms instead of 1.0 ms. Numba's own 'workqueue'
# pool sleeps when idle, so it is used in that case. The user's
# NUMBA_THREADING_LAYER or OMP_WAIT_POLICY wins.
if (HAVE_NUMBA and "NUMBA_THREADING_LAYER" not in os.environ
        and not _USER_SET_WAIT_POLICY and _openmp_already_loaded()):
    numba.config.THREADING_LAYER = "workqueue"

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

    The twin can come out slower than the parallel kernel on one thread: Numba's
    parfor lowering marks the arrays noalias when it proves they do not overlap,
    and the twin gets no such mark. Against a noalias build on one thread,
    im2col and col2im run at the same speed, ReLU's forward 1.0-1.3x slower, and
    the max-pool scan 4-10x slower (its loads cannot be moved past the stores to
    y), so max-pool forward always runs parallel."""
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
_chunk_worker = threading.local()


def in_chunk_worker():
    """Is this thread one of run_chunks' workers? Its kernels must then be serial."""
    return getattr(_chunk_worker, "active", False)


# Waking Numba's idle threads costs 70-80 us per parallel kernel call on our
# 2-vCPU VMs (OMP_WAIT_POLICY=PASSIVE: they sleep between kernels). Below about
# half a million elements one thread is done sooner. Serial vs parallel, us:
# ReLU 262K elements 29 vs 85, 1M 126 vs 133, 4M 1344 vs 1067; max-pool backward
# 0.3M 88 vs 162, 4M 2115 vs 1309; batch-norm kernels 0.3M 39-81 vs 89-102,
# 0.5M 115-227 vs 156-199, 2.1M 386-524 vs 264-394; im2col/col2im 0.24M
# 98-168 vs 159-220, 0.5M 196-348 vs 178-378, 1M 608-785 vs 399-638.
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


# One definition each, in the backend: which array module owns an array.
is_cupy = is_cupy_array
array_module = get_array_module


def use_numba(dtype=None):
    """Should the Numba path run? No if ``TINYDL_NO_NUMBA=1`` or Numba is missing,
    or for dtypes we do not compile for (they take the NumPy reference path).

    The variable is read on every call (it costs ~100 ns) so tests and users can
    flip it at run time.
    """
    if not HAVE_NUMBA or not numba_enabled():
        return False
    if dtype is not None and np.dtype(dtype) not in NUMBA_DTYPES:
        return False
    return True


# --------------------------------------------------------------------------- arguments
def pair(v, name="argument"):
    """``3 -> (3, 3)``; ``(3, 5) -> (3, 5)``. Values become plain Python ints."""
    if type(v) is tuple and len(v) == 2 and type(v[0]) is type(v[1]) is int:
        return v                      # already normalised: the common case, called per chunk
    if isinstance(v, (int, np.integer)):
        return int(v), int(v)
    v = tuple(int(a) for a in v)
    if len(v) != 2:
        raise ValueError(f"{name} must be an int or a pair of ints, got {v!r}")
    return v


def padding4(p):
    """Padding as ``(top, bottom, left, right)``.

    Accepts ``p`` (all sides), ``(ph, pw)`` (PyTorch's symmetric pair) or
    ``(top, bottom, left, right)``. The 4-int form lets callers pad unevenly:
    'same' convolution with an even kernel, or the extra bottom/right cells that
    ``ceil_mode`` pooling needs.
    """
    if type(p) is tuple and len(p) == 4 and all(type(a) is int and a >= 0 for a in p):
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

    Why: an im2col matrix is often 10-100 MB. ``np.empty`` of that size gets fresh
    pages from the OS every time, and touching them for the first time costs
    page faults (milliseconds per step, comparable to the im2col itself). Reusing
    one buffer per ``key`` keeps the pages mapped.

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
