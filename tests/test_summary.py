"""td.utils.summary: parameter counts, memory by the notes' rules, FLOPs against hand
formulas, and receptive fields against the notes' AlexNet table and against the
support of a gradient (PyTorch as the oracle)."""
from collections import namedtuple

import numpy as np
import pytest
import torch

import tinydl as td
import tinydl.nn as nn
import models
from models.alexnet import receptive_field_table
from tinydl.utils import summary, Summary
from tinydl.utils.summary import RECORD_KEYS, receptive_fields, conv_step


def _rows(s, name):
    return [r for r in s if r["name"] == name]


@pytest.fixture(scope="module")
def alexnet_summary():
    # Zero weights instead of 62M random draws: the numbers here do not depend on values.
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(nn.init, "_fill_uniform", lambda t, *args, **kwargs: t.array.fill(0) or t)
        model = models.create("alexnet")
    return model, summary(model, (3, 227, 227), print_table=False)


# ---------------------------------------------------------------- records and totals
def test_records_are_plain_dicts_with_exactly_the_keys(alexnet_summary):
    _, s = alexnet_summary
    assert isinstance(s, Summary) and isinstance(s, list)
    for r in s:
        assert type(r) is dict and tuple(r) == RECORD_KEYS
    assert [r["name"] for r in s[:4]] == ["features.0", "features.1", "features.2", "features.3"]
    assert s["features.0"]["type"] == "Conv2d" and s["features.0"]["output_shape"] == (1, 96, 55, 55)
    assert s[-1]["output_shape"] == (1, 1000) and s.output_shapes == [(1, 1000)]
    with pytest.raises(KeyError, match="no layer"):
        s["nope"]


def test_lenet5_params_and_table(capsys):
    model = models.create("lenet5")
    s = summary(model, (1, 32, 32))
    out = capsys.readouterr().out
    assert s.total_params == 61_706 == sum(r["params"] for r in s)
    assert "61,706" in out and "Conv2d" in out and "Mult-adds" in out
    assert [r["params"] for r in s if r["type"] in ("Conv2d", "Linear")] == [156, 2416, 48120, 10164, 850]
    assert s.param_bytes == 61_706 * 4
    # a fully connected layer on the flattened 5x5 map sees the whole 32x32 image
    assert s["features.5"]["rf"] == 16 and s["features.5"]["jump"] == 4
    assert s["classifier.1"]["rf"] == 32


def test_alexnet_params_and_receptive_fields_match_the_notes(alexnet_summary):
    model, s = alexnet_summary
    assert s.total_params == 62_378_344 == model.num_parameters()
    by = dict(zip(model.layer_names, (s[f"features.{i}"] for i in range(len(model.features)))))
    assert [by[n]["rf"] for n in ("conv1", "pool1", "conv2", "pool2", "conv3", "conv4", "conv5", "pool5")] \
        == [11, 19, 51, 67, 99, 131, 163, 195]
    assert [by[n]["jump"] for n in ("conv1", "pool1", "conv2", "pool2", "conv5", "pool5")] == [4, 8, 8, 16, 16, 32]
    # the notes' script: start 0.5 -> conv1 5.5 -> pool1 9.5 -> ... -> pool5 33.5 -> fc6-conv 113.5
    assert by["conv1"]["start"] == 5.5 and by["pool1"]["start"] == 9.5 and by["pool5"]["start"] == 33.5
    assert by["relu5"]["rf"] == 163 and by["norm1"]["rf"] == 11        # no resampling, no change
    fc6 = s["classifier.0"]
    assert (fc6["rf"], fc6["jump"], fc6["start"]) == (355, 32, 113.5)    # fc6 as a 6x6 conv
    # one algorithm: the model file's table agrees
    table = receptive_field_table(model.features, 227)
    assert [row[4] for row in table] == [s[f"features.{row[0]}"]["rf"] for row in table]


def test_alexnet_flops_and_memory_by_hand(alexnet_summary):
    _, s = alexnet_summary
    assert s["features.0"]["flops"] == 55 * 55 * 96 * 3 * 11 * 11              # B H W Cout Cin K K
    assert s["features.4"]["flops"] == 27 * 27 * 256 * 96 * 5 * 5
    assert s["classifier.0"]["flops"] == 9216 * 4096                             # B M N
    assert s["features.1"]["flops"] == 96 * 55 * 55                              # ReLU: B H W C
    assert s["features.3"]["flops"] == 96 * 27 * 27 * 9                          # pooling: B H W C K K
    assert s["features.0"]["activation_bytes"] == 2 * 96 * 55 * 55 * 4          # output + its gradient
    assert s["features.0"]["param_bytes"] == 34_944 * 4
    assert s["classifier.2"]["activation_bytes"] == 2 * 4096 * 4                 # dropout allocates in training
    assert s.input_bytes == 3 * 227 * 227 * 4
    assert s.flops == sum(r["flops"] for r in s)
    assert s.activation_bytes == sum(r["activation_bytes"] for r in s)


def test_alexnet_groups_halve_the_grouped_convs():
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(nn.init, "_fill_uniform", lambda t, *args, **kwargs: t.array.fill(0) or t)
        model = models.create("alexnet", groups=2)
    s = summary(model, (3, 227, 227), print_table=False)
    assert s.total_params == 60_965_224
    assert s["features.4"]["flops"] == 27 * 27 * 256 * 48 * 5 * 5


def test_notes_weight_counts_without_biases():
    assert summary(models.create("mlp"), (1, 28, 28), print_table=False).weight_params == 622_496
    assert summary(models.create("seed_cnn"), (1, 28, 28), print_table=False).weight_params == 9_064


# ---------------------------------------------------------------- FLOPs against hand formulas
def test_conv_flops_hand_formula_with_groups_dilation_stride():
    conv = nn.Conv2d(6, 12, (3, 5), stride=(2, 1), padding=(1, 2), dilation=(2, 1), groups=3)
    s = summary(conv, (6, 20, 17), batch_size=2, print_table=False)
    h = (20 + 2 * 1 - 2 * (3 - 1) - 1) // 2 + 1
    w = (17 + 2 * 2 - 1 * (5 - 1) - 1) // 1 + 1
    out = torch.nn.Conv2d(6, 12, (3, 5), stride=(2, 1), padding=(1, 2), dilation=(2, 1), groups=3)(
        torch.zeros(2, 6, 20, 17)).shape
    assert s[0]["output_shape"] == tuple(out) == (2, 12, h, w)
    assert s[0]["flops"] == 2 * h * w * 12 * (6 // 3) * 3 * 5
    assert s[0]["params"] == 12 * 2 * 3 * 5 + 12
    assert s[0]["rf"] == 5 and s[0]["jump"] == (2, 1)      # a dilated 3 spans 5 rows, as the plain 5
    assert s[0]["start"] == (0.5 + 1, 0.5)                  # per axis when the axes differ


def test_transposed_conv_linear_bn_pool_flops():
    net = nn.Sequential(nn.ConvTranspose2d(4, 6, 4, stride=2, padding=1), nn.BatchNorm2d(6),
                        nn.AvgPool2d(3, stride=2), nn.Flatten(), nn.Linear(6 * 7 * 7, 5))
    s = summary(net, (4, 8, 8), batch_size=3, print_table=False)
    assert s[0]["output_shape"] == (3, 6, 16, 16)
    assert s[0]["flops"] == 3 * 8 * 8 * 4 * 6 * 4 * 4          # every input pixel times the kernel
    assert s[1]["flops"] == 4 * 3 * 6 * 16 * 16
    assert s[2]["flops"] == 3 * 6 * 7 * 7 * 9
    assert s[3]["flops"] == 0 and s[3]["activation_bytes"] == 0  # Flatten: a view
    assert s[4]["flops"] == 3 * 294 * 5
    assert s.buffer_bytes == (6 + 6) * 4 + 8                    # running mean/var + the int64 counter


# ---------------------------------------------------------------- memory rules
def test_optimizer_memory_rule_and_frozen_parameters():
    net = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 3))
    s = summary(net, (10,), print_table=False)
    p = (10 * 20 + 20 + 20 * 3 + 3) * 4
    assert s.param_bytes == p
    assert (s.optimizer_bytes("sgd"), s.optimizer_bytes("momentum"), s.optimizer_bytes("adam")) == (2 * p, 3 * p, 4 * p)
    assert s.optimizer_bytes() == 2 * p and s.optimizer_bytes("AdamW") == 4 * p
    with pytest.raises(ValueError, match="unknown optimizer"):
        s.optimizer_bytes("lbfgs")
    net[0].requires_grad_(False)                      # frozen: no gradient, no state
    s = summary(net, (10,), print_table=False)
    frozen = (10 * 20 + 20) * 4
    assert s.trainable_bytes == p - frozen
    assert s.optimizer_bytes("adam") == p + 3 * (p - frozen)
    assert s["0"]["rf"] is None                       # no feature map, no receptive field


def test_activation_memory_scales_with_batch_and_dtype():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(8 * 8 * 8, 10))
    s1 = summary(net, (3, 16, 16), print_table=False)
    s4 = summary(net, (3, 16, 16), batch_size=4, print_table=False)
    per_sample = 2 * 4 * (8 * 16 * 16 + 8 * 16 * 16 + 8 * 8 * 8 + 10)
    assert s1.activation_bytes == per_sample and s4.activation_bytes == 4 * per_sample
    assert s4.flops == 4 * s1.flops and s4[0]["output_shape"] == (4, 8, 16, 16)
    assert s1.training_bytes("momentum", batch_size=4) == s4.training_bytes("momentum")
    assert s4.training_bytes("sgd") == s4.optimizer_bytes("sgd") + s4.input_bytes + s4.activation_bytes
    d = summary(net.double(), (3, 16, 16), print_table=False)
    assert d.param_bytes == 2 * s1.param_bytes and d.activation_bytes == 2 * s1.activation_bytes


# ---------------------------------------------------------------- the forward pass itself
def test_eval_mode_restored_no_grad_and_rng_untouched():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Dropout(0.5))
    net.train()
    net[2].eval()
    state = td.backend.get_rng_state()
    running = net[1].running_mean.array.copy()
    summary(net, (1, 8, 8), batch_size=2, print_table=False)
    assert [m.training for m in net.modules()] == [True, True, True, False]
    assert td.backend.get_rng_state() == state
    assert all(p.grad is None for p in net.parameters())
    np.testing.assert_array_equal(net[1].running_mean.array, running)    # eval: stats untouched
    assert not net[0]._forward_hooks and not net[0]._forward_pre_hooks


class _TwoHeads(nn.Module):
    """Two outputs in a named tuple, a pooling layer with indices, an inline concat."""
    Out = namedtuple("Out", "logits aux")

    def __init__(self):
        super().__init__()
        self.pool = nn.MaxPool2d(2, return_indices=True)
        self.b1 = nn.Conv2d(3, 4, 1)
        self.b5 = nn.Conv2d(3, 4, 5, padding=2)
        self.head = nn.Linear(8 * 4 * 4, 2)
        self.aux = nn.Linear(8 * 4 * 4, 3)

    def forward(self, x):
        y, idx = self.pool(x)
        z = td.cat([self.b1(y), self.b5(y)], 1)      # an Inception-style merge, written inline
        flat = z.flatten(1)
        return self.Out(self.head(flat), self.aux(flat))


def test_multiple_outputs_indices_and_inline_merge():
    s = summary(_TwoHeads(), (3, 8, 8), print_table=False)
    assert s.output_shapes == [(1, 2), (1, 3)]
    pool = s["pool"]
    assert pool["output_shape"] == [(1, 3, 4, 4), (1, 3, 4, 4)]
    assert pool["activation_bytes"] == 2 * 48 * 4 + 48 * 8      # values + gradient, int64 indices
    assert s["b5"]["rf"] == 2 + 4 * 2 and s["b1"]["rf"] == 2
    # the heads read the flattened concatenation: the widest branch over the whole 4x4 map
    assert s["head"]["rf"] == 10 + 3 * 2 and s["aux"]["rf"] == 16
    assert s.total_params == sum(r["params"] for r in s) and s.unused_params == 0
    assert [r["name"] for r in s] == ["pool", "b1", "b5", "head", "aux"]     # the heads' outputs are the model's


def test_flattened_merge_is_order_independent():
    class Swapped(_TwoHeads):
        def forward(self, x):
            y, _ = self.pool(x)
            z = td.cat([self.b5(y), self.b1(y)], 1)       # the wide branch runs first now
            return self.Out(self.head(z.flatten(1)), None)

    s = summary(Swapped(), (3, 8, 8), print_table=False)
    assert s["head"]["rf"] == 16 and s.output_shapes == [(1, 2)]
    assert s.unused_params == 8 * 4 * 4 * 3 + 3          # aux never ran


class _Merge(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(2, 2, 1)
        self.b = nn.Conv2d(2, 2, 3, padding=1)

    def forward(self, x):
        return td.cat([self.a(x), self.b(x)], 1)


def test_container_row_for_an_inline_merge():
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), _Merge(), nn.ReLU())
    s = summary(net, (1, 6, 6), print_table=False)
    names = [r["name"] for r in s]
    assert names == ["0", "1.a", "1.b", "1", "2"]
    merge = s["1"]
    assert merge["type"] == "_Merge" and merge["params"] == 0 and merge["flops"] == 0
    assert merge["output_shape"] == (1, 4, 6, 6) and merge["activation_bytes"] == 2 * 4 * 36 * 4
    assert merge["rf"] == 5 and s["2"]["rf"] == 5          # the 3x3 branch: the union of both fields


def test_resnet20_main_path_receptive_fields():
    model = models.create("resnet20")
    s = summary(model, (3, 32, 32), print_table=False)
    assert s.total_params == 269_722
    # each block's final ReLU (its second call) reads the residual sum: the conv path's field
    last = {}
    for r in s:
        last[r["name"]] = r
    assert (last["layer1.2.relu"]["rf"], last["layer1.2.relu"]["jump"]) == (15, 1)
    assert (last["layer2.2.relu"]["rf"], last["layer2.2.relu"]["jump"]) == (37, 2)
    assert (last["layer3.2.relu"]["rf"], last["layer3.2.relu"]["jump"]) == (81, 4)
    assert s["layer2.0.downsample"]["rf"] is None            # option A: a custom parameter-free leaf
    assert s["avgpool"]["rf"] == 81 + 7 * 4 and s["avgpool"]["output_shape"] == (1, 64, 1, 1)


# ---------------------------------------------------------------- receptive fields vs gradients
def _gradient_support(layers, size):
    """For each output feature i on the diagonal, the input rows its gradient reaches."""
    x = torch.ones(1, 1, size, size, requires_grad=True)
    y = x
    for layer in layers:
        y = layer(y)
    spans = []
    for i in range(y.shape[-1]):
        g = torch.autograd.grad(y[0, 0, i, i], x, retain_graph=True)[0][0, 0]
        rows = torch.nonzero(g.abs().sum(1) > 0).flatten()
        spans.append((rows.min().item(), rows.max().item() + 1))
    return spans


def _pair(spec):
    ours, theirs = [], []
    for kind, kw in spec:
        if kind == "avg":
            ours.append(nn.AvgPool2d(**kw))
            theirs.append(torch.nn.AvgPool2d(**kw))
            continue
        cls = {"conv": (nn.Conv2d, torch.nn.Conv2d), "convT": (nn.ConvTranspose2d, torch.nn.ConvTranspose2d)}[kind]
        ours.append(cls[0](1, 1, bias=False, **kw))
        t = cls[1](1, 1, bias=False, **kw)
        torch.nn.init.ones_(t.weight)       # positive weights: no cancellation in the support
        theirs.append(t)
    return ours, theirs


def test_receptive_field_equals_gradient_support():
    spec = [("conv", dict(kernel_size=3, stride=2, padding=1, dilation=2)),
            ("avg", dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
            ("conv", dict(kernel_size=5, stride=1, padding=2)),
            ("conv", dict(kernel_size=2, stride=3))]
    ours, theirs = _pair(spec)
    size = 97
    spans = _gradient_support(theirs, size)
    s = summary(nn.Sequential(*ours), (1, size, size), print_table=False)
    rf, jump, start = s[-1]["rf"], s[-1]["jump"], s[-1]["start"]
    assert s[-1]["output_shape"][-1] == len(spans)
    assert (rf, jump) == (29, 12)
    for i, (lo, hi) in enumerate(spans[1:-1], start=1):     # fields clipped by the border excluded
        assert hi - lo == rf
        assert (lo + hi) / 2 == start + i * jump
    assert receptive_fields(ours, size)[-1][2].rf == (29, 29)


@pytest.mark.parametrize("spec", [
    [("conv", dict(kernel_size=3, stride=4, padding=1)), ("convT", dict(kernel_size=4, stride=2, padding=1))],
    [("conv", dict(kernel_size=5, stride=4, padding=2)),
     ("convT", dict(kernel_size=3, stride=2, padding=1, output_padding=1))],
    [("conv", dict(kernel_size=8, stride=8)), ("convT", dict(kernel_size=16, stride=8, padding=4))],
])
def test_transposed_conv_field_is_the_widest_gradient_support(spec):
    ours, theirs = _pair(spec)
    spans = _gradient_support(theirs, 64)
    s = summary(nn.Sequential(*ours), (1, 64, 64), print_table=False)
    first, last = s[0], s[-1]
    assert last["output_shape"][-1] == len(spans)
    assert last["jump"] == first["jump"] / spec[1][1]["stride"]
    inner = spans[len(spans) // 4: -len(spans) // 4]
    assert max(hi - lo for lo, hi in inner) == last["rf"]
    for i, (lo, hi) in enumerate(spans):
        if (lo, hi) in inner:
            # an upsampled grid: each field is within half an input jump of its output's centre
            assert abs((lo + hi) / 2 - (last["start"] + i * last["jump"])) <= first["jump"] / 2


def test_conv_step_is_the_notes_recurrence():
    # the notes' AlexNet list [k, s, p]: conv1 [11, 4, 0] from the image (227, 1, 1, 0.5)
    assert conv_step(227, 1, 1, 0.5, 11, 4, 0) == (55, 4, 11, 5.5)
    assert conv_step(55, 4, 11, 5.5, 3, 2, 0) == (27, 8, 19, 9.5)
    # ceil_mode keeps a partial last window unless it would start in the padding (PyTorch's rule)
    assert conv_step(110, 1, 1, 0.5, 3, 2, 0, ceil_mode=True)[0] == 55
    assert conv_step(5, 1, 1, 0.5, 2, 2, 1, ceil_mode=True)[0] == 3 == torch.nn.MaxPool2d(
        2, 2, 1, ceil_mode=True)(torch.zeros(1, 1, 5, 5)).shape[-1]


def test_summary_rejects_bad_input_size():
    with pytest.raises(TypeError, match="input_size"):
        summary(nn.Linear(2, 2), ("a", 2), print_table=False)
    with pytest.raises(ValueError, match="batch_size"):
        summary(nn.Linear(2, 2), (2,), batch_size=0, print_table=False)


@pytest.mark.gpu
def test_summary_on_cuda():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).to("cuda")
    s = summary(net, (3, 8, 8), print_table=False)
    assert s[0]["output_shape"] == (1, 4, 6, 6) and s.param_bytes == (4 * 27 + 4) * 4
    used, reserved = s.gpu_memory
    assert 0 < used <= reserved and "GPU memory (CuPy pool)" in s.table()
    cpu = summary(net.to("cpu"), (3, 8, 8), print_table=False)
    assert [dict(r) for r in s] == [dict(r) for r in cpu]
    assert cpu.gpu_memory is None and "GPU memory" not in cpu.table()


# ---------------------------------------------------------------- the notes' [k, s, p] list
NOTES_CONVNET = [[11, 4, 0], [3, 2, 0], [5, 1, 2], [3, 2, 0], [3, 1, 1], [3, 1, 1], [3, 1, 1], [3, 2, 0],
                 [6, 1, 0], [1, 1, 0]]


def _notes_out_from_in(conv, layer_in):
    """The notes' outFromIn (seed 001), re-typed as the oracle: its left padding is
    recomputed from the output size (TensorFlow's SAME rule)."""
    import math
    n_in, j_in, r_in, start_in = layer_in
    k, s, p = conv
    n_out = math.floor((n_in - k + 2 * p) / s) + 1
    actual_p = (n_out - 1) * s - n_in + k
    p_left = math.floor(actual_p / 2)
    return n_out, j_in * s, r_in + (k - 1) * j_in, start_in + ((k - 1) / 2 - p_left) * j_in


@pytest.mark.parametrize("convnet, size", [(NOTES_CONVNET, 227), ([[7, 2, 3], [3, 2, 1], [3, 1, 1]], 224),
                                           ([[3, 2, 1], [2, 2, 0], [5, 3, 2]], 33)])
def test_receptive_field_table_takes_the_notes_kps_list(convnet, size):
    rows = receptive_field_table(convnet, size)
    assert [r[1] for r in rows] == convnet
    layer, padding_used_in_full = (size, 1, 1, 0.5), True
    for (k, s, p), row in zip(convnet, rows):
        padding_used_in_full &= (layer[0] + 2 * p - k) % s == 0
        layer = _notes_out_from_in((k, s, p), layer)
        assert row[2:5] == layer[:3]                       # n, jump, receptive field: always equal
        # start too, as long as the two readings of p (ours: PyTorch's; the notes': SAME) agree
        assert (row[5] == layer[3]) == padding_used_in_full
    if convnet is NOTES_CONVNET:
        assert [r[4] for r in rows] == [11, 19, 51, 67, 99, 131, 163, 195, 355, 355]
        assert [r[5] for r in rows][-3:] == [33.5, 113.5, 113.5]


def test_receptive_field_table_rejects_what_is_not_a_layer():
    with pytest.raises(TypeError, match=r"entry 1 \('relu'\) is neither a module nor a \[kernel, stride, padding\]"):
        receptive_field_table([[3, 1, 1], "relu"], 32)
    with pytest.raises(ValueError, match=r"entry 0 \[9, 1, 0\]: a kernel of 9 .dilated. does not fit"):
        receptive_field_table([[9, 1, 0]], 5)


def test_every_activation_layer_counts_one_op_per_output():
    acts = [nn.Mish(), nn.GELU(), nn.PReLU(), nn.Hardshrink(), nn.LogSigmoid(), nn.Softmax2d(), nn.RReLU()]
    s = summary(nn.Sequential(*acts), (3, 4, 4), print_table=False)
    assert [s[i]["flops"] for i in range(len(acts))] == [3 * 4 * 4] * len(acts)
