"""FCN-32s, FCN-16s, FCN-8s (Long, Shelhamer & Darrell 2015; seed 001): semantic
segmentation by a convolutionalised classifier, for an input of any size.

The notes: replace the fully connected layers by convolutions and the network
slides over a larger image, giving a map of scores instead of one score. FCN
then upsamples that coarse map back to the input size with transposed
convolutions, and refines it with "skips" from finer layers:

    VGG16 conv1..pool5  (conv1_1 padded by 100; 2x2/2 pools in ceil mode)
    fc6   7x7 conv 512 -> 4096, ReLU, dropout      (VGG's fc6 reshaped: ``vgg_fc_to_conv``)
    fc7   1x1 conv 4096 -> 4096, ReLU, dropout
    score_fr  1x1 conv 4096 -> num_classes          (stride 32 w.r.t. the input)

    FCN-32s  upscore   (64x64 transposed conv, stride 32) -> crop 19 -> H x W
    FCN-16s  upscore2  (4x4, stride 2) + score_pool4 (1x1 on pool4, crop 5)
             -> upscore16 (32x32, stride 16) -> crop 27 -> H x W
    FCN-8s   upscore2 + score_pool4 (crop 5) -> upscore_pool4 (4x4, stride 2)
             + score_pool3 (1x1 on pool3, crop 9) -> upscore8 (16x16, stride 8) -> crop 31

Why pad 100 and crop: fc6 needs a 7x7 pool5 map, i.e. a 224-pixel input; the
100-pixel zero border makes any input (even 1x1) big enough, and every map then
extends past the image on all sides. The crops cut out the part that lines up
with the image: FCN's coordinate mapping. A layer maps its output position q to
the input position of its receptive field centre, p = s*q + (k-1)/2 - pad (conv,
pool), and a transposed conv inverts that; composing those affine maps from the
image to a layer gives p_image = A*q + B, and a map with offset B (in pixels of
scale A) lines up with a map of the same scale and offset B' > B after dropping
(B' - B)/A of its first rows and columns. ``FCN.crops`` holds these offsets,
computed from the layers themselves (``coordinate_map``), which gives the paper's
19 / 5, 27 / 5, 9, 31 for VGG16 (``map_sizes`` gives every map's size without
running the network).

Upsampling: the transposed convolutions start as bilinear interpolation
(``bilinear_kernel``: the weight that maps channel c to channel c with a
separable triangle filter; with kernel 2s, stride s and a crop of s/2 it is exact
bilinear interpolation, PyTorch's ``align_corners=False``, away from the
border). As in the paper the 2x layers are then learned and the last one (the
32x / 16x / 8x) is kept fixed (``requires_grad=False``). The score layers
(score_fr, score_pool4, score_pool3) start at zero, also as in the paper.
(The paper trains 16s from a trained 32s and 8s from 16s, and its "at-once" 8s
scales pool3/pool4 by 1e-4/1e-2; neither is built in.)

``backbone='small'``: the same network at CPU size, and the "equivalent
cropping" without the 100-pixel border (which would make a 64x64 image cost
as much as a 264x264 one): stages 16-16 / 32 / 64 / 64 / 64 of 3x3 conv +
batch norm (to train from scratch in minutes) + ReLU, each ending in a 2x2
ceil-mode pool; fc6 a 3x3 conv to 128 with padding 1, fc7 1x1 128. Every conv
keeps the size, so every map already covers the image (a 1x1 input gives 1x1
maps); there the 2x-upsampled scores are the maps that start too early (the
4x4 kernel reaches half a step past the first skip row) and are the ones
cropped, by 1. Crops: 32s 16; 16s upscore2 1, upscore16 8; 8s upscore2 1,
upscore_pool4 1, upscore8 4 (the skips by 0). The same coordinate maps work
them out, and the output is H x W for any H, W >= 1.

``pretrained_backbone``: VGG16 weights for ``backbone='vgg16'`` (a ``models.vgg16``
model, its state_dict, or a file from ``td.save``): conv1_1..conv5_3 and fc6/fc7
(reshaped to convolutions) are copied; the score and upsampling layers keep
their initialisation. Nothing is downloaded.

Module names follow the Caffe/PyTorch FCN ports where they can
(``score_pool4``, ``upscore2``, ``upscore8``...); ``features.N`` and
``classifier.0`` / ``.3`` (fc6 / fc7) are VGG's keys, ``classifier.6`` is score_fr.
"""
import numpy as np

import tinydl.nn as nn

from models import register
from models.vgg import cfgs, make_layers, vgg_fc_to_conv

__all__ = ["FCN", "bilinear_kernel", "coordinate_map", "load_vgg16_backbone", "fcn32s", "fcn16s", "fcn8s"]


# ================================================================ bilinear upsampling weights
def bilinear_kernel(in_ch, out_ch, k, dtype=np.float32):
    """The (in_ch, out_ch, k, k) weight of a ConvTranspose2d that upsamples every
    channel on its own by bilinear interpolation (channel c -> channel c, zero
    between different channels, so ``in_ch`` must equal ``out_ch``).

    The filter is separable, f(i) f(j), with the triangle
        f(i) = 1 - |i - c| / F,   F = ceil(k / 2),   c = F - 1 (k odd) or F - 0.5 (k even).
    For upsampling by s use k = 2s: f = (1/(2s), 3/(2s), ..., (2s-1)/(2s), ..., 1/(2s)),
    e.g. k = 4 (s = 2): (0.25, 0.75, 0.75, 0.25). Every output pixel then receives
    two inputs with weights that sum to 1 and fall off linearly with distance:
    linear interpolation along each axis.
    """
    if in_ch != out_ch:
        raise ValueError(f"bilinear_kernel: a per-channel upsampling needs in_ch == out_ch, got {in_ch} and {out_ch}")
    if k < 1:
        raise ValueError(f"bilinear_kernel: kernel size must be positive, got {k}")
    factor = (k + 1) // 2
    center = factor - 1 if k % 2 == 1 else factor - 0.5
    f = 1 - np.abs(np.arange(k) - center) / factor
    weight = np.zeros((in_ch, out_ch, k, k), dtype=dtype)
    channels = np.arange(in_ch)
    weight[channels, channels] = np.outer(f, f)
    return weight


# ================================================================ coordinate maps
def _two(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def coordinate_map(layers, start=(1.0, 0.0)):
    """(A, B) with p_image = A * q + B for position q of the map after ``layers``
    (one axis; the layers are square here), starting from the map ``start``.

    Conv2d / MaxPool2d (kernel k, stride s, padding p, dilation d): an output
    position q looks at the window centred on s*q + d(k-1)/2 - p of its input.
    ConvTranspose2d inverts that: its output position r comes from input
    (r - d(k-1)/2 + p) / s. Other layers (ReLU, dropout) keep positions.
    """
    a, b = start
    for layer in layers:
        if isinstance(layer, (nn.Conv2d, nn.MaxPool2d, nn.ConvTranspose2d)):
            k, s, p = _two(layer.kernel_size)[0], _two(layer.stride)[0], _two(layer.padding)[0]
            d = _two(getattr(layer, "dilation", 1))[0]
            centre = d * (k - 1) / 2
            if isinstance(layer, nn.ConvTranspose2d):
                a, b = a / s, b + a * (p - centre) / s
            else:
                a, b = a * s, b + a * (centre - p)
    return a, b


def _offset(m, ref, what):
    """Rows to drop from the start of map ``m`` = (A, B) so that it starts where map
    ``ref`` (same scale A) starts: (B_ref - B_m) / A, a non-negative integer."""
    if m[0] != ref[0]:
        raise ValueError(f"FCN: {what}: maps of different scales {m[0]} and {ref[0]}")
    off = (ref[1] - m[1]) / m[0]
    if off < 0 or off != int(off):
        raise ValueError(f"FCN: {what}: the crop offset {off} is not a non-negative integer; "
                         "change the first conv's padding")
    return int(off)


def _align(up, skip, what):
    """Offsets (up, skip) that line up two maps of the same scale, and the fused map.

    The map that starts earlier (further out, smaller B) is cropped; the fused
    map starts where the other one does. In the paper's net (pad 100) that is
    always the skip (score_pool4 by 5, score_pool3 by 9); in the small net, whose
    maps all start at the image, it is the upsampled scores (by 1), whose kernel
    reaches past the skip map's first row.
    """
    later = up if up[1] >= skip[1] else skip
    return _offset(up, later, what), _offset(skip, later, what), later


def _out_size(layer, n):
    """Output length along one axis of ``layer`` for an input of length n (PyTorch's rules)."""
    if isinstance(layer, nn.ConvTranspose2d):
        k, s, p = _two(layer.kernel_size)[0], _two(layer.stride)[0], _two(layer.padding)[0]
        return (n - 1) * s - 2 * p + k
    if isinstance(layer, (nn.Conv2d, nn.MaxPool2d)):
        k, s, p = _two(layer.kernel_size)[0], _two(layer.stride)[0], _two(layer.padding)[0]
        d = _two(getattr(layer, "dilation", 1))[0]
        span = n + 2 * p - d * (k - 1) - 1
        if getattr(layer, "ceil_mode", False):
            out = -(-span // s) + 1
            if out > 0 and (out - 1) * s >= n + p:      # the last window may not start in the right padding
                out -= 1
        else:
            out = span // s + 1
        return max(out, 0)
    return n


def _fuse(up, skip, off_up, off_skip):
    """up + skip on their common region, after dropping off_up / off_skip first rows and columns."""
    h = min(up.shape[-2] - off_up, skip.shape[-2] - off_skip)
    w = min(up.shape[-1] - off_up, skip.shape[-1] - off_skip)
    return up[:, :, off_up:off_up + h, off_up:off_up + w] + skip[:, :, off_skip:off_skip + h, off_skip:off_skip + w]


def _crop(x, off, h, w, what):
    if x.shape[-2] < off + h or x.shape[-1] < off + w:
        raise RuntimeError(f"FCN: {what} is {tuple(x.shape[-2:])}, too small to crop {h}x{w} at offset {off}")
    return x[:, :, off:off + h, off:off + w]


# ================================================================ the network
_BACKBONES = {
    # (features cfg, conv1 padding, fc6 kernel, fc6 padding, fc6/fc7 channels, batch norm)
    "vgg16": (cfgs["D"], 100, 7, 0, 4096, False),
    "small": ([16, 16, "M", 32, "M", 64, "M", 64, "M", 64, "M"], 1, 3, 1, 128, True),
}


class FCN(nn.Module):
    """FCN-``stride`` (32, 16 or 8) on the ``backbone`` ('vgg16' or 'small'); see the
    module docstring. forward: (N, 3, H, W) -> (N, num_classes, H, W) class scores."""

    def __init__(self, stride=8, num_classes=21, backbone="vgg16", dropout=0.5):
        super().__init__()
        if stride not in (32, 16, 8):
            raise ValueError(f"FCN: stride must be 32, 16 or 8, got {stride}")
        if backbone not in _BACKBONES:
            raise ValueError(f"FCN: backbone must be one of {sorted(_BACKBONES)}, got {backbone!r}")
        cfg, pad, k6, p6, width, bn = _BACKBONES[backbone]
        self.stride, self.num_classes, self.backbone = stride, num_classes, backbone
        self.features = make_layers(cfg, bn, first_padding=pad, ceil_mode=True)   # keys as VGG's
        pools = [i for i, layer in enumerate(self.features) if isinstance(layer, nn.MaxPool2d)]
        self._pool3, self._pool4 = pools[2], pools[3]
        c3, c4, c5 = (_channels_before_pool(cfg, n) for n in (2, 3, 4))
        nc = num_classes
        self.classifier = nn.Sequential(
            nn.Conv2d(c5, width, kernel_size=k6, padding=p6), nn.ReLU(inplace=True), nn.Dropout(p=dropout),  # fc6
            nn.Conv2d(width, width, kernel_size=1), nn.ReLU(inplace=True), nn.Dropout(p=dropout),  # fc7
            nn.Conv2d(width, nc, kernel_size=1),  # score_fr
        )
        if stride == 32:
            self.upscore = nn.ConvTranspose2d(nc, nc, 64, stride=32, bias=False)
            final = self.upscore
        else:
            self.score_pool4 = nn.Conv2d(c4, nc, kernel_size=1)
            self.upscore2 = nn.ConvTranspose2d(nc, nc, 4, stride=2, bias=False)
            if stride == 16:
                self.upscore16 = nn.ConvTranspose2d(nc, nc, 32, stride=16, bias=False)
                final = self.upscore16
            else:
                self.score_pool3 = nn.Conv2d(c3, nc, kernel_size=1)
                self.upscore_pool4 = nn.ConvTranspose2d(nc, nc, 4, stride=2, bias=False)
                self.upscore8 = nn.ConvTranspose2d(nc, nc, 16, stride=8, bias=False)
                final = self.upscore8
        self._init_weights()
        final.weight.requires_grad_(False)   # the paper keeps the last upsampling fixed to bilinear
        self.crops = self._crop_offsets()

    def _init_weights(self):
        score = {id(self.classifier[6])} | {id(getattr(self, n)) for n in ("score_pool4", "score_pool3")
                                             if hasattr(self, n)}
        for m in self.modules():
            if isinstance(m, nn.ConvTranspose2d):
                k = _two(m.kernel_size)[0]
                m.weight.array[...] = bilinear_kernel(m.in_channels, m.out_channels, k, m.weight.dtype)
            elif id(m) in score:
                nn.init.zeros_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    # ------------------------------------------------------------ geometry
    def _maps(self):
        """(A, B) coordinate maps of pool3, pool4 and score_fr."""
        f = list(self.features)
        pool3 = coordinate_map(f[:self._pool3 + 1])
        pool4 = coordinate_map(f[self._pool3 + 1:self._pool4 + 1], pool3)
        score = coordinate_map(list(self.classifier), coordinate_map(f[self._pool4 + 1:], pool4))
        return pool3, pool4, score

    def _crop_offsets(self):
        """Crop offsets from the coordinate maps: for each fusion the rows dropped from
        the upsampled map and from the skip's scores, and the final crop to the image."""
        pool3, pool4, score = self._maps()
        image = (1.0, 0.0)
        if self.stride == 32:
            return {"upscore": _offset(coordinate_map([self.upscore], score), image, "upscore")}
        crops = {}
        up = coordinate_map([self.upscore2], score)
        crops["upscore2"], crops["score_pool4"], fused = _align(up, pool4, "score_pool4")
        if self.stride == 16:
            crops["upscore16"] = _offset(coordinate_map([self.upscore16], fused), image, "upscore16")
            return crops
        up = coordinate_map([self.upscore_pool4], fused)
        crops["upscore_pool4"], crops["score_pool3"], fused = _align(up, pool3, "score_pool3")
        crops["upscore8"] = _offset(coordinate_map([self.upscore8], fused), image, "upscore8")
        return crops

    def map_sizes(self, size):
        """Lengths along one axis of the maps (pool3, pool4, score_fr, each upsampled
        and fused map, and the final map before its crop) for an input of length
        ``size``, by shape arithmetic alone (the network does not run)."""
        sizes, n = {}, size
        for i, layer in enumerate(self.features):
            n = _out_size(layer, n)
            if i == self._pool3:
                sizes["pool3"] = n
            if i == self._pool4:
                sizes["pool4"] = n
        for layer in self.classifier:
            n = _out_size(layer, n)
        sizes["score_fr"] = n
        c = self.crops
        if self.stride == 32:
            sizes["upscore"] = _out_size(self.upscore, n)
            return sizes
        sizes["upscore2"] = up = _out_size(self.upscore2, n)
        sizes["fuse_pool4"] = n = min(up - c["upscore2"], sizes["pool4"] - c["score_pool4"])
        if self.stride == 16:
            sizes["upscore16"] = _out_size(self.upscore16, n)
            return sizes
        sizes["upscore_pool4"] = up = _out_size(self.upscore_pool4, n)
        sizes["fuse_pool3"] = n = min(up - c["upscore_pool4"], sizes["pool3"] - c["score_pool3"])
        sizes["upscore8"] = _out_size(self.upscore8, n)
        return sizes

    # ------------------------------------------------------------ forward
    def forward(self, x):
        if x.ndim != 4:
            raise ValueError(f"FCN: expected an (N, 3, H, W) input, got shape {x.shape}")
        h, w = x.shape[-2:]
        pool3 = pool4 = None
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i == self._pool3:
                pool3 = x
            elif i == self._pool4:
                pool4 = x
        score = self.classifier(x)
        c = self.crops
        if self.stride == 32:
            return _crop(self.upscore(score), c["upscore"], h, w, "upscore")
        fused = _fuse(self.upscore2(score), self.score_pool4(pool4), c["upscore2"], c["score_pool4"])
        if self.stride == 16:
            return _crop(self.upscore16(fused), c["upscore16"], h, w, "upscore16")
        fused = _fuse(self.upscore_pool4(fused), self.score_pool3(pool3), c["upscore_pool4"], c["score_pool3"])
        return _crop(self.upscore8(fused), c["upscore8"], h, w, "upscore8")

    def extra_repr(self):
        return f"stride={self.stride}, backbone={self.backbone!r}, crops={self.crops}"


def _channels_before_pool(cfg, n):
    """Channels of the map that pool n (0-based) receives: the last conv width before it."""
    pool = [i for i, v in enumerate(cfg) if v == "M"][n]
    return [v for v in cfg[:pool] if v != "M"][-1]


# ================================================================ VGG16 weights
def _vgg16_state(source):
    """A VGG16 state_dict from a model, a dict, or a ``td.save`` file."""
    if isinstance(source, nn.Module):
        return source.state_dict()
    if isinstance(source, dict):
        return source
    import tinydl as td
    loaded = td.load(source)
    if not isinstance(loaded, dict):
        raise TypeError(f"pretrained_backbone: {source!r} holds a {type(loaded).__name__}, not a state_dict")
    return loaded


def load_vgg16_backbone(model, source, fc=True):
    """Copy VGG16's conv weights (``features.*``) and, with ``fc``, fc6/fc7 reshaped to
    convolutions (``classifier.0`` / ``.3``) from ``source`` into ``model``.
    Returns the list of copied keys."""
    state = _vgg16_state(source)
    if fc:
        state = vgg_fc_to_conv(state)
    own = model.state_dict()
    wanted = [k for k in own if k.startswith("features.") or (fc and k.split(".")[:2] in
                                                               (["classifier", "0"], ["classifier", "3"]))]
    missing = [k for k in wanted if k not in state]
    if missing:
        raise KeyError(f"pretrained_backbone: not a VGG16 state_dict, missing {missing[:4]}")
    model.load_state_dict({k: state[k] for k in wanted}, strict=False)
    return wanted


def _build(stride, num_classes, pretrained_backbone, backbone, dropout):
    model = FCN(stride, num_classes, backbone, dropout)
    if pretrained_backbone is not None:
        if backbone != "vgg16":
            raise ValueError("FCN: pretrained_backbone needs backbone='vgg16'")
        load_vgg16_backbone(model, pretrained_backbone)
    return model


@register
def fcn32s(num_classes=21, pretrained_backbone=None, backbone="vgg16", dropout=0.5):
    """FCN-32s: score_fr upsampled 32x in one step (crop 19 on VGG16)."""
    return _build(32, num_classes, pretrained_backbone, backbone, dropout)


@register
def fcn16s(num_classes=21, pretrained_backbone=None, backbone="vgg16", dropout=0.5):
    """FCN-16s: 2x score_fr + score_pool4, upsampled 16x."""
    return _build(16, num_classes, pretrained_backbone, backbone, dropout)


@register
def fcn8s(num_classes=21, pretrained_backbone=None, backbone="vgg16", dropout=0.5):
    """FCN-8s: 2x score_fr + score_pool4, 2x that + score_pool3, upsampled 8x."""
    return _build(8, num_classes, pretrained_backbone, backbone, dropout)
