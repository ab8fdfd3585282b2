"""Optimizer: the base of pipeflow's optimizers, with ``torch.optim.Optimizer``'s API.

Parameters are organised in param groups (dicts of hyperparameters plus ``"params"``);
per-parameter state lives in ``self.state[param]``, with PyTorch's key names, so that
``state_dict()`` has PyTorch's layout::

    {"state": {0: {"step": tensor(5.), "exp_avg": ..., ...}, ...},
     "param_groups": [{"lr": 0.001, ..., "params": [0, 1, 2]}, ...]}

Subclasses do their math on the raw arrays (``p._data``, NumPy or CuPy) with in-place
ufuncs, and bump each parameter's version counter after writing it, so that autograd
notices a parameter changed under a graph that saved it. The helpers at the end of this
module hold the shared pieces of that math.
"""
import contextlib
import functools
import warnings
from collections import OrderedDict, defaultdict
from collections.abc import Iterable
from copy import deepcopy
from itertools import chain

import numpy as np

from .. import backend
from ..autograd.grad_mode import enable_grad, state as _grad_mode
from ..tensor import Tensor

__all__ = ["Optimizer", "required", "register_optimizer_step_pre_hook",
           "register_optimizer_step_post_hook"]


class _RequiredParameter:
    """Singleton marking a hyperparameter that each param group must give."""

    def __repr__(self):
        return "<required parameter>"


required = _RequiredParameter()


class RemovableHandle:
    """Returned by the ``register_*_hook`` methods; ``remove()`` unregisters the hook."""

    _next_id = 0

    def __init__(self, table):
        self._table, self.id = table, RemovableHandle._next_id
        RemovableHandle._next_id += 1

    def remove(self):
        self._table.pop(self.id, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


_global_step_pre_hooks = OrderedDict()
_global_step_post_hooks = OrderedDict()


def register_optimizer_step_pre_hook(hook):
    """``hook(optimizer, args, kwargs) -> None or (args, kwargs)``, before every
    optimizer's ``step``."""
    handle = RemovableHandle(_global_step_pre_hooks)
    _global_step_pre_hooks[handle.id] = hook
    return handle


def register_optimizer_step_post_hook(hook):
    """``hook(optimizer, args, kwargs)``, after every optimizer's ``step``."""
    handle = RemovableHandle(_global_step_post_hooks)
    _global_step_post_hooks[handle.id] = hook
    return handle


def _hooked_step(step):
    """Wrap a subclass's ``step``: run the step hooks around it (called, as in PyTorch,
    with the full positional args, ``self`` first), with autograd off (the closure turns it
    back on), and record that the optimizer stepped (for the schedulers' call-order
    warning)."""

    @functools.wraps(step)
    def wrapper(*args, **kwargs):
        self = args[0]
        if self.__dict__.get("_in_step"):  # a subclass's step calling super().step()
            return step(*args, **kwargs)
        for hook in chain(_global_step_pre_hooks.values(),
                          self._optimizer_step_pre_hooks.values()):
            result = hook(self, args, kwargs)
            if result is not None:
                if not (isinstance(result, tuple) and len(result) == 2):
                    raise RuntimeError(f"{step} must return None or a tuple of "
                                       f"(new_args, new_kwargs), but got {result}.")
                args, kwargs = result
        prev, _grad_mode.enabled = _grad_mode.enabled, False
        self._in_step = True
        try:
            out = step(*args, **kwargs)
        finally:
            _grad_mode.enabled = prev
            self._in_step = False
        self._opt_called = True
        for hook in chain(self._optimizer_step_post_hooks.values(),
                          _global_step_post_hooks.values()):
            hook(self, args, kwargs)
        return out

    wrapper._hooked = True
    return wrapper


class Optimizer:
    """Base class of all optimizers.

    Args:
        params: an iterable of Tensors, of ``(name, Tensor)`` pairs, or of dicts (param
            groups, each with ``"params"`` and any hyperparameters to override).
        defaults: the default hyperparameters of a param group.
    """

    _step_in_state = False  # subclasses keeping a tensor "step" per parameter set True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        step = cls.__dict__.get("step")
        if step is not None and not getattr(step, "_hooked", False):
            cls.step = _hooked_step(step)

    def __init__(self, params, defaults):
        self.defaults = defaults
        self._init_hooks()
        if isinstance(params, Tensor):
            raise TypeError("params argument given to the optimizer should be an iterable of "
                            f"Tensors or dicts, but got {type(params).__module__}."
                            f"{type(params).__name__}")
        self.state = defaultdict(dict)
        self.param_groups = []
        param_groups = list(params)
        if len(param_groups) == 0:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(param_groups[0], dict):
            param_groups = [{"params": param_groups}]
        for param_group in param_groups:
            self.add_param_group(param_group)

    def _init_hooks(self):
        for name in ("_optimizer_step_pre_hooks", "_optimizer_step_post_hooks",
                     "_optimizer_state_dict_pre_hooks", "_optimizer_state_dict_post_hooks",
                     "_optimizer_load_state_dict_pre_hooks",
                     "_optimizer_load_state_dict_post_hooks"):
            if name not in self.__dict__:
                setattr(self, name, OrderedDict())

    # --- pickling (PyTorch keeps only these three) ---------------------------------------
    def __getstate__(self):
        return {"defaults": self.defaults, "state": self.state,
                "param_groups": self.param_groups}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._init_hooks()
        self.defaults.setdefault("differentiable", False)
        if self._step_in_state:  # very old checkpoints keep "step" as a number
            for group in self.param_groups:
                for p in group["params"]:
                    s = self.state.get(p)
                    if s and "step" in s and not isinstance(s["step"], Tensor):
                        s["step"] = _new_step(float(s["step"]))

    def __repr__(self):
        out = self.__class__.__name__ + " ("
        for i, group in enumerate(self.param_groups):
            out += f"\nParameter Group {i}\n"
            for key in sorted(group.keys()):
                if key != "params":
                    out += f"    {key}: {group[key]}\n"
        return out + ")"

    # --- param groups --------------------------------------------------------------------
    def add_param_group(self, param_group):
        """Add a param group (a dict with ``"params"`` and optional hyperparameters; the
        missing ones take the optimizer's defaults)."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group)}")
        params = param_group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, set):
            raise TypeError("optimizer parameters need to be organized in ordered collections, "
                            "but the ordering of tensors in sets will change between runs. "
                            "Please use a list instead.")
        else:
            params = list(params)
        tensors, names = [], []
        for param in params:
            if isinstance(param, tuple):
                names.append(param[0])
                tensors.append(param[1])
            else:
                tensors.append(param)
        param_group["params"] = tensors
        if names:
            if len(names) != len(tensors):
                raise ValueError("all optimizer params should be with/without names. Some param "
                                 "names are missing")
            param_group["param_names"] = names

        for param in tensors:
            if not isinstance(param, Tensor):
                raise TypeError("optimizer can only optimize Tensors, but one of the params is "
                                f"{type(param).__module__}.{type(param).__name__}")
            if not (param.is_leaf or param.retains_grad):
                raise ValueError("can't optimize a non-leaf Tensor")

        for name, default in self.defaults.items():
            if default is required and name not in param_group:
                raise ValueError("parameter group didn't specify a value of required "
                                 f"optimization parameter {name}")
            param_group.setdefault(name, default)

        ids = [id(p) for p in tensors]
        if len(ids) != len(set(ids)):
            warnings.warn("optimizer contains a parameter group with duplicate parameters; "
                          "in future, this will cause an error; see "
                          "github.com/pytorch/pytorch/issues/40967 for more information",
                          stacklevel=3)
        seen = set()
        for group in self.param_groups:
            seen.update(id(p) for p in group["params"])
            if ("param_names" in param_group) != ("param_names" in group):
                which = "with names" if "param_names" in param_group else "without names"
                raise ValueError("all optimizer param groups should be with/without names. "
                                 f"cannot add param group {which} to the optimizer")
        if not seen.isdisjoint(ids):
            raise ValueError("some parameters appear in more than one parameter group")
        self.param_groups.append(param_group)

    # --- gradients and stepping ----------------------------------------------------------
    def zero_grad(self, set_to_none=True):
        """Reset the gradients: to None (default), or to zeros in place."""
        for group in self.param_groups:
            for p in group["params"]:
                g = p.grad
                if g is None:
                    continue
                if set_to_none:
                    p.grad = None
                    continue
                if g.grad_fn is not None:
                    g.detach_()
                else:
                    g.requires_grad_(False)
                if g._data.flags.writeable:
                    g._data.fill(0)
                    g._bump_version()
                else:  # a read-only (broadcast) gradient cannot be zeroed in place
                    p.grad = Tensor._wrap(_zeros_like(g._data))

    def step(self, closure=None):
        """Perform one optimization step. `closure` (optional for every optimizer here)
        re-evaluates the model with autograd on and returns the loss, which step returns."""
        raise NotImplementedError

    @staticmethod
    def _eval_closure(closure):
        if closure is None:
            return None
        with enable_grad():
            return closure()

    # --- state dict ----------------------------------------------------------------------
    def state_dict(self):
        """``{"state": {index: {...}}, "param_groups": [{..., "params": [indices]}]}``, the
        parameters numbered in order of appearance across the groups, as in PyTorch. The
        state's tensors are the live ones (not copies), as in PyTorch; deep-copy the
        result to snapshot it."""
        for hook in self._optimizer_state_dict_pre_hooks.values():
            hook(self)
        index_of = {}
        start = 0

        def pack_group(group):
            nonlocal start
            packed = {k: v for k, v in group.items() if k != "params"}
            for i, p in enumerate(group["params"], start):
                index_of.setdefault(id(p), i)
            packed["params"] = [index_of[id(p)] for p in group["params"]]
            start += len(packed["params"])
            return packed

        param_groups = [pack_group(g) for g in self.param_groups]
        packed_state = {(index_of[id(k)] if isinstance(k, Tensor) else k): v
                        for k, v in self.state.items()}
        state_dict = {"state": packed_state, "param_groups": param_groups}
        for hook in self._optimizer_state_dict_post_hooks.values():
            result = hook(self, state_dict)
            if result is not None:
                state_dict = result
        return state_dict

    def load_state_dict(self, state_dict):
        """Load a ``state_dict()``: its groups' hyperparameters replace the current ones,
        its per-parameter state is copied onto each parameter's device (floating-point
        tensors also to the parameter's dtype; ``"step"`` keeps its own). State tensors may
        also be given as NumPy/CuPy arrays. Unlike PyTorch, the loaded tensors are always
        copies, so the source state dict and this optimizer never share memory."""
        state_dict = state_dict.copy()
        for hook in self._optimizer_load_state_dict_pre_hooks.values():
            result = hook(self, state_dict)
            if result is not None:
                state_dict = result
        groups = self.param_groups
        saved_groups = deepcopy(state_dict["param_groups"])
        if len(groups) != len(saved_groups):
            raise ValueError("loaded state dict has a different number of parameter groups")
        if any(len(g["params"]) != len(s["params"]) for g, s in zip(groups, saved_groups)):
            raise ValueError("loaded state dict contains a parameter group that doesn't match "
                             "the size of optimizer's group")
        id_map = dict(zip(chain.from_iterable(g["params"] for g in saved_groups),
                          chain.from_iterable(g["params"] for g in groups)))

        def cast(param, value, key=None):
            if isinstance(value, Tensor) or _is_array(value):
                return _state_tensor_like(param, value, keep_dtype=(key == "step"))
            if isinstance(value, dict):
                return {k: cast(param, v, k) for k, v in value.items()}
            if isinstance(value, Iterable) and not isinstance(value, (str, bytes)):
                return type(value)(cast(param, v) for v in value)
            return value

        state = defaultdict(dict)
        for k, v in state_dict["state"].items():
            if k in id_map:
                state[id_map[k]] = cast(id_map[k], v)
            else:
                state[k] = v

        def update_group(group, new_group):
            new_group["params"] = group["params"]
            if "param_names" in group and "param_names" not in new_group:
                new_group["param_names"] = group["param_names"]
            return new_group

        param_groups = [update_group(g, ng) for g, ng in zip(groups, saved_groups)]
        self.__setstate__({"state": state, "param_groups": param_groups})
        for hook in self._optimizer_load_state_dict_post_hooks.values():
            hook(self)

    # --- hooks ---------------------------------------------------------------------------
    def _register(self, table, hook, prepend=False):
        handle = RemovableHandle(table)
        table[handle.id] = hook
        if prepend:
            table.move_to_end(handle.id, last=False)
        return handle

    def register_step_pre_hook(self, hook):
        """``hook(optimizer, args, kwargs) -> None or (args, kwargs)`` before ``step``."""
        return self._register(self._optimizer_step_pre_hooks, hook)

    def register_step_post_hook(self, hook):
        """``hook(optimizer, args, kwargs)`` after ``step``."""
        return self._register(self._optimizer_step_post_hooks, hook)

    def register_state_dict_pre_hook(self, hook, prepend=False):
        return self._register(self._optimizer_state_dict_pre_hooks, hook, prepend)

    def register_state_dict_post_hook(self, hook, prepend=False):
        return self._register(self._optimizer_state_dict_post_hooks, hook, prepend)

    def register_load_state_dict_pre_hook(self, hook, prepend=False):
        return self._register(self._optimizer_load_state_dict_pre_hooks, hook, prepend)

    def register_load_state_dict_post_hook(self, hook, prepend=False):
        return self._register(self._optimizer_load_state_dict_post_hooks, hook, prepend)


# --- helpers shared by the optimizers -----------------------------------------------------
_NO_DEVICE = contextlib.nullcontext()


def _on(array):
    """The context in which CuPy work on `array` must run (its device); none for NumPy."""
    return _NO_DEVICE if isinstance(array, np.ndarray) else array.device


def _is_array(value):
    return isinstance(value, np.ndarray) or (
        backend.cupy is not None and isinstance(value, backend.cupy.ndarray))


def _zeros_like(array):
    with _on(array):
        return backend.array_module(array).zeros_like(array)


def _full_like(array, value):
    with _on(array):
        return backend.array_module(array).full_like(array, value)


def _zero_state(state, array, *names):
    """A fresh per-parameter state: torch's float32 'step' and a zero buffer per name."""
    state["step"] = _new_step()
    for name in names:
        state[name] = Tensor._wrap(_zeros_like(array))


def _new_step(value=0.0):
    """A parameter's step count: a float32 0-d tensor on the CPU, as PyTorch keeps it
    (unless capturable/fused)."""
    return Tensor._wrap(np.array(value, dtype=np.float32))


def _state_tensor_like(param, value, keep_dtype=False):
    """A copy of `value` (Tensor or array) on `param`'s device, cast to `param`'s dtype
    when it is floating point (unless `keep_dtype`); "step" stays on the CPU."""
    array = value._data if isinstance(value, Tensor) else value
    if keep_dtype:
        host = array if isinstance(array, np.ndarray) else array.get()
        return Tensor._wrap(np.array(host, copy=True))
    moved = backend.to_device(array, param.device)
    dtype = param._data.dtype if param.is_floating_point() else moved.dtype
    with _on(moved):
        out = moved.astype(dtype, copy=moved is array)
    return Tensor._wrap(out)


def _effective_grad(xp, param, grad, weight_decay, maximize):
    """The gradient the update uses: ``-grad`` when maximizing, plus
    ``weight_decay * param`` (L2 penalty). Returns (array, owned): `owned` tells whether
    the array is a fresh temporary that the caller may overwrite (never ``p.grad``)."""
    if weight_decay != 0:
        d = xp.multiply(param, weight_decay)
        (xp.subtract if maximize else xp.add)(d, grad, out=d)
        return d, True
    if maximize:
        return xp.negative(grad), True
    return grad, False


def _add_scaled_(xp, y, x, alpha, scratch=None):
    """``y += alpha * x`` in place (PyTorch's ``y.add_(x, alpha=alpha)``); the product
    goes to `scratch` (which may be `x` itself when `x` is a temporary)."""
    if alpha == 1:
        xp.add(y, x, out=y)
    else:
        xp.add(y, xp.multiply(x, alpha, out=scratch), out=y)


def _lerp_(xp, a, b, weight, scratch):
    """``a.lerp_(b, weight)`` as PyTorch computes it: ``a + w * (b - a)`` for ``|w| < 0.5``,
    else ``b - (b - a) * (1 - w)``; `scratch` is a temporary of a's shape."""
    xp.subtract(b, a, out=scratch)
    if abs(weight) < 0.5:
        xp.multiply(scratch, weight, out=scratch)
        xp.add(a, scratch, out=a)
    else:
        xp.multiply(scratch, 1 - weight, out=scratch)
        xp.subtract(b, scratch, out=a)


def _addcmul_(xp, y, a, b, value, scratch):
    """``y += value * a * b`` in place (PyTorch's ``y.addcmul_(a, b, value=value)``)."""
    if value == 1:
        xp.multiply(a, b, out=scratch)
    else:
        xp.multiply(a, value, out=scratch)
        xp.multiply(scratch, b, out=scratch)
    xp.add(y, scratch, out=y)


def _check_differentiable(name, differentiable):
    """``differentiable=True`` (autograd through the step) is not supported. The other
    PyTorch execution options (foreach, fused, capturable) are accepted as hints, kept in
    the param groups for state-dict compatibility; the update is the same either way."""
    if differentiable:
        raise ValueError(f"{name}: differentiable=True is not supported by pipeflow")
