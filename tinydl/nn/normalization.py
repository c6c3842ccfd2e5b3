"""Normalisation layers: BatchNorm1d/2d/3d, SyncBatchNorm, LayerNorm, GroupNorm,
InstanceNorm1d/2d/3d and LocalResponseNorm.

Thin Modules around the functional ops of ``tinydl.ops.norm`` (where forward and
backward live). Parameter and buffer names are PyTorch's (``weight``, ``bias``,
``running_mean``, ``running_var``, ``num_batches_tracked``), so a PyTorch
state_dict loads as is.
"""
import numbers
import warnings

from ..ops.norm import _batch_norm, group_norm, instance_norm, layer_norm, local_response_norm
from ..ops.sync_norm import sync_batch_norm
from ..autograd import no_grad
from ..tensor import ones, tensor, zeros, int64
from .module import Module
from .parameter import Parameter

__all__ = ["BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "SyncBatchNorm", "LayerNorm", "GroupNorm",
           "InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d", "LocalResponseNorm"]


def _affine_parameters(module, shape, affine, bias, dtype, device):
    """A norm layer's ``weight`` (ones) and ``bias`` (zeros) of ``shape``, or None where not
    wanted: the layer starts as a plain standardisation, as PyTorch's."""
    module.register_parameter("weight", Parameter(ones(*shape, dtype=dtype, device=device)) if affine else None)
    module.register_parameter("bias", Parameter(zeros(*shape, dtype=dtype, device=device))
                              if affine and bias else None)


def _reset_affine(module):
    with no_grad():
        if module.weight is not None:
            module.weight.fill_(1)
        if module.bias is not None:
            module.bias.fill_(0)


class _NormBase(Module):
    """What batch norm and instance norm layers share (PyTorch's _NormBase): ``num_features``
    per-channel ``weight`` (ones) and ``bias`` (zeros) when ``affine``, and with
    ``track_running_stats`` the buffers ``running_mean`` (zeros), ``running_var`` (ones)
    and ``num_batches_tracked``."""

    _expected_dims = ()       # allowed input ranks, set by the subclasses
    _layout = ""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
                 device=None, dtype=None, *, bias=True):
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        _affine_parameters(self, (num_features,), affine, bias, dtype, device)
        if track_running_stats:
            self.register_buffer("running_mean", zeros(num_features, dtype=dtype, device=device))
            self.register_buffer("running_var", ones(num_features, dtype=dtype, device=device))
            self.register_buffer("num_batches_tracked", tensor(0, dtype=int64, device=device))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        self.reset_parameters()

    def _load_from_state_dict(self, state_dict, prefix, *args):
        """A checkpoint without ``num_batches_tracked`` (written before PyTorch had it, or
        converted) loads as in PyTorch: the module keeps its own count."""
        key = prefix + "num_batches_tracked"
        if self.num_batches_tracked is not None and key not in state_dict:
            state_dict = {**state_dict, key: self.num_batches_tracked}
        super()._load_from_state_dict(state_dict, prefix, *args)

    def reset_running_stats(self):
        if self.track_running_stats:
            self.running_mean.array[...] = 0
            self.running_var.array[...] = 1
            self.num_batches_tracked.array[...] = 0

    def reset_parameters(self):
        self.reset_running_stats()
        _reset_affine(self)

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"bias={self.bias is not None}, track_running_stats={self.track_running_stats}")


class _BatchNorm(_NormBase):
    """Batch normalisation over the channel axis 1 (see ``tinydl.ops.norm.BatchNorm``).

    Training mode normalises with the batch statistics and updates the
    running ones:  running = (1 - momentum) * running + momentum * batch
    (unbiased variance), or with ``momentum=None`` their cumulative average
    (momentum = 1 / number of batches seen, from ``num_batches_tracked``).
    Evaluation mode normalises with the running statistics, or with the batch
    statistics when ``track_running_stats=False``.

    ``relu=True`` (not in PyTorch) ends the layer with a ReLU, and ``forward(input,
    residual)`` adds ``residual`` before it: ``relu(bn(x) + residual)``, a ResNet block's
    end, in one pass (``F.batch_norm_relu``). The parameters and buffers are the same,
    so a PyTorch state_dict still loads.
    """

    relu = False              # (also for a layer pickled before the argument existed)

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
                 device=None, dtype=None, *, bias=True, relu=False):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype, bias=bias)
        self.relu = bool(relu)

    def _check_input(self, input):
        name = type(self).__name__
        if input.ndim not in self._expected_dims:
            raise ValueError(f"{name}: expected {' or '.join(f'{d}D' for d in self._expected_dims)} input "
                             f"{self._layout}, got {input.ndim}D input of shape {input.shape}")
        if input.shape[1] != self.num_features:
            raise ValueError(f"{name}({self.num_features}): expected {self.num_features} channels on "
                             f"axis 1, got input of shape {input.shape} with {input.shape[1]} channels")

    def forward(self, input, residual=None):
        self._check_input(input)
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.array += 1
            if self.momentum is None:     # cumulative moving average: weight 1/n on the n-th batch
                momentum = 1.0 / float(self.num_batches_tracked.item())
        # Batch statistics in training mode, and also in eval mode when no running ones exist.
        use_batch_stats = self.training or (self.running_mean is None and self.running_var is None)
        # The running buffers are updated only when training with tracking on.
        track = not self.training or self.track_running_stats
        return self._normalize(input, self.running_mean if track else None, self.running_var if track else None,
                               use_batch_stats, momentum, residual)

    def _normalize(self, input, running_mean, running_var, use_batch_stats, momentum, residual):
        return _batch_norm("batch_norm_relu" if self.relu else "batch_norm", input, running_mean, running_var,
                           self.weight, self.bias, use_batch_stats, momentum, self.eps, residual, self.relu)

    def extra_repr(self):
        return super().extra_repr() + (", relu=True" if self.relu else "")


class BatchNorm1d(_BatchNorm):
    """Batch norm of (N, C) features or (N, C, L) sequences, as ``torch.nn.BatchNorm1d``."""
    _expected_dims = (2, 3)
    _layout = "(N, C) or (N, C, L)"


class BatchNorm2d(_BatchNorm):
    """Batch norm of (N, C, H, W) feature maps, per channel over N, H and W, as ``torch.nn.BatchNorm2d``."""
    _expected_dims = (4,)
    _layout = "(N, C, H, W)"


class BatchNorm3d(_BatchNorm):
    """Batch norm of (N, C, D, H, W) volumes, as ``torch.nn.BatchNorm3d``."""
    _expected_dims = (5,)
    _layout = "(N, C, D, H, W)"


class SyncBatchNorm(_BatchNorm):
    """Batch norm whose training statistics cover the batch of every rank, as ``torch.nn.SyncBatchNorm``.

    With a process group of W > 1 ranks (``tinydl.distributed``), training mode
    normalises each rank's part of the batch with the mean and variance of all
    W parts together, forward and backward (see ``tinydl.ops.sync_norm``), and
    the running statistics are those BatchNorm would get on the whole batch.
    Without a process group, with one rank, or in evaluation mode it is BatchNorm.
    Every rank must call it the same number of times (it communicates).
    """
    _expected_dims = (2, 3, 4, 5)
    _layout = "(N, C, *)"

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
                 process_group=None, device=None, dtype=None, *, bias=True, relu=False):
        if process_group is not None:
            raise NotImplementedError("SyncBatchNorm: only the default process group (process_group=None) "
                                      "exists in tinydl")
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype, bias=bias,
                         relu=relu)
        self.process_group = None

    def _normalize(self, input, running_mean, running_var, use_batch_stats, momentum, residual):
        from .. import distributed as dist
        if not (use_batch_stats and self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super()._normalize(input, running_mean, running_var, use_batch_stats, momentum, residual)
        y = sync_batch_norm(input, running_mean, running_var, self.weight, self.bias, momentum, self.eps,
                            dist._get_default_group())
        if residual is not None:
            y = y + residual
        return y.relu() if self.relu else y

    @classmethod
    def convert_sync_batchnorm(cls, module, process_group=None):
        """``module`` with every BatchNorm1d/2d/3d replaced by a SyncBatchNorm holding the same
        parameters and buffers (the same Tensors), as PyTorch's; returns the new root."""
        out = module
        if isinstance(module, _BatchNorm) and not isinstance(module, SyncBatchNorm):
            out = cls(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats,
                      process_group, bias=module.bias is not None, relu=module.relu)
            for name in ("weight", "bias"):
                out._parameters[name] = module._parameters[name]
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                out._buffers[name] = module._buffers[name]
            out.training = module.training
        for name, child in module.named_children():
            out.add_module(name, cls.convert_sync_batchnorm(child, process_group))
        return out


class LayerNorm(Module):
    """Layer normalisation over the last ``len(normalized_shape)`` dims, as ``torch.nn.LayerNorm``:
    each slice of those dims is standardised with its own mean and (biased) variance, the
    same in training and evaluation (no running statistics), then multiplied elementwise
    by ``weight`` (ones) and shifted by ``bias`` (zeros), both of shape ``normalized_shape``,
    when ``elementwise_affine`` (``bias=False``: no shift)."""

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True, device=None, dtype=None):
        super().__init__()
        if isinstance(normalized_shape, numbers.Integral):
            normalized_shape = (normalized_shape,)
        self.normalized_shape = tuple(int(s) for s in normalized_shape)
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        _affine_parameters(self, self.normalized_shape, elementwise_affine, bias, dtype, device)

    def reset_parameters(self):
        _reset_affine(self)

    def forward(self, input):
        k = len(self.normalized_shape)
        if input.ndim < k or tuple(input.shape[input.ndim - k:]) != self.normalized_shape:
            raise RuntimeError(f"LayerNorm({self.normalized_shape}): expected an input whose last {k} dim(s) are "
                               f"{self.normalized_shape}, got input of shape {tuple(input.shape)}")
        return layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return (f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}, "
                f"bias={self.bias is not None}")


class GroupNorm(Module):
    """Group normalisation, as ``torch.nn.GroupNorm``: the ``num_channels`` channels of an
    (N, C, *) input split into ``num_groups`` groups, each (sample, group) standardised
    with its own statistics (the same in training and evaluation), then a per-channel
    ``weight`` (ones) and ``bias`` (zeros) when ``affine``."""

    def __init__(self, num_groups, num_channels, eps=1e-5, affine=True, device=None, dtype=None, *, bias=True):
        super().__init__()
        if num_groups < 1 or num_channels % num_groups:
            raise ValueError(f"GroupNorm: num_channels ({num_channels}) must be divisible by num_groups "
                             f"({num_groups})")
        self.num_groups = num_groups
        self.num_channels = num_channels
        self.eps = eps
        self.affine = affine
        _affine_parameters(self, (num_channels,), affine, bias, dtype, device)

    def reset_parameters(self):
        _reset_affine(self)

    def forward(self, input):
        # (without affine, like PyTorch, any channel count divisible by num_groups is normalised)
        if self.affine and (input.ndim < 2 or input.shape[1] != self.num_channels):
            raise RuntimeError(f"GroupNorm({self.num_groups}, {self.num_channels}): expected an input of shape "
                               f"(N, {self.num_channels}, *), got input of shape {tuple(input.shape)}")
        return group_norm(input, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return (f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}, "
                f"bias={self.bias is not None}")


class _InstanceNorm(_NormBase):
    """Instance normalisation, as PyTorch's InstanceNorm layers: each (sample, channel)
    standardised over its own spatial values, then (``affine=True``) a per-channel
    ``weight`` and ``bias``. With ``track_running_stats=True`` training mode also
    updates ``running_mean`` / ``running_var`` (the per-instance statistics averaged
    over the batch, ``momentum`` as batch norm; ``num_batches_tracked`` stays 0, as in
    PyTorch) and evaluation mode normalises with them. An input without the batch
    axis (C, *) is normalised as a batch of one."""

    _no_batch_dims = 0        # the rank of an unbatched input, set by the subclasses

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=False, track_running_stats=False,
                 device=None, dtype=None, *, bias=True):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype, bias=bias)

    def forward(self, input):
        name, unbatched = type(self).__name__, self._no_batch_dims
        if input.ndim not in (unbatched, unbatched + 1):
            raise ValueError(f"{name}: expected {unbatched}D or {unbatched + 1}D input {self._layout}, "
                             f"got {input.ndim}D input of shape {tuple(input.shape)}")
        channel_dim = input.ndim - unbatched
        if input.shape[channel_dim] != self.num_features:
            message = (f"{name}({self.num_features}): expected input's size at dim={channel_dim} to match "
                       f"num_features ({self.num_features}), got input of shape {tuple(input.shape)}")
            if self.affine or self.track_running_stats:
                raise ValueError(message)
            warnings.warn(message + " (num_features is not used: affine=False, track_running_stats=False)",
                          stacklevel=2)
        if input.ndim == unbatched:
            return self._instance_norm(input.unsqueeze(0)).squeeze(0)
        return self._instance_norm(input)

    def _instance_norm(self, input):
        return instance_norm(input, self.running_mean, self.running_var, self.weight, self.bias,
                             self.training or not self.track_running_stats,
                             0.0 if self.momentum is None else self.momentum, self.eps)


class InstanceNorm1d(_InstanceNorm):
    """Instance norm of (N, C, L) sequences (or one (C, L)), as ``torch.nn.InstanceNorm1d``."""
    _no_batch_dims = 2
    _layout = "(C, L) or (N, C, L)"


class InstanceNorm2d(_InstanceNorm):
    """Instance norm of (N, C, H, W) feature maps (or one (C, H, W)), as ``torch.nn.InstanceNorm2d``."""
    _no_batch_dims = 3
    _layout = "(C, H, W) or (N, C, H, W)"


class InstanceNorm3d(_InstanceNorm):
    """Instance norm of (N, C, D, H, W) volumes (or one (C, D, H, W)), as ``torch.nn.InstanceNorm3d``."""
    _no_batch_dims = 4
    _layout = "(C, D, H, W) or (N, C, D, H, W)"


class LocalResponseNorm(Module):
    """Local response normalisation across channels (AlexNet: size=5, alpha=1e-4, beta=0.75, k=2),
    as ``torch.nn.LocalResponseNorm``: y_c = x_c / (k + alpha/size * sum of x^2 over `size`
    neighbouring channels)^beta."""

    def __init__(self, size, alpha=1e-4, beta=0.75, k=1.0):
        super().__init__()
        self.size = size
        self.alpha = alpha
        self.beta = beta
        self.k = k

    def forward(self, input):
        return local_response_norm(input, self.size, self.alpha, self.beta, self.k)

    def extra_repr(self):
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"
