"""safetensors files (Hugging Face, timm): reading and writing, with no dependency.

    8 bytes    N, the header's length (unsigned, little-endian)
    N bytes    a JSON object {name: {"dtype": "F32", "shape": [2, 3], "data_offsets": [b, e]},
               ..., "__metadata__": {str: str}} (may end in spaces, to align the data)
    the data   each tensor's bytes, C order, little-endian, at [b, e) from here; the tensors
               cover the data exactly, without gaps or overlaps

This small parser rather than the ``safetensors`` library: the library copies every tensor
(no views of a memory map), reads only paths (not file objects), needs a compiled wheel at
run time, and its errors name neither the file nor the offending tensor. The header is
checked as strictly as the library checks it, so a file it refuses is refused here too (and
so is a header naming a tensor twice, which the library resolves silently).
"""
import json
import math
import struct
import sys

import numpy as np

from .. import dtypes
from ..tensor import Tensor
from .errors import CheckpointError
from .filebuffer import FileBuffer
from .storages import StorageTable
from .torch_compat import contiguous_strides, rebuild_tensor

MAX_HEADER = 100_000_000  # the library's limit too: a lying length can't make us read GBs

_DTYPES = {"F16": dtypes.float16, "F32": dtypes.float32, "F64": dtypes.float64,
           "I8": dtypes.int8, "I16": dtypes.int16, "I32": dtypes.int32, "I64": dtypes.int64,
           "U8": dtypes.uint8, "BOOL": dtypes.bool_}
if dtypes.ml_dtypes is not None:
    _DTYPES["BF16"] = dtypes.bfloat16
_CODES = {d: code for code, d in _DTYPES.items()}
_UNSUPPORTED = {"U16", "U32", "U64", "C64", "F8_E4M3", "F8_E4M3FNUZ", "F8_E5M2", "F8_E5M2FNUZ",
                "F8_E8M0", "F4", "F6_E2M3", "F6_E3M2"}


def matches(head):
    return len(head) >= 9 and head[8:9] == b"{"


def _reject_duplicates(pairs):
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        duplicate = next(n for n in names if names.count(n) > 1)
        raise CheckpointError(f"the safetensors header names '{duplicate}' twice")
    return dict(pairs)


def _header(buf, start):
    (length,) = buf.unpack("<Q", start, "the safetensors header length")
    if length > MAX_HEADER:
        raise CheckpointError(f"the safetensors header length {length} is beyond the limit of "
                              f"{MAX_HEADER} bytes")
    raw = buf.bytes(start + 8, length, f"the safetensors header ({length} bytes)")
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_reject_duplicates)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"the safetensors header is not valid JSON ({e})") from None
    if type(header) is not dict:
        raise CheckpointError("the safetensors header is not a JSON object")
    metadata = header.pop("__metadata__", None)
    if metadata is not None and (type(metadata) is not dict or
                                 any(type(v) is not str for v in metadata.values())):
        raise CheckpointError("the safetensors __metadata__ is not a map of strings to strings")
    return header, start + 8 + length


def _entry(name, info):
    """(dtype, shape, begin, end) of one tensor's header entry, checked."""
    if type(info) is not dict:
        raise CheckpointError(f"tensor '{name}': header entry is not an object")
    code, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if code not in _DTYPES:
        raise CheckpointError(f"tensor '{name}': " + (
            f"pipeflow has no dtype for safetensors' {code}" if code in _UNSUPPORTED
            else f"unknown dtype {code!r}"))
    if type(shape) is not list or any(type(n) is not int or n < 0 for n in shape):
        raise CheckpointError(f"tensor '{name}': shape {shape!r} is not a list of sizes")
    if type(offsets) is not list or len(offsets) != 2 or \
            any(type(n) is not int for n in offsets) or not 0 <= offsets[0] <= offsets[1]:
        raise CheckpointError(f"tensor '{name}': data_offsets {offsets!r} are not [begin, end]")
    dtype = _DTYPES[code]
    nbytes = math.prod(shape) * dtype.itemsize
    if offsets[1] - offsets[0] != nbytes:
        raise CheckpointError(f"tensor '{name}': dtype {code} and shape {shape} make {nbytes} "
                              f"bytes, but data_offsets {offsets} span {offsets[1] - offsets[0]}")
    return dtype, shape, offsets[0], offsets[1]


def _check_layout(entries, data_size):
    """The tensors must tile the data exactly: no overlap, no gap, nothing past the end."""
    covered = 0
    for name, (_, _, begin, end) in sorted(entries.items(), key=lambda item: item[1][2:]):
        if begin != covered:
            problem = "overlaps the tensor before it" if begin < covered else \
                f"leaves bytes {covered}..{begin} of the data unused"
            raise CheckpointError(f"tensor '{name}' at data bytes {begin}..{end} {problem}")
        if end > data_size:
            raise CheckpointError(f"tensor '{name}' at data bytes {begin}..{end} runs past the "
                                  f"end of the file ({data_size} bytes of data)")
        covered = end
    if covered != data_size:
        raise CheckpointError(f"the file has {data_size - covered} bytes after the last "
                              "tensor's data")


def read(fileobj, map_location=None, mmap=False):
    """{name: Tensor} from the safetensors file `fileobj` (in the header's order)."""
    start = fileobj.tell()
    with FileBuffer(fileobj, mmap) as buf:
        header, data_start = _header(buf, start)
        entries = {name: _entry(name, info) for name, info in header.items()}
        _check_layout(entries, buf.size - data_start)
        storages = StorageTable(map_location, "little")
        tensors = {}
        for name, (dtype, shape, begin, _) in entries.items():
            array = buf.array(data_start + begin, dtype.np, math.prod(shape), f"tensor '{name}'")
            storage = storages.add(name, "cpu", array)
            tensors[name] = rebuild_tensor(storage, 0, shape, contiguous_strides(shape))
        return tensors


# --- writing ------------------------------------------------------------------------------------
def serialize_header(tensors, metadata=None):
    """(header bytes, [(name, tensor), ...] in data order), checking everything first.
    The data goes largest element size first, so that every tensor starts aligned to its
    element size (the header is padded to 8 bytes) and can be memory-mapped efficiently."""
    if metadata is not None and (type(metadata) is not dict or any(
            type(k) is not str or type(v) is not str for k, v in metadata.items())):
        raise TypeError("safetensors metadata must be a dict of strings to strings")
    items = list(tensors.items())
    for name, t in items:
        if type(name) is not str or name == "__metadata__":
            raise TypeError(f"safetensors tensor names must be strings (not '__metadata__'); "
                            f"got {name!r}")
        if not isinstance(t, Tensor):
            raise TypeError(f"safetensors holds only tensors; '{name}' is a {type(t).__name__}")
        if t.dtype not in _CODES:
            raise TypeError(f"'{name}': safetensors has no dtype for {t.dtype}")
    items.sort(key=lambda item: -item[1].dtype.itemsize)
    header, offset = {}, 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, t in items:
        nbytes = t._data.size * t.dtype.itemsize
        header[name] = {"dtype": _CODES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-(len(text) + 8) % 8)
    return struct.pack("<Q", len(text)) + text, items


def write(f, header, items):
    f.write(header)
    for _, t in items:
        array = t._data if isinstance(t._data, np.ndarray) else t._data.get()
        array = np.ascontiguousarray(array)
        if sys.byteorder == "big":
            array = array.byteswap()
        f.write(memoryview(array.reshape(-1).view(np.uint8)))
