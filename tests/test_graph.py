"""td.utils.to_dot / save_dot: the autograd graph of a loss as Graphviz dot text."""
import re

import pytest

import tinydl as td
import tinydl.nn as nn
import tinydl.nn.functional as F
import models
from tinydl.utils import to_dot, save_dot

_NODE = re.compile(r'^  ([tf]\d+) \[label="((?:[^"\\]|\\.)*)", (.*)\];$')
_EDGE = re.compile(r'^  ([tf]\d+) -> ([tf]\d+)(?: \[label="(\d+)"\])?;$')


def parse(text):
    """A strict reader of the subset of dot that to_dot writes: returns
    ({node: (label, attrs)}, [(tail, head, label)]); fails on anything else."""
    lines = text.rstrip("\n").split("\n")
    assert re.match(r'^digraph "[^"]*" \{$', lines[0]) and lines[-1] == "}"
    nodes, edges = {}, []
    for line in lines[1:-1]:
        if line.strip().startswith(("rankdir", "node [", "edge [")):
            continue
        m = _NODE.match(line)
        if m:
            assert m.group(1) not in nodes, f"node {m.group(1)} declared twice"
            nodes[m.group(1)] = (m.group(2).replace("\\n", "\n"), m.group(3))
            continue
        m = _EDGE.match(line)
        assert m, f"not a node or an edge: {line!r}"
        edges.append(m.groups())
    for tail, head, _ in edges:
        assert tail in nodes and head in nodes, f"edge {tail} -> {head} to an undeclared node"
        assert tail[0] != head[0], "edges join a tensor and an op"
    return nodes, edges


def _mlp_loss():
    td.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    x, y = td.randn(5, 4), td.tensor([0, 1, 0, 1, 1])
    return model, F.cross_entropy(model(x), y)


def test_mlp_loss_graph_counts_and_names():
    model, loss = _mlp_loss()
    nodes, edges = parse(to_dot(loss, params=dict(model.named_parameters())))
    ops = [label for n, (label, _) in nodes.items() if n[0] == "f"]
    tensors = {n: label for n, (label, _) in nodes.items() if n[0] == "t"}
    assert sorted(ops) == ["CrossEntropy", "Linear", "Linear", "ReLU"]
    # output + 3 intermediate tensors + x, y and the four parameters
    assert len(tensors) == 10
    # into the ops: 2 (cross entropy) + 3 + 1 + 3; out of the ops: one tensor each
    assert len(edges) == 9 + 4
    labels = "\n".join(tensors.values())
    for name in ("0.weight", "0.bias", "2.weight", "2.bias"):
        assert name + "\n" in labels
    assert "(2, 3) float32" in labels and "(5,) int64" in labels and "output\n() float32" in labels
    params = [n for n, (_, attrs) in nodes.items() if "cfe2f3" in attrs]
    assert len(params) == 4
    consts = [n for n, (_, attrs) in nodes.items() if "dashed" in attrs]
    assert len(consts) == 2                   # the input batch and the labels need no gradient
    # the data flows down: the parameters of layer 0 feed the op that feeds the ReLU
    by_label = {label: n for n, label in tensors.items()}
    w0 = by_label["0.weight\n(3, 4) float32"]
    (first,) = [h for t, h, _ in edges if t == w0]
    relu = next(n for n, (label, _) in nodes.items() if label == "ReLU")
    mid = [h for t, h, _ in edges if t == first]
    assert any((m, relu, None) in edges for m in mid)


def test_shared_tensor_once_and_options():
    a = td.randn(3, requires_grad=True)
    b = td.randn(3, requires_grad=True)
    z = a * b + a
    nodes, edges = parse(to_dot(z, params={"a": a}))
    assert sorted(label for n, (label, _) in nodes.items() if n[0] == "f") == ["Add", "Mul"]
    assert sum(1 for n in nodes if n[0] == "t") == 4       # a, b, a*b, z: `a` drawn once
    assert len(edges) == 6
    assert sum(1 for label, _ in nodes.values() if label.startswith("a\n")) == 1
    plain = to_dot(z, show_shapes=False, graph_name="g")
    parse(plain)
    assert "float32" not in plain and plain.startswith('digraph "g" {')


def test_a_tensor_one_op_saved_and_another_did_not_is_drawn_once():
    a = td.randn(3, requires_grad=True)
    h = a * 2.0
    z = h * h + (h + 1.0)               # Mul keeps h itself, Add only a stand-in
    del h
    nodes, edges = parse(to_dot(z))
    assert sum(1 for n in nodes if n[0] == "t") == 5       # a, h, h * h, h + 1, z
    assert len(edges) == 10                                 # h into h * h twice


def test_a_constant_feeding_two_ops_is_drawn_once_after_backward():
    x = td.ones(2, 3)                               # the input batch: released nodes keep stand-ins
    w = td.randn(3, 3, requires_grad=True)
    v = td.randn(2, 3, requires_grad=True)
    y = (x @ w).sum() + (x * v).sum()
    before = parse(to_dot(y))
    y.backward()
    after = parse(to_dot(y))
    assert sum(1 for label, style in after[0].values() if "dashed" in style) == 1
    assert len(after[0]) == len(before[0]) and len(after[1]) == len(before[1])


def test_multi_output_op_labels_its_edges():
    x = td.randn(1, 2, 4, 4, requires_grad=True)
    y, idx = F.max_pool2d(x, 2, return_indices=True)
    nodes, edges = parse(to_dot((y * 2.0).sum()))
    pool = next(n for n, (label, _) in nodes.items() if label == "MaxPool2d")
    (out,) = [(h, lab) for t, h, lab in edges if t == pool]      # the indices carry no gradient
    assert out[1] == "0" and nodes[out[0]][0] == "(1, 2, 2, 2) float32"


def test_leaf_root_escaping_and_errors():
    nodes, edges = parse(to_dot(td.ones(2, 3), params={'odd "name"\\': td.ones(1)}))
    assert len(nodes) == 1 and not edges
    w = td.ones(2, requires_grad=True)
    nodes, _ = parse(to_dot(w * 3.0, params={'odd "name"\\': w}))
    assert any(label.startswith('odd \\"name\\"\\\\') for label, _ in nodes.values())
    with pytest.raises(TypeError, match="expected a Tensor"):
        to_dot([1, 2])
    with pytest.raises(TypeError, match="params"):
        to_dot(w * 3.0, params={"w": 1.0})


def test_graph_after_backward_and_a_module_as_params():
    model, loss = _mlp_loss()
    before = to_dot(loss, params=model)
    loss.backward()                               # frees saved arrays and activations, keeps the structure
    text = to_dot(loss, params=model)
    nodes, edges = parse(text)
    assert len(nodes) == 14 and len(edges) == 13 and "2.bias" in text
    assert text == before


def test_deep_chain_needs_no_recursion():
    x = td.ones(2, requires_grad=True)
    y = x
    for _ in range(3000):
        y = y * 1.0001
    nodes, edges = parse(to_dot(y.sum()))
    assert sum(1 for n in nodes if n[0] == "f") == 3001
    assert len(edges) == 2 * 3001


def test_resnet20_graph_names_every_parameter(tmp_path):
    td.manual_seed(0)
    model = models.create("resnet20")
    loss = F.cross_entropy(model(td.randn(2, 3, 32, 32)), td.tensor([1, 7]))
    path = save_dot(loss, tmp_path / "resnet20.dot", params=dict(model.named_parameters()))
    text = path.read_text()
    assert text == to_dot(loss, params=dict(model.named_parameters()))
    nodes, edges = parse(text)
    named = [label.split("\n")[0] for label, attrs in nodes.values() if "cfe2f3" in attrs]
    assert sorted(named) == sorted(n for n, _ in model.named_parameters())     # every parameter, named
    assert sum(1 for label, _ in nodes.values() if label == "Conv2d") == 19
