"""MNIST, FashionMNIST and KMNIST from their IDX files (torchvision.datasets.MNIST & co.).

The four files live in ``root/<ClassName>/raw/``, raw (``train-images-idx3-ubyte``) or
gzip-compressed (``train-images-idx3-ubyte.gz``); `download=True` fetches the .gz files from
`mirrors` (tried in order), checks the md5 in `resources` and decompresses them, as
torchvision does. Point `mirrors` elsewhere (a subclass or an attribute set on the class)
to fetch from another server."""
import gzip
import os
import struct
import sys
import zlib

import numpy as np
from PIL import Image

from ..tensor import Tensor
from .download import DownloadError, IntegrityError, download_url, extract_archive
from .vision import ArrayFastPath, VisionDataset

__all__ = ["FashionMNIST", "IDXFormatError", "KMNIST", "MNIST", "read_idx", "read_image_file",
           "read_label_file"]


class IDXFormatError(ValueError):
    """A file is not a well-formed IDX file (bad magic number, truncated, trailing bytes)."""


# IDX type codes (third byte of the magic number) -> big-endian element type.
IDX_TYPES = {0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"),
             0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def _read_all(path):
    """The file's bytes (a writable buffer), gunzipped when it starts with the gzip magic."""
    with open(path, "rb") as f:
        if f.read(2) == b"\x1f\x8b":
            f.seek(0)
            try:
                with gzip.GzipFile(fileobj=f) as g:
                    return bytearray(g.read())
            except (EOFError, OSError, zlib.error) as e:
                raise IDXFormatError(f"{path}: corrupt or truncated gzip data ({e})") from e
        f.seek(0)
        buf = bytearray(os.fstat(f.fileno()).st_size)
        n = f.readinto(buf)
        return buf if n == len(buf) else buf[:n]


def read_idx(path):
    """An IDX file (raw or gzip) as a NumPy array in native byte order; the payload is
    used in place (np.frombuffer) for 8-bit types. Raises IDXFormatError naming the file
    for a bad magic number, a truncated file or trailing bytes."""
    path = os.fspath(path)
    buf = _read_all(path)
    if len(buf) < 4:
        raise IDXFormatError(f"{path}: truncated IDX file ({len(buf)} bytes, shorter than "
                             f"the 4-byte magic number)")
    magic = int.from_bytes(buf[:4], "big")
    code, ndim = buf[2], buf[3]
    if buf[0] or buf[1] or code not in IDX_TYPES or not 1 <= ndim <= 4:
        raise IDXFormatError(f"{path}: bad magic number 0x{magic:08x} (an IDX file starts "
                             f"with 0x0000, a type code in "
                             f"{{{', '.join(f'0x{c:02x}' for c in IDX_TYPES)}}} and 1-4 "
                             f"dimensions)")
    header = 4 + 4 * ndim
    if len(buf) < header:
        raise IDXFormatError(f"{path}: truncated IDX file ({len(buf)} bytes, the header "
                             f"alone needs {header})")
    dims = struct.unpack(f">{ndim}I", bytes(buf[4:header]))
    dtype = IDX_TYPES[code]
    count = int(np.prod(dims, dtype=np.int64))
    need, have = count * dtype.itemsize, len(buf) - header
    if have < need:
        raise IDXFormatError(f"{path}: truncated IDX file: shape {dims} needs {need} bytes "
                             f"of data, found {have}")
    if have > need:
        raise IDXFormatError(f"{path}: {have - need} unexpected bytes after the data of "
                             f"shape {dims}")
    arr = np.frombuffer(buf, dtype, count, header).reshape(dims)
    if dtype.byteorder == ">":
        arr = arr.astype(dtype.newbyteorder("="))
    return arr


def read_image_file(path):
    x = read_idx(path)
    if x.dtype != np.uint8 or x.ndim != 3:
        raise IDXFormatError(f"{path}: expected uint8 images of shape (N, H, W), got "
                             f"{x.dtype} of shape {x.shape}")
    return x


def read_label_file(path):
    x = read_idx(path)
    if x.dtype != np.uint8 or x.ndim != 1:
        raise IDXFormatError(f"{path}: expected uint8 labels of shape (N,), got {x.dtype} "
                             f"of shape {x.shape}")
    return x.astype(np.int64)


def _as_numpy(value):
    return np.asarray(value.numpy() if isinstance(value, Tensor) else value)


class MNIST(ArrayFastPath, VisionDataset):
    """The MNIST digits: 60,000 training and 10,000 test 28x28 grayscale images.

    Samples are ``(PIL Image (mode 'L'), int)`` before `transform`/`target_transform`, as in
    torchvision; with ``as_array=True`` the image is the (28, 28) uint8 NumPy array, and a
    DataLoader then gathers batches straight from `data` when no transform is set.
    `data` (uint8, N x 28 x 28) and `targets` (int64, N) are pipeflow Tensors sharing memory
    with the arrays read from the files; assigning them (a Tensor or an array) replaces the
    samples, e.g. to keep a subset."""

    mirrors = [
        "http://yann.lecun.com/exdb/mnist/",
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
    ]
    resources = [
        ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
        ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
        ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
    ]
    classes = ["0 - zero", "1 - one", "2 - two", "3 - three", "4 - four", "5 - five",
               "6 - six", "7 - seven", "8 - eight", "9 - nine"]

    def __init__(self, root, train=True, transform=None, target_transform=None,
                 download=False, *, as_array=False):
        super().__init__(root, transform=transform, target_transform=target_transform)
        self.train, self.as_array = train, as_array
        if download:
            self.download()
        if not self._check_exists():
            raise RuntimeError(f"Dataset not found in {self.raw_folder}. You can use "
                               f"download=True to download it")
        self.data, self.targets = self._load_data()

    # data/targets: Tensors outside, NumPy inside (fast indexing per sample)
    @property
    def data(self):
        return Tensor._wrap(self._data)

    @data.setter
    def data(self, value):
        self._data = _as_numpy(value)

    @property
    def targets(self):
        return Tensor._wrap(self._targets)

    @targets.setter
    def targets(self, value):
        self._targets = _as_numpy(value)

    def _columns(self):
        return [self._data, self._targets]

    @property
    def raw_folder(self):
        return os.path.join(self.root, type(self).__name__, "raw")

    @property
    def processed_folder(self):
        return os.path.join(self.root, type(self).__name__, "processed")

    @property
    def class_to_idx(self):
        return {c: i for i, c in enumerate(self.classes)}

    def _find(self, stem):
        """The raw file ``raw_folder/stem`` if present, else its .gz, else None."""
        for name in (stem, stem + ".gz"):
            path = os.path.join(self.raw_folder, name)
            if os.path.isfile(path):
                return path
        return None

    @staticmethod
    def _stem(filename):
        return filename[:-3] if filename.endswith(".gz") else filename

    def _check_exists(self):
        return all(self._find(self._stem(name)) for name, _ in self.resources)

    def _load_data(self):
        split = "train" if self.train else "t10k"
        images_path = self._find(f"{split}-images-idx3-ubyte")
        labels_path = self._find(f"{split}-labels-idx1-ubyte")
        if images_path is None or labels_path is None:
            raise RuntimeError(f"Dataset not found in {self.raw_folder}. You can use "
                               f"download=True to download it")
        data, targets = read_image_file(images_path), read_label_file(labels_path)
        if len(data) != len(targets):
            raise IDXFormatError(f"{images_path} holds {len(data)} images but {labels_path} "
                                 f"holds {len(targets)} labels")
        return data, targets

    def download(self):
        """Fetch the files in `resources` that are missing, trying each of `mirrors`."""
        if self._check_exists():
            return
        os.makedirs(self.raw_folder, exist_ok=True)
        for filename, md5 in self.resources:
            if os.path.isfile(os.path.join(self.raw_folder, self._stem(filename))):
                continue
            errors = []
            for mirror in self.mirrors:
                url = mirror if mirror.endswith("/") else mirror + "/"
                url += filename
                try:
                    print(f"Downloading {url}", file=sys.stderr)
                    path = download_url(url, self.raw_folder, filename, md5=md5)
                except (DownloadError, IntegrityError) as e:
                    errors.append(f"{url}: {e}")
                    print(f"Failed to download (trying next):\n{e}", file=sys.stderr)
                    continue
                if filename.endswith(".gz"):
                    extract_archive(path, self.raw_folder)
                break
            else:
                raise RuntimeError(f"Error downloading {filename}:\n" + "\n".join(errors))

    def __getitem__(self, index):
        img, target = self._data[index], int(self._targets[index])
        if self.as_array:
            img = img.copy()  # a transform may work in place: the dataset stays intact
        else:
            img = Image.fromarray(img)  # 2-D uint8: mode "L"
        return self._apply(img, target)

    def __len__(self):
        return len(self._data)

    def extra_repr(self):
        return f"Split: {'Train' if self.train is True else 'Test'}"


class FashionMNIST(MNIST):
    """Zalando's Fashion-MNIST: MNIST's format and sizes, ten kinds of clothing."""

    mirrors = ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"]
    resources = [
        ("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
        ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
        ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"),
    ]
    classes = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
               "Sneaker", "Bag", "Ankle boot"]


class KMNIST(MNIST):
    """Kuzushiji-MNIST: MNIST's format and sizes, ten cursive Japanese characters."""

    mirrors = ["http://codh.rois.ac.jp/kmnist/dataset/kmnist/"]
    resources = [
        ("train-images-idx3-ubyte.gz", "bdb82020997e1d708af4cf47b453dcf7"),
        ("train-labels-idx1-ubyte.gz", "e144d726b3acfaa3e44228e80efcd344"),
        ("t10k-images-idx3-ubyte.gz", "5c965bf0a639b31b8f53240b1b52f4d7"),
        ("t10k-labels-idx1-ubyte.gz", "7320c461ea6c1c855c0b718fb2a4b134"),
    ]
    classes = ["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"]
