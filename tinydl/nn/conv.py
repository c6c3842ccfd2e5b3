"""Convolution layers: Conv1d, Conv2d, ConvTranspose1d, ConvTranspose2d.

Thin Modules around ``F.conv*`` (forward and backward live in
``tinydl/ops/conv.py``) holding the weight and bias, with PyTorch's
constructor arguments, attribute names, initialisation and ``repr``::

    conv = nn.Conv2d(3, 16, kernel_size=5, padding=2)
    conv.weight.shape        # (16, 3, 5, 5)  (out, in/groups, kh, kw)
    nn.ConvTranspose2d(16, 3, 4, stride=2).weight.shape   # (16, 3, 4, 4)  (in, out/groups, kh, kw)

Initialisation (PyTorch's ``reset_parameters``): weight ~ kaiming_uniform(a=sqrt(5)),
i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in = weight.shape[1] * kh * kw,
and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)).

``padding_mode`` other than 'zeros' pads the input explicitly with ``F.pad``
('reflect', 'replicate', 'circular') and then convolves without padding.
"""

from ..args import ntuple
from ..tensor import empty
from . import functional as F, init
from .module import Module
from .parameter import Parameter

__all__ = ["Conv1d", "Conv2d", "ConvTranspose1d", "ConvTranspose2d"]

_PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


class _ConvNd(Module):
    """What every convolution layer shares: arguments, checks, parameters, init, repr."""

    _dims = 2

    def __init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation, transposed,
                 output_padding, groups, bias, padding_mode, device=None, dtype=None):
        super().__init__()
        name, n = type(self).__name__, self._dims
        if groups <= 0:
            raise ValueError(f"{name}: groups must be a positive integer, got {groups}")
        if in_channels % groups != 0:
            raise ValueError(f"{name}: in_channels ({in_channels}) must be divisible by groups ({groups})")
        if out_channels % groups != 0:
            raise ValueError(f"{name}: out_channels ({out_channels}) must be divisible by groups ({groups})")
        if padding_mode not in _PADDING_MODES:
            raise ValueError(f"{name}: padding_mode must be one of {_PADDING_MODES}, got {padding_mode!r}")
        kernel_size, stride, dilation = (ntuple(v, n, arg, name) for v, arg in
                                          ((kernel_size, "kernel_size"), (stride, "stride"), (dilation, "dilation")))
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(f"{name}: invalid padding string {padding!r}, should be one of {{'valid', 'same'}}")
            if padding == "same" and any(s != 1 for s in stride):
                raise ValueError(f"{name}: padding='same' is not supported for strided convolutions")
        else:
            padding = ntuple(padding, n, "padding", name)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        self.transposed = transposed
        self.output_padding = ntuple(output_padding, n, "output_padding", name)
        self.groups = groups
        self.padding_mode = padding_mode
        # F.pad's amounts for the non-zero padding modes, last axis first
        # (left, right, top, bottom), as PyTorch's _reversed_padding_repeated_twice.
        if padding == "valid":
            padding = (0,) * n
        if padding == "same":
            pads = []
            for d, k in zip(reversed(dilation), reversed(kernel_size)):
                total = d * (k - 1)
                pads += [total // 2, total - total // 2]
            self._reversed_padding_repeated_twice = pads
        else:
            self._reversed_padding_repeated_twice = [p for p in reversed(padding) for _ in range(2)]
        if transposed:
            shape = (in_channels, out_channels // groups) + kernel_size
        else:
            shape = (out_channels, in_channels // groups) + kernel_size
        self.weight = Parameter(empty(*shape, dtype=dtype, device=device))
        if bias:
            self.bias = Parameter(empty(out_channels, dtype=dtype, device=device))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        init.default_layer_init_(self.weight, self.bias)

    def extra_repr(self):
        n = self._dims
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0,) * n:
            s += f", padding={self.padding}"
        if self.dilation != (1,) * n:
            s += f", dilation={self.dilation}"
        if self.output_padding != (0,) * n:
            s += f", output_padding={self.output_padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        return s

    def _check_input(self, input):
        """A clear error naming this layer for a wrong rank or channel count."""
        n = self._dims
        if input.ndim not in (n + 1, n + 2):
            raise RuntimeError(f"{self!r}: expected a {n + 1}-D (unbatched) or {n + 2}-D (batched) input, "
                               f"got shape {input.shape}")
        channels = input.shape[-n - 1]
        if channels != self.in_channels:
            raise RuntimeError(f"{self!r}: expected input with {self.in_channels} channels, got shape {input.shape}")


class _Conv(_ConvNd):
    """Forward of Conv1d / Conv2d: ``F.conv{1,2}d``, after ``F.pad`` for non-zero padding modes."""

    def _conv_forward(self, input, weight, bias):
        conv = F.conv2d if self._dims == 2 else F.conv1d
        if self.padding_mode != "zeros":
            input = F.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            return conv(input, weight, bias, self.stride, 0, self.dilation, self.groups)
        return conv(input, weight, bias, self.stride, self.padding, self.dilation, self.groups)

    def forward(self, input):
        self._check_input(input)
        return self._conv_forward(input, self.weight, self.bias)


class Conv2d(_Conv):
    """2-D convolution over (N, C_in, H, W) (or unbatched (C_in, H, W)) inputs,
    as ``torch.nn.Conv2d``."""

    _dims = 2

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, padding_mode="zeros", device=None, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, False, 0, groups,
                         bias, padding_mode, device, dtype)


class Conv1d(_Conv):
    """1-D convolution over (N, C_in, L) (or (C_in, L)) inputs, as ``torch.nn.Conv1d``
    (e.g. Deep Snake's circular convolution: ``padding_mode='circular'``)."""

    _dims = 1

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, padding_mode="zeros", device=None, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, False, 0, groups,
                         bias, padding_mode, device, dtype)


class _ConvTransposeNd(_ConvNd):
    def __init__(self, in_channels, out_channels, kernel_size, stride, padding, output_padding, groups, bias,
                 dilation, padding_mode, device, dtype):
        if padding_mode != "zeros":
            raise ValueError(f'Only "zeros" padding mode is supported for {type(self).__name__}')
        if isinstance(padding, str):
            raise ValueError(f"{type(self).__name__}: padding must be an int or a tuple, got {padding!r}")
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, True,
                         output_padding, groups, bias, padding_mode, device, dtype)

    def _output_padding(self, input, output_size):
        """The output_padding that gives ``output_size`` (PyTorch's rule): any size
        from the smallest, (H-1)*s - 2p + d*(k-1) + 1, to that plus s - 1."""
        if output_size is None:
            return self.output_padding
        n = self._dims
        output_size = tuple(int(v) for v in output_size)
        if len(output_size) in (n + 1, n + 2):    # a full shape: keep the spatial sizes
            output_size = output_size[-n:]
        if len(output_size) != n:
            raise ValueError(f"{self!r}: output_size must have {n} or {n + 2} elements, got {output_size}")
        pads = []
        for a in range(n):
            smallest = ((input.shape[-n + a] - 1) * self.stride[a] - 2 * self.padding[a]
                        + self.dilation[a] * (self.kernel_size[a] - 1) + 1)
            largest = smallest + self.stride[a] - 1
            if not smallest <= output_size[a] <= largest:
                raise ValueError(f"{self!r}: requested an output size of {output_size}, but valid sizes range "
                                 f"from {smallest} to {largest} (for an input of shape {input.shape}) along axis {a}")
            pads.append(output_size[a] - smallest)
        return tuple(pads)

    def forward(self, input, output_size=None):
        self._check_input(input)
        output_padding = self._output_padding(input, output_size)
        conv_transpose = getattr(F, f"conv_transpose{self._dims}d")
        return conv_transpose(input, self.weight, self.bias, self.stride, self.padding, output_padding,
                              self.groups, self.dilation)


class ConvTranspose2d(_ConvTransposeNd):
    """2-D transposed convolution, as ``torch.nn.ConvTranspose2d``; weight (in, out/groups, kh, kw).
    ``forward(input, output_size=None)``: ``output_size`` picks the output_padding."""

    _dims = 2

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0, groups=1,
                 bias=True, dilation=1, padding_mode="zeros", device=None, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, output_padding, groups, bias,
                         dilation, padding_mode, device, dtype)


class ConvTranspose1d(_ConvTransposeNd):
    """1-D transposed convolution, as ``torch.nn.ConvTranspose1d``."""

    _dims = 1

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0, groups=1,
                 bias=True, dilation=1, padding_mode="zeros", device=None, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, output_padding, groups, bias,
                         dilation, padding_mode, device, dtype)

