"""A batch of no images (N = 0) goes through the layers as in PyTorch: empty outputs of the
right shape, empty input gradients, zero (not NaN) gradients for weights and biases, running
statistics left alone; the losses' means over nothing are NaN, their sums 0.

Every convolution route is forced in turn (``td.backends.route``) and checked to be the one
that ran, since a route that does not apply would silently hand the call to another.
"""
import numpy as np
import pytest
import torch

import tinydl as td
import tinydl.nn as nn
import tinydl.nn.functional as F
from tinydl.kernels.conv import CONV2D_ROUTES, CONV_TRANSPOSE2D_ROUTES


def _route_block(op, route):
    return td.backends.reference() if route == "reference" else td.backends.route(**{op: route})


def _compare(ours, theirs, y, y_t, dtype):
    """y against y_t, and every input's gradient (float64 upstream gradients of y_t's shape)."""
    assert tuple(y.shape) == tuple(y_t.shape) and y.dtype == dtype
    np.testing.assert_array_equal(y.detach().numpy(), y_t.detach().numpy())
    for a, t in zip(ours, theirs):
        if t is not None and t.requires_grad:
            assert a.grad is not None and a.grad.dtype == dtype
            np.testing.assert_array_equal(a.grad.numpy(), t.grad.numpy())


def _inputs(shapes, dtype, seed=0):
    """tinydl and torch leaves (requiring grad) over the same random arrays; None stays None."""
    rng = np.random.default_rng(seed)
    arrays = [None if s is None else rng.standard_normal(s).astype(dtype) for s in shapes]
    ours = [None if a is None else td.tensor(a, requires_grad=True) for a in arrays]
    theirs = [None if a is None else torch.tensor(a, requires_grad=True) for a in arrays]
    return ours, theirs


# (route, kernel, stride, groups): each a geometry the route computes
CONV2D_CASES = [("pointwise", 1, 1, 1), ("pointwise", 1, 2, 1), ("direct", 3, 1, 1), ("direct", 3, 1, 2),
                ("direct", 3, 2, 1), ("winograd", 3, 1, 1), ("winograd_f4", 3, 1, 1), ("gy_columns", 3, 1, 1),
                ("chunked", 3, 1, 1),
                ("chunked", 3, 2, 2), ("chunked", 1, 2, 1), ("im2col", 3, 1, 1), ("im2col", 3, 2, 2),
                ("reference", 3, 1, 1), ("reference", 3, 2, 2)]
CONV_TRANSPOSE2D_CASES = [("winograd", 4, 2, 1), ("as_conv2d", 3, 1, 1), ("subpixel", 3, 2, 1), ("subpixel", 3, 1, 2), ("chunked", 3, 2, 2),
                          ("chunked", 3, 1, 1),
                          ("im2col", 3, 2, 1), ("im2col", 3, 1, 2), ("reference", 3, 2, 2)]


def test_every_route_has_an_empty_batch_case():
    assert {r.name for r in CONV2D_ROUTES} <= {c[0] for c in CONV2D_CASES}
    assert {r.name for r in CONV_TRANSPOSE2D_ROUTES} <= {c[0] for c in CONV_TRANSPOSE2D_CASES}


def _check_route(op, route, shapes, kwargs, dtype):
    """op on the route (it must be the one that ran) against torch: output and gradients."""
    ours, theirs = _inputs(shapes, dtype)
    with _route_block(op, route), td.backends.record_routes() as taken:
        y = getattr(F, op)(*ours, **kwargs)
        upstream = np.random.default_rng(1).standard_normal(y.shape).astype(dtype)
        y.backward(td.tensor(upstream))
    assert taken == [(op, route)]
    y_t = getattr(torch.nn.functional, op)(*theirs, **kwargs)
    y_t.backward(torch.tensor(upstream))
    _compare(ours, theirs, y, y_t, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.usefixtures("forced_route_runs")
@pytest.mark.parametrize("route, k, stride, groups", CONV2D_CASES)
def test_conv2d_on_an_empty_batch(route, k, stride, groups, bias, dtype):
    _check_route("conv2d", route, [(0, 4, 6, 6), (6, 4 // groups, k, k), (6,) if bias else None],
                 dict(stride=stride, padding=k // 2, groups=groups), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.usefixtures("forced_route_runs")
@pytest.mark.parametrize("route, k, stride, groups", CONV_TRANSPOSE2D_CASES)
def test_conv_transpose2d_on_an_empty_batch(route, k, stride, groups, bias, dtype):
    # stride 2: output_padding beyond the padding, so the op also pads zero rows ("extra")
    _check_route("conv_transpose2d", route, [(0, 4, 5, 5), (4, 6 // groups, k, k), (6,) if bias else None],
                 dict(stride=stride, padding=0 if stride == 2 else 1, output_padding=stride - 1, groups=groups),
                 dtype)


@pytest.mark.parametrize("op", ["conv2d", "conv_transpose2d"])
def test_double_backward_on_an_empty_batch(op):
    """create_graph differentiates the convolutions' composites, which reshape the empty columns."""
    (x, w, b), (x_t, w_t, b_t) = _inputs([(0, 4, 5, 5), (4, 2, 3, 3), (4,)], np.float64)
    kwargs = dict(stride=2, groups=2)
    y = getattr(F, op)(x, w, b, **kwargs)
    y_t = getattr(torch.nn.functional, op)(x_t, w_t, b_t, **kwargs)
    upstream = td.tensor(np.ones(y.shape), requires_grad=True)
    grads = td.autograd.grad(y, (x, w, b), upstream, create_graph=True)
    grads_t = torch.autograd.grad(y_t, (x_t, w_t, b_t), torch.ones(y_t.shape, dtype=torch.float64,
                                                                  requires_grad=True), create_graph=True)
    for g, g_t in zip(grads, grads_t):
        assert tuple(g.shape) == tuple(g_t.shape)
        np.testing.assert_array_equal(g.detach().numpy(), g_t.detach().numpy())


# (name, tinydl layer, torch layer, input shape)
LAYERS = [
    ("conv1d", lambda m: m.Conv1d(4, 6, 3, padding=1), (0, 4, 7)),
    ("conv2d", lambda m: m.Conv2d(4, 6, 3, stride=2, padding=1), (0, 4, 7, 7)),
    ("conv_transpose1d", lambda m: m.ConvTranspose1d(4, 6, 3, stride=2), (0, 4, 7)),
    ("conv_transpose2d", lambda m: m.ConvTranspose2d(4, 6, 3, stride=2, groups=2), (0, 4, 5, 5)),
    ("batch_norm1d", lambda m: m.BatchNorm1d(4), (0, 4)),
    ("batch_norm1d_3d", lambda m: m.BatchNorm1d(4, momentum=None), (0, 4, 7)),
    ("batch_norm2d", lambda m: m.BatchNorm2d(4), (0, 4, 5, 5)),
    ("max_pool1d", lambda m: m.MaxPool1d(2), (0, 4, 7)),
    ("max_pool2d", lambda m: m.MaxPool2d(3, 2, 1), (0, 4, 7, 7)),
    ("avg_pool1d", lambda m: m.AvgPool1d(2), (0, 4, 7)),
    ("avg_pool2d", lambda m: m.AvgPool2d(3, 2, 1), (0, 4, 7, 7)),
    ("adaptive_avg_pool2d", lambda m: m.AdaptiveAvgPool2d((2, 3)), (0, 4, 7, 7)),
    ("adaptive_max_pool2d", lambda m: m.AdaptiveMaxPool2d(3), (0, 4, 7, 7)),
    ("linear", lambda m: m.Linear(4, 3), (0, 4)),
]


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("name, make, shape", LAYERS, ids=[layer[0] for layer in LAYERS])
def test_layers_on_an_empty_batch(name, make, shape, training):
    theirs = make(torch.nn).double().train(training)
    ours = make(nn).double().train(training)
    state = {k: v + 0.5 if v.dtype.is_floating_point else v for k, v in theirs.state_dict().items()}
    theirs.load_state_dict(state)                            # running statistics away from 0 and 1
    ours.load_state_dict({k: td.tensor(v.numpy()) for k, v in state.items()})
    (x,), (x_t,) = _inputs([shape], np.float64)
    y, y_t = ours(x), theirs(x_t)
    upstream = np.random.default_rng(1).standard_normal(y_t.shape)
    y.backward(td.tensor(upstream))
    y_t.backward(torch.tensor(upstream))
    params = dict(ours.named_parameters())
    names = [k for k, _ in theirs.named_parameters()]
    _compare([x] + [params[k] for k in names], [x_t] + [p for _, p in theirs.named_parameters()], y, y_t,
             np.float64)
    for k, buffer in theirs.state_dict().items():           # running statistics (and the batch count)
        np.testing.assert_array_equal(ours.state_dict()[k].numpy(), buffer.numpy())


def test_batch_norm_without_running_statistics_on_an_empty_batch():
    (x, w, b), (x_t, w_t, b_t) = _inputs([(0, 3, 4), (3,), (3,)], np.float64)
    y = F.batch_norm(x, None, None, w, b, training=True)
    y_t = torch.nn.functional.batch_norm(x_t, None, None, w_t, b_t, training=True)
    upstream = np.random.default_rng(1).standard_normal(y_t.shape)
    y.backward(td.tensor(upstream))
    y_t.backward(torch.tensor(upstream))
    _compare((x, w, b), (x_t, w_t, b_t), y, y_t, np.float64)


def test_batch_norm_still_refuses_one_value_per_channel_when_training():
    with pytest.raises(ValueError, match=r"batch_norm: expected more than 1 value per channel.*\(1, 3\)"):
        F.batch_norm(td.zeros(1, 3), None, None, training=True)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("loss, target", [
    ("cross_entropy", np.zeros((0,), np.int64)),
    ("nll_loss", np.zeros((0,), np.int64)),
    ("cross_entropy", np.zeros((0, 5))),                     # class probabilities
    ("cross_entropy_smoothed", np.zeros((0,), np.int64)),
])
def test_losses_on_an_empty_batch(loss, target, reduction):
    """The mean over no samples is NaN in PyTorch (0 / 0), the sum 0."""
    kwargs = dict(reduction=reduction)
    if loss == "cross_entropy_smoothed":
        loss, kwargs["label_smoothing"] = "cross_entropy", 0.1
    (x,), (x_t,) = _inputs([(0, 5)], np.float64)
    y = getattr(F, loss)(x, td.tensor(target), **kwargs)
    y_t = getattr(torch.nn.functional, loss)(x_t, torch.tensor(target), **kwargs)
    upstream = np.random.default_rng(1).standard_normal(y_t.shape)
    y.backward(td.tensor(upstream))
    y_t.backward(torch.tensor(upstream))
    _compare([x], [x_t], y, y_t, np.float64)
