"""Fetching and unpacking dataset files (torchvision.datasets.utils' download helpers).

Downloading is pipeflow's one verified download (`pipeflow.download.download_url`: a
``.part`` file renamed only once complete and matching its checksums).

`extract_archive` unpacks .tar/.tar.gz/.tgz/.tar.bz2/.tar.xz/.zip archives and single-file
.gz/.bz2/.xz files, refusing (with an error that names the member) any member that would
land outside the destination: absolute paths, '..' that climbs out, symlinks or hardlinks
that point outside, links reached through links, and device files."""
import bz2
import contextlib
import gzip
import lzma
import os
import shutil
import stat
import sys
import tarfile
import zipfile

from ..download import DownloadError, IntegrityError, check_integrity, download_url

__all__ = ["DownloadError", "IntegrityError", "UnsafeArchiveError", "check_integrity",
           "download_and_extract_archive", "download_url", "extract_archive"]

# The standard library's "data" tar filter (Python >= 3.12, 3.11.4, 3.10.12) and its error.
_TAR_FILTER = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
_FILTER_ERROR = getattr(tarfile, "FilterError", ())


class UnsafeArchiveError(RuntimeError):
    """An archive member would be written outside the extraction folder."""


def download_and_extract_archive(url, download_root, extract_root=None, filename=None,
                                 md5=None, sha256=None, remove_finished=False, progress=True):
    """download_url, then extract_archive into `extract_root` (default `download_root`)."""
    download_root = os.path.expanduser(os.fspath(download_root))
    extract_root = download_root if extract_root is None else extract_root
    fpath = download_url(url, download_root, filename, md5=md5, sha256=sha256,
                         progress=progress)
    print(f"Extracting {fpath} to {extract_root}", file=sys.stderr)
    return extract_archive(fpath, extract_root, remove_finished)


# --- extraction ------------------------------------------------------------------------------

_TAR_SUFFIXES = {".tar": "r:", ".tar.gz": "r:gz", ".tgz": "r:gz", ".tar.bz2": "r:bz2",
                 ".tbz": "r:bz2", ".tbz2": "r:bz2", ".tar.xz": "r:xz", ".txz": "r:xz"}
_COMPRESSED = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}


def _archive_type(path):
    name = os.path.basename(path).lower()
    for suffix in sorted(_TAR_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return "tar", suffix
    if name.endswith(".zip"):
        return "zip", ".zip"
    for suffix in _COMPRESSED:
        if name.endswith(suffix):
            return "compressed", suffix
    raise ValueError(f"Extraction of {path} not supported: expected one of "
                     f"{', '.join(sorted([*_TAR_SUFFIXES, '.zip', *_COMPRESSED]))}")


def _inside(path, root):
    """Whether `path` (already resolved) is `root` or below it."""
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _is_absolute(name):
    return (name.startswith(("/", "\\")) or os.path.isabs(name)
            or (len(name) > 1 and name[1] == ":" and name[0].isalpha()))


def _escapes(rel):
    """Whether a relative path climbs above its start by '..' (no links followed)."""
    norm = os.path.normpath(rel.replace("\\", "/"))
    return norm == ".." or norm.startswith("../")


def _check_name(archive, name, kind="member"):
    if not name or "\x00" in name:
        raise UnsafeArchiveError(f"{archive}: refusing {kind} with an empty or invalid name "
                                 f"{name!r}")
    if _is_absolute(name):
        raise UnsafeArchiveError(f"{archive}: refusing {kind} {name!r}: absolute path")
    if _escapes(name):
        raise UnsafeArchiveError(f"{archive}: refusing {kind} {name!r}: '..' leads outside "
                                 f"the extraction folder")


def _check_tar_member(archive, member):
    """Checks that need no file system: run on every member before anything is written."""
    _check_name(archive, member.name)
    if member.issym():
        if _is_absolute(member.linkname):
            raise UnsafeArchiveError(f"{archive}: refusing symlink {member.name!r} -> "
                                     f"{member.linkname!r}: absolute link target")
        if _escapes(os.path.join(os.path.dirname(member.name), member.linkname)):
            raise UnsafeArchiveError(f"{archive}: refusing symlink {member.name!r} -> "
                                     f"{member.linkname!r}: points outside the extraction "
                                     f"folder")
    elif member.islnk():
        if _is_absolute(member.linkname) or _escapes(member.linkname):
            raise UnsafeArchiveError(f"{archive}: refusing hardlink {member.name!r} -> "
                                     f"{member.linkname!r}: points outside the extraction "
                                     f"folder")
    elif not (member.isreg() or member.isdir()):
        raise UnsafeArchiveError(f"{archive}: refusing member {member.name!r}: device, FIFO "
                                 f"or other special file")


def _check_resolved(archive, root, member):
    """Checks against the files extracted so far (a link written earlier may redirect a
    later path): the member's own path and, for links, the target, fully resolved."""
    where = os.path.realpath(os.path.join(root, member.name))
    if not _inside(where, root):
        raise UnsafeArchiveError(f"{archive}: refusing member {member.name!r}: it resolves to "
                                 f"{where}, outside {root}")
    if member.issym() or member.islnk():
        base = os.path.dirname(os.path.join(root, member.name)) if member.issym() else root
        target = os.path.realpath(os.path.join(base, member.linkname))
        if not _inside(target, root):
            raise UnsafeArchiveError(f"{archive}: refusing link {member.name!r} -> "
                                     f"{member.linkname!r}: resolves to {target}, outside "
                                     f"{root}")


def _extract_tar(path, to, mode):
    archive = os.path.basename(path)
    with tarfile.open(path, mode) as tar:
        members = tar.getmembers()
        for m in members:  # refuse the whole archive before writing anything
            _check_tar_member(archive, m)
        links = [m for m in members if m.issym()]

        def checked():
            for m in members:
                _check_resolved(archive, to, m)
                yield m

        try:
            tar.extractall(to, members=checked(), **_TAR_FILTER)
        except _FILTER_ERROR as e:  # the standard library's own "data" filter refused
            raise UnsafeArchiveError(f"{archive}: refusing member {e.tarinfo.name!r}: {e}") \
                from e
    # Links are checked as they are written, but a later symlink can change where an earlier
    # one leads (a -> 'b/..' then b -> '.'): check every symlink again once all exist.
    bad = []
    for m in links:
        link = os.path.join(to, m.name)
        if os.path.islink(link) and not _inside(os.path.realpath(link), to):
            bad.append(m.name)
            os.remove(link)
    if bad:
        raise UnsafeArchiveError(f"{archive}: refusing symlinks that resolve outside {to}: "
                                 f"{', '.join(map(repr, bad))} (removed)")


def _extract_zip(path, to):
    archive = os.path.basename(path)
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        for info in infos:
            _check_name(archive, info.filename)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):  # zipfile would write the link text as a file; refuse
                raise UnsafeArchiveError(f"{archive}: refusing member {info.filename!r}: "
                                         f"symlink")
        for info in infos:
            where = os.path.realpath(os.path.join(to, info.filename))
            if not _inside(where, to):
                raise UnsafeArchiveError(f"{archive}: refusing member {info.filename!r}: it "
                                         f"resolves to {where}, outside {to}")
            zf.extract(info, to)


def _decompress(path, to, suffix):
    name = os.path.basename(path)[:-len(suffix)]
    out = os.path.join(to, name)
    if not _inside(os.path.realpath(out), to):
        raise UnsafeArchiveError(f"{name!r} resolves outside {to}")
    part = out + ".part"
    try:
        with _COMPRESSED[suffix](path, "rb") as src, open(part, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        os.replace(part, out)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(part)
        raise
    return out


def extract_archive(from_path, to_path=None, remove_finished=False):
    """Extract `from_path` into `to_path` (default: its folder) and return `to_path`; a
    single compressed file (.gz/.bz2/.xz) is decompressed to ``to_path/<name less suffix>``,
    whose path is returned instead (as torchvision does). Members whose path would leave
    `to_path` are refused with UnsafeArchiveError naming the member; tar members are all
    checked before any is written."""
    from_path = os.fspath(from_path)
    to_path = os.path.dirname(from_path) if to_path is None else os.fspath(to_path)
    os.makedirs(to_path, exist_ok=True)
    root = os.path.realpath(to_path)
    kind, suffix = _archive_type(from_path)
    if kind == "tar":
        _extract_tar(from_path, root, _TAR_SUFFIXES[suffix])
        result = to_path
    elif kind == "zip":
        _extract_zip(from_path, root)
        result = to_path
    else:
        result = os.path.join(to_path, os.path.basename(_decompress(from_path, root, suffix)))
    if remove_finished:
        os.remove(from_path)
    return result
