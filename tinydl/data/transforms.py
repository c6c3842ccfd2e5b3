"""Image transforms on NumPy / OpenCV images, with torchvision's names and defaults.

An *image* here is a NumPy array, ``(H, W)`` (grey) or ``(H, W, C)`` (RGB, as the
datasets return it), ``uint8`` in [0, 255] or float in [0, 1]. Every transform
keeps the dtype it was given (uint8 in -> uint8 out, float32 in -> float32 out).
``ToTensor`` is the bridge: it turns an ``(H, W, C)`` image into a tinydl Tensor
``(C, H, W)`` float32 in [0, 1]. Transforms that make sense after it
(``Normalize``, ``Lighting``, ``GaussianNoise``) also take Tensors, which they
read as channel-first ``(..., C, H, W)``; the geometric ones do not (apply them
before ``ToTensor``).

Randomness
----------
A random transform never calls ``np.random``. It draws from, in this order:

1. the ``rng=`` argument of the call (``t(img, rng=np.random.default_rng(0))``);
2. the ``generator=`` given to the transform (a ``np.random.Generator`` or a seed);
3. the generator the DataLoader installs while it fetches one sample
   (``use_rng``): seeded from the loader's seed, the epoch and the sample index,
   so the augmentation of a sample does not depend on which thread fetched it;
4. tinydl's global generator, ``tinydl.backend.rng_for(np)``, seeded by
   ``td.manual_seed``.

``Compose`` passes its ``rng`` on to each transform, so one seed fixes a whole
pipeline.

The CUB-200 recipe of the notes ("resize to 512x512, then random-crop 448x448")::

    import tinydl.data.transforms as T
    train_tf = T.Compose([
        T.Resize((512, 512)),            # (h, w): exactly 512x512
        T.RandomCrop(448),
        T.RandomHorizontalFlip(),
        T.ToTensor(),                    # (3, 448, 448) float32 in [0, 1]
        T.Normalize(T.IMAGENET_MEAN, T.IMAGENET_STD),
    ])
    test_tf = T.Compose([T.Resize((512, 512)), T.CenterCrop(448), T.ToTensor(),
                         T.Normalize(T.IMAGENET_MEAN, T.IMAGENET_STD)])

ResNet's scale augmentation ("shorter side random in [256, 480], then a 224 crop")
is ``Compose([RandomResize(256, 480), RandomCrop(224), RandomHorizontalFlip()])``,
and AlexNet's 10-crop testing is ``Compose([Resize(256), TenCrop(224), ToTensor()])``
followed by ``average_crops`` on the network's outputs.
"""
import math
import numbers
import threading

import numpy as np

from .. import backend
from ..args import pair
from ..tensor import Tensor

__all__ = [
    "Transform", "Compose", "Lambda", "RandomApply", "ToTensor", "Normalize", "Pad", "Resize",
    "RandomResize", "RandomScale", "CenterCrop", "RandomCrop", "RandomResizedCrop",
    "RandomHorizontalFlip", "RandomVerticalFlip", "ColorJitter", "Lighting", "RandomRotation",
    "RandomAffine", "affine", "GaussianNoise", "GaussianBlur", "FiveCrop", "TenCrop", "average_crops",
    "pca_lighting_params", "use_rng", "current_rng", "IMAGENET_MEAN", "IMAGENET_STD",
    "IMAGENET_EIGVAL", "IMAGENET_EIGVEC",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The principal components of ImageNet's RGB pixels (values in [0, 1]) that
# fb.resnet.torch published for AlexNet's "PCA lighting" noise: the columns of
# EIGVEC are the eigenvectors, EIGVAL their eigenvalues.
IMAGENET_EIGVAL = (0.2175, 0.0188, 0.0045)
IMAGENET_EIGVEC = ((-0.5675, 0.7192, 0.4009),
                   (-0.5808, -0.0045, -0.8140),
                   (-0.5836, -0.6948, 0.4203))


# ================================================================ random numbers
class _SampleRng(threading.local):
    rng = None                # per thread: the sample generator the DataLoader installed


_local = _SampleRng()


class use_rng:
    """``with use_rng(rng): dataset[i]`` makes random transforms draw from ``rng``.

    ``rng`` is a ``np.random.Generator`` or a zero-argument callable returning one
    (called only if a transform asks, so a loader pays for seeding a generator only
    when the pipeline is random). The setting is per thread and nests.
    """

    __slots__ = ("rng", "previous")

    def __init__(self, rng):
        self.rng = rng

    def __enter__(self):
        self.previous = _local.rng
        _local.rng = self.rng
        return self

    def __exit__(self, *exc):
        _local.rng = self.previous
        return False


def current_rng():
    """The generator a random transform should use now (see the module docstring)."""
    rng = _local.rng
    if rng is None:
        return backend.rng_for(np)        # looked up at each call: manual_seed replaces it
    if not isinstance(rng, np.random.Generator):
        rng = rng()                        # a lazy factory: build the generator once
        _local.rng = rng
    return rng


# ================================================================ helpers
def _cv2():
    try:
        import cv2
    except ImportError as exc:
        raise ImportError("this transform needs OpenCV: pip install 'tinydl[train]'") from exc
    return cv2


_INTERPOLATIONS = {"nearest": "INTER_NEAREST", "bilinear": "INTER_LINEAR", "linear": "INTER_LINEAR",
                   "bicubic": "INTER_CUBIC", "area": "INTER_AREA", "lanczos": "INTER_LANCZOS4"}


def _interpolation(name):
    cv2 = _cv2()
    if isinstance(name, numbers.Integral):
        return int(name)
    try:
        return getattr(cv2, _INTERPOLATIONS[name])
    except KeyError:
        raise ValueError(f"unknown interpolation {name!r}: expected one of {sorted(_INTERPOLATIONS)}") from None


def _check_image(img, who):
    """An (H, W) or (H, W, C) NumPy array, or a clear error."""
    if isinstance(img, Tensor):
        raise TypeError(f"{who}: got a Tensor; geometric transforms work on NumPy images (H, W[, C]): "
                        "apply them before ToTensor")
    if not isinstance(img, np.ndarray):
        raise TypeError(f"{who}: expected a NumPy image (H, W) or (H, W, C), got {type(img).__name__}")
    if img.ndim not in (2, 3):
        raise ValueError(f"{who}: expected an image of shape (H, W) or (H, W, C), got shape {img.shape}")
    if img.shape[0] == 0 or img.shape[1] == 0:
        raise ValueError(f"{who}: got an empty image (shape {img.shape})")
    return img


def _size(size, who):
    """A positive output size: int -> (size, size); (h, w) -> (h, w)."""
    size = pair(size, "size", who)
    if min(size) <= 0:
        raise ValueError(f"{who}: size must be a positive int or (h, w), got {size}")
    return size


def _range(value, who, center=1.0, low=0.0):
    """torchvision's jitter ranges: a number v -> [center - v, center + v] (clipped at low); a pair as is."""
    if isinstance(value, numbers.Number):
        if value < 0:
            raise ValueError(f"{who} must be non-negative, got {value}")
        return (max(low, center - value), center + value)
    lo, hi = value
    if lo > hi:
        raise ValueError(f"{who}: range ({lo}, {hi}) has min > max")
    return (float(lo), float(hi))


def _restore_channels(out, like):
    """OpenCV drops a trailing channel axis of size 1; put it back."""
    if like.ndim == 3 and out.ndim == 2:
        out = out[:, :, None]
    return out


def _to_float(img):
    """(float32 copy in [0, 1], scale) where scale is 255 for uint8 images, 1 for floats."""
    if img.dtype == np.uint8:
        return img.astype(np.float32) / np.float32(255), 255.0
    if img.dtype.kind != "f":
        raise TypeError(f"expected a uint8 or float image, got dtype {img.dtype}")
    return img.astype(img.dtype, copy=True), 1.0


def _from_float(x, like):
    """Back to ``like``'s dtype: uint8 images are rounded and clipped to [0, 255]."""
    if like.dtype == np.uint8:
        return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)
    return x.astype(like.dtype, copy=False)


def _crop(img, top, left, height, width):
    return np.ascontiguousarray(img[top:top + height, left:left + width])


# ================================================================ base classes
class Transform:
    """A callable ``t(img, rng=None) -> img``; deterministic transforms ignore ``rng``."""

    def __call__(self, img, rng=None):
        raise NotImplementedError

    def __repr__(self):
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({fields})"


class RandomTransform(Transform):
    """A transform that draws random numbers; see "Randomness" in the module docstring."""

    def __init__(self, generator=None):
        self.generator = backend.as_generator(generator)

    def _rng(self, rng):
        if rng is not None:
            return rng
        if self.generator is not None:
            return self.generator
        return current_rng()


class Compose(Transform):
    """Apply ``transforms`` in order; ``rng`` is handed to each tinydl transform."""

    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, img, rng=None):
        for t in self.transforms:
            img = t(img, rng=rng) if isinstance(t, Transform) else t(img)
        return img

    def __repr__(self):
        return "Compose(\n" + "".join(f"    {t!r},\n" for t in self.transforms) + ")"


class Lambda(Transform):
    """Wrap a plain function ``fn(img) -> img``."""

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, img, rng=None):
        return self.fn(img)


class RandomApply(RandomTransform):
    """Apply the list ``transforms`` (in order) with probability ``p``."""

    def __init__(self, transforms, p=0.5, generator=None):
        super().__init__(generator)
        self.transforms = Compose(transforms)
        self.p = p

    def __call__(self, img, rng=None):
        rng = self._rng(rng)
        if rng.random() >= self.p:
            return img
        return self.transforms(img, rng=rng)


# ================================================================ to tensor, normalise
class ToTensor(Transform):
    """(H, W, C) image -> Tensor (C, H, W); uint8 is scaled to float32 in [0, 1].

    As torchvision: an (H, W) image gets one channel, a float image keeps its
    values and dtype. A stack of images (N, H, W, C), as FiveCrop/TenCrop return,
    becomes (N, C, H, W).
    """

    def __call__(self, img, rng=None):
        if isinstance(img, Tensor):
            return img
        img = np.asarray(img)
        if img.ndim == 2:
            img = img[:, :, None]
        if img.ndim not in (3, 4):
            raise ValueError(f"ToTensor: expected an image (H, W[, C]) or a stack (N, H, W, C), got shape {img.shape}")
        chw = np.moveaxis(img, -1, -3)
        if img.dtype == np.uint8:
            out = chw.astype(np.float32) / np.float32(255)    # a division, for torchvision's exact values
        else:
            out = np.ascontiguousarray(chw)
        return Tensor(out)


class Normalize(Transform):
    """``(x - mean) / std`` per channel.

    A Tensor is read channel-first (..., C, H, W); a NumPy image channel-last
    (H, W, C). uint8 NumPy images become float32; float data keeps its dtype.
    """

    def __init__(self, mean, std, inplace=False):
        self.mean = tuple(float(m) for m in np.atleast_1d(mean))
        self.std = tuple(float(s) for s in np.atleast_1d(std))
        if any(s == 0 for s in self.std):
            raise ValueError(f"Normalize: std {self.std} has a zero, which would divide by zero")
        self.inplace = inplace

    def __call__(self, img, rng=None):
        is_tensor = isinstance(img, Tensor)
        x = img.array if is_tensor else np.asarray(img)
        xp = backend.get_array_module(x)
        if x.dtype.kind != "f":
            x = x.astype(np.float32)
        if is_tensor:
            axis = x.ndim - 3 if x.ndim >= 3 else 0
            channels = x.shape[axis]
            shape = (-1,) + (1,) * (x.ndim - axis - 1)
        else:
            channels = x.shape[-1] if x.ndim == 3 else 1
            shape = (-1,)
        if len(self.mean) not in (1, channels) or len(self.std) not in (1, channels):
            raise ValueError(f"Normalize: mean {self.mean} / std {self.std} do not match the "
                             f"{channels} channels of an input of shape {tuple(x.shape)}")
        mean = xp.asarray(self.mean, dtype=x.dtype).reshape(shape)
        std = xp.asarray(self.std, dtype=x.dtype).reshape(shape)
        if self.inplace and is_tensor and x is img.array:
            x -= mean
            x /= std
            return img
        out = (x - mean) / std
        return Tensor(out) if is_tensor else out


# ================================================================ geometry
_PAD_MODES = ("constant", "edge", "reflect", "symmetric")


def _padding4(padding, who):
    """torchvision's padding: int, (left/right, top/bottom) or (left, top, right, bottom)."""
    if isinstance(padding, numbers.Integral):
        padding = (int(padding),) * 4
    padding = tuple(int(p) for p in padding)
    if len(padding) not in (2, 4):
        raise ValueError(f"{who}: padding must be an int or a sequence of 2 or 4 ints, got {padding}")
    if min(padding) < 0:
        raise ValueError(f"{who}: padding must be >= 0, got {padding}")
    return padding * 2 if len(padding) == 2 else padding


def pad(img, padding, fill=0, padding_mode="constant"):
    """Pad an image; ``padding`` as torchvision (int, (lr, tb) or (l, t, r, b))."""
    left, top, right, bottom = _padding4(padding, "pad")
    if padding_mode not in _PAD_MODES:
        raise ValueError(f"pad: padding_mode {padding_mode!r} is not one of {_PAD_MODES}")
    widths = [(top, bottom), (left, right)] + [(0, 0)] * (img.ndim - 2)
    if padding_mode == "constant":
        return np.pad(img, widths, mode="constant", constant_values=fill)
    return np.pad(img, widths, mode=padding_mode)


class Pad(Transform):
    """Pad the borders (numpy's modes, which are torchvision's: constant, edge, reflect, symmetric)."""

    def __init__(self, padding, fill=0, padding_mode="constant"):
        _padding4(padding, "Pad")
        if padding_mode not in _PAD_MODES:
            raise ValueError(f"Pad: padding_mode {padding_mode!r} is not one of {_PAD_MODES}")
        self.padding, self.fill, self.padding_mode = padding, fill, padding_mode

    def __call__(self, img, rng=None):
        return pad(_check_image(img, "Pad"), self.padding, self.fill, self.padding_mode)


def resize(img, size, interpolation="bilinear", max_size=None):
    """Resize with torchvision's size rule: an int sets the shorter side (the longer
    one is ``int(size * long / short)``), ``(h, w)`` sets both."""
    img = _check_image(img, "Resize")
    _check_resize_size(size, max_size)
    h, w = img.shape[:2]
    if isinstance(size, numbers.Integral):
        short, long = min(h, w), max(h, w)
        new_short, new_long = int(size), int(size * long / short)
        if max_size is not None and new_long > max_size:
            new_short, new_long = max(1, int(max_size * new_short / new_long)), int(max_size)
        new_h, new_w = (new_short, new_long) if h <= w else (new_long, new_short)
    else:
        new_h, new_w = _size(size, "Resize")
    if (new_h, new_w) == (h, w):
        return img.copy()
    out = _cv2().resize(np.ascontiguousarray(img), (new_w, new_h), interpolation=_interpolation(interpolation))
    return _restore_channels(out, img)


def _check_resize_size(size, max_size):
    """Resize's ``size``: a positive int (the shorter side) or (h, w); ``max_size`` above it."""
    if isinstance(size, numbers.Integral):
        if size <= 0:
            raise ValueError(f"Resize: size must be a positive int or (h, w), got {size}")
        if max_size is not None and max_size <= size:
            raise ValueError(f"Resize: max_size ({max_size}) must be larger than size ({size})")
    else:
        _size(size, "Resize")


class Resize(Transform):
    """``Resize(256)``: shorter side to 256, keeping the aspect ratio; ``Resize((h, w))``: exactly h x w.

    Interpolation by OpenCV ('nearest', 'bilinear', 'bicubic', 'area', 'lanczos');
    'area' is the one to use when shrinking a lot (it averages, so no aliasing).
    """

    def __init__(self, size, interpolation="bilinear", max_size=None):
        _check_resize_size(size, max_size)
        _interpolation(interpolation)
        self.size, self.interpolation, self.max_size = size, interpolation, max_size

    def __call__(self, img, rng=None):
        return resize(img, self.size, self.interpolation, self.max_size)


class RandomResize(RandomTransform):
    """Shorter side resized to a random integer in [min_size, max_size] (ResNet's scale
    augmentation: ``RandomResize(256, 480)`` then ``RandomCrop(224)``)."""

    def __init__(self, min_size, max_size, interpolation="bilinear", generator=None):
        super().__init__(generator)
        if not 0 < min_size <= max_size:
            raise ValueError(f"RandomResize: need 0 < min_size <= max_size, got {min_size}, {max_size}")
        self.min_size, self.max_size, self.interpolation = int(min_size), int(max_size), interpolation

    def __call__(self, img, rng=None):
        size = int(self._rng(rng).integers(self.min_size, self.max_size + 1))
        return resize(img, size, self.interpolation)


class RandomScale(RandomTransform):
    """Both sides multiplied by one factor drawn uniformly from ``scale`` (the notes' "Random Scale")."""

    def __init__(self, scale=(0.8, 1.25), interpolation="bilinear", generator=None):
        super().__init__(generator)
        if not 0 < scale[0] <= scale[1]:
            raise ValueError(f"RandomScale: need 0 < scale[0] <= scale[1], got {scale}")
        self.scale, self.interpolation = tuple(scale), interpolation

    def __call__(self, img, rng=None):
        img = _check_image(img, "RandomScale")
        factor = self._rng(rng).uniform(*self.scale)
        h, w = img.shape[:2]
        return resize(img, (max(1, round(h * factor)), max(1, round(w * factor))), self.interpolation)


class CenterCrop(Transform):
    """The central ``size`` crop (zero-padded first if the image is smaller, as torchvision)."""

    def __init__(self, size):
        self.size = _size(size, "CenterCrop")

    def __call__(self, img, rng=None):
        img = _check_image(img, "CenterCrop")
        th, tw = self.size
        h, w = img.shape[:2]
        if th > h or tw > w:
            # pad so the crop fits, splitting the padding between the two sides
            ph, pw = max(th - h, 0), max(tw - w, 0)
            img = pad(img, (pw // 2, ph // 2, pw - pw // 2, ph - ph // 2))
            h, w = img.shape[:2]
        top = int(round((h - th) / 2.0))
        left = int(round((w - tw) / 2.0))
        return _crop(img, top, left, th, tw)


class RandomCrop(RandomTransform):
    """A crop of ``size`` at a uniformly random place, after optional ``padding``.

    ``pad_if_needed`` pads an image smaller than the crop (by the shortfall on both
    sides, as torchvision). ``RandomCrop(32, padding=4)`` is the CIFAR recipe.
    """

    def __init__(self, size, padding=None, pad_if_needed=False, fill=0, padding_mode="constant",
                 generator=None):
        super().__init__(generator)
        self.size = _size(size, "RandomCrop")
        if padding is not None:
            _padding4(padding, "RandomCrop")
        self.padding, self.pad_if_needed, self.fill, self.padding_mode = padding, pad_if_needed, fill, padding_mode

    def __call__(self, img, rng=None):
        img = _check_image(img, "RandomCrop")
        if self.padding is not None:
            img = pad(img, self.padding, self.fill, self.padding_mode)
        th, tw = self.size
        h, w = img.shape[:2]
        if self.pad_if_needed and w < tw:
            img = pad(img, (tw - w, 0), self.fill, self.padding_mode)
        if self.pad_if_needed and h < th:
            img = pad(img, (0, th - h), self.fill, self.padding_mode)
        h, w = img.shape[:2]
        if h < th or w < tw:
            raise ValueError(f"RandomCrop: crop size {self.size} is larger than the image ({h}, {w}); "
                             "use pad_if_needed=True or padding=")
        rng = self._rng(rng)
        top = int(rng.integers(0, h - th + 1))
        left = int(rng.integers(0, w - tw + 1))
        return _crop(img, top, left, th, tw)


class RandomResizedCrop(RandomTransform):
    """Inception's crop: a random area fraction ``scale`` and aspect ratio ``ratio``,
    resized to ``size``.

    Up to ten tries draw an area uniformly in ``scale`` and a log-uniform aspect
    ratio, and keep the first box that fits; if none fits, the whole image is
    centre-cropped to the nearest allowed ratio (torchvision's rule).
    """

    def __init__(self, size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), interpolation="bilinear",
                 generator=None):
        super().__init__(generator)
        self.size = _size(size, "RandomResizedCrop")
        if scale[0] > scale[1] or ratio[0] > ratio[1]:
            raise ValueError(f"RandomResizedCrop: scale {scale} and ratio {ratio} must be (min, max)")
        self.scale, self.ratio, self.interpolation = tuple(scale), tuple(ratio), interpolation

    def get_params(self, height, width, rng):
        """(top, left, h, w) of the box to crop."""
        area = height * width
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target_area = area * rng.uniform(*self.scale)
            aspect = math.exp(rng.uniform(*log_ratio))
            w = int(round(math.sqrt(target_area * aspect)))
            h = int(round(math.sqrt(target_area / aspect)))
            if 0 < w <= width and 0 < h <= height:
                return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
        in_ratio = width / height
        if in_ratio < self.ratio[0]:
            w, h = width, int(round(width / self.ratio[0]))
        elif in_ratio > self.ratio[1]:
            h, w = height, int(round(height * self.ratio[1]))
        else:
            h, w = height, width
        return (height - h) // 2, (width - w) // 2, h, w

    def __call__(self, img, rng=None):
        img = _check_image(img, "RandomResizedCrop")
        top, left, h, w = self.get_params(img.shape[0], img.shape[1], self._rng(rng))
        return resize(_crop(img, top, left, h, w), self.size, self.interpolation)


class RandomHorizontalFlip(RandomTransform):
    """Mirror left-right with probability ``p``."""

    def __init__(self, p=0.5, generator=None):
        super().__init__(generator)
        self.p = p

    def __call__(self, img, rng=None):
        img = _check_image(img, type(self).__name__)
        if self._rng(rng).random() < self.p:
            return np.ascontiguousarray(self._flip(img))
        return img

    @staticmethod
    def _flip(img):
        return img[:, ::-1]


class RandomVerticalFlip(RandomHorizontalFlip):
    """Mirror top-bottom with probability ``p``."""

    @staticmethod
    def _flip(img):
        return img[::-1]


def _warp_affine(img, matrix, size, interpolation, fill):
    """OpenCV's warpAffine with a constant border, keeping a size-1 channel axis."""
    cv2 = _cv2()
    h, w = size
    channels = 1 if img.ndim == 2 else img.shape[2]
    if channels > 4:
        raise ValueError(f"affine warps handle at most 4 channels (OpenCV), got an image of shape {img.shape}")
    border = [float(f) for f in np.broadcast_to(np.asarray(fill, dtype=np.float64), (channels,))]
    out = cv2.warpAffine(np.ascontiguousarray(img), matrix.astype(np.float64), (w, h),
                         flags=_interpolation(interpolation), borderMode=cv2.BORDER_CONSTANT,
                         borderValue=tuple(border + [0.0] * (4 - channels)))
    return _restore_channels(out, img)


def _affine_matrix(angle, translate, scale, shear, center):
    """2x3 matrix mapping input pixel coordinates (x, y) to output ones.

    Rotation by ``angle`` degrees counter-clockwise as seen on screen (y points
    down, as torchvision and cv2.getRotationMatrix2D), then ``scale``, ``shear``
    = (x, y) shear angles in degrees, all about ``center``; then a shift by
    ``translate`` = (dx, dy) pixels.
    """
    a = math.radians(angle)
    # y points down, so a counter-clockwise turn on screen is [[cos, sin], [-sin, cos]]
    rotation = np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])
    shear_m = np.array([[1.0, math.tan(math.radians(shear[0]))], [math.tan(math.radians(shear[1])), 1.0]])
    linear = scale * rotation @ shear_m
    cx, cy = center
    offset = np.array([cx, cy]) + np.asarray(translate, dtype=np.float64) - linear @ np.array([cx, cy])
    return np.hstack([linear, offset[:, None]])


class RandomRotation(RandomTransform):
    """Rotate by an angle drawn uniformly from ``degrees`` (a number d means (-d, d)).

    Positive angles turn counter-clockwise, about the image centre ((w-1)/2, (h-1)/2)
    by default; ``expand=True`` grows the output to hold the whole rotated image.
    Uncovered pixels get ``fill``.
    """

    def __init__(self, degrees, interpolation="bilinear", expand=False, center=None, fill=0,
                 generator=None):
        super().__init__(generator)
        self.degrees = _range(degrees, "RandomRotation degrees", center=0.0, low=-math.inf)
        self.interpolation, self.expand, self.center, self.fill = interpolation, expand, center, fill

    def __call__(self, img, rng=None):
        img = _check_image(img, "RandomRotation")
        angle = self._rng(rng).uniform(*self.degrees)
        h, w = img.shape[:2]
        center = self.center if self.center is not None else ((w - 1) / 2, (h - 1) / 2)
        matrix = _affine_matrix(angle, (0, 0), 1.0, (0, 0), center)
        size = (h, w)
        if self.expand:
            corners = np.array([[0, 0, 1], [w - 1, 0, 1], [0, h - 1, 1], [w - 1, h - 1, 1]], dtype=np.float64)
            moved = corners @ matrix.T
            lo, hi = moved.min(axis=0), moved.max(axis=0)
            size = (int(math.ceil(hi[1] - lo[1] - 1e-6)) + 1, int(math.ceil(hi[0] - lo[0] - 1e-6)) + 1)
            matrix[:, 2] -= lo
        return _warp_affine(img, matrix, size, self.interpolation, self.fill)


class RandomAffine(RandomTransform):
    """Random rotation, shift, scale and shear in one warp (the notes' "Shift" and
    "Rotation / affine" augmentations).

    ``degrees``: as RandomRotation; ``translate=(a, b)``: shift by up to a*W and b*H
    pixels (rounded to whole pixels, as torchvision); ``scale=(lo, hi)``;
    ``shear``: a number s -> x-shear angle in (-s, s), (lo, hi) -> x-shear, four
    numbers -> x- and y-shear ranges. All about the image centre.
    """

    def __init__(self, degrees, translate=None, scale=None, shear=None, interpolation="bilinear",
                 fill=0, center=None, generator=None):
        super().__init__(generator)
        self.degrees = _range(degrees, "RandomAffine degrees", center=0.0, low=-math.inf)
        if translate is not None and not all(0 <= t <= 1 for t in translate):
            raise ValueError(f"RandomAffine: translate fractions must be in [0, 1], got {translate}")
        self.translate = translate
        self.scale = scale
        if shear is None:
            self.shear = None
        elif isinstance(shear, numbers.Number):
            self.shear = (-abs(shear), abs(shear), 0.0, 0.0)
        elif len(shear) == 2:
            self.shear = (shear[0], shear[1], 0.0, 0.0)
        elif len(shear) == 4:
            self.shear = tuple(shear)
        else:
            raise ValueError(f"RandomAffine: shear must be a number or 2 or 4 numbers, got {shear}")
        self.interpolation, self.fill, self.center = interpolation, fill, center

    def get_params(self, height, width, rng):
        """(angle, (dx, dy), scale, (shear_x, shear_y)) for one call."""
        angle = rng.uniform(*self.degrees)
        if self.translate is not None:
            max_dx, max_dy = self.translate[0] * width, self.translate[1] * height
            shift = (int(round(rng.uniform(-max_dx, max_dx))), int(round(rng.uniform(-max_dy, max_dy))))
        else:
            shift = (0, 0)
        scale = rng.uniform(*self.scale) if self.scale is not None else 1.0
        if self.shear is not None:
            shear = (rng.uniform(self.shear[0], self.shear[1]), rng.uniform(self.shear[2], self.shear[3]))
        else:
            shear = (0.0, 0.0)
        return angle, shift, scale, shear

    def __call__(self, img, rng=None):
        img = _check_image(img, "RandomAffine")
        angle, shift, scale, shear = self.get_params(*img.shape[:2], self._rng(rng))
        return affine(img, angle, shift, scale, shear, self.interpolation, self.fill, self.center)


def affine(img, angle, translate, scale, shear, interpolation="nearest", fill=0, center=None):
    """One deterministic affine warp, torchvision's ``transforms.functional.affine``:
    rotate by ``angle`` degrees (counter-clockwise on screen), scale by ``scale``,
    shear by ``shear`` degrees (a number: along x; or (x, y)), all about ``center``
    (default the image centre ((w-1)/2, (h-1)/2)), then shift by ``translate`` =
    (dx, dy) pixels. The output keeps the input's size; uncovered pixels get ``fill``.
    """
    img = _check_image(img, "affine")
    if scale <= 0:
        raise ValueError(f"affine: scale must be > 0, got {scale}")
    shear = (float(shear), 0.0) if isinstance(shear, numbers.Number) else tuple(shear)
    h, w = img.shape[:2]
    center = center if center is not None else ((w - 1) / 2, (h - 1) / 2)
    matrix = _affine_matrix(angle, translate, scale, shear, center)
    return _warp_affine(img, matrix, (h, w), interpolation, fill)


# ================================================================ colour
def _grey(x):
    """ITU-R 601 luma, as torchvision's rgb_to_grayscale: (H, W, 3) -> (H, W, 1)."""
    return (np.float32(0.299) * x[..., 0:1] + np.float32(0.587) * x[..., 1:2]
            + np.float32(0.114) * x[..., 2:3]).astype(x.dtype, copy=False)


def _shift_hue(x, hue):
    """Rotate the hue of an RGB float image in [0, 1] by ``hue`` turns (in [-0.5, 0.5])."""
    cv2 = _cv2()
    hsv = cv2.cvtColor(x.astype(np.float32), cv2.COLOR_RGB2HSV)   # H in degrees [0, 360)
    hsv[..., 0] = np.mod(hsv[..., 0] + np.float32(hue * 360.0), np.float32(360.0))
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB).astype(x.dtype, copy=False)


class ColorJitter(RandomTransform):
    """Random brightness, contrast, saturation and hue, applied in a random order.

    As torchvision: brightness b draws a factor in [max(0, 1-b), 1+b] and scales the
    image; contrast blends with the mean grey level; saturation blends with the grey
    image; hue h (<= 0.5) rotates the hue by up to h of a turn (needs OpenCV).
    Values are clipped to the image range. Grey images skip saturation and hue.
    """

    def __init__(self, brightness=0, contrast=0, saturation=0, hue=0, generator=None):
        super().__init__(generator)
        self.brightness = _range(brightness, "ColorJitter brightness") if brightness else None
        self.contrast = _range(contrast, "ColorJitter contrast") if contrast else None
        self.saturation = _range(saturation, "ColorJitter saturation") if saturation else None
        self.hue = _range(hue, "ColorJitter hue", center=0.0, low=-0.5) if hue else None
        if self.hue is not None and not (-0.5 <= self.hue[0] <= self.hue[1] <= 0.5):
            raise ValueError(f"ColorJitter: hue must lie in [-0.5, 0.5], got {self.hue}")

    def __call__(self, img, rng=None):
        img = _check_image(img, "ColorJitter")
        rng = self._rng(rng)
        x, _ = _to_float(img)
        colour = x.ndim == 3 and x.shape[2] == 3
        one = x.dtype.type(1)
        for which in rng.permutation(4):
            if which == 0 and self.brightness is not None:
                x = x * x.dtype.type(rng.uniform(*self.brightness))
            elif which == 1 and self.contrast is not None:
                f = x.dtype.type(rng.uniform(*self.contrast))
                mean = (_grey(x) if colour else x).mean(dtype=np.float64)
                x = f * x + (one - f) * x.dtype.type(mean)
            elif which == 2 and self.saturation is not None:
                f = x.dtype.type(rng.uniform(*self.saturation))
                if colour:
                    x = f * x + (one - f) * _grey(x)
            elif which == 3 and self.hue is not None:
                h = rng.uniform(*self.hue)
                if colour:
                    x = _shift_hue(np.clip(x, 0, 1), h)
            x = np.clip(x, 0, 1)
        return _from_float(x, img)


class Lighting(RandomTransform):
    """AlexNet's PCA colour noise: add ``eigvec @ (alpha * eigval)`` to every RGB pixel,
    with ``alpha ~ N(0, alphastd)`` drawn once per image.

    The default eigen-pairs are ImageNet's (pixels in [0, 1]); compute your own with
    ``pca_lighting_params``. A NumPy image is (H, W, 3) (uint8: the shift is scaled
    by 255, then rounded and clipped); a Tensor is (3, H, W) float.
    """

    def __init__(self, alphastd=0.1, eigval=IMAGENET_EIGVAL, eigvec=IMAGENET_EIGVEC, generator=None):
        super().__init__(generator)
        self.alphastd = float(alphastd)
        self.eigval = np.asarray(eigval, dtype=np.float64).reshape(3)
        self.eigvec = np.asarray(eigvec, dtype=np.float64).reshape(3, 3)

    def __call__(self, img, rng=None):
        rng = self._rng(rng)
        if self.alphastd == 0:
            return img
        alpha = rng.normal(0.0, self.alphastd, size=3)
        rgb = self.eigvec @ (alpha * self.eigval)            # one shift per channel
        if isinstance(img, Tensor):
            x = img.array
            if x.shape[-3] != 3:
                raise ValueError(f"Lighting: expected 3 channels in a (3, H, W) tensor, got shape {x.shape}")
            xp = backend.get_array_module(x)
            return Tensor(x + xp.asarray(rgb, dtype=x.dtype).reshape(3, 1, 1))
        img = _check_image(img, "Lighting")
        if img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"Lighting: expected an RGB image (H, W, 3), got shape {img.shape}")
        if img.dtype == np.uint8:
            return np.clip(np.rint(img + rgb * 255.0), 0, 255).astype(np.uint8)
        return (img + rgb.astype(img.dtype)).astype(img.dtype, copy=False)


def pca_lighting_params(images):
    """(eigval, eigvec) of the RGB covariance of ``images`` (N, H, W, 3) or (H, W, 3),
    with values scaled to [0, 1], for ``Lighting`` (the notes' "PCA Jittering").

    eigval is sorted in decreasing order; the columns of eigvec are the eigenvectors.
    """
    pixels = np.asarray(images).reshape(-1, np.shape(images)[-1]).astype(np.float64)
    if pixels.shape[1] != 3:
        raise ValueError(f"pca_lighting_params: expected RGB images (..., 3), got shape {np.shape(images)}")
    if np.asarray(images).dtype == np.uint8:
        pixels /= 255.0
    eigval, eigvec = np.linalg.eigh(np.cov(pixels, rowvar=False))
    order = np.argsort(eigval)[::-1]
    return eigval[order], eigvec[:, order]


# ================================================================ noise and blur
class GaussianNoise(RandomTransform):
    """Add N(mean, std) noise per pixel; ``std`` in units of the [0, 1] range
    (so std=0.1 on a uint8 image is 25.5 grey levels). uint8 results are rounded
    and clipped; float results are clipped to [0, 1] when ``clip``. Tensors too."""

    def __init__(self, mean=0.0, std=0.1, clip=True, generator=None):
        super().__init__(generator)
        if std < 0:
            raise ValueError(f"GaussianNoise: std must be >= 0, got {std}")
        self.mean, self.std, self.clip = float(mean), float(std), clip

    def __call__(self, img, rng=None):
        rng = self._rng(rng)
        if isinstance(img, Tensor):
            x = img.array
            xp = backend.get_array_module(x)
            # drawn on the host from the sample's generator (so a loader stays reproducible),
            # then copied once to where the tensor lives
            noise = rng.normal(self.mean, self.std, size=x.shape).astype(x.dtype)
            out = x + xp.asarray(noise)
            return Tensor(xp.clip(out, 0, 1) if self.clip else out)
        if not isinstance(img, np.ndarray):      # any shape: the noise is per element
            raise TypeError(f"GaussianNoise: expected a NumPy array or a Tensor, got {type(img).__name__}")
        if img.dtype == np.uint8:
            noise = rng.normal(self.mean * 255.0, self.std * 255.0, size=img.shape)
            return np.clip(np.rint(img + noise), 0, 255).astype(np.uint8)
        out = img + rng.normal(self.mean, self.std, size=img.shape).astype(img.dtype)
        return np.clip(out, 0, 1).astype(img.dtype, copy=False) if self.clip else out


class GaussianBlur(RandomTransform):
    """Blur with a Gaussian of sigma drawn uniformly from ``sigma`` (a number: fixed).

    ``kernel_size``: odd int or (kh, kw). Borders reflect, as torchvision.
    """

    def __init__(self, kernel_size, sigma=(0.1, 2.0), generator=None):
        super().__init__(generator)
        self.kernel_size = _size(kernel_size, "GaussianBlur")
        if any(k % 2 == 0 for k in self.kernel_size):
            raise ValueError(f"GaussianBlur: kernel_size must be odd, got {self.kernel_size}")
        self.sigma = (float(sigma), float(sigma)) if isinstance(sigma, numbers.Number) else tuple(sigma)
        if not 0 < self.sigma[0] <= self.sigma[1]:
            raise ValueError(f"GaussianBlur: sigma must be positive (min, max), got {sigma}")

    def __call__(self, img, rng=None):
        img = _check_image(img, "GaussianBlur")
        cv2 = _cv2()
        sigma = self._rng(rng).uniform(*self.sigma)
        kh, kw = self.kernel_size
        out = cv2.GaussianBlur(np.ascontiguousarray(img), (kw, kh), sigmaX=sigma, sigmaY=sigma,
                               borderType=cv2.BORDER_REFLECT_101)
        return _restore_channels(out, img)


# ================================================================ multi-crop testing
def _five_crops(img, size):
    th, tw = size
    h, w = img.shape[:2]
    if th > h or tw > w:
        raise ValueError(f"FiveCrop: crop size {size} is larger than the image ({h}, {w})")
    crops = [img[:th, :tw], img[:th, w - tw:], img[h - th:, :tw], img[h - th:, w - tw:],
             CenterCrop(size)(img)]
    return [c if c.ndim == 3 else c[:, :, None] for c in crops]


class FiveCrop(Transform):
    """The four corner crops and the centre crop, stacked: (5, h, w, C).

    Order as torchvision: top-left, top-right, bottom-left, bottom-right, centre.
    A grey image gets a channel axis of 1, so ToTensor then gives (5, C, h, w).
    """

    def __init__(self, size):
        self.size = _size(size, "FiveCrop")

    def __call__(self, img, rng=None):
        return np.stack(_five_crops(_check_image(img, "FiveCrop"), self.size))


class TenCrop(Transform):
    """FiveCrop of the image and of its mirror (left-right, or top-bottom when
    ``vertical_flip``): (10, h, w, C). AlexNet's test-time augmentation."""

    def __init__(self, size, vertical_flip=False):
        self.size = _size(size, "TenCrop")
        self.vertical_flip = vertical_flip

    def __call__(self, img, rng=None):
        img = _check_image(img, "TenCrop")
        flipped = img[::-1] if self.vertical_flip else img[:, ::-1]
        return np.stack(_five_crops(img, self.size) + _five_crops(flipped, self.size))


def average_crops(outputs, ncrops, softmax=False):
    """Average a network's outputs over the crops of each image.

    ``outputs``: (N * ncrops, K) -- what the network gives for a batch of crop stacks
    (N, ncrops, C, H, W) reshaped to (N * ncrops, C, H, W) -- or (N, ncrops, K).
    Returns (N, K). With ``softmax=True`` the class probabilities are averaged
    (AlexNet averaged its softmax outputs), otherwise the raw outputs. Works on
    Tensors (differentiably) and on arrays.
    """
    n = outputs.shape[0] if outputs.ndim == 3 else outputs.shape[0] // ncrops
    if outputs.ndim == 2 and outputs.shape[0] % ncrops:
        raise ValueError(f"average_crops: {outputs.shape[0]} outputs is not a multiple of ncrops={ncrops}")
    if outputs.ndim == 3 and outputs.shape[1] != ncrops:
        raise ValueError(f"average_crops: outputs of shape {tuple(outputs.shape)} do not hold ncrops={ncrops}")
    if isinstance(outputs, Tensor):
        x = outputs.reshape(n, ncrops, -1)
        if softmax:
            x = x.softmax(-1)
        return x.mean(dim=1)
    xp = backend.get_array_module(outputs)
    x = outputs.reshape(n, ncrops, -1)
    if softmax:
        e = xp.exp(x - x.max(axis=-1, keepdims=True))
        x = e / e.sum(axis=-1, keepdims=True)
    return x.mean(axis=1)
