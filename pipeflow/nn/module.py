"""Module: the base of every layer and model. Parameters, buffers and submodules
assigned as attributes are registered, so ``state_dict()`` has PyTorch's key names."""
from collections import OrderedDict

from ..tensor import Tensor, parse_to_args
from .parameter import Buffer, Parameter


class Module:
    training = True

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_forward_pre_hooks", OrderedDict())
        object.__setattr__(self, "_forward_hooks", OrderedDict())
        object.__setattr__(self, "training", True)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} has no forward()")

    def __call__(self, *args, **kwargs):
        for hook in self._forward_pre_hooks.values():
            new = hook(self, args)
            if new is not None:
                args = new if isinstance(new, tuple) else (new,)
        out = self.forward(*args, **kwargs)
        for hook in self._forward_hooks.values():
            new = hook(self, args, out)
            if new is not None:
                out = new
        return out

    # --- registration -----------------------------------------------------------------
    def __setattr__(self, name, value):
        d = self.__dict__
        if "_parameters" not in d:
            raise AttributeError("cannot assign to a Module before Module.__init__() is called")
        params, buffers, modules = d["_parameters"], d["_buffers"], d["_modules"]
        if isinstance(value, (Parameter, Module, Buffer)):
            own = params if isinstance(value, Parameter) else \
                modules if isinstance(value, Module) else buffers
            for table in (params, buffers, modules):
                if table is not own:  # a name that stays a parameter keeps its position
                    table.pop(name, None)
            d.pop(name, None)
            if isinstance(value, Parameter):
                params[name] = value
            elif isinstance(value, Module):
                modules[name] = value
            else:
                self.register_buffer(name, value.data, value.persistent)
        elif name in params:
            if value is not None:
                raise TypeError(f"cannot assign '{type(value).__name__}' as parameter '{name}' "
                                "(pipeflow.nn.Parameter or None expected)")
            params[name] = None
        elif name in buffers:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"cannot assign '{type(value).__name__}' as buffer '{name}' "
                                "(Tensor or None expected)")
            buffers[name] = value
        elif name in modules:
            if value is not None:
                raise TypeError(f"cannot assign '{type(value).__name__}' as child module "
                                f"'{name}' (Module or None expected)")
            modules[name] = None
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name):
        d = self.__dict__
        for table in ("_parameters", "_buffers", "_modules"):
            if table in d and name in d[table]:
                return d[table][name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name):
        for table in (self._parameters, self._buffers, self._modules):
            if name in table:
                del table[name]
                self._non_persistent.discard(name)
                return
        object.__delattr__(self, name)

    def register_parameter(self, name, param):
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"cannot assign '{type(param).__name__}' as parameter '{name}' "
                            "(pipeflow.nn.Parameter or None expected)")
        self.__dict__.pop(name, None)
        self._parameters[name] = param

    def register_buffer(self, name, tensor, persistent=True):
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"cannot assign '{type(tensor).__name__}' as buffer '{name}' "
                            "(Tensor or None expected)")
        self.__dict__.pop(name, None)
        self._buffers[name] = tensor
        (self._non_persistent.discard if persistent else self._non_persistent.add)(name)

    def register_module(self, name, module):
        self._modules[name] = module

    add_module = register_module

    def get_submodule(self, target):
        module = self
        for part in target.split(".") if target else ():
            module = module._modules[part]
        return module

    # --- traversal ----------------------------------------------------------------------
    def named_modules(self, memo=None, prefix="", remove_duplicate=True):
        memo = set() if memo is None else memo
        if self in memo and remove_duplicate:
            return
        memo.add(self)
        yield prefix, self
        for name, module in self._modules.items():
            if module is not None:
                yield from module.named_modules(memo, f"{prefix}.{name}" if prefix else name,
                                                remove_duplicate)

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_children(self):
        seen = set()
        for name, m in self._modules.items():
            if m is not None and m not in seen:
                seen.add(m)
                yield name, m

    def children(self):
        for _, m in self.named_children():
            yield m

    def _named_members(self, table, prefix, recurse, remove_duplicate=True):
        seen = set()
        modules = self.named_modules(prefix=prefix) if recurse else [(prefix, self)]
        for module_prefix, module in modules:
            for name, value in getattr(module, table).items():
                if value is None or (remove_duplicate and id(value) in seen):
                    continue
                seen.add(id(value))
                yield (f"{module_prefix}.{name}" if module_prefix else name), value

    def named_parameters(self, prefix="", recurse=True, remove_duplicate=True):
        yield from self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse=True):
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix="", recurse=True, remove_duplicate=True):
        yield from self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse=True):
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    # --- modes, devices, gradients ------------------------------------------------------
    def train(self, mode=True):
        if not isinstance(mode, bool):
            raise ValueError("training mode is expected to be boolean")
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self):
        return self.train(False)

    def requires_grad_(self, requires_grad=True):
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none=True):
        for p in self.parameters():
            if p.grad is not None:
                if set_to_none:
                    p.grad = None
                else:
                    p.grad = p.grad.detach()
                    p.grad.zero_()

    def apply(self, fn):
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    def _apply(self, convert):
        """Replace every parameter's and buffer's data by `convert(tensor)` in place, so
        that optimizers holding the parameters keep working (as PyTorch's Module.to)."""
        for m in self.modules():
            for table in (m._parameters, m._buffers):
                for name, t in table.items():
                    if t is None:
                        continue
                    new = convert(t)
                    if new is t:
                        continue
                    t._data = new._data
                    if t.grad is not None:
                        t.grad = convert(t.grad)
        return self

    def to(self, *args, **kwargs):
        """``to(device)``, ``to(dtype)`` (floating parameters and buffers only), or both;
        the parameters stay the same objects."""
        device, dtype, non_blocking, _ = parse_to_args(args, kwargs)

        def convert(t):
            keep_dtype = dtype is None or not t.is_floating_point()
            return t.detach().to(device=device, dtype=None if keep_dtype else dtype,
                                 non_blocking=non_blocking)
        return self._apply(convert)

    def cuda(self, device=None):
        return self.to("cuda" if device is None else device)

    def cpu(self):
        return self.to("cpu")

    def float(self):
        return self._apply(lambda t: t.detach().float() if t.is_floating_point() else t)

    def double(self):
        return self._apply(lambda t: t.detach().double() if t.is_floating_point() else t)

    def half(self):
        return self._apply(lambda t: t.detach().half() if t.is_floating_point() else t)

    # --- hooks --------------------------------------------------------------------------
    def register_forward_pre_hook(self, hook):
        return _Handle(self._forward_pre_hooks, hook)

    def register_forward_hook(self, hook):
        return _Handle(self._forward_hooks, hook)

    # --- state --------------------------------------------------------------------------
    def state_dict(self, destination=None, prefix="", keep_vars=False):
        destination = OrderedDict() if destination is None else destination
        for name, p in self._parameters.items():
            if p is not None:
                destination[prefix + name] = p if keep_vars else p.detach()
        for name, b in self._buffers.items():
            if b is not None and name not in self._non_persistent:
                destination[prefix + name] = b if keep_vars else b.detach()
        for name, m in self._modules.items():
            if m is not None:
                m.state_dict(destination, prefix + name + ".", keep_vars)
        return destination

    def load_state_dict(self, state_dict, strict=True, assign=False):
        """Copy tensors into parameters and buffers by PyTorch's key names. With `strict`,
        missing, unexpected and wrong-shaped keys are all reported in one error."""
        state_dict = self._upgraded(state_dict)
        own = self.state_dict(keep_vars=True)
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        wrong = [f"{k}: checkpoint {list(_shape_of(state_dict[k]))}, model {list(own[k].shape)}"
                 for k in own if k in state_dict and tuple(_shape_of(state_dict[k])) != tuple(own[k].shape)]
        if wrong or (strict and (missing or unexpected)):
            parts = []
            if missing:
                parts.append("Missing key(s) in state_dict: " + ", ".join(f'"{k}"' for k in missing))
            if unexpected:
                parts.append("Unexpected key(s) in state_dict: " +
                             ", ".join(f'"{k}"' for k in unexpected))
            if wrong:
                parts.append("size mismatch for " + "; size mismatch for ".join(wrong))
            raise RuntimeError(f"Error(s) in loading state_dict for {type(self).__name__}:\n\t" +
                               ".\n\t".join(parts) + ".")
        from ..autograd import no_grad
        with no_grad():
            for k, target in own.items():
                if k in state_dict:
                    value = state_dict[k]
                    if not isinstance(value, Tensor):
                        from ..factories import tensor
                        value = tensor(value)
                    target.copy_(value)
        return _IncompatibleKeys(missing, unexpected)

    def _upgraded(self, state_dict):
        """A copy of `state_dict` in which each submodule has filled in what checkpoints of
        its older versions lack (torch's per-module versions, from the checkpoint's
        ``_metadata``: None where it records none)."""
        metadata = getattr(state_dict, "_metadata", None) or {}
        state_dict = OrderedDict(state_dict)
        for name, module in self.named_modules():
            version = metadata.get(name, {}).get("version")
            module._upgrade_state_dict(state_dict, f"{name}." if name else "", version)
        return state_dict

    def _upgrade_state_dict(self, state_dict, prefix, version):
        """Add, in place, the entries under `prefix` that a checkpoint written by `version`
        of this layer lacks. Layers whose state changed over versions override this."""

    # --- repr -----------------------------------------------------------------------------
    def extra_repr(self):
        return ""

    def __repr__(self):
        lines = []
        extra = self.extra_repr()
        if extra:
            lines = extra.split("\n")
        for name, m in self._modules.items():
            child = repr(m).replace("\n", "\n  ")
            lines.append(f"({name}): {child}")
        main = type(self).__name__ + "("
        if not lines:
            return main + ")"
        if len(lines) == 1 and not self._modules:
            return main + lines[0] + ")"
        return main + "\n  " + "\n  ".join(lines) + "\n)"

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(self._parameters) | set(self._buffers) |
                      set(self._modules))


def _shape_of(value):
    return value.shape if hasattr(value, "shape") else ()


class _IncompatibleKeys(tuple):
    """(missing_keys, unexpected_keys), as PyTorch returns from a non-strict load."""

    def __new__(cls, missing, unexpected):
        return super().__new__(cls, (missing, unexpected))

    @property
    def missing_keys(self):
        return self[0]

    @property
    def unexpected_keys(self):
        return self[1]

    def __repr__(self):
        if not self[0] and not self[1]:
            return "<All keys matched successfully>"
        return f"_IncompatibleKeys(missing_keys={self[0]}, unexpected_keys={self[1]})"


class _Handle:
    _next_id = 0

    def __init__(self, table, hook):
        self.table, self.id = table, _Handle._next_id
        _Handle._next_id += 1
        table[self.id] = hook

    def remove(self):
        self.table.pop(self.id, None)
