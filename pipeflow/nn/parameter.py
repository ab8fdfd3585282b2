"""Parameter: a Tensor that a Module registers as one of its learnable weights."""
from ..tensor import Tensor


class Parameter(Tensor):
    """A leaf tensor that requires grad by default and is registered by the Module it is
    assigned to. ``Parameter(t)`` shares ``t``'s storage."""

    def __init__(self, data=None, requires_grad=True):
        if data is None:
            from ..factories import empty
            data = empty(0)
        self._data = data._data if isinstance(data, Tensor) else Tensor(data)._data
        if requires_grad:
            self.requires_grad = True

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()

    __str__ = __repr__

    def __reduce_ex__(self, protocol):
        return (_rebuild_parameter, (Tensor._wrap(self._data), self._rg))


def _rebuild_parameter(data, requires_grad):
    return Parameter(data, requires_grad)


class Buffer:
    """Marks a tensor as a buffer when assigned to a Module (``self.x = Buffer(t)``)."""

    def __init__(self, data, persistent=True):
        self.data, self.persistent = data, persistent
