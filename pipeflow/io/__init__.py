"""Checkpoints: ``save(obj, path)``, ``save_safetensors(tensors, path)`` and
``load(path, map_location=None)``.

    pf.io.save(model.state_dict(), "model.pt")       # torch.load(..., weights_only=True) reads it
    state = pf.io.load("model.pt", map_location="cpu")  # and this reads torch.save's files

``save`` writes torch's zip format (``torch_zip``), ``save_safetensors`` a safetensors file
(``safetensors``). ``load`` tells the format from the file's content, never its name: torch's
zip format, its legacy pickle stream (``torch_legacy``, torch < 1.6) and its older tar
format (``torch_tar``), and safetensors. Saving is atomic: the file is written to a temporary
file beside the destination, fsync'ed and renamed over it, so a crash never leaves a
half-written file under the final name. Loading never runs code from the file: every pickle
is read by a restricted unpickler (``unpickler``) that knows only the globals torch's
``weights_only`` loader allows (``torch_compat.ALLOWED_GLOBALS``); a file naming any other
global is refused with ``ForbiddenGlobalError`` naming it. All formats turn their bytes into
tensors by one path (``storages``, ``torch_compat``), so map_location, mmap, shared storages
and the bounds checks work the same for each.
"""
import os
import struct
import zipfile
import zlib

from . import safetensors, torch_legacy, torch_tar, torch_zip
from .atomic import atomic_write
from .errors import CheckpointError, CheckpointNotFoundError, ForbiddenGlobalError

__all__ = ["save", "save_safetensors", "load", "CheckpointError", "CheckpointNotFoundError",
           "ForbiddenGlobalError"]


def _archive_name(path):
    stem = os.path.splitext(os.path.basename(os.fspath(path)))[0]
    return stem or "archive"


def _write(f, write, caller):
    """`write(binary file, path or None)` into `f`: atomically for a path, else at the file
    object's current position."""
    if isinstance(f, (str, bytes, os.PathLike)):
        path = os.fsdecode(f)
        with atomic_write(path) as out:
            write(out, path)
    elif hasattr(f, "write"):
        write(f, None)
    else:
        raise TypeError(f"{caller}() needs a path or a binary file object, not "
                        f"{type(f).__name__}")


def save(obj, f):
    """Save `obj` (a state dict, an optimizer state, any nesting of dicts, lists, tuples and
    sets of tensors, parameters and plain values) to `f`, a path or a binary file object,
    in torch's zip format. With a path the write is atomic; with a file object (which needn't
    be seekable) the archive is written at its current position."""
    data, storages = torch_zip.serialize(obj)  # fails on unsavable objects before any I/O
    _write(f, lambda out, path: torch_zip.write(out, _archive_name(path) if path else "archive",
                                                data, storages), "save")


def save_safetensors(tensors, f, metadata=None):
    """Save `tensors`, a flat ``{name: Tensor}`` (a state dict), to `f` (a path, written
    atomically, or a binary file object) as a safetensors file, with optional `metadata`
    ``{str: str}``; ``safetensors.torch.load_file`` and ``load`` read it."""
    header, items = safetensors.serialize_header(tensors, metadata)  # checks before any I/O
    _write(f, lambda out, path: safetensors.write(out, header, items), "save_safetensors")


def _describe_head(head):
    return repr(head[:8]) if head else "nothing (the file is empty)"


# Each format: (does the file's first bytes match it, its reader).
_FORMATS = [(torch_zip.is_torch_zip, torch_zip.read),
            (torch_legacy.matches, torch_legacy.read),
            (torch_tar.matches, torch_tar.read),
            (safetensors.matches, safetensors.read)]
_HEAD = 512  # enough for the tar magic at byte 257


def _read(fileobj, map_location, mmap):
    start = fileobj.tell()
    head = fileobj.read(_HEAD)
    fileobj.seek(start)
    for matches, read in _FORMATS:
        if matches(head):
            return read(fileobj, map_location, mmap)
    raise CheckpointError(f"not a checkpoint: wrong magic number (pipeflow reads torch's zip, "
                          f"legacy and tar formats and safetensors; this file starts with "
                          f"{_describe_head(head)})")


def load(f, map_location=None, *, mmap=False, weights_only=True):
    """Load the checkpoint in `f` (a path or a seekable binary file object): what `save`,
    ``torch.save`` (any version, any format) or a safetensors writer wrote; a safetensors
    file gives a ``{name: Tensor}`` dict.

    Tensors come back as pipeflow Tensors (``nn.Parameter`` for parameters), storages shared
    between tensors stay shared. `map_location` places them: None (where they were saved),
    ``'cpu'``, ``'cuda[:N]'``, a ``pf.device``, a dict ``{saved location: new location}``, or
    a callable ``fn(storage, location)`` returning the storage moved (or None). With
    ``mmap=True`` storages are memory-mapped from the file (copy-on-write: writing to a
    loaded tensor never changes the file) instead of read into memory; the legacy formats
    pack storages back to back, so their mapped tensors may be unaligned (NumPy handles that,
    a little more slowly), and a compressed zip record is read, as it can't be mapped.

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
