"""MobileNet v1 (Howard et al. 2017; seed 001): depthwise-separable convolutions.

A standard k x k conv from M to N channels costs k*k*M*N weights and
k*k*M*N*H*W multiply-adds. MobileNet splits it in two:
    depthwise  one k x k filter per input channel (``Conv2d(M, M, 3, groups=M)``):
               k*k*M weights, filters space but never mixes channels;
    pointwise  a 1x1 conv mixing the channels (``Conv2d(M, N, 1)``): M*N weights;
each followed by BN and ReLU. Cost ratio: 1/N + 1/k^2, i.e. 8-9x fewer operations
for 3x3 kernels.

Body (224x224 input): conv 3x3/2 32 -> 112, then 13 separable blocks
(64, 128/2, 128, 256/2, 256, 512/2, 5 x 512, 1024/2, 1024; "/2" = stride 2 in the
depthwise conv) -> 7x7x1024, global average pool, fc 1000. 4,231,976 parameters at
width 1.0 (the paper's 4.2M; BN's gamma and beta included, its running statistics
are buffers). The width multiplier alpha scales every layer's channels (about alpha^2
the parameters and cost: 0.75 -> 2.6M, 0.5 -> 1.3M, 0.25 -> 0.5M, as in the paper's
Table 6); the resolution multiplier is simply a smaller input.

Module names: ``features.0`` the first conv (a Sequential conv/BN/ReLU), ``features.1``
... ``features.13`` the ``DepthwiseSeparable`` blocks (``depthwise``, ``bn1``,
``pointwise``, ``bn2``), ``avgpool``, ``dropout``, ``fc``.
"""
import tinydl.nn as nn

from models import register

__all__ = ["DepthwiseSeparable", "MobileNetV1", "mobilenet_v1"]

# (output channels, stride) of the 13 depthwise-separable blocks.
_BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
           (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1)]


class DepthwiseSeparable(nn.Module):
    """Depthwise 3x3 conv (groups = channels) + BN + ReLU, then pointwise 1x1 + BN + ReLU."""

    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__()
        self.depthwise = nn.Conv2d(in_channels, in_channels, kernel_size=3, stride=stride, padding=1,
                                   groups=in_channels, bias=False)
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.pointwise = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        x = self.relu(self.bn1(self.depthwise(x)))
        return self.relu(self.bn2(self.pointwise(x)))


class MobileNetV1(nn.Module):
    """MobileNet v1 with width multiplier ``width_mult`` (alpha)."""

    def __init__(self, num_classes=1000, width_mult=1.0, dropout=0.001, in_channels=3):
        super().__init__()
        if width_mult <= 0:
            raise ValueError(f"MobileNetV1: width_mult must be positive, got {width_mult}")

        def ch(c):
            return max(1, int(round(c * width_mult)))

        c = ch(32)
        layers = [nn.Sequential(nn.Conv2d(in_channels, c, kernel_size=3, stride=2, padding=1, bias=False),
                                nn.BatchNorm2d(c), nn.ReLU(inplace=True))]
        for out, stride in _BLOCKS:
            layers.append(DepthwiseSeparable(c, ch(out), stride))
            c = ch(out)
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        # The reference (TF-slim) model drops with keep_prob 0.999: a token dropout.
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(c, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.avgpool(self.features(x)).flatten(1)
        return self.fc(self.dropout(x))


@register
def mobilenet_v1(num_classes=1000, width_mult=1.0, dropout=0.001, in_channels=3):
    """MobileNet v1 (224x224): 4,231,976 params at width 1.0."""
    return MobileNetV1(num_classes, width_mult, dropout, in_channels)
