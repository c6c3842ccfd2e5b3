"""Normalisation ops: batch norm, layer / group / instance norm, local response norm
(AlexNet), Lp normalisation.

Each op is a Function whose ``forward`` and ``backward`` work on raw arrays
(numpy or cupy); the public function under PyTorch's name checks the arguments
and calls ``Function.apply``. Shapes follow PyTorch: channels on axis 1,
``(N, C)``, ``(N, C, L)``, ``(N, C, H, W)``, ...
"""
import math
import numbers

import numpy as np

from ..autograd import Function, constant
from ..backend import get_array_module
from ..tensor import Tensor
from ..kernels import relu_backward, relu_forward
from ..kernels.norm import (batch_norm_affine, batch_norm_backward_fused, batch_norm_forward_fused,
                            batch_norm_grad_sums, batch_norm_input_grad, batch_norm_route, batch_norm_stats)
from .checks import check_same_kind
from .distance import pnorm
from .math import raw
from .resample import ZeroPad

__all__ = ["batch_norm", "batch_norm_relu", "layer_norm", "group_norm", "instance_norm", "local_response_norm",
           "normalize"]


def _per_channel(a, ndim):
    """A (C,) array shaped (1, C, 1, ..., 1) so it broadcasts over an ndim-D input."""
    return a.reshape((1, -1) + (1,) * (ndim - 2))


# ---------------------------------------------------------------- batch norm
class BatchNorm(Function):
    """Batch normalisation over every axis but the channel axis 1.

    Per channel, with the m = N*H*W values x_i of that channel (one "batch"):

        mu = (1/m) sum_i x_i,   var = (1/m) sum_i (x_i - mu)^2    (biased: it normalises)
        xhat_i = (x_i - mu) / sqrt(var + eps)
        y_i = gamma * xhat_i + beta

    In training mode mu and var are the batch statistics; the running buffers
    are updated in place (PyTorch's rule, with the *unbiased* variance):

        running_mean <- (1 - momentum) * running_mean + momentum * mu
        running_var  <- (1 - momentum) * running_var  + momentum * var * m / (m - 1)

    In evaluation mode mu and var are the running buffers: constants.

    Backward. With s = 1/sqrt(var + eps) and g_i = dL/dy_i:

        dL/dbeta  = sum_i g_i
        dL/dgamma = sum_i g_i * xhat_i
        eval:     dL/dx_i = g_i * gamma * s                       (mu, var constant)
        training: dL/dx_i = (gamma * s / m) * (m g_i - sum_j g_j - xhat_i sum_j g_j xhat_j)

    The training formula is the chain rule through mu and var too: xhat_i
    depends on every x_j of its channel via mu (d mu/dx_j = 1/m) and var
    (d var/dx_j = 2 (x_j - mu)/m); collecting the three paths gives the
    compact form above. Its two sums remove from g the part along the constant
    vector and the part along xhat: shifting or scaling a channel's input
    leaves its output unchanged, so those directions get no gradient.

    How it runs (tinydl/kernels/norm.py): x_hat is never stored. Forward is
    one pass for the statistics and one for y = (x - mu) * (gamma s) + beta;
    backward is one pass for the two sums, with sum_j g_j xhat_j =
    s * sum_j g_j (x_j - mu), and one for dx written per channel as

        dx_i = g_i * (gamma s) + (x_i - mu) * k + b,
        k = -(gamma s) * s^2 * sum_j g_j (x_j - mu) / m,   b = -(gamma s) * sum_j g_j / m

    (the training formula above, multiplied out). Each pass reads the big
    arrays once, as PyTorch's CPU kernels do.

    With a residual r and ``relu`` (a ResNet block's end, ``batch_norm_relu``), the
    output is z = max(y + r, 0): dL/dr = g' = g * (z > 0) and the formulas above
    run on g' (ReLU's backward, then the sum's, then batch norm's).

    The 'fused' route (``batch_norm_route``) computes the same in one call per
    direction, the (C,)-vector steps, the residual and the ReLU included: on the
    CPU one Numba kernel; on the GPU three CUDA kernels instead of about 27 forward
    and 18 backward launches (there only where forced until a GPU has run them:
    kernels/norm.py, FUSED_ON_CUDA_BY_DEFAULT).
    """

    double_backward = "composite"

    def forward(ctx, x, weight, bias, residual=None, running_mean=None, running_var=None,
                training=False, momentum=0.1, eps=1e-5, relu=False):
        m = x.size // x.shape[1]                    # values per channel
        ctx.training, ctx.m = training, max(m, 1)   # m = 0: the sums are 0 and gx is empty
        ctx.has_weight, ctx.has_bias, ctx.relu = weight is not None, bias is not None, relu
        ctx.route = batch_norm_route(x, weight, bias, running_mean, running_var, residual)   # one call, or None
        if ctx.route is not None:
            y, saved = batch_norm_forward_fused(x, weight, bias, running_mean, running_var, training, momentum, eps,
                                                residual, relu)
            ctx.save_for_backward(x, *saved, y if relu else None)
            return y
        xp = get_array_module(x)
        if training and m == 0:                     # an empty batch: no statistics, the buffers stay (PyTorch)
            mean = var = xp.zeros(x.shape[1], dtype=x.dtype)
        elif training:
            mean, var = batch_norm_stats(x, xp.float64)     # biased: 1/m; float64 (kernels/norm.py)
            if running_mean is not None:            # in place: these are the module's buffers
                running_mean *= 1 - momentum
                running_mean += momentum * mean.astype(running_mean.dtype, copy=False)
            if running_var is not None:
                unbiased = var * (m / (m - 1))
                running_var *= 1 - momentum
                running_var += momentum * unbiased.astype(running_var.dtype, copy=False)
        else:
            mean = running_mean.astype(x.dtype, copy=False)
            var = running_var.astype(x.dtype, copy=False)
        inv_std = 1 / xp.sqrt(var + eps)
        scale = inv_std if weight is None else weight * inv_std         # gamma * s, per channel
        shift = xp.zeros_like(scale) if bias is None else bias          # beta
        y = batch_norm_affine(x, mean, scale, shift)                    # (x - mu) * gamma s + beta
        if residual is not None:
            y += residual
        if relu:
            y = relu_forward(y)                                         # max(y, 0)
        ctx.save_for_backward(x, mean, inv_std, scale, y if relu else None)
        return y

    def composite(ctx, x, weight, bias, residual=None, running_mean=None, running_var=None,
                  training=False, momentum=0.1, eps=1e-5, relu=False):
        """The formulas above in recorded ops (the running buffers are left alone)."""
        axes = (0,) + tuple(range(2, x.ndim))
        shape = (1, -1) + (1,) * (x.ndim - 2)
        if training:
            centred = x - x.mean(axes, keepdim=True)
            var = (centred * centred).mean(axes, keepdim=True)
        else:
            centred = x - constant(running_mean.reshape(shape), x)
            var = constant(running_var.reshape(shape), x)
        y = centred / (var + eps).sqrt()
        if weight is not None:
            y = y * weight.reshape(shape)
        if bias is not None:
            y = y + bias.reshape(shape)
        if residual is not None:
            y = y + residual
        return y.relu() if relu else y

    def backward(ctx, gy):
        x, mean, inv_std, scale, y = ctx.saved_tensors
        m = ctx.m
        need_x, need_w, need_b, need_r = ctx.needs_input_grad
        need_sums = (need_x and ctx.training) or (ctx.has_weight and need_w) or (ctx.has_bias and need_b)
        if ctx.route is not None:
            gx, gweight, gbias, gresidual = batch_norm_backward_fused(
                gy, x, (mean, inv_std, scale), ctx.training, need_x, need_sums, y, need_r)
            return (gx, gweight if ctx.has_weight and need_w else None,
                    gbias if ctx.has_bias and need_b else None, gresidual)
        if ctx.relu:
            gy = relu_backward(gy, y)                                   # 0 where y <= 0
        if need_sums:   # the two per-channel sums serve both dx (training) and dgamma / dbeta
            sum_g, sum_g_xc = batch_norm_grad_sums(gy, x, mean)         # sum g, sum g (x - mu)
            sum_g_xhat = sum_g_xc * inv_std
        gx = None
        if need_x:
            if ctx.training:   # gx = (gamma s / m) (m g - sum g - x_hat sum g x_hat), multiplied out
                k = -scale * inv_std * sum_g_xhat / m
                gx = batch_norm_input_grad(gy, x, mean, scale, k, -scale * sum_g / m)
            else:
                gx = gy * _per_channel(scale, gy.ndim)
        gweight = sum_g_xhat.astype(gy.dtype, copy=False) if ctx.has_weight and need_w else None
        gbias = sum_g if ctx.has_bias and need_b else None
        return gx, gweight, gbias, gy if need_r else None


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5):
    """Batch normalisation, as ``torch.nn.functional.batch_norm``.

    ``input`` is (N, C) or (N, C, *spatial); statistics are per channel over
    every other axis. ``training=True`` normalises with the batch statistics
    and, when ``running_mean`` / ``running_var`` are given, updates them in
    place with ``momentum`` (unbiased variance, as PyTorch); ``training=False``
    normalises with the running statistics. ``momentum=None`` (cumulative
    average) is resolved by the BatchNorm layers, which pass 1/num_batches.
    """
    return _batch_norm("batch_norm", input, running_mean, running_var, weight, bias, training, momentum, eps)


def batch_norm_relu(input, running_mean, running_var, weight=None, bias=None, training=False,
                    momentum=0.1, eps=1e-5, residual=None):
    """``relu(batch_norm(input, ...) + residual)`` (no residual: ``relu(batch_norm(input, ...))``),
    in one pass: the end of a ResNet block (not in PyTorch). The same numbers as the three
    ops; on the CPU one kernel a direction instead of three, and neither the batch norm's
    output nor the sum is kept. ``residual`` has the input's shape."""
    return _batch_norm("batch_norm_relu", input, running_mean, running_var, weight, bias, training, momentum, eps,
                       residual, relu=True)


def _batch_norm(op, input, running_mean, running_var, weight, bias, training, momentum, eps, residual=None,
                relu=False):
    """Check the arguments, then run the BatchNorm op (``residual``: added before the optional ReLU)."""
    if input.ndim < 2:
        raise ValueError(f"{op}: expected an input of shape (N, C, ...), got shape {input.shape}")
    C = input.shape[1]
    check_same_kind(op, input, ("weight", weight), ("bias", bias), ("running_mean", running_mean),
                    ("running_var", running_var), ("residual", residual))
    for name, t in (("running_mean", running_mean), ("running_var", running_var),
                    ("weight", weight), ("bias", bias)):
        if t is not None and tuple(t.shape) != (C,):
            raise RuntimeError(f"{op}: {name} has shape {tuple(t.shape)} but the input "
                               f"(shape {input.shape}) has {C} channels")
    if residual is not None and tuple(residual.shape) != tuple(input.shape):
        raise RuntimeError(f"{op}: the residual has shape {tuple(residual.shape)}, the input "
                           f"{tuple(input.shape)}: they must be equal")
    if training:
        if input.numel() // max(C, 1) == 1:        # none (an empty batch) is fine, as in PyTorch
            raise ValueError(f"{op}: expected more than 1 value per channel when training, "
                             f"got input size {input.shape}")
        if momentum is None:
            raise ValueError(f"{op}: momentum=None (cumulative average) is handled by the "
                             "BatchNorm layers; pass a number to the functional form")
    elif running_mean is None or running_var is None:
        raise RuntimeError(f"{op}: running_mean and running_var must be given in evaluation "
                           "mode (training=False)")
    return BatchNorm.apply(input, weight, bias, residual, running_mean=raw(running_mean),
                           running_var=raw(running_var), training=bool(training),
                           momentum=momentum, eps=eps, relu=relu)


# ---------------------------------------------------------------- layer / group / instance norm
class _Standardize(Function):
    """Standardise rows of x, then an optional affine map: the one core of layer, group and
    instance norm (the subclasses below only name it).

    x is read (C order) as a matrix of ``rows`` rows of K values each; a row holds the
    values that share a mean and a variance. Layer norm: one row per position of the
    leading dims, K = the product of ``normalized_shape``; group norm: one row per
    (sample, group), K = (C / G) * H * W; instance norm: one row per (sample, channel).
    Per row:

        mu = (1/K) sum_k x_k,   var = (1/K) sum_k (x_k - mu)^2      (biased: it normalises)
        s = 1 / sqrt(var + eps),   xhat_k = (x_k - mu) * s
        y = xhat * gamma + beta

    gamma and beta are reshaped to ``affine_shape`` and broadcast over x: layer norm's
    have ``normalized_shape`` (one per element of a row), group and instance norm's are
    per channel, (1, C, 1, ..., 1).

    Backward. With g = dL/dy and h = g * gamma = dL/dxhat:

        dL/dbeta  = sum of g         over the axes beta was broadcast along
        dL/dgamma = sum of g * xhat  over the same axes
        dL/dx_k   = s * (h_k - mean_j h_j - xhat_k * mean_j (h_j xhat_j))     (j over the row)

    The last is batch norm's training formula with the row in place of the channel: x_k
    reaches every xhat_j of its row directly, through mu (d mu/dx_k = 1/K) and through
    var (d var/dx_k = 2 (x_k - mu) / K); collecting the three paths gives the form
    above. The two means take out of h its part along the constant vector and along
    xhat: shifting or scaling a row's input leaves xhat unchanged, so those directions
    get no gradient.

    ``running_mean`` / ``running_var`` (instance norm in training, C values each): updated
    in place as batch norm's, with the rows' statistics averaged over the N samples and
    the unbiased variance (var * K / (K - 1)):

        running_mean <- (1 - momentum) running_mean + momentum * mean_n mu_(n, c)
        running_var  <- (1 - momentum) running_var  + momentum * mean_n var_(n, c) K / (K - 1)
    """

    double_backward = "composite"

    def forward(ctx, x, weight, bias, rows, affine_shape, eps=1e-5, running_mean=None, running_var=None,
                momentum=0.1):
        ctx.dtype = x.dtype
        if x.dtype == np.float16:     # float32 arithmetic, as PyTorch (x^2 overflows float16 past 256)
            x, weight, bias = (None if a is None else a.astype(np.float32) for a in (x, weight, bias))
        K = x.size // rows if rows else 0
        n = max(K, 1)                               # (sums / n: an empty row gives 0, not 0/0)
        r = x.reshape(rows, K)
        mean = r.sum(axis=1, keepdims=True) / n
        centred = r - mean
        var = (centred * centred).sum(axis=1, keepdims=True) / n
        inv_std = 1 / get_array_module(x).sqrt(var + eps)
        xhat = (centred * inv_std).reshape(x.shape)
        if rows and running_mean is not None:       # in place: the module's buffers
            running_mean *= 1 - momentum
            running_mean += momentum * mean.reshape(-1, running_mean.size).mean(axis=0).astype(running_mean.dtype)
        if rows and running_var is not None:
            unbiased = var.reshape(-1, running_var.size).mean(axis=0) * (K / max(K - 1, 1))
            running_var *= 1 - momentum
            running_var += momentum * unbiased.astype(running_var.dtype)
        y = xhat
        if weight is not None:
            y = y * weight.reshape(affine_shape)
        if bias is not None:
            y = y + bias.reshape(affine_shape)
        ctx.n, ctx.row_shape, ctx.affine_shape = n, (rows, K), affine_shape
        ctx.param_shape = None if bias is None else bias.shape          # (C,) or normalized_shape
        lead = x.ndim - len(affine_shape)           # gamma, beta broadcast along these axes
        ctx.affine_axes = tuple(range(lead)) + tuple(lead + i for i, s in enumerate(affine_shape) if s == 1)
        ctx.save_for_backward(xhat, inv_std, weight)
        return y.astype(ctx.dtype, copy=False)

    def composite(ctx, x, weight, bias, rows, affine_shape, eps=1e-5, **running):
        """The formulas above in recorded ops (the running buffers are left alone)."""
        r = x.reshape(rows, x.numel() // rows if rows else 0)
        centred = r - r.mean(1, keepdim=True)
        var = (centred * centred).mean(1, keepdim=True)
        y = (centred / (var + eps).sqrt()).reshape(x.shape)
        if weight is not None:
            y = y * weight.reshape(affine_shape)
        if bias is not None:
            y = y + bias.reshape(affine_shape)
        return y

    def backward(ctx, gy):
        xhat, inv_std, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad
        axes, n = ctx.affine_axes, ctx.n
        if gy.dtype != xhat.dtype:      # float16: in float32, as the forward
            return tuple(None if g is None else g.astype(ctx.dtype)
                         for g in type(ctx).backward(ctx, gy.astype(xhat.dtype)))
        gweight = (gy * xhat).sum(axis=axes).reshape(weight.shape) if need_w else None
        gbias = gy.sum(axis=axes).reshape(ctx.param_shape) if need_b else None
        gx = None
        if need_x:
            h = gy if weight is None else gy * weight.reshape(ctx.affine_shape)     # dL/dxhat
            h, xh = h.reshape(ctx.row_shape), xhat.reshape(ctx.row_shape)     # (not -1: 0 rows)
            mean_h = h.sum(axis=1, keepdims=True) / n
            mean_h_xhat = (h * xh).sum(axis=1, keepdims=True) / n
            gx = (inv_std * (h - mean_h - xh * mean_h_xhat)).reshape(gy.shape)
        return gx, gweight, gbias


class LayerNorm(_Standardize):
    """Layer norm (``F.layer_norm``): one row per position of the leading dims, gamma and
    beta of ``normalized_shape`` (see ``_Standardize``)."""


class GroupNorm(_Standardize):
    """Group norm (``F.group_norm``): one row per (sample, group of C/G channels), gamma and
    beta per channel (see ``_Standardize``)."""


class InstanceNorm(_Standardize):
    """Instance norm (``F.instance_norm``, training): group norm with one channel per group,
    optionally updating running statistics (see ``_Standardize``)."""


def _shape_str(shape):
    return str(tuple(shape))


def _check_vector(op, name, t, size, input):
    if t is not None and tuple(t.shape) != (size,):
        raise RuntimeError(f"{op}: {name} has shape {_shape_str(t.shape)} but the input "
                           f"(shape {_shape_str(input.shape)}) has {size} channels")


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Layer normalisation over the last ``len(normalized_shape)`` dims, as
    ``torch.nn.functional.layer_norm``: each slice input[i, ..., :, :] of those dims is
    standardised with its own mean and (biased) variance, then multiplied elementwise by
    ``weight`` and shifted by ``bias`` (both of shape ``normalized_shape``)."""
    shape = (int(normalized_shape),) if isinstance(normalized_shape, numbers.Integral) else \
        tuple(int(s) for s in normalized_shape)
    if not shape:
        raise RuntimeError("layer_norm: normalized_shape must have at least one dim, got ()")
    k = len(shape)
    if input.ndim < k or tuple(input.shape[input.ndim - k:]) != shape:
        raise RuntimeError(f"layer_norm: normalized_shape={shape} expects an input of shape (*, "
                           f"{', '.join(map(str, shape))}), got input of shape {_shape_str(input.shape)}")
    check_same_kind("layer_norm", input, ("weight", weight), ("bias", bias))
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and tuple(t.shape) != shape:
            raise RuntimeError(f"layer_norm: {name} has shape {_shape_str(t.shape)}, expected "
                               f"normalized_shape {shape}")
    rows = math.prod(input.shape[:input.ndim - k])
    return LayerNorm.apply(input, weight, bias, rows=rows, affine_shape=shape, eps=eps)


def group_norm(input, num_groups, weight=None, bias=None, eps=1e-5):
    """Group normalisation, as ``torch.nn.functional.group_norm``: the C channels of
    ``input`` (N, C, *) split into ``num_groups`` groups of C / num_groups channels, each
    (sample, group) standardised with its own mean and (biased) variance, then a
    per-channel ``weight`` and ``bias`` (C,). One group: layer norm over (C, *) with a
    per-channel affine; C groups: instance norm."""
    if input.ndim < 2:
        raise RuntimeError(f"group_norm: expected an input of shape (N, C, *) with at least 2 dims, "
                           f"got shape {_shape_str(input.shape)}")
    N, C = input.shape[:2]
    if int(num_groups) != num_groups or num_groups < 1:
        raise ValueError(f"group_norm: num_groups must be a positive integer, got {num_groups}")
    num_groups = int(num_groups)
    if C % num_groups:
        raise RuntimeError(f"group_norm: the number of channels must be divisible by num_groups, got input "
                           f"of shape {_shape_str(input.shape)} ({C} channels) and num_groups={num_groups}")
    if N * C // num_groups * math.prod(input.shape[2:]) == 1:       # PyTorch's check, as is
        raise ValueError(f"group_norm: expected more than 1 value per channel when training, got input "
                         f"of shape {_shape_str(input.shape)}")
    check_same_kind("group_norm", input, ("weight", weight), ("bias", bias))
    _check_vector("group_norm", "weight", weight, C, input)
    _check_vector("group_norm", "bias", bias, C, input)
    return GroupNorm.apply(input, weight, bias, rows=N * num_groups, affine_shape=(C,) + (1,) * (input.ndim - 2),
                           eps=eps)


def instance_norm(input, running_mean=None, running_var=None, weight=None, bias=None, use_input_stats=True,
                  momentum=0.1, eps=1e-5):
    """Instance normalisation, as ``torch.nn.functional.instance_norm``: each (sample, channel)
    of ``input`` (N, C, *) standardised over its spatial values, then a per-channel
    ``weight`` and ``bias``. With ``use_input_stats`` (training) the running buffers, when
    given, are updated in place with the statistics averaged over the batch; without, the
    running statistics normalise (batch norm in evaluation mode)."""
    if input.ndim < 2:
        raise ValueError(f"instance_norm: expected an input of shape (N, C, *), got shape {_shape_str(input.shape)}")
    N, C = input.shape[:2]
    check_same_kind("instance_norm", input, ("weight", weight), ("bias", bias), ("running_mean", running_mean),
                    ("running_var", running_var))
    for name, t in (("weight", weight), ("bias", bias), ("running_mean", running_mean), ("running_var", running_var)):
        _check_vector("instance_norm", name, t, C, input)
    if not use_input_stats:
        if running_mean is None or running_var is None:
            raise RuntimeError("instance_norm: running_mean and running_var must be given when "
                               "use_input_stats=False")
        return _batch_norm("instance_norm", input, running_mean, running_var, weight, bias, False, momentum, eps)
    if momentum is None and (running_mean is not None or running_var is not None):
        raise ValueError("instance_norm: momentum must be a number to update the running statistics, got None")
    if math.prod(input.shape[2:]) == 1:
        raise ValueError(f"instance_norm: expected more than 1 spatial element when training, got input of "
                         f"shape {_shape_str(input.shape)}")
    return InstanceNorm.apply(input, weight, bias, rows=N * C, affine_shape=(C,) + (1,) * (input.ndim - 2),
                              eps=eps, running_mean=raw(running_mean), running_var=raw(running_var),
                              momentum=momentum)


# ---------------------------------------------------------------- local response norm
def _channel_window_sum(a, before, after):
    """out[:, c] = sum of a[:, c - before : c + after + 1] along axis 1, zeros outside
    (for a Tensor, in recorded ops: LocalResponseNorm's composite)."""
    C = a.shape[1]
    if isinstance(a, Tensor):
        padded = ZeroPad.apply(a, pad=(0, 0) * (a.ndim - 2) + (before, after), value=0.0)
        return sum((padded[:, shift:shift + C] for shift in range(1, before + after + 1)), padded[:, 0:C])
    xp = get_array_module(a)
    padded = xp.zeros((a.shape[0], C + before + after) + a.shape[2:], dtype=a.dtype)
    padded[:, before:before + C] = a
    out = padded[:, 0:C].copy()
    for shift in range(1, before + after + 1):   # `size` shifted slices: size is small (5 in AlexNet)
        out += padded[:, shift:shift + C]
    return out


class LocalResponseNorm(Function):
    """Local response normalisation across channels (AlexNet), PyTorch's formula:

        S_c = sum_{j in W(c)} x_j^2,   W(c) = [c - size//2, c + (size-1)//2]  (channels
              outside [0, C) count as 0)
        d_c = k + (alpha / size) * S_c
        y_c = x_c * d_c^(-beta)

    Note alpha is divided by ``size`` (the AlexNet paper's alpha is not).

    Backward. x_i enters y_i directly and every d_c whose window holds i,
    i.e. c in [i - (size-1)//2, i + size//2] (the mirrored window), with
    d d_c / d x_i = 2 (alpha/size) x_i:

        dL/dx_i = g_i d_i^(-beta)
                  - 2 beta (alpha/size) x_i * sum_{c: i in W(c)} g_c x_c d_c^(-beta-1)

    and g_c x_c d_c^(-beta-1) = g_c y_c / d_c, so the sum is the window sum of
    g * y / d over the mirrored window.
    """

    double_backward = "composite"

    def forward(ctx, x, size, alpha=1e-4, beta=0.75, k=1.0):
        s = _channel_window_sum(x * x, size // 2, (size - 1) // 2)
        d = k + (alpha / size) * s
        y = x * d ** -beta
        ctx.save_for_backward(x, d, y)
        ctx.size, ctx.alpha, ctx.beta = size, alpha, beta
        return y

    def composite(ctx, x, size, alpha=1e-4, beta=0.75, k=1.0):
        s = _channel_window_sum(x * x, size // 2, (size - 1) // 2)
        return x * (k + (alpha / size) * s) ** -beta

    def backward(ctx, gy):
        x, d, y = ctx.saved_tensors
        size, alpha, beta = ctx.size, ctx.alpha, ctx.beta
        through_d = _channel_window_sum(gy * y / d, (size - 1) // 2, size // 2)
        return gy * d ** -beta - (2 * beta * alpha / size) * x * through_d


def local_response_norm(input, size, alpha=1e-4, beta=0.75, k=1.0):
    """Local response normalisation over channels, as ``torch.nn.functional.local_response_norm``
    (AlexNet uses size=5, alpha=1e-4, beta=0.75, k=2)."""
    if input.ndim < 3:
        raise ValueError(f"local_response_norm: expected 3D or higher dimensional input "
                         f"(N, C, ...), got shape {input.shape}")
    if int(size) != size or size < 1:
        raise ValueError(f"local_response_norm: size must be a positive integer, got {size}")
    return LocalResponseNorm.apply(input, size=int(size), alpha=alpha, beta=beta, k=k)


# ---------------------------------------------------------------- Lp normalisation
class Normalize(Function):
    """y = x / max(||x||_p, eps) along ``dim`` (each vector scaled to unit Lp norm).

    With n = ||x||_p = (sum_j |x_j|^p)^(1/p) and r = max(n, eps):

        dL/dx_i = g_i / r - [n >= eps] * (sum_j g_j x_j) / r^2 * dn/dx_i
        dn/dx_i = sign(x_i) |x_i|^(p-1) / n^(p-1)        (p = 2: x_i / n)
        p = inf: n = max_j |x_j|, dn/dx_i = sign(x_i) on the maximal entries
                 (shared equally between ties, as PyTorch)

    Below eps the denominator is the constant eps and only the first term
    remains. PyTorch computes the same thing as x / norm(x).clamp_min(eps).
    """

    double_backward = "composite"

    def forward(ctx, x, p=2.0, dim=1, eps=1e-12):
        xp = get_array_module(x)
        a = xp.abs(x)
        if p == math.inf:
            n = a.max(axis=dim, keepdims=True)
        elif p == 2:
            n = xp.sqrt((x * x).sum(axis=dim, keepdims=True))
        elif p == 1:
            n = a.sum(axis=dim, keepdims=True)
        else:
            n = (a ** p).sum(axis=dim, keepdims=True) ** (1 / p)
        r = xp.maximum(n, x.dtype.type(eps))
        ctx.save_for_backward(x, n, r)
        ctx.p, ctx.dim, ctx.eps = p, dim, eps
        return x / r

    def composite(ctx, x, p=2.0, dim=1, eps=1e-12):
        _, n, _ = ctx.saved_tensors
        if p == math.inf:
            a = x.abs()
            top = a.array == n
            n_t = (a * constant(top / top.sum(axis=dim, keepdims=True), x)).sum(dim, keepdim=True)
        else:
            n_t = pnorm(x, p, dim, keepdims=True)
        return x / n_t.clamp(min=eps)            # the clamp passes the norm's gradient where n >= eps

    def backward(ctx, gy):
        x, n, r = ctx.saved_tensors
        xp = get_array_module(gy)
        p, dim = ctx.p, ctx.dim
        active = n >= ctx.eps                              # where the norm, not eps, divides
        safe_n = xp.where(active & (n > 0), n, 1)          # avoid 0/0 where the term is masked out
        if p == math.inf:
            top = xp.abs(x) == n
            dn = xp.sign(x) * top / top.sum(axis=dim, keepdims=True).astype(x.dtype)
        elif p == 2:
            dn = x / safe_n
        elif p == 1:
            dn = xp.sign(x)
        else:
            dn = xp.sign(x) * xp.abs(x) ** (p - 1) / safe_n ** (p - 1)
        g_r = -(gy * x).sum(axis=dim, keepdims=True) / (r * r)   # dL/dr
        return gy / r + xp.where(active, g_r, 0) * dn


def normalize(input, p=2.0, dim=1, eps=1e-12):
    """x / max(||x||_p, eps) along ``dim``, as ``torch.nn.functional.normalize``."""
    if not -input.ndim <= dim < input.ndim:
        raise IndexError(f"normalize: dim {dim} is out of range for an input of shape {input.shape}")
    p = float(p)
    if not p > 0:
        raise ValueError(f"normalize: p must be positive (or inf), got {p}")
    return Normalize.apply(input, p=p, dim=dim % input.ndim, eps=eps)
