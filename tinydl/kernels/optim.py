"""Fused optimizer steps: one kernel per parameter instead of one per array operation.

On a GPU every array operation is a kernel launch, and launches, not arithmetic, bound a
small network's step. Each fused step computes exactly its optimizer's plain update
(tinydl/optim/), which stays the readable version and the one used everywhere else.
On the CPU the fused steps are Numba loops: one pass over the arrays instead of four,
and one call instead of four NumPy calls (benchmarks/bench_alone.py's ResNet-20 batch 1
row: 62 small parameters per step).
"""
import numpy as np

from ._dispatch import for_this_thread, njit, prange

__all__ = ["sgd_momentum_step_cuda", "sgd_momentum_step_numba"]

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
