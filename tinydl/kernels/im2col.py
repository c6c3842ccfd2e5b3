r"""im2col / col2im: turn a convolution into one matrix multiplication.

The idea
--------
A 2-D convolution (really a cross-correlation) of an input ``x`` (N, C, H, W)
with weights ``w`` (O, C, kh, kw) is

    y[n, o, ho, wo] = sum_{c, i, j} w[o, c, i, j] * xp[n, c, ho*sh + i*dh, wo*sw + j*dw]

where ``xp`` is ``x`` padded by (top, bottom, left, right) = (pt, pb, pl, pr),
``s`` is the stride and ``d`` the dilation. If we copy every input value that
the sum touches into a matrix ``cols`` -- one row per weight position (c, i, j),
one column per output position (n, ho, wo) -- the triple sum becomes a
matrix product, which BLAS (or cuBLAS) does at close to peak speed:

    y = w.reshape(O, C*kh*kw) @ cols          # (O, N*Ho*Wo)

The layout (read this before using the kernels)
-----------------------------------------------
::

    cols.shape == (C*kh*kw, N*Ho*Wo)
    cols[(c*kh + i)*kw + j, (n*Ho + ho)*Wo + wo] = xp[n, c, ho*sh + i*dh, wo*sw + j*dw]

* rows: channel outermost, then kernel row i, then kernel column j. This is the
  order of ``w.reshape(O, -1)`` (PyTorch's weight layout), and it makes the rows
  of one channel group a contiguous block, so grouped / depthwise convolution
  slices ``cols[g*Cg*kh*kw:(g+1)*Cg*kh*kw]`` without copying.
* columns: batch outermost, output width innermost. Every row is a run of
  contiguous output positions, which is what the Numba builder writes fastest
  (sequential stores) and what makes the three conv GEMMs single 2-D products::

    forward   y2  = W2 @ cols                 (O, K) @ (K, N*L)      L = Ho*Wo
    backward  dW2 = gy2 @ cols.T              (O, N*L) @ (N*L, K)
              dcols = W2.T @ gy2              (K, O) @ (O, N*L), then col2im
  with ``gy2 = gy.transpose(1, 0, 2, 3).reshape(O, N*L)`` and
  ``y = y2.reshape(O, N, Ho, Wo).transpose(1, 0, 2, 3)``: the only copies are of
  y / gy, which are kh*kw*C/O times smaller than cols.

  Why this layout (benchmarks/bench_im2col.py): the Numba kernel writes it 11-19x
  faster than the (N*Ho*Wo, C*kh*kw) row layout of DeZero and Chainer, every conv
  product is one 2-D GEMM (no Python loop over the batch; the one large GEMM cuBLAS
  prefers), and pooling (N*C planes as the batch, C=1) reduces over contiguous axis 0.

How the ops use it (a sketch, CPU; on the GPU pass ``out=None``)::

    K, L = C*kh*kw, Ho*Wo
    cols = im2col(x, k, s, p, d, out=workspace((K, N*L), x.dtype, "conv.cols"))
    y = np.ascontiguousarray((W.reshape(O, K) @ cols).reshape(O, N, Ho, Wo).transpose(1, 0, 2, 3))
    # backward: the workspace was reused by later layers, so rebuild cols from x
    # (cheap next to the GEMMs) instead of keeping a copy per layer
    cols = im2col(x, k, s, p, d, out=workspace((K, N*L), x.dtype, "conv.cols"))
    gy2 = gy.transpose(1, 0, 2, 3).reshape(O, N*L)
    dW = (gy2 @ cols.T).reshape(W.shape)
    dcols = np.matmul(W.reshape(O, K).T, gy2, out=cols)   # cols is no longer needed
    dx = col2im(dcols, x.shape, k, s, p, d)

col2im is the adjoint (transpose) of im2col: every entry of ``cols`` is added back
to the input pixel it was copied from; entries that came from padding are dropped.
So ``<im2col(x), c> == <x, col2im(c)>`` for all x and c, which is exactly what the
convolution backward pass needs (dx = col2im(dcols)) and what transposed
convolution uses as its forward pass.

Output size (PyTorch's formula, with possibly uneven padding)::

    Ho = (H + pt + pb - dh*(kh-1) - 1) // sh + 1

Three implementations, identical results
----------------------------------------
``*_reference`` (NumPy, loops over the kh*kw kernel offsets: read this one),
``*_numba`` (parallel loops compiled by Numba, writing into a caller-given buffer)
and ``*_cupy`` (CUDA kernels through CuPy). ``im2col``/``col2im`` pick one:
CuPy array -> CuPy; otherwise Numba unless ``TINYDL_NO_NUMBA=1`` (or the dtype is
not float32/float64) -> NumPy reference. im2col is pure copying and col2im adds
contributions to each pixel in the same (i, j) order in all three, so their
results are bit-for-bit equal.
"""
import functools
import math

import numpy as np

from ..args import pair, plain
from ..backend import get_array_module, is_cupy_array
from ._dispatch import for_this_thread, njit, padding4, prange, runs_serial, use_numba
from ._memory import fill_flat, gather_flat, scatter_add_flat, valid_range

__all__ = [
    "conv_output_size",
    "im2col",
    "col2im",
    "im2col_reference",
    "col2im_reference",
    "im2col_numba",
    "col2im_numba",
    "im2col_cupy",
    "col2im_cupy",
]


# --------------------------------------------------------------------------- geometry
def _out_len(size, k, s, p_before, p_after, d):
    n = (size + p_before + p_after - d * (k - 1) - 1) // s + 1
    if n <= 0:
        raise ValueError(
            f"window of {k} (dilation {d}) does not fit into input {size} padded by ({p_before}, {p_after})"
        )
    return n


def conv_output_size(in_hw, kernel_size, stride=1, padding=0, dilation=1):
    """``(Ho, Wo)`` of a convolution/im2col over an input of spatial size ``in_hw = (H, W)``.

    ``padding`` is an int, ``(ph, pw)`` or ``(top, bottom, left, right)``.
    """
    if len(in_hw) != 2:
        raise ValueError(f"expected the input's (H, W), got {tuple(in_hw)}")
    return _geometry((1, 1) + tuple(in_hw), kernel_size, stride, padding, dilation)[-2:]


def _geometry(x_shape, kernel_size, stride, padding, dilation):
    """All the integers a kernel needs, normalised once: (N, C, H, W, kh, kw, sh, sw, pt,
    pb, pl, pr, dh, dw, Ho, Wo). Remembered per arguments: a network asks for the same few
    geometries at every step (benchmarks/bench_alone.py's ResNet-20 batch 1 row)."""
    if plain(kernel_size, stride, padding, dilation):
        return _remembered_geometry(tuple(x_shape), kernel_size, stride, padding, dilation)
    return _normalised_geometry(x_shape, kernel_size, stride, padding, dilation)


def _normalised_geometry(x_shape, kernel_size, stride, padding, dilation):
    if len(x_shape) != 4:
        raise ValueError(f"expected a 4-D NCHW shape, got {tuple(x_shape)}")
    N, C, H, W = map(int, x_shape)
    kh, kw = pair(kernel_size, "kernel_size")
    sh, sw = pair(stride, "stride")
    dh, dw = pair(dilation, "dilation")
    pt, pb, pl, pr = padding4(padding)
    if min(kh, kw, sh, sw, dh, dw) < 1:
        raise ValueError("kernel_size, stride and dilation must be >= 1")
    Ho = _out_len(H, kh, sh, pt, pb, dh)
    Wo = _out_len(W, kw, sw, pl, pr, dw)
    return N, C, H, W, kh, kw, sh, sw, pt, pb, pl, pr, dh, dw, Ho, Wo


_remembered_geometry = functools.lru_cache(maxsize=4096)(_normalised_geometry)


def _check_out(out, shape, dtype, xp):
    """Return ``out`` (or a new array) viewed as ``shape``; it must be C-contiguous."""
    size = math.prod(shape)
    if out is None:
        return xp.empty(shape, dtype=dtype)
    if out.dtype != dtype or out.size != size or not out.flags.c_contiguous:
        raise ValueError(
            f"out must be a C-contiguous {np.dtype(dtype).name} array of {size} elements "
            f"(shape {shape}), got {out.dtype} {out.shape} contiguous={out.flags.c_contiguous}"
        )
    return out.reshape(shape)


# --------------------------------------------------------------------------- reference (NumPy)
def im2col_reference(x, kernel_size, stride=1, padding=0, dilation=1, pad_value=0.0, out=None):
    r"""Unfold the sliding windows of ``x`` (N, C, H, W) into columns (NumPy version).

    Returns ``cols`` of shape ``(C*kh*kw, N*Ho*Wo)`` with

        cols[(c*kh + i)*kw + j, (n*Ho + ho)*Wo + wo] = xp[n, c, ho*sh + i*dh, wo*sw + j*dw]

    where ``xp`` is ``x`` padded with ``pad_value`` (0 for convolution, -inf for
    max pooling). ``padding`` is an int, ``(ph, pw)`` or ``(top, bottom, left, right)``.

    How: for a fixed kernel offset (i, j), the values seen by all output positions
    form a strided slice of the padded input,

        xp[:, :, i*dh : i*dh + sh*(Ho-1) + 1 : sh, j*dw : j*dw + sw*(Wo-1) + 1 : sw]

    of shape (N, C, Ho, Wo). So there are only kh*kw slice copies, each moving a
    whole (N, C, Ho, Wo) block; the Python loop never visits single pixels.
    Also works on CuPy arrays (used as the oracle in the GPU tests).
    """
    xp = get_array_module(x)
    N, C, H, W, kh, kw, sh, sw, pt, pb, pl, pr, dh, dw, Ho, Wo = _geometry(
        x.shape, kernel_size, stride, padding, dilation
    )
    x_pad = xp.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)), mode="constant", constant_values=pad_value)
    # View the result as (C, kh, kw, N, Ho, Wo): the row index (c, i, j) and
    # column index (n, ho, wo) are these axes flattened in C order.
    cols = _check_out(out, (C, kh, kw, N, Ho, Wo), x.dtype, xp)
    for i in range(kh):
        h0 = i * dh
        for j in range(kw):
            w0 = j * dw
            window = x_pad[:, :, h0 : h0 + sh * (Ho - 1) + 1 : sh, w0 : w0 + sw * (Wo - 1) + 1 : sw]
            cols[:, i, j] = window.transpose(1, 0, 2, 3)  # (N, C, ..) -> (C, N, ..)
    return cols.reshape(C * kh * kw, N * Ho * Wo)


def col2im_reference(cols, x_shape, kernel_size, stride=1, padding=0, dilation=1, out=None):
    r"""Fold columns back into an image: the adjoint of :func:`im2col_reference`.

    ``cols`` has shape ``(C*kh*kw, N*Ho*Wo)`` (any array of that size in that
    order); the result has shape ``x_shape = (N, C, H, W)`` and dtype of ``cols``:

        img[n, c, h, w] = sum over (i, j, ho, wo) with ho*sh + i*dh - pt == h
                                                  and wo*sw + j*dw - pl == w
                          of cols[(c*kh + i)*kw + j, (n*Ho + ho)*Wo + wo]

    i.e. each column entry is *added* back to the pixel it was copied from
    (overlapping windows add up) and entries that came from padding are dropped.
    Why this is the gradient: im2col is linear, x -> A x with A a 0/1 matrix;
    the backward of a linear map is its transpose, dx = A^T dcols, and A^T
    scatters-and-adds exactly as above.

    How: accumulate into a zero padded image with the same kh*kw strided slices
    as im2col (``+=`` instead of ``=``), then crop the padding away. Contributions
    reach each pixel in (i, j) order, the same order as the Numba/CuPy versions,
    so all three give bit-identical sums.
    """
    xp = get_array_module(cols)
    N, C, H, W, kh, kw, sh, sw, pt, pb, pl, pr, dh, dw, Ho, Wo = _geometry(
        x_shape, kernel_size, stride, padding, dilation
    )
    cols6 = cols.reshape(C, kh, kw, N, Ho, Wo)
    img_pad = xp.zeros((N, C, H + pt + pb, W + pl + pr), dtype=cols.dtype)
    for i in range(kh):
        h0 = i * dh
        for j in range(kw):
            w0 = j * dw
            img_pad[:, :, h0 : h0 + sh * (Ho - 1) + 1 : sh, w0 : w0 + sw * (Wo - 1) + 1 : sw] += cols6[
                :, i, j
            ].transpose(1, 0, 2, 3)
    img = _check_out(out, (N, C, H, W), cols.dtype, xp)
    img[...] = img_pad[:, :, pt : pt + H, pl : pl + W]
    return img


# --------------------------------------------------------------------------- Numba
@njit(parallel=True, cache=True)
def _im2col_kernel(x, kh, kw, sh, sw, pt, pl, dh, dw, pad_value, cols):
    # cols is (C*kh*kw, N, Ho, Wo). One task = one (row, image) pair, i.e. one
    # contiguous run of Ho*Wo values: enough tasks to balance the cores even
    # when C*kh*kw is small (pooling uses C=1), and no two tasks share memory.
    N, C, H, W = x.shape
    K, _, Ho, Wo = cols.shape
    x_flat = x.reshape(-1)
    cols_flat = cols.reshape(-1)
    for task in prange(K * N):
        r = task // N
        n = task - r * N
        c = r // (kh * kw)
        i = (r // kw) % kh
        j = r % kw
        # Which output rows/columns read real pixels rather than padding:
        # computed once per task so the copy loop has no bounds tests.
        ho_lo, ho_hi = valid_range(pt - i * dh, sh, H, Ho)
        wo_lo, wo_hi = valid_range(pl - j * dw, sw, W, Wo)
        w_first = wo_lo * sw - pl + j * dw  # input column read by output column wo_lo
        plane = task * Ho * Wo  # start of cols[r, n]
        fill_flat(cols_flat, plane, ho_lo * Wo, pad_value)
        fill_flat(cols_flat, plane + ho_hi * Wo, (Ho - ho_hi) * Wo, pad_value)
        for ho in range(ho_lo, ho_hi):
            out = plane + ho * Wo  # start of cols[r, n, ho, :]
            h = ho * sh - pt + i * dh
            fill_flat(cols_flat, out, wo_lo, pad_value)
            gather_flat(cols_flat, out + wo_lo, x_flat, ((n * C + c) * H + h) * W + w_first, wo_hi - wo_lo, sw)
            fill_flat(cols_flat, out + wo_hi, Wo - wo_hi, pad_value)


@njit(parallel=True, cache=True)
def _im2col_shifted_planes_kernel(x, kh, kw, pt, pl, dh, dw, pad_value, cols):
    # Stride 1 with the width kept (Wo == W: 3x3 'same' layers). Output (ho, wo)
    # of kernel tap (i, j) reads input (ho + i*dh - pt, wo + j*dw - pl): one flat
    # offset for the whole plane. So a row of cols is, per image, one long copy
    # of the valid rows, after which the columns that read a neighbouring row
    # get the padding. One task = one row of cols (all images): the per-task
    # set-up is paid K times, not K*N times: faster than the general kernel on
    # narrow planes (benchmarks/bench_im2col.py).
    N, C, H, W = x.shape
    K, _, Ho, _ = cols.shape
    x_flat = x.reshape(-1)
    cols_flat = cols.reshape(-1)
    for r in prange(K):
        c = r // (kh * kw)
        i = (r // kw) % kh
        j = r % kw
        ho_lo, ho_hi = valid_range(pt - i * dh, 1, H, Ho)
        wo_lo, wo_hi = valid_range(pl - j * dw, 1, W, W)
        shift = (i * dh - pt) * W + (j * dw - pl)
        first, last = ho_lo * W, ho_hi * W
        q0, q1 = max(first, -shift), min(last, H * W - shift)
        for n in range(N):
            out = (r * N + n) * Ho * W
            fill_flat(cols_flat, out, first, pad_value)
            if q1 > q0:
                gather_flat(cols_flat, out + q0, x_flat, (n * C + c) * H * W + q0 + shift, q1 - q0, 1)
            fill_flat(cols_flat, out + last, Ho * W - last, pad_value)
            for ho in range(ho_lo, ho_hi):
                fill_flat(cols_flat, out + ho * W, wo_lo, pad_value)
                fill_flat(cols_flat, out + ho * W + wo_hi, W - wo_hi, pad_value)


# Up to this many elements of cols, im2col and col2im take the per-element kernels below:
# the row kernels' set-up per row costs more than a tiny row moves (batch 1, planes of
# 2x2 to 8x8: 2.5x faster, benchmarks/bench_alone.py's ResNet-20 batch 1 row).
SMALL_SIZE = 1 << 14


@njit(cache=True, nogil=True)
def _im2col_small_kernel(x, kh, kw, sh, sw, pt, pl, dh, dw, pad_value, cols):
    # One element at a time, bounds tested per element: no per-row set-up.
    N, C, H, W = x.shape
    _, _, Ho, Wo = cols.shape
    for c in range(C):
        for i in range(kh):
            for j in range(kw):
                r = (c * kh + i) * kw + j
                for n in range(N):
                    for ho in range(Ho):
                        h = ho * sh - pt + i * dh
                        for wo in range(Wo):
                            w = wo * sw - pl + j * dw
                            if 0 <= h < H and 0 <= w < W:
                                cols[r, n, ho, wo] = x[n, c, h, w]
                            else:
                                cols[r, n, ho, wo] = pad_value


@njit(cache=True, nogil=True)
def _col2im_small_kernel(cols, kh, kw, sh, sw, pt, pl, dh, dw, img):
    # One element at a time; each pixel gets its contributions in (i, j) order, as in
    # the other versions (bit-identical sums).
    N, C, H, W = img.shape
    _, _, Ho, Wo = cols.shape
    img[...] = 0
    for n in range(N):
        for c in range(C):
            for i in range(kh):
                for j in range(kw):
                    r = (c * kh + i) * kw + j
                    for ho in range(Ho):
                        h = ho * sh - pt + i * dh
                        if 0 <= h < H:
                            for wo in range(Wo):
                                w = wo * sw - pl + j * dw
                                if 0 <= w < W:
                                    img[n, c, h, w] += cols[r, n, ho, wo]


@njit(parallel=True, cache=True)
def _col2im_kernel(cols, kh, kw, sh, sw, pt, pl, dh, dw, img):
    # One task = one (n, c) plane of the output image: every write of a task
    # lands in its own plane, so the scatter-add needs no atomics or locks.
    N, C, H, W = img.shape
    K, _, Ho, Wo = cols.shape
    cols_flat = cols.reshape(-1)
    img_flat = img.reshape(-1)
    for task in prange(N * C):
        n = task // C
        c = task - n * C
        plane = task * H * W  # start of img[n, c]
        fill_flat(img_flat, plane, H * W, 0)
        for i in range(kh):
            ho_lo, ho_hi = valid_range(pt - i * dh, sh, H, Ho)
            for j in range(kw):
                r = (c * kh + i) * kw + j
                wo_lo, wo_hi = valid_range(pl - j * dw, sw, W, Wo)
                w_first = wo_lo * sw - pl + j * dw
                for ho in range(ho_lo, ho_hi):
                    h = ho * sh - pt + i * dh
                    scatter_add_flat(img_flat, plane + h * W + w_first, sw,
                                 cols_flat, ((r * N + n) * Ho + ho) * Wo + wo_lo, wo_hi - wo_lo)


def im2col_numba(x, kernel_size, stride=1, padding=0, dilation=1, pad_value=0.0, out=None):
    """Same result as :func:`im2col_reference`, built by a parallel Numba loop.

    ``out``: optional C-contiguous array with ``C*kh*kw*N*Ho*Wo`` elements and
    the dtype of ``x`` (e.g. from ``workspace``); it is overwritten and a 2-D
    view of it is returned. ``x`` is made C-contiguous first (a copy only for
    views such as transposes), which also keeps Numba at one compiled version
    per dtype.
    """
    N, C, H, W, kh, kw, sh, sw, pt, pb, pl, pr, dh, dw, Ho, Wo = _geometry(
        x.shape, kernel_size, stride, padding, dilation
    )
    x = np.ascontiguousarray(x)
    cols = _check_out(out, (C * kh * kw, N, Ho, Wo), x.dtype, np)
    pad_value = x.dtype.type(pad_value)
    if cols.size <= SMALL_SIZE:
        _im2col_small_kernel(x, kh, kw, sh, sw, pt, pl, dh, dw, pad_value, cols)
    elif sh == sw == 1 and Wo == W and (W < 32 or runs_serial(cols.size)):
        # whole planes win serially at every width, in parallel only on narrow rows
        # (benchmarks/bench_im2col.py)
        for_this_thread(_im2col_shifted_planes_kernel, cols.size)(x, kh, kw, pt, pl, dh, dw, pad_value, cols)
    else:
        for_this_thread(_im2col_kernel, cols.size)(x, kh, kw, sh, sw, pt, pl, dh, dw, pad_value, cols)
    return cols.reshape(C * kh * kw, N * Ho * Wo)


def col2im_numba(cols, x_shape, kernel_size, stride=1, padding=0, dilation=1, out=None):
    """Same result as :func:`col2im_reference` (bit-identical), by a parallel Numba loop.

    ``out``: optional C-contiguous array of ``x_shape`` and the dtype of ``cols``;
    it is overwritten (not accumulated into).
    """
    N, C, H, W, kh, kw, sh, sw, pt, pb, pl, pr, dh, dw, Ho, Wo = _geometry(
        x_shape, kernel_size, stride, padding, dilation
    )
    cols4 = np.ascontiguousarray(cols).reshape(C * kh * kw, N, Ho, Wo)
    img = _check_out(out, (N, C, H, W), cols.dtype, np)
    kernel = _col2im_small_kernel if cols4.size <= SMALL_SIZE else for_this_thread(_col2im_kernel, cols4.size)
    kernel(cols4, kh, kw, sh, sw, pt, pl, dh, dw, img)
    return img


# --------------------------------------------------------------------------- CuPy
# The CUDA sources below are compiled on first use. Nothing here imports CuPy
# at module import time, so CPU-only machines never need it.
_IM2COL_CUDA = r"""
    // One thread per element of cols, seen as (C, kh, kw, N, Ho, Wo) in C order.
    index_t t = i;
    const int wo = t % Wo; t /= Wo;
    const int ho = t % Ho; t /= Ho;
    const int n  = t % N;  t /= N;
    const int kj = t % kw; t /= kw;
    const int ki = t % kh; t /= kh;
    const int c  = (int)t;
    const int h = ho * sh - pt + ki * dh;
    const int w = wo * sw - pl + kj * dw;
    if (h >= 0 && h < H && w >= 0 && w < W) {
        col = x[(((long long)n * C + c) * H + h) * W + w];
    } else {
        col = pad_value;
    }
"""

_COL2IM_CUDA = r"""
    // One thread per image pixel; it *gathers* its contributions instead of
    // scattering them, so no atomics are needed and the sum runs in the same
    // (ki, kj) order as the CPU versions (bit-identical results).
    index_t t = i;
    const int w = t % W; t /= W;
    const int h = t % H; t /= H;
    const int c = t % C; t /= C;
    const int n = (int)t;
    T acc = 0;
    for (int ki = 0; ki < kh; ++ki) {
        const int th = h + pt - ki * dh;          // = ho * sh for a contributing ho
        if (th < 0 || th % sh != 0) continue;
        const int ho = th / sh;
        if (ho >= Ho) continue;
        for (int kj = 0; kj < kw; ++kj) {
            const int tw = w + pl - kj * dw;
            if (tw < 0 || tw % sw != 0) continue;
            const int wo = tw / sw;
            if (wo >= Wo) continue;
            const long long r = ((long long)c * kh + ki) * kw + kj;
            acc += cols[((r * N + n) * Ho + ho) * Wo + wo];
        }
    }
    img = acc;
"""

_GEOM_PARAMS = (
    "int32 N, int32 C, int32 H, int32 W, int32 Ho, int32 Wo, int32 kh, int32 kw, "
    "int32 sh, int32 sw, int32 pt, int32 pl, int32 dh, int32 dw"
)
_cuda_kernels = {}


def _cuda_kernel(name, size):
    """The kernel ``name`` for arrays of ``size`` elements. Each comes in two builds:
    with 32-bit index arithmetic when the size allows it (a GPU divides 32-bit
    integers several times faster than 64-bit ones, and the index unpacking above is
    six divisions per element), and with 64-bit indices for the rest."""
    if not _cuda_kernels:
        import cupy

        for bits, index_type in ((32, "unsigned int"), (64, "unsigned long long")):
            preamble = f"typedef {index_type} index_t;"
            _cuda_kernels["im2col", bits] = cupy.ElementwiseKernel(
                "raw T x, " + _GEOM_PARAMS + ", T pad_value", "T col", _IM2COL_CUDA,
                f"tinydl_im2col_{bits}", preamble=preamble)
            _cuda_kernels["col2im", bits] = cupy.ElementwiseKernel(
                "raw T cols, " + _GEOM_PARAMS, "T img", _COL2IM_CUDA, f"tinydl_col2im_{bits}",
                preamble=preamble)
    return _cuda_kernels[name, 32 if size < 2**31 else 64]


def im2col_cupy(x, kernel_size, stride=1, padding=0, dilation=1, pad_value=0.0, out=None):
    """Same result as :func:`im2col_reference` for a CuPy array (one CUDA thread per output)."""
    import cupy

    N, C, H, W, kh, kw, sh, sw, pt, pb, pl, pr, dh, dw, Ho, Wo = _geometry(
        x.shape, kernel_size, stride, padding, dilation
    )
    x_flat = cupy.ascontiguousarray(x).reshape(-1)  # raw indexing below assumes C order
    cols = _check_out(out, (C * kh * kw, N * Ho * Wo), x.dtype, cupy)
    _cuda_kernel("im2col", cols.size)(
        x_flat, N, C, H, W, Ho, Wo, kh, kw, sh, sw, pt, pl, dh, dw, x.dtype.type(pad_value), cols
    )
    return cols


def col2im_cupy(cols, x_shape, kernel_size, stride=1, padding=0, dilation=1, out=None):
    """Same result as :func:`col2im_reference` for a CuPy array (one CUDA thread per pixel)."""
    import cupy

    N, C, H, W, kh, kw, sh, sw, pt, pb, pl, pr, dh, dw, Ho, Wo = _geometry(
        x_shape, kernel_size, stride, padding, dilation
    )
    if cols.size != C * kh * kw * N * Ho * Wo:
        raise ValueError(f"cols has {cols.size} elements, expected {(C * kh * kw, N * Ho * Wo)}")
    cols_flat = cupy.ascontiguousarray(cols).reshape(-1)
    img = _check_out(out, (N, C, H, W), cols.dtype, cupy)
    _cuda_kernel("col2im", img.size)(cols_flat, N, C, H, W, Ho, Wo, kh, kw, sh, sw, pt, pl, dh, dw, img)
    return img


# --------------------------------------------------------------------------- dispatch
def im2col(x, kernel_size, stride=1, padding=0, dilation=1, pad_value=0.0, out=None):
    """Unfold ``x`` (N, C, H, W) into ``cols`` (C*kh*kw, N*Ho*Wo); see the module docstring.

    Picks the implementation: CuPy array -> :func:`im2col_cupy`; NumPy array ->
    :func:`im2col_numba`, or :func:`im2col_reference` when ``TINYDL_NO_NUMBA=1``
    or the dtype is not float32/float64.

    ``kernel_size``, ``stride``, ``dilation``: int or (h, w). ``padding``: int,
    (ph, pw) or (top, bottom, left, right). ``pad_value``: value of padded cells.
    ``out``: optional C-contiguous buffer of the right size and dtype, overwritten
    and returned as a 2-D view (pair it with ``workspace`` to reuse memory).
    """
    if is_cupy_array(x):
        return im2col_cupy(x, kernel_size, stride, padding, dilation, pad_value, out)
    if use_numba(x.dtype):
        return im2col_numba(x, kernel_size, stride, padding, dilation, pad_value, out)
    return im2col_reference(x, kernel_size, stride, padding, dilation, pad_value, out)


def col2im(cols, x_shape, kernel_size, stride=1, padding=0, dilation=1, out=None):
    """Fold ``cols`` (C*kh*kw, N*Ho*Wo) back into an (N, C, H, W) image by summing
    overlaps: the adjoint of :func:`im2col`. Dispatches like :func:`im2col`.

    ``out``: optional C-contiguous array of ``x_shape``; overwritten, not accumulated into.
    """
    if is_cupy_array(cols):
        return col2im_cupy(cols, x_shape, kernel_size, stride, padding, dilation, out)
    if use_numba(cols.dtype):
        return col2im_numba(cols, x_shape, kernel_size, stride, padding, dilation, out)
    return col2im_reference(cols, x_shape, kernel_size, stride, padding, dilation, out)
