"""Gradient clipping: rescale (or cut) the ``.grad`` of parameters in place.

Exploding gradients (RNNs, the first steps of a transformer) make one step throw
the weights far away. Clipping by norm keeps the *direction* of the whole
gradient and caps its length:

    total = || (||g_1||_p, ||g_2||_p, ...) ||_p      (= the p-norm of all grads joined)
    g_i  <- g_i * min(1, max_norm / (total + 1e-6))

Clipping by value cuts every entry to [-clip_value, clip_value] instead (the
direction changes). Everything works on the raw arrays of the gradients, with
their own array module (NumPy or CuPy) and dtype, so no graph is recorded; each
changed ``.grad`` has its version bumped like any in-place write.
"""
import math

import numpy as np

from ...backend import get_array_module
from ...tensor import Tensor

__all__ = ["clip_grad_norm_", "clip_grad_value_", "clip_grads_with_norm_", "get_total_norm"]

# (added to the norm so that an all-zero gradient divides by something, as PyTorch)
_EPS = 1e-6


def _as_list(tensors, fn):
    """A single Tensor, or an iterable of them, as a list."""
    if isinstance(tensors, Tensor):
        return [tensors]
    try:
        return list(tensors)
    except TypeError:
        raise TypeError(f"{fn}: expected a Tensor or an iterable of Tensors, got {type(tensors).__name__}") from None


def _grads(parameters, fn):
    """The ``.grad`` of each parameter that has one (parameters without a grad are skipped)."""
    return [p.grad for p in _as_list(parameters, fn) if p.grad is not None]


def _float(value, name, fn):
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{fn}: {name} must be a number, got {value!r}") from None


def _vector_norm(a, p, xp):
    """The p-norm of all entries of ``a`` (a 0-d array of a's dtype), torch.linalg.vector_norm's cases:

    p = inf: max |a|;  p = -inf: min |a|;  p = 0: the number of non-zeros;
    otherwise (sum |a|^p)^(1/p)  (p = 2 written as sqrt(sum a^2), p = 1 as sum |a|).
    """
    if a.size == 0:       # (the norm of nothing is 0; max/min of nothing would raise)
        return xp.zeros((), dtype=a.dtype)
    mag = xp.abs(a)
    if p == math.inf:
        return mag.max()
    if p == -math.inf:
        return mag.min()
    if p == 0:
        return xp.asarray(xp.count_nonzero(a), dtype=a.dtype)
    if p == 1:
        return mag.sum()
    if p == 2:
        return xp.sqrt((mag * mag).sum())
    return (mag ** p).sum() ** (1.0 / p)


def get_total_norm(tensors, norm_type=2.0, error_if_nonfinite=False, foreach=None):
    """The ``norm_type``-norm of all ``tensors`` together (a 0-d Tensor): the norm of their norms.

    Usually ``tensors`` are gradients (``[p.grad for p in params]``). The result has the
    promoted dtype of the tensors and lives on the first one's device; with no tensors it
    is ``tensor(0.)`` (float32). ``error_if_nonfinite=True`` raises if it is nan or inf.
    ``foreach`` (PyTorch's fused multi-tensor kernels) is accepted and has no effect.
    """
    norm_type = _float(norm_type, "norm_type", "get_total_norm")
    tensors = [t for t in _as_list(tensors, "get_total_norm") if t is not None]
    if not tensors:
        return Tensor(np.zeros((), dtype=np.float32))
    xp = get_array_module(tensors[0].array)
    dtype = np.result_type(*[t.dtype for t in tensors])
    # one norm per tensor, then the same norm of those (equal to the norm of everything joined)
    norms = xp.stack([_vector_norm(t.array, norm_type, xp).astype(dtype) for t in tensors])
    total = _vector_norm(norms, norm_type, xp)
    if error_if_nonfinite and not bool(xp.isfinite(total)):
        raise RuntimeError(f"get_total_norm: the total norm of order {norm_type} for gradients from `parameters` "
                           f"is non-finite ({float(total)}), so it cannot be clipped. To scale the gradients by "
                           "the non-finite norm anyway, set `error_if_nonfinite=False`")
    return Tensor(total)


def _write_grad(grad, values):
    """Overwrite ``grad``'s data and bump its version. In place when backward gave this grad its
    own memory; a grad that may share memory with another leaf's (create_graph) or is read-only
    gets a new array instead, so the other one is not changed too."""
    if grad._backward_owned and getattr(grad.array.flags, "writeable", True):
        grad.array[...] = values
    else:
        grad.array = values
    grad._bump_version()


def clip_grads_with_norm_(parameters, max_norm, total_norm, foreach=None):
    """Scale each ``.grad`` by min(1, max_norm / (total_norm + 1e-6)), in place.

    ``total_norm`` is usually ``get_total_norm`` of the grads (a 0-d Tensor or a number);
    parameters without a grad are skipped. Returns None. ``foreach`` has no effect here.
    """
    max_norm = _float(max_norm, "max_norm", "clip_grads_with_norm_")
    grads = _grads(parameters, "clip_grads_with_norm_")
    if not grads:
        return
    total = total_norm.array if isinstance(total_norm, Tensor) else total_norm
    xp = get_array_module(grads[0].array)
    coef = xp.minimum(max_norm / (xp.asarray(total) + _EPS), 1.0)
    for g in grads:
        # the factor in the grad's dtype (a float32 grad stays float32), as PyTorch's mul_
        _write_grad(g, g.array * xp.asarray(coef, dtype=g.dtype))


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False, foreach=None):
    """Rescale the gradients of ``parameters`` so that their joint ``norm_type``-norm is at most
    ``max_norm``; returns that norm as it was before clipping (a 0-d Tensor).

    ``parameters``: a Tensor or an iterable of them (``model.parameters()``); those whose
    ``.grad`` is None are skipped. ``norm_type``: any p (``float('inf')`` for the largest
    |entry|). Each grad is multiplied by min(1, max_norm / (total + 1e-6)), so a gradient
    already short enough is left unchanged. ``error_if_nonfinite=True`` raises RuntimeError
    when the total norm is nan or inf (otherwise the grads are scaled by it, turning them
    into nan/0 as PyTorch does). ``foreach`` is accepted and has no effect here.
    """
    max_norm = _float(max_norm, "max_norm", "clip_grad_norm_")
    norm_type = _float(norm_type, "norm_type", "clip_grad_norm_")
    parameters = _as_list(parameters, "clip_grad_norm_")   # a generator can be read only once
    grads = _grads(parameters, "clip_grad_norm_")
    try:
        total = get_total_norm(grads, norm_type, error_if_nonfinite)
    except RuntimeError as exc:
        raise RuntimeError(str(exc).replace("get_total_norm", "clip_grad_norm_")) from None
    clip_grads_with_norm_(parameters, max_norm, total)
    return total


def clip_grad_value_(parameters, clip_value, foreach=None):
    """Cut every gradient entry to [-clip_value, clip_value], in place (returns None).

    As PyTorch's clamp, the lower bound is applied first: a negative ``clip_value`` sets
    every entry to ``clip_value``. Parameters without a grad are skipped; ``foreach`` has
    no effect here.
    """
    clip_value = _float(clip_value, "clip_value", "clip_grad_value_")     # (float(): "1" is read, as PyTorch)
    for g in _grads(parameters, "clip_grad_value_"):
        xp = get_array_module(g.array)
        low, high = xp.asarray(-clip_value, dtype=g.dtype), xp.asarray(clip_value, dtype=g.dtype)
        _write_grad(g, xp.minimum(xp.maximum(g.array, low), high))
