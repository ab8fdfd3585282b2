"""pipeflow.nn against torch.nn: the Module API (registration, hooks, traversal, modes,
dtype conversion, state_dict round trips, repr), every layer's forward and backward for
the same weights and input, default initialisation, nn.init, nn.utils and error messages.
Every test builds the same thing in both libraries and compares."""
import math
from collections import OrderedDict

import numpy as np
import pytest

import pipeflow as pf
import pipeflow.nn as pnn

torch = pytest.importorskip("torch", reason="torch (the ref extra) is the reference")
tnn = torch.nn

RTOL, ATOL = 1e-10, 1e-12


# --- helpers ------------------------------------------------------------------------------
def arr(t):
    """A numpy copy of a pipeflow or torch tensor."""
    if isinstance(t, torch.Tensor):
        return t.detach().cpu().numpy().copy()
    return np.array(t.detach().numpy(), copy=True)


def close(ours, theirs, rtol=RTOL, atol=ATOL):
    a, b = arr(ours), arr(theirs)
    assert a.shape == b.shape, (a.shape, b.shape)
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


def pf_state(torch_module):
    """torch state_dict -> the same keys holding pipeflow tensors."""
    return OrderedDict((k, pf.tensor(v.detach().cpu().numpy()))
                       for k, v in torch_module.state_dict().items())


def twin(make, dtype=True):
    """The same architecture `make(nn)` in torch and pipeflow, float64, with pipeflow's
    weights copied from torch through state_dict (strict: proves key compatibility)."""
    t = make(tnn)
    p = make(pnn)
    if dtype:
        t = t.double()
        p = p.double()
    result = p.load_state_dict(pf_state(t))
    assert list(result.missing_keys) == [] and list(result.unexpected_keys) == []
    assert list(p.state_dict()) == list(t.state_dict())
    return p, t


def run_both(p, t, shapes, seed=0):
    """Forward both modules on the same random float64 inputs, backward a random-weighted
    sum of the output; compare outputs, input grads and every parameter grad."""
    rng = np.random.default_rng(seed)
    xs = [rng.standard_normal(s) for s in shapes]
    px = [pf.tensor(x, requires_grad=True) for x in xs]
    tx = [torch.tensor(x, requires_grad=True) for x in xs]
    po, to = p(*px), t(*tx)
    close(po, to)
    w = rng.standard_normal(tuple(to.shape))
    (po * pf.tensor(w)).sum().backward()
    (to * torch.tensor(w)).sum().backward()
    for a, b in zip(px, tx):
        close(a.grad, b.grad)
    tparams = dict(t.named_parameters())
    pparams = dict(p.named_parameters())
    assert list(pparams) == list(tparams)
    for name, tp in tparams.items():
        assert pparams[name].grad is not None, name
        close(pparams[name].grad, tp.grad)
    return po, to


# --- 1. Module API ------------------------------------------------------------------------
class TwoLayerNet(pnn.Module):
    def __init__(self, d_in, h, d_out):
        super().__init__()
        self.linear1 = pnn.Linear(d_in, h)
        self.linear2 = pnn.Linear(h, d_out)

    def forward(self, x):
        return self.linear2(self.linear1(x).clamp(min=0))


def test_registration_on_assignment():
    class Net(pnn.Module):
        def __init__(self):
            super().__init__()
            self.w = pnn.Parameter(pf.ones(2, 3))
            self.register_buffer("stat", pf.zeros(3))
            self.sub = pnn.Linear(3, 4)
            self.plain = 5
            self.t = pf.zeros(2)  # a plain tensor is an attribute, not a parameter

        def forward(self, x):
            return self.sub(x @ self.w)

    net = Net()
    assert [n for n, _ in net.named_parameters()] == ["w", "sub.weight", "sub.bias"]
    assert [n for n, _ in net.named_buffers()] == ["stat"]
    assert [n for n, _ in net.named_children()] == ["sub"]
    assert list(net.state_dict()) == ["w", "stat", "sub.weight", "sub.bias"]
    assert net.plain == 5 and net.sub is list(net.children())[0]
    out = net(pf.ones(5, 2))
    assert tuple(out.shape) == (5, 4)
    # reassigning a registered parameter to None keeps the slot but drops it from lists
    net.w = None
    assert [n for n, _ in net.named_parameters()] == ["sub.weight", "sub.bias"]
    with pytest.raises(AttributeError):
        net.missing_attribute


def test_parameter_is_leaf_requiring_grad():
    p = pnn.Parameter(pf.zeros(3))
    assert p.requires_grad and p.is_leaf
    q = pnn.Parameter(pf.zeros(3), requires_grad=False)
    assert not q.requires_grad


def test_forward_not_overridden_raises():
    with pytest.raises(NotImplementedError):
        pnn.Module()(pf.ones(1))


def test_forward_pre_hook_and_forward_hook_replace_and_remove():
    lin = pnn.Linear(3, 2)
    calls = []

    def pre(module, args):
        calls.append("pre")
        assert module is lin and isinstance(args, tuple)
        return args[0] * 0  # replace the input

    def post(module, args, output):
        calls.append("post")
        return output + 100.0  # replace the output

    h1 = lin.register_forward_pre_hook(pre)
    h2 = lin.register_forward_hook(post)
    x = pf.randn(4, 3)
    out = lin(x)
    np.testing.assert_allclose(arr(out), np.broadcast_to(arr(lin.bias) + 100.0, (4, 2)))
    assert calls == ["pre", "post"]
    h1.remove()
    h2.remove()
    np.testing.assert_allclose(arr(lin(x)), arr(x) @ arr(lin.weight).T + arr(lin.bias))
    assert calls == ["pre", "post"]

    # a hook returning None leaves things alone
    seen = []
    h = lin.register_forward_hook(lambda m, a, o: seen.append(tuple(o.shape)))
    lin(x)
    assert seen == [(4, 2)]
    h.remove()


def test_pre_hook_may_replace_several_inputs():
    for nn, lib in ((pnn, pf), (tnn, torch)):
        b = nn.Bilinear(2, 3, 4)
        b.register_forward_pre_hook(lambda m, args: (args[0] * 0, args[1]))
        out = b(lib.ones(5, 2), lib.ones(5, 3))
        np.testing.assert_allclose(arr(out), np.broadcast_to(arr(b.bias), (5, 4)), rtol=1e-6)


def test_parameter_str_and_repr_like_torch():
    p = pnn.Parameter(pf.tensor([1.0, 2.0]))
    t = tnn.Parameter(torch.tensor([1.0, 2.0]))
    assert repr(p) == repr(t)
    assert str(p) == str(t)  # print(param) shows "Parameter containing:" in torch


def test_named_parameters_prefix_and_recurse():
    def make(nn):
        m = nn.Sequential(nn.Linear(2, 3), nn.Sequential(nn.Linear(3, 1)))
        m.register_parameter("scale", nn.Parameter(m[0].bias.detach().clone()))
        return m
    p, t = make(pnn), make(tnn)
    for kw in ({"prefix": "net"}, {"recurse": False}, {}):
        assert [n for n, _ in p.named_parameters(**kw)] == \
            [n for n, _ in t.named_parameters(**kw)], kw
    assert len(list(p.parameters(recurse=False))) == 1
    assert [n for n, _ in p.named_modules(prefix="m")] == \
        [n for n, _ in t.named_modules(prefix="m")]


def test_deepcopy_and_pickle_round_trip():
    import copy
    import pickle
    m = pnn.Sequential(pnn.Linear(2, 3), pnn.BatchNorm1d(3)).eval()
    for clone in (copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
        assert list(clone.state_dict()) == list(m.state_dict())
        assert clone[0].weight is not m[0].weight
        assert isinstance(clone[0].weight, pnn.Parameter) and clone[0].weight.requires_grad
        for (k, a), (_, b) in zip(clone.state_dict().items(), m.state_dict().items()):
            np.testing.assert_array_equal(arr(a), arr(b))
        x = pf.randn(4, 2)
        np.testing.assert_allclose(arr(clone(x)), arr(m(x)), rtol=1e-6)


def test_named_parameters_match_torch_names_and_shapes():
    def make(nn):
        return nn.Sequential(OrderedDict([
            ("conv", nn.Conv2d(3, 4, 3)), ("bn", nn.BatchNorm2d(4)), ("act", nn.ReLU()),
            ("blocks", nn.ModuleList([nn.Linear(4, 4), nn.LayerNorm(4)])),
            ("heads", nn.ModuleDict({"a": nn.Linear(4, 2), "b": nn.Embedding(5, 4)})),
        ]))
    p, t = make(pnn), make(tnn)
    pn = [(n, tuple(x.shape)) for n, x in p.named_parameters()]
    tn = [(n, tuple(x.shape)) for n, x in t.named_parameters()]
    assert pn == tn
    assert [n for n, _ in p.named_buffers()] == [n for n, _ in t.named_buffers()]
    assert [n for n, _ in p.named_modules()] == [n for n, _ in t.named_modules()]
    assert [type(m).__name__ for m in p.modules()] == [type(m).__name__ for m in t.modules()]
    assert [type(m).__name__ for m in p.children()] == [type(m).__name__ for m in t.children()]
    assert len(list(p.parameters())) == len(list(t.parameters()))
    assert len(list(p.buffers())) == len(list(t.buffers())) == 3


def test_shared_parameters_listed_once():
    def make(nn):
        a = nn.Linear(3, 3)
        b = nn.Linear(3, 3)
        b.weight = a.weight
        return nn.Sequential(a, b, a)
    p, t = make(pnn), make(tnn)
    assert [n for n, _ in p.named_parameters()] == [n for n, _ in t.named_parameters()]
    assert len(list(p.parameters())) == 3
    assert [n for n, _ in p.named_modules()] == [n for n, _ in t.named_modules()]
    assert set(p.state_dict()) == set(t.state_dict())


def test_reassigning_a_parameter_keeps_its_state_dict_position():
    # weight tying / re-creating a weight must not move the key (torch keeps the slot)
    def make(nn):
        a = nn.Linear(3, 3)
        b = nn.Linear(3, 3)
        b.weight = a.weight
        return nn.Sequential(a, b)
    assert list(make(pnn).state_dict()) == list(make(tnn).state_dict())
    p, t = pnn.Linear(2, 2), tnn.Linear(2, 2)
    p.weight = pnn.Parameter(pf.zeros(2, 2))
    t.weight = tnn.Parameter(torch.zeros(2, 2))
    assert [n for n, _ in p.named_parameters()] == [n for n, _ in t.named_parameters()]


def test_train_eval_propagate_and_change_behaviour():
    model = pnn.Sequential(pnn.Linear(4, 4), pnn.Dropout(0.5),
                           pnn.Sequential(pnn.BatchNorm1d(4)))
    assert all(m.training for m in model.modules())
    assert model.eval() is model
    assert not any(m.training for m in model.modules())
    x = pf.randn(8, 4)
    with pf.no_grad():
        a, b = model(x), model(x)
    np.testing.assert_array_equal(arr(a), arr(b))  # eval: deterministic
    assert model[2][0].num_batches_tracked.item() == 0
    model.train()
    assert all(m.training for m in model.modules())
    model(x)
    assert model[2][0].num_batches_tracked.item() == 1
    model.train(False)
    assert not model[1].training


def test_to_dtype_converts_floats_keeps_objects_and_optimizer_still_works():
    model = pnn.Sequential(pnn.Linear(3, 4), pnn.BatchNorm1d(4), pnn.Linear(4, 1))
    params = list(model.parameters())
    ids = [id(p) for p in params]
    assert model.to(pf.float64) is model
    assert [id(p) for p in model.parameters()] == ids
    assert all(p.dtype == pf.float64 for p in model.parameters())
    bn = model[1]
    assert bn.running_mean.dtype == pf.float64 and bn.running_var.dtype == pf.float64
    assert bn.num_batches_tracked.dtype == pf.int64
    assert dict(model.state_dict())["1.num_batches_tracked"].dtype == pf.int64
    # an "optimizer" holding the old references still updates the model
    x = pf.randn(8, 3, dtype=pf.float64)
    before = arr(model(x))
    model.zero_grad()
    model(x).pow(2).sum().backward()
    for p in params:
        assert p.grad is not None and p.grad.dtype == pf.float64
        p.data -= 0.1 * p.grad.data
    model.eval()
    model.train()
    assert not np.allclose(arr(model(x)), before)
    model.float()
    assert all(p.dtype == pf.float32 for p in model.parameters())
    assert bn.num_batches_tracked.dtype == pf.int64


def test_zero_grad_set_to_none_and_zeros():
    lin = pnn.Linear(3, 2)
    lin(pf.randn(4, 3)).sum().backward()
    assert lin.weight.grad is not None
    lin.zero_grad(set_to_none=False)
    assert lin.weight.grad is not None
    np.testing.assert_array_equal(arr(lin.weight.grad), np.zeros((2, 3)))
    np.testing.assert_array_equal(arr(lin.bias.grad), np.zeros(2))
    lin(pf.randn(4, 3)).sum().backward()
    lin.zero_grad()  # default: set_to_none=True, as torch 2.x
    assert lin.weight.grad is None and lin.bias.grad is None


def test_apply_custom_init_and_requires_grad_():
    model = pnn.Sequential(pnn.Linear(3, 4), pnn.ReLU(), pnn.Sequential(pnn.Linear(4, 2)))
    visited = []

    def init_fn(m):
        visited.append(type(m).__name__)
        if isinstance(m, pnn.Linear):
            pnn.init.constant_(m.weight, 0.5)
            pnn.init.zeros_(m.bias)
    assert model.apply(init_fn) is model
    tmodel = tnn.Sequential(tnn.Linear(3, 4), tnn.ReLU(), tnn.Sequential(tnn.Linear(4, 2)))
    tvisited = []
    tmodel.apply(lambda m: tvisited.append(type(m).__name__))
    assert visited == tvisited  # children first, self last
    for m in model.modules():
        if isinstance(m, pnn.Linear):
            assert (arr(m.weight) == 0.5).all() and (arr(m.bias) == 0).all()
    assert model.requires_grad_(False) is model
    assert not any(p.requires_grad for p in model.parameters())
    out = model(pf.randn(2, 3))
    assert not out.requires_grad
    model.requires_grad_()
    assert all(p.requires_grad for p in model.parameters())


REPR_LAYERS = {
    "linear": lambda nn: nn.Linear(3, 4),
    "linear_nobias": lambda nn: nn.Linear(3, 4, bias=False),
    "bilinear": lambda nn: nn.Bilinear(2, 3, 4),
    "conv2d": lambda nn: nn.Conv2d(3, 8, kernel_size=3, padding=1),
    "conv2d_opts": lambda nn: nn.Conv2d(4, 8, (3, 5), stride=(2, 1), padding=(1, 2),
                                        dilation=2, groups=2, bias=False),
    "conv2d_same": lambda nn: nn.Conv2d(3, 3, 3, padding="same"),
    "conv2d_valid": lambda nn: nn.Conv2d(3, 3, 3, padding="valid"),
    "conv1d": lambda nn: nn.Conv1d(3, 6, 3, stride=2),
    "convT2d": lambda nn: nn.ConvTranspose2d(4, 2, 3, stride=2, padding=1, output_padding=1),
    "maxpool": lambda nn: nn.MaxPool2d(2),
    "maxpool_opts": lambda nn: nn.MaxPool2d(3, stride=2, padding=1, dilation=2,
                                            ceil_mode=True),
    "avgpool": lambda nn: nn.AvgPool2d(3, stride=1, padding=1),
    "adaptive_avg": lambda nn: nn.AdaptiveAvgPool2d((1, 1)),
    "adaptive_max_none": lambda nn: nn.AdaptiveMaxPool2d((None, 3)),
    "batchnorm2d": lambda nn: nn.BatchNorm2d(8),
    "batchnorm1d_opts": lambda nn: nn.BatchNorm1d(5, momentum=None, affine=False,
                                                  track_running_stats=False),
    "layernorm": lambda nn: nn.LayerNorm(10),
    "layernorm_noaffine": lambda nn: nn.LayerNorm((4, 5), elementwise_affine=False),
    "groupnorm": lambda nn: nn.GroupNorm(2, 4),
    "lrn": lambda nn: nn.LocalResponseNorm(2),
    "relu": lambda nn: nn.ReLU(),
    "relu_inplace": lambda nn: nn.ReLU(inplace=True),
    "leaky_relu": lambda nn: nn.LeakyReLU(0.2),
    "gelu": lambda nn: nn.GELU(),
    "gelu_tanh": lambda nn: nn.GELU(approximate="tanh"),
    "sigmoid": lambda nn: nn.Sigmoid(),
    "tanh": lambda nn: nn.Tanh(),
    "softplus": lambda nn: nn.Softplus(),
    "softmax": lambda nn: nn.Softmax(dim=1),
    "log_softmax": lambda nn: nn.LogSoftmax(dim=-1),
    "identity": lambda nn: nn.Identity(),
    "flatten": lambda nn: nn.Flatten(),
    "unflatten": lambda nn: nn.Unflatten(1, (2, 5)),
    "dropout": lambda nn: nn.Dropout(0.25),
    "dropout2d": lambda nn: nn.Dropout2d(),
    "embedding": lambda nn: nn.Embedding(10, 3),
    "embedding_padding": lambda nn: nn.Embedding(10, 3, padding_idx=-1),
    "cnn_without_norm": lambda nn: nn.Sequential(
        nn.Conv2d(3, 8, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, stride=2, bias=False), nn.ReLU(inplace=True), nn.AvgPool2d(2),
        nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), nn.Linear(16, 10), nn.Dropout(0.25),
        nn.Linear(10, 2, bias=False)),
    "cnn_with_batchnorm": lambda nn: nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(8, 2)),
    "nested_containers": lambda nn: nn.Sequential(OrderedDict([
        ("features", nn.Sequential(nn.Linear(2, 2), nn.Tanh())),
        ("blocks", nn.ModuleList([nn.ReLU(), nn.Linear(2, 2)])),
        ("heads", nn.ModuleDict({"x": nn.Tanh()})), ("empty", nn.Sequential())])),
    "modulelist_repeated_blocks": lambda nn: nn.ModuleList(
        [nn.Linear(2, 2) for _ in range(3)] + [nn.ReLU(), nn.ReLU()]),
}


@pytest.mark.parametrize("name", list(REPR_LAYERS))
def test_repr_matches_torch(name):
    make = REPR_LAYERS[name]
    assert str(make(pnn)) == str(make(tnn))
    assert repr(make(pnn)) == repr(make(tnn))


def test_state_dict_keys_order_and_values():
    def make(nn):
        return nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(),
                             nn.Linear(8, 3), nn.BatchNorm1d(3))
    p, t = make(pnn), make(tnn)
    assert list(p.state_dict()) == list(t.state_dict())
    assert "1.num_batches_tracked" in p.state_dict()
    for k, v in p.state_dict().items():
        assert isinstance(v, pf.Tensor), k
        assert tuple(v.shape) == tuple(t.state_dict()[k].shape), k
    sd = p.state_dict()
    assert not sd["0.weight"].requires_grad  # detached, as torch
    assert p.state_dict(keep_vars=True)["0.weight"] is p[0].weight


def test_load_torch_state_dict_gives_identical_outputs():
    def make(nn):
        return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                             nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 3 * 3, 5),
                             nn.LayerNorm(5), nn.Tanh(), nn.Linear(5, 2))
    torch.manual_seed(0)
    t = make(tnn).double()
    x = np.random.default_rng(1).standard_normal((3, 2, 6, 6))
    t.train()
    t(torch.tensor(x))  # give the running stats non-default values
    t.eval()
    p = make(pnn).double()
    res = p.load_state_dict(pf_state(t), strict=True)
    assert list(res.missing_keys) == [] and list(res.unexpected_keys) == []
    assert p[1].num_batches_tracked.item() == 1
    p.eval()
    close(p(pf.tensor(x)), t(torch.tensor(x)))


def test_strict_load_reports_missing_unexpected_and_shape_in_one_error():
    p = pnn.Sequential(pnn.Linear(3, 2), pnn.Linear(2, 1))
    sd = pf_state(tnn.Sequential(tnn.Linear(3, 2), tnn.Linear(2, 1)))
    del sd["1.bias"]
    sd["2.weight"] = pf.zeros(1)
    sd["0.weight"] = pf.zeros(5, 5)
    with pytest.raises(RuntimeError) as err:
        p.load_state_dict(sd)
    msg = str(err.value)
    assert "Missing key" in msg and '"1.bias"' in msg
    assert "Unexpected key" in msg and '"2.weight"' in msg
    assert "size mismatch" in msg and "0.weight" in msg
    # torch raises the same three kinds for the same dict
    tsd = OrderedDict((k, torch.tensor(arr(v))) for k, v in sd.items())
    with pytest.raises(RuntimeError, match="(?s)Missing key.*Unexpected key.*size mismatch"):
        tnn.Sequential(tnn.Linear(3, 2), tnn.Linear(2, 1)).load_state_dict(tsd)


def test_non_strict_load_returns_keys_and_still_raises_on_shape():
    t = tnn.Sequential(tnn.Linear(3, 2), tnn.Linear(2, 1))
    p = pnn.Sequential(pnn.Linear(3, 2), pnn.Linear(2, 1))
    sd = pf_state(t)
    del sd["1.bias"]
    sd["extra"] = pf.zeros(1)
    res = p.load_state_dict(sd, strict=False)
    tsd = t.state_dict()
    del tsd["1.bias"]
    tsd["extra"] = torch.zeros(1)
    tres = tnn.Sequential(tnn.Linear(3, 2), tnn.Linear(2, 1)).load_state_dict(tsd, strict=False)
    assert list(res.missing_keys) == list(tres.missing_keys) == ["1.bias"]
    assert list(res.unexpected_keys) == list(tres.unexpected_keys) == ["extra"]
    missing, unexpected = res
    assert missing == ["1.bias"]
    close(p[0].weight, t[0].weight, rtol=1e-6)  # the present keys were loaded
    sd["0.weight"] = pf.zeros(2, 2)
    with pytest.raises(RuntimeError, match="size mismatch"):
        p.load_state_dict(sd, strict=False)


def test_non_persistent_buffer_excluded_from_state_dict():
    def build(nn, lib):
        m = nn.Module()
        m.register_buffer("kept", lib.zeros(2))
        m.register_buffer("scratch", lib.ones(2), persistent=False)
        return m
    p, t = build(pnn, pf), build(tnn, torch)
    assert list(p.state_dict()) == list(t.state_dict()) == ["kept"]
    assert [n for n, _ in p.named_buffers()] == [n for n, _ in t.named_buffers()]
    p.load_state_dict({"kept": pf.ones(2)})  # strict: scratch is not missing
    assert (arr(p.kept) == 1).all()


def test_sequential_indexing_slicing_len_iter_append():
    def make(nn):
        return nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 4), nn.Tanh())
    p, t = make(pnn), make(tnn)
    assert len(p) == len(t) == 4
    assert isinstance(p[0], pnn.Linear) and isinstance(p[-1], pnn.Tanh)
    assert p[-2] is p[2]
    sub = p[1:3]
    assert isinstance(sub, pnn.Sequential) and len(sub) == 2
    assert sub[1] is p[2]
    assert str(sub) == str(t[1:3])
    assert [n for n, _ in sub.named_parameters()] == [n for n, _ in t[1:3].named_parameters()]
    assert [type(m).__name__ for m in p] == [type(m).__name__ for m in t]
    with pytest.raises(IndexError):
        p[4]
    p.append(pnn.Linear(4, 1))
    t.append(tnn.Linear(4, 1))
    assert len(p) == 5 and list(p.state_dict()) == list(t.state_dict())
    assert tuple(p(pf.randn(6, 2)).shape) == (6, 1)
    p[0] = pnn.Linear(2, 3, bias=False)
    t[0] = tnn.Linear(2, 3, bias=False)
    assert list(p.state_dict()) == list(t.state_dict())
    od = pnn.Sequential(OrderedDict([("fc", pnn.Linear(2, 2)), ("act", pnn.ReLU())]))
    assert list(od.state_dict()) == ["fc.weight", "fc.bias"] and od.fc is od[0]


def test_sequential_del_renumbers_like_torch():
    def make(nn):
        return nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 4), nn.Tanh())
    p, t = make(pnn), make(tnn)
    del p[1]
    del t[1]
    assert len(p) == len(t) == 3
    assert [n for n, _ in p.named_children()] == [n for n, _ in t.named_children()]  # 0, 1, 2
    assert list(p.state_dict()) == list(t.state_dict())
    assert str(p) == str(t)


def test_modulelist_and_moduledict():
    ml = pnn.ModuleList([pnn.Linear(2, 2) for _ in range(3)])
    tl = tnn.ModuleList([tnn.Linear(2, 2) for _ in range(3)])
    assert len(ml) == 3 and ml[-1] is ml[2]
    ml.append(pnn.ReLU())
    ml.extend([pnn.Tanh()])
    tl.append(tnn.ReLU())
    tl.extend([tnn.Tanh()])
    assert [n for n, _ in ml.named_parameters()] == [n for n, _ in tl.named_parameters()]
    assert isinstance(ml[1:3], pnn.ModuleList) and len(ml[1:3]) == 2
    assert [type(m).__name__ for m in ml] == [type(m).__name__ for m in tl]

    md = pnn.ModuleDict({"enc": pnn.Linear(2, 3), "dec": pnn.Linear(3, 2)})
    td = tnn.ModuleDict({"enc": tnn.Linear(2, 3), "dec": tnn.Linear(3, 2)})
    md["act"] = pnn.ReLU()
    td["act"] = tnn.ReLU()
    assert list(md.keys()) == list(td.keys()) == ["enc", "dec", "act"]
    assert "enc" in md and "nope" not in md and len(md) == 3
    assert list(md) == list(td)
    assert [n for n, _ in md.named_parameters()] == [n for n, _ in td.named_parameters()]
    assert str(md) == str(td)
    x = pf.randn(4, 2)
    assert tuple(md["dec"](md["act"](md["enc"](x))).shape) == (4, 2)


def test_two_layer_net_trains_with_manual_sgd():
    pf.manual_seed(0)
    n, d_in, h, d_out = 64, 10, 32, 3
    x = pf.randn(n, d_in)
    y = (x @ pf.randn(d_in, d_out)).tanh()  # a learnable target
    model = TwoLayerNet(d_in, h, d_out)
    assert [n for n, _ in model.named_parameters()] == [
        "linear1.weight", "linear1.bias", "linear2.weight", "linear2.bias"]
    lr, losses = 0.1, []
    for _ in range(50):
        loss = ((model(x) - y) ** 2).mean()
        losses.append(loss.item())
        model.zero_grad()
        loss.backward()
        for p in model.parameters():
            p.data -= lr * p.grad.data
    assert losses[-1] < 0.5 * losses[0]
    assert all(b <= a + 1e-6 for a, b in zip(losses, losses[1:]))


# --- 2. layers: forward and backward against torch ----------------------------------------
LAYERS = [
    ("linear", lambda nn: nn.Linear(5, 3), [(4, 5)]),
    ("linear_3d_nobias", lambda nn: nn.Linear(5, 3, bias=False), [(2, 4, 5)]),
    ("bilinear", lambda nn: nn.Bilinear(3, 4, 2), [(5, 3), (5, 4)]),
    ("bilinear_nobias", lambda nn: nn.Bilinear(3, 4, 2, bias=False), [(2, 5, 3), (2, 5, 4)]),
    ("conv1d", lambda nn: nn.Conv1d(3, 4, 3), [(2, 3, 10)]),
    ("conv1d_opts", lambda nn: nn.Conv1d(4, 6, 3, stride=2, padding=1, dilation=2, groups=2),
     [(2, 4, 11)]),
    ("conv1d_same", lambda nn: nn.Conv1d(2, 3, 4, padding="same"), [(2, 2, 9)]),
    ("conv2d", lambda nn: nn.Conv2d(3, 4, 3), [(2, 3, 7, 7)]),
    ("conv2d_stride_pad", lambda nn: nn.Conv2d(3, 4, 3, stride=2, padding=1), [(2, 3, 8, 7)]),
    ("conv2d_tuple", lambda nn: nn.Conv2d(3, 4, (3, 2), stride=(2, 1), padding=(1, 2)),
     [(2, 3, 7, 6)]),
    ("conv2d_same", lambda nn: nn.Conv2d(3, 4, 3, padding="same"), [(2, 3, 6, 5)]),
    ("conv2d_same_even_dilated", lambda nn: nn.Conv2d(2, 3, (4, 3), padding="same",
                                                      dilation=(1, 2)), [(1, 2, 7, 8)]),
    ("conv2d_valid", lambda nn: nn.Conv2d(3, 2, 3, padding="valid"), [(2, 3, 6, 6)]),
    ("conv2d_dilation", lambda nn: nn.Conv2d(3, 2, 3, dilation=2, padding=1), [(2, 3, 9, 8)]),
    ("conv2d_groups", lambda nn: nn.Conv2d(4, 6, 3, groups=2, padding=1), [(2, 4, 5, 5)]),
    ("conv2d_depthwise", lambda nn: nn.Conv2d(4, 8, 3, groups=4), [(2, 4, 6, 6)]),
    ("conv2d_nobias", lambda nn: nn.Conv2d(3, 4, 2, bias=False, stride=3), [(2, 3, 8, 8)]),
    ("convT2d", lambda nn: nn.ConvTranspose2d(3, 4, 3), [(2, 3, 4, 4)]),
    ("convT2d_stride_pad_outpad", lambda nn: nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1,
                                                                output_padding=1),
     [(2, 3, 4, 5)]),
    ("convT2d_groups", lambda nn: nn.ConvTranspose2d(4, 6, (3, 2), stride=(2, 3), groups=2),
     [(2, 4, 3, 4)]),
    ("convT2d_nobias_dilation", lambda nn: nn.ConvTranspose2d(2, 3, 3, bias=False, dilation=2,
                                                              padding=(2, 1)), [(1, 2, 5, 4)]),
    ("maxpool", lambda nn: nn.MaxPool2d(2), [(2, 3, 6, 6)]),
    ("maxpool_ceil", lambda nn: nn.MaxPool2d(3, stride=2, ceil_mode=True), [(2, 2, 8, 7)]),
    ("maxpool_padding", lambda nn: nn.MaxPool2d(3, stride=2, padding=1), [(2, 2, 7, 6)]),
    ("maxpool_dilation", lambda nn: nn.MaxPool2d(2, stride=1, dilation=2), [(1, 2, 6, 7)]),
    ("maxpool_all", lambda nn: nn.MaxPool2d((3, 2), stride=(2, 1), padding=(1, 1),
                                            dilation=(1, 2), ceil_mode=True), [(2, 2, 8, 7)]),
    ("avgpool", lambda nn: nn.AvgPool2d(2), [(2, 3, 6, 6)]),
    ("avgpool_pad", lambda nn: nn.AvgPool2d(3, stride=2, padding=1), [(2, 2, 7, 6)]),
    ("avgpool_ceil", lambda nn: nn.AvgPool2d(3, stride=2, ceil_mode=True), [(2, 2, 8, 7)]),
    ("avgpool_exclude_pad", lambda nn: nn.AvgPool2d(3, stride=2, padding=1,
                                                    count_include_pad=False), [(2, 2, 7, 6)]),
    ("avgpool_ceil_exclude", lambda nn: nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True,
                                                     count_include_pad=False), [(1, 2, 8, 8)]),
    ("avgpool_divisor", lambda nn: nn.AvgPool2d(2, divisor_override=3), [(2, 2, 6, 5)]),
    ("adaptive_avg_divides", lambda nn: nn.AdaptiveAvgPool2d(2), [(2, 3, 8, 6)]),
    ("adaptive_avg_uneven", lambda nn: nn.AdaptiveAvgPool2d((3, 4)), [(2, 3, 7, 5)]),
    ("adaptive_avg_none", lambda nn: nn.AdaptiveAvgPool2d((None, 3)), [(2, 3, 5, 7)]),
    ("adaptive_avg_global", lambda nn: nn.AdaptiveAvgPool2d(1), [(2, 3, 5, 7)]),
    ("adaptive_max_divides", lambda nn: nn.AdaptiveMaxPool2d(2), [(2, 3, 8, 6)]),
    ("adaptive_max_uneven", lambda nn: nn.AdaptiveMaxPool2d((3, 4)), [(2, 3, 7, 5)]),
    ("adaptive_max_none", lambda nn: nn.AdaptiveMaxPool2d((4, None)), [(2, 3, 5, 7)]),
    ("batchnorm1d_2d", lambda nn: nn.BatchNorm1d(4), [(8, 4)]),
    ("batchnorm1d_3d", lambda nn: nn.BatchNorm1d(4), [(3, 4, 5)]),
    ("batchnorm2d", lambda nn: nn.BatchNorm2d(3), [(4, 3, 5, 5)]),
    ("batchnorm2d_noaffine", lambda nn: nn.BatchNorm2d(3, affine=False), [(4, 3, 3, 2)]),
    ("batchnorm2d_untracked", lambda nn: nn.BatchNorm2d(3, track_running_stats=False),
     [(4, 3, 3, 2)]),
    ("layernorm", lambda nn: nn.LayerNorm(5), [(3, 4, 5)]),
    ("layernorm_2d_shape", lambda nn: nn.LayerNorm((4, 5)), [(3, 4, 5)]),
    ("layernorm_noaffine", lambda nn: nn.LayerNorm(5, elementwise_affine=False), [(3, 5)]),
    ("layernorm_nobias", lambda nn: nn.LayerNorm(5, bias=False), [(3, 5)]),
    ("groupnorm", lambda nn: nn.GroupNorm(2, 4), [(3, 4, 5, 5)]),
    ("groupnorm_one", lambda nn: nn.GroupNorm(1, 4), [(3, 4, 3)]),
    ("groupnorm_instance", lambda nn: nn.GroupNorm(4, 4, affine=False), [(3, 4, 3, 2)]),
    ("lrn", lambda nn: nn.LocalResponseNorm(3), [(2, 6, 4, 4)]),
    ("lrn_even", lambda nn: nn.LocalResponseNorm(2, alpha=0.1, beta=0.5, k=2.0), [(2, 5, 3)]),
    ("relu", lambda nn: nn.ReLU(), [(4, 5)]),
    ("leaky_relu", lambda nn: nn.LeakyReLU(0.2), [(4, 5)]),
    ("leaky_relu_default", lambda nn: nn.LeakyReLU(), [(4, 5)]),
    ("gelu", lambda nn: nn.GELU(), [(4, 5)]),
    ("gelu_tanh", lambda nn: nn.GELU(approximate="tanh"), [(4, 5)]),
    ("sigmoid", lambda nn: nn.Sigmoid(), [(4, 5)]),
    ("tanh", lambda nn: nn.Tanh(), [(4, 5)]),
    ("softplus", lambda nn: nn.Softplus(beta=2.0), [(4, 5)]),
    ("softmax", lambda nn: nn.Softmax(dim=1), [(3, 4, 5)]),
    ("softmax_last", lambda nn: nn.Softmax(dim=-1), [(3, 4, 5)]),
    ("log_softmax", lambda nn: nn.LogSoftmax(dim=1), [(4, 5)]),
    ("log_softmax_0", lambda nn: nn.LogSoftmax(dim=0), [(4, 5)]),
    ("identity", lambda nn: nn.Identity(), [(4, 5)]),
    ("flatten", lambda nn: nn.Flatten(), [(2, 3, 4, 5)]),
    ("flatten_range", lambda nn: nn.Flatten(0, 2), [(2, 3, 4, 5)]),
    ("unflatten", lambda nn: nn.Unflatten(1, (2, 3)), [(4, 6, 2)]),
    ("dropout_eval_identity", lambda nn: nn.Dropout(0.5).eval(), [(4, 5)]),
    ("dropout2d_eval_identity", lambda nn: nn.Dropout2d(0.3).eval(), [(2, 3, 4, 4)]),
]


@pytest.mark.parametrize("make,shapes", [c[1:] for c in LAYERS], ids=[c[0] for c in LAYERS])
def test_layer_forward_backward_matches_torch(make, shapes):
    p, t = twin(make)
    assert p.training == t.training
    run_both(p, t, shapes)
    for (name, a), (_, b) in zip(p.named_buffers(), t.named_buffers()):
        close(a, b)  # running stats updated alike


def test_maxpool_return_indices_matches_torch():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 7, 8))
    for kw in ({"kernel_size": 2}, {"kernel_size": 3, "stride": 2, "padding": 1,
                                    "ceil_mode": True}, {"kernel_size": 2, "dilation": 2}):
        p = pnn.MaxPool2d(return_indices=True, **kw)
        t = tnn.MaxPool2d(return_indices=True, **kw)
        px, tx = pf.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        (po, pi), (to, ti) = p(px), t(tx)
        close(po, to)
        np.testing.assert_array_equal(arr(pi), arr(ti))
        assert pi.dtype == pf.int64
        w = rng.standard_normal(tuple(to.shape))
        (po * pf.tensor(w)).sum().backward()
        (to * torch.tensor(w)).sum().backward()
        close(px.grad, tx.grad)


def test_adaptive_max_pool_return_indices_matches_torch():
    x = np.random.default_rng(4).standard_normal((2, 3, 7, 5))
    (po, pi) = pnn.AdaptiveMaxPool2d((3, 2), return_indices=True)(pf.tensor(x))
    (to, ti) = tnn.AdaptiveMaxPool2d((3, 2), return_indices=True)(torch.tensor(x))
    close(po, to)
    np.testing.assert_array_equal(arr(pi), arr(ti))


@pytest.mark.parametrize("make,shape", [
    (lambda nn: nn.BatchNorm1d(4), (8, 4)),
    (lambda nn: nn.BatchNorm1d(4, momentum=0.3), (3, 4, 5)),
    (lambda nn: nn.BatchNorm2d(3), (4, 3, 5, 5)),
    (lambda nn: nn.BatchNorm2d(3, momentum=None), (4, 3, 2, 3)),
    (lambda nn: nn.BatchNorm2d(3, affine=False, eps=1e-3), (4, 3, 2, 3)),
], ids=["bn1d_2d", "bn1d_3d_mom", "bn2d", "bn2d_cumulative", "bn2d_noaffine"])
def test_batchnorm_three_train_steps_then_eval(make, shape):
    p, t = twin(make)
    for step in range(3):
        run_both(p, t, [shape], seed=10 + step)
        for name, tb in t.named_buffers():
            close(dict(p.named_buffers())[name], tb)
        p.zero_grad()
        t.zero_grad()
    assert p.num_batches_tracked.item() == t.num_batches_tracked.item() == 3
    assert p.num_batches_tracked.dtype == pf.int64
    p.eval()
    t.eval()
    _, to = run_both(p, t, [shape], seed=99)
    assert p.num_batches_tracked.item() == 3  # eval does not count
    # eval normalises with the running statistics, not the batch's
    x = np.random.default_rng(5).standard_normal(shape)
    with pf.no_grad():
        o = arr(p(pf.tensor(x)))
    sh = (1, -1) + (1,) * (len(shape) - 2)
    expect = (x - arr(p.running_mean).reshape(sh)) / np.sqrt(arr(p.running_var).reshape(sh)
                                                             + p.eps)
    if p.weight is not None:
        expect = expect * arr(p.weight).reshape(sh) + arr(p.bias).reshape(sh)
    np.testing.assert_allclose(o, expect, rtol=1e-10)


def test_batchnorm_momentum_none_is_cumulative_average():
    p = pnn.BatchNorm1d(2, momentum=None).double()
    rng = np.random.default_rng(6)
    batches = [rng.standard_normal((5, 2)) + i for i in range(4)]
    for b in batches:
        p(pf.tensor(b))
    np.testing.assert_allclose(arr(p.running_mean), np.mean([b.mean(0) for b in batches], 0),
                               rtol=1e-10)
    np.testing.assert_allclose(arr(p.running_var),
                               np.mean([b.var(0, ddof=1) for b in batches], 0), rtol=1e-10)


def test_batchnorm_untracked_has_no_buffers_and_uses_batch_stats_in_eval():
    p, t = twin(lambda nn: nn.BatchNorm2d(3, track_running_stats=False))
    assert list(p.state_dict()) == list(t.state_dict()) == ["weight", "bias"]
    assert list(p.buffers()) == []
    p.eval()
    t.eval()
    run_both(p, t, [(4, 3, 2, 2)])


def test_dropout_train_statistics_and_scaling():
    pf.manual_seed(0)
    for p_drop in (0.2, 0.5, 0.8):
        d = pnn.Dropout(p_drop)
        x = pf.ones(200, 500, requires_grad=True)
        out = d(x)
        o = arr(out)
        zero_frac = (o == 0).mean()
        assert abs(zero_frac - p_drop) < 0.01, (p_drop, zero_frac)
        np.testing.assert_allclose(o[o != 0], 1 / (1 - p_drop), rtol=1e-6)
        out.sum().backward()
        np.testing.assert_allclose(arr(x.grad), o, rtol=1e-6)  # grad goes through the mask
        d.eval()
        x2 = pf.randn(3, 4)
        np.testing.assert_array_equal(arr(d(x2)), arr(x2))
    assert (arr(pnn.Dropout(0.0)(pf.ones(10))) == 1).all()
    assert (arr(pnn.Dropout(1.0)(pf.ones(10))) == 0).all()
    with pytest.raises(ValueError):
        pnn.Dropout(1.5)
    with pytest.raises(ValueError):
        tnn.Dropout(1.5)


def test_dropout2d_zeroes_whole_channels():
    pf.manual_seed(1)
    d = pnn.Dropout2d(0.4)
    o = arr(d(pf.ones(40, 50, 3, 3)))
    per_channel = o.reshape(40, 50, 9)
    zero = (per_channel == 0).all(-1)
    kept = (per_channel == 1 / 0.6).all(-1)
    assert (zero | kept).all()
    assert abs(zero.mean() - 0.4) < 0.05
    d.eval()
    x = pf.randn(2, 3, 4, 4)
    np.testing.assert_array_equal(arr(d(x)), arr(x))


def test_embedding_matches_torch_padding_and_repeated_indices():
    for padding_idx in (None, 1, -1):
        p, t = twin(lambda nn: nn.Embedding(6, 3, padding_idx=padding_idx))
        assert p.padding_idx == t.padding_idx
        idx = np.array([[0, 1, 2, 1], [5, 1, 0, 0]])
        po = p(pf.tensor(idx))
        to = t(torch.tensor(idx))
        close(po, to)
        w = np.random.default_rng(0).standard_normal(tuple(to.shape))
        (po * pf.tensor(w)).sum().backward()
        (to * torch.tensor(w)).sum().backward()
        close(p.weight.grad, t.weight.grad)
        g = arr(p.weight.grad)
        if padding_idx is not None:
            assert (g[padding_idx % 6] == 0).all()
        assert (g[3] == 0).all() and (g[4] == 0).all()
        if padding_idx is None:  # index 0 appears 3 times: grads accumulate
            np.testing.assert_allclose(g[0], w[0, 0] + w[1, 2] + w[1, 3], rtol=1e-10)


def test_embedding_default_padding_row_is_zero():
    e = pnn.Embedding(5, 4, padding_idx=2)
    assert (arr(e.weight)[2] == 0).all()
    assert tuple(e.weight.shape) == (5, 4)


# --- 3. initialisation --------------------------------------------------------------------
@pytest.mark.parametrize("make", [
    lambda nn: nn.Linear(50, 40), lambda nn: nn.Conv2d(6, 32, 3),
    lambda nn: nn.Conv1d(4, 16, 5), lambda nn: nn.ConvTranspose2d(8, 12, 3),
    lambda nn: nn.Conv2d(8, 16, 3, groups=4), lambda nn: nn.Bilinear(20, 5, 30),
], ids=["linear", "conv2d", "conv1d", "convT2d", "conv2d_groups", "bilinear"])
def test_default_init_shapes_and_bounds_like_torch(make):
    p, t = make(pnn), make(tnn)
    assert [(n, tuple(x.shape)) for n, x in p.named_parameters()] == \
        [(n, tuple(x.shape)) for n, x in t.named_parameters()]
    assert all(x.dtype == pf.float32 for x in p.parameters())
    w = arr(p.weight)
    if isinstance(p, pnn.Bilinear):
        bound = 1 / math.sqrt(w.shape[1])
    else:
        fan_in = int(np.prod(t.weight.shape[1:]))  # weight.size(1) * receptive field
        bound = 1 / math.sqrt(fan_in)  # kaiming_uniform(a=sqrt(5)) == U(+-1/sqrt(fan_in))
    assert np.abs(w).max() <= bound + 1e-7
    assert np.abs(w).max() > 0.9 * bound  # spread up to the bound: uniform, not constant
    assert abs(w.mean()) < 0.2 * bound
    np.testing.assert_allclose(w.std(), bound / math.sqrt(3), rtol=0.15)
    tb = t.bias.detach().numpy()
    b = arr(p.bias)
    assert np.abs(b).max() <= bound + 1e-7
    assert np.abs(tb).max() <= bound + 1e-7  # same bound as torch uses
    assert len(np.unique(b)) == b.size


def test_default_init_norm_and_embedding():
    for make in (lambda nn: nn.BatchNorm2d(5), lambda nn: nn.BatchNorm1d(5),
                 lambda nn: nn.LayerNorm((2, 5)), lambda nn: nn.GroupNorm(1, 5)):
        p, t = make(pnn), make(tnn)
        for (n, a), (m, b) in zip(p.state_dict().items(), t.state_dict().items()):
            assert n == m
            np.testing.assert_array_equal(arr(a), arr(b))
            assert a.dtype.name == str(b.dtype).split(".")[-1], n
    e = arr(pnn.Embedding(300, 100).weight)
    assert abs(e.mean()) < 0.02 and abs(e.std() - 1) < 0.02


def test_calculate_gain_matches_torch():
    for nl in ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
               "conv_transpose3d", "sigmoid", "tanh", "relu", "selu", "leaky_relu"):
        assert pnn.init.calculate_gain(nl) == pytest.approx(tnn.init.calculate_gain(nl))
    for slope in (0, 0.2, 1, math.sqrt(5)):
        assert pnn.init.calculate_gain("leaky_relu", slope) == pytest.approx(
            tnn.init.calculate_gain("leaky_relu", slope))
    with pytest.raises(ValueError):
        pnn.init.calculate_gain("softsign_unknown")


def _std_bound(kind, shape, **kw):
    """torch's std (normal) or bound (uniform) for an initialiser, from its formulas."""
    t = torch.empty(*shape)
    fan_in, fan_out = tnn.init._calculate_fan_in_and_fan_out(t)
    if kind.startswith("xavier"):
        std = kw.get("gain", 1.0) * math.sqrt(2.0 / (fan_in + fan_out))
    else:
        fan = fan_in if kw.get("mode", "fan_in") == "fan_in" else fan_out
        std = tnn.init.calculate_gain(kw.get("nonlinearity", "leaky_relu"),
                                      kw.get("a", 0)) / math.sqrt(fan)
    return std, math.sqrt(3.0) * std


@pytest.mark.parametrize("fn,shape,kw", [
    ("xavier_uniform_", (200, 300), {}),
    ("xavier_uniform_", (64, 32, 3, 3), {"gain": 2.0}),
    ("xavier_normal_", (200, 300), {}),
    ("xavier_normal_", (40, 30, 5), {"gain": 0.5}),
    ("kaiming_uniform_", (200, 300), {}),
    ("kaiming_uniform_", (64, 32, 3, 3), {"mode": "fan_out", "nonlinearity": "relu"}),
    ("kaiming_uniform_", (300, 200), {"a": math.sqrt(5)}),
    ("kaiming_normal_", (200, 300), {"nonlinearity": "relu"}),
    ("kaiming_normal_", (64, 32, 3, 3), {"mode": "fan_out", "nonlinearity": "tanh"}),
    ("kaiming_normal_", (200, 300), {"a": 0.2, "nonlinearity": "leaky_relu"}),
])
def test_init_distributions_like_torch(fn, shape, kw):
    pf.manual_seed(0)
    t = pf.empty(*shape)
    assert getattr(pnn.init, fn)(t, **kw) is t
    a = arr(t)
    std, bound = _std_bound(fn, shape, **kw)
    if fn.endswith("uniform_"):
        assert np.abs(a).max() <= bound * (1 + 1e-6)
        assert np.abs(a).max() > 0.98 * bound
    np.testing.assert_allclose(a.std(), std, rtol=0.05)
    assert abs(a.mean()) < 0.05 * std * 3
    # torch's own result has the same spread
    tt = getattr(tnn.init, fn)(torch.empty(*shape), **kw)
    np.testing.assert_allclose(a.std(), tt.std().item(), rtol=0.08)


def test_init_on_parameter_does_not_record_graph():
    w = pnn.Parameter(pf.empty(3, 4))
    pnn.init.xavier_uniform_(w)
    assert w.is_leaf and w.requires_grad and w.grad_fn is None


def test_constant_zeros_ones_eye():
    t = pf.empty(3, 4)
    pnn.init.constant_(t, 0.3)
    np.testing.assert_allclose(arr(t), np.full((3, 4), 0.3), rtol=1e-6)
    pnn.init.zeros_(t)
    assert (arr(t) == 0).all()
    pnn.init.ones_(t)
    assert (arr(t) == 1).all()
    for shape in ((3, 4), (4, 3), (3, 3)):
        e = pnn.init.eye_(pf.empty(*shape))
        np.testing.assert_array_equal(arr(e), arr(tnn.init.eye_(torch.empty(*shape))))
    with pytest.raises(ValueError):
        pnn.init.eye_(pf.empty(2, 2, 2))


@pytest.mark.parametrize("shape,gain", [((6, 6), 1.0), ((4, 9), 1.0), ((9, 4), 2.0),
                                        ((5, 2, 3), 1.0)])
def test_orthogonal(shape, gain):
    t = pnn.init.orthogonal_(pf.empty(*shape, dtype=pf.float64), gain=gain)
    q = arr(t).reshape(shape[0], -1) / gain
    if q.shape[0] <= q.shape[1]:
        np.testing.assert_allclose(q @ q.T, np.eye(q.shape[0]), atol=1e-10)
    else:
        np.testing.assert_allclose(q.T @ q, np.eye(q.shape[1]), atol=1e-10)
    # torch: same property, same shape
    tq = tnn.init.orthogonal_(torch.empty(*shape), gain=gain)
    assert tuple(tq.shape) == tuple(t.shape)


def test_trunc_normal_within_bounds():
    pf.manual_seed(0)
    t = pnn.init.trunc_normal_(pf.empty(200, 100), mean=0.5, std=2.0, a=-1.0, b=3.0)
    a = arr(t)
    assert a.dtype == np.float32 and a.min() >= -1.0 and a.max() <= 3.0
    tt = tnn.init.trunc_normal_(torch.empty(200, 100), mean=0.5, std=2.0, a=-1.0, b=3.0)
    np.testing.assert_allclose(a.mean(), tt.mean().item(), atol=0.05)
    np.testing.assert_allclose(a.std(), tt.std().item(), rtol=0.05)
    d = arr(pnn.init.trunc_normal_(pf.empty(10000)))
    assert d.min() >= -2 and d.max() <= 2 and abs(d.std() - 0.88) < 0.03


# --- 4. nn.utils ---------------------------------------------------------------------------
def _grad_pair(seed=0):
    rng = np.random.default_rng(seed)
    shapes = [(3, 4), (4,), (2, 2, 2)]
    grads = [rng.standard_normal(s) * 3 for s in shapes]
    pp = [pnn.Parameter(pf.zeros(*s, dtype=pf.float64)) for s in shapes]
    tp = [tnn.Parameter(torch.zeros(*s, dtype=torch.float64)) for s in shapes]
    for a, b, g in zip(pp, tp, grads):
        a.grad = pf.tensor(g)
        b.grad = torch.tensor(g)
    return pp, tp


@pytest.mark.parametrize("max_norm,norm_type", [(1.0, 2.0), (1000.0, 2.0), (0.5, 1.0),
                                                (2.0, float("inf")), (1.0, "inf"), (3.0, 3)])
def test_clip_grad_norm_matches_torch(max_norm, norm_type):
    pp, tp = _grad_pair()
    total = tnn.utils.clip_grad_norm_(tp, max_norm, norm_type=norm_type)
    ours = pnn.utils.clip_grad_norm_(pp, max_norm, norm_type=norm_type)
    assert isinstance(ours, pf.Tensor)
    np.testing.assert_allclose(float(ours.item()), total.item(), rtol=1e-10)
    for a, b in zip(pp, tp):
        close(a.grad, b.grad)


def test_clip_grad_norm_single_tensor_and_no_grads():
    pp, tp = _grad_pair(1)
    n = pnn.utils.clip_grad_norm_(pp[0], 0.1)
    m = tnn.utils.clip_grad_norm_(tp[0], 0.1)
    np.testing.assert_allclose(n.item(), m.item(), rtol=1e-10)
    close(pp[0].grad, tp[0].grad)
    empty = pnn.utils.clip_grad_norm_([pnn.Parameter(pf.zeros(2))], 1.0)
    assert float(empty.item()) == 0.0


def test_clip_grad_value_matches_torch():
    pp, tp = _grad_pair(2)
    pnn.utils.clip_grad_value_(pp, 1.5)
    tnn.utils.clip_grad_value_(tp, 1.5)
    for a, b in zip(pp, tp):
        close(a.grad, b.grad)
        assert np.abs(arr(a.grad)).max() <= 1.5


def test_parameters_to_vector_and_back():
    def make(nn):
        return nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    p, t = twin(make)
    pv = pnn.utils.parameters_to_vector(p.parameters())
    tv = tnn.utils.parameters_to_vector(t.parameters())
    close(pv, tv)
    assert tuple(pv.shape) == (3 * 4 + 4 + 4 * 2 + 2,)
    new = np.arange(pv.shape[0], dtype=np.float64)
    pnn.utils.vector_to_parameters(pf.tensor(new), p.parameters())
    tnn.utils.vector_to_parameters(torch.tensor(new), t.parameters())
    for (n, a), (_, b) in zip(p.named_parameters(), t.named_parameters()):
        close(a, b)
    assert all(x.is_leaf for x in p.parameters())
    # the model still trains after the copy
    p(pf.randn(2, 3, dtype=pf.float64)).sum().backward()
    assert p[0].weight.grad is not None


# --- 5. errors -----------------------------------------------------------------------------
@pytest.mark.parametrize("make,shape,expected,got", [
    (lambda nn: nn.Conv2d(3, 8, 3), (1, 5, 8, 8), 3, 5),
    (lambda nn: nn.Conv2d(4, 8, 3, groups=2), (1, 6, 8, 8), 4, 6),
    (lambda nn: nn.Conv1d(3, 8, 3), (1, 5, 8), 3, 5),
    (lambda nn: nn.ConvTranspose2d(4, 8, 3), (1, 6, 8, 8), 4, 6),
], ids=["conv2d", "conv2d_groups", "conv1d", "convT2d"])
def test_conv_wrong_channels_names_expected_and_actual(make, shape, expected, got):
    with pytest.raises(RuntimeError) as err:
        make(pnn)(pf.randn(*shape))
    msg = str(err.value)
    assert str(expected) in msg and str(got) in msg, msg
    assert msg.index(str(expected)) != msg.index(str(got))
    with pytest.raises(RuntimeError):
        make(tnn)(torch.randn(*shape))


def test_conv2d_wrong_channels_message():
    with pytest.raises(RuntimeError, match=r"3 channels.*got 5"):
        pnn.Conv2d(3, 8, 3)(pf.randn(1, 5, 8, 8))
    with pytest.raises(RuntimeError, match="3 channels.*5 channels"):
        tnn.Conv2d(3, 8, 3)(torch.randn(1, 5, 8, 8))


def test_linear_wrong_in_features_names_both_shapes():
    with pytest.raises(RuntimeError, match="3x5 and 4x2"):
        pnn.Linear(4, 2)(pf.randn(3, 5))
    with pytest.raises(RuntimeError, match="3x5 and 4x2"):
        tnn.Linear(4, 2)(torch.randn(3, 5))


def test_batchnorm2d_rejects_3d_input():
    with pytest.raises(ValueError, match="4D|4-D"):
        pnn.BatchNorm2d(3)(pf.randn(2, 3, 5))
    with pytest.raises(ValueError, match="4D"):
        tnn.BatchNorm2d(3)(torch.randn(2, 3, 5))
    with pytest.raises(ValueError):
        pnn.BatchNorm1d(3)(pf.randn(2, 3, 4, 4))


def test_assigning_wrong_types_raises():
    lin = pnn.Linear(2, 2)
    with pytest.raises(TypeError):
        lin.weight = pf.zeros(2, 2)  # a plain tensor cannot replace a Parameter
    with pytest.raises(TypeError):
        lin.register_parameter("x", pf.zeros(1))
