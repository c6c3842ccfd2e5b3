"""The small pieces of torch.nn / torch.nn.functional in tinydl/ops/extras.py and
tinydl/nn/extras.py (and the in-place activations and *_with_indices aliases beside their
families), against PyTorch: modules through load_state_dict of a torch module's weights,
a random upstream gradient, every input and parameter gradient; the in-place forms change
their input and give torch's value and gradient; gumbel_softmax's properties; the errors.

The functional ops' gradients (gradcheck, float32 / float64 parity, double backward) are
rows of the op table (tests/optable/extras.py)."""
import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import tinydl as td
import tinydl.nn as nn
import tinydl.nn.functional as F

DTYPES = pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
TORCH_DTYPE = {np.float64: torch.float64, np.float32: torch.float32}


def _np(t):
    return t.detach().numpy()


def _close(a, b, dtype=np.float64, what=""):
    tol = 1e-10 if dtype == np.float64 else 2e-5
    np.testing.assert_allclose(_np(a), _np(b), atol=tol, rtol=tol, err_msg=what)


def _against_torch(ours, theirs, arrays, dtype, seed=1):
    """Load torch's weights into ``ours``, run both on ``arrays`` with one random upstream
    gradient: output, every input gradient and every parameter gradient must agree, in ``dtype``."""
    theirs = theirs.to(TORCH_DTYPE[dtype])
    ours.to(dtype).load_state_dict(theirs.state_dict())
    xs = [td.tensor(a.astype(dtype), requires_grad=True) for a in arrays]
    ts = [torch.tensor(a.astype(dtype), requires_grad=True) for a in arrays]
    y, t = ours(*xs), theirs(*ts)
    assert y.dtype == dtype and y.shape == tuple(t.shape)
    _close(y, t, dtype, "output")
    g = np.random.default_rng(seed).standard_normal(y.shape).astype(dtype)
    y.backward(td.tensor(g))
    t.backward(torch.tensor(g))
    for k, (x, s) in enumerate(zip(xs, ts)):
        assert x.grad.dtype == dtype
        _close(x.grad, s.grad, dtype, f"gradient of input {k}")
    theirs_params = dict(theirs.named_parameters())
    assert [n for n, _ in ours.named_parameters()] == list(theirs_params)
    for name, p in ours.named_parameters():
        assert p.grad.dtype == dtype
        _close(p.grad, theirs_params[name].grad, dtype, f"gradient of {name}")
    return y


# ---------------------------------------------------------------- in-place activations
IN_PLACE = [("relu_", (), "relu", ()), ("elu_", (0.7,), "elu", (0.7,)), ("celu_", (1.3,), "celu", (1.3,)),
            ("selu_", (), "selu", ()), ("leaky_relu_", (0.2,), "leaky_relu", (0.2,)),
            ("hardtanh_", (-0.5, 0.8), "hardtanh", (-0.5, 0.8)), ("rrelu_", (0.1, 0.3), "rrelu", (0.1, 0.3)),
            ("threshold_", (0.1, -2.0), "threshold", (0.1, -2.0))]


@DTYPES
@pytest.mark.parametrize("name, args, out_of_place, _", IN_PLACE, ids=[c[0] for c in IN_PLACE])
def test_in_place_form_changes_its_input_with_torchs_value_and_gradient(name, args, out_of_place, _, dtype):
    rng = np.random.default_rng(0)
    a, g = rng.standard_normal((3, 5)).astype(dtype) * 2, rng.standard_normal((3, 5)).astype(dtype)
    w = td.tensor(a, requires_grad=True)
    x = w * 1                                   # a non-leaf: may be changed while recorded
    version = x._version
    out = getattr(F, name)(x, *args)
    assert out is x and x._version > version and x.dtype == dtype
    wt = torch.tensor(a, requires_grad=True)
    xt = wt * 1
    getattr(TF, name)(xt, *args)
    _close(x, xt, dtype, "value")
    _close(x, getattr(F, out_of_place)(td.tensor(a), *args), dtype, "the out-of-place op's value")
    x.backward(td.tensor(g))
    xt.backward(torch.tensor(g))
    if name == "celu_" and dtype == np.float64:
        # torch's celu backward is off by ~1e-8 in float64 (1/alpha kept in float32): check
        # the exact slope exp(x / alpha) below 0, and torch to its own precision
        np.testing.assert_allclose(w.grad.numpy(), g * np.where(a > 0, 1, np.exp(a / args[0])), rtol=1e-14)
        np.testing.assert_allclose(w.grad.numpy(), wt.grad.numpy(), rtol=1e-7)
        return
    _close(w.grad, wt.grad, dtype, "gradient")


@pytest.mark.parametrize("name, args, _, __", IN_PLACE, ids=[c[0] for c in IN_PLACE])
def test_in_place_form_outside_the_graph_writes_the_array_and_refuses_a_leaf(name, args, _, __):
    a = np.linspace(-2, 2, 9)
    x = td.tensor(a)
    array = x.array
    assert getattr(F, name)(x, *args) is x and x.array is array
    np.testing.assert_allclose(x.numpy(), getattr(TF, name)(torch.tensor(a), *args).numpy(), rtol=1e-12)
    with pytest.raises(RuntimeError, match="leaf"):
        getattr(F, name)(td.tensor(a, requires_grad=True), *args)


def test_in_place_form_is_caught_by_the_version_check_of_an_op_that_saved_its_input():
    w = td.tensor(np.array([1.0, -2.0, 3.0]), requires_grad=True)
    v = td.tensor(np.array([0.5, 0.5, 0.5]), requires_grad=True)
    x = w * 1
    z = x * v                                   # keeps x for v's gradient
    F.elu_(x)
    with pytest.raises(RuntimeError):
        z.backward(td.tensor(np.array([0.3, -1.2, 0.7])))


def test_rrelu_in_place_while_training_draws_slopes_in_range_and_uses_them_for_the_gradient():
    td.manual_seed(0)
    a = -np.linspace(0.5, 3, 40)
    w = td.tensor(a, requires_grad=True)
    x = w * 1
    F.rrelu_(x, 0.1, 0.3, training=True)
    slope = x.detach().numpy() / a
    assert np.all((slope >= 0.1) & (slope <= 0.3)) and np.unique(slope).size > 1
    g = np.random.default_rng(2).standard_normal(a.shape)
    x.backward(td.tensor(g))
    np.testing.assert_allclose(w.grad.numpy(), g * slope, rtol=1e-12)


# ---------------------------------------------------------------- *_with_indices aliases
@pytest.mark.parametrize("name, shape, args", [
    ("max_pool2d_with_indices", (2, 3, 6, 5), (3, 2, 1)),
    ("max_pool1d_with_indices", (2, 3, 9), (3, 2, 1, 2, True)),
    ("adaptive_max_pool2d_with_indices", (2, 3, 7, 5), ((3, 2),)),
    ("adaptive_max_pool1d_with_indices", (3, 10), (4,)),
    ("max_pool3d_with_indices", (2, 2, 5, 4, 6), (2, 2, 1)),
    ("adaptive_max_pool3d_with_indices", (2, 5, 4, 6), ((2, 3, 4),)),
])
def test_with_indices_aliases_always_return_values_and_torchs_indices(name, shape, args):
    a = np.random.default_rng(0).permutation(math.prod(shape)).reshape(shape) / 7.0
    for return_indices in (False, True):
        values, indices = getattr(F, name)(td.tensor(a), *args, return_indices=return_indices)
        t_values, t_indices = getattr(TF, name)(torch.tensor(a), *args)
        np.testing.assert_array_equal(values.numpy(), t_values.numpy())
        np.testing.assert_array_equal(indices.numpy(), t_indices.numpy())
        assert indices.dtype == np.int64


# ---------------------------------------------------------------- ChannelShuffle, LPPool
@DTYPES
@pytest.mark.parametrize("shape, groups", [((2, 6, 3, 4), 3), ((2, 4, 5), 2), ((1, 6, 2, 2, 3), 6)])
def test_channel_shuffle_module_matches_torch(shape, groups, dtype):
    _against_torch(nn.ChannelShuffle(groups), torch.nn.ChannelShuffle(groups),
                   [np.random.default_rng(0).standard_normal(shape)], dtype)
    assert repr(nn.ChannelShuffle(groups)) == repr(torch.nn.ChannelShuffle(groups))


def test_channel_shuffle_is_the_interleaving_permutation():
    y = F.channel_shuffle(td.tensor(np.arange(6.0).reshape(1, 6, 1)), 2)
    assert y.numpy().ravel().tolist() == [0, 3, 1, 4, 2, 5]


@DTYPES
@pytest.mark.parametrize("cls, args, shape", [
    ("LPPool2d", (2, 3, 2), (2, 3, 7, 6)),
    ("LPPool2d", (3, (2, 3), None, True), (2, 2, 5, 7)),
    ("LPPool2d", (1.5, 2), (3, 6, 4)),
    ("LPPool1d", (2, 3), (2, 3, 9)),
    ("LPPool1d", (3, 2, 1, True), (3, 8)),
    ("LPPool3d", (2, (2, 1, 2)), (2, 2, 4, 3, 4)),
    ("LPPool3d", (1.5, 2, 1, True), (2, 3, 3, 3)),
    ("LPPool2d", (float("inf"), 2), (2, 3, 4, 4)),
])
def test_lp_pool_modules_match_torch(cls, args, shape, dtype):
    a = np.random.default_rng(0).uniform(0.2, 2.0, shape)
    _against_torch(getattr(nn, cls)(*args), getattr(torch.nn, cls)(*args), [a], dtype)
    assert repr(getattr(nn, cls)(*args)) == repr(getattr(torch.nn, cls)(*args))


def test_lp_pool_of_p_1_is_the_window_sum_and_large_p_nears_the_max():
    a = np.random.default_rng(0).uniform(0.1, 1.0, (1, 1, 4, 4))
    np.testing.assert_allclose(F.lp_pool2d(td.tensor(a), 1, 2).numpy(),
                               a.reshape(1, 1, 2, 2, 2, 2).sum(axis=(3, 5)), rtol=1e-12)
    np.testing.assert_allclose(F.lp_pool2d(td.tensor(a), 60, 2).numpy(),
                               a.reshape(1, 1, 2, 2, 2, 2).max(axis=(3, 5)), rtol=0.05)


# ---------------------------------------------------------------- Bilinear
@DTYPES
@pytest.mark.parametrize("lead, bias", [((4,), True), ((2, 3), False), ((), True)])
def test_bilinear_module_matches_torch(lead, bias, dtype):
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    theirs = torch.nn.Bilinear(3, 5, 4, bias=bias)
    ours = nn.Bilinear(3, 5, 4, bias=bias)
    y = _against_torch(ours, theirs, [rng.standard_normal(lead + (3,)), rng.standard_normal(lead + (5,))], dtype)
    assert y.shape == lead + (4,)
    assert repr(ours) == repr(theirs)


def test_bilinear_is_x1_A_x2_plus_b_and_initialised_as_torch():
    rng = np.random.default_rng(0)
    x1, x2, A, b = rng.standard_normal((6, 3)), rng.standard_normal((6, 4)), rng.standard_normal((2, 3, 4)), \
        rng.standard_normal(2)
    np.testing.assert_allclose(F.bilinear(td.tensor(x1), td.tensor(x2), td.tensor(A), td.tensor(b)).numpy(),
                               np.einsum("ni,kij,nj->nk", x1, A, x2) + b, rtol=1e-12)
    layer = nn.Bilinear(100, 7, 50)
    bound = 1 / math.sqrt(100)
    for p in (layer.weight, layer.bias):
        assert p.dtype == np.float32 and np.abs(_np(p)).max() <= bound
        assert np.abs(_np(p)).max() > 0.9 * bound      # spread over the whole range
    assert layer.weight.shape == (50, 100, 7) and layer.bias.shape == (50,)
    assert list(layer.state_dict()) == list(torch.nn.Bilinear(100, 7, 50).state_dict())


# ---------------------------------------------------------------- RMSNorm
@DTYPES
@pytest.mark.parametrize("normalized_shape, kwargs, shape", [
    (6, {}, (4, 6)),
    ((4, 5), {"eps": 1e-3}, (2, 3, 4, 5)),
    ([5], {"elementwise_affine": False}, (3, 5)),
    (7, {"eps": 0.5}, (7,)),
])
def test_rms_norm_module_matches_torch(normalized_shape, kwargs, shape, dtype):
    rng = np.random.default_rng(0)
    theirs = torch.nn.RMSNorm(normalized_shape, **kwargs)
    if theirs.weight is not None:
        with torch.no_grad():
            theirs.weight.copy_(torch.tensor(rng.uniform(0.5, 1.5, tuple(theirs.weight.shape))))
    ours = nn.RMSNorm(normalized_shape, **kwargs)
    _against_torch(ours, theirs, [rng.standard_normal(shape) * 3 + 1], dtype)
    assert repr(ours) == repr(theirs)
    assert list(ours.state_dict()) == list(theirs.state_dict())


def test_rms_norm_default_eps_is_the_dtypes_machine_epsilon():
    x = np.full((1, 4), 1e-5)
    for dtype in (np.float32, np.float64):
        got = F.rms_norm(td.tensor(x.astype(dtype)), (4,))
        expected = x / np.sqrt(np.mean(x * x) + np.finfo(dtype).eps)
        assert got.dtype == dtype
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5)


# ---------------------------------------------------------------- pdist
def test_pdist_is_the_upper_triangle_of_the_distance_matrix_and_handles_small_inputs():
    a = np.random.default_rng(0).standard_normal((5, 3))
    full = np.linalg.norm(a[:, None] - a[None], axis=2)
    np.testing.assert_allclose(F.pdist(td.tensor(a)).numpy(), full[np.triu_indices(5, 1)], rtol=1e-12)
    assert F.pdist(td.tensor(a[:1])).shape == (0,) and F.pdist(td.tensor(a[:0])).shape == (0,)
    for p in (2, 0, math.inf):
        np.testing.assert_array_equal(F.pdist(td.tensor(a[:, :0]), p).numpy(), np.zeros(10))
    assert F.pdist(td.tensor(a.astype(np.float32))).dtype == np.float32


@pytest.mark.parametrize("p", [2, 1, 0.5, 3, math.inf, 0])
def test_pdist_gradient_at_equal_rows_and_tied_maxima_is_torchs(p):
    a = np.array([[1.0, 2.0], [1.0, 2.0], [0.0, 0.0], [1.0, -1.0]])
    g = np.random.default_rng(0).standard_normal(6)
    x, xt = td.tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)
    F.pdist(x, p).backward(td.tensor(g))
    TF.pdist(xt, p).backward(torch.tensor(g))
    np.testing.assert_allclose(x.grad.numpy(), xt.grad.numpy(), rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- gumbel_softmax
@DTYPES
@pytest.mark.parametrize("dim", [-1, 0, 1])
def test_gumbel_softmax_soft_is_a_distribution_and_seeded(dim, dtype):
    logits = td.tensor(np.random.default_rng(0).standard_normal((3, 4, 5)).astype(dtype))
    td.manual_seed(3)
    y = F.gumbel_softmax(logits, tau=0.7, dim=dim)
    assert y.dtype == dtype and y.shape == logits.shape
    assert np.all(y.numpy() > 0) and np.all(y.numpy() < 1)
    np.testing.assert_allclose(y.numpy().sum(axis=dim), 1, rtol=1e-5)
    td.manual_seed(3)
    np.testing.assert_array_equal(F.gumbel_softmax(logits, tau=0.7, dim=dim).numpy(), y.numpy())
    assert not np.array_equal(F.gumbel_softmax(logits, tau=0.7, dim=dim).numpy(), y.numpy())


@DTYPES
def test_gumbel_softmax_hard_is_one_hot_with_the_soft_samples_gradient(dtype):
    rng = np.random.default_rng(0)
    a, g = rng.standard_normal((6, 5)).astype(dtype), rng.standard_normal((6, 5)).astype(dtype)
    soft_logits, hard_logits = td.tensor(a, requires_grad=True), td.tensor(a, requires_grad=True)
    td.manual_seed(7)
    soft = F.gumbel_softmax(soft_logits, tau=0.5, dim=1)
    td.manual_seed(7)
    hard = F.gumbel_softmax(hard_logits, tau=0.5, hard=True, dim=1)
    assert hard.dtype == dtype
    np.testing.assert_array_equal(_np(hard), np.eye(5, dtype=dtype)[_np(soft).argmax(axis=1)])
    soft.backward(td.tensor(g))
    hard.backward(td.tensor(g))         # straight through: the soft sample's gradient
    assert hard_logits.grad.dtype == dtype
    np.testing.assert_allclose(hard_logits.grad.numpy(), soft_logits.grad.numpy(), rtol=1e-6, atol=1e-7)
    assert np.abs(soft_logits.grad.numpy()).max() > 0


def test_gumbel_softmax_hard_samples_follow_the_softmax_of_the_logits():
    probs = np.array([0.1, 0.2, 0.3, 0.4])
    logits = td.tensor(np.tile(np.log(probs), (40000, 1)))
    td.manual_seed(0)
    frequency = F.gumbel_softmax(logits, tau=2.0, hard=True).numpy().mean(axis=0)
    np.testing.assert_allclose(frequency, probs, atol=0.01)      # any tau: argmax(logits + g) ~ softmax
    td.manual_seed(0)
    hot, cold = (F.gumbel_softmax(logits, tau=tau).numpy().max(axis=1).mean() for tau in (2.0, 0.05))
    assert cold > 0.95 and hot < 0.7                             # small tau: nearly one-hot


def test_gumbel_softmax_warns_on_eps_and_refuses_bad_arguments():
    x = td.tensor(np.zeros((2, 3)))
    with pytest.warns(UserWarning, match="eps"):
        F.gumbel_softmax(x, eps=1e-3)
    with pytest.raises(ValueError, match="tau"):
        F.gumbel_softmax(x, tau=0)
    with pytest.raises(IndexError):
        F.gumbel_softmax(x, dim=2)
    with pytest.raises(RuntimeError, match="floating"):
        F.gumbel_softmax(td.tensor(np.zeros((2, 3), dtype=np.int64)))


# ---------------------------------------------------------------- upsample aliases
@pytest.mark.parametrize("name, kwargs", [
    ("upsample", {"scale_factor": 2}),
    ("upsample", {"size": (5, 7), "mode": "bilinear", "align_corners": False}),
    ("upsample", {"scale_factor": 1.5, "mode": "bicubic", "align_corners": True}),
    ("upsample_nearest", {"size": (7, 9)}),
    ("upsample_bilinear", {"scale_factor": 2}),
    ("upsample_bilinear", {"size": 5}),
])
def test_upsample_aliases_are_interpolate_and_warn_as_torch(name, kwargs):
    a = np.random.default_rng(0).standard_normal((2, 3, 4, 4)).astype(np.float32)
    x, xt = td.tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)
    with pytest.warns(UserWarning, match=f"nn.functional.{name}` is deprecated"):
        y = getattr(F, name)(x, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = getattr(TF, name)(xt, **kwargs)
    assert y.dtype == np.float32
    _close(y, t, np.float32)
    g = np.random.default_rng(1).standard_normal(y.shape).astype(np.float32)
    y.backward(td.tensor(g))
    t.backward(torch.tensor(g))
    _close(x.grad, xt.grad, np.float32)


# ---------------------------------------------------------------- Lazy modules
LAZY = [
    ("LazyLinear", (3,), "Linear", (5, 3), (4, 5)),
    ("LazyLinear", (2, False), "Linear", (6, 2, False), (2, 3, 6)),
    ("LazyConv1d", (4, 3), "Conv1d", (6, 4, 3), (2, 6, 9)),
    ("LazyConv2d", (4, 3, 2, 1, 1, 2), "Conv2d", (6, 4, 3, 2, 1, 1, 2), (2, 6, 7, 7)),
    ("LazyConv2d", (4, 3), "Conv2d", (5, 4, 3), (5, 6, 6)),
    ("LazyConvTranspose1d", (4, 3, 2), "ConvTranspose1d", (6, 4, 3, 2), (2, 6, 5)),
    ("LazyConvTranspose2d", (4, 3, 2, 1, 1, 2), "ConvTranspose2d", (6, 4, 3, 2, 1, 1, 2), (2, 6, 4, 4)),
    ("LazyBatchNorm1d", (), "BatchNorm1d", (5,), (8, 5)),
    ("LazyBatchNorm2d", (), "BatchNorm2d", (3,), (4, 3, 5, 5)),
    ("LazyInstanceNorm1d", (), "InstanceNorm1d", (5, 1e-5, 0.1, True, True), (2, 5, 7)),
    ("LazyInstanceNorm2d", (), "InstanceNorm2d", (3, 1e-5, 0.1, True, True), (3, 6, 5)),
]


@DTYPES
@pytest.mark.parametrize("lazy, args, eager, eager_args, shape", LAZY, ids=[f"{c[0]}-{c[4]}" for c in LAZY])
def test_lazy_module_becomes_the_eager_one_and_then_matches_torch(lazy, args, eager, eager_args, shape, dtype):
    rng = np.random.default_rng(0)
    module = getattr(nn, lazy)(*args).to(dtype)
    assert module.has_uninitialized_params()
    params = list(module.parameters())          # an optimizer built now keeps working: the same objects
    with pytest.raises(RuntimeError, match="not initialised yet.*state_dict"):
        module.state_dict()
    with pytest.raises(RuntimeError, match="not initialised yet.*load_state_dict"):
        module.load_state_dict({})
    first = rng.standard_normal(shape).astype(dtype)
    module(td.tensor(first))
    assert type(module) is getattr(nn, eager) and module.weight.dtype == dtype
    assert [p is q for p, q in zip(module.parameters(), params)] == [True] * len(params)
    torch.manual_seed(0)
    theirs = getattr(torch.nn, eager)(*eager_args)
    assert repr(module) == repr(theirs)
    for (name, p), (_, q) in zip(module.state_dict().items(), theirs.state_dict().items()):
        assert p.shape == tuple(q.shape), name
    if "Norm" not in eager:         # drawn as the eager class: within PyTorch's bound, and not all zero
        bound = 1 / math.sqrt(module.weight[0].numel() if "Transpose" not in eager else
                              module.weight.shape[1] * math.prod(module.weight.shape[2:]))
        assert 0 < np.abs(_np(module.weight)).max() <= bound
    module.train(), theirs.train()
    _against_torch(module, theirs, [rng.standard_normal(shape)], dtype)


def test_lazy_modules_refuse_a_wrong_input_before_materialising():
    with pytest.raises(RuntimeError, match="LazyConv2d: expected a 3-D or 4-D input"):
        nn.LazyConv2d(4, 3)(td.randn(3, 5))
    with pytest.raises(ValueError, match="in_channels \\(5.*groups \\(2\\)"):
        nn.LazyConv1d(4, 3, groups=2)(td.randn(2, 5, 9))
    with pytest.raises(RuntimeError, match="LazyBatchNorm2d: expected a 4-D input"):
        nn.LazyBatchNorm2d()(td.randn(2, 3, 4))
    with pytest.raises(RuntimeError, match="LazyLinear: expected an at least 1-D input"):
        nn.LazyLinear(2)(td.tensor(1.0))
    seq = nn.Sequential(nn.LazyLinear(3), nn.ReLU(), nn.LazyLinear(2))
    with pytest.raises(RuntimeError, match="LazyLinear.*not initialised yet"):
        seq.state_dict()
    assert seq(td.randn(4, 7)).shape == (4, 2)
    assert [tuple(v.shape) for v in seq.state_dict().values()] == [(3, 7), (3,), (2, 3), (2,)]


def test_lazy_module_trains_with_an_optimizer_built_before_its_first_call():
    model = nn.Sequential(nn.LazyLinear(4), nn.ReLU(), nn.LazyLinear(1))
    opt = td.optim.SGD(model.parameters(), lr=0.1)
    x, target = td.randn(16, 3), td.randn(16, 1)
    losses = []
    for _ in range(20):
        opt.zero_grad()
        loss = F.mse_loss(model(x), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize("call, error, match", [
    (lambda: F.channel_shuffle(td.randn(2, 6), 2), RuntimeError, "more than 2 dims.*\\(2, 6\\)"),
    (lambda: F.channel_shuffle(td.randn(2, 6, 3), 4), RuntimeError, "6 channels.*groups=4"),
    (lambda: F.channel_shuffle(td.randn(2, 6, 3), 0), RuntimeError, "positive"),
    (lambda: F.lp_pool2d(td.randn(1, 2, 4, 4), 0, 2), ValueError, "norm_type"),
    (lambda: F.lp_pool1d(td.tensor(np.ones((1, 2, 4), dtype=np.int64)), 2, 2), RuntimeError, "floating"),
    (lambda: F.bilinear(td.randn(2, 3), td.randn(2, 5), td.randn(4, 5, 5)), RuntimeError,
     "input1 has 3 features.*expects 5"),
    (lambda: F.bilinear(td.randn(2, 3), td.randn(3, 5), td.randn(4, 3, 5)), RuntimeError, "leading"),
    (lambda: F.bilinear(td.randn(2, 7, 3), td.randn(7, 5), td.randn(4, 3, 5)), RuntimeError, "dimensions"),
    (lambda: F.bilinear(td.randn(2, 3), td.randn(2, 5), td.randn(4, 3, 5), td.randn(3)), RuntimeError,
     "bias of shape \\(3,\\)"),
    (lambda: F.bilinear(td.randn(2, 3), td.randn(2, 5), td.randn(3, 5)), RuntimeError, "3-D weight"),
    (lambda: F.bilinear(td.randn(2, 3), td.randn(2, 5).double(), td.randn(4, 3, 5)), RuntimeError, "input2 type"),
    (lambda: F.rms_norm(td.randn(2, 3), (4,)), RuntimeError, "\\(2, 3\\)"),
    (lambda: F.rms_norm(td.randn(2, 3), (3,), td.randn(4)), RuntimeError, "weight has shape \\(4,\\)"),
    (lambda: F.rms_norm(td.randn(2, 3), ()), RuntimeError, "at least one dim"),
    (lambda: nn.RMSNorm(3)(td.randn(2, 4)), RuntimeError, "rms_norm"),
    (lambda: F.pdist(td.randn(3)), RuntimeError, "2-D input.*\\(3,\\)"),
    (lambda: F.pdist(td.randn(3, 2), -1), RuntimeError, "non-negative"),
    (lambda: F.pdist(td.tensor(np.ones((3, 2), dtype=np.int64))), RuntimeError, "floating"),
])
def test_errors_name_the_op_and_what_is_wrong(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_lp_pool_of_an_all_zero_window_passes_no_gradient_as_torch():
    """After a ReLU a window is often all zeros: its root has an infinite slope, which
    ReLU's backward (a select, as PyTorch's) stops; the gradient there is 0, not NaN."""
    a = np.zeros((1, 1, 2, 4))
    a[..., 2:] = 1
    g = np.random.default_rng(3).normal(size=(1, 1, 1, 2))
    grads = []
    for lib, lp in ((td, F.lp_pool2d), (torch, torch.nn.functional.lp_pool2d)):
        x = lib.tensor(a, requires_grad=True)
        lp(x, 2, 2).backward(lib.tensor(g))
        grads.append(x.grad.numpy())
    np.testing.assert_array_equal(grads[0], grads[1])
    assert np.isfinite(grads[0]).all()


@DTYPES
@pytest.mark.parametrize("lazy, args, eager, eager_args, shape", LAZY, ids=[f"{c[0]}-{c[4]}" for c in LAZY])
def test_lazy_module_loads_a_checkpoint_before_its_first_call_as_torch(lazy, args, eager, eager_args, shape,
                                                                        dtype):
    """Build lazily, then load: the checkpoint's shapes fix the size (PyTorch's lazy load hook)."""
    torch.manual_seed(1)
    theirs = getattr(torch.nn, eager)(*eager_args)
    module = getattr(nn, lazy)(*args).to(dtype)
    params = list(module.parameters())
    module.load_state_dict(theirs.state_dict())
    assert type(module) is getattr(nn, eager) and repr(module) == repr(theirs)
    assert [p is q for p, q in zip(module.parameters(), params)] == [True] * len(params)
    module.train(), theirs.train()
    _against_torch(module, theirs, [np.random.default_rng(2).standard_normal(shape)], dtype)
