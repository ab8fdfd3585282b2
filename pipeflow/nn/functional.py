"""PyTorch's torch.nn.functional: the layers as functions."""
from ..ops import (gelu, leaky_relu, log_softmax, one_hot, pad, relu, sigmoid, softmax,
                   softplus, tanh)
from ..ops.indexing import embedding as _embedding
from ..ops.loss import *  # noqa: F401,F403
from .modules.dropout import dropout, dropout2d
from .modules.linear import bilinear, linear


def embedding(input, weight, padding_idx=None):
    return _embedding(input, weight, padding_idx)


__all__ = ["gelu", "leaky_relu", "log_softmax", "one_hot", "pad", "relu", "sigmoid", "softmax",
           "softplus", "tanh", "embedding", "dropout", "dropout2d", "bilinear", "linear"]
