"""The Winograd routes: F(2x2, 3x3) (tinydl/kernels/winograd.py, 'winograd' in
kernels/conv.py) and F(4x4, 3x3) (kernels/winograd_f4.py, 'winograd_f4'), each test on both.

Three layers of checks:
  * the algebra: the 1-D identity (F(4x4, 3x3)'s matrices also rebuilt from its points),
    and each Numba transform against the matrices of the module docstring written out in
    NumPy (B^T d B, G g G^T, A^T m A and their adjoints);
  * the backward is the adjoint of the forward: <T x, y> = <x, T* y> for every transform;
  * the route against PyTorch: float64 to 1e-10 with partial tiles, every padding up to 2,
    dL/dx or dL/dW alone, chunks on the workers and a gradcheck; float32 at a real
    ResNet size (64 channels, 56x56), with a tolerance tied to float32 rounding.
The op table (tests/optable/conv.py) runs the routes forced on every conv2d row.
"""
from fractions import Fraction

import numpy as np
import pytest
import torch

import tinydl as td
import tinydl.nn.functional as F
from tinydl.kernels import _dispatch, winograd as W2, winograd_f4 as W4
from tinydl.kernels.conv import Winograd, WinogradF4, _tile_chunks

pytestmark = [pytest.mark.skipif(not _dispatch.HAVE_NUMBA, reason="the Winograd transforms are Numba kernels"),
              pytest.mark.usefixtures("forced_route_runs")]


class Algorithm:
    """What the tests need of one: its module, route, outputs per tile side (m), and the
    step argument F(2x2, 3x3)'s input kernels take (they serve kernels/winograd_transpose.py too)."""

    def __init__(self, module, transforms, route, m, step):
        self.module, self.transforms, self.route, self.m, self.step = module, transforms, route, m, step
        self.size, self.points = m + 2, (m + 2) ** 2

    def __repr__(self):
        return self.route.name


F23, F43 = Algorithm(W2, W2.F23, Winograd, 2, (2,)), Algorithm(W4, W4.F43, WinogradF4, 4, ())
ALGORITHMS = pytest.mark.parametrize("alg", [F23, F43], ids=repr)


def _tiles(x, padding, tiles, alg):
    """The input tiles (n, C, th, tw, a, a) of x padded by (top, left) and with zeros up to
    whole tiles (a = m + 2 inputs, m apart): the textbook view the transforms never build."""
    (th, tw), (pt, pl), m, a = tiles, padding, alg.m, alg.size
    n, c, h, w = x.shape
    xp = np.zeros((n, c, m * th + 2, m * tw + 2))
    xp[:, :, pt:pt + h, pl:pl + w] = x
    return np.stack([np.stack([xp[:, :, m * i:m * i + a, m * j:m * j + a] for j in range(tw)], 2)
                     for i in range(th)], 2)


def _as_points(a):
    """(..., C, th, tw, a, a) per image -> (a*a, C, T), the layout of the tile buffers."""
    n, c, th, tw = a.shape[:4]
    points = a.shape[-1] ** 2
    return a.reshape(n, c, th * tw, points).transpose(3, 1, 0, 2).reshape(points, c, n * th * tw)


def _from_points(p, n, th, tw):
    """(a*a, C, T) -> (n, C, th, tw, a, a)"""
    a = round(len(p) ** 0.5)
    return p.reshape(len(p), -1, n, th, tw).transpose(2, 1, 3, 4, 0).reshape(n, -1, th, tw, a, a)


@ALGORITHMS
def test_one_dimensional_identity_is_a_correlation(alg):
    rng = np.random.default_rng(0)
    d, g = rng.standard_normal(alg.size), rng.standard_normal(3)
    y = alg.module.A_T @ ((alg.module.G @ g) * (alg.module.B_T @ d))     # m + 2 products instead of 3m
    np.testing.assert_allclose(y, [d[i:i + 3] @ g for i in range(alg.m)], rtol=1e-13, atol=1e-13)


def test_f43_matrices_follow_from_its_points():
    """A^T and G from the points (exact fractions), as the docstring states them; B^T then
    is the one matrix that makes A^T [(G g) * (B^T d)] the correlation for every d, g."""
    points = [Fraction(p) for p in W4.POINTS]
    a_t = [[p ** i for p in points] + [Fraction(int(i == 3))] for i in range(4)]
    g = [[p ** k / np.prod([p - q for q in points if q != p]) for k in range(3)] for p in points] + [[0, 0, 1]]
    np.testing.assert_array_equal(W4.A_T, np.array(a_t, dtype=float))
    np.testing.assert_allclose(W4.G, np.array(g, dtype=float), rtol=1e-15)
    for i in range(4):                  # sum_j A^T[i, j] G[j, k] B^T[j, l] = [l == i + k], exactly
        for k in range(3):
            for l in range(6):
                total = sum(a_t[i][j] * Fraction(g[j][k]) * Fraction(W4.B_T[j, l]) for j in range(6))
                assert total == (l == i + k), (i, k, l, total)


# (n, C, H, W), (top, left, bottom, right) padding: odd outputs leave partial last tiles
SHAPES = [((2, 3, 5, 6), (1, 1, 1, 1)), ((1, 2, 4, 7), (0, 0, 0, 0)), ((2, 1, 3, 3), (2, 1, 2, 1)),
          ((3, 2, 9, 7), (1, 0, 2, 1))]       # more tiles than a vector holds (18 of F(4x4), 45 of F(2x2))


@ALGORITHMS
@pytest.mark.parametrize("x_shape, padding", SHAPES)
def test_transforms_are_the_matrices_of_the_docstring(alg, x_shape, padding):
    rng = np.random.default_rng(1)
    W, m, a, points = alg.module, alg.m, alg.size, alg.points
    pt, pl, pb, pr = padding
    n, c, h, w = x_shape
    ho, wo = h + pt + pb - 2, w + pl + pr - 2
    th, tw = W.tile_counts((ho, wo))
    k, t = 4, n * th * tw
    x, g = rng.standard_normal(x_shape), rng.standard_normal((k, c, 3, 3))
    bt, gm, at = W.B_T, W.G, W.A_T

    v = W2.tile_buffer(c, t, np.float64, "test.v", points)         # V = B^T d B
    W._input_tiles_kernel(x, pt, pl, th, tw, W2._planes(v), *alg.step)
    np.testing.assert_allclose(v, _as_points(bt @ _tiles(x, (pt, pl), (th, tw), alg) @ bt.T), atol=1e-12)

    np.testing.assert_allclose(W2.transform_weight(g, alg.transforms), (gm @ g @ gm.T).reshape(k, c, points).transpose(2, 0, 1),
                               atol=1e-13)                        # U = G g G^T

    mt = rng.standard_normal((points, k, t))                      # y = A^T m A + b, cropped
    bias = rng.standard_normal(k)
    y = np.empty((n, k, ho, wo))
    mb = W2.tile_buffer(k, t, np.float64, "test.m", points)
    mb[...] = mt
    W._output_tiles_kernel(W2._planes(mb), bias, th, tw, y)
    tiles = at @ _from_points(mt, n, th, tw) @ at.T               # (n, K, th, tw, m, m)
    expected = tiles.transpose(0, 1, 2, 4, 3, 5).reshape(n, k, m * th, m * tw)[:, :, :ho, :wo]
    np.testing.assert_allclose(y, expected + bias.reshape(1, k, 1, 1), atol=1e-12)

    gy = rng.standard_normal((n, k, ho, wo))                      # Mg = A gy A^T, 0 past the edge
    mg = W2.tile_buffer(k, t, np.float64, "test.mg", points)
    W._grad_tiles_kernel(gy, th, tw, W2._planes(mg))
    gy_tiles = np.zeros((n, k, m * th, m * tw))
    gy_tiles[:, :, :ho, :wo] = gy
    gy_tiles = gy_tiles.reshape(n, k, th, m, tw, m).transpose(0, 1, 2, 4, 3, 5)
    np.testing.assert_allclose(mg, _as_points(at.T @ gy_tiles @ at), atol=1e-12)

    dv = rng.standard_normal((points, c, t))                      # dL/dx = sum of B dV B^T, cropped
    dvb = W2.tile_buffer(c, t, np.float64, "test.dv", points)
    dvb[...] = dv
    gx = np.empty(x_shape)
    W._input_grad_kernel(W2._planes(dvb), pt, pl, th, tw, gx, *alg.step)
    patches = bt.T @ _from_points(dv, n, th, tw) @ bt
    plane = np.zeros((n, c, m * th + 2, m * tw + 2))
    for i in range(th):
        for j in range(tw):
            plane[:, :, m * i:m * i + a, m * j:m * j + a] += patches[:, :, i, j]
    np.testing.assert_allclose(gx, plane[:, :, pt:pt + h, pl:pl + w], atol=1e-12)

    du = rng.standard_normal((points, k, c))                      # dL/dW = G^T dU G
    np.testing.assert_allclose(W2.weight_grad([du], alg.transforms), gm.T @ du.transpose(1, 2, 0).reshape(k, c, a, a) @ gm,
                               atol=1e-12)


@ALGORITHMS
def test_each_backward_transform_is_the_adjoint_of_its_forward(alg):
    """<T a, b> = <a, T* b>: the dot-product test of every pair (float64)."""
    rng = np.random.default_rng(2)
    W, points = alg.module, alg.points
    n, c, k, h, w, pt, pl = 2, 3, 2, 5, 4, 2, 1                   # bottom 1, right 0: odd output
    ho, wo = h + pt + 1 - 2, w + pl - 2
    th, tw = W.tile_counts((ho, wo))
    t = n * th * tw
    x, e = rng.standard_normal((n, c, h, w)), rng.standard_normal((points, c, t))
    v, dv = W2.tile_buffer(c, t, np.float64, "test.v", points), W2.tile_buffer(c, t, np.float64, "test.dv", points)
    dv[...] = e
    W._input_tiles_kernel(x, pt, pl, th, tw, W2._planes(v), *alg.step)
    gx = np.empty_like(x)
    W._input_grad_kernel(W2._planes(dv), pt, pl, th, tw, gx, *alg.step)
    np.testing.assert_allclose(np.vdot(v, e), np.vdot(x, gx), rtol=1e-12)

    m, mg = W2.tile_buffer(k, t, np.float64, "test.m", points), W2.tile_buffer(k, t, np.float64, "test.mg", points)
    m[...] = rng.standard_normal(m.shape)
    gy, y = rng.standard_normal((n, k, ho, wo)), np.empty((n, k, ho, wo))
    W._output_tiles_kernel(W2._planes(m), np.zeros(k), th, tw, y)
    W._grad_tiles_kernel(gy, th, tw, W2._planes(mg))
    np.testing.assert_allclose(np.vdot(y, gy), np.vdot(m, mg), rtol=1e-12)

    g, du = rng.standard_normal((k, c, 3, 3)), rng.standard_normal((points, k, c))
    u, gw = W2.transform_weight(g, alg.transforms), W2.weight_grad([du], alg.transforms)
    np.testing.assert_allclose(np.vdot(u, du), np.vdot(g, gw), rtol=1e-12)


def _conv(lib, functional, x, w, b, g, needs=(True, True, True), **kwargs):
    """y and the requested gradients of conv2d, for a random upstream gradient g."""
    ts = [None if a is None else lib.tensor(a, requires_grad=need) for a, need in zip((x, w, b), needs)]
    y = functional.conv2d(*ts, **kwargs)
    y.backward(lib.tensor(g))
    return [y.detach().numpy()] + [t.grad.numpy() for t in ts if t is not None and t.requires_grad]


def _forced(route, x, w, b, g, needs=(True, True, True), **kwargs):
    with td.backends.route(conv2d=route), td.backends.record_routes() as taken:
        out = _conv(td, F, x, w, b, g, needs, **kwargs)
    assert taken == [("conv2d", route)]
    return out


CASES = [  # (x, weight, conv2d arguments, what needs a gradient (x, W, b))
    ((2, 3, 7, 6), (4, 3, 3, 3), dict(padding=1), (True, True, True)),
    ((1, 2, 6, 9), (3, 2, 3, 3), dict(padding=(2, 0)), (True, True, True)),   # odd Ho, even Wo
    ((3, 2, 4, 4), (2, 2, 3, 3), dict(), (True, True, False)),                 # 2x2 output: one tile
    ((1, 1, 3, 3), (2, 1, 3, 3), dict(padding=2), (True, True, True)),
    ((2, 3, 5, 5), (4, 3, 3, 3), dict(padding=(0, 1)), (False, True, True)),   # dL/dW only
    ((2, 3, 5, 5), (4, 3, 3, 3), dict(padding=1), (True, False, False)),       # dL/dx only
    ((5, 3, 11, 10), (17, 3, 3, 3), dict(padding=1), (True, True, True)),     # 45 tiles of F(4x4): partial vectors
]


@pytest.mark.parametrize("route", ["winograd", "winograd_f4"])
@pytest.mark.parametrize("x_shape, w_shape, kwargs, needs", CASES)
def test_route_matches_torch_in_float64(route, x_shape, w_shape, kwargs, needs):
    rng = np.random.default_rng(3)
    x, w, b = rng.standard_normal(x_shape), rng.standard_normal(w_shape), rng.standard_normal(w_shape[0])
    g = rng.standard_normal(torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(w), **kwargs).shape)
    ours = _forced(route, x, w, b, g, needs, **kwargs)
    theirs = _conv(torch, torch.nn.functional, x, w, b, g, needs, **kwargs)
    assert len(ours) == len(theirs) == 1 + sum(needs)
    for k, (a, t) in enumerate(zip(ours, theirs)):
        assert a.dtype == np.float64
        np.testing.assert_allclose(a, t, rtol=1e-10, atol=1e-10, err_msg=f"result {k}")


@pytest.mark.parametrize("route", ["winograd", "winograd_f4"])
def test_gradcheck_through_the_route(route):
    rng = np.random.default_rng(4)
    x, w, b = (td.tensor(rng.standard_normal(s), requires_grad=True) for s in ((2, 2, 5, 4), (3, 2, 3, 3), (3,)))
    with td.backends.route(conv2d=route), td.backends.record_routes() as taken:
        assert td.gradcheck(lambda x, w, b: F.conv2d(x, w, b, padding=(2, 1)), [x, w, b])
    assert set(taken) == {("conv2d", route)}


@ALGORITHMS
def test_many_chunks_on_the_workers(alg, monkeypatch):
    monkeypatch.setattr(alg.route, "chunk_bytes", 1)             # one image per chunk: 7 chunks
    monkeypatch.setattr(alg.route, "chunk_tiles", 0)
    rng = np.random.default_rng(5)
    x, w, b = rng.standard_normal((7, 3, 6, 5)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    g = rng.standard_normal((7, 4, 6, 5))
    assert len(_tile_chunks(alg.route, x, alg.module.tile_counts((6, 5)), alg.points * 4)) == 7
    ours = _forced(alg.route.name, x, w, b, g, padding=1)
    for a, t in zip(ours, _conv(torch, torch.nn.functional, x, w, b, g, padding=1)):
        np.testing.assert_allclose(a, t, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("route, times_torch", [("winograd", 4), ("winograd_f4", 25)])
def test_real_layer_in_float32_against_torch(route, times_torch):
    """ResNet's 64-channel 3x3 layer at 56x56, float32. Both libraries' float32 results are
    compared with the exact (float64) ones: Winograd's transforms add and scale more terms
    than a GEMM, so its rounding error is a multiple of PyTorch's. Measured (64->64 56x56
    N2, "AMD EPYC"): F(2x2, 3x3) 0.5-1x, F(4x4, 3x3) 4-10x (2-3e-6 of the largest value);
    allowed: ``times_torch`` times, or 1e-6 (F(2x2)) / 5e-6 (F(4x4)) of the largest value."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 64, 56, 56), dtype=np.float32)
    w = (rng.standard_normal((64, 64, 3, 3)) * 0.05).astype(np.float32)
    b = rng.standard_normal(64).astype(np.float32)
    g = rng.standard_normal((2, 64, 56, 56), dtype=np.float32)
    ours = _forced(route, x, w, b, g, padding=1)
    theirs = _conv(torch, torch.nn.functional, x, w, b, g, padding=1)
    exact = _conv(torch, torch.nn.functional, *(a.astype(np.float64) for a in (x, w, b, g)), padding=1)
    floor = 1e-6 if route == "winograd" else 5e-6
    for name, a, t, e in zip(["y", "dx", "dw", "db"], ours, theirs, exact):
        assert a.dtype == np.float32, name
        scale = np.abs(e).max()
        ours_err, torch_err = np.abs(a - e).max() / scale, np.abs(t - e).max() / scale
        assert ours_err <= max(times_torch * torch_err, floor), f"{name}: error {ours_err:.2e}, torch's {torch_err:.2e}"


@pytest.mark.parametrize("n, hw, kwargs, w_shape, dtype, route", [
    (1, 14, dict(padding=1), (64, 64, 3, 3), np.float32, "winograd"),     # 49 tiles of F(2x2), 16 of F(4x4)
    (1, 14, dict(padding=1), (64, 64, 3, 3), np.float64, "winograd"),
    (1, 14, dict(padding=2), (40, 48, 3, 3), np.float32, "winograd"),
    (1, 14, dict(padding=1), (32, 32, 3, 3), np.float32, "winograd"),     # from 32 channels on
    (1, 14, dict(padding=1), (16, 16, 3, 3), np.float32, "direct"),       # few channels: direct
    (1, 14, dict(padding=1), (32, 24, 3, 3), np.float32, "direct"),
    (1, 8, dict(padding=1), (32, 32, 3, 3), np.float32, "direct"),        # 16 tiles: too few
    (1, 14, dict(padding=1), (64, 16, 3, 3), np.float32, None),           # GEMMs over 16 channels: no
    (1, 14, dict(padding=1, stride=2), (64, 64, 3, 3), np.float32, None),
    (1, 14, dict(padding=1, dilation=2), (64, 64, 3, 3), np.float32, None),
    (1, 14, dict(padding=3), (64, 64, 3, 3), np.float32, None),           # more padding than it tiles
    (1, 14, dict(padding=1, groups=2), (64, 32, 3, 3), np.float32, None),
    (1, 14, dict(padding=2), (64, 64, 5, 5), np.float32, None),
    (1, 6, dict(padding=1), (64, 64, 3, 3), np.float32, None),            # 9 tiles: too few
    (2, 56, dict(padding=1), (64, 64, 3, 3), np.float32, "winograd_f4"),  # 392 whole 4x4 tiles
    (2, 28, dict(padding=1), (128, 128, 3, 3), np.float32, "winograd_f4"),  # 98
    (128, 8, dict(padding=1), (64, 64, 3, 3), np.float32, "winograd_f4"),   # ResNet-20's last stage
    (16, 8, dict(padding=1), (64, 64, 3, 3), np.float32, "winograd"),       # 64 tiles: too few for F(4x4)
    (16, 14, dict(padding=1), (256, 256, 3, 3), np.float32, "winograd"),    # 256 F(4x4) tiles, 31% of them padding
    (32, 14, dict(padding=1), (256, 256, 3, 3), np.float32, "winograd_f4"),  # 512
])
def test_dispatcher_takes_winograd_for_3x3_stride_1_with_many_channels(n, hw, kwargs, w_shape, dtype, route):
    x = td.zeros((n, w_shape[1] * kwargs.get("groups", 1), hw, hw), dtype=dtype, requires_grad=True)
    with td.backends.record_routes() as taken:
        F.conv2d(x, td.zeros(w_shape, dtype=dtype), **kwargs)
    if route is None:
        assert taken not in ([("conv2d", "winograd")], [("conv2d", "winograd_f4")])
    else:
        assert taken == [("conv2d", route)]
