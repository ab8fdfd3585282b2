"""Creating tensors: from data, filled, ranges, random, and like another tensor."""
import contextlib

import numpy as np

from . import backend, dtypes
from .random import generator_for
from .tensor import Tensor, _sizes


def _finish(array, requires_grad):
    t = Tensor._wrap(array)
    if requires_grad:
        t.requires_grad = True
    return t


def _device(device):
    if device is None:
        return backend.CPU
    return device if isinstance(device, backend.device) else backend.device(device)


def as_array(data, np_dtype=None, dev=None, copy=False):
    """Any data (nested lists, scalars, NumPy/CuPy arrays, Tensors, DLPack objects)
    -> an array on `dev` (default: where the data is, else the CPU)."""
    if isinstance(data, Tensor):
        data = data._data
    if isinstance(data, np.ndarray) or (backend.cupy is not None and
                                        isinstance(data, backend.cupy.ndarray)):
        array = data
    else:
        try:
            array = np.array(data, copy=True)
        except ValueError as e:  # ragged nesting
            raise ValueError(f"can't build a tensor from ragged data: {e}") from None
        if array.dtype == object:
            raise TypeError(f"can't build a tensor from {type(data).__name__} data of mixed or "
                            "ragged shape")
        if np_dtype is None and array.dtype == np.float64 and not isinstance(data, np.generic):
            array = array.astype(dtypes.default_float.np)  # Python floats -> float32
        copy = False
    if array.dtype.kind == "U" or array.dtype not in dtypes._BY_NUMPY:
        raise TypeError(f"can't build a tensor of dtype {array.dtype}")
    if dev is not None:
        moved = backend.to_device(array, dev)
        copy = copy and moved is array
        array = moved
    if np_dtype is not None and np_dtype != array.dtype:
        array, copy = array.astype(np_dtype), False
    return array.copy() if copy else array


def tensor(data, dtype=None, device=None, requires_grad=False):
    """A new tensor holding a copy of `data` (float data defaults to float32)."""
    array = as_array(data, dtypes.to_numpy(dtype), None if device is None else _device(device),
                     copy=True)
    return _finish(array, requires_grad)


def as_tensor(data, dtype=None, device=None):
    """Like tensor(), but shares memory with `data` when dtype and device allow."""
    if isinstance(data, Tensor) and dtype is None and device is None:
        return data
    return Tensor._wrap(as_array(data, dtypes.to_numpy(dtype),
                                 None if device is None else _device(device)))


def from_numpy(array):
    """A CPU tensor sharing memory with a NumPy array."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"expected np.ndarray (got {type(array).__name__})")
    dtypes.from_numpy_dtype(array.dtype)  # refuses unsupported dtypes
    return Tensor._wrap(array)


def from_dlpack(obj):
    """A tensor sharing memory with any DLPack producer (torch, JAX, CuPy, NumPy)."""
    device_type, _ = obj.__dlpack_device__()
    if device_type == 1:  # kDLCPU
        return Tensor._wrap(np.from_dlpack(obj))
    backend.require_cuda("importing a GPU tensor through DLPack")
    return Tensor._wrap(backend.cupy.from_dlpack(obj))


def _filled(fill, size, dtype, device, requires_grad, default=None):
    np_dtype = dtypes.to_numpy(dtype) or default or dtypes.default_float.np
    dev = _device(device)
    if dev.type == "cpu":
        return _finish(fill(np, tuple(_sizes(size)), np_dtype), requires_grad)
    with _on(dev):
        return _finish(fill(backend.module_for(dev), tuple(_sizes(size)), np_dtype),
                       requires_grad)


def _on(dev):
    """A context that allocates on the GPU of cuda:N (nothing to do for the CPU)."""
    if dev.type == "cpu":
        return contextlib.nullcontext()
    backend.require_cuda(f"device {dev}")
    return backend.cupy.cuda.Device(dev.index)


def zeros(*size, dtype=None, device=None, requires_grad=False):
    return _filled(lambda xp, s, d: xp.zeros(s, d), size, dtype, device, requires_grad)


def ones(*size, dtype=None, device=None, requires_grad=False):
    return _filled(lambda xp, s, d: xp.ones(s, d), size, dtype, device, requires_grad)


def empty(*size, dtype=None, device=None, requires_grad=False):
    return _filled(lambda xp, s, d: xp.empty(s, d), size, dtype, device, requires_grad)


def full(size, fill_value, dtype=None, device=None, requires_grad=False):
    default = (np.dtype(np.bool_) if isinstance(fill_value, bool) else
               np.dtype(np.int64) if isinstance(fill_value, int) else None)
    return _filled(lambda xp, s, d: xp.full(s, fill_value, d), (size,), dtype, device,
                   requires_grad, default)


def eye(n, m=None, dtype=None, device=None, requires_grad=False):
    return _filled(lambda xp, s, d: xp.eye(n, m, dtype=d), ((),), dtype, device, requires_grad)


def arange(start, end=None, step=1, dtype=None, device=None, requires_grad=False):
    if end is None:
        start, end = 0, start
    if step == 0:
        raise RuntimeError("arange: step must be nonzero")
    if (end - start) * step < 0:
        raise RuntimeError(f"arange: upper bound {end} and lower bound {start} inconsistent "
                           f"with step sign {step}")
    is_int = all(isinstance(v, (int, np.integer)) for v in (start, end, step))
    default = np.dtype(np.int64) if is_int else None
    return _filled(lambda xp, s, d: xp.arange(start, end, step).astype(d), ((),), dtype, device,
                   requires_grad, default)


def linspace(start, end, steps, dtype=None, device=None, requires_grad=False):
    return _filled(lambda xp, s, d: xp.linspace(start, end, steps).astype(d), ((),), dtype,
                   device, requires_grad)


def _random(draw, size, dtype, device, generator, requires_grad, default=None):
    dev = _device(device)
    np_dtype = dtypes.to_numpy(dtype) or default or dtypes.default_float.np
    if default is None and np_dtype.kind not in "fV":
        raise RuntimeError(f"random floats can't be drawn as {dtypes.from_numpy_dtype(np_dtype)}: "
                           "use a floating point dtype (or randint for integers)")
    with _on(dev):
        array = draw(generator_for(dev, generator), tuple(_sizes(size)), np_dtype)
    return _finish(array, requires_grad)


def rand(*size, generator=None, dtype=None, device=None, requires_grad=False):
    return _random(lambda g, s, d: g.uniform(s, d), size, dtype, device, generator, requires_grad)


def randn(*size, generator=None, dtype=None, device=None, requires_grad=False):
    return _random(lambda g, s, d: g.normal(s, d), size, dtype, device, generator, requires_grad)


def randint(low, high=None, size=None, generator=None, dtype=None, device=None,
            requires_grad=False):
    if size is None:  # randint(high, size)
        low, high, size = 0, low, high
    if high <= low:
        raise RuntimeError(f"randint: expected low < high, got low={low}, high={high}")
    return _random(lambda g, s, d: g.integers(low, high, s, d), (size,), dtype, device,
                   generator, requires_grad, np.dtype(np.int64))


def randperm(n, generator=None, dtype=None, device=None):
    if n < 0:
        raise RuntimeError(f"randperm: n must be non-negative, got {n}")
    dev = _device(device)
    perm = generator_for(backend.CPU, generator if generator is None or
                         generator.device.type == "cpu" else None).permutation(n)
    return Tensor._wrap(backend.to_device(perm.astype(dtypes.to_numpy(dtype) or np.int64), dev))


def normal(mean, std, size, generator=None, dtype=None, device=None, requires_grad=False):
    return _random(lambda g, s, d: g.normal(s, d, mean, std), (size,), dtype, device, generator,
                   requires_grad)


def _like(factory):
    def like(t, dtype=None, device=None, requires_grad=False, **kwargs):
        return factory(*t._data.shape, dtype=t.dtype if dtype is None else dtype,
                       device=t.device if device is None else device,
                       requires_grad=requires_grad, **kwargs)
    like.__name__ = factory.__name__ + "_like"
    return like


zeros_like, ones_like, empty_like = _like(zeros), _like(ones), _like(empty)
rand_like, randn_like = _like(rand), _like(randn)


def full_like(t, fill_value, dtype=None, device=None, requires_grad=False):
    return full(t._data.shape, fill_value, dtype=t.dtype if dtype is None else dtype,
                device=t.device if device is None else device, requires_grad=requires_grad)


def randint_like(t, low, high=None, dtype=None, device=None):
    if high is None:
        low, high = 0, low
    return randint(low, high, t._data.shape, dtype=t.dtype if dtype is None else dtype,
                   device=t.device if device is None else device)
