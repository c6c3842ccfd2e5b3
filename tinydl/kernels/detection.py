r"""Detection kernels on raw arrays: non-maximum suppression and RoI max pooling.

Boxes are ``(x1, y1, x2, y2)`` with no "+1": a box's width is ``x2 - x1``.

Non-maximum suppression (NMS)
-----------------------------
Sort the boxes by decreasing score (equal scores: the lower index first, so the
result never depends on the sort algorithm), then walk that order: keep a box
unless a box kept before it overlaps it with IoU > ``iou_threshold`` (strictly
greater, as torchvision). With ``idxs`` (category per box, ``batched_nms``)
boxes of different categories never suppress each other. IoU is computed in
float64 by every path with the same expression,

    inter = max(0, min(x2i, x2j) - max(x1i, x1j)) * max(0, min(y2i, y2j) - max(y1i, y1j))
    iou   = inter / (area_i + area_j - inter)

so all three paths keep exactly the same boxes (a degenerate pair, 0/0 = NaN,
never suppresses).

    nms_reference  NumPy: one Python step per kept box, IoU of it against the rest
    nms_numba      the same greedy walk compiled (torchvision's CPU algorithm)
    nms_matrix     for the GPU: the whole IoU matrix at once, then a fixed point
                   (see its docstring); runs on NumPy too, which is how it is tested

RoI max pooling (torchvision.ops.roi_pool's exact rules)
--------------------------------------------------------
Each RoI ``(b, x1, y1, x2, y2)`` is scaled by ``spatial_scale`` and rounded
(C ``round``: halves away from zero) to feature-map cells; it covers
``roi_w = max(x2' - x1' + 1, 1)`` cells (here the "+1" is torchvision's: the
rounded corners are both inside). Output bin ``pw`` spans columns
``[floor(pw * roi_w / ow), ceil((pw + 1) * roi_w / ow))`` shifted by x1' and
clipped to ``[0, W]`` (rows alike). The output is the maximum of the bin (the
first maximum in row-major order wins ties, NaN never wins, the running max
starts at -FLT_MAX), 0 for an empty bin; ``argmax`` stores ``h * W + w`` of the
winner in its plane, -1 for an empty bin. Arithmetic is done in the input's
dtype, as torchvision does, so the bins agree with it even at rounding edges.

Backward: the bin's output equals one input cell, so its gradient goes there:
``gx[b, c].flat[argmax] += gy`` (bins of overlapping RoIs add up).
"""
import numpy as np

from ._dispatch import array_module, is_cupy, njit, prange, use_numba
from .scatter import scatter_add

__all__ = [
    "argsort_descending",
    "box_inter_union",
    "nms_kernel",
    "nms_reference",
    "nms_numba",
    "nms_matrix",
    "roi_bins",
    "roi_pool_forward",
    "roi_pool_forward_reference",
    "roi_pool_forward_numba",
    "roi_pool_backward",
    "roi_pool_backward_reference",
    "roi_pool_backward_numba",
]

FLT_MAX = float(np.finfo(np.float32).max)


# =========================================================================== NMS
def argsort_descending(xp, scores):
    """Indices sorting ``scores`` from high to low, ties by lower index (a stable sort of -s).

    NumPy needs kind='stable'; CuPy's sort is a radix sort, always stable.
    """
    if xp is np:
        return np.argsort(-scores, kind="stable")
    return xp.argsort(-scores)


def _prepare(boxes, scores, idxs):
    """float64 boxes and category ids (zeros when None) of the boxes in score order."""
    xp = array_module(boxes)
    order = argsort_descending(xp, scores.astype(xp.float64))
    b = xp.ascontiguousarray(boxes[order].astype(xp.float64))
    cat = xp.zeros(len(order), dtype=xp.int64) if idxs is None else idxs[order].astype(xp.int64)
    return order, b, xp.ascontiguousarray(cat)


def box_inter_union(b1, b2):
    """Pairwise intersection and union areas of (N, 4) and (M, 4) xyxy boxes -> two (N, M)
    arrays (box_iou, box matching and both NumPy NMS paths use it; the Numba NMS
    kernel computes the same expression per pair)."""
    xp = array_module(b1)
    lt = xp.maximum(b1[:, None, :2], b2[None, :, :2])   # (N, M, 2) top-left of the overlap
    rb = xp.minimum(b1[:, None, 2:], b2[None, :, 2:])   # (N, M, 2) bottom-right
    wh = xp.clip(rb - lt, 0, None)                      # empty overlap -> 0 wide
    inter = wh[..., 0] * wh[..., 1]
    area1 = (b1[:, 2] - b1[:, 0]) * (b1[:, 3] - b1[:, 1])
    area2 = (b2[:, 2] - b2[:, 0]) * (b2[:, 3] - b2[:, 1])
    return inter, area1[:, None] + area2[None, :] - inter


def _iou(b1, b2):
    inter, union = box_inter_union(b1, b2)
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / union


def nms_reference(boxes, scores, iou_threshold, idxs=None):
    """Greedy NMS in NumPy, the readable version: returns kept indices (int64),
    by decreasing score. ``idxs``: optional category per box (batched NMS)."""
    xp = array_module(boxes)
    order, b, cat = _prepare(boxes, scores, idxs)
    n = len(order)
    suppressed = np.zeros(n, dtype=bool)
    keep = []
    for i in range(n):
        if suppressed[i]:
            continue
        keep.append(i)
        iou = _iou(b[i:i + 1], b[i + 1:])[0]
        hit = (iou > iou_threshold) & (cat[i + 1:] == cat[i])
        suppressed[i + 1:] |= hit if xp is np else hit.get()
    return order[xp.asarray(np.asarray(keep, dtype=np.int64))]


@njit(cache=True)
def _nms_greedy(b, cat, iou_threshold, keep):
    # b: (n, 4) float64 boxes sorted by decreasing score. Writes the kept
    # positions (into the sorted order) to keep[:count] and returns count.
    n = b.shape[0]
    suppressed = np.zeros(n, dtype=np.bool_)
    count = 0
    for i in range(n):
        if suppressed[i]:
            continue
        keep[count] = i
        count += 1
        area_i = (b[i, 2] - b[i, 0]) * (b[i, 3] - b[i, 1])
        for j in range(i + 1, n):
            if suppressed[j] or cat[j] != cat[i]:
                continue
            w = max(min(b[i, 2], b[j, 2]) - max(b[i, 0], b[j, 0]), 0.0)
            h = max(min(b[i, 3], b[j, 3]) - max(b[i, 1], b[j, 1]), 0.0)
            inter = w * h
            area_j = (b[j, 2] - b[j, 0]) * (b[j, 3] - b[j, 1])
            union = area_i + area_j - inter
            # inter / union > t, NaN (0/0) never suppressing; union == 0 only for 0/0 or
            # degenerate boxes, which NumPy turns into NaN or inf: match that.
            if union != 0.0:
                if inter / union > iou_threshold:
                    suppressed[j] = True
            elif inter > 0.0 and np.inf > iou_threshold:
                suppressed[j] = True
    return count


def nms_numba(boxes, scores, iou_threshold, idxs=None):
    """Same result as :func:`nms_reference`, by a compiled greedy loop (CPU only)."""
    order, b, cat = _prepare(boxes, scores, idxs)
    keep = np.empty(len(order), dtype=np.int64)
    count = _nms_greedy(b, cat, float(iou_threshold), keep)
    return order[keep[:count]]


def nms_matrix(boxes, scores, iou_threshold, idxs=None, max_iterations=None):
    r"""NMS without a per-box Python loop, for the GPU (works on NumPy arrays too).

    With the boxes in score order, let ``S[i, j] = (i < j) and IoU(i, j) > t``
    (same category): "i would suppress j if i is kept". The greedy answer is the
    unique ``keep`` with

        keep[j] = not any_i (keep[i] and S[i, j])

    since keep[j] depends only on earlier boxes. Iterating that equation from
    all-True makes entry j exact once everything before it is, so it converges in
    at most (longest chain of suppressions) + 1 steps, each one (n x n) boolean
    reduction -- a few steps in practice. Memory: the n x n matrix (6000 boxes:
    36 MB of bools).
    """
    xp = array_module(boxes)
    order, b, cat = _prepare(boxes, scores, idxs)
    n = len(order)
    if n == 0:
        return order.astype(xp.int64)
    iou = _iou(b, b)
    upper = xp.triu(xp.ones((n, n), dtype=bool), k=1)
    S = (iou > iou_threshold) & upper & (cat[:, None] == cat[None, :])
    del iou, upper
    keep = xp.ones(n, dtype=bool)
    for _ in range(n + 1 if max_iterations is None else max_iterations):
        new = ~(S & keep[:, None]).any(axis=0)
        if bool((new == keep).all()):  # one scalar sync per step
            break
        keep = new
    return order[xp.nonzero(keep)[0]].astype(xp.int64)


def nms_kernel(boxes, scores, iou_threshold, idxs=None):
    """Dispatch: CuPy -> :func:`nms_matrix`, else Numba unless ``TINYDL_NO_NUMBA=1``."""
    if is_cupy(boxes):
        return nms_matrix(boxes, scores, iou_threshold, idxs)
    if use_numba():
        return nms_numba(boxes, scores, iou_threshold, idxs)
    return nms_reference(boxes, scores, iou_threshold, idxs)


# =========================================================================== RoI pooling
def _c_round(xp, v):
    """C's round(): halves away from zero (np.round rounds halves to even).

    Written as trunc + a correction, because floor(v + 0.5) is wrong in float32
    for v just below 0.5 (0.49999997 + 0.5 rounds up to 1.0).
    """
    r = xp.trunc(v)
    return r + xp.sign(v) * (xp.abs(v - r) >= 0.5)


def roi_bins(rois, spatial_scale, output_size, height, width):
    """torchvision's RoI bins, for all RoIs at once (NumPy or CuPy).

    ``rois`` (K, 5) in the feature map's dtype (all arithmetic happens in it, as
    in torchvision). Returns ``(batch (K,), h_start, h_end (K, oh), w_start, w_end
    (K, ow))`` as int64: bin (ph, pw) of RoI k covers rows [h_start, h_end) and
    columns [w_start, w_end), already clipped to the map (may be empty).
    """
    xp = array_module(rois)
    dt = rois.dtype.type
    oh, ow = output_size
    batch = rois[:, 0].astype(xp.int64)        # C's float -> int conversion truncates
    scale = dt(spatial_scale)
    x1, y1, x2, y2 = (_c_round(xp, rois[:, k] * scale).astype(xp.int64) for k in range(1, 5))
    roi_w = xp.maximum(x2 - x1 + 1, 1)
    roi_h = xp.maximum(y2 - y1 + 1, 1)

    def edges(start, length, n_bins, limit):
        bin_size = (length.astype(rois.dtype) / dt(n_bins))[:, None]          # (K, 1)
        lo = xp.floor(xp.arange(n_bins).astype(rois.dtype) * bin_size)       # (K, n_bins)
        hi = xp.ceil(xp.arange(1, n_bins + 1).astype(rois.dtype) * bin_size)
        lo = xp.clip(lo.astype(xp.int64) + start[:, None], 0, limit)
        hi = xp.clip(hi.astype(xp.int64) + start[:, None], 0, limit)
        return lo, hi

    hs, he = edges(y1, roi_h, oh, height)
    ws, we = edges(x1, roi_w, ow, width)
    return batch, hs, he, ws, we


def _taps(xp, lo, hi, limit):
    """(K, n_bins, L) positions of each bin, L = the longest bin; short bins repeat
    their last position (a repeat cannot change the max nor its first position)."""
    longest = max(int((hi - lo).max()) if lo.size else 1, 1)
    taps = xp.minimum(lo[:, :, None] + xp.arange(longest), hi[:, :, None] - 1)
    return xp.clip(taps, 0, limit - 1), longest


def roi_pool_forward_reference(x, rois, output_size, spatial_scale):
    """RoI max pooling by gathering every bin's cells (NumPy or CuPy): returns ``(y, argmax)``,
    (K, C, oh, ow) each, argmax int64 (``h * W + w``, -1 for an empty bin).

    All the RoIs' bins are gathered at once (in chunks to bound memory) into
    (k, C, oh, ow, cells) and reduced with argmax; NaN is replaced by -inf first
    so it never wins, and a max below -FLT_MAX (nothing beat torchvision's
    starting value) reports -FLT_MAX and -1.
    """
    xp = array_module(x)
    N, C, H, W = x.shape
    oh, ow = output_size
    K = rois.shape[0]
    batch, hs, he, ws, we = roi_bins(rois, spatial_scale, output_size, H, W)
    rows, Lh = _taps(xp, hs, he, H)                      # (K, oh, Lh)
    cols, Lw = _taps(xp, ws, we, W)                      # (K, ow, Lw)
    empty = (he <= hs)[:, None, :, None] | (we <= ws)[:, None, None, :]   # (K, 1, oh, ow)
    xt = x.transpose(0, 2, 3, 1)                         # (N, H, W, C): gather whole channel vectors
    y = xp.empty((K, C, oh, ow), dtype=x.dtype)
    argmax = xp.empty((K, C, oh, ow), dtype=xp.int64)
    chunk = max(1, (1 << 22) // max(1, C * oh * ow * Lh * Lw))
    for s in range(0, K, chunk):
        e = min(K, s + chunk)
        r, c = rows[s:e], cols[s:e]
        win = xt[batch[s:e, None, None, None, None], r[:, :, :, None, None], c[:, None, None, :, :]]
        win = win.transpose(0, 5, 1, 3, 2, 4).reshape(e - s, C, oh, ow, Lh * Lw)   # row-major cells
        win = xp.where(xp.isnan(win), -xp.inf, win)
        t = win.argmax(axis=-1)                                   # first maximum
        val = xp.take_along_axis(win, t[..., None], axis=-1)[..., 0]
        kk = xp.arange(e - s)[:, None, None, None]
        h = r[kk, xp.arange(oh)[None, None, :, None], t // Lw]
        w = c[kk, xp.arange(ow)[None, None, None, :], t % Lw]
        pos = h * W + w
        beaten = val >= -FLT_MAX                                  # torchvision starts from -FLT_MAX
        val = xp.where(beaten, val, x.dtype.type(-FLT_MAX))
        pos = xp.where(beaten, pos, -1)
        y[s:e] = xp.where(empty[s:e], x.dtype.type(0), val)
        argmax[s:e] = xp.where(empty[s:e], -1, pos)
    return y, argmax


@njit(parallel=True, cache=True)
def _roi_pool_kernel(x, batch, hs, he, ws, we, y, argmax):
    # One task per (RoI, channel): scan each bin like torchvision's CPU loop.
    K, C, oh, ow = y.shape
    W = x.shape[3]
    lowest = -FLT_MAX  # a float64 constant, exactly representable in float32 too
    for kc in prange(K * C):
        k = kc // C
        c = kc % C
        b = batch[k]
        for ph in range(oh):
            for pw in range(ow):
                if he[k, ph] <= hs[k, ph] or we[k, pw] <= ws[k, pw]:
                    y[k, c, ph, pw] = 0
                    argmax[k, c, ph, pw] = -1
                    continue
                best = lowest
                best_i = -1
                for h in range(hs[k, ph], he[k, ph]):
                    for w in range(ws[k, pw], we[k, pw]):
                        v = x[b, c, h, w]
                        if v > best:  # strictly greater: the first maximum wins, NaN never
                            best = v
                            best_i = h * W + w
                y[k, c, ph, pw] = best
                argmax[k, c, ph, pw] = best_i


def roi_pool_forward_numba(x, rois, output_size, spatial_scale):
    """Same ``(y, argmax)`` as :func:`roi_pool_forward_reference`, by a parallel Numba loop."""
    N, C, H, W = x.shape
    batch, hs, he, ws, we = roi_bins(rois, spatial_scale, output_size, H, W)
    K = rois.shape[0]
    y = np.empty((K, C) + tuple(output_size), dtype=x.dtype)
    argmax = np.empty((K, C) + tuple(output_size), dtype=np.int64)
    _roi_pool_kernel(np.ascontiguousarray(x), batch, hs, he, ws, we, y, argmax)
    return y, argmax


def roi_pool_forward(x, rois, output_size, spatial_scale):
    """RoI max pooling of ``x`` (N, C, H, W) over ``rois`` (K, 5) in x's dtype:
    Numba on the CPU, the gathering reference on CuPy or with ``TINYDL_NO_NUMBA=1``."""
    if not is_cupy(x) and use_numba(x.dtype):
        return roi_pool_forward_numba(x, rois, output_size, spatial_scale)
    return roi_pool_forward_reference(x, rois, output_size, spatial_scale)


def roi_pool_backward_reference(gy, argmax, batch, x_shape):
    """``gx[batch[k], c].flat[argmax[k, c, ph, pw]] += gy[k, c, ph, pw]`` (skipping -1)."""
    xp = array_module(gy)
    N, C, H, W = x_shape
    gx = xp.zeros(N * C * H * W, dtype=gy.dtype)
    plane = (batch[:, None] * C + xp.arange(C)[None, :]) * (H * W)      # (K, C) start of each plane
    flat = plane[:, :, None, None] + argmax
    hit = argmax >= 0
    scatter_add(gx, flat[hit], gy[hit])
    return gx.reshape(x_shape)


@njit(parallel=True, cache=True)
def _roi_pool_backward_kernel(gy, argmax, batch, gx):
    # One task per channel: RoIs of one image share its planes, channels never
    # do, so no two threads add into the same cell. Within a channel the adds
    # come in (k, ph, pw) order, the order np.add.at uses in the reference.
    K, C, oh, ow = gy.shape
    N, _, H, W = gx.shape
    for c in prange(C):
        for n in range(N):
            for h in range(H):
                for w in range(W):
                    gx[n, c, h, w] = 0
        for k in range(K):
            b = batch[k]
            for ph in range(oh):
                for pw in range(ow):
                    a = argmax[k, c, ph, pw]
                    if a >= 0:
                        gx[b, c, a // W, a % W] += gy[k, c, ph, pw]


def roi_pool_backward_numba(gy, argmax, batch, x_shape):
    """Same result as :func:`roi_pool_backward_reference` (bit-identical), parallel over channels."""
    gx = np.empty(x_shape, dtype=gy.dtype)
    _roi_pool_backward_kernel(np.ascontiguousarray(gy), np.ascontiguousarray(argmax), batch, gx)
    return gx


def roi_pool_backward(gy, argmax, batch, x_shape):
    """Gradient of RoI max pooling w.r.t. the feature map, from the forward's argmax."""
    if not is_cupy(gy) and use_numba(gy.dtype):
        return roi_pool_backward_numba(gy, argmax, batch, x_shape)
    return roi_pool_backward_reference(gy, argmax, batch, x_shape)
