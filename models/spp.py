"""SPP-net (He, Zhang, Ren & Sun 2014; seed 001): a classifier for inputs of any size.

Only the fully connected layers need a fixed-length input; SPP-net keeps the
convolutions as they are and puts a spatial pyramid pooling layer between the
last convolution and fc6, so an image of any size (no crop, no warp) gives the
same number of features:

    conv1..conv5 (no pool5)  ->  SPP: max over 1x1, 2x2, 4x4 grids (or 1, 2, 3, 6)
    -> C * sum(l*l) features -> fc6 -> fc7 -> fc8

The pooling is ``tinydl.vision.ops.spatial_pyramid_pool`` (adaptive bins: always
l x l bins per level, also for a map smaller than l; see its docstring).

``backbone='zf'`` is the paper's ZF-5 (Zeiler & Fergus's five conv layers, as
``models.alexnet.zfnet``'s): conv1 96@7x7/2 pad 1, ReLU, max pool 3x3/2 (ceil),
LRN; conv2 256@5x5/2, ReLU, pool, LRN; conv3 384, conv4 384, conv5 256 (3x3 pad 1)
-> 13x13x256 for a 224x224 input. With levels (1, 2, 4) the pyramid gives
256 * 21 = 5,376 features; with the paper's 4-level (1, 2, 3, 6) pyramid
256 * 50 = 12,800. fc6/fc7 4096 with ReLU and dropout 0.5, fc8 ``num_classes``.
Parameters (levels (1, 2, 4), 1000 classes): convs 3,726,464, fc6 22,024,192,
fc7 16,781,312, fc8 4,097,000: 46,628,968 in all.

``backbone='small'``: conv 16, pool, conv 32, pool, conv 64 (3x3, pad 1, ReLU),
then the pyramid and fc 128, fc 128, fc ``num_classes``: for CPU experiments
and tests.

Multi-size training (the paper's): train some epochs at one image size, then
continue with the same weights at another; the network needs no change.
"""
import tinydl.nn as nn
from tinydl.vision.ops import SpatialPyramidPooling

from models import register

__all__ = ["SPPNet", "spp_net"]


def _zf5():
    """ZF-5's conv1..conv5 with their ReLUs (pool after conv1/conv2, LRN after the pool)."""
    def lrn():
        return nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)
    return nn.Sequential(
        nn.Conv2d(3, 96, kernel_size=7, stride=2, padding=1), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True), lrn(),
        nn.Conv2d(96, 256, kernel_size=5, stride=2), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True), lrn(),
        nn.Conv2d(256, 384, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(384, 384, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
    ), 256, 4096


def _small():
    return nn.Sequential(
        nn.Conv2d(3, 16, kernel_size=3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2, 2),
        nn.Conv2d(16, 32, kernel_size=3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2, 2),
        nn.Conv2d(32, 64, kernel_size=3, padding=1), nn.ReLU(inplace=True),
    ), 64, 128


_BACKBONES = {"zf": _zf5, "small": _small}


class SPPNet(nn.Module):
    """``features`` -> ``spp`` -> ``classifier`` (fc6-ReLU-dropout-fc7-ReLU-dropout-fc8).
    forward: (N, 3, H, W) of any H, W the features accept -> (N, num_classes)."""

    def __init__(self, num_classes=1000, levels=(1, 2, 4), backbone="zf", dropout=0.5, mode="max"):
        super().__init__()
        if backbone not in _BACKBONES:
            raise ValueError(f"SPPNet: backbone must be one of {sorted(_BACKBONES)}, got {backbone!r}")
        self.features, channels, hidden = _BACKBONES[backbone]()
        self.spp = SpatialPyramidPooling(levels, mode)
        self.classifier = nn.Sequential(
            nn.Linear(self.spp.num_features(channels), hidden), nn.ReLU(inplace=True), nn.Dropout(p=dropout),
            nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Dropout(p=dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward_features(self, x):
        """The fixed-length pyramid vector (N, C * sum(l*l)) of each image."""
        return self.spp(self.features(x))

    def forward(self, x):
        return self.classifier(self.forward_features(x))


@register
def spp_net(num_classes=1000, levels=(1, 2, 4), backbone="zf", dropout=0.5, mode="max"):
    """SPP-net: ZF-5 (or 'small') convs, spatial pyramid pooling, fc6-fc8; any input size."""
    return SPPNet(num_classes, levels, backbone, dropout, mode)
