"""Uniform random numbers on the GPU from a counter-based generator, Philox4x64-10 (Salmon et
al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011): dropout's masks on 'cuda'.

Why not CuPy's generator: it calls cuRAND, which CuPy refuses while a CUDA graph captures,
and its state lives on the host, so a replayed graph would draw the same mask every step.
Philox needs no state but a key and a counter: element i of a draw is word i % 4 of the
block ``Philox(key=seed, counter=drawn + i // 4 + 1)``, and a second kernel then adds the
blocks used to ``drawn``. Both sit in a (2,) uint64 device array, [seed, drawn]
(``backend.philox_state``), so each replay of a graph reads the counter the last one left.

The words are NumPy's: ``numpy.random.Philox(key=seed, counter=drawn).random_raw(n)``
gives the same n words (tests/test_graphs.py compiles this source as C++ and checks).
A word r becomes a float in [0, 1) as NumPy's doubles do, (r >> 11) * 2^-53, and in
float32 from its top 24 bits, (r >> 40) * 2^-24.
"""
import numpy as np

from ..backend import cupy_module, philox_state

__all__ = ["uniform", "PHILOX_SOURCE"]

#: the generator in CUDA C (device functions, the ElementwiseKernel's preamble)
PHILOX_SOURCE = r"""
__device__ void tinydl_philox_round(unsigned long long* c, const unsigned long long* k) {
    const unsigned long long m0 = 0xD2E7470EE14C6C93ULL, m1 = 0xCA5A826395121157ULL;
    const unsigned long long hi0 = __umul64hi(m0, c[0]), lo0 = m0 * c[0];
    const unsigned long long hi1 = __umul64hi(m1, c[2]), lo1 = m1 * c[2];
    const unsigned long long c1 = c[1], c3 = c[3];
    c[0] = hi1 ^ c1 ^ k[0];
    c[1] = lo1;
    c[2] = hi0 ^ c3 ^ k[1];
    c[3] = lo0;
}

// word i of the stream keyed by `seed` after `drawn` blocks of four words
__device__ unsigned long long tinydl_philox_word(unsigned long long seed, unsigned long long drawn,
                                                 long long i) {
    const unsigned long long block = drawn + (unsigned long long)(i >> 2) + 1ULL;
    unsigned long long c[4] = {block, block < drawn ? 1ULL : 0ULL, 0ULL, 0ULL};  // carry past 2^64
    unsigned long long k[2] = {seed, 0ULL};
    for (int round = 0; round < 10; ++round) {
        if (round > 0) {
            k[0] += 0x9E3779B97F4A7C15ULL;
            k[1] += 0xBB67AE8584CAA73BULL;
        }
        tinydl_philox_round(c, k);
    }
    return c[i & 3];
}

// 2^-53 and 2^-24, written out (exact)
__device__ double tinydl_uniform_double(unsigned long long r) { return (double)(r >> 11) * 1.1102230246251565e-16; }
__device__ float tinydl_uniform_float(unsigned long long r) { return (float)(r >> 40) * 5.9604644775390625e-08f; }
"""

_kernel = None


def _uniform_kernel():
    global _kernel
    if _kernel is None:
        _kernel = cupy_module().ElementwiseKernel(
            "raw uint64 state", "T u",
            "const unsigned long long r = tinydl_philox_word(state[0], state[1], i);"
            "u = sizeof(T) == 8 ? (T)tinydl_uniform_double(r) : (T)tinydl_uniform_float(r);",
            "tinydl_philox_uniform", preamble=PHILOX_SOURCE)
    return _kernel


def uniform(shape, dtype):
    """Uniform [0, 1) samples of ``shape`` in ``dtype`` (float32 or float64) on the current GPU,
    from its Philox generator; the counter moves on, on the device."""
    cupy = cupy_module()
    state = philox_state(cupy)
    out = cupy.empty(shape, dtype=dtype)
    if out.size:
        _uniform_kernel()(state, out)
        drawn = state[1:]
        drawn += np.uint64(-(-out.size // 4))           # the blocks this draw used (in place)
    return out
