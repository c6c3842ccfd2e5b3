"""Loss functions, with PyTorch's signatures, defaults and numbers.

Every loss is ONE Function: the elementwise loss l, its reduction and the
derivative of both are written out together, instead of being composed from
smaller ops (fewer temporaries, and the whole formula readable in one place).

Reductions (``reduction=``):
    'none'  L_i = w_i l_i       (the per-element / per-sample losses)
    'sum'   L = sum_i w_i l_i
    'mean'  L = sum_i w_i l_i / D, with D the number of elements, or the sum of the
            weights where PyTorch divides by it (mse/l1 with weight; cross_entropy and
            nll_loss with class weights: the weights of the non-ignored targets)
so dL/dl_i = w_i gy / D ('sum': D = 1; 'none': dL/dl_i = w_i gy_i). The helpers
``_reduce`` / ``_reduce_backward`` do this part for the elementwise losses.

Not-a-number inputs are not trapped: like PyTorch, a NaN in the input gives a NaN
loss (binary_cross_entropy excepted: it rejects inputs outside [0, 1], NaN
included, as PyTorch does). Where every target of cross_entropy / nll_loss is ``ignore_index``,
the 'mean' loss is 0/0 = nan and the gradient 0, as in PyTorch.
"""
import contextlib
import math
import warnings

import numpy as np

from ..autograd import Function, constant, unbroadcast, is_grad_enabled
from ..backend import get_array_module, is_cupy_array, to_host
from ..kernels.loss import cross_entropy_backward_numba, cross_entropy_forward_numba, cross_entropy_route
from ..kernels.scatter import scatter_add
from ..tensor import Tensor
from .activation import LogSoftmax, softplus_recorded
from .distance import check_p, pnorm, pnorm_grad
from .math import cast, promoted, raw
from .shape import _check_index_range, gather

__all__ = ["cross_entropy", "nll_loss", "mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss",
           "binary_cross_entropy", "binary_cross_entropy_with_logits", "kl_div", "poisson_nll_loss",
           "gaussian_nll_loss", "soft_margin_loss", "multilabel_soft_margin_loss", "margin_ranking_loss",
           "hinge_embedding_loss", "cosine_embedding_loss", "triplet_margin_loss",
           "triplet_margin_with_distance_loss",
           "multi_margin_loss", "multilabel_margin_loss", "ctc_loss"]


# ================================================================ reductions
def _reduction_mode(size_average, reduce, reduction, op, allowed=("none", "mean", "sum")):
    """The reduction string; PyTorch's deprecated size_average/reduce pair overrides it."""
    if size_average is not None or reduce is not None:
        size_average = True if size_average is None else size_average
        reduce = True if reduce is None else reduce
        reduction = "none" if not reduce else ("mean" if size_average else "sum")
    if reduction not in allowed:
        raise ValueError(f"{op}: {reduction!r} is not a valid value for reduction; "
                         f"expected one of {', '.join(repr(a) for a in allowed)}")
    return reduction


def _quiet(xp):
    """Silence NumPy's divide/invalid warnings where inf or nan is the intended value
    (log(0) before BCE's clamp; 0/0 when every target is ignored). CuPy never warns."""
    return np.errstate(divide="ignore", invalid="ignore") if xp is np else contextlib.nullcontext()


def _divide(a, b):
    """a / b where b may be 0 (every target ignored: nan, as PyTorch)."""
    if isinstance(a, Tensor):                          # a composite (create_graph)
        return a / b
    with _quiet(get_array_module(a)):
        return a / b


def _denominator(loss, reduction, weight, mean_by):
    """D of the module docstring, for an elementwise loss."""
    if reduction == "sum":
        return 1
    if reduction == "batchmean":                       # kl_div only
        return loss.shape[0] if loss.ndim else 1
    if mean_by == "weight" and weight is not None:     # mse/l1 with weight
        return weight.sum()
    return math.prod(loss.shape)


def _reduce(loss, reduction, weight=None, mean_by="count"):
    """Forward of the reduction: 'none' -> w * l, else sum(w * l) / D."""
    weighted = loss if weight is None else loss * weight
    if reduction == "none":
        return weighted
    return _divide(weighted.sum(), _denominator(loss, reduction, weight, mean_by))


def _reduce_backward(gy, loss, reduction, weight=None, mean_by="count", weight_grad=False):
    """(dL/dl, dL/dw) for L = _reduce(l, ...): dL/dl_i = w_i gy / D and dL/dw_i = l_i gy / D,
    minus L gy / D where D = sum(w) also depends on w.

    The shapes are those of the broadcast product w * l; callers unbroadcast."""
    xp = get_array_module(gy)
    if reduction == "none":
        g = gy
    else:
        g = xp.broadcast_to(gy / _denominator(loss, reduction, weight, mean_by), loss.shape)
    g_loss = g if weight is None else g * weight
    g_weight = None
    if weight_grad:
        g_weight = g * loss
        if reduction == "mean" and mean_by == "weight":
            g_weight = g_weight - g * _reduce(loss, reduction, weight, mean_by)
    return g_loss, g_weight


# ================================================================ shape checks
def _check_device(op, **tensors):
    """All tensors on the device of the first (a clear error instead of a backend crash)."""
    items = [(k, v) for k, v in tensors.items() if v is not None]
    name0, ref = items[0]
    for name, t in items[1:]:
        if get_array_module(raw(t)) is not get_array_module(raw(ref)):
            raise RuntimeError(f"{op}: {name0} and {name} are on different devices "
                               f"({ref.device} and {t.device})")


def _check_no_grad_weight(op, **weights):
    """PyTorch refuses gradients for these weights; so do we, loudly rather than silently."""
    for name, w in weights.items():
        if isinstance(w, Tensor) and w.requires_grad and is_grad_enabled():
            raise RuntimeError(f"{op} is not differentiable with respect to {name}, but {name} "
                               f"requires grad; pass {name}.detach()")


def _broadcast_target(op, input, target):
    """PyTorch broadcasts input and target of the regression losses, with a warning."""
    if input.shape != target.shape:
        try:
            np.broadcast_shapes(input.shape, target.shape)
        except ValueError:
            raise ValueError(f"{op}: target of shape {target.shape} cannot be broadcast with "
                             f"input of shape {input.shape}") from None
        warnings.warn(f"{op}: target shape {target.shape} differs from input shape {input.shape}; "
                      "they are broadcast together, which is usually a mistake", stacklevel=3)


def _check_same_shape(op, name, t, input):
    if t is not None and tuple(t.shape) != tuple(input.shape):
        raise ValueError(f"{op}: {name} of shape {tuple(t.shape)} must have the shape of the "
                         f"input {tuple(input.shape)}")


def _check_broadcastable_to(op, name, t, shape):
    if t is None:
        return
    try:
        if np.broadcast_shapes(tuple(t.shape), shape) == tuple(shape):
            return
    except ValueError:
        pass
    raise ValueError(f"{op}: {name} of shape {tuple(t.shape)} cannot be broadcast to the input shape {shape}")


# ================================================================ regression losses
class MSELoss(Function):
    """l = (x - t)**2;  dl/dx = 2 (x - t),  dl/dt = -2 (x - t)."""

    double_backward = "composite"

    def forward(ctx, x, t, weight, reduction):
        d = x - t
        loss = d * d
        ctx.save_for_backward(d, loss, weight)
        ctx.shapes, ctx.reduction = (x.shape, t.shape), reduction
        return _reduce(loss, reduction, weight, mean_by="weight")

    def composite(ctx, x, t, weight, reduction):
        d = x - t
        return _reduce(d * d, reduction, weight, mean_by="weight")

    def backward(ctx, gy):
        d, loss, weight = ctx.saved_tensors
        g, gw = _reduce_backward(gy, loss, ctx.reduction, weight, "weight", ctx.needs_input_grad[2])
        gx = 2 * g * d
        return _grads(ctx, gx, -gx, gw, weight)


class L1Loss(Function):
    """l = |x - t|;  dl/dx = sign(x - t) (0 where x = t, as PyTorch),  dl/dt = -dl/dx."""

    double_backward = "composite"

    def forward(ctx, x, t, weight, reduction):
        xp = get_array_module(x)
        d = x - t
        loss = xp.abs(d)
        ctx.save_for_backward(d, loss, weight)
        ctx.shapes, ctx.reduction = (x.shape, t.shape), reduction
        return _reduce(loss, reduction, weight, mean_by="weight")

    def composite(ctx, x, t, weight, reduction):
        return _reduce((x - t).abs(), reduction, weight, mean_by="weight")

    def backward(ctx, gy):
        d, loss, weight = ctx.saved_tensors
        g, gw = _reduce_backward(gy, loss, ctx.reduction, weight, "weight", ctx.needs_input_grad[2])
        gx = g * get_array_module(d).sign(d)
        return _grads(ctx, gx, -gx, gw, weight)


class SmoothL1Loss(Function):
    """With d = x - t:  l = d**2 / (2 beta) where |d| < beta, else |d| - beta / 2
    (beta = 0 is plain L1);  dl/dx = d / beta where |d| < beta, else sign(d);  dl/dt = -dl/dx.

    Huber (``delta``) is delta times smooth L1 with beta = delta:
    l = d**2 / 2 where |d| < delta, else delta (|d| - delta / 2);  dl/dx = d or delta sign(d).
    """

    double_backward = "composite"

    def forward(ctx, x, t, weight, reduction, beta, scale=1.0):
        xp = get_array_module(x)
        d = x - t
        small = xp.abs(d) < beta
        b = beta if beta > 0 else 1.0   # no division by 0: ``small`` is all False then
        loss = xp.where(small, 0.5 * d * d / b, xp.abs(d) - 0.5 * beta)
        if scale != 1.0:
            loss = loss * scale
        ctx.save_for_backward(d, small, loss, weight)
        ctx.shapes, ctx.reduction, ctx.beta, ctx.scale = (x.shape, t.shape), reduction, b, scale
        return _reduce(loss, reduction, weight)

    def composite(ctx, x, t, weight, reduction, beta, scale=1.0):
        d = x - t
        small = constant(ctx.saved_tensors[1], d)
        loss = 0.5 * d * d / ctx.beta * small + (d.abs() - 0.5 * beta) * (1 - small)
        return _reduce(loss * scale, reduction, weight)

    def backward(ctx, gy):
        d, small, loss, weight = ctx.saved_tensors
        xp = get_array_module(d)
        g, gw = _reduce_backward(gy, loss, ctx.reduction, weight, "count", ctx.needs_input_grad[2])
        slope = xp.where(small, d / ctx.beta, xp.sign(d))
        gx = g * slope * ctx.scale if ctx.scale != 1.0 else g * slope
        return _grads(ctx, gx, -gx, gw, weight)


def _grads(ctx, gx, gt, gw, weight):
    """Sum the broadcast gradients of a regression loss back to x, t and weight."""
    sx, st = ctx.shapes
    return (unbroadcast(gx, sx) if ctx.needs_input_grad[0] else None,
            unbroadcast(gt, st) if ctx.needs_input_grad[1] else None,
            unbroadcast(gw, weight.shape) if ctx.needs_input_grad[2] else None)


# ================================================================ probabilistic losses
_LOG_FLOOR = -100.0     # PyTorch clamps log(x) of binary_cross_entropy to >= -100
_BCE_EPS = 1e-12        # ... and its gradient's denominator x (1 - x) to >= 1e-12


class BinaryCrossEntropy(Function):
    """l = -(t log x + (1 - t) log(1 - x)), each log clamped to >= -100 (so x = 0 or 1 gives
    100, not inf);  dl/dx = (x - t) / (x (1 - x))  (denominator clamped to >= 1e-12);
    dl/dt = log(1 - x) - log(x) = -logit(x)."""

    double_backward = "composite"

    def forward(ctx, x, t, weight, reduction):
        xp = get_array_module(x)
        with _quiet(xp):        # log(0) = -inf, then clamped
            log_x = xp.maximum(xp.log(x), _LOG_FLOOR)
            log_1mx = xp.maximum(xp.log1p(-x), _LOG_FLOOR)
        loss = -(t * log_x + (1 - t) * log_1mx)
        ctx.save_for_backward(x, t, loss, weight)
        ctx.reduction = reduction
        return _reduce(loss, reduction, weight)

    def composite(ctx, x, t, weight, reduction):
        def clamped_log(v):       # log(v), and the constant -100 where that is lower
            with _quiet(v._xp):
                above = constant(v._xp.log(v.array) > _LOG_FLOOR, v)
            return (v * above + (1 - above)).log() * above + _LOG_FLOOR * (1 - above)
        loss = -(t * clamped_log(x) + (1 - t) * clamped_log(1 - x))
        return _reduce(loss, reduction, weight)

    def backward(ctx, gy):
        x, t, loss, weight = ctx.saved_tensors
        xp = get_array_module(x)
        g, _ = _reduce_backward(gy, loss, ctx.reduction, weight)
        gx = gt = None
        if ctx.needs_input_grad[0]:
            gx = g * (x - t) / xp.maximum(x * (1 - x), _BCE_EPS)
        if ctx.needs_input_grad[1]:
            with _quiet(xp):    # +-inf at x = 0 or 1, as PyTorch
                gt = g * (xp.log1p(-x) - xp.log(x))
        return gx, gt, None


class BinaryCrossEntropyWithLogits(Function):
    """BCE of sigmoid(x), computed from the logit x without ever forming sigmoid(x):
    with softplus(-x) = log(1 + exp(-x)) = -log sigmoid(x) and lw = 1 + (pos_weight - 1) t,

        l = (1 - t) x + lw softplus(-x)        (= -(pos_weight t log s + (1 - t) log(1 - s)))
        dl/dx = lw sigmoid(x) - pos_weight t    (= sigmoid(x) - t without pos_weight)
        dl/dt = (pos_weight - 1) softplus(-x) - x

    softplus(-x) = log(1 + exp(-|x|)) + max(-x, 0) never overflows.
    """

    double_backward = "composite"

    def forward(ctx, x, t, weight, pos_weight, reduction):
        xp = get_array_module(x)
        sp = xp.log1p(xp.exp(-xp.abs(x))) + xp.maximum(-x, 0)     # softplus(-x)
        lw = 1 if pos_weight is None else 1 + (pos_weight - 1) * t
        loss = (1 - t) * x + lw * sp
        ctx.save_for_backward(x, t, sp, loss, weight, pos_weight)
        ctx.reduction = reduction
        return _reduce(loss, reduction, weight)

    def composite(ctx, x, t, weight, pos_weight, reduction):
        lw = 1 if pos_weight is None else 1 + (pos_weight - 1) * t
        return _reduce((1 - t) * x + lw * softplus_recorded(-x), reduction, weight)

    def backward(ctx, gy):
        x, t, sp, loss, weight, pos_weight = ctx.saved_tensors
        xp = get_array_module(x)
        g, _ = _reduce_backward(gy, loss, ctx.reduction, weight)
        gx = gt = None
        if ctx.needs_input_grad[0]:
            e = xp.exp(-xp.abs(x))
            sig = xp.where(x >= 0, 1 / (1 + e), e / (1 + e))      # stable sigmoid(x)
            if pos_weight is None:
                gx = g * (sig - t)
            else:
                gx = g * ((1 + (pos_weight - 1) * t) * sig - pos_weight * t)
        if ctx.needs_input_grad[1]:
            gt = g * (-x if pos_weight is None else (pos_weight - 1) * sp - x)
        return gx, gt, None, None


class KLDiv(Function):
    """KL divergence with ``input`` x = log q (log-probabilities):
    l = t (log t - x), taken as 0 where t = 0;  dl/dx = -t,  dl/dt = log t + 1 - x.
    With log_target (target given as log t): l = exp(t) (t - x);  dl/dx = -exp(t),
    dl/dt = exp(t) (t - x + 1)."""

    double_backward = "composite"

    def forward(ctx, x, t, reduction, log_target):
        xp = get_array_module(x)
        if log_target:
            p = xp.exp(t)
            loss = p * (t - x)
        else:
            p = t
            log_t = xp.log(xp.where(t > 0, t, 1))                # xlogy: 0 log 0 = 0
            loss = t * log_t - t * x
        ctx.save_for_backward(x, t, p, loss)
        ctx.reduction, ctx.log_target = reduction, log_target
        ctx.shapes = x.shape, t.shape
        return _reduce(loss, reduction)

    def composite(ctx, x, t, reduction, log_target):
        if log_target:
            return _reduce(t.exp() * (t - x), reduction)
        positive = constant(t.array > 0, t)
        return _reduce(t * (t * positive + (1 - positive)).log() - t * x, reduction)

    def backward(ctx, gy):
        x, t, p, loss = ctx.saved_tensors
        xp = get_array_module(x)
        g, _ = _reduce_backward(gy, loss, ctx.reduction)
        gx = unbroadcast(-g * p, ctx.shapes[0]) if ctx.needs_input_grad[0] else None
        gt = None
        if ctx.needs_input_grad[1]:
            with _quiet(xp):    # -inf at t = 0
                gt = g * p * (t - x + 1) if ctx.log_target else g * (xp.log(t) + 1 - x)
            gt = unbroadcast(gt, ctx.shapes[1])
        return gx, gt


class PoissonNLL(Function):
    """Poisson negative log-likelihood of a target count t under rate lambda:
    log_input (x = log lambda):  l = exp(x) - t x;          dl/dx = exp(x) - t,  dl/dt = -x
    otherwise (x = lambda):      l = x - t log(x + eps);    dl/dx = 1 - t / (x + eps),  dl/dt = -log(x + eps)
    full adds Stirling's log(t!) ~ t log t - t + log(2 pi t) / 2 where t > 1;  d/dt = log t + 1 / (2 t).
    """

    double_backward = "composite"

    def forward(ctx, x, t, log_input, full, eps, reduction):
        xp = get_array_module(x)
        if log_input:
            rate = xp.exp(x)
            loss = rate - t * x
        else:
            rate = x + eps
            loss = x - t * xp.log(rate)
        big = t > 1
        if full:
            ts = xp.where(big, t, 2)      # any value > 1 where the term is masked out
            loss = loss + xp.where(big, ts * xp.log(ts) - ts + 0.5 * xp.log(2 * math.pi * ts), 0)
        ctx.save_for_backward(x, t, rate, loss, big)
        ctx.log_input, ctx.full, ctx.reduction, ctx.shapes = log_input, full, reduction, (x.shape, t.shape)
        return _reduce(loss, reduction).astype(x.dtype, copy=False)

    def composite(ctx, x, t, log_input, full, eps, reduction):
        loss = x.exp() - t * x if log_input else x - t * (x + eps).log()
        if full:
            big = ctx.saved_tensors[4]
            ts = t * constant(big, t) + constant(2 * ~big, t)
            loss = loss + (ts * ts.log() - ts + 0.5 * (2 * math.pi * ts).log()) * constant(big, t)
        return _reduce(loss, reduction)

    def backward(ctx, gy):
        x, t, rate, loss, big = ctx.saved_tensors
        xp = get_array_module(gy)
        g, _ = _reduce_backward(gy, loss, ctx.reduction)
        gx = gt = None
        if ctx.needs_input_grad[0]:
            gx = unbroadcast(g * (rate - t if ctx.log_input else 1 - t / rate), ctx.shapes[0])
        if ctx.needs_input_grad[1]:
            d = -x if ctx.log_input else -xp.log(rate)
            if ctx.full:
                ts = xp.where(big, t, 2)
                d = d + xp.where(big, xp.log(ts) + 0.5 / ts, 0)
            gt = unbroadcast(g * d, ctx.shapes[1])
        return gx, gt


class GaussianNLL(Function):
    """Gaussian negative log-likelihood of t under N(x, var), v = max(var, eps):
    l = (log v + (x - t)**2 / v) / 2  (+ log(2 pi) / 2 with full);
    dl/dx = (x - t) / v,  dl/dt = -dl/dx,  dl/dvar = (1 / v - (x - t)**2 / v**2) / 2
    (the clamp passes the gradient through unchanged, as PyTorch's no-grad clamp does)."""

    double_backward = "composite"

    def forward(ctx, x, t, var, full, eps, reduction):
        xp = get_array_module(x)
        v = xp.maximum(var, eps)
        d = x - t
        loss = 0.5 * (xp.log(v) + d * d / v)
        if full:
            loss = loss + 0.5 * math.log(2 * math.pi)
        ctx.save_for_backward(d, v, loss)
        ctx.reduction, ctx.shapes = reduction, (x.shape, t.shape, var.shape)
        return _reduce(loss, reduction).astype(x.dtype, copy=False)

    def composite(ctx, x, t, var, full, eps, reduction):
        v = var.clamp(min=eps)                            # the clamp passes var's gradient on
        d = x - t
        loss = 0.5 * (v.log() + d * d / v)
        return _reduce(loss + 0.5 * math.log(2 * math.pi) if full else loss, reduction)

    def backward(ctx, gy):
        d, v, loss = ctx.saved_tensors
        g, _ = _reduce_backward(gy, loss, ctx.reduction)
        gx = g * d / v
        gv = g * 0.5 * (1 / v - d * d / (v * v)) if ctx.needs_input_grad[2] else None
        return (unbroadcast(gx, ctx.shapes[0]) if ctx.needs_input_grad[0] else None,
                unbroadcast(-gx, ctx.shapes[1]) if ctx.needs_input_grad[1] else None,
                unbroadcast(gv, ctx.shapes[2]) if gv is not None else None)


class SoftMargin(Function):
    """Two-class logistic loss with labels y = +-1:  l = log(1 + exp(-y x)) = softplus(-y x);
    dl/dx = -y sigmoid(-y x)."""

    double_backward = "composite"

    def forward(ctx, x, y, reduction):
        xp = get_array_module(x)
        z = -y * x
        loss = xp.maximum(z, 0) + xp.log1p(xp.exp(-xp.abs(z)))
        ctx.save_for_backward(y, z, loss)
        ctx.reduction = reduction
        return _reduce(loss, reduction).astype(x.dtype, copy=False)

    def composite(ctx, x, y, reduction):
        return _reduce(softplus_recorded(-y * x), reduction)

    def backward(ctx, gy):
        y, z, loss = ctx.saved_tensors
        xp = get_array_module(gy)
        g, _ = _reduce_backward(gy, loss, ctx.reduction)
        e = xp.exp(-xp.abs(z))
        sig = xp.where(z >= 0, 1 / (1 + e), e / (1 + e))       # stable sigmoid(z)
        return -g * y * sig, None


class MultiLabelSoftMargin(Function):
    """Per sample n of x (N, C) with 0/1 targets y: the mean over classes of the weighted
    binary cross-entropy of sigmoid(x),
    l_n = -(1/C) sum_c w_c (y log sigmoid(x) + (1 - y) log sigmoid(-x))
        = (1/C) sum_c w_c (softplus(-x) + (1 - y) x);
    dl_n/dx = w (sigmoid(x) - y) / C,  dl_n/dy = -w x / C."""

    double_backward = "composite"

    def forward(ctx, x, y, weight, reduction):
        xp = get_array_module(x)
        n_classes = x.shape[-1]
        per_class = xp.maximum(-x, 0) + xp.log1p(xp.exp(-xp.abs(x))) + (1 - y) * x
        if weight is not None:
            per_class = per_class * weight
        loss = per_class.sum(axis=-1) / n_classes
        ctx.save_for_backward(x, y, weight, loss)
        ctx.reduction = reduction
        return _reduce(loss, reduction).astype(x.dtype, copy=False)

    def composite(ctx, x, y, weight, reduction):
        per_class = softplus_recorded(-x) + (1 - y) * x
        if weight is not None:
            per_class = per_class * weight
        return _reduce(per_class.sum(-1) / x.shape[-1], reduction)

    def backward(ctx, gy):
        x, y, weight, loss = ctx.saved_tensors
        xp = get_array_module(gy)
        g, _ = _reduce_backward(gy, loss, ctx.reduction)
        g = g[..., None] / x.shape[-1]
        if weight is not None:
            g = g * weight
        e = xp.exp(-xp.abs(x))
        sig = xp.where(x >= 0, 1 / (1 + e), e / (1 + e))
        gx = g * (sig - y) if ctx.needs_input_grad[0] else None
        gt = -g * x if ctx.needs_input_grad[1] else None
        return gx, gt, None


class MarginRanking(Function):
    """Ranking with labels y = +-1 (x1 should rank above x2 where y = 1):
    l = max(0, margin - y (x1 - x2));  where the margin is violated (l >= 0 side, as PyTorch's
    clamp), dl/dx1 = -y, dl/dx2 = y, dl/dy = -(x1 - x2); else 0."""

    double_backward = "composite"

    def forward(ctx, x1, x2, y, margin, reduction):
        xp = get_array_module(x1)
        diff = x1 - x2
        raw = margin - y * diff
        loss = xp.maximum(raw, 0)
        ctx.save_for_backward(diff, y, raw >= 0, loss)
        ctx.reduction, ctx.shapes = reduction, (x1.shape, x2.shape, y.shape)
        return _reduce(loss, reduction).astype(x1.dtype, copy=False)

    def composite(ctx, x1, x2, y, margin, reduction):
        active = constant(ctx.saved_tensors[2], x1)
        return _reduce((margin - y * (x1 - x2)) * active, reduction)

    def backward(ctx, gy):
        diff, y, active, loss = ctx.saved_tensors
        g, _ = _reduce_backward(gy, loss, ctx.reduction)
        g = g * active
        s1, s2, sy = ctx.shapes
        return (unbroadcast(-g * y, s1) if ctx.needs_input_grad[0] else None,
                unbroadcast(g * y, s2) if ctx.needs_input_grad[1] else None,
                unbroadcast(-g * diff, sy) if ctx.needs_input_grad[2] else None)


class HingeEmbedding(Function):
    """With labels y = +-1 (similar / dissimilar pairs, x a distance):
    l = x where y = 1,  max(0, margin - x) where y = -1 (PyTorch adds both terms for any
    other label);  dl/dx = [y != -1] - [y != 1][margin - x >= 0]."""

    double_backward = "composite"

    def forward(ctx, x, y, margin, reduction):
        xp = get_array_module(x)
        pull, push = y != -1, y != 1
        hinge = margin - x
        loss = xp.where(pull, x, 0) + xp.where(push, xp.maximum(hinge, 0), 0)
        ctx.save_for_backward(pull, push & (hinge >= 0), loss)
        ctx.reduction = reduction
        return _reduce(loss, reduction).astype(x.dtype, copy=False)

    def composite(ctx, x, y, margin, reduction):
        pull, pushing, _ = ctx.saved_tensors
        return _reduce(x * constant(pull, x) + (margin - x) * constant(pushing, x), reduction)

    def backward(ctx, gy):
        pull, pushing, loss = ctx.saved_tensors
        g, _ = _reduce_backward(gy, loss, ctx.reduction)
        return g * (pull.astype(g.dtype) - pushing), None


_COS_EPS = 1e-12   # added to the squared lengths of cosine_embedding_loss, as PyTorch


class CosineEmbedding(Function):
    """With c = cos(x1, x2) along the last dim (c = s / r, s = sum x1 x2, r = sqrt(m1 m2),
    m_i = sum x_i**2 + 1e-12) and labels y = +-1:
    l = 1 - c where y = 1,  max(0, c - margin) where y = -1;
    dl/dc = -1, or 1 where c - margin >= 0;  dc/dx1 = x2 / r - c x1 / m1,  dc/dx2 = x1 / r - c x2 / m2."""

    double_backward = "composite"

    def forward(ctx, x1, x2, y, margin, reduction):
        xp = get_array_module(x1)
        m1 = (x1 * x1).sum(axis=-1) + _COS_EPS
        m2 = (x2 * x2).sum(axis=-1) + _COS_EPS
        r = xp.sqrt(m1 * m2)
        c = (x1 * x2).sum(axis=-1) / r
        push = (y == -1) & (c - margin >= 0)
        loss = xp.where(y == 1, 1 - c, 0) + xp.where(y == -1, xp.maximum(c - margin, 0), 0)
        ctx.save_for_backward(x1, x2, m1, m2, r, c, (y == 1), push, loss)
        ctx.reduction = reduction
        return _reduce(loss, reduction).astype(x1.dtype, copy=False)

    def composite(ctx, x1, x2, y, margin, reduction):
        pull, push = ctx.saved_tensors[6:8]
        m1, m2 = (x1 * x1).sum(-1) + _COS_EPS, (x2 * x2).sum(-1) + _COS_EPS
        c = (x1 * x2).sum(-1) / (m1 * m2).sqrt()
        return _reduce((1 - c) * constant(pull, c) + (c - margin) * constant(push, c), reduction)

    def backward(ctx, gy):
        x1, x2, m1, m2, r, c, pull, push, loss = ctx.saved_tensors
        g, _ = _reduce_backward(gy, loss, ctx.reduction)
        gc = (g * (push.astype(g.dtype) - pull))[..., None]
        c, r = c[..., None], r[..., None]
        return (gc * (x2 / r - c * x1 / m1[..., None]) if ctx.needs_input_grad[0] else None,
                gc * (x1 / r - c * x2 / m2[..., None]) if ctx.needs_input_grad[1] else None, None)


class TripletMargin(Function):
    """l = max(0, margin + d(a, p) - d(a, n)) with d(u, v) = ||u - v + eps||_P along the last
    dim, the inputs broadcast together (``swap``: d(a, n) replaced by d(p, n) where that is smaller). Where l > 0 side
    (>= 0, as PyTorch's clamp), dl/dd(a, p) = 1 and dl/dd(negative) = -1, and each
    d(u, v) passes its gradient u_grad = sign(D)|D|**(P-1)/d**(P-1) (D = u - v + eps) to u, minus it to v."""

    double_backward = "composite"

    def forward(ctx, a, pos, neg, margin, p, eps, swap, reduction):
        xp = get_array_module(a)
        D_ap, D_an = a - pos + eps, a - neg + eps
        d_ap, d_an = pnorm(D_ap, p, -1, keepdims=True), pnorm(D_an, p, -1, keepdims=True)
        use_pn = xp.zeros(d_an.shape, dtype=bool)
        D_pn = d_pn = None
        if swap:
            D_pn = pos - neg + eps
            d_pn = pnorm(D_pn, p, -1, keepdims=True)
            use_pn = d_pn < d_an
        d_neg = xp.where(use_pn, d_pn, d_an) if swap else d_an
        raw = (margin + d_ap - d_neg)[..., 0]
        loss = xp.maximum(raw, 0)
        ctx.save_for_backward(D_ap, d_ap, D_an, d_an, D_pn, d_pn, use_pn, raw >= 0, loss)
        ctx.p, ctx.reduction, ctx.shapes = p, reduction, (a.shape, pos.shape, neg.shape)
        return _reduce(loss, reduction).astype(a.dtype, copy=False)

    def composite(ctx, a, pos, neg, margin, p, eps, swap, reduction):
        use_pn, active = ctx.saved_tensors[6:8]
        d_ap, d_an = pnorm(a - pos + eps, p, -1), pnorm(a - neg + eps, p, -1)
        d_neg = d_an
        if swap:
            use = constant(use_pn[..., 0], d_an)
            d_neg = pnorm(pos - neg + eps, p, -1) * use + d_an * (1 - use)
        return _reduce((margin + d_ap - d_neg) * constant(active, d_ap), reduction)

    def backward(ctx, gy):
        D_ap, d_ap, D_an, d_an, D_pn, d_pn, use_pn, active, loss = ctx.saved_tensors
        g, _ = _reduce_backward(gy, loss, ctx.reduction)
        g = (g * active)[..., None]
        u_ap = g * pnorm_grad(D_ap, d_ap, ctx.p)
        u_an = g * pnorm_grad(D_an, d_an, ctx.p) * ~use_pn
        ga, gp, gn = u_ap - u_an, -u_ap, u_an
        if D_pn is not None:
            u_pn = g * pnorm_grad(D_pn, d_pn, ctx.p) * use_pn
            gp, gn = gp - u_pn, gn + u_pn
        # (inputs broadcast together: each gradient summed back to its input's shape)
        return tuple(unbroadcast(grad, shape) if need else None
                     for grad, shape, need in zip((ga, gp, gn), ctx.shapes, ctx.needs_input_grad))


class MultiMargin(Function):
    """Multi-class hinge loss of scores x (N, C) and class indices y, with h_i = margin - x_y + x_i:
    l_n = w_y / C sum_{i != y} max(0, h_i)**p  (p = 1 or 2);
    dl_n/dx_i = w_y / C p h_i**(p-1) where h_i > 0 (i != y),  dl_n/dx_y = -sum_i dl_n/dx_i."""

    double_backward = "composite"

    def forward(ctx, x, y, weight, p, margin, reduction):
        xp = get_array_module(x)
        x2 = x.reshape(-1, x.shape[-1])
        idx = y.reshape(-1, 1)
        h = margin - xp.take_along_axis(x2, idx, axis=1) + x2
        active = (h > 0) & (xp.arange(x2.shape[1]) != idx)
        scale = (1 if weight is None else weight[idx[:, 0]]) / x2.shape[1]
        loss = (xp.where(active, h ** p, 0).sum(axis=1) * scale).astype(x.dtype, copy=False)
        loss = loss.reshape(y.shape)
        ctx.save_for_backward(h, active, idx, scale, loss)
        ctx.p, ctx.reduction, ctx.x_shape = p, reduction, x.shape
        return _reduce(loss, reduction).astype(x.dtype, copy=False)

    def composite(ctx, x, y, weight, p, margin, reduction):
        _, active, idx, scale, _ = ctx.saved_tensors
        x2 = x.reshape(-1, x.shape[-1])
        h = margin - gather(x2, 1, Tensor(idx)) + x2
        per_class = h ** p * constant(active, x2) * constant(x2._xp.asarray(scale).reshape(-1, 1), x2)
        return _reduce(per_class.sum(1).reshape(tuple(y.shape)), reduction)

    def backward(ctx, gy):
        h, active, idx, scale, loss = ctx.saved_tensors
        xp = get_array_module(gy)
        g, _ = _reduce_backward(gy, loss, ctx.reduction)
        coef = xp.where(active, (g.reshape(-1) * scale)[:, None] * (ctx.p * h ** (ctx.p - 1)), 0)
        gx = coef.astype(gy.dtype, copy=False)
        gx[xp.arange(gx.shape[0]), idx[:, 0]] = -coef.sum(axis=1)
        return gx.reshape(ctx.x_shape), None, None


class MultiLabelMargin(Function):
    """Multi-label hinge loss: per sample, with T the target classes (the entries of the
    target row before the first -1) and x the scores (C of them),
    l = (1/C) sum_{j in T (repeats count)} sum_{i not in T} max(0, 1 - (x_j - x_i));
    each active pair (1 - x_j + x_i > 0) adds 1/C to dl/dx_i and -1/C to dl/dx_j."""

    double_backward = "composite"

    def forward(ctx, x, target, reduction):
        xp = get_array_module(x)
        x2, t2 = x.reshape(-1, x.shape[-1]), target.reshape(-1, x.shape[-1])
        valid = xp.cumprod(t2 != -1, axis=1).astype(bool)        # the entries before the first -1
        safe = xp.where(valid, t2, 0)
        rows = xp.arange(x2.shape[0])[:, None]
        is_target = xp.zeros(x2.shape, dtype=bool)
        is_target[xp.broadcast_to(rows, safe.shape)[valid], safe[valid]] = True
        h = 1 - xp.take_along_axis(x2, safe, axis=1)[:, :, None] + x2[:, None, :]   # (N, K=C, C)
        active = valid[:, :, None] & ~is_target[:, None, :] & (h > 0)
        loss = (xp.where(active, h, 0).sum(axis=(1, 2)) / x2.shape[1]).astype(x.dtype, copy=False)
        loss = loss.reshape(x.shape[:-1])
        ctx.save_for_backward(active, safe, loss)
        ctx.reduction, ctx.x_shape = reduction, x.shape
        return _reduce(loss, reduction).astype(x.dtype, copy=False)

    def composite(ctx, x, target, reduction):
        active, safe, _ = ctx.saved_tensors
        x2 = x.reshape(-1, x.shape[-1])
        h = 1 - gather(x2, 1, Tensor(safe)).unsqueeze(2) + x2.unsqueeze(1)         # (N, K, C)
        loss = (h * constant(active, h)).sum((1, 2)) / x2.shape[1]
        return _reduce(loss.reshape(x.shape[:-1]), reduction)

    def backward(ctx, gy):
        active, safe, loss = ctx.saved_tensors
        xp = get_array_module(gy)
        g, _ = _reduce_backward(gy, loss, ctx.reduction)
        n, n_classes = active.shape[0], active.shape[2]
        w = active * (g.reshape(-1, 1, 1) / n_classes)
        gx = w.sum(axis=1).astype(gy.dtype, copy=False)             # + for every i in a pair
        rows = xp.broadcast_to(xp.arange(n)[:, None], safe.shape)
        scatter_add(gx, (rows, safe), -w.sum(axis=2))               # - for its target j (repeats add)
        return gx.reshape(ctx.x_shape), None


def _logsumexp3(a, b, c):
    """log(exp(a) + exp(b) + exp(c)) elementwise, -inf when all three are -inf."""
    xp = get_array_module(a)
    m = xp.maximum(xp.maximum(a, b), c)
    safe = xp.where(xp.isfinite(m), m, 0)
    with _quiet(xp):
        return safe + xp.log(xp.exp(a - safe) + xp.exp(b - safe) + xp.exp(c - safe))


def _shifted(a, k):
    """a(s - k) along the last axis (k < 0: a(s + |k|)), -inf where that falls outside."""
    xp = get_array_module(a)
    out = xp.full(a.shape, -xp.inf, dtype=a.dtype)
    if k > 0:
        out[..., k:] = a[..., :-k]
    else:
        out[..., :k] = a[..., -k:]
    return out


class CTC(Function):
    """Connectionist temporal classification (Graves et al. 2006), as torch's ctc_loss.

    For one sample: log-probabilities lp[t, c] over T steps, a target l of length L, and
    the extended target l' = (blank, l1, blank, l2, ..., lL, blank) of 2L + 1 symbols. An
    alignment walks l' from its first two entries to its last two, one step per frame,
    staying, moving by 1, or skipping a blank between two different labels. In log space

        alpha_t(s) = lp[t, l'_s] + logsumexp(alpha_{t-1}(s), alpha_{t-1}(s-1), alpha_{t-1}(s-2)*)
        beta_t(s)  = lp[t, l'_s] + logsumexp(beta_{t+1}(s), beta_{t+1}(s+1), beta_{t+1}(s+2)*)

    (* only where l'_s is a label different from l'_{s-2}, resp. l'_{s+2}), and the loss is
    nll = -log p(l | x) = -logsumexp(alpha_{T-1}(2L), alpha_{T-1}(2L-1)). Since
    p = sum_s alpha_t(s) beta_t(s) / exp(lp[t, l'_s]) at every t,

        dnll/dlp[t, c] = -exp(logsumexp_{s: l'_s = c}(alpha_t(s) + beta_t(s)) + nll - lp[t, c])

    and PyTorch adds exp(lp[t, c]): the gradient as seen through a log_softmax (whose
    backward removes that term again), which is how CTC is always fed. Frames t >= T_n
    get no gradient; impossible targets give nll = inf (``zero_infinity``: 0, and no gradient).
    """

    def forward(ctx, lp, ext, in_len, ext_len, blank, zero_infinity, reduction, target_len):
        xp = get_array_module(lp)
        T, N, _ = lp.shape
        S = ext.shape[1]
        neg_inf = xp.asarray(-xp.inf, dtype=lp.dtype)
        # where alpha(s - 2) may feed alpha(s): a label different from the one two back
        skip = xp.zeros(ext.shape, dtype=bool)
        skip[:, 2:] = (ext[:, 2:] != blank) & (ext[:, 2:] != ext[:, :-2])
        s_idx = xp.arange(S)
        inside = s_idx[None, :] < ext_len[:, None]                      # (N, S)
        emit = xp.take_along_axis(lp, xp.broadcast_to(ext[None], (T, N, S)), axis=2)   # lp[t, n, l'_s]
        emit = xp.where(inside[None], emit, neg_inf)        # no symbol past the extended target
        alpha = xp.full((T, N, S), neg_inf, dtype=lp.dtype)
        alpha[0, :, :2] = emit[0, :, :2]
        for t in range(1, T):
            prev = alpha[t - 1]
            alpha[t] = emit[t] + _logsumexp3(prev, _shifted(prev, 1), xp.where(skip, _shifted(prev, 2), neg_inf))
        rows = xp.arange(N)
        last = alpha[in_len - 1, rows]                                   # alpha_{T_n - 1}, (N, S)
        end1 = last[rows, ext_len - 1]
        end2 = xp.where(ext_len > 1, last[rows, xp.maximum(ext_len - 2, 0)], neg_inf)
        nll = -_logsumexp3(end1, end2, neg_inf)
        possible = xp.isfinite(nll)
        if zero_infinity:
            nll = xp.where(possible, nll, 0)
        ctx.save_for_backward(lp, ext, in_len, ext_len, skip, emit, alpha, nll, possible, target_len)
        ctx.zero_infinity, ctx.reduction = zero_infinity, reduction
        return _ctc_reduce(nll, reduction, target_len).astype(lp.dtype, copy=False)

    def backward(ctx, gy):
        lp, ext, in_len, ext_len, skip, emit, alpha, nll, possible, target_len = ctx.saved_tensors
        xp = get_array_module(gy)
        T, N, _ = lp.shape
        S = ext.shape[1]
        neg_inf = xp.asarray(-xp.inf, dtype=lp.dtype)
        skip_next = xp.zeros(ext.shape, dtype=bool)                     # beta(s + 2) may feed beta(s)
        skip_next[:, :-2] = skip[:, 2:]
        s_idx = xp.arange(S)
        final = (s_idx[None, :] == ext_len[:, None] - 1) | (s_idx[None, :] == ext_len[:, None] - 2)
        beta = xp.full((T, N, S), neg_inf, dtype=lp.dtype)
        for t in range(T - 1, -1, -1):
            if t < T - 1:
                nxt = beta[t + 1]
                two_ahead = xp.where(skip_next, _shifted(nxt, -2), neg_inf)
                step = emit[t] + _logsumexp3(nxt, _shifted(nxt, -1), two_ahead)
            else:
                step = xp.full((N, S), neg_inf, dtype=lp.dtype)
            at_end = (t == in_len - 1)[:, None]
            beta[t] = xp.where(at_end, xp.where(final, emit[t], neg_inf),
                               xp.where((t < in_len - 1)[:, None], step, neg_inf))
        # exp(alpha + beta + nll - lp) summed over the positions s carrying each symbol
        ab = alpha + beta
        at_ext = xp.broadcast_to(ext[None], ab.shape)
        lp_ext = xp.take_along_axis(lp, at_ext, axis=2)
        scale = xp.where(possible, nll, 0)[None, :, None]
        with _quiet(xp):
            term = xp.where(xp.isfinite(ab), xp.exp(ab + scale - lp_ext), 0)
        mass = xp.zeros(lp.shape, dtype=lp.dtype)
        t_i = xp.broadcast_to(xp.arange(T)[:, None, None], ab.shape)
        n_i = xp.broadcast_to(xp.arange(N)[None, :, None], ab.shape)
        scatter_add(mass, (t_i, n_i, at_ext), term)
        grad = xp.exp(lp) - mass
        valid = (xp.arange(T)[:, None] < in_len[None, :])[:, :, None]
        if ctx.zero_infinity:      # an impossible target contributes nothing
            valid = valid & possible[None, :, None]
        grad = xp.where(valid, grad, 0)
        g = _ctc_reduce_backward(gy, ctx.reduction, target_len, N)
        return (grad * g[None, :, None]).astype(lp.dtype, copy=False), None, None, None


def _ctc_reduce(nll, reduction, target_len):
    """'mean': each loss divided by its target length (at least 1), then the batch mean."""
    if reduction == "none":
        return nll
    if reduction == "sum":
        return nll.sum()
    return (nll / get_array_module(nll).maximum(target_len, 1)).mean()


def _ctc_reduce_backward(gy, reduction, target_len, n):
    xp = get_array_module(gy)
    if reduction == "none":
        return gy
    if reduction == "sum":
        return xp.broadcast_to(gy, (n,))
    return gy / (xp.maximum(target_len, 1) * n)


# ================================================================ classification losses
def _class_axis(ndim):
    """Classes are dim 1 of (N, C, d1, ...), dim 0 of an unbatched (C,) input."""
    return 0 if ndim == 1 else 1


def _along_classes(v, ndim):
    """A (C,) vector shaped to broadcast along the class axis of an ndim-d input."""
    return v.reshape((-1,) + (1,) * (ndim - _class_axis(ndim) - 1))


def _target_setup(x, target, weight, ignore_index):
    """For class-index targets: (idx, valid, w_t) with
    idx    the targets with a class axis added (ignored ones replaced by class 0),
    valid  target != ignore_index,
    w_t    the weight of each sample's class, 0 where ignored (1 without weight),
           nan where the label is out of range.

    On the CPU an out-of-range label has already raised (_check_class_target). On
    'cuda' that check would cost a device-to-host copy every step, so such a label
    gets weight nan instead: the loss and its gradients become nan (the trainer
    stops on a nan loss), never a silently wrong gather."""
    xp = get_array_module(x)
    valid = target != ignore_index
    in_range = (target >= 0) & (target < x.shape[_class_axis(x.ndim)])
    safe = xp.where(valid & in_range, target, 0)
    w_t = valid.astype(x.dtype) if weight is None else xp.where(valid, weight[safe], 0).astype(x.dtype)
    if xp is not np:
        w_t = xp.where(valid & ~in_range, x.dtype.type(np.nan), w_t)    # a scalar: no array to make
    return xp.expand_dims(safe, _class_axis(x.ndim)), valid, w_t


def _one_hot(idx, n_classes, ndim):
    """Boolean one-hot of the class indices ``idx`` (which carry a class axis of size 1)."""
    xp = get_array_module(idx)
    return _along_classes(xp.arange(n_classes), ndim) == idx


def _per_sample_grad(gy, loss_shape, reduction, denominator):
    """dL/dl_n for the per-sample losses l_n of a classification loss."""
    xp = get_array_module(gy)
    if reduction == "none":
        return gy
    if reduction == "mean":
        # all targets ignored: D = 0; the gradient is then 0, as in PyTorch, not nan
        gy = gy / xp.where(denominator == 0, 1, denominator)
    return xp.broadcast_to(gy, loss_shape)


def _finish_class_loss(loss, reduction, denominator):
    if reduction == "none":
        return loss
    total = loss.sum()
    return total if reduction == "sum" else _divide(total, denominator)


class NLLLoss(Function):
    """Negative log-likelihood of log-probabilities x (N, C, d1, ...) and class indices t:
    l_n = -w[t_n] x[n, t_n]  (0 where t_n = ignore_index);  'mean' divides by sum_n w[t_n].
    dl_n/dx[n, c] = -w[t_n] where c = t_n, else 0.
    """

    double_backward = "composite"

    def forward(ctx, x, target, weight, ignore_index, reduction):
        xp = get_array_module(x)
        ax = _class_axis(x.ndim)
        idx, valid, w_t = _target_setup(x, target, weight, ignore_index)
        picked = xp.take_along_axis(x, idx, axis=ax).squeeze(ax)
        loss = xp.where(valid, -w_t * picked, 0).astype(x.dtype, copy=False)
        denominator = w_t.sum()
        ctx.save_for_backward(idx, w_t, denominator)
        ctx.reduction, ctx.n_classes, ctx.ndim = reduction, x.shape[ax], x.ndim
        return _finish_class_loss(loss, reduction, denominator)

    def composite(ctx, x, target, weight, ignore_index, reduction):
        idx, w_t, denominator = ctx.saved_tensors
        ax = _class_axis(x.ndim)
        loss = -constant(w_t, x) * gather(x, ax, Tensor(idx)).squeeze(ax)
        return _finish_class_loss(loss, reduction, constant(denominator, x))

    def backward(ctx, gy):
        idx, w_t, denominator = ctx.saved_tensors
        xp = get_array_module(gy)
        g = _per_sample_grad(gy, w_t.shape, ctx.reduction, denominator)
        g = xp.expand_dims(g * w_t, _class_axis(ctx.ndim))
        return _one_hot(idx, ctx.n_classes, ctx.ndim) * -g, None, None


class CrossEntropy(Function):
    """Softmax cross-entropy of logits x (N, C, d1, ...), fused: log-softmax + NLL.

    With s = log_softmax(x) along the class axis (stable: see activation.LogSoftmax)
    and a target distribution q_n over the classes, l_n = -sum_c q_n[c] s_n[c]:

      class-index targets:   q_n[c] = v_n ((1 - eps) w[t_n] [c = t_n] + eps / C w[c])
                             (v_n = 0 where t_n = ignore_index; 'mean' divides by
                             sum_n v_n w[t_n], smoothing term included, as PyTorch)
      probability targets:   q_n[c] = w[c] ((1 - eps) T_n[c] + eps / C)
                             ('mean' divides by the number of samples N d1 ...)

    with eps = label_smoothing and w = 1 without weight. Since ds_n[c]/dx_n[k] =
    [c = k] - softmax_n[k],

      dl_n/dx_n[k] = softmax_n[k] sum_c q_n[c] - q_n[k]       (= p - onehot in the plain case)
      dl_n/dT_n[c] = -(1 - eps) w[c] s_n[c]                    (probability targets)

    On the CPU, (N, C) logits with class indices and no smoothing take one Numba loop each
    way (kernels/loss.py: the same numbers, to rounding); the array code below does the rest.
    """

    double_backward = "composite"

    def forward(ctx, x, target, weight, ignore_index, reduction, label_smoothing, probabilities):
        ctx.reduction, ctx.eps, ctx.probabilities = reduction, label_smoothing, probabilities
        ctx.route = cross_entropy_route(x, weight, label_smoothing, probabilities)
        if ctx.route == "numba":        # (N, C) logits, class indices: the same, fused (kernels/loss.py)
            s, loss, safe, valid, w_t = cross_entropy_forward_numba(x, target, weight, ignore_index)
            denominator = w_t.sum()
            ctx.save_for_backward(s, safe[:, None], valid, w_t, None, denominator)
            return _finish_class_loss(loss, reduction, denominator)
        xp = get_array_module(x)
        ax, eps = _class_axis(x.ndim), label_smoothing
        n_classes = x.shape[ax]
        shifted = x - x.max(axis=ax, keepdims=True)
        s = shifted - xp.log(xp.exp(shifted).sum(axis=ax, keepdims=True))
        if weight is not None:
            weight = weight.astype(x.dtype, copy=False)
        w = None if weight is None else _along_classes(weight, x.ndim)
        if probabilities:
            q = target if eps == 0 else target * (1 - eps) + eps / n_classes
            q = q if w is None else q * w
            loss = -(q * s).sum(axis=ax)
            denominator = xp.asarray(x.size // n_classes, dtype=x.dtype)
            ctx.save_for_backward(s, q, w, denominator)
        else:
            idx, valid, w_t = _target_setup(x, target, weight, ignore_index)
            # gather s[n, t_n] rather than sum q * s: a -inf logit at another class
            # (a masked score) would give 0 * -inf = nan
            loss = -(1 - eps) * w_t * xp.take_along_axis(s, idx, axis=ax).squeeze(ax)
            if eps > 0:
                smooth = s.sum(axis=ax) if w is None else (s * w).sum(axis=ax)
                loss = loss - (eps / n_classes) * smooth
            loss = xp.where(valid, loss, 0).astype(x.dtype, copy=False)
            denominator = w_t.sum()
            ctx.save_for_backward(s, idx, valid, w_t, w, denominator)
        return _finish_class_loss(loss, reduction, denominator)

    def composite(ctx, x, target, weight, ignore_index, reduction, label_smoothing, probabilities):
        """log_softmax, then the loss of the docstring, in recorded ops."""
        ax, eps = _class_axis(x.ndim), label_smoothing
        n_classes = x.shape[ax]
        s = LogSoftmax.apply(x, dim=ax)
        w = None if weight is None else constant(_along_classes(raw(weight), x.ndim), x)
        denominator = constant(ctx.saved_tensors[-1], x)
        if probabilities:
            q = target if eps == 0 else target * (1 - eps) + eps / n_classes
            q = q if w is None else q * w
            return _finish_class_loss(-(q * s).sum(ax), reduction, denominator)
        _, idx, valid, w_t, _, _ = ctx.saved_tensors
        loss = -(1 - eps) * constant(w_t, x) * gather(s, ax, Tensor(idx)).squeeze(ax)
        if eps > 0:
            smooth = s.sum(ax) if w is None else (s * w).sum(ax)
            loss = loss - (eps / n_classes) * smooth * constant(valid, x)
        return _finish_class_loss(loss, reduction, denominator)

    def backward(ctx, gy):
        xp = get_array_module(gy)
        eps, s = ctx.eps, ctx.saved_tensors[0]
        ax = _class_axis(s.ndim)
        if ctx.probabilities:
            s, q, w, denominator = ctx.saved_tensors
        elif ctx.route == "numba":
            s, idx, _, w_t, _, denominator = ctx.saved_tensors
            g = _per_sample_grad(gy, s.shape[:1], ctx.reduction, denominator)
            return cross_entropy_backward_numba(s, idx[:, 0], w_t, g), None, None
        else:   # rebuild q of the docstring from the targets
            s, idx, valid, w_t, w, denominator = ctx.saved_tensors
            n_classes = s.shape[ax]
            q = _one_hot(idx, n_classes, s.ndim) * xp.expand_dims((1 - eps) * w_t, ax)
            if eps > 0:
                smooth = eps / n_classes if w is None else (eps / n_classes) * w
                q = q + smooth * xp.expand_dims(valid, ax).astype(s.dtype)
        loss_shape = s.shape[:ax] + s.shape[ax + 1:]
        g = xp.expand_dims(_per_sample_grad(gy, loss_shape, ctx.reduction, denominator), ax)
        gx = gt = None
        if ctx.needs_input_grad[0]:
            gx = g * (xp.exp(s) * q.sum(axis=ax, keepdims=True) - q)
        if ctx.probabilities and ctx.needs_input_grad[1]:
            gt = -(1 - eps) * g * s if w is None else -(1 - eps) * g * w * s
        return gx, gt, None


def _check_class_target(op, input, target, weight, ignore_index, allow_probabilities):
    """Validate a classification target; True when it holds class probabilities."""
    if input.ndim == 0:
        raise ValueError(f"{op}: input must have a class dimension, shape (C,) or (N, C, ...); got a 0-d tensor")
    ax = _class_axis(input.ndim)
    n_classes = input.shape[ax]
    expected = () if input.ndim == 1 else (input.shape[0],) + input.shape[2:]
    if weight is not None and tuple(weight.shape) != (n_classes,):
        raise ValueError(f"{op}: weight must have one entry per class, shape ({n_classes},), "
                         f"got shape {tuple(weight.shape)}")
    t = raw(target)
    if t.dtype.kind == "f":
        if not allow_probabilities:
            raise TypeError(f"{op}: target must hold integer class indices (int64), got dtype {t.dtype}")
        if tuple(t.shape) != input.shape:
            raise ValueError(f"{op}: a floating-point target holds class probabilities and must have "
                             f"the input's shape {input.shape}, got {tuple(t.shape)}; for class "
                             f"indices pass an integer target of shape {expected}")
        if ignore_index != -100:
            raise ValueError(f"{op}: ignore_index is not supported for class-probability "
                             f"(floating-point) targets")
        return True
    if t.dtype.kind not in "iu":
        raise TypeError(f"{op}: target must hold integer class indices (int64), got dtype {t.dtype}")
    if tuple(t.shape) != expected:
        raise ValueError(f"{op}: input of shape {input.shape} (classes on dim {ax}) needs a target "
                         f"of shape {expected}, got target of shape {tuple(t.shape)}")
    if is_cupy_array(t):
        return False   # checked on the device instead: see _target_setup
    # one boolean comes back to the host: a label out of range must fail here, not as a
    # wrong gather (PyTorch checks the same on the CPU)
    out_of_range = (t != ignore_index) & ((t < 0) | (t >= n_classes))
    if bool(out_of_range.any()):
        bad = int(t[out_of_range].reshape(-1)[0])
        raise IndexError(f"{op}: target {bad} is out of range for {n_classes} classes "
                         f"(expected 0 <= target < {n_classes}, or ignore_index={ignore_index})")
    return False


# ================================================================ public functions
def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
                  reduction="mean", label_smoothing=0.0):
    """Softmax cross-entropy between logits ``input`` and ``target``, as torch.nn.functional.

    input   (C,), (N, C) or (N, C, d1, d2, ...) unnormalised scores; classes on dim 1
            (e.g. SuperPoint's (N, 65, H/8, W/8) detector head)
    target  integer class indices of shape (), (N,) or (N, d1, ...), entries in [0, C) or
            ``ignore_index``; or class probabilities: a float tensor of the input's shape
    weight  (C,) rescaling per class; 'mean' then divides by the weights of the counted targets
    label_smoothing  eps in [0, 1]: the target becomes (1 - eps) target + eps / C
    """
    reduction = _reduction_mode(size_average, reduce, reduction, "cross_entropy")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be between 0.0 and 1.0, got {label_smoothing}")
    _check_device("cross_entropy", input=input, target=target, weight=weight)
    _check_no_grad_weight("cross_entropy", weight=weight)
    probabilities = _check_class_target("cross_entropy", input, target, weight, ignore_index, True)
    return CrossEntropy.apply(input, target, weight, ignore_index=ignore_index, reduction=reduction,
                              label_smoothing=float(label_smoothing), probabilities=probabilities)


def nll_loss(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
             reduction="mean"):
    """Negative log-likelihood of log-probabilities ``input`` (shapes as cross_entropy;
    class-index targets only): cross_entropy(x, t) == nll_loss(log_softmax(x, 1), t)."""
    reduction = _reduction_mode(size_average, reduce, reduction, "nll_loss")
    _check_device("nll_loss", input=input, target=target, weight=weight)
    _check_no_grad_weight("nll_loss", weight=weight)
    _check_class_target("nll_loss", input, target, weight, ignore_index, False)
    return NLLLoss.apply(input, target, weight, ignore_index=ignore_index, reduction=reduction)


def mse_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    """Mean squared error; with ``weight`` (input's shape) 'mean' is sum(w l) / sum(w) as PyTorch."""
    reduction = _reduction_mode(size_average, reduce, reduction, "mse_loss")
    _check_device("mse_loss", input=input, target=target, weight=weight)
    _broadcast_target("mse_loss", input, target)
    _check_same_shape("mse_loss", "weight", weight, input)
    input, target = promoted(input, target)      # (float32 input, int64 target: float32)
    return MSELoss.apply(input, target, weight, reduction=reduction)


def l1_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    """Mean absolute error; with ``weight`` (input's shape) 'mean' is sum(w l) / sum(w) as PyTorch."""
    reduction = _reduction_mode(size_average, reduce, reduction, "l1_loss")
    _check_device("l1_loss", input=input, target=target, weight=weight)
    _broadcast_target("l1_loss", input, target)
    _check_same_shape("l1_loss", "weight", weight, input)
    input, target = promoted(input, target)      # (float32 input, int64 target: float32)
    return L1Loss.apply(input, target, weight, reduction=reduction)


def smooth_l1_loss(input, target, size_average=None, reduce=None, reduction="mean", beta=1.0):
    """Smooth L1 (Fast R-CNN's box regression loss): quadratic for |x - t| < beta, linear beyond."""
    reduction = _reduction_mode(size_average, reduce, reduction, "smooth_l1_loss")
    if beta < 0:
        raise ValueError(f"smooth_l1_loss: beta must be >= 0, got {beta}")
    _check_device("smooth_l1_loss", input=input, target=target)
    _broadcast_target("smooth_l1_loss", input, target)
    input, target = promoted(input, target)      # (float32 input, int64 target: float32)
    return SmoothL1Loss.apply(input, target, None, reduction=reduction, beta=float(beta))


def huber_loss(input, target, reduction="mean", delta=1.0, weight=None):
    """Huber loss = delta * smooth_l1_loss(beta=delta); with ``weight`` 'mean' is mean(w l)
    (PyTorch divides by the element count here, unlike mse_loss)."""
    reduction = _reduction_mode(None, None, reduction, "huber_loss")
    if delta <= 0:
        raise ValueError(f"huber_loss: delta must be > 0, got {delta}")
    _check_device("huber_loss", input=input, target=target, weight=weight)
    _broadcast_target("huber_loss", input, target)
    _check_same_shape("huber_loss", "weight", weight, input)
    if isinstance(target, Tensor) and target.dtype != input.dtype:   # PyTorch's huber_loss computes in the
        target = cast(target, input.dtype)                          # input's dtype, unlike smooth_l1_loss
    return SmoothL1Loss.apply(input, target, weight, reduction=reduction, beta=float(delta),
                              scale=float(delta))


def binary_cross_entropy(input, target, weight=None, size_average=None, reduce=None, reduction="mean"):
    """BCE between probabilities ``input`` in [0, 1] and ``target`` of the same shape;
    ``weight`` broadcasts to the input. Logs are clamped to >= -100 as in PyTorch."""
    reduction = _reduction_mode(size_average, reduce, reduction, "binary_cross_entropy")
    _check_device("binary_cross_entropy", input=input, target=target, weight=weight)
    _check_no_grad_weight("binary_cross_entropy", weight=weight)
    _check_same_shape("binary_cross_entropy", "target", target, input)
    _check_broadcastable_to("binary_cross_entropy", "weight", weight, input.shape)
    x = input.array
    if not bool(((x >= 0) & (x <= 1)).all()):   # one host sync, as PyTorch's CPU check
        raise ValueError("binary_cross_entropy: all elements of input should be between 0 and 1 "
                         "(pass probabilities, e.g. sigmoid(logits), or use "
                         "binary_cross_entropy_with_logits on the logits)")
    return BinaryCrossEntropy.apply(input, target, weight, reduction=reduction)


def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None, reduce=None,
                                     reduction="mean", pos_weight=None):
    """BCE of sigmoid(input), computed stably from the logits. ``pos_weight`` (broadcast along
    the last dim, e.g. (C,) for (N, C)) multiplies the positive term: recall vs precision."""
    op = "binary_cross_entropy_with_logits"
    reduction = _reduction_mode(size_average, reduce, reduction, op)
    _check_device(op, input=input, target=target, weight=weight, pos_weight=pos_weight)
    _check_no_grad_weight(op, weight=weight, pos_weight=pos_weight)
    _check_same_shape(op, "target", target, input)
    _check_broadcastable_to(op, "weight", weight, input.shape)
    _check_broadcastable_to(op, "pos_weight", pos_weight, input.shape)
    return BinaryCrossEntropyWithLogits.apply(input, target, weight, pos_weight, reduction=reduction)


def kl_div(input, target, size_average=None, reduce=None, reduction="mean", log_target=False):
    """KL(target || q) with ``input`` = log q. 'batchmean' (sum / N) is the true KL divergence;
    'mean' divides by every element, as PyTorch (which warns about it)."""
    reduction = _reduction_mode(size_average, reduce, reduction, "kl_div",
                                allowed=("none", "mean", "sum", "batchmean"))
    _check_device("kl_div", input=input, target=target)
    _broadcast_target("kl_div", input, target)
    return KLDiv.apply(input, target, reduction=reduction, log_target=bool(log_target))


def poisson_nll_loss(input, target, log_input=True, full=False, size_average=None, eps=1e-8, reduce=None,
                     reduction="mean"):
    """Poisson NLL of counts ``target`` under rates exp(input) (``log_input``) or input;
    ``full`` adds the Stirling approximation of log(target!)."""
    reduction = _reduction_mode(size_average, reduce, reduction, "poisson_nll_loss")
    _check_device("poisson_nll_loss", input=input, target=target)
    _broadcast_target("poisson_nll_loss", input, target)
    input, target = promoted(input, target)      # float32 and float64: float64, as PyTorch
    return PoissonNLL.apply(input, target, log_input=bool(log_input), full=bool(full), eps=float(eps),
                            reduction=reduction)


def gaussian_nll_loss(input, target, var, full=False, eps=1e-6, reduction="mean"):
    """Gaussian NLL of ``target`` under N(input, var): ``var`` has the input's shape, one entry
    per sample (its last dim 1, or missing), size 1 in one other dim, or is one number;
    entries below ``eps`` count as eps."""
    op = "gaussian_nll_loss"
    reduction = _reduction_mode(None, None, reduction, op)
    if not isinstance(var, Tensor):
        var = input._xp.asarray(var, dtype=input.dtype)
        if var.ndim == 0:                # a number: one variance for every entry, as PyTorch
            var = input._xp.full(input.shape, var, dtype=input.dtype)
        var = Tensor(var)
    _check_device(op, input=input, target=target, var=var)
    if var.shape != input.shape:
        differ = [k for k, (n, m) in enumerate(zip(input.shape, var.shape)) if n != m]
        if var.shape == input.shape[:-1]:
            var = var.unsqueeze(-1)
        elif not (var.ndim == input.ndim and len(differ) == 1 and var.shape[differ[0]] == 1):
            raise ValueError(f"{op}: var of shape {var.shape} must have the input's shape {input.shape}, "
                             f"one entry per sample {input.shape[:-1]} (+ (1,)), or size 1 in one dim of "
                             f"the input's shape")
    if bool((var.array < 0).any()):      # one host sync, as PyTorch's check
        raise ValueError(f"{op}: var has negative entries")
    _broadcast_target(op, input, target)
    input, target, var = promoted(input, target, var)    # float32 and float64: float64, as PyTorch
    return GaussianNLL.apply(input, target, var, full=bool(full), eps=float(eps), reduction=reduction)


def soft_margin_loss(input, target, size_average=None, reduce=None, reduction="mean"):
    """Logistic loss log(1 + exp(-y x)) with labels ``target`` = +-1 (input's shape)."""
    reduction = _reduction_mode(size_average, reduce, reduction, "soft_margin_loss")
    _check_device("soft_margin_loss", input=input, target=target)
    _check_no_grad_weight("soft_margin_loss", target=target)
    _check_same_shape("soft_margin_loss", "target", target, input)
    return SoftMargin.apply(input, target, reduction=reduction)


def multilabel_soft_margin_loss(input, target, weight=None, size_average=None, reduce=None, reduction="mean"):
    """Multi-label one-versus-all loss: per sample, the mean over the C classes (last dim) of
    the binary cross-entropy of sigmoid(input) and 0/1 ``target``; ``weight`` (C,) per class."""
    op = "multilabel_soft_margin_loss"
    reduction = _reduction_mode(size_average, reduce, reduction, op)
    _check_device(op, input=input, target=target, weight=weight)
    _check_no_grad_weight(op, weight=weight)
    _check_same_shape(op, "target", target, input)
    if input.ndim == 0:
        raise ValueError(f"{op}: input must have a class dimension, got a 0-d tensor")
    _check_broadcastable_to(op, "weight", weight, input.shape)
    # float32 and float64 (the weight's too): float64, as PyTorch
    input, target, weight = promoted(input, target, weight) if weight is not None else \
        (*promoted(input, target), None)
    return MultiLabelSoftMargin.apply(input, target, weight, reduction=reduction)


def margin_ranking_loss(input1, input2, target, margin=0.0, size_average=None, reduce=None, reduction="mean"):
    """max(0, margin - target (input1 - input2)) with labels ``target`` = +-1."""
    op = "margin_ranking_loss"
    reduction = _reduction_mode(size_average, reduce, reduction, op)
    _check_device(op, input1=input1, input2=input2, target=target)
    if not (input1.ndim == input2.ndim == target.ndim):
        raise ValueError(f"{op}: input1, input2 and target must have the same number of dimensions, got "
                         f"shapes {input1.shape}, {input2.shape} and {tuple(target.shape)}")
    return MarginRanking.apply(input1, input2, target, margin=float(margin), reduction=reduction)


def hinge_embedding_loss(input, target, margin=1.0, size_average=None, reduce=None, reduction="mean"):
    """Pull similar pairs (``target`` 1: loss x) and push dissimilar ones (-1: max(0, margin - x))."""
    reduction = _reduction_mode(size_average, reduce, reduction, "hinge_embedding_loss")
    _check_device("hinge_embedding_loss", input=input, target=target)
    _check_same_shape("hinge_embedding_loss", "target", target, input)
    return HingeEmbedding.apply(input, target, margin=float(margin), reduction=reduction)


def cosine_embedding_loss(input1, input2, target, margin=0.0, size_average=None, reduce=None, reduction="mean"):
    """1 - cos(x1, x2) for similar pairs (``target`` 1), max(0, cos - margin) for dissimilar
    ones (-1); cosines along the last dim of (N, D) or (D,) inputs."""
    op = "cosine_embedding_loss"
    reduction = _reduction_mode(size_average, reduce, reduction, op)
    _check_device(op, input1=input1, input2=input2, target=target)
    if input1.shape != input2.shape or input1.ndim not in (1, 2) or tuple(target.shape) != input1.shape[:-1]:
        raise ValueError(f"{op}: expected input1 and input2 of one shape (N, D) or (D,) and target of "
                         f"shape (N,) or (), got {input1.shape}, {input2.shape} and {tuple(target.shape)}")
    input1, input2 = promoted(input1, input2)    # float32 and float64: float64, as PyTorch (not the target)
    return CosineEmbedding.apply(input1, input2, target, margin=float(margin), reduction=reduction)


def triplet_margin_loss(anchor, positive, negative, margin=1.0, p=2, eps=1e-6, swap=False, size_average=None,
                        reduce=None, reduction="mean"):
    """max(0, margin + d(anchor, positive) - d(anchor, negative)), d the p-norm distance of
    F.pairwise_distance along the last dim (inputs of one rank, broadcast together);
    ``swap`` uses d(positive, negative) when smaller (Balntas et al.)."""
    op = "triplet_margin_loss"
    reduction = _reduction_mode(size_average, reduce, reduction, op)
    _check_device(op, anchor=anchor, positive=positive, negative=negative)
    if not (anchor.ndim == positive.ndim == negative.ndim):
        raise ValueError(f"{op}: anchor, positive and negative must have the same number of dimensions "
                         f"(distances are taken along the last), got {anchor.shape}, {positive.shape} and "
                         f"{negative.shape}")
    try:
        np.broadcast_shapes(anchor.shape, positive.shape, negative.shape)
    except ValueError:
        raise ValueError(f"{op}: anchor, positive and negative of shapes {anchor.shape}, {positive.shape} and "
                         f"{negative.shape} cannot be broadcast together") from None
    check_p(p, op)
    if anchor.ndim == 0:                 # a 0-d input is a vector of one entry, as PyTorch
        anchor, positive, negative = anchor.reshape(1), positive.reshape(1), negative.reshape(1)
    anchor, positive, negative = promoted(anchor, positive, negative)   # float32 and float64: float64
    return TripletMargin.apply(anchor, positive, negative, margin=float(margin), p=float(p), eps=float(eps),
                               swap=bool(swap), reduction=reduction)


def multi_margin_loss(input, target, p=1, margin=1.0, weight=None, size_average=None, reduce=None,
                      reduction="mean"):
    """Multi-class hinge loss (Weston-Watkins / Crammer-Singer style) of scores (N, C) or (C,)
    and class indices; ``weight`` (C,) weighs each sample by its true class."""
    op = "multi_margin_loss"
    reduction = _reduction_mode(size_average, reduce, reduction, op)
    if p not in (1, 2):
        raise ValueError(f"{op}: only p == 1 and p == 2 are supported, got {p}")
    _check_device(op, input=input, target=target, weight=weight)
    _check_no_grad_weight(op, weight=weight)
    if input.ndim not in (1, 2):
        raise ValueError(f"{op}: input must be (N, C) or (C,), got shape {input.shape}")
    t = raw(target)
    if t.dtype.kind not in "iu" or tuple(t.shape) != input.shape[:-1]:
        raise ValueError(f"{op}: target must hold integer class indices of shape {input.shape[:-1]}, got "
                         f"{t.dtype} of shape {tuple(t.shape)}")
    if weight is not None and tuple(weight.shape) != input.shape[-1:]:
        raise ValueError(f"{op}: weight must have one entry per class {input.shape[-1:]}, "
                         f"got {tuple(weight.shape)}")
    _check_index_range(t, input.shape[-1], op, f"{input.shape[-1]} classes")
    return MultiMargin.apply(input, target, weight, p=int(p), margin=float(margin), reduction=reduction)


def triplet_margin_with_distance_loss(anchor, positive, negative, *, distance_function=None, margin=1.0,
                                      swap=False, reduction="mean"):
    """triplet_margin_loss with any ``distance_function(x1, x2)`` -> distances (default
    pairwise_distance). Composed from the ops the distance uses, so autograd
    differentiates whatever distance is given (e.g. 1 - cosine_similarity)."""
    op = "triplet_margin_with_distance_loss"
    reduction = _reduction_mode(None, None, reduction, op)
    if not (anchor.ndim == positive.ndim == negative.ndim):
        raise ValueError(f"{op}: anchor, positive and negative must have the same number of dimensions, got "
                         f"{anchor.shape}, {positive.shape} and {negative.shape}")
    if margin <= 0:
        raise ValueError(f"{op}: margin must be greater than 0, got {margin}")
    from .distance import pairwise_distance
    dist = distance_function if distance_function is not None else pairwise_distance
    d_pos, d_neg = dist(anchor, positive), dist(anchor, negative)
    if swap:
        d_neg = d_neg.minimum(dist(positive, negative))
    loss = (margin + d_pos - d_neg).clamp(min=0)
    return loss if reduction == "none" else (loss.sum() if reduction == "sum" else loss.mean())


def multilabel_margin_loss(input, target, size_average=None, reduce=None, reduction="mean"):
    """Multi-label hinge loss of scores (N, C) or (C,): ``target`` (int, input's shape) lists
    each sample's classes, ended by -1 (e.g. [3, 0, -1, 1]: classes 3 and 0)."""
    op = "multilabel_margin_loss"
    reduction = _reduction_mode(size_average, reduce, reduction, op)
    _check_device(op, input=input, target=target)
    t = raw(target)
    if input.ndim not in (1, 2) or t.dtype.kind not in "iu" or tuple(t.shape) != input.shape:
        raise ValueError(f"{op}: expected scores (N, C) or (C,) and an integer target of their shape, got "
                         f"{input.shape} and {t.dtype} {tuple(t.shape)}")
    if t.size and (int(t.min()) < -1 or int(t.max()) >= input.shape[-1]):   # one host sync
        raise IndexError(f"{op}: target entries must be class indices in [0, {input.shape[-1]}) or -1, got "
                         f"values in [{int(t.min())}, {int(t.max())}]")
    return MultiLabelMargin.apply(input, target, reduction=reduction)


def ctc_loss(log_probs, targets, input_lengths, target_lengths, blank=0, reduction="mean", zero_infinity=False):
    """CTC loss of ``log_probs`` (T, N, C) (or unbatched (T, C); the output of log_softmax)
    and label sequences: ``targets`` padded (N, S) or concatenated (sum(target_lengths),),
    with ``input_lengths`` / ``target_lengths`` (N,) (tuples or tensors); ``blank`` is the
    blank class. 'mean' divides each loss by its target length, then averages."""
    op = "ctc_loss"
    reduction = _reduction_mode(None, None, reduction, op)
    xp = log_probs._xp
    unbatched = log_probs.ndim == 2
    lp = log_probs.unsqueeze(1) if unbatched else log_probs
    if lp.ndim != 3:
        raise ValueError(f"{op}: log_probs must be (T, N, C) or (T, C), got shape {log_probs.shape}")
    T, N, C = lp.shape
    # lengths and labels steer Python-level bookkeeping: they are read on the host once
    host = lambda v: np.asarray(to_host(raw(v)))
    in_len = host(input_lengths).reshape(-1).astype(np.int64)
    tgt_len = host(target_lengths).reshape(-1).astype(np.int64)
    tgt = host(targets).astype(np.int64)
    if unbatched:
        tgt = tgt.reshape(1, -1)
    if in_len.shape != (N,) or tgt_len.shape != (N,):
        raise ValueError(f"{op}: input_lengths and target_lengths need one entry per sample ({N}), got "
                         f"{in_len.size} and {tgt_len.size}")
    if (in_len < 1).any() or (in_len > T).any():
        raise ValueError(f"{op}: input_lengths must be in [1, {T}], got {in_len.tolist()}")
    if tgt.ndim == 1:       # concatenated targets: split them by their lengths
        if tgt.size != tgt_len.sum():
            raise ValueError(f"{op}: {tgt.size} concatenated targets but target_lengths sum to {tgt_len.sum()}")
        starts = np.concatenate([[0], np.cumsum(tgt_len)[:-1]])
        padded = np.full((N, max(int(tgt_len.max(initial=0)), 1)), blank, dtype=np.int64)
        for n in range(N):
            padded[n, :tgt_len[n]] = tgt[starts[n]:starts[n] + tgt_len[n]]
        tgt = padded
    if tgt.shape[0] != N or (tgt_len > tgt.shape[1]).any() or (tgt_len < 0).any():
        raise ValueError(f"{op}: targets of shape {tgt.shape} do not hold target_lengths {tgt_len.tolist()}")
    labels = [tgt[n, :tgt_len[n]] for n in range(N)]
    if any(((l < 0) | (l >= C) | (l == blank)).any() for l in labels):
        raise ValueError(f"{op}: target labels must be classes in [0, {C}) other than the blank ({blank})")
    # the extended targets l' = (blank, l1, blank, ..., lL, blank), padded with blanks
    S = 2 * tgt.shape[1] + 1
    ext = np.full((N, S), blank, dtype=np.int64)
    ext[:, 1::2] = tgt
    out = CTC.apply(lp, xp.asarray(ext), xp.asarray(in_len), xp.asarray(2 * tgt_len + 1), blank=int(blank),
                    zero_infinity=bool(zero_infinity), reduction=reduction,
                    target_len=xp.asarray(tgt_len.astype(lp.dtype)))
    return out.squeeze(0) if unbatched and reduction == "none" else out
