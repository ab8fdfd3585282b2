"""Function: the one mechanism behind every differentiable op, built-in or user-defined.

``MyFn.apply(*args)`` runs ``MyFn.forward(ctx, *args)`` with recording off; when an input
requires grad, ``ctx`` (an instance of MyFn) becomes the output's ``grad_fn``: a node of the
backward graph that remembers its inputs' nodes (``next_functions``) and the tensors it saved.
"""
from .grad_mode import state


Tensor = None  # set by pipeflow.tensor (import cycle: a Tensor's ops are Functions)


class SavedOutput:
    """A saved tensor that is an output of the node saving it. Keeping the Tensor itself
    would make a reference cycle (output -> grad_fn -> output); it is rebuilt on unpack."""

    __slots__ = ("data", "vc", "nr")

    def __init__(self, tensor, nr):
        self.data, self.vc, self.nr = tensor._data, tensor._shared_version(), nr


class RemovableHandle:
    def __init__(self, hooks, fn):
        self._hooks, self._fn = hooks, fn

    def remove(self):
        if any(h is self._fn for h in self._hooks):
            self._hooks.remove(self._fn)


class Node:
    """What the backward engine needs of a graph node."""

    next_functions = ()
    _saved = ()
    _n_outputs = 1
    _pre_hooks = None  # {output_nr: [hook]}: hooks of non-leaf tensors

    def name(self):
        return type(self).__name__

    def add_pre_hook(self, nr, fn):
        if self._pre_hooks is None:
            self._pre_hooks = {}
        hooks = self._pre_hooks.setdefault(nr, [])
        hooks.append(fn)
        return RemovableHandle(hooks, fn)


class Function(Node):
    """Subclass with static ``forward(ctx, *args)`` and ``backward(ctx, *grads)``; call ``apply``.

    backward returns one gradient (or None) per forward argument. Gradients reaching
    backward are Tensors; with ``create_graph=True`` backward itself is recorded, so writing
    it with differentiable ops gives double backward for free."""

    is_view = False  # the output shares storage with input 0 (reshape, transpose, ...)
    bfloat16_in_float32 = False  # built-in ops: NumPy has no bfloat16 arithmetic
    _materialize = True
    _to_save = ()
    _non_diff = ()

    @staticmethod
    def forward(ctx, *args):
        raise NotImplementedError("a Function subclass must define forward(ctx, *args)")

    @staticmethod
    def backward(ctx, *grads):
        raise NotImplementedError(f"{ctx.name()} does not define backward(ctx, *grads)")

    def name(self):
        return type(self).__name__ + "Backward"

    def __repr__(self):
        return f"<{self.name()} object at {id(self):#x}>"

    # --- ctx API used inside forward/backward -------------------------------------------
    def save_for_backward(self, *tensors):
        self._to_save = tensors

    def mark_non_differentiable(self, *tensors):
        self._non_diff = tensors

    def set_materialize_grads(self, value):
        self._materialize = value

    @property
    def saved_tensors(self):
        saved = self._saved
        if saved is None:
            raise RuntimeError(
                "Trying to backward through the graph a second time (or directly access saved "
                "tensors after they have already been freed). Saved intermediate values of the "
                "graph are freed when you call .backward() or autograd.grad(). Specify "
                "retain_graph=True if you need to backward through the graph a second time or if "
                "you need to access saved tensors after calling backward.")
        out = []
        for entry, version in saved:
            if entry.__class__ is SavedOutput:
                t = Tensor._wrap(entry.data)
                t._vc, t.grad_fn, t._output_nr, t._rg = entry.vc, self, entry.nr, True
            else:
                t = entry
            if version is not None and t._version != version:
                raise RuntimeError(
                    "one of the variables needed for gradient computation has been modified by an "
                    f"inplace operation: [{t.type()} {list(t.shape)}], which is saved by "
                    f"{self.name()}, is at version {t._version}; expected version {version} "
                    "instead.")
            out.append(t)
        return tuple(out)

    # --- building the graph ----------------------------------------------------------------
    @classmethod
    def apply(cls, *args):
        if cls.bfloat16_in_float32:
            for a in args:
                if isinstance(a, Tensor) and a._data.dtype.kind == "V":
                    return _apply_in_float32(cls, args)
        ctx = cls.__new__(cls)
        if state.enabled:
            ctx.needs_input_grad = needs = tuple([isinstance(a, Tensor) and a._rg for a in args])
            state.enabled = False  # forward itself is not recorded
            try:
                out = cls.forward(ctx, *args)
            finally:
                state.enabled = True
        else:
            n = len(args)
            ctx.needs_input_grad = needs = _NO_NEEDS[n] if n < 8 else (False,) * n
            out = cls.forward(ctx, *args)
        if ctx.is_view:  # the output shares storage with input 0 (recorded or not)
            ctx.view_args = args[1:]
            out._vc, out._base, out._view_fn = args[0]._shared_version(), args[0], ctx
            out._history_version = out._vc[0]
        return ctx._record(args, needs, out) if True in needs else out

    def scatter_back(self, base, view):
        """For a view op: `base` with `view`'s values written where the view lies
        (differentiable), so that an in-place op on a view updates the base's history."""
        raise NotImplementedError(f"{self.name()} does not support in-place ops on its views")

    def _record(self, args, needs, out):
        """Make this ctx the grad_fn of `out` (a Tensor or a tuple of Tensors)."""
        self.next_functions = tuple([
            ((a.grad_fn, a._output_nr) if a.grad_fn is not None and a._base is None
             else a._grad_edge()) if n else _NO_EDGE for a, n in zip(args, needs)])
        single = out.__class__ is not tuple
        outs = [out] if single else list(out)
        if not single:
            self._n_outputs = len(outs)
            self._out_meta = [(o._data.shape, o._data.dtype) for o in outs]
        non_diff = self._non_diff
        for nr, o in enumerate(outs):
            for a in args:
                if a is o:  # forward returned an input: the output gets its own Tensor
                    o = outs[nr] = Tensor._wrap(o._data)
                    break
            if o._data.dtype.kind in "fV" and not (non_diff and any(o is n for n in non_diff)):
                o.grad_fn, o._output_nr, o._rg = self, nr, True
        if self._to_save:
            self._saved = tuple([_saved_entry(t, outs) for t in self._to_save])
            self._to_save = ()
        return outs[0] if single else tuple(outs)


_NO_EDGE = (None, 0)
_NO_NEEDS = tuple((False,) * n for n in range(8))


def _apply_in_float32(cls, args):
    """Run a built-in op on bfloat16 inputs in float32, through differentiable casts. Its
    float outputs are rounded back to bfloat16 when PyTorch's promotion gives bfloat16 (every
    float input that has dimensions is bfloat16); otherwise they keep the float16/32/64 that
    the computation promoted to."""
    bf16 = next(a for a in args if isinstance(a, Tensor) and a._data.dtype.kind == "V").dtype
    floats = [a for a in args if isinstance(a, Tensor) and a._data.dtype.kind in "fV"]
    only_bf16 = all(a._data.dtype.kind == "V" for a in ([a for a in floats if a.ndim] or floats))
    out = cls.apply(*[a.float() if isinstance(a, Tensor) and a._data.dtype.kind == "V" else a
                      for a in args])
    outs = [o.to(bf16) if only_bf16 and o._data.dtype.kind == "f" else o
            for o in (out if isinstance(out, tuple) else (out,))]
    return tuple(outs) if isinstance(out, tuple) else outs[0]


def _saved_entry(t, outs):
    """(tensor or SavedOutput or plain value, version at save time or None)."""
    if not isinstance(t, Tensor):  # None or a Python value saved alongside the tensors
        return (t, None)
    for nr, o in enumerate(outs):
        if t is o:
            return (SavedOutput(o, nr), o._vc[0])
    return (t, t._vc[0] if t._vc is not None else 0)


def once_differentiable(fn):
    """Marks a backward that is not itself differentiable (kept for PyTorch code)."""
    return fn
