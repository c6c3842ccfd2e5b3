"""Reverse-mode automatic differentiation, define-by-run.

Every differentiable operation is a ``Function`` with two methods on raw arrays
(numpy or cupy, never Tensors)::

    class Sigmoid(Function):
        def forward(ctx, x):            # y = 1 / (1 + exp(-x))
            y = 1 / (1 + xp.exp(-x))
            ctx.save_for_backward(y)
            return y

        def backward(ctx, gy):          # dL/dx = dL/dy * y * (1 - y)
            y, = ctx.saved_tensors
            return gy * y * (1 - y)

``Sigmoid.apply(t)`` unwraps the Tensor, runs ``forward``, wraps the result and,
when a gradient will be needed, records the call as a node of the graph: the
output Tensor's ``grad_fn`` is the Function instance (called ``ctx``), which
remembers its input Tensors. ``Tensor.backward()`` walks that graph from the
output back to the leaves in topological order (iteratively: a chain of 20,000
ops needs no recursion), calling each node's ``backward`` once with the sum of
the gradients that reached its outputs, and accumulates into ``.grad`` of the
leaves that require grad.

In-place safety: every Tensor has a version counter (shared with its views),
bumped by each in-place change (``x[i] = v``, ``fill_``, ``copy_``, an optimizer
step...). When forward saves an input's or an output's array, the node notes
that tensor's counter and value; backward refuses to use a saved array whose
tensor changed since, as PyTorch does, instead of returning wrong gradients.
What an op computes and keeps for itself (a mask, x_hat) is private and never
checked, and ops that save nothing (add) are never stopped. A recorded in-place op
(``F.relu(x, inplace=True)``) makes x its own output, as PyTorch: ``rebase_in_place``.

Naming: a node keeps, of an input it does not read, a data-free stand-in; the tensor and
all its stand-ins share a ``graph_key``, (the node that made it, which output), PyTorch's
edge, and a gradient reaches a tensor that is not a leaf through that node
(``retain_grad``, ``grad``'s inputs).

Anomaly mode (``with td.autograd.detect_anomaly():`` or
``td.autograd.set_detect_anomaly(True)``): each node also remembers the stack
of the line that ran its forward, and backward checks every gradient an op
returns; the first NaN or Inf raises ``AnomalyError`` naming that op, with the
forward's traceback. It costs a stack capture per op and a check (on the GPU a
device sync) per gradient: a debugging tool, off by default.

Memory: a node keeps its inputs (needed to walk the graph) and what ``forward``
saved; it never refers to its outputs, so the graph holds no reference cycles
and is freed as soon as the output Tensor is. After a backward pass the saved
arrays are dropped unless ``retain_graph=True``.
"""
import contextlib
import functools
import heapq
import inspect
import itertools
import operator
import threading
import traceback
import weakref

import numpy as np

from .backend import get_array_module
from .tensor import Tensor

# ------------------------------------------------------------------ grad mode
class _GradMode(threading.local):
    enabled = True            # each thread starts with recording on (read as a class default: fast)


_state = _GradMode()


def is_grad_enabled():
    return _state.enabled


def set_grad_enabled_flag(flag):
    _state.enabled = bool(flag)


class _GradModeBlock(contextlib.ContextDecorator):
    """A block (``with``) or a function (a decorator) that runs with recording set to
    ``self.mode`` and then restores the mode it found."""

    def __enter__(self):
        self.prev = is_grad_enabled()
        set_grad_enabled_flag(self.mode)

    def __exit__(self, *exc):
        set_grad_enabled_flag(self.prev)
        return False

    def _recreate_cm(self):             # each call of a decorated function: its own saved mode
        return self.__class__(self.mode) if type(self) is set_grad_enabled else self.__class__()

    def __call__(self, fn):
        if not inspect.isgeneratorfunction(fn):
            return super().__call__(fn)

        # a generator: each resume runs in the mode, each ``yield`` gives the caller back its
        # own (as PyTorch's decorated generators)
        @functools.wraps(fn)
        def generator(*args, **kwargs):
            inner = fn(*args, **kwargs)
            resume = inner.__next__
            while True:
                try:
                    with self._recreate_cm():
                        value = resume()
                except StopIteration as stop:               # (PEP 479: it may not leave here)
                    return stop.value
                try:
                    sent = yield value
                except GeneratorExit:
                    with self._recreate_cm():
                        inner.close()
                    raise
                except BaseException as exc:                # thrown in by the caller: into it
                    resume = functools.partial(inner.throw, exc)
                else:
                    resume = functools.partial(inner.send, sent)
        return generator


class set_grad_enabled(_GradModeBlock):
    """Turns graph recording on or off: at once when called (``td.set_grad_enabled(False)``
    in an evaluation script, as PyTorch), for a block (``with``) or for a function (a
    decorator); a block and a function restore the mode they found."""

    def __init__(self, mode):
        self.mode, self.prev = bool(mode), is_grad_enabled()
        set_grad_enabled_flag(self.mode)

    def __enter__(self):                # (the mode it found was saved when it was made)
        set_grad_enabled_flag(self.mode)

    def __call__(self, fn):             # a decorator changes nothing until the function runs
        set_grad_enabled_flag(self.prev)
        return super().__call__(fn)


class _FixedMode(_GradModeBlock):
    """``no_grad`` and ``enable_grad``: a block, or a decorator with or without ()."""

    def __new__(cls, fn=None):
        block = super().__new__(cls)
        return block if fn is None else block(fn)

    def __init__(self, fn=None):
        pass


class no_grad(_FixedMode):
    """``with td.no_grad():`` runs ops without recording the graph (evaluation, optimizer
    steps); ``@td.no_grad`` or ``@td.no_grad()`` does so for a function."""

    mode = False


class enable_grad(_FixedMode):
    """Recording on, for a block or a function (inside a ``no_grad`` one)."""

    mode = True


# ------------------------------------------------------------------ anomaly mode
_anomaly = {"enabled": False, "check_nan": True}


def is_anomaly_enabled():
    return _anomaly["enabled"]


def is_anomaly_check_nan_enabled():
    return _anomaly["enabled"] and _anomaly["check_nan"]


class set_detect_anomaly(contextlib.ContextDecorator):
    """``set_detect_anomaly(True)`` turns anomaly mode on (for the whole process, as in
    PyTorch) until ``set_detect_anomaly(False)``; ``with set_detect_anomaly(True):``
    turns it on for a block and then restores the previous mode."""

    def __init__(self, mode, check_nan=True):
        self.prev = dict(_anomaly)
        _anomaly.update(enabled=bool(mode), check_nan=bool(check_nan))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        _anomaly.update(self.prev)
        return False


class detect_anomaly(contextlib.ContextDecorator):
    """``with td.autograd.detect_anomaly():`` -- anomaly mode for a block (see the module doc)."""

    def __init__(self, check_nan=True):
        self.check_nan = check_nan

    def __enter__(self):
        self.prev = dict(_anomaly)
        _anomaly.update(enabled=True, check_nan=bool(self.check_nan))
        return self

    def __exit__(self, *exc):
        _anomaly.update(self.prev)
        return False


class AnomalyError(RuntimeError):
    """A backward produced NaN or Inf in anomaly mode; ``forward_traceback`` is where that op's forward ran."""

    def __init__(self, message, forward_traceback=""):
        super().__init__(message + ("\n" + forward_traceback if forward_traceback else ""))
        self.forward_traceback = forward_traceback


def _check_gradients(node, grads):
    """In anomaly mode: AnomalyError if ``node``'s backward returned a NaN or Inf gradient."""
    for i, g in enumerate(grads):
        if g is None or g.dtype.kind not in "fc":
            continue
        xp = get_array_module(g)
        if not bool(xp.isfinite(g).all()):      # one device sync per gradient: debugging only
            what = "nan" if bool(xp.isnan(g).any()) else "inf"
            trace = getattr(node, "forward_traceback", None)
            where = ("the forward of this op ran at (most recent call last):\n" + trace if trace else
                     "(its forward ran before anomaly mode was on: no traceback)")
            raise AnomalyError(f"Function '{node.name}Backward' returned {what} values in its gradient for "
                               f"input {i} (shape {g.shape}, {g.dtype}); the first op whose backward gave "
                               f"a non-finite gradient", where)


# ------------------------------------------------------------------ Function
class Function:
    """Base class of every differentiable op. Subclasses define

    ``forward(ctx, *inputs, **params) -> array | tuple of arrays``
        ``inputs`` are the positional arguments with Tensors replaced by their
        arrays (other values pass through unchanged); ``params`` are
        non-differentiable settings (axis, stride, ...).
    ``backward(ctx, *grad_outputs) -> grad | tuple of grads``
        one gradient per output comes in (zeros for outputs that received none),
        one gradient per positional input goes out: an array of the input's
        shape, or None where ``ctx.needs_input_grad[i]`` is False or the input
        is not differentiable.

    ``ctx`` is the Function instance itself; store what backward needs on it,
    arrays through ``ctx.save_for_backward`` so they are freed after backward.
    """

    #: output positions that never carry a gradient (indices, masks)
    non_differentiable_outputs = ()
    #: its outputs are views of its first input (reshape, indexing, permute, expand, split):
    #: such an output remembers how to be made again from its base (``Tensor._view_of``)
    makes_views = False
    #: how ``create_graph=True`` differentiates this op's backward (``_backward_on_tensors``):
    #:   "operators"  backward uses only operators and Tensor methods (+ - * / @, sum,
    #:                reshape, unbroadcast) on ``gy`` and the saved arrays: it runs on Tensors;
    #:   "linear"     the op is linear in its float inputs and its backward reads no input
    #:                value (reshape, indexing, pad, avg pooling, unfold...): the backward of
    #:                its backward is the op itself;
    #:   "composite"  ``composite(ctx, *inputs, **params)`` restates the op with other ops
    #:                (conv as unfold + matmul, batch norm as means and products): autograd
    #:                differentiates that definition;
    #:   None         not yet: create_graph raises NotImplementedError naming the op
    double_backward = None
    #: (version counter, value at forward, 'input'/'output', position, shape, dtype) of the
    #: tensors whose arrays were saved
    saved_versions = ()
    #: the arrays ``save_for_backward`` kept (None once released)
    saved_tensors = ()
    #: (id of an output array, weak reference to its Tensor) of the outputs whose memory it saved
    #: ("operators")
    output_refs = ()
    #: what the node keeps of its positional inputs (``_record``): Tensors, stand-ins, None
    inputs = ()
    #: some input in ``inputs`` holds data that release() lets go of
    _holds_data = False
    #: {output index: tensor} of the outputs that called ``retain_grad()`` (weakly held)
    _retained = None
    #: {output index: {handle id: hook}} of the outputs that called ``register_hook``
    _hooks = None
    #: outputs held until release: a result copied into a tensor changed in place, which
    #: create_graph reads as the output its node saved (``rebase_in_place``)
    _pinned_outputs = None
    #: the output's shape and dtype (one output: the common case, no tuples to make) ...
    _output_shape, _output_dtype = (), None
    #: ... or ((shape, dtype), ...) of the outputs of an op with several
    _outputs_meta = None

    def save_for_backward(self, *arrays):
        self.saved_tensors = arrays

    @classmethod
    def apply(cls, *inputs, **params):
        ctx = cls()
        needs, arrays = [], []            # one pass over the inputs: this runs for every op
        for t in inputs:
            if isinstance(t, Tensor):
                counter = t._version_counter        # (None for most tensors: nothing to check)
                if counter is not None and counter.rebased != t._history_of and _state.enabled:
                    catch_up(t, cls.__name__)
                needs.append(t.requires_grad)
                arrays.append(t.array)
            else:
                needs.append(False)
                arrays.append(t)
        ctx.needs_input_grad = tuple(needs)
        # (most ops have no params: a call without ** is cheaper, bench_alone.py's overhead rows)
        raw = ctx.forward(*arrays, **params) if params else ctx.forward(*arrays)

        first = arrays[0] if arrays else None           # an in-place op writes into its first input
        if type(raw) is not tuple:      # one output, the common case: no tuples to build and
            out = Tensor(raw)           # loop over (bench_alone.py's overhead rows)
            views = (out,) if out.array.base is not None or out.array is first else ()
            if views:
                _share_counters_with_views(inputs, views, cls, params)
            if True in needs and _state.enabled:
                _record(ctx, cls, inputs, (raw,), (out,), params)
            return out
        tensors = tuple([Tensor(o) for o in raw])
        views = tuple([t for t in tensors if t.array.base is not None or t.array is first])
        if views:
            _share_counters_with_views(inputs, views, cls, params, tensors)
        if True in needs and _state.enabled:
            _record(ctx, cls, inputs, raw, tensors, params)
        return tensors

    def __getstate__(self):
        """A copy (deepcopy, pickle) of a node hands no gradient to the original's tensors."""
        state = dict(self.__dict__)
        state.pop("_retained", None)
        return state

    def release(self):
        """Drop saved arrays; a second backward through this node then fails loudly.

        The node's inputs are swapped for data-free stand-ins too, except the
        leaves that require grad (parameters): the usual loop
        ``loss = f(model(x)); loss.backward()`` keeps the last ``loss`` (and so
        this graph) alive while the next batch runs forward, and a list of
        losses kept by mistake keeps every graph; holding the intermediate
        tensors or the input batch here would keep them all in memory. The
        graph's shape stays walkable (``utils.to_dot`` after backward; the
        clear error on a second backward).
        """
        self.saved_tensors = None       # also the mark of a released node (_walk)
        self._pinned_outputs = None
        if self.saved_versions:
            self.saved_versions = ()
        if self._holds_data:
            self.inputs = tuple(map(_without_data, self.inputs))
            self._holds_data = False

    @property
    def output_meta(self):
        """((shape, dtype), ...): what the op's outputs were."""
        if self._outputs_meta is not None:
            return self._outputs_meta
        return ((self._output_shape, self._output_dtype),)

    @property
    def name(self):
        return type(self).__name__

    def __repr__(self):
        return f"<{self.name}Backward>"


def _storage(a):
    """The array that owns ``a``'s memory (``a`` itself unless it is a view)."""
    base = getattr(a, "base", None)
    while base is not None:
        a, base = base, getattr(base, "base", None)
    return a


def _record(ctx, cls, inputs, outputs, tensors, params):
    """Make ``ctx`` the node that made ``tensors``: what its backward needs of the inputs,
    the versions of the arrays it saved, and the outputs' links back to it. (Plain loops
    and early exits: this runs for every recorded op, bench_alone.py's overhead rows.)"""
    how = cls.double_backward
    read = _NONE                        # memory backward reads, by the id of its owner
    for a in ctx.saved_tensors:
        if a is None or not hasattr(a, "base"):         # nothing, or a Python number
            continue
        if isinstance(a, np.generic) and id(a) not in map(id, outputs):
            continue                    # a NumPy scalar input (x * 0.5's): it never changes
        if read is _NONE:
            read = set()
        read.add(_storage_id(a))
    keep_all = how == "composite"                                       # it reruns the op
    versions, recorded, holds_data = [], [], False
    for i, t in enumerate(inputs):
        if not isinstance(t, Tensor):
            recorded.append(None)
            continue
        maker = t.grad_fn
        if maker is None or not t.requires_grad:            # a leaf or a constant: itself
            recorded.append(t)
            if read and _storage_id(t.array) in read:
                versions.append(_version_of(t, "input", i))
            holds_data = holds_data or not t.requires_grad
        elif keep_all or (read and _storage_id(t.array) in read):
            # the tensor itself: backward may read it (memory the op saved, every input of an
            # op that reruns itself)
            recorded.append(t)
            if read and _storage_id(t.array) in read:
                versions.append(_version_of(t, "input", i))
            else:                       # kept with no version to check: no in-place rebase of it
                t._kept_by_a_node = True        # (rebase_in_place)
            holds_data = True
        elif maker.output_refs and _maker_saved(t):     # exp's y: create_graph needs it, and
            recorded.append(t)                          # its array lives on anyway
            holds_data = t._kept_by_a_node = True
        else:                           # a data-free stand-in: an activation lives only as long
            recorded.append(_without_data(t))   # as some op saved it (bench_memory.py)
    ctx.inputs = tuple(recorded)
    if holds_data:                  # release() swaps these for stand-ins
        ctx._holds_data = True
    if read:
        saved_outputs = []
        for i, o in enumerate(outputs):
            if id(o) in read or (tensors[i].array.base is not None and _storage_id(tensors[i].array) in read):
                saved_outputs.append(i)
        if saved_outputs:           # exp's y, softmax's p...
            versions += [_version_of(tensors[i], "output", i) for i in saved_outputs]
            if how == "operators":  # create_graph needs the tensors (weakly held)
                ctx.output_refs = tuple([(id(outputs[i]), weakref.ref(tensors[i])) for i in saved_outputs])
    if versions:
        ctx.saved_versions = tuple(versions)
    ctx.sequence = next(_sequence)
    if how is not None and how != "operators":     # what rerunning the op needs
        ctx.params, ctx.constants = params, tuple([None if isinstance(t, Tensor) else t for t in inputs])
    if _anomaly["enabled"]:         # where this forward ran, minus this frame and apply's
        ctx.forward_traceback = "".join(traceback.format_stack()[:-2])
    if len(tensors) == 1:
        t = tensors[0]
        ctx._output_shape, ctx._output_dtype = t.array.shape, t.array.dtype
        if t.array.dtype.kind in "fc" and 0 not in cls.non_differentiable_outputs:
            t.grad_fn, t.requires_grad = ctx, True
        return
    ctx._outputs_meta = tuple([(o.shape, o.dtype) for o in outputs])
    non_differentiable = cls.non_differentiable_outputs
    for i, t in enumerate(tensors):
        if t.array.dtype.kind in "fc" and i not in non_differentiable:
            t.grad_fn, t._output_index, t.requires_grad = ctx, i, True


_NONE = frozenset()
#: the order nodes were recorded in: a node's inputs were all made before it, so running the
#: ready nodes latest first is a topological order (as PyTorch's engine orders by sequence_nr)
_sequence = itertools.count()


def _storage_id(a):
    """id of the array that owns ``a``'s memory."""
    return id(a) if a.base is None else id(_storage(a))


def _version_of(t, kind, i):
    """(counter, value now, 'input'/'output', position, shape, dtype): what the backward
    checks to refuse reading an array changed in place since (``_check_versions``)."""
    counter = t._counter()
    return counter, counter.value, kind, i, t.array.shape, t.array.dtype


def _share_counters_with_views(inputs, views, cls, params, outputs=None):
    """An output that is a view of an input (reshape, indexing, transpose) or the input itself
    (an in-place op) shares its version counter: changing either in place changes both, so
    both count as changed. An output of a view op (``makes_views``) also remembers its base
    (the tensor at the start of its chain of views) and the ops that make it from that base
    (``Tensor._view_of``): after an in-place change through another tensor over the same
    memory, its history is made again from the base's (``catch_up``), as PyTorch's views."""
    owners = {id(_storage(t.array)): t for t in inputs if isinstance(t, Tensor)}
    for out in views:
        source = owners.get(id(_storage(out.array)))
        if source is None:
            continue
        out._version_counter = source._counter()
        out._history_of = source._history_of
        if cls.makes_views and source is inputs[0]:
            base, steps = source._view_of or (source, ())
            if not _state.enabled or base is None:      # made under no_grad: no base to follow
                out._view_of = UNTRACKED_VIEW
                continue
            which = None if outputs is None else next(i for i, o in enumerate(outputs) if o is out)
            out._view_of = base, steps + ((cls, params, which),)


#: ``Tensor._view_of`` of a view made under no_grad (or of such a view): as in PyTorch, it is not
#: made again from its base, and changing it in place while recording is refused (ops/inplace.py)
UNTRACKED_VIEW = (None, None)


def replay_view(x, steps):
    """The view ``steps`` (``Tensor._view_of``) made again from ``x``: of a Tensor, by the
    same recorded ops; of an array (a gradient), by their forwards."""
    for cls, params, which in steps:
        x = cls.apply(x, **params) if isinstance(x, Tensor) else cls().forward(x, **params)
        if which is not None:
            x = x[which]
    return x


def catch_up(t, op):
    """``t``'s memory was changed in place, while the graph was recorded, through another
    tensor over it: a view of ``t``'s base was rebased (ops/inplace.py), and ``t``'s history
    no longer explains its values. A view takes the history of its base made into it again
    (``replay_view``: PyTorch's views regenerate their grad_fn the same way); any other
    tensor is refused."""
    base = t._view_of[0] if t._view_of else None
    if base is None or base._history_of != base._counter().rebased:
        if _constant(base if base is not None else t):  # a detach()ed tensor: no history to rebuild
            (base if base is not None else t)._history_of = t._version_counter.rebased
            if base is None:
                return
        else:
            _refuse_stale(t, op)
    moved = t.retains_grad              # a retain_grad() moves with t to its new history
    if moved:
        del t.grad_fn._retained[t._output_index]
    fresh = replay_view(base, t._view_of[1])
    t.grad_fn, t._output_index, t.requires_grad = fresh.grad_fn, fresh._output_index, fresh.requires_grad
    t._history_of = t._version_counter.rebased
    if moved:
        retain_grad(t)


def _check_versions(node):
    """Refuse a backward that would read arrays changed in place since forward saved them."""
    for counter, version, kind, i, shape, dtype in node.saved_versions:
        if counter.value != version:
            raise RuntimeError(
                f"one of the variables needed for gradient computation has been modified by an inplace "
                f"operation: {kind} {i} (shape {tuple(shape)}, {dtype}) of {node.name} is at version "
                f"{counter.value}; expected version {version} "
                "instead. It was changed (x[...] = v, fill_, copy_, zero_, an optimizer step...) after the "
                "forward pass saved it: change a clone() instead, or change it after backward")


def unbroadcast(grad, shape):
    """Sum ``grad`` down to ``shape``: the gradient of NumPy broadcasting.

    If x of shape (3, 1) was broadcast to (2, 3, 4), each x[i, 0] was used 2*4
    times, so dL/dx[i, 0] is the sum of the upstream gradient over the new
    leading axis and over the axis where x had size 1.
    """
    if grad.shape == shape or grad.shape == tuple(shape):
        return grad
    extra = grad.ndim - len(shape)
    axes = tuple(range(extra)) + tuple(
        extra + i for i, n in enumerate(shape) if n == 1 and grad.shape[extra + i] != 1)
    if isinstance(grad, Tensor):                     # a backward building a graph (create_graph)
        return grad.sum(dim=axes, keepdim=True).reshape(tuple(shape))
    grad = grad.sum(axis=axes, keepdims=True)
    return grad.reshape(shape)


class _FreedInput:
    """What a node keeps of an input whose values its backward never reads (or of a tensor's
    history before an in-place op changed it: ``rebase_in_place``): which op made it
    (which output), its shape and dtype. Of a tensor made by an op, each consumer keeps
    its own, and all have the tensor's ``graph_key``; a gradient for such a tensor reaches
    it through the node that made it (``retain_grad``, ``autograd.grad``'s inputs)."""

    __slots__ = ("grad_fn", "_output_index", "shape", "dtype", "requires_grad")

    def __init__(self, t):
        self.grad_fn, self._output_index = t.grad_fn, t._output_index
        a = t.array
        self.shape, self.dtype, self.requires_grad = a.shape, a.dtype, t.requires_grad


def graph_key(t):
    """What names tensor ``t`` (or a stand-in of it) in the graph: a tensor made by an op,
    the node that made it and which output it is (PyTorch's edges); a leaf, itself (a
    constant's consumers share one stand-in once released: ``_without_data``)."""
    return id(t) if t.grad_fn is None else (id(t.grad_fn), t._output_index)


def retain_grad(t):
    """Have backward() fill ``t.grad`` although ``t`` is not a leaf: the node that made ``t``
    hands it the whole gradient of that output (weakly held: a tensor no one holds any more
    needs none)."""
    if not t.requires_grad:
        raise RuntimeError(f"retain_grad() on a tensor that does not require grad (shape {t.shape}): "
                           "no gradient will reach it")
    node = t.grad_fn
    if node is None:                # a leaf keeps its .grad anyway
        return
    if node._retained is None:
        node._retained = weakref.WeakValueDictionary()
    node._retained[t._output_index] = t


def rebase_in_place(t, out):
    """Make ``t`` the output of the in-place op that just made ``out`` (a Tensor over t's
    own array, or a result the caller copied into it: ops/inplace.py), as PyTorch does:
    what uses ``t`` from now on goes through that op's
    backward. The op's node keeps t's old history as a stand-in (which node made t, as
    before), not ``t``, whose ``grad_fn`` is now that node; a ``retain_grad()`` moves with
    ``t`` to its new value.

    Only for a ``t`` that no earlier node keeps itself unversioned (``_kept_by_a_node``: an
    op that reruns itself; the caller refuses those): such a node would follow ``t`` to its
    new history, which its own backward never saw. (A node that saved t's array refuses
    its backward: the version changed.) Earlier nodes that keep stand-ins of ``t`` (its
    views among them) keep its old history."""
    node, old = out.grad_fn, t.grad_fn
    let_go(t, out)
    for k, (saved, ref) in enumerate(node.output_refs):
        if ref() is out and out.array is t.array:   # the output it saved is t's array: t (create_graph)
            node.output_refs = node.output_refs[:k] + ((saved, weakref.ref(t)),) + node.output_refs[k + 1:]
    moved = t.retains_grad              # the registration moves from the old node to the new one
    if moved:
        del old._retained[t._output_index]
    t.grad_fn, t._output_index, t.requires_grad = node, out._output_index, True
    if moved:
        retain_grad(t)


def let_go(t, out):
    """The node that made ``out`` from ``t`` in place keeps t's history before the change (a
    stand-in: which node made t), not ``t``, whose history changes next; where its backward
    reads ``out`` (create_graph: a result copied into t, which t may leave behind), it holds
    ``out`` until release."""
    node = out.grad_fn
    before = _FreedInput(t)
    node.inputs = tuple(before if i is t else i for i in node.inputs)
    t._kept_by_a_node = False           # the op itself kept it: it keeps ``before`` now
    if any(ref() is out for _, ref in node.output_refs):
        node._pinned_outputs = (out,)


def _constant(t):
    """A tensor outside the graph that is no view of a tensor in it (``detach()``'s)."""
    return t.grad_fn is None and not t.requires_grad and t._view_of is None


def _refuse_stale(t, op):
    raise RuntimeError(
        f"{op}: an input (shape {tuple(t.shape)}, {t.dtype}) was changed in place through another "
        f"tensor over the same memory while the graph was recorded, and it is not a view that tinydl can "
        f"make again from its base (reshape, indexing, permute, split, made while grad mode was on): its "
        f"history does not explain its values, so its gradient would be wrong: change the tensor itself, "
        f"use an out-of-place op, or make the change under td.no_grad()")


def mark_rebased(t):
    """``t``'s storage had a recorded in-place change through ``t`` (ops/inplace.py): the
    other tensors over that storage now have a history that does not explain their values,
    and ``Function.apply`` refuses them as inputs while grad mode is on."""
    counter = t._counter()
    counter.rebased += 1
    t._history_of = counter.rebased


def _maker_saved(t):
    """Whether the op that made ``t`` saved that very tensor (exp's y; max pooling saves its
    indices, not its y): a node then keeps ``t`` itself, not a stand-in, as PyTorch does."""
    return any(ref() is t for _, ref in t.grad_fn.output_refs)


def _without_data(t):
    """What a node keeps of input ``t`` when it must not hold its data (an input its
    backward never reads, from ``_record``; every input once released): the parameters and
    other leaves that require grad themselves (they live on anyway), and for everything
    else (the intermediate tensors, the input batch) a data-free stand-in: one per
    consumer of an intermediate tensor (its ``graph_key`` names it), one for all the
    consumers of a constant (the stand-in names it: the constant may be gone)."""
    if t is None or type(t) is _FreedInput or (t.grad_fn is None and t.requires_grad):
        return t
    if t.grad_fn is not None:
        return _FreedInput(t)
    freed = t._freed_input
    if freed is None:
        freed = t._freed_input = _FreedInput(t)
    return freed


# ------------------------------------------------------------------ backward
def _topological_order(root_fns, stop_at=()):
    """Nodes reachable from ``root_fns`` (not past the tensors whose ``graph_key`` is in ``stop_at``),
    each after every node that consumes it: latest recorded first (see ``_sequence``), the
    order ``backward`` runs them in. The search keeps its own stack: no recursion limit."""
    found, stack = {}, list(root_fns)
    while stack:
        node = stack.pop()
        if id(node) in found:
            continue
        found[id(node)] = node
        for t in node.inputs:
            if t is None or t.grad_fn is None or id(t.grad_fn) in found:
                continue
            if stop_at and graph_key(t) in stop_at:
                continue
            stack.append(t.grad_fn)
    return sorted(found.values(), key=lambda node: -node.sequence)


def _seed_gradient(root, grad, who):
    """The gradient that starts a backward pass at ``root``: ones for a scalar, else ``grad``."""
    counter = root._version_counter
    if counter is not None and counter.rebased != root._history_of:     # a view changed through
        with enable_grad():                                             # another tensor
            catch_up(root, who)
    if not root.requires_grad:
        raise RuntimeError(f"{who}: the tensor does not require grad and has no grad_fn "
                           "(did you create it under no_grad(), or detach it?)")
    xp = root._xp
    if grad is None:
        if root.array.size != 1:
            raise RuntimeError(f"{who}: grad can be implicitly created only for scalar outputs, "
                               f"got shape {root.shape}; pass the gradient of the output")
        return xp.ones(root.shape, dtype=root.dtype)
    grad = grad.array if isinstance(grad, Tensor) else xp.asarray(grad, dtype=root.dtype)
    if grad.shape != root.shape:
        raise RuntimeError(f"{who}: grad has shape {grad.shape} but the tensor has shape {root.shape}")
    if grad.dtype != root.dtype:        # as PyTorch: the seed takes the output's dtype (a kernel
        grad = grad.astype(root.dtype)  # sizes its buffers by one dtype for all its arrays)
    return grad


def _backward_on_tensors(node, grads_out):
    """``node``'s backward as recorded Tensor operations (``create_graph=True``), so the
    gradient can be differentiated again; how depends on ``node.double_backward``."""
    how = node.double_backward
    if how == "linear":
        return _linear_backward(node, grads_out)
    if how == "composite":
        return _composite_backward(node, grads_out)
    if how != "operators":
        raise NotImplementedError(f"create_graph=True: the backward of {node.name} is not differentiable "
                                  "yet (it runs on arrays); higher-order gradients cover the ops with a "
                                  "double_backward")
    # the saved arrays become the input or output Tensors they are (constants otherwise)
    known = {id(t.array): t for t in node.inputs if isinstance(t, Tensor)}
    for saved_id, ref in getattr(node, "output_refs", ()):   # by the forward's own result (a
        t = ref()                                            # NumPy scalar for 0-d outputs)
        if t is not None:
            known[saved_id] = t
    saved = getattr(node, "saved_tensors", None)
    if saved:
        xp = get_array_module(grads_out[0].array)   # a saved number (x * 0.5's NumPy scalar): gy's device
        node.saved_tensors = tuple(known[id(a)] if id(a) in known else Tensor(xp.asarray(a))
                                   if hasattr(a, "shape") else a for a in saved)
    try:
        with enable_grad():
            return node.backward(*grads_out)
    finally:
        if saved:
            node.saved_tensors = saved


def constant(array, like):
    """A Tensor outside the graph over ``array`` in ``like``'s dtype: the masks and saved
    values a ``composite`` multiplies by (their derivative is zero)."""
    return Tensor(like._xp.asarray(array, dtype=like.dtype))


def _given_inputs(node):
    """The op's positional arguments as ``apply`` got them: its input Tensors and constants."""
    return [t if c is None else c for t, c in zip(node.inputs, node.constants)]


class LinearBackward(Function):
    """The backward of a linear op y = A x as an op of its own: forward is A^T gy (the op's
    array backward), backward is A g (the op applied again, so a third derivative works too).
    Inputs: the op's output gradients; outputs: the gradients of the inputs that need one."""

    double_backward = "operators"       # its backward calls the op through apply

    def forward(ctx, *gys, node, wanted):
        ctx.node, ctx.wanted = node, wanted
        grads = node.backward(*gys)
        grads = grads if isinstance(grads, tuple) else (grads,)
        return tuple(grads[i] for i in wanted)

    def backward(ctx, *ggs):
        node = ctx.node
        args = _given_inputs(node)
        xp = get_array_module(ggs[0].array if isinstance(ggs[0], Tensor) else ggs[0])
        for i, t in enumerate(args):      # float inputs without a gradient contribute nothing: 0
            if isinstance(t, (Tensor, _FreedInput)) and t.dtype.kind == "f" and i not in ctx.wanted:
                args[i] = Tensor(xp.zeros(t.shape, t.dtype))     # (also for a released input's stand-in)
        for i, gg in zip(ctx.wanted, ggs):
            args[i] = gg if isinstance(gg, Tensor) else Tensor(gg)
        outs = type(node).apply(*args, **node.params)
        outs = outs if isinstance(outs, tuple) else (outs,)
        if not isinstance(ggs[0], Tensor):          # a first-order backward: arrays out
            outs = tuple(o.array for o in outs)
        return outs if len(outs) > 1 else outs[0]


def _linear_backward(node, grads_out):
    gys = [g if isinstance(g, Tensor) else Tensor(g) for g in grads_out]
    wanted = [i for i, need in enumerate(node.needs_input_grad) if need]     # the inputs that need one
    with enable_grad():
        got = LinearBackward.apply(*gys, node=node, wanted=wanted)
    got = got if isinstance(got, tuple) else (got,)
    grads = [None] * len(node.inputs)
    for i, g in zip(wanted, got):
        grads[i] = g
    return tuple(grads)


def _composite_backward(node, grads_out):
    """Differentiate ``node.composite`` (the op restated with other ops) on the same input
    Tensors, with the graph recorded; the walk stops at the inputs."""
    inputs = [t for t in node.inputs if isinstance(t, Tensor) and t.requires_grad]
    with enable_grad():
        outs = node.composite(*_given_inputs(node), **node.params)
    outs = outs if isinstance(outs, tuple) else (outs,)
    found = {}                      # graph_key -> gradient

    def reached(t, g):
        key = graph_key(t)
        found[key] = g if key not in found else found[key] + g
    seeds = [(o, g) for o, g in zip(outs, grads_out) if o.requires_grad]
    _walk(seeds, True, reached, create_graph=True, stop_at={graph_key(t) for t in inputs})
    grads, given = [], set()
    for t, need in zip(node.inputs, node.needs_input_grad):
        # an input given twice (x * x) gets its whole gradient once
        key = graph_key(t) if isinstance(t, Tensor) else None
        grads.append(found.get(key) if need and key not in given else None)
        given.add(key)
    return tuple(grads)


def _walk(seeds, retain_graph, reached, create_graph=False, stop_at=(), watched=None, only=None):
    """Run backward from ``seeds`` ((tensor, gradient) pairs) over the graph, in topological
    order. ``reached(t, g)`` gets every gradient that reaches a leaf, and the whole gradient
    of each output ``i`` of a node for which ``watched(node)`` maps ``i`` to a tensor (the
    tensors that are not leaves: ``retain_grad``, ``autograd.grad``'s inputs). With
    ``create_graph`` the gradients are Tensors whose computation is recorded. The walk
    treats the tensors whose ``graph_key`` is in ``stop_at`` as leaves. With ``only`` (ids
    of nodes), only those nodes run their backward (``grad``: the nodes that lead to its
    inputs); the others a gradient reaches are skipped, except to hand it to ``watched``.

    The nodes a gradient reached wait in a heap, latest recorded first: every consumer of a
    node was recorded after it, so by the time a node comes out, all the gradients of its
    outputs are in (see ``_sequence``), and no separate sorting pass is needed."""
    pending, ready = {}, []        # id(node) -> {output index: gradient}; (-sequence, id, node)

    def send(t, g):                # g reaches t, the output of a node still to run
        node = t.grad_fn
        if only is not None and id(node) not in only and not watched(node):
            return                 # nothing asked for lies below it
        slot = pending.get(id(node))
        if slot is None:
            pending[id(node)] = {t._output_index: g}
            heapq.heappush(ready, (-node.sequence, id(node), node))
        else:
            i = t._output_index
            slot[i] = g if i not in slot else slot[i] + g

    for root, grad in seeds:
        if root.grad_fn is None or graph_key(root) in stop_at:
            reached(root, grad)
        else:
            send(root, grad)
    check_nan = is_anomaly_check_nan_enabled()
    while ready:
        node = heapq.heappop(ready)[2]
        got = pending.pop(id(node))
        if node._hooks:                         # the whole gradient of each hooked output is in
            got = {i: _run_hooks(node._hooks.get(i), g) for i, g in got.items()}
        if watched is not None:                 # all the gradient of its outputs is in: hand it
            wanted = watched(node)              # to the tensors that asked for it
            if wanted:
                for i, g in got.items():
                    t = wanted.get(i)
                    if t is not None:
                        reached(t, g)
        if only is not None and id(node) not in only:
            continue
        if node.saved_tensors is None:
            raise RuntimeError(f"backward through {node.name} a second time: its saved arrays were "
                               "freed; call backward(retain_graph=True) the first time")
        if node.saved_versions:
            _check_versions(node)
        several = node._outputs_meta
        if several is None:                    # one output
            grads_out = [got[0]]
        elif len(got) == len(several):
            grads_out = [got[i] for i in range(len(got))]
        else:                                  # outputs no gradient reached get zeros
            some = next(iter(got.values()))
            xp = get_array_module(some.array if isinstance(some, Tensor) else some)
            grads_out = [got[i] if i in got else xp.zeros(shape, dtype=dtype)
                         for i, (shape, dtype) in enumerate(several)]
            if create_graph:
                grads_out = [g if isinstance(g, Tensor) else Tensor(g) for g in grads_out]
        grads_in = _backward_on_tensors(node, grads_out) if create_graph else node.backward(*grads_out)
        if not isinstance(grads_in, tuple):
            grads_in = (grads_in,)
        if check_nan:
            _check_gradients(node, grads_in)
        if len(grads_in) != len(node.inputs):
            raise RuntimeError(f"{node.name}.backward returned {len(grads_in)} gradients "
                               f"for {len(node.inputs)} inputs")
        for t, g, needed in zip(node.inputs, grads_in, node.needs_input_grad):
            if not needed or g is None:
                continue
            if g.shape != t.shape:
                raise RuntimeError(f"{node.name}.backward returned a gradient of shape {g.shape} "
                                   f"for an input of shape {t.shape}")
            if g.dtype != t.dtype:
                g = g.to(t.dtype) if isinstance(g, Tensor) else g.astype(t.dtype)
            if t.grad_fn is None or (stop_at and graph_key(t) in stop_at):
                reached(t, g)
            else:
                send(t, g)
        if not retain_graph:
            node.release()


_retained_of = operator.attrgetter("_retained")     # node -> {output index: tensor that called retain_grad()}


def backward(root, grad=None, retain_graph=False, create_graph=False):
    """Accumulate d(root)/d(leaf) * grad into ``leaf.grad`` for every leaf that requires grad
    (and into ``.grad`` of the non-leaf tensors that called ``retain_grad()``). With
    ``create_graph`` the ``.grad`` tensors are recorded results, differentiable again."""
    grad = _seed_gradient(root, grad, "backward()")
    handed_out = {_storage_id(grad)}   # memory already visible to the user (see _accumulate_leaf)

    hooked = {}                         # id(leaf) -> (leaf, its gradient so far): hooks see the sum

    def store(t, g):
        if isinstance(g, Tensor):              # create_graph: keep the recorded gradient
            t.grad = g if t.grad is None else t.grad + g
            t.grad._backward_owned = False     # (it may be another leaf's .grad too: never added into)
        else:
            _accumulate_leaf(t, g, handed_out)

    def reached(t, g):
        if getattr(t, "_hooks", None) and t.grad_fn is None:
            if id(t) in hooked:
                g = hooked[id(t)][1] + g
            hooked[id(t)] = t, g
        else:
            store(t, g)
    seed = Tensor(grad) if create_graph else grad
    _walk([(root, seed)], retain_graph or create_graph, reached, create_graph, watched=_retained_of)
    for t, g in hooked.values():
        new = _run_hooks(t._hooks, g)
        if new is not g and not isinstance(new, Tensor):
            handed_out.add(_storage_id(new))    # a hook's own tensor: .grad gets a copy
        store(t, new)


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False, allow_unused=False):
    """d(outputs)/d(inputs) as ``torch.autograd.grad``: a tuple with one gradient per input,
    of sum_k grad_outputs[k] * d outputs[k] / d input, without touching any ``.grad``.

    ``outputs``, ``inputs``: a Tensor or a sequence; ``grad_outputs``: the upstream
    gradients (None for scalar outputs: 1). ``retain_graph`` defaults to ``create_graph``;
    an input the outputs do not depend on raises unless ``allow_unused`` (then None).
    With ``create_graph=True`` the gradients are recorded results, to differentiate again
    (Hessian-vector products, gradient penalties), for graphs of the ops whose backward is
    differentiable (``Function.double_backward``); others raise NotImplementedError.
    """
    if retain_graph is None:
        retain_graph = create_graph
    outputs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    if grad_outputs is None or isinstance(grad_outputs, Tensor):
        grad_outputs = [grad_outputs] * len(outputs) if grad_outputs is None else [grad_outputs]
    if len(grad_outputs) != len(outputs):
        raise RuntimeError(f"td.autograd.grad: got {len(grad_outputs)} grad_outputs for {len(outputs)} outputs")
    for i, t in enumerate(inputs):
        if not isinstance(t, Tensor) or not t.requires_grad:
            raise RuntimeError(f"td.autograd.grad: input {i} does not require grad")
    seeds = [(o, _seed_gradient(o, g, f"td.autograd.grad: output {k}"))
             for k, (o, g) in enumerate(zip(outputs, grad_outputs))]
    if create_graph:    # an upstream Tensor that requires grad stays in the graph (gradgradcheck),
        from .ops.math import cast      # cast to the output's dtype as every seed is (a late import:
        seeds = [(o, (g if g.dtype == o.dtype else cast(g, o.dtype)) if isinstance(g, Tensor) else Tensor(d))
                 for (o, d), g in zip(seeds, grad_outputs)]           # the ops import this module)
    wanted = {id(t) for t in inputs}
    found = {}

    def reached(t, g):
        if id(t) in wanted:
            if id(t) in found:
                found[id(t)] = found[id(t)] + g
            else:
                found[id(t)] = g if isinstance(g, Tensor) else g.copy()
    made = {}                       # id(node) -> {output index: input}: the inputs that are not leaves
    for t in inputs:
        if t.grad_fn is not None:
            made.setdefault(id(t.grad_fn), {})[t._output_index] = t
    _walk(seeds, bool(retain_graph), reached, create_graph, watched=lambda node: made.get(id(node)),
          only=_leading_to(inputs, [o.grad_fn for o, _ in seeds if o.grad_fn is not None]))
    for t in inputs:                    # an input leaf's hooks see its whole gradient
        if getattr(t, "_hooks", None) and t.grad_fn is None and id(t) in found:
            found[id(t)] = _run_hooks(t._hooks, found[id(t)])
    result = []
    for i, t in enumerate(inputs):
        if id(t) not in found and not allow_unused:
            raise RuntimeError(f"td.autograd.grad: input {i} (shape {t.shape}) was not used in the graph "
                               "of the outputs; pass allow_unused=True to get None for it")
        g = found.get(id(t))
        result.append(g if g is None or isinstance(g, Tensor) else Tensor(g))
    return tuple(result)


class RemovableHandle:
    """What ``register_hook`` (and a Module's hook registrations) return: ``handle.remove()``
    takes the hook out of its table again (also as a ``with`` block)."""

    _next_id = itertools.count()

    def __init__(self, hooks):
        self.hooks, self.id = hooks, next(RemovableHandle._next_id)

    def remove(self):
        self.hooks.pop(self.id, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


def register_hook(t, hook):
    """Call ``hook(grad)`` with the gradient of ``t`` whenever a backward computes it (the sum of
    every path's contribution); a Tensor it returns replaces that gradient, as PyTorch's
    ``Tensor.register_hook``. For a tensor made by an op the hook sits on that op's node (the
    gradient of that output), for a leaf on the tensor (before it is added into ``.grad``)."""
    if not t.requires_grad:
        raise RuntimeError(f"register_hook: the tensor (shape {tuple(t.shape)}) does not require grad, so no "
                           f"gradient will reach it")
    if t.grad_fn is None:
        if t._hooks is None:
            t._hooks = {}
        hooks = t._hooks
    else:
        node = t.grad_fn
        if node._hooks is None:
            node._hooks = {}
        hooks = node._hooks.setdefault(t._output_index, {})
    handle = RemovableHandle(hooks)
    hooks[handle.id] = hook
    return handle


def _run_hooks(hooks, g):
    """``g`` passed through ``hooks`` in turn; each sees a Tensor, and what it returns (if not
    None) goes on, of g's shape. Arrays in and out for a plain backward, Tensors for create_graph."""
    if not hooks:
        return g
    is_array = not isinstance(g, Tensor)
    grad = Tensor(g) if is_array else g
    for hook in list(hooks.values()):
        new = hook(grad)
        if new is not None:
            if not isinstance(new, Tensor) or new.shape != grad.shape:
                raise RuntimeError(f"a hook returned {type(new).__name__} "
                                   f"{tuple(getattr(new, 'shape', ()))} for a gradient of shape {tuple(grad.shape)}: "
                                   f"it must return None or a Tensor of that shape")
            grad = new
    return grad.array if is_array else grad


def _leading_to(inputs, root_fns):
    """Ids of the nodes below ``root_fns`` whose backward hands a gradient on toward one of
    ``inputs``: an input is one of theirs, or the node that made one of theirs is such a
    node. ``grad`` runs only these, as PyTorch: nothing below an input it was asked for
    (whose graph may be freed already) unless another input lies there."""
    wanted = {graph_key(t) for t in inputs}
    leading = set()
    for node in reversed(_topological_order(root_fns)):         # the makers of its inputs first
        for t in node.inputs:
            if t is not None and (graph_key(t) in wanted or (t.grad_fn is not None and id(t.grad_fn) in leading)):
                leading.add(id(node))
                break
    return leading


def zero_grads(params, set_to_none=True):
    """Forget the gradients of ``params`` (``Module.zero_grad``, ``Optimizer.zero_grad``): drop
    them, or make each zeros outside any graph (one from ``backward(create_graph=True)`` has a
    history, which the next backward would extend). The zeros are a new array: a gradient
    array may be shared with another tensor's gradient, so it is never zeroed in place."""
    for p in params:
        g = p.grad
        if g is None:
            continue
        if set_to_none:
            p.grad = None
        else:
            g.grad_fn, g.requires_grad = None, False
            g.array = get_array_module(g.array).zeros_like(g.array)


def _accumulate_leaf(t, g, handed_out):
    """t.grad += g, never letting two ``.grad`` share memory.

    A backward may hand the same array to several inputs (add passes its upstream
    gradient to both operands) or views of it (reshape, slices); storing such an array
    as it is would let an in-place change of one ``.grad`` change another, so it is
    copied. ``handed_out`` holds the memory (the owning arrays' ids) already stored:
    the first array or plain view of some memory is stored without a copy (a conv's
    dL/dW, a reshape of its product: benchmarks/bench_alone.py's overhead rows); a
    strided, broadcast or read-only view, or a slice (it would pin the whole buffer), is
    copied into a plain array.
    """
    grad = t.grad
    if grad is not None:
        if grad._backward_owned:        # memory made for this .grad (below) or set by hand: add in
            grad.array += g             # place, as PyTorch, so a name kept for p.grad sees the sum
            grad._bump_version()
        else:                           # create_graph's (two leaves may share it), read-only memory
            t._grad = Tensor(grad.array + g)    # (backward's own gradients: past the setter's checks)
            t._grad._backward_owned = True
        return
    owner = _storage(g)
    plain = g is owner or (g.nbytes == owner.nbytes and g.flags.c_contiguous and getattr(g.flags, "writeable", True))
    if id(owner) in handed_out or not plain:
        g = owner = g.copy()
    handed_out.add(id(owner))
    t._grad = grad = Tensor(g)
    grad._backward_owned = getattr(g.flags, "writeable", True)


from . import autograd_functional as functional  # noqa: E402  (td.autograd.functional: jacobian, hessian, ...)
