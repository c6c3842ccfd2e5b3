"""``td.backends.cpu.tune()``: the process-wide settings that make tinydl fast on a CPU.

``import tinydl`` changes nothing outside tinydl. These changes reach beyond it (other
libraries in the process see them too), so they wait for an explicit call. The CLI,
the Trainer, the benchmarks and the test suite make it; a script can too::

    import tinydl as td
    td.backends.cpu.tune()        # before the first parallel kernel runs, ideally

What it changes, and why (figures in docs/performance.md and the commit log):

* ``OMP_WAIT_POLICY=PASSIVE``: idle OpenMP threads sleep instead of spinning. On a
  small machine spinning threads starve the next kernel's threads. OpenMP reads it
  once, when its runtime loads, so it works only if no OpenMP runtime is loaded yet;
  a value the user set wins.
* Numba's ``workqueue`` threading layer when an OpenMP runtime is already loaded
  (torch imported first): its threads then spin, and Numba's own pool sleeps.
* glibc ``mallopt``: arrays up to 32 MB come from the heap, and freed memory is kept,
  so the step's big temporaries reuse mapped pages instead of page-faulting new ones.
  The process then keeps its peak heap until it exits (``malloc=False`` skips it).
* Convolutions run their chunks of images on all cores at once, each worker on one
  thread with single-threaded OpenBLAS (tinydl sets OpenBLAS's thread count to 1
  while its workers run, and restores it); Linear's products run single-threaded or
  split among the same workers (kernels/matmul.py).
* ``threads``: Numba's thread count (e.g. cores / ranks under mpiexec).

One setting cannot wait for ``tune()``: Numba fixes its target's CPU features when the
first function is decorated, which ``import tinydl`` does. On Intel's AVX-512 server
cores (Skylake-X to Sapphire Rapids) LLVM's tuning for the CPU prefers 256-bit vectors,
so every Numba kernel uses ymm registers, half the width OpenBLAS and oneDNN use there
(``wide_vector_features()``'s docstring shows how to check). ``NUMBA_CPU_FEATURES`` set
to ``wide_vector_features()`` before Python starts lifts that preference: the ``tinydl``
command starts itself again with it where that widens Numba's vectors
(``wide_vector_environment()``); a script can be started so too (docs/performance.md);
``benchmarks/bench_alone.py --wide-vectors off --against .`` measures what it is worth.
"""
import ctypes
import ctypes.util
import os
import sys

__all__ = ["tune", "is_tuned", "wide_vector_features", "numba_uses_wide_vectors", "wide_vector_environment"]

_tuned = {}


def _openmp_loaded():
    """Is an OpenMP runtime (libgomp, shared by Numba and PyTorch) already in this process?
    A copy vendored under another name (scikit-learn's libgomp-<hash>.so) does not count."""
    try:
        with open("/proc/self/maps") as maps:
            return any("/libgomp.so.1" in line for line in maps)
    except OSError:                                      # not Linux: nothing to check
        return False


def _keep_freed_memory():
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        m_trim_threshold, m_mmap_threshold = -1, -3      # glibc's malloc.h
        return bool(libc.mallopt(m_mmap_threshold, 32 << 20)) and bool(libc.mallopt(m_trim_threshold, 1 << 30))
    except (OSError, AttributeError, TypeError):         # not glibc (musl, ...)
        return False


def tune(threads=None, malloc=True, chunk_workers=True):
    """Apply the settings above (each once; calling again is cheap). Returns a dict of
    what is in force: ``wait_policy``, ``threading_layer``, ``malloc``, ``chunk_workers``,
    ``threads``."""
    from ..kernels import _dispatch, _threads

    if "wait_policy" not in _tuned:
        user_choice = "OMP_WAIT_POLICY" in os.environ
        openmp = _openmp_loaded()
        if not user_choice and not openmp:
            os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        _tuned["wait_policy"] = os.environ.get("OMP_WAIT_POLICY", "(the runtime's default)")
        layer = "(Numba's default)"
        if (_dispatch.HAVE_NUMBA and openmp and not user_choice and "NUMBA_THREADING_LAYER" not in os.environ
                and not _dispatch.numba_threads_started()):
            _dispatch.numba.config.THREADING_LAYER = layer = "workqueue"
        _tuned["threading_layer"] = layer
    if malloc and not _tuned.get("malloc"):
        _tuned["malloc"] = _keep_freed_memory()
    _threads.WORKERS_ALLOWED = bool(chunk_workers)
    _tuned["chunk_workers"] = bool(chunk_workers)
    if threads is not None and _dispatch.HAVE_NUMBA:
        _dispatch.numba.set_num_threads(int(threads))
    _tuned["threads"] = _dispatch.numba.get_num_threads() if _dispatch.HAVE_NUMBA else 1
    return dict(_tuned)


def wide_vector_features():
    """This CPU's features for ``NUMBA_CPU_FEATURES`` with LLVM's preference for 256-bit
    vectors dropped (``-prefer-256-bit``), or None without AVX-512. On AMD's Zen 4 LLVM
    already uses zmm registers and the code is the same. To see what a kernel gets::

        NUMBA_CPU_NAME=sapphirerapids python -c "..."   # then count 'zmm' in inspect_asm()

    (an a[i] += s * b[i] loop: 25 ymm and no zmm lines for sapphirerapids, icelake-server
    and skylake-avx512; 21 zmm lines with these features or on znver4; Numba 0.68)."""
    import llvmlite.binding as llvm

    features = llvm.get_host_cpu_features()
    if not features.get("avx512f"):
        return None
    return features.flatten() + ",-prefer-256-bit"


def numba_uses_wide_vectors():
    """Do Numba's loops use 512-bit (zmm) registers in this process? Compiles a
    y[i] += a * x[i] loop and reads its assembly (0.1-0.4 s: more when it is the
    process's first compilation)."""
    import numba

    @numba.njit(cache=False)
    def axpy(a, x, y):
        for i in range(x.size):
            y[i] += a * x[i]
    signature = (numba.float32, numba.float32[::1], numba.float32[::1])
    axpy.compile(signature)
    return "zmm" in axpy.inspect_asm(signature)


#: Numba settings that choose the code it makes: where the user set one, it stands
_USER_CODEGEN_CHOICES = ("NUMBA_CPU_FEATURES", "NUMBA_CPU_NAME", "NUMBA_ENABLE_AVX", "NUMBA_DISABLE_JIT")


def wide_vector_environment(environ=None):
    """``environ`` (default: this process's) with ``NUMBA_CPU_FEATURES`` set to
    ``wide_vector_features()``, for a new process, where that gives Numba wider vectors
    than this process has: on Intel's AVX-512 cores. None where it would change nothing
    or override the user: ``environ`` sets one of ``_USER_CODEGEN_CHOICES``, the CPU has
    no AVX-512, or Numba already uses zmm registers here (AMD's Zen 4)."""
    environ = dict(os.environ if environ is None else environ)
    if any(name in environ for name in _USER_CODEGEN_CHOICES):
        return None
    features = wide_vector_features()
    if features is None or numba_uses_wide_vectors():
        return None
    return {**environ, "NUMBA_CPU_FEATURES": features}


def is_tuned():
    """Has ``tune()`` run in this process?"""
    return bool(_tuned)
