"""conv2d's three kernels, pipeflow vs torch, one layer at a time: the forward, the input
gradient and the weight gradient of the convolutions that dominate the model zoo's
training steps (scripts/bench_models.py times whole models).

Prints milliseconds per call (median of timed calls) and
the ratio torch/pipeflow of times (higher is better for pipeflow; 1.0 means equal).

    python scripts/bench_conv.py                       # every layer, CPU, float32
    python scripts/bench_conv.py --layers r18_3x3 --repeats 9 --batch 16
"""
import argparse
import statistics
import time

import numpy as np
from bench_models import _blas_threads, torch

import pipeflow as pf
from pipeflow.ops import conv

# name: (in channels, out channels, side, kernel, stride, padding, groups)
LAYERS = {
    "r18_stem": (3, 64, 224, 7, 2, 3, 1),          # ResNet stem
    "r18_3x3": (64, 64, 56, 3, 1, 1, 1),           # ResNet-18 layer1
    "r18_3x3_s2": (128, 256, 28, 3, 2, 1, 1),      # ResNet-18 layer3 downsampling
    "r50_1x1": (256, 64, 56, 1, 1, 0, 1),          # bottleneck reduce
    "r50_1x1_s2": (512, 1024, 28, 1, 2, 0, 1),     # bottleneck shortcut
    "r50_1x1_7": (512, 2048, 7, 1, 1, 0, 1),       # bottleneck expand, last stage
    "vgg_3x3": (128, 128, 112, 3, 1, 1, 1),        # VGG-16 block 2
    "alexnet_3x3": (192, 384, 13, 3, 1, 1, 1),     # AlexNet conv3
    "r20_3x3": (16, 16, 32, 3, 1, 1, 1),           # CIFAR ResNet-20 stage 1
    "resnext_3x3": (128, 128, 56, 3, 1, 1, 32),    # grouped (ResNeXt-50 32x4d)
    "depthwise": (96, 96, 56, 3, 1, 1, 96),        # MobileNet-style
}


def _median_ms(fn, repeats):
    """Median milliseconds of `repeats` calls after one untimed call. In blocks, not
    alternating: a library's idle worker threads spin for a while after a call (OpenMP's
    wait policy, OpenBLAS' pool), and on few cores that slows the other library's next call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def bench(layer, batch, repeats):
    """[(kernel, pipeflow ms, torch ms)] of one layer."""
    cin, cout, side, k, stride, pad, groups = LAYERS[layer]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, cin, side, side)).astype(np.float32)
    w = rng.standard_normal((cout, cin // groups, k, k)).astype(np.float32)
    oh = (side + 2 * pad - k) // stride + 1
    g = rng.standard_normal((batch, cout, oh, oh)).astype(np.float32)
    px, pw, pg = pf.tensor(x), pf.tensor(w), pf.tensor(g)
    tx, tw, tg = torch.tensor(x), torch.tensor(w), torch.tensor(g)
    geo = conv.geometry((k, k), stride, pad, 1, groups)
    ours = [lambda: conv.Conv2d.apply(px, pw, geo),
            lambda: conv.Conv2dInputGrad.apply(pg, pw, geo, (side, side)),
            lambda: conv.Conv2dWeightGrad.apply(px, pg, (k, k), geo)]
    theirs = [lambda: torch.nn.functional.conv2d(tx, tw, None, stride, pad, 1, groups),
              lambda: torch.nn.grad.conv2d_input(tx.shape, tw, tg, stride, pad, 1, groups),
              lambda: torch.nn.grad.conv2d_weight(tx, tw.shape, tg, stride, pad, 1, groups)]
    rows = []
    with pf.no_grad(), torch.no_grad():
        for kernel, a, b in zip(("forward", "input grad", "weight grad"), ours, theirs):
            rows.append((kernel, _median_ms(a, repeats), _median_ms(b, repeats)))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", default=",".join(LAYERS),
                        help=f"comma-separated, from {', '.join(LAYERS)}")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    names = args.layers.split(",")
    unknown = set(names) - set(LAYERS)
    if unknown:
        parser.error(f"unknown layers {', '.join(sorted(unknown))}")
    torch.set_num_threads(_blas_threads())
    print(f"{'layer':<13}{'kernel':>12}{'pipeflow ms':>13}{'torch ms':>10}{'ratio':>7}")
    for name in names:
        for kernel, ours, theirs in bench(name, args.batch, args.repeats):
            print(f"{name:<13}{kernel:>12}{ours:>13.1f}{theirs:>10.1f}{theirs / ours:>7.2f}",
                  flush=True)
    print(f"(batch {args.batch}, float32, CPU; medians of {args.repeats} calls; ratio = "
          f"torch ms / pipeflow ms, higher is better; torch threads = "
          f"{torch.get_num_threads()})")


if __name__ == "__main__":
    main()
