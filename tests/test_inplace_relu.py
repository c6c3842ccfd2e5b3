"""ReLU(inplace=True) really works in place: the output is the input's array, no array
of the input's size is allocated, the gradients equal the out-of-place ones (and
PyTorch's), and the cases PyTorch's autograd refuses raise a clear error."""
import tracemalloc

import numpy as np
import pytest
import torch

import tinydl as td
import tinydl.nn as nn
import tinydl.nn.functional as F

IN_PLACE = [("relu", lambda x: F.relu(x, inplace=True)), ("relu6", lambda x: F.relu6(x, inplace=True)),
            ("hardtanh", lambda x: F.hardtanh(x, -0.5, 0.5, inplace=True)),
            ("leaky_relu", lambda x: F.leaky_relu(x, 0.1, inplace=True)),
            ("nn.ReLU", nn.ReLU(inplace=True))]
TORCH = {"relu": torch.relu, "relu6": torch.nn.functional.relu6,
         "hardtanh": lambda x: torch.nn.functional.hardtanh(x, -0.5, 0.5),
         "leaky_relu": lambda x: torch.nn.functional.leaky_relu(x, 0.1), "nn.ReLU": torch.relu}
TORCH_IN_PLACE = {"relu": lambda x: torch.relu_(x), "relu6": lambda x: torch.nn.functional.relu6(x, inplace=True),
                  "hardtanh": lambda x: torch.nn.functional.hardtanh(x, -0.5, 0.5, inplace=True),
                  "leaky_relu": lambda x: torch.nn.functional.leaky_relu(x, 0.1, inplace=True),
                  "nn.ReLU": torch.nn.ReLU(inplace=True)}


def _net_input(rng, requires_grad=True):
    """A non-leaf input, as a ReLU sees it inside a network: x = w * a (the product saves
    w and a, not x, so x may be overwritten)."""
    a = td.tensor(rng.standard_normal((64, 128)) * 4)
    w = td.tensor(rng.standard_normal((64, 128)), requires_grad=requires_grad)
    return w, a, w * a


@pytest.mark.parametrize("name, act", IN_PLACE, ids=[n for n, _ in IN_PLACE])
def test_output_is_the_input_array_and_gradients_match(name, act):
    rng = np.random.default_rng(0)
    w, a, x = _net_input(rng)
    before = x.array
    y = act(x)
    assert y.array is before and np.shares_memory(y.array, x.array)
    gy = rng.standard_normal(y.shape)
    y.backward(td.tensor(gy))
    wt = torch.tensor(w.detach().numpy(), requires_grad=True)
    yt = TORCH[name](wt * torch.tensor(a.numpy()))
    yt.backward(torch.tensor(gy))
    np.testing.assert_allclose(y.detach().numpy(), yt.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(w.grad.numpy(), wt.grad.numpy(), rtol=1e-12)


def _peak_bytes(fn):
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    out = fn()
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return peak, out


@pytest.mark.parametrize("name, act", IN_PLACE[:2], ids=["relu", "relu6"])
def test_no_array_of_the_input_size_is_allocated(name, act):
    """NumPy reports its allocations to tracemalloc: the in-place forward allocates
    only the masks/bookkeeping (relu: nothing of x's size), the out-of-place one a new x."""
    rng = np.random.default_rng(1)
    _, _, x = _net_input(rng)
    size = x.array.nbytes
    inplace_peak, _ = _peak_bytes(lambda: act(x))
    _, _, x2 = _net_input(rng)
    copy_peak, _ = _peak_bytes(lambda: F.relu(x2))
    assert copy_peak >= size
    assert inplace_peak < size / 4 if name == "relu" else inplace_peak < size / 2   # relu6: a bool mask


def test_sequential_with_inplace_relu_trains_like_out_of_place():
    rng = np.random.default_rng(2)
    x = td.tensor(rng.standard_normal((16, 8)))
    upstream = td.tensor(rng.standard_normal((16, 3)))
    grads = []
    for inplace in (False, True):
        td.manual_seed(0)
        net = nn.Sequential(nn.Linear(8, 32), nn.ReLU(inplace=inplace), nn.Linear(32, 32),
                            nn.ReLU(inplace=inplace), nn.Linear(32, 3)).double()
        net(x).backward(upstream)
        grads.append([p.grad.numpy().copy() for p in net.parameters()])
    for a, b in zip(*grads):
        np.testing.assert_array_equal(a, b)


def test_without_graph_the_input_itself_is_returned():
    x = td.tensor([-1.0, 0.5, 3.0])
    assert F.relu(x, inplace=True) is x and x.tolist() == [0.0, 0.5, 3.0]
    y = td.tensor([-1.0, 2.0], requires_grad=True)
    with td.no_grad():
        assert F.relu(y, inplace=True) is y
    assert y.tolist() == [0.0, 2.0]


def test_refuses_what_torch_autograd_refuses():
    leaf = td.tensor([-1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="a leaf that requires grad"):
        F.relu(leaf, inplace=True)
    with pytest.raises(RuntimeError, match="a leaf that requires grad"):
        F.relu(leaf.reshape(2, 1), inplace=True)          # a view of a leaf
    with pytest.raises(RuntimeError, match=r"relu\(inplace=True\): the tensor was saved by Tanh"):
        F.relu(leaf.tanh(), inplace=True)                # tanh's backward reads its output
    with pytest.raises(RuntimeError, match="saved by Tanh"):
        F.relu(leaf.tanh()[:1], inplace=True)            # ... also through a view
    assert leaf.tolist() == [-1.0, 2.0]


def test_overwriting_what_another_op_saved_raises_at_its_backward_as_torch():
    """conv saved x for dL/dW; relu(x, inplace=True) then overwrites x. The version counter
    catches it when conv's backward runs, in both libraries."""
    rng = np.random.default_rng(4)
    x0, w = rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((4, 3, 3, 3))
    for lib, functional in ((td, F), (torch, torch.nn.functional)):
        xt, wt = lib.tensor(x0, requires_grad=True), lib.tensor(w, requires_grad=True)
        x = xt * 1.0
        a = functional.conv2d(x, wt)
        y = functional.relu(x, inplace=True)
        loss = (a * lib.tensor(rng.standard_normal((2, 4, 4, 4)))).sum() + y.sum()
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            loss.backward()


@pytest.mark.parametrize("mode", ["retain_grad", "second_derivative"])
@pytest.mark.parametrize("name, act", IN_PLACE, ids=[n for n, _ in IN_PLACE])
def test_the_input_becomes_the_output_as_torch_rebases_it(name, act, mode):
    """The result is x itself, and x's history is the op's (PyTorch's rebase): the op
    used for its effect alone and an alias of x kept from before see the op, as in
    torch, with a retain_grad() on x, and under a second derivative."""
    def run(lib, act):
        rng = np.random.default_rng(3)
        w = lib.tensor(rng.standard_normal((4, 5)), requires_grad=True)
        h = w * lib.tensor(rng.standard_normal((4, 5)) * 2)
        if mode == "retain_grad":
            h.retain_grad()
        alias = h
        out = act(h)                                # ... and the next lines use h, not out
        loss = ((h * 3.0 + alias * alias) * lib.tensor(rng.standard_normal((4, 5)))).sum()   # random upstream
        if mode == "retain_grad":
            loss.backward()
            return out is h, h.grad, w.grad
        (g,) = lib.autograd.grad(loss, w, create_graph=True)
        (g * g * lib.tensor(rng.standard_normal((4, 5)))).sum().backward()      # random upstream
        return out is h, g, w.grad
    ours, theirs = run(td, act), run(torch, TORCH_IN_PLACE[name])
    assert ours[0] and theirs[0]
    for o, t in zip(ours[1:], theirs[1:]):
        np.testing.assert_allclose(o.detach().numpy(), t.detach().numpy(), rtol=1e-12, atol=1e-12)


def test_uses_before_the_in_place_op_keep_the_old_history_or_it_is_refused():
    """Ops that ran on h before relu(h, inplace=True) keep h's old history: those that
    keep a stand-in of h (a sum, a product by a number, a view) give torch's gradients (a
    view of h made before is made again from h's new history when used after); an op that
    keeps h itself with no version to check (one that reruns itself) would follow h to its
    new history, so the in-place op refuses, naming the cause."""
    def run(lib):
        x = lib.tensor(np.array([[-1.0, 2.0], [3.0, -4.0]]), requires_grad=True)
        gy = lib.tensor(np.random.default_rng(5).standard_normal((2, 2)))   # random upstream
        h = x * 1.5
        s, m, flat = h.sum(), h * 2.0, h.reshape(4)
        before = flat * 5.0
        lib.nn.functional.relu(h, inplace=True)
        (s * s + (m * m * gy).sum() + (h * gy).sum() + (before * gy.reshape(4)).sum()
         + (flat * flat * gy.reshape(4)).sum()).backward()
        return x.grad
    np.testing.assert_allclose(run(td).numpy(), run(torch).numpy(), rtol=1e-12)
    h = td.tensor(np.ones((2, 2)), requires_grad=True) * 1.0
    F.pad(h, (1, 1))
    with pytest.raises(RuntimeError, match="used before by an op that reruns itself"):
        F.relu(h, inplace=True)
