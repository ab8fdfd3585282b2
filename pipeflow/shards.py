"""The pipeflow Arrow shard format: writing shards, and the manifest that describes them.

A dataset is a folder of Arrow IPC files (``shard-00000-of-00012.arrow``: the file format,
uncompressed, so a reader memory-maps it and worker processes share its pages) and a
``manifest.json``::

    {"format": "pipeflow-arrow-shards", "version": 1, "plan": "<sha256 of the input plan>",
     "classes": [...], "image_mode": "RGB", "num_rows": N, "skipped": k,
     "schema": [{"name": "image", "type": "binary"}, {"name": "label", "type": "int64"},
                {"name": "path", "type": "string"}, ...],
     "shards": [{"index": 0, "file": "shard-00000-of-00012.arrow", "rows": 2048,
                 "bytes": 268435456, "sha256": "..."}, ...],
     "bad": [{"path": "cat/0007.jpg", "error": "..."}], "source": {...}, "options": {...}}

Columns: ``image`` (the encoded bytes: the source's JPEG or PNG as stored, or re-encoded),
``label`` (int64, an index into ``classes``) and the optional extras ``path`` (the image's
path in its source), ``width`` and ``height`` (of the stored image).

Writing is crash-safe: a shard is written to ``<name>.part``, fsync'ed, recorded as
finished in ``.progress/<name>.json`` (rows, size, sha256, the images left out) and only
then renamed, so a final name always holds a complete, recorded shard, which a rerun
skips; the manifest is written atomically at the end. A
run split over machines (``--num-shards/--shard-index``) writes ``manifest.part-I-of-N.json``
per part, and `merge` combines them into ``manifest.json``.
"""
import concurrent.futures
import hashlib
import json
import os
import re

import pyarrow as pa
import pyarrow.ipc as ipc

from .io.atomic import atomic_write

FORMAT = "pipeflow-arrow-shards"
VERSION = 1
MANIFEST = "manifest.json"
PROGRESS = ".progress"            # per-shard records of finished shards, and the plan
DEFAULT_SHARD_SIZE = 256 * 2**20
ROWS_PER_BATCH = 1024             # a record batch ends at this many rows ...
BYTES_PER_BATCH = 32 * 2**20      # ... or this many image bytes, whichever comes first
PART_MANIFEST_RE = re.compile(r"^manifest\.part-(\d+)-of-(\d+)\.json$")


class ShardError(Exception):
    """A shard that is missing, truncated, altered or unreadable; `shard` is its file name."""

    def __init__(self, shard, message):
        super().__init__(f"shard {shard}: {message}")
        self.shard = shard


class ManifestError(Exception):
    """A missing, unreadable or inconsistent manifest."""


def schema(extras=True):
    fields = [pa.field("image", pa.binary()), pa.field("label", pa.int64())]
    if extras:
        fields += [pa.field("path", pa.string()), pa.field("width", pa.int32()),
                   pa.field("height", pa.int32())]
    return pa.schema(fields, metadata={b"pipeflow": f"{FORMAT}/{VERSION}".encode()})


def schema_json(arrow_schema):
    return [{"name": f.name, "type": str(f.type)} for f in arrow_schema]


def shard_name(index, total):
    return f"shard-{index:05d}-of-{total:05d}.arrow"


def part_manifest_name(part, parts):
    return f"manifest.part-{part:05d}-of-{parts:05d}.json"


def parse_size(text):
    """'256MB', '64 KiB', '1g', '4096' -> bytes (K/M/G/T are powers of 1024)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*", str(text), re.IGNORECASE)
    if not m:
        raise ValueError(f"not a size: {text!r} (expected e.g. 256MB, 64KiB or 1048576)")
    scale = 1024 ** " kmgt".index(m.group(2).lower() or " ")
    size = int(float(m.group(1)) * scale)
    if size <= 0:
        raise ValueError(f"size must be positive, got {text!r}")
    return size


# --- files ----------------------------------------------------------------------------------
def fsync_directory(directory):
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms that can't open directories
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def write_json(path, obj):
    """`obj` as JSON under `path`, atomically (never a half-written file)."""
    with atomic_write(path) as f:
        f.write((json.dumps(obj, indent=1) + "\n").encode())


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def file_sha256(path, chunk=8 * 2**20):
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(chunk)
        view = memoryview(buf)
        while True:
            n = f.readinto(buf)
            if not n:
                break
            digest.update(view[:n])
    return digest.hexdigest()


class ShardWriter:
    """Rows into one shard. Everything goes to ``<path>.part``; `commit` closes, fsyncs and
    renames it to `path`, so `path` never names a partial shard. Record batches end at
    ROWS_PER_BATCH rows or BYTES_PER_BATCH image bytes, so equal rows give equal files."""

    def __init__(self, path, arrow_schema):
        self.path, self.part = os.fspath(path), os.fspath(path) + ".part"
        self.schema = arrow_schema
        self.names = arrow_schema.names
        self.rows, self._pending, self._pending_bytes = 0, [], 0
        self._sink = pa.OSFile(self.part, "wb")
        self._writer = ipc.new_file(self._sink, arrow_schema)

    def write(self, row):
        """`row`: a dict with a value for every column."""
        self._pending.append(row)
        self._pending_bytes += len(row["image"])
        if len(self._pending) >= ROWS_PER_BATCH or self._pending_bytes >= BYTES_PER_BATCH:
            self._flush()

    def _flush(self):
        if not self._pending:
            return
        arrays = [pa.array([r[name] for r in self._pending], type=self.schema.field(name).type)
                  for name in self.names]
        self._writer.write_batch(pa.record_batch(arrays, schema=self.schema))
        self.rows += len(self._pending)
        self._pending, self._pending_bytes = [], 0

    def commit(self, before_rename=None):
        """Finish the shard under its final name; its manifest entry (less the index).
        `before_rename(entry)` runs once the data is on disk and before it gets its final
        name (to record the shard as finished: a final name then always has a record)."""
        self._flush()
        self._writer.close()
        self._sink.close()
        fd = os.open(self.part, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        digest = file_sha256(self.part)
        size = os.path.getsize(self.part)
        entry = {"file": os.path.basename(self.path), "rows": self.rows, "bytes": size,
                 "sha256": digest}
        if before_rename is not None:
            before_rename(entry)
        os.replace(self.part, self.path)
        fsync_directory(os.path.dirname(os.path.abspath(self.path)))
        return entry

    def abort(self):
        try:
            self._writer.close()
        except Exception:
            pass
        try:
            self._sink.close()
        except Exception:
            pass
        try:
            os.unlink(self.part)
        except FileNotFoundError:
            pass


# --- manifests --------------------------------------------------------------------------------
def read_manifest(root):
    """The dataset's manifest, checked for its format; a clear error when there is none (or
    only the parts of a split run, which `merge` combines)."""
    root = os.fspath(root)
    path = os.path.join(root, MANIFEST)
    if not os.path.exists(path):
        if not os.path.isdir(root):
            raise FileNotFoundError(f"no Arrow shard dataset at {root!r}: not a folder")
        parts = sorted(n for n in os.listdir(root) if PART_MANIFEST_RE.match(n))
        if parts:
            raise ManifestError(
                f"{root} has the partial manifests of a split run ({', '.join(parts)}) but no "
                f"{MANIFEST}: once every part has finished, combine them with "
                f"`pipeflow preprocess --merge {root}`")
        raise FileNotFoundError(f"no {MANIFEST} in {root!r}: not an Arrow shard dataset, or "
                                f"its preprocess run has not finished")
    try:
        manifest = read_json(path)
    except (OSError, ValueError) as e:
        raise ManifestError(f"{path} is not a readable manifest: {e}") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ManifestError(f"{path} is not a {FORMAT} manifest")
    if manifest.get("version") != VERSION:
        raise ManifestError(f"{path} has format version {manifest.get('version')}; this pipeflow "
                            f"reads version {VERSION}")
    if sum(s["rows"] for s in manifest["shards"]) != manifest["num_rows"]:
        raise ManifestError(f"{path} is inconsistent: its shards' rows do not add up to num_rows")
    return manifest


def check_shard(root, entry, full=False):
    """Raise ShardError naming the shard if its file is missing, has another size than the
    manifest says (truncated or grown) or, with `full`, another sha256 (altered)."""
    name = entry["file"]
    path = os.path.join(root, name)
    try:
        size = os.path.getsize(path)
    except FileNotFoundError:
        raise ShardError(name, f"is missing from {root}") from None
    if size != entry["bytes"]:
        what = "truncated" if size < entry["bytes"] else "altered (it has grown)"
        raise ShardError(name, f"is {what}: {size} bytes, the manifest says {entry['bytes']} "
                               f"({REPAIR_HINT})")
    if full:
        digest = file_sha256(path)
        if digest != entry["sha256"]:
            raise ShardError(name, f"is altered: sha256 {digest}, the manifest says "
                                   f"{entry['sha256']} ({REPAIR_HINT})")


REPAIR_HINT = "delete it and rerun preprocess with the same arguments to write it again"


def verify(root, full=True, threads=None):
    """Check every shard of the dataset at `root` against its manifest: sizes, and with
    `full` the sha256 of every file (hashed in parallel threads). Returns the manifest;
    raises ShardError naming the first bad shard."""
    root = os.fspath(root)
    manifest = read_manifest(root)
    entries = manifest["shards"]
    for entry in entries:  # sizes first: cheap, and finds a truncation without hashing
        check_shard(root, entry, full=False)
    if full and entries:
        threads = threads or min(len(entries), os.cpu_count() or 1, 8)
        with concurrent.futures.ThreadPoolExecutor(threads) as pool:
            for future in [pool.submit(check_shard, root, e, True) for e in entries]:
                future.result()
    return manifest


def build_manifest(header, entries):
    """A manifest from the plan-wide `header` and per-shard `entries` (each with its
    `index` and its `bad` images), the shards in index order."""
    entries = sorted(entries, key=lambda e: e["index"])
    bad = [b for e in entries for b in e.get("bad", ())]
    shards = [{k: e[k] for k in ("index", "file", "rows", "bytes", "sha256")} for e in entries]
    manifest = {"format": FORMAT, "version": VERSION}
    manifest.update(header)
    manifest.update(num_rows=sum(e["rows"] for e in entries), skipped=len(bad), shards=shards,
                    bad=bad)
    return manifest


def merge(root):
    """Combine the partial manifests of a split run (``manifest.part-I-of-N.json``) into
    ``manifest.json``. Every part must have finished, all from the same plan, together
    covering every shard once; each shard file must be there with its recorded size."""
    root = os.fspath(root)
    found = {}
    for name in os.listdir(root):
        m = PART_MANIFEST_RE.match(name)
        if m:
            found[(int(m.group(1)), int(m.group(2)))] = read_json(os.path.join(root, name))
    if not found:
        raise ManifestError(f"no partial manifests (manifest.part-*-of-*.json) in {root}")
    counts = {n for _, n in found}
    if len(counts) != 1:
        raise ManifestError(f"{root} holds partial manifests of runs split {sorted(counts)} "
                            f"ways; remove the ones of the old run")
    parts = counts.pop()
    missing = [i for i in range(parts) if (i, parts) not in found]
    if missing:
        raise ManifestError(
            f"{len(missing)} of {parts} parts have not finished: no "
            f"{', '.join(part_manifest_name(i, parts) for i in missing[:10])}"
            f"{' ...' if len(missing) > 10 else ''} in {root}")
    manifests = [found[(i, parts)] for i in range(parts)]
    plans = {m["plan"] for m in manifests}
    if len(plans) != 1:
        raise ManifestError(f"the partial manifests in {root} come from different inputs or "
                            f"options (plans {sorted(p[:12] for p in plans)})")
    total = manifests[0]["total_shards"]
    entries = [dict(e) for m in manifests for e in m["shard_records"]]
    indices = sorted(e["index"] for e in entries)
    if indices != list(range(total)):
        raise ManifestError(f"the partial manifests in {root} do not cover shards 0..{total - 1} "
                            f"exactly once")
    for e in entries:
        check_shard(root, e)
    header = {k: v for k, v in manifests[0].items()
              if k not in ("part", "shard_records", "format", "version")}
    manifest = build_manifest(header, entries)
    write_json(os.path.join(root, MANIFEST), manifest)
    return manifest
