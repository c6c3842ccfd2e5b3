r"""Winograd convolution F(4x4, 3x3) on the CPU: 4x4 outputs from a 6x6 input tile, with
36 products where direct convolution needs 4*4*9 = 144 (4x fewer; F(2x2, 3x3) saves 2.25x).

Read kernels/winograd.py first: it derives F(2x2, 3x3) and lays out the convolution
(U = G g G^T, V = B^T d B, one GEMM per point of a transformed tile, Y = A^T M A, and
the backward as the adjoint of each step). This module is the same algorithm with
larger tiles: tiles of 6x6 inputs that step by 4, 36 points, 36 GEMMs. Per output the
GEMMs do 36/16 = 2.25 multiply-adds per channel pair instead of 16/4 = 4, and the
buffers between the steps hold 1.8x fewer numbers.

Where the matrices come from
----------------------------
F(m, 3) evaluates the product of the polynomials d(x) (m + 2 coefficients, the
inputs) and g(x) (the filter, 3) at m + 1 points and at infinity (the leading
coefficient), then interpolates: the m + 2 values of (G g) * (B^T d), one product each,
give the outputs through A^T. With the points 0, 1, -1, 2, -1/2 and infinity:

    A^T[i, j] = p_j^i                       (4 x 6; column infinity: (0, 0, 0, 1))
    G[j, k]   = p_j^k / prod_{l != j} (p_j - p_l)   (6 x 3; row infinity: (0, 0, 1))

             [1  3/2  -2   -3/2   1   0]           [  1       0      0   ]
             [0  -1  -5/2  -1/2   1   0]           [-1/3    -1/3   -1/3  ]
    B^T =    [0   1   1/2  -5/2   1   0]     G =   [ 1/3    -1/3    1/3  ]
             [0 -1/2  -1    1/2   1   0]           [ 1/15    2/15   4/15 ]
             [0   2   -1   -2     1   0]           [-16/15   8/15  -4/15 ]
             [0   1   3/2  -2   -3/2  1]           [  0       0      1   ]

             [1  1   1   1    1    0]
    A^T =    [0  1  -1   2  -1/2   0]
             [0  1   1   4   1/4   0]
             [0  1  -1   8  -1/8   1]

(B^T follows from A^T and G: the only matrix that makes y = A^T [(G g) * (B^T d)] the
correlation for every d and g; tests/test_winograd.py rebuilds all three from the
points.) Lavin and Gray's points 0, +-1, +-2 give simpler matrices (entries 4, 5, 1/4,
1/6, 1/24); with +-1/2 in place of one of the 2s the float32 results came 2.5-4x
closer to float64's (16 to 256 channels), 1.4e-6 to 4.8e-6 of the largest output where
PyTorch's own float32 convolution is at 3-4e-7 (Lavin and Gray's: 4e-6 to 1.2e-5).
That error is what the 4x fewer multiplies cost; the dispatcher takes this route where
it is faster (kernels/conv.py) and ``td.backends.route(conv2d="winograd")`` keeps
F(2x2, 3x3)'s accuracy.

Every constant of B^T, B, A^T and A is a power of two or a sum of two of them (exact
in float32), so the input's and output's transforms run in the data's dtype; the filter's
(G, with thirds and fifteenths) runs in float64 and is rounded once.

Layout: as kernels/winograd.py, with 36 planes (point xi = 6a + b of a tile, row a,
column b) in ``winograd.tile_buffer``s; winograd.py's functions run a chunk of images
with these kernels (``F43``), the GEMMs included. A tile's 6x6 reach
steps by 4, so tiles overlap by two rows and columns; tiles past the output's edge read
zeros and their outputs are dropped.

The four tile transforms work on a vector of tiles at a time (kernels/simd.py): the
tiles' 6x6 inputs (or 4x4 gradients) are copied point by point into a small buffer,
transformed as vectors, and stored into the planes (or copied back out tile by tile).
Tile numbers run on across tile rows and images, so a 8x8 image's four tiles fill a
vector as well as a 56x56 image's 196.
"""
import numpy as np

from ._dispatch import njit, prange
from ._memory import fill_flat, gather_flat
from .simd import lanes, load, store
from .winograd import Transforms

__all__ = ["POINTS", "B_T", "G", "A_T", "tile_counts", "F43"]

POINTS = (0.0, 1.0, -1.0, 2.0, -0.5)    # and infinity
B_T = np.array([[1, 1.5, -2, -1.5, 1, 0], [0, -1, -2.5, -0.5, 1, 0], [0, 1, 0.5, -2.5, 1, 0],
                [0, -0.5, -1, 0.5, 1, 0], [0, 2, -1, -2, 1, 0], [0, 1, 1.5, -2, -1.5, 1]], dtype=np.float64)
G = np.array([[1, 0, 0], [-1 / 3, -1 / 3, -1 / 3], [1 / 3, -1 / 3, 1 / 3], [1 / 15, 2 / 15, 4 / 15],
              [-16 / 15, 8 / 15, -4 / 15], [0, 0, 1]], dtype=np.float64)
A_T = np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -0.5, 0], [0, 1, 1, 4, 0.25, 0],
                [0, 1, -1, 8, -0.125, 1]], dtype=np.float64)


def tile_counts(out_hw):
    """Tiles per column and per row: ceil(Ho / 4), ceil(Wo / 4)."""
    return -(-out_hw[0] // 4), -(-out_hw[1] // 4)


# ---------------------------------------------------------------- the 1-D transforms and their adjoints
# They run on vectors of tiles (a float times a vector is that float in every lane, in the
# vector's dtype) and, G and G^T, on float64 scalars.
@njit(inline="always")
def _b_t(values):
    """B^T (d0, .., d5)"""
    d0, d1, d2, d3, d4, d5 = values
    return (d0 + d4 - 2.0 * d2 + 1.5 * (d1 - d3),
            d4 - d1 - 2.5 * d2 - 0.5 * d3,
            d4 + d1 + 0.5 * d2 - 2.5 * d3,
            d4 - d2 - 0.5 * (d1 - d3),
            d4 - d2 + 2.0 * (d1 - d3),
            d1 + d5 - 2.0 * d3 + 1.5 * (d2 - d4))


@njit(inline="always")
def _b(values):
    """B (e0, .., e5): the adjoint of _b_t (B^T's columns as rows)"""
    e0, e1, e2, e3, e4, e5 = values
    return (e0,
            1.5 * e0 - e1 + e2 - 0.5 * e3 + 2.0 * e4 + e5,
            1.5 * e5 - 2.0 * e0 - 2.5 * e1 + 0.5 * e2 - e3 - e4,
            0.5 * (e3 - e1) - 1.5 * e0 - 2.5 * e2 - 2.0 * (e4 + e5),
            e0 + e1 + e2 + e3 + e4 - 1.5 * e5,
            e5)


@njit(inline="always")
def _a_t(values):
    """A^T (m0, .., m5)"""
    m0, m1, m2, m3, m4, m5 = values
    s, d = m1 + m2, m1 - m2
    return (m0 + s + m3 + m4,
            d + 2.0 * m3 - 0.5 * m4,
            s + 4.0 * m3 + 0.25 * m4,
            d + 8.0 * m3 - 0.125 * m4 + m5)


@njit(inline="always")
def _a(values):
    """A (g0, .., g3): the adjoint of _a_t"""
    g0, g1, g2, g3 = values
    return (g0,
            g0 + g1 + g2 + g3,
            g0 - g1 + g2 - g3,
            g0 + 2.0 * g1 + 4.0 * g2 + 8.0 * g3,
            g0 - 0.5 * g1 + 0.25 * g2 - 0.125 * g3,
            g3)


@njit(inline="always")
def _g(values):
    """G (h0, h1, h2), in float64"""
    h0, h1, h2 = values
    return (h0, -(h0 + h1 + h2) / 3, (h0 - h1 + h2) / 3, (h0 + 2 * h1 + 4 * h2) / 15,
            (-16 * h0 + 8 * h1 - 4 * h2) / 15, h2)


@njit(inline="always")
def _g_t(values):
    """G^T (e0, .., e5): the adjoint of _g, in float64"""
    e0, e1, e2, e3, e4, e5 = values
    return (e0 + (e2 - e1) / 3 + (e3 - 16 * e4) / 15,
            -(e1 + e2) / 3 + (2 * e3 + 8 * e4) / 15,
            (e2 - e1) / 3 + (4 * e3 - 4 * e4) / 15 + e5)


@njit(inline="always")
def _across4(columns, a):
    """Row a of a 4-column tile given as its transformed columns: columns[b][a] for b < 4."""
    return columns[0][a], columns[1][a], columns[2][a], columns[3][a]


@njit(inline="always")
def _across6(columns, a):
    """Row a of a 6-column tile given as its transformed columns: columns[b][a] for b < 6."""
    return columns[0][a], columns[1][a], columns[2][a], columns[3][a], columns[4][a], columns[5][a]


# ---------------------------------------------------------------- vectors of tiles
# A vector of tiles t .. t + n - 1 (n = lanes) is held point by point: in a tile buffer's
# planes (point xi's plane from offset k*T + t), or in a ``patches`` buffer of n numbers a
# point (point p at p*n) that a tile's inputs are copied into, or its outputs out of.

@njit(inline="always")
def _plane_column(planes, b, at):
    """Column b of the vector of tiles at ``at`` of a (36, K*T) buffer: points b, b + 6, .."""
    return (load(planes[b], at), load(planes[b + 6], at), load(planes[b + 12], at),
            load(planes[b + 18], at), load(planes[b + 24], at), load(planes[b + 30], at))


@njit(inline="always")
def _patch_column6(patches, b):
    """Column b of the 6x6 tiles in ``patches``: points b, b + 6, .. as vectors."""
    n = lanes(patches)
    return (load(patches, b * n), load(patches, (b + 6) * n), load(patches, (b + 12) * n),
            load(patches, (b + 18) * n), load(patches, (b + 24) * n), load(patches, (b + 30) * n))


@njit(inline="always")
def _patch_column4(patches, b):
    """Column b of the 4x4 tiles in ``patches``: points b, b + 4, .. as vectors."""
    n = lanes(patches)
    return load(patches, b * n), load(patches, (b + 4) * n), load(patches, (b + 8) * n), load(patches, (b + 12) * n)


@njit(inline="always")
def _put(patches, first, values):
    """Points first, first + 1, .. of ``patches`` = the vectors ``values``."""
    n = lanes(patches)
    for i in range(len(values)):
        store(patches, (first + i) * n, values[i])


@njit(inline="always")
def _store_row(planes, a, at, values, count, spill):
    """Row a of the vector of tiles at ``at`` of a (36, K*T) buffer = ``values`` (six
    vectors); of a last, partial vector only its ``count`` tiles, through ``spill``: a
    whole store would write over the next channel's tiles."""
    for b in range(6):
        if count >= lanes(spill):
            store(planes[6 * a + b], at, values[b])
        else:
            store(spill, 0, values[b])
            for i in range(count):
                planes[6 * a + b, at + i] = spill[i]


@njit(inline="always")
def _copy_tile(plane, corner, width, patches, lane, size, inward):
    """Tile ``lane`` of the vector in ``patches`` <-> the size x size square of ``plane``
    (rows ``width`` apart) from ``corner``: into the patches with ``inward``, else out.
    (Unsigned offsets, see kernels/_memory.py.)"""
    n, step = np.uint64(lanes(patches)), np.uint64(width)
    row, point = np.uint64(corner), np.uint64(lane)
    for r in range(size):
        for s in range(np.uint64(size)):
            if inward:
                patches[point] = plane[row + s]
            else:
                plane[row + s] = patches[point]
            point += n
        row += step


@njit(inline="always")
def _add_tile(plane, corner, width, patches, lane):
    """The 6x6 square of ``plane`` from ``corner`` += tile ``lane`` of ``patches``."""
    n, step = np.uint64(lanes(patches)), np.uint64(width)
    row, point = np.uint64(corner), np.uint64(lane)
    for r in range(6):
        for s in range(np.uint64(6)):
            plane[row + s] += patches[point]
            point += n
        row += step


@njit(inline="always")
def _zero_padded_planes(x, c, top, left, height, width):
    """Channel c of every image of x (n, C, H, W), contiguous, in zeroed height x width planes
    (one flat array), each image's (0, 0) at (top, left); what falls past them is dropped."""
    n_img, C, H, W = x.shape
    rows, cols = min(H, height - top), min(W, width - left)
    xf = x.reshape(-1)
    planes = np.zeros(n_img * height * width, dtype=x.dtype)
    for n in range(n_img):
        for r in range(rows):
            gather_flat(planes, (n * height + r + top) * width + left, xf, ((n * C + c) * H + r) * W, cols, 1)
    return planes


@njit(inline="always")
def _next_tile(n, ti, tj, th, tw):
    """The tile after (n, ti, tj) in tile order: along the row, then down, then the next image."""
    tj += 1
    if tj == tw:
        tj, ti = 0, ti + 1
        if ti == th:
            ti, n = 0, n + 1
    return n, ti, tj


# ---------------------------------------------------------------- the four tile transforms
# Each is a parallel loop over channels around a function of one channel (inlined in the
# loop, the tuples of vectors upset Numba's array analysis). They run over one chunk of
# images, tile t = (n * th + ti) * tw + tj, on the (36, C*T) view of a tile buffer.

@njit(cache=True)
def _input_tiles_of_channel(x, c, pt, pl, th, tw, v):
    """V = B^T d B for every 6x6 tile d of channel c of x (n, C, H, W), padded by pt, pl on
    the top/left and with zeros up to the tiles' reach (4 th + 2 rows, 4 tw + 2 columns)."""
    hp, wp = 4 * th + 2, 4 * tw + 2
    T = x.shape[0] * th * tw
    padded = _zero_padded_planes(x, c, pt, pl, hp, wp)
    vector = lanes(padded)
    patches = np.empty(36 * vector, dtype=x.dtype)
    spill = np.empty(vector, dtype=x.dtype)
    n = ti = tj = 0
    for t in range(0, T, vector):
        for lane in range(min(vector, T - t)):                        # copy the tiles in ...
            _copy_tile(padded, (n * hp + 4 * ti) * wp + 4 * tj, wp, patches, lane, 6, True)
            n, ti, tj = _next_tile(n, ti, tj, th, tw)
        columns = (_b_t(_patch_column6(patches, 0)), _b_t(_patch_column6(patches, 1)),   # ... B^T on
                   _b_t(_patch_column6(patches, 2)), _b_t(_patch_column6(patches, 3)),   # their columns
                   _b_t(_patch_column6(patches, 4)), _b_t(_patch_column6(patches, 5)))
        for a in range(6):                                            # ... then on their rows
            _store_row(v, a, c * T + t, _b_t(_across6(columns, a)), T - t, spill)


@njit(parallel=True, cache=True)
def _input_tiles_kernel(x, pt, pl, th, tw, v):
    # x (n, C, H, W) contiguous -> v (36, C*T)
    for c in prange(x.shape[1]):
        _input_tiles_of_channel(x, c, pt, pl, th, tw, v)


@njit(cache=True)
def _output_tiles_of_channel(m, bias, k, th, tw, y):
    """Channel k of y (n, K, Ho, Wo) = A^T m A + bias[k] for every tile m of the (36, K*T)
    buffer; outputs past Ho, Wo are dropped. The loads read up to a vector past the
    channel's tiles (the next channel's, or tile_buffer's slack); what they give is dropped."""
    n_img, K, Ho, Wo = y.shape
    T = n_img * th * tw
    height, width = 4 * th, 4 * tw
    whole = np.empty(n_img * height * width, dtype=y.dtype)          # the outputs of whole tiles
    vector = lanes(whole)
    patches = np.empty(16 * vector, dtype=y.dtype)
    b = bias[k]
    n = ti = tj = 0
    for t in range(0, T, vector):
        at = k * T + t
        columns = (_a_t(_plane_column(m, 0, at)), _a_t(_plane_column(m, 1, at)), _a_t(_plane_column(m, 2, at)),
                   _a_t(_plane_column(m, 3, at)), _a_t(_plane_column(m, 4, at)), _a_t(_plane_column(m, 5, at)))
        for r in range(4):                                            # A^T on the columns, then the rows
            y0, y1, y2, y3 = _a_t(_across6(columns, r))
            _put(patches, 4 * r, (y0 + b, y1 + b, y2 + b, y3 + b))
        for lane in range(min(vector, T - t)):                        # copy the tiles out
            _copy_tile(whole, (n * height + 4 * ti) * width + 4 * tj, width, patches, lane, 4, False)
            n, ti, tj = _next_tile(n, ti, tj, th, tw)
    yf = y.reshape(-1)
    for n in range(n_img):
        for r in range(Ho):
            gather_flat(yf, ((n * K + k) * Ho + r) * Wo, whole, (n * height + r) * width, Wo, 1)


@njit(parallel=True, cache=True)
def _output_tiles_kernel(m, bias, th, tw, y):
    # m (36, K*T) -> y (n, K, Ho, Wo)
    for k in prange(y.shape[1]):
        _output_tiles_of_channel(m, bias, k, th, tw, y)


@njit(cache=True)
def _grad_tiles_of_channel(gy, k, th, tw, mg):
    """Mg = A g A^T for every 4x4 tile g of channel k of gy (n, K, Ho, Wo), zeros past its
    edge: the adjoint of _output_tiles_of_channel."""
    height, width = 4 * th, 4 * tw
    T = gy.shape[0] * th * tw
    whole = _zero_padded_planes(gy, k, 0, 0, height, width)           # gy, and zeros past Ho, Wo
    vector = lanes(whole)
    patches = np.empty(16 * vector, dtype=gy.dtype)
    spill = np.empty(vector, dtype=gy.dtype)
    n = ti = tj = 0
    for t in range(0, T, vector):
        for lane in range(min(vector, T - t)):                        # copy the tiles in ...
            _copy_tile(whole, (n * height + 4 * ti) * width + 4 * tj, width, patches, lane, 4, True)
            n, ti, tj = _next_tile(n, ti, tj, th, tw)
        columns = (_a(_patch_column4(patches, 0)), _a(_patch_column4(patches, 1)),       # ... A on
                   _a(_patch_column4(patches, 2)), _a(_patch_column4(patches, 3)))       # their columns
        for a in range(6):                                            # ... then on their rows
            _store_row(mg, a, k * T + t, _a(_across4(columns, a)), T - t, spill)


@njit(parallel=True, cache=True)
def _grad_tiles_kernel(gy, th, tw, mg):
    # gy (n, K, Ho, Wo) contiguous -> mg (36, K*T)
    for k in prange(gy.shape[1]):
        _grad_tiles_of_channel(gy, k, th, tw, mg)


@njit(cache=True)
def _input_grad_of_channel(dv, c, pt, pl, th, tw, gx):
    """Channel c of gx (n, C, H, W): every tile's B e B^T (e from the (36, C*T) buffer dv)
    added onto its 6x6 patch of the padded plane (tiles overlap by 2), whose interior is
    then dL/dx (zero where the plane does not reach: no tile read x there)."""
    n_img, C, H, W = gx.shape
    hp, wp = 4 * th + 2, 4 * tw + 2
    rows, cols = min(H, hp - pt), min(W, wp - pl)
    T = n_img * th * tw
    padded = np.zeros(n_img * hp * wp, dtype=gx.dtype)
    vector = lanes(padded)
    patches = np.empty(36 * vector, dtype=gx.dtype)
    n = ti = tj = 0
    for t in range(0, T, vector):
        at = c * T + t                                                # (loads past the channel: dropped)
        columns = (_b(_plane_column(dv, 0, at)), _b(_plane_column(dv, 1, at)), _b(_plane_column(dv, 2, at)),
                   _b(_plane_column(dv, 3, at)), _b(_plane_column(dv, 4, at)), _b(_plane_column(dv, 5, at)))
        for r in range(6):                                            # B on the columns, then the rows
            _put(patches, 6 * r, _b(_across6(columns, r)))
        for lane in range(min(vector, T - t)):                        # add the tiles onto the planes
            _add_tile(padded, (n * hp + 4 * ti) * wp + 4 * tj, wp, patches, lane)
            n, ti, tj = _next_tile(n, ti, tj, th, tw)
    gf = gx.reshape(-1)
    for n in range(n_img):
        for r in range(H):
            row = ((n * C + c) * H + r) * W
            if r < rows:
                gather_flat(gf, row, padded, (n * hp + r + pt) * wp + pl, cols, 1)
                fill_flat(gf, row + cols, W - cols, 0)
            else:
                fill_flat(gf, row, W, 0)


@njit(parallel=True, cache=True)
def _input_grad_kernel(dv, pt, pl, th, tw, gx):
    # dv (36, C*T) -> gx (n, C, H, W)
    for c in prange(gx.shape[1]):
        _input_grad_of_channel(dv, c, pt, pl, th, tw, gx)


@njit(parallel=True, cache=True)
def _weight_tiles_kernel(w, u):
    # w (K, C, 3, 3) -> u (36, K*C): U = G g G^T for every filter g, in float64, rounded once.
    K, C = w.shape[0], w.shape[1]
    for k in prange(K):
        for c in range(C):
            g = w[k, c]
            c0 = _g((np.float64(g[0, 0]), np.float64(g[1, 0]), np.float64(g[2, 0])))    # G on the columns ...
            c1 = _g((np.float64(g[0, 1]), np.float64(g[1, 1]), np.float64(g[2, 1])))
            c2 = _g((np.float64(g[0, 2]), np.float64(g[1, 2]), np.float64(g[2, 2])))
            t = k * C + c                                                              # ... then on the rows
            for a in range(6):
                values = _g((c0[a], c1[a], c2[a]))
                for b in range(6):
                    u[6 * a + b, t] = values[b]


@njit(cache=True)
def _weight_grad_of_channel(du_parts, k, gw):
    """_weight_grad_kernel's work on output channel k."""
    d = np.empty(36, dtype=np.float64)
    for c in range(gw.shape[1]):
        for i in range(36):
            d[i] = du_parts[0][i, k, c]
        for p in range(1, len(du_parts)):
            for i in range(36):
                d[i] += du_parts[p][i, k, c]
        columns = (_g_t((d[0], d[6], d[12], d[18], d[24], d[30])),     # G^T on the columns ...
                   _g_t((d[1], d[7], d[13], d[19], d[25], d[31])),
                   _g_t((d[2], d[8], d[14], d[20], d[26], d[32])),
                   _g_t((d[3], d[9], d[15], d[21], d[27], d[33])),
                   _g_t((d[4], d[10], d[16], d[22], d[28], d[34])),
                   _g_t((d[5], d[11], d[17], d[23], d[29], d[35])))
        for i in range(3):                                            # ... then on the rows
            gw[k, c, i, 0], gw[k, c, i, 1], gw[k, c, i, 2] = _g_t(_across6(columns, i))


@njit(parallel=True, cache=True)
def _weight_grad_kernel(du_parts, gw):
    # du_parts: the workers' shares of dU, each (36, K, C); their sum -> gw (K, C, 3, 3):
    # dL/dW = G^T dU G for every (k, c), in float64. Summed here, in parallel, as
    # kernels/winograd.py's twin does.
    for k in prange(gw.shape[0]):
        _weight_grad_of_channel(du_parts, k, gw)


F43 = Transforms("winograd_f4", 36, tile_counts, _weight_tiles_kernel, _weight_grad_kernel, _input_tiles_kernel,
                 _output_tiles_kernel, _grad_tiles_kernel, _input_grad_kernel)
