"""AlexNet as torchvision defines it: the single-GPU variant of "One weird trick for
parallelizing convolutional neural networks" (64-192-384-256-256 channels), not the
two-tower network of the original paper."""
from .. import nn
from ._api import WeightsEnum, build
from ._torchvision import imagenet_weights

__all__ = ["AlexNet", "AlexNet_Weights", "alexnet"]


class AlexNet(nn.Module):
    """Five convolutions with three max pools, pooled to 6x6, then three linear layers."""

    def __init__(self, num_classes=1000, dropout=0.5):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2))
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True),
            nn.Dropout(p=dropout), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes))

    def forward(self, x):
        x = self.avgpool(self.features(x))
        return self.classifier(x.flatten(1))


class AlexNet_Weights(WeightsEnum):
    IMAGENET1K_V1 = imagenet_weights("alexnet-owt-7be5be79.pth", 61100840, 56.522, 79.066,
                                     min_size=(63, 63))
    DEFAULT = IMAGENET1K_V1


def alexnet(*, weights=None, progress=True, **kwargs):
    """AlexNet; `weights`: an ``AlexNet_Weights`` member, its name, or a checkpoint path."""
    return build(AlexNet, AlexNet_Weights, weights, progress, **kwargs)
