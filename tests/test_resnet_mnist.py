"""ResNet-20 on MNIST padded to 32x32 (examples/resnet_mnist.py) and the plain-vs-residual
example (examples/plain_vs_residual.py): the data helpers, a smoke run, and the >= 98% run.

Data: the shared MNIST subset (the t10k files: first 8,000 images train, last 2,000
test); the tests that need it skip when the files are absent (``mnist_dir``).
"""
import json
import pathlib

import numpy as np
import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def resnet_mnist(load_example):
    return load_example("resnet_mnist")


@pytest.fixture(scope="module")
def plain_vs_residual(load_example):
    return load_example("plain_vs_residual")


# ---------------------------------------------------------------- data helpers
def test_random_shift_moves_each_image_and_fills_zeros(resnet_mnist):
    rng = np.random.default_rng(0)
    images = rng.integers(1, 256, size=(50, 8, 8), dtype=np.uint8)      # no zeros: the fill is visible
    out = resnet_mnist.random_shift(images, 2, np.random.default_rng(1))
    assert out.shape == images.shape and out.dtype == np.uint8
    shifts = set()
    for src, dst in zip(images, out):
        # find the (dy, dx) that reproduces dst from src: exactly one must match
        matches = []
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                padded = np.pad(src, 2)
                if np.array_equal(padded[2 - dy:2 - dy + 8, 2 - dx:2 - dx + 8], dst):
                    matches.append((dy, dx))
        assert len(matches) == 1, matches
        shifts.add(matches[0])
    assert len(shifts) > 10                     # the shifts differ from image to image
    assert resnet_mnist.random_shift(images, 0, rng) is images


def test_random_shift_flips_colour_images(resnet_mnist):
    images = np.random.default_rng(0).integers(0, 256, size=(40, 6, 6, 3), dtype=np.uint8)
    out = resnet_mnist.random_shift(images, 0, np.random.default_rng(2), flip=True)
    assert out.shape == images.shape
    flipped = [np.array_equal(o, i[:, ::-1]) for o, i in zip(out, images)]
    kept = [np.array_equal(o, i) for o, i in zip(out, images)]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 5 < sum(flipped) < 35


def test_mnist_split_pads_and_separates_the_subset(resnet_mnist, mnist_dir):
    (xtr, ytr), (xte, yte) = resnet_mnist.mnist_split(mnist_dir, "subset", pad=2)
    assert xtr.shape == (8000, 32, 32) and xte.shape == (2000, 32, 32) and xtr.dtype == np.uint8
    assert ytr.shape == (8000,) and yte.shape == (2000,) and set(np.unique(yte)) == set(range(10))
    for x in (xtr, xte):                         # a 2-pixel zero frame around every digit
        assert not x[:, :2].any() and not x[:, -2:].any() and not x[:, :, :2].any() and not x[:, :, -2:].any()
    from tinydl.data import load_mnist
    images, labels = load_mnist(mnist_dir, train=False)
    np.testing.assert_array_equal(xte[:, 2:-2, 2:-2], images[8000:])
    np.testing.assert_array_equal(ytr, labels[:8000])
    (a, _), (b, _) = resnet_mnist.mnist_split(mnist_dir, "subset", pad=0, train_size=100, test_size=30)
    assert a.shape == (100, 28, 28) and b.shape == (30, 28, 28)
    with pytest.raises(ValueError, match="split"):
        resnet_mnist.mnist_split(mnist_dir, "val")


def test_to_batch_makes_float_nchw_in_unit_range(resnet_mnist):
    grey = np.array([[[0, 255], [51, 102]]], dtype=np.uint8)
    x = resnet_mnist.to_batch(grey, "cpu")
    assert x.shape == (1, 1, 2, 2) and x.dtype == np.float32
    np.testing.assert_allclose(x.numpy()[0, 0], [[0, 1], [0.2, 0.4]], rtol=1e-6)
    colour = np.random.default_rng(0).integers(0, 256, size=(3, 4, 5, 3), dtype=np.uint8)
    y = resnet_mnist.to_batch(colour, "cpu").numpy()
    assert y.shape == (3, 3, 4, 5)
    np.testing.assert_array_equal(y[1, 2], colour[1, :, :, 2] / np.float32(255))


def test_lr_factor_schedules(resnet_mnist):
    total = 100
    one = [resnet_mnist.lr_factor("onecycle", total)(s) for s in range(total)]
    peak = int(np.argmax(one))
    assert one[0] == pytest.approx(0.1) and peak == 9 and one[peak] == pytest.approx(1.0)
    assert all(a < b for a, b in zip(one[:peak], one[1:peak + 1]))          # warm-up rises
    assert all(a > b for a, b in zip(one[peak:-1], one[peak + 1:]))         # then falls ...
    assert 0 < one[-1] < 0.02                                               # ... to nearly 0
    paper = [resnet_mnist.lr_factor("paper", total)(s) for s in range(total)]
    assert paper[:50] == [1.0] * 50 and paper[50:75] == [0.1] * 25 and paper[75:] == [0.01] * 25
    assert resnet_mnist.lr_factor("constant", total)(57) == 1.0
    with pytest.raises(ValueError, match="schedule"):
        resnet_mnist.lr_factor("cosine", total)
    with pytest.raises(ValueError, match="optimizer"):
        resnet_mnist.make_optimizer("lbfgs", [], 0.1)


# ---------------------------------------------------------------- plain vs residual: smoke run
def test_plain_vs_residual_smoke(plain_vs_residual, mnist_dir, tmp_path):
    figure = tmp_path / "figure.png"
    summary = plain_vs_residual.main(["--data-dir", str(mnist_dir), "--depths", "20", "--epochs", "1",
                                      "--train-size", "64", "--test-size", "64", "--batch-size", "64",
                                      "--out", str(tmp_path / "run"), "--figure", str(figure)])
    assert list(summary) == ["plain20", "resnet20"]
    for s in summary.values():
        assert np.isfinite(s["train_loss"]) and 0 <= s["train_err"] <= 1 and 0 <= s["test_err"] <= 1
    for png in (figure, tmp_path / "run" / "plain_vs_residual.png", tmp_path / "run" / "curves.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((tmp_path / "run" / "history.json").read_text())
    row = saved["histories"]["resnet20"][0]
    assert row["train_err"] == pytest.approx(1 - row["train_acc"])
    assert row["test_err"] == pytest.approx(1 - row["test_acc"])
    assert row["iteration"] == 1 and len(saved["steps"]["plain20"]) == 1   # 64 images = one batch of 64


def test_plain_vs_residual_runs_on_cifar10_binary_files(plain_vs_residual, tmp_path):
    """--dataset cifar10: 3-channel nets on the binary CIFAR-10 files (a tiny fake set here)."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar" / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        records = np.concatenate([rng.integers(0, 10, (8, 1)), rng.integers(0, 256, (8, 3072))], axis=1)
        records.astype(np.uint8).tofile(folder / name)
    train, test, channels = plain_vs_residual.load_data("cifar10", tmp_path / "cifar", 20, 0)
    assert channels == 3 and train[0].shape == (20, 32, 32, 3) and test[0].shape == (8, 32, 32, 3)
    summary = plain_vs_residual.main(["--dataset", "cifar10", "--data-dir", str(tmp_path / "cifar"),
                                      "--depths", "20", "--epochs", "1", "--train-size", "16", "--batch-size", "16",
                                      "--augment", "--out", str(tmp_path / "run")])
    assert sorted(summary) == ["plain20", "resnet20"]
    assert all(np.isfinite(s["train_loss"]) for s in summary.values())


def test_smoothed_error_is_a_trailing_mean(plain_vs_residual):
    steps = [dict(acc=a) for a in (0.0, 0.5, 1.0, 1.0, 0.25)]
    xs, ys = plain_vs_residual.smoothed_error(steps, 2)
    np.testing.assert_array_equal(xs, [1, 2, 3, 4, 5])
    np.testing.assert_allclose(ys, [1.0, 0.75, 0.25, 0.0, 0.375])


def test_plain_vs_residual_plot_needs_no_training(plain_vs_residual, tmp_path):
    def rows(e):
        return [dict(iteration=10 * (i + 1), test_err=e / (i + 1)) for i in range(3)]

    def steps(e):
        return [dict(acc=1 - e / (1 + s / 10)) for s in range(30)]

    names = {"plain20": 0.3, "plain56": 0.5, "resnet20": 0.3, "resnet56": 0.2}
    path = plain_vs_residual.plot_degradation({n: rows(e) for n, e in names.items()},
                                              {n: steps(e) for n, e in names.items()}, tmp_path / "f.png", title="t")
    assert path.read_bytes()[:4] == b"\x89PNG" and path.stat().st_size > 1000


def test_plain_vs_residual_rejects_unknown_dataset(plain_vs_residual):
    with pytest.raises(ValueError, match="dataset"):
        plain_vs_residual.load_data("svhn", None, 10, 10)


# ---------------------------------------------------------------- ResNet-20 reaches 98%
def test_resnet20_reaches_98_percent_on_padded_mnist(resnet_mnist, mnist_dir, tmp_path):
    """The example's default recipe (see its docstring): one epoch over the 8,000 training
    images, Adam with a one-cycle lr, batch 32; ~1.5 CPU-minutes on one core."""
    result = resnet_mnist.main(["--data-dir", str(mnist_dir), "--out", str(tmp_path)])
    assert result["params"] == 269_722 - 2 * 9 * 16     # ResNet-20 with a 1-channel first conv
    assert result["test_acc"] >= 0.98, result
    assert (tmp_path / "history.json").exists()
