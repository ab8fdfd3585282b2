"""default_collate: a list of samples -> one batch, structure kept (PyTorch's rules)."""
import collections.abc

import numpy as np

from ..tensor import Tensor


def default_collate(batch):
    first = batch[0]
    if isinstance(first, Tensor):
        from ..ops import stack
        return stack(batch, 0)
    if isinstance(first, np.ndarray):
        if first.dtype.kind in "OUS":
            raise TypeError(f"default_collate: can't batch NumPy arrays of dtype {first.dtype}")
        return Tensor._wrap(np.stack(batch))
    if isinstance(first, np.generic):
        return Tensor._wrap(np.array(batch))
    if isinstance(first, bool):
        return Tensor._wrap(np.array(batch, dtype=np.bool_))
    if isinstance(first, int):
        return Tensor._wrap(np.array(batch, dtype=np.int64))
    if isinstance(first, float):
        return Tensor._wrap(np.array(batch, dtype=np.float64))
    if isinstance(first, (str, bytes)):
        return list(batch)
    if isinstance(first, collections.abc.Mapping):
        collated = {key: default_collate([s[key] for s in batch]) for key in first}
        try:
            return type(first)(collated)  # keep the mapping's type where it can be rebuilt
        except TypeError:
            return collated
    if isinstance(first, tuple) and hasattr(first, "_fields"):  # namedtuple
        return type(first)(*(default_collate(list(s)) for s in zip(*batch)))
    if isinstance(first, collections.abc.Sequence):
        if any(len(s) != len(first) for s in batch):
            raise RuntimeError("each element in list of batch should be of equal size")
        return [default_collate(list(s)) for s in zip(*batch)]
    raise TypeError(f"default_collate: batch must contain tensors, NumPy arrays, numbers, "
                    f"dicts or lists; found {type(first).__name__}")
