"""Shape ops: views (reshape, permute, expand, ...), repeat, flip, cat/stack, split, pad."""
import functools
import math

from ..dtypes import promote_types
from ._util import Function, norm_dim, same_device, sum_to, wrap, xp_of


def _infer_shape(shape, numel):
    """Resolve a -1 entry and check the element count, as PyTorch's view does."""
    shape = tuple(int(s) for s in shape)
    if shape.count(-1) > 1:
        raise RuntimeError("only one dimension can be inferred")
    known = math.prod(s for s in shape if s != -1)
    if -1 in shape:
        if known == 0 or numel % known:
            raise RuntimeError(f"shape '{list(shape)}' is invalid for input of size {numel}")
        shape = tuple(numel // known if s == -1 else s for s in shape)
    elif known != numel:
        raise RuntimeError(f"shape '{list(shape)}' is invalid for input of size {numel}")
    return shape


class Reshape(Function):
    bfloat16_in_float32 = False  # moves data: no arithmetic

    is_view = True

    @staticmethod
    def forward(ctx, a, shape):
        x = a._data
        ctx.shape = x.shape
        out = x.reshape(_infer_shape(shape, x.size))
        if not xp_of(a).may_share_memory(out, x):
            ctx.is_view = False  # a non-contiguous input was copied
        return wrap(out)

    @staticmethod
    def backward(ctx, g):
        return g.reshape(ctx.shape), None

    def scatter_back(self, base, view):
        return view.reshape(self.shape)


def reshape(a, *shape):
    shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
    if tuple(shape) == a._data.shape:
        return a if not a._rg else Reshape.apply(a, shape)
    return Reshape.apply(a, shape)


def view(a, *shape):
    if not a._data.flags.c_contiguous and a._data.size > 1:
        raise RuntimeError("view size is not compatible with input tensor's size and stride; "
                           "use .reshape(...) instead")
    return reshape(a, *shape)


def flatten(a, start_dim=0, end_dim=-1):
    shape = a._data.shape
    if not shape:
        return reshape(a, 1)
    s, e = norm_dim(start_dim, len(shape)), norm_dim(end_dim, len(shape))
    return reshape(a, shape[:s] + (math.prod(shape[s:e + 1]),) + shape[e + 1:])


def unflatten(a, dim, sizes):
    shape = a._data.shape
    dim = norm_dim(dim, len(shape))
    return reshape(a, shape[:dim] + tuple(sizes) + shape[dim + 1:])


def squeeze(a, dim=None):
    shape = a._data.shape
    if dim is None:
        dims = {i for i, n in enumerate(shape) if n == 1}
    else:
        dims = {norm_dim(d, len(shape)) for d in ((dim,) if isinstance(dim, int) else dim)}
        dims = {d for d in dims if shape and shape[d] == 1}
    return reshape(a, tuple(n for i, n in enumerate(shape) if i not in dims))


def unsqueeze(a, dim):
    shape = a._data.shape
    dim = norm_dim(dim, len(shape) + 1)
    return reshape(a, shape[:dim] + (1,) + shape[dim:])


class Permute(Function):
    bfloat16_in_float32 = False  # moves data: no arithmetic

    is_view = True

    @staticmethod
    def forward(ctx, a, dims):
        ctx.dims = dims
        return wrap(a._data.transpose(dims))

    @staticmethod
    def backward(ctx, g):
        return g.permute(ctx.inverse()), None

    def inverse(self):
        inverse = [0] * len(self.dims)
        for i, d in enumerate(self.dims):
            inverse[d] = i
        return inverse

    def scatter_back(self, base, view):
        return view.permute(self.inverse())


def permute(a, *dims):
    dims = dims[0] if len(dims) == 1 and isinstance(dims[0], (tuple, list)) else dims
    n = a._data.ndim
    dims = tuple(norm_dim(d, n) for d in dims)
    if sorted(dims) != list(range(n)):
        raise RuntimeError(f"permute: dims {list(dims)} are not a permutation of {n} dims")
    return Permute.apply(a, dims)


def transpose(a, dim0, dim1):
    n = a._data.ndim
    dims = list(range(n))
    if n:
        d0, d1 = norm_dim(dim0, n), norm_dim(dim1, n)
        dims[d0], dims[d1] = d1, d0
    return Permute.apply(a, tuple(dims))


def t(a):
    if a._data.ndim > 2:
        raise RuntimeError(f"t() expects a tensor with <= 2 dimensions, but self is {a.ndim}D")
    return transpose(a, 0, -1) if a._data.ndim == 2 else a


class Expand(Function):
    bfloat16_in_float32 = False  # moves data: no arithmetic

    is_view = True

    @staticmethod
    def forward(ctx, a, shape):
        x = a._data
        ctx.shape = x.shape
        lead = len(shape) - x.ndim
        if lead < 0:
            raise RuntimeError(f"expand: the number of sizes provided ({len(shape)}) must be "
                               f"greater or equal to the number of dimensions ({x.ndim})")
        shape = tuple(x.shape[i - lead] if s == -1 else s for i, s in enumerate(shape))
        try:
            return wrap(xp_of(a).broadcast_to(x, shape))
        except ValueError:
            raise RuntimeError(f"The expanded size of the tensor ({list(shape)}) must match the "
                               f"existing size ({list(x.shape)}) at non-singleton dimensions") from None

    @staticmethod
    def backward(ctx, g):
        return sum_to(g, ctx.shape), None


def expand(a, *shape):
    shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
    return a if shape == a._data.shape else Expand.apply(a, shape)


def expand_as(a, other):
    return expand(a, other._data.shape)


def broadcast_to(a, shape):
    return expand(a, tuple(shape))


class Repeat(Function):
    @staticmethod
    def forward(ctx, a, reps):
        x = a._data
        if len(reps) < x.ndim:
            raise RuntimeError("repeat: number of repeat dims can not be smaller than number of "
                               "tensor dims")
        ctx.in_shape, ctx.shape = x.shape, (1,) * (len(reps) - x.ndim) + x.shape
        ctx.reps = reps
        return wrap(xp_of(a).tile(x.reshape(ctx.shape), reps))

    @staticmethod
    def backward(ctx, g):
        # out dim i is (reps[i], shape[i]) flattened: split and sum over the repeats
        split = []
        for r, n in zip(ctx.reps, ctx.shape):
            split += [r, n]
        g = g.reshape(split).sum(tuple(range(0, len(split), 2)))
        return g.reshape(ctx.in_shape), None


def repeat(a, *reps):
    reps = tuple(reps[0]) if len(reps) == 1 and isinstance(reps[0], (tuple, list)) else reps
    return Repeat.apply(a, reps)


class Flip(Function):
    bfloat16_in_float32 = False  # moves data: no arithmetic

    @staticmethod
    def forward(ctx, a, dims):
        ctx.dims = dims
        return wrap(xp_of(a).flip(a._data, dims).copy())

    @staticmethod
    def backward(ctx, g):
        return g.flip(ctx.dims), None


def flip(a, *dims):
    dims = dims[0] if len(dims) == 1 and isinstance(dims[0], (tuple, list)) else dims
    return Flip.apply(a, tuple(norm_dim(d, a._data.ndim) for d in dims))


class Cat(Function):
    bfloat16_in_float32 = False  # moves data: no arithmetic

    @staticmethod
    def forward(ctx, dim, *tensors):
        same_device(*tensors)
        ref = tensors[0]._data
        dim = norm_dim(dim, ref.ndim)
        for i, t in enumerate(tensors):
            s = t._data.shape
            if t._data.ndim != ref.ndim or s[:dim] + s[dim + 1:] != ref.shape[:dim] + ref.shape[dim + 1:]:
                raise RuntimeError(f"cat: sizes of tensors must match except in dimension {dim}; "
                                   f"tensor 0 has shape {list(ref.shape)}, tensor {i} has "
                                   f"{list(s)}")
        ctx.dim, ctx.sizes = dim, [t._data.shape[dim] for t in tensors]
        ctx.dtypes = [t.dtype for t in tensors]
        xp = xp_of(tensors[0])
        dtype = functools.reduce(promote_types, [t._data.dtype for t in tensors])
        return wrap(xp.concatenate([t._data.astype(dtype, copy=False) for t in tensors], axis=dim))

    @staticmethod
    def backward(ctx, g):
        return (None,) + tuple(p.to(d) for p, d in zip(g.split(ctx.sizes, ctx.dim), ctx.dtypes))


def cat(tensors, dim=0):
    tensors = [t for t in tensors if not (t._data.ndim == 1 and t._data.shape[0] == 0)] or \
        list(tensors[:1])  # PyTorch skips legacy empty 1-D tensors
    if not tensors:
        raise RuntimeError("cat expects a non-empty list of tensors")
    return Cat.apply(dim, *tensors)


concat = concatenate = cat


def stack(tensors, dim=0):
    if not tensors:
        raise RuntimeError("stack expects a non-empty list of tensors")
    shapes = {t._data.shape for t in tensors}
    if len(shapes) > 1:
        raise RuntimeError(f"stack expects each tensor to be equal size, got {sorted(shapes)}")
    dim = norm_dim(dim, tensors[0]._data.ndim + 1)
    return cat([unsqueeze(t, dim) for t in tensors], dim)


class Split(Function):
    bfloat16_in_float32 = False  # moves data: no arithmetic

    @staticmethod
    def forward(ctx, a, sizes, dim):
        x = a._data
        ctx.dim = dim
        bounds, start = [], 0
        for s in sizes:
            bounds.append((start, start + s))
            start += s
        index = [slice(None)] * x.ndim
        outs = []
        for lo, hi in bounds:
            index[dim] = slice(lo, hi)
            outs.append(wrap(x[tuple(index)]))
        return tuple(outs)

    @staticmethod
    def backward(ctx, *grads):
        return cat(grads, ctx.dim), None, None


def split(a, split_size_or_sections, dim=0):
    n = a._data.ndim
    dim = norm_dim(dim, n)
    length = a._data.shape[dim]
    if isinstance(split_size_or_sections, int):
        step = split_size_or_sections
        if step <= 0:
            raise RuntimeError(f"split expects split_size be positive, got {step}")
        sizes = [step] * (length // step) + ([length % step] if length % step else [])
        sizes = sizes or [0]
    else:
        sizes = list(split_size_or_sections)
        if sum(sizes) != length:
            raise RuntimeError(f"split_with_sizes expects split_sizes to sum exactly to {length} "
                               f"(input tensor's size at dimension {dim}), but got {sizes}")
    out = Split.apply(a, sizes, dim)
    return out if isinstance(out, tuple) else (out,)


def chunk(a, chunks, dim=0):
    length = a._data.shape[norm_dim(dim, a._data.ndim)]
    return split(a, max(1, -(-length // chunks)), dim)


def unbind(a, dim=0):
    return tuple(squeeze(p, dim) for p in split(a, 1, dim))


class Pad(Function):
    """Padding of the last dims, PyTorch's (left, right, top, bottom, ...) order. The
    gradient of every mode comes from padding an index map the same way."""

    @staticmethod
    def forward(ctx, a, pad, mode, value):
        xp, x = xp_of(a), a._data
        if len(pad) % 2 or len(pad) // 2 > x.ndim:
            raise RuntimeError(f"pad: padding of length {len(pad)} does not fit a {x.ndim}-D input")
        widths = [(0, 0)] * (x.ndim - len(pad) // 2) + \
            [(pad[2 * i], pad[2 * i + 1]) for i in reversed(range(len(pad) // 2))]
        crop = tuple(slice(max(-lo, 0), n - max(-hi, 0)) for (lo, hi), n in zip(widths, x.shape))
        widths = [(max(lo, 0), max(hi, 0)) for lo, hi in widths]  # negative pad crops
        x = x[crop]
        np_mode = {"constant": "constant", "reflect": "reflect", "replicate": "edge",
                   "circular": "wrap"}.get(mode)
        if np_mode is None:
            raise ValueError(f"pad: unknown mode {mode!r}")
        ctx.shape, ctx.crop, ctx.widths, ctx.np_mode = a._data.shape, crop, widths, np_mode
        kwargs = {"constant_values": value} if np_mode == "constant" else {}
        return wrap(xp.pad(x, widths, mode=np_mode, **kwargs))

    @staticmethod
    def backward(ctx, g):
        xp = xp_of(g)
        cropped = tuple(s.stop - s.start for s in ctx.crop)
        source = xp.arange(math.prod(cropped)).reshape(cropped)
        kwargs = {"constant_values": -1} if ctx.np_mode == "constant" else {}
        source = xp.pad(source, ctx.widths, mode=ctx.np_mode, **kwargs).reshape(-1)
        used = source >= 0  # constant padding maps to no source element
        gc = g.new_zeros(math.prod(cropped)).scatter_add(0, wrap(source[used]),
                                                          g.reshape(-1)[wrap(used)])
        full = g.new_zeros(ctx.shape)
        return full.index_put(ctx.crop, gc.reshape(cropped)), None, None, None


def pad(a, pad, mode="constant", value=0.0):
    return Pad.apply(a, tuple(pad), mode, 0.0 if value is None else value)
