"""The direct convolution kernels (tinydl/kernels/direct_conv.py): which layers take
them, and their forward, dL/dx and dL/dW against PyTorch (float64, random upstream
gradient) over the awkward cases: output channels and taps that do not fill a pass,
dilation, asymmetric padding, one image, non-contiguous input, no bias, planes wider
than the vector loops, groups (depthwise, and pairs of outputs within a group), and
strides (the phase planes: any stride, padding and dilation per axis, a 7x7 stem).
Also: float32 stays float32, the serial twin equals the parallel kernel, and the
direct route agrees with the NumPy reference path.

The op table (tests/optable/conv.py) gradient-checks the same kernels: its small
stride-1 convolutions take this route."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

import tinydl as td
import tinydl.nn.functional as F
import tinydl.kernels.conv as C
from tinydl.kernels import _dispatch, direct_conv

pytestmark = [pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning"),
              pytest.mark.usefixtures("routes_on_small_shapes", "forced_route_runs"),
              pytest.mark.skipif(not _dispatch.HAVE_NUMBA, reason="the direct kernels are Numba kernels")]


def _spy(monkeypatch, every_input_grad=False):
    """Names of the direct kernels called through the direct route (kernels/conv.py). With
    ``every_input_grad`` every stride-1 dL/dx runs on them, also where the route gives it
    to chunked (gy a small part of its padded plane): the awkward cases are the kernels'."""
    if every_input_grad:
        monkeypatch.setattr(C.Direct, "input_grad_on_direct", staticmethod(lambda gy_shape, geometry: True))
    calls = []
    for name in ("conv2d_direct", "conv2d_direct_weight_grad"):
        original = getattr(C, name)
        monkeypatch.setattr(C, name, lambda *a, name=name, original=original: calls.append(name) or original(*a))
    return calls


def _forward_backward(lib, functional, x, w, b, g, x_needs_grad=True, **kwargs):
    xt = lib.tensor(x, requires_grad=x_needs_grad)
    wt = lib.tensor(w, requires_grad=True)
    bt = None if b is None else lib.tensor(b, requires_grad=True)
    y = functional.conv2d(xt, wt, bt, **kwargs)
    y.backward(lib.tensor(g))
    grads = [t.grad for t in (xt, wt, bt) if t is not None and t.requires_grad]
    return [a.detach().numpy() for a in [y] + grads]


CASES = [
    (dict(), (3, 1, 32, 32), (6, 1, 5, 5)),                      # LeNet's first layer; 25 taps
    (dict(padding=1), (1, 32, 9, 11), (32, 32, 3, 3)),           # the widest that goes direct (30 tiles)
    (dict(padding=1), (2, 3, 7, 6), (5, 3, 3, 3)),               # odd C_out: a half-empty pass
    (dict(), (1, 1, 7, 5), (2, 1, 3, 3)),                        # one image, 9 taps (not a multiple of 4)
    (dict(padding=(2, 1), dilation=(2, 3)), (2, 3, 9, 10), (3, 3, 3, 2)),
    (dict(padding="same"), (2, 2, 7, 8), (4, 2, 4, 4)),          # asymmetric padding (even kernel)
    (dict(), (2, 2, 4, 5), (3, 2, 4, 5)),                        # kernel = input: one output pixel
    (dict(padding=(0, 2)), (2, 2, 3, 40), (7, 2, 1, 3)),         # 1xk kernel on wide rows
    (dict(padding=2), (2, 2, 41, 37), (3, 2, 5, 5)),             # planes wider than the vector loops
    (dict(padding=1, groups=6), (2, 6, 9, 8), (6, 1, 3, 3)),     # depthwise: one output per pass
    (dict(padding=1, groups=3), (2, 3, 9, 8), (9, 1, 3, 3)),     # depthwise, 3 outputs per channel
    (dict(padding=(2, 1), dilation=(1, 2), groups=2), (2, 4, 7, 9), (4, 2, 3, 2)),   # pairs per group
    (dict(padding=2, groups=4), (3, 8, 10, 10), (8, 2, 5, 5)),
]
IDS = ["lenet_5x5", "32_channels", "odd_out", "batch1_9taps", "dilated", "same_even", "kernel_is_input",
       "1xk", "big_plane", "depthwise", "depthwise_x3", "groups2_dilated", "groups4_5x5"]


@pytest.mark.parametrize("kwargs, x_shape, w_shape", CASES, ids=IDS)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
def test_direct_route_matches_torch(monkeypatch, kwargs, x_shape, w_shape, bias):
    calls = _spy(monkeypatch, every_input_grad=True)
    rng = np.random.default_rng(7)
    x, w, b = rng.standard_normal(x_shape), rng.standard_normal(w_shape), rng.standard_normal(w_shape[0])
    b = b if bias else None
    y_shape = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(w), **kwargs).shape
    g = rng.standard_normal(y_shape)
    ours = _forward_backward(td, F, x, w, b, g, **kwargs)
    theirs = _forward_backward(torch, torch.nn.functional, x, w, b, g, **kwargs)
    for name, a, t in zip(["y", "dx", "dw", "db"], ours, theirs):
        assert a.dtype == np.float64, name
        np.testing.assert_allclose(a, t, rtol=1e-10, atol=1e-10, err_msg=name)
    assert calls == ["conv2d_direct", "conv2d_direct", "conv2d_direct_weight_grad"]    # y, dx, dw


def test_non_contiguous_input_and_float32(monkeypatch):
    calls = _spy(monkeypatch, every_input_grad=True)
    rng = np.random.default_rng(8)
    x = rng.standard_normal((3, 9, 2, 10)).astype(np.float32).transpose(0, 2, 3, 1)    # (3, 2, 10, 9), strided
    w, b = rng.standard_normal((4, 2, 3, 3)).astype(np.float32), rng.standard_normal(4).astype(np.float32)
    g = rng.standard_normal((3, 4, 10, 9)).astype(np.float32)
    ours = _forward_backward(td, F, x, w, b, g, padding=1)
    theirs = _forward_backward(torch, torch.nn.functional, np.ascontiguousarray(x), w, b, g, padding=1)
    for a, t in zip(ours, theirs):
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, t, rtol=1e-4, atol=1e-4)
    assert calls == ["conv2d_direct", "conv2d_direct", "conv2d_direct_weight_grad"]


STRIDED = [
    (dict(stride=2, padding=1), (2, 5, 9, 11), (6, 5, 3, 3)),             # odd sizes: unequal phases
    (dict(stride=(1, 2), padding=(1, 0)), (2, 3, 7, 10), (5, 3, 3, 3)),
    (dict(stride=(3, 2), padding=(2, 1), dilation=(2, 1)), (1, 3, 13, 10), (4, 3, 5, 4)),
    (dict(stride=3), (2, 3, 7, 7), (2, 3, 2, 2)),                         # stride > kernel: unread pixels
    (dict(stride=(2, 3), padding=(1, 2)), (2, 3, 9, 14), (4, 3, 3, 5)),   # padding 2 on three phases
    (dict(stride=2, padding=2, dilation=3, groups=6), (2, 6, 11, 11), (6, 1, 3, 3)),   # depthwise, dilated
    (dict(stride=2, padding=1, groups=2), (2, 8, 10, 10), (8, 4, 3, 3)),  # four outputs per group per pass
    (dict(stride=2, padding=3), (2, 3, 20, 20), (8, 3, 7, 7)),            # a 7x7 stem
    (dict(stride=2, padding=3), (2, 3, 8, 9), (4, 3, 3, 3)),              # padding wider than the kernel
    (dict(stride=(1, 3), padding=(1, 0)), (2, 2, 5, 2), (3, 2, 3, 1)),    # narrower than the stride
]


def test_strided_kernels_with_asymmetric_padding_match_torch():
    """Padding (top, bottom, left, right) that F.conv2d cannot ask for, straight to the kernels."""
    rng = np.random.default_rng(13)
    x, w = rng.standard_normal((2, 3, 11, 12)), rng.standard_normal((4, 3, 3, 4))
    padding, stride, dilation = (2, 0, 1, 3), (2, 3), (1, 2)
    xt = torch.tensor(np.pad(x, ((0, 0), (0, 0), padding[:2], padding[2:])), requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    yt = torch.nn.functional.conv2d(xt, wt, stride=stride, dilation=dilation)
    g = rng.standard_normal(yt.shape)
    yt.backward(torch.tensor(g))
    np.testing.assert_allclose(direct_conv.conv2d_direct(x, w, None, padding, dilation, 1, stride),
                               yt.detach().numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(direct_conv.conv2d_direct_weight_grad(x, g, (3, 4), padding, dilation, 1, stride),
                               wt.grad.numpy(), rtol=1e-10, atol=1e-10)


@st.composite
def strided_geometries(draw):
    """(x_shape, w_shape, padding (top, bottom, left, right), dilation, stride, groups)
    with an output of at least one pixel: strides 1-4 per axis, above or below the
    kernel's reach, padding up to 4 on each side on its own."""
    groups, c_per_group, c_out_per_group = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 5))
    kernel, dilation, stride, hw, padding = [], [], [], [], []
    for _ in range(2):
        k, d, s = draw(st.integers(1, 5)), draw(st.integers(1, 2)), draw(st.integers(1, 4))
        before, after = draw(st.integers(0, 4)), draw(st.integers(0, 4))
        size = draw(st.integers(max(1, d * (k - 1) + 1 - before - after), 12))
        kernel.append(k), dilation.append(d), stride.append(s), hw.append(size)
        padding += [before, after]
    x_shape = (draw(st.integers(1, 3)), groups * c_per_group) + tuple(hw)
    return x_shape, (groups * c_out_per_group, c_per_group) + tuple(kernel), tuple(padding), tuple(dilation), \
        tuple(stride), groups


@pytest.mark.skipif(td.backends.is_reference(), reason="TINYDL_NO_NUMBA=1: the direct kernels are Numba kernels")
@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(strided_geometries(), st.sampled_from([np.float64, np.float32]))
def test_direct_kernels_on_any_stride_padding_and_dilation_match_torch(geometry, dtype):
    """y and dL/dW of conv2d_direct, straight from the kernels, against PyTorch's on x
    padded beforehand (so each side's padding is its own), a random upstream gradient."""
    x_shape, w_shape, padding, dilation, stride, groups = geometry
    rng = np.random.default_rng(14)
    x, w = rng.standard_normal(x_shape).astype(dtype), rng.standard_normal(w_shape).astype(dtype)
    xt = torch.tensor(np.pad(x, ((0, 0), (0, 0), padding[:2], padding[2:])))
    wt = torch.tensor(w, requires_grad=True)
    yt = torch.nn.functional.conv2d(xt, wt, stride=stride, dilation=dilation, groups=groups)
    g = rng.standard_normal(yt.shape).astype(dtype)
    yt.backward(torch.tensor(g))
    tol = 1e-10 if dtype == np.float64 else 1e-4
    y = direct_conv.conv2d_direct(x, w, None, padding, dilation, groups, stride)
    gw = direct_conv.conv2d_direct_weight_grad(x, g, w_shape[2:], padding, dilation, groups, stride)
    assert y.dtype == gw.dtype == dtype
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(gw, wt.grad.numpy(), rtol=tol, atol=tol)


@pytest.mark.usefixtures("forced_route_runs")
@pytest.mark.parametrize("kwargs, x_shape, w_shape", STRIDED)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_strided_direct_route_matches_torch(monkeypatch, kwargs, x_shape, w_shape, dtype):
    """The phase planes (kernels/direct_conv.py) on strides, dilations and groups: y and dL/dW
    from the direct kernels, dL/dx from chunked's, all as torch's (a random upstream gradient)."""
    calls = _spy(monkeypatch)
    rng = np.random.default_rng(12)
    x, w, b = (rng.standard_normal(s).astype(dtype) for s in (x_shape, w_shape, w_shape[:1]))
    g = rng.standard_normal(torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(w), **kwargs).shape).astype(dtype)
    with td.backends.route(conv2d="direct"):
        ours = _forward_backward(td, F, x, w, b, g, **kwargs)
    theirs = _forward_backward(torch, torch.nn.functional, x, w, b, g, **kwargs)
    tol = 1e-10 if dtype == np.float64 else 1e-4
    for name, a, t in zip(["y", "dx", "dw", "db"], ours, theirs):
        assert a.dtype == dtype, name
        np.testing.assert_allclose(a, t, rtol=tol, atol=tol, err_msg=name)
    assert calls == ["conv2d_direct", "conv2d_direct_weight_grad"]


ALL, NOT_DX, NONE = "y, dL/dx, dL/dW", "y, dL/dW", "none"     # which products run on the direct kernels


@pytest.mark.parametrize("kwargs, x_shape, w_shape, x_needs_grad, direct", [
    (dict(padding=1), (2, 32, 6, 6), (32, 32, 3, 3), True, ALL),
    (dict(padding=1), (2, 4, 6, 6), (33, 4, 3, 3), True, NONE),           # too many output channels
    (dict(padding=1), (2, 33, 6, 6), (8, 33, 3, 3), True, NONE),          # dL/dx would have 33 outputs ...
    (dict(padding=1), (2, 33, 6, 6), (8, 33, 3, 3), False, NOT_DX),       # ... unless x needs none
    (dict(), (2, 6, 14, 14), (16, 6, 5, 5), True, NOT_DX),                # LeNet's conv2: gy 10x10 of 18x18
    (dict(), (2, 1, 32, 32), (6, 1, 5, 5), True, ALL),                    # LeNet's conv1: gy 28x28 of 36x36
    (dict(stride=2), (2, 3, 7, 7), (4, 3, 3, 3), True, NONE),             # strided, 3x3 planes
    (dict(stride=2, padding=1), (2, 16, 32, 32), (32, 16, 3, 3), True, NOT_DX),   # ResNet-20's 16->32
    (dict(stride=2, padding=1), (2, 32, 16, 16), (64, 32, 3, 3), True, NONE),     # 8x8 planes
    (dict(stride=2, padding=3), (1, 3, 32, 32), (64, 3, 7, 7), False, NOT_DX),    # ResNet-50's stem
    (dict(stride=2, padding=1), (1, 33, 32, 32), (8, 33, 3, 3), False, NONE),     # 33 inputs
    (dict(stride=2, padding=1), (1, 4, 32, 32), (65, 4, 3, 3), False, NONE),      # 65 outputs
    (dict(groups=2, padding=1), (2, 4, 6, 6), (4, 2, 3, 3), True, ALL),   # grouped
    (dict(groups=2), (2, 4, 6, 6), (66, 2, 3, 3), True, NONE),            # 33 outputs per group
    (dict(padding=3), (2, 3, 6, 6), (4, 3, 3, 3), True, NONE),            # padding beyond the kernel ...
    (dict(padding=3), (2, 3, 6, 6), (4, 3, 3, 3), False, NOT_DX),         # ... matters only for dL/dx
], ids=["32_in_32_out", "33_out", "33_in", "33_in_no_dx", "lenet_conv2", "lenet_conv1", "strided_small",
        "strided", "strided_8x8", "strided_stem", "strided_33_in", "strided_65_out", "grouped", "grouped_33_out",
        "wide_pad", "wide_pad_no_dx"])
def test_which_layers_go_direct(monkeypatch, kwargs, x_shape, w_shape, x_needs_grad, direct):
    """Which layers take the direct route, and which of its products run on the direct
    kernels: dL/dx goes to chunked's GEMM + col2im for a stride, or where gy is less than
    half of its "full"-padded plane."""
    calls = _spy(monkeypatch)
    rng = np.random.default_rng(9)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    y = F.conv2d(td.tensor(x, requires_grad=x_needs_grad), td.tensor(w, requires_grad=True), **kwargs)
    y.backward(td.tensor(rng.standard_normal(y.shape)))
    expected = {ALL: ["conv2d_direct", "conv2d_direct", "conv2d_direct_weight_grad"],
                NOT_DX: ["conv2d_direct", "conv2d_direct_weight_grad"], NONE: []}[direct]
    assert calls == expected


def test_no_numba_takes_the_reference_path(monkeypatch):
    """td.backends.reference() runs im2col + GEMM; both routes agree to rounding."""
    rng = np.random.default_rng(10)
    x, w, b = rng.standard_normal((2, 3, 8, 7)), rng.standard_normal((5, 3, 3, 3)), rng.standard_normal(5)
    g = rng.standard_normal((2, 5, 8, 7))
    results = {}
    for reference in (False, True):
        calls = _spy(monkeypatch)
        with td.backends.reference(reference):
            results[reference] = _forward_backward(td, F, x, w, b, g, padding=1)
        assert bool(calls) == (not reference)
    for a, r in zip(results[False], results[True]):
        np.testing.assert_allclose(a, r, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("stride", [(1, 1), (2, 2)], ids=["stride_1", "stride_2"])
@pytest.mark.parametrize("groups", [1, 3], ids=["one_group", "depthwise"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_serial_twin_equals_parallel_kernel(monkeypatch, dtype, groups, stride):
    """One share of the images on the serial twin, or one per thread on the parallel
    kernel: the forward is the same to the bit (each image is computed alone), dL/dW
    adds the shares' partial sums and so agrees to rounding."""
    rng = np.random.default_rng(11)
    c_out = 4 if groups == 1 else 3
    x = rng.standard_normal((5, 3, 9, 8)).astype(dtype)
    w = rng.standard_normal((c_out, 3 // groups, 3, 3)).astype(dtype)
    g = rng.standard_normal((5, c_out, 8 // stride[0] + 1, 7 // stride[1] + 1)).astype(dtype)    # y.shape
    results = []
    for min_size in (1 << 62, 0):                                    # everything serial, then everything parallel
        monkeypatch.setattr(_dispatch, "PARALLEL_MIN_SIZE", min_size)
        results.append((direct_conv.conv2d_direct(x, w, None, (1, 1, 1, 1), (1, 1), groups, stride),
                        direct_conv.conv2d_direct_weight_grad(x, g, (3, 3), (1, 1, 1, 1), (1, 1), groups, stride)))
    (y_serial, gw_serial), (y_parallel, gw_parallel) = results
    assert y_serial.dtype == gw_serial.dtype == dtype
    np.testing.assert_array_equal(y_serial, y_parallel)
    tol = 1e-4 if dtype == np.float32 else 1e-11                    # the sums are ~20 in size
    np.testing.assert_allclose(gw_serial, gw_parallel, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype, gy_dtype", [(np.float32, np.float64), (np.float64, np.float32)])
def test_weight_grad_takes_gy_in_xs_dtype(dtype, gy_dtype):
    """The kernel sizes its lane-wise sums by x's dtype; a gy of the other one is cast first
    (it once wrote past the sums, float32 x and float64 gy)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 6, 14, 14)).astype(dtype)
    gy = rng.standard_normal((3, 16, 10, 10)).astype(gy_dtype)
    gw = direct_conv.conv2d_direct_weight_grad(x, gy, (5, 5), (0, 0, 0, 0), (1, 1))
    assert gw.dtype == dtype
    np.testing.assert_array_equal(
        gw, direct_conv.conv2d_direct_weight_grad(x, gy.astype(dtype), (5, 5), (0, 0, 0, 0), (1, 1)))
