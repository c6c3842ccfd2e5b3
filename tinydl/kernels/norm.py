r"""Batch-norm kernels: per-channel sums and per-channel affine maps.

Batch norm (``tinydl/ops/norm.py``) needs, per channel c of an input x of shape
(N, C, *spatial), seen as (N, C, S) with S = prod(spatial) and m = N*S values
per channel:

    forward    mean_c, var_c  = the biased statistics of channel c    batch_norm_stats
               y = (x - mean_c) * a_c + b_c                            batch_norm_affine
    backward   sum_c g,  sum_c g * (x - mean_c)                        batch_norm_grad_sums
               dx = g * a_c + (x - mean_c) * k_c + b_c                  batch_norm_input_grad

where the op computes the small (C,) coefficient vectors a, b, k from the
formulas in its docstring. Each full-size array is read once per kernel and
nothing full-size is allocated except the output: the NumPy versions make
temporaries (x - mean, g * (x - mean), ...) of the input's size, which is what
made batch norm cost twice PyTorch's time.

Accuracy. The statistics are computed per (n, c) row with two passes over the
row (its mean, then the sum of squared deviations from that mean; a row is a
few KB and stays in the L1 cache for the second pass) and the rows of a channel
are merged with Chan et al.'s pairwise update

    n_ab = n_a + n_b,   delta = mean_b - mean_a
    mean_ab = mean_a + delta * n_b / n_ab
    M2_ab   = M2_a + M2_b + delta^2 * n_a * n_b / n_ab        (var = M2 / m)

so there is no sum(x^2) - m*mean^2 cancellation whatever the channel's offset.
Every sum accumulates in float64, also for float32 inputs (PyTorch's CPU
kernels accumulate float32 in float32 with vectorised partial sums; float64 is
at least as accurate and costs nothing here). The Numba sums may add in a
different order than NumPy (``fastmath={"reassoc"}`` lets LLVM vectorise the
loops), so the two paths agree to rounding, not bit for bit.

Two implementations: ``*_reference`` (NumPy or CuPy array code: read these)
and ``*_numba`` (parallel loops, compiled and cached); the un-suffixed names
dispatch like im2col (CuPy array -> reference on the GPU, TINYDL_NO_NUMBA=1 or
a dtype other than float32/float64 -> reference), and (N, C) inputs take the
reference too (see ``_numba_for``).
"""
import numpy as np

from ._dispatch import array_module, is_cupy, njit, prange, use_numba

__all__ = [
    "batch_norm_stats",
    "batch_norm_affine",
    "batch_norm_grad_sums",
    "batch_norm_input_grad",
    "batch_norm_stats_reference",
    "batch_norm_affine_reference",
    "batch_norm_grad_sums_reference",
    "batch_norm_input_grad_reference",
    "batch_norm_stats_numba",
    "batch_norm_affine_numba",
    "batch_norm_grad_sums_numba",
    "batch_norm_input_grad_numba",
]


def _axes(x):
    """Every axis but the channel axis 1: the axes a channel's statistics run over."""
    return (0,) + tuple(range(2, x.ndim))


def _per_channel(a, ndim):
    """A (C,) array shaped (1, C, 1, ..., 1) so it broadcasts over an ndim-D input."""
    return a.reshape((1, -1) + (1,) * (ndim - 2))


def _rows(x):
    """x (N, C, *spatial) as a C-contiguous (N, C, S) array (a copy only for views)."""
    x = np.ascontiguousarray(x)
    return x.reshape(x.shape[0], x.shape[1], -1)


# --------------------------------------------------------------------------- reference (NumPy / CuPy)
def batch_norm_stats_reference(x):
    """Per-channel mean and biased variance (1/m) of x (N, C, ...), two passes, in x's dtype."""
    axes = _axes(x)
    mean = x.mean(axis=axes)
    centred = x - _per_channel(mean, x.ndim)
    return mean, (centred * centred).mean(axis=axes)


def batch_norm_affine_reference(x, mean, a, b):
    """y = (x - mean_c) * a_c + b_c  (per-channel vectors (C,), in x's dtype)."""
    y = x - _per_channel(mean, x.ndim)
    y *= _per_channel(a, x.ndim)
    y += _per_channel(b, x.ndim)
    return y


def batch_norm_grad_sums_reference(g, x, mean):
    """(sum_c g, sum_c g * (x - mean_c)): the two per-channel sums of the backward pass."""
    axes = _axes(g)
    return g.sum(axis=axes), (g * (x - _per_channel(mean, x.ndim))).sum(axis=axes)


def batch_norm_input_grad_reference(g, x, mean, a, k, b):
    """dx = g * a_c + (x - mean_c) * k_c + b_c  (per-channel vectors (C,), in g's dtype)."""
    dx = x - _per_channel(mean, x.ndim)
    dx *= _per_channel(k, x.ndim)
    dx += g * _per_channel(a, x.ndim)
    dx += _per_channel(b, x.ndim)
    return dx


# --------------------------------------------------------------------------- Numba
@njit(parallel=True, cache=True, fastmath={"reassoc"})
def _stats_kernel(x, mean, var):
    # x (N, C, S); one task per channel, its N rows merged one by one (Chan).
    N, C, S = x.shape
    for c in prange(C):
        count, mu, m2 = 0.0, 0.0, 0.0
        for n in range(N):
            row = x[n, c]
            s = 0.0
            for t in range(S):
                s += row[t]
            row_mean = s / S
            q = 0.0
            for t in range(S):
                d = row[t] - row_mean
                q += d * d
            total = count + S
            delta = row_mean - mu
            mu += delta * (S / total)
            m2 += q + delta * delta * (count * S / total)
            count = total
        mean[c] = mu
        var[c] = m2 / count


@njit(parallel=True, cache=True, fastmath={"reassoc"})
def _grad_sums_kernel(g, x, mean, sum_g, sum_gx):
    # g, x (N, C, S); one task per channel; row sums in float64.
    N, C, S = g.shape
    for c in prange(C):
        mu = mean[c]
        s1, s2 = 0.0, 0.0
        for n in range(N):
            g_row, x_row = g[n, c], x[n, c]
            for t in range(S):
                s1 += g_row[t]
                s2 += g_row[t] * (x_row[t] - mu)
        sum_g[c] = s1
        sum_gx[c] = s2


@njit(parallel=True, cache=True)
def _affine_kernel(x, mean, a, b, y):
    # One task per (n, c) row: y = (x - mean_c) * a_c + b_c.
    N, C, S = x.shape
    for task in prange(N * C):
        n, c = task // C, task % C
        mu, ac, bc = mean[c], a[c], b[c]
        x_row, y_row = x[n, c], y[n, c]
        for t in range(S):
            y_row[t] = (x_row[t] - mu) * ac + bc


@njit(parallel=True, cache=True)
def _input_grad_kernel(g, x, mean, a, k, b, dx):
    # One task per (n, c) row: dx = g * a_c + (x - mean_c) * k_c + b_c.
    N, C, S = g.shape
    for task in prange(N * C):
        n, c = task // C, task % C
        mu, ac, kc, bc = mean[c], a[c], k[c], b[c]
        g_row, x_row, dx_row = g[n, c], x[n, c], dx[n, c]
        for t in range(S):
            dx_row[t] = g_row[t] * ac + (x_row[t] - mu) * kc + bc


def batch_norm_stats_numba(x):
    """Same as :func:`batch_norm_stats_reference`: one read of x, row-wise two-pass + Chan merge."""
    x3 = _rows(x)
    mean = np.empty(x3.shape[1], dtype=np.float64)
    var = np.empty(x3.shape[1], dtype=np.float64)
    _stats_kernel(x3, mean, var)
    return mean.astype(x.dtype), var.astype(x.dtype)


def batch_norm_affine_numba(x, mean, a, b):
    """Same as :func:`batch_norm_affine_reference`, one pass, written into a fresh array."""
    x3 = _rows(x)
    y = np.empty(x.shape, dtype=x.dtype)
    dt = x.dtype
    _affine_kernel(x3, mean.astype(dt, copy=False), a.astype(dt, copy=False), b.astype(dt, copy=False),
                   y.reshape(x3.shape))
    return y


def batch_norm_grad_sums_numba(g, x, mean):
    """Same as :func:`batch_norm_grad_sums_reference`: one read of g and x."""
    g3, x3 = _rows(g), _rows(x)
    sum_g = np.empty(g3.shape[1], dtype=np.float64)
    sum_gx = np.empty(g3.shape[1], dtype=np.float64)
    _grad_sums_kernel(g3, x3, mean.astype(x.dtype, copy=False), sum_g, sum_gx)
    return sum_g.astype(g.dtype), sum_gx.astype(g.dtype)


def batch_norm_input_grad_numba(g, x, mean, a, k, b):
    """Same as :func:`batch_norm_input_grad_reference`, one pass, written into a fresh array."""
    g3, x3 = _rows(g), _rows(x)
    dx = np.empty(g.shape, dtype=g.dtype)
    dt = g.dtype
    _input_grad_kernel(g3, x3, mean.astype(dt, copy=False), a.astype(dt, copy=False),
                       k.astype(dt, copy=False), b.astype(dt, copy=False), dx.reshape(g3.shape))
    return dx


# --------------------------------------------------------------------------- dispatch
def _numba_for(*arrays):
    """Numba for NumPy arrays of one supported dtype with S > 1 values per (n, c) row;
    the reference otherwise (CuPy, float16, ...).

    An (N, C) input (BatchNorm1d on features, S = 1) has one value per row: the
    Numba loops, written for long rows, would walk each channel with stride C
    (5x slower than NumPy, measured on (256, 4096)), while NumPy's reductions
    over axis 0 run along contiguous rows.
    """
    if any(is_cupy(a) for a in arrays):
        return False
    x = arrays[0]
    return (all(a.dtype == x.dtype for a in arrays) and x.size > x.shape[0] * x.shape[1]
            and use_numba(x.dtype))


def batch_norm_stats(x):
    """Per-channel (mean, biased variance) of x (N, C, ...) over every axis but 1, in x's dtype."""
    return batch_norm_stats_numba(x) if _numba_for(x) else batch_norm_stats_reference(x)


def batch_norm_affine(x, mean, a, b):
    """y = (x - mean_c) * a_c + b_c for x (N, C, ...) and (C,) vectors mean, a, b."""
    return batch_norm_affine_numba(x, mean, a, b) if _numba_for(x) else batch_norm_affine_reference(x, mean, a, b)


def batch_norm_grad_sums(g, x, mean):
    """Per-channel (sum g, sum g * (x - mean_c)) for g, x (N, C, ...)."""
    if _numba_for(g, x):
        return batch_norm_grad_sums_numba(g, x, mean)
    return batch_norm_grad_sums_reference(g, x, mean)


def batch_norm_input_grad(g, x, mean, a, k, b):
    """dx = g * a_c + (x - mean_c) * k_c + b_c for g, x (N, C, ...) and (C,) vectors."""
    if _numba_for(g, x):
        return batch_norm_input_grad_numba(g, x, mean, a, k, b)
    return batch_norm_input_grad_reference(g, x, mean, a, k, b)
