"""nn.RNN / LSTM / GRU and their cells against PyTorch: torch's parameters are loaded into
tinydl through load_state_dict, then outputs, final states and the gradients (of the input,
h_0/c_0 and every parameter, under a random upstream gradient) are compared."""
import warnings

import numpy as np
import pytest
import torch

import tinydl as td
import tinydl.nn as nn

# torch's own notice that its oneDNN path has no LSTM projection: not ours to see.
pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections is not supported")

TOL = {np.float64: 1e-10, np.float32: 1e-5}
DTYPES = {np.float64: (td.float64, torch.float64), np.float32: (td.float32, torch.float32)}

# (class name, constructor kwargs): every recurrence, LSTM also with a projection.
MODES = [("RNN", {}), ("RNN", {"nonlinearity": "relu"}), ("LSTM", {}), ("LSTM", {"proj_size": 2}), ("GRU", {})]

# Options that change the math; hx: give h_0 (and c_0), unbatched: a 2-D input, train: the mode.
CONFIGS = [
    {},
    {"hx": True},
    {"num_layers": 2, "hx": True},
    {"bidirectional": True, "hx": True},
    {"num_layers": 2, "bidirectional": True, "batch_first": True, "hx": True},
    {"bias": False, "hx": True},
    {"batch_first": True},
    {"unbatched": True},
    {"unbatched": True, "hx": True, "num_layers": 2, "bidirectional": True},
    {"unbatched": True, "batch_first": True, "hx": True},
    {"num_layers": 2, "dropout": 0.0, "train": True, "hx": True},
    {"num_layers": 3, "dropout": 0.5, "train": False, "bidirectional": True, "hx": True},
]


def _id(x):
    return "-".join(f"{k}={v}" for k, v in x.items()) or "default"


def _assert_close(ours, theirs, tol, what):
    assert ours.dtype == (np.float64 if theirs.dtype == torch.float64 else np.float32), what
    np.testing.assert_allclose(ours.detach().numpy(), theirs.detach().numpy(), rtol=tol, atol=tol, err_msg=what)


def _flat(out):
    """(output, h_n) or (output, (h_n, c_n)) or h or (h, c) -> a flat list of tensors."""
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _flat(o)]
    return [out]


def _compare(theirs, ours, inputs, np_dtype):
    """Load torch's parameters into ours, run both on ``inputs`` (arrays; None: left out), and
    compare outputs and the gradients of the inputs and parameters under a random upstream gradient."""
    tol = TOL[np_dtype]
    td_dtype, torch_dtype = DTYPES[np_dtype]
    theirs.to(torch_dtype)
    ours.to(td_dtype)
    sd = theirs.state_dict()
    assert list(ours.state_dict()) == list(sd)
    assert [t.shape for t in ours.state_dict().values()] == [tuple(t.shape) for t in sd.values()]
    ours.load_state_dict(sd)

    t_in = [None if a is None else torch.tensor(a.astype(np_dtype), requires_grad=True) for a in inputs]
    o_in = [None if a is None else td.tensor(a.astype(np_dtype), requires_grad=True) for a in inputs]

    def call(module, args):
        x, rest = args[0], [a for a in args[1:] if a is not None]
        if not rest:
            return module(x)
        return module(x, rest[0] if len(rest) == 1 else tuple(rest))

    t_out, o_out = _flat(call(theirs, t_in)), _flat(call(ours, o_in))
    assert len(t_out) == len(o_out)
    for k, (o, t) in enumerate(zip(o_out, t_out)):
        assert o.shape == tuple(t.shape), f"output {k}"
        _assert_close(o, t, tol, f"output {k}")

    rng = np.random.default_rng(1)
    ups = [rng.standard_normal(tuple(t.shape)).astype(np_dtype) for t in t_out]
    t_leaves = [a for a in t_in if a is not None] + list(theirs.parameters())
    o_leaves = [a for a in o_in if a is not None] + list(ours.parameters())
    t_grads = torch.autograd.grad(t_out, t_leaves, [torch.tensor(u) for u in ups])
    o_grads = td.autograd.grad(o_out, o_leaves, [td.tensor(u) for u in ups])
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    names = [f"input {k}" for k, a in enumerate(inputs) if a is not None] + [n for n, _ in theirs.named_parameters()]
    for name, o, t in zip(names, o_grads, t_grads):
        _assert_close(o, t, tol, f"gradient of {name}")


def _sequence_inputs(cls_name, kwargs, cfg, rng):
    """The input and (if cfg['hx']) h_0, c_0 arrays for a sequence module."""
    seq, batch, n_in = 5, 3, 4
    d = 2 if cfg.get("bidirectional") else 1
    layers = d * cfg.get("num_layers", 1)
    h_out = kwargs.get("proj_size") or 6
    if cfg.get("unbatched"):
        x, h_shape, c_shape = rng.standard_normal((seq, n_in)), (layers, h_out), (layers, 6)
    else:
        x = rng.standard_normal((batch, seq, n_in) if cfg.get("batch_first") else (seq, batch, n_in))
        h_shape, c_shape = (layers, batch, h_out), (layers, batch, 6)
    h0 = rng.standard_normal(h_shape) if cfg.get("hx") else None
    c0 = rng.standard_normal(c_shape) if cfg.get("hx") and cls_name == "LSTM" else None
    return [x, h0, c0]


@pytest.mark.parametrize("np_dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("cfg", CONFIGS, ids=_id)
@pytest.mark.parametrize("mode", MODES, ids=lambda m: m[0] + _id(m[1]).replace("default", ""))
def test_sequence_module_matches_torch(mode, cfg, np_dtype):
    cls_name, kwargs = mode
    options = {k: v for k, v in cfg.items() if k not in ("hx", "unbatched", "train")}
    options.update(kwargs)
    torch.manual_seed(0)
    theirs = getattr(torch.nn, cls_name)(4, 6, **options)
    ours = getattr(nn, cls_name)(4, 6, **options)
    theirs.train(cfg.get("train", True))
    ours.train(cfg.get("train", True))
    assert repr(ours) == repr(theirs)
    _compare(theirs, ours, _sequence_inputs(cls_name, kwargs, cfg, np.random.default_rng(0)), np_dtype)


CELLS = [("RNNCell", {}), ("RNNCell", {"nonlinearity": "relu"}), ("LSTMCell", {}), ("GRUCell", {})]
CELL_CONFIGS = [{}, {"hx": True}, {"unbatched": True}, {"unbatched": True, "hx": True}, {"bias": False, "hx": True}]


@pytest.mark.parametrize("np_dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("cfg", CELL_CONFIGS, ids=_id)
@pytest.mark.parametrize("cell", CELLS, ids=lambda m: m[0] + _id(m[1]).replace("default", ""))
def test_cell_matches_torch(cell, cfg, np_dtype):
    cls_name, kwargs = cell
    options = dict(kwargs, **({"bias": False} if cfg.get("bias") is False else {}))
    theirs = getattr(torch.nn, cls_name)(4, 5, **options)
    ours = getattr(nn, cls_name)(4, 5, **options)
    assert repr(ours) == repr(theirs)
    rng = np.random.default_rng(0)
    shape = (4,) if cfg.get("unbatched") else (3, 4)
    h_shape = (5,) if cfg.get("unbatched") else (3, 5)
    x = rng.standard_normal(shape)
    h = rng.standard_normal(h_shape) if cfg.get("hx") else None
    c = rng.standard_normal(h_shape) if cfg.get("hx") and cls_name == "LSTMCell" else None
    _compare(theirs, ours, [x, h, c], np_dtype)


@pytest.mark.parametrize("cls_name", ["LSTM", "GRU"])
def test_gradcheck_tiny_module(cls_name):
    """Finite differences on every input and parameter of a tiny 2-layer bidirectional net (float64)."""
    td.manual_seed(0)
    kwargs = {"proj_size": 2} if cls_name == "LSTM" else {}
    module = getattr(nn, cls_name)(2, 3, num_layers=2, bidirectional=True, **kwargs).double()
    rng = np.random.default_rng(0)
    x = td.tensor(rng.standard_normal((3, 2, 2)), requires_grad=True)
    h_out = kwargs.get("proj_size", 3)
    h0 = td.tensor(rng.standard_normal((4, 2, h_out)), requires_grad=True)
    params = list(module.parameters())
    if cls_name == "LSTM":
        c0 = td.tensor(rng.standard_normal((4, 2, 3)), requires_grad=True)
        fn = lambda x, h0, c0, *_: _flat(module(x, (h0, c0)))      # noqa: E731  params: perturbed in place
        assert td.gradcheck(fn, (x, h0, c0, *params), atol=1e-7, rtol=1e-5)
    else:
        fn = lambda x, h0, *_: _flat(module(x, h0))                 # noqa: E731
        assert td.gradcheck(fn, (x, h0, *params), atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("cls_name", ["RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell"])
def test_float32_stays_float32(cls_name):
    module = getattr(nn, cls_name)(4, 5)
    cell = cls_name.endswith("Cell")
    x = td.randn(3, 4, requires_grad=True) if cell else td.randn(2, 3, 4, requires_grad=True)
    outs = _flat(module(x))
    assert all(o.dtype == np.float32 for o in outs)
    grads = td.autograd.grad(outs, [x] + list(module.parameters()), [td.randn(*o.shape) for o in outs])
    assert all(g.dtype == np.float32 for g in grads)


@pytest.mark.parametrize("cls_name,kwargs", [("RNN", {}), ("LSTM", {"proj_size": 3}), ("GRU", {}),
                                             ("RNNCell", {}), ("LSTMCell", {}), ("GRUCell", {})])
def test_init_range_and_parameter_shapes_as_torch(cls_name, kwargs):
    if not cls_name.endswith("Cell"):
        kwargs = dict(kwargs, num_layers=2, bidirectional=True)
    td.manual_seed(0)
    ours = getattr(nn, cls_name)(7, 16, **kwargs)
    theirs = getattr(torch.nn, cls_name)(7, 16, **kwargs)
    assert [(n, p.shape) for n, p in ours.named_parameters()] == \
        [(n, tuple(p.shape)) for n, p in theirs.named_parameters()]
    bound = 1 / np.sqrt(16)
    values = np.concatenate([p.detach().numpy().ravel() for p in ours.parameters()])
    assert np.abs(values).max() <= bound and np.abs(values).max() > 0.95 * bound
    assert abs(values.mean()) < 0.02        # U(-b, b): centred
    if not cls_name.endswith("Cell"):
        assert ours.flatten_parameters() is None
        assert ours._flat_weights_names == theirs._flat_weights_names
        assert [[p.shape for p in ps] for ps in ours.all_weights] == \
            [[tuple(p.shape) for p in ps] for ps in theirs.all_weights]


def test_dropout_acts_in_training_only():
    td.manual_seed(0)
    module = nn.GRU(4, 8, num_layers=2, dropout=0.5)
    x = td.randn(5, 3, 4)
    a, _ = module(x)
    b, _ = module(x)
    assert not np.allclose(a.detach().numpy(), b.detach().numpy())      # a new mask each call
    module.eval()
    c, _ = module(x)
    d, _ = module(x)
    np.testing.assert_array_equal(c.detach().numpy(), d.detach().numpy())
    with pytest.warns(UserWarning, match="num_layers"):
        nn.LSTM(4, 8, dropout=0.2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nn.LSTM(4, 8, num_layers=2, dropout=0.2)


@pytest.mark.parametrize("make,call,error,pattern", [
    (lambda: nn.LSTM(3, 4), lambda m: m(td.randn(5)), ValueError, r"LSTM: .*2D or 3D, got 1D.*\(5,\)"),
    (lambda: nn.GRU(3, 4), lambda m: m(td.randn(5, 2, 4)), RuntimeError, r"GRU: .*Expected 3, got 4.*\(5, 2, 4\)"),
    (lambda: nn.RNN(3, 4, 2), lambda m: m(td.randn(5, 2, 3), td.randn(1, 2, 4)), RuntimeError,
     r"RNN: expected hx of shape \(2, 2, 4\).*\(5, 2, 3\), got \(1, 2, 4\)"),
    (lambda: nn.RNN(3, 4), lambda m: m(td.randn(5, 3), td.randn(1, 1, 4)), RuntimeError,
     r"RNN: expected hx of shape \(1, 4\).*got \(1, 1, 4\)"),
    (lambda: nn.LSTM(3, 4, proj_size=2), lambda m: m(td.randn(5, 2, 3), (td.randn(1, 2, 4), td.randn(1, 2, 4))),
     RuntimeError, r"LSTM: expected hx\[0\] of shape \(1, 2, 2\)"),
    (lambda: nn.LSTM(3, 4), lambda m: m(td.randn(5, 2, 3), (td.randn(1, 2, 4), td.randn(1, 3, 4))),
     RuntimeError, r"LSTM: expected hx\[1\] of shape \(1, 2, 4\).*got \(1, 3, 4\)"),
    (lambda: nn.LSTM(3, 4), lambda m: m(td.randn(5, 2, 3), td.randn(1, 2, 4)), TypeError, r"LSTM: hx must be a pair"),
    (lambda: nn.GRUCell(3, 4), lambda m: m(td.randn(2, 5)), RuntimeError, r"GRUCell: .*got 5, expected 3"),
    (lambda: nn.GRUCell(3, 4), lambda m: m(td.randn(1, 1, 3)), ValueError, r"GRUCell: .*1D or 2D, got 3D"),
    (lambda: nn.RNNCell(3, 4), lambda m: m(td.randn(2, 3), td.randn(3, 4)), RuntimeError,
     r"RNNCell: expected hidden state 0 of shape \(2, 4\).*\(2, 3\), got \(3, 4\)"),
    (lambda: nn.LSTMCell(3, 4), lambda m: m(td.randn(3), (td.randn(4), td.randn(1, 4))), RuntimeError,
     r"LSTMCell: expected hidden state 1 of shape \(4,\)"),
    (lambda: nn.LSTMCell(3, 4), lambda m: m(td.randn(2, 3), td.randn(2, 4)), TypeError, r"LSTMCell: hx must be a pair"),
    (lambda: nn.GRU(3, 4, batch_first=True), lambda m: m(td.randn(2, 0, 3)), RuntimeError,
     r"GRU: expected sequence length to be larger than 0, got input shape \(2, 0, 3\)"),
    (lambda: nn.LSTM(3, 4), lambda m: m(td.randn(5, 2, 3, dtype=td.float64)), ValueError,
     r"LSTM: input dtype \(float64\) does not match weight dtype \(float32\)"),
    (lambda: nn.GRUCell(3, 4), lambda m: m(td.randn(2, 3), td.randn(2, 4, dtype=td.float64)), ValueError,
     r"GRUCell: hidden state 0 dtype \(float64\)"),
])
def test_bad_shapes_raise_naming_the_layer(make, call, error, pattern):
    with pytest.raises(error, match=pattern):
        call(make())


@pytest.mark.parametrize("make,error,pattern", [
    (lambda: nn.RNN(3, 4, nonlinearity="sigmoid"), ValueError, "RNN: unknown nonlinearity"),
    (lambda: nn.RNNCell(3, 4, nonlinearity="sigmoid"), ValueError, "RNNCell: unknown nonlinearity"),
    (lambda: nn.LSTM(3, 4, proj_size=4), ValueError, "smaller than hidden_size"),
    (lambda: nn.RNNBase("GRU", 3, 4, proj_size=2), ValueError, "only supported for LSTM"),
    (lambda: nn.GRU(3, 4, dropout=1.5), ValueError, r"GRU: dropout should be a number in range \[0, 1\]"),
    (lambda: nn.LSTM(3, 0), ValueError, "LSTM: hidden_size must be greater than zero"),
    (lambda: nn.GRU(3, 4, num_layers=1.0), TypeError, "GRU: num_layers should be of type int"),
])
def test_bad_arguments_raise(make, error, pattern):
    with pytest.raises(error, match=pattern):
        make()


def test_rnnbase_runs_any_mode_and_h_n_is_last_step():
    """RNNBase('LSTM', ...) works directly; h_n of the forward direction is the output's last step,
    of the reverse direction its first."""
    td.manual_seed(0)
    module = nn.RNNBase("LSTM", 3, 4, bidirectional=True)
    out, (h, c) = module(td.randn(6, 2, 3))
    np.testing.assert_array_equal(h.detach().numpy()[0], out.detach().numpy()[-1, :, :4])
    np.testing.assert_array_equal(h.detach().numpy()[1], out.detach().numpy()[0, :, 4:])


@pytest.mark.gpu
def test_cuda_matches_cpu():
    td.manual_seed(0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 3, 4)).astype(np.float32)
    for cls in (nn.LSTM, nn.GRU, nn.RNN):
        kwargs = {"proj_size": 2} if cls is nn.LSTM else {}
        cpu = cls(4, 6, num_layers=2, bidirectional=True, **kwargs)
        gpu = cls(4, 6, num_layers=2, bidirectional=True, **kwargs).to("cuda")
        gpu.load_state_dict(cpu.state_dict())
        results = []
        for module, device in ((cpu, "cpu"), (gpu, "cuda")):
            xin = td.tensor(x, device=device, requires_grad=True)
            outs = _flat(module(xin))
            assert all(o.device.type == device for o in outs)
            ups = [td.tensor(np.random.default_rng(k).standard_normal(o.shape).astype(np.float32), device=device)
                   for k, o in enumerate(outs)]
            grads = td.autograd.grad(outs, [xin] + list(module.parameters()), ups)
            results.append([o.detach().cpu().numpy() for o in outs] + [g.cpu().numpy() for g in grads])
        for a, b in zip(*results):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
