"""Loss functions and loss Modules through the op harness (tests/op_harness.py):
gradcheck and gradgradcheck in float64, forward and backward against torch in every float
dtype; then the Modules against torch's, error messages, and edge cases."""
import warnings

import numpy as np
import pytest

import pipeflow as pf
from op_harness import Case, standard_tests, torch

pytestmark = pytest.mark.filterwarnings("ignore:reduction. 'mean' divides the total loss")

idx = np.array  # fixed (non-differentiable) integer targets
REDUCTIONS = ("none", "mean", "sum")
LOW = ("float64", "float32")
ALL = ("float64", "float32", "float16", "bfloat16")


def dts(reduction):
    """'sum' differs from 'mean' only by a constant: half precisions are checked on the
    'none' and 'mean' cases (keeps the file fast)."""
    return LOW if reduction == "sum" else ALL
unit = staticmethod(lambda x: 0.1 + 0.8 / (1 + np.exp(-x)))  # (0.1, 0.9): BCE's domain
positive = staticmethod(lambda x: np.abs(x) + 0.2)


def F(L):
    return L.nn.functional


def const(L, array, like):
    """A fixed (non-differentiable) float tensor in the dtype and on the device of `like`."""
    return L.tensor(np.asarray(array, dtype=np.float64), dtype=like.dtype, device=like.device)


W5 = [0.5, 2.0, 1.0, 0.25, 1.5]  # per-class weights for 5 classes
W4 = [1.5, 0.5, 2.0, 1.0]

# Class-index targets: (N, C), (N, C, d1) and unbatched (C,) inputs.
CLASS_SETS = [((4, 5), idx([0, 4, 2, 2])), ((2, 5, 3), idx([[0, 3, 1], [4, 4, 0]])),
              ((5,), idx(3))]
IGNORED_SETS = [((4, 5), idx([0, -100, 2, -100])), ((2, 5, 3), idx([[0, -100, 1], [4, 4, 0]]))]
CUSTOM_IGNORE_SETS = [((6, 5), idx([1, 4, 1, 2, 0, 1]))]  # ignore_index=1, in range


def _ce_cases():
    opts = {  # name: (input sets, kwargs builder)
        "plain": (CLASS_SETS, lambda L, x: {}),
        "weight": (CLASS_SETS, lambda L, x: {"weight": const(L, W5, x)}),
        "ignore": (IGNORED_SETS, lambda L, x: {}),
        "ignore1": (CUSTOM_IGNORE_SETS, lambda L, x: {"ignore_index": 1}),
        "smooth": (CLASS_SETS, lambda L, x: {"label_smoothing": 0.2}),
        "weight_ignore_smooth": (IGNORED_SETS,
                                 lambda L, x: {"weight": const(L, W5, x), "label_smoothing": 0.3}),
        "weight_ignore1": (CUSTOM_IGNORE_SETS,
                           lambda L, x: {"weight": const(L, W5, x), "ignore_index": 1}),
    }
    cases = []
    for name, (sets, kw) in opts.items():
        for red in REDUCTIONS:
            cases.append(Case(f"cross_entropy_{name}_{red}",
                              lambda L, x, t, kw=kw, red=red:
                              F(L).cross_entropy(x, t, reduction=red, **kw(L, x)), sets,
                              dtypes=dts(red)))
    prob_sets = [((4, 5), (4, 5)), ((2, 5, 3), (2, 5, 3)), ((5,), (5,))]
    prob_opts = {"plain": lambda L, x: {}, "weight": lambda L, x: {"weight": const(L, W5, x)},
                 "smooth": lambda L, x: {"label_smoothing": 0.1},
                 "weight_smooth": lambda L, x: {"weight": const(L, W5, x),
                                                "label_smoothing": 0.25}}
    for name, kw in prob_opts.items():
        for red in REDUCTIONS:
            cases.append(Case(f"cross_entropy_probs_{name}_{red}",
                              lambda L, x, t, kw=kw, red=red:
                              F(L).cross_entropy(x, t.softmax(-1 if t.ndim < 3 else 1),
                                                 reduction=red, **kw(L, x)), prob_sets,
                              dtypes=dts(red)))
    return cases


def _nll_cases():
    opts = {"plain": (CLASS_SETS, lambda L, x: {}),
            "weight": (CLASS_SETS, lambda L, x: {"weight": const(L, W5, x)}),
            "ignore": (IGNORED_SETS, lambda L, x: {}),
            "weight_ignore": (IGNORED_SETS, lambda L, x: {"weight": const(L, W5, x)}),
            "weight_ignore1": (CUSTOM_IGNORE_SETS,
                               lambda L, x: {"weight": const(L, W5, x), "ignore_index": 1})}
    return [Case(f"nll_loss_{name}_{red}",
                 lambda L, x, t, kw=kw, red=red: F(L).nll_loss(x, t, reduction=red, **kw(L, x)),
                 sets, dtypes=dts(red))
            for name, (sets, kw) in opts.items() for red in REDUCTIONS]


PAIRS = [((3, 4), (3, 4)), ((5,), (5,)), ((), ())]
W34 = np.linspace(0.2, 2.0, 12).reshape(3, 4)


def _regression_cases():
    cases = []
    for red in REDUCTIONS:
        for name in ("mse_loss", "l1_loss"):
            cases.append(Case(f"{name}_{red}", lambda L, x, t, n=name, red=red:
                              getattr(F(L), n)(x, t, reduction=red), PAIRS, dtypes=dts(red)))
            cases.append(Case(f"{name}_weight_{red}", lambda L, x, t, n=name, red=red:
                              getattr(F(L), n)(x, t, reduction=red, weight=const(L, W34, x)),
                              PAIRS[:1], dtypes=dts(red)))
        for beta in (1.0, 0.5, 0.0):
            cases.append(Case(f"smooth_l1_loss_beta{beta}_{red}",
                              lambda L, x, t, b=beta, red=red:
                              F(L).smooth_l1_loss(x * 1.5, t, reduction=red, beta=b), PAIRS,
                              dtypes=dts(red) if beta == 1.0 else LOW))
        for delta in (1.0, 0.3):
            cases.append(Case(f"huber_loss_delta{delta}_{red}",
                              lambda L, x, t, d=delta, red=red:
                              F(L).huber_loss(x * 1.5, t, reduction=red, delta=d), PAIRS,
                              dtypes=dts(red) if delta == 1.0 else LOW))
        cases.append(Case(f"huber_loss_weight_{red}", lambda L, x, t, red=red:
                          F(L).huber_loss(x, t, reduction=red, weight=const(L, W34, x)),
                          PAIRS[:1], dtypes=dts(red)))
    return cases


def _binary_cases():
    cases = []
    bce_sets = [((3, 4), (3, 4)), ((5,), (5,))]
    for red in REDUCTIONS:
        cases.append(Case(f"binary_cross_entropy_{red}", lambda L, x, t, red=red:
                          F(L).binary_cross_entropy(x, t, reduction=red), bce_sets, domain=unit,
                          dtypes=dts(red)))
        cases.append(Case(f"binary_cross_entropy_weight_{red}", lambda L, x, t, red=red:
                          F(L).binary_cross_entropy(x, t, const(L, W4, x), reduction=red),
                          bce_sets[:1], domain=unit, dtypes=dts(red)))
        opts = {"plain": lambda L, x: {}, "weight": lambda L, x: {"weight": const(L, W4, x)},
                "pos_weight": lambda L, x: {"pos_weight": const(L, [3.0, 0.5, 1.0, 2.0], x)},
                "both": lambda L, x: {"weight": const(L, W34, x),
                                      "pos_weight": const(L, [3.0, 0.5, 1.0, 2.0], x)}}
        for name, kw in opts.items():
            cases.append(Case(f"bce_with_logits_{name}_{red}", lambda L, x, t, kw=kw, red=red:
                              F(L).binary_cross_entropy_with_logits(x, t, reduction=red,
                                                                    **kw(L, x)),
                              [((3, 4), (3, 4))] + ([((5, 4), (5, 4))] if name != "both" else []),
                              dtypes=dts(red)))
        # logits of +-60 or more: the stable form neither overflows nor loses the small terms
        cases.append(Case(f"bce_with_logits_large_{red}", lambda L, x, t, red=red:
                          F(L).binary_cross_entropy_with_logits(
                              x * 40, t.sigmoid(), reduction=red,
                              pos_weight=const(L, [3.0, 0.5, 1.0, 2.0], x)),
                          [((3, 4), (3, 4))], dtypes=LOW))
    return cases


def _kl_cases():
    return [Case(f"kl_div_{'logt_' if lt else ''}{red}",
                 lambda L, x, t, lt=lt, red=red:
                 F(L).kl_div(x.log(), t.log() if lt else t, reduction=red, log_target=lt),
                 [((3, 4), (3, 4)), ((5,), (5,))], domain=positive, dtypes=dts(red))
            for lt in (False, True) for red in REDUCTIONS + ("batchmean",)]


def _module_cases():
    """The Module classes, built from the same options in both libraries."""
    return [
        Case("module_CrossEntropyLoss", lambda L, x, t: L.nn.CrossEntropyLoss(
            weight=const(L, W5, x), ignore_index=2, label_smoothing=0.1, reduction="mean")(x, t),
            CLASS_SETS[:2], dtypes=LOW),
        Case("module_CrossEntropyLoss_default", lambda L, x, t: L.nn.CrossEntropyLoss()(x, t),
             IGNORED_SETS, dtypes=LOW),
        Case("module_NLLLoss", lambda L, x, t: L.nn.NLLLoss(
            weight=const(L, W5, x), reduction="sum")(x.log_softmax(1), t), IGNORED_SETS,
            dtypes=LOW),
        Case("module_MSELoss", lambda L, x, t: L.nn.MSELoss()(x, t), PAIRS, dtypes=LOW),
        Case("module_L1Loss", lambda L, x, t: L.nn.L1Loss(reduction="sum")(x, t), PAIRS,
             dtypes=LOW),
        Case("module_SmoothL1Loss", lambda L, x, t: L.nn.SmoothL1Loss(beta=0.5)(x, t), PAIRS,
             dtypes=LOW),
        Case("module_HuberLoss", lambda L, x, t: L.nn.HuberLoss(reduction="none", delta=0.5)(
            x, t), PAIRS, dtypes=LOW),
        Case("module_BCELoss", lambda L, x, t: L.nn.BCELoss(weight=const(L, W4, x))(x, t),
             [((3, 4), (3, 4))], domain=unit, dtypes=LOW),
        Case("module_BCEWithLogitsLoss", lambda L, x, t: L.nn.BCEWithLogitsLoss(
            pos_weight=const(L, W4, x), reduction="sum")(x, t), [((3, 4), (3, 4))], dtypes=LOW),
        Case("module_KLDivLoss", lambda L, x, t: L.nn.KLDivLoss(reduction="batchmean",
                                                                log_target=True)(x, t),
             [((3, 4), (3, 4))], dtypes=LOW),
    ]


CASES = (_ce_cases() + _nll_cases() + _regression_cases() + _binary_cases() + _kl_cases()
         + _module_cases())


(test_gradchecks_float64, test_matches_torch, test_gradchecks_cuda,
 test_matches_torch_cuda) = standard_tests(CASES)


# --- Modules ---------------------------------------------------------------------------------
needs_torch = pytest.mark.skipif(torch is None, reason="torch (the ref extra) is the reference")

MODULE_CONFIGS = [
    ("CrossEntropyLoss", lambda L: {}),
    ("CrossEntropyLoss", lambda L: {"weight": L.ones(3), "ignore_index": 1,
                                    "label_smoothing": 0.1, "reduction": "sum"}),
    ("NLLLoss", lambda L: {"weight": L.ones(3), "reduction": "none"}),
    ("MSELoss", lambda L: {}), ("L1Loss", lambda L: {"reduction": "sum"}),
    ("SmoothL1Loss", lambda L: {"beta": 0.5}), ("HuberLoss", lambda L: {"delta": 2.0}),
    ("BCELoss", lambda L: {"weight": L.ones(3)}),
    ("BCEWithLogitsLoss", lambda L: {"pos_weight": L.ones(3)}),
    ("BCEWithLogitsLoss", lambda L: {"weight": L.ones(3), "pos_weight": L.ones(3)}),
    ("KLDivLoss", lambda L: {"reduction": "batchmean", "log_target": True}),
]


@needs_torch
@pytest.mark.parametrize("name,kwargs", MODULE_CONFIGS)
def test_module_options_repr_state_dict(name, kwargs):
    ours, ref = getattr(pf.nn, name)(**kwargs(pf)), getattr(torch.nn, name)(**kwargs(torch))
    assert repr(ours) == repr(ref)
    assert list(ours.state_dict()) == list(ref.state_dict())
    for attr in ("reduction", "ignore_index", "label_smoothing", "beta", "delta", "log_target"):
        if hasattr(ref, attr):
            assert getattr(ours, attr) == getattr(ref, attr), attr
    assert isinstance(ours, pf.nn.Module)


def test_module_weight_is_a_buffer():
    loss = pf.nn.CrossEntropyLoss(weight=pf.tensor([1.0, 2.0, 3.0]))
    assert [n for n, _ in loss.named_buffers()] == ["weight"]
    assert loss.double().weight.dtype == pf.float64
    assert pf.nn.CrossEntropyLoss().weight is None
    assert pf.nn.BCEWithLogitsLoss().pos_weight is None


def test_module_legacy_reduction_args():
    with pytest.warns(UserWarning, match="reduction='sum'"):
        assert pf.nn.MSELoss(size_average=False).reduction == "sum"
    with pytest.warns(UserWarning, match="reduction='none'"):
        assert pf.nn.CrossEntropyLoss(reduce=False).reduction == "none"


# --- errors ----------------------------------------------------------------------------------
def _logits(*shape):
    return pf.tensor(np.random.default_rng(0).standard_normal(shape))


@pytest.mark.parametrize("fn", ["cross_entropy", "nll_loss"])
def test_batch_size_mismatch_names_both_shapes(fn):
    with pytest.raises(ValueError, match=r"batch_size \(3\).*batch_size \(2\)") as e:
        getattr(pf.nn.functional, fn)(_logits(3, 4), pf.tensor([0, 1]))
    assert "[3, 4]" in str(e.value) and "[2]" in str(e.value)


@pytest.mark.parametrize("fn", ["cross_entropy", "nll_loss"])
def test_target_shape_errors(fn):
    f = getattr(pf.nn.functional, fn)
    with pytest.raises(RuntimeError, match=r"\[3, 2\].*\[3, 3\]"):  # spatial dims differ
        f(_logits(3, 4, 2), pf.tensor(np.zeros((3, 3), dtype=np.int64)))
    with pytest.raises(RuntimeError, match=r"\[3\].*\[3, 1\]"):  # (N, 1) target for (N, C)
        f(_logits(3, 4), pf.tensor([[0], [1], [2]]))
    with pytest.raises(RuntimeError, match=r"0-d target"):
        f(_logits(4), pf.tensor([1]))


@pytest.mark.parametrize("fn", ["cross_entropy", "nll_loss"])
@pytest.mark.parametrize("bad", [5, 4, -1])
def test_out_of_range_class_index(fn, bad):
    f = getattr(pf.nn.functional, fn)
    with pytest.raises(IndexError, match=rf"Target {bad} is out of bounds.*\[0, 4\).*4 classes"):
        f(_logits(3, 4), pf.tensor([0, bad, 1]))
    with pytest.raises(IndexError, match=rf"Target {bad} is out of bounds"):
        f(_logits(4), pf.tensor(bad))


def test_classification_option_errors():
    F_ = pf.nn.functional
    with pytest.raises(RuntimeError, match="for all 4 classes.*shape: \\[3\\]"):
        F_.cross_entropy(_logits(3, 4), pf.tensor([0, 1, 2]), weight=pf.ones(3, dtype=pf.float64))
    with pytest.raises(RuntimeError, match="for all 4 classes"):
        F_.nll_loss(_logits(3, 4), pf.tensor([0, 1, 2]), weight=pf.ones(5, dtype=pf.float64))
    with pytest.raises(RuntimeError, match="label_smoothing must be between 0.0 and 1.0"):
        F_.cross_entropy(_logits(3, 4), pf.tensor([0, 1, 2]), label_smoothing=1.5)
    with pytest.raises(RuntimeError, match="Long or Byte.*float64"):
        F_.cross_entropy(_logits(3, 4), _logits(3))
    with pytest.raises(RuntimeError, match="Expected floating point type.*probabilities"):
        F_.cross_entropy(_logits(3, 4), pf.tensor(np.zeros((3, 4), dtype=np.int64)))
    with pytest.raises(RuntimeError, match="ignore_index is not supported"):
        F_.cross_entropy(_logits(3, 4), _logits(3, 4).softmax(1), ignore_index=1)
    with pytest.raises(ValueError, match="avg is not a valid value for reduction"):
        F_.cross_entropy(_logits(3, 4), pf.tensor([0, 1, 2]), reduction="avg")
    with pytest.raises(ValueError, match="batchmean is not a valid value for reduction"):
        F_.mse_loss(_logits(3), _logits(3), reduction="batchmean")


def test_elementwise_loss_shape_errors():
    F_ = pf.nn.functional
    with pytest.raises(ValueError, match=r"target size \(\[4\]\).*input size \(\[3\]\)"):
        F_.binary_cross_entropy(_logits(3).sigmoid(), _logits(4).sigmoid())
    with pytest.raises(ValueError, match=r"Target size \(\[4\]\).*input size \(\[3\]\)"):
        F_.binary_cross_entropy_with_logits(_logits(3), _logits(4))
    with pytest.warns(UserWarning, match="different to the input size"):
        with pytest.raises(RuntimeError, match=r"\[3, 4\].*\[2, 4\].*do not broadcast"):
            F_.mse_loss(_logits(3, 4), _logits(2, 4))
    with pytest.raises(ValueError, match="Weights and input must have the same size"):
        F_.l1_loss(_logits(3, 4), _logits(3, 4), weight=_logits(4))
    with pytest.raises(RuntimeError, match="between 0 and 1"):
        F_.binary_cross_entropy(_logits(3) + 5, _logits(3).sigmoid())
    with pytest.raises(RuntimeError, match="negative values for beta"):
        F_.smooth_l1_loss(_logits(3), _logits(3), beta=-1.0)


@needs_torch
def test_broadcasting_target_warns_and_matches_torch():
    x, t = np.random.default_rng(1).standard_normal((2, 3, 4)), np.arange(4.0)
    with pytest.warns(UserWarning, match="different to the input size"):
        ours = pf.nn.functional.mse_loss(pf.tensor(x), pf.tensor(t), reduction="none")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = torch.nn.functional.mse_loss(torch.tensor(x), torch.tensor(t), reduction="none")
    np.testing.assert_allclose(ours.numpy(), ref.numpy())


# --- edge cases against torch ------------------------------------------------------------------
def _both(fn, *arrays, grad=True):
    """fn(F, *tensors) in both libraries (float arrays differentiable): outputs and grads."""
    out = []
    for L in (pf, torch):
        ts = [L.tensor(a, requires_grad=grad and a.dtype.kind == "f") for a in arrays]
        y = fn(L.nn.functional, *ts)
        if grad:
            y.sum().backward()
        out.append((y.detach().numpy(), [t.grad.numpy() for t in ts if t.requires_grad]))
    return out


@needs_torch
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_all_targets_ignored(reduction):
    x, t = np.random.default_rng(2).standard_normal((3, 4)), np.array([-100, -100, -100])
    for smoothing in (0.0, 0.2):
        (o, g), (r, rg) = _both(lambda F, a, b: F.cross_entropy(
            a, b, reduction=reduction, label_smoothing=smoothing), x, t)
        np.testing.assert_allclose(o, r)  # mean: nan (0 / 0), as torch
        np.testing.assert_allclose(g[0], rg[0])  # gradient 0, not nan
    (o, g), (r, rg) = _both(lambda F, a, b: F.nll_loss(a, b, reduction=reduction), x, t)
    np.testing.assert_allclose(o, r)
    np.testing.assert_allclose(g[0], rg[0])


@needs_torch
def test_empty_batch():
    x, t = np.zeros((0, 4)), np.zeros(0, dtype=np.int64)
    for red in REDUCTIONS:
        (o, _), (r, _) = _both(lambda F, a, b: F.cross_entropy(a, b, reduction=red), x, t,
                               grad=False)
        assert o.shape == r.shape
        np.testing.assert_allclose(o, r)


@needs_torch
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_bce_at_exact_zero_and_one(dtype):
    x = np.array([0.0, 1.0, 0.0, 1.0, 0.5], dtype=dtype)
    t = np.array([0.0, 1.0, 1.0, 0.0, 0.3], dtype=dtype)
    for L in (pf, torch):
        xt, tt = L.tensor(x, requires_grad=True), L.tensor(t)
        y = L.nn.functional.binary_cross_entropy(xt, tt, reduction="none")
        y.sum().backward()
        if L is pf:
            ours, ours_g = y.detach().numpy(), xt.grad.numpy()
    np.testing.assert_allclose(ours, y.detach().numpy(), rtol=1e-6)  # 0 or 100: clamped logs
    np.testing.assert_allclose(ours_g, xt.grad.numpy(), rtol=1e-6)
    assert np.isfinite(ours_g).all()


@needs_torch
def test_bce_with_logits_extreme_logits_float32():
    x = np.array([-1e4, -100.0, -20.0, 0.0, 20.0, 100.0, 1e4], dtype=np.float32)
    t = np.array([1.0, 0.0, 1.0, 0.5, 0.0, 1.0, 0.0], dtype=np.float32)
    pw = np.array([2.0], dtype=np.float32)
    res = []
    for L in (pf, torch):
        xt, tt = L.tensor(x, requires_grad=True), L.tensor(t, requires_grad=True)
        y = L.nn.functional.binary_cross_entropy_with_logits(xt, tt, reduction="none",
                                                             pos_weight=L.tensor(pw))
        y.sum().backward()
        res.append([y.detach().numpy(), xt.grad.numpy(), tt.grad.numpy()])
    for a, b in zip(*res):
        assert np.isfinite(a).all()
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_pos_weight_and_nll_weight_gradients():
    """pipeflow also differentiates pos_weight and nll_loss's weight (torch does not)."""
    rng = np.random.default_rng(3)
    x, t = pf.tensor(rng.standard_normal((3, 4)), requires_grad=True), pf.tensor(
        rng.random((3, 4)), requires_grad=True)
    pw = pf.tensor(rng.random(4) + 0.5, requires_grad=True)
    assert pf.autograd.gradcheck(lambda a, b, c: pf.nn.functional.binary_cross_entropy_with_logits(
        a, b, pos_weight=c), (x, t, pw))
    assert pf.autograd.gradgradcheck(
        lambda a, b, c: pf.nn.functional.binary_cross_entropy_with_logits(
            a, b, pos_weight=c, reduction="sum"), (x, t, pw))
    w = pf.tensor(rng.random(4) + 0.5, requires_grad=True)
    assert pf.autograd.gradcheck(lambda a, c: pf.nn.functional.nll_loss(
        a, pf.tensor([0, -100, 3]), weight=c), (x, w))


@needs_torch
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("smoothing", [0.0, 0.3])
def test_cross_entropy_double_backward_matches_torch(reduction, smoothing):
    """Hessian-vector products through the fused op, and the gradient of the gradient with
    respect to the incoming gradient (a scale s on the loss), against torch."""
    rng = np.random.default_rng(4)
    x, s, r = rng.standard_normal((3, 5, 2)), np.array(1.7), rng.standard_normal((3, 5, 2))
    t, w = np.array([[0, 4], [-100, 2], [3, 3]]), rng.random(5) + 0.5
    res = []
    for L in (pf, torch):
        xt, st = L.tensor(x, requires_grad=True), L.tensor(s, requires_grad=True)
        loss = L.nn.functional.cross_entropy(xt, L.tensor(t), weight=L.tensor(w),
                                             reduction=reduction, label_smoothing=smoothing)
        loss = (loss * st).sum()
        g, = L.autograd.grad(loss, xt, create_graph=True)
        (g * L.tensor(r)).sum().backward()
        res.append([g.detach().numpy(), xt.grad.numpy(), st.grad.numpy()])
    for a, b in zip(*res):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_no_grad_and_integer_free_paths():
    x = _logits(4, 3)
    with pf.no_grad():
        y = pf.nn.functional.cross_entropy(x, pf.tensor([0, 2, 1, 1]))
    assert y.grad_fn is None and y.shape == ()
    loss = pf.nn.functional.cross_entropy(x.requires_grad_(), pf.tensor([0, 2, 1, 1]))
    assert loss.grad_fn.name() == "CrossEntropyBackward0"
