"""Whether autograd records operations: thread-local, as in PyTorch."""
import functools
import threading


class _State(threading.local):
    enabled = True


state = _State()


def is_grad_enabled():
    return state.enabled


class _GradMode:
    """A grad-mode switch, usable as a context manager and as a decorator
    (``@no_grad()`` or bare ``@no_grad``)."""

    mode = True

    def __new__(cls, *args, **kwargs):
        if cls is not set_grad_enabled and len(args) == 1 and callable(args[0]):
            return cls()(args[0])
        return super().__new__(cls)

    def __enter__(self):
        self.prev = state.enabled
        state.enabled = self.mode

    def __exit__(self, *exc):
        state.enabled = self.prev

    def __call__(self, fn):
        mode = self.mode

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            prev, state.enabled = state.enabled, mode
            try:
                return fn(*args, **kwargs)
            finally:
                state.enabled = prev
        return wrapper


class no_grad(_GradMode):
    mode = False


class enable_grad(_GradMode):
    mode = True


class inference_mode(_GradMode):
    """Like no_grad (pipeflow has no separate inference tensors)."""

    def __init__(self, mode=True):
        self.mode = not mode


class set_grad_enabled(_GradMode):
    """``set_grad_enabled(False)`` switches at once when called, restores the previous
    mode when used as a context manager, and as a decorator switches only inside calls."""

    def __init__(self, mode):
        self.prev, self.mode = state.enabled, bool(mode)
        state.enabled = self.mode

    def __enter__(self):
        pass

    def __call__(self, fn):
        state.enabled = self.prev  # decorating must not switch the mode for good
        return super().__call__(fn)
