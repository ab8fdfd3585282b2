"""RMSprop, as torch.optim.RMSprop (the single-tensor algorithm)."""
from .. import backend
from .optimizer import (Optimizer, _add_scaled_, _addcmul_, _check_differentiable,
                        _effective_grad, _lerp_, _on, _zero_state)

__all__ = ["RMSprop"]


class RMSprop(Optimizer):
    """``torch.optim.RMSprop``: per parameter, with g the gradient (negated when
    maximizing)::

        g = g + weight_decay * p
        v = alpha * v + (1 - alpha) * g * g
        avg = sqrt(v - mean_g**2) with mean_g = lerp(mean_g, g, 1 - alpha)  (centered)
        avg = sqrt(v)                                                         (otherwise)
        buf = momentum * buf + g / (avg + eps);  p = p - lr * buf            (momentum > 0)
        p = p - lr * g / (avg + eps)                                          (otherwise)

    State: ``"step"``, ``"square_avg"``, ``"momentum_buffer"`` (momentum > 0) and
    ``"grad_avg"`` (centered).
    """

    _step_in_state = True

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0,
                 centered=False, capturable=False, foreach=None, maximize=False,
                 differentiable=False):
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if not 0.0 <= momentum:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if not 0.0 <= alpha:
            raise ValueError(f"Invalid alpha value: {alpha}")
        _check_differentiable("RMSprop", differentiable)
        defaults = {"lr": lr, "momentum": momentum, "alpha": alpha, "eps": eps,
                    "centered": centered, "weight_decay": weight_decay,
                    "capturable": capturable, "foreach": foreach, "maximize": maximize,
                    "differentiable": differentiable}
        super().__init__(params, defaults)

    def __setstate__(self, state):
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("momentum", 0)
            group.setdefault("centered", False)
            group.setdefault("foreach", None)
            group.setdefault("maximize", False)
            group.setdefault("differentiable", False)
            group.setdefault("capturable", False)

    def step(self, closure=None):
        loss = self._eval_closure(closure)
        for group in self.param_groups:
            lr, alpha, eps = float(group["lr"]), group["alpha"], group["eps"]
            weight_decay, momentum = group["weight_decay"], group["momentum"]
            centered, maximize = group["centered"], group["maximize"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                x = p._data
                if len(state) == 0:
                    _zero_state(state, x, "square_avg",
                                *(("momentum_buffer",) if momentum > 0 else ()),
                                *(("grad_avg",) if centered else ()))
                state["step"]._data += 1
                xp = backend.array_module(x)
                with _on(x):
                    g, _ = _effective_grad(xp, x, p.grad._data, weight_decay, maximize)
                    v = state["square_avg"]._data
                    tmp = xp.empty_like(x)
                    xp.multiply(v, alpha, out=v)
                    _addcmul_(xp, v, g, g, 1 - alpha, tmp)
                    if centered:
                        mean_g = state["grad_avg"]._data
                        _lerp_(xp, mean_g, g, 1 - alpha, tmp)
                        avg = xp.multiply(mean_g, mean_g, out=tmp)
                        xp.subtract(v, avg, out=avg)
                        xp.sqrt(avg, out=avg)
                    else:
                        avg = xp.sqrt(v, out=tmp)
                    xp.add(avg, eps, out=avg)
                    if momentum > 0:
                        buf = state["momentum_buffer"]._data
                        xp.multiply(buf, momentum, out=buf)
                        xp.add(buf, xp.divide(g, avg, out=avg), out=buf)
                        _add_scaled_(xp, x, buf, -lr, tmp)
                    else:
                        _add_scaled_(xp, x, xp.divide(g, avg, out=avg), -lr, avg)
                p._bump_version()
        return loss
