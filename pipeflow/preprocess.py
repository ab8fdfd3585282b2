"""``pipeflow preprocess``: ImageFolder, CIFAR, MNIST or a tar of images -> Arrow shards
(the format of pipeflow.shards, read by pipeflow.datasets.ArrowShards).

    pipeflow preprocess SOURCE OUTPUT [--max-side 512] [--quality 90] [--shard-size 256MB]
                        [--num-shards N --shard-index I] [--skip-bad] [--workers N]
    pipeflow preprocess --merge OUTPUT

The shards are planned before any image is read: the sorted input list (class, then path;
CIFAR and MNIST in their files' order) is cut greedily into shards of about --shard-size
bytes of *source* data (file sizes; raw pixel bytes for CIFAR/MNIST), so which image goes
to which shard depends only on that list and the options. With --num-shards N
--shard-index I (an array job's task id) a run writes shards I, I+N, I+2N, ... and its
own partial manifest; the last part to finish (or --merge) writes manifest.json.

Images are decoded in full (a corrupt or truncated file fails there) by a pool of worker
processes. A JPEG or PNG whose longer side is within --max-side is stored as it is;
larger ones are resized to --max-side (a JPEG source to JPEG at --quality, a PNG to PNG),
and other formats become PNG. CIFAR and MNIST pixels are stored as PNG.

A run that is interrupted (even by kill -9) keeps its finished shards: a rerun with the
same arguments skips them and writes the rest; a shard is written as <name>.part and
renamed when complete, so no partial shard ever sits under a final name.
"""
import argparse
import collections
import glob
import gzip
import hashlib
import io
import json
import math
import multiprocessing
import os
import pickle
import shutil
import signal
import struct
import sys
import tarfile
import tempfile
import time
import warnings

import numpy as np

from . import shards
from .progress import Progress

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
KINDS = ("auto", "imagefolder", "tar", "cifar", "mnist")
CHUNK_ITEMS, CHUNK_BYTES = 256, 4 * 2**20  # a task for a worker: up to this many / so big

# An item: `key` its path in the source (the `path` column, and how errors name it),
# `label`, `size` (source bytes, for planning) and `ref`, what a worker needs to read it:
# ("file", path) | ("tar", tar_path, offset, size) | ("pixels", raw bytes, shape).
Item = collections.namedtuple("Item", "key label size ref")


class PreprocessError(Exception):
    """A problem with the input or the output folder, reported without a traceback."""


class BadImagesError(PreprocessError):
    """Unreadable images found without --skip-bad: `bad` lists (path, error)."""

    def __init__(self, bad, shard):
        self.bad, self.shard = bad, shard
        lines = "\n".join(f"  {path}: {error}" for path, error in bad)
        super().__init__(
            f"{len(bad)} corrupt or unreadable image{'s' if len(bad) != 1 else ''} (while "
            f"writing {shard}):\n{lines}\nThe run stopped; the shards it finished are kept. "
            f"Rerun with --skip-bad to leave such images out (they are listed and counted in "
            f"the manifest), or fix or remove them and rerun.")


# --- sources ------------------------------------------------------------------------------
class Source:
    """What to convert: classes, items in their planned order, and how to name an item."""

    def __init__(self, kind, location, classes, items, image_mode="RGB", cleanup=None):
        self.kind, self.location, self.classes = kind, location, list(classes)
        self.items, self.image_mode = items, image_mode
        self._cleanup = cleanup

    def display(self, key):
        """An item's path as a person looks for it."""
        if self.kind == "imagefolder":
            return os.path.join(self.location, key)
        return f"{self.location}:{key}"

    def close(self):
        if self._cleanup is not None:
            self._cleanup()
            self._cleanup = None


def scan_source(path, kind="auto", split="train", prefix=None, workdir=None):
    """A Source for `path`: an ImageFolder (<root>/<class>/**/<image>), a tar of one
    (optionally compressed; decompressed into `workdir` first, so that workers can read
    members at their offsets), CIFAR-10/100 (the python batches, as a folder or the
    .tar.gz) or MNIST (the idx files, optionally gzipped)."""
    path = os.path.abspath(os.fspath(path))
    if not os.path.exists(path):
        raise PreprocessError(f"no such file or folder: {path}")
    if kind == "auto":
        kind = _detect(path)
    if kind == "imagefolder":
        return _scan_imagefolder(path)
    if kind == "tar":
        return _scan_tar(path, prefix, workdir)
    if kind == "cifar":
        return _scan_cifar(path, split)
    if kind == "mnist":
        return _scan_mnist(path, split)
    raise PreprocessError(f"unknown source format {kind!r}; one of {', '.join(KINDS)}")


def _detect(path):
    if os.path.isfile(path):
        if not tarfile.is_tarfile(path):
            raise PreprocessError(f"{path} is neither a folder nor a tar archive")
        if _cifar_archive_members(path):
            return "cifar"
        return "tar"
    if _cifar_files(path, "train", quiet=True) or _cifar_files(path, "test", quiet=True):
        return "cifar"
    if _mnist_files(path, "train", quiet=True) or _mnist_files(path, "test", quiet=True):
        return "mnist"
    return "imagefolder"


def _is_image_name(name):
    return name.lower().endswith(IMG_EXTENSIONS) and not os.path.basename(name).startswith(".")


def _scan_imagefolder(root):
    classes = sorted(e.name for e in os.scandir(root)
                     if e.is_dir() and not e.name.startswith("."))
    if not classes:
        raise PreprocessError(f"no class folders in {root}: an ImageFolder is "
                              f"<root>/<class>/<image> (a flat folder of images has no labels)")
    items = []
    for label, name in enumerate(classes):
        class_dir = os.path.join(root, name)
        for dirpath, dirnames, filenames in os.walk(class_dir, followlinks=True):
            dirnames.sort()
            for fname in sorted(filenames):
                if _is_image_name(fname):
                    full = os.path.join(dirpath, fname)
                    key = os.path.relpath(full, root).replace(os.sep, "/")
                    try:
                        size = os.path.getsize(full)
                    except OSError:
                        size = 0  # unreadable: reported as a bad image when read
                    items.append(Item(key, label, size, ("file", full)))
    if not items:
        raise PreprocessError(f"no images ({', '.join(IMG_EXTENSIONS)}) in the class folders "
                              f"of {root}")
    items.sort(key=lambda it: (it.label, it.key))
    return Source("imagefolder", root, classes, items)


def _decompressed(path, workdir):
    """`path` itself if it is an uncompressed tar, else a decompressed copy in `workdir`
    (and a function that removes it)."""
    with open(path, "rb") as f:
        head = f.read(6)
    if head.startswith(b"\x1f\x8b"):
        opener = gzip.open
    elif head.startswith(b"BZh"):
        import bz2
        opener = bz2.open
    elif head.startswith(b"\xfd7zXZ\x00"):
        import lzma
        opener = lzma.open
    else:
        return path, None
    owned = workdir is None
    workdir = tempfile.mkdtemp(prefix="pipeflow-tar-") if owned else workdir
    os.makedirs(workdir, exist_ok=True)
    target = os.path.join(workdir, f"{os.getpid()}-{os.path.basename(path)}.tar")
    with opener(path, "rb") as src, open(target, "wb") as dst:
        shutil.copyfileobj(src, dst, 4 * 2**20)

    def cleanup():
        try:
            os.unlink(target)
            if owned:
                os.rmdir(workdir)
        except OSError:
            pass
    return target, cleanup


def _member_name(name):
    while name.startswith("./"):
        name = name[2:]
    return name.lstrip("/")


def _scan_tar(path, prefix, workdir):
    data_path, cleanup = _decompressed(path, workdir)
    try:
        with tarfile.open(data_path, "r:") as tar:
            members = [(_member_name(m.name), m.offset_data, m.size) for m in tar.getmembers()
                       if m.isfile() and not m.issparse() and _is_image_name(m.name)]
        if prefix:
            prefix = prefix.strip("/") + "/"
            members = [m for m in members if m[0].startswith(prefix)]
        if not members:
            raise PreprocessError(f"no images ({', '.join(IMG_EXTENSIONS)}) in {path}"
                                  + (f" under {prefix}" if prefix else ""))
        dirs = [m[0].split("/")[:-1] for m in members]
        if prefix:
            base = prefix.strip("/").split("/")
        else:  # the longest common folder; classes are the folders right under it
            base = dirs[0]
            for d in dirs[1:]:
                n = 0
                while n < min(len(base), len(d)) and base[n] == d[n]:
                    n += 1
                base = base[:n]
            if all(len(d) == len(base) for d in dirs):  # one class: its folder is the class
                base = base[:-1]
        depth = len(base)
        for (name, _, _), d in zip(members, dirs):
            if len(d) <= depth:
                raise PreprocessError(f"{path}:{name} is not in a class folder (expected "
                                      f"{'/'.join(base + ['<class>', '<image>'])})")
        classes = sorted({d[depth] for d in dirs})
        index = {c: i for i, c in enumerate(classes)}
        items = [Item(name, index[d[depth]], size, ("tar", data_path, offset, size))
                 for (name, offset, size), d in zip(members, dirs)]
        items.sort(key=lambda it: (it.label, it.key))
    except BaseException:
        if cleanup:
            cleanup()
        raise
    return Source("tar", path, classes, items, cleanup=cleanup)


def _cifar_files(root, split, quiet=False):
    """(train/test files, meta file, labels key, names key) of a CIFAR python folder."""
    for folder in (root, os.path.join(root, "cifar-10-batches-py"),
                   os.path.join(root, "cifar-100-python")):
        if os.path.exists(os.path.join(folder, "batches.meta")):  # CIFAR-10
            names = ([f"data_batch_{i}" for i in range(1, 6)] if split == "train"
                     else ["test_batch"])
            return ([os.path.join(folder, n) for n in names], os.path.join(folder, "batches.meta"),
                    b"labels", b"label_names")
        if os.path.exists(os.path.join(folder, "meta")) and \
                os.path.exists(os.path.join(folder, "train")):  # CIFAR-100
            return ([os.path.join(folder, split)], os.path.join(folder, "meta"),
                    b"fine_labels", b"fine_label_names")
    if quiet:
        return None
    raise PreprocessError(f"no CIFAR python batches in {root} (batches.meta + data_batch_* "
                          f"for CIFAR-10, meta + train/test for CIFAR-100)")


def _cifar_archive_members(path):
    """Whether a tar holds CIFAR's python batches (looks at its first members only: the
    official archives hold a few files, a tar of images shows an image early)."""
    try:
        with tarfile.open(path, "r:*") as tar:
            for n, member in enumerate(tar):
                name = _member_name(member.name)
                if _is_image_name(name) or n > 50:
                    return False
                if name.split("/")[0] in ("cifar-10-batches-py", "cifar-100-python") \
                        and os.path.basename(name) in ("batches.meta", "meta"):
                    return True
    except (tarfile.TarError, OSError, EOFError):
        return False
    return False


def _scan_cifar(path, split):
    if os.path.isfile(path):  # the archive as downloaded: read the batches from it
        with tempfile.TemporaryDirectory(prefix="pipeflow-cifar-") as tmp:
            with tarfile.open(path, "r:*") as tar:
                members = [m for m in tar if m.isfile() and "/" in _member_name(m.name)]
                for m in members:
                    name = os.path.basename(m.name)
                    with tar.extractfile(m) as src, open(os.path.join(tmp, name), "wb") as dst:
                        shutil.copyfileobj(src, dst)
            source = _scan_cifar(tmp, split)
        source.location = path
        return source
    files, meta, labels_key, names_key = _cifar_files(path, split)
    with open(meta, "rb") as f:
        classes = [n.decode() for n in pickle.load(f, encoding="bytes")[names_key]]
    items = []
    for file in files:
        with open(file, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        pixels = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        pixels = pixels.transpose(0, 2, 3, 1)
        name = os.path.basename(file)
        for i, (image, label) in enumerate(zip(pixels, batch[labels_key])):
            items.append(Item(f"{name}#{i:05d}", int(label), image.nbytes,
                              ("pixels", image.tobytes(), image.shape)))
    return Source("cifar", path, classes, items)


def _mnist_files(root, split, quiet=False):
    stem = {"train": "train", "test": "t10k"}.get(split, split)
    for folder in (root, os.path.join(root, "raw"), os.path.join(root, "MNIST", "raw")):
        images = sorted(glob.glob(os.path.join(folder, f"{stem}-images[-.]idx3-ubyte*")))
        labels = sorted(glob.glob(os.path.join(folder, f"{stem}-labels[-.]idx1-ubyte*")))
        if images and labels:
            return images[0], labels[0]
    if quiet:
        return None
    raise PreprocessError(f"no MNIST idx files for split {split!r} in {root} (expected "
                          f"{stem}-images-idx3-ubyte[.gz] and {stem}-labels-idx1-ubyte[.gz])")


def _read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] != 0x08:
        raise PreprocessError(f"{path} is not an idx file of unsigned bytes")
    ndim = data[3]
    dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    array = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
    if array.size != math.prod(dims):
        raise PreprocessError(f"{path} is truncated: {array.size} bytes for shape {dims}")
    return array.reshape(dims)


def _scan_mnist(path, split):
    images_file, labels_file = _mnist_files(path, split)
    images, labels = _read_idx(images_file), _read_idx(labels_file)
    if len(images) != len(labels):
        raise PreprocessError(f"{images_file} has {len(images)} images but {labels_file} has "
                              f"{len(labels)} labels")
    items = [Item(f"{split}#{i:05d}", int(label), image.nbytes,
                  ("pixels", image.tobytes(), image.shape))
             for i, (image, label) in enumerate(zip(images, labels))]
    return Source("mnist", path, [str(i) for i in range(10)], items, image_mode="L")


def select(source, classes=None, per_class=None, limit=None):
    """Only the named classes (relabelled by their order in the sorted list), the first
    `per_class` items of each class, then the first `limit` items."""
    items, names = source.items, source.classes
    if classes:
        unknown = sorted(set(classes) - set(names))
        if unknown:
            raise PreprocessError(f"no class {', '.join(map(repr, unknown))} in "
                                  f"{source.location} (its classes: {', '.join(names)})")
        keep = sorted(set(classes), key=names.index)
        relabel = {names.index(c): i for i, c in enumerate(keep)}
        items = [it._replace(label=relabel[it.label]) for it in items if it.label in relabel]
        names = keep
    if per_class is not None:
        seen = collections.Counter()
        kept = []
        for it in items:
            if seen[it.label] < per_class:
                seen[it.label] += 1
                kept.append(it)
        items = kept
    if limit is not None:
        items = items[:limit]
    source.items, source.classes = items, names
    return source


# --- reading and encoding one image (in the worker processes) ---------------------------------
_tar_files = {}


def _read(ref):
    if ref[0] == "file":
        with open(ref[1], "rb") as f:
            return f.read()
    if ref[0] == "tar":
        _, path, offset, size = ref
        fd = _tar_files.get(path)
        if fd is None:
            fd = _tar_files[path] = os.open(path, os.O_RDONLY)
        data = os.pread(fd, size, offset)
        if len(data) != size:
            raise OSError(f"the archive ends inside this member ({len(data)} of {size} bytes)")
        return data
    raise ValueError(f"unknown item reference {ref[0]!r}")


def read_bytes(ref):
    """The encoded bytes of an item (for pixel sources, a PNG of them)."""
    if ref[0] == "pixels":
        return _save(_pixels_image(ref), "PNG", 0)
    return _read(ref)


def _pixels_image(ref):
    from PIL import Image
    _, raw, shape = ref
    return Image.fromarray(np.frombuffer(raw, np.uint8).reshape(shape))


def _bounded(width, height, max_side):
    """The size that brings the longer side to max_side, or None if it is within it."""
    if not max_side or max(width, height) <= max_side:
        return None
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _save(image, fmt, quality):
    out = io.BytesIO()
    if fmt == "JPEG":
        image.save(out, "JPEG", quality=quality)
    else:
        image.save(out, "PNG")
    return out.getvalue()


_PNG_MODES = ("1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16")


def encode(ref, max_side=None, quality=90):
    """(bytes to store, width, height, None), or (None, 0, 0, error) for an image that can't
    be read or decoded in full."""
    from PIL import Image
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if ref[0] == "pixels":
                image, fmt, data = _pixels_image(ref), "PNG", None
            else:
                data = _read(ref)
                image = Image.open(io.BytesIO(data))
                fmt = image.format
            target = _bounded(image.width, image.height, max_side)
            if target is None:
                image.load()  # decode it all: a corrupt or truncated file fails here
                if data is not None and fmt in ("JPEG", "MPO", "PNG"):
                    return data, image.width, image.height, None
                if image.mode not in _PNG_MODES:
                    image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
                return _save(image, "PNG", 0), image.width, image.height, None
            if fmt in ("JPEG", "MPO"):
                image.draft(image.mode, target)  # DCT scaling: decode at >= the target size
            image.load()
            if image.mode in ("1", "P"):
                image = image.convert("RGBA" if image.mode == "P" and
                                      "transparency" in image.info else
                                      "L" if image.mode == "1" else "RGB")
            elif image.mode not in ("L", "LA", "RGB", "RGBA", "CMYK", "I", "F"):
                image = image.convert("RGB")
            image = image.resize(target, Image.Resampling.LANCZOS)
            if fmt != "PNG" and image.mode in ("L", "RGB", "CMYK"):
                return _save(image, "JPEG", quality), image.width, image.height, None
            if image.mode not in _PNG_MODES:
                image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
            return _save(image, "PNG", 0), image.width, image.height, None
    except Exception as e:  # any failure to read or decode makes the image a bad one
        if isinstance(e, Image.UnidentifiedImageError):
            return None, 0, 0, "UnidentifiedImageError: not an image format PIL can read"
        return None, 0, 0, f"{type(e).__name__}: {e}"


def _encode_chunk(refs, max_side, quality):
    return [encode(ref, max_side, quality) for ref in refs]


def _init_worker():
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the main process
    try:  # die with the main process, even when it is killed with SIGKILL (Linux)
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class _Inline:
    """workers=0: the pool's interface, run in this process."""

    class _Done:
        def __init__(self, value):
            self.value = value

        def get(self):
            return self.value

    def apply_async(self, fn, args):
        return self._Done(fn(*args))

    def terminate(self):
        pass

    def join(self):
        pass


class _ImageProgress(Progress):
    def _line(self, now):
        return super()._line(now).replace(" it/s]", " images/s]")


class _Quiet:
    def update(self, n=1, **postfix):
        pass

    def close(self):
        pass


# --- planning -------------------------------------------------------------------------------
def plan_shards(sizes, shard_size):
    """[(start, end)]: consecutive items, each shard closed before it would pass shard_size
    bytes (a shard has at least one item)."""
    bounds, start, total = [], 0, 0
    for i, size in enumerate(sizes):
        if i > start and total + size > shard_size:
            bounds.append((start, i))
            start, total = i, 0
        total += size
    if start < len(sizes):
        bounds.append((start, len(sizes)))
    return bounds


def plan_fingerprint(source, options):
    digest = hashlib.sha256(json.dumps(
        [shards.FORMAT, shards.VERSION, source.kind, source.classes, source.image_mode,
         options], sort_keys=True).encode())
    for it in source.items:
        digest.update(f"\n{it.key}\t{it.label}\t{it.size}".encode())
    return digest.hexdigest()


def _prepare_output(out, fingerprint, overwrite):
    """Check that `out` is empty or holds (part of) this plan's output; with `overwrite`
    remove another plan's output (only files of this format)."""
    progress_dir = os.path.join(out, shards.PROGRESS)
    plan_file = os.path.join(progress_dir, "plan.json")
    existing = None
    if os.path.exists(plan_file):
        existing = shards.read_json(plan_file).get("plan")
    elif os.path.exists(os.path.join(out, shards.MANIFEST)):
        existing = shards.read_json(os.path.join(out, shards.MANIFEST)).get("plan")
    if existing is not None and existing != fingerprint:
        if not overwrite:
            raise PreprocessError(
                f"{out} already holds shards made from other input or options (plan "
                f"{existing[:12]}, this run's is {fingerprint[:12]}): choose a new output "
                f"folder, or pass --overwrite to replace them")
        for name in os.listdir(out):
            if (name.startswith("shard-") and (name.endswith(".arrow")
                                               or name.endswith(".arrow.part"))) \
                    or name == shards.MANIFEST or shards.PART_MANIFEST_RE.match(name):
                os.unlink(os.path.join(out, name))
        for name in os.listdir(progress_dir) if os.path.isdir(progress_dir) else ():
            if name.endswith(".json"):  # the records (a tmp-* folder may hold our source)
                os.unlink(os.path.join(progress_dir, name))
    os.makedirs(progress_dir, exist_ok=True)
    if existing != fingerprint or not os.path.exists(plan_file):
        shards.write_json(plan_file, {"plan": fingerprint})


def _finished(out, record_path, fingerprint):
    """The record of a shard finished by an earlier run of this plan, or None."""
    try:
        record = shards.read_json(record_path)
    except (OSError, ValueError):
        return None
    if record.get("plan") != fingerprint:
        return None
    try:
        if os.path.getsize(os.path.join(out, record["file"])) != record["bytes"]:
            return None
    except OSError:
        return None
    return record


# --- the run --------------------------------------------------------------------------------
def preprocess(source, out, *, max_side=None, quality=90, shard_size=shards.DEFAULT_SHARD_SIZE,
               num_shards=1, shard_index=0, skip_bad=False, workers=None, extras=True,
               overwrite=False, progress=True, log=None):
    """Write this part's shards of `source` (a Source) into `out`, then its manifest.
    Returns a summary dict; raises BadImagesError (without skip_bad) or PreprocessError."""
    log = sys.stderr if log is None else log
    if not 0 <= shard_index < num_shards:
        raise PreprocessError(f"--shard-index must be in 0..{num_shards - 1}, got {shard_index}")
    if max_side is not None and max_side < 1:
        raise PreprocessError(f"--max-side must be positive, got {max_side}")
    if not 1 <= quality <= 100:
        raise PreprocessError(f"--quality must be in 1..100, got {quality}")
    out = os.path.abspath(os.fspath(out))
    os.makedirs(out, exist_ok=True)
    items = source.items
    if not items:
        raise PreprocessError(f"no images to write from {source.location}")
    options = {"max_side": max_side, "quality": quality, "shard_size": shard_size,
               "extras": extras}
    fingerprint = plan_fingerprint(source, options)
    bounds = plan_shards([it.size for it in items], shard_size)
    total = len(bounds)
    arrow_schema = shards.schema(extras)
    header = {"plan": fingerprint, "total_shards": total, "classes": source.classes,
              "image_mode": source.image_mode, "schema": shards.schema_json(arrow_schema),
              "source": {"kind": source.kind, "location": source.location,
                         "images": len(items)},
              "options": options}
    _prepare_output(out, fingerprint, overwrite)
    progress_dir = os.path.join(out, shards.PROGRESS)

    mine = list(range(shard_index, total, num_shards))
    entries, todo = [], []
    for j in mine:
        name = shards.shard_name(j, total)
        record = _finished(out, os.path.join(progress_dir, name + ".json"), fingerprint)
        if record is not None:
            entries.append(record)
        else:
            todo.append(j)
            try:
                os.unlink(os.path.join(out, name + ".part"))  # left by a killed run
            except FileNotFoundError:
                pass
    if entries:
        print(f"resuming: {len(entries)} of {len(mine)} shards already written", file=log)

    count = sum(bounds[j][1] - bounds[j][0] for j in todo)
    workers = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
               else os.cpu_count() or 1) if workers is None else workers
    start = time.perf_counter()
    written_bytes = 0
    if todo:
        bar = _ImageProgress(count, "preprocess", stream=log) if progress else _Quiet()
        try:
            def record_finished(entry):  # before the shard gets its final name
                entry["plan"] = fingerprint
                shards.write_json(os.path.join(progress_dir, entry["file"] + ".json"), entry)

            for entry in _write_shards(source, out, todo, bounds, total, arrow_schema,
                                       max_side, quality, skip_bad, workers, extras, bar,
                                       record_finished):
                entries.append(entry)
                written_bytes += entry["bytes"]
        finally:
            bar.close()
    seconds = time.perf_counter() - start

    entries = [{k: v for k, v in e.items() if k != "plan"} for e in entries]
    summary = {"out": out, "shards_total": total, "shards_mine": len(mine),
               "shards_written": len(todo), "shards_resumed": len(mine) - len(todo),
               "images": count, "bytes": written_bytes, "seconds": seconds,
               "images_per_s": count / seconds if seconds > 0 else float("inf"),
               "bad": [(source.display(b["path"]), b["error"]) for e in entries
                       for b in e["bad"]], "manifest": None}
    if num_shards == 1:
        manifest = shards.build_manifest(header, entries)
        shards.write_json(os.path.join(out, shards.MANIFEST), manifest)
        summary["manifest"] = manifest
    else:
        partial = {"format": shards.FORMAT, "version": shards.VERSION,
                   "part": {"index": shard_index, "count": num_shards}}
        partial.update(header)
        partial["shard_records"] = sorted(entries, key=lambda e: e["index"])
        shards.write_json(os.path.join(out, shards.part_manifest_name(shard_index, num_shards)),
                          partial)
        try:  # the last part to finish writes manifest.json
            summary["manifest"] = shards.merge(out)
        except shards.ManifestError as e:
            summary["waiting"] = str(e)
    return summary


def _tasks(items, todo, bounds):
    """(shard, start, end, last chunk of its shard) in order."""
    for j in todo:
        lo, hi = bounds[j]
        start, size = lo, 0
        for i in range(lo, hi):
            size += items[i].size
            if i + 1 - start >= CHUNK_ITEMS or size >= CHUNK_BYTES:
                yield j, start, i + 1, i + 1 == hi
                start, size = i + 1, 0
        if start < hi or lo == hi:
            yield j, start, hi, True


def _write_shards(source, out, todo, bounds, total, arrow_schema, max_side, quality, skip_bad,
                  workers, extras, bar, record):
    """Yield the manifest entry of each shard of `todo` as it is committed (`record(entry)`
    is called just before its file gets its final name)."""
    items = source.items
    if workers > 0:
        pool = multiprocessing.get_context().Pool(workers, initializer=_init_worker)
    else:
        pool = _Inline()
    tasks = _tasks(items, todo, bounds)
    window = collections.deque()
    limit = max(2, 4 * workers)

    def refill():
        while len(window) < limit:
            task = next(tasks, None)
            if task is None:
                return
            j, lo, hi, last = task
            refs = [it.ref for it in items[lo:hi]]
            window.append((task, pool.apply_async(_encode_chunk, (refs, max_side, quality))))

    writer, shard_bad = None, []
    try:
        refill()
        while window:
            (j, lo, hi, last), pending = window.popleft()
            results = pending.get()
            refill()
            if writer is None:
                writer = shards.ShardWriter(os.path.join(out, shards.shard_name(j, total)),
                                            arrow_schema)
                shard_bad = []
            for it, (data, width, height, error) in zip(items[lo:hi], results):
                if error is not None:
                    shard_bad.append({"path": it.key, "error": error})
                    continue
                row = {"image": data, "label": it.label}
                if extras:
                    row.update(path=it.key, width=width, height=height)
                writer.write(row)
            bar.update(hi - lo)
            if last:
                if shard_bad and not skip_bad:
                    raise BadImagesError([(source.display(b["path"]), b["error"])
                                          for b in shard_bad], shards.shard_name(j, total))
                def finished(entry, j=j, bad=shard_bad):
                    entry.update(index=j, bad=bad)
                    record(entry)

                entry = writer.commit(finished)
                writer = None
                yield entry
    finally:
        if writer is not None:
            writer.abort()
        pool.terminate()
        pool.join()


# --- the command ----------------------------------------------------------------------------
def add_arguments(parser):
    parser.add_argument("source", nargs="?",
                        help="an ImageFolder (<root>/<class>/<image>), a tar of one (.tar, "
                             ".tar.gz, ...), a CIFAR-10/100 python folder or archive, or an "
                             "MNIST folder of idx files")
    parser.add_argument("output", nargs="?", help="the folder to write the shards into")
    parser.add_argument("--merge", metavar="OUTPUT",
                        help="combine the partial manifests of a split run in OUTPUT into "
                             "manifest.json, and exit")
    parser.add_argument("--format", choices=KINDS, default="auto", help="the source's format")
    parser.add_argument("--split", default="train", help="CIFAR/MNIST split: train or test")
    parser.add_argument("--prefix", help="tar: only members under this folder (e.g. train/); "
                                         "classes are the folders right under it")
    parser.add_argument("--classes", help="comma-separated: only these classes (relabelled "
                                          "0..n-1 in sorted order)")
    parser.add_argument("--per-class", type=int, help="only the first N images of each class")
    parser.add_argument("--limit", type=int, help="only the first N images (after the above)")
    parser.add_argument("--max-side", type=int,
                        help="re-encode images whose longer side exceeds N pixels, resized "
                             "to N (default: store every JPEG/PNG as it is)")
    parser.add_argument("--quality", type=int, default=90,
                        help="JPEG quality of re-encoded images (default 90)")
    parser.add_argument("--shard-size", type=shards.parse_size, default=shards.DEFAULT_SHARD_SIZE,
                        help="about this much source data per shard, e.g. 256MB (the default), "
                             "64MiB, 1G")
    parser.add_argument("--num-shards", type=int, default=1,
                        help="split the work into N parts (e.g. the tasks of an array job)")
    parser.add_argument("--shard-index", type=int, default=0,
                        help="the part this run writes, 0..N-1 (e.g. $SLURM_ARRAY_TASK_ID): "
                             "shards I, I+N, I+2N, ...")
    parser.add_argument("--skip-bad", action="store_true",
                        help="leave out corrupt or unreadable images (listed, and counted in "
                             "the manifest) instead of stopping")
    parser.add_argument("--workers", type=int, default=None,
                        help="worker processes (default: one per CPU; 0: in this process)")
    parser.add_argument("--no-extras", dest="extras", action="store_false",
                        help="leave out the path, width and height columns")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace shards of another input or options in OUTPUT")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="no progress bar")


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="pipeflow preprocess",
        description="ImageFolder, CIFAR, MNIST or a tar of images -> Arrow shards, read by "
                    "pipeflow.datasets.ArrowShards.",
        epilog="\n\n".join(__doc__.split("\n\n")[2:]),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        if args.merge:
            if args.source or args.output:
                parser.error("--merge takes only the output folder")
            manifest = shards.merge(args.merge)
            print(f"{args.merge}: {manifest['num_rows']} images in {len(manifest['shards'])} "
                  f"shards, {manifest['skipped']} skipped")
            return 0
        if not args.source or not args.output:
            parser.error("the source and the output folder are required")
        if args.num_shards < 1:
            parser.error("--num-shards must be at least 1")
        out = os.path.abspath(args.output)
        workdir = os.path.join(out, shards.PROGRESS, f"tmp-{args.shard_index}")
        shutil.rmtree(workdir, ignore_errors=True)  # a decompressed tar left by a killed run
        source = scan_source(args.source, args.format, args.split, args.prefix, workdir)
        try:
            classes = [c for c in args.classes.split(",") if c] if args.classes else None
            select(source, classes, args.per_class, args.limit)
            summary = preprocess(source, out, max_side=args.max_side, quality=args.quality,
                                 shard_size=args.shard_size, num_shards=args.num_shards,
                                 shard_index=args.shard_index, skip_bad=args.skip_bad,
                                 workers=args.workers, extras=args.extras,
                                 overwrite=args.overwrite, progress=args.progress)
        finally:
            source.close()
            try:
                os.rmdir(workdir)
            except OSError:
                pass
    except (PreprocessError, shards.ManifestError, shards.ShardError) as e:
        print(f"pipeflow preprocess: error: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    _report(summary)
    return 0


def _report(summary):
    bad = summary["bad"]
    if bad:
        print(f"skipped {len(bad)} corrupt or unreadable image{'s' if len(bad) != 1 else ''}:",
              file=sys.stderr)
        for path, error in bad:
            print(f"  {path}: {error}", file=sys.stderr)
    s = summary
    print(f"{s['out']}: wrote {s['shards_written']} of {s['shards_mine']} shards "
          f"({s['shards_resumed']} already there; {s['shards_total']} in the dataset), "
          f"{s['images']} images, {s['bytes'] / 2**20:.1f} MiB in {s['seconds']:.2f} s: "
          f"{s['images_per_s']:.0f} images/s")
    if s["manifest"] is not None:
        m = s["manifest"]
        print(f"manifest.json: {m['num_rows']} images in {len(m['shards'])} shards, "
              f"{len(m['classes'])} classes, {m['skipped']} skipped")
    else:
        print(f"partial manifest written; {s.get('waiting', '')}")


if __name__ == "__main__":
    sys.exit(main())
