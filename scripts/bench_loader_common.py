"""What both sides of scripts/bench_loader.py share: the data's location and recipe, and
how a loader is timed. Neither pipeflow nor torch is imported here: each side's
configurations run in a process that imports only its own library."""
import glob
import math
import os
import statistics
import threading
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
IMAGE_DIR = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "data", "imagenet-samples"))
CIFAR_TAR = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "data",
                                          "cifar10-jpeg-train.tar.gz"))
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
SIZE = 224
SCALE = (0.08, 1.0)
RATIO = (3 / 4, 4 / 3)


# --- memory of the process tree ---------------------------------------------------------
def _tree_pids(root):
    parents = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    stat = f.read()
                parents.setdefault(int(stat[stat.rindex(")") + 2:].split()[1]), []).append(
                    int(name))
            except (OSError, ValueError, IndexError):
                pass
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(parents.get(pid, ()))
    return out


def tree_pss():
    """Bytes of PSS summed over this process and its descendants."""
    total = 0
    for pid in _tree_pids(os.getpid()):
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1]) * 1024
                        break
        except OSError:
            pass
    return total


class PeakMemory:
    """Peak of tree_pss() sampled by a thread, above the value at the start."""

    def __init__(self, interval=0.02):
        self.interval, self.peak = interval, 0
        self._stop = threading.Event()

    def __enter__(self):
        self.base = self.peak = tree_pss()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, tree_pss())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, tree_pss())

    @property
    def delta_mib(self):
        return (self.peak - self.base) / 2 ** 20


# --- timing a loader --------------------------------------------------------------------
def run_loader(make, passes, consume=None, sync=None):
    """(samples/s median over passes 2.., first-batch seconds, peak MiB over baseline)."""
    rates, first, peak = [], None, None
    with PeakMemory() as mem:
        loader = make()
        start = time.perf_counter()
        it = iter(loader)
        n = _drain(it, consume, sync, on_first=lambda: time.perf_counter() - start)
        first = n[1]
    peak = mem.delta_mib
    for _ in range(passes - 1):
        start = time.perf_counter()
        count, _ = _drain(iter(loader), consume, sync)
        rates.append(count / (time.perf_counter() - start))
    if not rates:
        rates.append(n[0] / (time.perf_counter() - start))
    del loader
    return statistics.median(rates), first, peak


def _drain(it, consume, sync, on_first=None):
    count, first = 0, None
    for batch in it:
        if consume is not None:
            batch = consume(batch)
        if first is None and on_first is not None:
            if sync is not None:
                sync()
            first = on_first()
        count += len(batch[1])
    if sync is not None:
        sync()
    return count, first


def image_files():
    files = sorted(glob.glob(os.path.join(IMAGE_DIR, "*.JPEG")))
    if not files:
        raise SystemExit(f"no images in {IMAGE_DIR}: the JPEG case needs ../shared/data")
    return files


def crop_params(width, height, uniform, randint):
    """torchvision's RandomResizedCrop.get_params: (top, left, h, w)."""
    area = height * width
    log_ratio = (math.log(RATIO[0]), math.log(RATIO[1]))
    for _ in range(10):
        target_area = area * uniform(SCALE[0], SCALE[1])
        aspect_ratio = math.exp(uniform(log_ratio[0], log_ratio[1]))
        w = int(round(math.sqrt(target_area * aspect_ratio)))
        h = int(round(math.sqrt(target_area / aspect_ratio)))
        if 0 < w <= width and 0 < h <= height:
            return randint(0, height - h + 1), randint(0, width - w + 1), h, w
    in_ratio = float(width) / float(height)  # fallback: central crop
    if in_ratio < min(RATIO):
        w = width
        h = int(round(w / min(RATIO)))
    elif in_ratio > max(RATIO):
        h = height
        w = int(round(h * max(RATIO)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def folder_samples(root):
    """(path, class index) of root/<class>/<file>, sorted (torchvision's make_dataset)."""
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir())
    return [(os.path.join(root, c, f), i) for i, c in enumerate(classes)
            for f in sorted(os.listdir(os.path.join(root, c)))]


def small_data(n):
    """The small case's samples: n random 28x28 uint8 images and int64 labels (seeded, so
    that both sides' processes build the same ones)."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    return images, rng.integers(0, 10, n).astype(np.int64)
