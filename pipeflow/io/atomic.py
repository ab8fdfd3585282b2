"""Atomic file writes: a crash never leaves a half-written file under the final name.

The data goes to a temporary file in the destination's directory (same file system, so the
rename is atomic), which is flushed and fsync'ed, then ``os.replace``'d over the final name;
the directory is fsync'ed so the rename itself survives a power cut. If anything fails, the
temporary file is removed and whatever was under the final name is left as it was.
"""
import contextlib
import os
import tempfile


def _default_mode(path):
    """The permissions the file should get: those of the file it replaces, else what
    ``open(path, 'w')`` would give (0o666 less the umask) rather than mkstemp's 0o600."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        pass
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _fsync_directory(directory):
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. platforms that can't open directories
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse fsync on directories
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path):
    """``with atomic_write(path) as f: f.write(...)``: `f` is a binary file that becomes
    `path` when the block completes without error."""
    path = os.fspath(path)
    if os.path.islink(path):  # write the file the link names, and keep the link
        path = os.path.realpath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise IsADirectoryError(f"cannot save to {path!r}: it is a directory")
    mode = _default_mode(path)
    fd, temp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp",
                                dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    _fsync_directory(directory)
