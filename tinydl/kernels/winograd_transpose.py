r"""Winograd F(3x3, 2x2) for a transposed convolution whose kernel is twice its stride
(DCGAN's and FCN's 4x4 stride 2, 16x16 stride 8...): 16 multiplies where there were 36.

One convolution in place of s*s phases
--------------------------------------
Along one axis, with kernel k = 2s, stride s and padding p (kernels/subpixel.py's
notation: tap i of input pixel h lands on output h*s - p + i), output phase v (the
outputs o = q*s + v, 0 <= v < s) receives exactly two taps, i0 = (v + p) mod s and
i0 + s, from two neighbouring input pixels:

    y[q*s + v] = W[i0 + s] x[q + a_v]  +  W[i0] x[q + a_v + 1],    a_v = (v + p) // s - 1

a_v takes at most two values, A = p // s - 1 and A + 1; write d_v = a_v - A (0 or 1). On
the input shifted by A (x_A[j] = x[j + A], zero outside x), every phase is then the same
two-tap correlation, read d_v further along:

    Z[v][j] = g_v[0] x_A[j] + g_v[1] x_A[j + 1],    g_v = (W[i0 + s], W[i0]),    y[q*s + v] = Z[v][q + d_v]

In 2-D that is one stride-1 convolution of x_A with a 2x2 kernel and s_h*s_w*C_out output
channels (v_h, v_w, o), whose outputs are dealt back onto the phases of y. Z is at most
one row and one column longer than the longest phase (d_v = 1 shifts a phase by one).

F(3, 2)
-------
Three outputs of a 2-tap correlation over four inputs d, y_j = d_j g0 + d_{j+1} g1 for
j = 0, 1, 2, take four products instead of six:

    m0 = (d0 - d2) g0              m1 = (d1 + d2)(g0 + g1)/2
    m2 = (d2 - d1)(g0 - g1)/2      m3 = (d1 - d3)(-g1)
    y0 = m0 + m1 + m2,   y1 = m1 - m2,   y2 = m1 + m2 + m3

that is y = A^T [(G g) * (B^T d)] with

           [1  0 -1  0]          [ 1    0  ]
    B^T =  [0  1  1  0]     G =  [1/2  1/2 ]     A^T = [1  1  1  0]
           [0 -1  1  0]          [1/2 -1/2 ]           [0  1 -1  0]
           [0  1  0 -1]          [ 0   -1  ]           [0  1  1  1]

B^T is the one of F(2, 3) (kernels/winograd.py), whose transpose this is. Nested along
both axes, a 4x4 tile d of x_A gives a 3x3 tile of Z with 16 products:
Y = A^T [(G g G^T) * (B^T d B)] A. As in kernels/winograd.py (whose docstring derives
the GEMM form), the sum over input channels goes into 16 GEMMs, and the backward is the
adjoint of every linear step in reverse order:

    U[xi]  = G g G^T                       (16, K', C)   K' = s_h*s_w*C_out
    V[xi]  = B^T d B                       (16, C, T)    T = tiles (3x3 of Z) in the chunk
    M[xi]  = U[xi] @ V[xi]                 -> Z tile = A^T M A -> its pixels of y, + bias
    Mg     = A gZ A^T                      gZ: the 3x3 of gy that tile's Z pixels went to
    dU[xi] = Mg[xi] @ V[xi]^T              -> dL/dW taps = G^T dU G, dealt back onto W
    dV[xi] = U[xi]^T @ Mg[xi]              -> B dV B^T added onto the tile's 4x4 of x_A

Tiles step by 3 and overlap by one row or column. A Z pixel past the end of its phase
(q outside 0..Q_v - 1) is computed and dropped; its gradient is zero. Why F(3, 2) and
not F(2, 2) (9 products per 2x2 outputs, no fractions): on a 16x16 input Z is 17 wide,
which 2-wide tiles cover with 18 columns and 3-wide ones with 18 too, so F(3, 2) makes
21% fewer products (16 per 9 outputs against 9 per 4); on the 64->32 4x4 s2 N32 layer
of benchmarks/bench_alone.py the forward and backward took 9.7 ms against F(2, 2)'s 10.4.
Layout, buffers and threads are kernels/winograd.py's, whose kernels also make V and
scatter dV back (its tiles are 2 apart, these 3): tile buffers of a chunk of images,
Numba loops for the transforms, NumPy's batched matmul (OpenBLAS). Used by the
'winograd' route of ConvTranspose2d (kernels/conv.py), on the CPU.
"""
import functools

import numpy as np

from ._dispatch import for_this_thread, njit, prange
from ._threads import worker_key
from .winograd import (B_T, _input_grad_kernel, _input_tiles_kernel, _planes, input_tile_grad, tile_buffer,
                       weight_tile_grad)

__all__ = ["B_T", "G", "A_T", "Geometry", "phase_geometry", "transform_weight", "weight_grad", "forward_images",
           "backward_images"]

# The matrices of the docstring (the kernels apply them as the inline functions below).
G = np.array([[1, 0], [0.5, 0.5], [0.5, -0.5], [0, -1]], dtype=np.float64)
A_T = np.array([[1, 1, 1, 0], [0, 1, -1, 0], [0, 1, 1, 1]], dtype=np.float64)


class Geometry:
    """Where the phases sit, along both axes, for a kernel 2s, stride s, top/left padding p
    and output size ``out_hw``: the tap pairs, d_v, the input shift -A and the tiles."""

    def __init__(self, stride, top_left, out_hw):
        taps, shifts, lengths = [], [], []
        for s, p, size in zip(stride, top_left, out_hw):
            a = [(v + p) // s - 1 for v in range(s)]
            low = p // s - 1                                                   # A
            taps.append([((v + p) % s + s, (v + p) % s) for v in range(s)])   # W's (g0, g1) of each phase
            shifts.append(np.array([a_v - low for a_v in a], dtype=np.int64))     # d_v
            phase_lengths = [-(-(size - v) // s) for v in range(s)]                 # Q_v
            lengths.append(max(q + d for q, d in zip(phase_lengths, shifts[-1])))  # of Z
        self.shift_h, self.shift_w = shifts
        self.taps_h, self.taps_w = (np.array(t, dtype=np.int64) for t in taps)        # (s, 2)
        self.phases = stride[0] * stride[1]
        self.top, self.left = (1 - p // s for s, p in zip(stride, top_left))     # x[h] sits at x_A[h - A]
        self.tiles = tuple(-(-n // 3) for n in lengths)


@functools.lru_cache(maxsize=64)       # a layer asks for the same geometry every step
def phase_geometry(stride, top_left, out_hw):
    """The Geometry of these (hashable) arguments, built once."""
    return Geometry(stride, top_left, out_hw)


# ---------------------------------------------------------------- the 1-D transforms
# B^T and B are F(2, 3)'s: x's tiles and their adjoint are kernels/winograd.py's kernels,
# run with the tiles 3 apart (_input_tiles_kernel, _input_grad_kernel).

@njit(inline="always")
def _a_t(m0, m1, m2, m3):
    """A^T (m0, m1, m2, m3)"""
    return m0 + m1 + m2, m1 - m2, m1 + m2 + m3


@njit(inline="always")
def _a(z0, z1, z2):
    """A (z0, z1, z2): the adjoint of _a_t"""
    return z0, z0 + z1 + z2, z0 - z1 + z2, z2


@njit(inline="always")
def _g(g0, g1):
    """G (g0, g1)"""
    return g0, (g0 + g1) * 0.5, (g0 - g1) * 0.5, -g1


@njit(inline="always")
def _g_t(e0, e1, e2, e3):
    """G^T (e0, e1, e2, e3): the adjoint of _g"""
    return e0 + (e1 + e2) * 0.5, (e1 - e2) * 0.5 - e3


# ---------------------------------------------------------------- the tile transforms
@njit(inline="always")
def _phase(size, v, shifts):
    """Phase v of an axis of ``size`` pixels, stride len(shifts): its length Q_v and d_v."""
    s = len(shifts)
    return (size - v + s - 1) // s, shifts[v]


@njit(parallel=True, cache=True)
def _output_tiles_kernel(m, bias, th, tw, shift_h, shift_w, y):
    # m (16, K'*T), K' = (v_h, v_w, o) -> y (n, C, Ho, Wo): every Z tile A^T M A (+ bias[o]);
    # Z pixel j of phase v is y's pixel (j - d_v)*s + v, where that is inside the phase.
    n_img, C, Ho, Wo = y.shape
    sh, sw = len(shift_h), len(shift_w)
    T = n_img * th * tw
    for task in prange(n_img * C):
        n = task // C
        o = task - n * C
        plane = y[n, o]
        b = bias[o]
        for vh in range(sh):
            qh_len, dh = _phase(Ho, vh, shift_h)
            for vw in range(sw):
                qw_len, dw = _phase(Wo, vw, shift_w)
                t0 = ((vh * sw + vw) * C + o) * T + n * th * tw          # the phase's first tile
                for ti in range(th):
                    for tj in range(tw):
                        t = np.uint64(t0 + ti * tw + tj)
                        # A^T on the columns of the 4x4 m (c0 = column 0 of A^T m, ...) ...
                        c0 = _a_t(m[0, t], m[4, t], m[8, t], m[12, t])
                        c1 = _a_t(m[1, t], m[5, t], m[9, t], m[13, t])
                        c2 = _a_t(m[2, t], m[6, t], m[10, t], m[14, t])
                        c3 = _a_t(m[3, t], m[7, t], m[11, t], m[15, t])
                        for a in range(3):                             # ... then on its rows
                            qh = 3 * ti + a - dh
                            if 0 <= qh < qh_len:
                                z = _a_t(c0[a], c1[a], c2[a], c3[a])
                                for e in range(3):
                                    qw = 3 * tj + e - dw
                                    if 0 <= qw < qw_len:
                                        plane[qh * sh + vh, qw * sw + vw] = z[e] + b


@njit(inline="always")
def _phase_pixel(plane, qh, qw, qh_len, qw_len, sh, sw, vh, vw):
    """Pixel q = (qh, qw) of phase (vh, vw) of ``plane``; 0 outside the phase."""
    if 0 <= qh < qh_len and 0 <= qw < qw_len:
        return plane[qh * sh + vh, qw * sw + vw]
    return plane.dtype.type(0)


@njit(inline="always")
def _phase_row(plane, qh, qw, qh_len, qw_len, sh, sw, vh, vw):
    """Pixels qw, qw + 1, qw + 2 of row qh of phase (vh, vw) (0 outside the phase)."""
    return (_phase_pixel(plane, qh, qw, qh_len, qw_len, sh, sw, vh, vw),
            _phase_pixel(plane, qh, qw + 1, qh_len, qw_len, sh, sw, vh, vw),
            _phase_pixel(plane, qh, qw + 2, qh_len, qw_len, sh, sw, vh, vw))


@njit(parallel=True, cache=True)
def _grad_tiles_kernel(gy, th, tw, shift_h, shift_w, mg):
    # gy (n, C, Ho, Wo) -> mg (16, K'*T): Mg = A gZ A^T for every tile, gZ the 3x3 of gy its
    # Z pixels went to (0 for a pixel outside its phase).
    n_img, C, Ho, Wo = gy.shape
    sh, sw = len(shift_h), len(shift_w)
    T = n_img * th * tw
    for task in prange(n_img * C):
        n = task // C
        o = task - n * C
        plane = gy[n, o]
        for vh in range(sh):
            qh_len, dh = _phase(Ho, vh, shift_h)
            for vw in range(sw):
                qw_len, dw = _phase(Wo, vw, shift_w)
                t0 = ((vh * sw + vw) * C + o) * T + n * th * tw          # the phase's first tile
                for ti in range(th):
                    qh = 3 * ti - dh
                    for tj in range(tw):
                        qw = 3 * tj - dw
                        r0 = _phase_row(plane, qh, qw, qh_len, qw_len, sh, sw, vh, vw)
                        r1 = _phase_row(plane, qh + 1, qw, qh_len, qw_len, sh, sw, vh, vw)
                        r2 = _phase_row(plane, qh + 2, qw, qh_len, qw_len, sh, sw, vh, vw)
                        c0 = _a(r0[0], r1[0], r2[0])                   # A on the columns ...
                        c1 = _a(r0[1], r1[1], r2[1])
                        c2 = _a(r0[2], r1[2], r2[2])
                        t = np.uint64(t0 + ti * tw + tj)               # ... then on the rows
                        mg[0, t], mg[1, t], mg[2, t], mg[3, t] = _a(c0[0], c1[0], c2[0])
                        mg[4, t], mg[5, t], mg[6, t], mg[7, t] = _a(c0[1], c1[1], c2[1])
                        mg[8, t], mg[9, t], mg[10, t], mg[11, t] = _a(c0[2], c1[2], c2[2])
                        mg[12, t], mg[13, t], mg[14, t], mg[15, t] = _a(c0[3], c1[3], c2[3])


# ---------------------------------------------------------------- weights
@njit(inline="always")
def _kernel_taps(k, c_out, taps_h, taps_w):
    """Channel k' = (v_h, v_w, o) of Z: o, and the rows i0, i1 and columns j0, j1 of W
    that make its 2x2 kernel g (g[a, b] = W[..., (i0, i1)[a], (j0, j1)[b]])."""
    sw = len(taps_w)
    vh, vw, o = k // (sw * c_out), k // c_out % sw, k % c_out
    return o, taps_h[vh, 0], taps_h[vh, 1], taps_w[vw, 0], taps_w[vw, 1]


@njit(parallel=True, cache=True)
def _weight_tiles_kernel(w, taps_h, taps_w, u):
    # w (C_out, kh, kw, C_in) -> u (16, K'*C_in): U = G g G^T for the 2x2 kernel g of every
    # phase (v_h, v_w), output channel o and input channel c; K' = (v_h, v_w, o).
    c_out, c_in = w.shape[0], w.shape[3]
    for k in prange(len(taps_h) * len(taps_w) * c_out):
        o, i0, i1, j0, j1 = _kernel_taps(k, c_out, taps_h, taps_w)
        for c in range(c_in):
            c0 = _g(w[o, i0, j0, c], w[o, i1, j0, c])               # G on the columns ...
            c1 = _g(w[o, i0, j1, c], w[o, i1, j1, c])
            t = k * c_in + c                                        # ... then on the rows
            u[0, t], u[1, t], u[2, t], u[3, t] = _g(c0[0], c1[0])
            u[4, t], u[5, t], u[6, t], u[7, t] = _g(c0[1], c1[1])
            u[8, t], u[9, t], u[10, t], u[11, t] = _g(c0[2], c1[2])
            u[12, t], u[13, t], u[14, t], u[15, t] = _g(c0[3], c1[3])


@njit(parallel=True, cache=True)
def _weight_grad_kernel(du_parts, taps_h, taps_w, gw):
    # du_parts: the workers' shares of dU, each (16, K'*C_in); their sum -> gw (C_out, kh, kw,
    # C_in): G^T dU G for every (k', c), each of its four numbers onto the tap of W it came
    # from (every tap is in exactly one phase). Summed here, as kernels/winograd.py's.
    c_out, c_in = gw.shape[0], gw.shape[3]
    for k in prange(len(taps_h) * len(taps_w) * c_out):
        o, i0, i1, j0, j1 = _kernel_taps(k, c_out, taps_h, taps_w)
        d = np.empty(16, dtype=gw.dtype)
        for c in range(c_in):
            t = k * c_in + c
            for i in range(16):
                d[i] = du_parts[0][i, t]
            for p in range(1, len(du_parts)):
                for i in range(16):
                    d[i] += du_parts[p][i, t]
            c0 = _g_t(d[0], d[4], d[8], d[12])                      # G^T on the columns ...
            c1 = _g_t(d[1], d[5], d[9], d[13])
            c2 = _g_t(d[2], d[6], d[10], d[14])
            c3 = _g_t(d[3], d[7], d[11], d[15])
            gw[o, i0, j0, c], gw[o, i0, j1, c] = _g_t(c0[0], c1[0], c2[0], c3[0])   # ... then on the rows
            gw[o, i1, j0, c], gw[o, i1, j1, c] = _g_t(c0[1], c1[1], c2[1], c3[1])


def transform_weight(weight, geometry):
    """U (16, K', C_in) = G g G^T for the 2x2 kernel g of every phase and (o, c), in a reused
    buffer; ``weight`` (C_in, C_out, 2s_h, 2s_w), as ConvTranspose2d's."""
    c_in, c_out = weight.shape[:2]
    u = tile_buffer(geometry.phases * c_out, c_in, weight.dtype, "winograd_t.u")
    w = np.ascontiguousarray(weight.transpose(1, 2, 3, 0))           # the kernel reads along C_in
    for_this_thread(_weight_tiles_kernel, u.size)(w, geometry.taps_h, geometry.taps_w, _planes(u))
    return u


def weight_grad(du_parts, geometry, weight_shape):
    """dL/dW (C_in, C_out, 2s_h, 2s_w) = G^T dU G, dealt back to the taps; dU the sum of
    ``du_parts`` (each (16, K', C_in), at least one; tile buffers, read 16 planes at once)."""
    c_in, c_out, kh, kw = weight_shape
    parts = tuple(_planes(du) for du in du_parts)
    gw = np.empty((c_out, kh, kw, c_in), dtype=parts[0].dtype)       # the kernel writes along C_in
    for_this_thread(_weight_grad_kernel, parts[0].size * len(parts))(parts, geometry.taps_h, geometry.taps_w, gw)
    return np.ascontiguousarray(gw.transpose(3, 0, 1, 2))


# ---------------------------------------------------------------- a chunk of images
def _transformed_input(x, geometry, worker):
    """V (16, C, T) of the images x (n, C, H, W) into this worker's buffer."""
    th, tw = geometry.tiles
    v = tile_buffer(x.shape[1], x.shape[0] * th * tw, x.dtype, worker_key("winograd_t.v", worker))
    for_this_thread(_input_tiles_kernel, v.size)(x, geometry.top, geometry.left, th, tw, _planes(v), 3)
    return v


def forward_images(x, u, bias, geometry, y, worker=0):
    """y = conv_transpose2d(x, W) + bias for the images x (n, C_in, H, W), contiguous, into
    y (n, C_out, Ho, Wo); ``u`` = transform_weight(W); ``bias`` (C_out,) (zeros for none)."""
    v = _transformed_input(x, geometry, worker)
    m = np.matmul(u, v, out=tile_buffer(u.shape[1], v.shape[2], x.dtype, worker_key("winograd_t.m", worker)))
    for_this_thread(_output_tiles_kernel, m.size)(_planes(m), bias, *geometry.tiles, geometry.shift_h,
                                                  geometry.shift_w, y)
    return y


def backward_images(x, u, gy, geometry, gx, du=None, add=False, worker=0):
    """For the images x (n, C_in, H, W) and their upstream gradient gy (n, C_out, Ho, Wo),
    both contiguous: dL/dx into ``gx`` unless it is None, and their share of dU (16, K', C_in)
    into ``du`` (added to it with ``add``) unless it is None."""
    th, tw = geometry.tiles
    mg = tile_buffer(u.shape[1], gy.shape[0] * th * tw, gy.dtype, worker_key("winograd_t.mg", worker))
    for_this_thread(_grad_tiles_kernel, mg.size)(gy, th, tw, geometry.shift_h, geometry.shift_w, _planes(mg))
    if du is not None:
        weight_tile_grad(mg, _transformed_input(x, geometry, worker), du, add)
    if gx is not None:
        dv = input_tile_grad(u, mg, worker_key("winograd_t.dv", worker))
        for_this_thread(_input_grad_kernel, dv.size)(_planes(dv), geometry.top, geometry.left, th, tw, gx, 3)
