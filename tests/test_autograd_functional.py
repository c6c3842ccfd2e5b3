"""td.autograd.functional against torch.autograd.functional: values, return structures
(Tensor / tuple / tuple of tuples), create_graph results differentiated again, the user's
tensors left alone, strict-mode errors and bad-v errors. float64 throughout."""
import numpy as np
import pytest
import torch
import torch.autograd.functional as TF

import tinydl as td

F = td.autograd.functional
rng = np.random.default_rng(0)


# ------------------------------------------------------------------ functions, written once for both
# Each case: make(lib) -> func (constants built with lib.tensor), and the input shapes.
W = rng.standard_normal((4, 2))
X_DATA, Y_DATA = rng.standard_normal((5, 3)), rng.standard_normal((5, 2))


def elementwise(lib):
    return lambda x: x.tanh() * x.exp() + x ** 3


def matmul(lib):
    w = lib.tensor(W)
    return lambda x: (x @ w).tanh()


def two_in_two_out(lib):
    return lambda x, y: ((y @ x).exp(), (x * x).sum() * y.sigmoid())


def mlp_loss(lib):                  # the mean squared error of a 3-4-2 tanh MLP, a function of its weights
    data, target = lib.tensor(X_DATA), lib.tensor(Y_DATA)
    return lambda w1, b1, w2, b2: ((((data @ w1 + b1).tanh() @ w2 + b2) - target) ** 2).mean()


def scalar(lib):
    return lambda x: (x.tanh() * x.exp()).sum() + (x * x).sum() ** 2


def two_in_scalar(lib):
    return lambda x, y: ((y @ x).tanh() ** 2).sum() + (x ** 3).sum() * y.sum()


CASES = {                           # name: (make, input shapes, is the input a tuple)
    "elementwise": (elementwise, [(2, 3)], False),
    "matmul": (matmul, [(3, 4)], False),
    "two_in_two_out": (two_in_two_out, [(3,), (2, 3)], True),
    "mlp_loss": (mlp_loss, [(3, 4), (4,), (4, 2), (2,)], True),
    "scalar": (scalar, [(4,)], False),
    "two_in_scalar": (two_in_scalar, [(3,), (2, 3)], True),
}
SCALAR_CASES = ["mlp_loss", "scalar", "two_in_scalar"]


def arrays(shapes):
    return [rng.standard_normal(s) for s in shapes]


def pack(lib, arrs, as_tuple, requires_grad=False):
    ts = tuple(lib.tensor(a.copy(), requires_grad=requires_grad) for a in arrs)
    return ts if as_tuple else ts[0]


def assert_same(ours, theirs, path="result"):
    """Same nesting of tuples (a Tensor where PyTorch has a Tensor), shapes and values."""
    if isinstance(theirs, torch.Tensor):
        assert isinstance(ours, td.Tensor), f"{path}: {type(ours)}, PyTorch has a Tensor"
        assert ours.shape == tuple(theirs.shape), f"{path}: shape {ours.shape} vs {tuple(theirs.shape)}"
        assert ours.dtype == np.float64
        np.testing.assert_allclose(ours.detach().numpy(), theirs.detach().numpy(), rtol=1e-10, atol=1e-12,
                                   err_msg=path)
    else:
        assert isinstance(theirs, tuple) and isinstance(ours, tuple), f"{path}: {type(ours)} vs {type(theirs)}"
        assert len(ours) == len(theirs), f"{path}: {len(ours)} entries vs {len(theirs)}"
        for k, (a, b) in enumerate(zip(ours, theirs)):
            assert_same(a, b, f"{path}[{k}]")


def as_tuples(x):
    return tuple(map(as_tuples, x)) if isinstance(x, (list, tuple)) else x


def flat(x):
    return [x] if not isinstance(x, tuple) else [t for item in x for t in flat(item)]


def output_shapes(name, arrs):
    make, _, as_tuple = CASES[name]
    out = make(torch)(*[torch.tensor(a) for a in arrs])
    return [tuple(o.shape) for o in (out if isinstance(out, tuple) else (out,))], isinstance(out, tuple)


# ------------------------------------------------------------------ values and structures
@pytest.mark.parametrize("name", CASES)
def test_vjp(name):
    make, shapes, as_tuple = CASES[name]
    arrs = arrays(shapes)
    shapes_out, out_tuple = output_shapes(name, arrs)
    v = arrays(shapes_out)
    ours = F.vjp(make(td), pack(td, arrs, as_tuple), pack(td, v, out_tuple))
    theirs = TF.vjp(make(torch), pack(torch, arrs, as_tuple), pack(torch, v, out_tuple))
    assert_same(ours, theirs)
    assert not any(t.requires_grad for t in flat(ours))


@pytest.mark.parametrize("name", CASES)
def test_jvp(name):
    make, shapes, as_tuple = CASES[name]
    arrs, v = arrays(shapes), arrays(shapes)
    ours = F.jvp(make(td), pack(td, arrs, as_tuple), pack(td, v, as_tuple))
    theirs = TF.jvp(make(torch), pack(torch, arrs, as_tuple), pack(torch, v, as_tuple))
    assert_same(ours, theirs)


@pytest.mark.parametrize("vectorize", [False, True])
@pytest.mark.parametrize("name", CASES)
def test_jacobian(name, vectorize):
    make, shapes, as_tuple = CASES[name]
    arrs = arrays(shapes)
    ours = F.jacobian(make(td), pack(td, arrs, as_tuple), vectorize=vectorize)
    theirs = TF.jacobian(make(torch), pack(torch, arrs, as_tuple), vectorize=vectorize)
    assert_same(ours, theirs)


@pytest.mark.parametrize("name", CASES)
def test_jacobian_forward_mode(name):
    make, shapes, as_tuple = CASES[name]
    arrs = arrays(shapes)
    theirs = TF.jacobian(make(torch), pack(torch, arrs, as_tuple), vectorize=True, strategy="forward-mode")
    theirs = as_tuples(theirs)          # PyTorch's forward mode gives lists where its doc says tuples
    for vectorize in (True, False):     # (PyTorch refuses forward-mode without vectorize; we need none)
        ours = F.jacobian(make(td), pack(td, arrs, as_tuple), vectorize=vectorize, strategy="forward-mode")
        assert_same(ours, theirs)


@pytest.mark.parametrize("strategy", ["reverse-mode", "forward-mode"])
@pytest.mark.parametrize("name", SCALAR_CASES)
def test_hessian(name, strategy):
    make, shapes, as_tuple = CASES[name]
    arrs = arrays(shapes)
    ours = F.hessian(make(td), pack(td, arrs, as_tuple), outer_jacobian_strategy=strategy)
    theirs = as_tuples(TF.hessian(make(torch), pack(torch, arrs, as_tuple), vectorize=True,
                                  outer_jacobian_strategy=strategy))     # (lists again, from forward mode)
    assert_same(ours, theirs)


@pytest.mark.parametrize("fn", ["hvp", "vhp"])
@pytest.mark.parametrize("name", SCALAR_CASES)
def test_hvp_vhp(name, fn):
    make, shapes, as_tuple = CASES[name]
    arrs, v = arrays(shapes), arrays(shapes)
    ours = getattr(F, fn)(make(td), pack(td, arrs, as_tuple), pack(td, v, as_tuple))
    theirs = getattr(TF, fn)(make(torch), pack(torch, arrs, as_tuple), pack(torch, v, as_tuple))
    assert_same(ours, theirs)


def test_hvp_is_the_hessian_times_v():
    x, v = td.tensor(rng.standard_normal(4)), td.tensor(rng.standard_normal(4))
    H = F.hessian(scalar(td), x).numpy()
    np.testing.assert_allclose(F.hvp(scalar(td), x, v)[1].numpy(), H @ v.numpy(), rtol=1e-12)
    np.testing.assert_allclose(F.vhp(scalar(td), x, v)[1].numpy(), v.numpy() @ H, rtol=1e-12)


def test_v_may_be_left_out_for_one_element():
    f = lambda x: (x.exp() * x).sum()                                      # noqa: E731
    x, xt = td.tensor(np.array([0.3])), torch.tensor([0.3], dtype=torch.float64)
    for fn in ("vjp", "jvp", "hvp", "vhp"):
        assert_same(getattr(F, fn)(f, x), getattr(TF, fn)(f, xt))


# ------------------------------------------------------------------ the user's tensors, create_graph
@pytest.mark.parametrize("requires_grad", [False, True])
def test_user_tensors_untouched_and_results_detached(requires_grad):
    x = td.tensor(rng.standard_normal(4), requires_grad=requires_grad)
    v = td.tensor(rng.standard_normal(4))
    results = [F.vjp(scalar(td), x), F.jvp(scalar(td), x, v), F.jacobian(elementwise(td), x),
               F.hessian(scalar(td), x), F.hvp(scalar(td), x, v), F.vhp(scalar(td), x, v)]
    assert x.requires_grad is requires_grad and x.grad is None and x.grad_fn is None
    assert not v.requires_grad
    for t in flat(tuple(results)):
        assert not t.requires_grad and t.grad_fn is None


def weighted_sum(lib, result, weights):
    """A scalar of every Tensor in a (nested) result, to differentiate the result again."""
    return sum((t * lib.tensor(w)).sum() for t, w in zip(flat(result), weights))


CREATE_GRAPH = {                    # name: call(lib, functional module, inputs, v) with create_graph=True
    "vjp": lambda lib, M, xs, v: M.vjp(two_in_two_out(lib), xs, (v[0][:2], v[1]), create_graph=True),
    "jvp": lambda lib, M, xs, v: M.jvp(two_in_two_out(lib), xs, v, create_graph=True),
    "jacobian": lambda lib, M, xs, v: M.jacobian(two_in_two_out(lib), xs, create_graph=True),
    "hessian": lambda lib, M, xs, v: M.hessian(two_in_scalar(lib), xs, create_graph=True),
    "hvp": lambda lib, M, xs, v: M.hvp(two_in_scalar(lib), xs, v, create_graph=True),
    "vhp": lambda lib, M, xs, v: M.vhp(two_in_scalar(lib), xs, v, create_graph=True),
}


@pytest.mark.parametrize("fn", CREATE_GRAPH)
def test_create_graph_results_differentiate_again(fn):
    """d(sum of weights * result)/d(inputs, v), against PyTorch: third derivatives for hessian."""
    xs_np, v_np = arrays([(3,), (2, 3)]), arrays([(3,), (2, 3)])
    grads = []
    for lib, M in ((td, F), (torch, TF)):
        xs = pack(lib, xs_np, True, requires_grad=True)
        v = pack(lib, v_np, True, requires_grad=True)   # v is differentiated through too
        result = CREATE_GRAPH[fn](lib, M, xs, v)
        weights = [np.random.default_rng(1).standard_normal(tuple(t.shape)) for t in flat(result)]
        wrt = xs + (v if fn not in ("jacobian", "hessian") else ())
        grad = td.autograd.grad if lib is td else torch.autograd.grad
        grads.append(grad(weighted_sum(lib, result, weights), wrt))
        if lib is td:
            assert all(t.requires_grad for t in flat(result))
    assert_same(*grads)


def test_create_graph_keeps_the_user_inputs_in_the_graph():
    x = td.tensor(rng.standard_normal(4), requires_grad=True)
    H = F.hessian(scalar(td), x, create_graph=True)
    (g,) = td.autograd.grad(H.sum(), x)                 # the graph reaches the user's x itself
    xt = torch.tensor(x.detach().numpy(), requires_grad=True)
    (gt,) = torch.autograd.grad(TF.hessian(scalar(torch), xt, create_graph=True).sum(), xt)
    assert_same(g, gt)
    assert x.grad is None


# ------------------------------------------------------------------ unused inputs, strict mode
def unused_second(lib):
    return lambda x, z: x.tanh()


def constant_output(lib):
    return lambda x: lib.tensor(np.ones(3))


def linear(lib):
    return lambda x: (2 * x).sum()


STRICT = {                          # name: (call(M, lib, strict), create_graph)
    "vjp unused": lambda M, lib, s: M.vjp(unused_second(lib), (lib.tensor(np.ones(3)), lib.tensor(np.ones(2))),
                                          lib.tensor(np.ones(3)), strict=s),
    "vjp constant": lambda M, lib, s: M.vjp(constant_output(lib), lib.tensor(np.ones(3)),
                                            lib.tensor(np.ones(3)), strict=s),
    "vjp linear create_graph": lambda M, lib, s: M.vjp(linear(lib), lib.tensor(np.ones(3)),
                                                       create_graph=True, strict=s),
    "jvp unused": lambda M, lib, s: M.jvp(unused_second(lib), (lib.tensor(np.ones(3)), lib.tensor(np.ones(2))),
                                          (lib.tensor(np.ones(3)), lib.tensor(np.ones(2))), strict=s),
    "jacobian unused": lambda M, lib, s: M.jacobian(unused_second(lib),
                                                    (lib.tensor(np.ones(3)), lib.tensor(np.ones(2))), strict=s),
    "jacobian constant": lambda M, lib, s: M.jacobian(constant_output(lib), lib.tensor(np.ones(3)), strict=s),
    "hessian linear": lambda M, lib, s: M.hessian(linear(lib), lib.tensor(np.ones(3)), strict=s),
    "hvp linear": lambda M, lib, s: M.hvp(linear(lib), lib.tensor(np.ones(3)), lib.tensor(np.ones(3)), strict=s),
    "vhp linear": lambda M, lib, s: M.vhp(linear(lib), lib.tensor(np.ones(3)), lib.tensor(np.ones(3)), strict=s),
}


@pytest.mark.parametrize("case", STRICT)
def test_strict_raises_where_pytorch_does_and_zeros_otherwise(case):
    with pytest.raises(RuntimeError):
        STRICT[case](TF, torch, True)
    with pytest.raises(RuntimeError, match="strict mode"):
        STRICT[case](F, td, True)
    ours, theirs = STRICT[case](F, td, False), STRICT[case](TF, torch, False)
    assert_same(ours, theirs)           # zeros for what does not depend on the inputs


def test_strict_names_the_independent_input():
    with pytest.raises(RuntimeError, match="independent of input 1"):
        STRICT["vjp unused"](F, td, True)
    with pytest.raises(RuntimeError, match="output 0 is independent of input 1"):
        STRICT["jacobian unused"](F, td, True)


def test_strict_passes_where_everything_depends():
    x = td.tensor(rng.standard_normal(3))
    F.jacobian(elementwise(td), x, strict=True)
    F.hessian(scalar(td), x, strict=True, create_graph=True)
    F.jvp(elementwise(td), x, x, strict=True)


# ------------------------------------------------------------------ bad arguments
def bad_v_calls(M, lib):
    one, x, xy = lib.tensor(np.ones(1)), lib.tensor(np.ones(3)), (lib.tensor(np.ones(3)), lib.tensor(np.ones(2)))
    f, g = elementwise(lib), unused_second(lib)
    s = lambda x: (x * x).sum()                                                     # noqa: E731
    return {
        "vjp wrong shape": lambda: M.vjp(f, x, lib.tensor(np.ones(4))),
        "vjp missing v": lambda: M.vjp(f, x),
        "vjp two v for one output": lambda: M.vjp(f, x, (x, x)),
        "jvp wrong shape": lambda: M.jvp(f, x, lib.tensor(np.ones((3, 1)))),
        "jvp one v for two inputs": lambda: M.jvp(g, xy, (xy[0],)),
        "jvp wrong shape in tuple": lambda: M.jvp(g, xy, (xy[0], xy[0])),
        "jvp missing v": lambda: M.jvp(f, x),
        "hvp wrong shape": lambda: M.hvp(s, x, lib.tensor(np.ones(2))),
        "hvp missing v": lambda: M.hvp(s, x),
        "vhp wrong shape": lambda: M.vhp(s, x, one),
        "hessian non-scalar": lambda: M.hessian(f, x),
        "hvp non-scalar": lambda: M.hvp(f, x, x),
        "vhp tuple output": lambda: M.vhp(lambda x: (s(x), s(x)), x, x),
    }


@pytest.mark.parametrize("case", list(bad_v_calls(F, td)))
def test_bad_v_and_outputs_raise_runtime_error_as_in_pytorch(case):
    with pytest.raises(RuntimeError):
        bad_v_calls(TF, torch)[case]()
    with pytest.raises(RuntimeError):
        bad_v_calls(F, td)[case]()


def test_bad_v_messages():
    x = td.tensor(np.ones(3))
    with pytest.raises(RuntimeError, match=r"v has shape \(4,\), it should be \(3,\)"):
        F.vjp(elementwise(td), x, td.tensor(np.ones(4)))
    with pytest.raises(RuntimeError, match="entry 1 of v has shape"):
        F.jvp(unused_second(td), (x, td.tensor(np.ones(2))), (x, x))
    with pytest.raises(RuntimeError, match="v can be None only"):
        F.vjp(elementwise(td), x)


def test_not_tensors_and_bad_strategy():
    with pytest.raises(TypeError):
        F.jacobian(elementwise(td), [td.tensor(np.ones(3))])            # a list is not a tuple (PyTorch too)
    with pytest.raises(TypeError):
        F.vjp(lambda x: 3.0, td.tensor(np.ones(3)))
    with pytest.raises(ValueError):
        F.jacobian(elementwise(td), td.tensor(np.ones(3)), strategy="sideways")
    with pytest.raises(NotImplementedError):
        F.jacobian(elementwise(td), td.tensor(np.ones(3)), strategy="forward-mode", create_graph=True)
    with pytest.raises(RuntimeError):
        F.jacobian(elementwise(td), td.tensor(np.ones(3)), strategy="forward-mode", strict=True)
    with pytest.raises(RuntimeError):
        F.jacobian(elementwise(td), td.tensor(np.ones(3)), vectorize=True, strict=True)
