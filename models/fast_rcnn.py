"""Fast R-CNN (Girshick 2015; seeds 001 and 004): one network, proposals from outside.

R-CNN runs the CNN once per proposal (2,000 times an image) and trains three
things one after the other (the CNN, the SVMs, the box regressors). SPP-net runs
the convolutions once per image. Fast R-CNN keeps that and makes the rest one
network trained in one stage:

    image -> conv layers (once) -> feature map
    proposals (selective search, given) -> RoI pooling 7x7 on the map -> fc6 -> fc7
        -> cls_score: softmax over num_classes (background included)  (replaces the SVMs)
        -> bbox_pred: 4 deltas per class                               (replaces the regressors)

RoI pooling is SPP-net's pyramid with a single level (7 x 7), and it passes
gradients to the conv layers, so everything trains, convolutions included.

Training (``model(images, proposals, targets)``): the true boxes are added to
each image's proposals; a proposal with IoU >= 0.5 to a true box takes its
class, the rest are background; 64 RoIs per image are sampled, 25% foreground
(the paper: 2 images x 64 RoIs per step). The multi-task loss is

    L = L_cls(p, u) + lambda [u >= 1] L_loc(t^u, v)        (lambda = 1)

with L_cls the softmax cross-entropy and L_loc the smooth L1 loss (beta = 1, the
paper's) summed over the 4 deltas of the true class u, on box targets scaled by
(10, 10, 5, 5) (the paper normalises them to unit variance), over the sampled
RoIs. (The paper also takes background RoIs only from IoU [0.1, 0.5); as
torchvision, every RoI below 0.5 is background here.)

Inference (``model.eval(); model(images, proposals)``): class probabilities and
per-class boxes for every proposal, then per-class NMS (0.3), as Faster R-CNN.
Returns one dict per image {'boxes', 'scores', 'labels'}.

The head, the sampling, the loss and the post-processing are Faster R-CNN's
(``models/faster_rcnn.py``): Faster R-CNN is Fast R-CNN whose proposals come
from its own RPN. Only the proposals' source differs.
"""
import tinydl.nn as nn
from tinydl.ops.math import raw

from models import register
from models.faster_rcnn import _IMAGENET_MEAN, _IMAGENET_STD, FasterRCNN, backbone_and_head

__all__ = ["FastRCNN", "fast_rcnn"]


class FastRCNN(nn.Module):
    """Backbone -> RoI pooling of given proposals -> box head (see the module docstring).

    Args: as ``FasterRCNN``'s without the RPN's: backbone, backbone_channels (unused,
    for symmetry), stride, box_head, head_dim, num_classes, roi_output_size, box_*
    (sampling and inference), detections_per_img, bbox_reg_weights, box_loss_beta
    (1: the paper's smooth L1), image_mean, image_std.
    """

    # Faster R-CNN less its RPN: the same construction and head, borrowed method by method
    _init_detector = FasterRCNN._init_detector
    features = FasterRCNN.features
    sample_rois = FasterRCNN.sample_rois
    box_forward = FasterRCNN.box_forward
    box_loss = FasterRCNN.box_loss
    postprocess = FasterRCNN.postprocess
    _rois = staticmethod(FasterRCNN._rois)
    _check_targets = FasterRCNN._check_targets

    def __init__(self, backbone, backbone_channels, stride, box_head, head_dim, num_classes=21, roi_output_size=7,
                 box_fg_iou_thresh=0.5, box_bg_iou_thresh=0.5, box_batch_size_per_image=64,
                 box_positive_fraction=0.25, box_score_thresh=0.05, box_nms_thresh=0.3,
                 detections_per_img=100, bbox_reg_weights=(10.0, 10.0, 5.0, 5.0), box_loss_beta=1.0,
                 image_mean=_IMAGENET_MEAN, image_std=_IMAGENET_STD):
        super().__init__()
        self._init_detector(backbone, stride, box_head, head_dim, num_classes, roi_output_size,
                            box_fg_iou_thresh, box_bg_iou_thresh, box_batch_size_per_image, box_positive_fraction,
                            box_score_thresh, box_nms_thresh, detections_per_img, bbox_reg_weights, box_loss_beta,
                            image_mean, image_std)

    def _proposals(self, images, proposals):
        """Each image's proposals as an array (P_i, 4) on the images' device, in their dtype."""
        if len(proposals) != images.shape[0]:
            raise ValueError(f"{type(self).__name__}: {images.shape[0]} images but {len(proposals)} proposal sets")
        xp = images._xp
        out = []
        for i, p in enumerate(proposals):
            p = xp.asarray(raw(p), dtype=images.dtype)
            if p.ndim != 2 or p.shape[1] != 4:
                raise ValueError(f"{type(self).__name__}: proposals[{i}] must be (P, 4) boxes (x1, y1, x2, y2), "
                                 f"got shape {tuple(p.shape)}")
            out.append(p)
        return out

    def forward(self, images, proposals, targets=None):
        """Training: ``model(images, proposals, targets)`` -> {'loss_classifier', 'loss_box_reg'};
        ``proposals``: one (P_i, 4) array or Tensor per image (e.g. ``selective_search``'s);
        targets as FasterRCNN's. Eval: ``model(images, proposals)`` -> one dict per image
        {'boxes', 'scores', 'labels'}."""
        proposals = self._proposals(images, proposals)
        if self.training:
            self._check_targets(images, targets)
        features = self.features(images)
        if not self.training:
            class_logits, box_deltas = self.box_forward(features, self._rois(proposals, features.array))
            return self.postprocess(class_logits, box_deltas, proposals, tuple(images.shape[-2:]))
        rois, labels, reg_targets, fg_rows = self.sample_rois(proposals, targets)
        class_logits, box_deltas = self.box_forward(features, rois)
        loss_classifier, loss_box_reg = self.box_loss(class_logits, box_deltas, labels, reg_targets, fg_rows)
        return {"loss_classifier": loss_classifier, "loss_box_reg": loss_box_reg}


@register
def fast_rcnn(num_classes=21, backbone="vgg16", **options):
    """Fast R-CNN. ``backbone='vgg16'``: the paper's VGG-16 (conv5_3, stride 16, RoI pool
    7x7, fc6/fc7 4096); ``'small'``: Faster R-CNN's small stride-8 backbone and fc 256-256
    (``channels=``, ``batch_norm=``, ``head_dim=``), 20 detections per image. Every
    FastRCNN keyword can be overridden."""
    try:
        config = backbone_and_head(backbone, options)
    except ValueError as exc:
        raise ValueError(f"fast_rcnn: {exc}") from None
    if backbone == "small":
        config["detections_per_img"] = 20
    config.update(options)
    return FastRCNN(num_classes=num_classes, **config)
