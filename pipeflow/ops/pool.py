"""Pooling (NCHW): max and average over windows, and their adaptive forms."""
from ._util import Function, wrap, xp_of
from .conv import Geometry, _pair, windows


def _pool_geometry(x, kernel_size, stride, padding, dilation, ceil_mode):
    """Window geometry, with the extra right/bottom padding ceil_mode needs (PyTorch's rule:
    the last window must start inside the input or its left padding)."""
    (kh, kw), (ph, pw), (dh, dw) = _pair(kernel_size), _pair(padding), _pair(dilation)
    sh, sw = _pair(kernel_size if stride is None or stride == [] else stride)
    if ph > kh // 2 or pw > kw // 2:
        raise RuntimeError(f"pad should be at most half of effective kernel size, but got "
                           f"pad={padding}, kernel_size={kernel_size}")
    h, w = x.shape[-2:]
    extra = []
    for size, k, s, p, d in ((h, kh, sh, ph, dh), (w, kw, sw, pw, dw)):
        span = size + 2 * p - d * (k - 1) - 1
        n = (-(-span // s) if ceil_mode else span // s) + 1
        if ceil_mode and (n - 1) * s >= size + p:
            n -= 1
        if n < 1:
            raise RuntimeError(f"pooling: output size is too small (input {h}x{w}, kernel "
                               f"{kernel_size}, stride {stride}, padding {padding})")
        extra.append(max(0, (n - 1) * s + d * (k - 1) + 1 - (size + 2 * p)))
    return (kh, kw), Geometry((sh, sw), (ph, ph + extra[0], pw, pw + extra[1]), (dh, dw), 1)


def _padded_windows(x, kernel, geo, fill):
    """Windows (N, C, OH, OW, kh*kw) over the input padded with `fill`."""
    xp, a = xp_of(x), x._data
    pt, pb, pl, pr = geo.padding
    if pt or pb or pl or pr:
        a = xp.pad(a, ((0, 0), (0, 0), (pt, pb), (pl, pr)), constant_values=fill)
    cols = windows(xp, a, kernel[0], kernel[1], geo._replace(padding=(0, 0, 0, 0)))
    n, c, kh, kw, oh, ow = cols.shape
    return cols.transpose(0, 1, 4, 5, 2, 3).reshape(n, c, oh, ow, kh * kw)


def _max_over_windows(xp, cols, need_index):
    """Max of each window of `cols` (N, C, kh, kw, OH, OW), as a running maximum over its kh*kw
    strided views: no copy of the windows, which are kh*kw times the output. With
    `need_index`, also each maximum's position in its window (row-major): the first maximal
    one, or the first NaN, as argmax and PyTorch pick."""
    kh, kw = cols.shape[2:4]
    views = [cols[:, :, i, j] for i in range(kh) for j in range(kw)]
    values = views[0].copy()
    for v in views[1:]:
        xp.maximum(values, v, out=values)  # propagates NaN, as PyTorch's max pool
    if not need_index:
        return values, None
    nan = values.dtype.kind == "f" and bool(xp.isnan(values).any())
    k = xp.empty(values.shape, xp.min_scalar_type(len(views)))
    for i in range(len(views) - 1, -1, -1):  # backwards, so that the first match is kept
        hit = views[i] == values
        if nan:
            hit |= xp.isnan(views[i])
        xp.copyto(k, i, where=hit)
    return values, k.astype(xp.int64)


class MaxPool2d(Function):
    """Max pooling; the indices (into each input plane, as PyTorch reports them) are
    computed only when a gradient or the caller needs them."""

    @staticmethod
    def forward(ctx, x, kernel, geo, with_indices):
        xp = xp_of(x)
        fill = -xp.inf if x._data.dtype.kind == "f" else xp.iinfo(x._data.dtype).min
        pt, pb, pl, pr = geo.padding
        a = x._data
        if pt or pb or pl or pr:
            a = xp.pad(a, ((0, 0), (0, 0), (pt, pb), (pl, pr)), constant_values=fill)
        cols = windows(xp, a, kernel[0], kernel[1], geo._replace(padding=(0, 0, 0, 0)))
        values, k = _max_over_windows(xp, cols, with_indices or ctx.needs_input_grad[0])
        if k is None:
            return wrap(values)
        (sh, sw), (dh, dw) = geo.stride, geo.dilation
        oh, ow = values.shape[2:]
        rows = xp.arange(oh).reshape(-1, 1) * sh - pt + (k // kernel[1]) * dh
        cols_ = xp.arange(ow) * sw - pl + (k % kernel[1]) * dw
        indices = wrap(rows * x._data.shape[3] + cols_)
        ctx.shape = x._data.shape
        ctx.save_for_backward(indices)
        ctx.mark_non_differentiable(indices)
        return (wrap(values), indices) if with_indices else wrap(values)

    @staticmethod
    def backward(ctx, g, *_):
        indices, = ctx.saved_tensors
        n, c, h, w = ctx.shape
        flat = g.new_zeros((n, c, h * w)).scatter_add(2, indices.reshape(n, c, -1),
                                                     g.reshape(n, c, -1))
        return flat.reshape(ctx.shape), None, None, None


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    x = input.unsqueeze(0) if input.ndim == 3 else input
    kernel, geo = _pool_geometry(x, kernel_size, stride, padding, dilation, ceil_mode)
    if not return_indices:
        values = MaxPool2d.apply(x, kernel, geo, False)
        return values.squeeze(0) if input.ndim == 3 else values
    values, indices = MaxPool2d.apply(x, kernel, geo, True)
    if input.ndim == 3:
        values, indices = values.squeeze(0), indices.squeeze(0)
    return values, indices


class AvgPool2d(Function):
    """Window means; the divisor counts padding unless told not to (PyTorch's rules)."""

    @staticmethod
    def forward(ctx, x, kernel, geo, divisor):
        ctx.kernel, ctx.geo, ctx.divisor, ctx.in_hw = kernel, geo, divisor, x._data.shape[2:]
        return wrap(_padded_windows(x, kernel, geo, 0).sum(-1) / divisor)

    @staticmethod
    def backward(ctx, g):
        return AvgPool2dGrad.apply(g, ctx.kernel, ctx.geo, ctx.divisor, ctx.in_hw), None, None, None


class AvgPool2dGrad(Function):
    """The adjoint of AvgPool2d: each output's gradient spread evenly over its window."""

    @staticmethod
    def forward(ctx, g, kernel, geo, divisor, in_hw):
        ctx.kernel, ctx.geo, ctx.divisor = kernel, geo, divisor
        xp, gd = xp_of(g), (g._data / divisor).astype(g._data.dtype, copy=False)
        (kh, kw), (sh, sw), (pt, pb, pl, pr) = kernel, geo.stride, geo.padding
        n, c, oh, ow = gd.shape
        h, w = in_hw
        out = xp.zeros((n, c, h + pt + pb, w + pl + pr), gd.dtype)
        for i in range(kh):
            for j in range(kw):
                out[:, :, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw] += gd
        return wrap(out[:, :, pt:pt + h, pl:pl + w])

    @staticmethod
    def backward(ctx, gg):
        return AvgPool2d.apply(gg, ctx.kernel, ctx.geo, ctx.divisor), None, None, None, None


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None):
    x = input.unsqueeze(0) if input.ndim == 3 else input
    kernel, geo = _pool_geometry(x, kernel_size, stride, padding, 1, ceil_mode)
    if divisor_override is not None:
        divisor = divisor_override
    else:  # per window: its size clipped to the padded input (or to the input itself)
        xp = xp_of(x)
        ph, pw = _pair(padding)
        mark = x.new_ones((1, 1) + tuple(x.shape[2:]))
        if count_include_pad:
            pt, pb, pl, pr = geo.padding
            mark = wrap(xp.pad(mark._data, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=1))
            geo_count = geo._replace(padding=(0, pb - ph, 0, pr - pw))
        else:
            geo_count = geo
        divisor = wrap(_padded_windows(mark, kernel, geo_count, 0).sum(-1))
        divisor = divisor._data
    out = AvgPool2d.apply(x, kernel, geo, divisor)
    return out.squeeze(0) if input.ndim == 3 else out


def _adaptive_bins(size, out):
    """PyTorch's adaptive bins: [floor(i*size/out), ceil((i+1)*size/out))."""
    return [(i * size // out, -(-(i + 1) * size // out)) for i in range(out)]


def _averaging_matrix(x, size, out):
    import numpy as np
    m = np.zeros((out, size))
    for i, (lo, hi) in enumerate(_adaptive_bins(size, out)):
        m[i, lo:hi] = 1.0 / (hi - lo)
    from ..factories import tensor
    return tensor(m, dtype=x.dtype, device=x.device)


def _out_hw(x, output_size):
    oh, ow = _pair(output_size)
    return (x.shape[-2] if oh is None else oh), (x.shape[-1] if ow is None else ow)


def adaptive_avg_pool2d(input, output_size):
    """Each output cell averages its bin: two small averaging matrices, A_h @ x @ A_w^T."""
    oh, ow = _out_hw(input, output_size)
    h, w = input.shape[-2:]
    if h % oh == 0 and w % ow == 0:
        return avg_pool2d(input, (h // oh, w // ow))
    return _averaging_matrix(input, h, oh) @ input @ _averaging_matrix(input, w, ow).T


def adaptive_max_pool2d(input, output_size, return_indices=False):
    oh, ow = _out_hw(input, output_size)
    h, w = input.shape[-2:]
    if h % oh == 0 and w % ow == 0:
        return max_pool2d(input, (h // oh, w // ow), return_indices=return_indices)
    from . import shape
    cells, indices = [], []
    for hs, he in _adaptive_bins(h, oh):
        row, row_idx = [], []
        for ws, we in _adaptive_bins(w, ow):
            patch = input[..., hs:he, ws:we].flatten(-2)
            value, k = patch.max(-1)
            row.append(value)
            row_idx.append((k // (we - ws) + hs) * w + k % (we - ws) + ws)
        cells.append(shape.stack(row, -1))
        indices.append(shape.stack(row_idx, -1))
    out = shape.stack(cells, -2)
    return (out, shape.stack(indices, -2)) if return_indices else out


def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True):
    first = lambda v: v[0] if isinstance(v, (tuple, list)) else v  # noqa: E731
    return avg_pool2d(input.unsqueeze(-2), (1, first(kernel_size)),
                      None if stride is None else (1, first(stride)), (0, first(padding)),
                      ceil_mode, count_include_pad).squeeze(-2)


def max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    first = lambda v: v[0] if isinstance(v, (tuple, list)) else v  # noqa: E731
    out = max_pool2d(input.unsqueeze(-2), (1, first(kernel_size)),
                     None if stride is None else (1, first(stride)), (0, first(padding)),
                     (1, first(dilation)), ceil_mode, return_indices)
    if return_indices:
        return out[0].squeeze(-2), out[1].squeeze(-2)
    return out.squeeze(-2)
