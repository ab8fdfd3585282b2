"""PyTorch's torch.nn.functional: the layers as functions."""
from ..ops import (gelu, leaky_relu, log_softmax, one_hot, pad, relu, sigmoid, softmax,
                   softplus, tanh)
from ..ops.conv import conv1d, conv2d, conv_transpose2d
from ..ops.indexing import embedding as _embedding
from ..ops.normalization import batch_norm, group_norm, layer_norm, local_response_norm
from ..ops.pool import (adaptive_avg_pool2d, adaptive_max_pool2d, avg_pool1d, avg_pool2d,
                        max_pool1d, max_pool2d)
from ..ops.loss import *  # noqa: F401,F403
from ..ops.loss import __all__ as _losses
from .modules.dropout import dropout, dropout2d
from .modules.linear import bilinear, linear


def embedding(input, weight, padding_idx=None):
    return _embedding(input, weight, padding_idx)


__all__ = ["gelu", "leaky_relu", "log_softmax", "one_hot", "pad", "relu", "sigmoid", "softmax",
           "softplus", "tanh", "embedding", "dropout", "dropout2d", "bilinear", "linear",
           "conv1d", "conv2d", "conv_transpose2d", "batch_norm", "group_norm", "layer_norm",
           "local_response_norm", "adaptive_avg_pool2d", "adaptive_max_pool2d", "avg_pool1d",
           "avg_pool2d", "max_pool1d", "max_pool2d"] + _losses
