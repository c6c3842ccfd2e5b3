"""A NumPy stand-in for CuPy: tinydl's 'cuda' code paths, run on a machine with no GPU.

It is no GPU and proves nothing about CUDA code. Its arrays are NumPy arrays of a class of
their own (``cupy.ndarray``), so tinydl takes them for device arrays ('cuda:0'), and it
keeps them apart from host arrays as CuPy does:

- a ufunc or a ``cupy.*`` function given a host NumPy array (not a scalar) raises TypeError;
- a NumPy function (``np.concatenate``...) given device arrays answers with device arrays
  (CuPy's ``__array_function__``), and refuses host arrays beside them;
- reductions give 0-d device arrays, not NumPy scalars;
- ``cupy.random`` has CuPy's functions and signatures (``dtype=``), not NumPy's.

What it cannot run (CUDA C kernels, cuBLAS handles, streams and graphs, NCCL, cupyx)
raises ``CannotRunHere``, which pytest reports as a skip. tests/test_gpu_paths_on_cpu.py
runs the gpu-marked tests with it; a real GPU runs them for real
(benchmarks/run_gpu_checks.sh).
"""
import sys
import types

import numpy as _np
import pytest

__version__ = "0.0-numpy-standin"


class CannotRunHere(pytest.skip.Exception):
    """Needs a real GPU (a kernel, a stream...): the test is skipped, not failed."""

    def __init__(self, what):
        super().__init__(f"needs a real GPU: {what} (NumPy stand-in for CuPy)")


def _refuse_host(values, what):
    for v in values:
        if type(v) is _np.ndarray:
            raise TypeError(f"Unsupported type {type(v)} in {what} (a host array beside device arrays)")
        if isinstance(v, (list, tuple)):
            _refuse_host(v, what)


def _host(v):
    """The plain NumPy view of a device array (lists and tuples of them too)."""
    if isinstance(v, ndarray):
        return v.view(_np.ndarray)
    if isinstance(v, (list, tuple)):
        return type(v)(_host(x) for x in v)
    return v


def _device(r):
    """A result as device arrays: NumPy scalars become 0-d arrays, as CuPy's reductions."""
    if isinstance(r, (list, tuple)):
        return type(r)(_device(x) for x in r)
    if type(r) is _np.ndarray:
        return r.view(ndarray)
    if isinstance(r, _np.generic):
        return _np.asarray(r).view(ndarray)
    return r


class Device:
    def __init__(self, device=0):
        self.id = int(device)

    def __eq__(self, other):
        return isinstance(other, Device) and other.id == self.id

    def __hash__(self):
        return self.id

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def use(self):
        pass

    @property
    def mem_info(self):                 # (free, total) bytes: room for no large test
        return 0, 0

    def synchronize(self):
        pass


class ndarray(_np.ndarray):
    """A device array: NumPy's data, CuPy's manners."""

    @property
    def device(self):
        return Device(0)

    def get(self, stream=None, order="C", out=None):
        return _np.array(self.view(_np.ndarray), order=order)

    def set(self, arr, stream=None):
        _np.copyto(self.view(_np.ndarray), arr)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        _refuse_host(inputs + tuple(kwargs.get("out", ())), f"ufunc {ufunc.__name__}")
        out = kwargs.get("out")
        if out is not None:
            kwargs["out"] = _host(out)
        result = getattr(ufunc, method)(*_host(inputs), **kwargs)
        if out is not None:
            return out[0] if len(out) == 1 else out
        return _device(result)

    def __array_function__(self, func, types_, args, kwargs):
        _refuse_host(args, f"numpy.{func.__name__}")
        return _device(func(*_host(args), **{k: _host(v) for k, v in kwargs.items()}))


ndarray.__module__ = "cupy"

_COPIES_FROM_HOST = {"asarray", "array", "asanyarray", "ascontiguousarray"}


def _function(name, numpy_function):
    def function(*args, **kwargs):
        if name not in _COPIES_FROM_HOST:
            _refuse_host(args, f"cupy.{name}")
        return _device(numpy_function(*_host(args), **{k: _host(v) for k, v in kwargs.items()}))
    function.__name__ = name
    return function


def __getattr__(name):
    """``cupy.<name>``: NumPy's function of that name on device arrays (NumPy's types and
    constants as they are)."""
    if name.startswith("__"):
        raise AttributeError(name)
    value = getattr(_np, name)
    if isinstance(value, (type, _np.ufunc)) or not callable(value):
        return value
    return _function(name, value)


def argsort(a, axis=-1):
    """CuPy's sort is stable."""
    return _device(_np.argsort(_host(a), axis=axis, kind="stable"))


def asnumpy(a, stream=None, order="C", out=None):
    return _np.array(_host(a), order=order)


def may_share_memory(a, b, max_work=None):
    return _np.may_share_memory(_host(a), _host(b))


def shares_memory(a, b, max_work=None):
    return _np.shares_memory(_host(a), _host(b))


# ---------------------------------------------------------------- what needs a GPU
class _Kernel:
    def __init__(self, *args, name="kernel", **kwargs):
        self.name = name

    def __call__(self, *args, **kwargs):
        raise CannotRunHere(f"CUDA kernel {self.name}")

    def get_function(self, name):
        return _Kernel(name=name)


ElementwiseKernel = ReductionKernel = RawKernel = RawModule = _Kernel


def fuse(*args, **kwargs):
    raise CannotRunHere("cupy.fuse")


# ---------------------------------------------------------------- random, as cupy.random
class _Random(types.ModuleType):
    """CuPy's module-level random functions (``dtype=``, device arrays) over one NumPy generator."""

    def __init__(self):
        super().__init__("cupy.random")
        self._rng = _np.random.default_rng(0)

    def seed(self, seed=None):
        self._rng = _np.random.default_rng(seed)

    def random(self, size=None, dtype=float):
        return _device(self._rng.random(size).astype(dtype))

    def rand(self, *size, dtype=float):
        return self.random(size, dtype)

    def standard_normal(self, size=None, dtype=float):
        return _device(self._rng.standard_normal(size).astype(dtype))

    def randn(self, *size, dtype=float):
        return self.standard_normal(size, dtype)

    def uniform(self, low=0.0, high=1.0, size=None, dtype=float):
        return _device(self._rng.uniform(_host(low), _host(high), size).astype(dtype))

    def normal(self, loc=0.0, scale=1.0, size=None, dtype=float):
        return _device(self._rng.normal(_host(loc), _host(scale), size).astype(dtype))

    def randint(self, low, high=None, size=None, dtype=int):
        return _device(self._rng.integers(low, high, size).astype(dtype))

    def permutation(self, a):
        return _device(self._rng.permutation(_host(a)))

    def choice(self, a, size=None, replace=True, p=None):
        return _device(self._rng.choice(_host(a), size, replace, _host(p)))


random = _Random()


class _Linalg(types.ModuleType):
    def __getattr__(self, name):
        return _function(f"linalg.{name}", getattr(_np.linalg, name))


linalg = _Linalg("cupy.linalg")


# ---------------------------------------------------------------- cupy.cuda
class _NullStream:
    ptr = 0

    def synchronize(self):
        pass


class _Pool:
    def used_bytes(self):
        return 0

    def total_bytes(self):
        return 0

    def free_all_blocks(self):
        pass


_POOL = _Pool()


def get_default_memory_pool():
    return _POOL


def get_default_pinned_memory_pool():
    return _POOL


class _NeedsGPU:
    def __init__(self, what):
        self.what = what

    def __call__(self, *args, **kwargs):
        raise CannotRunHere(self.what)


class CUDARuntimeError(RuntimeError):
    pass


class CUDADriverError(RuntimeError):
    pass


cuda = types.ModuleType("cupy.cuda")
cuda.__dict__.update(
    Device=Device,
    Stream=_NeedsGPU("a CUDA stream"),
    MemoryPool=_NeedsGPU("a CUDA memory pool"),
    using_allocator=_NeedsGPU("cupy.cuda.using_allocator"),
    get_current_stream=lambda: _NullStream(),
    runtime=types.SimpleNamespace(getDeviceCount=lambda: 1, getDevice=lambda: 0, deviceSynchronize=lambda: None,
                                  runtimeGetVersion=lambda: 12000, CUDARuntimeError=CUDARuntimeError),
    driver=types.SimpleNamespace(CUDADriverError=CUDADriverError),
    device=types.SimpleNamespace(get_cublas_handle=_NeedsGPU("a cuBLAS handle")),
    nccl=types.SimpleNamespace(get_unique_id=_NeedsGPU("NCCL"), NcclCommunicator=_NeedsGPU("NCCL")),
)
sys.modules["cupy.cuda"] = cuda             # (from cupy.cuda import nccl)
