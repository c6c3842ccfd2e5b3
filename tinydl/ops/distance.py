"""Distances between vectors: cosine similarity and the p-norm distance (torch.nn.functional's
cosine_similarity and pairwise_distance), the building blocks of metric-learning losses."""
import contextlib
import math
import numbers

import numpy as np

from ..autograd import Function, constant, unbroadcast
from ..backend import get_array_module
from ..tensor import Tensor
from .shape import normalize_dim

__all__ = ["cosine_similarity", "pairwise_distance"]


def pnorm(d, p, axis, keepdims=False):
    """(sum |d|**p)**(1/p) along ``axis`` (p = 2: the Euclidean length), with PyTorch's limits:
    p = inf the largest |d|, p = -inf the smallest, p = 0 the count of non-zero entries."""
    if isinstance(d, Tensor):                    # a composite (create_graph)
        if p == 2:
            return (d * d).sum(axis, keepdim=keepdims).sqrt()
        if math.isinf(p) or p == 0:
            # the array norm held constant, times the weights pnorm_grad gives each entry
            n = pnorm(d.array, p, axis, keepdims=True)
            if p == 0:
                n = constant(n, d)
            else:
                n = (d * constant(pnorm_grad(d.array, n, p, axis), d)).sum(axis, keepdim=True)
            return n if keepdims else n.squeeze(axis)
        return (d.abs() ** p).sum(axis, keepdim=keepdims) ** (1.0 / p)
    xp = get_array_module(d)
    if p == 2:
        return xp.sqrt((d * d).sum(axis=axis, keepdims=keepdims))
    if p == math.inf:
        return xp.abs(d).max(axis=axis, keepdims=keepdims)
    if p == -math.inf:
        return xp.abs(d).min(axis=axis, keepdims=keepdims)
    if p == 0:
        return (d != 0).sum(axis=axis, keepdims=keepdims).astype(d.dtype)
    with _quiet(xp):                             # p < 0: 0 ** p = inf, and the norm 0, as PyTorch
        return (xp.abs(d) ** p).sum(axis=axis, keepdims=keepdims) ** (1.0 / p)


def pnorm_grad(d, n, p, axis=-1):
    """d||d||_p / dd, with n the norm along ``axis`` (keepdims), as PyTorch's norm backward:
    p >= 1:      sign(d) |d|**(p-1) / n**(p-1),  0 where n = 0;
    p < 1:       sign(d) |d|**(p-1) n**(1-p),    0 where d = 0 (|d|**(p-1) is inf there);
    p = +-inf:   n = |d_k| for the largest (smallest) |d_k|: sign(d_k), shared equally
                 among ties (and NaN entries), 0 elsewhere;
    p = 0:       a count, piecewise constant: 0."""
    xp = get_array_module(d)
    if p == 0:
        return xp.zeros_like(d)
    if math.isinf(p):
        a = xp.abs(d)
        top = (a == n) | xp.isnan(a)
        return (xp.sign(d) * top / top.sum(axis=axis, keepdims=True)).astype(d.dtype, copy=False)
    if p < 1:
        nonzero = d != 0
        g = xp.sign(d) * xp.where(nonzero, xp.abs(d), 1) ** (p - 1) * n ** (1 - p)
        return xp.where(nonzero, g, 0).astype(d.dtype, copy=False)
    safe = xp.where(n > 0, n, 1)
    if p == 2:
        g = d / safe
    else:
        g = xp.sign(d) * xp.abs(d) ** (p - 1) / safe ** (p - 1)
    return xp.where(n > 0, g, 0).astype(d.dtype, copy=False)


def _quiet(xp):
    """Silence NumPy's divide warning where inf is the intended value (CuPy never warns)."""
    return np.errstate(divide="ignore") if xp is np else contextlib.nullcontext()


def check_p(p, op):
    """p: a number, not NaN (PyTorch takes any other, inf, -inf, 0 and negative ones too)."""
    if not isinstance(p, numbers.Real) or math.isnan(p):
        raise ValueError(f"{op}: p must be a real number (inf, -inf and 0 included), got {p!r}")


class PairwiseDistance(Function):
    """n = ||x1 - x2 + eps||_p along the last dim (eps keeps the gradient finite at x1 = x2);
    dn/dx1 = sign(d) |d|**(p-1) / n**(p-1) with d = x1 - x2 + eps,  dn/dx2 = -dn/dx1
    (p = inf: the largest |d|, its gradient sign(d) there; other limits: ``pnorm_grad``)."""

    double_backward = "composite"

    def forward(ctx, x1, x2, p, eps, keepdim):
        d = x1 - x2 + eps
        n = pnorm(d, p, -1, keepdims=True)
        ctx.save_for_backward(d, n)
        ctx.p, ctx.keepdim, ctx.shapes = p, keepdim, (x1.shape, x2.shape)
        return n if keepdim else n[..., 0]

    def composite(ctx, x1, x2, p, eps, keepdim):
        n = pnorm(x1 - x2 + eps, p, -1, keepdims=True)
        return n if keepdim else n[..., 0]

    def backward(ctx, gy):
        d, n = ctx.saved_tensors
        g = (gy if ctx.keepdim else gy[..., None]) * pnorm_grad(d, n, ctx.p)
        return (unbroadcast(g, ctx.shapes[0]) if ctx.needs_input_grad[0] else None,
                unbroadcast(-g, ctx.shapes[1]) if ctx.needs_input_grad[1] else None)


class CosineSimilarity(Function):
    """c = sum(x1 x2) / (n1 n2) along ``dim``, n_i = max(||x_i||, eps) (PyTorch clamps each norm);
    dc/dx1 = x2 / (n1 n2) - c x1 / n1**2,  dc/dx2 = x1 / (n1 n2) - c x2 / n2**2
    (where a norm is clamped, the second term uses the clamped value, as it is constant there)."""

    double_backward = "composite"

    def forward(ctx, x1, x2, dim, eps):
        xp = get_array_module(x1)
        ctx.shapes = x1.shape, x2.shape
        x1, x2 = xp.broadcast_arrays(x1, x2)
        n1 = xp.maximum(pnorm(x1, 2, dim, keepdims=True), eps)
        n2 = xp.maximum(pnorm(x2, 2, dim, keepdims=True), eps)
        c = (x1 * x2).sum(axis=dim, keepdims=True) / (n1 * n2)
        ctx.save_for_backward(x1, x2, n1, n2, c)
        ctx.dim, ctx.eps = dim, eps
        return c.squeeze(dim)

    def composite(ctx, x1, x2, dim, eps):
        def clamped_norm(x):             # max(||x||, eps): eps is a constant where it wins
            return pnorm(x, 2, dim, keepdims=True).clamp(min=eps)
        c = (x1 * x2).sum(dim, keepdim=True) / (clamped_norm(x1) * clamped_norm(x2))
        return c.squeeze(dim)

    def backward(ctx, gy):
        x1, x2, n1, n2, c = ctx.saved_tensors
        xp = get_array_module(gy)
        g = xp.expand_dims(gy, ctx.dim)
        # a clamped norm is a constant: its term of the derivative vanishes
        k1 = xp.where(n1 > ctx.eps, c / (n1 * n1), 0)
        k2 = xp.where(n2 > ctx.eps, c / (n2 * n2), 0)
        s1, s2 = ctx.shapes
        g1 = unbroadcast(g * (x2 / (n1 * n2) - k1 * x1), s1) if ctx.needs_input_grad[0] else None
        g2 = unbroadcast(g * (x1 / (n1 * n2) - k2 * x2), s2) if ctx.needs_input_grad[1] else None
        return g1, g2


def pairwise_distance(x1, x2, p=2.0, eps=1e-6, keepdim=False):
    """The p-norm distance ||x1 - x2 + eps||_p along the last dim (x1, x2 broadcast)."""
    check_p(p, "pairwise_distance")
    return PairwiseDistance.apply(x1, x2, p=float(p), eps=float(eps), keepdim=bool(keepdim))


def cosine_similarity(x1, x2, dim=1, eps=1e-8):
    """Cosine of the angle between x1 and x2 along ``dim`` (x1, x2 broadcast)."""
    ndim = max(x1.ndim, x2.ndim)
    return CosineSimilarity.apply(x1, x2, dim=normalize_dim(dim, ndim, "cosine_similarity") - ndim,
                                  eps=float(eps))
