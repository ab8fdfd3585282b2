"""Containers: Sequential, ModuleList, ModuleDict."""
from collections import OrderedDict

from ..module import Module

__all__ = ["Sequential", "ModuleList", "ModuleDict"]


class _Positional(Module):
    """Modules held in order and addressed by position (Sequential, ModuleList)."""

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def append(self, module):
        self.add_module(str(len(self)), module)
        return self


class Sequential(_Positional):
    """Modules called one after another; indexable and sliceable."""

    def __init__(self, *args):
        super().__init__()
        if len(args) == 1 and isinstance(args[0], OrderedDict):
            for name, module in args[0].items():
                self.add_module(name, module)
        else:
            for i, module in enumerate(args):
                self.add_module(str(i), module)

    def forward(self, x):
        for module in self._modules.values():
            x = module(x)
        return x

    def __getitem__(self, index):
        items = list(self._modules.items())
        if isinstance(index, slice):
            return Sequential(OrderedDict(items[index]))
        return items[_checked_index(index, len(items))][1]

    def __setitem__(self, index, module):
        key = list(self._modules)[_checked_index(index, len(self._modules))]
        self._modules[key] = module

    def __delitem__(self, index):
        keys = list(self._modules)
        for key in (keys[index] if isinstance(index, slice) else [keys[_checked_index(index, len(keys))]]):
            del self._modules[key]
        if all(k.isdigit() for k in self._modules):  # renumber 0..n-1, as PyTorch does
            values = list(self._modules.values())
            self._modules.clear()
            for i, m in enumerate(values):
                self._modules[str(i)] = m


def _checked_index(index, length):
    if not -length <= index < length:
        raise IndexError(f"index {index} is out of range for a container of {length} modules")
    return index % length


class ModuleList(_Positional):
    def __init__(self, modules=None):
        super().__init__()
        for m in modules or ():
            self.append(m)

    def __getitem__(self, index):
        values = list(self._modules.values())
        if isinstance(index, slice):
            return ModuleList(values[index])
        return values[_checked_index(index, len(values))]

    def __setitem__(self, index, module):
        self._modules[str(_checked_index(index, len(self)))] = module

    def extend(self, modules):
        for m in modules:
            self.append(m)
        return self

    def __repr__(self):
        """Runs of identical modules collapse into one line, as in PyTorch."""
        blocks = []  # [first index, last index, repr]
        for i, module in enumerate(self):
            text = repr(module)
            if blocks and blocks[-1][2] == text:
                blocks[-1][1] = i
            else:
                blocks.append([i, i, text])
        if not blocks:
            return "ModuleList()"
        lines = [(f"({a}): {t}" if a == b else f"({a}-{b}): {b - a + 1} x {t}").replace("\n", "\n  ")
                 for a, b, t in blocks]
        return "ModuleList(\n  " + "\n  ".join(lines) + "\n)"

    def insert(self, index, module):
        values = list(self._modules.values())
        values.insert(index, module)
        self._modules.clear()
        for i, m in enumerate(values):
            self._modules[str(i)] = m


class ModuleDict(Module):
    def __init__(self, modules=None):
        super().__init__()
        for name, m in (modules.items() if isinstance(modules, dict) else modules or ()):
            self[name] = m

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

    def values(self):
        return self._modules.values()

    def items(self):
        return self._modules.items()

    def update(self, modules):
        for name, m in (modules.items() if isinstance(modules, dict) else modules):
            self[name] = m
