"""Learning-rate schedules: change each param group's ``'lr'`` as training goes on.

Usage, as in PyTorch::

    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = optim.lr_scheduler.StepLR(opt, step_size=30, gamma=0.1)
    for epoch in range(90):
        train_one_epoch(model, opt)      # calls opt.step() many times
        sched.step()                     # once per epoch, after the optimizer steps

A scheduler counts epochs in ``last_epoch`` (-1 before the first call; the
constructor makes one step, so it is 0 after construction), remembers every group's
starting lr in ``base_lrs`` (and in the group as ``'initial_lr'``), and on each
``step()`` writes the new lr into ``optimizer.param_groups[i]['lr']``; the optimizer
reads it at its next step.

Like PyTorch, the schedules are *recursive* (new lr = function of the current group
lr), so several schedulers can be chained on one optimizer and their effects
multiply. ``step(epoch)`` (deprecated in PyTorch) jumps to an epoch with the
closed form instead. The numbers match ``torch.optim.lr_scheduler`` exactly
(same floating-point operations in the same order).

Some schedules compute each lr from scratch instead and are meant to be stepped once
per *batch*: CyclicLR, OneCycleLR (these two can also cycle the momentum, or Adam's
beta1) and CosineAnnealingWarmRestarts (which takes fractional epochs). SequentialLR
hands over from one scheduler to the next at milestones; ChainedScheduler steps
several at once.
"""
import math
import numbers
import types
import warnings
from bisect import bisect_right
from collections import Counter

from .optimizer import Optimizer

__all__ = ["LRScheduler", "LambdaLR", "MultiplicativeLR", "StepLR", "MultiStepLR", "ConstantLR",
           "LinearLR", "ExponentialLR", "PolynomialLR", "CosineAnnealingLR", "CosineAnnealingWarmRestarts",
           "CyclicLR", "OneCycleLR", "SequentialLR", "ChainedScheduler", "ReduceLROnPlateau"]

_EPOCH_DEPRECATION = ("scheduler.step(epoch) is deprecated (as in PyTorch): call scheduler.step() "
                      "once per epoch; with an epoch the closed form is used where available")


def _check_optimizer(optimizer, name):
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"{name}: expected a tinydl.optim Optimizer, got {type(optimizer).__name__}")


class LRScheduler:
    """Base class of the epoch-driven schedules (``torch.optim.lr_scheduler.LRScheduler``).

    Subclasses implement ``get_lr()``: the new lr of every group, from the current
    ones (recursive form), and may implement ``_get_closed_form_lr()``: the lr at
    ``last_epoch`` from ``base_lrs`` alone.
    """

    def __init__(self, optimizer, last_epoch=-1):
        _check_optimizer(optimizer, type(self).__name__)
        self.optimizer = optimizer
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        else:
            for i, group in enumerate(optimizer.param_groups):
                if "initial_lr" not in group:
                    raise KeyError(f"{type(self).__name__}: param 'initial_lr' is not specified in "
                                   f"param_groups[{i}] when resuming with last_epoch={last_epoch}; "
                                   "load the optimizer's state_dict first, or use last_epoch=-1")
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self._is_initial = False
        self._initial_step()

    def _initial_step(self):
        """Set the lr of epoch ``last_epoch + 1`` (epoch 0 for a fresh run)."""
        self._step_count = 0
        self._opt_step_count_at_init = getattr(self.optimizer, "_step_count", None)
        self._is_initial = True
        try:
            self.step()
        finally:
            self._is_initial = False

    def state_dict(self):
        """Everything but the optimizer (whose state has its own state_dict)."""
        return {k: v for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state_dict):
        self.__dict__.update(state_dict)

    def get_last_lr(self):
        """The lr of every group as last set by this scheduler."""
        return self._last_lr

    def get_lr(self):
        raise NotImplementedError

    def step(self, epoch=None):
        """Advance one epoch (call after ``optimizer.step()``) and set the new lrs."""
        opt_steps = getattr(self.optimizer, "_step_count", None)
        if self._step_count == 1 and opt_steps is not None and opt_steps == self._opt_step_count_at_init:
            warnings.warn("Detected call of lr_scheduler.step() before optimizer.step(). Call "
                          "optimizer.step() first, then lr_scheduler.step(); otherwise the first "
                          "value of the schedule is skipped.", UserWarning, stacklevel=2)
        self._step_count += 1
        if epoch is not None:
            warnings.warn(_EPOCH_DEPRECATION, UserWarning, stacklevel=2)
        self._update_lr(epoch)

    def _update_lr(self, epoch=None):
        """Move to the next epoch (or jump to ``epoch``) and write the lrs, without the
        warnings and the step count of ``step()`` (SequentialLR calls this directly)."""
        if epoch is None:
            self.last_epoch += 1
            values = self.get_lr()
        else:
            self.last_epoch = epoch
            closed = getattr(self, "_get_closed_form_lr", None)
            values = closed() if closed is not None else self.get_lr()
        groups = self.optimizer.param_groups
        if len(values) != len(groups):      # as PyTorch's zip(strict=True): no group left unscheduled
            raise ValueError(f"{type(self).__name__}: the optimizer has {len(groups)} param groups, the scheduler "
                             f"{len(values)} (a group added after the scheduler was made? make it after "
                             "add_param_group)")
        for group, lr in zip(groups, values):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def _current_lrs(self):
        return [group["lr"] for group in self.optimizer.param_groups]

    def __repr__(self):
        return (f"{type(self).__name__}(last_epoch={getattr(self, 'last_epoch', None)}, "
                f"last_lr={getattr(self, '_last_lr', None)})")


def _per_group(value, optimizer, what, owner=None):
    """One value per param group: a list/tuple is checked for length, a scalar is repeated.
    (swa_utils uses it too; ``owner``, the class named in the error, is optional for it.)"""
    if isinstance(value, (list, tuple)):
        if len(value) != len(optimizer.param_groups):
            prefix = f"{owner}: " if owner else ""
            raise ValueError(f"{prefix}expected {len(optimizer.param_groups)} {what} (one per param group), "
                             f"got {len(value)}: {list(value)!r}")
        return list(value)
    return [value] * len(optimizer.param_groups)


def _check_lambdas(lr_lambda, optimizer, owner):
    lr_lambdas = _per_group(lr_lambda, optimizer, "lr_lambdas", owner)
    for f in lr_lambdas:
        if not callable(f):
            raise TypeError(f"{owner}: lr_lambda should be a function, got {type(f).__name__}")
    return lr_lambdas


def _functions_state(functions):
    """What a state_dict keeps of user functions: plain functions and lambdas are code
    and are not saved (None); a callable object keeps its attributes, as in PyTorch."""
    return [None if f is None or isinstance(f, types.FunctionType) else dict(f.__dict__) for f in functions]


def _load_functions_state(functions, saved):
    for f, attrs in zip(functions, saved):
        if attrs is not None:
            f.__dict__.update(attrs)


class _EpochFunctions(LRScheduler):
    """A scheduler driven by functions of the epoch (one, or one per group): LambdaLR and
    MultiplicativeLR. Its state_dict keeps the state of callable objects, not plain functions."""

    def __init__(self, optimizer, lr_lambda, last_epoch=-1):
        _check_optimizer(optimizer, type(self).__name__)
        self.optimizer = optimizer
        self.lr_lambdas = _check_lambdas(lr_lambda, optimizer, type(self).__name__)
        super().__init__(optimizer, last_epoch)

    def state_dict(self):
        state = {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "lr_lambdas")}
        state["lr_lambdas"] = _functions_state(self.lr_lambdas)
        return state

    def load_state_dict(self, state_dict):
        state_dict = dict(state_dict)   # never change the caller's dict
        saved = state_dict.pop("lr_lambdas")
        self.__dict__.update(state_dict)
        _load_functions_state(self.lr_lambdas, saved)


class LambdaLR(_EpochFunctions):
    """lr = base_lr * lr_lambda(epoch); one function, or one per group.

    A warmup of 5 epochs: ``LambdaLR(opt, lambda e: min(1.0, (e + 1) / 5))``.
    """

    def get_lr(self):
        return [base_lr * f(self.last_epoch) for f, base_lr in zip(self.lr_lambdas, self.base_lrs)]


class MultiplicativeLR(_EpochFunctions):
    """Multiply the lr by ``lr_lambda(epoch)`` at every epoch; one function, or one per group.

    lr(epoch) = lr(epoch - 1) * lr_lambda(epoch), for epoch >= 1 (epoch 0 keeps the
    starting lr). Unlike LambdaLR, whose function gives the whole factor from
    base_lr, the factors here accumulate: ``lambda e: 0.95`` is ExponentialLR(0.95).
    """

    def get_lr(self):
        if self._is_initial:   # construction (or resuming) sets the lr, it does not multiply yet
            return self._current_lrs()
        return [group["lr"] * f(self.last_epoch) for f, group in zip(self.lr_lambdas, self.optimizer.param_groups)]


class StepLR(LRScheduler):
    """Multiply the lr by ``gamma`` every ``step_size`` epochs.

    lr(epoch) = base_lr * gamma ** (epoch // step_size); e.g. the notes' "divide by
    10 every 30 epochs" is ``StepLR(opt, step_size=30, gamma=0.1)``.
    """

    def __init__(self, optimizer, step_size, gamma=0.1, last_epoch=-1):
        if not (isinstance(step_size, numbers.Integral) and step_size > 0):
            raise ValueError(f"StepLR: step_size must be a positive int, got {step_size!r}")
        self.step_size = step_size
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return self._current_lrs()
        return [group["lr"] * self.gamma for group in self.optimizer.param_groups]

    def _get_closed_form_lr(self):
        return [base_lr * self.gamma ** (self.last_epoch // self.step_size) for base_lr in self.base_lrs]


class MultiStepLR(LRScheduler):
    """Multiply the lr by ``gamma`` at each epoch listed in ``milestones``.

    lr(epoch) = base_lr * gamma ** (number of milestones <= epoch); a milestone
    listed twice decays twice.
    """

    def __init__(self, optimizer, milestones, gamma=0.1, last_epoch=-1):
        milestones = list(milestones)
        if any(not isinstance(m, numbers.Integral) for m in milestones):
            raise ValueError(f"MultiStepLR: milestones must be ints (epoch indices), got {milestones!r}")
        self.milestones = Counter(int(m) for m in milestones)
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        if self.last_epoch not in self.milestones:
            return self._current_lrs()
        return [group["lr"] * self.gamma ** self.milestones[self.last_epoch]
                for group in self.optimizer.param_groups]

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        self.milestones = Counter(self.milestones)   # a checkpoint may give back a plain dict

    def _get_closed_form_lr(self):
        milestones = sorted(self.milestones.elements())
        return [base_lr * self.gamma ** bisect_right(milestones, self.last_epoch) for base_lr in self.base_lrs]


class ConstantLR(LRScheduler):
    """Scale the lr by a constant ``factor`` for the first ``total_iters`` epochs, then
    give back the full lr.

    lr(epoch) = base_lr * factor   if epoch < total_iters
              = base_lr            otherwise.

    Recursively: multiply by ``factor`` at epoch 0 and by ``1 / factor`` at epoch
    ``total_iters``; a typical use is a short low-lr warmup before another schedule.
    """

    def __init__(self, optimizer, factor=1.0 / 3, total_iters=5, last_epoch=-1):
        if factor > 1.0 or factor < 0:
            raise ValueError(f"ConstantLR: factor must be between 0 and 1, got {factor}")
        self.factor = factor
        self.total_iters = total_iters
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        if self.last_epoch == 0:
            return [group["lr"] * self.factor for group in self.optimizer.param_groups]
        if self.last_epoch != self.total_iters:
            return self._current_lrs()
        # undo the factor of epoch 0 (PyTorch multiplies by 1/factor, not divides)
        return [group["lr"] * (1.0 / self.factor) for group in self.optimizer.param_groups]

    def _get_closed_form_lr(self):
        # factor before total_iters, factor + (1 - factor) = 1 from then on
        return [base_lr * (self.factor + (self.last_epoch >= self.total_iters) * (1 - self.factor))
                for base_lr in self.base_lrs]


class ExponentialLR(LRScheduler):
    """Multiply the lr by ``gamma`` every epoch: lr(epoch) = base_lr * gamma ** epoch."""

    def __init__(self, optimizer, gamma, last_epoch=-1):
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        if self._is_initial:   # resuming must not decay once more on construction
            return self._current_lrs()
        return [group["lr"] * self.gamma for group in self.optimizer.param_groups]

    def _get_closed_form_lr(self):
        return [base_lr * self.gamma ** self.last_epoch for base_lr in self.base_lrs]


class PolynomialLR(LRScheduler):
    """Decay the lr to 0 along a polynomial over ``total_iters`` epochs, then keep it at 0.

    lr(epoch) = base_lr * (1 - min(epoch, total_iters) / total_iters) ** power.

    power=1 is a straight line down to 0; power < 1 stays high longer, power > 1 drops
    fast first. Each step multiplies the current lr by the ratio of consecutive values,
    ((1 - e / T) / (1 - (e - 1) / T)) ** power, so that it chains with other schedulers.
    """

    def __init__(self, optimizer, total_iters=5, power=1.0, last_epoch=-1):
        self.total_iters = total_iters
        self.power = power
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        if self._is_initial or self.last_epoch > self.total_iters:
            return self._current_lrs()
        decay_factor = ((1.0 - self.last_epoch / self.total_iters)
                        / (1.0 - (self.last_epoch - 1) / self.total_iters)) ** self.power
        return [group["lr"] * decay_factor for group in self.optimizer.param_groups]

    def _get_closed_form_lr(self):
        return [base_lr * (1.0 - min(self.total_iters, self.last_epoch) / self.total_iters) ** self.power
                for base_lr in self.base_lrs]


class CosineAnnealingLR(LRScheduler):
    r"""Cosine annealing from base_lr down to ``eta_min`` over ``T_max`` epochs.

    The target curve (SGDR without restarts) is

        lr(t) = eta_min + (base_lr - eta_min) * (1 + cos(pi * t / T_max)) / 2

    but, like PyTorch, each step computes the new lr from the current one,

        lr(t) = eta_min + (lr(t-1) - eta_min) * (1 + cos(pi t / T_max)) / (1 + cos(pi (t-1) / T_max))

    so that it composes with other schedulers changing the same lr. Past T_max the
    curve continues as a cosine (back up to base_lr at 2 T_max); at the point where
    the denominator would vanish (t - 1 = T_max mod 2 T_max) the recursion adds the
    closed form's increment instead.
    """

    def __init__(self, optimizer, T_max, eta_min=0.0, last_epoch=-1):
        if not T_max > 0:
            raise ValueError(f"CosineAnnealingLR: T_max must be > 0, got {T_max!r}")
        self.T_max = T_max
        self.eta_min = eta_min
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        if self._is_initial:
            return self._current_lrs()
        if self._step_count == 1 and self.last_epoch > 0:
            # the first step of a resumed run: no previous lr of this curve to recurse from
            return [self.eta_min + (base_lr - self.eta_min) * (1 + math.cos(self.last_epoch * math.pi / self.T_max)) / 2
                    for base_lr in self.base_lrs]
        if (self.last_epoch - 1 - self.T_max) % (2 * self.T_max) == 0:
            return [group["lr"] + (base_lr - self.eta_min) * (1 - math.cos(math.pi / self.T_max)) / 2
                    for base_lr, group in zip(self.base_lrs, self.optimizer.param_groups)]
        return [(1 + math.cos(math.pi * self.last_epoch / self.T_max))
                / (1 + math.cos(math.pi * (self.last_epoch - 1) / self.T_max))
                * (group["lr"] - self.eta_min) + self.eta_min
                for group in self.optimizer.param_groups]

    def _get_closed_form_lr(self):
        return [self.eta_min + (base_lr - self.eta_min) * (1 + math.cos(math.pi * self.last_epoch / self.T_max)) / 2
                for base_lr in self.base_lrs]


class LinearLR(LRScheduler):
    """Linear warmup (or decay): the lr factor goes from ``start_factor`` to
    ``end_factor`` over ``total_iters`` epochs, then stays.

    lr(epoch) = base_lr * (start + (end - start) * min(epoch, total_iters) / total_iters).
    """

    def __init__(self, optimizer, start_factor=1.0 / 3, end_factor=1.0, total_iters=5, last_epoch=-1):
        if not 0 < start_factor <= 1:
            raise ValueError(f"LinearLR: start_factor must be in (0, 1], got {start_factor}")
        if not 0 <= end_factor <= 1:
            raise ValueError(f"LinearLR: end_factor must be in [0, 1], got {end_factor}")
        self.start_factor = start_factor
        self.end_factor = end_factor
        self.total_iters = total_iters
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        if self.last_epoch == 0:
            return [group["lr"] * self.start_factor for group in self.optimizer.param_groups]
        if self._is_initial or self.last_epoch > self.total_iters:
            return self._current_lrs()
        # ratio of consecutive factors f(e) / f(e-1)
        return [group["lr"] * (1.0 + (self.end_factor - self.start_factor)
                               / (self.total_iters * self.start_factor
                                  + (self.last_epoch - 1) * (self.end_factor - self.start_factor)))
                for group in self.optimizer.param_groups]

    def _get_closed_form_lr(self):
        return [base_lr * (self.start_factor + (self.end_factor - self.start_factor)
                           * min(self.total_iters, self.last_epoch) / self.total_iters)
                for base_lr in self.base_lrs]


class CosineAnnealingWarmRestarts(LRScheduler):
    r"""Cosine annealing with warm restarts (SGDR): anneal from base_lr to ``eta_min``
    over ``T_i`` epochs, then jump back to base_lr and start again.

        lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * T_cur / T_i)) / 2

    ``T_cur`` counts the epochs since the last restart, ``T_i`` is the length of the
    current cycle: ``T_0`` at first, multiplied by ``T_mult`` at every restart
    (T_mult=2 gives cycles of T_0, 2 T_0, 4 T_0, ...).

    ``step()`` can be called once per batch with a fractional epoch,
    ``sched.step(epoch + i / iters_per_epoch)``: then the cycle holding ``epoch`` is found
    in closed form. With T_mult > 1 the restarts happen at T_0 (T_mult^n - 1) / (T_mult - 1),
    so the cycle index is n = floor(log_{T_mult}(epoch / T_0 * (T_mult - 1) + 1)).
    This is not a deprecated use here, so it gives no warning.
    """

    def __init__(self, optimizer, T_0, T_mult=1, eta_min=0.0, last_epoch=-1):
        if not isinstance(T_0, numbers.Integral) or T_0 <= 0:
            raise ValueError(f"CosineAnnealingWarmRestarts: T_0 must be a positive int, got {T_0!r}")
        if not isinstance(T_mult, numbers.Integral) or T_mult < 1:
            raise ValueError(f"CosineAnnealingWarmRestarts: T_mult must be an int >= 1, got {T_mult!r}")
        if not isinstance(eta_min, numbers.Real):
            raise ValueError(f"CosineAnnealingWarmRestarts: eta_min must be a float or int, got {eta_min!r} "
                             f"of type {type(eta_min).__name__}")
        self.T_0 = T_0
        self.T_i = T_0
        self.T_mult = T_mult
        self.eta_min = eta_min
        self.T_cur = last_epoch
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        # always the closed form: the restarts jump, so there is no useful recursion
        return [self.eta_min + (base_lr - self.eta_min) * (1 + math.cos(math.pi * self.T_cur / self.T_i)) / 2
                for base_lr in self.base_lrs]

    def step(self, epoch=None):
        """Advance one epoch, or go to ``epoch`` (which may be fractional)."""
        # Like PyTorch this step keeps no step count, so it never warns about the call order.
        if epoch is None and self.last_epoch < 0:
            epoch = 0   # the constructor's step: start of the first cycle
        if epoch is None:
            epoch = self.last_epoch + 1
            self.T_cur = self.T_cur + 1
            if self.T_cur >= self.T_i:   # end of the cycle: restart, next cycle T_mult times longer
                self.T_cur = self.T_cur % self.T_i
                self.T_i = self.T_i * self.T_mult
        else:
            if epoch < 0:
                raise ValueError(f"CosineAnnealingWarmRestarts: epoch must be non-negative, got {epoch!r}")
            if epoch >= self.T_0:
                if self.T_mult == 1:
                    self.T_cur = epoch % self.T_0
                else:
                    n = int(math.log((epoch / self.T_0 * (self.T_mult - 1) + 1), self.T_mult))
                    self.T_cur = epoch - self.T_0 * (self.T_mult ** n - 1) / (self.T_mult - 1)
                    self.T_i = self.T_0 * self.T_mult ** n
            else:
                self.T_i = self.T_0
                self.T_cur = epoch
        self.last_epoch = math.floor(epoch)
        for group, lr in zip(self.optimizer.param_groups, self.get_lr()):
            group["lr"] = lr
        self._last_lr = self._current_lrs()


def _momentum_uses_betas(optimizer, owner):
    """Which hyperparameter cycle_momentum moves: 'momentum' (SGD, RMSprop) or Adam's beta1."""
    if "momentum" not in optimizer.defaults and "betas" not in optimizer.defaults:
        raise ValueError(f"{owner}: cycle_momentum=True needs an optimizer with 'momentum' or 'betas' "
                         f"(beta1 plays momentum's role); {type(optimizer).__name__} has neither "
                         "(pass cycle_momentum=False)")
    return "betas" in optimizer.defaults


def _set_momentum(group, momentum, use_betas):
    if use_betas:
        group["betas"] = (momentum, *group["betas"][1:])   # beta2 is left alone
    else:
        group["momentum"] = momentum


class CyclicLR(LRScheduler):
    r"""Cyclical learning rates (Smith, 2017): the lr goes up from ``base_lr`` to
    ``max_lr`` in ``step_size_up`` steps, back down in ``step_size_down`` steps, and again.

    Meant to be stepped once per *batch*. At step t, with a cycle of
    L = step_size_up + step_size_down steps and r = step_size_up / L:

        cycle = floor(1 + t / L)                 (1, 2, ...)
        x     = 1 + t / L - cycle                (position inside the cycle, in [0, 1))
        s     = x / r          if x <= r         (rises 0 -> 1)
              = (x - 1) / (r - 1)   otherwise    (falls 1 -> 0)
        lr    = base_lr + (max_lr - base_lr) * s * scale_fn(cycle or t)

    ``mode`` picks scale_fn: 'triangular' 1; 'triangular2' 1 / 2 ** (cycle - 1) (the
    height halves every cycle); 'exp_range' gamma ** t (shrinks every step). A custom
    ``scale_fn`` (0 <= scale_fn <= 1) replaces mode; ``scale_mode`` says whether it gets
    the cycle number ('cycle') or t ('iterations').

    With ``cycle_momentum`` the momentum (or Adam's beta1) moves the other way,
    momentum = max_momentum - (max_momentum - base_momentum) * s * scale_fn(...):
    high momentum while the lr is low. The constructor sets each group's lr to base_lr.
    """

    def __init__(self, optimizer, base_lr, max_lr, step_size_up=2000, step_size_down=None, mode="triangular",
                 gamma=1.0, scale_fn=None, scale_mode="cycle", cycle_momentum=True, base_momentum=0.8,
                 max_momentum=0.9, last_epoch=-1):
        _check_optimizer(optimizer, "CyclicLR")
        self.optimizer = optimizer
        base_lrs = _per_group(base_lr, optimizer, "base_lr values", "CyclicLR")
        if last_epoch == -1:
            for lr, group in zip(base_lrs, optimizer.param_groups):
                group["lr"] = lr
        self.max_lrs = _per_group(max_lr, optimizer, "max_lr values", "CyclicLR")

        # PyTorch would fail with a bare ZeroDivisionError on a zero-length rise
        if not step_size_up > 0:
            raise ValueError(f"CyclicLR: step_size_up must be > 0, got {step_size_up!r}")
        if step_size_down is not None and not step_size_down >= 0:
            raise ValueError(f"CyclicLR: step_size_down must be >= 0, got {step_size_down!r}")
        step_size_up = float(step_size_up)
        step_size_down = float(step_size_down) if step_size_down is not None else step_size_up
        self.total_size = step_size_up + step_size_down
        self.step_ratio = step_size_up / self.total_size

        if mode not in ("triangular", "triangular2", "exp_range") and scale_fn is None:
            raise ValueError(f"CyclicLR: mode {mode!r} is unknown (use 'triangular', 'triangular2' or "
                             "'exp_range') and no scale_fn was given")
        self.mode = mode
        self.gamma = gamma
        self._scale_fn_custom = scale_fn
        self.scale_mode = scale_mode
        self._init_scale_mode()

        self.cycle_momentum = cycle_momentum
        if cycle_momentum:
            self.use_beta1 = _momentum_uses_betas(optimizer, "CyclicLR")
            self.base_momentums = _per_group(base_momentum, optimizer, "base_momentum values", "CyclicLR")
            self.max_momentums = _per_group(max_momentum, optimizer, "max_momentum values", "CyclicLR")
            if last_epoch == -1:
                for max_m, base_m, group in zip(self.max_momentums, self.base_momentums, optimizer.param_groups):
                    _set_momentum(group, max_m, self.use_beta1)   # a cycle starts at low lr, high momentum
                    group["max_momentum"] = max_m
                    group["base_momentum"] = base_m

        super().__init__(optimizer, last_epoch)
        # base_lr is the lower bound of the cycle, whatever 'initial_lr' the groups held
        self.base_lrs = base_lrs

    def _init_scale_mode(self):
        # the built-in modes fix what their scale function is fed
        if self._scale_fn_custom is None:
            self.scale_mode = "iterations" if self.mode == "exp_range" else "cycle"

    def scale_fn(self, x):
        """The amplitude scale at cycle number (or iteration) x."""
        if self._scale_fn_custom is not None:
            return self._scale_fn_custom(x)
        if self.mode == "triangular":
            return 1.0
        if self.mode == "triangular2":
            return 1 / (2.0 ** (x - 1))
        return self.gamma ** x   # exp_range

    def get_lr(self):
        cycle = math.floor(1 + self.last_epoch / self.total_size)
        x = 1.0 + self.last_epoch / self.total_size - cycle
        if x <= self.step_ratio:
            scale_factor = x / self.step_ratio
        else:
            scale_factor = (x - 1) / (self.step_ratio - 1)
        scale = self.scale_fn(cycle if self.scale_mode == "cycle" else self.last_epoch)

        lrs = [base_lr + (max_lr - base_lr) * scale_factor * scale
               for base_lr, max_lr in zip(self.base_lrs, self.max_lrs)]
        if self.cycle_momentum:
            for base_m, max_m, group in zip(self.base_momentums, self.max_momentums, self.optimizer.param_groups):
                _set_momentum(group, max_m - (max_m - base_m) * scale_factor * scale, self.use_beta1)
        return lrs

    def state_dict(self):
        state = super().state_dict()
        state["_scale_fn_custom"] = _functions_state([self._scale_fn_custom])[0]
        return state

    def load_state_dict(self, state_dict):
        state_dict = dict(state_dict)
        saved = state_dict.pop("_scale_fn_custom")
        self.__dict__.update(state_dict)
        if self._scale_fn_custom is not None:
            _load_functions_state([self._scale_fn_custom], [saved])
        self._init_scale_mode()


class OneCycleLR(LRScheduler):
    r"""The 1cycle policy (Smith & Topin, 2017): warm the lr up from a low value to
    ``max_lr``, then anneal it far below where it started, over ``total_steps`` batches.

    Per group: initial_lr = max_lr / div_factor and min_lr = initial_lr / final_div_factor.
    The schedule is made of phases; in a phase that runs from step a to step b and moves
    a value from ``start`` to ``end``, at step t (pct = (t - a) / (b - a))

        cos:    value = end + (start - end) * (1 + cos(pi * pct)) / 2
        linear: value = start + (end - start) * pct

    Two phases (the default, as fastai):
        steps 0 .. pct_start * total - 1:       lr initial_lr -> max_lr
        up to total - 1:                        lr max_lr -> min_lr
    three_phase=True (the paper):
        steps 0 .. pct_start * total - 1:       lr initial_lr -> max_lr
        up to 2 * pct_start * total - 2:        lr max_lr -> initial_lr
        up to total - 1:                        lr initial_lr -> min_lr

    With ``cycle_momentum`` the momentum (or Adam's beta1) mirrors the lr between
    ``max_momentum`` (low lr) and ``base_momentum`` (at max_lr); it stays at
    max_momentum in the third phase. Stepping past ``total_steps`` is an error.
    This scheduler sets the lr outright, so it does not chain with others.
    """

    def __init__(self, optimizer, max_lr, total_steps=None, epochs=None, steps_per_epoch=None, pct_start=0.3,
                 anneal_strategy="cos", cycle_momentum=True, base_momentum=0.85, max_momentum=0.95,
                 div_factor=25.0, final_div_factor=1e4, three_phase=False, last_epoch=-1):
        _check_optimizer(optimizer, "OneCycleLR")
        self.optimizer = optimizer

        if total_steps is not None:
            if not isinstance(total_steps, numbers.Integral) or total_steps <= 0:
                raise ValueError(f"OneCycleLR: total_steps must be a positive int, got {total_steps!r}")
            self.total_steps = total_steps
        elif epochs is not None and steps_per_epoch is not None:
            if not isinstance(epochs, numbers.Integral) or epochs <= 0:
                raise ValueError(f"OneCycleLR: epochs must be a positive int, got {epochs!r}")
            if not isinstance(steps_per_epoch, numbers.Integral) or steps_per_epoch <= 0:
                raise ValueError(f"OneCycleLR: steps_per_epoch must be a positive int, got {steps_per_epoch!r}")
            self.total_steps = epochs * steps_per_epoch
        else:
            raise ValueError("OneCycleLR: give either total_steps, or both epochs and steps_per_epoch "
                             f"(got total_steps={total_steps!r}, epochs={epochs!r}, "
                             f"steps_per_epoch={steps_per_epoch!r})")

        if not isinstance(pct_start, float) or not 0 <= pct_start <= 1:
            raise ValueError(f"OneCycleLR: pct_start must be a float between 0 and 1, got {pct_start!r}")
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(f"OneCycleLR: anneal_strategy must be 'cos' or 'linear', got {anneal_strategy!r}")
        self.anneal_strategy = anneal_strategy

        # (last step of the phase, lr from, lr to, momentum from, momentum to): names of group keys
        warm_end = float(pct_start * self.total_steps) - 1
        if three_phase:
            self._schedule_phases = [
                (warm_end, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
                (float(2 * pct_start * self.total_steps) - 2, "max_lr", "initial_lr", "base_momentum", "max_momentum"),
                (self.total_steps - 1, "initial_lr", "min_lr", "max_momentum", "max_momentum"),
            ]
        else:
            self._schedule_phases = [
                (warm_end, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
                (self.total_steps - 1, "max_lr", "min_lr", "base_momentum", "max_momentum"),
            ]

        max_lrs = _per_group(max_lr, optimizer, "max_lr values", "OneCycleLR")
        if last_epoch == -1:
            for max_lr_i, group in zip(max_lrs, optimizer.param_groups):
                group["initial_lr"] = max_lr_i / div_factor
                group["max_lr"] = max_lr_i
                group["min_lr"] = group["initial_lr"] / final_div_factor

        self.cycle_momentum = cycle_momentum
        if cycle_momentum:
            self.use_beta1 = _momentum_uses_betas(optimizer, "OneCycleLR")
            max_momentums = _per_group(max_momentum, optimizer, "max_momentum values", "OneCycleLR")
            base_momentums = _per_group(base_momentum, optimizer, "base_momentum values", "OneCycleLR")
            if last_epoch == -1:
                for max_m, base_m, group in zip(max_momentums, base_momentums, optimizer.param_groups):
                    _set_momentum(group, max_m, self.use_beta1)
                    group["max_momentum"] = max_m
                    group["base_momentum"] = base_m

        super().__init__(optimizer, last_epoch)

    def _anneal(self, start, end, pct):
        if self.anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def get_lr(self):
        step_num = self.last_epoch
        if step_num > self.total_steps:
            raise ValueError(f"OneCycleLR: stepped {step_num} times, but total_steps is {self.total_steps} "
                             "(make total_steps, or epochs * steps_per_epoch, cover the whole run)")
        lrs = []
        for group in self.optimizer.param_groups:
            start_step = 0.0
            for i, (end_step, lr_from, lr_to, m_from, m_to) in enumerate(self._schedule_phases):
                # the last phase also takes the step total_steps (one past its end)
                if step_num <= end_step or i == len(self._schedule_phases) - 1:
                    pct = (step_num - start_step) / (end_step - start_step)
                    lrs.append(self._anneal(group[lr_from], group[lr_to], pct))
                    if self.cycle_momentum:
                        _set_momentum(group, self._anneal(group[m_from], group[m_to], pct), self.use_beta1)
                    break
                start_step = end_step
        return lrs


class ReduceLROnPlateau(LRScheduler):
    """Multiply the lr by ``factor`` when a metric stops improving (``step(metric)``).

    Each ``step(metric)`` compares the metric with the best seen so far. It is an
    improvement when it beats the best by more than ``threshold`` (relative:
    ``best * (1 - threshold)`` in 'min' mode, ``best * (1 + threshold)`` in 'max';
    absolute: ``best -/+ threshold``). After more than ``patience`` epochs without
    improvement, every group's lr becomes ``max(lr * factor, min_lr)`` (changes
    smaller than ``eps`` are skipped), then ``cooldown`` epochs pass during which bad
    epochs are not counted.
    """

    def __init__(self, optimizer, mode="min", factor=0.1, patience=10, threshold=1e-4,
                 threshold_mode="rel", cooldown=0, min_lr=0, eps=1e-8):
        _check_optimizer(optimizer, "ReduceLROnPlateau")
        if factor >= 1.0:
            raise ValueError(f"ReduceLROnPlateau: factor should be < 1.0, got {factor}")
        self.factor = factor
        self.optimizer = optimizer
        if isinstance(min_lr, (list, tuple)):
            self.default_min_lr = None
            self.min_lrs = _per_group(min_lr, optimizer, "min_lrs", "ReduceLROnPlateau")
        else:
            self.default_min_lr = min_lr
            self.min_lrs = [min_lr] * len(optimizer.param_groups)
        self.patience = patience
        self.cooldown = cooldown
        self.eps = eps
        self.last_epoch = 0
        self._last_lr = self._current_lrs()
        self._init_is_better(mode, threshold, threshold_mode)
        self._reset()

    def _reset(self):
        self.best = self.mode_worse
        self.cooldown_counter = 0
        self.num_bad_epochs = 0

    def _init_is_better(self, mode, threshold, threshold_mode):
        if mode not in ("min", "max"):
            raise ValueError(f"ReduceLROnPlateau: mode {mode!r} is unknown (use 'min' or 'max')")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"ReduceLROnPlateau: threshold mode {threshold_mode!r} is unknown (use 'rel' or 'abs')")
        self.mode_worse = math.inf if mode == "min" else -math.inf
        self.mode, self.threshold, self.threshold_mode = mode, threshold, threshold_mode

    @property
    def in_cooldown(self):
        return self.cooldown_counter > 0

    def is_better(self, a, best):
        if self.mode == "min" and self.threshold_mode == "rel":
            return a < best * (1.0 - self.threshold)
        if self.mode == "min":
            return a < best - self.threshold
        if self.threshold_mode == "rel":
            return a > best * (self.threshold + 1.0)
        return a > best + self.threshold

    def step(self, metrics, epoch=None):
        current = float(metrics)   # a 0-d Tensor or array works too
        if epoch is None:
            epoch = self.last_epoch + 1
        else:
            warnings.warn(_EPOCH_DEPRECATION, UserWarning, stacklevel=2)
        self.last_epoch = epoch

        if self.is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.in_cooldown:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0   # bad epochs during cooldown do not count
        if self.num_bad_epochs > self.patience:
            self._reduce_lr()
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = self._current_lrs()

    def _reduce_lr(self):
        if len(self.optimizer.param_groups) != len(self.min_lrs):
            if self.default_min_lr is None:
                raise RuntimeError(f"ReduceLROnPlateau: the optimizer has {len(self.optimizer.param_groups)} "
                                   f"param groups but min_lr has {len(self.min_lrs)} values (a group was "
                                   "added after the scheduler was made); update scheduler.min_lrs")
            self.min_lrs = [self.default_min_lr] * len(self.optimizer.param_groups)
        for group, min_lr in zip(self.optimizer.param_groups, self.min_lrs):
            old_lr = float(group["lr"])
            new_lr = max(old_lr * self.factor, min_lr)
            if old_lr - new_lr > self.eps:
                group["lr"] = new_lr

    def load_state_dict(self, state_dict):
        self.__dict__.update(state_dict)
        self._init_is_better(self.mode, self.threshold, self.threshold_mode)


def _check_sub_schedulers(owner, optimizer, schedulers):
    for i, sched in enumerate(schedulers):
        if not hasattr(sched, "optimizer"):
            raise TypeError(f"{owner}: the scheduler at index {i} ({type(sched).__name__}) has no "
                            "`optimizer` attribute")
        if isinstance(sched, ReduceLROnPlateau):
            raise ValueError(f"{owner}: ReduceLROnPlateau (index {i}) cannot be combined: its step() "
                             "needs the metric")
        if optimizer is not sched.optimizer:
            raise ValueError(f"{owner}: all schedulers must drive the same optimizer, but the "
                             f"{type(sched).__name__} at index {i} has another one")


def _composite_state(sched):
    state = {k: v for k, v in sched.__dict__.items() if k not in ("optimizer", "_schedulers")}
    state["_schedulers"] = [s.state_dict() for s in sched._schedulers]
    return state


def _load_composite_state(sched, state_dict):
    state_dict = dict(state_dict)
    saved = state_dict.pop("_schedulers")
    sched.__dict__.update(state_dict)
    for s, s_state in zip(sched._schedulers, saved):
        s.load_state_dict(s_state)


class SequentialLR(LRScheduler):
    """Run schedulers one after another: ``schedulers[i]`` drives the lr from epoch
    ``milestones[i - 1]`` until ``milestones[i]``.

    E.g. 5 epochs of warmup then cosine::

        warm = LinearLR(opt, start_factor=0.1, total_iters=5)
        cos = CosineAnnealingLR(opt, T_max=95)
        sched = SequentialLR(opt, [warm, cos], milestones=[5])

    At a milestone the next scheduler starts from its epoch 0 (its closed form, from
    base_lr, where it has one), as if the earlier ones had not run. Building the
    sub-schedulers already stepped them once; the constructor takes that back.
    """

    def __init__(self, optimizer, schedulers, milestones, last_epoch=-1):
        if len(schedulers) < 1:
            raise ValueError("SequentialLR: expected at least one scheduler, got none")
        _check_sub_schedulers("SequentialLR", optimizer, schedulers)
        if len(milestones) != len(schedulers) - 1:
            raise ValueError(f"SequentialLR: expected one milestone fewer than schedulers, got "
                             f"{len(schedulers)} schedulers and milestones={list(milestones)!r}")
        self._schedulers = schedulers
        self._milestones = milestones
        self.last_epoch = last_epoch + 1
        self.optimizer = optimizer

        # start over from the initial lrs, and undo the step each sub-scheduler's constructor made
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"]
        self.recursive_undo()
        # only the scheduler that owns epoch 0 makes its first step
        idx = bisect_right(self._milestones, 0)
        self._schedulers[idx]._initial_step()
        self._last_lr = schedulers[idx].get_last_lr()

    def recursive_undo(self, sched=None):
        """Take one epoch back from every scheduler inside (nested composites too)."""
        sched = self if sched is None else sched
        if hasattr(sched, "_schedulers"):
            for s in sched._schedulers:
                self.recursive_undo(s)
        elif hasattr(sched, "last_epoch"):
            sched.last_epoch -= 1

    def step(self):
        self.last_epoch += 1
        idx = bisect_right(self._milestones, self.last_epoch)
        sched = self._schedulers[idx]
        if idx > 0 and self._milestones[idx - 1] == self.last_epoch:
            sched._update_lr(0)   # this scheduler's turn begins: its epoch 0
        else:
            sched.step()
        self._last_lr = sched.get_last_lr()

    def state_dict(self):
        """Its own counters plus every sub-scheduler's state_dict."""
        return _composite_state(self)

    def load_state_dict(self, state_dict):
        _load_composite_state(self, state_dict)


class ChainedScheduler(LRScheduler):
    """Step several schedulers together: one ``step()`` calls each scheduler's ``step()``
    in order, so their (recursive) effects multiply.

    E.g. ``ChainedScheduler([ConstantLR(opt, factor=0.1, total_iters=2),
    ExponentialLR(opt, gamma=0.9)])`` gives lr = base_lr * 0.1 * 0.9 ** epoch for
    two epochs and base_lr * 0.9 ** epoch after.
    """

    def __init__(self, schedulers, optimizer=None):
        if len(schedulers) < 1:
            raise ValueError("ChainedScheduler: expected at least one scheduler, got none")
        optimizer = optimizer or schedulers[0].optimizer
        _check_sub_schedulers("ChainedScheduler", optimizer, schedulers)
        self._schedulers = schedulers
        self.optimizer = optimizer
        self._last_lr = [group["lr"] for group in self._schedulers[-1].optimizer.param_groups]

    def step(self):
        for sched in self._schedulers:
            sched.step()
        self._last_lr = [group["lr"] for group in self._schedulers[-1].optimizer.param_groups]

    def state_dict(self):
        """Its own attributes plus every sub-scheduler's state_dict."""
        return _composite_state(self)

    def load_state_dict(self, state_dict):
        _load_composite_state(self, state_dict)
