"""Op table rows: channel_shuffle, lp_pool1d / lp_pool2d, bilinear, rms_norm, pdist
(tinydl/ops/extras.py, compositions of recorded ops).

lp_pool rows with an odd or fractional p get positive inputs (a negative window sum has no
real root: NaN in both libraries); p = 2 and 1 take any sign. pdist rows get rows far
enough apart that no difference is near 0, and, for p = inf, no ties."""
import math

import torch.nn.functional as TF

import tinydl.ops.extras as E
from optable import OpCase


def randn(*shapes):
    return lambda rng: [rng.standard_normal(s) for s in shapes]


def positive(shape):
    return lambda rng: [rng.uniform(0.3, 2.0, shape)]


def transposed(shape):
    """A non-contiguous array of ``shape``: the transpose of a C-ordered one."""
    return lambda rng: [rng.standard_normal(shape[::-1]).T]


def spread_rows(n, m):
    """n rows of m distinct values (a scaled permutation): no difference is 0, no |difference| ties."""
    return lambda rng: [(rng.permutation(n * m).reshape(n, m) * 0.37 + rng.uniform(0, 0.01, (n, m))) / n]


def _shuffle(groups, shape, make=None):
    return OpCase(f"channel_shuffle/g{groups}_{'x'.join(map(str, shape))}" + ("_noncontig" if make else ""),
                  lambda x: E.channel_shuffle(x, groups), lambda x: TF.channel_shuffle(x, groups),
                  make or randn(shape))


def _lp2(name, p, kernel, stride=None, ceil_mode=False, shape=(2, 3, 7, 6), make=None):
    return OpCase(f"lp_pool2d/{name}", lambda x: E.lp_pool2d(x, p, kernel, stride, ceil_mode),
                  lambda x: TF.lp_pool2d(x, p, kernel, stride, ceil_mode), (make or randn)(shape))


def _lp1(name, p, kernel, stride=None, ceil_mode=False, shape=(2, 3, 9), make=None):
    return OpCase(f"lp_pool1d/{name}", lambda x: E.lp_pool1d(x, p, kernel, stride, ceil_mode),
                  lambda x: TF.lp_pool1d(x, p, kernel, stride, ceil_mode), (make or randn)(shape))


def _lp3(name, p, kernel, stride=None, ceil_mode=False, shape=(2, 2, 5, 4, 3), make=None):
    return OpCase(f"lp_pool3d/{name}", lambda x: E.lp_pool3d(x, p, kernel, stride, ceil_mode),
                  lambda x: TF.lp_pool3d(x, p, kernel, stride, ceil_mode), (make or randn)(shape))


def _bilinear(name, lead, in1, in2, out, bias=True):
    shapes = [lead + (in1,), lead + (in2,), (out, in1, in2)] + ([(out,)] if bias else [])
    return OpCase(f"bilinear/{name}", E.bilinear, TF.bilinear, randn(*shapes))


def _rms(name, shape, normalized_shape, weight=True, eps=None, make=None):
    def inputs(rng):
        x = (make or randn)(shape)(rng)[0]
        return [x] + ([rng.uniform(0.5, 1.5, normalized_shape)] if weight else [])
    return OpCase(f"rms_norm/{name}", lambda x, w=None: E.rms_norm(x, normalized_shape, w, eps),
                  lambda x, w=None: TF.rms_norm(x, list(normalized_shape), w, eps), inputs)


def _pdist(p, n=5, m=4):
    return OpCase(f"pdist/p{p}_{n}x{m}", lambda x: E.pdist(x, p), lambda x: TF.pdist(x, p), spread_rows(n, m))


CASES = [
    _shuffle(3, (2, 6, 3, 4)),
    _shuffle(2, (2, 4, 5)),
    _shuffle(2, (1, 6, 2, 3, 2)),
    _shuffle(1, (2, 3, 4)),
    _shuffle(2, (2, 4, 3), transposed((2, 4, 3))),

    _lp2("p2_k3_s2", 2, 3, 2),
    _lp3("p2_k2", 2, 2),
    _lp1("inf_k2", math.inf, 2),
    _lp2("minus_inf_k2_ceil", -math.inf, 2, 3, True),
    _lp3("inf_k2_s1", math.inf, 2, 1),
    _lp3("p3_k2x3x2_s1_ceil", 3, (2, 3, 2), 1, True, make=positive),
    _lp2("p1_k2", 1, 2),
    _lp2("p3_k2x3_ceil", 3, (2, 3), (2, 2), True, make=positive),
    _lp2("p1.5_k3_s1", 1.5, 3, 1, make=positive),
    _lp2("p2_unbatched", 2, 2, shape=(3, 6, 5)),
    _lp1("p2_k3_s2", 2, 3, 2),
    _lp1("p3_k2_ceil", 3, 2, None, True, make=positive),
    _lp1("p2_unbatched", 2, 4, 1, shape=(3, 8)),

    _bilinear("2d", (4,), 3, 5, 2),
    _bilinear("3d_no_bias", (2, 3), 4, 2, 3, bias=False),
    _bilinear("1d", (), 3, 4, 2),
    _bilinear("batch1", (1,), 2, 2, 5),

    _rms("last_dim", (4, 6), (6,)),
    _rms("two_dims", (2, 3, 4, 5), (4, 5)),
    _rms("no_weight_eps", (3, 7), (7,), weight=False, eps=1e-3),
    _rms("1d", (5,), (5,)),
    _rms("noncontig", (4, 6), (6,), make=transposed),

    _pdist(2),
    _pdist(1),
    _pdist(3),
    _pdist(0.5),
    _pdist(math.inf),
    _pdist(0),
    _pdist(2, n=2, m=3),
]
