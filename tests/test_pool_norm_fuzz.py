"""Pooling and batch norm on calls hypothesis draws, against PyTorch, on the Numba kernels and
on the NumPy reference (``td.backends.reference()``).

Max and average pooling: kernels 1-4 per axis, strides 1-4, padding up to half the
kernel, dilation 1-3 (max), ceil_mode, count_include_pad and divisor_override (average),
windows that hang past the input, batches of 0-3 images, unbatched inputs, a
non-contiguous input; adaptive pooling to any output size up to twice the input, None
keeping an axis. Batch norm: 2-D to 5-D inputs, training (batch statistics, running ones
updated with a momentum or cumulatively) and evaluation, no affine parameters, only some
of the gradients wanted. Max-type inputs are tie-free (a permutation), so the indices and
gradients have one answer. y, the indices, every wanted gradient and the running
statistics must be PyTorch's, with a random upstream gradient, in float64 and float32.

CI runs a fixed, derandomized set of draws; ``TINYDL_FUZZ_PROFILE=long`` runs many more
random ones::

    TINYDL_FUZZ_PROFILE=long python -m pytest -q tests/test_pool_norm_fuzz.py
"""

import numpy as np
import pytest
import torch

import tinydl as td
import tinydl.nn.functional as F

pytest.importorskip("hypothesis")
from hypothesis import given, strategies as st  # noqa: E402
from _fuzz import FUZZ  # noqa: E402

KERNELS = ["numba", "reference"]


def _tolerance(dtype):
    return dict(rtol=1e-10, atol=1e-10) if dtype == np.float64 else dict(rtol=1e-5, atol=1e-5)


def _input(draw, shape, dtype, tie_free, scale=1.0, offset=0.0):
    """x of ``shape`` (maybe a strided view) with values from a seeded generator, times
    ``scale`` plus ``offset``; a tie-free x is a permutation, scaled into (-0.5, 0.5)."""
    rng = np.random.default_rng(list(shape))
    strided = draw(st.booleans()) and len(shape) >= 2
    full = shape[:-1] + (2 * shape[-1],) if strided else shape
    if tie_free:
        x = (rng.permutation(int(np.prod(full))).reshape(full) / max(np.prod(full), 1) - 0.5).astype(dtype)
    else:
        x = (rng.standard_normal(full) * scale + offset).astype(dtype)
    return x[..., ::2] if strided else x, rng


def _compare(kernels, ours_fn, theirs_fn, x, upstream_of, dtype, n_outputs=1):
    """Runs both with x requiring grad, backprops a random upstream gradient through the
    first output, compares every output and dL/dx."""
    xt, xtorch = td.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    with td.backends.reference(kernels == "reference"):
        ours = ours_fn(xt)
        ours = ours if isinstance(ours, tuple) else (ours,)
        upstream = upstream_of(ours[0].shape)
        ours[0].backward(td.tensor(upstream))
    theirs = theirs_fn(xtorch)
    theirs = theirs if isinstance(theirs, tuple) else (theirs,)
    theirs[0].backward(torch.tensor(upstream))
    tol = _tolerance(dtype)
    for a, b in zip(ours, theirs):
        assert tuple(a.shape) == tuple(b.shape)
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), **tol)
    assert xt.grad.dtype == dtype
    np.testing.assert_allclose(xt.grad.numpy(), xtorch.grad.numpy(), **tol)


@st.composite
def pool_calls(draw, kind):
    """(x shape, kwargs) of a max_pool2d (kind 'max') or avg_pool2d ('avg') call PyTorch accepts."""
    while True:
        kernel = tuple(draw(st.integers(1, 4)) for _ in range(2))
        stride = tuple(draw(st.integers(1, 4)) for _ in range(2))
        padding = tuple(draw(st.integers(0, k // 2)) for k in kernel)
        dilation = tuple(draw(st.integers(1, 3)) for _ in range(2)) if kind == "max" else (1, 1)
        hw = tuple(draw(st.integers(1, 9)) for _ in range(2))
        ceil_mode = draw(st.booleans())
        sizes = []
        for n, k, s, p, d in zip(hw, kernel, stride, padding, dilation):
            span = n + 2 * p - d * (k - 1) - 1
            out = (-(-span // s) if ceil_mode else span // s) + 1
            if ceil_mode and (out - 1) * s >= n + p:     # PyTorch: the last window starts inside
                out -= 1
            sizes.append(out)
        if min(sizes) >= 1 and span >= 0:
            break
    batch = draw(st.sampled_from([(1,), (2,), (3,), (), (0,)]))            # () : unbatched (C, H, W)
    kwargs = dict(kernel_size=kernel, stride=stride, padding=padding, ceil_mode=ceil_mode)
    if kind == "max":
        kwargs["dilation"] = dilation
    else:
        kwargs["count_include_pad"] = not draw(st.booleans())
        kwargs["divisor_override"] = draw(st.sampled_from([None, None, 3]))
    return batch + (draw(st.integers(1, 3)),) + hw, kwargs


@pytest.mark.parametrize("kernels", KERNELS)
@FUZZ
@given(data=st.data(), dtype=st.sampled_from([np.float64, np.float32]))
def test_max_pool2d_with_indices_matches_torch(kernels, data, dtype):
    """Dilated windows that step over a narrow image read no pixel: y is -inf in both, and
    such a window passes no gradient in tinydl (PyTorch adds it at its index, another
    pixel's or plane's), so the upstream gradient is zero there (kernels.empty_windows)."""
    shape, kwargs = data.draw(pool_calls("max"))
    x, rng = _input(data.draw, shape, dtype, tie_free=True)
    with torch.no_grad():
        y = torch.nn.functional.max_pool2d(torch.tensor(x), **kwargs).numpy()

    def upstream(s):
        return np.where(y == -np.inf, 0, rng.standard_normal(s)).astype(dtype)

    _compare(kernels, lambda t: F.max_pool2d(t, return_indices=True, **kwargs),
             lambda t: torch.nn.functional.max_pool2d(t, return_indices=True, **kwargs), x, upstream, dtype)


@pytest.mark.parametrize("kernels", KERNELS)
@FUZZ
@given(data=st.data(), dtype=st.sampled_from([np.float64, np.float32]))
def test_avg_pool2d_matches_torch(kernels, data, dtype):
    shape, kwargs = data.draw(pool_calls("avg"))
    x, rng = _input(data.draw, shape, dtype, tie_free=False)
    _compare(kernels, lambda t: F.avg_pool2d(t, **kwargs), lambda t: torch.nn.functional.avg_pool2d(t, **kwargs),
             x, lambda s: rng.standard_normal(s).astype(dtype), dtype)


@pytest.mark.parametrize("kind", ["avg", "max"])
@pytest.mark.parametrize("kernels", KERNELS)
@FUZZ
@given(data=st.data(), dtype=st.sampled_from([np.float64, np.float32]))
def test_adaptive_pool2d_matches_torch(kind, kernels, data, dtype):
    hw = tuple(data.draw(st.integers(1, 9)) for _ in range(2))
    out = tuple(data.draw(st.sampled_from([None, 1, 2, 3, n, 2 * n])) for n in hw)
    shape = data.draw(st.sampled_from([(1,), (2,), ()])) + (data.draw(st.integers(1, 3)),) + hw
    x, rng = _input(data.draw, shape, dtype, tie_free=kind == "max")
    ours = F.adaptive_avg_pool2d if kind == "avg" else (lambda t, o: F.adaptive_max_pool2d(t, o, True))
    theirs = (torch.nn.functional.adaptive_avg_pool2d if kind == "avg"
              else (lambda t, o: torch.nn.functional.adaptive_max_pool2d(t, o, True)))
    _compare(kernels, lambda t: ours(t, out), lambda t: theirs(t, out), x,
             lambda s: rng.standard_normal(s).astype(dtype), dtype)


def _batch_norm_run(lib, name, x, upstream, params, kwargs, training, needs_w, relu=False, residual=None):
    """y, dL/dx, dL/dgamma, dL/dbeta and the buffers after one call of a fresh layer of
    ``lib`` (td or torch) in x's dtype, set to ``params`` (gamma, beta, running mean, var);
    with ``relu``, y = relu(bn(x) + residual) (tinydl's relu=True layer, PyTorch's three ops)
    and dL/dresidual last."""
    dtype = x.dtype if lib is td else {np.dtype(np.float64): torch.float64, np.dtype(np.float32): torch.float32}[x.dtype]
    layer = getattr(lib.nn, name)(x.shape[1], dtype=dtype, **kwargs, **({"relu": True} if relu and lib is td else {}))
    with lib.no_grad():
        for tensor, value in zip((layer.weight, layer.bias, layer.running_mean, layer.running_var), params):
            if tensor is not None:
                tensor.copy_(lib.tensor(value.astype(x.dtype)))
    if layer.weight is not None:
        layer.weight.requires_grad_(needs_w)
    layer.train(training)
    xt = lib.tensor(x, requires_grad=True)
    rt = None if residual is None else lib.tensor(residual.astype(x.dtype), requires_grad=True)
    if not relu:
        y = layer(xt)
    elif lib is td:
        y = layer(xt, rt)
    else:
        y = torch.relu(layer(xt) if rt is None else layer(xt) + rt)
    y.backward(lib.tensor(upstream.astype(x.dtype)))
    grads = [None if t is None or t.grad is None else t.grad.numpy() for t in (layer.weight, layer.bias)]
    return [y.detach().numpy(), xt.grad.numpy()] + grads + [
        layer.running_mean.numpy(), layer.running_var.numpy(), layer.num_batches_tracked.numpy()] + (
        [] if rt is None else [rt.grad.numpy()])


@pytest.mark.parametrize("kernels", ["fused", "numba", "reference"])     # batch norm's routes
@FUZZ
@given(data=st.data(), dtype=st.sampled_from([np.float64, np.float32]))
def test_batch_norm_matches_torch(kernels, data, dtype):
    """In float64 tinydl's results must be PyTorch's to 1e-10. In float32 both are compared
    with the float64 ones, each error measured against the size of the terms the result
    sums (``_batch_norm_scales``), and tinydl's may be at most twice PyTorch's or 1e-6.
    (Inputs of 50 +- 1 with three values per channel: y erred by 2.9e-5 of its size when
    the mean was rounded to float32 before x - mean, PyTorch's by 4.5e-6; kernels/norm.py.)"""
    training = not data.draw(st.booleans())
    spatial = tuple(data.draw(st.integers(1, 5)) for _ in range(data.draw(st.integers(0, 3))))
    n = data.draw(st.integers(1, 4) if training else st.integers(0, 3))
    if training and n * int(np.prod(spatial)) == 1:        # one value per channel: both refuse
        n = 2
    c = data.draw(st.integers(1, 5))
    scale, offset = data.draw(st.sampled_from([1.0, 1e3])), data.draw(st.sampled_from([0.0, 50.0]))
    x, rng = _input(data.draw, (n, c) + spatial, dtype, tie_free=False, scale=scale, offset=offset)
    affine, needs_w = not data.draw(st.booleans()), not data.draw(st.booleans())
    kwargs = dict(eps=data.draw(st.sampled_from([1e-5, 1e-3])), momentum=data.draw(st.sampled_from([0.1, None, 0.5])),
                  affine=affine)
    params = (rng.standard_normal(c), rng.standard_normal(c), rng.standard_normal(c), rng.uniform(0.5, 2, c))
    upstream = rng.standard_normal(x.shape)
    relu = data.draw(st.booleans())                 # a relu=True layer: relu(bn(x) [+ residual])
    residual = rng.standard_normal(x.shape) if relu and data.draw(st.booleans()) else None
    name = {0: "BatchNorm1d", 1: "BatchNorm1d", 2: "BatchNorm2d", 3: "BatchNorm3d"}[len(spatial)]
    run = (name, upstream, params, kwargs, training, needs_w, relu, residual)
    with td.backends.reference(kernels == "reference"), td.backends.route(batch_norm="numba" if kernels == "numba"
                                                                           else "fused"):
        ours = _batch_norm_run(td, name, x, *run[1:])
    theirs = _batch_norm_run(torch, name, x, *run[1:])
    exact = _batch_norm_run(torch, name, x.astype(np.float64), *run[1:])
    labels = ("y", "dL/dx", "dL/dgamma", "dL/dbeta", "running_mean", "running_var", "num_batches_tracked",
              "dL/dresidual")
    scales = _batch_norm_scales(x.astype(np.float64), upstream, params, kwargs, training, exact, residual)
    scales.append(max(np.abs(upstream).max(initial=0), 1e-30))         # dL/dresidual: g, masked
    for label, a, t, e, size in zip(labels, ours, theirs, exact, scales):
        assert (a is None) == (t is None), label
        if a is None:
            continue
        assert a.shape == t.shape and a.dtype == t.dtype, label
        if dtype == np.float64:
            np.testing.assert_allclose(a, t, rtol=1e-10, atol=1e-10 * size, err_msg=label)
            continue
        ours_err, torch_err = np.abs(a - e).max(initial=0) / size, np.abs(t - e).max(initial=0) / size
        assert ours_err <= max(2 * torch_err, 1e-6), f"{label}: error {ours_err:.2e}, PyTorch's {torch_err:.2e}"


def _batch_norm_scales(x, g, params, kwargs, training, exact, residual=None):
    """The size of the terms each result sums (float64), by which its error is measured: a
    result near zero (dL/dx with two values per channel, a sum of gradients that cancel,
    y = gamma x_hat + beta + r where the terms cancel: after a ReLU only such y may be left)
    is a difference of terms this large, and carries their rounding."""
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    var = x.var(axis=axes) if training else params[3]
    mean = x.mean(axis=axes) if training else params[2]
    inv_std = 1 / np.sqrt(var + kwargs["eps"])
    gamma = np.abs(params[0]) if kwargs["affine"] else 1.0
    beta = np.abs(params[1]).reshape(shape) if kwargs["affine"] else 0.0
    x_hat = (x - mean.reshape(shape)) * inv_std.reshape(shape)
    y_terms = np.abs(x_hat) * np.reshape(gamma, (1, -1) + (1,) * (x.ndim - 2) if kwargs["affine"] else ()) + beta
    if residual is not None:
        y_terms = y_terms + np.abs(residual)
    big = [y_terms.max(initial=0),                                       # y
           np.abs(g).max(initial=0) * (gamma * inv_std).max(),            # dL/dx
           np.abs(g * x_hat).sum(axis=axes).max(initial=0),              # dL/dgamma
           np.abs(g).sum(axis=axes).max(initial=0)]                      # dL/dbeta
    big += [np.abs(e).max(initial=0) for e in exact[4:]]                  # the buffers
    return [max(b, 1e-30) for b in big]


@pytest.mark.parametrize("kernels", KERNELS)
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 1, 2, 1), (1, 2, 3, 1)])
def test_max_pool2d_window_that_reads_no_pixel(kernels, shape):
    """Kernel 2, dilation 2 and padding 1 on a 1-pixel-wide image: the window reads
    positions -1 and 1 of each row, neither in the image. y is -inf and the index is 1,
    as in PyTorch (whose index is the first tap past the left padding, here outside the
    row); no gradient reaches x (PyTorch's backward adds it at that index, in the next row
    or plane). The Numba kernel used to read past the plane for it."""
    x = np.random.default_rng(0).standard_normal(shape)
    kwargs = dict(kernel_size=(1, 2), stride=1, padding=(0, 1), dilation=(1, 2))
    y_t, index_t = torch.nn.functional.max_pool2d(torch.tensor(x), return_indices=True, **kwargs)
    with td.backends.reference(kernels == "reference"):
        xt = td.tensor(x, requires_grad=True)
        y, index = F.max_pool2d(xt, return_indices=True, **kwargs)
        y.backward(td.tensor(np.ones(y.shape)))
        x2 = td.tensor(x, requires_grad=True)
        y2 = F.max_pool2d(x2, **kwargs)
        g, = td.autograd.grad(y2, [x2], td.tensor(np.ones(y2.shape)), create_graph=True)
    assert np.all(y.detach().numpy() == -np.inf) and np.array_equal(y.detach().numpy(), y_t.numpy())
    np.testing.assert_array_equal(index.numpy(), index_t.numpy())
    np.testing.assert_array_equal(xt.grad.numpy(), np.zeros(shape))
    np.testing.assert_array_equal(g.detach().numpy(), np.zeros(shape))


@pytest.mark.gpu
def test_max_pool2d_window_that_reads_no_pixel_on_cuda():
    """The CUDA kernel gives the CPU's answer for windows that read no pixel (see above):
    y = -inf, PyTorch's index, no gradient."""
    x = np.random.default_rng(0).standard_normal((2, 2, 3, 1))
    kwargs = dict(kernel_size=(1, 2), stride=1, padding=(0, 1), dilation=(1, 2))
    results = []
    for device in ("cpu", "cuda"):
        xt = td.tensor(x, requires_grad=True, device=device)
        y, index = F.max_pool2d(xt, return_indices=True, **kwargs)
        y.backward(td.ones(y.shape, dtype=y.dtype, device=device))
        results.append([a.cpu().detach().numpy() for a in (y, index, xt.grad)])
    for cpu, cuda in zip(*results):
        np.testing.assert_array_equal(cuda, cpu)
