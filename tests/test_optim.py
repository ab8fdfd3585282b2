"""pipeflow.optim against torch.optim: the same model, data and hyperparameters give the
same parameters after ten steps (float64, rtol 1e-12), the schedulers give torch's lr
sequences, state dicts have torch's layout and resume bit-exactly."""
import copy
import pickle
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch (the ref extra) is the reference")

import pipeflow as pf  # noqa: E402
from pipeflow import optim  # noqa: E402
from pipeflow.optim import lr_scheduler as pf_sched  # noqa: E402

RTOL, ATOL = 1e-12, 1e-14

_rng = np.random.default_rng(1234)
SHAPES = [(5, 8), (8,), (8, 3), (3,), (4,)]  # an MLP's w1, b1, w2, b2, and an unused param
INIT = [_rng.standard_normal(s) * 0.5 for s in SHAPES]
X = _rng.standard_normal((16, 5))
Y = _rng.standard_normal((16, 3))


class Lib:
    """What the tests need of torch and of pipeflow, under one spelling."""

    def __init__(self, mod, optim_mod, sched_mod):
        self.mod, self.optim, self.sched = mod, optim_mod, sched_mod

    def params(self, arrays=INIT):
        return [self.mod.tensor(np.array(a), requires_grad=True) for a in arrays]

    def loss(self, params, x, y):
        w1, b1, w2, b2 = params[:4]
        d = (x @ w1 + b1).tanh() @ w2 + b2 - y
        return (d * d).mean()

    def data(self):
        return self.mod.tensor(X), self.mod.tensor(Y)

    def values(self, params):
        return [np.array(p.detach().numpy()) for p in params]


TORCH = Lib(torch, torch.optim, torch.optim.lr_scheduler)
PF = Lib(pf, optim, pf_sched)


def _groups(params, group_opts):
    """The params as one list, or split into two groups with per-group options."""
    if group_opts is None:
        return params
    return [{"params": params[:2]}, {"params": params[2:], **group_opts}]


def _train(lib, name, kwargs, steps, group_opts=None, params=None, opt=None):
    params = lib.params() if params is None else params
    if opt is None:
        opt = getattr(lib.optim, name)(_groups(params, group_opts), **kwargs)
    x, y = lib.data()
    for _ in range(steps):
        opt.zero_grad()
        lib.loss(params, x, y).backward()
        opt.step()
    return params, opt


CASES = [
    ("SGD", {"lr": 0.1}, None),
    ("SGD", {"lr": 0.1, "weight_decay": 0.1}, None),
    ("SGD", {"lr": 0.1, "momentum": 0.9}, None),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "dampening": 0.3}, None),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}, None),
    ("SGD", {"lr": 0.05, "momentum": 0.5, "maximize": True, "weight_decay": 0.1}, None),
    ("SGD", {"lr": 0.1, "momentum": 0.9}, {"lr": 0.01, "momentum": 0.5, "nesterov": True}),
    ("Adam", {}, None),
    ("Adam", {"lr": 0.01}, None),
    ("Adam", {"lr": 0.01, "amsgrad": True}, None),
    ("Adam", {"lr": 0.01, "weight_decay": 0.1}, None),
    ("Adam", {"lr": 0.01, "weight_decay": 0.05, "amsgrad": True, "maximize": True}, None),
    ("Adam", {"lr": 0.05, "betas": (0.3, 0.9), "eps": 1e-6}, None),  # lerp's other branch
    ("Adam", {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True}, None),
    ("Adam", {"lr": 0.01}, {"lr": 0.1, "betas": (0.5, 0.99), "amsgrad": True}),
    ("AdamW", {"lr": 0.01}, None),
    ("AdamW", {"lr": 0.01, "weight_decay": 0.1, "amsgrad": True}, None),
    ("AdamW", {"lr": 0.01, "maximize": True}, {"weight_decay": 0.0}),
    ("RMSprop", {}, None),
    ("RMSprop", {"lr": 0.01, "centered": True}, None),
    ("RMSprop", {"lr": 0.01, "momentum": 0.9}, None),
    ("RMSprop", {"lr": 0.01, "centered": True, "momentum": 0.5, "weight_decay": 0.1}, None),
    ("RMSprop", {"lr": 0.01, "alpha": 0.4, "eps": 1e-3, "centered": True, "maximize": True}, None),
    ("Adagrad", {}, None),
    ("Adagrad", {"lr": 0.1, "lr_decay": 0.1}, None),
    ("Adagrad", {"lr": 0.1, "initial_accumulator_value": 0.5, "weight_decay": 0.1}, None),
    ("Adagrad", {"lr": 0.1, "eps": 1e-3, "maximize": True}, {"lr": 0.3, "lr_decay": 0.05}),
]


def _case_id(case):
    name, kwargs, group_opts = case
    opts = ",".join(f"{k}={v}" for k, v in kwargs.items()) or "defaults"
    return f"{name}[{opts}]" + (f"+group{group_opts}" if group_opts else "")


def _assert_params_close(got, want):
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_ten_steps_match_torch(case):
    name, kwargs, group_opts = case
    pf_params, pf_opt = _train(PF, name, kwargs, 10, group_opts)
    t_params, t_opt = _train(TORCH, name, kwargs, 10, group_opts)
    _assert_params_close(PF.values(pf_params), TORCH.values(t_params))
    # the parameter without a gradient is untouched and has no state, as in torch
    np.testing.assert_array_equal(pf_params[4].detach().numpy(), INIT[4])
    _assert_state_dicts_match(pf_opt.state_dict(), t_opt.state_dict())


def _assert_state_dicts_match(sd, t_sd):
    """Same layout as torch: group keys and values, per-parameter keys, dtypes, values."""
    assert sd["param_groups"] == t_sd["param_groups"]
    assert sorted(sd["state"]) == sorted(t_sd["state"])
    for index, t_state in t_sd["state"].items():
        state = sd["state"][index]
        assert list(state) == list(t_state)
        for key, t_value in t_state.items():
            value = state[key]
            assert isinstance(value, pf.Tensor)
            assert value.shape == tuple(t_value.shape)
            assert str(value.dtype).split(".")[-1] == str(t_value.dtype).split(".")[-1]
            np.testing.assert_allclose(value.numpy(), t_value.numpy(), rtol=RTOL, atol=ATOL)


def test_defaults_equal_torchs():
    for name in ("SGD", "Adam", "AdamW", "RMSprop", "Adagrad"):
        pf_opt = getattr(optim, name)(PF.params()[:1])
        t_opt = getattr(torch.optim, name)(TORCH.params()[:1])
        assert pf_opt.defaults == t_opt.defaults, name
        assert pf_opt.param_groups[0].keys() == t_opt.param_groups[0].keys(), name


ROUND_TRIP_CASES = [
    ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
    ("Adam", {"lr": 0.01, "amsgrad": True, "weight_decay": 0.01}),
    ("AdamW", {"lr": 0.01}),
    ("RMSprop", {"lr": 0.01, "centered": True, "momentum": 0.9}),
    ("Adagrad", {"lr": 0.1, "lr_decay": 0.01}),
]
SNAPSHOTS = {"as_is": lambda sd: sd, "deepcopy": copy.deepcopy,
             "pickle": lambda sd: pickle.loads(pickle.dumps(sd))}


@pytest.mark.parametrize("how", list(SNAPSHOTS))
@pytest.mark.parametrize("name,kwargs", ROUND_TRIP_CASES, ids=[c[0] for c in ROUND_TRIP_CASES])
def test_state_dict_round_trip_resumes_bit_exactly(name, kwargs, how):
    straight, _ = _train(PF, name, kwargs, 10, {"lr": 0.03})
    params, opt = _train(PF, name, kwargs, 5, {"lr": 0.03})
    saved = SNAPSHOTS[how](opt.state_dict())
    # a fresh optimizer with other hyperparameters: loading restores the saved ones
    fresh = getattr(optim, name)(_groups(params, {"lr": 0.5}), **{**kwargs, "lr": 0.7})
    fresh.load_state_dict(saved)
    assert [g["lr"] for g in fresh.param_groups] == [kwargs["lr"], 0.03]
    assert all(g["params"] == f["params"] for g, f in zip(opt.param_groups, fresh.param_groups))
    _train(PF, name, kwargs, 5, params=params, opt=fresh)
    for got, want in zip(PF.values(params), PF.values(straight)):
        np.testing.assert_array_equal(got, want)


def test_whole_optimizer_pickles():
    params = [pf.nn.Parameter(p) for p in PF.params()]
    _, opt = _train(PF, "Adam", {"lr": 0.01}, 3, params=params)
    clone = pickle.loads(pickle.dumps(opt))
    assert clone.state_dict()["param_groups"] == opt.state_dict()["param_groups"]
    p0 = clone.param_groups[0]["params"][0]
    np.testing.assert_array_equal(clone.state[p0]["exp_avg"].numpy(),
                                  opt.state[params[0]]["exp_avg"].numpy())


def _to_numpy_state(t_sd):
    sd = copy.deepcopy(t_sd)
    for state in sd["state"].values():
        for k, v in state.items():
            state[k] = v.numpy()
    return sd


def _to_torch_state(sd):
    sd = copy.deepcopy(sd)
    for state in sd["state"].values():
        for k, v in state.items():
            state[k] = torch.from_numpy(np.array(v.numpy()))
    return sd


@pytest.mark.parametrize("name,kwargs", ROUND_TRIP_CASES, ids=[c[0] for c in ROUND_TRIP_CASES])
def test_state_dicts_move_between_torch_and_pipeflow(name, kwargs):
    # torch -> pipeflow: arrays in place of tensors load too
    t_params, t_opt = _train(TORCH, name, kwargs, 5)
    pf_params = PF.params(TORCH.values(t_params))
    pf_opt = getattr(optim, name)(pf_params, **kwargs)
    pf_opt.load_state_dict(_to_numpy_state(t_opt.state_dict()))
    assert pf_opt.state[pf_params[0]][next(iter(t_opt.state[t_params[0]]))].dtype == (
        pf.float32 if name != "SGD" else pf.float64)
    _train(TORCH, name, kwargs, 5, params=t_params, opt=t_opt)
    _train(PF, name, kwargs, 5, params=pf_params, opt=pf_opt)
    _assert_params_close(PF.values(pf_params), TORCH.values(t_params))
    # pipeflow -> torch
    t_params2 = TORCH.params(PF.values(pf_params))
    t_opt2 = getattr(torch.optim, name)(t_params2, **kwargs)
    t_opt2.load_state_dict(_to_torch_state(pf_opt.state_dict()))
    _train(TORCH, name, kwargs, 3, params=t_params2, opt=t_opt2)
    _train(PF, name, kwargs, 3, params=pf_params, opt=pf_opt)
    _assert_params_close(PF.values(pf_params), TORCH.values(t_params2))


def test_load_state_dict_checks_groups():
    params, opt = _train(PF, "SGD", {"lr": 0.1, "momentum": 0.9}, 1)
    with pytest.raises(ValueError, match="different number of parameter groups"):
        optim.SGD(_groups(params, {}), lr=0.1).load_state_dict(opt.state_dict())
    with pytest.raises(ValueError, match="doesn't match the size"):
        optim.SGD(params[:3], lr=0.1).load_state_dict(opt.state_dict())


def test_loaded_state_is_a_copy_on_the_params_dtype():
    params, opt = _train(PF, "Adam", {"lr": 0.01}, 2)
    sd = opt.state_dict()
    fresh = optim.Adam(params, lr=0.01)
    fresh.load_state_dict(sd)
    mine, theirs = fresh.state[params[0]], opt.state[params[0]]
    assert mine["exp_avg"]._data is not theirs["exp_avg"]._data
    assert mine["step"].dtype == pf.float32 and mine["exp_avg"].dtype == pf.float64
    f32 = [pf.tensor(a.astype(np.float32), requires_grad=True) for a in PF.values(params)]
    cast = optim.Adam(f32, lr=0.01)
    cast.load_state_dict(sd)
    assert cast.state[f32[0]]["exp_avg"].dtype == pf.float32
    assert cast.state[f32[0]]["step"].dtype == pf.float32


def test_zero_grad():
    params, opt = _train(PF, "SGD", {"lr": 0.1}, 1)
    x, y = PF.data()
    PF.loss(params, x, y).backward()
    grads = [p.grad for p in params[:4]]
    opt.zero_grad(set_to_none=False)
    for p, g in zip(params[:4], grads):
        assert p.grad is g and not g.requires_grad
        assert np.all(g.numpy() == 0)
    assert params[4].grad is None
    opt.zero_grad()
    assert all(p.grad is None for p in params)


def test_add_param_group_with_its_own_lr():
    def build(lib):
        params = lib.params()
        opt = lib.optim.SGD(params[:2], lr=0.1, momentum=0.9)
        opt.add_param_group({"params": params[2:4], "lr": 0.01, "nesterov": True})
        return params, opt

    pf_params, pf_opt = build(PF)
    t_params, t_opt = build(TORCH)
    assert pf_opt.param_groups[1]["momentum"] == 0.9 and pf_opt.param_groups[1]["lr"] == 0.01
    _train(PF, None, None, 10, params=pf_params, opt=pf_opt)
    _train(TORCH, None, None, 10, params=t_params, opt=t_opt)
    _assert_params_close(PF.values(pf_params), TORCH.values(t_params))
    with pytest.raises(ValueError, match="more than one parameter group"):
        pf_opt.add_param_group({"params": [pf_params[0]]})
    with pytest.raises(TypeError, match="param_group must be a dict"):
        pf_opt.add_param_group([pf_params[4]])
    with pytest.raises(TypeError, match="ordered collections"):
        pf_opt.add_param_group({"params": {pf_params[4]}})


def test_params_forms():
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.SGD([], lr=0.1)
    with pytest.raises(TypeError, match="iterable of Tensors"):
        optim.SGD(pf.ones(2, requires_grad=True))
    with pytest.raises(ValueError, match="non-leaf"):
        optim.SGD([pf.ones(2, requires_grad=True) * 2])
    model = pf.nn.Linear(3, 2)
    opt = optim.Adam(model.parameters())
    assert len(opt.param_groups[0]["params"]) == 2
    named = optim.Adam(model.named_parameters())
    assert named.param_groups[0]["param_names"] == ["weight", "bias"]
    assert named.state_dict()["param_groups"][0]["param_names"] == ["weight", "bias"]


def test_closure_is_evaluated_with_grad_and_its_loss_returned():
    for name in ("SGD", "Adam", "AdamW", "RMSprop", "Adagrad"):
        params = PF.params()
        opt = getattr(optim, name)(params, lr=0.01)
        x, y = PF.data()
        seen = []

        def closure():
            seen.append(pf.is_grad_enabled())
            opt.zero_grad()
            loss = PF.loss(params, x, y)
            loss.backward()
            return loss

        before = float(PF.loss(params, x, y))
        with pf.no_grad():
            loss = opt.step(closure)
            assert not pf.is_grad_enabled()
        assert seen == [True]
        assert float(loss) == before  # the loss the closure computed, before the update
        assert not np.array_equal(params[0].detach().numpy(), INIT[0])
        assert opt.step() is None
    assert pf.is_grad_enabled()


BAD_HYPERPARAMETERS = [
    ("SGD", {"lr": -1}), ("SGD", {"momentum": -0.1}), ("SGD", {"weight_decay": -1}),
    ("SGD", {"nesterov": True}), ("SGD", {"nesterov": True, "momentum": 0.9, "dampening": 0.1}),
    ("Adam", {"lr": -1}), ("Adam", {"eps": -1}), ("Adam", {"betas": (1.0, 0.9)}),
    ("Adam", {"betas": (0.9, -0.1)}), ("Adam", {"weight_decay": -1}), ("AdamW", {"lr": -0.5}),
    ("RMSprop", {"lr": -1}), ("RMSprop", {"eps": -1}), ("RMSprop", {"momentum": -1}),
    ("RMSprop", {"weight_decay": -1}), ("RMSprop", {"alpha": -1}),
    ("Adagrad", {"lr": -1}), ("Adagrad", {"lr_decay": -1}), ("Adagrad", {"weight_decay": -1}),
    ("Adagrad", {"initial_accumulator_value": -1}), ("Adagrad", {"eps": -1}),
]


@pytest.mark.parametrize("name,kwargs", BAD_HYPERPARAMETERS)
def test_bad_hyperparameters_raise_torchs_value_error(name, kwargs):
    with pytest.raises(ValueError) as t_err:
        getattr(torch.optim, name)(TORCH.params()[:1], **kwargs)
    with pytest.raises(ValueError) as pf_err:
        getattr(optim, name)(PF.params()[:1], **kwargs)
    assert str(pf_err.value) == str(t_err.value)


def test_invalid_learning_rate_message():
    with pytest.raises(ValueError, match="^Invalid learning rate: -1$"):
        optim.SGD(PF.params(), lr=-1)


def test_step_bumps_the_version_so_autograd_notices():
    p = pf.tensor(np.ones(3), requires_grad=True)
    loss = (p * p).sum()
    p.grad = pf.ones(3, dtype=pf.float64)
    for opt in (optim.SGD([p], lr=0.1), optim.Adam([p])):
        v = p._version
        opt.step()
        assert p._version == v + 1
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_step_hooks():
    params, opt = _train(PF, "SGD", {"lr": 0.1}, 1)
    calls = []
    pre = opt.register_step_pre_hook(lambda o, a, k: calls.append(("pre", o)))
    post = opt.register_step_post_hook(lambda o, a, k: calls.append(("post", o)))
    opt.step()
    assert calls == [("pre", opt), ("post", opt)]
    pre.remove()
    post.remove()
    opt.step()
    assert len(calls) == 2


def test_execution_hints_are_accepted_and_differentiable_is_refused():
    for name in ("SGD", "Adam", "AdamW", "Adagrad"):
        opt = getattr(optim, name)(PF.params(), foreach=True, fused=True)
        assert opt.param_groups[0]["fused"] is True
    optim.RMSprop(PF.params(), capturable=True, foreach=False)
    with pytest.raises(ValueError, match="differentiable"):
        optim.Adam(PF.params(), differentiable=True)


def test_subclass_calling_super_step_runs_hooks_once():
    class Logged(optim.SGD):
        def step(self, closure=None):
            return super().step(closure)

    params, _ = _train(PF, "SGD", {"lr": 0.1}, 0)
    opt = Logged(params, lr=0.1)
    calls = []
    opt.register_step_pre_hook(lambda o, a, k: calls.append(a[0] is o))
    _train(PF, None, None, 2, params=params, opt=opt)
    assert calls == [True, True]


def test_tensor_lr_is_used_as_its_value():
    got, _ = _train(PF, "Adam", {"lr": pf.tensor(0.01, dtype=pf.float64)}, 3)
    want, _ = _train(PF, "Adam", {"lr": 0.01}, 3)
    for g, w in zip(PF.values(got), PF.values(want)):
        np.testing.assert_array_equal(g, w)


def test_repr():
    text = repr(optim.SGD(PF.params(), lr=0.1))
    assert text.startswith("SGD (\nParameter Group 0\n") and "    lr: 0.1\n" in text


# --- learning-rate schedulers ------------------------------------------------------------
def _sched_optimizer(lib, kind="SGD"):
    params = lib.params()[:2]
    groups = [{"params": params[:1]}, {"params": params[1:], "lr": 0.05}]
    if kind == "Adam":
        return lib.optim.Adam(groups, lr=0.1)
    return lib.optim.SGD(groups, lr=0.1, momentum=0.9)


SCHEDULES = {
    "StepLR": lambda s, o: s.StepLR(o, step_size=7, gamma=0.5),
    "MultiStepLR": lambda s, o: s.MultiStepLR(o, milestones=[3, 10, 10, 20], gamma=0.3),
    "ExponentialLR": lambda s, o: s.ExponentialLR(o, gamma=0.9),
    "CosineAnnealingLR": lambda s, o: s.CosineAnnealingLR(o, T_max=10, eta_min=0.001),
    "LambdaLR": lambda s, o: s.LambdaLR(o, lambda e: 1.0 / (e + 1)),
    "LambdaLR-per-group": lambda s, o: s.LambdaLR(o, [lambda e: 0.9 ** e, lambda e: e % 4]),
    "MultiplicativeLR": lambda s, o: s.MultiplicativeLR(o, lambda e: 0.95),
    "LinearLR": lambda s, o: s.LinearLR(o, start_factor=0.1, total_iters=8),
    "ConstantLR": lambda s, o: s.ConstantLR(o, factor=0.5, total_iters=4),
    "PolynomialLR": lambda s, o: s.PolynomialLR(o, total_iters=20, power=2.0),
    "warmup-then-cosine": lambda s, o: s.SequentialLR(
        o, [s.LinearLR(o, start_factor=0.1, total_iters=5), s.CosineAnnealingLR(o, T_max=25)],
        milestones=[5]),
    "SequentialLR-3": lambda s, o: s.SequentialLR(
        o, [s.ConstantLR(o, factor=0.5, total_iters=4), s.ExponentialLR(o, gamma=0.9),
            s.StepLR(o, step_size=3, gamma=0.5)], milestones=[4, 12]),
    "ChainedScheduler": lambda s, o: s.ChainedScheduler(
        [s.ExponentialLR(o, gamma=0.9), s.StepLR(o, step_size=5, gamma=0.5)]),
    "OneCycleLR": lambda s, o: s.OneCycleLR(o, max_lr=[0.1, 0.2], total_steps=30),
    "OneCycleLR-3phase-linear": lambda s, o: s.OneCycleLR(
        o, max_lr=0.3, epochs=3, steps_per_epoch=10, three_phase=True, anneal_strategy="linear"),
    "CyclicLR-triangular2": lambda s, o: s.CyclicLR(o, base_lr=0.01, max_lr=0.1, step_size_up=4,
                                                   mode="triangular2"),
    "CyclicLR-exp_range": lambda s, o: s.CyclicLR(o, base_lr=[0.01, 0.02], max_lr=0.1,
                                                 step_size_up=3, step_size_down=5,
                                                 mode="exp_range", gamma=0.9),
    "CosineAnnealingWarmRestarts": lambda s, o: s.CosineAnnealingWarmRestarts(
        o, T_0=5, T_mult=2, eta_min=0.01),
}


def _lr_sequence(lib, schedule, kind="SGD", steps=30):
    opt = _sched_optimizer(lib, kind)
    sched = SCHEDULES[schedule](lib.sched, opt)
    seq = [(list(sched.get_last_lr()), [g["lr"] for g in opt.param_groups],
            [g.get("momentum", g.get("betas")) for g in opt.param_groups])]
    for _ in range(steps):
        opt.step()  # no gradients: a no-op, but the right call order
        sched.step()
        seq.append((list(sched.get_last_lr()), [g["lr"] for g in opt.param_groups],
                    [g.get("momentum", g.get("betas")) for g in opt.param_groups]))
    return seq


@pytest.mark.parametrize("schedule", list(SCHEDULES))
def test_scheduler_lr_sequence_matches_torch(schedule):
    for kind in (("SGD", "Adam") if "Cycl" in schedule else ("SGD",)):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no call-order warnings on either side
            got, want = _lr_sequence(PF, schedule, kind), _lr_sequence(TORCH, schedule, kind)
        assert got == want


def test_scheduler_state_dict_round_trip():
    for schedule in ("warmup-then-cosine", "OneCycleLR", "CyclicLR-triangular2", "StepLR"):
        opt = _sched_optimizer(PF)
        sched = SCHEDULES[schedule](pf_sched, opt)
        for _ in range(10):
            opt.step()
            sched.step()
        saved_sched = pickle.loads(pickle.dumps(sched.state_dict()))
        saved_opt = copy.deepcopy(opt.state_dict())
        rest = []
        for _ in range(10):
            opt.step()
            sched.step()
            rest.append(sched.get_last_lr())
        opt2 = _sched_optimizer(PF)
        sched2 = SCHEDULES[schedule](pf_sched, opt2)
        opt2.load_state_dict(saved_opt)
        sched2.load_state_dict(saved_sched)
        rest2 = []
        for _ in range(10):
            opt2.step()
            sched2.step()
            rest2.append(sched2.get_last_lr())
        assert rest2 == rest, schedule


def test_scheduler_warns_when_stepped_before_the_optimizer():
    opt = _sched_optimizer(PF)
    sched = pf_sched.StepLR(opt, step_size=2)
    with pytest.warns(UserWarning, match="before `optimizer.step\\(\\)`"):
        sched.step()


@pytest.mark.parametrize("kwargs", [
    {"mode": "min", "factor": 0.5, "patience": 2, "cooldown": 1, "min_lr": [0.001, 0.02]},
    {"mode": "max", "factor": 0.3, "patience": 1, "threshold": 0.05, "threshold_mode": "abs"},
    {"mode": "min", "patience": 0, "threshold_mode": "abs", "threshold": 0.1, "eps": 1e-3},
])
def test_reduce_lr_on_plateau_matches_torch(kwargs):
    metrics = [1.0, 0.9, 0.95, 0.95, 0.95, 0.8, 0.81, 0.82, 0.83, 0.84, 0.7, 0.7, 0.7, 0.7,
               0.69, 0.71, 0.72, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.5, 0.9, 0.9, 0.9, 0.9]
    seqs = []
    for lib in (PF, TORCH):
        opt = _sched_optimizer(lib)
        sched = lib.sched.ReduceLROnPlateau(opt, **kwargs)
        seq = [sched.get_last_lr()]
        for m in metrics:
            opt.step()
            sched.step(m)
            seq.append(list(sched.get_last_lr()))
        seqs.append(seq)
    assert seqs[0] == seqs[1]
    assert seqs[0][-1] != seqs[0][0]  # the settings do reduce the lr


@pytest.mark.cuda
@pytest.mark.skipif(not pf.cuda.is_available(), reason="needs CuPy and an NVIDIA GPU")
@pytest.mark.parametrize("case", [c for c in CASES if c[2] is None and c[0] != "SGD"]
                         + [CASES[4]], ids=_case_id)
def test_cuda_matches_cpu(case):
    name, kwargs, _ = case
    cpu_params, cpu_opt = _train(PF, name, kwargs, 5)
    gpu_params = [p.detach().cuda().requires_grad_() for p in PF.params()]
    gpu_opt = getattr(optim, name)(gpu_params, **kwargs)
    x, y = (t.cuda() for t in PF.data())
    for _ in range(5):
        gpu_opt.zero_grad()
        PF.loss(gpu_params, x, y).backward()
        gpu_opt.step()
    for g, c in zip(gpu_params, cpu_params):
        assert g.is_cuda
        np.testing.assert_allclose(g.detach().cpu().numpy(), c.detach().numpy(), rtol=1e-10,
                                   atol=1e-12)
    state = gpu_opt.state_dict()["state"][0]
    for key, value in state.items():
        assert value.is_cuda == (key != "step")
    # a GPU state dict loads into a CPU optimizer, and back
    cpu_opt.load_state_dict(gpu_opt.state_dict())
    assert not any(v.is_cuda for v in cpu_opt.state_dict()["state"][0].values())
    gpu_opt.load_state_dict(cpu_opt.state_dict())
    assert all(v.is_cuda == (k != "step") for k, v in gpu_opt.state_dict()["state"][0].items())
