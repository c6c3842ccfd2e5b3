"""F.grid_sample / F.affine_grid beyond the op table (tests/optable/grid.py): a spatial
transformer end to end, PyTorch's choices at the kinks (pixel centres, half pixels, clip and
fold points) that the op table's random grids avoid, out-of-range and empty grids, dtypes and
the errors."""
import itertools
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import tinydl as td
import tinydl.nn.functional as F

MODES = list(itertools.product(("bilinear", "nearest", "bicubic"), ("zeros", "border", "reflection"),
                               (False, True)))


def _both(x, grid, upstream, fn_td, fn_torch):
    """(ours, torch's) output and input gradients of fn(x, grid) for the upstream gradient."""
    X, G = td.tensor(x, requires_grad=True), td.tensor(grid, requires_grad=True)
    y = fn_td(X, G)
    y.backward(td.tensor(upstream(y.shape)))
    tx, tg = torch.tensor(x, requires_grad=True), torch.tensor(grid, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ty = fn_torch(tx, tg)
    ty.backward(torch.tensor(upstream(tuple(ty.shape))))
    ours = [y.detach().numpy(), X.grad.numpy(), G.grad.numpy()]
    theirs = [ty.detach().numpy(), tx.grad.numpy(), tg.grad.numpy()]
    return ours, theirs


def _upstream(seed):
    return lambda shape: np.random.default_rng(seed).standard_normal(shape)


def _assert_all_close(ours, theirs, **tol):
    for k, (a, b) in enumerate(zip(ours, theirs)):
        assert a.shape == b.shape, f"result {k}: shape {a.shape} vs torch {b.shape}"
        np.testing.assert_allclose(a, b, err_msg=f"result {k} (output, input grad, grid/theta grad)", **tol)


# ---------------------------------------------------------------- a spatial transformer
@pytest.mark.parametrize("mode, padding_mode, align_corners", MODES)
def test_spatial_transformer_matches_torch(mode, padding_mode, align_corners):
    """Warp a batch by affine maps (rotation, scale beyond the borders, shift): the output and
    the gradients of the image and of theta, through affine_grid then grid_sample."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 6, 7))
    angle = np.array([0.3, -1.1])
    scale = np.array([1.4, 0.7])[:, None, None]
    theta = np.concatenate([np.stack([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
                            .transpose(2, 0, 1) * scale, np.array([[[0.2], [-0.35]], [[-0.6], [0.1]]])], axis=2)
    theta += rng.standard_normal(theta.shape) * 1e-3          # off the lattice of pixel centres
    size = (2, 3, 5, 8)

    def ours(x, theta):
        return F.grid_sample(x, F.affine_grid(theta, size, align_corners=align_corners), mode=mode,
                             padding_mode=padding_mode, align_corners=align_corners)

    def theirs(x, theta):
        return TF.grid_sample(x, TF.affine_grid(theta, size, align_corners=align_corners), mode=mode,
                              padding_mode=padding_mode, align_corners=align_corners)
    _assert_all_close(*_both(x, theta, _upstream(1), ours, theirs), rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
@pytest.mark.parametrize("padding_mode", ["zeros", "border", "reflection"])
def test_volume_transformer_matches_torch(mode, padding_mode):
    """5-D: a 3-D affine warp of a volume (trilinear or nearest)."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 2, 3, 4, 5))
    theta = np.eye(3, 4)[None] * 1.2 + rng.standard_normal((2, 3, 4)) * 0.3
    size = (2, 2, 4, 3, 5)

    def ours(x, theta):
        return F.grid_sample(x, F.affine_grid(theta, size, align_corners=False), mode=mode,
                             padding_mode=padding_mode, align_corners=False)

    def theirs(x, theta):
        return TF.grid_sample(x, TF.affine_grid(theta, size, align_corners=False), mode=mode,
                              padding_mode=padding_mode, align_corners=False)
    _assert_all_close(*_both(x, theta, _upstream(3), ours, theirs), rtol=1e-9, atol=1e-11)


def test_transformer_second_derivative_matches_torch():
    """A gradient penalty on the image gradient, differentiated again w.r.t. theta (composite
    double backward of grid_sample, linear one of affine_grid)."""
    rng = np.random.default_rng(4)
    x, theta = rng.standard_normal((1, 2, 4, 5)), np.array([[[0.9, -0.3, 0.1], [0.25, 1.1, -0.2]]])

    def penalty(lib, F_, x, theta):
        grid = F_.affine_grid(theta, (1, 2, 3, 4), align_corners=False)
        y = F_.grid_sample(x, grid, mode="bicubic", padding_mode="reflection", align_corners=False)
        gx, = lib.autograd.grad((y * y).sum(), [x], create_graph=True)
        return (gx * gx).sum()
    X, T = td.tensor(x, requires_grad=True), td.tensor(theta, requires_grad=True)
    penalty(td, F, X, T).backward()
    tx, tt = torch.tensor(x, requires_grad=True), torch.tensor(theta, requires_grad=True)
    penalty(torch, TF, tx, tt).backward()
    np.testing.assert_allclose(T.grad.numpy(), tt.grad.numpy(), rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(X.grad.numpy(), tx.grad.numpy(), rtol=1e-9, atol=1e-11)


def test_nearest_grid_gradient_is_zero_with_create_graph_too():
    """nearest: the grid's gradient is zeros (as torch), also when built as a graph."""
    rng = np.random.default_rng(16)
    x = td.tensor(rng.standard_normal((1, 2, 3, 4)), requires_grad=True)
    grid = td.tensor(rng.uniform(-1.2, 1.2, (1, 2, 3, 2)), requires_grad=True)
    for create_graph in (False, True):
        y = F.grid_sample(x, grid, mode="nearest", align_corners=False)
        gx, gg = td.autograd.grad((y * y).sum(), [x, grid], create_graph=create_graph)
        assert gg.shape == grid.shape and not gg.detach().numpy().any()


# ---------------------------------------------------------------- PyTorch's conventions at the kinks
def _lattice_grid(n, nd, others=(-1.25, 0.1, 0.75, 1.25)):
    """(n, rows, 49, nd): x sweeps the lattice k / 8 from -3 to 3, the other components are fixed per
    row. The lattice holds the pixel centres, half pixels, edges and fold points of every size below."""
    g = np.empty((len(others), 49, nd))
    g[..., 0] = np.arange(-24, 25) / 8
    g[..., 1:] = np.asarray(others)[:, None, None]
    return np.broadcast_to(g, (n,) + g.shape).copy()


@pytest.mark.parametrize("mode, padding_mode, align_corners", MODES)
@pytest.mark.parametrize("hw", [(4, 5), (1, 3), (3, 1), (1, 1), (2, 2)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_lattice_grid_matches_torch_at_the_kinks(mode, padding_mode, align_corners, hw):
    """Coordinates exactly on pixel centres (bilinear, bicubic: the right-hand derivative), on half
    pixels (nearest: half to even), on the clip ends (derivative 0) and on reflection's fold points;
    one-pixel axes. Both the x and the y component sweep the lattice."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 2) + hw)
    g = _lattice_grid(2, 2)
    grid = np.concatenate([g, g[..., ::-1]], axis=1)          # y sweeps too
    kw = dict(mode=mode, padding_mode=padding_mode, align_corners=align_corners)
    got = _both(x, grid, _upstream(6), lambda a, b: F.grid_sample(a, b, **kw),
                lambda a, b: TF.grid_sample(a, b, **kw))
    _assert_all_close(*got, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
@pytest.mark.parametrize("padding_mode, align_corners", [("zeros", False), ("border", True), ("reflection", True),
                                                         ("reflection", False)])
def test_5d_lattice_grid_matches_torch_at_the_kinks(mode, padding_mode, align_corners):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((1, 2, 2, 3, 4))
    g = _lattice_grid(1, 3)[:, None]                          # (1, 1, 4, 49, 3)
    grid = np.concatenate([g, g[..., [1, 0, 2]], g[..., [2, 1, 0]]], axis=1)    # x, y and z sweep
    kw = dict(mode=mode, padding_mode=padding_mode, align_corners=align_corners)
    got = _both(x, grid, _upstream(8), lambda a, b: F.grid_sample(a, b, **kw),
                lambda a, b: TF.grid_sample(a, b, **kw))
    _assert_all_close(*got, rtol=1e-9, atol=1e-12)


def test_nearest_rounds_half_to_even():
    """W = 4, align_corners=False: g = -0.5, 0, 0.5, 1 land on c = 0.5, 1.5, 2.5, 3.5 exactly ->
    pixels 0, 2, 2 and 4 (outside: 0), as C's nearbyint."""
    x = np.arange(1.0, 5.0).reshape(1, 1, 1, 4)
    grid = np.array([[[[-0.5, 0.0], [0.0, 0.0], [0.5, 0.0], [1.0, 0.0]]]])
    y = F.grid_sample(td.tensor(x), td.tensor(grid), mode="nearest", align_corners=False)
    np.testing.assert_array_equal(y.numpy()[0, 0, 0], [1.0, 3.0, 3.0, 0.0])
    np.testing.assert_array_equal(y.numpy(), TF.grid_sample(torch.tensor(x), torch.tensor(grid), mode="nearest",
                                                            align_corners=False).numpy())


@pytest.mark.parametrize("mode, padding_mode, align_corners", MODES)
def test_far_outside_grids_match_torch(mode, padding_mode, align_corners):
    """Grid values far beyond [-1, 1] (reflection folds many times; the int cast must not overflow)."""
    rng = np.random.default_rng(9)
    x = rng.standard_normal((1, 2, 3, 4))
    grid = np.array([[[[1e6 + 0.3, 0.3], [-1e7 - 0.1, 0.2], [0.1, 3e5 + 0.7], [-41.3, 17.9]]]])
    kw = dict(mode=mode, padding_mode=padding_mode, align_corners=align_corners)
    got = _both(x, grid, _upstream(10), lambda a, b: F.grid_sample(a, b, **kw),
                lambda a, b: TF.grid_sample(a, b, **kw))
    _assert_all_close(*got, rtol=1e-7, atol=1e-9)


@pytest.mark.filterwarnings("ignore:invalid value encountered")
@pytest.mark.parametrize("mode", ["bilinear", "nearest", "bicubic"])
def test_nan_and_inf_grid_read_zeros_with_zeros_padding(mode):
    """A non-finite position reads nothing: 0, as PyTorch ('zeros' padding; PyTorch 2.13's CPU
    kernel crashes on a NaN grid with border or reflection padding, so those have no oracle)."""
    x = np.random.default_rng(11).standard_normal((1, 2, 3, 4))
    grid = np.array([[[[np.nan, 0.1], [np.inf, 0.2], [-np.inf, -0.3], [0.2, 0.4]]]])
    got = _both(x, grid, _upstream(12), lambda a, b: F.grid_sample(a, b, mode=mode, align_corners=False),
                lambda a, b: TF.grid_sample(a, b, mode=mode, align_corners=False))
    _assert_all_close(got[0][:2], got[1][:2], rtol=1e-9, atol=1e-12)
    assert not np.isnan(got[0][1]).any()


def test_inf_pixel_outside_is_never_read():
    """A tap outside the input ('zeros') reads 0 whatever pixel 0 holds: no inf * 0 = NaN."""
    x = np.zeros((1, 1, 2, 2))
    x[0, 0, 0, 0] = np.inf
    y = F.grid_sample(td.tensor(x), td.tensor(np.array([[[[0.9, 0.9], [5.0, 5.0]]]])), align_corners=False)
    assert np.isfinite(y.numpy()).all()


# ---------------------------------------------------------------- dtypes, defaults, empty
@pytest.mark.parametrize("mode", ["bilinear", "nearest", "bicubic"])
def test_float32_stays_float32(mode):
    rng = np.random.default_rng(13)
    theta = td.tensor(rng.standard_normal((2, 2, 3)).astype(np.float32), requires_grad=True)
    x = td.tensor(rng.standard_normal((2, 3, 4, 5)).astype(np.float32), requires_grad=True)
    grid = F.affine_grid(theta, (2, 3, 3, 6), align_corners=False)
    assert grid.dtype == np.float32
    y = F.grid_sample(x, grid, mode=mode, padding_mode="reflection", align_corners=False)
    assert y.dtype == np.float32
    y.backward(td.tensor(rng.standard_normal(y.shape).astype(np.float32)))     # (a random upstream gradient)
    assert x.grad.dtype == np.float32 and theta.grad.dtype == np.float32
    t_grid = TF.affine_grid(torch.tensor(theta.detach().numpy()), (2, 3, 3, 6), align_corners=False)
    ty = TF.grid_sample(torch.tensor(x.detach().numpy()), t_grid, mode=mode, padding_mode="reflection",
                        align_corners=False)
    np.testing.assert_allclose(y.detach().numpy(), ty.numpy(), rtol=1e-4, atol=1e-5)


def test_align_corners_none_is_false():
    rng = np.random.default_rng(14)
    theta = td.tensor(rng.standard_normal((1, 2, 3)))
    np.testing.assert_array_equal(F.affine_grid(theta, (1, 1, 3, 4)).numpy(),
                                  F.affine_grid(theta, (1, 1, 3, 4), align_corners=False).numpy())
    x, grid = td.tensor(rng.standard_normal((1, 2, 3, 4))), td.tensor(rng.uniform(-1.2, 1.2, (1, 2, 3, 2)))
    np.testing.assert_array_equal(F.grid_sample(x, grid).numpy(),
                                  F.grid_sample(x, grid, align_corners=False).numpy())


def test_identity_theta_reproduces_the_image():
    """The identity map with output size = input size reads every pixel at its own centre."""
    x = td.tensor(np.random.default_rng(15).standard_normal((2, 3, 5, 6)))
    for ac in (False, True):
        grid = F.affine_grid(td.tensor(np.tile(np.eye(2, 3), (2, 1, 1))), (2, 3, 5, 6), align_corners=ac)
        for mode in ("bilinear", "nearest", "bicubic"):
            np.testing.assert_allclose(F.grid_sample(x, grid, mode=mode, align_corners=ac).numpy(), x.numpy(),
                                       atol=1e-12)


@pytest.mark.parametrize("x_shape, grid_shape", [((0, 2, 3, 4), (0, 2, 2, 2)), ((1, 2, 3, 4), (1, 0, 3, 2)),
                                                 ((2, 0, 3, 4), (2, 2, 2, 2)), ((1, 2, 2, 3, 4), (1, 2, 0, 2, 3))])
def test_empty_batch_channels_or_output(x_shape, grid_shape):
    x = td.tensor(np.ones(x_shape), requires_grad=True)
    grid = td.tensor(np.zeros(grid_shape), requires_grad=True)
    y = F.grid_sample(x, grid, align_corners=False)
    assert y.shape == (x_shape[0], x_shape[1]) + grid_shape[1:-1]
    y.backward(td.tensor(np.ones(y.shape)))       # (empty: any upstream gradient is empty)
    assert x.grad.shape == x_shape and grid.grad.shape == grid_shape
    assert not x.grad.numpy().any() and not grid.grad.numpy().any()


# ---------------------------------------------------------------- errors
def test_grid_sample_errors_name_the_op_and_the_shapes():
    x, grid = td.zeros(2, 3, 4, 5), td.zeros(2, 3, 3, 2)
    with pytest.raises(RuntimeError, match=r"grid_sample: a 4-D input needs a grid with 2 values \(x, y\) in its "
                                           r"last dimension, got grid of shape \(2, 3, 3, 3\)"):
        F.grid_sample(x, td.zeros(2, 3, 3, 3))
    with pytest.raises(RuntimeError, match=r"grid_sample: the input \(shape \(2, 3, 4, 5\)\) and the grid \(shape "
                                           r"\(1, 3, 3, 2\)\) have different batch sizes 2 and 1"):
        F.grid_sample(x, td.zeros(1, 3, 3, 2))
    with pytest.raises(ValueError, match="grid_sample: expected mode to be 'bilinear', 'nearest' or 'bicubic', "
                                         "got 'trilinear'"):
        F.grid_sample(x, grid, mode="trilinear")
    with pytest.raises(ValueError, match="grid_sample: expected padding_mode .* got 'circular'"):
        F.grid_sample(x, grid, padding_mode="circular")
    with pytest.raises(RuntimeError, match=r"grid_sample: bicubic interpolation needs a 4-D input, got input of "
                                           r"shape \(1, 2, 3, 4, 5\)"):
        F.grid_sample(td.zeros(1, 2, 3, 4, 5), td.zeros(1, 2, 2, 2, 3), mode="bicubic")
    with pytest.raises(RuntimeError, match=r"grid_sample: expected a 4-D or 5-D input and a grid with as many "
                                           r"dimensions, got input of shape \(2, 3, 4, 5\) and grid of shape"):
        F.grid_sample(x, td.zeros(2, 3, 3, 2, 2))
    with pytest.raises(RuntimeError, match=r"grid_sample: .* needs a grid with 3 values \(x, y, z\)"):
        F.grid_sample(td.zeros(1, 2, 3, 4, 5), td.zeros(1, 2, 2, 2, 2))
    with pytest.raises(RuntimeError, match="grid_sample: .* same dtype, got input float32 and grid float64"):
        F.grid_sample(x, td.tensor(np.zeros((2, 3, 3, 2))))
    with pytest.raises(RuntimeError, match=r"grid_sample: the input needs non-empty spatial dimensions, got shape "
                                           r"\(2, 3, 0, 5\)"):
        F.grid_sample(td.zeros(2, 3, 0, 5), grid)
    with pytest.raises(TypeError, match="grid_sample: grid must be a Tensor"):
        F.grid_sample(x, np.zeros((2, 3, 3, 2), np.float32))


def test_affine_grid_errors_name_the_op_and_the_shapes():
    with pytest.raises(ValueError, match=r"affine_grid: a size of 4 values \(2, 3, 4, 5\) needs a batch of 2-D "
                                         r"affine matrices of shape \(N, 2, 3\), got theta of shape \(2, 3, 4\)"):
        F.affine_grid(td.zeros(2, 3, 4), (2, 3, 4, 5))
    with pytest.raises(ValueError, match=r"affine_grid: .* 3-D affine matrices of shape \(N, 3, 4\), got theta "
                                         r"of shape \(2, 2, 3\)"):
        F.affine_grid(td.zeros(2, 2, 3), (2, 3, 4, 5, 6))
    with pytest.raises(NotImplementedError, match=r"affine_grid: size must be \(N, C, H, W\) or \(N, C, D, H, W\), "
                                                  r"got \(2, 3, 4\)"):
        F.affine_grid(td.zeros(2, 2, 3), (2, 3, 4))
    with pytest.raises(RuntimeError, match=r"affine_grid: theta \(shape \(2, 2, 3\)\) has 2 matrices but size "
                                           r"\(3, 1, 4, 5\) asks for a batch of 3"):
        F.affine_grid(td.zeros(2, 2, 3), (3, 1, 4, 5))
    with pytest.raises(ValueError, match=r"affine_grid: expected a positive output size, got \(2, 1, 0, 5\)"):
        F.affine_grid(td.zeros(2, 2, 3), (2, 1, 0, 5))
    with pytest.raises(ValueError, match="affine_grid: expected theta to have a floating-point dtype, got int64"):
        F.affine_grid(td.tensor(np.zeros((2, 2, 3), np.int64)), (2, 1, 4, 5))
