"""DataLoader throughput, pipeflow vs torch, side by side in one run.

1. Small samples: 60,000 in-memory 28x28 uint8 images + int64 labels (TensorDataset),
   batch 256, shuffle, workers 0 and 2. Target: pipeflow >= 10x torch's samples/s.
2. Real JPEGs: the 250 ImageNet photos of ../shared/data/imagenet-samples cycled to 2,000
   samples; decode + RandomResizedCrop(224) + horizontal flip, ending in the same
   normalised float32 NCHW batch of 64, workers 0 and 2. Each loader in its idiomatic form:
   torch as torchvision's recipe does it (PIL crop/resize/flip, ToTensor + Normalize in the
   workers; torchvision is re-implemented here with PIL + torch ops, since it is not
   installed); pipeflow returns uint8 HWC samples (decoded by libjpeg-turbo, with DCT
   scaling where the crop is shrunk a lot) and converts/normalises the whole uint8 batch
   after it arrives, on the batch's device (pipeflow.transforms.to_float_nchw). Targets:
   >= 2x torch, and >= 85% of the ceiling = max(workers, 1) x one process's rate of
   pipeflow's decode + crop + flip to uint8 in a plain loop.
3. Loader state: time to the first batch (from iterator creation) and peak memory: the
   maximum, over samples every 20 ms taken by a thread during the first pass, of the PSS
   (proportional set size, /proc/<pid>/smaps_rollup, so shared-memory slots are not counted
   twice) summed over this process and all its descendants, minus that sum just before
   the loader was built.
4. Storage: the 50,000 CIFAR-10 JPEGs (32x32) of ../shared/data/cifar10-jpeg-train.tar.gz
   read from Arrow shards vs from an ImageFolder on disk, each through pipeflow's loader and
   through torch's loader with the equivalent dataset: decode to a uint8 HWC array + label
   per sample (no augmentation), batch 256, shuffle, workers 0 and 2. Setup (timed apart,
   not in the throughput): the tar extracted into a temporary ImageFolder, converted once
   with `pipeflow preprocess` (images stored as they are) into temporary shards. Target:
   pipeflow over Arrow shards >= 3x torch over the ImageFolder. --quick: 500 per class.
With an NVIDIA GPU (pipeflow.cuda.is_available()): host-to-device throughput of loader
batches (device='cuda', pin_memory=True) against a pinned-memory bandwidth measured with
CuPy in the same run (target >= 90%), and worker scaling 1..16 on the JPEG case.

Timing: every configuration runs `passes` full epochs (workers are started by each epoch,
persistent_workers=False on both sides); pass 1 measures the first batch and memory, the
reported samples/s is the median over the later passes. The two libraries alternate per
configuration, and each configuration runs in a new process (spawned) that imports only
its own library (pipeflow's side never imports torch, torch's never pipeflow), as a user's
program would: workers are forked from that process, whose size sets the fork's cost.
Usage: python scripts/bench_loader.py [--quick] [--passes N] [--cases small,jpeg,storage,gpu]
"""
import argparse
import io
import multiprocessing
import os
import shutil
import statistics
import tarfile
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import simplejpeg
from PIL import Image

import pipeflow as pf
import pipeflow.datasets  # noqa: F401  (pf.datasets)
from bench_loader_common import CIFAR_TAR, MEAN, SIZE, STD, crop_params, image_files, \
    run_loader, small_data
from pipeflow.data import worker as pf_worker


def isolated(job, *args):
    """job(*args), run in a new process that imports only its side's library (torch jobs
    live in bench_loader_torch), as a user's program would: a loader's workers are forked
    from that process, and forking a process that holds torch (~200 MB) costs pipeflow's
    workers milliseconds per epoch that no pipeflow user pays."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_as_a_program, multiprocessing.get_start_method(), job,
                           args).result()


def _as_a_program(start_method, job, args):
    """job(*args) with the start method a program gets by default (a spawned process
    inherits "spawn", under which torch would start its workers)."""
    multiprocessing.set_start_method(start_method, force=True)
    return job(*args)


def torch_side():
    try:
        import bench_loader_torch
    except ImportError:
        raise SystemExit("this benchmark compares against torch: pip install torch==2.13.0")
    return bench_loader_torch

# --- case 1: small in-memory samples ------------------------------------------------------
def small(n, workers, passes):
    images, labels = small_data(n)
    ds = pf.data.TensorDataset(pf.tensor(images), pf.tensor(labels))
    return run_loader(lambda: pf.data.DataLoader(ds, batch_size=256, shuffle=True,
                                                 num_workers=workers, seed=0), passes)


def small_case(n, workers, passes):
    return [("28x28 uint8, batch 256", w, isolated(small, n, w, passes),
             isolated(torch_side().small, n, w, passes)) for w in workers]


# --- case 2: JPEGs --------------------------------------------------------------------------
class PipeflowJPEGs(pf.data.Dataset):
    """Decode (libjpeg-turbo, with DCT scaling when the crop is shrunk by 2x or more) +
    RandomResizedCrop + flip, drawn from the sample's own generator, to a uint8 HWC array."""

    def __init__(self, files, n, draft=True):
        self.files, self.n, self.draft = files, n, draft

    def __len__(self):
        return self.n

    def __getitem__(self, index):
        k = index % len(self.files)
        rng = pf.data.sample_generator()
        with open(self.files[k], "rb") as f:
            data = f.read()
        height, width, _, _ = simplejpeg.decode_jpeg_header(data)  # nothing decoded yet
        top, left, h, w = crop_params(width, height, rng.uniform,
                                      lambda a, b: int(rng.integers(a, b)))
        # DCT scaling by 1/2, 1/4 or 1/8, only as far as the crop keeps >= 224 pixels each
        # way, and only where the crop shrinks 2x or more: libjpeg-turbo's other factors
        # (7/8 .. 5/8) have no SIMD code and decode slower than the full image
        shrinks = self.draft and w >= 2 * SIZE and h >= 2 * SIZE
        scaled = dict(min_width=-(-width * SIZE // w),
                      min_height=-(-height * SIZE // h)) if shrinks else {}
        try:
            pixels = simplejpeg.decode_jpeg(data, colorspace="RGB", **scaled)
        except ValueError:  # not decodable by libjpeg-turbo (e.g. CMYK): PIL
            pixels = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        img = Image.fromarray(pixels)
        sx, sy = width / img.width, height / img.height
        img = img.resize((SIZE, SIZE), Image.BILINEAR,
                         box=(left / sx, top / sy, (left + w) / sx, (top + h) / sy))
        if rng.random() < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        return np.asarray(img), k


def normalise(batch):
    """uint8 NHWC batch -> normalised float32 NCHW on its device (pipeflow.transforms)."""
    x, y = batch
    return pf.transforms.to_float_nchw(x, MEAN, STD), y


def ceiling_rate(files, count, passes=3):
    """Samples/s of one process running pipeflow's decode + crop + flip in a plain loop
    (median of `passes` loops over `count` samples)."""
    ds = PipeflowJPEGs(files, count)
    for i in range(min(20, count)):  # warm the page cache and PIL
        pf_worker.sample_context.set(1, 0, i)
        ds[i]
    rates = []
    for epoch in range(passes):
        start = time.perf_counter()
        for i in range(count):
            pf_worker.sample_context.set(0, epoch, i)
            ds[i]
        rates.append(count / (time.perf_counter() - start))
    pf_worker.sample_context.key = None
    return statistics.median(rates)


def check_same_output(files):
    """Both pipelines end in the same kind of batch (shape, dtype, value range)."""
    pf_b = normalise(next(iter(pf.data.DataLoader(PipeflowJPEGs(files, 8), batch_size=8))))
    th = torch_side()
    th_b = next(iter(th.tdata.DataLoader(th.TorchJPEGs(files, 8), batch_size=8)))
    a, b = pf_b[0].numpy(), th_b[0].numpy()
    assert a.shape == b.shape == (8, 3, SIZE, SIZE) and a.dtype == b.dtype == np.float32, \
        (a.shape, a.dtype, b.shape, b.dtype)
    # the same fixed crop through both paths agrees to rounding (uint8 quantisation aside)
    img = Image.open(files[0]).convert("RGB").resize((SIZE, SIZE), Image.BILINEAR)
    arr = np.asarray(img)[None]
    ours = normalise((pf.tensor(arr), pf.tensor(np.zeros(1, np.int64))))[0].numpy()
    torch = th.torch
    theirs = ((torch.from_numpy(arr.copy()).permute(0, 3, 1, 2).float() / 255
               - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1))
    assert np.allclose(ours, theirs.numpy(), atol=1e-5), abs(ours - theirs.numpy()).max()


def jpeg(files, n, workers, passes, device=None, pin=False):
    ds = PipeflowJPEGs(files, n)
    sync = None
    if device is not None and device.startswith("cuda"):
        sync = lambda: pf.backend.cupy.cuda.get_current_stream().synchronize()  # noqa: E731
    return run_loader(lambda: pf.data.DataLoader(ds, batch_size=64, shuffle=True,
                                                 num_workers=workers, seed=0, device=device,
                                                 pin_memory=pin),
                      passes, consume=normalise, sync=sync)


def jpeg_case(files, n, workers, passes, device=None, pin=False):
    return [("JPEG 224, batch 64" + (f" ({device})" if device else ""), w,
             isolated(jpeg, files, n, w, passes, device, pin),
             isolated(torch_side().jpeg, files, n, w, passes)) for w in workers]


# --- case 4: Arrow shards vs ImageFolder (CIFAR-10 JPEGs) ----------------------------------
def _rgb_array(path):
    """pipeflow's ImageFolder loader in array form: the uint8 HWC pixels, decoded by
    libjpeg-turbo (pipeflow.transforms.decode_rgb_array)."""
    with open(path, "rb") as f:
        return pf.transforms.decode_rgb_array(f.read())


def storage_setup(tmp, per_class=None):
    """Extract the tar (all, or the first `per_class` images of each class) into
    tmp/folder and convert that folder to tmp/shards; (folder, shards, seconds, seconds)."""
    from pipeflow import preprocess
    start = time.perf_counter()
    with tarfile.open(CIFAR_TAR, "r:gz") as tar:
        members, seen = [], {}
        for m in tar:
            if m.isfile() and m.name.lower().endswith(".jpg"):
                cls = os.path.dirname(m.name)
                if per_class is None or seen.get(cls, 0) < per_class:
                    seen[cls] = seen.get(cls, 0) + 1
                    members.append(m)
        tar.extractall(os.path.join(tmp, "folder"), members=members, filter="data")
    roots = {os.path.dirname(os.path.dirname(m.name)) for m in members}
    if len(roots) != 1:
        raise SystemExit(f"{CIFAR_TAR}: expected one <root>/<class>/<image> tree, got {roots}")
    folder = os.path.join(tmp, "folder", roots.pop())
    t_extract = time.perf_counter() - start
    shards_dir = os.path.join(tmp, "shards")
    start = time.perf_counter()
    preprocess.main([folder, shards_dir, "--no-progress"])  # stores the JPEGs as they are
    return folder, shards_dir, t_extract, time.perf_counter() - start


def storage_datasets(folder, shards):
    return {"pf-shards": pf.datasets.ArrowShards(shards, loader=pf.transforms.decode_rgb_array),
            "pf-folder": pf.datasets.ImageFolder(folder, loader=_rgb_array)}


def storage(name, folder, shards, workers, passes):
    ds = storage_datasets(folder, shards)[name]
    return run_loader(lambda: pf.data.DataLoader(ds, batch_size=256, shuffle=True,
                                                 num_workers=workers, seed=0), passes)


def check_same_samples(datasets):
    """All four datasets give the same uint8 32x32x3 image and label for the same index."""
    th_folder = datasets["th-folder"]
    for i in (0, len(th_folder) // 2, len(th_folder) - 1):
        ref_img, ref_label = th_folder[i]
        for name in ("pf-shards", "pf-folder", "th-shards"):
            img, label = datasets[name][i]
            img = np.asarray(img)
            assert img.dtype == np.uint8 and img.shape == (32, 32, 3) == ref_img.shape, \
                (name, img.dtype, img.shape)
            assert np.array_equal(img, ref_img) and int(label) == int(ref_label), (name, i)


def storage_case(workers, passes, per_class=None):
    """Rows (workers, {name: (rate, first, peak)}), the sample count and the setup times."""
    tmp = tempfile.mkdtemp(prefix="bench-loader-cifar-")
    try:
        folder, shards, t_extract, t_pre = storage_setup(tmp, per_class)
        th = torch_side()
        datasets = {**storage_datasets(folder, shards), **th.storage_datasets(folder, shards)}
        check_same_samples(datasets)
        n = len(datasets["th-folder"])
        del datasets
        rows = []
        for w in workers:
            res = {}
            for name in ("pf-shards", "pf-folder", "th-folder", "th-shards"):
                job = storage if name.startswith("pf") else th.storage
                res[name] = isolated(job, name, folder, shards, w, passes)
            rows.append((w, res))
        return rows, n, t_extract, t_pre
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def print_storage(rows, n, t_extract, t_pre, passes):
    print(f"\nCIFAR-10 JPEGs (32x32), {n:,} images, batch 256, shuffle, decode to uint8 HWC "
          f"+ label; samples/s (median of passes 2..{passes}). Setup: extract "
          f"{t_extract:.1f} s, pipeflow preprocess {t_pre:.1f} s (not in the rates)\n")
    names = ("pf-shards", "pf-folder", "th-folder", "th-shards")
    head = (f"{'workers':>8}" + "".join(f"{k + '/s':>13}" for k in names)
            + f"{'pfS/thF':>9}{'pfF/thF':>9}{'pfS/thS':>9}"
            + f"{'1st pfS ms':>11}{'1st thF ms':>11}{'peak pfS MiB':>13}{'peak thF MiB':>13}")
    print(head)
    print("-" * len(head))
    for w, r in rows:
        rate = {k: r[k][0] for k in names}
        print(f"{w:>8}" + "".join(f"{rate[k]:>13,.0f}" for k in names)
              + f"{rate['pf-shards'] / rate['th-folder']:>9.2f}"
              + f"{rate['pf-folder'] / rate['th-folder']:>9.2f}"
              + f"{rate['pf-shards'] / rate['th-shards']:>9.2f}"
              + f"{r['pf-shards'][1] * 1e3:>11.1f}{r['th-folder'][1] * 1e3:>11.1f}"
              + f"{r['pf-shards'][2]:>13.1f}{r['th-folder'][2]:>13.1f}")
    print("pf-shards = pipeflow DataLoader over pipeflow.datasets.ArrowShards; pf-folder = "
          "pipeflow over pipeflow.datasets.ImageFolder; th-folder = torch DataLoader over a "
          "torchvision-style ImageFolder; th-shards = torch over the same shards read with "
          "pyarrow (memory-mapped, per-sample decode). pfS/thF etc. are ratios of samples/s.")
    for w, r in rows:
        ratio = r["pf-shards"][0] / r["th-folder"][0]
        print(f"  target storage w={w}: pipeflow-shards >= 3x torch-ImageFolder: {ratio:.2f}x "
              f"{'OK' if ratio >= 3 else 'MISSED'}")


# --- GPU ------------------------------------------------------------------------------------
def pinned_bandwidth(nbytes, repeats=20):
    """Bytes/s of a plain pinned host -> device copy with CuPy (median of repeats)."""
    cupy = pf.backend.cupy
    mem = cupy.cuda.alloc_pinned_memory(nbytes)
    host = np.frombuffer(mem, np.uint8, nbytes)
    host[:] = 1
    dev = cupy.empty(nbytes, np.uint8)
    stream = cupy.cuda.Stream(non_blocking=True)
    times = []
    for _ in range(repeats + 3):
        start, end = cupy.cuda.Event(), cupy.cuda.Event()
        start.record(stream)
        dev.set(host, stream=stream)
        end.record(stream)
        end.synchronize()
        times.append(cupy.cuda.get_elapsed_time(start, end) / 1e3)
    return nbytes / statistics.median(times[3:])


def h2d(n, batch, workers, passes):
    """Throughput of loader batches arriving on the GPU (uint8 224x224x3 images already in
    memory, so the workers only gather rows), in bytes/s, and the pinned bandwidth. The
    workers persist, so the ring is allocated and pinned once, in the first pass, which
    the median leaves out."""
    cupy = pf.backend.cupy
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, SIZE, SIZE, 3), dtype=np.uint8)
    labels = np.arange(n, dtype=np.int64)
    ds = pf.data.TensorDataset(pf.tensor(images), pf.tensor(labels))
    sync = lambda: cupy.cuda.get_current_stream().synchronize()  # noqa: E731
    rate, first, _ = run_loader(
        lambda: pf.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers,
                                   seed=0, device="cuda", pin_memory=True,
                                   persistent_workers=True), passes, sync=sync)
    per_sample = images[0].nbytes + labels[0].nbytes
    return rate * per_sample, pinned_bandwidth(batch * per_sample)


# --- report ---------------------------------------------------------------------------------
def print_table(rows, ceilings):
    head = (f"{'case':<30}{'workers':>8}{'pipeflow/s':>12}{'torch/s':>10}{'ratio':>7}"
            f"{'%ceil':>7}{'1st pf ms':>10}{'1st th ms':>10}{'peak pf MiB':>12}"
            f"{'peak th MiB':>12}")
    print(head)
    print("-" * len(head))
    for case, w, (pr, pfirst, pmem), (tr, tfirst, tmem) in rows:
        ceil = ceilings.get((case, w))
        pct = f"{100 * pr / ceil:>6.0f}%" if ceil else f"{'':>7}"
        print(f"{case:<30}{w:>8}{pr:>12,.0f}{tr:>10,.0f}{pr / tr:>7.2f}{pct}"
              f"{pfirst * 1e3:>10.1f}{tfirst * 1e3:>10.1f}{pmem:>12.1f}{tmem:>12.1f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples (smoke test)")
    parser.add_argument("--passes", type=int, default=None,
                        help="epochs per configuration (default 3, --quick 2)")
    parser.add_argument("--cases", default="small,jpeg,storage,gpu",
                        help="comma-separated subset of small,jpeg,storage,gpu")
    args = parser.parse_args()
    cases = set(args.cases.split(","))
    passes = args.passes or (2 if args.quick else 3)
    n_small = 6_000 if args.quick else 60_000
    n_jpeg = 256 if args.quick else 2_000
    files = image_files()
    check_same_output(files)
    cuda = pf.cuda.is_available()

    rows = small_case(n_small, (0, 2), passes) if "small" in cases else []
    one = isolated(ceiling_rate, files, 100 if args.quick else 250)
    jpeg_rows = jpeg_case(files, n_jpeg, (0, 2), passes, device="cuda" if cuda else None,
                          pin=cuda) if "jpeg" in cases else []
    ceilings = {(case, w): max(w, 1) * one for case, w, _, _ in jpeg_rows}
    rows += [(c, w, p, t) for c, w, p, t in jpeg_rows]
    rows = [r[:4] for r in rows]

    print(f"\nDataLoader throughput, samples/s (median of passes 2..{passes}); "
          f"{os.cpu_count()} CPUs, torch threads {torch_side().torch.get_num_threads()}")
    print(f"small: {n_small:,} samples; JPEG: {len(files)} photos cycled to {n_jpeg:,}; "
          f"ceiling (one process, decode+crop+flip to uint8, plain loop) = {one:,.1f} samples/s"
          f" x max(workers, 1)\n")
    print_table(rows, ceilings)
    print("\nratio = pipeflow / torch samples/s (higher is better for pipeflow); %ceil = "
          "pipeflow / ceiling. 1st = ms from iter() to the first batch (pass 1, workers "
          "started by it); peak = max PSS summed over the process tree (smaps_rollup, "
          "sampled every 20 ms in pass 1) minus the sum before the loader was built.")
    for case, w, (pr, *_), (tr, *_) in rows:
        if case.startswith("28x28"):
            print(f"  target small   w={w}: pipeflow >= 10x torch: {pr / tr:.1f}x "
                  f"{'OK' if pr >= 10 * tr else 'MISSED'}")
        else:
            c = ceilings[(case, w)]
            ok = pr >= 2 * tr and pr >= 0.85 * c
            print(f"  target JPEG    w={w}: >= 2x torch ({pr / tr:.2f}x), >= 85% of ceiling "
                  f"({100 * pr / c:.0f}%): {'OK' if ok else 'MISSED'}")

    if "storage" in cases and os.path.exists(CIFAR_TAR):
        print_storage(*storage_case((0, 2), passes, per_class=500 if args.quick else None),
                      passes)
    elif "storage" in cases:
        print(f"\nStorage case skipped: {CIFAR_TAR} is absent.")

    if "gpu" not in cases:
        return
    if not cuda:
        print("\nGPU parts skipped: pipeflow.cuda.is_available() is False "
              "(H2D throughput vs pinned bandwidth, worker scaling 1..16).")
        return
    n_h2d = 2048 if args.quick else 8192
    got, peak = isolated(h2d, n_h2d, 256, min(8, os.cpu_count() or 1), max(passes, 5))
    print(f"\nH2D: loader batches (uint8 256x224x224x3, device='cuda', pin_memory=True) "
          f"{got / 1e9:.2f} GB/s vs pinned bandwidth (CuPy) {peak / 1e9:.2f} GB/s = "
          f"{100 * got / peak:.0f}% (target >= 90%: {'OK' if got >= 0.9 * peak else 'MISSED'})")
    scale_workers = [w for w in (1, 2, 4, 8, 16)]
    scale = jpeg_case(files, n_jpeg, scale_workers, passes, device="cuda", pin=True)
    print(f"\nWorker scaling, JPEG case ({os.cpu_count()} CPUs):")
    print_table([r[:4] for r in scale], {(c, w): w * one for c, w, _, _ in scale})


if __name__ == "__main__":
    main()
