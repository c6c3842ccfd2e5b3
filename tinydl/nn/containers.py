"""Containers: Modules that hold other Modules.

``Sequential`` runs its children one after another; ``ModuleList`` and
``ModuleDict`` only hold them (you write the forward), so that their
parameters are registered — a plain Python list of layers would be invisible
to ``parameters()``, ``state_dict()`` and ``to()``.

Children are named like PyTorch's ("0", "1", ... or the dict keys), which is
where state_dict keys such as ``features.3.weight`` come from.

``ParameterList`` and ``ParameterDict`` do the same for Parameters: a plain list
of Parameters kept as an attribute would not be registered.
"""
import collections.abc
import operator
from collections import OrderedDict

from ..tensor import Tensor
from .module import Module, _indent_tail
from .parameter import Parameter

__all__ = ["Sequential", "ModuleList", "ModuleDict", "ParameterList", "ParameterDict"]


def _normalize_index(idx, n, owner):
    idx = operator.index(idx)
    if not -n <= idx < n:
        raise IndexError(f"index {idx} is out of range for {owner} of length {n}")
    return idx % n


class _Numbered(Module):
    """Shared by Sequential and ModuleList: children kept in order, addressed by position."""

    def _keys(self):
        return list(self._modules.keys())

    def _renumber(self, modules):
        # PyTorch renumbers after a deletion or insertion, so keys stay 0..n-1.
        self._modules.clear()
        for i, module in enumerate(modules):
            self._modules[str(i)] = module

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __setitem__(self, idx, module):
        key = self._keys()[_normalize_index(idx, len(self), type(self).__name__)]
        setattr(self, key, module)

    def __delitem__(self, idx):
        keys = self._keys()
        if isinstance(idx, slice):
            doomed = keys[idx]
        else:
            doomed = [keys[_normalize_index(idx, len(self), type(self).__name__)]]
        for key in doomed:
            delattr(self, key)
        self._renumber(list(self._modules.values()))

    def append(self, module):
        self.add_module(str(len(self)), module)
        return self

    def extend(self, modules):
        if isinstance(modules, Module) and not isinstance(modules, _Numbered):
            raise TypeError(f"{type(self).__name__}.extend should be called with an iterable of modules, "
                            f"got {type(modules).__name__}")
        for module in list(modules):
            self.append(module)
        return self

    def insert(self, index, module):
        if not isinstance(module, Module):
            raise TypeError(f"{type(self).__name__}.insert: {type(module).__name__} is not a Module")
        n = len(self)
        if not -n <= index <= n:
            raise IndexError(f"index {index} is out of range for {type(self).__name__} of length {n}")
        modules = list(self._modules.values())
        modules.insert(index, module)
        self._renumber(modules)
        return self

    def pop(self, index=-1):
        module = self[index]
        del self[index]
        return module


class Sequential(_Numbered):
    """Sequential(*modules) or Sequential(OrderedDict(name=module, ...)).

    ``forward(x)`` feeds x through the children in order. Indexing gives a child,
    slicing a new Sequential of the same (shared) children with their names kept.
    """

    def __init__(self, *args):
        super().__init__()
        if len(args) == 1 and isinstance(args[0], OrderedDict):
            for name, module in args[0].items():
                self.add_module(name, module)
        else:
            for i, module in enumerate(args):
                self.add_module(str(i), module)

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            # type(self): a slice of a subclass keeps the subclass's forward, as PyTorch
            return type(self)(OrderedDict(list(self._modules.items())[idx]))
        return list(self._modules.values())[_normalize_index(idx, len(self), "Sequential")]

    def _check_other(self, other, op):
        if not isinstance(other, Sequential):
            raise ValueError(f"Sequential {op}: only a Sequential can be added, got {type(other).__name__}")

    @staticmethod
    def _check_factor(factor, owner):
        if not isinstance(factor, int) or isinstance(factor, bool):
            raise TypeError(f"unsupported operand type(s) for *: '{type(owner).__name__}' and "
                            f"'{type(factor).__name__}'")
        if factor <= 0:
            raise ValueError(f"Sequential *: non-positive multiplication factor {factor}")

    def __add__(self, other):
        self._check_other(other, "+")
        return Sequential(*list(self), *list(other))

    def __iadd__(self, other):
        self._check_other(other, "+=")
        for module in list(other):      # (a list first: ``s += s`` must not read what it appends)
            self.append(module)
        return self

    def __mul__(self, factor):
        self._check_factor(factor, self)
        return Sequential(*(list(self) * factor))

    def __rmul__(self, factor):
        return self.__mul__(factor)

    def __imul__(self, factor):
        self._check_factor(factor, self)
        for module in list(self) * (factor - 1):
            self.append(module)
        return self

    def forward(self, input):
        for module in self:
            input = module(input)
        return input


class ModuleList(_Numbered):
    """A list of modules whose parameters are registered; no forward of its own."""

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            return type(self)(list(self._modules.values())[idx])
        return self._modules[str(_normalize_index(idx, len(self), "ModuleList"))]

    def __repr__(self):
        # PyTorch folds runs of identical children: "(0-11): 12 x BasicBlock(...)".
        if not len(self):
            return f"{self._get_name()}()"
        runs = []   # [first index, last index, repr]
        for i, module in enumerate(self):
            text = repr(module)
            if runs and runs[-1][2] == text:
                runs[-1][1] = i
            else:
                runs.append([i, i, text])
        lines = [f"({a}): {text}" if a == b else f"({a}-{b}): {b - a + 1} x {text}" for a, b, text in runs]
        return f"{self._get_name()}(" + "".join("\n  " + _indent_tail(line, 2) for line in lines) + "\n)"

    def __iadd__(self, modules):
        return self.extend(modules)

    def __add__(self, other):
        return ModuleList(list(self) + list(other))


class ModuleDict(Module):
    """A dict of modules whose parameters are registered, in insertion order."""

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.update(modules)

    def __getitem__(self, key):
        return self._modules[key]

    def __setitem__(self, key, module):
        self.add_module(key, module)

    def __delitem__(self, key):
        del self._modules[key]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules)

    def __contains__(self, key):
        return key in self._modules

    def keys(self):
        return self._modules.keys()

    def items(self):
        return self._modules.items()

    def values(self):
        return self._modules.values()

    def clear(self):
        self._modules.clear()

    def pop(self, key):
        module = self[key]
        del self[key]
        return module

    def update(self, modules):
        """From a mapping or an iterable of (name, module) pairs."""
        items = modules.items() if hasattr(modules, "items") else modules
        for pair in items:
            name, module = pair
            self[name] = module


# ================================================================ parameter containers
def _as_parameter(value):
    # a plain Tensor becomes a Parameter (sharing its data), as PyTorch; other objects stay
    return Parameter(value) if isinstance(value, Tensor) and not isinstance(value, Parameter) else value


_TYPE_NAMES = {"float32": "FloatTensor", "float64": "DoubleTensor", "float16": "HalfTensor",
               "bfloat16": "BFloat16Tensor", "int64": "LongTensor", "int32": "IntTensor", "int16": "ShortTensor",
               "int8": "CharTensor", "uint8": "ByteTensor", "bool": "BoolTensor"}


def _describe_entry(value, by_type_name=False):
    """One line of a ParameterList/Dict repr, PyTorch's wording: 'Parameter containing:
    [float32 of size 2x3]' (the dict names the legacy tensor type instead: 'FloatTensor')."""
    if not isinstance(value, Tensor):
        return f"Object of type: {type(value).__name__}"
    kind = "Parameter" if isinstance(value, Parameter) else "Tensor"
    size = "x".join(str(n) for n in value.shape)
    on_gpu = value.device.type == "cuda"
    if by_type_name:
        name = ("cuda." if on_gpu else "") + _TYPE_NAMES.get(str(value.dtype), f"{value.dtype}Tensor")
        return f"{kind} containing: [{name} of size {size}]"
    return f"{kind} containing: [{value.dtype} of size {size}{f' ({value.device})' if on_gpu else ''}]"


class ParameterList(Module):
    """A list of Parameters that a Module registers (named "0", "1", ...), as ``nn.ParameterList``.

    A Tensor given to it becomes a Parameter over the same data (requiring grad); any
    other object is stored as it is (and is not a parameter). Supports indexing (a slice
    gives a new list of the same Parameters), ``len``, iteration, ``append``, ``extend``
    and ``+=``. It has no forward: calling it is an error.
    """

    def __init__(self, values=None):
        super().__init__()
        self._size = 0
        if values is not None:
            self.extend(values)

    def _index(self, idx):
        idx = operator.index(idx)
        if not -len(self) <= idx < len(self):
            raise IndexError(f"ParameterList: index {idx} is out of range for length {len(self)}")
        return str(idx % len(self))

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            out = type(self)()
            for i in range(*idx.indices(len(self))):
                out.append(self[i])
            return out
        return getattr(self, self._index(idx))

    def __setitem__(self, idx, value):
        setattr(self, self._index(idx), _as_parameter(value))

    def __len__(self):
        return self._size

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __iadd__(self, values):
        return self.extend(values)

    def append(self, value):
        self._size += 1
        self[self._size - 1] = value
        return self

    def extend(self, values):
        if not isinstance(values, collections.abc.Iterable) or isinstance(values, Tensor):
            raise TypeError(f"ParameterList.extend should be called with an iterable, got {type(values).__name__}")
        for value in values:
            self.append(value)
        return self

    def extra_repr(self):
        return "\n".join(f"  ({i}): {_describe_entry(value)}" for i, value in enumerate(self))

    def __call__(self, *args, **kwargs):
        raise RuntimeError("ParameterList should not be called.")


class ParameterDict(Module):
    """A dict of Parameters that a Module registers under their (string) keys, as ``nn.ParameterDict``.

    Keys keep their insertion order; ``update`` from a plain dict inserts them sorted (an
    OrderedDict, a ParameterDict or a sequence of pairs in their own order), as PyTorch.
    Tensors become Parameters, other values are stored as they are. The dict methods:
    ``keys``, ``values``, ``items``, ``get``, ``pop``, ``popitem``, ``setdefault``,
    ``update``, ``clear``, ``copy``, ``fromkeys``, ``in``, ``len``, ``|``.
    """

    def __init__(self, parameters=None):
        super().__init__()
        self._keys = {}
        if parameters is not None:
            self.update(parameters)

    @staticmethod
    def _check_key(key):
        if not isinstance(key, str):
            raise TypeError(f"ParameterDict: keys must be strings, got {key!r} of type {type(key).__name__}")
        return key

    def __getitem__(self, key):
        self._check_key(key)
        if key not in self._keys:
            raise KeyError(key)
        return getattr(self, key)

    def __setitem__(self, key, value):
        self._check_key(key)
        self._keys[key] = None
        setattr(self, key, _as_parameter(value))

    def __delitem__(self, key):
        del self._keys[self._check_key(key)]
        delattr(self, key)

    def __len__(self):
        return len(self._keys)

    def __iter__(self):
        return iter(self._keys)

    def __reversed__(self):
        return reversed(list(self._keys))

    def __contains__(self, key):
        return key in self._keys

    def keys(self):
        return self._keys.keys()

    def items(self):
        return ((k, self[k]) for k in self._keys)

    def values(self):
        return (self[k] for k in self._keys)

    def get(self, key, default=None):
        return self[key] if key in self else default

    def pop(self, key):
        value = self[key]
        del self[key]
        return value

    def popitem(self):
        if not self._keys:
            raise KeyError("popitem(): ParameterDict is empty")
        key = next(reversed(self._keys))
        return key, self.pop(key)

    def setdefault(self, key, default=None):
        if key not in self:
            self[key] = default
        return self[key]

    def clear(self):
        for key in list(self._keys):
            del self[key]

    def copy(self):
        """A new ParameterDict of the same (shared) Parameters."""
        return ParameterDict(OrderedDict(self.items()))

    def fromkeys(self, keys, default=None):
        return ParameterDict((key, default) for key in keys)

    def update(self, parameters):
        """From a mapping or an iterable of (key, value) pairs."""
        if not isinstance(parameters, collections.abc.Iterable):
            raise TypeError("ParameterDict.update should be called with an iterable of key/value pairs, "
                            f"got {type(parameters).__name__}")
        if isinstance(parameters, (OrderedDict, ParameterDict)):
            pairs = list(parameters.items())
        elif isinstance(parameters, collections.abc.Mapping):
            pairs = sorted(parameters.items())      # (PyTorch sorts a plain dict's keys)
        else:
            pairs = []
            for j, pair in enumerate(parameters):
                if not isinstance(pair, collections.abc.Iterable):
                    raise TypeError(f"ParameterDict.update: sequence element #{j} should be a (key, value) "
                                    f"pair, got {type(pair).__name__}")
                pair = list(pair)
                if len(pair) != 2:
                    raise ValueError(f"ParameterDict.update: sequence element #{j} has length {len(pair)}; "
                                     "2 is required")
                pairs.append(pair)
        for key, value in pairs:
            self[key] = value

    def __or__(self, other):
        out = self.copy()
        out.update(other)
        return out

    def __ror__(self, other):
        out = ParameterDict(other)
        out.update(self)
        return out

    def __ior__(self, other):
        self.update(other)
        return self

    def extra_repr(self):
        return "\n".join(f"  ({k}): {_describe_entry(v, by_type_name=True)}" for k, v in self.items())

    def __call__(self, *args, **kwargs):
        raise RuntimeError("ParameterDict should not be called.")
