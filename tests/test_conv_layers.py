"""Convolution and pooling layers against torch.nn (copied weights, float32): outputs,
input and parameter gradients, state_dict keys, reprs, default initialisation,
padding modes, the errors for bad input, the Numba path against the NumPy
reference path, scratch-buffer safety, and cuda == cpu.

The ops' gradients are gradient-checked by the op table (tests/optable/conv.py, pool.py).
"""
import math

import numpy as np
import pytest
import torch

import tinydl as td
import tinydl.nn as nn
import tinydl.nn.functional as F

# PyTorch warns that 'same' padding with an even kernel copies the input.
pytestmark = [pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning"),
              pytest.mark.usefixtures("routes_on_small_shapes")]   # small layers, the routes as for big ones


def _np(t):
    return t.detach().numpy() if isinstance(t, torch.Tensor) else td.backend.to_device(t.array, "cpu")


def _twins(cls_name, *args, **kwargs):
    """The same layer from tinydl and torch, torch's random weights copied into ours."""
    theirs = getattr(torch.nn, cls_name)(*args, **kwargs)
    ours = getattr(nn, cls_name)(*args, **kwargs)
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


def _compare(ours, theirs, x, extra=(), atol=1e-5, rtol=1e-4, call=None):
    """Forward both layers on ``x`` (float32), backward a random gradient, compare the
    outputs, the input gradient and every parameter gradient."""
    call = call or (lambda layer, inp, *e: layer(inp, *e))
    xo = td.tensor(x, requires_grad=True)
    xt = torch.tensor(x, requires_grad=True)
    yo = call(ours, xo, *[td.tensor(e.numpy()) if isinstance(e, torch.Tensor) else e for e in extra])
    yt = call(theirs, xt, *extra)
    yo, yt = (yo[0], yt[0]) if isinstance(yt, tuple) else (yo, yt)
    assert yo.shape == tuple(yt.shape)
    assert yo.dtype == np.float32
    np.testing.assert_allclose(_np(yo), _np(yt), atol=atol, rtol=rtol)
    g = np.random.default_rng(1).standard_normal(yo.shape).astype(np.float32)
    yo.backward(td.tensor(g))
    yt.backward(torch.tensor(g))
    np.testing.assert_allclose(_np(xo.grad), _np(xt.grad), atol=atol * 10, rtol=rtol * 10)
    params_t = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        assert p.grad is not None, name
        assert p.grad.dtype == np.float32
        np.testing.assert_allclose(_np(p.grad), _np(params_t[name].grad), atol=atol * 10, rtol=rtol * 10,
                                   err_msg=name)
    return yo


def _x(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _distinct(*shape, seed=0):
    n = int(np.prod(shape))
    return (np.random.default_rng(seed).permutation(n).reshape(shape) / n).astype(np.float32)


# ---------------------------------------------------------------- convolution layers
@pytest.mark.parametrize("args, kwargs, shape", [
    ((3, 8, 3), {}, (2, 3, 9, 7)),
    ((3, 8, 5), dict(stride=2, padding=2), (2, 3, 11, 10)),
    ((4, 6, (3, 2)), dict(stride=(2, 1), padding=(1, 0), dilation=(1, 2), bias=False), (1, 4, 9, 9)),
    ((4, 8, 3), dict(groups=2, padding=1), (2, 4, 6, 6)),
    ((6, 6, 3), dict(groups=6, padding=1), (2, 6, 7, 5)),                 # depthwise
    ((3, 5, 4), dict(padding="same"), (2, 3, 7, 8)),                      # even kernel: asymmetric
    ((3, 5, 3), dict(padding="valid"), (2, 3, 7, 8)),
    ((3, 5, 1), {}, (2, 3, 4, 4)),                                        # 1x1
    ((3, 4, 3), dict(padding=1, padding_mode="reflect"), (2, 3, 6, 5)),
    ((3, 4, 3), dict(padding=(2, 1), padding_mode="replicate"), (2, 3, 6, 5)),
    ((3, 4, 3), dict(padding=1, padding_mode="circular", stride=2), (2, 3, 6, 5)),
    ((3, 4, 4), dict(padding="same", padding_mode="circular"), (2, 3, 6, 5)),
    ((3, 4, 3), dict(padding=1), (3, 6, 5)),                              # unbatched
], ids=["basic", "stride_pad", "asym_dilated_nobias", "groups", "depthwise", "same_even", "valid", "1x1",
        "reflect", "replicate", "circular_strided", "same_circular", "unbatched"])
def test_conv2d_matches_torch(args, kwargs, shape):
    ours, theirs = _twins("Conv2d", *args, **kwargs)
    _compare(ours, theirs, _x(*shape))
    assert repr(ours) == repr(theirs)


@pytest.mark.parametrize("args, kwargs, shape", [
    ((3, 5, 3), dict(padding=1), (2, 3, 10)),
    ((4, 4, 3), dict(padding=1, padding_mode="circular"), (2, 4, 9)),     # Deep Snake's circular conv
    ((4, 6, 5), dict(dilation=2, padding="same", groups=2, bias=False), (4, 12)),
])
def test_conv1d_matches_torch(args, kwargs, shape):
    ours, theirs = _twins("Conv1d", *args, **kwargs)
    _compare(ours, theirs, _x(*shape))
    assert repr(ours) == repr(theirs)


@pytest.mark.parametrize("args, kwargs, shape, output_size", [
    ((3, 5, 3), {}, (2, 3, 4, 5), None),
    ((3, 4, 4), dict(stride=2, padding=1), (2, 3, 4, 3), None),
    ((4, 6, 3), dict(stride=2, padding=1, output_padding=1, groups=2, dilation=1), (1, 4, 3, 4), None),
    ((3, 2, 3), dict(stride=3, padding=1, bias=False), (2, 3, 3, 3), (8, 9)),
    ((3, 2, 3), dict(stride=2), (2, 3, 3, 3), (2, 2, 8, 7)),
    ((3, 2, 3), dict(stride=2, dilation=2), (3, 3, 3), None),             # unbatched
], ids=["basic", "4x4_s2_p1", "outpad_groups", "output_size", "output_size_full", "unbatched"])
def test_conv_transpose2d_matches_torch(args, kwargs, shape, output_size):
    ours, theirs = _twins("ConvTranspose2d", *args, **kwargs)
    y = _compare(ours, theirs, _x(*shape), call=lambda layer, x: layer(x, output_size=output_size))
    if output_size is not None:
        assert y.shape[-2:] == tuple(output_size)[-2:]
    assert repr(ours) == repr(theirs)


def test_conv_transpose1d_matches_torch():
    ours, theirs = _twins("ConvTranspose1d", 3, 4, 3, stride=2, padding=1, output_padding=1)
    _compare(ours, theirs, _x(2, 3, 7))


def test_conv_stack_matches_torch():
    """Two convolutions of the same shape in one graph share the scratch buffers:
    the backward passes must still see their own inputs."""
    layers = lambda lib: lib.Sequential(lib.Conv2d(3, 3, 3, padding=1), lib.ReLU(),          # noqa: E731
                                        lib.Conv2d(3, 3, 3, padding=1), lib.MaxPool2d(2),
                                        lib.Conv2d(3, 4, 3, padding=1, groups=1))
    theirs = layers(torch.nn)
    ours = layers(nn)
    ours.load_state_dict(theirs.state_dict())
    _compare(ours, theirs, _x(2, 3, 8, 8))


@pytest.mark.usefixtures("forced_route_runs")
@pytest.mark.parametrize("route", ["chunked", "direct"])
def test_outputs_do_not_alias_scratch_buffers(route):
    conv = nn.Conv2d(2, 3, 3)
    x1, x2 = td.tensor(_x(2, 2, 6, 6, seed=1)), td.tensor(_x(2, 2, 6, 6, seed=2))
    with td.backends.route(conv2d=route), td.backends.record_routes() as taken:
        y1 = conv(x1)
        kept = y1.detach().numpy().copy()
        conv(x2)
        np.testing.assert_array_equal(y1.detach().numpy(), kept)
        with td.no_grad():
            y3 = conv(x1)
    np.testing.assert_array_equal(y3.numpy(), kept)
    assert taken == [("conv2d", route)] * 3


@pytest.mark.parametrize("chunk_bytes", [1, 3 * 4 * 9 * 36 * 2, 1 << 30],
                         ids=["one_image_chunks", "two_image_chunks", "one_chunk"])
@pytest.mark.usefixtures("forced_route_runs")
def test_chunked_route_matches_torch(monkeypatch, chunk_bytes):
    """The chunked route's batch loop (images per chunk from ``chunk_bytes``), whose backward
    builds each chunk's columns again, gives one pass's numbers."""
    from tinydl.kernels.conv import Chunked
    monkeypatch.setattr(Chunked, "chunk_bytes", chunk_bytes)
    with td.backends.route(conv2d="chunked", conv_transpose2d="chunked"), td.backends.record_routes() as taken:
        ours, theirs = _twins("Conv2d", 3, 4, 3, padding=1, groups=1)
        _compare(ours, theirs, _x(5, 3, 6, 6))
        ours, theirs = _twins("Conv2d", 4, 6, 3, stride=2, groups=2)
        _compare(ours, theirs, _x(5, 4, 7, 7))
        ours, theirs = _twins("ConvTranspose2d", 3, 4, 3, stride=2, padding=1, output_padding=1)
        _compare(ours, theirs, _x(5, 3, 4, 4))
    with td.backends.route(conv2d="gy_columns"), td.backends.record_routes() as gy_taken:
        ours, theirs = _twins("Conv2d", 4, 3, 3, padding=1)              # dL/dx by the chunked route on gy
        _compare(ours, theirs, _x(5, 4, 6, 6))
    assert {name for _, name in taken} == {"chunked"}
    assert ("conv2d", "gy_columns") in gy_taken


def test_a_retained_graph_survives_other_forwards():
    """The routes' scratch buffers are reused by every call: a retained graph must not
    depend on them, and forwards run in between must not change its gradients."""
    conv = nn.Conv2d(2, 3, 3)
    x1, x2 = td.tensor(_x(2, 2, 6, 6, seed=1)), td.tensor(_x(2, 2, 6, 6, seed=2))
    g = td.tensor(_x(2, 3, 4, 4, seed=3))
    with td.backends.route(conv2d="chunked"):
        conv(x1).backward(g)
        expected = _np(conv.weight.grad).copy()
        conv.zero_grad()
        y1 = conv(x1)
        y1.backward(g, retain_graph=True)
        conv(x2).backward(g)                     # writes the same scratch buffers
        conv.zero_grad()
        y1.backward(g)                           # second pass through the retained graph
    np.testing.assert_allclose(_np(conv.weight.grad), expected, rtol=1e-6)


@pytest.mark.usefixtures("forced_route_runs")
@pytest.mark.parametrize("route", ["reference", "im2col", "chunked", "gy_columns", "direct", "winograd"])
@pytest.mark.parametrize("kwargs, x_shape, w_shape", [
    (dict(padding=1), (3, 4, 7, 6), (5, 4, 3, 3)),
    (dict(), (2, 3, 6, 7), (4, 3, 3, 2)),                                 # no padding: the full conv pads k-1
    (dict(padding=(2, 0), dilation=(2, 3)), (2, 3, 9, 10), (2, 3, 3, 3)),
    (dict(padding="same"), (2, 3, 7, 8), (4, 3, 4, 4)),                   # asymmetric padding
    (dict(padding=(0, 2)), (2, 2, 5, 6), (3, 2, 3, 2)),                   # pad > k-1: no full convolution
    (dict(padding=1, stride=(1, 2)), (2, 2, 5, 6), (3, 2, 3, 3)),         # strided: im2col's and direct
    (dict(padding=(0, 2), stride=2, dilation=(1, 3)), (2, 2, 9, 11), (3, 2, 3, 2)),
], ids=["3x3_pad1", "no_pad", "dilated", "same_even", "pad_beyond_kernel", "strided", "strided_dilated"])
@pytest.mark.parametrize("x_needs_grad", [True, False], ids=["dx", "no_dx"])
def test_backward_routes_match_torch(route, kwargs, x_shape, w_shape, x_needs_grad):
    """Every route of Conv2d gives torch's output and gradients (float64, random upstream
    gradient), and runs where it applies: gy's columns only for stride 1 and, when x needs
    a gradient, padding no wider than the dilated kernel; the direct kernels for stride 1
    there, and for any stride (its dL/dx is then chunked's); Winograd's only for 3x3,
    stride 1, no dilation, padding up to 2; elsewhere the usual choice runs."""
    rng = np.random.default_rng(5)
    x, w, b = rng.standard_normal(x_shape), rng.standard_normal(w_shape), rng.standard_normal(w_shape[0])
    xo, xt = td.tensor(x, requires_grad=x_needs_grad), torch.tensor(x, requires_grad=x_needs_grad)
    wo, bo = td.tensor(w, requires_grad=True), td.tensor(b, requires_grad=True)
    wt, bt = torch.tensor(w, requires_grad=True), torch.tensor(b, requires_grad=True)
    scope = td.backends.reference() if route == "reference" else td.backends.route(conv2d=route)
    with scope, td.backends.record_routes() as taken:
        yo = F.conv2d(xo, wo, bo, **kwargs)
        g = rng.standard_normal(yo.shape)
        yo.backward(td.tensor(g))
    yt = torch.nn.functional.conv2d(xt, wt, bt, **kwargs)
    yt.backward(torch.tensor(g))
    pairs = [(yo, yt), (wo.grad, wt.grad), (bo.grad, bt.grad)] + [(xo.grad, xt.grad)] * x_needs_grad
    for ours, theirs in pairs:
        assert ours.dtype == np.float64
        np.testing.assert_allclose(_np(ours), _np(theirs), rtol=1e-10, atol=1e-10)
    stride_1 = kwargs.get("stride", 1) == 1
    padding_allowed = kwargs.get("padding") != (0, 2) or not x_needs_grad
    applies = {"gy_columns": stride_1 and padding_allowed and x_needs_grad,
               "direct": padding_allowed or not stride_1,
               "winograd": w_shape[2:] == (3, 3) and stride_1 and "dilation" not in kwargs}.get(route, True)
    assert (taken == [("conv2d", route)]) == applies, taken


def test_state_dict_keys_match_torch():
    def net(lib):
        return lib.Sequential(lib.Conv2d(1, 4, 3), lib.MaxPool2d(2), lib.Conv2d(4, 4, 3, bias=False),
                              lib.ConvTranspose2d(4, 2, 2, stride=2), lib.AdaptiveAvgPool2d(1),
                              lib.Conv1d(2, 2, 1))
    ours, theirs = net(nn), net(torch.nn)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for (k, a), (_, b) in zip(ours.state_dict().items(), theirs.state_dict().items()):
        assert a.shape == tuple(b.shape), k


@pytest.mark.parametrize("cls, args, fan_in", [
    ("Conv2d", (6, 16, 5), 6 * 25),
    ("Conv2d", (6, 12, (3, 2), 1, 0, 1, 3), 2 * 6),
    ("ConvTranspose2d", (16, 6, 4), 6 * 16),         # weight (in, out, kh, kw): fan_in = out * kh * kw
    ("Conv1d", (4, 8, 7), 4 * 7),
])
def test_default_init_is_pytorchs(cls, args, fan_in):
    td.manual_seed(0)
    layer = getattr(nn, cls)(*args)
    bound = 1 / math.sqrt(fan_in)    # kaiming_uniform(a=sqrt(5)): gain sqrt(2/6), bound gain*sqrt(3/fan_in)
    w, b = _np(layer.weight), _np(layer.bias)
    assert w.dtype == np.float32 and b.dtype == np.float32
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.8 * bound
    assert np.abs(b).max() <= bound
    assert abs(w.std() - bound / math.sqrt(3)) < 0.15 * bound


# ---------------------------------------------------------------- pooling layers
@pytest.mark.parametrize("cls, args, kwargs, shape", [
    ("MaxPool2d", (2,), {}, (2, 3, 6, 7)),
    ("MaxPool2d", (3, 2, 1), dict(ceil_mode=True), (2, 3, 8, 7)),
    ("MaxPool2d", ((2, 3),), dict(stride=1, dilation=(2, 1)), (3, 6, 7)),
    ("AvgPool2d", (3, 2, 1), dict(count_include_pad=False, ceil_mode=True), (2, 3, 8, 7)),
    ("AvgPool2d", (2,), dict(divisor_override=3), (2, 3, 6, 6)),
    ("AdaptiveAvgPool2d", ((3, 5),), {}, (2, 3, 7, 9)),
    ("AdaptiveAvgPool2d", (1,), {}, (2, 3, 7, 9)),
    ("AdaptiveMaxPool2d", ((None, 4),), {}, (2, 3, 7, 9)),
    ("MaxPool1d", (3, 2), dict(padding=1), (2, 3, 9)),
    ("AvgPool1d", (3, 2), dict(padding=1), (2, 3, 9)),
    ("AdaptiveAvgPool1d", (4,), {}, (2, 3, 9)),
    ("AdaptiveMaxPool1d", (4,), {}, (2, 3, 9)),
])
def test_pooling_matches_torch(cls, args, kwargs, shape):
    ours, theirs = _twins(cls, *args, **kwargs)
    _compare(ours, theirs, _distinct(*shape))
    assert repr(ours) == repr(theirs)


def test_maxpool_indices_and_unpool_match_torch():
    """ZFNet's deconvnet step: overlapping 3x3/2 pooling with switches, then unpooling."""
    pool_o, pool_t = _twins("MaxPool2d", 3, 2, return_indices=True)
    unpool_o, unpool_t = _twins("MaxUnpool2d", 3, 2)
    x = _distinct(2, 3, 9, 9)
    yo, io = pool_o(td.tensor(x))
    yt, it = pool_t(torch.tensor(x))
    np.testing.assert_array_equal(_np(io), it.numpy())
    assert io.dtype == np.int64
    zo = unpool_o(yo, io, output_size=(9, 9))
    zt = unpool_t(yt, it, output_size=(9, 9))
    np.testing.assert_array_equal(_np(zo), _np(zt))
    assert repr(unpool_o) == repr(unpool_t) and repr(pool_o) == repr(pool_t)


def test_global_average_pooling_is_the_mean():
    x = _x(2, 3, 5, 4)
    y = F.adaptive_avg_pool2d(td.tensor(x), 1)
    np.testing.assert_allclose(_np(y), x.mean(axis=(2, 3), keepdims=True), rtol=1e-6)


# ---------------------------------------------------------------- bad input
def _raises(exc, fn, *needles):
    with pytest.raises(exc) as info:
        fn()
    for needle in needles:
        assert needle in str(info.value), f"{needle!r} not in {str(info.value)!r}"


def test_conv2d_layer_errors_name_the_layer():
    conv = nn.Conv2d(3, 16, 5)
    _raises(RuntimeError, lambda: conv(td.zeros(8, 1, 32, 32)),
            "Conv2d(3, 16, kernel_size=(5, 5), stride=(1, 1))", "expected input with 3 channels",
            "(8, 1, 32, 32)")
    _raises(RuntimeError, lambda: conv(td.zeros(3, 32)), "Conv2d(3, 16", "got shape (3, 32)")
    _raises(RuntimeError, lambda: conv(td.zeros(1, 3, 4, 4)), "conv2d", "(1, 3, 4, 4)",
            "smaller than the kernel (5, 5)")
    _raises(ValueError, lambda: nn.Conv2d(4, 6, 3, groups=4), "out_channels", "divisible by groups")
    _raises(ValueError, lambda: nn.Conv2d(3, 6, 3, groups=2), "in_channels", "divisible by groups")
    _raises(ValueError, lambda: nn.Conv2d(3, 6, 3, stride=2, padding="same"), "strided")
    _raises(ValueError, lambda: nn.Conv2d(3, 6, 3, padding_mode="mirror"), "padding_mode")
    _raises(ValueError, lambda: nn.ConvTranspose2d(3, 6, 3, padding_mode="reflect"), "zeros")
    _raises(RuntimeError, lambda: nn.Conv1d(3, 4, 3)(td.zeros(2, 4, 9)), "Conv1d(3, 4", "3 channels")
    _raises(ValueError, lambda: nn.ConvTranspose2d(3, 2, 3, stride=2)(td.zeros(1, 3, 4, 4), output_size=(12, 9)),
            "output size", "9 to 10")


def test_conv_functional_errors():
    x, w = td.zeros(2, 4, 8, 8), td.zeros(6, 2, 3, 3)
    _raises(RuntimeError, lambda: F.conv2d(x, td.zeros(6, 2, 3)), "conv2d", "4-D weight", "(6, 2, 3)")
    _raises(RuntimeError, lambda: F.conv2d(td.zeros(1, 2, 4, 8, 8), w), "conv2d", "(1, 2, 4, 8, 8)")
    _raises(RuntimeError, lambda: F.conv2d(x, w), "expected input with 2 channels", "groups=1", "(2, 4, 8, 8)")
    _raises(RuntimeError, lambda: F.conv2d(x, td.zeros(6, 1, 3, 3), groups=4), "groups=4", "6 output channels")
    _raises(RuntimeError, lambda: F.conv2d(x, w, groups=2, dilation=4), "dilated by (4, 4)", "output would be empty")
    _raises(RuntimeError, lambda: F.conv2d(x, w, td.zeros(5), groups=2), "bias of shape (6,)")
    _raises(RuntimeError, lambda: F.conv2d(x, td.zeros(6, 2, 3, 3, dtype=td.float64), groups=2), "float64")
    _raises(ValueError, lambda: F.conv2d(x, w, groups=2, stride=0), "stride")
    _raises(ValueError, lambda: F.conv2d(x, w, groups=2, padding="full"), "padding")
    _raises(ValueError, lambda: F.conv_transpose2d(x, td.zeros(4, 3, 3, 3), stride=2, output_padding=2),
            "output padding must be smaller than either stride or dilation")
    _raises(RuntimeError, lambda: F.conv_transpose2d(x, td.zeros(3, 3, 3, 3)), "conv_transpose2d",
            "expected input with 3 channels")
    _raises(RuntimeError, lambda: F.conv1d(td.zeros(2, 4, 9), td.zeros(3, 2, 3)), "conv1d",
            "expected input with 2 channels")


def test_conv2d_checks_a_call_as_often_as_it_is_made():
    """conv2d remembers the arguments of calls that passed their checks; a call that failed
    fails again, a float where an int is due fails after the int passed, and lists work."""
    x, w = td.zeros(2, 4, 8, 8), td.zeros(6, 2, 3, 3)
    for _ in range(2):
        _raises(RuntimeError, lambda: F.conv2d(x, w), "expected input with 2 channels")
        assert F.conv2d(x, w, groups=2, stride=(2, 2), padding=1).shape == (2, 6, 4, 4)
    _raises(TypeError, lambda: F.conv2d(x, w, groups=2, stride=2.0, padding=1), "stride")
    _raises(ValueError, lambda: F.conv2d(x, w, groups=2, stride=(2.0, 2), padding=1), "stride")
    assert F.conv2d(x, w, groups=2, stride=[2, 1], padding=[1, 0]).shape == (2, 6, 4, 6)


def test_pool_errors():
    x = td.zeros(1, 2, 5, 5)
    _raises(ValueError, lambda: F.max_pool2d(x, 3, padding=2), "max_pool2d", "half")
    _raises(RuntimeError, lambda: F.max_pool2d(x, 6), "max_pool2d", "too small")
    _raises(RuntimeError, lambda: F.avg_pool2d(td.zeros(5, 5), 2), "avg_pool2d", "(5, 5)")
    _raises(ValueError, lambda: F.avg_pool2d(x, 2, divisor_override=0), "divisor")
    _raises(RuntimeError, lambda: nn.MaxPool2d(2)(td.zeros(2, 1, 2, 4, 4)), "MaxPool2d(kernel_size=2",
            "(2, 1, 2, 4, 4)")
    _raises(ValueError, lambda: F.adaptive_avg_pool2d(x, (0, 2)), "output_size")
    y, i = F.max_pool2d(td.tensor(_distinct(1, 2, 4, 4)), 2, return_indices=True)
    _raises(ValueError, lambda: F.max_unpool2d(y, i, 2, output_size=(7, 4)), "max_unpool2d", "output_size")
    bad = td.tensor(np.full(i.shape, 16, dtype=np.int64))
    _raises(RuntimeError, lambda: F.max_unpool2d(y, bad, 2), "max_unpool2d", "invalid max index 16")


# ---------------------------------------------------------------- Numba path == NumPy reference path
def _run_both_paths(fn, arrays):
    """Outputs and input gradients of ``fn`` with the Numba kernels and with the reference ones."""
    results = []
    for reference in (False, True):
        with td.backends.reference(reference):
            ts = [td.tensor(a, requires_grad=a.dtype.kind == "f") for a in arrays]
            outs = fn(*ts)
            outs = outs if isinstance(outs, tuple) else (outs,)
            g = np.random.default_rng(5).standard_normal(outs[0].shape).astype(outs[0].dtype)
            outs[0].backward(td.tensor(g))
        results.append([_np(o) for o in outs] + [_np(t.grad) for t in ts if t.requires_grad])
    return results


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name, fn, shapes", [
    ("conv2d", lambda x, w, b: F.conv2d(x, w, b, stride=(2, 1), padding=(1, 2), dilation=(1, 2)),
     [(3, 4, 9, 8), (6, 4, 3, 3), (6,)]),
    ("conv2d_groups", lambda x, w: F.conv2d(x, w, padding="same", groups=2), [(2, 4, 7, 6), (4, 2, 4, 3)]),
    ("conv_transpose2d", lambda x, w: F.conv_transpose2d(x, w, stride=2, padding=1, output_padding=1),
     [(2, 3, 5, 4), (3, 4, 3, 3)]),
    ("max_pool2d", lambda x: F.max_pool2d(x, 3, 2, 1, ceil_mode=True, return_indices=True), [(2, 3, 9, 8)]),
    ("avg_pool2d", lambda x: F.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False), [(2, 3, 9, 8)]),
])
def test_numba_path_equals_numpy_reference(name, fn, shapes, dtype):
    # The im2col routes' kernels at these tolerances. The direct kernels sum in another
    # order: tests/test_direct_conv.py compares them with the reference path.
    rng = np.random.default_rng(0)
    arrays = [rng.permutation(int(np.prod(s))).reshape(s).astype(dtype) / 7 for s in shapes]
    with td.backends.route(conv2d="chunked"):
        fast, reference = _run_both_paths(fn, arrays)
    for a, b in zip(fast, reference):
        assert a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=1e-6 if dtype == np.float32 else 1e-13, atol=0)


# ---------------------------------------------------------------- GPU
@pytest.mark.gpu
def test_cuda_layers_match_cpu():
    td.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, return_indices=False),
                        nn.Conv2d(8, 8, 3, groups=8), nn.AvgPool2d(2, ceil_mode=True),
                        nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1), nn.AdaptiveMaxPool2d(3),
                        nn.AdaptiveAvgPool2d(1))
    x = _x(2, 3, 16, 16)
    g = np.random.default_rng(2).standard_normal((2, 4, 1, 1)).astype(np.float32)
    xc = td.tensor(x, requires_grad=True)
    net(xc).backward(td.tensor(g))
    cpu_grads = [_np(p.grad) for p in net.parameters()] + [_np(xc.grad)]
    net.zero_grad()
    net.to("cuda")
    xg = td.tensor(x, device="cuda", requires_grad=True)
    y = net(xg)
    assert y.device.type == "cuda"
    y.backward(td.tensor(g, device="cuda"))
    gpu_grads = [_np(p.grad) for p in net.parameters()] + [_np(xg.grad)]
    for a, b in zip(cpu_grads, gpu_grads):
        np.testing.assert_allclose(b, a, atol=1e-4, rtol=1e-4)
    pool = nn.MaxPool2d(3, 2, return_indices=True)
    xd = _distinct(2, 3, 9, 9)
    (_, i_cpu), (_, i_gpu) = pool(td.tensor(xd)), pool(td.tensor(xd, device="cuda"))
    np.testing.assert_array_equal(_np(i_gpu), _np(i_cpu))
