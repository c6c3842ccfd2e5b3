"""NAdam: Adam with Nesterov momentum (the step looks one momentum update ahead)."""
from .. import backend
from .adam import Adam, adam_moments
from .optimizer import Optimizer, check_torch_flags

__all__ = ["NAdam"]


class NAdam(Optimizer):
    r"""NAdam (Dozat, 2016) as PyTorch computes it (``torch.optim.NAdam``).

    For each parameter x with gradient g, at step t = 1, 2, ...::

        g    = -g                                   if maximize
        x    = x * (1 - lr * weight_decay)          if decoupled_weight_decay, else
        g    = g + weight_decay * x                 (L2 penalty folded into the gradient)
        mu_t = beta1 * (1 - 0.5 * 0.96^(t * momentum_decay))     the momentum schedule
        P_t  = mu_1 * mu_2 * ... * mu_t             (mu_product)
        m    = beta1 * m + (1 - beta1) * g
        v    = beta2 * v + (1 - beta2) * g^2
        den  = sqrt(v / (1 - beta2^t)) + eps
        x    = x - lr * (1 - mu_t) / (1 - P_t) * g / den
               - lr * mu_{t+1} / (1 - P_t * mu_{t+1}) * m / den

    Nesterov momentum takes the gradient at the point momentum is about to carry x
    to; in Adam's terms that is the bias-corrected mix of the new gradient (weight
    1 - mu_t) and the *next* step's momentum (weight mu_{t+1}). The schedule mu_t
    warms the momentum up from beta1 / 2 towards beta1 (momentum_decay sets how fast).

    State per parameter: ``step`` (Python int), ``mu_product`` (P_t, a Python float:
    PyTorch keeps a 0-d tensor of its default dtype, float32 unless changed, so its
    numbers match these to float32 rounding only then), ``exp_avg`` (m), ``exp_avg_sq`` (v).
    """

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, momentum_decay=4e-3,
                 decoupled_weight_decay=False, *, foreach=None, maximize=False, capturable=False,
                 differentiable=False):
        check_torch_flags("NAdam", foreach, None, differentiable, capturable)
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        momentum_decay=momentum_decay, decoupled_weight_decay=decoupled_weight_decay,
                        maximize=maximize)
        super().__init__(params, defaults)

    def _check_group(self, group):
        Adam._check_group(self, group)      # the same lr, eps, betas and weight_decay rules
        if not float(group["momentum_decay"]) >= 0:
            raise ValueError(f"NAdam: invalid momentum_decay={group['momentum_decay']} (must be >= 0)")

    def _update(self, p, grad, group):
        lr, eps = float(group["lr"]), float(group["eps"])
        beta1, beta2 = float(group["betas"][0]), float(group["betas"][1])
        psi = float(group["momentum_decay"])
        x = p.array
        xp = backend.get_array_module(x)
        state = self.state[p]
        if not state:
            state["step"] = 0
            state["mu_product"] = 1.0
            state["exp_avg"] = xp.zeros_like(x)
            state["exp_avg_sq"] = xp.zeros_like(x)
        state["step"] += 1
        t = state["step"]
        m, v = state["exp_avg"], state["exp_avg_sq"]

        mu = beta1 * (1 - 0.5 * 0.96 ** (t * psi))
        mu_next = beta1 * (1 - 0.5 * 0.96 ** ((t + 1) * psi))
        # float(): a checkpoint converted from PyTorch brings a 0-d array
        mu_product = float(state["mu_product"]) * mu
        state["mu_product"] = mu_product

        g, tmp = adam_moments(x, grad, m, v, group)     # weight decay; m and v, as Adam's
        # den = sqrt(v / (1 - beta2^t)) + eps
        den = v / (1 - beta2 ** t)
        xp.sqrt(den, out=den)
        den += eps
        # x -= lr (1 - mu_t) / (1 - P_t) * g / den + lr mu_{t+1} / (1 - P_t mu_{t+1}) * m / den
        xp.divide(g, den, out=tmp)
        tmp *= lr * (1 - mu) / (1 - mu_product)
        x -= tmp
        xp.divide(m, den, out=tmp)
        tmp *= lr * mu_next / (1 - mu_product * mu_next)
        x -= tmp
