"""Indexing: [] with ints, slices, None, Ellipsis, bool and integer arrays; index_put
(the out-of-place form of []=), gather, scatter_add, index_select, masked_fill, one_hot."""
from .. import backend
from ._util import Function, Tensor, norm_dim, same_device, sum_to, wrap, xp_of


def _index_arrays(index, t):
    """Tensors (and lists) inside an index become arrays on `t`'s device."""
    if not isinstance(index, tuple):
        index = (index,)
    out = []
    for i in index:
        if isinstance(i, Tensor):
            same_device(t, i)
            i = i._data
            if i.ndim == 0 and i.dtype.kind in "iu":
                i = int(i)
        elif isinstance(i, list):
            i = xp_of(t).asarray(i, dtype=None if i else "int64")  # [] indexes nothing
        out.append(i)
    return tuple(out)


def _is_basic(index):
    return all(i is None or i is Ellipsis or isinstance(i, (int, slice)) for i in index)


def _locate(x, index):
    """(array, index) to index with, in PyTorch's order: integers select before advanced
    (array) indices apply. NumPy would count an integer beside an array as advanced too,
    which moves dims when advanced indices are not adjacent (x[0, :, [1, 2]])."""
    if _is_basic(index) or not any(isinstance(i, int) for i in index):
        return x, index
    first, rest = [], []
    for i in index:
        if isinstance(i, int):
            first.append(i)
        elif i is None or isinstance(i, slice):
            first.append(i)
            rest.append(slice(None))
        elif i is Ellipsis:
            first.append(i)
            rest.append(i)
        else:  # an index array: a boolean mask spans as many dims as it has
            first.extend([slice(None)] * (i.ndim if i.dtype.kind == "b" else 1))
            rest.append(i)
    return x[tuple(first)], tuple(rest)  # basic indexing: a view, so writes reach x


def add_at(xp, target, index, values):
    """target[index] += values, accumulating repeated indices."""
    if hasattr(xp.add, "at"):  # NumPy, CuPy >= 13
        xp.add.at(target, index, values)
    else:
        import cupyx
        cupyx.scatter_add(target, index, values)


class GetItem(Function):
    bfloat16_in_float32 = False  # moves data: no arithmetic
    is_view = True  # with basic indexing only

    @staticmethod
    def forward(ctx, a, index):
        index = _index_arrays(index, a)
        ctx.shape, ctx.index = a._data.shape, index
        if not _is_basic(index):
            ctx.is_view = False
        elif Ellipsis not in index:
            index += (Ellipsis,)  # a 0-d view, not a NumPy scalar copy, for a single element
        x, index = _locate(a._data, index)
        return wrap(x[index])

    @staticmethod
    def backward(ctx, g):
        return IndexAdd.apply(g, ctx.shape, ctx.index), None

    def scatter_back(self, base, view):
        return IndexPut.apply(base, self.index, view)


class IndexAdd(Function):
    """zeros(shape) with g added at `index`: the adjoint of GetItem."""

    @staticmethod
    def forward(ctx, g, shape, index):
        xp, gd = xp_of(g), g._data
        ctx.index = index
        out = xp.zeros(shape, gd.dtype)
        target, where = _locate(out, index)
        if _is_basic(where):
            target[where] = gd
        else:
            add_at(xp, target, where, gd)
        return wrap(out)

    @staticmethod
    def backward(ctx, g):
        return GetItem.apply(g, ctx.index), None, None


def getitem(a, index):
    return GetItem.apply(a, index)


class IndexPut(Function):
    """A copy of `a` with `a[index] = value` (the out-of-place form of setitem)."""
    bfloat16_in_float32 = False  # moves data: no arithmetic

    @staticmethod
    def forward(ctx, a, index, value):
        index = _index_arrays(index, a)
        out = a._data.copy()
        v = value._data if isinstance(value, Tensor) else value
        if isinstance(value, Tensor):
            same_device(a, value)
        target, where = _locate(out, index)
        target[where] = v
        ctx.index = index
        ctx.save_for_backward(value)
        return wrap(out)

    @staticmethod
    def backward(ctx, g):
        value, = ctx.saved_tensors
        ga = IndexPut.apply(g, ctx.index, 0.0) if ctx.needs_input_grad[0] else None
        gv = None
        if ctx.needs_input_grad[2]:
            gv = sum_to(GetItem.apply(g, ctx.index), value._data.shape)
        return ga, None, gv


def index_put(a, index, value):
    return IndexPut.apply(a, index, value)


class Gather(Function):
    bfloat16_in_float32 = False  # moves data: no arithmetic

    @staticmethod
    def forward(ctx, a, dim, index):
        same_device(a, index)
        x, idx = a._data, index._data
        if idx.ndim != x.ndim:
            raise RuntimeError(f"gather: index has {idx.ndim} dims but the input has {x.ndim}")
        ctx.dim, ctx.shape = dim, x.shape
        ctx.save_for_backward(index)
        # Other dims of the index may be shorter than the input's: read only that corner
        # (NumPy's take_along_axis would broadcast instead).
        corner = tuple(slice(None) if i == dim else slice(0, n) for i, n in enumerate(idx.shape))
        return wrap(xp_of(a).take_along_axis(x[corner], idx, axis=dim))

    @staticmethod
    def backward(ctx, g):
        index, = ctx.saved_tensors
        return g.new_zeros(ctx.shape).scatter_add(ctx.dim, index, g), None, None


def _along_axis(index, dim):
    """Full index arrays addressing `index`'s positions with `index` itself along `dim`."""
    xp = backend.array_module(index)
    ndim = index.ndim
    grids = [xp.arange(n).reshape((1,) * i + (n,) + (1,) * (ndim - i - 1))
             for i, n in enumerate(index.shape)]
    grids[dim] = index
    return tuple(grids)


class ScatterAdd(Function):
    @staticmethod
    def forward(ctx, a, dim, index, src):
        same_device(a, index, src)
        idx = index._data
        if idx.ndim != a._data.ndim:
            raise RuntimeError(f"scatter_add: index has {idx.ndim} dims but self has {a.ndim}")
        ctx.dim = dim
        ctx.save_for_backward(index)
        out = a._data.copy()
        s = src._data[tuple(slice(0, n) for n in idx.shape)]
        add_at(xp_of(a), out, _along_axis(idx, dim), s)
        return wrap(out)

    @staticmethod
    def backward(ctx, g):
        index, = ctx.saved_tensors
        gsrc = g.gather(ctx.dim, index) if ctx.needs_input_grad[3] else None
        return g, None, None, gsrc


def gather(a, dim, index):
    return Gather.apply(a, norm_dim(dim, a._data.ndim), index)


def scatter_add(a, dim, index, src):
    return ScatterAdd.apply(a, norm_dim(dim, a._data.ndim), index, src)


def index_select(a, dim, index):
    if index.ndim > 1:
        raise IndexError("index_select(): index must be a 0-D or 1-D tensor")
    dim = norm_dim(dim, a._data.ndim)
    return getitem(a, (slice(None),) * dim + (index.reshape(-1),))


class MaskedFill(Function):
    @staticmethod
    def forward(ctx, a, mask, value):
        same_device(a, mask)
        if mask._data.dtype.kind != "b":
            raise RuntimeError(f"masked_fill only supports boolean masks, but got mask with "
                               f"dtype {mask.dtype}")
        if isinstance(value, Tensor):
            value = value.item()
        ctx.save_for_backward(mask)
        x = a._data
        return wrap(xp_of(a).where(mask._data, x.dtype.type(value), x))

    @staticmethod
    def backward(ctx, g):
        mask, = ctx.saved_tensors
        return g.masked_fill(mask, 0), None, None


def masked_fill(a, mask, value):
    return MaskedFill.apply(a, mask, value)


def one_hot(index, num_classes=-1):
    if index._data.dtype.kind not in "iu":
        raise RuntimeError("one_hot is only applicable to index tensors")
    xp, idx = xp_of(index), index._data
    if num_classes < 0:
        num_classes = int(idx.max()) + 1 if idx.size else 0
    if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= num_classes):
        raise RuntimeError(f"one_hot: class values must be in [0, {num_classes})")
    return wrap((idx[..., None] == xp.arange(num_classes)).astype("int64"))


class Embedding(Function):
    """Rows of `weight` picked by integer `indices`; the row `padding_idx` gets no gradient."""

    @staticmethod
    def forward(ctx, indices, weight, padding_idx):
        same_device(indices, weight)
        if indices._data.dtype.kind not in "iu":
            raise RuntimeError(f"embedding indices must be integers, got {indices.dtype}")
        ctx.shape, ctx.padding_idx = weight._data.shape, padding_idx
        ctx.save_for_backward(indices)
        return wrap(weight._data[indices._data])

    @staticmethod
    def backward(ctx, g):
        indices, = ctx.saved_tensors
        if ctx.padding_idx is not None:
            g = g.masked_fill((indices == ctx.padding_idx).unsqueeze(-1), 0)
        return None, IndexAdd.apply(g, ctx.shape, (indices._data,)), None


def embedding(indices, weight, padding_idx=None):
    return Embedding.apply(indices, weight, padding_idx)
