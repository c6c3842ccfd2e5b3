"""Op table rows: activations, softmax and log-softmax."""
import torch
import torch.nn.functional as TF

import tinydl.ops.activation as A
from optable import OpCase


def randn(*shape, scale=1.0, shift=0.0):
    return lambda rng: [rng.standard_normal(s) * scale + shift for s in shape]


def away_from(points, shape, scale=1.0, gap=1e-3):
    """Normal samples nudged at least ``gap`` away from ``points`` (the kinks), so that
    finite differences never straddle one."""
    def make(rng):
        x = rng.standard_normal(shape) * scale
        for p in points:
            near = abs(x - p) < gap
            x[near] = p + 2 * gap
        return [x]
    return make


def spread(shape, low, high):
    """Uniform on [low, high]: large |x| where naive formulas overflow."""
    return lambda rng: [rng.uniform(low, high, shape)]


NCHW = (2, 3, 4, 5)

CASES = [
    # piecewise linear
    OpCase("relu", A.relu, TF.relu, away_from([0], (3, 4))),
    OpCase("relu/tensor_method", lambda x: x.relu(), torch.relu, away_from([0], (2, 5))),
    OpCase("leaky_relu/default", A.leaky_relu, TF.leaky_relu, away_from([0], (3, 4))),
    OpCase("leaky_relu/slope0.2", lambda x: A.leaky_relu(x, 0.2), lambda x: TF.leaky_relu(x, 0.2),
           away_from([0], NCHW)),
    OpCase("relu6", A.relu6, TF.relu6, away_from([0, 6], (4, 6), scale=5)),
    OpCase("hardtanh/default", A.hardtanh, TF.hardtanh, away_from([-1, 1], (4, 5), scale=2)),
    OpCase("hardtanh/range", lambda x: A.hardtanh(x, -0.5, 2.0), lambda x: TF.hardtanh(x, -0.5, 2.0),
           away_from([-0.5, 2], (4, 5), scale=2)),
    # exponential family
    OpCase("elu/default", A.elu, TF.elu, away_from([0], (3, 4), scale=2)),
    OpCase("elu/alpha0.5", lambda x: A.elu(x, 0.5), lambda x: TF.elu(x, 0.5), away_from([0], (3, 4), scale=2)),
    OpCase("selu", A.selu, TF.selu, away_from([0], (3, 4), scale=2)),
    OpCase("sigmoid", A.sigmoid, torch.sigmoid, randn((3, 4), scale=3)),
    OpCase("sigmoid/tensor_method", lambda x: x.sigmoid(), torch.sigmoid, randn((5,))),
    OpCase("sigmoid/large", A.sigmoid, torch.sigmoid, spread((4, 5), -800, 800)),
    OpCase("logsigmoid", A.logsigmoid, TF.logsigmoid, randn((3, 4), scale=3)),
    OpCase("logsigmoid/large", A.logsigmoid, TF.logsigmoid, spread((4, 5), -800, 800)),
    OpCase("tanh", A.tanh, torch.tanh, randn((3, 4), scale=2)),
    OpCase("tanh/tensor_method", lambda x: x.tanh(), torch.tanh, randn((2, 3))),
    OpCase("silu", A.silu, TF.silu, randn((3, 4), scale=3)),
    OpCase("gelu/exact", A.gelu, TF.gelu, randn((3, 4), scale=2)),
    OpCase("gelu/tanh", lambda x: A.gelu(x, approximate="tanh"),
           lambda x: TF.gelu(x, approximate="tanh"), randn((3, 4), scale=2)),
    OpCase("softplus/default", A.softplus, TF.softplus, spread((4, 6), -40, 40)),
    OpCase("softplus/beta2_threshold5", lambda x: A.softplus(x, beta=2, threshold=5),
           lambda x: TF.softplus(x, beta=2, threshold=5), away_from([2.5], (4, 6), scale=3)),
    # along a dimension
    OpCase("softmax/dim1", lambda x: A.softmax(x, 1), lambda x: TF.softmax(x, 1), randn((4, 5))),
    OpCase("softmax/dim_neg1_3d", lambda x: A.softmax(x, -1), lambda x: TF.softmax(x, -1), randn((2, 3, 4))),
    OpCase("softmax/dim0", lambda x: A.softmax(x, 0), lambda x: TF.softmax(x, 0), randn((4, 3))),
    OpCase("softmax/1d_implicit_dim", A.softmax, lambda x: TF.softmax(x, 0), randn((6,))),
    OpCase("softmax/nchw_channels", lambda x: A.softmax(x, 1), lambda x: TF.softmax(x, 1), randn(NCHW)),
    OpCase("softmax/logits_1e3", lambda x: A.softmax(x, 1), lambda x: TF.softmax(x, 1),
           randn((3, 5), shift=1e3)),
    OpCase("softmax/spread_1e3", lambda x: A.softmax(x, 1), lambda x: TF.softmax(x, 1),
           randn((3, 5), scale=1e3)),
    OpCase("softmax/non_contiguous", lambda x: A.softmax(x, 0), lambda x: TF.softmax(x, 0),
           lambda rng: [rng.standard_normal((5, 4)).T]),
    OpCase("softmax/tensor_method", lambda x: x.softmax(-1), lambda x: x.softmax(-1), randn((3, 4))),
    OpCase("log_softmax/dim1", lambda x: A.log_softmax(x, 1), lambda x: TF.log_softmax(x, 1), randn((4, 5))),
    OpCase("log_softmax/dim0_3d", lambda x: A.log_softmax(x, 0), lambda x: TF.log_softmax(x, 0),
           randn((3, 2, 4))),
    OpCase("log_softmax/nchw_65_channels", lambda x: A.log_softmax(x, 1), lambda x: TF.log_softmax(x, 1),
           randn((1, 65, 2, 3))),
    OpCase("log_softmax/logits_1e3", lambda x: A.log_softmax(x, 1), lambda x: TF.log_softmax(x, 1),
           randn((3, 5), shift=1e3)),
    OpCase("log_softmax/spread_1e3", lambda x: A.log_softmax(x, -1), lambda x: TF.log_softmax(x, -1),
           randn((3, 5), scale=1e3)),
    OpCase("log_softmax/tensor_method", lambda x: x.log_softmax(1), lambda x: x.log_softmax(1), randn((3, 4))),
    OpCase("log_softmax/scalar", lambda x: A.log_softmax(x, 0), lambda x: TF.log_softmax(x, 0),
           lambda rng: [rng.standard_normal(())]),
    # found by tests/test_op_fuzz.py
    OpCase("softmax/empty_dim", lambda x: A.softmax(x, 1), lambda x: TF.softmax(x, 1), randn((2, 0))),
    OpCase("log_softmax/empty_dim", lambda x: A.log_softmax(x, 0), lambda x: TF.log_softmax(x, 0), randn((0, 3))),
]
