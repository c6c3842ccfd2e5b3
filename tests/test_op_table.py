"""Every row of the op table: gradcheck, PyTorch parity (forward and gradients), dtypes, cuda == cpu."""
import numpy as np
import pytest
import torch

import tinydl as td
from optable import all_cases

CASES = all_cases()
IDS = [c.name for c in CASES]
# The rows' convolutions are small: most would run the textbook op, which the forced
# 'im2col' rows cover; with this fixture the other rows go through the routes.
pytestmark = pytest.mark.usefixtures("routes_on_small_shapes")


def _inputs(case, dtype, seed=0):
    """The case's arrays with floats cast to ``dtype``; the positions that get gradients."""
    arrays = case.inputs(np.random.default_rng(seed))
    grad = case.grad
    if grad is None:
        grad = [i for i, a in enumerate(arrays) if isinstance(a, np.ndarray) and a.dtype.kind == "f"]
    arrays = [a.astype(dtype) if isinstance(a, np.ndarray) and a.dtype.kind == "f" else a for a in arrays]
    return arrays, list(grad)


def _td_inputs(arrays, grad, device="cpu"):
    """Tensors over the case's arrays; on cpu the arrays themselves, so a
    non-contiguous case stays non-contiguous (ops must never write to inputs)."""
    out = []
    for i, a in enumerate(arrays):
        if isinstance(a, np.ndarray):
            data = a if device == "cpu" else td.backend.to_device(a, device)
            out.append(td.Tensor(data, requires_grad=i in grad))
        else:
            out.append(a)
    return out


def _torch_inputs(arrays, grad):
    return [torch.tensor(a, requires_grad=i in grad) if isinstance(a, np.ndarray) else a
            for i, a in enumerate(arrays)]


def _as_list(out):
    return list(out) if isinstance(out, (tuple, list)) else [out]


def _host(t):
    return td.backend.to_host(t.array)


def _run_td(case, arrays, grad, device, upstream):
    xs = _td_inputs(arrays, grad, device)
    outs = _as_list(case.fn(*xs))
    for o, v in zip(outs, upstream):
        if o.requires_grad:
            o.backward(td.Tensor(td.backend.to_device(v.astype(o.dtype), device)), retain_graph=True)
    return outs, [xs[i].grad for i in grad], xs


def _upstream(outs, seed=1):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(np.shape(o)) for o in outs]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_gradcheck(case):
    if not case.gradcheck:
        pytest.skip("no finite-difference gradient for this op")
    arrays, grad = _inputs(case, np.float64)
    if not grad:
        pytest.skip("no differentiable input")
    xs = _td_inputs(arrays, grad)
    assert td.gradcheck(case.fn, xs, atol=case.gc_atol, rtol=case.gc_rtol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_torch_parity(case, dtype):
    if case.torch_fn is None:
        pytest.skip("PyTorch has no such op")
    arrays, grad = _inputs(case, dtype)
    t_in = _torch_inputs(arrays, grad)
    t_outs = _as_list(case.torch_fn(*t_in))
    upstream = _upstream([o.detach().numpy() for o in t_outs])
    outs, grads, xs = _run_td(case, arrays, grad, "cpu", upstream)
    for o, v in zip(t_outs, upstream):
        if o.requires_grad:
            o.backward(torch.tensor(v, dtype=o.dtype), retain_graph=True)
    atol, rtol = (case.atol, case.rtol) if dtype == np.float32 else (1e-10, 1e-7)
    assert len(outs) == len(t_outs)
    for k, (o, t) in enumerate(zip(outs, t_outs)):
        expected = t.detach().numpy()
        assert o.shape == tuple(expected.shape), f"output {k}: shape {o.shape} vs torch {tuple(expected.shape)}"
        np.testing.assert_allclose(_host(o), expected, atol=atol, rtol=rtol, err_msg=f"output {k}")
    for i, g in zip(grad, grads):
        expected = t_in[i].grad
        if expected is None:
            assert g is None or not np.any(_host(g)), f"input {i}: torch gives no gradient"
            continue
        assert g is not None, f"input {i}: no gradient"
        assert g.dtype == dtype, f"input {i}: gradient dtype {g.dtype}, input dtype {dtype}"
        np.testing.assert_allclose(_host(g), expected.numpy(), atol=atol * 10, rtol=rtol * 10,
                                   err_msg=f"gradient of input {i}")


# Every route of the routed ops (td.backends.ROUTES) on every row of those ops: each route
# that applies must give PyTorch's numbers in float64, and the reference route's.
_ROUTED_OP = {"conv2d": "conv2d", "conv1d": "conv2d", "conv_transpose2d": "conv_transpose2d",
              "conv_transpose1d": "conv_transpose2d", "batch_norm": "batch_norm", "batch_norm_relu": "batch_norm",
              "cross_entropy": "cross_entropy"}
ROUTE_CASES = [(case, op, route) for case in CASES if (op := _ROUTED_OP.get(case.name.split("/")[0]))
               for route in td.backends.ROUTES[op]]


def _run_route(case, arrays, grad, op, route, upstream):
    scope = td.backends.reference() if route == "reference" else td.backends.route(**{op: route})
    with scope, td.backends.record_routes() as taken:
        outs, grads, _ = _run_td(case, arrays, grad, "cpu", upstream)
    return [_host(o) for o in outs] + [None if g is None else _host(g) for g in grads], taken


@pytest.mark.parametrize("case, op, route", ROUTE_CASES, ids=[f"{c.name}-{r}" for c, _, r in ROUTE_CASES])
def test_every_route_matches_torch_and_the_reference(case, op, route):
    arrays, grad = _inputs(case, np.float64)
    t_in = _torch_inputs(arrays, grad)
    t_outs = _as_list(case.torch_fn(*t_in))
    upstream = _upstream([o.detach().numpy() for o in t_outs])
    for o, v in zip(t_outs, upstream):
        o.backward(torch.tensor(v, dtype=o.dtype), retain_graph=True)
    got, taken = _run_route(case, arrays, grad, op, route, upstream)
    if (op, route) not in taken:
        pytest.skip(f"the {route} route does not apply here (ran: {taken})")
    reference, _ = _run_route(case, arrays, grad, op, "reference", upstream)
    expected = [t.detach().numpy() for t in t_outs] + [t_in[i].grad.numpy() for i in grad]
    for k, (ours, ref, theirs) in enumerate(zip(got, reference, expected)):
        assert ours.dtype == np.float64
        np.testing.assert_allclose(ours, theirs, atol=1e-10, rtol=1e-7, err_msg=f"{route}: result {k} vs torch")
        np.testing.assert_allclose(ours, ref, atol=1e-10, rtol=1e-7, err_msg=f"{route}: result {k} vs reference")


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_float32_stays_float32(case):
    arrays, grad = _inputs(case, np.float32)
    outs = _as_list(case.fn(*_td_inputs(arrays, grad)))
    upstream = _upstream(outs)
    outs, grads, _ = _run_td(case, arrays, grad, "cpu", upstream)
    for o in outs:
        if o.dtype.kind == "f":
            assert o.dtype == np.float32, f"output dtype {o.dtype}"
    for g in grads:
        if g is not None:
            assert g.dtype == np.float32


@pytest.mark.gpu
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_cuda_matches_cpu(case):
    arrays, grad = _inputs(case, np.float64)
    outs_cpu = _as_list(case.fn(*_td_inputs(arrays, grad)))
    upstream = _upstream(outs_cpu)
    cpu_outs, cpu_grads, _ = _run_td(case, arrays, grad, "cpu", upstream)
    gpu_outs, gpu_grads, _ = _run_td(case, arrays, grad, "cuda", upstream)
    for a, b in zip(cpu_outs, gpu_outs):
        assert b.device.type == "cuda"
        np.testing.assert_allclose(_host(b), _host(a), atol=1e-10, rtol=1e-10)
    for a, b in zip(cpu_grads, gpu_grads):
        if a is not None:
            np.testing.assert_allclose(_host(b), _host(a), atol=1e-10, rtol=1e-10)


@pytest.mark.gpu
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_gradcheck_on_cuda(case):
    if not case.gradcheck:
        pytest.skip("no finite-difference gradient for this op")
    arrays, grad = _inputs(case, np.float64)
    if not grad:
        pytest.skip("no differentiable input")
    xs = _td_inputs(arrays, grad, "cuda")
    assert td.gradcheck(case.fn, xs, atol=case.gc_atol, rtol=case.gc_rtol)


@pytest.mark.gpu
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_cuda_float32_matches_cpu(case):
    """float32 on the GPU: same dtype, and the CPU's values to the row's PyTorch tolerances."""
    arrays, grad = _inputs(case, np.float32)
    upstream = _upstream(_as_list(case.fn(*_td_inputs(arrays, grad))))
    cpu_outs, cpu_grads, _ = _run_td(case, arrays, grad, "cpu", upstream)
    gpu_outs, gpu_grads, _ = _run_td(case, arrays, grad, "cuda", upstream)
    for a, b in zip(cpu_outs + cpu_grads, gpu_outs + gpu_grads):
        if a is None:
            continue
        assert b.dtype == a.dtype
        np.testing.assert_allclose(_host(b), _host(a), atol=case.atol * 10, rtol=case.rtol * 10)


# ---------------------------------------------------------------- second derivatives
def _double_backward(lib, case, arrays, grad, v_seed=2, w_seed=3):
    """The first derivatives d<v, f(x)>/dx built with create_graph, and d/dx of <w, them>
    for the differentiable inputs x: the double backward."""
    if lib is torch:
        xs = _torch_inputs(arrays, grad)
        outs = [o for o in _as_list(case.torch_fn(*xs)) if o.dtype.is_floating_point]
    else:
        xs = _td_inputs(arrays, grad)
        outs = [o for o in _as_list(case.fn(*xs)) if o.dtype.kind == "f"]
    chosen = [xs[i] for i in grad]
    vs = [lib.tensor(v) for v in _upstream([np.asarray(o.detach().numpy()) for o in outs], v_seed)]
    firsts = lib.autograd.grad(outs, chosen, grad_outputs=vs, create_graph=True, allow_unused=True)
    firsts_values = [None if g is None else g.detach().numpy() for g in firsts]
    pairs = [(g, w) for g, w in zip(firsts, _upstream([np.asarray(c.detach().numpy()) for c in chosen], w_seed))
             if g is not None and g.requires_grad]
    if not pairs:
        return firsts_values, None
    seconds = lib.autograd.grad([g for g, _ in pairs], chosen, grad_outputs=[lib.tensor(w) for _, w in pairs],
                                allow_unused=True)
    return firsts_values, [None if s is None else (s.detach().numpy(force=True) if lib is torch
                                                   else s.detach().numpy())
                           for s in seconds]        # force: torch's ZeroTensor (abs) converts to zeros


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_gradgradcheck_and_double_backward_match_torch(case):
    """The op-table column of second derivatives: every row whose ops have a differentiable
    backward is gradgradchecked (float64) and its double backward compared with PyTorch's."""
    if not case.gradcheck or case.torch_fn is None:
        pytest.skip("no finite-difference gradient or no PyTorch op")
    arrays, grad = _inputs(case, np.float64)
    if not grad:
        pytest.skip("no differentiable input")
    try:
        firsts, ours = _double_backward(td, case, arrays, grad)
    except NotImplementedError as exc:
        pytest.skip(str(exc).split(";")[0])
    try:
        firsts_torch, theirs = _double_backward(torch, case, arrays, grad)
    except RuntimeError as exc:        # e.g. hardsigmoid: torch has no double backward
        if "not implemented" not in str(exc):
            raise
        theirs = None
    else:     # the gradient built as a graph (a backward's Tensor branch) is the gradient
        for k, (a, b) in enumerate(zip(firsts, firsts_torch)):
            if a is not None and b is not None:
                np.testing.assert_allclose(a, b, atol=1e-10, rtol=1e-7,
                                           err_msg=f"create_graph gradient of input {k}")
    empty = not all(np.size(a) for a in arrays if isinstance(a, np.ndarray))     # nothing to perturb
    if theirs is None:     # a linear op (its gradient does not depend on the inputs) or torch lacks it
        if empty:
            pytest.skip("an empty input")
        assert td.gradgradcheck(case.fn, _td_inputs(arrays, grad), atol=case.gc_atol, rtol=case.gc_rtol)
        return
    ours = ours or [None] * len(theirs)              # no graph from our gradient: zeros, to compare
    for k, (a, b) in enumerate(zip(ours, theirs)):
        if b is None:
            assert a is None or not np.any(a), f"input {k}: torch gives no second derivative"
            continue
        np.testing.assert_allclose(np.zeros_like(b) if a is None else a, b, atol=1e-10, rtol=1e-7,
                                   err_msg=f"second derivative of input {k}")
    assert empty or td.gradgradcheck(case.fn, _td_inputs(arrays, grad), atol=case.gc_atol, rtol=case.gc_rtol)
