"""Op table rows: batch_norm (train / eval), batch_norm_relu, layer_norm, group_norm, instance_norm,
local_response_norm, normalize."""
import math

import torch.nn.functional as TF

import tinydl.ops.norm as N
from optable import OpCase


def randn(*shape):
    return lambda rng: [rng.standard_normal(s) for s in shape]


def transposed(shape):
    """A non-contiguous array of ``shape``: the transpose of a C-ordered one."""
    return lambda rng: rng.standard_normal(shape[::-1]).T


def bn_inputs(shape, affine=True, running=False, noncontig=False):
    """x, [running_mean, running_var], [weight, bias]: weight away from 0, running_var > 0."""
    C = shape[1]

    def make(rng):
        x = transposed(shape)(rng) if noncontig else rng.standard_normal(shape) * 2 + 0.5
        out = [x]
        if running:
            out += [rng.standard_normal(C) * 0.3, rng.uniform(0.5, 2.0, C)]
        if affine:
            out += [rng.uniform(0.5, 1.5, C), rng.standard_normal(C)]
        return out
    return make


def bn_train(td_or_torch, momentum=0.1, eps=1e-5):
    """batch_norm in training mode, without running stats, weight and bias optional."""
    f = N.batch_norm if td_or_torch == "td" else TF.batch_norm
    return lambda x, w=None, b=None: f(x, None, None, w, b, True, momentum, eps)


def bn_train_running(td_or_torch, momentum):
    """batch_norm in training mode updating running stats (the update is checked in
    tests/test_norm_layers.py; here: the output and gradients are unaffected by it)."""
    f = N.batch_norm if td_or_torch == "td" else TF.batch_norm
    return lambda x, rm, rv, w, b: f(x, rm, rv, w, b, True, momentum, 1e-5)


def bn_eval(td_or_torch, eps=1e-5):
    f = N.batch_norm if td_or_torch == "td" else TF.batch_norm
    return lambda x, rm, rv, w=None, b=None: f(x, rm, rv, w, b, False, 0.1, eps)


def bn_relu(td_or_torch, training=True, residual=True):
    """relu(batch_norm(x) + r): batch_norm_relu, against the three ops in PyTorch (eval: x, r,
    running_mean, running_var, weight, bias; training: x, r, weight, bias; r left out
    without ``residual``)."""
    def td_fn(x, *rest):
        r, rest = (rest[0], rest[1:]) if residual else (None, rest)
        rm, rv, w, b = rest if not training else (None, None) + rest
        return N.batch_norm_relu(x, rm, rv, w, b, training, 0.1, 1e-5, residual=r)

    def torch_fn(x, *rest):
        r, rest = (rest[0], rest[1:]) if residual else (None, rest)
        rm, rv, w, b = rest if not training else (None, None) + rest
        y = TF.batch_norm(x, rm, rv, w, b, training, 0.1, 1e-5)
        return TF.relu(y if r is None else y + r)
    return td_fn if td_or_torch == "td" else torch_fn


def bn_relu_inputs(shape, running=False, residual=True):
    """x, [r], [running_mean, running_var], weight, bias."""
    def make(rng):
        x, *rest = bn_inputs(shape, running=running)(rng)
        return [x] + ([rng.standard_normal(shape)] if residual else []) + rest
    return make


def affine_inputs(shape, param_shape, weight=True, bias=True, noncontig=False):
    """x, [weight], [bias]: x off-centre and spread, weight away from 0."""
    def make(rng):
        x = transposed(shape)(rng) if noncontig else rng.standard_normal(shape) * 1.5 + 0.7
        return ([x] + ([rng.uniform(0.5, 1.5, param_shape)] if weight else [])
                + ([rng.standard_normal(param_shape)] if bias else []))
    return make


def layer_norm(normalized_shape, weight=True, bias=True, eps=1e-5):
    """layer_norm with the given affine parameters present (positional after x); tinydl also
    takes an int ``normalized_shape`` (as the LayerNorm module), torch's functional a tuple."""
    def call(f, shape):
        def fn(x, *params):
            params = list(params)
            w = params.pop(0) if weight else None
            b = params.pop(0) if bias else None
            return f(x, shape, w, b, eps)
        return fn
    as_tuple = (normalized_shape,) if isinstance(normalized_shape, int) else normalized_shape
    return call(N.layer_norm, normalized_shape), call(TF.layer_norm, as_tuple)


def group_norm(num_groups, affine=True, eps=1e-5):
    return ((lambda x, w=None, b=None: N.group_norm(x, num_groups, w, b, eps)),
            (lambda x, w=None, b=None: TF.group_norm(x, num_groups, w, b, eps)))


def instance_norm_train(td_or_torch, running=False, momentum=0.1, eps=1e-5):
    """instance_norm with the input's statistics: x, [running_mean, running_var], [weight, bias]
    (the running update is checked in tests/test_norm_layers_more.py; here the output and
    gradients, which it must leave alone)."""
    f = N.instance_norm if td_or_torch == "td" else TF.instance_norm
    if running:
        return lambda x, rm, rv, w=None, b=None: f(x, rm, rv, w, b, True, momentum, eps)
    return lambda x, w=None, b=None: f(x, None, None, w, b, True, momentum, eps)


def instance_norm_eval(td_or_torch):
    f = N.instance_norm if td_or_torch == "td" else TF.instance_norm
    return lambda x, rm, rv, w, b: f(x, rm, rv, w, b, False, 0.1, 1e-5)


def lrn(size, alpha=1e-4, beta=0.75, k=1.0):
    return (lambda x: N.local_response_norm(x, size, alpha, beta, k),
            lambda x: TF.local_response_norm(x, size, alpha, beta, k))


def normalize(p=2.0, dim=1, eps=1e-12):
    return (lambda x: N.normalize(x, p, dim, eps), lambda x: TF.normalize(x, p, dim, eps))


CASES = [
    # ---- batch norm, training: batch statistics, full gradient through mean and variance
    OpCase("batch_norm/train_2d", bn_train("td"), bn_train("torch"), bn_inputs((6, 4))),
    OpCase("batch_norm/train_3d", bn_train("td"), bn_train("torch"), bn_inputs((3, 4, 5))),
    OpCase("batch_norm/train_4d_odd", bn_train("td"), bn_train("torch"), bn_inputs((2, 3, 5, 3))),
    OpCase("batch_norm/train_batch1", bn_train("td"), bn_train("torch"), bn_inputs((1, 3, 3, 5))),
    OpCase("batch_norm/train_two_values", bn_train("td"), bn_train("torch"), bn_inputs((2, 3))),
    OpCase("batch_norm/train_no_affine", bn_train("td"), bn_train("torch"), bn_inputs((3, 2, 3, 3), affine=False)),
    OpCase("batch_norm/train_non_contiguous", bn_train("td"), bn_train("torch"),
           bn_inputs((2, 3, 4, 5), noncontig=True)),
    OpCase("batch_norm/train_5d_eps", bn_train("td", eps=0.1), bn_train("torch", eps=0.1),
           bn_inputs((2, 2, 3, 2, 3))),
    OpCase("batch_norm/train_running_stats", bn_train_running("td", 0.3), bn_train_running("torch", 0.3),
           bn_inputs((4, 3, 2, 3), running=True), grad=[0, 3, 4]),
    # ---- batch norm + residual + ReLU (one op), training and eval
    OpCase("batch_norm_relu/train_residual", bn_relu("td"), bn_relu("torch"), bn_relu_inputs((3, 4, 3, 5))),
    OpCase("batch_norm_relu/train", bn_relu("td", residual=False), bn_relu("torch", residual=False),
           bn_relu_inputs((2, 3, 4, 4), residual=False)),
    OpCase("batch_norm_relu/eval_residual", bn_relu("td", training=False), bn_relu("torch", training=False),
           bn_relu_inputs((2, 3, 4, 5), running=True), grad=[0, 1, 4, 5]),
    # ---- batch norm, eval: running statistics are constants, a per-channel affine map
    OpCase("batch_norm/eval_4d", bn_eval("td"), bn_eval("torch"), bn_inputs((2, 3, 4, 5), running=True),
           grad=[0, 3, 4]),
    OpCase("batch_norm/eval_2d", bn_eval("td"), bn_eval("torch"), bn_inputs((5, 4), running=True),
           grad=[0, 3, 4]),
    OpCase("batch_norm/eval_no_affine_non_contiguous", bn_eval("td"), bn_eval("torch"),
           lambda rng: [transposed((2, 3, 4, 5))(rng), rng.standard_normal(3), rng.uniform(0.5, 2, 3)],
           grad=[0]),
    # ---- layer norm: statistics over the last len(normalized_shape) dims, elementwise affine
    OpCase("layer_norm/last_dim", *layer_norm((5,)), affine_inputs((4, 5), (5,))),
    OpCase("layer_norm/int_shape_3d", *layer_norm(6), affine_inputs((2, 3, 6), (6,))),
    OpCase("layer_norm/two_dims", *layer_norm((4, 5)), affine_inputs((2, 3, 4, 5), (4, 5))),
    OpCase("layer_norm/three_dims_no_affine", *layer_norm((3, 4, 2), False, False), affine_inputs((2, 3, 4, 2), ())),
    OpCase("layer_norm/whole_input", *layer_norm((3, 4)), affine_inputs((3, 4), (3, 4))),
    OpCase("layer_norm/weight_only", *layer_norm((2, 5), bias=False), affine_inputs((3, 2, 5), (2, 5), bias=False)),
    # (torch's own double backward fails without a weight: its reference is the plain norm + bias)
    OpCase("layer_norm/bias_only_size1_dim", layer_norm((1, 4), weight=False)[0],
           lambda x, b: TF.layer_norm(x, (1, 4), None, None) + b, affine_inputs((3, 1, 4), (1, 4), weight=False)),
    OpCase("layer_norm/non_contiguous_eps", *layer_norm((4, 3), eps=0.1),
           affine_inputs((2, 5, 4, 3), (4, 3), noncontig=True)),
    # ---- group norm: statistics per (sample, group of channels), per-channel affine
    OpCase("group_norm/one_group", *group_norm(1), affine_inputs((2, 4, 3, 2), (4,))),
    OpCase("group_norm/c_groups", *group_norm(4), affine_inputs((2, 4, 3, 2), (4,))),
    OpCase("group_norm/two_groups", *group_norm(2), affine_inputs((3, 6, 5), (6,))),
    OpCase("group_norm/three_groups_no_affine", *group_norm(3), affine_inputs((2, 6, 2, 3), (), False, False)),
    OpCase("group_norm/2d_input", *group_norm(2), affine_inputs((3, 8), (8,))),
    OpCase("group_norm/5d_non_contiguous", *group_norm(2), affine_inputs((2, 4, 2, 3, 2), (4,), noncontig=True)),
    # ---- instance norm: statistics per (sample, channel); running stats updated in training
    OpCase("instance_norm/affine", instance_norm_train("td"), instance_norm_train("torch"),
           affine_inputs((2, 3, 4, 5), (3,))),
    OpCase("instance_norm/no_affine_1d", instance_norm_train("td"), instance_norm_train("torch"),
           affine_inputs((3, 4, 6), (), False, False)),
    OpCase("instance_norm/running_stats_train", instance_norm_train("td", True, 0.3),
           instance_norm_train("torch", True, 0.3), bn_inputs((2, 3, 3, 4), running=True), grad=[0, 3, 4]),
    OpCase("instance_norm/eval_running_stats", instance_norm_eval("td"), instance_norm_eval("torch"),
           bn_inputs((2, 3, 4, 3), running=True), grad=[0, 3, 4]),
    # ---- local response norm (alpha large enough for the cross-channel term to matter)
    OpCase("local_response_norm/alexnet", *lrn(5, 1e-4, 0.75, 2.0), randn((2, 7, 3, 4))),
    OpCase("local_response_norm/strong_odd", *lrn(3, 0.9, 0.75, 1.0), randn((2, 5, 3, 3))),
    OpCase("local_response_norm/even_size", *lrn(4, 1.5, 0.6, 0.5), randn((1, 6, 2, 3))),
    OpCase("local_response_norm/size_gt_channels", *lrn(7, 2.0, 0.75, 1.0), randn((2, 3, 2, 2))),
    OpCase("local_response_norm/3d", *lrn(2, 1.0, 0.9, 1.5), randn((2, 5, 4))),
    OpCase("local_response_norm/5d", *lrn(3, 1.0, 0.75, 1.0), randn((1, 4, 2, 2, 3))),
    OpCase("local_response_norm/non_contiguous", *lrn(3, 1.0, 0.75, 1.0),
           lambda rng: [transposed((2, 4, 3, 3))(rng)]),
    # ---- normalize
    OpCase("normalize/l2_dim1", *normalize(), randn((3, 4, 5))),
    OpCase("normalize/l1_last", *normalize(1.0, -1), randn((4, 6))),
    OpCase("normalize/p3_dim0", *normalize(3.0, 0), randn((5, 3))),
    OpCase("normalize/inf", *normalize(math.inf, 1), randn((3, 5, 2))),
    OpCase("normalize/eps_active", *normalize(2.0, 1, 2.0), randn((8, 3))),   # some rows below eps
    OpCase("normalize/non_contiguous", *normalize(2.0, 1), lambda rng: [transposed((2, 6, 3))(rng)]),
]
