"""Check analytic gradients against central finite differences.

For a function y = f(x1, ..., xk) we pick a random upstream gradient v (one per
output, fixed by a seed) and look at the scalar L = sum(v * y). Backprop gives
dL/dxi for every input at once; finite differences give each element alone:

    dL/dx[j] ~ (L(x + eps e_j) - L(x - eps e_j)) / (2 eps)      error O(eps^2)

A random v matters: with v = 1 (``y.sum().backward()``) softmax and batch norm
have a zero gradient whatever their backward returns, so a wrong backward passes.
Run it in float64: in float32 the rounding error of L swamps eps.
"""
import numpy as np

from ..autograd import no_grad
from ..backend import get_array_module, to_host
from ..tensor import Tensor


class GradcheckError(AssertionError):
    """A gradient that disagrees with finite differences; the message names where."""


def _outputs(fn, inputs):
    out = fn(*inputs)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    return [o for o in outs if isinstance(o, Tensor) and o.dtype.kind == "f"]


def _scalar_loss(outs, upstream):
    return sum(float((o.data * v).sum()) for o, v in zip(outs, upstream))


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, seed=0, raise_exception=True):
    """True if every input with ``requires_grad`` gets the finite-difference gradient.

    ``fn`` maps the Tensors ``inputs`` to a Tensor or a tuple of Tensors. On a
    mismatch raises GradcheckError naming the input, the worst element, the
    analytic and numeric values and the relative error (or returns False when
    ``raise_exception=False``).
    """
    inputs = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    checked = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input requires grad")
    for i in checked:
        if inputs[i].dtype != np.float64:
            raise TypeError(f"gradcheck: input {i} is {inputs[i].dtype}; use float64 "
                            "(float32 rounding swamps the finite differences)")

    # analytic: one backward pass with a random upstream gradient per output
    for i in checked:
        inputs[i].grad = None
    outs = _outputs(fn, inputs)
    if not outs:
        raise ValueError("gradcheck: fn returned no floating-point Tensor")
    rng = np.random.default_rng(seed)
    upstream = []
    for o in outs:
        xp = get_array_module(o.data)
        upstream.append(xp.asarray(rng.standard_normal(o.shape)))
    for o, v in zip(outs, upstream):
        if o.requires_grad:   # dL/dx accumulates over the outputs
            o.backward(Tensor(v), retain_graph=True)

    for i in checked:
        x = inputs[i]
        analytic = np.zeros(x.shape) if x.grad is None else to_host(x.grad.data)
        numeric = np.zeros(x.shape)
        with no_grad():
            for idx in np.ndindex(*x.shape):   # indexing, not a flat view: strided inputs work too
                orig = x.data[idx].item()
                x.data[idx] = orig + eps
                plus = _scalar_loss(_outputs(fn, inputs), upstream)
                x.data[idx] = orig - eps
                minus = _scalar_loss(_outputs(fn, inputs), upstream)
                x.data[idx] = orig
                numeric[idx] = (plus - minus) / (2 * eps)
        err = np.abs(analytic - numeric)
        bad = err > atol + rtol * np.abs(numeric)
        if bad.any():
            worst = np.unravel_index(np.argmax(np.where(bad, err, -1)), x.shape)
            a, n = analytic[worst], numeric[worst]
            msg = (f"gradcheck failed for input {i} (shape {x.shape}) at element {tuple(int(k) for k in worst)}: "
                   f"analytic {a:.6g} vs numeric {n:.6g}, abs error {abs(a - n):.3g}, "
                   f"relative error {abs(a - n) / max(abs(n), 1e-12):.3g}; "
                   f"{int(bad.sum())} of {bad.size} elements out of tolerance (atol={atol}, rtol={rtol})")
            if raise_exception:
                raise GradcheckError(msg)
            return False
    return True
