"""Rprop: each coordinate moves by its own step size, grown or shrunk by the gradient's sign."""
from .. import backend
from .optimizer import Optimizer, check_torch_flags

__all__ = ["Rprop"]


class Rprop(Optimizer):
    r"""Resilient backpropagation (Riedmiller & Braun, 1993) as PyTorch computes it
    (``torch.optim.Rprop``).

    For each parameter x with gradient g (prev: the previous step's g, 0 at first;
    s: the step sizes, lr at first), coordinate by coordinate::

        g = -g                                   if maximize
        s = s * eta_plus    where g * prev > 0   (same sign again: speed up)
        s = s * eta_minus   where g * prev < 0   (the sign flipped: we jumped over a minimum)
        s = clip(s, step_size_min, step_size_max)
        g = 0               where g * prev < 0   (no move after a flip, and the next
                                                  step is neither sped up nor slowed)
        x = x - sign(g) * s
        prev = g

    Only the sign of the gradient is used, never its size: the step sizes adapt to
    the landscape instead. That suits full-batch training; with minibatches the signs
    are noisy and the sizes do not settle. etas = (eta_minus, eta_plus), step_sizes =
    (step_size_min, step_size_max). There is no weight decay (as in PyTorch).

    State per parameter: ``step`` (Python int), ``prev``, ``step_size`` (s).
    """

    def __init__(self, params, lr=1e-2, etas=(0.5, 1.2), step_sizes=(1e-6, 50), *, capturable=False,
                 foreach=None, maximize=False, differentiable=False):
        check_torch_flags("Rprop", foreach, None, differentiable, capturable)
        defaults = dict(lr=lr, etas=tuple(etas), step_sizes=tuple(step_sizes), maximize=maximize)
        super().__init__(params, defaults)

    def _check_group(self, group):
        if not float(group["lr"]) >= 0:
            raise ValueError(f"Rprop: invalid learning rate lr={group['lr']} (must be >= 0)")
        if len(group["etas"]) != 2 or len(group["step_sizes"]) != 2:
            raise ValueError(f"Rprop: etas and step_sizes must be pairs, got etas={group['etas']!r}, "
                             f"step_sizes={group['step_sizes']!r}")
        eta_minus, eta_plus = (float(e) for e in group["etas"])
        if not 0.0 < eta_minus < 1.0 < eta_plus:
            raise ValueError(f"Rprop: invalid eta values etas={group['etas']!r} "
                             f"(must be 0 < eta_minus < 1 < eta_plus)")

    def _update(self, p, grad, group):
        eta_minus, eta_plus = float(group["etas"][0]), float(group["etas"][1])
        size_min, size_max = float(group["step_sizes"][0]), float(group["step_sizes"][1])
        x = p.array
        xp = backend.get_array_module(x)
        state = self.state[p]
        if not state:
            state["step"] = 0
            state["prev"] = xp.zeros_like(x)
            state["step_size"] = xp.full_like(x, float(group["lr"]))
        state["step"] += 1
        prev, size = state["prev"], state["step_size"]

        g = -grad if group["maximize"] else grad
        agree = g * prev
        flipped = agree < 0
        # the factor in the step sizes' dtype: a float32 s is scaled by float32 etas, as PyTorch's
        factor = xp.ones_like(size)
        factor[agree > 0] = eta_plus
        factor[flipped] = eta_minus
        size *= factor
        xp.clip(size, size_min, size_max, out=size)
        g = g.copy() if g is grad else g     # never write into grad
        g[flipped] = 0
        # x -= sign(g) * s, reusing factor
        xp.sign(g, out=factor)
        factor *= size
        x -= factor
        prev[...] = g
