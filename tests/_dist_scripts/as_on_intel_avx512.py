"""The ``tinydl`` command as it starts on an Intel AVX-512 core, on any CPU.

    [mpiexec -n 2] python tests/_dist_scripts/as_on_intel_avx512.py train ARGS...

Before ``console_main()`` runs, Numba is said to use 256-bit vectors here, and the wide
features are the host's own (the same code, so the restarted process finds Numba's
cached kernels). Each process prints its id and whether NUMBA_CPU_FEATURES is set, so
the output shows the restart: the same id twice, unset then set. Numba settings of the
caller's shell are dropped first (they would stop the restart), in the first start only.
"""
import os

import llvmlite.binding as llvm

import tinydl.backends.cpu as cpu
from tinydl import cli

if "AS_ON_INTEL_AVX512" not in os.environ:                # the first start, not the restarted one
    for name in cpu._USER_CODEGEN_CHOICES:
        os.environ.pop(name, None)
    os.environ["AS_ON_INTEL_AVX512"] = "1"
print(f"process {os.getpid()}: NUMBA_CPU_FEATURES {'set' if 'NUMBA_CPU_FEATURES' in os.environ else 'unset'}",
      flush=True)
cpu.numba_uses_wide_vectors = lambda: False
cpu.wide_vector_features = lambda: llvm.get_host_cpu_features().flatten()
cli.console_main()
