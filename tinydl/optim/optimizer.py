"""The Optimizer base class: parameter groups, per-parameter state, state_dict.

An optimizer owns

  ``param_groups``  a list of dicts; each holds ``'params'`` (a list of Tensors) and
                    the hyperparameters of that group (``'lr'``, ``'momentum'``, ...).
                    Groups let one model use, e.g., a smaller lr for a pretrained
                    backbone than for a fresh head;
  ``state``         a dict keyed by the parameter Tensor itself, holding that
                    parameter's running buffers (momentum, moment estimates...) as raw
                    arrays on the parameter's device, plus a Python-int ``'step'``.

``step()`` hands each group's parameters that have a gradient to ``_update_group``,
which calls the subclass's ``_update(p, grad, group)`` for each (a subclass may update
several at once instead: SGD's foreach); ``_update`` changes ``p.array`` in place with
plain array code.
The update is not part of any graph: it works on raw arrays, so no graph is recorded.

Two rules every ``_update`` follows:

* never write into ``grad``: autograd may hand the very same array to several
  tensors (``a + b`` gives its upstream gradient to both), so writing into one
  parameter's gradient would change another's;
* hyperparameters are turned into Python floats before touching arrays, so that a
  float32 parameter stays float32 (a NumPy float64 scalar would promote it).

``state_dict()`` / ``load_state_dict()`` use PyTorch's layout: parameters are replaced
by their position (0, 1, 2, ... over all groups, in order), so a checkpoint can be
loaded into a new optimizer built over a new copy of the same model.
"""
import copy
import os
import sys
import warnings
from collections import defaultdict

from .. import backend
from ..autograd import enable_grad, zero_grads
from ..tensor import Tensor

__all__ = ["Optimizer", "required"]


class _RequiredParameter:
    """Marks a hyperparameter that has no default: every group must give it."""

    def __repr__(self):
        return "<required parameter>"


required = _RequiredParameter()


def _is_array(x):
    return hasattr(x, "dtype") and hasattr(x, "shape") and not isinstance(x, Tensor)


def _outside_optim():
    """The ``stacklevel`` of the first frame outside tinydl/optim: a warning points at the user's line."""
    here, level, frame = os.path.dirname(__file__), 1, sys._getframe(1)
    while frame is not None and os.path.dirname(frame.f_code.co_filename) == here:
        level, frame = level + 1, frame.f_back
    return level


def check_torch_flags(name, foreach=None, fused=None, differentiable=False, capturable=False,
                      capturable_supported=False):
    """PyTorch's switches between implementations, accepted so that its scripts run:
    ``foreach`` and ``fused`` leave the loop to tinydl's dispatcher (kernels/), which takes
    its fused or flat loops where they are faster; a differentiable step is refused."""
    if foreach and fused:
        raise RuntimeError(f"{name}: `fused` and `foreach` cannot be `True` together")
    if differentiable:
        raise NotImplementedError(f"{name}: differentiable=True is not supported: the step runs outside the graph")
    if capturable and not capturable_supported:
        raise NotImplementedError(f"{name}: capturable=True is not supported (Adam and AdamW have it, for CUDA "
                                  f"graphs)")


class Optimizer:
    """Base class of all optimizers (PyTorch's ``torch.optim.Optimizer``).

    Args:
        params: an iterable of Tensors, of ``(name, Tensor)`` pairs (e.g.
            ``model.named_parameters()``), or of dicts, each a parameter group
            ``{'params': [...], 'lr': ..., ...}`` whose missing options come from
            ``defaults``.
        defaults: the default value of every hyperparameter of this optimizer.

    Subclasses set their defaults, may check a group's values in
    ``_check_group(group)``, and implement ``_update(p, grad, group)`` (and may override
    ``_update_group(params, group)``).
    """

    def __init__(self, params, defaults):
        self.defaults = defaults
        if isinstance(params, Tensor):
            raise TypeError(f"{type(self).__name__}: params should be an iterable of Tensors or "
                            f"dicts, but got a single Tensor (wrap it in a list: [p])")
        if isinstance(params, set):
            raise TypeError(f"{type(self).__name__}: parameters must be given in an ordered collection "
                            "(a list), not a set: the order of a set changes between runs, and the "
                            "state_dict refers to parameters by position")
        self.state = defaultdict(dict)
        self.param_groups = []
        param_groups = list(params)
        if len(param_groups) == 0:
            raise ValueError(f"{type(self).__name__} got an empty parameter list")
        if not isinstance(param_groups[0], dict):
            param_groups = [{"params": param_groups}]
        for group in param_groups:
            self.add_param_group(group)
        self._step_count = 0   # read by lr schedulers to warn about a wrong call order

    # ------------------------------------------------------------ groups
    def add_param_group(self, param_group):
        """Add a group of parameters with its own options (e.g. when unfreezing layers)."""
        name = type(self).__name__
        if not isinstance(param_group, dict):
            raise TypeError(f"{name}.add_param_group: param_group must be a dict, got {type(param_group).__name__}")
        param_group = dict(param_group)   # never change the caller's dict
        params = param_group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, set):
            raise TypeError(f"{name}: parameters must be given in an ordered collection (a list), "
                            "not a set: the order of a set changes between runs, and the state_dict "
                            "refers to parameters by position")
        params = list(params)

        # named parameters: [(name, tensor), ...] as model.named_parameters() gives
        names = [p[0] for p in params if isinstance(p, tuple)]
        if names:
            if len(names) != len(params):
                raise ValueError(f"{name}: either all parameters have names or none do")
            param_group["param_names"] = names
            params = [p[1] for p in params]
        for i, p in enumerate(params):
            if not isinstance(p, Tensor):
                raise TypeError(f"{name} can only optimize Tensors, but parameter {i} is a {type(p).__name__}")
            if p.grad_fn is not None:
                raise ValueError(f"{name} can't optimize a non-leaf Tensor (parameter {i} of shape "
                                 f"{p.shape} was produced by {p.grad_fn!r}); pass the leaf, or detach() it")
        param_group["params"] = params

        for key, default in self.defaults.items():
            if default is required and key not in param_group:
                raise ValueError(f"{name}: parameter group didn't specify a value of required "
                                 f"optimization parameter {key}")
            param_group.setdefault(key, default)

        first, twice = {}, []
        for i, p in enumerate(params):
            j = first.setdefault(id(p), i)
            if j != i:
                twice.append(f"{j} and {i} (shape {p.shape})")
        if twice:
            where = ", ".join(twice)
            warnings.warn(f"{name}: a parameter group lists the same parameter twice (positions {where}); "
                          "it would be updated twice per step", stacklevel=_outside_optim())
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in params):
            raise ValueError(f"{name}: some parameters appear in more than one parameter group")
        if any(("param_names" in g) != ("param_names" in param_group) for g in self.param_groups):
            raise ValueError(f"{name}: all parameter groups should be with names or all without")

        self._check_group(param_group)
        self.param_groups.append(param_group)

    def _check_group(self, group):
        """Raise a clear ValueError on a bad hyperparameter (subclasses)."""

    # ------------------------------------------------------------ the update
    def zero_grad(self, set_to_none=True):
        """Forget the gradients of every parameter (``autograd.zero_grads``).

        ``set_to_none=True`` (the default) drops them: the next backward creates
        fresh ones, and ``step`` skips parameters whose grad is None.
        ``set_to_none=False`` sets them to zeros instead (a new array).
        """
        zero_grads((p for group in self.param_groups for p in group["params"]), set_to_none)

    def step(self, closure=None):
        """Update every parameter that has a gradient; return ``closure()``'s loss.

        ``closure`` re-evaluates the model and returns the loss (needed by
        optimizers that look at the loss several times per step; harmless here).
        """
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        for group in self.param_groups:
            # the parameters not reached by backward (frozen or unused) are left alone
            params = [p for p in group["params"] if p.grad is not None]
            try:
                self._update_group(params, group)
            finally:                  # a graph that saved p before this step can no longer backward
                for p in params:
                    p._bump_version()
        self._step_count += 1
        return loss

    def _update_group(self, params, group):
        """Update ``params``, the parameters of ``group`` that have a gradient: one at a time
        through ``_update`` (a subclass may update several at once)."""
        for p in params:
            self._update(p, p.grad.array, group)

    def _update(self, p, grad, group):
        """Change ``p.array`` in place from ``grad`` (an array; read it, never write it)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement _update")

    @staticmethod
    def _descent_gradient(grad, x, group):
        """The gradient every optimizer starts from: negated for ``maximize``, plus
        ``weight_decay * x`` (L2 regularisation, PyTorch's coupled form). A new
        array whenever it differs from ``grad``: ``grad`` itself is never written."""
        g = -grad if group["maximize"] else grad
        wd = float(group["weight_decay"])
        if wd != 0:
            g = g + wd * x
        return g

    # ------------------------------------------------------------ checkpoints
    def state_dict(self):
        """The optimizer's state, with parameters replaced by their positions.

        ``{'state': {index: {'step': int, 'exp_avg': array, ...}},`` (a capturable Adam's
        step: a 0-d array)
        'param_groups': [{'lr': ..., ..., 'params': [indices]}]}``.
        As in PyTorch, the arrays are the optimizer's own buffers (no copy): save
        them (``td.save``) or copy them before training on if you keep the dict.
        """
        index_of = {}
        packed_groups = []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            for p in group["params"]:
                index_of.setdefault(id(p), len(index_of))
            packed["params"] = [index_of[id(p)] for p in group["params"]]
            packed_groups.append(packed)
        packed_state = {(index_of[id(k)] if isinstance(k, Tensor) else k): dict(v)
                        for k, v in self.state.items()}
        return {"state": packed_state, "param_groups": packed_groups}

    def load_state_dict(self, state_dict):
        """Load a ``state_dict()``: indices are mapped back to this optimizer's parameters.

        Arrays are copied onto each parameter's device, floating ones cast to its
        dtype, so a checkpoint written on 'cuda' loads on 'cpu' and vice versa. The
        loaded dict is not aliased: training on does not change it.
        """
        name = type(self).__name__
        groups = self.param_groups
        saved_groups = copy.deepcopy(state_dict["param_groups"])
        if len(groups) != len(saved_groups):
            raise ValueError(f"{name}.load_state_dict: the state dict has {len(saved_groups)} parameter "
                             f"groups, this optimizer has {len(groups)}")
        for i, (g, s) in enumerate(zip(groups, saved_groups)):
            if len(g["params"]) != len(s["params"]):
                raise ValueError(f"{name}.load_state_dict: parameter group {i} has {len(s['params'])} "
                                 f"parameters in the state dict but {len(g['params'])} here")
        for i, (g, s) in enumerate(zip(groups, saved_groups)):
            foreign = sorted(set(s) - set(g) - _ANY_OPTIMIZERS_GROUP_KEYS)
            if foreign:     # (PyTorch fails later, at a step, with a KeyError)
                raise ValueError(f"{name}.load_state_dict: parameter group {i} of the state dict has settings "
                                 f"{name} does not have ({', '.join(map(str, foreign))}): the state dict of "
                                 "another optimizer?")
        id_map = {saved: p for g, s in zip(groups, saved_groups)
                  for saved, p in zip(s["params"], g["params"])}

        state = defaultdict(dict)
        for key, value in state_dict["state"].items():
            if key in id_map:
                p = id_map[key]
                state[p] = {k: _cast_state_value(p, k, v) for k, v in value.items()}
            else:
                state[key] = value   # state not tied to a parameter: keep as is

        new_groups = []
        for g, s in zip(groups, saved_groups):
            s["params"] = g["params"]
            for key, value in g.items():    # a setting an older checkpoint lacks: this group's
                s.setdefault(key, value)
            new_groups.append(s)
        self.state = state
        self.param_groups = new_groups

    def __repr__(self):
        lines = [type(self).__name__ + " ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {group[k]}" for k in sorted(group) if k not in ("params", "param_names")]
        return "\n".join(lines) + "\n)"


#: keys a param group may hold whatever the optimizer: the parameters and their names, what
#: LR schedulers and SWA add, and PyTorch's implementation flags (a torch state dict loads)
_ANY_OPTIMIZERS_GROUP_KEYS = {"params", "param_names", "initial_lr", "max_lr", "min_lr", "base_momentum",
                              "max_momentum", "swa_lr", "foreach", "fused", "capturable", "differentiable",
                              "maximize", "decoupled_weight_decay"}


def _cast_state_value(p, key, value):
    """A copy of one state entry, living where ``p`` lives (arrays) or as saved (scalars)."""
    if isinstance(value, Tensor):
        value = value.array
    if key == "step":
        # A step count is a Python int here (PyTorch keeps a float tensor): accept both.
        return int(value.item()) if _is_array(value) else int(value)
    if _is_array(value):
        value = backend.to_device(value, p.device)
        dtype = p.dtype if (p.dtype.kind == "f" and value.dtype.kind == "f") else value.dtype
        return value.astype(dtype, copy=True)   # a copy: never alias the loaded dict
    if isinstance(value, dict):
        return {k: _cast_state_value(p, k, v) for k, v in value.items()}
    return copy.deepcopy(value)
