"""Recurrent layers: RNN, LSTM, GRU and their one-step cells, as PyTorch's.

A recurrent layer reads a sequence x_1 .. x_T one step at a time and carries a
hidden state h_t from step to step. Each layer here is written with ordinary
differentiable ops (``F.linear``, ``F.sigmoid``, ``F.tanh``, ``chunk``, ``stack``):
autograd unrolls the loop and backpropagates through time by itself.

The equations (W_i* act on the input, W_h* on the previous hidden state; each
b is a bias, and both biases are kept, as PyTorch does, so its state_dicts load):

    RNN   h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)      (or relu)

    LSTM  i = sigmoid(W_ii x + b_ii + W_hi h + b_hi)   input gate
          f = sigmoid(W_if x + b_if + W_hf h + b_hf)   forget gate
          g = tanh(W_ig x + b_ig + W_hg h + b_hg)      candidate cell
          o = sigmoid(W_io x + b_io + W_ho h + b_ho)   output gate
          c_t = f * c_{t-1} + i * g
          h_t = o * tanh(c_t)          (with proj_size: h_t = W_hr (o * tanh(c_t)))

    GRU   r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)   reset gate
          z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)   update gate
          n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
          h_t = (1 - z) * n + z * h_{t-1}

The gate weights are stacked in one matrix in that order (LSTM: i, f, g, o;
GRU: r, z, n), so ``weight_ih`` is (gates * hidden_size, input_size). All
parameters start from U(-1/sqrt(hidden_size), 1/sqrt(hidden_size)).

The cells (RNNCell, LSTMCell, GRUCell) take one step; RNN, LSTM and GRU run
whole sequences through ``num_layers`` stacked layers, optionally in both
directions. PackedSequence (variable-length batches) is not supported: pad
the sequences instead.
"""
import math
import numbers
import warnings

from ..tensor import empty, zeros
from . import functional as F, init
from .module import Module
from .parameter import Parameter

__all__ = ["RNNCellBase", "RNNCell", "LSTMCell", "GRUCell", "RNNBase", "RNN", "LSTM", "GRU"]


# ---------------------------------------------------------------- one time step
# ``x_proj`` is W_ih x + b_ih, computed beforehand (for a whole sequence at once in RNNBase).
def _rnn_step(x_proj, h, w_hh, b_hh, w_hr=None, activation=F.tanh):
    """h' = activation(W_ih x + b_ih + W_hh h + b_hh)."""
    return activation(x_proj + F.linear(h, w_hh, b_hh))


def _relu_rnn_step(x_proj, h, w_hh, b_hh, w_hr=None):
    return _rnn_step(x_proj, h, w_hh, b_hh, activation=F.relu)


def _lstm_step(x_proj, state, w_hh, b_hh, w_hr=None):
    """(h, c) -> (h', c'): c' = f * c + i * g, h' = o * tanh(c') (projected by W_hr if given)."""
    h, c = state
    i, f, g, o = (x_proj + F.linear(h, w_hh, b_hh)).chunk(4, -1)
    c = F.sigmoid(f) * c + F.sigmoid(i) * F.tanh(g)
    h = F.sigmoid(o) * F.tanh(c)
    if w_hr is not None:
        h = F.linear(h, w_hr)
    return h, c


def _gru_step(x_proj, h, w_hh, b_hh, w_hr=None):
    """h' = (1 - z) * n + z * h, with n = tanh(W_in x + b_in + r * (W_hn h + b_hn))."""
    x_r, x_z, x_n = x_proj.chunk(3, -1)
    # W_hn h + b_hn stays apart from the input term: the reset gate r scales it alone.
    h_r, h_z, h_n = F.linear(h, w_hh, b_hh).chunk(3, -1)
    r = F.sigmoid(x_r + h_r)
    z = F.sigmoid(x_z + h_z)
    n = F.tanh(x_n + r * h_n)
    return (1 - z) * n + z * h


_STEPS = {"RNN_TANH": _rnn_step, "RNN_RELU": _relu_rnn_step, "LSTM": _lstm_step, "GRU": _gru_step}
_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}


def _check_positive_int(name, layer, value):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise TypeError(f"{layer}: {name} should be of type int, got: {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"{layer}: {name} must be greater than zero, got {value}")


def _check_dtypes(layer, input, states, weight):
    """Input, states and weights must share one dtype (no silent promotion of a float32 model)."""
    for what, t in [("input", input)] + [(f"hidden state {k}", s) for k, s in enumerate(states) if s is not None]:
        if t.dtype != weight.dtype:
            raise ValueError(f"{layer}: {what} dtype ({t.dtype}) does not match weight dtype ({weight.dtype}); "
                             f"convert it with .to({weight.dtype}) or the model with .to({t.dtype})")


def _init_uniform(module):
    """Every parameter from U(-1/sqrt(hidden_size), 1/sqrt(hidden_size)), as PyTorch."""
    bound = 1 / math.sqrt(module.hidden_size) if module.hidden_size > 0 else 0
    for weight in module.parameters():
        init.uniform_(weight, -bound, bound)


# ---------------------------------------------------------------- cells
class RNNCellBase(Module):
    """What the cells share: ``weight_ih`` (chunks * hidden, input), ``weight_hh`` (chunks * hidden,
    hidden), ``bias_ih`` and ``bias_hh`` (chunks * hidden), the input checks and the repr."""

    def __init__(self, input_size, hidden_size, bias, num_chunks, device=None, dtype=None):
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        self.weight_ih = Parameter(empty(num_chunks * hidden_size, input_size, dtype=dtype, device=device))
        self.weight_hh = Parameter(empty(num_chunks * hidden_size, hidden_size, dtype=dtype, device=device))
        if bias:
            self.bias_ih = Parameter(empty(num_chunks * hidden_size, dtype=dtype, device=device))
            self.bias_hh = Parameter(empty(num_chunks * hidden_size, dtype=dtype, device=device))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self):
        _init_uniform(self)

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if getattr(self, "nonlinearity", "tanh") != "tanh":
            s += f", nonlinearity={self.nonlinearity}"
        return s

    def _batched(self, input, states):
        """Check the input (1-D: one sample, or 2-D: a batch) and the given states (None or
        tensors of shape (batch, hidden_size), without the batch dim for a 1-D input); return
        them batched, and whether the input was."""
        name = type(self).__name__
        if input.ndim not in (1, 2):
            raise ValueError(f"{name}: Expected input to be 1D or 2D, got {input.ndim}D instead "
                             f"(shape {input.shape})")
        if input.shape[-1] != self.input_size:
            raise RuntimeError(f"{name}: input has inconsistent input_size: got {input.shape[-1]}, "
                               f"expected {self.input_size} (input shape {input.shape})")
        _check_dtypes(name, input, states, self.weight_ih)
        batched = input.ndim == 2
        expected = (input.shape[0], self.hidden_size) if batched else (self.hidden_size,)
        for k, s in enumerate(states):
            if s is not None and s.shape != expected:
                raise RuntimeError(f"{name}: expected hidden state {k} of shape {expected} for an input of "
                                   f"shape {input.shape}, got {s.shape}")
        if batched:
            return input, states, True
        return input.unsqueeze(0), [s if s is None else s.unsqueeze(0) for s in states], False

    def _zeros(self, input):
        return zeros(input.shape[0], self.hidden_size, dtype=input.dtype, device=input.device)


class RNNCell(RNNCellBase):
    """One step of an Elman RNN: h' = tanh(W_ih x + b_ih + W_hh h + b_hh) (or relu).

    ``forward(input, hx=None)``: input (N, input_size) or unbatched (input_size,); hx of the
    matching shape (N, hidden_size) or (hidden_size,), zeros if None. Returns h'.
    """

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", device=None, dtype=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNNCell: unknown nonlinearity {nonlinearity!r}, select from 'tanh' or 'relu'")
        super().__init__(input_size, hidden_size, bias, num_chunks=1, device=device, dtype=dtype)
        self.nonlinearity = nonlinearity

    def forward(self, input, hx=None):
        input, (hx,), batched = self._batched(input, [hx])
        if hx is None:
            hx = self._zeros(input)
        step = _rnn_step if self.nonlinearity == "tanh" else _relu_rnn_step
        h = step(F.linear(input, self.weight_ih, self.bias_ih), hx, self.weight_hh, self.bias_hh)
        return h if batched else h.squeeze(0)


class LSTMCell(RNNCellBase):
    """One LSTM step (gates i, f, g, o; see the module docstring):
    c' = f * c + i * g, h' = o * tanh(c').

    ``forward(input, hx=None)``: input (N, input_size) or (input_size,); hx a pair (h, c) of
    shape (N, hidden_size) (or (hidden_size,)), zeros if None. Returns (h', c').
    """

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__(input_size, hidden_size, bias, num_chunks=4, device=device, dtype=dtype)

    def forward(self, input, hx=None):
        if hx is not None and (not isinstance(hx, (tuple, list)) or len(hx) != 2):
            raise TypeError(f"LSTMCell: hx must be a pair (h_0, c_0), got {type(hx).__name__}")
        input, (h, c), batched = self._batched(input, [None, None] if hx is None else list(hx))
        h = self._zeros(input) if h is None else h
        c = self._zeros(input) if c is None else c
        h, c = _lstm_step(F.linear(input, self.weight_ih, self.bias_ih), (h, c), self.weight_hh, self.bias_hh)
        return (h, c) if batched else (h.squeeze(0), c.squeeze(0))


class GRUCell(RNNCellBase):
    """One GRU step (gates r, z, n; see the module docstring): h' = (1 - z) * n + z * h.

    ``forward(input, hx=None)``: as RNNCell. Returns h'.
    """

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__(input_size, hidden_size, bias, num_chunks=3, device=device, dtype=dtype)

    def forward(self, input, hx=None):
        input, (hx,), batched = self._batched(input, [hx])
        if hx is None:
            hx = self._zeros(input)
        h = _gru_step(F.linear(input, self.weight_ih, self.bias_ih), hx, self.weight_hh, self.bias_hh)
        return h if batched else h.squeeze(0)


# ---------------------------------------------------------------- whole sequences
class RNNBase(Module):
    """A stack of ``num_layers`` recurrent layers run over whole sequences; ``mode`` is
    'RNN_TANH', 'RNN_RELU', 'LSTM' or 'GRU' (use the subclasses RNN, LSTM, GRU).

    Shapes (D = 2 if bidirectional else 1, H_out = proj_size or hidden_size):
      input   (L, N, input_size), (N, L, input_size) with batch_first, or unbatched (L, input_size)
      h_0     (D * num_layers, N, H_out), or (D * num_layers, H_out) unbatched; zeros if None
      c_0     (D * num_layers, N, hidden_size) (LSTM only)
      output  (L, N, D * H_out) (batch first with batch_first): the last layer's h_t at every t,
              the two directions concatenated
      h_n     (D * num_layers, N, H_out): the final state of every layer and direction,
              ordered layer 0 forward, layer 0 reverse, layer 1 forward, ...

    Layer k > 0 reads the output of layer k - 1 (through dropout with probability
    ``dropout`` in training mode). The reverse direction reads the sequence from its end.
    Parameters are named as PyTorch's (``weight_ih_l0``, ``bias_hh_l1_reverse``,
    ``weight_hr_l0`` with proj_size), so a torch state_dict loads as is.
    PackedSequence inputs are not supported.
    """

    def __init__(self, mode, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, proj_size=0, device=None, dtype=None):
        super().__init__()
        name = type(self).__name__
        if mode not in _STEPS:
            raise ValueError(f"{name}: unrecognized RNN mode {mode!r}, expected one of {sorted(_STEPS)}")
        _check_positive_int("hidden_size", name, hidden_size)
        _check_positive_int("num_layers", name, num_layers)
        if isinstance(dropout, bool) or not isinstance(dropout, numbers.Number) or not 0 <= dropout <= 1:
            raise ValueError(f"{name}: dropout should be a number in range [0, 1] representing the "
                             f"probability of an element being zeroed, got {dropout!r}")
        if dropout > 0 and num_layers == 1:
            warnings.warn(f"{name}: dropout is applied between recurrent layers, so a non-zero dropout "
                          f"expects num_layers greater than 1, but got dropout={dropout} and "
                          f"num_layers={num_layers}")
        if proj_size < 0:
            raise ValueError(f"{name}: proj_size should be a positive integer or zero to disable "
                             f"projections, got {proj_size}")
        if proj_size and mode != "LSTM":
            raise ValueError(f"{name}: proj_size argument is only supported for LSTM, not RNN or GRU")
        if proj_size >= hidden_size:
            raise ValueError(f"{name}: proj_size ({proj_size}) has to be smaller than hidden_size ({hidden_size})")
        self.mode = mode
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self.proj_size = proj_size
        directions = 2 if bidirectional else 1
        gate_size = _GATES[mode] * hidden_size
        h_out = proj_size or hidden_size
        self._all_weights = []      # the parameter names, one list per layer and direction
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else h_out * directions
            for direction in range(directions):
                suffix = f"_l{layer}" + ("_reverse" if direction else "")
                shapes = [("weight_ih", (gate_size, layer_input)), ("weight_hh", (gate_size, h_out))]
                if bias:
                    shapes += [("bias_ih", (gate_size,)), ("bias_hh", (gate_size,))]
                if proj_size:
                    shapes += [("weight_hr", (proj_size, hidden_size))]
                for base, shape in shapes:
                    setattr(self, base + suffix, Parameter(empty(*shape, dtype=dtype, device=device)))
                self._all_weights.append([base + suffix for base, _ in shapes])
        self._flat_weights_names = [n for names in self._all_weights for n in names]
        self.reset_parameters()

    def reset_parameters(self):
        _init_uniform(self)

    def flatten_parameters(self):
        """A no-op: PyTorch packs the weights into one buffer for cuDNN; tinydl has none."""

    @property
    def _flat_weights(self):
        return [getattr(self, n) for n in self._flat_weights_names]

    @property
    def all_weights(self):
        """The parameters, one list per layer and direction (w_ih, w_hh[, b_ih, b_hh][, w_hr])."""
        return [[getattr(self, n) for n in names] for names in self._all_weights]

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

    # ------------------------------------------------------------ checks
    def _check(self, input, states):
        """Check the input and the given initial states (h_0, and c_0 for LSTM; None: zeros);
        raise naming this layer and the shapes at fault. Returns whether the input is batched."""
        name = type(self).__name__
        if input.ndim not in (2, 3):
            raise ValueError(f"{name}: Expected input to be 2D or 3D, got {input.ndim}D instead "
                             f"(shape {input.shape})")
        if input.shape[-1] != self.input_size:
            raise RuntimeError(f"{name}: input.size(-1) must be equal to input_size. Expected "
                               f"{self.input_size}, got {input.shape[-1]} (input shape {input.shape})")
        if input.shape[1 if self.batch_first and input.ndim == 3 else 0] == 0:
            raise RuntimeError(f"{name}: expected sequence length to be larger than 0, got input shape {input.shape}")
        _check_dtypes(name, input, states, self.weight_ih_l0)
        batched = input.ndim == 3
        n = input.shape[0 if self.batch_first else 1] if batched else None
        layers = self.num_layers * (2 if self.bidirectional else 1)
        sizes = [self.proj_size or self.hidden_size, self.hidden_size]     # h, c
        for k, (s, size) in enumerate(zip(states, sizes)):
            if s is None:
                continue
            expected = (layers, n, size) if batched else (layers, size)
            if s.shape != expected:
                what = "hx" if len(states) == 1 else f"hx[{k}]"
                raise RuntimeError(f"{name}: expected {what} of shape {expected} for an input of shape "
                                   f"{input.shape}, got {s.shape}")
        return batched

    # ------------------------------------------------------------ forward
    def _run_direction(self, x, state, weights, reverse):
        """One layer in one direction over x (L, N, features); returns (outputs (L, N, H_out), last state)."""
        w_ih, w_hh, b_ih, b_hh, w_hr = weights
        step = _STEPS[self.mode]
        # W_ih x_t + b_ih for every t in one matmul; split (not x[t]): its backward joins the pieces once.
        x_proj = [p.squeeze(0) for p in F.linear(x, w_ih, b_ih).split(1, 0)]
        outputs = [None] * len(x_proj)
        for t in (reversed(range(len(x_proj))) if reverse else range(len(x_proj))):
            state = step(x_proj[t], state, w_hh, b_hh, w_hr)
            outputs[t] = state[0] if self.mode == "LSTM" else state
        return F.stack(outputs), state

    def _weights(self, layer, direction):
        """(w_ih, w_hh, b_ih, b_hh, w_hr) of one layer and direction, None where absent."""
        suffix = f"_l{layer}" + ("_reverse" if direction else "")
        return tuple(getattr(self, base + suffix, None)
                     for base in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr"))

    def forward(self, input, hx=None):
        """input (L, N, input_size) (see the class docstring for all shapes); hx: h_0, or for
        LSTM the pair (h_0, c_0); None: zeros. Returns (output, h_n), for LSTM (output, (h_n, c_n))."""
        lstm = self.mode == "LSTM"
        if not lstm:
            states = [hx]
        elif hx is None:
            states = [None, None]
        elif isinstance(hx, (tuple, list)) and len(hx) == 2:
            states = list(hx)
        else:
            raise TypeError(f"{type(self).__name__}: hx must be a pair (h_0, c_0), got {type(hx).__name__}")
        batched = self._check(input, states)
        batch_dim = 0 if self.batch_first else 1
        if not batched:     # a batch of one, removed again at the end
            input = input.unsqueeze(batch_dim)
            states = [s if s is None else s.unsqueeze(1) for s in states]
        if self.batch_first:
            input = input.transpose(0, 1)       # the loop runs over dim 0: time
        directions = 2 if self.bidirectional else 1
        sizes = [self.proj_size or self.hidden_size, self.hidden_size]     # h, c
        states = [zeros(self.num_layers * directions, input.shape[1], size, dtype=input.dtype, device=input.device)
                  if s is None else s for s, size in zip(states, sizes)]
        x, finals = input, []
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(directions):
                k = layer * directions + direction
                state = (states[0][k], states[1][k]) if lstm else states[0][k]
                out, last = self._run_direction(x, state, self._weights(layer, direction), direction == 1)
                outputs.append(out)
                finals.append(last)
            x = outputs[0] if len(outputs) == 1 else F.cat(outputs, -1)
            if self.training and self.dropout > 0 and layer < self.num_layers - 1:
                x = F.dropout(x, self.dropout, training=True)
        output = x.transpose(0, 1) if self.batch_first else x
        if lstm:
            h_n = (F.stack([h for h, _ in finals]), F.stack([c for _, c in finals]))
        else:
            h_n = F.stack(finals)
        if not batched:
            output = output.squeeze(batch_dim)
            h_n = tuple(s.squeeze(1) for s in h_n) if lstm else h_n.squeeze(1)
        return output, h_n


class RNN(RNNBase):
    """Elman RNN over whole sequences: h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)
    (``nonlinearity='relu'``: relu). Shapes and options: see RNNBase.
    Returns (output, h_n)."""

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, device=None, dtype=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNN: unknown nonlinearity {nonlinearity!r}, select from 'tanh' or 'relu'")
        super().__init__("RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU", input_size, hidden_size,
                         num_layers, bias, batch_first, dropout, bidirectional, 0, device, dtype)
        self.nonlinearity = nonlinearity


class LSTM(RNNBase):
    """LSTM over whole sequences (gates i, f, g, o; see the module docstring);
    ``proj_size > 0`` projects each h_t to proj_size features by ``weight_hr_l{k}``.
    Shapes and options: see RNNBase. ``forward(input, (h_0, c_0)=None)`` returns
    (output, (h_n, c_n))."""

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, proj_size=0, device=None, dtype=None):
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         proj_size, device, dtype)


class GRU(RNNBase):
    """GRU over whole sequences (gates r, z, n; see the module docstring).
    Shapes and options: see RNNBase. Returns (output, h_n)."""

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, device=None, dtype=None):
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         0, device, dtype)
