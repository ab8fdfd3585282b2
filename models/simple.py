"""Small models for small images (the digits of the default training job)."""
from .. import nn


class SmallCNN(nn.Module):
    """Two 3x3 conv blocks (conv, batch norm, ReLU, 2x2 max pool) and a classifier."""

    def __init__(self, in_channels=1, num_classes=10, width=32, image_size=8, dropout=0.25):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.MaxPool2d(2))
        side = image_size // 4
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(dropout),
                                        nn.Linear(2 * width * side * side, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x))


class MLP(nn.Module):
    """Flatten, then hidden layers with ReLU, then a linear classifier."""

    def __init__(self, in_features=64, num_classes=10, hidden=(128, 64)):
        super().__init__()
        layers, width = [nn.Flatten()], in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)
