"""Loss functions, PyTorch's torch.nn.functional names and defaults.

Most losses are compositions of differentiable ops (so double backward comes for free).
Three are dedicated Functions, for speed or numerical stability:

* cross-entropy over class indices: log-softmax, pick and reduce in one forward; backward
  is one fused op (softmax - smoothed one-hot, scaled), itself differentiable;
* binary cross-entropy on probabilities: torch's clamped logs, and a gradient that stays
  finite where the input is exactly 0 or 1;
* binary cross-entropy on logits: the overflow-free log(1 + exp(-x)) form.
"""
import math
import warnings

import numpy as np

from ._util import Function, as_float, check_broadcast, same_device, sum_to, wrap, xp_of
from .activation import _shifted_exp, log_softmax, sigmoid, softmax, softplus
from .elementwise import where
from .indexing import _along_axis

__all__ = ["cross_entropy", "nll_loss", "mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss",
           "binary_cross_entropy", "binary_cross_entropy_with_logits", "kl_div"]

_REDUCTIONS = ("none", "mean", "sum")


# --- shared helpers ---------------------------------------------------------------------------
def legacy_reduction(size_average, reduce, reduction):
    """PyTorch's deprecated size_average/reduce pair, turned into a reduction string."""
    if size_average is None and reduce is None:
        return reduction
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    ret = "mean" if size_average and reduce else "sum" if reduce else "none"
    warnings.warn("size_average and reduce args will be deprecated, please use "
                  f"reduction='{ret}' instead.", stacklevel=3)
    return ret


def _check_reduction(reduction, allowed=_REDUCTIONS):
    if reduction not in allowed:
        raise ValueError(f"{reduction} is not a valid value for reduction")


def _reduce(loss, reduction):
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _shape(t):
    return list(t._data.shape)


def _compute_dtype(x):
    """float16 arrays are computed in float32 (exp/log/sums lose too much otherwise)."""
    x = as_float(x)
    return np.dtype(np.float32) if x.dtype == np.float16 else x.dtype


def _warn_size(input, target):
    if input._data.shape != target._data.shape:
        warnings.warn(f"Using a target size ({_shape(target)}) that is different to the input "
                      f"size ({_shape(input)}). This will likely lead to incorrect results due "
                      "to broadcasting. Please ensure they have the same size.", stacklevel=3)
        try:
            check_broadcast(input._data.shape, target._data.shape)
        except RuntimeError as e:
            raise RuntimeError(f"input of shape {_shape(input)} and target of shape "
                               f"{_shape(target)} do not broadcast: {e}") from None


def _weighted(loss, weight, input, reduction, mean_by_weight=True):
    """mse/l1/huber's optional elementwise `weight` (same shape as the input)."""
    if weight._data.shape != input._data.shape:
        raise ValueError(f"Weights and input must have the same size (weight shape "
                         f"{_shape(weight)}, input shape {_shape(input)}).")
    loss = loss * weight
    if reduction == "mean" and mean_by_weight:
        return loss.sum() / weight.sum()
    return _reduce(loss, reduction)


# --- regression losses ------------------------------------------------------------------------
def mse_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    reduction = legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    _warn_size(input, target)
    d = input - target
    loss = d * d
    return _reduce(loss, reduction) if weight is None else _weighted(loss, weight, input,
                                                                    reduction)


def l1_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    reduction = legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    _warn_size(input, target)
    loss = (input - target).abs()
    return _reduce(loss, reduction) if weight is None else _weighted(loss, weight, input,
                                                                    reduction)


def smooth_l1_loss(input, target, size_average=None, reduce=None, reduction="mean", beta=1.0):
    """0.5 d^2 / beta where |d| < beta, else |d| - 0.5 beta (d = input - target)."""
    reduction = legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    if beta < 0:
        raise RuntimeError("smooth_l1_loss does not support negative values for beta.")
    _warn_size(input, target)
    d = input - target
    ad = d.abs()
    if beta == 0:
        return _reduce(ad, reduction)
    return _reduce(where(ad < beta, d * d * (0.5 / beta), ad - 0.5 * beta), reduction)


def huber_loss(input, target, reduction="mean", delta=1.0, weight=None):
    """0.5 d^2 where |d| < delta, else delta (|d| - 0.5 delta)."""
    _check_reduction(reduction)
    if delta <= 0:
        raise RuntimeError("huber_loss does not support non-positive values for delta.")
    _warn_size(input, target)
    d = input - target
    ad = d.abs()
    loss = where(ad < delta, d * d * 0.5, (ad - 0.5 * delta) * delta)
    if weight is None:
        return _reduce(loss, reduction)
    return _weighted(loss, weight, input, reduction, mean_by_weight=False)  # torch: .mean()


# --- classification over class indices ------------------------------------------------------
def _class_index_input(name, input, target, weight, ignore_index):
    """Check input (N, C, d1, ...) or (C,) against class-index target (N, d1, ...) or ();
    return the input with a batch dim, the target's arrays (valid mask, indices with the
    ignored ones replaced by 0), whether it was unbatched, and the number of classes."""
    same_device(input, target, weight)
    xs, ts = _shape(input), _shape(target)
    both = f"input shape {xs}, target shape {ts}"
    if not xs:
        raise ValueError(f"{name}: input must have a class dimension, got a 0-d input ({both})")
    if target._data.dtype.kind not in "iu":
        raise RuntimeError(f"{name}: expected target dtype to be Long or Byte (class indices), "
                           f"but got {target.dtype} ({both}); a target of class probabilities "
                           "must have the input's shape")
    if len(xs) == 1:
        if ts:
            raise RuntimeError(f"{name}: an unbatched input of shape {xs} takes a 0-d target "
                               f"(one class index), got target shape {ts}")
        input, target_data, unbatched = input.unsqueeze(0), target._data.reshape(1), True
    else:
        if len(ts) != len(xs) - 1:
            raise RuntimeError(f"{name}: expected target of shape {[xs[0]] + xs[2:]} (class "
                               f"indices) for input of shape {xs}, got target of shape {ts}")
        if ts[0] != xs[0]:
            raise ValueError(f"Expected input batch_size ({xs[0]}) to match target batch_size "
                             f"({ts[0]}) ({both}).")
        if ts[1:] != xs[2:]:
            raise RuntimeError(f"Expected target size {[xs[0]] + xs[2:]}, got {ts} ({both}).")
        target_data, unbatched = target._data, False
    n_classes = input._data.shape[1]
    if weight is not None and tuple(weight._data.shape) != (n_classes,):
        raise RuntimeError(f"weight tensor should be defined either for all {n_classes} classes "
                           f"or no classes but got weight tensor of shape: {_shape(weight)}")
    xp = xp_of(input)
    valid = target_data != ignore_index
    safe = xp.where(valid, target_data, 0)
    if safe.size:
        bad = (safe < 0) | (safe >= n_classes)
        if bad.any():
            value = int(target_data[bad].ravel()[0])
            raise IndexError(f"Target {value} is out of bounds: {name} expects class indices in "
                             f"[0, {n_classes}) for an input with {n_classes} classes "
                             f"(ignore_index={ignore_index}).")
    return input, valid, safe, unbatched, n_classes


class _CEInfo:
    """What cross-entropy's backward needs besides tensors (arrays in the compute dtype)."""
    __slots__ = ("logp", "safe", "valid", "wt", "w", "wsum", "eps", "n_classes", "scale", "cdt")


class CrossEntropy(Function):
    """Cross-entropy of logits `x` (N, C, *) against class indices; one op forward (stable
    log-softmax, pick, label smoothing, weights, reduction)."""

    @staticmethod
    def forward(ctx, x, target, weight, ignore_index, eps, reduction, valid, safe):
        xp = xp_of(x)
        cdt = _compute_dtype(x._data)
        xd = x._data.astype(cdt, copy=False)
        n = xd.shape[1]
        shifted, _, total = _shifted_exp(xp, xd, 1)
        logp = shifted - xp.log(total)
        w = None if weight is None else weight._data.astype(cdt, copy=False)
        wshape = (1, n) + (1,) * (xd.ndim - 2)
        wt = valid.astype(cdt) if w is None else w[safe] * valid
        picked = xp.take_along_axis(logp, safe[:, None], axis=1)[:, 0]
        loss = picked * (wt * -(1 - eps)) if eps != 1 else xp.zeros_like(wt)
        if eps:
            lw = logp if w is None else logp * w.reshape(wshape)
            loss = loss - lw.sum(axis=1) * (valid * (eps / n))
        info = _CEInfo()
        info.scale = None
        with np.errstate(invalid="ignore", divide="ignore"):
            if reduction == "mean":
                denom = wt.sum()  # 0 when every target is ignored: nan loss, 0 gradient
                info.scale = xp.where(denom == 0, 0, 1 / denom).astype(cdt)
                loss = loss.sum() / denom
            elif reduction == "sum":
                loss = loss.sum()
        info.logp, info.safe, info.valid, info.wt, info.w = logp, safe, valid, wt, w
        info.wsum = n if w is None else w.sum()
        info.eps, info.n_classes, info.cdt = eps, n, cdt
        ctx.info = info
        ctx.save_for_backward(x)
        return wrap(xp.asarray(loss).astype(x._data.dtype, copy=False))

    @staticmethod
    def backward(ctx, g):
        x, = ctx.saved_tensors
        return (CrossEntropyGrad.apply(g, x, ctx.info),) + (None,) * 7


class CrossEntropyGrad(Function):
    """d loss / d x = G * (A * softmax(x) - a): G the incoming gradient (per sample, or one
    scalar) times the mean's 1/total-weight, a_c = (1-eps) w_t [c == t] + eps/C w_c, and
    A = sum_c a_c; ignored targets get 0. Differentiable in G and x (double backward)."""

    @staticmethod
    def forward(ctx, g, x, info):
        xp = xp_of(x)
        cdt, eps, n = info.cdt, info.eps, info.n_classes
        gv = g._data.astype(cdt)
        if info.scale is not None:
            gv = gv * info.scale
        gv = xp.broadcast_to(gv, info.valid.shape)
        wt_part = gv * (info.wt * (1 - eps))
        coef = wt_part + gv * (info.valid * (eps / n * info.wsum)) if eps else wt_part
        grad = xp.exp(info.logp) * coef[:, None]
        grid = _along_axis(info.safe[:, None], 1)
        grad[grid] -= wt_part[:, None]
        if eps:
            smooth = (gv * info.valid * (eps / n))[:, None]
            grad -= smooth if info.w is None else smooth * info.w.reshape(
                (1, n) + (1,) * (grad.ndim - 2))
        ctx.info, ctx.g_shape = info, g._data.shape
        ctx.save_for_backward(g, x)
        return wrap(grad.astype(x._data.dtype, copy=False))

    @staticmethod
    def backward(ctx, gg):
        g, x = ctx.saved_tensors
        info = ctx.info
        eps, n, dt = info.eps, info.n_classes, gg.dtype

        def const(a):
            return wrap(a).to(dt)
        p = softmax(x, 1)
        wt = const(info.wt)
        big_a = wt * (1 - eps)
        if eps:
            big_a = big_a + const(info.valid * (eps / n * info.wsum))
        scale = 1.0 if info.scale is None else float(info.scale)
        d_g = d_x = None
        if ctx.needs_input_grad[0]:
            picked = gg.gather(1, wrap(info.safe[:, None])).squeeze(1)
            d_big_g = (gg * p).sum(1) * big_a - picked * wt * (1 - eps)
            if eps:
                ggw = gg if info.w is None else gg * const(info.w).reshape(
                    (1, n) + (1,) * (gg.ndim - 2))
                d_big_g = d_big_g - ggw.sum(1) * const(info.valid * (eps / n))
            d_g = sum_to(d_big_g * scale, ctx.g_shape)
        if ctx.needs_input_grad[1]:
            v = gg * (g * scale * big_a).unsqueeze(1)
            d_x = p * (v - (v * p).sum(1, keepdim=True))
        return d_g, d_x, None


def nll_loss(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
             reduction="mean"):
    """-input[n, target[n]] * weight[target[n]]; 'mean' divides by the total weight of the
    targets that are not ignore_index (as PyTorch)."""
    reduction = legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    x, valid, safe, unbatched, _ = _class_index_input("nll_loss", input, target, weight,
                                                      ignore_index)
    picked = x.gather(1, wrap(safe[:, None])).squeeze(1)
    valid_t = wrap(valid)
    wt = valid_t.to(x.dtype) if weight is None else weight[wrap(safe)] * valid_t
    loss = -picked * wt
    if reduction == "mean":  # every target ignored: nan (0 / 0) with a 0 gradient, as torch
        total = wt.sum()
        zero = total == 0
        return where(zero, math.nan, loss.sum() / total.masked_fill(zero, 1))
    if reduction == "sum":
        return loss.sum()
    return loss.reshape(()) if unbatched else loss


def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
                  reduction="mean", label_smoothing=0.0):
    """Cross-entropy between logits `input` (N, C, d1, ...) or (C,) and either class indices
    (N, d1, ...) / () or class probabilities (the input's shape)."""
    reduction = legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise RuntimeError(f"label_smoothing must be between 0.0 and 1.0. Got: {label_smoothing}")
    if input._data.shape == target._data.shape and input.ndim:
        return _cross_entropy_probs(input, target, weight, ignore_index, reduction,
                                    label_smoothing)
    x, valid, safe, unbatched, _ = _class_index_input("cross_entropy", input, target, weight,
                                                      ignore_index)
    out = CrossEntropy.apply(x, target, weight, ignore_index, float(label_smoothing), reduction,
                             valid, safe)
    return out.reshape(()) if unbatched and reduction == "none" else out


def _cross_entropy_probs(input, target, weight, ignore_index, reduction, eps):
    same_device(input, target, weight)
    if target._data.dtype.kind not in "fV":
        raise RuntimeError(f"Expected floating point type for target with class probabilities, "
                           f"got {target.dtype} (input and target shape {_shape(input)})")
    if ignore_index >= 0:
        raise RuntimeError("ignore_index is not supported for floating point target")
    dim = 1 if input.ndim > 1 else 0
    n = input._data.shape[dim]
    if weight is not None and tuple(weight._data.shape) != (n,):
        raise RuntimeError(f"weight tensor should be defined either for all {n} classes "
                           f"or no classes but got weight tensor of shape: {_shape(weight)}")
    if eps:
        target = target * (1 - eps) + eps / n
    prod = log_softmax(input, dim) * target
    if weight is not None:
        prod = prod * weight.reshape((n,) + (1,) * (input.ndim - dim - 1))
    loss = -prod.sum(dim)
    if reduction == "mean":
        count = input._data.size // n if n else 0
        with np.errstate(invalid="ignore", divide="ignore"):
            return loss.sum() / count if count else loss.sum() * math.nan
    return _reduce(loss, reduction)


# --- binary classification -------------------------------------------------------------------
class BinaryCrossEntropy(Function):
    """-(t log x + (1 - t) log(1 - x)), each log clamped at -100 (as PyTorch)."""

    @staticmethod
    def forward(ctx, x, t):
        xp = xp_of(x)
        out_dt = np.result_type(as_float(x._data).dtype, as_float(t._data).dtype)
        cdt = _compute_dtype(np.empty(0, out_dt))
        xd, td = x._data.astype(cdt, copy=False), t._data.astype(cdt, copy=False)
        if xd.size and bool(((xd < 0) | (xd > 1)).any()):
            raise RuntimeError("all elements of input should be between 0 and 1")
        with np.errstate(divide="ignore"):
            lx, l1x = xp.maximum(xp.log(xd), -100), xp.maximum(xp.log1p(-xd), -100)
        ctx.save_for_backward(x, t)
        return wrap((-(td * lx + (1 - td) * l1x)).astype(out_dt, copy=False))

    @staticmethod
    def backward(ctx, g):
        x, t = ctx.saved_tensors
        gx = gt = None
        if ctx.needs_input_grad[0]:  # (x - t) / (x (1 - x)), finite at x = 0 or 1 (PyTorch)
            gx = (g * (x - t) / (x * (1 - x)).clamp(min=1e-12)).to(x.dtype)
        if ctx.needs_input_grad[1]:
            with np.errstate(divide="ignore"):
                gt = (g * ((-x).log1p().clamp(min=-100) - x.log().clamp(min=-100))).to(t.dtype)
        return gx, gt


def binary_cross_entropy(input, target, weight=None, size_average=None, reduce=None,
                         reduction="mean"):
    reduction = legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    if input._data.shape != target._data.shape:
        raise ValueError(f"Using a target size ({_shape(target)}) that is different to the input "
                         f"size ({_shape(input)}) is deprecated. Please ensure they have the "
                         "same size.")
    same_device(input, target, weight)
    loss = BinaryCrossEntropy.apply(input, target)
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


class BCEWithLogits(Function):
    """(1 - t) x + lw log(1 + exp(-x)), lw = 1 + (pos_weight - 1) t; log(1 + exp(-x)) as
    logaddexp(0, -x): no overflow for any x."""

    @staticmethod
    def forward(ctx, x, t, pos_weight):
        xp = xp_of(x)
        arrays = [x._data, t._data] + ([] if pos_weight is None else [pos_weight._data])
        out_dt = np.result_type(*[as_float(a).dtype for a in arrays])
        cdt = _compute_dtype(np.empty(0, out_dt))
        xd, td = x._data.astype(cdt, copy=False), t._data.astype(cdt, copy=False)
        sp = xp.logaddexp(cdt.type(0), -xd)
        if pos_weight is None:
            loss = (1 - td) * xd + sp
        else:
            loss = (1 - td) * xd + ((pos_weight._data.astype(cdt) - 1) * td + 1) * sp
        ctx.save_for_backward(x, t, pos_weight)
        return wrap(loss.astype(out_dt, copy=False))

    @staticmethod
    def backward(ctx, g):
        x, t, pw = ctx.saved_tensors
        need_x, need_t, need_pw = ctx.needs_input_grad
        gx = gt = gpw = None
        if pw is None:
            if need_x:
                gx = g * (sigmoid(x) - t)
            if need_t:
                gt = g * -x
        else:
            sp = softplus(-x, 1.0, math.inf) if need_t or need_pw else None
            if need_x:
                gx = g * (((pw - 1) * t + 1) * (sigmoid(x) - 1) + (1 - t))
            if need_t:
                gt = g * ((pw - 1) * sp - x)
            if need_pw:
                gpw = sum_to(g * t * sp, pw._data.shape).to(pw.dtype)
        return (None if gx is None else sum_to(gx, x._data.shape).to(x.dtype),
                None if gt is None else sum_to(gt, t._data.shape).to(t.dtype), gpw)


def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None, reduce=None,
                                     reduction="mean", pos_weight=None):
    reduction = legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    if input._data.shape != target._data.shape:
        raise ValueError(f"Target size ({_shape(target)}) must be the same as input size "
                         f"({_shape(input)})")
    same_device(input, target, weight, pos_weight)
    if pos_weight is not None:
        check_broadcast(input._data.shape, pos_weight._data.shape)
    loss = BCEWithLogits.apply(input, target, pos_weight)
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


# --- distributions ---------------------------------------------------------------------------
def kl_div(input, target, size_average=None, reduce=None, reduction="mean", log_target=False):
    """Pointwise KL divergence target * (log target - input), `input` being log-probabilities
    (and `target` too with log_target). 'batchmean' divides the sum by the batch size."""
    reduction = legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction, _REDUCTIONS + ("batchmean",))
    if reduction == "mean":
        warnings.warn("reduction: 'mean' divides the total loss by both the batch size and the "
                      "support size.'batchmean' divides only by the batch size, and aligns with "
                      "the KL div math definition.'mean' will be changed to behave the same as "
                      "'batchmean' in the next major release.", stacklevel=2)
    if log_target:
        loss = target.exp() * (target - input)
    else:  # xlogy(t, t) - t * input: 0 where t == 0 (and no NaN gradient there)
        loss = target * target.masked_fill(target == 0, 1).log() - target * input
    if reduction == "batchmean":
        return loss.sum() / input._data.shape[0] if input.ndim else loss.sum()
    return _reduce(loss, reduction)
