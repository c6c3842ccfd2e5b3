r"""Softmax cross-entropy on rows of logits, forward and backward each in one loop (CPU).

The math is in ``tinydl.ops.loss.CrossEntropy``; here only the speed. Its array code
takes about twenty NumPy calls a direction (the log-softmax, the targets' mask, weights
and gather, the one-hot of the backward), 1-2 us each: on a classifier's (64, 10)
logits, 43 us forward and 40 backward against PyTorch's 10 and 30 (benchmarks/
bench_alone.py's LeNet-5 and batch-1 rows run one a step). These loops do a row at a time:

    forward   m = max_c x[n, c];  s[n] = x[n] - (m + log sum_c exp(x[n, c] - m))
              loss[n] = -w_t[n] s[n, t_n],   w_t[n] = w[t_n] (1 without weights), 0 where
              t_n = ignore_index (and the target saved as 0 there, as the array code does)
    backward  dL/dx[n, c] = g[n] w_t[n] (exp(s[n, c]) - [c = t_n])

where g[n] = dL/dl_n. The route takes (N, C) logits with class-index targets and no label
smoothing, as a classifier's training step has them (``cross_entropy_route``); the sums run
in another order than NumPy's, so results agree with the array code to rounding. NaN and
infinite logits give what the array code gives (a NaN row: its max skips the NaN, which
then spreads through the sum). Out-of-range targets have raised before (the op's checks).
"""
import numpy as np

from .. import backends
from ..backend import get_array_module
from ._dispatch import njit, use_numba

__all__ = ["cross_entropy_route", "cross_entropy_forward_numba", "cross_entropy_backward_numba"]


def cross_entropy_route(x, weight, label_smoothing, probabilities):
    """'numba' where the fused loops apply (and no one forced the array code), else
    'reference'; told to ``td.backends.record_routes`` as the op 'cross_entropy'."""
    fits = (x.ndim == 2 and x.shape[1] > 0 and not probabilities and label_smoothing == 0 and get_array_module(x) is np
            and use_numba(x.dtype) and backends.forced_route("cross_entropy") != "reference"
            and (weight is None or weight.dtype == x.dtype))
    route = "numba" if fits else "reference"
    backends.note_route("cross_entropy", route)
    return route


@njit(cache=True)
def _forward_rows(x, target, weight, ignore_index, s, loss, safe, valid, w_t):
    n_rows, n_classes = x.shape
    zero = x.dtype.type(0)                         # a literal 0 would make the sum float64
    for n in range(n_rows):
        row, out = x[n], s[n]
        m = row[0]
        for c in range(1, n_classes):
            if row[c] > m:
                m = row[c]
        total = zero
        for c in range(n_classes):
            total += np.exp(row[c] - m)
        lse = m + np.log(total)
        for c in range(n_classes):
            out[c] = row[c] - lse
        t = target[n]
        valid[n] = t != ignore_index
        safe[n] = t if valid[n] else 0
        w_t[n] = (weight[safe[n]] if weight.size else 1) if valid[n] else 0
        loss[n] = -w_t[n] * out[safe[n]] if valid[n] else 0


def cross_entropy_forward_numba(x, target, weight, ignore_index):
    """(s, loss, safe, valid, w_t) of the module docstring for logits x (N, C) and class
    indices ``target`` (N,): the log-softmax, the per-sample losses, the targets with
    ignored ones as 0, the not-ignored mask and each sample's weight."""
    n = x.shape[0]
    s, loss, w_t = np.empty_like(x), np.empty(n, x.dtype), np.empty(n, x.dtype)
    safe, valid = np.empty(n, np.int64), np.empty(n, np.bool_)
    weight = np.empty(0, x.dtype) if weight is None else np.ascontiguousarray(weight)
    _forward_rows(np.ascontiguousarray(x), np.ascontiguousarray(target, dtype=np.int64), weight,
                  ignore_index, s, loss, safe, valid, w_t)
    return s, loss, safe, valid, w_t


@njit(cache=True)
def _backward_rows(s, safe, w_t, g, gx):
    n_rows, n_classes = s.shape
    for n in range(n_rows):
        scale = g[n] * w_t[n]
        for c in range(n_classes):
            gx[n, c] = scale * np.exp(s[n, c])
        gx[n, safe[n]] -= scale
        # A row whose weight is 0 (an ignored target) gets scale * exp(s): 0, or NaN where s
        # is, as in the array code's g * (exp(s) * 0 - 0).


def cross_entropy_backward_numba(s, safe, w_t, g):
    """dL/dx (N, C) from the forward's s, safe targets and weights, and g = dL/dl_n (N,)."""
    gx = np.empty_like(s)
    _backward_rows(s, safe, w_t, np.ascontiguousarray(g, dtype=s.dtype), gx)
    return gx
