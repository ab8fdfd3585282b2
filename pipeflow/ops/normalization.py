"""Normalisation: batch, layer, group and local response norm, composed from the
differentiable reductions (so their gradients, double backward included, are exact)."""
from ..autograd.grad_mode import no_grad
from ._util import norm_dim


def _affine(y, weight, bias, shape):
    if weight is not None:
        y = y * weight.reshape(shape)
    if bias is not None:
        y = y + bias.reshape(shape)
    return y


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5):
    """Normalise each channel (dim 1) over the batch and spatial dims. Training uses the
    batch statistics and updates the running ones (unbiased variance, as PyTorch); eval
    uses the running statistics."""
    if input.ndim < 2:
        raise ValueError(f"batch_norm expects at least a 2-D input, got {input.ndim}-D")
    axes = (0,) + tuple(range(2, input.ndim))
    shape = (1, -1) + (1,) * (input.ndim - 2)
    if training:
        count = input.numel() // input.shape[1]
        if count <= 1:
            raise ValueError(f"Expected more than 1 value per channel when training, got input "
                             f"size {list(input.shape)}")
        mean = input.mean(axes, keepdim=True)
        var = input.var(axes, unbiased=False, keepdim=True)
        if running_mean is not None:
            with no_grad():
                m = momentum
                running_mean.mul_(1 - m).add_(mean.reshape(-1).to(running_mean.dtype), alpha=m)
                unbiased = var.reshape(-1) * (count / (count - 1))
                running_var.mul_(1 - m).add_(unbiased.to(running_var.dtype), alpha=m)
    else:
        if running_mean is None:
            raise ValueError("batch_norm in eval mode needs running_mean and running_var")
        mean, var = running_mean.reshape(shape), running_var.reshape(shape)
    y = (input - mean) * (var + eps).rsqrt()
    return _affine(y, weight, bias, shape)


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    normalized_shape = (normalized_shape,) if isinstance(normalized_shape, int) \
        else tuple(normalized_shape)
    if tuple(input.shape[-len(normalized_shape):]) != normalized_shape:
        raise RuntimeError(f"layer_norm: expected input with shape [*, "
                           f"{', '.join(map(str, normalized_shape))}], got {list(input.shape)}")
    axes = tuple(range(input.ndim - len(normalized_shape), input.ndim))
    mean = input.mean(axes, keepdim=True)
    var = input.var(axes, unbiased=False, keepdim=True)
    return _affine((input - mean) * (var + eps).rsqrt(), weight, bias, normalized_shape)


def group_norm(input, num_groups, weight=None, bias=None, eps=1e-5):
    n, c = input.shape[:2]
    if c % num_groups:
        raise RuntimeError(f"group_norm: {c} channels are not divisible into {num_groups} groups")
    grouped = input.reshape(n, num_groups, -1)
    mean = grouped.mean(2, keepdim=True)
    var = grouped.var(2, unbiased=False, keepdim=True)
    y = ((grouped - mean) * (var + eps).rsqrt()).reshape(input.shape)
    return _affine(y, weight, bias, (1, -1) + (1,) * (input.ndim - 2))


def local_response_norm(input, size, alpha=1e-4, beta=0.75, k=1.0):
    """x / (k + alpha * mean of x^2 over `size` neighbouring channels)^beta (PyTorch's
    window: size//2 channels before, (size-1)//2 after, zero-padded, divided by size)."""
    dim = norm_dim(1, input.ndim)
    sq = (input * input).transpose(dim, -1)
    sq = sq.pad((size // 2, (size - 1) // 2))
    summed = sq.cumsum(-1)
    summed = summed.pad((1, 0))  # window sums as differences of a cumulative sum
    windows = summed[..., size:] - summed[..., :-size]
    div = (windows.transpose(dim, -1) * (alpha / size) + k) ** beta
    return input / div
