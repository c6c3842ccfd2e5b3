"""Weight averaging, as ``torch.optim.swa_utils``: stochastic weight averaging (SWA) and
the exponential moving average of the weights (EMA, the notes' ExponentialMovingAverage).

    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.99))
    for x, y in loader:
        ...; opt.step()
        ema.update_parameters(model)          # ema_w = 0.99 ema_w + 0.01 w
    update_bn(loader, ema)                    # BN statistics for the averaged weights
    evaluate(ema)

The averages, with n the number of models averaged so far (``n_averaged``); the first
call of ``update_parameters`` copies the weights (n = 0 -> 1):

    SWA (default)  avg <- avg + (w - avg) / (n + 1)     (the running mean of every w seen)
    EMA            avg <- avg + (1 - decay) (w - avg)   (= decay avg + (1 - decay) w)

All updates run on the arrays, outside the graph, on the averaged copy's device.
"""
import copy
import itertools
import math

from ..autograd import no_grad
from ..backend import to_device
from ..nn.module import Module
from ..nn.normalization import _BatchNorm
from ..tensor import Tensor, int64, tensor
from .lr_scheduler import LRScheduler, _per_group

__all__ = ["AveragedModel", "get_ema_multi_avg_fn", "get_swa_multi_avg_fn", "get_ema_avg_fn",
           "get_swa_avg_fn", "update_bn", "SWALR"]


def _lerp_(averaged, current, weight):
    """averaged <- averaged + weight (current - averaged), in place on the array."""
    averaged.array += weight * (current.array - averaged.array)


def get_ema_multi_avg_fn(decay=0.999):
    """In-place EMA over lists of tensors: avg <- avg + (1 - decay) (w - avg)."""
    def ema_update(ema_param_list, current_param_list, _num_averaged):
        for p_ema, p_model in zip(ema_param_list, current_param_list):
            if p_ema.dtype.kind in "fc":
                _lerp_(p_ema, p_model, 1 - decay)
            else:   # integer buffers: the formula, cast back
                p_ema.array[...] = p_ema.array * decay + p_model.array * (1 - decay)
    return ema_update


def get_swa_multi_avg_fn():
    """In-place running mean over lists of tensors: avg <- avg + (w - avg) / (n + 1)."""
    def swa_update(averaged_param_list, current_param_list, num_averaged):
        n = int(num_averaged.item() if isinstance(num_averaged, Tensor) else num_averaged)
        for p_avg, p_model in zip(averaged_param_list, current_param_list):
            if p_avg.dtype.kind in "fc":
                _lerp_(p_avg, p_model, 1 / (n + 1))
            else:
                p_avg.array[...] = p_avg.array + (p_model.array - p_avg.array) / (n + 1)   # cast back
    return swa_update


def get_ema_avg_fn(decay=0.999):
    """EMA of one tensor: returns decay * avg + (1 - decay) * w."""
    def ema_update(ema_param, current_param, num_averaged):
        return decay * ema_param + (1 - decay) * current_param
    return ema_update


def get_swa_avg_fn():
    """Running mean of one tensor: returns avg + (w - avg) / (n + 1)."""
    def swa_update(averaged_param, current_param, num_averaged):
        return averaged_param + (current_param - averaged_param) / (num_averaged + 1)
    return swa_update


class AveragedModel(Module):
    """A copy of ``model`` whose parameters are an average (SWA by default, EMA with
    ``multi_avg_fn=get_ema_multi_avg_fn(decay)``) of ``model``'s over the calls of
    ``update_parameters(model)``. Calling it runs the copy.

    avg_fn(avg, w, n) -> new avg, per tensor; multi_avg_fn(avgs, ws, n) updates lists in
    place (give at most one). ``use_buffers=True`` averages the buffers too (BN's running
    statistics); otherwise they are copied from ``model`` at every update, as PyTorch.
    """

    def __init__(self, model, device=None, avg_fn=None, multi_avg_fn=None, use_buffers=False):
        super().__init__()
        if avg_fn is not None and multi_avg_fn is not None:
            raise ValueError("AveragedModel: give only one of avg_fn and multi_avg_fn")
        self.module = copy.deepcopy(model)
        if device is not None:
            self.module = self.module.to(device)
        self.register_buffer("n_averaged", tensor(0, dtype=int64, device=device))
        self.avg_fn, self.multi_avg_fn, self.use_buffers = avg_fn, multi_avg_fn, use_buffers

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def _tensors(self, model):
        if self.use_buffers:
            return list(itertools.chain(model.parameters(), model.buffers()))
        return list(model.parameters())

    def update_parameters(self, model):
        """Fold ``model``'s current weights into the average (the first call copies them)."""
        averaged, current = self._tensors(self.module), self._tensors(model)
        if len(averaged) != len(current):
            raise ValueError(f"AveragedModel.update_parameters: the model has {len(current)} tensors "
                             f"to average, the averaged copy {len(averaged)}")
        current = [Tensor(to_device(p.array, a.device)) for a, p in zip(averaged, current)]
        n = int(self.n_averaged.item())
        with no_grad():
            if n == 0:
                for a, p in zip(averaged, current):
                    a.array[...] = p.array
            elif self.avg_fn is not None:
                n_t = tensor(n, dtype=int64)
                for a, p in zip(averaged, current):
                    new = self.avg_fn(Tensor(a.array), p, n_t)
                    a.array[...] = new.array if isinstance(new, Tensor) else new
            else:
                avg = self.multi_avg_fn or get_swa_multi_avg_fn()
                avg([Tensor(a.array) for a in averaged], current, self.n_averaged)
            if not self.use_buffers:     # keep the buffers in step with the model
                for b_avg, b_model in zip(self.module.buffers(), model.buffers()):
                    b_avg.array[...] = to_device(b_model.array, b_avg.device)
        self.n_averaged.array[...] = n + 1


def update_bn(loader, model, device=None):
    """Recompute the batch-norm running statistics of ``model`` with one pass over
    ``loader`` (the averaged weights' statistics differ from any single model's): reset
    them, then average over every batch (momentum None), in training mode, no graph.
    A batch that is a tuple or list contributes its first item (the inputs)."""
    momenta = {m: m.momentum for m in model.modules() if isinstance(m, _BatchNorm)}
    if not momenta:
        return
    was_training = model.training
    model.train()
    for m in momenta:
        m.reset_running_stats()
        m.momentum = None
    with no_grad():
        for batch in loader:
            x = batch[0] if isinstance(batch, (list, tuple)) else batch
            if device is not None:
                x = x.to(device)
            model(x)
    for m, momentum in momenta.items():
        m.momentum = momentum
    model.train(was_training)


class SWALR(LRScheduler):
    """The SWA learning rate: anneal each group's lr from its value when SWA starts to
    ``swa_lr`` over ``anneal_epochs`` epochs, then hold it (torch.optim.swa_utils.SWALR).
    With t = min(1, epoch / anneal_epochs) and a = t ('linear') or (1 - cos(pi t)) / 2
    ('cos'):  lr = a * swa_lr + (1 - a) * lr_at_start, computed step by step from the
    current lr as PyTorch does (so another scheduler's changes carry over)."""

    def __init__(self, optimizer, swa_lr, anneal_epochs=10, anneal_strategy="cos", last_epoch=-1):
        for lr, group in zip(_per_group(swa_lr, optimizer, "swa_lr"), optimizer.param_groups):
            group["swa_lr"] = lr
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(f"SWALR: anneal_strategy must be 'cos' or 'linear', got {anneal_strategy!r}")
        if not isinstance(anneal_epochs, int) or anneal_epochs < 0:
            raise ValueError(f"SWALR: anneal_epochs must be a non-negative int, got {anneal_epochs!r}")
        self.anneal_strategy, self.anneal_epochs = anneal_strategy, anneal_epochs
        super().__init__(optimizer, last_epoch)

    def _anneal(self, t):
        return t if self.anneal_strategy == "linear" else (1 - math.cos(math.pi * t)) / 2

    def get_lr(self):
        step = self._step_count - 1
        if self.anneal_epochs == 0:
            step = max(1, step)
        # undo the previous step's mix to recover the lr the anneal started from
        prev_alpha = self._anneal(max(0, min(1, (step - 1) / max(1, self.anneal_epochs))))
        alpha = self._anneal(max(0, min(1, step / max(1, self.anneal_epochs))))
        lrs = []
        for group in self.optimizer.param_groups:
            if prev_alpha == 1:
                start = group["swa_lr"]
            else:
                start = (group["lr"] - prev_alpha * group["swa_lr"]) / (1 - prev_alpha)
            lrs.append(group["swa_lr"] * alpha + start * (1 - alpha))
        return lrs
