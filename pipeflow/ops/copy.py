"""Copies and conversions: clone, dtype casts, device transfers, fills."""
from .. import backend, dtypes
from ._util import Function, Tensor, wrap, xp_of


class Clone(Function):
    bfloat16_in_float32 = False  # moves data: no arithmetic

    @staticmethod
    def forward(ctx, a):
        return wrap(a._data.copy())

    @staticmethod
    def backward(ctx, g):
        return g


def clone(a):
    return Clone.apply(a)


class ToCopy(Function):
    """Cast and/or move; the gradient goes back to the source's dtype and device."""
    bfloat16_in_float32 = False  # moves data: no arithmetic

    @staticmethod
    def forward(ctx, a, device, np_dtype, non_blocking):
        x = a._data
        ctx.src_device, ctx.src_dtype = backend.device_of(x), x.dtype
        if np_dtype is not None and np_dtype != x.dtype:
            x = x.astype(np_dtype)
            moved = True
        else:
            moved = False
        if device is not None and device != ctx.src_device:
            x = backend.to_device(x, device, non_blocking)
            moved = True
        return wrap(x if moved else x.copy())

    @staticmethod
    def backward(ctx, g):
        return g.to(ctx.src_device, dtypes.from_numpy_dtype(ctx.src_dtype)), None, None, None


def to(a, device=None, dtype=None, non_blocking=False, copy=False):
    np_dtype = dtypes.to_numpy(dtype)
    device = None if device is None else backend.device(device)
    if not copy and (np_dtype is None or np_dtype == a._data.dtype) and \
            (device is None or device == a.device):
        return a
    return ToCopy.apply(a, device, np_dtype, non_blocking)


def filled(a, value):
    """A tensor like `a` holding `value` everywhere (for fill_/zero_)."""
    if isinstance(value, Tensor):
        value = value.item()
    return wrap(xp_of(a).full(a._data.shape, value, a._data.dtype))


def copy_into(a, src, non_blocking=False):
    """`src` as `a`'s dtype, device and shape (for copy_)."""
    if not isinstance(src, Tensor):
        from ..factories import tensor
        src = tensor(src)
    src = to(src, a.device, a.dtype, non_blocking)
    return src if src._data.shape == a._data.shape else src.expand(a._data.shape)
