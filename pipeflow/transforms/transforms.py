"""The transform classes (torchvision.transforms): each is a callable on one image.

Random transforms draw from a NumPy Generator: the one given as ``generator=`` (a
np.random.Generator, a CPU pipeflow.Generator or an int seed) or, by default, the per-sample
stream of ``pipeflow.data.sample_generator()`` at call time: inside a DataLoader every
sample's draws then depend on (seed, epoch, sample index) alone, whichever worker loads it
and whatever the global random state; outside a loader that is a fresh generator per call.
(A generator given at construction is shared by the calls, and so, in a loader with workers,
copied into every worker: leave it None there.)"""
import math
import numbers
import warnings
from collections.abc import Sequence

import numpy as np

from . import functional as F
from .functional import InterpolationMode, interpolation_mode
from .image import EncodedImage

__all__ = ["CenterCrop", "ColorJitter", "Compose", "Grayscale", "Lambda", "Normalize", "Pad",
           "PILToTensor", "RandomApply", "RandomCrop", "RandomGrayscale",
           "RandomHorizontalFlip", "RandomResizedCrop", "RandomRotation", "RandomVerticalFlip",
           "Resize", "ToTensor"]


def resolve_generator(generator=None):
    """The NumPy Generator to draw from: `generator` (np.random.Generator, CPU
    pipeflow.Generator or int seed) or the current sample's stream."""
    if generator is None:
        from ..data.worker import sample_generator
        return sample_generator()
    if isinstance(generator, np.random.Generator):
        return generator
    rng = getattr(generator, "_rng", None)  # a pipeflow.Generator
    if isinstance(rng, np.random.Generator):
        return rng
    raise TypeError("generator should be a numpy.random.Generator, a CPU pipeflow.Generator, "
                    f"an int seed or None, got {type(generator).__name__}")


class _Random:
    """Holds the generator= of a random transform."""

    def _init_generator(self, generator):
        if isinstance(generator, numbers.Integral) and not isinstance(generator, bool):
            generator = np.random.default_rng(int(generator))
        if generator is not None:
            resolve_generator(generator)  # refuse a wrong type now, not at the first call
        self.generator = generator

    def _rng(self):
        return resolve_generator(self.generator)


def _setup_size(size, error_msg="Please provide only two dimensions (h, w) for size."):
    if isinstance(size, numbers.Number):
        return int(size), int(size)
    if isinstance(size, Sequence) and len(size) == 1:
        return int(size[0]), int(size[0])
    if not isinstance(size, Sequence) or len(size) != 2:
        raise ValueError(error_msg)
    return int(size[0]), int(size[1])


class Compose:
    """Apply the transforms in turn."""

    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, img):
        for t in self.transforms:
            img = t(img)
        return img

    def __repr__(self):
        body = "".join(f"\n    {t}" for t in self.transforms)
        return f"{self.__class__.__name__}({body}\n)"


class ToTensor:
    """PIL Image / HWC ndarray -> CHW float32 Tensor in [0, 1] (uint8 data / 255)."""

    def __call__(self, pic):
        return F.to_tensor(pic)

    def __repr__(self):
        return f"{self.__class__.__name__}()"


class PILToTensor:
    """PIL Image -> CHW Tensor of its own dtype (uint8), unscaled."""

    def __call__(self, pic):
        return F.pil_to_tensor(pic)

    def __repr__(self):
        return f"{self.__class__.__name__}()"


class Normalize:
    """(x - mean) / std per channel, on a float (..., C, H, W) Tensor or NumPy array."""

    def __init__(self, mean, std, inplace=False):
        self.mean, self.std, self.inplace = mean, std, inplace

    def __call__(self, tensor):
        return F.normalize(tensor, self.mean, self.std, self.inplace)

    def __repr__(self):
        return f"{self.__class__.__name__}(mean={self.mean}, std={self.std})"


class Resize:
    """Resize to `size`: an int (or [n]) sets the shorter side, keeping the aspect ratio (the
    longer side int()-truncated, at most max_size); (h, w) sets both. Antialiasing is always
    on for PIL images (PIL's resize); for Tensors as `antialias` says. Takes an EncodedImage
    (decode(..., lazy=True)): a JPEG shrunk 2x or more is decoded in draft mode."""

    def __init__(self, size, interpolation=InterpolationMode.BILINEAR, max_size=None,
                 antialias=True):
        if not isinstance(size, (int, Sequence)):
            raise TypeError(f"Size should be int or sequence. Got {type(size)}")
        if isinstance(size, Sequence) and len(size) not in (1, 2):
            raise ValueError("If size is a sequence, it should have 1 or 2 values")
        self.size, self.max_size, self.antialias = size, max_size, antialias
        self.interpolation = interpolation_mode(interpolation)

    def __call__(self, img):
        return F.resize(img, self.size, self.interpolation, self.max_size, self.antialias)

    def __repr__(self):
        return (f"{self.__class__.__name__}(size={self.size}, interpolation="
                f"{self.interpolation.value}, max_size={self.max_size}, "
                f"antialias={self.antialias})")


class CenterCrop:
    """The centred (h, w) crop (zero-padded first when the image is smaller)."""

    def __init__(self, size):
        self.size = _setup_size(size)

    def __call__(self, img):
        return F.center_crop(img, self.size)

    def __repr__(self):
        return f"{self.__class__.__name__}(size={self.size})"


class Pad:
    """Pad the borders: `padding` int / (lr, tb) / (l, t, r, b); padding_mode constant (with
    `fill`), edge, reflect or symmetric."""

    def __init__(self, padding, fill=0, padding_mode="constant"):
        if not isinstance(padding, (numbers.Number, tuple, list)):
            raise TypeError("Got inappropriate padding arg")
        if not isinstance(fill, (numbers.Number, tuple, list)):
            raise TypeError("Got inappropriate fill arg")
        if padding_mode not in ("constant", "edge", "reflect", "symmetric"):
            raise ValueError("Padding mode should be either constant, edge, reflect or symmetric")
        if isinstance(padding, Sequence) and len(padding) not in (1, 2, 4):
            raise ValueError("Padding must be an int or a 1, 2, or 4 element tuple, not a "
                             f"{len(padding)} element tuple")
        self.padding, self.fill, self.padding_mode = padding, fill, padding_mode

    def __call__(self, img):
        return F.pad(img, self.padding, self.fill, self.padding_mode)

    def __repr__(self):
        return (f"{self.__class__.__name__}(padding={self.padding}, fill={self.fill}, "
                f"padding_mode={self.padding_mode})")


class Lambda:
    """A user function as a transform."""

    def __init__(self, lambd):
        if not callable(lambd):
            raise TypeError(f"Argument lambd should be callable, got {type(lambd).__name__!r}")
        self.lambd = lambd

    def __call__(self, img):
        return self.lambd(img)

    def __repr__(self):
        return f"{self.__class__.__name__}()"


class Grayscale:
    """To grayscale with 1 or 3 (equal) channels."""

    def __init__(self, num_output_channels=1):
        self.num_output_channels = num_output_channels

    def __call__(self, img):
        return F.rgb_to_grayscale(img, self.num_output_channels)

    def __repr__(self):
        return f"{self.__class__.__name__}(num_output_channels={self.num_output_channels})"


class RandomGrayscale(_Random):
    """Grayscale with probability p, keeping the number of channels."""

    def __init__(self, p=0.1, generator=None):
        self.p = p
        self._init_generator(generator)

    def __call__(self, img):
        img = F.materialize(img)
        channels = F.get_image_num_channels(img)
        if self._rng().random() < self.p:
            return F.rgb_to_grayscale(img, num_output_channels=channels)
        return img

    def __repr__(self):
        return f"{self.__class__.__name__}(p={self.p})"


class RandomHorizontalFlip(_Random):
    """Mirror left-right with probability p."""

    def __init__(self, p=0.5, generator=None):
        self.p = p
        self._init_generator(generator)

    def __call__(self, img):
        img = F.materialize(img)
        return F.hflip(img) if self._rng().random() < self.p else img

    def __repr__(self):
        return f"{self.__class__.__name__}(p={self.p})"


class RandomVerticalFlip(RandomHorizontalFlip):
    """Flip top-bottom with probability p."""

    def __call__(self, img):
        img = F.materialize(img)
        return F.vflip(img) if self._rng().random() < self.p else img


class RandomApply(_Random):
    """Apply the list of transforms with probability p."""

    def __init__(self, transforms, p=0.5, generator=None):
        self.transforms, self.p = list(transforms), p
        self._init_generator(generator)

    def __call__(self, img):
        if self.p < self._rng().random():
            return img
        for t in self.transforms:
            img = t(img)
        return img

    def __repr__(self):
        body = "".join(f"\n    {t}" for t in self.transforms)
        return f"{self.__class__.__name__}(\n    p={self.p}{body}\n)"


class RandomCrop(_Random):
    """A random (h, w) crop, after optional `padding` (as Pad) and, with pad_if_needed, padding
    each side of a too-small dimension by the shortfall (torchvision pads both sides so)."""

    def __init__(self, size, padding=None, pad_if_needed=False, fill=0, padding_mode="constant",
                 generator=None):
        self.size = _setup_size(size)
        self.padding, self.pad_if_needed = padding, pad_if_needed
        self.fill, self.padding_mode = fill, padding_mode
        self._init_generator(generator)

    @staticmethod
    def get_params(img, output_size, rng=None):
        """(i, j, h, w): a uniformly placed output_size crop."""
        _, h, w = F.get_dimensions(img)
        th, tw = output_size
        if h < th or w < tw:
            raise ValueError(f"Required crop size {(th, tw)} is larger than input image size "
                             f"{(h, w)}")
        if w == tw and h == th:
            return 0, 0, h, w
        rng = resolve_generator(rng)
        i = int(rng.integers(0, h - th + 1))
        j = int(rng.integers(0, w - tw + 1))
        return i, j, th, tw

    def __call__(self, img):
        img = F.materialize(img)
        if self.padding is not None:
            img = F.pad(img, self.padding, self.fill, self.padding_mode)
        _, height, width = F.get_dimensions(img)
        if self.pad_if_needed and width < self.size[1]:
            img = F.pad(img, [self.size[1] - width, 0], self.fill, self.padding_mode)
        if self.pad_if_needed and height < self.size[0]:
            img = F.pad(img, [0, self.size[0] - height], self.fill, self.padding_mode)
        i, j, h, w = self.get_params(img, self.size, self._rng())
        return F.crop(img, i, j, h, w)

    def __repr__(self):
        return f"{self.__class__.__name__}(size={self.size}, padding={self.padding})"


class RandomResizedCrop(_Random):
    """A random crop of random area (scale, a fraction of the image's) and aspect ratio
    (ratio, drawn log-uniformly), resized to `size`: torchvision's Inception-style crop.
    Takes an EncodedImage: the crop is drawn on the full image's size and, when it shrinks
    2x or more, decoded from a draft-mode (reduced) JPEG."""

    def __init__(self, size, scale=(0.08, 1.0), ratio=(3.0 / 4.0, 4.0 / 3.0),
                 interpolation=InterpolationMode.BILINEAR, antialias=True, generator=None):
        self.size = _setup_size(size)
        if not isinstance(scale, Sequence):
            raise TypeError("Scale should be a sequence")
        if not isinstance(ratio, Sequence):
            raise TypeError("Ratio should be a sequence")
        if scale[0] > scale[1] or ratio[0] > ratio[1]:
            warnings.warn("Scale and ratio should be of kind (min, max)")
        self.scale, self.ratio = tuple(scale), tuple(ratio)
        self.interpolation = interpolation_mode(interpolation)
        self.antialias = antialias
        self._init_generator(generator)

    @staticmethod
    def get_params(img, scale, ratio, rng=None):
        """(i, j, h, w) as torchvision: up to 10 tries of an area uniform in scale * area and a
        log-uniform aspect ratio that fit the image, else the central crop of the whole image
        with its ratio clamped to `ratio`."""
        _, height, width = F.get_dimensions(img)
        area = height * width
        rng = resolve_generator(rng)
        log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
        for _ in range(10):
            target_area = area * rng.uniform(scale[0], scale[1])
            aspect_ratio = math.exp(rng.uniform(log_ratio[0], log_ratio[1]))
            w = int(round(math.sqrt(target_area * aspect_ratio)))
            h = int(round(math.sqrt(target_area / aspect_ratio)))
            if 0 < w <= width and 0 < h <= height:
                i = int(rng.integers(0, height - h + 1))
                j = int(rng.integers(0, width - w + 1))
                return i, j, h, w
        in_ratio = float(width) / float(height)
        if in_ratio < min(ratio):
            w = width
            h = int(round(w / min(ratio)))
        elif in_ratio > max(ratio):
            h = height
            w = int(round(h * max(ratio)))
        else:
            w, h = width, height
        return (height - h) // 2, (width - w) // 2, h, w

    def __call__(self, img):
        i, j, h, w = self.get_params(img, self.scale, self.ratio, self._rng())
        if isinstance(img, EncodedImage):
            out_h, out_w = self.size
            decoded, s = img.decode_at_least(out_w, out_h, (j, i, j + w, i + h))
            if s != 1:
                return decoded.resize((out_w, out_h), F.PIL_MODES[self.interpolation],
                                      box=(j / s, i / s, (j + w) / s, (i + h) / s))
            img = decoded
        return F.resized_crop(img, i, j, h, w, self.size, self.interpolation, self.antialias)

    def __repr__(self):
        return (f"{self.__class__.__name__}(size={self.size}, scale={self.scale}, ratio="
                f"{self.ratio}, interpolation={self.interpolation.value}, "
                f"antialias={self.antialias})")


def _check_input(value, name, center=1, bound=(0, float("inf")), clip_first_on_zero=True):
    """ColorJitter's argument: a number v -> [center - v, center + v]; None means no change."""
    if isinstance(value, numbers.Number):
        if value < 0:
            raise ValueError(f"If {name} is a single number, it must be non negative.")
        value = [center - float(value), center + float(value)]
        if clip_first_on_zero:
            value[0] = max(value[0], 0.0)
    elif isinstance(value, (tuple, list)) and len(value) == 2:
        value = [float(value[0]), float(value[1])]
    else:
        raise TypeError(f"{name} should be a single number or a list/tuple with length 2.")
    if not bound[0] <= value[0] <= value[1] <= bound[1]:
        raise ValueError(f"{name} values should be between {bound}, but got {value}.")
    if value[0] == value[1] == center:
        return None
    return tuple(value)


class ColorJitter(_Random):
    """Random brightness, contrast, saturation and hue changes, applied in a random order.
    Each argument: a number v (a factor uniform in [max(0, 1 - v), 1 + v]; hue: [-v, v]) or a
    (min, max) pair."""

    def __init__(self, brightness=0, contrast=0, saturation=0, hue=0, generator=None):
        self.brightness = _check_input(brightness, "brightness")
        self.contrast = _check_input(contrast, "contrast")
        self.saturation = _check_input(saturation, "saturation")
        self.hue = _check_input(hue, "hue", center=0, bound=(-0.5, 0.5),
                                clip_first_on_zero=False)
        self._init_generator(generator)

    @staticmethod
    def get_params(brightness, contrast, saturation, hue, rng=None):
        """(order, b, c, s, h): a permutation of the four adjustments (0 brightness, 1
        contrast, 2 saturation, 3 hue) and a factor for each one that is not None."""
        rng = resolve_generator(rng)
        fn_idx = [int(k) for k in rng.permutation(4)]
        b = None if brightness is None else float(rng.uniform(brightness[0], brightness[1]))
        c = None if contrast is None else float(rng.uniform(contrast[0], contrast[1]))
        s = None if saturation is None else float(rng.uniform(saturation[0], saturation[1]))
        h = None if hue is None else float(rng.uniform(hue[0], hue[1]))
        return fn_idx, b, c, s, h

    def __call__(self, img):
        img = F.materialize(img)
        fn_idx, b, c, s, h = self.get_params(self.brightness, self.contrast, self.saturation,
                                             self.hue, self._rng())
        for fn_id in fn_idx:
            if fn_id == 0 and b is not None:
                img = F.adjust_brightness(img, b)
            elif fn_id == 1 and c is not None:
                img = F.adjust_contrast(img, c)
            elif fn_id == 2 and s is not None:
                img = F.adjust_saturation(img, s)
            elif fn_id == 3 and h is not None:
                img = F.adjust_hue(img, h)
        return img

    def __repr__(self):
        return (f"{self.__class__.__name__}(brightness={self.brightness}, contrast="
                f"{self.contrast}, saturation={self.saturation}, hue={self.hue})")


class RandomRotation(_Random):
    """Rotate by an angle uniform in degrees ((min, max), or d for (-d, d)) with PIL's rotate:
    interpolation (NEAREST by default), expand, center (x, y), fill."""

    def __init__(self, degrees, interpolation=InterpolationMode.NEAREST, expand=False,
                 center=None, fill=0, generator=None):
        if isinstance(degrees, numbers.Number):
            if degrees < 0:
                raise ValueError("If degrees is a single number, it must be positive.")
            degrees = [-float(degrees), float(degrees)]
        elif not isinstance(degrees, Sequence) or len(degrees) != 2:
            raise ValueError("If degrees is a sequence, it must be of len 2.")
        self.degrees = [float(d) for d in degrees]
        if center is not None and (not isinstance(center, Sequence) or len(center) != 2):
            raise ValueError("If center is a sequence, it must be of len 2.")
        if fill is None:
            fill = 0
        elif not isinstance(fill, (Sequence, numbers.Number)):
            raise TypeError("Fill should be either a sequence or a number.")
        self.interpolation = interpolation_mode(interpolation)
        self.expand, self.center, self.fill = expand, center, fill
        self._init_generator(generator)

    @staticmethod
    def get_params(degrees, rng=None):
        """The angle, uniform in [degrees[0], degrees[1]]."""
        return float(resolve_generator(rng).uniform(float(degrees[0]), float(degrees[1])))

    def __call__(self, img):
        img = F.materialize(img)
        angle = self.get_params(self.degrees, self._rng())
        return F.rotate(img, angle, self.interpolation, self.expand, self.center, self.fill)

    def __repr__(self):
        return (f"{self.__class__.__name__}(degrees={self.degrees}, interpolation="
                f"{self.interpolation.value}, expand={self.expand}, center={self.center}, "
                f"fill={self.fill})")
