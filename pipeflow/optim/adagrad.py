"""Adagrad, as torch.optim.Adagrad (the single-tensor algorithm)."""
from .. import backend
from ..tensor import Tensor
from .optimizer import (Optimizer, _add_scaled_, _addcmul_, _check_differentiable,
                        _effective_grad, _full_like, _new_step, _on)

__all__ = ["Adagrad"]


class Adagrad(Optimizer):
    """``torch.optim.Adagrad``: per parameter, with g the gradient (negated when
    maximizing) and t the step count::

        g = g + weight_decay * p
        clr = lr / (1 + (t - 1) * lr_decay)
        sum = sum + g * g
        p = p - clr * g / (sqrt(sum) + eps)

    State (created for every parameter at construction, as in PyTorch): ``"step"`` and
    ``"sum"`` (starting at initial_accumulator_value).
    """

    _step_in_state = True

    def __init__(self, params, lr=1e-2, lr_decay=0, weight_decay=0,
                 initial_accumulator_value=0, eps=1e-10, foreach=None, *, maximize=False,
                 differentiable=False, fused=None):
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= lr_decay:
            raise ValueError(f"Invalid lr_decay value: {lr_decay}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if not 0.0 <= initial_accumulator_value:
            raise ValueError("Invalid initial_accumulator_value value: "
                             f"{initial_accumulator_value}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        _check_differentiable("Adagrad", differentiable)
        defaults = {"lr": lr, "lr_decay": lr_decay, "eps": eps, "weight_decay": weight_decay,
                    "initial_accumulator_value": initial_accumulator_value,
                    "foreach": foreach, "maximize": maximize,
                    "differentiable": differentiable, "fused": fused}
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                self._init_state(p)

    def _init_state(self, p):
        state = self.state[p]
        state["step"] = _new_step()
        state["sum"] = Tensor._wrap(_full_like(p._data,
                                               self.defaults["initial_accumulator_value"]))
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("foreach", None)
            group.setdefault("maximize", False)
            group.setdefault("differentiable", False)
            group.setdefault("fused", None)

    def step(self, closure=None):
        loss = self._eval_closure(closure)
        for group in self.param_groups:
            lr, lr_decay, eps = float(group["lr"]), group["lr_decay"], group["eps"]
            weight_decay, maximize = group["weight_decay"], group["maximize"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if len(state) == 0:  # a parameter added by add_param_group
                    state = self._init_state(p)
                step_t = state["step"]
                step_t._data += 1
                step = float(step_t._data)
                x = p._data
                xp = backend.array_module(x)
                with _on(x):
                    g, _ = _effective_grad(xp, x, p.grad._data, weight_decay, maximize)
                    clr = lr / (1 + (step - 1) * lr_decay)
                    s = state["sum"]._data
                    tmp = xp.empty_like(x)
                    _addcmul_(xp, s, g, g, 1, tmp)
                    std = xp.sqrt(s, out=tmp)
                    xp.add(std, eps, out=std)
                    _add_scaled_(xp, x, xp.divide(g, std, out=std), -clr, std)
                p._bump_version()
        return loss
