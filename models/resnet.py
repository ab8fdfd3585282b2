"""ResNet ("Deep Residual Learning for Image Recognition") as torchvision defines it, with
its ResNeXt and Wide ResNet variants (grouped and widened bottlenecks).

Bottleneck blocks downsample in their 3x3 convolution, not in the first 1x1 (torchvision's
"ResNet v1.5", as its checkpoints were trained)."""
from functools import partial

from .. import nn
from ._api import WeightsEnum, build
from ._torchvision import imagenet_weights

__all__ = ["ResNet", "BasicBlock", "Bottleneck",
           "ResNet18_Weights", "ResNet34_Weights", "ResNet50_Weights", "ResNet101_Weights",
           "ResNet152_Weights", "ResNeXt50_32X4D_Weights", "Wide_ResNet50_2_Weights",
           "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d",
           "wide_resnet50_2"]


def conv3x3(in_planes, out_planes, stride=1, groups=1, dilation=1):
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=dilation,
                     groups=groups, bias=False, dilation=dilation)


def conv1x1(in_planes, out_planes, stride=1):
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions plus the shortcut; `downsample` (if given) maps the input to the
    output's shape when the stride or the width changes."""
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64,
                 dilation=1, norm_layer=None):
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ValueError("BasicBlock only supports groups=1 and base_width=64")
        if dilation > 1:
            raise NotImplementedError("dilation > 1 is not supported in BasicBlock")
        norm_layer = norm_layer or nn.BatchNorm2d
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = norm_layer(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = norm_layer(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided, grouped), 1x1 expand by `expansion`, plus the shortcut.
    The inner width is planes * base_width / 64 * groups: ResNeXt's cardinality and
    Wide ResNet's doubled width are both this one number."""
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64,
                 dilation=1, norm_layer=None):
        super().__init__()
        norm_layer = norm_layer or nn.BatchNorm2d
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = norm_layer(width)
        self.conv2 = conv3x3(width, width, stride, groups, dilation)
        self.bn2 = norm_layer(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = norm_layer(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class ResNet(nn.Module):
    """A 7x7 stride-2 stem and a max pool, four stages of `block` (64, 128, 256, 512 planes;
    `layers` blocks each; stages 2-4 halve the resolution), global average pool, `fc`.

    `replace_stride_with_dilation` (three booleans, for stages 2-4) keeps the resolution and
    dilates the convolutions instead; `zero_init_residual` starts each residual branch at
    zero (its last BatchNorm's weight), so that every block starts as the identity."""

    def __init__(self, block, layers, num_classes=1000, zero_init_residual=False, groups=1,
                 width_per_group=64, replace_stride_with_dilation=None, norm_layer=None):
        super().__init__()
        self._norm_layer = norm_layer or nn.BatchNorm2d
        replace_stride_with_dilation = replace_stride_with_dilation or [False, False, False]
        if len(replace_stride_with_dilation) != 3:
            raise ValueError(f"replace_stride_with_dilation should be None or a 3-element "
                             f"tuple, got {replace_stride_with_dilation}")
        self.inplanes, self.dilation = 64, 1
        self.groups, self.base_width = groups, width_per_group
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = self._norm_layer(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], 2, replace_stride_with_dilation[0])
        self.layer3 = self._make_layer(block, 256, layers[2], 2, replace_stride_with_dilation[1])
        self.layer4 = self._make_layer(block, 512, layers[3], 2, replace_stride_with_dilation[2])
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn3.weight)
                elif isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    def _make_layer(self, block, planes, blocks, stride=1, dilate=False):
        """One stage; its first block takes the stride (or dilation) and the width change."""
        norm_layer, previous_dilation = self._norm_layer, self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(conv1x1(self.inplanes, planes * block.expansion, stride),
                                       norm_layer(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample, self.groups, self.base_width,
                        previous_dilation, norm_layer)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, groups=self.groups, base_width=self.base_width,
                         dilation=self.dilation, norm_layer=norm_layer)
                   for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))


# V1: the weights of the original training recipe; V2: torchvision's 2021 recipe, evaluated
# after resizing to 232 rather than 256.
class ResNet18_Weights(WeightsEnum):
    IMAGENET1K_V1 = imagenet_weights("resnet18-f37072fd.pth", 11689512, 69.758, 89.078,
                                     min_size=(1, 1))
    DEFAULT = IMAGENET1K_V1


class ResNet34_Weights(WeightsEnum):
    IMAGENET1K_V1 = imagenet_weights("resnet34-b627a593.pth", 21797672, 73.314, 91.420,
                                     min_size=(1, 1))
    DEFAULT = IMAGENET1K_V1


class ResNet50_Weights(WeightsEnum):
    IMAGENET1K_V1 = imagenet_weights("resnet50-0676ba61.pth", 25557032, 76.130, 92.862,
                                     min_size=(1, 1))
    IMAGENET1K_V2 = imagenet_weights("resnet50-11ad3fa6.pth", 25557032, 80.858, 95.434,
                                     min_size=(1, 1), resize_size=232)
    DEFAULT = IMAGENET1K_V2


class ResNet101_Weights(WeightsEnum):
    IMAGENET1K_V1 = imagenet_weights("resnet101-63fe2227.pth", 44549160, 77.374, 93.546,
                                     min_size=(1, 1))
    IMAGENET1K_V2 = imagenet_weights("resnet101-cd907fc2.pth", 44549160, 81.886, 95.780,
                                     min_size=(1, 1), resize_size=232)
    DEFAULT = IMAGENET1K_V2


class ResNet152_Weights(WeightsEnum):
    IMAGENET1K_V1 = imagenet_weights("resnet152-394f9c45.pth", 60192808, 78.312, 94.046,
                                     min_size=(1, 1))
    IMAGENET1K_V2 = imagenet_weights("resnet152-f82ba261.pth", 60192808, 82.284, 96.002,
                                     min_size=(1, 1), resize_size=232)
    DEFAULT = IMAGENET1K_V2


class ResNeXt50_32X4D_Weights(WeightsEnum):
    IMAGENET1K_V1 = imagenet_weights("resnext50_32x4d-7cdf4587.pth", 25028904, 77.618, 93.698,
                                     min_size=(1, 1))
    IMAGENET1K_V2 = imagenet_weights("resnext50_32x4d-1a0047aa.pth", 25028904, 81.198, 95.340,
                                     min_size=(1, 1), resize_size=232)
    DEFAULT = IMAGENET1K_V2


class Wide_ResNet50_2_Weights(WeightsEnum):
    IMAGENET1K_V1 = imagenet_weights("wide_resnet50_2-95faca4d.pth", 68883240, 78.468, 94.086,
                                     min_size=(1, 1))
    IMAGENET1K_V2 = imagenet_weights("wide_resnet50_2-9ba9bcbe.pth", 68883240, 81.602, 95.758,
                                     min_size=(1, 1), resize_size=232)
    DEFAULT = IMAGENET1K_V2


def resnet18(*, weights=None, progress=True, **kwargs):
    """ResNet-18; `weights`: a ``ResNet18_Weights`` member, its name, or a checkpoint path."""
    return build(partial(ResNet, BasicBlock, [2, 2, 2, 2]), ResNet18_Weights, weights,
                 progress, **kwargs)


def resnet34(*, weights=None, progress=True, **kwargs):
    """ResNet-34."""
    return build(partial(ResNet, BasicBlock, [3, 4, 6, 3]), ResNet34_Weights, weights,
                 progress, **kwargs)


def resnet50(*, weights=None, progress=True, **kwargs):
    """ResNet-50."""
    return build(partial(ResNet, Bottleneck, [3, 4, 6, 3]), ResNet50_Weights, weights,
                 progress, **kwargs)


def resnet101(*, weights=None, progress=True, **kwargs):
    """ResNet-101."""
    return build(partial(ResNet, Bottleneck, [3, 4, 23, 3]), ResNet101_Weights, weights,
                 progress, **kwargs)


def resnet152(*, weights=None, progress=True, **kwargs):
    """ResNet-152."""
    return build(partial(ResNet, Bottleneck, [3, 8, 36, 3]), ResNet152_Weights, weights,
                 progress, **kwargs)


def resnext50_32x4d(*, weights=None, progress=True, **kwargs):
    """ResNeXt-50 32x4d: 32 groups of 4 channels per group in the first stage's 3x3 conv."""
    return build(partial(ResNet, Bottleneck, [3, 4, 6, 3], groups=32, width_per_group=4),
                 ResNeXt50_32X4D_Weights, weights, progress, **kwargs)


def wide_resnet50_2(*, weights=None, progress=True, **kwargs):
    """Wide ResNet-50-2: ResNet-50 with bottlenecks twice as wide (outer 1x1s unchanged)."""
    return build(partial(ResNet, Bottleneck, [3, 4, 6, 3], width_per_group=128),
                 Wide_ResNet50_2_Weights, weights, progress, **kwargs)
