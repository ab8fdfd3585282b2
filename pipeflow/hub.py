"""Published checkpoints: a local cache filled from the network once, every file verified.

    path = hub.cached_checkpoint(url, sha256_prefix)   # downloads on first use, then cached

Files live in ``checkpoint_dir()``, ``$PIPEFLOW_HOME/checkpoints`` (PIPEFLOW_HOME defaults to
``$XDG_CACHE_HOME/pipeflow``, i.e. ``~/.cache/pipeflow``), under the name the URL ends with.

- A download streams into a temporary file in the cache folder while it is hashed, and gets its
  final name (``os.replace``: atomic within a folder) only once complete with a sha256 that
  starts with the published prefix. A file under its final name was therefore verified when
  it arrived, and processes fetching the same file at once never write into each other's file.
- A cached file is hashed again on every use: sha256 runs at 1-2 GB/s, little beside the cost
  of loading the checkpoint, and it catches a file damaged since (a full disk, a truncated
  copy put there by hand) before it is loaded.
- A file whose hash does not match is removed, and HashMismatchError names it with the
  expected and actual prefixes; the next call downloads it afresh.
- With PIPEFLOW_OFFLINE=1 the network is never used: a missing file raises OfflineError,
  which names the URL to fetch it from and the full path to put it at.
"""
import contextlib
import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request

from .progress import Progress

__all__ = ["DownloadError", "HashMismatchError", "OfflineError", "cached_checkpoint",
           "checkpoint_dir", "download_url_to_file", "home", "is_offline"]

CHUNK_SIZE = 1 << 20  # also the progress bar's unit (MiB)
TIMEOUT = 60.0  # seconds without a byte from the server before the download fails


class DownloadError(OSError):
    """The server could not be reached, refused the request, or the transfer broke off."""


class HashMismatchError(RuntimeError):
    """A file's sha256 does not start with the published prefix (the file was removed)."""

    def __init__(self, message, path, expected, actual):
        super().__init__(message)
        self.path, self.expected, self.actual = path, expected, actual


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


def _file_name(url):
    name = os.path.basename(urllib.parse.urlparse(url).path)
    if not name:
        raise ValueError(f"can't tell a file name from the URL {url!r}")
    return name


def _normalised(prefix):
    prefix = str(prefix).strip().lower()
    if not prefix or any(c not in "0123456789abcdef" for c in prefix):
        raise ValueError(f"sha256 prefix must be hexadecimal digits, got {prefix!r}")
    return prefix


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK_SIZE), b""):
            h.update(chunk)
    return h.hexdigest()


def _check(digest, prefix, path, note):
    if not digest.startswith(prefix):
        actual = digest[:len(prefix)]
        raise HashMismatchError(f"{path}: sha256 starts with {actual}, expected {prefix}; "
                                f"{note}", path, prefix, actual)


def cached_checkpoint(url, sha256_prefix, file_name=None, progress=True):
    """The path of `url`'s file in the checkpoint cache (named `file_name`, by default the
    URL's last path component), downloaded first if it is not there; see the module doc."""
    prefix = _normalised(sha256_prefix)
    path = os.path.join(checkpoint_dir(), file_name or _file_name(url))
    if os.path.exists(path):
        try:
            _check(_sha256(path), prefix, path, f"the cached file is damaged or not the "
                                                f"published one, so it was removed; the next "
                                                f"use downloads it again from {url}")
        except HashMismatchError:
            os.remove(path)
            raise
        return path
    if is_offline():
        raise OfflineError(f"PIPEFLOW_OFFLINE is set and {os.path.basename(path)} is not in "
                           f"the cache: download {url} and put it at {path}")
    download_url_to_file(url, path, prefix, progress)
    return path


def download_url_to_file(url, dst, sha256_prefix, progress=True, timeout=TIMEOUT):
    """Download `url` to `dst` through a temporary file beside it, renamed to `dst` only
    when complete and its sha256 starts with `sha256_prefix` (removed otherwise). Raises
    DownloadError (naming the URL) for network and HTTP failures, HashMismatchError for
    a file that is not the published one."""
    prefix = _normalised(sha256_prefix)
    folder = os.path.dirname(os.path.abspath(dst))
    os.makedirs(folder, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{os.path.basename(dst)}.", suffix=".part",
                                dir=folder)
    try:
        with os.fdopen(fd, "wb") as out:
            digest = _fetch(url, out, os.path.basename(dst), progress, timeout)
            out.flush()
            os.fsync(out.fileno())
        _check(digest, prefix, dst, f"the file downloaded from {url} is not the published "
                                    f"one and was not kept")
        os.replace(temp, dst)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temp)
        raise


def _fetch(url, out, name, progress, timeout):
    """Stream `url` into the open file `out`; the sha256 hex digest of the bytes received."""
    request = urllib.request.Request(url, headers={"User-Agent": "pipeflow"})
    sha, received = hashlib.sha256(), 0
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length", "").strip()
            length = int(length) if length.isdigit() else None
            bar = Progress(-(-(length or 0) // CHUNK_SIZE), desc=f"Downloading {name} (MiB)") \
                if progress else None
            try:
                for chunk in iter(lambda: response.read(CHUNK_SIZE), b""):
                    out.write(chunk)
                    sha.update(chunk)
                    received += len(chunk)
                    if bar is not None:  # whole MiB received so far, the last one partial
                        bar.update(-(-received // CHUNK_SIZE) - bar.count)
            finally:
                if bar is not None:
                    bar.close()
    except urllib.error.HTTPError as e:
        raise DownloadError(f"could not download {url}: the server answered HTTP {e.code} "
                            f"{e.reason}") from e
    except urllib.error.URLError as e:
        raise DownloadError(f"could not download {url}: {e.reason}") from e
    except (OSError, http.client.HTTPException) as e:
        raise DownloadError(f"could not download {url}: {type(e).__name__}: {e}") from e
    # http.client returns b"" when the server closes early instead of raising
    if length is not None and received != length:
        raise DownloadError(f"could not download {url}: the connection closed after "
                            f"{received} of {length} bytes")
    return sha.hexdigest()
