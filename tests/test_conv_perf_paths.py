"""The speed-motivated paths of the conv / ReLU / batch-norm chain keep PyTorch's numbers.

ReLU saves its output (not a boolean mask) and reads dy/dx = [y > 0] off it:
the gradient at x == 0 must stay 0 and float32 must stay float32. One ResNet
block (conv, BN, ReLU, conv, BN, add, ReLU) runs forward and backward on the
Numba path and on the NumPy reference path (td.backends.reference()) and matches
PyTorch on both.
"""
import numpy as np
import pytest
import torch

import tinydl as td
import tinydl.nn.functional as F
from tinydl.kernels._dispatch import use_numba


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_gradient_from_saved_output(dtype):
    x = np.array([[-2.0, -0.0, 0.0, 1e-30, 3.0], [0.5, -1e-30, 0.0, -4.0, 2.0]], dtype=dtype)
    g = np.arange(1, 11, dtype=dtype).reshape(x.shape)
    tx, px = td.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    ty, py = F.relu(tx), torch.relu(px)
    ty.backward(td.tensor(g))
    py.backward(torch.tensor(g))
    assert ty.dtype == tx.dtype and tx.grad.dtype == tx.dtype
    np.testing.assert_array_equal(ty.detach().numpy(), py.detach().numpy())
    np.testing.assert_array_equal(tx.grad.numpy(), px.grad.numpy())   # 0 where x <= 0


def _block(lib, functional, x, w1, w2, g):
    """conv-BN-ReLU-conv-BN + identity, ReLU; forward and backward; returns output and grads."""
    tensor = td.tensor if lib is td else torch.tensor
    tx, tw1, tw2 = (tensor(a, requires_grad=True) for a in (x, w1, w2))
    c = w1.shape[0]
    stats = [tensor(np.zeros(c, np.float32)), tensor(np.ones(c, np.float32)),
             tensor(np.zeros(c, np.float32)), tensor(np.ones(c, np.float32))]
    gamma = tensor(np.linspace(0.5, 1.5, c, dtype=np.float32), requires_grad=True)
    beta = tensor(np.linspace(-0.2, 0.2, c, dtype=np.float32), requires_grad=True)
    h = functional.relu(functional.batch_norm(functional.conv2d(tx, tw1, None, 1, 1), stats[0], stats[1],
                                              gamma, beta, True))
    h = functional.batch_norm(functional.conv2d(h, tw2, None, 1, 1), stats[2], stats[3], gamma, beta, True)
    y = functional.relu(h + tx)
    y.backward(tensor(g))
    out = [y, tx.grad, tw1.grad, tw2.grad, gamma.grad, beta.grad] + stats
    return [o.detach().numpy() for o in out]


@pytest.mark.parametrize("reference", [False, True], ids=["numba", "reference"])
def test_resnet_block_matches_torch(reference):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 8, 9, 9), dtype=np.float32)
    w1, w2 = (rng.standard_normal((8, 8, 3, 3), dtype=np.float32) * 0.2 for _ in range(2))
    g = rng.standard_normal(x.shape, dtype=np.float32)
    with td.backends.reference(reference):
        ours = _block(td, F, x, w1, w2, g)
    theirs = _block(torch, torch.nn.functional, x, w1, w2, g)
    names = ["y", "dx", "dw1", "dw2", "dgamma", "dbeta", "rm1", "rv1", "rm2", "rv2"]
    for name, a, b in zip(names, ours, theirs):
        assert a.dtype == np.float32, name
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4, err_msg=name)


@pytest.mark.skipif(not use_numba(), reason="without Numba every convolution runs the textbook op")
@pytest.mark.parametrize("channels, size, stride", [(64, 2, 1), (32, 4, 1), (16, 8, 2), (3, 8, 1)])
def test_tiny_convolutions_run_the_textbook_op_and_match_torch(channels, size, stride):
    """Batch 1 on ResNet-20's 2x2 to 8x8 planes (the overhead row of benchmarks/bench_alone.py):
    the dispatcher runs the textbook op, whose per-element im2col/col2im kernels give torch's
    numbers; the same layer on a larger batch takes a route, and a forced route still runs."""
    rng = np.random.default_rng(3)
    x, w, b = rng.standard_normal((1, channels, size, size)), rng.standard_normal((16, channels, 3, 3)), \
        rng.standard_normal(16)
    tx, tw, tb = (td.tensor(a, requires_grad=True) for a in (x, w, b))
    px, pw, pb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    with td.backends.record_routes() as taken:
        ty = F.conv2d(tx, tw, tb, stride, 1)
    assert taken == [("conv2d", "im2col")]
    py = torch.nn.functional.conv2d(px, pw, pb, stride, 1)
    g = rng.standard_normal(py.shape)
    ty.backward(td.tensor(g))
    py.backward(torch.tensor(g))
    for ours, theirs in ((ty, py), (tx.grad, px.grad), (tw.grad, pw.grad), (tb.grad, pb.grad)):
        np.testing.assert_allclose(ours.detach().numpy(), theirs.detach().numpy(), rtol=1e-12, atol=1e-12)
    big = td.tensor(rng.standard_normal((64, channels, size, size)))
    with td.backends.record_routes() as taken:
        F.conv2d(big, tw, None, stride, 1)
        with td.backends.route(conv2d="chunked"):
            F.conv2d(tx, tw, None, stride, 1)
    assert taken[0][1] != "im2col" and taken[1] == ("conv2d", "chunked")
