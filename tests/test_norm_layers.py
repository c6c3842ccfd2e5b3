"""Normalisation and resampling layers against torch.nn: running statistics, modes,
state_dicts, dtypes, reprs, and the errors the functional ops raise.

The ops' gradients are checked by the op table (tests/optable/norm.py, resample.py);
here the layers' state and bookkeeping."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import tinydl as td
import tinydl.nn as nn
import tinydl.nn.functional as F


def _np(t):
    return t.detach().numpy() if isinstance(t, torch.Tensor) else td.backend.to_device(t.array, "cpu")


def _close(a, b, dtype=np.float64):
    tol = 1e-10 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(_np(a), _np(b), atol=tol, rtol=tol)


def _torch_dtype(dtype):
    return torch.float64 if dtype == np.float64 else torch.float32


def _pair(cls_name, *args, dtype=np.float64, **kwargs):
    """The same layer from tinydl and torch, with the same (random) affine parameters."""
    ours = getattr(nn, cls_name)(*args, **kwargs).to(dtype)
    theirs = getattr(torch.nn, cls_name)(*args, **kwargs).to(_torch_dtype(dtype))
    rng = np.random.default_rng(3)
    if getattr(ours, "weight", None) is not None:
        w = rng.uniform(0.5, 1.5, ours.weight.shape).astype(dtype)
        ours.weight.array[...] = w
        theirs.weight.data.copy_(torch.tensor(w))
    if getattr(ours, "bias", None) is not None:
        b = rng.standard_normal(ours.bias.shape).astype(dtype)
        ours.bias.array[...] = b
        theirs.bias.data.copy_(torch.tensor(b))
    return ours, theirs


def _train_steps(ours, theirs, shape, steps=4, dtype=np.float64, seed=0):
    """Forward + backward a few batches through both layers; compare outputs and gradients."""
    rng = np.random.default_rng(seed)
    for step in range(steps):
        x = (rng.standard_normal(shape) * (1 + step) + step).astype(dtype)
        g = rng.standard_normal(shape).astype(dtype)
        xo = td.tensor(x, requires_grad=True)
        xt = torch.tensor(x, requires_grad=True)
        yo, yt = ours(xo), theirs(xt)
        _close(yo, yt, dtype)
        yo.backward(td.tensor(g))
        yt.backward(torch.tensor(g))
        _close(xo.grad, xt.grad, dtype)
        if getattr(ours, "weight", None) is not None:
            _close(ours.weight.grad, theirs.weight.grad, dtype)
            _close(ours.bias.grad, theirs.bias.grad, dtype)
            ours.weight.grad = None
            theirs.weight.grad = None
            ours.bias.grad = None
            theirs.bias.grad = None


# ---------------------------------------------------------------- batch norm: running statistics
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("momentum", [0.1, None, 0.5], ids=["m0.1", "cumulative", "m0.5"])
def test_batchnorm2d_running_stats_match_torch(momentum, dtype):
    ours, theirs = _pair("BatchNorm2d", 3, momentum=momentum, dtype=dtype)
    _train_steps(ours, theirs, (4, 3, 5, 3), steps=5, dtype=dtype)
    _close(ours.running_mean, theirs.running_mean, dtype)
    _close(ours.running_var, theirs.running_var, dtype)
    assert int(ours.num_batches_tracked.item()) == int(theirs.num_batches_tracked) == 5
    assert ours.num_batches_tracked.dtype == np.int64
    # eval mode: the running statistics normalise, and are left alone
    ours.eval()
    theirs.eval()
    _train_steps(ours, theirs, (2, 3, 4, 4), steps=2, dtype=dtype, seed=1)
    _close(ours.running_mean, theirs.running_mean, dtype)
    _close(ours.running_var, theirs.running_var, dtype)
    assert int(ours.num_batches_tracked.item()) == 5


def test_batchnorm_running_var_is_unbiased():
    """After one step with momentum 1 the running variance is the batch's unbiased variance."""
    bn = nn.BatchNorm2d(2, momentum=1.0).double()
    x = np.random.default_rng(0).standard_normal((3, 2, 2, 3))
    bn(td.tensor(x))
    np.testing.assert_allclose(bn.running_mean.numpy(), x.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(bn.running_var.numpy(), x.var(axis=(0, 2, 3), ddof=1), rtol=1e-12)


def test_cumulative_average_is_plain_mean_of_batch_stats():
    bn = nn.BatchNorm1d(3, momentum=None).double()
    rng = np.random.default_rng(1)
    batches = [rng.standard_normal((5, 3)) + i for i in range(4)]
    for x in batches:
        bn(td.tensor(x))
    np.testing.assert_allclose(bn.running_mean.numpy(), np.mean([b.mean(0) for b in batches], 0), rtol=1e-12)
    np.testing.assert_allclose(bn.running_var.numpy(), np.mean([b.var(0, ddof=1) for b in batches], 0),
                               rtol=1e-12)


@pytest.mark.parametrize("shape", [(6, 4), (3, 4, 5), (1, 4, 7)], ids=["NC", "NCL", "batch1_NCL"])
def test_batchnorm1d_matches_torch(shape):
    ours, theirs = _pair("BatchNorm1d", 4)
    _train_steps(ours, theirs, shape, steps=3)
    _close(ours.running_mean, theirs.running_mean)
    _close(ours.running_var, theirs.running_var)
    ours.eval()
    theirs.eval()
    _train_steps(ours, theirs, shape, steps=1, seed=2)


def test_batchnorm3d_matches_torch():
    ours, theirs = _pair("BatchNorm3d", 2, momentum=0.2)
    _train_steps(ours, theirs, (2, 2, 3, 2, 3), steps=2)
    _close(ours.running_var, theirs.running_var)


def test_no_tracked_stats_uses_batch_stats_in_eval():
    ours, theirs = _pair("BatchNorm2d", 3, track_running_stats=False)
    assert ours.running_mean is None and ours.num_batches_tracked is None
    ours.eval()
    theirs.eval()
    _train_steps(ours, theirs, (2, 3, 3, 4), steps=2)
    assert list(ours.state_dict()) == list(theirs.state_dict()) == ["weight", "bias"]


def test_no_affine_and_no_bias():
    ours, theirs = _pair("BatchNorm2d", 3, affine=False)
    assert ours.weight is None and ours.bias is None and not list(ours.parameters())
    _train_steps(ours, theirs, (2, 3, 3, 2), steps=2)
    ours, theirs = _pair("BatchNorm2d", 3, bias=False)
    assert list(ours.state_dict()) == list(theirs.state_dict())


def test_functional_batch_norm_updates_running_stats_in_place():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3, 2, 5))
    rm, rv = rng.standard_normal(3), rng.uniform(0.5, 2, 3)
    ours_rm, ours_rv = td.tensor(rm), td.tensor(rv)
    t_rm, t_rv = torch.tensor(rm), torch.tensor(rv)
    _close(F.batch_norm(td.tensor(x), ours_rm, ours_rv, training=True, momentum=0.3),
           TF.batch_norm(torch.tensor(x), t_rm, t_rv, training=True, momentum=0.3))
    _close(ours_rm, t_rm)
    _close(ours_rv, t_rv)
    # eval mode uses and keeps them
    _close(F.batch_norm(td.tensor(x), ours_rm, ours_rv), TF.batch_norm(torch.tensor(x), t_rm, t_rv))
    _close(ours_rv, t_rv)


# ---------------------------------------------------------------- batch norm: Numba and NumPy paths
def _bn_run(x, g, w, b, rm, rv, training):
    """Output, running stats and every gradient of one F.batch_norm call (fresh tensors)."""
    tx, tw, tb = (td.tensor(a, requires_grad=True) for a in (x, w, b))
    trm, trv = td.tensor(rm.copy()), td.tensor(rv.copy())
    y = F.batch_norm(tx, trm, trv, tw, tb, training=training, momentum=0.2)
    y.backward(td.tensor(g))
    return [y.detach().numpy(), trm.numpy(), trv.numpy(), tx.grad.numpy(), tw.grad.numpy(), tb.grad.numpy()]


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("shape", [(16, 3), (8, 4, 6, 5), (2, 3, 2, 3, 2)], ids=["NC", "NCHW", "NCDHW"])
def test_batch_norm_numba_and_numpy_paths_agree(monkeypatch, shape, dtype, training):
    rng = np.random.default_rng(5)
    c = shape[1]
    x = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    w, b, rm = (rng.standard_normal(c).astype(dtype) for _ in range(3))
    rv = rng.uniform(0.5, 2, c).astype(dtype)
    with td.backends.reference(False):
        fast = _bn_run(x, g, w, b, rm, rv, training)
    with td.backends.reference():
        slow = _bn_run(x, g, w, b, rm, rv, training)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    for name, u, v in zip(["y", "running_mean", "running_var", "dx", "dweight", "dbias"], fast, slow):
        assert u.dtype == dtype, name
        np.testing.assert_allclose(u, v, rtol=tol, atol=tol, err_msg=name)


def test_batch_norm_float32_with_a_large_channel_offset():
    """A channel whose mean is 1e4 times its spread: float32 output and gradients stay close to
    the float64 truth (computing var as E[x^2] - E[x]^2 in float32 would give garbage)."""
    rng = np.random.default_rng(6)
    x = (rng.standard_normal((32, 2, 8, 8)) + np.array([1e4, -2e3]).reshape(1, 2, 1, 1)).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    w, b = np.array([1.5, 0.5], np.float32), np.array([0.1, -0.2], np.float32)
    rm, rv = np.zeros(2, np.float32), np.ones(2, np.float32)
    ours = _bn_run(x, g, w, b, rm, rv, True)
    truth = _bn_run(*(a.astype(np.float64) for a in (x, g, w, b, rm, rv)), True)
    for name, u, v in zip(["y", "running_mean", "running_var", "dx", "dweight", "dbias"], ours, truth):
        scale = np.abs(v).max()
        np.testing.assert_allclose(u, v, rtol=0, atol=2e-3 * scale, err_msg=name)



@pytest.mark.parametrize("route", ["fused", "numba", "reference"])
def test_batch_norm_float32_far_from_zero_with_few_values_per_channel(route):
    """Inputs of 50 +- 1 with three values per channel: x - mean loses its digits unless the
    mean is read as hi + lo (kernels/norm.py). On every route y stays within twice PyTorch's
    error or 1e-6 of its size (reading the mean rounded to float32: 6x that bound)."""
    rng = np.random.default_rng(12)
    worst = 0.0
    for _ in range(200):
        x = (rng.standard_normal((1, 2, 3)) + 50).astype(np.float32)
        exact = TF.batch_norm(torch.tensor(x, dtype=torch.float64), None, None, training=True).numpy()
        theirs = TF.batch_norm(torch.tensor(x), None, None, training=True).numpy()
        scope = td.backends.reference() if route == "reference" else td.backends.route(batch_norm=route)
        with scope, td.backends.record_routes() as taken:
            ours = F.batch_norm(td.tensor(x), None, None, training=True).numpy()
        assert ("batch_norm", route) in taken
        size = np.abs(exact).max()
        bound = max(2 * np.abs(theirs - exact).max() / size, 1e-6)
        worst = max(worst, np.abs(ours - exact).max() / size / bound)
    assert worst <= 1, f"{route}: error {worst:.2f} times the bound"

# ---------------------------------------------------------------- batch norm: state, dtypes, errors
def test_state_dict_keys_and_loading_from_torch():
    theirs = torch.nn.BatchNorm2d(4)
    theirs.train()
    theirs(torch.randn(3, 4, 2, 2) * 3 + 1)
    theirs.weight.data.uniform_(0.5, 1.5)
    theirs.bias.data.normal_()
    ours = nn.BatchNorm2d(4)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    assert int(ours.num_batches_tracked.item()) == 1
    ours.eval()
    theirs.eval()
    x = np.random.default_rng(0).standard_normal((2, 4, 3, 3)).astype(np.float32)
    _close(ours(td.tensor(x)), theirs(torch.tensor(x)), np.float32)


def test_float32_stays_float32():
    bn = nn.BatchNorm2d(3)
    x = td.tensor(np.random.default_rng(0).standard_normal((2, 3, 4, 4)).astype(np.float32), requires_grad=True)
    for _ in range(2):
        y = bn(x)
        y.backward(td.ones(*y.shape))
    assert y.dtype == np.float32 and x.grad.dtype == np.float32
    assert bn.weight.grad.dtype == np.float32 and bn.bias.grad.dtype == np.float32
    assert bn.running_mean.dtype == np.float32 and bn.running_var.dtype == np.float32
    assert bn.num_batches_tracked.dtype == np.int64
    bn.eval()
    assert bn(x).dtype == np.float32
    bn_none = nn.BatchNorm1d(3, momentum=None)
    bn_none(td.tensor(np.ones((4, 3), np.float32) * np.arange(4, dtype=np.float32)[:, None]))
    assert bn_none.running_var.dtype == np.float32


def test_double_keeps_counter_int64():
    bn = nn.BatchNorm2d(2).double()
    assert bn.running_mean.dtype == np.float64 and bn.num_batches_tracked.dtype == np.int64


def test_channel_mismatch_names_layer_and_shape():
    bn = nn.BatchNorm2d(16)
    with pytest.raises(ValueError, match=r"BatchNorm2d\(16\).*16 channels.*\(2, 8, 4, 4\)"):
        bn(td.zeros(2, 8, 4, 4))
    with pytest.raises(ValueError, match=r"BatchNorm2d: expected 4D input.*3D input of shape \(8, 4, 4\)"):
        bn(td.zeros(8, 4, 4))
    with pytest.raises(ValueError, match=r"BatchNorm1d: expected 2D or 3D"):
        nn.BatchNorm1d(3)(td.zeros(2, 3, 4, 4))


def test_one_value_per_channel_in_training_is_an_error():
    bn = nn.BatchNorm2d(3)
    with pytest.raises(ValueError, match=r"more than 1 value per channel.*\(1, 3, 1, 1\)"):
        bn(td.zeros(1, 3, 1, 1))
    with pytest.raises(ValueError, match=r"more than 1 value per channel.*\(1, 3\)"):
        F.batch_norm(td.zeros(1, 3), None, None, training=True)
    bn.eval()
    assert bn(td.zeros(1, 3, 1, 1)).shape == (1, 3, 1, 1)   # fine in eval mode


def test_functional_errors():
    with pytest.raises(RuntimeError, match="running_mean and running_var must be given"):
        F.batch_norm(td.zeros(2, 3), None, None)
    with pytest.raises(RuntimeError, match=r"weight has shape \(4,\).*3 channels"):
        F.batch_norm(td.zeros(2, 3), None, None, weight=td.ones(4), training=True)


def test_batchnorm_repr_matches_torch():
    for kwargs in [{}, {"momentum": None, "affine": False}, {"eps": 1e-3, "track_running_stats": False}]:
        assert repr(nn.BatchNorm2d(8, **kwargs)) == repr(torch.nn.BatchNorm2d(8, **kwargs))



# ---------------------------------------------------------------- batch norm + ReLU (relu=True)
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("residual", [True, False], ids=["residual", "no_residual"])
def test_batchnorm_relu_layer_is_relu_of_batchnorm_plus_residual(residual, dtype):
    """BatchNorm2d(relu=True)(x, r) against PyTorch's relu(BatchNorm2d(x) + r): outputs, every
    gradient and the running buffers, two training steps then eval; the same parameters and
    buffers (a PyTorch state_dict loads)."""
    rng = np.random.default_rng(11)
    ours, theirs = nn.BatchNorm2d(3, relu=True, momentum=0.3).to(dtype=dtype), torch.nn.BatchNorm2d(3, momentum=0.3)
    theirs = theirs.double() if dtype == np.float64 else theirs
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert "relu=True" in repr(ours)
    for step in range(3):
        if step == 2:
            ours.eval()
            theirs.eval()
        x, g, r = ((rng.standard_normal((4, 3, 5, 5)) * 2 + 0.3).astype(dtype) for _ in range(3))
        tx, tr = td.tensor(x, requires_grad=True), td.tensor(r, requires_grad=True)
        px, pr = torch.tensor(x, requires_grad=True), torch.tensor(r, requires_grad=True)
        y = ours(tx, tr if residual else None)
        py = theirs(px)
        py = torch.relu(py + pr if residual else py)
        y.backward(td.tensor(g))
        py.backward(torch.tensor(g))
        _close(y, py, dtype)
        _close(tx.grad, px.grad, dtype)
        if residual:
            _close(tr.grad, pr.grad, dtype)
        for name in ("weight", "bias", "running_mean", "running_var"):
            a, b = getattr(ours, name), getattr(theirs, name)
            _close(a.grad if name in ("weight", "bias") else a, b.grad if name in ("weight", "bias") else b, dtype)
            if name in ("weight", "bias"):
                a.grad = None
                b.grad = None


def test_batchnorm_relu_survives_conversion_to_sync_batchnorm_and_checks_the_residual():
    layer = nn.Sequential(nn.BatchNorm2d(3, relu=True))
    synced = nn.SyncBatchNorm.convert_sync_batchnorm(layer)
    assert isinstance(synced[0], nn.SyncBatchNorm) and synced[0].relu
    x = td.tensor(np.random.default_rng(0).standard_normal((2, 3, 4, 4)).astype(np.float32))
    y = synced(x).detach().numpy()
    np.testing.assert_array_equal(y, nn.BatchNorm2d(3, relu=True)(x).detach().numpy())
    assert (y >= 0).all() and (y == 0).any()
    with pytest.raises(RuntimeError, match=r"batch_norm_relu: the residual has shape \(2, 3, 1, 1\), the input "
                                           r"\(2, 3, 4, 4\)"):
        nn.BatchNorm2d(3, relu=True)(x, td.zeros(2, 3, 1, 1))
    with pytest.raises(RuntimeError, match=r"batch_norm_relu: input type \(float32\) and residual type \(float64\)"):
        F.batch_norm_relu(x, None, None, training=True, residual=td.zeros(2, 3, 4, 4, dtype=td.float64))

# ---------------------------------------------------------------- local response norm
def test_local_response_norm_layer_alexnet():
    x = np.random.default_rng(0).standard_normal((2, 96, 5, 5)) * 10
    ours, theirs = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0), torch.nn.LocalResponseNorm(5, 1e-4, 0.75, 2.0)
    _close(ours(td.tensor(x)), theirs(torch.tensor(x)))
    assert repr(ours) == repr(theirs)
    with pytest.raises(ValueError, match=r"3D or higher.*\(4, 5\)"):
        ours(td.zeros(4, 5))


def test_local_response_norm_formula_divides_alpha_by_size():
    x = np.random.default_rng(1).standard_normal((1, 6, 1, 1))
    y = F.local_response_norm(td.tensor(x), size=3, alpha=0.3, beta=0.5, k=1.0).numpy()
    sq = np.pad(x[0, :, 0, 0] ** 2, (1, 1))
    expected = x[0, :, 0, 0] / (1.0 + 0.3 / 3 * (sq[:-2] + sq[1:-1] + sq[2:])) ** 0.5
    np.testing.assert_allclose(y[0, :, 0, 0], expected, rtol=1e-12)


# ---------------------------------------------------------------- resampling layers
@pytest.mark.parametrize("make", [
    lambda m: m.Upsample(scale_factor=2),
    lambda m: m.Upsample(size=(5, 7), mode="bilinear"),
    lambda m: m.Upsample(scale_factor=1.5, mode="bicubic", align_corners=True),
    lambda m: m.Upsample(scale_factor=(2, 3), mode="nearest-exact"),
    lambda m: m.UpsamplingNearest2d(scale_factor=3),
    lambda m: m.UpsamplingBilinear2d(size=(6, 5)),
    lambda m: m.PixelShuffle(2),
    lambda m: m.PixelUnshuffle(2),
    lambda m: m.ZeroPad2d((1, 2, 0, 3)),
    lambda m: m.ConstantPad2d(2, 3.5),
    lambda m: m.ReflectionPad2d(1),
    lambda m: m.ReplicationPad2d((3, 0, 1, 2)),
    lambda m: m.CircularPad2d((2, 1, 2, 2)),
    lambda m: m.ReflectionPad1d(2),
    lambda m: m.ReplicationPad1d((1, 4)),
    lambda m: m.CircularPad1d(3),
    lambda m: m.ZeroPad1d(1),
    lambda m: m.ConstantPad1d((2, 0), -1.0),
], ids=["up_nearest", "up_bilinear_size", "up_bicubic_corners", "up_nearest_exact", "nearest2d",
        "bilinear2d", "pixel_shuffle", "pixel_unshuffle", "zeropad2d", "constpad2d", "reflpad2d",
        "replpad2d", "circpad2d", "reflpad1d", "replpad1d", "circpad1d", "zeropad1d", "constpad1d"])
def test_resampling_layers_match_torch(make):
    ours, theirs = make(nn), make(torch.nn)
    assert repr(ours) == repr(theirs)
    x = np.random.default_rng(0).standard_normal((2, 4, 4, 6))
    if "1d" in type(ours).__name__:
        x = x[:, :, 0]
    g_out = theirs(torch.tensor(x)).detach().numpy()
    g = np.random.default_rng(1).standard_normal(g_out.shape)
    xo, xt = td.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    yo, yt = ours(xo), theirs(xt)
    _close(yo, yt)
    yo.backward(td.tensor(g))
    yt.backward(torch.tensor(g))
    _close(xo.grad, xt.grad)


def test_superpoint_depth_to_space_channel_order():
    """SuperPoint's detector head: 65 channels, drop the dustbin, 64 -> one 8x8 cell per pixel."""
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((2, 65, 3, 4))
    cells = td.tensor(logits)[:, :64]
    heat = F.pixel_shuffle(cells, 8)
    assert heat.shape == (2, 1, 24, 32)
    expected = TF.pixel_shuffle(torch.tensor(logits[:, :64]), 8).numpy()
    np.testing.assert_array_equal(heat.numpy(), expected)
    # channel 8*i + j of cell (h, w) is pixel (8h + i, 8w + j)
    h, w, i, j = 2, 1, 5, 3
    assert heat.numpy()[1, 0, 8 * h + i, 8 * w + j] == logits[1, 8 * i + j, h, w]
    np.testing.assert_array_equal(F.pixel_unshuffle(heat, 8).numpy(), logits[:, :64])


# ---------------------------------------------------------------- interpolate: index rules
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("mode", ["nearest", "nearest-exact", "linear", "bilinear", "bicubic"])
def test_interpolate_many_sizes_and_scales_match_torch(mode, dtype):
    """Nearest picks discontinuously: every output size and scale factor must pick the
    same pixels as PyTorch (float32 rounding of the coordinates included)."""
    rng = np.random.default_rng(0)
    spatial = 1 if mode == "linear" else 2 if mode in ("bilinear", "bicubic") else None
    for trial in range(60):
        nd = spatial or 1 + trial % 3
        shape = (1, 2) + tuple(int(v) for v in rng.integers(1, 13 if nd < 3 else 6, nd))
        x = rng.standard_normal(shape).astype(dtype)
        kind = trial % 4
        if kind == 0:
            kw = dict(size=tuple(int(v) for v in rng.integers(1, 40 if nd < 3 else 9, nd)))
        elif kind == 1:
            kw = dict(scale_factor=tuple(float(v) for v in rng.uniform(0.2, 4, nd)))
        elif kind == 2:   # near-integer factors and same-size outputs
            kw = dict(scale_factor=tuple(float(rng.choice([1, 2, 3])) + float(rng.choice([0, 0.01, 0.04]))
                                         for _ in range(nd)))
        else:
            kw = dict(scale_factor=float(rng.uniform(0.4, 3)), recompute_scale_factor=True)
        for ac in ([None] if "nearest" in mode else [False, True]):
            try:
                expected = TF.interpolate(torch.tensor(x), mode=mode, align_corners=ac, **kw).numpy()
            except RuntimeError:          # output size 0: ours must refuse too
                with pytest.raises(RuntimeError):
                    F.interpolate(td.tensor(x), mode=mode, align_corners=ac, **kw)
                continue
            got = F.interpolate(td.tensor(x), mode=mode, align_corners=ac, **kw)
            assert got.dtype == dtype
            tol = 1e-12 if dtype == np.float64 else 1e-5
            np.testing.assert_allclose(got.numpy(), expected, atol=tol, rtol=tol,
                                       err_msg=f"{mode} {shape} {kw} align_corners={ac}")


def test_interpolate_errors():
    x = td.zeros(1, 1, 4, 4)
    with pytest.raises(ValueError, match="only one of size or scale_factor"):
        F.interpolate(x, size=3, scale_factor=2)
    with pytest.raises(ValueError, match="either size or scale_factor"):
        F.interpolate(x)
    with pytest.raises(ValueError, match="align_corners option can only be set"):
        F.interpolate(x, scale_factor=2, align_corners=True)
    with pytest.raises(NotImplementedError, match="bilinear mode needs 4D input"):
        F.interpolate(td.zeros(1, 2, 4), scale_factor=2, mode="bilinear")
    with pytest.raises(ValueError, match=r"2 spatial dimensions but scale_factor has 3"):
        F.interpolate(x, scale_factor=(2, 2, 2))
    with pytest.raises(RuntimeError, match="greater than 0"):
        F.interpolate(x, scale_factor=0.1)
    with pytest.raises(NotImplementedError, match="unsupported mode 'lanczos'"):
        F.interpolate(x, size=2, mode="lanczos")


# ---------------------------------------------------------------- pad: PyTorch's conventions and errors
def test_pad_tuple_is_last_dimension_first():
    x = td.tensor(np.arange(6.0).reshape(1, 2, 3))
    y = F.pad(x, (1, 0, 0, 2), value=-1).numpy()
    assert y.shape == (1, 4, 4)
    np.testing.assert_array_equal(y[0, :, 0], [-1, -1, -1, -1])
    np.testing.assert_array_equal(y[0, 2:], -1)


def test_pad_float32_stays_float32():
    x = td.zeros(1, 2, 3, 3, requires_grad=True)
    for mode in ["constant", "reflect", "replicate", "circular"]:
        y = F.pad(x, (1, 2, 2, 1), mode=mode, value=2.5 if mode == "constant" else None)
        assert y.dtype == np.float32


@pytest.mark.parametrize("args, error, match", [
    (((1,),), RuntimeError, "divisible by 2"),
    (((1, 1) * 4, "constant"), RuntimeError, "only 3 dimensions"),
    (((5, 0), "reflect"), RuntimeError, r"reflect padding \(5, 0\) must be less than the size 5"),
    (((6, 0), "circular"), RuntimeError, "wraps around more than once"),
    (((1, 1), "reflect", 2.0), ValueError, "does not take a value"),
    (((1, 1, 1, 1, 1, 1), "replicate"), NotImplementedError, "not supported for a 3D input"),
    (((1, 1), "wrap"), NotImplementedError, "unknown mode"),
    (((-3, -3), "constant"), RuntimeError, "negative size"),
])
def test_pad_errors(args, error, match):
    with pytest.raises(error, match=match):
        F.pad(td.zeros(2, 3, 5), *args)


def test_pixel_shuffle_errors():
    with pytest.raises(RuntimeError, match=r"channel dimension 7.*not divisible by upscale_factor\^2 = 4"):
        F.pixel_shuffle(td.zeros(1, 7, 2, 2), 2)
    with pytest.raises(RuntimeError, match=r"not divisible by downscale_factor = 3"):
        F.pixel_unshuffle(td.zeros(1, 1, 6, 4), 3)
    with pytest.raises(RuntimeError, match="at least 3 dimensions"):
        F.pixel_shuffle(td.zeros(4, 4), 2)


def test_normalize_matches_formula_and_errors():
    x = np.random.default_rng(0).standard_normal((3, 4))
    y = F.normalize(td.tensor(x), p=2, dim=1).numpy()
    np.testing.assert_allclose(y, x / np.linalg.norm(x, axis=1, keepdims=True), rtol=1e-12)
    np.testing.assert_allclose(F.normalize(td.tensor(x), p=math.inf, dim=0).numpy(),
                               x / np.abs(x).max(0), rtol=1e-12)
    zeros = F.normalize(td.zeros(2, 3)).numpy()      # eps keeps zero vectors at zero, no NaN
    assert np.all(zeros == 0)
    with pytest.raises(IndexError, match="dim 2 is out of range"):
        F.normalize(td.zeros(2, 3), dim=2)


def test_nearest_resizes_integer_label_maps():
    labels = np.random.default_rng(0).integers(0, 20, (1, 1, 5, 7)).astype(np.uint8)
    got = F.interpolate(td.tensor(labels), size=(9, 4))
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got.numpy(), TF.interpolate(torch.tensor(labels), size=(9, 4)).numpy())
    with pytest.raises(RuntimeError, match="floating-point"):
        F.interpolate(td.tensor(labels), size=(9, 4), mode="bilinear")


@pytest.mark.parametrize("op", [
    lambda x: F.pad(x, (2, 1, 1, 2), mode="reflect"),
    lambda x: F.pad(x, (-1, 1, 1, 0)),
    lambda x: F.interpolate(x, scale_factor=1.5, mode="bicubic"),
    lambda x: F.interpolate(x, size=(4, 5), mode="bilinear"),    # same size: a copy, not the input
    lambda x: F.pixel_shuffle(x, 1),
    lambda x: F.batch_norm(x, None, None, training=True),
    lambda x: F.local_response_norm(x, 3),
    lambda x: F.normalize(x),
], ids=["pad_reflect", "pad_crop", "bicubic", "bilinear_same_size", "shuffle_r1", "batch_norm", "lrn",
        "normalize"])
def test_ops_leave_their_input_alone(op):
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5))
    before = x.copy()
    t = td.Tensor(x, requires_grad=True)
    y = op(t)
    y.backward(td.tensor(np.ones(y.shape)))
    np.testing.assert_array_equal(x, before)
    assert not np.shares_memory(y.array, x)


@pytest.mark.parametrize("name, args", [("layer_norm", ((4,),)), ("group_norm", (2,)), ("instance_norm", ()),
                                        ("rms_norm", ((4,),))])
def test_float16_norms_compute_in_float32_as_torch(name, args):
    """Values past 256 square past float16's range: the statistics are taken in float32 and
    the results (output and every gradient) come back in float16, as PyTorch's."""
    rng = np.random.default_rng(5)
    a = (rng.normal(size=(2, 4, 4)) * 300).astype(np.float16)
    w = rng.uniform(0.5, 2, 4).astype(np.float16)
    g = rng.normal(size=(2, 4, 4)).astype(np.float16)
    got = []
    for lib in (td, torch):
        x, weight = lib.tensor(a, requires_grad=True), lib.tensor(w, requires_grad=True)
        y = getattr(lib.nn.functional, name)(x, *args, weight=weight)
        y.backward(lib.tensor(g))
        assert y.dtype == x.grad.dtype == weight.grad.dtype == lib.float16
        got.append([t.detach().numpy().astype(np.float64) for t in (y, x.grad, weight.grad)])
    for ours, theirs in zip(*got):
        assert np.isfinite(ours).all()
        np.testing.assert_allclose(ours, theirs, rtol=2e-3, atol=2e-3)
