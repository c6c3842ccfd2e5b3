"""Seeing backward run: ``trace_backward(loss)`` is ``loss.backward()`` that tells what it did.

    >>> td.utils.trace_backward(loss, params=model)      # model: Linear(4, 3), ReLU, Linear(3, 2)
    backward from a () float32 tensor: 4 nodes, in the order backward ran them
    step  op              output             |dL/d output|   gradients handed on (leaves marked *)
       1  CrossEntropy    ()                             1   (5, 2) -> 0.3294
       2  Linear          (5, 2)                    0.3294   (5, 3) -> 0.1176,  2.weight* -> 0.09544,  2.bias* -> 0.2064
       3  ReLU            (5, 3)                    0.1176   (5, 3) -> 0.09384
       4  Linear          (5, 3)                   0.09384   0.weight* -> 0.1408,  0.bias* -> 0.0373

Every op that ran while a gradient was needed left a node in the graph (its
``Function`` instance, see tinydl/autograd.py). ``backward()`` takes the nodes in
the topological order of ``autograd._topological_order`` (every node after all the
nodes that consume its outputs) and calls each node's ``backward`` once, with the
sum of the gradients that reached its outputs. To watch this, each node's
``backward`` is wrapped for the duration of one ordinary ``tensor.backward()`` call:
the wrapper notes the gradients that came in and went out, and the engine runs as
it always does (the leaves' ``.grad`` accumulate as after ``backward()``).
"""
from ..autograd import _topological_order, graph_key
from ..backend import get_array_module
from ..tensor import Tensor
from .graph import _param_names

__all__ = ["trace_backward"]


def _norm(g):
    """The 2-norm of a gradient array, as a Python float (one scalar read on a GPU)."""
    return float(get_array_module(g).linalg.norm(g.ravel()))


def _describe(t, names):
    """How a node's input shows in the trace: a parameter's name, else its shape."""
    name = names.get(graph_key(t))
    return name if name else str(tuple(t.shape))


def trace_backward(tensor, gradient=None, retain_graph=False, params=None, print_table=True, file=None):
    """Run ``tensor.backward(gradient, retain_graph)`` and record every node it visits.

    Returns a list with one dict per node in the order backward ran them: ``step``,
    ``op`` (the Function's name), ``output_shapes``, ``grad_norm`` (2-norm of the
    gradient that reached its outputs, all outputs together) and ``inputs``, a list of
    ``(label, shape, norm, is_leaf)`` for each gradient the node handed on (label: the
    name in ``params`` -- a dict, a Module or (name, tensor) pairs -- else the shape).
    ``print_table`` prints it to ``file`` (default stdout).
    """
    if not isinstance(tensor, Tensor):
        raise TypeError(f"trace_backward: expected a Tensor, got {type(tensor).__name__}")
    if tensor.grad_fn is None:
        raise RuntimeError("trace_backward: the tensor has no grad_fn (a leaf, or made under no_grad()): "
                           "there is no graph to run backward through")
    names = _param_names(params)
    nodes = list(_topological_order([tensor.grad_fn]))
    steps = []

    def watch(node):
        original = node.backward            # the bound method of the node's class

        def backward(*grads_out):
            inputs = node.inputs            # before a release swaps them for stand-ins
            grads_in = original(*grads_out)
            handed = grads_in if isinstance(grads_in, tuple) else (grads_in,)
            steps.append(dict(
                step=len(steps) + 1, op=node.name, output_shapes=[shape for shape, _ in node.output_meta],
                grad_norm=sum(_norm(g) ** 2 for g in grads_out) ** 0.5,
                inputs=[(_describe(t, names), tuple(t.shape), _norm(g), t.grad_fn is None)
                        for t, g, needed in zip(inputs, handed, node.needs_input_grad)
                        if needed and g is not None]))
            return grads_in
        return backward

    for node in nodes:
        node.backward = watch(node)         # an instance attribute shadows the class's method
    try:
        tensor.backward(gradient, retain_graph=retain_graph)
    finally:
        for node in nodes:
            del node.backward
    if print_table:
        print(_table(tensor, steps), file=file)
    return steps


def _table(tensor, steps):
    head = f"{'step':>4}  {'op':<16}{'output':<18}{'|dL/d output|':>14}   gradients handed on (leaves marked *)"
    lines = [f"backward from a {tuple(tensor.shape)} {tensor.dtype} tensor: {len(steps)} nodes, "
             "in the order backward ran them", head]
    for s in steps:
        shapes = ", ".join(str(tuple(shape)) for shape in s["output_shapes"])
        handed = ",  ".join(f"{label}{'*' if leaf else ''} -> {norm:.4g}" for label, _, norm, leaf in s["inputs"])
        lines.append(f"{s['step']:>4}  {s['op']:<16}{shapes:<18}{s['grad_norm']:>14.4g}   {handed}")
    return "\n".join(lines)
