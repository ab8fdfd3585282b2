"""ArrowShards: a dataset in the pipeflow Arrow shard format (see pipeflow.shards), written by
``pipeflow preprocess``.

Every shard is memory-mapped, so the encoded images stay in the page cache, shared by all
the DataLoader's worker processes, instead of living in each worker as Python objects
whose reference counts turn shared pages into private copies (PyTorch issue 13246). The
dataset itself holds a handful of objects per record batch and NumPy arrays of offsets
and labels, whatever its size.
"""
import io
import os

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from .. import shards
from ..data import Dataset
from ..transforms.image import decode_rgb
from ..data import worker as _worker


class ArrowShards(Dataset):
    """Samples ``(image, label)``: the image a PIL Image decoded from the stored bytes
    (converted to `mode`: "auto" is the manifest's image_mode, "RGB" for colour datasets,
    "L" for MNIST; None keeps the decoded mode), the label an int; `transform` and
    `target_transform` apply per sample, as in torchvision. `loader(data: bytes)` replaces
    the decoding (e.g. to decode at a reduced size, or to keep the bytes).

    `verify`: True checks every shard's size and sha256 against the manifest when the
    dataset is opened (hashing reads all of it: about a second per GB); "fast" checks
    sizes only (a truncated shard); False checks nothing beyond what opening needs. A
    shard that fails raises shards.ShardError naming it. `verify()` hashes on demand.

    ``__getitems__(indices)`` (used by the DataLoader's workers) locates a whole batch with
    one vectorised search and reads each image straight from the mapped pages.
    """

    def __init__(self, root, transform=None, target_transform=None, verify=True, mode="auto",
                 loader=None):
        if verify not in (True, False, "fast"):
            raise ValueError(f"verify must be True, False or 'fast', got {verify!r}")
        self.root = os.path.abspath(os.fspath(root))
        self.transform, self.target_transform, self.loader = transform, target_transform, loader
        self.manifest = shards.read_manifest(self.root)
        self.classes = list(self.manifest["classes"])
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        self.mode = self.manifest.get("image_mode", "RGB") if mode == "auto" else mode
        if verify:
            shards.verify(self.root, full=verify is True)
        self._open()
        self.targets = np.concatenate(
            [np.asarray(b.column(self._label_column).to_numpy(zero_copy_only=False),
                        dtype=np.int64) for b in self._batches]) if self._batches \
            else np.zeros(0, np.int64)

    # --- opening ----------------------------------------------------------------------------
    def _open(self):
        """Map every shard and index its record batches."""
        expected = [(f["name"], f["type"]) for f in self.manifest["schema"]]
        names = [name for name, _ in expected]
        if "image" not in names or "label" not in names:
            raise shards.ManifestError(f"the manifest in {self.root} has no image or label "
                                       f"column: {names}")
        image_column = names.index("image")
        self._maps, self._batches, self._offsets, self._data = [], [], [], []
        starts, total = [], 0
        for entry in self.manifest["shards"]:
            name = entry["file"]
            path = os.path.join(self.root, name)
            try:
                source = pa.memory_map(path, "r")
            except FileNotFoundError:
                raise shards.ShardError(name, f"is missing from {self.root}") from None
            try:
                reader = ipc.open_file(source)
                found = [(f.name, str(f.type)) for f in reader.schema]
                if found != expected:
                    raise shards.ShardError(name, f"has columns {found}, the manifest says "
                                                  f"{expected}")
                rows = 0
                for b in range(reader.num_record_batches):
                    batch = reader.get_batch(b)
                    images = batch.column(image_column)
                    offsets = np.frombuffer(images.buffers()[1], dtype=np.int32,
                                            count=images.offset + len(images) + 1,
                                            )[images.offset:]
                    data = images.buffers()[2]
                    self._batches.append(batch)
                    self._offsets.append(offsets)
                    self._data.append(np.frombuffer(data, np.uint8) if data is not None
                                      else np.zeros(0, np.uint8))
                    starts.append(total + rows)
                    rows += len(batch)
            except (pa.ArrowException, OSError, ValueError) as e:
                raise shards.ShardError(name, f"is not a readable Arrow file ({e}); "
                                              f"{shards.REPAIR_HINT}") from e
            if rows != entry["rows"]:
                raise shards.ShardError(name, f"has {rows} rows, the manifest says "
                                              f"{entry['rows']} ({shards.REPAIR_HINT})")
            self._maps.append(source)
            total += rows
        self._starts = np.asarray(starts, dtype=np.int64)
        self._length = total
        self._label_column = names.index("label")
        self._columns = names

    def __getstate__(self):  # to a spawned worker: the mappings are made again there
        state = dict(self.__dict__)
        for key in ("_maps", "_batches", "_offsets", "_data"):
            state[key] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        for entry in self.manifest["shards"]:
            shards.check_shard(self.root, entry)  # sizes: cheap, finds a truncation
        self._open()

    # --- reading ----------------------------------------------------------------------------
    def __len__(self):
        return self._length

    def _locate(self, indices):
        """(record batch, row) arrays for global indices (negative ones count from the end)."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = self._length
        bad = (idx < -n) | (idx >= n)
        if bad.any():
            raise IndexError(f"index {int(idx[bad][0])} is out of range for a dataset of "
                             f"{n} samples")
        idx = np.where(idx < 0, idx + n, idx)
        batch = np.searchsorted(self._starts, idx, side="right") - 1
        return batch, idx - self._starts[batch]

    def _bytes(self, batch, row):
        offsets = self._offsets[batch]
        return self._data[batch][offsets[row]:offsets[row + 1]].tobytes()

    def read_bytes(self, indices):
        """The stored (encoded) bytes of the images at `indices`."""
        batches, rows = self._locate(indices)
        return [self._bytes(b, r) for b, r in zip(batches.tolist(), rows.tolist())]

    def _decode(self, data):
        if self.loader is not None:
            return self.loader(data)
        if self.mode == "RGB":
            return decode_rgb(data)
        from PIL import Image
        image = Image.open(io.BytesIO(data))
        image.load()
        if self.mode is not None and image.mode != self.mode:
            image = image.convert(self.mode)
        return image

    def _sample(self, batch, row, label):
        image = self._decode(self._bytes(batch, row))
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            label = self.target_transform(label)
        return image, label

    def __getitem__(self, index):
        if isinstance(index, slice):
            index = range(*index.indices(len(self)))
        if not isinstance(index, (int, np.integer)):
            return self.__getitems__(list(index))
        (batch,), (row,) = self._locate([index])
        return self._sample(int(batch), int(row), int(self.targets[index]))

    def __getitems__(self, indices):
        """The samples at `indices`, in that order. In a DataLoader each sample's transform
        draws from the random stream of its own index, as if fetched one by one."""
        batches, rows = self._locate(indices)
        labels = self.targets[np.asarray(indices, dtype=np.int64)].tolist()
        context = _worker.sample_context
        key = context.key
        samples = []
        try:
            for i, b, r, label in zip(indices, batches.tolist(), rows.tolist(), labels):
                if key is not None:
                    context.set(key[0], key[1], int(i))
                samples.append(self._sample(b, r, label))
        finally:
            if key is not None:
                context.set(*key)
        return samples

    def column(self, name):
        """A whole column (e.g. "path", "width", "height", "label"): a NumPy array for
        numbers, a list otherwise."""
        if name not in self._columns:
            raise KeyError(f"no column {name!r}; the columns are {self._columns}")
        arrays = [b.column(name) for b in self._batches]
        if not arrays:
            return []
        chunked = pa.chunked_array(arrays)
        if pa.types.is_integer(chunked.type) or pa.types.is_floating(chunked.type):
            return chunked.to_numpy()
        return chunked.to_pylist()

    def verify(self):
        """Hash every shard against the manifest; raises shards.ShardError naming a bad one."""
        shards.verify(self.root, full=True)

    def __repr__(self):
        return (f"ArrowShards({self.root!r}: {len(self)} samples, {len(self.classes)} classes, "
                f"{len(self.manifest['shards'])} shards)")
