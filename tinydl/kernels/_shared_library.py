"""Finding the NVIDIA libraries the GPU routes call through ctypes (cuBLAS, cuDNN)."""
import glob
import importlib.util
import os

__all__ = ["loaded_library", "wheel_library"]


def loaded_library(stem):
    """The file of a shared library whose name starts with ``stem`` that this process has
    loaded (``libcublas.so.12``, which CuPy loaded), or None."""
    with open("/proc/self/maps") as maps:
        for line in maps:
            path = line.split()[-1]
            if "/" in path and path.rsplit("/", 1)[1].startswith(stem):
                return path
    return None


def wheel_library(package, stem):
    """``stem*`` in the lib folder of an NVIDIA wheel (``nvidia.cudnn``: nvidia-cudnn-cu12), or None."""
    try:
        spec = importlib.util.find_spec(package)
    except ModuleNotFoundError:
        return None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        found = sorted(glob.glob(os.path.join(folder, "lib", stem + "*")))
        if found:
            return found[0]
    return None
