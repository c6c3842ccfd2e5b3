"""Synchronised batch norm: batch statistics over the batch of every rank together.

Each rank holds part of the batch; ``SyncBatchNorm`` normalises every part
with the statistics of the whole batch, so W ranks with B samples each
compute exactly what one batch norm computes on the W*B samples (what a
ResNet-50 with a few images per GPU needs). The layer is
``tinydl.nn.SyncBatchNorm``; the communication goes through the default
process group of ``tinydl.distributed``.
"""
from ..autograd import Function
from ..backend import get_array_module
from ..kernels.norm import (batch_norm_affine, batch_norm_grad_sums, batch_norm_input_grad,
                            batch_norm_stats)
from .math import raw

__all__ = ["sync_batch_norm"]


class SyncBatchNorm(Function):
    """Batch norm (``ops.norm.BatchNorm``, training mode) with statistics over all ranks.

    Per channel, rank r holds m_r values of mean mu_r and biased variance v_r;
    the whole batch has M = sum_r m_r values. Forward gathers (m_r, mu_r, m_r v_r)
    from every rank (one all-gather of 3C numbers) and merges them:

        mu  = (1/M) sum_r m_r mu_r
        var = (1/M) sum_r [ m_r v_r + m_r (mu_r - mu)^2 ]       (biased: it normalises)

    (each part's spread around its own mean, plus its mean's distance from the
    whole batch's: no sum(x^2) - M mu^2 cancellation). Then, as batch norm,

        xhat_i = (x_i - mu) / sqrt(var + eps),   y_i = gamma * xhat_i + beta
        running_mean <- (1 - momentum) * running_mean + momentum * mu
        running_var  <- (1 - momentum) * running_var  + momentum * var * M / (M - 1)

    Backward. With s = 1/sqrt(var + eps) and g_i = dL/dy_i, batch norm's input
    gradient needs two sums over the whole batch, which one all-reduce of 2C
    numbers gives:

        S_g = sum_{all ranks} sum_i g_i,    S_gx = sum_{all ranks} sum_i g_i (x_i - mu)
        dL/dx_i = g_i * (gamma s) + (x_i - mu) * k + b,
        k = -(gamma s) * s^2 * S_gx / M,    b = -(gamma s) * S_g / M

    dL/dgamma = sum_i g_i xhat_i and dL/dbeta = sum_i g_i are this rank's own
    sums, as in PyTorch: DistributedDataParallel averages them over the ranks
    with every other parameter gradient.
    """

    def forward(ctx, x, weight, bias, running_mean=None, running_var=None, momentum=0.1, eps=1e-5,
                group=None):
        xp = get_array_module(x)
        C = x.shape[1]
        m = x.size // C if C else 0                         # this rank's values per channel
        if m:
            mean, var = batch_norm_stats(x)
        else:                                               # an empty part adds nothing
            mean = var = xp.zeros(C, dtype=x.dtype)
        parts = group.all_gather(xp.stack([xp.full(C, m, dtype=xp.float64), mean.astype(xp.float64),
                                           m * var.astype(xp.float64)]))     # (ranks, 3, C)
        counts, means, m2s = parts[:, 0], parts[:, 1], parts[:, 2]
        M = int(counts[:, 0].sum())
        if M <= 1:
            raise ValueError(f"SyncBatchNorm: expected more than 1 value per channel over all ranks when "
                             f"training, got {M} (input of shape {x.shape} on this rank)")
        mean64 = (counts * means).sum(axis=0) / M
        var64 = (m2s + counts * (means - mean64) ** 2).sum(axis=0) / M
        if running_mean is not None:                        # in place: these are the module's buffers
            running_mean *= 1 - momentum
            running_mean += (momentum * mean64).astype(running_mean.dtype, copy=False)
        if running_var is not None:
            running_var *= 1 - momentum
            running_var += (momentum * var64 * (M / (M - 1))).astype(running_var.dtype, copy=False)
        mean = mean64.astype(x.dtype)
        inv_std = (1 / xp.sqrt(var64 + eps)).astype(x.dtype)
        scale = inv_std if weight is None else weight * inv_std         # gamma * s, per channel
        shift = xp.zeros_like(scale) if bias is None else bias          # beta
        y = batch_norm_affine(x, mean, scale, shift) if m else xp.empty_like(x)
        ctx.save_for_backward(x, mean, inv_std, scale)
        ctx.M, ctx.group = M, group
        ctx.has_weight, ctx.has_bias = weight is not None, bias is not None
        return y

    def backward(ctx, gy):
        x, mean, inv_std, scale = ctx.saved_tensors
        xp = get_array_module(gy)
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        if x.size:
            sum_g, sum_g_xc = batch_norm_grad_sums(gy, x, mean)         # this rank's sums
        else:
            sum_g = sum_g_xc = xp.zeros_like(mean)
        gweight = sum_g_xc * inv_std if ctx.has_weight and need_w else None
        gbias = sum_g if ctx.has_bias and need_b else None
        gx = None
        if need_x:
            sums = xp.stack([sum_g, sum_g_xc])
            ctx.group.all_reduce(sums, "sum")                           # the whole batch's sums
            k = -scale * inv_std * inv_std * sums[1] / ctx.M
            gx = batch_norm_input_grad(gy, x, mean, scale, k, -scale * sums[0] / ctx.M) if x.size else gy.copy()
        return gx, gweight, gbias


def sync_batch_norm(input, running_mean, running_var, weight, bias, momentum, eps, group):
    """Training-mode batch norm of ``input`` (N, C, ...) with the statistics of every rank's
    batch together (``group``: the process group's array-level collectives)."""
    return SyncBatchNorm.apply(input, weight, bias, running_mean=raw(running_mean),
                               running_var=raw(running_var), momentum=momentum, eps=eps, group=group)
