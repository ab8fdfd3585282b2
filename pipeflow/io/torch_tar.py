"""torch's oldest checkpoint format (torch.save before the pickle stream of ``torch_legacy``):
an uncompressed tar archive of four files.

    sys_info   a pickle of the writer's byte order and C type sizes (ignored, as by torch)
    storages   a pickle of their number; per storage a pickle (key, location, storage type),
               an int64 element count and the bytes (little-endian); then a pickle of the
               storage views [(view key, root key, offset, numel), ...]
    tensors    a pickle of their number; per tensor a pickle (key, storage key, tensor class),
               then int32 ndim (and 4 bytes of padding), ndim int64 sizes, ndim int64 strides
               and an int64 storage offset
    pickle     the object, in which each tensor is the persistent id str(key)

The archive's members are read in place (the tar module only finds them), so storages can
be memory-mapped like those of the other formats.
"""
import tarfile

from .errors import CheckpointError
from .filebuffer import FileBuffer
from .storages import StorageTable
from .torch_compat import (ALLOWED_GLOBALS, LEGACY_TENSOR_CLASSES, UNSUPPORTED_GLOBALS,
                           StorageType, rebuild_tensor)
from .torch_legacy import Records, storage_key
from .unpickler import AllowList

_MEMBERS = ("pickle", "tensors", "storages")


def matches(head):
    return len(head) >= 262 and head[257:262] == b"ustar"


class _LegacyTensorClass:
    """What torch.FloatTensor and the like stand for in a tensor record: nothing used."""


_TENSOR_RECORD_ALLOWLIST = AllowList(
    {**ALLOWED_GLOBALS, **dict.fromkeys(LEGACY_TENSOR_CLASSES, _LegacyTensorClass())},
    UNSUPPORTED_GLOBALS)


def _members(fileobj, file_size):
    """{name: (start, end)} of the data of the members torch reads."""
    try:
        with tarfile.open(fileobj=fileobj, mode="r:") as tar:
            infos = {info.name: info for info in tar.getmembers()}
    except tarfile.TarError as e:
        raise CheckpointError(f"the tar archive is truncated or corrupt ({e})") from None
    regions = {}
    for name in _MEMBERS:
        info = infos.get(name)
        if info is None or not info.isreg():
            raise CheckpointError(f"the tar archive has no file '{name}'; it is not a torch "
                                  f"checkpoint (members: {sorted(infos)[:5]})")
        if info.offset_data + info.size > file_size:
            raise CheckpointError(f"tar member '{name}' runs past the end of the file (the file "
                                  "is truncated)")
        regions[name] = (info.offset_data, info.offset_data + info.size)
    return regions


class _TarReader:
    def __init__(self, buf, regions, map_location):
        self.buf, self.regions = buf, regions
        self.storages = StorageTable(map_location, "little")
        self.tensors = {}

    def _records(self, name):
        return Records(self.buf, *self.regions[name], f"tar member '{name}'")

    def load(self):
        self._read_storages(self._records("storages"))
        self._read_tensors(self._records("tensors"))
        return self._records("pickle").pickle("the object pickle", persistent_load=self._tensor)

    @staticmethod
    def _count(records, what):
        n = records.pickle(f"the number of {what}")
        if type(n) is not int or n < 0:
            raise CheckpointError(f"malformed {records.name}: the number of {what} is {n!r}")
        return n

    def _read_storages(self, records):
        for _ in range(self._count(records, "storages")):
            header = records.pickle("a storage header")
            if type(header) is not tuple or len(header) != 3 or \
                    not isinstance(header[2], StorageType) or type(header[1]) is not str:
                raise CheckpointError(f"malformed storage header {header!r}: expected (key, "
                                      "location, storage type)")
            key, location, storage_type = storage_key(header[0], "storage"), *header[1:]
            what = f"storage '{key}'"
            offset, count = records.storage(storage_type.dtype.np, what)
            array = self.buf.array(offset, storage_type.dtype.np, count, what)
            self.storages.add(key, location, array, storage_type.untyped)
        views = records.pickle("the storage views")
        if type(views) is not list:
            raise CheckpointError(f"malformed storage views {views!r}")
        for view in views:
            if type(view) is not tuple or len(view) != 4 or \
                    any(type(v) is not int or v < 0 for v in view[2:]):
                raise CheckpointError(f"malformed storage view {view!r}: expected (key, root "
                                      "key, offset, numel)")
            root = self._storage(storage_key(view[1], "storage view"), "a storage view")
            self.storages.view(storage_key(view[0], "storage view"), *view[2:], root)

    def _storage(self, key, user):
        storage = self.storages.loaded.get(key)
        if storage is None:
            raise CheckpointError(f"{user} names storage '{key}', which the file doesn't hold")
        return storage

    def _read_tensors(self, records):
        for _ in range(self._count(records, "tensors")):
            header = records.pickle("a tensor header", allowlist=_TENSOR_RECORD_ALLOWLIST)
            if type(header) is not tuple or len(header) != 3:
                raise CheckpointError(f"malformed tensor header {header!r}: expected (key, "
                                      "storage key, tensor class)")
            key = storage_key(header[0], "tensor")
            storage = self._storage(storage_key(header[1], "tensor"), f"tensor '{key}'")
            (ndim,) = records.unpack("<i4x", f"the dimensions of tensor '{key}'")
            if ndim < 0:
                raise CheckpointError(f"tensor '{key}' has {ndim} dimensions")
            size = records.unpack(f"<{ndim}q", f"the size of tensor '{key}'")
            stride = records.unpack(f"<{ndim}q", f"the stride of tensor '{key}'")
            (offset,) = records.unpack("<q", f"the storage offset of tensor '{key}'")
            self.tensors[key] = rebuild_tensor(storage, offset, size, stride)

    def _tensor(self, pid):
        key = storage_key(pid, "tensor reference")
        if key not in self.tensors:
            raise CheckpointError(f"the pickle names tensor '{key}', which the file doesn't hold")
        return self.tensors[key]


def read(fileobj, map_location=None, mmap=False):
    """The object stored in the legacy tar checkpoint `fileobj`."""
    start = fileobj.tell()
    file_size = fileobj.seek(0, 2)
    fileobj.seek(start)
    regions = _members(fileobj, file_size)
    with FileBuffer(fileobj, mmap) as buf:
        return _TarReader(buf, regions, map_location).load()
