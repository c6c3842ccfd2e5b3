"""The explicit vectors of tinydl/kernels/simd.py, which the direct convolution's blocks
are made of: their width, loads and stores at any offset, a scalar in every lane, and a
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
    import llvmlite.binding as llvm

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
