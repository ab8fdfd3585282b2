"""Adam and AdamW, as torch.optim.Adam / torch.optim.AdamW (the single-tensor algorithm)."""
from .. import backend
from .optimizer import (Optimizer, _addcmul_, _check_differentiable, _effective_grad, _lerp_,
                        _on, _zero_state)

__all__ = ["Adam", "AdamW"]


class Adam(Optimizer):
    """``torch.optim.Adam``: per parameter, with g the gradient (negated when maximizing)
    and t the step count::

        p = p * (1 - lr * weight_decay)             (decoupled_weight_decay, i.e. AdamW)
        g = g + weight_decay * p                    (otherwise)
        m = lerp(m, g, 1 - beta1);  v = beta2 * v + (1 - beta2) * g * g
        v_max = max(v_max, v)                       (amsgrad; then used in place of v)
        p = p - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

    State: ``"step"`` (float32 0-d tensor), ``"exp_avg"``, ``"exp_avg_sq"`` and, with
    amsgrad, ``"max_exp_avg_sq"``.
    """

    _step_in_state = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 amsgrad=False, *, foreach=None, maximize=False, capturable=False,
                 differentiable=False, fused=None, decoupled_weight_decay=False):
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if not 0.0 <= betas[0] < 1.0:
            raise ValueError(f"Invalid beta parameter at index 0: {betas[0]}")
        if not 0.0 <= betas[1] < 1.0:
            raise ValueError(f"Invalid beta parameter at index 1: {betas[1]}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        _check_differentiable(type(self).__name__, differentiable)
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay,
                    "amsgrad": amsgrad, "maximize": maximize, "foreach": foreach,
                    "capturable": capturable, "differentiable": differentiable, "fused": fused,
                    "decoupled_weight_decay": decoupled_weight_decay}
        super().__init__(params, defaults)

    def __setstate__(self, state):
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("amsgrad", False)
            group.setdefault("maximize", False)
            group.setdefault("foreach", None)
            group.setdefault("capturable", False)
            group.setdefault("differentiable", False)
            group.setdefault("decoupled_weight_decay", False)
            group.setdefault("fused", None)

    def step(self, closure=None):
        loss = self._eval_closure(closure)
        for group in self.param_groups:
            lr, (beta1, beta2), eps = float(group["lr"]), group["betas"], group["eps"]
            weight_decay, amsgrad = group["weight_decay"], group["amsgrad"]
            maximize, decoupled = group["maximize"], group["decoupled_weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                x = p._data
                if len(state) == 0:
                    _zero_state(state, x, "exp_avg", "exp_avg_sq",
                                *(("max_exp_avg_sq",) if amsgrad else ()))
                step_t = state["step"]
                step_t._data += 1
                step = float(step_t._data)
                xp = backend.array_module(x)
                with _on(x):
                    if weight_decay != 0 and decoupled:
                        xp.multiply(x, 1 - lr * weight_decay, out=x)
                    g, owned = _effective_grad(xp, x, p.grad._data,
                                               0 if decoupled else weight_decay, maximize)
                    m, v = state["exp_avg"]._data, state["exp_avg_sq"]._data
                    tmp = xp.empty_like(x)
                    _lerp_(xp, m, g, 1 - beta1, tmp)
                    xp.multiply(v, beta2, out=v)
                    _addcmul_(xp, v, g, g, 1 - beta2, tmp)

                    bias_correction1 = 1 - beta1 ** step
                    bias_correction2 = 1 - beta2 ** step
                    step_size = lr / bias_correction1
                    bias_correction2_sqrt = bias_correction2 ** 0.5
                    if amsgrad:
                        v_max = state["max_exp_avg_sq"]._data
                        xp.maximum(v_max, v, out=v_max)
                        v = v_max
                    denom = xp.sqrt(v, out=tmp)
                    xp.divide(denom, bias_correction2_sqrt, out=denom)
                    xp.add(denom, eps, out=denom)
                    # p += -step_size * m / denom
                    xp.divide(m, denom, out=tmp)
                    xp.multiply(tmp, -step_size, out=tmp)
                    xp.add(x, tmp, out=x)
                p._bump_version()
        return loss


class AdamW(Adam):
    """``torch.optim.AdamW``: Adam with decoupled weight decay (default 1e-2)."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, *, maximize=False, foreach=None, capturable=False,
                 differentiable=False, fused=None):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, foreach=foreach,
                         maximize=maximize, capturable=capturable,
                         differentiable=differentiable, fused=fused,
                         decoupled_weight_decay=True)

    def __setstate__(self, state):
        super().__setstate__(state)
        for group in self.param_groups:
            group["decoupled_weight_decay"] = True
