"""RMSprop: divide the gradient by a running root-mean-square of recent gradients."""
from .. import backend
from .optimizer import Optimizer, check_torch_flags

__all__ = ["RMSprop"]


class RMSprop(Optimizer):
    r"""RMSprop (Hinton's lecture notes) as PyTorch computes it (``torch.optim.RMSprop``).

    For each parameter x with gradient g::

        g   = -g                                if maximize
        g   = g + weight_decay * x
        v   = alpha * v + (1 - alpha) * g^2     running mean of g^2
        avg = sqrt(v) + eps, or, if centered,
        avg = sqrt(v - gbar^2) + eps            with gbar = alpha * gbar + (1 - alpha) * g,
                                                i.e. a running standard deviation of g
        buf = momentum * buf + g / avg;  x = x - lr * buf    if momentum > 0, else
        x   = x - lr * g / avg

    Unlike Adagrad's ever-growing sum, the running mean forgets old gradients
    (over ~1/(1-alpha) steps), so the step size does not decay to zero.

    State: ``step``, ``square_avg`` (v), ``momentum_buffer`` if momentum > 0,
    ``grad_avg`` (gbar) if centered.
    """

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0,
                 centered=False, *, maximize=False, capturable=False, foreach=None, differentiable=False):
        check_torch_flags("RMSprop", foreach, None, differentiable, capturable)
        defaults = dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                        momentum=momentum, centered=centered, maximize=maximize)
        super().__init__(params, defaults)

    def _check_group(self, group):
        for key in ("lr", "eps", "momentum", "weight_decay", "alpha"):
            if not float(group[key]) >= 0:
                raise ValueError(f"RMSprop: invalid {key}={group[key]} (must be >= 0)")

    def _update(self, p, grad, group):
        lr, alpha, eps = float(group["lr"]), float(group["alpha"]), float(group["eps"])
        momentum = float(group["momentum"])
        x = p.array
        xp = backend.get_array_module(x)
        state = self.state[p]
        if not state:
            state["step"] = 0
            state["square_avg"] = xp.zeros_like(x)
            if momentum > 0:
                state["momentum_buffer"] = xp.zeros_like(x)
            if group["centered"]:
                state["grad_avg"] = xp.zeros_like(x)
        state["step"] += 1
        v = state["square_avg"]

        g = self._descent_gradient(grad, x, group)
        # v = alpha * v + (1 - alpha) * g^2
        avg = g * g
        avg *= 1 - alpha
        v *= alpha
        v += avg
        if group["centered"]:
            gbar = state["grad_avg"]
            tmp = g - gbar                   # gbar += (1 - alpha) * (g - gbar)
            tmp *= 1 - alpha
            gbar += tmp
            xp.multiply(gbar, gbar, out=avg)
            xp.subtract(v, avg, out=avg)     # variance = E[g^2] - E[g]^2
            xp.sqrt(avg, out=avg)
        else:
            xp.sqrt(v, out=avg)
        avg += eps
        if momentum > 0:
            buf = state["momentum_buffer"]
            buf *= momentum
            xp.divide(g, avg, out=avg)
            buf += avg
            xp.multiply(buf, lr, out=avg)
            x -= avg
        else:
            xp.divide(g, avg, out=avg)
            avg *= lr
            x -= avg
