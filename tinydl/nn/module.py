"""``nn.Module``: the base class of every layer and network.

A Module is a tree. Each node keeps three ordered tables, filled by plain
attribute assignment in ``__init__``::

    self.fc = nn.Linear(4, 3)            # a Module      -> self._modules['fc']
    self.scale = nn.Parameter(td.ones(3))  # a Parameter -> self._parameters['scale']
    self.register_buffer('mean', td.zeros(3))  # state that is saved but not trained

Everything else follows from walking that tree depth-first in registration
order, exactly as PyTorch does, so the names line up with PyTorch's:
``parameters()`` (for the optimizer), ``state_dict()`` (for saving: keys such as
``features.0.weight`` or ``bn.running_mean``), ``train()``/``eval()`` (a flag
that dropout and batch norm read), ``to()`` (move or cast every tensor).

``module(x)`` calls ``module.forward(x)`` (plus any forward hooks).
"""
import itertools
from collections import OrderedDict, namedtuple

from ..backend import Device, parse_device, to_device, get_array_module
from ..tensor import Tensor, _normalize_dtype, float16, float32, float64
from .parameter import Parameter

__all__ = ["Module"]


class _IncompatibleKeys(namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])):
    """What ``load_state_dict`` returns: the keys that did not match (strict=False)."""

    def __repr__(self):
        if not self.missing_keys and not self.unexpected_keys:
            return "<All keys matched successfully>"
        return super().__repr__()

    __str__ = __repr__


class RemovableHandle:
    """Returned by ``register_forward_hook``; ``handle.remove()`` unregisters the hook."""

    _next_id = 0

    def __init__(self, hooks):
        self.hooks = hooks
        self.id = RemovableHandle._next_id
        RemovableHandle._next_id += 1

    def remove(self):
        self.hooks.pop(self.id, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


def _indent_tail(text, spaces):
    """Indent all lines but the first (which follows ``(name): `` in the parent's repr)."""
    lines = text.split("\n")
    return "\n".join(lines[:1] + [" " * spaces + line for line in lines[1:]])


def _check_name(kind, name):
    """The checks PyTorch makes before registering a parameter, buffer or submodule."""
    if not isinstance(name, str):
        raise TypeError(f"{kind} name should be a string, got {type(name).__name__}")
    if name == "":
        raise KeyError(f'{kind} name can\'t be empty string ""')
    if "." in name:
        raise KeyError(f'{kind} name can\'t contain ".", got: {name}')


def _as_array(value):
    """The array behind a state_dict value: a Tensor, a NumPy/CuPy array or anything
    with ``__array__`` (a CPU torch.Tensor); None if it is none of these."""
    if isinstance(value, Tensor):
        return value.array
    if hasattr(value, "__array__") and hasattr(value, "shape"):
        if type(value).__module__.startswith("cupy"):
            return value
        import numpy as np
        if hasattr(value, "detach"):    # a torch tensor that may require grad
            value = value.detach()
        return np.asarray(value)
    return None


class Module:
    """Base class for all layers and networks (``torch.nn.Module`` semantics).

    Subclasses call ``super().__init__()`` first, assign their Parameters,
    buffers and submodules as attributes, and define ``forward``.
    """

    def __init__(self):
        # object.__setattr__: our own __setattr__ needs these tables to exist.
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent_buffers_set", set())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_forward_pre_hooks", OrderedDict())
        object.__setattr__(self, "_forward_hooks", OrderedDict())

    # ================================================================ forward
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f'Module [{type(self).__name__}] is missing the required "forward" function')

    def __call__(self, *args, **kwargs):
        if self._forward_pre_hooks:     # (a test instead of an empty loop: this runs for every layer)
            for hook in list(self._forward_pre_hooks.values()):
                result = hook(self, args)
                if result is not None:      # a pre-hook may replace the inputs
                    args = result if isinstance(result, tuple) else (result,)
        output = self.forward(*args, **kwargs)
        if self._forward_hooks:
            for hook in list(self._forward_hooks.values()):
                result = hook(self, args, output)
                if result is not None:      # a hook may replace the output
                    output = result
        return output

    def register_forward_pre_hook(self, hook):
        """``hook(module, args) -> None or new args``, run before every forward."""
        handle = RemovableHandle(self._forward_pre_hooks)
        self._forward_pre_hooks[handle.id] = hook
        return handle

    def register_forward_hook(self, hook):
        """``hook(module, args, output) -> None or new output``, run after every forward
        (e.g. to record feature maps for visualisation)."""
        handle = RemovableHandle(self._forward_hooks)
        self._forward_hooks[handle.id] = hook
        return handle

    # ================================================================ registration
    def register_parameter(self, name, param):
        """Add a Parameter (or None: a declared but absent parameter, like ``bias=False``)."""
        if "_parameters" not in self.__dict__:
            raise AttributeError("cannot assign parameter before Module.__init__() call")
        _check_name("parameter", name)
        if hasattr(self, name) and name not in self._parameters:
            raise KeyError(f"attribute '{name}' already exists")
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"cannot assign '{type(param).__name__}' object to parameter '{name}' "
                            "(nn.Parameter or None required)")
        self._parameters[name] = param

    def register_buffer(self, name, tensor, persistent=True):
        """Add state that is not trained: saved in ``state_dict`` when ``persistent``,
        moved by ``to()``, never returned by ``parameters()`` (batch norm's running mean)."""
        if "_buffers" not in self.__dict__:
            raise AttributeError("cannot assign buffer before Module.__init__() call")
        _check_name("buffer", name)
        if hasattr(self, name) and name not in self._buffers:
            raise KeyError(f"attribute '{name}' already exists")
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"cannot assign '{type(tensor).__name__}' object to buffer '{name}' "
                            "(Tensor or None required)")
        self._buffers[name] = tensor
        if persistent:
            self._non_persistent_buffers_set.discard(name)
        else:
            self._non_persistent_buffers_set.add(name)

    def add_module(self, name, module):
        """Add a child module (names may be digits: that is how Sequential names its layers)."""
        if "_modules" not in self.__dict__:
            raise AttributeError("cannot assign module before Module.__init__() call")
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{type(module).__name__} is not a Module subclass")
        _check_name("module", name)
        if hasattr(self, name) and name not in self._modules:
            raise KeyError(f"attribute '{name}' already exists")
        self._modules[name] = module

    register_module = add_module

    def __setattr__(self, name, value):
        # A name lives in exactly one place; assigning a new kind of value moves it.
        params = self.__dict__.get("_parameters")
        if isinstance(value, Parameter):
            if params is None:
                raise AttributeError("cannot assign parameters before Module.__init__() call")
            self._forget(name, keep="_parameters")
            self.register_parameter(name, value)
            return
        if params is not None and name in params:
            if value is not None:
                raise TypeError(f"cannot assign '{type(value).__name__}' as parameter '{name}' "
                                "(nn.Parameter or None expected)")
            params[name] = None
            return
        modules = self.__dict__.get("_modules")
        if isinstance(value, Module):
            if modules is None:
                raise AttributeError("cannot assign module before Module.__init__() call")
            self._forget(name, keep="_modules")
            modules[name] = value
            return
        if modules is not None and name in modules:
            if value is not None:
                raise TypeError(f"cannot assign '{type(value).__name__}' as child module '{name}' "
                                "(nn.Module or None expected)")
            modules[name] = None
            return
        buffers = self.__dict__.get("_buffers")
        if buffers is not None and name in buffers:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"cannot assign '{type(value).__name__}' as buffer '{name}' "
                                "(Tensor or None expected)")
            buffers[name] = value
            return
        object.__setattr__(self, name, value)

    def _forget(self, name, keep):
        """Remove ``name`` from every table but ``keep`` (and from the plain attributes)."""
        self.__dict__.pop(name, None)
        for table in ("_parameters", "_buffers", "_modules"):
            if table != keep:
                self.__dict__[table].pop(name, None)
        if keep != "_buffers":
            self._non_persistent_buffers_set.discard(name)

    def __getattr__(self, name):
        # Called only when normal lookup fails. self.__dict__ (not self._parameters)
        # so that a half-built object (copy.deepcopy, unpickling) cannot recurse.
        d = self.__dict__
        for table in ("_parameters", "_buffers", "_modules"):
            entries = d.get(table)
            if entries is not None and name in entries:
                return entries[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name):
        for table in ("_parameters", "_buffers", "_modules"):
            if name in self.__dict__.get(table, ()):
                del self.__dict__[table][name]
                self._non_persistent_buffers_set.discard(name)
                return
        object.__delattr__(self, name)

    def __dir__(self):
        names = itertools.chain(super().__dir__(), self._parameters, self._buffers, self._modules)
        return sorted({n for n in names if not n[:1].isdigit()})

    def get_submodule(self, target):
        """The module at dotted path ``target`` ('' is self), e.g. ``'features.0'``."""
        module = self
        if target == "":
            return module
        for item in target.split("."):
            if item not in module._modules or module._modules[item] is None:
                raise AttributeError(f"{type(module).__name__} has no submodule `{item}` (looking for '{target}')")
            module = module._modules[item]
        return module

    # ================================================================ iteration
    def named_modules(self, memo=None, prefix="", remove_duplicate=True):
        """(dotted name, module) for self ('' ) and every descendant, depth-first in
        registration order; a module reachable by two paths is listed once."""
        if memo is None:
            memo = set()
        if id(self) in memo:
            return
        if remove_duplicate:
            memo.add(id(self))
        yield prefix, self
        for name, module in self._modules.items():
            if module is not None:
                yield from module.named_modules(memo, prefix + ("." if prefix else "") + name, remove_duplicate)

    def modules(self):
        for _, module in self.named_modules():
            yield module

    def named_children(self):
        seen = set()
        for name, module in self._modules.items():
            if module is not None and id(module) not in seen:
                seen.add(id(module))
                yield name, module

    def children(self):
        for _, module in self.named_children():
            yield module

    def _named_members(self, table, prefix, recurse, remove_duplicate):
        seen = set()
        modules = (self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate)
                   if recurse else [(prefix, self)])
        for module_prefix, module in modules:
            for name, value in getattr(module, table).items():
                if value is None or id(value) in seen:
                    continue
                if remove_duplicate:
                    seen.add(id(value))    # a Parameter shared by two layers is trained once
                yield module_prefix + ("." if module_prefix else "") + name, value

    def named_parameters(self, prefix="", recurse=True, remove_duplicate=True):
        return self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse=True):
        for _, param in self.named_parameters(recurse=recurse):
            yield param

    def named_buffers(self, prefix="", recurse=True, remove_duplicate=True):
        """Every buffer, persistent or not (only the persistent ones go to state_dict)."""
        return self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse=True):
        for _, buf in self.named_buffers(recurse=recurse):
            yield buf

    def num_parameters(self, only_trainable=False):
        """Number of scalar weights (shared parameters counted once)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not only_trainable)

    # ================================================================ state dict
    def _save_to_state_dict(self, destination, prefix, keep_vars):
        """This module's own entries: parameters first, then persistent buffers."""
        for name, param in self._parameters.items():
            if param is not None:
                destination[prefix + name] = param if keep_vars else param.detach()
        for name, buf in self._buffers.items():
            if buf is not None and name not in self._non_persistent_buffers_set:
                destination[prefix + name] = buf if keep_vars else buf.detach()

    def state_dict(self, destination=None, prefix="", keep_vars=False):
        """OrderedDict name -> Tensor of every parameter and persistent buffer, with
        PyTorch's key names and order. The Tensors are detached but share memory with
        the module (copy them if the module will keep training and you want a snapshot)."""
        if destination is None:
            destination = OrderedDict()
        self._save_to_state_dict(destination, prefix, keep_vars)
        for name, module in self._modules.items():
            if module is not None:
                module.state_dict(destination=destination, prefix=prefix + name + ".", keep_vars=keep_vars)
        return destination

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict,
                              missing_keys, unexpected_keys, error_msgs):
        """Copy this module's own entries out of ``state_dict`` (keys under ``prefix``).

        Same signature as PyTorch's hook, so a layer can override it (e.g. to
        accept checkpoints from an older layout). ``local_metadata`` is always {}.
        """
        local = [(n, t) for n, t in itertools.chain(
            self._parameters.items(),
            ((n, b) for n, b in self._buffers.items() if n not in self._non_persistent_buffers_set))
            if t is not None]
        for name, target in local:
            key = prefix + name
            if key not in state_dict:
                if strict:
                    missing_keys.append(key)
                continue
            value = state_dict[key]
            src = _as_array(value)
            if src is None:
                error_msgs.append(f'While copying the parameter named "{key}", expected a Tensor or an array '
                                  f"from checkpoint but received {type(value)}")
                continue
            if target.ndim == 0 and tuple(src.shape) == (1,):
                src = src.reshape(())   # old checkpoints stored scalars as shape (1,)
            if tuple(src.shape) != target.shape:
                error_msgs.append(f"size mismatch for {key}: copying a param with shape {tuple(src.shape)} "
                                  f"from checkpoint, the shape in current model is {target.shape}.")
                continue
            try:
                # In place, into the model's own array: keeps its device and dtype
                # (a float64 checkpoint loads into a float32 model as float32).
                target.array[...] = to_device(src, target.device)
                target._bump_version()
            except Exception as exc:
                error_msgs.append(f'While copying the parameter named "{key}", whose dimensions in the model are '
                                  f"{target.shape} and whose dimensions in the checkpoint are {tuple(src.shape)}, "
                                  f"an exception occurred: {exc!r}.")
        if strict:
            own = {n for n, _ in local}
            for key in state_dict:
                if not key.startswith(prefix):
                    continue
                head, dot, _ = key[len(prefix):].partition(".")
                # "a.b" must belong to a child "a"; a plain "a" to this module itself.
                if (dot and head not in self._modules) or (not dot and head not in own):
                    unexpected_keys.append(key)

    def load_state_dict(self, state_dict, strict=True):
        """Copy parameters and buffers from ``state_dict`` into this module, in place.

        Values may be Tensors, NumPy or CuPy arrays (or CPU torch tensors); they
        are copied into the existing arrays, so each parameter keeps its device,
        dtype and identity (an optimizer built earlier keeps working). With
        ``strict`` the keys must match exactly; shape mismatches are errors either
        way. Returns ``(missing_keys, unexpected_keys)``.
        """
        if not hasattr(state_dict, "keys") or not hasattr(state_dict, "__getitem__"):
            raise TypeError(f"Expected state_dict to be dict-like, got {type(state_dict)}.")
        state_dict = OrderedDict(state_dict)
        bad_keys = [k for k in state_dict if not isinstance(k, str)]
        if bad_keys:
            raise TypeError(f"load_state_dict: keys must be parameter names (str), got {bad_keys[:5]!r}; "
                            "is this an optimizer's state_dict?")
        missing, unexpected, errors = [], [], []

        def load(module, local_state, prefix=""):
            module._load_from_state_dict(local_state, prefix, {}, True, missing, unexpected, errors)
            for name, child in module._modules.items():
                if child is not None:
                    child_prefix = prefix + name + "."
                    load(child, {k: v for k, v in local_state.items() if k.startswith(child_prefix)}, child_prefix)

        load(self, state_dict)
        if strict:
            if unexpected:
                errors.insert(0, "Unexpected key(s) in state_dict: {}. ".format(", ".join(f'"{k}"' for k in unexpected)))
            if missing:
                errors.insert(0, "Missing key(s) in state_dict: {}. ".format(", ".join(f'"{k}"' for k in missing)))
        if errors:
            raise RuntimeError("Error(s) in loading state_dict for {}:\n\t{}".format(
                type(self).__name__, "\n\t".join(errors)))
        return _IncompatibleKeys(missing, unexpected)

    # ================================================================ modes
    def train(self, mode=True):
        """Set the ``training`` flag of this module and all its descendants (dropout,
        batch norm behave differently in training and evaluation)."""
        if not isinstance(mode, bool):
            raise ValueError("training mode is expected to be boolean")
        self.training = mode
        for module in self.children():
            module.train(mode)
        return self

    def eval(self):
        return self.train(False)

    def requires_grad_(self, requires_grad=True):
        """Freeze (False) or unfreeze every parameter, e.g. a pretrained backbone."""
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none=True):
        """Forget the gradients of the last backward pass (they accumulate otherwise)."""
        for p in self.parameters():
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                # A fresh zero array rather than zeroing in place: a grad array can be
                # shared with another leaf or with the caller's upstream gradient.
                p.grad.array = get_array_module(p.grad.array).zeros_like(p.grad.array)

    def apply(self, fn):
        """Call ``fn(module)`` on every descendant, then on self (e.g. a custom init)."""
        for module in self.children():
            module.apply(fn)
        fn(self)
        return self

    # ================================================================ device and dtype
    def _apply(self, fn):
        """Replace the array of every parameter, its gradient and every buffer by
        ``fn(array)``, keeping the Tensor objects: an optimizer that holds these
        Parameters sees the moved or cast data."""
        done = set()
        for module in self.modules():
            for t in itertools.chain(module._parameters.values(), module._buffers.values()):
                if t is None or id(t) in done:
                    continue
                done.add(id(t))
                t.array = fn(t.array)
                if t.grad is not None:
                    t.grad.array = fn(t.grad.array)
        return self

    def to(self, *args, **kwargs):
        """``to(device)``, ``to(dtype)``, ``to(device, dtype)``, ``to(tensor)``; in place, returns self.

        A dtype applies to floating-point parameters and buffers only (batch norm's
        integer ``num_batches_tracked`` stays int64), as in PyTorch.
        """
        device, dtype = kwargs.pop("device", None), kwargs.pop("dtype", None)
        kwargs.pop("non_blocking", None)
        if kwargs:
            raise TypeError(f"to() got unexpected keyword arguments {sorted(kwargs)}")
        for a in args:
            if isinstance(a, Tensor):
                device, dtype = a.device, a.dtype
            elif isinstance(a, (str, Device)):
                device = a
            elif isinstance(a, bool):
                continue   # positional non_blocking
            else:
                dtype = a
        if dtype is not None:
            dtype = _normalize_dtype(dtype)
            if dtype.kind != "f":
                raise TypeError(f"nn.Module.to only accepts floating point dtypes, but got desired dtype={dtype}")
        if device is not None:
            device = parse_device(device)

        def convert(a):
            if dtype is not None and a.dtype.kind == "f" and a.dtype != dtype:
                a = a.astype(dtype)
            if device is not None:
                a = to_device(a, device)
            return a

        return self._apply(convert)

    def cuda(self, device=None):
        return self.to("cuda" if device is None else f"cuda:{device}")

    def cpu(self):
        return self.to("cpu")

    def float(self):
        return self.to(float32)

    def double(self):
        return self.to(float64)

    def half(self):
        return self.to(float16)

    # ================================================================ printing
    def extra_repr(self):
        """The layer's settings, shown inside its parentheses (override in layers)."""
        return ""

    def _get_name(self):
        return type(self).__name__

    def __repr__(self):
        extra = self.extra_repr()
        extra_lines = extra.split("\n") if extra else []
        child_lines = [f"({name}): " + _indent_tail(repr(module), 2) for name, module in self._modules.items()]
        if not child_lines and len(extra_lines) <= 1:
            return f"{self._get_name()}({extra})"
        body = "".join("\n  " + line for line in extra_lines + child_lines)
        return f"{self._get_name()}({body}\n)"
