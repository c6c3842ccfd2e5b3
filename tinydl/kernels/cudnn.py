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
import math
import os
import threading

import numpy as np

from .. import backends
from ..backend import cuda_is_available, cupy_module
from ._shared_library import loaded_library, wheel_library
from .im2col import conv_output_size

__all__ = ["available", "why_unavailable", "version", "prepare", "convolution_forward", "convolution_backward_data",
           "convolution_backward_filter", "CudnnConv"]

#: scratch memory an algorithm may ask for (PyTorch's default limit is the free memory)
WORKSPACE_LIMIT = 1 << 30
_DATA_TYPES = {np.dtype(np.float32): (0, ctypes.c_float), np.dtype(np.float64): (1, ctypes.c_double)}
_NCHW, _CROSS_CORRELATION = 0, 1
_DEFAULT_MATH, _FMA_MATH, _DETERMINISTIC = 0, 3, 1
_NAMES = {"forward": "Forward", "backward_data": "BackwardData", "backward_filter": "BackwardFilter"}
_INT_MAX = 2**31 - 1            # the classic API's dimensions and sizes are C ints


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
        self.lock = threading.RLock()
        self._handles, self._plans = {}, {}

    def load(self):
        """The library, or None (``why`` says why)."""
        with self.lock:
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
        with self.lock:
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
        """The _Plan of one convolution shape: its descriptors, made once, and its candidate
        algorithms per direction, listed at their first use."""
        tf32, deterministic = os.environ.get("CUPY_TF32", "0") != "0", bool(backends.cudnn.deterministic)
        key = (cupy_module().cuda.runtime.getDevice(), x_shape, w_shape, dtype, geometry, tf32, deterministic)
        with self.lock:
            plan = self._plans.get(key)
            if plan is None:
                plan = self._plans[key] = _Plan(self, x_shape, w_shape, dtype, geometry, tf32, deterministic)
            return plan


class _Plan:
    def __init__(self, library, x_shape, w_shape, dtype, geometry, tf32, deterministic):
        (kh, kw), (sh, sw), (pt, _, pl, _), (dh, dw), groups = geometry
        data_type = _DATA_TYPES[dtype][0]
        self.library, self.tf32, self.dtype = library, tf32 and dtype == np.float32, dtype
        self.deterministic = deterministic
        ho, wo = conv_output_size(x_shape[2:], (kh, kw), (sh, sw), geometry[2], (dh, dw))
        self.y_shape = (x_shape[0], w_shape[0], ho, wo)
        self.x = library._descriptor("Tensor", "cudnnSetTensor4dDescriptor", _NCHW, data_type, *x_shape)
        self.y = library._descriptor("Tensor", "cudnnSetTensor4dDescriptor", _NCHW, data_type, *self.y_shape)
        self.w = library._descriptor("Filter", "cudnnSetFilter4dDescriptor", data_type, _NCHW, *w_shape)
        values = (pt, pl, sh, sw, dh, dw, _CROSS_CORRELATION, data_type)
        self.descriptors = {direction: self._convolution(values, groups) for direction in _NAMES}
        self.candidates = {}            # direction -> [(algorithm, workspace, math type)], made at first use
        self.math_types = {}            # direction -> the math type its descriptor has now

    def _convolution(self, values, groups):
        """A convolution descriptor (one a direction: each takes its algorithm's math type)."""
        library = self.library
        descriptor = library._descriptor("Convolution", "cudnnSetConvolution2dDescriptor", *values)
        library.call("cudnnSetConvolutionGroupCount", descriptor, groups)
        fma_only = self.dtype == np.float32 and not self.tf32           # no TF32 for float32
        library.call("cudnnSetConvolutionMathType", descriptor, _FMA_MATH if fma_only else _DEFAULT_MATH)
        return descriptor

    def _tensors(self, direction):
        """The descriptors of ``direction``'s two operands and result, in cuDNN's order."""
        x, y, w = self.x, self.y, self.w
        return {"forward": (x, w, y), "backward_data": (w, y, x), "backward_filter": (x, y, w)}[direction]

    def _candidates(self, direction, handle):
        """[(algorithm, workspace bytes, math type)] of ``direction``, cuDNN's heuristic order:
        those that work, fit WORKSPACE_LIMIT, keep float32 products in float32 without TF32
        (FMA math only, as PyTorch asserts) and, with ``td.backends.cudnn.deterministic``, give
        the same bits every run (no atomics)."""
        a, b, out = self._tensors(direction)
        results, returned = (_AlgorithmPerformance * 16)(), ctypes.c_int()
        self.library.call(f"cudnnGetConvolution{_NAMES[direction]}Algorithm_v7", handle, a, b,
                          self.descriptors[direction], out, 16, ctypes.byref(returned), results)
        fma_only = self.dtype == np.float32 and not self.tf32
        return [(r.algo, r.memory, r.math_type) for r in results[:returned.value]
                if r.status == 0 and r.memory <= WORKSPACE_LIMIT and (not fma_only or r.math_type == _FMA_MATH)
                and (not self.deterministic or r.determinism == _DETERMINISTIC)]

    def run(self, direction, a, b, out):
        """One of the three products: ``out = direction(a, b)`` (a, b and out as cuDNN orders
        them: forward (x, W) -> y, backward data (W, gy) -> gx, backward filter (x, gy) -> gW).
        The first candidate algorithm that runs is kept; one that fails (its workspace does not
        fit, cuDNN refuses it) hands over to the next, as PyTorch's convolutions do."""
        cupy = cupy_module()
        scalar = _DATA_TYPES[self.dtype][1]
        one, zero = scalar(1), scalar(0)
        descriptor = self.descriptors[direction]
        a_desc, b_desc, out_desc = self._tensors(direction)
        with self.library.lock:         # one handle a device: its stream is this call's until it returns
            handle = self.library.handle()
            if direction not in self.candidates:
                self.candidates[direction] = self._candidates(direction, handle)
            failures = []
            for algorithm, workspace_bytes, math_type in list(self.candidates[direction]):
                try:
                    if self.math_types.get(direction) != math_type:     # (a call less per convolution)
                        self.library.call("cudnnSetConvolutionMathType", descriptor, math_type)
                        self.math_types[direction] = math_type
                    workspace = cupy.empty(workspace_bytes, dtype=cupy.uint8) if workspace_bytes else None
                    self.library.call(f"cudnnConvolution{_NAMES[direction]}", handle, ctypes.byref(one), a_desc,
                                      a.data.ptr, b_desc, b.data.ptr, descriptor, algorithm,
                                      None if workspace is None else workspace.data.ptr, workspace_bytes,
                                      ctypes.byref(zero), out_desc, out.data.ptr)
                    return out
                except (RuntimeError, MemoryError) as exc:      # CuPy's OutOfMemoryError is a MemoryError
                    failures.append(f"algorithm {algorithm}: {exc}")
                    self.candidates[direction].remove((algorithm, workspace_bytes, math_type))
        raise RuntimeError(f"conv2d (cuDNN route): no {direction} algorithm ran for output {self.y_shape}"
                           f"{': ' + '; '.join(failures) if failures else ' (none within the limits)'}")


_library = _Library()


def available():
    """Can the cuDNN route run here (CuPy, a GPU and libcudnn)?"""
    return cuda_is_available() and _library.load() is not None


def why_unavailable():
    """Why libcudnn could not be loaded (None where it was, or was not tried yet)."""
    return _library.why


def version():
    """cuDNN's version number (90100 for 9.1.0), or None where it cannot be loaded."""
    return int(_library._lib.cudnnGetVersion()) if available() else None


def prepare():
    """Make this device's handle now: before a CUDA graph's capture, which must not create it."""
    with _library.lock:
        _library.handle()


def convolution_forward(x, weight, geometry):
    """y = conv2d(x, weight) (no bias) for CuPy arrays, by cuDNN."""
    cupy = cupy_module()
    x, weight = cupy.ascontiguousarray(x), cupy.ascontiguousarray(weight)
    plan = _library.plan(tuple(x.shape), tuple(weight.shape), np.dtype(x.dtype), geometry)
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
        kernel, stride, padding, dilation, _ = geometry
        top, bottom, left, right = padding
        if top != bottom or left != right or x.size == 0 or 0 in weight_shape:
            return False
        y_size = x.shape[0] * weight_shape[0] * math.prod(conv_output_size(x.shape[2:], kernel, stride, padding,
                                                                             dilation))
        return max(x.size, y_size, math.prod(weight_shape)) <= _INT_MAX and available()

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
