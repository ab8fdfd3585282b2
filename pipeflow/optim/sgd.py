"""SGD: stochastic gradient descent with optional (Nesterov) momentum, as torch.optim.SGD."""
from .. import backend
from ..tensor import Tensor
from .optimizer import Optimizer, _add_scaled_, _check_differentiable, _effective_grad, _on

__all__ = ["SGD"]


class SGD(Optimizer):
    """``torch.optim.SGD``: per parameter, with g the gradient (negated when maximizing)::

        g = g + weight_decay * p
        buf = g (first step), else buf = momentum * buf + (1 - dampening) * g
        g = g + momentum * buf (nesterov), else g = buf        (when momentum != 0)
        p = p - lr * g

    State: ``"momentum_buffer"`` (only when momentum != 0).
    """

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0,
                 nesterov=False, *, maximize=False, foreach=None, differentiable=False,
                 fused=None):
        if lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if momentum < 0.0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        _check_differentiable("SGD", differentiable)
        defaults = {"lr": lr, "momentum": momentum, "dampening": dampening,
                    "weight_decay": weight_decay, "nesterov": nesterov, "maximize": maximize,
                    "foreach": foreach, "differentiable": differentiable, "fused": fused}
        super().__init__(params, defaults)

    def __setstate__(self, state):
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("nesterov", False)
            group.setdefault("maximize", False)
            group.setdefault("foreach", None)
            group.setdefault("differentiable", False)
            group.setdefault("fused", False)

    def step(self, closure=None):
        loss = self._eval_closure(closure)
        for group in self.param_groups:
            lr, momentum, dampening = float(group["lr"]), group["momentum"], group["dampening"]
            weight_decay, nesterov = group["weight_decay"], group["nesterov"]
            maximize = group["maximize"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                x = p._data
                xp = backend.array_module(x)
                with _on(x):
                    d, owned = _effective_grad(xp, x, p.grad._data, weight_decay, maximize)
                    if momentum != 0:
                        state = self.state[p]
                        buf = state.get("momentum_buffer")
                        if buf is None:  # the first step: the buffer starts as the gradient
                            buf = d if owned else d.copy()
                            state["momentum_buffer"] = Tensor._wrap(buf)
                            owned = False  # d is the buffer now
                        else:
                            buf = buf._data
                            xp.multiply(buf, momentum, out=buf)
                            _add_scaled_(xp, buf, d, 1 - dampening)
                        if nesterov:
                            nd = xp.multiply(buf, momentum)
                            d, owned = xp.add(d, nd, out=nd), True
                        else:
                            d, owned = buf, False
                    _add_scaled_(xp, x, d, -lr, d if owned else None)
                p._bump_version()
        return loss
