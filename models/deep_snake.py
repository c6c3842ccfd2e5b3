"""Deep Snake (Peng et al., CVPR 2020; seed 004): contour-based instance segmentation.

A classic snake moves the vertices of an initial contour to minimise an energy;
Deep Snake *learns* the move: a network over the contour's vertices predicts
one (dx, dy) offset per vertex, and a few iterations pull an initial octagon
(built from a detected box) onto the object's boundary.

The contour is a closed ring of V vertices, so the network convolves along the
ring with circular convolution (``tinydl.vision.ops.circular_conv1d``: vertex 0
and vertex V-1 are neighbours). One deformation step (``Snake``):

    input    (N, C + 2, V): image features sampled bilinearly at each vertex
             (``sample_points``, the one sampling core) and the vertex coordinates
             relative to the contour's top-left (translation-invariant)
    backbone 8 "CircConv-BN-ReLU" blocks, kernel 9, state 128 channels, dilations
             1, 1, 1, 1, 2, 2, 4, 4; every block after the first adds its input
             (residual)
    fusion   the 8 block outputs concatenated (8*128), 1x1 conv to 256, max over
             the vertices: one global vector, repeated at every vertex and
             concatenated to the 8 outputs
    head     1x1 convs 1280 -> 256 -> 64 -> 2 (ReLU between): the offsets

``DeepSnake`` adds a small CNN that computes the feature map once per image
(two 3x3 conv-BN-ReLU per stage, each stage after the first at half the size:
1/4 with the default three stages, as the paper's CenterNet DLA-34 features) and applies
``iterations`` Snakes (3 in the paper), each starting from the previous
contour (detached: each step learns to correct the contour it is given).
Training: smooth L1 between every iteration's vertices and the true contour's
(``snake_loss``), the vertices matched by index (``SyntheticContours`` makes
vertex k of the initial contour correspond to vertex k of the true one).

Coordinates are (x, y) pixels of the input image, pixel centres at integers; a
feature cell of stride s covers pixels [s*j, s*j + s), so pixel x reads the
feature map at (x + 0.5) / s - 0.5.
"""
import tinydl as td
import tinydl.nn as nn
import tinydl.nn.functional as F
from tinydl.vision.ops import CircConv1d, sample_points

from models import register

__all__ = ["CircBlock", "Snake", "DeepSnake", "deep_snake", "snake_loss", "DILATIONS"]

DILATIONS = (1, 1, 1, 1, 2, 2, 4, 4)     # the paper's 8 backbone blocks


class CircBlock(nn.Module):
    """CircConv -> BatchNorm1d -> ReLU over (N, C, V) vertex features."""

    def __init__(self, in_channels, out_channels, kernel_size=9, dilation=1):
        super().__init__()
        self.conv = CircConv1d(in_channels, out_channels, kernel_size, dilation=dilation)
        self.norm = nn.BatchNorm1d(out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.norm(self.conv(x)))


class Snake(nn.Module):
    """One deformation step: (N, in_channels, V) vertex inputs -> (N, 2, V) offsets."""

    def __init__(self, in_channels, state_dim=128, fusion_dim=256, kernel_size=9, dilations=DILATIONS,
                 head_dims=(256, 64)):
        super().__init__()
        self.head = CircBlock(in_channels, state_dim, kernel_size, dilations[0])
        self.res = nn.ModuleList([CircBlock(state_dim, state_dim, kernel_size, d) for d in dilations[1:]])
        concat = state_dim * len(dilations)
        self.fusion = nn.Conv1d(concat, fusion_dim, 1)
        layers, width = [], concat + fusion_dim
        for d in head_dims:
            layers += [nn.Conv1d(width, d, 1), nn.ReLU(inplace=True)]
            width = d
        self.prediction = nn.Sequential(*layers, nn.Conv1d(width, 2, 1))

    def forward(self, x):
        states = [self.head(x)]
        for block in self.res:
            states.append(block(states[-1]) + states[-1])
        state = td.cat(states, dim=1)                                    # (N, 8*state, V)
        fused = self.fusion(state).max(dim=2, keepdim=True)[0]           # (N, fusion, 1): global
        fused = fused.expand(fused.shape[0], fused.shape[1], state.shape[2])
        return self.prediction(td.cat([fused, state], dim=1))


def _conv_bn_relu(cin, cout, stride=1):
    return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True)]


class DeepSnake(nn.Module):
    """Feature CNN + ``iterations`` Snakes.

    ``forward(images, contours)`` with images (N, in_channels, H, W) and initial
    contours (N, V, 2) (x, y pixels) returns the list of the ``iterations``
    deformed contours (N, V, 2), the last one the prediction.
    """

    def __init__(self, in_channels=1, feature_channels=64, backbone_channels=(32, 32, 64), iterations=3,
                 state_dim=128, fusion_dim=256, kernel_size=9, dilations=DILATIONS, head_dims=(256, 64)):
        super().__init__()
        if not backbone_channels:
            raise ValueError("DeepSnake: backbone_channels must list at least one stage width")
        layers, width = [], in_channels
        for i, c in enumerate(backbone_channels):       # each stage after the first halves the size
            layers += _conv_bn_relu(width, c, stride=1 if i == 0 else 2) + _conv_bn_relu(c, c)
            width = c
        layers.append(nn.Conv2d(width, feature_channels, 1))
        self.backbone = nn.Sequential(*layers)
        self.stride = 2 ** (len(backbone_channels) - 1)
        self.snakes = nn.ModuleList([Snake(feature_channels + 2, state_dim, fusion_dim, kernel_size, dilations,
                                           head_dims) for _ in range(iterations)])

    def vertex_features(self, features, contours):
        """(N, F + 2, V): features read at each vertex + coordinates relative to the contour's min corner."""
        at = (contours + 0.5) * (1.0 / self.stride) - 0.5                # pixels -> feature-map coordinates
        sampled = sample_points(features, at)                            # (N, F, V)
        canonical = contours - contours.min(dim=1, keepdim=True)[0]      # (N, V, 2)
        return td.cat([sampled, canonical.permute(0, 2, 1)], dim=1)

    def forward(self, images, contours):
        if contours.ndim != 3 or contours.shape[2] != 2 or contours.shape[0] != images.shape[0]:
            raise RuntimeError(f"DeepSnake: expected contours (N, V, 2) with N = {images.shape[0]} images, "
                               f"got {contours.shape}")
        features = self.backbone(images)
        out = []
        for snake in self.snakes:
            contours = contours.detach()
            offsets = snake(self.vertex_features(features, contours))  # (N, 2, V)
            contours = contours + offsets.permute(0, 2, 1)
            out.append(contours)
        return out


def snake_loss(predictions, target, beta=1.0):
    """Mean over iterations of smooth L1 (``beta``, in pixels) between the predicted
    and the true vertices (N, V, 2), matched by index."""
    if not isinstance(predictions, (list, tuple)):
        predictions = [predictions]
    for p in predictions:
        if p.shape != target.shape:
            raise RuntimeError(f"snake_loss: predicted contours of shape {p.shape} do not match the target "
                               f"{target.shape}")
    return sum(F.smooth_l1_loss(p, target, beta=beta) for p in predictions) * (1.0 / len(predictions))


@register
def deep_snake(in_channels=1, iterations=3, state_dim=128, **kwargs):
    """Deep Snake: a feature CNN at 1/4 and 3 circular-convolution snakes (state 128)."""
    return DeepSnake(in_channels=in_channels, iterations=iterations, state_dim=state_dim, **kwargs)
