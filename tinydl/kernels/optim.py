"""Fused optimizer steps: one kernel per parameter instead of one per array operation.

On a GPU every array operation is a kernel launch, and launches, not arithmetic, bound a
small network's step. Each fused step computes exactly its optimizer's plain update
(tinydl/optim/), which stays the readable version and the one used everywhere else.
"""
__all__ = ["sgd_momentum_step_cuda"]

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
