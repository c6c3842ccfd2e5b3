"""Max pooling and leaky ReLU keep no input alive for backward, a product keeps only the
factor the other one's gradient reads, and their create_graph backward still matches PyTorch.

Their backward reads only what forward saved (the indices of the maxima, the sign of x),
so it runs on Tensors ("operators"): an op marked "composite" instead keeps every input
until backward, to rerun itself. The create_graph checks compare with PyTorch the first
gradient built as a graph, and its derivatives along both the input and the upstream
gradient (max pooling's backward is a scatter-add at the indices: the derivative along
the upstream gradient is the gather at those indices).
"""
import gc
import weakref

import numpy as np
import pytest
import torch

import tinydl as td
import tinydl.nn.functional as F

# (name, op for tinydl's or torch's functional module, input shape); the inputs are a
# permutation (no ties in a window) shifted away from 0 (leaky ReLU's kink)
OPS = [
    ("max_pool2d_overlapping", lambda f, x: f.max_pool2d(x, 3, stride=2, padding=1), (2, 3, 7, 6)),
    ("max_pool2d_unbatched", lambda f, x: f.max_pool2d(x, 2), (3, 4, 6)),
    ("max_pool1d", lambda f, x: f.max_pool1d(x, 3, stride=2), (2, 3, 9)),
    ("adaptive_max_pool2d", lambda f, x: f.adaptive_max_pool2d(x, (3, 4)), (2, 2, 7, 5)),
    ("leaky_relu", lambda f, x: f.leaky_relu(x, 0.2), (3, 4, 5)),
]
IDS = [name for name, _, _ in OPS]
# max_pool1d pools an unsqueezed view of its input, and a view's node keeps what it views
UNVIEWED = [case for case in OPS if case[0] != "max_pool1d"]


def _distinct(shape, seed=0):
    rng = np.random.default_rng(seed)
    values = rng.permutation(np.prod(shape)).reshape(shape) - np.prod(shape) / 2 + 0.5
    return values * 0.1


@pytest.mark.parametrize("name, op, shape", UNVIEWED, ids=[case[0] for case in UNVIEWED])
def test_the_input_is_not_kept_until_backward(name, op, shape):
    x = td.tensor(_distinct(shape), requires_grad=True)
    h = x + 1.0                           # an activation no other op saved
    y = op(F, h)
    h_data = weakref.ref(h.array)
    del h
    gc.collect()
    assert h_data() is None, f"{name} kept its input alive until backward"
    upstream = np.random.default_rng(1).standard_normal(y.shape)
    y.backward(td.tensor(upstream))
    x_t = torch.tensor(_distinct(shape), requires_grad=True)
    op(torch.nn.functional, x_t + 1.0).backward(torch.tensor(upstream))
    np.testing.assert_allclose(x.grad.numpy(), x_t.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_the_op_after_max_pooling_does_not_keep_the_pooled_output():
    """Max pooling saves its index output; that must not make the next op keep y too."""
    x = td.tensor(_distinct((2, 3, 6, 6)), requires_grad=True)
    y = F.max_pool2d(x + 1.0, 2)
    z = F.relu(y)                         # saves z, never y
    y_data = weakref.ref(y.array)
    del y
    gc.collect()
    assert y_data() is None
    z.backward(td.tensor(np.ones(z.shape)))
    assert x.grad.shape == x.shape


@pytest.mark.parametrize("constant", ["tensor", "float"])
def test_a_product_by_a_constant_keeps_no_input(constant):
    """h * c: dL/dh = gy * c reads c only, so h is freed; the first and second derivatives
    (along x and the upstream gradient v) still match PyTorch's."""
    c_values = _distinct((3, 4), seed=1)
    results = []
    for lib in (td, torch):
        x = lib.tensor(_distinct((3, 4)), requires_grad=True)
        c = lib.tensor(c_values) if constant == "tensor" else 0.5
        h = x * x                         # an activation no other op saved
        y = h * c
        if lib is td:
            h_data = weakref.ref(h.array)
            del h
            gc.collect()
            assert h_data() is None, "the product kept its non-constant factor alive"
        v = lib.tensor(np.random.default_rng(3).standard_normal((3, 4)), requires_grad=True)
        gx, = lib.autograd.grad(y, x, v, create_graph=True)
        second = lib.autograd.grad(gx, (x, v), lib.tensor(c_values + 2.0))
        results.append([gx.detach().numpy()] + [s.detach().numpy() for s in second])
    for ours, theirs in zip(*results):
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)


def test_a_product_of_two_tensors_that_need_gradients_keeps_both():
    a = td.tensor(_distinct((3,)), requires_grad=True)
    b = td.tensor(_distinct((3,), seed=1), requires_grad=True)
    ha, hb = a + 1.0, b + 1.0
    y = ha * hb
    kept = weakref.ref(ha.array), weakref.ref(hb.array)
    del ha, hb
    gc.collect()
    assert all(ref() is not None for ref in kept)
    y.backward(td.tensor(np.ones(3)))
    np.testing.assert_allclose(a.grad.numpy(), b.detach().numpy() + 1.0)
    np.testing.assert_allclose(b.grad.numpy(), a.detach().numpy() + 1.0)


def _create_graph_gradients(lib, op, shape):
    """gx = d<v, op(x)>/dx built as a graph, then d<w, gx>/dx and d<w, gx>/dv (None: no path)."""
    rng = np.random.default_rng(2)
    x = lib.tensor(_distinct(shape), requires_grad=True)
    y = op(lib.nn.functional, x)
    v = lib.tensor(rng.standard_normal(tuple(y.shape)), requires_grad=True)
    w = lib.tensor(rng.standard_normal(shape))
    gx, = lib.autograd.grad(y, x, v, create_graph=True)
    assert gx.requires_grad
    second = lib.autograd.grad(gx, (x, v), w, allow_unused=True)
    return [gx.detach().numpy()] + [None if s is None else s.detach().numpy() for s in second]


@pytest.mark.parametrize("name, op, shape", OPS, ids=IDS)
def test_create_graph_backward_matches_torch(name, op, shape):
    ours, theirs = _create_graph_gradients(td, op, shape), _create_graph_gradients(torch, op, shape)
    for what, a, b in zip(("gx", "d gx/dx", "d gx/dv"), ours, theirs):
        a = np.zeros_like(b) if a is None else a          # no path: zero, as torch's zeros_like
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12, err_msg=f"{name}: {what}")


@pytest.mark.parametrize("name, op, shape", OPS, ids=IDS)
def test_gradgradcheck(name, op, shape):
    x = td.tensor(_distinct(shape), requires_grad=True)
    assert td.gradgradcheck(lambda t: op(F, t), [x])


def test_in_place_leaky_relu_still_works_in_place_under_create_graph():
    x = td.tensor(_distinct((3, 4)), requires_grad=True)
    h = x * 1.0
    y = F.leaky_relu(h, 0.2, inplace=True)
    assert np.shares_memory(y.array, h.array)
    v = td.tensor(np.random.default_rng(3).standard_normal((3, 4)), requires_grad=True)
    gx, = td.autograd.grad(y, x, v, create_graph=True)
    gv, = td.autograd.grad(gx, v, td.tensor(np.ones((3, 4))))
    np.testing.assert_allclose(gv.numpy(), np.where(_distinct((3, 4)) > 0, 1.0, 0.2))
