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
The batch-norm op asks for the statistics in float64 (``dtype``), and the kernels
that read x - mean take such a mean as two numbers of x's dtype, mean = hi + lo
(``_split``), and compute (x - hi) - lo: x - hi is exact where x is near the mean,
so a float32 y keeps its precision on inputs far from zero (50 +- 1: 2.9e-5 of y's
size with the mean rounded to float32, about PyTorch's 4.5e-6 with the pair;
tests/test_pool_norm_fuzz.py).
Every sum accumulates in float64, also for float32 inputs (PyTorch's CPU
kernels accumulate float32 in float32 with vectorised partial sums; float64 is
at least as accurate and costs nothing here). The Numba sums may add in a
different order than NumPy (``fastmath={"reassoc"}`` lets LLVM vectorise the
loops), so the two paths agree to rounding, not bit for bit.

Three implementations: ``*_reference`` (NumPy or CuPy array code: read these),
``*_numba`` (parallel loops, compiled and cached) and ``*_cupy`` (CUDA kernels,
one pass over the big arrays each); the un-suffixed names dispatch like im2col
(CuPy float32/float64 -> CUDA, TINYDL_NO_NUMBA=1 or a dtype other than
float32/float64 -> reference), and (N, C) inputs on the CPU take the reference
too (see ``_numba_for``). SyncBatchNorm runs these passes (it reduces its sums across
processes between them).

The plain op's own route, 'fused' (``batch_norm_route``, the section of that name below),
does each direction in one call: per channel, its statistics, its few scalars (the running
buffers, 1/sqrt(var + eps), the coefficients), then its output rows, and with
``batch_norm_relu`` a residual and a ReLU on each row too.
"""
import numpy as np

from .. import backends
from ..backend import is_cupy_array
from ._dispatch import for_this_thread, kernel_route, njit, prange, use_numba
from .activation import relu_backward

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
def batch_norm_stats_reference(x, dtype=None):
    """Per-channel mean and biased variance (1/m) of x (N, C, ...), in ``dtype`` (default
    x's): the mean summed in ``dtype``, the variance from x - hi in x's dtype, where
    mean = hi + lo (``_split``; var = mean((x - hi)^2) - lo^2), with no temporary wider
    than x."""
    axes = _axes(x)
    dtype = x.dtype if dtype is None else dtype
    mean = x.mean(axis=axes, dtype=dtype)
    hi, lo = _split(mean, x.dtype)
    centred = x - _per_channel(hi, x.ndim)
    return mean, ((centred * centred).mean(axis=axes) - lo * lo).astype(dtype, copy=False)


def _split(mean, dtype):
    """mean (C,) as hi + lo, both in ``dtype``: hi its rounding, lo what that lost."""
    hi = mean.astype(dtype, copy=False)
    return hi, (mean - hi).astype(dtype, copy=False)


def batch_norm_affine_reference(x, mean, a, b):
    """y = (x - mean_c) * a_c + b_c  (per-channel vectors (C,), in x's dtype)."""
    hi, lo = _split(mean, x.dtype)
    y = x - _per_channel(hi, x.ndim)
    y -= _per_channel(lo, x.ndim)
    y *= _per_channel(a.astype(x.dtype, copy=False), x.ndim)
    y += _per_channel(b.astype(x.dtype, copy=False), x.ndim)
    return y


def batch_norm_grad_sums_reference(g, x, mean):
    """(sum_c g, sum_c g * (x - mean_c)): the two per-channel sums of the backward pass."""
    axes = _axes(g)
    hi, lo = _split(mean, x.dtype)
    centred = x - _per_channel(hi, x.ndim)
    centred -= _per_channel(lo, x.ndim)
    return g.sum(axis=axes), (g * centred).sum(axis=axes)


def batch_norm_input_grad_reference(g, x, mean, a, k, b):
    """dx = g * a_c + (x - mean_c) * k_c + b_c  (per-channel vectors (C,), in g's dtype)."""
    dt = g.dtype
    hi, lo = _split(mean, dt)
    dx = x - _per_channel(hi, x.ndim)
    dx -= _per_channel(lo, x.ndim)
    dx *= _per_channel(k.astype(dt, copy=False), x.ndim)
    dx += g * _per_channel(a.astype(dt, copy=False), x.ndim)
    dx += _per_channel(b.astype(dt, copy=False), x.ndim)
    return dx


# --------------------------------------------------------------------------- Numba
# One row of a channel at a time: the helpers below are shared by the per-pass kernels
# and the fused ones. Each is compiled with its own fast-math flags (the sums may be
# reordered, the affine maps may not: (x - hi) - lo must stay as written) and LLVM
# inlines it into its caller, keeping those flags per instruction.
@njit(fastmath={"reassoc"})
def _row_mean_m2(row):
    """The mean of one row and the sum of its squared deviations from it (two passes)."""
    s = 0.0
    for t in range(row.size):
        s += row[t]
    row_mean = s / row.size
    q = 0.0
    for t in range(row.size):
        d = row[t] - row_mean
        q += d * d
    return row_mean, q


@njit(inline="always")
def _channel_stats(x, c):
    """Channel c's mean and biased variance (float64) from its N rows, merged (Chan)."""
    N, S = x.shape[0], x.shape[2]
    count, mu, m2 = 0.0, 0.0, 0.0
    for n in range(N):
        row_mean, q = _row_mean_m2(x[n, c])
        total = count + S
        delta = row_mean - mu
        mu += delta * (S / total)
        m2 += q + delta * delta * (count * S / total)
        count = total
    return mu, m2 / count


@njit(fastmath={"reassoc"})
def _row_grad_sums(g_row, x_row, mu):
    """sum g and sum g * (x - mu) over one row, in float64."""
    s1, s2 = 0.0, 0.0
    for t in range(g_row.size):
        s1 += g_row[t]
        s2 += g_row[t] * (x_row[t] - mu)
    return s1, s2


@njit(inline="always")
def _channel_grad_sums(g, x, c, mu):
    s1, s2 = 0.0, 0.0
    for n in range(g.shape[0]):
        r1, r2 = _row_grad_sums(g[n, c], x[n, c], mu)
        s1 += r1
        s2 += r2
    return s1, s2


@njit
def _affine_row(x_row, hi, lo, a, b, y_row):
    """y = ((x - hi) - lo) * a + b along one row (mean = hi + lo)."""
    for t in range(x_row.size):
        y_row[t] = ((x_row[t] - hi) - lo) * a + b


@njit
def _add_relu_row(y_row, r_row, add, relu):
    """y += r (if ``add``), then y = max(y, 0) (if ``relu``; NaN stays NaN, -0 becomes +0, as
    kernels/activation.py's ReLU), along one row."""
    zero = y_row.dtype.type(0.0)
    for t in range(y_row.size):
        v = y_row[t] + r_row[t] if add else y_row[t]
        y_row[t] = v if (not relu or v > 0 or v != v) else zero


@njit
def _relu_mask_row(g_row, y_row, out_row):
    """out = 0 where y <= 0, else g, along one row: ReLU's backward, as kernels/activation.py's."""
    zero = g_row.dtype.type(0.0)
    for t in range(g_row.size):
        out_row[t] = zero if y_row[t] <= 0 else g_row[t]


@njit
def _input_grad_row(g_row, x_row, hi, lo, a, k, b, dx_row):
    """dx = g * a + ((x - hi) - lo) * k + b along one row (mean = hi + lo)."""
    for t in range(g_row.size):
        dx_row[t] = g_row[t] * a + ((x_row[t] - hi) - lo) * k + b


@njit(parallel=True, cache=True)
def _stats_kernel(x, mean, var):
    # x (N, C, S); one task per channel.
    for c in prange(x.shape[1]):
        mean[c], var[c] = _channel_stats(x, c)


@njit(parallel=True, cache=True)
def _grad_sums_kernel(g, x, mean, sum_g, sum_gx):
    # g, x (N, C, S); one task per channel; row sums in float64.
    for c in prange(g.shape[1]):
        sum_g[c], sum_gx[c] = _channel_grad_sums(g, x, c, mean[c])


@njit(parallel=True, cache=True)
def _affine_kernel(x, hi, lo, a, b, y):
    # One task per (n, c) row.
    N, C, S = x.shape
    for task in prange(N * C):
        n, c = task // C, task % C
        _affine_row(x[n, c], hi[c], lo[c], a[c], b[c], y[n, c])


@njit(parallel=True, cache=True)
def _input_grad_kernel(g, x, hi, lo, a, k, b, dx):
    # One task per (n, c) row.
    N, C, S = g.shape
    for task in prange(N * C):
        n, c = task // C, task % C
        _input_grad_row(g[n, c], x[n, c], hi[c], lo[c], a[c], k[c], b[c], dx[n, c])


# --------------------------------------------------------------------------- fused (the op's route on the CPU)
# The op (ops/norm.py) spells batch norm out as passes and a dozen (C,)-vector steps
# between them: the statistics, the running buffers' update, 1/sqrt(var + eps), the
# coefficients of the affine map, and the same again backward. Each step is a NumPy call
# of a few microseconds on the CPU, and a kernel launch on the GPU (about 27 forward and
# 18 backward per layer, most of a ResNet-20 step's 1,200 launches). The fused route does
# a direction in one call: per channel, its sums, its few scalars, then its output rows,
# while the channel's rows are still in the cache.
@njit(parallel=True, cache=True)
def _fused_forward_kernel(x, weight, bias, running_mean, running_var, residual, relu, training, track, momentum,
                          eps, y, mean, inv_std, scale):
    # x, y (N, C, S); weight, bias (C,) or empty (none); running_* (C,) or empty (not tracked);
    # residual (N, C, S) or empty: added to y before the ReLU (with ``relu``).
    # Out, float64 (C,), saved for backward: mean, inv_std and scale = gamma * inv_std.
    N, C, S = x.shape
    add = residual.size > 0
    m = N * S
    for c in prange(C):
        if training:
            mu, var = _channel_stats(x, c)
            if track:                                   # in the buffers' dtype, as the op's in-place steps
                keep, mom = running_mean.dtype.type(1 - momentum), running_mean.dtype.type(momentum)
                running_mean[c] = running_mean[c] * keep + mom * running_mean.dtype.type(mu)
                running_var[c] = running_var[c] * keep + mom * running_var.dtype.type(var * (m / (m - 1)))
        else:
            mu, var = float(running_mean[c]), float(running_var[c])
        s = 1.0 / np.sqrt(var + eps)
        a = weight[c] * s if weight.size else s
        mean[c], inv_std[c], scale[c] = mu, s, a
        hi = x.dtype.type(mu)                           # mean = hi + lo, as the per-pass kernels read it
        lo = x.dtype.type(mu - hi)
        b = bias[c] if bias.size else x.dtype.type(0.0)
        for n in range(N):
            _affine_row(x[n, c], hi, lo, x.dtype.type(a), b, y[n, c])
            if add or relu:                             # the row is still in the L1 cache
                _add_relu_row(y[n, c], residual[n, c] if add else y[n, c], add, relu)


@njit(parallel=True, cache=True)
def _fused_backward_kernel(g, x, y, mean, inv_std, scale, training, need_x, need_sums, gx, gweight, gbias, gres):
    # g, x, gx (N, C, S); gweight, gbias (C,) in g's dtype (filled when need_sums).
    # y (N, C, S) or empty: the output of a batch norm + ReLU, whose backward first masks g
    # by y > 0 (a row at a time); gres (N, C, S) or empty: receives that masked g (the
    # residual's gradient).
    N, C, S = g.shape
    m = N * S
    relu, keep = y.size > 0, gres.size > 0
    for c in prange(C):
        mu, s, a = mean[c], inv_std[c], scale[c]
        masked = np.empty(S if relu else 0, dtype=g.dtype)   # this task's row of ReLU's backward of g
        s1, s2 = 0.0, 0.0
        if need_sums or keep:
            for n in range(N):
                g_row = _row_of_g(g, y, gres, n, c, masked, relu, keep, False)
                r1, r2 = _row_grad_sums(g_row, x[n, c], mu)
                s1 += r1
                s2 += r2
        if need_sums:
            gweight[c] = s2 * s                         # sum g * x_hat
            gbias[c] = s1                               # sum g
        if not need_x:
            continue
        ga = g.dtype.type(a)
        hi = g.dtype.type(mu)
        lo = g.dtype.type(mu - hi)
        k = b = g.dtype.type(0.0)
        if training:                                    # the op's formula: dx = g a + (x - mu) k + b
            k = g.dtype.type(-a * s * (s2 * s) / m)
            b = g.dtype.type(-a * s1 / m)
        for n in range(N):
            g_row = _row_of_g(g, y, gres, n, c, masked, relu, keep, True)
            if training:
                _input_grad_row(g_row, x[n, c], hi, lo, ga, k, b, gx[n, c])
            else:                                       # evaluation: mean and variance are constants
                dx_row = gx[n, c]
                for t in range(S):
                    dx_row[t] = g_row[t] * ga


@njit(inline="always")
def _row_of_g(g, y, gres, n, c, masked, relu, keep, again):
    """Row (n, c) of the gradient batch norm sees: g, or ReLU's backward of g (into
    gres when it keeps it, where the second pass (``again``) reads it back)."""
    if not relu:
        return g[n, c]
    if keep:
        if not again:
            _relu_mask_row(g[n, c], y[n, c], gres[n, c])
        return gres[n, c]
    _relu_mask_row(g[n, c], y[n, c], masked)
    return masked


def batch_norm_stats_numba(x, dtype=None):
    """Same as :func:`batch_norm_stats_reference`: one read of x, row-wise two-pass + Chan merge."""
    x3 = _rows(x)
    dtype = x.dtype if dtype is None else dtype         # the float64 sums are rounded as they are stored
    mean = np.empty(x3.shape[1], dtype=dtype)
    var = np.empty(x3.shape[1], dtype=dtype)
    for_this_thread(_stats_kernel, x3.size)(x3, mean, var)
    return mean, var


def batch_norm_affine_numba(x, mean, a, b):
    """Same as :func:`batch_norm_affine_reference`, one pass, written into a fresh array."""
    x3 = _rows(x)
    y = np.empty(x.shape, dtype=x.dtype)
    dt = x.dtype
    for_this_thread(_affine_kernel, x3.size)(x3, *_split(mean, dt), a.astype(dt, copy=False),
                                             b.astype(dt, copy=False), y.reshape(x3.shape))
    return y


def batch_norm_grad_sums_numba(g, x, mean):
    """Same as :func:`batch_norm_grad_sums_reference`: one read of g and x."""
    g3, x3 = _rows(g), _rows(x)
    sum_g = np.empty(g3.shape[1], dtype=g.dtype)        # the float64 sums are rounded as they are stored
    sum_gx = np.empty(g3.shape[1], dtype=g.dtype)
    for_this_thread(_grad_sums_kernel, g3.size)(g3, x3, mean.astype(np.float64, copy=False), sum_g, sum_gx)
    return sum_g, sum_gx


def batch_norm_input_grad_numba(g, x, mean, a, k, b):
    """Same as :func:`batch_norm_input_grad_reference`, one pass, written into a fresh array."""
    g3, x3 = _rows(g), _rows(x)
    dx = np.empty(g.shape, dtype=g.dtype)
    dt = g.dtype
    for_this_thread(_input_grad_kernel, g3.size)(g3, x3, *_split(mean, dt), a.astype(dt, copy=False),
                                                 k.astype(dt, copy=False), b.astype(dt, copy=False),
                                                 dx.reshape(g3.shape))
    return dx


def _none_as_empty(a, dtype):
    """A (C,) argument the op may leave out, as an empty array for the kernels (Numba needs an array)."""
    return np.empty(0, dtype) if a is None else a


def _rows_or_empty(a, dtype):
    """A full-size argument the op may leave out, as (N, C, S) rows or an empty (0, 0, 0) array."""
    return np.empty((0, 0, 0), dtype) if a is None else _rows(a)


def batch_norm_forward_fused_numba(x, weight, bias, running_mean, running_var, training, momentum, eps,
                                   residual=None, relu=False):
    """The batch-norm op's forward in one call: y (+ residual, then max(., 0) with ``relu``) and
    the saved (mean, inv_std, scale), float64 (C,)."""
    x3 = _rows(x)
    C = x3.shape[1]
    y = np.empty(x.shape, dtype=x.dtype)
    mean, inv_std, scale = (np.empty(C, dtype=np.float64) for _ in range(3))
    dt = x.dtype
    track = training and running_mean is not None
    for_this_thread(_fused_forward_kernel, x3.size)(
        x3, _none_as_empty(weight, dt), _none_as_empty(bias, dt), _none_as_empty(running_mean, dt),
        _none_as_empty(running_var, dt), _rows_or_empty(residual, dt), relu, training, track, float(momentum),
        float(eps), y.reshape(x3.shape), mean, inv_std, scale)
    return y, (mean, inv_std, scale)


def batch_norm_backward_fused_numba(gy, x, saved, training, need_x, need_sums, y=None, need_residual=False):
    """The batch-norm op's backward in one call: (dx or None, sum g x_hat, sum g, the residual's
    gradient) (the sums None unless ``need_sums``). ``y``: the output of a batch norm + ReLU,
    whose mask y > 0 g passes first; the residual's gradient is that masked g (``gy`` itself
    without a ReLU)."""
    mean, inv_std, scale = saved
    g3, x3 = _rows(gy), _rows(x)
    N, C, S = g3.shape
    gx = np.empty(gy.shape if need_x else (0,), dtype=gy.dtype)
    gres = np.empty(gy.shape if need_residual and y is not None else (0,), dtype=gy.dtype)
    gweight, gbias = np.empty(C, dtype=gy.dtype), np.empty(C, dtype=gy.dtype)
    empty = (0, 0, 0)
    for_this_thread(_fused_backward_kernel, g3.size)(
        g3, x3, _rows_or_empty(y, gy.dtype), mean, inv_std, scale, training, need_x, need_sums,
        gx.reshape(g3.shape if need_x else empty), gweight, gbias, gres.reshape(g3.shape if gres.size else empty))
    residual_grad = (gres if y is not None else gy) if need_residual else None
    return (gx if need_x else None), (gweight if need_sums else None), (gbias if need_sums else None), residual_grad


# --------------------------------------------------------------------------- CuPy
# Two CUDA kernels do the full-size work on the GPU, compiled on first use:
#  * channel_sums: reads channel c's N*S values once and returns, in double,
#        sum (a - sa_c)   and   sum (a - sa_c) * (b - sb_c)
#    which is (sum g, sum g (x - mean)) for the backward (a = g, sa = 0, b = x,
#    sb = mean) and, with a = b = x and both shifts = the channel's first value K_c,
#    the shifted sums that give mean = K + s1/m and var = s2/m - (s1/m)^2 without
#    the cancellation of sum(x^2) - m mean^2 when a channel sits far from zero;
#  * two elementwise maps, affine and input gradient, one pass each, with the
#    channel of flat element i being (i / S) % C.
_CHANNEL_SUMS_CUDA = r"""
template <typename T, typename I>
__global__ void channel_sums(const T* a, const T* shift_a, const T* b, const T* shift_b,
                             I N, I C, I S, I chunk, double* out) {
    // Block (c, part) sums values [part * chunk, (part + 1) * chunk) of channel c's
    // N*S values (value j is image j / S, position j % S) into out[c, part, 0:2].
    __shared__ double sums[2 * 256];
    const I c = blockIdx.x, part = blockIdx.y;
    const double sa = (double)shift_a[c], sb = (double)shift_b[c];
    const I end = min((part + 1) * chunk, N * S);
    double s1 = 0.0, s2 = 0.0;
    for (I j = part * chunk + threadIdx.x; j < end; j += blockDim.x) {
        const I n = j / S;
        const long long at = ((long long)n * C + c) * S + (j - n * S);
        const double u = (double)a[at] - sa;
        s1 += u;
        s2 += u * ((double)b[at] - sb);
    }
    sums[threadIdx.x] = s1;
    sums[256 + threadIdx.x] = s2;
    __syncthreads();
    for (int half = 128; half > 0; half /= 2) {   // tree sum of the block's 256 partial sums
        if (threadIdx.x < half) {
            sums[threadIdx.x] += sums[threadIdx.x + half];
            sums[256 + threadIdx.x] += sums[256 + threadIdx.x + half];
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        out[2 * (c * gridDim.y + part)] = sums[0];
        out[2 * (c * gridDim.y + part) + 1] = sums[256];
    }
}

// The fused route's per-channel steps, one thread per channel (see batch_norm_forward_fused).
__device__ void add_parts(const double* partial, int parts, int c, double* s1, double* s2) {
    *s1 = 0.0;
    *s2 = 0.0;
    for (int p = 0; p < parts; ++p) {               // a fixed order: the result is deterministic
        *s1 += partial[2 * (c * parts + p)];
        *s2 += partial[2 * (c * parts + p) + 1];
    }
}

template <typename T>
__global__ void forward_coefficients(const double* partial, int parts, const T* first, long long m,
                                     int training, int track, T keep, T momentum, double eps,
                                     const T* weight, int has_weight, const T* bias, int has_bias,
                                     T* running_mean, T* running_var, int C,
                                     T* mean_t, double* mean, double* inv_std, double* scale, T* a, T* b) {
    // Training: partial holds channel c's sums of (x - K_c) and (x - K_c)^2, K_c = first[c].
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    double mu, var;
    if (training) {
        double s1, s2;
        add_parts(partial, parts, c, &s1, &s2);
        const double d = s1 / m;
        mu = (double)first[c] + d;
        var = fmax(s2 / m - d * d, 0.0);
        if (track) {                                // in the buffers' dtype, as the op's in-place steps
            running_mean[c] = running_mean[c] * keep + momentum * (T)mu;
            running_var[c] = running_var[c] * keep + momentum * (T)(var * ((double)m / (double)(m - 1)));
        }
    } else {
        mu = (double)running_mean[c];
        var = (double)running_var[c];
    }
    const double s = 1.0 / sqrt(var + eps);
    const double gs = has_weight ? (double)weight[c] * s : s;
    mean_t[c] = (T)mu;
    mean[c] = mu;
    inv_std[c] = s;
    scale[c] = gs;
    a[c] = (T)gs;
    b[c] = has_bias ? bias[c] : (T)0;
}

template <typename T>
__global__ void backward_coefficients(const double* partial, int parts, long long m, int training,
                                      const double* inv_std, const double* scale, int C,
                                      T* gweight, T* gbias, T* a, T* k, T* b) {
    // partial holds channel c's sums of g and g (x - mean).
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    double s1, s2;
    add_parts(partial, parts, c, &s1, &s2);
    const double s = inv_std[c], gs = scale[c];
    gweight[c] = (T)(s2 * s);
    gbias[c] = (T)s1;
    a[c] = (T)gs;
    k[c] = training ? (T)(-gs * s * (s2 * s) / m) : (T)0;
    b[c] = training ? (T)(-gs * s1 / m) : (T)0;
}
"""
_cuda = {}
_INDEX_TYPES = {32: ("unsigned int", np.uint32), 64: ("unsigned long long", np.uint64)}


def _cuda_kernels():
    if not _cuda:
        import cupy
        c_types = ((np.float32, "float"), (np.float64, "double"))
        names = {("sums", np.dtype(dt), bits): f"channel_sums<{c_type}, {_INDEX_TYPES[bits][0]}>"
                 for dt, c_type in c_types for bits in (32, 64)}
        names.update({(kind, np.dtype(dt)): f"{kind}<{c_type}>" for dt, c_type in c_types
                      for kind in ("forward_coefficients", "backward_coefficients")})
        module = cupy.RawModule(code=_CHANNEL_SUMS_CUDA, name_expressions=list(names.values()))
        for key, name in names.items():
            _cuda[key] = module.get_function(name)
        per_channel = "raw T mean, raw T a, raw T b, int64 S, int64 C"
        _cuda["affine"] = cupy.ElementwiseKernel(
            "T x, " + per_channel, "T y",
            "const long long c = (i / S) % C; y = (x - mean[c]) * a[c] + b[c];",
            "tinydl_batch_norm_affine")
        relu = "y = (!relu || v > 0 || v != v) ? v : (T)0;"        # NaN stays NaN, as kernels/activation.py
        _cuda["affine_relu"] = cupy.ElementwiseKernel(
            "T x, " + per_channel + ", bool relu", "T y",
            "const long long c = (i / S) % C; T v = (x - mean[c]) * a[c] + b[c]; " + relu,
            "tinydl_batch_norm_affine_relu")
        _cuda["affine_add_relu"] = cupy.ElementwiseKernel(
            "T x, T r, " + per_channel + ", bool relu", "T y",
            "const long long c = (i / S) % C; T v = (x - mean[c]) * a[c] + b[c]; v = v + r; " + relu,
            "tinydl_batch_norm_affine_add_relu")
        _cuda["input_grad"] = cupy.ElementwiseKernel(
            "T g, T x, raw T k, " + per_channel, "T dx",
            "const long long c = (i / S) % C; dx = g * a[c] + (x - mean[c]) * k[c] + b[c];",
            "tinydl_batch_norm_input_grad")
    return _cuda


def _channel_sums(a, shift_a, b, shift_b):
    """(C,) float64 sums of (a - shift_a) and (a - shift_a) (b - shift_b) per channel."""
    partial = _channel_partial_sums(a, shift_a, b, shift_b)
    sums = partial.sum(axis=1)
    return sums[:, 0], sums[:, 1]


def _channel_partial_sums(a, shift_a, b, shift_b):
    """The (C, parts, 2) float64 partial sums of (a - shift_a) and (a - shift_a) (b - shift_b).

    A channel's m = N*S values are split into ``parts`` blocks of 256 threads, so the
    GPU has work for all its multiprocessors even with 16 channels; the partial sums
    are added afterwards, in a fixed order (the result is deterministic).
    """
    import cupy
    a, b = cupy.ascontiguousarray(a), cupy.ascontiguousarray(b)
    N, C = a.shape[:2]
    S = a.size // max(N * C, 1)
    m = N * S
    parts = max(1, min(-(-m // 4096), 1024 // max(C, 1)))    # ~4k values a block, ~1k blocks in all
    chunk = -(-m // parts)
    bits = 32 if a.size < 2**31 else 64
    index = _INDEX_TYPES[bits][1]
    out = cupy.empty((C, parts, 2), dtype=np.float64)
    kernel = _cuda_kernels()["sums", np.dtype(a.dtype), bits]
    kernel((C, parts), (256,), (a, cupy.ascontiguousarray(shift_a, dtype=a.dtype), b,
                                cupy.ascontiguousarray(shift_b, dtype=a.dtype),
                                index(N), index(C), index(S), index(chunk), out))
    return out


def batch_norm_stats_cupy(x, dtype=None):
    """Same as :func:`batch_norm_stats_reference` for a CuPy array, one pass over x (its
    float64 sums rounded to ``dtype``; the CUDA kernels read the mean in x's dtype)."""
    N, C = x.shape[:2]
    m = x.size // C
    first = x[(0, slice(None)) + (0,) * (x.ndim - 2)]    # K_c = x[0, c, 0, ...]: the shift (see above)
    s1, s2 = _channel_sums(x, first, x, first)
    mean = s1 / m
    var = s2 / m - mean * mean
    dtype = x.dtype if dtype is None else dtype
    return (first + mean).astype(dtype), var.clip(0).astype(dtype)


def batch_norm_grad_sums_cupy(g, x, mean):
    """Same as :func:`batch_norm_grad_sums_reference` for CuPy arrays, one pass over g and x."""
    import cupy
    sum_g, sum_gx = _channel_sums(g, cupy.zeros(g.shape[1], g.dtype), x, mean)
    return sum_g.astype(g.dtype), sum_gx.astype(g.dtype)


def batch_norm_affine_cupy(x, mean, a, b):
    N, C = x.shape[:2]
    dt = x.dtype
    return _cuda_kernels()["affine"](x, mean.astype(dt, copy=False), a.astype(dt, copy=False),
                                     b.astype(dt, copy=False), x.size // max(N * C, 1), C)


def batch_norm_input_grad_cupy(g, x, mean, a, k, b):
    N, C = g.shape[:2]
    dt = g.dtype
    return _cuda_kernels()["input_grad"](g, x, k.astype(dt, copy=False), mean.astype(dt, copy=False),
                                         a.astype(dt, copy=False), b.astype(dt, copy=False),
                                         g.size // max(N * C, 1), C)


def _per_channel_launch(kernel, C, args):
    kernel((-(-C // 128),), (128,), args)


def batch_norm_forward_fused_cupy(x, weight, bias, running_mean, running_var, training, momentum, eps,
                                  residual=None, relu=False):
    """Same as :func:`batch_norm_forward_fused_numba` for CuPy arrays: the statistics' sums, one
    thread per channel for its scalars (and the running buffers), and the affine map (with the
    residual and the ReLU): three kernels."""
    import cupy
    N, C = x.shape[:2]
    m = x.size // C
    dt = np.dtype(x.dtype)
    t = dt.type
    x = cupy.ascontiguousarray(x)
    mean_t, a, b = (cupy.empty(C, dtype=dt) for _ in range(3))
    mean, inv_std, scale = (cupy.empty(C, dtype=np.float64) for _ in range(3))
    first = partial = None
    if training:    # K_c = x[0, c, 0, ...]: the shift of the sums (see above)
        first = cupy.ascontiguousarray(x[(0, slice(None)) + (0,) * (x.ndim - 2)])
        partial = _channel_partial_sums(x, first, x, first)
    track = training and running_mean is not None
    _per_channel_launch(_cuda_kernels()["forward_coefficients", dt], C, (
        mean if partial is None else partial, np.int32(1 if partial is None else partial.shape[1]),
        mean_t if first is None else first, np.int64(m), np.int32(training), np.int32(track), t(1 - momentum),
        t(momentum), np.float64(eps), mean_t if weight is None else weight, np.int32(weight is not None),
        mean_t if bias is None else bias, np.int32(bias is not None),
        mean_t if running_mean is None else running_mean, mean_t if running_var is None else running_var,
        np.int32(C), mean_t, mean, inv_std, scale, a, b))
    S = x.size // max(N * C, 1)
    if residual is not None:
        y = _cuda_kernels()["affine_add_relu"](x, cupy.ascontiguousarray(residual), mean_t, a, b, S, C, relu)
    elif relu:
        y = _cuda_kernels()["affine_relu"](x, mean_t, a, b, S, C, True)
    else:
        y = _cuda_kernels()["affine"](x, mean_t, a, b, S, C)
    return y, (mean_t, inv_std, scale)          # the CUDA kernels read the mean in x's dtype


def batch_norm_backward_fused_cupy(gy, x, saved, training, need_x, need_sums, y=None, need_residual=False):
    """Same as :func:`batch_norm_backward_fused_numba` for CuPy arrays: (after a ReLU, the masked
    gradient,) the two sums, one thread per channel for the coefficients and dL/dgamma,
    dL/dbeta, and dx: three or four kernels."""
    import cupy
    mean_t, inv_std, scale = saved
    N, C = gy.shape[:2]
    dt = np.dtype(gy.dtype)
    if y is not None:
        gy = relu_backward(gy, y)                       # 0 where y <= 0: also the residual's gradient
    residual_grad = gy if need_residual else None
    gweight = gbias = gx = None
    if need_sums:
        gy, x = cupy.ascontiguousarray(gy), cupy.ascontiguousarray(x)
        partial = _channel_partial_sums(gy, cupy.zeros(C, dtype=dt), x, mean_t)
        gweight, gbias, a, k, b = (cupy.empty(C, dtype=dt) for _ in range(5))
        _per_channel_launch(_cuda_kernels()["backward_coefficients", dt], C, (
            partial, np.int32(partial.shape[1]), np.int64(gy.size // C), np.int32(training), inv_std, scale,
            np.int32(C), gweight, gbias, a, k, b))
        if need_x and training:
            gx = _cuda_kernels()["input_grad"](gy, x, k, mean_t, a, b, gy.size // max(N * C, 1), C)
    if need_x and not training:                         # mean and variance are constants: dx = g * gamma s
        gx = gy * scale.astype(dt).reshape((1, C) + (1,) * (gy.ndim - 2))
    return gx, gweight, gbias, residual_grad


# --------------------------------------------------------------------------- dispatch
def _numba_for(*arrays):
    """Numba for NumPy arrays of one supported dtype with S > 1 values per (n, c) row;
    the reference otherwise (CuPy, float16, ...).

    An (N, C) input (BatchNorm1d on features, S = 1) has one value per row: the
    Numba loops, written for long rows, would walk each channel with stride C
    (5x slower than NumPy, measured on (256, 4096)), while NumPy's reductions
    over axis 0 run along contiguous rows.
    """
    x = arrays[0]
    for a in arrays:
        if type(a) is not np.ndarray or a.dtype != x.dtype:
            return False
    return x.size > x.shape[0] * x.shape[1] and use_numba(x.dtype)


def _cuda_for(*arrays):
    """The CUDA kernels for CuPy arrays of one dtype, float32 or float64."""
    return (is_cupy_array(arrays[0]) and all(a.dtype == arrays[0].dtype for a in arrays)
            and np.dtype(arrays[0].dtype) in (np.dtype(np.float32), np.dtype(np.float64)))


def batch_norm_stats(x, dtype=None):
    """Per-channel (mean, biased variance) of x (N, C, ...) over every axis but 1, in ``dtype``
    (default x's)."""
    if _cuda_for(x):
        return batch_norm_stats_cupy(x, dtype)
    return batch_norm_stats_numba(x, dtype) if _numba_for(x) else batch_norm_stats_reference(x, dtype)


def batch_norm_affine(x, mean, a, b):
    """y = (x - mean_c) * a_c + b_c for x (N, C, ...) and (C,) vectors mean, a, b."""
    route = kernel_route("batch_norm", x, _numba_for(x))        # the forward's pass: recorded
    if route == "cuda" and _cuda_for(x):
        return batch_norm_affine_cupy(x, mean, a, b)
    if route == "numba":
        return batch_norm_affine_numba(x, mean, a, b)
    return batch_norm_affine_reference(x, mean, a, b)


def batch_norm_grad_sums(g, x, mean):
    """Per-channel (sum g, sum g * (x - mean_c)) for g, x (N, C, ...)."""
    if _cuda_for(g, x):
        return batch_norm_grad_sums_cupy(g, x, mean)
    if _numba_for(g, x):
        return batch_norm_grad_sums_numba(g, x, mean)
    return batch_norm_grad_sums_reference(g, x, mean)


def batch_norm_input_grad(g, x, mean, a, k, b):
    """dx = g * a_c + (x - mean_c) * k_c + b_c for g, x (N, C, ...) and (C,) vectors."""
    if _cuda_for(g, x):
        return batch_norm_input_grad_cupy(g, x, mean, a, k, b)
    if _numba_for(g, x):
        return batch_norm_input_grad_numba(g, x, mean, a, k, b)
    return batch_norm_input_grad_reference(g, x, mean, a, k, b)


#: The fused route's CUDA kernels compile (NVRTC 12.9) but have not run on a device yet: on
#: the GPU it runs only where forced (``td.backends.route(batch_norm="fused")``), and the
#: gpu-marked tests and ``run_gpu_checks.sh`` force it. Set True once they pass there.
FUSED_ON_CUDA_BY_DEFAULT = False


def batch_norm_route(x, weight, bias, running_mean, running_var, residual=None):
    """'fused' where batch norm's forward and backward can run as one call each
    (``batch_norm_forward_fused`` / ``batch_norm_backward_fused``), else None: the op's
    passes (float16, an (N, C) input, an empty batch, ``td.backends.reference()``, or
    ``td.backends.route(batch_norm="numba")``, which forces the passes; on the GPU, unless
    forced, see FUSED_ON_CUDA_BY_DEFAULT)."""
    forced = backends.forced_route("batch_norm")
    if forced == "numba" or x.size == 0 or backends.is_reference():
        return None
    if type(x) is np.ndarray:
        if not _numba_for(x):
            return None
    elif not (_cuda_for(x) and (FUSED_ON_CUDA_BY_DEFAULT or forced == "fused")):
        return None
    if (running_mean is None) != (running_var is None):
        return None
    for a in (weight, bias, running_mean, running_var):     # (C,) arrays like x, or left out
        if a is not None and (type(a) is not type(x) or a.dtype != x.dtype or not a.flags.c_contiguous):
            return None
    if residual is not None and (type(residual) is not type(x) or residual.dtype != x.dtype
                                 or residual.shape != x.shape):
        return None
    backends.note_route("batch_norm", "fused")
    return "fused"


def batch_norm_forward_fused(x, weight, bias, running_mean, running_var, training, momentum, eps,
                             residual=None, relu=False):
    """Batch norm's forward where ``batch_norm_route`` says 'fused': y (+ residual, then max(y, 0)
    with ``relu``) and what backward reads. The running buffers are updated in place
    (training with both given)."""
    fused = batch_norm_forward_fused_cupy if is_cupy_array(x) else batch_norm_forward_fused_numba
    return fused(x, weight, bias, running_mean, running_var, training, momentum, eps, residual, relu)


def batch_norm_backward_fused(gy, x, saved, training, need_x, need_sums, y=None, need_residual=False):
    """(dL/dx or None, sum g x_hat, sum g, dL/dresidual or None): the second and third are
    dL/dgamma and dL/dbeta, computed only with ``need_sums``; ``y``: the forward's output
    when it ended in a ReLU."""
    fused = batch_norm_backward_fused_cupy if is_cupy_array(x) else batch_norm_backward_fused_numba
    return fused(gy.astype(x.dtype, copy=False), x, saved, training, need_x, need_sums, y, need_residual)
