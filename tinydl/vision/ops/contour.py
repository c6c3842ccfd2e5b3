"""Circular convolution over closed contours (Deep Snake, Peng et al. 2020).

A contour of V vertices is a *closed* sequence: vertex V-1 is the neighbour of
vertex 0. Deep Snake keeps one feature vector per vertex, (N, C, V), and
convolves along the vertex axis; to treat the ends like every other vertex it
pads *circularly* -- the last vertices in front, the first ones behind -- so
a kernel centred on vertex 0 sees vertices V-4 .. V-1, 0 .. 4::

    x = [x0 x1 ... x_{V-1}]  --pad circular-->  [x_{V-4} .. x_{V-1} | x0 .. x_{V-1} | x0 .. x3]
                             --conv1d, no pad-->  V outputs, one per vertex

There is no new algorithm here: the op is ``F.pad(mode='circular')`` (a gather,
whose adjoint adds the gradients of the copies back onto the vertices they were
copied from) followed by ``F.conv1d`` (im2col + GEMM). Its gradient is theirs,
chained. A vertex's output depends on the vertices within
dilation * (kernel_size - 1) / 2 of it *along the ring*, whatever their index.

The output has the input's length V (PyTorch's ``nn.Conv1d(..., padding=p,
padding_mode='circular')`` with p = dilation * (k - 1) / 2 for an odd k); an
even kernel pads one vertex more behind than in front, like padding='same'.
"""
import numbers

from ...nn import Conv1d
from ...nn import functional as F

__all__ = ["circular_conv1d", "CircConv1d"]


def _circular_padding(kernel_size, dilation):
    """(before, after): the dilated kernel's reach, split so that the output keeps V vertices."""
    total = dilation * (kernel_size - 1)
    return total // 2, total - total // 2


def circular_conv1d(input, weight, bias=None, dilation=1):
    """Convolution along a closed contour: input (N, C, V) or (C, V) vertex features,
    weight (C_out, C, k), bias (C_out,) or None -> (N, C_out, V).

    Equal to ``torch.nn.functional.conv1d(F.pad(x, (p0, p1), mode='circular'), w, b,
    dilation=d)`` with p0 + p1 = d * (k - 1); stride 1 (one output per vertex).
    """
    op = "circular_conv1d"
    if not isinstance(dilation, numbers.Integral) or isinstance(dilation, bool) or dilation < 1:
        raise ValueError(f"{op}: dilation must be a positive int, got {dilation!r}")
    if weight.ndim != 3:
        raise RuntimeError(f"{op}: expected a 3-D weight (C_out, C_in, k), got shape {tuple(weight.shape)}")
    if input.ndim not in (2, 3):
        raise RuntimeError(f"{op}: expected (N, C, V) or (C, V) vertex features, got shape {input.shape}")
    if input.shape[-2] != weight.shape[1]:
        raise RuntimeError(f"{op}: input of shape {input.shape} has {input.shape[-2]} channels but the "
                           f"weight of shape {tuple(weight.shape)} expects {weight.shape[1]}")
    before, after = _circular_padding(weight.shape[2], int(dilation))
    vertices = input.shape[-1]
    if max(before, after) > vertices:
        raise RuntimeError(f"{op}: a kernel of size {weight.shape[2]} with dilation {dilation} reaches "
                           f"{max(before, after)} vertices to each side, more than the {vertices} "
                           f"vertices of the contour (input shape {input.shape}): it would wrap twice")
    if before == after == 0:      # a 1-vertex reach: nothing to wrap
        return F.conv1d(input, weight, bias)
    return F.conv1d(F.pad(input, (before, after), mode="circular"), weight, bias, dilation=int(dilation))


class CircConv1d(Conv1d):
    """Deep Snake's "CircConv": a Conv1d over closed contours (N, C_in, V) -> (N, C_out, V).

    Holds the weight (C_out, C_in, kernel_size) and bias like ``nn.Conv1d`` (same
    initialisation); forward is ``circular_conv1d``. The paper uses
    kernel_size=9 (4 neighbours on each side).
    """

    def __init__(self, in_channels, out_channels, kernel_size=9, dilation=1, bias=True, device=None, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, dilation=dilation, bias=bias,
                         device=device, dtype=dtype)

    def forward(self, input):
        self._check_input(input)
        return circular_conv1d(input, self.weight, self.bias, self.dilation[0])

    def extra_repr(self):
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size[0]}"
        if self.dilation[0] != 1:
            s += f", dilation={self.dilation[0]}"
        if self.bias is None:
            s += ", bias=False"
        return s
