"""Image grids for looking inside a network: filters, feature maps, deconvnet projections.

Everything here works on host NumPy arrays and returns ``uint8`` images ready
for ``save_image`` (OpenCV). Tensors and CuPy arrays are copied to the host
first: pictures are made once per run, never in a training loop.

    grid = make_grid(images, nrow=8, padding=2, normalize=True)   # uint8 HxW or HxWx3
    save_image(grid, "runs/x/filters.png")
    save_image(filter_grid(model.features[0].weight), "filters.png")
    save_image(feature_map_grid(activations[0]), "maps.png")

    # Zeiler & Fergus's deconvnet pictures, for any model with ZFNet's two methods
    # forward_features(x, return_switches=True, until=layer) and deconvnet(y, switches):
    idx, pos, val = top_activations(acts, channel=5, k=9)   # acts: (N, C, H, W) of `layer`
    proj = deconv_projections(model, images[idx], "relu3", 5, pos)

Colour convention: a 3-channel image is RGB (C, H, W) in and RGB (H, W, 3) out,
as in PyTorch and matplotlib; ``save_image`` alone swaps to OpenCV's BGR.
"""
import math
import os

import numpy as np

from ..backend import to_host
from ..ops.math import raw

__all__ = ["to_numpy", "make_grid", "save_image", "filter_grid", "feature_map_grid",
           "label_image", "stack_panels", "top_activations", "deconv_projections"]


def to_numpy(x):
    """A host NumPy array from a Tensor, a CuPy array or anything array-like."""
    return np.asarray(to_host(raw(x)))


def _as_nchw(images, op):
    """(N, C, H, W) float64 from a batch (N, H, W) / (N, C, H, W) or a list of HxW / CxHxW."""
    if isinstance(images, (list, tuple)):
        arrays = [to_numpy(im) for im in images]
        if not arrays:
            raise ValueError(f"{op}: got an empty list of images")
        arrays = [a[None] if a.ndim == 2 else a for a in arrays]
        shapes = {a.shape for a in arrays}
        if len(shapes) != 1 or arrays[0].ndim != 3:
            raise ValueError(f"{op}: every image must be HxW or CxHxW of one shape, got shapes {sorted(shapes)}")
        batch = np.stack(arrays)
    else:
        batch = to_numpy(images)
        if batch.ndim == 2:              # one HxW image
            batch = batch[None, None]
        elif batch.ndim == 3:            # N HxW images
            batch = batch[:, None]
        elif batch.ndim != 4:
            raise ValueError(f"{op}: expected images of shape (H, W), (N, H, W) or (N, C, H, W), "
                             f"got {batch.shape}")
    if batch.shape[1] not in (1, 3):
        raise ValueError(f"{op}: images must have 1 (grey) or 3 (RGB) channels, got shape {batch.shape}")
    return batch


def _unit_range(x, lo, hi):
    """Map [lo, hi] to [0, 1]; a constant image (hi == lo) becomes all zeros."""
    span = hi - lo
    if not np.isfinite(span) or span <= 0:
        return np.zeros_like(x)
    return (x - lo) / span


def make_grid(images, nrow=8, padding=2, normalize=False, value_range=None, scale_each=False, pad_value=0):
    """Tile images into one ``uint8`` picture, row by row, ``nrow`` images per row
    (torchvision's ``make_grid`` on NumPy, returning an image rather than a tensor).

    images: (N, H, W), (N, C, H, W) with C in {1, 3}, one (H, W), or a list of HxW /
        CxHxW arrays (Tensors and CuPy arrays are copied to the host).
    normalize: False -> uint8 input is used as is and float input is taken to be in
        [0, 1] (clipped); True -> float input is shifted and scaled so that
        ``value_range`` (default: the min and max of all images, or of each image
        with ``scale_each``) spans 0..255. Non-finite values (a diverged
        network's NaN) are drawn as 0.
    Returns (H', W') for grey images, (H', W', 3) RGB for colour ones, where
    H' = rows * (H + padding) + padding and W' = nrow' * (W + padding) + padding,
    nrow' = min(nrow, N).
    """
    batch = _as_nchw(images, "make_grid")
    n, c, h, w = batch.shape
    if nrow < 1 or padding < 0:
        raise ValueError(f"make_grid: nrow must be >= 1 and padding >= 0, got nrow={nrow}, padding={padding}")
    if batch.dtype == np.uint8 and not normalize:
        unit = batch.astype(np.float64) / 255.0
    else:
        x = np.nan_to_num(batch.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        if normalize:
            if value_range is not None:
                lo, hi = (float(v) for v in value_range)
                unit = _unit_range(np.clip(x, lo, hi), lo, hi)
            elif scale_each:
                unit = np.stack([_unit_range(im, im.min(), im.max()) for im in x])
            else:
                unit = _unit_range(x, x.min(), x.max())
        else:
            unit = np.clip(x, 0.0, 1.0)
    tiles = np.round(unit * 255.0).astype(np.uint8)

    ncol = min(nrow, n)
    nrows = math.ceil(n / ncol)
    grid = np.full((c, nrows * (h + padding) + padding, ncol * (w + padding) + padding), pad_value, np.uint8)
    for k in range(n):
        r, q = divmod(k, ncol)
        top, left = padding + r * (h + padding), padding + q * (w + padding)
        grid[:, top:top + h, left:left + w] = tiles[k]
    return grid[0] if c == 1 else grid.transpose(1, 2, 0).copy()


def _zoom(batch, factor):
    """Nearest-neighbour enlargement of (N, C, H, W) by an integer factor (tiny filters)."""
    if factor == 1:
        return batch
    return batch.repeat(factor, axis=2).repeat(factor, axis=3)


def filter_grid(conv_weight, nrow=None, padding=1, zoom=None):
    """The filters of a conv layer as one picture, each scaled to its own min..max.

    conv_weight: (out, in, kh, kw) (a Parameter, Tensor or array).
    in == 3: one RGB tile per filter (a first layer on colour images);
    in == 1: one grey tile per filter (a first layer on MNIST);
    otherwise: one grey tile per (filter, input channel), one row per filter.
    ``zoom`` (default: enough to make tiles ~32 pixels) enlarges small kernels.
    """
    w = to_numpy(conv_weight).astype(np.float64)
    if w.ndim != 4:
        raise ValueError(f"filter_grid: expected a conv weight (out, in, kh, kw), got shape {w.shape}")
    out, cin, kh, kw = w.shape
    if cin in (1, 3):
        batch = w
        nrow = nrow or math.ceil(math.sqrt(out))
    else:
        batch = w.reshape(out * cin, 1, kh, kw)
        nrow = nrow or cin
    zoom = zoom or max(1, 32 // max(kh, kw))
    return make_grid(_zoom(batch, zoom), nrow=nrow, padding=padding, normalize=True, scale_each=True,
                     pad_value=255)


def feature_map_grid(activations, nrow=None, padding=1, zoom=1, scale_each=True):
    """The channels of one feature map as grey tiles.

    activations: (C, H, W), or (1, C, H, W) for a batch of one. Each map is scaled to
    its own min..max (``scale_each``) so a weak channel is still visible; pass
    ``scale_each=False`` to compare strengths across channels.
    """
    a = to_numpy(activations).astype(np.float64)
    if a.ndim == 4:
        if a.shape[0] != 1:
            raise ValueError(f"feature_map_grid: expected one sample (C, H, W) or (1, C, H, W), got {a.shape}")
        a = a[0]
    if a.ndim != 3:
        raise ValueError(f"feature_map_grid: expected (C, H, W) activations, got shape {a.shape}")
    batch = _zoom(a[:, None], zoom)
    return make_grid(batch, nrow=nrow or math.ceil(math.sqrt(a.shape[0])), padding=padding,
                     normalize=True, scale_each=scale_each, pad_value=255)


def _rgb(image):
    return np.repeat(image[:, :, None], 3, axis=2) if image.ndim == 2 else image


def label_image(image, text, height=18, scale=0.45):
    """``image`` (uint8, grey or RGB) with a white strip carrying ``text`` above it (RGB out)."""
    import cv2

    image = _rgb(image)
    strip = np.full((height, image.shape[1], 3), 255, np.uint8)
    cv2.putText(strip, text, (2, height - 5), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([strip, image], axis=0)


def stack_panels(panels, ncol, padding=6, background=255):
    """Lay out uint8 panels of different sizes on one white RGB canvas, ``ncol`` per
    row, each top-left aligned in its cell (the cells of a row share its height)."""
    panels = [_rgb(p) for p in panels]
    rows = [panels[i:i + ncol] for i in range(0, len(panels), ncol)]
    widths = [max(row[j].shape[1] for row in rows if j < len(row)) for j in range(min(ncol, len(panels)))]
    heights = [max(p.shape[0] for p in row) for row in rows]
    canvas = np.full((sum(heights) + padding * (len(rows) + 1), sum(widths) + padding * (ncol + 1), 3),
                     background, np.uint8)
    top = padding
    for row, height in zip(rows, heights):
        left = padding
        for j, p in enumerate(row):
            canvas[top:top + p.shape[0], left:left + p.shape[1]] = p
            left += widths[j] + padding
        top += height + padding
    return canvas


def save_image(grid, path):
    """Write a uint8 grey (H, W) or RGB (H, W, 3) image with OpenCV; returns ``path``.
    The folder is created; the file appears atomically (temporary file, then rename)."""
    import cv2

    image = np.asarray(grid)
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise ValueError(f"save_image: expected a uint8 (H, W) or (H, W, 3) image, "
                         f"got {image.dtype} {image.shape}")
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    ext = os.path.splitext(path)[1] or ".png"
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.tmp{ext}")
    try:
        params = [cv2.IMWRITE_PNG_COMPRESSION, 9] if ext.lower() == ".png" else []   # smallest PNG
        if not cv2.imwrite(tmp, image, params):
            raise OSError(f"save_image: OpenCV could not write {path}")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


# ---------------------------------------------------------------- deconvnet pictures
def top_activations(activations, channel, k=9):
    """The ``k`` strongest responses of one channel over a set of images, one per image
    (as Zeiler & Fergus's top-9 panels: nine different images, not nine pixels of one).

    activations: (N, C, H, W) (host or device array, or Tensor) of the layer to look at.
    Returns host arrays ``(image_index, position, value)``, strongest first, where
    ``position`` is the flat h * W + w of each image's maximum in that channel.
    """
    a = to_numpy(activations)
    if a.ndim != 4:
        raise ValueError(f"top_activations: expected (N, C, H, W) activations, got shape {a.shape}")
    if not 0 <= channel < a.shape[1]:
        raise ValueError(f"top_activations: channel {channel} out of range for {a.shape[1]} channels")
    plane = a[:, channel].reshape(a.shape[0], -1)
    position = plane.argmax(axis=1)
    best = plane[np.arange(len(plane)), position]
    order = np.argsort(-best, kind="stable")[:k]
    return order, position[order], best[order]


def deconv_projections(model, images, layer, channel, positions):
    """Project one activation per image back to pixel space through ``model``'s deconvnet.

    images: (K, C, H, W) Tensor; positions: K flat positions (h * W + w) in ``channel``
    of ``layer``'s output (e.g. from ``top_activations``). For image k the forward pass
    records the pooling switches, every entry of the layer's output except
    [k, channel, positions[k]] is set to zero, and ``model.deconvnet`` undoes the layers
    down to the pixels (unpool with the switches, ReLU, transposed filters). Runs
    under no_grad; returns the (K, C, H, W) projections as a Tensor on the images' device.
    """
    from ..autograd import no_grad
    from ..backend import get_array_module
    from ..tensor import Tensor

    with no_grad():
        y, switches = model.forward_features(images, return_switches=True, until=layer)
        data = y.array
        xp = get_array_module(data)
        n, c, h, w = data.shape
        positions = xp.asarray(to_numpy(positions).astype(np.int64))
        if positions.shape != (n,):
            raise ValueError(f"deconv_projections: expected {n} positions (one per image), "
                             f"got shape {tuple(positions.shape)}")
        rows = xp.arange(n)
        # keep one activation per image: the deconvnet then shows what that unit saw
        kept = xp.zeros((n, h * w), dtype=data.dtype)
        kept[rows, positions] = data[:, channel].reshape(n, h * w)[rows, positions]
        masked = xp.zeros_like(data)
        masked[:, channel] = kept.reshape(n, h, w)
        return model.deconvnet(Tensor(masked), switches)
