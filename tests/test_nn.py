"""nn core: Parameter, Module machinery, containers, basic layers and nn.init.

Wherever PyTorch has the same thing the test builds it in both libraries
(usually with the very same code, since the APIs match) and compares names,
shapes, numbers and messages.
"""
import copy
import math
from collections import OrderedDict

import numpy as np
import pytest
import torch

import tinydl as td
import tinydl.nn as nn
import tinydl.nn.functional as F
from tinydl.nn import init


def needs(*names):
    """Skip until the ops another engineer is writing exist in F."""
    missing = [n for n in names if not hasattr(F, n)]
    return pytest.mark.skipif(bool(missing), reason=f"F.{', F.'.join(missing)} not written yet")


def t2n(t):
    return t.detach().numpy()


def copy_weights(td_module, torch_module):
    """torch -> tinydl through NumPy arrays (load_state_dict accepts arrays)."""
    td_module.load_state_dict({k: v.numpy() for k, v in torch_module.state_dict().items()})


# ====================================================================== Parameter
def test_parameter_basics():
    data = td.tensor([1.0, 2.0])
    p = nn.Parameter(data)
    assert isinstance(p, td.Tensor) and p.requires_grad and p.is_leaf
    assert p.array is data.array                     # shares memory, as torch.nn.Parameter
    assert repr(p).startswith("Parameter containing:\ntensor(")
    assert repr(p).endswith("requires_grad=True)")
    assert not nn.Parameter(data, requires_grad=False).requires_grad
    assert nn.Parameter().shape == (0,)
    assert type(p.detach()) is td.Tensor
    with pytest.raises(RuntimeError, match="floating point"):
        nn.Parameter(td.tensor([1, 2]))


def test_parameter_from_graph_tensor_is_a_leaf():
    x = td.tensor([1.0, 2.0], requires_grad=True)
    p = nn.Parameter(x * 2)
    assert p.is_leaf and p.grad_fn is None and p.requires_grad


# ====================================================================== naming vs torch
def build_net(lib):
    """One definition for both libraries: they share the API."""
    tnn = lib.nn

    class Block(tnn.Module):
        def __init__(self):
            super().__init__()
            # buffer registered before the parameter: state_dict still lists params first
            self.register_buffer("running_mean", lib.zeros(6))
            self.scale = tnn.Parameter(lib.ones(6))
            self.features = tnn.Sequential(
                tnn.Linear(4, 8),
                tnn.Sequential(tnn.Linear(8, 8, bias=False), tnn.Identity()),
                tnn.Linear(8, 6))
            self.register_buffer("num_batches_tracked", lib.tensor(0))
            self.register_buffer("scratch", lib.zeros(2), persistent=False)
            self.register_parameter("absent", None)
            self.register_buffer("absent_buf", None)
            self.heads = tnn.ModuleList([tnn.Linear(6, 2), tnn.Linear(6, 3)])
            self.by_name = tnn.ModuleDict({"b": tnn.Linear(6, 1), "a": tnn.Linear(6, 4)})
            self.tail = tnn.Sequential(OrderedDict([("fc", tnn.Linear(6, 5)), ("act", tnn.Tanh())]))

    return Block()


def _names_and_shapes(pairs):
    return [(k, tuple(v.shape)) for k, v in pairs]


def test_state_dict_keys_order_and_shapes_match_torch():
    ours, theirs = build_net(td), build_net(torch)
    sd, tsd = ours.state_dict(), theirs.state_dict()
    assert isinstance(sd, OrderedDict)
    assert _names_and_shapes(sd.items()) == _names_and_shapes(tsd.items())
    assert list(sd)[:3] == ["scale", "running_mean", "num_batches_tracked"]
    assert [str(v.dtype) for v in sd.values()] == [str(v.dtype).replace("torch.", "") for v in tsd.values()]
    # detached views of the module's arrays
    assert all(type(v) is td.Tensor and not v.requires_grad for v in sd.values())
    assert sd["scale"].array is ours.scale.array
    assert all(v is p for v, p in zip(ours.state_dict(keep_vars=True).values(),
                                      list(ours.parameters())[:1]))


def test_named_members_match_torch():
    ours, theirs = build_net(td), build_net(torch)
    for method in ("named_parameters", "named_buffers", "named_modules", "named_children"):
        got = [n for n, _ in getattr(ours, method)()]
        want = [n for n, _ in getattr(theirs, method)()]
        assert got == want, method
    assert ([n for n, _ in ours.named_parameters(prefix="net", recurse=True)]
            == [n for n, _ in theirs.named_parameters(prefix="net", recurse=True)])
    assert [n for n, _ in ours.named_parameters(recurse=False)] == ["scale"]
    assert len(list(ours.parameters())) == len(list(theirs.parameters()))
    assert ours.num_parameters() == sum(p.numel() for p in theirs.parameters())
    assert len(list(ours.modules())) == len(list(theirs.modules()))
    assert len(list(ours.children())) == len(list(theirs.children()))


def test_repr_matches_torch():
    def net(tnn):
        return tnn.Sequential(
            tnn.Linear(4, 8), tnn.ReLU(inplace=True), tnn.LeakyReLU(0.2), tnn.Dropout(0.3),
            tnn.Sequential(tnn.Flatten(), tnn.Dropout2d(), tnn.Softmax(dim=1), tnn.LogSoftmax(dim=-1)),
            tnn.ModuleList([tnn.Linear(2, 2, bias=False), tnn.Linear(2, 2, bias=False), tnn.Sigmoid()]),
            tnn.ModuleDict({"x": tnn.Tanh(), "y": tnn.Identity()}),
            tnn.Unflatten(1, (2, 4)))
    assert repr(net(nn)) == repr(net(torch.nn))
    assert repr(nn.ModuleList()) == repr(torch.nn.ModuleList())


# ====================================================================== load_state_dict
def test_load_state_dict_from_torch_numpy_gives_same_outputs():
    torch.manual_seed(0)
    theirs = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Identity(), torch.nn.Linear(7, 3))
    ours = nn.Sequential(nn.Linear(5, 7), nn.Identity(), nn.Linear(7, 3))
    result = ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert repr(result) == "<All keys matched successfully>"
    x = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    np.testing.assert_allclose(t2n(ours(td.tensor(x))), t2n(theirs(torch.tensor(x))), rtol=1e-5, atol=1e-6)
    # torch tensors and tinydl Tensors are accepted as well
    ours2 = nn.Sequential(nn.Linear(5, 7), nn.Identity(), nn.Linear(7, 3))
    ours2.load_state_dict(theirs.state_dict())
    ours3 = nn.Sequential(nn.Linear(5, 7), nn.Identity(), nn.Linear(7, 3))
    ours3.load_state_dict(ours2.state_dict())
    for a, b in zip(ours.parameters(), ours3.parameters()):
        np.testing.assert_array_equal(a.array, b.array)


def test_load_state_dict_copies_in_place_keeping_dtype_and_identity():
    model = nn.Linear(3, 2, dtype=td.float64)
    weight, weight_array = model.weight, model.weight.array
    src = np.arange(6, dtype=np.float32).reshape(2, 3)
    model.load_state_dict({"weight": src, "bias": np.zeros(2, np.float32)})
    assert model.weight is weight and model.weight.array is weight_array
    assert model.weight.dtype == np.float64
    np.testing.assert_array_equal(model.weight.array, src)
    src[0, 0] = 100          # copied, not aliased
    assert model.weight.array[0, 0] == 0


def test_load_state_dict_buffers_and_scalar_compat():
    ours, theirs = build_net(td), build_net(torch)
    theirs.num_batches_tracked.fill_(7)
    theirs.running_mean.fill_(0.5)
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    assert ours.num_batches_tracked.dtype == np.int64 and ours.num_batches_tracked.item() == 7
    np.testing.assert_array_equal(ours.running_mean.array, 0.5)
    sd = ours.state_dict()
    sd["num_batches_tracked"] = np.array([3])       # old checkpoints stored scalars as (1,)
    ours.load_state_dict(sd)
    assert ours.num_batches_tracked.item() == 3


def test_load_state_dict_strict_errors_match_torch_message():
    def make(lib):
        return lib.nn.Sequential(lib.nn.Linear(3, 2), lib.nn.Linear(2, 1))
    ours, theirs = make(td), make(torch)
    bad = {k: v.numpy() for k, v in theirs.state_dict().items()}
    del bad["0.bias"]
    bad["2.weight"] = np.zeros(1, np.float32)
    bad["extra"] = np.zeros(1, np.float32)
    bad["1.foo"] = np.zeros(1, np.float32)
    with pytest.raises(RuntimeError) as ours_err:
        ours.load_state_dict(bad)
    with pytest.raises(RuntimeError) as theirs_err:
        theirs.load_state_dict({k: torch.tensor(v) for k, v in bad.items()})
    assert str(ours_err.value) == str(theirs_err.value)
    assert 'Missing key(s) in state_dict: "0.bias"' in str(ours_err.value)
    assert 'Unexpected key(s) in state_dict: "2.weight", "extra", "1.foo"' in str(ours_err.value)

    result = ours.load_state_dict(bad, strict=False)         # loads what matches, reports the rest
    assert result.missing_keys == ["0.bias"] and result.unexpected_keys == ["2.weight", "extra", "1.foo"]
    assert tuple(result) == tuple(theirs.load_state_dict({k: torch.tensor(v) for k, v in bad.items()},
                                                         strict=False))
    np.testing.assert_array_equal(ours[1].weight.array, bad["1.weight"])


def test_load_state_dict_size_mismatch_raises_even_when_not_strict():
    model = nn.Sequential(nn.Linear(3, 2))
    sd = {"0.weight": np.zeros((3, 2), np.float32), "0.bias": np.zeros(2, np.float32)}
    for strict in (True, False):
        with pytest.raises(RuntimeError, match=r"size mismatch for 0\.weight: copying a param with shape "
                                               r"\(3, 2\) from checkpoint, the shape in current model is \(2, 3\)"):
            model.load_state_dict(sd, strict=strict)
    with pytest.raises(RuntimeError, match=r'expected a Tensor or an array .* received <class \'list\'>'):
        model.load_state_dict({"0.weight": [[0.0] * 3] * 2, "0.bias": np.zeros(2)})
    missing = model.load_state_dict({"0.weight": np.ones((2, 3))}, strict=False)
    assert missing.missing_keys == ["0.bias"] and missing.unexpected_keys == []
    assert missing == (["0.bias"], [])
    np.testing.assert_array_equal(model[0].weight.array, 1)
    with pytest.raises(TypeError, match="dict-like"):
        model.load_state_dict([1, 2])
    with pytest.raises(TypeError, match=r"keys must be parameter names \(str\), got \[0\]"):
        model.load_state_dict({0: np.zeros(2)})


# ====================================================================== modes, grads, dtype, device
def test_train_eval_propagate():
    model = build_net(td)
    assert all(m.training for m in model.modules())
    assert model.eval() is model
    assert not any(m.training for m in model.modules())
    model.features.train()
    assert model.features[1][1].training and not model.heads[0].training
    model.train()
    assert all(m.training for m in model.modules())
    with pytest.raises(ValueError, match="boolean"):
        model.train("no")


def test_to_dtype_in_place_keeps_identity_and_converts_grads():
    model = build_net(td)
    params = list(model.parameters())          # e.g. held by an optimizer
    buffers = dict(model.named_buffers())
    model.features[0].weight.grad = td.ones(8, 4)
    assert model.double() is model
    assert all(a is b for a, b in zip(model.parameters(), params))
    assert all(p.dtype == np.float64 for p in params)
    assert model.features[0].weight.grad.dtype == np.float64
    assert buffers["running_mean"] is model.running_mean and model.running_mean.dtype == np.float64
    assert model.num_batches_tracked.dtype == np.int64          # integers untouched
    model.to(td.float32)
    assert all(p.dtype == np.float32 for p in params)
    model.to(dtype=np.float64).float()
    assert all(p.dtype == np.float32 for p in params)
    model.to("cpu")
    model.to(td.zeros(1, dtype=td.float64))
    assert all(p.dtype == np.float64 for p in params)
    assert all(p.device == "cpu" for p in params)
    assert all(p.requires_grad and p.is_leaf for p in params)
    with pytest.raises(TypeError, match="floating point"):
        model.to(td.int64)


def test_optimizer_style_update_sees_cast_parameters():
    model = nn.Linear(3, 2)
    params = list(model.parameters())
    model.double()
    x = td.randn(4, 3, dtype=td.float64)
    model(x).backward(td.ones(4, 2, dtype=td.float64))
    with td.no_grad():
        for p in params:            # a "step" on the pre-cast list
            p.array -= 0.1 * p.grad.array
    assert all(p.grad.dtype == np.float64 for p in params)


@pytest.mark.gpu
def test_to_cuda_and_back_in_place():
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    params = list(model.parameters())
    x = td.randn(5, 3)
    ref = t2n(model(x))
    model.cuda()
    assert all(a is b for a, b in zip(model.parameters(), params))
    assert all(p.device.type == "cuda" for p in params)
    y = model(x.to("cuda"))
    y.backward(td.ones(5, 2, device="cuda"))
    assert params[0].grad.device.type == "cuda"
    model.cpu()
    assert params[0].grad.device == "cpu"
    np.testing.assert_allclose(y.cpu().detach().numpy(), ref, rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(td.backend.cuda_is_available(), reason="checks the no-GPU error")
def test_cuda_without_gpu_is_a_clear_error():
    with pytest.raises(RuntimeError, match="'cuda' was requested but is not available"):
        nn.Linear(2, 2).cuda()


def test_zero_grad():
    model = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 2))
    x = td.randn(4, 3)
    upstream = td.randn(4, 2)
    model(x).backward(upstream)
    assert all(p.grad is not None for p in model.parameters())
    grad_obj = model[1].bias.grad
    model.zero_grad(set_to_none=False)
    assert model[1].bias.grad is grad_obj
    assert all(float(np.abs(p.grad.array).sum()) == 0 for p in model.parameters())
    assert float(np.abs(upstream.array).sum()) > 0       # the caller's array is not zeroed
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("zero", ["module", "optimizer"])
def test_zeroed_grads_leave_the_graph_of_a_create_graph_backward(zero):
    """A gradient made with create_graph=True has a history; zero_grad(set_to_none=False)
    must cut it, or the next create_graph backward extends a freed graph (as PyTorch)."""
    results = {}
    for lib in (td, torch):
        m = lib.nn.Linear(2, 1, bias=False).double()
        with lib.no_grad():
            m.weight.copy_(lib.tensor([[0.3, -0.7]], dtype=lib.float64))
        opt = lib.optim.SGD(m.parameters(), lr=0.1)
        got = []
        for it in range(3):
            (m if zero == "module" else opt).zero_grad(set_to_none=False)
            assert not m.weight.grad.requires_grad if it else m.weight.grad is None
            y = m(lib.tensor([[1.0 + it, 3.0 * it - 1]], dtype=lib.float64)) ** 3
            y.backward(lib.tensor([[0.5 - it]], dtype=lib.float64), create_graph=True)
            (h,) = lib.autograd.grad((m.weight.grad ** 2).sum(), m.weight)
            got.append(h.detach().numpy().copy())
        results[lib.__name__] = got
    np.testing.assert_allclose(results["tinydl"], results["torch"], rtol=1e-12)


def test_linear_keeps_only_what_its_gradients_read():
    """With an input that needs no gradient, Linear saves no weight: loading new weights
    between forward and backward is allowed, as PyTorch (dL/dW reads only x)."""
    lin, x, g = nn.Linear(3, 2).double(), td.randn(4, 3, dtype=td.float64), td.randn(4, 2, dtype=td.float64)
    y = lin(x)
    lin.load_state_dict(nn.Linear(3, 2).double().state_dict())
    y.backward(g)
    np.testing.assert_allclose(lin.weight.grad.numpy(), g.numpy().T @ x.numpy(), rtol=1e-12)
    x.requires_grad_(True)
    y = lin(x)
    lin.load_state_dict(nn.Linear(3, 2).double().state_dict())
    with pytest.raises(RuntimeError, match="modified by an inplace operation|changed in place"):
        y.backward(g)                       # dL/dx reads the weight: refused


def test_requires_grad_apply_and_get_submodule():
    model = build_net(td)
    model.features.requires_grad_(False)
    assert [n for n, p in model.named_parameters() if not p.requires_grad] == [
        "features.0.weight", "features.0.bias", "features.1.0.weight", "features.2.weight", "features.2.bias"]
    assert model.num_parameters(only_trainable=True) < model.num_parameters()
    seen = []
    assert model.apply(lambda m: seen.append(type(m).__name__)) is model
    assert seen[-1] == "Block" and seen.count("Linear") == 8
    assert model.get_submodule("features.1.0") is model.features[1][0]
    assert model.get_submodule("") is model
    with pytest.raises(AttributeError, match="nope"):
        model.get_submodule("features.nope")


def test_shared_modules_and_tied_weights_are_deduplicated():
    def make(tnn):
        shared = tnn.Linear(3, 3)
        model = tnn.Sequential(shared, tnn.Tanh(), shared, tnn.Linear(3, 3))
        model[3].weight = model[0].weight           # tied weight
        return model
    ours, theirs = make(nn), make(torch.nn)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert len(list(ours.parameters())) == 3
    assert [n for n, _ in ours.named_modules()] == [n for n, _ in theirs.named_modules()]
    assert list(ours.state_dict()) == list(theirs.state_dict())     # state_dict lists every path
    assert ours.num_parameters() == 9 + 3 + 3


def test_gradients_of_shared_parameters_accumulate():
    shared = nn.Linear(2, 2)
    model = nn.Sequential(shared, shared)
    torch_shared = torch.nn.Linear(2, 2)
    copy_weights(shared, torch_shared)
    x = np.random.default_rng(1).standard_normal((3, 2)).astype(np.float32)
    g = np.random.default_rng(2).standard_normal((3, 2)).astype(np.float32)
    model(td.tensor(x)).backward(td.tensor(g))
    torch_shared(torch_shared(torch.tensor(x))).backward(torch.tensor(g))
    np.testing.assert_allclose(t2n(shared.weight.grad), t2n(torch_shared.weight.grad), rtol=1e-5, atol=1e-6)


# ====================================================================== attribute semantics
def test_setattr_getattr_delattr_semantics():
    m = nn.Module()
    m.w = nn.Parameter(td.ones(2))
    m.sub = nn.Linear(2, 2)
    m.register_buffer("buf", td.zeros(2))
    m.plain = td.zeros(3)                            # a plain tensor is just an attribute
    assert list(m._parameters) == ["w"] and list(m._modules) == ["sub"] and list(m._buffers) == ["buf"]
    assert "plain" not in m.state_dict()
    with pytest.raises(TypeError, match="cannot assign 'Tensor' as parameter 'w'"):
        m.w = td.ones(2)
    m.w = None
    assert m.w is None and "w" not in m.state_dict()
    m.buf = td.ones(2)                               # reassigning a buffer keeps it a buffer
    assert "buf" in m.state_dict()
    with pytest.raises(TypeError, match="buffer 'buf'"):
        m.buf = np.ones(2)
    with pytest.raises(TypeError, match="child module 'sub'"):
        m.sub = 3
    m.sub = nn.Parameter(td.ones(1))                 # a new kind of value moves the name
    assert "sub" not in m._modules and "sub" in m._parameters
    del m.sub, m.buf, m.plain
    assert list(m.state_dict()) == []
    with pytest.raises(AttributeError, match="'Module' object has no attribute 'sub'"):
        m.sub
    with pytest.raises(NotImplementedError, match="forward"):
        m(1)
    assert "weight" in dir(nn.Linear(1, 1)) and "bias" in dir(nn.Linear(1, 1))


def test_registration_errors():
    m = nn.Linear(2, 2)
    with pytest.raises(KeyError, match="contain"):
        m.register_buffer("a.b", td.zeros(1))
    with pytest.raises(KeyError, match="already exists"):
        m.register_buffer("in_features", td.zeros(1))
    with pytest.raises(KeyError, match="empty"):
        m.register_parameter("", None)
    with pytest.raises(TypeError, match="Parameter or None"):
        m.register_parameter("p", td.zeros(1))
    with pytest.raises(TypeError, match="Tensor or None"):
        m.register_buffer("b", np.zeros(1))
    with pytest.raises(TypeError, match="not a Module"):
        m.add_module("x", 3)

    class Forgot(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(td.ones(1))
    with pytest.raises(AttributeError, match="before Module.__init__"):
        Forgot()


def test_forward_hooks():
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    seen = []
    handle = model[0].register_forward_hook(lambda mod, args, out: seen.append(out.shape))
    model(td.randn(5, 3))
    assert seen == [(5, 4)]
    handle.remove()
    model(td.randn(5, 3))
    assert seen == [(5, 4)]
    model[1].register_forward_hook(lambda mod, args, out: out * 0)
    pre = model[0].register_forward_pre_hook(lambda mod, args: (args[0] * 0,))
    assert float(np.abs(t2n(model(td.randn(2, 3)))).sum()) == 0
    pre.remove()


def test_deepcopy_gives_independent_parameters():
    model = build_net(td)
    clone = copy.deepcopy(model)
    assert list(clone.state_dict()) == list(model.state_dict())
    with td.no_grad():
        clone.scale.fill_(5.0)
    assert float(model.scale.array[0]) == 1.0
    assert isinstance(clone.scale, nn.Parameter) and clone.scale is not model.scale


# ====================================================================== containers
def test_sequential():
    a, b, c = nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1)
    seq = nn.Sequential(a, b, c)
    assert len(seq) == 3 and seq[0] is a and seq[-1] is c and list(seq) == [a, b, c]
    sub = seq[1:]
    assert type(sub) is nn.Sequential and list(sub._modules) == ["1", "2"] and sub[0] is b
    with pytest.raises(IndexError):
        seq[3]
    named = nn.Sequential(OrderedDict([("conv", a), ("act", b)]))
    assert list(named.state_dict()) == ["conv.weight", "conv.bias"] and named.conv is a
    d = nn.Linear(1, 1)
    assert seq.append(d) is seq and seq[3] is d and list(seq._modules) == ["0", "1", "2", "3"]
    del seq[1]
    assert list(seq) == [a, c, d] and list(seq._modules) == ["0", "1", "2"]     # renumbered, as torch
    seq.insert(1, b)
    assert list(seq) == [a, b, c, d]
    seq[3] = nn.Identity()
    assert type(seq[3]) is nn.Identity
    assert seq.pop(3) is not d and len(seq) == 3
    x = td.randn(4, 2)
    np.testing.assert_allclose(t2n(seq(x)), t2n(c(b(a(x)))))
    empty = nn.Sequential()
    assert empty(x) is x


def test_module_list_and_dict():
    layers = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])
    assert len(layers) == 3 and len(list(layers.parameters())) == 6
    layers.append(nn.Tanh())
    layers.extend([nn.Identity(), nn.Identity()])
    layers.insert(0, nn.Sigmoid())
    assert [type(m).__name__ for m in layers] == ["Sigmoid", "Linear", "Linear", "Linear", "Tanh",
                                                  "Identity", "Identity"]
    assert type(layers[1:3]) is nn.ModuleList and len(layers[1:3]) == 2
    assert isinstance(layers[-1], nn.Identity)
    layers += [nn.ReLU()]
    assert len(layers) == 8 and list(layers._modules) == [str(i) for i in range(8)]
    del layers[0]
    assert list(layers._modules) == [str(i) for i in range(7)]
    with pytest.raises(TypeError):
        layers.extend(nn.Linear(1, 1))
    with pytest.raises(NotImplementedError):
        layers(td.zeros(1))

    heads = nn.ModuleDict({"cls": nn.Linear(4, 3)})
    heads["box"] = nn.Linear(4, 4)
    heads.update([("extra", nn.Identity())])
    assert list(heads) == ["cls", "box", "extra"] and "box" in heads and len(heads) == 3
    assert list(heads.keys()) == ["cls", "box", "extra"]
    assert [type(v).__name__ for v in heads.values()] == ["Linear", "Linear", "Identity"]
    assert list(heads.state_dict()) == ["cls.weight", "cls.bias", "box.weight", "box.bias"]
    assert isinstance(heads.pop("extra"), nn.Identity) and len(heads) == 2
    heads.clear()
    assert len(heads) == 0


# ====================================================================== Linear
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_forward_backward_matches_torch(dtype, bias):
    torch.manual_seed(0)
    theirs = torch.nn.Linear(5, 3, bias=bias).to(getattr(torch, np.dtype(dtype).name))
    ours = nn.Linear(5, 3, bias=bias, dtype=dtype)
    copy_weights(ours, theirs)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 5)).astype(dtype)       # extra leading dims
    g = rng.standard_normal((2, 4, 3)).astype(dtype)
    xt, xtt = td.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    y, yt = ours(xt), theirs(xtt)
    y.backward(td.tensor(g))
    yt.backward(torch.tensor(g))
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    assert y.dtype == dtype and xt.grad.dtype == dtype and ours.weight.grad.dtype == dtype
    np.testing.assert_allclose(t2n(y), t2n(yt), **tol)
    np.testing.assert_allclose(t2n(xt.grad), t2n(xtt.grad), **tol)
    np.testing.assert_allclose(t2n(ours.weight.grad), t2n(theirs.weight.grad), **tol)
    if bias:
        np.testing.assert_allclose(t2n(ours.bias.grad), t2n(theirs.bias.grad), **tol)
    else:
        assert ours.bias is None and list(ours.state_dict()) == ["weight"]


def test_linear_wrong_input_size_is_a_clear_error():
    with pytest.raises(RuntimeError, match="linear: input has 4 features"):
        nn.Linear(3, 2)(td.zeros(2, 4))


def test_gradcheck_through_sequential():
    model = nn.Sequential(nn.Linear(4, 5), nn.Identity(), nn.Linear(5, 3), nn.Sequential(nn.Linear(3, 2)))
    model.double()
    x = td.randn(3, 4, dtype=td.float64, requires_grad=True)
    params = list(model.parameters())
    assert td.gradcheck(lambda x, *ps: model(x), [x, *params])


@needs("tanh", "sigmoid", "leaky_relu")
def test_gradcheck_through_sequential_with_activations():
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 4), nn.LeakyReLU(0.1),
                          nn.Linear(4, 3), nn.Sigmoid()).double()
    x = td.randn(3, 4, dtype=td.float64, requires_grad=True)
    assert td.gradcheck(lambda x, *ps: model(x), [x, *model.parameters()])


def test_linear_default_init_matches_torch_distribution():
    td.manual_seed(0)
    torch.manual_seed(0)
    fan_in = 300
    ours, theirs = nn.Linear(fan_in, 400), torch.nn.Linear(fan_in, 400)
    bound = 1 / math.sqrt(fan_in)
    for ours_p, theirs_p in ((ours.weight, theirs.weight), (ours.bias, theirs.bias)):
        w = ours_p.array
        assert w.dtype == np.float32
        assert w.min() >= -bound and w.max() <= bound
        assert abs(float(np.abs(w).max()) - float(theirs_p.detach().abs().max())) < 0.02 * bound
    assert abs(ours.weight.array.std() - bound / math.sqrt(3)) < 0.01 * bound
    assert abs(ours.weight.array.std() - theirs.weight.detach().std().item()) < 0.01 * bound


def test_manual_seed_makes_init_reproducible():
    td.manual_seed(123)
    a = nn.Linear(6, 4)
    td.manual_seed(123)
    b = nn.Linear(6, 4)
    np.testing.assert_array_equal(a.weight.array, b.weight.array)
    np.testing.assert_array_equal(a.bias.array, b.bias.array)
    assert not np.array_equal(a.weight.array, nn.Linear(6, 4).weight.array)


# ====================================================================== other layers vs torch
def _compare_layer(ours, theirs, x, g=None, tol=1e-6):
    xt, xtt = td.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    y, yt = ours(xt), theirs(xtt)
    np.testing.assert_allclose(t2n(y), t2n(yt), rtol=1e-5, atol=tol)
    g = np.random.default_rng(5).standard_normal(yt.shape).astype(x.dtype) if g is None else g
    y.backward(td.tensor(g))
    yt.backward(torch.tensor(g))
    np.testing.assert_allclose(t2n(xt.grad), t2n(xtt.grad), rtol=1e-5, atol=tol)
    assert y.dtype == x.dtype


X = np.random.default_rng(3).standard_normal((2, 3, 4, 5)).astype(np.float32)


def test_identity():
    x = td.randn(2, 3)
    assert nn.Identity(54, unused="x")(x) is x


@needs("relu")
def test_relu_layer():
    _compare_layer(nn.ReLU(), torch.nn.ReLU(), X)   # in place: tests/test_inplace_relu.py


@needs("leaky_relu")
def test_leaky_relu_layer():
    _compare_layer(nn.LeakyReLU(0.2), torch.nn.LeakyReLU(0.2), X)
    _compare_layer(nn.LeakyReLU(), torch.nn.LeakyReLU(), X)


@needs("sigmoid", "tanh")
def test_sigmoid_tanh_layers():
    _compare_layer(nn.Sigmoid(), torch.nn.Sigmoid(), X)
    _compare_layer(nn.Tanh(), torch.nn.Tanh(), X)


@needs("softmax", "log_softmax")
@pytest.mark.parametrize("dim", [1, -1, None])
def test_softmax_layers(dim):
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")             # torch warns about the implicit dim
        for x in (X, X[0], X[0, 0]):
            _compare_layer(nn.Softmax(dim), torch.nn.Softmax(dim), x)
            _compare_layer(nn.LogSoftmax(dim), torch.nn.LogSoftmax(dim), x)


def test_flatten_unflatten_layers():
    _compare_layer(nn.Flatten(), torch.nn.Flatten(), X)
    _compare_layer(nn.Flatten(0, 2), torch.nn.Flatten(0, 2), X)
    _compare_layer(nn.Unflatten(1, (1, 3)), torch.nn.Unflatten(1, (1, 3)), X)
    _compare_layer(nn.Unflatten(-1, (5, 1)), torch.nn.Unflatten(-1, (5, 1)), X)
    flat = nn.Flatten()(td.tensor(X))
    assert flat.shape == (2, 60) and nn.Unflatten(1, (3, 4, 5))(flat).shape == X.shape


@needs("dropout")
def test_dropout_layer_train_and_eval():
    x = td.ones(200, 500)
    layer = nn.Dropout(0.3)
    y = t2n(layer(x))
    kept = y != 0
    assert abs(kept.mean() - 0.7) < 0.01
    np.testing.assert_allclose(y[kept], 1 / 0.7, rtol=1e-6)
    assert y.dtype == np.float32
    layer.eval()
    np.testing.assert_array_equal(t2n(layer(x)), x.numpy())
    with pytest.raises(ValueError, match="between 0 and 1"):
        nn.Dropout(1.5)


@needs("dropout2d")
def test_dropout2d_layer_drops_whole_channels():
    x = td.ones(40, 50, 3, 3)
    layer = nn.Dropout2d(0.5)
    y = t2n(layer(x))
    per_channel = y.reshape(40, 50, 9)
    assert np.all((per_channel == 0).all(-1) | (per_channel == 2.0).all(-1))
    assert abs((per_channel[..., 0] == 0).mean() - 0.5) < 0.05
    layer.eval()
    np.testing.assert_array_equal(t2n(layer(x)), 1.0)


@needs("relu", "dropout")
def test_small_mlp_matches_torch_in_eval_mode():
    def make(tnn):
        return tnn.Sequential(tnn.Flatten(), tnn.Linear(12, 8), tnn.ReLU(), tnn.Dropout(0.5), tnn.Linear(8, 3),
                              tnn.LogSoftmax(dim=1))
    ours, theirs = make(nn).eval(), make(torch.nn).eval()
    copy_weights(ours, theirs)
    x = np.random.default_rng(0).standard_normal((4, 3, 2, 2)).astype(np.float32)
    _compare_layer(ours, theirs, x)


# ====================================================================== nn.init
def test_calculate_gain_matches_torch():
    for name in ["linear", "conv2d", "conv_transpose2d", "sigmoid", "tanh", "relu", "selu", "leaky_relu"]:
        assert init.calculate_gain(name) == pytest.approx(torch.nn.init.calculate_gain(name))
    for slope in (0.2, 1, math.sqrt(5)):
        assert init.calculate_gain("leaky_relu", slope) == pytest.approx(
            torch.nn.init.calculate_gain("leaky_relu", slope))
    with pytest.raises(ValueError, match="Unsupported nonlinearity"):
        init.calculate_gain("swish")
    with pytest.raises(ValueError, match="not a valid number"):
        init.calculate_gain("leaky_relu", True)


@pytest.mark.parametrize("shape", [(7, 3), (16, 4, 3, 3), (8, 1, 5, 5), (4, 6, 2, 3, 5)])
def test_fans_match_torch(shape):
    assert init._calculate_fan_in_and_fan_out(td.zeros(*shape)) == \
        torch.nn.init._calculate_fan_in_and_fan_out(torch.zeros(*shape))


def test_fans_need_two_dims():
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        init._calculate_fan_in_and_fan_out(td.zeros(5))
    with pytest.raises(ValueError, match="Mode fan_avg not supported"):
        init.kaiming_uniform_(td.zeros(3, 3), mode="fan_avg")


SHAPE = (128, 32, 3, 3)        # fan_in = 288, fan_out = 1152; 36,864 samples


def _uniform_bound(fn_name, kwargs):
    """PyTorch's formula for the bound of a uniform init on SHAPE."""
    fan_in, fan_out = 32 * 9, 128 * 9
    if fn_name == "xavier_uniform_":
        return kwargs.get("gain", 1.0) * math.sqrt(6.0 / (fan_in + fan_out))
    fan = fan_in if kwargs.get("mode", "fan_in") == "fan_in" else fan_out
    gain = torch.nn.init.calculate_gain(kwargs.get("nonlinearity", "leaky_relu"), kwargs.get("a", 0))
    return gain * math.sqrt(3.0 / fan)


@pytest.mark.parametrize("fn_name,kwargs", [
    ("xavier_uniform_", {}), ("xavier_uniform_", {"gain": 2.0}),
    ("kaiming_uniform_", {}), ("kaiming_uniform_", {"a": math.sqrt(5)}),
    ("kaiming_uniform_", {"mode": "fan_out", "nonlinearity": "relu"}),
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_uniform_inits_bounds_and_std(fn_name, kwargs, dtype):
    p = nn.Parameter(td.zeros(*SHAPE, dtype=dtype))
    out = getattr(init, fn_name)(p, **kwargs)
    assert out is p and p.dtype == dtype and p.requires_grad and p.grad_fn is None
    bound = _uniform_bound(fn_name, kwargs)
    w = p.array
    assert w.min() >= -bound and w.max() <= bound
    assert w.max() > 0.995 * bound and w.min() < -0.995 * bound
    assert abs(w.std() - bound / math.sqrt(3)) < 0.02 * bound / math.sqrt(3)
    assert abs(w.mean()) < 0.02 * bound
    ref = getattr(torch.nn.init, fn_name)(torch.zeros(*SHAPE), **kwargs)   # the oracle's own sample
    assert abs(w.std() - ref.std().item()) < 0.03 * ref.std().item()


@pytest.mark.parametrize("fn_name,kwargs,std", [
    ("xavier_normal_", {}, math.sqrt(2.0 / (288 + 1152))),
    ("xavier_normal_", {"gain": 0.5}, 0.5 * math.sqrt(2.0 / (288 + 1152))),
    ("kaiming_normal_", {}, math.sqrt(2.0 / 288)),
    ("kaiming_normal_", {"mode": "fan_out", "nonlinearity": "relu"}, math.sqrt(2.0 / 1152)),
    ("kaiming_normal_", {"a": 0.2, "nonlinearity": "leaky_relu"}, math.sqrt(2.0 / (1.04 * 288))),
    ("normal_", {"mean": 1.5, "std": 0.3}, 0.3),
])
def test_normal_inits_std(fn_name, kwargs, std):
    p = nn.Parameter(td.zeros(*SHAPE))
    assert getattr(init, fn_name)(p, **kwargs) is p and p.dtype == np.float32
    w = p.array
    mean = kwargs.get("mean", 0.0)
    assert abs(w.mean() - mean) < 0.02 * std
    assert abs(w.std() - std) < 0.02 * std
    ref = getattr(torch.nn.init, fn_name)(torch.zeros(*SHAPE), **kwargs)
    assert abs(w.std() - ref.std().item()) < 0.03 * std


def test_uniform_and_trunc_normal():
    p = nn.Parameter(td.zeros(100, 1000))
    init.uniform_(p, -0.5, 2.0)
    assert p.array.min() >= -0.5 and p.array.max() <= 2.0
    assert abs(p.array.mean() - 0.75) < 0.01 and abs(p.array.std() - 2.5 / math.sqrt(12)) < 0.01

    mean, std, a, b = 0.5, 2.0, -1.0, 3.0
    init.trunc_normal_(p, mean, std, a, b)
    w = p.array
    assert w.min() >= a and w.max() <= b and p.dtype == np.float32
    # moments of a normal truncated to [a, b]
    phi = lambda z: math.exp(-z * z / 2) / math.sqrt(2 * math.pi)    # noqa: E731
    cdf = lambda z: 0.5 * (1 + math.erf(z / math.sqrt(2)))           # noqa: E731
    al, be = (a - mean) / std, (b - mean) / std
    z = cdf(be) - cdf(al)
    t_mean = mean + std * (phi(al) - phi(be)) / z
    t_std = std * math.sqrt(1 + (al * phi(al) - be * phi(be)) / z - ((phi(al) - phi(be)) / z) ** 2)
    assert abs(w.mean() - t_mean) < 0.01 * std and abs(w.std() - t_std) < 0.01 * std
    ref = torch.nn.init.trunc_normal_(torch.zeros(100, 1000), mean, std, a, b)
    assert abs(w.std() - ref.std().item()) < 0.02 * t_std
    far = init.trunc_normal_(p, 0.0, 1.0, 10.0, 11.0).detach().numpy()     # a far tail, as PyTorch
    assert far.min() >= 10.0 and far.max() <= 11.0 and abs(far.mean() - 10.098) < 0.01


def test_constant_zeros_ones_eye_orthogonal():
    p = nn.Parameter(td.zeros(3, 5, dtype=td.float64))
    assert init.constant_(p, 0.25) is p and np.all(p.array == 0.25)
    init.ones_(p)
    assert np.all(p.array == 1)
    init.zeros_(p)
    assert np.all(p.array == 0)
    init.eye_(p)
    np.testing.assert_array_equal(p.array, np.eye(3, 5))
    init.orthogonal_(p, gain=2.0)
    np.testing.assert_allclose(p.array @ p.array.T, 4 * np.eye(3), atol=1e-12)
    q = nn.Parameter(td.zeros(12, 2, 2))
    init.orthogonal_(q)
    flat = q.array.reshape(12, 4)
    assert q.dtype == np.float32
    np.testing.assert_allclose(flat.T @ flat, np.eye(4), atol=1e-5)


def test_init_is_reproducible_and_needs_no_no_grad():
    p = nn.Parameter(td.zeros(4, 4))
    td.manual_seed(7)
    a = init.kaiming_normal_(p).array.copy()
    td.manual_seed(7)
    init.kaiming_normal_(p)
    np.testing.assert_array_equal(a, p.array)
    assert p.is_leaf and p.requires_grad


# ================================================================ parameters and inputs of one dtype
_PARAM_LAYERS = {
    "Linear": (lambda m: m.Linear(3, 2), (4, 3)),
    "BatchNorm1d": (lambda m: m.BatchNorm1d(3), (4, 3)),
    "BatchNorm2d": (lambda m: m.BatchNorm2d(3), (4, 3, 2, 2)),
    "Conv2d": (lambda m: m.Conv2d(3, 2, 1), (1, 3, 2, 2)),
    "ConvTranspose2d": (lambda m: m.ConvTranspose2d(3, 2, 1), (1, 3, 2, 2)),
}


@pytest.mark.parametrize("layer", sorted(_PARAM_LAYERS))
@pytest.mark.parametrize("module_dtype, input_dtype", [("float32", "float64"), ("float64", "float32")])
def test_layers_with_parameters_refuse_an_input_of_another_dtype_as_pytorch(layer, module_dtype, input_dtype):
    torch = pytest.importorskip("torch")
    make, shape = _PARAM_LAYERS[layer]
    with pytest.raises(RuntimeError):                  # PyTorch refuses it too, rather than promoting
        make(torch.nn).to(getattr(torch, module_dtype))(torch.zeros(shape, dtype=getattr(torch, input_dtype)))
    module = make(nn).to(getattr(td, module_dtype))
    with pytest.raises(RuntimeError, match=f"input type \\({input_dtype}\\) and weight type \\({module_dtype}\\)"):
        module(td.zeros(*shape, dtype=getattr(td, input_dtype)))
    assert module(td.zeros(*shape, dtype=getattr(td, module_dtype))).dtype == getattr(td, module_dtype)


def test_functional_linear_and_batch_norm_check_every_parameter():
    x = td.zeros(4, 3)
    with pytest.raises(RuntimeError, match=r"linear: input type \(float32\) and bias type \(float64\)"):
        F.linear(x, td.zeros(2, 3), td.zeros(2, dtype=td.float64))
    with pytest.raises(RuntimeError, match=r"batch_norm: input type \(float32\) and running_var type \(float64\)"):
        F.batch_norm(x, td.zeros(3), td.ones(3, dtype=td.float64))


def _hooked_model_run(lib):
    """Full backward hooks (one replacing grad_input), a backward pre-hook replacing
    grad_output, forward hooks with kwargs and prepend; then an input that needs no
    gradient (the hook sees grad_input (None,)), then a removed hook."""
    rng = np.random.default_rng(0)
    x_data, g_data = rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
    seen = []
    lin = lib.nn.Linear(3, 2).double()
    with lib.no_grad():
        lin.weight.copy_(lib.tensor(np.arange(6.0).reshape(2, 3) / 7))
        lin.bias.copy_(lib.tensor([0.1, -0.2]))
    act = lib.nn.Tanh()
    model = lib.nn.Sequential(lin, act)

    def rounded(gs):
        return [None if g is None else np.round(g.tolist(), 10).tolist() for g in gs]
    handle = lin.register_full_backward_hook(lambda m, gi, go: seen.append(("lin", rounded(gi), rounded(go))))
    act.register_full_backward_pre_hook(lambda m, go: (go[0] * 2,))
    act.register_full_backward_hook(lambda m, gi, go: (gi[0] + 1,))
    lin.register_forward_hook(lambda m, args, kwargs, out: seen.append(("forward", sorted(kwargs))), with_kwargs=True)
    lin.register_forward_pre_hook(lambda m, args: seen.append("pre, first"), prepend=True)
    lin.register_forward_pre_hook(lambda m, args: seen.append("pre, second"))
    x = lib.tensor(x_data, requires_grad=True)
    model(x).backward(lib.tensor(g_data))
    result = [rounded([x.grad, lin.weight.grad]), seen[:]]
    seen.clear()
    lin.zero_grad()
    model(lib.tensor(x_data)).backward(lib.tensor(g_data))
    result.append(seen[:])
    handle.remove()
    seen.clear()
    model(lib.tensor(x_data, requires_grad=True)).sum().backward()
    return result + [seen[:]]


@pytest.mark.filterwarnings("ignore:Full backward hook is firing")
def test_module_backward_hooks_and_forward_hook_options_as_torch():
    assert _hooked_model_run(td) == _hooked_model_run(torch)


def test_an_always_call_forward_hook_runs_when_forward_raises():
    for lib in (td, torch):
        seen = []
        layer = lib.nn.Linear(3, 2)
        layer.register_forward_hook(lambda m, args, out: seen.append(out), always_call=True)
        with pytest.raises(RuntimeError):
            layer(lib.ones(4, 5))
        assert seen == [None]


def test_get_parameter_and_get_buffer_as_torch():
    for lib in (td, torch):
        m = lib.nn.Sequential(lib.nn.Linear(2, 3), lib.nn.BatchNorm1d(3))
        assert tuple(m.get_parameter("0.weight").shape) == (3, 2)
        assert tuple(m.get_buffer("1.running_mean").shape) == (3,)
        for bad in (lambda: m.get_parameter("0.nope"), lambda: m.get_buffer("2.x"),
                    lambda: m.get_parameter("1.running_mean")):
            with pytest.raises(AttributeError):
                bad()


def test_extra_state_goes_into_the_state_dict_as_torch(tmp_path):
    """get_extra_state / set_extra_state: the value sits under <prefix>_extra_state after the
    module's own parameters and buffers (before its children's), comes back through td.save/td.load and load_state_dict, and a
    missing one is a missing key."""
    def make(lib):
        class Tagged(lib.nn.Module):
            def __init__(self):
                super().__init__()
                self.lin = lib.nn.Linear(1, 1)
                self.vocab = {"a": 1}

            def get_extra_state(self):
                return {"vocab": dict(self.vocab)}

            def set_extra_state(self, state):
                self.vocab = state["vocab"]
        return lib.nn.Sequential(Tagged())

    for lib in (td, torch):
        m, m2 = make(lib), make(lib)
        m[0].vocab = {"b": 2}
        assert list(m.state_dict()) == ["0._extra_state", "0.lin.weight", "0.lin.bias"]
        m2.load_state_dict(m.state_dict())
        assert m2[0].vocab == {"b": 2}
        state = m.state_dict()
        del state["0._extra_state"]
        with pytest.raises(RuntimeError, match="0._extra_state"):
            make(lib).load_state_dict(state)
        assert make(lib).load_state_dict(state, strict=False).missing_keys == ["0._extra_state"]
    m = make(td)
    m[0].vocab = {"c": 3}
    td.save(m.state_dict(), tmp_path / "m.npz")
    m2 = make(td)
    m2.load_state_dict(td.load(tmp_path / "m.npz"))
    assert m2[0].vocab == {"c": 3}
    with pytest.raises(RuntimeError, match="get_extra_state"):
        nn.Linear(1, 1).get_extra_state()


def test_state_dict_hooks_as_torch():
    """The four state-dict hooks: what they see, in which order, and what they may change
    (a post hook of state_dict renames keys; a load pre hook maps an old layout; a load
    post hook forgives a missing key before a strict load raises)."""
    def run(lib):
        calls = []
        net = lib.nn.Sequential(lib.nn.Linear(2, 2), lib.nn.Linear(2, 1)).double()
        net[0].register_state_dict_pre_hook(lambda m, prefix, keep_vars: calls.append(("pre", prefix, keep_vars)))

        def rename(module, state, prefix, local_metadata):
            calls.append(("post", prefix))
            state[prefix + "old_weight"] = state.pop(prefix + "weight")
        handle = net[1].register_state_dict_post_hook(rename)
        keys = list(net.state_dict())
        handle.remove()

        def old_layout(module, state, prefix, local_metadata, strict, missing, unexpected, errors):
            calls.append(("load-pre", prefix))
            if prefix + "old_weight" in state:
                state[prefix + "weight"] = state.pop(prefix + "old_weight")
        net2 = lib.nn.Sequential(lib.nn.Linear(2, 2), lib.nn.Linear(2, 1)).double()
        net2[1].register_load_state_dict_pre_hook(old_layout)
        saved = net.state_dict()
        saved["1.old_weight"] = saved.pop("1.weight")
        net2.load_state_dict(saved)

        def forgive(module, incompatible):
            calls.append(("load-post", sorted(incompatible.missing_keys)))
            incompatible.missing_keys.remove("0.bias")
        net2.register_load_state_dict_post_hook(forgive)
        del saved["0.bias"]
        result = net2.load_state_dict(saved)
        same = [bool((a == b).all()) for a, b in zip(net2.parameters(), net.parameters())]
        return keys, calls, same, list(result.missing_keys)

    ours, theirs = run(td), run(torch)
    assert ours == theirs and len(ours[1]) == 6, ours


def test_load_state_dict_assign_and_set_submodule_as_torch():
    for lib in (td, torch):
        lin = lib.nn.Linear(3, 2)
        state = {"weight": lib.ones(2, 3, dtype=lib.float64), "bias": lib.zeros(2, dtype=lib.float64)}
        lin.load_state_dict(state, assign=True)
        assert lin.weight.dtype == lib.float64 and isinstance(lin.weight, lib.nn.Parameter)
        assert lin.weight.requires_grad and list(lin.state_dict()) == ["weight", "bias"]
        net = lib.nn.Sequential(lib.nn.Linear(2, 2), lib.nn.Sequential(lib.nn.ReLU(), lib.nn.Tanh()))
        net.set_submodule("1.0", lib.nn.Sigmoid())
        assert type(net[1][0]).__name__ == "Sigmoid"
        with pytest.raises(AttributeError):
            net.set_submodule("1.5", lib.nn.ReLU(), strict=True)
        with pytest.raises(AttributeError):
            net.set_submodule("7.0", lib.nn.ReLU())
