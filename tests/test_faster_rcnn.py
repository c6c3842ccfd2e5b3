"""Faster R-CNN (models/faster_rcnn.py), its synthetic data set and the training example."""
import math

import numpy as np
import pytest

import models
import tinydl as td
from tinydl import optim
from tinydl.data import DataLoader
from tinydl.data.shapes_detection import DETECTION_SHAPES, SyntheticDetection, collate_detection
from tinydl.vision.ops import generate_anchors, grid_anchors

LOSS_NAMES = {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"}


# ================================================================ data
def test_synthetic_detection_samples():
    ds = SyntheticDetection(6, image_size=(96, 112), max_objects=3, seed=3)
    assert len(ds) == 6 and ds.num_classes == len(DETECTION_SHAPES) + 1
    seen = set()
    for i in range(len(ds)):
        image, target = ds[i]
        assert image.shape == (3, 96, 112) and image.dtype == np.float32
        assert 0.0 <= image.min() and image.max() <= 1.0
        boxes, labels = target["boxes"], target["labels"]
        assert boxes.dtype == np.float32 and labels.dtype == np.int64
        assert 1 <= len(boxes) <= 3 and labels.shape == (len(boxes),)
        assert np.all(boxes[:, 2] > boxes[:, 0]) and np.all(boxes[:, 3] > boxes[:, 1])
        assert np.all(boxes[:, [0, 1]] >= 0) and np.all(boxes[:, 2] <= 112) and np.all(boxes[:, 3] <= 96)
        assert np.all((labels >= 1) & (labels <= 3))
        seen.update(labels.tolist())
    # deterministic per index and seed
    a, b = ds[2], SyntheticDetection(6, image_size=(96, 112), seed=3)[2]
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1]["boxes"], b[1]["boxes"])
    assert not np.array_equal(a[0], SyntheticDetection(6, image_size=(96, 112), seed=4)[2][0])
    assert ds[-1][1]["boxes"].shape == ds[5][1]["boxes"].shape


def test_synthetic_detection_boxes_are_tight():
    # drawn without noise or blur, a shape is the pixels of its exact fill colour: its
    # box is the tight box around them (no "+1": x2 is one past the last column)
    ds = SyntheticDetection(4, noise_std=0.0, blur=False, seed=1)
    for i in range(4):
        img, boxes, _ = ds.draw(i)
        h, w, _ = img.shape
        for x1, y1, x2, y2 in boxes.astype(int):
            colours, counts = np.unique(img[y1:y2, x1:x2].reshape(-1, 3), axis=0, return_counts=True)
            fill = colours[counts.argmax()]                      # the shape's colour fills most of its box
            # shapes keep >= 3 px apart, so one pixel around the box holds no other shape
            ya, yb, xa, xb = max(y1 - 1, 0), min(y2 + 1, h), max(x1 - 1, 0), min(x2 + 1, w)
            ys, xs = np.nonzero(np.all(img[ya:yb, xa:xb] == fill, axis=-1))
            assert (xs.min() + xa, ys.min() + ya, xs.max() + xa + 1, ys.max() + ya + 1) == (x1, y1, x2, y2)


def test_synthetic_detection_errors_and_collate():
    with pytest.raises(ValueError, match="unknown classes"):
        SyntheticDetection(2, classes=("hexagon",))
    with pytest.raises(IndexError, match="out of range"):
        SyntheticDetection(2)[5]
    ds = SyntheticDetection(5, max_objects=3)
    images, targets = next(iter(DataLoader(ds, batch_size=3, collate_fn=collate_detection)))
    assert images.shape == (3, 3, 128, 128) and images.dtype == td.float32
    assert len(targets) == 3 and all(set(t) == {"boxes", "labels"} for t in targets)
    np.testing.assert_array_equal(targets[1]["boxes"].numpy(), ds[1][1]["boxes"])
    assert targets[1]["labels"].dtype == td.int64


# ================================================================ model
def small_model(**options):
    td.manual_seed(0)
    return models.create("faster_rcnn", num_classes=4, backbone="small", **options)


def batch(n=2, seed=0):
    ds = SyntheticDetection(n, seed=seed)
    return collate_detection([ds[i] for i in range(n)])


@pytest.mark.slow
def test_vgg16_rpn_shapes_and_parameters():
    """The paper's network at 224 x 224: built (137M parameters: a few seconds) and run up
    to the RPN only, without gradients (the fc head on 300 RoIs would cost ~30 GFLOPs)."""
    td.manual_seed(0)
    model = models.create("faster_rcnn", num_classes=21, backbone="vgg16")
    # VGG-16 convs 14,714,688 + RPN (3x3 512 + 1x1 18 + 1x1 36) 2,387,510 + fc6/fc7 119,545,856
    # + cls_score 86,037 + bbox_pred 344,148
    assert model.num_parameters() == 137_078_239
    assert model.rpn.cls_logits.weight.shape == (18, 512, 1, 1)
    assert model.rpn.bbox_pred.weight.shape == (36, 512, 1, 1)
    model.eval()
    x = td.rand(1, 3, 224, 224)
    with td.no_grad():
        features = model.features(x)
        logits, deltas, anchors = model.rpn_forward(features)
    assert features.shape == (1, 512, 14, 14)                   # conv5_3: stride 16
    assert logits.shape == (1, 14 * 14 * 9, 2) and deltas.shape == (1, 14 * 14 * 9, 4)
    assert anchors.shape == (14 * 14 * 9, 4)
    w, h = anchors[:9, 2] - anchors[:9, 0], anchors[:9, 3] - anchors[:9, 1]
    np.testing.assert_allclose(np.sqrt(w * h), [128, 256, 512] * 3, rtol=0.05)   # the paper's scales
    np.testing.assert_array_equal(anchors[9:18], anchors[:9] + np.float32([16, 0, 16, 0]))


def test_rpn_layout_matches_anchor_order():
    """Row (y * W + x) * k + a of the RPN outputs is anchor a at cell (y, x): the
    order of grid_anchors; channel j * k + a of cls_logits is class j of anchor a."""
    model = small_model()
    features = td.randn(2, 128, 5, 6)
    with td.no_grad():
        logits, deltas, anchors = model.rpn_forward(features)
        t = td.nn.functional.relu(model.rpn.conv(features))
        cls, reg = model.rpn.cls_logits(t).numpy(), model.rpn.bbox_pred(t).numpy()
    k = 9
    for n, y, x, a in [(0, 0, 0, 0), (1, 2, 3, 4), (0, 4, 5, 8), (1, 1, 0, 7)]:
        row = (y * 6 + x) * k + a
        np.testing.assert_allclose(logits.numpy()[n, row], [cls[n, a, y, x], cls[n, k + a, y, x]], rtol=1e-6)
        np.testing.assert_allclose(deltas.numpy()[n, row], reg[n, 4 * a:4 * a + 4, y, x], rtol=1e-6)
    expected = grid_anchors(generate_anchors(base_size=8, scales=(2, 4, 8)), (5, 6), 8)
    np.testing.assert_array_equal(anchors, expected)


def test_training_step_losses_and_sgd_lowers_loss():
    model = small_model()
    model.train()
    images, targets = batch(2)
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.0)

    def losses():
        td.manual_seed(1)                         # the same sampled anchors/RoIs before and after
        return model(images, targets)

    first = losses()
    assert set(first) == LOSS_NAMES
    for name, value in first.items():
        assert value.shape == () and math.isfinite(value.item()), name
    assert first["loss_objectness"].item() == pytest.approx(math.log(2), abs=0.05)   # 0.01-std init
    assert first["loss_classifier"].item() == pytest.approx(math.log(4), abs=0.1)
    total = sum(first.values())
    opt.zero_grad()
    total.backward()
    for name, p in model.named_parameters():      # every part gets a gradient
        assert p.grad is not None and np.isfinite(p.grad.numpy()).all(), name
    assert np.abs(model.backbone[0].weight.grad.numpy()).max() > 0
    opt.step()
    after = sum(losses().values()).item()
    assert after < total.item()


def test_training_image_without_objects_and_target_errors():
    model = small_model()
    images, targets = batch(2)
    targets[1] = {"boxes": td.zeros(0, 4), "labels": td.zeros(0, dtype=td.int64)}
    losses = model(images, targets)
    assert all(math.isfinite(v.item()) for v in losses.values())
    with pytest.raises(ValueError, match="needs targets"):
        model(images)
    with pytest.raises(ValueError, match="2 images but 1 targets"):
        model(images, targets[:1])
    bad = [targets[0], {"boxes": td.tensor([[1.0, 1, 9, 9]]), "labels": td.tensor([4])}]
    with pytest.raises(ValueError, match=r"labels in \[4, 4\].*1\.\.3"):
        model(images, bad)
    with pytest.raises(ValueError, match="num_classes"):
        models.create("faster_rcnn", num_classes=1, backbone="small")
    with pytest.raises(ValueError, match="'vgg16' or 'small'"):
        models.create("faster_rcnn", backbone="resnet")


def test_eval_output_format_and_per_image_independence():
    model = small_model(box_score_thresh=0.0)     # untrained scores are ~1/4: keep them
    model.eval()
    images, _ = batch(2, seed=5)
    with td.no_grad():
        both = model(images)
        alone = [model(images[i:i + 1])[0] for i in range(2)]
    assert len(both) == 2
    for out, single in zip(both, alone):
        assert set(out) == {"boxes", "scores", "labels"}
        boxes, scores, labels = out["boxes"].numpy(), out["scores"].numpy(), out["labels"].numpy()
        d = len(scores)
        assert 0 < d <= model.detections_per_img
        assert boxes.shape == (d, 4) and boxes.dtype == np.float32 and labels.dtype == np.int64
        assert np.all((labels >= 1) & (labels <= 3))
        assert np.all(np.diff(scores) <= 0)                                  # best first
        assert np.all(boxes >= 0) and np.all(boxes <= 128)
        # a batch of two gives each image the detections it gets alone
        np.testing.assert_allclose(boxes, single["boxes"].numpy(), rtol=1e-4, atol=1e-3)
        np.testing.assert_array_equal(labels, single["labels"].numpy())


def test_example_smoke(tmp_path, load_example):
    example = load_example("train_faster_rcnn")
    result = example.main(["--steps", "3", "--num-train", "4", "--num-test", "3", "--batch-size", "2",
                           "--out", str(tmp_path), "--quiet"])
    assert 0.0 <= result["mAP50"] <= 1.0 and result["steps"] == 3
    assert (tmp_path / "faster_rcnn.png").stat().st_size > 1000
    assert (tmp_path / "metrics.json").exists()


# ================================================================ a short training run reaches a stated mAP
# Seeds 0/1/2 of this configuration reached mAP@0.5 0.391 / 0.419 / 0.444 (the default
# 1000-step recipe reaches ~0.88); 0.27 is ~70% of the lowest. An untrained network scores 0.013.
SHORT_FRCNN = ["--steps", "350", "--num-train", "700", "--num-test", "50", "--warmup", "35",
               "--channels", "8", "16", "32", "64", "--seed", "0", "--quiet"]


@pytest.mark.slow
def test_faster_rcnn_small_reaches_map50_on_synthetic_shapes(tmp_path, load_example):
    """350 AdamW steps of 2 images (128x128, half-width small backbone 8-16-32-64) reach
    mAP@0.5 0.391 on 50 held-out images (seed 0); asserted >= 0.27; untrained (0.013) asserted < 0.05.
    About 23 s on one core (measured under load from another engineer)."""
    example = load_example("train_faster_rcnn")
    test_set = SyntheticDetection(50, (128, 128), 3, seed=1)
    td.manual_seed(0)
    untrained = models.create("faster_rcnn", num_classes=test_set.num_classes, backbone="small",
                              channels=(8, 16, 32, 64))
    untrained_map, _, _ = example.evaluate(untrained, test_set)
    result = example.main(SHORT_FRCNN + ["--out", str(tmp_path)])
    assert result["steps"] == 350
    assert untrained_map < 0.05
    assert result["mAP50"] >= 0.27, result["per_class_AP"]
    assert all(ap > 0.1 for ap in result["per_class_AP"].values()), result["per_class_AP"]
