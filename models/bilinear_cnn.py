"""Bilinear CNN (Lin, RoyChowdhury & Maji 2015; seed 004) for fine-grained classification
(CUB-200-2011 birds: 200 classes that differ in small details).

    VGG16 conv1_1 .. relu5_3 (pool5 removed: keep the 28x28 map of a 448x448 image)
    -> bilinear pooling: z = (1/HW) sum_p x_p x_p^T  (512 x 512 = 262,144 features)
    -> signed square root sign(z) sqrt(|z| + eps) -> L2 normalisation
    -> fc (262,144 -> num_classes)

The pooled outer product records which features fire *together* anywhere in
the image (orderless, like a bag of words, but of feature pairs), which is what
separates two similar birds; the signed root and the L2 norm tame the few huge
entries ("burstiness", seed 004). The pooling is
``tinydl.vision.ops.bilinear_pool``; this is the symmetric B-CNN (both streams
the same network, y = x).

``backbone='small'``: conv 16, pool, conv 32, pool, conv 64, conv 64 (3x3, pad 1,
ReLU), so 64 x 64 = 4,096 bilinear features: for CPU runs and tests.

``pretrained_backbone``: VGG16 weights (a ``models.vgg16`` model, its state_dict
or a ``td.save`` file) for the conv layers (keys ``features.0`` .. ``features.28``,
VGG's own). Lin et al. first train the fc layer alone on the frozen features,
then fine-tune everything (``model.features.requires_grad_(False)`` for stage 1).
The recipe in the notes (003) for CUB: resize to 512, random crop 448.
"""
import tinydl.nn as nn
from tinydl.vision.ops import BilinearPooling

from models import register
from models.fcn import load_vgg16_backbone
from models.vgg import cfgs, make_layers

__all__ = ["BilinearCNN", "bilinear_cnn"]

_SMALL = [16, "M", 32, "M", 64, 64]


class BilinearCNN(nn.Module):
    """``features`` -> ``pool`` (bilinear, signed sqrt, L2) -> ``dropout`` -> ``fc``."""

    def __init__(self, num_classes=200, backbone="vgg16", dropout=0.0, eps=1e-8):
        super().__init__()
        if backbone == "vgg16":
            self.features = make_layers(cfgs["D"])[:-1]       # drop pool5; keys stay features.0..29
            channels = 512
        elif backbone == "small":
            self.features = make_layers(_SMALL)
            channels = _SMALL[-1]
        else:
            raise ValueError(f"BilinearCNN: backbone must be 'vgg16' or 'small', got {backbone!r}")
        for m in self.features.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
        self.pool = BilinearPooling(eps=eps)
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(channels * channels, num_classes)

    def forward(self, x):
        return self.fc(self.dropout(self.pool(self.features(x))))


@register
def bilinear_cnn(num_classes=200, backbone="vgg16", pretrained_backbone=None, dropout=0.0):
    """Symmetric B-CNN: conv features (VGG16 to relu5_3, or 'small'), bilinear pooling,
    signed sqrt, L2 normalisation, fc."""
    model = BilinearCNN(num_classes, backbone, dropout)
    if pretrained_backbone is not None:
        if backbone != "vgg16":
            raise ValueError("bilinear_cnn: pretrained_backbone needs backbone='vgg16'")
        load_vgg16_backbone(model, pretrained_backbone, fc=False)
    return model
