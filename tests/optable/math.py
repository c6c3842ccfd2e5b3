"""Op table rows: elementwise arithmetic, matmul, linear."""
import numpy as np
import torch

import tinydl.ops.math as M
from optable import OpCase


def randn(*shape):
    return lambda rng: [rng.standard_normal(s) for s in shape]


def positive(*shape):
    return lambda rng: [rng.uniform(0.5, 2.0, s) for s in shape]


CASES = [
    OpCase("add/broadcast", lambda a, b: a + b, lambda a, b: a + b, randn((2, 3, 4), (3, 1))),
    OpCase("add/scalar", lambda a: 2.5 + a, lambda a: 2.5 + a, randn((3, 4))),
    OpCase("sub/broadcast", lambda a, b: a - b, lambda a, b: a - b, randn((4, 1), (2, 1, 5))),
    OpCase("rsub/scalar", lambda a: 1 - a, lambda a: 1 - a, randn((3,))),
    OpCase("mul/broadcast", lambda a, b: a * b, lambda a, b: a * b, randn((2, 3, 4), (4,))),
    OpCase("mul/same_tensor", lambda a: a * a, lambda a: a * a, randn((5,))),
    OpCase("div/broadcast", lambda a, b: a / b, lambda a, b: a / b,
           lambda rng: [rng.standard_normal((3, 4)), rng.uniform(0.5, 2, (1, 4))]),
    OpCase("rdiv/scalar", lambda a: 2 / a, lambda a: 2 / a, positive((3, 2))),
    OpCase("pow/tensor_exponent", lambda a, b: a ** b, lambda a, b: a ** b, positive((3, 4), (4,))),
    OpCase("pow/scalar", lambda a: a ** 3, lambda a: a ** 3, randn((3, 4))),
    OpCase("rpow/scalar", lambda a: 2 ** a, lambda a: 2 ** a, randn((3, 4))),
    # a / b stays 0.1-0.4 away from an integer, where remainder jumps and finite differences fail
    OpCase("remainder/broadcast", lambda a, b: a % b, lambda a, b: a % b,
           lambda rng: [2 * rng.integers(-3, 4, (3, 4)) + rng.uniform(0.2, 0.8, (3, 4)),
                        rng.choice([-2.0, 2.0], (4,))]),
    OpCase("rremainder/scalar", lambda b: 7.5 % b, lambda b: torch.full_like(b, 7.5) % b,   # (7.5 % b: no
           lambda rng: [rng.choice([-2.0, 2.0], (3,))]),                                    # PyTorch gradient)
    OpCase("floor_divide/broadcast", lambda a, b: a // b, lambda a, b: a // b,
           lambda rng: [rng.standard_normal((3, 4)) * 5, rng.choice([-2.0, 2.0, 3.0], (4,))], grad=[]),
    OpCase("neg", lambda a: -a, lambda a: -a, randn((3, 4))),
    OpCase("exp", M.exp, torch.exp, randn((3, 4))),
    OpCase("log", M.log, torch.log, positive((3, 4))),
    OpCase("sqrt", M.sqrt, torch.sqrt, positive((3, 4))),
    OpCase("abs", M.abs, torch.abs, randn((3, 4))),
    OpCase("clamp/both", lambda a: M.clamp(a, -0.5, 0.5), lambda a: a.clamp(-0.5, 0.5), randn((4, 5))),
    OpCase("clamp/min", lambda a: M.clamp(a, min=0.1), lambda a: a.clamp(min=0.1), randn((4, 5))),
    OpCase("clamp/tensor_bounds", lambda x, lo, hi: M.clamp(x, lo, hi), lambda x, lo, hi: torch.clamp(x, lo, hi),
           lambda rng: [rng.standard_normal((3, 4)), rng.uniform(-0.8, -0.2, (4,)), rng.uniform(0.2, 0.8, (3, 1))]),
    OpCase("clamp/tensor_min", lambda x, lo: M.clamp(x, min=lo), lambda x, lo: torch.clamp(x, min=lo),
           randn((2, 3), (2, 1))),
    OpCase("maximum/broadcast", M.maximum, torch.maximum, randn((3, 4), (4,))),
    OpCase("minimum/broadcast", M.minimum, torch.minimum, randn((3, 4), (3, 1))),
    OpCase("where", lambda c, a, b: M.where(c > 0, a, b), lambda c, a, b: torch.where(c > 0, a, b),
           randn((3, 4), (3, 4), (4,)), grad=[1, 2]),
    OpCase("matmul/2d", lambda a, b: a @ b, lambda a, b: a @ b, randn((3, 4), (4, 5))),
    OpCase("matmul/batched_broadcast", lambda a, b: a @ b, lambda a, b: a @ b, randn((2, 1, 3, 4), (3, 4, 2))),
    OpCase("matmul/vector_matrix", lambda a, b: a @ b, lambda a, b: a @ b, randn((4,), (2, 4, 3))),
    OpCase("matmul/vector_vector", lambda a, b: a @ b, lambda a, b: a @ b, randn((4,), (4,))),   # fuzz-found
    OpCase("matmul/matrix_vector", lambda a, b: a @ b, lambda a, b: a @ b, randn((2, 3, 4), (4,))),
    OpCase("matmul/non_contiguous", lambda a, b: a @ b, lambda a, b: a @ b,
           lambda rng: [rng.standard_normal((4, 3)).T, rng.standard_normal((8, 5))[::2, :]]),
    OpCase("linear/bias", M.linear, torch.nn.functional.linear, randn((5, 4), (3, 4), (3,))),
    OpCase("linear/no_bias_3d", M.linear, torch.nn.functional.linear, randn((2, 5, 4), (3, 4))),
    OpCase("linear/zero_rows", M.linear, torch.nn.functional.linear, randn((0, 4), (3, 4), (3,))),   # fuzz-found
    OpCase("linear/zero_features", M.linear, torch.nn.functional.linear, randn((2, 5, 0), (3, 0))),
    OpCase("clone", M.clone, torch.clone, randn((3,))),
]


def away_from_jumps(*shape):
    """Values at least 0.1 from every multiple of 0.5 (floor, round... are constant there)."""
    return lambda rng: [rng.integers(-6, 6, s) * 0.5 + rng.uniform(0.1, 0.4, s) for s in shape]


CASES += [
    # ---- rounding: a zero gradient (not None), as PyTorch's
    OpCase("floor", M.floor, torch.floor, away_from_jumps((3, 4))),
    OpCase("ceil", lambda a: a.ceil(), lambda a: a.ceil(), away_from_jumps((3, 4))),
    OpCase("trunc", M.trunc, torch.trunc, away_from_jumps((3, 4))),
    OpCase("round", M.round, torch.round, away_from_jumps((3, 4))),
    OpCase("round/half_to_even", M.round, torch.round,
           lambda rng: [np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.5])], gradcheck=False),
    OpCase("round/decimals", lambda a: M.round(a, decimals=2), lambda a: torch.round(a, decimals=2),
           lambda rng: [rng.integers(-300, 300, (3, 4)) / 100 + rng.uniform(0.001, 0.004, (3, 4))]),
    OpCase("round/negative_decimals", lambda a: a.round(decimals=-1), lambda a: a.round(decimals=-1),
           lambda rng: [rng.integers(-30, 30, (5,)) * 10 + rng.uniform(1, 4, (5,))]),
    OpCase("sign", M.sign, torch.sign, lambda rng: [np.array([-2.0, 0.0, 3.0, -0.5])], gradcheck=False),   # 0: a jump
    # ---- smooth functions
    OpCase("sin", M.sin, torch.sin, randn((3, 4))),
    OpCase("cos", lambda a: a.cos(), lambda a: a.cos(), randn((3, 4))),
    OpCase("log1p", M.log1p, torch.log1p, positive((3, 4))),
    OpCase("log1p/tiny", M.log1p, torch.log1p, lambda rng: [rng.uniform(-1e-6, 1e-6, (4,))]),
    OpCase("expm1", M.expm1, torch.expm1, randn((3, 4))),
    OpCase("log2", M.log2, torch.log2, positive((3, 4))),
    OpCase("log10", lambda a: a.log10(), lambda a: a.log10(), positive((3, 4))),
    OpCase("square", M.square, torch.square, randn((3, 4))),
    OpCase("rsqrt", M.rsqrt, torch.rsqrt, positive((3, 4))),
    OpCase("reciprocal", lambda a: a.reciprocal(), lambda a: a.reciprocal(), positive((3, 4))),
    OpCase("clamp_min", lambda a: M.clamp_min(a, 0.2), lambda a: torch.clamp_min(a, 0.2), randn((3, 4))),
    OpCase("clamp_max/tensor", lambda a, b: a.clamp_max(b), lambda a, b: a.clamp_max(b), randn((3, 4), (4,))),
    # ---- products
    OpCase("mm", M.mm, torch.mm, randn((3, 4), (4, 2))),
    OpCase("bmm", lambda a, b: a.bmm(b), lambda a, b: a.bmm(b), randn((2, 3, 4), (2, 4, 5))),
    OpCase("dot", M.dot, torch.dot, randn((5,), (5,))),
    OpCase("mv", M.mv, torch.mv, randn((3, 4), (4,))),
    OpCase("outer", lambda a, b: a.outer(b), lambda a, b: a.outer(b), randn((3,), (4,))),
]
