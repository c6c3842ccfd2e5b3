"""In-place changes of a tensor: ``x += y``, ``x.add_(y)``, ``x[i] = v``, as PyTorch's.

The first place a learner meets them is the update written by hand:

    with td.no_grad():
        for p in model.parameters():
            p -= lr * p.grad

Python's ``-=`` calls ``__isub__``; without it ``p`` would only be rebound to a new
tensor, and the model would not train.

Outside the graph (under ``no_grad``, or where nothing requires grad) the change is
written into x's array, and x's version counter goes up: x's views and every other name
for x see the new values, and a node that saved x's array for its backward refuses to
run (autograd.py, ``_check_versions``).

While the graph is recorded (grad mode on, and x or the value requires grad) the change
is an op of the graph, as in PyTorch: the out-of-place op computes the result, which is
written into x's array, and x becomes that op's output (``rebase_in_place``), so later
uses of x backpropagate through it and its old history. Refused as by PyTorch, where
that would break a gradient: a leaf that requires grad (a parameter, outside
``no_grad``), a tensor whose own op saved it for its backward (tanh's y), a tensor that
a later op keeps itself (one that reruns itself for its gradient). The result's dtype
must fit x's (``int_tensor += 0.5`` raises, as PyTorch's "result type Float can't be cast").

Views, as PyTorch's: x may be a view (``x[0]``, ``x.reshape(4)``, ``x.t()``: a tensor that
remembers its base and the ops that made it, ``Tensor._view_of``). Changing it while
recording changes its base too, so the base becomes the output of ``CopySlices(base,
result)`` (shape.py), and every other tensor over that memory, the view itself included,
takes its history from the base's again, made by the same view ops (``autograd.catch_up``)
when it is next used. Under ``no_grad`` views write through, and nothing changes in the graph.
"""
from ..autograd import UNTRACKED_VIEW, catch_up, is_grad_enabled, let_go, mark_rebased, no_grad, rebase_in_place
from ..tensor import Tensor
from . import math as _math
from .promotion import KIND
from .shape import CopySlices, IndexPut, put, raw_torch_index, take

#: each op's array-module function (which computes in place with ``out=``) and operator
_UFUNC = {_math.add: ("add", "+"), _math.sub: ("subtract", "-"), _math.mul: ("multiply", "*"),
          _math.div: ("true_divide", "/"), _math.pow: ("power", "**"), _math.remainder: ("remainder", "%"),
          _math.floor_divide: ("floor_divide", "//")}


def overwrite_ok(x, op, instead):
    """May ``op`` write into x's array while the graph is recorded? True, or an error where
    PyTorch's autograd would refuse (module docstring; ``instead`` says what to write
    instead); False for a non-Tensor."""
    if not isinstance(x, Tensor):
        return False
    _up_to_date(x, op)
    if not (is_grad_enabled() and x.requires_grad):
        return True
    xp = x._xp
    refuse_unwritable_view(x, op)
    for t in (x,) if x._view_of is None else (x, x._view_of[0]):       # x, and the base x views
        if t.grad_fn is None:
            if not t.requires_grad:
                continue
            raise RuntimeError(f"{op}: the tensor is (a view of) a leaf that requires grad (a parameter or "
                               f"an input with requires_grad=True); it cannot be changed in place while the "
                               f"graph is recorded: {instead}, or change it under td.no_grad()")
        node = t.grad_fn
        for saved in getattr(node, "saved_tensors", None) or ():
            if hasattr(saved, "shape") and xp.may_share_memory(saved, x.array):
                raise RuntimeError(f"{op}: the tensor was saved by {node.name} for its backward pass; "
                                   f"changing it would corrupt that gradient: {instead}")
        if t._kept_by_a_node:   # an earlier op keeps it itself: it would see its new history
            raise RuntimeError(f"{op}: the tensor (or the tensor it views) was used before by an op that "
                               f"reruns itself for its gradient and keeps its input; changing it in place "
                               f"would change that op's gradient: {instead}")
    return True


def _up_to_date(x, op):
    """A view whose memory was changed through another tensor takes its new history first
    (``autograd.catch_up``): whether the change is recorded, and what it follows, depend on it."""
    counter = x._version_counter
    if counter is not None and counter.rebased != x._history_of and is_grad_enabled():
        catch_up(x, op)


def _recording(x, value, op):
    """Is the change an op of the graph? (An integer x never is: its values carry no gradient.)"""
    _up_to_date(x, op)
    recording = is_grad_enabled() and x.dtype.kind in "fc" and (
        x.requires_grad or (isinstance(value, Tensor) and value.requires_grad))
    if recording:
        refuse_unwritable_view(x, op)
    return recording


def refuse_unwritable_view(x, op):
    """The views PyTorch does not let a recorded in-place change through: one made under
    no_grad, and a piece of split / chunk (an op that returns several views)."""
    if x._view_of is UNTRACKED_VIEW:
        raise RuntimeError(f"{op}: the tensor is a view made under no_grad; as in PyTorch, it cannot be changed "
                           f"in place while the graph is recorded: clone() it first, or change it under "
                           f"td.no_grad()")
    if x._view_of is not None and any(which is not None for _, _, which in x._view_of[1]):
        raise RuntimeError(f"{op}: the tensor is a view made by an op that returns several views (split, "
                           f"chunk); as in PyTorch, such views cannot be changed in place while the graph is "
                           f"recorded: clone() it first, or use an out-of-place op")


def update(x, fn, other, op):
    """x <- fn(x, other) in x's own array: ``add_``, ``sub_``, ``mul_``, ``div_``, ``pow_`` and
    the operators ``+=``, ``-=``, ``*=``, ``/=``, ``**=``, ``%=``, ``//=`` (module docstring). Returns x."""
    ufunc, symbol = _UFUNC[fn]
    a, b = _math._operands(x, other, fn.__name__)      # both in the result's dtype (PyTorch's promotion)
    if KIND[a.dtype.kind] > KIND[x.dtype.kind]:
        raise RuntimeError(f"{op}: result type {a.dtype} can't be cast to the desired output type {x.dtype} "
                           f"(tensor of shape {tuple(x.shape)})")
    if b.ndim > x.ndim or any(n != 1 and n != m for n, m in zip(b.shape[::-1], x.shape[::-1])):
        raise RuntimeError(f"{op}: output with shape {tuple(x.shape)} doesn't match the broadcast shape of "
                           f"{tuple(x.shape)} and {tuple(b.shape)}")
    if fn is _math.remainder or fn is _math.floor_divide:
        _math.check_integer_divisor(fn.__name__, _math.raw(a), _math.raw(b))
    if not _recording(x, other, op):
        # (the result's dtype fits x's kind, checked above: uint8 += int64 writes uint8, as PyTorch)
        getattr(x._xp, ufunc)(_math.raw(a), _math.raw(b), out=x.array, casting="unsafe")
        x._bump_version()
        return x
    if fn is _math.floor_divide:
        raise RuntimeError(f"{op}: floor division has no gradient; while the graph is recorded write "
                           f"x = x // y, or change it under td.no_grad()")
    overwrite_ok(x, op, instead=f"write x = x {symbol} y")
    source = x
    if fn is _math.pow or fn is _math.mul and isinstance(other, Tensor) and other.requires_grad:
        # y = a * b keeps a for b's gradient, y = a ** b for both: they read a copy of x, which
        # the write below leaves as it is (PyTorch's "original self")
        source = _math.clone(x)
        other = source if other is x else other
    out = fn(source, other)
    write_result(x, out)
    return x


def setitem(x, index, value):
    """``x[index] = value`` with PyTorch's indexing rules (``shape.raw_torch_index``), the
    value broadcast and cast to x's dtype (module docstring)."""
    index = raw_torch_index(index, x._xp, x.shape, "setitem")
    if len(index) == 2:     # the ints applied first must give a view to write into: Python ints
        index = (tuple(int(p) if getattr(p, "ndim", None) == 0 else p for p in index[0]), index[1])
    if not _recording(x, value, "setitem"):
        put(x.array, index, _math.raw(value))
        x._bump_version()
        return
    overwrite_ok(x, "setitem", instead="write into a clone(), or build the tensor with td.cat / td.where")
    if not isinstance(value, Tensor):
        value = Tensor(x._xp.asarray(value, dtype=x.dtype))
    elif value._version_counter is not None and value._version_counter is x._version_counter:
        # x[i] += w: x's view x[i] was changed in place, and is now written back: x's new
        # history (IndexPut of that view) explains x's values again
        x._history_of = x._version_counter.rebased
    if value.ndim and value.shape[0] == 1:      # leading 1s beyond the written part: dropped,
        region = take(x.array, index).ndim      # as PyTorch (the part's rank: a copy for an array index)
        if value.ndim > region:
            value = value.reshape(value.shape[value.ndim - region:])
    write_result(x, IndexPut.apply(x, value, index=index))


def bitwise(x, name, other, op):
    """``x &= y``, ``|=``, ``^=`` on bool or integer tensors, in x's own array (no gradient)."""
    getattr(x._xp, name)(x.array, _math.raw(other), out=x.array)
    x._bump_version()
    return x


def apply(x, fn, op, others=(), instead="use the out-of-place op"):
    """x <- fn(x) in x's own array, for ops that have no in-place form of their own
    (``x.clamp_()``, ``x.exp_()``, ``F.elu(x, inplace=True)``): computed out of place, then
    written. While recorded, fn reads a copy of x (its backward may read x, which the write
    replaces: PyTorch's "original self") and x becomes the result's output (``write_result``).
    ``others``: the op's other operands (a bound that requires grad makes it recorded). Returns x."""
    overwrite_ok(x, op, instead=instead)
    if not any([_recording(x, other, op) for other in others or (None,)]):
        with no_grad():
            out = fn(x)
        if KIND[out.dtype.kind] > KIND[x.dtype.kind]:
            raise RuntimeError(f"{op}: result type {out.dtype} can't be cast to the desired output type {x.dtype} "
                               f"(tensor of shape {tuple(x.shape)})")
        x.array[...] = out.array
        x._bump_version()
        return x
    write_result(x, fn(_math.clone(x)))
    return x


def write_result(x, out):
    """Write the recorded op's result ``out`` into x's array and make x its output."""
    if out.dtype != x.dtype:            # float16 x += float32 y: computed in float32, stored in float16
        out = _math.cast(out, x.dtype)
    x.array[...] = out.array
    x._bump_version()
    record_write(x, out)


def record_write(x, out):
    """x's array now holds ``out``'s values (written by the caller): make x the output of
    the op that made ``out`` (``rebase_in_place``), and tell the other tensors over x's
    memory (``mark_rebased``). For a view, as PyTorch's: its base becomes the output of
    CopySlices(base, out), which puts out into the base's view, and the view is made again
    from the base (``catch_up``)."""
    if x._view_of is None:
        rebase_in_place(x, out)
        mark_rebased(x)
        return
    base, steps = x._view_of
    let_go(x, out)
    rebase_in_place(base, CopySlices.apply(base, out, steps=steps))
    mark_rebased(base)
    catch_up(x, "an in-place change of a view")
