"""Weights entries for the ImageNet-1K checkpoints torchvision publishes at
download.pytorch.org, with torchvision's published accuracy and preprocessing."""
from ._api import Preprocess, Weights, sha256_prefix_of
from ._meta import IMAGENET_CATEGORIES

_BASE_URL = "https://download.pytorch.org/models/"


def imagenet_weights(file_name, num_params, acc1, acc5, *, min_size, resize_size=256,
                     categories=IMAGENET_CATEGORIES, **preprocess):
    """One torchvision checkpoint: evaluated on a 224x224 center crop of the image resized
    to `resize_size` (bilinear); `preprocess` may replace the ImageNet mean and std."""
    return Weights(url=_BASE_URL + file_name, sha256_prefix=sha256_prefix_of(file_name),
                   preprocess=Preprocess(resize_size=resize_size, crop_size=224, **preprocess),
                   meta={"categories": categories, "num_params": num_params,
                         "min_size": min_size, "metrics": {"acc@1": acc1, "acc@5": acc5},
                         "dataset": "ImageNet-1K"})
