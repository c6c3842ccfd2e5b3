"""Detection ops: boxes/IoU/NMS, anchors and RPN bookkeeping, RoI pooling, focal loss.

Oracles: brute-force Python loops written from the definitions (torchvision's
rules), the NumPy reference kernels (Numba must agree bit for bit), PyTorch
for the focal loss formula, and py-faster-rcnn's published 9 anchors.
"""
import math

import numpy as np
import pytest
import torch

import tinydl as td
from tinydl.kernels import detection as K
from tinydl.vision.ops import (RoIPool, batched_nms, box_area, box_convert, box_iou, clip_boxes_to_image,
                               decode_boxes, encode_boxes, generate_anchors, grid_anchors, hard_negative_mining,
                               match_boxes, nms, remove_small_boxes, roi_pool, sample_labels, select_proposals,
                               sigmoid_focal_loss)


def random_boxes(rng, n, lo=0, hi=100, max_wh=40, integer=False):
    xy = rng.uniform(lo, hi, (n, 2))
    wh = rng.uniform(1, max_wh, (n, 2))
    b = np.concatenate([xy, xy + wh], axis=1)
    return np.round(b) if integer else b


# ============================================================ brute-force references
def iou_py(a, b):
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def nms_py(boxes, scores, thr, cats=None):
    boxes = [[float(v) for v in b] for b in boxes]
    n = len(boxes)
    cats = [0] * n if cats is None else list(cats)
    order = sorted(range(n), key=lambda i: (-float(scores[i]), i))
    keep = []
    for i in order:
        if all(cats[k] != cats[i] or not iou_py(boxes[k], boxes[i]) > thr for k in keep):
            keep.append(i)
    return keep


def c_round(v):
    return math.floor(abs(v) + 0.5) * (1 if v >= 0 else -1)


def roi_pool_py(x, rois, oh, ow, scale):
    """torchvision's CPU roi_pool, loop for loop, arithmetic in x's dtype."""
    T = x.dtype.type
    N, C, H, W = x.shape
    y = np.zeros((len(rois), C, oh, ow), dtype=x.dtype)
    arg = np.full((len(rois), C, oh, ow), -1, dtype=np.int64)
    for k, r in enumerate(rois.astype(x.dtype)):
        b = int(r[0])
        sw, sh, ew, eh = (c_round(float(T(r[i]) * T(scale))) for i in (1, 2, 3, 4))
        rw, rh = max(ew - sw + 1, 1), max(eh - sh + 1, 1)
        bh, bw = T(rh) / T(oh), T(rw) / T(ow)
        for ph in range(oh):
            for pw in range(ow):
                hs = min(max(int(math.floor(T(ph) * bh)) + sh, 0), H)
                he = min(max(int(math.ceil(T(ph + 1) * bh)) + sh, 0), H)
                ws = min(max(int(math.floor(T(pw) * bw)) + sw, 0), W)
                we = min(max(int(math.ceil(T(pw + 1) * bw)) + sw, 0), W)
                for c in range(C):
                    if he <= hs or we <= ws:
                        continue
                    best, bi = -np.finfo(np.float32).max, -1
                    for h in range(hs, he):
                        for w in range(ws, we):
                            if x[b, c, h, w] > best:
                                best, bi = x[b, c, h, w], h * W + w
                    y[k, c, ph, pw], arg[k, c, ph, pw] = best, bi
    return y, arg


# ============================================================ boxes
def test_box_area_convert_clip_small():
    b = np.array([[1.0, 2.0, 4.0, 8.0], [0.0, 0.0, 0.0, 5.0]], dtype=np.float32)
    np.testing.assert_array_equal(box_area(b), [18.0, 0.0])
    assert box_area(b).dtype == np.float32
    xywh = box_convert(b, "xyxy", "xywh")
    np.testing.assert_array_equal(xywh, [[1, 2, 3, 6], [0, 0, 0, 5]])
    np.testing.assert_array_equal(box_convert(b, "xyxy", "cxcywh"), [[2.5, 5, 3, 6], [0, 2.5, 0, 5]])
    for f in ("xywh", "cxcywh"):
        np.testing.assert_allclose(box_convert(box_convert(b, "xyxy", f), f, "xyxy"), b)
        np.testing.assert_allclose(box_convert(box_convert(b, "xyxy", f), f, "xywh"), xywh)
    assert box_convert(b, "xyxy", "xywh").dtype == np.float32
    with pytest.raises(ValueError, match="box_convert.*in_fmt"):
        box_convert(b, "xxyy", "xyxy")
    c = clip_boxes_to_image(np.array([[-5.0, -1, 30, 9], [3, 4, 5, 6]]), (8, 20))
    np.testing.assert_array_equal(c, [[0, 0, 20, 8], [3, 4, 5, 6]])
    keep = remove_small_boxes(np.array([[0, 0, 3, 10], [0, 0, 2, 10], [0, 0, 10, 2.9]]), 3)
    np.testing.assert_array_equal(keep, [0])
    assert keep.dtype == np.int64


def test_box_iou_brute_force_and_kinds():
    rng = np.random.default_rng(0)
    b1, b2 = random_boxes(rng, 7, integer=True), random_boxes(rng, 5)
    want = np.array([[iou_py(a, b) for b in b2] for a in b1])
    np.testing.assert_allclose(box_iou(b1, b2), want, rtol=1e-12)
    out = box_iou(td.tensor(b1.astype(np.float32)), td.tensor(b2.astype(np.float32)))
    assert isinstance(out, td.Tensor) and out.dtype == np.float32 and not out.requires_grad
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-5)
    assert box_iou(b1, np.zeros((0, 4))).shape == (7, 0)
    # touching boxes: IoU 0; identical: 1
    np.testing.assert_array_equal(box_iou([[0, 0, 2, 2.0]], [[2, 0, 4, 2.0], [0, 0, 2, 2.0]]), [[0.0, 1.0]])


def test_box_shape_errors():
    with pytest.raises(ValueError, match=r"box_iou: boxes1 must have shape \(N, 4\).*\(3, 5\)"):
        box_iou(np.zeros((3, 5)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"nms: scores must have shape \(N,\) = \(3,\)"):
        nms(np.zeros((3, 4)), np.zeros(2), 0.5)
    with pytest.raises(ValueError, match=r"nms: boxes must have shape"):
        nms(np.zeros((3,)), np.zeros(3), 0.5)
    with pytest.raises(ValueError, match=r"batched_nms: idxs must have shape"):
        batched_nms(np.zeros((3, 4)), np.zeros(3), np.zeros(4, dtype=int), 0.5)


# ============================================================ NMS
NMS_PATHS = {"reference": K.nms_reference, "numba": K.nms_numba, "bitmask": K.nms_bitmask}


@pytest.mark.parametrize("path", sorted(NMS_PATHS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nms_paths_match_brute_force(path, dtype):
    rng = np.random.default_rng(1)
    fn = NMS_PATHS[path]
    for n, integer in ((0, False), (1, False), (60, True), (300, False)):
        boxes = random_boxes(rng, n, integer=integer).astype(dtype)
        scores = rng.integers(0, 8, n).astype(dtype)       # many ties: order by index
        cats = rng.integers(0, 3, n)
        for thr in (0.0, 0.3, 0.5, 0.7):
            got = fn(boxes, scores, thr)
            assert got.dtype == np.int64
            assert got.tolist() == nms_py(boxes, scores, thr), (n, thr)
            got = fn(boxes, scores, thr, cats)
            assert got.tolist() == nms_py(boxes, scores, thr, cats), (n, thr)


def test_nms_public_api_ties_edges_and_kinds(monkeypatch):
    boxes = np.array([[0, 0, 3, 1], [1, 0, 4, 1], [0, 0, 3, 1], [10, 10, 12, 12]], dtype=np.float32)
    # IoU(0, 1) = 2 / (3 + 3 - 2) = 0.5 exactly; box 2 duplicates box 0 with the same score
    scores = np.array([1.0, 0.9, 1.0, 0.1], dtype=np.float32)
    assert nms(boxes, scores, 0.5).tolist() == [0, 1, 3]        # 0.5 is not > 0.5: kept
    assert nms(boxes, scores, 0.49).tolist() == [0, 3]
    assert nms(boxes, scores, 1.0).tolist() == [0, 2, 1, 3]     # tie of 0 and 2: lower index first
    out = nms(td.tensor(boxes), td.tensor(scores), 0.5)
    assert isinstance(out, td.Tensor) and out.dtype == np.int64 and out.numpy().tolist() == [0, 1, 3]
    empty = nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 0.5)
    assert empty.shape == (0,) and empty.dtype == np.int64
    # td.backends.reference() takes the reference path: same answer
    rng = np.random.default_rng(2)
    b, s = random_boxes(rng, 200), rng.uniform(size=200)
    with td.backends.reference(False):
        with_numba = nms(b, s, 0.5)
    with td.backends.reference():
        np.testing.assert_array_equal(nms(b, s, 0.5), with_numba)


def test_batched_nms_equals_per_class_nms():
    rng = np.random.default_rng(3)
    boxes, scores = random_boxes(rng, 150), rng.uniform(size=150)
    cats = rng.integers(0, 4, 150)
    got = batched_nms(boxes, scores, cats, 0.4)
    want = []
    for c in range(4):
        idx = np.nonzero(cats == c)[0]
        want += idx[nms(boxes[idx], scores[idx], 0.4)].tolist()
    want.sort(key=lambda i: -scores[i])
    assert got.tolist() == want
    assert batched_nms(td.tensor(boxes), td.tensor(scores), td.tensor(cats), 0.4).numpy().tolist() == want


# ============================================================ anchors
PY_FASTER_RCNN_ANCHORS = np.array([  # rpn/generate_anchors.py output (inclusive pixel corners)
    [-84, -40, 99, 55], [-176, -88, 191, 103], [-360, -184, 375, 199],
    [-56, -56, 71, 71], [-120, -120, 135, 135], [-248, -248, 263, 263],
    [-36, -80, 51, 95], [-80, -168, 95, 183], [-168, -344, 183, 359]], dtype=np.float64)


def test_generate_anchors_are_the_classic_nine():
    a = generate_anchors()
    assert a.shape == (9, 4) and a.dtype == np.float32
    np.testing.assert_array_equal(a, PY_FASTER_RCNN_ANCHORS + [0, 0, 1, 1])   # our no-"+1" convention
    np.testing.assert_array_equal((a[:, :2] + a[:, 2:]) / 2, np.full((9, 2), 8.0))  # centred on cell 0
    assert generate_anchors(16, (1,), (2,)).tolist() == [[-8, -8, 24, 24]]


def test_grid_anchors_order():
    base = generate_anchors()
    g = grid_anchors(base, (2, 3), 16)
    assert g.shape == (2 * 3 * 9, 4)
    for y in range(2):
        for x in range(3):
            for a in range(9):
                np.testing.assert_array_equal(g[(y * 3 + x) * 9 + a], base[a] + [16 * x, 16 * y, 16 * x, 16 * y])
    g2 = grid_anchors(td.tensor(base), (2, 3), (8, 16))
    assert isinstance(g2, td.Tensor)
    np.testing.assert_array_equal(g2.numpy()[(1 * 3 + 2) * 9], base[0] + [32, 8, 32, 8])


def test_encode_decode_round_trip_and_clip():
    rng = np.random.default_rng(4)
    anchors, gt = random_boxes(rng, 50), random_boxes(rng, 50)
    for w in ((1, 1, 1, 1), (10, 10, 5, 5)):
        d = encode_boxes(gt, anchors, w)
        np.testing.assert_allclose(decode_boxes(d, anchors, w), gt, rtol=1e-10, atol=1e-10)
    d = encode_boxes(gt[:1], anchors[:1])
    ax, ay = (anchors[0, 0] + anchors[0, 2]) / 2, (anchors[0, 1] + anchors[0, 3]) / 2
    aw, ah = anchors[0, 2] - anchors[0, 0], anchors[0, 3] - anchors[0, 1]
    gx, gy = (gt[0, 0] + gt[0, 2]) / 2, (gt[0, 1] + gt[0, 3]) / 2
    gw, gh = gt[0, 2] - gt[0, 0], gt[0, 3] - gt[0, 1]
    np.testing.assert_allclose(d[0], [(gx - ax) / aw, (gy - ay) / ah, np.log(gw / aw), np.log(gh / ah)])
    # a huge dw is clipped at log(1000/16): the box grows 62.5x, not exp(50)x
    out = decode_boxes(np.array([[0, 0, 50.0, 0]]), np.array([[0, 0, 16.0, 16]]))
    np.testing.assert_allclose(out, [[8 - 500, 0, 8 + 500, 16]])
    # per-class deltas (N, 4K) and float32 stays float32
    d32 = np.zeros((3, 8), np.float32)
    assert decode_boxes(d32, anchors[:3]).shape == (3, 8) and decode_boxes(d32, anchors[:3]).dtype == np.float32
    with pytest.raises(ValueError, match="decode_boxes: deltas"):
        decode_boxes(np.zeros((3, 5)), anchors[:3])


def test_select_proposals_hand_example():
    anchors = np.array([[0, 0, 40, 40], [2, 2, 42, 42], [50, 50, 60, 60], [-10, 60, 30, 100]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.6], np.float32)
    deltas = np.zeros((4, 4), np.float32)
    # box 1 overlaps box 0 (IoU 0.82 > 0.7), box 2 is 10 px (< min_size 16), box 3 is clipped
    b, s = select_proposals(anchors, scores, deltas, (100, 100))
    np.testing.assert_array_equal(b, [[0, 0, 40, 40], [0, 60, 30, 100]])
    np.testing.assert_array_equal(s, scores[[0, 3]])
    assert b.dtype == np.float32
    b, s = select_proposals(anchors, scores, deltas, (100, 100), post_nms_top_n=1)
    np.testing.assert_array_equal(s, scores[[0]])
    b, s = select_proposals(anchors, scores, deltas, (100, 100), nms_thresh=0.9, pre_nms_top_n=2)
    np.testing.assert_array_equal(s, scores[[0, 1]])
    # deltas move box 1 far from box 0: both survive NMS
    deltas[1] = [1.0, 0, 0, 0]
    b, s = select_proposals(anchors, scores, deltas, (100, 100))
    np.testing.assert_array_equal(b, [[0, 0, 40, 40], [42, 2, 82, 42], [0, 60, 30, 100]])
    b, s = select_proposals(td.tensor(anchors), td.tensor(scores), td.tensor(deltas), (100, 100), min_size=200)
    assert isinstance(b, td.Tensor) and b.shape == (0, 4) and s.shape == (0,)


def test_match_boxes_thresholds_and_low_quality():
    gt = np.array([[0, 0, 10, 10], [100, 100, 110, 110]], np.float64)
    rows = np.array([[0, 0, 10, 10],      # IoU 1 with gt 0        -> 1
                     [0, 0, 10, 20],      # IoU 0.5                -> -1 (between)
                     [0, 0, 10, 40],      # IoU 0.25               -> 0
                     [50, 50, 60, 60],    # no overlap             -> 0
                     [100, 100, 110, 125],  # IoU 0.4, gt 1's best -> 1 (low-quality rule)
                     [100, 100, 110, 130]], np.float64)  # IoU 1/3 -> -1
    m, lab = match_boxes(rows, gt)
    assert lab.tolist() == [1, -1, 0, 0, 1, -1]
    assert m[[0, 1, 4, 5]].tolist() == [0, 0, 1, 1] and m.dtype == np.int64
    m, lab = match_boxes(rows, gt, allow_low_quality=False)
    assert lab.tolist() == [1, -1, 0, 0, -1, -1]
    m, lab = match_boxes(rows, gt, high=0.5, low=0.5, allow_low_quality=False)   # Fast R-CNN head
    assert lab.tolist() == [1, 1, 0, 0, 0, 0]
    # a gt overlapping nothing does not turn every row into foreground
    m, lab = match_boxes(rows[:4], np.array([[500, 500, 510, 510.0]]))
    assert lab.tolist() == [0, 0, 0, 0]
    m, lab = match_boxes(td.tensor(rows), td.tensor(np.zeros((0, 4))))
    assert isinstance(lab, td.Tensor) and lab.numpy().tolist() == [0] * 6


def test_sample_labels_counts():
    labels = np.array([1] * 300 + [0] * 1000 + [-1] * 50)
    pos, neg = sample_labels(labels, 256, 0.5, generator=np.random.default_rng(0))
    assert len(pos) == 128 and len(neg) == 128 and pos.dtype == np.int64
    assert (labels[pos] == 1).all() and (labels[neg] == 0).all()
    assert len(set(pos.tolist())) == 128 and (np.diff(neg) > 0).all()
    pos, neg = sample_labels(np.array([1] * 10 + [0] * 1000 + [-1] * 5), 256, 0.5)   # few positives
    assert len(pos) == 10 and len(neg) == 246
    pos, neg = sample_labels(np.array([1] * 10 + [0] * 20), 256, 0.5)                  # few of both
    assert len(pos) == 10 and len(neg) == 20
    a = sample_labels(labels, generator=np.random.default_rng(5))
    b = sample_labels(labels, generator=np.random.default_rng(5))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    pos, neg = sample_labels(td.tensor(labels), 64, 0.25)
    assert isinstance(pos, td.Tensor) and len(pos) == 16 and len(neg) == 48


def test_generator_accepts_an_int_seed():
    labels = np.array([1] * 300 + [0] * 1000 + [-1] * 50)
    by_seed = sample_labels(labels, generator=7)
    by_generator = sample_labels(labels, generator=np.random.default_rng(7))
    assert all(np.array_equal(x, y) for x, y in zip(by_seed, by_generator))
    assert all(np.array_equal(x, y) for x, y in zip(by_seed, sample_labels(labels, generator=7)))
    assert not np.array_equal(by_seed[1], sample_labels(labels, generator=8)[1])
    loss, lab = np.random.default_rng(0).uniform(size=200), np.r_[np.ones(5, int), np.zeros(195, int)]
    mask = hard_negative_mining(loss, lab, pool_size=40, generator=3)
    np.testing.assert_array_equal(mask, hard_negative_mining(loss, lab, pool_size=40,
                                                             generator=np.random.default_rng(3)))
    with pytest.raises(TypeError, match="generator must be a numpy Generator, an int seed or None"):
        sample_labels(labels, generator="seven")


def test_hard_negative_mining():
    loss = np.array([0.1, 0.5, 0.3, 0.9, 0.2, 0.8, 0.7, 0.3, 5.0])
    labels = np.array([1, 0, 0, 0, -1, 0, 2, 0, -1])
    mask = hard_negative_mining(loss, labels, neg_pos_ratio=2)
    # positives 0 and 6; negatives by loss 3 (0.9), 5 (0.8), 1, 2/7 (tie)... keep 4; ignored 8 never
    assert np.nonzero(mask)[0].tolist() == [0, 1, 2, 3, 5, 6]
    mask = hard_negative_mining(loss, labels, neg_pos_ratio=10)
    assert np.nonzero(mask)[0].tolist() == [0, 1, 2, 3, 5, 6, 7]
    mask = hard_negative_mining(loss, np.where(labels > 0, 0, labels), neg_pos_ratio=3)
    assert not mask.any()                            # no positive: no negative
    out = hard_negative_mining(td.tensor(loss), td.tensor(labels), 1)
    assert isinstance(out, td.Tensor) and out.numpy().sum() == 4
    # candidate-pool variant: the pool is all negatives -> same as without
    assert np.array_equal(hard_negative_mining(loss, labels, 2, pool_size=100), hard_negative_mining(loss, labels, 2))
    m = hard_negative_mining(loss, labels, 2, pool_size=2, generator=np.random.default_rng(0))
    assert m.sum() == 4 and m[[0, 6]].all()
    with pytest.raises(ValueError, match="hard_negative_mining"):
        hard_negative_mining(loss[:3], labels, 3)


# ============================================================ RoI pooling
def roi_case(rng, dtype, n=2, c=3, h=9, w=11, k=12, scale=0.5):
    x = rng.normal(size=(n, c, h, w)).astype(dtype)
    xy = rng.uniform(-4, 2 * w, (k, 2))
    wh = rng.uniform(0, 2 * w, (k, 2))
    rois = np.concatenate([rng.integers(0, n, (k, 1)), xy, xy + wh], axis=1).astype(dtype)
    rois[0] = [0, 0, 0, 2 * w - 2, 2 * h - 2]          # the whole map
    rois[1] = [1, 3, 3, 3, 3]                          # a single cell
    rois[2] = [0, 1.5, 2.5, 9.5, 5.0]                  # halves: C rounding away from zero
    return x, rois, scale


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("out", [(2, 2), (3, 4), (7, 7)])
def test_roi_pool_kernels_match_torchvision_rule(dtype, out):
    rng = np.random.default_rng(6)
    x, rois, scale = roi_case(rng, dtype)
    y_py, a_py = roi_pool_py(x, rois, *out, scale)
    for fn in (K.roi_pool_forward_reference, K.roi_pool_forward_numba):
        y, a = fn(x, rois, out, scale)
        assert y.dtype == dtype and a.dtype == np.int64
        np.testing.assert_array_equal(y, y_py)
        np.testing.assert_array_equal(a, a_py)
    gy = rng.normal(size=y_py.shape).astype(dtype)
    batch = rois[:, 0].astype(np.int64)
    g_ref = K.roi_pool_backward_reference(gy, a_py, batch, x.shape)
    g_nb = K.roi_pool_backward_numba(gy, a_py, batch, x.shape)
    assert g_ref.dtype == dtype
    np.testing.assert_array_equal(g_nb, g_ref)
    # brute-force scatter
    want = np.zeros_like(x)
    for k, c, i, j in np.ndindex(*a_py.shape):
        if a_py[k, c, i, j] >= 0:
            want[batch[k], c].flat[a_py[k, c, i, j]] += gy[k, c, i, j]
    np.testing.assert_allclose(g_ref, want, rtol=1e-6)


def test_roi_pool_hand_example_empty_bins_nan():
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    y = roi_pool(td.tensor(x), td.tensor(np.array([[0, 0, 0, 3, 3]], np.float32)), 2)
    np.testing.assert_array_equal(y.numpy()[0, 0], [[5, 7], [13, 15]])
    # a box entirely outside the map: every bin is empty -> 0
    y = roi_pool(td.tensor(x), [td.tensor(np.array([[10, 10, 20, 20]], np.float32))], (2, 3), 1.0)
    np.testing.assert_array_equal(y.numpy(), np.zeros((1, 1, 2, 3)))
    # NaN never wins the max (torchvision: `v > maxval` is false for NaN)
    xn = x.copy()
    xn[0, 0, 3, 3] = np.nan
    for fn in (K.roi_pool_forward_reference, K.roi_pool_forward_numba):
        yv, a = fn(xn, np.array([[0, 0, 0, 3, 3]], np.float32), (1, 1), 1.0)
        assert yv[0, 0, 0, 0] == 14 and a[0, 0, 0, 0] == 14


def test_roi_pool_list_of_boxes_equals_rois_and_module(monkeypatch):
    rng = np.random.default_rng(7)
    x, rois, scale = roi_case(rng, np.float32)
    boxes = [td.tensor(rois[rois[:, 0] == i, 1:]) for i in range(2)]
    order = np.concatenate([np.nonzero(rois[:, 0] == i)[0] for i in range(2)])
    y_list = roi_pool(td.tensor(x), boxes, (3, 3), scale)
    y_rois = RoIPool((3, 3), scale)(td.tensor(x), td.tensor(rois))
    np.testing.assert_array_equal(y_list.numpy(), y_rois.numpy()[order])
    with td.backends.reference():                   # the reference (and GPU) path through the public op
        np.testing.assert_array_equal(roi_pool(td.tensor(x), td.tensor(rois), (3, 3), scale).numpy(),
                                      y_rois.numpy())


def test_roi_pool_gradcheck_and_dtypes():
    rng = np.random.default_rng(8)
    x, rois, scale = roi_case(rng, np.float64, n=2, c=2, h=6, w=7, k=6)
    xt = td.tensor(x, requires_grad=True)
    assert td.gradcheck(lambda t: roi_pool(t, td.tensor(rois), (2, 3), scale), [xt])
    x32 = td.tensor(x.astype(np.float32), requires_grad=True)
    y = roi_pool(x32, td.tensor(rois), (2, 3), scale)
    y.backward(td.tensor(rng.normal(size=y.shape).astype(np.float32)))
    assert y.dtype == np.float32 and x32.grad.dtype == np.float32


def test_roi_pool_errors():
    x = td.tensor(np.zeros((2, 3, 8, 8), np.float32))
    with pytest.raises(IndexError, match=r"roi_pool: batch index out of range.*\[0, 2\].*batch of 2"):
        roi_pool(x, td.tensor(np.array([[0, 0, 0, 4, 4], [2, 0, 0, 4, 4]], np.float32)), 2)
    with pytest.raises(ValueError, match=r"roi_pool: boxes must be a \(K, 5\).*\(3, 4\)"):
        roi_pool(x, td.tensor(np.zeros((3, 4), np.float32)), 2)
    with pytest.raises(ValueError, match=r"roi_pool: input must be \(N, C, H, W\).*\(3, 8, 8\)"):
        roi_pool(td.tensor(np.zeros((3, 8, 8), np.float32)), td.tensor(np.zeros((1, 5), np.float32)), 2)
    with pytest.raises(ValueError, match=r"roi_pool: got a list of 1 box sets for a batch of 2"):
        roi_pool(x, [np.zeros((1, 4))], 2)
    with pytest.raises(ValueError, match=r"roi_pool: boxes\[1\] must have shape \(K, 4\)"):
        roi_pool(x, [np.zeros((1, 4)), np.zeros((2, 5))], 2)
    with pytest.raises(ValueError, match="roi_pool: output_size"):
        roi_pool(x, td.tensor(np.zeros((1, 5), np.float32)), (0, 2))


# ============================================================ focal loss
def focal_torch(x, t, alpha, gamma, reduction):
    p = torch.sigmoid(x)
    ce = torch.nn.functional.binary_cross_entropy_with_logits(x, t, reduction="none")
    p_t = p * t + (1 - p) * (1 - t)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * t + (1 - alpha) * (1 - t)) * loss
    return {"none": loss, "mean": loss.mean(), "sum": loss.sum()}[reduction]


@pytest.mark.parametrize("alpha,gamma,reduction", [(0.25, 2, "none"), (-1, 0, "mean"), (0.5, 1.5, "sum"),
                                                   (0.25, 1, "mean")])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_focal_loss_vs_torch(alpha, gamma, reduction, dtype):
    rng = np.random.default_rng(9)
    x = (rng.normal(size=(6, 5)) * 3).astype(dtype)
    t = np.where(rng.uniform(size=(6, 5)) < 0.3, 1.0, 0.0).astype(dtype)
    t[0] = rng.uniform(size=5)                                 # soft targets too
    xt, tt = td.tensor(x, requires_grad=True), td.tensor(t, requires_grad=True)
    y = sigmoid_focal_loss(xt, tt, alpha, gamma, reduction)
    up = rng.normal(size=y.shape).astype(dtype)
    y.backward(td.tensor(up))
    X, T = torch.tensor(x, requires_grad=True), torch.tensor(t, requires_grad=True)
    Y = focal_torch(X, T, alpha, gamma, reduction)
    Y.backward(torch.tensor(up))
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)
    assert y.dtype == dtype and xt.grad.dtype == dtype and tt.grad.dtype == dtype
    np.testing.assert_allclose(y.detach().numpy(), Y.detach().numpy(), **tol)
    np.testing.assert_allclose(xt.grad.numpy(), X.grad.numpy(), **tol)
    np.testing.assert_allclose(tt.grad.numpy(), T.grad.numpy(), **tol)
    if dtype == np.float64:
        xg, tg = td.tensor(x, requires_grad=True), td.tensor(t, requires_grad=True)
        assert td.gradcheck(lambda a, b: sigmoid_focal_loss(a, b, alpha, gamma, reduction), [xg, tg])


def test_sigmoid_focal_loss_stable_and_errors():
    x = td.tensor(np.array([-800.0, 800.0, 0.0]), requires_grad=True)
    y = sigmoid_focal_loss(x, np.array([1.0, 0.0, 1.0]), reduction="sum")
    # confidently wrong: ce = 800, (1 - p_t)^2 = 1, weighted 0.25 and 0.75; plus 0.25 * log 2 / 4
    assert y.item() == pytest.approx(800 + 0.25 * math.log(2) / 4, rel=1e-12)
    y.backward()
    assert np.isfinite(x.grad.numpy()).all()
    with pytest.raises(ValueError, match="sigmoid_focal_loss: 'avg' is not a valid value for reduction"):
        sigmoid_focal_loss(x, np.zeros(3), reduction="avg")
    with pytest.raises(ValueError, match=r"sigmoid_focal_loss: targets of shape \(2,\)"):
        sigmoid_focal_loss(x, np.zeros(2))
