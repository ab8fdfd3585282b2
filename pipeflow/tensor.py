"""Tensor: an n-dimensional array on a device (NumPy on "cpu", CuPy on "cuda") that can
record the operations made with it, so that ``backward()`` computes gradients."""
import contextlib
import weakref

import numpy as np

from . import backend, dtypes
from .autograd import engine, function
from .autograd.grad_mode import enable_grad, state


class Size(tuple):
    """A tensor's shape: a tuple, printed the PyTorch way."""

    def __repr__(self):
        return f"pipeflow.Size({list(self)})"

    def __getitem__(self, index):
        item = super().__getitem__(index)
        return Size(item) if isinstance(index, slice) else item

    def __add__(self, other):
        return Size(tuple(self) + tuple(other))

    def numel(self):
        return int(np.prod(self, dtype=np.int64))


class Tensor:
    # Class-level defaults keep creating a result cheap: an op sets only `_data`.
    grad = None
    grad_fn = None
    _rg = False          # requires_grad
    _output_nr = 0       # which output of grad_fn this tensor is
    _vc = None           # version counter [n], shared with views; created on first need
    _accum_ref = None    # weakref to the leaf's AccumulateGrad node
    _hooks = None        # gradient hooks of a leaf
    _retains_grad = False
    _base = None         # for a view: the tensor whose storage it shares
    _view_fn = None      # ... and the view op's node, which can write a view back
    _history_version = 0  # for a view: the storage version its grad_fn accounts for
    __array_ufunc__ = None  # numpy_array * tensor defers to Tensor.__rmul__

    def __init__(self, data, requires_grad=False):
        from .factories import as_array
        self._data = as_array(data)
        if requires_grad:
            self.requires_grad = True

    @classmethod
    def _wrap(cls, array):
        t = object.__new__(cls)
        if array.__class__ is not np.ndarray and isinstance(array, np.generic):
            array = np.asarray(array)  # NumPy reductions return scalars, not 0-d arrays
        t._data = array
        return t

    # --- metadata -------------------------------------------------------------------------
    @property
    def shape(self):
        return Size(self._data.shape)

    def size(self, dim=None):
        return Size(self._data.shape) if dim is None else self._data.shape[dim]

    @property
    def dtype(self):
        return dtypes.from_numpy_dtype(self._data.dtype)

    @property
    def device(self):
        return backend.device_of(self._data)

    @property
    def is_cuda(self):
        return self.device.type == "cuda"

    @property
    def ndim(self):
        return self._data.ndim

    def dim(self):
        return self._data.ndim

    def numel(self):
        return int(self._data.size)

    nelement = numel

    def element_size(self):
        return self._data.itemsize

    def is_floating_point(self):
        return self.dtype.is_floating_point

    def is_contiguous(self):
        return bool(self._data.flags.c_contiguous)

    def stride(self, dim=None):
        strides = tuple(s // self._data.itemsize for s in self._data.strides)
        return strides if dim is None else strides[dim]

    def data_ptr(self):
        return self._data.data.ptr if self.is_cuda else self._data.__array_interface__["data"][0]

    @property
    def _version(self):
        return self._vc[0] if self._vc is not None else 0

    def _shared_version(self):
        if self._vc is None:
            self._vc = [0]
        return self._vc

    def _bump_version(self):
        self._shared_version()[0] += 1

    def type(self, dtype=None):
        """The legacy type name ('pipeflow.FloatTensor'), or a cast to `dtype` (a dtype or
        such a name)."""
        if dtype is None:
            name = dtypes.TYPE_NAMES.get(self.dtype, self.dtype.name)
            return f"pipeflow.{'cuda.' if self.is_cuda else ''}{name}"
        if isinstance(dtype, str) and dtype.endswith("Tensor"):
            by_name = {v: k for k, v in dtypes.TYPE_NAMES.items()}
            device = backend.device("cuda") if ".cuda." in dtype else backend.CPU
            return self.to(device, by_name[dtype.rsplit(".", 1)[-1]])
        return self.to(dtype)

    # --- autograd -------------------------------------------------------------------------
    @property
    def requires_grad(self):
        return self._rg

    @requires_grad.setter
    def requires_grad(self, value):
        if self.grad_fn is not None:
            raise RuntimeError("you can only change requires_grad flags of leaf variables; use "
                               "detach() to get a tensor that does not require grad")
        if value and not self.dtype.is_floating_point:
            raise RuntimeError(f"only Tensors of floating point dtype can require gradients, "
                               f"not {self.dtype}")
        self._rg = bool(value)

    def requires_grad_(self, requires_grad=True):
        self.requires_grad = requires_grad
        return self

    @property
    def is_leaf(self):
        return self.grad_fn is None

    @property
    def data(self):
        """A tensor sharing this one's storage, outside autograd (for ``w.data -= ...``)."""
        return Tensor._wrap(self._data)

    @data.setter
    def data(self, value):
        self._data = value._data

    def _grad_edge(self):
        """(node, output number) through which gradient flows back into this tensor."""
        if self._base is not None and self._history_version != self._vc[0]:
            self._replay_view()
        if self.grad_fn is not None:
            return self.grad_fn, self._output_nr
        return engine.accumulator_of(self), 0

    def _replay_view(self):
        """The shared storage was written in place since this view's history was set, maybe
        through its base or another view: take the view again from the base, whose history
        covers every write (as PyTorch does)."""
        base = self._base
        if base._rg:
            with enable_grad():
                fresh = type(self._view_fn).apply(base, *self._view_fn.view_args)
            self.grad_fn, self._output_nr, self._rg = fresh.grad_fn, fresh._output_nr, True
        self._history_version = self._vc[0]

    def detach(self):
        t = Tensor._wrap(self._data)
        t._vc = self._shared_version()
        return t

    def detach_(self):
        self.grad_fn, self._rg = None, False
        return self

    def backward(self, gradient=None, retain_graph=None, create_graph=False, inputs=None):
        from .autograd import backward
        backward(self, gradient, retain_graph, create_graph, inputs=inputs)

    def register_hook(self, hook):
        if not self._rg:
            raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
        return engine.register_hook(self, hook)

    def retain_grad(self):
        if self.grad_fn is None or self._retains_grad:
            return
        ref = weakref.ref(self)

        def keep(grad):
            t = ref()
            if t is not None:
                t.grad = grad.detach() if t.grad is None else t.grad + grad.detach()
        keep.runs_last = True  # sees what the other hooks made of the gradient (as PyTorch)
        self._retains_grad = True
        self.register_hook(keep)

    @property
    def retains_grad(self):
        return self._retains_grad

    # --- conversion and devices -----------------------------------------------------------
    def to(self, *args, **kwargs):
        """``to(device)``, ``to(dtype)``, ``to(device, dtype)``, ``to(other)``,
        ``non_blocking=``, ``copy=``; differentiable."""
        device, dtype, non_blocking, copy = parse_to_args(args, kwargs)
        return _ops.copy.to(self, device, dtype, non_blocking, copy)

    def cuda(self, device=None, non_blocking=False):
        dev = backend.device("cuda" if device is None else device)
        return self.to(dev, non_blocking=non_blocking)

    def cpu(self):
        return self.to(backend.CPU)

    def float(self):
        return self.to(dtypes.float32)

    def double(self):
        return self.to(dtypes.float64)

    def half(self):
        return self.to(dtypes.float16)

    def long(self):
        return self.to(dtypes.int64)

    def int(self):
        return self.to(dtypes.int32)

    def bool(self):
        return self.to(dtypes.bool_)

    def byte(self):
        return self.to(dtypes.uint8)

    def numpy(self, force=False):
        if self._rg and not force:
            raise RuntimeError("Can't call numpy() on Tensor that requires grad. "
                               "Use tensor.detach().numpy() instead.")
        if self.is_cuda:
            if not force:
                raise TypeError("can't convert cuda tensor to numpy. Use Tensor.cpu() to copy "
                                "the tensor to host memory first.")
            return self._data.get()
        return self._data

    def __array__(self, dtype=None, copy=None):
        arr = self.numpy()
        return arr if dtype is None else arr.astype(dtype, copy=False)

    def item(self):
        if self._data.size != 1:
            raise RuntimeError(f"a Tensor with {self._data.size} elements cannot be converted "
                               "to a Python scalar")
        return self._data.reshape(()).item() if self.device.type == "cpu" else \
            self._data.get().reshape(()).item()

    def tolist(self):
        return (self._data if self.device.type == "cpu" else self._data.get()).tolist()

    def __dlpack__(self, *args, **kwargs):
        if self._rg:
            raise RuntimeError("can't export a tensor that requires grad through DLPack; "
                               "use tensor.detach()")
        return self._data.__dlpack__(*args, **kwargs)

    def __dlpack_device__(self):
        return self._data.__dlpack_device__()

    def pin_memory(self):
        """A copy in page-locked host memory (a plain copy where there is no GPU)."""
        if self.is_cuda:
            raise RuntimeError("cannot pin a CUDA tensor: only CPU tensors can be pinned")
        out = backend.pinned_empty(self._data.shape, self._data.dtype)
        out[...] = self._data
        return Tensor._wrap(out)

    def is_pinned(self):
        return backend.is_pinned(self._data)

    def contiguous(self):
        return self if self._data.flags.c_contiguous else _ops.copy.clone(self)

    def clone(self):
        return _ops.copy.clone(self)

    def __repr__(self):
        arr = self._data if self.device.type == "cpu" else self._data.get()
        if arr.dtype.kind == "V":  # bfloat16 prints through float32
            arr = arr.astype(np.float32)
        integral = arr.dtype.kind != "f" or bool(np.all(np.mod(arr[np.isfinite(arr)], 1) == 0))
        body = np.array2string(arr, separator=", ", prefix="tensor(", threshold=1000,
                               precision=4, floatmode="maxprec" if integral else "fixed")
        extras = []
        if self.is_cuda:
            extras.append(f"device='{self.device}'")
        default = (dtypes.float32,) if arr.size == 0 else (dtypes.float32, dtypes.int64, dtypes.bool_)
        if self.dtype not in default:
            extras.append(f"dtype={self.dtype}")
        if self.grad_fn is not None:
            extras.append(f"grad_fn=<{self.grad_fn.name()}>")
        elif self._rg:
            extras.append("requires_grad=True")
        return "tensor(" + ", ".join([body] + extras) + ")"

    __str__ = __repr__

    def __len__(self):
        if self._data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self._data.shape[0]

    def __iter__(self):
        if self._data.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self._data.shape[0]))

    def __bool__(self):
        if self._data.size != 1:
            raise RuntimeError(f"Boolean value of Tensor with {self._data.size} values is "
                               "ambiguous")
        return bool(self.item())

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __index__(self):
        if self._data.dtype.kind not in "iu" or self._data.size != 1:
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return int(self.item())

    __hash__ = object.__hash__

    def __reduce_ex__(self, protocol):
        """Pickles its data and requires_grad, never its autograd history (as PyTorch)."""
        if self.grad_fn is not None:
            raise RuntimeError("only leaf tensors can be pickled; detach() it first")
        return (_rebuild_tensor, (self._data, self._rg))

    # --- new tensors like this one --------------------------------------------------------
    def _like(self, fn, size, dtype, device, requires_grad):
        """A new tensor from the factory `fn` ('zeros', 'ones', 'empty'), with this
        tensor's dtype and device unless told otherwise."""
        if dtype is None and device is None:  # the common case, kept cheap (engine, ops)
            x = self._data
            xp = backend.array_module(x)
            with contextlib.nullcontext() if xp is np else x.device:
                t = Tensor._wrap(getattr(xp, fn)(_sizes(size), x.dtype))
            return t.requires_grad_() if requires_grad else t
        from . import factories
        return getattr(factories, fn)(*_sizes(size), dtype=self.dtype if dtype is None else dtype,
                                      device=self.device if device is None else device,
                                      requires_grad=requires_grad)

    def new_zeros(self, *size, dtype=None, device=None, requires_grad=False):
        return self._like("zeros", size, dtype, device, requires_grad)

    def new_ones(self, *size, dtype=None, device=None, requires_grad=False):
        return self._like("ones", size, dtype, device, requires_grad)

    def new_empty(self, *size, dtype=None, device=None, requires_grad=False):
        return self._like("empty", size, dtype, device, requires_grad)

    def new_full(self, size, fill_value, dtype=None, device=None, requires_grad=False):
        from .factories import full
        return full(size, fill_value, dtype=self.dtype if dtype is None else dtype,
                    device=self.device if device is None else device, requires_grad=requires_grad)

    def new_tensor(self, data, dtype=None, device=None, requires_grad=False):
        from .factories import tensor
        return tensor(data, dtype=self.dtype if dtype is None else dtype,
                      device=self.device if device is None else device, requires_grad=requires_grad)

    # --- in-place ops ---------------------------------------------------------------------
    def _inplace(self, op, *args, ufunc=None):
        """Write ``op(self, *args)`` into this tensor's storage, keep autograd right: the
        tensor takes over the op's history (and so do the tensors it is a view of), and
        its version counter moves on, so a node that saved the old value notices. Outside
        autograd, a binary `ufunc` (name) writes straight into the storage, no temporary."""
        recording = state.enabled and (self._rg or any(isinstance(a, Tensor) and a._rg for a in args))
        if not self._data.flags.writeable:
            raise RuntimeError("unsupported operation: more than one element of the written-to "
                               "tensor refers to a single memory location (an expanded tensor); "
                               "clone() it first")
        if ufunc is not None and not recording:
            return self._ufunc_inplace(ufunc, *args)
        if recording:
            self._check_inplace_allowed()
            out = op(_ops.copy.clone(self), *args)  # the op may save its input: give it a copy
        else:
            out = op(self, *args)
        result = out._data
        if result.shape != self._data.shape:
            raise RuntimeError(f"output with shape {list(self._data.shape)} doesn't match the "
                               f"broadcast shape {list(result.shape)}")
        if result.dtype != self._data.dtype and not np.can_cast(result.dtype, self._data.dtype,
                                                                "same_kind"):
            raise RuntimeError(f"result type {dtypes.from_numpy_dtype(result.dtype)} can't be "
                               f"cast to the desired output type {self.dtype}")
        self._data[...] = result
        self._bump_version()
        if recording:
            self._adopt_history(out)
        return self

    def _check_inplace_allowed(self):
        t = self
        while t is not None:
            if t.grad_fn is None and t._rg:
                raise RuntimeError(("a view of a leaf Variable" if t is not self else
                                    "a leaf Variable") + " that requires grad is being used in "
                                   "an in-place operation.")
            t = t._base

    def _adopt_history(self, new):
        """This tensor's value is now `new`'s: take over its graph, then give every base this
        tensor is a view of a graph that writes the new values into the view's place."""
        self.grad_fn, self._output_nr, self._rg = new.grad_fn, new._output_nr, new._rg
        self._history_version = self._version
        if self._base is not None and (self._rg or self._base._rg):
            self._base._adopt_history(self._view_fn.scatter_back(self._base, self))

    def _ufunc_inplace(self, ufunc, other, alpha=1):
        x = self._data
        y = other._data if isinstance(other, Tensor) else other
        if alpha != 1:
            y = y * alpha
        if isinstance(other, Tensor) and other._data.__class__ is not x.__class__:
            raise RuntimeError(f"Expected all tensors to be on the same device, but found at "
                               f"least two devices, {self.device} and {other.device}!")
        try:
            getattr(backend.array_module(x), ufunc)(x, y, out=x, casting="same_kind")
        except TypeError as e:  # NumPy's UFuncTypeError: e.g. an int tensor += a float
            raise RuntimeError(f"{ufunc}_: result can't be cast to the tensor's dtype "
                               f"{self.dtype} ({e})") from None
        except ValueError as e:
            raise RuntimeError(f"{ufunc}_: {e}") from None
        self._bump_version()
        return self

    def add_(self, other, alpha=1):
        return self._inplace(_ops.elementwise.add, other, alpha, ufunc="add")

    def sub_(self, other, alpha=1):
        return self._inplace(_ops.elementwise.sub, other, alpha, ufunc="subtract")

    def mul_(self, other):
        return self._inplace(_ops.elementwise.mul, other, ufunc="multiply")

    def div_(self, other):
        return self._inplace(_ops.elementwise.div, other, ufunc="true_divide")

    def pow_(self, exponent):
        return self._inplace(_ops.elementwise.pow, exponent)

    def clamp_(self, min=None, max=None):
        return self._inplace(_ops.elementwise.clamp, min, max)

    def masked_fill_(self, mask, value):
        return self._inplace(_ops.indexing.masked_fill, mask, value)

    def copy_(self, src, non_blocking=False):
        return self._inplace(_ops.copy.copy_into, src, non_blocking)

    def zero_(self):
        return self.fill_(0)

    def fill_(self, value):
        return self._inplace(_ops.copy.filled, value)

    def uniform_(self, a=0.0, b=1.0, generator=None):
        from .random import uniform_like
        return self._inplace(_ops.copy.copy_into, uniform_like(self, a, b, generator), False)

    def normal_(self, mean=0.0, std=1.0, generator=None):
        from .random import normal_like
        return self._inplace(_ops.copy.copy_into, normal_like(self, mean, std, generator), False)

    def __setitem__(self, index, value):
        self._inplace(_ops.indexing.index_put, index, value)

    __iadd__ = add_
    __isub__ = sub_
    __imul__ = mul_
    __itruediv__ = div_
    __ipow__ = pow_

    # --- arithmetic -----------------------------------------------------------------------
    def __add__(self, other):
        return _ops.elementwise.Add.apply(self, other)

    __radd__ = __add__

    def __sub__(self, other):
        return _ops.elementwise.Sub.apply(self, other)

    def __rsub__(self, other):
        return _ops.elementwise.Sub.apply(other, self)

    def __mul__(self, other):
        return _ops.elementwise.Mul.apply(self, other)

    __rmul__ = __mul__

    def __truediv__(self, other):
        return _ops.elementwise.Div.apply(self, other)

    def __rtruediv__(self, other):
        return _ops.elementwise.Div.apply(other, self)

    def __pow__(self, other):
        return _ops.elementwise.pow(self, other)

    def __rpow__(self, other):
        return _ops.elementwise.pow(other, self)

    def __matmul__(self, other):
        return _ops.linalg.matmul(self, other)

    def __rmatmul__(self, other):
        return _ops.linalg.matmul(other, self)

    def __neg__(self):
        return _ops.elementwise.Neg.apply(self)

    def __pos__(self):
        return self

    def __abs__(self):
        return _ops.elementwise.Abs.apply(self)

    def __floordiv__(self, other):
        return _ops.elementwise.floor_divide(self, other)

    def __rfloordiv__(self, other):
        return _ops.elementwise.floor_divide(other, self)

    def __mod__(self, other):
        return _ops.elementwise.remainder(self, other)

    def __rmod__(self, other):
        return _ops.elementwise.remainder(other, self)

    def __eq__(self, other):
        return _ops.elementwise.compare("equal", self, other)

    def __ne__(self, other):
        return _ops.elementwise.compare("not_equal", self, other)

    def __lt__(self, other):
        return _ops.elementwise.compare("less", self, other)

    def __le__(self, other):
        return _ops.elementwise.compare("less_equal", self, other)

    def __gt__(self, other):
        return _ops.elementwise.compare("greater", self, other)

    def __ge__(self, other):
        return _ops.elementwise.compare("greater_equal", self, other)

    def __and__(self, other):
        return _ops.elementwise.compare("bitwise_and", self, other)

    def __or__(self, other):
        return _ops.elementwise.compare("bitwise_or", self, other)

    def __xor__(self, other):
        return _ops.elementwise.compare("bitwise_xor", self, other)

    def __invert__(self):
        return _ops.elementwise.logical_not(self)

    def __getitem__(self, index):
        return _ops.indexing.getitem(self, index)

    @property
    def T(self):
        return _ops.shape.permute(self, tuple(range(self._data.ndim - 1, -1, -1)))

    @property
    def mT(self):
        return _ops.shape.transpose(self, -2, -1)


def _rebuild_tensor(array, requires_grad):
    t = Tensor._wrap(array)
    t._rg = requires_grad
    return t


def parse_to_args(args, kwargs):
    """PyTorch's spellings of ``.to(...)`` -> (device, dtype, non_blocking, copy)."""
    device = dtype = None
    kwargs = dict(kwargs)
    non_blocking, copy = kwargs.pop("non_blocking", False), kwargs.pop("copy", False)
    bad = set(kwargs) - {"device", "dtype"}
    if bad:
        raise TypeError(f"to() got unexpected keyword arguments {sorted(bad)}")
    for a in args + tuple(kwargs.values()):
        if isinstance(a, Tensor):
            device, dtype = a.device, a.dtype
        elif isinstance(a, (dtypes.dtype, np.dtype)) or a in (float, int, bool) or (
                isinstance(a, type) and issubclass(a, np.generic)):
            dtype = a
        elif isinstance(a, bool):
            non_blocking = a
        elif a is not None:
            device = backend.device(a)
    return device, dtype, non_blocking, copy


def _sizes(size):
    """Accept ``f(2, 3)`` and ``f((2, 3))``."""
    return tuple(size[0]) if len(size) == 1 and isinstance(size[0], (tuple, list)) else size


from . import ops as _ops  # noqa: E402  (ops need Tensor defined)

function.Tensor = Tensor
_ops.attach_methods(Tensor)
