"""Shared timing helper for the benchmarks: best-of-N wall time after warm-up.

Import order. The benchmarks import torch before tinydl. PyTorch's OpenMP
runtime then keeps its default settings. Imported after tinydl, it would inherit
tinydl's OMP_WAIT_POLICY=PASSIVE, and that slowed PyTorch's ResNet-20 CPU step from
481-508 ms to 554-693 ms. tinydl sees that an OpenMP runtime is already loaded and
runs its Numba kernels on Numba's workqueue pool (tinydl/kernels/_dispatch.py).
Each library is then timed in the setting a user who imports only it would get.
"""
import time


def best_time(fn, repeat=20, warmup=3, min_seconds=0.0):
    """Best wall-clock seconds of ``fn()`` over ``repeat`` runs (after ``warmup`` runs).

    The minimum is the least noisy estimate on a shared machine: noise only adds time.
    """
    for _ in range(warmup):
        fn()
    best = float("inf")
    start = time.perf_counter()
    runs = 0
    while runs < repeat or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
        runs += 1
    return best


def print_table(rows, header=("case", "tinydl ms", "torch ms", "ratio")):
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths))
    print(line)
    print("-" * len(line))
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))
