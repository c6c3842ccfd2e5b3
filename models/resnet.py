"""Residual networks (He et al. 2015; seeds 000, 001, 002, 003) and their plain twins.

A residual block learns F(x) = H(x) - x and outputs relu(F(x) + shortcut(x)): if the
identity is the best mapping, the layers only have to push F to zero, which is
easier than fitting an identity with a stack of non-linear layers. That is why a
deeper ResNet trains at least as well as a shallower one, while a deeper *plain*
net (same layers, no shortcuts) trains worse (the degradation problem).

Blocks (conv -> BN -> ReLU; BN after every conv, before the ReLU, so convs have no bias):
    BasicBlock   3x3 -> 3x3, + shortcut, ReLU                    (ResNet-18/34, CIFAR)
    Bottleneck   1x1 (reduce) -> 3x3 -> 1x1 (expand x4), + shortcut, ReLU  (50/101/152)
The first block of a stage halves the size with a stride-2 conv (torchvision's
"v1.5" puts the Bottleneck's stride on its 3x3 conv, the paper on the first 1x1;
parameters and keys are the same).

Shortcut options (the paper's A/B/C, the notes' "具体地,A、B是怎么实现的?"), chosen
by ``shortcut=``:
    'A'  identity; where the dimensions change, subsample by 2 (x[:, :, ::2, ::2])
         and pad the new channels with zeros: no parameters at all;
    'B'  identity, except a projection (1x1 conv, stride 2, + BN) where the
         dimensions change (torchvision's ``downsample``);
    'C'  a projection on every block;
    None a plain network: no shortcut, y = relu(F(x)).

ImageNet family (224x224: conv1 7x7/2 64, BN, ReLU, max pool 3x3/2, layer1-4 with
64/128/256/512 channels (x4 for bottlenecks), global average pool, fc), with
torchvision's module names -- conv1, bn1, layer1.0.conv1, layer1.0.bn1,
layer2.0.downsample.0 (the projection conv), .downsample.1 (its BN), fc -- so the
state_dict keys equal torchvision's. Parameters (shortcut 'B'):
    resnet18 11,689,512  resnet34 21,797,672  resnet50 25,557,032
    resnet101 44,549,160  resnet152 60,192,808
``plain18`` / ``plain34`` are the paper's ImageNet plain nets.

CIFAR family (32x32, section 4.2 of the paper): conv 3x3 16, then three stages of n
BasicBlocks with 16, 32, 64 channels on 32x32, 16x16, 8x8 maps, global average
pool, fc 10: 6n + 2 layers. ``resnet20/32/44/56/110/1202`` (n = 3, 5, 7, 9, 18, 200)
use shortcut 'A' as in the paper (ResNet-20: 269,722 parameters, the paper's
"0.27M"); ``plain20/32/44/56`` are the plain twins.

Initialisation as torchvision: convs kaiming_normal (fan_out, ReLU); BN weight 1,
bias 0 (``zero_init_residual`` zeroes each block's last BN weight so every block
starts as the identity); fc PyTorch's default.
"""
import tinydl.nn as nn
import tinydl.nn.functional as F

from models import register

__all__ = ["BasicBlock", "Bottleneck", "ShortcutA", "ResNet", "resnet18", "resnet34", "resnet50",
           "resnet101", "resnet152", "plain18", "plain34", "resnet20", "resnet32", "resnet44", "resnet56",
           "resnet110", "resnet1202", "plain20", "plain32", "plain44", "plain56"]

_SHORTCUTS = ("A", "B", "C", None)


def conv3x3(in_planes, out_planes, stride=1):
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes, out_planes, stride=1):
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class ShortcutA(nn.Module):
    """Option A: the identity, subsampled by ``stride`` and zero-padded from
    ``in_planes`` to ``out_planes`` channels. Parameter-free: its gradient passes the
    upstream gradient of the kept channels to the sampled positions and drops the
    rest (what slicing and padding do in their backward)."""

    def __init__(self, in_planes, out_planes, stride):
        super().__init__()
        if out_planes < in_planes:
            raise ValueError(f"ShortcutA: cannot shrink {in_planes} channels to {out_planes} by zero-padding")
        self.in_planes = in_planes
        self.out_planes = out_planes
        self.stride = stride

    def forward(self, x):
        if self.stride != 1:
            x = x[:, :, ::self.stride, ::self.stride]
        extra = self.out_planes - self.in_planes
        if extra:
            x = F.pad(x, (0, 0, 0, 0, 0, extra))     # (W left/right, H top/bottom, C front/back)
        return x

    def extra_repr(self):
        return f"{self.in_planes}, {self.out_planes}, stride={self.stride}"


def _shortcut(kind, in_planes, out_planes, stride):
    """The ``downsample`` module of a block (None means the plain identity, or no shortcut)."""
    changes = stride != 1 or in_planes != out_planes
    if kind == "C" or (kind == "B" and changes):
        return nn.Sequential(conv1x1(in_planes, out_planes, stride), nn.BatchNorm2d(out_planes))
    if kind == "A" and changes:
        return ShortcutA(in_planes, out_planes, stride)
    return None


class BasicBlock(nn.Module):
    """relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)); ``residual=False``: no shortcut."""

    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, residual=True):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride
        self.residual = residual

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.residual:
            out = out + (x if self.downsample is None else self.downsample(x))
        return self.relu(out)


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (stride here, torchvision's v1.5) -> 1x1 expand (x4), + shortcut."""

    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, residual=True):
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride
        self.residual = residual

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.residual:
            out = out + (x if self.downsample is None else self.downsample(x))
        return self.relu(out)


class ResNet(nn.Module):
    """A stem, ``len(layers)`` stages of blocks (the first block of every stage but the
    first has stride 2 and twice the channels), global average pooling, fc.

    ``stem='imagenet'``: conv 7x7/2 + BN + ReLU + max pool 3x3/2 (224 -> 56);
    ``stem='cifar'``: conv 3x3 + BN + ReLU (32 -> 32; ``maxpool`` is the identity).
    """

    def __init__(self, block, layers, num_classes=1000, widths=(64, 128, 256, 512), stem="imagenet",
                 shortcut="B", zero_init_residual=False, in_channels=3):
        super().__init__()
        if shortcut not in _SHORTCUTS:
            raise ValueError(f"ResNet: shortcut must be 'A', 'B', 'C' or None (plain), got {shortcut!r}")
        if len(widths) != len(layers):
            raise ValueError(f"ResNet: {len(layers)} stages but {len(widths)} widths")
        self.shortcut = shortcut
        self.inplanes = widths[0]
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_channels, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        elif stem == "cifar":
            self.conv1 = conv3x3(in_channels, self.inplanes)
            self.maxpool = nn.Identity()
        else:
            raise ValueError(f"ResNet: stem must be 'imagenet' or 'cifar', got {stem!r}")
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.num_stages = len(layers)
        for i, (width, blocks) in enumerate(zip(widths, layers)):
            setattr(self, f"layer{i + 1}", self._make_layer(block, width, blocks, stride=1 if i == 0 else 2))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(widths[-1] * block.expansion, num_classes)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.constant_(m.bn3.weight, 0)
                elif isinstance(m, BasicBlock):
                    nn.init.constant_(m.bn2.weight, 0)

    def _make_layer(self, block, planes, blocks, stride):
        out = planes * block.expansion
        residual = self.shortcut is not None
        layers = [block(self.inplanes, planes, stride, _shortcut(self.shortcut, self.inplanes, out, stride),
                        residual)]
        self.inplanes = out
        for _ in range(1, blocks):
            layers.append(block(self.inplanes, planes, 1, _shortcut(self.shortcut, out, out, 1), residual))
        return nn.Sequential(*layers)

    def forward_features(self, x):
        """Everything before the pooling: (N, C, H/32, W/32) for the ImageNet stem."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return x

    def forward(self, x):
        x = self.forward_features(x)
        return self.fc(self.avgpool(x).flatten(1))


# ---------------------------------------------------------------- ImageNet family
def _imagenet(block, layers, num_classes, shortcut, zero_init_residual):
    return ResNet(block, layers, num_classes, shortcut=shortcut, zero_init_residual=zero_init_residual)


@register
def resnet18(num_classes=1000, shortcut="B", zero_init_residual=False):
    """ResNet-18 (BasicBlock x [2, 2, 2, 2]): 11,689,512 params with shortcut 'B'."""
    return _imagenet(BasicBlock, [2, 2, 2, 2], num_classes, shortcut, zero_init_residual)


@register
def resnet34(num_classes=1000, shortcut="B", zero_init_residual=False):
    """ResNet-34 (BasicBlock x [3, 4, 6, 3]): 21,797,672 params with shortcut 'B'."""
    return _imagenet(BasicBlock, [3, 4, 6, 3], num_classes, shortcut, zero_init_residual)


@register
def resnet50(num_classes=1000, shortcut="B", zero_init_residual=False):
    """ResNet-50 (Bottleneck x [3, 4, 6, 3]): 25,557,032 params with shortcut 'B'."""
    return _imagenet(Bottleneck, [3, 4, 6, 3], num_classes, shortcut, zero_init_residual)


@register
def resnet101(num_classes=1000, shortcut="B", zero_init_residual=False):
    """ResNet-101 (Bottleneck x [3, 4, 23, 3]): 44,549,160 params with shortcut 'B'."""
    return _imagenet(Bottleneck, [3, 4, 23, 3], num_classes, shortcut, zero_init_residual)


@register
def resnet152(num_classes=1000, shortcut="B", zero_init_residual=False):
    """ResNet-152 (Bottleneck x [3, 8, 36, 3]): 60,192,808 params with shortcut 'B'."""
    return _imagenet(Bottleneck, [3, 8, 36, 3], num_classes, shortcut, zero_init_residual)


@register
def plain18(num_classes=1000):
    """The paper's plain-18: ResNet-18's layers without shortcuts."""
    return _imagenet(BasicBlock, [2, 2, 2, 2], num_classes, None, False)


@register
def plain34(num_classes=1000):
    """The paper's plain-34: ResNet-34's layers without shortcuts."""
    return _imagenet(BasicBlock, [3, 4, 6, 3], num_classes, None, False)


# ---------------------------------------------------------------- CIFAR family
def _cifar(depth, num_classes, shortcut, in_channels=3, zero_init_residual=False):
    if (depth - 2) % 6 != 0:
        raise ValueError(f"CIFAR ResNet: depth must be 6n + 2, got {depth}")
    n = (depth - 2) // 6
    return ResNet(BasicBlock, [n, n, n], num_classes, widths=(16, 32, 64), stem="cifar", shortcut=shortcut,
                  zero_init_residual=zero_init_residual, in_channels=in_channels)


@register
def resnet20(num_classes=10, shortcut="A", in_channels=3):
    """CIFAR ResNet-20 (n = 3): 269,722 params with shortcut 'A' (the paper's 0.27M)."""
    return _cifar(20, num_classes, shortcut, in_channels)


@register
def resnet32(num_classes=10, shortcut="A", in_channels=3):
    """CIFAR ResNet-32 (n = 5): 0.46M params."""
    return _cifar(32, num_classes, shortcut, in_channels)


@register
def resnet44(num_classes=10, shortcut="A", in_channels=3):
    """CIFAR ResNet-44 (n = 7): 0.66M params."""
    return _cifar(44, num_classes, shortcut, in_channels)


@register
def resnet56(num_classes=10, shortcut="A", in_channels=3):
    """CIFAR ResNet-56 (n = 9): 0.85M params."""
    return _cifar(56, num_classes, shortcut, in_channels)


@register
def resnet110(num_classes=10, shortcut="A", in_channels=3):
    """CIFAR ResNet-110 (n = 18): 1.7M params."""
    return _cifar(110, num_classes, shortcut, in_channels)


@register
def resnet1202(num_classes=10, shortcut="A", in_channels=3):
    """CIFAR ResNet-1202 (n = 200): 19.4M params (the paper's over-fitting example)."""
    return _cifar(1202, num_classes, shortcut, in_channels)


@register
def plain20(num_classes=10, in_channels=3):
    """CIFAR plain-20: ResNet-20 without shortcuts."""
    return _cifar(20, num_classes, None, in_channels)


@register
def plain32(num_classes=10, in_channels=3):
    """CIFAR plain-32."""
    return _cifar(32, num_classes, None, in_channels)


@register
def plain44(num_classes=10, in_channels=3):
    """CIFAR plain-44."""
    return _cifar(44, num_classes, None, in_channels)


@register
def plain56(num_classes=10, in_channels=3):
    """CIFAR plain-56 (the paper's degradation example: worse than plain-20 on CIFAR-10)."""
    return _cifar(56, num_classes, None, in_channels)
