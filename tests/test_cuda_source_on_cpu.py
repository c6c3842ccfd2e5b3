"""The new CUDA code of the fused batch-norm route and of Adam's step, run on the CPU.

No GPU has run them yet (see FUSED_ON_CUDA_BY_DEFAULT in kernels/norm.py and optim/adam.py).
Until one does, this file checks what a CPU can: the CUDA C is compiled as C++ (g++, with
blockIdx/threadIdx as globals), and the Python that launches it runs with a NumPy stand-in
for the few CuPy calls it makes. The stand-in's launcher checks every kernel argument's type
against the kernel's C signature (a float64 array where the kernel reads float, an int64
where it reads int: bugs that give silent garbage on a GPU). The elementwise kernels, already
run on a GPU, are NumPy formulas here. The results must match the CPU's own fused route.
The gpu-marked tests (test_kernels.py, test_cuda.py) are the real check.
"""
import ctypes
import re
import shutil
import subprocess
import sys
import types

import numpy as np
import pytest

from tinydl.kernels import norm, optim

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++ to compile the CUDA source as C++")

_CUDA_AS_CPP = r"""
#include <cmath>
#include <algorithm>
struct Dim3 { unsigned x = 0, y = 0, z = 0; };
static Dim3 blockIdx, threadIdx, blockDim, gridDim;
#define __global__
#define __device__
#define __shared__ static
#define __syncthreads()
using std::fmax; using std::sqrt; using std::min;
"""
_C_TYPES = {"int": (ctypes.c_int, np.int32), "long long": (ctypes.c_longlong, np.int64),
            "double": (ctypes.c_double, np.float64), "float": (ctypes.c_float, np.float32),
            "bool": (ctypes.c_bool, bool)}
_PER_CHANNEL = ("forward_coefficients", "backward_coefficients")


def _compile(tmp_path, name, source):
    path = tmp_path / f"{name}.cpp"
    path.write_text(source)
    subprocess.run(["g++", "-O1", "-ffp-contract=off", "-shared", "-fPIC", "-o", str(path.with_suffix(".so")),
                    str(path)], check=True)
    return ctypes.CDLL(str(path.with_suffix(".so")))


def _signature(source, name):
    """[(C type, parameter name)] of __global__ kernel ``name``, with T left as T."""
    params = re.search(r"__global__ void " + name + r"\((.*?)\)\s*\{", source, re.S).group(1)
    out = []
    for p in params.replace("\n", " ").split(","):
        declared, param = p.replace("const ", "").strip().rsplit(" ", 1)
        out.append((declared + "*" * param.count("*"), param.lstrip("*")))
    return out


def _c_arguments(signature, t, args):
    assert len(signature) == len(args), f"{len(args)} arguments for {len(signature)} parameters"
    out = []
    for (declared, name), a in zip(signature, args):
        declared = declared.replace("T", t)
        if declared.endswith("*"):
            expected = _C_TYPES[declared.rstrip("*").strip()][1]
            assert isinstance(a, np.ndarray) and a.dtype == expected and a.flags.c_contiguous, \
                f"{name}: expected a contiguous {declared} array, got {getattr(a, 'dtype', type(a))}"
            out.append(a.ctypes.data_as(ctypes.c_void_p))
        else:
            ctype, expected = _C_TYPES[declared]
            assert type(a) is expected, f"{name}: expected {declared} ({expected}), got {type(a)}"
            out.append(ctype(a))
    return out


@pytest.fixture
def cuda_on_cpu(tmp_path, monkeypatch):
    """kernels/norm.py's CUDA kernels as the fused route launches them, run on the CPU."""
    source = norm._CHANNEL_SUMS_CUDA
    wrappers = ""
    for name in _PER_CHANNEL:
        for t in ("float", "double"):
            params = _signature(source, name)
            decl = ", ".join(f"{d.replace('T', t)} {n}" for d, n in params)
            wrappers += (f'extern "C" void run_{name}_{t}(int threads, {decl}) {{ blockDim.x = 128;\n'
                         f'  for (int i = 0; i < threads; ++i) {{ blockIdx.x = i / 128; threadIdx.x = i % 128;\n'
                         f'    {name}<{t}>({", ".join(n for _, n in params)}); }} }}\n')
    lib = _compile(tmp_path, "norm", _CUDA_AS_CPP + source + wrappers)

    def per_channel_kernel(name, t):
        def launch(grid, block, args):
            assert block == (128,) and grid[0] * 128 >= int(args[[n for _, n in _signature(source, name)].index("C")])
            getattr(lib, f"run_{name}_{t}")(ctypes.c_int(grid[0] * 128),
                                            *_c_arguments(_signature(source, name), t, args))
        return launch

    def channel_sums(grid, block, args):       # its block reduction needs real threads: NumPy here
        a, shift_a, b, shift_b, n, c, s, chunk, out = args
        a3, b3 = a.reshape(int(n), int(c), int(s)), b.reshape(int(n), int(c), int(s))
        for ch in range(int(c)):
            u = a3[:, ch].reshape(-1).astype(np.float64) - float(shift_a[ch])
            v = b3[:, ch].reshape(-1).astype(np.float64) - float(shift_b[ch])
            for part in range(grid[1]):
                piece = slice(part * int(chunk), (part + 1) * int(chunk))
                out[ch, part] = u[piece].sum(), (u[piece] * v[piece]).sum()

    class RawModule:
        def __init__(self, code, name_expressions):
            assert code == source

        def get_function(self, name):
            if name.startswith("channel_sums"):
                return channel_sums
            kernel, t = name[:-1].split("<")
            return per_channel_kernel(kernel, t)

    def spread(x, v, s, c):                     # v[c] for every element of x (N, C, S)
        return v[(np.arange(x.size) // s) % c].reshape(x.shape)

    def relu(v, on):
        return np.where((not on) | (v > 0) | np.isnan(v), v, 0)

    elementwise = {
        "tinydl_batch_norm_affine": lambda x, mean, a, b, s, c: (x - spread(x, mean, s, c)) * spread(x, a, s, c)
        + spread(x, b, s, c),
        "tinydl_batch_norm_affine_relu": lambda x, mean, a, b, s, c, on: relu(
            (x - spread(x, mean, s, c)) * spread(x, a, s, c) + spread(x, b, s, c), on),
        "tinydl_batch_norm_affine_add_relu": lambda x, r, mean, a, b, s, c, on: relu(
            (x - spread(x, mean, s, c)) * spread(x, a, s, c) + spread(x, b, s, c) + r, on),
        "tinydl_batch_norm_input_grad": lambda g, x, k, mean, a, b, s, c: g * spread(x, a, s, c)
        + (x - spread(x, mean, s, c)) * spread(x, k, s, c) + spread(x, b, s, c)}

    cupy = types.ModuleType("cupy")
    cupy.ascontiguousarray = lambda a, dtype=None: np.ascontiguousarray(a, dtype=dtype)
    cupy.empty, cupy.zeros, cupy.RawModule = np.empty, np.zeros, RawModule
    cupy.ElementwiseKernel = lambda inputs, outputs, code, name: (
        lambda *args: elementwise[name](*args).astype(args[0].dtype))
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    monkeypatch.setattr(norm, "_cuda", {})


CASES = [(shape, training, affine, tracked, relu, residual)
         for shape in [(4, 3, 5, 6), (2, 5, 7), (3, 130, 2, 2)]          # 130 channels: two blocks
         for training, tracked in [(True, True), (True, False), (False, True)]
         for affine in (True, False)
         for relu, residual in [(False, False), (True, False), (True, True), (False, True)]]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fused_batch_norm_cuda_route_runs_as_the_cpu_route(cuda_on_cpu, dtype):
    rng = np.random.default_rng(0)
    for shape, training, affine, tracked, relu, residual in CASES:
        c = shape[1]
        x, g = (rng.standard_normal(shape) * 2 + 3).astype(dtype), rng.standard_normal(shape).astype(dtype)
        r = rng.standard_normal(shape).astype(dtype) if residual else None
        w, b = (rng.standard_normal(c).astype(dtype) for _ in range(2)) if affine else (None, None)
        running = (rng.standard_normal(c).astype(dtype), rng.uniform(0.5, 2, c).astype(dtype)) if tracked else ()
        results = []
        for forward, backward in ((norm.batch_norm_forward_fused_cupy, norm.batch_norm_backward_fused_cupy),
                                  (norm.batch_norm_forward_fused_numba, norm.batch_norm_backward_fused_numba)):
            buffers = [a.copy() for a in running] or [None, None]
            y, saved = forward(x, w, b, *buffers, training, 0.1, 1e-5, r, relu)
            grads = backward(g, x, saved, training, True, True, y if relu else None, residual)
            results.append([y, *grads[:3]] + ([grads[3]] if residual else []) + [a for a in buffers if a is not None])
        tol = dict(rtol=1e-12, atol=1e-12) if dtype == np.float64 else dict(rtol=2e-5, atol=2e-5)
        case = (shape, training, affine, tracked, relu, residual)
        for k, (on_gpu, on_cpu) in enumerate(zip(*results)):
            assert on_gpu.dtype == dtype
            np.testing.assert_allclose(on_gpu, on_cpu, **tol, err_msg=f"{case}: result {k}")


def test_adam_cuda_body_is_the_plain_update_bit_for_bit(tmp_path):
    """The ElementwiseKernel's body, with the parameter list it is given and the scalars in
    the order the call passes them, against the Numba step (itself the plain update)."""
    inputs = ("T grad, T sign, bool decay_on, bool decoupled, T weight_decay, T decay, T keep1, T beta2, T keep2, "
              "T bc2, T eps, T step_size")
    source = "#include <cmath>\nusing std::sqrt;\n"
    for amsgrad in (False, True):
        for t in ("float", "double"):
            name, outputs = f"adam_{amsgrad:d}_{t}", "T& x, T& m, T& v" + (", T& vmax" if amsgrad else "")
            body = optim._ADAM_CUDA % (optim._AMSGRAD_CUDA if amsgrad else "")
            scalars = inputs.split(", ")[1:]
            declared = ", ".join(s.replace("T ", t + " ") for s in scalars)
            passed = ", ".join(s.split()[-1] for s in scalars) + ", x[i], m[i], v[i]" + (", vmax[i]" if amsgrad else "")
            source += (f"namespace {name}_ {{ typedef {t} T; inline void f({inputs}, {outputs}) {{ {body} }} }}\n"
                       f'extern "C" void {name}(long n, const {t}* g, {declared}, {t}* x, {t}* m, {t}* v, {t}* vmax) '
                       f'{{ for (long i = 0; i < n; ++i) {name}_::f(g[i], {passed}); }}\n')
    lib = _compile(tmp_path, "adam", source)
    rng = np.random.default_rng(1)
    for dtype, t in ((np.float32, "float"), (np.float64, "double")):
        for amsgrad in (False, True):
            for wd, decoupled, maximize in ((0.0, False, False), (1e-2, False, True), (1e-2, True, False)):
                start = rng.standard_normal(500).astype(dtype)
                runs = [[start.copy()] + [np.zeros_like(start) for _ in range(3)] for _ in range(2)]
                for step in range(1, 5):
                    g = rng.standard_normal(500).astype(dtype)
                    x, m, v, vmax = runs[0]
                    optim.adam_step_numba(g, x, m, v, vmax if amsgrad else None, 0.01, 0.9, 0.999, 1e-8, wd,
                                          decoupled, maximize, step)
                    scalars = optim._adam_scalars(dtype, 0.01, 0.9, 0.999, 1e-8, wd, decoupled, maximize, step)
                    c_type = _C_TYPES[t][0]
                    getattr(lib, f"adam_{amsgrad:d}_{t}")(
                        ctypes.c_long(g.size), g.ctypes.data_as(ctypes.c_void_p),
                        *[ctypes.c_bool(s) if isinstance(s, bool) else c_type(s) for s in scalars],
                        *[a.ctypes.data_as(ctypes.c_void_p) for a in runs[1]])
                for a, b in zip(*runs):
                    np.testing.assert_array_equal(a, b)
