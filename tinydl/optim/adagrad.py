"""Adagrad: each coordinate's step shrinks with the sum of its squared gradients."""
from .. import backend
from .optimizer import Optimizer, check_torch_flags

__all__ = ["Adagrad"]


class Adagrad(Optimizer):
    r"""Adagrad (Duchi et al., 2011) as PyTorch computes it (``torch.optim.Adagrad``).

    For each parameter x with gradient g, at step t = 1, 2, ...::

        g   = -g                                if maximize
        g   = g + weight_decay * x
        clr = lr / (1 + (t - 1) * lr_decay)
        s   = s + g^2                           (s starts at initial_accumulator_value)
        x   = x - clr * g / (sqrt(s) + eps)

    Coordinates that have seen large gradients get small steps. Because s only
    grows, the effective lr decays towards zero; RMSprop and Adadelta replace the
    sum by a running mean to avoid that.

    As in PyTorch, the state (``step`` = 0, ``sum``) is created when the parameter
    is added, so ``state_dict()`` lists every parameter from the start.
    """

    def __init__(self, params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0,
                 eps=1e-10, foreach=None, *, maximize=False, differentiable=False, fused=None):
        check_torch_flags("Adagrad", foreach, fused, differentiable)
        defaults = dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                        initial_accumulator_value=initial_accumulator_value, eps=eps,
                        maximize=maximize)
        super().__init__(params, defaults)

    def add_param_group(self, param_group):
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        for p in group["params"]:
            xp = backend.get_array_module(p.array)
            self.state[p]["step"] = 0
            self.state[p]["sum"] = xp.full_like(p.array, float(group["initial_accumulator_value"]))

    def _check_group(self, group):
        for key in ("lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps"):
            if not float(group[key]) >= 0:
                raise ValueError(f"Adagrad: invalid {key}={group[key]} (must be >= 0)")

    def _update(self, p, grad, group):
        lr, lr_decay = float(group["lr"]), float(group["lr_decay"])
        eps = float(group["eps"])
        x = p.array
        xp = backend.get_array_module(x)
        state = self.state[p]
        state["step"] += 1
        s = state["sum"]

        g = self._descent_gradient(grad, x, group)
        clr = lr / (1 + (state["step"] - 1) * lr_decay)
        tmp = g * g
        s += tmp
        # x -= clr * g / (sqrt(s) + eps), reusing tmp
        xp.sqrt(s, out=tmp)
        tmp += eps
        xp.divide(g, tmp, out=tmp)
        tmp *= clr
        x -= tmp
