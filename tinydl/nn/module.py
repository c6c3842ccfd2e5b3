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

from ..autograd import Function, RemovableHandle, zero_grads
from ..backend import Device, parse_device, to_device
from ..tensor import Tensor, _normalize_dtype, float16, float32, float64
from .parameter import Parameter

#: the state_dict key of a module's ``get_extra_state()`` (after its prefix), as PyTorch's
_EXTRA_STATE = "_extra_state"

__all__ = ["Module"]


class _IncompatibleKeys(namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])):
    """What ``load_state_dict`` returns: the keys that did not match (strict=False)."""

    def __repr__(self):
        if not self.missing_keys and not self.unexpected_keys:
            return "<All keys matched successfully>"
        return super().__repr__()

    __str__ = __repr__


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


class _BackwardHooks:
    """The module's full backward hooks for one call: its tensor inputs and outputs each pass
    through an identity op (``_HookPoint``) whose backward sees all their gradients at once,
    as PyTorch's BackwardHook: the outputs' one runs the pre-hooks on grad_output, the
    inputs' one the hooks on (grad_input, grad_output)."""

    def __init__(self, module):
        self.module, self.grad_output, self.n_inputs, self.inputs_watched = module, None, 0, False

    def watch_inputs(self, args):
        at = [i for i, a in enumerate(args) if isinstance(a, Tensor)]
        self.n_inputs = len(at)
        watched = [i for i in at if args[i].requires_grad]
        if not watched:
            return args
        self.inputs_watched, self.input_at = True, [at.index(i) for i in watched]
        outs = _HookPoint.apply(*[args[i] for i in watched], call=self.inputs_done)
        args = list(args)
        for i, t in zip(watched, outs):
            args[i] = t
        return tuple(args)

    def watch_outputs(self, output):
        single = isinstance(output, Tensor)
        items = [output] if single else list(output) if isinstance(output, (tuple, list)) else []
        watched = [k for k, t in enumerate(items) if isinstance(t, Tensor) and t.requires_grad]
        if not watched:
            return output
        self.n_outputs, self.output_at = len(items), watched
        outs = _HookPoint.apply(*[items[k] for k in watched], call=self.outputs_done)
        for k, t in zip(watched, outs):
            items[k] = t
        return items[0] if single else type(output)(items)

    def outputs_done(self, grads):
        """The gradients of the outputs (those that need one): the pre-hooks may replace them."""
        full = [None] * self.n_outputs
        for k, g in zip(self.output_at, grads):
            full[k] = g
        full = tuple(full)
        for hook in list(self.module._backward_pre_hooks.values()):
            new = hook(self.module, full)
            if new is not None:
                full = tuple(new) if isinstance(new, (tuple, list)) else (new,)
        self.grad_output = full
        if not self.inputs_watched:         # no input needs a gradient: the hooks run now
            self._run_hooks((None,) * self.n_inputs)
        return [full[k] for k in self.output_at]

    def inputs_done(self, grads):
        full = [None] * self.n_inputs
        for j, g in zip(self.input_at, grads):
            full[j] = g
        full = self._run_hooks(tuple(full))
        return [full[j] for j in self.input_at]

    def _run_hooks(self, grad_input):
        for hook in list(self.module._backward_hooks.values()):
            new = hook(self.module, grad_input, self.grad_output)
            if new is not None:
                grad_input = tuple(new) if isinstance(new, (tuple, list)) else (new,)
        return grad_input


class _HookPoint(Function):
    """y_i = x_i (an identity) whose backward hands the gradients of all its outputs to
    ``call`` at once (a module's backward hooks: ``_BackwardHooks``) and passes on what it
    returns."""

    double_backward = "linear"

    def forward(ctx, *arrays, call):
        ctx.call = call
        return tuple(a.view() for a in arrays)      # views: they share the inputs' version counters

    def backward(ctx, *grads):
        wrapped = [g if isinstance(g, Tensor) else Tensor(g) for g in grads]
        out = ctx.call(wrapped)
        out = [g if g is not None else w for g, w in zip(out, wrapped)]
        out = [g.array if not isinstance(raw, Tensor) else g for g, raw in zip(out, grads)]
        return tuple(out) if len(out) > 1 else out[0]


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
        object.__setattr__(self, "_backward_pre_hooks", OrderedDict())
        object.__setattr__(self, "_backward_hooks", OrderedDict())
        object.__setattr__(self, "_hook_options", {})      # handle id -> {"with_kwargs", "always_call"}

    # ================================================================ forward
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f'Module [{type(self).__name__}] is missing the required "forward" function')

    def __call__(self, *args, **kwargs):
        if not (self._forward_pre_hooks or self._forward_hooks or self._backward_hooks or self._backward_pre_hooks):
            return self.forward(*args, **kwargs)    # (the common case first: this runs for every layer)
        options = self._hook_options
        for key, hook in list(self._forward_pre_hooks.items()):
            if "with_kwargs" in options.get(key, ()):
                result = hook(self, args, kwargs)
                if result is not None:      # (new args, new kwargs)
                    args, kwargs = result
                    args = args if isinstance(args, tuple) else (args,)
                continue
            result = hook(self, args)
            if result is not None:          # a pre-hook may replace the inputs
                args = result if isinstance(result, tuple) else (result,)
        backward = _BackwardHooks(self) if self._backward_hooks or self._backward_pre_hooks else None
        if backward is not None:
            args = backward.watch_inputs(args)
        try:
            output = self.forward(*args, **kwargs)
        except Exception:
            for key, hook in list(self._forward_hooks.items()):     # always_call: also when forward raised
                if "always_call" in options.get(key, ()):
                    try:
                        self._call_forward_hook(key, hook, args, kwargs, None)
                    except Exception:           # the forward's error is the one to see
                        pass
            raise
        for key, hook in list(self._forward_hooks.items()):
            result = self._call_forward_hook(key, hook, args, kwargs, output)
            if result is not None:          # a hook may replace the output
                output = result
        if backward is not None:
            output = backward.watch_outputs(output)
        return output

    def _call_forward_hook(self, key, hook, args, kwargs, output):
        if "with_kwargs" in self._hook_options.get(key, ()):
            return hook(self, args, kwargs, output)
        return hook(self, args, output)

    def _add_hook(self, table, hook, prepend, **options):
        handle = RemovableHandle(table)
        table[handle.id] = hook
        if prepend:
            table.move_to_end(handle.id, last=False)
        chosen = {name for name, on in options.items() if on}
        if chosen:
            self._hook_options[handle.id] = chosen
        return handle

    def register_forward_pre_hook(self, hook, *, prepend=False, with_kwargs=False):
        """``hook(module, args) -> None or new args``, run before every forward (with
        ``with_kwargs``: ``hook(module, args, kwargs) -> None or (new args, new kwargs)``);
        ``prepend``: before the hooks registered so far."""
        return self._add_hook(self._forward_pre_hooks, hook, prepend, with_kwargs=with_kwargs)

    def register_forward_hook(self, hook, *, prepend=False, with_kwargs=False, always_call=False):
        """``hook(module, args, output) -> None or new output``, run after every forward
        (e.g. to record feature maps for visualisation); ``with_kwargs``: ``hook(module,
        args, kwargs, output)``; ``always_call``: also when forward raises (output None)."""
        return self._add_hook(self._forward_hooks, hook, prepend, with_kwargs=with_kwargs, always_call=always_call)

    def register_full_backward_pre_hook(self, hook, *, prepend=False):
        """``hook(module, grad_output) -> None or new grad_output``, run when the gradients of
        the module's outputs are all in, before they go on into the module's ops."""
        return self._add_hook(self._backward_pre_hooks, hook, prepend)

    def register_full_backward_hook(self, hook, *, prepend=False):
        """``hook(module, grad_input, grad_output) -> None or new grad_input``, run when the
        gradients of the module's tensor inputs are computed (grad-CAM, gradient inspection):
        grad_input has one entry per positional tensor input (None where it needs none)."""
        return self._add_hook(self._backward_hooks, hook, prepend)

    def _hooks_of(self, kind):
        """The table of state-dict hooks of ``kind`` (made at the first registration: most
        modules have none)."""
        table = self.__dict__.get(kind)
        if table is None:
            table = OrderedDict()
            object.__setattr__(self, kind, table)
        return table

    def register_state_dict_pre_hook(self, hook):
        """``hook(module, prefix, keep_vars)``, run before ``state_dict`` collects this module's
        entries."""
        return self._add_hook(self._hooks_of("_state_dict_pre_hooks"), hook, False)

    def register_state_dict_post_hook(self, hook):
        """``hook(module, state_dict, prefix, local_metadata) -> None``, run after this module's
        entries (its subtree's) are in ``state_dict``; it may change ``state_dict`` in place."""
        return self._add_hook(self._hooks_of("_state_dict_post_hooks"), hook, False)

    def register_load_state_dict_pre_hook(self, hook):
        """``hook(module, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
        error_msgs)``, run before this module loads its entries: it may rename keys of an older
        layout in ``state_dict``."""
        return self._add_hook(self._hooks_of("_load_state_dict_pre_hooks"), hook, False)

    def register_load_state_dict_post_hook(self, hook):
        """``hook(module, incompatible_keys) -> None``, run after this module's subtree is
        loaded and before a strict load raises: it may remove keys from
        ``incompatible_keys.missing_keys`` / ``.unexpected_keys`` in place."""
        return self._add_hook(self._hooks_of("_load_state_dict_post_hooks"), hook, False)

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

    def set_submodule(self, target, module, strict=False):
        """Put ``module`` at dotted path ``target`` (e.g. swap ``'layer4.1.relu'``); with
        ``strict`` the path must already hold a submodule."""
        if not isinstance(module, Module):
            raise TypeError(f"set_submodule: expected a Module, got {type(module).__name__}")
        if not target:
            raise ValueError("set_submodule: target must not be empty")
        parent_path, _, name = target.rpartition(".")
        parent = self.get_submodule(parent_path)
        if strict and not isinstance(parent._modules.get(name), Module):
            raise AttributeError(f"{type(parent).__name__} has no submodule `{name}` (strict set_submodule "
                                 f"'{target}')")
        setattr(parent, name, module)

    def get_parameter(self, target):
        """The parameter at dotted path ``target``, e.g. ``'features.0.weight'``."""
        return self._get_entry(target, "_parameters", "parameter")

    def get_buffer(self, target):
        """The buffer at dotted path ``target``, e.g. ``'bn.running_mean'``."""
        return self._get_entry(target, "_buffers", "buffer")

    def _get_entry(self, target, table, what):
        path, _, name = target.rpartition(".")
        module = self.get_submodule(path)
        if name not in getattr(module, table):
            raise AttributeError(f"{type(module).__name__} has no {what} `{name}` (looking for '{target}')")
        return getattr(module, table)[name]

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
    def get_extra_state(self):
        """What else a subclass wants in its state_dict (a vocabulary, a step count: any value
        ``td.save`` can write), under ``<prefix>_extra_state``; give it back in
        ``set_extra_state``. Override both, as in PyTorch."""
        raise RuntimeError("get_extra_state: override it (and set_extra_state) to keep extra state "
                           "in the state_dict")

    def set_extra_state(self, state):
        """Take back what ``get_extra_state`` returned (see there)."""
        raise RuntimeError("set_extra_state: override it (and get_extra_state) to load extra state "
                           "from a state_dict")

    def _has_extra_state(self):
        return type(self).get_extra_state is not Module.get_extra_state

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        """This module's own entries: parameters first, then persistent buffers, then the
        extra state (``get_extra_state``) if the class has one."""
        for name, param in self._parameters.items():
            if param is not None:
                destination[prefix + name] = param if keep_vars else param.detach()
        for name, buf in self._buffers.items():
            if buf is not None and name not in self._non_persistent_buffers_set:
                destination[prefix + name] = buf if keep_vars else buf.detach()
        if self._has_extra_state():
            destination[prefix + _EXTRA_STATE] = self.get_extra_state()

    def state_dict(self, destination=None, prefix="", keep_vars=False):
        """OrderedDict name -> Tensor of every parameter and persistent buffer, with
        PyTorch's key names and order. The Tensors are detached but share memory with
        the module (copy them if the module will keep training and you want a snapshot)."""
        if destination is None:
            destination = OrderedDict()
        for hook in list(self.__dict__.get("_state_dict_pre_hooks", {}).values()):
            hook(self, prefix, keep_vars)
        self._save_to_state_dict(destination, prefix, keep_vars)
        for name, module in self._modules.items():
            if module is not None:
                module.state_dict(destination=destination, prefix=prefix + name + ".", keep_vars=keep_vars)
        for hook in list(self.__dict__.get("_state_dict_post_hooks", {}).values()):
            if hook(self, destination, prefix, {}) is not None:
                raise RuntimeError("state_dict post-hook must return None (change the state_dict in place)")
        return destination

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict,
                              missing_keys, unexpected_keys, error_msgs):
        """Copy this module's own entries out of ``state_dict`` (keys under ``prefix``).

        Same signature as PyTorch's hook, so a layer can override it (e.g. to
        accept checkpoints from an older layout). ``local_metadata`` holds
        ``assign_to_params_buffers`` (``load_state_dict(assign=...)``).
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
            if local_metadata.get("assign_to_params_buffers"):
                self._assign(name, target, src)
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
        has_extra = type(self).set_extra_state is not Module.set_extra_state
        if has_extra:
            if prefix + _EXTRA_STATE in state_dict:
                self.set_extra_state(state_dict[prefix + _EXTRA_STATE])
            elif strict:
                missing_keys.append(prefix + _EXTRA_STATE)
        if strict:
            own = {n for n, _ in local} | ({_EXTRA_STATE} if has_extra else set())
            for key in state_dict:
                if not key.startswith(prefix):
                    continue
                head, dot, _ = key[len(prefix):].partition(".")
                # "a.b" must belong to a child "a"; a plain "a" to this module itself.
                if (dot and head not in self._modules) or (not dot and head not in own):
                    unexpected_keys.append(key)

    def _assign(self, name, target, src):
        """``load_state_dict(assign=True)``: the checkpoint's array becomes the entry (its dtype
        and device); a parameter keeps being a Parameter with the module's requires_grad."""
        if name in self._parameters:
            self._parameters[name] = Parameter(Tensor(src), requires_grad=target.requires_grad)
        else:
            self._buffers[name] = Tensor(src)

    def load_state_dict(self, state_dict, strict=True, assign=False):
        """Copy parameters and buffers from ``state_dict`` into this module, in place.

        Values may be Tensors, NumPy or CuPy arrays (or CPU torch tensors); they
        are copied into the existing arrays, so each parameter keeps its device,
        dtype and identity (an optimizer built earlier keeps working). With
        ``strict`` the keys must match exactly; shape mismatches are errors either
        way. ``assign=True``: the checkpoint's tensors become the parameters and buffers
        instead, in their own dtype and device (make the optimizer afterwards). Returns
        ``(missing_keys, unexpected_keys)``; the load-state-dict hooks run on the way.
        """
        if not hasattr(state_dict, "keys") or not hasattr(state_dict, "__getitem__"):
            raise TypeError(f"Expected state_dict to be dict-like, got {type(state_dict)}.")
        state_dict = OrderedDict(state_dict)
        bad_keys = [k for k in state_dict if not isinstance(k, str)]
        if bad_keys:
            raise TypeError(f"load_state_dict: keys must be parameter names (str), got {bad_keys[:5]!r}; "
                            "is this an optimizer's state_dict?")
        missing, unexpected, errors = [], [], []

        metadata = {"assign_to_params_buffers": bool(assign)}
        incompatible = _IncompatibleKeys(missing, unexpected)

        def load(module, local_state, prefix=""):
            for hook in list(module.__dict__.get("_load_state_dict_pre_hooks", {}).values()):
                hook(module, local_state, prefix, metadata, True, missing, unexpected, errors)
            module._load_from_state_dict(local_state, prefix, metadata, True, missing, unexpected, errors)
            for name, child in module._modules.items():
                if child is not None:
                    child_prefix = prefix + name + "."
                    load(child, {k: v for k, v in local_state.items() if k.startswith(child_prefix)}, child_prefix)
            for hook in list(module.__dict__.get("_load_state_dict_post_hooks", {}).values()):
                if hook(module, incompatible) is not None:
                    raise RuntimeError("load_state_dict post-hook must return None (change the key lists in place)")

        load(self, state_dict)
        if strict:
            if unexpected:
                errors.insert(0, "Unexpected key(s) in state_dict: {}. ".format(", ".join(f'"{k}"' for k in unexpected)))
            if missing:
                errors.insert(0, "Missing key(s) in state_dict: {}. ".format(", ".join(f'"{k}"' for k in missing)))
        if errors:
            raise RuntimeError("Error(s) in loading state_dict for {}:\n\t{}".format(
                type(self).__name__, "\n\t".join(errors)))
        return incompatible

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
        """Forget the gradients of the last backward pass (they accumulate otherwise):
        ``autograd.zero_grads``."""
        zero_grads(self.parameters(), set_to_none)

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
