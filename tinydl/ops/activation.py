"""Activation functions: elementwise nonlinearities, softmax and log-softmax.

Each op is a Function whose ``forward`` computes y from x on raw arrays and
whose ``backward`` turns dL/dy (``gy``) into dL/dx. Elementwise ops have a
diagonal Jacobian, so dL/dx = gy * f'(x); the docstring gives f'. Softmax and
log-softmax mix the entries along ``dim``, and their backward is a
vector-Jacobian product written out in closed form.

Numerical care (the reason some forwards look longer than the formula):
  * sigmoid and log-sigmoid never evaluate exp of a large positive number;
  * softmax and log-softmax subtract the maximum along ``dim`` first, so
    logits of 1e3 (or 1e30) give finite results and gradients.

``inplace=True`` (PyTorch's argument). relu, relu6, hardtanh and leaky_relu really
compute in place, also while the graph is recorded: the result is written into the
input's array and no array of the input's size is kept beside it (their backward
needs only the output's sign or a mask, never the overwritten x). Where overwriting
would break a gradient, they raise as PyTorch does: for a leaf that requires grad
(or a view of one), and for an input its producing op saved for its own backward
(e.g. the output of tanh or sigmoid). An input that a *different* consumer saved
earlier (``a = conv(x); y = relu(x, True)``) is caught by the version counters: that
consumer's backward raises, as PyTorch's does. The result is the input itself, and
while recording the input becomes the op's output (its ``grad_fn`` is the op's node, as
PyTorch "rebases" it), so ``F.relu(x, True)`` alone, without ``x =``, is right too.
Ops that used x before keep its old history; one that keeps x itself with no version to
check (an op that reruns itself for its gradient) would follow x to its new history, so
there the in-place op refuses. The other tensors over x's memory (its views, the tensor x
views) take their history from the new one when next used, as PyTorch's (``ops/inplace.py``).

The other activations with ``inplace`` (elu, selu, celu, silu, mish, hardswish, hardsigmoid,
threshold, rrelu; and dropout) compute the result beside x and then write it into x, which
they return (``_finish``). While recording, x becomes the op's output through the in-place
machinery of ``ops/inplace.py`` (views included), and the op reads a copy of x: its
backward may need x's old values (silu's), which the write replaces (PyTorch keeps the
"original self" the same way). The same refusals as above apply.
"""
import math

from ..autograd import Function, constant
from ..backend import get_array_module, is_cupy_array
from ..kernels import relu_backward, relu_forward
from ..tensor import Tensor
from .inplace import apply as apply_in_place, overwrite_ok, record_write
from .math import floating, on_array_or_tensor, raw, sum_kept, zero_where

__all__ = ["relu", "relu6", "leaky_relu", "elu", "selu", "celu", "hardtanh", "sigmoid", "logsigmoid", "tanh",
           "silu", "gelu", "softplus", "mish", "hardswish", "hardsigmoid", "softsign", "tanhshrink",
           "threshold", "hardshrink", "softshrink", "prelu", "rrelu", "glu", "softmax", "softmin", "log_softmax",
           "relu_", "elu_", "celu_", "selu_", "leaky_relu_", "hardtanh_", "rrelu_", "threshold_"]


# ---------------------------------------------------------------- helpers
def _stable_sigmoid(x):
    """1 / (1 + exp(-x)) without overflow: exp is only taken of -|x| <= 0.

    For x >= 0 the textbook form is safe; for x < 0 multiply top and bottom by
    exp(x) to get exp(x) / (1 + exp(x)). Both use e = exp(-|x|) in (0, 1].
    """
    xp = get_array_module(x)
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _erf(x):
    """The error function of an array: scipy on the CPU, cupyx on the GPU
    (NumPy has no erf). Only exact GELU needs it."""
    if is_cupy_array(x):
        import cupyx.scipy.special as special
    else:
        try:
            import scipy.special as special
        except ImportError as exc:
            raise ImportError("gelu(approximate='none') needs scipy for erf; install scipy "
                              "or use gelu(x, approximate='tanh')") from exc
    return special.erf(x)


def softplus_recorded(v):
    """log(1 + exp(v)) in recorded ops (composites), as m + log(exp(-m) + exp(v - m)) with the
    shift m = max(v, 0) held constant: neither exponential overflows, and the derivative is
    sigmoid(v) everywhere (a |v| or a max(v, 0) in the formula would give 0 or 1 at v = 0)."""
    m = constant(v._xp.maximum(v.array, 0), v)
    return m + ((-m).exp() + (v - m).exp()).log()


class Erf(Function):
    """y = erf(x);  dy/dx = 2 / sqrt(pi) * exp(-x**2). (Exact GELU's higher derivatives.)"""

    double_backward = "operators"

    def forward(ctx, x):
        ctx.save_for_backward(x)
        return _erf(x).astype(x.dtype, copy=False)

    def backward(ctx, gy):
        x, = ctx.saved_tensors
        return gy * on_array_or_tensor("exp", -(x * x)) * (2 / math.sqrt(math.pi))


def _normalize_dim(dim, ndim, op):
    """A dimension in range [-ndim, ndim) as a non-negative axis (0-d counts as 1-d)."""
    n = max(ndim, 1)
    if not -n <= dim < n:
        raise IndexError(f"{op}: dim {dim} is out of range for a tensor with {ndim} dimensions "
                         f"(expected a dim in [{-n}, {n - 1}])")
    return dim % n


def _apply_in_place(fn, x, inplace, op, **params):
    """``fn.apply(x, **params)``, computed in x's own array when ``inplace`` (module
    docstring). The result is then x itself, as PyTorch's; when the op was recorded, x
    is made its output (``rebase_in_place``)."""
    if inplace and overwrite_ok(x, f"{op}(inplace=True)", instead="use inplace=False"):
        x._bump_version()       # before the write: ops that saved x see the change at backward
        out = fn.apply(x, inplace=True, **params)
        if out.requires_grad:
            record_write(x, out)
        return x
    return fn.apply(x, **params)


def _finish(fn, x, inplace, op, **params):
    """``fn.apply(x, **params)``; with ``inplace``, that result written into x, and x returned
    (PyTorch's ``elu_`` and the like; module docstring; ops/inplace.py ``apply``)."""
    if not (inplace and isinstance(x, Tensor)):
        return fn.apply(x, **params)
    return apply_in_place(x, lambda t: fn.apply(t, **params), f"{op}(inplace=True)", instead="use inplace=False")


# ---------------------------------------------------------------- piecewise linear
class ReLU(Function):
    """y = max(x, 0);  dy/dx = 1 where x > 0, else 0 (0 at x = 0, as PyTorch).

    x > 0 exactly where y > 0, so backward reads the mask off the output:
    saving y costs no memory (the next layer keeps it anyway), where a
    separate boolean mask would be one more array per ReLU.

    The array code is ``y = xp.maximum(x, 0)`` (NaN stays NaN, as in PyTorch)
    and ``gx = where(y <= 0, 0, gy)``: a select, as PyTorch's, so an inf or NaN gy
    where the unit is off gives 0 (gy * 0 would give NaN), and a NaN passes gy on.
    On the CPU a fused Numba loop computes the same bits
    (tinydl/kernels/activation.py). In place, y is x's own array, so the layer
    keeps no array besides its input's.
    """

    double_backward = "operators"

    def forward(ctx, x, inplace=False):
        if inplace:
            y = get_array_module(x).maximum(x, 0, out=x)
        else:
            y = relu_forward(x)                     # xp.maximum(x, 0)
        ctx.save_for_backward(y)
        return y

    def backward(ctx, gy):
        y, = ctx.saved_tensors
        if isinstance(gy, Tensor):                  # create_graph: relu'' = 0, the mask is a constant
            return zero_where(raw(y) <= 0, gy)
        return relu_backward(gy, y)                 # where(y <= 0, 0, gy)


class LeakyReLU(Function):
    """y = x where x > 0, else slope * x;  dy/dx = 1 where x > 0, else slope.

    Backward needs only the sign of x (a saved mask), never x: the graph keeps no input."""

    double_backward = "operators"      # backward: gy times a constant slope per element

    def forward(ctx, x, negative_slope, inplace=False):
        xp = get_array_module(x)
        positive = x > 0
        ctx.save_for_backward(positive)
        ctx.slope = negative_slope
        if inplace:
            return xp.multiply(x, xp.where(positive, 1, negative_slope).astype(x.dtype), out=x)
        return xp.where(positive, x, x * negative_slope)

    def backward(ctx, gy):
        positive, = ctx.saved_tensors
        if isinstance(gy, Tensor):                  # create_graph: leaky_relu'' = 0, the slopes are constants
            return gy * constant(gy._xp.where(raw(positive), 1, ctx.slope), gy)
        return get_array_module(gy).where(positive, gy, gy * ctx.slope)


class Hardtanh(Function):
    """y = clip(x, lo, hi);  dy/dx = 1 where lo < x < hi, else 0 (PyTorch: 0 on the
    boundaries). relu6 is hardtanh(x, 0, 6)."""

    double_backward = "operators"      # backward: gy times a saved mask

    def forward(ctx, x, lo, hi, inplace=False):
        xp = get_array_module(x)
        ctx.save_for_backward((x > lo) & (x < hi))
        if inplace:
            return xp.clip(x, lo, hi, out=x)
        return xp.clip(x, lo, hi).astype(x.dtype, copy=False)

    def backward(ctx, gy):
        inside, = ctx.saved_tensors
        return gy * inside


# ---------------------------------------------------------------- exponential family
class ELU(Function):
    """y = x where x > 0, else alpha * (exp(k x) - 1);   (SELU: y times ``scale``)
    dy/dx = 1 where x > 0, else k * alpha * exp(k x)  (= k (y + alpha) there).

    k (``input_scale``) is 1 for ELU and SELU; CELU is k = 1 / alpha, which keeps the
    slope at 0- equal to 1 for every alpha (continuously differentiable)."""

    double_backward = "composite"

    def forward(ctx, x, alpha, scale=1.0, input_scale=1.0):
        xp = get_array_module(x)
        positive = x > 0
        # expm1 is accurate near 0, where exp(x) - 1 would cancel; the minimum
        # keeps exp from overflowing in the branch where() throws away.
        negative_part = alpha * xp.expm1(xp.minimum(x, 0) * input_scale)
        y = xp.where(positive, x, negative_part)
        ctx.save_for_backward(positive, negative_part)
        ctx.alpha, ctx.scale, ctx.input_scale = alpha, scale, input_scale
        return y * scale if scale != 1.0 else y

    def composite(ctx, x, alpha, scale=1.0, input_scale=1.0):
        p = constant(x.array > 0, x)
        negative = ((x * (1 - p) * input_scale).exp() - 1) * (1 - p) * alpha
        return (x * p + negative) * scale

    def backward(ctx, gy):
        positive, negative_part = ctx.saved_tensors
        slope = get_array_module(gy).where(positive, 1, (negative_part + ctx.alpha) * ctx.input_scale)
        slope = slope.astype(gy.dtype, copy=False)
        return gy * slope * ctx.scale if ctx.scale != 1.0 else gy * slope


class Sigmoid(Function):
    """y = 1 / (1 + exp(-x));  dy/dx = y * (1 - y)."""

    double_backward = "operators"

    def forward(ctx, x):
        y = _stable_sigmoid(x)
        ctx.save_for_backward(y)
        return y

    def backward(ctx, gy):
        y, = ctx.saved_tensors
        return gy * y * (1 - y)


class LogSigmoid(Function):
    """y = log(sigmoid(x)) = -log(1 + exp(-x)) = min(x, 0) - log(1 + exp(-|x|));
    dy/dx = 1 - sigmoid(x) = sigmoid(-x)."""

    double_backward = "composite"

    def forward(ctx, x):
        xp = get_array_module(x)
        ctx.save_for_backward(x)
        return xp.minimum(x, 0) - xp.log1p(xp.exp(-xp.abs(x)))

    def composite(ctx, x):
        return -softplus_recorded(-x)

    def backward(ctx, gy):
        x, = ctx.saved_tensors
        return gy * _stable_sigmoid(-x)


class Tanh(Function):
    """y = tanh(x);  dy/dx = 1 - y**2."""

    double_backward = "operators"

    def forward(ctx, x):
        y = get_array_module(x).tanh(x)
        ctx.save_for_backward(y)
        return y

    def backward(ctx, gy):
        y, = ctx.saved_tensors
        return gy * (1 - y * y)


class SiLU(Function):
    """y = x * s with s = sigmoid(x) (a.k.a. swish);  dy/dx = s * (1 + x * (1 - s))."""

    double_backward = "composite"

    def forward(ctx, x):
        s = _stable_sigmoid(x)
        ctx.save_for_backward(x, s)
        return x * s

    def composite(ctx, x):
        return x * x.sigmoid()

    def backward(ctx, gy):
        x, s = ctx.saved_tensors
        return gy * s * (1 + x * (1 - s))


class GELU(Function):
    """y = x * Phi(x), Phi the standard normal CDF = (1 + erf(x / sqrt 2)) / 2;
    dy/dx = Phi(x) + x * phi(x), phi(x) = exp(-x**2 / 2) / sqrt(2 pi).

    approximate='tanh':  y = x/2 * (1 + t), t = tanh(k (x + 0.044715 x**3)), k = sqrt(2/pi);
    dy/dx = (1 + t)/2 + x/2 * (1 - t**2) * k * (1 + 3 * 0.044715 x**2).
    """

    double_backward = "composite"

    def forward(ctx, x, approximate):
        xp = get_array_module(x)
        ctx.approximate = approximate
        ctx.save_for_backward(x)
        if approximate == "tanh":
            t = xp.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3))
            return 0.5 * x * (1 + t)
        return x * (0.5 * (1 + _erf(x * (1 / math.sqrt(2)))))

    def composite(ctx, x, approximate):
        if approximate == "tanh":
            return 0.5 * x * (1 + (math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)).tanh())
        return x * (0.5 * (1 + Erf.apply(x * (1 / math.sqrt(2)))))

    def backward(ctx, gy):
        x, = ctx.saved_tensors
        xp = get_array_module(x)
        if ctx.approximate == "tanh":
            k = math.sqrt(2 / math.pi)
            t = xp.tanh(k * (x + 0.044715 * x ** 3))
            return gy * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * k * (1 + 3 * 0.044715 * x * x))
        cdf = 0.5 * (1 + _erf(x * (1 / math.sqrt(2))))
        pdf = xp.exp(-0.5 * x * x) * (1 / math.sqrt(2 * math.pi))
        return gy * (cdf + x * pdf)


class Softplus(Function):
    """y = log(1 + exp(beta x)) / beta, and y = x where beta x > threshold (PyTorch's
    switch to the linear asymptote);  dy/dx = sigmoid(beta x), and 1 past the threshold."""

    double_backward = "composite"

    def forward(ctx, x, beta, threshold):
        xp = get_array_module(x)
        bx = x * beta
        linear = bx > threshold
        # min() keeps exp finite in the branch where() discards.
        y = xp.where(linear, x, xp.log1p(xp.exp(xp.minimum(bx, threshold))) / beta)
        ctx.save_for_backward(bx, linear)
        return y

    def composite(ctx, x, beta, threshold):
        _, linear = ctx.saved_tensors
        lin = constant(linear, x)
        return x * lin + softplus_recorded(x * beta * (1 - lin)) * (1 - lin) / beta

    def backward(ctx, gy):
        bx, linear = ctx.saved_tensors
        xp = get_array_module(gy)
        return xp.where(linear, gy, gy * _stable_sigmoid(bx))


class Mish(Function):
    """y = x * tanh(softplus(x));  with t = tanh(softplus(x)) and d softplus/dx = sigmoid(x),
    dy/dx = t + x * (1 - t**2) * sigmoid(x)."""

    double_backward = "composite"

    def forward(ctx, x):
        xp = get_array_module(x)
        sp = xp.log1p(xp.exp(-xp.abs(x))) + xp.maximum(x, 0)     # softplus, never overflows
        t = xp.tanh(sp)
        ctx.save_for_backward(x, t)
        return x * t

    def composite(ctx, x):
        return x * softplus_recorded(x).tanh()

    def backward(ctx, gy):
        x, t = ctx.saved_tensors
        return gy * (t + x * (1 - t * t) * _stable_sigmoid(x))


class Hardswish(Function):
    """y = x * relu6(x + 3) / 6: 0 for x <= -3, x for x >= 3, x (x + 3) / 6 between;
    dy/dx = 0 for x <= -3, 1 for x >= 3, x / 3 + 1/2 on (-3, 3) (PyTorch's values at the
    kinks: the outer pieces' slopes 0 and 1; a NaN x gets slope 1, as there)."""

    double_backward = "composite"

    def forward(ctx, x):
        xp = get_array_module(x)
        ctx.save_for_backward(x)
        return x * xp.clip(x + 3, 0, 6) / 6

    def composite(ctx, x):
        a = x.array
        mid, high = constant((a > -3) & (a < 3), x), constant(a >= 3, x)
        return x * (x + 3) * mid / 6 + x * high

    def backward(ctx, gy):
        x, = ctx.saved_tensors
        xp = get_array_module(x)
        slope = xp.where(x <= -3, 0, xp.where(x < 3, x / 3 + 0.5, 1)).astype(gy.dtype, copy=False)
        return gy * slope


class Hardsigmoid(Function):
    """y = relu6(x + 3) / 6;  dy/dx = 1/6 where -3 < x < 3, else 0."""

    double_backward = "operators"      # backward: gy times a saved mask

    def forward(ctx, x):
        xp = get_array_module(x)
        ctx.save_for_backward((x > -3) & (x < 3))
        return (xp.clip(x + 3, 0, 6) / 6).astype(x.dtype, copy=False)

    def backward(ctx, gy):
        inside, = ctx.saved_tensors
        return gy * inside / 6


class Softsign(Function):
    """y = x / (1 + |x|);  dy/dx = 1 / (1 + |x|)**2."""

    double_backward = "composite"

    def forward(ctx, x):
        d = 1 + get_array_module(x).abs(x)
        ctx.save_for_backward(d)
        return x / d

    def composite(ctx, x):
        return x / (x.abs() + 1)

    def backward(ctx, gy):
        d, = ctx.saved_tensors
        return gy / (d * d)


class Tanhshrink(Function):
    """y = x - tanh(x);  dy/dx = 1 - (1 - tanh(x)**2) = tanh(x)**2."""

    double_backward = "composite"

    def forward(ctx, x):
        t = get_array_module(x).tanh(x)
        ctx.save_for_backward(t)
        return x - t

    def composite(ctx, x):
        return x - x.tanh()

    def backward(ctx, gy):
        t, = ctx.saved_tensors
        return gy * t * t


class Threshold(Function):
    """y = value where x <= threshold, else x;  dy/dx = 0 where x <= threshold, else 1
    (a NaN x is not <= threshold: it stays NaN and passes its gradient, as in PyTorch)."""

    double_backward = "operators"      # backward: gy times a saved mask

    def forward(ctx, x, threshold, value):
        xp = get_array_module(x)
        keep = ~(x <= threshold)        # not x > threshold: NaN is kept
        ctx.save_for_backward(keep)
        return xp.where(keep, x, x.dtype.type(value))

    def backward(ctx, gy):
        keep, = ctx.saved_tensors
        return gy * keep


class Shrink(Function):
    """Hardshrink: y = 0 where |x| <= lambd, else x.
    Softshrink: y = 0 where |x| <= lambd, else x - lambd sign(x) (shifted toward 0 by lambd).
    Both: dy/dx = 0 where |x| <= lambd, else 1. A NaN x stays NaN and passes its gradient, as
    PyTorch's formula (its vectorised CPU loop, for tensors of 8 or more entries, gives 0 there)."""

    double_backward = "operators"      # backward: gy times a saved mask

    def forward(ctx, x, lambd, soft):
        xp = get_array_module(x)
        outside = ~(xp.abs(x) <= lambd)     # not |x| > lambd: NaN is outside
        ctx.save_for_backward(outside)
        y = x - lambd * xp.sign(x) if soft else x
        return xp.where(outside, y, 0).astype(x.dtype, copy=False)

    def backward(ctx, gy):
        outside, = ctx.saved_tensors
        return gy * outside


class PReLU(Function):
    """y = x where x > 0, else a * x, with a learnable slope a per channel (dim 1 of
    (N, C, ...)) or one shared slope;
    dL/dx = gy where x > 0, else a * gy;  dL/da_c = sum over channel c of gy * x where x <= 0."""

    double_backward = "composite"

    @staticmethod
    def _per_channel(x, a):
        """a shaped to broadcast along x's channels (dim 1), or as one shared slope."""
        shape = [1] * x.ndim
        if len(a.shape) and a.shape[0] > 1:
            shape[1] = a.shape[0]
        return a.reshape(tuple(shape))

    def forward(ctx, x, a):
        xp = get_array_module(x)
        a_b = PReLU._per_channel(x, a)
        positive = x > 0
        ctx.save_for_backward(x, a_b, positive)
        ctx.a_shape = a.shape
        return xp.where(positive, x, a_b * x)

    def composite(ctx, x, a):
        p = constant(x.array > 0, x)
        return x * p + PReLU._per_channel(x, a) * x * (1 - p)

    def backward(ctx, gy):
        x, a_b, positive = ctx.saved_tensors
        xp = get_array_module(gy)
        gx = xp.where(positive, gy, a_b * gy) if ctx.needs_input_grad[0] else None
        ga = None
        if ctx.needs_input_grad[1]:
            per_elem = xp.where(positive, 0, gy * x)
            axes = tuple(k for k in range(x.ndim) if a_b.shape[k] == 1)
            ga = per_elem.sum(axis=axes).reshape(ctx.a_shape)
        return gx, ga


class RReLU(Function):
    """Randomized leaky ReLU (Xu et al. 2015): y = x where x > 0, else a x, with a slope
    a ~ U(lower, upper) drawn per element in training and a = (lower + upper) / 2 in
    evaluation;  dy/dx = 1 where x > 0, else the same a (saved from the forward)."""

    double_backward = "operators"      # backward: gy times a saved mask

    def forward(ctx, x, lower, upper, training):
        xp = get_array_module(x)
        if training:
            from .dropout import _uniform       # the seeded draw dropout uses (td.manual_seed)
            a = lower + (upper - lower) * _uniform(xp, x.shape, x.dtype)
        else:
            a = (lower + upper) / 2
        slope = xp.where(x > 0, 1, a).astype(x.dtype, copy=False)
        ctx.save_for_backward(slope)
        return x * slope

    def backward(ctx, gy):
        slope, = ctx.saved_tensors
        return gy * slope


class GLU(Function):
    """Gated linear unit: split x in halves a, b along ``dim``; y = a * sigmoid(b);
    dL/da = gy * sigmoid(b),  dL/db = gy * a * sigmoid(b) * (1 - sigmoid(b))."""

    double_backward = "composite"

    def forward(ctx, x, dim):
        xp = get_array_module(x)
        a, b = xp.split(x, 2, axis=dim)
        s = _stable_sigmoid(b)
        ctx.save_for_backward(a, s)
        ctx.dim = dim
        return a * s

    def composite(ctx, x, dim):
        half = x.shape[dim] // 2
        a, b = x.split(half, dim)
        return a * b.sigmoid()

    def backward(ctx, gy):
        a, s = ctx.saved_tensors
        xp = get_array_module(gy)
        return xp.concatenate([gy * s, gy * a * s * (1 - s)], axis=ctx.dim)


# ---------------------------------------------------------------- along a dimension
def _minus_max(x, dim):
    """x - max along ``dim``, the shift that keeps exp from overflowing (an empty x stays empty)."""
    return x - x.max(axis=dim, keepdims=True) if x.size else x


class Softmax(Function):
    """y_i = exp(x_i) / sum_j exp(x_j) along ``dim``.

    Forward subtracts m = max_j x_j first: exp(x_i - m) / sum_j exp(x_j - m) is the
    same value but never overflows (logits of 1e3 would give inf/inf = nan).

    Backward: dy_i/dx_k = y_i (delta_ik - y_k), so
    dL/dx_k = sum_i gy_i y_i (delta_ik - y_k) = y_k (gy_k - sum_i gy_i y_i).
    """

    double_backward = "operators"      # backward reads only its output y

    def forward(ctx, x, dim):
        xp = get_array_module(x)
        e = xp.exp(_minus_max(x, dim))
        y = e / e.sum(axis=dim, keepdims=True)
        ctx.save_for_backward(y)
        ctx.dim = dim
        return y

    def backward(ctx, gy):
        y, = ctx.saved_tensors
        return y * (gy - sum_kept(gy * y, ctx.dim))


class LogSoftmax(Function):
    """y_i = x_i - log sum_j exp(x_j) along ``dim``.

    Forward: with m = max_j x_j, log sum_j exp(x_j) = m + log sum_j exp(x_j - m); the
    largest term of the sum is exp(0) = 1, so the log never sees 0 or inf.

    Backward: dy_i/dx_k = delta_ik - softmax_k, so
    dL/dx_k = gy_k - softmax_k * sum_i gy_i, with softmax = exp(y).
    """

    double_backward = "operators"      # backward reads only its output y

    def forward(ctx, x, dim):
        xp = get_array_module(x)
        shifted = _minus_max(x, dim)
        y = shifted - xp.log(xp.exp(shifted).sum(axis=dim, keepdims=True)) if x.size else shifted
        ctx.save_for_backward(y)
        ctx.dim = dim
        return y

    def backward(ctx, gy):
        y, = ctx.saved_tensors
        return gy - on_array_or_tensor("exp", y) * sum_kept(gy, ctx.dim)


def _along_dim(fn, x, dim, dtype, op):
    """Apply Softmax/LogSoftmax: check ``dim`` and cast to ``dtype`` first (as PyTorch)."""
    if dim is None:
        if x.ndim > 1:
            raise ValueError(f"{op}: dim must be given for a {x.ndim}-d input of shape {x.shape} "
                             f"(tinydl does not guess it as PyTorch's deprecated implicit dim does); "
                             f"for class scores of shape (N, C) use dim=1")
        dim = 0
    axis = _normalize_dim(dim, x.ndim, op)
    if dtype is not None:
        from .math import cast
        x = cast(x, dtype)
    # A 0-d input is one score: reducing over all axes (None) covers it.
    return fn.apply(x, dim=None if x.ndim == 0 else axis)


# ---------------------------------------------------------------- public functions
def relu(input, inplace=False):
    """max(x, 0); ``inplace=True`` overwrites the input (module docstring)."""
    return _apply_in_place(ReLU, input, inplace, "relu")


def relu6(input, inplace=False):
    return _apply_in_place(Hardtanh, input, inplace, "relu6", lo=0.0, hi=6.0)


def leaky_relu(input, negative_slope=0.01, inplace=False):
    return _apply_in_place(LeakyReLU, input, inplace, "leaky_relu", negative_slope=negative_slope)


def hardtanh(input, min_val=-1.0, max_val=1.0, inplace=False):
    if min_val > max_val:
        raise ValueError(f"hardtanh: min_val ({min_val}) cannot be greater than max_val ({max_val})")
    return _apply_in_place(Hardtanh, input, inplace, "hardtanh", lo=min_val, hi=max_val)


def elu(input, alpha=1.0, inplace=False):
    return _finish(ELU, input, inplace, "elu", alpha=alpha)


# The SELU constants of Klambauer et al. (2017), as PyTorch uses them.
_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def selu(input, inplace=False):
    """scale * elu(x, alpha) with the self-normalising constants (pair with alpha_dropout)."""
    return _finish(ELU, input, inplace, "selu", alpha=_SELU_ALPHA, scale=_SELU_SCALE)


def sigmoid(input):
    return Sigmoid.apply(floating(input))


def logsigmoid(input):
    return LogSigmoid.apply(floating(input))


def tanh(input):
    return Tanh.apply(floating(input))


def silu(input, inplace=False):
    return _finish(SiLU, input, inplace, "silu")


def gelu(input, approximate="none"):
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return GELU.apply(input, approximate=approximate)


def softplus(input, beta=1.0, threshold=20.0):
    return Softplus.apply(input, beta=beta, threshold=threshold)


def celu(input, alpha=1.0, inplace=False):
    """max(0, x) + min(0, alpha (exp(x / alpha) - 1)): ELU whose slope stays 1 at 0 for any alpha."""
    if alpha == 0:
        raise ValueError("celu: alpha must not be 0 (it divides the input)")
    return _finish(ELU, input, inplace, "celu", alpha=alpha, input_scale=1.0 / alpha)


def mish(input, inplace=False):
    return _finish(Mish, input, inplace, "mish")


def hardswish(input, inplace=False):
    return _finish(Hardswish, input, inplace, "hardswish")


def hardsigmoid(input, inplace=False):
    return _finish(Hardsigmoid, input, inplace, "hardsigmoid")


def softsign(input):
    return Softsign.apply(input)


def tanhshrink(input):
    return Tanhshrink.apply(input)


def threshold(input, threshold, value, inplace=False):
    return _finish(Threshold, input, inplace, "threshold", threshold=threshold, value=value)


def hardshrink(input, lambd=0.5):
    return Shrink.apply(input, lambd=lambd, soft=False)


def softshrink(input, lambd=0.5):
    if lambd < 0:
        raise ValueError(f"softshrink: lambd must be >= 0, got {lambd}")
    return Shrink.apply(input, lambd=lambd, soft=True)


def prelu(input, weight):
    """Leaky ReLU with learnable slopes ``weight``: one per channel (dim 1) or a single
    shared one (the only choice for inputs of fewer than 2 dims, as PyTorch)."""
    channels = 1 if input.ndim < 2 else input.shape[1]
    if weight.ndim > 1 or weight.numel() not in (1, channels):
        raise ValueError(f"prelu: weight must hold 1 slope or one per channel ({channels}) for an "
                         f"input of shape {input.shape}, got weight of shape {weight.shape}")
    return PReLU.apply(input, weight)


def rrelu(input, lower=1.0 / 8, upper=1.0 / 3, training=False, inplace=False):
    """Leaky ReLU with a random slope in [lower, upper] per element while ``training``."""
    if not 0 <= lower <= upper:
        raise ValueError(f"rrelu: expected 0 <= lower <= upper, got lower={lower}, upper={upper}")
    return _finish(RReLU, input, inplace, "rrelu", lower=lower, upper=upper, training=bool(training))


def glu(input, dim=-1):
    """First half of ``input`` along ``dim`` gated by the sigmoid of the second half."""
    d = _normalize_dim(dim, input.ndim, "glu")
    if input.ndim == 0 or input.shape[d] % 2:
        raise ValueError(f"glu: halving dimension {dim} needs an even size, got input of shape {input.shape}")
    return GLU.apply(input, dim=d)


def softmax(input, dim=None, _stacklevel=3, dtype=None):
    """Softmax along ``dim``. Unlike PyTorch, ``dim`` may be omitted only for 0-d and
    1-d inputs: PyTorch's implicit choice for other ranks is deprecated and a
    common source of silent bugs."""
    return _along_dim(Softmax, input, dim, dtype, "softmax")


def softmin(input, dim=None, _stacklevel=3, dtype=None):
    """softmax(-x) along ``dim``: the smallest entries get the most weight."""
    return _along_dim(Softmax, -input, dim, dtype, "softmin")


def log_softmax(input, dim=None, _stacklevel=3, dtype=None):
    """Log-softmax along ``dim`` (``dim`` required for inputs of 2 or more dimensions,
    see softmax)."""
    return _along_dim(LogSoftmax, input, dim, dtype, "log_softmax")


# ---------------------------------------------------------------- in-place forms (PyTorch's F.relu_ ...)
# Each is its op with inplace=True, so it goes through the one in-place path above
# (``_apply_in_place`` / ``_finish``, i.e. ops/inplace.py): the input is changed and returned.
def relu_(input):
    return relu(input, inplace=True)


def elu_(input, alpha=1.0):
    return elu(input, alpha, inplace=True)


def celu_(input, alpha=1.0):
    return celu(input, alpha, inplace=True)


def selu_(input):
    return selu(input, inplace=True)


def leaky_relu_(input, negative_slope=0.01):
    return leaky_relu(input, negative_slope, inplace=True)


def hardtanh_(input, min_val=-1.0, max_val=1.0):
    return hardtanh(input, min_val, max_val, inplace=True)


def rrelu_(input, lower=1.0 / 8, upper=1.0 / 3, training=False):
    return rrelu(input, lower, upper, training, inplace=True)


_threshold = threshold       # threshold_'s argument of that name (PyTorch's) hides the op


def threshold_(input, threshold, value):
    return _threshold(input, threshold, value, inplace=True)
