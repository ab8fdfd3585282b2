"""Recurrent layers (RNN, LSTM, GRU and their cells) against PyTorch: the same weights
(loaded through state_dict, which also checks key names and shapes) and inputs must give
the same outputs, final states and gradients."""
import math
import warnings

import numpy as np
import pytest

import pipeflow as pf
from pipeflow import nn

torch = pytest.importorskip("torch", reason="torch (the ref extra) is the reference")

RTOL, ATOL = 1e-10, 1e-12
L, N, H_IN, H = 4, 3, 5, 6

LAYERS = {  # name -> (pipeflow class, torch class, extra constructor kwargs)
    "rnn_tanh": (nn.RNN, torch.nn.RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": (nn.RNN, torch.nn.RNN, {"nonlinearity": "relu"}),
    "lstm": (nn.LSTM, torch.nn.LSTM, {}),
    "gru": (nn.GRU, torch.nn.GRU, {}),
}
CELLS = {
    "rnn_tanh": (nn.RNNCell, torch.nn.RNNCell, {"nonlinearity": "tanh"}),
    "rnn_relu": (nn.RNNCell, torch.nn.RNNCell, {"nonlinearity": "relu"}),
    "lstm": (nn.LSTMCell, torch.nn.LSTMCell, {}),
    "gru": (nn.GRUCell, torch.nn.GRUCell, {}),
}


def _pair(classes, *args, **kwargs):
    """A float64 torch module and a pipeflow module holding the same weights."""
    ours_cls, torch_cls, extra = classes
    torch.manual_seed(0)
    theirs = torch_cls(*args, **extra, **kwargs, dtype=torch.float64)
    ours = ours_cls(*args, **extra, **kwargs, dtype=pf.float64)
    ours.load_state_dict({k: pf.tensor(v.detach().numpy()) for k, v in theirs.state_dict().items()})
    return ours, theirs


def _leaf(lib, array):
    return lib.tensor(array, requires_grad=True)


def _flat(out):
    """(output, h) or (output, (h, c)) or h or (h, c) -> list of tensors."""
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _flat(o)]
    return [out]


def _close(ours, theirs):
    assert tuple(ours.shape) == tuple(theirs.shape)
    np.testing.assert_allclose(ours.detach().numpy(), theirs.detach().numpy(), rtol=RTOL, atol=ATOL)


def _compare(ours_mod, theirs_mod, arrays, pack=lambda ts: ts, seed=1):
    """Run both modules on leaves made from `arrays` (packed into call arguments by
    `pack`), compare every output, then backprop a random-weighted sum of all outputs and
    compare the gradients of the leaves and of every parameter."""
    results = []
    for lib, mod in ((pf, ours_mod), (torch, theirs_mod)):
        leaves = [None if a is None else _leaf(lib, a) for a in arrays]
        outs = _flat(mod(*pack(leaves)))
        results.append((leaves, outs))
    (our_leaves, our_outs), (their_leaves, their_outs) = results
    assert len(our_outs) == len(their_outs)
    rng = np.random.default_rng(seed)
    weights = [rng.standard_normal(tuple(t.shape)) for t in their_outs]
    for o, t in zip(our_outs, their_outs):
        _close(o, t)
    sum(((o * pf.tensor(w)).sum() for o, w in zip(our_outs, weights)), pf.tensor(0.0)).backward()
    sum(((t * torch.tensor(w)).sum() for t, w in zip(their_outs, weights))).backward()
    for o, t in zip(our_leaves, their_leaves):
        if t is not None:
            _close(o.grad, t.grad)
    theirs_params = dict(theirs_mod.named_parameters())
    ours_params = dict(ours_mod.named_parameters())
    assert list(ours_params) == list(theirs_params)
    for name, p in ours_params.items():
        assert p.grad is not None, name
        _close(p.grad, theirs_params[name].grad)
    return our_outs


def _layer_inputs(rng, num_layers, bidirectional, batch_first, batched, with_state, lstm,
                  proj_size=0):
    x = rng.standard_normal((N, L, H_IN) if batch_first else (L, N, H_IN))
    if not batched:
        x = x[0] if batch_first else x[:, 0]
    if not with_state:
        return [x, None] + ([None] if lstm else [])
    first = num_layers * (2 if bidirectional else 1)
    shape = (first, N) if batched else (first,)
    states = [rng.standard_normal(shape + (proj_size or H,))]
    if lstm:
        states.append(rng.standard_normal(shape + (H,)))
    return [x] + states


def _pack_layer(lstm):
    def pack(leaves):
        x, *states = leaves
        if states[0] is None:
            return (x,)
        return (x, tuple(states)) if lstm else (x, states[0])
    return pack


@pytest.mark.parametrize("with_state", [False, True], ids=["no_h0", "h0"])
@pytest.mark.parametrize("batched", [True, False], ids=["batched", "unbatched"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["seq_first", "batch_first"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("kind", list(LAYERS))
def test_layer_matches_torch(kind, num_layers, bidirectional, batch_first, batched, with_state):
    lstm = kind == "lstm"
    ours, theirs = _pair(LAYERS[kind], H_IN, H, num_layers=num_layers,
                         bidirectional=bidirectional, batch_first=batch_first)
    rng = np.random.default_rng(2)
    arrays = _layer_inputs(rng, num_layers, bidirectional, batch_first, batched, with_state, lstm)
    outs = _compare(ours, theirs, arrays, _pack_layer(lstm))
    directions = 2 if bidirectional else 1
    out_shape = ((N, L) if batch_first else (L, N)) if batched else (L,)
    assert tuple(outs[0].shape) == out_shape + (directions * H,)
    assert tuple(outs[1].shape) == (num_layers * directions,) + ((N,) if batched else ()) + (H,)


@pytest.mark.parametrize("kind", list(LAYERS))
def test_layer_without_bias(kind):
    ours, theirs = _pair(LAYERS[kind], H_IN, H, num_layers=2, bias=False, bidirectional=True)
    assert not any("bias" in k for k in ours.state_dict())
    rng = np.random.default_rng(3)
    lstm = kind == "lstm"
    _compare(ours, theirs, _layer_inputs(rng, 2, True, False, True, True, lstm), _pack_layer(lstm))


@pytest.mark.parametrize("with_state", [False, True], ids=["no_h0", "h0"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("batched", [True, False], ids=["batched", "unbatched"])
def test_lstm_with_projection(batched, bidirectional, with_state):
    ours, theirs = _pair(LAYERS["lstm"], H_IN, H, num_layers=2, proj_size=4,
                         bidirectional=bidirectional, batch_first=True)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    rng = np.random.default_rng(4)
    arrays = _layer_inputs(rng, 2, bidirectional, True, batched, with_state, True, proj_size=4)
    outs = _compare(ours, theirs, arrays, _pack_layer(True))
    assert outs[0].shape[-1] == (2 if bidirectional else 1) * 4
    assert repr(ours) == repr(theirs).replace("torch", "pipeflow")


def test_zero_batch_matches_torch():
    ours, theirs = _pair(LAYERS["gru"], H_IN, H, num_layers=2, bidirectional=True)
    x = np.zeros((L, 0, H_IN))
    out, h = ours(pf.tensor(x))
    t_out, t_h = theirs(torch.tensor(x))
    assert tuple(out.shape) == tuple(t_out.shape) and tuple(h.shape) == tuple(t_h.shape)


def test_long_sequence_gradients_match_torch():
    """Many steps: the recurrent loop, the one-matmul projection and the per-step splits."""
    ours, theirs = _pair(LAYERS["lstm"], H_IN, H, num_layers=2, bidirectional=True)
    rng = np.random.default_rng(5)
    _compare(ours, theirs, [rng.standard_normal((40, 2, H_IN)), None, None], _pack_layer(True))


# --- cells -----------------------------------------------------------------------------------

@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("with_state", [False, True], ids=["no_h0", "h0"])
@pytest.mark.parametrize("batched", [True, False], ids=["batched", "unbatched"])
@pytest.mark.parametrize("kind", list(CELLS))
def test_cell_matches_torch(kind, batched, with_state, bias):
    lstm = kind == "lstm"
    ours, theirs = _pair(CELLS[kind], H_IN, H, bias=bias)
    rng = np.random.default_rng(6)
    lead = (N,) if batched else ()
    arrays = [rng.standard_normal(lead + (H_IN,))]
    if with_state:
        arrays += [rng.standard_normal(lead + (H,)) for _ in range(2 if lstm else 1)]

    def pack(leaves):
        if len(leaves) == 1:
            return (leaves[0],)
        return (leaves[0], tuple(leaves[1:])) if lstm else (leaves[0], leaves[1])
    outs = _compare(ours, theirs, arrays, pack)
    assert all(tuple(o.shape) == lead + (H,) for o in outs)


def test_cells_unrolled_equal_the_layer():
    """A cell stepped by hand over the sequence gives the one-layer module's output."""
    for kind in LAYERS:
        layer_cls, _, extra = LAYERS[kind]
        cell_cls = CELLS[kind][0]
        layer = layer_cls(H_IN, H, **extra, dtype=pf.float64)
        cell = cell_cls(H_IN, H, **extra, dtype=pf.float64)
        cell.load_state_dict({k[:-3]: v for k, v in layer.state_dict().items()})
        x = pf.randn(L, N, H_IN, dtype=pf.float64)
        out, _ = layer(x)
        state = None
        for t in range(L):
            state = cell(x[t], state)
            h = state[0] if kind == "lstm" else state
            _close(h, out[t])


# --- parameters, init, repr ------------------------------------------------------------------

@pytest.mark.parametrize("kind", list(LAYERS))
def test_state_dict_keys_and_shapes_equal_torch(kind):
    ours_cls, torch_cls, extra = LAYERS[kind]
    for kwargs in ({}, {"num_layers": 3, "bidirectional": True}, {"num_layers": 2, "bias": False}):
        ours = ours_cls(7, 5, **extra, **kwargs).state_dict()
        theirs = torch_cls(7, 5, **extra, **kwargs).state_dict()
        assert list(ours) == list(theirs)
        assert [tuple(v.shape) for v in ours.values()] == [tuple(v.shape) for v in theirs.values()]
    ours_cls, torch_cls, extra = CELLS[kind]
    for bias in (True, False):
        ours = ours_cls(7, 5, bias, **extra).state_dict()
        theirs = torch_cls(7, 5, bias, **extra).state_dict()
        assert list(ours) == list(theirs)
        assert [tuple(v.shape) for v in ours.values()] == [tuple(v.shape) for v in theirs.values()]


def test_all_weights_and_positional_nonlinearity():
    m = nn.RNN(3, 4, 2, "relu", False, True, 0.0, True)
    assert m.nonlinearity == "relu" and m.mode == "RNN_RELU"
    assert m.bias is False and m.batch_first is True and m.bidirectional is True
    assert [[tuple(p.shape) for p in ws] for ws in m.all_weights] == \
        [[(4, 3), (4, 4)], [(4, 3), (4, 4)], [(4, 8), (4, 4)], [(4, 8), (4, 4)]]
    m.flatten_parameters()  # PyTorch code calls it; a no-op


@pytest.mark.parametrize("module", [
    lambda: nn.LSTM(20, 64, num_layers=2, bidirectional=True),
    lambda: nn.GRU(20, 64, bias=False),
    lambda: nn.RNN(20, 64, nonlinearity="relu"),
    lambda: nn.LSTM(20, 64, proj_size=8),
    lambda: nn.RNNCell(20, 64),
    lambda: nn.LSTMCell(20, 64),
    lambda: nn.GRUCell(20, 64),
], ids=["lstm", "gru", "rnn", "lstmp", "rnn_cell", "lstm_cell", "gru_cell"])
def test_default_init_is_uniform_in_one_over_sqrt_hidden(module):
    m = module()
    bound = 1 / math.sqrt(64)
    values = np.concatenate([p.detach().numpy().ravel() for p in m.parameters()])
    assert values.min() >= -bound and values.max() <= bound
    assert values.min() < -0.95 * bound and values.max() > 0.95 * bound  # spans the range
    assert abs(values.mean()) < 0.05 * bound
    assert abs(values.std() - bound / math.sqrt(3)) < 0.05 * bound  # uniform's std
    for p in m.parameters():
        assert p.dtype == pf.float32 and p.requires_grad


def test_repr_matches_torch():
    cases = [("LSTM", (10, 20), dict(num_layers=2, batch_first=True, bidirectional=True)),
             ("GRU", (10, 20), dict(bias=False, dropout=0.5, num_layers=3)),
             ("RNN", (10, 20), dict(nonlinearity="relu")),
             ("LSTM", (10, 20), dict(proj_size=5)),
             ("RNNCell", (10, 20), dict(bias=False, nonlinearity="relu")),
             ("LSTMCell", (10, 20), {}),
             ("GRUCell", (10, 20), dict(bias=False))]
    for name, args, kwargs in cases:
        ours, theirs = getattr(nn, name)(*args, **kwargs), getattr(torch.nn, name)(*args, **kwargs)
        assert repr(ours) == repr(theirs)
    assert repr(nn.LSTM(10, 20, num_layers=2, batch_first=True, bidirectional=True)) == \
        "LSTM(10, 20, num_layers=2, batch_first=True, bidirectional=True)"


def test_public_names_are_exported():
    from pipeflow.nn.modules import rnn
    for name in ("RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell", "RNNBase", "RNNCellBase"):
        assert name in rnn.__all__ and getattr(nn, name) is getattr(rnn, name)


# --- dropout ---------------------------------------------------------------------------------

def test_dropout_only_in_training_mode():
    ours, theirs = _pair(LAYERS["lstm"], H_IN, H, num_layers=3, dropout=0.5)
    x = pf.randn(L, N, H_IN, dtype=pf.float64)
    ours.train()
    first, second = ours(x)[0], ours(x)[0]
    assert not np.allclose(first.detach().numpy(), second.detach().numpy())
    ours.eval()
    theirs.eval()
    a, b = ours(x)[0], ours(x)[0]
    np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())
    _close(a, theirs(torch.tensor(x.numpy()))[0])


@pytest.mark.parametrize("kind", list(LAYERS))
def test_dropout_is_between_layers_not_after_the_last(kind):
    """With p=1 the training-mode result is deterministic: layer 2 sees zeros, and its own
    output is not dropped (PyTorch's semantics)."""
    lstm = kind == "lstm"
    ours, theirs = _pair(LAYERS[kind], H_IN, H, num_layers=2, dropout=1.0, bidirectional=True)
    ours.train()
    theirs.train()
    rng = np.random.default_rng(7)
    outs = _compare(ours, theirs, _layer_inputs(rng, 2, True, False, True, True, lstm),
                    _pack_layer(lstm))
    out = outs[0].detach().numpy()
    assert np.count_nonzero(out) > out.size // 4  # the last layer's output is kept


def test_dropout_arguments():
    with pytest.raises(ValueError, match=r"dropout should be a number in range \[0, 1\]"):
        nn.LSTM(3, 4, num_layers=2, dropout=1.5)
    with pytest.warns(UserWarning, match="num_layers greater than 1"):
        nn.GRU(3, 4, dropout=0.2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nn.GRU(3, 4, num_layers=2, dropout=0.2)


# --- errors ----------------------------------------------------------------------------------

def test_layer_input_errors_name_expected_and_actual_sizes():
    lstm, gru = nn.LSTM(5, 6, num_layers=2), nn.GRU(5, 6, batch_first=True, bidirectional=True)
    with pytest.raises(RuntimeError, match="input_size. Expected 5, got 7"):
        lstm(pf.randn(4, 3, 7))
    with pytest.raises(ValueError, match="Expected input to be 2D or 3D, got 4D"):
        gru(pf.randn(1, 4, 3, 5))
    with pytest.raises(RuntimeError, match=r"Expected hidden size \(2, 3, 6\), got \[2, 4, 6\]"):
        gru(pf.randn(3, 4, 5), pf.randn(2, 4, 6))  # batch_first: N = 3
    with pytest.raises(RuntimeError, match=r"Expected hidden size \(2, 3, 6\), got \[1, 3, 6\]"):
        gru(pf.randn(3, 4, 5), pf.randn(1, 3, 6))
    with pytest.raises(RuntimeError,
                       match=r"Expected hidden\[1\] size \(2, 3, 6\), got \[2, 3, 4\]"):
        lstm(pf.randn(4, 3, 5), (pf.randn(2, 3, 6), pf.randn(2, 3, 4)))
    with pytest.raises(RuntimeError, match="hx should also be 3-D but got 2-D"):
        gru(pf.randn(3, 4, 5), pf.randn(2, 6))
    with pytest.raises(RuntimeError, match="hx should also be 2-D but got 3-D"):
        nn.RNN(5, 6)(pf.randn(4, 5), pf.randn(1, 1, 6))
    with pytest.raises(ValueError, match="input dtype"):
        nn.RNN(5, 6)(pf.randn(4, 5, dtype=pf.float64))
    with pytest.raises(RuntimeError, match="sequence length"):
        nn.RNN(5, 6)(pf.randn(0, 2, 5))


def test_cell_input_errors_name_expected_and_actual_sizes():
    cell, lstm_cell = nn.GRUCell(5, 6), nn.LSTMCell(5, 6)
    with pytest.raises(RuntimeError, match="inconsistent input_size: got 7 expected 5"):
        cell(pf.randn(3, 7))
    with pytest.raises(RuntimeError,
                       match="hidden0 has inconsistent hidden_size: got 4, expected 6"):
        cell(pf.randn(3, 5), pf.randn(3, 4))
    with pytest.raises(RuntimeError, match="Input batch size 3 doesn't match hidden1 batch size 2"):
        lstm_cell(pf.randn(3, 5), (pf.randn(3, 6), pf.randn(2, 6)))
    with pytest.raises(ValueError, match="Expected input to be 1D or 2D, got 3D"):
        cell(pf.randn(1, 3, 5))


def test_constructor_errors():
    with pytest.raises(ValueError, match="Unknown nonlinearity 'sigmoid'"):
        nn.RNN(3, 4, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="Unknown nonlinearity"):
        nn.RNNCell(3, 4, nonlinearity="gelu")
    with pytest.raises(ValueError, match="only supported for LSTM"):
        nn.GRU(3, 4, proj_size=2)
    with pytest.raises(ValueError, match="proj_size has to be smaller than hidden_size"):
        nn.LSTM(3, 4, proj_size=4)
    with pytest.raises(ValueError, match="hidden_size must be greater than zero"):
        nn.LSTM(3, 0)
    with pytest.raises(ValueError, match="num_layers must be greater than zero"):
        nn.LSTM(3, 4, num_layers=0)
    with pytest.raises(TypeError, match="bias should be of type bool"):
        nn.LSTM(3, 4, bias=1)


def test_training_step_changes_every_parameter():
    """The layer trains: an optimizer-free SGD step lowers a loss and touches all weights."""
    m = nn.LSTM(4, 8, num_layers=2, bidirectional=True, batch_first=True)
    x, target = pf.randn(2, 5, 4), pf.randn(2, 5, 16)
    losses = []
    for _ in range(3):
        out, _ = m(x)
        loss = ((out - target) ** 2).mean()
        losses.append(loss.item())
        m.zero_grad()
        loss.backward()
        for p in m.parameters():
            assert p.grad is not None and np.abs(p.grad.numpy()).max() > 0
            p.data -= 0.5 * p.grad
    assert losses[-1] < losses[0]


@pytest.mark.cuda
@pytest.mark.skipif(not pf.cuda.is_available(), reason="needs CuPy and an NVIDIA GPU")
@pytest.mark.parametrize("kind", list(LAYERS))
def test_layer_on_cuda_matches_cpu(kind):
    lstm = kind == "lstm"
    cpu = LAYERS[kind][0](H_IN, H, num_layers=2, bidirectional=True, dropout=0.3,
                          **LAYERS[kind][2], dtype=pf.float64).eval()
    gpu = LAYERS[kind][0](H_IN, H, num_layers=2, bidirectional=True, dropout=0.3,
                          **LAYERS[kind][2], dtype=pf.float64).eval()
    gpu.load_state_dict(cpu.state_dict())
    gpu.cuda()
    rng = np.random.default_rng(8)
    arrays = _layer_inputs(rng, 2, True, False, True, True, lstm)
    results = []
    for mod, device in ((cpu, "cpu"), (gpu, "cuda")):
        leaves = [pf.tensor(a, device=device, requires_grad=True) for a in arrays]
        outs = _flat(mod(*_pack_layer(lstm)(leaves)))
        sum(o.sum() for o in outs).backward()
        results.append([o.detach().cpu().numpy() for o in outs] +
                       [p.grad.cpu().numpy() for p in mod.parameters()])
    for a, b in zip(*results):
        np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-12)
    gpu.train()
    out, _ = gpu(pf.randn(L, N, H_IN, dtype=pf.float64, device="cuda"))  # dropout masks on the GPU
    assert out.device == "cuda:0"
