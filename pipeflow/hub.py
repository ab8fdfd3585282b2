"""Published checkpoints: a local cache filled from the network once, every file verified.

    path = hub.cached_checkpoint(url, sha256_prefix)   # downloads on first use, then cached

Files live in ``checkpoint_dir()``, ``$PIPEFLOW_HOME/checkpoints`` (PIPEFLOW_HOME defaults to
``$XDG_CACHE_HOME/pipeflow``, i.e. ``~/.cache/pipeflow``), under the name the URL ends with.
They arrive through pipeflow's one verified download (``pipeflow.download``): a file gets
its final name only once complete with a sha256 that starts with the published prefix.

- A cached file is hashed again on every use: sha256 runs at 1-2 GB/s, little beside the cost
  of loading the checkpoint, and it catches a file damaged since (a full disk, a truncated
  copy put there by hand), which is then downloaded again.
- With PIPEFLOW_OFFLINE=1 the network is never used: a missing or damaged file raises
  OfflineError, which names the URL to fetch it from and the full path to put it at.
"""
import os

from .download import DownloadError, IntegrityError, check_integrity, download_url, url_file_name

__all__ = ["DownloadError", "IntegrityError", "OfflineError", "cached_checkpoint",
           "checkpoint_dir", "home", "is_offline"]


class OfflineError(FileNotFoundError):
    """PIPEFLOW_OFFLINE is set and the file is not in the cache."""


def home():
    """pipeflow's cache root: $PIPEFLOW_HOME, else $XDG_CACHE_HOME/pipeflow, else
    ~/.cache/pipeflow."""
    root = os.environ.get("PIPEFLOW_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache"), "pipeflow")
    return os.path.abspath(os.path.expanduser(root))


def checkpoint_dir():
    return os.path.join(home(), "checkpoints")


def is_offline():
    return os.environ.get("PIPEFLOW_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def cached_checkpoint(url, sha256_prefix, file_name=None, progress=True):
    """The path of `url`'s file in the checkpoint cache (named `file_name`, by default the
    URL's last path component), downloaded first if it is missing or fails its hash."""
    name = file_name or url_file_name(url)
    if not is_offline():
        return download_url(url, checkpoint_dir(), name, sha256=sha256_prefix,
                            progress=progress)
    path = os.path.join(checkpoint_dir(), name)
    if check_integrity(path, sha256=sha256_prefix):
        return path
    state = "fails its sha256 check" if os.path.exists(path) else "is not in the cache"
    raise OfflineError(f"PIPEFLOW_OFFLINE is set and {name} {state}: download {url} and "
                       f"put it at {path}")
