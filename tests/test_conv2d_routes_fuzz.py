"""Every conv2d route, forced, on geometries hypothesis draws, against PyTorch.

The op table runs each route on its fixed rows; the route tests run the layers each route
was written for. Here hypothesis draws the rest: kernels 1-5 per axis, strides 1-3,
dilation 1-2, padding up to the kernel's reach or 'same', groups 1-3, 1-4 channels per
group, batches of 0-3 images (one chunk each, or one chunk), inputs down to one pixel past
the kernel, a non-contiguous input, no bias, and only some of the gradients wanted. For each draw and each route, the
route must run where its ``applies`` says it can (and the dispatcher's other choice
elsewhere), and y and every wanted gradient must be PyTorch's, with a random upstream
gradient, in float64 and float32.

CI runs a fixed, derandomized set of draws; ``TINYDL_FUZZ_PROFILE=long`` (as in
tests/test_op_fuzz.py) runs many more random ones::

    TINYDL_FUZZ_PROFILE=long python -m pytest -q tests/test_conv2d_routes_fuzz.py
"""
import contextlib
import os

import numpy as np
import pytest
import torch

import tinydl as td
import tinydl.nn.functional as F
from tinydl.kernels.conv import CONV2D_ROUTES, Chunked, Winograd
from tinydl.ops.conv import _conv2d_arguments

pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

PROFILES = {"ci": settings(max_examples=40, deadline=None, derandomize=True, database=None),
            "long": settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])}
pytestmark = pytest.mark.filterwarnings("ignore:Using padding=.same. with even kernel:UserWarning")
FUZZ = PROFILES[os.environ.get("TINYDL_FUZZ_PROFILE", "ci")]
ROUTES = ["im2col"] + [r.name for r in CONV2D_ROUTES]


# Where each route applies (kernels/conv.py's ``applies``): three draws in four stay there.
# (Hypothesis leans to each strategy's simplest value, 0, False or a list's first element,
# so those are the common cases here: in the domain, gradients wanted, one image.)
DOMAINS = {"pointwise": dict(kernel=1, groups=1),
           "winograd": dict(kernel=3, stride=1, dilation=1, groups=1),
           "gy_columns": dict(stride=1, groups=1, needs_x=True)}


@st.composite
def calls(draw, route):
    """The arguments of one conv2d call: shapes, keyword arguments, what needs a gradient,
    the dtype and whether x is a strided view; mostly where ``route`` applies."""
    domain = {} if draw(st.integers(0, 3)) == 3 else DOMAINS.get(route, {})

    def pick(name, low, high):
        return domain[name] if name in domain else draw(st.integers(low, high))

    groups = pick("groups", 1, 3)
    c_in, c_out = groups * draw(st.integers(1, 4)), groups * draw(st.integers(1, 4))
    same = draw(st.booleans()) and draw(st.booleans())           # a quarter of the draws
    kernel, stride, dilation, padding, hw = [], [], [], [], []
    for _ in range(2):
        k, d = pick("kernel", 1, 5), pick("dilation", 1, 2)
        s = 1 if same else pick("stride", 1, 3)
        p = draw(st.integers(0, d * (k - 1)))
        reach = d * (k - 1) + 1
        hw.append(draw(st.integers(max(1, reach - 2 * p), reach + 6)))
        kernel.append(k), stride.append(s), dilation.append(d), padding.append(p)
    kwargs = dict(stride=tuple(stride), dilation=tuple(dilation), groups=groups,
                  padding="same" if same else tuple(padding))
    x_shape = (draw(st.sampled_from([1, 2, 3, 1, 0])), c_in) + tuple(hw)
    needs = tuple(not draw(st.booleans()) for _ in range(3))
    if domain.get("needs_x"):
        needs = (True,) + needs[1:]
    has_bias = not draw(st.booleans())
    return (x_shape, (c_out, c_in // groups) + tuple(kernel), kwargs, needs, has_bias,
            draw(st.sampled_from([np.float64, np.float32])), draw(st.booleans()))


@contextlib.contextmanager
def _one_image_per_chunk(enabled):
    """Every image its own chunk (as on big batches): the workers' shares of dL/dW are summed."""
    saved = Chunked.chunk_bytes, Winograd.chunk_bytes, Winograd.chunk_tiles
    if enabled:
        Chunked.chunk_bytes, Winograd.chunk_bytes, Winograd.chunk_tiles = 1, 1, 0
    try:
        yield
    finally:
        Chunked.chunk_bytes, Winograd.chunk_bytes, Winograd.chunk_tiles = saved


def _inputs(x_shape, w_shape, has_bias, dtype, strided, rng):
    if strided:                                   # every other column of a wider array
        x = rng.standard_normal(x_shape[:3] + (2 * x_shape[3],)).astype(dtype)[..., ::2]
    else:
        x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    return x, w, rng.standard_normal(w_shape[0]).astype(dtype) if has_bias else None


def _run(lib, functional, arrays, needs, kwargs, upstream):
    ts = [None if a is None else lib.tensor(a, requires_grad=need) for a, need in zip(arrays, needs)]
    y = functional.conv2d(*ts, **kwargs)
    if y.requires_grad:
        y.backward(lib.tensor(upstream))
    grads = [t.grad if t is not None and t.requires_grad else None for t in ts]
    return y.detach().numpy(), [None if g is None else g.numpy() for g in grads]


@pytest.mark.usefixtures("forced_route_runs")
@pytest.mark.parametrize("route", ROUTES)
@FUZZ
@given(data=st.data())
def test_forced_route_matches_torch(route, data):
    x_shape, w_shape, kwargs, needs, has_bias, dtype, strided = data.draw(calls(route))
    rng = np.random.default_rng(list(x_shape + w_shape))
    x, w, b = _inputs(x_shape, w_shape, has_bias, dtype, strided, rng)
    needs = needs if has_bias else needs[:2] + (False,)
    with torch.no_grad():
        out_shape = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(w), **kwargs).shape
    upstream = rng.standard_normal(out_shape).astype(dtype)

    with _one_image_per_chunk(data.draw(st.booleans())), td.backends.route(conv2d=route), \
            td.backends.record_routes() as taken:
        y, grads = _run(td, F, (x, w, b), needs, kwargs, upstream)
    y_t, grads_t = _run(torch, torch.nn.functional, (x, w, b), needs, kwargs, upstream)

    ran = [name for op, name in taken if op == "conv2d"]
    assert len(ran) == 1
    if route != "im2col":                       # the route ran exactly where it applies
        applies = ran[0] == route
        forced = next(r for r in CONV2D_ROUTES if r.name == route)
        geometry_ok = _applies(forced, x, w_shape, kwargs, needs)
        assert applies == geometry_ok, f"{route}: ran {ran[0]}, applies() says {geometry_ok}"
    tol = dict(rtol=1e-10, atol=1e-10) if dtype == np.float64 else dict(rtol=2e-4, atol=2e-4)
    assert y.dtype == dtype and y.shape == y_t.shape
    np.testing.assert_allclose(y, y_t, **tol, err_msg=f"{route} ({ran[0]}): y")
    for name, g, g_t in zip(("x", "weight", "bias"), grads, grads_t):
        assert (g is None) == (g_t is None), name
        if g is not None:
            assert g.dtype == dtype and g.shape == g_t.shape, name
            np.testing.assert_allclose(g, g_t, **tol, err_msg=f"{route} ({ran[0]}): dL/d{name}")


def _applies(route, x, w_shape, kwargs, needs):
    """What the dispatcher asks the route, with the geometry the op derives from the
    arguments ('same' padding, pairs)."""
    stride, pads, dilation = _conv2d_arguments("conv2d", x.shape, w_shape, None, kwargs["stride"],
                                               kwargs["padding"], kwargs["dilation"], kwargs["groups"])
    geometry = (w_shape[2:], stride, pads, dilation, kwargs["groups"])
    return bool(route.applies(x, w_shape, geometry, needs))
