"""Model summary: per-layer output shapes, parameters, memory, FLOPs and receptive fields.

    >>> s = td.utils.summary(models.create('alexnet'), (3, 227, 227))   # prints a table
    >>> s.total_params, s['features.12']['rf'], s['features.13']['jump']
    (62378344, 163, 32)
    >>> s.optimizer_bytes('adam') == 4 * s.param_bytes
    True

``summary`` runs ONE forward pass (random input of ``(batch_size,) + input_size``,
under ``td.no_grad()``, in eval mode; each module's own mode is restored afterwards)
with forward hooks on every module, and writes one record per layer call: a plain
dict with exactly the keys of ``RECORD_KEYS``. A "layer" is a leaf module (one with
no children); a container gets a row of its own only when its forward ends with an
operation written inline (Inception's ``td.cat`` of the branches, a residual ``+``
that is returned without a final layer): then its output is a tensor that no child
produced. Operations written inline in a ``forward`` (``F.relu(x)``, ``x + y``) are
not layers and have no rows.

The conventions are the notes' (seed 001, "DL 中的 GPU 和显存分析" and "感受野的计算"):

Parameters
    ``params`` counts the weights of the layer (biases included, shared parameters
    once, at their first use). Memory = count x bytes per element (4 for float32).
    The notes' per-layer formulas leave the bias out (Linear M x N, Conv Cin x Cout x K x K);
    ``Summary.weight_params`` gives that count (parameters not named ``bias``).
Optimizer (the notes' rule)
    training keeps, per trainable parameter, the parameter and its gradient (SGD: x2),
    plus the momentum buffer (momentum SGD: x3) or Adam's two moments (x4).
    ``optimizer_bytes(kind)`` = param_bytes + trainable_bytes * (factor - 1): frozen
    parameters need neither gradient nor state.
Activations
    each layer's output must be kept for backward and receives a gradient of the same
    size, so a layer costs 2 x output elements x bytes (1 x for integer outputs such
    as max-pooling indices, which get no gradient). An output that is its input or a
    view of it (Identity, Flatten, Dropout in eval mode) allocates nothing and counts
    0, except Dropout, which allocates its output in training. The input itself gets
    no gradient; it is reported separately (``input_bytes``). All of it is
    proportional to the batch size: memory = model memory + batch_size x per sample.
    In-place ReLU would save memory in PyTorch; tinydl's ReLU ignores ``inplace``.
FLOPs
    the notes' flop is one multiply-add ("1*2 + 3" is one flop), biases not counted:
        Linear            B x M x N  (output elements x in_features)
        Conv              B x H_out x W_out x C_out x (C_in / groups) x K_h x K_w
                          (dilation changes the span of the kernel, not its size)
        ConvTranspose     B x H_in x W_in x C_in x (C_out / groups) x K_h x K_w
                          (every input pixel is multiplied by the whole kernel)
        Max/Avg pooling   B x H_out x W_out x C x K_h x K_w  (one op per window element)
        Adaptive pooling  B x C x (the sum of the window sizes)
        BatchNorm         4 x B x H x W x C  (subtract mean, divide by std, scale, shift)
        LRN               size x B x H x W x C  (the sum of squares over ``size`` channels)
        activations       B x H x W x C  (ReLU, sigmoid, tanh, softmax, ...: one per element)
        Upsample          0 for nearest, else elements x taps (2 per axis linear, 4 cubic)
    every other layer (dropout, flatten, identity, padding, pixel shuffle, unpooling,
    an unknown custom layer) counts 0.
Receptive field (rf), jump, start
    the notes' recurrence along each spatial axis, from the image (n = size, jump 1,
    rf 1, start 0.5: pixel i spans [i, i+1)) through every conv / pool layer:
        jump_out  = jump_in * s
        rf_out    = rf_in + (k_eff - 1) * jump_in,        k_eff = dilation * (k - 1) + 1
        start_out = start_in + ((k_eff - 1) / 2 - p) * jump_in
    ``start`` is the centre of the first feature's field in input pixels (negative:
    it lies in the padding). p is PyTorch's left padding (the notes' script recomputes
    it from the output size, TensorFlow's SAME rule; for AlexNet both agree). Layers
    that do not resample (ReLU, BN, LRN, dropout) keep all three. A Linear layer on a
    flattened n x n map is a conv with k = n (the notes' "fc6-conv"); after it the map
    is 1 x 1 and later Linear layers keep the field. Transposed conv, unpooling,
    upsampling and pixel shuffle divide the jump by their factor (``transposed_step``);
    their rf is the widest field of an output, and since several neighbouring
    outputs share one input, an output's actual field may sit up to half an input
    jump off the centre that start + i * jump gives. Branched nets (ResNet, Inception): a tensor made by an inline
    op (``+``, ``cat``) takes the largest field among the earlier outputs with the
    same map size, i.e. the main path (the residual branch, the widest Inception
    branch): the field of a sum or a concatenation is the union of its inputs'
    fields, and with aligned centres that is the largest one. ``rf``, ``jump`` and
    ``start`` are numbers when all spatial axes agree, a tuple per axis otherwise
    (1x7 convs), and None where there is no map (an MLP) or a custom layer changed
    the map size in a way this module does not know.
"""
import math
import sys
from collections import namedtuple

import numpy as np

from .. import backend
from ..tensor import Tensor

__all__ = ["summary", "Summary", "Field", "RECORD_KEYS", "OPTIMIZER_FACTORS", "conv_step",
           "transposed_step", "receptive_fields"]

RECORD_KEYS = ("name", "type", "output_shape", "params", "param_bytes", "activation_bytes", "flops",
               "rf", "jump", "start")

#: memory of training = parameter memory x factor (the notes: SGD x2, momentum x3, Adam x4)
OPTIMIZER_FACTORS = {"sgd": 2, "momentum": 3, "adam": 4}
_OPTIMIZER_ALIASES = {"sgd_momentum": "momentum", "nesterov": "momentum", "adamw": "adam"}

BATCHNORM_FLOPS_PER_ELEMENT = 4
_INTERP_TAPS = {"nearest": 1, "linear": 2, "bilinear": 2, "trilinear": 2, "bicubic": 4}


# ====================================================================== receptive fields
class Field(namedtuple("Field", "n jump rf start")):
    """The geometry of a feature map, one entry per spatial axis in each tuple:
    ``n`` features, ``jump`` (input pixels between neighbouring features), ``rf``
    (receptive field size in input pixels) and ``start`` (centre of the first
    feature's field)."""

    @classmethod
    def image(cls, size):
        """The input: every pixel is a feature of field 1 centred at i + 0.5."""
        size = tuple(int(v) for v in size)
        return cls(size, (1,) * len(size), (1,) * len(size), (0.5,) * len(size))


def _num(v):
    """An int when the value is whole (jumps and fields usually are), else a float."""
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def _ratio(a, b):
    return a // b if a % b == 0 else a / b


def conv_step(n, jump, rf, start, k, s=1, p=0, d=1, ceil_mode=False, p_right=None):
    """One conv / pooling layer along one axis: the notes' recurrence (see the module
    docstring). ``p`` is the left padding, ``p_right`` the right one (default p).
    Returns ``(n_out, jump_out, rf_out, start_out)``; n_out is PyTorch's output size
    (``ceil_mode``: a last window that would start in the right padding is dropped)."""
    k_eff = d * (k - 1) + 1
    p_right = p if p_right is None else p_right
    span = n + p + p_right - k_eff
    n_out = (-(-span // s) if ceil_mode else span // s) + 1
    if ceil_mode and (n_out - 1) * s >= n + p:
        n_out -= 1
    return n_out, jump * s, rf + (k_eff - 1) * jump, _num(start + ((k_eff - 1) / 2 - p) * jump)


def transposed_step(n, jump, rf, start, k, s=1, p=0, d=1, output_padding=0):
    """One transposed conv (or max unpooling) along one axis.

    A transposed conv is "put s - 1 zeros between the inputs, pad by k_eff - 1 - p,
    convolve with stride 1": outputs are s times denser (jump / s), the first
    output's window is centred at (p - (k_eff - 1) / 2) on the zero-stuffed grid, and
    a window of k_eff positions holds at most ceil(k_eff / s) real inputs, so
    rf_out = rf_in + (ceil(k_eff / s) - 1) * jump_in."""
    k_eff = d * (k - 1) + 1
    n_out = (n - 1) * s - 2 * p + k_eff + output_padding
    j_out = _ratio(jump, s)
    return n_out, j_out, rf + (-(-k_eff // s) - 1) * jump, _num(start + (p - (k_eff - 1) / 2) * j_out)


def _adaptive_step(n, jump, rf, start, n_out):
    """Adaptive pooling: window i covers [floor(i n / m), ceil((i + 1) n / m)). When m
    divides n that is a pooling with k = s = n / m; otherwise the windows differ by
    one pixel and the jump is the mean spacing n / m (the rf is the widest window's)."""
    lo = [(i * n) // n_out for i in range(n_out)]
    hi = [-(-((i + 1) * n) // n_out) for i in range(n_out)]
    k_max = max(h - l for l, h in zip(lo, hi))
    return n_out, _ratio(jump * n, n_out), rf + (k_max - 1) * jump, _num(start + (hi[0] - lo[0] - 1) / 2 * jump)


def _resize_step(n, jump, rf, start, n_out, taps=1, align_corners=False):
    """Upsampling by f = n_out / n (nearest: taps 1, linear 2, cubic 4; pixel shuffle
    is nearest). Output o samples input position (o + 0.5) / f - 0.5 (align_corners:
    o (n - 1) / (n_out - 1)); it sees ``taps`` neighbouring inputs."""
    if align_corners and n_out > 1:
        j_out, start_out = jump * (n - 1) / (n_out - 1), start
    else:
        j_out, start_out = _ratio(jump * n, n_out), start + (n / n_out - 1) / 2 * jump
    return n_out, _num(j_out), rf + (taps - 1) * jump, _num(start_out)


def _per_axis(value, axes):
    if isinstance(value, (tuple, list)):
        value = tuple(value)
        return value * axes if len(value) == 1 else value
    return (value,) * axes


def _apply_axes(step, field, *per_axis_args):
    """Run ``step`` on every axis; per_axis_args are tuples (one value per axis)."""
    rows = [step(n, j, r, s, *(a[i] for a in per_axis_args))
            for i, (n, j, r, s) in enumerate(zip(*field))]
    return Field(*(tuple(col) for col in zip(*rows)))


def layer_field(module, field, out_size=None):
    """The field after ``module`` if it is a layer that resamples the map (conv,
    transposed conv, pooling, adaptive pooling, unpooling, upsampling, pixel
    (un)shuffle, padding), else None. ``out_size`` (the spatial size the forward
    produced) replaces the computed n when given."""
    from ..nn import conv, pooling, resample
    axes = len(field.n)

    def sizes(value):
        return _per_axis(value, axes)

    new = None
    if isinstance(module, conv._ConvNd):
        k, s, d = sizes(module.kernel_size), sizes(module.stride), sizes(module.dilation)
        if module.transposed:
            new = _apply_axes(transposed_step, field, k, s, sizes(module.padding), d, sizes(module.output_padding))
        else:
            if module.padding == "valid":
                left = right = (0,) * axes
            elif module.padding == "same":
                total = tuple(di * (ki - 1) for ki, di in zip(k, d))
                left = tuple(t // 2 for t in total)
                right = tuple(t - t // 2 for t in total)
            else:
                left = right = sizes(module.padding)
            new = _apply_axes(conv_step, field, k, s, left, d, (False,) * axes, right)
    elif isinstance(module, (pooling._MaxPoolNd, pooling.AvgPool2d, pooling.AvgPool1d)):
        new = _apply_axes(conv_step, field, sizes(module.kernel_size), sizes(module.stride), sizes(module.padding),
                          sizes(getattr(module, "dilation", 1)), (bool(module.ceil_mode),) * axes)
    elif isinstance(module, (pooling.AdaptiveAvgPool2d, pooling.AdaptiveMaxPool2d)):
        wanted = sizes(module.output_size)
        n_out = tuple(n if m is None else int(m) for n, m in zip(field.n, wanted))
        new = _apply_axes(_adaptive_step, field, out_size or n_out)
    elif isinstance(module, (pooling.MaxUnpool2d, pooling.MaxUnpool1d)):
        new = _apply_axes(transposed_step, field, sizes(module.kernel_size), sizes(module.stride),
                          sizes(module.padding), (1,) * axes, (0,) * axes)
    elif isinstance(module, resample.Upsample):
        if out_size is None:
            if module.size is not None:
                out_size = sizes(module.size)
            else:
                out_size = tuple(int(math.floor(n * f)) for n, f in zip(field.n, sizes(module.scale_factor)))
        taps = _INTERP_TAPS.get(module.mode, 1)
        new = _apply_axes(_resize_step, field, out_size, (taps,) * axes, (bool(module.align_corners),) * axes)
    elif isinstance(module, resample.PixelShuffle):
        new = _apply_axes(_resize_step, field, tuple(n * module.upscale_factor for n in field.n))
    elif isinstance(module, resample.PixelUnshuffle):
        f = (module.downscale_factor,) * axes
        new = _apply_axes(conv_step, field, f, f)
    elif isinstance(module, resample._PadNd):
        pads = module.padding     # F.pad order: last axis first, (left, right) pairs
        left = tuple(pads[2 * (axes - 1 - a)] for a in range(axes))
        right = tuple(pads[2 * (axes - 1 - a) + 1] for a in range(axes))
        new = Field(tuple(n + l + r for n, l, r in zip(field.n, left, right)), field.jump, field.rf,
                    tuple(_num(st - l * j) for st, l, j in zip(field.start, left, field.jump)))
    if new is not None and out_size is not None:
        new = new._replace(n=tuple(out_size))
    return new


def receptive_fields(layers, input_size):
    """The notes' receptive-field table for a plain chain of layers, without running them.

    ``layers``: an iterable of modules (a Sequential), or of the notes' ``[k, s, p]``
    triples (kernel, stride, padding; a 4th entry is the dilation), or a mix;
    ``input_size``: the spatial size of the image (an int for a square one, or a tuple).
    Returns ``[(index, layer, Field), ...]`` for every layer that resamples the map
    (conv, pooling, every triple, ...); the other modules keep the field and are
    skipped. For a net with branches, run ``summary`` instead.

    A triple is read as a PyTorch conv / pool with that padding on both sides. The
    notes' script instead recomputes the left padding from the output size, as
    TensorFlow's SAME padding ((n_out - 1) s - n + k, the odd pixel on the right);
    both give the same table whenever the padding is used in full, (n + 2p - k) % s == 0,
    as at every AlexNet layer, and the same n, jump and receptive size always.
    """
    if isinstance(input_size, int):
        input_size = (input_size, input_size)
    from ..nn.module import Module
    field = Field.image(input_size)
    rows = []
    for i, layer in enumerate(layers):
        new = layer_field(layer, field) if isinstance(layer, Module) else _triple_field(layer, field, i)
        if new is None:
            continue
        field = new
        rows.append((i, layer, field))
    return rows


def _triple_field(entry, field, i):
    """The field after the notes' ``[k, s, p]`` (or ``[k, s, p, d]``) entry number ``i``."""
    try:
        values = [int(v) for v in entry]
    except (TypeError, ValueError):
        values = []
    if len(values) not in (3, 4) or values[0] < 1 or values[1] < 1 or values[2] < 0:
        raise TypeError(f"receptive_fields: entry {i} ({entry!r}) is neither a module nor a "
                        f"[kernel, stride, padding] triple of non-negative ints (kernel, stride >= 1)")
    k_eff = (values[3] if len(values) == 4 else 1) * (values[0] - 1) + 1
    if any(n + 2 * values[2] < k_eff for n in field.n):
        raise ValueError(f"receptive_fields: entry {i} {values}: a kernel of {k_eff} (dilated) does not fit "
                         f"into the {field.n} map padded by {values[2]}")
    axes = len(field.n)
    return _apply_axes(conv_step, field, *((v,) * axes for v in values))


def _collapse(values):
    """One number when every axis agrees, else the tuple (None stays None)."""
    if values is None:
        return None
    values = tuple(_num(v) for v in values)
    return values[0] if len(set(values)) == 1 else values


# ====================================================================== FLOPs
def _prod(values):
    out = 1
    for v in values:
        out *= int(v)
    return out


def layer_flops(module, inputs, outputs):
    """Multiply-adds of one call of ``module`` (see the table in the module docstring)."""
    from ..nn import activation, conv, layers, normalization, pooling, resample
    if not outputs:
        return 0
    y = outputs[0]
    x = inputs[0] if inputs else None
    name = type(module).__name__
    if isinstance(module, conv._ConvNd):
        per_tap = _prod(module.kernel_size)
        if module.transposed:
            return x.numel() * (module.out_channels // module.groups) * per_tap
        return y.numel() * (module.in_channels // module.groups) * per_tap
    if isinstance(module, layers.Linear):
        return y.numel() * module.in_features
    if isinstance(module, (pooling._MaxPoolNd, pooling.AvgPool2d, pooling.AvgPool1d)):
        axes = max(y.ndim - 2, 1)
        return y.numel() * _prod(_per_axis(module.kernel_size, axes))
    if isinstance(module, (pooling.AdaptiveAvgPool2d, pooling.AdaptiveMaxPool2d)):
        total = y.shape[0] * y.shape[1] if y.ndim >= 3 else 1
        for n, m in zip(x.shape[2:], y.shape[2:]):
            total *= sum(-(-((i + 1) * n) // m) - (i * n) // m for i in range(m))
        return total
    if isinstance(module, normalization._BatchNorm):
        return BATCHNORM_FLOPS_PER_ELEMENT * y.numel()
    if isinstance(module, normalization.LocalResponseNorm):
        return module.size * y.numel()
    if isinstance(module, resample.Upsample):
        taps = _INTERP_TAPS.get(module.mode, 1)
        return 0 if taps == 1 else y.numel() * taps ** max(y.ndim - 2, 1)
    if name in activation.__all__:      # every activation layer: one op per output element
        return y.numel()
    return 0


# ====================================================================== the summary
def _tensors(obj):
    """Every Tensor in a (nested) output: a tensor, tuple, named tuple, list or dict."""
    if isinstance(obj, Tensor):
        return [obj]
    if isinstance(obj, dict):
        obj = list(obj.values())
    if isinstance(obj, (tuple, list)):
        return [t for item in obj for t in _tensors(item)]
    return []


def _same_memory(a, b):
    """True if array a is b or a view of the same buffer (no new memory for a)."""
    if a is b:
        return True
    base_a = a.base if a.base is not None else a
    base_b = b.base if b.base is not None else b
    return base_a is base_b


def _fmt_bytes(n):
    """Binary units, the notes' K / M / G (1 K = 1024 bytes)."""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} TiB"


def _fmt_count(n):
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return str(n)


def _is_map(shape):
    """A record's output is a feature map (N, C, *spatial)."""
    first = shape[0] if isinstance(shape, list) else shape
    return len(first) >= 3


def _fmt_geom(v):
    if v is None:
        return "-"
    if isinstance(v, tuple):
        return "x".join(_fmt_geom(x) for x in v)
    return f"{v:g}" if isinstance(v, float) else str(v)


class Summary(list):
    """The records of ``summary`` (a list of dicts with the keys ``RECORD_KEYS``),
    plus the totals. ``s['features.0']`` is the first record of that layer;
    ``str(s)`` is the table.

    Attributes: ``total_params``, ``trainable_params``, ``weight_params`` (without
    biases, as the notes count), ``param_bytes``, ``trainable_bytes``,
    ``buffer_bytes``, ``input_bytes``, ``activation_bytes`` (all layers, forward +
    backward, for ``batch_size``), ``flops`` (multiply-adds for ``batch_size``),
    ``batch_size``, ``dtype``, ``input_shapes``, ``output_shapes``, ``model_name``,
    ``unused_params`` (parameters of modules the forward did not call),
    ``gpu_memory`` ((bytes in live arrays, bytes taken from the driver) of CuPy's
    memory pool just after the forward, on 'cuda'; None on the CPU).
    """

    def __getitem__(self, key):
        if isinstance(key, str):
            for record in self:
                if record["name"] == key:
                    return record
            raise KeyError(f"summary: no layer named {key!r}")
        return super().__getitem__(key)

    @property
    def unused_params(self):
        """Parameters of modules the forward never called (e.g. GoogLeNet's auxiliary
        heads in eval mode): in the totals, in no record."""
        return self.total_params - sum(r["params"] for r in self)

    def optimizer_bytes(self, kind="sgd"):
        """Parameters + gradients + optimizer state, by the notes' rule: ``kind`` is
        'sgd' (x2), 'momentum' (x3) or 'adam' (x4) of the parameter memory; frozen
        parameters count once."""
        key = str(kind).lower()
        key = _OPTIMIZER_ALIASES.get(key, key)
        if key not in OPTIMIZER_FACTORS:
            raise ValueError(f"optimizer_bytes: unknown optimizer {kind!r}; "
                             f"expected one of {sorted(OPTIMIZER_FACTORS)}")
        return self.param_bytes + self.trainable_bytes * (OPTIMIZER_FACTORS[key] - 1)

    def training_bytes(self, kind="sgd", batch_size=None):
        """The notes' estimate of training memory: model memory (optimizer_bytes +
        buffers) + batch_size x per-sample memory (input + activations), scaled
        linearly from the batch the summary ran (default: that batch)."""
        scale = 1.0 if batch_size is None else batch_size / self.batch_size
        per_batch = (self.input_bytes + self.activation_bytes) * scale
        return int(self.optimizer_bytes(kind) + self.buffer_bytes + round(per_batch))

    def table(self):
        """The per-layer table and the totals, as text."""
        heads = ("Layer", "Type", "Output shape", "Params", "Param mem", "Act. mem", "Mult-adds",
                 "RF", "Jump", "Start")
        rows = []
        for r in self:
            shape = r["output_shape"]
            shape = (", ".join(str(tuple(s)) for s in shape) if isinstance(shape, list) else str(tuple(shape)))
            rows.append((r["name"] or "(model)", r["type"], shape, f"{r['params']:,}",
                         _fmt_bytes(r["param_bytes"]), _fmt_bytes(r["activation_bytes"]), f"{r['flops']:,}",
                         _fmt_geom(r["rf"]), _fmt_geom(r["jump"]), _fmt_geom(r["start"])))
        widths = [max([len(h)] + [len(row[i]) for row in rows]) for i, h in enumerate(heads)]
        left = {0, 1, 2}

        def line(cells):
            return "  ".join(c.ljust(w) if i in left else c.rjust(w)
                             for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

        rule = "-" * len(line(heads))
        b = self.batch_size
        inputs = ", ".join(str(s) for s in self.input_shapes)
        out = [f"{self.model_name}: input {inputs} {self.dtype}", "=" * len(rule), line(heads), rule]
        out += [line(row) for row in rows]
        out.append(rule)
        totals = [("Total params", f"{self.total_params:,} (trainable {self.trainable_params:,}; "
                                   f"{self.weight_params:,} without biases)")]
        if self.unused_params:
            totals.append(("  not used by this forward", f"{self.unused_params:,}"))
        totals.append(("Parameter memory", _fmt_bytes(self.param_bytes)))
        if self.buffer_bytes:
            totals.append(("Buffer memory", _fmt_bytes(self.buffer_bytes) + " (running statistics)"))
        totals.append(("Params + grads + state", ", ".join(
            f"{k} x{f} {_fmt_bytes(self.optimizer_bytes(k))}" for k, f in OPTIMIZER_FACTORS.items())))
        totals.append((f"Input (batch {b})", _fmt_bytes(self.input_bytes)))
        per = f"; {_fmt_bytes(self.activation_bytes / b)} per sample" if b > 1 else ""
        totals.append((f"Activations (batch {b})",
                       f"{_fmt_bytes(self.activation_bytes)} (outputs + their gradients{per})"))
        totals.append((f"Training memory (batch {b})", ", ".join(
            f"{k} {_fmt_bytes(self.training_bytes(k))}" for k in OPTIMIZER_FACTORS)))
        totals.append((f"Mult-adds (batch {b})", f"{self.flops:,} ({_fmt_count(self.flops)}; "
                                                 "1 flop = one multiply-add)"))
        last = next((r for r in reversed(self) if r["rf"] is not None and _is_map(r["output_shape"])), None)
        if last is not None:
            totals.append(("Last feature map", f"{last['name']}: receptive field {_fmt_geom(last['rf'])}, "
                                                f"jump {_fmt_geom(last['jump'])}, start {_fmt_geom(last['start'])}"))
        if self.gpu_memory is not None:
            used, reserved = self.gpu_memory
            totals.append(("GPU memory (CuPy pool)", f"{_fmt_bytes(used)} in arrays, "
                                                     f"{_fmt_bytes(reserved)} taken from the driver"))
        width = max(len(k) for k, _ in totals)
        out += [f"{k.ljust(width)}  {v}" for k, v in totals]
        return "\n".join(out)

    def __str__(self):
        return self.table()

    def __repr__(self):
        return (f"<Summary of {self.model_name}: {len(self)} layers, {self.total_params:,} params, "
                f"{self.flops:,} mult-adds>")


class _Recorder:
    """What the hooks share during the one forward pass."""

    def __init__(self, names):
        self.names = names                  # id(module) -> dotted name
        self.records = []
        self.fields = []                    # Field (or None) of every record, in call order
        self.outputs = []                   # the output tensors of every record
        # id(tensor) -> (tensor, Field) of every tensor seen. Holding the tensors keeps
        # every layer output alive until summary returns (as training would), so an id
        # is never reused by a new tensor meanwhile.
        self.known = {}
        self.seen_params = set()
        self.seen_modules = set()
        self.stack = []                     # records count when each open container started

    def remember(self, tensor, field):
        self.known[id(tensor)] = (tensor, field)

    def is_known(self, t):
        return id(t) in self.known

    def field_of(self, t):
        """The field of a module's input: the one recorded for it, or, for a tensor made
        by an inline op, the largest earlier field on a map of its size (the main path;
        see the module docstring); for a flattened one, the largest on the latest map."""
        if t is None:
            return None
        if self.is_known(t):
            return self.known[id(t)][1]
        candidates = [f for f in self.fields if f is not None]
        if t.ndim >= 3:
            size = tuple(t.shape[2:])
            same = [f for f in candidates if f.n == size]
            if not same:
                return None
            return max(reversed(same), key=lambda f: max(f.rf))   # ties: the latest
        if not candidates:
            return None
        # flattened: the map of the latest field, and on it the largest field (a flattened
        # concatenation of branches sees the union of their fields)
        size = candidates[-1].n
        return max(reversed([f for f in candidates if f.n == size]), key=lambda f: max(f.rf))

    def next_field(self, module, x, field, y):
        from ..nn import layers
        if field is None or y is None:
            return None
        out_size = tuple(y.shape[2:]) if y.ndim >= 3 else None
        if out_size is not None and len(out_size) == len(field.n):
            new = layer_field(module, field, out_size)
            if new is not None:
                return new
        if isinstance(module, layers.Linear) and x is not None and x.ndim == 2:
            # a Linear on a flattened map: a conv whose kernel is the whole map
            return _apply_axes(conv_step, field, field.n, (1,) * len(field.n))
        if out_size is None or out_size == field.n:
            return field        # no resampling (activations, BN, LRN, dropout, flatten)
        return None             # a custom layer changed the map size: unknown

    def own_params(self, module, leaf):
        params = module.parameters() if leaf else (p for p in module._parameters.values() if p is not None)
        count = nbytes = 0
        for p in params:
            if id(p) in self.seen_params:
                continue
            self.seen_params.add(id(p))
            count += p.numel()
            nbytes += p.numel() * p.dtype.itemsize
        return count, nbytes

    def pre_hook(self, module, args):
        self.stack.append(len(self.records))

    def hook(self, module, args, output):
        start = self.stack.pop()
        inputs, outputs = _tensors(args), _tensors(output)
        if not outputs:
            return
        leaf = next(iter(module.children()), None) is None
        own = any(p is not None for p in module._parameters.values())
        new_outputs = [t for t in outputs if not self.is_known(t)]
        if not (leaf or own or new_outputs):
            return      # a container that returns what its children made (Sequential)
        x = inputs[0] if inputs else None
        field = self.field_of(x)
        if leaf or own:
            field = self.next_field(module, x, field, outputs[0])
            flops = layer_flops(module, inputs, outputs) if leaf else 0
            earlier = inputs
        else:
            # a container's inline op (cat, +): the main path among what ran inside
            field = self.field_of(new_outputs[0])
            flops = 0
            earlier = inputs + [t for ts in self.outputs[start:] for t in ts]
        if id(module) in self.seen_modules:
            params = nbytes = 0       # a module called twice: its parameters are counted once
        else:
            self.seen_modules.add(id(module))
            params, nbytes = self.own_params(module, leaf)
        dropout = "Dropout" in type(module).__name__
        act = 0
        for t in outputs:
            if not dropout and any(_same_memory(t.array, e.array) for e in earlier):
                continue
            act += t.numel() * t.dtype.itemsize * (2 if t.dtype.kind in "fc" else 1)
        shapes = [tuple(t.shape) for t in outputs]
        record = {
            "name": self.names.get(id(module), ""),
            "type": type(module).__name__,
            "output_shape": shapes[0] if len(shapes) == 1 else shapes,
            "params": params,
            "param_bytes": nbytes,
            "activation_bytes": act,
            "flops": int(flops),
            "rf": _collapse(field.rf) if field else None,
            "jump": _collapse(field.jump) if field else None,
            "start": _collapse(field.start) if field else None,
        }
        self.records.append(record)
        self.fields.append(field)
        self.outputs.append(outputs)
        for t in outputs:
            self.remember(t, field)


def _model_device_dtype(model):
    for t in list(model.parameters()) + list(model.buffers()):
        if t.dtype.kind == "f":
            return t.device, t.dtype
    for t in list(model.parameters()) + list(model.buffers()):
        return t.device, None
    return None, None


def summary(model, input_size, batch_size=1, device=None, dtype=None, print_table=True, file=None):
    """Run one forward pass of ``model`` and account for every layer.

    ``input_size``: the shape of ONE sample, without the batch axis, e.g.
    ``(3, 227, 227)``; a list of such shapes for a model with several inputs.
    ``batch_size``: the batch of the forward (activations and FLOPs scale with it).
    ``device`` / ``dtype``: of the random input (default: those of the model's
    parameters, else 'cpu' / float32). ``print_table``: print ``Summary.table()`` to
    ``file`` (default stdout).

    Returns a ``Summary``: a list with one record per layer call, each a plain dict
    with the keys ``name``, ``type``, ``output_shape`` (with the batch axis; a list
    of shapes for a layer with several outputs), ``params``, ``param_bytes``,
    ``activation_bytes``, ``flops``, ``rf``, ``jump``, ``start``, and the totals
    as attributes. The conventions are in this module's docstring.

    Every layer output is kept until ``summary`` returns, as a training step keeps
    it: for a large batch run ``batch_size=1`` and read
    ``training_bytes(kind, batch_size=N)``, which scales the per-sample part.
    """
    from ..autograd import no_grad
    if isinstance(input_size, int):
        input_size = (input_size,)
    input_size = tuple(input_size)
    if input_size and all(isinstance(v, (tuple, list)) for v in input_size):
        shapes = [tuple(int(v) for v in s) for s in input_size]
    elif all(isinstance(v, (int, np.integer)) for v in input_size):
        shapes = [tuple(int(v) for v in input_size)]
    else:
        raise TypeError(f"summary: input_size must be a shape such as (3, 227, 227) (no batch axis) "
                        f"or a list of shapes, got {input_size!r}")
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"summary: batch_size must be a positive integer, got {batch_size!r}")
    model_device, model_dtype = _model_device_dtype(model)
    device = backend.parse_device(device if device is not None else model_device)
    dtype = np.dtype(dtype if dtype is not None else (model_dtype or np.float32))

    rng = np.random.default_rng(0)      # its own generator: the user's random stream is untouched
    inputs = [Tensor(backend.to_device(rng.standard_normal((batch_size,) + s).astype(dtype), device))
              for s in shapes]

    names = {}
    for name, module in model.named_modules():
        names.setdefault(id(module), name)
    rec = _Recorder(names)
    for x in inputs:
        rec.remember(x, Field.image(x.shape[2:]) if x.ndim >= 3 else None)
    rec.fields.extend(rec.known[id(x)][1] for x in inputs)

    modes = [(m, m.training) for m in model.modules()]
    handles = []
    try:
        for m in model.modules():
            handles.append(m.register_forward_pre_hook(rec.pre_hook))
            handles.append(m.register_forward_hook(rec.hook))
        model.eval()
        with no_grad():
            output = model(*inputs)
    finally:
        for h in handles:
            h.remove()
        for m, training in modes:
            m.training = training

    params = list(model.parameters())
    result = Summary(rec.records)
    result.model_name = type(model).__name__
    result.batch_size = int(batch_size)
    result.dtype = str(dtype)
    result.input_shapes = [tuple(x.shape) for x in inputs]
    result.output_shapes = [tuple(t.shape) for t in _tensors(output)]
    result.total_params = sum(p.numel() for p in params)
    result.trainable_params = sum(p.numel() for p in params if p.requires_grad)
    result.weight_params = sum(p.numel() for n, p in model.named_parameters() if not n.endswith("bias"))
    result.param_bytes = sum(p.numel() * p.dtype.itemsize for p in params)
    result.trainable_bytes = sum(p.numel() * p.dtype.itemsize for p in params if p.requires_grad)
    result.buffer_bytes = sum(b.numel() * b.dtype.itemsize for b in model.buffers())
    result.input_bytes = sum(x.numel() * x.dtype.itemsize for x in inputs)
    result.activation_bytes = sum(r["activation_bytes"] for r in result)
    result.flops = sum(r["flops"] for r in result)
    result.gpu_memory = None
    if device.type == "cuda":   # measured right after the forward, while its outputs are alive
        from .. import cuda
        result.gpu_memory = (cuda.memory_allocated(), cuda.memory_reserved())
    if print_table:
        print(result.table(), file=file if file is not None else sys.stdout)
    return result
