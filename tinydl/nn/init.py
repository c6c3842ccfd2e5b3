"""Weight initialisation, as ``torch.nn.init``.

Every function fills ``tensor`` IN PLACE (its array is overwritten, no graph is
recorded, the Tensor object and its dtype and device stay) and returns it.
Random numbers come from the backend's generator, so ``td.manual_seed(s)``
makes an initialisation reproducible (the stream differs from PyTorch's: only
the distributions match).

Why the scales: a layer y = W x with n inputs of unit variance and weights of
variance s^2 gives outputs of variance n s^2. Keeping activations from growing
or shrinking layer after layer asks for s^2 = 1/n, corrected by a *gain* for the
nonlinearity that follows (ReLU zeroes half its input, so gain^2 = 2):

    kaiming (He et al. 2015):    std = gain / sqrt(fan)              fan = fan_in or fan_out
    xavier (Glorot & Bengio):    std = gain * sqrt(2 / (fan_in + fan_out))

A uniform distribution U(-b, b) has std b / sqrt(3), hence the sqrt(3) in the
uniform bounds below.
"""
import math
import numbers
import warnings

import numpy as np

from ..backend import get_array_module, rng_for

__all__ = ["calculate_gain", "default_layer_init_", "uniform_", "normal_", "constant_", "zeros_", "ones_", "eye_",
           "dirac_", "sparse_", "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_",
           "trunc_normal_", "orthogonal_"]


def calculate_gain(nonlinearity, param=None):
    """The gain recommended for ``nonlinearity`` (PyTorch's table).

    linear, conv*, sigmoid: 1;  tanh: 5/3;  relu: sqrt(2);
    leaky_relu: sqrt(2 / (1 + negative_slope^2)) (slope ``param``, default 0.01);  selu: 3/4.
    """
    linear_fns = ["linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
                  "conv_transpose2d", "conv_transpose3d"]
    if nonlinearity in linear_fns or nonlinearity == "sigmoid":
        return 1
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            negative_slope = 0.01
        elif isinstance(param, numbers.Real) and not isinstance(param, bool):
            negative_slope = param
        else:
            raise ValueError(f"negative_slope {param} not a valid number")
        return math.sqrt(2.0 / (1 + negative_slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"Unsupported nonlinearity {nonlinearity}")


def _calculate_fan_in_and_fan_out(tensor):
    """(fan_in, fan_out) of a weight of shape (out, in, *kernel).

    Linear (out, in): fan_in = in, fan_out = out. Conv (out, in/groups, kh, kw):
    each output sees in/groups * kh * kw inputs, so fan_in = in/groups * kh * kw
    and fan_out = out * kh * kw. (ConvTranspose weights are (in, out/groups, kh, kw):
    the same formula reads them "backwards", as PyTorch does.)
    """
    shape = tuple(tensor.shape)
    if len(shape) < 2:
        raise ValueError("Fan in and fan out can not be computed for tensor with fewer than 2 dimensions "
                         f"(got shape {shape})")
    receptive_field = math.prod(shape[2:])
    return shape[1] * receptive_field, shape[0] * receptive_field


def _calculate_correct_fan(tensor, mode):
    mode = mode.lower()
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"Mode {mode} not supported, please use one of fan_in, fan_out")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return fan_in if mode == "fan_in" else fan_out


# ---------------------------------------------------------------- sampling helpers
def _sample_dtype(tensor):
    # Sample straight in float32 for float32 weights: no float64 temporary the size
    # of VGG's 100M-element fc6. float16 weights are sampled in float32 and rounded.
    return np.float32 if tensor.dtype in (np.float32, np.float16) else np.float64


def _fill_uniform(tensor, low, high):
    xp = get_array_module(tensor.array)
    u = rng_for(xp).random(tensor.shape, dtype=_sample_dtype(tensor))   # U[0, 1)
    u *= high - low
    u += low
    tensor.array[...] = u
    return tensor


def _fill_normal(tensor, mean, std):
    xp = get_array_module(tensor.array)
    z = rng_for(xp).standard_normal(tensor.shape, dtype=_sample_dtype(tensor))
    z *= std
    z += mean
    tensor.array[...] = z
    return tensor


# ---------------------------------------------------------------- basic fills
def uniform_(tensor, a=0.0, b=1.0):
    """Fill with U(a, b)."""
    return _fill_uniform(tensor, a, b)


def normal_(tensor, mean=0.0, std=1.0):
    """Fill with N(mean, std^2)."""
    return _fill_normal(tensor, mean, std)


def constant_(tensor, val):
    tensor.array[...] = val
    return tensor


def zeros_(tensor):
    return constant_(tensor, 0)


def ones_(tensor):
    return constant_(tensor, 1)


def eye_(tensor):
    """The identity matrix, for a 2-D tensor (keeps inputs unchanged in a Linear layer)."""
    if tensor.ndim != 2:
        raise ValueError(f"eye_: only tensors with 2 dimensions are supported, got shape {tensor.shape}")
    xp = get_array_module(tensor.array)
    tensor.array[...] = xp.eye(*tensor.shape, dtype=tensor.dtype)
    return tensor


def dirac_(tensor, groups=1):
    """The identity convolution: a 3-, 4- or 5-d weight (out, in, *kernel) with 1 at the
    kernel's centre for output channel d of each group and its input channel d, 0 elsewhere
    (a conv layer that passes its first channels through unchanged)."""
    if tensor.ndim not in (3, 4, 5):
        raise ValueError(f"dirac_: only tensors with 3, 4 or 5 dimensions are supported, got shape {tensor.shape}")
    out_per_group = tensor.shape[0] // groups
    if tensor.shape[0] % groups:
        raise ValueError(f"dirac_: dim 0 ({tensor.shape[0]}) must be divisible by groups ({groups})")
    centre = tuple(k // 2 for k in tensor.shape[2:])
    tensor.array[...] = 0
    for g in range(groups):
        for d in range(min(out_per_group, tensor.shape[1])):
            tensor.array[(g * out_per_group + d, d) + centre] = 1
    return tensor


def sparse_(tensor, sparsity, std=0.01):
    """A 2-d weight from N(0, std^2) with a fraction ``sparsity`` of each column set to 0
    (Martens, 2010: deep nets trained by Hessian-free optimisation)."""
    if tensor.ndim != 2:
        raise ValueError(f"sparse_: only tensors with 2 dimensions are supported, got shape {tensor.shape}")
    rows, cols = tensor.shape
    zeros = int(math.ceil(sparsity * rows))
    _fill_normal(tensor, 0.0, std)
    xp = get_array_module(tensor.array)
    rng = rng_for(xp)
    for c in range(cols):               # ``zeros`` distinct rows of column c, at random
        tensor.array[xp.argsort(rng.random(rows))[:zeros], c] = 0
    return tensor


# ---------------------------------------------------------------- scaled by fan
def xavier_uniform_(tensor, gain=1.0):
    """U(-b, b) with b = gain * sqrt(6 / (fan_in + fan_out)) (std = gain * sqrt(2 / (fan_in + fan_out)))."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    std = gain * math.sqrt(2.0 / float(fan_in + fan_out))
    bound = math.sqrt(3.0) * std
    return _fill_uniform(tensor, -bound, bound)


def xavier_normal_(tensor, gain=1.0):
    """N(0, std^2) with std = gain * sqrt(2 / (fan_in + fan_out))."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    std = gain * math.sqrt(2.0 / float(fan_in + fan_out))
    return _fill_normal(tensor, 0.0, std)


def _kaiming_std(tensor, a, mode, nonlinearity):
    if 0 in tensor.shape:
        warnings.warn("Initializing zero-element tensors is a no-op")
        return None
    fan = _calculate_correct_fan(tensor, mode)
    return calculate_gain(nonlinearity, a) / math.sqrt(fan)


def kaiming_uniform_(tensor, a=0, mode="fan_in", nonlinearity="leaky_relu"):
    """U(-b, b) with b = gain * sqrt(3 / fan) (std = gain / sqrt(fan)).

    ``a`` is the negative slope of the leaky ReLU that follows (the gain's
    ``param``); ``mode`` picks fan_in (keeps forward activations' variance) or
    fan_out (keeps backward gradients' variance). ``nn.Linear`` and ``nn.Conv2d``
    use ``a=sqrt(5)``, which makes b = 1 / sqrt(fan_in).
    """
    std = _kaiming_std(tensor, a, mode, nonlinearity)
    if std is None:
        return tensor
    bound = math.sqrt(3.0) * std
    return _fill_uniform(tensor, -bound, bound)


def kaiming_normal_(tensor, a=0, mode="fan_in", nonlinearity="leaky_relu"):
    """N(0, std^2) with std = gain / sqrt(fan) (He initialisation; ResNet uses
    ``mode='fan_out', nonlinearity='relu'``)."""
    std = _kaiming_std(tensor, a, mode, nonlinearity)
    if std is None:
        return tensor
    return _fill_normal(tensor, 0.0, std)


def default_layer_init_(weight, bias=None):
    """PyTorch's default for Linear and Conv layers: weight from
    kaiming_uniform_(a=sqrt(5)), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and the
    bias from the same range. Returns the weight."""
    kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None:
        fan_in, _ = _calculate_fan_in_and_fan_out(weight)
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
        uniform_(bias, -bound, bound)
    return weight


def trunc_normal_(tensor, mean=0.0, std=1.0, a=-2.0, b=2.0):
    """N(mean, std^2) restricted to [a, b] (``a``, ``b`` are absolute values, as in PyTorch).

    By rejection: draw normals, redraw those outside [a, b] until none is left.
    Exact, and fast when [a, b] holds most of the mass (the default +-2 std keeps
    95%); an interval holding almost none of it is refused.
    """
    if b <= a:
        raise ValueError(f"trunc_normal_: need a < b, got a={a}, b={b}")
    cdf = lambda v: 0.5 * (1 + math.erf((v - mean) / (std * math.sqrt(2.0))))   # noqa: E731
    if cdf(b) - cdf(a) < 1e-3:
        raise ValueError(f"trunc_normal_: [{a}, {b}] holds less than 0.1% of N({mean}, {std}^2); "
                         "rejection sampling would not finish")
    xp = get_array_module(tensor.array)
    rng = rng_for(xp)
    dtype = _sample_dtype(tensor)
    values = rng.standard_normal(tensor.shape, dtype=dtype) * dtype(std) + dtype(mean)
    outside = (values < a) | (values > b)
    while bool(outside.any()):
        redraw = rng.standard_normal(tensor.shape, dtype=dtype) * dtype(std) + dtype(mean)
        values = xp.where(outside, redraw, values)
        outside = (values < a) | (values > b)
    tensor.array[...] = values
    return tensor


def orthogonal_(tensor, gain=1.0):
    """A (semi-)orthogonal matrix times ``gain`` (Saxe et al. 2013): the weight viewed
    as (rows, cols) = (shape[0], everything else) has orthonormal rows or columns.

    QR of a Gaussian matrix, with the signs of R's diagonal folded into Q so that
    Q is uniformly distributed over orthogonal matrices.
    """
    if tensor.ndim < 2:
        raise ValueError(f"Only tensors with 2 or more dimensions are supported, got shape {tensor.shape}")
    if tensor.array.size == 0:
        return tensor
    xp = get_array_module(tensor.array)
    rows = tensor.shape[0]
    cols = tensor.array.size // rows
    flat = rng_for(xp).standard_normal((rows, cols))
    if rows < cols:
        flat = flat.T
    q, r = xp.linalg.qr(flat)
    q *= xp.sign(xp.diag(r))
    if rows < cols:
        q = q.T
    tensor.array[...] = (gain * q).reshape(tensor.shape)
    return tensor
