"""``td.cuda``: is a GPU usable, and how much of its memory is in use.

tinydl runs on an NVIDIA GPU through CuPy (``pip install 'tinydl[gpu]'``).
"""
from . import backend


def is_available():
    """True when CuPy imports and sees at least one CUDA device."""
    return backend.cuda_is_available()


def device_count():
    return backend.cupy_module().cuda.runtime.getDeviceCount() if is_available() else 0


def synchronize():
    """Wait for the GPU to finish queued work (for timing)."""
    if is_available():
        backend.cupy_module().cuda.get_current_stream().synchronize()


def memory_allocated():
    """Bytes held by live arrays in CuPy's memory pool (0 without a GPU)."""
    return backend.cupy_module().get_default_memory_pool().used_bytes() if is_available() else 0


def memory_reserved():
    """Bytes CuPy's memory pool has taken from the driver (0 without a GPU)."""
    return backend.cupy_module().get_default_memory_pool().total_bytes() if is_available() else 0
