"""Check analytic gradients against central finite differences.

For a function y = f(x1, ..., xk) we pick a random upstream gradient v (one per
output, fixed by a seed) and look at the scalar L = sum(v * y). Backprop gives
dL/dxi for every input at once; finite differences give each element alone:

    dL/dx[j] ~ (L(x + eps e_j) - L(x - eps e_j)) / (2 eps)      error O(eps^2)

A random v matters: with v = 1 (``y.sum().backward()``) softmax and batch norm
have a zero gradient whatever their backward returns, so a wrong backward passes.
Run it in float64: in float32 the rounding error of L swamps eps.

Finite differences assume f is a function: the same inputs give the same
outputs. Dropout in training mode draws a new mask at every call, and the
"numeric gradient" becomes noise over 2 eps (a mismatch of 10^5 and more), so
gradcheck evaluates f twice at the same point first and says so instead.

Each element costs two evaluations of f; ``nsamples`` checks a random subset of
the elements of each input (the analytic gradient is still computed whole), and
``gradcheck_module`` does that for every parameter of a Module and prints a table.
"""
import copy

import numpy as np

from ..autograd import no_grad
from ..backend import get_array_module, to_host
from ..tensor import Tensor

__all__ = ["gradcheck", "gradgradcheck", "GradcheckError", "gradcheck_module", "ModuleGradcheck"]


class GradcheckError(AssertionError):
    """A gradient that disagrees with finite differences, or a function that is not
    deterministic; the message names where."""


def _outputs(fn, inputs):
    out = fn(*inputs)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    return [o for o in outs if isinstance(o, Tensor) and o.dtype.kind == "f"]


def _scalar_loss(outs, upstream):
    return sum(float((o.array * v).sum()) for o, v in zip(outs, upstream))


def _check_deterministic(first, second, nondet_tol):
    """Raise when two evaluations of fn at the same inputs differ by more than
    ``nondet_tol`` relative to the output's size (rounding of atomic adds passes)."""
    for k, (a, b) in enumerate(zip(first, second)):
        a, b = a.array, b.array
        if a.shape != b.shape:
            raise GradcheckError(f"gradcheck: fn is not deterministic: output {k} has shape {a.shape}, "
                                 f"then {b.shape} at the same inputs")
        if a.size == 0:
            continue
        xp = get_array_module(a)
        same = (a == b) | (xp.isnan(a) & xp.isnan(b))                    # inf twice, NaN twice: the same
        gap = xp.where(same, 0, xp.abs(a - b))
        diff, scale = float(gap.max()), max(1.0, float(xp.abs(xp.nan_to_num(a)).max()))
        if not diff <= nondet_tol * scale:      # a NaN in one evaluation only fails too
            raise GradcheckError(
                f"gradcheck: fn is not deterministic: evaluated twice at the same inputs, output {k} "
                f"(shape {a.shape}) differs by up to {diff:.3g}, so finite differences would measure "
                "noise, not a gradient. A random op in training mode does this (dropout draws a new "
                "mask at every call): check in eval mode (model.eval()), or reseed inside fn "
                "(td.manual_seed(0) before the random op)")


def _positions(shape, nsamples, rng):
    """The elements to check: all of them, or ``nsamples`` distinct ones at random."""
    size = int(np.prod(shape, dtype=np.int64))
    if nsamples is None or nsamples >= size:
        return list(np.ndindex(*shape))
    flat = np.sort(rng.choice(size, size=int(nsamples), replace=False))
    return list(zip(*(axis.tolist() for axis in np.unravel_index(flat, shape))))


def _compare(fn, inputs, checked, eps, seed, nsamples, nondet_tol):
    """(positions, analytic, numeric) at the checked elements of each checked input.

    One backward pass with a random upstream gradient gives the analytic values;
    two evaluations per element the numeric ones. The inputs' ``.grad`` are left as they were.
    """
    kept = [inputs[i].grad for i in checked]
    try:
        return _analytic_and_numeric(fn, inputs, checked, eps, seed, nsamples, nondet_tol)
    finally:
        for i, grad in zip(checked, kept):
            inputs[i].grad = grad


def _analytic_and_numeric(fn, inputs, checked, eps, seed, nsamples, nondet_tol):
    for i in checked:
        inputs[i].grad = None
    outs = _outputs(fn, inputs)
    if not outs:
        raise ValueError("gradcheck: fn returned no floating-point Tensor")
    rng = np.random.default_rng(seed)
    upstream = []
    for o in outs:
        xp = get_array_module(o.array)
        upstream.append(xp.asarray(rng.standard_normal(o.shape)))
    for o, v in zip(outs, upstream):
        if o.requires_grad:   # dL/dx accumulates over the outputs
            o.backward(Tensor(v), retain_graph=True)
    with no_grad():
        _check_deterministic(outs, _outputs(fn, inputs), nondet_tol)

    results = []
    for i in checked:
        x = inputs[i]
        grad = np.zeros(x.shape) if x.grad is None else to_host(x.grad.array)
        positions = _positions(x.shape, nsamples, rng)
        analytic = np.array([grad[idx] for idx in positions], dtype=np.float64)
        numeric = np.zeros(len(positions))
        with no_grad():
            for k, idx in enumerate(positions):   # indexing, not a flat view: strided inputs work too
                orig = x.array[idx].item()
                x.array[idx] = orig + eps
                plus = _scalar_loss(_outputs(fn, inputs), upstream)
                x.array[idx] = orig - eps
                minus = _scalar_loss(_outputs(fn, inputs), upstream)
                x.array[idx] = orig
                numeric[k] = (plus - minus) / (2 * eps)
        results.append((positions, analytic, numeric))
    return results


def _checked_inputs(inputs, op="gradcheck"):
    """Indices of the inputs that require grad; all must be float64."""
    checked = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    if not checked:
        raise ValueError(f"{op}: no input requires grad")
    for i in checked:
        if inputs[i].dtype != np.float64:
            raise TypeError(f"{op}: input {i} is {inputs[i].dtype}; use float64 "
                            "(float32 rounding swamps the finite differences)")
    return checked


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, seed=0, raise_exception=True,
              nsamples=None, nondet_tol=1e-12):
    """True if every input with ``requires_grad`` gets the finite-difference gradient.

    ``fn`` maps the Tensors ``inputs`` to a Tensor or a tuple of Tensors. An element
    passes when |analytic - numeric| <= atol + rtol * |numeric|. On a mismatch raises
    GradcheckError naming the input, the worst element, the analytic and numeric
    values and the relative error (or returns False when ``raise_exception=False``).

    ``nsamples``: check only this many elements of each input, drawn at random with
    ``seed`` (None: all). ``nondet_tol``: how far two evaluations of fn at the same
    inputs may differ, relative to the output's size, before fn is reported as not
    deterministic (a GradcheckError, whatever ``raise_exception``).
    """
    inputs = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    checked = _checked_inputs(inputs)
    for i, (positions, analytic, numeric) in zip(checked, _compare(fn, inputs, checked, eps, seed, nsamples,
                                                                   nondet_tol)):
        err = np.abs(analytic - numeric)
        bad = ~(err <= atol + rtol * np.abs(numeric))     # a NaN on either side fails
        if bad.any():
            k = int(np.argmax(np.where(bad, err, -1)))
            a, n = analytic[k], numeric[k]
            shape = inputs[i].shape
            msg = (f"gradcheck failed for input {i} (shape {shape}) at element "
                   f"{tuple(int(j) for j in positions[k])}: "
                   f"analytic {a:.6g} vs numeric {n:.6g}, abs error {abs(a - n):.3g}, "
                   f"relative error {abs(a - n) / max(abs(n), 1e-12):.3g}; "
                   f"{int(bad.sum())} of {bad.size} checked elements out of tolerance (atol={atol}, rtol={rtol})")
            if raise_exception:
                raise GradcheckError(msg)
            return False
    return True


# ---------------------------------------------------------------- whole modules
class ModuleGradcheck(list):
    """What ``gradcheck_module`` found: one dict per checked tensor (``name``, ``shape``,
    ``checked``, ``analytic_norm``, ``numeric_norm``, ``max_rel_error``, ``worst``,
    ``ok``), with ``ok`` for all of them and ``table()`` to print."""

    @property
    def ok(self):
        return all(row["ok"] for row in self)

    def failed(self):
        return [row for row in self if not row["ok"]]

    def table(self):
        width = max([len("parameter")] + [len(row["name"]) for row in self])
        head = (f"{'parameter':<{width}}  {'shape':<18} {'checked':>8}  {'|analytic|':>11}  {'|numeric|':>11}  "
                f"{'max rel err':>11}  ok")
        lines = [head, "-" * len(head)]
        for row in self:
            shape = "x".join(str(n) for n in row["shape"]) or "scalar"
            lines.append(f"{row['name']:<{width}}  {shape:<18} {row['checked']:>8}  {row['analytic_norm']:>11.4g}  "
                         f"{row['numeric_norm']:>11.4g}  {row['max_rel_error']:>11.2g}  "
                         f"{'ok' if row['ok'] else 'FAIL'}")
        bad = self.failed()
        lines.append(f"{len(self) - len(bad)} of {len(self)} tensors agree with finite differences" +
                     (f"; FAILED: {', '.join(row['name'] for row in bad)}" if bad else ""))
        return "\n".join(lines)

    def __str__(self):
        return self.table()


def gradgradcheck(fn, inputs, grad_outputs=None, eps=1e-6, atol=1e-5, rtol=1e-3, seed=0, raise_exception=True,
                  nsamples=None):
    """Second derivatives of ``fn`` against finite differences of its first derivatives.

    The function checked is inputs -> d(sum of grad_outputs * fn(inputs))/d inputs, built
    with ``td.autograd.grad(..., create_graph=True)``: its own gradient (the second
    derivative of fn along ``grad_outputs``) must match finite differences of it, as
    ``gradcheck`` checks any function. ``grad_outputs``: one per output of fn (default:
    random, drawn with ``seed``, and differentiated too, as PyTorch's gradgradcheck).
    Raises NotImplementedError for a graph with an op whose backward is not
    differentiable yet (``Function.double_backward``).
    """
    from ..autograd import enable_grad, grad
    inputs = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    wrt = [t for t in inputs if isinstance(t, Tensor) and t.requires_grad]
    outs = _outputs(fn, inputs)
    if grad_outputs is None:
        rng = np.random.default_rng(seed)
        xp = get_array_module(outs[0].array)
        grad_outputs = [Tensor(xp.asarray(rng.standard_normal(o.shape)).astype(o.dtype), requires_grad=True)
                        for o in outs]
    grad_outputs = list(grad_outputs)

    def first_derivatives(*args):
        xs, vs = args[:len(inputs)], args[len(inputs):]
        with enable_grad():             # gradcheck's finite differences run under no_grad
            ys = _outputs(fn, xs)
            chosen = [x for x in xs if isinstance(x, Tensor) and x.requires_grad]
            grads = grad(ys, chosen, grad_outputs=list(vs), create_graph=True, allow_unused=True)
        return tuple(g for g in grads if g is not None)

    if not wrt:
        raise ValueError("gradgradcheck: no input requires grad")
    return gradcheck(first_derivatives, inputs + tuple(grad_outputs), eps=eps, atol=atol, rtol=rtol, seed=seed,
                     raise_exception=raise_exception, nsamples=nsamples)


def gradcheck_module(module, inputs, loss_fn=None, *, nsamples=None, eps=1e-6, atol=1e-5, rtol=1e-3, seed=0,
                     dtype=np.float64, nondet_tol=1e-12, print_table=True, file=None, raise_exception=True):
    """Check the gradient of every parameter of ``module`` on one batch ``inputs``.

    Runs on a copy of the module converted to ``dtype`` (float64; the module itself
    is left alone), with the floating-point inputs converted too. The function
    checked is ``loss_fn(module(*inputs))`` (default: the output itself, seen
    through gradcheck's random upstream gradient); inputs with ``requires_grad``
    are checked as well. ``nsamples`` elements of each tensor (None: all; each costs
    two forward passes). The module's mode is kept: dropout in training mode is
    reported as not deterministic, so call ``module.eval()`` first or switch the
    dropout layers off.

    Returns a ``ModuleGradcheck`` (one row per tensor: analytic and numeric norm over
    the checked elements, the largest relative error |a - n| / max(|a|, |n|, atol),
    ok), printed as a table when ``print_table``. Raises GradcheckError naming the
    failing tensors when ``raise_exception`` (else see ``.ok``).
    """
    module = copy.deepcopy(module).to(dtype)
    inputs = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    inputs = tuple(_converted(t, dtype) for t in inputs)
    named = [(name, p) for name, p in module.named_parameters() if p.requires_grad]
    named += [(f"input {i}", t) for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    if not named:
        raise ValueError(f"gradcheck_module: {type(module).__name__} has no parameter that requires grad "
                         "and no input requires grad")
    tensors = tuple(t for _, t in named)

    def fn(*_):     # the tensors are perturbed in place; the module reads them itself
        out = module(*inputs)
        return loss_fn(out) if loss_fn is not None else out

    results = _compare(fn, tensors, range(len(tensors)), eps, seed, nsamples, nondet_tol)
    report = ModuleGradcheck()
    for (name, t), (positions, analytic, numeric) in zip(named, results):
        err = np.abs(analytic - numeric)
        bad = ~(err <= atol + rtol * np.abs(numeric))     # a NaN on either side fails
        rel = err / np.maximum(np.maximum(np.abs(analytic), np.abs(numeric)), atol)
        k = int(np.argmax(np.where(bad, err, rel))) if err.size else 0
        report.append(dict(name=name, shape=tuple(t.shape), checked=len(positions),
                           analytic_norm=float(np.linalg.norm(analytic)), numeric_norm=float(np.linalg.norm(numeric)),
                           max_rel_error=float(rel.max(initial=0.0)), ok=not bad.any(),
                           worst=dict(element=tuple(int(j) for j in positions[k]), analytic=float(analytic[k]),
                                      numeric=float(numeric[k])) if err.size else None))
    if print_table:
        print(report.table(), file=file)
    if raise_exception and not report.ok:
        details = "; ".join(f"{row['name']} at {row['worst']['element']}: analytic {row['worst']['analytic']:.6g} "
                            f"vs numeric {row['worst']['numeric']:.6g}" for row in report.failed())
        raise GradcheckError(f"gradcheck_module: {len(report.failed())} of {len(report)} tensors of "
                             f"{type(module).__name__} disagree with finite differences: {details}")
    return report


def _converted(t, dtype):
    """A floating-point Tensor in ``dtype`` (a leaf again, keeping requires_grad); others as given."""
    if not isinstance(t, Tensor) or t.dtype.kind != "f" or t.dtype == dtype:
        return t
    return Tensor(t.array.astype(dtype), requires_grad=t.requires_grad)
