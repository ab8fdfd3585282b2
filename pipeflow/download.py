"""Downloading a file once, verified: what dataset files and published checkpoints both use.

`download_url` streams a URL into ``<file>.part`` next to its destination with a progress
bar (MiB), checks the published checksums and only then renames the file to its final name;
on any failure (HTTP error, dropped connection, short body, wrong checksum, Ctrl-C) the
``.part`` file is removed, so a file under its final name is always a complete, verified one.
A checksum may be a prefix of the hex digest: torchvision's checkpoint names carry the first
8 or more hex digits of their sha256.
"""
import hashlib
import http.client
import os
import urllib.error
import urllib.parse
import urllib.request

try:
    import fcntl
except ImportError:  # Windows: no lock on the .part file
    fcntl = None

from .progress import Progress

__all__ = ["DownloadError", "IntegrityError", "check_integrity", "download_url", "file_digest",
           "url_file_name"]

USER_AGENT = "pipeflow"
CHUNK_SIZE = 1 << 20  # also the progress bar's unit (MiB)
TIMEOUT = 60.0  # seconds without a byte from the server before the download fails


class DownloadError(OSError):
    """The server could not be reached, refused the request, or the transfer broke off."""


class IntegrityError(RuntimeError):
    """A file's checksum differs from the published one."""

    def __init__(self, message, path, algorithm, expected, actual):
        super().__init__(message)
        self.path, self.algorithm, self.expected, self.actual = path, algorithm, expected, actual


def url_file_name(url):
    name = os.path.basename(urllib.parse.urlparse(url).path)
    if not name:
        raise ValueError(f"can't tell a file name from the URL {url!r}; pass filename=")
    return name


def file_digest(fpath, algorithm="md5", chunk_size=CHUNK_SIZE):
    h = hashlib.new(algorithm)
    with open(fpath, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            h.update(chunk)
    return h.hexdigest()


def _expected(md5, sha256):
    """The (algorithm, hex digest or prefix of it) pairs to check."""
    out = []
    for algorithm, value in (("md5", md5), ("sha256", sha256)):
        if value is not None:
            value = str(value).strip().lower()
            if not value or value.strip("0123456789abcdef"):
                raise ValueError(f"a {algorithm} checksum is hexadecimal digits, got {value!r}")
            out.append((algorithm, value))
    return out


def check_integrity(fpath, md5=None, sha256=None):
    """True when `fpath` is a file and matches the given checksums (any file when none)."""
    if not os.path.isfile(fpath):
        return False
    return all(file_digest(fpath, algo).startswith(want) for algo, want in _expected(md5, sha256))


def _remove(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def download_url(url, root, filename=None, md5=None, sha256=None, *, progress=True,
                 timeout=TIMEOUT):
    """Download `url` to ``root/filename`` (default: the URL's last path component) and
    return that path. A file already there that passes the checksums is kept as is; one that
    fails them is downloaded again.

    The body streams into ``root/filename.part`` while md5/sha256 are computed; the file
    is renamed to its final name (os.replace, atomic in one folder) only when the length
    announced by the server arrived and every given checksum matches. Raises
    IntegrityError on a checksum mismatch and DownloadError (naming the URL) for HTTP and
    connection failures and a short body; the ``.part`` file is removed in every case.
    Processes fetching the same file at once take turns (a lock on the ``.part`` file):
    the later ones find the verified file and keep it."""
    root = os.path.expanduser(os.fspath(root))
    filename = filename or url_file_name(url)
    if os.path.basename(filename) != filename or filename in (".", ".."):
        raise ValueError(f"filename must be a plain file name, got {filename!r}")
    expected = _expected(md5, sha256)
    os.makedirs(root, exist_ok=True)
    fpath = os.path.join(root, filename)
    part = fpath + ".part"
    out = None
    while out is None:
        if check_integrity(fpath, md5, sha256):
            return fpath
        out = _lock_part(part)  # None: another process finished or gave up; look again
    try:
        _fetch(url, out, expected, fpath, progress, timeout)
        os.replace(part, fpath)  # still holding the lock on it
    except BaseException:
        _remove(part)
        raise
    finally:
        out.close()
    return fpath


def _lock_part(part):
    """`part` opened for writing, emptied, with an exclusive lock held (POSIX): a second
    process fetching the same file waits here instead of writing into the same .part.
    None when, after the wait, `part` is no longer the file that was locked (the other
    process renamed it to its final name, or removed it)."""
    fd = os.open(part, os.O_RDWR | os.O_CREAT, 0o644)
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            same = os.path.samestat(os.fstat(fd), os.stat(part))
        except FileNotFoundError:
            same = False
        except BaseException:
            os.close(fd)
            raise
        if not same:
            os.close(fd)
            return None
    os.ftruncate(fd, 0)
    return os.fdopen(fd, "wb")


def _fetch(url, out, expected, fpath, progress, timeout):
    """Stream `url` into the open file `out`, checking the length and the checksums."""
    hashers = {algo: hashlib.new(algo) for algo, _ in expected}
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    received, length = 0, None
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length", "").strip()
            length = int(length) if length.isdigit() else None
            bar = Progress(-(-(length or 0) // CHUNK_SIZE),
                           desc=f"Downloading {os.path.basename(fpath)} (MiB)") \
                if progress else None
            try:
                for chunk in iter(lambda: response.read(CHUNK_SIZE), b""):
                    out.write(chunk)
                    for h in hashers.values():
                        h.update(chunk)
                    received += len(chunk)
                    if bar is not None:  # whole MiB received so far, the last one partial
                        bar.update(-(-received // CHUNK_SIZE) - bar.count)
            finally:
                if bar is not None:
                    bar.close()
            out.flush()
            os.fsync(out.fileno())
    except urllib.error.HTTPError as e:
        raise DownloadError(f"could not download {url}: the server answered HTTP {e.code} "
                            f"{e.reason}") from e
    except urllib.error.URLError as e:
        raise DownloadError(f"could not download {url}: {e.reason}") from e
    except (OSError, http.client.HTTPException) as e:
        raise DownloadError(f"could not download {url}: {type(e).__name__}: {e}") from e
    # http.client's read(n) returns b"" when the peer closes early instead of raising.
    if length is not None and received != length:
        raise DownloadError(f"could not download {url}: the connection closed after "
                            f"{received} of {length} bytes")
    for algo, want in expected:
        got = hashers[algo].hexdigest()
        if not got.startswith(want):
            raise IntegrityError(f"{fpath}: the {algo} of the file downloaded from {url} "
                                 f"starts with {got[:len(want)]}, expected {want}; it is not "
                                 f"the published file and was not kept",
                                 fpath, algo, want, got[:len(want)])
