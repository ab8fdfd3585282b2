"""torch's zip checkpoint format (torch.save since 1.6): reader and writer.

An archive ``<name>.pt`` holds, under one top-level folder (torch names it after the file,
``<name>``; readers accept any):

    <name>/data.pkl                  the object, pickled (protocol 2); tensors are
                                     _rebuild_tensor_v2 calls over persistent ids
                                     ('storage', torch.FloatStorage, key, location, numel)
    <name>/.format_version           b"1"
    <name>/.storage_alignment        b"64"
    <name>/byteorder                 b"little" (or b"big": storages are byte-swapped)
    <name>/data/<key>                each storage's raw bytes, stored uncompressed, the data
                                     aligned to 64 bytes in the file (the local header's extra
                                     field is padded) so that it can be memory-mapped
    <name>/version                   b"3\\n"
    <name>/.data/serialization_id    a random 40-digit id

pipeflow writes the same records in the same order, byte for byte in torch's layout
(``zipwriter``), so that torch's readers that compute storage offsets instead of reading
the zip directory find them too.
"""
import secrets
import struct
import sys
import zipfile

import numpy as np

from .errors import CheckpointError
from .filebuffer import FileBuffer
from .pickler import TorchPickler
from .storages import StorageTable, parse_storage_id
from .unpickler import RestrictedUnpickler
from .zipwriter import ZipWriter

ALIGNMENT = 64
_CHUNK = 64 << 20  # bytes copied at a time
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")  # zipfile's sizeFileHeader layout


def is_torch_zip(head):
    return head[:4] in (b"PK\x03\x04", b"PK\x05\x06")


# --- writing ----------------------------------------------------------------------------------
def serialize(obj):
    """(data.pkl bytes, storage records): all the checks and the pickling, before any file is
    opened (what can't be saved fails here)."""
    pickler = TorchPickler()
    data = pickler.dump(obj)
    return data, pickler.storages


def _storage_chunks(record):
    array = record.array
    if not isinstance(array, np.ndarray):
        array = array.get()  # a CuPy array: to the host, one storage at a time
    flat = array.reshape(-1).view(np.uint8)
    for start in range(0, flat.size, _CHUNK):
        yield memoryview(flat[start:start + _CHUNK])


def write(f, archive_name, data, storages):
    """Write the archive to the binary file `f` (from its current position; only appends)."""
    zf = ZipWriter(f, ALIGNMENT)

    def record(name, payload):
        zf.add(f"{archive_name}/{name}", [payload], len(payload))

    record("data.pkl", data)
    record(".format_version", b"1")
    record(".storage_alignment", str(ALIGNMENT).encode())
    record("byteorder", sys.byteorder.encode())
    for storage in storages:
        zf.add(f"{archive_name}/data/{storage.key}", _storage_chunks(storage), storage.nbytes)
    record("version", b"3\n")
    record(".data/serialization_id", f"{secrets.randbits(128):040d}".encode())
    zf.close()


# --- reading ----------------------------------------------------------------------------------
def _archive_prefix(zf):
    names = zf.namelist()
    if not names:
        raise CheckpointError("the zip archive is empty; it is not a checkpoint")
    first = names[0].split("/", 1)[0]
    candidates = [first] + [n[:-len("/data.pkl")] for n in names
                            if n.endswith("/data.pkl") and n.count("/") == 1]
    for prefix in candidates:
        if f"{prefix}/data.pkl" in zf.NameToInfo:
            return prefix
    if any(n.endswith("/constants.pkl") for n in names):
        raise CheckpointError("this is a TorchScript archive (torch.jit.save), not a "
                              "checkpoint; pipeflow can't load TorchScript")
    raise CheckpointError(f"the zip archive has no '<name>/data.pkl' record; it is not a torch "
                          f"or pipeflow checkpoint (first entries: {names[:5]})")


class _ZipReader:
    def __init__(self, zf, fileobj, map_location, use_mmap):
        self.zf = zf
        self.prefix = _archive_prefix(zf)
        order = self._record("byteorder") or b"little"
        if order not in (b"little", b"big"):
            raise CheckpointError(f"unknown byte order {order!r} in {self.prefix}/byteorder")
        self.storages = StorageTable(map_location, order.decode())
        self.mapped = FileBuffer(fileobj, mmap=True) if use_mmap else None

    def _record(self, name):
        info = self.zf.NameToInfo.get(f"{self.prefix}/{name}")
        return None if info is None else self.zf.read(info)

    def load(self):
        data = self._record("data.pkl")
        return RestrictedUnpickler(data, persistent_load=self.persistent_load).load()

    def persistent_load(self, pid):
        return self.storages.get(parse_storage_id(pid), self._read_storage)

    def _read_storage(self, key, np_dtype, numel):
        name = f"{self.prefix}/data/{key}"
        nbytes = numel * np_dtype.itemsize
        info = self.zf.NameToInfo.get(name)
        if info is None:
            if nbytes == 0:
                return np.empty(0, np_dtype)
            raise CheckpointError(f"data.pkl names storage '{key}', but the archive has no "
                                  f"record {name}")
        if info.file_size < nbytes:
            raise CheckpointError(
                f"storage '{key}' should hold {numel} {np_dtype} elements ({nbytes} bytes), but "
                f"its record {name} has only {info.file_size} bytes (the file's sizes are "
                "inconsistent)")
        if nbytes == 0:
            return np.empty(0, np_dtype)
        if self.mapped is not None and info.compress_type == zipfile.ZIP_STORED:
            return self._map_storage(info, np_dtype, numel)
        array = np.empty(numel, np_dtype)
        target = array.view(np.uint8)
        with self.zf.open(info) as source:
            done = 0
            while done < nbytes:
                chunk = source.read(min(_CHUNK, nbytes - done))
                if not chunk:
                    raise CheckpointError(f"record {name} ends after {done} of its {nbytes} "
                                          "bytes (the file is truncated)")
                target[done:done + len(chunk)] = np.frombuffer(chunk, np.uint8)
                done += len(chunk)
            if info.file_size == nbytes:
                source.read(1)  # reach the end, where zipfile checks the CRC
        return array

    def _map_storage(self, info, np_dtype, numel):
        what = f"record {info.filename}"
        header = self.mapped.bytes(info.header_offset, _LOCAL_HEADER.size, what)
        if header[:4] != b"PK\x03\x04":
            raise CheckpointError(f"{what} has a bad local header (the file is corrupt)")
        fields = _LOCAL_HEADER.unpack(header)
        offset = info.header_offset + _LOCAL_HEADER.size + fields[-2] + fields[-1]
        return self.mapped.array(offset, np_dtype, numel, what)


def read(fileobj, map_location=None, mmap=False):
    """The object stored in the torch zip archive `fileobj` (a binary file)."""
    try:
        zf = zipfile.ZipFile(fileobj)
    except zipfile.BadZipFile as e:
        raise CheckpointError(f"the zip archive is truncated or corrupt ({e})") from None
    with zf:
        return _ZipReader(zf, fileobj, map_location, mmap).load()
