"""Volumetric (3-D) layers: Conv3d, ConvTranspose3d, the 3-D pools and unpooling, and the
3-D padding layers, as in ``torch.nn``.

Thin Modules around ``F.conv3d``, ``F.max_pool3d``, ... (tinydl/ops/volumetric.py) and
``F.pad``; they share the 2-D layers' machinery (tinydl/nn/conv.py, pooling.py and
resample.py), so arguments, attribute names, initialisation (kaiming_uniform with
a=sqrt(5), bias from U(-1/sqrt(fan_in), 1/sqrt(fan_in))), padding modes and reprs are
PyTorch's::

    conv = nn.Conv3d(1, 8, kernel_size=3, padding=1)
    conv.weight.shape        # (8, 1, 3, 3, 3)  (out, in/groups, kd, kh, kw)
    pool = nn.MaxPool3d(2, return_indices=True)
    y, switches = pool(conv(x))          # x (N, 1, D, H, W)
"""
from . import functional as F
from .conv import _Conv, _ConvTransposeNd
from .pooling import _AdaptiveAvgPoolNd, _AdaptiveMaxPoolNd, _AvgPoolNd, _MaxPoolNd, _MaxUnpoolNd, _check_rank
from .resample import _PadNd

__all__ = ["Conv3d", "ConvTranspose3d", "MaxPool3d", "AvgPool3d", "AdaptiveAvgPool3d", "AdaptiveMaxPool3d",
           "MaxUnpool3d", "ConstantPad3d", "ZeroPad3d", "ReflectionPad3d", "ReplicationPad3d", "CircularPad3d"]


# ---------------------------------------------------------------- convolution
class Conv3d(_Conv):
    """3-D convolution over (N, C_in, D, H, W) (or unbatched (C_in, D, H, W)) inputs,
    as ``torch.nn.Conv3d``; ``padding_mode`` other than 'zeros' pads with ``F.pad`` first."""

    _dims = 3

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, padding_mode="zeros", device=None, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, False, 0, groups,
                         bias, padding_mode, device, dtype)

    def _conv_forward(self, input, weight, bias):
        if self.padding_mode != "zeros":
            input = F.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            return F.conv3d(input, weight, bias, self.stride, 0, self.dilation, self.groups)
        return F.conv3d(input, weight, bias, self.stride, self.padding, self.dilation, self.groups)


class ConvTranspose3d(_ConvTransposeNd):
    """3-D transposed convolution, as ``torch.nn.ConvTranspose3d``; weight
    (in, out/groups, kd, kh, kw). ``forward(input, output_size=None)``: ``output_size``
    picks the output_padding."""

    _dims = 3

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0, groups=1,
                 bias=True, dilation=1, padding_mode="zeros", device=None, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, output_padding, groups, bias,
                         dilation, padding_mode, device, dtype)


# ---------------------------------------------------------------- pooling
class MaxPool3d(_MaxPoolNd):
    """Max over kernel_size windows of each channel's volume (``return_indices`` also gives
    the flat per-volume positions of the maxima, for MaxUnpool3d)."""

    _dims = 3

    def forward(self, input):
        _check_rank(self, input, 3)
        return F.max_pool3d(input, self.kernel_size, self.stride, self.padding, self.dilation,
                            ceil_mode=self.ceil_mode, return_indices=self.return_indices)


class AvgPool3d(_AvgPoolNd):
    """Mean over kernel_size windows of each channel's volume (padding counts as zeros unless
    ``count_include_pad=False``; ``divisor_override`` replaces the window size)."""

    def forward(self, input):
        _check_rank(self, input, 3)
        return F.avg_pool3d(input, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                            self.count_include_pad, self.divisor_override)


class AdaptiveAvgPool3d(_AdaptiveAvgPoolNd):
    """Average pooling to a fixed output size (D_out, H_out, W_out), whatever the input size
    (None keeps that axis); ``AdaptiveAvgPool3d(1)`` is global average pooling."""

    def forward(self, input):
        _check_rank(self, input, 3)
        return F.adaptive_avg_pool3d(input, self.output_size)


class AdaptiveMaxPool3d(_AdaptiveMaxPoolNd):
    """Max pooling to a fixed output size (D_out, H_out, W_out)."""

    def forward(self, input):
        _check_rank(self, input, 3)
        return F.adaptive_max_pool3d(input, self.output_size, self.return_indices)


class MaxUnpool3d(_MaxUnpoolNd):
    """Puts each value back at the cell its max-pooling index names, zeros elsewhere.
    ``forward(input, indices, output_size=None)``."""

    _dims = 3

    def forward(self, input, indices, output_size=None):
        _check_rank(self, input, 3)
        return F.max_unpool3d(input, indices, self.kernel_size, self.stride, self.padding, output_size)


# ---------------------------------------------------------------- padding
# F.pad takes six amounts (left, right, top, bottom, front, back) on a 4-D or 5-D input in
# every mode, so these are the 2-D padding layers with n_dims = 3.
class ConstantPad3d(_PadNd):
    n_dims = 3

    def __init__(self, padding, value):
        super().__init__(padding, value)


class ZeroPad3d(ConstantPad3d):
    def __init__(self, padding):
        super().__init__(padding, 0.0)

    def extra_repr(self):
        return f"{self.padding}"


class ReflectionPad3d(_PadNd):
    mode, n_dims = "reflect", 3


class ReplicationPad3d(_PadNd):
    mode, n_dims = "replicate", 3


class CircularPad3d(_PadNd):
    mode, n_dims = "circular", 3
