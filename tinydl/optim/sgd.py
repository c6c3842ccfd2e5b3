"""Stochastic gradient descent, with momentum, dampening, Nesterov and L2 weight decay."""
from .. import backends
from ..backend import is_cupy_array
from ..kernels._dispatch import use_numba
from ..kernels.optim import sgd_momentum_step_cuda, sgd_momentum_step_numba
from .optimizer import Optimizer

__all__ = ["SGD"]


class SGD(Optimizer):
    r"""SGD as PyTorch computes it (``torch.optim.SGD``, same defaults).

    For each parameter x with gradient g, at step t (buf is the momentum buffer)::

        g   = -g                              if maximize
        g   = g + weight_decay * x            (L2 weight decay: d/dx of wd/2 * |x|^2)
        buf = g                               at the first step, else
        buf = momentum * buf + (1 - dampening) * g
        g   = g + momentum * buf              if nesterov, else  g = buf
        x   = x - lr * g

    **The notes' form.** The study notes write momentum as a velocity
    ``v = momentum * v - lr * g;  x += v``. With a constant lr the two are the same
    algorithm: by induction ``v = -lr * buf`` (both start from zero, and
    ``m * (-lr * buf) - lr * g = -lr * (m * buf + g)``), so ``x += v`` is exactly
    ``x -= lr * buf``. They differ when lr changes during training (a scheduler):
    PyTorch's buffer holds raw gradients and the *current* lr scales all of it at
    once, while the notes' velocity keeps the old lr baked in and only feels the new
    lr through new gradients, fading in over ~1/(1-momentum) steps.
    ``tests/test_optim.py::test_sgd_notes_form_matches_under_constant_lr`` checks the
    equality.

    **Nesterov** evaluates the momentum step "one step ahead": the update uses
    ``g + momentum * buf`` (the look-ahead gradient, in the usual reformulation
    that needs no second gradient evaluation). It needs momentum > 0 and no dampening.

    Args:
        params: Tensors or parameter groups (see :class:`Optimizer`).
        lr (float): learning rate. Default 1e-3.
        momentum (float): momentum factor. Default 0 (plain SGD: no state kept).
        dampening (float): scales the new gradient in the buffer by (1 - dampening).
        weight_decay (float): L2 penalty coefficient added to the gradient.
        nesterov (bool): Nesterov momentum.
        maximize (bool): ascend the objective instead of descending it.
    """

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0,
                 nesterov=False, *, maximize=False):
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening,
                        weight_decay=weight_decay, nesterov=nesterov, maximize=maximize)
        super().__init__(params, defaults)

    def _check_group(self, group):
        lr, momentum, wd = float(group["lr"]), float(group["momentum"]), float(group["weight_decay"])
        if lr < 0:
            raise ValueError(f"SGD: invalid learning rate lr={lr} (must be >= 0)")
        if momentum < 0:
            raise ValueError(f"SGD: invalid momentum={momentum} (must be >= 0)")
        if wd < 0:
            raise ValueError(f"SGD: invalid weight_decay={wd} (must be >= 0)")
        if group["nesterov"] and (momentum <= 0 or float(group["dampening"]) != 0):
            raise ValueError(f"SGD: nesterov=True needs momentum > 0 and dampening = 0, got "
                             f"momentum={momentum}, dampening={group['dampening']}")

    def _update(self, p, grad, group):
        state = self.state[p] if float(group["momentum"]) != 0 else {}    # plain SGD keeps no state
        x = p.array
        route = "single_tensor"
        buf = state.get("momentum_buffer")
        if buf is not None and grad.dtype == x.dtype == buf.dtype:      # else the plain update's promotions
            if is_cupy_array(x):
                route = "fused_cuda"
            elif use_numba(x.dtype) and x.flags.c_contiguous and buf.flags.c_contiguous:
                route = "fused_numba"
        backends.note_route("sgd", route)
        _SGD_STEPS[route](x, grad, state, group, self._descent_gradient)


def _single_tensor_sgd(x, grad, state, group, descent_gradient):
    """The update of the class docstring on one parameter, in plain array operations."""
    lr, momentum, dampening = float(group["lr"]), float(group["momentum"]), float(group["dampening"])
    g = descent_gradient(grad, x, group)
    if momentum != 0:
        buf = state.get("momentum_buffer")
        if buf is None:
            buf = state["momentum_buffer"] = g.copy()   # first step: buf = g (a copy, not the grad)
        else:
            buf *= momentum
            buf += g if dampening == 0 else (1 - dampening) * g
        g = g + momentum * buf if group["nesterov"] else buf
    x -= lr * g


def _fused_sgd(fused_step):
    """The same update in one kernel (kernels/optim.py), from the second step on."""
    def step(x, grad, state, group, descent_gradient):
        fused_step(grad, x, state["momentum_buffer"], float(group["lr"]), float(group["momentum"]),
                   float(group["dampening"]), float(group["weight_decay"]), group["maximize"], group["nesterov"])
    return step


_SGD_STEPS = {"single_tensor": _single_tensor_sgd, "fused_cuda": _fused_sgd(sgd_momentum_step_cuda),
              "fused_numba": _fused_sgd(sgd_momentum_step_numba)}
