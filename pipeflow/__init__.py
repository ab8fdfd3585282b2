"""pipeflow: a data-pipeline-first deep-learning framework with PyTorch's API.

    import pipeflow as pf
    w = pf.randn(3, 2, requires_grad=True)
    loss = (pf.ones(4, 3) @ w).relu().sum()
    loss.backward()          # w.grad = d loss / d w
"""
from . import autograd, backend, dtypes
from .backend import device
from .dtypes import (bool_ as bool, dtype, float16, float32, float64, int8, int16, int32,
                     int64, uint8)
from .tensor import Size, Tensor
from .factories import (arange, as_tensor, empty, empty_like, eye, from_dlpack, from_numpy, full,
                        full_like, linspace, normal, ones, ones_like, rand, rand_like, randint,
                        randint_like, randn, randn_like, randperm, tensor, zeros, zeros_like)
from .random import Generator, get_rng_state, initial_seed, manual_seed, seed, set_rng_state
from .autograd import enable_grad, inference_mode, is_grad_enabled, no_grad, set_grad_enabled
from .ops import (abs, add, amax, amin, argmax, argmin, bmm, broadcast_to, cat, ceil, chunk,
                  clamp, clone, cos, cumsum, div, einsum, erf, exp, expand, flatten, flip, floor,
                  gather, index_select, isfinite, isinf, isnan, log, log1p, log_softmax,
                  logsumexp, masked_fill, matmul, maximum, mean, minimum, mm, mul, neg, norm,
                  one_hot, permute, pow, relu, repeat, reshape, round, rsqrt, scatter_add,
                  sigmoid, sign, sin, softmax, split, sqrt, squeeze, stack, std, sub, tanh,
                  transpose, trunc, unbind, unsqueeze, var, where)
from .ops import all_ as all, any_ as any, max_ as max, min_ as min, sum_ as sum
from .ops.shape import concat, concatenate
from . import data, io, nn, optim, transforms  # noqa: E402  (after the ops they build on)
from .io import load, save  # noqa: E402
from . import models  # noqa: E402  (the zoo builds on nn; it imports pipeflow's parts)

if dtypes.ml_dtypes is not None:
    from .dtypes import bfloat16

half, float, double = float16, float32, float64
short, int, long = int16, int32, int64
clip = clamp

from .ops.shape import pad


def is_tensor(obj):
    return isinstance(obj, Tensor)


def numel(t):
    return t.numel()


class cuda:
    """``pf.cuda.is_available()``, ``pf.cuda.device_count()``, ``pf.cuda.synchronize()``."""

    is_available = staticmethod(backend.cuda_available)
    device_count = staticmethod(backend.device_count)

    @staticmethod
    def synchronize():
        if backend.cuda_available():
            backend.cupy.cuda.Device().synchronize()
            backend.release_copied()

    @staticmethod
    def manual_seed(seed):
        manual_seed(seed)

    manual_seed_all = manual_seed


__version__ = "0.1.0"
