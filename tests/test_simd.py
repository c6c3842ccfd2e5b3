"""The explicit vectors of tinydl/kernels/simd.py, which the direct convolution's blocks
and the Winograd route's output and gradient transforms are made of: their width, loads and
stores at any offset, a scalar in every lane, + - * and negation, interleaving, and a
multiply-add rounded once, in float32 and float64."""
import numpy as np
import pytest

from tinydl.kernels import _dispatch, simd

needs_numba = pytest.mark.skipif(not _dispatch.HAVE_NUMBA, reason="compiled vectors exist only with Numba")

DTYPES = [np.float32, np.float64]


def _kernels():
    from numba import njit

    @njit(cache=False)
    def width(a):
        return simd.lanes(a)

    @njit(cache=False)
    def copy_vector(src, i, dst, j):
        simd.store(dst, j, simd.load(src, i))

    @njit(cache=False)
    def multiply_add(s, x, z, out):
        """out[:lanes] = s * x[:lanes] + z[:lanes]"""
        simd.store(out, 0, simd.fma(simd.splat(s), simd.load(x, 0), simd.load(z, 0)))

    return width, copy_vector, multiply_add


@needs_numba
def test_a_vector_fills_this_cpus_registers():
    import os

    import llvmlite.binding as llvm

    if os.environ.get("NUMBA_CPU_FEATURES") or os.environ.get("NUMBA_CPU_NAME"):
        pytest.skip("Numba compiles for another CPU than this one here")

    avx512 = bool(llvm.get_host_cpu_features().get("avx512f"))
    assert simd.VECTOR_BYTES == (64 if avx512 else 32)
    width = _kernels()[0]
    for dtype in DTYPES:
        assert width(np.zeros(1, dtype)) == simd.VECTOR_BYTES // np.dtype(dtype).itemsize


@needs_numba
@pytest.mark.parametrize("dtype", DTYPES)
def test_load_and_store_move_one_vector_at_any_offset(dtype):
    _, copy_vector, _ = _kernels()
    n = simd.VECTOR_BYTES // np.dtype(dtype).itemsize
    src = np.arange(3 * n, dtype=dtype)
    for i, j in [(0, 0), (1, 5), (n - 1, 2), (2 * n, n + 3)]:
        dst = np.full(3 * n, -1, dtype=dtype)
        copy_vector(src, i, dst, j)
        expected = np.full(3 * n, -1, dtype=dtype)
        expected[j:j + n] = src[i:i + n]
        np.testing.assert_array_equal(dst, expected)     # those lanes, and nothing around them


@needs_numba
@pytest.mark.parametrize("dtype", DTYPES)
def test_lane_by_lane_arithmetic_and_interleaving(dtype):
    from numba import njit

    @njit(cache=False)
    def run(a, b, out):
        n = simd.lanes(a)
        x, y = simd.load(a, 0), simd.load(b, 0)
        simd.store(out, 0, (x + y) * x - y)
        simd.store(out, n, -x)
        simd.store(out, 6 * n, 0.1 * x - y * np.float32(2.5) + 1.0)   # a float: in every lane, as x's dtype
        low, high = simd.interleave(x, y)
        simd.store(out, 2 * n, low)
        simd.store(out, 3 * n, high)
        even, odd = simd.deinterleave(low, high)           # back to x and y
        simd.store(out, 4 * n, even)
        simd.store(out, 5 * n, odd)

    n = simd.VECTOR_BYTES // np.dtype(dtype).itemsize
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal(n).astype(dtype), rng.standard_normal(n).astype(dtype)
    out = np.zeros(7 * n, dtype)
    run(a, b, out)
    np.testing.assert_array_equal(out[:n], (a + b) * a - b)
    np.testing.assert_array_equal(out[6 * n:], dtype(0.1) * a - b * dtype(2.5) + dtype(1.0))
    np.testing.assert_array_equal(out[n:2 * n], -a)
    np.testing.assert_array_equal(out[2 * n:4 * n], np.stack([a, b], axis=1).reshape(-1))
    np.testing.assert_array_equal(out[4 * n:5 * n], a)
    np.testing.assert_array_equal(out[5 * n:6 * n], b)


@needs_numba
@pytest.mark.parametrize("dtype", DTYPES)
def test_fma_multiplies_a_splat_and_adds_with_one_rounding(dtype):
    _, _, multiply_add = _kernels()
    info = np.finfo(dtype)
    n = simd.VECTOR_BYTES // np.dtype(dtype).itemsize
    rng = np.random.default_rng(0)
    x, z = rng.standard_normal(n).astype(dtype), rng.standard_normal(n).astype(dtype)
    # Lane 0: (1 + e)^2 - 1 = 2e + e^2 exactly; rounded twice, (1 + e)^2 loses its e^2.
    e = dtype(2.0) ** ((info.nmant + 2) // 2)          # 1/e^2 at most half of 1.0's ulp
    x[0], z[0] = 1 / e + 1, -1
    s = 1 / e + 1
    out = np.zeros(n, dtype=dtype)
    multiply_add(dtype(s), x, z, out)
    assert out[0] == 2 / e + 1 / e ** 2 != dtype(s) * x[0] + z[0]
    scale = np.abs(s * x[1:]) + np.abs(z[1:])                  # the error bound of a sum of two terms
    assert np.all(np.abs(out[1:] - (s * x[1:] + z[1:])) <= 2 * info.eps * scale)
    assert out.dtype == dtype


def test_without_numba_the_same_names_are_numpy(monkeypatch):
    """Where Numba is missing, ``njit`` leaves kernels as Python: the vector names must then work on arrays."""
    import importlib.util

    monkeypatch.setattr(_dispatch, "HAVE_NUMBA", False)
    spec = importlib.util.spec_from_file_location("tinydl.kernels._simd_plain", simd.__file__)
    plain = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plain)
    a = np.arange(40, dtype=np.float32)
    n = plain.lanes(a)
    assert n == plain.VECTOR_BYTES // 4
    v = plain.fma(plain.splat(np.float32(2)), plain.load(a, 3), plain.load(a, 0))
    plain.store(a, 20, v)
    np.testing.assert_array_equal(a[20:20 + n], 2 * np.arange(3, 3 + n) + np.arange(n))
    assert v.dtype == np.float32
    low, high = plain.interleave(np.arange(n), -np.arange(n))
    np.testing.assert_array_equal(np.concatenate([low, high]), np.stack([np.arange(n), -np.arange(n)], 1).reshape(-1))
    even, odd = plain.deinterleave(low, high)
    np.testing.assert_array_equal(even, np.arange(n))
    np.testing.assert_array_equal(odd, -np.arange(n))


_RUN_ON_AVX2 = """
import numpy as np, torch
from tinydl.kernels import simd
from tinydl.kernels.direct_conv import conv2d_direct, conv2d_direct_weight_grad
assert simd.VECTOR_BYTES == 32, simd.VECTOR_BYTES
rng = np.random.default_rng(0)
worst = 0.0
for dtype in (np.float32, np.float64):
    for (n, c, h, o, k, pad, groups, stride) in [(3, 6, 14, 16, 5, 0, 1, 1), (2, 4, 9, 6, 3, 1, 2, 2), (2, 3, 11, 3, 3, 1, 3, 1)]:
        x = rng.standard_normal((n, c, h, h)).astype(dtype)
        w = rng.standard_normal((o, c // groups, k, k)).astype(dtype)
        tx, tw = torch.tensor(x, requires_grad=False), torch.tensor(w, requires_grad=True)
        ty = torch.nn.functional.conv2d(tx, tw, padding=pad, groups=groups, stride=stride)
        g = rng.standard_normal(ty.shape).astype(dtype)
        ty.backward(torch.tensor(g))
        y = conv2d_direct(x, w, None, (pad,) * 4, (1, 1), groups, (stride, stride))
        gw = conv2d_direct_weight_grad(x, g, (k, k), (pad,) * 4, (1, 1), groups, (stride, stride))
        scale = 1e-4 if dtype == np.float32 else 1e-10
        worst = max(worst, np.abs(y - ty.detach().numpy()).max() / scale, np.abs(gw - tw.grad.numpy()).max() / scale)
from tinydl.kernels import conv as routes
for dtype in (np.float32, np.float64):                  # the Winograd routes' vector transforms
    for route in (routes.Winograd, routes.WinogradF4):
        for (n, c, h, w_) in [(3, 32, 9, 13), (2, 32, 16, 16)]:
            x = rng.standard_normal((n, c, h, w_)).astype(dtype)
            w = rng.standard_normal((c, c, 3, 3)).astype(dtype)
            tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
            ty = torch.nn.functional.conv2d(tx, tw, padding=1)
            g = rng.standard_normal(ty.shape).astype(dtype)
            ty.backward(torch.tensor(g))
            geometry = ((3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1)
            y, _ = route.forward(x, w, None, geometry, (True, True))
            gx, gw = route.backward(x, w, None, g, geometry, (True, True))
            scale = 1e-3 if dtype == np.float32 else 1e-10
            for ours, theirs in ((y, ty), (gx, tx.grad), (gw, tw.grad)):
                worst = max(worst, np.abs(ours - theirs.detach().numpy()).max() / scale)
print("worst error in tolerances", worst)
"""


@needs_numba
def test_vector_kernels_on_avx2s_32_byte_vectors_match_torch(tmp_path):
    """A CPU without AVX-512 gets 32-byte vectors: the direct kernels and the Winograd route
    compiled for Haswell (run here: this CPU has AVX2) against PyTorch, float32 and float64,
    groups and strides, tile counts that fill no vector."""
    import os
    import subprocess
    import sys

    import llvmlite.binding as llvm

    if not llvm.get_host_cpu_features().get("avx2"):
        pytest.skip("no AVX2 on this CPU")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_CPU")}
    env.update(NUMBA_CPU_NAME="haswell", NUMBA_CPU_FEATURES="+avx,+avx2,+fma,+f16c,+popcnt,+sse4.2,+bmi,+bmi2",
               NUMBA_CACHE_DIR=str(tmp_path), PYTHONPATH=root)         # compiled afresh: see kernels/simd.py
    done = subprocess.run([sys.executable, "-c", _RUN_ON_AVX2], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert float(done.stdout.split()[-1]) < 1
