"""The autograd engine itself (graph, accumulation, memory, gradcheck) and Tensor basics.

The op-by-op gradients live in the op table (tests/optable); here we test what
no single op can show: how the engine combines them.
"""
import gc
import weakref

import numpy as np
import pytest
import torch

import tinydl as td
from tinydl.autograd import Function, graph_key


def leaf(*shape, seed=0, dtype=np.float64):
    return td.Tensor(np.random.default_rng(seed).standard_normal(shape).astype(dtype), requires_grad=True)


def upstream(shape, seed=1, dtype=np.float64):
    return td.Tensor(np.random.default_rng(seed).standard_normal(shape).astype(dtype))


# ================================================================ graph walking
def test_long_chain_has_no_recursion_limit():
    x = leaf(3)
    y = x
    for _ in range(20_000):
        y = y * 1.0001
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), np.full(3, 1.0001 ** 20_000), rtol=1e-9)
    del y   # freeing a 20,000-deep graph must not overflow the C stack either


def test_reused_node_accumulates_both_paths():
    x = leaf(4)
    h = x * 3.0                 # h feeds two consumers
    y = h * h + h
    v = upstream(4)
    y.backward(v)
    xd = x.detach().numpy()
    np.testing.assert_allclose(x.grad.numpy(), v.numpy() * (18 * xd + 3), rtol=1e-12)


def test_same_leaf_used_twice_in_one_op():
    x = leaf(5)
    v = upstream(5)
    (x * x).backward(v)
    np.testing.assert_allclose(x.grad.numpy(), 2 * x.detach().numpy() * v.numpy(), rtol=1e-12)


def test_leaf_grad_accumulates_across_backward_calls():
    x = leaf(3)
    v1, v2 = upstream(3, seed=1), upstream(3, seed=2)
    (x * 2.0).backward(v1)
    first = x.grad.numpy().copy()
    (x * 2.0).backward(v2)
    np.testing.assert_allclose(first, 2 * v1.numpy())
    np.testing.assert_allclose(x.grad.numpy(), 2 * (v1.numpy() + v2.numpy()))


def test_accumulation_adds_into_the_grad_tensor_itself():
    """As PyTorch's: a second backward adds into the same ``.grad`` tensor, so a name kept
    for it (gradient accumulation, logging) sees the sum."""
    x = leaf(3)
    (x * 2.0).backward(upstream(3))
    old = x.grad
    first = old.numpy().copy()
    (x * 3.0).backward(upstream(3, seed=5))
    assert old is x.grad
    np.testing.assert_allclose(old.numpy(), first + 3.0 * upstream(3, seed=5).numpy())


def test_backward_twice_needs_retain_graph():
    x = leaf(3)
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        y.backward()

    x.grad = None
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 4 * x.detach().numpy())


def test_retain_grad_on_non_leaf():
    x = leaf(2, 3)
    h = x * 2.0
    h.retain_grad()
    g = x * 5.0               # a non-leaf that does not retain its grad
    y = h * h + g
    v = upstream((2, 3))
    y.backward(v)
    np.testing.assert_allclose(h.grad.numpy(), 2 * h.detach().numpy() * v.numpy(), rtol=1e-12)
    assert g.grad is None
    assert y.grad is None


def test_retain_grad_after_use_by_ops_that_keep_or_drop_the_tensor_and_on_the_root():
    """retain_grad() called after h fed an op that saves it (h * h) and ops that keep only a
    stand-in (h + 1, h.sum()), and on the root: the .grads are torch's; a retained tensor
    that no one holds any more is skipped, not kept alive."""
    def run(lib):
        x = lib.tensor(np.random.default_rng(0).standard_normal((2, 3)), requires_grad=True)
        h = x * 2.0
        y = h * h + (h + 1.0) * 3.0 + h.sum()
        gone = x * 4.0
        z = y + gone
        h.retain_grad()
        gone.retain_grad()
        z.retain_grad()
        assert h.retains_grad and z.retains_grad and not x.retains_grad
        gone_ref = weakref.ref(gone)
        del gone
        z.backward(lib.tensor(np.random.default_rng(1).standard_normal((2, 3))))
        return x, h, z, gone_ref
    ours, theirs = run(td), run(torch)
    for o, t in zip(ours[:3], theirs[:3]):
        np.testing.assert_allclose(o.grad.numpy(), t.grad.numpy(), rtol=1e-12, atol=1e-12)
    gc.collect()
    assert ours[3]() is None
    with pytest.raises(RuntimeError, match="does not require grad"):      # as torch
        td.ones(2).retain_grad()


def test_multi_output_node_with_one_unused_output():
    x = leaf(6)
    a, b, c = td.split(x, 2)
    v = upstream(2)
    (b * 3.0).backward(v)
    np.testing.assert_allclose(x.grad.numpy(), np.r_[0, 0, 3 * v.numpy(), 0, 0])


def test_non_differentiable_outputs_name_positions_even_when_one_output_comes_back():
    """An op that marks output 1 non-differentiable and returns only output 0 (an optional
    mask) still gives a differentiable output 0; a mask returned alongside does not."""
    class MaybeMask(Function):
        non_differentiable_outputs = (1,)

        def forward(ctx, x, with_mask=False):
            return (x * 2, x > 0) if with_mask else x * 2

        def backward(ctx, gy, *unused):
            return gy * 2

    x = td.tensor(np.ones(3), requires_grad=True)
    assert MaybeMask.apply(x).requires_grad
    y, mask = MaybeMask.apply(x, with_mask=True)
    assert y.requires_grad and not mask.requires_grad


def test_backward_on_non_scalar_without_grad_raises():
    x = leaf(3)
    with pytest.raises(RuntimeError, match="scalar"):
        (x * 2.0).backward()


def test_backward_on_tensor_without_grad_raises():
    with pytest.raises(RuntimeError, match="does not require grad"):
        td.tensor([1.0, 2.0]).sum().backward()


def test_backward_grad_of_wrong_shape_raises():
    x = leaf(3)
    with pytest.raises(RuntimeError, match="shape"):
        (x * 2.0).backward(td.ones(4, dtype=td.float64))


# ================================================================ grad mode
def test_no_grad_records_nothing():
    x = leaf(3)
    with td.no_grad():
        y = x * 2.0 + 1.0
        z = y.sum()
    assert y.grad_fn is None and not y.requires_grad
    assert z.grad_fn is None and not z.requires_grad
    assert td.is_grad_enabled()
    w = x * 2.0
    assert w.requires_grad and w.grad_fn is not None


def test_no_grad_as_decorator_and_restores_on_error():
    x = leaf(3)

    @td.no_grad()
    def f(t):
        assert not td.is_grad_enabled()
        return t * 3.0

    assert not f(x).requires_grad
    assert td.is_grad_enabled()

    with pytest.raises(ValueError):
        with td.no_grad():
            raise ValueError("boom")
    assert td.is_grad_enabled()


def test_enable_grad_inside_no_grad():
    x = leaf(2)
    with td.no_grad():
        with td.enable_grad():
            y = x * 2.0
    assert y.requires_grad


def test_detach_cuts_the_graph_and_shares_data():
    x = leaf(3)
    d = (x * 2.0).detach()
    assert d.grad_fn is None and not d.requires_grad and d.is_leaf
    y = x * d
    v = upstream(3)
    y.backward(v)
    np.testing.assert_allclose(x.grad.numpy(), d.numpy() * v.numpy())  # d treated as a constant
    assert x.detach().array is x.array or np.shares_memory(x.detach().array, x.array)


@pytest.mark.parametrize("lib", [td, torch], ids=["tinydl", "torch"])
def test_detach_in_place_refuses_a_view_as_torch(lib):
    """detach_() on a view (of a leaf, of a result, of a constant, made under no_grad) is
    refused; on the tensor itself it cuts the graph."""
    base = lib.ones(3, 4, dtype=lib.float64, requires_grad=True)
    y = base * 2
    with lib.no_grad():
        untracked = y[0]
    for view in (base.reshape(12), y[0], y.t(), lib.ones(3, 4)[1:], untracked):
        with pytest.raises(RuntimeError, match="(?i)detach.*view.*in.?place"):
            view.detach_()
    y.detach_()
    assert y.grad_fn is None and not y.requires_grad
    assert y.detach()[0].requires_grad is False


def test_requires_grad_propagation():
    a = leaf(3)
    b = td.tensor([1.0, 2.0, 3.0], dtype=td.float64)
    assert (a + b).requires_grad
    assert (b + a).requires_grad
    assert not (b * 2.0).requires_grad
    assert not (b + b).requires_grad
    assert (a * 2.0).grad_fn is not None and (b * 2.0).grad_fn is None
    assert a.is_leaf and not (a * 1.0).is_leaf


def test_comparison_and_argmax_results_are_outside_the_graph():
    x = leaf(3, 4)
    assert not (x > 0).requires_grad
    assert not x.argmax(1).requires_grad
    v, i = x.max(1)
    assert v.requires_grad and not i.requires_grad


def test_integer_tensors_cannot_require_grad():
    with pytest.raises(RuntimeError, match="floating point"):
        td.tensor([1, 2], requires_grad=True)


def test_in_place_change_of_a_tensor_that_requires_grad_raises():
    x = leaf(3)
    with pytest.raises(RuntimeError, match="leaf that requires grad.*changed in place"):
        x[0] = 1.0
    with td.no_grad():
        x[0] = 1.0
    assert x.array[0] == 1.0


# ================================================================ memory
def test_graph_is_freed_without_the_cycle_collector():
    """The node keeps its inputs, never its outputs, so dropping the output frees
    the whole graph by reference counting alone."""
    gc.collect()
    gc.disable()
    try:
        x = leaf(4, 5)
        y = ((x * 2.0).exp() * x).sum(1)
        z = y[1:]
        node = weakref.ref(y.grad_fn)
        saved = weakref.ref(y.grad_fn.inputs[0].grad_fn.saved_tensors[0])  # an array Mul saved
        del y
        assert node() is not None   # z still holds the graph
        del z
        assert node() is None, "the graph outlived its output: a reference cycle"
        assert saved() is None, "a saved array outlived the graph"
        assert gc.collect() == 0
    finally:
        gc.enable()


def test_backward_releases_saved_arrays_unless_retain_graph():
    x = leaf(4)
    y = x.var()                       # var saves x - mean, an array nothing else holds
    saved = weakref.ref(y.grad_fn.saved_tensors[0])
    y.backward(retain_graph=True)
    assert saved() is not None
    y.backward()
    assert saved() is None            # freed by reference counting right after backward
    assert y.grad_fn.saved_tensors is None


# ================================================================ gradcheck
class ScaleBuggy(Function):
    """y = a * 3 + b * 3, with a planted bug in dL/db at element (1, 2)."""

    def forward(ctx, a, b):
        return 3 * a + 3 * b

    def backward(ctx, gy):
        gb = 3 * gy
        gb[1, 2] *= 1.5      # the planted bug
        return 3 * gy, gb


class ScaleCorrect(Function):
    """y = a * 3 + b * 3 done right."""

    def forward(ctx, a, b):
        return 3 * a + 3 * b

    def backward(ctx, gy):
        return 3 * gy, 3 * gy


def test_gradcheck_names_the_input_and_element_of_a_wrong_backward():
    a, b = leaf(2, 4, seed=1), leaf(2, 4, seed=2)
    with pytest.raises(td.GradcheckError) as info:
        td.gradcheck(lambda a, b: ScaleBuggy.apply(a, b), [a, b])
    msg = str(info.value)
    assert "input 1" in msg and "(1, 2)" in msg, msg
    assert td.gradcheck(lambda a, b: ScaleBuggy.apply(a, b), [a, b], raise_exception=False) is False


def test_gradcheck_passes_a_correct_function_and_a_composite():
    a, b = leaf(2, 4, seed=1), leaf(2, 4, seed=2)
    assert td.gradcheck(lambda a, b: ScaleCorrect.apply(a, b), [a, b])
    assert td.gradcheck(lambda a, b: ((a * b).exp() / (1.0 + b * b)).sum(0), [a, b])


def test_gradcheck_catches_a_planted_bug_in_a_real_op(monkeypatch):
    from tinydl.ops import math as M
    x = leaf(3, 4)
    assert td.gradcheck(M.exp, [x])
    original = M.Exp.backward
    monkeypatch.setattr(M.Exp, "backward", lambda ctx, gy: original(ctx, gy) * 1.01)
    with pytest.raises(td.GradcheckError, match="input 0"):
        td.gradcheck(M.exp, [x])


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


class SoftmaxRight(Function):
    """y = softmax(x) on the last axis;  dL/dx = y * (gy - sum(gy * y))."""

    def forward(ctx, x):
        y = _softmax(x)
        ctx.save_for_backward(y)
        return y

    def backward(ctx, gy):
        y, = ctx.saved_tensors
        return y * (gy - (gy * y).sum(-1, keepdims=True))


class SoftmaxWrong(SoftmaxRight):
    """The planted bug: the mean of gy instead of its y-weighted sum. With gy = 1
    both give y * (1 - 1) = 0, the true gradient of sum(softmax) = 1."""

    def backward(ctx, gy):
        y, = ctx.saved_tensors
        return y * (gy - gy.mean(-1, keepdims=True))


def _check_with_sum_upstream(fn, x, eps=1e-6):
    """The weak check the design forbids: y.sum().backward() against finite
    differences of y.sum(). Returns the largest error."""
    x.grad = None
    fn(x).sum().backward()
    numeric = np.zeros(x.shape)
    for idx in np.ndindex(*x.shape):
        orig = x.array[idx]
        x.array[idx] = orig + eps
        plus = fn(x).sum().item()
        x.array[idx] = orig - eps
        minus = fn(x).sum().item()
        x.array[idx] = orig
        numeric[idx] = (plus - minus) / (2 * eps)
    return np.abs(x.grad.numpy() - numeric).max()


def test_random_upstream_catches_a_bug_that_sum_upstream_hides():
    x = leaf(3, 5)
    wrong = lambda t: SoftmaxWrong.apply(t)
    right = lambda t: SoftmaxRight.apply(t)
    assert _check_with_sum_upstream(wrong, x) < 1e-8     # the weak check is fooled
    assert td.gradcheck(right, [x])
    with pytest.raises(td.GradcheckError):
        td.gradcheck(wrong, [x])


def test_gradcheck_refuses_float32_and_no_grad_inputs():
    with pytest.raises(TypeError, match="float64"):
        td.gradcheck(lambda t: t * 2.0, [leaf(3, dtype=np.float32)])
    with pytest.raises(ValueError, match="no input requires grad"):
        td.gradcheck(lambda t: t * 2.0, [td.ones(3, dtype=td.float64)])


# ================================================================ dtypes
def test_float32_leaf_grads_stay_float32():
    x = leaf(3, 4, dtype=np.float32)
    w = leaf(4, 2, seed=3, dtype=np.float32)
    y = ((x @ w).exp() * 0.5 + 1.5).log().mean(0) / 3.0 - x.var().sqrt() + x.max(1).values.sum()
    assert y.dtype == np.float32
    y.backward(upstream(2, dtype=np.float32))
    assert x.grad.dtype == np.float32 and w.grad.dtype == np.float32


def test_float64_stays_float64():
    x = leaf(3)
    y = (x * 0.5).mean()
    y.backward()
    assert y.dtype == np.float64 and x.grad.dtype == np.float64


@pytest.mark.parametrize("dtype, seed_dtype", [(np.float64, np.float32), (np.float32, np.float64)])
def test_a_seed_of_another_dtype_takes_the_outputs_dtype(dtype, seed_dtype):
    """As PyTorch: backward(grad) casts grad to the output's dtype, so every op's backward
    sees one dtype (the direct convolution's kernels size their vectors by it: a float64
    seed on float32 layers once wrote past a buffer)."""
    rng = np.random.default_rng(0)
    x = td.tensor(rng.standard_normal((4, 6, 14, 14)).astype(dtype), requires_grad=True)
    w = td.tensor(rng.standard_normal((16, 6, 5, 5)).astype(dtype), requires_grad=True)
    seed = rng.standard_normal((4, 16, 10, 10)).astype(seed_dtype)
    grads = []
    for given in (seed.astype(dtype), seed):          # the same values, cast by hand or by backward
        x.grad = w.grad = None
        with td.backends.record_routes() as taken:
            y = td.nn.functional.conv2d(x, w)
            y.backward(td.tensor(given))
        assert ("conv2d", "direct") in taken
        assert x.grad.dtype == w.grad.dtype == dtype
        grads.append((x.grad.array.copy(), w.grad.array.copy()))
    for by_hand, by_backward in zip(*grads):
        np.testing.assert_array_equal(by_backward, by_hand)


def test_integer_reductions_and_dtype_errors():
    assert td.tensor([1, 2, 3], dtype=td.int32).sum().dtype == td.int64
    assert td.tensor([True, False, True]).sum().item() == 2
    assert td.tensor(np.ones(300, np.uint8)).sum().item() == 300   # no uint8 overflow
    assert td.tensor([[1, 2], [3, 4]]).sum(0).tolist() == [4, 6]
    with pytest.raises(RuntimeError, match="floating point"):
        td.tensor([1, 2]).mean()
    with pytest.raises(RuntimeError, match="floating point"):
        td.tensor([1, 2]).var()


# ================================================================ devices
@pytest.mark.gpu
def test_mixing_devices_raises():
    a = td.ones(3, device="cuda")
    b = td.ones(3)
    with pytest.raises(RuntimeError, match="device"):
        a + b
    with pytest.raises(RuntimeError, match="device"):
        td.cat([a, b])


# ================================================================ Tensor basics
@pytest.mark.parametrize("data", [1.5, [1.0, 2.0], 3, [[1, 2]], True, [True, False],
                                  np.float64(2.0), np.array([1, 2], np.int32), np.array([1.0], np.float64),
                                  np.array([1.0], np.float16), np.array([1], np.uint8), [1, 2.5]],
                         ids=repr)
def test_tensor_dtype_rules_match_torch(data):
    assert str(td.tensor(data).dtype) == str(torch.tensor(data).dtype).replace("torch.", "")


def test_tensor_copies_and_dtype_argument():
    a = np.array([1.0, 2.0])
    t = td.tensor(a)
    a[0] = 99
    assert t.tolist() == [1.0, 2.0]
    assert td.tensor([1, 2], dtype=td.float32).dtype == np.float32
    assert td.tensor([1.5], dtype=float).dtype == np.float64       # Python float is float64, as in PyTorch
    assert td.tensor([1.5], dtype=td.float64).dtype == np.float64


def test_creation_shapes_and_dtypes():
    assert td.zeros(2, 3).shape == (2, 3) and td.zeros((2, 3)).shape == (2, 3)
    assert td.zeros(2, 3).dtype == np.float32
    assert td.ones(4, dtype=td.float64).dtype == np.float64 and td.ones(4).numpy().sum() == 4
    assert td.zeros(()).shape == () and td.zeros(0).shape == (0,)
    assert td.randn(3, 4, 5).shape == (3, 4, 5) and td.randn(3).dtype == np.float32
    assert td.rand(2, 2).dtype == np.float32
    assert td.arange(5).tolist() == [0, 1, 2, 3, 4] and td.arange(5).dtype == np.int64
    assert td.arange(1, 7, 2).tolist() == [1, 3, 5]
    assert td.arange(0, 1, 0.25).dtype == np.float32 and td.arange(0, 1, 0.25).shape == (4,)
    assert td.full((2, 3), 7).dtype == np.int64 and td.full((2, 3), 7).tolist() == [[7] * 3] * 2
    assert td.full((2,), 1.5).dtype == np.float32
    assert td.full((2,), True).dtype == np.bool_
    assert td.zeros(2, 3, requires_grad=True).requires_grad


def test_manual_seed_makes_runs_reproducible():
    td.manual_seed(123)
    a, b = td.randn(5), td.rand(3)
    td.manual_seed(123)
    c, d = td.randn(5), td.rand(3)
    np.testing.assert_array_equal(a.numpy(), c.numpy())
    np.testing.assert_array_equal(b.numpy(), d.numpy())
    td.manual_seed(124)
    assert not np.array_equal(td.randn(5).numpy(), a.numpy())


def test_item_tolist_numpy():
    x = td.tensor([[1.5, 2.0]])
    assert x.tolist() == [[1.5, 2.0]]
    assert td.tensor(3).item() == 3 and isinstance(td.tensor(3).item(), int)
    assert isinstance(x[0, 0].item(), float) and x[0, 0].item() == 1.5
    assert isinstance(x.numpy(), np.ndarray)
    with pytest.raises(ValueError, match="one element"):
        x.item()
    g = leaf(2)
    with pytest.raises(RuntimeError, match="detach"):
        g.numpy()
    assert np.shares_memory(g.detach().numpy(), g.array)
    assert float(td.tensor(2.5)) == 2.5 and int(td.tensor(7)) == 7


@pytest.mark.parametrize("t", [td.tensor(1.5), td.tensor([1, 2]), td.tensor([True]), td.zeros(0),
                               td.tensor([1.0], dtype=td.float64), td.randn(3, 4, 5),
                               td.ones(2, requires_grad=True), td.ones(2, requires_grad=True) * 2.0],
                         ids=["0d", "int", "bool", "empty", "f64", "3d", "leaf", "non_leaf"])
def test_repr_does_not_crash(t):
    text = repr(t)
    assert text.startswith("tensor(")


def test_repr_mentions_grad_fn_and_dtype():
    assert "grad_fn" in repr(td.ones(2, requires_grad=True) * 2.0)
    assert "requires_grad=True" in repr(td.ones(2, requires_grad=True))
    assert "float64" in repr(td.ones(2, dtype=td.float64))


def test_comparisons_give_bool_tensors_and_masks_index():
    x = td.tensor([[-1.0, 2.0], [3.0, -4.0]], requires_grad=True)
    for m in (x > 0, x >= 0, x < 0, x <= 0, x == 2.0, x != 2.0, x > td.zeros(2)):
        assert m.dtype == np.bool_ and m.shape == (2, 2)
    assert (x > 0).tolist() == [[False, True], [True, False]]
    pos = x[x > 0]
    assert pos.tolist() == [2.0, 3.0]
    (pos * td.tensor([10.0, 20.0])).sum().backward()
    assert x.grad.tolist() == [[0.0, 10.0], [20.0, 0.0]]
    assert ((x > 0) & (x < 3)).tolist() == [[False, True], [False, False]]
    assert (~(x > 0)).tolist() == [[True, False], [False, True]]


# ================================================================ shape and reduce ops: return types, errors
def test_max_min_over_a_dim_return_values_and_int64_indices():
    x = leaf(3, 4)
    out = x.max(1)
    values, indices = out
    assert out.values is values and out.indices is indices
    assert indices.dtype == np.int64 and values.shape == (3,)
    assert x.min(-1, keepdim=True).indices.shape == (3, 1)
    assert td.max(x).shape == () and td.min(x).shape == ()
    assert x.argmax().dtype == np.int64 and x.argmax().shape == ()
    t = td.tensor(2.0)
    assert t.max(0).values.item() == 2.0 and t.max(0).indices.item() == 0


def test_split_and_chunk_sizes_follow_torch():
    x = td.arange(10)
    assert [p.shape[0] for p in x.chunk(4)] == [3, 3, 3, 1]
    assert [p.shape[0] for p in td.chunk(td.arange(6), 4)] == [2, 2, 2]
    assert [p.shape[0] for p in x.split(4)] == [4, 4, 2]
    assert isinstance(x.split([2, 8]), tuple)
    assert [p.shape for p in td.split(td.zeros(0), 2)] == [(0,)]


def test_views_squeeze_unsqueeze_shapes():
    x = td.zeros(1, 3, 1)
    assert x.squeeze().shape == (3,) and x.squeeze(1).shape == (1, 3, 1)
    assert x.squeeze((0, 2)).shape == (3,) and x.unsqueeze(-1).shape == (1, 3, 1, 1)
    assert td.tensor(1.0).unsqueeze(0).shape == (1,) and td.tensor(1.0).flatten().shape == (1,)
    assert x.expand(2, 1, 3, 4).shape == (2, 1, 3, 4)
    assert td.reshape(td.zeros(2, 3, 4), (-1, 4)).shape == (6, 4)
    assert td.permute(td.zeros(2, 3, 4), (2, 0, 1)).shape == (4, 2, 3)


@pytest.mark.parametrize("call, match", [
    (lambda: td.cat([td.zeros(2, 3), td.zeros(2, 4)]), r"\(2, 3\).*\(2, 4\)"),
    (lambda: td.stack([td.zeros(2), td.zeros(3)]), r"\(2,\).*\(3,\)"),
    (lambda: td.zeros(2, 3).reshape(4, 2), r"\[4, 2\].*6"),
    (lambda: td.zeros(2, 3).sum(2), r"dim 2 is out of range.*\(2, 3\)"),
    (lambda: td.zeros(2, 3).permute(0, 0), "permutation"),
    (lambda: td.zeros(3).expand(2, 4), r"\(4\).*\(3\)"),
    (lambda: td.zeros(5).split([2, 2]), r"\[2, 2\].*5"),
    (lambda: td.zeros(3)[td.tensor([0.5])], "integer or bool"),
    (lambda: td.zeros(3)[5], "out of bounds"),
    (lambda: td.zeros(0).max(), "empty"),
], ids=["cat", "stack", "reshape", "dim_range", "permute", "expand", "split", "float_index",
        "index_range", "empty_max"])
def test_bad_shapes_give_clear_errors(call, match):
    with pytest.raises((RuntimeError, IndexError, TypeError), match=match):
        call()


def test_gather_checks_index_range():
    from tinydl.nn import functional as F
    with pytest.raises(IndexError, match="index 5 is out of bounds"):
        F.gather(td.zeros(3, 4), 1, td.tensor([[5]]))
    with pytest.raises(IndexError, match="-1"):
        F.index_select(td.zeros(3, 4), 0, td.tensor([-1]))


def test_ops_never_write_into_their_inputs():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4, 5))
    keep = a.copy()
    x = td.Tensor(a, requires_grad=True)
    y = td.cat([x[1:, ::2], x[[0, 0, 3]].sum(1, keepdim=True)], 1).logsumexp(0) + x.var(0)[:4] + \
        x.max(0).values[:4]
    y.backward(upstream(y.shape))
    np.testing.assert_array_equal(a, keep)


def test_backward_frees_intermediate_activations():
    """After backward (no retain_graph) the graph keeps its shape but no activation:
    a loop that holds the last loss while the next batch runs forward must not hold
    the previous step's activations."""
    rng = np.random.default_rng(0)
    x = td.tensor(rng.standard_normal((4, 5)), requires_grad=True)
    h = td.nn.functional.tanh(x * 2.0)                 # one intermediate feeding two ops
    loss = h * td.tensor(rng.standard_normal((4, 5))) + h * h
    h_data, x_data = weakref.ref(h.array), weakref.ref(x.array)
    producer = h.grad_fn
    del h
    upstream = td.tensor(rng.standard_normal((4, 5)))
    loss.backward(upstream)
    gc.collect()
    assert h_data() is None, "an intermediate activation outlived backward"
    assert x_data() is not None          # leaves stay: they are the user's tensors
    # the structure is intact: the shared input is still one tensor of the graph, and a
    # second backward reaches a released node and says so
    feeders = [t for fn in (loss.grad_fn.inputs[0].grad_fn, loss.grad_fn.inputs[1].grad_fn)
               for t in fn.inputs if t is not None and t.grad_fn is producer]
    assert len(feeders) == 3 and len({graph_key(t) for t in feeders}) == 1
    assert feeders[0].shape == (4, 5)
    with pytest.raises(RuntimeError, match="second time"):
        loss.backward(upstream)


def test_retain_graph_keeps_intermediates_for_a_second_backward():
    x = td.tensor(np.linspace(-1, 1, 6), requires_grad=True)
    y = td.nn.functional.tanh(x) * td.nn.functional.tanh(x)
    g = td.tensor(np.random.default_rng(1).standard_normal(6))
    y.backward(g, retain_graph=True)
    first = x.grad.array.copy()
    np.testing.assert_allclose(first, g.array * 2 * np.tanh(x.array) * (1 - np.tanh(x.array) ** 2))
    y.backward(g)
    np.testing.assert_allclose(x.grad.array, 2 * first)


# ================================================================ in-place changes of saved tensors
_INPLACE = "modified by an inplace operation"


def _both(case):
    """Run ``case(lib)`` with tinydl and with PyTorch; return (tinydl error or None, torch error or None)."""
    import torch
    errors = []
    for lib in (td, torch):
        try:
            case(lib)
            errors.append(None)
        except RuntimeError as exc:
            errors.append(str(exc))
    return errors


def _issue_example(lib):
    w = lib.randn(3, requires_grad=True)
    x = lib.tensor(np.array([1.0, 2.0, 3.0], np.float32))
    y = (w * x).sum()
    x[0] = 100.0
    y.backward()


def _fill_saved_leaf(lib):
    w = lib.ones(3, requires_grad=True)
    y = (w * w).sum()
    with lib.no_grad():
        w.fill_(2.0)
    y.backward()


def _copy_into_saved_leaf(lib):
    w = lib.ones(3, requires_grad=True)
    y = (w.exp() * 2).sum()           # exp saves its output, mul by a number saves nothing of w
    with lib.no_grad():
        w.copy_(lib.zeros(3))         # exp's input is not saved: fine
    y.backward()


def _view_of_saved(lib):
    x = lib.ones(2, 3)
    w = lib.ones(6, requires_grad=True)
    y = (w * x.reshape(6)).sum()      # the reshape is a view: it shares x's version
    x[0, 0] = 5.0
    y.backward()


def _changed_output_of_relu(lib):
    x = lib.tensor(np.array([1.0, -2.0, 3.0], np.float32), requires_grad=True)
    y = (x * 1.0).relu()              # relu saves its output
    out = (y * 2).sum()
    with lib.no_grad():
        y.zero_()
    out.backward()


def _changed_input_of_add(lib):
    w = lib.ones(3, requires_grad=True)
    x = lib.ones(3)
    y = (w + x).sum()                 # add saves nothing
    x.fill_(7.0)
    y.backward()


def _detached_alias(lib):
    w = lib.ones(3, requires_grad=True)
    y = (w * w).sum()
    w.detach().zero_()                # the same storage, so the same version
    y.backward()


def _changed_0d_output_of_exp(lib):
    x = lib.tensor(0.5, requires_grad=True)
    y = x.exp()                       # exp saves its output: here a NumPy scalar the Tensor re-wraps
    with lib.no_grad():
        y.add_(1.0)
    y.backward()


@pytest.mark.parametrize("case, raises", [(_issue_example, True), (_fill_saved_leaf, True), (_view_of_saved, True),
                                          (_changed_output_of_relu, True), (_detached_alias, True),
                                          (_changed_0d_output_of_exp, True),
                                          (_copy_into_saved_leaf, False), (_changed_input_of_add, False)])
def test_inplace_changes_of_saved_tensors_raise_exactly_where_pytorch_does(case, raises):
    ours, theirs = _both(case)
    assert (theirs is not None) == raises, theirs          # the oracle agrees with the expectation
    if raises:
        assert ours is not None and _INPLACE in ours and "version 1; expected version 0" in ours
    else:
        assert ours is None, ours


def test_the_error_names_the_op_and_the_tensor():
    with pytest.raises(RuntimeError, match=r"input 1 \(shape \(3,\), float32\) of Mul is at version 1; "
                                           r"expected version 0"):
        _issue_example(td)


def test_an_optimizer_step_between_two_backwards_raises():
    td.manual_seed(0)
    model = td.nn.Linear(3, 2)
    opt = td.optim.SGD(model.parameters(), lr=0.1)
    # the input needs a gradient, which reads the weight (with an input that needs none, as
    # PyTorch, Linear saves no weight and the second backward is fine)
    loss = model(td.randn(4, 3, requires_grad=True)).sum()
    loss.backward(retain_graph=True)
    opt.step()
    with pytest.raises(RuntimeError, match=f"{_INPLACE}: input 1 \\(shape \\(2, 3\\), float32\\) of Linear"):
        loss.backward()
    assert [p._version for p in model.parameters()] == [2, 2]     # the init's fill (as PyTorch's), the step


def test_versions_count_inplace_changes_and_views_share_them():
    x = td.zeros(2, 3)
    v = x[0]
    assert x._version == v._version == 0
    v.fill_(1.0)
    x[1] = 2.0
    x.copy_(td.ones(2, 3))
    x.zero_()
    assert x._version == v._version == 4
    assert x.reshape(6)._version == 4 and x.detach()._version == 4
    assert (x + 1)._version == 0                               # a new tensor, a new counter


# ================================================================ anomaly mode
def _nan_in_sqrt_backward(lib):
    x = lib.tensor(np.array([0.0, 4.0], np.float32), requires_grad=True)
    y = x.sqrt()
    (y * lib.tensor(np.array([0.0, 1.0], np.float32))).sum().backward()    # 0 * (1 / 0) = nan
    return x.grad


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning", "ignore:Error detected:UserWarning")
def test_anomaly_mode_names_the_op_whose_backward_gave_nan_and_where_its_forward_ran():
    with pytest.warns(UserWarning, match="Anomaly Detection"), torch.autograd.detect_anomaly(), \
            pytest.raises(RuntimeError, match="Function 'SqrtBackward0' returned nan values"):
        _nan_in_sqrt_backward(torch)                       # the oracle raises at the same op
    assert np.isnan(_nan_in_sqrt_backward(td).numpy()[0])   # off by default: nan flows silently
    with td.autograd.detect_anomaly():
        assert td.autograd.is_anomaly_enabled()
        with pytest.raises(td.autograd.AnomalyError, match="Function 'SqrtBackward' returned nan values in its "
                                                           r"gradient for input 0 \(shape \(2,\), float32\)") as info:
            _nan_in_sqrt_backward(td)
    assert not td.autograd.is_anomaly_enabled()
    trace = info.value.forward_traceback
    assert "in _nan_in_sqrt_backward" in trace and "y = x.sqrt()" in trace and trace in str(info.value)


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")
def test_set_detect_anomaly_switches_it_on_and_off_and_inf_counts_too():
    td.autograd.set_detect_anomaly(True)
    try:
        x = td.zeros(2, requires_grad=True)
        with pytest.raises(td.autograd.AnomalyError, match="SqrtBackward' returned inf"):
            x.sqrt().sum().backward()                      # d sqrt(x)/dx at 0 = inf
    finally:
        td.autograd.set_detect_anomaly(False)
    assert not td.autograd.is_anomaly_enabled()
    with td.autograd.set_detect_anomaly(True):
        assert td.autograd.is_anomaly_enabled()
    assert not td.autograd.is_anomaly_enabled()


# ================================================================ a released graph keeps no batch alive
def test_a_kept_loss_keeps_neither_its_input_batch_nor_its_activations_alive():
    td.manual_seed(0)
    model = td.nn.Sequential(td.nn.Conv2d(1, 2, 3), td.nn.ReLU(), td.nn.Flatten(), td.nn.Linear(8, 3))
    x = td.randn(4, 1, 4, 4)
    hidden = model[1](model[0](x))
    loss = td.nn.functional.cross_entropy(model[3](model[2](hidden)), td.tensor(np.arange(4) % 3))
    batch, activation = weakref.ref(x.array), weakref.ref(hidden.array)
    loss.backward()
    del x, hidden
    gc.collect()
    assert batch() is None and activation() is None                # only the parameters stay referenced
    assert {p.array.shape for p in model.parameters()} == {(2, 1, 3, 3), (2,), (3, 8), (3,)}
    with pytest.raises(RuntimeError, match="a second time"):
        loss.backward()                                            # the graph is still walkable


# ---------------------------------------------------------------- td.autograd.grad
def _grad_case(lib):
    """Two outputs of three inputs (a leaf, a non-leaf, an unused leaf), float64."""
    rng = np.random.default_rng(11)
    a = lib.tensor(rng.standard_normal((3, 4)), requires_grad=True)
    b0 = lib.tensor(rng.standard_normal(4), requires_grad=True)
    unused = lib.tensor(rng.standard_normal(2), requires_grad=True)
    b = b0 * 2.0                                   # a non-leaf input
    y1 = (a * b).exp()                             # (3, 4)
    y2 = (a @ b).tanh()                            # (3,)
    g1, g2 = lib.tensor(rng.standard_normal((3, 4))), lib.tensor(rng.standard_normal(3))
    return a, b0, b, unused, y1, y2, g1, g2


def test_autograd_grad_matches_torch_and_leaves_grad_alone():
    ours, theirs = _grad_case(td), _grad_case(torch)
    got = td.autograd.grad([ours[4], ours[5]], [ours[0], ours[2], ours[3]], grad_outputs=[ours[6], ours[7]],
                           allow_unused=True)
    want = torch.autograd.grad([theirs[4], theirs[5]], [theirs[0], theirs[2], theirs[3]],
                               grad_outputs=[theirs[6], theirs[7]], allow_unused=True)
    for g, w in zip(got[:2], want[:2]):
        np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=1e-12, atol=1e-12)
    assert got[2] is None and want[2] is None
    assert ours[0].grad is None and ours[1].grad is None          # nothing accumulated
    with pytest.raises(RuntimeError, match="second time"):        # retain_graph defaults to False
        td.autograd.grad(ours[5], ours[0], grad_outputs=ours[7])


def test_autograd_grad_of_a_non_leaf_that_ops_kept_only_as_a_stand_in():
    """b feeds ops that never read it (b + 1, b.sum()) and one that does (b * b): its whole
    gradient still comes back, as torch's."""
    def run(lib):
        rng = np.random.default_rng(2)
        b0 = lib.tensor(rng.standard_normal(4), requires_grad=True)
        b = b0 * 2.0
        y = (((b + 1.0) * 3.0 + b.sum() + b * b) * lib.tensor(rng.standard_normal(4))).sum()   # random upstream
        return lib.autograd.grad(y, [b, b0])
    for o, t in zip(run(td), run(torch)):
        np.testing.assert_allclose(o.numpy(), t.numpy(), rtol=1e-12, atol=1e-12)


def test_autograd_grad_runs_nothing_below_its_inputs():
    """As PyTorch: grad(y, h) for a non-leaf h runs only the nodes between y and h, so a
    graph below h freed by an earlier backward is no obstacle, and none of it runs."""
    ran = []

    class Spy(Function):
        double_backward = "linear"

        def forward(ctx, x):
            return x * 1.0

        def backward(ctx, gy):
            ran.append(True)
            return gy

    x = leaf(3)
    h = Spy.apply(x) * 2.0
    (h * h * upstream((3,))).sum().backward()      # frees the graph below h
    ran.clear()
    gy = upstream((3,))
    (g,) = td.autograd.grad((h * gy).sum(), h)
    np.testing.assert_array_equal(g.numpy(), gy.numpy())
    assert not ran
    (gx, gh) = td.autograd.grad((Spy.apply(x) * 2.0 * x).sum(), [x, Spy.apply(x)], allow_unused=True)
    assert gh is None and ran                       # x lies below Spy: it ran for x


def test_a_copy_of_a_graph_hands_no_gradient_to_the_original():
    import copy
    import pickle
    x = leaf(2, 3)
    h = x * 2.0
    h.retain_grad()
    h2 = copy.deepcopy(h)
    (h2 * upstream((2, 3))).sum().backward()
    assert h.grad is None
    assert pickle.loads(pickle.dumps(h * 3.0)).shape == (2, 3)


def test_autograd_grad_errors_and_scalar_default():
    x = td.tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    y = (x * x).sum()
    with pytest.raises(RuntimeError, match="not used in the graph"):
        td.autograd.grad(y, [x, td.tensor(np.ones(2), requires_grad=True)], retain_graph=True)
    (gx,) = td.autograd.grad(y, x, retain_graph=True)                 # scalar output: upstream 1
    np.testing.assert_allclose(gx.numpy(), [2.0, 4.0, 6.0])
    with pytest.raises(RuntimeError, match="scalar outputs"):
        td.autograd.grad(x * 2.0, x)
    (gx,) = td.autograd.grad(y, x, retain_graph=True)
    np.testing.assert_allclose(gx.numpy(), [2.0, 4.0, 6.0])


# ---------------------------------------------------------------- create_graph (second derivatives)
@pytest.mark.filterwarnings("ignore:Using backward\\(\\) with create_graph=True:UserWarning")
def test_backward_with_create_graph_gives_a_differentiable_grad_as_torch():
    x0 = np.array([0.3, -1.2, 2.0])
    grads = {}
    for lib in (td, torch):
        x = lib.tensor(x0, requires_grad=True)
        y = (x * x).tanh() * x.exp()
        y.backward(lib.tensor(np.ones(3)), create_graph=True)
        g = x.grad
        assert g.requires_grad                        # the gradient is itself recorded
        x.grad = None
        g.backward(lib.tensor(np.array([1.0, 0.5, -2.0])))
        grads[lib.__name__] = x.grad.detach().numpy()
    np.testing.assert_allclose(grads["tinydl"], grads["torch"], rtol=1e-12)


def test_newtons_method_with_second_derivatives():
    """x <- x - f'(x) / f''(x) on f(x) = exp(x) - 3x (elementwise), to x = log 3."""
    x = td.tensor(np.array([0.0, 2.0, -1.0]), requires_grad=True)
    ones = td.tensor(np.ones(3))
    for _ in range(25):
        (d1,) = td.autograd.grad(x.exp() - x * 3.0, x, grad_outputs=ones, create_graph=True)
        (d2,) = td.autograd.grad(d1, x, grad_outputs=ones)
        x = td.tensor(x.detach().numpy() - d1.detach().numpy() / d2.numpy(), requires_grad=True)
    np.testing.assert_allclose(x.detach().numpy(), np.log(3.0), rtol=1e-12)


def test_create_graph_through_an_op_without_a_differentiable_backward_says_so():
    class Cube(Function):          # a user's op that declares no double_backward
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x ** 3

        def backward(ctx, gy):
            x, = ctx.saved_tensors
            return gy * 3 * x ** 2

    a = td.tensor(np.ones((2, 3)), requires_grad=True)
    y = Cube.apply(a.exp())
    with pytest.raises(NotImplementedError, match="the backward of Cube is not differentiable"):
        td.autograd.grad(y, a, grad_outputs=td.tensor(np.ones((2, 3))), create_graph=True)


def test_hessian_vector_product_matches_torch():
    """H v of a scalar loss through elementwise ops, sum and mean: grad of <grad, v>."""
    rng = np.random.default_rng(12)
    w0, x0, v0 = (rng.standard_normal((3, 4)) for _ in range(3))
    results = []
    for lib in (td, torch):
        x, w = lib.tensor(x0, requires_grad=True), lib.tensor(w0)
        loss = ((x * w).tanh() * x).sum() + (x * x).mean(1).sum()
        (g,) = lib.autograd.grad(loss, x, create_graph=True)
        (hv,) = lib.autograd.grad(g, x, grad_outputs=lib.tensor(v0))
        results.append(hv.detach().numpy())
    np.testing.assert_allclose(results[0], results[1], rtol=1e-12, atol=1e-12)


def test_gradient_penalty_as_wgan_gp_matches_torch():
    """WGAN-GP's penalty mean((|d critic(x)/dx| - 1)^2) backpropagated into the critic's weights."""
    rng = np.random.default_rng(13)
    x0 = rng.standard_normal((5, 3))
    w1, b1, w2 = rng.standard_normal((4, 3)), rng.standard_normal(4), rng.standard_normal((1, 4))
    grads = []
    for lib, functional in ((td, td.nn.functional), (torch, torch.nn.functional)):
        p1, q1, p2 = (lib.tensor(a, requires_grad=True) for a in (w1, b1, w2))
        x = lib.tensor(x0, requires_grad=True)
        critic = functional.linear(functional.linear(x, p1, q1).tanh(), p2)
        (gx,) = lib.autograd.grad(critic.sum(), x, create_graph=True)
        penalty = (((gx * gx).sum(1).sqrt() - 1.0) * ((gx * gx).sum(1).sqrt() - 1.0)).mean()
        penalty.backward()
        grads.append([t.grad.detach().numpy() for t in (p1, q1, p2)])
    for ours, theirs in zip(*grads):
        np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)


def test_data_is_a_tensor_over_the_same_array_outside_the_graph_as_torch():
    """``.data``: same storage, no grad, and a version counter of its own (so autograd does
    not see changes made through it); the setter swaps the storage. Both libraries."""
    for lib in (td, torch):
        w = lib.tensor([1.0, 2.0], requires_grad=True)
        y = (w * w).sum()
        d = w.data
        assert type(d) is type(w) and d.grad_fn is None and not d.requires_grad
        d.mul_(10)
        assert w.tolist() == [10.0, 20.0]
        y.backward()                           # autograd did not see the change: no error,
        assert w.grad.tolist() == [20.0, 40.0]  # and the saved w is the changed one
        w.data = lib.tensor([5.0, 6.0])
        assert w.tolist() == [5.0, 6.0] and w.requires_grad
    t = td.tensor([1.0, 2.0])
    assert np.shares_memory(t.data.array, t.array)
    with pytest.raises(TypeError, match="must be a Tensor"):
        t.data = np.zeros(2)


def test_in_place_arithmetic_as_torch():
    for lib in (td, torch):
        t = lib.tensor([1.0, 2.0])
        t.add_(lib.tensor([1.0, 1.0]), alpha=2).sub_(1).mul_(3).div_(2)
        assert t.tolist() == [3.0, 4.5]
    w = td.tensor([1.0], requires_grad=True)
    with pytest.raises(RuntimeError, match=r"add_: the tensor is \(a view of\) a leaf that requires grad"):
        w.add_(1)


def test_an_output_that_views_fresh_memory_is_not_taken_for_saved():
    """An op may return a view of an array it made (a transpose of its product): that output
    is not something it saved, so an in-place change of it must not refuse the backward."""
    class TransposedProduct(Function):
        def forward(ctx, a, b):
            ctx.save_for_backward(a, b)
            return (b.T @ a.T).T                 # a view of a fresh array

        def backward(ctx, gy):
            a, b = ctx.saved_tensors
            return gy @ b.T, a.T @ gy

    rng = np.random.default_rng(0)
    a = td.tensor(rng.standard_normal((3, 4)), requires_grad=True)
    b = td.tensor(rng.standard_normal((4, 2)), requires_grad=True)
    y = TransposedProduct.apply(a, b)
    assert y.array.base is not None
    z = td.nn.functional.relu(y, inplace=True)
    z.backward(td.tensor(rng.standard_normal((3, 2))))
    assert a.grad is not None and b.grad is not None


@pytest.mark.parametrize("name", ["softplus", "logsigmoid", "mish", "binary_cross_entropy_with_logits"])
def test_recorded_gradients_of_the_softplus_family_at_zero_match_torch(name):
    """create_graph through the composites that use softplus_recorded, at inputs that are
    exactly 0 (a Newton step from w = 0): a |v| or max(v, 0) there would give the wrong
    first derivative (0 or 1 instead of sigmoid(0) = 1/2)."""
    import tinydl.nn.functional as F
    values = np.array([-2.0, 0.0, 0.0, 1.5])

    def loss(lib, functional, x):
        if name == "binary_cross_entropy_with_logits":
            return functional.binary_cross_entropy_with_logits(x, lib.tensor(np.array([0.0, 1.0, 0.3, 1.0])))
        return getattr(functional, name)(x).sum()
    results = []
    for lib, functional in ((td, F), (torch, torch.nn.functional)):
        x = lib.tensor(values, requires_grad=True)
        g, = lib.autograd.grad(loss(lib, functional, x), x, create_graph=True)
        h, = lib.autograd.grad((g * g).sum(), x)
        results.append([t.detach().numpy() for t in (g, h)])
    for ours, theirs in zip(*results):
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)


def test_no_two_grads_share_memory_and_every_grad_is_a_plain_array():
    """Backward hands one array (or views of it) to several leaves: add's gy to both
    operands, stack's slices, reshape's views, the seed itself. Each .grad gets memory of
    its own, writeable and C-contiguous, so changing one in place changes no other."""
    rng = np.random.default_rng(0)
    a, b, c = (td.tensor(rng.standard_normal((2, 3)), requires_grad=True) for _ in range(3))
    seed = td.tensor(rng.standard_normal(6))
    (a.reshape(6) + b.reshape(6)).backward(seed)                 # two views of the seed
    td.stack([a, c]).backward(td.tensor(rng.standard_normal((2, 2, 3))))   # slices of one gy
    x = td.tensor(rng.standard_normal((3, 2)), requires_grad=True)
    (x.T * 2).backward(td.tensor(rng.standard_normal((2, 3))))    # a transposed view of a fresh array
    s = td.tensor(rng.standard_normal(4), requires_grad=True)
    td.nn.functional.mse_loss(s, td.tensor(np.zeros(4))).backward()
    grads = [a.grad.array, b.grad.array, c.grad.array, x.grad.array, s.grad.array]
    for i, g in enumerate(grads):
        assert g.flags.writeable and g.flags.c_contiguous, i
        assert not np.shares_memory(g, seed.array), i
        for h in grads[i + 1:]:
            assert not np.shares_memory(g, h)
    before = b.grad.array.copy()
    a.grad.array += 1
    np.testing.assert_array_equal(b.grad.array, before)


def test_a_grad_that_is_a_slice_does_not_keep_the_whole_buffer():
    """cat's backward hands each input a slice of one gradient: a small input's .grad is
    a copy of its slice, not a view that would keep the big buffer alive."""
    small, big = td.tensor(np.ones(3), requires_grad=True), td.tensor(np.ones(100_000), requires_grad=True)
    (td.cat([small, big]) * 2).backward(td.tensor(np.ones(100_003)))
    for t in (small, big):
        g = t.grad.array
        owner = g if g.base is None else g.base
        assert owner.nbytes == g.nbytes


def test_tensor_hooks_as_torch():
    """register_hook: a hook sees the whole gradient of its tensor (the sum over every path),
    what it returns replaces it, handle.remove() takes it away; leaves' hooks run before
    the sum goes into .grad; autograd.grad runs them too. Every case through PyTorch."""
    torch = pytest.importorskip("torch")

    def case(lib):
        seen = []
        x = lib.tensor([1.0, -2.0, 3.0], dtype=lib.float64, requires_grad=True)
        w = lib.tensor([0.5, 0.25, -1.0], dtype=lib.float64, requires_grad=True)
        h = x * w
        h.register_hook(lambda g: seen.append(("h", g.tolist())))
        doubling = h.register_hook(lambda g: g * 2)
        (h * h + h).backward(lib.tensor([1.0, 2.0, 3.0], dtype=lib.float64), retain_graph=True)   # h reached twice
        x.register_hook(lambda g: seen.append(("x", g.tolist())))
        w.register_hook(lambda g: g * 10)
        (h * h + h).backward(lib.tensor([0.5, -1.0, 2.0], dtype=lib.float64), retain_graph=True)
        first = x.grad.tolist(), w.grad.tolist()
        doubling.remove()
        x.grad = w.grad = None
        (h * x).backward(lib.tensor([1.5, 1.0, -0.5], dtype=lib.float64))
        gw, = lib.autograd.grad((w * w * 3).sum(), w)
        k = w * 3
        k.register_hook(lambda g: g + 1)
        gk, = lib.autograd.grad((k * k).sum(), k)
        return first, x.grad.tolist(), w.grad.tolist(), gw.tolist(), gk.tolist(), seen
    assert case(td) == case(torch)
    with pytest.raises(RuntimeError, match="does not require grad"):
        td.ones(2).register_hook(print)
    y = td.ones(2, requires_grad=True) * 2
    y.register_hook(lambda g: td.ones(3))
    with pytest.raises(RuntimeError, match="must return None or a Tensor of that shape"):
        y.sum().backward()


def test_no_grad_decorates_a_generator_resume_by_resume():
    """Each resume of a decorated generator runs without recording; between them the caller
    records (PyTorch's behaviour); send, throw and close reach the generator."""
    w = td.tensor([2.0], requires_grad=True)
    seen = []

    @td.no_grad
    def batches(n):
        for i in range(n):
            seen.append(td.is_grad_enabled())
            got = yield w * i
            if got is not None:
                seen.append(got)
        return "done"

    gen = batches(3)
    first = next(gen)
    assert td.is_grad_enabled() and not first.requires_grad
    assert (w * 3).requires_grad                       # the caller still records
    assert gen.send("hi").requires_grad is False
    assert seen == [False, "hi", False]
    with td.enable_grad():
        assert not next(gen).requires_grad and td.is_grad_enabled()
    with pytest.raises(StopIteration) as stop:
        next(gen)
    assert stop.value.value == "done" and td.is_grad_enabled()

    @td.enable_grad()
    def recording():
        try:
            yield w * 2
        except KeyError:
            yield w * 3

    with td.no_grad():
        gen = recording()
        assert next(gen).requires_grad and not td.is_grad_enabled()
        assert gen.throw(KeyError("k")).requires_grad and not td.is_grad_enabled()
        gen.close()
    assert td.is_grad_enabled()
