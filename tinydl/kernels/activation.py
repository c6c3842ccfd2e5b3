r"""ReLU forward and backward as fused loops.

The math is in ``tinydl.ops.activation.ReLU``; here only the speed:

    forward   y  = max(x, 0)                    NaN stays NaN
    backward  gx = 0 where y <= 0, else gy      the mask read off the saved output

The NumPy reference is the plain array code. Its backward builds a boolean
mask (one extra pass over memory and one allocation) before multiplying; the
Numba version does both in one pass, split over the cores. ReLU runs after
every convolution of a CNN, so these two loops are a visible part of a
training step (about 4% of a ResNet-20 step on the CPU: 38 ms of ~840,
of which the fused loops save about 13 ms).

Bit-for-bit the same as the reference, special values included (the tests
check every case below):

* ``np.maximum(x, 0)`` returns +0.0 for x = -0.0 and x = -inf, and x itself
  (same NaN bits) for NaN: the kernel returns x where ``x > 0`` or x is NaN,
  else 0.
* ``where(y <= 0, 0, gy)`` is a select, as PyTorch's threshold_backward: where the
  mask is off it gives +0.0 whatever gy is (a NaN or inf gy too: 0 * inf would be
  NaN), and a NaN y (from a NaN x) passes gy on.

Dispatch: CuPy arrays, dtypes other than float32/float64 and non-C-contiguous
arrays (views, transposes) take the reference. Everything else takes Numba,
unless ``TINYDL_NO_NUMBA=1``: on one thread below half a million elements (see
``_dispatch.PARALLEL_MIN_SIZE``), on all cores above. One thread beats NumPy at
every size: 4K / 64K / 262K / 1M elements forward 1.1 / 7 / 29 / 126 us against
3 / 37 / 130 / 575 us for ``np.maximum`` (its NaN-propagating loop is slow),
backward 1.5 / 12 / 47 / 196 us against 5 / 32 / 105 / 466 us.
"""
import numpy as np

from ..backend import get_array_module, is_cupy_array
from ._dispatch import for_this_thread, njit, prange, use_numba

__all__ = [
    "relu_forward",
    "relu_backward",
    "relu_forward_reference",
    "relu_backward_reference",
    "relu_forward_numba",
    "relu_backward_numba",
]


# --------------------------------------------------------------------------- reference (NumPy / CuPy)
def relu_forward_reference(x):
    """``max(x, 0)``, elementwise; NaN stays NaN (as in PyTorch)."""
    return get_array_module(x).maximum(x, 0)


def relu_backward_reference(gy, y):
    """``where(y <= 0, 0, gy)``: the gradient passes where the output is positive (or NaN)."""
    return get_array_module(gy).where(y <= 0, gy.dtype.type(0), gy)


# --------------------------------------------------------------------------- Numba
# Flat arrays indexed with an unsigned counter: a signed index would add a
# negative-index check to every access and keep LLVM from vectorising (see the
# notes in kernels/im2col.py).
@njit(parallel=True, cache=True)
def _relu_forward_kernel(x, y):
    for i in prange(np.uint64(x.size)):
        v = x[i]
        # v != v is the NaN test; -0.0 and -inf fall to 0 (+0.0), like np.maximum.
        y[i] = v if (v > 0 or v != v) else 0


@njit(parallel=True, cache=True)
def _relu_backward_kernel(gy, y, gx):
    zero = gy.dtype.type(0)
    for i in prange(np.uint64(gy.size)):
        gx[i] = zero if y[i] <= 0 else gy[i]      # a select: +0.0 even for an inf or NaN gy


def relu_forward_numba(x):
    """Same result as :func:`relu_forward_reference`; ``x`` must be a C-contiguous
    float32/float64 NumPy array."""
    y = np.empty_like(x)
    for_this_thread(_relu_forward_kernel, x.size)(x.reshape(-1), y.reshape(-1))
    return y


def relu_backward_numba(gy, y):
    """Same result as :func:`relu_backward_reference`; ``gy`` and ``y`` must be
    C-contiguous NumPy arrays of one shape and one float32/float64 dtype."""
    gx = np.empty_like(gy)
    for_this_thread(_relu_backward_kernel, gy.size)(gy.reshape(-1), y.reshape(-1), gx.reshape(-1))
    return gx


# --------------------------------------------------------------------------- dispatch
# Below this many elements NumPy's one call costs less than a kernel call (256-1024
# elements: 1.0-1.4 us against 2.2-2.3 for the forward; a ResNet-20 at batch 1).
NUMBA_MIN_SIZE = 2048


def _numba_ok(*arrays):
    """All plain C-contiguous NumPy arrays of one shape, one compiled dtype and at least
    NUMBA_MIN_SIZE elements?"""
    a = arrays[0]
    if is_cupy_array(a) or a.size < NUMBA_MIN_SIZE or not use_numba(a.dtype):
        return False
    return all(b.flags.c_contiguous and b.dtype == a.dtype and b.shape == a.shape
               and not is_cupy_array(b) for b in arrays)


def relu_forward(x):
    """``max(x, 0)``: Numba on the CPU, the array code otherwise (see the module notes)."""
    if _numba_ok(x):
        return relu_forward_numba(x)
    return relu_forward_reference(x)


def relu_backward(gy, y):
    """``where(y <= 0, 0, gy)``: Numba on the CPU, the array code otherwise (see the module notes)."""
    if _numba_ok(gy, y):
        return relu_backward_numba(gy, y)
    return relu_backward_reference(gy, y)
