"""The schedulers beyond the basic ones, against torch.optim.lr_scheduler.

MultiplicativeLR, ConstantLR, PolynomialLR, CosineAnnealingWarmRestarts, CyclicLR,
OneCycleLR, SequentialLR, ChainedScheduler: tinydl and torch run side by side on an
optimizer with two param groups (SGD with momentum, or Adam where the momentum cycles
through beta1) and must give the same lr (and momentum / betas) at every step, to
rtol 1e-12. Also: a state_dict round trip in the middle of a run, step(epoch), the
call-order warning, and the errors for bad arguments (both libraries must refuse).
"""
import copy
import math
import warnings

import numpy as np
import pytest
import torch
import torch.optim.lr_scheduler as tlrs

import tinydl as td
import tinydl.optim as optim
from tinydl.optim import lr_scheduler as lrs

SHAPES = [(3, 2), (4,)]
STEPS = 40
RTOL = 1e-12


def _optimizers(kind="sgd"):
    """The same two-group optimizer in tinydl and torch; the gradients are set once (zeros: the
    parameters do not matter here, only that optimizer.step() really runs)."""
    rng = np.random.default_rng(0)
    values = [rng.standard_normal(s) for s in SHAPES]
    tp = [td.tensor(v, requires_grad=True) for v in values]
    pp = [torch.tensor(v, requires_grad=True) for v in values]
    for t, p in zip(tp, pp):
        t.grad = td.tensor(np.zeros_like(t.array))
        p.grad = torch.zeros_like(p)
    pairs = []
    for lib, params in ((optim, tp), (torch.optim, pp)):
        if kind == "sgd":
            opt = lib.SGD([{"params": params[:1]}, {"params": params[1:], "lr": 0.3}], lr=1.0, momentum=0.9)
        elif kind == "adam":
            opt = lib.Adam([{"params": params[:1]}, {"params": params[1:], "lr": 0.003, "betas": (0.8, 0.99)}],
                           lr=0.01)
        else:   # no momentum, no betas
            opt = lib.Adagrad([{"params": params[:1]}, {"params": params[1:], "lr": 0.3}], lr=1.0)
        pairs.append(opt)
    return pairs


def _snapshot(opt, sched):
    groups = opt.param_groups
    return {"last_lr": [float(x) for x in sched.get_last_lr()],
            "lr": [float(g["lr"]) for g in groups],
            "momentum": [float(g["momentum"]) for g in groups if "momentum" in g],
            "beta1": [float(g["betas"][0]) for g in groups if "betas" in g],
            "beta2": [float(g["betas"][1]) for g in groups if "betas" in g]}


def _run(opt, sched, steps=STEPS):
    seq = [_snapshot(opt, sched)]
    for _ in range(steps):
        opt.step()
        sched.step()
        seq.append(_snapshot(opt, sched))
    return seq


def _assert_same(a, b, what=""):
    assert len(a) == len(b)
    for i, (x, y) in enumerate(zip(a, b)):
        assert x.keys() == y.keys()
        for key in x:
            assert len(x[key]) == len(y[key]), f"{what} step {i} {key}"
            np.testing.assert_allclose(x[key], y[key], rtol=RTOL, atol=0, err_msg=f"{what} step {i} {key}")


# Each case: (id, optimizer kind, build(lib, opt) -> scheduler, steps). ``lib`` is tinydl's or
# torch's lr_scheduler module, so one recipe builds both.
CASES = [
    ("mult-const", "sgd", lambda m, o: m.MultiplicativeLR(o, lambda e: 0.95), STEPS),
    ("mult-per-group", "sgd",
     lambda m, o: m.MultiplicativeLR(o, [lambda e: 0.9, lambda e: 1 + 0.01 * (e % 3)]), STEPS),
    ("const-default", "sgd", lambda m, o: m.ConstantLR(o), STEPS),
    ("const-half-12", "sgd", lambda m, o: m.ConstantLR(o, factor=0.5, total_iters=12), STEPS),
    ("const-0-iters", "sgd", lambda m, o: m.ConstantLR(o, factor=0.25, total_iters=0), STEPS),
    ("poly-default", "sgd", lambda m, o: m.PolynomialLR(o), STEPS),
    ("poly-0.9", "sgd", lambda m, o: m.PolynomialLR(o, total_iters=30, power=0.9), STEPS),
    ("poly-2", "adam", lambda m, o: m.PolynomialLR(o, total_iters=17, power=2.0), STEPS),
    ("sgdr-10", "sgd", lambda m, o: m.CosineAnnealingWarmRestarts(o, T_0=10), STEPS),
    ("sgdr-5-x2", "sgd", lambda m, o: m.CosineAnnealingWarmRestarts(o, T_0=5, T_mult=2, eta_min=0.01), STEPS),
    ("sgdr-3-x3", "adam", lambda m, o: m.CosineAnnealingWarmRestarts(o, T_0=3, T_mult=3, eta_min=1e-4), STEPS),
    ("cyclic-triangular", "sgd", lambda m, o: m.CyclicLR(o, base_lr=0.01, max_lr=0.1, step_size_up=6), STEPS),
    ("cyclic-triangular2", "sgd",
     lambda m, o: m.CyclicLR(o, base_lr=[0.01, 0.002], max_lr=[0.1, 0.05], step_size_up=4, step_size_down=7,
                             mode="triangular2", base_momentum=[0.8, 0.7], max_momentum=[0.9, 0.95]), STEPS),
    ("cyclic-exp-range", "sgd",
     lambda m, o: m.CyclicLR(o, base_lr=0.01, max_lr=0.1, step_size_up=5, mode="exp_range", gamma=0.97), STEPS),
    ("cyclic-fn-cycle", "sgd",
     lambda m, o: m.CyclicLR(o, 0.01, 0.1, step_size_up=3, step_size_down=5,
                             scale_fn=lambda x: 1 / (1 + 0.3 * x), scale_mode="cycle"), STEPS),
    ("cyclic-fn-iterations", "sgd",
     lambda m, o: m.CyclicLR(o, 0.01, 0.1, step_size_up=3, mode="not-used",
                             scale_fn=lambda x: 0.99 ** x, scale_mode="iterations"), STEPS),
    ("cyclic-adam", "adam",
     lambda m, o: m.CyclicLR(o, base_lr=1e-4, max_lr=[1e-2, 3e-3], step_size_up=5, step_size_down=3,
                             base_momentum=0.85, max_momentum=0.95), STEPS),
    ("cyclic-no-momentum", "adagrad",
     lambda m, o: m.CyclicLR(o, base_lr=0.01, max_lr=0.1, step_size_up=4, cycle_momentum=False), STEPS),
    ("onecycle-default", "sgd", lambda m, o: m.OneCycleLR(o, max_lr=0.5, total_steps=STEPS), STEPS),
    ("onecycle-epochs", "sgd",
     lambda m, o: m.OneCycleLR(o, max_lr=[0.5, 0.1], epochs=4, steps_per_epoch=10, pct_start=0.25,
                               base_momentum=[0.85, 0.8], max_momentum=[0.95, 0.99]), STEPS),
    ("onecycle-linear", "sgd",
     lambda m, o: m.OneCycleLR(o, max_lr=0.5, total_steps=STEPS, anneal_strategy="linear", div_factor=10.0,
                               final_div_factor=100.0), STEPS),
    ("onecycle-3phase", "sgd",
     lambda m, o: m.OneCycleLR(o, max_lr=0.5, total_steps=STEPS, three_phase=True, pct_start=0.35), STEPS),
    ("onecycle-3phase-linear", "adam",
     lambda m, o: m.OneCycleLR(o, max_lr=0.01, total_steps=STEPS + 3, three_phase=True, anneal_strategy="linear"),
     STEPS),
    ("onecycle-adam", "adam", lambda m, o: m.OneCycleLR(o, max_lr=[0.01, 0.02], total_steps=STEPS), STEPS),
    ("onecycle-no-momentum", "adagrad",
     lambda m, o: m.OneCycleLR(o, max_lr=0.5, total_steps=STEPS, cycle_momentum=False), STEPS),
    ("sequential-const-exp", "sgd",
     lambda m, o: m.SequentialLR(o, [m.ConstantLR(o, factor=0.1, total_iters=5), m.ExponentialLR(o, 0.9)],
                                 milestones=[5]), STEPS),
    ("sequential-three", "sgd",
     lambda m, o: m.SequentialLR(o, [m.LinearLR(o, start_factor=0.1, total_iters=4),
                                     m.CosineAnnealingLR(o, T_max=16, eta_min=0.01),
                                     m.PolynomialLR(o, total_iters=10, power=0.5)],
                                 milestones=[4, 20]), STEPS),
    ("sequential-sgdr", "sgd",
     lambda m, o: m.SequentialLR(o, [m.ConstantLR(o, factor=0.5, total_iters=3),
                                     m.CosineAnnealingWarmRestarts(o, T_0=7)], milestones=[6]), STEPS),
    ("chained-const-exp", "sgd",
     lambda m, o: m.ChainedScheduler([m.ConstantLR(o, factor=0.1, total_iters=2), m.ExponentialLR(o, 0.9)]),
     STEPS),
    ("chained-three", "sgd",
     lambda m, o: m.ChainedScheduler([m.MultiplicativeLR(o, lambda e: 0.98), m.StepLR(o, 7, gamma=0.5),
                                      m.PolynomialLR(o, total_iters=30)], optimizer=o), STEPS),
    ("chained-sequential", "sgd",
     lambda m, o: m.ChainedScheduler([m.SequentialLR(o, [m.LinearLR(o, 0.2, total_iters=5),
                                                         m.ExponentialLR(o, 0.95)], milestones=[5]),
                                      m.ConstantLR(o, factor=0.5, total_iters=8)]), STEPS),
]
IDS = [c[0] for c in CASES]


def _both(kind, build):
    topt, popt = _optimizers(kind)
    return topt, build(lrs, topt), popt, build(tlrs, popt)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_matches_torch_every_step(case):
    name, kind, build, steps = case
    with warnings.catch_warnings():
        warnings.simplefilter("error")        # the right call order must not warn
        topt, tsched, popt, psched = _both(kind, build)
        tseq, pseq = _run(topt, tsched, steps), _run(popt, psched, steps)
    _assert_same(tseq, pseq, name)
    lrs_seen = {tuple(s["lr"]) for s in tseq} | {tuple(g["initial_lr"] for g in topt.param_groups)}
    assert len(lrs_seen) > 1, "the schedule should move the lr"
    if name.startswith(("cyclic", "onecycle")) and kind != "adagrad":
        key = "beta1" if kind == "adam" else "momentum"
        assert len({tuple(s[key]) for s in tseq}) > 2, "the momentum should cycle"
        if kind == "adam":   # beta2 is never touched
            assert {tuple(s["beta2"]) for s in tseq} == {(0.999, 0.99)}


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_state_dict_round_trip(case):
    """Save scheduler and optimizer mid-run, rebuild both, load, continue: the same values."""
    name, kind, build, steps = case
    split = 17
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        topt, _ = _optimizers(kind)
        straight = _run(topt, build(lrs, topt), steps)

        topt, _ = _optimizers(kind)
        sched = build(lrs, topt)
        first = _run(topt, sched, split)
        osd, ssd = copy.deepcopy(topt.state_dict()), copy.deepcopy(sched.state_dict())
        ssd_before = copy.deepcopy(ssd)
        assert "optimizer" not in ssd

        topt2, _ = _optimizers(kind)
        sched2 = build(lrs, topt2)         # PyTorch's order: scheduler,
        topt2.load_state_dict(osd)         # then the optimizer's state,
        sched2.load_state_dict(ssd)        # then the scheduler's
        assert repr(ssd) == repr(ssd_before), "load_state_dict must not change the dict it is given"
        rest = _run(topt2, sched2, steps - split)
    _assert_same(first + rest[1:], straight, name)


# ------------------------------------------------------------------ step(epoch)
@pytest.mark.parametrize("build", [
    lambda m, o: m.ConstantLR(o, factor=0.5, total_iters=6),
    lambda m, o: m.PolynomialLR(o, total_iters=12, power=1.5),
    lambda m, o: m.MultiplicativeLR(o, lambda e: 0.9 + 0.01 * e),     # no closed form: recursive step
], ids=["ConstantLR", "PolynomialLR", "MultiplicativeLR"])
def test_step_with_epoch(build):
    topt, tsched, popt, psched = _both("sgd", build)
    for epoch in [3, 9, 5, 14, 6, 0, 20]:
        topt.step()
        popt.step()
        with pytest.warns(UserWarning, match="deprecated"):
            tsched.step(epoch)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            psched.step(epoch)
        np.testing.assert_allclose(tsched.get_last_lr(), psched.get_last_lr(), rtol=RTOL, atol=0)
        assert tsched.last_epoch == psched.last_epoch == epoch


@pytest.mark.parametrize("T_0, T_mult", [(10, 1), (4, 2), (3, 3)])
def test_warm_restarts_fractional_epochs(T_0, T_mult):
    """Stepped per batch with fractional epochs, in order, then jumping around (and back)."""
    topt, tsched, popt, psched = _both(
        "sgd", lambda m, o: m.CosineAnnealingWarmRestarts(o, T_0=T_0, T_mult=T_mult, eta_min=0.001))
    iters = 7
    epochs = [e + i / iters for e in range(12) for i in range(iters)]
    epochs += [2.5, 31.25, 0.0, 13, 3.999, 100.5, 7]
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # fractional epochs are not a deprecated use here
        for epoch in epochs:
            topt.step()
            popt.step()
            tsched.step(epoch)
            psched.step(epoch)
            np.testing.assert_allclose(tsched.get_last_lr(), psched.get_last_lr(), rtol=RTOL, atol=0,
                                       err_msg=f"epoch {epoch}")
            assert (tsched.last_epoch, tsched.T_i) == (psched.last_epoch, psched.T_i)
            assert math.isclose(tsched.T_cur, psched.T_cur, rel_tol=RTOL)
        # mixed: plain steps continue from wherever step(epoch) left T_cur
        for _ in range(15):
            tsched.step()
            psched.step()
            np.testing.assert_allclose(tsched.get_last_lr(), psched.get_last_lr(), rtol=RTOL, atol=0)


def test_warm_restarts_known_values():
    topt, _ = _optimizers("sgd")
    sched = lrs.CosineAnnealingWarmRestarts(topt, T_0=4, T_mult=2)
    lr0 = []
    for _ in range(13):
        lr0.append(sched.get_last_lr()[0])
        sched.step()
    # cycles of 4 then 8 epochs, from 1.0 down towards 0
    expect = [(1 + math.cos(math.pi * t / 4)) / 2 for t in range(4)] + \
             [(1 + math.cos(math.pi * t / 8)) / 2 for t in range(8)] + [1.0]
    np.testing.assert_allclose(lr0, expect, rtol=1e-15)


def test_onecycle_stepping_past_total_steps_fails_like_torch():
    topt, tsched, popt, psched = _both("sgd", lambda m, o: m.OneCycleLR(o, max_lr=0.5, total_steps=5))
    for _ in range(5):
        topt.step()
        popt.step()
        tsched.step()
        psched.step()
    with pytest.raises(ValueError, match="OneCycleLR.*total_steps is 5"):
        tsched.step()
    with pytest.raises(ValueError):
        psched.step()


def test_onecycle_known_values():
    """Two-phase cosine: initial_lr = max_lr / 25 at step 0, max_lr at pct_start * total - 1,
    min_lr = initial_lr / 1e4 at the last step."""
    topt, _ = _optimizers("sgd")
    sched = lrs.OneCycleLR(topt, max_lr=[0.5, 0.1], total_steps=20, pct_start=0.25)
    seq = _run(topt, sched, 19)
    np.testing.assert_allclose(seq[0]["lr"], [0.5 / 25, 0.1 / 25], rtol=1e-12)
    np.testing.assert_allclose(seq[0]["momentum"], [0.95, 0.95], rtol=1e-12)
    np.testing.assert_allclose(seq[4]["lr"], [0.5, 0.1], rtol=1e-12)
    np.testing.assert_allclose(seq[4]["momentum"], [0.85, 0.85], rtol=1e-12)
    np.testing.assert_allclose(seq[19]["lr"], [0.5 / 25 / 1e4, 0.1 / 25 / 1e4], rtol=1e-12)
    assert [g["initial_lr"] for g in topt.param_groups] == [0.5 / 25, 0.1 / 25]


# ------------------------------------------------------------------ warnings
@pytest.mark.parametrize("build, warns", [
    (lambda m, o: m.PolynomialLR(o, total_iters=10), True),
    (lambda m, o: m.MultiplicativeLR(o, lambda e: 0.9), True),
    (lambda m, o: m.OneCycleLR(o, max_lr=0.5, total_steps=10), True),
    (lambda m, o: m.CyclicLR(o, 0.01, 0.1, step_size_up=3), True),
    (lambda m, o: m.CosineAnnealingWarmRestarts(o, T_0=3), False),    # torch keeps no step count here
], ids=["PolynomialLR", "MultiplicativeLR", "OneCycleLR", "CyclicLR", "CosineAnnealingWarmRestarts"])
def test_step_before_optimizer_warns_like_torch(build, warns):
    topt, tsched, popt, psched = _both("sgd", build)
    with warnings.catch_warnings(record=True) as tw:
        warnings.simplefilter("always")
        tsched.step()
        tsched.step()
    with warnings.catch_warnings(record=True) as pw:
        warnings.simplefilter("always")
        psched.step()
        psched.step()
    order = lambda ws: any("optimizer.step()" in str(w.message) for w in ws)   # noqa: E731
    assert order(tw) == order(pw) == warns


# ------------------------------------------------------------------ bad arguments
class _Callable:
    def __init__(self):
        self.factor = 0.9

    def __call__(self, epoch):
        return self.factor


def test_callable_object_state_is_saved():
    """Plain functions are code and are not saved; a callable object's attributes are."""
    topt, _ = _optimizers("sgd")
    f = _Callable()
    sched = lrs.MultiplicativeLR(topt, [f, lambda e: 0.5])
    ssd = sched.state_dict()
    assert ssd["lr_lambdas"] == [{"factor": 0.9}, None]
    f.factor = 0.1
    sched.load_state_dict(ssd)
    assert f.factor == 0.9
    g = _Callable()
    cyc = lrs.CyclicLR(topt, 0.01, 0.1, scale_fn=g)
    ssd = cyc.state_dict()
    assert ssd["_scale_fn_custom"] == {"factor": 0.9}
    g.factor = 0.2
    cyc.load_state_dict(ssd)
    assert g.factor == 0.9 and cyc.scale_fn(3) == 0.9


def _another_scheduler(m, o):
    other = _optimizers("sgd")[0 if m is lrs else 1]
    return m.StepLR(other, 3)


# (id, optimizer kind, what to do with (lib, opt), the exception tinydl raises)
BAD = [
    ("mult-not-callable", "sgd", lambda m, o: m.MultiplicativeLR(o, 0.9), TypeError),
    ("mult-wrong-count", "sgd", lambda m, o: m.MultiplicativeLR(o, [lambda e: 1.0]), ValueError),
    ("const-factor-big", "sgd", lambda m, o: m.ConstantLR(o, factor=1.5), ValueError),
    ("const-factor-neg", "sgd", lambda m, o: m.ConstantLR(o, factor=-0.1), ValueError),
    ("sgdr-T0-zero", "sgd", lambda m, o: m.CosineAnnealingWarmRestarts(o, T_0=0), ValueError),
    ("sgdr-T0-float", "sgd", lambda m, o: m.CosineAnnealingWarmRestarts(o, T_0=2.5), ValueError),
    ("sgdr-Tmult-zero", "sgd", lambda m, o: m.CosineAnnealingWarmRestarts(o, T_0=2, T_mult=0), ValueError),
    ("sgdr-Tmult-float", "sgd", lambda m, o: m.CosineAnnealingWarmRestarts(o, T_0=2, T_mult=1.5), ValueError),
    ("sgdr-eta-str", "sgd", lambda m, o: m.CosineAnnealingWarmRestarts(o, T_0=2, eta_min="0.1"), ValueError),
    ("sgdr-neg-epoch", "sgd", lambda m, o: m.CosineAnnealingWarmRestarts(o, T_0=2).step(-1), ValueError),
    ("cyclic-mode", "sgd", lambda m, o: m.CyclicLR(o, 0.01, 0.1, mode="triangle"), ValueError),
    ("cyclic-base-count", "sgd", lambda m, o: m.CyclicLR(o, [0.01, 0.02, 0.03], 0.1), ValueError),
    ("cyclic-max-count", "sgd", lambda m, o: m.CyclicLR(o, 0.01, [0.1]), ValueError),
    ("cyclic-momentum-count", "sgd", lambda m, o: m.CyclicLR(o, 0.01, 0.1, max_momentum=[0.9]), ValueError),
    ("cyclic-no-momentum", "adagrad", lambda m, o: m.CyclicLR(o, 0.01, 0.1), ValueError),
    ("cyclic-up-zero", "sgd", lambda m, o: m.CyclicLR(o, 0.01, 0.1, step_size_up=0), ValueError),
    ("cyclic-up-zero-down", "sgd", lambda m, o: m.CyclicLR(o, 0.01, 0.1, step_size_up=0, step_size_down=4),
     ValueError),
    ("onecycle-no-length", "sgd", lambda m, o: m.OneCycleLR(o, 0.1), ValueError),
    ("onecycle-only-epochs", "sgd", lambda m, o: m.OneCycleLR(o, 0.1, epochs=3), ValueError),
    ("onecycle-total-zero", "sgd", lambda m, o: m.OneCycleLR(o, 0.1, total_steps=0), ValueError),
    ("onecycle-total-float", "sgd", lambda m, o: m.OneCycleLR(o, 0.1, total_steps=10.0), ValueError),
    ("onecycle-epochs-zero", "sgd", lambda m, o: m.OneCycleLR(o, 0.1, epochs=0, steps_per_epoch=5), ValueError),
    ("onecycle-spe-neg", "sgd", lambda m, o: m.OneCycleLR(o, 0.1, epochs=2, steps_per_epoch=-5), ValueError),
    ("onecycle-pct-big", "sgd", lambda m, o: m.OneCycleLR(o, 0.1, total_steps=10, pct_start=1.5), ValueError),
    ("onecycle-pct-int", "sgd", lambda m, o: m.OneCycleLR(o, 0.1, total_steps=10, pct_start=1), ValueError),
    ("onecycle-anneal", "sgd", lambda m, o: m.OneCycleLR(o, 0.1, total_steps=10, anneal_strategy="exp"),
     ValueError),
    ("onecycle-max-count", "sgd", lambda m, o: m.OneCycleLR(o, [0.1, 0.2, 0.3], total_steps=10), ValueError),
    ("onecycle-no-momentum", "adagrad", lambda m, o: m.OneCycleLR(o, 0.1, total_steps=10), ValueError),
    ("sequential-empty", "sgd", lambda m, o: m.SequentialLR(o, [], milestones=[]), ValueError),
    ("sequential-milestones", "sgd",
     lambda m, o: m.SequentialLR(o, [m.ConstantLR(o), m.ExponentialLR(o, 0.9)], milestones=[3, 6]), ValueError),
    ("sequential-other-opt", "sgd",
     lambda m, o: m.SequentialLR(o, [m.ConstantLR(o), _another_scheduler(m, o)], milestones=[3]), ValueError),
    ("sequential-plateau", "sgd",
     lambda m, o: m.SequentialLR(o, [m.ConstantLR(o), m.ReduceLROnPlateau(o)], milestones=[3]), ValueError),
    ("sequential-not-scheduler", "sgd",
     lambda m, o: m.SequentialLR(o, [m.ConstantLR(o), object()], milestones=[3]), TypeError),
    ("sequential-step-epoch", "sgd",
     lambda m, o: m.SequentialLR(o, [m.ConstantLR(o), m.ExponentialLR(o, 0.9)], milestones=[3]).step(4),
     TypeError),
    ("chained-empty", "sgd", lambda m, o: m.ChainedScheduler([]), ValueError),
    ("chained-other-opt", "sgd",
     lambda m, o: m.ChainedScheduler([m.ConstantLR(o), _another_scheduler(m, o)]), ValueError),
    ("chained-plateau", "sgd", lambda m, o: m.ChainedScheduler([m.ConstantLR(o), m.ReduceLROnPlateau(o)]),
     ValueError),
]


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_arguments_refused_by_both(case):
    name, kind, action, exc = case
    topt, popt = _optimizers(kind)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(Exception):   # torch refuses (some only at the first step, ZeroDivisionError)
            action(tlrs, popt)
        with pytest.raises(exc) as info:
            action(lrs, topt)
    message = str(info.value)
    if name != "sequential-step-epoch":    # that one is Python's own "takes 1 positional argument"
        assert any(n in message for n in lrs.__all__), f"the error should name the class: {message!r}"


def test_all_of_torch_schedulers_are_exported():
    assert set(tlrs.__all__) <= set(lrs.__all__)
    for name in lrs.__all__:
        assert getattr(td.optim.lr_scheduler, name) is getattr(lrs, name)


@pytest.mark.parametrize("name", ["LambdaLR", "MultiplicativeLR"])
def test_a_group_added_after_the_scheduler_is_refused_as_torch(name):
    """One lr function per group, fixed when the scheduler is made: a group added later
    raises at the next step (PyTorch: ValueError from zip(strict=True)), never left at its lr."""
    for lib in (td, torch):
        a = lib.zeros(2, requires_grad=True)
        b = lib.zeros(2, requires_grad=True)
        opt = lib.optim.SGD([a], lr=1.0)
        sched = getattr(lib.optim.lr_scheduler, name)(opt, lambda e: 0.5)
        opt.step()
        sched.step()
        opt.add_param_group({"params": [b], "lr": 0.5})
        opt.step()
        with pytest.raises(ValueError):
            sched.step()
