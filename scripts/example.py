"""A short pipeflow example: a two-layer network learns to separate two interleaved
spirals, with autograd computing every gradient and a hand-written SGD-with-momentum step.

    python scripts/example.py [--device cuda] [--steps 600]
"""
import argparse

import numpy as np

import pipeflow as pf


def spirals(n, rng):
    """Two interleaved spirals of n points each (x: float32 [2n, 2], y: int64 [2n])."""
    t = np.sqrt(rng.random(n)) * 3 * np.pi
    arm = np.stack([t * np.cos(t), t * np.sin(t)], 1) / (3 * np.pi)
    x = np.concatenate([arm, -arm]) + rng.normal(0, 0.02, (2 * n, 2))
    y = np.concatenate([np.zeros(n), np.ones(n)]).astype(np.int64)
    return x.astype(np.float32), y


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=600)
    args = parser.parse_args()
    pf.manual_seed(0)
    rng = np.random.default_rng(0)
    x_np, y_np = spirals(500, rng)
    x, y = pf.tensor(x_np, device=args.device), pf.tensor(y_np, device=args.device)

    hidden = 64
    w1 = (pf.randn(2, hidden, device=args.device) * 1.0).requires_grad_()
    b1 = pf.zeros(hidden, device=args.device, requires_grad=True)
    w2 = (pf.randn(hidden, hidden, device=args.device) / hidden ** 0.5).requires_grad_()
    b2 = pf.zeros(hidden, device=args.device, requires_grad=True)
    w3 = (pf.randn(hidden, 2, device=args.device) / hidden ** 0.5).requires_grad_()
    b3 = pf.zeros(2, device=args.device, requires_grad=True)
    params = [w1, b1, w2, b2, w3, b3]

    def forward(inputs):
        h = (inputs @ w1 + b1).tanh()
        h = (h @ w2 + b2).tanh()
        return h @ w3 + b3

    lr, momentum = 0.2, 0.9
    velocity = [pf.zeros_like(p) for p in params]
    for step in range(args.steps + 1):
        logits = forward(x)
        loss = -logits.log_softmax(1).gather(1, y[:, None]).mean()  # cross-entropy
        for p in params:
            p.grad = None
        loss.backward()
        with pf.no_grad():
            for p, v in zip(params, velocity):
                v.mul_(momentum).add_(p.grad)
                p -= lr * v
        if step % 100 == 0:
            accuracy = (logits.argmax(1) == y).float().mean().item()
            print(f"step {step:4d}  loss {loss.item():.4f}  train accuracy {accuracy:.1%}")
    with pf.no_grad():
        accuracy = (forward(x).argmax(1) == y).float().mean().item()
    print(f"final train accuracy {accuracy:.1%} on {len(y)} points")


if __name__ == "__main__":
    main()
