"""The model zoo, installed as pipeflow.models: torchvision's AlexNet, VGG and ResNet
families and the CIFAR-10 ResNets, each with the published checkpoints it can load
(``resnet50(weights="IMAGENET1K_V2")``), plus small models for small images."""
from ._api import Preprocess, Weights, WeightsEnum
from .alexnet import *  # noqa: F401,F403
from .alexnet import __all__ as _alexnet
from .cifar_resnet import *  # noqa: F401,F403
from .cifar_resnet import __all__ as _cifar_resnet
from .resnet import *  # noqa: F401,F403
from .resnet import __all__ as _resnet
from .simple import MLP, SmallCNN
from .vgg import *  # noqa: F401,F403
from .vgg import __all__ as _vgg

__all__ = ["MLP", "SmallCNN", "Preprocess", "Weights", "WeightsEnum",
           *_alexnet, *_vgg, *_resnet, *_cifar_resnet]
