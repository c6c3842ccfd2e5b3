"""ConvTranspose2d's 'winograd', 'as_conv2d' and 'subpixel' routes (kernels/conv.py,
kernels/winograd_transpose.py, kernels/subpixel.py).

The subpixel route's two kernels are col2im and im2col computed one output phase at a
time, so they must give kernels/im2col.py's numbers bit for bit, on any geometry
hypothesis draws (stride above or below the kernel, padding beyond it, uneven sizes,
empty phases). The Winograd route must give PyTorch's numbers on any geometry it applies
to (a kernel twice the stride, any padding below the kernel, output padding), and so
must 'as_conv2d' on any stride-1 geometry. They are compared with PyTorch at a realistic
size (the op table runs them forced on every conv_transpose2d row, tiny ones), with many
chunks on the workers, and with only one of the two gradients wanted.
"""
import numpy as np
import pytest
import torch

import tinydl as td
import tinydl.nn.functional as F
from tinydl.kernels import chunk_workers, col2im, im2col
from tinydl.kernels.conv import SubpixelTranspose, WinogradTranspose
from tinydl.kernels.subpixel import fold_phases, unfold_phases, wide_pitch, wide_rows

pytest.importorskip("hypothesis")
from hypothesis import given, settings, strategies as st  # noqa: E402


@st.composite
def geometries(draw):
    """(x_hw, kernel, stride, padding (top, bottom, left, right), y_hw) of a transposed
    convolution, as ops/conv.py derives them from padding and output_padding."""
    kernel, stride, x_hw, pads, y_hw = [], [], [], [], []
    for _ in range(2):
        k, s, n = draw(st.integers(1, 6)), draw(st.integers(1, 4)), draw(st.integers(1, 7))
        p = draw(st.integers(0, 7))
        out_pad = draw(st.integers(0, s - 1))
        size = (n - 1) * s - 2 * p + k + out_pad
        if size < 1:
            p = 0
            size = (n - 1) * s + k + out_pad
        kernel.append(k), stride.append(s), x_hw.append(n)
        pads += [p, max(p - out_pad, 0)]
        y_hw.append(size - max(out_pad - p, 0))
    return tuple(x_hw), tuple(kernel), tuple(stride), tuple(pads), tuple(y_hw)


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(geometries(), st.integers(1, 3), st.integers(1, 3), st.sampled_from([np.float32, np.float64]))
def test_the_phase_kernels_equal_col2im_and_im2col_bit_for_bit(geometry, n, c, dtype):
    x_hw, kernel, stride, pads, y_hw = geometry
    rng = np.random.default_rng(0)
    (h, w), (kh, kw) = x_hw, kernel
    cols = rng.standard_normal((c * kh * kw, n, h, w)).astype(dtype)
    pitch = wide_pitch(kw, stride[1], pads[2], w, y_hw[1])
    wide = np.zeros(cols.size // w * pitch + 2 * pitch, dtype)                # the fold's wide rows
    wide[pitch:-pitch].reshape(cols.shape[:3] + (pitch,))[..., :w] = cols
    y = fold_phases(wide, x_hw, kernel, stride, pads[::2], np.full((n, c) + y_hw, np.nan, dtype))
    expected = col2im(cols.reshape(c * kh * kw, -1), (n, c) + y_hw, kernel, stride, pads)
    np.testing.assert_array_equal(y, expected)

    gy = rng.standard_normal((n, c) + y_hw).astype(dtype)
    gcols = unfold_phases(gy, x_hw, kernel, stride, pads[::2], np.full((c * kh * kw, n * h * w), np.nan, dtype))
    np.testing.assert_array_equal(gcols, im2col(gy, kernel, stride, pads))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_wide_rows_lays_x_out_channel_first_with_zero_columns(dtype):
    x = np.random.default_rng(1).standard_normal((3, 2, 4, 5)).astype(dtype)
    for layout in (x, x.transpose(0, 1, 3, 2).copy().transpose(0, 1, 3, 2)):   # C- and F-ordered planes
        out = wide_rows(layout, np.full((2, 3, 4, 7), np.nan, dtype))
        expected = np.zeros((2, 3, 4, 7), dtype)
        expected[..., :5] = x.transpose(1, 0, 2, 3)
        np.testing.assert_array_equal(out, expected.reshape(2, -1))


def _compare_with_torch(x, w, b, kwargs, upstream, route, needs_x=True, needs_w=True, atol=1e-10, rtol=1e-10):
    """F.conv_transpose2d with ``route`` forced (it must be the one that ran) against torch."""
    needs = (needs_x, needs_w, True)
    ours = [td.tensor(a, requires_grad=r) for a, r in zip((x, w, b), needs)]
    theirs = [torch.tensor(a, requires_grad=r) for a, r in zip((x, w, b), needs)]
    with td.backends.route(conv_transpose2d=route), td.backends.record_routes() as taken:
        y = F.conv_transpose2d(*ours, **kwargs)
        y.backward(td.tensor(upstream))
    y_t = torch.nn.functional.conv_transpose2d(*theirs, **kwargs)
    y_t.backward(torch.tensor(upstream))
    assert taken == [("conv_transpose2d", route)]
    assert y.dtype == x.dtype and ours[2].grad.dtype == x.dtype
    np.testing.assert_allclose(y.detach().numpy(), y_t.detach().numpy(), atol=atol, rtol=rtol)
    for a, t in zip(ours, theirs):
        if t.requires_grad:
            assert a.grad.dtype == x.dtype
            np.testing.assert_allclose(a.grad.numpy(), t.grad.numpy(), atol=atol, rtol=rtol)
        else:
            assert a.grad is None


@pytest.mark.usefixtures("forced_route_runs")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("route, c_in, c_out, hw, k, kwargs", [
    ("winograd", 64, 32, 16, 4, dict(stride=2, padding=1)),            # DCGAN's and FCN's 2x upsampling
    ("subpixel", 64, 32, 16, 4, dict(stride=2, padding=1)),
    ("subpixel", 32, 16, 16, 3, dict(stride=2, padding=1, output_padding=1)),      # the 3x3 one of decoders
    ("subpixel", 32, 16, 16, 2, dict(stride=2)),                                   # U-Net's
    ("as_conv2d", 64, 64, 16, 3, dict(padding=1)),     # the deconvnet's 3x3 (conv2d's winograd)
    ("as_conv2d", 8, 8, 16, 3, dict(padding=1)),       # few channels (conv2d's direct)
], ids=["4x4_s2_p1-winograd", "4x4_s2_p1-subpixel", "3x3_s2_p1_op1-subpixel", "2x2_s2-subpixel",
        "3x3_s1_p1-as_conv2d_winograd", "3x3_s1_p1-as_conv2d_direct"])
def test_realistic_layers_match_torch(dtype, route, c_in, c_out, hw, k, kwargs):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, c_in, hw, hw)).astype(dtype)
    w = (rng.standard_normal((c_in, c_out, k, k)) * 0.1).astype(dtype)
    b = rng.standard_normal(c_out).astype(dtype)
    size = torch.nn.functional.conv_transpose2d(torch.tensor(x), torch.tensor(w), **kwargs).shape
    tol = dict(atol=1e-4, rtol=1e-4) if dtype == np.float32 else dict(atol=1e-10, rtol=1e-10)
    _compare_with_torch(x, w, b, kwargs, rng.standard_normal(size).astype(dtype), route, **tol)


@pytest.mark.usefixtures("forced_route_runs")
@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(st.data(), st.integers(1, 2), st.integers(1, 3), st.integers(1, 3), st.sampled_from([np.float64, np.float32]))
def test_winograd_matches_torch_on_any_kernel_twice_the_stride(data, n, c_in, c_out, dtype):
    """Strides 1-4 along each axis, every padding below the kernel, any output padding,
    inputs of 1-7 pixels: the phases' shifts (d_v), uneven phase lengths, partial tiles."""
    stride = tuple(data.draw(st.integers(1, 4)) for _ in range(2))
    padding = tuple(data.draw(st.integers(0, 2 * s - 1)) for s in stride)
    out_pad = tuple(data.draw(st.integers(0, s - 1)) for s in stride)
    hw = tuple(data.draw(st.integers(1, 7)) for _ in range(2))
    size = [(h - 1) * s - 2 * p + 2 * s + o for h, s, p, o in zip(hw, stride, padding, out_pad)]
    if min(size) < 1:
        padding = (0, 0)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((n, c_in) + hw).astype(dtype)
    w = rng.standard_normal((c_in, c_out, 2 * stride[0], 2 * stride[1])).astype(dtype)
    b = rng.standard_normal(c_out).astype(dtype)
    kwargs = dict(stride=stride, padding=padding, output_padding=out_pad)
    y_shape = torch.nn.functional.conv_transpose2d(torch.tensor(x), torch.tensor(w), **kwargs).shape
    tol = dict(atol=1e-4, rtol=1e-4) if dtype == np.float32 else {}
    _compare_with_torch(x, w, b, kwargs, rng.standard_normal(y_shape).astype(dtype), "winograd", **tol)


@pytest.mark.usefixtures("forced_route_runs")
@settings(max_examples=30, deadline=None, derandomize=True, database=None)
@given(st.data(), st.integers(1, 2), st.integers(1, 4), st.sampled_from([np.float64, np.float32]))
def test_as_conv2d_matches_torch_on_any_stride_1_geometry(data, n, c, dtype):
    """Kernels 2-5, any padding up to the dilated kernel's reach on each side, dilation 1-2
    with output padding below it, one or two groups, inputs of 1-7 pixels."""
    kernel = tuple(data.draw(st.integers(2, 5)) for _ in range(2))
    dilation = tuple(data.draw(st.integers(1, 2)) for _ in range(2))
    padding = tuple(data.draw(st.integers(0, d * (k - 1))) for k, d in zip(kernel, dilation))
    out_pad = tuple(data.draw(st.integers(0, d - 1)) for d in dilation)
    groups = data.draw(st.sampled_from([1, 2]))
    hw = tuple(data.draw(st.integers(1, 7)) for _ in range(2))
    if min((h - 1) - 2 * p + d * (k - 1) + o + 1 for h, p, d, k, o in zip(hw, padding, dilation, kernel, out_pad)) < 1:
        padding = (0, 0)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((n, 2 * c, *hw)).astype(dtype)
    w = rng.standard_normal((2 * c, c * 2 // groups, *kernel)).astype(dtype)
    b = rng.standard_normal(c * 2).astype(dtype)
    kwargs = dict(padding=padding, output_padding=out_pad, groups=groups, dilation=dilation)
    y_shape = torch.nn.functional.conv_transpose2d(torch.tensor(x), torch.tensor(w), **kwargs).shape
    tol = dict(atol=1e-4, rtol=1e-4) if dtype == np.float32 else {}
    _compare_with_torch(x, w, b, kwargs, rng.standard_normal(y_shape).astype(dtype), "as_conv2d", **tol)


@pytest.mark.usefixtures("forced_route_runs")
@pytest.mark.parametrize("kwargs, w_shape", [
    (dict(stride=2, padding=(4, 1)), (2, 3, 4, 4)),               # padding as wide as the kernel
    (dict(stride=2, padding=1, dilation=2), (2, 3, 4, 4)),
    (dict(stride=2, padding=1, groups=2), (2, 3, 4, 4)),
    (dict(stride=2, padding=1), (2, 3, 3, 4)),                   # kernel not twice the stride along H
])
def test_winograd_does_not_apply_outside_its_geometry(kwargs, w_shape):
    x = td.tensor(np.random.default_rng(6).standard_normal((1, 2, 5, 6)))
    with td.backends.route(conv_transpose2d="winograd"), td.backends.record_routes() as taken:
        F.conv_transpose2d(x, td.tensor(np.ones(w_shape)), **kwargs)
    assert taken and ("conv_transpose2d", "winograd") not in taken


@pytest.mark.parametrize("shape, w_shape, stride, chosen", [
    ((32, 64, 16, 16), (64, 32, 4, 4), 2, "winograd"),      # bench_alone.py's row
    ((32, 8, 8, 8), (8, 3, 4, 4), 2, "winograd"),            # to RGB
    ((64, 64, 4, 4), (64, 64, 4, 4), 2, "chunked"),         # 4x4 input: 5/9 of the tiles' area thrown away,
                                                            # and subpixel's backward slower than chunked's
    ((16, 64, 12, 12), (64, 64, 4, 4), 2, "subpixel"),
    ((16, 64, 8, 8), (64, 64, 4, 4), 2, "subpixel"),        # 144 tiles: narrow GEMMs
    ((32, 21, 16, 16), (21, 21, 16, 16), 8, "subpixel"),    # FCN-8s' upsampling
    ((1, 21, 7, 7), (21, 21, 64, 64), 32, "subpixel"),      # FCN-32s', on a narrow input
    ((16, 64, 16, 16), (64, 64, 3, 3), 1, "as_conv2d"),     # the deconvnet's 3x3
    ((8, 256, 13, 13), (256, 96, 5, 5), 1, "subpixel"),     # conv2d's route would be im2col's GEMM
])
def test_the_dispatcher_takes_winograd_where_it_measured_faster(shape, w_shape, stride, chosen):
    x, w = td.zeros(shape), td.zeros(w_shape)
    with td.backends.record_routes() as taken:
        F.conv_transpose2d(x, w, stride=stride, padding=stride // 2)
    assert taken == [("conv_transpose2d", chosen if not td.backends.is_reference() else "reference")]


def test_the_dispatcher_counts_the_tiles_the_padding_leaves():
    """Padding 2 (a stride or more) shifts no phase: Z is one shorter than x, and 10x10
    needs 3 tiles of 3, nothing wasted, where padding 1 needs 4 (12 rows for 10)."""
    x, w = td.zeros((64, 8, 10, 10)), td.zeros((8, 8, 4, 4))
    for padding, chosen in ((2, "winograd"), (1, "subpixel")):
        with td.backends.record_routes() as taken:
            F.conv_transpose2d(x, w, stride=2, padding=padding)
        assert taken == [("conv_transpose2d", chosen if not td.backends.is_reference() else "reference")]


needs_workers = pytest.mark.skipif(chunk_workers(8) < 2, reason="run_chunks runs in the calling thread here")


@needs_workers
@pytest.mark.parametrize("route, kwargs, w_shape, needs", [
    ("subpixel", dict(stride=2, padding=1), (6, 4, 4, 4), (True, True)),
    ("subpixel", dict(stride=(2, 3), padding=(2, 0), output_padding=(1, 2), groups=2), (6, 2, 3, 5), (True, True)),
    ("subpixel", dict(stride=2, padding=1), (6, 4, 4, 4), (False, True)),           # dL/dW only
    ("winograd", dict(stride=2, padding=1), (6, 4, 4, 4), (True, True)),
    ("winograd", dict(stride=(2, 3), padding=(3, 1), output_padding=(1, 2)), (6, 4, 4, 6), (True, True)),
    ("winograd", dict(stride=2, padding=1), (6, 4, 4, 4), (False, True)),           # dL/dW only
    ("winograd", dict(stride=2, padding=1), (6, 4, 4, 4), (True, False)),           # dL/dx only
    ("as_conv2d", dict(padding=1), (6, 4, 3, 3), (False, True)),
    ("as_conv2d", dict(padding=(2, 1), groups=2), (6, 2, 3, 3), (True, False)),
])
def test_many_chunks_on_the_workers_match_torch(monkeypatch, route, kwargs, w_shape, needs):
    monkeypatch.setattr(SubpixelTranspose, "chunk_bytes", 1)            # one image per chunk
    monkeypatch.setattr(WinogradTranspose, "chunk_bytes", 1)
    monkeypatch.setattr(WinogradTranspose, "chunk_tiles", 0)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((7, 6, 5, 16))
    w = rng.standard_normal(w_shape)
    b = rng.standard_normal(w_shape[1] * kwargs.get("groups", 1))
    size = torch.nn.functional.conv_transpose2d(torch.tensor(x), torch.tensor(w), **kwargs).shape
    _compare_with_torch(x, w, b, kwargs, rng.standard_normal(size), route, *needs)


@pytest.mark.usefixtures("forced_route_runs")
@pytest.mark.parametrize("max_pad_share", [0.0, 1.0], ids=["col2im_forward", "wide_rows_forward"])
def test_narrow_images_fold_either_way(monkeypatch, max_pad_share):
    """On images narrower than 16 the forward is ChunkedTranspose's; both ways give torch's numbers."""
    monkeypatch.setattr(SubpixelTranspose, "max_pad_share", max_pad_share)
    rng = np.random.default_rng(3)
    x, w, b = rng.standard_normal((3, 4, 5, 6)), rng.standard_normal((4, 3, 4, 4)), rng.standard_normal(3)
    kwargs = dict(stride=2, padding=1)
    size = torch.nn.functional.conv_transpose2d(torch.tensor(x), torch.tensor(w), **kwargs).shape
    _compare_with_torch(x, w, b, kwargs, rng.standard_normal(size), "subpixel")
