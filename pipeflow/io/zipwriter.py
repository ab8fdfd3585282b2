"""A zip writer that lays records out exactly as torch's (miniz's) writer does.

torch can compute where each storage's data lies from the record sizes alone, without
reading the zip directory (``torch.utils.serialization.config.load.calculate_storage_offsets``
and loading to the meta device); that only works if the archive has the byte layout of
``caffe2/serialize/inline_container.cc``, which this writer reproduces:

* every record is stored (not compressed); its local header has no CRC or sizes, the flags
  0x0808 (UTF-8 name, data descriptor follows) or 0x0800 for an empty record, and an extra
  field (zip64 sizes / offset when they need 64 bits, then "FB" padding) that makes the data
  start on a multiple of `alignment` (64) bytes, so that storages can be memory-mapped;
* a non-empty record's data is followed by a data descriptor (signature, CRC, sizes: 16
  bytes, or 24 when the size or the header's offset needs 64 bits);
* the central directory, then a zip64 end record and locator, then the end record.

It only appends, so it can write to pipes; offsets are from where the archive starts.
"""
import struct
import zlib

MAX32 = 0xFFFFFFFF
ZIP64_THRESHOLD = MAX32  # sizes and offsets from here on go to zip64 fields (tests lower it)
_LOCAL = struct.Struct("<4s2B4HL2L2H")
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")
_DESCRIPTOR32 = struct.Struct("<4sLLL")
_DESCRIPTOR64 = struct.Struct("<4sLQQ")
_END64 = struct.Struct("<4sQ2H2L4Q")
_END64_LOCATOR = struct.Struct("<4sLQL")
_END = struct.Struct("<4s4H2LH")
_PAD_ID = 0x4246  # "FB"
_ZIP64_ID = 0x0001
_FLAG_DESCRIPTOR, _FLAG_UTF8 = 0x0008, 0x0800


class ZipWriter:
    def __init__(self, f, alignment=64):
        self.f = f
        self.alignment = alignment
        self.pos = 0
        self.entries = []  # (name, flags, crc, size, offset)

    def _write(self, data):
        self.f.write(data)
        self.pos += memoryview(data).nbytes

    def add(self, name, chunks, size):
        """Append the record `name` whose `size` bytes come as the bytes-like `chunks`."""
        name = name.encode("utf-8")
        offset = self.pos
        big_size, big_offset = size >= ZIP64_THRESHOLD, offset >= ZIP64_THRESHOLD
        extra = b""
        if big_size or big_offset:
            fields = (struct.pack("<QQ", size, size) if big_size else b"") + \
                (struct.pack("<Q", offset) if big_offset else b"")
            extra = struct.pack("<HH", _ZIP64_ID, len(fields)) + fields
        start = offset + _LOCAL.size + len(name) + len(extra) + 4
        pad = -start % self.alignment
        extra += struct.pack("<HH", _PAD_ID, pad) + b"Z" * pad
        flags = _FLAG_UTF8 | (_FLAG_DESCRIPTOR if size else 0)
        self._write(_LOCAL.pack(b"PK\x03\x04", 0, 0, flags, 0, 0, 0, 0, 0, 0, len(name),
                                len(extra)))
        self._write(name + extra)
        crc, written = 0, 0
        for chunk in chunks:
            crc = zlib.crc32(chunk, crc)
            self._write(chunk)
            written += memoryview(chunk).nbytes
        if written != size:
            raise RuntimeError(f"zip record {name!r}: {written} bytes written, {size} announced")
        if size:
            descriptor = _DESCRIPTOR64 if big_size or big_offset else _DESCRIPTOR32
            self._write(descriptor.pack(b"PK\x07\x08", crc, size, size))
        self.entries.append((name, flags, crc, size, offset))

    def close(self):
        """Write the central directory and the end records."""
        directory = self.pos
        for name, flags, crc, size, offset in self.entries:
            big_size, big_offset = size >= ZIP64_THRESHOLD, offset >= ZIP64_THRESHOLD
            fields = (struct.pack("<QQ", size, size) if big_size else b"") + \
                (struct.pack("<Q", offset) if big_offset else b"")
            extra = struct.pack("<HH", _ZIP64_ID, len(fields)) + fields if fields else b""
            size32 = MAX32 if big_size else size
            self._write(_CENTRAL.pack(
                b"PK\x01\x02", 0, 0, 45 if fields else 0, 0, flags, 0, 0, 0, crc, size32, size32,
                len(name), len(extra), 0, 0, 0, 0, MAX32 if big_offset else offset))
            self._write(name + extra)
        directory_size = self.pos - directory
        end64 = self.pos
        count = len(self.entries)
        self._write(_END64.pack(b"PK\x06\x06", _END64.size - 12, 0x031E, 45, 0, 0, count, count,
                                directory_size, directory))
        self._write(_END64_LOCATOR.pack(b"PK\x06\x07", 0, end64, 1))
        fits = max(directory_size, directory) < ZIP64_THRESHOLD and count < 0xFFFF
        self._write(_END.pack(b"PK\x05\x06", 0, 0, count if fits else 0xFFFF,
                              count if fits else 0xFFFF, directory_size if fits else MAX32,
                              directory if fits else MAX32, 0))
