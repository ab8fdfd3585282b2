"""Recurrent layers, PyTorch's: RNN (tanh or ReLU), LSTM (with optional projections), GRU,
and their single-step cells RNNCell, LSTMCell, GRUCell.

Parameter names, shapes, gate order (LSTM: i, f, g, o; GRU: r, z, n), default init and the
input / state shapes are PyTorch's, so state dicts load both ways. The backward pass is
autograd's: every step is made of differentiable ops.

How a layer runs: the sequence is kept flat, as an (L * N, features) matrix whose rows are
time-major. For each layer and direction the input projection of every time step is one
matmul (``x @ W_ih^T`` plus the biases that can be folded in); the loop over time then does
only the recurrent part, on (N, features) row blocks of that matrix (views taken with one
split). Per-step outputs are joined with one cat. Packed sequences are not supported.
"""
import math
import numbers
import warnings

from ... import factories, ops
from .. import init
from ..module import Module
from ..parameter import Parameter
from .dropout import dropout as _dropout

__all__ = ["RNNBase", "RNN", "LSTM", "GRU", "RNNCellBase", "RNNCell", "LSTMCell", "GRUCell"]

_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}


def _param(*shape, device=None, dtype=None):
    return Parameter(factories.empty(*shape, device=device, dtype=dtype))


# --- one time step (shared by the layers and the cells) -----------------------------------
# `xw` is the step's input projection, with the biases that can be folded in already added;
# `w_hh_t` is W_hh^T (transposed once per call, not per step).

def _rnn_step(xw, h, w_hh_t, act):
    return act(xw + h @ w_hh_t)


def _lstm_step(xw, h, c, w_hh_t, w_hr_t):
    i, f, g, o = ops.split(xw + h @ w_hh_t, c._data.shape[-1], -1)
    c = ops.sigmoid(f) * c + ops.sigmoid(i) * ops.tanh(g)
    h = ops.sigmoid(o) * ops.tanh(c)
    return (h if w_hr_t is None else h @ w_hr_t), c


def _gru_step(x_rz, x_n, h, w_hh_t, b_hn):
    """PyTorch's GRU: r, z = sigmoid(W_i{r,z} x + b_i{r,z} + W_h{r,z} h + b_h{r,z}),
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn)), h' = (1 - z) * n + z * h.
    `x_rz` holds both r, z biases; `x_n` holds b_in."""
    size = h._data.shape[-1]
    h_rz, h_n = ops.split(h @ w_hh_t, [2 * size, size], -1)
    r, z = ops.split(ops.sigmoid(x_rz + h_rz), size, -1)
    if b_hn is not None:
        h_n = h_n + b_hn
    n = ops.tanh(x_n + r * h_n)
    return n + z * (h - n)


def _gru_inputs(xw, b_hh, size):
    """Split a GRU input projection (W_ih x + b_ih) into its (r, z) and n parts, folding
    b_hr, b_hz into the first; returns (x_rz, x_n, b_hn)."""
    x_rz, x_n = ops.split(xw, [2 * size, size], -1)
    if b_hh is None:
        return x_rz, x_n, None
    b_hrz, b_hn = ops.split(b_hh, [2 * size, size], 0)
    return x_rz + b_hrz, x_n, b_hn


def _activation(mode):
    return ops.relu if mode == "RNN_RELU" else ops.tanh


def _check_int(name, value):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise TypeError(f"{name} should be of type int, got: {type(value).__name__}")


# --- multi-layer modules ---------------------------------------------------------------------

class RNNBase(Module):
    """The multi-layer recurrent network behind RNN, LSTM and GRU (``mode`` is 'RNN_TANH',
    'RNN_RELU', 'LSTM' or 'GRU')."""

    def __init__(self, mode, input_size, hidden_size, num_layers=1, bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False, proj_size=0,
                 device=None, dtype=None):
        super().__init__()
        if mode not in _GATES:
            raise ValueError("Unrecognized RNN mode: " + str(mode))
        if (not isinstance(dropout, numbers.Number) or isinstance(dropout, bool)
                or not 0 <= dropout <= 1):
            raise ValueError("dropout should be a number in range [0, 1] representing the "
                             "probability of an element being zeroed")
        if dropout > 0 and num_layers == 1:
            warnings.warn("dropout option adds dropout after all but last recurrent layer, so "
                          "non-zero dropout expects num_layers greater than 1, but got "
                          f"dropout={dropout} and num_layers={num_layers}", stacklevel=3)
        if not isinstance(bias, bool):
            raise TypeError(f"bias should be of type bool, got: {type(bias).__name__}")
        if not isinstance(batch_first, bool):
            raise TypeError(f"batch_first should be of type bool, got: "
                            f"{type(batch_first).__name__}")
        _check_int("input_size", input_size)
        if input_size <= 0:
            raise ValueError("input_size must be greater than zero")
        _check_int("hidden_size", hidden_size)
        if hidden_size <= 0:
            raise ValueError("hidden_size must be greater than zero")
        _check_int("num_layers", num_layers)
        if num_layers <= 0:
            raise ValueError("num_layers must be greater than zero")
        _check_int("proj_size", proj_size)
        if proj_size < 0:
            raise ValueError("proj_size should be a positive integer or zero to disable "
                             "projections")
        if proj_size >= hidden_size:
            raise ValueError("proj_size has to be smaller than hidden_size")
        if proj_size and mode != "LSTM":
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")

        self.mode = mode
        self.input_size, self.hidden_size = input_size, hidden_size
        self.num_layers, self.bias, self.batch_first = num_layers, bias, batch_first
        self.dropout, self.bidirectional, self.proj_size = float(dropout), bidirectional, proj_size

        gate_size = _GATES[mode] * hidden_size
        real_hidden = proj_size or hidden_size
        directions = 2 if bidirectional else 1
        self._flat_weights_names, self._all_weights = [], []
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else real_hidden * directions
            for direction in range(directions):
                suffix = "_reverse" if direction == 1 else ""
                params = [("weight_ih", (gate_size, layer_input)),
                          ("weight_hh", (gate_size, real_hidden))]
                if bias:
                    params += [("bias_ih", (gate_size,)), ("bias_hh", (gate_size,))]
                if proj_size:
                    params += [("weight_hr", (proj_size, hidden_size))]
                names = []
                for base, shape in params:
                    name = f"{base}_l{layer}{suffix}"
                    setattr(self, name, _param(*shape, device=device, dtype=dtype))
                    names.append(name)
                self._flat_weights_names.extend(names)
                self._all_weights.append(names)
        self.reset_parameters()

    def reset_parameters(self):
        """PyTorch's default: every weight and bias from U(-1/sqrt(hidden_size),
        1/sqrt(hidden_size))."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            init.uniform_(p, -bound, bound)

    def flatten_parameters(self):
        """Kept for PyTorch code (cuDNN's weight packing); nothing to do here."""

    @property
    def _flat_weights(self):
        return [getattr(self, name) for name in self._flat_weights_names]

    @property
    def all_weights(self):
        return [[getattr(self, name) for name in names] for names in self._all_weights]

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size != 0:
            s += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if self.batch_first is not False:
            s += f", batch_first={self.batch_first}"
        if self.dropout != 0:
            s += f", dropout={self.dropout}"
        if self.bidirectional is not False:
            s += f", bidirectional={self.bidirectional}"
        return s

    # --- forward ----------------------------------------------------------------------------
    def forward(self, input, hx=None):
        """input: (L, N, H_in), or (N, L, H_in) with batch_first, or unbatched (L, H_in).
        hx: (num_layers * num_directions, N, H_out) (unbatched: without N); for LSTM a
        tuple (h_0, c_0), c_0 with hidden_size features. Zeros when not given.
        Returns (output, h_n), for LSTM (output, (h_n, c_n))."""
        lstm = self.mode == "LSTM"
        name = "RNN" if self.mode.startswith("RNN") else self.mode
        if input.dim() not in (2, 3):
            raise ValueError(f"{name}: Expected input to be 2D or 3D, got {input.dim()}D "
                             "instead")
        batched = input.dim() == 3
        states = None if hx is None else (tuple(hx) if lstm else (hx,))
        if states is not None:
            if lstm and len(states) != 2:
                raise ValueError(f"LSTM: hx should be a tuple (h_0, c_0), got {len(states)} "
                                 "tensors")
            want = 3 if batched else 2
            dims = [s.dim() for s in states]
            if any(d != want for d in dims):
                what = "hx and cx" if lstm else "hx"
                got = (f"({dims[0]}-D, {dims[1]}-D) tensors" if lstm else
                       f"{dims[0]}-D tensor")
                raise RuntimeError(f"For {'batched 3-D' if batched else 'unbatched 2-D'} "
                                   f"input, {what} should also be {want}-D but got {got}")
            if not batched:
                states = tuple(s.unsqueeze(1) for s in states)
        weight = self.weight_ih_l0
        if input.dtype != weight.dtype:
            raise ValueError(f"RNN input dtype ({input.dtype}) does not match weight dtype "
                             f"({weight.dtype}). Convert input: input.to({weight.dtype}), or "
                             f"convert model: model.to({input.dtype})")
        if input.shape[-1] != self.input_size:
            raise RuntimeError("input.size(-1) must be equal to input_size. Expected "
                               f"{self.input_size}, got {input.shape[-1]}")
        x = input if batched else input.unsqueeze(0 if self.batch_first else 1)
        if self.batch_first:
            x = x.transpose(0, 1)
        length, batch = x.shape[0], x.shape[1]
        if length == 0:
            raise RuntimeError("Expected sequence length to be larger than 0 in RNN")
        layers_dirs = self.num_layers * (2 if self.bidirectional else 1)
        expected = [(layers_dirs, batch, self.proj_size or self.hidden_size)]
        if lstm:
            expected.append((layers_dirs, batch, self.hidden_size))
        if states is not None:
            for k, (s, shape) in enumerate(zip(states, expected)):
                if tuple(s.shape) != shape:
                    what = f"hidden[{k}] size" if lstm else "hidden size"
                    raise RuntimeError(f"Expected {what} {shape}, got {list(s.shape)}")

        out, finals = self._run(x, states, length, batch, expected)

        out = out.reshape(length, batch, out.shape[-1])
        if self.batch_first:
            out = out.transpose(0, 1)
        finals = [f.reshape(shape) for f, shape in zip(finals, expected)]
        if not batched:
            out = out.squeeze(0 if self.batch_first else 1)
            finals = [f.squeeze(1) for f in finals]
        return (out, tuple(finals)) if lstm else (out, finals[0])

    def _weights(self, layer, direction):
        """The parameters of one layer and direction by role: w_ih, w_hh, b_ih, b_hh, w_hr
        (None where the module has none)."""
        params, suffix = self._parameters, f"_l{layer}" + ("_reverse" if direction else "")
        return {role: params.get(base + suffix) for role, base in (
            ("w_ih", "weight_ih"), ("w_hh", "weight_hh"), ("b_ih", "bias_ih"),
            ("b_hh", "bias_hh"), ("w_hr", "weight_hr"))}

    def _run(self, x, states, length, batch, expected):
        """The layers on the time-major input x (L, N, H_in). States are handled as
        (N, features) blocks: ``states`` become per-(layer, direction) blocks, and the final
        ones are returned joined, each (num_layers * num_directions * N, features)."""
        mode, size = self.mode, self.hidden_size
        directions = 2 if self.bidirectional else 1
        rows = [batch] * length
        if states is None:
            zeros = [x.new_zeros(batch, shape[2]) for shape in expected]
            initial = [[z] * (self.num_layers * directions) for z in zeros]
        else:  # (layers*dirs, N, H) -> (layers*dirs*N, H) -> blocks of N rows
            initial = [ops.split(s.reshape(-1, s.shape[-1]), [batch] * shape[0], 0)
                       for s, shape in zip(states, expected)]
        finals = [[] for _ in initial]
        act = _activation(mode)
        layer_in = x.reshape(length * batch, x.shape[-1])  # time-major rows
        for layer in range(self.num_layers):
            outs = []
            for d in range(directions):
                k = layer * directions + d
                p = self._weights(layer, d)
                w_hh_t = p["w_hh"].mT
                xw = layer_in @ p["w_ih"].mT  # every step's input projection, one matmul
                steps = range(length - 1, -1, -1) if d else range(length)
                out_steps = [None] * length
                if mode == "GRU":
                    if p["b_ih"] is not None:
                        xw = xw + p["b_ih"]
                    x_rz, x_n, b_hn = _gru_inputs(xw, p["b_hh"], size)
                    x_rz, x_n = ops.split(x_rz, rows, 0), ops.split(x_n, rows, 0)
                    h = initial[0][k]
                    for t in steps:
                        h = out_steps[t] = _gru_step(x_rz[t], x_n[t], h, w_hh_t, b_hn)
                    finals[0].append(h)
                else:
                    if p["b_ih"] is not None:
                        xw = xw + (p["b_ih"] + p["b_hh"])
                    xw = ops.split(xw, rows, 0)
                    h = initial[0][k]
                    if mode == "LSTM":
                        c = initial[1][k]
                        w_hr_t = p["w_hr"].mT if self.proj_size else None
                        for t in steps:
                            h, c = _lstm_step(xw[t], h, c, w_hh_t, w_hr_t)
                            out_steps[t] = h
                        finals[1].append(c)
                    else:
                        for t in steps:
                            h = out_steps[t] = _rnn_step(xw[t], h, w_hh_t, act)
                    finals[0].append(h)
                outs.append(ops.cat(out_steps, 0))
            layer_in = outs[0] if directions == 1 else ops.cat(outs, -1)
            if self.dropout and self.training and layer < self.num_layers - 1:
                layer_in = _dropout(layer_in, self.dropout, True)
        return layer_in, [ops.cat(f, 0) for f in finals]


class RNN(RNNBase):
    """Elman RNN: h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), act tanh or relu.
    ``RNN(input_size, hidden_size, num_layers=1, nonlinearity='tanh', bias=True,
    batch_first=False, dropout=0.0, bidirectional=False, device=None, dtype=None)``."""

    def __init__(self, *args, **kwargs):
        if "proj_size" in kwargs:
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        if len(args) > 3:
            nonlinearity = args[3]
            args = args[:3] + args[4:]
        else:
            nonlinearity = kwargs.pop("nonlinearity", "tanh")
        if nonlinearity == "tanh":
            mode = "RNN_TANH"
        elif nonlinearity == "relu":
            mode = "RNN_RELU"
        else:
            raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or "
                             "'relu'.")
        super().__init__(mode, *args, **kwargs)
        self.nonlinearity = nonlinearity


class LSTM(RNNBase):
    """Long short-term memory, gates i, f, g, o (PyTorch's order); with ``proj_size > 0``
    the hidden state is projected by weight_hr_l{k} (LSTMP).
    ``LSTM(input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
    dropout=0.0, bidirectional=False, proj_size=0, device=None, dtype=None)``."""

    def __init__(self, *args, **kwargs):
        super().__init__("LSTM", *args, **kwargs)


class GRU(RNNBase):
    """Gated recurrent unit, gates r, z, n with PyTorch's formula
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn)).
    ``GRU(input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
    dropout=0.0, bidirectional=False, device=None, dtype=None)``."""

    def __init__(self, *args, **kwargs):
        if "proj_size" in kwargs:
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        super().__init__("GRU", *args, **kwargs)


# --- cells -----------------------------------------------------------------------------------

class RNNCellBase(Module):
    def __init__(self, input_size, hidden_size, bias, num_chunks, device=None, dtype=None):
        super().__init__()
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        self.weight_ih = _param(num_chunks * hidden_size, input_size, device=device, dtype=dtype)
        self.weight_hh = _param(num_chunks * hidden_size, hidden_size, device=device,
                                dtype=dtype)
        if bias:
            self.bias_ih = _param(num_chunks * hidden_size, device=device, dtype=dtype)
            self.bias_hh = _param(num_chunks * hidden_size, device=device, dtype=dtype)
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self):
        bound = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0
        for p in self.parameters():
            init.uniform_(p, -bound, bound)

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        nonlinearity = self.__dict__.get("nonlinearity", "tanh")
        if nonlinearity != "tanh":
            s += f", nonlinearity={nonlinearity}"
        return s

    def _prepare(self, input, hx, n_states):
        """Check shapes as PyTorch does; returns (batched?, (N, H_in) input, list of
        (N, H) states or None)."""
        name = type(self).__name__
        if input.dim() not in (1, 2):
            raise ValueError(f"{name}: Expected input to be 1D or 2D, got {input.dim()}D "
                             "instead")
        states = None
        if hx is not None:
            states = list(hx) if n_states == 2 else [hx]
            for k, s in enumerate(states):
                if s.dim() not in (1, 2):
                    what = f"hx[{k}]" if n_states == 2 else "hidden"
                    raise ValueError(f"{name}: Expected {what} to be 1D or 2D, got "
                                     f"{s.dim()}D instead")
        batched = input.dim() == 2
        if not batched:
            input = input.unsqueeze(0)
            states = None if states is None else [s.unsqueeze(0) for s in states]
        if input.shape[1] != self.input_size:
            raise RuntimeError(f"input has inconsistent input_size: got {input.shape[1]} "
                               f"expected {self.input_size}")
        if states is not None:
            for k, s in enumerate(states):
                if s.dim() != 2 or s.shape[0] != input.shape[0]:
                    raise RuntimeError(f"Input batch size {input.shape[0]} doesn't match "
                                       f"hidden{k} batch size {s.shape[0]}")
                if s.shape[1] != self.hidden_size:
                    raise RuntimeError(f"hidden{k} has inconsistent hidden_size: got "
                                       f"{s.shape[1]}, expected {self.hidden_size}")
        else:
            states = [input.new_zeros(input.shape[0], self.hidden_size)] * n_states
        return batched, input, states

    def _projection(self, x):
        """W_ih x + b_ih + b_hh (all biases: RNN, LSTM)."""
        xw = x @ self.weight_ih.mT
        return xw if self.bias_ih is None else xw + (self.bias_ih + self.bias_hh)


class RNNCell(RNNCellBase):
    """h' = act(W_ih x + b_ih + W_hh h + b_hh), act tanh or relu."""

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", device=None,
                 dtype=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or "
                             "'relu'.")
        super().__init__(input_size, hidden_size, bias, num_chunks=1, device=device, dtype=dtype)
        self.nonlinearity = nonlinearity

    def forward(self, input, hx=None):
        batched, x, (h,) = self._prepare(input, hx, 1)
        act = ops.relu if self.nonlinearity == "relu" else ops.tanh
        h = _rnn_step(self._projection(x), h, self.weight_hh.mT, act)
        return h if batched else h.squeeze(0)


class LSTMCell(RNNCellBase):
    """One LSTM step; hx is (h, c); returns (h', c')."""

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__(input_size, hidden_size, bias, num_chunks=4, device=device, dtype=dtype)

    def forward(self, input, hx=None):
        batched, x, (h, c) = self._prepare(input, hx, 2)
        h, c = _lstm_step(self._projection(x), h, c, self.weight_hh.mT, None)
        return (h, c) if batched else (h.squeeze(0), c.squeeze(0))


class GRUCell(RNNCellBase):
    """One GRU step (PyTorch's formula, see GRU)."""

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__(input_size, hidden_size, bias, num_chunks=3, device=device, dtype=dtype)

    def forward(self, input, hx=None):
        batched, x, (h,) = self._prepare(input, hx, 1)
        xw = x @ self.weight_ih.mT
        if self.bias_ih is not None:
            xw = xw + self.bias_ih
        x_rz, x_n, b_hn = _gru_inputs(xw, self.bias_hh, self.hidden_size)
        h = _gru_step(x_rz, x_n, h, self.weight_hh.mT, b_hn)
        return h if batched else h.squeeze(0)
