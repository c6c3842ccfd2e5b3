"""Losses, activations and dropout beyond the op table: error messages, numerical
stability at extreme inputs, in-place behaviour, and the statistics of dropout masks
(which cannot be compared with PyTorch's generator)."""
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import tinydl as td
import tinydl.nn.functional as F
from tinydl.ops import activation as A, dropout as D, loss as L


def t(a, requires_grad=False):
    return td.Tensor(np.asarray(a), requires_grad=requires_grad)


def logits(*shape, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


# ================================================================ error messages
def test_label_out_of_range_names_op_value_and_classes():
    x = t(logits(3, 4))
    with pytest.raises(IndexError, match=r"cross_entropy: target 4 is out of range for 4 classes"):
        L.cross_entropy(x, t(np.array([0, 4, 1])))
    with pytest.raises(IndexError, match=r"nll_loss: target -3 is out of range for 4 classes"):
        L.nll_loss(x, t(np.array([0, -3, 1])))
    # per-pixel labels: the 65-class SuperPoint head
    with pytest.raises(IndexError, match=r"target 65 is out of range for 65 classes"):
        L.cross_entropy(t(logits(1, 65, 2, 2)), t(np.array([[[0, 65], [3, 64]]])))


def test_ignored_label_is_not_out_of_range():
    x = t(logits(3, 4))
    assert np.isfinite(L.cross_entropy(x, t(np.array([0, -100, 1]))).item())
    assert np.isfinite(L.cross_entropy(x, t(np.array([0, 7, 1])), ignore_index=7).item())


def test_target_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"input of shape \(3, 4\).*target of shape \(2,\)"):
        L.cross_entropy(t(logits(3, 4)), t(np.array([0, 1])))
    with pytest.raises(ValueError, match=r"\(2, 5, 3, 4\).*\(2, 3, 4\).*\(2, 4, 3\)"):
        L.cross_entropy(t(logits(2, 5, 3, 4)), t(np.zeros((2, 4, 3), dtype=np.int64)))
    with pytest.raises(ValueError, match=r"class probabilities.*\(3, 4\).*\(3, 5\)"):
        L.cross_entropy(t(logits(3, 4)), t(np.full((3, 5), 0.2)))
    with pytest.raises(ValueError, match=r"binary_cross_entropy: target of shape \(3, 5\).*\(3, 4\)"):
        L.binary_cross_entropy(t(np.full((3, 4), 0.5)), t(np.full((3, 5), 0.5)))
    with pytest.raises(ValueError, match=r"binary_cross_entropy_with_logits: target of shape \(4,\).*\(3, 4\)"):
        L.binary_cross_entropy_with_logits(t(logits(3, 4)), t(np.full((4,), 0.5)))
    with pytest.raises(ValueError, match=r"mse_loss: target of shape \(3, 5\).*input of shape \(3, 4\)"):
        L.mse_loss(t(logits(3, 4)), t(logits(3, 5)))


def test_regression_broadcast_warns_with_both_shapes_and_matches_torch():
    x, y = logits(3, 1), logits(4, seed=1)
    with pytest.warns(UserWarning, match=r"\(4,\).*\(3, 1\)"):
        out = L.mse_loss(t(x), t(y), reduction="none")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = TF.mse_loss(torch.tensor(x), torch.tensor(y), reduction="none").numpy()
    np.testing.assert_allclose(out.array, expected)


def test_bad_arguments():
    x, y = t(logits(3, 4)), t(np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=r"cross_entropy: 'avg' is not a valid value for reduction"):
        L.cross_entropy(x, y, reduction="avg")
    with pytest.raises(ValueError, match=r"weight must have one entry per class, shape \(4,\), got shape \(5,\)"):
        L.cross_entropy(x, y, weight=t(np.ones(5)))
    with pytest.raises(ValueError, match="label_smoothing"):
        L.cross_entropy(x, y, label_smoothing=1.5)
    with pytest.raises(ValueError, match="ignore_index is not supported"):
        L.cross_entropy(x, t(np.full((3, 4), 0.25)), ignore_index=1)
    with pytest.raises(TypeError, match="nll_loss: target must hold integer class indices"):
        L.nll_loss(x, t(np.full((3, 4), 0.25)))
    with pytest.raises(ValueError, match=r"class probabilities.*pass an integer target of shape \(3,\)"):
        L.cross_entropy(x, t(np.array([0.0, 1.0, 2.0])))
    with pytest.raises(ValueError, match="0-d"):
        L.cross_entropy(t(np.array(1.0)), t(np.array(0)))
    with pytest.raises(RuntimeError, match=r"cross_entropy is not differentiable with respect to weight"):
        L.cross_entropy(x, y, weight=t(np.ones(4), requires_grad=True))
    with pytest.raises(RuntimeError, match="pos_weight"):
        L.binary_cross_entropy_with_logits(x, t(np.full((3, 4), 0.5)), pos_weight=t(np.ones(4), True))
    with pytest.raises(ValueError, match="beta must be >= 0"):
        L.smooth_l1_loss(x, x, beta=-1.0)
    with pytest.raises(ValueError, match="delta must be > 0"):
        L.huber_loss(x, x, delta=0.0)
    with pytest.raises(ValueError, match=r"mse_loss: weight of shape \(4,\) must have the shape of the input \(3, 4\)"):
        L.mse_loss(x, x, weight=t(np.ones(4)))
    with pytest.raises(ValueError, match=r"binary_cross_entropy: weight of shape \(5,\) cannot be broadcast"):
        L.binary_cross_entropy(t(np.full((3, 4), 0.5)), t(np.full((3, 4), 0.5)), weight=t(np.ones(5)))
    with pytest.raises(ValueError, match="kl_div: 'batch' is not a valid value"):
        L.kl_div(x, x, reduction="batch")


def test_bce_rejects_input_outside_unit_interval_like_torch():
    with pytest.raises(ValueError, match="binary_cross_entropy: all elements of input should be between 0 and 1"):
        L.binary_cross_entropy(t(np.array([0.5, 1.5])), t(np.array([0.0, 1.0])))
    with pytest.raises(RuntimeError, match="between 0 and 1"):
        TF.binary_cross_entropy(torch.tensor([0.5, 1.5]), torch.tensor([0.0, 1.0]))


def test_activation_argument_errors():
    x = t(logits(2, 3))
    with pytest.raises(ValueError, match=r"softmax: dim must be given for a 2-d input of shape \(2, 3\)"):
        A.softmax(x)
    with pytest.raises(ValueError, match="log_softmax: dim must be given"):
        A.log_softmax(x)
    with pytest.raises(IndexError, match=r"softmax: dim 2 is out of range .* \[-2, 1\]"):
        A.softmax(x, 2)
    with pytest.raises(ValueError, match="gelu: approximate"):
        A.gelu(x, approximate="fast")
    with pytest.raises(ValueError, match="hardtanh: min_val"):
        A.hardtanh(x, 1.0, -1.0)


@pytest.mark.parametrize("fn", [D.dropout, D.dropout2d, D.alpha_dropout])
@pytest.mark.parametrize("p", [-0.1, 1.5])
def test_dropout_p_out_of_range(fn, p):
    with pytest.raises(ValueError, match=rf"{fn.__name__}: dropout probability has to be between 0 and 1, but got {p}"):
        fn(t(np.ones((2, 3, 4, 4))), p, True)


def test_dropout2d_wrong_rank_names_shape():
    msg = r"dropout2d: expected a 3-D \(C, H, W\) or 4-D \(N, C, H, W\) input, got shape \(2, 3\)"
    with pytest.raises(ValueError, match=msg):
        D.dropout2d(t(np.ones((2, 3))))


# ================================================================ reductions and conventions
def test_reductions_are_consistent():
    x, y = t(logits(5, 4)), t(np.array([0, 1, 2, 3, 1]))
    none = L.cross_entropy(x, y, reduction="none").array
    assert none.shape == (5,)
    np.testing.assert_allclose(L.cross_entropy(x, y, reduction="sum").item(), none.sum())
    np.testing.assert_allclose(L.cross_entropy(x, y).item(), none.mean())
    # cross_entropy == nll_loss(log_softmax)
    np.testing.assert_allclose(L.nll_loss(A.log_softmax(x, 1), y, reduction="none").array, none)
    # legacy size_average / reduce map to reductions as in PyTorch
    np.testing.assert_allclose(L.mse_loss(x, x * 0, size_average=False).item(), (x.array ** 2).sum())
    assert L.mse_loss(x, x * 0, reduce=False).shape == (5, 4)


def test_weighted_mean_divides_by_weights_of_counted_targets():
    x = logits(4, 3)
    y = np.array([0, 2, -100, 2])
    w = np.array([1.0, 5.0, 3.0])
    per_sample = L.cross_entropy(t(x), t(y), weight=t(w), reduction="none").array
    assert per_sample[2] == 0
    expected = per_sample.sum() / (1 + 3 + 3)          # the ignored sample's class weight is not counted
    np.testing.assert_allclose(L.cross_entropy(t(x), t(y), weight=t(w)).item(), expected)


def test_all_ignored_mean_is_nan_with_zero_gradient_like_torch():
    x = t(logits(3, 4), requires_grad=True)
    y = np.full(3, -100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")       # no NumPy 0/0 warning either
        loss = L.cross_entropy(x, t(y))
    xt = torch.tensor(x.array, requires_grad=True)
    lt = TF.cross_entropy(xt, torch.tensor(y))
    assert np.isnan(loss.item()) and torch.isnan(lt)
    loss.backward()
    lt.backward()
    np.testing.assert_array_equal(x.grad.array, xt.grad.numpy())
    assert not np.any(x.grad.array)


# ================================================================ numerical stability
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_stable_for_huge_logits(dtype):
    x = np.array([[1e3, -1e3, 0.0], [0.0, 1e3, 1e3], [-1e3, -1e3, -1e3]], dtype=dtype)
    y = np.array([1, 2, 0])
    xt = t(x, requires_grad=True)
    with np.errstate(over="raise", invalid="raise", divide="raise"):           # no overflow anywhere
        loss = L.cross_entropy(xt, t(y), label_smoothing=0.1)
        loss.backward()
    assert loss.dtype == dtype and xt.grad.dtype == dtype
    xr = torch.tensor(x, requires_grad=True)
    lr = TF.cross_entropy(xr, torch.tensor(y), label_smoothing=0.1)
    lr.backward()
    assert np.isfinite(loss.item()) and np.all(np.isfinite(xt.grad.array))
    np.testing.assert_allclose(loss.item(), lr.item(), rtol=1e-6)
    np.testing.assert_allclose(xt.grad.array, xr.grad.numpy(), atol=1e-7)


def test_masked_logits_minus_inf_give_finite_loss_like_torch():
    x = np.array([[0.5, -np.inf, 1.0], [-np.inf, 2.0, 0.0]])
    y = np.array([0, 1])
    xt = t(x, requires_grad=True)
    loss = L.cross_entropy(xt, t(y))
    loss.backward()
    xr = torch.tensor(x, requires_grad=True)
    lr = TF.cross_entropy(xr, torch.tensor(y))
    lr.backward()
    np.testing.assert_allclose(loss.item(), lr.item())
    np.testing.assert_allclose(xt.grad.array, xr.grad.numpy())


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")    # the array code's -inf rows
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("weighted", [False, True])
def test_cross_entropy_fused_route_gives_the_array_codes_numbers_on_special_logits(dtype, weighted):
    """kernels/loss.py against the op's array code (``td.backends.reference()``): masked
    (-inf) logits, a whole row of them, +inf, NaN, huge values, an ignored target; loss and
    dL/dx, every reduction, float32 staying float32."""
    x = logits(7, 5, seed=3, dtype=dtype) * 3
    x[0, [1, 3]] = -np.inf                              # masked scores
    x[1] = -np.inf                                      # nothing left: nan, as PyTorch
    x[2, 4] = np.inf
    x[3, 2] = np.nan
    x[4] = [1e30, -1e30, 3e29, 0, 1]
    y = np.array([0, 2, 4, 1, 0, 3, 1])
    y[5] = -100                                         # ignored
    weight = t(np.linspace(0.5, 2, 5).astype(dtype)) if weighted else None
    g = logits(7, seed=4, dtype=dtype)
    for reduction in ("mean", "sum", "none"):
        results = []
        for scope in (td.backends.record_routes(), td.backends.reference()):
            with scope as taken:
                xt = t(x, requires_grad=True)
                loss = L.cross_entropy(xt, t(y), weight=weight, reduction=reduction)
                loss.backward(t(g.astype(dtype)) if reduction == "none" else None)
            if taken is not None:
                assert ("cross_entropy", "numba") in taken
            results.append((loss.array, xt.grad.array))
        (fused, fused_grad), (ref, ref_grad) = results
        assert fused.dtype == fused_grad.dtype == dtype
        tol = 1e-6 if dtype == np.float32 else 1e-14
        np.testing.assert_allclose(fused, ref, rtol=tol, atol=tol, err_msg=reduction)
        np.testing.assert_allclose(fused_grad, ref_grad, rtol=tol, atol=tol, err_msg=reduction)


def test_activations_do_not_overflow():
    x = np.array([-1e4, -800.0, -30.0, 0.0, 30.0, 800.0, 1e4])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        for fn, tfn in [(A.sigmoid, torch.sigmoid), (A.logsigmoid, TF.logsigmoid), (A.softplus, TF.softplus),
                        (A.silu, TF.silu), (lambda v: A.log_softmax(v, 0), lambda v: TF.log_softmax(v, 0)),
                        (lambda v: A.softmax(v, 0), lambda v: TF.softmax(v, 0)), (A.elu, TF.elu)]:
            xt = t(x, requires_grad=True)
            y = fn(xt)
            y.backward(t(np.linspace(-1, 1, x.size)))
            xr = torch.tensor(x, requires_grad=True)
            yr = tfn(xr)
            yr.backward(torch.linspace(-1, 1, x.size, dtype=torch.float64))
            np.testing.assert_allclose(y.array, yr.detach().numpy(), rtol=1e-12, atol=1e-15)
            np.testing.assert_allclose(xt.grad.array, xr.grad.numpy(), rtol=1e-12, atol=1e-15)


def test_bce_with_logits_stable_for_huge_logits():
    x = np.array([-1e4, -50.0, 50.0, 1e4])
    y = np.array([1.0, 0.0, 1.0, 0.0])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        loss = L.binary_cross_entropy_with_logits(t(x), t(y), reduction="none").array
    np.testing.assert_allclose(loss, [1e4, 0.0, 0.0, 1e4], atol=1e-20)


def test_nan_input_gives_nan_loss_like_torch():
    x = logits(2, 3)
    x[0, 1] = np.nan
    assert np.isnan(L.cross_entropy(t(x), t(np.array([0, 1]))).item())
    assert np.isnan(L.mse_loss(t(x), t(np.zeros((2, 3)))).item())


# ================================================================ in-place
def test_inplace_relu_writes_into_its_input():
    x = t(np.array([-1.0, 2.0]))
    with td.no_grad():
        y = A.relu(x, inplace=True)
    assert y is x and list(x.array) == [0.0, 2.0]
    x = t(np.array([-1.0, 2.0]), requires_grad=True)
    with pytest.raises(RuntimeError, match="relu.inplace=True.: the tensor is .a view of. a leaf"):
        A.relu(x, inplace=True)       # as PyTorch: a leaf that requires grad
    assert list(x.array) == [-1.0, 2.0]


# ================================================================ dropout
def test_dropout_statistics():
    td.manual_seed(0)
    p = 0.3
    x = t(np.ones((400, 500), dtype=np.float32))
    y = D.dropout(x, p).array
    assert y.dtype == np.float32
    dropped = (y == 0).mean()
    assert abs(dropped - p) < 0.005                   # 200k Bernoulli draws: std ~ 0.001
    np.testing.assert_allclose(np.unique(y), [0.0, 1 / (1 - p)], rtol=1e-6)
    assert abs(y.mean() - 1.0) < 0.01                 # inverted dropout keeps the mean


def test_dropout_identity_cases():
    x = t(logits(3, 4), requires_grad=True)
    assert D.dropout(x, 0.5, training=False) is x
    assert D.dropout(x, 0.0) is x
    assert D.dropout2d(t(logits(2, 3, 4, 4)), 0.5, training=False).shape == (2, 3, 4, 4)
    assert D.alpha_dropout(x, 0.5) is x               # PyTorch's default training=False
    assert not np.any(D.dropout(x, 1.0).array)
    assert not np.any(D.alpha_dropout(x, 1.0, True).array)


def test_dropout_seeded_reproducibility():
    x = t(np.ones((50, 60)))
    td.manual_seed(123)
    a = D.dropout(x, 0.5).array
    b = D.dropout(x, 0.5).array
    td.manual_seed(123)
    c = D.dropout(x, 0.5).array
    np.testing.assert_array_equal(a, c)
    assert not np.array_equal(a, b)


def test_dropout_gradient_is_mask_times_scale():
    p = 0.4
    x = t(logits(6, 7), requires_grad=True)
    td.manual_seed(5)
    y = D.dropout(x, p)
    gy = logits(6, 7, seed=9)
    y.backward(t(gy))
    mask = y.array / x.array                            # 0 or 1/(1-p)
    np.testing.assert_allclose(np.unique(np.round(mask, 12)), [0.0, round(1 / (1 - p), 12)])
    np.testing.assert_allclose(x.grad.array, gy * mask)


@pytest.mark.parametrize("fn, shape", [(D.dropout, (3, 4)), (D.dropout2d, (2, 3, 2, 2)),
                                       (D.dropout2d, (3, 2, 2)), (D.dropout1d, (2, 3, 4)),
                                       (D.dropout3d, (1, 2, 2, 2, 2)),
                                       (lambda x, p: D.alpha_dropout(x, p, True), (3, 4)),
                                       (lambda x, p: D.feature_alpha_dropout(x, p, True), (2, 3, 2))])
def test_dropout_gradcheck_with_fixed_mask(fn, shape):
    def f(x):
        td.manual_seed(7)                              # the same mask for every finite difference
        return fn(x, 0.5)
    x = t(logits(*shape), requires_grad=True)
    assert td.gradcheck(f, [x])


def test_dropout2d_zeroes_whole_channels():
    td.manual_seed(1)
    p = 0.5
    x = t(np.ones((40, 50, 3, 4), dtype=np.float32))
    y = D.dropout2d(x, p).array
    per_channel = y.reshape(40, 50, -1)
    assert np.all(per_channel.min(axis=2) == per_channel.max(axis=2))   # each plane all kept or all dropped
    dropped = (per_channel[:, :, 0] == 0).mean()
    assert abs(dropped - p) < 0.05                    # 2000 channels: std ~ 0.011
    np.testing.assert_allclose(np.unique(y), [0.0, 2.0])
    # unbatched (C, H, W): whole channels too
    y3 = D.dropout2d(t(np.ones((64, 3, 4))), p).array.reshape(64, -1)
    assert np.all(y3.min(axis=1) == y3.max(axis=1)) and 0 < (y3[:, 0] == 0).sum() < 64


def test_alpha_dropout_keeps_mean_and_variance():
    td.manual_seed(3)
    x = np.random.default_rng(0).standard_normal(200_000)
    y = D.alpha_dropout(t(x), 0.2, training=True).array
    assert abs(y.mean()) < 0.01 and abs(y.std() - 1.0) < 0.01
    # on zeros: kept units become a alpha' p, dropped ones a alpha' (p - 1), as in PyTorch
    ours = np.unique(D.alpha_dropout(t(np.zeros(1000)), 0.2, training=True).array)
    ref = np.unique(TF.alpha_dropout(torch.zeros(1000, dtype=torch.float64), 0.2, True).numpy())
    np.testing.assert_allclose(ours, ref, rtol=1e-12)


def test_dropout_inplace_under_no_grad():
    x = t(np.ones((10, 10)))
    with td.no_grad():
        y = D.dropout(x, 0.5, inplace=True)
    assert y is x and np.any(x.array == 0)


def test_functional_namespace_exports():
    for name in ["relu", "leaky_relu", "sigmoid", "tanh", "softmax", "log_softmax", "gelu", "cross_entropy",
                 "nll_loss", "mse_loss", "l1_loss", "smooth_l1_loss", "binary_cross_entropy",
                 "binary_cross_entropy_with_logits", "dropout", "dropout2d"]:
        assert callable(getattr(F, name)), name


def test_relu_of_infinities_and_nan_like_torch():
    x = np.array([-np.inf, np.inf, np.nan, -1.0, 0.0], dtype=np.float32)
    np.testing.assert_array_equal(A.relu(t(x)).array, torch.relu(torch.tensor(x)).numpy())
