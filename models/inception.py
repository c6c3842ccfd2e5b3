"""The Inception family (seed 001): GoogLeNet / Inception v1, Inception v2
(BN-Inception) and Inception v3.

An Inception module runs several branches on the same input -- 1x1, 1x1 then 3x3,
1x1 then 5x5 (or two 3x3), 3x3 pooling then 1x1 -- and concatenates their outputs
along the channels (``td.cat(..., 1)``). The 1x1 convolutions before the big
kernels reduce the channels first ("dimension reduction"), which is what keeps the
network cheap: the notes' example, 192 -> 256 channels on 32x32 with a 3x3 conv,
costs 452,984,832 multiplications directly and 245,366,784 through a 96-channel
1x1 reduction.

``googlenet``     Szegedy et al. 2014 as in the paper's Table 1 and the notes: 224x224
                  input; stem conv 7x7/2 64, max pool 3x3/2, LRN, conv 1x1 64, conv 3x3
                  192, LRN, max pool; inception 3a-3b, pool, 4a-4e, pool, 5a-5b; global
                  average pool 7x7, dropout 0.4, linear 1024 -> 1000. Every conv has a
                  bias and a ReLU, no batch norm. 6,998,552 parameters without the
                  auxiliary classifiers.
                  Auxiliary classifiers on the outputs of 4a and 4d (average pool 5x5/3
                  -> 4x4, conv 1x1 128, fc 1024, dropout 0.7, linear): in training mode
                  with ``aux_logits=True`` the forward returns
                  ``GoogLeNetOutputs(logits, aux_logits2, aux_logits1)`` (torchvision's
                  order and names); in eval mode only the logits. The paper adds their
                  losses with weight 0.3: ``loss = ce(logits) + 0.3 * (ce(aux1) + ce(aux2))``.
``googlenet_tv``  torchvision's GoogLeNet: batch norm (eps 0.001) after every conv and
                  no conv biases, no LRN, and -- a known quirk of the weights it was
                  ported with -- a 3x3 conv where the paper's "5x5" branch has 5x5.
                  Same module names, so torchvision's state_dict keys
                  (conv1.conv.weight, inception3a.branch2.1.bn.running_var,
                  aux1.fc2.weight, fc.weight ...). 6,624,904 parameters with
                  ``aux_logits=False`` (torchvision's published figure: the weights
                  are shipped without the aux heads), 13,004,888 with them.
``inception_v2``  BN-Inception (Ioffe & Szegedy 2015, Figure 5): GoogLeNet with batch
                  norm after every conv, each 5x5 replaced by two 3x3 convs, average
                  pooling in most pool branches, stride-2 modules (3c, 4e) instead of
                  separate pooling layers between stages, and no dropout or aux heads.
                  Module 4c's pool projection is 96 (the paper's table says 128, which
                  would not add up to the 576 channels it lists for 4c's output).
``inception_v3``  Szegedy et al. 2015 ("Rethinking ..."), torchvision's Inception3: 299x299
                  input; factorised convolutions (5x5 -> two 3x3; n x n -> 1xn then nx1,
                  n = 7 on the 17x17 grid), grid reduction by parallel stride-2 conv and
                  pooling branches, batch norm (eps 0.001), an aux head on the 17x17 grid
                  (``InceptionOutputs(logits, aux_logits)`` in training). torchvision's
                  keys (Conv2d_1a_3x3.conv.weight, Mixed_7c.branch_pool.conv.weight,
                  AuxLogits.fc.weight ...); 27,161,264 parameters with the aux head,
                  23,834,568 without.
"""
from collections import namedtuple

import tinydl as td
import tinydl.nn as nn
import tinydl.nn.functional as F

from models import register

__all__ = ["BasicConv2d", "GoogLeNet", "GoogLeNetOutputs", "Inception", "InceptionAux", "InceptionV2",
           "Inception3", "InceptionOutputs", "googlenet", "googlenet_tv", "inception_v2", "inception_v3"]

GoogLeNetOutputs = namedtuple("GoogLeNetOutputs", ["logits", "aux_logits2", "aux_logits1"])
InceptionOutputs = namedtuple("InceptionOutputs", ["logits", "aux_logits"])


class BasicConv2d(nn.Module):
    """conv -> [batch norm] -> ReLU. With ``batch_norm`` the conv has no bias (BN's
    beta replaces it: a bias before BN's mean subtraction would cancel out)."""

    def __init__(self, in_channels, out_channels, batch_norm=True, eps=0.001, **kwargs):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=not batch_norm, **kwargs)
        if batch_norm:
            self.bn = nn.BatchNorm2d(out_channels, eps=eps)
        else:
            self.bn = None
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return self.relu(x)


def _init_trunc_normal(model, default_std):
    """Conv and linear weights ~ N(0, std^2) cut at +-2 (absolute, as torchvision calls
    trunc_normal_(a=-2, b=2)); a layer's own ``stddev`` attribute overrides the std.
    Conv biases 0; BN weight 1, bias 0."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            std = getattr(m, "stddev", default_std)
            nn.init.trunc_normal_(m.weight, mean=0.0, std=std, a=-2, b=2)
            if isinstance(m, nn.Conv2d) and m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)


def _transform_input(x):
    """Inputs normalised with ImageNet's mean/std -> the (x - 0.5) / 0.5 scaling the
    ported Google weights expect (torchvision's ``transform_input``)."""
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    chans = [x[:, c:c + 1] * (std[c] / 0.5) + (mean[c] - 0.5) / 0.5 for c in range(3)]
    return td.cat(chans, 1)


# ================================================================ Inception v1 / GoogLeNet
class Inception(nn.Module):
    """GoogLeNet's module: four branches concatenated (1x1 | 1x1-3x3 | 1x1-5x5 | pool-1x1).
    ``branch3_kernel`` is 5 in the paper, 3 in torchvision's port."""

    def __init__(self, in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj, batch_norm=False,
                 branch3_kernel=5):
        super().__init__()
        bn = batch_norm
        k = branch3_kernel
        self.branch1 = BasicConv2d(in_channels, ch1x1, bn, kernel_size=1)
        self.branch2 = nn.Sequential(BasicConv2d(in_channels, ch3x3red, bn, kernel_size=1),
                                     BasicConv2d(ch3x3red, ch3x3, bn, kernel_size=3, padding=1))
        self.branch3 = nn.Sequential(BasicConv2d(in_channels, ch5x5red, bn, kernel_size=1),
                                     BasicConv2d(ch5x5red, ch5x5, bn, kernel_size=k, padding=k // 2))
        self.branch4 = nn.Sequential(nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True),
                                     BasicConv2d(in_channels, pool_proj, bn, kernel_size=1))

    def forward(self, x):
        return td.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class InceptionAux(nn.Module):
    """GoogLeNet's auxiliary classifier: 4x4 average pool, 1x1 conv 128, fc 1024 + ReLU,
    dropout 0.7, linear. The paper pools 5x5/3 (14x14 -> 4x4); torchvision pools
    adaptively to 4x4 (``adaptive=True``), which differs slightly at 14x14 (windows of 4
    instead of 5) but works for any input size."""

    def __init__(self, in_channels, num_classes, batch_norm=False, dropout=0.7, adaptive=False):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d((4, 4)) if adaptive else nn.AvgPool2d(5, stride=3)
        self.conv = BasicConv2d(in_channels, 128, batch_norm, kernel_size=1)
        self.fc1 = nn.Linear(2048, 1024)
        self.fc2 = nn.Linear(1024, num_classes)
        self.dropout = nn.Dropout(p=dropout)

    def forward(self, x):
        x = self.conv(self.pool(x)).flatten(1)
        x = self.dropout(F.relu(self.fc1(x)))
        return self.fc2(x)


# (in, #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj): the paper's Table 1.
_V1_CFG = {
    "3a": (192, 64, 96, 128, 16, 32, 32), "3b": (256, 128, 128, 192, 32, 96, 64),
    "4a": (480, 192, 96, 208, 16, 48, 64), "4b": (512, 160, 112, 224, 24, 64, 64),
    "4c": (512, 128, 128, 256, 24, 64, 64), "4d": (512, 112, 144, 288, 32, 64, 64),
    "4e": (528, 256, 160, 320, 32, 128, 128), "5a": (832, 256, 160, 320, 32, 128, 128),
    "5b": (832, 384, 192, 384, 48, 128, 128),
}


class GoogLeNet(nn.Module):
    """Inception v1 (see the module docstring); ``paper=False`` gives torchvision's variant."""

    def __init__(self, num_classes=1000, aux_logits=True, transform_input=False, init_weights=True,
                 dropout=0.4, dropout_aux=0.7, paper=True):
        super().__init__()
        bn = not paper
        self.paper = paper
        self.aux_logits = aux_logits
        self.transform_input = transform_input
        self.conv1 = BasicConv2d(3, 64, bn, kernel_size=7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        # The paper's stem has two LRNs; BN replaced them in the later versions.
        self.lrn1 = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0) if paper else nn.Identity()
        self.conv2 = BasicConv2d(64, 64, bn, kernel_size=1)
        self.conv3 = BasicConv2d(64, 192, bn, kernel_size=3, padding=1)
        self.lrn2 = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0) if paper else nn.Identity()
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)

        k = 5 if paper else 3
        for name in ("3a", "3b"):
            setattr(self, "inception" + name, Inception(*_V1_CFG[name], batch_norm=bn, branch3_kernel=k))
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        for name in ("4a", "4b", "4c", "4d", "4e"):
            setattr(self, "inception" + name, Inception(*_V1_CFG[name], batch_norm=bn, branch3_kernel=k))
        # The paper's Table 1 pools 3x3/2 here; torchvision (and the notes' slim code) 2x2/2.
        self.maxpool4 = (nn.MaxPool2d(3, stride=2, ceil_mode=True) if paper
                         else nn.MaxPool2d(2, stride=2, ceil_mode=True))
        for name in ("5a", "5b"):
            setattr(self, "inception" + name, Inception(*_V1_CFG[name], batch_norm=bn, branch3_kernel=k))

        if aux_logits:
            self.aux1 = InceptionAux(512, num_classes, bn, dropout_aux, adaptive=not paper)
            self.aux2 = InceptionAux(528, num_classes, bn, dropout_aux, adaptive=not paper)
        else:
            self.aux1 = None
            self.aux2 = None
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(1024, num_classes)
        if init_weights:
            self._init_weights()

    def _init_weights(self):
        if not self.paper:
            # torchvision's: N(0, 0.01^2) cut at +-2 for every conv and linear weight.
            for m in self.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    nn.init.trunc_normal_(m.weight, mean=0.0, std=0.01, a=-2, b=2)
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.constant_(m.weight, 1)
                    nn.init.constant_(m.bias, 0)
            return
        # Without batch norm, 0.01-std weights would shrink the signal ~5x per layer over
        # 22 layers; the BVLC Caffe GoogLeNet uses Caffe's "xavier" filler, U(-b, b) with
        # b = sqrt(3 / fan_in) (variance 1/fan_in), and biases 0.2 (0 on the classifiers).
        classifiers = {id(self.fc)} | {id(a.fc2) for a in (self.aux1, self.aux2) if a is not None}
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_uniform_(m.weight, nonlinearity="linear")
                nn.init.constant_(m.bias, 0.0 if id(m) in classifiers else 0.2)

    def forward(self, x):
        if self.transform_input:
            x = _transform_input(x)
        x = self.maxpool1(self.conv1(x))                    # 112 -> 56
        x = self.lrn1(x)
        x = self.lrn2(self.conv3(self.conv2(x)))
        x = self.maxpool2(x)                                # -> 28
        x = self.inception3b(self.inception3a(x))
        x = self.maxpool3(x)                                # -> 14
        x = self.inception4a(x)
        aux1 = self.aux1(x) if self.aux1 is not None and self.training else None
        x = self.inception4d(self.inception4c(self.inception4b(x)))
        aux2 = self.aux2(x) if self.aux2 is not None and self.training else None
        x = self.inception4e(x)
        x = self.maxpool4(x)                                # -> 7
        x = self.inception5b(self.inception5a(x))
        x = self.avgpool(x).flatten(1)
        x = self.fc(self.dropout(x))
        if self.training and self.aux_logits:
            return GoogLeNetOutputs(x, aux2, aux1)
        return x


# ================================================================ Inception v2 (BN-Inception)
class InceptionBN(nn.Module):
    """BN-Inception's module: 1x1 | 1x1-3x3 | 1x1-3x3-3x3 | pool(-1x1). A stride-2
    module has no 1x1 branch and passes the max-pooled input through unprojected."""

    def __init__(self, in_channels, ch1x1, ch3x3red, ch3x3, dblred, dbl, pool, pool_proj, stride=1):
        super().__init__()
        self.branch1 = BasicConv2d(in_channels, ch1x1, kernel_size=1) if ch1x1 else None
        self.branch2 = nn.Sequential(BasicConv2d(in_channels, ch3x3red, kernel_size=1),
                                     BasicConv2d(ch3x3red, ch3x3, kernel_size=3, stride=stride, padding=1))
        self.branch3 = nn.Sequential(BasicConv2d(in_channels, dblred, kernel_size=1),
                                     BasicConv2d(dblred, dbl, kernel_size=3, padding=1),
                                     BasicConv2d(dbl, dbl, kernel_size=3, stride=stride, padding=1))
        if pool == "avg":
            pooling = nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)
        else:
            pooling = nn.MaxPool2d(3, stride=stride, padding=1)
        layers = [pooling] + ([BasicConv2d(in_channels, pool_proj, kernel_size=1)] if pool_proj else [])
        self.branch4 = nn.Sequential(*layers)
        self.out_channels = ch1x1 + ch3x3 + dbl + (pool_proj or in_channels)

    def forward(self, x):
        outs = [] if self.branch1 is None else [self.branch1(x)]
        outs += [self.branch2(x), self.branch3(x), self.branch4(x)]
        return td.cat(outs, 1)


# (#1x1, #3x3 reduce, #3x3, double #3x3 reduce, double #3x3, pool, pool proj, stride)
_V2_CFG = [
    ("3a", 64, 64, 64, 64, 96, "avg", 32, 1),
    ("3b", 64, 64, 96, 64, 96, "avg", 64, 1),
    ("3c", 0, 128, 160, 64, 96, "max", 0, 2),
    ("4a", 224, 64, 96, 96, 128, "avg", 128, 1),
    ("4b", 192, 96, 128, 96, 128, "avg", 128, 1),
    ("4c", 160, 128, 160, 128, 160, "avg", 96, 1),
    ("4d", 96, 128, 192, 160, 192, "avg", 96, 1),
    ("4e", 0, 128, 192, 192, 256, "max", 0, 2),
    ("5a", 352, 192, 320, 160, 224, "avg", 128, 1),
    ("5b", 352, 192, 320, 192, 224, "max", 128, 1),
]


class InceptionV2(nn.Module):
    """BN-Inception: 224 -> conv1 112 -> pool 56 -> conv2/conv3 56 -> pool 28 -> 3a 3b
    (256, 320) -> 3c 14x14x576 -> 4a-4d (576) -> 4e 7x7x1024 -> 5a 5b (1024) -> average
    pool -> fc."""

    def __init__(self, num_classes=1000, init_weights=True):
        super().__init__()
        self.conv1 = BasicConv2d(3, 64, kernel_size=7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = BasicConv2d(64, 64, kernel_size=1)
        self.conv3 = BasicConv2d(64, 192, kernel_size=3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        channels = 192
        names = []
        for name, *cfg in _V2_CFG:
            block = InceptionBN(channels, *cfg)
            setattr(self, "inception" + name, block)
            names.append("inception" + name)
            channels = block.out_channels
        self._blocks = tuple(names)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(channels, num_classes)
        if init_weights:
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = self.maxpool1(self.conv1(x))
        x = self.maxpool2(self.conv3(self.conv2(x)))
        for name in self._blocks:
            x = getattr(self, name)(x)
        return self.fc(self.avgpool(x).flatten(1))


# ================================================================ Inception v3
class InceptionA(nn.Module):
    """35x35 module: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool-1x1 (64 + 64 + 96 + pool_features)."""

    def __init__(self, in_channels, pool_features):
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(in_channels, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(in_channels, pool_features, kernel_size=1)

    def forward(self, x):
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1))
        return td.cat([b1, b5, b3, bp], 1)


class InceptionB(nn.Module):
    """35 -> 17 grid reduction: stride-2 3x3 conv | 1x1-3x3-3x3/2 | 3x3/2 max pool, side by side."""

    def __init__(self, in_channels):
        super().__init__()
        self.branch3x3 = BasicConv2d(in_channels, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x):
        b3 = self.branch3x3(x)
        bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = F.max_pool2d(x, kernel_size=3, stride=2)
        return td.cat([b3, bd, bp], 1)


class InceptionC(nn.Module):
    """17x17 module with 7x7 factorised into 1x7 and 7x1 (the notes' asymmetric convs)."""

    def __init__(self, in_channels, channels_7x7):
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x):
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            bd = layer(bd)
        bp = self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1))
        return td.cat([b1, b7, bd, bp], 1)


class InceptionD(nn.Module):
    """17 -> 8 grid reduction: 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | 3x3/2 max pool."""

    def __init__(self, in_channels):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x):
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_1(x)
        for layer in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            b7 = layer(b7)
        bp = F.max_pool2d(x, kernel_size=3, stride=2)
        return td.cat([b3, b7, bp], 1)


class InceptionE(nn.Module):
    """8x8 module with expanded filter banks: the 3x3 outputs split into parallel 1x3
    and 3x1 convs whose outputs are concatenated (320 + 768 + 768 + 192 = 2048)."""

    def __init__(self, in_channels):
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 320, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(in_channels, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x):
        b1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        b3 = td.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = td.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
        bp = self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1))
        return td.cat([b1, b3, bd, bp], 1)


class InceptionAuxV3(nn.Module):
    """Inception v3's auxiliary head on the 17x17x768 grid: avg pool 5x5/3 -> 5x5,
    1x1 conv 128, 5x5 conv 768 -> 1x1, linear. (Also a regulariser, as the notes say:
    it helps once batch norm is in it.)"""

    def __init__(self, in_channels, num_classes):
        super().__init__()
        self.conv0 = BasicConv2d(in_channels, 128, kernel_size=1)
        self.conv1 = BasicConv2d(128, 768, kernel_size=5)
        self.conv1.stddev = 0.01
        self.fc = nn.Linear(768, num_classes)
        self.fc.stddev = 0.001

    def forward(self, x):
        x = F.avg_pool2d(x, kernel_size=5, stride=3)
        x = self.conv1(self.conv0(x))
        x = F.adaptive_avg_pool2d(x, (1, 1))
        return self.fc(x.flatten(1))


class Inception3(nn.Module):
    """Inception v3 with torchvision's module names (see the module docstring)."""

    def __init__(self, num_classes=1000, aux_logits=True, transform_input=False, init_weights=True, dropout=0.5):
        super().__init__()
        self.aux_logits = aux_logits
        self.transform_input = transform_input
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)      # 299 -> 149
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)               # -> 147
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)    # -> 147
        self.maxpool1 = nn.MaxPool2d(kernel_size=3, stride=2)                 # -> 73
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)               # -> 73
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)              # -> 71
        self.maxpool2 = nn.MaxPool2d(kernel_size=3, stride=2)                 # -> 35
        self.Mixed_5b = InceptionA(192, pool_features=32)                     # 35x35x256
        self.Mixed_5c = InceptionA(256, pool_features=64)                     # 35x35x288
        self.Mixed_5d = InceptionA(288, pool_features=64)                     # 35x35x288
        self.Mixed_6a = InceptionB(288)                                       # 17x17x768
        self.Mixed_6b = InceptionC(768, channels_7x7=128)
        self.Mixed_6c = InceptionC(768, channels_7x7=160)
        self.Mixed_6d = InceptionC(768, channels_7x7=160)
        self.Mixed_6e = InceptionC(768, channels_7x7=192)
        self.AuxLogits = InceptionAuxV3(768, num_classes) if aux_logits else None
        self.Mixed_7a = InceptionD(768)                                       # 8x8x1280
        self.Mixed_7b = InceptionE(1280)                                      # 8x8x2048
        self.Mixed_7c = InceptionE(2048)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(2048, num_classes)
        if init_weights:
            _init_trunc_normal(self, 0.1)

    def forward(self, x):
        if self.transform_input:
            x = _transform_input(x)
        for name in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1",
                     "Conv2d_4a_3x3", "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a",
                     "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"):
            x = getattr(self, name)(x)
        aux = self.AuxLogits(x) if self.AuxLogits is not None and self.training else None
        x = self.Mixed_7c(self.Mixed_7b(self.Mixed_7a(x)))
        x = self.dropout(self.avgpool(x)).flatten(1)
        x = self.fc(x)
        if self.training and self.aux_logits:
            return InceptionOutputs(x, aux)
        return x


# ================================================================ builders
@register
def googlenet(num_classes=1000, aux_logits=True, transform_input=False, init_weights=True, dropout=0.4,
              dropout_aux=0.7):
    """GoogLeNet as in the paper (LRN, biases, 5x5 branches, no BN): 6,998,552 params
    without the aux heads; in training returns GoogLeNetOutputs(logits, aux_logits2, aux_logits1)."""
    return GoogLeNet(num_classes, aux_logits, transform_input, init_weights, dropout, dropout_aux, paper=True)


@register
def googlenet_tv(num_classes=1000, aux_logits=True, transform_input=False, init_weights=True, dropout=0.2,
                 dropout_aux=0.7):
    """torchvision's GoogLeNet (BN, 3x3 in the '5x5' branch): 6,624,904 params with
    ``aux_logits=False``, 13,004,888 with; torchvision's state_dict keys."""
    return GoogLeNet(num_classes, aux_logits, transform_input, init_weights, dropout, dropout_aux, paper=False)


@register
def inception_v2(num_classes=1000, init_weights=True):
    """BN-Inception (Inception v2): GoogLeNet + batch norm, 5x5 -> two 3x3, 224x224."""
    return InceptionV2(num_classes, init_weights)


@register
def inception_v3(num_classes=1000, aux_logits=True, transform_input=False, init_weights=True, dropout=0.5):
    """Inception v3 (299x299), torchvision's keys: 27,161,264 params (23,834,568 without the aux head)."""
    return Inception3(num_classes, aux_logits, transform_input, init_weights, dropout)
