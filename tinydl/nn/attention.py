"""Multi-head attention and the Transformer (Vaswani et al. 2017), as PyTorch's.

MultiheadAttention projects queries, keys and values, splits the E features into h heads
of d = E / h features, lets every head attend on its own, and mixes the heads again:

    Q = X_q W_q^T + b_q,   K = X_k W_k^T + b_k,   V = X_v W_v^T + b_v
    head_i = softmax(Q_i K_i^T / sqrt(d) + B) V_i        (Q_i: the i-th d features of Q)
    out    = concat(head_1, ..., head_h) W_o^T + b_o

B is the attention bias: 0 where a query may look at a key, -inf where it may not, or
any float added to the scores. Here (unlike F.scaled_dot_product_attention) a bool mask
means True = NOT allowed, as in PyTorch's modules. ``attn_mask`` (L, S) or (N * h, L, S)
and ``key_padding_mask`` (N, S) (True at the padding of the keys) are turned into such
biases and added. A query row with every key masked gives nan weights when the weights
are returned (need_weights=True, as PyTorch's softmax) and a zero attention output when
they are not (PyTorch's scaled-dot-product path).

The Transformer layers wrap it with a position-wise feed-forward network and layer norm,
each sublayer f on a residual path:

    post-norm (norm_first=False):  x = LayerNorm(x + Dropout(f(x)))
    pre-norm  (norm_first=True):   x = x + Dropout(f(LayerNorm(x)))
    feed-forward:                  f(x) = W_2 Dropout(activation(W_1 x + b_1)) + b_2

An encoder layer is self-attention then feed-forward; a decoder layer is self-attention
on the target, attention from the target to the encoder's output ("memory"), then
feed-forward. Parameter names and shapes are PyTorch's, so its state_dicts load.
Everything is built from differentiable ops; autograd gives the gradients.
"""
import copy
import math

from ..ops.attention import attend, attention_bias, causal_bias
from ..tensor import empty, full
from . import functional as F, init
from .containers import ModuleList
from .layers import Dropout, Linear
from .module import Module
from .normalization import LayerNorm
from .parameter import Parameter

__all__ = ["MultiheadAttention", "TransformerEncoderLayer", "TransformerDecoderLayer", "TransformerEncoder",
           "TransformerDecoder", "Transformer"]


class NonDynamicallyQuantizableLinear(Linear):
    """A plain Linear, under the class name PyTorch gives ``MultiheadAttention.out_proj``
    (so the two reprs read the same)."""


def _pad_key(bias):
    """One more key column of bias 0 (for bias_k or the zero key): that key is allowed."""
    if bias is None:
        return None
    return F.cat([bias, bias.new_zeros(*bias.shape[:-1], 1)], -1)


class MultiheadAttention(Module):
    """Multi-head attention (module docstring), as ``torch.nn.MultiheadAttention``.

    Shapes (L target length, S source length, N batch, E embed_dim):
      query (L, N, E), key (S, N, kdim), value (S, N, vdim); (N, L, E) etc. with batch_first;
      unbatched: (L, E), (S, kdim), (S, vdim)
      key_padding_mask (N, S) or (S,) unbatched; attn_mask (L, S) or (N * num_heads, L, S)
      returns (output like query, weights (N, L, S) averaged over heads, (N, num_heads, L, S)
      with average_attn_weights=False, or None when need_weights=False)

    Options: ``dropout`` on the attention weights (training only); ``bias`` for the in and
    out projections; ``add_bias_kv`` appends a learned key ``bias_k`` and value ``bias_v``
    to every sequence; ``add_zero_attn`` appends an all-zero key and value per head;
    ``kdim``/``vdim`` (when not embed_dim) give separate ``q_proj_weight``, ``k_proj_weight``,
    ``v_proj_weight`` instead of the stacked ``in_proj_weight`` (3E, E).
    ``is_causal`` is a hint that attn_mask is the causal mask (it must be given too).
    Init: xavier_uniform_ for the in-projections, zeros for the in and out biases,
    xavier_normal_ for bias_k and bias_v.
    """

    def __init__(self, embed_dim, num_heads, dropout=0.0, bias=True, add_bias_kv=False, add_zero_attn=False,
                 kdim=None, vdim=None, batch_first=False, device=None, dtype=None):
        super().__init__()
        if embed_dim <= 0 or num_heads <= 0:
            raise ValueError(f"MultiheadAttention: embed_dim and num_heads must be greater than 0, got "
                             f"embed_dim={embed_dim} and num_heads={num_heads} instead")
        if embed_dim % num_heads:
            raise ValueError(f"MultiheadAttention: embed_dim ({embed_dim}) must be divisible by num_heads "
                             f"({num_heads})")
        self.embed_dim = embed_dim
        self.kdim = kdim if kdim is not None else embed_dim
        self.vdim = vdim if vdim is not None else embed_dim
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        self.num_heads = num_heads
        self.dropout = dropout
        self.batch_first = batch_first
        self.head_dim = embed_dim // num_heads
        options = {"dtype": dtype, "device": device}
        if self._qkv_same_embed_dim:
            self.in_proj_weight = Parameter(empty(3 * embed_dim, embed_dim, **options))
            for name in ("q_proj_weight", "k_proj_weight", "v_proj_weight"):
                self.register_parameter(name, None)
        else:
            self.q_proj_weight = Parameter(empty(embed_dim, embed_dim, **options))
            self.k_proj_weight = Parameter(empty(embed_dim, self.kdim, **options))
            self.v_proj_weight = Parameter(empty(embed_dim, self.vdim, **options))
            self.register_parameter("in_proj_weight", None)
        if bias:
            self.in_proj_bias = Parameter(empty(3 * embed_dim, **options))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = NonDynamicallyQuantizableLinear(embed_dim, embed_dim, bias=bias, **options)
        if add_bias_kv:
            self.bias_k = Parameter(empty(1, 1, embed_dim, **options))
            self.bias_v = Parameter(empty(1, 1, embed_dim, **options))
        else:
            self.bias_k = self.bias_v = None
        self.add_zero_attn = add_zero_attn
        self._reset_parameters()

    def _reset_parameters(self):
        for w in (self.in_proj_weight, self.q_proj_weight, self.k_proj_weight, self.v_proj_weight):
            if w is not None:
                init.xavier_uniform_(w)
        for b in (self.in_proj_bias, self.out_proj.bias):
            if b is not None:
                init.zeros_(b)
        for b in (self.bias_k, self.bias_v):
            if b is not None:
                init.xavier_normal_(b)

    # ------------------------------------------------------------ checks
    def _check(self, query, key, value, key_padding_mask, attn_mask):
        """Raise, naming this layer and the shapes, unless the inputs fit; return whether batched."""
        shapes = f"query {tuple(query.shape)}, key {tuple(key.shape)}, value {tuple(value.shape)}"
        if query.ndim not in (2, 3) or key.ndim != query.ndim or value.ndim != query.ndim:
            raise RuntimeError(f"MultiheadAttention: expected query, key and value all batched (3-D) or all "
                               f"unbatched (2-D), got {shapes}")
        for what, t, size in (("query", query, self.embed_dim), ("key", key, self.kdim), ("value", value, self.vdim)):
            if t.shape[-1] != size:
                raise RuntimeError(f"MultiheadAttention: expected {what} with {size} features (last dim), got {shapes}")
        batched = query.ndim == 3
        seq, batch = (1, 0) if self.batch_first else (0, 1)
        if key.shape[:-1] != value.shape[:-1] or (batched and key.shape[batch] != query.shape[batch]):
            raise RuntimeError(f"MultiheadAttention: key and value must have one length and batch size, and the "
                               f"query the same batch size, got {shapes}")
        n = query.shape[batch] if batched else 1
        tgt, src = (query.shape[seq], key.shape[seq]) if batched else (query.shape[0], key.shape[0])
        if key_padding_mask is not None:
            expected = (n, src) if batched else (src,)
            if tuple(key_padding_mask.shape) != expected:
                raise RuntimeError(f"MultiheadAttention: expected key_padding_mask of shape {expected}, got "
                                   f"{tuple(key_padding_mask.shape)} ({shapes})")
        if attn_mask is not None:
            allowed = [(tgt, src), (n * self.num_heads, tgt, src)]
            if tuple(attn_mask.shape) not in allowed:
                raise RuntimeError(f"MultiheadAttention: expected attn_mask of shape {allowed[0]} or {allowed[1]} "
                                   f"(N * num_heads, L, S), got {tuple(attn_mask.shape)} ({shapes})")
        return batched

    # ------------------------------------------------------------ forward
    def _in_projection(self, query, key, value):
        """Q, K, V: the three input projections (one matmul when query, key and value are one tensor)."""
        if self._qkv_same_embed_dim:
            if query is key and key is value:
                return F.linear(query, self.in_proj_weight, self.in_proj_bias).chunk(3, -1)
            weights = self.in_proj_weight.chunk(3)
        else:
            weights = (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight)
        biases = (None,) * 3 if self.in_proj_bias is None else self.in_proj_bias.chunk(3)
        return tuple(F.linear(x, w, b) for x, w, b in zip((query, key, value), weights, biases))

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                average_attn_weights=True, is_causal=False):
        """Attention of ``query`` over ``key``/``value`` (shapes: class docstring). Returns
        (output, weights or None)."""
        batched = self._check(query, key, value, key_padding_mask, attn_mask)
        if is_causal and attn_mask is None:
            raise RuntimeError("MultiheadAttention: is_causal is a hint that attn_mask is the causal mask; "
                               "pass attn_mask too (e.g. Transformer.generate_square_subsequent_mask(L))")
        name = "MultiheadAttention"
        padding = attention_bias(key_padding_mask, query.dtype, name, "key_padding_mask")
        # With no padding mask and no weights to return, PyTorch trusts the hint and uses the causal mask itself.
        causal = is_causal and padding is None and not need_weights
        mask = None if causal else attention_bias(attn_mask, query.dtype, name)

        q, k, v = self._in_projection(query, key, value)
        # Work in (N, length, E): a batch of one for unbatched inputs.
        if not batched:
            q, k, v = q.unsqueeze(0), k.unsqueeze(0), v.unsqueeze(0)
            padding = None if padding is None else padding.unsqueeze(0)
        elif not self.batch_first:
            q, k, v = q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1)
        n, tgt, heads, d = q.shape[0], q.shape[1], self.num_heads, self.head_dim
        if self.bias_k is not None:
            k = F.cat([k, self.bias_k.expand(n, 1, self.embed_dim)], 1)
            v = F.cat([v, self.bias_v.expand(n, 1, self.embed_dim)], 1)
            mask, padding = _pad_key(mask), _pad_key(padding)
        # (N, length, E) -> (N, heads, length, d): head i owns features i*d .. (i+1)*d - 1
        q, k, v = (t.reshape(n, t.shape[1], heads, d).transpose(1, 2) for t in (q, k, v))
        if self.add_zero_attn:
            k = F.cat([k, k.new_zeros(n, heads, 1, d)], 2)
            v = F.cat([v, v.new_zeros(n, heads, 1, d)], 2)
            mask, padding = _pad_key(mask), _pad_key(padding)

        if causal:
            bias = causal_bias(q, k)
        else:
            if mask is not None and mask.ndim == 3:
                mask = mask.reshape(n, heads, tgt, mask.shape[-1])
            if padding is not None:
                padding = padding.reshape(n, 1, 1, padding.shape[-1])
            bias = mask if padding is None else padding if mask is None else mask + padding
        p = self.dropout if self.training else 0.0
        out, weights = attend(q, k, v, bias, p, safe=not need_weights)

        out = self.out_proj(out.transpose(1, 2).reshape(n, tgt, self.embed_dim))
        if not batched:
            out = out.squeeze(0)
        elif not self.batch_first:
            out = out.transpose(0, 1)
        if not need_weights:
            return out, None
        if average_attn_weights:
            weights = weights.mean(1)
        return out, weights if batched else weights.squeeze(0)


# ---------------------------------------------------------------- Transformer layers
def _activation(activation, layer):
    """'relu' / 'gelu' as functions; a callable (a function or a Module) as it is."""
    if isinstance(activation, str):
        if activation not in ("relu", "gelu"):
            raise RuntimeError(f"{layer}: activation should be relu/gelu, not {activation}")
        return F.relu if activation == "relu" else F.gelu
    if not callable(activation):
        raise TypeError(f"{layer}: activation should be 'relu', 'gelu' or a callable, got {activation!r}")
    return activation


def _check_features(layer, d_model, **tensors):
    for what, t in tensors.items():
        if t.ndim not in (2, 3) or t.shape[-1] != d_model:
            raise RuntimeError(f"{layer}: expected {what} of shape (L, N, {d_model}), (N, L, {d_model}) or "
                               f"(L, {d_model}), got {tuple(t.shape)}")


class TransformerEncoderLayer(Module):
    """Self-attention then feed-forward, each on a residual path (module docstring):

        post-norm:  x = norm1(x + SA(x));        x = norm2(x + FF(x))
        pre-norm:   x = x + SA(norm1(x));        x = x + FF(norm2(x))

    with SA(x) = dropout1(self_attn(x, x, x)) and FF(x) = dropout2(linear2(dropout(act(linear1(x))))).
    ``forward(src, src_mask=None, src_key_padding_mask=None, is_causal=False)``: src (L, N, d_model)
    ((N, L, d_model) with batch_first, or unbatched (L, d_model)); masks as MultiheadAttention's.
    """

    def __init__(self, d_model, nhead, dim_feedforward=2048, dropout=0.1, activation=F.relu, layer_norm_eps=1e-5,
                 batch_first=False, norm_first=False, bias=True, device=None, dtype=None):
        super().__init__()
        options = {"device": device, "dtype": dtype}
        self.self_attn = MultiheadAttention(d_model, nhead, dropout=dropout, bias=bias, batch_first=batch_first,
                                            **options)
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias, **options)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias, **options)
        self.norm_first = norm_first
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **options)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **options)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)
        self.activation = _activation(activation, type(self).__name__)

    def _sa_block(self, x, attn_mask, key_padding_mask, is_causal):
        x = self.self_attn(x, x, x, attn_mask=attn_mask, key_padding_mask=key_padding_mask, need_weights=False,
                           is_causal=is_causal)[0]
        return self.dropout1(x)

    def _ff_block(self, x):
        return self.dropout2(self.linear2(self.dropout(self.activation(self.linear1(x)))))

    def forward(self, src, src_mask=None, src_key_padding_mask=None, is_causal=False):
        _check_features(type(self).__name__, self.self_attn.embed_dim, src=src)
        x = src
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), src_mask, src_key_padding_mask, is_causal)
            return x + self._ff_block(self.norm2(x))
        x = self.norm1(x + self._sa_block(x, src_mask, src_key_padding_mask, is_causal))
        return self.norm2(x + self._ff_block(x))


class TransformerDecoderLayer(Module):
    """Self-attention, attention over the encoder's output (memory), then feed-forward:

        post-norm:  x = norm1(x + SA(x));  x = norm2(x + MHA(x, memory));  x = norm3(x + FF(x))
        pre-norm:   x = x + SA(norm1(x));  x = x + MHA(norm2(x), memory);  x = x + FF(norm3(x))

    ``forward(tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
    memory_key_padding_mask=None, tgt_is_causal=False, memory_is_causal=False)``: tgt
    (T, N, d_model), memory (S, N, d_model) (batch first with batch_first; unbatched: no N).
    """

    def __init__(self, d_model, nhead, dim_feedforward=2048, dropout=0.1, activation=F.relu, layer_norm_eps=1e-5,
                 batch_first=False, norm_first=False, bias=True, device=None, dtype=None):
        super().__init__()
        options = {"device": device, "dtype": dtype}
        self.self_attn = MultiheadAttention(d_model, nhead, dropout=dropout, bias=bias, batch_first=batch_first,
                                            **options)
        self.multihead_attn = MultiheadAttention(d_model, nhead, dropout=dropout, bias=bias,
                                                 batch_first=batch_first, **options)
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias, **options)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias, **options)
        self.norm_first = norm_first
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **options)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **options)
        self.norm3 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **options)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)
        self.dropout3 = Dropout(dropout)
        self.activation = _activation(activation, type(self).__name__)

    def _sa_block(self, x, attn_mask, key_padding_mask, is_causal):
        x = self.self_attn(x, x, x, attn_mask=attn_mask, key_padding_mask=key_padding_mask, need_weights=False,
                           is_causal=is_causal)[0]
        return self.dropout1(x)

    def _mha_block(self, x, memory, attn_mask, key_padding_mask, is_causal):
        x = self.multihead_attn(x, memory, memory, attn_mask=attn_mask, key_padding_mask=key_padding_mask,
                                need_weights=False, is_causal=is_causal)[0]
        return self.dropout2(x)

    def _ff_block(self, x):
        return self.dropout3(self.linear2(self.dropout(self.activation(self.linear1(x)))))

    def forward(self, tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
                memory_key_padding_mask=None, tgt_is_causal=False, memory_is_causal=False):
        _check_features(type(self).__name__, self.self_attn.embed_dim, tgt=tgt, memory=memory)
        x = tgt
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), tgt_mask, tgt_key_padding_mask, tgt_is_causal)
            x = x + self._mha_block(self.norm2(x), memory, memory_mask, memory_key_padding_mask, memory_is_causal)
            return x + self._ff_block(self.norm3(x))
        x = self.norm1(x + self._sa_block(x, tgt_mask, tgt_key_padding_mask, tgt_is_causal))
        x = self.norm2(x + self._mha_block(x, memory, memory_mask, memory_key_padding_mask, memory_is_causal))
        return self.norm3(x + self._ff_block(x))


# ---------------------------------------------------------------- stacks
def _clones(layer, n):
    """n independent copies of ``layer`` (same starting values, as PyTorch's stacks)."""
    return ModuleList([copy.deepcopy(layer) for _ in range(n)])


class TransformerEncoder(Module):
    """``num_layers`` copies of ``encoder_layer`` applied in turn, then ``norm`` if given.
    ``forward(src, mask=None, src_key_padding_mask=None, is_causal=None)``: as the layer's.
    ``enable_nested_tensor`` and ``mask_check`` (PyTorch's fast path) are accepted and ignored."""

    def __init__(self, encoder_layer, num_layers, norm=None, enable_nested_tensor=True, mask_check=True):
        super().__init__()
        self.layers = _clones(encoder_layer, num_layers)
        self.num_layers = num_layers
        self.norm = norm
        self.enable_nested_tensor = enable_nested_tensor
        self.mask_check = mask_check

    def forward(self, src, mask=None, src_key_padding_mask=None, is_causal=None):
        x = src
        for layer in self.layers:
            x = layer(x, src_mask=mask, src_key_padding_mask=src_key_padding_mask, is_causal=bool(is_causal))
        return x if self.norm is None else self.norm(x)


class TransformerDecoder(Module):
    """``num_layers`` copies of ``decoder_layer`` applied in turn (each reading the same
    ``memory``), then ``norm`` if given. ``forward(tgt, memory, tgt_mask=None, memory_mask=None,
    tgt_key_padding_mask=None, memory_key_padding_mask=None, tgt_is_causal=None,
    memory_is_causal=False)``: as the layer's."""

    def __init__(self, decoder_layer, num_layers, norm=None):
        super().__init__()
        self.layers = _clones(decoder_layer, num_layers)
        self.num_layers = num_layers
        self.norm = norm

    def forward(self, tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
                memory_key_padding_mask=None, tgt_is_causal=None, memory_is_causal=False):
        x = tgt
        for layer in self.layers:
            x = layer(x, memory, tgt_mask=tgt_mask, memory_mask=memory_mask, tgt_key_padding_mask=tgt_key_padding_mask,
                      memory_key_padding_mask=memory_key_padding_mask, tgt_is_causal=bool(tgt_is_causal),
                      memory_is_causal=memory_is_causal)
        return x if self.norm is None else self.norm(x)


class Transformer(Module):
    """The encoder-decoder Transformer: ``memory = encoder(src)``, ``out = decoder(tgt, memory)``;
    each stack ends with a LayerNorm. Every parameter with 2 or more dims starts from
    xavier_uniform_ (as PyTorch's ``_reset_parameters``).

    ``forward(src, tgt, src_mask=None, tgt_mask=None, memory_mask=None, src_key_padding_mask=None,
    tgt_key_padding_mask=None, memory_key_padding_mask=None, src_is_causal=None, tgt_is_causal=None,
    memory_is_causal=False)``: src (S, N, d_model), tgt (T, N, d_model) (batch first with
    batch_first; unbatched: no N); returns (T, N, d_model). For autoregressive decoding pass
    ``tgt_mask=Transformer.generate_square_subsequent_mask(T)``.
    """

    def __init__(self, d_model=512, nhead=8, num_encoder_layers=6, num_decoder_layers=6, dim_feedforward=2048,
                 dropout=0.1, activation=F.relu, custom_encoder=None, custom_decoder=None, layer_norm_eps=1e-5,
                 batch_first=False, norm_first=False, bias=True, device=None, dtype=None):
        super().__init__()
        options = {"device": device, "dtype": dtype}
        layer_options = dict(dim_feedforward=dim_feedforward, dropout=dropout, activation=activation,
                             layer_norm_eps=layer_norm_eps, batch_first=batch_first, norm_first=norm_first,
                             bias=bias, **options)
        if custom_encoder is not None:
            self.encoder = custom_encoder
        else:
            layer = TransformerEncoderLayer(d_model, nhead, **layer_options)
            norm = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **options)
            self.encoder = TransformerEncoder(layer, num_encoder_layers, norm)
        if custom_decoder is not None:
            self.decoder = custom_decoder
        else:
            layer = TransformerDecoderLayer(d_model, nhead, **layer_options)
            norm = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **options)
            self.decoder = TransformerDecoder(layer, num_decoder_layers, norm)
        self.d_model = d_model
        self.nhead = nhead
        self.batch_first = batch_first
        for p in self.parameters():
            if p.ndim > 1:
                init.xavier_uniform_(p)

    @staticmethod
    def generate_square_subsequent_mask(sz, device=None, dtype=None):
        """The causal mask for a sequence of ``sz``: 0 on and below the diagonal, -inf above it
        (position i may not look at the positions after it). float32 unless ``dtype``."""
        return full((sz, sz), -math.inf, dtype=dtype, device=device).triu(1)

    def forward(self, src, tgt, src_mask=None, tgt_mask=None, memory_mask=None, src_key_padding_mask=None,
                tgt_key_padding_mask=None, memory_key_padding_mask=None, src_is_causal=None, tgt_is_causal=None,
                memory_is_causal=False):
        batch = 0 if self.batch_first else 1
        if src.ndim == 3 and (tgt.ndim != 3 or src.shape[batch] != tgt.shape[batch]):
            raise RuntimeError(f"Transformer: the batch number of src and tgt must be equal, got src "
                               f"{tuple(src.shape)} and tgt {tuple(tgt.shape)} (batch_first={self.batch_first})")
        if src.shape[-1] != self.d_model or tgt.shape[-1] != self.d_model:
            raise RuntimeError(f"Transformer: the feature number of src and tgt must be equal to d_model "
                               f"({self.d_model}), got src {tuple(src.shape)} and tgt {tuple(tgt.shape)}")
        memory = self.encoder(src, mask=src_mask, src_key_padding_mask=src_key_padding_mask, is_causal=src_is_causal)
        return self.decoder(tgt, memory, tgt_mask=tgt_mask, memory_mask=memory_mask,
                            tgt_key_padding_mask=tgt_key_padding_mask,
                            memory_key_padding_mask=memory_key_padding_mask, tgt_is_causal=tgt_is_causal,
                            memory_is_causal=memory_is_causal)
