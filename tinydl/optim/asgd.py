"""ASGD: SGD with a decaying step size that also keeps a running average of the iterates."""
from .. import backend
from .optimizer import Optimizer, check_torch_flags

__all__ = ["ASGD"]


class ASGD(Optimizer):
    r"""Averaged SGD (Polyak & Juditsky, 1992) as PyTorch computes it (``torch.optim.ASGD``).

    For each parameter x with gradient g, at step t = 1, 2, ... (eta starts at lr, mu at 1)::

        g   = -g                                  if maximize
        g   = g + weight_decay * x
        x   = x * (1 - lambd * eta)               a decay of x, with this step's eta
        x   = x - eta * g
        ax  = ax + mu * (x - ax)                  (ax = x while mu = 1)
        eta = lr / (1 + lambd * lr * t)^alpha     the step size of the next step
        mu  = 1 / max(1, t - t0)                  the averaging weight of the next step

    Up to step t0 + 2, mu is 1 and ax just follows x; from then on ax is the running
    mean of the iterates since that step, which (Polyak-Juditsky) converges at the optimal
    rate even though each iterate, with its slowly shrinking eta, wanders. ``ax``
    is only kept: the parameters the model uses are x (copy ax into them to evaluate
    the average).

    State per parameter: ``step`` (Python int), ``eta`` and ``mu`` (Python floats: PyTorch
    keeps 0-d tensors of its default dtype, float32 unless changed, so its numbers
    match these to float32 rounding only then), ``ax``.
    """

    def __init__(self, params, lr=1e-2, lambd=1e-4, alpha=0.75, t0=1e6, weight_decay=0, foreach=None,
                 maximize=False, differentiable=False, capturable=False):
        check_torch_flags("ASGD", foreach, None, differentiable, capturable)
        defaults = dict(lr=lr, lambd=lambd, alpha=alpha, t0=t0, weight_decay=weight_decay, maximize=maximize)
        super().__init__(params, defaults)

    def _check_group(self, group):
        for key in ("lr", "weight_decay"):
            if not float(group[key]) >= 0:
                raise ValueError(f"ASGD: invalid {'learning rate ' if key == 'lr' else ''}{key}={group[key]} "
                                 f"(must be >= 0)")

    def _update(self, p, grad, group):
        lr, lambd = float(group["lr"]), float(group["lambd"])
        alpha, t0 = float(group["alpha"]), float(group["t0"])
        x = p.array
        xp = backend.get_array_module(x)
        state = self.state[p]
        if not state:
            state["step"] = 0
            state["eta"] = lr
            state["mu"] = 1.0
            state["ax"] = xp.zeros_like(x)
        state["step"] += 1
        t = state["step"]
        # float(): a checkpoint converted from PyTorch brings 0-d arrays
        eta, mu = float(state["eta"]), float(state["mu"])
        ax = state["ax"]

        g = self._descent_gradient(grad, x, group)
        x *= 1 - lambd * eta
        tmp = g * eta
        x -= tmp
        if mu != 1:
            xp.subtract(x, ax, out=tmp)
            tmp *= mu
            ax += tmp
        else:
            ax[...] = x
        state["eta"] = lr / (1 + lambd * lr * t) ** alpha
        state["mu"] = 1 / max(1.0, t - t0)
