"""Image transforms (torchvision.transforms): PIL-image and Tensor-image transforms matching
torchvision's outputs, per-sample randomness from the DataLoader's sample streams, JPEG
draft-mode decoding, and batched uint8 NHWC -> normalised float NCHW on the batch's device.

    import pipeflow.transforms as T
    train = T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor(),
                       T.Normalize(T.IMAGENET_MEAN, T.IMAGENET_STD)])
    x = train(T.decode(path, lazy=True))   # a JPEG's crop decoded at the scale it needs
"""
from . import functional
from .batch import IMAGENET_MEAN, IMAGENET_STD, BatchNormalize, to_float_nchw
from .functional import InterpolationMode
from .image import EncodedImage, decode, decode_rgb, decode_rgb_array
from .transforms import (CenterCrop, ColorJitter, Compose, Grayscale, Lambda, Normalize, Pad,
                         PILToTensor, RandomApply, RandomCrop, RandomGrayscale,
                         RandomHorizontalFlip, RandomResizedCrop, RandomRotation,
                         RandomVerticalFlip, Resize, ToTensor)

__all__ = ["BatchNormalize", "CenterCrop", "ColorJitter", "Compose", "EncodedImage",
           "Grayscale", "IMAGENET_MEAN", "IMAGENET_STD", "InterpolationMode", "Lambda",
           "Normalize", "PILToTensor", "Pad", "RandomApply", "RandomCrop", "RandomGrayscale",
           "RandomHorizontalFlip", "RandomResizedCrop", "RandomRotation", "RandomVerticalFlip",
           "Resize", "ToTensor", "decode", "decode_rgb", "decode_rgb_array", "functional",
           "to_float_nchw"]
