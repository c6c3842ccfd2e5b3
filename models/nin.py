"""Network in Network (Lin, Chen & Yan 2013; seed 001).

An *mlpconv* layer is a conv followed by a small MLP shared across positions: a
k x k conv and two 1x1 convs, each with a ReLU. A 1x1 conv is a fully connected
layer applied to every pixel's channel vector, so the stack computes a non-linear
function of each k x k patch instead of a linear filter. The last mlpconv outputs
one map per class and **global average pooling** turns each map into one score:
no fully connected layer, no parameters there, any input size.

``config='cifar'`` (32x32x3, the paper's CIFAR-10 model, num_classes 10 by default):
    mlpconv 5x5 192 / 1x1 160 / 1x1 96,   max pool 3x3/2,  dropout 0.5   -> 16x16
    mlpconv 5x5 192 / 1x1 192 / 1x1 192,  avg pool 3x3/2,  dropout 0.5   -> 8x8
    mlpconv 3x3 192 / 1x1 192 / 1x1 C,    global average pool            -> C
``config='imagenet'`` (224x224x3, the authors' ImageNet model, 1000 classes):
    mlpconv 11x11/4 96 / 1x1 96 / 1x1 96,       max pool 3x3/2   -> 27x27
    mlpconv 5x5 256 / 1x1 256 / 1x1 256,        max pool 3x3/2   -> 13x13
    mlpconv 3x3 384 / 1x1 384 / 1x1 384,        max pool 3x3/2, dropout 0.5 -> 6x6
    mlpconv 3x3 1024 / 1x1 1024 / 1x1 C,        global average pool        -> C
Pools use ceil_mode, as the authors' Caffe models did (32 -> 16 -> 8 on CIFAR).
The last 1x1 conv keeps its ReLU before the average, as in the original models
(the class maps are non-negative "confidence maps").

Module names: ``features`` (a Sequential: mlpconv blocks, pools, dropouts), each
``MlpConv`` a Sequential of conv, ReLU, 1x1 conv, ReLU, 1x1 conv, ReLU;
``avgpool`` (AdaptiveAvgPool2d(1)); the output is (N, num_classes).
"""
import tinydl.nn as nn

from models import register

__all__ = ["MlpConv", "NIN", "nin"]


class MlpConv(nn.Sequential):
    """k x k conv + ReLU, then 1x1 conv + ReLU twice: a per-patch MLP (indices 0, 2, 4 are the convs)."""

    def __init__(self, in_channels, channels, kernel_size, stride=1, padding=0):
        c1, c2, c3 = channels
        super().__init__(
            nn.Conv2d(in_channels, c1, kernel_size, stride=stride, padding=padding), nn.ReLU(inplace=True),
            nn.Conv2d(c1, c2, kernel_size=1), nn.ReLU(inplace=True),
            nn.Conv2d(c2, c3, kernel_size=1), nn.ReLU(inplace=True),
        )


class NIN(nn.Module):
    """Network in Network: stacked mlpconv blocks and global average pooling."""

    def __init__(self, num_classes=None, config="cifar", in_channels=3, dropout=0.5):
        super().__init__()
        if config == "cifar":
            num_classes = 10 if num_classes is None else num_classes
            layers = [
                MlpConv(in_channels, (192, 160, 96), 5, padding=2),
                nn.MaxPool2d(3, stride=2, ceil_mode=True), nn.Dropout(dropout),
                MlpConv(96, (192, 192, 192), 5, padding=2),
                nn.AvgPool2d(3, stride=2, ceil_mode=True), nn.Dropout(dropout),
                MlpConv(192, (192, 192, num_classes), 3, padding=1),
            ]
        elif config == "imagenet":
            num_classes = 1000 if num_classes is None else num_classes
            layers = [
                MlpConv(in_channels, (96, 96, 96), 11, stride=4),
                nn.MaxPool2d(3, stride=2, ceil_mode=True),
                MlpConv(96, (256, 256, 256), 5, padding=2),
                nn.MaxPool2d(3, stride=2, ceil_mode=True),
                MlpConv(256, (384, 384, 384), 3, padding=1),
                nn.MaxPool2d(3, stride=2, ceil_mode=True), nn.Dropout(dropout),
                MlpConv(384, (1024, 1024, num_classes), 3, padding=1),
            ]
        else:
            raise ValueError(f"NIN: config must be 'cifar' or 'imagenet', got {config!r}")
        self.config = config
        self.num_classes = num_classes
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x):
        return self.avgpool(self.features(x)).flatten(1)


@register
def nin(num_classes=None, config="cifar", in_channels=3, dropout=0.5):
    """Network in Network; ``config='cifar'`` (32x32, 10 classes) or ``'imagenet'`` (224x224, 1000)."""
    return NIN(num_classes, config, in_channels, dropout)
