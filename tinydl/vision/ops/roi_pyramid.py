"""RoI spatial pyramid pooling: SPP-net's detector (He et al. 2014; seed 001).

SPP-net runs the convolutions once on the whole image; each proposal is then
projected onto the conv5 map and pooled by a spatial pyramid (the paper: 1x1,
2x2, 3x3, 6x6 = 50 bins), whatever its size, into a fixed-length vector for fc6.

Each level l is RoI max pooling into an l x l grid (``roi_pool``; Fast R-CNN's
RoI pooling is exactly this with the single level 7), so the pyramid is

    y = concat over levels l of roi_pool(x, boxes, (l, l), spatial_scale).flatten(1)

of length C * sum(l * l), level by level, each level channel-major (as
``spatial_pyramid_pool`` on a whole map). Its gradient is roi_pool's per level,
added up where the levels pick the same cell.

Box corners are projected as ``roi_pool`` does (rounded, ``x * spatial_scale``),
not by the paper's floor(x/S)+1 / ceil(x/S)-1 rule: the bins differ by at most a
cell at the edges.
"""
from ...nn import Module
from ...ops.shape import cat
from .pooling import _check_levels, spp_num_features
from .roi import RoIPoolFunction, _checked_rois

__all__ = ["roi_spatial_pyramid_pool", "RoISpatialPyramidPool"]


def roi_spatial_pyramid_pool(input, boxes, levels=(1, 2, 4), spatial_scale=1.0):
    """(N, C, H, W) features and K boxes ((K, 5) [batch_index, x1, y1, x2, y2] or a list of
    (K_i, 4) per image, in image pixels) -> (K, C * sum(l*l)), differentiable w.r.t. input."""
    levels = _check_levels(levels, "roi_spatial_pyramid_pool")
    rois = _checked_rois(input, boxes, spatial_scale)          # once, not per level
    return cat([RoIPoolFunction.apply(input, rois, output_size=(l, l), spatial_scale=float(spatial_scale))
                .flatten(1) for l in levels], dim=1)


class RoISpatialPyramidPool(Module):
    """``roi_spatial_pyramid_pool`` as a layer: ``RoISpatialPyramidPool((1, 2, 4), 1/16)(features, rois)``."""

    def __init__(self, levels=(1, 2, 4), spatial_scale=1.0):
        super().__init__()
        self.levels = _check_levels(levels, "RoISpatialPyramidPool")
        self.spatial_scale = float(spatial_scale)

    def num_features(self, channels):
        """Output length for a ``channels``-channel map."""
        return spp_num_features(channels, self.levels)

    def forward(self, input, boxes):
        return roi_spatial_pyramid_pool(input, boxes, self.levels, self.spatial_scale)

    def extra_repr(self):
        return f"levels={self.levels}, spatial_scale={self.spatial_scale}"
