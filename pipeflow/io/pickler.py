"""Writing the pickle of a checkpoint: protocol 2, in the exact vocabulary torch writes.

pipeflow can't let Python's pickler name torch's functions (it would import torch to check
them), and it must not write anything a ``weights_only`` loader refuses; so this is a small
pickler of its own. It writes only opcodes torch's weights_only unpickler reads and only
globals on its allow-list:

* ``None``, ``bool``, ``int``, ``float``, ``complex``, ``str``, ``bytes``, ``bytearray``;
* ``tuple``, ``list``, ``dict``, ``set``, ``collections.OrderedDict`` (with its attributes,
  e.g. a state dict's ``_metadata``) and ``collections.Counter``;
* pipeflow ``Tensor`` and ``nn.Parameter`` (as ``torch._utils._rebuild_tensor_v2`` /
  ``_rebuild_parameter`` calls over persistent storage ids), ``Size``, ``device``, ``dtype``;
* NumPy scalars, written as the Python number they hold.

Anything else (a NumPy array, a frozenset, an instance of some class) raises ``TypeError``
naming where it sits in the object, before any file is touched: a checkpoint pipeflow
writes is always one that ``pf.load`` and ``torch.load(weights_only=True)`` can read.

The same object met twice (a tensor, a list) is written once and read back as one object;
tensors that view the same memory in the same way share one storage.
"""
import struct
from collections import Counter, OrderedDict

import numpy as np

from .. import backend, dtypes
from ..backend import device
from ..nn.parameter import Parameter
from ..tensor import Size, Tensor
from .torch_compat import STORAGE_NAME, TORCH_DTYPE_NAME

_BATCH = 1000  # items per APPENDS / SETITEMS, as in Python's pickler

PROTO, STOP, MARK = b"\x80", b".", b"("
NONE, NEWTRUE, NEWFALSE = b"N", b"\x88", b"\x89"
BININT, BININT1, BININT2, LONG1, BINFLOAT = b"J", b"K", b"M", b"\x8a", b"G"
BINUNICODE = b"X"
EMPTY_TUPLE, TUPLE, TUPLE1, TUPLE2, TUPLE3 = b")", b"t", b"\x85", b"\x86", b"\x87"
EMPTY_LIST, APPEND, APPENDS = b"]", b"a", b"e"
EMPTY_DICT, SETITEM, SETITEMS = b"}", b"s", b"u"
GLOBAL, REDUCE, BUILD, BINPERSID = b"c", b"R", b"b", b"Q"
BINPUT, LONG_BINPUT, BINGET, LONG_BINGET = b"q", b"r", b"h", b"j"
_TUPLE_OPS = {1: TUPLE1, 2: TUPLE2, 3: TUPLE3}


class StorageRecord:
    """One storage to write: `array` (C-contiguous, NumPy or CuPy) holds its bytes."""

    __slots__ = ("key", "array", "dtype", "location")

    def __init__(self, key, array, dtype, location):
        self.key, self.array, self.dtype, self.location = key, array, dtype, location

    @property
    def nbytes(self):
        return int(self.array.size) * self.array.itemsize


def _dense_layout(array):
    """(memory, strides): `memory` a C-contiguous array with the elements of `array` in
    memory order, `strides` (in elements) how `array` views it. A transposed or permuted
    tensor keeps its layout (as torch writes it); a view with gaps, overlaps or negative
    strides is written compacted."""
    if array.flags.c_contiguous:
        memory = array
        order = list(range(array.ndim))
    else:
        order = sorted(range(array.ndim), key=lambda d: -array.strides[d])
        memory = array.transpose(order)
        if not memory.flags.c_contiguous:
            memory = array.copy(order="C")
            order = list(range(array.ndim))
    strides, step = [0] * array.ndim, 1
    for d in reversed(order):
        strides[d] = step
        step *= max(array.shape[d], 1)
    return memory, tuple(strides)


def _location(array):
    dev = backend.device_of(array)
    return "cpu" if dev.type == "cpu" else f"cuda:{dev.index}"


class TorchPickler:
    """``TorchPickler().dump(obj)`` -> the pickle bytes; ``storages`` then lists the
    ``StorageRecord``s the pickle names, by key ('0', '1', ...) in order."""

    def __init__(self):
        self.out = bytearray()
        self.memo = {}
        self.storages = []
        self._storage_keys = {}
        self._keep = []  # objects whose id() is a memo key stay alive while pickling
        self._path = []

    def dump(self, obj):
        self.out += PROTO + b"\x02"
        self._save(obj)
        self.out += STOP
        return bytes(self.out)

    # --- helpers ------------------------------------------------------------------------------
    def _where(self):
        return "obj" + "".join(self._path)

    def _memoize(self, key, obj=None):
        index = len(self.memo)
        self.memo[key] = index
        if obj is not None:
            self._keep.append(obj)
        self.out += BINPUT + bytes([index]) if index < 256 else \
            LONG_BINPUT + struct.pack("<I", index)

    def _get(self, key):
        index = self.memo.get(key)
        if index is None:
            return False
        self.out += BINGET + bytes([index]) if index < 256 else \
            LONG_BINGET + struct.pack("<I", index)
        return True

    def _global(self, module, name):
        if not self._get(("global", module, name)):
            self.out += GLOBAL + f"{module}\n{name}\n".encode("ascii")
            self._memoize(("global", module, name))

    def _child(self, label, value):
        self._path.append(label)
        self._save(value)
        self._path.pop()

    # --- values --------------------------------------------------------------------------------
    def _save(self, obj):
        t = type(obj)
        if obj is None:
            self.out += NONE
        elif t is bool:
            self.out += NEWTRUE if obj else NEWFALSE
        elif isinstance(obj, Tensor):
            self._save_tensor(obj)
        elif isinstance(obj, dtypes.dtype):
            self._global("torch", TORCH_DTYPE_NAME[obj])
        elif isinstance(obj, device):
            self._global("torch", "device")
            self._save_tuple(("cpu",) if obj.type == "cpu" else (obj.type, obj.index))
            self.out += REDUCE
        elif isinstance(obj, Size):
            self._global("torch", "Size")
            self._save_tuple((tuple(int(d) for d in obj),))
            self.out += REDUCE
        elif isinstance(obj, (bool, np.bool_)):
            self.out += NEWTRUE if obj else NEWFALSE
        elif isinstance(obj, (int, np.integer)):
            self._save_int(int(obj))
        elif isinstance(obj, (float, np.floating)):
            self.out += BINFLOAT + struct.pack(">d", float(obj))
        elif isinstance(obj, (complex, np.complexfloating)):
            obj = complex(obj)
            self._global("builtins", "complex")
            self.out += BINFLOAT + struct.pack(">d", obj.real) + BINFLOAT + \
                struct.pack(">d", obj.imag) + TUPLE2 + REDUCE
        elif isinstance(obj, str):
            self._save_str(str(obj))
        elif isinstance(obj, bytes):
            self._save_bytes(bytes(obj))
        elif isinstance(obj, bytearray):
            self._global("builtins", "bytearray")
            self._save_bytes(bytes(obj))
            self.out += TUPLE1 + REDUCE
        elif self._get(("id", id(obj))):
            pass  # a container met before
        elif t is list:
            self.out += EMPTY_LIST
            self._memoize(("id", id(obj)), obj)
            self._save_items(obj)
        elif t is tuple:
            self._save_tuple(obj)
        elif t is dict:
            self.out += EMPTY_DICT
            self._memoize(("id", id(obj)), obj)
            self._save_pairs(obj)
        elif t is OrderedDict:
            self._global("collections", "OrderedDict")
            self.out += EMPTY_TUPLE + REDUCE
            self._memoize(("id", id(obj)), obj)
            self._save_pairs(obj)
            attributes = vars(obj)
            if attributes:
                self._path.append(".__dict__")
                self.out += EMPTY_DICT
                self._save_pairs(attributes)
                self._path.pop()
                self.out += BUILD
        elif t is Counter:
            self._global("collections", "Counter")
            self.out += EMPTY_DICT
            self._save_pairs(obj)
            self.out += TUPLE1 + REDUCE
            self._memoize(("id", id(obj)), obj)
        elif t is set:
            self._global("builtins", "set")
            self.out += EMPTY_LIST
            self._save_items(list(obj))
            self.out += TUPLE1 + REDUCE
            self._memoize(("id", id(obj)), obj)
        else:
            hint = ""
            if isinstance(obj, np.ndarray):
                hint = " (wrap NumPy arrays in a tensor: pf.from_numpy(array))"
            elif isinstance(obj, frozenset):
                hint = " (torch.load(weights_only=True) can't read frozensets; use a set)"
            elif isinstance(obj, (list, tuple, dict)):
                hint = f" (a subclass of {type(obj).__mro__[1].__name__}; convert it first)"
            raise TypeError(
                f"pf.save can't save {t.__module__}.{t.__qualname__} at {self._where()}: "
                "checkpoints hold tensors, parameters, dicts, lists, tuples, sets and plain "
                f"values only{hint}")

    def _save_int(self, value):
        if 0 <= value < 256:
            self.out += BININT1 + bytes([value])
        elif 0 <= value < 65536:
            self.out += BININT2 + struct.pack("<H", value)
        elif -2 ** 31 <= value < 2 ** 31:
            self.out += BININT + struct.pack("<i", value)
        else:
            encoded = _encode_long(value)
            if len(encoded) > 255:
                raise TypeError(f"pf.save can't save the integer at {self._where()}: it has "
                                "more than 2040 bits")
            self.out += LONG1 + bytes([len(encoded)]) + encoded

    def _save_str(self, value):
        if self._get(("str", value)):
            return
        encoded = value.encode("utf-8", "surrogatepass")
        self.out += BINUNICODE + struct.pack("<I", len(encoded)) + encoded
        self._memoize(("str", value))

    def _save_bytes(self, value):
        # Protocol 2 has no bytes opcode: Python writes _codecs.encode(latin-1 text, 'latin1')
        self._global("_codecs", "encode")
        self._save_str(value.decode("latin-1"))
        self._save_str("latin1")
        self.out += TUPLE2 + REDUCE

    def _save_tuple(self, items):
        if not items:
            self.out += EMPTY_TUPLE
            return
        if len(items) > 3:
            self.out += MARK
        for i, item in enumerate(items):
            self._child(f"[{i}]", item)
        self.out += _TUPLE_OPS.get(len(items), TUPLE)

    def _save_items(self, items):
        for start in range(0, len(items), _BATCH):
            batch = items[start:start + _BATCH]
            if len(batch) == 1:
                self._child(f"[{start}]", batch[0])
                self.out += APPEND
                continue
            self.out += MARK
            for i, item in enumerate(batch, start):
                self._child(f"[{i}]", item)
            self.out += APPENDS

    def _save_pairs(self, mapping):
        items = list(mapping.items())
        for start in range(0, len(items), _BATCH):
            batch = items[start:start + _BATCH]
            if len(batch) > 1:
                self.out += MARK
            for key, value in batch:
                label = f"[{key!r}]" if isinstance(key, (str, int, float, tuple)) else "[<key>]"
                self._path.append(f"<key {label}>")
                self._save(key)
                self._path.pop()
                self._child(label, value)
            self.out += SETITEMS if len(batch) > 1 else SETITEM

    # --- tensors ---------------------------------------------------------------------------------
    def _save_tensor(self, tensor):
        if self._get(("id", id(tensor))):
            return
        if isinstance(tensor, Parameter):
            self._global("torch._utils", "_rebuild_parameter")
            self.out += MARK
            self._save_tensor_data(tensor, requires_grad=False)
            self.out += NEWTRUE if tensor.requires_grad else NEWFALSE
            self._global("collections", "OrderedDict")
            self.out += EMPTY_TUPLE + REDUCE + TUPLE + REDUCE
        else:
            self._save_tensor_data(tensor, requires_grad=tensor.requires_grad)
        self._memoize(("id", id(tensor)), tensor)

    def _save_tensor_data(self, tensor, requires_grad):
        array = tensor._data
        dtype = dtypes.from_numpy_dtype(array.dtype)
        if dtype not in STORAGE_NAME:  # pragma: no cover - every pipeflow dtype has one
            raise TypeError(f"pf.save can't save a {dtype} tensor at {self._where()}")
        memory, strides = _dense_layout(array)
        record = self._storage(memory, dtype)
        self._global("torch._utils", "_rebuild_tensor_v2")
        self.out += MARK
        # the persistent id ('storage', torch.FloatStorage, key, location, numel)
        self.out += MARK
        self._save_str("storage")
        self._global("torch", STORAGE_NAME[dtype])
        self._save_str(record.key)
        self._save_str(record.location)
        self._save_int(int(record.array.size))
        self.out += TUPLE + BINPERSID
        self._save_int(0)  # storage offset
        self._save_tuple(tuple(int(n) for n in array.shape))
        self._save_tuple(strides)
        self.out += NEWTRUE if requires_grad else NEWFALSE
        self._global("collections", "OrderedDict")  # backward hooks: always empty
        self.out += EMPTY_TUPLE + REDUCE + TUPLE + REDUCE

    def _storage(self, memory, dtype):
        """The storage holding `memory`'s bytes: one per distinct memory block, so that
        tensors viewing the same memory the same way (tied weights) share it."""
        if memory.size:
            pointer = memory.data.ptr if not isinstance(memory, np.ndarray) else \
                memory.__array_interface__["data"][0]
            identity = (_location(memory), pointer, int(memory.size), memory.dtype.str)
        else:
            identity = None
        if identity is not None and identity in self._storage_keys:
            return self._storage_keys[identity]
        record = StorageRecord(str(len(self.storages)), memory, dtype, _location(memory))
        self.storages.append(record)
        if identity is not None:
            self._storage_keys[identity] = record
        return record


def _encode_long(value):
    """Little-endian two's complement, as pickle's LONG1 wants (``pickle.encode_long``)."""
    if value == 0:
        return b""
    nbytes = (value.bit_length() >> 3) + 1
    result = value.to_bytes(nbytes, "little", signed=True)
    if value < 0 and nbytes > 1 and result[-1] == 0xFF and (result[-2] & 0x80) != 0:
        result = result[:-1]
    return result
