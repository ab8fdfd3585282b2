"""The storages of one checkpoint, the one path by which every format turns its bytes into
the arrays that tensors view.

torch's pickles name a storage with a persistent id ``('storage', storage type, key, location,
numel)`` (legacy files add a sixth item, ``(view key, offset, numel)``, for a storage that is
a slice of another); ``parse_storage_id`` checks one. A ``StorageTable`` then reads each key
once (how is up to the format: a zip record, an offset in the file), puts its bytes in the
host's byte order, places it where ``map_location`` says and caches it, so that every tensor
naming a key shares one array. safetensors files use the table too, one storage per tensor.
"""
import sys
from typing import NamedTuple, Optional

from . import location as _location
from .errors import CheckpointError
from .torch_compat import LoadedStorage, StorageType


class StorageRef(NamedTuple):
    storage_type: StorageType
    key: str
    location: str
    numel: int
    view: Optional[tuple]  # (view key, offset, numel) in elements of the root storage, or None


def _text(value):
    return value.decode("ascii", "replace") if isinstance(value, bytes) else value


def _count(value, what):
    if type(value) is not int or value < 0:
        raise CheckpointError(f"malformed storage reference: {what} {value!r}")
    return value


def parse_storage_id(pid):
    """The ``StorageRef`` a persistent id stands for, after checking every field."""
    if type(pid) is not tuple or len(pid) not in (5, 6):
        raise CheckpointError(f"malformed storage reference {pid!r}: expected ('storage', "
                              "storage type, key, location, numel)")
    kind, storage_type, key, location, numel = (_text(v) for v in pid[:5])
    if kind != "storage":
        raise CheckpointError(f"malformed storage reference: kind {kind!r}, expected "
                              "'storage'")
    if not isinstance(storage_type, StorageType):
        raise CheckpointError(f"malformed storage reference: {storage_type!r} is not a "
                              "storage type")
    if type(key) not in (str, int) or type(location) is not str:
        raise CheckpointError(f"malformed storage reference {pid!r}")
    view = pid[5] if len(pid) == 6 else None
    if view is not None:
        if type(view) is not tuple or len(view) != 3 or type(_text(view[0])) not in (str, int):
            raise CheckpointError(f"malformed storage view {view!r}: expected (key, offset, "
                                  "numel)")
        view = (str(_text(view[0])), _count(view[1], "view offset"),
                _count(view[2], "view numel"))
    return StorageRef(storage_type, str(key), location, _count(numel, "numel"), view)


class StorageTable:
    """The storages loaded so far, by key. `byteorder` is the order of the bytes in the file
    ('little' or 'big'); `map_location` is torch.load's (see ``location``)."""

    def __init__(self, map_location, byteorder="little"):
        self.restore = _location.resolve(map_location)
        self.swap = byteorder != sys.byteorder
        self.loaded = {}

    def add(self, key, location, array, untyped=False):
        """Make the host array `array` (the file's bytes, as read) storage `key`."""
        if self.swap and array.itemsize > 1:
            array = array.byteswap()
        storage = LoadedStorage(self.restore(array, location, key), key, untyped)
        self.loaded[key] = storage
        return storage

    def get(self, ref, read):
        """The storage `ref` names; `read(key, np_dtype, numel)` gives its host array the
        first time the key is met."""
        dtype = ref.storage_type.dtype.np
        storage = self.loaded.get(ref.key)
        if storage is None:
            array = read(ref.key, dtype, ref.numel)
            storage = self.add(ref.key, ref.location, array, ref.storage_type.untyped)
        elif storage.array.dtype != dtype and not (storage.untyped or ref.storage_type.untyped):
            raise CheckpointError(f"storage '{ref.key}' is named with two dtypes, "
                                  f"{storage.array.dtype} and {ref.storage_type.dtype}")
        return storage if ref.view is None else self.view(*ref.view, storage)

    def view(self, key, offset, numel, root):
        """Storage `key`: elements [offset, offset + numel) of the storage `root`."""
        storage = self.loaded.get(key)
        if storage is None:
            if offset + numel > root.array.shape[0]:
                raise CheckpointError(
                    f"storage view '{key}' covers elements {offset}..{offset + numel} of "
                    f"storage '{root.key}', which holds only {root.array.shape[0]} (the file's "
                    "sizes are inconsistent)")
            storage = LoadedStorage(root.array[offset:offset + numel], key, root.untyped)
            self.loaded[key] = storage
        return storage
