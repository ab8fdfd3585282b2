"""Exceptions raised while reading or writing checkpoints."""
import pickle


class CheckpointError(RuntimeError):
    """A checkpoint could not be read (or written): missing, not a checkpoint, truncated,
    inconsistent, or unsafe. The message names the file and the problem; ``path`` holds the
    file's name (or None for a file object)."""

    path = None

    def __init__(self, message, path=None):
        super().__init__(message)
        if path is not None:
            self.path = path

    def _with_path(self, path):
        """Prefix the message with the file's name (once)."""
        if self.path is None and path is not None:
            self.path = path
            self.args = (f"{path}: {self.args[0]}",) + self.args[1:]
        return self


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The checkpoint file does not exist (also a FileNotFoundError, as in torch.load)."""


class ForbiddenGlobalError(CheckpointError, pickle.UnpicklingError):
    """The checkpoint's pickle names a global (a function or class) that pipeflow does not
    allow, or asks to call something that is not an allowed callable. Nothing from the file
    is ever executed; ``name`` is the offending global's dotted name."""

    def __init__(self, message, name=None, path=None):
        super().__init__(message, path)
        self.name = name
