"""Adadelta: a step whose units match the parameter's, no learning rate needed."""
from .. import backend
from .optimizer import Optimizer, check_torch_flags

__all__ = ["Adadelta"]


class Adadelta(Optimizer):
    r"""Adadelta (Zeiler, 2012) as PyTorch computes it (``torch.optim.Adadelta``).

    For each parameter x with gradient g::

        g     = -g                                       if maximize
        g     = g + weight_decay * x
        v     = rho * v + (1 - rho) * g^2                running mean of g^2
        delta = sqrt(u + eps) / sqrt(v + eps) * g        u: running mean of delta^2
        u     = rho * u + (1 - rho) * delta^2
        x     = x - lr * delta

    The ratio RMS(past steps) / RMS(gradients) gives the step the units of x (a
    Newton-like correction), so lr=1.0 is the natural default.

    State: ``step``, ``square_avg`` (v), ``acc_delta`` (u).
    """

    def __init__(self, params, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0, foreach=None, *, capturable=False,
                 maximize=False, differentiable=False):
        check_torch_flags("Adadelta", foreach, None, differentiable, capturable)
        defaults = dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize)
        super().__init__(params, defaults)

    def _check_group(self, group):
        for key in ("lr", "eps", "weight_decay"):
            if not float(group[key]) >= 0:
                raise ValueError(f"Adadelta: invalid {key}={group[key]} (must be >= 0)")
        if not 0.0 <= float(group["rho"]) <= 1.0:
            raise ValueError(f"Adadelta: invalid rho={group['rho']} (must be in [0, 1])")

    def _update(self, p, grad, group):
        lr, rho = float(group["lr"]), float(group["rho"])
        eps = float(group["eps"])
        x = p.array
        xp = backend.get_array_module(x)
        state = self.state[p]
        if not state:
            state["step"] = 0
            state["square_avg"] = xp.zeros_like(x)
            state["acc_delta"] = xp.zeros_like(x)
        state["step"] += 1
        v, u = state["square_avg"], state["acc_delta"]

        g = self._descent_gradient(grad, x, group)
        # v = rho * v + (1 - rho) * g^2
        tmp = g * g
        tmp *= 1 - rho
        v *= rho
        v += tmp
        # delta = sqrt(u + eps) / sqrt(v + eps) * g
        std = v + eps
        xp.sqrt(std, out=std)
        delta = u + eps
        xp.sqrt(delta, out=delta)
        delta /= std
        delta *= g
        # u = rho * u + (1 - rho) * delta^2
        xp.multiply(delta, delta, out=tmp)
        tmp *= 1 - rho
        u *= rho
        u += tmp
        delta *= lr
        x -= delta
