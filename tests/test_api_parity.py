"""Small parts of PyTorch's API that users write every day, each run through PyTorch too:
dtype arguments and names, float functions of integer tensors, where with numbers, the
regression losses with an integer target, randint's two forms, as_tensor's sharing."""
import numpy as np
import pytest

import tinydl as td
import tinydl.nn.functional as F

torch = pytest.importorskip("torch")
import torch.nn.functional as TF  # noqa: E402


def _dtype(x):
    return str(x.dtype).replace("torch.", "")


@pytest.mark.parametrize("make", [
    lambda lib: lib.zeros(2, dtype=float), lambda lib: lib.ones(2, dtype=int), lambda lib: lib.zeros(2, dtype=bool),
    lambda lib: lib.tensor([1, 2], dtype=float), lambda lib: lib.ones(2).to(float),
    lambda lib: lib.zeros(2, dtype=lib.float), lambda lib: lib.zeros(2, dtype=lib.half),
    lambda lib: lib.zeros(2, dtype=lib.int), lambda lib: lib.zeros(2, dtype=lib.short),
    lambda lib: lib.zeros(2, dtype=lib.bool), lambda lib: lib.zeros(2, dtype=lib.double),
    lambda lib: lib.zeros(2, dtype=lib.long),
])
def test_dtype_arguments_and_names(make):
    assert _dtype(make(td)) == _dtype(make(torch))


@pytest.mark.parametrize("fn", ["exp", "log", "sqrt", "sigmoid", "tanh"])
@pytest.mark.parametrize("dtype", ["int64", "int32", "uint8", "bool"])
def test_float_functions_of_integer_tensors_are_float32(fn, dtype):
    values = np.array([1, 4, 0], dtype=dtype)
    got, want = getattr(td.tensor(values), fn)(), getattr(torch.tensor(values), fn)()
    assert _dtype(got) == _dtype(want) == "float32"
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6)
    assert _dtype(F.logsigmoid(td.tensor(values))) == _dtype(TF.logsigmoid(torch.tensor(values).float()))


@pytest.mark.parametrize("a,b", [(1.0, 0.0), (1, 0), (True, False), (2, 0.5)])
def test_where_with_two_numbers(a, b):
    mask = np.array([True, False, True])
    got, want = td.where(td.tensor(mask), a, b), torch.where(torch.tensor(mask), a, b)
    assert _dtype(got) == _dtype(want)
    np.testing.assert_array_equal(got.numpy(), want.numpy())


@pytest.mark.parametrize("loss", ["mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss"])
@pytest.mark.parametrize("target_dtype", ["int64", "float64"])
def test_regression_losses_promote_input_and_target_as_torch(loss, target_dtype):
    rng = np.random.default_rng(0)
    x, t = rng.standard_normal(5).astype(np.float32), rng.integers(-2, 3, 5).astype(target_dtype)
    xt, xs = td.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    got, want = getattr(F, loss)(xt, td.tensor(t)), getattr(TF, loss)(xs, torch.tensor(t))
    assert _dtype(got) == _dtype(want)
    np.testing.assert_allclose(got.item(), want.item(), rtol=1e-6)
    got.backward()
    if loss == "huber_loss":
        return                  # PyTorch's backward refuses another target dtype ("Found dtype Long/Double")
    want.backward()
    assert xt.grad.dtype == np.float32
    np.testing.assert_allclose(xt.grad.numpy(), xs.grad.numpy(), rtol=1e-5)


def test_randint_high_and_size_or_low_high_and_size():
    td.manual_seed(0)
    a = td.randint(10, (3, 2))
    b = td.randint(5, 7, (4,))
    assert a.shape == tuple(torch.randint(10, (3, 2)).shape) and _dtype(a) == "int64"
    assert 0 <= a.numpy().min() and a.numpy().max() < 10
    assert b.shape == (4,) and set(b.tolist()) <= {5, 6}


def test_as_tensor_shares_an_arrays_memory_and_copies_when_it_must():
    for lib in (td, torch):
        a = np.zeros(3, np.float32)
        lib.as_tensor(a)[0] = 5.0                           # shared
        lib.as_tensor(a, dtype=lib.float64)[1] = 7.0        # another dtype: a copy
        assert a.tolist() == [5.0, 0.0, 0.0]
        t = lib.tensor([1.0])
        assert lib.as_tensor(t) is t


@pytest.mark.parametrize("correction", [0.5, 2, 0, 1.5])
def test_var_and_std_take_a_float_correction(correction):
    x = np.array([1.0, 2.0, 4.0, 7.0])
    for fn in ("var", "std"):
        got = getattr(td.tensor(x), fn)(correction=correction)
        want = getattr(torch.tensor(x), fn)(correction=correction)
        np.testing.assert_allclose(got.item(), want.item(), rtol=1e-12)


def test_view_shares_memory_or_refuses_as_torch():
    for lib in (td, torch):
        x = lib.tensor(np.arange(6.0).reshape(2, 3))
        v = x.view(3, 2)
        v[0, 0] = 9.0
        assert x[0, 0].item() == 9.0
        with pytest.raises(RuntimeError, match="view size is not compatible"):
            x.t().view(-1)
        assert x.t().reshape(-1).shape == (6,)


def test_batch_norm_loads_a_checkpoint_without_num_batches_tracked():
    for lib in (td, torch):
        bn = lib.nn.BatchNorm2d(3)
        state = {k: v for k, v in bn.state_dict().items() if k != "num_batches_tracked"}
        state["running_mean"] = lib.ones(3)
        bn.load_state_dict(state)
        assert bn.running_mean.tolist() == [1.0, 1.0, 1.0] and bn.num_batches_tracked.item() == 0   # its own count


def test_sum_and_mean_take_a_dtype_and_an_empty_list_indexes_nothing():
    x = np.arange(6).reshape(3, 2)
    for fn, dtype in (("sum", "float32"), ("mean", "float64"), ("sum", "int32")):
        got = getattr(td.tensor(x), fn)(dtype=getattr(td, dtype))
        want = getattr(torch.tensor(x), fn)(dtype=getattr(torch, dtype))
        assert _dtype(got) == _dtype(want) and got.item() == want.item()
    assert td.tensor(x)[[]].shape == tuple(torch.tensor(x)[[]].shape) == (0, 2)


METHODS = {
    "pow": lambda lib, x: x.pow(2),
    "masked_fill": lambda lib, x: x.masked_fill(x > 0.5, -1.0),
    "gather": lambda lib, x: x.gather(1, lib.tensor([[0, 0, 2], [1, 2, 0]])),
    "index_select": lambda lib, x: x.index_select(1, lib.tensor([2, 0])),
    "flip": lambda lib, x: x.flip([0, 1]),
    "roll": lambda lib, x: x.roll(1, 1),
    "narrow": lambda lib, x: x.narrow(1, 1, 2),
    "unbind": lambda lib, x: lib.stack([t * (k + 1) for k, t in enumerate(x.unbind(1))]),
    "td_softmax": lambda lib, x: lib.softmax(x, 1),
    "td_gather": lambda lib, x: lib.gather(x, 0, lib.tensor([[1, 0, 1]])),
}


@pytest.mark.parametrize("name", sorted(METHODS))
def test_tensor_methods_and_functions_match_torch_with_gradients(name):
    rng = np.random.default_rng(3)
    x0 = rng.uniform(0, 1, (2, 3))
    outs, grads = [], []
    for lib in (td, torch):
        x = lib.tensor(x0, requires_grad=True)
        y = METHODS[name](lib, x)
        y.backward(lib.tensor(np.linspace(-1, 1, y.numel()).reshape(tuple(y.shape))))
        outs.append(y.detach().numpy())
        grads.append(x.grad.numpy())
    np.testing.assert_allclose(outs[0], outs[1], rtol=1e-12)
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-12)


def test_value_tests_match_torch():
    x0 = np.array([[1.0, np.nan, np.inf], [0.0, -np.inf, 2.0]], np.float32)
    for name in ("isnan", "isinf", "isfinite"):
        got, want = getattr(td.tensor(x0), name)(), getattr(torch.tensor(x0), name)()
        np.testing.assert_array_equal(got.numpy(), want.numpy())
        np.testing.assert_array_equal(getattr(td, name)(td.tensor(x0)).numpy(), want.numpy())
        for reduce, args in (("all", ()), ("any", ()), ("all", (1,)), ("any", (0, True))):
            g, w = getattr(got, reduce)(*args), getattr(want, reduce)(*args)
            assert _dtype(g) == _dtype(w) and g.tolist() == w.tolist()
    assert td.tensor(x0).is_floating_point() and not td.tensor([1]).is_floating_point()
    assert td.is_tensor(td.tensor(x0)) and not td.is_tensor(x0)
    assert _dtype(td.tensor([1, 2]).masked_fill(td.tensor([True, False]), 5)) == "int64"


def test_contiguous_copies_a_strided_layout_so_view_works():
    for lib in (td, torch):
        x = lib.tensor(np.arange(24.0).reshape(2, 3, 4))
        y = x.transpose(1, 2).contiguous().view(2, -1)
        assert tuple(y.shape) == (2, 12) and y[0, :3].tolist() == [0.0, 4.0, 8.0]
        assert x.contiguous() is x


def test_autograd_grad_keeps_a_seed_of_another_dtype_in_the_graph():
    grads = []
    for lib in (td, torch):
        x = lib.tensor([1.0, 2.0], requires_grad=True)            # float32
        seed = lib.tensor(np.array([1.0, 1.0]), requires_grad=True)   # float64
        gx, = lib.autograd.grad(x * x, x, seed, create_graph=True)
        gs, = lib.autograd.grad((gx * lib.tensor([0.6, -1.4])).sum(), seed)
        grads.append((_dtype(gx), gs.tolist()))
    assert grads[0] == grads[1]


def _same(case):
    """``case(lib)`` in tinydl and PyTorch: the same result, or the same kind of refusal."""
    results = []
    for lib in (td, torch):
        try:
            results.append(case(lib))
        except Exception as exc:            # noqa: BLE001 (the refusal's kind is compared)
            results.append(("refused", type(exc).__name__))
    assert results[0] == results[1], f"tinydl {results[0]}, PyTorch {results[1]}"


def test_grad_mode_switches_as_torch():
    """set_grad_enabled(False) called alone switches recording off at once (an evaluation
    script's first line); no_grad and enable_grad decorate with or without parentheses."""
    def case(lib):
        x = lib.ones(2, requires_grad=True)
        seen = []
        lib.set_grad_enabled(False)
        seen.append((x * 2).requires_grad)
        lib.set_grad_enabled(True)
        seen.append((x * 2).requires_grad)

        @lib.no_grad
        def bare(x):
            return (x * 2).requires_grad

        @lib.set_grad_enabled(False)
        def switched(x):
            return (x * 2).requires_grad
        seen += [bare(x), switched(x), (x * 2).requires_grad]
        with lib.no_grad():
            @lib.enable_grad
            def on(x):
                return (x * 2).requires_grad
            seen += [on(x), (x * 2).requires_grad]
        with lib.set_grad_enabled(False):
            seen.append((x * 2).requires_grad)
        return seen + [(x * 2).requires_grad]
    _same(case)


@pytest.mark.parametrize("case", [
    lambda lib: _dtype(lib.arange(lib.tensor(3))),
    lambda lib: lib.arange(5, 0, -1).tolist(),
    lambda lib: lib.arange(10, 1),
    lambda lib: lib.arange(0, 3, 0),
    lambda lib: lib.arange(0.0, 1.0, 0.25).tolist(),
    lambda lib: lib.linspace(-1.5, 2.5, 9).tolist(),
    lambda lib: lib.linspace(0, 10, 4, dtype=lib.int64).tolist(),
    lambda lib: ((lib.arange(4) > 1) ^ (lib.arange(4) > 2)).tolist(),
    lambda lib: (True & (lib.arange(4) > 1)).tolist(),
    lambda lib: (False | (lib.arange(4) > 2)).tolist(),
    lambda lib: (lib.tensor([5, 6]) << 2).tolist() + (lib.tensor([5, 6]) >> 1).tolist(),
    lambda lib: lib.ones(2) & lib.ones(2),
    lambda lib: (lib.tensor([1, 2], dtype=lib.uint8) * -1).tolist(),
    lambda lib: (lib.tensor([1], dtype=lib.int8) + 200).tolist(),
    lambda lib: lib.ones(2).add(lib.ones(2), alpha=2).tolist() + lib.ones(2).sub(lib.ones(2), alpha=3).tolist(),
    lambda lib: lib.tensor([-5.0, 5.0, -4.5, 7.0]).div(2, rounding_mode="floor").tolist(),
    lambda lib: lib.tensor([-5.0, 5.0, 7.5]).div(0.1, rounding_mode="trunc").tolist(),
    lambda lib: lib.tensor([-5, 5, -4, 7]).div(lib.tensor([2, -2, 2, -3]), rounding_mode="trunc").tolist(),
    lambda lib: (lambda x: (x.to(lib.float32, copy=True) is x, x.to(lib.float32) is x))(lib.ones(2)),
    lambda lib: lib.ones(2).to(dtpye=lib.float64),
    lambda lib: tuple(lib.cat([lib.tensor([]), lib.ones(2, 3)]).shape),
    lambda lib: (lambda e, x: (lib.cat([e, x]).backward(lib.ones(2)), tuple(e.grad.shape))[1])(
        lib.zeros(0, requires_grad=True), lib.ones(2, requires_grad=True)),      # 1-d with 1-d: a plain join
    lambda lib: lib.where(lib.tensor([1, 0]), lib.ones(2), lib.zeros(2)),
    lambda lib: list(lib.tensor(1.0)),
    lambda lib: [row.tolist() for row in lib.ones(2, 2)],
    lambda lib: _dtype(lib.tensor([1, 0], dtype=lib.uint8).all()),
    lambda lib: (2 << lib.tensor([1, 3])).tolist() + (64 >> lib.tensor([1, 3])).tolist(),
    lambda lib: lib.isclose(lib.tensor([2 ** 30 + 1]), lib.tensor([2 ** 30]), rtol=0, atol=0).tolist(),
    lambda lib: lib.take_along_dim(lib.tensor([[1.0, 2.0, 3.0]]), lib.tensor([[-1, 0]]), 1).tolist(),
    lambda lib: lib.tensor([float("nan"), -2.0, 0.0]).sign().tolist()[1:] + [
        float(lib.tensor([float("nan")]).sign()[0])],
    lambda lib: (lambda a: (a.diagonal().add_(1), a.tolist())[1])(lib.zeros(3, 3)),
    lambda lib: lib.linspace(0.0, 5.0, 1).tolist(),
    lambda lib: [float(f(lib.tensor(np.full(n, v, np.float16)))) for f, n, v in (
        (lambda t: t.mean(), 1000, 100.0), (lambda t: t.mean(), 70000, 1.0),
        (lambda t: t.var(), 1000, 300.0), (lambda t: t.reshape(500, 2).mean(0)[0], 1000, 100.0))],
])
def test_small_api_corners_as_torch(case):
    _same(case)


def test_pow_gradients_at_zero_and_negative_bases_as_torch():
    """dL/da is 0 where the exponent is 0 (x ** 0 at x = 0); dL/db is 0 where a == 0 and
    b >= 0, NaN for a < 0 and -inf for 0 ** negative (log(a) there), as PyTorch's."""
    rng = np.random.default_rng(3)

    def case(lib):
        a = lib.tensor([-2.0, 0.0, 0.0, 3.0, 0.0], dtype=lib.float64, requires_grad=True)
        b = lib.tensor([2.0, -1.0, 0.0, 0.5, 2.0], dtype=lib.float64, requires_grad=True)
        x = lib.tensor([0.0, 2.0], dtype=lib.float64, requires_grad=True)
        (a ** b).backward(lib.tensor(rng.standard_normal(5)))
        (x ** 0).backward(lib.tensor([0.7, -1.3], dtype=lib.float64))
        return [np.round(t.grad.tolist(), 12).tolist() for t in (a, b, x)]
    with np.errstate(all="ignore"):
        got = [np.array(v) for v in (case(td))]
        rng = np.random.default_rng(3)
        want = [np.array(v) for v in (case(torch))]
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("op", ["sum", "mean", "var", "std", "logsumexp"])
def test_float32_reductions_over_a_leading_dim_are_as_accurate_as_torch(op):
    """NumPy adds row after row in float32 along a leading dim (a 1% error over a million
    rows); tinydl sums there in float64, as close to the exact value as PyTorch's."""
    a = np.full((10 ** 6, 2), [0.1, 1.1], dtype=np.float32)
    exact = getattr(torch.tensor(a, dtype=torch.float64), op)(0).numpy()
    got = getattr(td.tensor(a), op)(0).numpy()
    want = getattr(torch.tensor(a), op)(0).numpy()
    assert got.dtype == np.float32
    assert np.abs(got - exact).max() <= max(np.abs(want - exact).max(), 1e-6 * np.abs(exact).max())
    half = np.full((10000, 2), 0.1, np.float16)
    np.testing.assert_allclose(td.tensor(half).sum(0).numpy(), torch.tensor(half).sum(0).numpy(), rtol=1e-3)


def test_a_second_backward_adds_into_the_same_grad_and_a_wrong_grad_is_refused():
    def case(lib):
        x = lib.ones(3, requires_grad=True)
        (x * 2).backward(lib.tensor([1.0, -2.0, 0.5]))
        kept = x.grad
        (x * 3).backward(lib.tensor([0.25, 1.0, -1.0]))
        refused = []
        for bad in (lib.ones(4), lib.ones(1), lib.ones(3, dtype=lib.float64)):
            try:
                x.grad = bad
                refused.append(False)
            except RuntimeError:
                refused.append(True)
        return kept.tolist(), kept is x.grad, refused
    _same(case)


@pytest.mark.parametrize("make", [
    lambda lib, p: lib.optim.Adam(p, foreach=False), lambda lib, p: lib.optim.AdamW(p, fused=False),
    lambda lib, p: lib.optim.SGD(p, lr=0.1, fused=None, foreach=False),
    lambda lib, p: lib.optim.RMSprop(p, foreach=False, capturable=False),
    lambda lib, p: lib.optim.Adagrad(p, foreach=False, fused=None), lambda lib, p: lib.optim.Adadelta(p, foreach=False),
    lambda lib, p: lib.optim.Adam(p, lr=float("nan")), lambda lib, p: lib.optim.Adam(p, foreach=True, fused=True),
])
def test_optimizers_take_torchs_implementation_flags(make):
    _same(lambda lib: type(make(lib, [lib.ones(2, requires_grad=True)])).__name__)


def test_grads_that_are_not_backwards_own_memory_are_never_added_into():
    """Only a .grad whose memory backward made for it alone is added into in place: not one
    create_graph stored (two leaves may share it), nor the user's seed, nor a tensor a hook
    returned, nor one assigned by hand."""
    def case(lib):
        x = lib.tensor([1.0, 2.0, 3.0], dtype=lib.float64, requires_grad=True)
        w = lib.tensor([1.0, 2.0, 3.0], dtype=lib.float64, requires_grad=True)
        ((x + w) * lib.tensor([5.0, 6.0, 7.0], dtype=lib.float64)).sum().backward(create_graph=True)
        (x * 3).sum().backward()
        seed = lib.tensor([1.0, 1.0, 1.0], dtype=lib.float64)
        u = lib.tensor([1.0, 2.0, 3.0], dtype=lib.float64, requires_grad=True)
        (u + 0).backward(seed, create_graph=True)
        (u * 2).sum().backward()
        fixed = lib.tensor([10.0, 10.0, 10.0], dtype=lib.float64)
        v = lib.tensor([1.0, 2.0, 3.0], dtype=lib.float64, requires_grad=True)
        v.register_hook(lambda g: fixed)
        (v * 2).sum().backward()
        (v * 2).sum().backward()
        mine = lib.ones(3, dtype=lib.float64)
        z = lib.tensor([1.0, 2.0, 3.0], dtype=lib.float64, requires_grad=True)
        z.grad = mine
        (z * 4).sum().backward()
        return [t.tolist() for t in (w.grad.detach(), seed, fixed, x.grad.detach(), u.grad.detach(), mine)]
    _same(case)


def test_gradcheck_leaves_the_inputs_grad_as_it_was():
    x = td.tensor([0.2, 0.5], dtype=td.float64, requires_grad=True)
    x.grad = td.ones(2, dtype=td.float64)
    assert td.gradcheck(lambda t: t.exp(), (x,))
    assert x.grad.tolist() == [1.0, 1.0]


@pytest.mark.parametrize("shape, groups", [((6, 3, 3, 3), 1), ((8, 2, 3), 2), ((4, 4, 1, 3, 3), 1), ((6, 2, 2, 2), 3)])
def test_init_dirac_as_torch(shape, groups):
    ours, theirs = td.empty(*shape), torch.empty(*shape)
    td.nn.init.dirac_(ours, groups)
    torch.nn.init.dirac_(theirs, groups)
    np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


def test_init_sparse_zeroes_a_fraction_of_each_column_and_both_refuse_bad_shapes():
    w = td.empty(200, 40)
    td.nn.init.sparse_(w, 0.3, std=0.5)
    a = w.numpy()
    assert ((a == 0).sum(0) == 60).all() and abs(a[a != 0].std() - 0.5) < 0.05
    _same(lambda lib: lib.nn.init.sparse_(lib.empty(3, 3, 3), 0.1))
    _same(lambda lib: lib.nn.init.dirac_(lib.empty(3, 3)))
    _same(lambda lib: lib.nn.init.dirac_(lib.empty(5, 3, 3), 2))


@pytest.mark.parametrize("name, shape", [("Dropout1d", (16, 32, 20)), ("Dropout3d", (8, 32, 2, 3, 4)),
                                         ("AlphaDropout", (8, 500)), ("FeatureAlphaDropout", (16, 32, 6, 6))])
def test_the_other_dropout_modules_as_torch(name, shape):
    """Their repr, the identity in eval mode, and in training the zeroed share and the pattern
    (whole channels for the 1d/3d and feature ones)."""
    x = np.random.default_rng(4).standard_normal(shape).astype(np.float32) + 3
    for lib in (td, torch):
        module = getattr(lib.nn, name)(p=0.25)
        assert repr(module) == f"{name}(p=0.25, inplace=False)"
        module.eval()
        np.testing.assert_array_equal(module(lib.tensor(x)).numpy(), x)
    td.manual_seed(0)
    y = getattr(td.nn, name)(p=0.25)(td.tensor(x)).numpy()
    dropped = y == (0 if "Alpha" not in name else y.min())
    assert 0.15 < dropped.mean() < 0.35
    if name != "AlphaDropout":          # a channel is dropped whole
        per_channel = dropped.reshape(shape[0], shape[1], -1)
        assert (per_channel.all(-1) | ~per_channel.any(-1)).all()


@pytest.mark.parametrize("fn", ["floor", "ceil", "round", "trunc", "sign"])
def test_rounding_gradients_are_zero_even_for_an_infinite_upstream(fn):
    def case(lib):
        x = lib.tensor([0.5, -1.5], dtype=lib.float64, requires_grad=True)
        getattr(x, fn)().backward(lib.tensor([float("inf"), float("nan")], dtype=lib.float64))
        return x.grad.tolist()
    _same(case)


@pytest.mark.parametrize("p", [2, 0.5, -1, 3])
def test_norm_second_derivative_at_zero_as_torch(p):
    """The restated norm (create_graph) keeps the first-order backward's zeros: a norm of 0,
    and for p < 1 the elements at 0 (no 0 * inf); away from those points its second
    derivative is PyTorch's. (At them PyTorch's is NaN; tinydl's 0.)"""
    def case(lib):
        x = lib.tensor([0.0, 0.0, 0.0] if p == 2 else [1.0, 0.0, 2.0], dtype=lib.float64, requires_grad=True)
        g, = lib.autograd.grad(x.norm(p), [x], create_graph=True)
        smooth = lib.tensor([1.0, -0.5, 2.0], dtype=lib.float64, requires_grad=True)
        h, = lib.autograd.grad(smooth.norm(p), [smooth], create_graph=True)
        (h * lib.tensor([0.3, -1.0, 2.0], dtype=lib.float64)).sum().backward()
        return np.round(g.tolist(), 10).tolist(), np.round(smooth.grad.tolist(), 10).tolist()
    with np.errstate(all="ignore"):
        _same(case)


@pytest.mark.parametrize("op", ["layer_norm", "group_norm", "instance_norm"])
def test_norms_of_an_empty_batch_backpropagate(op):
    def case(lib):
        F_ = lib.nn.functional
        x = lib.zeros(0, 4, 3, dtype=lib.float64, requires_grad=True)
        y = {"layer_norm": lambda: F_.layer_norm(x, (3,)), "group_norm": lambda: F_.group_norm(x, 2),
             "instance_norm": lambda: F_.instance_norm(x)}[op]()
        y.backward(lib.zeros(0, 4, 3, dtype=lib.float64))
        return tuple(x.grad.shape)
    _same(case)
