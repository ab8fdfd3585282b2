"""Model zoo throughput, pipeflow vs torch, side by side in one process.

For each model: inference (eval mode, no grad: a forward pass) and a training step
(train mode: forward, cross-entropy, backward, SGD with momentum), on the same random
batch, for resnet18, resnet50, vgg16 and alexnet at 224x224 and resnet20 (CIFAR) at
32x32, on the CPU and, where pf.cuda.is_available(), on the GPU. The torch models are
torchvision's where it is importable, else tests/reference_models.py (the same
definitions, used by the zoo's tests).

Prints images/s (from the median time of the timed calls, alternating pipeflow and
torch) and the ratio pipeflow/torch of throughputs (higher is better for
pipeflow; 1.0 means equal). torch runs with as many threads as NumPy's BLAS may use.

    python scripts/bench_models.py                          # everything, batch 64
    python scripts/bench_models.py --models resnet20,alexnet --repeats 5 --devices cpu
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np

import pipeflow as pf

try:
    import torch
except ImportError:
    raise SystemExit("this benchmark compares against torch: pip install torch==2.13.0")

# the torch references the zoo's tests use (tests/ is not a package)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import reference_models  # noqa: E402

MODELS = {"resnet18": 224, "resnet50": 224, "vgg16": 224, "alexnet": 224, "resnet20": 32}
# Default (warm-up calls, timed calls) per model on the CPU: few where a training step
# takes a minute on two cores, and no warm-up there (nothing compiles on the CPU; first calls
# are 10-25% slower from first-touch page faults). On the GPU: CuPy compiles its kernels
# and torch picks its algorithms in the warm-up.
CPU_RUNS = {"resnet18": (0, 1), "resnet50": (0, 1), "vgg16": (0, 1), "alexnet": (1, 2),
            "resnet20": (1, 5)}
GPU_RUNS = (2, 20)


def _timer(fn, device):
    """A function timing one call of `fn`, waiting for the device to finish its work."""
    def sync():
        if device != "cpu":
            pf.cuda.synchronize()
            torch.cuda.synchronize()

    def timed():
        sync()
        start = time.perf_counter()
        fn()
        sync()
        return time.perf_counter() - start
    return timed


def median_times(timers, warmup, repeats):
    """Median seconds per call of each timer's function, after `warmup` untimed calls each,
    calls alternating between them so that load changes on a shared machine hit all alike.
    One call at a time, unlike bench_autograd's blocks: a call here lasts long enough that
    switching costs nothing."""
    for timed in timers:
        for _ in range(warmup):
            timed()
    times = [[] for _ in timers]
    for _ in range(repeats):
        for timed, ts in zip(timers, times):
            ts.append(timed())
    return [statistics.median(ts) for ts in times]


def _steps(lib, model, images, labels):
    """(inference, training step) closures for one library's model and batch."""
    optimizer = lib.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    grad_mode = pf.no_grad if lib is pf else torch.no_grad

    def infer():
        model.eval()
        with grad_mode():
            model(images)

    def train():
        model.train()
        optimizer.zero_grad()
        lib.nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()
    return infer, train


def bench(name, device, batch, warmup, repeats):
    """[(mode, pipeflow images/s, torch images/s)] for inference and training."""
    side = MODELS[name]
    reference = reference_models.build(name).to(device)
    model = getattr(pf.models, name)()
    model.load_state_dict({k: pf.tensor(v.cpu().numpy()) for k, v in
                           reference.state_dict().items()})
    model.to(device)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 3, side, side)).astype(np.float32)
    y = rng.integers(0, 10, batch)
    ours = _steps(pf, model, pf.tensor(x, device=device), pf.tensor(y, device=device))
    theirs = _steps(torch, reference, torch.tensor(x, device=device),
                    torch.tensor(y, device=device))
    rows = []
    for mode, pf_fn, torch_fn in zip(("inference", "train step"), ours, theirs):
        times = median_times([_timer(pf_fn, device), _timer(torch_fn, device)], warmup,
                             repeats)
        rows.append((mode, *(batch / t for t in times)))
    return rows


def _blas_threads():
    try:
        from threadpoolctl import threadpool_info
        return max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")
    except (ImportError, ValueError):
        return os.cpu_count()  # OpenBLAS' default without threadpoolctl to ask it


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS),
                        help=f"comma-separated, from {', '.join(MODELS)}")
    parser.add_argument("--devices", default="cpu,cuda" if pf.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, help="timed calls per model and mode "
                        f"(default: CPU {({k: r for k, (_, r) in CPU_RUNS.items()})}, "
                        f"GPU {GPU_RUNS[1]})")
    parser.add_argument("--warmup", type=int, help="untimed calls before them (default: "
                        f"CPU {({k: w for k, (w, _) in CPU_RUNS.items()})}, GPU {GPU_RUNS[0]})")
    args = parser.parse_args()
    names = args.models.split(",")
    unknown = set(names) - set(MODELS)
    if unknown:
        parser.error(f"unknown models {', '.join(sorted(unknown))}; choose from "
                     f"{', '.join(MODELS)}")
    torch.set_num_threads(_blas_threads())
    print(f"{'model':<10}{'input':>8}{'device':>8}{'mode':>12}{'pipeflow img/s':>16}"
          f"{'torch img/s':>13}{'ratio':>7}")
    for device in args.devices.split(","):
        for name in names:
            warmup, repeats = CPU_RUNS[name] if device == "cpu" else GPU_RUNS
            warmup = warmup if args.warmup is None else args.warmup
            repeats = args.repeats or repeats
            for mode, ours, theirs in bench(name, device, args.batch, warmup, repeats):
                side = MODELS[name]
                print(f"{name:<10}{f'{side}x{side}':>8}{device:>8}{mode:>12}{ours:>16.1f}"
                      f"{theirs:>13.1f}{ours / theirs:>7.2f}", flush=True)
    print(f"(batch {args.batch}; medians of timed calls alternating pipeflow and torch; "
          f"ratio = pipeflow / torch images/s, higher is better; torch threads = "
          f"{torch.get_num_threads()})")


if __name__ == "__main__":
    main()
