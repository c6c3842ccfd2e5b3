r"""Explicit SIMD vectors inside Numba kernels: a register-sized vector of floats.

Why
---
LLVM vectorises a loop over arrays, but it keeps the loop's running sums in the arrays:
every multiply-add then loads and stores its accumulator. A kernel that sums many
terms into a few outputs (a convolution: every tap into each output pixel) runs
fastest with its sums held in registers for the whole sum, the way oneDNN's
convolutions do. Numba has no vector type, and local scalars or small arrays are not
turned into vector registers (tried: a 16-float array per output, 1.4 ms against the
kernel below's 0.19 ms on LeNet-5's second convolution). So this module adds one: a
value of ``lanes(a)`` floats that lives in a register, with the few operations the
kernels need, each a line or two of LLVM IR:

    load(a, i)            a[i], a[i+1], ..., a[i + lanes(a) - 1]   (a: a 1-D contiguous array)
    store(a, i, v)        writes v there
    splat(x)              x in every lane
    fma(a, b, c)          a * b + c in each lane, rounded once (a fused multiply-add)
    u + v, u - v, u * v, -u    lane by lane (x * v, v + x...: a float x in every lane)
    interleave(u, v)      (u0, v0, u1, v1, ...) as two vectors; deinterleave(u, v) undoes it
    lanes(a)              how many of a's elements a vector holds: a constant

Used by the direct convolution (its sums in registers) and the Winograd routes' tile
transforms (a vector of tiles at a time: F(2x2, 3x3)'s output and gy transforms, all four
of F(4x4, 3x3)'s).

A vector is as wide as the CPU's widest registers: 64 bytes (16 float32, 8 float64)
with AVX-512, else 32 (AVX2's 8 float32). A kernel holding 12 of them (four outputs
times three vectors of pixels, kernels/direct_conv.py) then fits AVX2's 16 registers
as well as AVX-512's 32. Nothing checks bounds: the caller's arrays hold every lane.

In Numba code these compile to single instructions; without Numba (where ``njit``
leaves a kernel as Python) the same names are NumPy one-liners, so the kernels still
read and run as written, slowly.

Numba's disk cache knows a kernel by its own file's text: after changing this module,
delete the calling kernels' cached files (``__pycache__/*.nbi``, ``*.nbc``) or they
keep the old code.
"""
import operator

import numpy as np

from ._dispatch import HAVE_NUMBA

__all__ = ["VECTOR_BYTES", "load", "store", "splat", "fma", "interleave", "deinterleave", "lanes"]


def _vector_bytes():
    """64 where Numba compiles for AVX-512, else 32: the host's features, or those of
    ``NUMBA_CPU_FEATURES``; with only ``NUMBA_CPU_NAME`` set (say, 'generic' for a cache
    that travels), 32, which fits any x86-64 target's registers at least as well."""
    if not HAVE_NUMBA:
        return 32
    import llvmlite.binding as llvm
    import numba

    if numba.config.CPU_FEATURES:
        features = numba.config.CPU_FEATURES
    elif numba.config.CPU_NAME and numba.config.CPU_NAME != "host":
        features = ""
    else:
        features = llvm.get_host_cpu_features().flatten()
    return 64 if "+avx512f" in features.split(",") else 32


VECTOR_BYTES = _vector_bytes()

if HAVE_NUMBA:
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic, models, overload, register_model

    class Vector(types.Type):
        """Numba's type of a vector of ``count`` elements of ``dtype`` (a Numba float type)."""

        def __init__(self, dtype):
            self.dtype = dtype
            self.count = VECTOR_BYTES // (dtype.bitwidth // 8)
            super().__init__(name=f"Vector({dtype} x {self.count})")

    @register_model(Vector)
    class _VectorModel(models.PrimitiveModel):
        def __init__(self, dmm, fe_type):
            element = dmm.lookup(fe_type.dtype).get_value_type()
            super().__init__(dmm, fe_type, ir.VectorType(element, fe_type.count))

    _VECTORS = {}

    def _vector(dtype):
        """The one Vector type of ``dtype`` (Numba types compare by name, but one object is cheaper)."""
        if dtype not in _VECTORS:
            _VECTORS[dtype] = Vector(dtype)
        return _VECTORS[dtype]

    def _address(context, builder, array_type, array, index, index_type):
        """A pointer to array[index], typed as a pointer to a vector of its dtype."""
        data = context.make_array(array_type)(context, builder, array).data
        element = builder.gep(data, [context.cast(builder, index, index_type, types.intp)], inbounds=True)
        vector = context.get_value_type(_vector(array_type.dtype))
        return builder.bitcast(element, vector.as_pointer())

    @intrinsic
    def load(typingctx, array, index):
        """array[index : index + lanes(array)] as a vector (unaligned load)."""
        def codegen(context, builder, signature, args):
            return builder.load(_address(context, builder, signature.args[0], args[0], args[1],
                                         signature.args[1]), align=array.dtype.bitwidth // 8)
        return _vector(array.dtype)(array, index), codegen

    @intrinsic
    def store(typingctx, array, index, vector):
        """array[index : index + lanes(array)] = vector (unaligned store)."""
        def codegen(context, builder, signature, args):
            builder.store(args[2], _address(context, builder, signature.args[0], args[0], args[1],
                                            signature.args[1]), align=array.dtype.bitwidth // 8)
            return context.get_dummy_value()
        return types.void(array, index, vector), codegen

    @intrinsic
    def splat(typingctx, x):
        """x in every lane."""
        vector = _vector(x)

        def codegen(context, builder, signature, args):
            vector_type = context.get_value_type(vector)
            lane0 = builder.insert_element(ir.Constant(vector_type, ir.Undefined), args[0],
                                           ir.Constant(ir.IntType(32), 0))
            everywhere = ir.Constant(ir.VectorType(ir.IntType(32), vector.count), [0] * vector.count)
            return builder.shuffle_vector(lane0, ir.Constant(vector_type, ir.Undefined), everywhere)
        return vector(x), codegen

    @intrinsic
    def fma(typingctx, a, b, c):
        """a * b + c, lane by lane, with one rounding (LLVM's llvm.fma: an FMA instruction)."""
        def codegen(context, builder, signature, args):
            vector_type = args[0].type
            name = f"llvm.fma.v{vector_type.count}f{signature.return_type.dtype.bitwidth}"
            function = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(vector_type, [vector_type] * 3), name)
            return builder.call(function, args)
        return c(a, b, c), codegen

    def _lane_by_lane(instruction):
        """An intrinsic applying an LLVM IR builder method (fadd, fsub, fmul) to two vectors."""
        @intrinsic
        def apply(typingctx, a, b):
            def codegen(context, builder, signature, args):
                return getattr(builder, instruction)(*args)
            return a(a, b), codegen
        return apply

    _add, _sub, _mul = _lane_by_lane("fadd"), _lane_by_lane("fsub"), _lane_by_lane("fmul")

    def _operator(function):
        """Numba's a + b (- or *) for two vectors of one type: the lane-by-lane instruction;
        with a float and a vector, the float (cast to the vector's dtype) in every lane."""
        def typed(a, b):
            if isinstance(a, Vector) and a == b:
                return lambda a, b: function(a, b)
            if isinstance(a, types.Float) and isinstance(b, Vector):
                lane = b.dtype
                return lambda a, b: function(splat(lane(a)), b)
            if isinstance(a, Vector) and isinstance(b, types.Float):
                lane = a.dtype
                return lambda a, b: function(a, splat(lane(b)))
        return typed

    overload(operator.add)(_operator(_add))
    overload(operator.sub)(_operator(_sub))
    overload(operator.mul)(_operator(_mul))

    @intrinsic
    def interleave(typingctx, a, b):
        """(a0, b0, a1, b1, ...) over two vectors: the lanes of a and b taken in turn."""
        def codegen(context, builder, signature, args):
            n = a.count
            index = ir.IntType(32)
            low = ir.Constant(ir.VectorType(index, n), [k // 2 + (k % 2) * n for k in range(n)])
            high = ir.Constant(ir.VectorType(index, n), [n // 2 + k // 2 + (k % 2) * n for k in range(n)])
            pair = (builder.shuffle_vector(args[0], args[1], low), builder.shuffle_vector(args[0], args[1], high))
            return context.make_tuple(builder, signature.return_type, pair)
        return types.UniTuple(a, 2)(a, b), codegen

    @intrinsic
    def deinterleave(typingctx, a, b):
        """The even and the odd lanes of a followed by b: the inverse of ``interleave``."""
        def codegen(context, builder, signature, args):
            n = a.count
            index = ir.VectorType(ir.IntType(32), n)
            even, odd = ir.Constant(index, list(range(0, 2 * n, 2))), ir.Constant(index, list(range(1, 2 * n, 2)))
            pair = (builder.shuffle_vector(args[0], args[1], even), builder.shuffle_vector(args[0], args[1], odd))
            return context.make_tuple(builder, signature.return_type, pair)
        return types.UniTuple(a, 2)(a, b), codegen

    @intrinsic
    def _negate(typingctx, a):
        def codegen(context, builder, signature, args):
            return builder.fneg(args[0])
        return a(a), codegen

    @overload(operator.neg)
    def _negative(a):
        if isinstance(a, Vector):
            return lambda a: _negate(a)

    @intrinsic
    def lanes(typingctx, array):
        """How many elements of ``array`` one vector holds (a compile-time constant)."""
        def codegen(context, builder, signature, args):
            return context.get_constant(types.intp, _vector(array.dtype).count)
        return types.intp(array), codegen

else:
    def lanes(array):
        return VECTOR_BYTES // array.itemsize

    def load(array, index):
        return array[index:index + lanes(array)].copy()

    def store(array, index, vector):
        array[index:index + vector.size] = vector

    def splat(x):
        return np.full(VECTOR_BYTES // np.asarray(x).itemsize, x)

    def fma(a, b, c):
        return a * b + c                # rounded twice: the one place plain Python differs

    def interleave(a, b):
        both = np.stack([a, b], axis=1).reshape(-1)
        return both[:a.size], both[a.size:]

    def deinterleave(a, b):
        both = np.concatenate([a, b])
        return both[0::2], both[1::2]
