"""Basic layers: Identity, Linear, dropout and flattening (activations: ``activation.py``).

Each layer is a thin Module around a function of ``tinydl.nn.functional``
(where forward and backward live). Attribute names and ``extra_repr`` follow
PyTorch, so ``print(model)`` and ``state_dict()`` keys look the same.
"""

from ..tensor import empty
from . import functional as F, init
from .module import Module
from .parameter import Parameter

__all__ = ["Identity", "Linear", "Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout",
           "FeatureAlphaDropout", "Flatten", "Unflatten"]


class Identity(Module):
    """Returns its input unchanged (a placeholder, e.g. to cut off a classifier head).
    Any constructor arguments are accepted and ignored, as in PyTorch."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, input):
        return input


class Linear(Module):
    """y = x W^T + b, with W of shape (out_features, in_features) and b of (out_features,).

    Initialised as PyTorch: W by ``kaiming_uniform_(a=sqrt(5))``, i.e. U(-1/sqrt(in), 1/sqrt(in)),
    and b by U(-1/sqrt(in), 1/sqrt(in)).
    """

    def __init__(self, in_features, out_features, bias=True, device=None, dtype=None):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = Parameter(empty(out_features, in_features, dtype=dtype, device=device))
        if bias:
            self.bias = Parameter(empty(out_features, dtype=dtype, device=device))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        init.default_layer_init_(self.weight, self.bias)

    def forward(self, input):
        return F.linear(input, self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


# ---------------------------------------------------------------- dropout
class _DropoutNd(Module):
    """A dropout module: ``function`` (the F.dropout variant) with p, inplace and the module's
    ``training`` flag (in eval mode, the identity)."""

    function = None

    def __init__(self, p=0.5, inplace=False):
        super().__init__()
        if p < 0 or p > 1:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p = p
        self.inplace = inplace

    def forward(self, input):
        return type(self).function(input, p=self.p, training=self.training, inplace=self.inplace)

    def extra_repr(self):
        return f"p={self.p}, inplace={self.inplace}"


class Dropout(_DropoutNd):
    """Inverted dropout: in training, zero each element with probability p and scale the
    rest by 1/(1-p); in eval mode, the identity. Reads ``self.training``."""

    function = staticmethod(F.dropout)


class Dropout1d(_DropoutNd):
    """Like Dropout, but zeroes whole channels of an (N, C, L) input."""

    function = staticmethod(F.dropout1d)


class Dropout2d(_DropoutNd):
    """Like Dropout, but zeroes whole channels of an (N, C, H, W) input."""

    function = staticmethod(F.dropout2d)


class Dropout3d(_DropoutNd):
    """Like Dropout, but zeroes whole channels of an (N, C, D, H, W) input."""

    function = staticmethod(F.dropout3d)


class AlphaDropout(_DropoutNd):
    """Dropout that keeps SELU's zero mean and unit variance (F.alpha_dropout)."""

    function = staticmethod(F.alpha_dropout)


class FeatureAlphaDropout(_DropoutNd):
    """Alpha dropout of whole channels (F.feature_alpha_dropout)."""

    function = staticmethod(F.feature_alpha_dropout)


# ---------------------------------------------------------------- shape
class Flatten(Module):
    """Flattens dims start_dim..end_dim into one: (N, C, H, W) -> (N, C*H*W) by default."""

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim = start_dim
        self.end_dim = end_dim

    def forward(self, input):
        return input.flatten(self.start_dim, self.end_dim)

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Unflatten(Module):
    """Expands dim ``dim`` into ``unflattened_size``: Unflatten(1, (C, H, W)) undoes Flatten()."""

    def __init__(self, dim, unflattened_size):
        super().__init__()
        self.dim = dim
        self.unflattened_size = tuple(unflattened_size)

    def forward(self, input):
        dim = self.dim % input.ndim
        shape = input.shape[:dim] + self.unflattened_size + input.shape[dim + 1:]
        return input.reshape(shape)

    def extra_repr(self):
        return f"dim={self.dim}, unflattened_size={self.unflattened_size}"
