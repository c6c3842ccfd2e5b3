"""What the Numba kernels share: three loops on flat views (fill, gather, scatter-add) and
the range of outputs whose window reads inside the input.

They index flat 1-D views with unsigned offsets (a signed index makes Numba check for
negative indices on every access, which blocks vectorisation), and the strided ones
branch on stride 1, the case LLVM vectorises (benchmarks/bench_im2col.py).
"""
import numpy as np

from ._dispatch import njit

__all__ = ["fill_flat", "gather_flat", "scatter_flat", "scatter_add_flat", "valid_range"]


@njit(inline="always")
def fill_flat(dst, start, n, value):
    """dst[start : start + n] = value"""
    if n <= 0:  # an empty fill still pays the vector loop's set-up
        return
    d = np.uint64(start)
    for t in range(np.uint64(n)):
        dst[d + t] = value


@njit(inline="always")
def gather_flat(dst, start, src, src_start, n, src_step):
    """dst[start + t] = src[src_start + t*src_step] for t < n"""
    d, s, step = np.uint64(start), np.uint64(src_start), np.uint64(src_step)
    if src_step == 1:
        for t in range(np.uint64(n)):
            dst[d + t] = src[s + t]
    else:
        for t in range(np.uint64(n)):
            dst[d + t] = src[s + t * step]


@njit(inline="always")
def scatter_flat(dst, start, dst_step, src, src_start, n):
    """dst[start + t*dst_step] = src[src_start + t] for t < n"""
    d, step, s = np.uint64(start), np.uint64(dst_step), np.uint64(src_start)
    if dst_step == 1:
        for t in range(np.uint64(n)):
            dst[d + t] = src[s + t]
    else:
        for t in range(np.uint64(n)):
            dst[d + t * step] = src[s + t]


@njit(inline="always")
def scatter_add_flat(dst, start, dst_step, src, src_start, n):
    """dst[start + t*dst_step] += src[src_start + t] for t < n"""
    d, step, s = np.uint64(start), np.uint64(dst_step), np.uint64(src_start)
    if dst_step == 1:  # with a run-time step LLVM must allow colliding writes (step 0)
        for t in range(np.uint64(n)):
            dst[d + t] += src[s + t]
    else:
        for t in range(np.uint64(n)):
            dst[d + t * step] += src[s + t]


@njit(cache=True)
def valid_range(offset, s, size, n_out):
    """Outputs ``o`` in ``[lo, hi)`` read an in-bounds input ``o*s - offset`` in [0, size)."""
    lo = -((-offset) // s)  # ceil(offset / s); // floors in Numba too, negatives included
    hi = (size - 1 + offset) // s + 1  # floor((size - 1 + offset) / s) + 1
    lo = min(max(lo, 0), n_out)
    hi = min(max(hi, lo), n_out)
    return lo, hi
