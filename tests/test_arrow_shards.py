"""The Arrow shard format: `pipeflow preprocess` (scripts/preprocess.py) writes it,
pipeflow.datasets.ArrowShards reads it, scripts/inspect_dataset.py looks at it.

Most tests use images they write themselves (with a truncated JPEG and a .jpg that is not
an image); two use the real data of ../shared/data (the CIFAR-10 tar and the ImageNet
samples) and skip with the reason when it is absent."""
import gzip
import hashlib
import io
import json
import os
import pickle
import runpy
import signal
import struct
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pyarrow.ipc as ipc
import pytest
from PIL import Image

from pipeflow import preprocess as pp
from pipeflow import shards
from pipeflow.data import DataLoader, Subset, sample_generator
from pipeflow.data import worker as data_worker
from pipeflow.datasets.arrow_shards import ArrowShards

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "preprocess.py"
SHARED = REPO.parent / "shared" / "data"
CIFAR_TAR = SHARED / "cifar10-jpeg-train.tar.gz"
IMAGENET = SHARED / "imagenet-samples"
CLASSES = ["bird", "cat", "dog"]


# --- helpers ----------------------------------------------------------------------------------
def run(*args, expect=0):
    """pipeflow.preprocess.main in this process; its exit status."""
    try:
        code = pp.main([str(a) for a in args])
    except SystemExit as e:
        code = e.code
    assert code == expect, f"preprocess {args} exited {code}, expected {expect}"
    return code


def image_bytes(seed, size, fmt, mode="RGB"):
    rng = np.random.default_rng(seed)
    w, h = size
    base = np.linspace(0, 255, w * h, dtype=np.float32).reshape(h, w)
    pixels = base[..., None] + rng.normal(0, 20, (h, w, 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).convert(mode)
    out = io.BytesIO()
    image.save(out, fmt)
    return out.getvalue()


def manifest(root):
    return json.loads((Path(root) / "manifest.json").read_text())


def shard_files(root):
    if not Path(root).is_dir():
        return []
    return sorted(p.name for p in Path(root).iterdir() if p.name.endswith(".arrow"))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """An ImageFolder: 3 classes x 8 images (JPEG and PNG, one grayscale, one RGBA, one
    300x200), plus a truncated JPEG and a .jpg that is not an image."""
    root = tmp_path_factory.mktemp("imagefolder") / "train"
    expected = {}
    for label, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for i in range(8):
            fmt, mode, size = ("JPEG", "RGB", (20 + i, 16)) if i % 2 else ("PNG", "RGB", (16, 18))
            if (label, i) == (0, 2):
                mode = "L"
            if (label, i) == (1, 4):
                mode = "RGBA"
            if (label, i) == (2, 3):
                size = (300, 200)
            data = image_bytes(label * 100 + i, size, fmt, mode)
            rel = f"{name}/{i:03d}.{'png' if fmt == 'PNG' else 'jpg'}"
            (root / rel).write_bytes(data)
            expected[rel] = (label, data)
    good = (root / "cat" / "001.jpg").read_bytes()
    (root / "cat" / "005_truncated.jpg").write_bytes(good[:len(good) // 2])
    (root / "dog" / "notes.jpg").write_bytes(b"this is a text file, not a JPEG\n")
    bad = {"cat/005_truncated.jpg", "dog/notes.jpg"}
    return root, expected, bad


@pytest.fixture(scope="module")
def written(folder, tmp_path_factory):
    """The folder preprocessed once with --skip-bad into several shards."""
    root, _, _ = folder
    out = tmp_path_factory.mktemp("written") / "shards"
    run(root, out, "--skip-bad", "--shard-size", "2KB", "--workers", "2", "--no-progress")
    return out


# --- writing and reading back ---------------------------------------------------------------
def test_bad_images_stop_the_run_and_name_their_paths(folder, tmp_path, capsys):
    root, _, _ = folder
    run(root, tmp_path / "out", "--workers", "2", expect=1)
    err = capsys.readouterr().err
    assert str(root / "cat" / "005_truncated.jpg") in err and str(root / "dog" / "notes.jpg") in err
    assert "--skip-bad" in err
    assert not (tmp_path / "out" / "manifest.json").exists()
    assert not list((tmp_path / "out").glob("*.part"))


def test_skip_bad_lists_and_counts_them_and_reads_back_equal(folder, written, capsys):
    root, expected, bad = folder
    m = manifest(written)
    assert m["skipped"] == 2 and sorted(b["path"] for b in m["bad"]) == sorted(bad)
    assert all(b["error"] for b in m["bad"])
    assert m["num_rows"] == len(expected) and m["classes"] == CLASSES
    ds = ArrowShards(written)
    assert len(ds) == len(expected) and len(m["shards"]) > 1
    paths = ds.column("path")
    assert sorted(paths) == sorted(expected)
    assert paths == sorted(paths, key=lambda p: (CLASSES.index(p.split("/")[0]), p))
    stored = ds.read_bytes(range(len(ds)))
    for i, path in enumerate(paths):
        label, data = expected[path]
        image, target = ds[i]
        assert target == label == ds.targets[i]
        assert image.mode == "RGB"  # grayscale and RGBA come back as RGB, as ImageFolder does
        if path == "dog/003.jpg":  # 300x200 stays as it is without --max-side
            assert image.size == (300, 200)
        assert stored[i] == data  # JPEG and PNG are stored byte for byte
        original = Image.open(io.BytesIO(data)).convert("RGB")
        assert np.array_equal(np.asarray(image), np.asarray(original))
    assert list(ds.column("width")) == [Image.open(io.BytesIO(expected[p][1])).width
                                        for p in paths]


def test_getitems_matches_getitem_across_shards(written):
    ds = ArrowShards(written, transform=np.asarray, mode=None)
    indices = [23, 0, 7, 7, 12, -1, 5]
    batch = ds.__getitems__(indices)
    for i, (image, label) in zip(indices, batch):
        one, one_label = ds[i]
        assert label == one_label and np.array_equal(image, one)
    assert [label for _, label in Subset(ds, [3, 20]).__getitems__([1, 0])] == \
        [ds.targets[20], ds.targets[3]]
    with pytest.raises(IndexError, match="out of range"):
        ds.__getitems__([0, len(ds)])


def test_shard_size_splits_into_shards_of_about_that_size(folder, tmp_path):
    root, expected, _ = folder
    run(root, tmp_path / "one", "--skip-bad", "--no-progress")
    assert len(manifest(tmp_path / "one")["shards"]) == 1
    run(root, tmp_path / "many", "--skip-bad", "--shard-size", "3KB", "--no-progress")
    m = manifest(tmp_path / "many")
    assert len(m["shards"]) >= 5
    assert [s["file"] for s in m["shards"]] == shard_files(tmp_path / "many")
    assert sum(s["rows"] for s in m["shards"]) == len(expected)
    for s in m["shards"]:  # each on disk as the manifest says
        path = tmp_path / "many" / s["file"]
        assert path.stat().st_size == s["bytes"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == s["sha256"]
        assert ipc.open_file(str(path)).read_all().num_rows == s["rows"]
    a, b = ArrowShards(tmp_path / "one"), ArrowShards(tmp_path / "many")
    assert a.read_bytes(range(len(a))) == b.read_bytes(range(len(b)))


def test_max_side_reencodes_only_larger_images(folder, tmp_path):
    root, expected, _ = folder
    run(root, tmp_path / "out", "--skip-bad", "--max-side", "64", "--quality", "80",
        "--no-progress")
    ds = ArrowShards(tmp_path / "out", mode=None)
    for i, path in enumerate(ds.column("path")):
        data = ds.read_bytes([i])[0]
        if path == "dog/003.jpg":
            assert data[:2] == b"\xff\xd8" and Image.open(io.BytesIO(data)).size == (64, 43)
            assert (ds.column("width")[i], ds.column("height")[i]) == (64, 43)
        else:
            assert data == expected[path][1]
    assert manifest(tmp_path / "out")["options"]["max_side"] == 64


def test_kill_9_midway_then_rerun_keeps_finished_shards(tmp_path):
    """A run SIGKILLed after its first shard: the shards under final names are complete,
    no worker outlives it; a rerun rewrites nothing finished, leaves no .part, and ends with
    the same shards (same sha256) as a run never interrupted."""
    src = tmp_path / "src"
    data = image_bytes(0, (640, 480), "PNG")  # slow enough: PNG decode + resize + encode
    for c in ("a", "b"):
        (src / c).mkdir(parents=True)
        for i in range(50):
            (src / c / f"{i:03d}.png").write_bytes(data)
    out = tmp_path / "out"
    args = [sys.executable, str(SCRIPT), str(src), str(out), "--max-side", "128",
            "--shard-size", str(2 * len(data)), "--no-progress"]
    proc = subprocess.Popen(args + ["--workers", "1"], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not shard_files(out) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        assert proc.poll() is None, f"the run ended before it could be killed: " \
                                    f"{proc.stderr.read().decode()}"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        _wait_group_gone(proc.pid)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.stderr.close()
    assert not (out / "manifest.json").exists()
    first = shard_files(out)
    assert first and len(first) < 50
    for name in first:  # complete files only under final names
        assert ipc.open_file(str(out / name)).read_all().num_rows == 2
    before = {n: (os.stat(out / n).st_ino, os.stat(out / n).st_mtime_ns) for n in first}

    result = subprocess.run(args + ["--workers", "2"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "resuming" in result.stderr
    after = {n: (os.stat(out / n).st_ino, os.stat(out / n).st_mtime_ns) for n in first
             if (out / n).exists()}
    finished = [n for n in first if (out / shards.PROGRESS / (n + ".json")).exists()]
    assert finished and all(after[n] == before[n] for n in finished)
    assert not [p for p in out.rglob("*") if ".part" in p.name]
    m = manifest(out)
    assert m["num_rows"] == 100 and len(m["shards"]) == 50 == len(shard_files(out))
    ArrowShards(out, verify=True)

    clean = tmp_path / "clean"
    assert subprocess.run([a if a != str(out) else str(clean) for a in args] + ["--workers", "2"],
                          capture_output=True).returncode == 0
    assert manifest(clean)["shards"] == m["shards"]


def _group_members(pgid):
    alive = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                alive.append(int(entry))
    return alive


def _wait_group_gone(pgid, timeout=10):
    deadline = time.monotonic() + timeout
    while _group_members(pgid):
        assert time.monotonic() < deadline, f"processes outlived the killed run: " \
                                            f"{_group_members(pgid)}"
        time.sleep(0.02)


def test_split_runs_and_merge_equal_a_single_run(folder, tmp_path):
    root, _, _ = folder
    common = ["--skip-bad", "--shard-size", "2KB", "--no-progress"]
    run(root, tmp_path / "single", *common)
    split = tmp_path / "split"
    run(root, split, *common, "--num-shards", "2", "--shard-index", "1")
    assert not (split / "manifest.json").exists()
    with pytest.raises(shards.ManifestError, match="--merge"):
        ArrowShards(split)
    run("--merge", split, expect=1)  # part 0 has not finished
    run(root, split, *common, "--num-shards", "2", "--shard-index", "0")
    single, merged = manifest(tmp_path / "single"), manifest(split)  # the last part merged
    assert merged["shards"] == single["shards"] and merged["bad"] == single["bad"]
    assert merged["num_rows"] == single["num_rows"] and merged["skipped"] == 2
    (split / "manifest.json").unlink()
    run("--merge", split)
    assert manifest(split) == merged
    a, b = ArrowShards(tmp_path / "single"), ArrowShards(split)
    assert a.read_bytes(range(len(a))) == b.read_bytes(range(len(b)))
    assert list(a.targets) == list(b.targets)


def test_rerun_with_other_options_is_refused(folder, tmp_path, capsys):
    root, _, _ = folder
    run(root, tmp_path / "out", "--skip-bad", "--no-progress")
    run(root, tmp_path / "out", "--skip-bad", "--no-progress")  # the same: nothing to do
    assert "1 already there" in capsys.readouterr().out
    run(root, tmp_path / "out", "--skip-bad", "--max-side", "8", "--no-progress", expect=1)
    assert "other input or options" in capsys.readouterr().err
    run(root, tmp_path / "out", "--skip-bad", "--max-side", "8", "--overwrite", "--no-progress")
    assert manifest(tmp_path / "out")["options"]["max_side"] == 8


def test_truncated_or_altered_shard_is_reported_by_name(written, tmp_path):
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(written, copy)
    name = manifest(copy)["shards"][1]["file"]
    path = copy / name
    original = path.read_bytes()

    data = bytearray(original)
    data[len(data) // 3] ^= 0xFF  # same size, one byte changed
    path.write_bytes(bytes(data))
    ArrowShards(copy, verify="fast")  # sizes only: not seen
    with pytest.raises(shards.ShardError, match=f"{name}.*altered") as info:
        ArrowShards(copy)
    assert info.value.shard == name
    with pytest.raises(shards.ShardError, match=name):
        shards.verify(copy)

    path.write_bytes(original[:len(original) // 2])
    for verify in (True, "fast"):
        with pytest.raises(shards.ShardError, match=f"{name}.*truncated"):
            ArrowShards(copy, verify=verify)
    with pytest.raises(shards.ShardError, match=f"{name}.*not a readable Arrow file"):
        ArrowShards(copy, verify=False)
    path.unlink()
    with pytest.raises(shards.ShardError, match=f"{name}.*missing"):
        ArrowShards(copy, verify="fast")


# --- reading through the DataLoader -------------------------------------------------------------
def to_array(image):
    """8x8 uint8 HWC, plus a draw from the sample's random stream (per index)."""
    noise = int(sample_generator().integers(0, 100))
    return np.asarray(image.resize((8, 8)), dtype=np.int16) + noise


def test_dataloader_with_two_workers(written):
    ds = ArrowShards(written, transform=to_array)
    batches = {}
    for workers in (0, 2):
        loader = DataLoader(ds, batch_size=5, shuffle=True, num_workers=workers, seed=7)
        batches[workers] = [(x.numpy().copy(), y.numpy().copy()) for x, y in loader]
    assert len(batches[2]) == -(-len(ds) // 5)
    for (x0, y0), (x2, y2) in zip(batches[0], batches[2]):
        assert np.array_equal(x0, x2) and np.array_equal(y0, y2)
    order = np.concatenate([y for _, y in batches[2]])
    assert sorted(order.tolist()) == sorted(ds.targets.tolist())
    # each sample drew from its own index's stream, as if fetched one by one
    loader = DataLoader(ds, batch_size=6, num_workers=2, seed=3)
    first = next(iter(loader))[0].numpy()
    for i in range(6):
        data_worker.sample_context.set(3, 0, i)
        try:
            assert np.array_equal(first[i], ds[i][0])
        finally:
            data_worker.sample_context.key = None


def test_pickles_for_spawned_workers(written):
    ds = ArrowShards(written, transform=np.asarray)
    clone = pickle.loads(pickle.dumps(ds))
    assert len(clone) == len(ds) and list(clone.targets) == list(ds.targets)
    assert np.array_equal(clone[9][0], ds[9][0])
    loader = DataLoader(ArrowShards(written, transform=to_array), batch_size=8, num_workers=2,
                        multiprocessing_context="spawn", seed=1)
    assert sum(len(y) for _, y in loader) == len(ds)


# --- other sources ------------------------------------------------------------------------------
def test_tar_source_with_a_broken_member(folder, tmp_path, capsys):
    root, expected, bad = folder
    archive = tmp_path / "images.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(root, arcname="data/train")
    run(archive, tmp_path / "out", "--skip-bad", "--no-progress")
    assert f"{archive}:data/train/dog/notes.jpg" in capsys.readouterr().err
    ds = ArrowShards(tmp_path / "out")
    m = manifest(tmp_path / "out")
    assert ds.classes == CLASSES and m["skipped"] == 2 and len(ds) == len(expected)
    assert sorted(b["path"] for b in m["bad"]) == sorted(f"data/train/{p}" for p in bad)
    for i, path in enumerate(ds.column("path")):
        assert ds.read_bytes([i])[0] == expected[path[len("data/train/"):]][1]
        assert ds.targets[i] == expected[path[len("data/train/"):]][0]
    assert not list((tmp_path / "out" / shards.PROGRESS).glob("tmp-*"))  # no decompressed copy


def test_cifar_and_mnist_sources(tmp_path):
    rng = np.random.default_rng(0)
    cifar = tmp_path / "cifar-10-batches-py"
    cifar.mkdir()
    names = [f"c{i}".encode() for i in range(10)]
    (cifar / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}))
    arrays = []
    for b in range(1, 6):
        data = rng.integers(0, 256, (3, 3072), dtype=np.uint8)
        labels = [b, b + 1, b + 2]
        arrays += list(zip(data, labels))
        (cifar / f"data_batch_{b}").write_bytes(pickle.dumps({b"data": data, b"labels": labels}))
    (cifar / "test_batch").write_bytes(pickle.dumps({b"data": data, b"labels": labels}))
    run(tmp_path, tmp_path / "cifar_out", "--no-progress")
    ds = ArrowShards(tmp_path / "cifar_out")
    assert ds.classes == [n.decode() for n in names] and len(ds) == 15
    for i, (row, label) in enumerate(arrays):
        image, target = ds[i]
        assert target == label
        assert np.array_equal(np.asarray(image), row.reshape(3, 32, 32).transpose(1, 2, 0))

    mnist = tmp_path / "mnist" / "raw"
    mnist.mkdir(parents=True)
    images = rng.integers(0, 256, (7, 28, 28), dtype=np.uint8)
    labels = np.arange(7, dtype=np.uint8)
    with gzip.open(mnist / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">IIII", 2051, 7, 28, 28) + images.tobytes())
    with gzip.open(mnist / "train-labels-idx1-ubyte.gz", "wb") as f:
        f.write(struct.pack(">II", 2049, 7) + labels.tobytes())
    run(tmp_path / "mnist", tmp_path / "mnist_out", "--no-progress")
    ds = ArrowShards(tmp_path / "mnist_out")
    assert len(ds) == 7 and ds.classes == [str(i) for i in range(10)]
    image, target = ds[3]
    assert image.mode == "L" and target == 3 and np.array_equal(np.asarray(image), images[3])


# --- the inspect script -------------------------------------------------------------------------
def test_inspect_dataset_counts_sizes_and_contact_sheet(written, tmp_path, capsys):
    main = runpy.run_path(str(REPO / "scripts" / "inspect_dataset.py"))["main"]
    sheet = tmp_path / "sheet.png"
    assert main([str(written), "--sheet", str(sheet), "--samples", "10", "--columns", "5",
                 "--thumb", "32", "--verify"]) == 0
    out = capsys.readouterr().out
    for name in CLASSES:
        assert any(line.split()[:2] == [name, "8"] for line in out.splitlines())
    assert "image sizes" in out and "300 x 200" in out and "2 images left out" in out
    image = Image.open(sheet)
    assert image.format == "PNG" and image.size == (5 * 36 + 4, 2 * (32 + 14 + 4) + 4)


# --- real data (skipped where ../shared/data is absent) ----------------------------------------
@pytest.mark.skipif(not CIFAR_TAR.exists(), reason=f"needs the CIFAR-10 JPEG tar at {CIFAR_TAR} "
                                                   f"(real data, not on this machine)")
def test_cifar_tar_subset(tmp_path, capsys):
    out = tmp_path / "cifar"
    run(CIFAR_TAR, out, "--classes", "cat,dog", "--per-class", "500", "--shard-size", "200KB",
        "--workers", "2")
    err = capsys.readouterr().err
    assert "images/s" in err
    ds = ArrowShards(out)
    assert ds.classes == ["cat", "dog"] and len(ds) == 1000 and len(ds.manifest["shards"]) > 1
    assert np.bincount(ds.targets).tolist() == [500, 500]
    paths = ds.column("path")
    assert paths[0] == "train/cat/0000.jpg" and paths[-1] == "train/dog/0499.jpg"
    with tarfile.open(CIFAR_TAR) as tar:
        for i in (0, 499, 500, 999):
            assert ds.read_bytes([i])[0] == tar.extractfile(paths[i]).read()
    image, label = ds[999]
    assert image.size == (32, 32) and image.mode == "RGB" and label == 1


@pytest.mark.skipif(not IMAGENET.is_dir(), reason=f"needs the ImageNet samples at {IMAGENET} "
                                                  f"(real data, not on this machine)")
def test_imagenet_samples_with_max_side(tmp_path):
    files = sorted(IMAGENET.glob("*.JPEG"))
    gray = [f for f in files if Image.open(f).mode == "L"]
    chosen = gray + [f for f in files if f not in gray][:36]
    root = tmp_path / "folder"  # ImageFolder of symlinks, one class per wnid: nothing copied
    for f in chosen:
        (root / f.name.split("_")[0]).mkdir(parents=True)
        (root / f.name.split("_")[0] / f.name).symlink_to(f)
    run(root, tmp_path / "out", "--max-side", "160", "--workers", "2", "--no-progress")
    ds = ArrowShards(tmp_path / "out")
    assert len(ds) == len(chosen) == 40 and len(gray) == 4
    widths, heights = ds.column("width"), ds.column("height")
    assert max(max(w, h) for w, h in zip(widths, heights)) == 160
    for i, path in enumerate(ds.column("path")):
        image, label = ds[i]
        assert image.mode == "RGB" and image.size == (widths[i], heights[i])
        assert ds.classes[label] == path.split("/")[0]
        if Path(IMAGENET / Path(path).name) in gray:
            assert Image.open(io.BytesIO(ds.read_bytes([i])[0])).mode == "L"
