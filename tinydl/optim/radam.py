"""RAdam: Adam whose adaptive scaling is switched on only once v is a trustworthy estimate."""
import math

from .. import backend
from .adam import Adam, adam_moments
from .optimizer import Optimizer, check_torch_flags

__all__ = ["RAdam"]


class RAdam(Optimizer):
    r"""Rectified Adam (Liu et al., 2020) as PyTorch computes it (``torch.optim.RAdam``).

    For each parameter x with gradient g, at step t = 1, 2, ...::

        g       = -g                                 if maximize
        x       = x * (1 - lr * weight_decay)        if decoupled_weight_decay, else
        g       = g + weight_decay * x               (L2 penalty folded into the gradient)
        m       = beta1 * m + (1 - beta1) * g
        v       = beta2 * v + (1 - beta2) * g^2
        m_hat   = m / (1 - beta1^t)
        rho_inf = 2 / (1 - beta2) - 1
        rho_t   = rho_inf - 2 t beta2^t / (1 - beta2^t)
        if rho_t > 5:
            r = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))
            x = x - lr * r * m_hat * sqrt(1 - beta2^t) / (sqrt(v) + eps)
        else:
            x = x - lr * m_hat                       (plain momentum SGD)

    rho_t is the number of gradients v effectively averages. Over the first few
    steps it is small, v's variance is large, and Adam's 1/sqrt(v) takes erratic
    steps (the reason for warm-up schedules); RAdam uses momentum SGD until
    rho_t > 5, then the Adam step damped by r, which rises towards 1 as v settles.

    State per parameter: ``step`` (Python int), ``exp_avg`` (m), ``exp_avg_sq`` (v).
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 decoupled_weight_decay=False, *, foreach=None, maximize=False, capturable=False,
                 differentiable=False):
        check_torch_flags("RAdam", foreach, None, differentiable, capturable)
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        decoupled_weight_decay=decoupled_weight_decay, maximize=maximize)
        super().__init__(params, defaults)

    def _check_group(self, group):
        Adam._check_group(self, group)      # the same lr, eps, betas and weight_decay rules

    def _update(self, p, grad, group):
        lr, eps = float(group["lr"]), float(group["eps"])
        beta1, beta2 = float(group["betas"][0]), float(group["betas"][1])
        x = p.array
        xp = backend.get_array_module(x)
        state = self.state[p]
        if not state:
            state["step"] = 0
            state["exp_avg"] = xp.zeros_like(x)
            state["exp_avg_sq"] = xp.zeros_like(x)
        state["step"] += 1
        t = state["step"]
        m, v = state["exp_avg"], state["exp_avg_sq"]

        _, tmp = adam_moments(x, grad, m, v, group)     # weight decay; m and v, as Adam's

        bias_correction1 = 1 - beta1 ** t
        bias_correction2 = 1 - beta2 ** t
        rho_inf = 2 / (1 - beta2) - 1
        rho_t = rho_inf - 2 * t * beta2 ** t / bias_correction2
        # m_hat * lr, in tmp
        xp.divide(m, bias_correction1, out=tmp)
        tmp *= lr
        if rho_t > 5:
            rect = math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
            # adaptive lr = sqrt(1 - beta2^t) / (sqrt(v) + eps)
            adaptive = xp.sqrt(v)
            adaptive += eps
            xp.divide(math.sqrt(bias_correction2), adaptive, out=adaptive)
            tmp *= adaptive
            tmp *= rect
        x -= tmp
