"""`tinydl train` / `tinydl list`: outputs, exact --resume, every optimizer and schedule, data fitting."""
import argparse
import csv
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import models
import tinydl as td
import tinydl.nn as nn
from tinydl import cli

pytest.importorskip("cv2")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TINY = ["--train-size", "96", "--test-size", "64", "--batch-size", "32", "--no-progress"]


def _run(capsys, *argv):
    code = cli.main(["train", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def _csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


# ================================================================ outputs
def test_train_writes_log_csv_json_curves_and_checkpoint(tmp_path, capsys):
    pytest.importorskip("sklearn")
    code, out, _ = _run(capsys, "--epochs", "2", "--out", str(tmp_path), *TINY)
    assert code == 0, out
    assert "96 train / 64 test images, fed as 1x28x28" in out and "final test accuracy" in out
    rows = _csv(tmp_path / "log.csv")
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert set(rows[0]) == {"epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "test_top5", "seconds"}
    assert float(rows[1]["train_loss"]) < float(rows[0]["train_loss"])
    log = json.loads((tmp_path / "log.json").read_text())
    assert log["config"]["model"] == "mlp" and log["config"]["optimizer"] == "momentum"
    assert (tmp_path / "curves.png").read_bytes()[:8] == PNG_MAGIC
    state = td.load(tmp_path / "checkpoint.npz")
    assert state["epoch"] == 2 and state["optimizer_type"] == "SGD"
    assert state["optimizer"]["param_groups"][0]["momentum"] == 0.9


def test_default_out_folder_is_runs_model_dataset(tmp_path, capsys, monkeypatch):
    pytest.importorskip("sklearn")
    monkeypatch.chdir(tmp_path)
    code, out, _ = _run(capsys, "seed_cnn", "--epochs", "1", *TINY)
    assert code == 0
    assert (tmp_path / "runs" / "seed_cnn-digits" / "checkpoint.npz").exists()


# ================================================================ --resume
def test_resume_repeats_the_uninterrupted_run_exactly(tmp_path, capsys):
    """lenet_tf has dropout; the data is shuffled and the lr steps each epoch."""
    pytest.importorskip("sklearn")
    flags = ["lenet_tf", *TINY, "--schedule", "step", "--step-size", "1", "--gamma", "0.5"]
    assert _run(capsys, *flags, "--epochs", "3", "--out", str(tmp_path / "straight"))[0] == 0
    assert _run(capsys, *flags, "--epochs", "2", "--out", str(tmp_path / "split"))[0] == 0
    code, out, _ = _run(capsys, *flags, "--epochs", "3", "--out", str(tmp_path / "split"), "--resume")
    assert code == 0 and "resumed from" in out and "after epoch 2" in out

    straight, split = td.load(tmp_path / "straight" / "checkpoint.npz"), td.load(tmp_path / "split" / "checkpoint.npz")
    assert split["epoch"] == 3 and len(split["step_losses"]) == 9
    np.testing.assert_array_equal(split["step_losses"], straight["step_losses"])
    for name, value in straight["model"].items():
        np.testing.assert_array_equal(split["model"][name].numpy(), value.numpy(), err_msg=name)
    drop = ("seconds",)
    assert [{k: v for k, v in r.items() if k not in drop} for r in _csv(tmp_path / "split" / "log.csv")] == \
           [{k: v for k, v in r.items() if k not in drop} for r in _csv(tmp_path / "straight" / "log.csv")]
    assert [float(r["lr"]) for r in _csv(tmp_path / "split" / "log.csv")] == [0.05, 0.025, 0.0125]


def test_resume_errors(tmp_path, capsys):
    pytest.importorskip("sklearn")
    code, _, err = _run(capsys, "--epochs", "1", "--out", str(tmp_path), "--resume", *TINY)
    assert code == 2 and "no checkpoint at" in err
    assert _run(capsys, "--epochs", "1", "--out", str(tmp_path), *TINY)[0] == 0
    code, _, err = _run(capsys, "--epochs", "2", "--out", str(tmp_path), "--resume", "--lr", "0.2", *TINY)
    assert code == 2 and "different settings" in err and "--lr None (now 0.2)" in err
    (tmp_path / "checkpoint.npz").write_bytes(b"PK\x03\x04 truncated")
    code, _, err = _run(capsys, "--epochs", "2", "--out", str(tmp_path), "--resume", *TINY)
    assert code == 2 and "unreadable" in err and len(err.splitlines()) == 1


def test_resume_from_a_file_that_is_no_checkpoint_is_one_line(tmp_path, capsys):
    pytest.importorskip("sklearn")
    (tmp_path / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    code, _, err = _run(capsys, "--out", str(tmp_path / "run"), "--resume", str(tmp_path / "passwd"), *TINY)
    assert code == 2 and len(err.splitlines()) == 1
    assert "passwd' is corrupt or not a tinydl checkpoint: not an .npz file" in err and "Delete" not in err


# ================================================================ runs never clobber each other
def test_a_new_run_never_replaces_a_finished_one(tmp_path, capsys):
    pytest.importorskip("sklearn")
    out = str(tmp_path / "ow")
    assert _run(capsys, "--epochs", "2", "--out", out, *TINY)[0] == 0
    before = (tmp_path / "ow" / "checkpoint.npz").read_bytes()
    code, _, err = _run(capsys, "--epochs", "1", "--out", out, *TINY)
    assert code == 2 and len(err.splitlines()) == 1
    assert "already holds a run" in err and "--resume" in err and "--overwrite" in err
    assert (tmp_path / "ow" / "checkpoint.npz").read_bytes() == before       # untouched
    other = str(tmp_path / "other")
    assert _run(capsys, "--epochs", "1", "--out", other, *TINY)[0] == 0
    code, _, err = _run(capsys, "--epochs", "2", "--out", out, "--resume", f"{other}/checkpoint.npz", *TINY)
    assert code == 2 and "already holds a run" in err                # resuming another run into it: refused
    assert _run(capsys, "--epochs", "1", "--out", out, "--overwrite", *TINY)[0] == 0
    assert td.load(tmp_path / "ow" / "checkpoint.npz")["epoch"] == 1
    assert len(_csv(tmp_path / "ow" / "log.csv")) == 1


def test_detect_anomaly_flag_trains_and_may_change_on_resume(tmp_path, capsys):
    pytest.importorskip("sklearn")
    assert _run(capsys, "--epochs", "1", "--out", str(tmp_path), "--detect-anomaly", *TINY)[0] == 0
    assert json.loads((tmp_path / "log.json").read_text())["config"]["detect_anomaly"] is True
    assert _run(capsys, "--epochs", "2", "--out", str(tmp_path), "--resume", *TINY)[0] == 0


@pytest.mark.parametrize("out", ["/proc/tinydl-x", "a-file/below"])
def test_an_unwritable_out_is_refused_before_training(tmp_path, capsys, monkeypatch, out):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a-file").write_text("a regular file")
    code, stdout, err = _run(capsys, "--out", out, *TINY)
    assert code == 2 and len(err.splitlines()) == 1 and "is not a writable folder" in err
    assert "epoch" not in stdout                                   # refused before the first epoch


def test_bad_dataset_files_are_one_line_errors(tmp_path, capsys):
    labels = np.array([1, 200], np.uint8)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 2]) + labels.tobytes())
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(bytes([0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 28, 0, 0, 0, 28])
                                                       + bytes(2 * 28 * 28))
    code, _, err = _run(capsys, "--dataset", "mnist", "--data-dir", str(tmp_path), "--out", str(tmp_path / "o"))
    assert code == 2 and len(err.splitlines()) == 1 and "has label 200 at index 1" in err


@pytest.mark.parametrize("flags, message", [
    (["--device", "tpu"], "--device 'tpu': expected cpu, cuda or cuda:N"),
    (["--lr", "-1"], "--lr must be >= 0 and finite, got -1.0"),
    (["--lr", "nan"], "--lr must be >= 0 and finite, got nan"),
    (["--lr", "inf"], "--lr must be >= 0 and finite, got inf"),
    (["--momentum", "inf"], "--momentum must be >= 0 and finite, got inf"),
    (["--weight-decay", "inf"], "--weight-decay must be >= 0 and finite, got inf"),
    (["--schedule", "multistep", "--milestones", "-3", "0"],
     "--milestones must be positive epochs in increasing order, got -3 0"),
    (["--schedule", "multistep", "--milestones", "3", "2"], "--milestones must be positive epochs in increasing"),
    (["--schedule", "step", "--milestones", "2"], "--milestones applies to --schedule multistep (not step)"),
    (["--gamma", "0.5"], "--gamma applies to --schedule step or multistep or exp or plateau (not none)"),
    (["--schedule", "cosine", "--patience", "3"], "--patience applies to --schedule plateau (not cosine)"),
    (["--schedule", "cosine", "--step-size", "3"], "--step-size applies to --schedule step (not cosine)"),
    (["--image-size", "5000"], "--image-size must be in 1..4096, got 5000"),
    (["--workers", "-2"], "--workers must be >= 0, got -2"),
    (["--train-size", "-5"], "--train-size must be >= 1"),
    (["--train-size", "0"], "--train-size must be >= 1 (leave it out to use every image), got 0"),
    (["--test-size", "0"], "--test-size must be >= 1"),
    (["--epochs", "0"], "--epochs must be >= 1"),
    (["--momentum", "-0.5"], "--momentum must be >= 0"),
])
def test_bad_flag_values_are_one_line_errors(tmp_path, capsys, flags, message):
    code, stdout, err = _run(capsys, "--out", str(tmp_path), *TINY, *flags)
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith(f"tinydl train: error: {message}"), err
    assert os.listdir(tmp_path) == []


# ================================================================ optimizers and schedules
def _args(**kw):
    base = dict(optimizer="momentum", lr=None, momentum=None, weight_decay=0.0, schedule="none", epochs=6,
                step_size=None, gamma=None, milestones=None, patience=1)
    base.update(kw)
    return argparse.Namespace(**base)


@pytest.mark.parametrize("name", cli.OPTIMIZERS)
def test_each_optimizer_constructs_and_steps(name):
    td.manual_seed(0)
    model = nn.Linear(3, 2)
    opt = cli.build_optimizer(_args(optimizer=name, weight_decay=1e-4), model.parameters())
    assert opt.param_groups[0]["lr"] == cli.DEFAULT_LR[name]
    if name in ("sgd", "momentum", "nesterov"):
        assert opt.param_groups[0]["momentum"] == (0.0 if name == "sgd" else 0.9)
        assert opt.param_groups[0]["nesterov"] == (name == "nesterov")
    before = model.weight.detach().numpy().copy()
    loss = (model(td.ones(4, 3)) ** 2).mean()
    loss.backward()
    opt.step()
    assert not np.array_equal(model.weight.detach().numpy(), before)


def test_optimizer_flag_errors():
    with pytest.raises(cli.UsageError, match="--momentum does not apply to --optimizer adam"):
        cli.build_optimizer(_args(optimizer="adam", momentum=0.5), nn.Linear(2, 2).parameters())
    with pytest.raises(cli.UsageError, match="nesterov needs --momentum > 0"):
        cli.build_optimizer(_args(optimizer="nesterov", momentum=0.0), nn.Linear(2, 2).parameters())


@pytest.mark.parametrize("schedule, lrs", [
    ("none", [0.1] * 6),
    ("step", [0.1, 0.1, 0.01, 0.01, 0.001, 0.001]),          # default step size: epochs // 3 = 2
    ("multistep", [0.1, 0.1, 0.1, 0.01, 0.001, 0.001]),      # default milestones: 3 and 4
    ("exp", [0.1 * 0.9 ** e for e in range(6)]),
    ("cosine", [0.05 * (1 + np.cos(np.pi * e / 6)) for e in range(6)]),
    ("plateau", [0.1, 0.1, 0.1, 0.01, 0.01, 0.001]),         # constant metric, patience 1
])
def test_each_schedule_constructs_and_steps(schedule, lrs):
    model = nn.Linear(2, 2)
    opt = cli.build_optimizer(_args(lr=0.1), model.parameters())
    scheduler, about = cli.build_scheduler(_args(schedule=schedule), opt)
    assert isinstance(about, str)
    seen = []
    for _ in range(6):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        if scheduler is not None:
            scheduler.step(1.0) if schedule == "plateau" else scheduler.step()
    assert seen == pytest.approx(lrs, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("optimizer, schedule", [("adam", "cosine"), ("nesterov", "plateau")])
def test_train_command_with_other_optimizers_and_schedules(tmp_path, capsys, optimizer, schedule):
    pytest.importorskip("sklearn")
    code, out, _ = _run(capsys, "seed_cnn", "--epochs", "2", "--optimizer", optimizer, "--schedule", schedule,
                        "--out", str(tmp_path), *TINY)
    assert code == 0, out
    assert td.load(tmp_path / "checkpoint.npz")["scheduler_type"] in ("CosineAnnealingLR", "ReduceLROnPlateau")


# ================================================================ fitting the images to the model
def test_fit_images_pads_resizes_and_converts_channels():
    grey = np.arange(28 * 28, dtype=np.uint8).reshape(28, 28)
    padded = cli.FitImages(32)(grey)
    assert padded.shape == (32, 32) and padded[:2].sum() == 0 and np.array_equal(padded[2:30, 2:30], grey)
    assert cli.FitImages(64, 3)(grey).shape == (64, 64, 3)
    assert cli.FitImages(16)(grey).shape == (16, 16)
    rgb = np.zeros((32, 32, 3), np.uint8)
    rgb[..., 1] = 200
    assert cli.FitImages(28, 1)(rgb).shape == (28, 28)
    assert cli.FitImages()(grey) is not None and cli.FitImages()(grey).shape == (28, 28)


def test_lenet5_gets_mnist_sized_images_padded_to_32(tmp_path, capsys):
    pytest.importorskip("sklearn")
    code, out, _ = _run(capsys, "lenet5", "--epochs", "1", "--out", str(tmp_path), *TINY)
    assert code == 0 and "fed as 1x32x32" in out


def test_a_colour_network_gets_grey_images_repeated_to_3_channels(monkeypatch):
    def rgb_net(num_classes=10):        # no in_channels argument: its first conv takes 3 channels
        return nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, num_classes))

    monkeypatch.setitem(models._REGISTRY, "rgb_net", rgb_net)
    model, fit, chw = cli.build_model("rgb_net", (28, 28), 10)
    assert chw == (3, 28, 28) and fit.channels == 3
    cli.check_model_input(model, "rgb_net", chw, 10)


def test_clear_errors_for_models_that_cannot_take_the_images(tmp_path, capsys, monkeypatch):
    pytest.importorskip("sklearn")
    code, _, err = _run(capsys, "lenet5", "--image-size", "12", "--epochs", "1", "--out", str(tmp_path), *TINY)
    assert code == 2 and "model lenet5 cannot take 1x12x12 images" in err and "--image-size" in err

    monkeypatch.setitem(models._REGISTRY, "not_a_classifier", lambda num_classes=10: nn.Conv2d(1, 2, 3))
    code, _, err = _run(capsys, "not_a_classifier", "--epochs", "1", "--out", str(tmp_path), *TINY)
    assert code == 2 and "trains classifiers" in err
    code, _, err = _run(capsys, "no_such_net", "--epochs", "1", "--out", str(tmp_path), *TINY)
    assert code == 2 and "unknown model 'no_such_net'" in err and "lenet5" in err


# ================================================================ datasets
def test_mnist_test_split_fallback(tmp_path, capsys, mnist_dir):
    code, out, _ = _run(capsys, "seed_cnn", "--dataset", "mnist", "--data-dir", str(mnist_dir), "--epochs", "1",
                        "--out", str(tmp_path), *TINY)
    assert code == 0 and "only the test split found" in out and "fed as 1x28x28" in out


def test_missing_dataset_files_are_a_clear_error(tmp_path, capsys):
    code, _, err = _run(capsys, "--dataset", "fashion-mnist", "--data-dir", str(tmp_path), "--out",
                        str(tmp_path / "run"), *TINY)
    assert code == 2 and "t10k-images-idx3-ubyte" in err and str(tmp_path) in err


def _fake_cifar(folder, n=40):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        records = np.concatenate([rng.integers(0, 10, (n, 1)), rng.integers(0, 256, (n, 3072))], axis=1)
        records.astype(np.uint8).tofile(folder / name)


def test_cifar10_binary_files_with_a_colour_lenet5(tmp_path, capsys):
    _fake_cifar(tmp_path / "cifar-10-batches-bin")
    code, out, _ = _run(capsys, "lenet5", "--dataset", "cifar10", "--data-dir", str(tmp_path), "--epochs", "1",
                        "--out", str(tmp_path / "run"), *TINY)
    assert code == 0, out
    assert "96 train / 40 test images, fed as 3x32x32" in out


def test_synthetic_shapes_six_classes(tmp_path, capsys):
    code, out, _ = _run(capsys, "seed_cnn", "--dataset", "shapes", "--epochs", "1", "--out", str(tmp_path), *TINY)
    assert code == 0, out
    assert "fed as 1x28x28" in out          # 32x32 drawings resized to seed_cnn's 28x28
    state = td.load(tmp_path / "checkpoint.npz")
    assert state["model"]["classifier.1.weight"].shape[0] == 6


def test_list_command(capsys):
    assert cli.main(["list"]) == 0
    names = capsys.readouterr().out.split()
    assert "mlp" in names and "lenet5" in names and "resnet20" in names


def test_summary_command(capsys):
    pytest.importorskip("tinydl.utils.summary")
    assert cli.main(["summary", "lenet5", "--input-size", "1", "32", "32"]) == 0
    out = capsys.readouterr().out
    assert "61,706" in out and "features.0" in out
    assert cli.main(["summary", "seed_cnn"]) == 0
    assert "input 1x28x28" in capsys.readouterr().out


def _as_on_intel_avx512(*argv):
    """Output lines of the tinydl command started as on an Intel AVX-512 core (see the script)."""
    root = pathlib.Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, str(root / "tests" / "_dist_scripts" / "as_on_intel_avx512.py"), *argv],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_train_starts_itself_again_with_wide_vectors_on_an_intel_avx512_core(tmp_path):
    lines = _as_on_intel_avx512("train", "--out", str(tmp_path / "run"), "--epochs", "1", *TINY)
    first, again = (line.split(": ") for line in lines[:2])
    assert first[0] == again[0] and (first[1], again[1]) == ("NUMBA_CPU_FEATURES unset", "NUMBA_CPU_FEATURES set")
    assert lines[-1].startswith("final test accuracy")
    lines = _as_on_intel_avx512("list")                                   # only train starts again
    assert sum(line.startswith("process") for line in lines) == 1 and "mlp" in lines


def test_console_main_called_by_a_script_with_its_own_argv_does_not_start_again(monkeypatch, capsys):
    """A notebook or script that sets sys.argv and calls console_main: running its own
    command line again would run the notebook again, so it trains in-process."""
    monkeypatch.setattr(sys, "argv", ["tinydl", "train", "--help"])
    monkeypatch.setattr(td.backends.cpu, "wide_vector_environment", lambda: pytest.fail("probed for a restart"))
    with pytest.raises(SystemExit) as stop:
        cli.console_main()
    assert stop.value.code == 0 and "usage: tinydl train" in capsys.readouterr().out


def test_cuda_without_a_gpu_is_a_clear_error(tmp_path, capsys):
    if td.cuda.is_available():
        pytest.skip("a CUDA device is present")
    code, _, err = _run(capsys, "--device", "cuda", "--out", str(tmp_path), *TINY)
    assert code == 2 and "--device cuda: no CUDA device" in err


# ================================================================ what the bug hunt found
def test_a_diverging_run_exits_2_and_writes_no_nan_checkpoint(tmp_path, capsys):
    """lr 1e30: every step's loss is finite, but the epoch's last update is not."""
    pytest.importorskip("sklearn")
    code, _, err = _run(capsys, "mlp", "--lr", "1e30", "--train-size", "64", "--batch-size", "64", "--test-size",
                        "50", "--epochs", "1", "--no-progress", "--out", str(tmp_path))
    assert code == 2 and len(err.splitlines()) == 1 and "training diverged" in err, err
    assert "no checkpoint of this run was written" in err and not (tmp_path / "checkpoint.npz").exists()


def test_a_negative_seed_trains_as_pytorchs_manual_seed_allows(tmp_path, capsys):
    pytest.importorskip("sklearn")
    assert _run(capsys, "--seed", "-1", "--epochs", "1", "--out", str(tmp_path), *TINY)[0] == 0
    td.manual_seed(-1)
    a = td.randn(4).numpy()
    td.manual_seed(2**64 - 1)
    np.testing.assert_array_equal(a, td.randn(4).numpy())


def test_an_out_held_by_a_live_run_is_refused_and_a_stale_lock_taken_over(tmp_path, capsys):
    pytest.importorskip("sklearn")
    from tinydl.train import LOCK_NAME
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (tmp_path / LOCK_NAME).write_text(str(sleeper.pid))
        code, _, err = _run(capsys, "--epochs", "1", "--out", str(tmp_path), *TINY)
        assert code == 2 and len(err.splitlines()) == 1, err
        assert f"already holds a run in progress (process {sleeper.pid})" in err
    finally:
        sleeper.kill()
        sleeper.wait()
    assert _run(capsys, "--epochs", "1", "--out", str(tmp_path), *TINY)[0] == 0      # its run died: stale
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.npz", "curves.png", "log.csv", "log.json"]


def test_a_folder_named_like_a_run_file_is_refused_before_training(tmp_path, capsys):
    (tmp_path / "checkpoint.npz").mkdir()
    code, out, err = _run(capsys, "--epochs", "1", "--out", str(tmp_path), *TINY)
    assert code == 2 and len(err.splitlines()) == 1 and "checkpoint.npz is a folder" in err, err
    assert "epoch" not in out


def test_convert_weights_never_replaces_a_folder(tmp_path, capsys):
    (tmp_path / "src.pth").write_bytes(b"x")
    (tmp_path / "dst").mkdir()
    code = cli.main(["convert-weights", str(tmp_path / "src.pth"), str(tmp_path / "dst"), "--force"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1 and "dst is a folder" in err, err


def test_ctrl_c_is_one_line_and_exit_status_130(tmp_path, capsys, monkeypatch):
    pytest.importorskip("sklearn")
    from tinydl.train import Trainer
    real = Trainer.train_one_epoch

    def stop_in_epoch_2(self):
        if self.epoch == 1:
            raise KeyboardInterrupt
        return real(self)
    monkeypatch.setattr(Trainer, "train_one_epoch", stop_in_epoch_2)
    code, _, err = _run(capsys, "--epochs", "3", "--out", str(tmp_path), *TINY)
    assert code == 130 and err.splitlines() == [f"tinydl train: interrupted at epoch 2; the checkpoint of epoch 1 "
                                                f"stays in {tmp_path}"], err
    assert td.load(tmp_path / "checkpoint.npz")["epoch"] == 1 and not (tmp_path / ".tinydl-run.lock").exists()


@pytest.mark.parametrize("argv, message", [
    (["summary", "lenet5", "--input-size", "1", "1", "1"], "model lenet5 cannot take a 1x1x1x1 input (RuntimeError: "),
    (["summary", "lenet5", "--input-size", "0", "32", "32"], "--input-size must be 1 to 3 sizes (C H W) in 1..4096"),
    (["summary", "lenet5", "--input-size", "1", "100000", "100000"], "--input-size must be"),
    (["summary", "lenet5", "--input-size", "3", "4096", "4096", "--batch-size", "100"], "input values, more than"),
    (["summary", "lenet5", "--batch-size", "0"], "--batch-size must be in 1..4096, got 0"),
    (["summary", "lenet5", "--num-classes", "0"], "--num-classes must be in 1..1000000, got 0"),
    (["summary", "lenet5", "--num-classes", "-3"], "--num-classes must be in 1..1000000, got -3"),
    (["gradcheck", "mlp", "--eps", "0"], "--eps must be > 0 and finite, got 0.0"),
    (["gradcheck", "mlp", "--num-classes", "0"], "--num-classes must be in 1..1000000, got 0"),
])
def test_summary_and_gradcheck_flag_mistakes_are_one_line_errors(capsys, argv, message):
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1 and message in err, err


def test_a_finished_run_resumed_trains_nothing_and_says_it_wrote_nothing(tmp_path, capsys):
    pytest.importorskip("sklearn")
    assert _run(capsys, "--epochs", "1", "--out", str(tmp_path), *TINY)[0] == 0
    before = {name: (tmp_path / name).read_bytes() for name in os.listdir(tmp_path)}
    code, out, _ = _run(capsys, "--epochs", "1", "--out", str(tmp_path), "--resume", *TINY)
    assert code == 0 and "nothing to train" in out and "wrote" not in out, out
    assert {name: (tmp_path / name).read_bytes() for name in os.listdir(tmp_path)} == before


def test_a_run_that_fails_before_training_leaves_no_empty_out_folder(tmp_path, capsys):
    out = tmp_path / "new" / "run"
    code, _, err = _run(capsys, "--dataset", "fashion-mnist", "--data-dir", str(tmp_path), "--out", str(out), *TINY)
    assert code == 2 and "t10k-images-idx3-ubyte" in err
    assert not out.exists() and (tmp_path / "new").exists()     # only the folder the run made itself


def test_ctrl_c_before_training_is_one_line_too(tmp_path, capsys, monkeypatch):
    def interrupted(args, fit):
        raise KeyboardInterrupt
    monkeypatch.setattr(cli, "_load_dataset", interrupted)
    code, _, err = _run(capsys, "--epochs", "1", "--out", str(tmp_path / "run"), *TINY)
    assert code == 130 and err == "tinydl train: interrupted\n" and not (tmp_path / "run").exists()


def test_a_checkpoint_whose_model_does_not_fit_is_one_line(tmp_path, capsys):
    """The model's own error spans lines (missing keys...): the CLI still answers in one."""
    pytest.importorskip("sklearn")
    assert _run(capsys, "--epochs", "1", "--out", str(tmp_path), *TINY)[0] == 0
    state = td.load(tmp_path / "checkpoint.npz")
    state["model"].pop(next(iter(state["model"])))
    td.save(state, tmp_path / "checkpoint.npz")
    code, _, err = _run(capsys, "--epochs", "2", "--out", str(tmp_path), "--resume", *TINY)
    assert code == 2 and len(err.splitlines()) == 1 and "does not fit the model MLP (entry model)" in err, err


def test_convert_weights_says_how_many_entries_it_skipped(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    torch.save({"w": torch.ones(2, 3), "sub": {"b": torch.ones(2)}, "n": 3}, tmp_path / "nested.pth")
    assert cli.main(["convert-weights", str(tmp_path / "nested.pth"), str(tmp_path / "w.npz")]) == 0
    out = capsys.readouterr().out
    assert "wrote" in out and "1 tensors, 6 values; skipped 2 entries that are not tensors" in out and "sub, n" in out
    assert list(td.load(tmp_path / "w.npz")) == ["w"]
