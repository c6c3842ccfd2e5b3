"""tinydl.optim and tinydl.optim.lr_scheduler against torch.optim.

Optimizers: from the same float64 parameters (three tensors; the middle one never
gets a gradient, so it must be skipped), feed the same 12 random gradients to
tinydl and torch and compare the parameters after every step (rtol 1e-9).
Schedulers: the lr sequence over 30 epochs must equal torch's.
"""
import warnings

import numpy as np
import pytest
import torch

import tinydl as td
import tinydl.optim as optim
from tinydl.backend import device_of
from tinydl.optim import lr_scheduler

SHAPES = [(3, 4), (5,), (2, 3, 2)]
NO_GRAD = 1            # index of the parameter that never gets a gradient
STEPS = 12
RTOL, ATOL = 1e-9, 1e-12


def initial_values(seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s) for s in SHAPES]


def gradient_sequence(steps=STEPS, seed=1):
    """Per step, one gradient per parameter (None for NO_GRAD), magnitudes varying
    over steps and coordinates so the adaptive methods see something non-trivial."""
    rng = np.random.default_rng(seed)
    seq = []
    for _ in range(steps):
        seq.append([None if i == NO_GRAD else
                    rng.standard_normal(s) * rng.uniform(0.1, 3.0, size=s) for i, s in enumerate(SHAPES)])
    return seq


def td_params(values, dtype=np.float64, device=None):
    return [td.tensor(v.astype(dtype), device=device, requires_grad=True) for v in values]


def torch_params(values, dtype=torch.float64):
    return [torch.tensor(v, dtype=dtype, requires_grad=True) for v in values]


def host(p):
    d = p.array
    return d.get() if hasattr(d, "get") else np.asarray(d)


def set_td_grads(params, grads, device=None):
    for p, g in zip(params, grads):
        p.grad = None if g is None else td.tensor(g.astype(p.dtype), device=device)


def set_torch_grads(params, grads):
    for p, g in zip(params, grads):
        p.grad = None if g is None else torch.tensor(g, dtype=p.dtype)


def run_both(td_cls, torch_cls, kwargs, steps=STEPS, check_every_step=True):
    """Run tinydl and torch side by side; assert equal params after each step."""
    values, grads = initial_values(), gradient_sequence(steps)
    tp, pp = td_params(values), torch_params(values)
    topt, popt = td_cls(tp, **kwargs), torch_cls(pp, **kwargs)
    for step, g in enumerate(grads):
        set_td_grads(tp, g)
        set_torch_grads(pp, g)
        topt.step()
        popt.step()
        if check_every_step or step == steps - 1:
            for i, (a, b) in enumerate(zip(tp, pp)):
                np.testing.assert_allclose(host(a), b.detach().numpy(), rtol=RTOL, atol=ATOL,
                                           err_msg=f"{td_cls.__name__}({kwargs}) param {i} step {step + 1}")
    return tp, topt, pp, popt


# ---------------------------------------------------------------- the grid
CASES = [
    (optim.SGD, torch.optim.SGD, dict(lr=0.1)),
    (optim.SGD, torch.optim.SGD, dict(lr=0.1, momentum=0.9)),
    (optim.SGD, torch.optim.SGD, dict(lr=0.1, momentum=0.9, dampening=0.3)),
    (optim.SGD, torch.optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True)),
    (optim.SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.01)),
    (optim.SGD, torch.optim.SGD, dict(lr=0.1, weight_decay=0.05)),
    (optim.SGD, torch.optim.SGD, dict(lr=0.1, momentum=0.5, dampening=0.5, weight_decay=0.01, maximize=True)),
    (optim.SGD, torch.optim.SGD, dict()),
    (optim.Adam, torch.optim.Adam, dict()),
    (optim.Adam, torch.optim.Adam, dict(lr=0.05, amsgrad=True)),
    (optim.Adam, torch.optim.Adam, dict(lr=0.05, weight_decay=0.1)),
    (optim.Adam, torch.optim.Adam, dict(lr=0.05, weight_decay=0.1, amsgrad=True, maximize=True)),
    (optim.Adam, torch.optim.Adam, dict(lr=0.02, betas=(0.5, 0.9), eps=1e-3)),
    (optim.AdamW, torch.optim.AdamW, dict()),
    (optim.AdamW, torch.optim.AdamW, dict(lr=0.05, weight_decay=0.1, amsgrad=True)),
    (optim.AdamW, torch.optim.AdamW, dict(lr=0.05, maximize=True, betas=(0.8, 0.99))),
    (optim.Adagrad, torch.optim.Adagrad, dict()),
    (optim.Adagrad, torch.optim.Adagrad, dict(lr=0.1, lr_decay=0.1)),
    (optim.Adagrad, torch.optim.Adagrad, dict(lr=0.1, weight_decay=0.1, initial_accumulator_value=0.5)),
    (optim.Adagrad, torch.optim.Adagrad, dict(lr=0.1, eps=1e-3, maximize=True)),
    (optim.RMSprop, torch.optim.RMSprop, dict()),
    (optim.RMSprop, torch.optim.RMSprop, dict(lr=0.01, momentum=0.9)),
    (optim.RMSprop, torch.optim.RMSprop, dict(lr=0.01, centered=True)),
    (optim.RMSprop, torch.optim.RMSprop, dict(lr=0.01, centered=True, momentum=0.5, weight_decay=0.1)),
    (optim.RMSprop, torch.optim.RMSprop, dict(lr=0.01, alpha=0.9, eps=1e-4, maximize=True)),
    (optim.Adadelta, torch.optim.Adadelta, dict()),
    (optim.Adadelta, torch.optim.Adadelta, dict(rho=0.5, weight_decay=0.1)),
    (optim.Adadelta, torch.optim.Adadelta, dict(lr=0.5, eps=1e-4, maximize=True)),
]


def case_id(case):
    td_cls, _, kw = case
    return td_cls.__name__ + "-" + ("-".join(f"{k}={v}" for k, v in kw.items()) or "defaults")


@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_matches_torch_every_step(case):
    td_cls, torch_cls, kwargs = case
    values = initial_values()
    tp, topt, _, popt = run_both(td_cls, torch_cls, kwargs)
    # the parameter without a gradient is untouched, and has no state (Adagrad
    # creates its state up front, as PyTorch does)
    np.testing.assert_array_equal(host(tp[NO_GRAD]), values[NO_GRAD])
    if td_cls is not optim.Adagrad:
        assert tp[NO_GRAD] not in topt.state
    # same state entries as torch, with the same numbers
    tsd, psd = topt.state_dict(), popt.state_dict()
    assert sorted(tsd["state"]) == sorted(psd["state"])
    for i, pstate in psd["state"].items():
        assert set(tsd["state"][i]) == set(pstate), f"param {i}: {set(tsd['state'][i])} vs {set(pstate)}"
        for k, v in pstate.items():
            if k == "step":
                assert tsd["state"][i][k] == int(v.item()) and isinstance(tsd["state"][i][k], int)
            else:
                np.testing.assert_allclose(tsd["state"][i][k], v.numpy(), rtol=RTOL, atol=ATOL)
    assert [g["params"] for g in tsd["param_groups"]] == [g["params"] for g in psd["param_groups"]]


def test_param_groups_with_own_options_match_torch():
    values, grads = initial_values(), gradient_sequence()
    tp, pp = td_params(values), torch_params(values)

    def groups(ps):
        return [{"params": [ps[0]], "lr": 0.01, "momentum": 0.5},
                {"params": [ps[1], ps[2]], "nesterov": True, "weight_decay": 0.1}]
    topt = optim.SGD(groups(tp), lr=0.1, momentum=0.9)
    popt = torch.optim.SGD(groups(pp), lr=0.1, momentum=0.9)
    assert topt.param_groups[0]["momentum"] == 0.5 and topt.param_groups[1]["momentum"] == 0.9
    for g in grads:
        set_td_grads(tp, g)
        set_torch_grads(pp, g)
        topt.step()
        popt.step()
        for a, b in zip(tp, pp):
            np.testing.assert_allclose(host(a), b.detach().numpy(), rtol=RTOL, atol=ATOL)
    assert topt.state_dict()["param_groups"][1]["params"] == [1, 2]


def test_add_param_group_later():
    values, grads = initial_values(), gradient_sequence()
    tp, pp = td_params(values), torch_params(values)
    topt, popt = optim.Adam(tp[:1], lr=0.01), torch.optim.Adam(pp[:1], lr=0.01)
    for step, g in enumerate(grads):
        if step == 4:
            topt.add_param_group({"params": tp[1:], "lr": 0.1, "amsgrad": True})
            popt.add_param_group({"params": pp[1:], "lr": 0.1, "amsgrad": True})
        set_td_grads(tp, g)
        set_torch_grads(pp, g)
        topt.step()
        popt.step()
    for a, b in zip(tp, pp):
        np.testing.assert_allclose(host(a), b.detach().numpy(), rtol=RTOL, atol=ATOL)


# ---------------------------------------------------------------- dtypes
FLOAT32_CASES = [
    (optim.SGD, torch.optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01, maximize=True)),
    (optim.Adam, torch.optim.Adam, dict(lr=0.01, weight_decay=0.1, amsgrad=True)),
    (optim.AdamW, torch.optim.AdamW, dict(lr=0.01, weight_decay=0.1)),
    (optim.Adagrad, torch.optim.Adagrad, dict(lr=0.1, lr_decay=0.1, weight_decay=0.1)),
    (optim.RMSprop, torch.optim.RMSprop, dict(lr=0.01, centered=True, momentum=0.5, weight_decay=0.1)),
    (optim.Adadelta, torch.optim.Adadelta, dict(weight_decay=0.1)),
]


@pytest.mark.parametrize("case", FLOAT32_CASES, ids=[c[0].__name__ for c in FLOAT32_CASES])
def test_float32_stays_float32(case):
    td_cls, torch_cls, kwargs = case
    values, grads = initial_values(), gradient_sequence()
    tp, pp = td_params(values, np.float32), torch_params(values, torch.float32)
    # NumPy float64 scalars as hyperparameters must not promote float32 arrays
    kw = {k: (np.float64(v) if isinstance(v, float) else v) for k, v in kwargs.items()}
    topt, popt = td_cls(tp, **kw), torch_cls(pp, **kwargs)
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
            else:
                assert v.dtype == np.float32, f"state {k} is {v.dtype}"


# ---------------------------------------------------------------- state_dict
ROUND_TRIP_CASES = [
    (optim.SGD, torch.optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
    (optim.Adam, torch.optim.Adam, dict(lr=0.05, amsgrad=True, weight_decay=0.1)),
    (optim.AdamW, torch.optim.AdamW, dict(lr=0.05)),
    (optim.Adagrad, torch.optim.Adagrad, dict(lr=0.1, lr_decay=0.05)),
    (optim.RMSprop, torch.optim.RMSprop, dict(lr=0.01, centered=True, momentum=0.9)),
    (optim.Adadelta, torch.optim.Adadelta, dict(rho=0.8)),
]


@pytest.mark.parametrize("case", ROUND_TRIP_CASES, ids=[c[0].__name__ for c in ROUND_TRIP_CASES])
def test_state_dict_round_trip(case):
    td_cls, torch_cls, kwargs = case
    values, grads = initial_values(), gradient_sequence()
    straight, _, pp, _ = run_both(td_cls, torch_cls, kwargs, check_every_step=False)

    tp = td_params(values)
    opt = td_cls(tp, **kwargs)
    for g in grads[:5]:
        set_td_grads(tp, g)
        opt.step()
    sd = opt.state_dict()
    saved = {i: {k: (v.copy() if hasattr(v, "copy") else v) for k, v in s.items()} for i, s in sd["state"].items()}

    # a fresh model (same values) and a fresh optimizer built with other options:
    # the loaded param_groups bring the saved options back
    tp2 = td_params([host(p) for p in tp])
    opt2 = td_cls(tp2, lr=123.0)
    opt2.load_state_dict(sd)
    assert opt2.param_groups[0]["lr"] == kwargs.get("lr", opt.defaults["lr"])
    assert opt2.param_groups[0]["params"][0] is tp2[0]
    for g in grads[5:]:
        set_td_grads(tp2, g)
        opt2.step()
    for a, b, c in zip(tp2, straight, pp):
        np.testing.assert_allclose(host(a), host(b), rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(host(a), c.detach().numpy(), rtol=RTOL, atol=ATOL)
    # training on after loading did not write into the loaded dict
    for i, s in saved.items():
        for k, v in s.items():
            np.testing.assert_array_equal(sd["state"][i][k], v)


def test_load_state_dict_casts_to_param_dtype_and_checks_sizes():
    values, grads = initial_values(), gradient_sequence()
    tp = td_params(values)
    opt = optim.Adam(tp, lr=0.01)
    set_td_grads(tp, grads[0])
    opt.step()
    sd = opt.state_dict()
    tp32 = td_params(values, np.float32)
    opt32 = optim.Adam(tp32)
    opt32.load_state_dict(sd)
    assert opt32.state[tp32[0]]["exp_avg"].dtype == np.float32
    assert opt32.state[tp32[0]]["step"] == 1
    with pytest.raises(ValueError, match="parameter group 0 has 3 parameters"):
        optim.Adam(tp32[:2]).load_state_dict(sd)
    with pytest.raises(ValueError, match="parameter groups"):
        optim.Adam([{"params": tp32[:1]}, {"params": tp32[1:]}]).load_state_dict(sd)


def test_load_torch_style_step_tensor():
    # PyTorch keeps 'step' as a float tensor; a converted checkpoint still loads
    values, grads = initial_values(), gradient_sequence()
    _, _, pp, popt = run_both(optim.Adam, torch.optim.Adam, dict(lr=0.01), steps=3)
    psd = popt.state_dict()
    sd = {"state": {i: {k: v.numpy() for k, v in s.items()} for i, s in psd["state"].items()},
          "param_groups": [{k: v for k, v in g.items() if k in ("lr", "betas", "eps", "weight_decay",
                                                                 "amsgrad", "maximize", "params")}
                           for g in psd["param_groups"]]}
    tp = td_params([p.detach().numpy() for p in pp])
    opt = optim.Adam(tp)
    opt.load_state_dict(sd)
    assert opt.state[tp[0]]["step"] == 3
    for g in grads[3:6]:
        set_td_grads(tp, g)
        set_torch_grads(pp, g)
        opt.step()
        popt.step()
    for a, b in zip(tp, pp):
        np.testing.assert_allclose(host(a), b.detach().numpy(), rtol=RTOL, atol=ATOL)


# ---------------------------------------------------------------- SGD vs the notes
def notes_momentum(values, grads, lr, momentum):
    """The study notes' momentum: v = momentum * v - lr * g; x += v (lr per step)."""
    xs = [v.copy() for v in values]
    vs = [np.zeros_like(v) for v in values]
    history = []
    for step, gs in enumerate(grads):
        for x, v, g in zip(xs, vs, gs):
            if g is None:
                continue
            v *= momentum
            v -= lr[step] * g
            x += v
        history.append([x.copy() for x in xs])
    return history


def test_sgd_notes_form_matches_under_constant_lr():
    values, grads = initial_values(), gradient_sequence()
    tp = td_params(values)
    opt = optim.SGD(tp, lr=0.05, momentum=0.9)
    expected = notes_momentum(values, grads, [0.05] * STEPS, 0.9)
    for g, exp in zip(grads, expected):
        before = host(tp[0]).copy()
        set_td_grads(tp, g)
        opt.step()
        for p, e in zip(tp, exp):
            np.testing.assert_allclose(host(p), e, rtol=1e-9, atol=1e-12)
        # the notes' velocity v (the step just taken) is -lr * PyTorch's buffer
        np.testing.assert_allclose(host(tp[0]) - before, -0.05 * opt.state[tp[0]]["momentum_buffer"],
                                   rtol=1e-9, atol=1e-12)


def test_sgd_notes_form_differs_when_lr_changes():
    values, grads = initial_values(), gradient_sequence()
    lrs = [0.05] * 6 + [0.005] * 6            # a /10 decay at step 6
    tp = td_params(values)
    opt = optim.SGD(tp, lr=0.05, momentum=0.9)
    for step, g in enumerate(grads):
        opt.param_groups[0]["lr"] = lrs[step]
        set_td_grads(tp, g)
        opt.step()
    notes = notes_momentum(values, grads, lrs, 0.9)[-1]
    assert not np.allclose(host(tp[0]), notes[0], rtol=1e-3)


# ---------------------------------------------------------------- API behaviour
def test_step_skips_none_grads_and_runs_closure():
    p = td.tensor(np.array([1.0, 2.0]), requires_grad=True)
    q = td.tensor(np.array([3.0]), requires_grad=True)
    opt = optim.SGD([p, q], lr=0.5)
    calls = []

    def closure():
        calls.append(td.is_grad_enabled())
        opt.zero_grad()
        loss = (p * p).sum()
        loss.backward()
        return loss

    with td.no_grad():
        loss = opt.step(closure)
    assert calls == [True] and float(loss.item()) == 5.0
    np.testing.assert_allclose(p.array, [0.0, 0.0])      # x - 0.5 * 2x
    np.testing.assert_array_equal(q.array, [3.0])         # no grad: untouched


def test_zero_grad():
    a = td.tensor(np.array([1.0, 2.0]), requires_grad=True)
    b = td.tensor(np.array([3.0, 4.0]), requires_grad=True)
    (a + b).backward(td.tensor(np.array([1.0, 1.0])))
    opt = optim.SGD([a, b], lr=0.1)
    shared = b.grad.array                   # may be the very array a.grad holds
    opt.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(a.grad.array, [0.0, 0.0])
    np.testing.assert_array_equal(shared, [1.0, 1.0])    # not zeroed in place
    opt.zero_grad()
    assert a.grad is None and b.grad is None


def test_step_does_not_write_into_grads():
    values, grads = initial_values(), gradient_sequence()
    for td_cls, _, kwargs in CASES:
        tp = td_params(values)
        opt = td_cls(tp, **kwargs)
        for g in grads[:3]:
            set_td_grads(tp, g)
            before = [None if p.grad is None else p.grad.array.copy() for p in tp]
            opt.step()
            for p, b in zip(tp, before):
                if b is not None:
                    np.testing.assert_array_equal(p.grad.array, b, err_msg=f"{td_cls.__name__}({kwargs})")


def test_named_parameters_and_repr():
    tp = td_params(initial_values())
    opt = optim.SGD([("w", tp[0]), ("b", tp[1])], lr=0.1)
    assert opt.param_groups[0]["param_names"] == ["w", "b"]
    assert "Parameter Group 0" in repr(opt) and "lr: 0.1" in repr(opt)


@pytest.mark.parametrize("make, match", [
    (lambda ps: optim.SGD(ps, lr=-0.1), "invalid learning rate"),
    (lambda ps: optim.SGD(ps, lr=0.1, momentum=-1), "invalid momentum"),
    (lambda ps: optim.SGD(ps, lr=0.1, weight_decay=-1), "invalid weight_decay"),
    (lambda ps: optim.SGD(ps, lr=0.1, nesterov=True), "nesterov=True needs momentum > 0"),
    (lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), "dampening = 0"),
    (lambda ps: optim.SGD([{"params": ps, "lr": -1.0}]), "invalid learning rate"),
    (lambda ps: optim.Adam(ps, betas=(1.0, 0.999)), "beta parameter at index 0"),
    (lambda ps: optim.Adam(ps, betas=(0.9, -0.1)), "beta parameter at index 1"),
    (lambda ps: optim.AdamW(ps, eps=-1e-8), "invalid eps"),
    (lambda ps: optim.Adagrad(ps, lr_decay=-1), "invalid lr_decay"),
    (lambda ps: optim.RMSprop(ps, alpha=-0.5), "invalid alpha"),
    (lambda ps: optim.Adadelta(ps, rho=1.5), "invalid rho"),
    (lambda ps: optim.SGD(ps[0], lr=0.1), "single Tensor"),
    (lambda ps: optim.SGD([], lr=0.1), "empty parameter list"),
    (lambda ps: optim.SGD(set(ps), lr=0.1), "not a set"),
    (lambda ps: optim.SGD([ps[0], np.zeros(3)], lr=0.1), "parameter 1 is a ndarray"),
    (lambda ps: optim.SGD([ps[0] * 2], lr=0.1), "non-leaf"),
    (lambda ps: optim.SGD([{"params": ps[:2]}, {"params": ps[1:]}], lr=0.1), "more than one parameter group"),
    (lambda ps: _NeedsLR(ps), "required optimization parameter lr"),
])
def test_bad_arguments(make, match):
    ps = td_params(initial_values())
    with pytest.raises((ValueError, TypeError), match=match):
        make(ps)


class _NeedsLR(optim.Optimizer):
    def __init__(self, params):
        super().__init__(params, dict(lr=optim.required))


# ---------------------------------------------------------------- devices
@pytest.mark.parametrize("td_cls, kwargs", [
    (optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
    (optim.SGD, dict(lr=0.1, momentum=0.8, dampening=0.3, maximize=True)),
    (optim.Adam, dict(lr=0.05, amsgrad=True)),
    (optim.AdamW, dict(lr=0.05)),
    (optim.Adagrad, dict(lr=0.1)),
    (optim.RMSprop, dict(lr=0.01, centered=True, momentum=0.9)),
    (optim.Adadelta, dict()),
], ids=lambda v: v.__name__ if isinstance(v, type) else "")
def test_device_matches_cpu(device, td_cls, kwargs):
    values, grads = initial_values(), gradient_sequence(6)
    ref, dev = td_params(values), td_params(values, device=device)
    ropt, dopt = td_cls(ref, **kwargs), td_cls(dev, **kwargs)
    for g in grads:
        set_td_grads(ref, g)
        set_td_grads(dev, g, device=device)
        ropt.step()
        dopt.step()
    for a, b in zip(dev, ref):
        assert a.device == td.device(device) if device == "cpu" else a.device.type == "cuda"
        np.testing.assert_allclose(host(a), host(b), rtol=1e-9, atol=1e-12)
    for p, state in dopt.state.items():
        for k, v in state.items():
            if k != "step":
                assert device_of(v) == p.device, f"state {k} left the parameter's device"
    # a CPU checkpoint loads onto the device's parameters, and back
    dopt.load_state_dict(ropt.state_dict())
    for p, state in dopt.state.items():
        for k, v in state.items():
            if k != "step":
                assert device_of(v) == p.device


# ---------------------------------------------------------------- schedulers
def _two_group_optimizers():
    values = initial_values()
    tp, pp = td_params(values), torch_params(values)
    topt = optim.SGD([{"params": tp[:1]}, {"params": tp[1:], "lr": 0.3}], lr=1.0, momentum=0.9)
    popt = torch.optim.SGD([{"params": pp[:1]}, {"params": pp[1:], "lr": 0.3}], lr=1.0, momentum=0.9)
    return topt, popt


def _lr_sequence(opt, sched, epochs=30, metrics=None):
    seq = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")    # optimizer.step() without gradients
        for epoch in range(epochs):
            seq.append((list(sched.get_last_lr()), [g["lr"] for g in opt.param_groups]))
            opt.step()
            if metrics is None:
                sched.step()
            else:
                sched.step(metrics[epoch])
    seq.append((list(sched.get_last_lr()), [g["lr"] for g in opt.param_groups]))
    return seq


SCHEDULERS = [
    ("StepLR", dict(step_size=7, gamma=0.5)),
    ("StepLR", dict(step_size=1)),
    ("MultiStepLR", dict(milestones=[5, 12, 12, 20], gamma=0.3)),
    ("ExponentialLR", dict(gamma=0.9)),
    ("CosineAnnealingLR", dict(T_max=10, eta_min=0.001)),
    ("CosineAnnealingLR", dict(T_max=7)),
    ("LambdaLR", dict(lr_lambda=lambda e: 0.95 ** e + 0.01 * (e % 3))),
    ("LinearLR", dict(start_factor=0.25, total_iters=8)),
    ("LinearLR", dict(start_factor=1.0, end_factor=0.1, total_iters=12)),
]


@pytest.mark.parametrize("name, kwargs", SCHEDULERS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(SCHEDULERS)])
def test_scheduler_matches_torch(name, kwargs):
    topt, popt = _two_group_optimizers()
    tseq = _lr_sequence(topt, getattr(lr_scheduler, name)(topt, **kwargs))
    pseq = _lr_sequence(popt, getattr(torch.optim.lr_scheduler, name)(popt, **kwargs))
    assert topt.param_groups[0]["initial_lr"] == 1.0 and topt.param_groups[1]["initial_lr"] == 0.3
    for epoch, (a, b) in enumerate(zip(tseq, pseq)):
        np.testing.assert_allclose(a, b, rtol=1e-14, atol=0, err_msg=f"epoch {epoch}")


@pytest.mark.parametrize("name, kwargs", [
    ("StepLR", dict(step_size=4, gamma=0.5)),
    ("MultiStepLR", dict(milestones=[3, 8])),
    ("ExponentialLR", dict(gamma=0.8)),
    ("CosineAnnealingLR", dict(T_max=10)),
    ("LinearLR", dict(total_iters=6)),
])
def test_scheduler_step_with_epoch_uses_closed_form(name, kwargs):
    topt, popt = _two_group_optimizers()
    ts, ps = getattr(lr_scheduler, name)(topt, **kwargs), getattr(torch.optim.lr_scheduler, name)(popt, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for epoch in [3, 9, 5, 14]:
            ts.step(epoch)
            ps.step(epoch)
            assert ts.get_last_lr() == pytest.approx(ps.get_last_lr(), rel=1e-14)


PLATEAU_METRICS = ([10, 9, 8, 8, 8, 8, 8.0005, 7, 7, 7, 7, 7, 7, 7, 6.99, 6.98, 7]
                   + [7.5] * 6 + [5, 5, 4.9999, 5, 5, 5, 5, 5] + [5] * 8)


@pytest.mark.parametrize("kwargs", [
    dict(factor=0.5, patience=2, cooldown=2, min_lr=0.05),
    dict(factor=0.5, patience=0, min_lr=[0.2, 0.05], threshold=0.01, threshold_mode="abs"),
    dict(mode="max", factor=0.3, patience=1, cooldown=1, min_lr=0.001),
    dict(mode="max", factor=0.3, patience=3, threshold=0.05, threshold_mode="abs", eps=0.1),
    dict(),
])
def test_reduce_lr_on_plateau_matches_torch(kwargs):
    metrics = PLATEAU_METRICS if kwargs.get("mode", "min") == "min" else [-m for m in PLATEAU_METRICS]
    topt, popt = _two_group_optimizers()
    tseq = _lr_sequence(topt, lr_scheduler.ReduceLROnPlateau(topt, **kwargs), len(metrics), metrics)
    pseq = _lr_sequence(popt, torch.optim.lr_scheduler.ReduceLROnPlateau(popt, **kwargs), len(metrics), metrics)
    assert tseq == pseq
    assert len({tuple(lrs) for _, lrs in tseq}) > (1 if not kwargs else 2)   # the lr did change


@pytest.mark.parametrize("name, kwargs", [
    ("StepLR", dict(step_size=4, gamma=0.5)),
    ("MultiStepLR", dict(milestones=[3, 8, 14], gamma=0.2)),
    ("CosineAnnealingLR", dict(T_max=12, eta_min=0.01)),
    ("ExponentialLR", dict(gamma=0.8)),
    ("LinearLR", dict(total_iters=15)),
    ("ReduceLROnPlateau", dict(factor=0.5, patience=1, cooldown=1)),
])
def test_scheduler_state_dict_round_trip(name, kwargs):
    metrics = PLATEAU_METRICS[:30] if name == "ReduceLROnPlateau" else None

    def stepper(sched, epoch):
        if metrics is None:
            sched.step()
        else:
            sched.step(metrics[epoch])

    topt, _ = _two_group_optimizers()
    sched = getattr(lr_scheduler, name)(topt, **kwargs)
    straight = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for epoch in range(30):
            topt.step()
            stepper(sched, epoch)
            straight.append(sched.get_last_lr())

        topt, _ = _two_group_optimizers()
        sched = getattr(lr_scheduler, name)(topt, **kwargs)
        resumed = []
        for epoch in range(10):
            topt.step()
            stepper(sched, epoch)
            resumed.append(sched.get_last_lr())
        osd, ssd = topt.state_dict(), sched.state_dict()
        assert "optimizer" not in ssd

        topt2, _ = _two_group_optimizers()
        sched2 = getattr(lr_scheduler, name)(topt2, **kwargs)   # PyTorch's order: scheduler,
        topt2.load_state_dict(osd)                               # then the optimizer state,
        sched2.load_state_dict(ssd)                              # then the scheduler state
        for epoch in range(10, 30):
            topt2.step()
            stepper(sched2, epoch)
            resumed.append(sched2.get_last_lr())
    assert resumed == straight


def test_checkpoint_through_td_save(tmp_path):
    """Optimizer and scheduler state survive td.save / td.load (npz + JSON, no pickle)."""
    if not hasattr(td, "save"):
        pytest.skip("td.save is not available yet")
    values, grads = initial_values(), gradient_sequence()
    tp = td_params(values)
    opt = optim.Adam(tp, lr=0.05, amsgrad=True)
    sched = lr_scheduler.MultiStepLR(opt, milestones=[2, 4, 4], gamma=0.5)
    for g in grads[:5]:
        set_td_grads(tp, g)
        opt.step()
        sched.step()
    td.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict()}, tmp_path / "ckpt.npz")
    ckpt = td.load(tmp_path / "ckpt.npz")

    tp2 = td_params([host(p) for p in tp])
    opt2 = optim.Adam(tp2, lr=0.05, amsgrad=True)
    sched2 = lr_scheduler.MultiStepLR(opt2, milestones=[2, 4, 4], gamma=0.5)
    opt2.load_state_dict(ckpt["optimizer"])
    sched2.load_state_dict(ckpt["scheduler"])
    for g in grads[5:]:
        for o, s, ps in ((opt, sched, tp), (opt2, sched2, tp2)):
            set_td_grads(ps, g)
            o.step()
            s.step()
    for a, b in zip(tp, tp2):
        np.testing.assert_allclose(host(a), host(b), rtol=RTOL, atol=ATOL)
    assert sched2.get_last_lr() == sched.get_last_lr()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sched2.step(3)    # the closed form needs the milestones as a Counter again
    assert sched2.get_last_lr() == [0.05 * 0.5]


def test_scheduler_changes_the_lr_the_optimizer_uses():
    values, grads = initial_values(), gradient_sequence(STEPS)
    tp, pp = td_params(values), torch_params(values)
    topt, popt = optim.SGD(tp, lr=0.1), torch.optim.SGD(pp, lr=0.1)
    tsched = lr_scheduler.StepLR(topt, step_size=3, gamma=0.1)
    psched = torch.optim.lr_scheduler.StepLR(popt, step_size=3, gamma=0.1)
    for step, g in enumerate(grads):
        before = host(tp[0]).copy()
        set_td_grads(tp, g)
        set_torch_grads(pp, g)
        topt.step()
        popt.step()
        # plain SGD: the step taken is exactly -lr * g with the scheduled lr
        np.testing.assert_allclose(host(tp[0]) - before, -(0.1 * 0.1 ** (step // 3)) * g[0], rtol=1e-9)
        for a, b in zip(tp, pp):
            np.testing.assert_allclose(host(a), b.detach().numpy(), rtol=RTOL, atol=ATOL)
        tsched.step()
        psched.step()


def test_scheduler_warns_when_stepped_before_optimizer():
    topt, _ = _two_group_optimizers()
    sched = lr_scheduler.StepLR(topt, step_size=2)
    with pytest.warns(UserWarning, match="before optimizer.step"):
        sched.step()
    topt, _ = _two_group_optimizers()
    sched = lr_scheduler.StepLR(topt, step_size=2)
    topt.step()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sched.step()


def test_scheduler_bad_arguments():
    topt, _ = _two_group_optimizers()
    with pytest.raises(TypeError, match="Optimizer"):
        lr_scheduler.StepLR(object(), step_size=3)
    with pytest.raises(ValueError, match="step_size"):
        lr_scheduler.StepLR(topt, step_size=0)
    with pytest.raises(ValueError, match="T_max"):
        lr_scheduler.CosineAnnealingLR(topt, T_max=0)
    with pytest.raises(ValueError, match="factor should be < 1.0"):
        lr_scheduler.ReduceLROnPlateau(topt, factor=2.0)
    with pytest.raises(ValueError, match="mode 'up' is unknown"):
        lr_scheduler.ReduceLROnPlateau(topt, mode="up")
    with pytest.raises(ValueError, match="expected 2 min_lrs"):
        lr_scheduler.ReduceLROnPlateau(topt, min_lr=[0.1])
    with pytest.raises(KeyError, match="initial_lr"):
        lr_scheduler.StepLR(topt, step_size=3, last_epoch=5)


def test_a_parameter_listed_twice_in_a_group_warns_at_the_callers_line_as_pytorch():
    torch = pytest.importorskip("torch")
    tw = torch.zeros(3, requires_grad=True)
    with pytest.warns(UserWarning, match="duplicate parameters"):
        torch.optim.SGD([tw, tw], lr=0.1)
    w, v = td.zeros(3, requires_grad=True), td.zeros(2, requires_grad=True)
    for make in (lambda: optim.SGD([w, v, w], lr=0.1), lambda: optim.Adam([{"params": [w, v, w]}])):
        with pytest.warns(UserWarning, match=r"lists the same parameter twice \(positions 0 and 2 \(shape \(3,\)\)\)") \
                as record:
            make()
        assert record[0].filename == __file__                 # points at the user's line, not tinydl's
    opt = optim.SGD([v], lr=0.1)
    with pytest.warns(UserWarning, match="positions 0 and 1") as record:
        opt.add_param_group({"params": [w, w]})
    assert record[0].filename == __file__


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("options", [dict(momentum=0.9), dict(momentum=0.9, nesterov=True, weight_decay=1e-3),
                                     dict(momentum=0.5, dampening=0.3, maximize=True),
                                     dict(momentum=0.9, weight_decay=5e-4)], ids=["plain", "nesterov_wd",
                                                                                  "dampening_max", "wd"])
def test_fused_numba_sgd_is_the_plain_update_bit_for_bit(dtype, options):
    """From the second step on, SGD with momentum runs one Numba kernel per parameter on the
    CPU; it rounds as the plain array update does (run under td.backends.reference())."""
    rng = np.random.default_rng(5)
    shapes = [(7, 3), (200_000,), (5,)]        # one large enough for the parallel loop
    start = [rng.standard_normal(s).astype(dtype) for s in shapes]
    grads = [[rng.standard_normal(s).astype(dtype) for s in shapes] for _ in range(3)]
    results = {}
    for reference in (False, True):
        params = [td.tensor(a.copy(), requires_grad=True) for a in start]
        opt = td.optim.SGD(params, lr=0.1, foreach=False, **options)
        with td.backends.reference(reference), td.backends.record_routes() as taken:
            for step in grads:
                for p, g in zip(params, step):
                    p._grad = td.tensor(g.T.copy().T if g.ndim == 2 else g)   # (float64 too: past p.grad's check)
                opt.step()
        assert [route for _, route in taken] == ["single_tensor"] * 3 + [
            "single_tensor" if reference else "fused_numba"] * 6
        results[reference] = [p.detach().numpy() for p in params] + [
            opt.state[p]["momentum_buffer"] for p in params]
    for fused, plain in zip(results[False], results[True]):
        assert fused.dtype == dtype
        np.testing.assert_array_equal(fused, plain)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("options", [dict(momentum=0.9), dict(momentum=0.9, nesterov=True, weight_decay=1e-3),
                                     dict(momentum=0.5, dampening=0.3, maximize=True)],
                         ids=["plain", "nesterov_wd", "dampening_max"])
def test_foreach_sgd_is_the_plain_update_bit_for_bit(dtype, options):
    """The small parameters of a group, past their first step, are updated together (one
    kernel over flat copies, their momentum buffers views of one array); the numbers are
    the plain update's, through a buffer replaced by hand, a step where one has no gradient,
    a state_dict round trip into a new optimizer, and a parameter of the other dtype
    (updated alone)."""
    other = np.float64 if dtype == np.float32 else np.float32
    rng = np.random.default_rng(7)
    shapes, dtypes = [(7, 3), (200_000,), (5,), (4, 4), (6,)], [dtype] * 4 + [other]
    start = [rng.standard_normal(s).astype(d) for s, d in zip(shapes, dtypes)]
    grads = [[rng.standard_normal(s).astype(d) for s, d in zip(shapes, dtypes)] for _ in range(6)]
    grads[3][0] = None                          # parameter 0 frozen for one step
    results = {}
    for reference in (False, True):
        params = [td.tensor(a.copy(), requires_grad=True) for a in start]
        opt = td.optim.SGD(params, lr=0.1, **options)
        with td.backends.reference(reference), td.backends.record_routes() as taken:
            for i, step in enumerate(grads):
                if i == 2:                      # a buffer replaced by hand: the step reads the new one
                    opt.state[params[2]]["momentum_buffer"] = np.zeros(shapes[2], dtypes[2])
                if i == 4:                      # go on with a new optimizer from a checkpoint
                    saved = opt.state_dict()
                    del saved["param_groups"][0]["foreach"]         # as in a checkpoint of an older tinydl
                    opt = td.optim.SGD(params, lr=0.1, **options)
                    opt.load_state_dict(saved)
                for p, g in zip(params, step):
                    p.grad = None if g is None else td.tensor(g.T.copy().T if g.ndim == 2 else g)
                opt.step()
        buffers = [opt.state[p]["momentum_buffer"] for p in params]
        if not reference:
            assert ("sgd", "foreach_numba") in taken
            assert buffers[0].base is not None and buffers[0].base is buffers[2].base is buffers[3].base
            assert buffers[1].base is None and buffers[4].base is None        # large; other dtype
        results[reference] = [p.detach().numpy() for p in params] + buffers
    for together, plain in zip(results[False], results[True]):
        assert together.dtype == plain.dtype
        np.testing.assert_array_equal(together, plain)


def test_foreach_false_updates_one_parameter_at_a_time():
    params = [td.tensor(np.ones(3), requires_grad=True) for _ in range(3)]
    opt = td.optim.SGD(params, lr=0.1, momentum=0.9, foreach=False)
    with td.backends.record_routes() as taken:
        for _ in range(2):
            for p in params:
                p.grad = td.tensor(np.ones(3))
            opt.step()
    assert ("sgd", "foreach_numba") not in taken


def _sgd_runs(make_params, grads_at, steps=4, **options):
    """Parameters and momentum buffers after ``steps`` SGD steps, with foreach on and off."""
    results = []
    for foreach in (None, False):
        params = make_params()
        opt = td.optim.SGD(params, lr=0.1, momentum=0.9, foreach=foreach, **options)
        for step in range(steps):
            for i, p in enumerate(params):
                p._grad = td.tensor(grads_at(step, i))       # (any shape: past p.grad's check)
            opt.step()
        results.append([p.detach().numpy().copy() for p in params] +
                       [opt.state[p]["momentum_buffer"].copy() for p in params])
    return results


def test_foreach_sgd_updates_two_tensors_over_one_array_one_after_the_other():
    def make_params():
        shared = np.ones(4, np.float32)
        return [td.Tensor(shared, requires_grad=True), td.Tensor(shared, requires_grad=True),
                td.Tensor(np.ones(3, np.float32), requires_grad=True)]
    together, alone = _sgd_runs(make_params, lambda step, i: np.full(4 if i < 2 else 3, 0.5 + step + i, np.float32))
    for a, b in zip(together, alone):
        np.testing.assert_array_equal(a, b)


def test_foreach_sgd_leaves_a_gradient_of_another_shape_to_the_plain_update():
    """A (1, 3) gradient on a (2, 3) parameter broadcasts in the plain update; the flat and
    the fused kernels would misread it. (``p.grad = ...`` refuses such a gradient, as
    PyTorch's; ``_sgd_runs`` sets it past that check.)"""
    together, alone = _sgd_runs(
        lambda: [td.tensor(np.ones((2, 3), np.float32), requires_grad=True),
                 td.tensor(np.ones(5, np.float32), requires_grad=True)],
        lambda step, i: np.full(((1, 3) if step == 3 else (2, 3)) if i == 0 else 5, 0.5 + step, np.float32))
    for a, b in zip(together, alone):
        np.testing.assert_array_equal(a, b)


def test_a_copy_of_an_sgd_optimizer_steps_as_the_original():
    """A deepcopy or pickle leaves the flat buffers behind and makes its own."""
    import copy
    import pickle
    params = [td.tensor(np.ones(3, np.float32), requires_grad=True) for _ in range(3)]
    opt = td.optim.SGD(params, lr=0.1, momentum=0.9)
    for _ in range(2):
        for p in params:
            p.grad = td.tensor(np.full(3, 0.5, np.float32))
        opt.step()
    copies = [copy.deepcopy(opt), pickle.loads(pickle.dumps(opt))]
    assert all(o._flat == {} for o in copies)
    for o in [opt] + copies:
        for p in o.param_groups[0]["params"]:
            p.grad = td.tensor(np.full(3, 0.5, np.float32))
        o.step()
    for o in copies:
        for p, q in zip(o.param_groups[0]["params"], params):
            np.testing.assert_array_equal(p.detach().numpy(), q.detach().numpy())
            np.testing.assert_array_equal(o.state[p]["momentum_buffer"], opt.state[q]["momentum_buffer"])
    with pytest.raises(ValueError, match="foreach must be None, True or False, got 'yes'"):
        td.optim.SGD(params, lr=0.1, foreach="yes")


def test_sgd_with_mixed_dtypes_takes_the_plain_update():
    """A float64 gradient on a float32 parameter (or a buffer of another dtype) promotes in
    the plain update; the fused kernel, which computes in the parameter's dtype, is not used."""
    rng = np.random.default_rng(6)
    start, grads = rng.standard_normal(50).astype(np.float32), [rng.standard_normal(50) for _ in range(3)]
    results = {}
    for reference in (False, True):
        p = td.tensor(start.copy(), requires_grad=True)
        opt = td.optim.SGD([p], lr=0.1, momentum=0.9)
        with td.backends.reference(reference), td.backends.record_routes() as taken:
            for g in grads:
                p._grad = td.tensor(g)              # float64 (past the check of p.grad = ...)
                opt.step()
        assert {route for _, route in taken} == {"single_tensor"}
        results[reference] = p.detach().numpy(), opt.state[p]["momentum_buffer"]
    for fused, plain in zip(results[False], results[True]):
        np.testing.assert_array_equal(fused, plain)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("make, options", [
    ("Adam", dict()), ("Adam", dict(amsgrad=True, weight_decay=1e-2)), ("Adam", dict(maximize=True, eps=1e-6)),
    ("AdamW", dict()), ("AdamW", dict(amsgrad=True, betas=(0.5, 0.9), maximize=True))],
    ids=["plain", "amsgrad_wd", "maximize", "adamw", "adamw_amsgrad_max"])
def test_fused_numba_adam_is_the_plain_update_bit_for_bit(dtype, make, options):
    """On the CPU Adam and AdamW run one Numba kernel per parameter; it rounds as the plain
    array update does (run under td.backends.reference()), through a strided gradient, a
    parameter large enough for the parallel loop, and a float64 gradient on a float32
    parameter (which promotes: the plain update)."""
    rng = np.random.default_rng(8)
    shapes = [(7, 3), (200_000,), (5,)]
    start = [rng.standard_normal(s).astype(dtype) for s in shapes]
    grads = [[rng.standard_normal(s).astype(dtype) for s in shapes] for _ in range(4)]
    grads[2][2] = grads[2][2].astype(np.float64 if dtype == np.float32 else np.float32)
    results = {}
    for reference in (False, True):
        params = [td.tensor(a.copy(), requires_grad=True) for a in start]
        opt = getattr(td.optim, make)(params, lr=0.01, **options)
        with td.backends.reference(reference), td.backends.record_routes() as taken:
            for step in grads:
                for p, g in zip(params, step):
                    p._grad = td.tensor(g.T.copy().T if g.ndim == 2 else g)   # (float64 too: past p.grad's check)
                opt.step()
        fused = ["fused_numba"] * 8 + ["single_tensor"] + ["fused_numba"] * 3     # step 3's float64 gradient
        expected = ["single_tensor"] * 12 if reference else fused
        assert [route for _, route in taken] == expected
        results[reference] = [p.detach().numpy() for p in params] + [
            opt.state[p][k] for p in params for k in sorted(opt.state[p]) if k != "step"]
    for fused, plain in zip(results[False], results[True]):
        assert fused.dtype == dtype
        np.testing.assert_array_equal(fused, plain)


def test_a_state_dict_of_another_optimizer_is_refused():
    """SGD given Adam's state dict refuses it at once, naming the settings it does not have
    (PyTorch fails at the next step with KeyError 'momentum'); Adam's own loads."""
    ps = td_params(initial_values())
    adam = optim.Adam(ps, lr=0.5)
    set_td_grads(ps, gradient_sequence(1)[0])
    adam.step()
    with pytest.raises(ValueError, match=r"SGD.load_state_dict: .*\(amsgrad, betas, eps\).*another optimizer"):
        optim.SGD(ps, lr=0.1, momentum=0.9).load_state_dict(adam.state_dict())
    optim.Adam(ps, lr=0.1).load_state_dict(adam.state_dict())
    torch_adam = torch.optim.Adam(torch_params(initial_values()), lr=0.5)
    optim.Adam(ps, lr=0.1).load_state_dict(torch_adam.state_dict())     # torch's flags are no settings
