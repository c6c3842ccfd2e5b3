"""Small pieces of ``torch.nn.functional``: channel_shuffle, lp_pool1d / 2d / 3d, bilinear,
rms_norm, pdist, gumbel_softmax and the deprecated upsample aliases of interpolate.

None has a Function of its own: each is written with recorded ops (reshape, avg_pool, pow,
matmul, norm, softmax...), so autograd differentiates it, and its gradient again, from
the ops' own backwards. The docstrings give the math.
"""
import math
import numbers
import warnings

import numpy as np

from ..args import ntuple, pair, single
from ..autograd import constant
from ..tensor import Tensor
from .activation import softmax
from .checks import check_same_kind
from .dropout import _uniform
from .math import cast, matmul
from .pool import avg_pool1d, avg_pool2d, max_pool1d, max_pool2d
from .reduce import norm
from .resample import interpolate
from .volumetric import avg_pool3d, max_pool3d
from .shape import index_select, normalize_dim

__all__ = ["channel_shuffle", "lp_pool1d", "lp_pool2d", "lp_pool3d", "bilinear", "rms_norm", "pdist", "gumbel_softmax",
           "upsample", "upsample_nearest", "upsample_bilinear"]


def _check_tensor(op, input, floating=False):
    if not isinstance(input, Tensor):
        raise TypeError(f"{op}: input must be a Tensor, got {type(input).__name__}")
    if floating and input.dtype.kind != "f":
        raise RuntimeError(f"{op}: expected a floating-point input, got {input.dtype} (shape {tuple(input.shape)})")


# ---------------------------------------------------------------- channel shuffle
def channel_shuffle(input, groups):
    """ShuffleNet's channel shuffle of an (N, C, *) input: the C channels, read as a (g, C/g)
    grid, are read out column by column, so channel k * (C/g) + j moves to j * g + k:

        reshape (N, g, C/g, *)  ->  swap dims 1 and 2  ->  reshape (N, C, *)

    (a permutation: its gradient is the inverse permutation of the upstream gradient)."""
    op = "channel_shuffle"
    _check_tensor(op, input)
    if input.ndim < 3:
        raise RuntimeError(f"{op}: expected an input of more than 2 dims (N, C, *), got shape {tuple(input.shape)}")
    if not isinstance(groups, numbers.Integral) or isinstance(groups, bool) or groups <= 0:
        raise RuntimeError(f"{op}: groups must be a positive integer, got {groups!r}")
    n, c = input.shape[:2]
    if c % groups:
        raise RuntimeError(f"{op}: the number of channels must be divisible by groups, got {c} channels "
                           f"(input of shape {tuple(input.shape)}) and groups={groups}")
    grid = input.reshape((n, int(groups), c // int(groups)) + tuple(input.shape[2:]))
    return grid.transpose(1, 2).reshape(tuple(input.shape))


# ---------------------------------------------------------------- power-average pooling
def _lp(op, input, norm_type):
    _check_tensor(op, input, floating=True)
    if not isinstance(norm_type, numbers.Real) or norm_type == 0 or math.isnan(norm_type):
        raise ValueError(f"{op}: norm_type must be a non-zero number (it is the root taken), got {norm_type!r}")
    return float(norm_type)


def _lp_inf(max_pool, input, p, kernel, stride, ceil_mode):
    """p = +inf: the window's largest |x|; p = -inf: its smallest (PyTorch's limits)."""
    if p > 0:
        return max_pool(input.abs(), kernel, stride, 0, 1, ceil_mode)
    return -max_pool(-input.abs(), kernel, stride, 0, 1, ceil_mode)


def _lp_finish(pooled, p, window):
    """PyTorch's last step: the window's sum of x^p is (average * window size); then its p-th
    root, written sign(a) * relu(|a|) as PyTorch's, so a zero window passes no gradient."""
    return (pooled.sign() * pooled.abs().relu() * window).pow(1.0 / p)


def lp_pool2d(input, norm_type, kernel_size, stride=None, ceil_mode=False):
    """Power-average pooling, as ``torch.nn.functional.lp_pool2d``: per window W,

        y = (sum_{x in W} x^p)^(1/p)       (p = norm_type; p = 1: the sum; p = +-inf: the largest
                                        or smallest |x|, as PyTorch's limits)

    computed as (avg_pool2d(x^p) * kh * kw)^(1/p). As PyTorch's, a ceil_mode window that
    runs past the input still counts kh * kw (the average's divisor does not), and an odd p
    of a negative window sum gives NaN."""
    p = _lp("lp_pool2d", input, norm_type)
    kh, kw = pair(kernel_size, "kernel_size", "lp_pool2d")
    if math.isinf(p):
        return _lp_inf(max_pool2d, input, p, (kh, kw), stride, ceil_mode)
    pooled = avg_pool2d(input.pow(p), (kh, kw), stride, 0, ceil_mode)
    return _lp_finish(pooled, p, kh * kw)


def lp_pool1d(input, norm_type, kernel_size, stride=None, ceil_mode=False):
    """Power-average pooling of (N, C, L) or (C, L), as ``torch.nn.functional.lp_pool1d``:
    y = (sum over each window of x^p)^(1/p) = (avg_pool1d(x^p) * k)^(1/p) (see lp_pool2d)."""
    p = _lp("lp_pool1d", input, norm_type)
    k = single(kernel_size, "kernel_size", "lp_pool1d")
    if math.isinf(p):
        return _lp_inf(max_pool1d, input, p, k, stride, ceil_mode)
    pooled = avg_pool1d(input.pow(p), k, stride, 0, ceil_mode)
    return _lp_finish(pooled, p, k)


def lp_pool3d(input, norm_type, kernel_size, stride=None, ceil_mode=False):
    """Power-average pooling of (N, C, D, H, W) or (C, D, H, W), as
    ``torch.nn.functional.lp_pool3d``: (avg_pool3d(x^p) * kd * kh * kw)^(1/p) (see lp_pool2d)."""
    p = _lp("lp_pool3d", input, norm_type)
    kernel = ntuple(kernel_size, 3, "kernel_size", "lp_pool3d")
    if math.isinf(p):
        return _lp_inf(max_pool3d, input, p, kernel, stride, ceil_mode)
    pooled = avg_pool3d(input.pow(p), kernel, stride, 0, ceil_mode)
    return _lp_finish(pooled, p, math.prod(kernel))


# ---------------------------------------------------------------- bilinear
def bilinear(input1, input2, weight, bias=None):
    """y_k = x1^T A_k x2 + b_k = sum_ij x1_i A_kij x2_j + b_k, as ``torch.nn.functional.bilinear``:
    input1 (*, in1), input2 (*, in2) with the same leading dims, weight (out, in1, in2),
    bias (out,); y (*, out).

    Two matrix products: t = x1 @ A (A laid out (in1, out * in2)), one (out, in2) matrix T per
    row, then y = T @ x2. dL/dx1, dL/dA, dL/dx2 come from matmul's backward."""
    op = "bilinear"
    _check_tensor(op, input1)
    check_same_kind(op, input1, ("input2", input2), ("weight", weight), ("bias", bias))
    if weight.ndim != 3:
        raise RuntimeError(f"{op}: expected a 3-D weight (out_features, in1_features, in2_features), got "
                           f"shape {tuple(weight.shape)}")
    out, in1, in2 = weight.shape
    if input1.ndim != input2.ndim:
        raise RuntimeError(f"{op}: input dimensions do not match: got input1 of shape {tuple(input1.shape)} "
                           f"and input2 of shape {tuple(input2.shape)}")
    if input1.ndim == 0 or input1.shape[:-1] != input2.shape[:-1]:
        raise RuntimeError(f"{op}: the inputs' leading (batch) dims must match, got input1 of shape "
                           f"{tuple(input1.shape)} and input2 of shape {tuple(input2.shape)}")
    for name, x, size in (("input1", input1, in1), ("input2", input2, in2)):
        if x.shape[-1] != size:
            raise RuntimeError(f"{op}: {name} has {x.shape[-1]} features (shape {tuple(x.shape)}) but the "
                               f"weight of shape {tuple(weight.shape)} expects {size}")
    if bias is not None and tuple(bias.shape) != (out,):
        raise RuntimeError(f"{op}: bias of shape {tuple(bias.shape)} does not match the weight's "
                           f"out_features {out} (weight shape {tuple(weight.shape)})")
    lead = tuple(input1.shape[:-1])
    rows = math.prod(lead)
    a = weight.permute(1, 0, 2).reshape(in1, out * in2)
    t = matmul(input1.reshape(rows, in1), a).reshape(rows, out, in2)
    y = matmul(t, input2.reshape(rows, in2, 1)).reshape(lead + (out,))
    return y if bias is None else y + bias


# ---------------------------------------------------------------- RMS norm
def rms_norm(input, normalized_shape, weight=None, eps=None):
    """Root-mean-square normalisation over the last ``len(normalized_shape)`` dims, as
    ``torch.nn.functional.rms_norm`` (Zhang & Sennrich 2019): per slice x of those dims,

        y = x / sqrt(mean(x^2) + eps) * weight

    no centring, no shift. ``eps=None``: the input dtype's machine epsilon (torch.finfo).
    ``weight`` has shape ``normalized_shape``."""
    op = "rms_norm"
    _check_tensor(op, input, floating=True)
    shape = (int(normalized_shape),) if isinstance(normalized_shape, numbers.Integral) else \
        tuple(int(s) for s in normalized_shape)
    if not shape:
        raise RuntimeError(f"{op}: normalized_shape must have at least one dim, got {tuple(shape)}")
    k = len(shape)
    if input.ndim < k or tuple(input.shape[input.ndim - k:]) != shape:
        raise RuntimeError(f"{op}: normalized_shape={shape} expects an input of shape (*, "
                           f"{', '.join(map(str, shape))}), got input of shape {tuple(input.shape)}")
    check_same_kind(op, input, ("weight", weight))
    if weight is not None and tuple(weight.shape) != shape:
        raise RuntimeError(f"{op}: weight has shape {tuple(weight.shape)}, expected normalized_shape {shape}")
    if eps is None:
        eps = float(np.finfo(input.dtype).eps)
    dtype = input.dtype
    if dtype == np.float16:         # float32 arithmetic, as PyTorch (x^2 overflows float16 past 256)
        input, weight = (None if t is None else cast(t, np.float32) for t in (input, weight))
    dims = tuple(range(input.ndim - k, input.ndim))
    y = input * ((input * input).mean(dims, keepdim=True) + eps).rsqrt()
    y = y if weight is None else y * weight
    return y if y.dtype == dtype else cast(y, dtype)


# ---------------------------------------------------------------- pdist
def pdist(input, p=2):
    """The p-norm distances between the rows of an (N, M) input, as ``torch.nn.functional.pdist``:
    ||x_i - x_j||_p for every pair i < j, in row-major order of the upper triangle (N (N-1) / 2
    values). p >= 0 (0: the count of differing entries, inf: the largest |difference|).

    The gradient is the norm's (``norm``): 0 for a pair at distance 0; at p = inf every
    entry tied for the largest |difference| gets sign(difference) times the pair's gradient,
    as PyTorch's pdist (its vector norm would share it among them)."""
    op = "pdist"
    _check_tensor(op, input, floating=True)
    if input.ndim != 2:
        raise RuntimeError(f"{op}: expected a 2-D input (N, M), got shape {tuple(input.shape)}")
    if not isinstance(p, numbers.Real) or not p >= 0:
        raise RuntimeError(f"{op}: p must be a non-negative number (inf included), got {p!r}")
    p = float(p)
    i, j = input._xp.triu_indices(input.shape[0], 1)      # (on the data's device)
    d = index_select(input, 0, i) - index_select(input, 0, j)
    if input.shape[1] == 0:
        return d.sum(1)                 # empty rows: every distance 0
    if p != math.inf:
        return norm(d, p, dim=1)
    a = d.abs()
    top = a.array.max(axis=1)
    tied = a.array == top[:, None]
    # sum of the tied |d| is (ties) * top; taking (ties - 1) * top off as a constant leaves the
    # value top and gives each tied entry the full gradient
    return (a * constant(tied, a)).sum(1) - constant((tied.sum(axis=1) - 1) * top, a)


# ---------------------------------------------------------------- Gumbel-softmax
def gumbel_softmax(logits, tau=1, hard=False, eps=1e-10, dim=-1):
    """A sample from the Gumbel-softmax (Concrete) distribution, as
    ``torch.nn.functional.gumbel_softmax`` (Jang et al. 2017; Maddison et al. 2017):

        g = -log(E),  E ~ Exponential(1)      (i.e. standard Gumbel noise per entry)
        y = softmax((logits + g) / tau)  along ``dim``

    ``hard=True``: the one-hot vector of y's argmax in the forward, with the gradient of
    the soft y (straight-through: y_hard - detach(y) + y). ``eps`` is unused (deprecated in
    PyTorch, which warns as here). The noise comes from tinydl's seeded generator
    (``td.manual_seed``), not PyTorch's."""
    op = "gumbel_softmax"
    _check_tensor(op, logits, floating=True)
    if eps != 1e-10:
        warnings.warn("`eps` parameter is deprecated and has no effect.", stacklevel=2)
    if not tau > 0:
        raise ValueError(f"{op}: the temperature tau must be positive, got {tau!r}")
    d = normalize_dim(dim, logits.ndim, op, logits.shape)
    xp = logits._xp
    u = _uniform(xp, tuple(logits.shape), logits.dtype)
    # E = -log(1 - u) in [0, inf); held above the dtype's tiniest number so that g stays finite
    e = xp.maximum(-xp.log1p(-u), xp.finfo(u.dtype).tiny)
    gumbels = constant(-xp.log(e), logits)
    y_soft = softmax((logits + gumbels) / tau, dim=d)
    if not hard:
        return y_soft
    index = xp.expand_dims(y_soft.array.argmax(axis=d), d)
    classes = xp.arange(logits.shape[d]).reshape((-1,) + (1,) * (logits.ndim - 1 - d))
    one_hot = (classes == index).astype(logits.dtype)
    return constant(one_hot, logits) - y_soft.detach() + y_soft


# ---------------------------------------------------------------- deprecated aliases of interpolate
def _deprecated(name):
    warnings.warn(f"`nn.functional.{name}` is deprecated. Use `nn.functional.interpolate` instead.", stacklevel=3)


def upsample(input, size=None, scale_factor=None, mode="nearest", align_corners=None):
    """``interpolate(input, size, scale_factor, mode, align_corners)`` (deprecated, as in PyTorch)."""
    _deprecated("upsample")
    return interpolate(input, size, scale_factor, mode, align_corners)


def upsample_nearest(input, size=None, scale_factor=None):
    """``interpolate(..., mode='nearest')`` (deprecated, as in PyTorch)."""
    _deprecated("upsample_nearest")
    return interpolate(input, size, scale_factor, mode="nearest")


def upsample_bilinear(input, size=None, scale_factor=None):
    """``interpolate(..., mode='bilinear', align_corners=True)`` (deprecated, as in PyTorch)."""
    _deprecated("upsample_bilinear")
    return interpolate(input, size, scale_factor, mode="bilinear", align_corners=True)
