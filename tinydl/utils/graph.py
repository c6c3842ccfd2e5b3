"""Export the autograd graph behind a tensor as Graphviz dot text.

    >>> loss = F.cross_entropy(model(x), y)
    >>> td.utils.save_dot(loss, 'loss.dot', params=dict(model.named_parameters()))
    # then, wherever Graphviz is installed:  dot -Tpng loss.dot -o loss.png

What the picture shows is what ``loss.backward()`` will walk. Every op that ran
while some input required grad left a node: the ``Function`` instance, which is
the output's ``grad_fn`` and remembers its input tensors (``ctx.inputs``). So the
graph has two kinds of nodes, drawn in the direction the data flowed:

    tensor (ellipse)  -->  op (box)  -->  tensor  -->  op  --> ... --> output (green)

- an op is labelled with its Function's name (``Conv2d``, ``ReLU``, ``Add``);
- a tensor is labelled with its shape and dtype; a leaf parameter (blue) also with
  its name when ``params`` names it (``dict(model.named_parameters())``); other
  leaves (input images, labels) are white, dashed when they need no gradient;
- an op with several outputs (max pooling with indices) labels each out-edge with
  the output's index.

Python numbers and other non-tensor arguments are not drawn. The walk is iterative
(a 1000-layer net needs no recursion) and visits every node once. Nothing here
needs the graphviz package: the result is plain text.
"""
from ..tensor import Tensor

__all__ = ["to_dot", "save_dot"]

_STYLE = {
    "op": 'shape=box, style="rounded,filled", fillcolor="#e8e8e8"',
    "param": 'shape=ellipse, style=filled, fillcolor="#cfe2f3"',
    "leaf": "shape=ellipse",
    "const": "shape=ellipse, style=dashed",
    "tensor": "shape=ellipse",
    "output": 'shape=ellipse, style=filled, fillcolor="#c9e7c0"',
}


def _quote(text):
    """A dot string literal: backslashes and quotes escaped, newlines as \\n."""
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _param_names(params):
    """id(tensor) -> name, from a dict, a Module or an iterable of (name, tensor) pairs."""
    if params is None:
        return {}
    if hasattr(params, "named_parameters"):
        params = params.named_parameters()
    elif hasattr(params, "items"):
        params = params.items()
    names = {}
    for name, t in params:
        if not isinstance(t, Tensor):
            raise TypeError(f"to_dot: params[{name!r}] is a {type(t).__name__}, expected a Tensor")
        names.setdefault(id(t), str(name))
    return names


def to_dot(tensor, params=None, show_shapes=True, graph_name="autograd"):
    """Graphviz dot text of the autograd graph that produced ``tensor``.

    ``params``: names for leaf tensors, e.g. ``dict(model.named_parameters())`` (a
    Module or ``(name, tensor)`` pairs work too). ``show_shapes``: put shape and
    dtype in the tensor labels. Returns the text of a ``digraph``.
    """
    if not isinstance(tensor, Tensor):
        raise TypeError(f"to_dot: expected a Tensor, got {type(tensor).__name__}")
    names = _param_names(params)
    ids = {}                   # id(object) -> dot node id, in discovery order
    keep = []                  # the objects behind ids, alive while we walk
    nodes, edges = [], []

    def node_id(obj, prefix):
        key = id(obj)
        if key not in ids:
            ids[key] = f"{prefix}{len(ids)}"
            keep.append(obj)
        return ids[key]

    def tensor_label(t, title):
        lines = [title] if title else []
        if show_shapes:
            lines.append(f"{tuple(t.shape)} {t.dtype}")
        return "\n".join(lines) or " "

    def add_tensor(t, kind, title=""):
        tid = node_id(t, "t")
        nodes.append(f"  {tid} [label={_quote(tensor_label(t, title))}, {_STYLE[kind]}];")
        return tid

    def leaf_kind(t):
        if id(t) in names or (t.requires_grad and t.grad_fn is None and type(t).__name__ == "Parameter"):
            return "param"
        return "leaf" if t.requires_grad else "const"

    def add_op(fn):
        fid = node_id(fn, "f")
        nodes.append(f"  {fid} [label={_quote(fn.name)}, {_STYLE['op']}];")
        return fid

    # The output tensor, and the edge from the op that made it.
    root = add_tensor(tensor, "output", names.get(id(tensor), "output"))
    if tensor.grad_fn is None:
        return _assemble(graph_name, nodes, edges)
    stack = [tensor.grad_fn]
    f0 = add_op(tensor.grad_fn)
    label = f' [label="{tensor._output_index}"]' if _multi(tensor.grad_fn) else ""
    edges.append(f"  {f0} -> {root}{label};")
    seen_ops = {id(tensor.grad_fn)}
    seen_tensors = {id(tensor)}
    while stack:
        fn = stack.pop()
        fid = ids[id(fn)]
        for t in getattr(fn, "inputs", ()):
            if t is None:
                continue
            if id(t) not in seen_tensors:
                seen_tensors.add(id(t))
                if t.grad_fn is None:
                    add_tensor(t, leaf_kind(t), names.get(id(t), ""))
                else:
                    tid = add_tensor(t, "tensor", names.get(id(t), ""))
                    producer = t.grad_fn
                    if id(producer) not in seen_ops:
                        seen_ops.add(id(producer))
                        add_op(producer)
                        stack.append(producer)
                    label = f' [label="{t._output_index}"]' if _multi(producer) else ""
                    edges.append(f"  {ids[id(producer)]} -> {tid}{label};")
            edges.append(f"  {ids[id(t)]} -> {fid};")
    return _assemble(graph_name, nodes, edges)


def _multi(fn):
    """An op with several outputs: its out-edges say which output they carry."""
    return len(getattr(fn, "output_meta", ())) > 1


def _assemble(graph_name, nodes, edges):
    head = [f"digraph {_quote(graph_name)} {{",
            "  rankdir=TB;",
            '  node [fontname="Helvetica", fontsize=10];',
            '  edge [arrowsize=0.7];']
    return "\n".join(head + nodes + edges + ["}"]) + "\n"


def save_dot(tensor, path, **kwargs):
    """Write ``to_dot(tensor, **kwargs)`` to ``path`` (render it with
    ``dot -Tpng path -o graph.png``); returns the path."""
    text = to_dot(tensor, **kwargs)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path
