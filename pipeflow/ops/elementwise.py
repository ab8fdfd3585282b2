"""Elementwise arithmetic, powers, exponentials, clamping and selection (broadcasting)."""
import numpy as np

from ._util import (Function, Tensor, as_float, fit, grad_for, meta, operands, same_device, wrap,
                    xp_of)
from .. import backend


class Add(Function):
    @staticmethod
    def forward(ctx, a, b):
        x, y = operands(a, b)
        ctx.metas = meta(a), meta(b)  # backward needs only shapes: inputs may change in place
        return wrap(x + y)

    @staticmethod
    def backward(ctx, g):
        ma, mb = ctx.metas
        return fit(g, ma), fit(g, mb)


class Sub(Function):
    @staticmethod
    def forward(ctx, a, b):
        x, y = operands(a, b)
        ctx.metas = meta(a), meta(b)
        return wrap(x - y)

    @staticmethod
    def backward(ctx, g):
        ma, mb = ctx.metas
        return fit(g, ma), (fit(-g, mb) if ctx.needs_input_grad[1] else None)


class Mul(Function):
    @staticmethod
    def forward(ctx, a, b):
        x, y = operands(a, b)
        need_a, need_b = ctx.needs_input_grad
        ctx.metas = meta(a), meta(b)
        ctx.save_for_backward(a if need_b else None, b if need_a else None)  # only what is used
        return wrap(x * y)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad
        ma, mb = ctx.metas
        return fit(g * b, ma) if need_a else None, fit(g * a, mb) if need_b else None


class Div(Function):
    @staticmethod
    def forward(ctx, a, b):
        x, y = operands(a, b)
        out = x / y
        if (x if hasattr(x, "dtype") else y).dtype.kind != "f":  # int / int: default float
            out = out.astype("float32")
        ctx.metas = meta(a), meta(b)
        ctx.save_for_backward(a if ctx.needs_input_grad[1] else None, b)
        return wrap(out)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad
        ma, mb = ctx.metas
        return fit(g / b, ma) if need_a else None, fit(-g * a / (b * b), mb) if need_b else None


class Neg(Function):
    @staticmethod
    def forward(ctx, a):
        return wrap(-a._data)

    @staticmethod
    def backward(ctx, g):
        return -g


class PowScalar(Function):
    """tensor ** number"""

    @staticmethod
    def forward(ctx, a, p):
        ctx.save_for_backward(a, p)
        x, _ = operands(a, p)
        return wrap(x ** p)

    @staticmethod
    def backward(ctx, g):
        a, p = ctx.saved_tensors
        if p == 0:
            return g * 0, None
        return g * p * a ** (p - 1), None


class Pow(Function):
    """tensor ** tensor, and number ** tensor"""

    @staticmethod
    def forward(ctx, a, b):
        x, y = operands(a, b)
        out = wrap(x ** y)
        ctx.save_for_backward(a, b, out)
        return out

    @staticmethod
    def backward(ctx, g):
        a, b, out = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad
        # d/da a^b = b a^(b-1), taken as 0 where b == 0 (0 * inf at a == 0 otherwise)
        ga = grad_for((g * b * a ** (b - 1)).masked_fill(b == 0, 0), a) if need_a else None
        gb = None
        if need_b:  # d/db a^b = a^b log a, taken as 0 where a == 0 and b >= 0 (as PyTorch)
            base = a if isinstance(a, Tensor) else out.new_tensor(a)
            gb = grad_for((g * out * base.log()).masked_fill((base == 0) & (b >= 0), 0), b)
        return ga, gb


def pow(a, b):
    if isinstance(a, Tensor) and not isinstance(b, Tensor):
        return PowScalar.apply(a, b)
    return Pow.apply(a, b)


def _unary(name, forward, backward, saves="input"):
    """A unary Function class computing `forward(xp, x)`, whose backward is
    `backward(g, x_or_y)` with the saved input or output."""
    def fwd(ctx, a):
        out = wrap(forward(xp_of(a), as_float(a._data)))
        ctx.save_for_backward(a if saves == "input" else out)
        return out

    def bwd(ctx, g):
        return backward(g, ctx.saved_tensors[0])
    return type(name, (Function,), {"forward": staticmethod(fwd), "backward": staticmethod(bwd),
                                    "__module__": __name__})


Exp = _unary("Exp", lambda xp, x: xp.exp(x), lambda g, y: g * y, saves="output")
Log = _unary("Log", lambda xp, x: xp.log(x), lambda g, x: g / x)
Log1p = _unary("Log1p", lambda xp, x: xp.log1p(x), lambda g, x: g / (x + 1))
Sqrt = _unary("Sqrt", lambda xp, x: xp.sqrt(x), lambda g, y: g / (y * 2), saves="output")
Rsqrt = _unary("Rsqrt", lambda xp, x: 1 / xp.sqrt(x), lambda g, y: g * y ** 3 * -0.5,
               saves="output")
Sin = _unary("Sin", lambda xp, x: xp.sin(x), lambda g, x: g * x.cos())
Cos = _unary("Cos", lambda xp, x: xp.cos(x), lambda g, x: -g * x.sin())
Abs = _unary("Abs", lambda xp, x: xp.abs(x), lambda g, x: g * x.sign())


class Clamp(Function):
    @staticmethod
    def forward(ctx, a, lo, hi):
        if lo is None and hi is None:
            raise RuntimeError("clamp: at least one of 'min' or 'max' must not be None")
        x = a._data
        if isinstance(lo, float) or isinstance(hi, float):
            x = as_float(x)  # an int tensor clamped to float bounds becomes float (PyTorch)
        ctx.save_for_backward(a, lo, hi)
        return wrap(xp_of(a).clip(x, lo, hi))

    @staticmethod
    def backward(ctx, g):
        a, lo, hi = ctx.saved_tensors
        keep = None
        if lo is not None:
            keep = a >= lo
        if hi is not None:
            keep = (a <= hi) if keep is None else keep & (a <= hi)
        return g * keep, None, None


def clamp(a, min=None, max=None):
    if isinstance(min, Tensor) or isinstance(max, Tensor):  # tensor bounds: elementwise max/min
        out = a if min is None else maximum(a, min)
        return out if max is None else minimum(out, max)
    return Clamp.apply(a, min, max)


class _Extremum(Function):
    """maximum/minimum; a tie sends half the gradient to each side (as PyTorch)."""

    @staticmethod
    def forward(ctx, a, b):
        x, y = operands(a, b)
        ctx.save_for_backward(a, b)
        return wrap(getattr(xp_of(a), ctx.ufunc)(x, y))

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        a_wins = (a > b) if ctx.ufunc == "maximum" else (a < b)
        share = a_wins + (a == b) * 0.5
        return grad_for(g * share, a), grad_for(g * (1 - share), b)


class Maximum(_Extremum):
    ufunc = "maximum"


class Minimum(_Extremum):
    ufunc = "minimum"


def maximum(a, b):
    return Maximum.apply(a, b)


def minimum(a, b):
    return Minimum.apply(a, b)


class Where(Function):
    @staticmethod
    def forward(ctx, cond, a, b):
        same_device(cond, a, b)
        if isinstance(a, Tensor):
            x, y = operands(a, b)
        elif isinstance(b, Tensor):
            y, x = operands(b, a)
        else:  # two Python scalars: PyTorch's default dtype for their kind
            x, y = (np.asarray(v, dtype=np.float32 if isinstance(a, float) or isinstance(b, float)
                               else None) for v in (a, b))
        ctx.save_for_backward(cond, a, b)
        return wrap(xp_of(cond).where(cond._data, x, y))

    @staticmethod
    def backward(ctx, g):
        cond, a, b = ctx.saved_tensors
        zero = g.new_zeros(())
        return (None, grad_for(where(cond, g, zero), a) if ctx.needs_input_grad[1] else None,
                grad_for(where(cond, zero, g), b) if ctx.needs_input_grad[2] else None)


def where(cond, a=None, b=None):
    if a is None and b is None:
        return tuple(wrap(i) for i in xp_of(cond).nonzero(cond._data))
    return Where.apply(cond, a, b)


def _piecewise_constant(name, ufunc):
    """Ops with a zero derivative almost everywhere (floor, sign, ...)."""
    def fwd(ctx, a):
        ctx.shape = a._data.shape
        return wrap(getattr(xp_of(a), ufunc)(a._data))

    def bwd(ctx, g):
        return g * 0
    return type(name, (Function,), {"forward": staticmethod(fwd), "backward": staticmethod(bwd),
                                    "__module__": __name__})


Sign = _piecewise_constant("Sign", "sign")
Floor = _piecewise_constant("Floor", "floor")
Ceil = _piecewise_constant("Ceil", "ceil")
Round = _piecewise_constant("Round", "round")
Trunc = _piecewise_constant("Trunc", "trunc")


def add(a, b, alpha=1):
    return Add.apply(a, b if alpha == 1 else b * alpha)


def sub(a, b, alpha=1):
    return Sub.apply(a, b if alpha == 1 else b * alpha)


def mul(a, b):
    return Mul.apply(a, b)


def _no_grad_binary(name, fn):
    """A binary op without gradient: `fn(xp, x, y)` on the promoted operands."""
    def op(a, b):
        x, y = operands(a, b)
        return wrap(fn(backend.array_module(x if hasattr(x, "dtype") else y), x, y))
    op.__name__ = name
    return op


def _trunc_divide(xp, x, y):
    q = xp.trunc(xp.true_divide(x, y))
    return q.astype(xp.result_type(x, y)) if getattr(x, "dtype", q.dtype).kind in "iu" else q


trunc_divide = _no_grad_binary("trunc_divide", _trunc_divide)


class FloorDivide(Function):
    """Rounded-down division; its gradient is zero wherever it is defined."""

    @staticmethod
    def forward(ctx, a, b):
        x, y = operands(a, b)
        ctx.metas = meta(a), meta(b)
        return wrap(xp_of(a if isinstance(a, Tensor) else b).floor_divide(x, y))

    @staticmethod
    def backward(ctx, g):
        ma, mb = ctx.metas
        return fit(g * 0, ma), fit(g * 0, mb)


class Remainder(Function):
    """a - b * floor(a / b), with the sign of b (Python's %, as PyTorch)."""

    @staticmethod
    def forward(ctx, a, b):
        x, y = operands(a, b)
        ctx.metas = meta(a), meta(b)
        ctx.save_for_backward(a, b)
        return wrap(xp_of(a if isinstance(a, Tensor) else b).remainder(x, y))

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        ma, mb = ctx.metas
        return fit(g, ma), (fit(-g * floor_divide(a, b), mb) if ctx.needs_input_grad[1] else None)


def floor_divide(a, b):
    return FloorDivide.apply(a, b)


def remainder(a, b):
    return Remainder.apply(a, b)


COMPARISONS = {name: _no_grad_binary(name, lambda xp, x, y, name=name: getattr(xp, name)(x, y))
               for name in ("equal", "not_equal", "less", "less_equal", "greater",
                            "greater_equal", "bitwise_and", "bitwise_or", "bitwise_xor")}


def div(a, b, rounding_mode=None):
    if rounding_mode is None:
        return Div.apply(a, b)
    if rounding_mode in ("floor", "trunc"):
        return (floor_divide if rounding_mode == "floor" else trunc_divide)(a, b)
    raise ValueError(f"div: rounding_mode must be None, 'trunc' or 'floor', not {rounding_mode!r}")


def compare(name, a, b):
    """Comparisons and bitwise ops: no gradient flows through a boolean result."""
    if not isinstance(b, (Tensor, int, float, bool)) and not hasattr(b, "dtype"):
        return NotImplemented
    return COMPARISONS[name](a, b)


def logical_not(a):
    return wrap(xp_of(a).logical_not(a._data) if a._data.dtype.kind == "b"
                else xp_of(a).invert(a._data))


def isnan(a):
    return wrap(xp_of(a).isnan(a._data))


def isinf(a):
    return wrap(xp_of(a).isinf(a._data))


def isfinite(a):
    return wrap(xp_of(a).isfinite(a._data))
