"""The 1,797 8x8 handwritten digits (UCI ML hand-written digits, as scikit-learn ships them):
a real dataset that is on the machine after install, with no download."""
import numpy as np

from ..data import Dataset
from ..tensor import Tensor


class Digits(Dataset):
    """Images as float32 (1, 8, 8) in [0, 1] and labels 0-9; `transform` and
    `target_transform` apply per sample, as in torchvision."""

    classes = [str(i) for i in range(10)]

    def __init__(self, transform=None, target_transform=None):
        from sklearn.datasets import load_digits
        bunch = load_digits()
        self.images = (bunch.images.astype(np.float32) / 16.0)[:, None]
        self.targets = bunch.target.astype(np.int64)
        self.transform, self.target_transform = transform, target_transform

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, index):
        image, target = Tensor._wrap(self.images[index]), int(self.targets[index])
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return image, target
