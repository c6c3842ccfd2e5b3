"""RoI (region of interest) max pooling, as ``torchvision.ops.roi_pool`` (Fast/Faster R-CNN).

Each box, given in image pixels, is projected onto the feature map by
``spatial_scale`` (1/16 for VGG16's conv5), cut into an ``oh x ow`` grid of
bins, and each bin is max-pooled: every box, whatever its size, becomes a fixed
(C, oh, ow) block that the fully connected head can take. Bin edges follow
torchvision exactly (see ``tinydl/kernels/detection.py``): corners rounded
half away from zero, ``roi_w = max(x2' - x1' + 1, 1)`` cells, bin pw covering
columns ``[floor(pw * roi_w / ow), ceil((pw + 1) * roi_w / ow))`` from x1',
clipped to the map; an empty bin outputs 0.

Gradient: a bin's output *is* one input cell (its argmax), so

    dL/dx[b, c, h, w] = sum of dL/dy[k, c, ph, pw] over the bins (k, ph, pw)
                        of image b whose argmax is (h, w)

(overlapping boxes can pick the same cell: their gradients add up). The boxes
get no gradient: they only choose where to look.
"""
from ...autograd import Function
from ...backend import get_array_module
from ...kernels.detection import roi_pool_backward, roi_pool_forward
from ...nn import Module
from ...args import pair
from ...tensor import Tensor
from .boxes import _unwrap

__all__ = ["roi_pool", "RoIPool"]


class RoIPoolFunction(Function):
    """y[k, c, ph, pw] = max of x[batch_k, c] over bin (ph, pw) of box k; argmax kept for backward.

    Forward: kernels.roi_pool_forward (Numba loop / NumPy gather).
    Backward: gx[batch_k, c].flat[argmax[k, c, ph, pw]] += gy[k, c, ph, pw]
              (kernels.roi_pool_backward; empty bins, argmax -1, send nothing).
    """

    def forward(ctx, x, rois, *, output_size, spatial_scale):
        y, argmax = roi_pool_forward(x, rois, output_size, spatial_scale)
        xp = get_array_module(x)
        ctx.save_for_backward(argmax, rois[:, 0].astype(xp.int64))
        ctx.x_shape = x.shape
        return y

    def backward(ctx, gy):
        argmax, batch = ctx.saved_tensors
        return roi_pool_backward(gy, argmax, batch, ctx.x_shape), None


def _output_size(output_size):
    output_size = pair(output_size, "output_size", "roi_pool")
    if min(output_size) < 1:
        raise ValueError(f"roi_pool: output_size must be a positive int or (height, width), got {output_size!r}")
    return output_size


def _rois(boxes, x):
    """(K, 5) rois [batch_index, x1, y1, x2, y2] in x's dtype, from a (K, 5) Tensor/array
    or a list of (Ki, 4) boxes per image (then batch_index = position in the list)."""
    xp = get_array_module(x)
    N = x.shape[0]
    if isinstance(boxes, (list, tuple)):
        if len(boxes) != N:
            raise ValueError(f"roi_pool: got a list of {len(boxes)} box sets for a batch of {N} images")
        parts = []
        for i, b in enumerate(boxes):
            b, _ = _unwrap(b)
            if b.ndim != 2 or b.shape[1] != 4:
                raise ValueError(f"roi_pool: boxes[{i}] must have shape (K, 4) as (x1, y1, x2, y2), "
                                 f"got {tuple(b.shape)}")
            b = xp.asarray(b, dtype=x.dtype)
            parts.append(xp.concatenate([xp.full((b.shape[0], 1), i, dtype=x.dtype), b], axis=1))
        return xp.concatenate(parts, axis=0) if parts else xp.zeros((0, 5), dtype=x.dtype)
    rois, _ = _unwrap(boxes)
    if rois.ndim != 2 or rois.shape[1] != 5:
        raise ValueError(f"roi_pool: boxes must be a (K, 5) Tensor [batch_index, x1, y1, x2, y2] or a list "
                         f"of (Ki, 4) Tensors, got shape {tuple(rois.shape)}")
    if get_array_module(rois) is not xp:
        raise ValueError("roi_pool: boxes and input must be on the same device")
    rois = rois.astype(x.dtype, copy=False)
    if rois.shape[0]:
        b = rois[:, 0].astype(xp.int64)
        lo, hi = int(b.min()), int(b.max())
        if lo < 0 or hi >= N:
            raise IndexError(f"roi_pool: batch index out of range: got indices in [{lo}, {hi}] "
                             f"for an input batch of {N}")
    return xp.ascontiguousarray(rois)


def roi_pool(input, boxes, output_size, spatial_scale=1.0):
    """RoI max pooling, as ``torchvision.ops.roi_pool``.

    input: (N, C, H, W) Tensor. boxes: (K, 5) Tensor [batch_index, x1, y1, x2, y2]
    in image coordinates, or a list of N (Ki, 4) Tensors. output_size: int or
    (oh, ow). spatial_scale: feature cells per image pixel. Returns (K, C, oh, ow),
    differentiable w.r.t. ``input``.
    """
    rois = _checked_rois(input, boxes, spatial_scale)
    return RoIPoolFunction.apply(input, rois, output_size=_output_size(output_size),
                                 spatial_scale=float(spatial_scale))


def _checked_rois(input, boxes, spatial_scale):
    """roi_pool's argument checks; the (K, 5) rois of ``boxes`` (``_rois``)."""
    if not isinstance(input, Tensor):
        raise TypeError(f"roi_pool: input must be a Tensor, got {type(input).__name__}")
    if input.ndim != 4:
        raise ValueError(f"roi_pool: input must be (N, C, H, W), got shape {input.shape}")
    if input.dtype.kind != "f":
        raise TypeError(f"roi_pool: input must be floating point, got {input.dtype}")
    if not spatial_scale > 0:
        raise ValueError(f"roi_pool: spatial_scale must be > 0, got {spatial_scale}")
    return _rois(boxes, input.array)


class RoIPool(Module):
    """``nn.Module`` wrapper of :func:`roi_pool`: ``RoIPool((7, 7), 1/16)(features, rois)``."""

    def __init__(self, output_size, spatial_scale):
        super().__init__()
        self.output_size = _output_size(output_size)
        self.spatial_scale = float(spatial_scale)

    def forward(self, input, rois):
        return roi_pool(input, rois, self.output_size, self.spatial_scale)

    def extra_repr(self):
        return f"output_size={self.output_size}, spatial_scale={self.spatial_scale}"
