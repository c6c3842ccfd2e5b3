"""Reading a feature map at real-valued points, and picking points from a heatmap.

``sample_points``      bilinear (or nearest) sampling of (N, C, H, W) at K points per
                       image: the one sampling core of the codebase (differentiable
                       w.r.t. the map and the points).
``sample_descriptors`` SuperPoint's descriptors at keypoints given in full-image
                       pixels: sample the coarse (1/cell) descriptor map, L2-normalise.
``heatmap_nms``        SuperPoint's keypoint selection: threshold, then greedy
                       non-maximum suppression in a (2r+1) x (2r+1) window.

Coordinates: a point is (x, y), x along the width. In ``sample_points`` they
are *map* coordinates with pixel centres at integers: (0, 0) is the centre of
the top-left element, (W-1, H-1) of the bottom-right one -- what
``torch.nn.functional.grid_sample(..., align_corners=True)`` calls the grid
value -1 and +1.
"""
import numpy as np

from ...autograd import Function
from ...backend import get_array_module
from ...kernels.scatter import scatter_add
from ...nn import functional as F
from ...tensor import Tensor

__all__ = ["sample_points", "sample_descriptors", "heatmap_nms"]


# ================================================================ the sampling op
def _corners(points, h, w):
    """The (up to) four map elements a point reads, as flat indices into H*W,
    their bilinear weights and whether each is inside the map.

    With x0 = floor(x), tx = x - x0 (likewise y):
        y = (1-tx)(1-ty) f[y0, x0] + tx(1-ty) f[y0, x0+1] + (1-tx)ty f[y0+1, x0] + tx ty f[y0+1, x0+1]
    A corner outside the map reads 0 (grid_sample's padding_mode='zeros').
    """
    xp = get_array_module(points)
    x, y = points[..., 0], points[..., 1]
    x0, y0 = xp.floor(x), xp.floor(y)
    tx, ty = x - x0, y - y0
    x0, y0 = x0.astype(np.int64), y0.astype(np.int64)
    out = []
    for dy, wy in ((0, 1 - ty), (1, ty)):
        for dx, wx in ((0, 1 - tx), (1, tx)):
            cx, cy = x0 + dx, y0 + dy
            inside = (cx >= 0) & (cx < w) & (cy >= 0) & (cy < h)
            flat = xp.where(inside, cy * w + cx, 0)         # any valid index; masked out below
            out.append((flat, wx * wy, inside))
    return out, tx, ty


def _gather(maps, flat):
    """maps (N, H*W, C), flat (N, K) -> maps[n, flat[n, k], :] as (N, K, C)."""
    xp = get_array_module(maps)
    return maps[xp.arange(maps.shape[0])[:, None], flat]


class SamplePoints(Function):
    """y[n, :, k] = f_n(p[n, k]): the map f (N, C, H, W) read at points p (N, K, 2).

    bilinear (see ``_corners``), with corners c = 00, 10, 01, 11 and weights w_c:
        y[n, :, k] = sum_c w_c * f[n, :, c]                 (0 for a corner outside)
      dL/df[n, :, c] += w_c * dL/dy[n, :, k]                (scatter-add: a map element
                                                             read by several points sums)
      dL/dx[n, k] = sum_C dL/dy * ((1-ty)(f10 - f00) + ty(f11 - f01))
      dL/dy[n, k] = sum_C dL/dy * ((1-tx)(f01 - f00) + tx(f11 - f10))
    (the bilinear surface is linear in x for fixed y and vice versa; at integer
    coordinates, where it has a kink, this is the right-hand derivative, as torch.)

    nearest: y[n, :, k] = f[n, :, round(y), round(x)] (half to even, as torch's
    nearbyint); dL/df scatters dL/dy to that element, dL/dp = 0 (piecewise constant).
    """

    def forward(ctx, maps, points, mode):
        xp = get_array_module(maps)
        n, c, h, w = maps.shape
        flat_maps = maps.reshape(n, c, h * w).transpose(0, 2, 1)          # (N, H*W, C): rows to gather
        if mode == "nearest":
            cx, cy = xp.rint(points[..., 0]).astype(np.int64), xp.rint(points[..., 1]).astype(np.int64)
            inside = (cx >= 0) & (cx < w) & (cy >= 0) & (cy < h)
            taps = [(xp.where(inside, cy * w + cx, 0), xp.ones(inside.shape, dtype=maps.dtype), inside)]
            tx = ty = None
        else:
            taps, tx, ty = _corners(points, h, w)
        values = []
        out = xp.zeros((n, points.shape[1], c), dtype=maps.dtype)
        for flat, weight, inside in taps:
            v = _gather(flat_maps, flat) * inside[..., None]                 # (N, K, C), 0 outside
            out += weight[..., None] * v
            values.append(v)
        ctx.taps, ctx.tx, ctx.ty, ctx.shape, ctx.mode = taps, tx, ty, maps.shape, mode
        ctx.save_for_backward(*values)
        return out.transpose(0, 2, 1).copy()                                 # (N, C, K)

    def backward(ctx, gy):
        xp = get_array_module(gy)
        n, c, h, w = ctx.shape
        g = gy.transpose(0, 2, 1)                                            # (N, K, C)
        gmaps = gpoints = None
        if ctx.needs_input_grad[0]:
            flat_g = xp.zeros((n, h * w, c), dtype=gy.dtype)
            rows = xp.arange(n)[:, None]
            for flat, weight, inside in ctx.taps:
                scatter_add(flat_g, (rows, flat), g * (weight * inside)[..., None])
            gmaps = flat_g.transpose(0, 2, 1).reshape(n, c, h, w)
        if ctx.needs_input_grad[1]:
            gpoints = xp.zeros(g.shape[:2] + (2,), dtype=gy.dtype)
            if ctx.mode == "bilinear":
                f00, f10, f01, f11 = ctx.saved_tensors
                tx, ty = ctx.tx[..., None], ctx.ty[..., None]
                gpoints[..., 0] = (g * ((1 - ty) * (f10 - f00) + ty * (f11 - f01))).sum(axis=-1)
                gpoints[..., 1] = (g * ((1 - tx) * (f01 - f00) + tx * (f11 - f10))).sum(axis=-1)
        return gmaps, gpoints

    def release(ctx):
        ctx.taps = ctx.tx = ctx.ty = None        # the corner indices and weights go with the saved values
        super().release()


def _as_tensor_like(points, ref, op):
    """Points as a Tensor on ``ref``'s device in ``ref``'s dtype (no graph when not differentiable)."""
    if isinstance(points, Tensor):
        if points.device != ref.device:
            raise RuntimeError(f"{op}: the map is on {ref.device} but the points are on {points.device}")
        if points.dtype != ref.dtype:
            if points.requires_grad:
                raise RuntimeError(f"{op}: points of dtype {points.dtype} need a gradient but the map is "
                                   f"{ref.dtype}; convert one of them")
            points = Tensor(points.array.astype(ref.dtype))
        return points
    xp = ref._xp
    if get_array_module(points) is not xp and not isinstance(points, (list, tuple, np.ndarray)):
        raise RuntimeError(f"{op}: the points are on another device than the map ({ref.device})")
    return Tensor(xp.asarray(points, dtype=ref.dtype))


def sample_points(input, points, mode="bilinear"):
    """Read ``input`` (N, C, H, W) at real-valued ``points`` (N, K, 2) -> (N, C, K).

    Points are (x, y) in map coordinates, element centres at integers (see the
    module docstring); a point outside the map reads zeros for its outside
    neighbours. Equal to ``torch.nn.functional.grid_sample(input, grid,
    mode=mode, padding_mode='zeros', align_corners=True)[:, :, 0]`` with
    grid[n, 0, k] = (2 x / (W - 1) - 1, 2 y / (H - 1) - 1).
    Differentiable w.r.t. ``input`` and (bilinear mode) ``points``.
    """
    op = "sample_points"
    if mode not in ("bilinear", "nearest"):
        raise ValueError(f"{op}: mode must be 'bilinear' or 'nearest', got {mode!r}")
    if not isinstance(input, Tensor) or input.ndim != 4:
        raise RuntimeError(f"{op}: expected a (N, C, H, W) Tensor map, got "
                           f"{getattr(input, 'shape', type(input).__name__)}")
    if input.dtype.kind != "f":
        raise RuntimeError(f"{op}: the map must be floating point, got {input.dtype}")
    points = _as_tensor_like(points, input, op)
    if points.ndim != 3 or points.shape[2] != 2 or points.shape[0] != input.shape[0]:
        raise RuntimeError(f"{op}: expected points of shape (N, K, 2) = ({input.shape[0]}, K, 2) for a map "
                           f"of shape {input.shape}, got {points.shape}")
    return SamplePoints.apply(input, points, mode=mode)


# ================================================================ SuperPoint's descriptors
def sample_descriptors(descriptor_map, keypoints, cell=8, mode="bilinear", normalize=True):
    """SuperPoint's descriptors at keypoints: (D, Hc, Wc) + (K, 2) -> (D, K), or
    batched (N, D, Hc, Wc) + (N, K, 2) -> (N, D, K) (a (1, D, Hc, Wc) map with
    (K, 2) keypoints gives (D, K)).

    ``keypoints`` are (x, y) pixels of the full image, W = Wc * cell wide. As
    SuperPoint's reference code, they are scaled to the grid value
    g = x / (W / 2) - 1 and sampled with ``grid_sample(..., align_corners=True)``,
    i.e. at map coordinate u = x (Wc - 1) / W: pixel 0 reads the first cell's
    descriptor, pixel W the last one's. Bilinear between cells (or 'nearest'),
    then L2-normalised along D (``normalize=True``), so the dot product of two
    descriptors is their cosine similarity. Differentiable w.r.t. the map (and
    keypoints given as Tensors that require grad).
    """
    op = "sample_descriptors"
    if not isinstance(descriptor_map, Tensor) or descriptor_map.ndim not in (3, 4):
        raise RuntimeError(f"{op}: expected a (D, Hc, Wc) or (N, D, Hc, Wc) Tensor, got "
                           f"{getattr(descriptor_map, 'shape', type(descriptor_map).__name__)}")
    if int(cell) != cell or cell < 1:
        raise ValueError(f"{op}: cell must be a positive integer, got {cell}")
    keypoints = _as_tensor_like(keypoints, descriptor_map, op)
    single = keypoints.ndim == 2
    maps = descriptor_map if descriptor_map.ndim == 4 else descriptor_map.unsqueeze(0)
    pts = keypoints.unsqueeze(0) if single else keypoints
    if pts.ndim != 3 or pts.shape[-1] != 2 or pts.shape[0] != maps.shape[0]:
        raise RuntimeError(f"{op}: keypoints of shape {keypoints.shape} do not fit a descriptor map of shape "
                           f"{descriptor_map.shape}: expected (K, 2) for one map or (N, K, 2) for N maps")
    hc, wc = maps.shape[2:]
    xp = maps._xp
    scale = xp.asarray([(wc - 1) / (wc * cell), (hc - 1) / (hc * cell)], dtype=maps.dtype)
    desc = sample_points(maps, pts * scale, mode=mode)                       # (N, D, K)
    if normalize:
        desc = F.normalize(desc, p=2, dim=1)
    return desc[0] if single else desc


# ================================================================ keypoint selection
def _window_max(a, radius, axis):
    """max of ``a`` over a window of 2*radius+1 along ``axis`` (-inf beyond the ends):
    2r+1 shifted views, so it is vectorised on either backend."""
    xp = get_array_module(a)
    pad = [(0, 0)] * a.ndim
    pad[axis] = (radius, radius)
    padded = xp.pad(a, pad, constant_values=-np.inf)
    n = a.shape[axis]
    out = a.copy()
    for s in range(2 * radius + 1):
        window = [slice(None)] * a.ndim
        window[axis] = slice(s, s + n)
        xp.maximum(out, padded[tuple(window)], out=out)
    return out


def _box_max(a, radius):
    """max over a (2r+1) x (2r+1) box around every element of (H, W): separable."""
    return _window_max(_window_max(a, radius, 0), radius, 1)


def _nms_mask(scores, radius):
    """Greedy box NMS as a fixed point of max pooling.

    Greedy NMS (SuperPoint's nms_fast) visits points from the highest score down
    and keeps one unless a kept point lies within ``radius`` (Chebyshev). Its
    result is reached round by round: a point that is the maximum of its box
    among the points not yet suppressed is kept by greedy NMS (every higher
    point near it is suppressed, hence not kept), so each round keeps those,
    then suppresses the boxes around them; when a round adds nothing, the kept
    set is greedy NMS's. Usually 2-4 rounds of two box maxima each. (Exactly
    tied neighbours are both kept.)
    """
    xp = get_array_module(scores)
    alive = scores > -np.inf
    keep = xp.zeros(scores.shape, dtype=bool)
    while True:
        candidates = xp.where(alive, scores, -np.inf)
        new = alive & (candidates == _box_max(candidates, radius))
        if not bool(new.any()):
            return keep
        keep |= new
        suppressed = _box_max(xp.where(keep, 1.0, 0.0), radius) > 0
        alive &= ~suppressed


def heatmap_nms(heatmap, radius=4, threshold=0.015, top_k=None, border=0):
    """Keypoints of a detector heatmap (H, W): -> (points (K, 2) (x, y), scores (K,)),
    sorted by decreasing score.

    Keeps pixels with score >= ``threshold`` (SuperPoint: 0.015, about 1/65),
    then applies greedy non-maximum suppression in a (2 radius + 1)^2 box
    (radius 4 as SuperPoint's nms_dist), drops points within ``border`` pixels
    of the edge, and keeps the ``top_k`` best. A batch (N, H, W) gives lists.
    Not differentiable: arrays in, arrays out (a Tensor in gives Tensors out),
    on the heatmap's device.
    """
    op = "heatmap_nms"
    as_tensor = isinstance(heatmap, Tensor)
    data = heatmap.array if as_tensor else heatmap
    xp = get_array_module(data)
    data = xp.asarray(data)
    if data.ndim == 3:
        results = [heatmap_nms(h, radius, threshold, top_k, border) for h in data]
        if as_tensor:
            results = [(Tensor(p), Tensor(s)) for p, s in results]
        return [p for p, _ in results], [s for _, s in results]
    if data.ndim != 2:
        raise ValueError(f"{op}: expected a heatmap (H, W) or a batch (N, H, W), got shape {data.shape}")
    if int(radius) != radius or radius < 0:
        raise ValueError(f"{op}: radius must be a non-negative integer, got {radius}")
    if top_k is not None and (int(top_k) != top_k or top_k < 0):
        raise ValueError(f"{op}: top_k must be None or a non-negative integer, got {top_k}")
    dtype = data.dtype if data.dtype.kind == "f" else np.dtype(np.float32)
    scores = xp.where(data >= threshold, data.astype(dtype), -np.inf)
    keep = _nms_mask(scores, int(radius))
    if border > 0:
        h, w = data.shape
        inner = xp.zeros(keep.shape, dtype=bool)
        inner[border:h - border, border:w - border] = True
        keep &= inner
    ys, xs = xp.nonzero(keep)
    s = scores[ys, xs]
    order = xp.argsort(-s, kind="stable")
    if top_k is not None:
        order = order[:int(top_k)]
    points = xp.stack([xs[order], ys[order]], axis=1).astype(dtype)
    s = s[order]
    if as_tensor:
        return Tensor(points), Tensor(s)
    return points, s
