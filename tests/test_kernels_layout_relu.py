"""ReLU kernels (tinydl/kernels/activation.py): the Numba loops give the reference's bits.

(The file name also covers the conv layout copies; their Numba kernel was
measured slower than NumPy inside a ResNet-20 step and not kept.)
"""
import numpy as np
import pytest
import torch

import tinydl as td
from tinydl import kernels as K
from tinydl.kernels import activation as act_mod

DTYPES = [np.float32, np.float64]
SPECIAL = [0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, 1e-45, -1e-45, 1.5, -2.5]


def bits(a):
    return a.dtype, a.shape, a.tobytes()


def special_array(dtype, shape, seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(shape).astype(dtype)
    flat = a.reshape(-1)
    picks = rng.integers(0, flat.size, size=flat.size // 3)
    flat[picks] = np.array(SPECIAL, dtype=dtype)[rng.integers(0, len(SPECIAL), size=picks.size)]
    return a


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(), (1,), (7,), (3, 5, 7), (2, 3, 17, 13), (129, 33)])
def test_relu_numba_matches_reference_bitwise(dtype, shape):
    x = special_array(dtype, shape, 0)
    gy = special_array(dtype, shape, 1)
    y = K.relu_forward_reference(x)
    assert bits(K.relu_forward_numba(x)) == bits(y)
    with np.errstate(invalid="ignore"):                   # 0 * inf in the reference
        assert bits(K.relu_backward_numba(gy, y)) == bits(K.relu_backward_reference(gy, y))


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_special_values(dtype):
    x = np.array([-0.0, 0.0, -np.inf, np.inf, np.nan, -np.nan, -1.0, -2.0], dtype=dtype)
    y = K.relu_forward_numba(x)
    # np.maximum(-0.0, 0) is +0.0; NaN keeps its bits (sign included)
    assert not np.signbit(y[0]) and y[0] == 0
    assert y[2] == 0 and not np.signbit(y[2]) and y[3] == np.inf
    assert bits(y[4:6]) == bits(x[4:6])
    gy = np.array([-1.0, -1.0, 3.0, 3.0, 5.0, 5.0, np.nan, np.inf], dtype=dtype)
    gx = K.relu_backward_numba(gy, y)
    # a select, as PyTorch's: +0.0 where y <= 0 whatever gy is (no 0 * inf = NaN), and a
    # NaN y (from a NaN x) passes gy on
    assert bits(gx) == bits(K.relu_backward_reference(gy, y))
    np.testing.assert_array_equal(gx, [0, 0, 0, 3, 5, 5, 0, 0])
    assert not np.signbit(gx).any()
    import torch
    tx = torch.tensor(x, requires_grad=True)
    torch.relu(tx).backward(torch.tensor(gy))
    assert bits(gx) == bits(tx.grad.numpy())


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_dispatch(monkeypatch, dtype):
    calls = []
    monkeypatch.setattr(act_mod, "relu_forward_numba", lambda x: calls.append("numba"))
    monkeypatch.setattr(act_mod, "relu_forward_reference", lambda x: calls.append("ref"))
    x = np.ones((64, 40), dtype=dtype)
    with td.backends.reference(False):
        act_mod.relu_forward(x)                     # contiguous float, large enough: Numba
        act_mod.relu_forward(x.T)                   # not C-contiguous: reference
        act_mod.relu_forward(np.ones(4096, np.int64))  # not a compiled dtype: reference
        act_mod.relu_forward(x[:4])                 # fewer than NUMBA_MIN_SIZE elements: NumPy's call
        act_mod.relu_forward(np.array(1.0, dtype))  # 0-d: the same
    with td.backends.reference():
        act_mod.relu_forward(x)
    assert calls == ["numba", "ref", "ref", "ref", "ref", "ref"]


def test_relu_backward_dispatch_mixed(monkeypatch):
    calls = []
    monkeypatch.setattr(act_mod, "relu_backward_numba", lambda gy, y: calls.append("numba"))
    monkeypatch.setattr(act_mod, "relu_backward_reference", lambda gy, y: calls.append("ref"))
    y = np.ones((64, 40), np.float32)
    with td.backends.reference(False):
        act_mod.relu_backward(np.ones((64, 40), np.float32), y)
        act_mod.relu_backward(np.ones((40, 64), np.float32).T, y)     # gy non-contiguous
        act_mod.relu_backward(np.ones((64, 40), np.float64), y)       # dtypes differ
    assert calls == ["numba", "ref", "ref"]


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_op_non_contiguous_and_dtype(monkeypatch, dtype):
    # through the op: a transposed input (reference path) and a contiguous one (Numba) agree with torch
    monkeypatch.setattr(act_mod, "NUMBA_MIN_SIZE", 0)          # Numba for the contiguous one, small as it is
    rng = np.random.default_rng(3)
    a = rng.standard_normal((6, 9)).astype(dtype)
    for arr in (a, a.T):
        x = td.tensor(arr, requires_grad=True)
        y = td.nn.functional.relu(x)
        g = rng.standard_normal(arr.shape).astype(dtype)
        y.backward(td.tensor(g))
        tx = torch.tensor(np.ascontiguousarray(arr), requires_grad=True)
        torch.relu(tx).backward(torch.tensor(g))
        assert y.detach().numpy().dtype == dtype and x.grad.numpy().dtype == dtype
        np.testing.assert_array_equal(y.detach().numpy(), torch.relu(tx).detach().numpy())
        np.testing.assert_array_equal(x.grad.numpy(), tx.grad.numpy())
