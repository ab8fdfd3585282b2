"""Autograd overhead, pipeflow vs torch (CPU), side by side in one process.

1. Small-op overhead: forward + backward of a chain of elementwise ops on a 16x16
   tensor, where op bookkeeping dominates the arithmetic; reported per op.
2. A 3-layer MLP training step (784-256-128-10, batch 64): forward, cross-entropy
   written from primitives (log_softmax + gather), backward, SGD update.

Prints medians over repeats and the ratio pipeflow/torch (lower is better for
pipeflow; 1.0 means equal). Usage: python scripts/bench_autograd.py [--rounds N]
"""
import argparse
import statistics
import time

import numpy as np

import pipeflow as pf

try:
    import torch
except ImportError:
    raise SystemExit("this benchmark compares against torch: pip install torch==2.13.0")


def median_times(fns, rounds, block=10, warmup=3):
    """Median seconds per call of each function, timed in alternating blocks (ours, theirs,
    ours, ...) so that load changes on a shared machine hit both sides alike. Blocks, not
    single calls: each library's BLAS threads spin a while after a call, and switching on
    every call would charge that to the other side."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    times = [[] for _ in fns]
    for _ in range(rounds):
        for fn, ts in zip(fns, times):
            fn()  # the first call of a block pays the switch
            for _ in range(block):
                start = time.perf_counter()
                fn()
                ts.append(time.perf_counter() - start)
    return [statistics.median(ts) for ts in times]


CHAIN = 100  # iterations of (mul, add, tanh): 3 ops each, plus the final sum


def chain_step(lib, x):
    def step():
        y = x
        for _ in range(CHAIN):
            y = (y * 1.01 + 0.5).tanh()
        y.sum().backward()
        x.grad = None
    return step


def mlp_step(lib, params, data, labels, lr=0.01):
    w1, b1, w2, b2, w3, b3 = params

    def step():
        h = (data @ w1 + b1).relu()
        h = (h @ w2 + b2).relu()
        logits = h @ w3 + b3
        loss = -logits.log_softmax(1).gather(1, labels[:, None]).mean()
        loss.backward()
        with lib.no_grad():
            for p in params:
                p -= lr * p.grad
                p.grad = None
    return step


def make_mlp(lib, rng):
    shapes = [(784, 256), (256,), (256, 128), (128,), (128, 10), (10,)]
    arrays = [rng.standard_normal(s).astype(np.float32) * 0.05 for s in shapes]
    params = [lib.tensor(a, requires_grad=True) for a in arrays]
    data = lib.tensor(rng.standard_normal((64, 784)).astype(np.float32))
    labels = lib.tensor(rng.integers(0, 10, 64))
    return params, data, labels


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8, help="alternating blocks of 10 calls")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x0 = rng.standard_normal((16, 16)).astype(np.float32)
    n_ops = 3 * CHAIN + 1
    libs = (pf, torch)
    pf_op, th_op = (t / n_ops for t in median_times(
        [chain_step(lib, lib.tensor(x0, requires_grad=True)) for lib in libs], args.rounds))
    pf_mlp, th_mlp = median_times(
        [mlp_step(lib, *make_mlp(lib, np.random.default_rng(1))) for lib in libs], args.rounds)
    print(f"{'benchmark':<38}{'pipeflow':>12}{'torch':>12}{'ratio':>8}")
    print(f"{'small op fwd+bwd (us/op, 16x16)':<38}{pf_op * 1e6:>12.2f}{th_op * 1e6:>12.2f}"
          f"{pf_op / th_op:>8.2f}")
    print(f"{'MLP train step (ms, 784-256-128-10)':<38}{pf_mlp * 1e3:>12.3f}{th_mlp * 1e3:>12.3f}"
          f"{pf_mlp / th_mlp:>8.2f}")
    print(f"(medians of {args.rounds * 10} calls each, in alternating blocks; ratio = pipeflow / "
          f"torch, lower is better; torch threads = {torch.get_num_threads()})")


if __name__ == "__main__":
    main()
