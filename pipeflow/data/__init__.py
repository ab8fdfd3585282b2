"""Data loading: datasets, samplers, collation and the DataLoader (PyTorch's torch.utils.data).
The loader here runs in the main process; the worker pool comes with its own issue."""
from .collate import default_collate
from .dataset import ConcatDataset, Dataset, Subset, TensorDataset, random_split
from .loader import DataLoader
from .sampler import BatchSampler, RandomSampler, Sampler, SequentialSampler

__all__ = ["BatchSampler", "ConcatDataset", "DataLoader", "Dataset", "RandomSampler", "Sampler",
           "SequentialSampler", "Subset", "TensorDataset", "default_collate", "random_split"]
