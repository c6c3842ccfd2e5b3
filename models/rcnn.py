"""R-CNN (Girshick, Donahue, Darrell & Malik 2014) and SPP-net's detector (He, Zhang,
Ren & Sun 2014), as seed 001 walks through them.

R-CNN, four steps (the notes' "RCNN 算法主要分为四个步骤"):

1. Proposals: about 2,000 boxes per image from ``selective_search`` (given from
   outside, one (P, 4) array per image).
2. CNN features: each proposal is warped to the CNN's input size (227 x 227 for
   AlexNet) whatever its aspect ratio (anisotropic), after widening it so that
   16 pixels of context surround the box in the warped image; pixels beyond the
   image edge take the region's mean colour, and the region's mean is subtracted
   (``warp_regions``). The CNN runs once per proposal; fc7 (4096) is the feature.
   The CNN is fine-tuned first as an (N+1)-way softmax classifier on warped
   proposals: IoU >= 0.5 with a true box is that box's class, else background;
   batches of 128 with 32 positives and 96 background (``model(images,
   proposals, targets)`` returns this loss).
3. One linear SVM per class on the fc7 features (``fit_detectors``): positives
   are the true boxes only, negatives the proposals with IoU < 0.3 to every
   true box of that class (stricter than fine-tuning's 0.5: the notes'
   question 3). Negatives are far too many, so they are mined: start from a
   random few, train, add the negatives the SVM gets most wrong (the hardest,
   ``hard_negative_mining``), train again, until no new hard negative appears.
   Features are scaled to a mean L2 norm of 20, as R-CNN's code.
4. Per class, a ridge regression (lambda 1000) from the pool5 features of a
   proposal to the deltas (dx, dy, dw, dh) that move it onto its true box,
   trained on proposals with IoU > 0.6 (``encode_boxes``'s parametrisation).

Testing: scores (K, N) = fc7 features x SVM weights (K x 4096 times 4096 x N),
each class's boxes moved by its regressor, then NMS per class (IoU 0.3).

SPP-net's detector changes step 2 only: the convolutions run once on the whole
image, and each proposal's window on the conv5 map is pooled by a spatial
pyramid (``roi_spatial_pyramid_pool``, the paper's 1x1, 2x2, 3x3, 6x6 = 50 bins)
into fc6's fixed-length input. Steps 3 and 4 are R-CNN's. (The paper fine-tunes
only the fc layers of an ImageNet-trained net; here the whole net trains from
scratch, since nothing is pre-trained.)

Both are ``RegionDetector``s: ``region_features(images, rois)`` gives (pool5, fc7)
per RoI, the rest is shared. Before ``fit_detectors`` has run, ``model.eval();
model(images, proposals)`` scores with the fine-tuned softmax instead (no
regression): the notes' comparison of the two classifiers.

Boxes (x1, y1, x2, y2) without "+1"; images (N, 3, H, W) float RGB in [0, 1].
"""

import tinydl as td
import tinydl.nn as nn
import tinydl.nn.functional as F
from tinydl.backend import get_array_module
from tinydl.ops.math import raw
from tinydl.tensor import Tensor
from tinydl.vision.ops import (box_iou, clip_boxes_to_image, decode_boxes, encode_boxes,
                               hard_negative_mining, roi_spatial_pyramid_pool, sample_points, spp_num_features)

from models import register
from models.alexnet import AlexNet
from models.fast_rcnn import FastRCNN
from models.faster_rcnn import (_IMAGENET_MEAN, _IMAGENET_STD, FasterRCNN, backbone_and_head,
                                register_image_normalisation, select_detections)
from models.spp import _zf5

__all__ = ["RegionDetector", "RCNN", "SPPNetDetector", "warp_regions", "train_linear_svm", "ridge_regression",
           "rcnn", "spp_det"]


# ================================================================ step 2: warping
def warp_regions(images, rois, size=227, context=16, image_std=_IMAGENET_STD):
    """R-CNN's region warping: (K, 5) rois [image, x1, y1, x2, y2] of (N, 3, H, W) images
    -> (K, 3, size, size), anisotropic, with ``context`` pixels around the box.

    The box is widened so that, once scaled to ``size`` x ``size``, it occupies the
    central ``size - 2 context`` pixels (the paper: 227 and 16). Each output pixel is
    read bilinearly (``sample_points``) at its centre; pixels beyond the image take
    the region's mean colour. The region's mean (over the box) is then subtracted and
    the result divided by ``image_std``. No gradient (the images are data).
    """
    xp = images._xp
    rois = xp.asarray(raw(rois), dtype=images.dtype)
    n, c, h, w = images.shape
    if rois.ndim != 2 or rois.shape[1] != 5:
        raise ValueError(f"warp_regions: rois must be (K, 5) [image, x1, y1, x2, y2], got {tuple(rois.shape)}")
    if not 0 <= 2 * context < size:
        raise ValueError(f"warp_regions: context {context} leaves no room for the box in {size} pixels")
    k, inner = rois.shape[0], size - 2 * context
    x1, y1 = rois[:, 1:2], rois[:, 2:3]
    step_x = xp.maximum(rois[:, 3:4] - x1, 1) / inner                 # image pixels per warped pixel
    step_y = xp.maximum(rois[:, 4:5] - y1, 1) / inner
    u = xp.arange(size, dtype=images.dtype) + 0.5 - context           # warped centres, from the box edge
    px = x1 + u * step_x - 0.5                                        # (K, size) in map coordinates
    py = y1 + u * step_y - 0.5                                        # (pixel centres at integers)
    inside = (((py >= -0.5) & (py <= h - 0.5))[:, :, None] & ((px >= -0.5) & (px <= w - 0.5))[:, None, :])
    grid = xp.stack(xp.broadcast_arrays(xp.clip(px, 0, w - 1)[:, None, :], xp.clip(py, 0, h - 1)[:, :, None]),
                    axis=-1)                                          # (K, size, size, 2) as (x, y)
    out = xp.empty((k, c, size, size), dtype=images.dtype)
    with td.no_grad():
        for b in range(n):
            rows = xp.nonzero(rois[:, 0] == b)[0]
            if len(rows):
                v = sample_points(images[b:b + 1], grid[rows].reshape(1, -1, 2)).array   # (1, C, Kb*S*S)
                out[rows] = v.reshape(c, len(rows), size, size).transpose(1, 0, 2, 3)
    mean = out[:, :, context:size - context, context:size - context].mean(axis=(2, 3), keepdims=True)
    std = xp.asarray(image_std, dtype=images.dtype).reshape(1, c, 1, 1)
    return Tensor(xp.where(inside[:, None], (out - mean) / std, 0).astype(images.dtype))


# ================================================================ steps 3 and 4: solvers
def train_linear_svm(x, y, C=1e-3, bias=10.0, max_iter=30):
    """A linear SVM with the squared hinge loss (liblinear's L2-loss SVM, as R-CNN):

        min_w  1/2 ||w||^2 + C sum_i max(0, 1 - y_i w.x_i)^2      y_i in {-1, +1}

    with x augmented by a constant ``bias`` feature (liblinear's bias, R-CNN's 10).
    Newton's method: on the active set A = {i : y_i w.x_i < 1} the loss is the
    quadratic ||y_A - X_A w||^2, so one step solves (I + 2C X_A^T X_A) w = 2C X_A^T y_A;
    repeat until A stops changing. Returns (weight (D,), bias) in x's array module, float64.
    """
    xp = get_array_module(x)
    x = xp.asarray(x, dtype=xp.float64)
    y = xp.asarray(y, dtype=xp.float64)
    xa = xp.concatenate([x, xp.full((x.shape[0], 1), bias)], axis=1)
    eye = xp.eye(xa.shape[1])
    active = xp.ones(x.shape[0], dtype=bool)
    w = xp.zeros(xa.shape[1])
    for _ in range(max_iter):
        xs, ys = xa[active], y[active]
        w = xp.linalg.solve(eye + 2 * C * xs.T @ xs, 2 * C * xs.T @ ys)
        now = y * (xa @ w) < 1
        if bool((now == active).all()):
            break
        active = now
    return w[:-1], w[-1] * bias


def ridge_regression(x, t, lam=1000.0):
    """min_W ||T - X W - b||^2 + lam ||W||^2 (the bias unpenalised): centre X and T, then
    W = (X^T X + lam I)^-1 X^T T, or the same W as X^T (X X^T + lam I)^-1 T when there are
    fewer samples than features (a smaller system). Returns (W (D, F), b (F,)), float64."""
    xp = get_array_module(x)
    x = xp.asarray(x, dtype=xp.float64)
    t = xp.asarray(t, dtype=xp.float64)
    mx, mt = x.mean(axis=0), t.mean(axis=0)
    xc, tc = x - mx, t - mt
    n, d = xc.shape
    if n < d:
        weight = xc.T @ xp.linalg.solve(xc @ xc.T + lam * xp.eye(n), tc)
    else:
        weight = xp.linalg.solve(xc.T @ xc + lam * xp.eye(d), xc.T @ tc)
    return weight, mt - mx @ weight


# ================================================================ the shared detector
class RegionDetector(nn.Module):
    """What R-CNN and SPP-net's detector share: fine-tuning with a softmax, the SVMs, the
    box regressors and the per-class NMS. A subclass defines ``region_features(images,
    rois) -> (pool5 (K, pool_dim), fc7 (K, feature_dim))`` Tensors."""

    # proposals as arrays, and the fine-tuning RoIs, sampled as Fast/Faster R-CNN's
    _proposals = FastRCNN._proposals
    sample_rois = FasterRCNN.sample_rois
    _check_targets = FasterRCNN._check_targets

    def __init__(self, num_classes, feature_dim, pool_dim, batch_size_per_image=64, positive_fraction=0.25,
                 nms_thresh=0.3, detections_per_img=100, softmax_score_thresh=0.05, svm_score_thresh=-1.0,
                 chunk=256):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"{type(self).__name__}: num_classes counts the background too and must be >= 2, "
                             f"got {num_classes}")
        self.num_classes = int(num_classes)
        self.cls_score = nn.Linear(feature_dim, num_classes)        # fine-tuning's (N+1)-way softmax
        nn.init.normal_(self.cls_score.weight, 0.0, 0.01)
        nn.init.constant_(self.cls_score.bias, 0.0)
        c = num_classes - 1
        # the SVMs and regressors are solved, not trained by gradient: buffers, saved with the weights
        self.register_buffer("svm_weight", td.zeros(c, feature_dim))
        self.register_buffer("svm_bias", td.zeros(c))
        self.register_buffer("bbox_weight", td.zeros(c, pool_dim, 4))
        self.register_buffer("bbox_bias", td.zeros(c, 4))
        self.register_buffer("feature_scale", td.zeros(2))          # fc7's and pool5's; 0: not fitted yet
        self.box_fg_iou_thresh = self.box_bg_iou_thresh = 0.5
        self.box_batch_size_per_image, self.box_positive_fraction = batch_size_per_image, positive_fraction
        self.bbox_reg_weights = (1.0, 1.0, 1.0, 1.0)
        self.nms_thresh, self.detections_per_img = nms_thresh, detections_per_img
        self.softmax_score_thresh, self.svm_score_thresh = softmax_score_thresh, svm_score_thresh
        self.chunk = int(chunk)

    @property
    def fitted(self):
        """Whether ``fit_detectors`` has run (the SVMs then score the detections)."""
        return bool(float(self.feature_scale.array[0]) > 0)

    def region_features(self, images, rois):
        raise NotImplementedError

    def _features_in_chunks(self, image, boxes):
        """region_features of one image (1, 3, H, W) at its (K, 4) boxes, ``chunk`` boxes at a
        time, without gradients: (pool5, fc7) arrays."""
        xp = image._xp
        rois = FasterRCNN._rois([boxes], image.array)
        pools, fcs = [], []
        with td.no_grad():
            for s in range(0, rois.shape[0], self.chunk):
                p, f = self.region_features(image, rois[s:s + self.chunk])
                pools.append(p.array)
                fcs.append(f.array)
        if not pools:
            return xp.zeros((0, self.bbox_weight.shape[1]), image.dtype), xp.zeros((0, self.svm_weight.shape[1]),
                                                                                   image.dtype)
        return xp.concatenate(pools), xp.concatenate(fcs)

    # ------------------------------------------------------------ step 2: fine-tuning
    def forward(self, images, proposals, targets=None):
        """Training: ``model(images, proposals, targets)`` -> {'loss_classifier'}: softmax
        cross-entropy of the sampled RoIs (IoU >= 0.5: the true class, else background).
        Eval: ``model(images, proposals)`` -> one dict per image {'boxes', 'scores', 'labels'}."""
        proposals = self._proposals(images, proposals)
        if not self.training:
            return self.detect(images, proposals)
        self._check_targets(images, targets)
        rois, labels, _, _ = self.sample_rois(proposals, targets)
        _, fc7 = self.region_features(images, rois)
        return {"loss_classifier": F.cross_entropy(self.cls_score(fc7), Tensor(labels))}

    # ------------------------------------------------------------ steps 3 and 4
    def fit_detectors(self, batches, C=1e-3, neg_pos_ratio=10, rounds=5, neg_iou=0.3, reg_iou=0.6,
                      ridge_lambda=1000.0, seed=0):
        """Train the per-class SVMs (hard negative mining) and box regressors on the
        features of ``batches``: an iterable of (images, proposals, targets) as forward's.

        SVM for class c: positives the true boxes of class c, negatives every RoI
        (proposal or true box of another class) with IoU < ``neg_iou`` to all true boxes
        of class c. Round 0 trains on the positives and ``neg_pos_ratio`` times as many
        random negatives; each next round adds the ``neg_pos_ratio`` x positives hardest
        negatives (largest hinge loss); it stops when they are all in the set already, or
        no negative is violated, or after ``rounds``. Regressor for class c: proposals
        whose best IoU (> ``reg_iou``) is with a true box of class c. Returns a dict of
        per-class counts and rounds.
        """
        was_training = self.training
        self.eval()
        c_max = self.num_classes - 1
        fcs, pools, best_iou, gt_labels, reg_rows = [], [], [], [], []
        xp = None
        for images, proposals, targets in batches:
            proposals = self._proposals(images, proposals)
            xp = images._xp
            for i, (props, t) in enumerate(zip(proposals, targets)):
                gt, lab = xp.asarray(raw(t["boxes"]), dtype=props.dtype), xp.asarray(raw(t["labels"]))
                boxes = xp.concatenate([gt, props])
                pool, fc = self._features_in_chunks(images[i:i + 1], boxes)
                iou = xp.zeros((len(boxes), max(len(gt), 1)))
                if len(gt):
                    iou = xp.nan_to_num(xp.asarray(box_iou(boxes, gt), dtype=xp.float64))
                # best IoU with the true boxes of each class (K, N), for the SVMs' negatives
                per_class = xp.zeros((len(boxes), c_max))
                for c in range(1, c_max + 1):
                    cols = xp.nonzero(lab == c)[0]
                    if len(cols):
                        per_class[:, c - 1] = iou[:, cols].max(axis=1)
                fcs.append(fc)
                best_iou.append(per_class)
                gt_labels.append(xp.concatenate([lab, xp.zeros(len(props), dtype=lab.dtype)]))
                if len(gt):
                    best = iou.argmax(axis=1)
                    rows = xp.nonzero(iou.max(axis=1) > reg_iou)[0]
                    if len(rows):
                        deltas = encode_boxes(gt[best[rows]], boxes[rows])
                        pools.append(pool[rows])
                        reg_rows.append((deltas, lab[best[rows]]))
        if xp is None:
            raise ValueError(f"{type(self).__name__}.fit_detectors: no batches")
        fc, best_iou, gt_labels = xp.concatenate(fcs), xp.concatenate(best_iou), xp.concatenate(gt_labels)
        fc = fc.astype(xp.float64)
        scale = 20.0 / float(xp.linalg.norm(fc, axis=1).mean())
        fc *= scale
        report = {"svm": {}, "regressor": {}}
        svm_w = xp.zeros(self.svm_weight.shape)
        svm_b = xp.zeros(c_max)
        for c in range(1, c_max + 1):
            pos = gt_labels == c
            neg = best_iou[:, c - 1] < neg_iou
            neg &= ~pos
            labels = xp.where(pos, 1, xp.where(neg, 0, -1)).astype(xp.int64)
            n_pos = int(pos.sum())
            if n_pos == 0:
                continue
            y = xp.where(pos, 1.0, -1.0)
            # round 0: every negative is as hard as any other: a random pool of them
            cache = raw(hard_negative_mining(xp.ones(len(labels)), labels, neg_pos_ratio,
                                             pool_size=neg_pos_ratio * n_pos, generator=seed + c))
            for r in range(rounds):
                w, b = train_linear_svm(fc[cache], y[cache], C)
                loss = xp.maximum(0, 1 - y * (fc @ w + b)) ** 2
                hard = raw(hard_negative_mining(loss, labels, neg_pos_ratio)) & (loss > 0)
                if not bool((hard & ~cache).any()):
                    break
                cache |= hard
            else:                                       # the last round's new negatives: train once more
                w, b = train_linear_svm(fc[cache], y[cache], C)
            svm_w[c - 1], svm_b[c - 1] = w, b
            report["svm"][c] = dict(positives=n_pos, negatives=int((cache & neg).sum()), rounds=r + 1)
        pool_scale = 1.0
        bbox_w, bbox_b = xp.zeros(self.bbox_weight.shape), xp.zeros(self.bbox_bias.shape)
        if pools:
            pool = xp.concatenate(pools).astype(xp.float64)
            deltas = xp.concatenate([raw(d) for d, _ in reg_rows]).astype(xp.float64)
            reg_labels = xp.concatenate([lab for _, lab in reg_rows])
            pool_scale = 20.0 / float(xp.linalg.norm(pool, axis=1).mean())
            for c in range(1, c_max + 1):
                rows = xp.nonzero(reg_labels == c)[0]
                if len(rows) >= 2:
                    bbox_w[c - 1], bbox_b[c - 1] = ridge_regression(pool[rows] * pool_scale, deltas[rows],
                                                                    ridge_lambda)
                    report["regressor"][c] = int(len(rows))
        dtype = self.svm_weight.dtype
        self.svm_weight.array[...] = svm_w.astype(dtype)
        self.svm_bias.array[...] = svm_b.astype(dtype)
        self.bbox_weight.array[...] = bbox_w.astype(dtype)
        self.bbox_bias.array[...] = bbox_b.astype(dtype)
        self.feature_scale.array[...] = xp.asarray([scale, pool_scale], dtype=dtype)
        self.train(was_training)
        return report

    # ------------------------------------------------------------ testing
    def detect(self, images, proposals):
        """Per image: features of every proposal, SVM scores (or the softmax before
        ``fit_detectors``), each class's regressed box, NMS per class, the best
        ``detections_per_img``."""
        xp = images._xp
        c_max = self.num_classes - 1
        image_size = tuple(images.shape[-2:])
        out = []
        for i, props in enumerate(proposals):
            pool, fc = self._features_in_chunks(images[i:i + 1], props)
            if self.fitted:
                s_fc, s_pool = (float(v) for v in self.feature_scale.array)
                scores = (fc * s_fc) @ self.svm_weight.array.T + self.svm_bias.array                  # (K, N)
                deltas = xp.einsum("kp,cpf->kcf", pool * s_pool, self.bbox_weight.array) + self.bbox_bias.array
                boxes = raw(decode_boxes(deltas.reshape(len(props), 4 * c_max).astype(props.dtype), props))
                thresh = self.svm_score_thresh
            else:
                with td.no_grad():
                    scores = self.cls_score(Tensor(fc)).softmax(-1).array[:, 1:]
                boxes = xp.tile(props, (1, c_max))
                thresh = self.softmax_score_thresh
            boxes = raw(clip_boxes_to_image(boxes.reshape(-1, 4), image_size))
            out.append(select_detections(boxes, scores.reshape(-1).astype(props.dtype), c_max, thresh,
                                         self.nms_thresh, self.detections_per_img))
        return out


# ================================================================ R-CNN
class RCNN(RegionDetector):
    """R-CNN: every proposal warped (``warp_regions``) and run through ``features``
    (conv1..pool5) and ``head`` (fc6, fc7). See the module docstring."""

    def __init__(self, features, head, pool_dim, feature_dim, num_classes=21, warp_size=227, context=16,
                 **options):
        super().__init__(num_classes, feature_dim, pool_dim, **options)
        self.features, self.head = features, head
        self.warp_size, self.context = int(warp_size), int(context)

    def region_features(self, images, rois):
        x = warp_regions(images, rois, self.warp_size, self.context)
        pool5 = self.features(x).flatten(1)
        return pool5, self.head(pool5)


class SPPNetDetector(RegionDetector):
    """SPP-net's detector: ``backbone`` once per image, then each RoI's window pooled by a
    spatial pyramid (``levels``) on the last conv map, then ``head``."""

    features = FasterRCNN.features                      # normalise, then the backbone

    def __init__(self, backbone, channels, stride, head, feature_dim, num_classes=21, levels=(1, 2, 3, 6),
                 image_mean=_IMAGENET_MEAN, image_std=_IMAGENET_STD, **options):
        super().__init__(num_classes, feature_dim, spp_num_features(channels, levels), **options)
        self.backbone, self.head = backbone, head
        self.stride, self.levels = int(stride), tuple(levels)
        register_image_normalisation(self, image_mean, image_std)

    def region_features(self, images, rois):
        pooled = roi_spatial_pyramid_pool(self.features(images), rois, self.levels, 1.0 / self.stride)
        return pooled, self.head(pooled)


# ================================================================ builders
@register
def rcnn(num_classes=21, backbone="alexnet", **options):
    """R-CNN. ``backbone='alexnet'``: the paper's net (AlexNet conv1..pool5 on 227 x 227
    warps with 16 px of context, pool5 9,216, fc6/fc7 4,096 with dropout); ``'small'``:
    Faster R-CNN's small backbone (``channels=`` (16, 32, 64, 128), batch norm) on 56 x 56
    warps with 4 px of context (16/227 of the side) -> pool5 7 x 7, fc 256-256
    (``head_dim=``). RegionDetector keywords (batch_size_per_image=, nms_thresh=, ...)
    can be overridden."""
    if backbone == "alexnet":
        net = AlexNet(num_classes=num_classes)
        features, head = net.features, net.classifier[:-1]                  # conv1..pool5; fc6, fc7
        config = dict(pool_dim=256 * 6 * 6, feature_dim=4096, warp_size=227, context=16)
    elif backbone == "small":
        parts = backbone_and_head("small", options)          # 56 / 8: a 7 x 7 pool5
        features, head, head_dim = parts["backbone"], parts["box_head"], parts["head_dim"]
        config = dict(pool_dim=parts["backbone_channels"] * 7 * 7, feature_dim=head_dim, warp_size=56, context=4,
                      batch_size_per_image=32, detections_per_img=20)
    else:
        raise ValueError(f"rcnn: backbone must be 'alexnet' or 'small', got {backbone!r}")
    config.update(options)
    return RCNN(features, head, num_classes=num_classes, **config)


@register
def spp_det(num_classes=21, backbone="zf", levels=(1, 2, 3, 6), **options):
    """SPP-net's detector. ``backbone='zf'``: the paper's ZF-5 convs (stride 16, conv5 256
    channels), the 4-level pyramid 1-2-3-6 (12,800 features), fc6/fc7 4,096 with dropout;
    ``'small'``: Faster R-CNN's small stride-8 backbone (``channels=``, ``batch_norm=``)
    and fc 256-256 (``head_dim=``). RegionDetector keywords can be overridden."""
    if backbone == "zf":
        features, channels, hidden = _zf5()
        stride, head_dim = 16, hidden
        head = nn.Sequential(nn.Linear(spp_num_features(channels, levels), hidden), nn.ReLU(inplace=True),
                             nn.Dropout(0.5),
                             nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Dropout(0.5))
        config = {}
    elif backbone == "small":
        parts = backbone_and_head("small", options, lambda channels: spp_num_features(channels, levels))
        features, channels, stride = parts["backbone"], parts["backbone_channels"], parts["stride"]
        head, head_dim = parts["box_head"], parts["head_dim"]
        config = dict(detections_per_img=20)
    else:
        raise ValueError(f"spp_det: backbone must be 'zf' or 'small', got {backbone!r}")
    config.update(options)
    return SPPNetDetector(features, channels, stride, head, head_dim, num_classes=num_classes, levels=levels,
                          **config)
