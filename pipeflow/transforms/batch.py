"""Batched transforms on the batch's device: a DataLoader delivers uint8 NHWC batches (cheap
to decode, collate and copy: a quarter of float32's bytes), and the conversion to normalised
float32 NCHW runs where the batch is, GPU included.

The work is two elementwise passes of the batch's array module (NumPy or CuPy): a subtract
that reads the uint8 NHWC batch through a transposed view and writes float NCHW, then an
in-place divide. (A uint8 batch has no gradient to record; through the autograd op layer the
same takes four passes and about 3x the time on the CPU.)"""
import contextlib

import numpy as np

from .. import backend, dtypes
from ..tensor import Tensor

__all__ = ["BatchNormalize", "to_float_nchw"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _affine(mean, std, channels, device, dtype):
    """(255 * mean, 255 * std) as (1, C, 1, 1) Tensors on `device`: x / 255 normalised by
    (mean, std) is (x - 255 mean) / (255 std)."""
    mean = np.zeros(channels) if mean is None else np.asarray(mean, np.float64).reshape(-1)
    std = np.ones(channels) if std is None else np.asarray(std, np.float64).reshape(-1)
    if len(mean) == 1:
        mean = np.repeat(mean, channels)
    if len(std) == 1:
        std = np.repeat(std, channels)
    if len(mean) != channels or len(std) != channels:
        raise ValueError(f"mean and std need one value per channel ({channels}), got "
                         f"{len(mean)} and {len(std)}")
    if np.any(std == 0):
        raise ValueError("std evaluated to zero, leading to division by zero.")
    np_dtype = dtypes.to_numpy(dtype)
    shift = (255.0 * mean).astype(np_dtype).reshape(1, channels, 1, 1)
    scale = (255.0 * std).astype(np_dtype).reshape(1, channels, 1, 1)
    return (Tensor._wrap(backend.to_device(shift, device)),
            Tensor._wrap(backend.to_device(scale, device)))


def to_float_nchw(batch, mean=None, std=None, dtype=None, _constants=None):
    """A uint8 NHWC batch (a Tensor on any device, or a NumPy array) -> float NCHW, x / 255
    normalised by per-channel mean and std (None: 0 and 1), on the batch's device.

    Computed as (x - 255 mean) / (255 std) in two passes (the transpose is folded into the
    first); the result equals torchvision's ``x.permute(0, 3, 1, 2).float().div(255)`` then
    Normalize to a few ulp (exactly x / 255 when mean and std are None). A single HWC image
    gives CHW."""
    if isinstance(batch, np.ndarray):
        batch = Tensor._wrap(batch)
    if not isinstance(batch, Tensor):
        raise TypeError(f"batch should be a pipeflow Tensor or a NumPy array, got "
                        f"{type(batch).__name__}")
    if batch.ndim not in (3, 4):
        raise ValueError(f"expected a uint8 (N, H, W, C) batch or (H, W, C) image, got shape "
                         f"{tuple(batch.shape)}")
    if batch.dtype != dtypes.uint8:
        raise TypeError(f"expected a uint8 batch, got {batch.dtype}")
    single = batch.ndim == 3
    if single:
        batch = batch.unsqueeze(0)
    dtype = dtypes.float32 if dtype is None else dtype
    channels = batch.shape[-1]
    device = batch.device
    shift, scale = _constants(device, channels, dtype) if _constants is not None else \
        _affine(mean, std, channels, device, dtype)
    x = batch._data.transpose(0, 3, 1, 2)  # a view: NCHW indexing over NHWC memory
    xp = backend.array_module(x)
    with (xp.cuda.Device(device.index) if device.type == "cuda" else contextlib.nullcontext()):
        out = xp.empty(x.shape, dtypes.to_numpy(dtype))
        xp.subtract(x, shift._data, out=out)
        xp.divide(out, scale._data, out=out)
    out = Tensor._wrap(out)
    return out[0] if single else out


class BatchNormalize:
    """``BatchNormalize(mean, std)(batch)``: to_float_nchw with fixed mean and std, whose
    device constants are made once per (device, channels, dtype)."""

    def __init__(self, mean=IMAGENET_MEAN, std=IMAGENET_STD, dtype=None):
        self.mean = None if mean is None else tuple(float(m) for m in np.ravel(mean))
        self.std = None if std is None else tuple(float(s) for s in np.ravel(std))
        self.dtype = dtype
        self._cache = {}

    def _constants(self, device, channels, dtype):
        key = (str(device), channels, str(dtype))
        if key not in self._cache:
            self._cache[key] = _affine(self.mean, self.std, channels, device, dtype)
        return self._cache[key]

    def __call__(self, batch):
        return to_float_nchw(batch, dtype=self.dtype, _constants=self._constants)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_cache"] = {}  # device arrays stay where they are
        return state

    def __repr__(self):
        return f"{self.__class__.__name__}(mean={self.mean}, std={self.std})"
