"""optim.swa_utils against torch.optim.swa_utils: the same sequence of weights gives the
same averages (SWA, EMA, per-tensor and multi-tensor, with and without buffers), and
update_bn the same batch-norm statistics."""
import numpy as np
import pytest
import torch

import tinydl as td
import tinydl.nn as nn
from tinydl.optim import swa_utils
from torch.optim import swa_utils as torch_swa


def _pair():
    """The same net in both libraries (Linear, BatchNorm1d, ReLU, Linear), float64."""
    torch.manual_seed(0)
    theirs = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(),
                                 torch.nn.Linear(8, 3)).double()
    ours = nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3)).double()
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    return ours, theirs


def _step(ours, theirs, rng):
    """New weights (as an optimizer step would give) and one training forward (BN buffers move)."""
    for (_, p), (_, q) in zip(ours.named_parameters(), theirs.named_parameters()):
        w = q.detach().numpy() + rng.standard_normal(q.shape) * 0.3
        p.array[...] = w
        with torch.no_grad():
            q.copy_(torch.tensor(w))
    x = rng.standard_normal((16, 5))
    ours.train(), theirs.train()
    ours(td.tensor(x)), theirs(torch.tensor(x))


AVERAGES = {
    "swa_default": ({}, {}),
    "ema_multi": ({"multi_avg_fn": swa_utils.get_ema_multi_avg_fn(0.9)},
                  {"multi_avg_fn": torch_swa.get_ema_multi_avg_fn(0.9)}),
    "ema_single": ({"avg_fn": swa_utils.get_ema_avg_fn(0.99)}, {"avg_fn": torch_swa.get_ema_avg_fn(0.99)}),
    "swa_single": ({"avg_fn": swa_utils.get_swa_avg_fn()}, {"avg_fn": torch_swa.get_swa_avg_fn()}),
}   # the default is our get_swa_multi_avg_fn (torch's own fails on the CPU with an int n_averaged)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("use_buffers", [False, True])
@pytest.mark.parametrize("kind", list(AVERAGES))
def test_averaged_model_matches_torch(kind, use_buffers):
    ours, theirs = _pair()
    kw_ours, kw_theirs = AVERAGES[kind]
    avg_ours = swa_utils.AveragedModel(ours, use_buffers=use_buffers, **kw_ours)
    avg_theirs = torch_swa.AveragedModel(theirs, use_buffers=use_buffers, **kw_theirs)
    rng = np.random.default_rng(0)
    for _ in range(6):
        _step(ours, theirs, rng)
        avg_ours.update_parameters(ours)
        avg_theirs.update_parameters(theirs)
    expected = avg_theirs.state_dict()
    got = avg_ours.state_dict()
    assert list(got) == list(expected)
    assert int(got["n_averaged"]) == int(expected["n_averaged"]) == 6
    for k, v in expected.items():
        np.testing.assert_allclose(np.asarray(got[k]), v.numpy(), rtol=1e-12, atol=1e-14, err_msg=k)
    # the averaged model is a separate copy, and runs like one
    assert avg_ours.module[0].weight is not ours[0].weight
    x = rng.standard_normal((4, 5))
    avg_ours.eval(), avg_theirs.eval()
    np.testing.assert_allclose(avg_ours(td.tensor(x)).detach().numpy(),
                               avg_theirs(torch.tensor(x)).detach().numpy(), rtol=1e-10)


def test_ema_is_the_notes_exponential_moving_average():
    """ema_w = 0.99 ema_w + 0.01 w after the first copy, written out by hand."""
    lin = nn.Linear(2, 1, bias=False)
    ema = swa_utils.AveragedModel(lin, multi_avg_fn=swa_utils.get_ema_multi_avg_fn(0.99))
    expected = None
    for w in [1.0, 2.0, -3.0, 0.5]:
        lin.weight.array[...] = w
        ema.update_parameters(lin)
        expected = w if expected is None else 0.99 * expected + 0.01 * w
        np.testing.assert_allclose(ema.module.weight.detach().numpy(), expected, rtol=1e-6)
    assert ema.module.weight.dtype == np.float32


def test_update_bn_matches_torch():
    ours, theirs = _pair()
    rng = np.random.default_rng(1)
    batches = [rng.standard_normal((8, 5)) * 2 + 1 for _ in range(5)]
    ours.eval(), theirs.eval()
    swa_utils.update_bn([(td.tensor(b), 0) for b in batches], ours)
    torch_swa.update_bn([(torch.tensor(b), 0) for b in batches], theirs)
    assert not ours.training and ours[1].momentum == 0.1
    for key in ["1.running_mean", "1.running_var", "1.num_batches_tracked"]:
        np.testing.assert_allclose(np.asarray(ours.state_dict()[key]), theirs.state_dict()[key].numpy(),
                                   rtol=1e-12, err_msg=key)


def test_avg_fn_and_multi_avg_fn_together_is_an_error():
    with pytest.raises(ValueError, match="only one of avg_fn and multi_avg_fn"):
        swa_utils.AveragedModel(nn.Linear(2, 2), avg_fn=swa_utils.get_ema_avg_fn(),
                                multi_avg_fn=swa_utils.get_ema_multi_avg_fn())


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("strategy, anneal_epochs", [("cos", 5), ("linear", 3), ("cos", 0), ("linear", 1)])
def test_swalr_matches_torch(strategy, anneal_epochs):
    """Two param groups, a per-group swa_lr, 12 epochs: the lrs equal torch's."""
    w = [torch.zeros(2, requires_grad=True), torch.zeros(3, requires_grad=True)]
    t_opt = torch.optim.SGD([{"params": [w[0]], "lr": 0.5}, {"params": [w[1]], "lr": 0.1}], lr=0.5)
    t_sched = torch_swa.SWALR(t_opt, swa_lr=[0.05, 0.02], anneal_epochs=anneal_epochs, anneal_strategy=strategy)
    p = [nn.Parameter(td.zeros(2)), nn.Parameter(td.zeros(3))]
    opt = td.optim.SGD([{"params": [p[0]], "lr": 0.5}, {"params": [p[1]], "lr": 0.1}], lr=0.5)
    sched = swa_utils.SWALR(opt, swa_lr=[0.05, 0.02], anneal_epochs=anneal_epochs, anneal_strategy=strategy)
    for epoch in range(12):
        np.testing.assert_allclose(sched.get_last_lr(), t_sched.get_last_lr(), rtol=1e-12, err_msg=str(epoch))
        t_opt.step(), opt.step()
        t_sched.step(), sched.step()
    assert sched.get_last_lr() == pytest.approx([0.05, 0.02])
    with pytest.raises(ValueError, match="anneal_strategy must be 'cos' or 'linear'"):
        swa_utils.SWALR(opt, 0.1, anneal_strategy="step")
