r"""Winograd convolution F(2x2, 3x3) on the CPU: 3x3 stride-1 conv2d with 2.25x fewer multiplies.

Why
---
A 3x3 convolution with many channels spends its time in the GEMM (im2col's
K = 9*C rows): 9 multiply-adds per output pixel, input channel and output
channel. Winograd's minimal filtering algorithm computes a 2x2 block of outputs
from a 4x4 block of inputs with 16 products instead of 2*2*9 = 36: the rest
becomes additions, done once per channel (not once per channel pair).

The one-dimensional idea, F(2, 3)
---------------------------------
Two outputs of a 3-tap filter g over four inputs d,
    y0 = d0 g0 + d1 g1 + d2 g2,     y1 = d1 g0 + d2 g1 + d3 g2,
take six products. With
    m0 = (d0 - d2) g0                 m1 = (d1 + d2)(g0 + g1 + g2)/2
    m2 = (d2 - d1)(g0 - g1 + g2)/2    m3 = (d1 - d3) g2
they are y0 = m0 + m1 + m2 and y1 = m1 - m2 - m3: four products (the g factors
depend on the filter only and are computed once). In matrices,
    y = A^T [(G g) * (B^T d)]          (* multiplies entry by entry)
with
           [1  0 -1  0]          [ 1    0    0 ]
    B^T =  [0  1  1  0]     G =  [1/2  1/2  1/2]     A^T = [1  1  1  0]
           [0 -1  1  0]          [1/2 -1/2  1/2]           [0  1 -1 -1]
           [0  1  0 -1]          [ 0    0    1 ]

Nesting it along both axes gives F(2x2, 3x3): for a 4x4 input tile d and a
3x3 filter g, the 2x2 output tile is
    Y = A^T [ (G g G^T) * (B^T d B) ] A.

The convolution
---------------
Cover the padded input with 4x4 tiles that step by 2 (neighbours overlap by two
rows or columns); tile t gives outputs (2*ti .. 2*ti+1, 2*tj .. 2*tj+1). An odd
output size leaves a last tile whose second row or column is computed on zeros
and dropped. Number the 16 positions of a transformed tile xi = 4*a + b; then,
for input channels c, output channels k and tiles t (T = N * tiles per image):

    U[xi, k, c] = (G g[k, c] G^T)[a, b]                     (16, K, C)  weights, once
    V[xi, c, t] = (B^T d[c, t] B)[a, b]                     (16, C, T)  input tiles
    M[xi]       = U[xi] @ V[xi]                             16 GEMMs (K, C) @ (C, T)
    y[k, t]     = A^T M[:, k, t] A         (M[:, k, t] as 4x4)          output tiles

The sum over input channels sits inside the GEMMs, which is why the transforms
cost so little: the input transform is done once per (c, t), the output one once
per (k, t), and all C*K pairs go through the 16 GEMMs, 16 multiply-adds per 4
outputs where direct convolution needs 36.

Backward: the exact adjoint of each linear step, in reverse order (every matrix
transposed), for the upstream gradient gy:

    Mg[:, k, t] = A gy[k, t] A^T           (gy's 2x2 tile, 0 past the edge)   (16, K, T)
    dU[xi]      = Mg[xi] @ V[xi]^T         (summed over the tiles)            (16, K, C)
    dL/dW[k, c] = G^T dU[:, k, c] G        (dU as 4x4)
    dV[xi]      = U[xi]^T @ Mg[xi]                                            (16, C, T)
    dL/dx       = the sum over tiles of B dV[:, c, t] B^T, each added onto the 4x4
                  patch of the padded input its tile was read from (the tiles
                  overlap, so a pixel gets up to four terms), the padding cropped.

One can check the adjointness: <Y, gy> = <M, Mg> = sum_xi <U V, Mg> = <U, Mg V^T>
= <V, U^T Mg>, and <G g G^T, dU> = <g, G^T dU G>, <B^T d B, dV> = <d, B dV B^T>.
The weight transform is a 16x9 matrix on the flattened filter, kron(G, G), so
dL/dW is kron(G, G)^T on the flattened dU.

Rounding: the transforms multiply by 1/2 and add up to nine terms of either sign,
so float32 results differ from direct convolution a little more than another
summation order would (the tests bound it against PyTorch).

Layout and threads: V, M, Mg and dV hold a chunk of images at a time in reused
buffers (``workspace``); the backward recomputes V rather than keeping it (4x
the input) from the forward. The transforms are Numba loops over channels
(parallel, or their serial twin inside a chunk worker), each tile row's 16
values written to 16 contiguous streams; the GEMMs are NumPy's batched matmul
(OpenBLAS). Where it is used: the 'winograd' route of kernels/conv.py.
"""
import numpy as np

from ._dispatch import for_this_thread, njit, prange, workspace
from ._memory import fill_flat, gather_flat
from ._threads import worker_key

__all__ = ["B_T", "G", "A_T", "transform_weight", "weight_grad", "tile_counts",
           "forward_images", "backward_images"]

B_T = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=np.float64)
G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], dtype=np.float64)
A_T = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=np.float64)


def tile_counts(out_hw):
    """Tiles per column and per row: ceil(Ho / 2), ceil(Wo / 2)."""
    return -(-out_hw[0] // 2), -(-out_hw[1] // 2)


# ---------------------------------------------------------------- the weights
def transform_weight(weight):
    """U = G g G^T for every (k, c), as (16, K, C): kron(G, G) @ the flattened filters."""
    k, c = weight.shape[:2]
    gg = np.kron(G, G).astype(weight.dtype)                          # (16, 9)
    return np.ascontiguousarray((gg @ weight.reshape(k * c, 9).T).reshape(16, k, c))


def weight_grad(du):
    """dL/dW = G^T dU G for every (k, c): kron(G, G)^T @ dU, as (K, C, 3, 3)."""
    _, k, c = du.shape
    gg = np.kron(G, G).astype(du.dtype)
    return np.ascontiguousarray((gg.T @ du.reshape(16, k * c)).T.reshape(k, c, 3, 3))


# ---------------------------------------------------------------- the four tile transforms
# Each runs over one chunk of images; tile t = (n * th + ti) * tw + tj, and point xi of
# channel c is at xi * (C * T) + c * T + t in the flat (16, C, T) buffer.

@njit(inline="always")
def _b_t(d0, d1, d2, d3):
    """B^T (d0, d1, d2, d3)"""
    return d0 - d2, d1 + d2, d2 - d1, d1 - d3


@njit(inline="always")
def _b(e0, e1, e2, e3):
    """B (e0, e1, e2, e3): the adjoint of _b_t"""
    return e0, e1 - e2 + e3, e1 + e2 - e0, -e3


@njit(inline="always")
def _a_t(m0, m1, m2, m3):
    """A^T (m0, m1, m2, m3)"""
    return m0 + m1 + m2, m1 - m2 - m3


@njit(inline="always")
def _a(g0, g1):
    """A (g0, g1): the adjoint of _a_t"""
    return g0, g0 + g1, g0 - g1, -g1


@njit(inline="always")
def _store4(out, at, step, v):
    out[at], out[at + step], out[at + 2 * step], out[at + 3 * step] = v


@njit(inline="always")
def _add4(out, at, v):
    out[at] += v[0]
    out[at + 1] += v[1]
    out[at + 2] += v[2]
    out[at + 3] += v[3]


@njit(parallel=True, cache=True)
def _input_tiles_kernel(x, pt, pl, th, tw, v):
    # x (n, C, H, W) contiguous -> v (16, C, T): V = B^T d B for every 4x4 tile d of the
    # input padded by pt, pl on the top/left and with zeros up to (2*th + 2, 2*tw + 2).
    n_img, C, H, W = x.shape
    hp, wp = 2 * th + 2, 2 * tw + 2
    T = n_img * th * tw
    xf, vf = x.reshape(-1), v.reshape(-1)
    step = np.uint64(C * T)
    for c in prange(C):
        plane = np.zeros(hp * wp, dtype=x.dtype)                  # the borders stay 0: the padding
        for n in range(n_img):
            for r in range(H):
                gather_flat(plane, (r + pt) * wp + pl, xf, ((n * C + c) * H + r) * W, W, 1)
            for ti in range(th):
                out = np.uint64(c * T + (n * th + ti) * tw)
                p0 = np.uint64(2 * ti * wp)
                p1, p2, p3 = p0 + wp, p0 + 2 * wp, p0 + 3 * wp
                for j in range(np.uint64(tw)):
                    q = 2 * j
                    # B^T on the tile's four columns (c0 = column 0 of B^T d, ...) ...
                    c0 = _b_t(plane[p0 + q], plane[p1 + q], plane[p2 + q], plane[p3 + q])
                    c1 = _b_t(plane[p0 + q + 1], plane[p1 + q + 1], plane[p2 + q + 1], plane[p3 + q + 1])
                    c2 = _b_t(plane[p0 + q + 2], plane[p1 + q + 2], plane[p2 + q + 2], plane[p3 + q + 2])
                    c3 = _b_t(plane[p0 + q + 3], plane[p1 + q + 3], plane[p2 + q + 3], plane[p3 + q + 3])
                    # ... then on its rows: row a of B^T d B is B^T (c0[a], .., c3[a]); point (a, b) is 4*a + b
                    o = out + j
                    _store4(vf, o, step, _b_t(c0[0], c1[0], c2[0], c3[0]))
                    _store4(vf, o + 4 * step, step, _b_t(c0[1], c1[1], c2[1], c3[1]))
                    _store4(vf, o + 8 * step, step, _b_t(c0[2], c1[2], c2[2], c3[2]))
                    _store4(vf, o + 12 * step, step, _b_t(c0[3], c1[3], c2[3], c3[3]))


@njit(parallel=True, cache=True)
def _output_tiles_kernel(m, bias, th, tw, y):
    # m (16, K, T) -> y (n, K, Ho, Wo): y tile = A^T m A + bias[k]; a partial last tile's
    # second row/column is dropped.
    n_img, K, Ho, Wo = y.shape
    T = n_img * th * tw
    mf, yf = m.reshape(-1), y.reshape(-1)
    step = np.uint64(K * T)
    for k in prange(K):
        rows = np.empty(4 * tw, dtype=y.dtype)                    # the two output rows of a tile row
        b = bias[k]
        for n in range(n_img):
            for ti in range(th):
                at = np.uint64(k * T + (n * th + ti) * tw)
                for j in range(np.uint64(tw)):
                    p = at + j
                    # A^T on the columns of the 4x4 m: columns (c0..c3) of two
                    c0 = _a_t(mf[p], mf[p + 4 * step], mf[p + 8 * step], mf[p + 12 * step])
                    c1 = _a_t(mf[p + step], mf[p + 5 * step], mf[p + 9 * step], mf[p + 13 * step])
                    c2 = _a_t(mf[p + 2 * step], mf[p + 6 * step], mf[p + 10 * step], mf[p + 14 * step])
                    c3 = _a_t(mf[p + 3 * step], mf[p + 7 * step], mf[p + 11 * step], mf[p + 15 * step])
                    # ... then A on the rows
                    y00, y01 = _a_t(c0[0], c1[0], c2[0], c3[0])
                    y10, y11 = _a_t(c0[1], c1[1], c2[1], c3[1])
                    rows[2 * j], rows[2 * j + 1] = y00 + b, y01 + b
                    rows[2 * tw + 2 * j], rows[2 * tw + 2 * j + 1] = y10 + b, y11 + b
                for a in range(min(2, Ho - 2 * ti)):
                    gather_flat(yf, ((n * K + k) * Ho + 2 * ti + a) * Wo, rows, a * 2 * tw, Wo, 1)


@njit(parallel=True, cache=True)
def _grad_tiles_kernel(gy, th, tw, mg):
    # gy (n, K, Ho, Wo) contiguous -> mg (16, K, T): Mg = A g A^T for every 2x2 tile g of
    # gy (zeros past its edge).
    n_img, K, Ho, Wo = gy.shape
    wp = 2 * tw
    T = n_img * th * tw
    gf, mf = gy.reshape(-1), mg.reshape(-1)
    step = np.uint64(K * T)
    for k in prange(K):
        plane = np.zeros(2 * th * wp, dtype=gy.dtype)              # past Ho, Wo it stays 0
        for n in range(n_img):
            for r in range(Ho):
                gather_flat(plane, r * wp, gf, ((n * K + k) * Ho + r) * Wo, Wo, 1)
            for ti in range(th):
                out = np.uint64(k * T + (n * th + ti) * tw)
                p0 = np.uint64(2 * ti * wp)
                p1 = p0 + wp
                for j in range(np.uint64(tw)):
                    q = 2 * j
                    c0 = _a(plane[p0 + q], plane[p1 + q])          # A on the columns ...
                    c1 = _a(plane[p0 + q + 1], plane[p1 + q + 1])
                    o = out + j                                    # ... then A^T on the rows
                    _store4(mf, o, step, _a(c0[0], c1[0]))
                    _store4(mf, o + 4 * step, step, _a(c0[1], c1[1]))
                    _store4(mf, o + 8 * step, step, _a(c0[2], c1[2]))
                    _store4(mf, o + 12 * step, step, _a(c0[3], c1[3]))


@njit(parallel=True, cache=True)
def _input_grad_kernel(dv, pt, pl, th, tw, gx):
    # dv (16, C, T) -> gx (n, C, H, W): every tile's B e B^T added onto its 4x4 patch of
    # the padded plane, whose interior is then dL/dx.
    n_img, C, H, W = gx.shape
    hp, wp = 2 * th + 2, 2 * tw + 2
    T = n_img * th * tw
    df, gf = dv.reshape(-1), gx.reshape(-1)
    step = np.uint64(C * T)
    for c in prange(C):
        plane = np.empty(hp * wp, dtype=gx.dtype)
        for n in range(n_img):
            fill_flat(plane, 0, hp * wp, 0)
            for ti in range(th):
                at = np.uint64(c * T + (n * th + ti) * tw)
                p0 = np.uint64(2 * ti * wp)
                p1, p2, p3 = p0 + wp, p0 + 2 * wp, p0 + 3 * wp
                # Neighbouring tiles share two columns: even tiles first, then odd ones, so
                # no two iterations of a loop add onto the same pixel (it vectorises).
                for parity in range(2):
                    for jj in range(np.uint64((tw - parity + 1) // 2)):
                        j = 2 * jj + parity
                        e = at + j
                        # B on the columns of the 4x4 e ...
                        c0 = _b(df[e], df[e + 4 * step], df[e + 8 * step], df[e + 12 * step])
                        c1 = _b(df[e + step], df[e + 5 * step], df[e + 9 * step], df[e + 13 * step])
                        c2 = _b(df[e + 2 * step], df[e + 6 * step], df[e + 10 * step], df[e + 14 * step])
                        c3 = _b(df[e + 3 * step], df[e + 7 * step], df[e + 11 * step], df[e + 15 * step])
                        q = 2 * j
                        _add4(plane, p0 + q, _b(c0[0], c1[0], c2[0], c3[0]))     # ... then B^T on the rows
                        _add4(plane, p1 + q, _b(c0[1], c1[1], c2[1], c3[1]))
                        _add4(plane, p2 + q, _b(c0[2], c1[2], c2[2], c3[2]))
                        _add4(plane, p3 + q, _b(c0[3], c1[3], c2[3], c3[3]))
            for r in range(H):
                gather_flat(gf, ((n * C + c) * H + r) * W, plane, (r + pt) * wp + pl, W, 1)


# ---------------------------------------------------------------- a chunk of images
def _transformed_input(x, padding, tiles, worker):
    """V (16, C, T) of the images x (n, C, H, W) into this worker's buffer."""
    th, tw = tiles
    v = workspace((16, x.shape[1], x.shape[0] * th * tw), x.dtype, worker_key("winograd.v", worker))
    for_this_thread(_input_tiles_kernel, v.size)(x, padding[0], padding[2], th, tw, v)
    return v


def forward_images(x, u, bias, padding, y, worker=0):
    """y = conv2d(x, W) + bias for the images x (n, C, H, W), contiguous, into y
    (n, K, Ho, Wo); ``u`` = transform_weight(W); ``bias`` (K,) (zeros for none)."""
    tiles = tile_counts(y.shape[2:])
    v = _transformed_input(x, padding, tiles, worker)
    m = np.matmul(u, v, out=workspace((16, u.shape[1], v.shape[2]), x.dtype, worker_key("winograd.m", worker)))
    for_this_thread(_output_tiles_kernel, m.size)(m, bias, tiles[0], tiles[1], y)
    return y


def backward_images(x, u, gy, padding, gx, need_weight, worker=0):
    """For the images x (n, C, H, W) and their upstream gradient gy (n, K, Ho, Wo), both
    contiguous: dL/dx into ``gx`` (n, C, H, W) unless it is None, and their share of
    dU (16, K, C) if ``need_weight`` (else None)."""
    th, tw = tiles = tile_counts(gy.shape[2:])
    mg = workspace((16, gy.shape[1], gy.shape[0] * th * tw), gy.dtype, worker_key("winograd.mg", worker))
    for_this_thread(_grad_tiles_kernel, mg.size)(gy, th, tw, mg)
    du = None
    if need_weight:
        du = np.matmul(mg, _transformed_input(x, padding, tiles, worker).transpose(0, 2, 1))
    if gx is not None:
        dv = np.matmul(u.transpose(0, 2, 1), mg,
                       out=workspace((16, u.shape[2], mg.shape[2]), gy.dtype, worker_key("winograd.dv", worker)))
        for_this_thread(_input_grad_kernel, dv.size)(dv, padding[0], padding[2], th, tw, gx)
    return du
