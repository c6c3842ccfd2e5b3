"""tinydl.optim's Adamax, NAdam, RAdam, ASGD, Rprop and LBFGS against torch.optim.

First-order optimizers: from the same float64 parameters (test_optim's three tensors; the
middle one never gets a gradient), feed the same 15 gradients (some coordinates exactly
zero) to tinydl and torch; parameters after every step and the state at the end agree to
1e-10 relative. LBFGS: the same closure (Rosenbrock, a small tanh net, a least-squares
problem) in both; after every step the returned loss, the parameters and the whole state
(history lists included) agree.

torch keeps NAdam's mu_product and ASGD's eta and mu as 0-d tensors of its default dtype
(float32 unless changed), tinydl as Python floats: the comparisons run with torch's default
dtype set to float64 (the fixture below), where both compute in double precision.
"""
import inspect
import warnings

import numpy as np
import pytest
import torch

import tinydl as td
import tinydl.optim as optim
from tinydl.backend import device_of
from tinydl.optim import lr_scheduler
from test_optim import (NO_GRAD, gradient_sequence, host, initial_values, set_td_grads, set_torch_grads, td_params,
                        torch_params)

STEPS = 15
RTOL, ATOL = 1e-10, 1e-13
NEW = ["Adamax", "NAdam", "RAdam", "ASGD", "Rprop", "LBFGS"]


@pytest.fixture(autouse=True)
def torch_float64_scalars():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def gradients(steps=STEPS):
    """test_optim's gradient sequence, with some coordinates exactly zero (Rprop's "no
    sign", Adamax's |g| + eps) at some steps."""
    seq = gradient_sequence(steps)
    for step in range(0, steps, 3):
        seq[step][0] = seq[step][0].copy()
        seq[step][0][0, :] = 0.0
    return seq


def as_numpy(v):
    if isinstance(v, torch.Tensor):
        return v.detach().numpy()
    return v.get() if hasattr(v, "get") else np.asarray(v)


def assert_close(a, b, msg, rtol=RTOL, atol=ATOL):
    """tinydl's state value ``a`` against torch's ``b``: lists entry by entry, None as None,
    a Python number against a 0-d tensor."""
    if isinstance(b, list):
        assert isinstance(a, list) and len(a) == len(b), f"{msg}: {a!r} vs {b!r}"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_close(x, y, f"{msg}[{i}]", rtol, atol)
    elif b is None:
        assert a is None, msg
    else:
        np.testing.assert_allclose(as_numpy(a), as_numpy(b), rtol=rtol, atol=atol, err_msg=msg)


def magnitude(v):
    """The largest |entry| of a state value (over a whole list)."""
    if isinstance(v, list):
        return max([magnitude(a) for a in v if a is not None], default=0.0)
    return float(np.max(np.abs(as_numpy(v)), initial=0.0))


def assert_state_matches(topt, popt, where, rtol=RTOL, atol=ATOL, norm_relative=False):
    """Keys and values of the state as torch's. ``norm_relative``: each entry to ``rtol``
    relative to the largest entry of its value (LBFGS: its y_i, a_i are differences, whose
    small entries carry the parameters' rounding with a large relative error)."""
    tsd, psd = topt.state_dict(), popt.state_dict()
    assert sorted(tsd["state"]) == sorted(psd["state"]), where
    for i, pstate in psd["state"].items():
        tstate = tsd["state"][i]
        assert set(tstate) == set(pstate), f"{where} param {i}: {sorted(tstate)} vs {sorted(pstate)}"
        for k, v in pstate.items():
            if k in ("step", "n_iter", "func_evals"):       # counts: ints here, exact
                assert isinstance(tstate[k], int) and tstate[k] == int(v), f"{where} {k}"
            else:
                tol = max(atol, rtol * magnitude(v)) if norm_relative else atol
                assert_close(tstate[k], v, f"{where} state[{i}][{k!r}]", rtol, tol)
    assert [g["params"] for g in tsd["param_groups"]] == [g["params"] for g in psd["param_groups"]]


def run_both(name, kwargs, grads=None, dtype=np.float64, tdtype=torch.float64, rtol=RTOL, atol=ATOL):
    """The same gradients through tinydl's and torch's optimizer; equal parameters after every step."""
    grads = gradients() if grads is None else grads
    values = initial_values()
    tp, pp = td_params(values, dtype), torch_params(values, tdtype)
    topt, popt = getattr(optim, name)(tp, **kwargs), getattr(torch.optim, name)(pp, **kwargs)
    for step, g in enumerate(grads):
        set_td_grads(tp, g)
        set_torch_grads(pp, g)
        topt.step()
        popt.step()
        for i, (a, b) in enumerate(zip(tp, pp)):
            np.testing.assert_allclose(host(a), b.detach().numpy(), rtol=rtol, atol=atol,
                                       err_msg=f"{name}({kwargs}) param {i} step {step + 1}")
    return tp, topt, pp, popt


# ---------------------------------------------------------------- first-order optimizers
CASES = [
    ("Adamax", dict()),
    ("Adamax", dict(lr=0.05, weight_decay=0.1)),
    ("Adamax", dict(lr=0.05, betas=(0.5, 0.9), eps=1e-3, maximize=True)),
    ("Adamax", dict(lr=0.05, weight_decay=0.1, maximize=True)),
    ("NAdam", dict()),
    ("NAdam", dict(lr=0.05, weight_decay=0.1)),
    ("NAdam", dict(lr=0.05, weight_decay=0.1, decoupled_weight_decay=True)),
    ("NAdam", dict(lr=0.05, momentum_decay=0.1, betas=(0.8, 0.95), maximize=True)),
    ("NAdam", dict(lr=0.05, momentum_decay=0.0, eps=1e-3)),
    ("NAdam", dict(lr=0.05, weight_decay=0.1, decoupled_weight_decay=True, maximize=True)),
    ("RAdam", dict()),                                   # rho_t passes 5 at step 6
    ("RAdam", dict(lr=0.05, betas=(0.8, 0.9))),          # ... here too (rho_inf = 19, not 1999)
    ("RAdam", dict(lr=0.05, betas=(0.8, 0.9), weight_decay=0.1)),
    ("RAdam", dict(lr=0.05, betas=(0.8, 0.9), weight_decay=0.1, decoupled_weight_decay=True, maximize=True)),
    ("RAdam", dict(lr=0.05, betas=(0.9, 0.999), eps=1e-2, maximize=True)),
    ("ASGD", dict()),
    ("ASGD", dict(lr=0.05, lambd=0.1, alpha=0.5, t0=4)),             # averaging starts at step 5
    ("ASGD", dict(lr=0.05, lambd=0.01, t0=2, weight_decay=0.1, maximize=True)),
    ("ASGD", dict(lr=0.1, lambd=0.0, t0=0)),                         # ax: the mean of all iterates
    ("Rprop", dict()),
    ("Rprop", dict(lr=0.1, etas=(0.3, 1.5))),
    ("Rprop", dict(lr=0.1, step_sizes=(0.05, 0.2))),                 # both clamps hit
    ("Rprop", dict(lr=0.05, etas=(0.6, 1.1), maximize=True)),
]


def case_id(case):
    name, kw = case
    return name + "-" + ("-".join(f"{k}={v}" for k, v in kw.items()) or "defaults")


@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_matches_torch_every_step(case):
    name, kwargs = case
    values = initial_values()
    tp, topt, _, popt = run_both(name, kwargs)
    np.testing.assert_array_equal(host(tp[NO_GRAD]), values[NO_GRAD])    # no gradient: untouched,
    assert tp[NO_GRAD] not in topt.state                                 # and no state
    assert_state_matches(topt, popt, f"{name}({kwargs})")


def test_radam_switches_from_momentum_to_the_rectified_step():
    """beta2 = 0.9: rho_t <= 5 for steps 1 to 5 (x moves by lr * m_hat), above from step 6."""
    values, grads = initial_values(), gradients(8)
    tp = td_params(values)
    opt = optim.RAdam(tp, lr=0.05, betas=(0.8, 0.9))
    moved = []
    for g in grads:
        before = host(tp[0]).copy()
        set_td_grads(tp, g)
        opt.step()
        m_hat = opt.state[tp[0]]["exp_avg"] / (1 - 0.8 ** opt.state[tp[0]]["step"])
        moved.append(np.allclose(before - host(tp[0]), 0.05 * m_hat, rtol=1e-12))
    assert moved == [True] * 5 + [False] * 3


def test_asgd_average_is_the_mean_of_the_iterates_after_t0():
    """lambd = 0 keeps eta = lr; with t0 = 2, step t averages with mu = 1 / max(1, t - 1 - t0):
    ax = x up to step 4, then the plain mean of the iterates of steps 4, 5, ..."""
    values, grads = initial_values(), gradients(8)
    tp = td_params(values)
    opt = optim.ASGD(tp, lr=0.1, lambd=0.0, t0=2)
    iterates = []
    for g in grads:
        set_td_grads(tp, g)
        opt.step()
        iterates.append(host(tp[0]).copy())
    np.testing.assert_allclose(opt.state[tp[0]]["ax"], np.mean(iterates[3:], axis=0), rtol=1e-12)
    assert opt.state[tp[0]]["eta"] == 0.1 and opt.state[tp[0]]["mu"] == 1 / 6


def test_param_groups_with_own_options_match_torch():
    def groups(name, ps):
        first = {"Adamax": dict(lr=0.01, betas=(0.5, 0.8)), "NAdam": dict(lr=0.01, momentum_decay=0.05),
                 "RAdam": dict(lr=0.01, weight_decay=0.1), "ASGD": dict(lr=0.02, t0=3),
                 "Rprop": dict(lr=0.001, etas=(0.4, 1.3))}[name]
        return [dict(params=[ps[0]], **first), {"params": [ps[1], ps[2]], "lr": 0.1}]
    values, grads = initial_values(), gradients()
    for name in NEW[:-1]:
        tp, pp = td_params(values), torch_params(values)
        topt = getattr(optim, name)(groups(name, tp), maximize=True)
        popt = getattr(torch.optim, name)(groups(name, pp), maximize=True)
        assert [g["lr"] for g in topt.param_groups] == [g["lr"] for g in popt.param_groups]
        for g in grads:
            set_td_grads(tp, g)
            set_torch_grads(pp, g)
            topt.step()
            popt.step()
            for a, b in zip(tp, pp):
                np.testing.assert_allclose(host(a), b.detach().numpy(), rtol=RTOL, atol=ATOL, err_msg=name)
        assert_state_matches(topt, popt, name)


FLOAT32_CASES = [
    ("Adamax", dict(lr=0.05, weight_decay=0.1, maximize=True)),
    ("NAdam", dict(lr=0.05, weight_decay=0.1)),
    ("NAdam", dict(lr=0.05, weight_decay=0.1, decoupled_weight_decay=True)),
    ("RAdam", dict(lr=0.05, betas=(0.8, 0.9), weight_decay=0.1)),
    ("ASGD", dict(lr=0.05, lambd=0.1, t0=4, weight_decay=0.1)),
    ("Rprop", dict(lr=0.1, etas=(0.3, 1.5), step_sizes=(0.01, 0.2))),
]


@pytest.mark.parametrize("case", FLOAT32_CASES, ids=[case_id(c) for c in FLOAT32_CASES])
def test_float32_stays_float32(case):
    name, kwargs = case
    # NumPy float64 scalars as hyperparameters must not promote float32 arrays
    kw = {k: (np.float64(v) if isinstance(v, float) else v) for k, v in kwargs.items()}
    values, grads = initial_values(), gradients()
    tp, pp = td_params(values, np.float32), torch_params(values, torch.float32)
    topt, popt = getattr(optim, name)(tp, **kw), getattr(torch.optim, name)(pp, **kwargs)
    for g in grads:
        set_td_grads(tp, g)
        set_torch_grads(pp, g)
        topt.step()
        popt.step()
    for a, b in zip(tp, pp):
        assert a.dtype == np.float32
        np.testing.assert_allclose(host(a), b.detach().numpy(), rtol=1e-4, atol=1e-5)
    for state in topt.state.values():
        for k, v in state.items():
            if k == "step":
                assert isinstance(v, int)
            elif k in ("mu_product", "eta", "mu"):
                assert isinstance(v, float)
            else:
                assert v.dtype == np.float32, f"{name} state {k} is {v.dtype}"


def test_torch_with_float32_scalars_agrees_to_float32_rounding():
    """With torch's own default dtype (float32), its mu_product / eta / mu are rounded to
    float32: the same numbers to about 1e-7 relative, not to 1e-10."""
    torch.set_default_dtype(torch.float32)         # (the fixture puts it back)
    for name, kwargs in [("NAdam", dict(lr=0.05)), ("ASGD", dict(lr=0.05, lambd=0.1, t0=4))]:
        run_both(name, kwargs, rtol=1e-5, atol=1e-8)


ROUND_TRIP_CASES = [
    ("Adamax", dict(lr=0.05, weight_decay=0.1)),
    ("NAdam", dict(lr=0.05, momentum_decay=0.1, decoupled_weight_decay=True, weight_decay=0.1)),
    ("RAdam", dict(lr=0.05, betas=(0.8, 0.9))),
    ("ASGD", dict(lr=0.05, lambd=0.1, t0=2)),
    ("Rprop", dict(lr=0.1, etas=(0.3, 1.5))),
]


@pytest.mark.parametrize("case", ROUND_TRIP_CASES, ids=[c[0] for c in ROUND_TRIP_CASES])
def test_state_dict_round_trip(case):
    """Save after 3 steps, load into a fresh optimizer (built with another lr: the loaded
    groups bring the saved options back) over a fresh copy of the parameters, go on: the
    same as going straight on, and as torch."""
    name, kwargs = case
    grads = gradients()
    straight, _, pp, popt = run_both(name, kwargs, grads)

    tp = td_params(initial_values())
    opt = getattr(optim, name)(tp, **kwargs)
    for g in grads[:3]:
        set_td_grads(tp, g)
        opt.step()
    sd = opt.state_dict()
    saved = {i: {k: (v.copy() if hasattr(v, "copy") else v) for k, v in s.items()} for i, s in sd["state"].items()}

    tp2 = td_params([host(p) for p in tp])
    opt2 = getattr(optim, name)(tp2, lr=123.0)
    opt2.load_state_dict(sd)
    assert opt2.param_groups[0]["lr"] == kwargs["lr"] and opt2.param_groups[0]["params"][0] is tp2[0]
    for g in grads[3:]:
        set_td_grads(tp2, g)
        opt2.step()
    for a, b, c in zip(tp2, straight, pp):
        np.testing.assert_array_equal(host(a), host(b))
        np.testing.assert_allclose(host(a), c.detach().numpy(), rtol=RTOL, atol=ATOL)
    assert_state_matches(opt2, popt, name)
    for i, s in saved.items():          # training on did not write into the loaded dict
        for k, v in s.items():
            np.testing.assert_array_equal(sd["state"][i][k], v)


@pytest.mark.parametrize("case", ROUND_TRIP_CASES, ids=[c[0] for c in ROUND_TRIP_CASES])
def test_loads_a_state_dict_converted_from_torch(case):
    """torch's state (0-d tensors for step, mu_product, eta, mu) converted to NumPy loads,
    and training goes on as torch's does."""
    name, kwargs = case
    grads = gradients()
    values = initial_values()
    pp = torch_params(values)
    popt = getattr(torch.optim, name)(pp, **kwargs)
    for g in grads[:3]:
        set_torch_grads(pp, g)
        popt.step()
    psd = popt.state_dict()
    sd = {"state": {i: {k: v.numpy() for k, v in s.items()} for i, s in psd["state"].items()},
          "param_groups": [{k: v for k, v in g.items() if k not in ("foreach", "capturable", "differentiable")}
                           for g in psd["param_groups"]]}
    tp = td_params([p.detach().numpy() for p in pp])
    topt = getattr(optim, name)(tp)
    topt.load_state_dict(sd)
    for g in grads[3:]:
        set_td_grads(tp, g)
        set_torch_grads(pp, g)
        topt.step()
        popt.step()
    for a, b in zip(tp, pp):
        np.testing.assert_allclose(host(a), b.detach().numpy(), rtol=RTOL, atol=ATOL)


def test_step_does_not_write_into_grads():
    values, grads = initial_values(), gradients(3)
    for name, kwargs in CASES:
        tp = td_params(values)
        opt = getattr(optim, name)(tp, **kwargs)
        for g in grads:
            set_td_grads(tp, g)
            before = [None if p.grad is None else p.grad.array.copy() for p in tp]
            opt.step()
            for p, b in zip(tp, before):
                if b is not None:
                    np.testing.assert_array_equal(p.grad.array, b, err_msg=f"{name}({kwargs})")


# ---------------------------------------------------------------- LBFGS
def rosenbrock(params):
    x, y = params[0], params[1]
    return ((1 - x) ** 2).sum() + (100 * (y - x * x) ** 2).sum()


def rosenbrock_start():
    # a third parameter the loss never uses: its flat gradient is zeros, and it stays put
    return [np.array([-1.5, 0.3, 2.0]), np.array([2.0, -0.5, 1.0]), np.array([0.25, -4.0])]


_rng = np.random.default_rng(3)
_X = _rng.standard_normal((20, 3))
_Y = np.sin(_X.sum(1, keepdims=True))
_A, _B = _rng.standard_normal((8, 4)), _rng.standard_normal(8)


def tanh_net(params):
    """A small nonconvex least-squares fit: 3 -> 5 (tanh) -> 1 on 20 points."""
    lib = torch if isinstance(params[0], torch.Tensor) else td
    X, Y = lib.tensor(_X, dtype=params[0].dtype), lib.tensor(_Y, dtype=params[0].dtype)
    h = (X @ params[0] + params[1]).tanh()
    return ((h @ params[2] - Y) ** 2).mean()


def tanh_net_start():
    rng = np.random.default_rng(4)
    return [rng.standard_normal((3, 5)) * 0.5, rng.standard_normal(5) * 0.1, rng.standard_normal((5, 1)) * 0.5]


def least_squares(params):
    lib = torch if isinstance(params[0], torch.Tensor) else td
    return ((lib.tensor(_A) @ params[0] - lib.tensor(_B)) ** 2).sum()


PROBLEMS = {"rosenbrock": (rosenbrock, rosenbrock_start), "tanh_net": (tanh_net, tanh_net_start),
            "least_squares": (least_squares, lambda: [np.zeros(4)])}

# Each step runs many iterations whose rounding differs from torch's in the last bit (its
# dot products add in another order); on Rosenbrock that grows by ~10x per iteration, so
# the runs are kept short enough to stay well inside 1e-10.
LBFGS_CASES = [
    ("rosenbrock", dict(max_iter=5), 3),
    ("rosenbrock", dict(max_iter=5, line_search_fn="strong_wolfe"), 3),
    ("rosenbrock", dict(history_size=2, max_iter=5), 3),
    ("rosenbrock", dict(history_size=3, max_iter=6, line_search_fn="strong_wolfe"), 3),
    # the last search of step 3 runs out of max_eval: it keeps the better of t = 0 and its last t
    ("rosenbrock", dict(lr=0.5, max_iter=6, line_search_fn="strong_wolfe", history_size=2), 3),
    ("rosenbrock", dict(lr=0.1, max_iter=6, tolerance_change=1e-4), 3),
    ("rosenbrock", dict(line_search_fn="strong_wolfe"), 1),
    ("tanh_net", dict(max_iter=8, history_size=4), 3),
    ("tanh_net", dict(line_search_fn="strong_wolfe", max_iter=10), 3),
    ("tanh_net", dict(lr=0.3, max_iter=10), 2),
    ("tanh_net", dict(max_iter=10, max_eval=12, history_size=3, line_search_fn="strong_wolfe"), 2),
    ("least_squares", dict(line_search_fn="strong_wolfe"), 3),     # converges; later steps stop at once
    ("least_squares", dict(history_size=1, max_iter=30, tolerance_change=1e-6), 2),
]


def lbfgs_both(problem, kwargs, steps, dtype=np.float64, tdtype=torch.float64, check=True, rtol=RTOL, atol=1e-12):
    loss_fn, start = PROBLEMS[problem]
    values = start()
    tp, pp = td_params(values, dtype), torch_params(values, tdtype)
    topt, popt = optim.LBFGS(tp, **kwargs), torch.optim.LBFGS(pp, **kwargs)

    def tclosure():
        topt.zero_grad()
        loss = loss_fn(tp)
        loss.backward()
        return loss

    def pclosure():
        popt.zero_grad()
        loss = loss_fn(pp)
        loss.backward()
        return loss

    for step in range(steps):
        tloss, ploss = topt.step(tclosure), popt.step(pclosure)
        if check:
            where = f"LBFGS({kwargs}) on {problem}, step {step + 1}"
            np.testing.assert_allclose(float(tloss), ploss.item(), rtol=rtol, err_msg=where)
            for i, (a, b) in enumerate(zip(tp, pp)):
                np.testing.assert_allclose(host(a), b.detach().numpy(), rtol=rtol, atol=atol,
                                           err_msg=f"{where}, param {i}")
            assert_state_matches(topt, popt, where, rtol, atol, norm_relative=True)
    return tp, topt, pp, popt, tclosure


@pytest.mark.parametrize("problem, kwargs, steps", LBFGS_CASES,
                         ids=[f"{p}-" + ("-".join(f"{k}={v}" for k, v in kw.items()) or "defaults")
                              for p, kw, _ in LBFGS_CASES])
def test_lbfgs_matches_torch(problem, kwargs, steps):
    tp, topt, *_ = lbfgs_both(problem, kwargs, steps)
    if problem == "rosenbrock":
        np.testing.assert_array_equal(host(tp[2]), rosenbrock_start()[2])
    assert set(topt.state) == {tp[0]}               # all of LBFGS's state sits on the first parameter


def test_lbfgs_converges_on_rosenbrock():
    tp, topt, *_ = lbfgs_both("rosenbrock", dict(line_search_fn="strong_wolfe", max_iter=100), 2, check=False)
    np.testing.assert_allclose(host(tp[0]), 1.0, atol=1e-5)
    np.testing.assert_allclose(host(tp[1]), 1.0, atol=1e-5)


def test_lbfgs_at_a_stationary_point_returns_after_one_evaluation():
    p = td.tensor(np.ones(3), requires_grad=True)
    q = torch.ones(3, requires_grad=True)
    topt, popt = optim.LBFGS([p]), torch.optim.LBFGS([q])
    for x, o in ((p, topt), (q, popt)):
        def closure(x=x, o=o):
            o.zero_grad()
            loss = ((x - 1) ** 2).sum()
            loss.backward()
            return loss
        assert float(o.step(closure).detach()) == 0.0
    assert topt.state[p] == {"func_evals": 1, "n_iter": 0}
    assert_state_matches(topt, popt, "stationary")


def test_lbfgs_float32_stays_float32():
    tp, topt, pp, popt, _ = lbfgs_both("tanh_net", dict(max_iter=6, line_search_fn="strong_wolfe"), 2,
                                       np.float32, torch.float32, check=False)
    for a, b in zip(tp, pp):
        assert a.dtype == np.float32
        np.testing.assert_allclose(host(a), b.detach().numpy(), rtol=1e-3, atol=1e-4)
    state = topt.state[tp[0]]
    for k in ("d", "prev_flat_grad"):
        assert state[k].dtype == np.float32, k
    assert all(a.dtype == np.float32 for a in state["old_dirs"] + state["old_stps"])
    assert all(isinstance(state[k], (int, float)) for k in ("t", "H_diag", "prev_loss", "n_iter", "func_evals"))


@pytest.mark.parametrize("kwargs", [dict(max_iter=4, history_size=2), dict(max_iter=4, line_search_fn="strong_wolfe")],
                         ids=["fixed_step", "strong_wolfe"])
def test_lbfgs_state_dict_round_trip(kwargs):
    """3 steps, save, load into a fresh LBFGS (another lr) over fresh parameters, 2 more
    steps: the same as 5 straight, bit for bit; the saved lists are not changed by training on."""
    straight, *_ = lbfgs_both("tanh_net", kwargs, 5, check=False)
    tp, topt, _, _, _ = lbfgs_both("tanh_net", kwargs, 3, check=False)
    sd = topt.state_dict()
    saved_dirs = [a.copy() for a in sd["state"][0]["old_dirs"]]

    tp2 = td_params([host(p) for p in tp])
    opt2 = optim.LBFGS(tp2, lr=123.0)
    opt2.load_state_dict(sd)
    assert opt2.param_groups[0]["lr"] == 1 and opt2.param_groups[0]["max_iter"] == 4
    assert opt2.state[tp2[0]]["old_dirs"][0] is not sd["state"][0]["old_dirs"][0]

    def closure():
        opt2.zero_grad()
        loss = tanh_net(tp2)
        loss.backward()
        return loss
    for _ in range(2):
        opt2.step(closure)
    for a, b in zip(tp2, straight):
        np.testing.assert_array_equal(host(a), host(b))
    assert len(sd["state"][0]["old_dirs"]) == len(saved_dirs)
    for a, b in zip(sd["state"][0]["old_dirs"], saved_dirs):
        np.testing.assert_array_equal(a, b)


def test_lbfgs_loads_a_state_dict_converted_from_torch():
    """torch's LBFGS state (0-d tensors in ro, al and H_diag) converted to NumPy loads, and
    the next steps are torch's."""
    kwargs = dict(max_iter=4, history_size=3, line_search_fn="strong_wolfe")
    _, _, pp, popt, _ = lbfgs_both("tanh_net", kwargs, 2, check=False)

    def to_numpy(v):
        if isinstance(v, list):
            return [to_numpy(a) for a in v]
        return v.detach().numpy() if isinstance(v, torch.Tensor) else v
    psd = popt.state_dict()
    sd = {"state": {i: {k: to_numpy(v) for k, v in s.items()} for i, s in psd["state"].items()},
          "param_groups": psd["param_groups"]}
    tp = td_params([p.detach().numpy() for p in pp])
    topt = optim.LBFGS(tp)
    topt.load_state_dict(sd)
    assert isinstance(topt.state[tp[0]]["H_diag"], float) and isinstance(topt.state[tp[0]]["ro"][0], float)

    def tclosure():
        topt.zero_grad()
        loss = tanh_net(tp)
        loss.backward()
        return loss

    def pclosure():
        popt.zero_grad()
        loss = tanh_net(pp)
        loss.backward()
        return loss
    for _ in range(2):
        topt.step(tclosure)
        popt.step(pclosure)
    for a, b in zip(tp, pp):
        np.testing.assert_allclose(host(a), b.detach().numpy(), rtol=RTOL, atol=1e-12)
    assert_state_matches(topt, popt, "loaded from torch", atol=1e-12, norm_relative=True)


def test_lbfgs_closure_runs_with_grad_enabled_and_step_returns_its_first_loss():
    p = td.tensor(np.array([3.0, -2.0]), requires_grad=True)
    opt = optim.LBFGS([p], max_iter=3)
    seen, losses = [], []

    def closure():
        seen.append(td.is_grad_enabled())
        opt.zero_grad()
        loss = ((p - 1) ** 4).sum()
        loss.backward()
        losses.append(loss)
        return loss
    sched = lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    with td.no_grad():
        out = opt.step(closure)
    assert out is losses[0] and seen == [True] * 3 and opt.state[p]["func_evals"] == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # stepped the optimizer first: no scheduler warning
        sched.step()
    assert opt.param_groups[0]["lr"] == 0.5


# ---------------------------------------------------------------- arguments
def test_signatures_are_torchs():
    """Names, order, kinds and defaults of every constructor argument."""
    for name in NEW:
        ours = inspect.signature(getattr(optim, name).__init__).parameters
        theirs = inspect.signature(getattr(torch.optim, name).__init__).parameters
        assert list(ours) == list(theirs), name
        for k in theirs:
            assert ours[k].kind == theirs[k].kind, f"{name}.{k}"
            assert ours[k].default == theirs[k].default, f"{name}.{k}: {ours[k].default} vs {theirs[k].default}"


BAD_ARGUMENTS = [
    ("Adamax", dict(lr=-0.1), "Adamax: invalid learning rate lr=-0.1"),
    ("Adamax", dict(eps=-1e-8), "Adamax: invalid eps"),
    ("Adamax", dict(betas=(1.0, 0.999)), "Adamax: invalid beta parameter at index 0: 1.0"),
    ("Adamax", dict(weight_decay=-1), "Adamax: invalid weight_decay=-1"),
    ("NAdam", dict(betas=(0.9, -0.1)), "NAdam: invalid beta parameter at index 1"),
    ("NAdam", dict(momentum_decay=-0.5), "NAdam: invalid momentum_decay=-0.5"),
    ("NAdam", dict(weight_decay=-0.5), "NAdam: invalid weight_decay"),
    ("RAdam", dict(lr=-1e-3), "RAdam: invalid learning rate"),
    ("RAdam", dict(betas=(0.9, 1.0)), "RAdam: invalid beta parameter at index 1: 1.0"),
    ("RAdam", dict(eps=-1.0), "RAdam: invalid eps"),
    ("ASGD", dict(lr=-0.01), "ASGD: invalid learning rate lr=-0.01"),
    ("ASGD", dict(weight_decay=-0.1), "ASGD: invalid weight_decay=-0.1"),
    ("Rprop", dict(lr=-0.01), "Rprop: invalid learning rate"),
    ("Rprop", dict(etas=(1.5, 1.2)), r"Rprop: invalid eta values etas=\(1.5, 1.2\)"),
    ("Rprop", dict(etas=(0.5, 0.9)), "Rprop: invalid eta values"),
    ("Rprop", dict(etas=(0.0, 1.2)), "Rprop: invalid eta values"),
    ("LBFGS", dict(lr=-1), "LBFGS: invalid learning rate lr=-1"),
    # torch takes these two and fails later (an IndexError in the step; a RuntimeError there)
    ("LBFGS", dict(history_size=0), "LBFGS: invalid history_size=0"),
    ("LBFGS", dict(line_search_fn="armijo"), "LBFGS: invalid line_search_fn='armijo'"),
]


@pytest.mark.parametrize("name, kwargs, match", BAD_ARGUMENTS,
                         ids=[f"{n}-{next(iter(kw))}-{i}" for i, (n, kw, _) in enumerate(BAD_ARGUMENTS)])
def test_bad_arguments(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        getattr(optim, name)(td_params(initial_values()), **kwargs)
    if name != "LBFGS" or "lr" in kwargs:           # torch refuses the same values
        with pytest.raises(ValueError):
            getattr(torch.optim, name)(torch_params(initial_values()), **kwargs)
    group = dict(params=td_params(initial_values()), **kwargs)   # in a group: the same check
    with pytest.raises(ValueError, match=match):
        getattr(optim, name)([group])


def test_lbfgs_takes_one_param_group():
    ps = td_params(initial_values())
    with pytest.raises(ValueError, match="LBFGS doesn't support per-parameter options"):
        optim.LBFGS([{"params": ps[:1]}, {"params": ps[1:]}])
    with pytest.raises(ValueError, match="LBFGS doesn't support per-parameter options"):
        optim.LBFGS(ps[:1]).add_param_group({"params": ps[1:]})


def test_lbfgs_step_needs_a_closure():
    opt = optim.LBFGS(td_params(initial_values()))
    with pytest.raises(TypeError, match="LBFGS.step needs a closure"):
        opt.step()
    with pytest.raises(TypeError, match="got 3"):
        opt.step(3)


@pytest.mark.parametrize("name", NEW[:-1])
def test_torch_flags(name):
    """foreach is accepted (the loop is tinydl's dispatcher's); differentiable and
    capturable are refused, as for RMSprop and Adagrad; no fused (torch has none here either)."""
    ps = td_params(initial_values())
    getattr(optim, name)(ps, foreach=True)
    getattr(optim, name)(ps, foreach=False, capturable=False, differentiable=False)
    with pytest.raises(NotImplementedError, match=f"{name}: differentiable=True"):
        getattr(optim, name)(ps, differentiable=True)
    with pytest.raises(NotImplementedError, match=f"{name}: capturable=True"):
        getattr(optim, name)(ps, capturable=True)
    with pytest.raises(TypeError):
        getattr(optim, name)(ps, fused=True)
    with pytest.raises(TypeError):
        getattr(torch.optim, name)(torch_params(initial_values()), fused=True)


# ---------------------------------------------------------------- devices
@pytest.mark.parametrize("name, kwargs", [
    ("Adamax", dict(lr=0.05, weight_decay=0.1)),
    ("NAdam", dict(lr=0.05, decoupled_weight_decay=True, weight_decay=0.1)),
    ("RAdam", dict(lr=0.05, betas=(0.8, 0.9))),
    ("ASGD", dict(lr=0.05, lambd=0.1, t0=2)),
    ("Rprop", dict(lr=0.1, step_sizes=(0.05, 0.2))),
])
def test_device_matches_cpu(device, name, kwargs):
    values, grads = initial_values(), gradients(6)
    ref, dev = td_params(values), td_params(values, device=device)
    ropt, dopt = getattr(optim, name)(ref, **kwargs), getattr(optim, name)(dev, **kwargs)
    for g in grads:
        set_td_grads(ref, g)
        set_td_grads(dev, g, device=device)
        ropt.step()
        dopt.step()
    for a, b in zip(dev, ref):
        np.testing.assert_allclose(host(a), host(b), rtol=1e-9, atol=1e-12)
    for load in (False, True):
        if load:                    # a CPU checkpoint loads onto the device's parameters
            dopt.load_state_dict(ropt.state_dict())
        for p, state in dopt.state.items():
            for k, v in state.items():
                if hasattr(v, "shape"):
                    assert device_of(v) == p.device, f"{name} state {k} left the parameter's device"


def test_lbfgs_device_matches_cpu(device):
    kwargs = dict(max_iter=5, history_size=3, line_search_fn="strong_wolfe")
    values = tanh_net_start()
    results = []
    for where in ("cpu", device):
        ps = td_params(values, device=where)
        opt = optim.LBFGS(ps, **kwargs)

        def closure(ps=ps, opt=opt, where=where):
            opt.zero_grad()
            h = (td.tensor(_X, device=where) @ ps[0] + ps[1]).tanh()
            loss = ((h @ ps[2] - td.tensor(_Y, device=where)) ** 2).mean()
            loss.backward()
            return loss
        for _ in range(2):
            opt.step(closure)
        state = opt.state[ps[0]]
        for v in [state["d"], state["prev_flat_grad"]] + state["old_dirs"] + state["old_stps"]:
            assert device_of(v) == ps[0].device
        opt.load_state_dict(opt.state_dict())
        assert all(device_of(v) == ps[0].device for v in opt.state[ps[0]]["old_dirs"])
        results.append([host(p) for p in ps])
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
