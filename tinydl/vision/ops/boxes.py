"""Box utilities with torchvision.ops' names: area, IoU, format conversion,
clipping, small-box removal and non-maximum suppression.

Convention: a box is ``(x1, y1, x2, y2)`` in pixels with ``x1 <= x2``, ``y1 <= y2``
and no "+1": its width is ``x2 - x1`` (a box from x=2 to x=5 is 3 wide), as in
torchvision. (py-faster-rcnn's boxes are inclusive pixel indices; add 1 to its
x2, y2 to get ours.)

Every function takes Tensors or arrays (NumPy or CuPy) and returns the same kind
it was given: Tensor in -> Tensor out, array in -> array out. None of them is
differentiable (they return index sets, or are used on detached boxes); a Tensor
result never requires grad.

IoU (intersection over union) of boxes A and B:

    inter = max(0, min(A.x2, B.x2) - max(A.x1, B.x1)) * max(0, min(A.y2, B.y2) - max(A.y1, B.y1))
    IoU   = inter / (area(A) + area(B) - inter)

NMS (non-maximum suppression): among boxes that overlap a higher-scoring kept
box by IoU > threshold, keep only that box; see ``tinydl/kernels/detection.py``
for the three implementations (NumPy, Numba, GPU) that give identical results.
"""
import numpy as np

from ...backend import get_array_module
from ...kernels.detection import box_inter_union, nms_kernel
from ...tensor import Tensor

__all__ = ["box_area", "box_iou", "box_convert", "clip_boxes_to_image", "remove_small_boxes",
           "nms", "batched_nms"]


# ---------------------------------------------------------------- Tensor or array
def _unwrap(x):
    """(array, was_tensor): the raw array of a Tensor, or the array itself (lists -> NumPy)."""
    if isinstance(x, Tensor):
        return x.array, True
    if isinstance(x, np.ndarray) or type(x).__module__.startswith("cupy"):
        return x, False
    return np.asarray(x), False


def _wrap(a, as_tensor):
    return Tensor(a) if as_tensor else a


def _check_boxes(op, boxes, name="boxes", ndim=2):
    """Boxes must be (N, 4) (or (..., 4) with ndim=None)."""
    if boxes.shape[-1:] != (4,) or (ndim is not None and boxes.ndim != ndim):
        want = "(N, 4)" if ndim == 2 else "(..., 4)"
        raise ValueError(f"{op}: {name} must have shape {want} as (x1, y1, x2, y2), got shape {tuple(boxes.shape)}")


# ---------------------------------------------------------------- geometry
def box_area(boxes):
    """Area ``(x2 - x1) * (y2 - y1)`` of each box: (N, 4) -> (N,)."""
    b, t = _unwrap(boxes)
    _check_boxes("box_area", b, ndim=None)
    return _wrap((b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1]), t)


def box_iou(boxes1, boxes2):
    """Pairwise IoU: (N, 4) and (M, 4) -> (N, M); ``iou[i, j]`` is IoU(boxes1[i], boxes2[j]).

    Two degenerate (zero-area) boxes give 0/0 = NaN, as in torchvision.
    """
    b1, t1 = _unwrap(boxes1)
    b2, t2 = _unwrap(boxes2)
    _check_boxes("box_iou", b1, "boxes1")
    _check_boxes("box_iou", b2, "boxes2")
    inter, union = box_inter_union(b1, b2)
    with np.errstate(divide="ignore", invalid="ignore"):
        return _wrap(inter / union, t1 or t2)


_FORMATS = ("xyxy", "xywh", "cxcywh")


def box_convert(boxes, in_fmt, out_fmt):
    """Convert between 'xyxy' (corners), 'xywh' (top-left corner, size) and
    'cxcywh' (centre, size), as ``torchvision.ops.box_convert``."""
    for name, fmt in (("in_fmt", in_fmt), ("out_fmt", out_fmt)):
        if fmt not in _FORMATS:
            raise ValueError(f"box_convert: {name} must be one of {_FORMATS}, got {fmt!r}")
    b, t = _unwrap(boxes)
    _check_boxes("box_convert", b, ndim=None)
    xp = get_array_module(b)
    if in_fmt == out_fmt:
        return _wrap(b.copy(), t)
    a0, a1, a2, a3 = (b[..., k] for k in range(4))
    if in_fmt == "xywh":            # -> corners
        a2, a3 = a0 + a2, a1 + a3
    elif in_fmt == "cxcywh":
        a0, a1, a2, a3 = a0 - a2 / 2, a1 - a3 / 2, a0 + a2 / 2, a1 + a3 / 2
    if out_fmt == "xywh":           # corners ->
        a2, a3 = a2 - a0, a3 - a1
    elif out_fmt == "cxcywh":
        a0, a1, a2, a3 = (a0 + a2) / 2, (a1 + a3) / 2, a2 - a0, a3 - a1
    out = xp.stack([a0, a1, a2, a3], axis=-1)
    if b.dtype.kind == "f":  # float32 stays float32 (int boxes may become float at the halves)
        out = out.astype(b.dtype, copy=False)
    return _wrap(out, t)


def clip_boxes_to_image(boxes, size):
    """Clip boxes to an image of ``size = (height, width)``: x into [0, width], y into [0, height]."""
    b, t = _unwrap(boxes)
    _check_boxes("clip_boxes_to_image", b, ndim=None)
    xp = get_array_module(b)
    h, w = size
    out = b.copy()
    out[..., 0::2] = xp.clip(b[..., 0::2], 0, w)
    out[..., 1::2] = xp.clip(b[..., 1::2], 0, h)
    return _wrap(out, t)


def remove_small_boxes(boxes, min_size):
    """Indices (int64) of the boxes whose width and height are both >= ``min_size``."""
    b, t = _unwrap(boxes)
    _check_boxes("remove_small_boxes", b)
    xp = get_array_module(b)
    keep = ((b[:, 2] - b[:, 0]) >= min_size) & ((b[:, 3] - b[:, 1]) >= min_size)
    return _wrap(xp.nonzero(keep)[0].astype(xp.int64), t)


# ---------------------------------------------------------------- NMS
def _nms_args(op, boxes, scores, idxs=None):
    b, t = _unwrap(boxes)
    s, ts = _unwrap(scores)
    _check_boxes(op, b)
    if s.shape != (b.shape[0],):
        raise ValueError(f"{op}: scores must have shape (N,) = ({b.shape[0]},) to match boxes {tuple(b.shape)}, "
                         f"got {tuple(s.shape)}")
    if get_array_module(b) is not get_array_module(s):
        raise ValueError(f"{op}: boxes and scores must be on the same device")
    if idxs is not None:
        i, _ = _unwrap(idxs)
        if i.shape != (b.shape[0],):
            raise ValueError(f"{op}: idxs must have shape (N,) = ({b.shape[0]},), got {tuple(i.shape)}")
        return b, s, i, t or ts
    return b, s, None, t or ts


def nms(boxes, scores, iou_threshold):
    """Non-maximum suppression, as ``torchvision.ops.nms``.

    Visit boxes by decreasing score and drop every box whose IoU with an already
    kept box is > ``iou_threshold``. Returns the kept indices (int64), by
    decreasing score; equal scores are visited lower index first.
    """
    b, s, _, t = _nms_args("nms", boxes, scores)
    return _wrap(nms_kernel(b, s, float(iou_threshold)), t)


def batched_nms(boxes, scores, idxs, iou_threshold):
    """NMS done independently per category ``idxs[i]``, as ``torchvision.ops.batched_nms``:
    boxes of different categories never suppress each other. Returns the kept
    indices (int64) by decreasing score.

    (torchvision shifts each category's boxes far apart and runs one NMS; we skip
    cross-category pairs inside the kernel instead, which is exact.)
    """
    b, s, i, t = _nms_args("batched_nms", boxes, scores, idxs)
    return _wrap(nms_kernel(b, s, float(iou_threshold), i), t)
