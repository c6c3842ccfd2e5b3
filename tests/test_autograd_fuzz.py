"""The graph walk on random programs, against PyTorch: hypothesis draws a short program of
ops over a pool of tensors (two leaves that require grad, a constant, and every result so
far), so tensors feed several ops, some ops save them and some keep only stand-ins, views
and multi-output ops mix in. Then one of:

- ``retain``: every result calls retain_grad(), and backward runs twice (retain_graph):
  each .grad, leaves and results, must be PyTorch's;
- ``grad``: td.autograd.grad of the loss with respect to results and leaves (one listed
  twice, allow_unused) must be PyTorch's, None where PyTorch's is None;
- ``penalty``: the gradients with respect to two results and a leaf, with create_graph,
  are squared, weighted at random and summed, and that is differentiated again (a
  gradient penalty).

float64 throughout. CI runs a fixed, derandomized set of draws; ``TINYDL_FUZZ_PROFILE=long``
runs many more random ones::

    TINYDL_FUZZ_PROFILE=long python -m pytest -q tests/test_autograd_fuzz.py
"""
import numpy as np
import torch

import tinydl as td

import pytest

pytest.importorskip("hypothesis")
from hypothesis import given, strategies as st  # noqa: E402
from _fuzz import FUZZ  # noqa: E402

KINDS = ("add", "mul", "exp", "tanh", "relu", "sum", "matmul", "split", "max", "transpose", "slice", "reshape",
         "constant")


def _step(lib, kind, a, b, w, c):
    """One op of the program on tensors a, b of the pool (w: the (6, 6) leaf, c: a constant)."""
    if kind in ("add", "mul") and a.shape != b.shape:
        b = a                                           # x * x: one tensor given twice
    if kind == "add":
        return a + b
    if kind == "mul":
        return a * b
    if kind == "exp":
        return (a * 0.1).exp()
    if kind == "tanh":
        return a.tanh()
    if kind == "relu":
        return lib.nn.functional.relu(a - 0.2)
    if kind == "sum":                                   # a stand-in for a, and broadcasting back
        return a.sum(0, keepdim=True) * 0.5 + a
    if kind == "matmul":
        return (a @ w) * 0.3
    if kind == "split":                                 # outputs of one op, in another order
        p, q = lib.split(a, 3, dim=1)
        return lib.cat([q * 2.0, p], 1)
    if kind == "max":                                   # values and (non-differentiable) indices
        values, _ = a.max(0)
        return a + values
    if kind == "transpose":                             # views
        return a.transpose(0, 1).transpose(0, 1) * 1.0
    if kind == "slice":
        return lib.cat([a[:2] * 3.0, a[2:]], 0)
    if kind == "reshape":
        return a.reshape(6, 4).reshape(4, 6) - b
    return a * c                                        # "constant": the constant feeds the op


def _program(lib, seed, steps):
    rng = np.random.default_rng(seed)
    x = lib.tensor(rng.standard_normal((4, 6)), requires_grad=True)
    w = lib.tensor(rng.standard_normal((6, 6)), requires_grad=True)
    c = lib.tensor(rng.standard_normal((4, 6)))
    pool, made = [x, w[:4]], []
    for kind, i, j in steps:
        out = _step(lib, kind, pool[i % len(pool)], pool[j % len(pool)], w, c)
        pool.append(out)
        made.append(out)
    # random upstream gradients, not .sum()'s ones (they would hide a gradient off by a constant per row)
    ups = [lib.tensor(rng.standard_normal((4, 6))) for _ in range(4)]
    loss = sum((t * t * u).sum() for t, u in zip(pool[-3:], ups)) + (pool[-1] * ups[3]).sum()
    return x, w, made, loss, lib.tensor(rng.standard_normal(()))


def _run(lib, seed, steps, mode):
    x, w, made, loss, scale = _program(lib, seed, steps)
    if mode == "retain":
        for t in made:
            t.retain_grad()
        loss.backward(retain_graph=True)
        (loss * scale).backward()
        return [x.grad, w.grad] + [t.grad for t in made]
    if mode == "grad":
        return list(lib.autograd.grad(loss * scale, made + [x, w] + made[:1], allow_unused=True))
    grads = lib.autograd.grad(loss, made[-2:] + [x], create_graph=True, allow_unused=True)
    weights = [lib.tensor(np.random.default_rng(seed + 1).standard_normal(g.shape)) if g is not None else None
               for g in grads]
    penalty = sum((g * g * v).sum() for g, v in zip(grads, weights) if g is not None) * scale
    return list(grads) + list(lib.autograd.grad(penalty, [x, w], allow_unused=True))


@FUZZ
@given(seed=st.integers(0, 2 ** 16), mode=st.sampled_from(("retain", "grad", "penalty")),
       steps=st.lists(st.tuples(st.sampled_from(KINDS), st.integers(0, 99), st.integers(0, 99)),
                      min_size=1, max_size=10))
def test_random_programs_give_torchs_gradients(seed, mode, steps):
    ours, theirs = _run(td, seed, steps, mode), _run(torch, seed, steps, mode)
    assert len(ours) == len(theirs)
    for k, (o, t) in enumerate(zip(ours, theirs)):
        assert (o is None) == (t is None), (k, o is None, t is None)
        if o is not None:
            np.testing.assert_allclose(o.detach().numpy(), t.detach().numpy(), rtol=1e-10, atol=1e-10,
                                       err_msg=f"gradient {k}")
