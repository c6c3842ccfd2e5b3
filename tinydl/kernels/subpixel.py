r"""col2im and im2col of a strided transposed convolution, one output phase at a time.

The sub-pixel view
------------------
Along one axis, a transposed convolution (kernel k, stride s, padding p, dilation 1)
adds tap i of input pixel h onto output pixel o = h*s - p + i. Write

    i - p = u*s + v        with v = (i - p) mod s  and  u = floor((i - p) / s)

so that o = (h + u)*s + v. Tap i therefore writes only the outputs with o mod s = v,
the output *phase* v, at position q = h + u of that phase. With ``cols`` the
GEMM's columns (cols[i, h]: what tap i of pixel h adds; kernels/im2col.py's layout),

    y[q*s + v] = sum over the taps i of phase v of cols[i, q - u(i)]

Each phase is a sum of about k/s *shifted* copies of rows of cols: contiguous reads
and adds, where col2im scatters every row with stride s into y (about (k/s)^2 strided
read-modify-writes per output pixel, none of them vectorised). The phases are
independent: every output pixel is in exactly one phase, and every tap writes exactly
one. In 2-D the phases are the s_h*s_w interleaved sub-images y[:, :, v_h::s_h, v_w::s_w].

The adjoint, im2col of gy (the backward's columns), reads the same way round:

    gcols[i, h] = gy[h*s - p + i] = gy_v[h + u(i)]      with gy_v[q] = gy[q*s + v]

so gy is split into its phases once (one strided pass), and every row of gcols is a
contiguous, shifted copy of one phase.

Wide rows
---------
In 2-D a shift by u_w along the width runs off the ends of the rows. The fold
therefore works on *wide rows*: the GEMM multiplies x with each row padded by zeros to
a pitch Wp >= W, so cols' extra columns are zeros too, and a read that runs off a row
lands in a zero column (of its own row, or of the one before). A whole block of rows
is then one flat loop of shifted adds, as in kernels/direct_conv.py. ``wide_pitch``
picks the narrowest Wp that works: Wp >= W + max(u) for the reads past the right end,
Wp >= Q - min(u) (Q = the longest phase) for the reads before the left end. The phases
of gy get the same pitch, with their own zero columns, so the unfold's rows need no
bounds tests either; its gcols keep the plain layout.

Both sum and copy in the order of col2im / im2col (the taps of a pixel in (i, j)
order, from zero): the results are bit-identical to kernels/im2col.py's. Used by the
'subpixel' route of ConvTranspose2d (kernels/conv.py), on the CPU.
"""
import functools

import numpy as np

from ._dispatch import for_this_thread, njit, prange
from ._memory import fill_flat, gather_flat, scatter_add_flat, scatter_flat

__all__ = ["wide_pitch", "wide_rows", "fold_phases", "unfold_phases"]


@functools.lru_cache(maxsize=256)       # a layer asks for the same pitch every step
def wide_pitch(kernel, stride, padding, size, out_size):
    """Wp along one axis: the narrowest row pitch whose zero columns catch every shifted
    read off a row of ``size`` pixels (see the module docstring)."""
    shifts = [(i - padding) // stride for i in range(kernel)]
    longest_phase = -(-out_size // stride)
    return max(size + max(max(shifts), 0), longest_phase - min(min(shifts), 0))


@njit(parallel=True, cache=True)
def _wide_rows_kernel(x, out):
    # x (N, C, H, W) -> out (C, N, H, Wp): every row of x, then zeros up to the pitch.
    # (NumPy's strided copy took twice as long in SubpixelTranspose.forward: its inner loop
    # is one row of W pixels.)
    n_img, c, h, w = x.shape
    wp = out.shape[3]
    x_flat, out_flat = x.reshape(-1), out.reshape(-1)
    for task in prange(c * n_img):
        channel = task // n_img
        n = task - channel * n_img
        for r in range(h):
            row = ((channel * n_img + n) * h + r) * wp
            gather_flat(out_flat, row, x_flat, ((n * c + channel) * h + r) * w, w, 1)
            fill_flat(out_flat, row + w, wp - w, 0)


@njit(inline="always")
def _phase_length(size, v, s):
    """How many of the outputs 0..size-1 are in phase v (o mod s = v)."""
    return (size - v + s - 1) // s


@njit(parallel=True, cache=True)
def _fold_kernel(cols, h, wp, kh, kw, sh, sw, pt, pl, bias, y):
    # cols: wp zeros, then (C*kh*kw, N, h, wp) on wide rows, then wp zeros; y (N, C, Ho, Wo).
    # One task = one (n, c) plane of y: its phases are summed in acc (s_h*s_w planes of
    # wide rows, starting from the channel's bias), then interleaved into y.
    n_img, c, ho, wo = y.shape
    y_flat = y.reshape(-1)
    qh_max = -(-ho // sh)
    phase_size = qh_max * wp
    for task in prange(n_img * c):
        n = task // c
        o = task - n * c
        acc = np.empty(sh * sw * phase_size, y.dtype)
        for vh in range(sh):
            qh = _phase_length(ho, vh, sh)
            for vw in range(sw):
                phase = (vh * sw + vw) * phase_size
                fill_flat(acc, phase, qh * wp, bias[o])
                for i in range((vh + pt) % sh, kh, sh):                   # the taps of this phase
                    uh = (i - pt) // sh
                    h_lo, h_hi = max(0, -uh), min(h, qh - uh)             # rows inside x and the phase
                    if h_hi <= h_lo:
                        continue
                    for j in range((vw + pl) % sw, kw, sw):
                        uw = (j - pl) // sw
                        row = ((((o * kh + i) * kw + j) * n_img + n) * h + h_lo) * wp
                        scatter_add_flat(acc, phase + (h_lo + uh) * wp, 1, cols, wp + row - uw, (h_hi - h_lo) * wp)
        for r in range(ho):
            for vw in range(sw):
                scatter_flat(y_flat, ((n * c + o) * ho + r) * wo + vw, sw,
                             acc, (((r % sh) * sw + vw) * qh_max + r // sh) * wp, _phase_length(wo, vw, sw))


@njit(parallel=True, cache=True)
def _unfold_kernel(gy, kh, kw, sh, sw, pt, pl, wp, cols):
    # gy (N, C, Ho, Wo); cols (C*kh*kw, N, h, w), im2col's layout. One task = one (n, c)
    # plane of gy: split into its phases on wide rows, then every row of cols copied.
    n_img, c, ho, wo = gy.shape
    h, w = cols.shape[2], cols.shape[3]
    gy_flat = gy.reshape(-1)
    cols_flat = cols.reshape(-1)
    qh_max = -(-ho // sh)
    phase_size = (qh_max + 1) * wp         # a zero row first: where a read before column 0 of row 0 lands
    for task in prange(n_img * c):
        n = task // c
        o = task - n * c
        phases = np.zeros(sh * sw * phase_size, gy.dtype)
        for r in range(ho):
            for vw in range(sw):
                gather_flat(phases, (((r % sh) * sw + vw) * (qh_max + 1) + r // sh + 1) * wp,
                            gy_flat, ((n * c + o) * ho + r) * wo + vw, _phase_length(wo, vw, sw), sw)
        for i in range(kh):
            uh, vh = (i - pt) // sh, (i - pt) % sh
            h_lo = min(max(0, -uh), h)
            h_hi = max(min(h, _phase_length(ho, vh, sh) - uh), h_lo)
            for j in range(kw):
                uw, vw = (j - pl) // sw, (j - pl) % sw
                row = (((o * kh + i) * kw + j) * n_img + n) * h * w
                fill_flat(cols_flat, row, h_lo * w, 0)                    # rows that read outside gy
                fill_flat(cols_flat, row + h_hi * w, (h - h_hi) * w, 0)
                src = (vh * sw + vw) * phase_size + (uh + 1) * wp + uw
                for r in range(h_lo, h_hi):
                    gather_flat(cols_flat, row + r * w, phases, src + r * wp, w, 1)


def wide_rows(x, out):
    """``x`` (N, C, H, W) as the GEMM's right-hand side on wide rows: ``out`` (C, N, H, Wp),
    every row followed by Wp - W zeros (see the module docstring), returned as (C, N*H*Wp)."""
    x = np.ascontiguousarray(x)
    for_this_thread(_wide_rows_kernel, out.size)(x, out)
    return out.reshape(out.shape[0], -1)


def fold_phases(cols, x_hw, kernel, stride, top_left, y, bias=None):
    """col2im by output phases: ``y`` (N, C, Ho, Wo) = the sum of the columns onto the
    pixels they belong to (+ ``bias`` (C,), where the sums start), overwritten. ``cols``
    is a flat buffer: Wp zeros, the columns (C*kh*kw, N, H, Wp) on wide rows (zeros in the
    Wp - W extra columns), Wp zeros; Wp = ``wide_pitch`` along the width, (H, W) = ``x_hw``;
    ``top_left`` = (pt, pl)."""
    (kh, kw), (sh, sw), (pt, pl) = kernel, stride, top_left
    wp = wide_pitch(kw, sw, pl, x_hw[1], y.shape[3])
    bias = np.zeros(y.shape[1], y.dtype) if bias is None else bias
    for_this_thread(_fold_kernel, cols.size)(cols, x_hw[0], wp, kh, kw, sh, sw, pt, pl, bias, y)
    return y


def unfold_phases(gy, x_hw, kernel, stride, top_left, out):
    """im2col of ``gy`` (N, C, Ho, Wo) by phases, into ``out`` (C*kh*kw, N*H*W): the
    columns of the convolution whose output size is ``x_hw`` (kernels/im2col.py's layout,
    bit-identical to its im2col); ``top_left`` = (pt, pl)."""
    (kh, kw), (sh, sw), (pt, pl) = kernel, stride, top_left
    gy = np.ascontiguousarray(gy)
    wp = wide_pitch(kw, sw, pl, x_hw[1], gy.shape[3])
    cols = out.reshape((kh * kw * gy.shape[1], gy.shape[0]) + tuple(x_hw))
    for_this_thread(_unfold_kernel, cols.size)(gy, kh, kw, sh, sw, pt, pl, wp, cols)
    return out
