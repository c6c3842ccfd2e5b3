"""Synthetic semantic segmentation: filled shapes on a textured background, drawn with OpenCV.

A small, offline stand-in for PASCAL VOC to train FCN on a CPU: every pixel has
a class -- 'background' or the kind of shape covering it -- and the network
must tell the shapes apart by their outline (corners, curvature), since the
colours are random: a red ellipse and a red triangle differ only in shape.

``SyntheticSegmentation(n)[i]`` draws image i from ``default_rng([seed, i])``:
the same image on every machine and in every run, nothing stored. It returns

    image  float32 (3, H, W) RGB in [0, 1]  (CHW: ready for a conv net)
    mask   int64   (H, W), the index in ``classes`` of each pixel's class

Each image holds 1-3 shapes of random class, size, angle and colour over a
smooth random colour background with a little Gaussian noise; later shapes may
partly cover earlier ones (the mask shows the visible one). Shapes are drawn
without anti-aliasing, in the image and the mask with the same call, so the
label of every pixel is exact.
"""
import math

import numpy as np

from .dataset import Dataset
from .synthetic import _cv2, smooth_background

__all__ = ["SyntheticSegmentation", "SHAPE_CLASSES", "SEGMENTATION_PALETTE", "colorize_mask"]

SHAPE_CLASSES = ("background", "rectangle", "ellipse", "triangle")

# RGB colour of class 0, 1, 2...: black background, then distinct hues (VOC-like).
SEGMENTATION_PALETTE = np.array([
    [0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
    [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212], [0, 128, 128],
], dtype=np.uint8)


def colorize_mask(mask, palette=SEGMENTATION_PALETTE, ignore_index=None):
    """(H, W) class indices -> (H, W, 3) uint8 RGB, class c in ``palette[c % len]``
    (``ignore_index`` pixels white)."""
    mask = np.asarray(mask)
    out = palette[np.mod(mask, len(palette))]
    if ignore_index is not None:
        out[mask == ignore_index] = 255
    return out


# ================================================================ drawing
def _colour(rng, around):
    """An RGB colour that differs from ``around`` (mean colour) by >= 60 in some channel."""
    for _ in range(100):
        c = rng.integers(0, 256, size=3)
        if np.abs(c - around).max() >= 60:
            return tuple(int(v) for v in c)
    return tuple(int(v) for v in np.where(around < 128, 255, 0))


def _rectangle(rng, centre, radius):
    """Corners of a rotated rectangle with half-diagonal ~radius, aspect 0.45-1."""
    cv2 = _cv2()
    aspect = rng.uniform(0.45, 1.0)
    width = 2 * radius / math.sqrt(1 + aspect ** 2)
    box = ((centre[0], centre[1]), (width, width * aspect), rng.uniform(0, 180))
    return np.rint(cv2.boxPoints(box)).astype(np.int32)


def _triangle(rng, centre, radius):
    """Three vertices around ``centre``, 90-150 degrees apart (no slivers)."""
    start = rng.uniform(0, 2 * math.pi)
    gaps = rng.uniform(2 * math.pi / 3 - 0.5, 2 * math.pi / 3 + 0.5, size=2)
    angles = start + np.array([0.0, gaps[0], gaps[0] + gaps[1]])
    pts = np.stack([centre[0] + radius * np.cos(angles), centre[1] + radius * np.sin(angles)], axis=1)
    return np.rint(pts).astype(np.int32)


def _draw(kind, img, mask, label, rng, centre, radius, colour):
    """Fill one shape of ``kind`` into the image (colour) and the mask (label)."""
    cv2 = _cv2()
    if kind == "ellipse":
        axes = (max(int(round(radius)), 1), max(int(round(radius * rng.uniform(0.45, 0.9))), 1))
        c, angle = (int(round(centre[0])), int(round(centre[1]))), float(rng.uniform(0, 180))
        for canvas, value in ((img, colour), (mask, label)):
            cv2.ellipse(canvas, c, axes, angle, 0, 360, value, -1, cv2.LINE_8)
        return
    pts = _rectangle(rng, centre, radius) if kind == "rectangle" else _triangle(rng, centre, radius)
    for canvas, value in ((img, colour), (mask, label)):
        cv2.fillPoly(canvas, [pts], value, cv2.LINE_8)


# ================================================================ the dataset
class SyntheticSegmentation(Dataset):
    """``num_images`` drawings with per-pixel labels (see the module docstring).

    ``classes``: 'background' first, then any of 'rectangle', 'ellipse', 'triangle'
    (their order gives the label values). ``max_shapes`` shapes at most per image,
    ``noise_std`` the Gaussian noise in grey levels. Transforms, as torchvision's
    segmentation sets: ``transforms(image, mask)`` (joint, e.g. a flip of both),
    then ``transform(image)`` and ``target_transform(mask)``.
    """

    def __init__(self, num_images, image_size=(64, 64), classes=SHAPE_CLASSES, seed=0, transform=None,
                 target_transform=None, transforms=None, max_shapes=3, noise_std=6.0):
        classes = tuple(classes)
        unknown = [c for c in classes[1:] if c not in SHAPE_CLASSES[1:]]
        if not classes or classes[0] != "background" or unknown or len(set(classes)) != len(classes) \
                or len(classes) < 2:
            raise ValueError(f"SyntheticSegmentation: classes must be 'background' followed by distinct shapes "
                             f"from {SHAPE_CLASSES[1:]}, got {classes}")
        h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        if min(h, w) < 16:
            raise ValueError(f"SyntheticSegmentation: image_size must be at least 16x16, got {image_size}")
        if num_images < 0 or max_shapes < 1:
            raise ValueError(f"SyntheticSegmentation: need num_images >= 0 and max_shapes >= 1, "
                             f"got {num_images}, {max_shapes}")
        self.num_images, self.image_size, self.classes = int(num_images), (int(h), int(w)), classes
        self.seed, self.max_shapes, self.noise_std = int(seed), int(max_shapes), float(noise_std)
        self.transform, self.target_transform, self.transforms = transform, target_transform, transforms

    @property
    def num_classes(self):
        return len(self.classes)

    def __len__(self):
        return self.num_images

    def draw(self, index):
        """(image uint8 (H, W, 3) RGB, mask int64 (H, W)) of sample ``index``, before transforms."""
        if not 0 <= index < self.num_images:
            raise IndexError(f"SyntheticSegmentation: index {index} out of range for {self.num_images} images")
        rng = np.random.default_rng([self.seed, int(index)])
        h, w = self.image_size
        img = smooth_background(rng, h, w, channels=3, amplitude=35)
        mask = np.zeros((h, w), dtype=np.uint8)
        placed = []
        for _ in range(int(rng.integers(1, self.max_shapes + 1))):
            label = int(rng.integers(1, len(self.classes)))
            for _try in range(10):    # keep shapes mostly apart, so each stays recognisable
                radius = rng.uniform(0.14, 0.3) * min(h, w)
                centre = (rng.uniform(0.6 * radius, w - 0.6 * radius), rng.uniform(0.6 * radius, h - 0.6 * radius))
                if all(math.hypot(centre[0] - c[0], centre[1] - c[1]) > 0.8 * (radius + r) for c, r in placed):
                    break
            placed.append((centre, radius))
            colour = _colour(rng, img.reshape(-1, 3).mean(axis=0))
            _draw(self.classes[label], img, mask, label, rng, centre, radius, colour)
        if self.noise_std > 0:
            img = np.clip(np.rint(img + rng.normal(0.0, self.noise_std, size=img.shape)), 0, 255).astype(np.uint8)
        return img, mask.astype(np.int64)

    def __getitem__(self, index):
        if index < 0:
            index += self.num_images
        img, mask = self.draw(index)
        image = np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32) / np.float32(255)
        if self.transforms is not None:
            image, mask = self.transforms(image, mask)
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            mask = self.target_transform(mask)
        return image, mask

    def __repr__(self):
        return (f"SyntheticSegmentation({self.num_images} images, {self.image_size[0]}x{self.image_size[1]}, "
                f"classes={self.classes}, seed={self.seed})")
