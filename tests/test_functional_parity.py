"""Differences from PyTorch 2.13's nn.functional found by a differential hunt, each run through
both libraries: values, and the gradient of every input for a random upstream gradient."""
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import tinydl as td
import tinydl.nn.functional as F

INF = float("inf")
NAN = float("nan")


def _run(lib, fn, arrays, grad, upstream_seed, dtypes=None):
    """fn over tensors of ``arrays`` (those at ``grad`` require grad), backward of a random
    upstream gradient; returns (output, output dtype name, [(gradient, its dtype name)])."""
    xs = []
    for i, a in enumerate(arrays):
        if isinstance(a, np.ndarray):
            a = a.astype(dtypes[i]) if dtypes else a
            t = torch.tensor(a) if lib is torch else td.tensor(a)
            xs.append(t.requires_grad_(i in grad) if lib is torch else td.Tensor(t.array, requires_grad=i in grad))
        else:
            xs.append(a)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # PyTorch's and tinydl's broadcast warnings
        out = fn(*xs)
    g = np.random.default_rng(upstream_seed).standard_normal(tuple(out.shape))
    if out.requires_grad:
        if lib is torch:
            out.backward(torch.tensor(g, dtype=out.dtype))
        else:
            out.backward(td.tensor(g.astype(out.dtype)))
    grads = []
    for i in grad:
        gi = xs[i].grad
        grads.append((None if gi is None else gi.numpy(), None if gi is None else str(gi.dtype).split(".")[-1]))
    return out.detach().numpy(), str(out.dtype).split(".")[-1], grads


def compare(torch_fn, td_fn, arrays, grad=None, dtypes=None, seed=0, rtol=1e-7, atol=1e-10):
    """Values, dtypes and input gradients of ``td_fn`` equal ``torch_fn``'s (NaN equal to NaN;
    a gradient PyTorch leaves undefined must be 0 or none)."""
    if grad is None:
        grad = [i for i, a in enumerate(arrays) if isinstance(a, np.ndarray) and a.dtype.kind == "f"]
    t_out, t_dtype, t_grads = _run(torch, torch_fn, arrays, grad, seed, dtypes)
    o_out, o_dtype, o_grads = _run(td, td_fn, arrays, grad, seed, dtypes)
    assert o_dtype == t_dtype, f"output dtype {o_dtype}, torch {t_dtype}"
    assert o_out.shape == t_out.shape, f"output shape {o_out.shape}, torch {t_out.shape}"
    np.testing.assert_allclose(o_out, t_out, rtol=rtol, atol=atol, equal_nan=True, err_msg="output")
    for i, (t, o) in zip(grad, zip(t_grads, o_grads)):
        if t[0] is None:
            assert o[0] is None or not np.any(o[0]), f"input {i}: torch gives no gradient"
            continue
        assert o[0] is not None, f"input {i}: no gradient"
        assert o[1] == t[1], f"input {i}: gradient dtype {o[1]}, torch {t[1]}"
        np.testing.assert_allclose(o[0], t[0], rtol=rtol, atol=atol, equal_nan=True, err_msg=f"gradient of input {i}")


# ---------------------------------------------------------------- 1. p = inf, -inf, 0 and p < 1 norms
TIES = np.array([[1.0, -3.0, 3.0, 0.5], [2.0, 2.0, -2.0, 0.0], [0.5, -0.5, 0.5, 4.0], [0.0, 0.0, 0.0, 0.0]])


@pytest.mark.parametrize("p", [INF, -INF, 0, -1.0, -2.5, 0.5, 1.0, 3.0])
@pytest.mark.parametrize("eps", [0.0, 1e-6])
def test_pairwise_distance_limits_and_ties(p, eps):
    """Ties of the largest (smallest) |d| share its gradient equally, as PyTorch's; a row of
    zeros has norm 0 and gradient 0 for every p."""
    rng = np.random.default_rng(1)
    arrays = [TIES.copy(), np.zeros_like(TIES)]
    compare(lambda a, b: TF.pairwise_distance(a, b, p=p, eps=eps),
            lambda a, b: F.pairwise_distance(a, b, p=p, eps=eps), arrays)
    arrays = [rng.standard_normal((3, 5)), rng.standard_normal((5,))]         # broadcast, no ties
    compare(lambda a, b: TF.pairwise_distance(a, b, p=p, eps=eps, keepdim=True),
            lambda a, b: F.pairwise_distance(a, b, p=p, eps=eps, keepdim=True), arrays, seed=1)


@pytest.mark.parametrize("p", [INF, -INF, 0, -1.0])
def test_triplet_margin_loss_limits(p):
    rng = np.random.default_rng(2)
    a = np.round(rng.standard_normal((6, 4)), 1)           # rounded: ties among |d| entries
    arrays = [a, np.round(rng.standard_normal((6, 4)), 1), np.round(rng.standard_normal((6, 4)), 1)]
    for swap in (False, True):
        compare(lambda x, y, z: TF.triplet_margin_loss(x, y, z, margin=2.0, p=p, eps=0.0, swap=swap,
                                                       reduction="none"),
                lambda x, y, z: F.triplet_margin_loss(x, y, z, margin=2.0, p=p, eps=0.0, swap=swap,
                                                      reduction="none"), arrays)


def test_pairwise_distance_p_inf_create_graph_matches_torch():
    rng = np.random.default_rng(3)
    a, b, v, w = (rng.standard_normal((3, 5)) for _ in range(4))
    results = []
    for lib, fn in ((torch, TF.pairwise_distance), (td, F.pairwise_distance)):
        x1, x2 = lib.tensor(a, requires_grad=True), lib.tensor(b, requires_grad=True)
        d = fn(x1 * x1, x2, p=INF)                 # x1 * x1: a non-zero second derivative
        g1, = lib.autograd.grad(d, (x1,), grad_outputs=lib.tensor(v[:, 0]), create_graph=True)
        (g1 * lib.tensor(w)).sum().backward()
        results.append((g1.detach().numpy(), x1.grad.numpy(), x2.grad))
    np.testing.assert_allclose(results[1][0], results[0][0], rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(results[1][1], results[0][1], rtol=1e-7, atol=1e-10)


def test_pairwise_distance_refuses_nan_p():
    x = td.tensor(np.ones((2, 3)))
    with pytest.raises(ValueError, match="pairwise_distance: p must be a real number"):
        F.pairwise_distance(x, x, p=NAN)


# ---------------------------------------------------------------- 2. linear with a broadcast bias
@pytest.mark.parametrize("bias_shape", [(1,), (), (3,)])
def test_linear_broadcast_bias(bias_shape):
    rng = np.random.default_rng(4)
    arrays = [rng.standard_normal((2, 4, 5)), rng.standard_normal((3, 5)), rng.standard_normal(bias_shape)]
    compare(TF.linear, F.linear, arrays)
    xs = [td.tensor(a, requires_grad=True) for a in arrays]
    assert td.gradcheck(F.linear, xs)
    assert td.gradgradcheck(lambda x, w, b: F.linear(x * x, w, b), xs)


# ---------------------------------------------------------------- 3. NaN through threshold and shrink
# Fewer than 8 entries: PyTorch's scalar loop, whose formula tinydl follows (its vectorised
# CPU loop gives hardshrink/softshrink a 0 gradient at NaN).
NAN_INPUT = np.array([NAN, -1.0, -0.5, 0.2, 0.5, 1.0, 2.0])


@pytest.mark.parametrize("name, torch_fn, td_fn", [
    ("threshold", lambda x: TF.threshold(x, 0.5, -7.0), lambda x: F.threshold(x, 0.5, -7.0)),
    ("nn.Threshold", lambda x: torch.nn.Threshold(0.5, -7.0)(x), lambda x: td.nn.Threshold(0.5, -7.0)(x)),
    ("hardshrink", lambda x: TF.hardshrink(x, 0.5), lambda x: F.hardshrink(x, 0.5)),
    ("nn.Hardshrink", lambda x: torch.nn.Hardshrink(0.5)(x), lambda x: td.nn.Hardshrink(0.5)(x)),
    ("softshrink", lambda x: TF.softshrink(x, 0.5), lambda x: F.softshrink(x, 0.5)),
    ("nn.Softshrink", lambda x: torch.nn.Softshrink(0.5)(x), lambda x: td.nn.Softshrink(0.5)(x)),
])
def test_nan_propagates(name, torch_fn, td_fn):
    compare(torch_fn, td_fn, [NAN_INPUT.copy()])
    out = td_fn(td.tensor(NAN_INPUT))
    assert np.isnan(out.numpy()[0])


# ---------------------------------------------------------------- 4. hardswish at its kinks
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_hardswish_gradient_at_the_kinks(dtype):
    x = np.array([-3.0, 3.0, -3.5, 3.5, -2.9, 2.9, 0.0, NAN])
    compare(TF.hardswish, F.hardswish, [x], dtypes=[dtype], rtol=1e-6, atol=1e-7)


def test_hardswish_double_backward_at_the_kinks():
    x0 = np.array([-3.0, 3.0, -1.0, 4.0])
    results = []
    for lib, fn in ((torch, TF.hardswish), (td, F.hardswish)):
        x = lib.tensor(x0, requires_grad=True)
        g, = lib.autograd.grad(fn(x), (x,), grad_outputs=lib.tensor(np.ones(4)), create_graph=True)
        results.append(g.detach().numpy())
    np.testing.assert_allclose(results[1], results[0])


# ---------------------------------------------------------------- 5. inplace=True
INPLACE = {
    "elu": lambda m, h: m.elu(h, inplace=True),
    "selu": lambda m, h: m.selu(h, inplace=True),
    "celu": lambda m, h: m.celu(h, alpha=0.7, inplace=True),
    "silu": lambda m, h: m.silu(h, inplace=True),
    "mish": lambda m, h: m.mish(h, inplace=True),
    "hardswish": lambda m, h: m.hardswish(h, inplace=True),
    "hardsigmoid": lambda m, h: m.hardsigmoid(h, inplace=True),
    "threshold": lambda m, h: m.threshold(h, 0.1, -2.0, inplace=True),
    "rrelu": lambda m, h: m.rrelu(h, training=False, inplace=True),
    # p = 1 is the one deterministic training dropout (the masks cannot match PyTorch's)
    "dropout": lambda m, h: m.dropout(h, p=1.0, inplace=True),
    "dropout2d": lambda m, h: m.dropout2d(h, p=1.0, inplace=True),
    "alpha_dropout": lambda m, h: m.alpha_dropout(h, p=1.0, training=True, inplace=True),
    "feature_alpha_dropout": lambda m, h: m.feature_alpha_dropout(h, p=1.0, training=True, inplace=True),
}
X0 = np.random.default_rng(5).standard_normal((2, 3, 2, 2)) * 3


@pytest.mark.parametrize("name", list(INPLACE))
def test_inplace_writes_into_the_input_while_recording(name):
    """h = x * 1.0; f(h, inplace=True) returns h itself, h holds the result, and later uses
    of h backpropagate through f into x (PyTorch's in-place op)."""
    f = INPLACE[name]
    w0 = np.random.default_rng(6).standard_normal(X0.shape)

    def run(lib, m):
        def fn(x, w):
            h = x * 1.0
            assert f(m, h) is h
            return h * w
        return fn
    compare(run(torch, TF), run(td, F), [X0.copy(), w0])


@pytest.mark.parametrize("name", list(INPLACE))
def test_inplace_on_a_view_while_recording(name):
    f = INPLACE[name]

    def run(lib, m):
        def fn(x):
            h = x * 1.0
            f(m, h[1:])                         # a view: its base h changes with it
            return h * h
        return fn
    compare(run(torch, TF), run(td, F), [X0.copy()])


@pytest.mark.parametrize("name", list(INPLACE))
def test_inplace_under_no_grad(name):
    f = INPLACE[name]
    t, x = torch.tensor(X0), td.tensor(X0)
    with torch.no_grad():
        assert f(TF, t) is t
    with td.no_grad():
        assert f(F, x) is x
    np.testing.assert_allclose(x.numpy(), t.numpy(), rtol=1e-7)


@pytest.mark.parametrize("name", ["elu", "silu", "dropout"])
def test_inplace_refuses_a_leaf_that_requires_grad(name):
    x = td.tensor(X0, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"\(inplace=True\): the tensor is \(a view of\) a leaf"):
        INPLACE[name](F, x)


def test_inplace_silu_create_graph_matches_torch():
    """silu's backward reads x: the op reads a copy, which the write leaves alone."""
    results = []
    for lib, m in ((torch, TF), (td, F)):
        x = lib.tensor(X0, requires_grad=True)
        h = x * 1.0
        m.silu(h, inplace=True)
        g, = lib.autograd.grad((h * h).sum(), (x,), create_graph=True)
        g.backward(lib.tensor(np.random.default_rng(2).standard_normal(g.shape)))     # a random upstream
        results.append((g.detach().numpy(), x.grad.numpy()))
    for ours, theirs in zip(results[1], results[0]):
        np.testing.assert_allclose(ours, theirs, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("module, shape", [(td.nn.Dropout, (3, 4)), (td.nn.Dropout2d, (2, 3, 4, 4))])
def test_dropout_module_inplace(module, shape):
    td.manual_seed(0)
    layer = module(0.5, inplace=True)
    x0 = np.random.default_rng(7).standard_normal(shape)
    x = td.tensor(x0, requires_grad=True)
    h = x * 1.0
    assert layer(h) is h
    mask = (h.detach().numpy() != 0) * 2.0
    assert 0 < mask.mean() < 2
    np.testing.assert_allclose(h.detach().numpy(), x0 * mask)
    g = np.random.default_rng(8).standard_normal(shape)
    h.backward(td.tensor(g))
    np.testing.assert_allclose(x.grad.numpy(), g * mask)
    layer.eval()
    assert layer(h) is h


# ---------------------------------------------------------------- 6. gaussian_nll_loss with a number as var
@pytest.mark.parametrize("shape", [(5,), (3, 4), (2, 3, 4)])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_gaussian_nll_float_var(shape, reduction):
    rng = np.random.default_rng(9)
    arrays = [rng.standard_normal(shape), rng.standard_normal(shape)]
    compare(lambda x, t: TF.gaussian_nll_loss(x, t, 0.5, reduction=reduction),
            lambda x, t: F.gaussian_nll_loss(x, t, 0.5, reduction=reduction), arrays)


def test_gaussian_nll_var_size1_in_one_dim_and_refusals():
    rng = np.random.default_rng(10)
    arrays = [rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 3, 4)), rng.uniform(0.2, 2, (2, 1, 4))]
    compare(TF.gaussian_nll_loss, F.gaussian_nll_loss, arrays)
    x = td.tensor(arrays[0])
    with pytest.raises(ValueError, match="gaussian_nll_loss: var has negative entries"):
        F.gaussian_nll_loss(x, x, -0.5)
    with pytest.raises(ValueError, match="gaussian_nll_loss: var of shape"):
        F.gaussian_nll_loss(x, x, td.tensor(np.ones((2, 1, 1))))


# ---------------------------------------------------------------- 7. triplet_margin_loss of any rank
@pytest.mark.parametrize("shapes", [[(2, 3, 4)] * 3, [(2, 3, 2, 4)] * 3, [(2, 3, 4), (1, 3, 4), (2, 1, 4)],
                                    [(4,)] * 3, [()] * 3])
@pytest.mark.parametrize("swap", [False, True])
def test_triplet_margin_loss_any_rank(shapes, swap):
    rng = np.random.default_rng(11)
    arrays = [rng.standard_normal(s) for s in shapes]
    for reduction in ("none", "mean"):
        compare(lambda a, p, n: TF.triplet_margin_loss(a, p, n, margin=2.0, swap=swap, reduction=reduction),
                lambda a, p, n: F.triplet_margin_loss(a, p, n, margin=2.0, swap=swap, reduction=reduction), arrays)


def test_triplet_margin_loss_refuses_different_ranks():
    x = td.tensor(np.ones((2, 3, 4)))
    with pytest.raises(ValueError, match="same number of dimensions"):
        F.triplet_margin_loss(x, x[0], x)
    with pytest.raises(ValueError, match="cannot be broadcast together"):
        F.triplet_margin_loss(x, td.tensor(np.ones((2, 2, 4))), x)


# ---------------------------------------------------------------- 8. max pooling of integer tensors
@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.int16, np.int8, np.uint8])
def test_max_pool_integer_tensors(dtype):
    rng = np.random.default_rng(12)
    info = np.iinfo(dtype)
    for trial in range(40):
        H, W = (int(v) for v in rng.integers(1, 7, 2))
        k = tuple(int(v) for v in rng.integers(1, 4, 2))
        d = tuple(int(v) for v in rng.integers(1, 3, 2))
        pad = tuple(int(rng.integers(0, (dd * (kk - 1) + 1) // 2 + 1)) for kk, dd in zip(k, d))
        s = tuple(int(v) for v in rng.integers(1, 3, 2))
        ceil = bool(trial % 3 == 0)
        # half the trials near the dtype's minimum: ties with the padding
        low, high = (info.min, info.min + 2) if trial % 2 else (max(info.min, -3), min(info.max, 3))
        x = rng.integers(low, high, (2, 2, H, W), endpoint=True).astype(dtype)
        try:
            ty, ti = TF.max_pool2d(torch.tensor(x), k, s, pad, d, ceil, return_indices=True)
        except RuntimeError:            # an output size PyTorch refuses
            continue
        y, i = F.max_pool2d(td.tensor(x), k, s, pad, d, ceil, return_indices=True)
        assert y.dtype == x.dtype
        np.testing.assert_array_equal(y.numpy(), ty.numpy())
        np.testing.assert_array_equal(i.numpy(), ti.numpy())
        np.testing.assert_array_equal(F.max_pool2d(td.tensor(x), k, s, pad, d, ceil).numpy(), ty.numpy())
    x = rng.integers(max(info.min, -5), 5, (2, 3, 7)).astype(dtype)
    ty, ti = TF.max_pool1d(torch.tensor(x), 3, 2, 1, return_indices=True)
    y, i = F.max_pool1d(td.tensor(x), 3, 2, 1, return_indices=True)
    np.testing.assert_array_equal(y.numpy(), ty.numpy())
    np.testing.assert_array_equal(i.numpy(), ti.numpy())
    # (PyTorch 2.13's CPU max_pool1d without indices has no integer kernel; tinydl's is the one above)
    np.testing.assert_array_equal(F.max_pool1d(td.tensor(x), 3, 2, 1).numpy(), ty.numpy())


def test_max_pool_integer_empty_window_and_bool():
    x = np.array([[[[5]]]], dtype=np.int16)           # a dilated window that reads no pixel
    ty, ti = TF.max_pool2d(torch.tensor(x), (1, 2), dilation=2, padding=(0, 1), return_indices=True)
    y, i = F.max_pool2d(td.tensor(x), (1, 2), dilation=2, padding=(0, 1), return_indices=True)
    np.testing.assert_array_equal(y.numpy(), ty.numpy())
    np.testing.assert_array_equal(i.numpy(), ti.numpy())
    with pytest.raises(RuntimeError, match="max_pool2d: not implemented for bool"):
        F.max_pool2d(td.tensor(np.ones((1, 1, 2, 2), bool)), 2)
    with pytest.raises(RuntimeError, match="max_pool1d: not implemented for bool"):
        F.max_pool1d(td.tensor(np.ones((1, 1, 2), bool)), 2)


# ---------------------------------------------------------------- 9. losses of float32 and float64 operands
def _unit(rng, shape):
    return rng.uniform(0.1, 1.0, shape)


MIXED = {
    "poisson_nll": (TF.poisson_nll_loss, F.poisson_nll_loss, [(3, 4), (3, 4)], None),
    "poisson_nll_broadcast": (TF.poisson_nll_loss, F.poisson_nll_loss, [(3, 4), (4,)], None),
    "gaussian_nll": (TF.gaussian_nll_loss, F.gaussian_nll_loss, [(3, 4), (3, 4), (3, 4)], None),
    "gaussian_nll_var_col": (TF.gaussian_nll_loss, F.gaussian_nll_loss, [(3, 4), (3, 4), (3, 1)], None),
    "multilabel_soft_margin": (TF.multilabel_soft_margin_loss, F.multilabel_soft_margin_loss,
                               [(3, 4), (3, 4)], None),
    "multilabel_soft_margin_weight": (
        lambda x, y, w: TF.multilabel_soft_margin_loss(x, y, weight=w),
        lambda x, y, w: F.multilabel_soft_margin_loss(x, y, weight=w), [(3, 4), (3, 4), (4,)], [0, 1]),
    "cosine_embedding": (lambda a, b, y: TF.cosine_embedding_loss(a, b, y),
                         lambda a, b, y: F.cosine_embedding_loss(a, b, y), [(3, 4), (3, 4), "labels"], [0, 1]),
    "triplet_margin": (lambda a, p, n: TF.triplet_margin_loss(a, p, n, margin=2.0),
                       lambda a, p, n: F.triplet_margin_loss(a, p, n, margin=2.0), [(3, 4), (3, 4), (3, 4)], None),
    "triplet_margin_swap_none": (
        lambda a, p, n: TF.triplet_margin_loss(a, p, n, margin=2.0, swap=True, reduction="none"),
        lambda a, p, n: F.triplet_margin_loss(a, p, n, margin=2.0, swap=True, reduction="none"),
        [(3, 4), (3, 4), (3, 4)], None),
}


@pytest.mark.parametrize("name", list(MIXED))
@pytest.mark.parametrize("first", [np.float32, np.float64])
def test_losses_promote_float32_and_float64(name, first):
    """Operands of float32 and float64: a float64 loss, each gradient in its input's dtype."""
    torch_fn, td_fn, shapes, grad = MIXED[name]
    rng = np.random.default_rng(13)
    arrays = [np.array([1, -1, 1]) if s == "labels" else _unit(rng, s) for s in shapes]
    dtypes = [np.int64 if s == "labels" else (first if k % 2 == 0 else (np.float64 if first is np.float32
                                                                         else np.float32))
              for k, s in enumerate(shapes)]
    compare(torch_fn, td_fn, arrays, grad=grad, dtypes=dtypes, rtol=1e-6, atol=1e-7)
