"""``map_location``: where the storages of a checkpoint go, as torch.load decides it.

* ``None``: where they were saved ('cpu', 'cuda:N');
* a string or ``pf.device``: all of them there ('cpu', 'cuda', 'cuda:1');
* a dict: saved location -> new location (strings or devices); other locations stay;
* a callable ``fn(storage, location)``: gets each storage as a 1-D pipeflow tensor on the CPU
  and its saved location string, and returns a tensor (or array) holding the same elements
  wherever it should live, or None for the default.
"""
import numpy as np

from .. import backend
from ..backend import device
from ..tensor import Tensor
from .errors import CheckpointError


def _to_device(spec):
    if isinstance(spec, bytes):
        spec = spec.decode("ascii", "replace")
    try:
        return device(spec)
    except (ValueError, TypeError):
        raise CheckpointError(f"cannot place tensors on {spec!r}: pipeflow has the devices "
                              "'cpu' and 'cuda[:N]'") from None


def _move(array, where, saved, key):
    dev = _to_device(where)
    if dev.type == "cuda" and not backend.cuda_available():
        how = "saved on" if where == saved else "mapped to"
        raise CheckpointError(
            f"storage '{key}' was {how} {where!r}, but CUDA is not available "
            f"({'CuPy is not installed' if backend.cupy is None else 'no NVIDIA GPU is visible'})"
            "; load it on the CPU with map_location='cpu'")
    if dev.type == "cuda" and dev.index >= backend.device_count():
        raise CheckpointError(f"storage '{key}' goes to {dev}, but only "
                              f"{backend.device_count()} CUDA device(s) are visible; pass "
                              "map_location to place it elsewhere")
    return backend.to_device(array, dev)


def resolve(map_location):
    """``restore(array, location, key) -> array``: the host array of a storage, saved at
    `location`, placed where `map_location` says."""
    if map_location is None:
        return lambda array, location, key: _move(array, location, location, key)
    if isinstance(map_location, (str, bytes, device)):
        target = str(_to_device(map_location))
        return lambda array, location, key: _move(array, target, location, key)
    if isinstance(map_location, dict):
        def restore(array, location, key):
            target = map_location.get(location, location)
            return _move(array, str(target) if isinstance(target, device) else target,
                         location, key)
        return restore
    if callable(map_location):
        def restore(array, location, key):
            result = map_location(Tensor._wrap(array), location)
            if result is None:
                return _move(array, location, location, key)
            data = result._data if isinstance(result, Tensor) else result
            if not (isinstance(data, np.ndarray) or (
                    backend.cupy is not None and isinstance(data, backend.cupy.ndarray))):
                raise CheckpointError(f"map_location returned {type(result).__name__} for "
                                      f"storage '{key}'; expected a tensor or None")
            if data.dtype != array.dtype or data.shape != array.shape:
                raise CheckpointError(
                    f"map_location returned a {data.dtype} array of shape {data.shape} for "
                    f"storage '{key}', a {array.dtype} array of shape {array.shape}; it may "
                    "move a storage, not change it")
            if not data.flags.c_contiguous:
                data = data.copy()
            return data
        return restore
    raise TypeError(f"map_location must be None, a string, a pipeflow device, a dict or a "
                    f"callable, not {type(map_location).__name__}")
