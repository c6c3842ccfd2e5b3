"""Task metrics for detection, segmentation and keypoints.

    from tinydl.vision.metrics import mean_average_precision, mean_iou, keypoint_precision_recall

These are evaluation tools, not ops: they are not differentiable and run on the
host in NumPy (Tensors and CuPy arrays are copied to NumPy first; that is one
copy per evaluation, not per training step).

* ``mean_average_precision``: PASCAL VOC's detection metric (mAP at one IoU
  threshold, all-point interpolated AP per class).
* ``mean_iou``: the segmentation metric of FCN (intersection over union per
  class from a confusion matrix, then the mean over classes).
* ``keypoint_precision_recall``: SuperPoint/MagicPoint's detector metric (a
  predicted point is correct when it lies within a few pixels of a true one).
"""
import numpy as np

from ..backend import to_host
from ..ops.math import raw
from .ops.boxes import box_iou

__all__ = ["mean_average_precision", "average_precision", "mean_iou", "confusion_matrix",
           "keypoint_precision_recall"]


def _numpy(x, dtype=None):
    """A NumPy copy of an array, Tensor, CuPy array or nested list (host side: metrics only)."""
    return np.asarray(to_host(raw(x)), dtype=dtype)


def _box_iou(boxes1, boxes2):
    """(N, M) IoU matrix of two NumPy box sets, by the vision ops' ``box_iou``."""
    return _numpy(box_iou(boxes1, boxes2), np.float64)


# ================================================================ detection: VOC mAP
def average_precision(recall, precision):
    """All-point interpolated average precision (PASCAL VOC 2010 and later).

    The precision is first made monotone: at each recall level it becomes the
    best precision reached at that recall or any higher one (the "envelope").
    AP is then the area under that step curve,

        AP = sum_i (r_{i+1} - r_i) * p_interp(r_{i+1}),

    summed over the points where recall changes. ``recall`` and ``precision``
    are the cumulative values along the detections sorted by score.
    """
    mrec = np.concatenate([[0.0], np.asarray(recall, dtype=np.float64), [1.0]])
    mpre = np.concatenate([[0.0], np.asarray(precision, dtype=np.float64), [0.0]])
    # envelope: running maximum from the right
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    changes = np.nonzero(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[changes + 1] - mrec[changes]) * mpre[changes + 1]))


def _check_pairs(name, items, width):
    """Per-image tuples as NumPy arrays, with their lengths checked."""
    out = []
    for i, item in enumerate(items):
        if len(item) != width:
            raise ValueError(f"mean_average_precision: {name}[{i}] must be a tuple of {width} arrays, "
                             f"got {len(item)}")
        boxes = _numpy(item[0], np.float64).reshape(-1, 4) if np.size(_numpy(item[0])) else np.zeros((0, 4))
        rest = [_numpy(a).reshape(-1) for a in item[1:]]
        for a in rest:
            if a.shape[0] != boxes.shape[0]:
                raise ValueError(f"mean_average_precision: {name}[{i}] has {boxes.shape[0]} boxes but "
                                 f"{a.shape[0]} scores/labels")
        out.append((boxes, *rest))
    return out


def mean_average_precision(detections, ground_truths, iou_threshold=0.5, num_classes=None):
    """PASCAL VOC mAP at one IoU threshold.

    Args:
        detections: a list with one entry per image, ``(boxes (K, 4), scores (K,), labels (K,))``.
        ground_truths: a list with one entry per image, ``(boxes (M, 4), labels (M,))``.
            Boxes are (x1, y1, x2, y2), without the "+1" convention.
        iou_threshold: a detection matches a true box when their IoU is >= this.
        num_classes: if given, every label must lie in [0, num_classes).

    For each class, its detections in all images are sorted by score (a stable
    sort: ties keep image order, then detection order). Each one is compared with
    the true boxes of its class in its image: with the one it overlaps most, as
    VOC does. If that IoU reaches the threshold and the true box is still free,
    the detection is a true positive and takes the box (each true box is matched
    once); otherwise (too little overlap, or the box already taken by a
    higher-scoring detection: a duplicate) it is a false positive. Recall is
    cumulative TP / number of true boxes, precision cumulative TP / detections so
    far, and AP is their all-point interpolated area (``average_precision``).

    Classes without any true box are left out (their AP is undefined), so the
    background class 0 normally takes no part.

    Returns:
        ``(mAP, {class: AP})``: the mean over the classes that have true boxes
        (NaN if there are none) and each class's AP.
    """
    if len(detections) != len(ground_truths):
        raise ValueError(f"mean_average_precision: {len(detections)} images of detections but "
                         f"{len(ground_truths)} of ground truths")
    dets = _check_pairs("detections", detections, 3)
    gts = _check_pairs("ground_truths", ground_truths, 2)
    gts = [(b, l.astype(np.int64)) for b, l in gts]
    dets = [(b, s.astype(np.float64), l.astype(np.int64)) for b, s, l in dets]
    if num_classes is not None:
        for name, items in (("detections", [d[2] for d in dets]), ("ground_truths", [g[1] for g in gts])):
            for i, labels in enumerate(items):
                bad = labels[(labels < 0) | (labels >= num_classes)]
                if bad.size:
                    raise ValueError(f"mean_average_precision: {name}[{i}] has label {int(bad[0])} outside "
                                     f"[0, {num_classes})")

    classes = sorted({int(c) for _, labels in gts for c in labels})
    per_class = {}
    for c in classes:
        # the true boxes of class c, per image, and whether each is taken yet
        gt_boxes = [b[l == c] for b, l in gts]
        taken = [np.zeros(len(b), dtype=bool) for b in gt_boxes]
        num_gt = sum(len(b) for b in gt_boxes)
        # all detections of class c, as (image, box, score)
        image_ids, boxes, scores = [], [], []
        for i, (b, s, l) in enumerate(dets):
            keep = l == c
            image_ids.append(np.full(int(keep.sum()), i, dtype=np.int64))
            boxes.append(b[keep])
            scores.append(s[keep])
        image_ids, boxes, scores = np.concatenate(image_ids), np.concatenate(boxes), np.concatenate(scores)
        order = np.argsort(-scores, kind="stable")
        tp = np.zeros(len(order))
        # best true box of each detection (by IoU), computed per image at once
        best_gt = np.full(len(scores), -1, dtype=np.int64)
        best_iou = np.zeros(len(scores))
        for i in range(len(dets)):
            mine = np.nonzero(image_ids == i)[0]
            if mine.size and len(gt_boxes[i]):
                iou = _box_iou(boxes[mine], gt_boxes[i])
                best_gt[mine] = iou.argmax(axis=1)
                best_iou[mine] = iou.max(axis=1)
        for rank, d in enumerate(order):
            g = best_gt[d]
            if g >= 0 and best_iou[d] >= iou_threshold and not taken[image_ids[d]][g]:
                taken[image_ids[d]][g] = True
                tp[rank] = 1.0
        tp_cum = np.cumsum(tp)
        fp_cum = np.cumsum(1.0 - tp)
        recall = tp_cum / num_gt
        precision = tp_cum / np.maximum(tp_cum + fp_cum, np.finfo(np.float64).eps)
        per_class[c] = average_precision(recall, precision)
    mAP = float(np.mean(list(per_class.values()))) if per_class else float("nan")
    return mAP, per_class


# ================================================================ segmentation: mean IoU
def confusion_matrix(pred, target, num_classes, ignore_index=None):
    """(num_classes, num_classes) int64 counts: row = true class, column = predicted.

    Pixels whose target is ``ignore_index`` are skipped. Every other label (true
    or predicted) must lie in [0, num_classes).
    """
    pred = _numpy(pred)
    target = _numpy(target)
    if pred.shape != target.shape:
        raise ValueError(f"mean_iou: pred and target shapes differ: {pred.shape} vs {target.shape}")
    if pred.dtype.kind not in "iub" or target.dtype.kind not in "iub":
        raise TypeError(f"mean_iou: expects integer label maps, got dtypes {pred.dtype} and {target.dtype} "
                        "(take the argmax of the scores first)")
    pred, target = pred.reshape(-1).astype(np.int64), target.reshape(-1).astype(np.int64)
    if ignore_index is not None:
        keep = target != ignore_index
        pred, target = pred[keep], target[keep]
    for name, labels in (("target", target), ("pred", pred)):
        bad = labels[(labels < 0) | (labels >= num_classes)]
        if bad.size:
            raise ValueError(f"mean_iou: {name} has label {int(bad[0])} outside [0, {num_classes})"
                             + ("" if ignore_index is None else f" (ignore_index={ignore_index})"))
    return np.bincount(target * num_classes + pred, minlength=num_classes * num_classes) \
        .reshape(num_classes, num_classes)


def mean_iou(pred, target, num_classes, ignore_index=None):
    """Mean intersection over union of two integer label maps (any equal shapes).

    Per class c, with the confusion matrix over all pixels,
        IoU_c = TP_c / (TP_c + FP_c + FN_c)
    (true positives: the diagonal; false positives: the rest of column c; false
    negatives: the rest of row c). A class absent from both pred and target has
    0/0: its IoU is NaN and it is left out of the mean.

    Returns:
        ``(miou, per_class)``: a float (NaN if no class occurs) and a float64
        array (num_classes,).
    """
    cm = confusion_matrix(pred, target, num_classes, ignore_index).astype(np.float64)
    tp = np.diag(cm)
    union = cm.sum(axis=0) + cm.sum(axis=1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(union > 0, tp / union, np.nan)
    present = ~np.isnan(per_class)
    miou = float(per_class[present].mean()) if present.any() else float("nan")
    return miou, per_class


# ================================================================ keypoints
def _match_points(pred, gt, distance):
    """Number of one-to-one matches: pairs within ``distance`` taken closest first."""
    if len(pred) == 0 or len(gt) == 0:
        return 0
    d = np.sqrt(((pred[:, None, :] - gt[None, :, :]) ** 2).sum(-1))      # (P, G)
    p_idx, g_idx = np.nonzero(d <= distance)
    order = np.argsort(d[p_idx, g_idx], kind="stable")
    used_p, used_g = np.zeros(len(pred), dtype=bool), np.zeros(len(gt), dtype=bool)
    matches = 0
    for k in order:
        p, g = p_idx[k], g_idx[k]
        if not used_p[p] and not used_g[g]:
            used_p[p] = used_g[g] = True
            matches += 1
    return matches


def keypoint_precision_recall(pred_points, gt_points, distance=2.0):
    """Detector precision and recall of keypoints, pooled over images.

    ``pred_points`` and ``gt_points`` are lists with one (K, 2) array of (x, y)
    per image. In each image, predicted and true points are paired one to one:
    all pairs within ``distance`` pixels (Euclidean, inclusive) are taken
    closest first, skipping points already paired. Then

        precision = pairs / predicted points,   recall = pairs / true points,

    each summed over all images. An empty denominator gives 0.0 (sklearn's
    ``zero_division=0``).
    """
    if len(pred_points) != len(gt_points):
        raise ValueError(f"keypoint_precision_recall: {len(pred_points)} images of predictions but "
                         f"{len(gt_points)} of ground truth")
    matched = num_pred = num_gt = 0
    for i, (p, g) in enumerate(zip(pred_points, gt_points)):
        p = _numpy(p, np.float64).reshape(-1, 2) if np.size(_numpy(p)) else np.zeros((0, 2))
        g = _numpy(g, np.float64).reshape(-1, 2) if np.size(_numpy(g)) else np.zeros((0, 2))
        matched += _match_points(p, g, distance)
        num_pred += len(p)
        num_gt += len(g)
    precision = matched / num_pred if num_pred else 0.0
    recall = matched / num_gt if num_gt else 0.0
    return float(precision), float(recall)
