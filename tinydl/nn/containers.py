"""Containers: Modules that hold other Modules.

``Sequential`` runs its children one after another; ``ModuleList`` and
``ModuleDict`` only hold them (you write the forward), so that their
parameters are registered — a plain Python list of layers would be invisible
to ``parameters()``, ``state_dict()`` and ``to()``.

Children are named like PyTorch's ("0", "1", ... or the dict keys), which is
where state_dict keys such as ``features.3.weight`` come from.
"""
import operator
from collections import OrderedDict

from .module import Module, _indent_tail

__all__ = ["Sequential", "ModuleList", "ModuleDict"]


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
            return Sequential(OrderedDict(list(self._modules.items())[idx]))
        return list(self._modules.values())[_normalize_index(idx, len(self), "Sequential")]

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
            return ModuleList(list(self._modules.values())[idx])
        return self._modules[str(_normalize_index(idx, len(self), "ModuleList"))]

    def __repr__(self):
        # PyTorch folds runs of identical children: "(0-11): 12 x BasicBlock(...)".
        if not len(self):
            return "ModuleList()"
        runs = []   # [first index, last index, repr]
        for i, module in enumerate(self):
            text = repr(module)
            if runs and runs[-1][2] == text:
                runs[-1][1] = i
            else:
                runs.append([i, i, text])
        lines = [f"({a}): {text}" if a == b else f"({a}-{b}): {b - a + 1} x {text}" for a, b, text in runs]
        return "ModuleList(" + "".join("\n  " + _indent_tail(line, 2) for line in lines) + "\n)"

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
