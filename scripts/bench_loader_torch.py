"""The torch side of scripts/bench_loader.py: torch.utils.data over the same data, in the
idiomatic torch form. Imported only by the processes that time torch (and by the main
process's checks that both sides give the same samples)."""
import io
import os

import numpy as np
import torch
import torch.utils.data as tdata
from PIL import Image

from bench_loader_common import MEAN, SIZE, STD, crop_params, folder_samples, run_loader, \
    small_data


class TorchJPEGs(tdata.Dataset):
    """torchvision's ImageNet training recipe: pil_loader, RandomResizedCrop(224),
    RandomHorizontalFlip(), ToTensor(), Normalize(mean, std)."""

    def __init__(self, files, n):
        self.files, self.n = files, n

    def __len__(self):
        return self.n

    def __getitem__(self, index):
        k = index % len(self.files)
        with open(self.files[k], "rb") as f:  # torchvision.datasets.folder.pil_loader
            img = Image.open(f).convert("RGB")
        # RandomResizedCrop.get_params draws from torch's generator
        top, left, h, w = crop_params(
            img.width, img.height,
            lambda a, b: torch.empty(1).uniform_(a, b).item(),
            lambda a, b: torch.randint(a, b, size=(1,)).item())
        img = img.resize((SIZE, SIZE), Image.BILINEAR, box=(left, top, left + w, top + h))
        if torch.rand(1) < 0.5:  # RandomHorizontalFlip
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        t = torch.from_numpy(np.array(img, np.uint8, copy=True))  # ToTensor
        t = t.view(img.size[1], img.size[0], 3).permute((2, 0, 1)).contiguous()
        t = t.to(dtype=torch.get_default_dtype()).div(255)
        t = t.clone()  # Normalize(inplace=False)
        mean = torch.as_tensor(MEAN, dtype=t.dtype)
        std = torch.as_tensor(STD, dtype=t.dtype)
        t.sub_(mean.view(-1, 1, 1)).div_(std.view(-1, 1, 1))
        return t, k


class TorchImageFolder(tdata.Dataset):
    """torchvision's ImageFolder with pil_loader, the image as a uint8 HWC array (made a
    tensor by default_collate)."""

    def __init__(self, root):
        self.samples = folder_samples(root)

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, index):
        path, target = self.samples[index]
        with open(path, "rb") as f:
            img = Image.open(f).convert("RGB")
        return np.array(img), target  # a writable copy: default_collate -> torch tensor


class TorchArrowShards(tdata.Dataset):
    """The Arrow shards read with pyarrow in a torch Dataset: every shard memory-mapped
    (again in each worker), one image's bytes located and decoded per __getitem__."""

    def __init__(self, root):
        import json
        with open(os.path.join(root, "manifest.json")) as f:
            self.files = [os.path.join(root, e["file"]) for e in json.load(f)["shards"]]
        self._chunks = None
        self._open()
        self.targets = np.concatenate([c.column("label").to_numpy() for c in self._chunks])

    def _open(self):
        import pyarrow as pa
        import pyarrow.ipc as ipc
        self._maps, self._chunks, starts, total = [], [], [], 0
        for path in self.files:
            source = pa.memory_map(path, "r")
            reader = ipc.open_file(source)
            for b in range(reader.num_record_batches):
                batch = reader.get_batch(b)
                self._chunks.append(batch)
                starts.append(total)
                total += len(batch)
            self._maps.append(source)
        self._starts, self._length = np.asarray(starts), total

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_maps"] = state["_chunks"] = None
        return state

    def __len__(self):
        return self._length

    def __getitem__(self, index):
        if self._chunks is None:
            self._open()
        b = int(np.searchsorted(self._starts, index, side="right") - 1)
        data = self._chunks[b].column("image")[index - int(self._starts[b])].as_py()
        img = Image.open(io.BytesIO(data)).convert("RGB")
        return np.array(img), int(self.targets[index])



# --- the configurations, each timed in a process of its own (see bench_loader.isolated) ----
def small(n, workers, passes):
    images, labels = small_data(n)
    ds = tdata.TensorDataset(torch.from_numpy(images), torch.from_numpy(labels))
    return run_loader(lambda: tdata.DataLoader(ds, batch_size=256, shuffle=True,
                                               num_workers=workers), passes)


def jpeg(files, n, workers, passes):
    ds = TorchJPEGs(files, n)
    return run_loader(lambda: tdata.DataLoader(ds, batch_size=64, shuffle=True,
                                               num_workers=workers), passes)


def storage_datasets(folder, shards):
    return {"th-folder": TorchImageFolder(folder), "th-shards": TorchArrowShards(shards)}


def storage(name, folder, shards, workers, passes):
    ds = storage_datasets(folder, shards)[name]
    return run_loader(lambda: tdata.DataLoader(ds, batch_size=256, shuffle=True,
                                               num_workers=workers), passes)
