"""Adamax: Adam with the second moment replaced by a running maximum of |g|."""
from .. import backend
from .adam import Adam
from .optimizer import Optimizer, check_torch_flags

__all__ = ["Adamax"]


class Adamax(Optimizer):
    r"""Adamax (Kingma & Ba, 2015, section 7.1) as PyTorch computes it (``torch.optim.Adamax``).

    For each parameter x with gradient g, at step t = 1, 2, ...::

        g = -g                                  if maximize
        g = g + weight_decay * x                (L2 penalty folded into the gradient)
        m = beta1 * m + (1 - beta1) * g         first moment, as in Adam
        u = max(beta2 * u, |g| + eps)           a decaying running maximum of |g|
        x = x - lr / (1 - beta1^t) * m / u

    Adam scales by the L2 norm of past gradients, sqrt(v); Adamax by their L-infinity
    norm, the limit of the Lp norm as p grows. A maximum is not biased towards zero
    by its zero start (the first |g| replaces it), so only m needs a bias correction.
    eps sits inside the maximum and keeps u away from zero where g is zero.

    State per parameter: ``step`` (Python int), ``exp_avg`` (m), ``exp_inf`` (u).
    """

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, foreach=None, *,
                 maximize=False, differentiable=False, capturable=False):
        check_torch_flags("Adamax", foreach, None, differentiable, capturable)
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, maximize=maximize)
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
            state["exp_inf"] = xp.zeros_like(x)
        state["step"] += 1
        m, u = state["exp_avg"], state["exp_inf"]

        g = self._descent_gradient(grad, x, group)
        # m += (1 - beta1) * (g - m)
        tmp = g - m
        tmp *= 1 - beta1
        m += tmp
        # u = max(beta2 * u, |g| + eps)
        xp.abs(g, out=tmp)
        tmp += eps
        u *= beta2
        xp.maximum(u, tmp, out=u)
        # x -= lr / (1 - beta1^t) * m / u
        xp.divide(m, u, out=tmp)
        tmp *= lr / (1 - beta1 ** state["step"])
        x -= tmp
