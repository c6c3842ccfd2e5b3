"""How a trained network's answer depends on its input: Zeiler & Fergus's occlusion
and invariance experiments (ZFNet, notes 001, sections 5 and 7 of the paper).

    # slide a grey square over the image; where it hides what the net looks at,
    # the probability of the right class drops
    prob = occlusion_sensitivity(model, image, label, patch=8, stride=2, fill=0.5)

    # shift / scale / rotate a few images step by step; compare the features of the
    # transformed image with the original's, and watch the true class's probability
    curve = invariance_curve(model, images, labels, "rotate", range(-180, 181, 15),
                             features={"relu1": lambda x: model.forward_features(x, until="relu1")})
    curve["prob"], curve["distance"]["relu1"]          # (V, N) each

``model`` is any callable from a (N, C, H, W) Tensor to (N, K) scores: a classifier,
or a function picking one feature map's total activation (ZF's Fig. 7 (b)) with
``softmax=False``. A Module is put in eval mode while it is probed and given back its
mode afterwards; everything runs under ``no_grad``. The occluded batches are built with
the image's own array module (NumPy or CuPy) and the map comes back as a host NumPy array,
one copy per call, because it is made to be drawn. The invariance transforms warp with
OpenCV on the host (``transforms.affine``), so each step of a curve takes the images to
the host and back.
"""
import contextlib

import numpy as np

from ..args import pair
from ..autograd import no_grad
from ..backend import device_of, get_array_module, to_device, to_host
from ..ops.math import raw
from ..tensor import Tensor

__all__ = ["occlusion_sensitivity", "occlusion_positions", "invariance_curve", "shift_images", "scale_images",
           "rotate_images", "INVARIANCE_TRANSFORMS"]


@contextlib.contextmanager
def _probing(model):
    """no_grad, and a Module in eval mode (dropout off, BN running statistics), restored after."""
    was = getattr(model, "training", None)
    if was is not None:
        model.eval()
    try:
        with no_grad():
            yield
    finally:
        if was is not None:
            model.train(was)


def _scores(model, x, softmax, op):
    """(N, K) array of the model's scores (softmax probabilities with ``softmax``)."""
    out = model(Tensor(x))
    out = out[0] if isinstance(out, (tuple, list)) else out
    out = out if isinstance(out, Tensor) else Tensor(out)
    if out.ndim != 2 or out.shape[0] != x.shape[0]:
        raise ValueError(f"{op}: the model must return (N, K) scores for a batch of N images, got shape "
                         f"{tuple(out.shape)} for N={x.shape[0]}")
    return raw(out.softmax(1) if softmax else out)


def occlusion_positions(size, patch, stride):
    """Top-left corners along one axis: 0, stride, ... up to ``size - patch`` (every patch
    lies inside the image, as the windows of a convolution without padding)."""
    if not 1 <= patch <= size or stride < 1:
        raise ValueError(f"occlusion_sensitivity: need 1 <= patch <= image size and stride >= 1, got patch "
                         f"{patch}, size {size}, stride {stride}")
    return list(range(0, size - patch + 1, stride))


def occlusion_sensitivity(model, image, label=None, patch=8, stride=2, fill=0.0, softmax=True, batch_size=64,
                          return_classes=False):
    """Zeiler & Fergus's occlusion map: the score of class ``label`` as a square of
    constant colour slides over ``image``.

    image: one image, (C, H, W) or (1, C, H, W), Tensor or array, on the model's device.
    label: the class whose score is mapped (default: the class the model gives the
        unoccluded image).
    patch, stride: the occluder's size and step, an int or (h, w). Occluder (i, j) covers
        rows ``i*sh : i*sh + ph`` and columns ``j*sw : j*sw + pw``; the map has
        ``(H - ph) // sh + 1`` x ``(W - pw) // sw + 1`` entries.
    fill: the occluder's value: a number, one per channel, or 'mean' (the image's mean
        per channel; ZF used a grey square).
    softmax: map probabilities (True) or the raw outputs ``model(x)[:, label]``.
    Returns a float64 host array (rows, cols); with ``return_classes`` also the
    (rows, cols) int64 map of the top class under each occluder (ZF's Fig. 7 (e)).
    """
    data = raw(image)
    xp = get_array_module(data)
    if data.ndim == 4 and data.shape[0] == 1:
        data = data[0]
    if data.ndim != 3:
        raise ValueError(f"occlusion_sensitivity: expected one image (C, H, W) or (1, C, H, W), "
                         f"got shape {tuple(raw(image).shape)}")
    c, h, w = data.shape
    ph, pw = pair(patch, "patch", "occlusion_sensitivity")
    sh, sw = pair(stride, "stride", "occlusion_sensitivity")
    rows, cols = occlusion_positions(h, ph, sh), occlusion_positions(w, pw, sw)
    if isinstance(fill, str):
        if fill != "mean":
            raise ValueError(f"occlusion_sensitivity: fill must be a number, one per channel, or 'mean'; got {fill!r}")
        value = data.mean(axis=(1, 2)).reshape(c, 1, 1)
    else:
        value = xp.asarray(fill, dtype=data.dtype)
        if value.size not in (1, c):
            raise ValueError(f"occlusion_sensitivity: fill has {value.size} values for a {c}-channel image")
        value = value.reshape(-1, 1, 1)
    corners = [(t, left) for t in rows for left in cols]
    probs, classes = [], []
    with _probing(model):
        if label is None:
            label = int(to_host(_scores(model, data[None], softmax, "occlusion_sensitivity")[0].argmax()))
        for start in range(0, len(corners), batch_size):
            chunk = corners[start:start + batch_size]
            batch = xp.repeat(data[None], len(chunk), axis=0)
            for k, (t, left) in enumerate(chunk):
                batch[k, :, t:t + ph, left:left + pw] = value
            scores = _scores(model, batch, softmax, "occlusion_sensitivity")
            if not 0 <= label < scores.shape[1]:
                raise ValueError(f"occlusion_sensitivity: label {label} out of range for {scores.shape[1]} classes")
            probs.append(scores[:, label])
            classes.append(scores.argmax(axis=1))
    prob_map = to_host(xp.concatenate(probs)).astype(np.float64).reshape(len(rows), len(cols))
    if not return_classes:
        return prob_map
    return prob_map, to_host(xp.concatenate(classes)).astype(np.int64).reshape(len(rows), len(cols))


# ================================================================ invariance
def _warp_each(images, **params):
    """Apply ``transforms.affine`` to every (C, H, W) image of a host batch (float, channels last for OpenCV)."""
    from ..data.transforms import affine
    out = np.empty_like(images)
    for i, img in enumerate(images):      # (affine's warp copies and keeps a size-1 channel axis)
        out[i] = affine(img.transpose(1, 2, 0), interpolation="bilinear", **params).transpose(2, 0, 1)
    return out


def shift_images(images, dy, fill=0.0):
    """Move (N, C, H, W) host images down by ``dy`` pixels (up when negative): ZF's vertical translation."""
    return _warp_each(images, angle=0.0, translate=(0, dy), scale=1.0, shear=0.0, fill=fill)


def scale_images(images, factor, fill=0.0):
    """Zoom (N, C, H, W) host images about their centre by ``factor``, keeping their size."""
    return _warp_each(images, angle=0.0, translate=(0, 0), scale=factor, shear=0.0, fill=fill)


def rotate_images(images, degrees, fill=0.0):
    """Turn (N, C, H, W) host images about their centre by ``degrees``, counter-clockwise."""
    return _warp_each(images, angle=degrees, translate=(0, 0), scale=1.0, shear=0.0, fill=fill)


# The three transforms of ZF's Fig. 5, by the names invariance_curve takes.
INVARIANCE_TRANSFORMS = {"translate": shift_images, "scale": scale_images, "rotate": rotate_images}


def invariance_curve(model, images, labels, transform, values, features=None, fill=0.0, softmax=True):
    """ZF's invariance curves: transform ``images`` step by step and measure, at each step,
    how far each layer's features moved and how sure the model still is of the true class.

    images: (N, C, H, W) float Tensor or array (the model's device); labels: N class indices.
    transform: 'translate' (down by v pixels), 'scale' (zoom by v about the centre), 'rotate'
        (v degrees counter-clockwise), or a function ``f(host_images, v) -> host_images``
        of the same shape.
    values: the transform's parameter at each step (e.g. ``range(-180, 181, 15)``).
    features: ``{name: fn}``, each ``fn(x)`` giving a layer's (N, ...) output for a batch.
    Returns a dict of host arrays, V = len(values):
        values (V,); prob (V, N): the true class's probability (the raw score without
        ``softmax``); pred (V, N): the top class; correct (V, N): pred == label;
        distance {name: (V, N)}: Euclidean distance between the features of the transformed
        image and of the original one; norm {name: (N,)}: the original features' norm
        (distance / norm is the relative change).
    """
    if isinstance(transform, str):
        if transform not in INVARIANCE_TRANSFORMS:
            raise ValueError(f"invariance_curve: unknown transform {transform!r}; choose from "
                             f"{', '.join(INVARIANCE_TRANSFORMS)} or pass a function f(images, value)")
        warp = INVARIANCE_TRANSFORMS[transform]
        transform = lambda x, v: warp(x, v, fill)  # noqa: E731
    data = raw(images)
    if data.ndim != 4:
        raise ValueError(f"invariance_curve: expected images (N, C, H, W), got shape {tuple(data.shape)}")
    device = device_of(data)
    host = to_host(data)
    labels = np.asarray(to_host(raw(labels))).astype(np.int64).reshape(-1)
    if labels.shape != (len(host),):
        raise ValueError(f"invariance_curve: {len(host)} images but {labels.size} labels")
    features = dict(features or {})
    values = [float(v) for v in values]

    def flat(fn, x):
        out = raw(fn(Tensor(x)))
        return out.reshape(out.shape[0], -1)

    prob, pred, distance = [], [], {name: [] for name in features}
    with _probing(model):
        original = {name: flat(fn, data) for name, fn in features.items()}
        for v in values:
            moved = transform(host.copy(), v)
            if moved.shape != host.shape:
                raise ValueError(f"invariance_curve: the transform changed the images' shape from {host.shape} "
                                 f"to {moved.shape} at value {v}")
            x = to_device(np.ascontiguousarray(moved, dtype=host.dtype), device)
            scores = to_host(_scores(model, x, softmax, "invariance_curve"))
            prob.append(scores[np.arange(len(labels)), labels])
            pred.append(scores.argmax(axis=1))
            for name, fn in features.items():
                xp = get_array_module(original[name])
                distance[name].append(to_host(xp.sqrt(((flat(fn, x) - original[name]) ** 2).sum(axis=1))))
    pred = np.asarray(pred, dtype=np.int64)
    norms = {}
    for name, f in original.items():
        norms[name] = to_host(get_array_module(f).sqrt((f ** 2).sum(axis=1))).astype(np.float64)
    return {"values": np.asarray(values), "prob": np.asarray(prob, dtype=np.float64), "pred": pred,
            "correct": pred == labels[None], "norm": norms,
            "distance": {k: np.asarray(v, dtype=np.float64) for k, v in distance.items()}}
