"""interpolate and pad on calls hypothesis draws, against PyTorch.

interpolate: every mode on its input rank (nearest and nearest-exact on 1-3 spatial
axes, linear, bilinear, bicubic, trilinear), sizes up and down from 1 to 9 pixels, or
scale factors between 0.2 and 3.3 (integers and fractions, recompute_scale_factor on or
off), align_corners, batches of 0-2. pad: constant (with a value), reflect, replicate and
circular on the last 1-3 axes, pads from -2 to 3 per side where PyTorch allows them. y and
dL/dx must be PyTorch's, with a random upstream gradient, in float64 and float32; where
PyTorch refuses a call, tinydl must refuse it too. Where PyTorch's dL/dx fails its own
gradcheck, tinydl's must pass it: PyTorch 2.13's backward of nearest and bicubic with a
fractional scale factor is not the adjoint of its forward (nearest, 3 pixels, x1.3,
recompute_scale_factor=False: y = (x0, x0, x1), and PyTorch sends gy's three entries to
x0, x1 and x2).

CI runs a fixed, derandomized set of draws; ``TINYDL_FUZZ_PROFILE=long`` runs many more
random ones::

    TINYDL_FUZZ_PROFILE=long python -m pytest -q tests/test_resample_fuzz.py
"""

import numpy as np
import pytest
import torch

import tinydl as td
import tinydl.nn.functional as F

pytest.importorskip("hypothesis")
from hypothesis import assume, given, strategies as st  # noqa: E402
from _fuzz import FUZZ  # noqa: E402

SPATIAL = {"nearest": (1, 2, 3), "nearest-exact": (1, 2, 3), "linear": (1,), "bilinear": (2,), "bicubic": (2,),
           "trilinear": (3,)}


def _same_result(ours_fn, theirs_fn, x, rng, dtype):
    """Both refuse, or both give the same y and dL/dx for a random upstream gradient."""
    xt, xtorch = td.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    try:
        y_t = theirs_fn(xtorch)
    except (RuntimeError, ValueError, NotImplementedError, IndexError, TypeError):
        with pytest.raises(Exception):
            ours_fn(xt)
        return
    y = ours_fn(xt)
    upstream = rng.standard_normal(tuple(y_t.shape)).astype(dtype)
    y.backward(td.tensor(upstream))
    y_t.backward(torch.tensor(upstream))
    tol = dict(rtol=1e-10, atol=1e-10) if dtype == np.float64 else dict(rtol=1e-4, atol=1e-5)
    assert y.dtype == dtype and xt.grad.dtype == dtype
    np.testing.assert_allclose(y.detach().numpy(), y_t.detach().numpy(), **tol)
    if not np.allclose(xt.grad.numpy(), xtorch.grad.numpy(), **tol):
        # PyTorch's backward of nearest and bicubic with a fractional scale factor fails its own
        # gradcheck (see above); then tinydl's must pass finite differences.
        x64 = x.astype(np.float64)
        assert not _torch_gradcheck(theirs_fn, x64), "dL/dx differs from PyTorch's, which is right"
        assert td.gradcheck(ours_fn, [td.tensor(x64, requires_grad=True)])


def _torch_gradcheck(fn, x):
    try:
        return torch.autograd.gradcheck(fn, [torch.tensor(x, requires_grad=True)])
    except RuntimeError:            # GradcheckError: a Jacobian mismatch
        return False


@pytest.mark.parametrize("mode", sorted(SPATIAL))
@FUZZ
@given(data=st.data(), dtype=st.sampled_from([np.float64, np.float32]))
def test_interpolate_matches_torch(mode, data, dtype):
    dims = data.draw(st.sampled_from(SPATIAL[mode]))
    spatial = tuple(data.draw(st.integers(1, 8)) for _ in range(dims))
    shape = (data.draw(st.sampled_from([1, 2, 0])), data.draw(st.integers(1, 2))) + spatial
    kwargs = {}
    if data.draw(st.booleans()):
        kwargs["size"] = tuple(data.draw(st.integers(1, 9)) for _ in range(dims))
    else:
        factor = st.one_of(st.integers(1, 3).map(float), st.sampled_from([0.2, 0.5, 0.75, 1.3, 1.5, 1.7, 2.5, 3.3]))
        kwargs["scale_factor"] = tuple(data.draw(factor) for _ in range(dims))
        kwargs["recompute_scale_factor"] = data.draw(st.sampled_from([None, True, False]))
    if mode not in ("nearest", "nearest-exact"):
        kwargs["align_corners"] = data.draw(st.booleans())
    rng = np.random.default_rng(list(shape))
    x = rng.standard_normal(shape).astype(dtype)
    _same_result(lambda t: F.interpolate(t, mode=mode, **kwargs),
                 lambda t: torch.nn.functional.interpolate(t, mode=mode, **kwargs), x, rng, dtype)


@pytest.mark.parametrize("mode", ["constant", "reflect", "replicate", "circular"])
@FUZZ
@given(data=st.data(), dtype=st.sampled_from([np.float64, np.float32]))
def test_pad_matches_torch(mode, data, dtype):
    axes = data.draw(st.integers(1, 3))
    spatial = tuple(data.draw(st.integers(1, 6)) for _ in range(axes))
    lead = (data.draw(st.integers(1, 2)),) * (data.draw(st.integers(1, 2)) if mode != "constant" else 1)
    shape = lead + spatial
    pad = tuple(data.draw(st.integers(-2, 3)) for _ in range(2 * axes))
    kwargs = dict(mode=mode)
    if mode == "constant":
        kwargs["value"] = data.draw(st.sampled_from([0.0, 1.5, -2.0]))
    if mode == "circular":      # tinydl refuses to wrap around more than once; PyTorch refuses some of
        for n, b, a in zip(spatial[::-1], pad[::2], pad[1::2]):   # those, returns uninitialised memory
            kept = n + min(b, 0) + min(a, 0)                      # for others (cropped to nothing)
            assume(0 < kept and b <= kept and a <= kept)           # and wraps some (other axes padded)
    sizes = [n + b + a for n, b, a in zip(spatial[::-1], pad[::2], pad[1::2])]
    if mode in ("reflect", "replicate"):   # some axes emptied, some not: PyTorch's dL/dx is uninitialised memory
        assume(min(sizes) >= 1 or max(sizes) < 1)
    rng = np.random.default_rng(list(shape) + [p + 2 for p in pad])
    x = rng.standard_normal(shape).astype(dtype)
    _same_result(lambda t: F.pad(t, pad, **kwargs), lambda t: torch.nn.functional.pad(t, pad, **kwargs), x, rng,
                 dtype)


@pytest.mark.parametrize("shape, pad, mode", [
    ((1, 1), (1, -2), "constant"),          # PyTorch crops first: -1 elements
    ((1, 2), (-3, 3), "constant"),
    ((1, 1, 1), (0, -1), "reflect"),         # no padded axis keeps an element
    ((1, 1, 1), (0, -1), "replicate"),
    ((1, 1, 1), (0, -1, 0, -1), "replicate"),
])
def test_pad_refuses_what_pytorch_refuses(shape, pad, mode):
    with pytest.raises(RuntimeError):
        torch.nn.functional.pad(torch.zeros(shape), pad, mode=mode)
    with pytest.raises(RuntimeError, match="pad: "):
        F.pad(td.zeros(shape), pad, mode=mode)


@pytest.mark.parametrize("shape, pad, mode", [
    ((1, 1), (2, -2), "replicate"),          # pads, then crops: one element
    ((1, 1, 1), (0, 0, 0, -1), "reflect"),   # one padded axis emptied, the other not: (1, 0, 1)
    ((1, 3), (-1, -2), "constant"),          # cropped to nothing
])
def test_pad_accepts_what_pytorch_accepts(shape, pad, mode):
    x = np.arange(float(np.prod(shape))).reshape(shape)
    expected = torch.nn.functional.pad(torch.tensor(x), pad, mode=mode).numpy()
    np.testing.assert_array_equal(F.pad(td.tensor(x), pad, mode=mode).numpy(), expected)
