"""Detection losses with torchvision.ops' names: the sigmoid focal loss (RetinaNet).

Detectors see far more background than objects; most background examples are
easy, yet their many small losses swamp the few objects. The focal loss scales
the cross-entropy of each example by ``(1 - p_t) ** gamma``, which is ~0 for a
well-classified example (p_t near 1), so training concentrates on the hard
ones; ``alpha`` additionally weights the positive class. (The other remedy,
choosing only the hardest negatives, is ``hard_negative_mining`` in anchors.py.)
"""
from ...autograd import Function
from ...backend import get_array_module
from ...ops.activation import _stable_sigmoid
from ...ops.loss import _reduce, _reduce_backward, _reduction_mode
from ...tensor import Tensor

__all__ = ["sigmoid_focal_loss"]


class SigmoidFocalLoss(Function):
    r"""Focal loss of logits x against targets t in [0, 1] (torchvision's formula).

    With p = sigmoid(x) and q = 1 - p = sigmoid(-x) (both computed without overflow):

        ce  = max(x, 0) - x t + log(1 + exp(-|x|))      BCE with logits, = -t log p - (1-t) log q
        m   = 1 - p_t = p (1 - t) + q t                 how wrong the prediction is
        a_t = alpha t + (1 - alpha)(1 - t)              (1 when alpha < 0)
        l   = a_t * ce * m^gamma

    Backward, using dp/dx = p q, dq/dx = -p q:

        dce/dx = p - t                 dce/dt = -x
        dm/dx  = (1 - 2t) p q          dm/dt  = q - p
        d(m^gamma) = gamma m^(gamma-1) dm          (taken as 0 where m = 0 and gamma != 1)
        dl/dx = a_t [ (p - t) m^gamma + ce gamma m^(gamma-1) (1 - 2t) p q ]
        dl/dt = a_t [ -x m^gamma + ce gamma m^(gamma-1) (q - p) ] + (2 alpha - 1) ce m^gamma
    """

    def forward(ctx, x, t, *, alpha, gamma, reduction):
        xp = get_array_module(x)
        p, q = _stable_sigmoid(x), _stable_sigmoid(-x)
        ce = xp.maximum(x, 0) - x * t + xp.log1p(xp.exp(-xp.abs(x)))
        m = p * (1 - t) + q * t
        mg = m ** gamma
        a_t = alpha * t + (1 - alpha) * (1 - t) if alpha >= 0 else None
        loss = ce * mg if a_t is None else a_t * ce * mg
        ctx.save_for_backward(x, t, p, q, ce, m, mg, a_t, loss)
        ctx.alpha, ctx.gamma, ctx.reduction = alpha, gamma, reduction
        return _reduce(loss, reduction)

    def backward(ctx, gy):
        x, t, p, q, ce, m, mg, a_t, loss = ctx.saved_tensors
        xp = get_array_module(x)
        alpha, gamma = ctx.alpha, ctx.gamma
        g, _ = _reduce_backward(gy, loss, ctx.reduction)
        if gamma == 0:
            dmg = xp.zeros_like(m)
        else:
            safe = xp.where(m > 0, m, 1)                  # m^(gamma-1) would be inf/nan at m = 0
            dmg = xp.where(m > 0, gamma * safe ** (gamma - 1), 1.0 if gamma == 1 else 0.0).astype(m.dtype)
        scale = 1 if a_t is None else a_t
        gx = gt = None
        if ctx.needs_input_grad[0]:
            gx = g * scale * ((p - t) * mg + ce * dmg * (1 - 2 * t) * p * q)
        if ctx.needs_input_grad[1]:
            gt = scale * (-x * mg + ce * dmg * (q - p))
            if a_t is not None:
                gt = gt + (2 * alpha - 1) * ce * mg
            gt = g * gt
        return gx, gt


def sigmoid_focal_loss(inputs, targets, alpha=0.25, gamma=2, reduction="none"):
    """Focal loss of "Focal Loss for Dense Object Detection", as ``torchvision.ops.sigmoid_focal_loss``.

    inputs: logits of any shape; targets: same shape, 0/1 labels (or soft labels in [0, 1]).
    alpha: weight of the positives in (0, 1), or -1 for none; gamma: focusing exponent
    (0 gives plain BCE with logits). reduction: 'none' | 'mean' | 'sum'.
    Differentiable w.r.t. inputs and targets.
    """
    op = "sigmoid_focal_loss"
    if not isinstance(inputs, Tensor):
        raise TypeError(f"{op}: inputs must be a Tensor, got {type(inputs).__name__}")
    if inputs.dtype.kind != "f":
        raise TypeError(f"{op}: inputs must be floating point (logits), got {inputs.dtype}")
    reduction = _reduction_mode(None, None, reduction, op)
    t = targets if isinstance(targets, Tensor) else Tensor(inputs._xp.asarray(targets))
    if t.shape != inputs.shape:
        raise ValueError(f"{op}: targets of shape {t.shape} must have the shape of the inputs {inputs.shape}")
    if get_array_module(t.array) is not inputs._xp:
        raise RuntimeError(f"{op}: inputs and targets are on different devices ({inputs.device} and {t.device})")
    if t.dtype != inputs.dtype:
        t = Tensor(t.array.astype(inputs.dtype)) if not t.requires_grad else t.to(inputs.dtype)
    return SigmoidFocalLoss.apply(inputs, t, alpha=float(alpha), gamma=float(gamma), reduction=reduction)
