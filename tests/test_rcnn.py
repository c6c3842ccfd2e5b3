"""R-CNN, SPP-net's detector (models/rcnn.py) and Fast R-CNN (models/fast_rcnn.py):
the warping, the SVM and ridge solvers, RoI spatial pyramid pooling, the models'
shapes, a training step, and short runs to a stated mAP (examples/detection_history.py)."""
import math

import numpy as np
import pytest

import models
import tinydl as td
from tinydl import optim
from tinydl.data.shapes_detection import SyntheticDetection, collate_detection
from tinydl.vision.ops import roi_pool, roi_spatial_pyramid_pool, selective_search, spatial_pyramid_pool
from models.rcnn import ridge_regression, train_linear_svm, warp_regions

SMALL = dict(num_classes=4, backbone="small", channels=(8, 16, 32, 64))


# ================================================================ warping
def test_warp_regions_anisotropic_with_context():
    # an image whose value is the x coordinate (channel 0) and the y coordinate (channel 1)
    h, w = 40, 60
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    image = td.tensor(np.stack([xs, ys, xs + ys])[None])
    box = np.array([[0, 10.0, 5.0, 40.0, 25.0]])                    # 30 x 20 pixels
    out = warp_regions(image, box, size=20, context=4, image_std=(1.0, 1.0, 1.0)).numpy()
    assert out.shape == (1, 3, 20, 20) and out.dtype == np.float64
    # the box fills the inner 12 x 12 pixels: 30/12 image pixels per warped column, 20/12 per row
    np.testing.assert_allclose(np.diff(out[0, 0, 10]), 30 / 12)
    np.testing.assert_allclose(np.diff(out[0, 1, 1:, 10]), 20 / 12)       # row 0 lies above the image
    assert np.all(out[0, :, 0] == 0)
    # the region's mean is subtracted: the inner (box) pixels average to 0
    np.testing.assert_allclose(out[0, :, 4:16, 4:16].mean(axis=(1, 2)), 0, atol=1e-9)
    # a box at the corner: the context beyond the image edge is the region's mean (0 after subtraction)
    corner = warp_regions(image, np.array([[0, 0.0, 0.0, 12.0, 12.0]]), size=20, context=4,
                          image_std=(1.0, 1.0, 1.0)).numpy()
    assert np.all(corner[0, :, :3, :] == 0) and np.all(corner[0, :, :, :3] == 0)
    assert np.all(corner[0, 0, 10, 5:] != 0)
    with pytest.raises(ValueError, match="rois must be"):
        warp_regions(image, np.zeros((2, 4)))
    # a box of exactly size - 2 context pixels is a pure crop: output pixel (v, u) is image
    # pixel (y1 - context + v, x1 - context + u), less the box's mean
    rng = np.random.default_rng(0)
    data = rng.normal(size=(1, 3, 40, 60))
    crop = warp_regions(td.tensor(data), np.array([[0, 10.0, 8.0, 22.0, 20.0]]), size=20, context=4,
                        image_std=(1.0, 1.0, 1.0)).numpy()[0]
    expected = data[0, :, 4:24, 6:26] - data[0, :, 8:20, 10:22].mean(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(crop, expected, rtol=1e-12, atol=1e-12)


# ================================================================ solvers
def test_linear_svm_matches_liblinear():
    """Our Newton solver of the squared-hinge SVM against scikit-learn's LinearSVC
    (liblinear, the solver R-CNN used; intercept_scaling is the same bias feature)."""
    svm = pytest.importorskip("sklearn.svm")
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(1.0, 1.0, (60, 5)), rng.normal(-1.0, 1.0, (140, 5))])
    y = np.concatenate([np.ones(60), -np.ones(140)])
    for C in (1e-2, 1.0):
        w, b = train_linear_svm(x, y, C=C, bias=10.0)
        ref = svm.LinearSVC(C=C, loss="squared_hinge", intercept_scaling=10.0, tol=1e-10, max_iter=100000,
                            dual=True).fit(x, y)
        np.testing.assert_allclose(w, ref.coef_[0], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(b, ref.intercept_[0], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("n", [30, 200])                            # fewer / more samples than features
def test_ridge_regression_matches_sklearn(n):
    linear_model = pytest.importorskip("sklearn.linear_model")
    rng = np.random.default_rng(1)
    x, t = rng.normal(size=(n, 50)), rng.normal(size=(n, 4))
    weight, bias = ridge_regression(x, t, lam=3.0)
    ref = linear_model.Ridge(alpha=3.0, fit_intercept=True).fit(x, t)
    np.testing.assert_allclose(weight, ref.coef_.T, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(bias, ref.intercept_, rtol=1e-8, atol=1e-10)


# ================================================================ RoI spatial pyramid pooling
def test_roi_spatial_pyramid_pool_forward_and_gradient():
    rng = np.random.default_rng(2)
    x = td.tensor(rng.normal(size=(2, 3, 12, 10)), requires_grad=True)   # float64, tie-free
    rois = td.tensor([[0, 0, 0, 9, 11], [1, 2.0, 3.0, 30.0, 40.0], [0, 8.0, 4.0, 20.0, 33.0]])
    y = roi_spatial_pyramid_pool(x, rois, (1, 2, 3), spatial_scale=0.25)
    assert y.shape == (3, 3 * (1 + 4 + 9)) and y.dtype == td.float64
    # level by level, each level roi_pool's l x l grid flattened channel-major
    with td.no_grad():
        expected = np.concatenate([roi_pool(x, rois, l, 0.25).numpy().reshape(3, -1) for l in (1, 2, 3)], axis=1)
    np.testing.assert_array_equal(y.detach().numpy(), expected)
    td.gradcheck(lambda t: roi_spatial_pyramid_pool(t, rois, (1, 2, 3), 0.25), (x,))


def test_roi_spatial_pyramid_pool_of_the_whole_map_matches_torch():
    """A box over the whole map at scale 1 has SPP-net's (adaptive) bins: forward and
    backward (float64, random upstream gradient) equal torch's adaptive max pooling pyramid."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    data = rng.normal(size=(2, 4, 13, 11))
    gy = rng.normal(size=(1, 4 * (1 + 4 + 9 + 36)))
    x = td.tensor(data, requires_grad=True)
    y = roi_spatial_pyramid_pool(x, td.tensor([[1, 0, 0, 10.0, 12.0]]), (1, 2, 3, 6))
    y.backward(td.tensor(gy))
    xt = torch.tensor(data, requires_grad=True)
    yt = torch.cat([torch.nn.functional.adaptive_max_pool2d(xt[1:], l).flatten(1) for l in (1, 2, 3, 6)], 1)
    yt.backward(torch.tensor(gy))
    np.testing.assert_array_equal(y.detach().numpy(), yt.detach().numpy())
    np.testing.assert_allclose(x.grad.numpy(), xt.grad.numpy(), rtol=0, atol=1e-12)
    with td.no_grad():
        np.testing.assert_array_equal(y.detach().numpy(), spatial_pyramid_pool(x[1:], (1, 2, 3, 6)).numpy())


# ================================================================ the models
@pytest.fixture(scope="module")
def batch():
    ds = SyntheticDetection(2, seed=0)
    images, targets = collate_detection([ds[i] for i in range(2)])
    proposals = [selective_search(ds.draw(i)[0]) for i in range(2)]
    return images, proposals, targets


@pytest.mark.parametrize("name, losses", [("rcnn", {"loss_classifier"}),
                                          ("spp_det", {"loss_classifier"}),
                                          ("fast_rcnn", {"loss_classifier", "loss_box_reg"})])
def test_training_step_lowers_the_loss(batch, name, losses):
    images, proposals, targets = batch
    td.manual_seed(0)
    model = models.create(name, **SMALL)
    opt = optim.SGD(model.parameters(), lr=0.05)

    def loss():
        td.manual_seed(1)                                        # the same sampled RoIs twice
        return model(images, proposals, targets)

    first = loss()
    assert set(first) == losses
    assert first["loss_classifier"].item() == pytest.approx(math.log(4), abs=0.1)   # 0.01-std init
    total = sum(first.values())
    opt.zero_grad()
    total.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and np.isfinite(p.grad.numpy()).all(), pname
    opt.step()
    assert sum(loss().values()).item() < total.item()


@pytest.mark.parametrize("name", ["rcnn", "spp_det", "fast_rcnn"])
def test_eval_output_and_errors(batch, name):
    images, proposals, targets = batch
    td.manual_seed(0)
    model = models.create(name, **SMALL, detections_per_img=7)
    with pytest.raises(ValueError, match="needs targets"):
        model(images, proposals)
    with pytest.raises(ValueError, match="2 images but 1 proposal sets"):
        model(images, proposals[:1], targets)
    with pytest.raises(ValueError, match=r"proposals\[0\] must be \(P, 4\)"):
        model(images, [np.zeros((3, 5)), proposals[1]], targets)
    bad = [targets[0], {"boxes": td.tensor([[1.0, 1, 9, 9]]), "labels": td.tensor([4])}]
    with pytest.raises(ValueError, match=r"labels in \[4, 4\].*1\.\.3"):
        model(images, proposals, bad)
    model.eval()
    with td.no_grad():
        both = model(images, proposals)
        alone = model(images[1:], proposals[1:])[0]
    for out in both:
        assert set(out) == {"boxes", "scores", "labels"}
        d = len(out["scores"])
        assert 0 < d <= 7 and out["boxes"].shape == (d, 4) and out["labels"].dtype == td.int64
        assert np.all(np.diff(out["scores"].numpy()) <= 0)
        assert out["boxes"].numpy().min() >= 0 and out["boxes"].numpy().max() <= 128
    np.testing.assert_allclose(both[1]["scores"].numpy(), alone["scores"].numpy(), rtol=1e-5)


@pytest.mark.slow
def test_shapes_of_the_papers_networks():
    """AlexNet R-CNN, ZF-5 SPP-net and VGG-16 Fast R-CNN built (about 260M random weights:
    ~10 s) and run on a few regions."""
    td.manual_seed(0)
    rc = models.create("rcnn", num_classes=21)                   # AlexNet on 227 x 227 warps
    x = warp_regions(td.rand(1, 3, 100, 120), np.array([[0, 10.0, 10.0, 60.0, 90.0]]), 227, 16)
    assert x.shape == (1, 3, 227, 227)
    rc.eval()
    with td.no_grad():
        pool5, fc7 = rc.region_features(td.rand(1, 3, 100, 120), np.array([[0, 10.0, 10.0, 60.0, 90.0]]))
    assert pool5.shape == (1, 9216) and fc7.shape == (1, 4096)
    assert rc.svm_weight.shape == (20, 4096) and rc.bbox_weight.shape == (20, 9216, 4)
    spp = models.create("spp_det", num_classes=21)               # ZF-5, pyramid 1-2-3-6
    spp.eval()
    with td.no_grad():
        pooled, fc7 = spp.region_features(td.rand(1, 3, 224, 224), np.array([[0, 0, 0, 100.0, 150.0]] * 2))
    assert pooled.shape == (2, 256 * 50) and fc7.shape == (2, 4096)
    fast = models.create("fast_rcnn", num_classes=21)            # VGG-16, RoI pool 7 x 7
    assert fast.num_parameters() == 137_078_239 - 2_387_510       # Faster R-CNN less its RPN
    for name in ("rcnn", "spp_det", "fast_rcnn"):
        with pytest.raises(ValueError, match="backbone must be"):
            models.create(name, backbone="resnet")


def test_svms_and_regressors_are_fitted_and_saved(batch, tmp_path):
    images, proposals, targets = batch
    td.manual_seed(0)
    model = models.create("rcnn", **SMALL)
    assert not model.fitted
    report = model.fit_detectors([(images, proposals, targets)], C=1.0)   # weakly regularised: fit the set
    assert model.fitted and set(report) == {"svm", "regressor"}
    labels = {int(c) for t in targets for c in t["labels"].numpy()}
    assert set(report["svm"]) == labels and set(report["regressor"]) <= labels
    # after fitting, the class scores of the true boxes are SVM margins: each true box
    # scores highest for its own class (the SVMs separate the training set)
    model.eval()
    _, fc = model._features_in_chunks(images[:1], targets[0]["boxes"].numpy())
    scores = (fc * model.feature_scale.numpy()[0]) @ model.svm_weight.numpy().T + model.svm_bias.numpy()
    for row, label in zip(scores, targets[0]["labels"].numpy()):
        if label in report["svm"]:
            assert row[label - 1] > 0
    # the solved weights are buffers: saved and loaded with the model
    td.save(model.state_dict(), tmp_path / "rcnn.npz")
    td.manual_seed(1)
    other = models.create("rcnn", **SMALL)
    other.load_state_dict(td.load(tmp_path / "rcnn.npz"))
    assert other.fitted
    np.testing.assert_array_equal(other.svm_weight.numpy(), model.svm_weight.numpy())


# ================================================================ short runs reach a stated mAP
@pytest.mark.slow
def test_history_example_short_run(tmp_path, load_example):
    """R-CNN, SPP-net and Fast R-CNN trained on 24 images (seed 0; selective search
    'single': one hierarchy, ~22 boxes per image), 30 AdamW steps of 2 images each,
    backbone 8-16-32-64, tested on 12 held-out images (seed 1). Measured mAP@0.5:
    R-CNN 0.590 (its softmax alone 0.627), SPP-net 0.338 (0.280), Fast R-CNN 0.257;
    asserted at about 60% of those. About 60 s of CPU."""
    example = load_example("detection_history")
    result = example.main(["--methods", "rcnn", "spp_det", "fast_rcnn", "--num-train", "24", "--num-test", "12",
                           "--steps", "30", "--ss-mode", "single", "--out", str(tmp_path), "--quiet"])
    got = {r["method"]: r["mAP50"] for r in result["rows"]}
    assert got["rcnn"] >= 0.35 and got["spp_det"] >= 0.2 and got["fast_rcnn"] >= 0.15, got
    assert (tmp_path / "history.png").stat().st_size > 1000
    assert len(result["table"]) == 2 + 3
