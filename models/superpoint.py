"""SuperPoint and MagicPoint (DeTone, Malisiewicz & Rabinovich 2018; seed 000).

One shared VGG-style encoder takes a grey image (N, 1, H, W) to 1/8 of its size,
then two heads read it::

    conv1a conv1b  64  ->  pool  ->  conv2a conv2b  64  ->  pool  ->
    conv3a conv3b 128  ->  pool  ->  conv4a conv4b 128                (N, 128, H/8, W/8)
    detector head:   convPa 3x3 -> 256, ReLU, convPb 1x1 -> 65       (N, 65, H/8, W/8)
    descriptor head: convDa 3x3 -> 256, ReLU, convDb 1x1 -> 256, L2-normalised per cell

(3x3 convs with padding 1, each followed by ReLU; 2x2/2 max pools.) On the notes'
120 x 160 image the heads are 65 x 15 x 20 and 256 x 15 x 20.

Detector head: each 8x8 cell of the image is one 65-way classification: "the
keypoint of this cell is at position 0..63" (row-major inside the cell) or 64,
the "no interest point" dustbin. The loss is the softmax cross-entropy per cell
averaged over the Hc x Wc cells (``detector_loss``), computed from log-softmax
so that the large logits the notes ran into (0..80 in some cells) cannot
overflow exp. The heatmap is the softmax with the dustbin dropped, put back to
full resolution by depth-to-space (``pixel_shuffle(8)``: channel i*8 + j of cell
(h, w) becomes pixel (8h + i, 8w + j)) -- no transposed convolution, hence no
checkerboard artefacts. Keypoints: heatmap >= 0.015 (about 1/65), then NMS
(radius 4), as the authors' demo.

Descriptor head: a 256-d descriptor per cell, L2-normalised; a keypoint's
descriptor is the coarse map sampled bilinearly at its position
(``sample_descriptors``), a dense full-resolution map is the coarse one
upsampled bicubically and renormalised (``dense_descriptors``).

MagicPoint is the detector alone (no descriptor head), trained on synthetic
shapes whose corners are known (``tinydl.data.synthetic.SyntheticShapes``,
``examples/train_magicpoint.py``). Module names are those of the authors'
SuperPointNet, so their state_dict keys match. Parameters: superpoint
1,300,865; magicpoint 939,905. ``channels``/``head_channels`` make narrower
versions for CPU training; ``batch_norm=True`` adds BN after every 3x3 conv
(as the TensorFlow reimplementations do).
"""
import tinydl as td
import tinydl.nn as nn
import tinydl.nn.functional as F
from tinydl.vision.ops import heatmap_nms, sample_descriptors

from models import register

__all__ = ["SuperPoint", "superpoint", "magicpoint", "detector_loss", "logits_to_heatmap",
           "detect_keypoints", "dense_descriptors", "CELL"]

CELL = 8            # the encoder's stride: one 65-way classification per 8x8 cell


class SuperPoint(nn.Module):
    """Encoder + detector head (+ descriptor head unless ``descriptor_dim`` is None).

    ``forward(x)`` with x (N, in_channels, H, W), H and W multiples of 8, returns
    the detector logits (N, 65, H/8, W/8) and, with a descriptor head, the
    L2-normalised descriptors (N, descriptor_dim, H/8, W/8) as a tuple.
    """

    def __init__(self, descriptor_dim=256, channels=(64, 64, 128, 128), head_channels=256, in_channels=1,
                 batch_norm=False):
        super().__init__()
        if len(channels) != 4:
            raise ValueError(f"SuperPoint: channels must list the 4 encoder widths, got {channels}")
        c1, c2, c3, c4 = (int(c) for c in channels)
        self.channels, self.descriptor_dim = (c1, c2, c3, c4), descriptor_dim

        def conv(name, cin, cout, k=3, bn=True):
            setattr(self, "conv" + name, nn.Conv2d(cin, cout, k, padding=k // 2))
            if k == 3:     # every 3x3 conv is followed by ReLU (and BN if asked)
                setattr(self, "bn" + name, nn.BatchNorm2d(cout) if batch_norm and bn else nn.Identity())

        conv("1a", in_channels, c1), conv("1b", c1, c1)
        conv("2a", c1, c2), conv("2b", c2, c2)
        conv("3a", c2, c3), conv("3b", c3, c3)
        conv("4a", c3, c4), conv("4b", c4, c4)
        conv("Pa", c4, head_channels), conv("Pb", head_channels, CELL * CELL + 1, k=1)
        if descriptor_dim:
            conv("Da", c4, head_channels), conv("Db", head_channels, int(descriptor_dim), k=1)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)

    def _block(self, x, name):
        return self.relu(getattr(self, "bn" + name)(getattr(self, "conv" + name)(x)))

    def encode(self, x):
        """(N, C, H, W) -> shared features (N, c4, H/8, W/8)."""
        if x.ndim != 4 or x.shape[2] % CELL or x.shape[3] % CELL:
            raise RuntimeError(f"SuperPoint: expected an (N, C, H, W) input with H and W multiples of {CELL}, "
                               f"got shape {x.shape}")
        for stage in ("1", "2", "3", "4"):
            x = self._block(self._block(x, stage + "a"), stage + "b")
            if stage != "4":
                x = self.pool(x)
        return x

    def forward(self, x):
        features = self.encode(x)
        logits = self.convPb(self._block(features, "Pa"))
        if not self.descriptor_dim:
            return logits
        descriptors = F.normalize(self.convDb(self._block(features, "Da")), p=2, dim=1)
        return logits, descriptors

    @td.no_grad()
    def detect(self, x, threshold=0.015, nms_radius=4, top_k=None, border=4):
        """Keypoints of a batch of images: lists (one entry per image) of points
        (K, 2) (x, y) and scores (K,), plus descriptors (D, K) with a descriptor head.
        Runs under no_grad; call ``model.eval()`` first when it has batch norm."""
        out = self(x)
        logits, descriptors = out if self.descriptor_dim else (out, None)
        points, scores = detect_keypoints(logits_to_heatmap(logits), threshold, nms_radius, top_k, border)
        if descriptors is None:
            return points, scores
        descs = [sample_descriptors(descriptors[i], td.Tensor(p), cell=CELL) for i, p in enumerate(points)]
        return points, scores, descs


# ================================================================ head utilities
def detector_loss(logits, labels):
    """SuperPoint's detector loss: the mean over cells of the 65-way softmax
    cross-entropy  l = -log(exp(x_y) / sum_k exp(x_k)),  logits (N, 65, Hc, Wc),
    labels (N, Hc, Wc) int64 in 0..64 (64 = dustbin; ``keypoints_to_label``).

    ``F.cross_entropy`` computes it as -(x_y - max x) + log sum exp(x - max x), so
    logits of 1e4 give a finite loss; the untrained value is about -log(1/65) = 4.17,
    the figure the notes found at the start of every run.
    """
    if logits.ndim != 4 or logits.shape[1] != CELL * CELL + 1:
        raise RuntimeError(f"detector_loss: expected logits (N, {CELL * CELL + 1}, Hc, Wc), got {logits.shape}")
    if tuple(labels.shape) != (logits.shape[0],) + tuple(logits.shape[2:]):
        raise RuntimeError(f"detector_loss: labels of shape {tuple(labels.shape)} do not match logits of "
                           f"shape {logits.shape}: expected {(logits.shape[0],) + tuple(logits.shape[2:])}")
    return F.cross_entropy(logits, labels)


def logits_to_heatmap(logits, cell=CELL):
    """(N, cell^2 + 1, Hc, Wc) logits -> (N, Hc*cell, Wc*cell) keypoint probabilities:
    softmax over the 65 classes, dustbin dropped, depth-to-space."""
    prob = F.softmax(logits, dim=1)[:, :cell * cell]
    return F.pixel_shuffle(prob, cell)[:, 0]


def detect_keypoints(heatmap, threshold=0.015, nms_radius=4, top_k=None, border=4):
    """``heatmap_nms`` over a batch of heatmaps (N, H, W): lists of points (K, 2) and scores (K,).
    ``border`` drops points that close to the image edge (SuperPoint's demo: 4)."""
    return heatmap_nms(heatmap.detach() if isinstance(heatmap, td.Tensor) else heatmap,
                       radius=nms_radius, threshold=threshold, top_k=top_k, border=border)


def dense_descriptors(descriptors, cell=CELL, mode="bicubic"):
    """The coarse (N, D, Hc, Wc) descriptor map at full resolution (N, D, Hc*cell, Wc*cell):
    interpolated ('bicubic' or 'bilinear') and L2-normalised again per pixel."""
    up = F.interpolate(descriptors, scale_factor=cell, mode=mode, align_corners=False)
    return F.normalize(up, p=2, dim=1)


# ================================================================ builders
@register
def superpoint(descriptor_dim=256, **kwargs):
    """SuperPoint: shared encoder, 65-channel detector head, ``descriptor_dim`` descriptor head."""
    return SuperPoint(descriptor_dim=descriptor_dim, **kwargs)


@register
def magicpoint(**kwargs):
    """MagicPoint: SuperPoint's encoder and detector head only (forward returns the logits)."""
    return SuperPoint(descriptor_dim=None, **kwargs)
