"""LayerNorm, GroupNorm, InstanceNorm1d/2d/3d and F.one_hot against PyTorch: forward, every
parameter and input gradient under a random upstream gradient (float64 and float32),
running buffers over training steps and in eval, state_dicts, reprs, second derivatives
and the errors.

The ops' gradients are also checked row by row in the op table (tests/optable/norm.py)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import tinydl as td
import tinydl.nn as nn
from tinydl.ops.encoding import one_hot
from tinydl.ops.norm import group_norm, instance_norm, layer_norm

DTYPES = pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])


def _np(t):
    return t.detach().numpy() if isinstance(t, torch.Tensor) else td.backend.to_device(t.detach().array, "cpu")


def _close(a, b, dtype=np.float64, what=""):
    tol = 1e-10 if dtype == np.float64 else 5e-5
    np.testing.assert_allclose(_np(a), _np(b), atol=tol, rtol=tol, err_msg=what)


def _torch_dtype(dtype):
    return torch.float64 if dtype == np.float64 else torch.float32


def _pair(ours_cls, theirs_cls, *args, dtype=np.float64, seed=3, **kwargs):
    """The same layer from tinydl and torch, with the same random affine parameters (not
    the ones/zeros they start with: those would hide a mix-up of weight and bias)."""
    ours = ours_cls(*args, **kwargs).to(dtype)
    theirs = theirs_cls(*args, **kwargs).to(_torch_dtype(dtype))
    rng = np.random.default_rng(seed)
    for name in ("weight", "bias"):
        p = getattr(ours, name, None)
        assert (p is None) == (getattr(theirs, name) is None)
        if p is not None:
            v = rng.uniform(0.5, 1.5, p.shape) if name == "weight" else rng.standard_normal(p.shape)
            p.array[...] = v.astype(dtype)
            getattr(theirs, name).data.copy_(torch.tensor(v))
    return ours, theirs


def _step(ours, theirs, x, g, dtype):
    """One forward + backward through both layers with the upstream gradient g: the output,
    the input gradient and every parameter gradient must agree."""
    xo, xt = td.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    yo, yt = ours(xo), theirs(xt)
    assert yo.dtype == dtype and yo.shape == tuple(yt.shape)
    _close(yo, yt, dtype, "output")
    yo.backward(td.tensor(g))
    yt.backward(torch.tensor(g))
    assert xo.grad.dtype == dtype
    _close(xo.grad, xt.grad, dtype, "input gradient")
    for (name, p), (_, q) in zip(ours.named_parameters(), theirs.named_parameters()):
        assert p.grad.dtype == dtype
        _close(p.grad, q.grad, dtype, f"gradient of {name}")
        p.grad, q.grad = None, None


def _run(ours, theirs, shape, dtype, steps=3, seed=0):
    rng = np.random.default_rng(seed)
    for step in range(steps):
        x = (rng.standard_normal(shape) * (1 + step) + step).astype(dtype)
        _step(ours, theirs, x, rng.standard_normal(shape).astype(dtype), dtype)


# ---------------------------------------------------------------- LayerNorm
@DTYPES
@pytest.mark.parametrize("shape, normalized_shape, kwargs", [
    ((4, 6), 6, {}),
    ((2, 5, 8), (8,), {}),
    ((2, 3, 4, 5), (4, 5), {}),
    ((2, 3, 4, 5), [3, 4, 5], {}),
    ((3, 2, 4), (2, 4), {"elementwise_affine": False}),
    ((3, 7), (7,), {"bias": False}),
    ((2, 4, 3), (4, 3), {"eps": 0.5}),
], ids=["int", "3d_last", "two_dims", "three_dims_list", "no_affine", "no_bias", "eps"])
def test_layernorm_matches_torch(shape, normalized_shape, kwargs, dtype):
    ours, theirs = _pair(nn.LayerNorm, torch.nn.LayerNorm, normalized_shape, dtype=dtype, **kwargs)
    _run(ours, theirs, shape, dtype)
    ours.eval()                                   # no running statistics: eval is the same
    theirs.eval()
    _run(ours, theirs, shape, dtype, steps=1, seed=5)


def test_layernorm_init_repr_state_dict():
    for args, kwargs in [((10,), {}), (((3, 4),), {"eps": 1e-3, "elementwise_affine": False}),
                         (([5, 2],), {"bias": False})]:
        ours, theirs = nn.LayerNorm(*args, **kwargs), torch.nn.LayerNorm(*args, **kwargs)
        assert repr(ours) == repr(theirs)
        assert list(ours.state_dict()) == list(theirs.state_dict())
        assert ours.normalized_shape == theirs.normalized_shape
    ln = nn.LayerNorm((2, 3))
    assert ln.weight.shape == (2, 3) and np.all(_np(ln.weight) == 1) and np.all(_np(ln.bias) == 0)
    assert [n for n, _ in ln.named_parameters()] == ["weight", "bias"]
    theirs = torch.nn.LayerNorm((2, 3))
    theirs.weight.data.uniform_(0.5, 1.5)
    theirs.bias.data.normal_()
    ln.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((4, 2, 3)).astype(np.float32)
    _close(ln(td.tensor(x)), theirs(torch.tensor(x)), np.float32)


def test_layernorm_errors_name_layer_and_shapes():
    with pytest.raises(RuntimeError, match=r"LayerNorm\(\(4,\)\).*last 1 dim.*\(2, 3\)"):
        nn.LayerNorm(4)(td.zeros(2, 3))
    with pytest.raises(RuntimeError, match=r"LayerNorm\(\(3, 4\)\).*\(2, 4, 3\)"):
        nn.LayerNorm((3, 4))(td.zeros(2, 4, 3))
    with pytest.raises(RuntimeError, match=r"layer_norm: normalized_shape=\(3, 4\).*\(\*, 3, 4\).*\(2, 4, 3\)"):
        layer_norm(td.zeros(2, 4, 3), (3, 4))
    with pytest.raises(RuntimeError, match=r"layer_norm.*\(1, 2, 4, 3\).*\(2, 4, 3\)"):
        layer_norm(td.zeros(2, 4, 3), (1, 2, 4, 3))
    with pytest.raises(RuntimeError, match=r"layer_norm: weight has shape \(4,\).*\(3,\)"):
        layer_norm(td.zeros(2, 4, 3), (3,), td.ones(4))
    with pytest.raises(RuntimeError, match=r"layer_norm: bias has shape \(4,\).*\(3,\)"):
        layer_norm(td.zeros(2, 4, 3), (3,), None, td.ones(4))
    with pytest.raises(RuntimeError, match="at least one dim"):
        layer_norm(td.zeros(2, 3), ())
    with pytest.raises(RuntimeError, match=r"layer_norm.*float64.*weight.*float32"):
        layer_norm(td.zeros(2, 3, dtype=td.float64), (3,), td.ones(3))


# ---------------------------------------------------------------- GroupNorm
@DTYPES
@pytest.mark.parametrize("num_groups, num_channels, shape, kwargs", [
    (1, 4, (2, 4, 3, 3), {}),
    (4, 4, (2, 4, 3, 3), {}),
    (2, 6, (3, 6, 5), {}),
    (3, 6, (2, 6, 2, 3), {"affine": False}),
    (2, 4, (3, 4), {"bias": False}),
    (2, 4, (2, 4, 2, 3, 2), {"eps": 1e-2}),
], ids=["one_group", "c_groups", "between_1d", "no_affine", "2d_no_bias", "5d_eps"])
def test_groupnorm_matches_torch(num_groups, num_channels, shape, kwargs, dtype):
    ours, theirs = _pair(nn.GroupNorm, torch.nn.GroupNorm, num_groups, num_channels, dtype=dtype, **kwargs)
    _run(ours, theirs, shape, dtype)
    ours.eval()
    theirs.eval()
    _run(ours, theirs, shape, dtype, steps=1, seed=5)


def test_groupnorm_init_repr_state_dict_errors():
    for args, kwargs in [((2, 4), {}), ((3, 6), {"eps": 1e-3, "affine": False}), ((1, 5), {"bias": False})]:
        ours, theirs = nn.GroupNorm(*args, **kwargs), torch.nn.GroupNorm(*args, **kwargs)
        assert repr(ours) == repr(theirs)
        assert list(ours.state_dict()) == list(theirs.state_dict())
    gn = nn.GroupNorm(2, 4)
    assert np.all(_np(gn.weight) == 1) and np.all(_np(gn.bias) == 0) and gn.weight.shape == (4,)
    theirs = torch.nn.GroupNorm(2, 4)
    theirs.weight.data.uniform_(0.5, 1.5)
    theirs.bias.data.normal_()
    gn.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    x = np.random.default_rng(1).standard_normal((3, 4, 5)).astype(np.float32)
    _close(gn(td.tensor(x)), theirs(torch.tensor(x)), np.float32)

    with pytest.raises(ValueError, match=r"num_channels \(6\) must be divisible by num_groups \(4\)"):
        nn.GroupNorm(4, 6)
    with pytest.raises(RuntimeError, match=r"GroupNorm\(2, 4\).*\(N, 4, \*\).*\(2, 6, 3\)"):
        nn.GroupNorm(2, 4)(td.zeros(2, 6, 3))
    with pytest.raises(RuntimeError, match=r"group_norm: .*divisible by num_groups.*\(2, 4, 3\).*num_groups=3"):
        group_norm(td.zeros(2, 4, 3), 3)
    with pytest.raises(RuntimeError, match=r"group_norm: weight has shape \(3,\).*\(2, 4, 3\).*4 channels"):
        group_norm(td.zeros(2, 4, 3), 2, td.ones(3))
    with pytest.raises(RuntimeError, match=r"group_norm: expected an input of shape \(N, C, \*\).*\(4,\)"):
        group_norm(td.zeros(4), 2)
    with pytest.raises(ValueError, match="num_groups must be a positive integer"):
        group_norm(td.zeros(2, 4, 3), 0)
    with pytest.raises(ValueError, match=r"more than 1 value per channel.*\(1, 1\)"):
        group_norm(td.zeros(1, 1), 1)
    # without affine, as in PyTorch, the channel count only has to be divisible
    _close(nn.GroupNorm(2, 4, affine=False)(td.tensor(x[:, :2].copy())),
           torch.nn.GroupNorm(2, 4, affine=False)(torch.tensor(x[:, :2].copy())), np.float32)


def test_group_norm_with_one_group_per_channel_is_instance_norm():
    x = td.tensor(np.random.default_rng(2).standard_normal((2, 3, 4, 5)))
    w, b = td.tensor([0.5, 1.0, 2.0], dtype=td.float64), td.tensor([0.1, -0.2, 0.3], dtype=td.float64)
    _close(group_norm(x, 3, w, b), instance_norm(x, weight=w, bias=b))


# ---------------------------------------------------------------- InstanceNorm
_INSTANCE = {1: ((3, 4, 7), nn.InstanceNorm1d, torch.nn.InstanceNorm1d),
             2: ((2, 4, 3, 5), nn.InstanceNorm2d, torch.nn.InstanceNorm2d),
             3: ((2, 4, 2, 3, 3), nn.InstanceNorm3d, torch.nn.InstanceNorm3d)}


@DTYPES
@pytest.mark.parametrize("d", [1, 2, 3], ids=["1d", "2d", "3d"])
@pytest.mark.parametrize("kwargs", [{}, {"affine": True}, {"affine": True, "track_running_stats": True},
                                    {"track_running_stats": True, "momentum": 0.4}, {"momentum": None,
                                    "track_running_stats": True, "affine": True}],
                         ids=["plain", "affine", "affine_tracked", "tracked_m0.4", "tracked_momentum_none"])
def test_instancenorm_matches_torch_training_then_eval(d, kwargs, dtype):
    shape, ours_cls, theirs_cls = _INSTANCE[d]
    ours, theirs = _pair(ours_cls, theirs_cls, shape[1], dtype=dtype, **kwargs)
    _run(ours, theirs, shape, dtype, steps=4)
    if ours.track_running_stats:
        _close(ours.running_mean, theirs.running_mean, dtype, "running_mean")
        _close(ours.running_var, theirs.running_var, dtype, "running_var")
        assert ours.running_mean.dtype == dtype and ours.running_var.dtype == dtype
        assert int(ours.num_batches_tracked.item()) == int(theirs.num_batches_tracked) == 0   # (as PyTorch)
    ours.eval()
    theirs.eval()
    before = None if ours.running_mean is None else _np(ours.running_mean).copy()
    _run(ours, theirs, shape, dtype, steps=2, seed=7)      # tracked: the running statistics normalise
    if before is not None:
        np.testing.assert_array_equal(_np(ours.running_mean), before)   # and are left alone


@DTYPES
def test_instancenorm_unbatched_input(dtype):
    ours, theirs = _pair(nn.InstanceNorm2d, torch.nn.InstanceNorm2d, 3, affine=True, track_running_stats=True,
                         dtype=dtype)
    _run(ours, theirs, (3, 4, 5), dtype, steps=2)
    _close(ours.running_var, theirs.running_var, dtype)
    ours.eval()
    theirs.eval()
    _run(ours, theirs, (3, 4, 5), dtype, steps=1)


def test_functional_instance_norm_updates_running_stats_in_place():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 2, 4, 5)) * 2 + 1
    rm, rv = rng.standard_normal(2), rng.uniform(0.5, 2, 2)
    ours_m, ours_v = td.tensor(rm.copy()), td.tensor(rv.copy())
    theirs_m, theirs_v = torch.tensor(rm.copy()), torch.tensor(rv.copy())
    for _ in range(3):
        instance_norm(td.tensor(x), ours_m, ours_v, momentum=0.3)
        TF.instance_norm(torch.tensor(x), theirs_m, theirs_v, momentum=0.3)
    _close(ours_m, theirs_m)
    _close(ours_v, theirs_v)
    # by hand: the per-(sample, channel) statistics averaged over the batch, variance unbiased
    m, v = td.tensor(rm.copy()), td.tensor(rv.copy())
    instance_norm(td.tensor(x), m, v, momentum=0.3)
    flat = x.reshape(3, 2, -1)
    np.testing.assert_allclose(m.numpy(), 0.7 * rm + 0.3 * flat.mean(-1).mean(0), rtol=1e-12)
    np.testing.assert_allclose(v.numpy(), 0.7 * rv + 0.3 * flat.var(-1, ddof=1).mean(0), rtol=1e-12)


def test_instancenorm_repr_state_dict_and_loading_from_torch():
    for cls in ("InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d"):
        for kwargs in [{}, {"affine": True}, {"track_running_stats": True, "momentum": None},
                       {"affine": True, "track_running_stats": True, "eps": 1e-3}]:
            ours, theirs = getattr(nn, cls)(5, **kwargs), getattr(torch.nn, cls)(5, **kwargs)
            assert repr(ours) == repr(theirs)
            assert list(ours.state_dict()) == list(theirs.state_dict())
    theirs = torch.nn.InstanceNorm2d(3, affine=True, track_running_stats=True)
    theirs(torch.randn(2, 3, 4, 4) * 3 + 1)
    theirs.weight.data.uniform_(0.5, 1.5)
    theirs.bias.data.normal_()
    ours = nn.InstanceNorm2d(3, affine=True, track_running_stats=True)
    assert list(ours.state_dict()) == ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    ours.eval()
    theirs.eval()
    x = np.random.default_rng(0).standard_normal((2, 3, 3, 3)).astype(np.float32)
    _close(ours(td.tensor(x)), theirs(torch.tensor(x)), np.float32)
    # converting a model to SyncBatchNorm leaves instance norms alone (they are not batch norms)
    model = nn.Sequential(nn.BatchNorm2d(3), nn.InstanceNorm2d(3))
    converted = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    assert type(converted[0]) is nn.SyncBatchNorm and type(converted[1]) is nn.InstanceNorm2d


def test_instancenorm_errors():
    with pytest.raises(ValueError, match=r"InstanceNorm2d: expected 3D or 4D input.*2D input of shape \(3, 4\)"):
        nn.InstanceNorm2d(3)(td.zeros(3, 4))
    with pytest.raises(ValueError, match=r"InstanceNorm1d\(4\).*dim=1.*num_features \(4\).*\(2, 3, 5\)"):
        nn.InstanceNorm1d(4, affine=True)(td.zeros(2, 3, 5))
    with pytest.raises(ValueError, match=r"InstanceNorm1d\(4\).*dim=0.*\(3, 5\)"):
        nn.InstanceNorm1d(4, track_running_stats=True)(td.zeros(3, 5))
    with pytest.warns(UserWarning, match="num_features"):       # unused without affine: PyTorch warns
        nn.InstanceNorm1d(4)(td.tensor(np.random.default_rng(0).standard_normal((2, 3, 5))))
    with pytest.raises(ValueError, match=r"more than 1 spatial element.*\(2, 3, 1\)"):
        nn.InstanceNorm1d(3)(td.zeros(2, 3, 1))
    with pytest.raises(ValueError, match=r"instance_norm: more than 1 spatial|spatial element.*\(3, 4\)"):
        instance_norm(td.zeros(3, 4))
    with pytest.raises(RuntimeError, match="running_mean and running_var must be given when use_input_stats=False"):
        instance_norm(td.zeros(2, 3, 4), use_input_stats=False)
    with pytest.raises(RuntimeError, match=r"instance_norm: running_mean has shape \(2,\).*\(2, 3, 4\).*3 channels"):
        instance_norm(td.zeros(2, 3, 4), td.zeros(2), td.ones(2))
    with pytest.raises(RuntimeError, match=r"instance_norm: weight has shape \(2,\)"):
        instance_norm(td.zeros(2, 3, 4), weight=td.ones(2))


# ---------------------------------------------------------------- second derivatives
def _second_derivatives(lib, fn, arrays, seed=11):
    """d/d(inputs) of <w, dL/d(inputs)>, L = <v, fn(inputs)>, the first derivatives built with
    create_graph; also the first derivatives."""
    rng = np.random.default_rng(seed)
    xs = [lib.tensor(a, requires_grad=True) for a in arrays]
    y = fn(*xs)
    v = lib.tensor(rng.standard_normal(tuple(y.shape)))
    firsts = lib.autograd.grad([y], xs, grad_outputs=[v], create_graph=True)
    ws = [lib.tensor(rng.standard_normal(tuple(x.shape))) for x in xs]
    pairs = [(g, w) for g, w in zip(firsts, ws) if g.requires_grad]    # (the bias's is constant: sum of v)
    seconds = lib.autograd.grad([g for g, _ in pairs], xs, grad_outputs=[w for _, w in pairs], allow_unused=True)
    return [_np(g) for g in firsts], [None if s is None else _np(s) for s in seconds]


@pytest.mark.parametrize("name, ours_fn, theirs_fn, shapes", [
    ("layer_norm", lambda x, w, b: layer_norm(x, (3, 4), w, b), lambda x, w, b: TF.layer_norm(x, (3, 4), w, b),
     [(2, 3, 4), (3, 4), (3, 4)]),
    ("layer_norm_no_affine", lambda x: layer_norm(x, (5,)), lambda x: TF.layer_norm(x, (5,)), [(4, 5)]),
    ("group_norm", lambda x, w, b: group_norm(x, 2, w, b), lambda x, w, b: TF.group_norm(x, 2, w, b),
     [(2, 4, 3, 2), (4,), (4,)]),
    ("group_norm_one_group", lambda x, w, b: group_norm(x, 1, w, b), lambda x, w, b: TF.group_norm(x, 1, w, b),
     [(3, 2, 5), (2,), (2,)]),
], ids=lambda v: v if isinstance(v, str) else "")
def test_second_derivatives_match_torch(name, ours_fn, theirs_fn, shapes):
    rng = np.random.default_rng(9)
    arrays = [rng.standard_normal(s) * (1.5 if i == 0 else 0.5) + (0.3 if i == 0 else 1.0)
              for i, s in enumerate(shapes)]
    ours_first, ours_second = _second_derivatives(td, ours_fn, arrays)
    theirs_first, theirs_second = _second_derivatives(torch, theirs_fn, arrays)
    for k, (a, b) in enumerate(zip(ours_first, theirs_first)):
        np.testing.assert_allclose(a, b, atol=1e-10, rtol=1e-8, err_msg=f"{name}: first derivative {k}")
    for k, (a, b) in enumerate(zip(ours_second, theirs_second)):
        if b is None:
            assert a is None or not np.any(a), f"{name}: torch gives no second derivative of input {k}"
            continue
        np.testing.assert_allclose(a, b, atol=1e-10, rtol=1e-8, err_msg=f"{name}: second derivative {k}")


def test_gradient_penalty_through_layernorm_module():
    """A training-style use of create_graph: loss + ||dloss/dx||^2 through a LayerNorm and a
    GroupNorm, parameter gradients against PyTorch's."""
    rng = np.random.default_rng(12)
    x = rng.standard_normal((3, 4, 6))
    ln_o, ln_t = _pair(nn.LayerNorm, torch.nn.LayerNorm, 6)
    gn_o, gn_t = _pair(nn.GroupNorm, torch.nn.GroupNorm, 2, 4)
    grads = []
    for lib, ln, gn in ((td, ln_o, gn_o), (torch, ln_t, gn_t)):
        xt = lib.tensor(x, requires_grad=True)
        y = gn(ln(xt))
        loss = (y * y * y).sum()
        gx, = lib.autograd.grad([loss], [xt], create_graph=True)
        ((gx * gx).sum() + loss).backward()
        grads.append([_np(p.grad) for p in (ln.weight, ln.bias, gn.weight, gn.bias)] + [_np(xt.grad)])
    for k, (a, b) in enumerate(zip(*grads)):
        np.testing.assert_allclose(a, b, atol=1e-9, rtol=1e-8, err_msg=f"gradient {k}")


# ---------------------------------------------------------------- one_hot
@pytest.mark.parametrize("labels, num_classes", [
    ([3, 0, 1, 1], -1),
    ([3, 0, 1, 1], 6),
    ([[0, 2], [1, 2], [2, 0]], -1),
    ([[[4]], [[0]]], 5),
    (2, 4),                          # a 0-d tensor: one vector
    (np.zeros((0, 3), np.int64), 4),  # empty, with num_classes
])
def test_one_hot_matches_torch(labels, num_classes):
    a = np.asarray(labels, dtype=np.int64)
    ours = one_hot(td.tensor(a), num_classes)
    theirs = TF.one_hot(torch.tensor(a), num_classes)
    assert ours.dtype == np.int64 and not ours.requires_grad
    assert ours.shape == tuple(theirs.shape)
    np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


def test_one_hot_errors_as_torch():
    with pytest.raises(RuntimeError, match=r"non-negative, got -1 in a tensor of shape \(3,\)"):
        one_hot(td.tensor([1, 2, -1]))
    with pytest.raises(RuntimeError, match=r"smaller than num_classes=3, got 3"):
        one_hot(td.tensor([1, 2, 3]), 3)
    with pytest.raises(RuntimeError, match="smaller than num_classes"):
        one_hot(td.tensor([0, 1]), 0)
    with pytest.raises(RuntimeError, match=r"int64.*float32"):
        one_hot(td.tensor([1.0, 2.0]))
    with pytest.raises(RuntimeError, match=r"int64.*int32"):
        one_hot(td.tensor(np.array([1, 2], np.int32)))
    with pytest.raises(RuntimeError, match="empty tensor"):
        one_hot(td.tensor(np.zeros(0, np.int64)))
    for bad in ([1, 2, -1], [1, 2, 3]):       # PyTorch raises RuntimeError on the same inputs
        with pytest.raises(RuntimeError):
            TF.one_hot(torch.tensor(bad), 3 if bad[-1] == 3 else -1)
