"""Derivatives of a whole function, as ``torch.autograd.functional``: ``td.autograd.functional``.

Each takes ``func`` (Tensors in, a Tensor or a tuple of Tensors out) and ``inputs``
(a Tensor or a tuple of Tensors), evaluates ``func`` once at ``inputs`` and
differentiates it with ``td.autograd.grad``. For y = f(x) with Jacobian J = dy/dx:

=============  ======================  ==============================================
vjp            v^T J (shape of x)      one backward pass, seeded with v
jvp            J v   (shape of y)      two backward passes (the double-vjp trick)
jacobian       J  (y.shape + x.shape)  one backward pass per element of y
hessian        H = d^2 f / dx dx       the Jacobian of the gradient (f a scalar)
vhp, hvp       v^T H, H v              two, and three, backward passes
=============  ======================  ==============================================

Several inputs x_1..x_n or outputs y_1..y_m give tuples: ``jacobian(...)[i][j]`` is
dy_i/dx_j; a Tensor given alone (not in a tuple) gives a Tensor back, as in PyTorch.

The user's tensors are left alone: ``func`` runs on fresh copies that require grad
(``detach``), or, with ``create_graph=True`` and a tensor that already requires grad, on
a recorded view of it, so the results stay differentiable with respect to the user's
tensors. ``create_graph=False`` returns plain (detached) tensors. An input that no
output depends on gets zeros (the true derivative), or, with ``strict=True``, a
RuntimeError, as does an output that does not depend on the inputs at all.
"""
from .autograd import enable_grad, grad
from .backend import get_array_module
from .tensor import Tensor, zeros_like

__all__ = ["vjp", "jvp", "jacobian", "hessian", "hvp", "vhp"]


# ------------------------------------------------------------------ helpers
def _as_tuple(x, what, fn):
    """(was it a tuple, a tuple of Tensors): a lone Tensor is wrapped, anything else refused."""
    was_tuple = isinstance(x, tuple)
    items = x if was_tuple else (x,)
    for i, t in enumerate(items):
        if not isinstance(t, Tensor):
            where = f"entry {i}" if was_tuple else "it"
            raise TypeError(f"{fn}: {what} must be a Tensor or a tuple of Tensors, but {where} is {type(t)}")
    return was_tuple, items


def _fresh(tensors, create_graph, need_graph):
    """Tensors of our own to differentiate with respect to (the user's keep their flags)."""
    return tuple(t.view_as(t) if create_graph and t.requires_grad   # recorded: the result still
                 else t.detach().requires_grad_(need_graph)          # leads back to the user's t
                 for t in tensors)


def _inputs(inputs, fn, create_graph):
    was_tuple, inputs = _as_tuple(inputs, "inputs", fn)
    return was_tuple, _fresh(inputs, create_graph, need_graph=True)


def _outputs(func, inputs, fn, strict):
    was_tuple, outputs = _as_tuple(func(*inputs), "the outputs of the function", fn)
    if strict:
        for i, out in enumerate(outputs):
            if not out.requires_grad:
                raise RuntimeError(f"{fn}: output {i} of the function does not require grad; strict mode "
                                   "wants every output computed differentiably from the inputs")
    return was_tuple, outputs


def _scalar_output(func, inputs, fn, strict):
    """func's output, which must be one Tensor of one element (hessian, vhp, hvp)."""
    was_tuple, outputs = _outputs(func, inputs, fn, strict)
    if was_tuple:
        raise RuntimeError(f"{fn}: the function should return a single Tensor, not a tuple")
    out = outputs[0]
    if out.numel() != 1:
        raise RuntimeError(f"{fn}: the function should return a Tensor of one element, got shape {out.shape}")
    return out


def _vector(v, like, like_is_tuple, fn, create_graph):
    """Check ``v`` against ``like`` (the tensors it multiplies) and make it ours; None is 1
    where ``like`` is one element."""
    if v is None:
        if len(like) != 1 or like[0].numel() != 1:
            raise RuntimeError(f"{fn}: v can be None only when it multiplies a single Tensor of one element")
        return (None,)
    v = _fresh(_as_tuple(v, "v", fn)[1], create_graph, need_graph=False)
    if len(v) != len(like):
        raise RuntimeError(f"{fn}: v has {len(v)} Tensors, it should have {len(like)}" if like_is_tuple else
                           f"{fn}: v should be a single Tensor, got {len(v)}")
    for i, (a, b) in enumerate(zip(v, like)):
        if a.shape != b.shape:
            entry = f"entry {i} of " if like_is_tuple else ""
            raise RuntimeError(f"{fn}: {entry}v has shape {a.shape}, it should be {b.shape}")
    return v


def _grad(outputs, inputs, v=None, create_graph=False, retain_graph=None):
    """sum_k v_k^T d outputs_k / d inputs, None for an input that no output reaches. Outputs
    that do not require grad (a constant, a None) contribute nothing and are skipped."""
    v = (None,) * len(outputs) if v is None else v
    pairs = [(o, g) for o, g in zip(outputs, v) if o is not None and o.requires_grad]
    if not pairs:
        return (None,) * len(inputs)
    outs, seeds = zip(*pairs)
    return grad(list(outs), list(inputs), list(seeds), retain_graph=retain_graph,
                create_graph=create_graph, allow_unused=True)


def _check(grads, strict, fn, what):
    """strict: refuse a gradient that is missing (None) or a constant (it does not require grad)."""
    if strict:
        for i, g in enumerate(grads):
            if g is None or not g.requires_grad:
                raise RuntimeError(f"{fn}: {what.format(i=i)}; not allowed in strict mode")


def _zeros_for_none(grads, like, strict, create_graph, fn, what):
    """An unreached input's derivative is zero; strict mode refuses it instead (and, with
    create_graph, a derivative that is a constant, so not differentiable again)."""
    out = []
    for i, (g, ref) in enumerate(zip(grads, like)):
        if g is None and not strict:
            g = zeros_like(ref)
        elif g is None or (strict and create_graph and not g.requires_grad):
            constant = "" if g is None else " (a constant: create_graph=True has nothing to record)"
            raise RuntimeError(f"{fn}: {what.format(i=i)}{constant}; not allowed in strict mode")
        out.append(g)
    return tuple(out)


def _finish(results, create_graph):
    """Detach everything (nested tuples too) unless the caller wants the graph."""
    if isinstance(results, Tensor):
        return results if create_graph else results.detach()
    return tuple(_finish(r, create_graph) for r in results)


def _unpack(results, was_tuple):
    return results if was_tuple else results[0]


def _unpack2(blocks, outs_tuple, ins_tuple):
    """blocks[i][j] -> a tuple of tuples, a tuple, or one Tensor, as the caller passed them."""
    return _unpack(tuple(_unpack(row, ins_tuple) for row in blocks), outs_tuple)


# ------------------------------------------------------------------ the API
def vjp(func, inputs, v=None, create_graph=False, strict=False):
    """(func(inputs), v^T J): the vector-Jacobian product, one backward pass seeded with v.

    For y = f(x), (v^T J)_j = sum_i v_i dy_i/dx_j, shaped as the inputs; ``v`` is shaped as
    the outputs (None for a one-element output: 1).
    """
    with enable_grad():
        ins_tuple, inputs = _inputs(inputs, "vjp", create_graph)
        outs_tuple, outputs = _outputs(func, inputs, "vjp", strict)
        v = _vector(v, outputs, outs_tuple, "vjp", create_graph)
        result = _zeros_for_none(_grad(outputs, inputs, v, create_graph), inputs, strict, create_graph,
                                 "vjp", "the output is independent of input {i}")
    return _unpack(_finish(outputs, create_graph), outs_tuple), _unpack(_finish(result, create_graph), ins_tuple)


def jvp(func, inputs, v=None, create_graph=False, strict=False):
    """(func(inputs), J v): the Jacobian-vector product (a directional derivative).

    For y = f(x), (J v)_i = sum_j dy_i/dx_j v_j, shaped as the outputs; ``v`` is shaped as
    the inputs. tinydl has reverse mode only, so: the double-vjp trick. A vjp with a dummy
    cotangent u, recorded (create_graph=True), is the function g(u) = J^T u of u. Then
    <g(u), v> = u^T J v, whose gradient in u is J v, whatever u is (zeros here): a second
    backward pass, from g into u, seeded with v, gives J v.
    """
    with enable_grad():
        ins_tuple, inputs = _inputs(inputs, "jvp", create_graph)
        v = _vector(v, inputs, ins_tuple, "jvp", create_graph)
        outs_tuple, outputs = _outputs(func, inputs, "jvp", strict)
        u = tuple(zeros_like(o, requires_grad=True) for o in outputs)          # the dummy cotangent
        jt_u = _grad(outputs, inputs, u, create_graph=True)
        _check(jt_u, strict, "jvp", "the output is independent of input {i}")
        result = _zeros_for_none(_grad(jt_u, u, v, create_graph), outputs, strict, create_graph, "jvp",
                                 "the gradient is independent of entry {i} of the dummy cotangent")
    return _unpack(_finish(outputs, create_graph), outs_tuple), _unpack(_finish(result, create_graph), outs_tuple)


def jacobian(func, inputs, create_graph=False, strict=False, vectorize=False, strategy="reverse-mode"):
    """dy_i/dx_j for every output y_i and input x_j, of shape y_i.shape + x_j.shape.

    "reverse-mode": row k of dy_i/dx_j (output element k) is the vjp with v = e_k, the k-th
    standard basis vector: one backward pass per output element, the rows stacked.
    "forward-mode": column k (input element k) is the jvp with v = e_k: one jvp per input
    element (with true forward mode, as in PyTorch, the cheaper way when the outputs have
    more elements than the inputs; here each jvp is a call of func and two backward passes).
    ``vectorize`` is accepted and changes nothing (PyTorch batches the passes with vmap;
    tinydl runs them one by one, and also allows forward-mode without it).
    """
    if strategy not in ("reverse-mode", "forward-mode"):
        raise ValueError(f'jacobian: strategy must be "reverse-mode" or "forward-mode", got {strategy!r}')
    if strategy == "forward-mode":
        if create_graph:
            raise NotImplementedError('jacobian: create_graph=True with strategy="forward-mode" is not '
                                      'supported (as in PyTorch); use strategy="reverse-mode"')
        if strict:
            raise RuntimeError('jacobian: strict=True with strategy="forward-mode" is not supported '
                               '(as in PyTorch); use strategy="reverse-mode"')
        return _jacobian_forward(func, inputs)
    from .ops.shape import stack        # (late: the ops import autograd, which imports this module)
    with enable_grad():
        ins_tuple, inputs = _inputs(inputs, "jacobian", create_graph)
        outs_tuple, outputs = _outputs(func, inputs, "jacobian", strict)
        if vectorize and strict:
            raise RuntimeError("jacobian: strict=True with vectorize=True is not supported (as in PyTorch)")
        blocks = []
        for i, out in enumerate(outputs):
            basis = get_array_module(out.array).eye(out.numel(), dtype=out.dtype)
            rows = [[] for _ in inputs]             # rows[j][k]: d out.flat[k] / d inputs[j]
            for e_k in basis:
                vj = _grad((out,), inputs, (Tensor(e_k.reshape(out.shape)),), create_graph, retain_graph=True)
                vj = _zeros_for_none(vj, inputs, strict, create_graph, "jacobian",
                                     f"output {i} is independent of input {{i}}")
                for row, g in zip(rows, vj):
                    row.append(g)
            blocks.append(tuple(stack(row).reshape(out.shape + x.shape) for row, x in zip(rows, inputs)))
    return _unpack2(_finish(blocks, create_graph), outs_tuple, ins_tuple)


def _jacobian_forward(func, inputs):
    """The Jacobian by columns: column k of dy_i/dx_j is the i-th output of jvp(v = e_k in x_j)."""
    from .ops.shape import stack
    ins_tuple, inputs = _as_tuple(inputs, "inputs", "jacobian")
    columns = []                                    # columns[j][k]: the jvps along x_j.flat[k]
    for j, x in enumerate(inputs):
        columns.append([])
        for e_k in get_array_module(x.array).eye(x.numel(), dtype=x.dtype):
            v = tuple(Tensor(e_k.reshape(x.shape)) if m == j else zeros_like(t) for m, t in enumerate(inputs))
            outputs, jv = jvp(func, inputs, v)
            outs_tuple, jv = (True, jv) if isinstance(outputs, tuple) else (False, (jv,))
            columns[j].append(jv)
    outputs = outputs if outs_tuple else (outputs,)
    blocks = [tuple(stack([col[i] for col in cols], -1).reshape(y.shape + x.shape)
                    for cols, x in zip(columns, inputs)) for i, y in enumerate(outputs)]
    return _unpack2(blocks, outs_tuple, ins_tuple)


def hessian(func, inputs, create_graph=False, strict=False, vectorize=False, outer_jacobian_strategy="reverse-mode"):
    """H_jk = d^2 f / dx_j dx_k of a scalar f, of shape x_j.shape + x_k.shape: the Jacobian
    of the gradient, whose graph is recorded (create_graph=True) so it can be differentiated.
    One input gives one Tensor, a tuple of inputs a tuple of tuples. ``vectorize`` changes
    nothing; ``outer_jacobian_strategy`` is the second Jacobian's ``strategy``."""
    ins_tuple, inputs = _as_tuple(inputs, "inputs", "hessian")

    def scalar(*xs):
        return _scalar_output(func, xs, "hessian", strict).reshape(())

    def gradient(*xs):                  # a tuple of inputs in, a tuple of gradients out
        g = jacobian(scalar, xs, create_graph=True)
        _check(g, strict, "hessian", "the gradient with respect to input {i} does not depend on the "
                                     "inputs (a linear function?)")
        return g

    H = jacobian(gradient, inputs, create_graph, strict, vectorize, outer_jacobian_strategy)
    return _unpack2(H, ins_tuple, ins_tuple)


def vhp(func, inputs, v=None, create_graph=False, strict=False):
    """(func(inputs), v^T H) for a scalar function: the gradient g = df/dx, recorded, then the
    vjp of g with v, (v^T H)_k = sum_j v_j d g_j / dx_k. Two backward passes."""
    with enable_grad():
        ins_tuple, inputs = _inputs(inputs, "vhp", create_graph)
        v = _vector(v, inputs, ins_tuple, "vhp", create_graph)
        out = _scalar_output(func, inputs, "vhp", strict)
        g = _grad((out,), inputs, create_graph=True)
        _check(g, strict, "vhp", "the gradient with respect to input {i} does not depend on the inputs")
        result = _zeros_for_none(_grad(g, inputs, v, create_graph), inputs, strict, create_graph, "vhp",
                                 "the gradient is independent of input {i}")
    return _finish(out, create_graph), _unpack(_finish(result, create_graph), ins_tuple)


def hvp(func, inputs, v=None, create_graph=False, strict=False):
    """(func(inputs), H v) for a scalar function: the jvp of its gradient g = df/dx, by the
    double-vjp trick (see ``jvp``): g recorded, u -> H^T u recorded, then its derivative in
    u along v, H v. Three backward passes; H is symmetric for a twice continuously
    differentiable f, where ``vhp`` gives the same with two."""
    with enable_grad():
        ins_tuple, inputs = _inputs(inputs, "hvp", create_graph)
        v = _vector(v, inputs, ins_tuple, "hvp", create_graph)
        out = _scalar_output(func, inputs, "hvp", strict)
        g = _grad((out,), inputs, create_graph=True)
        _check(g, strict, "hvp", "the gradient with respect to input {i} does not depend on the inputs")
        u = tuple(zeros_like(x, requires_grad=True) for x in inputs)          # the dummy cotangent
        ht_u = _grad(g, inputs, u, create_graph=True)
        result = _zeros_for_none(_grad(ht_u, u, v, create_graph), inputs, strict, create_graph, "hvp",
                                 "the Hessian is independent of entry {i} of the dummy cotangent")
    return _finish(out, create_graph), _unpack(_finish(result, create_graph), ins_tuple)
