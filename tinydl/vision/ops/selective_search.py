"""Selective search (Uijlings, van de Sande, Gevers & Smeulders 2013): R-CNN's proposals.

The notes' recipe (seed 001, "Selective Search"):

    step 0  cut the image into small regions R      (Felzenszwalb & Huttenlocher 2004)
    step 1  the similarity s(ri, rj) of every pair of neighbouring regions
    step 2  merge the most similar pair into r_t and add it to R
    step 3  drop every similarity that involves ri or rj
    step 4  compute the similarities of r_t with its neighbours
    step 5  back to step 2 until no pair is left (one region: the whole image)

Every region ever made, the first small ones, the merged ones, up to the whole
image, is a proposal: its bounding box. Small objects come from early regions,
large ones from late ones: one hierarchy covers every scale.

Graph-based segmentation (step 0). Pixels are the nodes of a graph with an edge
to each of their 8 neighbours, weighted by the colour distance of the two pixels
(after a Gaussian blur, sigma 0.8). Edges are visited by increasing weight; an
edge joins its two components A and B when its weight is at most both

    Int(A) + k / |A|        and        Int(B) + k / |B|

where Int(C) is the largest edge inside C (the heaviest edge of its minimum
spanning tree, which is the edge that just joined it) and k sets the scale:
small components merge easily, large ones only across weak edges. Components
still smaller than ``min_size`` pixels are then merged over their weakest edge.

Similarity (step 1), each term in [0, 1]:

    colour   sum_k min(ci_k, cj_k)     25-bin histograms per channel, L1-normalised
    texture  sum_k min(ti_k, tj_k)     Gaussian derivatives (sigma 1) in 8 orientations,
                                       10 bins per orientation and channel, L1-normalised
    size     1 - (|ri| + |rj|) / |image|            small regions merge first
    fill     1 - (|BB_ij| - |ri| - |rj|) / |image|  regions that fill each other's gaps
                                                    (BB_ij: the box around both)

A merged region's histograms are the size-weighted means of its parts', so no
pixel is read again.

Diversification and ranking. One hierarchy misses objects; the paper runs
several: colour spaces x k x similarity measures. ``mode='fast'``: HSV and Lab,
k = 50 and 100, similarities colour+texture+size+fill and texture+size+fill (8
hierarchies). ``mode='quality'``: HSV, Lab, rgI, H, I; k = 50, 100, 150, 300;
those two plus fill alone and size alone (80 hierarchies). Each region gets its
position in its hierarchy (1 = the whole image, 2 = the region merged just
before, ...) times a random number in [0, 1]; proposals are sorted by that
value, and a box found twice keeps its lower value. So the first proposals mix
all scales and hierarchies, and a short list (the first 2,000) is still varied.

Boxes are (x1, y1, x2, y2) in pixels without "+1" (a region covering columns
3..7 has x1 = 3, x2 = 8), as everywhere in ``tinydl.vision.ops``.

This is image processing on the host: NumPy and OpenCV (colour conversion and
Gaussian filters), with the one hot loop, the segmentation's union-find over the
edges, compiled by Numba. The hierarchical grouping is plain Python over a few
hundred regions.
"""
import numpy as np

from ...backend import to_host
from ...kernels._dispatch import njit
from ...ops.math import raw

__all__ = ["selective_search", "felzenszwalb_segmentation"]


def _cv2():
    try:
        import cv2
    except ImportError as exc:
        raise ImportError("selective_search converts colours with OpenCV: pip install 'tinydl[train]'") from exc
    return cv2


# ================================================================ graph-based segmentation
@njit(cache=True)
def _segment_graph(n_pixels, a, b, w, k, min_size):
    """Union-find over the edges (a[e], b[e], w[e]), already sorted by weight.
    Returns the root of each pixel's component."""
    parent = np.arange(n_pixels)
    size = np.ones(n_pixels, dtype=np.int64)
    threshold = np.full(n_pixels, k)               # Int(C) + k/|C|, with Int = 0 for one pixel
    for e in range(a.shape[0]):
        ra, rb = a[e], b[e]
        while parent[ra] != ra:                    # find, with path halving
            parent[ra] = parent[parent[ra]]
            ra = parent[ra]
        while parent[rb] != rb:
            parent[rb] = parent[parent[rb]]
            rb = parent[rb]
        if ra != rb and w[e] <= threshold[ra] and w[e] <= threshold[rb]:
            if size[ra] < size[rb]:                # union by size
                ra, rb = rb, ra
            parent[rb] = ra
            size[ra] += size[rb]
            threshold[ra] = w[e] + k / size[ra]    # w is now the largest edge inside ra
    for e in range(a.shape[0]):                    # then absorb components below min_size
        ra, rb = a[e], b[e]
        while parent[ra] != ra:
            ra = parent[ra]
        while parent[rb] != rb:
            rb = parent[rb]
        if ra != rb and (size[ra] < min_size or size[rb] < min_size):
            if size[ra] < size[rb]:
                ra, rb = rb, ra
            parent[rb] = ra
            size[ra] += size[rb]
    roots = np.empty(n_pixels, dtype=np.int64)
    for p in range(n_pixels):
        r = p
        while parent[r] != r:
            r = parent[r]
        roots[p] = r
    return roots


def felzenszwalb_segmentation(image, k=100.0, sigma=0.8, min_size=None):
    """Felzenszwalb & Huttenlocher's graph-based segmentation of an (H, W) or (H, W, C) image.

    ``k``: the scale (larger: larger regions); ``sigma``: the Gaussian blur applied
    first; ``min_size``: smallest region in pixels (default ``k``, as selective
    search's code). Colour distances are Euclidean over the channels, in the
    image's own units (0..255 for 8-bit images). Returns an (H, W) int64 label map,
    labels 0..n-1 in raster order of each region's first pixel.
    """
    return _segment(_image_graph(image, sigma), k, k if min_size is None else min_size)


def _image_graph(image, sigma):
    """The blurred image's 8-neighbour graph, its edges sorted by weight (what every k of
    one image shares): (H, W, a, b, weights)."""
    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3 or min(img.shape[:2]) < 1:
        raise ValueError(f"felzenszwalb_segmentation: expected an (H, W) or (H, W, C) image, got shape {img.shape}")
    h, w, c = img.shape
    if sigma > 0:
        img = _cv2().GaussianBlur(img, (0, 0), sigma).reshape(h, w, c)
    idx = np.arange(h * w).reshape(h, w)
    a, b = [], []
    # each of the 8 neighbours once: right, down, down-right, up-right
    for (ys, xs), (yt, xt) in (((slice(None), slice(0, -1)), (slice(None), slice(1, None))),
                               ((slice(0, -1), slice(None)), (slice(1, None), slice(None))),
                               ((slice(0, -1), slice(0, -1)), (slice(1, None), slice(1, None))),
                               ((slice(1, None), slice(0, -1)), (slice(0, -1), slice(1, None)))):
        a.append(idx[ys, xs].ravel())
        b.append(idx[yt, xt].ravel())
    a, b = np.concatenate(a), np.concatenate(b)
    flat = img.reshape(-1, c)
    weight = np.sqrt(((flat[a] - flat[b]) ** 2).sum(axis=1))
    order = np.argsort(weight, kind="stable")
    return h, w, a[order], b[order], weight[order].astype(np.float64)


def _segment(graph, k, min_size):
    """felzenszwalb_segmentation's label map from a sorted ``_image_graph``."""
    h, w, a, b, weight = graph
    roots = _segment_graph(h * w, a, b, weight, float(k), int(min_size))
    _, labels = np.unique(roots, return_inverse=True)
    # number the regions in raster order of their first pixel (np.unique numbers them by root)
    first = np.full(labels.max() + 1, h * w)
    np.minimum.at(first, labels, np.arange(h * w))
    rank = np.empty_like(first)
    rank[np.argsort(first)] = np.arange(len(first))
    return rank[labels].reshape(h, w)


# ================================================================ region features
def _histograms(values, labels, n_regions, bins, lo, hi):
    """Per-region histograms (R, C * bins) of ``values`` (P, C) over [lo, hi], L1-normalised."""
    p, c = values.shape
    bin_idx = np.clip(((values - lo) / max(hi - lo, 1e-12) * bins).astype(np.int64), 0, bins - 1)
    cells = (labels[:, None] * c + np.arange(c)) * bins + bin_idx          # (P, C) flat cell
    hist = np.bincount(cells.ravel(), minlength=n_regions * c * bins).reshape(n_regions, c * bins).astype(np.float64)
    return hist / hist.sum(axis=1, keepdims=True)


def _texture(img):
    """Gaussian derivatives (sigma 1) of each channel in 8 orientations: (H*W, C*8),
    the positive part of the derivative along angles 0, 45, ..., 315 degrees."""
    cv2 = _cv2()
    h, w, c = img.shape
    out = []
    for ch in range(c):
        smooth = cv2.GaussianBlur(img[:, :, ch], (0, 0), 1.0)
        gx = cv2.Sobel(smooth, cv2.CV_32F, 1, 0, ksize=1)
        gy = cv2.Sobel(smooth, cv2.CV_32F, 0, 1, ksize=1)
        for angle in np.arange(8) * np.pi / 4:
            out.append(np.maximum(gx * np.cos(angle) + gy * np.sin(angle), 0).ravel())
    return np.stack(out, axis=1)


class _Regions:
    """The initial regions of one segmentation: sizes, boxes, colour and texture
    histograms, and which regions touch."""

    def __init__(self, labels, img, channel_range, texture=None):
        h, w = labels.shape
        n = int(labels.max()) + 1
        flat = labels.ravel()
        ys, xs = np.divmod(np.arange(h * w), w)
        self.size = np.bincount(flat, minlength=n).astype(np.float64)
        box = np.empty((n, 4))
        box[:, 0], box[:, 1] = np.full(n, w), np.full(n, h)
        box[:, 2], box[:, 3] = 0, 0
        np.minimum.at(box[:, 0], flat, xs)
        np.minimum.at(box[:, 1], flat, ys)
        np.maximum.at(box[:, 2], flat, xs + 1)
        np.maximum.at(box[:, 3], flat, ys + 1)
        self.box = box
        values = img.reshape(h * w, -1).astype(np.float32)
        self.colour = _histograms(values, flat, n, 25, *channel_range)
        tex = _texture(img.astype(np.float32)) if texture is None else texture   # (a colour space's, once)
        self.texture = _histograms(tex, flat, n, 10, 0.0, float(tex.max()) if tex.size else 1.0)
        # neighbours: labels that differ across a horizontal, vertical or diagonal step
        pairs = [np.stack([labels[:, :-1].ravel(), labels[:, 1:].ravel()], 1),
                 np.stack([labels[:-1, :].ravel(), labels[1:, :].ravel()], 1),
                 np.stack([labels[:-1, :-1].ravel(), labels[1:, 1:].ravel()], 1),
                 np.stack([labels[1:, :-1].ravel(), labels[:-1, 1:].ravel()], 1)]
        pairs = np.concatenate(pairs)
        pairs = np.sort(pairs[pairs[:, 0] != pairs[:, 1]], axis=1)
        self.pairs = np.unique(pairs, axis=0)
        self.image_size = float(h * w)


_SIMILARITIES = ("colour", "texture", "size", "fill")


def _hierarchy(regions, terms):
    """Greedy hierarchical grouping with the similarity sum of ``terms``.
    Returns the boxes of all regions in order of creation (initial ones first)."""
    size = list(regions.size)
    box = [b for b in regions.box]
    colour = [c for c in regions.colour]
    texture = [t for t in regions.texture]
    im = regions.image_size

    def similarity(i, j):
        s = 0.0
        if "colour" in terms:
            s += np.minimum(colour[i], colour[j]).sum()
        if "texture" in terms:
            s += np.minimum(texture[i], texture[j]).sum()
        if "size" in terms:
            s += 1.0 - (size[i] + size[j]) / im
        if "fill" in terms:
            bb = box[i], box[j]
            bw = max(bb[0][2], bb[1][2]) - min(bb[0][0], bb[1][0])
            bh = max(bb[0][3], bb[1][3]) - min(bb[0][1], bb[1][1])
            s += 1.0 - (bw * bh - size[i] - size[j]) / im
        return s

    neighbours = {i: set() for i in range(len(size))}
    sims = {}
    for i, j in regions.pairs.tolist():
        neighbours[i].add(j)
        neighbours[j].add(i)
        sims[(i, j)] = similarity(i, j)
    while sims:
        i, j = max(sims, key=sims.get)                                  # step 2: the most similar pair
        t = len(size)
        si, sj = size[i], size[j]
        size.append(si + sj)
        box.append(np.array([min(box[i][0], box[j][0]), min(box[i][1], box[j][1]),
                             max(box[i][2], box[j][2]), max(box[i][3], box[j][3])]))
        colour.append((si * colour[i] + sj * colour[j]) / (si + sj))
        texture.append((si * texture[i] + sj * texture[j]) / (si + sj))
        touching = (neighbours.pop(i) | neighbours.pop(j)) - {i, j}
        for n in touching:                                              # step 3
            neighbours[n] -= {i, j}
            for r in (i, j):
                sims.pop((min(n, r), max(n, r)), None)
        del sims[(i, j)]
        neighbours[t] = touching                                        # step 4
        for n in touching:
            neighbours[n].add(t)
            sims[(n, t)] = similarity(n, t)
    return np.array(box).reshape(-1, 4)


# ================================================================ colour spaces and the search
def _colour_space(rgb, name):
    """(image (H, W, C) float32, (lo, hi) of its channels) in one of the paper's colour spaces."""
    cv2 = _cv2()
    if name == "hsv":                                   # OpenCV's 8-bit HSV: H in 0..180
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV).astype(np.float32), (0.0, 256.0)
    if name == "lab":
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab).astype(np.float32), (0.0, 256.0)
    if name == "h":
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)[:, :, :1].astype(np.float32), (0.0, 181.0)
    if name == "i":
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)[:, :, None].astype(np.float32), (0.0, 256.0)
    if name == "rgi":                                   # normalised r, g (x255) and intensity
        f = rgb.astype(np.float32)
        total = f.sum(axis=2, keepdims=True) + 1e-6
        return np.concatenate([255 * f[:, :, :2] / total, f.mean(axis=2, keepdims=True)], axis=2), (0.0, 256.0)
    raise ValueError(f"selective_search: unknown colour space {name!r}")


_MODES = {
    "fast": (("hsv", "lab"), (50, 100), (_SIMILARITIES, ("texture", "size", "fill"))),
    "quality": (("hsv", "lab", "rgi", "h", "i"), (50, 100, 150, 300),
                (_SIMILARITIES, ("texture", "size", "fill"), ("fill",), ("size",))),
    "single": (("hsv",), (100,), (_SIMILARITIES,)),
}


def _as_rgb_uint8(image):
    """An (H, W, 3) uint8 RGB NumPy image from uint8 (H, W, 3) or float (3, H, W) / (H, W, 3) in [0, 1]
    (a Tensor or a CuPy array is copied to the host: selective search runs there)."""
    img = to_host(raw(image))
    if img.ndim == 3 and img.shape[0] == 3 and img.shape[2] != 3:
        img = img.transpose(1, 2, 0)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"selective_search: expected an RGB image (H, W, 3) or (3, H, W), got shape {img.shape}")
    if img.dtype != np.uint8:
        img = np.clip(np.rint(img.astype(np.float64) * 255), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(img)


def selective_search(image, mode="fast", sigma=0.8, scale=1.0, max_proposals=None, min_box_size=0, seed=0):
    """Selective search proposals of one RGB image (see the module docstring).

    Args:
        image: (H, W, 3) uint8 RGB, or float in [0, 1] as (3, H, W) (a dataset's sample,
            Tensor or array) or (H, W, 3).
        mode: 'fast' (8 hierarchies, the paper's "Selective Search Fast", as R-CNN),
            'quality' (80 hierarchies, slower, higher recall) or 'single' (one: HSV,
            k = 100, all four similarities).
        sigma: the segmentation's Gaussian blur.
        scale: multiplies the segmentation's k (and min_size = k): the paper's k
            suit ~500 x 375 images; smaller values give smaller first regions.
        max_proposals: keep the first this many (after ranking and de-duplication).
        min_box_size: drop boxes narrower or shorter than this (pixels).
        seed: the ranking's random numbers.

    Returns (N, 4) float32 boxes (x1, y1, x2, y2), best-ranked first, without duplicates.
    """
    if mode not in _MODES:
        raise ValueError(f"selective_search: mode must be one of {sorted(_MODES)}, got {mode!r}")
    if not scale > 0:
        raise ValueError(f"selective_search: scale must be > 0, got {scale}")
    rgb = _as_rgb_uint8(image)
    spaces, ks, strategies = _MODES[mode]
    rng = np.random.default_rng(seed)
    boxes, ranks = [], []
    for space in spaces:
        img, channel_range = _colour_space(rgb, space)
        graph, texture = _image_graph(img, sigma), _texture(img.astype(np.float32))   # the same for every k
        for k in ks:
            labels = _segment(graph, k * scale, int(round(k * scale)))
            regions = _Regions(labels, img, channel_range, texture)
            for terms in strategies:
                b = _hierarchy(regions, terms)
                position = np.arange(len(b), 0, -1, dtype=np.float64)   # the whole image (last) is 1
                boxes.append(b)
                ranks.append(position * rng.random(len(b)))
    boxes, ranks = np.concatenate(boxes), np.concatenate(ranks)
    order = np.argsort(ranks, kind="stable")
    boxes = boxes[order]
    _, first = np.unique(boxes, axis=0, return_index=True)             # a repeated box keeps its best rank
    boxes = boxes[np.sort(first)]
    if min_box_size > 0:
        boxes = boxes[((boxes[:, 2] - boxes[:, 0]) >= min_box_size) & ((boxes[:, 3] - boxes[:, 1]) >= min_box_size)]
    if max_proposals is not None:
        boxes = boxes[:int(max_proposals)]
    return boxes.astype(np.float32)
