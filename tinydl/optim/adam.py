"""Adam and AdamW: momentum (first moment) + per-coordinate scaling (second moment)."""
import math

import numpy as np

from .. import backend, backends
from ..cuda import GraphCaptureError
from ..kernels._dispatch import use_numba
from ..kernels.optim import adam_step_cuda, adam_step_numba
from .optimizer import Optimizer, check_torch_flags

__all__ = ["Adam", "AdamW"]


class Adam(Optimizer):
    r"""Adam (Kingma & Ba, 2015) as PyTorch computes it (``torch.optim.Adam``).

    For each parameter x with gradient g, at step t = 1, 2, ...::

        g = -g                                  if maximize
        x = x * (1 - lr * weight_decay)         if decoupled_weight_decay (AdamW), else
        g = g + weight_decay * x                (L2 penalty folded into the gradient)
        m = beta1 * m + (1 - beta1) * g         first moment: a running mean of g
        v = beta2 * v + (1 - beta2) * g^2       second moment: a running mean of g^2
        v_max = max(v_max, v); use v_max for v  if amsgrad
        x = x - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

    m and v start at zero, so early on they are biased towards zero; dividing by
    (1 - beta^t) undoes that bias. Each coordinate moves by about lr * m / sqrt(v):
    coordinates with large, noisy gradients take smaller steps.

    State per parameter: ``step`` (Python int), ``exp_avg`` (m), ``exp_avg_sq`` (v),
    and ``max_exp_avg_sq`` with amsgrad.

    ``capturable=True`` (PyTorch's flag): ``step`` is a 0-d float64 array on the parameter's
    device, counted there, and the bias corrections 1 - beta^t are computed there, so a
    CUDA graph that holds the update (``td.cuda.graph``, ``--cuda-graph``) corrects each
    replayed step by its own t. The same numbers as without it, on the plain update (the
    fused kernels take t from the host), with a few more launches a step. Without it, a
    capture refuses the step.

    The update below (``_single_tensor_adam``) is a dozen array operations, each a pass
    over the parameter's size (a kernel launch on the GPU). Where the gradient and the
    state have the parameter's dtype and shape, one kernel does the same arithmetic in
    one pass (kernels/optim.py; recorded as 'fused_numba' or 'fused_cuda', as PyTorch's
    ``fused=True``): on the CPU bit for bit; on the GPU to rounding (CUDA contracts
    a * b + c into one fused multiply-add), and only where forced until a GPU has run it
    (FUSED_ON_CUDA_BY_DEFAULT below).
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 amsgrad=False, *, maximize=False, decoupled_weight_decay=False, capturable=False,
                 foreach=None, fused=None, differentiable=False):
        check_torch_flags(type(self).__name__, foreach, fused, differentiable, capturable, capturable_supported=True)
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        amsgrad=amsgrad, maximize=maximize,
                        decoupled_weight_decay=decoupled_weight_decay, capturable=capturable)
        super().__init__(params, defaults)

    def load_state_dict(self, state_dict):
        """As Optimizer's; ``capturable`` stays this optimizer's own (how to compute, not what:
        a run resumed with ``--cuda-graph`` needs it whatever the checkpoint's run had)."""
        capturable = [group["capturable"] for group in self.param_groups]
        super().load_state_dict(state_dict)
        for group, flag in zip(self.param_groups, capturable):
            group["capturable"] = flag

    def _check_group(self, group):
        name = type(self).__name__
        lr, eps, wd = float(group["lr"]), float(group["eps"]), float(group["weight_decay"])
        if not lr >= 0:
            raise ValueError(f"{name}: invalid learning rate lr={lr} (must be >= 0)")
        if not eps >= 0:
            raise ValueError(f"{name}: invalid eps={eps} (must be >= 0)")
        if len(group["betas"]) != 2:
            raise ValueError(f"{name}: betas must be a pair (beta1, beta2), got {group['betas']!r}")
        for i, b in enumerate(group["betas"]):
            if not 0.0 <= float(b) < 1.0:
                raise ValueError(f"{name}: invalid beta parameter at index {i}: {b} (must be in [0, 1))")
        if not wd >= 0:
            raise ValueError(f"{name}: invalid weight_decay={wd} (must be >= 0)")

    def _update(self, p, grad, group):
        x = p.array
        xp = backend.get_array_module(x)
        state = self.state[p]
        if not state:
            state["step"] = 0
            state["exp_avg"] = xp.zeros_like(x)
            state["exp_avg_sq"] = xp.zeros_like(x)
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = xp.zeros_like(x)
        if group["capturable"]:
            if not hasattr(state["step"], "shape"):      # new, or an int from a checkpoint: on x's device
                state["step"] = backend.to_device(np.asarray(state["step"], np.float64), backend.device_of(x))
        elif backend.capture.active:
            raise GraphCaptureError(f"{type(self).__name__}: a CUDA graph would hold this step's bias "
                                    "correction for every replay: make it with capturable=True")
        state["step"] += 1              # (in place for a 0-d array: a CUDA graph holds its address)
        route = "single_tensor" if group["capturable"] else _adam_route(x, grad, state)
        backends.note_route("adam", route)
        _ADAM_STEPS[route](x, grad, state, group)


def adam_moments(x, grad, m, v, group):
    """The start of an Adam step on one parameter (NAdam and RAdam's too): g = grad (negated
    to maximize), weight decay (decoupled: x *= 1 - lr * wd; else L2: g += wd * x), then in
    place m += (1 - beta1) (g - m) and v = beta2 v + (1 - beta2) g^2. Returns g and a scratch
    array of x's shape."""
    lr, wd = float(group["lr"]), float(group["weight_decay"])
    beta1, beta2 = float(group["betas"][0]), float(group["betas"][1])
    g = -grad if group["maximize"] else grad
    if wd != 0:
        if group["decoupled_weight_decay"]:
            x *= 1 - lr * wd
        else:
            g = g + wd * x
    # m += (1 - beta1) * (g - m)   (PyTorch's lerp; = beta1 * m + (1 - beta1) * g)
    tmp = g - m
    tmp *= 1 - beta1
    m += tmp
    # v = beta2 * v + (1 - beta2) * g^2
    backend.get_array_module(x).multiply(g, g, out=tmp)
    tmp *= 1 - beta2
    v *= beta2
    v += tmp
    return g, tmp


def _single_tensor_adam(x, grad, state, group):
    """The update of Adam's docstring on one parameter, in plain array operations."""
    lr, eps = float(group["lr"]), float(group["eps"])
    beta1, beta2 = float(group["betas"][0]), float(group["betas"][1])
    xp = backend.get_array_module(x)
    t = state["step"]
    m, v = state["exp_avg"], state["exp_avg_sq"]
    _, tmp = adam_moments(x, grad, m, v, group)

    if group["amsgrad"]:
        vmax = state["max_exp_avg_sq"]
        xp.maximum(vmax, v, out=vmax)
        v = vmax
    if group["capturable"]:     # t on the device: so are the corrections, in tmp's dtype (as a
        step_size = (lr / (1 - beta1 ** t)).astype(tmp.dtype)       # Python float would be)
        bias_correction2_sqrt = xp.sqrt(1 - beta2 ** t).astype(tmp.dtype)
    else:
        step_size = lr / (1 - beta1 ** t)
        bias_correction2_sqrt = math.sqrt(1 - beta2 ** t)
    # x -= step_size * m / (sqrt(v) / sqrt(1 - beta2^t) + eps), reusing tmp
    xp.sqrt(v, out=tmp)
    tmp /= bias_correction2_sqrt
    tmp += eps
    xp.divide(m, tmp, out=tmp)
    tmp *= step_size
    x -= tmp


#: The CUDA kernel compiles (NVRTC 12.9) but has not run on a device yet: on the GPU Adam
#: fuses only where forced (``td.backends.route(adam="fused_cuda")``, as the gpu-marked
#: tests do). Set True once they pass there.
FUSED_ON_CUDA_BY_DEFAULT = False


def _adam_route(x, grad, state):
    """'fused_cuda' or 'fused_numba' where one kernel can update x: a gradient and a state of
    x's dtype and shape (contiguous on the CPU); else 'single_tensor' (its promotions, its
    broadcasting; or forced: ``td.backends.route(adam="single_tensor")``)."""
    forced = backends.forced_route("adam")
    arrays = [state[k] for k in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq") if k in state]
    if forced == "single_tensor" or not all(a.dtype == x.dtype and a.shape == x.shape for a in [grad] + arrays):
        return "single_tensor"
    if backend.is_cupy_array(x):
        return "fused_cuda" if FUSED_ON_CUDA_BY_DEFAULT or forced == "fused_cuda" else "single_tensor"
    if use_numba(x.dtype) and all(a.flags.c_contiguous for a in [x] + arrays):
        return "fused_numba"
    return "single_tensor"


def _fused_adam(fused_step):
    """The same update in one kernel (kernels/optim.py)."""
    def step(x, grad, state, group):
        amsgrad = state.get("max_exp_avg_sq") if group["amsgrad"] else None
        beta1, beta2 = group["betas"]
        fused_step(grad, x, state["exp_avg"], state["exp_avg_sq"], amsgrad, float(group["lr"]), float(beta1),
                   float(beta2), float(group["eps"]), float(group["weight_decay"]),
                   group["decoupled_weight_decay"], group["maximize"], state["step"])
    return step


_ADAM_STEPS = {"single_tensor": _single_tensor_adam, "fused_numba": _fused_adam(adam_step_numba),
               "fused_cuda": _fused_adam(adam_step_cuda)}


class AdamW(Adam):
    r"""Adam with decoupled weight decay (Loshchilov & Hutter), ``torch.optim.AdamW``.

    Weight decay shrinks the parameter directly, ``x = x * (1 - lr * weight_decay)``,
    instead of adding ``weight_decay * x`` to the gradient. In Adam the added term
    would be divided by sqrt(v) like the rest of the gradient, so coordinates with
    large gradients would be barely regularised; decoupling makes the decay the
    same for all coordinates. Default weight_decay is 1e-2 (Adam's is 0).
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, *, maximize=False, capturable=False, foreach=None, fused=None,
                 differentiable=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         decoupled_weight_decay=True, capturable=capturable, foreach=foreach, fused=fused,
                         differentiable=differentiable)
