"""The Trainer (tinydl.train): exact resume, eval mode, top-k, checkpoints, logs and curves."""
import json
import os

import numpy as np
import pytest

import tinydl as td
import tinydl.nn as nn
import tinydl.nn.functional as F
from tinydl import optim
from tinydl.data import DataLoader, TensorDataset
from tinydl.train import (CheckpointError, RunFolderError, Trainer, evaluate, evaluate_loader, fit, prepare_images,
                          topk_correct)
from tinydl.utils.plot import plot_curves

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _images(n=48, size=8, classes=3, seed=0):
    """uint8 images whose class shows in their mean brightness (learnable, not trivial)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, size=n)
    images = rng.integers(0, 120, size=(n, size, size)) + 40 * labels[:, None, None]
    return images.astype(np.uint8), labels.astype(np.int64)


def _bn_dropout_net():
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Dropout(0.5), nn.Linear(4 * 4 * 4, 3))


_SETUPS = {
    "sgd-momentum+step": (lambda p: optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-4),
                          lambda o: optim.lr_scheduler.StepLR(o, step_size=1, gamma=0.5)),
    "adam+plateau": (lambda p: optim.Adam(p, lr=0.01),
                     lambda o: optim.lr_scheduler.ReduceLROnPlateau(o, factor=0.5, patience=0)),
    "rmsprop+cosine": (lambda p: optim.RMSprop(p, lr=0.01, momentum=0.5),
                       lambda o: optim.lr_scheduler.CosineAnnealingLR(o, T_max=3)),
    "sgd+warmup-per-step": (lambda p: optim.SGD(p, lr=0.1, momentum=0.9),
                            lambda o: optim.lr_scheduler.LambdaLR(o, lambda step: min(1.0, (step + 1) / 7))),
}
_PER_STEP = {"sgd+warmup-per-step"}          # scheduler_interval='step'


def _trainer(setup, out, seed=0, plot=False):
    """A fresh trainer, as a new process would build it (``seed`` changes the init)."""
    make_opt, make_sched = _SETUPS[setup]
    td.manual_seed(seed)
    model = _bn_dropout_net()
    opt = make_opt(model.parameters())
    train = DataLoader(TensorDataset(*_images()), batch_size=10, shuffle=True)   # 5 steps, last one short
    test = DataLoader(TensorDataset(*_images(24, seed=1)), batch_size=16, seed=0)
    return Trainer(model, opt, train, test, scheduler=make_sched(opt), out=out, log=None, progress=False, plot=plot,
                   scheduler_interval="step" if setup in _PER_STEP else "epoch")


# ================================================================ exact resume
@pytest.mark.parametrize("setup", sorted(_SETUPS))
def test_resumed_run_repeats_the_uninterrupted_losses_exactly(tmp_path, setup):
    straight = _trainer(setup, tmp_path / "straight")
    straight.fit(3)

    first = _trainer(setup, tmp_path / "split")
    first.fit(2)
    del first                                      # "the process ends"
    resumed = _trainer(setup, tmp_path / "split", seed=123)     # other init: all of it must be restored
    td.manual_seed(999)                            # the global generator must come from the checkpoint too
    assert resumed.resume() == 2
    resumed.fit(3)

    assert len(straight.step_losses) == 15
    assert resumed.step_losses == straight.step_losses
    for a, b in zip(resumed.history, straight.history):
        assert {k: v for k, v in a.items() if k != "seconds"} == {k: v for k, v in b.items() if k != "seconds"}
    for (name, a), (_, b) in zip(resumed.model.state_dict().items(), straight.model.state_dict().items()):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=name)    # incl. BN running stats
    assert resumed.optimizer.param_groups[0]["lr"] == straight.optimizer.param_groups[0]["lr"]


def test_resume_without_the_rng_state_would_differ(tmp_path):
    """The check above can fail: replaying epoch 3 with another dropout stream changes the losses."""
    straight = _trainer("sgd-momentum+step", tmp_path / "a")
    straight.fit(3)
    first = _trainer("sgd-momentum+step", tmp_path / "b")
    first.fit(2)
    resumed = _trainer("sgd-momentum+step", tmp_path / "b")
    td.manual_seed(999)
    resumed.resume()
    resumed.fit(3)
    assert resumed.step_losses == straight.step_losses       # with the state restored: equal
    third = _trainer("sgd-momentum+step", tmp_path / "b")
    third.resume()
    third.epoch, third.history, third.step_losses = 2, third.history[:2], third.step_losses[:10]
    td.manual_seed(999)          # restored, then replaced: dropout draws differ
    third.train_one_epoch()
    assert third.step_losses[10:] != straight.step_losses[10:]


def test_resume_continues_the_shuffle_and_schedule(tmp_path):
    trainer = _trainer("sgd-momentum+step", tmp_path)
    trainer.fit(1)
    again = _trainer("sgd-momentum+step", tmp_path)
    again.resume()
    assert again.epoch == 1 and len(again.history) == 1
    assert again.train_loader.state_dict()["epoch"] == 1
    assert again.scheduler.last_epoch == 1 and again.optimizer.param_groups[0]["lr"] == pytest.approx(0.05)
    assert again.fit(1) == again.history and len(again.history) == 1     # nothing left to do


# ================================================================ eval mode
class _ModeSpy(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = _bn_dropout_net()
        self.modes = []

    def forward(self, x):
        self.modes.append(self.net[5].training)        # the Dropout's flag
        return self.net(x)


def test_evaluation_runs_in_eval_mode_and_restores_training_mode():
    td.manual_seed(0)
    spy = _ModeSpy()
    images, labels = _images()
    trainer = Trainer(spy, optim.SGD(spy.parameters(), lr=0.1), DataLoader(TensorDataset(images, labels),
                      batch_size=16, shuffle=True, seed=0), DataLoader(TensorDataset(images, labels), batch_size=16,
                      seed=0), log=None, progress=False)
    trainer.fit(1)
    assert spy.modes == [True] * 3 + [False] * 3
    assert spy.training and spy.net[5].training


def test_evaluation_is_deterministic_with_dropout_and_uses_running_stats():
    td.manual_seed(0)
    model = _bn_dropout_net()
    images, labels = _images()
    model.train()
    for _ in range(3):                      # move BN's running statistics away from (0, 1)
        model(prepare_images(images))
    loader = DataLoader(TensorDataset(images, labels), batch_size=20, seed=0)
    first = evaluate_loader(model, loader)
    second = evaluate_loader(model, loader)
    assert first == second and model.training
    model.eval()
    with td.no_grad():
        logits = model(prepare_images(images))
    expected = F.cross_entropy(logits, td.tensor(labels)).item()
    assert first["loss"] == pytest.approx(expected, rel=1e-5)
    assert first["acc"] == np.mean(logits.numpy().argmax(1) == labels)


# ================================================================ top-k
def test_topk_on_a_hand_made_example():
    logits = np.array([[9, 1, 2, 3, 4, 5, 6],      # true class 0 ranks first
                       [1, 2, 3, 4, 5, 6, 7],      # true class 2: 4 classes above -> top-5 only
                       [7, 6, 5, 4, 3, 2, 1],      # true class 5: 5 classes above -> neither
                       [2, 2, 0, 0, 0, 0, 0],      # a tie with the true class counts in its favour
                       [np.nan, 1, 1, 1, 1, 1, 1]], dtype=np.float32)   # NaN score: never correct
    target = np.array([0, 2, 5, 1, 0])
    top1, top5 = topk_correct(logits, target, (1, 5))
    assert int(top1) == 2 and int(top5) == 3
    top3, = topk_correct(td.tensor(logits), td.tensor(target), (3,))
    assert int(top3) == 2
    with pytest.raises(ValueError, match=r"logits \(N, C\) and target \(N,\)"):
        topk_correct(logits, target[:3])


def test_topk_matches_torch_on_random_tie_free_logits():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    logits = rng.permuted(np.tile(np.arange(10, dtype=np.float32), (200, 1)), axis=1)
    target = rng.integers(0, 10, size=200)
    t_top = torch.from_numpy(logits).topk(5, dim=1).indices.numpy()
    expected = [(t_top[:, :k] == target[:, None]).any(1).sum() for k in (1, 5)]
    assert [int(c) for c in topk_correct(logits, target, (1, 5))] == expected


# ================================================================ batches
def test_prepare_images_layouts():
    grey = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    x = prepare_images(grey)
    assert x.shape == (2, 1, 3, 4) and x.dtype == np.float32
    np.testing.assert_array_equal(x.numpy()[:, 0], grey.astype(np.float32) / 255)
    rgb = np.arange(2 * 3 * 4 * 3, dtype=np.uint8).reshape(2, 3, 4, 3)
    x = prepare_images(td.tensor(rgb))
    assert x.shape == (2, 3, 3, 4)
    np.testing.assert_array_equal(x.numpy(), rgb.transpose(0, 3, 1, 2).astype(np.float32) / 255)
    ready = np.zeros((2, 3, 5, 5), np.float32)
    assert prepare_images(ready).shape == (2, 3, 5, 5)
    with pytest.raises(ValueError, match="prepare_images"):
        prepare_images(np.zeros((4, 5), np.uint8))


# ================================================================ outputs
def test_outputs_written_each_epoch(tmp_path):
    trainer = _trainer("sgd-momentum+step", tmp_path, plot=True)
    trainer.config = {"title": "tiny"}
    trainer.fit(2)
    names = sorted(os.listdir(tmp_path))
    assert names == ["checkpoint.npz", "curves.png", "log.csv", "log.json"]     # no temporary files left
    lines = (tmp_path / "log.csv").read_text().splitlines()
    assert lines[0] == "epoch,lr,train_loss,train_acc,test_loss,test_acc,test_top5,seconds" and len(lines) == 3
    log = json.loads((tmp_path / "log.json").read_text())
    assert log["config"] == {"title": "tiny"} and [r["epoch"] for r in log["history"]] == [1, 2]
    assert log["history"][1]["lr"] == 0.05
    assert (tmp_path / "curves.png").read_bytes()[:8] == PNG_MAGIC
    state = td.load(tmp_path / "checkpoint.npz")
    assert state["epoch"] == 2 and len(state["step_losses"]) == 10
    assert set(state) >= {"model", "optimizer", "scheduler", "train_loader", "rng", "history"}


def test_checkpoint_errors_are_clear(tmp_path):
    trainer = _trainer("sgd-momentum+step", tmp_path)
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        trainer.resume()
    trainer.fit(1)
    path = tmp_path / "checkpoint.npz"
    good = path.read_bytes()

    path.write_bytes(good[: len(good) // 2])                       # a truncated file
    with pytest.raises(CheckpointError, match="unreadable"):
        _trainer("sgd-momentum+step", tmp_path).resume()
    path.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt or not a tinydl checkpoint: not an .npz file"):
        _trainer("sgd-momentum+step", tmp_path).resume()
    td.save({"weights": td.zeros(3)}, path)                        # a td.save file, but not a trainer's
    with pytest.raises(CheckpointError, match="not a tinydl training checkpoint"):
        _trainer("sgd-momentum+step", tmp_path).resume()

    path.write_bytes(good)
    other = _trainer("sgd-momentum+step", tmp_path)
    other.model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    with pytest.raises(CheckpointError, match="does not fit the model"):
        other.resume()
    with pytest.raises(CheckpointError, match="trained with optimizer SGD, this run has Adam"):
        _trainer("adam+plateau", tmp_path).resume()


@pytest.mark.parametrize("key", ["rng", "history", "epoch", "model", "scheduler"])
def test_an_incomplete_checkpoint_is_refused_before_anything_is_loaded(tmp_path, key):
    _trainer("sgd-momentum+step", tmp_path).fit(1)
    state = td.load(tmp_path / "checkpoint.npz")
    del state[key]
    td.save(state, tmp_path / "incomplete.npz")
    fresh = _trainer("sgd-momentum+step", tmp_path, seed=5)
    weights = {k: v.numpy().copy() for k, v in fresh.model.state_dict().items()}
    with pytest.raises(CheckpointError, match=f"incomplete.npz is damaged or incomplete: bad entries {key} "
                                              r"\(missing\)"):
        fresh.resume(tmp_path / "incomplete.npz")
    for k, v in fresh.model.state_dict().items():                    # nothing was restored
        np.testing.assert_array_equal(v.numpy(), weights[k])
    assert fresh.epoch == 0 and not fresh.optimizer.state


def test_a_fresh_trainer_never_replaces_another_run(tmp_path):
    _trainer("sgd-momentum+step", tmp_path).fit(2)
    before = (tmp_path / "checkpoint.npz").read_bytes()
    with pytest.raises(RunFolderError, match="already holds a run .*overwrite=True"):
        _trainer("sgd-momentum+step", tmp_path).fit(1)
    assert (tmp_path / "checkpoint.npz").read_bytes() == before
    again = _trainer("sgd-momentum+step", tmp_path)
    again.overwrite = True
    again.fit(1)
    assert td.load(tmp_path / "checkpoint.npz")["epoch"] == 1
    with pytest.raises(RunFolderError, match="is not a writable folder"):
        _trainer("sgd-momentum+step", tmp_path / "checkpoint.npz" / "sub").fit(1)


def test_divergence_stops_before_writing_a_bad_checkpoint(tmp_path):
    trainer = _trainer("sgd-momentum+step", tmp_path)
    trainer.fit(1)
    trainer.loss_fn = lambda logits, y: F.cross_entropy(logits, y) * float("nan")
    with pytest.raises(FloatingPointError, match="diverged"):
        trainer.fit(2)
    assert td.load(tmp_path / "checkpoint.npz")["epoch"] == 1


def test_a_nan_loss_stops_training_at_its_step_before_it_reaches_the_weights(tmp_path):
    trainer = _trainer("sgd-momentum+step", tmp_path)
    trainer.fit(1)
    calls = []

    def loss_fn(logits, y):                              # the 3rd batch of epoch 2 gives nan
        calls.append(1)
        return F.cross_entropy(logits, y) * (float("nan") if len(calls) == 3 else 1.0)
    trainer.loss_fn = loss_fn
    with pytest.raises(FloatingPointError, match=r"loss is nan at step 8 \(epoch 2, batch 3 of 5, lr 0.05\).*"
                                                 r"checkpoint.npz still holds epoch 1") as info:
        trainer.fit(2)
    assert len(info.value.history) == 1 and len(calls) == 3
    assert all(np.isfinite(p.numpy()).all() for p in trainer.model.state_dict().values())
    assert td.load(tmp_path / "checkpoint.npz")["epoch"] == 1


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_detect_anomaly_names_the_op_that_made_the_nan():
    def loss_fn(logits, y):    # finite loss, but d sqrt(s)/ds at s = 0 is inf (and inf * 0 = nan below)
        return F.cross_entropy(logits, y) + (logits * 0).sum().sqrt()
    plain = _trainer("sgd-momentum+step", None)
    plain.loss_fn = loss_fn
    with pytest.raises(FloatingPointError, match="at step 2 .*detect_anomaly"):
        plain.fit(1)                                     # the nan reached the weights, then the loss
    watched = _trainer("sgd-momentum+step", None)
    watched.loss_fn, watched.detect_anomaly = loss_fn, True
    with pytest.raises(td.autograd.AnomalyError, match="'SqrtBackward' returned inf") as info:
        watched.fit(1)
    assert "in loss_fn" in info.value.forward_traceback
    assert not td.autograd.is_anomaly_enabled()          # the Trainer's anomaly mode ended with it


def test_progress_bar_shows_running_loss(capsys):
    trainer = _trainer("sgd-momentum+step", None)
    trainer.progress = True
    trainer.fit(1)
    err = capsys.readouterr().err
    assert "epoch 1" in err and "loss=" in err


def test_auxiliary_heads_are_weighted():
    class Aux(nn.Module):
        def __init__(self):
            super().__init__()
            self.main, self.aux = nn.Linear(4, 3), nn.Linear(4, 3)

        def forward(self, x):
            x = x.flatten(1)
            return (self.main(x), self.aux(x)) if self.training else self.main(x)

    td.manual_seed(0)
    model = Aux()
    trainer = Trainer(model, optim.SGD(model.parameters(), lr=0.0), [], log=None, progress=False)
    x, y = td.tensor(np.random.default_rng(0).random((5, 1, 2, 2), np.float32)), td.tensor(np.arange(5) % 3)
    _, loss = trainer._loss(model(x), y)
    expected = F.cross_entropy(model.main(x.flatten(1)), y).item() + 0.3 * F.cross_entropy(
        model.aux(x.flatten(1)), y).item()
    assert loss.item() == pytest.approx(expected, rel=1e-6)


# ================================================================ fit / evaluate on arrays
def test_fit_on_arrays_keeps_its_history_keys_and_evaluate_its_pair():
    td.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    train, test = _images(), _images(24, seed=1)
    lines = []
    history = fit(model, optim.SGD(model.parameters(), lr=0.5), train, test, epochs=2, batch_size=16,
                  log=lines.append)
    assert len(history) == 2 and len(lines) == 2 and "test loss" in lines[0]
    assert {"epoch", "train_loss", "test_loss", "test_acc", "seconds"} <= set(history[0])
    loss, acc = evaluate(model, *test, batch_size=7)
    assert (loss, acc) == pytest.approx((history[-1]["test_loss"], history[-1]["test_acc"]), rel=1e-6)
    with td.no_grad():
        logits = model(prepare_images(test[0]))
    assert acc == np.mean(logits.numpy().argmax(1) == test[1])


# ================================================================ plot_curves
def test_plot_curves_one_run_and_several(tmp_path):
    rows = [dict(epoch=e, train_loss=1 / e, test_loss=1.2 / e, train_acc=1 - 1 / (e + 1), test_acc=0.8)
            for e in (1, 2, 3)]
    path = plot_curves(rows, tmp_path / "one.png", title="one run")
    assert path == os.fspath(tmp_path / "one.png") and open(path, "rb").read(8) == PNG_MAGIC
    path = plot_curves({"sgd": rows, "momentum": rows[:2]}, tmp_path / "sub" / "two.png", keys=("loss",))
    assert open(path, "rb").read(8) == PNG_MAGIC
    assert sorted(os.listdir(tmp_path)) == ["one.png", "sub"] and os.listdir(tmp_path / "sub") == ["two.png"]
    with pytest.raises(ValueError, match="none of the key families"):
        plot_curves([{"epoch": 1, "loss": 1.0}], tmp_path / "bad.png")
    with pytest.raises(TypeError, match="must be a dict"):
        plot_curves([1.0, 2.0], tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_per_step_scheduler_moves_after_every_optimizer_step(tmp_path):
    trainer = _trainer("sgd+warmup-per-step", None)
    trainer.fit(1)                                 # 5 steps: the lambda has seen steps 0..5
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 6 / 7)
    trainer.fit(2)                                 # 10 steps: warm-up over, lr 0.1
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="scheduler_interval"):
        Trainer(trainer.model, trainer.optimizer, trainer.train_loader, scheduler_interval="batch")
    with pytest.raises(ValueError, match="ReduceLROnPlateau"):
        Trainer(trainer.model, trainer.optimizer, trainer.train_loader, scheduler_interval="step",
                scheduler=optim.lr_scheduler.ReduceLROnPlateau(trainer.optimizer))


def test_step_batches_cycles_the_loader_for_exactly_n_steps():
    from tinydl.train import step_batches
    loader = DataLoader(TensorDataset(np.arange(10)), batch_size=4, shuffle=True, seed=0)   # 3 batches a pass
    got = [b[0].numpy().tolist() for b in step_batches(loader, 7)]
    assert len(got) == 7
    assert sorted(sum(got[:3], [])) == list(range(10)) and sorted(sum(got[3:6], [])) == list(range(10))
    assert got[:3] != got[3:6]                      # the second pass is reshuffled
    with pytest.raises(ValueError, match="no batches"):
        list(step_batches([], 2))


# ================================================================ divergence after the last step, locks, resume
def test_weights_made_non_finite_by_the_last_step_stop_training_before_anything_is_written(tmp_path):
    """Every step's loss is finite (checked before its backward), but the epoch's last update
    (momentum inf) leaves non-finite weights: the epoch is refused, the checkpoint stays."""
    trainer = _trainer("sgd-momentum+step", tmp_path)
    trainer.train_loader = DataLoader(TensorDataset(*_images()), batch_size=48)    # one step per epoch
    trainer.fit(1)
    before = (tmp_path / "checkpoint.npz").read_bytes()
    trainer.optimizer.param_groups[0]["momentum"] = float("inf")
    with pytest.raises(FloatingPointError, match=r"not finite after the last step of epoch 2 .*training diverged; "
                                                 r".*checkpoint.npz still holds epoch 1") as info:
        trainer.fit(2)
    assert len(info.value.history) == 1 and trainer.epoch == 1
    assert (tmp_path / "checkpoint.npz").read_bytes() == before
    assert len((tmp_path / "log.csv").read_text().splitlines()) == 2
    assert not np.isfinite(trainer.model[-1].weight.detach().numpy()).all()


def test_a_non_finite_test_loss_is_a_divergence():
    trainer = _trainer("sgd-momentum+step", None)
    trainer.loss_fn = lambda logits, y: F.cross_entropy(logits, y) * (float("inf") if not logits.requires_grad else 1.0)
    with pytest.raises(FloatingPointError, match=r"the test loss is inf \(epoch 1, lr .*training diverged; no checkpoint"):
        trainer.fit(1)


def test_a_run_folder_is_held_by_one_run_at_a_time(tmp_path):
    import subprocess
    import sys
    from tinydl.train import LOCK_NAME
    lock = tmp_path / LOCK_NAME
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        lock.write_text(str(sleeper.pid))                             # a live run holds the folder
        with pytest.raises(RunFolderError, match=f"already holds a run in progress \\(process {sleeper.pid}"):
            _trainer("sgd-momentum+step", tmp_path).fit(1)
        assert lock.read_text() == str(sleeper.pid) and not (tmp_path / "checkpoint.npz").exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    _trainer("sgd-momentum+step", tmp_path).fit(1)                    # its process is dead: a stale lock
    assert not lock.exists() and td.load(tmp_path / "checkpoint.npz")["epoch"] == 1
    seen = []
    trainer = _trainer("sgd-momentum+step", tmp_path)
    trainer.resume()
    trainer.log = lambda line: seen.append(lock.read_text())          # held during the run, ours
    trainer.fit(2)
    assert seen == [str(os.getpid())] and not lock.exists()


def _damaged(state, entry):
    edits = {"rng.python": lambda s: s["rng"].__setitem__("python", [1, 2]),
             "rng.numpy": lambda s: s["rng"].__setitem__("numpy", {"bit_generator": "Nope"}),
             "rng.tinydl": lambda s: s["rng"].__setitem__("tinydl", "x"),
             "train_loader": lambda s: s.__setitem__("train_loader", "x"),
             "history": lambda s: s.__setitem__("history", [1, 2]),
             "history.text": lambda s: s["history"][0].__setitem__("epoch", "x"),
             "history.rows": lambda s: s.__setitem__("history", []),
             "seed": lambda s: s.__setitem__("seed", "abc"),
             "world_size": lambda s: s.__setitem__("world_size", "two"),
             "config": lambda s: s.__setitem__("config", [1]),
             "epoch": lambda s: s.__setitem__("epoch", -5),
             "step_losses": lambda s: s.__setitem__("step_losses", "abc")}
    edits[entry](state)
    return state


@pytest.mark.parametrize("entry", ["rng.python", "rng.numpy", "rng.tinydl", "train_loader", "history", "seed",
                                   "world_size", "config", "epoch", "step_losses", "history.text", "history.rows"])
def test_a_hand_damaged_entry_is_named_and_changes_nothing(tmp_path, entry):
    _trainer("sgd-momentum+step", tmp_path).fit(1)
    td.save(_damaged(td.load(tmp_path / "checkpoint.npz"), entry), tmp_path / "bad.npz")
    fresh = _trainer("sgd-momentum+step", tmp_path, seed=5)
    weights = {k: v.numpy().copy() for k, v in fresh.model.state_dict().items()}
    named = "history" if entry.startswith("history") else entry
    with pytest.raises(CheckpointError, match=f"bad.npz is damaged or incomplete: bad entries {named} "):
        fresh.resume(tmp_path / "bad.npz")
    for k, v in fresh.model.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), weights[k])
    assert fresh.epoch == 0 and not fresh.optimizer.state


def test_a_resume_failing_midway_puts_back_what_it_changed(tmp_path):
    """The model loads, then the loader's state fails: the model, optimizer, loader and
    generators are as before."""
    _trainer("sgd-momentum+step", tmp_path).fit(1)
    state = td.load(tmp_path / "checkpoint.npz")
    state["train_loader"] = {"x": 1}
    td.save(state, tmp_path / "bad.npz")
    fresh = _trainer("sgd-momentum+step", tmp_path, seed=5)
    weights = {k: v.numpy().copy() for k, v in fresh.model.state_dict().items()}
    loader_state, rng = fresh.train_loader.state_dict(), td.backend.get_rng_state()
    with pytest.raises(CheckpointError, match="cannot restore the train loader's state \\(entry train_loader\\)"):
        fresh.resume(tmp_path / "bad.npz")
    for k, v in fresh.model.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), weights[k])
    assert not fresh.optimizer.state and fresh.train_loader.state_dict() == loader_state
    assert td.backend.get_rng_state() == rng and fresh.epoch == 0


def test_resume_names_an_optimizer_of_other_groups_and_a_missing_scheduler(tmp_path):
    _trainer("sgd-momentum+step", tmp_path).fit(1)
    fresh = _trainer("sgd-momentum+step", tmp_path, seed=5)
    weights = {k: v.numpy().copy() for k, v in fresh.model.state_dict().items()}
    params = list(fresh.model.parameters())
    fresh.optimizer = optim.SGD([{"params": params[:2]}, {"params": params[2:]}], lr=0.1, momentum=0.9)
    fresh.scheduler = optim.lr_scheduler.StepLR(fresh.optimizer, step_size=1)
    with pytest.raises(CheckpointError, match="bad entries optimizer \\(1 parameter groups, this optimizer has 2\\)"):
        fresh.resume()
    for k, v in fresh.model.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), weights[k])
    state = td.load(tmp_path / "checkpoint.npz")
    state["scheduler"] = state["scheduler_type"] = None
    td.save(state, tmp_path / "nosched.npz")
    with pytest.raises(CheckpointError, match="nosched.npz was saved without a scheduler, this run has StepLR"):
        _trainer("sgd-momentum+step", tmp_path).resume(tmp_path / "nosched.npz")


def test_a_run_stopped_between_checkpoint_and_logs_gets_its_logs_back_on_resume(tmp_path, monkeypatch):
    import tinydl.train as train_module
    _trainer("sgd-momentum+step", tmp_path).fit(1)
    real = train_module._write_atomic

    def stop_at_the_logs(path, data):
        raise KeyboardInterrupt
    monkeypatch.setattr(train_module, "_write_atomic", stop_at_the_logs)
    trainer = _trainer("sgd-momentum+step", tmp_path)
    trainer.resume()
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(2)
    assert td.load(tmp_path / "checkpoint.npz")["epoch"] == 2          # the checkpoint first: logs behind
    assert trainer.interrupt_report() == f"interrupted at epoch 3; the checkpoint of epoch 2 stays in {tmp_path}"
    assert len((tmp_path / "log.csv").read_text().splitlines()) == 2
    monkeypatch.setattr(train_module, "_write_atomic", real)
    trainer = _trainer("sgd-momentum+step", tmp_path)
    trainer.resume()
    trainer.fit(3)
    assert [r["epoch"] for r in json.loads((tmp_path / "log.json").read_text())["history"]] == [1, 2, 3]
    assert len((tmp_path / "log.csv").read_text().splitlines()) == 4


# ================================================================ API mistakes
@pytest.mark.parametrize("batches, got", [([(np.zeros((2, 8, 8), np.uint8), np.zeros(2, np.int64))] * 1, None),
                                          ([(np.zeros((2, 8, 8), np.uint8),) * 3], "a tuple of 3"),
                                          ([np.zeros((2, 8, 8), np.uint8)], r"a ndarray of shape \(2, 8, 8\)")])
def test_each_batch_must_be_a_pair(batches, got):
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    trainer = Trainer(model, optim.SGD(model.parameters(), lr=0.1), batches, log=None, tune=False)
    if got is None:
        trainer.fit(1)
        return
    with pytest.raises(TypeError, match=f"Trainer: each batch must be \\(inputs, targets\\), got {got}"):
        trainer.fit(1)


def test_trainer_argument_mistakes_are_named():
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    make = lambda **kw: Trainer(model, optim.SGD(model.parameters(), lr=0.1),  # noqa: E731
                                DataLoader(TensorDataset(*_images()), batch_size=16), log=None, tune=False, **kw)
    with pytest.raises(TypeError, match="loss_fn must return a scalar Tensor, got float 1.0"):
        make(loss_fn=lambda logits, y: 1.0).fit(1)
    for epochs in (1.5, "2", True):
        with pytest.raises(TypeError, match="Trainer: epochs must be an int"):
            make().fit(epochs)
    with pytest.raises(ValueError, match="topk must be >= 1, got 0"):
        make(topk=0)
    with pytest.raises(ValueError, match="nan_check_interval must be >= 1, got 0"):
        make(nan_check_interval=0)


def test_a_finished_run_stopped_before_its_logs_gets_them_back_on_resume(tmp_path, monkeypatch):
    """Stopped between the last epoch's checkpoint and its logs: resuming the finished run
    (nothing to train) rewrites the logs from the checkpoint's history, and only them."""
    import tinydl.train as train_module
    real = train_module._write_atomic
    trainer = _trainer("sgd-momentum+step", tmp_path)
    trainer.fit(1)
    monkeypatch.setattr(train_module, "_write_atomic", lambda path, data: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(2)
    monkeypatch.setattr(train_module, "_write_atomic", real)
    checkpoint = (tmp_path / "checkpoint.npz").read_bytes()
    assert len((tmp_path / "log.csv").read_text().splitlines()) == 2      # one epoch behind
    seen = []
    resumed = _trainer("sgd-momentum+step", tmp_path)
    resumed.log = seen.append
    resumed.resume()
    assert resumed.fit(2) == resumed.history and len(resumed.history) == 2
    assert [r["epoch"] for r in json.loads((tmp_path / "log.json").read_text())["history"]] == [1, 2]
    assert len((tmp_path / "log.csv").read_text().splitlines()) == 3
    assert (tmp_path / "checkpoint.npz").read_bytes() == checkpoint and seen == [
        f"rewrote the logs in {tmp_path} from the checkpoint's 2 epochs"]
    assert not (tmp_path / ".tinydl-run.lock").exists()
    resumed.fit(2)                                                        # logs in step: nothing written
    assert len(seen) == 1


def test_the_interrupt_report_names_the_checkpoint_on_disk(tmp_path, monkeypatch):
    """Ctrl-C while epoch 2's checkpoint is being written: epoch 1's stays, and the report says so."""
    import tinydl.utils.serialization as serialization
    trainer = _trainer("sgd-momentum+step", tmp_path)
    trainer.fit(1)
    real = serialization.save

    def interrupted_save(obj, f):
        raise KeyboardInterrupt
    monkeypatch.setattr(serialization, "save", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(3)
    monkeypatch.setattr(serialization, "save", real)
    assert trainer.epoch == 2 and td.load(tmp_path / "checkpoint.npz")["epoch"] == 1
    assert trainer.interrupt_report() == f"interrupted at epoch 2; the checkpoint of epoch 1 stays in {tmp_path}"
    assert "checkpoint.npz still holds epoch 1" in trainer.kept_checkpoint()
    fresh = _trainer("sgd-momentum+step", tmp_path / "new")
    assert fresh.interrupt_report() == "interrupted at epoch 1; no checkpoint was written"


@pytest.mark.skipif(os.name != "posix", reason="SIGINT to itself")
def test_ctrl_c_while_a_checkpoint_is_written_is_held_until_it_is_whole():
    """The checkpoint file and what the Trainer reports of it must agree: a SIGINT arriving
    inside the write is raised after it."""
    import signal
    from tinydl.train import _ctrl_c_after
    done = []
    with pytest.raises(KeyboardInterrupt):
        with _ctrl_c_after():
            os.kill(os.getpid(), signal.SIGINT)
            done.append("written")
    assert done == ["written"] and signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_two_trainers_into_one_folder_at_once_the_second_is_refused(tmp_path):
    """Both past the "already holds a run" check (the folder was empty): the second claim fails."""
    first, second = _trainer("sgd-momentum+step", tmp_path), _trainer("sgd-momentum+step", tmp_path, seed=3)
    refusals = []

    def start_the_second(line):
        with pytest.raises(RunFolderError, match=f"already holds a run in progress \\(process {os.getpid()}") as info:
            second.fit(1)
        refusals.append(str(info.value))
    first.log = start_the_second
    first.fit(1)
    assert len(refusals) == 1 and second.epoch == 0
    assert td.load(tmp_path / "checkpoint.npz")["epoch"] == 1 and not (tmp_path / ".tinydl-run.lock").exists()


def test_only_rank_0_of_a_data_parallel_run_claims_the_folder(tmp_path, monkeypatch):
    """Rank 0 alone writes, so it alone claims the folder (and replaces an old run's files);
    another rank checks the folder as rank 0 does, and leaves rank 0's lock alone."""
    import subprocess
    import sys
    import tinydl.train as train_module
    from tinydl.train import LOCK_NAME
    _trainer("sgd-momentum+step", tmp_path).fit(1)                         # an old run, to be replaced
    monkeypatch.setattr(train_module, "_process_group", lambda: (1, 2))      # rank 1 of 2
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (tmp_path / LOCK_NAME).write_text(str(sleeper.pid))               # rank 0 holds the folder
        with pytest.raises(RunFolderError, match="already holds a run"):    # refused as on rank 0
            _trainer("sgd-momentum+step", tmp_path)._claim_out()
        replacing = _trainer("sgd-momentum+step", tmp_path)
        replacing.overwrite = True
        replacing._claim_out()
        assert (tmp_path / LOCK_NAME).read_text() == str(sleeper.pid) and (tmp_path / "checkpoint.npz").exists()
    finally:
        sleeper.kill()
        sleeper.wait()
