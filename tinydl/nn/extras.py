"""Small ``torch.nn`` layers: ChannelShuffle, LPPool1d / LPPool2d, Bilinear, RMSNorm, and the
Lazy modules (LazyLinear, LazyConv1d/2d, LazyConvTranspose1d/2d, LazyBatchNorm1d/2d,
LazyInstanceNorm1d/2d) whose input size is read off their first input.

Thin Modules around ``tinydl.ops.extras`` (and, for the Lazy ones, the eager classes
themselves), with PyTorch's constructor arguments, attribute names, initialisation and
``repr``, so a PyTorch state_dict loads as is.
"""
import math
import numbers

from ..autograd import no_grad
from ..tensor import Tensor, empty, ones
from . import functional as F, init
from .conv import Conv1d, Conv2d, ConvTranspose1d, ConvTranspose2d
from .layers import Linear
from .module import Module
from .normalization import BatchNorm1d, BatchNorm2d, InstanceNorm1d, InstanceNorm2d
from .parameter import Parameter

__all__ = ["ChannelShuffle", "LPPool1d", "LPPool2d", "LPPool3d", "Bilinear", "RMSNorm", "LazyLinear", "LazyConv1d",
           "LazyConv2d", "LazyConvTranspose1d", "LazyConvTranspose2d", "LazyBatchNorm1d", "LazyBatchNorm2d",
           "LazyInstanceNorm1d", "LazyInstanceNorm2d"]


class ChannelShuffle(Module):
    """ShuffleNet's channel shuffle (``F.channel_shuffle``): the (N, C, *) input's channels in
    ``groups`` groups are interleaved, channel k * (C/g) + j going to j * g + k."""

    def __init__(self, groups):
        super().__init__()
        self.groups = groups

    def forward(self, input):
        return F.channel_shuffle(input, self.groups)

    def extra_repr(self):
        return f"groups={self.groups}"


class _LPPoolNd(Module):
    """Power-average pooling: (sum over each window of x^p)^(1/p) (``F.lp_pool1d`` / ``2d`` / ``3d``)."""

    def __init__(self, norm_type, kernel_size, stride=None, ceil_mode=False):
        super().__init__()
        self.norm_type = norm_type
        self.kernel_size = kernel_size
        self.stride = stride
        self.ceil_mode = ceil_mode

    def extra_repr(self):
        return (f"norm_type={self.norm_type}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"ceil_mode={self.ceil_mode}")


class LPPool1d(_LPPoolNd):
    def forward(self, input):
        return F.lp_pool1d(input, self.norm_type, self.kernel_size, self.stride, self.ceil_mode)


class LPPool2d(_LPPoolNd):
    def forward(self, input):
        return F.lp_pool2d(input, self.norm_type, self.kernel_size, self.stride, self.ceil_mode)


class LPPool3d(_LPPoolNd):
    def forward(self, input):
        return F.lp_pool3d(input, self.norm_type, self.kernel_size, self.stride, self.ceil_mode)


class Bilinear(Module):
    """y = x1^T A x2 + b (``F.bilinear``): weight A (out_features, in1_features, in2_features),
    bias b (out_features,), both initialised as PyTorch's, U(-1/sqrt(in1), 1/sqrt(in1))."""

    def __init__(self, in1_features, in2_features, out_features, bias=True, device=None, dtype=None):
        super().__init__()
        self.in1_features, self.in2_features, self.out_features = in1_features, in2_features, out_features
        self.weight = Parameter(empty(out_features, in1_features, in2_features, dtype=dtype, device=device))
        if bias:
            self.bias = Parameter(empty(out_features, dtype=dtype, device=device))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        bound = 1 / math.sqrt(self.weight.shape[1]) if self.weight.shape[1] else 0.0
        init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            init.uniform_(self.bias, -bound, bound)

    def forward(self, input1, input2):
        return F.bilinear(input1, input2, self.weight, self.bias)

    def extra_repr(self):
        return (f"in1_features={self.in1_features}, in2_features={self.in2_features}, "
                f"out_features={self.out_features}, bias={self.bias is not None}")


class RMSNorm(Module):
    """Root-mean-square normalisation over the last ``len(normalized_shape)`` dims (``F.rms_norm``):
    y = x / sqrt(mean(x^2) + eps) * weight, ``weight`` (ones) of ``normalized_shape`` when
    ``elementwise_affine``; ``eps=None``: the input dtype's machine epsilon."""

    def __init__(self, normalized_shape, eps=None, elementwise_affine=True, device=None, dtype=None):
        super().__init__()
        if isinstance(normalized_shape, numbers.Integral):
            normalized_shape = (normalized_shape,)
        self.normalized_shape = tuple(int(s) for s in normalized_shape)
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        self.register_parameter("weight", Parameter(ones(*self.normalized_shape, dtype=dtype, device=device))
                                if elementwise_affine else None)

    def reset_parameters(self):
        if self.weight is not None:
            with no_grad():
                self.weight.fill_(1)

    def forward(self, input):
        return F.rms_norm(input, self.normalized_shape, self.weight, self.eps)

    def extra_repr(self):
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"


# ---------------------------------------------------------------- lazy modules
class _LazyModule:
    """What the Lazy modules share (PyTorch's LazyModuleMixin): built as the eager class with a
    size of 0 (in_features, in_channels or num_features), so the tensors that size shapes are
    empty placeholders. The first call reads the size off its input (``_lazy_size``), gives
    those Tensor objects arrays of their real shapes (in place: an optimizer built before
    keeps them), turns the module into ``cls_to_become`` and draws its parameters as that class
    does. ``load_state_dict`` before that call reads the size off the checkpoint's shapes
    instead (``_size_in``), as PyTorch's; ``state_dict`` refuses: there is nothing to save."""

    cls_to_become = None

    def has_uninitialized_params(self):
        return True             # (once materialised the module is of the eager class)

    def reset_parameters(self):
        """Nothing to draw yet: the first input fixes the shapes, then the eager class draws."""

    def _refuse(self, what):
        raise RuntimeError(f"{type(self).__name__}: its parameters are not initialised yet (their shape is fixed "
                           f"by the first input): run one batch through the module before {what}")

    def state_dict(self, *args, **kwargs):
        self._refuse("state_dict()")

    def _load_from_state_dict(self, state_dict, prefix, *rest):
        size = self._size_in({k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)})
        if size is None:
            self._refuse("load_state_dict() of a state dict without its weights")
        self._materialize(int(size))
        self._load_from_state_dict(state_dict, prefix, *rest)       # now the eager class's

    def _check_rank(self, input, ranks):
        """The input's rank must be one the eager class takes (``ranks``; None: 1 or more)."""
        if not isinstance(input, Tensor):
            raise TypeError(f"{type(self).__name__}: input must be a Tensor, got {type(input).__name__}")
        if input.ndim not in (ranks or range(1, input.ndim + 1)):
            wanted = "a " + " or ".join(f"{r}-D" for r in ranks) if ranks else "an at least 1-D"
            raise RuntimeError(f"{type(self).__name__}: expected {wanted} input, got shape {tuple(input.shape)}")

    def __call__(self, *args, **kwargs):
        self._materialize(int(self._lazy_size(args[0] if args else kwargs.get("input"))))
        return self(*args, **kwargs)

    def _materialize(self, size):
        """The tensors get their real shapes for ``size``; the module becomes the eager class."""
        for name, shape in self._lazy_shapes(size).items():
            t = getattr(self, name)
            if t is not None:
                t.array = t._xp.empty(shape, dtype=t.dtype)     # on the placeholder's device, in its dtype
        self.__class__ = self.cls_to_become
        self.reset_parameters()


class LazyLinear(_LazyModule, Linear):
    """Linear whose in_features is the last dim of its first input."""
    cls_to_become = Linear

    def __init__(self, out_features, bias=True, device=None, dtype=None):
        super().__init__(0, out_features, bias, device, dtype)

    def _lazy_size(self, input):
        self._check_rank(input, None)
        self.in_features = input.shape[-1]
        return self.in_features

    def _lazy_shapes(self, size):
        return {"weight": (self.out_features, size)}

    def _size_in(self, entries):
        if "weight" in entries:
            self.in_features = tuple(entries["weight"].shape)[-1]
            return self.in_features


class _LazyConv(_LazyModule):
    """A convolution whose in_channels is its first input's channel count (dim -1 - spatial dims)."""

    def _lazy_size(self, input):
        self._check_rank(input, (self._dims + 1, self._dims + 2))
        self.in_channels = input.shape[-self._dims - 1]
        if self.in_channels % self.groups:
            raise ValueError(f"{type(self).__name__}: in_channels ({self.in_channels}, from the input of shape "
                             f"{tuple(input.shape)}) must be divisible by groups ({self.groups})")
        return self.in_channels

    def _size_in(self, entries):
        if "weight" in entries:
            shape = tuple(entries["weight"].shape)
            self.in_channels = shape[0] if self.transposed else shape[1] * self.groups
            return self.in_channels

    def _lazy_shapes(self, size):
        if self.transposed:
            return {"weight": (size, self.out_channels // self.groups) + self.kernel_size}
        return {"weight": (self.out_channels, size // self.groups) + self.kernel_size}


class _LazyConvForward(_LazyConv):
    def __init__(self, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1, bias=True,
                 padding_mode="zeros", device=None, dtype=None):
        super().__init__(0, out_channels, kernel_size, stride, padding, dilation, groups, bias, padding_mode,
                         device, dtype)


class _LazyConvTranspose(_LazyConv):
    def __init__(self, out_channels, kernel_size, stride=1, padding=0, output_padding=0, groups=1, bias=True,
                 dilation=1, padding_mode="zeros", device=None, dtype=None):
        super().__init__(0, out_channels, kernel_size, stride, padding, output_padding, groups, bias, dilation,
                         padding_mode, device, dtype)


class LazyConv1d(_LazyConvForward, Conv1d):
    cls_to_become = Conv1d


class LazyConv2d(_LazyConvForward, Conv2d):
    cls_to_become = Conv2d


class LazyConvTranspose1d(_LazyConvTranspose, ConvTranspose1d):
    cls_to_become = ConvTranspose1d


class LazyConvTranspose2d(_LazyConvTranspose, ConvTranspose2d):
    cls_to_become = ConvTranspose2d


class _LazyNorm(_LazyModule):
    """Batch / instance norm whose num_features is the input's channel count. (PyTorch's defaults,
    affine and track_running_stats True, also for the instance norms, unlike the eager ones.)"""

    def __init__(self, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True, device=None, dtype=None, *,
                 bias=True):
        super().__init__(0, eps, momentum, affine, track_running_stats, device, dtype, bias=bias)

    def _lazy_size(self, input):
        if self._expected_dims:                     # batch norm: (N, C, *)
            self._check_rank(input, self._expected_dims)
            self.num_features = input.shape[1]
        else:                                       # instance norm: (C, *) or (N, C, *)
            self._check_rank(input, (self._no_batch_dims, self._no_batch_dims + 1))
            self.num_features = input.shape[-self._no_batch_dims]
        return self.num_features

    def _lazy_shapes(self, size):
        return {name: (size,) for name in ("weight", "bias", "running_mean", "running_var")}

    def _size_in(self, entries):
        for name in ("weight", "bias", "running_mean", "running_var"):
            if name in entries:
                self.num_features = tuple(entries[name].shape)[0]
                return self.num_features


class LazyBatchNorm1d(_LazyNorm, BatchNorm1d):
    cls_to_become = BatchNorm1d


class LazyBatchNorm2d(_LazyNorm, BatchNorm2d):
    cls_to_become = BatchNorm2d


class LazyInstanceNorm1d(_LazyNorm, InstanceNorm1d):
    cls_to_become = InstanceNorm1d


class LazyInstanceNorm2d(_LazyNorm, InstanceNorm2d):
    cls_to_become = InstanceNorm2d
