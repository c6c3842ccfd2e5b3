"""Synthetic object detection: coloured shapes on a noisy background, drawn with OpenCV.

A small stand-in for PASCAL VOC that a CPU can learn in minutes: each image
holds 1..``max_objects`` filled shapes (rectangles, ellipses, triangles by
default), each of a colour well away from the background's, that do not
overlap. The boxes are exact: each is the tight box around the pixels its
shape painted.

``SyntheticDetection(n)[i]`` draws image i from ``default_rng([seed, i])``, so
the data are the same on every machine and in every run, without storing
anything. A sample is ``(image, target)``:

* image: float32 (3, H, W) in [0, 1] (RGB channel order);
* target: ``{'boxes': (M, 4) float32, 'labels': (M,) int64}``. Boxes are
  (x1, y1, x2, y2) in pixels without the "+1" convention: a shape painting
  columns 10..19 has x1 = 10, x2 = 20. Labels count from 1 (``classes[0]`` is
  label 1); 0 is kept for the background, as in torchvision's detection models.

Images hold different numbers of boxes, so batch them with
``collate_detection`` (images stacked, targets kept as a list).
"""
import math

import numpy as np

from ..tensor import Tensor
from .dataset import Dataset
from .synthetic import _cv2, smooth_background

__all__ = ["SyntheticDetection", "DETECTION_SHAPES", "collate_detection"]

DETECTION_SHAPES = ("rectangle", "ellipse", "triangle")


# ================================================================ drawing
def _colour(rng, mean):
    """An RGB colour at least 100 away (Euclidean) from the background's mean colour."""
    for _ in range(100):
        c = rng.integers(0, 256, size=3)
        if np.linalg.norm(c - mean) >= 100:
            return tuple(int(v) for v in c)
    return tuple(int(v) for v in np.where(mean < 128, 255, 0))


def _mask_rectangle(mask, rng, cx, cy, size):
    w, h = size * rng.uniform(0.5, 1.0, size=2)
    pts = np.array([[cx - w / 2, cy - h / 2], [cx + w / 2, cy - h / 2],
                    [cx + w / 2, cy + h / 2], [cx - w / 2, cy + h / 2]])
    _cv2().fillConvexPoly(mask, np.rint(pts).astype(np.int32), 255)


def _mask_ellipse(mask, rng, cx, cy, size):
    a, b = size / 2 * rng.uniform(0.5, 1.0, size=2)
    _cv2().ellipse(mask, (int(round(cx)), int(round(cy))), (int(round(a)), int(round(b))),
                   float(rng.uniform(0, 180)), 0, 360, 255, -1)


def _mask_triangle(mask, rng, cx, cy, size):
    # three vertices around the centre at angles kept apart (no sliver triangles)
    r = size / 2
    start = rng.uniform(0, 2 * math.pi)
    angles = start + np.array([0.0, 2 * math.pi / 3, 4 * math.pi / 3]) + rng.uniform(-0.4, 0.4, size=3)
    radii = r * rng.uniform(0.75, 1.0, size=3)
    pts = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], axis=1)
    _cv2().fillConvexPoly(mask, np.rint(pts).astype(np.int32), 255)


_MASKS = {"rectangle": _mask_rectangle, "ellipse": _mask_ellipse, "triangle": _mask_triangle}


# ================================================================ the dataset
class SyntheticDetection(Dataset):
    """``num_images`` images with 1..``max_objects`` shapes each (see the module docstring).

    Args:
        num_images: the dataset's length.
        image_size: (H, W).
        max_objects: at most this many shapes per image (at least one).
        classes: shape names from ``DETECTION_SHAPES``; ``classes[k]`` gets label k + 1.
        seed: image i is drawn from ``default_rng([seed, i])``.
        object_size: (min, max) of a shape's extent in pixels (before its random
            aspect), default (20, 56) at 128 x 128, scaled with the image's smaller side.
        noise_std: Gaussian pixel noise (grey levels, 0..255 scale) added last.
        blur: soften the drawing with a 3x3 Gaussian blur (sigma 0.6) before the noise.
        transform: applied to the image (float32 (3, H, W)) only, so photometric
            transforms only: a flip would move the objects away from their boxes.
    """

    def __init__(self, num_images, image_size=(128, 128), max_objects=3, classes=DETECTION_SHAPES, seed=0,
                 object_size=None, noise_std=8.0, blur=True, transform=None):
        unknown = [c for c in classes if c not in _MASKS]
        if unknown or not classes:
            raise ValueError(f"SyntheticDetection: unknown classes {unknown}; choose from {DETECTION_SHAPES}")
        if int(max_objects) < 1:
            raise ValueError(f"SyntheticDetection: max_objects must be >= 1, got {max_objects}")
        h, w = (int(v) for v in image_size)
        if object_size is None:
            s = min(h, w) / 128
            object_size = (20 * s, 56 * s)
        lo, hi = float(object_size[0]), float(object_size[1])
        if not 4 <= lo <= hi or hi > min(h, w) - 4:
            raise ValueError(f"SyntheticDetection: object_size {object_size} must satisfy 4 <= min <= max "
                             f"<= min(image_size) - 4 = {min(h, w) - 4}")
        self.num_images, self.image_size, self.max_objects = int(num_images), (h, w), int(max_objects)
        self.classes, self.seed, self.object_size = tuple(classes), int(seed), (lo, hi)
        self.noise_std, self.blur, self.transform = float(noise_std), bool(blur), transform

    @property
    def num_classes(self):
        """Number of classes including the background (what a detector's head predicts)."""
        return len(self.classes) + 1

    def __len__(self):
        return self.num_images

    def draw(self, index):
        """(image uint8 (H, W, 3) RGB, boxes float32 (M, 4), labels int64 (M,)) of image ``index``."""
        if not 0 <= index < self.num_images:
            raise IndexError(f"SyntheticDetection: index {index} out of range for {self.num_images} images")
        cv2 = _cv2()
        rng = np.random.default_rng([self.seed, int(index)])
        h, w = self.image_size
        img = smooth_background(rng, h, w, channels=3, base_range=(30, 225), amplitude=35)
        mean = img.reshape(-1, 3).mean(axis=0)
        boxes, labels, placed = [], [], []
        lo, hi = self.object_size
        for _ in range(int(rng.integers(1, self.max_objects + 1))):
            for _try in range(30):
                size = rng.uniform(lo, hi)
                r = size / 2
                cx, cy = rng.uniform(r + 1, w - 1 - r), rng.uniform(r + 1, h - 1 - r)
                # circles around the shapes, kept apart: shapes never overlap
                if any(math.hypot(cx - x, cy - y) < r + rr + 3 for x, y, rr in placed):
                    continue
                k = int(rng.integers(len(self.classes)))
                mask = np.zeros((h, w), dtype=np.uint8)
                _MASKS[self.classes[k]](mask, rng, cx, cy, size)
                ys, xs = np.nonzero(mask)
                if xs.size < 16:
                    continue
                img[mask > 0] = _colour(rng, mean)
                boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
                labels.append(k + 1)
                placed.append((cx, cy, r))
                break
        if self.blur:
            img = cv2.GaussianBlur(img, (3, 3), 0.6)
        if self.noise_std > 0:
            img = np.clip(np.rint(img + rng.normal(0.0, self.noise_std, size=img.shape)), 0, 255).astype(np.uint8)
        return (img, np.array(boxes, dtype=np.float32).reshape(-1, 4), np.array(labels, dtype=np.int64))

    def __getitem__(self, index):
        if index < 0:
            index += self.num_images
        img, boxes, labels = self.draw(index)
        image = np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32) / np.float32(255)
        if self.transform is not None:
            image = self.transform(image)
        return image, {"boxes": boxes, "labels": labels}


def collate_detection(batch):
    """A DataLoader ``collate_fn`` for detection: ``(images, targets)`` with the images
    stacked into one (N, 3, H, W) Tensor (they must share a size) and the targets a
    list of N dicts of Tensors ({'boxes': (M_i, 4), 'labels': (M_i,)}), since M varies."""
    if not batch:
        raise ValueError("collate_detection: empty batch")
    images = [b[0].array if isinstance(b[0], Tensor) else np.asarray(b[0]) for b in batch]
    shapes = {tuple(im.shape) for im in images}
    if len(shapes) > 1:
        raise ValueError(f"collate_detection: images of different shapes {sorted(shapes)} cannot be stacked; "
                         "resize them to one size first")
    from ..backend import get_array_module
    xp = get_array_module(*images)
    targets = [{k: v if isinstance(v, Tensor) else Tensor(np.asarray(v)) for k, v in b[1].items()} for b in batch]
    return Tensor(xp.stack(images)), targets
