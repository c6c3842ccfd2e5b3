"""The notes' MNIST experiment, the deconvnet visualisation and tinydl.utils.visualize."""
import json
import math
import pathlib

import numpy as np
import pytest

import tinydl as td
import tinydl.nn as nn
from tinydl.utils.visualize import (deconv_projections, feature_map_grid, filter_grid, make_grid, save_image,
                                    stack_panels, top_activations)
from models.alexnet import ConvNetWithDeconv

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def notes(load_example):
    return load_example("notes_mnist_experiment")


@pytest.fixture(scope="module")
def deconv(load_example):
    return load_example("deconvnet_visualize")


def _png(path):
    import cv2
    path = pathlib.Path(path)
    assert path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    image = cv2.imread(str(path))
    assert image is not None and image.size > 0
    return image


# ------------------------------------------------------------ the notes' experiment
def test_notes_experiment_two_cells(notes, mnist_dir, tmp_path, device):
    figure = tmp_path / "docs" / "curves.png"
    result = notes.main(["--device", device, "--data-dir", str(mnist_dir), "--out", str(tmp_path / "out"),
                         "--n-train", "200",
                         "--n-test", "50", "--epochs", "1", "--models", "mlp", "cnn", "--lrs", "0.01",
                         "--momenta", "0.9", "--quiet", "--figure", str(figure)])
    rows = result["rows"]
    assert [(r["model"], r["lr"], r["momentum"]) for r in rows] == [("mlp", 0.01, 0.9), ("cnn", 0.01, 0.9)]
    for r in rows:
        for key in ("train_loss", "test_loss", "train_acc", "test_acc", "seconds"):
            assert math.isfinite(r[key]), (key, r)
        assert 0 < r["train_loss"] < 10 and 0 <= r["test_acc"] <= 1
    # the notes' CNN numbers for lr 0.01 + momentum 0.9 sit beside ours; the MLP has none
    assert rows[1]["notes_train_loss"] == 0.06866 and rows[1]["notes_test_loss"] == 0.06981
    assert rows[0]["notes_train_loss"] is None

    lines = result["table"].splitlines()
    assert len(lines) == 2 + 2 and lines[0].startswith("| model | lr | momentum |")
    assert lines[2].startswith("| mlp | 0.01 | 0.9 |") and lines[3].startswith("| cnn | 0.01 | 0.9 |")
    assert "0.06866" in lines[3]
    assert "200" in result["split"]

    out = tmp_path / "out"
    for name in ("curves_mlp_momentum0.9.png", "curves_cnn_momentum0.9.png", "notes_mnist_curves.png"):
        _png(out / name)
    _png(figure)
    saved = json.loads((out / "results.json").read_text())
    assert len(saved["rows"]) == 2 and len(saved["histories"]["cnn lr=0.01 momentum=0.9"]) == 1
    assert "| cnn | 0.01 | 0.9 |" in (out / "results.md").read_text()


def test_notes_experiment_nan_is_a_row_not_a_crash(notes, mnist_dir, tmp_path):
    # lr 1e30 overflows float32 weights in the first steps: the loss becomes NaN
    result = notes.main(["--data-dir", str(mnist_dir), "--out", str(tmp_path), "--n-train", "64",
                         "--n-test", "20", "--epochs", "2", "--models", "mlp", "--lrs", "1e30",
                         "--momenta", "0", "--quiet"])
    row, = result["rows"]
    assert row["status"].startswith("NaN") and math.isnan(row["train_loss"])
    assert "| mlp | 1e+30 | 0 | NaN |" in result["table"]


def test_status_labels(notes):
    base = dict(train_loss=0.1, test_loss=0.2, test_acc=0.9)
    assert notes.status_of(base) == ""
    assert notes.status_of({**base, "test_loss": float("nan")}) == "NaN"
    assert notes.status_of({**base, "train_loss": 7.0}) == "diverged"
    assert notes.status_of({**base, "train_loss": 2.30, "test_acc": 0.11}) == "chance"
    assert notes.status_of({**base, "train_loss": 2.25, "test_acc": 0.3}) == "slow"


def test_test_only_split_is_fixed_and_disjoint(notes, mnist_dir):
    (trx, try_), (tex, tey), desc = notes.load_split(mnist_dir, 300, 100, "test-only")
    assert trx.shape == (300, 28, 28) and tex.shape == (100, 28, 28) and trx.dtype == np.uint8
    order = np.random.default_rng(0).permutation(10000)
    from tinydl.data.mnist import load_mnist
    x, y = load_mnist(mnist_dir, train=False)
    np.testing.assert_array_equal(trx, x[order[:300]])
    np.testing.assert_array_equal(tey, y[order[300:400]])
    assert "disjoint" in desc
    with pytest.raises(ValueError, match="split"):
        notes.load_split(mnist_dir, 10, 10, "bogus")


# ------------------------------------------------------------ make_grid and friends
def test_make_grid_shapes_and_placement():
    images = np.arange(5 * 4 * 3, dtype=np.float64).reshape(5, 4, 3)
    grid = make_grid(images, nrow=3, padding=2, normalize=True)
    assert grid.dtype == np.uint8 and grid.shape == (2 * (4 + 2) + 2, 3 * (3 + 2) + 2)
    # normalize=True maps the global min to 0 and max to 255; tile k sits at row k//3, column k%3
    assert grid[2, 2] == 0 and grid[2 + 6 + 3, 2 + 5 + 2] == 255
    expected = np.round(images[4] / images.max() * 255).astype(np.uint8)
    np.testing.assert_array_equal(grid[8:12, 7:10], expected)
    assert (grid[:2] == 0).all() and (grid[8:12, 12:] == 0).all()       # padding and the empty cell

    rgb = make_grid(np.random.default_rng(0).random((2, 3, 5, 6)), nrow=8, padding=1)
    assert rgb.shape == (5 + 2, 2 * 7 + 1, 3)                               # nrow caps at N
    one = make_grid(np.ones((7, 9)), padding=0)
    assert one.shape == (7, 9) and (one == 255).all()
    listed = make_grid([np.zeros((1, 4, 4)), np.ones((4, 4))], nrow=1, padding=0)
    assert listed.shape == (8, 4) and (listed[:4] == 0).all() and (listed[4:] == 255).all()


def test_make_grid_normalisation():
    a = np.stack([np.full((2, 2), 1.0), np.full((2, 2), 3.0)])
    a[1, 0, 0] = 5.0
    whole = make_grid(a, nrow=2, padding=0, normalize=True)
    assert whole[0, 0] == 0 and whole[0, 2] == 255 and whole[0, 3] == 128  # 1 -> 0, 5 -> 255, 3 -> 128
    each = make_grid(a, nrow=2, padding=0, normalize=True, scale_each=True)
    assert (each[:, :2] == 0).all()                                      # a constant image -> 0
    assert each[0, 2] == 255 and each[0, 3] == 0
    ranged = make_grid(a, nrow=2, padding=0, normalize=True, value_range=(1, 3))
    assert ranged[0, 2] == 255 and ranged[0, 3] == 255                   # clipped to the range
    unit = make_grid(np.array([[-1.0, 0.5, 2.0, np.nan]]), padding=0)
    np.testing.assert_array_equal(unit, [[0, 128, 255, 0]])              # [0, 1] clipped; NaN -> 0
    raw = np.array([[[0, 7], [200, 255]]], np.uint8)
    np.testing.assert_array_equal(make_grid(raw, padding=0), raw[0])     # uint8 passes through
    with pytest.raises(ValueError, match="channels"):
        make_grid(np.zeros((2, 2, 4, 4)))


def test_filter_and_feature_map_grids_and_save(tmp_path):
    import cv2
    grey = filter_grid(np.random.default_rng(0).normal(size=(4, 1, 3, 3)), zoom=2, padding=1)
    assert grey.shape == (2 * 7 + 1, 2 * 7 + 1)                          # 2x2 tiles of 6x6
    colour = filter_grid(td.randn(6, 3, 5, 5), zoom=1)
    assert colour.ndim == 3 and colour.shape[2] == 3
    deep = filter_grid(np.zeros((2, 5, 3, 3)), zoom=1, padding=1)
    assert deep.shape == (2 * 4 + 1, 5 * 4 + 1)                          # one row per filter
    maps = feature_map_grid(td.rand(1, 6, 4, 4), nrow=3, zoom=2, padding=1)
    assert maps.shape == (2 * 9 + 1, 3 * 9 + 1)
    with pytest.raises(ValueError, match="one sample"):
        feature_map_grid(np.zeros((2, 3, 4, 4)))

    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[..., 0] = 255                                                    # pure red in RGB
    path = save_image(rgb, tmp_path / "sub" / "red.png")
    back = cv2.imread(str(path))
    assert back.shape == (4, 6, 3) and (back[..., 2] == 255).all() and (back[..., 0] == 0).all()
    with pytest.raises(ValueError, match="uint8"):
        save_image(np.zeros((4, 4)), tmp_path / "x.png")
    canvas = stack_panels([np.zeros((3, 4), np.uint8), np.zeros((5, 2, 3), np.uint8), rgb], ncol=2, padding=1)
    assert canvas.shape == (1 + 5 + 1 + 4 + 1, 1 + 6 + 1 + 2 + 1, 3)


def test_top_activations_one_per_image():
    acts = np.zeros((4, 2, 3, 3))
    acts[0, 1, 2, 1] = 5.0
    acts[0, 1, 0, 0] = 4.0          # a second peak in image 0 is not a second entry
    acts[2, 1, 1, 1] = 3.0
    acts[3, 1, 0, 2] = 1.0
    idx, pos, val = top_activations(acts, channel=1, k=3)
    assert idx.tolist() == [0, 2, 3] and pos.tolist() == [7, 4, 2] and val.tolist() == [5.0, 3.0, 1.0]
    with pytest.raises(ValueError, match="channel"):
        top_activations(acts, channel=2)


# ------------------------------------------------------------ the deconvnet, by hand
def _conv_np(x, w, b, stride, pad):
    c, h, wd = x.shape
    o, _, k, _ = w.shape
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    ho, wo = (h + 2 * pad - k) // stride + 1, (wd + 2 * pad - k) // stride + 1
    out = np.empty((o, ho, wo))
    for q in range(o):
        for i in range(ho):
            for j in range(wo):
                out[q, i, j] = (xp[:, i * stride:i * stride + k, j * stride:j * stride + k] * w[q]).sum() + b[q]
    return out


def _pool_size(n, k, s, ceil):
    out = (-(-(n - k) // s) if ceil else (n - k) // s) + 1
    return out - 1 if ceil and (out - 1) * s >= n else out


def _maxpool_np(a, k, s, ceil):
    """Max pool with switches: the flat position h * W + w of each window's maximum."""
    c, h, w = a.shape
    ho, wo = _pool_size(h, k, s, ceil), _pool_size(w, k, s, ceil)
    out, switch = np.empty((c, ho, wo)), np.empty((c, ho, wo), np.int64)
    for q in range(c):
        for i in range(ho):
            for j in range(wo):
                win = a[q, i * s:min(i * s + k, h), j * s:min(j * s + k, w)]
                r, t = np.unravel_index(win.argmax(), win.shape)
                out[q, i, j], switch[q, i, j] = win[r, t], (i * s + r) * w + j * s + t
    return out, switch


def _conv_transpose_np(y, w, stride, pad, out_hw):
    """Each input value scatters a copy of its filter, scaled by the value (no bias)."""
    o, ho, wo = y.shape
    _, c, k, _ = w.shape
    full = np.zeros((c, max((ho - 1) * stride + k, out_hw[0] + 2 * pad),
                     max((wo - 1) * stride + k, out_hw[1] + 2 * pad)))
    for q in range(o):
        for i in range(ho):
            for j in range(wo):
                full[:, i * stride:i * stride + k, j * stride:j * stride + k] += y[q, i, j] * w[q]
    return full[:, pad:pad + out_hw[0], pad:pad + out_hw[1]]


class _StridedOneLayer(ConvNetWithDeconv):
    """conv 3x3/2 pad 1 -> ReLU -> max pool 2x2 (ZFNet's strided first layer, in small)."""
    layer_names = ("conv1", "relu1", "pool1")

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(2, 3, 3, stride=2, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.avgpool, self.classifier = nn.Identity(), nn.Identity()


@pytest.mark.parametrize("net", ["minizf", "strided"])
def test_deconv_projection_of_one_layer_matches_hand_computation(net, deconv):
    td.manual_seed(3)
    if net == "minizf":       # the example's net cut to conv1 7x7 p3 -> relu -> pool 2x2
        model, cin, size, (s, p), (pk, ps) = deconv.MiniZF(widths=(4, 1, 1), blocks=1), 1, 13, (1, 3), (2, 2)
    else:
        model, cin, size, (s, p), (pk, ps) = _StridedOneLayer(), 2, 11, (2, 1), (2, 2)
    model.to(td.float64).eval()
    x = np.random.default_rng(1).normal(size=(3, cin, size, size))
    conv = model.features[0]
    w, b = conv.weight.detach().numpy(), conv.bias.detach().numpy()

    pooled = [_maxpool_np(np.maximum(_conv_np(im, w, b, s, p), 0), pk, ps, ceil=False) for im in x]
    acts = np.stack([a for a, _ in pooled])
    channel = 1
    idx, pos, val = top_activations(acts, channel, k=3)
    got = deconv_projections(model, td.tensor(x[idx]), "pool1", channel, pos).numpy()
    assert got.shape == x[idx].shape and got.dtype == np.float64

    conv_hw = _conv_np(x[0], w, b, s, p).shape[1:]
    for n, (image, position) in enumerate(zip(idx, pos)):
        a, switch = pooled[image]
        # keep the one activation, unpool it to where its switch points, ReLU, transposed filters
        unpooled = np.zeros((a.shape[0],) + conv_hw)
        r, t = np.unravel_index(position, a.shape[1:])
        unpooled[channel].flat[switch[channel, r, t]] = a[channel, r, t]
        assert a[channel, r, t] == pytest.approx(val[n]) and val[n] > 0
        expected = _conv_transpose_np(np.maximum(unpooled, 0), w, s, p, (size, size))
        np.testing.assert_allclose(got[n], expected, rtol=1e-10, atol=1e-12)
        assert np.abs(expected).max() > 0


def test_deconv_projection_matches_torch(deconv):
    torch = pytest.importorskip("torch")
    tF = torch.nn.functional
    td.manual_seed(5)
    model = deconv.MiniZF(widths=(4, 6, 5), blocks=2).to(td.float64).eval()
    x = np.random.default_rng(2).normal(size=(2, 1, 16, 16))
    y = model.forward_features(td.tensor(x), until="relu2").detach().numpy()
    idx, pos, _ = top_activations(y, channel=3, k=2)
    got = deconv_projections(model, td.tensor(x[idx]), "relu2", 3, pos).numpy()

    w1, b1 = (torch.from_numpy(t.detach().numpy()) for t in (model.features[0].weight, model.features[0].bias))
    w2, b2 = (torch.from_numpy(t.detach().numpy()) for t in (model.features[3].weight, model.features[3].bias))
    t = torch.from_numpy(x[idx])
    c1 = tF.relu(tF.conv2d(t, w1, b1, padding=3))
    p1, switch = tF.max_pool2d(c1, 2, return_indices=True)
    c2 = tF.relu(tF.conv2d(p1, w2, b2, padding=2))
    keep = torch.zeros_like(c2)
    for n, q in enumerate(pos):
        keep[n, 3].view(-1)[q] = c2[n, 3].reshape(-1)[q]
    down = tF.conv_transpose2d(tF.relu(keep), w2, padding=2)                         # relu2, conv2
    down = tF.max_unpool2d(down, switch, 2, output_size=c1.shape[-2:])                # pool1
    down = tF.conv_transpose2d(tF.relu(down), w1, padding=3)                         # relu1, conv1
    np.testing.assert_allclose(got, down.numpy(), rtol=1e-10, atol=1e-12)


class _OverlappingPool(ConvNetWithDeconv):
    """Just ZFNet's 3x3/2 max pool."""
    layer_names = ("pool1",)

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.MaxPool2d(3, 2))
        self.avgpool, self.classifier = nn.Identity(), nn.Identity()


def test_deconvnet_through_overlapping_pool_keeps_the_activation():
    x = np.random.default_rng(0).uniform(0, 0.1, size=(1, 1, 7, 7))
    x[0, 0, 2, 2] = 1.0                      # the maximum of the four windows starting at 0 and 2
    model = _OverlappingPool().to(td.float64)
    got = deconv_projections(model, td.tensor(x), "pool1", 0, np.array([0])).numpy()
    expected = np.zeros_like(x)
    expected[0, 0, 2, 2] = 1.0               # window (0, 0) kept: its maximum goes back to its switch
    np.testing.assert_allclose(got, expected)


def test_deconvnet_example_tiny(deconv, mnist_dir, tmp_path, device):
    figure = tmp_path / "figs" / "deconvnet.png"
    result = deconv.main(["--device", device, "--data-dir", str(mnist_dir), "--out", str(tmp_path / "out"),
                          "--n-train", "128",
                          "--n-probe", "60", "--epochs", "1", "--widths", "4", "6", "6", "--layers", "relu3",
                          "--n-channels", "2", "--top-k", "4", "--figure", str(figure)])
    assert math.isfinite(result["test_loss"]) and 0 <= result["test_acc"] <= 1
    assert len(result["projections"]) == 2
    for p in result["projections"]:
        assert p["layer"] == "relu3" and len(p["images"]) == 4 and len(set(p["images"])) == 4
        assert p["values"] == sorted(p["values"], reverse=True)
    for name in ("filters.png", "feature_maps_relu1.png", "feature_maps_relu2.png", "deconv_relu3.png",
                 "deconvnet.png"):
        _png(tmp_path / "out" / name)
    assert _png(figure).shape == _png(tmp_path / "out" / "deconvnet.png").shape
    with pytest.raises(ValueError, match="unknown layer"):
        deconv.main(["--data-dir", str(mnist_dir), "--out", str(tmp_path / "o2"), "--n-train", "8",
                     "--n-probe", "8", "--epochs", "1", "--layers", "fc9"])
