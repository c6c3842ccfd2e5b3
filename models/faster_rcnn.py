"""Faster R-CNN (Ren, He, Girshick & Sun 2015; seeds 001 and 004).

One network does all four steps of the notes' description:

1. Conv layers: a backbone turns the image (N, 3, H, W) into a feature map
   (N, C, H/s, W/s), shared by everything after it. VGG-16's conv1_1..conv5_3
   (13 convs + ReLUs, 4 pools: s = 16, C = 512), or for CPU experiments a
   small stack of convs (s = 8, C = 128).
2. Region Proposal Network: a 3x3 conv (512 channels for VGG) slides over the
   map; at each position two 1x1 convs score k = 9 anchors (3 scales x 3
   aspect ratios, centred on that position): ``cls`` 2k channels
   (background/foreground logits per anchor, a softmax over each pair, as in
   the notes' caffe prototxt: ``num_output: 18``) and ``reg`` 4k channels (box
   deltas (dx, dy, dw, dh) per anchor). The proposal layer decodes the deltas
   on the anchors, clips them to the image, drops tiny ones, keeps the
   ``pre_nms_top_n`` best-scoring, runs NMS (IoU 0.7) and keeps
   ``post_nms_top_n``: the regions of interest.
3. RoI pooling: each proposal, scaled by 1/s onto the feature map, is max-pooled
   into a fixed 7 x 7 grid, whatever its size.
4. Classification: fc layers (VGG's fc6 and fc7, 4096 each) then two siblings:
   ``cls_score`` (num_classes scores, background included) and ``bbox_pred``
   (4 deltas per class, a second, finer box regression).

Training (``model(images, targets)``, returns the four losses):

* RPN: every anchor is matched to the true boxes by IoU: >= 0.7 foreground,
  < 0.3 background, in between ignored, and each true box's best anchor(s)
  foreground even below 0.7. 256 anchors per image are sampled, up to half of
  them foreground (the notes' "128 positive + 128 negative"). Losses:
  ``loss_objectness`` = softmax cross-entropy over the sampled anchors, and
  ``loss_rpn_box_reg`` = smooth L1 (beta = 1/9) on the foreground anchors'
  deltas, summed and divided by the number sampled.
* Head: the true boxes are added to the proposals; each proposal with IoU >= 0.5
  to a true box takes its class, the others are background. 128 proposals per
  image are sampled, up to 25% foreground. Losses: ``loss_classifier`` =
  cross-entropy over num_classes, and ``loss_box_reg`` = smooth L1 (beta = 1/9)
  on the deltas of each foreground proposal's true class (box targets scaled by
  weights (10, 10, 5, 5)), summed and divided by the number sampled.

The four losses are trained jointly ("approximate joint training": the
proposals are treated as constants, no gradient flows through their
coordinates), as torchvision and most re-implementations do, instead of the
paper's 4-step alternating training.

Inference (``model.eval(); model(images)``): the RPN's ``post_nms_top_n`` test
proposals go through the head; each class's box is decoded from its deltas and
clipped; detections with score < ``box_score_thresh`` are dropped, NMS (IoU
``box_nms_thresh``) runs per class, and the best ``detections_per_img`` are kept.
Returns one dict per image: {'boxes' (D, 4) float32, 'scores' (D,), 'labels' (D,) int64}.

Conventions: boxes (x1, y1, x2, y2) in input pixels without "+1"; images float
in [0, 1], RGB, normalised inside the model by ``image_mean`` / ``image_std``
(ImageNet's by default); all images of a batch share one size (stack them).
The original trains on one image per step (and so does ``examples/
train_faster_rcnn.py``); batches of N > 1 images work the same, with anchors
matched, proposals chosen and RoIs sampled per image.

Anchor matching, proposal selection and the final NMS are not differentiable
and run on index arrays on the data's device (``tinydl.vision.ops``); only the
backbone, RPN convs, RoI pooling and head carry gradients.

Builders: ``faster_rcnn(num_classes=21, backbone='vgg16')`` (137,078,239
parameters with 21 classes: VGG-16 convs 14,714,688 + RPN 2,387,510 + fc6/fc7
119,545,856 + cls/bbox 430,185); ``backbone='small'`` for CPU training. Module
names of the VGG parts match torchvision's VGG-16 (``backbone.N`` =
``features.N`` for N < 30, ``box_head.0``/``box_head.3`` = ``classifier.0``/
``classifier.3``), so ImageNet weights load by renaming keys.
"""
import numpy as np

import tinydl as td
import tinydl.nn as nn
import tinydl.nn.functional as F
from tinydl.backend import get_array_module
from tinydl.ops.math import raw
from tinydl.tensor import Tensor
from tinydl.vision.ops import (batched_nms, clip_boxes_to_image, decode_boxes, encode_boxes, generate_anchors,
                               grid_anchors, match_boxes, remove_small_boxes, roi_pool, sample_labels,
                               select_proposals)

from models import register
from models.vgg import cfgs, make_layers

__all__ = ["FasterRCNN", "RPNHead", "faster_rcnn", "small_backbone", "backbone_and_head"]

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class RPNHead(nn.Module):
    """The RPN's convolutions: 3x3 conv + ReLU, then 1x1 ``cls_logits`` (2k) and 1x1
    ``bbox_pred`` (4k). Weights N(0, 0.01^2), biases 0, as the paper.

    ``forward(features)`` -> (logits (N, H*W*k, 2), deltas (N, H*W*k, 4)) with rows
    in (y, x, anchor) order, the order of ``grid_anchors``. The 2k channels are
    laid out as caffe's (all k background logits, then all k foreground ones: the
    notes' reshape to [1, 2, 9H, W]); the 4k as k groups of (dx, dy, dw, dh).
    """

    def __init__(self, in_channels, mid_channels, num_anchors):
        super().__init__()
        self.num_anchors = num_anchors
        self.conv = nn.Conv2d(in_channels, mid_channels, kernel_size=3, padding=1)
        self.cls_logits = nn.Conv2d(mid_channels, 2 * num_anchors, kernel_size=1)
        self.bbox_pred = nn.Conv2d(mid_channels, 4 * num_anchors, kernel_size=1)
        for layer in (self.conv, self.cls_logits, self.bbox_pred):
            nn.init.normal_(layer.weight, 0.0, 0.01)
            nn.init.constant_(layer.bias, 0.0)

    def forward(self, features):
        n, _, h, w = features.shape
        k = self.num_anchors
        t = F.relu(self.conv(features))
        # (N, 2k, H, W) = (N, 2, k, H, W) -> (N, H, W, k, 2) -> (N, H*W*k, 2)
        logits = self.cls_logits(t).reshape(n, 2, k, h, w).permute(0, 3, 4, 2, 1).reshape(n, h * w * k, 2)
        # (N, 4k, H, W) = (N, k, 4, H, W) -> (N, H, W, k, 4) -> (N, H*W*k, 4)
        deltas = self.bbox_pred(t).reshape(n, k, 4, h, w).permute(0, 3, 4, 1, 2).reshape(n, h * w * k, 4)
        return logits, deltas


class FasterRCNN(nn.Module):
    """Backbone -> RPN -> RoI pooling -> box head (see the module docstring).

    Args:
        backbone: a module mapping (N, 3, H, W) to (N, backbone_channels, H/stride, W/stride).
        backbone_channels, stride: its output channels and total stride.
        box_head: a module mapping flattened pooled RoIs (K, C*7*7) to (K, head_dim).
        head_dim: its output width.
        num_classes: classes including the background (label 0).
        rpn_channels: the RPN's 3x3 conv width.
        anchor_base_size, anchor_ratios, anchor_scales: ``generate_anchors``'s
            arguments; anchor sides are about base_size * scale (area-preserving
            over the ratios). Defaults: 16 and (8, 16, 32) -> 128, 256, 512 px,
            the paper's, for ~600 x 1000 images.
        roi_output_size: the RoI pooling grid (7 x 7 for VGG).
        rpn_*: proposal and RPN-training settings (torchvision's names).
        box_*: head-training and inference settings.
        bbox_reg_weights: the head's (wx, wy, ww, wh) target scaling.
    """

    def __init__(self, backbone, backbone_channels, stride, box_head, head_dim, num_classes=21,
                 rpn_channels=512, anchor_base_size=16, anchor_ratios=(0.5, 1.0, 2.0), anchor_scales=(8, 16, 32),
                 roi_output_size=7,
                 rpn_pre_nms_top_n_train=2000, rpn_pre_nms_top_n_test=1000,
                 rpn_post_nms_top_n_train=2000, rpn_post_nms_top_n_test=300,
                 rpn_nms_thresh=0.7, rpn_fg_iou_thresh=0.7, rpn_bg_iou_thresh=0.3,
                 rpn_batch_size_per_image=256, rpn_positive_fraction=0.5, rpn_min_size=1e-3,
                 box_fg_iou_thresh=0.5, box_bg_iou_thresh=0.5, box_batch_size_per_image=128,
                 box_positive_fraction=0.25, box_score_thresh=0.05, box_nms_thresh=0.3,
                 detections_per_img=100, bbox_reg_weights=(10.0, 10.0, 5.0, 5.0), box_loss_beta=1.0 / 9,
                 image_mean=_IMAGENET_MEAN, image_std=_IMAGENET_STD):
        super().__init__()
        self._init_detector(backbone, stride, box_head, head_dim, num_classes, roi_output_size,
                            box_fg_iou_thresh, box_bg_iou_thresh, box_batch_size_per_image, box_positive_fraction,
                            box_score_thresh, box_nms_thresh, detections_per_img, bbox_reg_weights, box_loss_beta,
                            image_mean, image_std)
        base = np.asarray(raw(generate_anchors(base_size=anchor_base_size, ratios=anchor_ratios,
                                                scales=anchor_scales)), dtype=np.float32)
        self.base_anchors = base                      # (k, 4), centred on the first cell
        self.rpn = RPNHead(backbone_channels, rpn_channels, len(base))
        self.rpn_pre_nms_top_n = {"train": rpn_pre_nms_top_n_train, "test": rpn_pre_nms_top_n_test}
        self.rpn_post_nms_top_n = {"train": rpn_post_nms_top_n_train, "test": rpn_post_nms_top_n_test}
        self.rpn_nms_thresh, self.rpn_min_size = rpn_nms_thresh, rpn_min_size
        self.rpn_fg_iou_thresh, self.rpn_bg_iou_thresh = rpn_fg_iou_thresh, rpn_bg_iou_thresh
        self.rpn_batch_size_per_image, self.rpn_positive_fraction = rpn_batch_size_per_image, rpn_positive_fraction
        self.rpn_reg_weights = (1.0, 1.0, 1.0, 1.0)
        self._anchor_cache = {}

    def _init_detector(self, backbone, stride, box_head, head_dim, num_classes, roi_output_size,
                       box_fg_iou_thresh, box_bg_iou_thresh, box_batch_size_per_image, box_positive_fraction,
                       box_score_thresh, box_nms_thresh, detections_per_img, bbox_reg_weights, box_loss_beta,
                       image_mean, image_std):
        """Everything but the RPN: the backbone, the Fast R-CNN head and its settings
        (``models.fast_rcnn.FastRCNN`` is this alone)."""
        if num_classes < 2:
            raise ValueError(f"{type(self).__name__}: num_classes counts the background too and must be >= 2, "
                             f"got {num_classes}")
        self.backbone = backbone
        self.stride = int(stride)
        self.num_classes = int(num_classes)
        self.roi_output_size = (roi_output_size, roi_output_size) if isinstance(roi_output_size, int) \
            else tuple(roi_output_size)
        self.box_head = box_head
        self.cls_score = nn.Linear(head_dim, num_classes)
        self.bbox_pred = nn.Linear(head_dim, 4 * num_classes)
        nn.init.normal_(self.cls_score.weight, 0.0, 0.01)
        nn.init.normal_(self.bbox_pred.weight, 0.0, 0.001)
        nn.init.constant_(self.cls_score.bias, 0.0)
        nn.init.constant_(self.bbox_pred.bias, 0.0)
        register_image_normalisation(self, image_mean, image_std)
        self.box_fg_iou_thresh, self.box_bg_iou_thresh = box_fg_iou_thresh, box_bg_iou_thresh
        self.box_batch_size_per_image, self.box_positive_fraction = box_batch_size_per_image, box_positive_fraction
        self.box_score_thresh, self.box_nms_thresh = box_score_thresh, box_nms_thresh
        self.detections_per_img = detections_per_img
        self.bbox_reg_weights = tuple(float(w) for w in bbox_reg_weights)
        self.box_loss_beta = float(box_loss_beta)

    # ------------------------------------------------------------ anchors
    def anchors(self, feature_size, like):
        """All anchors of a feature map of ``feature_size`` (H, W): (H*W*k, 4) in (y, x,
        anchor) order, on the device and in the dtype of the array ``like``."""
        xp = get_array_module(like)
        key = (tuple(feature_size), xp.__name__, str(like.dtype))
        if key not in self._anchor_cache:
            a = np.asarray(raw(grid_anchors(self.base_anchors, tuple(feature_size), self.stride)))
            self._anchor_cache[key] = xp.asarray(a.astype(like.dtype))
        return self._anchor_cache[key]

    # ------------------------------------------------------------ the two stages
    def features(self, images):
        """Normalised images -> backbone feature map (N, C, H/s, W/s)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"{type(self).__name__}: images must be (N, 3, H, W), got shape {tuple(images.shape)}")
        x = (images - self.image_mean) / self.image_std
        return self.backbone(x)

    def rpn_forward(self, features):
        """RPN outputs and their anchors: (logits (N, A, 2), deltas (N, A, 4), anchors (A, 4)),
        A = H*W*k, all rows in (y, x, anchor) order."""
        logits, deltas = self.rpn(features)
        anchors = self.anchors(features.shape[-2:], features.array)
        return logits, deltas, anchors

    def propose(self, logits, deltas, anchors, image_size):
        """The proposals of each image (a list of (P_i, 4) arrays), from the RPN's
        detached outputs: foreground probability, decode, clip, drop tiny, top-n, NMS, top-n."""
        mode = "train" if self.training else "test"
        fg = raw(logits.detach().softmax(-1))[..., 1]
        d = raw(deltas.detach())
        proposals = []
        for i in range(fg.shape[0]):
            boxes, _ = select_proposals(anchors, fg[i], d[i], image_size, self.rpn_pre_nms_top_n[mode],
                                        self.rpn_post_nms_top_n[mode], self.rpn_nms_thresh, self.rpn_min_size)
            proposals.append(raw(boxes))
        return proposals

    def rpn_loss(self, logits, deltas, anchors, targets):
        """(loss_objectness, loss_rpn_box_reg) over anchors sampled per image."""
        xp = get_array_module(anchors)
        n, a = logits.shape[0], anchors.shape[0]
        rows, labels, pos_rows, reg_targets = [], [], [], []
        for i, t in enumerate(targets):
            gt = raw(t["boxes"])
            if gt.shape[0] == 0:                      # no object: every anchor is background
                match_labels = xp.zeros(a, dtype=xp.int64)
                matched = None
            else:
                matched, match_labels = (raw(v) for v in match_boxes(
                    anchors, gt, high=self.rpn_fg_iou_thresh, low=self.rpn_bg_iou_thresh, allow_low_quality=True))
            pos, neg = (raw(v) for v in sample_labels(match_labels, self.rpn_batch_size_per_image,
                                                        self.rpn_positive_fraction))
            rows += [pos + i * a, neg + i * a]
            labels += [xp.ones(len(pos), dtype=xp.int64), xp.zeros(len(neg), dtype=xp.int64)]
            if len(pos):
                pos_rows.append(pos + i * a)
                reg_targets.append(raw(encode_boxes(gt[matched[pos]].astype(anchors.dtype), anchors[pos],
                                                     self.rpn_reg_weights)))
        rows, labels = xp.concatenate(rows), xp.concatenate(labels)
        loss_cls = F.cross_entropy(logits.reshape(n * a, 2)[rows], Tensor(labels))
        if pos_rows:
            pos_rows = xp.concatenate(pos_rows)
            target = Tensor(xp.concatenate(reg_targets).astype(deltas.dtype))
            loss_reg = F.smooth_l1_loss(deltas.reshape(n * a, 4)[pos_rows], target, reduction="sum",
                                        beta=1.0 / 9) / max(len(rows), 1)
        else:
            loss_reg = deltas.sum() * 0.0
        return loss_cls, loss_reg

    def sample_rois(self, proposals, targets):
        """Training RoIs: true boxes added to each image's proposals, matched (IoU >=
        box_fg_iou_thresh: the true class, else background) and sampled.
        Returns (rois (K, 5) [image, x1, y1, x2, y2], class labels (K,), regression
        targets (P, 4) for the first P rows, which are the foreground ones per image,
        and the row indices of those foreground RoIs)."""
        xp = get_array_module(proposals[0])
        rois, labels, fg_rows, reg_targets = [], [], [], []
        offset = 0
        for i, (props, t) in enumerate(zip(proposals, targets)):
            gt, gt_labels = raw(t["boxes"]).astype(props.dtype), raw(t["labels"])
            boxes = xp.concatenate([props, gt]) if gt.shape[0] else props
            if gt.shape[0] == 0:
                match_labels = xp.zeros(boxes.shape[0], dtype=xp.int64)
                matched = xp.zeros(boxes.shape[0], dtype=xp.int64)
            else:
                matched, match_labels = (raw(v) for v in match_boxes(
                    boxes, gt, high=self.box_fg_iou_thresh, low=self.box_bg_iou_thresh, allow_low_quality=False))
            pos, neg = (raw(v) for v in sample_labels(match_labels, self.box_batch_size_per_image,
                                                        self.box_positive_fraction))
            keep = xp.concatenate([pos, neg])
            cls = xp.zeros(len(keep), dtype=xp.int64)
            if len(pos):
                cls[:len(pos)] = gt_labels[matched[pos]]
                reg_targets.append(raw(encode_boxes(gt[matched[pos]], boxes[pos], self.bbox_reg_weights)))
                fg_rows.append(xp.arange(offset, offset + len(pos)))
            batch_col = xp.full((len(keep), 1), i, dtype=boxes.dtype)
            rois.append(xp.concatenate([batch_col, boxes[keep]], axis=1))
            labels.append(cls)
            offset += len(keep)
        fg_rows = xp.concatenate(fg_rows) if fg_rows else xp.zeros(0, dtype=xp.int64)
        reg_targets = xp.concatenate(reg_targets) if reg_targets else xp.zeros((0, 4), dtype=proposals[0].dtype)
        return xp.concatenate(rois), xp.concatenate(labels), reg_targets, fg_rows

    def box_forward(self, features, rois):
        """RoI pooling and the head: (class logits (K, C), box deltas (K, C, 4))."""
        pooled = roi_pool(features, Tensor(rois), self.roi_output_size, 1.0 / self.stride)
        h = self.box_head(pooled.flatten(1))
        return self.cls_score(h), self.bbox_pred(h).reshape(-1, self.num_classes, 4)

    def box_loss(self, class_logits, box_deltas, labels, reg_targets, fg_rows):
        xp = get_array_module(labels)
        loss_cls = F.cross_entropy(class_logits, Tensor(labels))
        if len(fg_rows):
            picked = box_deltas[fg_rows, labels[fg_rows]]                # each fg RoI's own class: (P, 4)
            loss_reg = F.smooth_l1_loss(picked, Tensor(xp.asarray(reg_targets, dtype=box_deltas.dtype)),
                                        reduction="sum", beta=self.box_loss_beta) / labels.shape[0]
        else:
            loss_reg = box_deltas.sum() * 0.0
        return loss_cls, loss_reg

    def postprocess(self, class_logits, box_deltas, proposals, image_size):
        """Per-image detections from the head's outputs on the test proposals."""
        xp = get_array_module(proposals[0])
        probs = raw(class_logits.softmax(-1))
        deltas = raw(box_deltas)
        c = self.num_classes
        out, start = [], 0
        for props in proposals:
            k = props.shape[0]
            p, d = probs[start:start + k], deltas[start:start + k]
            start += k
            # every class's box from its own deltas: (k, C, 4), then drop the background column
            boxes = raw(decode_boxes(d.reshape(-1, 4), xp.repeat(props, c, axis=0), self.bbox_reg_weights))
            boxes = raw(clip_boxes_to_image(boxes, image_size)).reshape(k, c, 4)[:, 1:].reshape(-1, 4)
            out.append(select_detections(boxes, p[:, 1:].reshape(-1), c - 1, self.box_score_thresh,
                                         self.box_nms_thresh, self.detections_per_img, min_size=1e-2))
        return out

    # ------------------------------------------------------------ forward
    def forward(self, images, targets=None):
        """Training: ``model(images, targets)`` -> {'loss_objectness', 'loss_rpn_box_reg',
        'loss_classifier', 'loss_box_reg'}; targets: one dict per image with 'boxes'
        (M, 4) and 'labels' (M,) in 1..num_classes-1. Eval: ``model(images)`` -> one dict
        per image {'boxes', 'scores', 'labels'}."""
        if self.training:
            self._check_targets(images, targets)
        image_size = tuple(images.shape[-2:])
        features = self.features(images)
        logits, deltas, anchors = self.rpn_forward(features)
        proposals = self.propose(logits, deltas, anchors, image_size)
        if not self.training:
            class_logits, box_deltas = self.box_forward(
                features, self._rois(proposals, features.array))
            return self.postprocess(class_logits, box_deltas, proposals, image_size)
        loss_objectness, loss_rpn_box_reg = self.rpn_loss(logits, deltas, anchors, targets)
        rois, labels, reg_targets, fg_rows = self.sample_rois(proposals, targets)
        class_logits, box_deltas = self.box_forward(features, rois)
        loss_classifier, loss_box_reg = self.box_loss(class_logits, box_deltas, labels, reg_targets, fg_rows)
        return {"loss_objectness": loss_objectness, "loss_rpn_box_reg": loss_rpn_box_reg,
                "loss_classifier": loss_classifier, "loss_box_reg": loss_box_reg}

    @staticmethod
    def _rois(proposals, like):
        xp = get_array_module(like)
        return xp.concatenate([xp.concatenate([xp.full((p.shape[0], 1), i, dtype=p.dtype), p], axis=1)
                               for i, p in enumerate(proposals)])

    def _check_targets(self, images, targets):
        """Training targets: one dict per image with 'boxes' (M, 4) and integer 'labels' (M,)
        in 1..num_classes-1; a clear error naming the model and the image otherwise."""
        name = type(self).__name__
        if targets is None:
            raise ValueError(f"{name}: training mode needs targets; call model.eval() for inference")
        if len(targets) != images.shape[0]:
            raise ValueError(f"{name}: {images.shape[0]} images but {len(targets)} targets")
        for i, t in enumerate(targets):
            if "boxes" not in t or "labels" not in t:
                raise ValueError(f"{name}: target {i} must be a dict with 'boxes' and 'labels', got keys {list(t)}")
            b, lab = raw(t["boxes"]), raw(t["labels"])
            if b.ndim != 2 or b.shape[1] != 4 or lab.shape != (b.shape[0],):
                raise ValueError(f"{name}: target {i} has boxes {tuple(b.shape)} and labels {tuple(lab.shape)}; "
                                 "expected (M, 4) and (M,)")
            if lab.dtype.kind not in "iu":
                raise ValueError(f"{name}: target {i} labels must be integers, got {lab.dtype}")
            if lab.shape[0] and (int(lab.min()) < 1 or int(lab.max()) >= self.num_classes):
                raise ValueError(f"{name}: target {i} has labels in [{int(lab.min())}, {int(lab.max())}]; they "
                                 f"must lie in 1..{self.num_classes - 1} (0 is the background)")


# ================================================================ builders
def small_backbone(channels=(16, 32, 64, 128), batch_norm=True):
    """Four 3x3 conv stages for CPU training, 3 -> channels[0] -> ... -> channels[3], each
    conv followed by batch norm and ReLU, and a 2x2 max pool after each of the first
    three: stride 8. Returns (backbone, output channels, stride)."""
    layers, c_in = [], 3
    for i, c_out in enumerate(channels):
        layers.append(nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm2d(c_out))
        layers.append(nn.ReLU(inplace=True))
        if i < 3:
            layers.append(nn.MaxPool2d(2, 2))
        c_in = c_out
    backbone = nn.Sequential(*layers)
    for m in backbone.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return backbone, channels[-1], 8


def register_image_normalisation(module, mean, std):
    """The per-channel ``image_mean`` / ``image_std`` buffers (1, 3, 1, 1) that ``features``
    normalises the [0, 1] RGB images with (not saved: they are the recipe's constants)."""
    for name, value in (("image_mean", mean), ("image_std", std)):
        module.register_buffer(name, td.tensor(np.asarray(value, np.float32).reshape(1, 3, 1, 1)), persistent=False)


def select_detections(boxes, scores, classes, score_thresh, nms_thresh, limit, min_size=None):
    """One image's detections from every (proposal, class) pair: ``boxes`` (k*classes, 4) and
    ``scores`` (k*classes,), proposal-major, for the classes 1..``classes`` (no background).
    Keeps the pairs scoring above ``score_thresh`` (and, with ``min_size``, at least that
    wide and high), NMS per class, the best ``limit``: {'boxes', 'scores', 'labels'}."""
    xp = get_array_module(boxes)
    labels = xp.tile(xp.arange(1, classes + 1, dtype=xp.int64), scores.shape[0] // max(classes, 1))
    keep = xp.nonzero(scores > score_thresh)[0]
    boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
    if min_size is not None:
        keep = raw(remove_small_boxes(boxes, min_size))
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
    keep = raw(batched_nms(boxes, scores, labels, nms_thresh))[:limit]
    return {"boxes": Tensor(boxes[keep]), "scores": Tensor(scores[keep]), "labels": Tensor(labels[keep])}


def backbone_and_head(backbone, options, pooled_features=lambda channels: channels * 7 * 7):
    """The conv layers and fc head shared by Faster R-CNN and Fast R-CNN (and R-CNN's and
    SPP-net's small variants): a dict with backbone, backbone_channels, stride, box_head,
    head_dim. ``backbone='vgg16'``: VGG-16 conv1_1..conv5_3 (stride 16) and fc6/fc7 4096
    with dropout 0.5; ``'small'``: ``small_backbone`` (``channels=``, ``batch_norm=``
    popped from ``options``) and fc 256-256 (``head_dim=``) on ``pooled_features(channels)``
    inputs (a 7x7 RoI pool by default)."""
    if backbone == "vgg16":
        features = make_layers(cfgs["D"])[:-1]                  # conv1_1 .. conv5_3 + ReLU, no pool5
        for m in features.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.constant_(m.bias, 0.0)
        head = nn.Sequential(nn.Linear(512 * 7 * 7, 4096), nn.ReLU(inplace=True), nn.Dropout(0.5),
                             nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(0.5))
        for i in (0, 3):
            nn.init.normal_(head[i].weight, 0.0, 0.01)
            nn.init.constant_(head[i].bias, 0.0)
        return dict(backbone=features, backbone_channels=512, stride=16, box_head=head, head_dim=4096)
    if backbone == "small":
        features, channels, stride = small_backbone(tuple(options.pop("channels", (16, 32, 64, 128))),
                                                    options.pop("batch_norm", True))
        head_dim = options.pop("head_dim", 256)
        head = nn.Sequential(nn.Linear(pooled_features(channels), head_dim), nn.ReLU(inplace=True),
                             nn.Linear(head_dim, head_dim), nn.ReLU(inplace=True))
        return dict(backbone=features, backbone_channels=channels, stride=stride, box_head=head,
                    head_dim=head_dim)
    raise ValueError(f"backbone must be 'vgg16' or 'small', got {backbone!r}")


@register
def faster_rcnn(num_classes=21, backbone="vgg16", **options):
    """Faster R-CNN. ``backbone='vgg16'``: the paper's network (VGG-16 conv5_3, stride 16,
    RPN 512, 9 anchors of 128/256/512 px, RoI pool 7x7, fc6/fc7 4096, dropout 0.5).
    ``backbone='small'``: four conv stages (16-32-64-128 channels, batch norm), stride 8,
    RPN 128, anchors 16/32/64 px (for ~128 x 128 images), RoI pool 7x7, fc 256-256, and
    fewer proposals (300/100 after NMS, 64 RoIs sampled per image); meant for CPU training
    on ``SyntheticDetection`` (``channels=``, ``batch_norm=``, ``head_dim=`` change it).
    Every FasterRCNN keyword (anchor_scales=, rpn_post_nms_top_n_train=, ...) can be overridden.
    """
    try:
        config = backbone_and_head(backbone, options)
    except ValueError as exc:
        raise ValueError(f"faster_rcnn: {exc}") from None
    config["rpn_channels"] = config["backbone_channels"]
    if backbone == "small":
        config.update(anchor_base_size=8, anchor_scales=(2, 4, 8),
                      rpn_pre_nms_top_n_train=600, rpn_pre_nms_top_n_test=300,
                      rpn_post_nms_top_n_train=300, rpn_post_nms_top_n_test=100,
                      box_batch_size_per_image=64, detections_per_img=20)
    config.update(options)
    return FasterRCNN(num_classes=num_classes, **config)
