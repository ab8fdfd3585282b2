"""The deterministic kernels behind pipeflow.transforms (torchvision.transforms.functional).

Every function takes a PIL Image or a pipeflow Tensor image (``(..., C, H, W)``, on any
device) and gives the same kind back. PIL images go through the same PIL calls as
torchvision's PIL backend, so their outputs are torchvision's by construction; tensor
images follow torchvision's tensor backend (resize weights as torch.nn.functional.interpolate,
colour adjustments with its blend/HSV formulas). An ``EncodedImage`` (an undecoded file,
see ``decode(..., lazy=True)``) is decoded in full by any kernel that meets one."""
import numbers
import sys
from enum import Enum

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from .. import backend
from ..tensor import Tensor
from .image import EncodedImage, to_mode

__all__ = ["InterpolationMode", "adjust_brightness", "adjust_contrast", "adjust_hue",
           "adjust_saturation", "center_crop", "crop", "get_dimensions", "get_image_num_channels",
           "get_image_size", "hflip", "normalize", "pad", "pil_to_tensor", "resize",
           "resized_crop", "rgb_to_grayscale", "rotate", "to_grayscale", "to_pil_image", "to_rgb",
           "to_tensor", "vflip"]


class InterpolationMode(Enum):
    """torchvision's interpolation modes (the values are its strings)."""
    NEAREST = "nearest"
    NEAREST_EXACT = "nearest-exact"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"
    BOX = "box"
    HAMMING = "hamming"
    LANCZOS = "lanczos"


PIL_MODES = {InterpolationMode.NEAREST: Image.Resampling.NEAREST,
             InterpolationMode.NEAREST_EXACT: Image.Resampling.NEAREST,
             InterpolationMode.BILINEAR: Image.Resampling.BILINEAR,
             InterpolationMode.BICUBIC: Image.Resampling.BICUBIC,
             InterpolationMode.BOX: Image.Resampling.BOX,
             InterpolationMode.HAMMING: Image.Resampling.HAMMING,
             InterpolationMode.LANCZOS: Image.Resampling.LANCZOS}
_FROM_PIL = {int(Image.Resampling.NEAREST): InterpolationMode.NEAREST,
             int(Image.Resampling.BILINEAR): InterpolationMode.BILINEAR,
             int(Image.Resampling.BICUBIC): InterpolationMode.BICUBIC,
             int(Image.Resampling.BOX): InterpolationMode.BOX,
             int(Image.Resampling.HAMMING): InterpolationMode.HAMMING,
             int(Image.Resampling.LANCZOS): InterpolationMode.LANCZOS}


def interpolation_mode(value):
    """An InterpolationMode from itself, its string value or a PIL resampling constant."""
    if isinstance(value, InterpolationMode):
        return value
    if isinstance(value, str):
        return InterpolationMode(value.lower())
    if isinstance(value, numbers.Integral) and int(value) in _FROM_PIL:
        return _FROM_PIL[int(value)]
    raise TypeError("interpolation should be an InterpolationMode (or its string, or a PIL "
                    f"resampling constant), got {value!r}")


# --- what kind of image ---------------------------------------------------------------------
def _is_pil(img):
    return isinstance(img, Image.Image)


def _is_tensor(img):
    return isinstance(img, Tensor)


def materialize(img):
    """A decoded image: EncodedImages are decoded in full, anything else is returned."""
    return img.decode() if isinstance(img, EncodedImage) else img


def _check_image(img):
    img = materialize(img)
    if not (_is_pil(img) or _is_tensor(img)):
        raise TypeError(f"img should be PIL Image or pipeflow Tensor. Got {type(img)}")
    if _is_tensor(img) and img.ndim < 2:
        raise TypeError(f"Tensor image should have at least 2 dimensions, got {img.ndim}")
    return img


def get_dimensions(img):
    """[channels, height, width] of a PIL image, Tensor image (..., C, H, W) or EncodedImage."""
    if isinstance(img, EncodedImage):
        w, h = img.size
        return [Image.getmodebands(img.mode), h, w]
    img = _check_image(img)
    if _is_pil(img):
        w, h = img.size
        return [len(img.getbands()), h, w]
    shape = img.shape
    return [1 if len(shape) == 2 else shape[-3], shape[-2], shape[-1]]


def get_image_size(img):
    """[width, height], as torchvision's."""
    _, h, w = get_dimensions(img)
    return [w, h]


def get_image_num_channels(img):
    return get_dimensions(img)[0]


def _xp(t):
    return backend.array_module(t._data)


def _wrap_like(array):
    return Tensor._wrap(array)


def _max_value(dtype):
    if dtype.kind == "f":
        return 1.0
    if dtype.kind == "b":
        return 1
    return np.iinfo(dtype).max


# --- conversion -----------------------------------------------------------------------------
def to_tensor(pic):
    """PIL Image or HWC ndarray -> CHW Tensor; uint8 data become float32 in [0, 1] (x / 255)."""
    pic = materialize(pic)
    if isinstance(pic, np.ndarray):
        if pic.ndim not in (2, 3):
            raise ValueError(f"pic should be 2/3 dimensional. Got {pic.ndim} dimensions.")
        if pic.ndim == 2:
            pic = pic[:, :, None]
        img = np.ascontiguousarray(pic.transpose(2, 0, 1))
        if img.dtype == np.uint8:
            return _wrap_like(img.astype(np.float32) / np.float32(255))
        return _wrap_like(img)
    if not _is_pil(pic):
        raise TypeError(f"pic should be PIL Image or ndarray. Got {type(pic)}")
    nptype = {"I": np.int32, "I;16" if sys.byteorder == "little" else "I;16B": np.int16,
              "F": np.float32}.get(pic.mode, np.uint8)
    img = np.array(pic, nptype, copy=True)
    if pic.mode == "1":
        img = 255 * img
    img = img.reshape(pic.size[1], pic.size[0], len(pic.getbands()))
    img = np.ascontiguousarray(img.transpose(2, 0, 1))
    if img.dtype == np.uint8:
        return _wrap_like(img.astype(np.float32) / np.float32(255))
    return _wrap_like(img)


def pil_to_tensor(pic):
    """PIL Image -> CHW Tensor of the image's own dtype (uint8 for 8-bit modes), no scaling."""
    pic = materialize(pic)
    if not _is_pil(pic):
        raise TypeError(f"pic should be PIL Image. Got {type(pic)}")
    img = np.array(pic, copy=True)
    img = img.reshape(pic.size[1], pic.size[0], len(pic.getbands()))
    return _wrap_like(np.ascontiguousarray(img.transpose(2, 0, 1)))


def to_pil_image(pic, mode=None):
    """A CHW Tensor / HWC ndarray (uint8, or float in [0, 1]) -> PIL Image (a simple form of
    torchvision's: 1, 3 or 4 channels)."""
    if _is_tensor(pic):
        arr = pic.detach().numpy(force=True)
        if arr.ndim == 3:
            arr = arr.transpose(1, 2, 0)
    else:
        arr = np.asarray(pic)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.dtype.kind == "f":
        arr = (arr * 255).astype(np.uint8)  # torchvision's mul(255).byte(): truncation
    return Image.fromarray(arr, mode)


def to_rgb(img):
    """Three channels: a PIL image converted to 'RGB' (from L, CMYK, P, RGBA, ...), a
    1-channel Tensor image repeated; RGB images are returned as they are."""
    img = _check_image(img)
    if _is_pil(img):
        return to_mode(img, "RGB")
    c = get_image_num_channels(img)
    if c == 3:
        return img
    if c != 1:
        raise TypeError(f"to_rgb: a Tensor image with 1 or 3 channels, got {c}")
    xp = _xp(img)
    data = img._data if img.ndim > 2 else img._data[None]
    return _wrap_like(xp.ascontiguousarray(xp.broadcast_to(
        data, data.shape[:-3] + (3,) + data.shape[-2:])))


def normalize(tensor, mean, std, inplace=False):
    """(tensor - mean) / std per channel of a float image (..., C, H, W): a Tensor (through
    pipeflow ops, so differentiable) or a NumPy array."""
    if isinstance(tensor, np.ndarray):
        if tensor.dtype.kind != "f":
            raise TypeError(f"Input tensor should be a float tensor. Got {tensor.dtype}.")
        if tensor.ndim < 3:
            raise ValueError("Expected tensor to be a tensor image of size (..., C, H, W). Got "
                             f"tensor.size() = {tensor.shape}")
        m, s = _mean_std(np, mean, std, tensor.dtype)
        if inplace:
            tensor -= m
            tensor /= s
            return tensor
        return (tensor - m) / s
    if not _is_tensor(tensor):
        raise TypeError(f"img should be Tensor Image. Got {type(tensor)}")
    if not tensor.is_floating_point():
        raise TypeError(f"Input tensor should be a float tensor. Got {tensor.dtype}.")
    if tensor.ndim < 3:
        raise ValueError("Expected tensor to be a tensor image of size (..., C, H, W). Got "
                         f"tensor.size() = {tuple(tensor.shape)}")
    m, s = _mean_std(_xp(tensor), mean, std, tensor._data.dtype)
    m, s = Tensor._wrap(m), Tensor._wrap(s)
    if inplace:
        return tensor.sub_(m).div_(s)
    return (tensor - m) / s


def _mean_std(xp, mean, std, dtype):
    m = xp.asarray(np.asarray(_host(mean), dtype=dtype))
    s = xp.asarray(np.asarray(_host(std), dtype=dtype))
    if bool((s == 0).any()):
        raise ValueError(f"std evaluated to zero after conversion to {np.dtype(dtype)}, leading "
                         "to division by zero.")
    if m.ndim == 1:
        m = m.reshape(-1, 1, 1)
    if s.ndim == 1:
        s = s.reshape(-1, 1, 1)
    return m, s


def _host(values):
    if _is_tensor(values):
        return values.detach().numpy(force=True)
    return values


# --- geometry -------------------------------------------------------------------------------
def resized_output_size(height, width, size, max_size=None):
    """torchvision's _compute_resized_output_size: [new_h, new_w]. An int (or 1-sequence)
    sets the shorter side (the longer one by int() truncation), optionally capped by
    max_size on the longer side; an (h, w) pair is the size itself."""
    if isinstance(size, numbers.Integral):
        size = [int(size)]
    size = list(size)
    if len(size) == 1:
        short, long = (width, height) if width <= height else (height, width)
        requested = size[0]
        new_short, new_long = requested, int(requested * long / short)
        if max_size is not None:
            if max_size <= requested:
                raise ValueError(f"max_size = {max_size} must be strictly greater than the "
                                 f"requested size for the smaller edge size = {size}")
            if new_long > max_size:
                new_short, new_long = int(max_size * new_short / new_long), max_size
        new_w, new_h = (new_short, new_long) if width <= height else (new_long, new_short)
        return [new_h, new_w]
    if max_size is not None:
        raise ValueError("max_size should only be passed if size specifies the length of the "
                         "smaller edge, i.e. size should be an int or a sequence of length 1 in "
                         "torchscript mode.")
    return [int(size[0]), int(size[1])]


def resize(img, size, interpolation=InterpolationMode.BILINEAR, max_size=None, antialias=True):
    """Resize to `size` (see resized_output_size). PIL images: PIL's resize (always
    antialiased, as torchvision notes); Tensors: torch.nn.functional.interpolate's weights
    (bilinear/bicubic with align_corners=False, antialias as asked; nearest as torch's)."""
    interpolation = interpolation_mode(interpolation)
    if isinstance(img, EncodedImage):
        return _resize_encoded(img, size, interpolation, max_size)
    img = _check_image(img)
    _, h, w = get_dimensions(img)
    out_h, out_w = resized_output_size(h, w, size, max_size)
    if [h, w] == [out_h, out_w]:
        return img
    if _is_pil(img):
        return img.resize((out_w, out_h), PIL_MODES[interpolation])
    return _resize_tensor(img, out_h, out_w, interpolation, antialias)


def _resize_encoded(enc, size, interpolation, max_size):
    """Resize straight from the file: a JPEG to be shrunk 2x or more is decoded at a reduced
    scale (draft mode), then resized from the box that covers the whole image there."""
    w, h = enc.size
    out_h, out_w = resized_output_size(h, w, size, max_size)
    img, scale = enc.decode_at_least(out_w, out_h, (0, 0, w, h))
    if scale == 1:
        return resize(img, [out_h, out_w], interpolation)
    return img.resize((out_w, out_h), PIL_MODES[interpolation],
                      box=(0, 0, w / scale, h / scale))


def _aa_filter(mode):
    if mode is InterpolationMode.BILINEAR:
        def tri(x):
            x = np.abs(x)
            return np.where(x < 1, 1 - x, 0.0)
        return tri, 1.0
    a = -0.5

    def cubic(x):
        x = np.abs(x)
        return np.where(x < 1, ((a + 2) * x - (a + 3)) * x * x + 1,
                        np.where(x < 2, (((x - 5) * x + 8) * x - 4) * a, 0.0))
    return cubic, 2.0


def resize_weights(in_size, out_size, mode, antialias):
    """The (out_size, in_size) matrix M with out = M @ in along one axis, as torch's
    interpolate (align_corners=False) computes it; antialias as PIL (which torch's
    antialiased kernels follow)."""
    mode = interpolation_mode(mode)
    weights = np.zeros((out_size, in_size), np.float64)
    rows = np.arange(out_size)
    scale = in_size / out_size
    if mode in (InterpolationMode.NEAREST, InterpolationMode.NEAREST_EXACT):
        scale32 = np.float32(in_size) / np.float32(out_size)
        if out_size == in_size:
            src = rows
        elif mode is InterpolationMode.NEAREST:
            src = (rows // 2 if out_size == 2 * in_size
                   else np.floor(rows.astype(np.float32) * scale32).astype(np.int64))
        else:
            src = np.floor((rows + 0.5) * np.float64(scale32)).astype(np.int64)
        weights[rows, np.minimum(src, in_size - 1)] = 1.0
        return weights
    if mode not in (InterpolationMode.BILINEAR, InterpolationMode.BICUBIC):
        raise ValueError(f"tensor images support nearest, nearest-exact, bilinear and bicubic "
                         f"interpolation, not {mode.value}")
    if antialias:
        fn, half = _aa_filter(mode)
        support = half * scale if scale >= 1 else half
        invscale = 1 / scale if scale >= 1 else 1.0
        for i in range(out_size):
            center = scale * (i + 0.5)
            xmin = max(int(center - support + 0.5), 0)
            xmax = min(int(center + support + 0.5), in_size)
            taps = np.arange(xmin, xmax)
            w = fn((taps - center + 0.5) * invscale)
            total = w.sum()
            weights[i, xmin:xmax] = w / total if total != 0 else w
        return weights
    src = scale * (rows + 0.5) - 0.5
    if mode is InterpolationMode.BILINEAR:
        src = np.maximum(src, 0)
        i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
        lam = np.clip(src - i0, 0, 1)
        i1 = np.where(i0 < in_size - 1, i0 + 1, i0)
        np.add.at(weights, (rows, i0), 1 - lam)
        np.add.at(weights, (rows, i1), lam)
        return weights
    a = -0.75
    i0 = np.floor(src).astype(np.int64)
    t = src - i0

    def cc1(x):
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def cc2(x):
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    for k, c in enumerate((cc2(t + 1), cc1(t), cc1(1 - t), cc2(2 - t))):
        np.add.at(weights, (rows, np.clip(i0 - 1 + k, 0, in_size - 1)), c)
    return weights


def _resize_tensor(img, out_h, out_w, mode, antialias):
    data = img._data
    xp = _xp(img)
    h, w = data.shape[-2:]
    if mode in (InterpolationMode.NEAREST, InterpolationMode.NEAREST_EXACT):
        rows = resize_weights(h, out_h, mode, False).argmax(1)
        cols = resize_weights(w, out_w, mode, False).argmax(1)
        rows, cols = xp.asarray(rows), xp.asarray(cols)
        return _wrap_like(xp.ascontiguousarray(data[..., rows[:, None], cols[None, :]]))
    ftype = data.dtype if data.dtype.kind == "f" and data.dtype.itemsize >= 4 else np.float32
    x = data.astype(ftype, copy=False)
    if out_h != h:
        x = xp.matmul(xp.asarray(resize_weights(h, out_h, mode, antialias).astype(ftype)), x)
    if out_w != w:
        x = xp.matmul(x, xp.asarray(resize_weights(w, out_w, mode, antialias).T.astype(ftype)))
    if data.dtype.kind in "ui":
        info = np.iinfo(data.dtype)
        x = xp.clip(xp.rint(x), info.min, info.max)
    return _wrap_like(xp.ascontiguousarray(x.astype(data.dtype, copy=False)))


def crop(img, top, left, height, width):
    """The (height, width) region at (top, left); beyond the image the output is zeros (PIL's
    crop and torchvision's tensor crop both pad so)."""
    img = _check_image(img)
    if _is_pil(img):
        return img.crop((left, top, left + width, top + height))
    data = img._data
    h, w = data.shape[-2:]
    bottom, right = top + height, left + width
    if top >= 0 and left >= 0 and bottom <= h and right <= w:
        return _wrap_like(data[..., top:bottom, left:right].copy())
    xp = _xp(img)
    out = xp.zeros(data.shape[:-2] + (height, width), data.dtype)
    t0, l0, t1, l1 = max(top, 0), max(left, 0), min(bottom, h), min(right, w)
    if t1 > t0 and l1 > l0:
        out[..., t0 - top:t1 - top, l0 - left:l1 - left] = data[..., t0:t1, l0:l1]
    return _wrap_like(out)


def _pair(size, what="size"):
    if isinstance(size, numbers.Number):
        return int(size), int(size)
    size = tuple(size)
    if len(size) == 1:
        return int(size[0]), int(size[0])
    if len(size) != 2:
        raise ValueError(f"Please provide only two dimensions (h, w) for {what}.")
    return int(size[0]), int(size[1])


def center_crop(img, output_size):
    """The centred (h, w) crop; an image smaller than that is first zero-padded (left/top get
    the smaller half), as torchvision. Offsets use Python's round (half to even)."""
    img = _check_image(img)
    crop_h, crop_w = _pair(output_size, "output_size")
    _, h, w = get_dimensions(img)
    if crop_w > w or crop_h > h:
        padding = [(crop_w - w) // 2 if crop_w > w else 0, (crop_h - h) // 2 if crop_h > h else 0,
                   (crop_w - w + 1) // 2 if crop_w > w else 0,
                   (crop_h - h + 1) // 2 if crop_h > h else 0]
        img = pad(img, padding, fill=0)
        _, h, w = get_dimensions(img)
        if crop_w == w and crop_h == h:
            return img
    return crop(img, int(round((h - crop_h) / 2.0)), int(round((w - crop_w) / 2.0)), crop_h,
                crop_w)


def resized_crop(img, top, left, height, width, size, interpolation=InterpolationMode.BILINEAR,
                 antialias=True):
    """crop() then resize() to `size`."""
    img = crop(img, top, left, height, width)
    return resize(img, size, interpolation, antialias=antialias)


def hflip(img):
    img = _check_image(img)
    if _is_pil(img):
        return img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return _wrap_like(img._data[..., ::-1].copy())


def vflip(img):
    img = _check_image(img)
    if _is_pil(img):
        return img.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    return _wrap_like(img._data[..., ::-1, :].copy())


def _parse_fill(fill, img, name="fillcolor"):
    """torchvision's F_pil._parse_fill: the fill as PIL wants it for this image."""
    channels = len(img.getbands())
    if fill is None:
        fill = 0
    if isinstance(fill, (int, float)) and channels > 1:
        fill = tuple([fill] * channels)
    if isinstance(fill, (list, tuple)):
        if len(fill) == 1:
            fill = tuple(fill) * channels
        elif len(fill) != channels:
            raise ValueError(f"The number of elements in 'fill' does not match the number of "
                             f"channels of the image ({len(fill)} != {channels})")
        fill = tuple(fill)
    if img.mode != "F":
        fill = tuple(int(x) for x in fill) if isinstance(fill, tuple) else int(fill)
    return {name: fill}


def _padding_ltrb(padding):
    if isinstance(padding, numbers.Number):
        p = int(padding)
        return [p, p, p, p]
    padding = [int(p) for p in padding]
    if len(padding) == 1:
        return padding * 4
    if len(padding) == 2:
        return [padding[0], padding[1], padding[0], padding[1]]
    if len(padding) == 4:
        return padding
    raise ValueError("Padding must be an int or a 1, 2, or 4 element tuple, not a "
                     f"{len(padding)} element tuple")


_NP_MODES = {"edge": "edge", "reflect": "reflect", "symmetric": "symmetric"}


def pad(img, padding, fill=0, padding_mode="constant"):
    """Pad each border: padding is an int (all), (left/right, top/bottom) or (left, top,
    right, bottom); negative padding crops. padding_mode: constant (with `fill`, a number or
    one per channel for PIL images), edge, reflect (no edge repeat) or symmetric."""
    img = _check_image(img)
    if not isinstance(padding, (numbers.Number, tuple, list)):
        raise TypeError("Got inappropriate padding arg")
    if fill is not None and not isinstance(fill, (numbers.Number, tuple, list)):
        raise TypeError("Got inappropriate fill arg")
    if padding_mode not in ("constant", "edge", "reflect", "symmetric"):
        raise ValueError("Padding mode should be either constant, edge, reflect or symmetric")
    left, top, right, bottom = _padding_ltrb(padding)
    if _is_pil(img) and padding_mode == "constant" and min(left, top, right, bottom) >= 0:
        opts = _parse_fill(fill, img, name="fill")
        palette = img.getpalette() if img.mode == "P" else None
        out = ImageOps.expand(img, border=(left, top, right, bottom), **opts)
        if palette is not None:
            out.putpalette(palette)
        return out
    if _is_pil(img):
        palette = img.getpalette() if img.mode == "P" else None
        arr = np.asarray(img)
        _, h, w = get_dimensions(img)
        arr = arr[max(-top, 0):h - max(-bottom, 0), max(-left, 0):w - max(-right, 0)]
        widths = [(max(top, 0), max(bottom, 0)), (max(left, 0), max(right, 0))]
        widths += [(0, 0)] * (arr.ndim - 2)
        if padding_mode == "constant":
            value = _parse_fill(fill, img, name="fill")["fill"]
            out = np.stack([np.pad(arr[..., c], widths[:2], constant_values=v) for c, v in
                            enumerate(value)], -1) if arr.ndim == 3 else \
                np.pad(arr, widths, constant_values=value)
        else:
            out = np.pad(arr, widths, mode=_NP_MODES[padding_mode])
        out = Image.fromarray(np.ascontiguousarray(out), mode=img.mode if img.mode in
                              ("L", "RGB", "RGBA", "P", "F", "I", "CMYK", "LA") else None)
        if palette is not None:
            out.putpalette(palette)
        return out
    if not isinstance(fill, numbers.Number) and fill is not None:
        raise TypeError("tensor images take a number as fill")
    data, xp = img._data, _xp(img)
    h, w = data.shape[-2:]
    data = data[..., max(-top, 0):h - max(-bottom, 0), max(-left, 0):w - max(-right, 0)]
    widths = [(0, 0)] * (data.ndim - 2) + [(max(top, 0), max(bottom, 0)),
                                           (max(left, 0), max(right, 0))]
    if padding_mode == "constant":
        out = xp.pad(data, widths, mode="constant", constant_values=0 if fill is None else fill)
    else:
        out = xp.pad(data, widths, mode=_NP_MODES[padding_mode])
    return _wrap_like(xp.ascontiguousarray(out))


def rotate(img, angle, interpolation=InterpolationMode.NEAREST, expand=False, center=None,
           fill=None):
    """Rotate counter-clockwise by `angle` degrees about `center` (default: the image's
    centre) with PIL's rotate; expand=True grows the output to hold the whole image."""
    interpolation = interpolation_mode(interpolation)
    img = _check_image(img)
    if not _is_pil(img):
        raise TypeError("rotate supports PIL images only (convert a tensor with to_pil_image, "
                        "or rotate before ToTensor)")
    if center is not None:
        center = tuple(center)
    return img.rotate(angle, PIL_MODES[interpolation], expand, center, **_parse_fill(fill, img))


# --- colour ---------------------------------------------------------------------------------
def _check_factor(value, name):
    if value < 0:
        raise ValueError(f"{name} ({value}) is not non-negative.")


def _channels(img, allowed):
    c = get_image_num_channels(img)
    if c not in allowed:
        raise TypeError(f"Input image tensor permitted channel values are {allowed}, but found {c}")
    return c


def _blend(img1, img2, ratio):
    """(ratio * img1 + (1 - ratio) * img2) clamped to the dtype's range, in img1's dtype
    (an integer result truncates, as torchvision's .to(dtype))."""
    xp = backend.array_module(img1)
    ftype = _float_type(img1.dtype)
    out = ftype.type(ratio) * img1.astype(ftype, copy=False) + \
        ftype.type(1.0 - float(ratio)) * img2.astype(ftype, copy=False)
    out = xp.clip(out, 0, _max_value(img1.dtype))
    return out.astype(img1.dtype, copy=False)


def _float_type(dtype):
    """The dtype torch computes a mixed op in: the image's if floating, else float32."""
    return np.dtype(dtype) if np.dtype(dtype).kind == "f" else np.dtype(np.float32)


def _gray_array(data):
    """torchvision's tensor grayscale: 0.2989 R + 0.587 G + 0.114 B, cast back (truncating)."""
    ftype = _float_type(data.dtype)
    r, g, b = (data[..., c, :, :].astype(ftype, copy=False) for c in range(3))
    gray = ftype.type(0.2989) * r + ftype.type(0.587) * g + ftype.type(0.114) * b
    return gray.astype(data.dtype)[..., None, :, :]


def adjust_brightness(img, brightness_factor):
    """PIL: ImageEnhance.Brightness; tensors: blend with black."""
    _check_factor(brightness_factor, "brightness_factor")
    img = _check_image(img)
    if _is_pil(img):
        return ImageEnhance.Brightness(img).enhance(brightness_factor)
    _channels(img, (1, 3))
    xp = _xp(img)
    return _wrap_like(_blend(img._data, xp.zeros((), img._data.dtype), brightness_factor))


def adjust_contrast(img, contrast_factor):
    """PIL: ImageEnhance.Contrast; tensors: blend with the mean of the grayscale image."""
    _check_factor(contrast_factor, "contrast_factor")
    img = _check_image(img)
    if _is_pil(img):
        return ImageEnhance.Contrast(img).enhance(contrast_factor)
    c = _channels(img, (1, 3))
    data = img._data
    ftype = _float_type(data.dtype)
    gray = _gray_array(data) if c == 3 else data
    mean = gray.astype(ftype).mean(axis=(-3, -2, -1), keepdims=True)
    return _wrap_like(_blend(data, mean, contrast_factor))


def adjust_saturation(img, saturation_factor):
    """PIL: ImageEnhance.Color; tensors: blend with the grayscale image."""
    _check_factor(saturation_factor, "saturation_factor")
    img = _check_image(img)
    if _is_pil(img):
        return ImageEnhance.Color(img).enhance(saturation_factor)
    if _channels(img, (1, 3)) == 1:
        return img
    return _wrap_like(_blend(img._data, _gray_array(img._data), saturation_factor))


def adjust_hue(img, hue_factor):
    """Shift the hue by hue_factor (in [-0.5, 0.5], a fraction of the colour wheel). PIL:
    through PIL's 8-bit HSV, as torchvision; tensors: torchvision's float HSV formulas."""
    if not (-0.5 <= hue_factor <= 0.5):
        raise ValueError(f"hue_factor ({hue_factor}) is not in [-0.5, 0.5].")
    img = _check_image(img)
    if _is_pil(img):
        if img.mode in {"L", "1", "I", "F"}:
            return img
        mode = img.mode
        h, s, v = img.convert("HSV").split()
        np_h = np.array(h, dtype=np.uint8)
        np_h += np.int32(hue_factor * 255).astype(np.uint8)  # wraps around, as wanted
        return Image.merge("HSV", (Image.fromarray(np_h, "L"), s, v)).convert(mode)
    if _channels(img, (1, 3)) == 1:
        return img
    data, xp = img._data, _xp(img)
    orig = data.dtype
    x = data.astype(np.float32) / np.float32(255) if orig.kind != "f" else data
    hsv = _rgb2hsv(xp, x)
    h = xp.mod(hsv[..., 0, :, :] + hsv.dtype.type(hue_factor), 1.0).astype(hsv.dtype)
    out = _hsv2rgb(xp, h, hsv[..., 1, :, :], hsv[..., 2, :, :])
    if orig.kind != "f":
        out = (out * np.float32(_max_value(orig) + 1.0 - 1e-3)).astype(orig)
    return _wrap_like(out)


def _rgb2hsv(xp, img):
    r, g, b = img[..., 0, :, :], img[..., 1, :, :], img[..., 2, :, :]
    maxc, minc = img.max(axis=-3), img.min(axis=-3)
    eqc = maxc == minc
    cr = maxc - minc
    ones = xp.ones_like(maxc)
    s = cr / xp.where(eqc, ones, maxc)
    div = xp.where(eqc, ones, cr)
    rc, gc, bc = (maxc - r) / div, (maxc - g) / div, (maxc - b) / div
    hr = (maxc == r) * (bc - gc)
    hg = ((maxc == g) & (maxc != r)) * (2.0 + rc - bc)
    hb = ((maxc != g) & (maxc != r)) * (4.0 + gc - rc)
    h = (hr + hg + hb).astype(img.dtype)
    h = xp.fmod(h / img.dtype.type(6.0) + img.dtype.type(1.0), img.dtype.type(1.0))
    return xp.stack((h, s, maxc), axis=-3)


def _hsv2rgb(xp, h, s, v):
    one = h.dtype.type(1.0)
    i = xp.floor(h * h.dtype.type(6.0))
    f = h * h.dtype.type(6.0) - i
    i = i.astype(np.int32) % 6
    p = xp.clip(v * (one - s), 0.0, 1.0)
    q = xp.clip(v * (one - s * f), 0.0, 1.0)
    t = xp.clip(v * (one - s * (one - f)), 0.0, 1.0)
    table = ((v, q, p, p, t, v), (t, v, v, q, p, p), (p, p, t, v, v, q))
    out = xp.zeros(h.shape[:-2] + (3,) + h.shape[-2:], h.dtype)
    for c in range(3):
        for k in range(6):
            mask = i == k
            out[..., c, :, :] += xp.where(mask, table[c][k], 0).astype(h.dtype)
    return out


def rgb_to_grayscale(img, num_output_channels=1):
    """PIL: convert('L') (ITU-R 601-2 luma, PIL's rounding), stacked 3x when asked; tensors:
    torchvision's 0.2989/0.587/0.114 weights."""
    if num_output_channels not in (1, 3):
        raise ValueError("num_output_channels should be either 1 or 3")
    img = _check_image(img)
    if _is_pil(img):
        gray = img.convert("L")
        if num_output_channels == 1:
            return gray
        arr = np.array(gray, dtype=np.uint8)
        return Image.fromarray(np.dstack([arr, arr, arr]), "RGB")
    c = _channels(img, (1, 3))
    data, xp = img._data, _xp(img)
    gray = _gray_array(data) if c == 3 else data.copy()
    if num_output_channels == 3:
        gray = xp.ascontiguousarray(xp.broadcast_to(gray, gray.shape[:-3] + (3,) +
                                                    gray.shape[-2:]))
    return _wrap_like(gray)


to_grayscale = rgb_to_grayscale
