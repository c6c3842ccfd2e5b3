"""SPP-net, FCN and bilinear CNN: their pooling ops (gradchecks, PyTorch parity),
the models (fixed-length SPP output, FCN output size = input size, crops, bilinear
upsampling), one SGD step each, the synthetic segmentation set and the examples."""
import pathlib

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import tinydl as td
import tinydl.nn as nn
import tinydl.nn.functional as F
import models
from models.fcn import FCN, bilinear_kernel, coordinate_map, load_vgg16_backbone
from models.vgg import make_layers
from tinydl.data.shapes_segmentation import SHAPE_CLASSES, SyntheticSegmentation, colorize_mask
from tinydl.vision.ops import (BilinearPooling, SpatialPyramidPooling, bilinear_pool, signed_sqrt,
                               spatial_pyramid_pool, spp_num_features)

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


def _distinct(rng, shape, dtype=np.float64):
    """Values at least 1e-2 apart: no ties for max-type ops, even after a finite-difference nudge."""
    n = int(np.prod(shape))
    return (rng.permutation(n).reshape(shape) * 1e-2 - n * 5e-3).astype(dtype)


def _torch_spp(x, levels, mode):
    pool = TF.adaptive_max_pool2d if mode == "max" else TF.adaptive_avg_pool2d
    return torch.cat([pool(x, l).flatten(1) for l in levels], 1)


def _torch_bilinear(x, y, eps=1e-8):
    n, c1, h, w = x.shape
    z = (x.flatten(2) @ y.flatten(2).transpose(1, 2) / (h * w)).flatten(1)
    return TF.normalize(torch.sign(z) * torch.sqrt(torch.abs(z) + eps), dim=1)


def _compare_with_torch(td_fn, torch_fn, arrays, dtype, atol, rtol):
    """Forward and every input gradient (random upstream) of td_fn vs torch_fn."""
    arrays = [a.astype(dtype) for a in arrays]
    xs = [td.tensor(a, requires_grad=True) for a in arrays]
    ts = [torch.tensor(a, requires_grad=True) for a in arrays]
    y, yt = td_fn(*xs), torch_fn(*ts)
    assert y.dtype == dtype and y.shape == tuple(yt.shape)
    np.testing.assert_allclose(y.detach().numpy(), yt.detach().numpy(), atol=atol, rtol=rtol)
    g = np.random.default_rng(5).standard_normal(y.shape).astype(dtype)
    y.backward(td.tensor(g))
    yt.backward(torch.tensor(g))
    for x, t in zip(xs, ts):
        assert x.grad.dtype == dtype
        np.testing.assert_allclose(x.grad.numpy(), t.grad.numpy(), atol=atol, rtol=rtol)


# ================================================================ spatial pyramid pooling
@pytest.mark.parametrize("levels", [(1, 2, 4), (1, 2, 3, 6)])
@pytest.mark.parametrize("hw", [(1, 1), (3, 5), (13, 13), (20, 17)])
def test_spp_has_a_fixed_length_for_any_size(levels, hw):
    x = td.randn(2, 3, *hw)
    y = spatial_pyramid_pool(x, levels)
    assert y.shape == (2, 3 * sum(l * l for l in levels)) == (2, spp_num_features(3, levels))


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("dtype,atol,rtol", [(np.float32, 1e-6, 1e-5), (np.float64, 1e-12, 1e-10)])
def test_spp_matches_torch_composition(mode, dtype, atol, rtol):
    x = _distinct(np.random.default_rng(0), (2, 3, 7, 10))      # 7 and 10: uneven, overlapping bins
    _compare_with_torch(lambda a: spatial_pyramid_pool(a, (1, 2, 4), mode),
                        lambda a: _torch_spp(a, (1, 2, 4), mode), [x], dtype, atol, rtol)


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_spp_gradcheck(mode):
    x = td.tensor(_distinct(np.random.default_rng(1), (1, 2, 5, 6)), requires_grad=True)
    assert td.gradcheck(lambda a: spatial_pyramid_pool(a, (1, 2, 3), mode), [x])


def test_spp_bins_equal_the_papers_on_a_13x13_map():
    """SPP-net pools level l with window ceil(13/l), stride floor(13/l) on ZF-5's 13x13 conv5;
    the adaptive bins are the same bins there, for every level the paper uses."""
    x = torch.tensor(_distinct(np.random.default_rng(2), (1, 4, 13, 13)))
    levels = (1, 2, 3, 4, 6)
    paper = torch.cat([TF.max_pool2d(x, -(-13 // l), 13 // l).flatten(1) for l in levels], 1)
    ours = spatial_pyramid_pool(td.tensor(x.numpy()), levels)
    np.testing.assert_array_equal(ours.numpy(), paper.numpy())


def test_spp_on_a_map_smaller_than_the_level():
    x = td.tensor(np.array([[[[3.0]]]]))                        # 1x1, levels up to 4
    y = spatial_pyramid_pool(x, (1, 2, 4))
    np.testing.assert_array_equal(y.numpy(), np.full((1, 21), 3.0))
    x2 = td.tensor(_distinct(np.random.default_rng(3), (1, 1, 2, 3)))
    y2 = spatial_pyramid_pool(x2, (6,), "max")                 # every bin one pixel: a nearest resize
    np.testing.assert_array_equal(y2.numpy(), _torch_spp(torch.tensor(x2.numpy()), (6,), "max").numpy())


def test_spp_module_and_errors():
    spp = SpatialPyramidPooling((1, 2, 4))
    assert spp.num_features(256) == 5376 and "levels=(1, 2, 4)" in repr(spp)
    assert spp(td.randn(1, 256, 9, 11)).shape == (1, 5376)
    with pytest.raises(ValueError, match="levels"):
        spatial_pyramid_pool(td.randn(1, 2, 4, 4), (1, 0))
    with pytest.raises(ValueError, match="4-D"):
        spatial_pyramid_pool(td.randn(2, 4, 4), (1, 2))
    with pytest.raises(ValueError, match="mode"):
        SpatialPyramidPooling((1,), mode="min")


# ================================================================ bilinear pooling
@pytest.mark.parametrize("dtype,atol,rtol", [(np.float32, 1e-6, 1e-4), (np.float64, 1e-12, 1e-9)])
def test_bilinear_pool_matches_torch_composition(dtype, atol, rtol):
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((2, 3, 4, 5)), rng.standard_normal((2, 5, 4, 5))
    _compare_with_torch(lambda a, b: bilinear_pool(a, b), _torch_bilinear, [x, y], dtype, atol, rtol)
    _compare_with_torch(lambda a: bilinear_pool(a), lambda a: _torch_bilinear(a, a), [x], dtype, atol, rtol)


def test_bilinear_pool_gradchecks():
    rng = np.random.default_rng(6)
    x = td.tensor(rng.standard_normal((2, 3, 3, 4)), requires_grad=True)
    y = td.tensor(rng.standard_normal((2, 2, 3, 4)), requires_grad=True)
    assert td.gradcheck(lambda a, b: bilinear_pool(a, b), [x, y])
    assert td.gradcheck(lambda a: bilinear_pool(a), [x])                       # y = x: (G + G^T) X / L
    assert td.gradcheck(lambda a, b: bilinear_pool(a, b, normalize_output=False), [x, y])
    z = td.tensor(rng.standard_normal((3, 7)), requires_grad=True)
    assert td.gradcheck(lambda a: signed_sqrt(a, eps=1e-3), [z])


def test_bilinear_pool_is_the_mean_outer_product():
    x = td.tensor(np.random.default_rng(7).standard_normal((1, 2, 3, 3)))
    X = x.numpy().reshape(2, 9)
    z = bilinear_pool(x, normalize_output=False).numpy().reshape(2, 2)
    np.testing.assert_allclose(z, X @ X.T / 9, rtol=1e-12)
    u = bilinear_pool(x).numpy()
    assert np.isclose(np.linalg.norm(u), 1.0)


def test_signed_sqrt_at_zero_has_value_and_gradient_zero_as_torch():
    z = np.array([[-4.0, -1e-3, 0.0, 1e-3, 9.0]])
    t = td.tensor(z, requires_grad=True)
    s = signed_sqrt(t, eps=1e-8)
    s.backward(td.tensor(np.ones_like(z)))
    tt = torch.tensor(z, requires_grad=True)
    st = torch.sign(tt) * torch.sqrt(torch.abs(tt) + 1e-8)
    st.backward(torch.ones_like(st))
    np.testing.assert_allclose(s.detach().numpy(), st.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(t.grad.numpy(), tt.grad.numpy(), rtol=1e-12)
    assert s.detach().numpy()[0, 2] == 0 and t.grad.numpy()[0, 2] == 0
    assert np.isfinite(t.grad.numpy()).all() and t.grad.numpy().max() <= 0.5 / np.sqrt(1e-8)


def test_bilinear_pooling_module_and_errors():
    pool = BilinearPooling()
    assert pool(td.randn(2, 4, 3, 3)).shape == (2, 16)
    assert pool(td.randn(2, 4, 3, 3), td.randn(2, 5, 3, 3)).shape == (2, 20)
    assert pool(td.randn(1, 2, 3, 3).float()).dtype == np.float32
    with pytest.raises(ValueError, match="H x W"):
        bilinear_pool(td.randn(2, 4, 3, 3), td.randn(2, 4, 3, 4))
    with pytest.raises(ValueError, match="4-D"):
        bilinear_pool(td.randn(4, 3, 3))


# ================================================================ bilinear upsampling
def test_bilinear_kernel_values():
    f4 = np.array([0.25, 0.75, 0.75, 0.25])
    w = bilinear_kernel(3, 3, 4)
    assert w.shape == (3, 3, 4, 4) and w.dtype == np.float32
    for c in range(3):
        np.testing.assert_allclose(w[c, c], np.outer(f4, f4))
    off_diagonal = w.copy()
    off_diagonal[np.arange(3), np.arange(3)] = 0
    assert not off_diagonal.any()
    f3 = np.array([0.5, 1.0, 0.5])
    np.testing.assert_allclose(bilinear_kernel(1, 1, 3)[0, 0], np.outer(f3, f3))
    f16 = (2 * np.minimum(np.arange(16), 15 - np.arange(16)) + 1) / 16         # 1/16, 3/16, ..., 15/16, 15/16, ...
    np.testing.assert_allclose(bilinear_kernel(1, 1, 16, np.float64)[0, 0], np.outer(f16, f16))
    with pytest.raises(ValueError, match="in_ch == out_ch"):
        bilinear_kernel(2, 3, 4)


@pytest.mark.parametrize("s", [2, 4, 8])
def test_bilinear_init_makes_the_transposed_conv_a_bilinear_interpolation(s):
    """Kernel 2s, stride s, crop s/2: interior output = F.interpolate(bilinear,
    align_corners=False); a linear image stays exactly linear, a constant constant."""
    n = 5
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    linear = np.stack([2.0 * i - 0.5 * j + 1, np.full((n, n), 3.0)])[None]   # channel 0 linear, 1 constant
    w = td.tensor(bilinear_kernel(2, 2, 2 * s, np.float64))
    up = F.conv_transpose2d(td.tensor(linear), w, stride=s).numpy()[:, :, s // 2:s // 2 + s * n, s // 2:s // 2 + s * n]
    ref = TF.interpolate(torch.tensor(linear), scale_factor=s, mode="bilinear", align_corners=False).numpy()
    inner = slice(s // 2, s * n - s // 2)             # away from the border, where interpolate clamps
    np.testing.assert_allclose(up[:, :, inner, inner], ref[:, :, inner, inner], atol=1e-12)
    np.testing.assert_allclose(up[0, 1, inner, inner], 3.0, atol=1e-12)
    # the exact linear function of the output pixel's source coordinate (p + 0.5) / s - 0.5
    src = (np.arange(s * n) + 0.5) / s - 0.5
    expect = 2.0 * src[:, None] - 0.5 * src[None, :] + 1
    np.testing.assert_allclose(up[0, 0, inner, inner], expect[inner, inner], atol=1e-12)


def test_fcn_layers_start_bilinear_and_zero():
    m = models.create("fcn8s", num_classes=3, backbone="small")
    for name, k in (("upscore2", 4), ("upscore_pool4", 4), ("upscore8", 16)):
        np.testing.assert_array_equal(getattr(m, name).weight.detach().numpy(), bilinear_kernel(3, 3, k))
    assert not m.upscore8.weight.requires_grad and m.upscore2.weight.requires_grad
    for layer in (m.classifier[6], m.score_pool4, m.score_pool3):
        assert not layer.weight.detach().numpy().any() and not layer.bias.detach().numpy().any()


# ================================================================ FCN geometry
def _paper_geometry():
    """VGG16's layer geometry (1-channel stand-ins: coordinate maps only read kernel/stride/padding)."""
    layers = []
    for v in [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]:
        layers.append(nn.MaxPool2d(2, 2, ceil_mode=True) if v == "M"
                      else nn.Conv2d(1, 1, 3, padding=100 if not layers else 1))
    return layers


def test_coordinate_maps_give_the_papers_crops():
    feats = _paper_geometry()
    score = coordinate_map(feats + [nn.Conv2d(1, 1, 7)])                       # fc6 7x7, no padding
    assert score == (32.0, 12.5)
    out32 = coordinate_map([nn.ConvTranspose2d(1, 1, 64, stride=32)], score)
    assert out32 == (1.0, -19.0)                                                # FCN-32s: crop 19
    up2 = coordinate_map([nn.ConvTranspose2d(1, 1, 4, stride=2)], score)
    pool4 = coordinate_map(feats[:-4])                                          # through pool4
    assert (up2[1] - pool4[1]) / 16 == 5                                        # score_pool4: crop 5
    out16 = coordinate_map([nn.ConvTranspose2d(1, 1, 32, stride=16)], up2)
    assert out16 == (1.0, -27.0)                                                # FCN-16s: crop 27


def _final_key(stride):
    return {32: "upscore", 16: "upscore16", 8: "upscore8"}[stride]


def _covers(model, h):
    sizes = model.map_sizes(h)
    key = _final_key(model.stride)
    return min(sizes.values()) >= 1 and sizes[key] >= model.crops[key] + h


@pytest.mark.parametrize("stride", [32, 16, 8])
def test_small_fcn_output_is_the_input_size(stride):
    m = models.create(f"fcn{stride}s", num_classes=5, backbone="small")
    assert all(_covers(m, h) for h in range(1, 300))
    for hw in [(13, 29), (37, 21)]:
        y = m(td.randn(2, 3, *hw))
        assert y.shape == (2, 5) + hw
    assert m(td.randn(2, 3, 1, 2)).shape == (2, 5, 1, 2)           # 1x1 maps all the way down


def test_small_fcn_crops():
    crops = {s: models.create(f"fcn{s}s", num_classes=2, backbone="small").crops for s in (32, 16, 8)}
    assert crops[32] == {"upscore": 16}
    assert crops[16] == {"upscore2": 1, "score_pool4": 0, "upscore16": 8}
    assert crops[8] == {"upscore2": 1, "score_pool4": 0, "upscore_pool4": 1, "score_pool3": 0, "upscore8": 4}


def _zero_fills(mp):
    """Skip the random draws of 134M weights (seconds each); zeros are enough for shapes."""
    from tinydl.nn import init
    mp.setattr(init, "_fill_uniform", lambda t, *args, **kwargs: (t.array.fill(0), t)[1])
    mp.setattr(init, "_fill_normal", lambda t, *args, **kwargs: (t.array.fill(0), t)[1])


def test_vgg16_fcn8s_crops_and_forward(monkeypatch):
    _zero_fills(monkeypatch)
    m = FCN(8, num_classes=3, backbone="vgg16")
    assert m.crops == {"upscore2": 0, "score_pool4": 5, "upscore_pool4": 0, "score_pool3": 9, "upscore8": 31}
    assert m.features[0].padding == (100, 100) and m.classifier[0].weight.shape == (4096, 512, 7, 7)
    assert all(_covers(m, h) for h in range(1, 500))
    m.eval()
    with td.no_grad():
        assert m(td.randn(1, 3, 9, 11)).shape == (1, 3, 9, 11)


def test_load_vgg16_backbone_copies_the_features():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = make_layers([4, "M", 8])
            self.head = nn.Linear(8, 2)
    net, src = Net(), Net()
    copied = load_vgg16_backbone(net, src.state_dict(), fc=False)
    assert copied == ["features.0.weight", "features.0.bias", "features.3.weight", "features.3.bias"]
    np.testing.assert_array_equal(net.features[3].weight.detach().numpy(), src.features[3].weight.detach().numpy())
    assert not np.array_equal(net.head.weight.detach().numpy(), src.head.weight.detach().numpy())
    with pytest.raises(KeyError, match="VGG16"):
        load_vgg16_backbone(net, {"features.0.weight": src.features[0].weight}, fc=False)


# ================================================================ SPP-net and bilinear CNN
def test_spp_net_fixed_length_output_for_three_sizes():
    m = models.create("spp_net", num_classes=7, backbone="small", levels=(1, 2, 3, 6))
    assert m.classifier[0].in_features == 64 * 50
    for hw in [(16, 16), (23, 37), (48, 30)]:
        assert m(td.randn(2, 3, *hw)).shape == (2, 7)


def test_spp_net_zf5(monkeypatch):
    _zero_fills(monkeypatch)
    m = models.create("spp_net", num_classes=1000)
    assert sum(p.numel() for p in m.parameters()) == 46_628_968
    m.eval()
    with td.no_grad():
        for size in (64, 100, 224):
            assert m.forward_features(td.randn(1, 3, size, size + 7)).shape == (1, 256 * 21)
        assert m.features(td.randn(1, 3, 224, 224)).shape == (1, 256, 13, 13)


def test_bilinear_cnn_shapes(monkeypatch):
    m = models.create("bilinear_cnn", num_classes=6, backbone="small")
    assert m.fc.in_features == 64 * 64
    assert m(td.randn(2, 3, 28, 36)).shape == (2, 6)
    _zero_fills(monkeypatch)
    v = models.create("bilinear_cnn", num_classes=2)                            # VGG16 to relu5_3, no pool5
    assert not isinstance(v.features[-1], nn.MaxPool2d) and len(v.features) == 30
    assert v.fc.in_features == 512 * 512
    v.eval()
    with td.no_grad():
        assert v(td.randn(1, 3, 32, 32)).shape == (1, 2)


@pytest.mark.parametrize("name,kwargs,shape,target", [
    ("fcn32s", dict(backbone="small", dropout=0.0), (4, 3, 24, 20), (4, 24, 20)),
    ("fcn16s", dict(backbone="small", dropout=0.0), (4, 3, 24, 20), (4, 24, 20)),
    ("fcn8s", dict(backbone="small", dropout=0.0), (4, 3, 24, 20), (4, 24, 20)),
    ("spp_net", dict(backbone="small", dropout=0.0), (4, 3, 20, 28), (4,)),
    ("bilinear_cnn", dict(backbone="small"), (4, 3, 20, 20), (4,)),
])
def test_one_sgd_step_lowers_the_loss(name, kwargs, shape, target):
    td.manual_seed(0)
    m = models.create(name, num_classes=3, **kwargs)
    rng = np.random.default_rng(0)
    x = td.tensor(rng.random(shape, dtype=np.float32))
    y = td.tensor(rng.integers(0, 3, target))
    opt = td.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.05)
    before = F.cross_entropy(m(x), y)
    opt.zero_grad()
    before.backward()
    opt.step()
    after = F.cross_entropy(m(x), y)
    assert after.item() < before.item()


# ================================================================ synthetic segmentation
def test_synthetic_segmentation_samples():
    ds = SyntheticSegmentation(12, image_size=(40, 48), seed=3)
    img, mask = ds[5]
    assert img.shape == (3, 40, 48) and img.dtype == np.float32 and 0 <= img.min() and img.max() <= 1
    assert mask.shape == (40, 48) and mask.dtype == np.int64
    img2, mask2 = SyntheticSegmentation(12, image_size=(40, 48), seed=3)[5]
    np.testing.assert_array_equal(img, img2)                                    # deterministic
    np.testing.assert_array_equal(mask, mask2)
    assert not np.array_equal(SyntheticSegmentation(12, (40, 48), seed=4)[5][1], mask)
    labels = np.concatenate([ds[i][1].ravel() for i in range(len(ds))])
    assert set(np.unique(labels)) == {0, 1, 2, 3} and ds.num_classes == 4
    # a shape's pixels have one colour (no anti-aliasing), up to the noise
    for c in range(1, 4):
        if (mask == c).sum() > 20:
            assert img[:, mask == c].std(axis=1).max() < 0.05
    assert len(ds) == 12 and ds[-1][0].shape == (3, 40, 48)


def test_synthetic_segmentation_options_and_errors():
    ds = SyntheticSegmentation(6, image_size=32, classes=("background", "ellipse"), seed=0,
                               transform=lambda im: im * 2, target_transform=lambda m: m + 10)
    img, mask = ds[0]
    assert img.max() > 1 and set(np.unique(mask)) <= {10, 11}
    joint = SyntheticSegmentation(2, transforms=lambda im, m: (im[:, :, ::-1], m[:, ::-1]))
    np.testing.assert_array_equal(joint[1][1], SyntheticSegmentation(2)[1][1][:, ::-1])
    for bad in [("rectangle", "background"), ("background", "star"), ("background",)]:
        with pytest.raises(ValueError, match="classes"):
            SyntheticSegmentation(2, classes=bad)
    with pytest.raises(IndexError):
        SyntheticSegmentation(2).draw(2)
    assert SHAPE_CLASSES[0] == "background"
    rgb = colorize_mask(np.array([[0, 1], [2, 3]]))
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8 and len({tuple(p) for p in rgb.reshape(-1, 3)}) == 4


# ================================================================ examples
def test_train_fcn_example_smoke(tmp_path, load_example):
    out = load_example("train_fcn").main(["--train-size", "8", "--test-size", "4", "--image-size", "32",
                                      "--epochs", "1", "--batch-size", "4", "--compare", "--num-show", "2",
                                      "--out", str(tmp_path)])
    assert 0 <= out["pixel_acc"] <= 1 and 0 <= out["mean_iou"] <= 1 and len(out["per_class_iou"]) == 4
    assert "fcn32s" in out["compare"] and out["model"] == "fcn8s"
    assert (tmp_path / "fcn.png").stat().st_size > 0 and (tmp_path / "metrics.json").exists()


def test_train_bilinear_cnn_example_smoke(tmp_path, load_example):
    example = load_example("train_bilinear_cnn")
    tiny = ["--epochs", "1", "--batch-size", "8", "--resize", "24", "--crop", "20"]
    out = example.main(["--train-per-class", "3", "--test-per-class", "1", "--out", str(tmp_path / "a")] + tiny)
    assert out["num_classes"] == 6 and out["test_images"] == 6 and 0 <= out["test_acc"] <= 1
    # one folder of class folders: a random held-out split
    root = example.write_synthetic_birds(tmp_path / "birds", train_per_class=4, test_per_class=0, size=32)
    out = example.main(["--data-dir", str(root / "train"), "--test-fraction", "0.25",
                        "--out", str(tmp_path / "b")] + tiny)
    assert out["train_images"] == 18 and out["test_images"] == 6


# ================================================================ short training runs reach stated metrics
@pytest.mark.slow
def test_fcn8s_small_reaches_mean_iou_on_synthetic_shapes(tmp_path, load_example):
    """FCN-8s (small backbone), 1000 training images of 40x40, 6 epochs of batch 8 (750 Adam
    steps): mean IoU 0.478 on 64 held-out images (seed 0; seeds 1/2: 0.520/0.456); asserted
    >= 0.32 (~70% of the lowest). Labelling every pixel background scores 0.208.
    About 26 s on one core (measured under load from another engineer)."""
    from tinydl.vision.metrics import mean_iou
    example = load_example("train_fcn")
    _, masks, _ = example.make_split(64, (40, 40), seed=1000)
    all_background, _ = mean_iou(np.zeros_like(masks), masks, 4)
    out = example.main(["--image-size", "40", "--train-size", "1000", "--test-size", "64", "--epochs", "6",
                        "--batch-size", "8", "--seed", "0", "--num-show", "2", "--out", str(tmp_path)])
    assert all_background < 0.25
    assert out["mean_iou"] >= 0.32, out["per_class_iou"]
    assert out["mean_iou"] >= all_background + 0.1
    assert min(out["per_class_iou"]) > 0.1, out["per_class_iou"]


@pytest.mark.slow
def test_bilinear_cnn_small_beats_chance_on_synthetic_birds(tmp_path, load_example):
    """Bilinear CNN (small backbone) on the 6-class synthetic fine-grained set (100 train /
    20 test images per class, 64 -> crop 56), 10 epochs instead of 20: test accuracy 0.692
    (seed 0; seeds 1/2: 0.500/0.683); asserted >= 0.35 (~70% of the lowest), chance 1/6.
    About 24 s on one core (measured under load from another engineer)."""
    out = load_example("train_bilinear_cnn").main(["--epochs", "10", "--seed", "0", "--out", str(tmp_path)])
    assert out["num_classes"] == 6 and out["test_images"] == 120
    assert out["test_acc"] >= 0.35 > 2 * (1 / 6)
