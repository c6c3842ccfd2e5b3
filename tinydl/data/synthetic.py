"""Synthetic shapes with known corners, drawn with OpenCV, for MagicPoint.

SuperPoint's detector is first trained (as "MagicPoint") on simple drawings
whose interest points are known exactly: the ends of lines, the vertices of
polygons, the tips and centres of stars, the grid points of checkerboards, the
visible vertices of cubes. Ellipses have no corners: they teach the network that
curves are not interest points.

``SyntheticShapes(n)[i]`` draws image i from ``default_rng([seed, i])``, so the
dataset is the same on every machine and every run, without storing anything.
An image is grey uint8 (H, W) (default 120 x 160, the notes' size); its
keypoints are a float32 array (K, 2) of (x, y) pixel coordinates -- OpenCV's
convention: pixel centres at integers, x to the right, y down -- all inside the
image.

``keypoints_to_label`` makes SuperPoint's detector target: one class per 8x8
cell, 0..63 for the position of a keypoint inside the cell, 64 ("dustbin") for
none; a (120, 160) image gives a (15, 20) label, matching the (15, 20, 65) head.

``SyntheticContours`` is the same idea for Deep Snake: one filled shape (ellipse,
polygon or star) per image, whose outline is known exactly; a sample is the
image, the initial contour a detector would give (an octagon built from the
object's box and extreme points, or a diamond from its box) and the true
contour, both resampled to V vertices that correspond one to one.
"""
import math

import numpy as np

from .dataset import Dataset

__all__ = ["SyntheticShapes", "PRIMITIVES", "keypoints_to_heatmap", "keypoints_to_label", "label_to_heatmap",
           "SyntheticContours", "CONTOUR_SHAPES", "resample_contour", "box_octagon", "box_diamond",
           "contour_to_mask", "contour_iou"]

PRIMITIVES = ("lines", "polygons", "stars", "checkerboards", "cubes", "ellipses")


def _cv2():
    try:
        import cv2
    except ImportError as exc:
        raise ImportError("the synthetic datasets draw with OpenCV: pip install 'tinydl[train]'") from exc
    return cv2


# ================================================================ drawing helpers
def smooth_background(rng, h, w, channels=None, base_range=(40, 215), amplitude=40):
    """A smooth random background, (H, W) grey or (H, W, channels) uint8: a random base
    level plus coarse uniform noise enlarged with cubic interpolation, so that shapes
    drawn on it are not the only structure in the image."""
    cv2 = _cv2()
    extra = () if channels is None else (channels,)
    base = rng.uniform(*base_range, size=extra or None)
    coarse = rng.uniform(-amplitude, amplitude, size=(max(h // 16, 2), max(w // 16, 2)) + extra)
    smooth = cv2.resize(coarse.astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(base + smooth, 0, 255).astype(np.uint8)


def _colour(rng, img, avoid=()):
    """A grey level at least 50 away from the image's mean and from ``avoid``."""
    mean = float(img.mean())
    for _ in range(100):
        c = int(rng.integers(0, 256))
        if abs(c - mean) >= 50 and all(abs(c - a) >= 40 for a in avoid):
            return c
    return 255 if mean < 128 else 0


def _cross(o, a, b):
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def _segments_intersect(p1, p2, q1, q2):
    """Proper or touching intersection of segments p1p2 and q1q2 (orientation tests)."""
    d1, d2 = _cross(q1, q2, p1), _cross(q1, q2, p2)
    d3, d4 = _cross(p1, p2, q1), _cross(p1, p2, q2)
    return (d1 * d2 <= 0) and (d3 * d4 <= 0)


def _near(point, others, distance):
    return any(math.hypot(point[0] - q[0], point[1] - q[1]) < distance for q in others)


def _thickness(rng, h, w):
    return int(rng.integers(1, max(2, min(h, w) // 40) + 1))


def draw_lines(img, rng):
    """1-5 segments that do not cross; keypoints: their end points."""
    cv2 = _cv2()
    h, w = img.shape
    min_len = 0.15 * min(h, w)
    segments = []
    for _ in range(int(rng.integers(1, 6))):
        for _try in range(20):
            p = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            q = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            if math.hypot(p[0] - q[0], p[1] - q[1]) < min_len:
                continue
            ends = [e for s in segments for e in s]
            if any(_segments_intersect(p, q, a, b) for a, b in segments) or \
                    _near(p, ends, 8) or _near(q, ends, 8):
                continue
            segments.append((p, q))
            break
    for p, q in segments:
        cv2.line(img, p, q, _colour(rng, img), _thickness(rng, h, w), cv2.LINE_AA)
    return np.array([e for s in segments for e in s], dtype=np.float32).reshape(-1, 2)


def _polygon(rng, center, radius, sides):
    """Vertices around ``center`` at sorted random angles (kept apart, so no sliver)."""
    for _ in range(50):
        angles = np.sort(rng.uniform(0, 2 * math.pi, size=sides))
        gaps = np.diff(np.concatenate([angles, angles[:1] + 2 * math.pi]))
        if gaps.min() < 0.5 or gaps.max() > math.pi - 0.2:
            continue
        radii = rng.uniform(0.6 * radius, radius, size=sides)
        pts = np.stack([center[0] + radii * np.cos(angles), center[1] + radii * np.sin(angles)], axis=1)
        # every interior angle well away from 180 degrees, so each vertex is a visible corner
        ok = True
        for k in range(sides):
            a, b, c = pts[k - 1], pts[k], pts[(k + 1) % sides]
            u, v = a - b, c - b
            cos = float(u @ v / (np.linalg.norm(u) * np.linalg.norm(v) + 1e-9))
            if cos < math.cos(math.radians(155)):
                ok = False
                break
        if ok:
            return np.rint(pts).astype(np.int32)
    return None


def draw_polygons(img, rng):
    """1-3 filled polygons (3-6 vertices) that do not overlap; keypoints: vertices."""
    cv2 = _cv2()
    h, w = img.shape
    placed, keypoints = [], []
    for _ in range(int(rng.integers(1, 4))):
        for _try in range(20):
            radius = rng.uniform(0.15, 0.35) * min(h, w)
            center = (rng.uniform(radius, w - 1 - radius), rng.uniform(radius, h - 1 - radius))
            if any(math.hypot(center[0] - c[0], center[1] - c[1]) < radius + r + 4 for c, r in placed):
                continue
            pts = _polygon(rng, center, radius, int(rng.integers(3, 7)))
            if pts is None:
                continue
            cv2.fillPoly(img, [pts], _colour(rng, img), cv2.LINE_AA)
            placed.append((center, radius))
            keypoints += pts.tolist()
            break
    return np.array(keypoints, dtype=np.float32).reshape(-1, 2)


def draw_stars(img, rng):
    """1-2 stars: 3-5 rays from a centre; keypoints: the centre and the ray tips."""
    cv2 = _cv2()
    h, w = img.shape
    placed, keypoints = [], []
    for _ in range(int(rng.integers(1, 3))):
        for _try in range(20):
            radius = rng.uniform(0.2, 0.4) * min(h, w)
            center = (rng.uniform(radius, w - 1 - radius), rng.uniform(radius, h - 1 - radius))
            if any(math.hypot(center[0] - c[0], center[1] - c[1]) < radius + r + 4 for c, r in placed):
                continue
            rays = int(rng.integers(3, 6))
            angles = np.sort(rng.uniform(0, 2 * math.pi, size=rays))
            gaps = np.diff(np.concatenate([angles, angles[:1] + 2 * math.pi]))
            if gaps.min() < 0.6:        # rays too close would merge into one
                continue
            lengths = rng.uniform(0.5 * radius, radius, size=rays)
            c = (int(round(center[0])), int(round(center[1])))
            tips = [(int(round(c[0] + L * math.cos(a))), int(round(c[1] + L * math.sin(a))))
                    for a, L in zip(angles, lengths)]
            colour, thick = _colour(rng, img), _thickness(rng, h, w)
            for t in tips:
                cv2.line(img, c, t, colour, thick, cv2.LINE_AA)
            placed.append((center, radius))
            keypoints += [c] + tips
            break
    return np.array(keypoints, dtype=np.float32).reshape(-1, 2)


def draw_checkerboards(img, rng):
    """A checkerboard seen in perspective; keypoints: all its grid points."""
    cv2 = _cv2()
    h, w = img.shape
    rows, cols = int(rng.integers(3, 7)), int(rng.integers(3, 7))
    # the board's four corners: a rectangle in the image, each corner jittered
    margin = 0.08 * min(h, w)
    x0, x1 = rng.uniform(margin, 0.35 * w), rng.uniform(0.65 * w, w - 1 - margin)
    y0, y1 = rng.uniform(margin, 0.35 * h), rng.uniform(0.65 * h, h - 1 - margin)
    jitter = 0.08 * min(h, w)
    quad = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]]) + rng.uniform(-jitter, jitter, size=(4, 2))
    quad = np.clip(quad, 0, [w - 1, h - 1]).astype(np.float32)
    unit = np.array([[0, 0], [cols, 0], [cols, rows], [0, rows]], dtype=np.float32)
    homography = cv2.getPerspectiveTransform(unit, quad)
    gx, gy = np.meshgrid(np.arange(cols + 1), np.arange(rows + 1))
    grid = np.stack([gx.ravel(), gy.ravel(), np.ones(gx.size)], axis=1) @ homography.T
    grid = (grid[:, :2] / grid[:, 2:]).reshape(rows + 1, cols + 1, 2)
    dark = _colour(rng, img)
    light = _colour(rng, img, avoid=(dark,))
    for r in range(rows):
        for c in range(cols):
            cell = np.array([grid[r, c], grid[r, c + 1], grid[r + 1, c + 1], grid[r + 1, c]])
            cv2.fillConvexPoly(img, np.rint(cell).astype(np.int32), dark if (r + c) % 2 else light, cv2.LINE_AA)
    return np.rint(grid.reshape(-1, 2)).astype(np.float32)


_CUBE = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=np.float64)
_FACES = [  # vertex indices of each face (in order around it) and its outward normal
    ([0, 1, 3, 2], (-1, 0, 0)), ([4, 5, 7, 6], (1, 0, 0)),
    ([0, 1, 5, 4], (0, -1, 0)), ([2, 3, 7, 6], (0, 1, 0)),
    ([0, 2, 6, 4], (0, 0, -1)), ([1, 3, 7, 5], (0, 0, 1)),
]


def _rotation(ax, ay, az):
    cx, sx, cy, sy, cz, sz = math.cos(ax), math.sin(ax), math.cos(ay), math.sin(ay), math.cos(az), math.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ rx @ ry


def draw_cubes(img, rng):
    """A shaded cube, turned at random, seen from the front (orthographic);
    keypoints: the vertices of its visible faces (usually 7)."""
    cv2 = _cv2()
    h, w = img.shape
    sign = lambda: 1 if rng.random() < 0.5 else -1   # noqa: E731
    rotation = _rotation(sign() * rng.uniform(0.35, 1.2), sign() * rng.uniform(0.35, 1.2),
                         rng.uniform(0, 2 * math.pi))
    size = rng.uniform(0.18, 0.28) * min(h, w)          # half the edge; the cube fits in ~1.75 * 2 * size
    turned = _CUBE @ rotation.T
    reach = np.abs(turned[:, :2]).max(axis=0) * size
    center = np.array([rng.uniform(reach[0], w - 1 - reach[0]), rng.uniform(reach[1], h - 1 - reach[1])])
    points = turned[:, :2] * size + center
    shades = []
    visible = set()
    # the camera looks along +z: a face is visible when its turned normal points to -z
    faces = [(idx, rotation @ np.array(n, dtype=np.float64)) for idx, n in _FACES]
    for idx, normal in faces:
        if normal[2] < -1e-6:
            shade = _colour(rng, img, avoid=shades)
            shades.append(shade)
            cv2.fillConvexPoly(img, np.rint(points[idx]).astype(np.int32), shade, cv2.LINE_AA)
            visible.update(idx)
    return np.rint(points[sorted(visible)]).astype(np.float32)


def draw_ellipses(img, rng):
    """1-4 filled ellipses that do not overlap; no keypoints (curves have no corners)."""
    cv2 = _cv2()
    h, w = img.shape
    placed = []
    for _ in range(int(rng.integers(1, 5))):
        for _try in range(20):
            a, b = rng.uniform(0.06, 0.2, size=2) * min(h, w)
            r = max(a, b)
            center = (rng.uniform(r, w - 1 - r), rng.uniform(r, h - 1 - r))
            if any(math.hypot(center[0] - c[0], center[1] - c[1]) < r + rr + 3 for c, rr in placed):
                continue
            cv2.ellipse(img, (int(round(center[0])), int(round(center[1]))), (int(round(a)), int(round(b))),
                        rng.uniform(0, 180), 0, 360, _colour(rng, img), -1, cv2.LINE_AA)
            placed.append((center, r))
            break
    return np.zeros((0, 2), dtype=np.float32)


_DRAW = {"lines": draw_lines, "polygons": draw_polygons, "stars": draw_stars,
         "checkerboards": draw_checkerboards, "cubes": draw_cubes, "ellipses": draw_ellipses}


# ================================================================ the dataset
class SyntheticShapes(Dataset):
    """``num_samples`` drawings, image i of primitive ``primitives[i % len(primitives)]``.

    ``dataset[i]`` -> ``(image, target)``: image uint8 (H, W); target by ``target``:
    'keypoints' (K, 2) float32 (x, y) -- K varies, so batch them with a
    ``collate_fn`` that keeps lists --, 'heatmap' (H, W) float32 with 1 at each
    keypoint, or 'label' (H/8, W/8) int64 in 0..64 (SuperPoint's detector target).
    ``noise_std`` (grey levels) and ``blur`` add sensor-like noise and softness
    after drawing. ``transform`` is applied to the image only, so use photometric
    transforms (a flip would move the corners away from their labels).
    """

    def __init__(self, num_samples=1000, image_size=(120, 160), primitives=PRIMITIVES, seed=0,
                 target="keypoints", noise_std=5.0, blur=True, transform=None, target_transform=None):
        unknown = [p for p in primitives if p not in _DRAW]
        if unknown or not primitives:
            raise ValueError(f"SyntheticShapes: unknown primitives {unknown}; choose from {PRIMITIVES}")
        if target not in ("keypoints", "heatmap", "label"):
            raise ValueError(f"SyntheticShapes: target must be 'keypoints', 'heatmap' or 'label', got {target!r}")
        h, w = image_size
        if target == "label" and (h % 8 or w % 8):
            raise ValueError(f"SyntheticShapes: target='label' needs a size divisible by 8, got {image_size}")
        self.num_samples, self.image_size, self.primitives = int(num_samples), (int(h), int(w)), tuple(primitives)
        self.seed, self.target, self.noise_std, self.blur = int(seed), target, float(noise_std), blur
        self.transform, self.target_transform = transform, target_transform

    def __len__(self):
        return self.num_samples

    def primitive(self, index):
        return self.primitives[index % len(self.primitives)]

    def draw(self, index):
        """(image uint8 (H, W), keypoints float32 (K, 2)) of sample ``index``."""
        if not 0 <= index < self.num_samples:
            raise IndexError(f"SyntheticShapes: index {index} out of range for {self.num_samples} samples")
        cv2 = _cv2()
        rng = np.random.default_rng([self.seed, int(index)])
        h, w = self.image_size
        img = smooth_background(rng, h, w)
        keypoints = _DRAW[self.primitive(index)](img, rng)
        if self.blur:
            img = cv2.GaussianBlur(img, (3, 3), 0.7)
        if self.noise_std > 0:
            img = np.clip(np.rint(img + rng.normal(0.0, self.noise_std, size=img.shape)), 0, 255).astype(np.uint8)
        inside = (keypoints[:, 0] >= 0) & (keypoints[:, 0] <= w - 1) & \
                 (keypoints[:, 1] >= 0) & (keypoints[:, 1] <= h - 1)
        return img, np.ascontiguousarray(keypoints[inside], dtype=np.float32)

    def __getitem__(self, index):
        if index < 0:
            index += self.num_samples
        img, keypoints = self.draw(index)
        if self.target == "heatmap":
            target = keypoints_to_heatmap(keypoints, self.image_size)
        elif self.target == "label":
            target = keypoints_to_label(keypoints, self.image_size)
        else:
            target = keypoints
        if self.transform is not None:
            img = self.transform(img)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return img, target


# ================================================================ keypoint targets
def _pixels(keypoints, shape):
    """Integer (row, col) of each keypoint, rounded, kept inside the image."""
    h, w = shape
    kp = np.asarray(keypoints, dtype=np.float64).reshape(-1, 2)
    cols = np.clip(np.rint(kp[:, 0]), 0, w - 1).astype(np.int64)
    rows = np.clip(np.rint(kp[:, 1]), 0, h - 1).astype(np.int64)
    return rows, cols


def keypoints_to_heatmap(keypoints, shape, sigma=0.0):
    """(H, W) float32 map of keypoints (x, y): 1 at each (rounded) keypoint pixel and
    0 elsewhere, or with ``sigma > 0`` the maximum of Gaussians exp(-d^2 / 2 sigma^2)."""
    h, w = shape
    heat = np.zeros((h, w), dtype=np.float32)
    if sigma <= 0:
        rows, cols = _pixels(keypoints, shape)
        heat[rows, cols] = 1.0
        return heat
    ys, xs = np.arange(h, dtype=np.float32)[:, None], np.arange(w, dtype=np.float32)[None, :]
    for x, y in np.asarray(keypoints, dtype=np.float32).reshape(-1, 2):
        np.maximum(heat, np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / np.float32(2 * sigma ** 2)), out=heat)
    return heat


def keypoints_to_label(keypoints, shape, cell=8, rng=None):
    """SuperPoint's detector target: (H/cell, W/cell) int64.

    Each cell's class is the position of its keypoint inside it, row-major,
    ``(y % cell) * cell + (x % cell)`` in 0..cell*cell-1, or ``cell*cell`` (the
    "dustbin", 64 for 8x8 cells) when the cell has none. A cell with several
    keypoints keeps one: at random when ``rng`` is given, else the first.
    """
    h, w = shape
    if h % cell or w % cell:
        raise ValueError(f"keypoints_to_label: image size {shape} is not divisible by cell={cell}")
    label = np.full((h // cell, w // cell), cell * cell, dtype=np.int64)
    rows, cols = _pixels(keypoints, shape)
    order = rng.permutation(len(rows)) if rng is not None else np.arange(len(rows))[::-1]
    for k in order:   # later writes win: reversed order makes the first keypoint win
        label[rows[k] // cell, cols[k] // cell] = (rows[k] % cell) * cell + cols[k] % cell
    return label


def label_to_heatmap(label, cell=8):
    """The (H, W) 0/1 map of a ``keypoints_to_label`` target (the dustbin marks nothing)."""
    label = np.asarray(label)
    hc, wc = label.shape
    heat = np.zeros((hc * cell, wc * cell), dtype=np.float32)
    rows, cols = np.nonzero(label < cell * cell)
    pos = label[rows, cols]
    heat[rows * cell + pos // cell, cols * cell + pos % cell] = 1.0
    return heat


# ================================================================ closed contours (Deep Snake)
CONTOUR_SHAPES = ("ellipses", "polygons", "stars")


def _signed_area(points):
    """Shoelace area of a closed polygon (x, y); positive when it runs top -> right ->
    bottom -> left on screen (y down), the order every contour here uses."""
    x, y = points[:, 0], points[:, 1]
    return 0.5 * float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))


def resample_contour(points, num_vertices, start=None):
    """``num_vertices`` points equally spaced along the closed polygon ``points`` (M, 2).

    The walk starts at ``start`` (x, y) projected onto the polygon (default: its
    first vertex) and follows the polygon's order. float64 (V, 2) out.
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(pts) < 2:
        raise ValueError(f"resample_contour: a closed contour needs at least 2 points, got {len(pts)}")
    closed = np.vstack([pts, pts[:1]])
    seg = np.diff(closed, axis=0)
    lengths = np.hypot(seg[:, 0], seg[:, 1])
    cum = np.concatenate([[0.0], np.cumsum(lengths)])
    total = cum[-1]
    if total <= 0:
        raise ValueError("resample_contour: the contour has zero length")
    offset = 0.0
    if start is not None:     # arc length of the polygon point nearest to ``start``
        d = np.asarray(start, dtype=np.float64) - closed[:-1]
        t = np.clip((d * seg).sum(axis=1) / np.maximum(lengths ** 2, 1e-12), 0, 1)
        foot = closed[:-1] + t[:, None] * seg
        k = int(np.argmin(np.hypot(*(foot - start).T)))
        offset = cum[k] + t[k] * lengths[k]
    s = (offset + np.arange(num_vertices) * total / num_vertices) % total
    return np.stack([np.interp(s, cum, closed[:, 0]), np.interp(s, cum, closed[:, 1])], axis=1)


def _extreme_points(contour):
    """Top, right, bottom, left extreme points of a contour (the first one of each)."""
    return (contour[np.argmin(contour[:, 1])], contour[np.argmax(contour[:, 0])],
            contour[np.argmax(contour[:, 1])], contour[np.argmin(contour[:, 0])])


def box_octagon(box, extremes=None):
    """Deep Snake's initial contour: an octagon (12 vertices, top extreme first, in
    contour order) from a box (x1, y1, x2, y2) and its four extreme points
    (top, right, bottom, left; default: the middles of the sides).

    Each extreme point grows into a segment along its box side, a quarter of
    that side long (clipped to the box); joining the segments' ends cuts the
    box's corners off. With the side middles it is a regular-looking octagon.
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    w, h = x2 - x1, y2 - y1
    if extremes is None:
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        extremes = ((cx, y1), (x2, cy), (cx, y2), (x1, cy))
    (xt, _), (_, yr), (xb, _), (_, yl) = extremes
    return np.array([
        (xt, y1), (min(xt + w / 8, x2), y1),
        (x2, max(yr - h / 8, y1)), (x2, yr), (x2, min(yr + h / 8, y2)),
        (min(xb + w / 8, x2), y2), (xb, y2), (max(xb - w / 8, x1), y2),
        (x1, min(yl + h / 8, y2)), (x1, yl), (x1, max(yl - h / 8, y1)),
        (max(xt - w / 8, x1), y1),
    ], dtype=np.float64)


def box_diamond(box):
    """The diamond joining the middles of a box's sides (top first, contour order)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    return np.array([(cx, y1), (x2, cy), (cx, y2), (x1, cy)], dtype=np.float64)


def contour_to_mask(contour, shape):
    """uint8 (H, W) mask, 1 inside the closed polygon ``contour`` (V, 2) (x, y):
    OpenCV's fillPoly at 1/16-pixel precision."""
    cv2 = _cv2()
    mask = np.zeros(shape, dtype=np.uint8)
    pts = np.rint(np.asarray(contour, dtype=np.float64).reshape(-1, 2) * 16).astype(np.int32)
    cv2.fillPoly(mask, [pts], 1, cv2.LINE_8, shift=4)
    return mask


def contour_iou(contour_a, contour_b, shape):
    """Intersection over union of the masks of two contours in an image of ``shape``."""
    a, b = contour_to_mask(contour_a, shape).astype(bool), contour_to_mask(contour_b, shape).astype(bool)
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def _shape_outline(kind, rng, center, radius):
    """A dense outline (M, 2) of one shape around ``center``, within ``radius``."""
    if kind == "ellipses":
        a, b = radius * rng.uniform(0.5, 1.0), radius * rng.uniform(0.35, 1.0)
        theta, t = rng.uniform(0, math.pi), np.linspace(0, 2 * math.pi, 256, endpoint=False)
        x, y = a * np.cos(t), b * np.sin(t)
        return np.stack([center[0] + x * math.cos(theta) - y * math.sin(theta),
                         center[1] + x * math.sin(theta) + y * math.cos(theta)], axis=1)
    if kind == "polygons":
        pts = _polygon(rng, center, radius, int(rng.integers(3, 9)))
        if pts is not None:
            return pts.astype(np.float64)
        kind = "stars"    # (rare) no acceptable polygon: draw a star instead
    points = int(rng.integers(4, 8))
    inner = rng.uniform(0.4, 0.65)
    angles = rng.uniform(0, 2 * math.pi) + np.arange(2 * points) * math.pi / points
    radii = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner) * radius * rng.uniform(0.9, 1.0, 2 * points)
    return np.stack([center[0] + radii * np.cos(angles), center[1] + radii * np.sin(angles)], axis=1)


class SyntheticContours(Dataset):
    """One filled shape per image with its exact outline, for Deep Snake.

    ``dataset[i]`` -> ``(image, init, contour)``: image uint8 (H, W); ``init`` and
    ``contour`` float32 (V, 2) (x, y), V = ``num_vertices`` (Deep Snake: 128).
    ``contour`` is the shape's outline resampled to V equally spaced vertices;
    ``init`` is the initial contour Deep Snake starts from: ``init='octagon'``
    builds an octagon from the object's box and extreme points (``box_octagon``),
    ``'diamond'`` a diamond from its box, both from a box whose sides (and extreme
    points) are moved by Gaussian noise of ``jitter`` times the box size, as a
    detector's would be. Both contours run in the same direction (top, right,
    bottom, left on screen), ``init`` from its top vertex and ``contour`` from its
    point nearest to that vertex, so vertex k of one corresponds to vertex k of
    the other: the snake's target offsets are ``contour - init``.

    ``draw(i)`` also gives the shape's mask (``contour_to_mask`` of its outline) and box.
    Image i is drawn from ``default_rng([seed, i])``: the same everywhere, nothing stored.
    """

    def __init__(self, num_samples=1000, image_size=(64, 64), num_vertices=40, shapes=CONTOUR_SHAPES,
                 init="octagon", jitter=0.05, seed=0, noise_std=5.0, blur=True, transform=None):
        unknown = [k for k in shapes if k not in CONTOUR_SHAPES]
        if unknown or not shapes:
            raise ValueError(f"SyntheticContours: unknown shapes {unknown}; choose from {CONTOUR_SHAPES}")
        if init not in ("octagon", "diamond"):
            raise ValueError(f"SyntheticContours: init must be 'octagon' or 'diamond', got {init!r}")
        if int(num_vertices) < 4:
            raise ValueError(f"SyntheticContours: num_vertices must be at least 4, got {num_vertices}")
        self.num_samples, self.image_size = int(num_samples), tuple(int(v) for v in image_size)
        self.num_vertices, self.shapes, self.init = int(num_vertices), tuple(shapes), init
        self.jitter, self.seed, self.noise_std, self.blur = float(jitter), int(seed), float(noise_std), blur
        self.transform = transform

    def __len__(self):
        return self.num_samples

    def shape_kind(self, index):
        return self.shapes[index % len(self.shapes)]

    def draw(self, index):
        """dict(image uint8 (H, W), mask uint8 (H, W), contour and init float32 (V, 2),
        box float32 (4,) (the true, unjittered x1, y1, x2, y2), kind)."""
        if not 0 <= index < self.num_samples:
            raise IndexError(f"SyntheticContours: index {index} out of range for {self.num_samples} samples")
        cv2 = _cv2()
        rng = np.random.default_rng([self.seed, int(index), 7])
        h, w = self.image_size
        img = smooth_background(rng, h, w)
        radius = rng.uniform(0.22, 0.4) * min(h, w)
        center = (rng.uniform(radius + 2, w - 3 - radius), rng.uniform(radius + 2, h - 3 - radius))
        outline = _shape_outline(self.shape_kind(index), rng, center, radius)
        if _signed_area(outline) < 0:
            outline = outline[::-1]
        dense = resample_contour(outline, 512)
        pts = np.rint(dense * 16).astype(np.int32)
        cv2.fillPoly(img, [pts], _colour(rng, img), cv2.LINE_AA, shift=4)
        if self.blur:
            img = cv2.GaussianBlur(img, (3, 3), 0.7)
        if self.noise_std > 0:
            img = np.clip(np.rint(img + rng.normal(0.0, self.noise_std, size=img.shape)), 0, 255).astype(np.uint8)

        box = np.array([dense[:, 0].min(), dense[:, 1].min(), dense[:, 0].max(), dense[:, 1].max()])
        size = np.array([box[2] - box[0], box[3] - box[1]] * 2)
        noisy = box + rng.normal(0.0, self.jitter, 4) * size
        noisy = np.clip(noisy, 0, [w - 1, h - 1, w - 1, h - 1])
        if noisy[2] - noisy[0] < 2 or noisy[3] - noisy[1] < 2:
            noisy = box
        if self.init == "octagon":
            extremes = []
            for k, p in enumerate(_extreme_points(dense)):
                along = 0 if k % 2 else 1     # top/bottom move along x, right/left along y
                p = np.array(p, dtype=np.float64)
                p[along] += rng.normal(0.0, self.jitter) * size[along]
                p[along] = np.clip(p[along], noisy[along], noisy[along + 2])
                extremes.append(p)
            polygon = box_octagon(noisy, extremes)
        else:
            polygon = box_diamond(noisy)
        init = resample_contour(polygon, self.num_vertices)
        contour = resample_contour(dense, self.num_vertices, start=init[0])
        return {"image": img, "mask": contour_to_mask(dense, (h, w)), "contour": contour.astype(np.float32),
                "init": init.astype(np.float32), "box": box.astype(np.float32), "kind": self.shape_kind(index)}

    def __getitem__(self, index):
        if index < 0:
            index += self.num_samples
        sample = self.draw(index)
        img = sample["image"] if self.transform is None else self.transform(sample["image"])
        return img, sample["init"], sample["contour"]
