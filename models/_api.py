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


@dataclasses.dataclass(frozen=True)
class Preprocess:
    """The preprocessing a checkpoint was trained for: resize the shorter side to
    `resize_size` with `interpolation`, center-crop `crop_size`, scale to [0, 1], normalise."""
    resize_size: int
    crop_size: int
    mean: tuple = (0.485, 0.456, 0.406)
    std: tuple = (0.229, 0.224, 0.225)
    interpolation: str = "bilinear"


@dataclasses.dataclass(frozen=True)
class Weights:
    """One published checkpoint. `meta` holds at least ``categories`` (class names, index
    order), ``num_params``, ``metrics`` (published accuracy, e.g. ``{"acc@1": 76.13}``) and
    ``dataset``."""
    url: str
    sha256_prefix: str
    preprocess: Preprocess
    meta: dict = dataclasses.field(hash=False, compare=False)

    @property
    def file_name(self):
        return self.url.rsplit("/", 1)[-1]


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
    if isinstance(weights, WeightsEnum):
        classes = len(weights.meta["categories"])
        if kwargs.setdefault("num_classes", classes) != classes:
            raise ValueError(f"{weights} predict {classes} classes, not "
                             f"num_classes={kwargs['num_classes']}")
    model = make_model(**kwargs)
    if weights is not None:
        from .weights_loading import load_weights
        load_weights(model, weights, progress)
    return model
