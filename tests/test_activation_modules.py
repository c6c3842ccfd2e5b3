"""One nn module per activation, against torch.nn's: same constructor arguments give the
same repr, output and gradients (input, and PReLU's weight) under a random upstream gradient."""
import inspect

import numpy as np
import pytest
import torch

import tinydl as td
import tinydl.nn as nn

# (name, args) for both libraries; inputs are normal * 3, nudged off the kinks below
CASES = [
    ("ReLU", ()), ("ReLU6", ()), ("LeakyReLU", (0.2,)), ("PReLU", ()), ("PReLU", (4, 0.1)),
    ("ELU", (0.5,)), ("SELU", ()), ("CELU", (2.0,)), ("GELU", ()), ("GELU", ("tanh",)), ("SiLU", ()),
    ("Mish", ()), ("Hardtanh", (-2.0, 1.5)), ("Hardswish", ()), ("Hardsigmoid", ()), ("Sigmoid", ()),
    ("LogSigmoid", ()), ("Tanh", ()), ("Softplus", (2.0, 5.0)), ("Softsign", ()), ("Tanhshrink", ()),
    ("Threshold", (0.25, -1.0)), ("Hardshrink", (0.7,)), ("Softshrink", (0.3,)), ("GLU", (1,)),
    ("Softmax", (1,)), ("Softmin", (1,)), ("LogSoftmax", (-1,)), ("Softmax2d", ()), ("Softmax", ()),
    ("RReLU", (0.2, 0.4)),           # compared in eval mode (training draws random slopes)
]
KINKS = [0.0, 6.0, -2.0, 1.5, 3.0, -3.0, 0.25, 0.7, -0.7, 0.3, -0.3, 2.5]


def _input(rng, dtype):
    x = rng.standard_normal((2, 4, 3, 5)) * 3
    for k in KINKS:
        x[np.abs(x - k) < 1e-3] = k + 2e-3
    return x.astype(dtype)


@pytest.mark.filterwarnings("ignore:Implicit dimension choice")
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("name, args", CASES, ids=[f"{n}{a}" for n, a in CASES])
def test_module_matches_torch(name, args, dtype):
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    ours, theirs = getattr(nn, name)(*args), getattr(torch.nn, name)(*args)
    if name == "RReLU":
        ours.eval(), theirs.eval()
    assert repr(ours) == repr(theirs)
    theirs = theirs.to(torch.float64 if dtype == np.float64 else torch.float32)
    ours = ours.double() if dtype == np.float64 else ours
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    x = _input(rng, dtype)
    xt, xd = torch.tensor(x, requires_grad=True), td.tensor(x, requires_grad=True)
    expected, got = theirs(xt), ours(xd)
    assert got.shape == tuple(expected.shape) and got.dtype == dtype
    gy = rng.standard_normal(got.shape).astype(dtype)
    expected.backward(torch.tensor(gy))
    got.backward(td.tensor(gy))
    # float64 to 1e-7 as the op table: PyTorch's hardsigmoid backward uses a float32 1/6
    tol = dict(rtol=1e-7, atol=1e-10) if dtype == np.float64 else dict(rtol=2e-5, atol=1e-5)
    np.testing.assert_allclose(got.detach().numpy(), expected.detach().numpy(), **tol)
    np.testing.assert_allclose(xd.grad.numpy(), xt.grad.numpy(), **tol)
    for (k, p), (_, q) in zip(ours.named_parameters(), theirs.named_parameters()):
        assert p.grad.dtype == dtype
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), err_msg=k, **tol)


def test_every_torch_activation_has_a_module_with_torch_signature():
    for name in {n for n, _ in CASES}:
        ours = inspect.signature(getattr(nn, name)).parameters
        theirs = inspect.signature(getattr(torch.nn, name)).parameters
        theirs = {k: v for k, v in theirs.items() if k not in ("args", "kwargs")}
        assert list(ours) == list(theirs), name
        assert [v.default for v in ours.values()] == [v.default for v in theirs.values()], name


def test_prelu_learns_its_slope():
    """The slope is a Parameter: SGD on (y - 0.5 x)^2 for x < 0 moves it from 0.25 to 0.5."""
    act = nn.PReLU()
    x = td.tensor(-np.linspace(0.5, 2, 20))
    for _ in range(200):
        loss = ((act(x) - 0.5 * x) ** 2).mean()
        act.zero_grad()
        loss.backward()
        act.weight.array[...] -= 0.1 * act.weight.grad.array
    assert abs(act.weight.item() - 0.5) < 1e-3


def test_errors_name_the_layer():
    with pytest.raises(ValueError, match=r"prelu: weight must hold 1 slope or one per channel \(4\)"):
        nn.PReLU(3)(td.zeros(2, 4, 5))
    with pytest.raises(ValueError, match=r"glu: halving dimension 1 needs an even size.*\(2, 3\)"):
        nn.GLU(1)(td.zeros(2, 3))
    with pytest.raises(ValueError, match="Softmax2d: expected a 3-D or 4-D input"):
        nn.Softmax2d()(td.zeros(2, 3))


def test_rrelu_training_draws_slopes_in_range_and_backward_uses_them():
    td.manual_seed(0)
    act = nn.RReLU(0.1, 0.3)
    assert repr(act) == repr(torch.nn.RReLU(0.1, 0.3)) == "RReLU(lower=0.1, upper=0.3)"
    x = td.tensor(-np.linspace(0.5, 2.0, 4000), requires_grad=True)
    y = act(x)
    slopes = y.detach().numpy() / x.detach().numpy()
    assert slopes.min() >= 0.1 and slopes.max() <= 0.3
    assert abs(slopes.mean() - 0.2) < 0.005 and abs(slopes.std() - 0.2 / np.sqrt(12)) < 0.005   # U(0.1, 0.3)
    y.backward(td.ones(4000))
    np.testing.assert_allclose(x.grad.numpy(), slopes, rtol=1e-12)
    act.eval()
    np.testing.assert_allclose(act(td.tensor([-2.0, 3.0])).numpy(), [-0.4, 3.0])
