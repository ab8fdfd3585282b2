"""Dropout layers."""
from ..module import Module

__all__ = ["Dropout", "Dropout2d"]


def dropout(x, p=0.5, training=True, generator=None):
    """Zero each element with probability p and scale the rest by 1/(1-p) (training only)."""
    return _dropout(x, p, training, tuple(x.shape), generator)


def dropout2d(x, p=0.5, training=True, generator=None):
    """Zero whole channels of an (N, C, H, W) or (C, H, W) input."""
    if x.ndim not in (3, 4):
        raise RuntimeError(f"dropout2d expects a 3-D or 4-D input, got {x.ndim}-D")
    return _dropout(x, p, training, tuple(x.shape[:-2]) + (1, 1), generator)


def _dropout(x, p, training, mask_shape, generator):
    if not 0 <= p <= 1:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0:
        return x
    if p == 1:
        return x * 0
    from ...factories import rand
    keep = rand(*mask_shape, generator=generator, device=x.device) >= p
    return x * keep * (1.0 / (1.0 - p))


class Dropout(Module):
    def __init__(self, p=0.5, inplace=False):
        super().__init__()
        if not 0 <= p <= 1:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p, self.inplace = p, inplace

    def forward(self, x):
        return dropout(x, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}, inplace={self.inplace}"


class Dropout2d(Dropout):
    def forward(self, x):
        return dropout2d(x, self.p, self.training)
