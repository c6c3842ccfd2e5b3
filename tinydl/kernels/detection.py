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
    nms_bitmask    the GPU path: one CUDA thread per 64 (box, later box) pairs writes
                   "who suppresses whom" as bits, ONE copy of that mask to the host,
                   then the greedy walk over the bits on the CPU (runs on NumPy
                   too: there the mask comes from the IoU matrix)

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

    roi_pool_forward_reference / _backward_reference   NumPy or CuPy, whole arrays
    roi_pool_forward_numba / _backward_numba           CPU loops, parallel
    roi_pool_forward_cupy / _backward_cupy             CUDA: one thread per output

CUDA kernels
------------
Each ``*_CUDA`` string below is plain CUDA C for ``cupy.RawKernel``, compiled the
first time it runs (CPU-only machines never import CuPy) once per dtype: ``T`` is
a typedef for ``float`` or ``double``. Every kernel is a grid-stride loop over
its outputs with 64-bit indices (K * C * oh * ow can pass 2**31). They are
compiled with ``--fmad=false``: otherwise the compiler may fuse ``a * b + c``
into one FMA with a single rounding, and the IoU would differ from NumPy's in
the last bit -- enough to flip a box that sits exactly at the threshold.
"""
import numpy as np

from ..backend import get_array_module, is_cupy_array
from ._dispatch import njit, prange, use_numba
from .scatter import scatter_add

__all__ = [
    "argsort_descending",
    "box_inter_union",
    "nms_kernel",
    "nms_reference",
    "nms_numba",
    "nms_bitmask",
    "roi_bins",
    "roi_pool_forward",
    "roi_pool_forward_reference",
    "roi_pool_forward_numba",
    "roi_pool_forward_cupy",
    "roi_pool_backward",
    "roi_pool_backward_reference",
    "roi_pool_backward_numba",
    "roi_pool_backward_cupy",
]

FLT_MAX = float(np.finfo(np.float32).max)


# =========================================================================== CUDA plumbing
_CUDA_TYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}
_cuda_kernels = {}   # (name, dtype) -> cupy.RawKernel, filled on first use


def _cuda_kernel(name, source, dtype):
    """The RawKernel ``tinydl_<name>`` of ``source`` with ``T`` = ``dtype``'s C type."""
    key = (name, np.dtype(dtype))
    kernel = _cuda_kernels.get(key)
    if kernel is None:
        import cupy

        code = f"typedef {_CUDA_TYPES[key[1]]} T;\n" + source
        kernel = cupy.RawKernel(code, "tinydl_" + name, options=("--fmad=false",))
        _cuda_kernels[key] = kernel
    return kernel


def _launch(kernel, total, args, threads=256):
    """Run a grid-stride kernel over ``total`` items (nothing to do for 0).

    Scalars in ``args`` must be NumPy scalars of the kernel's C types
    (np.int64 -> long long, np.float64 -> double): RawKernel passes raw bytes.
    """
    if total > 0:
        blocks = min((total + threads - 1) // threads, 1 << 20)   # the loop covers the rest
        kernel((blocks,), (threads,), args)


# =========================================================================== NMS
def argsort_descending(xp, scores):
    """Indices sorting ``scores`` from high to low, ties by lower index (a stable sort
    of -s), NaN last: NumPy's order, on either backend.

    NumPy needs kind='stable'. CuPy sorts a 1-D float array with a stable radix
    sort of its bits, where a NaN's sign bit decides whether it goes first or last
    (and -s flips it), and -0.0 and +0.0 are different bit patterns: so its key
    gets a single zero (-0.0 + 0.0 = +0.0) and only positive NaNs.
    """
    key = -scores
    if xp is np:
        return np.argsort(key, kind="stable")
    if key.dtype.kind == "f":
        key = key + key.dtype.type(0)
        key[xp.isnan(key)] = xp.nan
    return xp.argsort(key)


def _prepare(boxes, scores, idxs):
    """float64 boxes and category ids (zeros when None) of the boxes in score order."""
    xp = get_array_module(boxes)
    order = argsort_descending(xp, scores.astype(xp.float64))
    b = xp.ascontiguousarray(boxes[order].astype(xp.float64))
    cat = xp.zeros(len(order), dtype=xp.int64) if idxs is None else idxs[order].astype(xp.int64)
    return order, b, xp.ascontiguousarray(cat)


def box_inter_union(b1, b2):
    """Pairwise intersection and union areas of (N, 4) and (M, 4) xyxy boxes -> two (N, M)
    arrays (box_iou, box matching and both NumPy NMS paths use it; the Numba NMS
    kernel computes the same expression per pair)."""
    xp = get_array_module(b1)
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
    xp = get_array_module(boxes)
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


_NMS_MASK_CUDA = r"""
// NumPy's maximum / minimum: a NaN in gives NaN out (CUDA's fmax / fmin drop it).
__device__ __forceinline__ double nan_max(double a, double b) { return (a > b || a != a) ? a : b; }
__device__ __forceinline__ double nan_min(double a, double b) { return (a < b || a != a) ? a : b; }

extern "C" __global__ void tinydl_nms_mask(
        const double* b, const long long* cat, const long long n, const long long words,
        const double iou_threshold, unsigned long long* mask) {
    // One thread per 64-bit word (i, jw) of the (n, words) mask. Bit s of it says
    // "box i, if kept, suppresses box j = 64 * jw + s": j > i, same category and
    // IoU > threshold. Boxes are in score order, float64, (n, 4) C order.
    for (long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x; t < n * words;
         t += (long long)blockDim.x * gridDim.x) {
        const long long i = t / words;
        const long long j0 = (t % words) * 64;            // the word covers boxes j0 .. j0 + 63
        const long long j_end = j0 + 64 < n ? j0 + 64 : n;
        const double* bi = b + 4 * i;
        const double area_i = (bi[2] - bi[0]) * (bi[3] - bi[1]);
        unsigned long long bits = 0;
        for (long long j = (i + 1 > j0 ? i + 1 : j0); j < j_end; ++j) {
            if (cat[j] != cat[i]) continue;
            const double* bj = b + 4 * j;
            // box_inter_union's expression, operation for operation, so the IoU
            // equals NumPy's bit for bit; 0/0 = NaN compares false: never suppresses.
            const double w = nan_max(nan_min(bi[2], bj[2]) - nan_max(bi[0], bj[0]), 0.0);
            const double h = nan_max(nan_min(bi[3], bj[3]) - nan_max(bi[1], bj[1]), 0.0);
            const double inter = w * h;
            const double area_j = (bj[2] - bj[0]) * (bj[3] - bj[1]);
            if (inter / (area_i + area_j - inter) > iou_threshold) bits |= 1ULL << (j - j0);
        }
        mask[t] = bits;
    }
}
"""


def _nms_mask_numpy(b, cat, iou_threshold):
    """The suppression bitmask from the IoU matrix (NumPy): what the CUDA kernel computes.

    ``mask[i, jw]`` bit ``s`` (least significant first) is set when box ``j = 64 * jw + s``
    comes after box ``i`` in score order, has its category and IoU(i, j) > threshold.
    """
    n = len(b)
    words = (n + 63) // 64
    hit = (_iou(b, b) > iou_threshold) & (cat[:, None] == cat[None, :])
    hit &= np.triu(np.ones((n, n), dtype=bool), k=1)              # only later boxes
    bits = np.zeros((n, words * 64), dtype=bool)
    bits[:, :n] = hit
    packed = np.packbits(bits.reshape(n, words, 64), axis=-1, bitorder="little")   # (n, words, 8) bytes
    return packed.view("<u8").reshape(n, words).astype(np.uint64)


def _nms_mask_cupy(b, cat, iou_threshold):
    """The same bitmask on the GPU: one CUDA thread per 64 (i, j) pairs, no n x n matrix."""
    import cupy

    n = len(b)
    words = (n + 63) // 64
    mask = cupy.empty((n, words), dtype=cupy.uint64)
    kernel = _cuda_kernel("nms_mask", _NMS_MASK_CUDA, np.float64)
    _launch(kernel, n * words, (cupy.ascontiguousarray(b, dtype=cupy.float64),
                                cupy.ascontiguousarray(cat, dtype=cupy.int64),
                                np.int64(n), np.int64(words), np.float64(iou_threshold), mask))
    return mask


@njit(cache=True)
def _nms_scan(mask, keep):
    # The greedy walk over the bitmask (host, sequential): box i survives unless a
    # kept box set its bit in ``removed``; a kept box ORs its row into ``removed``
    # (words before i's own hold only earlier boxes, already decided). Writes the
    # kept positions to keep[:count] and returns count.
    n, words = mask.shape
    removed = np.zeros(words, dtype=np.uint64)
    one = np.uint64(1)
    count = 0
    for i in range(n):
        w = i // 64
        if (removed[w] >> np.uint64(i % 64)) & one:
            continue
        keep[count] = i
        count += 1
        for v in range(w, words):
            removed[v] |= mask[i, v]
    return count


def nms_bitmask(boxes, scores, iou_threshold, idxs=None):
    """Same result as :func:`nms_reference`, the GPU way (torchvision's CUDA algorithm).

    On CuPy: a CUDA kernel writes the (n, ceil(n / 64)) uint64 suppression mask
    (see :func:`_nms_mask_numpy` for its meaning), ONE device-to-host copy brings
    it over (the only sync: the number of kept boxes decides the output's size),
    and :func:`_nms_scan` walks it on the CPU -- n steps of a few word ORs
    instead of n kernel launches. Returns int64 indices on the boxes' device.
    Memory: n * n / 8 bytes of mask (12,000 boxes: 18 MB). On NumPy the mask
    comes from the IoU matrix, which is how the host half is tested without a GPU.
    """
    xp = get_array_module(boxes)
    order, b, cat = _prepare(boxes, scores, idxs)
    n = len(order)
    if n == 0:
        return order.astype(xp.int64)
    if is_cupy_array(b):
        mask = _nms_mask_cupy(b, cat, iou_threshold).get()          # the one sync
    else:
        mask = _nms_mask_numpy(b, cat, iou_threshold)
    keep = np.empty(n, dtype=np.int64)
    count = _nms_scan(mask, keep)
    return order[xp.asarray(keep[:count])].astype(xp.int64, copy=False)


def nms_kernel(boxes, scores, iou_threshold, idxs=None):
    """Dispatch: CuPy -> :func:`nms_bitmask`, else Numba unless ``TINYDL_NO_NUMBA=1``."""
    if is_cupy_array(boxes):
        return nms_bitmask(boxes, scores, iou_threshold, idxs)
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
    xp = get_array_module(rois)
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
    xp = get_array_module(x)
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


_ROI_POOL_FORWARD_CUDA = r"""
extern "C" __global__ void tinydl_roi_pool_forward(
        const T* x, const long long* batch, const long long* hs, const long long* he,
        const long long* ws, const long long* we, const long long C, const long long H,
        const long long W, const long long oh, const long long ow, const long long total,
        T* y, long long* argmax) {
    // One thread per output (k, c, ph, pw) of y (K, C, oh, ow), C order; the bins
    // come from roi_bins: rows [hs, he) x columns [ws, we) of RoI k, (K, oh) / (K, ow).
    for (long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x; t < total;
         t += (long long)blockDim.x * gridDim.x) {
        long long r = t;
        const long long pw = r % ow; r /= ow;
        const long long ph = r % oh; r /= oh;
        const long long c = r % C;
        const long long k = r / C;
        const long long h0 = hs[k * oh + ph], h1 = he[k * oh + ph];
        const long long w0 = ws[k * ow + pw], w1 = we[k * ow + pw];
        if (h1 <= h0 || w1 <= w0) {          // empty bin (RoI off the map): 0, no winner
            y[t] = 0;
            argmax[t] = -1;
            continue;
        }
        const T* plane = x + (batch[k] * C + c) * H * W;
        T best = (T)(-3.4028234663852886e+38);   // -FLT_MAX, torchvision's starting value
        long long best_i = -1;
        for (long long h = h0; h < h1; ++h) {
            for (long long w = w0; w < w1; ++w) {
                const T v = plane[h * W + w];
                if (v > best) {                  // strictly greater: first maximum wins, NaN never
                    best = v;
                    best_i = h * W + w;
                }
            }
        }
        y[t] = best;
        argmax[t] = best_i;
    }
}
"""


def roi_pool_forward_cupy(x, rois, output_size, spatial_scale):
    """Same ``(y, argmax)`` as :func:`roi_pool_forward_numba`, one CUDA thread per output
    (x float32 or float64 on the GPU; the bins come from :func:`roi_bins` on the GPU)."""
    import cupy

    N, C, H, W = x.shape
    oh, ow = output_size
    K = rois.shape[0]
    bins = roi_bins(rois, spatial_scale, output_size, H, W)
    batch, hs, he, ws, we = (cupy.ascontiguousarray(a, dtype=cupy.int64) for a in bins)
    y = cupy.empty((K, C, oh, ow), dtype=x.dtype)
    argmax = cupy.empty((K, C, oh, ow), dtype=cupy.int64)
    kernel = _cuda_kernel("roi_pool_forward", _ROI_POOL_FORWARD_CUDA, x.dtype)
    _launch(kernel, y.size, (cupy.ascontiguousarray(x), batch, hs, he, ws, we,
                             np.int64(C), np.int64(H), np.int64(W), np.int64(oh), np.int64(ow),
                             np.int64(y.size), y, argmax))
    return y, argmax


def roi_pool_forward(x, rois, output_size, spatial_scale):
    """RoI max pooling of ``x`` (N, C, H, W) over ``rois`` (K, 5) in x's dtype:
    the CUDA kernel on CuPy, Numba on the CPU, the gathering reference for other
    dtypes or with ``TINYDL_NO_NUMBA=1``."""
    if is_cupy_array(x):
        if x.dtype in _CUDA_TYPES:
            return roi_pool_forward_cupy(x, rois, output_size, spatial_scale)
    elif use_numba(x.dtype):
        return roi_pool_forward_numba(x, rois, output_size, spatial_scale)
    return roi_pool_forward_reference(x, rois, output_size, spatial_scale)


def roi_pool_backward_reference(gy, argmax, batch, x_shape):
    """``gx[batch[k], c].flat[argmax[k, c, ph, pw]] += gy[k, c, ph, pw]`` (skipping -1)."""
    xp = get_array_module(gy)
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


_ROI_POOL_BACKWARD_CUDA = r"""
extern "C" __global__ void tinydl_roi_pool_backward(
        const T* gy, const long long* argmax, const long long* batch, const long long C,
        const long long HW, const long long bins, const long long total, T* gx) {
    // One thread per element (k, c, ph, pw) of gy; bins = oh * ow. Overlapping RoIs
    // can pick the same cell, so the add is atomic (the order of the adds, and so the
    // last bits of a float sum, may change from run to run).
    for (long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x; t < total;
         t += (long long)blockDim.x * gridDim.x) {
        const long long a = argmax[t];
        if (a < 0) continue;                   // empty bin: no input cell to send to
        const long long kc = t / bins;         // = k * C + c
        const long long k = kc / C;
        const long long c = kc % C;
        atomicAdd(gx + (batch[k] * C + c) * HW + a, gy[t]);
    }
}
"""


def roi_pool_backward_cupy(gy, argmax, batch, x_shape):
    """Same result as :func:`roi_pool_backward_reference` on the GPU (atomicAdd into a
    zeroed gx; float64 atomicAdd needs compute capability 6.0+)."""
    import cupy

    N, C, H, W = x_shape
    K, _, oh, ow = gy.shape
    gx = cupy.zeros(x_shape, dtype=gy.dtype)
    kernel = _cuda_kernel("roi_pool_backward", _ROI_POOL_BACKWARD_CUDA, gy.dtype)
    _launch(kernel, gy.size, (cupy.ascontiguousarray(gy), cupy.ascontiguousarray(argmax, dtype=cupy.int64),
                              cupy.ascontiguousarray(batch, dtype=cupy.int64), np.int64(C), np.int64(H * W),
                              np.int64(oh * ow), np.int64(gy.size), gx))
    return gx


def roi_pool_backward(gy, argmax, batch, x_shape):
    """Gradient of RoI max pooling w.r.t. the feature map, from the forward's argmax
    (dispatched like :func:`roi_pool_forward`)."""
    if is_cupy_array(gy):
        if gy.dtype in _CUDA_TYPES:
            return roi_pool_backward_cupy(gy, argmax, batch, x_shape)
    elif use_numba(gy.dtype):
        return roi_pool_backward_numba(gy, argmax, batch, x_shape)
    return roi_pool_backward_reference(gy, argmax, batch, x_shape)
