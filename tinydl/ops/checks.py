"""Argument checks shared by the ops that take parameters (linear, batch norm, convolution...)."""
import numpy as np

from ..tensor import Tensor


def check_same_kind(op, input, *others):
    """``others`` = (name, Tensor or None) pairs that must share ``input``'s dtype and device.

    PyTorch refuses a float64 input with float32 weights rather than promoting:
    a silent promotion would make the whole network run (and its gradients come
    back) in a dtype nobody asked for.
    """
    for name, t in others:
        if t is None:
            continue
        if not isinstance(t, Tensor):
            raise TypeError(f"{op}: {name} must be a Tensor, got {type(t).__name__}")
        if t.dtype != input.dtype:
            raise RuntimeError(f"{op}: input type ({input.dtype}) and {name} type ({t.dtype}) should be the "
                               f"same (input shape {input.shape}, {name} shape {t.shape})")
        both_numpy = isinstance(t.array, np.ndarray) and isinstance(input.array, np.ndarray)
        if not both_numpy and t.device != input.device:      # NumPy arrays all live on the CPU
            raise RuntimeError(f"{op}: input is on {input.device} but {name} is on {t.device}")
