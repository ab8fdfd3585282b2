"""Helpers shared by the op families."""
import numpy as np

from .. import backend
from ..autograd import function
from ..dtypes import result_type
from ..tensor import Tensor

wrap = Tensor._wrap


class Function(function.Function):
    """Base of the built-in ops."""

    bfloat16_in_float32 = True

    def name(self):
        return type(self).__name__ + "Backward0"  # PyTorch's built-in names: MulBackward0


def xp_of(t):
    return backend.array_module(t._data)


def operands(a, b, broadcast=True):
    """The arrays (or Python scalar) a binary op computes with, promoted as PyTorch does.
    One of `a`, `b` is a Tensor; tensors on different devices, or (for an elementwise op,
    `broadcast`) shapes that do not broadcast, are an error."""
    if isinstance(a, Tensor):
        x = a._data
        if not isinstance(b, Tensor):
            return _with_scalar(x, b)
        y = b._data
    else:
        y, x = _with_scalar(b._data, a)
        return x, y
    if x.__class__ is not y.__class__ or (x.__class__ is not backend.np.ndarray
                                          and x.device != y.device):
        raise RuntimeError("Expected all tensors to be on the same device, but found at least "
                           f"two devices, {a.device} and {b.device}!")
    if x.dtype != y.dtype:
        dt = result_type(x, y)
        x, y = x.astype(dt, copy=False), y.astype(dt, copy=False)
    if broadcast and x.shape != y.shape:
        check_broadcast(x.shape, y.shape)
    return x, y


def check_broadcast(a, b):
    """PyTorch's error for shapes that do not broadcast."""
    for i in range(1, min(len(a), len(b)) + 1):
        if a[-i] != b[-i] and a[-i] != 1 and b[-i] != 1:
            raise RuntimeError(f"The size of tensor a ({a[-i]}) must match the size of tensor b "
                               f"({b[-i]}) at non-singleton dimension {max(len(a), len(b)) - i}")


def _with_scalar(x, value):
    """Array `x` and a Python scalar, promoted as PyTorch does (`x` may be cast)."""
    if value.__class__ not in (float, int, bool) and isinstance(value, np.generic):
        value = value.item()  # a NumPy scalar promotes like the Python number (as in PyTorch)
    if x.dtype.kind != "f":
        dt = result_type(x, value)
        if dt != x.dtype:
            x = x.astype(dt)
        if dt.kind == "V":  # bfloat16: NumPy would promote a Python float to float32
            value = dt.type(value)
        elif dt.kind in "iu" and isinstance(value, int):
            info = np.iinfo(dt)
            if not info.min <= value <= info.max:  # wraps around, as in PyTorch (NumPy raises)
                value = np.array(value).astype(dt)
    return x, value


def as_float(x):
    """An integer or boolean array as the default float (float ops on them, as PyTorch)."""
    return x if x.dtype.kind in "fV" else x.astype(result_type(x, 0.0))


def same_device(*tensors):
    """Raise PyTorch's error when tensors (non-tensors are skipped) are on different devices."""
    first = None
    for t in tensors:
        if isinstance(t, Tensor):
            if first is None:
                first = t
            elif t._data.__class__ is not first._data.__class__ or (
                    t._data.__class__ is not np.ndarray and t._data.device != first._data.device):
                raise RuntimeError("Expected all tensors to be on the same device, but found at "
                                   f"least two devices, {first.device} and {t.device}!")


def sum_to(g, shape):
    """Sum a broadcast gradient back to `shape` (differentiable)."""
    if g._data.shape == shape:
        return g
    gshape = g._data.shape
    lead = len(gshape) - len(shape)
    if lead:
        g = g.sum(tuple(range(lead)))  # dims that broadcasting prepended: sum them away
    kept = tuple(i for i, n in enumerate(shape) if n == 1 and gshape[lead + i] != 1)
    return g.sum(kept, keepdim=True) if kept else g


def grad_for(g, t):
    """`g` shaped and typed as input `t` (undoing broadcasting and promotion); None when
    `t` is not a tensor."""
    return fit(g, meta(t))


def meta(t):
    """What `fit` needs of an input: its (shape, dtype), or None for a non-tensor."""
    return (t._data.shape, t._data.dtype) if isinstance(t, Tensor) else None


def fit(g, shape_dtype):
    if shape_dtype is None:
        return None
    shape, dtype = shape_dtype
    if g._data.shape != shape:
        g = sum_to(g, shape)
    if g._data.dtype != dtype:
        g = g.to(dtype)
    return g


def norm_dim(dim, ndim):
    if dim < -max(ndim, 1) or dim >= max(ndim, 1):
        raise IndexError(f"Dimension out of range (expected to be in range of "
                         f"[{-max(ndim, 1)}, {max(ndim, 1) - 1}], but got {dim})")
    return dim % ndim if ndim else 0


def norm_dims(dim, ndim):
    """None or () -> all axes; int or sequence -> sorted tuple of non-negative axes (a 0-d
    tensor has none: its dim 0 / -1 reduce nothing, as in PyTorch)."""
    if dim is None or (not isinstance(dim, int) and len(dim) == 0):
        return tuple(range(ndim))
    if isinstance(dim, int):
        dim = (dim,)
    axes = tuple(sorted(norm_dim(d, ndim) for d in dim))
    return axes if ndim else ()
