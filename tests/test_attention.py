"""F.scaled_dot_product_attention, nn.MultiheadAttention and the Transformer classes against
PyTorch: torch's parameters are loaded through load_state_dict, then the outputs and the
gradients (of the inputs and every parameter, under a random upstream gradient) are compared."""
import numpy as np
import pytest
import torch

import tinydl as td
import tinydl.nn as nn
import tinydl.nn.functional as F

# torch's notices: a float padding mask beside a bool attn_mask (a mix tested on purpose), and
# its nested-tensor fast path (out of scope) being off
pytestmark = [pytest.mark.filterwarnings("ignore:Support for mismatched"),
              pytest.mark.filterwarnings("ignore:enable_nested_tensor is True")]

TOL = {np.float64: 1e-10, np.float32: 1e-5}
DTYPES = {np.float64: (td.float64, torch.float64), np.float32: (td.float32, torch.float32)}
FLOATS = pytest.mark.parametrize("np_dtype", [np.float64, np.float32], ids=["f64", "f32"])


def _id(x):
    return "-".join(f"{k}={v}" for k, v in x.items()) or "default"


def _assert_close(ours, theirs, tol, what):
    assert ours.dtype == (np.float64 if theirs.dtype == torch.float64 else np.float32), what
    assert ours.shape == tuple(theirs.shape), what
    np.testing.assert_allclose(ours.detach().numpy(), theirs.detach().numpy(), rtol=tol, atol=tol, err_msg=what)


def _pair(a, np_dtype, grad=True):
    """The same array as a tinydl and a torch tensor (bool arrays as bool, never requiring grad)."""
    if a.dtype == bool:
        return td.tensor(a), torch.tensor(a)
    a = a.astype(np_dtype)
    return td.tensor(a, requires_grad=grad), torch.tensor(a, requires_grad=grad)


def _compare_grads(o_out, t_out, o_leaves, t_leaves, names, tol):
    """Gradients of every leaf under one random upstream gradient per output (never a plain sum)."""
    rng = np.random.default_rng(1)
    ups = [rng.standard_normal(tuple(t.shape)).astype(o.dtype) for o, t in zip(o_out, t_out)]
    t_grads = torch.autograd.grad(t_out, t_leaves, [torch.tensor(u) for u in ups], allow_unused=True)
    o_grads = td.autograd.grad(o_out, o_leaves, [td.tensor(u) for u in ups], allow_unused=True)
    for name, o, t in zip(names, o_grads, t_grads):
        if t is None:
            assert o is None or not np.any(o.numpy()), f"gradient of {name}"
            continue
        _assert_close(o, t, tol, f"gradient of {name}")


# ---------------------------------------------------------------- scaled_dot_product_attention
def _sdpa_case(case, rng):
    """(query, key, value, kwargs with masks as arrays) for one named case."""
    n, h, L, S, E, Ev = 2, 2, 3, 5, 4, 6
    q, k, v = rng.standard_normal((n, h, L, E)), rng.standard_normal((n, h, S, E)), rng.standard_normal((n, h, S, Ev))
    kwargs = {}
    if case == "bool_mask":
        kwargs["attn_mask"] = rng.random((L, S)) > 0.4
        kwargs["attn_mask"][:, 0] = True
    elif case == "bool_mask_4d":
        kwargs["attn_mask"] = rng.random((n, 1, L, S)) > 0.4
        kwargs["attn_mask"][..., 1] = True
    elif case == "float_mask":
        kwargs["attn_mask"] = rng.standard_normal((n, h, L, S))
    elif case == "float_mask_inf":
        kwargs["attn_mask"] = np.where(rng.random((L, S)) > 0.5, -np.inf, rng.standard_normal((L, S)))
        kwargs["attn_mask"][:, 2] = 0.5
    elif case == "fully_masked_row":
        kwargs["attn_mask"] = rng.random((L, S)) > 0.4
        kwargs["attn_mask"][1] = False
        kwargs["attn_mask"][0, 0] = True
    elif case == "causal":
        kwargs["is_causal"] = True
    elif case == "causal_long_query":
        q = rng.standard_normal((n, h, 7, E))
        kwargs["is_causal"] = True
    elif case == "scale":
        kwargs["scale"] = 0.37
    elif case == "gqa":
        q = rng.standard_normal((n, 6, L, E))
        kwargs["enable_gqa"] = True
        kwargs["is_causal"] = True
    elif case == "3d":
        q, k, v = q[0], k[0], v[0]
        kwargs["attn_mask"] = rng.random((L, S)) > 0.3
        kwargs["attn_mask"][:, 4] = True
    kwargs["dropout_p"] = 0.0
    return [q, k, v], kwargs


SDPA_CASES = ["plain", "bool_mask", "bool_mask_4d", "float_mask", "float_mask_inf", "fully_masked_row", "causal",
              "causal_long_query", "scale", "gqa", "3d"]


@FLOATS
@pytest.mark.parametrize("case", SDPA_CASES)
def test_sdpa_matches_torch(case, np_dtype):
    arrays, kwargs = _sdpa_case(case, np.random.default_rng(0))
    pairs = [_pair(a, np_dtype) for a in arrays]
    o_kw, t_kw = dict(kwargs), dict(kwargs)
    if "attn_mask" in kwargs:
        o_kw["attn_mask"], t_kw["attn_mask"] = _pair(kwargs["attn_mask"], np_dtype, grad=False)
    ours = F.scaled_dot_product_attention(*[o for o, _ in pairs], **o_kw)
    theirs = torch.nn.functional.scaled_dot_product_attention(*[t for _, t in pairs], **t_kw)
    tol = TOL[np_dtype]
    _assert_close(ours, theirs, tol, "output")
    _compare_grads([ours], [theirs], [o for o, _ in pairs], [t for _, t in pairs], ["query", "key", "value"], tol)


def test_sdpa_float_mask_gets_a_gradient():
    rng = np.random.default_rng(3)
    arrays = [rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 5, 4)), rng.standard_normal((2, 5, 4)),
              rng.standard_normal((3, 5))]
    pairs = [_pair(a, np.float64) for a in arrays]
    ours = F.scaled_dot_product_attention(*[o for o, _ in pairs[:3]], attn_mask=pairs[3][0])
    theirs = torch.nn.functional.scaled_dot_product_attention(*[t for _, t in pairs[:3]], attn_mask=pairs[3][1])
    _compare_grads([ours], [theirs], [o for o, _ in pairs], [t for _, t in pairs], ["q", "k", "v", "mask"], 1e-10)


def test_sdpa_dropout_drops_weights_in_expectation():
    td.manual_seed(0)
    q, k = td.zeros(1, 400, 4), td.zeros(1, 8, 4)      # uniform weights 1/8
    v = td.ones(1, 8, 1)
    out = F.scaled_dot_product_attention(q, k, v, dropout_p=0.5).numpy()
    assert not np.allclose(out, 1.0)                    # some weights dropped, the rest scaled by 2
    assert abs(out.mean() - 1.0) < 0.1                  # E[out] = 1
    assert out.dtype == np.float32


def test_sdpa_errors():
    q, k, v = td.randn(2, 3, 4), td.randn(2, 5, 4), td.randn(2, 5, 6)
    with pytest.raises(RuntimeError, match="scaled_dot_product_attention.*feature size"):
        F.scaled_dot_product_attention(q, td.randn(2, 5, 3), v)
    with pytest.raises(RuntimeError, match="scaled_dot_product_attention.*same length"):
        F.scaled_dot_product_attention(q, k, td.randn(2, 4, 6))
    with pytest.raises(RuntimeError, match="scaled_dot_product_attention.*is_causal"):
        F.scaled_dot_product_attention(q, k, v, attn_mask=td.ones(3, 5, dtype=td.bool), is_causal=True)
    with pytest.raises(RuntimeError, match=r"scaled_dot_product_attention.*attn_mask \(4, 5\)"):
        F.scaled_dot_product_attention(q, k, v, attn_mask=td.ones(4, 5, dtype=td.bool))
    with pytest.raises(RuntimeError, match="scaled_dot_product_attention.*enable_gqa"):
        F.scaled_dot_product_attention(td.randn(1, 3, 2, 4), td.randn(1, 2, 2, 4), td.randn(1, 2, 2, 4),
                                       enable_gqa=True)


# ---------------------------------------------------------------- MultiheadAttention
# Options that change the math. Keys not for the constructor: self (q = k = v one tensor),
# kpm (bool/float key_padding_mask), mask ('2d'/'3d', bool/float), unbatched, forward kwargs.
MHA_CONFIGS = [
    {"self": True},
    {"self": True, "batch_first": True},
    {},
    {"kdim": 3, "vdim": 5},
    {"kdim": 3, "vdim": 5, "batch_first": True, "kpm": "bool"},
    {"add_bias_kv": True, "kpm": "bool", "mask": "2d-bool"},
    {"add_zero_attn": True, "kpm": "float", "mask": "3d-float"},
    {"add_bias_kv": True, "add_zero_attn": True, "mask": "3d-bool", "need_weights": False},
    {"bias": False, "kpm": "bool"},
    {"kpm": "float", "mask": "2d-float", "average_attn_weights": False},
    {"self": True, "mask": "2d-bool", "kpm": "bool", "need_weights": False},
    {"self": True, "mask": "causal", "is_causal": True, "need_weights": False},
    {"self": True, "mask": "causal", "is_causal": True, "add_bias_kv": True, "need_weights": False},
    {"unbatched": True},
    {"unbatched": True, "kdim": 3, "vdim": 5, "kpm": "bool", "mask": "3d-float", "average_attn_weights": False},
    {"unbatched": True, "batch_first": True, "mask": "2d-bool", "need_weights": False},
    {"kpm": "dead", "need_weights": False},     # one sample with every key padded: zeros, as torch's SDPA
]
_NOT_CTOR = ("self", "kpm", "mask", "unbatched", "need_weights", "average_attn_weights", "is_causal")


def _mha_inputs(cfg, rng, heads=2, E=4):
    """(query, key, value) arrays (key None when self-attention) and the masks."""
    L, S, N = 3, 5, 2
    if cfg.get("self"):
        S = L
    kdim, vdim = cfg.get("kdim", E), cfg.get("vdim", E)

    def seq(length, feat):
        if cfg.get("unbatched"):
            return rng.standard_normal((length, feat))
        return rng.standard_normal((N, length, feat) if cfg.get("batch_first") else (length, N, feat))

    q = seq(L, E)
    k, v = (None, None) if cfg.get("self") else (seq(S, kdim), seq(S, vdim))
    n = 1 if cfg.get("unbatched") else N
    masks = {}
    kpm_shape = (S,) if cfg.get("unbatched") else (n, S)
    if cfg.get("kpm") == "bool":
        masks["key_padding_mask"] = rng.random(kpm_shape) > 0.6
        masks["key_padding_mask"][..., 0] = False
    elif cfg.get("kpm") == "float":
        masks["key_padding_mask"] = rng.standard_normal(kpm_shape)
    elif cfg.get("kpm") == "dead":
        masks["key_padding_mask"] = np.zeros(kpm_shape, dtype=bool)
        masks["key_padding_mask"][0] = True
    kind = cfg.get("mask", "")
    shape = (n * heads, L, S) if kind.startswith("3d") else (L, S)
    if kind.endswith("bool"):
        masks["attn_mask"] = rng.random(shape) > 0.6
        masks["attn_mask"][..., 1] = False
    elif kind.endswith("float"):
        masks["attn_mask"] = rng.standard_normal(shape)
    elif kind == "causal":
        masks["attn_mask"] = np.triu(np.ones((L, S), dtype=bool), 1)
    return q, k, v, masks


def _load(ours, theirs, np_dtype):
    """Cast both to the dtype and load torch's state_dict into ours (same keys, same shapes)."""
    td_dtype, torch_dtype = DTYPES[np_dtype]
    theirs.to(torch_dtype)
    ours.to(td_dtype)
    sd = theirs.state_dict()
    assert list(ours.state_dict()) == list(sd)
    assert [tuple(t.shape) for t in ours.state_dict().values()] == [tuple(t.shape) for t in sd.values()]
    ours.load_state_dict(sd)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]


@FLOATS
@pytest.mark.parametrize("cfg", MHA_CONFIGS, ids=_id)
def test_multihead_attention_matches_torch(cfg, np_dtype):
    options = {k: v for k, v in cfg.items() if k not in _NOT_CTOR}
    torch.manual_seed(0)
    theirs = torch.nn.MultiheadAttention(4, 2, **options)
    ours = nn.MultiheadAttention(4, 2, **options)
    assert repr(ours) == repr(theirs)
    _load(ours, theirs, np_dtype)
    q, k, v, masks = _mha_inputs(cfg, np.random.default_rng(0))
    o_in, t_in = zip(*[_pair(a, np_dtype) for a in ([q] if k is None else [q, k, v])])
    o_kw, t_kw = {}, {}
    for name, a in masks.items():
        o_kw[name], t_kw[name] = _pair(a, np_dtype, grad=False)
    for name in ("need_weights", "average_attn_weights", "is_causal"):
        if name in cfg:
            o_kw[name] = t_kw[name] = cfg[name]
    o_args = o_in * 3 if k is None else o_in
    t_args = t_in * 3 if k is None else t_in
    o_out, o_w = ours(*o_args, **o_kw)
    t_out, t_w = theirs(*t_args, **t_kw)
    tol = TOL[np_dtype]
    _assert_close(o_out, t_out, tol, "output")
    if t_w is None:
        assert o_w is None
        outs = [(o_out, t_out)]
    else:
        _assert_close(o_w, t_w, tol, "attention weights")
        outs = [(o_out, t_out), (o_w, t_w)]
    names = [f"input {i}" for i in range(len(o_in))] + [n for n, _ in theirs.named_parameters()]
    _compare_grads([o for o, _ in outs], [t for _, t in outs], list(o_in) + list(ours.parameters()),
                   list(t_in) + list(theirs.parameters()), names, tol)


@pytest.mark.filterwarnings("ignore:invalid value encountered")     # NumPy's note on the -inf - -inf
def test_multihead_attention_fully_masked_row_with_weights_is_nan_as_torch():
    torch.manual_seed(0)
    theirs = torch.nn.MultiheadAttention(4, 2)
    ours = nn.MultiheadAttention(4, 2)
    _load(ours, theirs, np.float64)
    x = np.random.default_rng(0).standard_normal((3, 2, 4))
    kpm = np.zeros((2, 3), dtype=bool)
    kpm[0] = True
    o_out, o_w = ours(*[td.tensor(x)] * 3, key_padding_mask=td.tensor(kpm))
    t_out, t_w = theirs(*[torch.tensor(x)] * 3, key_padding_mask=torch.tensor(kpm))
    for o, t in ((o_out, t_out), (o_w, t_w)):
        np.testing.assert_allclose(o.detach().numpy(), t.detach().numpy(), rtol=1e-10, atol=1e-10)  # nan as torch
    assert np.isnan(o_w.detach().numpy()[0]).all() and not np.isnan(o_w.detach().numpy()[1]).any()


def test_multihead_attention_init_and_dtype():
    td.manual_seed(0)
    m = nn.MultiheadAttention(8, 2, add_bias_kv=True)
    assert not m.in_proj_bias.detach().numpy().any() and not m.out_proj.bias.detach().numpy().any()
    bound = np.sqrt(6 / (8 + 24))              # xavier_uniform_ on (3E, E)
    w = m.in_proj_weight.detach().numpy()
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.8 * bound
    assert m.bias_k.shape == (1, 1, 8) and m.bias_k.detach().numpy().std() > 0
    sep = nn.MultiheadAttention(8, 2, kdim=3, vdim=5, bias=False)
    assert [n for n, _ in sep.named_parameters()] == ["q_proj_weight", "k_proj_weight", "v_proj_weight",
                                                       "out_proj.weight"]
    x = td.randn(3, 2, 8)
    out, w = m(x, x, x)
    assert out.dtype == td.float32 and w.dtype == td.float32 and w.shape == (2, 3, 4)


def test_multihead_attention_gradcheck():
    """Central differences, float64, for the inputs and every parameter of a tiny layer with
    every option that adds a parameter or a path."""
    td.manual_seed(0)
    m = nn.MultiheadAttention(4, 2, add_bias_kv=True, add_zero_attn=True, kdim=3, vdim=2).to(td.float64)
    rng = np.random.default_rng(0)
    q, k, v = (td.tensor(rng.standard_normal(s), requires_grad=True) for s in ((3, 2, 4), (2, 2, 3), (2, 2, 2)))
    mask = td.tensor(np.array([[False, True], [False, False], [True, False]]))
    params = list(m.parameters())

    def fn(q, k, v, *unused_params):     # the parameters are perturbed in place by gradcheck
        out, w = m(q, k, v, attn_mask=mask, average_attn_weights=False)
        return out, w

    assert td.gradcheck(fn, (q, k, v, *params))


def test_multihead_attention_errors():
    m = nn.MultiheadAttention(4, 2)
    x = td.randn(3, 2, 4)
    with pytest.raises(RuntimeError, match=r"MultiheadAttention.*4 features.*query \(3, 2, 5\)"):
        m(td.randn(3, 2, 5), x, x)
    with pytest.raises(RuntimeError, match=r"MultiheadAttention.*2-D.*query \(1, 3, 2, 4\)"):
        m(td.randn(1, 3, 2, 4), x, x)
    with pytest.raises(RuntimeError, match=r"MultiheadAttention.*key_padding_mask of shape \(2, 3\), got \(3, 2\)"):
        m(x, x, x, key_padding_mask=td.zeros(3, 2, dtype=td.bool))
    with pytest.raises(RuntimeError, match=r"MultiheadAttention.*attn_mask.*got \(3, 4\)"):
        m(x, x, x, attn_mask=td.zeros(3, 4, dtype=td.bool))
    with pytest.raises(RuntimeError, match=r"MultiheadAttention.*batch size"):
        m(x, td.randn(3, 1, 4), td.randn(3, 1, 4))
    with pytest.raises(RuntimeError, match="MultiheadAttention.*is_causal"):
        m(x, x, x, is_causal=True)
    with pytest.raises(ValueError, match="MultiheadAttention.*divisible"):
        nn.MultiheadAttention(5, 2)
    with pytest.raises(RuntimeError, match="MultiheadAttention.*key_padding_mask.*dtype"):
        m(x, x, x, key_padding_mask=td.zeros(2, 3, dtype=td.float64))


# ---------------------------------------------------------------- Transformer classes
D, HEADS, FF = 4, 2, 6


def _seq(rng, length, cfg, n=2):
    if cfg.get("unbatched"):
        return rng.standard_normal((length, D))
    return rng.standard_normal((n, length, D) if cfg.get("batch_first") else (length, n, D))


def _masks(rng, prefix, L, S, cfg, n=2):
    """attn mask (bool, or the float causal mask) and key padding mask for one attention, by cfg."""
    out = {}
    if cfg.get("masks"):
        if prefix == "tgt" or cfg.get("causal"):
            out[f"{prefix}_mask"] = np.triu(np.full((L, S), -np.inf), 1)
        else:
            out[f"{prefix}_mask"] = rng.random((L, S)) > 0.7
            out[f"{prefix}_mask"][:, 0] = False
        kpm = rng.random((S,) if cfg.get("unbatched") else (n, S)) > 0.7
        kpm[..., 0] = False
        out[f"{prefix}_key_padding_mask"] = kpm
    return out


LAYER_CONFIGS = [
    {},
    {"norm_first": True},
    {"activation": "gelu", "batch_first": True, "masks": True},
    {"norm_first": True, "activation": "gelu", "masks": True},
    {"unbatched": True, "masks": True},
    {"eval": True, "dropout": 0.1, "masks": True},
    {"bias": False, "norm_first": True, "masks": True, "causal": True},
]
_LAYER_NOT_CTOR = ("unbatched", "masks", "eval", "causal")


def _run_pair(ours, theirs, o_args, t_args, o_kw, t_kw, o_in, t_in, np_dtype):
    o_out, t_out = ours(*o_args, **o_kw), theirs(*t_args, **t_kw)
    tol = TOL[np_dtype]
    _assert_close(o_out, t_out, tol, "output")
    names = [f"input {i}" for i in range(len(o_in))] + [n for n, _ in theirs.named_parameters()]
    _compare_grads([o_out], [t_out], list(o_in) + list(ours.parameters()), list(t_in) + list(theirs.parameters()),
                   names, tol)


def _build(name, cfg, np_dtype, make):
    """(ours, theirs) from ``make(module namespace, options)``, in cfg's mode, torch's state loaded."""
    options = {"dropout": 0.0}
    options.update({k: v for k, v in cfg.items() if k not in _LAYER_NOT_CTOR})
    torch.manual_seed(0)
    theirs, ours = make(torch.nn, options), make(nn, options)
    theirs.train(not cfg.get("eval"))
    ours.train(not cfg.get("eval"))
    _load(ours, theirs, np_dtype)
    return ours, theirs


def _as_pairs(arrays, np_dtype, grad):
    o, t = {}, {}
    for name, a in arrays.items():
        o[name], t[name] = _pair(a, np_dtype, grad=grad)
    return o, t


@FLOATS
@pytest.mark.parametrize("cfg", LAYER_CONFIGS, ids=_id)
def test_encoder_layer_matches_torch(cfg, np_dtype):
    ours, theirs = _build("TransformerEncoderLayer", cfg, np_dtype,
                          lambda m, o: m.TransformerEncoderLayer(D, HEADS, FF, **o))
    rng = np.random.default_rng(0)
    o_x, t_x = _pair(_seq(rng, 5, cfg), np_dtype)
    o_kw, t_kw = _as_pairs(_masks(rng, "src", 5, 5, cfg), np_dtype, False)
    _run_pair(ours, theirs, [o_x], [t_x], o_kw, t_kw, [o_x], [t_x], np_dtype)


@FLOATS
@pytest.mark.parametrize("cfg", LAYER_CONFIGS, ids=_id)
def test_decoder_layer_matches_torch(cfg, np_dtype):
    ours, theirs = _build("TransformerDecoderLayer", cfg, np_dtype,
                          lambda m, o: m.TransformerDecoderLayer(D, HEADS, FF, **o))
    rng = np.random.default_rng(0)
    (o_t, t_t), (o_m, t_m) = _pair(_seq(rng, 4, cfg), np_dtype), _pair(_seq(rng, 5, cfg), np_dtype)
    masks = _masks(rng, "tgt", 4, 4, cfg)
    masks.update(_masks(rng, "memory", 4, 5, cfg))
    o_kw, t_kw = _as_pairs(masks, np_dtype, False)
    _run_pair(ours, theirs, [o_t, o_m], [t_t, t_m], o_kw, t_kw, [o_t, o_m], [t_t, t_m], np_dtype)


STACK_CONFIGS = [
    {"masks": True},
    {"norm_first": True, "activation": "gelu", "batch_first": True, "masks": True},
    {"unbatched": True, "eval": True, "dropout": 0.1},
]


def _rename(masks, names):
    return {names.get(k, k): v for k, v in masks.items()}


@FLOATS
@pytest.mark.parametrize("cfg", STACK_CONFIGS, ids=_id)
def test_encoder_and_decoder_stacks_match_torch(cfg, np_dtype):
    def make_encoder(m, o):
        return m.TransformerEncoder(m.TransformerEncoderLayer(D, HEADS, FF, **o), 2, norm=m.LayerNorm(D),
                                    enable_nested_tensor=False)

    def make_decoder(m, o):
        return m.TransformerDecoder(m.TransformerDecoderLayer(D, HEADS, FF, **o), 3, norm=m.LayerNorm(D))

    rng = np.random.default_rng(0)
    ours, theirs = _build("TransformerEncoder", cfg, np_dtype, make_encoder)
    o_x, t_x = _pair(_seq(rng, 5, cfg), np_dtype)
    o_kw, t_kw = _as_pairs(_rename(_masks(rng, "src", 5, 5, cfg), {"src_mask": "mask"}), np_dtype, False)
    _run_pair(ours, theirs, [o_x], [t_x], o_kw, t_kw, [o_x], [t_x], np_dtype)

    ours, theirs = _build("TransformerDecoder", cfg, np_dtype, make_decoder)
    (o_t, t_t), (o_m, t_m) = _pair(_seq(rng, 4, cfg), np_dtype), _pair(_seq(rng, 5, cfg), np_dtype)
    masks = _masks(rng, "tgt", 4, 4, cfg)
    masks.update(_masks(rng, "memory", 4, 5, cfg))
    o_kw, t_kw = _as_pairs(masks, np_dtype, False)
    _run_pair(ours, theirs, [o_t, o_m], [t_t, t_m], o_kw, t_kw, [o_t, o_m], [t_t, t_m], np_dtype)


TRANSFORMER_CONFIGS = [
    {"masks": True},
    {"norm_first": True, "activation": "gelu", "batch_first": True, "masks": True},
    {"unbatched": True, "masks": True, "eval": True, "dropout": 0.1},
]


@FLOATS
@pytest.mark.parametrize("cfg", TRANSFORMER_CONFIGS, ids=_id)
def test_transformer_matches_torch(cfg, np_dtype):
    ours, theirs = _build("Transformer", cfg, np_dtype,
                          lambda m, o: m.Transformer(D, HEADS, 2, 2, FF, **o))
    rng = np.random.default_rng(0)
    (o_s, t_s), (o_t, t_t) = _pair(_seq(rng, 5, cfg), np_dtype), _pair(_seq(rng, 4, cfg), np_dtype)
    masks = _masks(rng, "src", 5, 5, cfg)
    masks.update(_masks(rng, "tgt", 4, 4, cfg))
    masks.update(_masks(rng, "memory", 4, 5, cfg))
    o_kw, t_kw = _as_pairs(masks, np_dtype, False)
    _run_pair(ours, theirs, [o_s, o_t], [t_s, t_t], o_kw, t_kw, [o_s, o_t], [t_s, t_t], np_dtype)


def test_transformer_init_mask_and_callable_activation():
    td.manual_seed(0)
    model = nn.Transformer(8, 2, 1, 1, 16)
    for name, p in model.named_parameters():
        if p.ndim > 1:                  # xavier_uniform_ everywhere, out_proj included
            fan_out, fan_in = p.shape
            assert np.abs(p.detach().numpy()).max() <= np.sqrt(6 / (fan_in + fan_out)), name
    theirs = torch.nn.Transformer(8, 2, 1, 1, 16)
    assert list(model.state_dict()) == list(theirs.state_dict())
    for dtype, torch_dtype in ((None, None), (td.float64, torch.float64)):
        mask = nn.Transformer.generate_square_subsequent_mask(4, dtype=dtype)
        expected = torch.nn.Transformer.generate_square_subsequent_mask(4, dtype=torch_dtype)
        assert mask.dtype == (np.float32 if dtype is None else np.float64)
        np.testing.assert_array_equal(mask.numpy(), expected.numpy())
    # a callable activation (here a Module) is used as it is, and registered as torch registers it
    layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, activation=nn.GELU())
    t_layer = torch.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, activation=torch.nn.GELU())
    assert list(layer.state_dict()) == list(t_layer.state_dict())
    layer.load_state_dict(t_layer.state_dict())
    x = np.random.default_rng(0).standard_normal((3, 2, 8)).astype(np.float32)
    np.testing.assert_allclose(layer(td.tensor(x)).detach().numpy(), t_layer(torch.tensor(x)).detach().numpy(),
                               rtol=1e-5, atol=1e-5)


def test_transformer_errors():
    model = nn.Transformer(4, 2, 1, 1, 8)
    with pytest.raises(RuntimeError, match=r"Transformer.*batch number.*src \(5, 2, 4\) and tgt \(3, 3, 4\)"):
        model(td.randn(5, 2, 4), td.randn(3, 3, 4))
    with pytest.raises(RuntimeError, match=r"Transformer.*d_model \(4\).*tgt \(3, 2, 5\)"):
        model(td.randn(5, 2, 4), td.randn(3, 2, 5))
    with pytest.raises(RuntimeError, match=r"TransformerEncoderLayer.*\(L, 4\), got \(5, 2, 3\)"):
        nn.TransformerEncoderLayer(4, 2, 8)(td.randn(5, 2, 3))
    with pytest.raises(RuntimeError, match=r"TransformerDecoderLayer.*memory.*got \(5, 6\)"):
        nn.TransformerDecoderLayer(4, 2, 8)(td.randn(3, 2, 4), td.randn(5, 6))
    with pytest.raises(RuntimeError, match="TransformerEncoderLayer.*relu/gelu, not tanh"):
        nn.TransformerEncoderLayer(4, 2, 8, activation="tanh")


# ---------------------------------------------------------------- GPU
@pytest.mark.gpu
def test_cuda_matches_cpu():
    """MultiheadAttention (every option, both masks) and a Transformer on the GPU: same
    numbers, outputs on the GPU, float32 kept."""
    td.manual_seed(0)
    rng = np.random.default_rng(0)
    mha = nn.MultiheadAttention(4, 2, add_bias_kv=True, add_zero_attn=True, kdim=3, vdim=5)
    tr = nn.Transformer(4, 2, 1, 1, 8, dropout=0.0, norm_first=True)     # (gelu: cupyx erf, not on the stand-in)
    q, k, v = (rng.standard_normal(s).astype(np.float32) for s in ((3, 2, 4), (5, 2, 3), (5, 2, 5)))
    kpm = np.zeros((2, 5), dtype=bool)
    kpm[0] = True                      # a fully masked sample: the safe softmax path
    mask = rng.random((3, 5)) > 0.5
    results = []
    for device in ("cpu", "cuda"):
        m, t = mha.to(device), tr.to(device)
        qi, ki, vi = (td.tensor(a, device=device, requires_grad=True) for a in (q, k, v))
        masks = {"key_padding_mask": td.tensor(kpm, device=device), "attn_mask": td.tensor(mask, device=device)}
        outs = [m(qi, ki, vi, need_weights=False, **masks)[0], m(qi, ki, vi, **{"attn_mask": masks["attn_mask"]})[1],
                t(qi, qi[:2], tgt_mask=nn.Transformer.generate_square_subsequent_mask(2, device=device)),
                F.scaled_dot_product_attention(qi.transpose(0, 1), qi.transpose(0, 1), qi.transpose(0, 1),
                                               is_causal=True)]
        assert all(o.device.type == device and o.dtype == td.float32 for o in outs)
        ups = [td.tensor(np.random.default_rng(j).standard_normal(o.shape).astype(np.float32), device=device)
               for j, o in enumerate(outs)]
        leaves = [qi, ki, vi] + list(m.parameters()) + list(t.parameters())
        grads = td.autograd.grad(outs, leaves, ups, allow_unused=True)
        results.append([o.detach().cpu().numpy() for o in outs] +
                       [g.cpu().numpy() for g in grads if g is not None])
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
