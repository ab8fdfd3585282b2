"""Map-style datasets."""
import bisect
import itertools
import math

import numpy as np


class Dataset:
    """A map-style dataset: ``__getitem__(index)`` and ``__len__``. A dataset may also define
    ``__getitems__(indices)`` returning a list of samples, to fetch a batch at once."""

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__")

    def __add__(self, other):
        return ConcatDataset([self, other])


class IterableDataset(Dataset):
    """A stream of samples: ``__iter__``. In worker processes, use get_worker_info() to
    give each worker its own share."""

    def __iter__(self):
        raise NotImplementedError(f"{type(self).__name__} must define __iter__")

    def __add__(self, other):
        raise TypeError("IterableDatasets can't be concatenated with +")


class TensorDataset(Dataset):
    """Samples are the i-th rows of tensors that share their first dimension."""

    def __init__(self, *tensors):
        if not tensors:
            raise ValueError("TensorDataset needs at least one tensor")
        sizes = {t.shape[0] for t in tensors}
        if len(sizes) != 1:
            raise ValueError(f"Size mismatch between tensors: first dimensions {sorted(sizes)}")
        self.tensors = tensors

    def __getitem__(self, index):
        return tuple(t[index] for t in self.tensors)

    def __getitems__(self, indices):
        from .collate import StackedSamples
        if any(not isinstance(t._data, np.ndarray) for t in self.tensors):
            return [self[i] for i in indices]
        return StackedSamples([t._data for t in self.tensors], indices)

    def __len__(self):
        return self.tensors[0].shape[0]


class Subset(Dataset):
    def __init__(self, dataset, indices):
        self.dataset, self.indices = dataset, list(indices)

    def __getitem__(self, index):
        if isinstance(index, list):
            return self.dataset[[self.indices[i] for i in index]]
        return self.dataset[self.indices[index]]

    @property
    def __getitems__(self):
        """Only where the dataset fetches batches itself: otherwise the loader fetches each
        sample on its own, with its own random stream."""
        batched = getattr(self.dataset, "__getitems__", None)
        if batched is None:
            raise AttributeError(f"{type(self.dataset).__name__} has no __getitems__")
        return lambda indices: batched([self.indices[i] for i in indices])

    def __len__(self):
        return len(self.indices)


class ConcatDataset(Dataset):
    def __init__(self, datasets):
        self.datasets = list(datasets)
        if not self.datasets:
            raise ValueError("ConcatDataset needs at least one dataset")
        # Python ints: the datasets are handed int indices, as in torch
        self.cumulative_sizes = list(itertools.accumulate(len(d) for d in self.datasets))

    def __len__(self):
        return self.cumulative_sizes[-1]

    def __getitem__(self, index):
        if index < 0:
            if -index > len(self):
                raise IndexError(f"index {index} is out of range for a dataset of {len(self)}")
            index += len(self)
        which = bisect.bisect_right(self.cumulative_sizes, index)
        start = self.cumulative_sizes[which - 1] if which else 0
        return self.datasets[which][index - start]


def random_split(dataset, lengths, generator=None, seed=None):
    """Disjoint random Subsets of the given lengths (or fractions summing to 1, as torch
    reads them). The permutation comes from `generator`, else from `seed`, else from
    pipeflow's global stream (pf.manual_seed)."""
    n = len(dataset)
    if math.isclose(sum(lengths), 1) and sum(lengths) <= n:
        if any(not 0 <= f <= 1 for f in lengths):
            raise ValueError(f"Fractions in lengths must be between 0 and 1, got {lengths}")
        counts = [int(math.floor(n * f)) for f in lengths]
        for i in range(n - sum(counts)):
            counts[i % len(counts)] += 1
        lengths = counts
    if sum(lengths) != n:
        raise ValueError(f"Sum of input lengths {sum(lengths)} does not equal the length of "
                         f"the input dataset {n}")
    if generator is None and seed is None:
        from ..random import default_generator as generator
    perm = (generator.permutation(n) if generator is not None
            else np.random.default_rng(seed).permutation(n)).tolist()
    out, start = [], 0
    for length in lengths:
        out.append(Subset(dataset, perm[start:start + length]))
        start += length
    return out
