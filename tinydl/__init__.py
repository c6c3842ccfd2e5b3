"""tinydl: a from-scratch deep learning engine on NumPy (CPU) and CuPy (GPU)."""
from .tensor import (Tensor, tensor, as_tensor, from_numpy, zeros, ones, empty, full, randn, rand,
                     randint, randperm, arange, linspace, eye, zeros_like, ones_like, empty_like,
                     randn_like, rand_like, full_like,
                     float16, float32, float64, float_, double, int8, uint8, int16, int32, int64,
                     long, bool_)
# PyTorch's other dtype names (td.float is float32, as torch.float; these shadow the builtins
# only inside this namespace)
from .tensor import float16 as half, float32 as float, int16 as short, int32 as int, bool_ as bool  # noqa: A001,E501
from .autograd import no_grad, enable_grad, set_grad_enabled, is_grad_enabled
from .backend import manual_seed, Device as device
from . import backend
from .utils.gradcheck import gradcheck, gradgradcheck, GradcheckError
from .ops.shape import (cat, stack, split, chunk, flatten, squeeze, unsqueeze, reshape, permute, transpose,  # noqa: E402
                        gather, index_select, flip, roll, narrow, tile, movedim, tril, triu, diagonal, nonzero,
                        masked_select, scatter, scatter_add, index_add, take_along_dim)
from .ops.shape import movedim as moveaxis  # noqa: E402
from .ops.activation import softmax, log_softmax, sigmoid, tanh, relu  # noqa: E402
from .ops.math import where, exp, log, sqrt, abs, clamp, maximum, minimum, matmul  # noqa: E402,A004
from .ops.math import (floor, ceil, round, trunc, sign, sin, cos, log1p, expm1, log2, log10, square, rsqrt,  # noqa: E402,A004,E501
                       reciprocal, clamp_min, clamp_max, mm, bmm, dot, mv, outer, allclose, isclose, equal,
                       logical_and, logical_or, logical_xor, logical_not)
from .ops.math import clamp as clip  # noqa: E402
from .ops.promotion import promote_types, result_type  # noqa: E402
from .ops.reduce import sum, mean, max, min, argmax, argmin, var, std, logsumexp  # noqa: E402,A004
from .ops.reduce import (prod, cumsum, cumprod, amax, amin, norm, topk, sort, argsort, median,  # noqa: E402
                         kthvalue)
from .utils.serialization import save, load
from . import cuda, nn, optim, data  # noqa: E402


def is_tensor(obj):
    """Is ``obj`` a tinydl Tensor (torch.is_tensor)?"""
    return isinstance(obj, Tensor)


def isnan(input):
    return input.isnan()


def isinf(input):
    return input.isinf()


def isfinite(input):
    return input.isfinite()
