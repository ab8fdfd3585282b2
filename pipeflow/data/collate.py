"""default_collate: a list of samples -> one batch, structure kept (PyTorch's rules).

Collation runs in two phases so that a worker can write a batch straight into shared
memory: `plan` walks the samples and describes every array the batch will hold (dtype,
shape, and the per-sample pieces), then `fill` stacks the pieces into arrays that the
caller provides (heap arrays for default_collate, views of a ring slot in a worker)."""
import collections.abc
import copy
import functools

import numpy as np

from ..dtypes import promote_types
from ..tensor import Tensor


_SCALARS = (int, float, complex, np.generic)  # what stacks as shape () (bool is an int)


class Stack:
    """One array of the batch: the samples' pieces stacked along a new first axis, or an
    already collated array (`whole`), or rows `take` = (source, indices) of an array.
    It arrives as a Tensor, or as a NumPy array where a collate_fn made one (`numpy`)."""

    __slots__ = ("pieces", "dtype", "shape", "whole", "take", "numpy")

    def __init__(self, pieces, dtype, whole=None, take=None, numpy=False):
        self.pieces, self.dtype, self.whole, self.take = pieces, np.dtype(dtype), whole, take
        self.numpy = numpy
        if take is not None:
            self.shape = (len(take[1]),) + take[0].shape[1:]
            return
        if whole is not None:
            self.shape = whole.shape
            return
        first = pieces[0]
        self.shape = (len(pieces),) + np.shape(first)
        if not self.shape[1:] and all(isinstance(p, _SCALARS) for p in pieces):
            return  # (np.shape costs ~0.5 us a call: per label, in every batch)
        for p in pieces:  # (an array's .shape costs a tenth of np.shape)
            shape = p.shape if type(p) is np.ndarray else np.shape(p)
            if shape != self.shape[1:]:
                raise RuntimeError(f"stack expects each tensor to be equal size, but got "
                                   f"{list(self.shape[1:])} and {list(shape)}")

    def spec(self):
        return self.shape, self.dtype

    def strip(self):
        """The description alone, to send to another process."""
        return Stack(None, self.dtype, _Shape(self.shape), numpy=self.numpy)

    @property
    def nbytes(self):
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


class StackedSamples(collections.abc.Sequence):
    """Samples fetched together as rows of arrays (what TensorDataset.__getitems__
    returns): a sequence of samples for a custom collate_fn, and for default_collate a
    batch whose arrays are gathered straight into their destination, row by row."""

    def __init__(self, columns, indices):
        self.columns, self.indices = columns, _row_indices(indices, len(columns[0]))

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        return tuple(Tensor._wrap(c[self.indices[i]]) for c in self.columns)

    def plan(self):
        return _Rebuild((), [Stack(None, c.dtype, take=(c, self.indices)) for c in self.columns])


def _row_indices(indices, n):
    """`indices` as int64 in [0, n), negative ones counted from the end as Python does;
    IndexError naming the first one out of range. (Checked here, so that the gather can
    skip its own check: np.take with mode='raise' buffers its output, ~3x the cost.)"""
    rows = np.asarray(indices)
    if not rows.size:
        return rows.astype(np.int64)
    if rows.dtype.kind not in "iu":  # floats would be truncated, bools taken as 0 and 1
        raise IndexError(f"sample indices must be integers, got {rows.dtype} "
                         f"({rows.reshape(-1)[0]!r} first)")
    rows = rows.astype(np.int64, copy=False)
    low, high = rows.min(), rows.max()
    if low < -n or high >= n:
        bad = int(rows[(rows < -n) | (rows >= n)][0])
        raise IndexError(f"index {bad} is out of range for a dataset of {n} samples")
    return np.where(rows < 0, rows + n, rows) if low < 0 else rows


def _stacked_dtype(pieces):
    """torch.stack's dtype for the pieces: their promotion (float32 with float64 gives
    float64, int64 with float32 gives float32)."""
    kinds = set(map(type, pieces))  # (a pass of type() is ~3x faster than of .dtype)
    if all(issubclass(k, np.generic) for k in kinds):  # a NumPy scalar's type is its dtype
        dtypes = {np.dtype(k) for k in kinds}
    elif kinds == {np.ndarray}:
        dtypes = {p.dtype for p in pieces}
    else:  # a list or a number among the arrays
        dtypes = {np.asarray(p).dtype for p in pieces}
    dtype = functools.reduce(promote_types, dtypes)
    if dtype.kind in "OUS":
        raise TypeError(f"default_collate: can't batch NumPy arrays of dtype {dtype}")
    return dtype


def plan(batch):
    """The batch's structure with a `Stack` at every array leaf."""
    if isinstance(batch, StackedSamples):
        return batch.plan()
    first = batch[0]
    if isinstance(first, Tensor):
        if any(not isinstance(t._data, np.ndarray) for t in batch):
            raise TypeError("default_collate: samples must be CPU tensors")
        pieces = [t._data for t in batch]
        return Stack(pieces, _stacked_dtype(pieces))
    if isinstance(first, (str, bytes)):  # (NumPy's str_ and bytes_ too)
        return list(batch)
    if isinstance(first, (np.ndarray, np.generic)):
        return Stack(batch, _stacked_dtype(batch))
    if isinstance(first, float):
        return Stack(batch, np.float64)
    if isinstance(first, int):  # bool too; the dtype torch.tensor(batch) infers
        kinds = {type(v) for v in batch}  # (one pass: labels are often Python ints)
        if all(issubclass(k, bool) for k in kinds):
            return Stack(batch, np.bool_)
        return Stack(batch, np.float32 if any(issubclass(k, float) for k in kinds)
                     else np.int64)
    if isinstance(first, collections.abc.Mapping):
        return _Rebuild(first, {key: plan([s[key] for s in batch]) for key in first})
    if isinstance(first, tuple) and hasattr(first, "_fields"):  # namedtuple
        return _Rebuild(first, [plan(list(s)) for s in zip(*batch)])
    if isinstance(first, collections.abc.Sequence):
        if any(len(s) != len(first) for s in batch):
            raise RuntimeError("each element in list of batch should be of equal size")
        return _Rebuild(first, [plan(list(s)) for s in zip(*batch)])
    raise TypeError(f"default_collate: batch must contain tensors, NumPy arrays, numbers, "
                    f"dicts or lists; found {type(first).__name__}")


class _Shape:
    """Stands in for an array whose shape is all that is needed."""

    __slots__ = ("shape",)

    def __init__(self, shape):
        self.shape = shape


def plan_collated(obj):
    """The plan of a batch a custom collate_fn already built: its arrays are copied whole."""
    if isinstance(obj, Tensor):
        return Stack(None, obj._data.dtype, np.asarray(obj._data))
    if isinstance(obj, np.ndarray) and obj.dtype.kind != "O":  # (objects travel pickled)
        return Stack(None, obj.dtype, obj, numpy=True)
    if isinstance(obj, collections.abc.Mapping):
        return _Rebuild(obj, {k: plan_collated(v) for k, v in obj.items()})
    if isinstance(obj, (tuple, list)):
        return _Rebuild(obj, [plan_collated(v) for v in obj], keep_tuples=True)
    return obj


class _Rebuild:
    """A container node of the plan: rebuilt as the samples' own container type."""

    __slots__ = ("kind", "children", "keep_tuples", "template")

    def __init__(self, example, children, keep_tuples=False):
        self.kind, self.children, self.keep_tuples = type(example), children, keep_tuples
        self.template = None  # of a mutable mapping besides dict: an empty copy to fill
        if isinstance(example, collections.abc.MutableMapping) and self.kind is not dict:
            self.template = copy.copy(example)  # (keeps e.g. a defaultdict's factory)
            self.template.clear()

    def build(self, children):
        if isinstance(children, dict):
            return _mapping_like(self.kind, self.template, children)
        if hasattr(self.kind, "_fields"):
            return self.kind(*children)
        if self.kind is tuple:  # PyTorch returns tuples of samples as lists
            return tuple(children) if self.keep_tuples else list(children)
        try:
            return self.kind(children)
        except TypeError:
            return list(children)


def _mapping_like(kind, template, items):
    """`items` in a mapping of the samples' type, as torch rebuilds one: a copy of
    `template` (a mutable mapping of that type, e.g. a defaultdict with its factory),
    updated; else `kind(items)` where the type takes a dict, else the dict."""
    if template is not None:
        built = copy.copy(template)
        built.update(items)
        return built
    try:
        return kind(items)
    except TypeError:
        return items


def stacks(node):
    """Every Stack of a plan, in a fixed order."""
    if isinstance(node, Stack):
        yield node
    elif isinstance(node, _Rebuild):
        for child in (node.children.values() if isinstance(node.children, dict)
                      else node.children):
            yield from stacks(child)


def fill(node, arrays):
    """Write each leaf's data into the next array from the iterator `arrays` (C-contiguous,
    as np.empty and slot views are)."""
    for stack, out in zip(stacks(node), arrays):
        if stack.take is not None:
            np.take(stack.take[0], stack.take[1], axis=0, out=out, mode="clip")  # in range
        elif stack.whole is not None:
            out[...] = stack.whole
        elif isinstance(stack.pieces[0], np.ndarray) and out.ndim > 1:
            # joined along their first axis into the (contiguous) destination: np.stack
            # would make a view per piece first, twice the time for small samples
            np.concatenate(stack.pieces, out=out.reshape((out.shape[0] * out.shape[1],)
                                                          + out.shape[2:]))
        elif isinstance(stack.pieces[0], np.ndarray):
            np.stack(stack.pieces, out=out)
        else:
            out[...] = stack.pieces


def assemble(node, arrays):
    """The batch: the plan's structure with Tensors over the arrays from `arrays`."""
    if isinstance(node, Stack):
        array = next(arrays)
        return array if node.numpy else Tensor._wrap(array)
    if isinstance(node, _Rebuild):
        if isinstance(node.children, dict):
            return node.build({k: assemble(v, arrays) for k, v in node.children.items()})
        return node.build([assemble(v, arrays) for v in node.children])
    return node


def signature(node):
    """A hashable summary of a stripped plan: equal signatures, same batch layout (a dict's
    keys in their order). None where the plan holds values besides arrays (strings, what
    a collate_fn made): those are data, to be sent with every batch."""
    if isinstance(node, Stack):
        return ("s", node.shape, node.dtype.str, node.numpy)
    if not isinstance(node, _Rebuild) or node.template is not None:
        return None  # (a mapping's template, e.g. a defaultdict's factory, goes every time)
    children = node.children
    items = []
    for key, child in (children.items() if isinstance(children, dict) else enumerate(children)):
        child_signature = signature(child)
        if child_signature is None:
            return None
        items.append((key, child_signature))
    return ("r", node.kind, node.keep_tuples, tuple(items))


def strip(node):
    """The plan without the samples' data (what a worker sends the main process)."""
    if isinstance(node, Stack):
        return node.strip()
    if isinstance(node, _Rebuild):
        out = _Rebuild.__new__(_Rebuild)
        out.kind, out.keep_tuples, out.template = node.kind, node.keep_tuples, node.template
        out.children = ({k: strip(v) for k, v in node.children.items()}
                        if isinstance(node.children, dict) else [strip(v) for v in node.children])
        return out
    return node


def default_convert(sample):
    """A sample with its NumPy arrays as Tensors, not batched (PyTorch's default_convert)."""
    if isinstance(sample, (np.ndarray, np.generic)) and sample.dtype.kind not in "OUS":
        return Tensor._wrap(np.asarray(sample))
    if isinstance(sample, collections.abc.Mapping):
        template = sample if isinstance(sample, collections.abc.MutableMapping) else None
        return _mapping_like(type(sample), template,
                             {k: default_convert(v) for k, v in sample.items()})
    if isinstance(sample, tuple) and hasattr(sample, "_fields"):
        return type(sample)(*(default_convert(v) for v in sample))
    if isinstance(sample, (tuple, list)):  # tuples come back as lists, as in PyTorch
        return [default_convert(v) for v in sample]
    return sample


class OneSample:
    """The collate_fn of batch_size=None: `convert` (by default default_convert) called on
    the one sample itself, as torch calls it."""

    def __init__(self, convert=None):
        self.convert = convert or default_convert

    def __call__(self, samples):
        return self.convert(samples[0])


def call(collate_fn, samples):
    """A custom collate_fn called on a list of samples, as in torch (rows a dataset's
    __getitems__ gathered as StackedSamples become a list of tuples)."""
    return collate_fn(list(samples) if isinstance(samples, StackedSamples) else samples)


def default_collate(batch):
    node = plan(batch)
    arrays = [np.empty(*s.spec()) for s in stacks(node)]
    fill(node, arrays)
    return assemble(node, iter(arrays))
