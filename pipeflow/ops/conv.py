"""Convolutions (NCHW): conv2d and its two adjoints, which are the input gradient
(= conv_transpose2d) and the weight gradient. The three are one bilinear form
<conv(x, w), g>, so each one's backward is built from the other two and every
derivative, double backward included, stays exact.

The kernels are matrix products over columns (im2col): for a chunk of the batch,
cols[c, i, j, n, oh, ow] = x_padded[n, c, oh*sh + i*dh, ow*sw + j*dw] is copied into a
contiguous buffer seen as (groups, C/groups*kh*kw, chunk*OH*OW), the chunk's samples side
by side so that small images still make large products, and per group
    forward       y = w @ cols
    weight grad   gw = gy @ cols.T                (summed over the chunk by the product)
    input grad    cols = w.T @ gy, then added back onto the input positions each window
                  element came from (col2im: kh*kw strided adds)
with gy and y as (channels, chunk*OH*OW). A large image makes a chunk of one sample: then
y lands in NCHW as it is, and a pointwise conv (1x1, stride 1, no padding) needs no
columns at all: they are x itself."""
import math
import threading
from collections import namedtuple

import numpy as np

from ._util import Function, as_float, same_device, wrap, xp_of
from .shape import pad

# stride (sh, sw), padding (top, bottom, left, right), dilation (dh, dw), groups
Geometry = namedtuple("Geometry", "stride padding dilation groups")

# Columns are built for as many samples at a time as fit in this many bytes: on the CPU
# they stay in cache between their copy and their product (and are reused, see _workspace);
# on a GPU, larger products run better.
_CHUNK_BYTES = {"cpu": 16 << 20, "gpu": 1 << 30}
# The largest CPU workspace kept between calls (per slot and thread): one sample's columns
# of VGG-16's first block at 224x224 in float32 (115 MB) fit.
_KEEP_BYTES = 128 << 20
_workspaces = threading.local()


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def geometry(weight_hw, stride=1, padding=0, dilation=1, groups=1):
    """Normalise PyTorch's conv arguments ('same'/'valid' padding included)."""
    (kh, kw), stride, dilation = weight_hw, _pair(stride), _pair(dilation)
    if isinstance(padding, str):
        if padding == "valid":
            padding = (0, 0, 0, 0)
        elif padding == "same":
            if stride != (1, 1):
                raise ValueError("padding='same' is not supported for strided convolutions")
            th, tw = dilation[0] * (kh - 1), dilation[1] * (kw - 1)
            padding = (th // 2, th - th // 2, tw // 2, tw - tw // 2)
        else:
            raise ValueError(f"invalid padding string {padding!r}, should be 'valid' or 'same'")
    else:
        ph, pw = _pair(padding)
        padding = (ph, ph, pw, pw)
    if min(stride) < 1 or min(dilation) < 1 or min(padding) < 0:
        raise ValueError(f"conv: stride and dilation must be >= 1 and padding >= 0, got "
                         f"stride={stride}, dilation={dilation}, padding={padding}")
    return Geometry(stride, padding, dilation, groups)


def out_size(size, k, stride, pad_before, pad_after, dilation):
    return (size + pad_before + pad_after - dilation * (k - 1) - 1) // stride + 1


def windows(xp, x, kh, kw, geo):
    """The strided (N, C, kh, kw, OH, OW) view of `x`, which is already padded (geo.padding
    is not applied here)."""
    n, c, h, w = x.shape
    (sh, sw), (dh, dw) = geo.stride, geo.dilation
    oh, ow = out_size(h, kh, sh, 0, 0, dh), out_size(w, kw, sw, 0, 0, dw)
    if oh < 1 or ow < 1:
        raise RuntimeError(f"conv: the kernel ({kh}x{kw}, dilation {geo.dilation}) is larger "
                           f"than the padded input ({h}x{w})")
    s = x.strides
    return xp.lib.stride_tricks.as_strided(
        x, (n, c, kh, kw, oh, ow), (s[0], s[1], s[2] * dh, s[3] * dw, s[2] * sh, s[3] * sw),
        writeable=False)


def _workspace(xp, slot, shape, dtype):
    """An uninitialised scratch array for temporaries that never leave a kernel. On the CPU
    one buffer per slot and thread is reused: a fresh array above glibc's mmap threshold
    (32 MiB) costs a page fault per 4 KiB page on every call. CuPy has its memory pool."""
    if xp is not np:
        return xp.empty(shape, dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > _KEEP_BYTES:
        return np.empty(shape, dtype)
    buf = getattr(_workspaces, slot, None)
    if buf is None or buf.nbytes < nbytes:
        buf = np.empty(nbytes, np.uint8)
        setattr(_workspaces, slot, buf)
    return buf[:nbytes].view(dtype).reshape(shape)


class _Shapes:
    """The sizes of one convolution: input (n, c, h, w), weight (o, c/groups, kh, kw),
    output (oh, ow), and how its kernels split the batch into chunks."""

    def __init__(self, xp, x_shape, w_shape, geo, dtype):
        self.xp, self.geo, self.dtype = xp, geo, dtype
        self.n, self.c, self.h, self.w = x_shape
        self.o, cg, self.kh, self.kw = w_shape
        pt, pb, pl, pr = geo.padding
        self.hp, self.wp = self.h + pt + pb, self.w + pl + pr
        (sh, sw), (dh, dw) = geo.stride, geo.dilation
        self.oh = out_size(self.hp, self.kh, sh, 0, 0, dh)
        self.ow = out_size(self.wp, self.kw, sw, 0, 0, dw)
        self.g, self.k, self.l = geo.groups, cg * self.kh * self.kw, self.oh * self.ow
        self.pointwise = ((self.kh, self.kw) == (1, 1) and geo.stride == (1, 1)
                          and not any(geo.padding))

    def chunks(self):
        """(start, stop) over the batch, each chunk's workspaces (columns, padded input,
        output gradient) within _CHUNK_BYTES."""
        per_sample = (self.c * self.kh * self.kw * self.l + self.c * self.hp * self.wp
                      + self.o * self.l) * self.dtype.itemsize
        step = max(1, _CHUNK_BYTES["cpu" if self.xp is np else "gpu"] // per_sample)
        return [(a, min(a + step, self.n)) for a in range(0, self.n, step)]

    def padded(self, x):
        """A chunk of the input zero-padded (in a workspace), in the compute dtype."""
        pt, pb, pl, pr = self.geo.padding
        if not (pt or pb or pl or pr):
            return x.astype(self.dtype, copy=False)
        buf = _workspace(self.xp, "padded", (len(x), self.c, self.hp, self.wp), self.dtype)
        buf.fill(0)
        buf[:, :, pt:pt + self.h, pl:pl + self.w] = x
        return buf

    def columns(self, x):
        """The (groups, k, chunk * l) columns of a chunk of the input."""
        if self.pointwise and len(x) == 1:  # x itself
            return self.xp.ascontiguousarray(x, self.dtype).reshape(self.g, self.k, self.l)
        view = windows(self.xp, self.padded(x), self.kh, self.kw,
                       self.geo._replace(padding=(0, 0, 0, 0))).transpose(1, 2, 3, 0, 4, 5)
        cols = _workspace(self.xp, "columns", view.shape, self.dtype)
        cols[...] = view
        return cols.reshape(self.g, self.k, -1)

    def batch_last(self, a, slot):
        """A chunk (chunk, channels, oh, ow) of an output-sized array as (groups,
        channels/groups, chunk * l)."""
        if len(a) == 1:
            return self.xp.ascontiguousarray(a, self.dtype).reshape(self.g, -1, self.l)
        out = _workspace(self.xp, slot, (a.shape[1], len(a), self.l), self.dtype)
        out[...] = a.reshape(len(a), -1, self.l).transpose(1, 0, 2)
        return out.reshape(self.g, -1, len(a) * self.l)

    def col2im(self, cols, out):
        """out (a chunk of the input gradient) = the sum of each column element onto the
        input position it came from."""
        (sh, sw), (dh, dw) = self.geo.stride, self.geo.dilation
        pt, pb, pl, pr = self.geo.padding
        direct = not (pt or pb or pl or pr) and out.dtype == self.dtype
        target = out if direct else _workspace(self.xp, "padded", (len(out), self.c, self.hp,
                                                                   self.wp), self.dtype)
        target.fill(0)
        cols = cols.reshape(self.c, self.kh, self.kw, len(out), self.oh, self.ow)
        for i in range(self.kh):
            for j in range(self.kw):
                target[:, :, i * dh:i * dh + sh * (self.oh - 1) + 1:sh,
                       j * dw:j * dw + sw * (self.ow - 1) + 1:sw] += \
                    cols[:, i, j].transpose(1, 0, 2, 3)
        if not direct:
            out[...] = target[:, :, pt:pt + self.h, pl:pl + self.w]


def _compute_dtype(xp, *arrays):
    dtype = xp.result_type(*arrays)
    # NumPy multiplies float16 matrices without BLAS (slowly, in float32): use float32 outright
    return np.dtype(np.float32) if xp is np and dtype == np.float16 else dtype


def _product(xp, a, b, out):
    """a @ b into `out`; as a broadcast product where the contraction has length 1
    (depthwise convs' input gradient), which BLAS does several times slower."""
    return (xp.multiply if a.shape[-1] == 1 else xp.matmul)(a, b, out=out)


def _forward_arrays(x, w, geo):
    """y[n, o, oh, ow] = sum_{c, i, j} w[o, c, i, j] * x_padded[n, c, oh*sh + i*dh, ...]."""
    xp, xd, wd = xp_of(x), x._data, w._data
    s = _Shapes(xp, xd.shape, wd.shape, geo, _compute_dtype(xp, xd, wd))
    y = xp.empty((s.n, s.o, s.oh, s.ow), xp.result_type(xd, wd))
    wg = xp.ascontiguousarray(wd, s.dtype).reshape(s.g, s.o // s.g, s.k)
    for a, b in s.chunks():
        if b - a == 1:  # straight into y
            _product(xp, wg, s.columns(xd[a:b]), y[a].reshape(s.g, s.o // s.g, s.l))
        else:
            ys = _product(xp, wg, s.columns(xd[a:b]),
                          _workspace(xp, "product", (s.g, s.o // s.g, (b - a) * s.l), s.dtype))
            y[a:b] = ys.reshape(s.o, b - a, s.oh, s.ow).transpose(1, 0, 2, 3)
    return y


def _input_grad_arrays(g, w, geo, in_hw):
    """The adjoint of conv in x: sum_o w[o, c, i, j] * g[n, o, oh, ow] scattered back onto
    the input positions each window element came from."""
    xp, gd, wd = xp_of(g), g._data, w._data
    n, c = gd.shape[0], wd.shape[1] * geo.groups
    s = _Shapes(xp, (n, c, *in_hw), wd.shape, geo, _compute_dtype(xp, gd, wd))
    out = xp.empty((n, c, *in_hw), xp.result_type(gd, wd))
    wt = xp.ascontiguousarray(wd, s.dtype).reshape(s.g, s.o // s.g, s.k).transpose(0, 2, 1)
    for a, b in s.chunks():
        gt = s.batch_last(gd[a:b], "grad")
        if s.pointwise and b - a == 1:  # the columns are the input gradient itself
            _product(xp, wt, gt, out[a].reshape(s.g, s.k, s.l))
        else:
            cols = _workspace(xp, "columns", (s.g, s.k, (b - a) * s.l), s.dtype)
            s.col2im(_product(xp, wt, gt, cols), out[a:b])
    return out


def _weight_grad_arrays(x, g, kernel_hw, geo):
    """gw[o, c, i, j] = sum_{n, oh, ow} g[n, o, oh, ow] * x_padded[n, c, oh*sh + i*dh, ...]."""
    xp, xd, gd = xp_of(x), x._data, g._data
    o = gd.shape[1]
    s = _Shapes(xp, xd.shape, (o, xd.shape[1] // geo.groups, *kernel_hw), geo,
                _compute_dtype(xp, xd, gd))
    gw = xp.zeros((s.g, o // s.g, s.k), s.dtype)
    for a, b in s.chunks():
        gw += xp.matmul(s.batch_last(gd[a:b], "grad"), s.columns(xd[a:b]).transpose(0, 2, 1))
    return gw.reshape(o, s.k // (s.kh * s.kw), s.kh, s.kw).astype(xp.result_type(xd, gd),
                                                                   copy=False)


class Conv2d(Function):
    @staticmethod
    def forward(ctx, x, w, geo):
        same_device(x, w)
        ctx.geo = geo
        ctx.save_for_backward(x, w)
        return wrap(_forward_arrays(x, w, geo))

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        need_x, need_w = ctx.needs_input_grad[:2]
        gx = Conv2dInputGrad.apply(g, w, ctx.geo, x.shape[2:]) if need_x else None
        gw = Conv2dWeightGrad.apply(x, g, w.shape[2:], ctx.geo) if need_w else None
        return gx, gw, None


class Conv2dInputGrad(Function):
    """The gradient of conv2d with respect to its input; also conv_transpose2d."""

    @staticmethod
    def forward(ctx, g, w, geo, in_hw):
        same_device(g, w)
        ctx.geo = geo
        ctx.save_for_backward(g, w)
        return wrap(_input_grad_arrays(g, w, geo, tuple(in_hw)))

    @staticmethod
    def backward(ctx, gg):
        g, w = ctx.saved_tensors
        need_g, need_w = ctx.needs_input_grad[:2]
        return (Conv2d.apply(gg, w, ctx.geo) if need_g else None,
                Conv2dWeightGrad.apply(gg, g, w.shape[2:], ctx.geo) if need_w else None,
                None, None)


class Conv2dWeightGrad(Function):
    """The gradient of conv2d with respect to its weight."""

    @staticmethod
    def forward(ctx, x, g, kernel_hw, geo):
        ctx.geo = geo
        ctx.save_for_backward(x, g)
        return wrap(_weight_grad_arrays(x, g, tuple(kernel_hw), geo))

    @staticmethod
    def backward(ctx, gw):
        x, g = ctx.saved_tensors
        need_x, need_g = ctx.needs_input_grad[:2]
        return (Conv2dInputGrad.apply(g, gw, ctx.geo, x.shape[2:]) if need_x else None,
                Conv2d.apply(x, gw, ctx.geo) if need_g else None, None, None)


def _check(x, w, dims, groups):
    if x.ndim not in (dims + 1, dims + 2):
        raise RuntimeError(f"conv{dims}d expects a {dims + 1}-D (unbatched) or {dims + 2}-D "
                           f"(batched) input, got {x.ndim}-D with shape {list(x.shape)}")
    channels = x.shape[-dims - 1]
    if channels != w.shape[1] * groups:
        raise RuntimeError(f"conv{dims}d: expected input with {w.shape[1] * groups} channels "
                           f"(weight {list(w.shape)}, groups={groups}), got {channels} "
                           f"(input {list(x.shape)})")
    if w.shape[0] % groups:
        raise RuntimeError(f"conv{dims}d: out_channels {w.shape[0]} is not divisible by "
                           f"groups={groups}")


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    _check(input, weight, 2, groups)
    unbatched = input.ndim == 3
    x = input.unsqueeze(0) if unbatched else input
    if x._data.dtype.kind not in "fV":
        x = x.to(as_float(x._data[:0]).dtype)
    out = Conv2d.apply(x, weight, geometry(weight.shape[2:], stride, padding, dilation, groups))
    if bias is not None:
        out = out + bias.reshape(1, -1, 1, 1)
    return out.squeeze(0) if unbatched else out


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """A conv2d over a height-1 image."""
    _check(input, weight, 1, groups)
    first = lambda v: v[0] if isinstance(v, (tuple, list)) else v  # noqa: E731
    padding = padding if isinstance(padding, str) else (0, first(padding))
    out = conv2d(input.unsqueeze(-2), weight.unsqueeze(-2), bias, (1, first(stride)), padding,
                 (1, first(dilation)), groups)
    return out.squeeze(-2)


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0,
                     groups=1, dilation=1):
    """The adjoint of conv2d with `weight` (in_channels, out_channels/groups, kH, kW)."""
    unbatched = input.ndim == 3
    x = input.unsqueeze(0) if unbatched else input
    if x.shape[1] != weight.shape[0]:
        raise RuntimeError(f"conv_transpose2d: expected input with {weight.shape[0]} channels "
                           f"(weight {list(weight.shape)}), got {x.shape[1]}")
    geo = geometry(weight.shape[2:], stride, padding, dilation, groups)
    (sh, sw), (dh, dw), (oph, opw) = geo.stride, geo.dilation, _pair(output_padding)
    pt, _, pl, _ = geo.padding
    kh, kw = weight.shape[2:]
    # output_padding of a stride or more (allowed below the dilation) adds rows/columns that
    # no window reaches: zeros, padded on so that conv2d of the result keeps x's size
    eh, ew = oph - oph % sh, opw - opw % sw
    h = (x.shape[2] - 1) * sh - 2 * pt + dh * (kh - 1) + oph - eh + 1
    w = (x.shape[3] - 1) * sw - 2 * pl + dw * (kw - 1) + opw - ew + 1
    out = Conv2dInputGrad.apply(x, weight, geo, (h, w))
    if eh or ew:
        out = pad(out, (0, ew, 0, eh))
    if bias is not None:
        out = out + bias.reshape(1, -1, 1, 1)
    return out.squeeze(0) if unbatched else out
