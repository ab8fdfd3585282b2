"""Reductions: sum, mean, var/std, max/min, logsumexp, cumsum, norm."""
import math
from collections import namedtuple

from ._util import Function, Tensor, as_float, norm_dim, norm_dims, wrap, xp_of

values_indices = namedtuple("values_indices", ["values", "indices"])


def _expand_back(g, shape, axes, keepdim):
    """Broadcast a reduced gradient back over the reduced `axes` of `shape`."""
    if not keepdim:
        g = g.reshape(tuple(1 if i in axes else n for i, n in enumerate(shape)))
    return g.expand(shape)


class Sum(Function):
    @staticmethod
    def forward(ctx, a, dim, keepdim):
        x = a._data
        ctx.shape, ctx.axes, ctx.keepdim = x.shape, norm_dims(dim, x.ndim), keepdim
        out = x.sum(axis=ctx.axes, keepdims=keepdim)
        if x.dtype.kind in "bu" or (x.dtype.kind == "i" and x.dtype.itemsize < 8):
            out = out.astype("int64")  # PyTorch sums integers and bools as int64
        return wrap(out)

    @staticmethod
    def backward(ctx, g):
        return _expand_back(g, ctx.shape, ctx.axes, ctx.keepdim), None, None


class Mean(Function):
    @staticmethod
    def forward(ctx, a, dim, keepdim):
        x = a._data
        if x.dtype.kind != "f":
            raise RuntimeError(f"mean(): could not infer output dtype. Input dtype must be "
                               f"floating point, got {a.dtype}")
        ctx.shape, ctx.axes, ctx.keepdim = x.shape, norm_dims(dim, x.ndim), keepdim
        ctx.count = math.prod(x.shape[i] for i in ctx.axes)
        return wrap(x.mean(axis=ctx.axes, keepdims=keepdim))

    @staticmethod
    def backward(ctx, g):
        return _expand_back(g / ctx.count, ctx.shape, ctx.axes, ctx.keepdim), None, None


class Var(Function):
    @staticmethod
    def forward(ctx, a, dim, correction, keepdim):
        x = a._data
        ctx.axes, ctx.keepdim, ctx.correction = norm_dims(dim, x.ndim), keepdim, correction
        ctx.save_for_backward(a)
        return wrap(x.var(axis=ctx.axes, ddof=correction, keepdims=keepdim))

    @staticmethod
    def backward(ctx, g):
        a, = ctx.saved_tensors
        return _var_grad(ctx, a, g), None, None, None


def _var_grad(ctx, a, g):
    """d var / d a, times the incoming gradient `g` of the variance."""
    n = math.prod(a._data.shape[ax] for ax in ctx.axes)
    centered = a - a.mean(ctx.axes, keepdim=True)
    g = _expand_back(g, a._data.shape, ctx.axes, ctx.keepdim)
    return g * centered * (2 / (n - ctx.correction))


class Std(Function):
    """sqrt(var); its gradient is 0 where the spread is 0 (as PyTorch), not 0/0."""

    @staticmethod
    def forward(ctx, a, dim, correction, keepdim):
        x = a._data
        ctx.axes, ctx.keepdim, ctx.correction = norm_dims(dim, x.ndim), keepdim, correction
        out = wrap(x.std(axis=ctx.axes, ddof=correction, keepdims=keepdim))
        ctx.save_for_backward(a, out)
        return out

    @staticmethod
    def backward(ctx, g):
        a, y = ctx.saved_tensors
        return _var_grad(ctx, a, (g / (2 * y)).masked_fill(y == 0, 0)), None, None, None


def _correction(unbiased, correction):
    """PyTorch's two spellings of the degrees-of-freedom correction (default 1)."""
    if correction is None:
        return 1 if unbiased is None or unbiased else 0
    return correction


def var(a, dim=None, unbiased=None, keepdim=False, correction=None):
    return Var.apply(a, dim, _correction(unbiased, correction), keepdim)


def std(a, dim=None, unbiased=None, keepdim=False, correction=None):
    return Std.apply(a, dim, _correction(unbiased, correction), keepdim)


class Extreme(Function):
    """amax/amin over dims; ties share the gradient evenly (as PyTorch)."""

    @staticmethod
    def forward(ctx, a, dim, keepdim, kind):
        x = a._data
        if x.size == 0:
            raise RuntimeError(f"{kind}(): expected a non-empty tensor")
        ctx.axes, ctx.keepdim = norm_dims(dim, x.ndim), keepdim
        out = wrap(getattr(x, kind)(axis=ctx.axes, keepdims=keepdim))
        ctx.save_for_backward(a, out)
        return out

    @staticmethod
    def backward(ctx, g):
        a, out = ctx.saved_tensors
        shape = a._data.shape
        hit = a == _expand_back(out, shape, ctx.axes, ctx.keepdim)
        share = hit.to(g.dtype) / hit.sum(ctx.axes, keepdim=True)
        return _expand_back(g, shape, ctx.axes, ctx.keepdim) * share, None, None, None


class ExtremeDim(Function):
    """max/min along one dim, with indices; the gradient goes to the index (as PyTorch)."""

    @staticmethod
    def forward(ctx, a, dim, keepdim, kind):
        xp, x = xp_of(a), a._data
        dim = norm_dim(dim, x.ndim)
        if x.ndim == 0:
            return wrap(x.copy()), wrap(xp.zeros((), "int64"))
        if x.shape[dim] == 0:
            raise IndexError(f"{kind}(): expected a non-empty dimension {dim}")
        idx = getattr(xp, "arg" + kind)(x, axis=dim)
        idx_keep = xp.expand_dims(idx, dim)
        values = xp.take_along_axis(x, idx_keep, axis=dim)
        ctx.dim, ctx.keepdim, ctx.shape = dim, keepdim, x.shape
        indices = wrap((idx_keep if keepdim else idx).astype("int64"))
        ctx.save_for_backward(wrap(idx_keep))
        ctx.mark_non_differentiable(indices)
        return wrap(values if keepdim else values.squeeze(dim)), indices

    @staticmethod
    def backward(ctx, g, _):
        idx, = ctx.saved_tensors
        if not ctx.keepdim:
            g = g.unsqueeze(ctx.dim)
        zeros = g.new_zeros(ctx.shape)
        return zeros.scatter_add(ctx.dim, idx, g), None, None, None


def _extreme(kind):
    def reduce(a, dim=None, keepdim=False):
        if isinstance(dim, Tensor):  # max(a, b): elementwise
            from .elementwise import maximum, minimum
            return (maximum if kind == "max" else minimum)(a, dim)
        if dim is None:
            return Extreme.apply(a, None, False, kind)
        return values_indices(*ExtremeDim.apply(a, dim, keepdim, kind))
    reduce.__name__ = kind
    return reduce


max_ = _extreme("max")
min_ = _extreme("min")


def amax(a, dim=None, keepdim=False):
    return Extreme.apply(a, dim, keepdim, "max")


def amin(a, dim=None, keepdim=False):
    return Extreme.apply(a, dim, keepdim, "min")


def argmax(a, dim=None, keepdim=False):
    return _arg(a, dim, keepdim, "argmax")


def argmin(a, dim=None, keepdim=False):
    return _arg(a, dim, keepdim, "argmin")


def _arg(a, dim, keepdim, kind):
    xp, x = xp_of(a), a._data
    if dim is None:
        out = getattr(xp, kind)(x.reshape(-1))
        return wrap(xp.asarray(out, dtype="int64").reshape((1,) * x.ndim if keepdim else ()))
    return wrap(getattr(xp, kind)(x, axis=norm_dim(dim, x.ndim), keepdims=keepdim).astype("int64"))


class LogSumExp(Function):
    @staticmethod
    def forward(ctx, a, dim, keepdim):
        xp, x = xp_of(a), as_float(a._data)
        axes = norm_dims(dim, x.ndim)
        m = x.max(axis=axes, keepdims=True) if x.size else xp.zeros((1,) * x.ndim, x.dtype)
        m = xp.where(xp.isfinite(m), m, 0)
        out = xp.log(xp.exp(x - m).sum(axis=axes, keepdims=True)) + m
        ctx.axes, ctx.keepdim = axes, keepdim
        result = wrap(out if keepdim else out.squeeze(axes))
        ctx.save_for_backward(a, result)
        return result

    @staticmethod
    def backward(ctx, g):
        a, y = ctx.saved_tensors
        shape = a._data.shape
        return (_expand_back(g, shape, ctx.axes, ctx.keepdim)
                * (a - _expand_back(y, shape, ctx.axes, ctx.keepdim)).exp()), None, None


def logsumexp(a, dim, keepdim=False):
    return LogSumExp.apply(a, dim, keepdim)


class Cumsum(Function):
    @staticmethod
    def forward(ctx, a, dim):
        x = a._data
        ctx.dim = norm_dim(dim, x.ndim)
        out = x.cumsum(axis=ctx.dim) if x.ndim else x.copy()
        if x.dtype.kind in "biu":
            out = out.astype("int64")
        return wrap(out)

    @staticmethod
    def backward(ctx, g):
        if g.ndim == 0:
            return g, None
        return g.flip(ctx.dim).cumsum(ctx.dim).flip(ctx.dim), None


def cumsum(a, dim, dtype=None):
    out = Cumsum.apply(a, dim)
    return out if dtype is None else out.to(dtype)


class Norm2(Function):
    """The Euclidean norm; its gradient at zero is zero (as PyTorch)."""

    @staticmethod
    def forward(ctx, a, dim, keepdim):
        xp, x = xp_of(a), as_float(a._data)
        axes = norm_dims(dim, x.ndim)
        wide = x.astype("float32") if x.itemsize < 4 else x  # float16 squares overflow
        out = wrap(xp.sqrt((wide * wide).sum(axis=axes, keepdims=keepdim)).astype(x.dtype))
        ctx.axes, ctx.keepdim = axes, keepdim
        ctx.save_for_backward(a, out)
        return out

    @staticmethod
    def backward(ctx, g):
        a, y = ctx.saved_tensors
        shape = a._data.shape
        y = _expand_back(y, shape, ctx.axes, ctx.keepdim)
        scale = (_expand_back(g, shape, ctx.axes, ctx.keepdim) / y).masked_fill(y == 0, 0)
        return a * scale, None, None


def norm(a, p="fro", dim=None, keepdim=False):
    if p in ("fro", 2, 2.0):
        return Norm2.apply(a, dim, keepdim)
    if p in (float("inf"), "inf"):
        return amax(a.abs(), dim, keepdim)
    if p in (float("-inf"), "-inf"):
        return amin(a.abs(), dim, keepdim)
    if p == 0:
        return (a != 0).to(a.dtype).sum(dim, keepdim=keepdim)
    if p == 1:
        return a.abs().sum(dim, keepdim=keepdim)
    return (a.abs() ** p).sum(dim, keepdim=keepdim) ** (1.0 / p)


def sum_(a, dim=None, keepdim=False, dtype=None):
    out = Sum.apply(a, dim, keepdim)
    return out if dtype is None else out.to(dtype)


def mean(a, dim=None, keepdim=False, dtype=None):
    return Mean.apply(a if dtype is None else a.to(dtype), dim, keepdim)


def any_(a, dim=None, keepdim=False):
    return wrap(a._data.any(axis=None if dim is None else norm_dims(dim, a.ndim), keepdims=keepdim))


def all_(a, dim=None, keepdim=False):
    return wrap(a._data.all(axis=None if dim is None else norm_dims(dim, a.ndim), keepdims=keepdim))
