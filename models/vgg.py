"""VGG-11/13/16/19 ("Very Deep Convolutional Networks for Large-Scale Image Recognition"),
with or without batch normalisation, as torchvision defines them."""
from .. import nn
from ._api import WeightsEnum, build
from ._torchvision import imagenet_weights

__all__ = ["VGG", "make_layers",
           "VGG11_Weights", "VGG11_BN_Weights", "VGG13_Weights", "VGG13_BN_Weights",
           "VGG16_Weights", "VGG16_BN_Weights", "VGG19_Weights", "VGG19_BN_Weights",
           "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn"]

# The paper's configurations A, B, D, E: the output channels of each 3x3 convolution, "M"
# for a 2x2 max pool.
CONFIGS = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
          512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
          512, 512, 512, 512, "M"],
}


def make_layers(config, batch_norm=False):
    """The convolutional trunk of a configuration; each conv is followed by a ReLU (and a
    BatchNorm2d between the two with `batch_norm`), which fixes the state_dict indices."""
    layers, channels = [], 3
    for v in config:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        layers.append(nn.Conv2d(channels, v, kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(v))
        layers.append(nn.ReLU(inplace=True))
        channels = v
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """`features` (see ``make_layers``), pooled to 7x7, then three linear layers."""

    def __init__(self, features, num_classes=1000, init_weights=True, dropout=0.5):
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096), nn.ReLU(inplace=True), nn.Dropout(p=dropout),
            nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes))
        if init_weights:
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                    nn.init.zeros_(m.bias)
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.ones_(m.weight)
                    nn.init.zeros_(m.bias)
                elif isinstance(m, nn.Linear):
                    nn.init.normal_(m.weight, 0, 0.01)
                    nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.avgpool(self.features(x))
        return self.classifier(x.flatten(1))


class VGG11_Weights(WeightsEnum):
    IMAGENET1K_V1 = imagenet_weights("vgg11-8a719046.pth", 132863336, 69.020, 88.628,
                                     min_size=(32, 32))
    DEFAULT = IMAGENET1K_V1


class VGG11_BN_Weights(WeightsEnum):
    IMAGENET1K_V1 = imagenet_weights("vgg11_bn-6002323d.pth", 132868840, 70.370, 89.810,
                                     min_size=(32, 32))
    DEFAULT = IMAGENET1K_V1


class VGG13_Weights(WeightsEnum):
    IMAGENET1K_V1 = imagenet_weights("vgg13-19584684.pth", 133047848, 69.928, 89.246,
                                     min_size=(32, 32))
    DEFAULT = IMAGENET1K_V1


class VGG13_BN_Weights(WeightsEnum):
    IMAGENET1K_V1 = imagenet_weights("vgg13_bn-abd245e5.pth", 133053736, 71.586, 90.374,
                                     min_size=(32, 32))
    DEFAULT = IMAGENET1K_V1


class VGG16_Weights(WeightsEnum):
    IMAGENET1K_V1 = imagenet_weights("vgg16-397923af.pth", 138357544, 71.592, 90.382,
                                     min_size=(32, 32))
    # Ported from amdegroot/ssd.pytorch for feature extraction: only `features` holds
    # trained values (the classifier's do not classify), so there are no categories and
    # no accuracy; inputs are normalised the original way, to 0-255 minus the mean colour.
    IMAGENET1K_FEATURES = imagenet_weights(
        "vgg16_features-amdegroot-88682ab5.pth", 138357544, float("nan"), float("nan"),
        min_size=(32, 32), categories=None, mean=(0.48235, 0.45882, 0.40784),
        std=(1.0 / 255.0, 1.0 / 255.0, 1.0 / 255.0))
    DEFAULT = IMAGENET1K_V1


class VGG16_BN_Weights(WeightsEnum):
    IMAGENET1K_V1 = imagenet_weights("vgg16_bn-6c64b313.pth", 138365992, 73.360, 91.516,
                                     min_size=(32, 32))
    DEFAULT = IMAGENET1K_V1


class VGG19_Weights(WeightsEnum):
    IMAGENET1K_V1 = imagenet_weights("vgg19-dcbb9e9d.pth", 143667240, 72.376, 90.876,
                                     min_size=(32, 32))
    DEFAULT = IMAGENET1K_V1


class VGG19_BN_Weights(WeightsEnum):
    IMAGENET1K_V1 = imagenet_weights("vgg19_bn-c79401a0.pth", 143678248, 74.218, 91.842,
                                     min_size=(32, 32))
    DEFAULT = IMAGENET1K_V1


def _vgg(config, batch_norm, weights_enum, weights, progress, **kwargs):
    if weights is not None:  # the checkpoint sets every parameter: skip VGG's own init
        kwargs.setdefault("init_weights", False)

    def make(**kw):
        return VGG(make_layers(CONFIGS[config], batch_norm), **kw)
    return build(make, weights_enum, weights, progress, **kwargs)


def vgg11(*, weights=None, progress=True, **kwargs):
    """VGG-11 (configuration A); `weights`: a ``VGG11_Weights`` member, its name or a path."""
    return _vgg("A", False, VGG11_Weights, weights, progress, **kwargs)


def vgg11_bn(*, weights=None, progress=True, **kwargs):
    """VGG-11 with batch normalisation."""
    return _vgg("A", True, VGG11_BN_Weights, weights, progress, **kwargs)


def vgg13(*, weights=None, progress=True, **kwargs):
    """VGG-13 (configuration B)."""
    return _vgg("B", False, VGG13_Weights, weights, progress, **kwargs)


def vgg13_bn(*, weights=None, progress=True, **kwargs):
    """VGG-13 with batch normalisation."""
    return _vgg("B", True, VGG13_BN_Weights, weights, progress, **kwargs)


def vgg16(*, weights=None, progress=True, **kwargs):
    """VGG-16 (configuration D)."""
    return _vgg("D", False, VGG16_Weights, weights, progress, **kwargs)


def vgg16_bn(*, weights=None, progress=True, **kwargs):
    """VGG-16 with batch normalisation."""
    return _vgg("D", True, VGG16_BN_Weights, weights, progress, **kwargs)


def vgg19(*, weights=None, progress=True, **kwargs):
    """VGG-19 (configuration E)."""
    return _vgg("E", False, VGG19_Weights, weights, progress, **kwargs)


def vgg19_bn(*, weights=None, progress=True, **kwargs):
    """VGG-19 with batch normalisation."""
    return _vgg("E", True, VGG19_BN_Weights, weights, progress, **kwargs)
