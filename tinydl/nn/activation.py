"""Activation layers: one Module per activation function, as PyTorch's ``torch.nn``.

Each is a thin Module around a function of ``tinydl.ops.activation`` (where forward,
backward and the derivative live); the constructor stores PyTorch's arguments and
``extra_repr`` prints them as PyTorch does. PReLU is the one with a parameter: its
learnable negative slope. ``inplace=True`` is passed on to the function (see
``tinydl.ops.activation`` for when the input is really overwritten).
"""
from ..ops import activation as A
from ..tensor import empty
from . import init
from .module import Module
from .parameter import Parameter

__all__ = ["ReLU", "ReLU6", "LeakyReLU", "PReLU", "RReLU", "ELU", "SELU", "CELU", "GELU", "SiLU", "Mish",
           "Hardtanh", "Hardswish", "Hardsigmoid", "Sigmoid", "LogSigmoid", "Tanh", "Softplus",
           "Softsign", "Tanhshrink", "Threshold", "Hardshrink", "Softshrink", "GLU",
           "Softmax", "Softmin", "LogSoftmax", "Softmax2d"]


class _Elementwise(Module):
    """An activation with no arguments: forward is ``_fn(input)``."""

    _fn = None

    def forward(self, input):
        return type(self)._fn(input)


class _Inplace(Module):
    """An activation with only ``inplace``: forward is ``_fn(input, inplace)``."""

    _fn = None

    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = inplace

    def forward(self, input):
        return type(self)._fn(input, self.inplace)

    def extra_repr(self):
        return "inplace=True" if self.inplace else ""


def _inplace_str(module):
    return ", inplace=True" if module.inplace else ""


# ---------------------------------------------------------------- piecewise linear
class ReLU(_Inplace):
    """max(0, x)."""
    _fn = A.relu


class LeakyReLU(Module):
    """x for x >= 0, negative_slope * x otherwise."""

    def __init__(self, negative_slope=0.01, inplace=False):
        super().__init__()
        self.negative_slope, self.inplace = negative_slope, inplace

    def forward(self, input):
        return A.leaky_relu(input, self.negative_slope, self.inplace)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}{_inplace_str(self)}"


class PReLU(Module):
    """Leaky ReLU whose negative slope is learned: ``weight`` holds ``num_parameters``
    slopes (1, shared, or one per channel, dim 1 of the input), all starting at ``init``."""

    def __init__(self, num_parameters=1, init=0.25, device=None, dtype=None):
        super().__init__()
        self.num_parameters, self.init = num_parameters, init
        self.weight = Parameter(empty(num_parameters, dtype=dtype, device=device))
        self.reset_parameters()

    def reset_parameters(self):
        init.constant_(self.weight, self.init)

    def forward(self, input):
        return A.prelu(input, self.weight)

    def extra_repr(self):
        return f"num_parameters={self.num_parameters}"


class RReLU(Module):
    """Leaky ReLU with a random slope U(lower, upper) per element in training, the mean
    slope in evaluation (reads ``self.training``)."""

    def __init__(self, lower=1.0 / 8, upper=1.0 / 3, inplace=False):
        super().__init__()
        self.lower, self.upper, self.inplace = lower, upper, inplace

    def forward(self, input):
        return A.rrelu(input, self.lower, self.upper, self.training, self.inplace)

    def extra_repr(self):
        return f"lower={self.lower}, upper={self.upper}{_inplace_str(self)}"


class Hardtanh(Module):
    """clip(x, min_val, max_val) (``min_value``/``max_value``: PyTorch's deprecated names)."""

    def __init__(self, min_val=-1.0, max_val=1.0, inplace=False, min_value=None, max_value=None):
        super().__init__()
        self.min_val = min_val if min_value is None else min_value
        self.max_val = max_val if max_value is None else max_value
        self.inplace = inplace
        if self.max_val <= self.min_val:
            raise ValueError(f"Hardtanh: max_val ({self.max_val}) must be greater than min_val ({self.min_val})")

    def forward(self, input):
        return A.hardtanh(input, self.min_val, self.max_val, self.inplace)

    def extra_repr(self):
        return f"min_val={self.min_val}, max_val={self.max_val}{_inplace_str(self)}"


class ReLU6(Hardtanh):
    """min(max(0, x), 6): Hardtanh(0, 6), as in MobileNet."""

    def __init__(self, inplace=False):
        super().__init__(0.0, 6.0, inplace)

    def extra_repr(self):
        return "inplace=True" if self.inplace else ""


class Threshold(Module):
    """x where x > threshold, else value."""

    def __init__(self, threshold, value, inplace=False):
        super().__init__()
        self.threshold, self.value, self.inplace = threshold, value, inplace

    def forward(self, input):
        return A.threshold(input, self.threshold, self.value, self.inplace)

    def extra_repr(self):
        return f"threshold={self.threshold}, value={self.value}{_inplace_str(self)}"


class Hardshrink(Module):
    """x where |x| > lambd, else 0."""

    def __init__(self, lambd=0.5):
        super().__init__()
        self.lambd = lambd

    def forward(self, input):
        return A.hardshrink(input, self.lambd)

    def extra_repr(self):
        return f"{self.lambd}"


class Softshrink(Hardshrink):
    """x - lambd sign(x) where |x| > lambd, else 0."""

    def forward(self, input):
        return A.softshrink(input, self.lambd)


# ---------------------------------------------------------------- smooth
class ELU(Module):
    """x for x > 0, alpha (exp(x) - 1) otherwise."""

    _fn = A.elu

    def __init__(self, alpha=1.0, inplace=False):
        super().__init__()
        self.alpha, self.inplace = alpha, inplace

    def forward(self, input):
        return type(self)._fn(input, self.alpha, self.inplace)

    def extra_repr(self):
        return f"alpha={self.alpha}{_inplace_str(self)}"


class CELU(ELU):
    """x for x > 0, alpha (exp(x / alpha) - 1) otherwise."""
    _fn = A.celu


class SELU(_Inplace):
    """scale * ELU(x, alpha) with the self-normalising constants."""
    _fn = A.selu


class GELU(Module):
    """x * Phi(x) (``approximate='tanh'``: the tanh approximation)."""

    def __init__(self, approximate="none"):
        super().__init__()
        self.approximate = approximate

    def forward(self, input):
        return A.gelu(input, approximate=self.approximate)

    def extra_repr(self):
        return f"approximate={self.approximate!r}"


class SiLU(_Inplace):
    """x * sigmoid(x) (swish)."""
    _fn = A.silu


class Mish(_Inplace):
    """x * tanh(softplus(x))."""
    _fn = A.mish


class Hardswish(_Inplace):
    """x * relu6(x + 3) / 6 (MobileNetV3)."""
    _fn = A.hardswish

    def extra_repr(self):     # PyTorch prints no inplace here
        return ""


class Hardsigmoid(Hardswish):
    """relu6(x + 3) / 6."""
    _fn = A.hardsigmoid


class Sigmoid(_Elementwise):
    """1 / (1 + exp(-x))."""
    _fn = A.sigmoid


class LogSigmoid(_Elementwise):
    """log(sigmoid(x)), computed stably."""
    _fn = A.logsigmoid


class Tanh(_Elementwise):
    _fn = A.tanh


class Softsign(_Elementwise):
    """x / (1 + |x|)."""
    _fn = A.softsign


class Tanhshrink(_Elementwise):
    """x - tanh(x)."""
    _fn = A.tanhshrink


class Softplus(Module):
    """log(1 + exp(beta x)) / beta, linear above ``threshold``."""

    def __init__(self, beta=1.0, threshold=20.0):
        super().__init__()
        self.beta, self.threshold = beta, threshold

    def forward(self, input):
        return A.softplus(input, self.beta, self.threshold)

    def extra_repr(self):
        return f"beta={self.beta}, threshold={self.threshold}"


class GLU(Module):
    """a * sigmoid(b) for the halves a, b of the input along ``dim``."""

    def __init__(self, dim=-1):
        super().__init__()
        self.dim = dim

    def forward(self, input):
        return A.glu(input, self.dim)

    def extra_repr(self):
        return f"dim={self.dim}"


# ---------------------------------------------------------------- along a dimension
def _implicit_softmax_dim(ndim):
    # PyTorch's legacy rule when dim is not given: 0 for 0-, 1- and 3-d inputs, else 1.
    return 0 if ndim in (0, 1, 3) else 1


class Softmax(Module):
    """exp(x_i) / sum_j exp(x_j) along ``dim``."""

    _fn = A.softmax

    def __init__(self, dim=None):
        super().__init__()
        self.dim = dim

    def forward(self, input):
        dim = self.dim if self.dim is not None else _implicit_softmax_dim(input.ndim)
        return type(self)._fn(input, dim)

    def extra_repr(self):
        return f"dim={self.dim}"


class Softmin(Softmax):
    """softmax(-x) along ``dim``."""
    _fn = A.softmin


class LogSoftmax(Softmax):
    """log(softmax(x)) along ``dim``, computed stably."""
    _fn = A.log_softmax


class Softmax2d(Module):
    """Softmax over the channels at every pixel of (N, C, H, W) or (C, H, W)."""

    def forward(self, input):
        if input.ndim not in (3, 4):
            raise ValueError(f"Softmax2d: expected a 3-D or 4-D input, got shape {input.shape}")
        return A.softmax(input, -3)
