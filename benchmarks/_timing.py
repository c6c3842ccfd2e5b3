"""Shared timing helper for the benchmarks: best-of-N wall time after warm-up.

Tuning. Every benchmark calls ``td.backends.cpu.tune()``, as the CLI and the Trainer
do. The ones that time both libraries in one process import torch first, so PyTorch's
OpenMP runtime keeps its defaults (tune() then puts Numba on its own workqueue pool);
bench_alone.py times each library alone in its own process, the fair comparison.
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
