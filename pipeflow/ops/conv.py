"""Convolutions (NCHW): conv2d and its two adjoints, which are the input gradient
(= conv_transpose2d) and the weight gradient. The three are one bilinear form
<conv(x, w), g>, so each one's backward is built from the other two and every
derivative, double backward included, stays exact.

The kernel is im2col as a strided view: windows[n, c, i, j, oh, ow] =
x_padded[n, c, oh*sh + i*dh, ow*sw + j*dw], contracted with the weight by tensordot."""
from collections import namedtuple

from ._util import Function, as_float, same_device, wrap, xp_of

# stride (sh, sw), padding (top, bottom, left, right), dilation (dh, dw), groups
Geometry = namedtuple("Geometry", "stride padding dilation groups")


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
    """The strided (N, C, kh, kw, OH, OW) view of the zero-padded input array."""
    pt, pb, pl, pr = geo.padding
    if pt or pb or pl or pr:
        x = xp.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
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


def _grouped(xp, groups, join_axis, fn, *parts):
    """`fn` applied per channel group (each part is split along its given axis), joined
    along `join_axis`."""
    if groups == 1:
        return fn(*[p for p, _ in parts])
    outs = []
    for gi in range(groups):
        sliced = []
        for array, axis in parts:
            size = array.shape[axis] // groups
            index = [slice(None)] * array.ndim
            index[axis] = slice(gi * size, (gi + 1) * size)
            sliced.append(array[tuple(index)])
        outs.append(fn(*sliced))
    return xp.concatenate(outs, axis=join_axis)


def _forward_arrays(x, w, geo):
    """y[n, o, oh, ow] = sum_{c, i, j} w[o, c, i, j] * windows[n, c, i, j, oh, ow]."""
    xp = xp_of(x)
    cols = windows(xp, x._data, w.shape[2], w.shape[3], geo)

    def conv(cols, w):
        return xp.tensordot(w, cols, axes=([1, 2, 3], [1, 2, 3])).transpose(1, 0, 2, 3)
    return _grouped(xp, geo.groups, 1, conv, (cols, 1), (w._data, 0))


def _input_grad_arrays(g, w, geo, in_hw):
    """The adjoint of conv in x: scatter sum_o w[o, c, i, j] * g[n, o, oh, ow] back onto
    the input positions each window element came from."""
    xp, gd, wd = xp_of(g), g._data, w._data
    n, _, oh, ow = gd.shape
    kh, kw = wd.shape[2], wd.shape[3]
    (sh, sw), (dh, dw) = geo.stride, geo.dilation
    pt, pb, pl, pr = geo.padding
    h, wi = in_hw
    out = xp.zeros((n, wd.shape[1] * geo.groups, h + pt + pb, wi + pl + pr), gd.dtype)

    def scatter(gd, wd, target):
        cols = xp.tensordot(wd, gd, axes=([0], [1]))  # (C, kh, kw, N, OH, OW)
        for i in range(kh):
            for j in range(kw):
                target[:, :, i * dh:i * dh + sh * (oh - 1) + 1:sh,
                       j * dw:j * dw + sw * (ow - 1) + 1:sw] += cols[:, i, j].transpose(1, 0, 2, 3)
    if geo.groups == 1:
        scatter(gd, wd, out)
    else:
        og, cg = wd.shape[0] // geo.groups, wd.shape[1]
        for gi in range(geo.groups):
            scatter(gd[:, gi * og:(gi + 1) * og], wd[gi * og:(gi + 1) * og],
                    out[:, gi * cg:(gi + 1) * cg])
    return out[:, :, pt:pt + h, pl:pl + wi]


def _weight_grad_arrays(x, g, kernel_hw, geo):
    """gw[o, c, i, j] = sum_{n, oh, ow} g[n, o, oh, ow] * windows[n, c, i, j, oh, ow]."""
    xp = xp_of(x)
    cols = windows(xp, x._data, kernel_hw[0], kernel_hw[1], geo)

    def grad(g, cols):
        return xp.tensordot(g, cols, axes=([0, 2, 3], [0, 4, 5]))
    return _grouped(xp, geo.groups, 0, grad, (g._data, 1), (cols, 1))


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
    h = (x.shape[2] - 1) * sh - 2 * pt + dh * (kh - 1) + oph + 1
    w = (x.shape[3] - 1) * sw - 2 * pl + dw * (kw - 1) + opw + 1
    out = Conv2dInputGrad.apply(x, weight, geo, (h, w))
    if bias is not None:
        out = out + bias.reshape(1, -1, 1, 1)
    return out.squeeze(0) if unbatched else out
