"""Fused optimizer steps: one kernel per parameter instead of one per array operation.

On a GPU every array operation is a kernel launch, and launches, not arithmetic, bound a
small network's step. Each fused step computes exactly its optimizer's plain update
(tinydl/optim/), which stays the readable version and the one used everywhere else.
On the CPU the fused steps are Numba loops: one pass over the arrays instead of four,
and one call instead of four NumPy calls (benchmarks/bench_alone.py's ResNet-20 batch 1
row: 62 small parameters per step).
"""
import math

import numpy as np

from ._dispatch import for_this_thread, njit, prange

__all__ = ["adam_step_cuda", "adam_step_numba", "sgd_momentum_step_cuda", "sgd_momentum_step_numba"]

_kernels = {}


def sgd_momentum_step_cuda(grad, x, buf, lr, momentum, dampening, weight_decay, maximize, nesterov):
    """x and buf (CuPy arrays) updated in place by SGD's momentum step (after the first)."""
    if "sgd" not in _kernels:
        import cupy
        _kernels["sgd"] = cupy.ElementwiseKernel(
            "T grad, T lr, T momentum, T dampening, T weight_decay, T sign, bool nesterov", "T x, T buf",
            """
            T g = sign * grad;
            if (weight_decay != 0) g += weight_decay * x;
            buf = momentum * buf + (1 - dampening) * g;
            x -= lr * (nesterov ? g + momentum * buf : buf);
            """, "tinydl_sgd_momentum_step")
    _kernels["sgd"](grad, lr, momentum, dampening, weight_decay, -1.0 if maximize else 1.0, bool(nesterov), x, buf)


@njit(parallel=True, cache=True)
def _sgd_momentum_kernel(grad, x, buf, lr, momentum, keep, weight_decay, sign, nesterov):
    # The scalars come in x's dtype and there is no fastmath: every product and sum
    # rounds as NumPy's array operations do (bit-identical to the plain update).
    for i in prange(x.size):
        g = sign * grad[i]
        if weight_decay != 0:
            g += weight_decay * x[i]
        b = momentum * buf[i] + keep * g
        buf[i] = b
        x[i] -= lr * (g + momentum * b if nesterov else b)


def sgd_momentum_step_numba(grad, x, buf, lr, momentum, dampening, weight_decay, maximize, nesterov):
    """x and buf (C-contiguous NumPy arrays of one float dtype) updated in place by SGD's
    momentum step (after the first)."""
    t = x.dtype.type
    grad = np.ascontiguousarray(grad, dtype=x.dtype)
    for_this_thread(_sgd_momentum_kernel, x.size)(
        grad.reshape(-1), x.reshape(-1), buf.reshape(-1), t(lr), t(momentum), t(1 - dampening), t(weight_decay),
        t(-1.0 if maximize else 1.0), bool(nesterov))


# --------------------------------------------------------------------------- Adam
def _adam_scalars(dtype, lr, beta1, beta2, eps, weight_decay, decoupled, maximize, step):
    """The step's scalars in the parameter's dtype, each rounded once as NumPy rounds a
    Python float that meets an array of that dtype (tinydl/optim/adam.py's plain update)."""
    t = np.dtype(dtype).type
    step_size = lr / (1 - beta1 ** step)
    bias_correction2_sqrt = math.sqrt(1 - beta2 ** step)
    return (t(-1.0 if maximize else 1.0), weight_decay != 0, bool(decoupled), t(weight_decay),
            t(1 - lr * weight_decay), t(1 - beta1), t(beta2), t(1 - beta2), t(bias_correction2_sqrt), t(eps),
            t(step_size))


_ADAM_CUDA = """
T g = sign * grad;
if (decay_on) {
    if (decoupled) x = x * decay;
    else g = g + weight_decay * x;
}
m = m + (g - m) * keep1;
v = v * beta2 + (g * g) * keep2;
T w = v;
%s
x = x - (m / (sqrt(w) / bc2 + eps)) * step_size;
"""
_AMSGRAD_CUDA = "vmax = (vmax != vmax || vmax > v) ? vmax : v;  w = vmax;   // NaN-propagating, as np.maximum"


def adam_step_cuda(grad, x, exp_avg, exp_avg_sq, max_exp_avg_sq, lr, beta1, beta2, eps, weight_decay,
                   decoupled, maximize, step):
    """x, exp_avg, exp_avg_sq (and max_exp_avg_sq, or None) (CuPy arrays) updated in place by
    Adam's step number ``step``."""
    amsgrad = max_exp_avg_sq is not None
    key = "adam_amsgrad" if amsgrad else "adam"
    if key not in _kernels:
        import cupy
        _kernels[key] = cupy.ElementwiseKernel(
            "T grad, T sign, bool decay_on, bool decoupled, T weight_decay, T decay, T keep1, T beta2, T keep2, "
            "T bc2, T eps, T step_size", "T x, T m, T v" + (", T vmax" if amsgrad else ""),
            _ADAM_CUDA % (_AMSGRAD_CUDA if amsgrad else ""), "tinydl_" + key + "_step")
    outputs = (x, exp_avg, exp_avg_sq) + ((max_exp_avg_sq,) if amsgrad else ())
    _kernels[key](grad, *_adam_scalars(x.dtype, lr, beta1, beta2, eps, weight_decay, decoupled, maximize, step),
                  *outputs)


# error_model="numpy": x / 0 gives inf, as NumPy's does, with no check, which let LLVM vectorise
# the loop (one thread: 0.39 against 3.3 ns an element; docs/performance.md).
@njit(parallel=True, cache=True, error_model="numpy")
def _adam_kernel(grad, x, m, v, vmax, amsgrad, sign, decay_on, decoupled, weight_decay, decay, keep1, beta2,
                 keep2, bc2, eps, step_size):
    # The plain update's operations in its order, on scalars of x's dtype, without fastmath:
    # bit-identical to it.
    for i in prange(x.size):
        g = sign * grad[i]
        xi = x[i]
        if decay_on:
            if decoupled:
                xi = xi * decay
            else:
                g = g + weight_decay * xi
        mi = m[i] + (g - m[i]) * keep1
        vi = v[i] * beta2 + (g * g) * keep2
        m[i] = mi
        v[i] = vi
        if amsgrad:
            vi = np.maximum(vmax[i], vi)
            vmax[i] = vi
        x[i] = xi - (mi / (np.sqrt(vi) / bc2 + eps)) * step_size


def adam_step_numba(grad, x, exp_avg, exp_avg_sq, max_exp_avg_sq, lr, beta1, beta2, eps, weight_decay,
                    decoupled, maximize, step):
    """x, exp_avg, exp_avg_sq (and max_exp_avg_sq, or None) (C-contiguous NumPy arrays of one
    float dtype) updated in place by Adam's step number ``step``."""
    amsgrad = max_exp_avg_sq is not None
    grad = np.ascontiguousarray(grad, dtype=x.dtype)
    flat = [a.reshape(-1) for a in (grad, x, exp_avg, exp_avg_sq, max_exp_avg_sq if amsgrad else exp_avg_sq)]
    for_this_thread(_adam_kernel, x.size)(
        *flat, amsgrad, *_adam_scalars(x.dtype, lr, beta1, beta2, eps, weight_decay, decoupled, maximize, step))
