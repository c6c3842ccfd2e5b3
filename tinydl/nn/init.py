"""Weight initialisation, as ``torch.nn.init``.

Every function fills ``tensor`` IN PLACE (its array is overwritten, no graph is
recorded, the Tensor object and its dtype and device stay) and returns it.
Random numbers come from the backend's generator, so ``td.manual_seed(s)``
makes an initialisation reproducible (the stream differs from PyTorch's: only
the distributions match). The random fills also take ``generator=``: a NumPy
``np.random.Generator`` or an int seed (tinydl's notion of a generator, see
``backend.as_generator``); for a GPU tensor its numbers are drawn on the host
and copied over.

Each fill bumps the tensor's version counter, like any in-place write: a weight
re-initialised after a forward that saved it makes the backward raise instead of
silently using the new values.

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

from ..backend import as_generator, get_array_module, rng_for

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


def _write(tensor, values):
    """Overwrite the data of ``tensor`` in place, and record the change (version counter)."""
    tensor.array[...] = values
    tensor._bump_version()
    return tensor


def _generator(generator, fn):
    """The generator to draw from: tinydl's (None) or the caller's NumPy Generator / int seed."""
    if generator is None:
        return None
    try:
        return as_generator(generator)
    except TypeError:
        raise TypeError(f"{fn}: generator must be a numpy Generator, an int seed or None, "
                        f"got {type(generator).__name__}") from None


def _draw(tensor, kind, generator, fn, shape=None):
    """U[0, 1) (kind 'random') or N(0, 1) ('standard_normal') samples of ``shape`` (default:
    the tensor's), in the sampling dtype, on the tensor's array module."""
    xp = get_array_module(tensor.array)
    shape = tensor.shape if shape is None else shape
    rng = _generator(generator, fn)
    if rng is None:
        return getattr(rng_for(xp), kind)(shape, dtype=_sample_dtype(tensor))
    # a NumPy generator draws on the host; xp.asarray moves the result to the tensor's device
    return xp.asarray(getattr(rng, kind)(shape, dtype=_sample_dtype(tensor)))


def _fill_uniform(tensor, low, high, generator=None, fn="uniform_"):
    u = _draw(tensor, "random", generator, fn)      # U[0, 1)
    u *= high - low
    u += low
    return _write(tensor, u)


def _fill_normal(tensor, mean, std, generator=None, fn="normal_"):
    z = _draw(tensor, "standard_normal", generator, fn)
    z *= std
    z += mean
    return _write(tensor, z)


# ---------------------------------------------------------------- basic fills
def uniform_(tensor, a=0.0, b=1.0, generator=None):
    """Fill with U(a, b)."""
    return _fill_uniform(tensor, a, b, generator, "uniform_")


def normal_(tensor, mean=0.0, std=1.0, generator=None):
    """Fill with N(mean, std^2)."""
    return _fill_normal(tensor, mean, std, generator, "normal_")


def constant_(tensor, val):
    return _write(tensor, val)


def zeros_(tensor):
    return constant_(tensor, 0)


def ones_(tensor):
    return constant_(tensor, 1)


def eye_(tensor):
    """The identity matrix, for a 2-D tensor (keeps inputs unchanged in a Linear layer)."""
    if tensor.ndim != 2:
        raise ValueError(f"eye_: only tensors with 2 dimensions are supported, got shape {tensor.shape}")
    xp = get_array_module(tensor.array)
    return _write(tensor, xp.eye(*tensor.shape, dtype=tensor.dtype))


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
    tensor._bump_version()
    return tensor


def sparse_(tensor, sparsity, std=0.01, generator=None):
    """A 2-d weight from N(0, std^2) with a fraction ``sparsity`` of each column set to 0
    (Martens, 2010: deep nets trained by Hessian-free optimisation)."""
    if tensor.ndim != 2:
        raise ValueError(f"sparse_: only tensors with 2 dimensions are supported, got shape {tensor.shape}")
    rows, cols = tensor.shape
    zeros = int(math.ceil(sparsity * rows))
    _fill_normal(tensor, 0.0, std, generator, "sparse_")
    xp = get_array_module(tensor.array)
    rng = _generator(generator, "sparse_")
    for c in range(cols):               # ``zeros`` distinct rows of column c, at random
        keys = rng_for(xp).random(rows) if rng is None else xp.asarray(rng.random(rows))
        tensor.array[xp.argsort(keys)[:zeros], c] = 0
    tensor._bump_version()
    return tensor


# ---------------------------------------------------------------- scaled by fan
def xavier_uniform_(tensor, gain=1.0, generator=None):
    """U(-b, b) with b = gain * sqrt(6 / (fan_in + fan_out)) (std = gain * sqrt(2 / (fan_in + fan_out)))."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    std = gain * math.sqrt(2.0 / float(fan_in + fan_out))
    bound = math.sqrt(3.0) * std
    return _fill_uniform(tensor, -bound, bound, generator, "xavier_uniform_")


def xavier_normal_(tensor, gain=1.0, generator=None):
    """N(0, std^2) with std = gain * sqrt(2 / (fan_in + fan_out))."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    std = gain * math.sqrt(2.0 / float(fan_in + fan_out))
    return _fill_normal(tensor, 0.0, std, generator, "xavier_normal_")


def _kaiming_std(tensor, a, mode, nonlinearity):
    if 0 in tensor.shape:
        warnings.warn("Initializing zero-element tensors is a no-op")
        return None
    fan = _calculate_correct_fan(tensor, mode)
    return calculate_gain(nonlinearity, a) / math.sqrt(fan)


def kaiming_uniform_(tensor, a=0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
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
    return _fill_uniform(tensor, -bound, bound, generator, "kaiming_uniform_")


def kaiming_normal_(tensor, a=0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    """N(0, std^2) with std = gain / sqrt(fan) (He initialisation; ResNet uses
    ``mode='fan_out', nonlinearity='relu'``)."""
    std = _kaiming_std(tensor, a, mode, nonlinearity)
    if std is None:
        return tensor
    return _fill_normal(tensor, 0.0, std, generator, "kaiming_normal_")


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


def trunc_normal_(tensor, mean=0.0, std=1.0, a=-2.0, b=2.0, generator=None):
    """N(mean, std^2) restricted to [a, b] (``a``, ``b`` are absolute values, as in PyTorch).

    Exact samplers on the standardised interval [alpha, beta] = ([a, b] - mean) / std, each
    redrawing what it rejects:

    * normals, kept inside [alpha, beta], when the interval holds at least 1% of the mass
      (the default +-2 std holds 95%): about 1 / mass rounds;
    * otherwise the interval is narrow or far out (mirrored to the positive side):
      - up to 1 wide: z uniform on it, kept with probability exp((m^2 - z^2) / 2), the
        density over its largest value (at m, the point nearest 0);
      - wider (then alpha > 2.3): z = alpha + E / lam with E ~ Exp(1) and
        lam = (alpha + sqrt(alpha^2 + 4)) / 2, kept with probability exp(-(z - lam)^2 / 2)
        and z <= beta (Robert, 1995: an exponential tail fitted to the normal's).
    """
    if b <= a:
        raise ValueError(f"trunc_normal_: need a < b, got a={a}, b={b}")
    xp = get_array_module(tensor.array)
    alpha, beta = (a - mean) / std, (b - mean) / std
    cdf = lambda v: 0.5 * math.erfc(-v / math.sqrt(2.0))   # noqa: E731
    rng = _generator(generator, "trunc_normal_")    # once: a seed must not restart every round

    def draw(kind):
        return _draw(tensor, kind, rng, "trunc_normal_").astype(np.float64)
    if cdf(beta) - cdf(alpha) >= 1e-2:
        def propose():
            return draw("standard_normal"), True
    else:
        flip = beta <= 0 or (alpha < 0 and -alpha > beta)
        lo, hi = (-beta, -alpha) if flip else (alpha, beta)
        top = max(lo, 0.0)                  # where the density is largest (0 inside: narrow)
        if hi - lo <= 1:
            def propose():
                z = lo + (hi - lo) * draw("random")
                return z, draw("random") < xp.exp((top * top - z * z) / 2)
        else:
            lam = (lo + math.sqrt(lo * lo + 4)) / 2

            def propose():
                z = lo - xp.log1p(-draw("random")) / lam
                return z, (draw("random") < xp.exp(-(z - lam) ** 2 / 2)) & (z <= hi)
        if flip:
            inner = propose

            def propose():
                z, keep = inner()
                return -z, keep
    z, keep = propose()
    keep &= (z >= alpha) & (z <= beta)
    while not bool(keep.all()):
        fresh, fresh_keep = propose()
        fresh_keep &= (fresh >= alpha) & (fresh <= beta)
        z, keep = xp.where(keep, z, fresh), keep | fresh_keep
    return _write(tensor, xp.clip(z * std + mean, a, b).astype(tensor.dtype))


def orthogonal_(tensor, gain=1.0, generator=None):
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
    rng = _generator(generator, "orthogonal_")
    gaussian = rng_for(xp) if rng is None else rng
    flat = xp.asarray(gaussian.standard_normal((rows, cols)))   # (asarray: a NumPy generator's, to the GPU)
    if rows < cols:
        flat = flat.T
    q, r = xp.linalg.qr(flat)
    q *= xp.sign(xp.diag(r))
    if rows < cols:
        q = q.T
    return _write(tensor, (gain * q).reshape(tensor.shape))
