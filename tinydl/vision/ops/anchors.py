"""Anchors and the region proposal network's (RPN) bookkeeping, as in Faster R-CNN.

None of this is differentiable: it decides *which* anchors are trained and
*what* their targets are; the losses are then ordinary ops on the network's
outputs at those indices.

Convention: boxes are ``(x1, y1, x2, y2)`` with no "+1" (width = x2 - x1), as in
torchvision. py-faster-rcnn writes boxes as inclusive pixel indices; its box
``[x1, y1, x2, y2]`` is our ``[x1, y1, x2 + 1, y2 + 1]``.

The pipeline (one image; feature map H x W at ``stride`` pixels per cell, A
anchors per cell):

    base  = generate_anchors()                       (A, 4), centred on cell (0, 0)
    all   = grid_anchors(base, (H, W), stride)       (H*W*A, 4)
    # training targets of the RPN
    gt_index, labels = match_boxes(all, gt_boxes)    labels 1 fg / 0 bg / -1 ignore
    pos, neg = sample_labels(labels, 256, 0.5)       at most 128 fg, the rest bg
    targets = encode_boxes(gt_boxes[gt_index[pos]], all[pos])
    # proposals for the detection head
    boxes, scores = select_proposals(all, objectness, deltas, (img_h, img_w))

Functions take Tensors or arrays (NumPy/CuPy) and return the same kind.
"""
import math

import numpy as np

from ...backend import as_generator, get_array_module, rng_for, to_host
from .boxes import _check_boxes, _unwrap, _wrap
from ...kernels.detection import argsort_descending, box_inter_union, nms_kernel

__all__ = ["generate_anchors", "grid_anchors", "encode_boxes", "decode_boxes", "select_proposals",
           "sample_labels", "match_boxes", "hard_negative_mining"]


# ---------------------------------------------------------------- anchors
def generate_anchors(base_size=16, ratios=(0.5, 1, 2), scales=(8, 16, 32), dtype=np.float32):
    """The classic Faster R-CNN base anchors: one per (ratio, scale), ratio-major.

    For each aspect ratio r = height / width, a base_size x base_size square is
    reshaped to the same area with that ratio, sides rounded to whole pixels
    (``w = round(sqrt(base_size**2 / r))``, ``h = round(w * r)``), then
    multiplied by each scale. Every anchor is centred on the centre of the
    first stride cell, ``(base_size / 2, base_size / 2)``.

    Defaults give py-faster-rcnn's 9 anchors (e.g. ``[-84, -40, 99, 55]`` for
    ratio 0.5, scale 8, i.e. 184 x 96 pixels) in our no-"+1" convention:
    ``[-84, -40, 100, 56]``. Returns a NumPy (len(ratios) * len(scales), 4) array.
    """
    c = base_size / 2.0
    rows = []
    for r in ratios:
        # np.round (half to even), as py-faster-rcnn
        w0 = np.round(math.sqrt(base_size * base_size / r))
        h0 = np.round(w0 * r)
        for s in scales:
            w, h = w0 * s, h0 * s
            rows.append([c - w / 2, c - h / 2, c + w / 2, c + h / 2])
    return np.array(rows, dtype=dtype).reshape(-1, 4)


def grid_anchors(base_anchors, feature_size, stride):
    """Place the base anchors at every cell of an (H, W) feature map.

    The anchor ``a`` of cell (y, x) is ``base_anchors[a]`` shifted by
    ``(x * stride_w, y * stride_h)``. Returns (H*W*A, 4) ordered (y, x, anchor):
    row ``(y * W + x) * A + a`` -- the order of an RPN head output (N, A*4, H, W)
    permuted to (N, H, W, A, 4). ``stride``: an int or (stride_h, stride_w).
    """
    base, t = _unwrap(base_anchors)
    _check_boxes("grid_anchors", base, "base_anchors")
    xp = get_array_module(base)
    H, W = (int(v) for v in feature_size)
    sh, sw = (stride, stride) if np.isscalar(stride) else stride
    sx = xp.arange(W, dtype=base.dtype) * base.dtype.type(sw)
    sy = xp.arange(H, dtype=base.dtype) * base.dtype.type(sh)
    shift_y, shift_x = xp.meshgrid(sy, sx, indexing="ij")                  # (H, W)
    shifts = xp.stack([shift_x, shift_y, shift_x, shift_y], axis=-1)        # (H, W, 4)
    anchors = shifts[:, :, None, :] + base[None, None, :, :]               # (H, W, A, 4)
    return _wrap(anchors.reshape(-1, 4), t)


# ---------------------------------------------------------------- box coding
def _centre_size(b):
    w = b[:, 2] - b[:, 0]
    h = b[:, 3] - b[:, 1]
    return b[:, 0] + 0.5 * w, b[:, 1] + 0.5 * h, w, h


def encode_boxes(reference_boxes, proposals, weights=(1.0, 1.0, 1.0, 1.0)):
    """Regression targets that move each proposal (anchor) onto its reference (gt) box.

    With proposal centre/size (px, py, pw, ph) and reference (gx, gy, gw, gh):

        dx = wx * (gx - px) / pw      dy = wy * (gy - py) / ph
        dw = ww * log(gw / pw)        dh = wh * log(gh / ph)

    (the R-CNN parametrisation; torchvision's ``BoxCoder.encode_single``). Both (N, 4);
    returns (N, 4) deltas in the reference boxes' dtype.
    """
    g, t = _unwrap(reference_boxes)
    p, _ = _unwrap(proposals)
    _check_boxes("encode_boxes", g, "reference_boxes")
    _check_boxes("encode_boxes", p, "proposals")
    if g.shape[0] != p.shape[0]:
        raise ValueError(f"encode_boxes: reference_boxes {tuple(g.shape)} and proposals {tuple(p.shape)} "
                         "must have the same number of rows")
    xp = get_array_module(g)
    p = p.astype(g.dtype, copy=False)
    wx, wy, ww, wh = (g.dtype.type(v) for v in weights)
    gx, gy, gw, gh = _centre_size(g)
    px, py, pw, ph = _centre_size(p)
    deltas = xp.stack([wx * (gx - px) / pw, wy * (gy - py) / ph,
                       ww * xp.log(gw / pw), wh * xp.log(gh / ph)], axis=1)
    return _wrap(deltas, t)


def decode_boxes(deltas, boxes, weights=(1.0, 1.0, 1.0, 1.0), clip=math.log(1000.0 / 16)):
    """Apply deltas to boxes: the inverse of :func:`encode_boxes`.

        cx = px + pw * dx / wx          w = pw * exp(min(dw / ww, clip))
        cy = py + ph * dy / wy          h = ph * exp(min(dh / wh, clip))
        box = (cx - w/2, cy - h/2, cx + w/2, cy + h/2)

    ``clip`` caps dw, dh so a wild prediction cannot overflow exp (a box grows at
    most 1000/16 times). ``deltas`` (N, 4) or (N, 4*K) (one set per class), ``boxes``
    (N, 4); returns boxes shaped like ``deltas``, in deltas' dtype. Not differentiable.
    """
    d, t = _unwrap(deltas)
    b, _ = _unwrap(boxes)
    _check_boxes("decode_boxes", b, "boxes")
    if d.ndim != 2 or d.shape[1] % 4 or d.shape[0] != b.shape[0]:
        raise ValueError(f"decode_boxes: deltas must be (N, 4*K) with N = {b.shape[0]} boxes, got {tuple(d.shape)}")
    xp = get_array_module(d)
    dt = d.dtype.type
    b = b.astype(d.dtype, copy=False)
    px, py, pw, ph = (v[:, None] for v in _centre_size(b))
    wx, wy, ww, wh = (dt(v) for v in weights)
    dx, dy = d[:, 0::4] / wx, d[:, 1::4] / wy
    dw = xp.minimum(d[:, 2::4] / ww, dt(clip))
    dh = xp.minimum(d[:, 3::4] / wh, dt(clip))
    cx, cy = px + pw * dx, py + ph * dy
    w, h = pw * xp.exp(dw), ph * xp.exp(dh)
    half = dt(0.5)
    out = xp.stack([cx - half * w, cy - half * h, cx + half * w, cy + half * h], axis=2)  # (N, K, 4)
    return _wrap(out.reshape(d.shape), t)


# ---------------------------------------------------------------- proposals
def select_proposals(anchors, objectness, deltas, image_size, pre_nms_top_n=6000, post_nms_top_n=300,
                     nms_thresh=0.7, min_size=16):
    """The RPN's proposal layer for one image (py-faster-rcnn's order of steps):

    1. decode ``deltas`` (A_total, 4) against ``anchors`` (A_total, 4);
    2. clip the boxes to ``image_size = (height, width)``;
    3. drop boxes narrower or shorter than ``min_size`` pixels;
    4. keep the ``pre_nms_top_n`` highest ``objectness`` (A_total,) scores
       (logits or probabilities: only their order matters);
    5. NMS at ``nms_thresh``;
    6. keep the first ``post_nms_top_n``.

    Returns ``(boxes (K, 4), scores (K,))`` by decreasing score, K <= post_nms_top_n
    (possibly 0). Not differentiable: the head trains on these boxes as constants.
    """
    a, t = _unwrap(anchors)
    s, ts = _unwrap(objectness)
    d, td = _unwrap(deltas)
    n = a.shape[0]
    _check_boxes("select_proposals", a, "anchors")
    if s.shape != (n,) or d.shape != (n, 4):
        raise ValueError(f"select_proposals: expected objectness ({n},) and deltas ({n}, 4) for {n} anchors, "
                         f"got {tuple(s.shape)} and {tuple(d.shape)}")
    xp = get_array_module(d)
    boxes = decode_boxes(d, a)
    h, w = image_size
    boxes[:, 0::2] = xp.clip(boxes[:, 0::2], 0, w)
    boxes[:, 1::2] = xp.clip(boxes[:, 1::2], 0, h)
    ws, hs = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    idx = xp.nonzero((ws >= min_size) & (hs >= min_size))[0]
    order = argsort_descending(xp, s[idx])
    idx = idx[order[:pre_nms_top_n]]                      # indices of anchors, by decreasing score
    keep = nms_kernel(boxes[idx], s[idx], float(nms_thresh))[:post_nms_top_n]
    idx = idx[keep]
    as_tensor = t or ts or td
    return _wrap(boxes[idx], as_tensor), _wrap(s[idx].copy(), as_tensor)


# ---------------------------------------------------------------- training labels
def match_boxes(anchors_or_proposals, gt_boxes, high=0.7, low=0.3, allow_low_quality=True):
    """Label each anchor/proposal by its best IoU with the ground truth (torchvision's ``Matcher``).

    For row i with best IoU v (against gt ``matched[i]``):
        v >= high      -> label 1 (foreground)
        v <  low       -> label 0 (background)
        otherwise      -> label -1 (ignored by the loss)
    ``allow_low_quality``: each gt box also makes foreground every row that reaches
    its own highest IoU (ties included), so no gt is left without an anchor --
    Faster R-CNN's second positive rule. A gt that overlaps no row at all
    (highest IoU 0) is skipped, instead of turning every row into foreground.

    Returns ``(matched (N,) int64, labels (N,) int64)``; ``matched`` is the gt index
    of the best IoU (0 when there are no gt boxes: only meaningful where labels == 1).
    For the Fast R-CNN head use e.g. ``high=0.5, low=0.5, allow_low_quality=False``.
    """
    p, t = _unwrap(anchors_or_proposals)
    g, _ = _unwrap(gt_boxes)
    _check_boxes("match_boxes", p, "anchors_or_proposals")
    _check_boxes("match_boxes", g, "gt_boxes")
    if low > high:
        raise ValueError(f"match_boxes: low ({low}) must be <= high ({high})")
    xp = get_array_module(p)
    n = p.shape[0]
    if g.shape[0] == 0:
        return _wrap(xp.zeros(n, dtype=xp.int64), t), _wrap(xp.zeros(n, dtype=xp.int64), t)
    inter, union = box_inter_union(p.astype(xp.float64), g.astype(xp.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = xp.nan_to_num(inter / union, nan=0.0)      # (N, G); degenerate pairs overlap 0
    matched = iou.argmax(axis=1).astype(xp.int64)
    best = iou.max(axis=1) if n else xp.zeros(0)
    labels = xp.full(n, -1, dtype=xp.int64)
    labels[best < low] = 0
    labels[best >= high] = 1
    if allow_low_quality and n:
        gt_best = iou.max(axis=0)                          # (G,) highest IoU each gt reaches
        hit = (iou == gt_best[None, :]) & (gt_best[None, :] > 0)
        labels[hit.any(axis=1)] = 1
    return _wrap(matched, t), _wrap(labels, t)


def _rng(generator, xp):
    """``generator``: a NumPy Generator, an int seed (a fresh generator: the same draw on
    every call) or None (tinydl's, seeded by ``td.manual_seed``)."""
    return rng_for(xp) if generator is None else as_generator(generator)


def sample_labels(labels, batch_size_per_image=256, positive_fraction=0.5, generator=None):
    """Pick a balanced minibatch of anchors (torchvision's ``BalancedPositiveNegativeSampler``).

    ``labels``: 1 (or any value >= 1) positive, 0 negative, -1 ignored. Take at
    most ``batch_size_per_image * positive_fraction`` positives at random (128 of
    256), then fill the rest of the batch with random negatives. ``generator``: a
    NumPy Generator or an int seed (default: tinydl's, seeded by ``td.manual_seed``).

    Returns ``(pos_idx, neg_idx)``: sorted int64 indices into ``labels``.
    """
    lab, t = _unwrap(labels)
    if lab.ndim != 1:
        raise ValueError(f"sample_labels: labels must be 1-D, got shape {tuple(lab.shape)}")
    xp = get_array_module(lab)
    rng = _rng(generator, np)
    pos = to_host(xp.nonzero(lab >= 1)[0])
    neg = to_host(xp.nonzero(lab == 0)[0])
    n_pos = min(int(batch_size_per_image * positive_fraction), len(pos))
    n_neg = min(batch_size_per_image - n_pos, len(neg))
    pos = np.sort(rng.permutation(pos)[:n_pos]).astype(np.int64)
    neg = np.sort(rng.permutation(neg)[:n_neg]).astype(np.int64)
    return _wrap(xp.asarray(pos), t), _wrap(xp.asarray(neg), t)


def hard_negative_mining(loss_per_sample, labels, neg_pos_ratio=3, pool_size=None, generator=None):
    """Keep every positive and only the hardest negatives (SSD / OHEM style).

    Negatives (label 0) far outnumber positives (label >= 1), and most are easy:
    their loss is tiny but, summed, they swamp the positives. So rank the
    negatives by their loss (the hardest, most confidently wrong, first) and
    keep the top ``neg_pos_ratio * num_positives`` (SSD's 3:1). Labels -1 are
    never kept. Equal losses: lower index first.

    ``pool_size`` (the notes' variant): first draw that many negatives at random
    as a candidate pool, then keep the hardest of the pool, drawn from ``generator``
    (a NumPy Generator, an int seed, or None for tinydl's).

    Returns a boolean mask (N,); e.g. ``loss = (per_sample * mask).sum() / num_pos``.
    The loss values are only read (no gradient flows through the choice).
    """
    loss, _ = _unwrap(loss_per_sample)
    lab, t = _unwrap(labels)
    if loss.shape != lab.shape or lab.ndim != 1:
        raise ValueError(f"hard_negative_mining: loss_per_sample and labels must be 1-D of the same length, "
                         f"got {tuple(loss.shape)} and {tuple(lab.shape)}")
    xp = get_array_module(lab)
    pos = lab >= 1
    neg_idx = xp.nonzero(lab == 0)[0]
    if pool_size is not None and pool_size < len(neg_idx):
        pick = _rng(generator, np).permutation(len(neg_idx))[:pool_size]
        neg_idx = neg_idx[xp.asarray(np.sort(pick))]
    n_neg = min(int(neg_pos_ratio * int(pos.sum())), len(neg_idx))
    neg_loss = loss[neg_idx].astype(xp.float64)
    order = argsort_descending(xp, neg_loss)
    mask = pos.copy()
    mask[neg_idx[order[:n_neg]]] = True
    return _wrap(mask, t)
