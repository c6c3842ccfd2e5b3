"""The Winograd F(3x3, 2x2) kernels of ConvTranspose2d's 'winograd' route
(tinydl/kernels/winograd_transpose.py), one by one: the 1-D identity, each transform
against the matrices of the docstring, each backward transform as the adjoint of its
forward (the dot-product test), and the route's float32 rounding against PyTorch's.
The route as a whole against PyTorch: tests/test_conv_transpose_routes.py and the op table.
"""
import numpy as np
import pytest
import torch

import tinydl as td
import tinydl.nn.functional as F
from tinydl.kernels import winograd_transpose as WT
from tinydl.kernels.winograd import tile_buffer

pytestmark = pytest.mark.skipif(td.backends.is_reference(), reason="TINYDL_NO_NUMBA=1: no compiled kernels")

# (N, C_in, C_out, H, W), stride, top/left padding, output size: phase shifts d_v of 0 and 1,
# a shift of the input (padding below the stride) or none, phases of unequal lengths
GEOMETRIES = [((2, 3, 2, 5, 4), (2, 2), (1, 1), (10, 8)),
              ((1, 2, 3, 4, 5), (3, 2), (4, 1), (8, 9)),
              ((2, 2, 2, 3, 3), (2, 2), (2, 3), (3, 2))]


def test_one_dimensional_f32_is_three_outputs_of_a_two_tap_correlation():
    rng = np.random.default_rng(0)
    d, g = rng.standard_normal(4), rng.standard_normal(2)
    y = WT.A_T @ ((WT.G @ g) * (WT.B_T @ d))                      # 4 products instead of 6
    np.testing.assert_allclose(y, [d[0:2] @ g, d[1:3] @ g, d[2:4] @ g], rtol=1e-14)


def _tiles(shape, tiles, channels):
    """A (16, channels, N*th*tw) tile buffer."""
    return tile_buffer(channels, shape[0] * tiles[0] * tiles[1], np.float64, f"test.t{channels}")


@pytest.mark.parametrize("shape, stride, top_left, out_hw", GEOMETRIES)
def test_transforms_are_the_matrices_of_the_docstring(shape, stride, top_left, out_hw):
    rng = np.random.default_rng(1)
    n, c_in, c_out, h, w = shape
    geo = WT.Geometry(stride, top_left, out_hw)
    th, tw = geo.tiles
    x = rng.standard_normal((n, c_in, h, w))
    v = _tiles(shape, geo.tiles, c_in)                            # V = B^T d B, d a 4x4 tile of x_A
    WT._input_tiles_kernel(x, geo.top, geo.left, th, tw, v.reshape(16, -1), 3)
    plane = np.zeros((n, c_in, 3 * th + 1, 3 * tw + 1))
    rows, cols = min(h, 3 * th + 1 - geo.top), min(w, 3 * tw + 1 - geo.left)
    plane[:, :, geo.top:geo.top + rows, geo.left:geo.left + cols] = x[:, :, :rows, :cols]
    for ti in range(th):
        for tj in range(tw):
            d = plane[:, :, 3 * ti:3 * ti + 4, 3 * tj:3 * tj + 4]
            expected = WT.B_T @ d @ WT.B_T.T                      # (n, C, 4, 4)
            got = v.reshape(16, c_in, n, th, tw)[:, :, :, ti, tj].reshape(4, 4, c_in, n).transpose(3, 2, 0, 1)
            np.testing.assert_allclose(got, expected, atol=1e-13)

    wt = rng.standard_normal((c_in, c_out, 2 * stride[0], 2 * stride[1]))          # U = G g G^T
    u = WT.transform_weight(wt, geo)
    for vh in range(stride[0]):
        for vw in range(stride[1]):
            g = wt[:, :, geo.taps_h[vh]][:, :, :, geo.taps_w[vw]]                 # (C_in, C_out, 2, 2)
            k = (vh * stride[1] + vw) * c_out
            expected = WT.G @ g @ WT.G.T                                           # (C_in, C_out, 4, 4)
            np.testing.assert_allclose(u[:, k:k + c_out].reshape(4, 4, c_out, c_in).transpose(3, 2, 0, 1),
                                       expected, atol=1e-13)


@pytest.mark.parametrize("shape, stride, top_left, out_hw", GEOMETRIES)
def test_each_backward_transform_is_the_adjoint_of_its_forward(shape, stride, top_left, out_hw):
    """<T a, b> = <a, T* b> for every pair (float64)."""
    rng = np.random.default_rng(2)
    n, c_in, c_out, h, w = shape
    geo = WT.Geometry(stride, top_left, out_hw)
    (th, tw), phases = geo.tiles, stride[0] * stride[1]
    x, e = rng.standard_normal((n, c_in, h, w)), rng.standard_normal((16, c_in, n * th * tw))
    v, dv = _tiles(shape, geo.tiles, c_in), tile_buffer(c_in, n * th * tw, np.float64, "test.dv")
    dv[...] = e
    WT._input_tiles_kernel(x, geo.top, geo.left, th, tw, v.reshape(16, -1), 3)
    gx = np.empty_like(x)
    WT._input_grad_kernel(dv.reshape(16, -1), geo.top, geo.left, th, tw, gx, 3)
    np.testing.assert_allclose(np.vdot(v, e), np.vdot(x, gx), rtol=1e-12)

    m = tile_buffer(phases * c_out, n * th * tw, np.float64, "test.m")
    mg = tile_buffer(phases * c_out, n * th * tw, np.float64, "test.mg")
    m[...] = rng.standard_normal(m.shape)
    gy, y = rng.standard_normal((n, c_out) + out_hw), np.empty((n, c_out) + out_hw)
    WT._output_tiles_kernel(m.reshape(16, -1), np.zeros(c_out), th, tw, geo.shift_h, geo.shift_w, y)
    WT._grad_tiles_kernel(gy, th, tw, geo.shift_h, geo.shift_w, mg.reshape(16, -1))
    np.testing.assert_allclose(np.vdot(y, gy), np.vdot(m, mg), rtol=1e-12)

    g = rng.standard_normal((c_in, c_out, 2 * stride[0], 2 * stride[1]))
    du = tile_buffer(phases * c_out, c_in, np.float64, "test.du")
    du[...] = rng.standard_normal(du.shape)
    u = WT.transform_weight(g, geo)
    np.testing.assert_allclose(np.vdot(u, du), np.vdot(g, WT.weight_grad([du], geo, g.shape)), rtol=1e-12)


def test_real_layer_in_float32_against_torch():
    """bench_alone.py's 64->32 4x4 s2 layer (4 images), float32. Both libraries' results are
    compared with the exact (float64) ones: the transforms add and halve a few terms more
    than a GEMM, so the error may be a small multiple of PyTorch's (measured on three
    seeds: 0.9-1.3x for y and dL/dx, 0.3-0.4x for dL/dW), up to 4x or 1e-6 of the largest."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((4, 64, 16, 16), dtype=np.float32)
    w = (rng.standard_normal((64, 32, 4, 4)) * 0.05).astype(np.float32)
    b = rng.standard_normal(32).astype(np.float32)
    g = rng.standard_normal((4, 32, 32, 32), dtype=np.float32)

    def run(lib, functional, *arrays):
        t = [lib.tensor(a, requires_grad=True) for a in arrays[:3]]
        functional.conv_transpose2d(*t, stride=2, padding=1).backward(lib.tensor(arrays[3]))
        return [functional.conv_transpose2d(*t, stride=2, padding=1).detach().numpy()] + [a.grad.numpy() for a in t]

    with td.backends.route(conv_transpose2d="winograd"), td.backends.record_routes() as taken:
        ours = run(td, F, x, w, b, g)
    assert set(taken) == {("conv_transpose2d", "winograd")}
    theirs = run(torch, torch.nn.functional, x, w, b, g)
    exact = run(torch, torch.nn.functional, *(a.astype(np.float64) for a in (x, w, b, g)))
    for name, a, t, e in zip(["y", "dx", "dw", "db"], ours, theirs, exact):
        assert a.dtype == np.float32, name
        scale = np.abs(e).max()
        ours_err, torch_err = np.abs(a - e).max() / scale, np.abs(t - e).max() / scale
        assert ours_err <= max(4 * torch_err, 1e-6), f"{name}: error {ours_err:.2e}, torch's {torch_err:.2e}"
