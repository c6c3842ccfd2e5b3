"""In-place changes as PyTorch's (tinydl/ops/inplace.py): ``+= -= *= /=``, ``add_`` and the
rest, ``x[i] = v``; outside the graph they write into the tensor's own array, while it is
recorded they are ops of the graph. Every case runs through PyTorch too."""
import numpy as np
import pytest

import tinydl as td

torch = pytest.importorskip("torch")
LIBS = [td, torch]


def _grads(*tensors):
    return [None if t.grad is None else np.round(t.grad.tolist(), 10).tolist() for t in tensors]


def _both(case):
    """``case(lib)`` in both libraries: the same values, or both refuse."""
    results = []
    for lib in LIBS:
        try:
            results.append(case(lib))
        except RuntimeError as exc:
            results.append(("refused", type(exc).__name__))
    assert results[0] == results[1], f"tinydl {results[0]}, PyTorch {results[1]}"
    return results[0]


def test_the_hand_written_sgd_update_changes_the_parameters_themselves():
    """``p -= lr * p.grad`` under no_grad: the parameter object keeps requiring grad and the
    model trains (Python's ``-=`` used to rebind ``p`` to a new tensor)."""
    def case(lib):
        model = lib.nn.Linear(3, 1)
        with lib.no_grad():
            model.weight.copy_(lib.tensor([[0.5, -1.0, 2.0]]))
            model.bias.zero_()
        x = lib.tensor(np.arange(12.0, dtype=np.float32).reshape(4, 3) / 10)
        losses = []
        for _ in range(3):
            loss = (model(x) ** 2).mean()
            model.zero_grad()
            loss.backward()
            with lib.no_grad():
                for p in model.parameters():
                    p -= 0.1 * p.grad
            losses.append(round(loss.item(), 5))
        return losses, model.weight.requires_grad, model.weight.is_leaf
    losses, requires_grad, is_leaf = _both(case)
    assert losses[2] < losses[0] and requires_grad and is_leaf


def test_in_place_operators_keep_the_object_and_its_aliases():
    def case(lib):
        a = lib.zeros(3)
        b, view = a, a[1:]
        b += 1
        b *= lib.tensor([1.0, 2.0, 3.0])
        b -= 0.5
        b /= 2
        return a.tolist(), view.tolist(), b is a
    assert _both(case)[2]


@pytest.mark.parametrize("op", ["+=", "-=", "*=", "/="])
def test_recorded_in_place_arithmetic_backpropagates_as_torch(op):
    rng = np.random.default_rng(0)
    w0, v0, g = rng.standard_normal(4), rng.uniform(0.5, 2.0, 4), rng.standard_normal(4)

    def case(lib):
        w, v = lib.tensor(w0, requires_grad=True), lib.tensor(v0, requires_grad=True)
        y = w * 2
        before = y
        if op == "+=":
            y += v
        elif op == "-=":
            y -= v * v
        elif op == "*=":
            y *= v
        else:
            y /= v
        (y * lib.tensor(g)).sum().backward()
        return np.round(y.tolist(), 12).tolist(), _grads(w, v), y is before
    assert _both(case)[2]


def test_in_place_into_a_constant_joins_the_graph():
    def case(lib):
        w = lib.tensor([1.0, -2.0], requires_grad=True)
        x = lib.zeros(2)
        x += w * 3
        (x * x * lib.tensor([0.3, -1.7])).sum().backward()
        return x.requires_grad, _grads(w)
    _both(case)


@pytest.mark.parametrize("case_name", ["leaf", "saved_by_its_op", "int_result_type", "bool_sub"])
def test_refusals_as_torch(case_name):
    def case(lib):
        w = lib.tensor([1.0, 2.0], requires_grad=True)
        if case_name == "leaf":             # a parameter outside no_grad
            w += 1
        elif case_name == "saved_by_its_op":    # tanh's backward reads its output
            y = w.tanh()
            y += 1
            (y * lib.tensor([0.4, -1.1])).sum().backward()
        elif case_name == "int_result_type":
            i = lib.tensor([1, 2])
            i += 0.5
        else:
            b = lib.tensor([True, False])
            b -= lib.tensor([True, True])
        return "accepted"
    assert _both(case)[0] == "refused"


def test_integer_and_mixed_dtypes_in_place():
    def case(lib):
        i = lib.tensor([1, 2])
        i *= 3
        i += True
        f = lib.tensor([1.0, 2.0])
        f += lib.tensor([1, 2])         # int into float: float32 stays
        h = lib.tensor([1.0, 2.0], dtype=lib.float16)
        h *= lib.tensor([0.5, 4.0])      # computed in float32, stored in float16
        return i.tolist(), str(i.dtype)[-5:], f.tolist(), str(f.dtype)[-7:], h.tolist(), str(h.dtype)[-7:]
    _both(case)


def test_setitem_records_the_graph_as_torch():
    rng = np.random.default_rng(1)
    w0, v0, g = (rng.standard_normal(n).astype(np.float32) for n in (3, 2, 5))

    def case(lib):
        w, v = lib.tensor(w0, requires_grad=True), lib.tensor(v0, requires_grad=True)
        out = lib.zeros(5)
        out[1] = (w * 2).sum()                 # a value that needs grad into a constant
        out[lib.tensor([3, 4])] = v            # advanced index
        y = out * 1
        y[0] = 7.0                             # an intermediate result changed in place
        y[y > 100] = 0                         # a mask (writes nothing here)
        (y * lib.tensor(g)).sum().backward()
        return np.round(y.tolist(), 5).tolist(), y.requires_grad, _grads(w, v)
    _both(case)


def test_setitem_broadcasts_and_gives_a_broadcast_value_its_summed_gradient():
    def case(lib):
        v = lib.tensor([[1.0], [2.0]], requires_grad=True)
        x = lib.ones(2, 3) * 0.0
        x[:, :] = v
        (x * lib.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])).sum().backward()
        return x.tolist(), _grads(v)
    _both(case)


def test_setitem_follows_torchs_rule_for_an_int_and_an_array_apart():
    """``x[1, :, [0, 1]] = v``: PyTorch applies the int first, NumPy would move the
    advanced dim to the front and write v transposed."""
    def case(lib):
        x = lib.zeros(2, 2, 3)
        x[1, :, [0, 2]] = lib.tensor([[1.0, 2.0], [3.0, 4.0]])
        x[0, :, [1]] = lib.tensor([[5.0], [6.0]])
        return x.tolist()
    _both(case)


def test_setitem_on_a_leaf_that_requires_grad_refuses_and_works_under_no_grad():
    for lib in LIBS:
        w = lib.tensor([1.0, 2.0], requires_grad=True)
        with pytest.raises(RuntimeError):
            w[0] = 5.0
        with lib.no_grad():
            w[0] = 5.0
        assert w.tolist() == [5.0, 2.0] and w.requires_grad


def test_double_backward_through_recorded_in_place_ops():
    def case(lib):
        w = lib.tensor([0.5, -1.5], requires_grad=True)
        y = w * w
        y *= w                     # w ** 3
        y[0] = y[0] * 2            # 2 w0^3, w1^3
        g, = lib.autograd.grad((y * lib.tensor([0.7, -1.3])).sum(), w, create_graph=True)
        h, = lib.autograd.grad((g * g).sum(), w)
        return np.round(g.tolist(), 12).tolist(), np.round(h.tolist(), 12).tolist()
    _both(case)


_W = np.random.default_rng(7).standard_normal((3, 4))      # the upstream weights of the losses


def _view_case(name, lib):
    """One in-place change through a view (or of the tensor a view views), then a loss that
    uses the other tensors over that memory: (loss, the leaves to check)."""
    F = lib.nn.functional
    w = lib.tensor(_W)
    x = lib.tensor(np.linspace(-1.0, 1.5, 12).reshape(3, 4), requires_grad=True)
    if name == "row, then the base":
        y = x * 1.0
        y[0].mul_(2)
        return (y * w).sum(), [x]
    if name == "row, then the row and the base":
        y = x * 1.0
        v = y[0]
        v.mul_(x[2])
        return (v * w[0]).sum() + (y * w).sum(), [x]
    if name == "row, then a column (a sibling view)":
        y = x * 1.0
        column = y[:, 1]
        y[0].mul_(x[1])
        return (column * w[:, 1]).sum(), [x]
    if name == "the base, then a view made before":
        y = x * 1.0
        rows = y[1:]
        y.mul_(3)
        return (rows * w[1:]).sum(), [x]
    if name == "the base, the view as backward's root":
        y = x + 0.0
        v = y[0]
        y.mul_(3)
        return (v * w[0]).sum(), [x]
    if name == "in-place relu of a reshape view":
        y = x * 2.0
        flat = y.reshape(12)
        F.relu(flat, inplace=True)
        return (y * w).sum() + (flat * w.reshape(12)).sum(), [x]
    if name == "copy_ into a row of a constant":
        z = lib.zeros(3, 4, dtype=lib.float64)
        z[0].copy_(x[1] * 2)
        return (z * w).sum(), [x]
    if name == "+= into a row of a constant, then a view made before":
        z = lib.zeros(3, 4, dtype=lib.float64)
        row = z[0]
        z += x
        return (row * w[0]).sum(), [x]
    if name == "a view of a transposed view":
        y = x + 0.0
        part = y.t()[1:3]
        part.add_(x.t()[0:2] * 3)
        return (y * w).sum(), [x]
    if name == "one element":
        y = x + 0.0
        y[1, 2].mul_(5)
        return (y * w).sum(), [x]
    if name == "a split piece (refused)":
        y = x + 0.0
        y.split(2, dim=1)[0].mul_(4)
        return (y * w).sum(), [x]
    if name == "two views, changed one after the other":
        y = x * 1.0
        a, b = y[0], y[:, 0]
        a.mul_(x[1])
        b.add_(x[:, 2] ** 2)
        return (a * w[0]).sum() + (b * w[:, 0]).sum() + (y * w).sum(), [x]
    if name == "second derivative":
        y = x * x
        y[0].mul_(x[1])
        g, = lib.autograd.grad((y * w).sum(), x, create_graph=True)
        return (g * w).sum(), [x]
    if name == "a row filled with 0, then sqrt (no 0 * inf)":
        y = x * 1.0 + 2.0
        y[0].fill_(0.0)
        return (y.sqrt() * w).sum(), [x]
    if name == "retain_grad on a view, then the base changed":
        y = x * 1.0
        v = y[0]
        v.retain_grad()
        y.mul_(x * 2)
        (v * w[0]).sum().backward()
        return (v.grad * 1.0).sum(), [x]
    if name == "detach() before and after a change through a view":
        y = x * 2.0
        before = y.detach()
        y[0].mul_(3.0)
        after = y.detach()
        return ((y - before) * w + (y - after) * w * w).sum(), [x]
    if name == "copy_ into a row of a constant, second derivative":
        z = lib.zeros(3, 4, dtype=lib.float64)
        z[1].copy_(x[0] * x[0])
        g, = lib.autograd.grad((z * z).sum(), [x], create_graph=True)
        return (g * g).sum(), [x]
    if name == "a view made under no_grad, changed while recording (refused)":
        y = x * 1.0
        with lib.no_grad():
            v = y[0]
        v.mul_(x[1])
        return (y * w).sum(), [x]
    if name == "a chunk piece of a constant, changed with a value that requires grad (refused)":
        piece = lib.zeros(4, 3, dtype=lib.float64).chunk(2)[0]
        piece.add_(x[:2, :3])
        return piece.sum(), [x]
    if name == "the diagonal, then the base":
        y = x[:, :3] * 1.0
        y.diagonal().mul_(x[0, :3])
        return (y * w[:, :3]).sum(), [x]
    if name == "clamp_ of a view made under no_grad, with a bound that requires grad (refused)":
        y = lib.zeros(3, 4, dtype=lib.float64)
        with lib.no_grad():
            v = y[0]
        v.clamp_(min=x[1])
        return (y * w).sum(), [x]
    if name == "a view of a leaf that requires grad (refused)":
        x[0].mul_(2)
        return (x * w).sum(), [x]
    raise KeyError(name)


@pytest.mark.parametrize("name", ["row, then the base", "row, then the row and the base",
                                  "row, then a column (a sibling view)", "the base, then a view made before",
                                  "the base, the view as backward's root", "in-place relu of a reshape view",
                                  "copy_ into a row of a constant",
                                  "+= into a row of a constant, then a view made before",
                                  "a view of a transposed view", "one element", "a split piece (refused)",
                                  "two views, changed one after the other", "second derivative",
                                  "a row filled with 0, then sqrt (no 0 * inf)",
                                  "retain_grad on a view, then the base changed",
                                  "detach() before and after a change through a view",
                                  "copy_ into a row of a constant, second derivative",
                                  "a view made under no_grad, changed while recording (refused)",
                                  "a chunk piece of a constant, changed with a value that requires grad (refused)",
                                  "the diagonal, then the base",
                                  "clamp_ of a view made under no_grad, with a bound that requires grad (refused)",
                                  "a view of a leaf that requires grad (refused)"])
def test_in_place_changes_through_views_as_torch(name):
    """As PyTorch's views: a change recorded through one tensor over a storage rebuilds the
    histories of the others (CopySlices for the base, the view made again from it), so the
    values and the gradients of every tensor over that memory are PyTorch's."""
    def case(lib):
        loss, leaves = _view_case(name, lib)
        loss.backward()
        return round(loss.item(), 10), _grads(*leaves)
    _both(case)


def test_views_write_through_under_no_grad():
    x = td.tensor([1.0, 2.0], requires_grad=True).reshape(2, 1) * td.ones(2, 2)
    with td.no_grad():
        x[0].mul_(10)
    assert x.tolist() == [[10.0, 10.0], [2.0, 2.0]]
    assert (x * 1).requires_grad                 # nothing stale: the change was outside the graph


def test_a_tensor_over_changed_memory_that_is_no_view_refuses_to_be_used():
    """An op of one's own that returns its input's memory (not a view op that tinydl can make
    again): after an in-place change through the input, its output's history no longer
    explains its values, and using it raises instead of giving a wrong gradient."""
    class Same(td.autograd.Function):
        def forward(ctx, x):
            return x

        def backward(ctx, gy):
            return gy
    h = td.tensor([1.0, 2.0], requires_grad=True) * 1.0
    same = Same.apply(h)
    h.mul_(2)
    with pytest.raises(RuntimeError, match="was changed in place through another tensor over the same memory"):
        same * 1.0


def test_other_in_place_operators_as_torch():
    def case(lib):
        i = lib.tensor([7, 8, 9])
        alias = i
        i //= 2
        m = lib.tensor([True, True])
        m &= lib.tensor([True, False])
        m |= lib.tensor([False, False])
        m ^= lib.tensor([False, True])
        j = lib.tensor([7, 8])
        try:
            j %= 0
            zero = "accepted"
        except RuntimeError:
            zero = "refused"
        return alias.tolist(), m.tolist(), zero, lib.tensor([1, 2]).masked_fill(lib.tensor([False, True]),
                                                                                 lib.tensor(9.5)).tolist()
    _both(case)


def test_setitem_edge_cases_as_torch():
    def case(lib):
        x = lib.zeros(3, 4)
        x[lib.tensor(1), [0, 1]] = 5.0                 # a 0-d index tensor with an array apart
        i = lib.tensor([1, 2, 3])
        i[:2] = lib.tensor([1.5, 2.5], requires_grad=True)      # an integer tensor: no gradient
        v = lib.tensor([[1.0, 2.0, 3.0]], requires_grad=True)
        y = lib.zeros(2, 3)
        y[0] = v                                       # the value's leading 1 dropped
        (y * lib.tensor([[1.0, 10.0, 100.0], [1.0, 1.0, 1.0]])).sum().backward()
        u = lib.tensor(np.array([1, 45], np.uint8))
        u += lib.tensor([1, 1])                        # int64 into uint8
        return x.tolist(), i.tolist(), i.requires_grad, _grads(v), u.tolist(), str(u.dtype)[-5:]
    _both(case)


def test_in_place_refuses_a_shape_the_tensor_cannot_hold():
    for lib in LIBS:
        x = lib.tensor([1.0, 2.0, 3.0], requires_grad=True) * 1
        with pytest.raises(RuntimeError, match="doesn't match the broadcast shape"):
            x += lib.ones(1, 3)


def test_second_derivatives_after_two_in_place_changes_as_torch():
    """x /= s saves its result for its backward; a later x += w must not change what the
    create_graph backward reads (the node keeps its own result until it is released)."""
    def case(lib):
        w = lib.tensor([0.5, -1.5, 2.0], dtype=lib.float64, requires_grad=True)
        x = w * w
        x /= w.sum()
        x += w
        g, = lib.autograd.grad((x * x * lib.tensor([0.9, -0.2, 1.3], dtype=lib.float64)).sum(), w, create_graph=True)
        h, = lib.autograd.grad((g * g).sum(), w)
        return np.round(g.tolist(), 8).tolist(), np.round(h.tolist(), 3).tolist()
    _both(case)


@pytest.mark.parametrize("op", ["**=", "pow_", "%="])
def test_power_and_remainder_in_place_as_torch(op):
    def case(lib):
        w = lib.tensor([0.5, 1.5, 2.5], dtype=lib.float64, requires_grad=True)
        e = lib.tensor([2.0, 0.5, 3.0], dtype=lib.float64, requires_grad=True)
        x = w * 1
        if op == "**=":
            x **= e
        elif op == "pow_":
            x.pow_(2)
        else:
            x %= 2.0
        (x * lib.tensor([1.0, -2.0, 3.0], dtype=lib.float64)).sum().backward()
        p = lib.zeros(2)
        with lib.no_grad():
            p += 3
            p **= 2
            p %= 4
        return np.round(x.tolist(), 10).tolist(), _grads(w, e), p.tolist()
    _both(case)
