"""The Winograd F(2x2, 3x3) route (tinydl/kernels/winograd.py, 'winograd' in kernels/conv.py).

Three layers of checks:
  * the algebra: the 1-D identity, and each Numba transform against the matrices of the
    module docstring written out in NumPy (B^T d B, G g G^T, A^T m A and their adjoints);
  * the backward is the adjoint of the forward: <T x, y> = <x, T* y> for every transform;
  * the route against PyTorch: float64 to 1e-10 with partial tiles, every padding up to 2,
    dL/dx or dL/dW alone, chunks on the workers and a gradcheck; float32 at a real
    ResNet size (64 channels, 56x56), with a tolerance tied to float32 rounding.
The op table (tests/optable/conv.py) runs the route forced on every conv2d row.
"""
import numpy as np
import pytest
import torch

import tinydl as td
import tinydl.nn.functional as F
from tinydl.kernels import _dispatch, winograd as W
from tinydl.kernels.conv import Winograd, _tile_chunks

pytestmark = [pytest.mark.skipif(not _dispatch.HAVE_NUMBA, reason="the Winograd transforms are Numba kernels"),
              pytest.mark.usefixtures("forced_route_runs")]


def _tiles(x, padding, tiles):
    """The 4x4 input tiles (n, C, th, tw, 4, 4) of x padded by (top, left) and with zeros
    up to whole tiles: the textbook view the transforms never build."""
    (th, tw), (pt, pl) = tiles, padding
    n, c, h, w = x.shape
    xp = np.zeros((n, c, 2 * th + 2, 2 * tw + 2))
    xp[:, :, pt:pt + h, pl:pl + w] = x
    return np.stack([np.stack([xp[:, :, 2 * i:2 * i + 4, 2 * j:2 * j + 4] for j in range(tw)], 2)
                     for i in range(th)], 2)


def _as_points(a):
    """(..., C, th, tw, 4, 4) per image -> (16, C, T), the layout of the tile buffers."""
    n, c, th, tw = a.shape[:4]
    return a.reshape(n, c, th * tw, 16).transpose(3, 1, 0, 2).reshape(16, c, n * th * tw)


def _from_points(p, n, th, tw):
    """(16, C, T) -> (n, C, th, tw, 4, 4)"""
    return p.reshape(16, -1, n, th, tw).transpose(2, 1, 3, 4, 0).reshape(n, -1, th, tw, 4, 4)


def test_one_dimensional_f23_is_two_outputs_of_a_correlation():
    rng = np.random.default_rng(0)
    d, g = rng.standard_normal(4), rng.standard_normal(3)
    y = W.A_T @ ((W.G @ g) * (W.B_T @ d))                        # 4 products instead of 6
    np.testing.assert_allclose(y, [d[0:3] @ g, d[1:4] @ g], rtol=1e-14)


# (n, C, H, W), (top, left, bottom, right) padding: odd outputs leave partial last tiles
SHAPES = [((2, 3, 5, 6), (1, 1, 1, 1)), ((1, 2, 4, 7), (0, 0, 0, 0)), ((2, 1, 3, 3), (2, 1, 2, 1))]


@pytest.mark.parametrize("x_shape, padding", SHAPES)
def test_transforms_are_the_matrices_of_the_docstring(x_shape, padding):
    rng = np.random.default_rng(1)
    pt, pl, pb, pr = padding
    n, c, h, w = x_shape
    ho, wo = h + pt + pb - 2, w + pl + pr - 2
    th, tw = W.tile_counts((ho, wo))
    k, t = 4, n * th * tw
    x, g = rng.standard_normal(x_shape), rng.standard_normal((k, c, 3, 3))
    bt, gm, at = W.B_T, W.G, W.A_T

    v = W.tile_buffer(c, t, np.float64, "test.v")                 # V = B^T d B
    W._input_tiles_kernel(x, pt, pl, th, tw, W._planes(v), 2)
    np.testing.assert_allclose(v, _as_points(bt @ _tiles(x, (pt, pl), (th, tw)) @ bt.T), atol=1e-13)

    np.testing.assert_allclose(W.transform_weight(g), (gm @ g @ gm.T).reshape(k, c, 16).transpose(2, 0, 1),
                               atol=1e-13)                        # U = G g G^T

    m = rng.standard_normal((16, k, t))                           # y = A^T m A + b, cropped
    bias = rng.standard_normal(k)
    y = np.empty((n, k, ho, wo))
    mb = W.tile_buffer(k, t, np.float64, "test.m")
    mb[...] = m
    W._output_tiles_kernel(W._planes(mb), bias, th, tw, y)
    tiles = at @ _from_points(m, n, th, tw) @ at.T                # (n, K, th, tw, 2, 2)
    expected = tiles.transpose(0, 1, 2, 4, 3, 5).reshape(n, k, 2 * th, 2 * tw)[:, :, :ho, :wo]
    np.testing.assert_allclose(y, expected + bias.reshape(1, k, 1, 1), atol=1e-13)

    gy = rng.standard_normal((n, k, ho, wo))                      # Mg = A gy A^T, 0 past the edge
    mg = W.tile_buffer(k, t, np.float64, "test.mg")
    W._grad_tiles_kernel(gy, th, tw, W._planes(mg))
    gy_tiles = np.zeros((n, k, 2 * th, 2 * tw))
    gy_tiles[:, :, :ho, :wo] = gy
    gy_tiles = gy_tiles.reshape(n, k, th, 2, tw, 2).transpose(0, 1, 2, 4, 3, 5)
    np.testing.assert_allclose(mg, _as_points(at.T @ gy_tiles @ at), atol=1e-13)

    dv = rng.standard_normal((16, c, t))                          # dL/dx = sum of B dV B^T, cropped
    dvb = W.tile_buffer(c, t, np.float64, "test.dv")
    dvb[...] = dv
    gx = np.empty(x_shape)
    W._input_grad_kernel(W._planes(dvb), pt, pl, th, tw, gx, 2)
    patches = bt.T @ _from_points(dv, n, th, tw) @ bt
    plane = np.zeros((n, c, 2 * th + 2, 2 * tw + 2))
    for i in range(th):
        for j in range(tw):
            plane[:, :, 2 * i:2 * i + 4, 2 * j:2 * j + 4] += patches[:, :, i, j]
    np.testing.assert_allclose(gx, plane[:, :, pt:pt + h, pl:pl + w], atol=1e-13)

    du = rng.standard_normal((16, k, c))                          # dL/dW = G^T dU G
    np.testing.assert_allclose(W.weight_grad([du]), gm.T @ du.transpose(1, 2, 0).reshape(k, c, 4, 4) @ gm,
                               atol=1e-13)


def test_each_backward_transform_is_the_adjoint_of_its_forward():
    """<T a, b> = <a, T* b>: the dot-product test of every pair (float64)."""
    rng = np.random.default_rng(2)
    n, c, k, h, w, pt, pl = 2, 3, 2, 5, 4, 2, 1                   # bottom 1, right 0: odd output
    ho, wo = h + pt + 1 - 2, w + pl - 2
    th, tw = W.tile_counts((ho, wo))
    t = n * th * tw
    x, e = rng.standard_normal((n, c, h, w)), rng.standard_normal((16, c, t))
    v, dv = W.tile_buffer(c, t, np.float64, "test.v"), W.tile_buffer(c, t, np.float64, "test.dv")
    dv[...] = e
    W._input_tiles_kernel(x, pt, pl, th, tw, W._planes(v), 2)
    gx = np.empty_like(x)
    W._input_grad_kernel(W._planes(dv), pt, pl, th, tw, gx, 2)
    np.testing.assert_allclose(np.vdot(v, e), np.vdot(x, gx), rtol=1e-12)

    m, mg = W.tile_buffer(k, t, np.float64, "test.m"), W.tile_buffer(k, t, np.float64, "test.mg")
    m[...] = rng.standard_normal(m.shape)
    gy, y = rng.standard_normal((n, k, ho, wo)), np.empty((n, k, ho, wo))
    W._output_tiles_kernel(W._planes(m), np.zeros(k), th, tw, y)
    W._grad_tiles_kernel(gy, th, tw, W._planes(mg))
    np.testing.assert_allclose(np.vdot(y, gy), np.vdot(m, mg), rtol=1e-12)

    g, du = rng.standard_normal((k, c, 3, 3)), rng.standard_normal((16, k, c))
    np.testing.assert_allclose(np.vdot(W.transform_weight(g), du), np.vdot(g, W.weight_grad([du])), rtol=1e-12)


def _conv(lib, functional, x, w, b, g, needs=(True, True, True), **kwargs):
    """y and the requested gradients of conv2d, for a random upstream gradient g."""
    ts = [None if a is None else lib.tensor(a, requires_grad=need) for a, need in zip((x, w, b), needs)]
    y = functional.conv2d(*ts, **kwargs)
    y.backward(lib.tensor(g))
    return [y.detach().numpy()] + [t.grad.numpy() for t in ts if t is not None and t.requires_grad]


def _forced(x, w, b, g, needs=(True, True, True), **kwargs):
    with td.backends.route(conv2d="winograd"), td.backends.record_routes() as taken:
        out = _conv(td, F, x, w, b, g, needs, **kwargs)
    assert taken == [("conv2d", "winograd")]
    return out


CASES = [  # (x, weight, conv2d arguments, what needs a gradient (x, W, b))
    ((2, 3, 7, 6), (4, 3, 3, 3), dict(padding=1), (True, True, True)),
    ((1, 2, 6, 9), (3, 2, 3, 3), dict(padding=(2, 0)), (True, True, True)),   # odd Ho, even Wo
    ((3, 2, 4, 4), (2, 2, 3, 3), dict(), (True, True, False)),                 # 2x2 output: one tile
    ((1, 1, 3, 3), (2, 1, 3, 3), dict(padding=2), (True, True, True)),
    ((2, 3, 5, 5), (4, 3, 3, 3), dict(padding=(0, 1)), (False, True, True)),   # dL/dW only
    ((2, 3, 5, 5), (4, 3, 3, 3), dict(padding=1), (True, False, False)),       # dL/dx only
]


@pytest.mark.parametrize("x_shape, w_shape, kwargs, needs", CASES)
def test_route_matches_torch_in_float64(x_shape, w_shape, kwargs, needs):
    rng = np.random.default_rng(3)
    x, w, b = rng.standard_normal(x_shape), rng.standard_normal(w_shape), rng.standard_normal(w_shape[0])
    g = rng.standard_normal(torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(w), **kwargs).shape)
    ours, theirs = _forced(x, w, b, g, needs, **kwargs), _conv(torch, torch.nn.functional, x, w, b, g, needs, **kwargs)
    assert len(ours) == len(theirs) == 1 + sum(needs)
    for k, (a, t) in enumerate(zip(ours, theirs)):
        assert a.dtype == np.float64
        np.testing.assert_allclose(a, t, rtol=1e-10, atol=1e-10, err_msg=f"result {k}")


def test_gradcheck_through_the_route():
    rng = np.random.default_rng(4)
    x, w, b = (td.tensor(rng.standard_normal(s), requires_grad=True) for s in ((2, 2, 5, 4), (3, 2, 3, 3), (3,)))
    with td.backends.route(conv2d="winograd"), td.backends.record_routes() as taken:
        assert td.gradcheck(lambda x, w, b: F.conv2d(x, w, b, padding=(2, 1)), [x, w, b])
    assert set(taken) == {("conv2d", "winograd")}


def test_many_chunks_on_the_workers(monkeypatch):
    monkeypatch.setattr(Winograd, "chunk_bytes", 1)               # one image per chunk: 7 chunks
    monkeypatch.setattr(Winograd, "chunk_tiles", 0)
    rng = np.random.default_rng(5)
    x, w, b = rng.standard_normal((7, 3, 6, 5)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    g = rng.standard_normal((7, 4, 6, 5))
    assert len(_tile_chunks(Winograd, x, W.tile_counts((6, 5)), 16 * 4)) == 7
    for a, t in zip(_forced(x, w, b, g, padding=1), _conv(torch, torch.nn.functional, x, w, b, g, padding=1)):
        np.testing.assert_allclose(a, t, rtol=1e-10, atol=1e-10)


def test_real_layer_in_float32_against_torch():
    """ResNet's 64-channel 3x3 layer at 56x56, float32. Both libraries' float32 results are
    compared with the exact (float64) ones: Winograd's transforms add and halve a few
    more terms than a GEMM, so its rounding error may be a small multiple of PyTorch's
    (measured: 0.5-1x, float32 64->64 56x56 N2), and may be up to 4x or 1e-6 of the largest value."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 64, 56, 56), dtype=np.float32)
    w = (rng.standard_normal((64, 64, 3, 3)) * 0.05).astype(np.float32)
    b = rng.standard_normal(64).astype(np.float32)
    g = rng.standard_normal((2, 64, 56, 56), dtype=np.float32)
    with td.backends.record_routes() as taken:
        ours = _conv(td, F, x, w, b, g, padding=1)
    assert taken == [("conv2d", "winograd")]                      # the dispatcher's own choice
    theirs = _conv(torch, torch.nn.functional, x, w, b, g, padding=1)
    exact = _conv(torch, torch.nn.functional, *(a.astype(np.float64) for a in (x, w, b, g)), padding=1)
    for name, a, t, e in zip(["y", "dx", "dw", "db"], ours, theirs, exact):
        assert a.dtype == np.float32, name
        scale = np.abs(e).max()
        ours_err, torch_err = np.abs(a - e).max() / scale, np.abs(t - e).max() / scale
        assert ours_err <= max(4 * torch_err, 1e-6), f"{name}: error {ours_err:.2e}, torch's {torch_err:.2e}"


@pytest.mark.parametrize("hw, kwargs, w_shape, dtype, route", [
    (14, dict(padding=1), (64, 64, 3, 3), np.float32, "winograd"),     # 49 tiles
    (14, dict(padding=1), (64, 64, 3, 3), np.float64, "winograd"),
    (14, dict(padding=2), (40, 48, 3, 3), np.float32, "winograd"),
    (14, dict(padding=1), (32, 32, 3, 3), np.float32, "winograd"),     # from 32 channels on
    (14, dict(padding=1), (16, 16, 3, 3), np.float32, "direct"),       # few channels: direct
    (14, dict(padding=1), (32, 24, 3, 3), np.float32, "direct"),
    (8, dict(padding=1), (32, 32, 3, 3), np.float32, "direct"),        # 16 tiles: too few
    (14, dict(padding=1), (64, 16, 3, 3), np.float32, None),           # GEMMs over 16 channels: no
    (14, dict(padding=1, stride=2), (64, 64, 3, 3), np.float32, None),
    (14, dict(padding=1, dilation=2), (64, 64, 3, 3), np.float32, None),
    (14, dict(padding=3), (64, 64, 3, 3), np.float32, None),           # more padding than it tiles
    (14, dict(padding=1, groups=2), (64, 32, 3, 3), np.float32, None),
    (14, dict(padding=2), (64, 64, 5, 5), np.float32, None),
    (6, dict(padding=1), (64, 64, 3, 3), np.float32, None),            # 9 tiles: too few
])
def test_dispatcher_takes_winograd_for_3x3_stride_1_with_many_channels(hw, kwargs, w_shape, dtype, route):
    x = td.zeros((1, w_shape[1] * kwargs.get("groups", 1), hw, hw), dtype=dtype, requires_grad=True)
    with td.backends.record_routes() as taken:
        F.conv2d(x, td.zeros(w_shape, dtype=dtype), **kwargs)
    if route is None:
        assert taken != [("conv2d", "winograd")]
    else:
        assert taken == [("conv2d", route)]
