"""ZFNet's experiments (notes 001): occlusion sensitivity, invariance curves, and the example."""
import json
import math

import numpy as np
import pytest

import tinydl as td
import tinydl.nn as nn
from tinydl.utils import invariance_curve, occlusion_sensitivity
from tinydl.utils.sensitivity import rotate_images, scale_images, shift_images

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class RegionSum(nn.Module):
    """Scores (N, 2): [sum of channel 0 over rows 1:3, columns 2:5 minus ``offset``, 0] --
    a classifier whose answer under any occluder can be worked out by hand."""

    def __init__(self, offset=0.0):
        super().__init__()
        self.offset = offset
        self.drop = nn.Dropout(0.5)      # to see the probe switch to eval mode and back

    def forward(self, x):
        s = self.drop(x[:, 0, 1:3, 2:5]).sum(dim=(1, 2)).reshape(-1, 1) - self.offset
        return td.cat([s, s * 0], dim=1)


def _by_hand(image, patch, stride, fill, offset=0.0):
    """The region sum with each occluder in place, one position at a time."""
    c, h, w = image.shape
    rows = range(0, h - patch + 1, stride)
    cols = range(0, w - patch + 1, stride)
    out = np.empty((len(rows), len(cols)))
    for i, t in enumerate(rows):
        for j, left in enumerate(cols):
            x = image.copy()
            x[:, t:t + patch, left:left + patch] = np.asarray(fill).reshape(-1, 1, 1)
            out[i, j] = x[0, 1:3, 2:5].sum() - offset
    return out


# ================================================================ occlusion
def test_occlusion_map_of_a_known_model():
    ones = td.ones(1, 6, 6)
    # a 2x2 square at stride 2 over a 2x3 region of ones: it hides 0, 2 or 1 of the 6 pixels
    expected = [[6, 4, 5], [6, 4, 5], [6, 6, 6]]
    np.testing.assert_array_equal(occlusion_sensitivity(RegionSum(), ones, 0, 2, 2, softmax=False), expected)

    image = np.random.default_rng(0).random((2, 7, 8)).astype(np.float64)
    for patch, stride, fill in ((3, 1, 0.0), (2, 3, 0.5), (4, 2, (0.25, -1.0))):
        got = occlusion_sensitivity(RegionSum(), td.tensor(image), 0, patch, stride, fill, softmax=False,
                                    batch_size=7)         # several batches of occluded copies
        np.testing.assert_allclose(got, _by_hand(image, patch, stride, fill), rtol=1e-12)
    mean = occlusion_sensitivity(RegionSum(), image[None], 0, 3, 2, "mean", softmax=False)
    np.testing.assert_allclose(mean, _by_hand(image, 3, 2, image.mean(axis=(1, 2))), rtol=1e-12)


def test_occlusion_probabilities_classes_and_default_label():
    image = np.random.default_rng(1).random((1, 6, 6))
    model = RegionSum(offset=2.0)
    scores = _by_hand(image, 2, 1, 0.0, offset=2.0)
    prob, classes = occlusion_sensitivity(model, td.tensor(image), 0, 2, 1, return_classes=True)
    np.testing.assert_allclose(prob, 1 / (1 + np.exp(-scores)), rtol=1e-12)   # softmax of [s, 0]
    np.testing.assert_array_equal(classes, (scores < 0).astype(np.int64))
    assert 0 < classes.sum() < classes.size                                   # some squares flip the answer
    # without a label: the class the unoccluded image gets (0 here: its region sum exceeds 2)
    assert image[0, 1:3, 2:5].sum() > 2
    np.testing.assert_allclose(occlusion_sensitivity(model, td.tensor(image), None, 2, 1), prob)
    assert model.training                                                     # the mode is given back


def test_occlusion_whole_image_patch_and_errors():
    image = td.rand(1, 5, 5)
    got = occlusion_sensitivity(RegionSum(), image, 0, 5, 1, softmax=False)
    assert got.shape == (1, 1) and got.dtype == np.float64 and got[0, 0] == 0
    with pytest.raises(ValueError, match="patch <= image size"):
        occlusion_sensitivity(RegionSum(), image, 0, 6, 1)
    with pytest.raises(ValueError, match="'mean'"):
        occlusion_sensitivity(RegionSum(), image, 0, 2, 1, fill="grey")
    with pytest.raises(ValueError, match="label 2 out of range for 2 classes"):
        occlusion_sensitivity(RegionSum(), image, 2, 2, 1)
    with pytest.raises(ValueError, match=r"one image \(C, H, W\)"):
        occlusion_sensitivity(RegionSum(), td.rand(2, 1, 5, 5), 0, 2, 1)
    with pytest.raises(ValueError, match=r"must return \(N, K\) scores"):
        occlusion_sensitivity(lambda x: x, image, 0, 2, 1)


# ================================================================ invariance
def test_the_transforms_move_pixels_where_they_should():
    image = np.zeros((1, 1, 9, 9))
    image[0, 0, 2, 6] = 1.0
    down = shift_images(image, 3)
    assert down[0, 0, 5, 6] == pytest.approx(1.0) and down.sum() == pytest.approx(1.0)
    turned = rotate_images(image, 90)            # counter-clockwise on screen, about the centre (4, 4)
    np.testing.assert_allclose(turned[0, 0], np.rot90(image[0, 0]), atol=1e-6)
    centre = np.zeros((1, 1, 9, 9))
    centre[0, 0, 3:6, 3:6] = 1.0
    big = scale_images(centre, 2.0)
    assert big[0, 0, 4, 4] == pytest.approx(1.0) and big[0, 0].sum() > 4 * centre.sum() - 1
    np.testing.assert_array_equal(scale_images(centre, 1.0), centre)


@pytest.mark.parametrize("transform, value", [("rotate", 30.0), ("rotate", -75.0), ("scale", 1.3),
                                              ("scale", 0.6), ("translate", 2.0)])
def test_the_transforms_match_torch_affine_grid_and_grid_sample(transform, value):
    """PyTorch as the oracle: grid_sample reads output pixel p from the input at theta @ p in
    [-1, 1] coordinates, the inverse of the warp (square images: the same scale on both axes)."""
    torch = pytest.importorskip("torch")
    images = np.random.default_rng(3).random((2, 3, 11, 11)).astype(np.float32)
    a = np.radians(value) if transform == "rotate" else 0.0
    inverse = {"rotate": [[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0]],
               "scale": [[1 / value, 0, 0], [0, 1 / value, 0]],
               "translate": [[1, 0, 0], [0, 1, -2 * value / 11]]}[transform]
    theta = torch.tensor([inverse] * 2, dtype=torch.float32)
    grid = torch.nn.functional.affine_grid(theta, (2, 3, 11, 11), align_corners=False)
    expected = torch.nn.functional.grid_sample(torch.from_numpy(images), grid, mode="bilinear",
                                               padding_mode="zeros", align_corners=False).numpy()
    warp = {"rotate": rotate_images, "scale": scale_images, "translate": shift_images}[transform]
    got = warp(images, value)
    assert got.dtype == np.float32 and got.shape == images.shape
    # OpenCV interpolates with 1/32-pixel fixed-point weights: agreement to a few hundredths
    np.testing.assert_allclose(got, expected, atol=0.03)


def test_invariance_curve_shapes_and_values():
    rng = np.random.default_rng(2)
    images = rng.random((3, 1, 8, 8))
    labels = np.array([0, 1, 0])
    model = RegionSum(offset=1.5)
    values = [-2, -1, 0, 1, 2]
    curve = invariance_curve(model, td.tensor(images), labels, "translate", values,
                             features={"pixels": lambda x: x, "region": lambda x: x[:, :, 1:3, 2:5]})
    assert curve["values"].tolist() == values
    for key in ("prob", "pred", "correct"):
        assert curve[key].shape == (5, 3)
    assert set(curve["distance"]) == {"pixels", "region"} and curve["distance"]["region"].shape == (5, 3)
    for k, v in enumerate(values):
        moved = shift_images(images, v)
        s = moved[:, 0, 1:3, 2:5].sum(axis=(1, 2)) - 1.5
        p0 = 1 / (1 + np.exp(-s))
        np.testing.assert_allclose(curve["prob"][k], np.where(labels == 0, p0, 1 - p0), rtol=1e-10)
        np.testing.assert_array_equal(curve["pred"][k], (s < 0).astype(int))
        np.testing.assert_allclose(curve["distance"]["pixels"][k],
                                   np.sqrt(((moved - images) ** 2).sum(axis=(1, 2, 3))), rtol=1e-10)
    assert (curve["distance"]["pixels"][2] == 0).all()                     # value 0 leaves the images alone
    np.testing.assert_allclose(curve["norm"]["pixels"], np.sqrt((images ** 2).sum(axis=(1, 2, 3))))
    np.testing.assert_array_equal(curve["correct"], curve["pred"] == labels)
    assert model.training


def test_invariance_curve_takes_a_function_and_names_mistakes():
    images = td.rand(2, 1, 6, 6)
    flipped = invariance_curve(RegionSum(), images, [0, 0], lambda x, v: x[..., ::-1] * v, [1.0, 0.0])
    assert flipped["prob"].shape == (2, 2) and np.allclose(flipped["prob"][1], 0.5)   # all-zero image
    with pytest.raises(ValueError, match="unknown transform 'shear'"):
        invariance_curve(RegionSum(), images, [0, 0], "shear", [1])
    with pytest.raises(ValueError, match="changed the images' shape"):
        invariance_curve(RegionSum(), images, [0, 0], lambda x, v: x[:, :, :4], [1])
    with pytest.raises(ValueError, match="2 images but 3 labels"):
        invariance_curve(RegionSum(), images, [0, 0, 1], "rotate", [1])


# ================================================================ the example
def test_zfnet_experiments_example_short_run(load_example, mnist_dir, tmp_path):
    zf = load_example("zfnet_experiments")
    figures = tmp_path / "figures"
    result = zf.main(["--data-dir", str(mnist_dir), "--out", str(tmp_path / "out"), "--n-train", "300",
                      "--n-probe", "100", "--epochs", "2", "--evolution-epochs", "1", "2", "--units", "1",
                      "--layers", "relu1", "relu3", "--n-occlusion", "2", "--n-invariance", "2", "--stride", "4",
                      "--figures", str(figures), "--quiet"])
    for name in ("evolution", "occlusion", "invariance"):
        assert (tmp_path / "out" / f"{name}.png").read_bytes()[:8] == PNG_MAGIC
        assert (figures / f"zfnet_{name}.png").read_bytes() == (tmp_path / "out" / f"{name}.png").read_bytes()
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["test_acc"] == result["test_acc"] and 0 <= result["test_acc"] <= 1
    assert [u["layer"] for u in result["evolution"]] == ["relu1", "relu3"]
    assert all(len(u["peak"]) == 2 and u["epochs"] == [1, 2] for u in result["evolution"])
    assert len(result["occlusion"]) == 2
    for r in result["occlusion"]:
        assert r["positions"] == [6, 6]                            # (28 - 8) // 4 + 1 squares a side
        assert 0 <= r["prob_min"] <= r["prob_max"] <= 1
    inv = result["invariance"]
    assert set(inv) == {"translate", "scale", "rotate"}
    assert len(inv["rotate"]["values"]) == len(inv["rotate"]["accuracy"]) == 25
    zero = inv["translate"]["values"].index(0)
    assert inv["translate"]["relative_distance"]["relu1"][zero] == 0 and inv["translate"]["accuracy"][zero] == 1
    assert math.isfinite(result["seconds"])


@pytest.mark.gpu
def test_occlusion_and_invariance_on_cuda_match_the_cpu():
    td.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    image, images, labels = td.rand(1, 8, 8), td.rand(3, 1, 8, 8), [0, 1, 2]
    features = {"conv": lambda x: model[0](x)}
    cpu_map, cpu_classes = occlusion_sensitivity(model, image, 1, 3, 1, "mean", return_classes=True)
    cpu_curve = invariance_curve(model, images, labels, "rotate", [0, 30, 90], features=features)
    model.to("cuda")
    gpu_map, gpu_classes = occlusion_sensitivity(model, image.to("cuda"), 1, 3, 1, "mean", return_classes=True)
    gpu_curve = invariance_curve(model, images.to("cuda"), labels, "rotate", [0, 30, 90], features=features)
    assert isinstance(gpu_map, np.ndarray) and gpu_map.shape == (6, 6)
    np.testing.assert_allclose(gpu_map, cpu_map, rtol=1e-4, atol=1e-6)
    assert (gpu_classes == cpu_classes).mean() > 0.9          # near-ties may flip on another device
    np.testing.assert_allclose(gpu_curve["prob"], cpu_curve["prob"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(gpu_curve["distance"]["conv"], cpu_curve["distance"]["conv"], rtol=1e-4, atol=1e-5)
