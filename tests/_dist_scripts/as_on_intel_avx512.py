"""The ``tinydl`` command as it starts on an Intel AVX-512 core, on any CPU.

    [mpiexec -n 2] python tests/_dist_scripts/as_on_intel_avx512.py train ARGS...

Before ``console_main()`` runs, Numba is said to use 256-bit vectors here, and the wide
features are the host's own (the same code, so the restarted process finds Numba's
cached kernels). Each process prints its id and whether NUMBA_CPU_FEATURES is set, so
the output shows the restart: the same id twice, unset then set.
"""
import os

import llvmlite.binding as llvm

import tinydl.backends.cpu as cpu
from tinydl import cli

print(f"process {os.getpid()}: NUMBA_CPU_FEATURES {'set' if 'NUMBA_CPU_FEATURES' in os.environ else 'unset'}",
      flush=True)
cpu.numba_uses_wide_vectors = lambda: False
cpu.wide_vector_features = lambda: llvm.get_host_cpu_features().flatten()
cli.console_main()
