"""A checkpoint file as one buffer, for the formats whose storages lie at known offsets
(torch's legacy formats, safetensors, mmap'ed zip records).

A file on disk is memory-mapped: with ``mmap=True`` copy-on-write, and storages come back as
views of the mapping (writing to a loaded tensor never changes the file); otherwise
read-only, and each storage is copied out, so nothing stays mapped after loading. A file
object without a file descriptor (``io.BytesIO``) is read into memory instead, which only
the copying mode allows.

Every read is bounds-checked: an offset or size beyond the end of the file raises
``CheckpointError`` saying what was being read, never a short read or a crash.
"""
import mmap as _mmap
import struct

import numpy as np

from .errors import CheckpointError


class FileBuffer:
    def __init__(self, fileobj, mmap=False):
        self.mapped = mmap
        try:
            fileno = fileobj.fileno()
        except (AttributeError, OSError):
            fileno = None
        if fileno is None:
            if mmap:
                raise CheckpointError("mmap=True needs a file on disk, not a file object")
            fileobj.seek(0)
            self.data = fileobj.read()
        else:
            access = _mmap.ACCESS_COPY if mmap else _mmap.ACCESS_READ
            self.data = _mmap.mmap(fileno, 0, access=access)
        self.size = len(self.data)

    def close(self):
        """Unmap the file after a copying load (a mapped load's tensors keep it mapped)."""
        if not self.mapped and isinstance(self.data, _mmap.mmap):
            self.data.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def check(self, offset, nbytes, what):
        """Raise unless bytes [offset, offset + nbytes) lie inside the file."""
        if offset < 0 or nbytes < 0 or offset + nbytes > self.size:
            raise CheckpointError(f"{what} needs bytes {offset}..{offset + nbytes} of the file, "
                                  f"which has only {self.size} bytes (the file is truncated or "
                                  "its sizes are wrong)")

    def bytes(self, offset, nbytes, what):
        self.check(offset, nbytes, what)
        return self.data[offset:offset + nbytes]

    def unpack(self, fmt, offset, what):
        """``struct.unpack(fmt)`` of the bytes at `offset`."""
        return struct.unpack(fmt, self.bytes(offset, struct.calcsize(fmt), what))

    def array(self, offset, np_dtype, count, what):
        """`count` elements of `np_dtype` from `offset`: a view of the mapping with ``mmap``,
        else a copy. Views may be unaligned (legacy files pack storages back to back);
        NumPy computes on them correctly."""
        np_dtype = np.dtype(np_dtype)
        self.check(offset, count * np_dtype.itemsize, what)
        if count == 0:
            return np.empty(0, np_dtype)
        view = np.frombuffer(self.data, np_dtype, count, offset)
        return view if self.mapped else view.copy()
