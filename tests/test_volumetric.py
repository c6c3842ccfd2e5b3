"""The volumetric (3-D) layers and ops against torch, beyond the op table
(tests/optable/volumetric.py, which gradchecks every op and compares it with PyTorch):
layers with torch's weights copied in (outputs, input and parameter gradients), padding
modes and the Pad3d layers, output sizes with ceil_mode, max-pool indices with ties,
-inf, NaN and windows that read no cell, the unpooling round trip, initialisation,
reprs and state_dict keys, the errors for bad input, dtypes, and a small 3-D CNN's
training step.
"""
import math

import numpy as np
import pytest
import torch

import tinydl as td
import tinydl.nn as nn
import tinydl.nn.functional as F

# PyTorch warns that 'same' padding with an even kernel copies the input.
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")


def _np(t):
    return t.detach().numpy() if isinstance(t, torch.Tensor) else td.backend.to_host(t.detach().array)


def _x(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _twins(cls_name, *args, **kwargs):
    """The same layer from tinydl and torch, torch's random weights loaded into ours."""
    theirs = getattr(torch.nn, cls_name)(*args, **kwargs)
    ours = getattr(nn, cls_name)(*args, **kwargs)
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


def _compare(ours, theirs, x, extra=(), atol=1e-5, rtol=1e-4, call=None):
    """Both layers forward on ``x`` (float32) and backward a random gradient: outputs, the
    input gradient and every parameter gradient must agree, and stay float32."""
    call = call or (lambda layer, inp, *e: layer(inp, *e))
    xo, xt = td.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    yo = call(ours, xo, *[td.tensor(e.numpy()) if isinstance(e, torch.Tensor) else e for e in extra])
    yt = call(theirs, xt, *extra)
    if isinstance(yt, tuple):
        np.testing.assert_array_equal(_np(yo[1]), _np(yt[1]))       # max-pool indices
        yo, yt = yo[0], yt[0]
    assert yo.shape == tuple(yt.shape)
    assert yo.dtype == np.float32
    np.testing.assert_allclose(_np(yo), _np(yt), atol=atol, rtol=rtol)
    g = np.random.default_rng(1).standard_normal(yo.shape).astype(np.float32)
    yo.backward(td.tensor(g))
    yt.backward(torch.tensor(g))
    assert xo.grad.dtype == np.float32
    np.testing.assert_allclose(_np(xo.grad), _np(xt.grad), atol=atol * 10, rtol=rtol * 10)
    params_t = dict(theirs.named_parameters())
    assert sorted(params_t) == sorted(n for n, _ in ours.named_parameters())
    for name, p in ours.named_parameters():
        assert p.grad is not None and p.grad.dtype == np.float32, name
        np.testing.assert_allclose(_np(p.grad), _np(params_t[name].grad), atol=atol * 10, rtol=rtol * 10,
                                   err_msg=name)
    return yo


# ---------------------------------------------------------------- layers against torch
@pytest.mark.parametrize("args, kwargs, shape", [
    ((2, 4, 3), {}, (2, 2, 5, 6, 5)),
    ((2, 4, (2, 3, 1)), dict(stride=(2, 1, 1), padding=(1, 0, 1), dilation=(1, 2, 1)), (1, 2, 6, 7, 4)),
    ((4, 6, 2), dict(groups=2, bias=False), (2, 4, 4, 3, 5)),
    ((3, 3, 3), dict(groups=3, padding=1), (1, 3, 4, 4, 4)),
    ((2, 3, (2, 3, 4)), dict(padding="same"), (1, 2, 4, 5, 6)),
    ((2, 3, 3), dict(padding="valid", stride=2), (1, 2, 7, 6, 5)),
    ((2, 3, 3), dict(padding=1, padding_mode="reflect"), (1, 2, 4, 5, 4)),
    ((2, 3, (3, 2, 3)), dict(padding=(1, 1, 2), padding_mode="replicate", stride=(1, 2, 1)), (2, 2, 4, 5, 4)),
    ((2, 3, 3), dict(padding=(2, 1, 1), padding_mode="circular", dilation=(1, 2, 1)), (1, 2, 4, 6, 4)),
    ((2, 3, (2, 3, 2)), dict(padding="same", padding_mode="reflect"), (1, 2, 4, 5, 5)),
    ((2, 3, 2), {}, (2, 4, 5, 3)),                                              # unbatched
])
def test_conv3d_layer_matches_torch(args, kwargs, shape):
    ours, theirs = _twins("Conv3d", *args, **kwargs)
    assert repr(ours) == repr(theirs)
    _compare(ours, theirs, _x(*shape))


@pytest.mark.parametrize("args, kwargs, shape, output_size", [
    ((2, 3, 3), {}, (2, 2, 3, 2, 3), None),
    ((2, 4, 3), dict(stride=2, padding=1, output_padding=1), (1, 2, 3, 3, 2), None),
    ((4, 2, (2, 3, 2)), dict(stride=(1, 2, 3), groups=2, dilation=(2, 1, 1), bias=False), (1, 4, 2, 3, 2), None),
    ((2, 3, 3), dict(stride=2, padding=1), (1, 2, 3, 2, 3), (6, 4, 5)),       # output_size picks output_padding
    ((2, 3, 2), dict(stride=3), (2, 3, 2, 2), (3, 9, 5, 6)),                  # unbatched, full output_size
])
def test_conv_transpose3d_layer_matches_torch(args, kwargs, shape, output_size):
    ours, theirs = _twins("ConvTranspose3d", *args, **kwargs)
    assert repr(ours) == repr(theirs)
    _compare(ours, theirs, _x(*shape), call=lambda layer, inp: layer(inp, output_size))


@pytest.mark.parametrize("cls_name, args, kwargs, shape", [
    ("MaxPool3d", (2,), {}, (2, 2, 4, 5, 6)),
    ("MaxPool3d", (3, 2, 1), dict(ceil_mode=True, return_indices=True), (1, 2, 6, 5, 7)),
    ("MaxPool3d", ((2, 3, 2),), dict(stride=1, dilation=(2, 1, 2), return_indices=True), (2, 5, 4, 6)),
    ("AvgPool3d", (2,), {}, (2, 2, 4, 5, 6)),
    ("AvgPool3d", (3, 2, 1), dict(ceil_mode=True, count_include_pad=False), (1, 2, 6, 5, 7)),
    ("AvgPool3d", ((2, 3, 2),), dict(padding=(1, 1, 0), divisor_override=5), (2, 5, 4, 6)),
    ("AdaptiveAvgPool3d", ((2, None, 3),), {}, (2, 2, 5, 4, 7)),
    ("AdaptiveAvgPool3d", (1,), {}, (3, 4, 5, 2)),
    ("AdaptiveMaxPool3d", ((3, 2, 4),), dict(return_indices=True), (2, 2, 5, 4, 7)),
    ("ConstantPad3d", ((1, 0, 2, 1, 0, 3), 1.5), {}, (2, 2, 3, 2, 3)),
    ("ConstantPad3d", (-1, 0.0), {}, (2, 2, 3, 4, 3)),                       # negative amounts crop
    ("ZeroPad3d", (1,), {}, (2, 3, 2, 3)),
    ("ReflectionPad3d", ((1, 2, 0, 1, 2, 1),), {}, (2, 2, 3, 3, 4)),
    ("ReplicationPad3d", (2,), {}, (2, 3, 2, 3)),
    ("CircularPad3d", ((1, 2, 1, 0, 2, 1),), {}, (1, 2, 3, 3, 3)),
])
def test_pool_and_pad_layers_match_torch(cls_name, args, kwargs, shape):
    ours, theirs = _twins(cls_name, *args, **kwargs)
    assert repr(ours) == repr(theirs)
    _compare(ours, theirs, _x(*shape))


def test_3d_pool_layers_share_the_2d_layers_settings():
    """The 3-D pool layers are the 2-D ones' bases (nn/pooling.py) with a 3-D forward: the
    same attributes, and 2-D layers keep theirs (reprs as torch's, 2-D and 3-D)."""
    import tinydl.nn.pooling as pooling
    for cls, base, args in (("AvgPool3d", pooling._AvgPoolNd, (3, 2, 1)),
                            ("AdaptiveAvgPool3d", pooling._AdaptiveAvgPoolNd, ((2, None, 3),)),
                            ("AdaptiveMaxPool3d", pooling._AdaptiveMaxPoolNd, ((2, 1, 3), True)),
                            ("MaxUnpool3d", pooling._MaxUnpoolNd, (2, 1, (0, 1, 0)))):
        ours, theirs = getattr(nn, cls)(*args), getattr(torch.nn, cls)(*args)
        assert isinstance(ours, base) and repr(ours) == repr(theirs)
        assert not isinstance(ours, getattr(nn, cls.replace("3d", "2d")))
        two = cls.replace("3d", "2d")
        args2 = tuple(a[:2] if isinstance(a, tuple) else a for a in args)
        assert repr(getattr(nn, two)(*args2)) == repr(getattr(torch.nn, two)(*args2))


def test_max_unpool3d_layer_round_trip_matches_torch():
    """MaxPool3d -> MaxUnpool3d puts every maximum back in its cell (zeros elsewhere), as torch;
    pooling the unpooled volume again gives the same maxima at the same indices (the maxima
    are positive here, or a window's zeros would win)."""
    x = np.abs(_x(2, 3, 5, 6, 7)) + 0.1
    pool, pool_t = _twins("MaxPool3d", 2, return_indices=True)
    unpool, unpool_t = _twins("MaxUnpool3d", 2)
    assert repr(unpool) == repr(unpool_t)
    y, index = pool(td.tensor(x))
    y_t, index_t = pool_t(torch.tensor(x))
    np.testing.assert_array_equal(_np(index), _np(index_t))
    assert index.dtype == np.int64
    with pytest.raises(RuntimeError, match="invalid max index"):      # the default size is 4x6x6
        unpool(y, index)
    with pytest.raises(RuntimeError, match="invalid max index"):
        unpool_t(y_t, index_t)
    for size in ((5, 6, 7), (2, 3, 5, 6, 7)):
        back = unpool(y, index, output_size=size)
        back_t = unpool_t(y_t, index_t, output_size=size)
        np.testing.assert_array_equal(_np(back), _np(back_t))
    back = unpool(y, index, output_size=(5, 6, 7))
    kept = _np(back) != 0
    np.testing.assert_array_equal(_np(back)[kept], x[kept])               # the maxima, where they were
    assert kept.sum() == y.numel()
    again, index_again = pool(back)
    np.testing.assert_array_equal(_np(again), _np(y))
    np.testing.assert_array_equal(_np(index_again), _np(index))
    # and through the layer's backward: every maximum gets its cell's gradient
    _compare(unpool, unpool_t, _np(y), extra=(index_t, (5, 6, 7)))


# ---------------------------------------------------------------- sizes and indices
@pytest.mark.parametrize("size", [4, 5, 6, 7])
@pytest.mark.parametrize("kernel, stride, padding, dilation", [
    (2, 2, 0, 1), (3, 2, 1, 1), (3, 3, 1, 1), (2, 3, 1, 1), (3, 2, 0, 2), (4, 3, 2, 1), (2, 2, 1, 3),
])
def test_pool_output_sizes_with_ceil_mode_match_torch(size, kernel, stride, padding, dilation):
    x = _x(1, 1, size, size + 1, size + 2)
    for ceil_mode in (False, True):
        args = dict(kernel_size=kernel, stride=stride, padding=padding, ceil_mode=ceil_mode)
        try:
            y_t, i_t = torch.nn.functional.max_pool3d(torch.tensor(x), dilation=dilation, return_indices=True, **args)
        except RuntimeError:
            with pytest.raises(RuntimeError, match="too small"):
                F.max_pool3d(td.tensor(x), dilation=dilation, **args)
            continue
        y, i = F.max_pool3d(td.tensor(x), dilation=dilation, return_indices=True, **args)
        assert y.shape == tuple(y_t.shape)
        np.testing.assert_array_equal(_np(y), _np(y_t))
        np.testing.assert_array_equal(_np(i), _np(i_t))
        if dilation == 1:
            for include in (False, True):
                a_t = torch.nn.functional.avg_pool3d(torch.tensor(x), count_include_pad=include, **args)
                a = F.avg_pool3d(td.tensor(x), count_include_pad=include, **args)
                assert a.shape == tuple(a_t.shape)
                np.testing.assert_allclose(_np(a), _np(a_t), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name, values", [
    ("ties", lambda rng: rng.integers(0, 3, (2, 2, 5, 6, 5)).astype(np.float32)),
    ("neg_inf", lambda rng: np.where(rng.random((2, 2, 5, 6, 5)) < 0.7, -np.inf,
                                     rng.standard_normal((2, 2, 5, 6, 5))).astype(np.float32)),
    ("all_neg_inf", lambda rng: np.full((1, 2, 4, 5, 4), -np.inf, np.float32)),
    ("nan", lambda rng: np.where(rng.random((2, 2, 5, 6, 5)) < 0.2, np.nan,
                                 rng.standard_normal((2, 2, 5, 6, 5))).astype(np.float32)),
    ("int64", lambda rng: rng.integers(-5, 5, (2, 2, 5, 6, 5))),
])
def test_max_pool3d_indices_equal_torch(name, values):
    """PyTorch's scan: the first maximum wins a tie, the last NaN wins, and a window of -inf
    (or an integer dtype's minimum) reports its first cell past the padding."""
    x = values(np.random.default_rng(0))
    for kw in (dict(kernel_size=3, stride=2, padding=1), dict(kernel_size=2, stride=1, ceil_mode=True),
               dict(kernel_size=(2, 3, 2), stride=2, padding=(1, 1, 0), dilation=(2, 1, 1), ceil_mode=True)):
        y, i = F.max_pool3d(td.tensor(x), return_indices=True, **kw)
        y_t, i_t = torch.nn.functional.max_pool3d(torch.tensor(x), return_indices=True, **kw)
        assert y.dtype == x.dtype
        np.testing.assert_array_equal(_np(y), _np(y_t))
        np.testing.assert_array_equal(_np(i), _np(i_t), err_msg=str(kw))
    if x.dtype.kind == "f":
        y, i = F.adaptive_max_pool3d(td.tensor(x), (2, 4, 3), return_indices=True)
        y_t, i_t = torch.nn.functional.adaptive_max_pool3d(torch.tensor(x), (2, 4, 3), return_indices=True)
        np.testing.assert_array_equal(_np(y), _np(y_t))
        np.testing.assert_array_equal(_np(i), _np(i_t))


def test_max_pool3d_window_that_reads_no_cell():
    """A dilated window can step over a thin volume (taps at depth -1 and 2 of a depth-1 volume):
    its max is -inf and its index PyTorch's (outside the volume), and it passes no gradient."""
    x = _x(1, 2, 1, 3, 3)
    kw = dict(kernel_size=(2, 1, 1), stride=(2, 1, 1), padding=(1, 0, 0), dilation=(3, 1, 1), ceil_mode=True)
    xo = td.tensor(x, requires_grad=True)
    y, i = F.max_pool3d(xo, return_indices=True, **kw)
    y_t, i_t = torch.nn.functional.max_pool3d(torch.tensor(x), return_indices=True, **kw)
    np.testing.assert_array_equal(_np(y), _np(y_t))
    np.testing.assert_array_equal(_np(i), _np(i_t))
    assert np.isneginf(_np(y)).all() and (_np(i) >= 9).all()
    y.backward(td.tensor(np.random.default_rng(4).standard_normal(y.shape)))
    np.testing.assert_array_equal(_np(xo.grad), np.zeros_like(x))


def test_avg_pool3d_of_integers_truncates_as_torch():
    x = np.random.default_rng(0).integers(-50, 50, (2, 2, 5, 4, 5))
    for kw in (dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1, count_include_pad=False),
               dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, divisor_override=7)):
        y = F.avg_pool3d(td.tensor(x), **kw)
        y_t = torch.nn.functional.avg_pool3d(torch.tensor(x), **kw)
        assert y.dtype == np.int64
        np.testing.assert_array_equal(_np(y), _np(y_t))


# ---------------------------------------------------------------- parameters
def test_initialisation_state_dict_and_dtypes_match_torch():
    for cls_name, args in (("Conv3d", (4, 6, (3, 2, 5))), ("ConvTranspose3d", (4, 6, (3, 2, 5)))):
        for groups in (1, 2):
            ours = getattr(nn, cls_name)(*args, groups=groups)
            theirs = getattr(torch.nn, cls_name)(*args, groups=groups)
            assert list(ours.state_dict()) == list(theirs.state_dict())
            for (k, a), (_, b) in zip(ours.state_dict().items(), theirs.state_dict().items()):
                assert tuple(a.shape) == tuple(b.shape), k
            w = _np(ours.weight)
            fan_in = w.shape[1] * math.prod(w.shape[2:])       # torch reads a transposed weight "backwards" too
            bound = 1 / math.sqrt(fan_in)
            for p in (w, _np(ours.bias)):
                assert p.dtype == np.float32
                assert np.abs(p).max() <= bound
            assert np.abs(w).max() > 0.9 * bound and abs(w.mean()) < 0.2 * bound     # U(-bound, bound)
    conv = nn.Conv3d(2, 3, 2, bias=False, dtype=td.float64)
    assert conv.bias is None and conv.weight.dtype == np.float64
    assert F.conv3d(td.tensor(_x(1, 2, 3, 3, 3).astype(np.float64)), conv.weight).dtype == np.float64


def test_float32_stays_float32_through_every_op():
    x = td.tensor(_x(1, 2, 4, 4, 4), requires_grad=True)
    w = td.tensor(_x(2, 2, 2, 2, 2), requires_grad=True)
    pooled, index = F.max_pool3d(x, 2, return_indices=True)
    outs = [F.conv3d(x, w, padding=1), F.conv_transpose3d(x, w, stride=2), pooled,
            F.avg_pool3d(x, 3, 1, 1, count_include_pad=False), F.adaptive_avg_pool3d(x, 3),
            F.adaptive_max_pool3d(x, 3), F.max_unpool3d(pooled, index, 2)]
    for y in outs:
        assert y.dtype == np.float32
    sum(y.sum() for y in outs).backward()
    assert x.grad.dtype == w.grad.dtype == np.float32


# ---------------------------------------------------------------- errors
def _conv_error(x_shape, w_shape, **kw):
    F.conv3d(td.tensor(_x(*x_shape)), td.tensor(_x(*w_shape)), **kw)


@pytest.mark.parametrize("call, error, match", [
    (lambda: _conv_error((1, 2, 4, 4), (3, 2, 2, 2)), RuntimeError, r"conv3d: expected a 5-D weight"),
    (lambda: _conv_error((2, 4, 4), (3, 2, 2, 2, 2)), RuntimeError, r"conv3d: expected a 4-D \(C, D, H, W\)"),
    (lambda: _conv_error((1, 3, 4, 4, 4), (3, 2, 2, 2, 2)), RuntimeError, r"conv3d: expected input with 2 channels"),
    (lambda: _conv_error((1, 4, 4, 4, 4), (3, 2, 2, 2, 2), groups=2), RuntimeError, r"groups=2 does not divide the 3"),
    (lambda: _conv_error((1, 2, 4, 4, 4), (3, 2, 2, 2, 2), groups=0), ValueError, r"groups must be a positive"),
    (lambda: _conv_error((1, 2, 2, 4, 4), (3, 2, 3, 2, 2)), RuntimeError, r"conv3d: input of shape .* smaller"),
    (lambda: _conv_error((1, 2, 4, 4, 4), (3, 2, 2, 2, 2), padding="full"), ValueError, r"invalid padding string"),
    (lambda: _conv_error((1, 2, 4, 4, 4), (3, 2, 2, 2, 2), padding="same", stride=2), ValueError, r"'same' is not"),
    (lambda: _conv_error((1, 2, 4, 4, 4), (3, 2, 2, 2, 2), padding=(1, 1)), ValueError, r"padding must be an int"),
    (lambda: _conv_error((1, 2, 4, 4, 4), (3, 2, 2, 2, 2), stride=(1, 0, 1)), ValueError, r"stride must be positive"),
    (lambda: _conv_error((1, 2, 4, 4, 4), (3, 2, 2, 2, 2), padding=-1), ValueError, r"negative padding"),
    (lambda: F.conv3d(td.tensor(_x(1, 2, 3, 3, 3)), td.tensor(_x(3, 2, 2, 2, 2)), td.tensor(_x(2))),
     RuntimeError, r"conv3d: expected bias of shape \(3,\)"),
    (lambda: F.conv3d(td.tensor(_x(1, 2, 3, 3, 3)), td.tensor(_x(3, 2, 2, 2, 2).astype(np.float64))),
     RuntimeError, r"conv3d: input type \(float32\) and weight type \(float64\)"),
    (lambda: F.conv_transpose3d(td.tensor(_x(1, 2, 3, 3, 3)), td.tensor(_x(2, 2, 2, 2, 2)), stride=2,
                                output_padding=2), ValueError, r"conv_transpose3d: output padding must be smaller"),
    (lambda: F.conv_transpose3d(td.tensor(_x(1, 3, 3, 3, 3)), td.tensor(_x(2, 2, 2, 2, 2))), RuntimeError,
     r"conv_transpose3d: expected input with 2 channels"),
    (lambda: F.conv_transpose3d(td.tensor(_x(1, 2, 1, 3, 3)), td.tensor(_x(2, 2, 1, 2, 2)), padding=1),
     RuntimeError, r"conv_transpose3d: .* gives an output of size"),
    (lambda: F.max_pool3d(td.tensor(_x(2, 4, 4)), 2), RuntimeError, r"max_pool3d: expected a 4-D"),
    (lambda: F.max_pool3d(td.tensor(_x(1, 1, 4, 4, 4)), 2, padding=2), ValueError, r"max_pool3d: pad should be"),
    (lambda: F.max_pool3d(td.tensor(_x(1, 1, 2, 4, 4)), 3), RuntimeError, r"max_pool3d: input of shape .* too small"),
    (lambda: F.max_pool3d(td.tensor(_x(1, 1, 4, 4, 4)), 2, stride=0), ValueError, r"stride must be greater than"),
    (lambda: F.max_pool3d(td.tensor(np.zeros((1, 1, 2, 2, 2), bool)), 2), RuntimeError, r"max_pool3d: not impl"),
    (lambda: F.avg_pool3d(td.tensor(_x(1, 1, 4, 4, 4)), 2, divisor_override=0), ValueError, r"divisor must be not"),
    (lambda: F.avg_pool3d(_x(1, 1, 4, 4, 4), 2), TypeError, r"avg_pool3d: input must be a Tensor"),
    (lambda: F.adaptive_avg_pool3d(td.tensor(_x(1, 1, 4, 4, 4)), (2, 2)), ValueError, r"output_size must be an int"),
    (lambda: F.adaptive_max_pool3d(td.tensor(_x(1, 1, 4, 4, 4)), 0), ValueError, r"output_size must be positive"),
    (lambda: F.adaptive_avg_pool3d(td.tensor(np.ones((1, 1, 2, 2, 2), np.int64)), 1), RuntimeError,
     r"adaptive_avg_pool3d: not implemented for int64"),
    (lambda: F.max_unpool3d(td.tensor(_x(1, 1, 2, 2, 2)), td.tensor(np.full((1, 1, 2, 2, 2), 64)), 2),
     RuntimeError, r"max_unpool3d: found an invalid max index 64 \(output volumes are of size 4x4x4\)"),
    (lambda: F.max_unpool3d(td.tensor(_x(1, 1, 2, 2, 2)), td.tensor(np.zeros((1, 1, 2, 2, 2), np.int64)), 2,
                            output_size=(6, 4, 4)), ValueError, r"max_unpool3d: invalid output_size"),
    (lambda: F.max_unpool3d(td.tensor(_x(1, 1, 2, 2, 2)), td.tensor(np.zeros((1, 1, 2, 2, 1), np.int64)), 2),
     RuntimeError, r"max_unpool3d: expected indices of the input's shape"),
    (lambda: F.max_unpool3d(td.tensor(_x(1, 1, 2, 2, 2)), td.tensor(_x(1, 1, 2, 2, 2)), 2),
     RuntimeError, r"max_unpool3d: expected integer indices"),
    (lambda: F.max_unpool3d(td.tensor(_x(1, 1, 1, 2, 2)), td.tensor(np.zeros((1, 1, 1, 2, 2), np.int64)), 1, 1, 1),
     RuntimeError, r"max_unpool3d: .* gives an empty output \(-1, 0, 0\)"),
    (lambda: F.max_unpool3d(td.tensor(_x(1, 1, 2, 2, 2)), td.tensor(np.zeros((1, 1, 2, 2, 2), np.int64)), 2,
                            output_size=(4, 4)), ValueError, r"max_unpool3d: output_size must have 3 or 5 elements"),
    (lambda: F.max_unpool3d(td.tensor(_x(2, 2, 2)), td.tensor(np.zeros((2, 2, 2), np.int64)), 2),
     RuntimeError, r"max_unpool3d: expected a 4-D \(C, D, H, W\) or 5-D"),
    (lambda: nn.Conv3d(3, 4, 3, groups=2), ValueError, r"in_channels \(3\) must be divisible by groups"),
    (lambda: nn.Conv3d(2, 4, 3, padding_mode="mirror"), ValueError, r"padding_mode must be one of"),
    (lambda: nn.ConvTranspose3d(2, 4, 3, padding_mode="reflect"), ValueError, r"Only \"zeros\" padding mode"),
    (lambda: nn.Conv3d(2, 4, 3)(td.tensor(_x(2, 4, 4))), RuntimeError, r"Conv3d\(.*expected a 4-D \(unbatched\)"),
    (lambda: nn.Conv3d(2, 4, 3)(td.tensor(_x(1, 3, 4, 4, 4))), RuntimeError, r"expected input with 2 channels"),
    (lambda: nn.ConvTranspose3d(2, 4, 3, stride=2)(td.tensor(_x(1, 2, 3, 3, 3)), (9, 9, 9)), ValueError,
     r"valid sizes range from 7 to 8"),
    (lambda: nn.MaxPool3d(2)(td.tensor(_x(4, 4, 4))), RuntimeError, r"MaxPool3d\(.*expected a 4-D \(unbatched\)"),
    (lambda: nn.ConstantPad3d((1, 2), 0.0), ValueError, r"ConstantPad3d: padding must be an int or a tuple of 6"),
    (lambda: nn.ReflectionPad3d(3)(td.tensor(_x(1, 1, 3, 3, 3))), RuntimeError, r"reflect padding .* must be less"),
])
def test_bad_input_gets_a_clear_error(call, error, match):
    with pytest.raises(error, match=match):
        call()


# ---------------------------------------------------------------- a small 3-D CNN
class _Net:
    """Conv3d -> ReLU -> MaxPool3d -> Conv3d (replicate padding, groups) -> ReLU ->
    ConvTranspose3d -> AvgPool3d -> AdaptiveMaxPool3d -> flatten -> Linear, in both libraries."""

    @staticmethod
    def build(lib):
        n = lib.nn
        return n.Sequential(
            n.Conv3d(2, 4, 3, padding=1), n.ReLU(), n.MaxPool3d(2, ceil_mode=True),
            n.Conv3d(4, 6, (2, 3, 3), padding=(1, 1, 1), padding_mode="replicate", groups=2), n.ReLU(),
            n.ConvTranspose3d(6, 4, 2, stride=2, output_padding=1, dilation=2), n.AvgPool3d(2, padding=1),
            n.AdaptiveMaxPool3d((2, 2, 1)), n.Flatten(), n.Linear(16, 3))


def test_small_3d_cnn_training_step_matches_torch():
    torch.manual_seed(0)
    theirs = _Net.build(torch)
    ours = _Net.build(td)
    ours.load_state_dict(theirs.state_dict())
    x = _x(3, 2, 5, 6, 7, seed=3)
    upstream = np.random.default_rng(4).standard_normal((3, 3)).astype(np.float32)
    opt = td.optim.SGD(ours.parameters(), lr=0.1, momentum=0.9)
    opt_t = torch.optim.SGD(theirs.parameters(), lr=0.1, momentum=0.9)
    for step in range(2):
        xo, xt = td.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        yo, yt = ours(xo), theirs(xt)
        np.testing.assert_allclose(_np(yo), _np(yt), atol=1e-5, rtol=1e-4, err_msg=f"step {step}")
        opt.zero_grad()
        opt_t.zero_grad()
        yo.backward(td.tensor(upstream))
        yt.backward(torch.tensor(upstream))
        np.testing.assert_allclose(_np(xo.grad), _np(xt.grad), atol=1e-5, rtol=1e-4)
        params_t = dict(theirs.named_parameters())
        for name, p in ours.named_parameters():
            np.testing.assert_allclose(_np(p.grad), _np(params_t[name].grad), atol=1e-5, rtol=1e-4, err_msg=name)
        opt.step()
        opt_t.step()
    for (name, a), (_, b) in zip(ours.state_dict().items(), theirs.state_dict().items()):
        np.testing.assert_allclose(_np(a), _np(b), atol=1e-5, rtol=1e-4, err_msg=name)


# ---------------------------------------------------------------- second derivatives
def test_gradient_penalty_through_a_conv3d_layer_matches_torch():
    """create_graph through Conv3d (composite), MaxPool3d and AvgPool3d: d/dW of |dL/dx|^2."""
    torch.manual_seed(1)
    layers = lambda lib: lib.nn.Sequential(lib.nn.Conv3d(2, 3, 2, padding=1), lib.nn.Tanh(),   # noqa: E731
                                           lib.nn.MaxPool3d(2), lib.nn.AvgPool3d(2, 1, 1))
    theirs, ours = layers(torch), layers(td)
    ours.load_state_dict(theirs.state_dict())
    x = _x(1, 2, 3, 4, 3).astype(np.float64)
    theirs.double()
    ours.to(td.float64)
    results = []
    rng = np.random.default_rng(6)
    up, up2 = rng.standard_normal(ours(td.tensor(x)).shape), rng.standard_normal(x.shape)
    for lib, net in ((td, ours), (torch, theirs)):
        xs = lib.tensor(x, requires_grad=True)
        g, = lib.autograd.grad(net(xs), xs, lib.tensor(up), create_graph=True)     # random upstream gradients
        (g * g).backward(lib.tensor(up2))
        results.append([_np(p.grad) for p in net.parameters()])
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, atol=1e-10, rtol=1e-7)


def test_empty_batch_runs_forward_and_backward_as_torch():
    x = np.zeros((0, 2, 4, 4, 4), np.float32)
    w, wt = _x(3, 2, 2, 2, 2), _x(2, 3, 2, 2, 2)
    for name, args in (("conv3d", (w,)), ("conv_transpose3d", (wt,)), ("max_pool3d", (2,)), ("avg_pool3d", (3, 2, 1)),
                       ("adaptive_avg_pool3d", (3,)), ("adaptive_max_pool3d", (3,))):
        xo = td.tensor(x, requires_grad=True)
        y = getattr(F, name)(xo, *[td.tensor(a) if isinstance(a, np.ndarray) else a for a in args])
        y_t = getattr(torch.nn.functional, name)(torch.tensor(x), *[torch.tensor(a) if isinstance(a, np.ndarray)
                                                                      else a for a in args])
        assert y.shape == tuple(y_t.shape), name
        y.backward(td.tensor(np.random.default_rng(5).standard_normal(y.shape).astype(_np(y).dtype)))
        assert xo.grad.shape == x.shape, name


# ---------------------------------------------------------------- col2vol and the device tables
def _col2vol_by_index(cols, geometry):
    """col2vol's former route, kept as the oracle: the flat padded cell of every column entry
    in an index array, np.add.at into the padded volumes, then the crop."""
    size, pads, kernel, stride, dilation, out = geometry
    n, c = cols.shape[:2]
    padded = tuple(s + b + a for s, (b, a) in zip(size, pads))
    coords = [np.arange(k)[:, None] * d + np.arange(o)[None, :] * s             # (k, o) per axis
              for k, s, d, o in zip(kernel, stride, dilation, out)]
    spread = np.broadcast_arrays(coords[0][:, None, None, :, None, None], coords[1][None, :, None, None, :, None],
                                 coords[2][None, None, :, None, None, :])
    cells = np.ravel_multi_index(spread, padded).reshape(math.prod(kernel), math.prod(out))
    target = np.zeros((n * c, math.prod(padded)), cols.dtype)
    np.add.at(target, (np.arange(n * c)[:, None, None], cells[None]), cols.reshape(n * c, *cells.shape))
    crop = tuple(slice(b, b + s) for s, (b, _) in zip(size, pads))
    return target.reshape((n, c) + padded)[(slice(None), slice(None)) + crop]


def _geometry(size, pads, kernel, stride, dilation):
    """A conv/pool geometry: the windows that fit the padded volume."""
    out = tuple((n + b + a - d * (k - 1) - 1) // s + 1
                for n, (b, a), k, s, d in zip(size, pads, kernel, stride, dilation))
    return size, pads, kernel, stride, dilation, out


@pytest.mark.parametrize("geometry", [
    _geometry((5, 6, 4), ((1, 1), (0, 0), (2, 2)), (3, 2, 3), (1, 2, 1), (2, 1, 1)),   # padding, dilation
    _geometry((7, 8, 9), ((0, 0),) * 3, (2, 1, 2), (3, 4, 3), (1, 1, 1)),              # stride > kernel
    _geometry((9, 7, 8), ((1, 1), (0, 0), (1, 1)), (2, 2, 3), (3, 4, 5), (2, 3, 1)),   # stride > kernel, dilated
    _geometry((6, 5, 7), ((1, 2), (1, 1), (0, 2)), (3, 3, 2), (2, 2, 2), (1, 1, 2)),   # ceil_mode's overhang
    ((6, 9, 5), ((1, 0), (0, 0), (1, 1)), (2, 3, 2), (2, 3, 2), (1, 1, 2), (3, 3, 2)),  # conv_transpose: output
])                                                                                      # padding no window reaches
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_col2vol_equals_the_former_index_route(geometry, dtype):
    """The strided-slice col2vol gives the index scatter-add's sums bit for bit (each cell's
    terms in the same tap order), also on a broadcast cols (avg_pool3d's backward), and
    is vol2col's adjoint; conv3d's input gradient is col2vol of W^T gy."""
    from tinydl.ops.volumetric import _col2vol, _vol2col
    size, _, kernel, _, _, out = geometry
    rng = np.random.default_rng(0)
    cols = rng.standard_normal((2, 3, math.prod(kernel), math.prod(out))).astype(dtype)
    got = _col2vol(cols, geometry)
    assert got.shape == (2, 3) + size and got.dtype == dtype and got.flags.c_contiguous
    np.testing.assert_array_equal(got, _col2vol_by_index(cols, geometry))
    row = np.broadcast_to(cols[:, :, :1], cols.shape)
    np.testing.assert_array_equal(_col2vol(row, geometry), _col2vol_by_index(np.ascontiguousarray(row), geometry))
    x = rng.standard_normal((2, 3) + size)
    c64 = cols.astype(np.float64)
    assert np.isclose((_vol2col(x, geometry) * c64).sum(), (x * _col2vol(c64, geometry)).sum(), rtol=1e-12)
    if geometry[1] == tuple((b, b) for b, _ in geometry[1]):       # symmetric padding: a conv3d's geometry
        w = rng.standard_normal((4, 3) + kernel).astype(dtype)
        xo = td.tensor(x.astype(dtype), requires_grad=True)
        y = F.conv3d(xo, td.tensor(w), stride=geometry[3], padding=tuple(b for b, _ in geometry[1]),
                     dilation=geometry[4])
        gy = rng.standard_normal(y.shape).astype(dtype)
        y.backward(td.tensor(gy))
        dcols = np.matmul(w.reshape(4, -1).T, gy.reshape(2, 4, -1))                 # (N, C*K3, L)
        np.testing.assert_array_equal(_np(xo.grad), _col2vol_by_index(dcols.reshape(cols.shape), geometry))


def test_col2vol_peak_memory_is_a_padded_volume():
    """No (N*C, K3, L) index array any more: on a 1 MB volume (kernel 3, padding 1) col2vol
    needs its padded volume and its output beside the 27 MB cols, not ~56 MB more."""
    import tracemalloc
    from tinydl.ops.volumetric import _col2vol
    geometry = _geometry((16,) * 3, ((1, 1),) * 3, (3,) * 3, (1,) * 3, (1,) * 3)
    cols = np.ones((4, 16, 27, 16 ** 3), np.float32)
    tracemalloc.start()
    try:
        _col2vol(cols, geometry)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * 2 ** 20, peak


@pytest.mark.gpu
def test_a_second_call_of_a_geometry_copies_no_table_to_the_gpu(monkeypatch):
    """The window tables, divisors, bin matrices and cells are copied to the GPU once per
    geometry (kernels.pool._table_on): a repeated step uploads nothing. Under the NumPy
    stand-in for CuPy, no step asks a device array for a host bool either (a sync)."""
    import cupy
    import tinydl.kernels.pool as kernels_pool
    monkeypatch.setattr(kernels_pool, "_DEVICE_TABLES", {})
    uploads = []
    upload = cupy.asarray

    def counted(a, *args, **kwargs):
        if isinstance(a, np.ndarray) and not isinstance(a, cupy.ndarray):
            uploads.append(a.shape)
        return upload(a, *args, **kwargs)

    monkeypatch.setattr(cupy, "asarray", counted)
    x = td.tensor(_x(2, 2, 1, 6, 5), device="cuda", requires_grad=True)
    w = td.tensor(_x(3, 2, 1, 2, 3), device="cuda", requires_grad=True)

    def step():
        x.grad = w.grad = None
        outs = [F.conv3d(x, w, padding=(0, 1, 1)), F.conv_transpose3d(x, w.transpose(0, 1), stride=2),
                F.max_pool3d(x, (2, 1, 1), (2, 1, 1), (1, 0, 0), (3, 1, 1), ceil_mode=True),   # an empty window
                F.avg_pool3d(x, (1, 3, 2), 2, (0, 1, 1), ceil_mode=True, count_include_pad=False),
                F.adaptive_avg_pool3d(x, (1, 4, 3)), F.adaptive_max_pool3d(x, (1, 4, 3))]
        sum(y.sum() for y in outs).backward()

    step()
    assert uploads, "the first step copies its tables: the count must see it"
    uploads.clear()
    if cupy.__version__.endswith("standin"):
        def no_sync(self):
            raise AssertionError("a host decision on device data (a sync)")
        monkeypatch.setattr(cupy.ndarray, "__bool__", no_sync)
    step()
    assert uploads == []
