"""Pretrained weights: what an entry records, and how a builder turns ``weights=`` into a model.

Each architecture file lists its weights next to the architecture they fit, as a
``WeightsEnum`` whose members are ``Weights`` entries (torchvision's layout)::

    class ResNet50_Weights(WeightsEnum):
        IMAGENET1K_V1 = Weights(url=..., sha256_prefix="0676ba61", preprocess=Preprocess(...),
                                meta={...})
        DEFAULT = IMAGENET1K_V1

    def resnet50(*, weights=None, progress=True, **kwargs):
        return build(_resnet50, ResNet50_Weights, weights, progress, **kwargs)
"""
import dataclasses
import enum
import os
import re
import sys

from .. import transforms as T
from ..download import url_file_name


@dataclasses.dataclass(frozen=True)
class Preprocess:
    """The preprocessing a checkpoint was trained for: resize the shorter side to
    `resize_size` with `interpolation`, center-crop `crop_size`, scale to [0, 1], normalise."""
    resize_size: int
    crop_size: int
    mean: tuple = (0.485, 0.456, 0.406)
    std: tuple = (0.229, 0.224, 0.225)
    interpolation: str = "bilinear"

    def transforms(self):
        """This preprocessing as transforms: an RGB PIL image -> a normalised float
        (3, crop_size, crop_size) Tensor."""
        return T.Compose([T.Resize(self.resize_size, interpolation=self.interpolation),
                          T.CenterCrop(self.crop_size), T.ToTensor(),
                          T.Normalize(self.mean, self.std)])


@dataclasses.dataclass(frozen=True)
class Weights:
    """One published checkpoint. `meta` holds at least ``categories`` (class names in index
    order; None for feature-extractor weights), ``num_params``, ``metrics`` (published
    accuracy, e.g. ``{"acc@1": 76.13}``) and ``dataset``."""
    url: str
    sha256_prefix: str
    preprocess: Preprocess
    meta: dict = dataclasses.field(hash=False, compare=False, repr=False)

    @property
    def file_name(self):
        return url_file_name(self.url)

    def transforms(self):  # torchvision's ``weights.transforms()``
        return self.preprocess.transforms()


def sha256_prefix_of(file_name):
    """The hash prefix a published file's name carries: ``resnet50-0676ba61.pth`` ->
    ``0676ba61`` (torch.hub's naming, also used for the CIFAR ResNet checkpoints)."""
    return file_name.rsplit("-", 1)[1].split(".")[0]


class WeightsEnum(enum.Enum):
    """The published weights of one architecture; members are ``Weights``."""

    @classmethod
    def resolve(cls, weights):
        """None, a member, a member's name (``"IMAGENET1K_V1"``, ``"DEFAULT"``) or a path to a
        checkpoint file -> None, the member, or the path."""
        if weights is None or isinstance(weights, cls):
            return weights
        if isinstance(weights, WeightsEnum):
            raise ValueError(f"{weights} are weights for another architecture; this one takes "
                             f"{cls.__name__}: {', '.join(cls.__members__)}")
        if isinstance(weights, str) and weights in cls.__members__:
            return cls[weights]
        if isinstance(weights, (str, os.PathLike)) and os.path.exists(weights):
            return os.fspath(weights)
        raise ValueError(f"weights={weights!r}: neither one of {cls.__name__}'s "
                         f"{', '.join(cls.__members__)} nor an existing checkpoint file")

    def __getattr__(self, name):  # ResNet50_Weights.DEFAULT.url, .meta, .preprocess
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.value, name)


def build(make_model, weights_enum, weights, progress=True, **kwargs):
    """Build ``make_model(**kwargs)`` and load `weights` (see ``WeightsEnum.resolve``) into it.
    Published weights fix ``num_classes`` to their number of categories."""
    weights = weights_enum.resolve(weights)
    categories = weights.meta["categories"] if isinstance(weights, WeightsEnum) else None
    if categories is not None:  # None: feature-extractor weights, any classifier fits
        classes = len(categories)
        if kwargs.setdefault("num_classes", classes) != classes:
            raise ValueError(f"{weights} predict {classes} classes, not "
                             f"num_classes={kwargs['num_classes']}")
    model = make_model(**kwargs)
    if weights is not None:
        from .weights_loading import load_weights
        load_weights(model, weights, progress)
    return model


def _plain(name):
    return re.sub(r"[^0-9a-z]", "", name.lower())


def get_model_weights(builder):
    """The WeightsEnum a builder takes (torchvision's ``get_model_weights``), found by name in
    the builder's module: resnet50 -> ResNet50_Weights, vgg16_bn -> VGG16_BN_Weights (or a
    qualified name ending so, e.g. CIFAR10_ResNet20_Weights); None if there is none."""
    want = _plain(builder.__name__) + "weights"
    enums = [v for v in vars(sys.modules[builder.__module__]).values()
             if isinstance(v, type) and issubclass(v, WeightsEnum) and v is not WeightsEnum]
    for fits in (want.__eq__, lambda name: name.endswith(want)):
        found = [e for e in enums if fits(_plain(e.__name__))]
        if len(found) == 1:
            return found[0]
    return None
