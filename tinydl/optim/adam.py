"""Adam and AdamW: momentum (first moment) + per-coordinate scaling (second moment)."""
import math

from .. import backend
from .optimizer import Optimizer

__all__ = ["Adam", "AdamW"]


class Adam(Optimizer):
    r"""Adam (Kingma & Ba, 2015) as PyTorch computes it (``torch.optim.Adam``).

    For each parameter x with gradient g, at step t = 1, 2, ...::

        g = -g                                  if maximize
        x = x * (1 - lr * weight_decay)         if decoupled_weight_decay (AdamW), else
        g = g + weight_decay * x                (L2 penalty folded into the gradient)
        m = beta1 * m + (1 - beta1) * g         first moment: a running mean of g
        v = beta2 * v + (1 - beta2) * g^2       second moment: a running mean of g^2
        v_max = max(v_max, v); use v_max for v  if amsgrad
        x = x - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

    m and v start at zero, so early on they are biased towards zero; dividing by
    (1 - beta^t) undoes that bias. Each coordinate moves by about lr * m / sqrt(v):
    coordinates with large, noisy gradients take smaller steps.

    State per parameter: ``step`` (Python int), ``exp_avg`` (m), ``exp_avg_sq`` (v),
    and ``max_exp_avg_sq`` with amsgrad.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 amsgrad=False, *, maximize=False, decoupled_weight_decay=False):
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        amsgrad=amsgrad, maximize=maximize,
                        decoupled_weight_decay=decoupled_weight_decay)
        super().__init__(params, defaults)

    def _check_group(self, group):
        name = type(self).__name__
        lr, eps, wd = float(group["lr"]), float(group["eps"]), float(group["weight_decay"])
        if lr < 0:
            raise ValueError(f"{name}: invalid learning rate lr={lr} (must be >= 0)")
        if eps < 0:
            raise ValueError(f"{name}: invalid eps={eps} (must be >= 0)")
        if len(group["betas"]) != 2:
            raise ValueError(f"{name}: betas must be a pair (beta1, beta2), got {group['betas']!r}")
        for i, b in enumerate(group["betas"]):
            if not 0.0 <= float(b) < 1.0:
                raise ValueError(f"{name}: invalid beta parameter at index {i}: {b} (must be in [0, 1))")
        if wd < 0:
            raise ValueError(f"{name}: invalid weight_decay={wd} (must be >= 0)")

    def _update(self, p, grad, group):
        lr, eps, wd = float(group["lr"]), float(group["eps"]), float(group["weight_decay"])
        beta1, beta2 = float(group["betas"][0]), float(group["betas"][1])
        x = p.array
        xp = backend.get_array_module(x)
        state = self.state[p]
        if not state:
            state["step"] = 0
            state["exp_avg"] = xp.zeros_like(x)
            state["exp_avg_sq"] = xp.zeros_like(x)
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = xp.zeros_like(x)
        state["step"] += 1
        t = state["step"]
        m, v = state["exp_avg"], state["exp_avg_sq"]

        g = -grad if group["maximize"] else grad
        if wd != 0:
            if group["decoupled_weight_decay"]:
                x *= 1 - lr * wd
            else:
                g = g + wd * x

        # m += (1 - beta1) * (g - m)   (PyTorch's lerp; = beta1 * m + (1 - beta1) * g)
        tmp = g - m
        tmp *= 1 - beta1
        m += tmp
        # v = beta2 * v + (1 - beta2) * g^2
        xp.multiply(g, g, out=tmp)
        tmp *= 1 - beta2
        v *= beta2
        v += tmp

        if group["amsgrad"]:
            vmax = state["max_exp_avg_sq"]
            xp.maximum(vmax, v, out=vmax)
            v = vmax
        step_size = lr / (1 - beta1 ** t)
        bias_correction2_sqrt = math.sqrt(1 - beta2 ** t)
        # x -= step_size * m / (sqrt(v) / sqrt(1 - beta2^t) + eps), reusing tmp
        xp.sqrt(v, out=tmp)
        tmp /= bias_correction2_sqrt
        tmp += eps
        xp.divide(m, tmp, out=tmp)
        tmp *= step_size
        x -= tmp


class AdamW(Adam):
    r"""Adam with decoupled weight decay (Loshchilov & Hutter), ``torch.optim.AdamW``.

    Weight decay shrinks the parameter directly, ``x = x * (1 - lr * weight_decay)``,
    instead of adding ``weight_decay * x`` to the gradient. In Adam the added term
    would be divided by sqrt(v) like the rest of the gradient, so coordinates with
    large gradients would be barely regularised; decoupling makes the decay the
    same for all coordinates. Default weight_decay is 1e-2 (Adam's is 0).
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, *, maximize=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         decoupled_weight_decay=True)
