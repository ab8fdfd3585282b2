"""The classic lecture flow, step by step: fit y = sin(x) on [-pi, pi] with a cubic.

1. tensors and hand-written gradients;   2. autograd, updates through ``.grad.data``;
3. a custom autograd Function;            4. nn layers and a loss;
5. the Adam optimizer;                    6. a custom Module.
Each step prints its final loss; run ``python scripts/lecture.py``.
"""
import math

import pipeflow as pf
from pipeflow import nn

x = pf.linspace(-math.pi, math.pi, 2000)
y = pf.sin(x)


def step1_tensors_by_hand(steps=2000, lr=1e-6):
    """Forward and backward written out with tensor arithmetic, no autograd."""
    a, b, c, d = (pf.randn(()) for _ in range(4))
    for _ in range(steps):
        y_pred = a + b * x + c * x ** 2 + d * x ** 3
        grad_y_pred = 2.0 * (y_pred - y)
        a -= lr * grad_y_pred.sum()
        b -= lr * (grad_y_pred * x).sum()
        c -= lr * (grad_y_pred * x ** 2).sum()
        d -= lr * (grad_y_pred * x ** 3).sum()
    return ((a + b * x + c * x ** 2 + d * x ** 3 - y) ** 2).sum().item()


def step2_autograd(steps=2000, lr=1e-6):
    """autograd computes the gradients; the update goes through .grad.data."""
    weights = [pf.randn((), requires_grad=True) for _ in range(4)]
    for _ in range(steps):
        a, b, c, d = weights
        loss = ((a + b * x + c * x ** 2 + d * x ** 3 - y) ** 2).sum()
        loss.backward()
        for w in weights:
            w.data -= lr * w.grad.data
            w.grad = None
    return loss.item()


class LegendrePolynomial3(pf.autograd.Function):
    """P3(x) = (5x^3 - 3x) / 2 with a hand-written backward."""

    @staticmethod
    def forward(ctx, inputs):
        ctx.save_for_backward(inputs)
        return 0.5 * (5 * inputs ** 3 - 3 * inputs)

    @staticmethod
    def backward(ctx, grad_output):
        inputs, = ctx.saved_tensors
        return grad_output * 1.5 * (5 * inputs ** 2 - 1)


def step3_custom_function(steps=2000, lr=5e-6):
    a, b, c, d = (pf.full((), v, requires_grad=True) for v in (0.0, -1.0, 0.0, 0.3))
    for _ in range(steps):
        y_pred = a + b * LegendrePolynomial3.apply(c + d * x)
        loss = ((y_pred - y) ** 2).sum()
        loss.backward()
        with pf.no_grad():
            for w in (a, b, c, d):
                w -= lr * w.grad
                w.grad = None
    return loss.item()


powers = pf.tensor([1, 2, 3])
features = x.unsqueeze(-1) ** powers  # (2000, 3): x, x^2, x^3


def step4_nn(steps=2000, lr=1e-6):
    model = nn.Sequential(nn.Linear(3, 1), nn.Flatten(0, 1))
    loss_fn = nn.MSELoss(reduction="sum")
    for _ in range(steps):
        loss = loss_fn(model(features), y)
        model.zero_grad()
        loss.backward()
        with pf.no_grad():
            for param in model.parameters():
                param -= lr * param.grad
    return loss.item()


def step5_adam(steps=2000, lr=1e-2):
    model = nn.Sequential(nn.Linear(3, 1), nn.Flatten(0, 1))
    loss_fn = nn.MSELoss(reduction="sum")
    optimizer = pf.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        loss = loss_fn(model(features), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return loss.item()


class Polynomial3(nn.Module):
    """A custom Module: four scalar Parameters and a forward that combines them."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.c, self.d = (nn.Parameter(pf.randn(())) for _ in range(4))

    def forward(self, inputs):
        return self.a + self.b * inputs + self.c * inputs ** 2 + self.d * inputs ** 3

    def string(self):
        return (f"y = {self.a.item():.3f} + {self.b.item():.3f} x + {self.c.item():.3f} x^2 "
                f"+ {self.d.item():.3f} x^3")


def step6_custom_module(steps=2000, lr=1e-6):
    model = Polynomial3()
    criterion = nn.MSELoss(reduction="sum")
    optimizer = pf.optim.SGD(model.parameters(), lr=lr)
    for _ in range(steps):
        loss = criterion(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    print(f"  result: {model.string()}")
    return loss.item()


def main():
    pf.manual_seed(0)
    steps = [step1_tensors_by_hand, step2_autograd, step3_custom_function, step4_nn,
             step5_adam, step6_custom_module]
    losses = {}
    for step in steps:
        losses[step.__name__] = step()
        print(f"{step.__name__:24s} final loss {losses[step.__name__]:10.3f}")
    return losses


if __name__ == "__main__":
    main()
