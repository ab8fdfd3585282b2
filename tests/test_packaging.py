"""Packaging: pipeflow builds and installs, with the repo's top-level datasets/
and models/ folders installed as pipeflow.datasets and pipeflow.models, never
as top-level `datasets` / `models` packages.

Each check builds from the repo and installs into a fresh venv (no system site
packages) with --no-deps. pipeflow's dependencies (numpy, ...) are borrowed
from the interpreter running this test: the probe run in the venv resolves
them from this interpreter's site-packages through a finder placed *after*
every other finder, which never answers for pipeflow, datasets or models.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# repo folder -> package it is installed as (see pyproject.toml / setup.py)
MAPPED = {"datasets": "pipeflow.datasets", "models": "pipeflow.models"}
CMD_TIMEOUT = 300

# Run in the fresh venv as `python -I -c PROBE EXTRA_PATHS_JSON`.
PROBE = r"""
import importlib.machinery, importlib.util, json, sys

extra = json.loads(sys.argv[1])
out = {
    "prefix": sys.prefix,
    # before anything is borrowed: no top-level datasets/models may exist
    "top_level": {n: importlib.util.find_spec(n) is not None for n in ("datasets", "models")},
}


class _BorrowedDeps:
    # Last on sys.meta_path: top-level modules not found in the venv (numpy,
    # ...) come from the outer interpreter's site-packages; never pipeflow.
    @staticmethod
    def find_spec(name, path=None, target=None):
        if path is not None or name in ("pipeflow", "datasets", "models"):
            return None
        return importlib.machinery.PathFinder.find_spec(name, extra)


sys.meta_path.append(_BorrowedDeps)
import pipeflow, pipeflow.datasets, pipeflow.models

out["files"] = {m: sys.modules[m].__file__ for m in ("pipeflow", "pipeflow.datasets", "pipeflow.models")}
print(json.dumps(out))
"""


# ---------------------------------------------------------------- helpers


def _run(cmd, *, cwd=None, env=None) -> str:
    try:
        proc = subprocess.run(
            [str(c) for c in cmd], cwd=cwd, env=env, capture_output=True,
            text=True, timeout=CMD_TIMEOUT,
        )
    except subprocess.TimeoutExpired as exc:  # pragma: no cover
        pytest.fail(f"timed out after {CMD_TIMEOUT}s: {cmd}\n{exc.stdout}\n{exc.stderr}")
    assert proc.returncode == 0, (
        f"command failed ({proc.returncode}): {' '.join(map(str, cmd))}\n"
        f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}"
    )
    return proc.stdout


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


def _build_here() -> bool:
    """True when this interpreter can build without build isolation: it has
    pip and a setuptools at least as new as pyproject's build-system asks."""
    m = re.search(r"setuptools\s*>=\s*([\d.]+)", (REPO / "pyproject.toml").read_text())
    wanted = _version_tuple(m.group(1)) if m else (0,)
    try:
        metadata.version("pip")
        have = _version_tuple(metadata.version("setuptools"))
    except metadata.PackageNotFoundError:
        return False
    return have >= wanted


def _pip_env() -> dict:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    return env


def _venv(path: Path) -> Path:
    """A fresh venv with pip and without system site packages; its python."""
    proc = subprocess.run(
        [sys.executable, "-m", "venv", str(path)], capture_output=True, text=True,
        timeout=CMD_TIMEOUT,
    )
    if proc.returncode != 0:
        pytest.skip(reason=f"cannot create a venv with pip here (python -m venv failed): "
                           f"{proc.stderr.strip()[-500:]}")
    py = path / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    if subprocess.run([py, "-m", "pip", "--version"], capture_output=True).returncode != 0:
        pytest.skip(reason="the fresh venv has no pip (ensurepip unavailable)")
    return py


def _purelib(py: Path) -> Path:
    return Path(_run([py, "-I", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).strip())


def _outer_site_dirs() -> list[str]:
    """This interpreter's site-packages folders (where numpy etc. live)."""
    dirs = list(getattr(site, "getsitepackages", list)()) + [site.getusersitepackages()]
    dirs += [p for p in sys.path if p.endswith(("site-packages", "dist-packages"))]
    dirs.append(sysconfig.get_paths()["purelib"])
    dirs.append(sysconfig.get_paths()["platlib"])
    out = []
    for d in dirs:
        if d and os.path.isdir(d) and d not in out:
            out.append(d)
    return out


def _probe(py: Path, cwd: Path) -> dict:
    out = _run([py, "-I", "-c", PROBE, json.dumps(_outer_site_dirs())], cwd=cwd, env=_pip_env())
    got = json.loads(out.strip().splitlines()[-1])
    for name, file in got["files"].items():
        assert file, f"{name} imported as a namespace package (no __init__.py installed)"
    return got


def _source_files() -> list[Path]:
    """Repo files a build may see (tracked + untracked, not git-ignored)."""
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            capture_output=True, check=True, timeout=60,
        ).stdout.decode()
        files = [REPO / f for f in out.split("\0") if f]
    except (OSError, subprocess.SubprocessError):
        junk = {".git", "build", "dist", "__pycache__", ".pytest_cache", ".ci-venv", ".venv", "venv",
                ".whl", ".devdata"}
        files = [
            p for p in REPO.rglob("*")
            if p.is_file() and not any(part in junk or part.endswith(".egg-info")
                                       for part in p.relative_to(REPO).parts)
        ]
    return [f for f in files if f.is_file() and "__pycache__" not in f.parts]


def _expected_wheel_py() -> set[str]:
    """Every .py under pipeflow/, datasets/, models/ -> its path in the wheel."""
    expected = set()
    for f in _source_files():
        rel = f.relative_to(REPO)
        if f.suffix != ".py" or rel.parts[0] not in ("pipeflow", *MAPPED):
            continue
        if rel.parts[0] == "pipeflow":
            expected.add(rel.as_posix())
        else:
            expected.add("/".join([*MAPPED[rel.parts[0]].split("."), *rel.parts[1:]]))
    return expected


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a clean copy of the repo's source files (so a stale
    build/ folder in the repo can neither leak into it nor be written)."""
    root = tmp_path_factory.mktemp("wheel")
    src, out = root / "src", root / "dist"
    for f in _source_files():
        dst = src / f.relative_to(REPO)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, dst)
    if _build_here():
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", out, src]
    else:  # isolated build: pip gets setuptools from the configured index
        cmd = [_venv(root / "builder"), "-m", "pip", "wheel", "--no-deps", "-w", out, src]
    _run(cmd, cwd=root, env=_pip_env())
    wheels = list(out.glob("pipeflow-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


# ---------------------------------------------------------------- tests


def test_no_folders_shadow_the_mapped_packages():
    assert (REPO / "pipeflow" / "__init__.py").is_file(), "pipeflow/__init__.py is missing"
    for folder, pkg in MAPPED.items():
        assert (REPO / folder / "__init__.py").is_file(), f"{folder}/__init__.py is missing"
        inner = REPO.joinpath(*pkg.split("."))
        assert not inner.exists(), (
            f"{inner.relative_to(REPO)} must not exist: {pkg} is the repo's top-level {folder}/ folder"
        )


def test_wheel_contents(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        dist_infos = {n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info")}
        assert len(dist_infos) == 1, dist_infos
        dist_info = dist_infos.pop()
        meta = z.read(f"{dist_info}/METADATA").decode()
        top_level = z.read(f"{dist_info}/top_level.txt").decode().split()

    assert {n.split("/")[0] for n in names} == {"pipeflow", dist_info}, sorted(names)
    assert top_level == ["pipeflow"]
    for required in ("pipeflow/__init__.py", "pipeflow/datasets/__init__.py", "pipeflow/models/__init__.py"):
        assert required in names, f"{required} missing from the wheel"

    py = {n for n in names if n.endswith(".py")}
    assert all(n.startswith("pipeflow/") for n in py)
    expected = _expected_wheel_py()
    missing, extra = expected - py, py - expected
    assert not missing, f"source files missing from the wheel (does their folder lack __init__.py?): {sorted(missing)}"
    assert not extra, f"unexpected .py files in the wheel: {sorted(extra)}"

    assert "Requires-Dist: numpy>=1.26" in meta
    for extra_name in ("cuda12", "cuda13", "test", "ref"):
        assert f"Provides-Extra: {extra_name}" in meta


def test_wheel_installs_mapped_packages(wheel, tmp_path):
    py = _venv(tmp_path / "venv")
    _run([py, "-m", "pip", "install", "--no-deps", wheel], cwd=tmp_path, env=_pip_env())

    purelib = _purelib(py)
    for folder in MAPPED:
        assert not (purelib / folder).exists(), f"top-level {folder}/ installed into site-packages"
        assert (purelib / "pipeflow" / folder / "__init__.py").is_file()

    got = _probe(py, tmp_path)
    assert Path(got["prefix"]).resolve() == (tmp_path / "venv").resolve()
    assert got["top_level"] == {"datasets": False, "models": False}
    assert Path(got["files"]["pipeflow"]).resolve() == (purelib / "pipeflow" / "__init__.py").resolve()
    for folder, pkg in MAPPED.items():
        assert Path(got["files"][pkg]).resolve() == (purelib / "pipeflow" / folder / "__init__.py").resolve()


def test_editable_install_maps_repo_folders(tmp_path):
    py = _venv(tmp_path / "venv")
    if _build_here():
        # What `pip install -e` does, with this interpreter's setuptools as
        # the backend (no build isolation, no index needed).
        wheel_dir = tmp_path / "editable"
        wheel_dir.mkdir()
        hook = "import sys, setuptools.build_meta as b; print(b.build_editable(sys.argv[1]))"
        _run([sys.executable, "-c", hook, wheel_dir], cwd=REPO, env=_pip_env())
        (editable,) = wheel_dir.glob("pipeflow-*.whl")
        _run([py, "-m", "pip", "install", "--no-deps", editable], cwd=tmp_path, env=_pip_env())
    else:  # isolated build: pip gets setuptools from the configured index
        _run([py, "-m", "pip", "install", "--no-deps", "-e", REPO], cwd=tmp_path, env=_pip_env())

    purelib = _purelib(py)
    for folder in MAPPED:
        assert not (purelib / folder).exists(), f"top-level {folder}/ installed into site-packages"

    got = _probe(py, tmp_path)
    assert Path(got["prefix"]).resolve() == (tmp_path / "venv").resolve()
    assert got["top_level"] == {"datasets": False, "models": False}, (
        "the editable install exposes the repo root on sys.path"
    )
    assert Path(got["files"]["pipeflow"]).resolve() == (REPO / "pipeflow" / "__init__.py").resolve()
    for folder, pkg in MAPPED.items():
        assert Path(got["files"][pkg]).resolve() == (REPO / folder / "__init__.py").resolve()
