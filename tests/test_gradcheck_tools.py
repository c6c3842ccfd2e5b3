"""Gradient checks for people: nondeterminism, nsamples, whole modules, the CLI;
seeing backward run (trace_backward) and the graph drawn without Graphviz."""
import numpy as np
import pytest
import torch

import tinydl as td
import tinydl.nn as nn
import tinydl.nn.functional as F
from tinydl import cli
from tinydl.autograd import Function, _topological_order
from tinydl.utils import gradcheck_module, trace_backward, draw_graph
from tinydl.utils.graph import _layout, graph_nodes


def leaf(*shape, seed=0):
    return td.Tensor(np.random.default_rng(seed).standard_normal(shape), requires_grad=True)


class ScaleBuggyAt(Function):
    """y = 2x with a planted bug in dL/dx at one flat position."""

    def forward(ctx, x, *, bad):
        ctx.bad = bad
        return 2 * x

    def backward(ctx, gy):
        gx = 2 * gy
        if ctx.bad is not None:
            gx.reshape(-1)[ctx.bad] *= 1.5
        return gx


# ================================================================ nondeterminism
def test_dropout_in_training_mode_is_reported_as_nondeterministic():
    x = leaf(20, 30)
    with pytest.raises(td.GradcheckError, match="not deterministic.*eval mode") as info:
        td.gradcheck(lambda t: F.dropout(t, 0.5, training=True), [x], raise_exception=False)
    assert "mismatch" not in str(info.value)
    assert td.gradcheck(lambda t: F.dropout(t, 0.5, training=False), [x])

    def reseeded(t):            # a fixed mask: a function again, and its gradient checks out
        td.manual_seed(0)
        return F.dropout(t, 0.5, training=True)
    assert td.gradcheck(reseeded, [leaf(4, 5)])


def test_nondet_tol_lets_rounding_noise_pass():
    calls = []

    def jitter(t):              # differs by 1e-14 at every call, as atomic adds on a GPU may
        calls.append(1)
        return t * 2.0 + 1e-14 * len(calls)
    x = leaf(3)
    assert td.gradcheck(jitter, [x])
    with pytest.raises(td.GradcheckError, match="not deterministic"):
        td.gradcheck(jitter, [x], nondet_tol=0.0)


# ================================================================ nsamples
def test_nsamples_checks_that_many_elements_with_two_evaluations_each():
    x = leaf(10, 10)
    calls = []

    def fn(t):
        calls.append(1)
        return t * t
    assert td.gradcheck(fn, [x], nsamples=7)
    assert len(calls) == 1 + 1 + 2 * 7          # backward pass, determinism check, 2 per element
    calls.clear()
    assert td.gradcheck(fn, [x], nsamples=1000)   # more than the input has: all of them
    assert len(calls) == 2 + 2 * 100


def test_nsamples_catches_a_bug_everywhere_and_names_a_sampled_element():
    x = leaf(50, 40)
    everywhere = lambda t: 2 * t + ScaleBuggyAt.apply(t, bad=slice(None))  # noqa: E731
    with pytest.raises(td.GradcheckError, match=r"5 of 5 checked elements"):
        td.gradcheck(everywhere, [x], nsamples=5)
    # one wrong element of 2,000: caught by a full check, by a sample only if drawn
    one = lambda t: ScaleBuggyAt.apply(t, bad=1234)  # noqa: E731
    with pytest.raises(td.GradcheckError, match=r"element \(30, 34\)"):
        td.gradcheck(one, [x])
    drawn = [td.gradcheck(one, [x], nsamples=20, seed=s, raise_exception=False) for s in range(10)]
    assert drawn.count(True) >= 8                  # 1 % chance per seed to draw it


# ================================================================ whole modules
class BuggyLinear(Function):
    """y = x @ W^T + b whose dL/dW is off by 10 % (the planted bug)."""

    def forward(ctx, x, w, b):
        ctx.save_for_backward(x, w)
        return x @ w.T + b

    def backward(ctx, gy):
        x, w = ctx.saved_tensors
        return gy @ w, 1.1 * (gy.T @ x), gy.sum(0)


class BuggyLayer(nn.Linear):
    def forward(self, x):
        return BuggyLinear.apply(x, self.weight, self.bias)


def _small_cnn():
    td.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(12, 5))


def test_gradcheck_module_checks_every_parameter_of_a_copy():
    model = _small_cnn()
    before = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    x = td.randn(3, 2, 4, 4)
    report = gradcheck_module(model, x, nsamples=4, print_table=False)
    assert report.ok
    assert [row["name"] for row in report] == [n for n, _ in model.named_parameters()]
    for row in report:
        assert row["checked"] == min(4, int(np.prod(row["shape"])))
        assert row["analytic_norm"] == pytest.approx(row["numeric_norm"], rel=1e-5, abs=1e-8)
        assert row["max_rel_error"] < 1e-3
    # the module itself is untouched: float32, same values, same buffers
    assert model[0].weight.dtype == np.float32
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), before[k])


def test_gradcheck_module_catches_a_planted_bug_and_names_the_parameter(capsys):
    td.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), BuggyLayer(6, 3))
    x, y = td.randn(5, 4), td.tensor([0, 2, 1, 1, 0])
    with pytest.raises(td.GradcheckError, match=r"1 of 4 tensors .* 2\.weight at"):
        gradcheck_module(model, x, loss_fn=lambda out: F.cross_entropy(out, y), print_table=False)
    report = gradcheck_module(model, x, raise_exception=False)
    table = capsys.readouterr().out
    assert not report.ok and [row["name"] for row in report.failed()] == ["2.weight"]
    assert "2.weight" in table and "FAIL" in table and "3 of 4 tensors agree" in table
    row = report.failed()[0]
    assert row["analytic_norm"] == pytest.approx(1.1 * row["numeric_norm"], rel=1e-6)


def test_gradcheck_module_checks_inputs_that_require_grad_and_reports_dropout():
    td.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.5))
    x = td.randn(2, 3, requires_grad=True)
    with pytest.raises(td.GradcheckError, match="not deterministic"):
        gradcheck_module(model, x, print_table=False)
    model.eval()
    report = gradcheck_module(model, x, print_table=False)
    assert report.ok and report[-1]["name"] == "input 0" and report[-1]["shape"] == (2, 3)
    with pytest.raises(ValueError, match="no parameter"):
        gradcheck_module(nn.ReLU(), td.randn(3), print_table=False)


# ================================================================ the CLI
def test_cli_gradcheck_prints_a_table_per_parameter(capsys):
    assert cli.main(["gradcheck", "seed_cnn", "--nsamples", "3"]) == 0
    out = capsys.readouterr().out
    for name in ("features.0.weight", "features.3.bias", "classifier.1.weight"):
        assert name in out
    assert "float64" in out and "tensors agree with finite differences" in out and "FAIL" not in out


def test_cli_gradcheck_catches_a_planted_bug_in_conv2d(capsys, monkeypatch):
    from tinydl.ops import conv
    original = conv.Conv2d.backward

    def wrong(ctx, gy):
        gx, gw, gb = original(ctx, gy)
        return gx, gw * 1.05, gb
    monkeypatch.setattr(conv.Conv2d, "backward", wrong)
    assert cli.main(["gradcheck", "seed_cnn", "--nsamples", "3"]) == 1
    out = capsys.readouterr().out
    failed = [line.split()[0] for line in out.splitlines() if line.endswith("FAIL")]
    assert failed and set(failed) <= {"features.0.weight", "features.3.weight"}     # the two convolutions


def test_cli_gradcheck_user_errors_are_one_line_and_exit_2(capsys):
    assert cli.main(["gradcheck", "no_such_net"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown model 'no_such_net'" in err
    assert cli.main(["gradcheck", "lenet5", "--input-size", "1", "8", "8"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot take a 2x1x8x8 input" in err
    assert cli.main(["gradcheck", "lenet5", "--nsamples", "0"]) == 2


# ================================================================ trace_backward
def _mlp(seed=0):
    td.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    x, y = td.randn(5, 4), td.tensor([0, 1, 0, 1, 1])
    return model, x, y


def test_trace_backward_follows_the_engine_and_matches_pytorch(capsys):
    model, x, y = _mlp()
    loss = F.cross_entropy(model(x), y)
    order = [node.name for node in _topological_order([loss.grad_fn])]
    steps = trace_backward(loss, params=model)
    assert [s["op"] for s in steps] == order == ["CrossEntropy", "Linear", "ReLU", "Linear"]
    assert [s["output_shapes"] for s in steps] == [[()], [(5, 2)], [(5, 3)], [(5, 3)]]
    table = capsys.readouterr().out
    assert "4 nodes" in table and "0.weight* ->" in table
    # the leaves got their gradients, as from loss.backward(); the methods are restored
    assert model[0].weight.grad is not None and "backward" not in vars(loss.grad_fn)

    # PyTorch: the same net, retain_grad on every intermediate
    tx = torch.tensor(x.numpy())
    w0, b0, w2, b2 = (torch.tensor(p.detach().numpy(), requires_grad=True) for p in model.parameters())
    h1 = tx @ w0.T + b0
    h2 = torch.relu(h1)
    logits = h2 @ w2.T + b2
    for t in (h1, h2, logits):
        t.retain_grad()
    torch.nn.functional.cross_entropy(logits, torch.tensor(y.numpy())).backward()
    expect_in = [1.0, logits.grad.norm(), h2.grad.norm(), h1.grad.norm()]
    np.testing.assert_allclose([s["grad_norm"] for s in steps], expect_in, rtol=1e-5)
    handed = {label: norm for s in steps for label, _, norm, _ in s["inputs"]}
    for name, p in zip(("0.weight", "0.bias", "2.weight", "2.bias"), (w0, b0, w2, b2)):
        assert handed[name] == pytest.approx(float(p.grad.norm()), rel=1e-5)
        np.testing.assert_allclose(dict(model.named_parameters())[name].grad.numpy(), p.grad.numpy(), rtol=1e-5,
                                   atol=1e-7)


def test_trace_backward_diamond_sums_both_paths_and_keeps_backward_semantics():
    x = leaf(3)
    a = x.exp()
    y = (a * 2.0) * (a * 3.0)
    v = td.Tensor(np.random.default_rng(1).standard_normal(3))
    steps = trace_backward(y, v, retain_graph=True, print_table=False)
    assert [s["op"] for s in steps] == ["Mul", "Mul", "Mul", "Exp"]
    # Exp runs last, once, with the sum of what both branches sent it
    branch = [norm for s in steps[1:3] for _, _, norm, _ in s["inputs"]]
    ga = v.numpy() * 12 * a.detach().numpy()          # d(6 a^2)/da
    assert steps[3]["grad_norm"] == pytest.approx(np.linalg.norm(ga), rel=1e-12)
    assert steps[3]["grad_norm"] < sum(branch) + 1e-12
    np.testing.assert_allclose(x.grad.numpy(), ga * a.detach().numpy(), rtol=1e-12)
    trace_backward(y, v, print_table=False)      # retained: a second pass works, then frees
    np.testing.assert_allclose(x.grad.numpy(), 2 * ga * a.detach().numpy(), rtol=1e-12)
    with pytest.raises(RuntimeError, match="a second time"):
        y.backward(v)
    with pytest.raises(RuntimeError, match="no grad_fn"):
        trace_backward(x)


# ================================================================ draw_graph
def test_draw_graph_layout_and_png(tmp_path):
    x = leaf(3)
    a = x.exp()
    y = ((a * 2.0) * (a * 3.0)).sum()
    nodes, edges = graph_nodes(y, params={"x": x})
    pos = _layout(nodes, edges)
    kind = {nid: (k, label) for nid, k, label in nodes}
    rows = {kind[n][1].split("\n")[0]: r for n, (_, r) in pos.items() if kind[n][0] in ("op", "output", "param")}
    assert rows["output"] == 0 and rows["Sum"] == 1 and rows["x"] == max(r for _, r in pos.values())
    muls = [pos[n] for n in pos if kind[n][1] == "Mul"]
    assert len(muls) == 3 and len({r for _, r in muls}) == 2      # the two branches share a row
    for tail, head, _ in edges:          # data flows down: every edge goes to a lower row
        assert pos[tail][1] > pos[head][1]

    import matplotlib.image
    model, x, y = _mlp()
    path = draw_graph(F.cross_entropy(model(x), y), tmp_path / "mlp.png", params=model, title="MLP")
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 200 and (image[..., :3] < 0.5).any()
    with pytest.raises(TypeError, match="expected a Tensor"):
        draw_graph(3.0, tmp_path / "x.png")


def test_a_nan_gradient_or_difference_fails_instead_of_passing():
    x = td.tensor([0.5, -1.0, 2.0], dtype=td.float64, requires_grad=True)
    with np.errstate(invalid="ignore"):
        with pytest.raises(td.GradcheckError, match="numeric nan"):
            td.gradcheck(lambda t: t.log(), [x])         # log of -1: NaN, which compares False
        model = nn.Linear(3, 2)
        report = gradcheck_module(model, x.detach().reshape(1, 3), loss_fn=lambda out: out.log(),
                                  print_table=False, raise_exception=False)
    assert not report.ok
