r"""Pooling kernels on raw arrays: max pooling (with PyTorch-style indices),
its backward, max unpooling, and average pooling -- all built on im2col.

Pooling as im2col
-----------------
Pooling treats every (n, c) plane on its own. View ``x`` (N, C, H, W) as N*C
single-channel images, ``x.reshape(N*C, 1, H, W)``; then

    cols = im2col(x1, kernel, stride, padding, dilation)    # (kh*kw, N*C*Ho*Wo)

holds, in column q = (n*C + c)*Ho*Wo + ho*Wo + wo, the kh*kw values of that
output's window, and pooling is a reduction over axis 0:

    max pool:  y = cols.max(axis=0)       (padding filled with -inf, so it never wins;
                                           an integer dtype's minimum for integer inputs)
    avg pool:  y = cols.sum(axis=0) / divisor[ho, wo]     (padding filled with 0)

Backward passes reverse this: avg pool spreads ``gy / divisor`` over the window
(col2im of a broadcast), max pool sends ``gy`` to the one input that won.

Indices (PyTorch's convention)
------------------------------
``max_pool2d`` returns, per output, the flat index ``h*W + w`` of the winning
pixel inside its own *unpadded* (H, W) plane, as int64 -- the same numbers as
``torch.nn.functional.max_pool2d(..., return_indices=True)``, including its scan
rules: the window is scanned row by row and a value replaces the current best
only if it is strictly greater (so the first maximum wins ties), or if it is NaN
(so the last NaN wins); a window whose real pixels are all -inf (an integer
dtype's minimum) reports its first in-bounds pixel. ``max_unpool2d`` and the
max-pool backward consume these indices.

Output size and ceil_mode (PyTorch's rules)
-------------------------------------------
``Ho = floor_or_ceil((H + pt + pb - d*(k-1) - 1) / s) + 1``; with ceil_mode the
last window may hang over the bottom/right edge, but it must start inside the
input or the top/left padding (otherwise it is dropped). We implement the
overhang as extra bottom/right padding passed to im2col; for average pooling
those extra cells are *not* counted in the divisor, while cells of the
requested padding are counted when ``count_include_pad=True``
(see :func:`avg_pool2d_divisor`).
"""
import functools

import numpy as np

from ..args import pair
from ..backend import get_array_module, is_cupy_array
from ._dispatch import for_this_thread, kernel_route, njit, padding4, prange, use_numba
from ._memory import fill_flat, valid_range
from .im2col import col2im, im2col
from .scatter import scatter_add

__all__ = [
    "empty_windows",
    "pool_output_size",
    "pool_geometry",
    "max_pool2d_forward",
    "max_pool2d_forward_reference",
    "max_pool2d_forward_numba",
    "max_pool2d_backward",
    "max_pool2d_backward_reference",
    "max_pool2d_backward_numba",
    "max_unpool2d_forward",
    "max_unpool2d_backward",
    "avg_pool2d_divisor",
    "avg_pool2d_forward",
    "avg_pool2d_backward",
]


# --------------------------------------------------------------------------- geometry
def pool_output_size(size, kernel, stride, pad_before, pad_after, dilation=1, ceil_mode=False):
    """Output length along one axis, exactly as PyTorch's ``pooling_output_shape``."""
    span = size + pad_before + pad_after - dilation * (kernel - 1) - 1
    n = (span + (stride - 1 if ceil_mode else 0)) // stride + 1
    # ceil_mode: the last window must start inside the input or the leading padding.
    if ceil_mode and (n - 1) * stride >= size + pad_before:
        n -= 1
    if n <= 0:
        raise ValueError(f"pooling output would be empty (input {size}, kernel {kernel}, dilation {dilation})")
    return n


def pool_geometry(in_hw, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """Normalise pooling arguments; return ``(Ho, Wo, pad4)``.

    ``pad4 = (top, bottom, left, right)`` is the padding to hand to im2col: the
    requested padding, with bottom/right enlarged when ceil_mode makes the last
    window overhang the padded input. ``stride=None`` means ``stride = kernel_size``
    (PyTorch's default). Like PyTorch, the padding of each side may be at most
    half the effective (dilated) kernel; a dilated window can still step over a
    narrow image and read no pixel at all (``empty_windows``).
    """
    H, W = in_hw
    kh, kw = pair(kernel_size, "kernel_size")
    sh, sw = pair(kernel_size if stride is None else stride, "stride")
    dh, dw = pair(dilation, "dilation")
    pt, pb, pl, pr = padding4(padding)
    if max(pt, pb) > (dh * (kh - 1) + 1) // 2 or max(pl, pr) > (dw * (kw - 1) + 1) // 2:
        raise ValueError(f"padding {padding} must be at most half of the (dilated) kernel size {kernel_size}")
    Ho = pool_output_size(H, kh, sh, pt, pb, dh, ceil_mode)
    Wo = pool_output_size(W, kw, sw, pl, pr, dw, ceil_mode)
    # How far the last window reaches, in padded coordinates; anything beyond
    # H + pt + pb is the ceil_mode overhang.
    pb = max(pb, (Ho - 1) * sh + dh * (kh - 1) + 1 - H - pt)
    pr = max(pr, (Wo - 1) * sw + dw * (kw - 1) + 1 - W - pl)
    return Ho, Wo, (pt, pb, pl, pr)


@functools.lru_cache(maxsize=256)      # asked at every max-pooling call (16 us of NumPy otherwise)
def empty_windows(in_hw, kernel, stride, padding, dilation, out_hw):
    """The (Ho, Wo) mask of the outputs whose window reads no pixel, or None when every
    window reads one (the usual case). A dilated window can step over a narrow image:
    kernel 2, dilation 2 and padding 1 on a 1-pixel row reads positions -1 and 1. Its
    max is -inf and, as in PyTorch, its index is its first tap past the top-left padding,
    which lies outside the image; it passes no gradient (PyTorch's backward adds it at
    that index, in another pixel or plane). ``padding`` is (top, left)."""
    empty = []
    for size, k, s, p, d, n_out in zip(in_hw, kernel, stride, padding, dilation, out_hw):
        _, lo, hi = _window_taps(n_out, s, p, d, size, k)       # the taps inside the image
        empty.append(lo == hi)
    if not (empty[0].any() or empty[1].any()):
        return None
    mask = empty[0][:, None] | empty[1][None, :]
    mask.flags.writeable = False            # shared by every call of this geometry
    return mask


def _first_inbounds(n_out, s, p_before, d):
    """Per output position, the first kernel tap whose pixel is not in the leading padding.

    For output o the taps read o*s - p_before + t*d; the first t with a
    non-negative position is ceil((p_before - o*s) / d), or 0.
    """
    o = np.arange(n_out)
    return np.maximum(-((o * s - p_before) // d), 0)


# --------------------------------------------------------------------------- max pool
def lowest(dtype):
    """The value every window's maximum starts from, so padding never wins: -inf for floats,
    the dtype's minimum for integers (-inf does not fit them; PyTorch starts there too)."""
    dtype = np.dtype(dtype)
    return dtype.type(-np.inf if dtype.kind == "f" else np.iinfo(dtype).min)


def _max_pool_settings(in_hw, kernel_size, stride, padding, dilation, ceil_mode):
    """Kernel, stride and dilation as pairs, the output size and the padding
    (top, bottom, left, right): what every max-pooling path needs first."""
    kh, kw = pair(kernel_size, "kernel_size")
    sh, sw = pair(kernel_size if stride is None else stride, "stride")
    dh, dw = pair(dilation, "dilation")
    Ho, Wo, pad4 = pool_geometry(in_hw, kernel_size, stride, padding, dilation, ceil_mode)
    return kh, kw, sh, sw, dh, dw, Ho, Wo, pad4


def max_pool2d_forward_reference(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """Max pooling through im2col. Returns ``(y, indices)``, both (N, C, Ho, Wo);
    ``indices`` are int64 flat positions ``h*W + w`` in each unpadded plane.

    Steps: unfold every plane with -inf padding (``lowest``), take the per-column argmax
    (NumPy's argmax returns the first maximum, the same as PyTorch's scan), then
    turn the winning tap (i, j) of output (ho, wo) into the pixel it read:
    h = ho*sh - pt + i*dh, w = wo*sw - pl + j*dw. Works on NumPy and CuPy arrays.
    """
    xp = get_array_module(x)
    N, C, H, W = x.shape
    kh, kw, sh, sw, dh, dw, Ho, Wo, (pt, pb, pl, pr) = _max_pool_settings(
        (H, W), kernel_size, stride, padding, dilation, ceil_mode)

    bottom = lowest(x.dtype)
    cols = im2col(x.reshape(N * C, 1, H, W), (kh, kw), (sh, sw), (pt, pb, pl, pr), (dh, dw), pad_value=bottom)
    tap = cols.argmax(axis=0)  # (N*C*Ho*Wo,), first maximum wins

    # PyTorch's scan has two rules argmax lacks; they matter only for NaN and
    # -inf inputs but keep the indices identical (and inside the plane).
    if x.dtype.kind == "f" and xp.isnan(x).any():  # `v > best or isnan(v)`: the *last* NaN wins
        is_nan = xp.isnan(cols)
        last_nan = cols.shape[0] - 1 - is_nan[::-1].argmax(axis=0)
        tap = xp.where(is_nan.any(axis=0), last_nan, tap)
    y = xp.take_along_axis(cols, tap[None], axis=0)[0]
    all_neg_inf = (y == bottom).reshape(N * C, Ho, Wo)
    tap = tap.reshape(N * C, Ho, Wo)
    if all_neg_inf.any():  # nothing beat the initial -inf (a padding cell may tie): the first real pixel
        i0 = xp.asarray(_first_inbounds(Ho, sh, pt, dh))[:, None]
        j0 = xp.asarray(_first_inbounds(Wo, sw, pl, dw))[None, :]
        tap = xp.where(all_neg_inf, i0 * kw + j0, tap)

    i, j = tap // kw, tap % kw
    h = xp.arange(Ho)[:, None] * sh - pt + i * dh
    w = xp.arange(Wo)[None, :] * sw - pl + j * dw
    indices = (h * W + w).astype(xp.int64)
    return y.reshape(N, C, Ho, Wo), indices.reshape(N, C, Ho, Wo)


@njit(cache=True)
def _window_taps(n_out, s, p_before, d, size, k):
    """For each output position o along one axis: the input position of its first
    tap (o*s - p_before) and the taps [lo, hi) that fall inside the image."""
    start = np.empty(n_out, np.int64)
    lo = np.empty(n_out, np.int64)
    hi = np.empty(n_out, np.int64)
    for o in range(n_out):
        start[o] = o * s - p_before
        lo[o], hi[o] = valid_range(-start[o], d, size, k)
    return start, lo, hi


@njit(parallel=True, cache=True)
def _max_pool_kernel(x, h_taps, w_taps, dh, dw, inner, y, idx):
    # Fused forward: scan each window directly in the input, no cols matrix.
    # Same scan order and comparison as PyTorch, hence the same indices.
    # Flat arrays with unsigned offsets, as in im2col.py (no wraparound checks).
    # The in-image taps of every window row and column come precomputed
    # (_window_taps) rather than worked out per output with floor divisions.
    # Most of the remaining time is mispredicted branches on the comparison.
    # The outputs in ``inner`` = (ho0, ho1, wo0, wo1), whose windows lie wholly
    # inside the image, are left to _interior_max_pool_kernel below, about 8x
    # faster. (Every way we tried of handling the border windows in that kernel
    # brought it back to this one's 12 ms on 4096 planes of 32x32.)
    P, H, W = x.shape
    _, Ho, Wo = y.shape
    h_start, i_lo, i_hi = h_taps
    w_start, j_lo, j_hi = w_taps
    ho0, ho1, wo0, wo1 = inner
    x_flat, y_flat, idx_flat = x.reshape(-1), y.reshape(-1), idx.reshape(-1)
    for p in prange(P):
        plane = np.uint64(p * H * W)
        for ho in range(Ho):
            inner_row = ho0 <= ho < ho1
            for wo in range(Wo):
                if inner_row and wo0 <= wo < wo1:
                    continue
                # Start from the first in-bounds pixel: PyTorch's answer when
                # nothing beats its initial -inf, and otherwise overtaken below.
                best_k = (h_start[ho] + i_lo[ho] * dh) * W + w_start[wo] + j_lo[wo] * dw
                out = np.uint64((p * Ho + ho) * Wo + wo)
                if i_lo[ho] == i_hi[ho] or j_lo[wo] == j_hi[wo]:   # no pixel: see empty_windows
                    y_flat[out] = -np.inf
                    idx_flat[out] = best_k
                    continue
                best = x_flat[plane + np.uint64(best_k)]
                for i in range(i_lo[ho], i_hi[ho]):
                    row = (h_start[ho] + i * dh) * W + w_start[wo]
                    for j in range(j_lo[wo], j_hi[wo]):
                        k = row + j * dw  # h*W + w, >= 0 for in-bounds taps
                        v = x_flat[plane + np.uint64(k)]
                        if v > best or v != v:  # strictly greater, or NaN (v != v)
                            best = v
                            best_k = k
                y_flat[out] = best
                idx_flat[out] = best_k


_interior_kernels = {}


def _interior_max_pool_kernel(kh, kw, sh, sw, pt, pl, dh, dw):
    """The same scan for the windows that lie wholly inside the image: all of them
    in LeNet's, VGG's and AlexNet's pools, all but a border of outputs in padded
    ones (ResNet's 3x3 stride-2 stem pool; the general kernel does the border:
    on 16x64x112x112 that pool took 19-26 ms instead of 59-63). With the window
    size compiled in, LLVM unrolls the window and compiles the comparison without
    branches, which the general kernel's per-window tap ranges prevent. On 4096
    planes of 32x32 with a 2x2 window it took 1.6 ms instead of 12 ms, which is
    mostly mispredicted branches on real data. Stride, padding and dilation are
    compiled in too: as run-time arguments they cost 25-40% on that pool. One
    compiled kernel per pooling geometry, cached on disk like the others."""
    key = (kh, kw, sh, sw, pt, pl, dh, dw)
    kernel = _interior_kernels.get(key)
    if kernel is None:
        @njit(parallel=True, cache=True)
        def kernel(x, inner, y, idx):
            # Outputs (ho, wo) in inner = (ho0, ho1, wo0, wo1); their windows start
            # at (ho*sh - pt, wo*sw - pl) and lie inside the image.
            P, H, W = x.shape
            ho0, ho1, wo0, wo1 = inner
            for p in prange(P):
                for ho in range(ho0, ho1):
                    h0 = ho * sh - pt
                    for wo in range(wo0, wo1):
                        w0 = wo * sw - pl
                        best = x[p, h0, w0]
                        best_k = h0 * W + w0
                        for i in range(kh):
                            for j in range(kw):
                                v = x[p, h0 + i * dh, w0 + j * dw]
                                if v > best or v != v:  # strictly greater, or NaN
                                    best = v
                                    best_k = (h0 + i * dh) * W + w0 + j * dw
                        y[p, ho, wo] = best
                        idx[p, ho, wo] = best_k
        _interior_kernels[key] = kernel
    return kernel


def max_pool2d_forward_numba(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """Same ``(y, indices)`` as :func:`max_pool2d_forward_reference`, by a fused Numba loop
    (always the parallel kernels, even on small arrays: see ``_dispatch.njit``)."""
    N, C, H, W = x.shape
    kh, kw, sh, sw, dh, dw, Ho, Wo, (pt, pb, pl, pr) = _max_pool_settings(
        (H, W), kernel_size, stride, padding, dilation, ceil_mode)
    x3 = np.ascontiguousarray(x).reshape(N * C, H, W)
    y = np.empty((N * C, Ho, Wo), dtype=x.dtype)
    idx = np.empty((N * C, Ho, Wo), dtype=np.int64)
    inner = _inside_outputs(Ho, sh, pt, dh, H, kh) + _inside_outputs(Wo, sw, pl, dw, W, kw)
    if inner[0] < inner[1] and inner[2] < inner[3]:
        _interior_max_pool_kernel(kh, kw, sh, sw, pt, pl, dh, dw)(x3, inner, y, idx)
    if inner != (0, Ho, 0, Wo):                       # windows that reach the padding
        _max_pool_kernel(x3, _window_taps(Ho, sh, pt, dh, H, kh), _window_taps(Wo, sw, pl, dw, W, kw),
                         dh, dw, inner, y, idx)
    return y.reshape(N, C, Ho, Wo), idx.reshape(N, C, Ho, Wo)


def _inside_outputs(n_out, s, p_before, d, size, k):
    """The outputs [lo, hi) along one axis whose whole window lies inside the image:
    o*s - p_before >= 0 and o*s - p_before + d*(k-1) <= size - 1."""
    lo = min(-(-p_before // s), n_out)
    hi = max(lo, min(n_out, (size - 1 - d * (k - 1) + p_before) // s + 1))
    return lo, hi


# The CUDA kernels are compiled by CuPy on first use (nothing imports CuPy at import time).
_MAX_POOL_CUDA = r"""
    // One thread per output (plane p, ho, wo): the scan of _max_pool_kernel above,
    // in the same order with the same rules, hence the same values and indices.
    long long t = i;
    const int wo = t % Wo; t /= Wo;
    const int ho = t % Ho; t /= Ho;
    const long long plane = t * H * W;
    const int h0 = ho * sh - pt, w0 = wo * sw - pl;
    T best = lowest;
    long long best_k = -1;
    for (int a = 0; a < kh; ++a) {
        const int h = h0 + a * dh;
        if (h < 0 || h >= H) continue;
        for (int b = 0; b < kw; ++b) {
            const int w = w0 + b * dw;
            if (w < 0 || w >= W) continue;
            const T v = x[plane + (long long)h * W + w];
            // the first in-bounds pixel starts the scan; then strictly greater, or NaN
            if (best_k < 0 || v > best || v != v) {
                best = v;
                best_k = (long long)h * W + w;
            }
        }
    }
    if (best_k < 0) {   // no pixel (see empty_windows): -inf (lowest), and the first tap past the top-left padding
        int h = h0, w = w0;
        while (h < 0) h += dh;
        while (w < 0) w += dw;
        best_k = (long long)h * W + w;
    }
    y = best;
    idx = best_k;
"""

_MAX_POOL_BACKWARD_CUDA = r"""
    // One thread per output: add its gradient to the pixel that won. Windows
    // overlap only when stride < kernel; then atomics make the float sum's order
    // (not its terms) vary from run to run.
    atomicAdd(&gx[(i / L) * HW + idx], gy);
"""

_UNPOOL_CUDA = r"""
    // One thread per input element: place it at its switch in its own output plane.
    y[(i / L) * HW + idx] = x;
"""

_UNPOOL_BACKWARD_CUDA = r"""
    gx = gy[(i / L) * HW + idx];
"""

_POOL_GEOMETRY = "int32 H, int32 W, int32 Ho, int32 Wo, int32 kh, int32 kw, int32 sh, int32 sw, " \
                 "int32 pt, int32 pl, int32 dh, int32 dw"
_cuda_kernels = {}


def _cuda_kernel(name):
    if not _cuda_kernels:
        import cupy
        _cuda_kernels["max_pool"] = cupy.ElementwiseKernel(
            "raw T x, T lowest, " + _POOL_GEOMETRY, "T y, int64 idx", _MAX_POOL_CUDA, "tinydl_max_pool2d")
        # "raw" outputs: the launch covers gy / x (one thread each); gx / y are written at computed spots
        _cuda_kernels["max_pool_backward"] = cupy.ElementwiseKernel(
            "T gy, int64 idx, int64 L, int64 HW", "raw T gx", _MAX_POOL_BACKWARD_CUDA,
            "tinydl_max_pool2d_backward")
        _cuda_kernels["unpool"] = cupy.ElementwiseKernel(
            "T x, int64 idx, int64 L, int64 HW", "raw T y", _UNPOOL_CUDA, "tinydl_max_unpool2d")
        _cuda_kernels["unpool_backward"] = cupy.ElementwiseKernel(
            "raw T gy, int64 idx, int64 L, int64 HW", "T gx", _UNPOOL_BACKWARD_CUDA,
            "tinydl_max_unpool2d_backward")
    return _cuda_kernels[name]


def max_pool2d_forward_cupy(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """Same ``(y, indices)`` as :func:`max_pool2d_forward_reference`, one CUDA thread per output."""
    import cupy
    N, C, H, W = x.shape
    kh, kw, sh, sw, dh, dw, Ho, Wo, (pt, pb, pl, pr) = _max_pool_settings(
        (H, W), kernel_size, stride, padding, dilation, ceil_mode)
    y = cupy.empty((N, C, Ho, Wo), dtype=x.dtype)
    idx = cupy.empty((N, C, Ho, Wo), dtype=cupy.int64)
    _cuda_kernel("max_pool")(cupy.ascontiguousarray(x), lowest(x.dtype), H, W, Ho, Wo, kh, kw, sh, sw, pt, pl, dh, dw,
                             y, idx)
    return y, idx


def max_pool2d_backward_cupy(gy, indices, x_shape):
    """Same result as :func:`max_pool2d_backward_reference` (up to the order of float
    sums where windows overlap), one CUDA thread per output."""
    import cupy
    N, C, H, W = x_shape
    gx = cupy.zeros(x_shape, dtype=gy.dtype)
    L = gy.shape[2] * gy.shape[3]
    _cuda_kernel("max_pool_backward")(cupy.ascontiguousarray(gy), cupy.ascontiguousarray(indices),
                                      L, H * W, gx)
    return gx


def max_pool2d_forward(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """Max pooling; returns ``(y, indices)`` like ``F.max_pool2d(..., return_indices=True)``.

    A fused loop on both devices (Numba on the CPU, a CUDA kernel on CuPy arrays);
    the im2col reference when ``TINYDL_NO_NUMBA=1`` on the CPU.
    """
    route = kernel_route("max_pool2d", x)
    if route == "cuda":
        return max_pool2d_forward_cupy(x, kernel_size, stride, padding, dilation, ceil_mode)
    if route == "numba":
        return max_pool2d_forward_numba(x, kernel_size, stride, padding, dilation, ceil_mode)
    return max_pool2d_forward_reference(x, kernel_size, stride, padding, dilation, ceil_mode)


def _plane_flat_index(xp, indices, plane_size):
    """Per-plane indices (N, C, ...) -> indices into the flattened (N*C*plane_size) array."""
    N, C = indices.shape[:2]
    planes = xp.arange(N * C, dtype=xp.int64).reshape(N, C, *([1] * (indices.ndim - 2)))
    return (planes * plane_size + indices).reshape(-1)


def max_pool2d_backward_reference(gy, indices, x_shape):
    r"""Gradient of max pooling: ``gx[n, c].flat[indices[n, c, ho, wo]] += gy[n, c, ho, wo]``.

    y = x at the winning pixel, so dy/dx is 1 there and 0 elsewhere; a pixel
    that wins several (overlapping) windows collects the sum of their gradients.
    """
    xp = get_array_module(gy)
    N, C, H, W = x_shape
    gx = xp.zeros(N * C * H * W, dtype=gy.dtype)
    scatter_add(gx, _plane_flat_index(xp, indices, H * W), gy.reshape(-1))
    return gx.reshape(N, C, H, W)


@njit(parallel=True, cache=True)
def _max_pool_backward_kernel(gy, idx, gx):
    # One task per plane: scatters never cross planes, so no races. Outputs are
    # visited in C order, the order np.add.at uses in the reference. An index outside
    # the plane is counted, not followed (the caller raises): checked here, in the one
    # pass, rather than by idx.min() and idx.max() first: two more passes over the int64
    # indices (LeNet-5's first pool at batch 64: 58 us against 70; 8x64x112x112: 1.2 ms
    # against 1.7; two threads, "AMD EPYC").
    P, HW = gx.shape
    L = gy.shape[1] * gy.shape[2]                 # outputs per plane
    gy_flat, idx_flat, gx_flat = gy.reshape(-1), idx.reshape(-1), gx.reshape(-1)
    outside = 0
    for p in prange(P):
        plane = np.uint64(p * HW)
        fill_flat(gx_flat, plane, HW, 0)
        first = np.uint64(p * L)
        for t in range(np.uint64(L)):
            k = idx_flat[first + t]
            if 0 <= k < HW:
                gx_flat[plane + np.uint64(k)] += gy_flat[first + t]
            else:
                outside += 1
    return outside


def max_pool2d_backward_numba(gy, indices, x_shape):
    """Same result as :func:`max_pool2d_backward_reference` (bit-identical), parallel over planes."""
    N, C, H, W = x_shape
    Ho, Wo = gy.shape[2:]
    gy3 = np.ascontiguousarray(gy).reshape(N * C, Ho, Wo)
    idx3 = np.ascontiguousarray(indices, dtype=np.int64).reshape(N * C, Ho, Wo)
    gx = np.empty((N * C, H * W), dtype=gy.dtype)
    if for_this_thread(_max_pool_backward_kernel, gx.size)(gy3, idx3, gx):
        raise IndexError(f"max-pool index out of range for a {H}x{W} plane")
    return gx.reshape(N, C, H, W)


def max_pool2d_backward(gy, indices, x_shape):
    """Gradient of max pooling w.r.t. its input, from the forward's ``indices``."""
    if is_cupy_array(gy):
        return max_pool2d_backward_cupy(gy, indices, x_shape)
    if use_numba(gy.dtype):
        return max_pool2d_backward_numba(gy, indices, x_shape)
    return max_pool2d_backward_reference(gy, indices, x_shape)


# --------------------------------------------------------------------------- max unpool
def _check_indices(xp, indices, plane_size):
    if indices.size and (int(indices.min()) < 0 or int(indices.max()) >= plane_size):
        raise IndexError(f"max_unpool2d: index out of range for an output plane of {plane_size} elements")


def max_unpool2d_forward(x, indices, output_size):
    """Place each ``x[n, c, i, j]`` at flat position ``indices[n, c, i, j]`` of a zero
    (N, C, Hout, Wout) map (``output_size = (Hout, Wout)``); ZFNet's "switches".

    If two entries share an index, the later one (C order) is kept, like PyTorch's
    CPU kernel (on the GPU the winner is unspecified, as in PyTorch). Linear in x,
    so its backward is the gather :func:`max_unpool2d_backward`.
    """
    xp = get_array_module(x)
    N, C = x.shape[:2]
    Hout, Wout = pair(output_size, "output_size")
    _check_indices(xp, indices, Hout * Wout)
    y = xp.zeros(N * C * Hout * Wout, dtype=x.dtype)
    if is_cupy_array(x):
        L = x.size // max(N * C, 1)
        _cuda_kernel("unpool")(xp.ascontiguousarray(x), xp.ascontiguousarray(indices), L, Hout * Wout, y)
    else:
        y[_plane_flat_index(xp, indices, Hout * Wout)] = x.reshape(-1)
    return y.reshape(N, C, Hout, Wout)


def max_unpool2d_backward(gy, indices):
    """Gradient of max unpooling: ``gx[n, c, i, j] = gy[n, c].flat[indices[n, c, i, j]]``."""
    xp = get_array_module(gy)
    N, C, Hout, Wout = gy.shape
    _check_indices(xp, indices, Hout * Wout)
    if is_cupy_array(gy):
        L = indices.size // max(N * C, 1)
        return _cuda_kernel("unpool_backward")(xp.ascontiguousarray(gy), xp.ascontiguousarray(indices),
                                               L, Hout * Wout)
    return gy.reshape(-1)[_plane_flat_index(xp, indices, Hout * Wout)].reshape(indices.shape)


# --------------------------------------------------------------------------- avg pool
def _window_counts(size, n_out, k, s, pad_before, pad_after):
    """Per output position along one axis: (cells counted with padding, real cells).

    PyTorch: a window spans [o*s - p, o*s - p + k); cut it at the end of the
    padded input (size + pad_after) to get the count *with* padding -- this drops
    the ceil_mode overhang -- and at [0, size) to get the real cells.
    """
    start = np.arange(n_out) * s - pad_before
    end = np.minimum(start + k, size + pad_after)
    with_pad = end - start
    real = np.minimum(end, size) - np.maximum(start, 0)
    return with_pad, real


def avg_pool2d_divisor(in_hw, kernel_size, stride=None, padding=0, ceil_mode=False,
                       count_include_pad=True, divisor_override=None, dtype=np.float64):
    """The (Ho, Wo) map of divisors of average pooling, exactly as PyTorch counts them.

    ``count_include_pad=True``: cells of the requested padding count, the extra
    ceil_mode cells do not; ``False``: only real input cells count;
    ``divisor_override``: that number everywhere. Windows are rectangles, so the
    count is (rows counted) x (columns counted). Returned as a NumPy array; the
    caller moves it to the GPU if needed.
    """
    H, W = in_hw
    kh, kw = pair(kernel_size, "kernel_size")
    sh, sw = pair(kernel_size if stride is None else stride, "stride")
    pt, pb, pl, pr = padding4(padding)
    Ho, Wo, _ = pool_geometry(in_hw, kernel_size, stride, padding, 1, ceil_mode)
    if divisor_override is not None:
        return np.full((Ho, Wo), divisor_override, dtype=dtype)
    rows_pad, rows_real = _window_counts(H, Ho, kh, sh, pt, pb)
    cols_pad, cols_real = _window_counts(W, Wo, kw, sw, pl, pr)
    if count_include_pad:
        return np.outer(rows_pad, cols_pad).astype(dtype)
    return np.outer(rows_real, cols_real).astype(dtype)


_DEVICE_TABLES = {}      # (builder, its arguments, GPU) -> the table there


def _table_on(xp, build, *args):
    """build(*args), a host table (or a tuple of them, None kept), on xp's device. On the GPU
    each is copied there once and kept: a copy from the host per call is a sync, which a CUDA
    graph's capture cannot hold."""
    if xp is np:
        return build(*args)
    key = (build, repr(args), xp.cuda.runtime.getDevice())
    if key not in _DEVICE_TABLES:       # (never dropped: a captured CUDA graph may read it)
        host = build(*args)
        _DEVICE_TABLES[key] = (tuple(None if a is None else xp.asarray(a) for a in host)
                               if isinstance(host, tuple) else xp.asarray(host))
    return _DEVICE_TABLES[key]


def avg_pool2d_forward(x, kernel_size, stride=None, padding=0, ceil_mode=False,
                       count_include_pad=True, divisor_override=None):
    """Average pooling: ``y[n, c, ho, wo] = sum of the window / divisor[ho, wo]`` (zero padding)."""
    xp = get_array_module(x)
    N, C, H, W = x.shape
    Ho, Wo, pad4 = pool_geometry((H, W), kernel_size, stride, padding, 1, ceil_mode)
    cols = im2col(x.reshape(N * C, 1, H, W), kernel_size, kernel_size if stride is None else stride, pad4)
    div = _table_on(xp, avg_pool2d_divisor, (H, W), kernel_size, stride, padding, ceil_mode, count_include_pad,
                    divisor_override, x.dtype)
    y = cols.sum(axis=0).reshape(N, C, Ho, Wo) / div
    return y.astype(x.dtype, copy=False)


def avg_pool2d_backward(gy, x_shape, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True, divisor_override=None):
    """Gradient of average pooling: every cell of a window gets ``gy / divisor``
    (dy/dx = 1/divisor for each cell summed); overlaps add up, padding is dropped
    -- which is col2im of ``gy / divisor`` repeated over the kh*kw taps.
    """
    xp = get_array_module(gy)
    N, C, H, W = x_shape
    kh, kw = pair(kernel_size, "kernel_size")
    Ho, Wo, pad4 = pool_geometry((H, W), kernel_size, stride, padding, 1, ceil_mode)
    div = _table_on(xp, avg_pool2d_divisor, (H, W), kernel_size, stride, padding, ceil_mode, count_include_pad,
                    divisor_override, gy.dtype)
    g = (gy / div).astype(gy.dtype, copy=False).reshape(1, N * C * Ho * Wo)
    cols = xp.ascontiguousarray(xp.broadcast_to(g, (kh * kw, N * C * Ho * Wo)))
    gx = col2im(cols, (N * C, 1, H, W), kernel_size, kernel_size if stride is None else stride, pad4)
    return gx.reshape(N, C, H, W)
