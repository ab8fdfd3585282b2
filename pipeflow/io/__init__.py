"""Checkpoints: ``save(obj, path)`` and ``load(path, map_location=None)``.

    pf.io.save(model.state_dict(), "model.pt")       # torch.load(..., weights_only=True) reads it
    state = pf.io.load("model.pt", map_location="cpu")  # and this reads torch.save's files

Files are in torch's zip format (``torch_zip``). Saving is atomic: the archive is written to a
temporary file beside the destination, fsync'ed and renamed over it, so a crash never leaves
a half-written file under the final name. Loading never runs code from the file: the pickle
inside is read by a restricted unpickler (``unpickler``) that knows only the globals torch's
``weights_only`` loader allows (``torch_compat.ALLOWED_GLOBALS``); a file naming any other
global is refused with ``ForbiddenGlobalError`` naming it.
"""
import os
import struct
import zipfile
import zlib

from . import torch_zip
from .atomic import atomic_write
from .errors import CheckpointError, CheckpointNotFoundError, ForbiddenGlobalError

__all__ = ["save", "load", "CheckpointError", "CheckpointNotFoundError", "ForbiddenGlobalError"]

_LEGACY_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19"  # pickled 0x1950a86a20f9469cfc6c


def _archive_name(path):
    stem = os.path.splitext(os.path.basename(os.fspath(path)))[0]
    return stem or "archive"


def save(obj, f):
    """Save `obj` (a state dict, an optimizer state, any nesting of dicts, lists, tuples and
    sets of tensors, parameters and plain values) to `f`, a path or a binary file object,
    in torch's zip format. With a path the write is atomic; with a file object (which needn't
    be seekable) the archive is written at its current position."""
    data, storages = torch_zip.serialize(obj)  # fails on unsavable objects before any I/O
    if isinstance(f, (str, bytes, os.PathLike)):
        path = os.fsdecode(f)
        with atomic_write(path) as out:
            torch_zip.write(out, _archive_name(path), data, storages)
        return
    if not hasattr(f, "write"):
        raise TypeError(f"save() needs a path or a binary file object, not {type(f).__name__}")
    torch_zip.write(f, "archive", data, storages)


def _describe_head(head):
    return repr(head[:8]) if head else "nothing (the file is empty)"


def _read(fileobj, map_location, mmap):
    start = fileobj.tell()
    head = fileobj.read(16)
    fileobj.seek(start)
    if torch_zip.is_torch_zip(head):
        return torch_zip.read(fileobj, map_location, mmap)
    if head.startswith(_LEGACY_MAGIC):
        raise CheckpointError("this is a checkpoint in torch's legacy format (torch < 1.6, or "
                              "_use_new_zipfile_serialization=False), which pipeflow can't "
                              "load yet")
    if len(head) >= 9 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] > 0:
        raise CheckpointError("this looks like a safetensors file, which pipeflow can't load "
                              "yet")
    raise CheckpointError(f"not a checkpoint: wrong magic number (a torch/pipeflow checkpoint "
                          f"is a zip archive starting with b'PK\\x03\\x04'; this file starts "
                          f"with {_describe_head(head)})")


def load(f, map_location=None, *, mmap=False, weights_only=True):
    """Load what `save` or ``torch.save`` wrote to `f` (a path or a binary file object).

    Tensors come back as pipeflow Tensors (``nn.Parameter`` for parameters), storages shared
    between tensors stay shared. `map_location` places them: None (where they were saved),
    ``'cpu'``, ``'cuda[:N]'``, a ``pf.device``, a dict ``{saved location: new location}``, or
    a callable ``fn(storage, location)`` returning the storage moved (or None). With
    ``mmap=True`` storages are memory-mapped from the file (copy-on-write: writing to a
    loaded tensor never changes the file) instead of read into memory.

    Raises ``CheckpointError`` (naming the file and the problem) for a file that is missing,
    not a checkpoint, truncated or inconsistent, and ``ForbiddenGlobalError`` (a
    CheckpointError) for one whose pickle names anything but tensors, containers and plain
    values. Nothing from the file is ever executed.
    """
    if not weights_only:
        raise ValueError("pipeflow loads only data (weights_only=True): it never unpickles "
                         "arbitrary objects, which could run code from the file")
    if isinstance(f, (str, bytes, os.PathLike)):
        name = os.fsdecode(f)
        try:
            fileobj = open(name, "rb")
        except FileNotFoundError:
            raise CheckpointNotFoundError(f"{name}: no such checkpoint file", name) from None
        with fileobj:
            return _load(fileobj, name, map_location, mmap)
    if not hasattr(f, "read") or not hasattr(f, "seek"):
        raise TypeError(f"load() needs a path or a seekable binary file object, not "
                        f"{type(f).__name__}")
    return _load(f, getattr(f, "name", "<file object>"), map_location, mmap)


def _load(fileobj, name, map_location, mmap):
    try:
        return _read(fileobj, map_location, mmap)
    except CheckpointError as e:
        raise e._with_path(name)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, struct.error,
            NotImplementedError, ValueError, TypeError, KeyError, IndexError, OverflowError,
            UnicodeDecodeError, RecursionError) as e:
        raise CheckpointError(f"{name}: cannot read the checkpoint: {type(e).__name__}: {e}",
                              name) from e
