"""torch's legacy checkpoint format (torch.save before torch 1.6, and later with
``_use_new_zipfile_serialization=False``; torchvision's weights before 2021): pickles in a row.

    pickle   0x1950a86a20f9469cfc6c     the magic number
    pickle   1001                       the protocol version
    pickle   sys_info                   the writer's byte order and C type sizes
    pickle   the object                 tensors are _rebuild_tensor(_v2) calls over persistent
                                        ids ('storage', storage type, key, location, numel,
                                        view metadata or None)
    pickle   [key, ...]                 the storages whose data follows, in that order
    then, per key, an int64 element count and the storage's bytes.

Counts and bytes are little-endian: torch has written them so on every machine since 0.3,
and torch.load reads them so without looking at sys_info, whose ``little_endian`` only
describes the machine that wrote the file (pipeflow follows torch.load here).

The data follows the pickle that describes it, and a record's byte size depends on its
storage's dtype, which only the pickle tells; so the object pickle is read twice: first with
tensor builders that build nothing, to learn every storage's dtype and find the data, then
for real, each storage read (or memory-mapped) from its place in the file.

``Records`` (consecutive pickles and count-prefixed storages) also serves ``torch_tar``.
"""
import struct

from .errors import CheckpointError
from .filebuffer import FileBuffer
from .storages import StorageTable, parse_storage_id
from .torch_compat import ALLOWED_GLOBALS, TENSOR_BUILDERS, UNSUPPORTED_GLOBALS
from .unpickler import AllowList, RestrictedUnpickler

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001


def matches(head):
    """A pickle (protocol 2 to 5) at the start: the reader then checks the magic number."""
    return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5


class Records:
    """Reads the records lying back to back in bytes [pos, end) of a ``FileBuffer``; `name`
    says where they are in messages."""

    def __init__(self, buf, pos, end, name):
        self.buf, self.pos, self.end, self.name = buf, pos, end, name

    def _take(self, nbytes, what):
        """The offset of the next `nbytes` bytes, which must lie inside the records."""
        if self.pos + nbytes > self.end:
            raise CheckpointError(f"{what} in {self.name} runs past its end at byte "
                                  f"{self.end} (the file is truncated or its sizes are wrong)")
        offset, self.pos = self.pos, self.pos + nbytes
        return offset

    def pickle(self, what, **unpickler_args):
        unpickler = RestrictedUnpickler(self.buf.data, start=self.pos, **unpickler_args)
        obj = unpickler.load()
        self._take(unpickler.pos - self.pos, what)
        return obj

    def unpack(self, fmt, what):
        return self.buf.unpack(fmt, self._take(struct.calcsize(fmt), what), what)

    def storage(self, np_dtype, what):
        """An int64 element count, then that many `np_dtype` elements: (data offset, count)."""
        (count,) = self.unpack("<q", f"the element count of {what}")
        if count < 0:
            raise CheckpointError(f"{what} in {self.name} has a negative element count {count}")
        return self._take(count * np_dtype.itemsize, f"{what} ({count} {np_dtype} elements)"), \
            count


def storage_key(value, what):
    """A storage or tensor key as legacy files write it (str, bytes from Python 2, int)."""
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if type(value) not in (str, int):
        raise CheckpointError(f"malformed {what}: key {value!r}")
    return str(value)


def _build_nothing(*args):
    return None


# Pass 1 reads the object pickle with tensor builders that build nothing.
_SCAN_ALLOWLIST = AllowList({**ALLOWED_GLOBALS, **dict.fromkeys(TENSOR_BUILDERS, _build_nothing)},
                            UNSUPPORTED_GLOBALS)


class _StreamReader:
    def __init__(self, buf, start, map_location):
        self.buf = buf
        self.records = Records(buf, start, buf.size, "the legacy checkpoint")
        self.storages = StorageTable(map_location, "little")
        self.data_offsets = {}  # storage key -> where its bytes start

    def load(self):
        magic = self.records.pickle("the magic number")
        if type(magic) is not int or magic != MAGIC_NUMBER:
            raise CheckpointError(f"not a torch checkpoint: the file is a pickle of "
                                  f"{repr(magic)[:60]}, not torch's magic number "
                                  f"{MAGIC_NUMBER:#x}")
        version = self.records.pickle("the protocol version")
        if type(version) is not int or version != PROTOCOL_VERSION:
            raise CheckpointError(f"unsupported legacy protocol version {repr(version)[:60]} "
                                  f"(torch writes {PROTOCOL_VERSION})")
        if type(self.records.pickle("sys_info")) is not dict:
            raise CheckpointError("malformed legacy checkpoint: sys_info is not a dict")
        object_start = self.records.pos
        first_refs = {}
        self.records.pickle("the object pickle", allowlist=_SCAN_ALLOWLIST,
                            persistent_load=lambda pid: self._note(first_refs, pid))
        self._locate(first_refs)
        self.records.pos = object_start
        return self.records.pickle("the object pickle", persistent_load=self._storage)

    @staticmethod
    def _note(first_refs, pid):
        ref = parse_storage_id(pid)
        first_refs.setdefault(ref.key, ref)  # the first mention decides dtype and size

    def _locate(self, first_refs):
        keys = self.records.pickle("the list of storage keys")
        if type(keys) is not list:
            raise CheckpointError(f"malformed legacy checkpoint: the list of storage keys is "
                                  f"a {type(keys).__name__}")
        for key in (storage_key(k, "storage list") for k in keys):
            ref = first_refs.get(key)
            if ref is None or key in self.data_offsets:
                raise CheckpointError(f"the storage list names '{key}' "
                                      f"{'twice' if ref else 'but the pickle never uses it'}")
            what = f"storage '{key}'"
            offset, count = self.records.storage(ref.storage_type.dtype.np, what)
            if count != ref.numel:
                raise CheckpointError(f"{what} holds {count} elements in the file, but the "
                                      f"pickle says {ref.numel}")
            self.data_offsets[key] = offset
        missing = sorted(set(first_refs) - set(self.data_offsets))
        if missing:
            raise CheckpointError(f"the pickle names storage '{missing[0]}', but the file "
                                  "holds no data for it")

    def _storage(self, pid):
        return self.storages.get(parse_storage_id(pid), self._read)

    def _read(self, key, np_dtype, numel):
        return self.buf.array(self.data_offsets[key], np_dtype, numel, f"storage '{key}'")


def read(fileobj, map_location=None, mmap=False):
    """The object stored in the legacy checkpoint `fileobj` (from its current position)."""
    start = fileobj.tell()
    with FileBuffer(fileobj, mmap) as buf:
        return _StreamReader(buf, start, map_location).load()
