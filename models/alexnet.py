"""AlexNet and ZFNet (seed 001), plus ZFNet's deconvnet and a receptive-field table.

``alexnet``     Krizhevsky et al. 2012 as the notes describe it: a 227x227x3 input,
                conv1 96@11x11/4 -> 55x55, overlapping max pool 3x3/2 -> 27x27,
                conv2 256@5x5 pad 2 -> 27x27, pool -> 13x13, conv3 384@3x3,
                conv4 384@3x3, conv5 256@3x3 (pad 1) -> 13x13, pool5 -> 6x6x256,
                fc6 4096, fc7 4096 (ReLU + dropout 0.5 each), fc8 1000.
                Local response normalisation (size 5, alpha 1e-4, beta 0.75, k 2)
                follows the ReLUs of conv1 and conv2 (PyTorch's and Caffe's convention,
                which divides alpha by the size; see ``_lrn``). Parameters:
                    conv1    34,944 = 11*11*3*96 + 96
                    conv2   614,656 = 5*5*96*256 + 256
                    conv3   885,120 = 3*3*256*384 + 384
                    conv4 1,327,488 = 3*3*384*384 + 384
                    conv5   884,992 = 3*3*384*256 + 256
                    fc6  37,752,832 = 6*6*256*4096 + 4096
                    fc7  16,781,312 = 4096*4096 + 4096
                    fc8   4,097,000 = 4096*1000 + 1000
                    total 62,378,344 (one tower, every filter sees every channel).
                ``groups=2`` gives the paper's two-GPU connectivity: conv2, conv4 and
                conv5 see only the half of the channels on their own GPU (conv3 and the
                fc layers see both), which halves those three weight tensors:
                62,378,344 - (307,200 + 663,552 + 442,368) = 60,965,224.
``alexnet_tv``  torchvision's AlexNet (the "one weird trick" widths 64-192-384-256-256,
                no LRN, a 224x224 input, AdaptiveAvgPool2d((6, 6))) with torchvision's
                state_dict keys (features.0.weight, classifier.1.weight, ...):
                61,100,840 parameters.
``zfnet``       Zeiler & Fergus 2013: AlexNet with a 7x7 stride-2 first layer (96
                filters) and a stride-2 5x5 conv2 (256 filters), dense (one-GPU)
                connections, on a 224x224 input: 110x110 -> pool 55 -> 26 -> pool 13
                -> 13 -> 13 -> 13 -> pool 6, then fc 4096, 4096, 1000 (62,357,608 params).
                ``forward_features(x, return_switches=True)`` keeps the max-pooling
                switches and ``deconvnet(y, switches)`` projects a feature map back to
                pixel space (unpool with the switches, ReLU, transposed filters), as in
                the paper's visualisations. AlexNet has the same two methods.

Layer order. The paper puts LRN before pooling (conv-ReLU-LRN-pool); the notes'
TensorFlow code and Caffe's reference model pool first (conv-ReLU-pool-LRN), which
is what ZFNet's paper describes for its own layers 1 and 2. ``norm_after_pool``
picks the order; it changes no parameter count.

Both paper nets keep an ``AdaptiveAvgPool2d((6, 6))`` before the classifier, as
torchvision does: at the native input size pool5 is already 6x6 and the pooling is
the identity; at other sizes it lets the fc layers still apply.

Initialisation: PyTorch's default layer init, or with ``paper_init=True`` the
paper's: weights N(0, 0.01^2), biases 1 in conv2, conv4, conv5 and the hidden fc
layers (to give the ReLUs positive inputs early on) and 0 elsewhere.
"""

import tinydl.nn as nn
import tinydl.nn.functional as F

from models import register

__all__ = ["AlexNet", "AlexNetTV", "ZFNet", "Switches", "receptive_field_table",
           "alexnet", "alexnet_tv", "zfnet"]


def _lrn():
    # b_c = a_c / (k + alpha/n * sum of a^2 over n neighbouring channels)^beta, PyTorch's
    # (and Caffe's) convention: alpha is divided by the size n = 5. The paper writes
    # alpha * sum without the /n; LocalResponseNorm(5, alpha=5e-4, ...) reproduces that.
    return nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)


def _block(i, conv, pool, norm, norm_after_pool, ceil_mode=False):
    """conv{i}, relu{i}, then (norm{i}, pool{i}) or (pool{i}, norm{i}), as (name, layer) pairs."""
    layers = [(f"conv{i}", conv), (f"relu{i}", nn.ReLU(inplace=True))]
    after = []
    if norm:
        after.append((f"norm{i}", _lrn()))
    if pool:
        pooling = (f"pool{i}", nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=ceil_mode))
        after.insert(0 if norm_after_pool else len(after), pooling)
    return layers + after


class Switches:
    """What a forward pass must remember for the deconvnet to go back down.

    ``indices[i]``  the max-pooling switches (flat per-plane argmax positions) of
                    the pooling layer ``features[i]``;
    ``sizes[i]``    the (H, W) that entered ``features[i]``: each transposed conv
                    and unpooling step uses it to restore the exact size (strided
                    layers map several input sizes to one output size);
    ``last``        the index of the last layer run (where the deconvnet starts).
    """

    def __init__(self):
        self.indices = {}
        self.sizes = {}
        self.last = -1

    def __repr__(self):
        return f"Switches(pools={sorted(self.indices)}, last={self.last})"


class ConvNetWithDeconv(nn.Module):
    """The part AlexNet and ZFNet share: ``features`` (a Sequential of conv / ReLU /
    LRN / max-pool layers with names in ``layer_names``), ``avgpool`` and
    ``classifier``, plus the deconvnet of Zeiler & Fergus."""

    layer_names = ()

    def forward(self, x):
        x = self.features(x)
        x = self.avgpool(x)
        return self.classifier(x.flatten(1))

    def _index(self, layer):
        if layer is None:
            return len(self.features) - 1
        if isinstance(layer, str):
            if layer not in self.layer_names:
                raise ValueError(f"{type(self).__name__}: unknown layer {layer!r}; "
                                 f"known: {', '.join(self.layer_names)}")
            return self.layer_names.index(layer)
        if not -len(self.features) <= layer < len(self.features):
            raise IndexError(f"{type(self).__name__}: layer index {layer} out of range for "
                             f"{len(self.features)} feature layers")
        return layer % len(self.features)

    def forward_features(self, x, return_switches=False, until=None):
        """Run ``features`` up to and including layer ``until`` (an index into
        ``features`` or a name from ``layer_names``, e.g. 'pool2'; default: all).

        With ``return_switches`` return ``(y, switches)``: every max pool also
        records where its maxima came from (its switches) and every layer the size
        of its input, for ``deconvnet``.
        """
        last = self._index(until)
        switches = Switches() if return_switches else None
        for i, layer in enumerate(self.features):
            if i > last:
                break
            if return_switches:
                switches.sizes[i] = tuple(x.shape[-2:])
                switches.last = i
            if return_switches and isinstance(layer, nn.MaxPool2d):
                x, switches.indices[i] = F.max_pool2d(x, layer.kernel_size, layer.stride, layer.padding,
                                                      layer.dilation, ceil_mode=layer.ceil_mode,
                                                      return_indices=True)
            else:
                x = layer(x)
        return (x, switches) if return_switches else x

    def deconvnet(self, y, switches, start=None):
        """Project ``y`` (a map at the output of layer ``start``, default
        ``switches.last``) back to pixel space through the attached deconvnet:
        each layer, from ``start`` down to the first, is undone approximately:

        - max pool  -> unpool: put each value where the switch says the maximum was,
                       zeros elsewhere; where overlapping windows chose the same
                       pixel their values add up (``F.max_pool2d_transpose``, the
                       adjoint of the pooling; PyTorch's max_unpool2d would let
                       one window's zero overwrite another's activation);
        - ReLU      -> ReLU (the reconstruction is kept positive, as the maps were);
        - conv      -> the same filters transposed (``F.conv_transpose2d`` with the
                       conv's weight, no bias);
        - LRN       -> skipped (the paper uses no contrast normalisation going down).

        To see what one activation responds to, zero every other entry of ``y``
        first. Works under ``td.no_grad()`` or with gradients.
        """
        start = switches.last if start is None else self._index(start)
        if start > switches.last:
            raise ValueError(f"{type(self).__name__}.deconvnet: start layer {start} was not run forward "
                             f"(the switches stop at layer {switches.last})")
        for i in range(start, -1, -1):
            layer = self.features[i]
            size = switches.sizes[i]
            if isinstance(layer, nn.MaxPool2d):
                y = F.max_pool2d_transpose(y, switches.indices[i], size)
            elif isinstance(layer, nn.ReLU):
                y = F.relu(y)
            elif isinstance(layer, nn.Conv2d):
                y = F.conv_transpose2d(y, layer.weight, None, layer.stride, layer.padding,
                                       _output_padding(y.shape[-2:], size, layer), layer.groups, layer.dilation)
            elif not isinstance(layer, (nn.LocalResponseNorm, nn.Dropout, nn.Identity)):
                raise TypeError(f"{type(self).__name__}.deconvnet: no inverse for layer {i} ({layer!r})")
        return y


def _output_padding(in_hw, out_hw, conv):
    """The output_padding that makes conv_transpose2d give back the conv's input size."""
    pads = []
    for n, target, k, s, p, d in zip(in_hw, out_hw, conv.kernel_size, conv.stride, conv.padding, conv.dilation):
        pads.append(target - ((n - 1) * s - 2 * p + d * (k - 1) + 1))
    return tuple(pads)


def _paper_init(model, one_bias_convs):
    """Krizhevsky et al.: N(0, 0.01^2) weights; biases 1 in conv2/4/5 and fc6/fc7, else 0."""
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.classifier if isinstance(m, nn.Linear)]
    for i, m in enumerate(convs + linears):
        nn.init.normal_(m.weight, 0.0, 0.01)
        one = (i < len(convs) and i in one_bias_convs) or (len(convs) <= i < len(convs) + len(linears) - 1)
        nn.init.constant_(m.bias, 1.0 if one else 0.0)


class AlexNet(ConvNetWithDeconv):
    """The notes' AlexNet (see the module docstring): features.{0: conv1, 4: conv2,
    8: conv3, 10: conv4, 12: conv5}, classifier.{0: fc6, 3: fc7, 6: fc8}."""

    def __init__(self, num_classes=1000, groups=1, dropout=0.5, norm_after_pool=False, paper_init=False):
        super().__init__()
        if groups not in (1, 2):
            raise ValueError(f"AlexNet: groups must be 1 (one tower) or 2 (the paper's two GPUs), got {groups}")
        self.groups = groups

        nap = norm_after_pool
        named = (_block(1, nn.Conv2d(3, 96, kernel_size=11, stride=4), True, True, nap)
                 + _block(2, nn.Conv2d(96, 256, kernel_size=5, padding=2, groups=groups), True, True, nap)
                 + _block(3, nn.Conv2d(256, 384, kernel_size=3, padding=1), False, False, nap)
                 + _block(4, nn.Conv2d(384, 384, kernel_size=3, padding=1, groups=groups), False, False, nap)
                 + _block(5, nn.Conv2d(384, 256, kernel_size=3, padding=1, groups=groups), True, False, nap))
        self.layer_names = tuple(name for name, _ in named)
        self.features = nn.Sequential(*[layer for _, layer in named])
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True), nn.Dropout(p=dropout),   # fc6
            nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(p=dropout),          # fc7
            nn.Linear(4096, num_classes),                                                 # fc8
        )
        if paper_init:
            _paper_init(self, one_bias_convs={1, 3, 4})


class ZFNet(ConvNetWithDeconv):
    """Zeiler & Fergus's net (see the module docstring): features.{0: conv1, 4: conv2,
    8: conv3, 10: conv4, 12: conv5}; pooling uses ceil_mode, as their Caffe model
    did, so a 224x224 input gives the paper's 110-55-26-13-13-13-6 maps."""

    def __init__(self, num_classes=1000, dropout=0.5, norm_after_pool=True, paper_init=False):
        super().__init__()

        nap = norm_after_pool
        named = (_block(1, nn.Conv2d(3, 96, kernel_size=7, stride=2, padding=1), True, True, nap, True)
                 + _block(2, nn.Conv2d(96, 256, kernel_size=5, stride=2), True, True, nap, True)
                 + _block(3, nn.Conv2d(256, 384, kernel_size=3, padding=1), False, False, nap, True)
                 + _block(4, nn.Conv2d(384, 384, kernel_size=3, padding=1), False, False, nap, True)
                 + _block(5, nn.Conv2d(384, 256, kernel_size=3, padding=1), True, False, nap, True))
        self.layer_names = tuple(name for name, _ in named)
        self.features = nn.Sequential(*[layer for _, layer in named])
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True), nn.Dropout(p=dropout),
            nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes),
        )
        if paper_init:
            # Zeiler & Fergus: weights N(0, 0.01^2), biases 0.
            for m in self.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    nn.init.normal_(m.weight, 0.0, 0.01)
                    nn.init.zeros_(m.bias)


class AlexNetTV(nn.Module):
    """torchvision's AlexNet: same module names, so its state_dict keys are
    features.{0,3,6,8,10}.{weight,bias} and classifier.{1,4,6}.{weight,bias}."""

    def __init__(self, num_classes=1000, dropout=0.5):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True),
            nn.Dropout(p=dropout), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x):
        x = self.features(x)
        x = self.avgpool(x)
        return self.classifier(x.flatten(1))


def receptive_field_table(layers, image_size):
    """For each conv / pooling layer of ``layers`` (a Sequential or list of modules, or
    the notes' ``convnet`` list of ``[k, s, p]`` triples), the notes' receptive-field
    recurrence (seed 001, "AlexNet 下感受野计算样例"):

        n_out = floor((n_in + 2p - k) / s) + 1     (ceil for ceil_mode pooling)
        j_out = j_in * s                           (jump: input pixels between neighbours)
        r_out = r_in + (k - 1) * j_in              (receptive field size)
        start_out = start_in + ((k - 1)/2 - p) * j_in   (centre of the first feature)

    starting from the image: n = image_size, j = 1, r = 1, start = 0.5. Layers
    without a spatial kernel (ReLU, LRN, dropout) leave all four unchanged and are
    skipped. Returns a list of ``(index, layer, n, jump, r, start)``. For AlexNet at
    227: conv1 r=11, pool1 19, conv2 51, pool2 67, conv3 99, conv4 131, conv5 163,
    pool5 195; the notes' list ``[[11,4,0],[3,2,0],[5,1,2],[3,2,0],[3,1,1],[3,1,1],
    [3,1,1],[3,2,0],[6,1,0],[1,1,0]]`` adds fc6-conv 355 and fc7-conv 355. How a
    triple's padding is read: ``tinydl.utils.summary.receptive_fields``.

    The recurrence itself lives in ``tinydl.utils.summary`` (``receptive_fields``,
    which ``td.utils.summary(model, (3, 227, 227))`` also uses); this helper only
    presents its rows for a square image, one number per quantity.
    """
    from tinydl.utils.summary import receptive_fields
    rows = []
    for i, layer, field in receptive_fields(layers, image_size):
        n, j, r, start = (v[0] for v in field)
        rows.append((i, layer, n, j, r, start))
    return rows


@register
def alexnet(num_classes=1000, groups=1, dropout=0.5, norm_after_pool=False, paper_init=False):
    """AlexNet as in the notes (227x227): 62,378,344 params; ``groups=2``: 60,965,224."""
    return AlexNet(num_classes, groups, dropout, norm_after_pool, paper_init)


@register
def alexnet_tv(num_classes=1000, dropout=0.5):
    """torchvision's AlexNet (224x224, 64-192-384-256-256): 61,100,840 params, torchvision's keys."""
    return AlexNetTV(num_classes, dropout)


@register
def zfnet(num_classes=1000, dropout=0.5, norm_after_pool=True, paper_init=False):
    """ZFNet (224x224; 7x7/2 conv1): 62,357,608 params; ``forward_features(x, return_switches=True)``
    and ``deconvnet(y, switches)`` give the paper's visualisation."""
    return ZFNet(num_classes, dropout, norm_after_pool, paper_init)
