"""Pooling that turns a feature map of any size into a fixed-length vector.

Spatial pyramid pooling (SPP-net, He et al. 2014; seed 001)
-----------------------------------------------------------
A fully connected layer needs a fixed number of inputs, a convolution does not.
SPP-net pools the last conv map (N, C, H, W) over an l x l grid of bins for
every pyramid level l (e.g. 1, 2, 4) and concatenates the results, so the output
is (N, C * sum(l*l)) whatever H and W are: 256 * (1 + 4 + 16) = 5,376 features
for ZF-5's conv5 with levels (1, 2, 4).

Bins. The paper pools level l with a window ceil(H/l) and a stride floor(H/l).
That rule does not always give l bins (H = 7, l = 4: window 2, stride 1 -> 6
windows; H = 10, l = 4: the last window stops at 9 and pixel 9 is never seen)
and breaks for H < l (stride 0). We use *adaptive* pooling instead (PyTorch's
bins, ``F.adaptive_max_pool2d``): bin i of level l covers rows
[floor(i*H/l), ceil((i+1)*H/l)), always exactly l bins that together cover the
map. Where l divides H the two rules are the same bins (H/l wide, no overlap),
and on the paper's 13x13 conv5 map they agree for every level 1, 2, 3, 4, 6.
A map smaller than a level (H < l) still gives l bins: some bins repeat a row
(each bin is at least one pixel wide).

Layout: level by level (in the order of ``levels``), each level's (C, l, l)
block flattened channel-major, as ``torch.cat([x.flatten(1) for x in levels], 1)``.
The gradient needs nothing new: each level is ``adaptive_max_pool2d`` (or avg),
whose backward sends each bin's gradient to its arg-max (or spreads it), and the
concatenation splits the incoming gradient back into the levels.

Bilinear (outer-product) pooling (Lin et al. 2015, "Bilinear CNN"; seed 004)
-----------------------------------------------------------------------------
Two feature maps x (N, C1, H, W) and y (N, C2, H, W) of the same image are
combined at every location p by the outer product x_p y_p^T (C1 x C2) and
averaged over the H*W locations (sum pooling, orderless like a bag of words):

    z = (1/HW) sum_p x_p y_p^T = X Y^T / HW         X = x as (C1, HW), Y = y as (C2, HW)

then flattened to C1*C2 features, passed through the signed square root
s = sign(z) sqrt(|z| + eps) (which damps large, "bursty" entries) and L2
normalised u = s / max(||s||_2, 1e-12). With y = x (one network, the usual
symmetric B-CNN) z is the second moment matrix of the features.
"""
import numbers

from ...autograd import Function
from ...backend import get_array_module
from ...nn.module import Module
from ...ops.norm import normalize
from ...ops.pool import adaptive_avg_pool2d, adaptive_max_pool2d
from ...ops.shape import cat
from ...tensor import Tensor

__all__ = ["spatial_pyramid_pool", "SpatialPyramidPooling", "spp_num_features",
           "bilinear_pool", "BilinearPooling", "signed_sqrt"]


# ================================================================ spatial pyramid pooling
def _check_levels(levels, op):
    if isinstance(levels, numbers.Integral):
        levels = (levels,)
    levels = tuple(levels)
    if not levels or any(not isinstance(l, numbers.Integral) or l < 1 for l in levels):
        raise ValueError(f"{op}: levels must be a non-empty sequence of positive integers, got {levels!r}")
    return tuple(int(l) for l in levels)


def spp_num_features(channels, levels=(1, 2, 4)):
    """Length of the SPP vector: channels * sum(l*l) (256 channels, (1, 2, 4) -> 5,376)."""
    levels = _check_levels(levels, "spp_num_features")
    return int(channels) * sum(l * l for l in levels)


def spatial_pyramid_pool(input, levels=(1, 2, 4), mode="max"):
    """SPP-net's pyramid: (N, C, H, W) -> (N, C * sum(l*l)) for any H, W >= 1.

    Level l is ``adaptive_{max,avg}_pool2d(input, l)`` (adaptive bins, see the
    module docstring for why not the paper's window/stride rule), flattened; the
    levels are concatenated in the given order. ``mode``: 'max' (the paper) or 'avg'.
    """
    op = "spatial_pyramid_pool"
    if not isinstance(input, Tensor):
        raise TypeError(f"{op}: input must be a Tensor, got {type(input).__name__}")
    if input.ndim != 4:
        raise ValueError(f"{op}: expected a 4-D (N, C, H, W) input, got shape {input.shape}")
    if mode not in ("max", "avg"):
        raise ValueError(f"{op}: mode must be 'max' or 'avg', got {mode!r}")
    levels = _check_levels(levels, op)
    pool = adaptive_max_pool2d if mode == "max" else adaptive_avg_pool2d
    return cat([pool(input, l).flatten(1) for l in levels], dim=1)


class SpatialPyramidPooling(Module):
    """``spatial_pyramid_pool`` as a layer: (N, C, H, W) -> (N, C * sum(l*l))."""

    def __init__(self, levels=(1, 2, 4), mode="max"):
        super().__init__()
        self.levels = _check_levels(levels, "SpatialPyramidPooling")
        if mode not in ("max", "avg"):
            raise ValueError(f"SpatialPyramidPooling: mode must be 'max' or 'avg', got {mode!r}")
        self.mode = mode

    def num_features(self, channels):
        """Output length for a ``channels``-channel input."""
        return spp_num_features(channels, self.levels)

    def forward(self, input):
        return spatial_pyramid_pool(input, self.levels, self.mode)

    def extra_repr(self):
        return f"levels={self.levels}, mode={self.mode!r}"


# ================================================================ bilinear pooling
class OuterProductMean(Function):
    """z[n] = X[n] Y[n]^T / HW: the outer products x_p y_p^T averaged over locations.

    X (N, C1, L), Y (N, C2, L) with L = H*W locations; z (N, C1, C2):
        z_ij = (1/L) sum_p X_ip Y_jp
    so  dL/dX_ip = (1/L) sum_j G_ij Y_jp   ->  dX = G Y / L
        dL/dY_jp = (1/L) sum_i G_ij X_ip   ->  dY = G^T X / L
    (G = dL/dz). The symmetric case y = x passes the same Tensor twice; autograd
    adds the two gradients, giving dX = (G + G^T) X / L.
    """

    def forward(ctx, x, y):
        n, c1, h, w = x.shape
        c2 = y.shape[1]
        X, Y = x.reshape(n, c1, h * w), y.reshape(n, c2, h * w)
        ctx.save_for_backward(X, Y)
        ctx.shapes = x.shape, y.shape
        scale = x.dtype.type(1.0 / (h * w))         # a scalar of x's dtype: float32 stays float32
        return (X @ Y.transpose(0, 2, 1)) * scale

    def backward(ctx, gz):
        X, Y = ctx.saved_tensors
        x_shape, y_shape = ctx.shapes
        scale = gz.dtype.type(1.0 / X.shape[2])
        gx = (gz @ Y * scale).reshape(x_shape) if ctx.needs_input_grad[0] else None
        gy = (gz.transpose(0, 2, 1) @ X * scale).reshape(y_shape) if ctx.needs_input_grad[1] else None
        return gx, gy


class SignedSqrt(Function):
    """s = sign(z) * sqrt(|z| + eps), elementwise.

    For z != 0:  ds/dz = sign(z) * sign(z) / (2 sqrt(|z| + eps)) = 1 / (2 sqrt(|z| + eps)).
    eps > 0 keeps that slope finite near 0 (at most 1 / (2 sqrt(eps))), where the
    plain signed root has an infinite slope.
    At z = 0 exactly the function jumps from -sqrt(eps) to +sqrt(eps) (and
    s(0) = 0 because sign(0) = 0): there is no derivative, and we use 0 -- an
    entry that is exactly zero (e.g. a channel the ReLU switched off at every
    location) passes no gradient back. This is also what autograd gives for the
    composition torch.sign(z) * torch.sqrt(torch.abs(z) + eps), since
    d|z|/dz = sign(0) = 0 there.
    """

    def forward(ctx, z, *, eps):
        xp = get_array_module(z)
        root = xp.sqrt(xp.abs(z) + z.dtype.type(eps))
        ctx.save_for_backward(z, root)
        return xp.sign(z) * root

    def backward(ctx, gs):
        z, root = ctx.saved_tensors
        xp = get_array_module(gs)
        slope = xp.where(z != 0, 0.5 / root, 0).astype(gs.dtype, copy=False)
        return gs * slope


def signed_sqrt(input, eps=1e-8):
    """sign(x) * sqrt(|x| + eps) elementwise (B-CNN's "matrix power" normalisation)
    with gradient 1 / (2 sqrt(|x| + eps)), and 0 at x == 0 exactly."""
    if not isinstance(input, Tensor):
        raise TypeError(f"signed_sqrt: input must be a Tensor, got {type(input).__name__}")
    if input.dtype.kind != "f":
        raise TypeError(f"signed_sqrt: expected a floating-point input, got {input.dtype}")
    if not eps >= 0:
        raise ValueError(f"signed_sqrt: eps must be >= 0, got {eps}")
    return SignedSqrt.apply(input, eps=float(eps))


def bilinear_pool(x, y=None, eps=1e-8, normalize_output=True):
    """Bilinear pooling: (N, C1, H, W), (N, C2, H, W) -> (N, C1*C2).

    z = mean over the H*W locations of the outer products x_p y_p^T, flattened
    row-major (feature i*C2 + j is x-channel i times y-channel j); then, unless
    ``normalize_output=False``, the signed square root sign(z) sqrt(|z| + eps)
    (gradient 0 where z == 0 exactly: see ``SignedSqrt``) and L2 normalisation
    per sample (``F.normalize``, eps 1e-12). ``y=None`` means y = x (symmetric
    B-CNN, C1*C1 features). Every step is a differentiable op.
    """
    op = "bilinear_pool"
    y_given = y is not None
    y = x if y is None else y
    for name, t in (("x", x), ("y", y)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{op}: {name} must be a Tensor, got {type(t).__name__}")
        if t.ndim != 4:
            raise ValueError(f"{op}: {name} must be 4-D (N, C, H, W), got shape {t.shape}")
        if t.dtype.kind != "f":
            raise TypeError(f"{op}: {name} must be floating point, got {t.dtype}")
    if y_given:
        if x.shape[0] != y.shape[0] or x.shape[2:] != y.shape[2:]:
            raise ValueError(f"{op}: x and y must have the same batch size and H x W, got shapes "
                             f"{x.shape} and {y.shape}")
        if x.dtype != y.dtype or x.device != y.device:
            raise ValueError(f"{op}: x and y must share dtype and device, got {x.dtype} on {x.device} "
                             f"and {y.dtype} on {y.device}")
    z = OuterProductMean.apply(x, y).flatten(1)
    if not normalize_output:
        return z
    return normalize(signed_sqrt(z, eps), p=2.0, dim=1)


class BilinearPooling(Module):
    """``bilinear_pool`` as a layer: forward(x, y=None) -> (N, C1*C2)."""

    def __init__(self, eps=1e-8, normalize_output=True):
        super().__init__()
        self.eps, self.normalize_output = eps, normalize_output

    def forward(self, x, y=None):
        return bilinear_pool(x, y, self.eps, self.normalize_output)

    def extra_repr(self):
        return f"eps={self.eps}, normalize_output={self.normalize_output}"
