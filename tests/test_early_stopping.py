"""Early stopping in the Trainer (early_stopping_patience=) and the CLI (--early-stop N)."""
import csv

import numpy as np
import pytest

import tinydl as td
import tinydl.nn as nn
from tinydl import cli, optim
from tinydl.data import DataLoader, TensorDataset
from tinydl.train import Trainer


def _trainer(test_losses, out=None, **kw):
    """A small trainer whose test loss follows the script ``test_losses`` (one per epoch)."""
    td.manual_seed(0)
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 255, (20, 4, 4)).astype(np.uint8), rng.integers(0, 2, 20)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    loader = DataLoader(TensorDataset(x, y), batch_size=10, seed=0)
    lines = []
    trainer = Trainer(model, optim.SGD(model.parameters(), lr=0.01), loader, loader, out=out, plot=False,
                      log=lines.append, progress=False, **kw)
    script = iter(test_losses)
    trainer.evaluate = lambda loader=None: {"loss": next(script), "acc": 0.5, "top5": 1.0}
    return trainer, lines


def test_stops_when_the_test_loss_stalls_for_patience_epochs():
    trainer, lines = _trainer([1.0, 0.8, 0.85, 0.8, 0.7, 0.9], early_stopping_patience=2)
    history = trainer.fit(10)
    assert [row["test_loss"] for row in history] == [1.0, 0.8, 0.85, 0.8]   # 0.8 again is no improvement
    assert lines[-1] == "early stopping after epoch 4: the test loss has not improved for 2 epochs (best 0.8000)"
    assert trainer.epochs_without_improvement() == (2, 0.8, "test_loss")


def test_min_delta_and_no_patience():
    trainer, _ = _trainer([1.0, 0.95, 0.92, 0.5], early_stopping_patience=2, early_stopping_min_delta=0.1)
    assert len(trainer.fit(10)) == 3             # 0.95 and 0.92 are within min_delta of 1.0
    trainer, _ = _trainer([1.0, 2.0, 3.0, 4.0])
    assert len(trainer.fit(4)) == 4               # no patience: never stops early
    with pytest.raises(ValueError, match="early_stopping_patience must be >= 1"):
        _trainer([], early_stopping_patience=0)


def test_a_resumed_run_keeps_counting(tmp_path):
    trainer, _ = _trainer([1.0, 0.9, 1.1], out=tmp_path, early_stopping_patience=2)
    assert len(trainer.fit(3)) == 3               # epochs ran out first: 1 epoch without improvement
    resumed, lines = _trainer([1.3, 0.5], out=tmp_path, early_stopping_patience=2)
    assert resumed.resume() == 3
    assert len(resumed.fit(10)) == 4 and "after epoch 4" in lines[-1]


def test_cli_early_stop(tmp_path, capsys):
    pytest.importorskip("sklearn")
    pytest.importorskip("cv2")
    tiny = ["--train-size", "64", "--test-size", "32", "--batch-size", "32", "--no-progress"]
    # lr 0: the test loss never improves after the first epoch, so --early-stop 1 ends at epoch 2
    code = cli.main(["train", "--epochs", "5", "--early-stop", "1", "--lr", "0", "--out", str(tmp_path), *tiny])
    out = capsys.readouterr().out
    assert code == 0 and "early stopping after epoch 2" in out
    with open(tmp_path / "log.csv") as f:
        assert len(list(csv.DictReader(f))) == 2
    code = cli.main(["train", "--early-stop", "0", "--out", str(tmp_path / "b"), *tiny])
    err = capsys.readouterr().err
    assert code == 2 and "--early-stop must be >= 1" in err and len(err.strip().splitlines()) == 1
