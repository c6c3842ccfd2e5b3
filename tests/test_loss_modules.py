"""nn.*Loss modules against torch.nn's: the same constructor arguments give the same loss
and the same gradients (random targets, random upstream gradient, float64 and float32)."""
import numpy as np
import pytest
import torch

import tinydl as td
import tinydl.nn as nn
import tinydl.nn.functional as F


def _class_data(rng, shape=(6, 4), n_classes=4):
    t_shape = (shape[0],) + shape[2:]
    return rng.standard_normal(shape), rng.integers(0, n_classes, t_shape).astype(np.int64)


def _soft_labels(rng, shape=(6, 4)):
    t = rng.uniform(0.1, 1.0, shape)
    return rng.standard_normal(shape), t / t.sum(1, keepdims=True)


def _log_probs(rng, shape=(6, 4)):
    x, t = _class_data(rng, shape)
    return x - np.log(np.exp(x).sum(1, keepdims=True)), t


def _regression(rng, shape=(5, 3)):
    return rng.standard_normal(shape), rng.standard_normal(shape)


def _probabilities(rng, shape=(5, 3)):
    return rng.uniform(0.05, 0.95, shape), rng.uniform(0, 1, shape)


def _logits(rng, shape=(5, 3)):
    return rng.standard_normal(shape) * 2, rng.integers(0, 2, shape).astype(np.float64)


def _kl(rng, shape=(5, 3)):
    q, p = rng.uniform(0.1, 1, shape), rng.uniform(0.1, 1, shape)
    return np.log(q / q.sum(-1, keepdims=True)), p / p.sum(-1, keepdims=True)


W4 = np.array([0.5, 2.0, 1.0, 0.25])          # a class weight for 4 classes
W53 = np.linspace(0.2, 2.0, 15).reshape(5, 3)  # an element weight for BCE
PW3 = np.array([0.5, 1.0, 3.0])                # BCE-with-logits pos_weight per class

# (module name, constructor kwargs (arrays become tensors), data maker)
CASES = [
    ("L1Loss", {}, _regression),
    ("L1Loss", {"reduction": "sum"}, _regression),
    ("L1Loss", {"reduction": "none"}, _regression),
    ("MSELoss", {}, _regression),
    ("MSELoss", {"reduction": "none"}, _regression),
    ("MSELoss", {"size_average": False}, _regression),              # legacy pair -> 'sum'
    ("MSELoss", {"reduce": False}, _regression),                    # legacy pair -> 'none'
    ("SmoothL1Loss", {}, _regression),
    ("SmoothL1Loss", {"beta": 0.3, "reduction": "sum"}, _regression),
    ("SmoothL1Loss", {"beta": 0.0}, _regression),
    ("HuberLoss", {}, _regression),
    ("HuberLoss", {"delta": 0.4, "reduction": "none"}, _regression),
    ("NLLLoss", {}, _log_probs),
    ("NLLLoss", {"weight": W4, "ignore_index": 1}, _log_probs),
    ("NLLLoss", {"reduction": "sum"}, lambda rng: _log_probs(rng, (3, 4, 2, 2))),
    ("CrossEntropyLoss", {}, _class_data),
    ("CrossEntropyLoss", {"weight": W4}, _class_data),
    ("CrossEntropyLoss", {"ignore_index": 2, "reduction": "none"}, _class_data),
    ("CrossEntropyLoss", {"label_smoothing": 0.1, "weight": W4}, _class_data),
    ("CrossEntropyLoss", {}, lambda rng: _class_data(rng, (2, 4, 3, 2))),   # per pixel
    ("CrossEntropyLoss", {"label_smoothing": 0.2}, _soft_labels),
    ("BCELoss", {}, _probabilities),
    ("BCELoss", {"weight": W53, "reduction": "sum"}, _probabilities),
    ("BCEWithLogitsLoss", {}, _logits),
    ("BCEWithLogitsLoss", {"pos_weight": PW3}, _logits),
    ("BCEWithLogitsLoss", {"weight": W53, "pos_weight": PW3, "reduction": "none"}, _logits),
    ("KLDivLoss", {"reduction": "batchmean"}, _kl),
    ("KLDivLoss", {"reduction": "sum", "log_target": True},
     lambda rng: (lambda q, p: (q, np.log(p)))(*_kl(rng))),
]
IDS = [f"{name}-{'-'.join(map(str, kw)) or 'default'}-{i}" for i, (name, kw, _) in enumerate(CASES)]


def _build(lib_nn, name, kw, to_tensor):
    return getattr(lib_nn, name)(**{k: to_tensor(v) if isinstance(v, np.ndarray) else v
                                    for k, v in kw.items()})


def _check_against_torch(name, kw, arrays, grad, dtype, rng):
    """Build ``name`` with ``kw`` in both libraries; compare the loss and the gradients of
    the inputs at positions ``grad`` under a random upstream gradient."""
    arrays = [a.astype(dtype) if a.dtype.kind == "f" else a for a in arrays]
    ours = _build(nn, name, kw, lambda a: td.tensor(a.astype(dtype)))
    theirs = _build(torch.nn, name, kw, lambda a: torch.tensor(a.astype(dtype)))
    assert ours.reduction == theirs.reduction and repr(ours) == repr(theirs)
    t_in = [torch.tensor(a, requires_grad=i in grad) for i, a in enumerate(arrays)]
    d_in = [td.tensor(a, requires_grad=i in grad) for i, a in enumerate(arrays)]
    expected, got = theirs(*t_in), ours(*d_in)
    assert got.shape == tuple(expected.shape) and got.dtype == dtype
    gy = rng.standard_normal(got.shape).astype(dtype)
    expected.backward(torch.tensor(gy))
    got.backward(td.tensor(gy))
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == np.float64 else dict(rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got.detach().numpy(), expected.detach().numpy(), **tol)
    for i in grad:
        assert d_in[i].grad.dtype == dtype
        np.testing.assert_allclose(d_in[i].grad.numpy(), t_in[i].grad.numpy(), err_msg=f"input {i}", **tol)


@pytest.mark.filterwarnings("ignore:size_average and reduce")
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("name, kw, make", CASES, ids=IDS)
def test_loss_module_matches_torch(name, kw, make, dtype):
    rng = np.random.default_rng(0)
    x, t = make(rng)
    grad = [0, 1] if t.dtype.kind == "f" else [0]     # float targets get gradients too, as in PyTorch
    _check_against_torch(name, kw, [x, t], grad, dtype, rng)


@pytest.mark.parametrize("name, kw", [("CrossEntropyLoss", {"weight": W4}), ("NLLLoss", {"weight": W4}),
                                      ("BCELoss", {"weight": W53}),
                                      ("BCEWithLogitsLoss", {"weight": W53, "pos_weight": PW3}),
                                      ("BCEWithLogitsLoss", {}), ("MSELoss", {})])
def test_weights_are_buffers_as_in_torch(name, kw):
    ours = _build(nn, name, kw, td.tensor)
    theirs = _build(torch.nn, name, kw, torch.tensor)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert list(ours.parameters()) == []
    assert repr(ours) == repr(theirs)
    for key, value in theirs.state_dict().items():
        np.testing.assert_array_equal(ours.state_dict()[key], value.numpy())


def test_constructor_defaults_match_torch():
    import inspect
    for name in nn.loss.__all__:
        ours = inspect.signature(getattr(nn, name)).parameters
        theirs = inspect.signature(getattr(torch.nn, name)).parameters
        theirs = {k: v for k, v in theirs.items() if k not in ("device", "dtype")}
        assert list(ours) == list(theirs), name
        for k in ours:
            assert ours[k].default == theirs[k].default, (name, k)


def test_bad_reduction_names_the_module():
    with pytest.raises(ValueError, match="CrossEntropyLoss: 'avg' is not a valid value for reduction"):
        nn.CrossEntropyLoss(reduction="avg")
    with pytest.raises(ValueError, match="MSELoss.*'batchmean'"):
        nn.MSELoss(reduction="batchmean")


def test_loss_module_trains_a_classifier():
    td.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
    x = td.randn(30, 4)
    y = td.tensor((x.numpy()[:, 0] > 0).astype(np.int64) + (x.numpy()[:, 1] > 0))
    loss_fn = nn.CrossEntropyLoss()
    first = None
    for _ in range(30):
        loss = loss_fn(model(x), y)
        first = first if first is not None else loss.item()
        model.zero_grad()
        loss.backward()
        for p in model.parameters():
            p.array[...] -= 0.5 * p.grad.array
    assert loss.item() < 0.5 * first


# ---------------------------------------------------------------- likelihood and margin losses
def _signs(rng, shape):
    return np.where(rng.uniform(size=shape) < 0.5, -1.0, 1.0)


# (module, kwargs, inputs maker, positions that get gradients)
MORE = [
    ("PoissonNLLLoss", {"full": True}, lambda r: [r.standard_normal((5, 3)), r.uniform(0, 4, (5, 3))], [0, 1]),
    ("PoissonNLLLoss", {"log_input": False, "reduction": "none"},
     lambda r: [r.uniform(0.1, 3, (5, 3)), r.uniform(0, 4, (5, 3))], [0, 1]),
    # eps 0.5 clamps part of the variances: the gradient passes the clamp as in PyTorch
    ("GaussianNLLLoss", {"eps": 0.5}, lambda r: [r.standard_normal((5, 3)), r.standard_normal((5, 3)),
                                                 r.uniform(0.1, 2, (5, 3))], [0, 1, 2]),
    ("GaussianNLLLoss", {"full": True, "reduction": "sum"},
     lambda r: [r.standard_normal((5, 3)), r.standard_normal((5, 3)), r.uniform(0.1, 2, (5,))], [0, 1, 2]),
    ("SoftMarginLoss", {}, lambda r: [r.standard_normal((5, 3)) * 3, _signs(r, (5, 3))], [0]),
    ("MultiLabelSoftMarginLoss", {"weight": W4},
     lambda r: [r.standard_normal((6, 4)), (r.uniform(size=(6, 4)) < 0.5).astype(float)], [0, 1]),
    ("MarginRankingLoss", {"margin": 0.2},
     lambda r: [r.standard_normal(9), r.standard_normal(9), _signs(r, 9)], [0, 1]),
    ("HingeEmbeddingLoss", {"margin": 0.5, "reduction": "none"},
     lambda r: [r.uniform(0, 1, (4, 3)) + 0.01, _signs(r, (4, 3))], [0]),
    ("CosineEmbeddingLoss", {"margin": -0.5},
     lambda r: [r.standard_normal((7, 4)), r.standard_normal((7, 4)), _signs(r, 7)], [0, 1]),
    ("TripletMarginLoss", {"margin": 2.0, "swap": True},
     lambda r: [r.standard_normal((6, 4)), r.standard_normal((6, 4)), r.standard_normal((6, 4))], [0, 1, 2]),
    ("MultiMarginLoss", {"p": 2, "weight": W4},
     lambda r: [r.standard_normal((6, 4)), r.integers(0, 4, 6)], [0]),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("name, kw, make, grad", MORE, ids=[f"{m[0]}-{i}" for i, m in enumerate(MORE)])
def test_more_loss_modules_match_torch(name, kw, make, grad, dtype):
    rng = np.random.default_rng(3)
    _check_against_torch(name, kw, make(rng), grad, dtype, rng)


def test_more_loss_errors():
    x = td.randn(4, 3)
    with pytest.raises(ValueError, match=r"gaussian_nll_loss: var of shape \(4, 2\) must have the input's shape"):
        F.gaussian_nll_loss(x, x, td.ones(4, 2))
    with pytest.raises(ValueError, match="gaussian_nll_loss: var has negative entries"):
        F.gaussian_nll_loss(x, x, -td.ones(4, 3))
    with pytest.raises(RuntimeError, match="soft_margin_loss is not differentiable with respect to target"):
        F.soft_margin_loss(x, td.ones(4, 3, requires_grad=True))
    with pytest.raises(ValueError, match="margin_ranking_loss: input1, input2 and target must have the same "
                                         "number of dimensions"):
        F.margin_ranking_loss(x, x, td.ones(4))


def test_distance_modules_match_torch():
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    for ours, theirs in [(nn.CosineSimilarity(dim=0), torch.nn.CosineSimilarity(dim=0)),
                         (nn.PairwiseDistance(p=1.5, keepdim=True), torch.nn.PairwiseDistance(p=1.5, keepdim=True))]:
        assert repr(ours) == repr(theirs)
        np.testing.assert_allclose(ours(td.tensor(a), td.tensor(b)).numpy(),
                                   theirs(torch.tensor(a), torch.tensor(b)).numpy(), rtol=1e-12)


def test_triplet_with_a_cosine_distance_and_multilabel_margin_modules_match_torch():
    rng = np.random.default_rng(5)
    a, p, n = (rng.standard_normal((6, 4)) for _ in range(3))
    ours = nn.TripletMarginWithDistanceLoss(distance_function=lambda x, y: 1 - F.cosine_similarity(x, y),
                                            margin=0.5, swap=True)
    theirs = torch.nn.TripletMarginWithDistanceLoss(
        distance_function=lambda x, y: 1 - torch.nn.functional.cosine_similarity(x, y), margin=0.5, swap=True)
    assert repr(nn.TripletMarginWithDistanceLoss()) == repr(torch.nn.TripletMarginWithDistanceLoss())
    d_in = [td.tensor(v, requires_grad=True) for v in (a, p, n)]
    t_in = [torch.tensor(v, requires_grad=True) for v in (a, p, n)]
    got, expected = ours(*d_in), theirs(*t_in)
    got.backward(td.tensor(1.7, dtype=td.float64))
    expected.backward(torch.tensor(1.7, dtype=torch.float64))
    np.testing.assert_allclose(got.item(), expected.item(), rtol=1e-12)
    for d, t in zip(d_in, t_in):
        np.testing.assert_allclose(d.grad.numpy(), t.grad.numpy(), rtol=1e-10, atol=1e-12)
    x, y = rng.standard_normal((3, 4)), np.array([[3, 0, -1, 1], [1, 1, 2, -1], [-1, 0, 0, 0]])
    xd, xt = td.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    got, expected = nn.MultiLabelMarginLoss()(xd, td.tensor(y)), torch.nn.MultiLabelMarginLoss()(xt, torch.tensor(y))
    got.backward()
    expected.backward()
    np.testing.assert_allclose(got.item(), expected.item(), rtol=1e-12)
    np.testing.assert_allclose(xd.grad.numpy(), xt.grad.numpy(), rtol=1e-12)
    with pytest.raises(IndexError, match=r"multilabel_margin_loss: target entries must be class indices in \[0, 4\)"):
        F.multilabel_margin_loss(xd, td.tensor(y + 2))


def test_ctc_module_with_tensor_lengths_and_an_impossible_target():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((6, 2, 4)).astype(np.float32)
    targets, in_len, tgt_len = np.array([[1, 2, 3], [3, 3, 0]]), np.array([6, 2]), np.array([3, 2])
    ours, theirs = nn.CTCLoss(reduction="none"), torch.nn.CTCLoss(reduction="none")
    assert repr(ours) == repr(theirs)
    xd = td.tensor(x, requires_grad=True)
    got = ours(F.log_softmax(xd, 2), td.tensor(targets), td.tensor(in_len), td.tensor(tgt_len))
    expected = theirs(torch.tensor(x).log_softmax(2), torch.tensor(targets), torch.tensor(in_len),
                      torch.tensor(tgt_len))
    assert got.dtype == np.float32 and np.isinf(got.detach().numpy()[1])    # [3, 3] needs 3 frames, has 2
    np.testing.assert_allclose(got.detach().numpy(), expected.numpy(), rtol=1e-5)
    with pytest.raises(ValueError, match=r"ctc_loss: target labels must be classes in \[0, 4\) other than the blank"):
        F.ctc_loss(F.log_softmax(xd, 2), td.tensor([[1, 0, 3], [3, 3, 0]]), in_len, tgt_len)
    with pytest.raises(ValueError, match=r"ctc_loss: input_lengths must be in \[1, 6\]"):
        F.ctc_loss(F.log_softmax(xd, 2), td.tensor(targets), [7, 2], tgt_len)


def test_ctc_zero_infinity_gives_no_gradient_to_an_impossible_sample():
    """Directly on log-probabilities (no log_softmax to cancel terms), as PyTorch."""
    rng = np.random.default_rng(7)
    lp = np.log(rng.dirichlet(np.ones(3), size=(4, 2)))           # (T, N, C) log-probabilities
    args = ([[1, 2, 0], [2, 2, 2]], [4, 3], [2, 3])
    xd, xt = td.tensor(lp, requires_grad=True), torch.tensor(lp, requires_grad=True)
    got = F.ctc_loss(xd, td.tensor(args[0]), args[1], args[2], reduction="sum", zero_infinity=True)
    expected = torch.nn.functional.ctc_loss(xt, torch.tensor(args[0]), torch.tensor(args[1]),
                                            torch.tensor(args[2]), reduction="sum", zero_infinity=True)
    got.backward()
    expected.backward()
    np.testing.assert_allclose(got.item(), expected.item(), rtol=1e-12)
    np.testing.assert_allclose(xd.grad.numpy(), xt.grad.numpy(), rtol=1e-10, atol=1e-14)
    assert not xd.grad.numpy()[:, 1].any()
