"""Datasets for pipeflow, installed as pipeflow.datasets."""
from .arrow_shards import ArrowShards
from .cifar import CIFAR10, CIFAR100
from .digits import Digits
from .download import (DownloadError, IntegrityError, UnsafeArchiveError, check_integrity,
                       download_and_extract_archive, download_url, extract_archive)
from .folder import (IMG_EXTENSIONS, DatasetFolder, ImageFolder, default_loader, find_classes,
                     has_file_allowed_extension, make_dataset, pil_loader)
from .mnist import KMNIST, MNIST, FashionMNIST, IDXFormatError, read_idx
from .vision import VisionDataset

__all__ = ["ArrowShards", "CIFAR10", "CIFAR100", "DatasetFolder", "Digits", "DownloadError",
           "FashionMNIST", "IDXFormatError",
           "IMG_EXTENSIONS", "ImageFolder", "IntegrityError", "KMNIST", "MNIST",
           "UnsafeArchiveError", "VisionDataset", "check_integrity", "default_loader",
           "download_and_extract_archive", "download_url", "extract_archive", "find_classes",
           "has_file_allowed_extension", "make_dataset", "pil_loader", "read_idx"]
