"""Matrix products: matmul (with PyTorch's 1-D and batch rules), bmm, einsum."""
import string

import numpy as np

from ._util import Function, Tensor, operands, same_device, sum_to, wrap, xp_of


def _t(x, transposed):
    return x.swapaxes(-1, -2) if transposed else x


class MatMul(Function):
    """Batched product op(a) @ op(b) of operands with at least 2 dims, where op transposes
    the last two dims when asked (batch dims broadcast). The transposes let backward reuse
    this op with no separate transpose nodes."""

    @staticmethod
    def forward(ctx, a, b, ta=False, tb=False):
        x, y = operands(a, b, broadcast=False)
        ctx.ta, ctx.tb = ta, tb
        ctx.save_for_backward(a, b)
        return wrap(xp_of(a).matmul(_t(x, ta), _t(y, tb)).astype(x.dtype, copy=False))

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad[:2]
        ta, tb = ctx.ta, ctx.tb
        ga = gb = None
        if need_a:
            ga = MatMul.apply(b, g, tb, True) if ta else MatMul.apply(g, b, False, not tb)
            ga = sum_to(ga, a._data.shape)
        if need_b:
            gb = MatMul.apply(g, a, True, ta) if tb else MatMul.apply(a, g, not ta, False)
            gb = sum_to(gb, b._data.shape)
        return ga, gb, None, None


def matmul(a, b):
    if not isinstance(a, Tensor) or not isinstance(b, Tensor):
        raise TypeError("matmul expects two tensors")
    sa, sb = a._data.shape, b._data.shape
    if not sa or not sb:
        raise RuntimeError("both arguments to matmul need to be at least 1D, but they are "
                           f"{len(sa)}D and {len(sb)}D")
    if sa[-1] != sb[-2 if len(sb) > 1 else 0]:
        raise RuntimeError(f"mat1 and mat2 shapes cannot be multiplied ({_shape(a)} and "
                           f"{_shape(b)})")
    if len(sa) > 2 and len(sb) > 2:
        try:
            np.broadcast_shapes(sa[:-2], sb[:-2])
        except ValueError:
            raise RuntimeError(f"matmul: batch dimensions of {_shape(a)} and {_shape(b)} do not "
                               "broadcast") from None
    if len(sa) > 1 and len(sb) > 1:
        return MatMul.apply(a, b)
    # 1-D operands: a row (or column) matrix for the product, squeezed out of the result
    out = MatMul.apply(a.unsqueeze(0) if len(sa) == 1 else a,
                       b.unsqueeze(-1) if len(sb) == 1 else b)
    if len(sb) == 1:
        out = out.squeeze(-1)
    return out.squeeze(-2 if len(sb) > 1 else -1) if len(sa) == 1 else out


def _shape(t):
    return "x".join(map(str, t._data.shape))


def bmm(a, b):
    if a.ndim != 3 or b.ndim != 3:
        raise RuntimeError(f"bmm expects 3-D tensors, got {a.ndim}-D and {b.ndim}-D")
    if a._data.shape[0] != b._data.shape[0]:
        raise RuntimeError(f"bmm: batch sizes differ ({a._data.shape[0]} and {b._data.shape[0]})")
    return matmul(a, b)


def mm(a, b):
    if a.ndim != 2 or b.ndim != 2:
        raise RuntimeError(f"mm expects 2-D tensors, got {a.ndim}-D and {b.ndim}-D")
    return matmul(a, b)


def _parse_einsum(equation, operands):
    """Explicit subscripts with '...' replaced by letters: (input subscripts, output)."""
    equation = equation.replace(" ", "")
    lhs, arrow, rhs = equation.partition("->")
    inputs = lhs.split(",")
    if len(inputs) != len(operands):
        raise ValueError(f"einsum: equation {equation!r} names {len(inputs)} operands, "
                         f"{len(operands)} given")
    unused = [c for c in string.ascii_letters if c not in equation]
    n_ell = max((t.ndim - len(s.replace("...", "")) for s, t in zip(inputs, operands)
                 if "..." in s), default=0)
    ell = "".join(unused[:n_ell])
    resolved = []
    for s, t in zip(inputs, operands):
        if "..." in s:
            k = t.ndim - len(s.replace("...", ""))
            s = s.replace("...", ell[n_ell - k:])
        if len(s) != t.ndim:
            raise ValueError(f"einsum: subscripts {s!r} do not match an operand with {t.ndim} dims")
        resolved.append(s)
    if arrow:
        out = rhs.replace("...", ell)
    else:  # implicit mode: letters that appear once, sorted, after the broadcast dims
        counts = {c: "".join(resolved).count(c) for c in "".join(resolved)}
        out = ell + "".join(sorted(c for c, n in counts.items() if n == 1 and c not in ell))
    return resolved, out


class Einsum(Function):
    @staticmethod
    def forward(ctx, equation, *tensors):
        same_device(*tensors)
        ins, out = _parse_einsum(equation, tensors)
        ctx.ins, ctx.out = ins, out
        ctx.save_for_backward(*tensors)
        return wrap(xp_of(tensors[0]).einsum(",".join(ins) + "->" + out,
                                             *[t._data for t in tensors]))

    @staticmethod
    def backward(ctx, g):
        tensors = ctx.saved_tensors
        grads = [None]
        for i, (sub, t) in enumerate(zip(ctx.ins, tensors)):
            if not ctx.needs_input_grad[i + 1]:
                grads.append(None)
                continue
            if len(set(sub)) != len(sub):
                raise NotImplementedError("einsum backward with a repeated subscript in one "
                                          f"operand ({sub!r}) is not supported")
            others = [(s, o) for j, (s, o) in enumerate(zip(ctx.ins, tensors)) if j != i]
            available = set(ctx.out).union(*[set(s) for s, _ in others])
            kept = "".join(c for c in sub if c in available)
            eq = ",".join([ctx.out] + [s for s, _ in others]) + "->" + kept
            gi = einsum(eq, g, *[o for _, o in others])
            if kept != sub:  # letters summed within this operand alone: broadcast back
                shape = tuple(t._data.shape[k] if c in kept else 1 for k, c in enumerate(sub))
                gi = gi.reshape(shape).expand(t._data.shape)
            grads.append(gi)
        return tuple(grads)


def einsum(equation, *tensors):
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        tensors = tuple(tensors[0])
    return Einsum.apply(equation, *tensors)
