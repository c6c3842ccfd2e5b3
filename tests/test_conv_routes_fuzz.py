"""Every route of conv2d and conv_transpose2d, forced, on calls hypothesis draws, against PyTorch.

The op table runs each route on its fixed rows; the route tests run the layers each route
was written for. Here hypothesis draws the rest: kernels 1-5 per axis, strides 1-3,
dilation 1-2, padding up to the kernel's reach (or 'same'; output padding for the
transposed convolution), groups 1-3, 1-4 channels per group, batches of 0-3 images (one
chunk each, or one chunk), inputs down to one pixel past the kernel, a non-contiguous
input, no bias, and only some of the gradients wanted. Three draws in four stay where the
forced route applies. For each draw, y and every wanted gradient must be PyTorch's, with a
random upstream gradient, in float64 and float32; a conv2d route must run exactly where
its ``applies`` says, a conv_transpose2d route wherever the draw stayed in its domain.
F.unfold and F.fold (im2col and col2im themselves) get the same on the Numba kernels
and on the NumPy reference.

CI runs a fixed, derandomized set of draws; ``TINYDL_FUZZ_PROFILE=long`` (as in
tests/test_op_fuzz.py) runs many more random ones::

    TINYDL_FUZZ_PROFILE=long python -m pytest -q tests/test_conv_routes_fuzz.py
"""
import contextlib

import numpy as np
import pytest
import torch

import tinydl as td
import tinydl.nn.functional as F
from tinydl.kernels.conv import (CONV2D_ROUTES, CONV_TRANSPOSE2D_ROUTES, Chunked, SubpixelTranspose, Winograd,
                                 WinogradTranspose)
from tinydl.ops.conv import _conv2d_arguments

pytest.importorskip("hypothesis")
from hypothesis import given, strategies as st  # noqa: E402
from _fuzz import FUZZ  # noqa: E402

pytestmark = [pytest.mark.filterwarnings("ignore:Using padding=.same. with even kernel:UserWarning"),
              pytest.mark.usefixtures("forced_route_runs")]

# Where each route applies (kernels/conv.py's ``applies``). Hypothesis leans to each
# strategy's simplest value (0, False, a list's first element), so those are the common
# cases here: in the domain, gradients wanted, one image.
DOMAINS = {
    "conv2d": {"pointwise": dict(kernel=1, groups=1),
               "winograd": dict(kernel=3, stride=1, dilation=1, groups=1),
               "winograd_f4": dict(kernel=3, stride=1, dilation=1, groups=1),
               "gy_columns": dict(stride=1, groups=1, needs_x=True)},
    "conv_transpose2d": {"winograd": dict(kernel="2*stride", dilation=1, groups=1),
                         "as_conv2d": dict(stride=1),
                         "subpixel": dict(dilation=1)},
}


@st.composite
def calls(draw, op, route):
    """(x shape, weight shape, keyword arguments, needs, has bias, dtype, x strided, in
    the route's domain) of one call of ``op``: three in four in ``route``'s domain."""
    domain = {} if draw(st.integers(0, 3)) == 3 else DOMAINS[op].get(route, {})

    def pick(name, low, high):
        return domain[name] if name in domain else draw(st.integers(low, high))

    groups = pick("groups", 1, 3)
    c_in, c_out = groups * draw(st.integers(1, 4)), groups * draw(st.integers(1, 4))
    same = op == "conv2d" and draw(st.booleans()) and draw(st.booleans())      # a quarter of conv2d's
    kernel, stride, dilation, padding, out_pad, hw = [], [], [], [], [], []
    for _ in range(2):
        d = pick("dilation", 1, 2)
        s = 1 if same else pick("stride", 1, 3)
        k = 2 * s if domain.get("kernel") == "2*stride" else pick("kernel", 1, 5)
        p = draw(st.integers(0, d * (k - 1)))
        reach = d * (k - 1) + 1
        if op == "conv2d":
            hw.append(draw(st.integers(max(1, reach - 2 * p), reach + 6)))
        else:                                   # output padding below the stride or the dilation
            o = draw(st.integers(0, max(s, d) - 1))
            n = draw(st.integers(1, 7))
            if (n - 1) * s - 2 * p + reach + o < 1:
                p = 0
            hw.append(n), out_pad.append(o)
        kernel.append(k), stride.append(s), dilation.append(d), padding.append(p)
    kwargs = dict(stride=tuple(stride), dilation=tuple(dilation), groups=groups,
                  padding="same" if same else tuple(padding))
    if op == "conv2d":
        w_shape = (c_out, c_in // groups) + tuple(kernel)
    else:
        kwargs["output_padding"] = tuple(out_pad)
        w_shape = (c_in, c_out // groups) + tuple(kernel)
    x_shape = (draw(st.sampled_from([1, 2, 3, 1, 0])), c_in) + tuple(hw)
    needs = tuple(not draw(st.booleans()) for _ in range(3))
    if domain.get("needs_x"):
        needs = (True,) + needs[1:]
    has_bias = not draw(st.booleans())
    return (x_shape, w_shape, kwargs, needs, has_bias, draw(st.sampled_from([np.float64, np.float32])),
            draw(st.booleans()), bool(domain))


@contextlib.contextmanager
def _one_image_per_chunk(enabled):
    """Every image its own chunk (as on big batches): the workers' shares of dL/dW are summed."""
    routes = (Chunked, Winograd, SubpixelTranspose, WinogradTranspose)
    saved = [(r.chunk_bytes, getattr(r, "chunk_tiles", None)) for r in routes]
    if enabled:
        for r in routes:
            r.chunk_bytes = 1
            if hasattr(r, "chunk_tiles"):
                r.chunk_tiles = 0
    try:
        yield
    finally:
        for r, (size, tiles) in zip(routes, saved):
            r.chunk_bytes = size
            if tiles is not None:
                r.chunk_tiles = tiles


def _inputs(x_shape, w_shape, bias_size, dtype, strided, rng):
    if strided:                                   # every other column of a wider array
        x = rng.standard_normal(x_shape[:3] + (2 * x_shape[3],)).astype(dtype)[..., ::2]
    else:
        x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    return x, w, None if bias_size is None else rng.standard_normal(bias_size).astype(dtype)


def _run(lib, functional, op, arrays, needs, kwargs, upstream):
    ts = [None if a is None else lib.tensor(a, requires_grad=need) for a, need in zip(arrays, needs)]
    y = getattr(functional, op)(*ts, **kwargs)
    if y.requires_grad:
        y.backward(lib.tensor(upstream))
    grads = [t.grad if t is not None and t.requires_grad else None for t in ts]
    return y.detach().numpy(), [None if g is None else g.numpy() for g in grads]


def _check(op, route, data):
    """One drawn call of ``op`` with ``route`` forced, against PyTorch; the route that ran."""
    x_shape, w_shape, kwargs, needs, has_bias, dtype, strided, in_domain = data.draw(calls(op, route))
    rng = np.random.default_rng(list(x_shape + w_shape))
    c_out = w_shape[0] if op == "conv2d" else w_shape[1] * kwargs["groups"]
    x, w, b = _inputs(x_shape, w_shape, c_out if has_bias else None, dtype, strided, rng)
    needs = needs if has_bias else needs[:2] + (False,)
    with torch.no_grad():
        out_shape = getattr(torch.nn.functional, op)(torch.tensor(x), torch.tensor(w), **kwargs).shape
    upstream = rng.standard_normal(out_shape).astype(dtype)

    with _one_image_per_chunk(data.draw(st.booleans())), td.backends.route(**{op: route}), \
            td.backends.record_routes() as taken:
        y, grads = _run(td, F, op, (x, w, b), needs, kwargs, upstream)
    y_t, grads_t = _run(torch, torch.nn.functional, op, (x, w, b), needs, kwargs, upstream)

    ran = [name for called, name in taken if called == op]
    assert len(ran) == 1
    tol = dict(rtol=1e-10, atol=1e-10) if dtype == np.float64 else dict(rtol=2e-4, atol=2e-4)
    assert y.dtype == dtype and y.shape == y_t.shape
    np.testing.assert_allclose(y, y_t, **tol, err_msg=f"{route} ({ran[0]}): y")
    for name, g, g_t in zip(("x", "weight", "bias"), grads, grads_t):
        assert (g is None) == (g_t is None), name
        if g is not None:
            assert g.dtype == dtype and g.shape == g_t.shape, name
            np.testing.assert_allclose(g, g_t, **tol, err_msg=f"{route} ({ran[0]}): dL/d{name}")
    return ran[0], x, w_shape, kwargs, needs, in_domain


@pytest.mark.parametrize("route", ["im2col"] + [r.name for r in CONV2D_ROUTES])
@FUZZ
@given(data=st.data())
def test_forced_conv2d_route_matches_torch(route, data):
    ran, x, w_shape, kwargs, needs, _ = _check("conv2d", route, data)
    if route != "im2col":                       # the route ran exactly where it applies
        forced = next(r for r in CONV2D_ROUTES if r.name == route)
        stride, pads, dilation = _conv2d_arguments("conv2d", x.shape, w_shape, None, kwargs["stride"],
                                                   kwargs["padding"], kwargs["dilation"], kwargs["groups"])
        applies = forced.applies(x, w_shape, (w_shape[2:], stride, pads, dilation, kwargs["groups"]), needs)
        assert (ran == route) == bool(applies), f"{route}: ran {ran}, applies() says {applies}"


@pytest.mark.parametrize("route", ["im2col"] + [r.name for r in CONV_TRANSPOSE2D_ROUTES])
@FUZZ
@given(data=st.data())
def test_forced_conv_transpose2d_route_matches_torch(route, data):
    ran, _, _, _, _, in_domain = _check("conv_transpose2d", route, data)
    if in_domain and route != "as_conv2d":      # as_conv2d also asks conv2d's dispatcher
        assert ran == route


@pytest.mark.parametrize("kernels", ["numba", "reference"])
@FUZZ
@given(data=st.data(), dtype=st.sampled_from([np.float64, np.float32]))
def test_unfold_and_fold_match_torch(kernels, data, dtype):
    """F.unfold and F.fold (im2col and col2im themselves, on the Numba kernels and the NumPy
    reference) on drawn geometries: y and dL/d(input), batched or not, strided inputs."""
    kernel, stride, dilation, padding, hw = [], [], [], [], []
    for _ in range(2):
        k, d, s = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
        p = data.draw(st.integers(0, 3))
        reach = d * (k - 1) + 1
        hw.append(data.draw(st.integers(max(1, reach - 2 * p), reach + 5)))
        kernel.append(k), stride.append(s), dilation.append(d), padding.append(p)
    kwargs = dict(kernel_size=tuple(kernel), dilation=tuple(dilation), padding=tuple(padding), stride=tuple(stride))
    batch = data.draw(st.sampled_from([(1,), (2,), (), (0,)]))
    channels = data.draw(st.integers(1, 3))
    rng = np.random.default_rng(list(hw) + kernel)
    x = rng.standard_normal(batch + (channels, hw[0], 2 * hw[1])).astype(dtype)[..., ::2]   # strided
    tol = dict(rtol=1e-10, atol=1e-10) if dtype == np.float64 else dict(rtol=1e-5, atol=1e-5)
    with td.backends.reference(kernels == "reference"):
        for ours, theirs, args in [(F.unfold, torch.nn.functional.unfold, ()),
                                   (F.fold, torch.nn.functional.fold, (tuple(hw),))]:
            if ours is F.fold:       # fold the columns unfold made (overlapping windows add up)
                with torch.no_grad():
                    x = torch.nn.functional.unfold(torch.tensor(x), **kwargs).numpy()
            xt, xtorch = td.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
            y, y_t = ours(xt, *args, **kwargs), theirs(xtorch, *args, **kwargs)
            upstream = rng.standard_normal(tuple(y_t.shape)).astype(dtype)
            y.backward(td.tensor(upstream))
            y_t.backward(torch.tensor(upstream))
            assert y.dtype == dtype and xt.grad.dtype == dtype
            np.testing.assert_allclose(y.detach().numpy(), y_t.detach().numpy(), **tol, err_msg=ours.__name__)
            np.testing.assert_allclose(xt.grad.numpy(), xtorch.grad.numpy(), **tol, err_msg=ours.__name__)
