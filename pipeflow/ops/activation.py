"""Activation functions and (log-)softmax."""
import math

from ._util import Function, as_float, norm_dim, wrap, xp_of
from .elementwise import where


class Relu(Function):
    @staticmethod
    def forward(ctx, a):
        out = wrap(xp_of(a).maximum(a._data, 0))
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        y, = ctx.saved_tensors
        return ReluGrad.apply(g, y)


class ReluGrad(Function):
    """g where y > 0, else 0, in one op (relu's backward; differentiable in g)."""

    @staticmethod
    def forward(ctx, g, y):
        ctx.save_for_backward(y)
        return wrap(g._data * (y._data > 0))

    @staticmethod
    def backward(ctx, gg):
        y, = ctx.saved_tensors
        return ReluGrad.apply(gg, y), None


class LeakyRelu(Function):
    @staticmethod
    def forward(ctx, a, slope):
        x = a._data
        ctx.save_for_backward(a, slope)
        return wrap(xp_of(a).where(x > 0, x, x * slope))

    @staticmethod
    def backward(ctx, g):
        a, slope = ctx.saved_tensors
        return where(a > 0, g, g * slope), None


def _activation_of_output(name, fn, dydx, d2):
    """An activation whose derivative is a function of its output y, dydx(y), with
    d2(y) = d dydx / dy; backward is one fused op that is itself differentiable. The
    formulas use only operators, so they run on arrays (backward) and on Tensors (double
    backward) alike."""
    def grad_forward(ctx, g, y):
        ctx.save_for_backward(g, y)
        return wrap(g._data * dydx(y._data))

    def grad_backward(ctx, gg):
        g, y = ctx.saved_tensors
        return gg * dydx(y), gg * g * d2(y)

    grad_op = type(name + "Grad", (Function,), {
        "forward": staticmethod(grad_forward), "backward": staticmethod(grad_backward),
        "__module__": __name__})

    def forward(ctx, a):
        out = wrap(fn(xp_of(a), as_float(a._data)))
        ctx.save_for_backward(out)
        return out

    def backward(ctx, g):
        y, = ctx.saved_tensors
        return grad_op.apply(g, y)

    return type(name, (Function,), {"forward": staticmethod(forward),
                                    "backward": staticmethod(backward), "__module__": __name__})


def _sigmoid(xp, x):
    e = xp.exp(-xp.abs(x))  # exp of a non-positive number: no overflow, no cancellation
    return xp.where(x >= 0, 1 / (1 + e), e / (1 + e))


Sigmoid = _activation_of_output("Sigmoid", _sigmoid, lambda y: y * (1 - y), lambda y: 1 - 2 * y)
Tanh = _activation_of_output("Tanh", lambda xp, x: xp.tanh(x), lambda y: 1 - y * y,
                             lambda y: y * -2)


def _erf(xp, x):
    if xp.__name__ == "numpy":
        from scipy.special import erf
    else:
        from cupyx.scipy.special import erf
    return erf(x).astype(x.dtype, copy=False)


class Gelu(Function):
    """x * Phi(x), exactly (erf) or with PyTorch's tanh approximation."""

    @staticmethod
    def forward(ctx, a, approximate):
        if approximate not in ("none", "tanh"):
            raise ValueError(f"gelu: approximate must be 'none' or 'tanh', not {approximate!r}")
        xp, x = xp_of(a), as_float(a._data)
        ctx.save_for_backward(a, approximate)
        if approximate == "tanh":
            return wrap(0.5 * x * (1 + xp.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3))))
        return wrap(0.5 * x * (1 + _erf(xp, x * (1 / math.sqrt(2)))))

    @staticmethod
    def backward(ctx, g):
        a, approximate = ctx.saved_tensors
        if approximate == "tanh":
            k = math.sqrt(2 / math.pi)
            t = (k * (a + 0.044715 * a ** 3)).tanh()
            return g * (0.5 * (1 + t) + 0.5 * a * (1 - t * t) * k * (1 + 3 * 0.044715 * a * a)), None
        cdf = 0.5 * (1 + erf(a * (1 / math.sqrt(2))))
        pdf = (a * a * -0.5).exp() * (1 / math.sqrt(2 * math.pi))
        return g * (cdf + a * pdf), None


class Erf(Function):
    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return wrap(_erf(xp_of(a), as_float(a._data)))

    @staticmethod
    def backward(ctx, g):
        a, = ctx.saved_tensors
        return g * (a * a * -1).exp() * (2 / math.sqrt(math.pi))


def erf(a):
    return Erf.apply(a)


class Softplus(Function):
    """log(1 + exp(beta x)) / beta, linear above `threshold` (as PyTorch)."""

    @staticmethod
    def forward(ctx, a, beta, threshold):
        xp, x = xp_of(a), as_float(a._data)
        ctx.save_for_backward(a, beta, threshold)
        bx = x * beta
        return wrap(xp.where(bx > threshold, x, xp.logaddexp(0, bx) / beta).astype(x.dtype))

    @staticmethod
    def backward(ctx, g):
        a, beta, threshold = ctx.saved_tensors
        bx = a * beta
        return g * sigmoid(bx).masked_fill(bx > threshold, 1), None, None


def relu(a):
    return Relu.apply(a)


def leaky_relu(a, negative_slope=0.01):
    return LeakyRelu.apply(a, negative_slope)


def sigmoid(a):
    return Sigmoid.apply(a)


def tanh(a):
    return Tanh.apply(a)


def gelu(a, approximate="none"):
    return Gelu.apply(a, approximate)


def softplus(a, beta=1.0, threshold=20.0):
    return Softplus.apply(a, beta, threshold)


def _shifted_exp(xp, x, dim):
    """x - max(x), its exp and the exp's sum along `dim`: softmax without overflow."""
    x = as_float(x)
    shifted = x - (x.max(axis=dim, keepdims=True) if x.size else 0)
    e = xp.exp(shifted)
    return shifted, e, e.sum(axis=dim, keepdims=True)


class Softmax(Function):
    @staticmethod
    def forward(ctx, a, dim):
        ctx.dim = norm_dim(dim, a._data.ndim)
        _, e, total = _shifted_exp(xp_of(a), a._data, ctx.dim)
        out = wrap(e / total)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        y, = ctx.saved_tensors
        return y * (g - (g * y).sum(ctx.dim, keepdim=True)), None


class LogSoftmax(Function):
    @staticmethod
    def forward(ctx, a, dim):
        ctx.dim = norm_dim(dim, a._data.ndim)
        xp = xp_of(a)
        shifted, _, total = _shifted_exp(xp, a._data, ctx.dim)
        out = wrap(shifted - xp.log(total))
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        y, = ctx.saved_tensors
        return g - y.exp() * g.sum(ctx.dim, keepdim=True), None


def _with_dtype(a, dtype):
    return a if dtype is None else a.to(dtype)


def softmax(a, dim, dtype=None):
    return Softmax.apply(_with_dtype(a, dtype), dim)


def log_softmax(a, dim, dtype=None):
    return LogSoftmax.apply(_with_dtype(a, dtype), dim)
