"""Convolutions on the GPU through NVIDIA's cuDNN: conv2d's 'cudnn' route, as PyTorch's and
Chainer's convolutions run there.

cuDNN computes the three products of the textbook op (``ops/conv.py``) without the column
matrix: y = conv(x, W) (forward), dL/dx (its "backward data") and dL/dW ("backward
filter"). For each shape it picks an algorithm (implicit GEMM, Winograd, FFT...) by its
heuristics (``cudnnGet...Algorithm_v7``), the first that needs at most WORKSPACE_LIMIT
bytes of scratch memory, remembered per shape with the descriptors that describe it.

It is optional: libcudnn comes with ``pip install 'tinydl[gpu-cudnn]'`` (the nvidia-cudnn-cu12
wheel; PyTorch brings the same), and since CuPy 14 has no cuDNN of its own, it is called
here through ctypes, on its classic convolution API (cudnn.h: descriptors, then one call a
direction). The route runs where ``td.backends.cudnn.enabled`` is True or where it is forced
(``td.backends.route(conv2d='cudnn')``); tinydl's own kernels stay the default, and the
gpu-marked tests check this route against them. Its padding must be symmetric (the classic
API's); other calls take the usual routes. TF32 tensor cores only where CUPY_TF32 is set,
as CuPy's products and the own cuBLAS handle (kernels/cublas_handle.py).
"""
import ctypes
import os
import threading

import numpy as np

from .. import backends
from ..backend import cupy_module
from ._shared_library import loaded_library, wheel_library
from .im2col import conv_output_size

__all__ = ["available", "version", "convolution_forward", "convolution_backward_data",
           "convolution_backward_filter", "CudnnConv"]

#: scratch memory an algorithm may ask for (PyTorch's default limit is the free memory)
WORKSPACE_LIMIT = 1 << 30
_DATA_TYPES = {np.dtype(np.float32): (0, ctypes.c_float), np.dtype(np.float64): (1, ctypes.c_double)}
_NCHW, _CROSS_CORRELATION = 0, 1
_DEFAULT_MATH, _FMA_MATH, _TENSOR_OP_MATHS = 0, 3, (1, 2)


class _AlgorithmPerformance(ctypes.Structure):
    """cudnnConvolution{Fwd,BwdData,BwdFilter}AlgoPerf_t (one layout for the three)."""
    _fields_ = [("algo", ctypes.c_int), ("status", ctypes.c_int), ("time", ctypes.c_float),
                ("memory", ctypes.c_size_t), ("determinism", ctypes.c_int), ("math_type", ctypes.c_int),
                ("reserved", ctypes.c_int * 3)]


def _signatures():
    v, i, s = ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t
    out, count = ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_int)
    product = [v, v, v, v, v, v, v, i, v, s, v, v, v]     # handle, alpha, 2 x (desc, data), conv, algo, ws, beta, out
    choose = [v, v, v, v, v, i, count, v]                  # handle, 4 descriptors, asked, returned, results
    return {"cudnnCreate": [out], "cudnnSetStream": [v, v], "cudnnGetVersion": [],
            "cudnnCreateTensorDescriptor": [out], "cudnnSetTensor4dDescriptor": [v, i, i, i, i, i, i],
            "cudnnCreateFilterDescriptor": [out], "cudnnSetFilter4dDescriptor": [v, i, i, i, i, i, i],
            "cudnnCreateConvolutionDescriptor": [out],
            "cudnnSetConvolution2dDescriptor": [v, i, i, i, i, i, i, i, i],
            "cudnnSetConvolutionGroupCount": [v, i], "cudnnSetConvolutionMathType": [v, i],
            "cudnnGetConvolutionForwardAlgorithm_v7": choose, "cudnnGetConvolutionBackwardDataAlgorithm_v7": choose,
            "cudnnGetConvolutionBackwardFilterAlgorithm_v7": choose, "cudnnConvolutionForward": product,
            "cudnnConvolutionBackwardData": product, "cudnnConvolutionBackwardFilter": product,
            "cudnnGetErrorString": [i]}


class _Library:
    """libcudnn through ctypes: one handle per device, and a plan per convolution shape."""

    def __init__(self):
        self._lib, self._why = None, None
        self._lock = threading.RLock()
        self._handles, self._plans = {}, {}

    def load(self):
        """The library, or None (``why`` says why)."""
        with self._lock:
            if self._lib is None and self._why is None:
                path = (loaded_library("libcudnn.so") or wheel_library("nvidia.cudnn", "libcudnn.so")
                        or "libcudnn.so.9")
                try:
                    lib = ctypes.CDLL(path)
                    for name, arguments in _signatures().items():
                        getattr(lib, name).argtypes = arguments
                    lib.cudnnGetVersion.restype = ctypes.c_size_t
                    lib.cudnnGetErrorString.restype = ctypes.c_char_p
                    self._lib = lib
                except (OSError, AttributeError) as exc:
                    self._why = f"libcudnn could not be loaded ({exc}); pip install 'tinydl[gpu-cudnn]'"
            return self._lib

    @property
    def why(self):
        return self._why

    def call(self, name, *arguments):
        status = getattr(self._lib, name)(*arguments)
        if status != 0:
            message = self._lib.cudnnGetErrorString(status).decode()
            raise RuntimeError(f"conv2d (cuDNN route): {name} failed: {message} (status {status})")

    def handle(self):
        """This device's handle, on the current stream (set at every call: a capture's stream too)."""
        cupy = cupy_module()
        device = cupy.cuda.runtime.getDevice()
        with self._lock:
            handle = self._handles.get(device)
            if handle is None:
                handle = self._handles[device] = ctypes.c_void_p()
                self.call("cudnnCreate", ctypes.byref(handle))
        self.call("cudnnSetStream", handle, cupy.cuda.get_current_stream().ptr)
        return handle

    def _descriptor(self, kind, setter, *values):
        descriptor = ctypes.c_void_p()
        self.call(f"cudnnCreate{kind}Descriptor", ctypes.byref(descriptor))
        self.call(setter, descriptor, *values)
        return descriptor

    def plan(self, x_shape, w_shape, dtype, geometry):
        """The descriptors of one convolution shape (made once), and its algorithms (chosen at
        their first use): {direction: (convolution descriptor, algorithm, workspace bytes)}."""
        tf32 = os.environ.get("CUPY_TF32", "0") != "0"
        key = (cupy_module().cuda.runtime.getDevice(), x_shape, w_shape, dtype, geometry, tf32)
        with self._lock:
            plan = self._plans.get(key)
            if plan is None:
                plan = self._plans[key] = _Plan(self, x_shape, w_shape, dtype, geometry, tf32)
            return plan


class _Plan:
    def __init__(self, library, x_shape, w_shape, dtype, geometry, tf32):
        (kh, kw), (sh, sw), (pt, _, pl, _), (dh, dw), groups = geometry
        data_type = _DATA_TYPES[dtype][0]
        self.library, self.tf32, self.dtype = library, tf32 and dtype == np.float32, dtype
        ho, wo = conv_output_size(x_shape[2:], (kh, kw), (sh, sw), geometry[2], (dh, dw))
        self.y_shape = (x_shape[0], w_shape[0], ho, wo)
        self.x = library._descriptor("Tensor", "cudnnSetTensor4dDescriptor", _NCHW, data_type, *x_shape)
        self.y = library._descriptor("Tensor", "cudnnSetTensor4dDescriptor", _NCHW, data_type, *self.y_shape)
        self.w = library._descriptor("Filter", "cudnnSetFilter4dDescriptor", data_type, _NCHW, *w_shape)
        self.convolution_values = (pt, pl, sh, sw, dh, dw, _CROSS_CORRELATION, data_type)
        self.groups = groups
        self.chosen = {}

    def _convolution(self):
        """A convolution descriptor (one a direction: each takes its algorithm's math type)."""
        library = self.library
        descriptor = library._descriptor("Convolution", "cudnnSetConvolution2dDescriptor", *self.convolution_values)
        library.call("cudnnSetConvolutionGroupCount", descriptor, self.groups)
        fma_only = self.dtype == np.float32 and not self.tf32           # no TF32 for float32
        library.call("cudnnSetConvolutionMathType", descriptor, _FMA_MATH if fma_only else _DEFAULT_MATH)
        return descriptor

    def algorithm(self, direction, handle):
        """(convolution descriptor, algorithm, workspace bytes) of ``direction``: the first of
        cuDNN's heuristic choices that works, fits WORKSPACE_LIMIT and, without TF32, keeps
        float32 products in float32."""
        found = self.chosen.get(direction)
        if found is not None:
            return found
        descriptor = self._convolution()
        x, y, w = self.x, self.y, self.w
        descriptors = {"forward": (x, w, descriptor, y), "backward_data": (w, y, descriptor, x),
                       "backward_filter": (x, y, descriptor, w)}[direction]
        results, returned = (_AlgorithmPerformance * 16)(), ctypes.c_int()
        name = {"forward": "Forward", "backward_data": "BackwardData", "backward_filter": "BackwardFilter"}[direction]
        self.library.call(f"cudnnGetConvolution{name}Algorithm_v7", handle, *descriptors, 16,
                          ctypes.byref(returned), results)
        for result in results[:returned.value]:
            if result.status != 0 or result.memory > WORKSPACE_LIMIT:
                continue
            if self.dtype == np.float32 and not self.tf32 and result.math_type in _TENSOR_OP_MATHS:
                continue
            self.library.call("cudnnSetConvolutionMathType", descriptor, result.math_type)
            found = self.chosen[direction] = (descriptor, result.algo, result.memory)
            return found
        raise RuntimeError(f"conv2d (cuDNN route): no {direction} algorithm for input {self.y_shape} "
                           f"within {WORKSPACE_LIMIT} bytes of workspace")

    def run(self, direction, a, b, out):
        """One of the three products: ``out = direction(a, b)`` (a, b and out as cuDNN orders
        them: forward (x, W) -> y, backward data (W, gy) -> gx, backward filter (x, gy) -> gW)."""
        cupy = cupy_module()
        handle = self.library.handle()
        descriptor, algorithm, workspace_bytes = self.algorithm(direction, handle)
        workspace = cupy.empty(workspace_bytes, dtype=cupy.uint8) if workspace_bytes else None
        scalar = _DATA_TYPES[self.dtype][1]
        one, zero = scalar(1), scalar(0)
        x, y, w = self.x, self.y, self.w
        a_desc, b_desc, out_desc = {"forward": (x, w, y), "backward_data": (w, y, x),
                                    "backward_filter": (x, y, w)}[direction]
        name = {"forward": "Forward", "backward_data": "BackwardData", "backward_filter": "BackwardFilter"}[direction]
        self.library.call(f"cudnnConvolution{name}", handle, ctypes.byref(one), a_desc, a.data.ptr, b_desc,
                          b.data.ptr, descriptor, algorithm, None if workspace is None else workspace.data.ptr,
                          workspace_bytes, ctypes.byref(zero), out_desc, out.data.ptr)
        return out


_library = _Library()


def available():
    """Can the cuDNN route run here (CuPy, a GPU and libcudnn)?"""
    from ..backend import cuda_is_available
    return cuda_is_available() and _library.load() is not None


def version():
    """cuDNN's version number (90100 for 9.1.0), or None where it cannot be loaded."""
    return int(_library._lib.cudnnGetVersion()) if available() else None


def _plan(x, weight, geometry):
    return _library.plan(tuple(x.shape), tuple(weight.shape), np.dtype(x.dtype), geometry)


def convolution_forward(x, weight, geometry):
    """y = conv2d(x, weight) (no bias) for CuPy arrays, by cuDNN."""
    cupy = cupy_module()
    x, weight = cupy.ascontiguousarray(x), cupy.ascontiguousarray(weight)
    plan = _plan(x, weight, geometry)
    return plan.run("forward", x, weight, cupy.empty(plan.y_shape, dtype=x.dtype))


def convolution_backward_data(x_shape, weight, gy, geometry):
    """dL/dx of y = conv2d(x, weight), from dL/dy, by cuDNN."""
    cupy = cupy_module()
    weight, gy = cupy.ascontiguousarray(weight), cupy.ascontiguousarray(gy)
    plan = _library.plan(tuple(x_shape), tuple(weight.shape), np.dtype(gy.dtype), geometry)
    return plan.run("backward_data", weight, gy, cupy.empty(x_shape, dtype=gy.dtype))


def convolution_backward_filter(x, w_shape, gy, geometry):
    """dL/dW of y = conv2d(x, W), from dL/dy, by cuDNN."""
    cupy = cupy_module()
    x, gy = cupy.ascontiguousarray(x), cupy.ascontiguousarray(gy)
    plan = _library.plan(tuple(x.shape), tuple(w_shape), np.dtype(x.dtype), geometry)
    return plan.run("backward_filter", x, gy, cupy.empty(w_shape, dtype=x.dtype))


class CudnnConv:
    """conv2d's 'cudnn' route: cuDNN's three products (see the module docstring)."""

    name = "cudnn"

    @staticmethod
    def applies(x, weight_shape, geometry, needs):
        forced = backends.forced_route("conv2d")
        if type(x) is np.ndarray or np.dtype(x.dtype) not in _DATA_TYPES or backends.is_reference():
            return False
        if not (forced == "cudnn" or (forced is None and backends.cudnn.enabled)):
            return False
        top, bottom, left, right = geometry[2]
        return top == bottom and left == right and x.size > 0 and 0 not in weight_shape and available()

    @staticmethod
    def forward(x, weight, bias, geometry, needs):
        y = convolution_forward(x, weight, geometry)
        if bias is not None:
            y += bias.reshape(1, -1, 1, 1)
        return y, None

    @staticmethod
    def backward(x, weight, _, gy, geometry, needs):
        gx = convolution_backward_data(x.shape, weight, gy, geometry) if needs[0] else None
        gw = convolution_backward_filter(x, weight.shape, gy, geometry) if needs[1] else None
        return gx, gw
