"""CIFAR-10 and CIFAR-100 from the official "python version" batches
(torchvision.datasets.CIFAR10 / CIFAR100).

The batches are pickles; they are read only after their md5 matches the published one,
and through an unpickler that can build nothing but NumPy arrays, lists, dicts and
strings, so a tampered file can't run code even where the checksums were overridden."""
import os
import pickle
import sys

import numpy as np
from PIL import Image

from .download import (DownloadError, IntegrityError, check_integrity,
                       download_and_extract_archive)
from .vision import ArrayFastPath, VisionDataset

__all__ = ["CIFAR10", "CIFAR100"]

# The globals a CIFAR batch (pickled NumPy arrays, from Python 2 or 3, NumPy 1 or 2) needs.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("copy_reg", "_reconstructor"), ("copyreg", "_reconstructor"),
    ("__builtin__", "object"), ("builtins", "object"),
    ("_codecs", "encode"),  # bytes in a protocol-2 pickle written by Python 3
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: a CIFAR batch "
                                         f"holds only NumPy arrays, lists and strings")
        return super().find_class(module, name)


def _load_pickle(path):
    with open(path, "rb") as f:
        try:
            return _ArrayUnpickler(f, encoding="latin1").load()
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
                ImportError, IndexError, KeyError) as e:
            raise RuntimeError(f"{path}: not a readable CIFAR batch ({e})") from e


class CIFAR10(ArrayFastPath, VisionDataset):
    """CIFAR-10: 50,000 training and 10,000 test 32x32 RGB images in 10 classes.

    Files: ``root/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}``;
    `download=True` fetches `filename` (cifar-10-python.tar.gz, md5 `tgz_md5`) from each of
    `mirrors` in turn, or from `url` when `mirrors` is empty, into `root` and extracts it.
    Samples are ``(PIL Image (RGB), int)`` before the transforms; with ``as_array=True``
    the image is the (32, 32, 3) uint8 array (and, without transforms, a DataLoader
    gathers batches straight from `data`). `data` is a C-contiguous uint8 array
    (N, 32, 32, 3) and `targets` a list of ints, as in torchvision."""

    base_folder = "cifar-10-batches-py"
    # Base URLs to fetch `filename` from, tried in order; when empty, `url` is used.
    mirrors = []
    url = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    filename = "cifar-10-python.tar.gz"
    tgz_md5 = "c58f30108f718f92721af3b95e74349a"
    train_list = [
        ["data_batch_1", "c99cafc152244af753f735de768cd75f"],
        ["data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"],
        ["data_batch_3", "54ebc095f3ab1f0389bbae665268c751"],
        ["data_batch_4", "634d18415352ddfa80567beed471001a"],
        ["data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb"],
    ]
    test_list = [
        ["test_batch", "40351d587109b95175f43aff81a1287e"],
    ]
    meta = {
        "filename": "batches.meta",
        "key": "label_names",
        "md5": "5ff9c542aee3614f3951f8cda6e48888",
    }

    def __init__(self, root, train=True, transform=None, target_transform=None,
                 download=False, *, as_array=False):
        super().__init__(root, transform=transform, target_transform=target_transform)
        self.train, self.as_array = train, as_array
        if download:
            self.download()
        if not self._check_integrity():
            raise RuntimeError(f"Dataset not found or corrupted in "
                               f"{os.path.join(self.root, self.base_folder)}. You can use "
                               f"download=True to download it")
        chunks, self.targets = [], []
        for file_name, _ in (self.train_list if self.train else self.test_list):
            path = os.path.join(self.root, self.base_folder, file_name)
            entry = _load_pickle(path)
            try:
                data = np.asarray(entry["data"], dtype=np.uint8)
                labels = entry["labels"] if "labels" in entry else entry["fine_labels"]
            except (KeyError, TypeError) as e:
                raise RuntimeError(f"{path}: not a CIFAR batch (no {e} entry)") from e
            if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
                raise RuntimeError(f"{path}: expected data of shape (N, 3072) and N labels, "
                                   f"got {data.shape} and {len(labels)} labels")
            chunks.append(data)
            self.targets.extend(int(t) for t in labels)
        data = np.concatenate(chunks) if chunks else np.empty((0, 3072), np.uint8)
        # stored planes-first (R then G then B, each 32x32): make it HWC, contiguous
        self.data = np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        self._load_meta()

    def _load_meta(self):
        path = os.path.join(self.root, self.base_folder, self.meta["filename"])
        if not check_integrity(path, self.meta["md5"]):
            raise RuntimeError("Dataset metadata file not found or corrupted. You can use "
                               "download=True to download it")
        self.classes = list(_load_pickle(path)[self.meta["key"]])
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}

    def _columns(self):
        cached = getattr(self, "_targets_cache", None)
        if cached is None or cached[0] is not self.targets or len(cached[1]) != len(self.targets):
            cached = (self.targets, np.asarray(self.targets, dtype=np.int64))
            self._targets_cache = cached
        return [self.data, cached[1]]

    def __getitem__(self, index):
        img, target = self.data[index], self.targets[index]
        if self.as_array:
            img = img.copy()  # a transform may work in place: the dataset stays intact
        else:
            img = Image.fromarray(img)
        return self._apply(img, target)

    def __len__(self):
        return len(self.data)

    def _check_integrity(self):
        return all(check_integrity(os.path.join(self.root, self.base_folder, name), md5)
                   for name, md5 in self.train_list + self.test_list)

    def download(self):
        if self._check_integrity():
            print("Files already downloaded and verified", file=sys.stderr)
            return
        urls = [(m if m.endswith("/") else m + "/") + self.filename for m in self.mirrors]
        errors = []
        for url in urls or [self.url]:
            try:
                download_and_extract_archive(url, self.root, filename=self.filename,
                                             md5=self.tgz_md5)
                return
            except (DownloadError, IntegrityError) as e:
                errors.append(f"{url}: {e}")
                print(f"Failed to download {url}:\n{e}", file=sys.stderr)
        raise RuntimeError(f"Error downloading {self.filename}:\n" + "\n".join(errors))

    def extra_repr(self):
        return f"Split: {'Train' if self.train is True else 'Test'}"


class CIFAR100(CIFAR10):
    """CIFAR-100: as CIFAR-10 with 100 (fine) classes; ``root/cifar-100-python/``."""

    base_folder = "cifar-100-python"
    url = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
    filename = "cifar-100-python.tar.gz"
    tgz_md5 = "eb9058c3a382ffc7106e4002c42a8d85"
    train_list = [
        ["train", "16019d7e3df5f24257cddd939b257f8d"],
    ]
    test_list = [
        ["test", "f0ef6b0ae62326f3e7ffdfab6717acfc"],
    ]
    meta = {
        "filename": "meta",
        "key": "fine_label_names",
        "md5": "7973b15100ade9c7d40fb424638fde48",
    }
