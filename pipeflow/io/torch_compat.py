"""What torch's pickles name, and what pipeflow makes of it.

torch pickles a tensor as a call ``torch._utils._rebuild_tensor_v2(storage, offset, size,
stride, requires_grad, backward_hooks)`` whose storage is a persistent id
``('storage', torch.FloatStorage, key, location, numel)``; dtypes, ``torch.Size`` and
``torch.device`` appear as globals. This module holds both directions of that vocabulary:

* the names pipeflow writes (``TORCH_DTYPE_NAME``, ``STORAGE_NAME``), and
* ``ALLOWED_GLOBALS``: the only globals a checkpoint may name, each mapped to a pipeflow
  object or to a small, argument-checking function that builds one. It is the allow-list of
  torch 2.13's ``weights_only`` unpickler (torch/_weights_only_unpickler.py) restricted to
  what pipeflow can represent; ``UNSUPPORTED_GLOBALS`` lists the rest of torch's list, so
  that such a file fails with a reason instead of "forbidden global".

Nothing here imports torch. The rebuild functions are shared by every format (torch's zip,
legacy and tar formats, safetensors): a format only has to turn its storages into
``LoadedStorage`` objects (``storages.StorageTable``).
"""
import math
from collections import Counter, OrderedDict

import numpy as np

from .. import dtypes
from ..backend import device
from ..nn.parameter import Parameter
from ..tensor import Size, Tensor
from .errors import CheckpointError

# --- dtypes and storage classes --------------------------------------------------------------
_DTYPES = [  # pipeflow dtype, torch dtype name, legacy typed-storage class name
    (dtypes.float16, "float16", "HalfStorage"),
    (dtypes.float32, "float32", "FloatStorage"),
    (dtypes.float64, "float64", "DoubleStorage"),
    (dtypes.int8, "int8", "CharStorage"),
    (dtypes.int16, "int16", "ShortStorage"),
    (dtypes.int32, "int32", "IntStorage"),
    (dtypes.int64, "int64", "LongStorage"),
    (dtypes.uint8, "uint8", "ByteStorage"),
    (dtypes.bool_, "bool", "BoolStorage"),
]
if dtypes.ml_dtypes is not None:
    _DTYPES.append((dtypes.bfloat16, "bfloat16", "BFloat16Storage"))

TORCH_DTYPE_NAME = {d: name for d, name, _ in _DTYPES}   # pipeflow dtype -> 'float32'
STORAGE_NAME = {d: storage for d, _, storage in _DTYPES}  # pipeflow dtype -> 'FloatStorage'


class StorageType:
    """What ``torch.FloatStorage`` (and the like) stands for in a persistent id: the dtype of
    the storage's elements. ``torch.UntypedStorage`` is bytes (uint8, ``untyped``)."""

    __slots__ = ("name", "dtype", "untyped")

    def __init__(self, name, dtype, untyped=False):
        self.name, self.dtype, self.untyped = name, dtype, untyped

    def __repr__(self):
        return f"<storage type {self.name}>"


UNTYPED_STORAGE = StorageType("torch.storage.UntypedStorage", dtypes.uint8, untyped=True)


class LoadedStorage:
    """A storage read from a checkpoint: a 1-D array (NumPy or CuPy, on its final device)
    of ``numel`` elements, that every tensor naming the same key views."""

    __slots__ = ("array", "key", "untyped", "_views")

    def __init__(self, array, key, untyped=False):
        self.array, self.key, self.untyped = array, key, untyped
        self._views = {}

    def as_dtype(self, np_dtype):
        """The storage's bytes seen as `np_dtype` (for ``_rebuild_tensor_v3``, which gives
        the dtype separately from an untyped storage)."""
        np_dtype = np.dtype(np_dtype)
        if np_dtype == self.array.dtype:
            return self.array
        if np_dtype not in self._views:
            nbytes = self.array.size * self.array.itemsize
            if nbytes % np_dtype.itemsize:
                raise CheckpointError(f"storage '{self.key}' holds {nbytes} bytes, not a whole "
                                      f"number of {np_dtype} elements")
            self._views[np_dtype] = self.array.view(np.uint8).view(np_dtype)
        return self._views[np_dtype]

    def __repr__(self):
        return f"<storage '{self.key}' of {self.array.size} {self.array.dtype}>"


# --- rebuilding tensors -----------------------------------------------------------------------
def _check_int(value, what, minimum=0):
    if type(value) is not int or value < minimum:
        raise CheckpointError(f"malformed tensor record: {what} is {value!r}, expected an "
                              f"integer >= {minimum}")
    return value


def _check_dims(value, what):
    if type(value) not in (tuple, list, Size):
        raise CheckpointError(f"malformed tensor record: {what} is {type(value).__name__}, "
                              "expected a tuple of integers")
    return tuple(_check_int(v, what) for v in value)


def contiguous_strides(size):
    strides, step = [], 1
    for n in reversed(size):
        strides.append(step)
        step *= max(n, 1)
    return tuple(reversed(strides))


def _check_storage(storage):
    if not isinstance(storage, LoadedStorage):
        raise CheckpointError(f"malformed tensor record: expected a storage, got "
                              f"{type(storage).__name__}")


def view_storage(storage, array, offset, size, stride):
    """The tensor data ``array[offset:]`` seen with `size` and `stride` (in elements), after
    checking that every element it reads lies inside the storage."""
    offset = _check_int(offset, "the storage offset")
    size, stride = _check_dims(size, "the size"), _check_dims(stride, "the stride")
    if len(size) != len(stride):
        raise CheckpointError(f"malformed tensor record: size {size} and stride {stride} have "
                              "different lengths")
    numel = math.prod(size)
    available = array.shape[0]
    if numel == 0:
        if offset > available:
            raise CheckpointError(f"tensor starts at offset {offset}, past the end of storage "
                                  f"'{storage.key}' ({available} elements)")
        return array[offset:offset].reshape(size)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= available:
        raise CheckpointError(
            f"tensor of size {list(size)}, stride {list(stride)} at storage offset {offset} "
            f"reads element {last} of storage '{storage.key}', which holds only {available} "
            "elements (the file's sizes are inconsistent)")
    if stride == contiguous_strides(size):
        return array[offset:offset + numel].reshape(size)
    xp = np if isinstance(array, np.ndarray) else _cupy()
    itemsize = array.itemsize
    return xp.lib.stride_tricks.as_strided(array[offset:], shape=size,
                                           strides=tuple(s * itemsize for s in stride))


def _cupy():
    from ..backend import cupy
    return cupy


def _make_tensor(array, requires_grad):
    if type(requires_grad) is not bool:
        raise CheckpointError(f"malformed tensor record: requires_grad is {requires_grad!r}")
    t = Tensor._wrap(array)
    if requires_grad:
        if not t.dtype.is_floating_point:
            raise CheckpointError(f"malformed tensor record: a {t.dtype} tensor cannot "
                                  "require grad")
        t.requires_grad = True
    return t


def rebuild_tensor(storage, storage_offset, size, stride):
    """torch._utils._rebuild_tensor (old files): a tensor viewing `storage`."""
    return rebuild_tensor_v2(storage, storage_offset, size, stride, False, None)


def rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks,
                      metadata=None):
    """torch._utils._rebuild_tensor_v2. Backward hooks (always empty in files torch writes) and
    metadata (conj/neg bits of complex tensors) are ignored."""
    _check_storage(storage)
    array = view_storage(storage, storage.array, storage_offset, size, stride)
    return _make_tensor(array, requires_grad)


def rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks,
                      dtype, metadata=None):
    """torch._utils._rebuild_tensor_v3: like v2, with the dtype given apart from an untyped
    storage (torch writes it for dtypes without a legacy storage class)."""
    _check_storage(storage)
    if not isinstance(dtype, dtypes.dtype):
        raise CheckpointError(f"malformed tensor record: expected a dtype, got {dtype!r}")
    array = view_storage(storage, storage.as_dtype(dtype.np), storage_offset, size, stride)
    return _make_tensor(array, requires_grad)


def _set_state(obj, state):
    """torch._utils._set_obj_state, restricted: public attributes that the class doesn't
    define (nothing can replace a method, a property or pipeflow's private fields)."""
    if isinstance(state, tuple):
        if len(state) != 2:
            raise CheckpointError(f"malformed parameter state {state!r}")
        parts = state
    else:
        parts = (state,)
    for part in parts:
        if not part:
            continue
        if not isinstance(part, dict):
            raise CheckpointError(f"malformed parameter state {state!r}")
        for key, value in part.items():
            if type(key) is str and not key.startswith("_") and not hasattr(type(obj), key):
                setattr(obj, key, value)
    return obj


def rebuild_parameter(data, requires_grad, backward_hooks):
    """torch._utils._rebuild_parameter -> a pipeflow ``nn.Parameter`` sharing `data`."""
    if not isinstance(data, Tensor):
        raise CheckpointError(f"malformed parameter record: data is {type(data).__name__}")
    if type(requires_grad) is not bool:
        raise CheckpointError(f"malformed parameter record: requires_grad is {requires_grad!r}")
    if requires_grad and not data.dtype.is_floating_point:
        raise CheckpointError(f"malformed parameter record: a {data.dtype} parameter cannot "
                              "require grad")
    return Parameter(data, requires_grad)


def rebuild_parameter_with_state(data, requires_grad, backward_hooks, state):
    return _set_state(rebuild_parameter(data, requires_grad, backward_hooks), state)


def _parameter(data=None, requires_grad=True):
    """``torch.nn.Parameter(data, requires_grad)`` called from a pickle (NEWOBJ)."""
    if data is None:
        return Parameter(None, requires_grad)
    return rebuild_parameter(data, requires_grad, None)


class _TensorType:
    """What ``torch.Tensor`` stands for: the plain tensor type in _rebuild_from_type_v2."""

    def __repr__(self):
        return "<torch.Tensor>"


TENSOR_TYPE = _TensorType()
_REBUILDERS = (rebuild_tensor, rebuild_tensor_v2, rebuild_tensor_v3, rebuild_parameter,
               rebuild_parameter_with_state)


def rebuild_from_type_v2(func, new_type, args, state):
    """torch._tensor._rebuild_from_type_v2 (tensors with Python attributes, Parameter
    subclasses): `func` must itself be one of the tensor rebuild functions above."""
    if not any(func is f for f in _REBUILDERS):
        raise CheckpointError(f"malformed tensor record: {func!r} is not a tensor rebuild "
                              "function")
    if type(args) is not tuple:
        raise CheckpointError("malformed tensor record: arguments are not a tuple")
    result = func(*args)
    if new_type is _parameter and not isinstance(result, Parameter):
        result = Parameter(result, result.requires_grad)
    elif new_type is not TENSOR_TYPE and new_type is not _parameter:
        raise CheckpointError(f"malformed tensor record: unknown tensor type {new_type!r}")
    return _set_state(result, state)


# --- plain values ------------------------------------------------------------------------------
_TEXT_ENCODINGS = {"latin1", "latin-1", "iso-8859-1", "iso8859-1", "l1", "utf-8", "utf8",
                   "ascii"}


def _encode(obj, encoding="utf-8", errors="strict"):
    """``_codecs.encode(text, 'latin1')``: how protocol 2 pickles bytes. Only text codecs."""
    if type(obj) is not str or type(encoding) is not str or \
            encoding.lower().replace("_", "-") not in _TEXT_ENCODINGS or errors != "strict":
        raise CheckpointError(f"malformed pickle: _codecs.encode({type(obj).__name__}, "
                              f"{encoding!r}) is not an allowed bytes record")
    return obj.encode(encoding)


def _bytes_from(args, kind):
    if not args:
        return b""
    if len(args) == 1 and type(args[0]) in (bytes, bytearray):
        return bytes(args[0])
    if len(args) == 2 and type(args[0]) is str:
        return _encode(args[0], args[1])
    raise CheckpointError(f"malformed pickle: {kind} of {[type(a).__name__ for a in args]}")


def _bytearray(*args):
    return bytearray(_bytes_from(args, "bytearray"))


def _bytes(*args):
    return _bytes_from(args, "bytes")


def _set(items=()):
    if type(items) not in (list, tuple, set, frozenset):
        raise CheckpointError(f"malformed pickle: set of {type(items).__name__}")
    return set(items)


def _complex(real=0.0, imag=0.0):
    if type(real) is str and imag == 0.0:
        return complex(real)
    if type(real) not in (int, float, bool) or type(imag) not in (int, float, bool):
        raise CheckpointError("malformed pickle: complex of non-numbers")
    return complex(real, imag)


def _size(dims=()):
    if type(dims) not in (tuple, list) or any(type(d) is not int for d in dims):
        raise CheckpointError(f"malformed pickle: torch.Size({dims!r})")
    return Size(dims)


def _device(kind, index=None):
    if type(kind) is not str or (index is not None and type(index) is not int):
        raise CheckpointError(f"malformed pickle: torch.device({kind!r}, {index!r})")
    try:
        return device(kind, index)
    except ValueError as e:
        raise CheckpointError(f"the checkpoint holds a device pipeflow doesn't know: {e}") \
            from None


# --- the allow-list ----------------------------------------------------------------------------
ALLOWED_GLOBALS = {
    "collections.OrderedDict": OrderedDict,
    "collections.Counter": Counter,
    "builtins.set": _set,
    "builtins.bytearray": _bytearray,
    "builtins.complex": _complex,
    "builtins.bytes": _bytes,  # not in torch's list: Python pickles b"" this way
    "_codecs.encode": _encode,
    "torch.Size": _size,
    "torch.device": _device,
    "torch.Tensor": TENSOR_TYPE,
    "torch.nn.parameter.Parameter": _parameter,
    "torch._utils._rebuild_tensor": rebuild_tensor,
    "torch._utils._rebuild_tensor_v2": rebuild_tensor_v2,
    "torch._utils._rebuild_tensor_v3": rebuild_tensor_v3,
    "torch._utils._rebuild_parameter": rebuild_parameter,
    "torch._utils._rebuild_parameter_with_state": rebuild_parameter_with_state,
    "torch._tensor._rebuild_from_type_v2": rebuild_from_type_v2,
    "torch.storage.UntypedStorage": UNTYPED_STORAGE,
    "torch.UntypedStorage": UNTYPED_STORAGE,
}
for _d, _name, _storage in _DTYPES:
    ALLOWED_GLOBALS[f"torch.{_name}"] = _d
    ALLOWED_GLOBALS[f"torch.{_storage}"] = StorageType(f"torch.{_storage}", _d)
    ALLOWED_GLOBALS[f"torch.cuda.{_storage}"] = StorageType(f"torch.cuda.{_storage}", _d)

# The globals whose calls build tensors: a reader that must see every storage before it can
# build a tensor (torch's legacy format) first reads the pickle with these building nothing.
TENSOR_BUILDERS = [name for name, obj in ALLOWED_GLOBALS.items()
                   if any(obj is f for f in (*_REBUILDERS, rebuild_from_type_v2, _parameter))]


def _tensor_classes(*prefixes):
    return [f"{prefix}{kind}Tensor" for prefix in prefixes for kind in (
        "Double", "Float", "Half", "BFloat16", "Long", "Int", "Short", "Char", "Byte", "Bool")]


# torch.FloatTensor and the like: torch's tar format names a tensor's class in its tensor
# records, where (as in torch) the storage decides the dtype and the class is ignored.
LEGACY_TENSOR_CLASSES = _tensor_classes("torch.", "torch.cuda.")

# The rest of torch's allow-list: safe, but nothing pipeflow can build.
UNSUPPORTED_GLOBALS = {}
for _name in ("complex32", "complex64", "complex128", "uint16", "uint32", "uint64",
              "float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz",
              "float8_e8m0fnu", "float4_e2m1fn_x2", "qint8", "qint32", "quint8", "quint4x2",
              "quint2x4", "bits8", "bits16", "bits1x8", "bits2x4", "bits4x2",
              *(f"uint{i}" for i in range(1, 8)), *(f"int{i}" for i in range(1, 8))):
    UNSUPPORTED_GLOBALS[f"torch.{_name}"] = f"pipeflow has no dtype torch.{_name}"
for _storage in ("ComplexFloatStorage", "ComplexDoubleStorage", "QInt8Storage",
                 "QInt32Storage", "QUInt8Storage", "QUInt4x2Storage", "QUInt2x4Storage"):
    for _prefix in ("torch.", "torch.cuda."):
        UNSUPPORTED_GLOBALS[_prefix + _storage] = \
            f"{_prefix}{_storage}: pipeflow has no complex or quantized dtypes"
for _fn, _what in (("_rebuild_sparse_tensor", "sparse tensors"),
                   ("_rebuild_qtensor", "quantized tensors"),
                   ("_rebuild_meta_tensor_no_storage", "meta tensors"),
                   ("_rebuild_nested_tensor", "nested tensors"),
                   ("_rebuild_wrapper_subclass", "tensor subclasses without storage"),
                   ("_rebuild_device_tensor_from_cpu_tensor", "tensors of devices other "
                                                              "than cpu and cuda"),
                   ("_rebuild_device_tensor_from_numpy", "tensors rebuilt from NumPy")):
    UNSUPPORTED_GLOBALS[f"torch._utils.{_fn}"] = f"pipeflow cannot load {_what}"
UNSUPPORTED_GLOBALS["torch.serialization._get_layout"] = "pipeflow has only strided tensors"
for _scheme in ("per_tensor_affine", "per_tensor_symmetric", "per_channel_affine",
                "per_channel_symmetric", "per_channel_affine_float_qparams"):
    UNSUPPORTED_GLOBALS[f"torch.{_scheme}"] = "pipeflow cannot load quantized tensors"
UNSUPPORTED_GLOBALS["torch.storage.TypedStorage"] = "pipeflow cannot load bare storages"
for _name in _tensor_classes("torch.", "torch.cuda.", "torch.sparse.", "torch.cuda.sparse."):
    UNSUPPORTED_GLOBALS[_name] = f"{_name}: pipeflow loads legacy tensor classes only in the " \
                                 "tensor records of torch's tar format"
