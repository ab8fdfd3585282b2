"""VisionDataset: the base of the image datasets (torchvision.datasets.VisionDataset)."""
import os

from ..data import Dataset


class ArrayFastPath:
    """For datasets held as arrays (`_columns()`: images, targets) with an `as_array`
    option: when samples are plain arrays and no transform is set, `__getitems__` hands
    the DataLoader the rows to gather straight into the batch (StackedSamples), with the
    same dtypes and shapes that collating the samples one by one gives. Otherwise the
    attribute does not exist, so the loader fetches (and seeds) sample by sample."""

    @property
    def __getitems__(self):
        if (not getattr(self, "as_array", False) or self.transform is not None
                or self.target_transform is not None):
            raise AttributeError("__getitems__")
        return self._getitems

    def _getitems(self, indices):
        from ..data.collate import StackedSamples
        return StackedSamples(self._columns(), indices)


class VisionDataset(Dataset):
    """Holds `root` (``~`` expanded), `transform` (applied to the image) and
    `target_transform` (applied to the target), and prints like torchvision's datasets."""

    _repr_indent = 4

    def __init__(self, root=None, transform=None, target_transform=None):
        if isinstance(root, (str, bytes, os.PathLike)):
            root = os.path.expanduser(os.fspath(root))
        self.root = root
        self.transform, self.target_transform = transform, target_transform

    def _apply(self, image, target):
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return image, target

    def __len__(self):
        raise NotImplementedError

    def extra_repr(self):
        return ""

    def __repr__(self):
        lines = [f"Number of datapoints: {self.__len__()}"]
        if self.root is not None:
            lines.append(f"Root location: {self.root}")
        lines += [line for line in self.extra_repr().splitlines() if line]
        for name, fn in (("Transform", self.transform),
                         ("Target transform", self.target_transform)):
            if fn is not None:
                body = repr(fn).splitlines()
                lines.append(f"{name}: {body[0]}")
                lines += [" " * (len(name) + 2) + line for line in body[1:]]
        return "\n".join([f"Dataset {type(self).__name__}"]
                         + [" " * self._repr_indent + line for line in lines])
