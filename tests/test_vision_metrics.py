"""Detection mAP, segmentation mean IoU and keypoint precision/recall on hand-made cases."""
import math

import numpy as np
import pytest

import tinydl as td
from tinydl.vision.metrics import (average_precision, keypoint_precision_recall, mean_average_precision,
                                   mean_iou)

A = [0, 0, 10, 10]
B = [20, 20, 30, 30]
C = [40, 0, 50, 10]


def det(boxes, scores, labels):
    return (np.array(boxes, dtype=np.float32).reshape(-1, 4), np.array(scores, dtype=np.float32),
            np.array(labels, dtype=np.int64))


def gt(boxes, labels):
    return (np.array(boxes, dtype=np.float32).reshape(-1, 4), np.array(labels, dtype=np.int64))


# ---------------------------------------------------------------- average_precision
def test_average_precision_envelope():
    # recall 0.5, 0.5, 1.0 with precision 1, 1/2, 2/3: the envelope is 1 up to 0.5, then 2/3
    assert average_precision([0.5, 0.5, 1.0], [1.0, 0.5, 2 / 3]) == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert average_precision([], []) == 0.0


# ---------------------------------------------------------------- mean_average_precision
def test_map_perfect():
    m, per = mean_average_precision([det([A, B], [0.9, 0.8], [1, 2])], [gt([A, B], [1, 2])])
    assert m == 1.0 and per == {1: 1.0, 2: 1.0}


def test_map_false_positive_between_true_ones():
    # TP (0.9), FP (0.8), TP (0.7) for two true boxes: AP = 0.5 * 1 + 0.5 * 2/3
    dets = [det([A, C, B], [0.9, 0.8, 0.7], [1, 1, 1])]
    m, per = mean_average_precision(dets, [gt([A, B], [1, 1])])
    assert per[1] == pytest.approx(0.5 + 0.5 * 2 / 3)
    # the same detections ranked FP first: precision 0, 1/2, 2/3 -> envelope 2/3 everywhere
    dets = [det([C, A, B], [0.9, 0.8, 0.7], [1, 1, 1])]
    assert mean_average_precision(dets, [gt([A, B], [1, 1])])[0] == pytest.approx(2 / 3)


def test_map_duplicate_is_false_positive_and_each_gt_matched_once():
    dets = [det([A, [0, 0, 10, 9]], [0.9, 0.8], [1, 1])]
    m, per = mean_average_precision(dets, [gt([A], [1])])
    assert m == pytest.approx(1.0)          # the duplicate comes after full recall: no loss
    dets = [det([A, [0, 0, 10, 9]], [0.8, 0.9], [1, 1])]
    # the higher-scoring near-copy takes the box, the exact one becomes the duplicate
    assert mean_average_precision(dets, [gt([A], [1])])[0] == pytest.approx(1.0)
    # two true boxes, one detected twice: recall 1/2, precision 1 then 1/2
    dets = [det([A, A], [0.9, 0.8], [1, 1])]
    assert mean_average_precision(dets, [gt([A, B], [1, 1])])[0] == pytest.approx(0.5)


def test_map_voc_rule_best_overlap_only():
    # the detection overlaps the taken box most (IoU 0.9) and a free one less (0.6):
    # VOC compares with the best-overlapping box only, so it is a false positive
    g1, g2 = [0, 0, 10, 10], [1, 0, 11, 10]            # IoU(g1, g2) = 9/11
    d = [0, 0, 10, 10]
    dets = [det([g1, d], [0.9, 0.8], [1, 1])]
    m, per = mean_average_precision(dets, [gt([g1, g2], [1, 1])])
    assert per[1] == pytest.approx(0.5)


def test_map_threshold_is_inclusive_and_configurable():
    half = [0, 0, 10, 5]                                # IoU with A = 0.5 exactly
    dets = [det([half], [0.9], [1])]
    assert mean_average_precision(dets, [gt([A], [1])], iou_threshold=0.5)[0] == 1.0
    assert mean_average_precision(dets, [gt([A], [1])], iou_threshold=0.75)[0] == 0.0


def test_map_classes_and_images():
    # class 3 has only detections: left out; class 2 has a true box never found: AP 0;
    # a wrong-label detection does not match
    dets = [det([A, B], [0.9, 0.5], [1, 3]), det([C], [0.7], [1])]
    gts = [gt([A, B], [1, 2]), gt([C], [1])]
    m, per = mean_average_precision(dets, gts)
    assert set(per) == {1, 2}
    assert per[1] == 1.0 and per[2] == 0.0 and m == 0.5
    # detections in the wrong image do not match
    dets = [det([C], [0.9], [1]), det([A], [0.8], [1])]
    assert mean_average_precision(dets, gts)[1][1] == 0.0


def test_map_score_order_across_images():
    # image 0: FP at 0.95; image 1: TP at 0.9 -> precision 0 then 1/2 -> AP 0.5
    dets = [det([C], [0.95], [1]), det([A], [0.9], [1])]
    gts = [gt(np.zeros((0, 4)), []), gt([A], [1])]
    assert mean_average_precision(dets, gts)[0] == pytest.approx(0.5)


def test_map_empty_and_tensors():
    m, per = mean_average_precision([det(np.zeros((0, 4)), [], [])], [gt([A], [1])])
    assert m == 0.0 and per == {1: 0.0}
    m, per = mean_average_precision([det(np.zeros((0, 4)), [], [])], [gt(np.zeros((0, 4)), [])])
    assert math.isnan(m) and per == {}
    b, s, l = det([A], [0.9], [1])
    m, _ = mean_average_precision([(td.tensor(b), td.tensor(s), td.tensor(l))], [(td.tensor(b), td.tensor(l))])
    assert m == 1.0


def test_map_errors():
    with pytest.raises(ValueError, match="label 5 outside"):
        mean_average_precision([det([A], [0.9], [5])], [gt([A], [1])], num_classes=3)
    with pytest.raises(ValueError, match="2 images of detections but 1"):
        mean_average_precision([det([A], [0.9], [1])] * 2, [gt([A], [1])])
    with pytest.raises(ValueError, match="1 boxes but 2"):
        mean_average_precision([det([A], [0.9, 0.8], [1, 1])], [gt([A], [1])])


# ---------------------------------------------------------------- mean_iou
def test_mean_iou_hand_case():
    target = np.array([[0, 0, 1], [1, 2, 2]])
    pred = np.array([[0, 1, 1], [1, 2, 0]])
    # class 0: TP 1, FP 1 (pixel (1,2)), FN 1 -> 1/3; class 1: TP 2, FP 1 -> 2/3; class 2: TP 1, FN 1 -> 1/2
    miou, per = mean_iou(pred, target, num_classes=4)
    np.testing.assert_allclose(per[:3], [1 / 3, 2 / 3, 1 / 2])
    assert np.isnan(per[3])                              # absent from both: NaN, left out
    assert miou == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)


def test_mean_iou_ignore_index_and_tensor():
    target = np.array([0, 1, 255, 255])
    pred = np.array([0, 1, 0, 1])
    miou, per = mean_iou(td.tensor(pred), td.tensor(target), num_classes=2, ignore_index=255)
    assert miou == 1.0 and per.tolist() == [1.0, 1.0]


def test_mean_iou_class_only_predicted_counts():
    miou, per = mean_iou(np.array([0, 1]), np.array([0, 0]), num_classes=2)
    assert per.tolist() == [0.5, 0.0] and miou == 0.25


def test_mean_iou_errors():
    with pytest.raises(ValueError, match="target has label 3 outside"):
        mean_iou(np.array([0, 1]), np.array([0, 3]), num_classes=3)
    with pytest.raises(ValueError, match="shapes differ"):
        mean_iou(np.zeros((2, 2), np.int64), np.zeros((2, 3), np.int64), num_classes=3)
    with pytest.raises(TypeError, match="integer label maps"):
        mean_iou(np.zeros(3), np.zeros(3, np.int64), num_classes=3)


# ---------------------------------------------------------------- keypoints
def test_keypoints_closest_first_one_to_one():
    pred = [np.array([[0.0, 0.0], [1.5, 0.0]])]
    gts = [np.array([[1.0, 0.0], [3.0, 0.0]])]
    # pairs within 2: p1-g0 (0.5), p0-g0 (1.0), p1-g1 (1.5); closest first takes p1-g0,
    # then g0 and p1 are used: one match (an optimal assignment would find two)
    assert keypoint_precision_recall(pred, gts, distance=2.0) == (0.5, 0.5)
    assert keypoint_precision_recall(pred, gts, distance=0.4) == (0.0, 0.0)


def test_keypoints_pooled_over_images_and_inclusive():
    pred = [np.array([[0.0, 0.0], [10.0, 10.0], [50, 50]]), np.zeros((0, 2))]
    gts = [np.array([[2.0, 0.0], [10.0, 11.0]]), np.array([[5.0, 5.0]])]
    p, r = keypoint_precision_recall(pred, gts, distance=2.0)      # distance 2 exactly counts
    assert p == pytest.approx(2 / 3) and r == pytest.approx(2 / 3)


def test_keypoints_empty():
    assert keypoint_precision_recall([np.zeros((0, 2))], [np.zeros((0, 2))]) == (0.0, 0.0)
    with pytest.raises(ValueError, match="2 images of predictions but 1"):
        keypoint_precision_recall([np.zeros((0, 2))] * 2, [np.zeros((0, 2))])
