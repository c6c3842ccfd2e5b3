"""Op table rows: the activations added for PyTorch's full set (celu, mish, hardswish,
hardsigmoid, softsign, tanhshrink, threshold, hard/softshrink, prelu, glu, softmin).
Inputs keep away from each function's kinks, as in activation.py."""
import torch.nn.functional as TF

import tinydl.ops.activation as A
from optable import OpCase
from optable.activation import away_from, randn, spread

NCHW = (2, 3, 4, 5)


def with_slopes(x_shape, n_slopes):
    """Input away from 0 and PReLU slopes (weight), both differentiable."""
    def make(rng):
        x, = away_from([0], x_shape, scale=2)(rng)
        return [x, rng.uniform(0.05, 0.5, (n_slopes,))]
    return make


CASES = [
    OpCase("celu/default", A.celu, TF.celu, away_from([0], (3, 4), scale=2)),
    OpCase("celu/alpha0.5", lambda x: A.celu(x, 0.5), lambda x: TF.celu(x, 0.5), away_from([0], NCHW, scale=2)),
    OpCase("celu/alpha2", lambda x: A.celu(x, 2.0), lambda x: TF.celu(x, 2.0), away_from([0], (3, 4), scale=3)),
    OpCase("mish", A.mish, TF.mish, randn((3, 4), scale=3)),
    OpCase("mish/large", A.mish, TF.mish, spread((4, 5), -60, 60)),
    OpCase("hardswish", A.hardswish, TF.hardswish, away_from([-3, 3], (4, 6), scale=4)),
    OpCase("hardsigmoid", A.hardsigmoid, TF.hardsigmoid, away_from([-3, 3], (4, 6), scale=4)),
    OpCase("softsign", A.softsign, TF.softsign, randn((3, 4), scale=3)),
    OpCase("tanhshrink", A.tanhshrink, TF.tanhshrink, randn((3, 4), scale=2)),
    OpCase("threshold", lambda x: A.threshold(x, 0.3, -2.0), lambda x: TF.threshold(x, 0.3, -2.0),
           away_from([0.3], (4, 5))),
    OpCase("hardshrink/default", A.hardshrink, TF.hardshrink, away_from([-0.5, 0.5], (4, 5))),
    OpCase("hardshrink/lambd1", lambda x: A.hardshrink(x, 1.0), lambda x: TF.hardshrink(x, 1.0),
           away_from([-1, 1], (4, 5), scale=2)),
    OpCase("softshrink/default", A.softshrink, TF.softshrink, away_from([-0.5, 0.5], (4, 5))),
    OpCase("softshrink/lambd0.2", lambda x: A.softshrink(x, 0.2), lambda x: TF.softshrink(x, 0.2),
           away_from([-0.2, 0.2], NCHW)),
    OpCase("prelu/per_channel", A.prelu, TF.prelu, with_slopes(NCHW, 3)),
    OpCase("prelu/shared", A.prelu, TF.prelu, with_slopes(NCHW, 1)),
    OpCase("prelu/2d_per_feature", A.prelu, TF.prelu, with_slopes((5, 4), 4)),
    OpCase("prelu/1d_shared", A.prelu, TF.prelu, with_slopes((6,), 1)),
    OpCase("glu/last", A.glu, TF.glu, randn((3, 6), scale=2)),
    OpCase("glu/dim1", lambda x: A.glu(x, 1), lambda x: TF.glu(x, 1), randn((2, 4, 3), scale=2)),
    OpCase("softmin/dim1", lambda x: A.softmin(x, 1), lambda x: TF.softmin(x, 1), randn((3, 5), scale=3)),
    OpCase("softmin/dim0_large", lambda x: A.softmin(x, 0), lambda x: TF.softmin(x, 0),
           spread((4, 3), -500, 500)),
]

CASES += [
    # evaluation mode: the mean slope (training draws random slopes: tests/test_activation_modules.py)
    OpCase("rrelu/eval", A.rrelu, TF.rrelu, away_from([0], (4, 5), scale=2)),
    OpCase("rrelu/eval_range", lambda x: A.rrelu(x, 0.1, 0.6), lambda x: TF.rrelu(x, 0.1, 0.6),
           away_from([0], NCHW, scale=2)),
]

# inplace=True while recording: the result is written into the input (here a non-leaf copy,
# x * 1.0, as a leaf that requires grad is refused), which becomes the op's output
CASES += [
    OpCase(f"{name}/inplace", (lambda f: lambda x: f(x * 1.0, inplace=True))(getattr(A, name)),
           (lambda f: lambda x: f(x * 1.0, inplace=True))(getattr(TF, name)), make)
    for name, make in [("elu", away_from([0], (4, 5), scale=2)), ("selu", away_from([0], (4, 5), scale=2)),
                       ("celu", away_from([0], (4, 5), scale=2)), ("silu", randn((4, 5), scale=3)),
                       ("mish", randn((4, 5), scale=3)), ("hardswish", away_from([-3, 3], (4, 6), scale=4)),
                       ("hardsigmoid", away_from([-3, 3], (4, 6), scale=4))]
]
CASES += [
    OpCase("threshold/inplace", lambda x: A.threshold(x * 1.0, 0.3, -2.0, inplace=True),
           lambda x: TF.threshold(x * 1.0, 0.3, -2.0, inplace=True), away_from([0.3], (4, 5))),
    OpCase("rrelu/eval_inplace", lambda x: A.rrelu(x * 1.0, inplace=True),
           lambda x: TF.rrelu(x * 1.0, inplace=True), away_from([0], (4, 5), scale=2)),
]
