"""The CIFAR-10 ResNets of the ResNet paper (section 4.2): 6n+2 layers on 32x32 images,
three stages of n basic blocks with 16, 32 and 64 channels, and parameter-free "option A"
shortcuts. Names and weights follow the widely used checkpoints of
github.com/akamaster/pytorch_resnet_cifar10 (final layer `linear`)."""
from functools import partial

from .. import nn
from ..ops import pad
from ._api import Preprocess, Weights, WeightsEnum, build, sha256_prefix_of
from ._meta import CIFAR10_CATEGORIES
from .resnet import BasicBlock

__all__ = ["CifarResNet", "ShortcutA",
           "ResNet20_Weights", "ResNet32_Weights", "ResNet44_Weights", "ResNet56_Weights",
           "ResNet110_Weights", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110"]


class ShortcutA(nn.Module):
    """Option A: the identity, subsampled by 2 and zero-padded to `out_channels` (half the
    padding before the input's channels, half after), so no parameters."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.before = (out_channels - in_channels) // 2
        self.after = out_channels - in_channels - self.before

    def forward(self, x):
        return pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.before, self.after))


class CifarResNet(nn.Module):
    """A 3x3 conv to 16 channels, three stages of `layers[i]` BasicBlocks (16, 32, 64
    channels; stages 2 and 3 halve the resolution), global average pool, `linear`."""

    def __init__(self, layers, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(16, 16, layers[0], stride=1)
        self.layer2 = self._make_layer(16, 32, layers[1], stride=2)
        self.layer3 = self._make_layer(32, 64, layers[2], stride=2)
        self.linear = nn.Linear(64, num_classes)
        for m in self.modules():  # the checkpoints' init: He normal, fan in
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    @staticmethod
    def _make_layer(in_planes, planes, blocks, stride):
        shortcut = ShortcutA(in_planes, planes) if stride != 1 or in_planes != planes else None
        return nn.Sequential(BasicBlock(in_planes, planes, stride, shortcut),
                             *[BasicBlock(planes, planes) for _ in range(1, blocks)])

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.linear(x.mean((2, 3)))


def _akamaster_weights(file_name, num_params, acc1):
    """A checkpoint of akamaster/pytorch_resnet_cifar10 with its published test accuracy
    (100 - its test error). Its trainer normalised CIFAR-10 images with the ImageNet mean
    and std (``Preprocess``'s defaults), so these weights expect that, not CIFAR's own."""
    return Weights(
        url=f"https://github.com/akamaster/pytorch_resnet_cifar10/raw/master/"
            f"pretrained_models/{file_name}",
        sha256_prefix=sha256_prefix_of(file_name),
        preprocess=Preprocess(resize_size=32, crop_size=32),
        meta={"categories": CIFAR10_CATEGORIES, "num_params": num_params, "min_size": (1, 1),
              "metrics": {"acc@1": acc1}, "dataset": "CIFAR-10"})


class ResNet20_Weights(WeightsEnum):
    CIFAR10_V1 = _akamaster_weights("resnet20-12fca82f.th", 269722, 91.73)
    DEFAULT = CIFAR10_V1


class ResNet32_Weights(WeightsEnum):
    CIFAR10_V1 = _akamaster_weights("resnet32-d509ac18.th", 464154, 92.63)
    DEFAULT = CIFAR10_V1


class ResNet44_Weights(WeightsEnum):
    CIFAR10_V1 = _akamaster_weights("resnet44-014dd654.th", 658586, 93.10)
    DEFAULT = CIFAR10_V1


class ResNet56_Weights(WeightsEnum):
    CIFAR10_V1 = _akamaster_weights("resnet56-4bfd9763.th", 853018, 93.39)
    DEFAULT = CIFAR10_V1


class ResNet110_Weights(WeightsEnum):
    CIFAR10_V1 = _akamaster_weights("resnet110-1d1ed7c2.th", 1727962, 93.68)
    DEFAULT = CIFAR10_V1


def resnet20(*, weights=None, progress=True, **kwargs):
    """ResNet-20 for CIFAR-10 (n=3); `weights`: a ``ResNet20_Weights`` member, its name,
    or a checkpoint path (akamaster's {'state_dict': {'module.' keys}} files load as they
    are)."""
    return build(partial(CifarResNet, [3, 3, 3]), ResNet20_Weights, weights, progress, **kwargs)


def resnet32(*, weights=None, progress=True, **kwargs):
    """ResNet-32 for CIFAR-10 (n=5)."""
    return build(partial(CifarResNet, [5, 5, 5]), ResNet32_Weights, weights, progress, **kwargs)


def resnet44(*, weights=None, progress=True, **kwargs):
    """ResNet-44 for CIFAR-10 (n=7)."""
    return build(partial(CifarResNet, [7, 7, 7]), ResNet44_Weights, weights, progress, **kwargs)


def resnet56(*, weights=None, progress=True, **kwargs):
    """ResNet-56 for CIFAR-10 (n=9)."""
    return build(partial(CifarResNet, [9, 9, 9]), ResNet56_Weights, weights, progress, **kwargs)


def resnet110(*, weights=None, progress=True, **kwargs):
    """ResNet-110 for CIFAR-10 (n=18)."""
    return build(partial(CifarResNet, [18, 18, 18]), ResNet110_Weights, weights, progress,
                 **kwargs)
