"""Dropout: zero random elements (or whole channels) while training.

Inverted dropout (Srivastava et al. 2014, as PyTorch implements it): during
training each element is kept with probability 1 - p and the kept ones are
scaled by 1 / (1 - p), so E[y] = x and evaluation is the identity, with no
rescaling at test time:

    y = x * m,  m = keep / (1 - p),  keep ~ Bernoulli(1 - p)
    dL/dx = gy * m          (the same mask: dropped units get no gradient)

The feature variants (dropout1d/2d/3d, Tompson et al. 2015) draw one keep/drop
per channel, a mask of shape (N, C, 1, 1) that broadcasts over the spatial axes,
because neighbouring pixels of a feature map are strongly correlated and dropping
single pixels barely regularises.

The mask comes from ``tinydl.backend.rng_for(np)`` on the CPU and from a Philox counter
on the GPU (kernels/philox.py): ``td.manual_seed(s)`` makes it reproducible, and it is
drawn on the input's device in the input's dtype.
Masks cannot match PyTorch's (a different generator); the tests check the
statistics instead.
"""
import math

import numpy as np

from ..autograd import Function
from ..backend import get_array_module, rng_for
from ..kernels import philox
from .activation import _finish

__all__ = ["dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout"]


def _uniform(xp, shape, dtype):
    """Uniform [0, 1) samples from the backend's seeded generator, in ``dtype`` where the
    generator supports it (float32/float64), else float32. On the GPU a Philox counter
    (kernels/philox.py): CuPy's generator cannot be captured in a CUDA graph."""
    draw = dtype if dtype in (np.float32, np.float64) else np.float32
    if xp is np:
        return rng_for(xp).random(shape, dtype=draw)
    return philox.uniform(shape, draw)


class Dropout(Function):
    """y = x * m with m = keep / (1 - p) (0 when p = 1);  dL/dx = gy * m.

    ``mask_shape`` is x.shape for plain dropout, or (N, C, 1, ...) for channel dropout
    (the mask broadcasts, and so does its gradient: gy * m has x's shape).
    """

    double_backward = "operators"

    def forward(ctx, x, p, mask_shape):
        xp = get_array_module(x)
        keep = _uniform(xp, mask_shape, x.dtype) >= p
        scale = 0.0 if p == 1 else 1.0 / (1.0 - p)
        mask = keep.astype(x.dtype) * scale
        ctx.save_for_backward(mask)
        return x * mask

    def backward(ctx, gy):
        mask, = ctx.saved_tensors
        return gy * mask


# Alpha dropout keeps SELU activations at mean 0 / variance 1: a dropped unit is set to
# SELU's negative saturation value -alpha' = -scale * alpha, not 0, then an affine map
# a * (.) + b restores the mean and variance.
_ALPHA_PRIME = 1.7580993408473766   # scale * alpha of SELU


class AlphaDropout(Function):
    """y = a (x keep + (-alpha')(1 - keep)) + b with
    a = ((1 - p)(1 + p alpha'^2))^(-1/2) and b = a alpha' p, i.e.
    y = a x + a alpha' p where kept and a alpha' (p - 1) where dropped;
    dL/dx = gy * a * keep."""

    double_backward = "operators"

    def forward(ctx, x, p, mask_shape):
        xp = get_array_module(x)
        keep = (_uniform(xp, mask_shape, x.dtype) >= p).astype(x.dtype)
        a = 1.0 / math.sqrt((_ALPHA_PRIME ** 2 * p + 1) * (1 - p))
        mask = keep * a
        ctx.save_for_backward(mask)
        return x * mask + (keep - 1 + p) * (_ALPHA_PRIME * a)

    def backward(ctx, gy):
        mask, = ctx.saved_tensors
        return gy * mask


# ---------------------------------------------------------------- public functions
def _check_p(p, op):
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{op}: dropout probability has to be between 0 and 1, but got {p}")


def _channel_mask_shape(x, spatial, op):
    """(N, C, 1, ...) for a batched input with ``spatial`` spatial axes, (C, 1, ...) unbatched."""
    names = {1: "L", 2: "H, W", 3: "D, H, W"}[spatial]
    if x.ndim == spatial + 2:
        return x.shape[:2] + (1,) * spatial
    if x.ndim == spatial + 1:
        return x.shape[:1] + (1,) * spatial
    raise ValueError(f"{op}: expected a {spatial + 1}-D (C, {names}) or {spatial + 2}-D (N, C, {names}) "
                     f"input, got shape {x.shape}")


def _apply(fn, input, p, training, inplace, mask_shape, op):
    if not training or p == 0 or input.numel() == 0:
        return input           # the identity, as PyTorch (the same tensor)
    # inplace: the result is written into input, which is returned (as PyTorch; ops/activation.py)
    return _finish(fn, input, inplace, op, p=float(p), mask_shape=tuple(mask_shape))


def dropout(input, p=0.5, training=True, inplace=False):
    """Zero each element with probability p and scale the rest by 1 / (1 - p) (training only).

    ``inplace=True`` writes the result into ``input`` and returns it (see ops/activation.py)."""
    _check_p(p, "dropout")
    return _apply(Dropout, input, p, training, inplace, input.shape, "dropout")


def dropout1d(input, p=0.5, training=True, inplace=False):
    """Zero whole channels of (N, C, L) or (C, L) inputs with probability p."""
    _check_p(p, "dropout1d")
    return _apply(Dropout, input, p, training, inplace, _channel_mask_shape(input, 1, "dropout1d"),
                  "dropout1d")


def dropout2d(input, p=0.5, training=True, inplace=False):
    """Zero whole channels (feature maps) of (N, C, H, W) or (C, H, W) inputs with probability p.

    A 3-D input is read as one unbatched (C, H, W) sample. PyTorch 2.x still reads it as
    (N, C, L) (with a deprecation warning announcing this very change); use dropout1d for that.
    """
    _check_p(p, "dropout2d")
    return _apply(Dropout, input, p, training, inplace, _channel_mask_shape(input, 2, "dropout2d"),
                  "dropout2d")


def dropout3d(input, p=0.5, training=True, inplace=False):
    """Zero whole channels of (N, C, D, H, W) or (C, D, H, W) inputs with probability p."""
    _check_p(p, "dropout3d")
    return _apply(Dropout, input, p, training, inplace, _channel_mask_shape(input, 3, "dropout3d"),
                  "dropout3d")


def alpha_dropout(input, p=0.5, training=False, inplace=False):
    """Dropout for SELU networks: keeps zero mean and unit variance (note PyTorch's default
    training=False here)."""
    _check_p(p, "alpha_dropout")
    if training and p == 1:
        return _apply(Dropout, input, 1.0, True, inplace, input.shape, "alpha_dropout")   # all zeros, as PyTorch
    return _apply(AlphaDropout, input, p, training, inplace, input.shape, "alpha_dropout")


def feature_alpha_dropout(input, p=0.5, training=False, inplace=False):
    """Alpha dropout of whole channels of (N, C, ...) inputs."""
    _check_p(p, "feature_alpha_dropout")
    if input.ndim < 2:
        raise ValueError(f"feature_alpha_dropout: expected an (N, C, ...) input, got shape {input.shape}")
    shape = input.shape[:2] + (1,) * (input.ndim - 2)
    if training and p == 1:
        return _apply(Dropout, input, 1.0, True, inplace, shape, "feature_alpha_dropout")
    return _apply(AlphaDropout, input, p, training, inplace, shape, "feature_alpha_dropout")
