"""Decoding image files, with JPEG draft mode where the image is to be shrunk anyway.

A JPEG can be decoded at 1/2, 1/4 or 1/8 scale for a fraction of the full decode's cost
(the DCT is scaled: no full-size pixels are ever made). ``decode(src, target_size)`` does so
when the decoded image is to be shrunk at least 2x towards `target_size`, and the result is
never smaller than `target_size`. ``decode(src, lazy=True)`` gives an EncodedImage: the file
opened, its size read from the header, nothing decoded. Resize and RandomResizedCrop take one
and decide the scale themselves: the crop box is drawn in the full image's coordinates (so
the random draws are those of a full decode) and carried onto the reduced image exactly
(PIL's resize from a fractional box), so the output is nearly the full decode's."""
import io
import math
import os

import numpy as np
from PIL import Image

__all__ = ["EncodedImage", "decode"]


try:  # libjpeg-turbo through simplejpeg: ~9x faster than PIL on small JPEGs, 2x on photos
    import simplejpeg
except ImportError:  # pragma: no cover - a dependency; PIL does the work without it
    simplejpeg = None


def decode_jpeg_rgb(data):
    """The RGB pixels (H, W, 3 uint8) of JPEG bytes through libjpeg-turbo, grayscale
    converted; None where it can't (not a JPEG, CMYK, damaged): decode with PIL then."""
    if simplejpeg is None or data[:2] != b"\xff\xd8":
        return None
    try:
        return simplejpeg.decode_jpeg(data, colorspace="RGB")
    except ValueError:
        return None


def decode_rgb(data):
    """A PIL RGB image from encoded bytes: libjpeg-turbo for JPEGs, PIL for the rest."""
    pixels = decode_jpeg_rgb(data)
    if pixels is not None:
        return Image.fromarray(pixels)
    return to_mode(_open(data), "RGB")


def decode_rgb_array(data):
    """The RGB pixels (H, W, 3 uint8) of encoded bytes, for pipelines that stay in arrays
    (e.g. ``ArrowShards(root, loader=decode_rgb_array)``)."""
    pixels = decode_jpeg_rgb(data)
    return pixels if pixels is not None else np.asarray(to_mode(_open(data), "RGB"))


def _source(src):
    """A path (str / PathLike) or bytes; file objects are read into bytes."""
    if isinstance(src, (str, os.PathLike)):
        return os.fspath(src)
    if isinstance(src, (bytes, bytearray, memoryview)):
        return bytes(src)
    if hasattr(src, "read"):
        return src.read()
    raise TypeError(f"expected a path, bytes or a file object, got {type(src).__name__}")


def _open(source):
    return Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)


def to_mode(img, mode):
    """`img` in `mode` ('RGB' from L, CMYK, P, RGBA, ...); mode None keeps the image's."""
    if mode is None or img.mode == mode:
        return img
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")  # palette transparency: PIL asks for RGBA in between
    return img.convert(mode)


class EncodedImage:
    """An image file, opened but not decoded: ``size`` (w, h) and ``format`` from its header,
    ``mode`` the mode it decodes to ('RGB' unless asked otherwise). decode() decodes it (at a
    reduced scale when asked for less); transforms meeting one decode it in full unless they
    can use a reduced decode (Resize, RandomResizedCrop)."""

    def __init__(self, src, mode="RGB"):
        self.source = _source(src)
        with _open(self.source) as im:
            self.size, self.format, self.file_mode = im.size, im.format, im.mode
        self.mode = mode if mode is not None else self.file_mode

    @property
    def width(self):
        return self.size[0]

    @property
    def height(self):
        return self.size[1]

    def __repr__(self):
        return (f"EncodedImage(format={self.format}, size={self.size}, file_mode="
                f"{self.file_mode}, mode={self.mode})")

    def decode(self, target_size=None):
        """The image in self.mode; with target_size ((w, h), or n for (n, n)) a JPEG at least
        2x as large in both dims is decoded at the smallest scale (1/2, 1/4, 1/8) that is still
        at least target_size."""
        img, _ = self._decode(self._request(target_size))
        return img

    def decode_at_least(self, out_w, out_h, box):
        """(image, scale) for resizing the region `box` (left, top, right, bottom, in full-image
        pixels) to (out_w, out_h): the region is in image / scale coordinates on the image
        returned. A JPEG is decoded reduced only when the region shrinks 2x or more in both
        dims, and the reduced region is never smaller than the output."""
        left, top, right, bottom = box
        w, h = right - left, bottom - top
        if self.format != "JPEG" or w < 2 * out_w or h < 2 * out_h:
            return self._decode(None)
        full_w, full_h = self.size
        # PIL picks the largest scale s with s <= W // req_w and s <= H // req_h, so the region
        # on the reduced image, w / s, is at least out_w.
        return self._decode((math.ceil(full_w * out_w / w), math.ceil(full_h * out_h / h)))

    def _request(self, target_size):
        if target_size is None:
            return None
        tw, th = (target_size, target_size) if isinstance(target_size, int) else target_size
        if self.format != "JPEG" or self.size[0] < 2 * tw or self.size[1] < 2 * th:
            return None
        return int(tw), int(th)

    def _decode(self, request):
        im = _open(self.source)
        scale = 1
        try:
            if request is not None:
                drafted = im.draft(im.mode, request)
                if drafted is not None:
                    scale = round(self.size[0] / drafted[1][2])
            im.load()  # reads the pixels and closes a file PIL opened itself
        except BaseException:
            im.close()
            raise
        return to_mode(im, self.mode), scale


def decode(src, target_size=None, mode="RGB", lazy=False):
    """Decode an image file (path, bytes or file object) to a PIL image in `mode` (default
    'RGB': grayscale, CMYK, palette and RGBA images are converted; None keeps the file's).

    target_size, (w, h) or n for (n, n): the smallest size the image is to keep. A JPEG at least
    twice that in both dims is decoded in draft mode at 1/2, 1/4 or 1/8 scale, never below
    target_size (for Resize(n) then CenterCrop, pass n). lazy=True returns an EncodedImage,
    which Resize and RandomResizedCrop decode at the scale their output needs."""
    image = EncodedImage(src, mode)
    if lazy:
        if target_size is not None:
            raise ValueError("lazy=True leaves the scale to the transforms: no target_size")
        return image
    return image.decode(target_size)
