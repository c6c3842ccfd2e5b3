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
= <V, U^T Mg>, and <G g G^T, dU> = <g, G^T dU G>, <B^T d B, dV> = <d, B dV B^T>
(tests/test_winograd.py does, numerically). Written on the flattened filter, the
weight transform is the 16x9 matrix kron(G, G), and dL/dW is its transpose on dU.

Rounding: the transforms halve and add up to nine terms of either sign; in float32
the results stayed as close to the exact ones as PyTorch's (64 channels, 56x56).

Layout and threads: V, M, Mg and dV hold a chunk of images at a time in reused
buffers (``workspace``); the backward recomputes V rather than keeping it (4x
the input) from the forward. The transforms are Numba loops over channels
(parallel, or their serial twin inside a chunk worker): the input's and dL/dx's handle
one tile per iteration, the output's and gy's a vector of tiles (kernels/simd.py); a
tile's 16 points go to (or come from) the 16 rows of a buffer, which ``tile_buffer``
starts at addresses that differ modulo 4 KiB. The GEMMs are
NumPy's batched matmul (OpenBLAS). Where it is used: the 'winograd' route of
kernels/conv.py, which deals the chunks to the cores (kernels/_threads.py).
"""
import typing

import numpy as np

from ._dispatch import for_this_thread, njit, prange, workspace
from ._memory import fill_flat, gather_flat
from .simd import deinterleave, interleave, lanes, load, splat, store
from ._threads import worker_key

__all__ = ["B_T", "G", "A_T", "tile_counts", "tile_buffer", "Transforms", "F23", "transform_weight", "weight_grad",
           "forward_images", "backward_images"]

B_T = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=np.float64)
G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], dtype=np.float64)
A_T = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=np.float64)


def tile_counts(out_hw):
    """Tiles per column and per row: ceil(Ho / 2), ceil(Wo / 2)."""
    return -(-out_hw[0] // 2), -(-out_hw[1] // 2)


# ---------------------------------------------------------------- the four tile transforms
# Each runs over one chunk of images, with tile t = (n * th + ti) * tw + tj, on the
# (16, C*T) view of a tile buffer: row xi = 4*a + b holds point (a, b) of every
# (channel, tile). A tile's 16 points are read or written one per row, so the rows
# must not start a multiple of 4 KiB apart (``tile_buffer``). Indices are unsigned:
# a signed index makes Numba check for negative ones at every access (20% slower here).

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
def _tile_row(channel, n, ti, T, th, tw, wp, step=2):
    """Tile row ti of image n in a channel: where its tiles start in a (16, C*T) buffer
    and the first four of its rows in a padded plane of width wp (tiles ``step`` apart),
    unsigned."""
    t0 = np.uint64(channel * T + (n * th + ti) * tw)
    p0, row = np.uint64(step * ti * wp), np.uint64(wp)
    return t0, p0, p0 + row, p0 + row + row, p0 + row + row + row


@njit(inline="always")
def _columns(j, step=2):
    """The four plane columns step*j .. step*j + 3 of tile column j, unsigned."""
    one = np.uint64(1)
    q0 = j * np.uint64(step)
    return q0, q0 + one, q0 + one + one, q0 + one + one + one


@njit(inline="always")
def _g(h0, h1, h2):
    """G (h0, h1, h2)"""
    return h0, (h0 + h1 + h2) * 0.5, (h0 - h1 + h2) * 0.5, h2


@njit(inline="always")
def _g_t(e0, e1, e2, e3):
    """G^T (e0, e1, e2, e3): the adjoint of _g"""
    return e0 + (e1 + e2) * 0.5, (e1 - e2) * 0.5, (e1 + e2) * 0.5 + e3


@njit(parallel=True, cache=True)
def _weight_tiles_kernel(w, u):
    # w (K, C, 3, 3) -> u (16, K*C): U = G g G^T for every filter g.
    K, C = w.shape[0], w.shape[1]
    for k in prange(K):
        for c in range(C):
            g = w[k, c]
            c0 = _g(g[0, 0], g[1, 0], g[2, 0])                     # G on the columns ...
            c1 = _g(g[0, 1], g[1, 1], g[2, 1])
            c2 = _g(g[0, 2], g[1, 2], g[2, 2])
            t = np.uint64(k * C + c)                               # ... then on the rows
            u[0, t], u[1, t], u[2, t], u[3, t] = _g(c0[0], c1[0], c2[0])
            u[4, t], u[5, t], u[6, t], u[7, t] = _g(c0[1], c1[1], c2[1])
            u[8, t], u[9, t], u[10, t], u[11, t] = _g(c0[2], c1[2], c2[2])
            u[12, t], u[13, t], u[14, t], u[15, t] = _g(c0[3], c1[3], c2[3])


@njit(parallel=True, cache=True)
def _weight_grad_kernel(du_parts, gw):
    # du_parts: the workers' shares of dU, each (16, K, C); their sum -> gw (K, C, 3, 3):
    # dL/dW = G^T dU G for every (k, c). Summed here, in parallel, rather than in a pass of
    # its own (ResNet-50 b8, two threads: that pass cost 19 ms a step, benchmarks/bench_alone.py).
    # Numba compiles it once per number of parts (workers), each cached on disk.
    K, C = gw.shape[0], gw.shape[1]
    for k in prange(K):
        d = np.empty(16, dtype=gw.dtype)
        for c in range(C):
            for i in range(16):
                d[i] = du_parts[0][i, k, c]
            for p in range(1, len(du_parts)):
                for i in range(16):
                    d[i] += du_parts[p][i, k, c]
            c0 = _g_t(d[0], d[4], d[8], d[12])                                 # G^T on the columns ...
            c1 = _g_t(d[1], d[5], d[9], d[13])
            c2 = _g_t(d[2], d[6], d[10], d[14])
            c3 = _g_t(d[3], d[7], d[11], d[15])
            for i in range(3):                                                 # ... then on the rows
                gw[k, c, i, 0], gw[k, c, i, 1], gw[k, c, i, 2] = _g_t(c0[i], c1[i], c2[i], c3[i])


@njit(parallel=True, cache=True)
def _input_tiles_kernel(x, pt, pl, th, tw, v, step):
    # x (n, C, H, W) contiguous -> v (16, C*T): V = B^T d B for every 4x4 tile d of the
    # input padded by pt, pl on the top/left and with zeros up to the tiles' reach
    # (step*th + 4 - step rows); tiles ``step`` apart: 2 here (2x2 outputs each), 3 in
    # kernels/winograd_transpose.py's F(3x3, 2x2). Rows and columns past it are dropped.
    n_img, C, H, W = x.shape
    hp, wp = step * th + 4 - step, step * tw + 4 - step
    rows, cols = min(H, hp - pt), min(W, wp - pl)
    T = n_img * th * tw
    xf = x.reshape(-1)
    for c in prange(C):
        plane = np.zeros(hp * wp, dtype=x.dtype)                  # the borders stay 0: the padding
        for n in range(n_img):
            for r in range(rows):
                gather_flat(plane, (r + pt) * wp + pl, xf, ((n * C + c) * H + r) * W, cols, 1)
            for ti in range(th):
                t0, p0, p1, p2, p3 = _tile_row(c, n, ti, T, th, tw, wp, step)
                for j in range(np.uint64(tw)):
                    q0, q1, q2, q3 = _columns(j, step)
                    # B^T on the tile's four columns (c0 = column 0 of B^T d, ...) ...
                    c0 = _b_t(plane[p0 + q0], plane[p1 + q0], plane[p2 + q0], plane[p3 + q0])
                    c1 = _b_t(plane[p0 + q1], plane[p1 + q1], plane[p2 + q1], plane[p3 + q1])
                    c2 = _b_t(plane[p0 + q2], plane[p1 + q2], plane[p2 + q2], plane[p3 + q2])
                    c3 = _b_t(plane[p0 + q3], plane[p1 + q3], plane[p2 + q3], plane[p3 + q3])
                    # ... then on its rows: row a of B^T d B is B^T (c0[a], .., c3[a])
                    t = t0 + j
                    v[0, t], v[1, t], v[2, t], v[3, t] = _b_t(c0[0], c1[0], c2[0], c3[0])
                    v[4, t], v[5, t], v[6, t], v[7, t] = _b_t(c0[1], c1[1], c2[1], c3[1])
                    v[8, t], v[9, t], v[10, t], v[11, t] = _b_t(c0[2], c1[2], c2[2], c3[2])
                    v[12, t], v[13, t], v[14, t], v[15, t] = _b_t(c0[3], c1[3], c2[3], c3[3])


@njit(parallel=True, cache=True)
def _output_tiles_kernel(m, bias, th, tw, y):
    # m (16, K*T) -> y (n, K, Ho, Wo): y tile = A^T m A + bias[k]; a partial last tile's
    # second row/column is dropped. A vector of tiles at a time (kernels/simd.py): their
    # top output pairs, interleaved, run tile after tile in ``top``, where tile row (n, ti)
    # is output row 2ti; ``bottom`` likewise. (One tile at a time, scalar: 3x the time on
    # ResNet-20's 32->32 16x16 chunks, "AMD EPYC".) The loads read up to a vector past the
    # channel's tiles (tile_buffer's slack after the last one); what they give is dropped.
    n_img, K, Ho, Wo = y.shape
    T = n_img * th * tw
    yf = y.reshape(-1)
    n = lanes(yf)
    for k in prange(K):
        top = np.empty(2 * (T + n), dtype=y.dtype)
        bottom = np.empty(2 * (T + n), dtype=y.dtype)
        b = splat(bias[k])
        for t in range(0, T, n):
            s = k * T + t
            # A^T on the columns of the 4x4 m (c0 = column 0 of A^T m, ...) ...
            c0 = _a_t(load(m[0], s), load(m[4], s), load(m[8], s), load(m[12], s))
            c1 = _a_t(load(m[1], s), load(m[5], s), load(m[9], s), load(m[13], s))
            c2 = _a_t(load(m[2], s), load(m[6], s), load(m[10], s), load(m[14], s))
            c3 = _a_t(load(m[3], s), load(m[7], s), load(m[11], s), load(m[15], s))
            # ... then A on its rows
            y00, y01 = _a_t(c0[0], c1[0], c2[0], c3[0])
            y10, y11 = _a_t(c0[1], c1[1], c2[1], c3[1])
            first, second = interleave(y00 + b, y01 + b)
            store(top, 2 * t, first)
            store(top, 2 * t + n, second)
            first, second = interleave(y10 + b, y11 + b)
            store(bottom, 2 * t, first)
            store(bottom, 2 * t + n, second)
        for image in range(n_img):
            for ti in range(th):
                run, row = 2 * (image * th + ti) * tw, ((image * K + k) * Ho + 2 * ti) * Wo
                gather_flat(yf, row, top, run, Wo, 1)
                if 2 * ti + 1 < Ho:
                    gather_flat(yf, row + Wo, bottom, run, Wo, 1)


@njit(inline="always")
def _grad_tile_vectors(top, bottom, t, n):
    """Mg = A g A^T of the tiles t .. t + n - 1 (n = a vector of them), from their output
    pairs run tile after tile (``top``: each tile's upper two values, ``bottom``: lower),
    as its four rows of four vectors."""
    g00, g01 = deinterleave(load(top, 2 * t), load(top, 2 * t + n))
    g10, g11 = deinterleave(load(bottom, 2 * t), load(bottom, 2 * t + n))
    c0, c1 = _a(g00, g10), _a(g01, g11)                   # A on the columns, then on the rows
    return _a(c0[0], c1[0]), _a(c0[1], c1[1]), _a(c0[2], c1[2]), _a(c0[3], c1[3])


@njit(inline="always")
def _store_row(planes, a, t, row):
    """planes[4a + b][t ...] = row[b] for b < 4: row a of the tiles' 4x4 Mg, a vector a point."""
    store(planes[4 * a], t, row[0])
    store(planes[4 * a + 1], t, row[1])
    store(planes[4 * a + 2], t, row[2])
    store(planes[4 * a + 3], t, row[3])


@njit(cache=True)
def _grad_tiles_of_channel(gy, k, th, tw, mg):
    """_grad_tiles_kernel's work on channel k. (A function of its own: inlined in the
    parallel loop, its tuples of vectors upset Numba's array analysis.)"""
    n_img, K, Ho, Wo = gy.shape
    T = n_img * th * tw
    gf = gy.reshape(-1)
    n = lanes(gf)
    top = np.zeros(2 * (T + n), dtype=gy.dtype)                   # past Ho, Wo they stay 0
    bottom = np.zeros(2 * (T + n), dtype=gy.dtype)
    for image in range(n_img):
        for ti in range(th):
            run, row = 2 * (image * th + ti) * tw, ((image * K + k) * Ho + 2 * ti) * Wo
            gather_flat(top, run, gf, row, Wo, 1)
            if 2 * ti + 1 < Ho:
                gather_flat(bottom, run, gf, row + Wo, Wo, 1)
    whole = T - T % n
    for t in range(0, whole, n):
        r0, r1, r2, r3 = _grad_tile_vectors(top, bottom, t, n)
        _store_row(mg, 0, k * T + t, r0)
        _store_row(mg, 1, k * T + t, r1)
        _store_row(mg, 2, k * T + t, r2)
        _store_row(mg, 3, k * T + t, r3)
    if whole < T:                       # the last, partial vector: stored whole, it would
        rest = np.empty((16, n), dtype=gy.dtype)       # write into the next channel's tiles
        r0, r1, r2, r3 = _grad_tile_vectors(top, bottom, whole, n)
        _store_row(rest, 0, 0, r0)
        _store_row(rest, 1, 0, r1)
        _store_row(rest, 2, 0, r2)
        _store_row(rest, 3, 0, r3)
        for xi in range(16):
            for j in range(T - whole):
                mg[xi, k * T + whole + j] = rest[xi, j]


@njit(parallel=True, cache=True)
def _grad_tiles_kernel(gy, th, tw, mg):
    # gy (n, K, Ho, Wo) contiguous -> mg (16, K*T): Mg = A g A^T for every 2x2 tile g of
    # gy (zeros past its edge). The adjoint of _output_tiles_kernel, a vector of tiles at
    # a time the same way, from gy's rows laid out as its top and bottom runs.
    for k in prange(gy.shape[1]):
        _grad_tiles_of_channel(gy, k, th, tw, mg)


@njit(inline="always")
def _add_row(plane, p, q0, q1, q2, q3, u):
    """plane[p + q_s] += u[s]: one row of a tile's B e B^T onto the padded plane."""
    plane[p + q0] += u[0]
    plane[p + q1] += u[1]
    plane[p + q2] += u[2]
    plane[p + q3] += u[3]


@njit(parallel=True, cache=True)
def _input_grad_kernel(dv, pt, pl, th, tw, gx, step):
    # dv (16, C*T) -> gx (n, C, H, W): every tile's B e B^T added onto its 4x4 patch of
    # the padded plane (tiles ``step`` apart), whose interior is then dL/dx (zero where
    # the plane does not reach: no tile read x there).
    n_img, C, H, W = gx.shape
    hp, wp = step * th + 4 - step, step * tw + 4 - step
    rows, cols = min(H, hp - pt), min(W, wp - pl)
    T = n_img * th * tw
    gf = gx.reshape(-1)
    for c in prange(C):
        plane = np.empty(hp * wp, dtype=gx.dtype)
        for n in range(n_img):
            fill_flat(plane, 0, hp * wp, 0)
            for ti in range(th):
                t0, p0, p1, p2, p3 = _tile_row(c, n, ti, T, th, tw, wp, step)
                for j in range(np.uint64(tw)):
                    t = t0 + j
                    # B on the columns of the 4x4 e (c0 = column 0 of B e, ...) ...
                    c0 = _b(dv[0, t], dv[4, t], dv[8, t], dv[12, t])
                    c1 = _b(dv[1, t], dv[5, t], dv[9, t], dv[13, t])
                    c2 = _b(dv[2, t], dv[6, t], dv[10, t], dv[14, t])
                    c3 = _b(dv[3, t], dv[7, t], dv[11, t], dv[15, t])
                    q0, q1, q2, q3 = _columns(j, step)             # ... then B^T on its rows
                    _add_row(plane, p0, q0, q1, q2, q3, _b(c0[0], c1[0], c2[0], c3[0]))
                    _add_row(plane, p1, q0, q1, q2, q3, _b(c0[1], c1[1], c2[1], c3[1]))
                    _add_row(plane, p2, q0, q1, q2, q3, _b(c0[2], c1[2], c2[2], c3[2]))
                    _add_row(plane, p3, q0, q1, q2, q3, _b(c0[3], c1[3], c2[3], c3[3]))
            for r in range(H):
                row = ((n * C + c) * H + r) * W
                if r < rows:
                    gather_flat(gf, row, plane, (r + pt) * wp + pl, cols, 1)
                    fill_flat(gf, row + cols, W - cols, 0)
                else:
                    fill_flat(gf, row, W, 0)


# ---------------------------------------------------------------- a chunk of images
def tile_buffer(channels, tiles, dtype, key, points=16):
    """A reused (points, channels, tiles) scratch array (``workspace``): one plane per point
    of a transformed tile (16 here, 36 in kernels/winograd_f4.py), each starting 64 bytes
    past a multiple of 4 KiB from the others: 4 KiB apart, the transforms' streams share
    their cache sets, which made them 10x slower. Those 64 bytes (or more) after each
    plane also hold the vector (kernels/simd.py: at most 64 bytes) that the output
    transforms, and F(4x4, 3x3)'s dL/dx one, read past a channel's last tile."""
    item = np.dtype(dtype).itemsize
    size = channels * tiles
    stride = (-(-size * item // 4096) * 4096 + 64) // item
    planes = workspace((points, stride), dtype, key)[:, :size]
    return planes.reshape(points, channels, tiles)                # a view: each plane is contiguous


class Transforms(typing.NamedTuple):
    """One Winograd algorithm as the functions below run it: the name its buffers are kept
    under, the points of a transformed tile, its tile counts and its six kernels. ``step``
    is what its input kernels take after their arrays: F(2x2, 3x3)'s tiles are 2 apart
    (kernels/winograd_transpose.py runs the same kernels 3 apart); F(4x4, 3x3)'s take none."""
    name: str
    points: int
    tile_counts: typing.Callable
    weight_tiles: typing.Callable
    weight_grad: typing.Callable
    input_tiles: typing.Callable
    output_tiles: typing.Callable
    grad_tiles: typing.Callable
    input_grad: typing.Callable
    step: tuple = ()


F23 = Transforms("winograd", 16, tile_counts, _weight_tiles_kernel, _weight_grad_kernel, _input_tiles_kernel,
                 _output_tiles_kernel, _grad_tiles_kernel, _input_grad_kernel, (2,))


def transform_weight(weight, alg=F23):
    """U (points, K, C) = G g G^T for every filter g of ``weight`` (K, C, 3, 3), in a reused buffer."""
    k, c = weight.shape[:2]
    u = tile_buffer(k, c, weight.dtype, f"{alg.name}.u", alg.points)
    for_this_thread(alg.weight_tiles, u.size)(np.ascontiguousarray(weight), _planes(u))
    return u


def weight_grad(du_parts, alg=F23):
    """dL/dW (K, C, 3, 3) = G^T dU G for every (k, c), dU the sum of ``du_parts`` (each
    (points, K, C), at least one; in tile buffers, since the kernel reads their planes at once)."""
    parts = tuple(du_parts)
    gw = np.empty(parts[0].shape[1:] + (3, 3), dtype=parts[0].dtype)
    for_this_thread(alg.weight_grad, parts[0].size * len(parts))(parts, gw)
    return gw


def _planes(a):
    """(points, C, T) tile buffer -> its (points, C*T) view, as the kernels take it."""
    return a.reshape(a.shape[0], -1)


def _transformed_input(x, padding, tiles, worker, alg):
    """V (points, C, T) of the images x (n, C, H, W) into this worker's buffer."""
    th, tw = tiles
    v = tile_buffer(x.shape[1], x.shape[0] * th * tw, x.dtype, worker_key(f"{alg.name}.v", worker), alg.points)
    for_this_thread(alg.input_tiles, v.size)(x, padding[0], padding[2], th, tw, _planes(v), *alg.step)
    return v


def forward_images(x, u, bias, padding, y, worker=0, alg=F23):
    """y = conv2d(x, W) + bias for the images x (n, C, H, W), contiguous, into y
    (n, K, Ho, Wo); ``u`` = transform_weight(W, alg); ``bias`` (K,) (zeros for none)."""
    tiles = alg.tile_counts(y.shape[2:])
    v = _transformed_input(x, padding, tiles, worker, alg)
    m = np.matmul(u, v, out=tile_buffer(u.shape[1], v.shape[2], x.dtype, worker_key(f"{alg.name}.m", worker),
                                        alg.points))
    for_this_thread(alg.output_tiles, m.size)(_planes(m), bias, tiles[0], tiles[1], y)
    return y


def backward_images(x, u, gy, padding, gx, du=None, add=False, worker=0, alg=F23):
    """For the images x (n, C, H, W) and their upstream gradient gy (n, K, Ho, Wo), both
    contiguous: dL/dx into ``gx`` (n, C, H, W) unless it is None, and their share of
    dU (points, K, C) into ``du`` (added to it with ``add``) unless it is None."""
    th, tw = tiles = alg.tile_counts(gy.shape[2:])
    mg = tile_buffer(gy.shape[1], gy.shape[0] * th * tw, gy.dtype, worker_key(f"{alg.name}.mg", worker), alg.points)
    for_this_thread(alg.grad_tiles, mg.size)(gy, th, tw, _planes(mg))
    if du is not None:
        weight_tile_grad(mg, _transformed_input(x, padding, tiles, worker, alg), du, add)
    if gx is not None:
        dv = input_tile_grad(u, mg, worker_key(f"{alg.name}.dv", worker))
        for_this_thread(alg.input_grad, dv.size)(_planes(dv), padding[0], padding[2], th, tw, gx, *alg.step)


def weight_tile_grad(mg, v, du, add):
    """dU = Mg @ V^T over a chunk's tiles, (points, K, C), into ``du``, or added to it with ``add``."""
    if add:
        du += np.matmul(mg, v.transpose(0, 2, 1))
    else:
        np.matmul(mg, v.transpose(0, 2, 1), out=du)


def input_tile_grad(u, mg, key):
    """dV = U^T @ Mg, (points, C, T), in the tile buffer ``key``."""
    return np.matmul(u.transpose(0, 2, 1), mg, out=tile_buffer(u.shape[2], mg.shape[2], mg.dtype, key, len(u)))
