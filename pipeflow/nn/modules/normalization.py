"""Normalisation layers: BatchNorm1d/2d, LayerNorm, GroupNorm, LocalResponseNorm."""
from ... import factories
from ...ops import normalization as F
from ..module import Module
from ..parameter import Parameter

__all__ = ["BatchNorm1d", "BatchNorm2d", "LayerNorm", "GroupNorm", "LocalResponseNorm"]


def _affine_parameters(module, affine, bias, shape, device, dtype):
    """The learnable scale (ones) and shift (zeros) of a normalisation layer, or Nones."""
    kw = dict(device=device, dtype=dtype)
    if affine:
        module.weight = Parameter(factories.ones(*shape, **kw))
    else:
        module.register_parameter("weight", None)
    if affine and bias:
        module.bias = Parameter(factories.zeros(*shape, **kw))
    else:
        module.register_parameter("bias", None)


class _BatchNorm(Module):
    expected_dims = ()

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True, device=None, dtype=None, *, bias=True):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        _affine_parameters(self, affine, bias, (num_features,), device, dtype)
        if track_running_stats:
            kw = dict(device=device, dtype=dtype)
            self.register_buffer("running_mean", factories.zeros(num_features, **kw))
            self.register_buffer("running_var", factories.ones(num_features, **kw))
            self.register_buffer("num_batches_tracked",
                                 factories.tensor(0, dtype="int64", device=device))
        else:
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                self.register_buffer(name, None)

    def reset_running_stats(self):
        if self.track_running_stats:
            self.running_mean.zero_()
            self.running_var.fill_(1)
            self.num_batches_tracked.zero_()

    def _upgrade_state_dict(self, state_dict, prefix, version):
        # num_batches_tracked came with version 2 of torch's BatchNorm; for checkpoints
        # without it (torch < 0.4.1, e.g. the widely used CIFAR ResNets) the layer keeps
        # its own count, as torch does
        key = prefix + "num_batches_tracked"
        if (version is None or version < 2) and self.track_running_stats \
                and key not in state_dict:
            state_dict[key] = self.num_batches_tracked

    def forward(self, x):
        if x.ndim not in self.expected_dims:
            raise ValueError(f"{type(self).__name__}: expected a {' or '.join(map(str, self.expected_dims))}"
                             f"-D input, got {x.ndim}-D (shape {list(x.shape)})")
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # a cumulative moving average
                momentum = 1.0 / self.num_batches_tracked.item()
        use_batch_stats = self.training or not self.track_running_stats
        return F.batch_norm(x, self.running_mean if self.track_running_stats else None,
                            self.running_var if self.track_running_stats else None,
                            self.weight, self.bias, use_batch_stats, momentum, self.eps)

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, bias={self.bias is not None}, "
                f"track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    expected_dims = (2, 3)


class BatchNorm2d(_BatchNorm):
    expected_dims = (4,)


class LayerNorm(Module):
    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True,
                 device=None, dtype=None):
        super().__init__()
        self.normalized_shape = (normalized_shape,) if isinstance(normalized_shape, int) \
            else tuple(normalized_shape)
        self.eps, self.elementwise_affine = eps, elementwise_affine
        _affine_parameters(self, elementwise_affine, bias, self.normalized_shape, device, dtype)

    def forward(self, x):
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}, bias={self.bias is not None}")


class GroupNorm(Module):
    def __init__(self, num_groups, num_channels, eps=1e-5, affine=True, device=None,
                 dtype=None, *, bias=True):
        super().__init__()
        if num_channels % num_groups:
            raise ValueError("num_channels must be divisible by num_groups")
        self.num_groups, self.num_channels, self.eps, self.affine = (num_groups, num_channels,
                                                                      eps, affine)
        _affine_parameters(self, affine, bias, (num_channels,), device, dtype)

    def forward(self, x):
        return F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return (f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}, "
                f"bias={self.bias is not None}")


class LocalResponseNorm(Module):
    def __init__(self, size, alpha=1e-4, beta=0.75, k=1.0):
        super().__init__()
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, x):
        return F.local_response_norm(x, self.size, self.alpha, self.beta, self.k)

    def extra_repr(self):
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"
