"""Data loading: datasets, samplers, collation and the DataLoader (PyTorch's torch.utils.data).
The loader here runs in the main process; the worker pool comes with its own issue."""
from .collate import default_collate
from .dataset import ConcatDataset, Dataset, IterableDataset, Subset, TensorDataset, random_split
from .loader import DataLoader, WorkerError
from .sampler import (BatchSampler, DistributedSampler, RandomSampler, Sampler, SequentialSampler,
                      SubsetRandomSampler, WeightedRandomSampler)
from .shared import SharedMemoryError
from .worker import WorkerInfo, get_worker_info, sample_generator

__all__ = ["BatchSampler", "ConcatDataset", "DataLoader", "Dataset", "DistributedSampler",
           "IterableDataset", "SubsetRandomSampler", "WeightedRandomSampler",
           "RandomSampler", "Sampler", "SequentialSampler", "SharedMemoryError", "Subset",
           "TensorDataset", "WorkerError", "WorkerInfo", "default_collate", "get_worker_info",
           "random_split", "sample_generator"]
