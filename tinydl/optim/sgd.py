"""Stochastic gradient descent, with momentum, dampening, Nesterov and L2 weight decay."""
import numpy as np

from .. import backends
from ..backend import is_cupy_array
from ..kernels._dispatch import use_numba
from ..kernels.optim import sgd_momentum_step_cuda, sgd_momentum_step_numba
from .optimizer import Optimizer, check_torch_flags

__all__ = ["SGD"]

#: Parameters of up to this many elements are updated together ("foreach"): for them one
#: kernel call per parameter (~4.5 us of Python and dispatch) costs more than copying them
#: into one flat array and back (benchmarks/bench_alone.py's ResNet-20 batch 1 row).
FOREACH_MAX_SIZE = 1 << 12


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
        foreach (bool or None): update the small parameters of a group together, as
            PyTorch's ``foreach``: on the CPU, the momentum step of every parameter of
            up to ``FOREACH_MAX_SIZE`` elements runs as one kernel over flat copies (the
            same numbers as one at a time). None (default) or True: where it applies;
            False: never. (One optimizer steps from one thread at a time, as in PyTorch.)
    """

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0,
                 nesterov=False, *, maximize=False, foreach=None, fused=None, differentiable=False):
        check_torch_flags("SGD", foreach, fused, differentiable)
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening,
                        weight_decay=weight_decay, nesterov=nesterov, maximize=maximize, foreach=foreach)
        self._flat = {}             # id(group) -> _FlatMomentum of its small parameters
        super().__init__(params, defaults)

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        self._flat.clear()          # the groups and buffers are new ones

    def __getstate__(self):         # a copy (pickle, deepcopy) makes its flat buffers again
        return {k: v for k, v in self.__dict__.items() if k != "_flat"}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._flat = {}

    def _check_group(self, group):
        lr, momentum, wd = float(group["lr"]), float(group["momentum"]), float(group["weight_decay"])
        if not lr >= 0:
            raise ValueError(f"SGD: invalid learning rate lr={lr} (must be >= 0)")
        if not momentum >= 0:
            raise ValueError(f"SGD: invalid momentum={momentum} (must be >= 0)")
        if not wd >= 0:
            raise ValueError(f"SGD: invalid weight_decay={wd} (must be >= 0)")
        if group["nesterov"] and (momentum <= 0 or float(group["dampening"]) != 0):
            raise ValueError(f"SGD: nesterov=True needs momentum > 0 and dampening = 0, got "
                             f"momentum={momentum}, dampening={group['dampening']}")
        if group["foreach"] not in (None, True, False):
            raise ValueError(f"SGD: foreach must be None, True or False, got {group['foreach']!r}")

    def _update_group(self, params, group):
        together = _foreach_params(params, self.state, group)
        if len(together) > 1:
            backends.note_route("sgd", "foreach_numba")
            flat = self._flat.get(id(group))
            if flat is None or not flat.holds(together, self.state):
                if flat is not None:
                    flat.let_go(self.state)
                flat = self._flat[id(group)] = _FlatMomentum(together, self.state)
            flat.step(together, group)
            chosen = set(map(id, together))
            params = [p for p in params if id(p) not in chosen]
        super()._update_group(params, group)

    def _update(self, p, grad, group):
        state = self.state[p] if float(group["momentum"]) != 0 else {}    # plain SGD keeps no state
        x = p.array
        route = "single_tensor"
        buf = state.get("momentum_buffer")
        if _fusable(x, grad, buf):
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


def _fusable(x, grad, buf):
    """Can a fused kernel update x? Past the first step (a momentum buffer), with a gradient
    and a buffer of x's dtype and shape; else the plain update (its promotions, broadcasting)."""
    return buf is not None and grad.dtype == x.dtype == buf.dtype and grad.shape == x.shape == buf.shape


def _foreach_params(params, state, group):
    """The parameters the foreach step takes: small NumPy arrays that own their memory,
    past their first step (a momentum buffer exists), of the first such one's float dtype,
    as are their gradients and buffers, of their shape; none when two share an array (one
    at a time, the second update sees the first)."""
    if group["foreach"] is False or float(group["momentum"]) == 0:
        return []
    together, dtype = [], None
    for p in params:
        x, buf = p.array, state[p].get("momentum_buffer")
        if (type(x) is np.ndarray and x.base is None and x.size <= FOREACH_MAX_SIZE
                and _fusable(x, p.grad.array, buf) and (dtype is None or x.dtype == dtype)):
            dtype = x.dtype
            together.append(p)
    if dtype is None or not use_numba(dtype) or len({id(p.array) for p in together}) < len(together):
        return []
    return together


class _FlatMomentum:
    """The momentum buffers of some parameters as views of one flat array (their state
    entries are those views), and flat arrays the parameters and gradients are copied into:
    one call of the fused kernel then updates them all."""

    def __init__(self, params, state):
        self.params = params
        self.buf = np.concatenate([state[p]["momentum_buffer"].reshape(-1) for p in params])
        self.x, self.grad = np.empty_like(self.buf), np.empty_like(self.buf)
        self.views, self.parts, start = [], [], 0
        for p in params:
            end = start + p.array.size
            state[p]["momentum_buffer"] = self.buf[start:end].reshape(p.array.shape)
            self.views.append(state[p]["momentum_buffer"])
            self.parts.append(self.x[start:end].reshape(p.array.shape))
            start = end

    def holds(self, params, state):
        """Still these parameters, with these buffers (not replaced, e.g. by hand)?"""
        return (len(params) == len(self.params) and all(p is q for p, q in zip(params, self.params))
                and all(state[p]["momentum_buffer"] is v for p, v in zip(params, self.views)))

    def let_go(self, state):
        """Give the buffers still views of this one array copies of their own (before another
        set of parameters is made flat: a parameter left out must not pin this array)."""
        for p, view in zip(self.params, self.views):
            if state[p].get("momentum_buffer") is view:
                state[p]["momentum_buffer"] = view.copy()

    def step(self, params, group):
        np.concatenate([p.array.reshape(-1) for p in params], out=self.x)
        np.concatenate([p.grad.array.reshape(-1) for p in params], out=self.grad)
        sgd_momentum_step_numba(self.grad, self.x, self.buf, float(group["lr"]), float(group["momentum"]),
                                float(group["dampening"]), float(group["weight_decay"]), group["maximize"],
                                group["nesterov"])
        for p, part in zip(params, self.parts):
            p.array[...] = part
