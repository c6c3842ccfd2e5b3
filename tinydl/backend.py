"""Where tensor data lives: NumPy arrays on 'cpu', CuPy arrays on 'cuda'.

Every piece of code that touches data asks the data for its array module::

    xp = get_array_module(x)      # numpy or cupy
    y = xp.exp(x)

so one implementation of an op runs on both devices, and no NumPy call ever
receives a GPU array (that would copy it to the host behind our back).

CuPy is optional (the ``[gpu]`` extra). It is imported lazily, the first time
something asks about CUDA, so ``import tinydl`` stays fast and works without it.
"""
import numbers
import operator
import threading

import numpy as np

_cupy = None            # the cupy module once imported, False if unavailable
_cupy_error = None      # why cupy is unavailable, for the error message


def _load_cupy():
    """Import cupy once; remember the reason if it cannot be used."""
    global _cupy, _cupy_error
    if _cupy is None:
        try:
            import cupy
            if cupy.cuda.runtime.getDeviceCount() < 1:
                raise RuntimeError("CuPy found no CUDA device")
            _cupy = cupy
        except Exception as exc:  # ImportError, CUDA driver errors, no device
            _cupy, _cupy_error = False, f"{type(exc).__name__}: {exc}"
    return _cupy or None


def cuda_is_available():
    """True when CuPy imports and sees at least one CUDA device."""
    return _load_cupy() is not None


def cupy_module():
    """The cupy module, or a clear error saying why 'cuda' cannot be used."""
    cp = _load_cupy()
    if cp is None:
        raise RuntimeError(
            "device 'cuda' was requested but is not available "
            f"({_cupy_error}). Install the GPU extra (pip install 'tinydl[gpu]') "
            "on a machine with an NVIDIA GPU, or use device='cpu'.")
    return cp


def is_cupy_array(x):
    # Checking the class's module avoids importing cupy just to say "no"; a NumPy array,
    # the common case, is told by its type alone (called several times per op).
    return type(x) is not np.ndarray and type(x).__module__.startswith("cupy")


def get_array_module(*arrays):
    """numpy or cupy, decided by the arrays themselves (first cupy array wins)."""
    for a in arrays:
        if is_cupy_array(a):
            return _load_cupy()
    return np


def parse_device(device):
    """Normalise 'cpu' / 'cuda' / 'cuda:0' / Device to a Device."""
    if isinstance(device, Device):
        return device
    if device is None:
        return Device("cpu")
    name = str(device)
    kind, _, index = name.partition(":")
    if kind not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {device!r}: expected 'cpu' or 'cuda[:index]'")
    if kind == "cpu":
        return Device("cpu")
    return Device("cuda", int(index) if index else 0)


class Device:
    """A device name as PyTorch prints it: Device('cpu'), Device('cuda', 0)."""

    def __init__(self, type, index=None):
        self.type = type
        self.index = index

    def __eq__(self, other):
        if isinstance(other, str):
            other = parse_device(other)
        return isinstance(other, Device) and (self.type, self.index or 0) == (other.type, other.index or 0)

    def __hash__(self):
        return hash((self.type, self.index or 0))

    def __str__(self):
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __repr__(self):
        return f"device(type='{self.type}'" + ("" if self.index is None else f", index={self.index}") + ")"


class _Capture(threading.local):
    """This thread's CUDA graph capture (``td.cuda.graph``): while it runs, the GPU matrix
    products take the route a capture allows (kernels/cublas_handle.py)."""
    active = False


capture = _Capture()


def device_of(array):
    if is_cupy_array(array):
        return Device("cuda", array.device.id)
    return Device("cpu")


def to_device(array, device):
    """Copy ``array`` to ``device`` (no copy when it is already there)."""
    device = parse_device(device)
    if device.type == "cpu":
        if is_cupy_array(array):
            return array.get()
        return np.asarray(array)
    cp = cupy_module()
    with cp.cuda.Device(device.index or 0):
        return cp.asarray(array)


def to_host(array):
    """A NumPy array of ``array`` (numpy, cupy or a Python value): the one host copy."""
    return to_device(array, "cpu")


def array_module_for(device):
    """The array module that holds data on ``device``."""
    return cupy_module() if parse_device(device).type == "cuda" else np


# ---------------------------------------------------------------- random numbers
# One generator per backend, reseeded together by manual_seed, so that a run is
# reproducible from one seed on either device.
_np_rng = np.random.default_rng(0)


def manual_seed(seed):
    """Seed tinydl's generators. Any int, as PyTorch's ``manual_seed`` (negative ones too):
    NumPy takes its residue modulo 2**64."""
    global _np_rng
    seed = operator.index(seed) % 2**64        # NumPy refuses negative seeds; -1 -> 2**64 - 1
    _np_rng = np.random.default_rng(seed)
    if _cupy:  # seed the GPU generators only if cupy is already in use
        seed_cuda(seed)
    else:
        _philox["seed"] = seed


def seed_cuda(seed):
    """Reseed the GPU's generators: CuPy's (``randn``, init on 'cuda') and dropout's Philox
    counter (kernels/philox.py), whose state arrays are rewritten in place (a CUDA graph
    holds their addresses)."""
    cp = cupy_module()
    seed = operator.index(seed) % 2**64        # as manual_seed: any int
    cp.random.seed(seed)
    _philox["seed"] = seed
    for device, state in _philox["states"].items():
        with cp.cuda.Device(device):
            state.set(_philox_start(seed))


#: dropout's generator on the GPU: the seed, and each device's (2,) uint64 [seed, blocks drawn]
_philox = {"seed": 0, "states": {}}


def _philox_start(seed):
    return np.array([int(seed) % 2**64, 0], dtype=np.uint64)


def philox_state(cp):
    """The current GPU's [seed, blocks drawn] for kernels/philox.py, made at its first use."""
    device = cp.cuda.runtime.getDevice()
    state = _philox["states"].get(device)
    if state is None:
        state = _philox["states"][device] = cp.asarray(_philox_start(_philox["seed"]))
    return state


def rng_for(xp):
    """The random generator of array module ``xp`` (numpy Generator or cupy's)."""
    if xp is np:
        return _np_rng
    return xp.random


def as_generator(generator):
    """A ``generator=`` argument: a NumPy Generator, an int seed (a fresh generator: the
    same draw on every call) or None (left as None: the caller's default)."""
    if generator is None or isinstance(generator, np.random.Generator):
        return generator
    if isinstance(generator, numbers.Integral) and not isinstance(generator, bool):
        return np.random.default_rng(int(generator))
    raise TypeError(f"generator must be a numpy Generator, an int seed or None, got {type(generator).__name__}")


def get_rng_state():
    return _np_rng.bit_generator.state


def set_rng_state(state):
    _np_rng.bit_generator.state = state
