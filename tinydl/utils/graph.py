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
needs the graphviz package: ``to_dot`` writes plain text, and ``draw_graph``
draws the same nodes and edges to a PNG with matplotlib:

    >>> td.utils.draw_graph(loss, 'loss.png', params=model)

It places every node on the row of its longest path to the output (the output
at the bottom, each leaf one row above the earliest op that reads it) and orders each
row by where its consumers sit: enough for the graph of a small net.
"""
from ..autograd import graph_key
from ..tensor import Tensor

__all__ = ["graph_nodes", "to_dot", "save_dot", "draw_graph"]

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
    """graph_key(tensor) -> name, from a dict, a Module or an iterable of (name, tensor) pairs
    (a graph_key: a node keeps stand-ins of the tensors it does not read)."""
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
        names.setdefault(graph_key(t), str(name))
    return names


def graph_nodes(tensor, params=None, show_shapes=True):
    """The graph behind ``tensor`` as plain data: ``(nodes, edges)``.

    ``nodes`` is a list of ``(node_id, kind, label)`` in discovery order (ids ``t0``,
    ``f1``, ...: t for tensors, f for ops; kind is 'op', 'param', 'leaf', 'const',
    'tensor' or 'output'), ``edges`` a list of ``(tail, head, label)`` in the direction
    the data flowed (label: the output index of a multi-output op, else None).
    ``to_dot`` and ``draw_graph`` both draw this.
    """
    if not isinstance(tensor, Tensor):
        raise TypeError(f"graph: expected a Tensor, got {type(tensor).__name__}")
    names = _param_names(params)
    ids = {}                   # id(op) or graph_key(tensor) -> node id, in discovery order
    keep = []                  # the objects behind ids, alive while we walk
    nodes, edges = [], []

    def node_id(obj, prefix, key):
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
        tid = node_id(t, "t", graph_key(t))
        nodes.append((tid, kind, tensor_label(t, title)))
        return tid

    def leaf_kind(t):
        if graph_key(t) in names or (t.requires_grad and t.grad_fn is None and type(t).__name__ == "Parameter"):
            return "param"
        return "leaf" if t.requires_grad else "const"

    def add_op(fn):
        fid = node_id(fn, "f", id(fn))
        nodes.append((fid, "op", fn.name))
        return fid

    # The output tensor, and the edge from the op that made it.
    root = add_tensor(tensor, "output", names.get(graph_key(tensor), "output"))
    if tensor.grad_fn is None:
        return nodes, edges
    stack = [tensor.grad_fn]
    f0 = add_op(tensor.grad_fn)
    edges.append((f0, root, _out_label(tensor)))
    seen_ops = {id(tensor.grad_fn)}
    seen_tensors = {graph_key(tensor)}
    while stack:
        fn = stack.pop()
        fid = ids[id(fn)]
        for t in getattr(fn, "inputs", ()):
            if t is None:
                continue
            key = graph_key(t)
            if key not in seen_tensors:
                seen_tensors.add(key)
                if t.grad_fn is None:
                    add_tensor(t, leaf_kind(t), names.get(key, ""))
                else:
                    tid = add_tensor(t, "tensor", names.get(key, ""))
                    producer = t.grad_fn
                    if id(producer) not in seen_ops:
                        seen_ops.add(id(producer))
                        add_op(producer)
                        stack.append(producer)
                    edges.append((ids[id(producer)], tid, _out_label(t)))
            edges.append((ids[key], fid, None))
    return nodes, edges


def _out_label(t):
    """The output index of ``t`` when its op has several outputs, else None."""
    return str(t._output_index) if _multi(t.grad_fn) else None


def to_dot(tensor, params=None, show_shapes=True, graph_name="autograd"):
    """Graphviz dot text of the autograd graph that produced ``tensor``.

    ``params``: names for leaf tensors, e.g. ``dict(model.named_parameters())`` (a
    Module or ``(name, tensor)`` pairs work too). ``show_shapes``: put shape and
    dtype in the tensor labels. Returns the text of a ``digraph``.
    """
    if not isinstance(tensor, Tensor):
        raise TypeError(f"to_dot: expected a Tensor, got {type(tensor).__name__}")
    nodes, edges = graph_nodes(tensor, params, show_shapes)
    lines = [f"  {nid} [label={_quote(label)}, {_STYLE[kind]}];" for nid, kind, label in nodes]
    lines += [f"  {tail} -> {head}" + (f' [label="{label}"]' if label is not None else "") + ";"
              for tail, head, label in edges]
    head = [f"digraph {_quote(graph_name)} {{",
            "  rankdir=TB;",
            '  node [fontname="Helvetica", fontsize=10];',
            '  edge [arrowsize=0.7];']
    return "\n".join(head + lines + ["}"]) + "\n"


def _multi(fn):
    """An op with several outputs: its out-edges say which output they carry."""
    return len(getattr(fn, "output_meta", ())) > 1


def save_dot(tensor, path, **kwargs):
    """Write ``to_dot(tensor, **kwargs)`` to ``path`` (render it with
    ``dot -Tpng path -o graph.png``); returns the path."""
    text = to_dot(tensor, **kwargs)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path


# fill colours of the PNG, as in the dot styles above
_FILL = {"op": "#e8e8e8", "param": "#cfe2f3", "leaf": "white", "const": "white", "tensor": "white",
         "output": "#c9e7c0"}


def _layout(nodes, edges):
    """node id -> (x, row): row = the longest path to the output (0), x in row order."""
    consumers = {nid: [] for nid, _, _ in nodes}
    producers = {nid: [] for nid, _, _ in nodes}
    for tail, head, _ in edges:
        consumers[tail].append(head)
        producers[head].append(tail)
    # rows from the output up: a node is placed once all its consumers are
    waiting = {nid: len(set(c)) for nid, c in consumers.items()}
    row = {nid: 0 for nid in consumers}
    ready = [nid for nid, n in waiting.items() if n == 0]
    order = []
    while ready:
        nid = ready.pop()
        order.append(nid)
        for p in set(producers[nid]):
            row[p] = max(row[p], row[nid] + 1)
            waiting[p] -= 1
            if waiting[p] == 0:
                ready.append(p)
    discovered = {nid: i for i, (nid, _, _) in enumerate(nodes)}
    x = {}
    for r in range(max(row.values()) + 1):
        members = [nid for nid in order if row[nid] == r]
        # under its consumers (already placed, on lower rows), ties in discovery order
        members.sort(key=lambda nid: (sum(x[c] for c in consumers[nid]) / len(consumers[nid])
                                      if consumers[nid] else 0.0, discovered[nid]))
        for i, nid in enumerate(members):
            x[nid] = i - (len(members) - 1) / 2
    return {nid: (x[nid], row[nid]) for nid in x}


def draw_graph(tensor, path, params=None, show_shapes=True, title=None, dpi=100):
    """Draw the autograd graph behind ``tensor`` to a PNG at ``path`` with matplotlib
    (no Graphviz needed): the nodes and edges of ``to_dot``, data flowing down to the
    output. ``params`` names the leaves, as in ``to_dot``. Returns ``path``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from .plot import save_figure

    if not isinstance(tensor, Tensor):
        raise TypeError(f"draw_graph: expected a Tensor, got {type(tensor).__name__}")
    nodes, edges = graph_nodes(tensor, params, show_shapes)
    pos = _layout(nodes, edges)
    rows = max(r for _, r in pos.values()) + 1
    width = max(sum(1 for _, r in pos.values() if r == k) for k in range(rows))
    fig = Figure(figsize=(max(4.0, 1.9 * width), max(2.5, 0.85 * rows)))
    FigureCanvasAgg(fig)
    ax = fig.add_axes([0, 0, 1, 0.94 if title else 1])
    ax.set_axis_off()
    ax.set_xlim(-width / 2, width / 2)
    ax.set_ylim(-0.6, rows - 0.4)
    for tail, head, label in edges:
        (x0, y0), (x1, y1) = pos[tail], pos[head]
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                    arrowprops=dict(arrowstyle="-|>", color="#555555", lw=0.8, shrinkA=11, shrinkB=11))
        if label is not None:
            ax.text((x0 + x1) / 2, (y0 + y1) / 2, label, fontsize=6, color="#555555")
    for nid, kind, label in nodes:
        x, y = pos[nid]
        box = dict(boxstyle="round,pad=0.3" if kind == "op" else "round4,pad=0.3", fc=_FILL[kind],
                   ec="#444444", lw=0.7, ls="--" if kind == "const" else "-")
        ax.text(x, y, label, ha="center", va="center", fontsize=6.5, bbox=box,
                fontweight="bold" if kind == "op" else "normal")
    if title:
        fig.suptitle(title, fontsize=9)
    return save_figure(fig, path, dpi=dpi)
