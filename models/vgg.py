"""VGG (Simonyan & Zisserman 2014; seed 001): configurations A (VGG-11), B (13),
D (16), E (19), with or without batch norm, and the fully convolutional variant.

All convolutions are 3x3, stride 1, padding 1 (they keep the size); each 'M' is a
2x2/2 max pool (halves it). Five stages take a 224x224 input to 7x7x512; then
fc6 4096, fc7 4096 (ReLU + dropout 0.5), fc8 1000. Module names are
torchvision's, so the state_dict keys are too: ``features.N`` (conv, [bn,] ReLU,
pool in order; e.g. ``features.28.weight`` is VGG-16's last conv),
``avgpool`` (AdaptiveAvgPool2d((7, 7)): the identity at 224, lets smaller or larger
inputs reach the fc layers), ``classifier.0`` / ``.3`` / ``.6`` (fc6 / fc7 / fc8).

Parameters (weights + biases; BN adds 2 per conv channel):
    vgg11 132,863,336   vgg13 133,047,848   vgg16 138,357,544   vgg19 143,667,240
    vgg11_bn 132,868,840  vgg13_bn 133,053,736  vgg16_bn 138,365,992  vgg19_bn 143,678,248
102,764,544 of them are fc6's 25088x4096 weight: the convolutions hold under 20M.

``fully_conv=True`` is the paper's dense evaluation (and FCN's starting point):
fc6 becomes a 7x7 conv (512 -> 4096, no padding), fc7 and fc8 1x1 convs, and there is
no avgpool, so an input of any size >= 224 gives a spatial score map
(N, num_classes, H/32 - 6, W/32 - 6) (average it for one score per image). The fc
weights reshape into the conv weights exactly (``vgg_fc_to_conv``): fc6's row for
output o reads the 7x7x512 pool5 map flattened in (c, h, w) order, which is the
layout of a (4096, 512, 7, 7) conv kernel.

Initialisation as torchvision: conv weights kaiming_normal (fan_out, ReLU), biases
0; BN weight 1, bias 0; linear (or fc-as-conv) weights N(0, 0.01^2), biases 0.
"""
import tinydl.nn as nn

from models import register

__all__ = ["VGG", "cfgs", "make_layers", "vgg_fc_to_conv", "vgg11", "vgg11_bn", "vgg13", "vgg13_bn",
           "vgg16", "vgg16_bn", "vgg19", "vgg19_bn"]

cfgs = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
          512, 512, 512, 512, "M"],
}

# fc6/fc7/fc8 sit at these positions of ``classifier`` in both variants.
_FC_INDICES = (0, 3, 6)


def make_layers(cfg, batch_norm=False, in_channels=3, first_padding=1, ceil_mode=False):
    """The conv part: for each number a 3x3 conv (+ BN) + ReLU, for each 'M' a 2x2 max pool.
    FCN pads conv1_1 by ``first_padding`` = 100 and pools in ceil mode, as Caffe did."""
    layers = []
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=ceil_mode))
            continue
        layers.append(nn.Conv2d(in_channels, v, kernel_size=3, padding=first_padding if not layers else 1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(v))
        layers.append(nn.ReLU(inplace=True))
        in_channels = v
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """``features`` -> ``avgpool`` -> ``classifier`` (fc6-ReLU-dropout-fc7-ReLU-dropout-fc8),
    or with ``fully_conv`` the same three layers as convolutions and a score map out."""

    def __init__(self, features, num_classes=1000, init_weights=True, dropout=0.5, fully_conv=False):
        super().__init__()
        self.features = features
        self.fully_conv = fully_conv
        if fully_conv:
            self.avgpool = nn.Identity()
            fc6 = nn.Conv2d(512, 4096, kernel_size=7)
            fc7 = nn.Conv2d(4096, 4096, kernel_size=1)
            fc8 = nn.Conv2d(4096, num_classes, kernel_size=1)
        else:
            self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
            fc6 = nn.Linear(512 * 7 * 7, 4096)
            fc7 = nn.Linear(4096, 4096)
            fc8 = nn.Linear(4096, num_classes)
        self.classifier = nn.Sequential(
            fc6, nn.ReLU(inplace=True), nn.Dropout(p=dropout),
            fc7, nn.ReLU(inplace=True), nn.Dropout(p=dropout),
            fc8,
        )
        if init_weights:
            self._init_weights()

    def _init_weights(self):
        fcs = {id(self.classifier[i]) for i in _FC_INDICES}
        for m in self.modules():
            if id(m) in fcs:
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def forward(self, x):
        x = self.features(x)
        if self.fully_conv:
            if x.shape[-2] < 7 or x.shape[-1] < 7:
                raise ValueError(f"VGG(fully_conv=True): the conv5 map is {tuple(x.shape[-2:])}, smaller than "
                                 f"fc6's 7x7 kernel; the input must be at least 224x224, got "
                                 f"{tuple(x.shape[-2:])} after pooling by 32")
            return self.classifier(x)
        x = self.avgpool(x)
        return self.classifier(x.flatten(1))


def vgg_fc_to_conv(state_dict):
    """A VGG state_dict with fc6/fc7/fc8 reshaped for ``fully_conv=True``:
    classifier.0.weight (4096, 25088) -> (4096, 512, 7, 7), classifier.3.weight
    (4096, 4096) -> (4096, 4096, 1, 1), classifier.6.weight (C, 4096) -> (C, 4096, 1, 1).
    Biases and everything else are kept as they are. (Weights already in conv
    shape pass through unchanged.)"""
    out = dict(state_dict)
    shapes = {0: (512, 7, 7), 3: (4096, 1, 1), 6: (4096, 1, 1)}
    for i in _FC_INDICES:
        key = f"classifier.{i}.weight"
        if key not in out:
            raise KeyError(f"vgg_fc_to_conv: {key!r} is missing: not a VGG state_dict?")
        w = out[key]
        if w.ndim == 2:
            if w.shape[1] != _prod(shapes[i]):
                raise ValueError(f"vgg_fc_to_conv: {key} has shape {tuple(w.shape)}, expected (*, "
                                 f"{_prod(shapes[i])}) to reshape into (*, {', '.join(map(str, shapes[i]))})")
            out[key] = w.reshape((w.shape[0],) + shapes[i])
    return out


def _prod(t):
    p = 1
    for v in t:
        p *= v
    return p


def _vgg(cfg, batch_norm, num_classes, dropout, fully_conv, init_weights):
    return VGG(make_layers(cfgs[cfg], batch_norm), num_classes, init_weights, dropout, fully_conv)


@register
def vgg11(num_classes=1000, dropout=0.5, fully_conv=False, init_weights=True):
    """VGG-11 (configuration A): 132,863,336 params."""
    return _vgg("A", False, num_classes, dropout, fully_conv, init_weights)


@register
def vgg11_bn(num_classes=1000, dropout=0.5, fully_conv=False, init_weights=True):
    """VGG-11 with batch norm after every conv: 132,868,840 params."""
    return _vgg("A", True, num_classes, dropout, fully_conv, init_weights)


@register
def vgg13(num_classes=1000, dropout=0.5, fully_conv=False, init_weights=True):
    """VGG-13 (configuration B): 133,047,848 params."""
    return _vgg("B", False, num_classes, dropout, fully_conv, init_weights)


@register
def vgg13_bn(num_classes=1000, dropout=0.5, fully_conv=False, init_weights=True):
    """VGG-13 with batch norm: 133,053,736 params."""
    return _vgg("B", True, num_classes, dropout, fully_conv, init_weights)


@register
def vgg16(num_classes=1000, dropout=0.5, fully_conv=False, init_weights=True):
    """VGG-16 (configuration D): 138,357,544 params."""
    return _vgg("D", False, num_classes, dropout, fully_conv, init_weights)


@register
def vgg16_bn(num_classes=1000, dropout=0.5, fully_conv=False, init_weights=True):
    """VGG-16 with batch norm: 138,365,992 params."""
    return _vgg("D", True, num_classes, dropout, fully_conv, init_weights)


@register
def vgg19(num_classes=1000, dropout=0.5, fully_conv=False, init_weights=True):
    """VGG-19 (configuration E): 143,667,240 params."""
    return _vgg("E", False, num_classes, dropout, fully_conv, init_weights)


@register
def vgg19_bn(num_classes=1000, dropout=0.5, fully_conv=False, init_weights=True):
    """VGG-19 with batch norm: 143,678,248 params."""
    return _vgg("E", True, num_classes, dropout, fully_conv, init_weights)
