"""Pretrained weights: read a state dict from an .npz, and convert PyTorch's .pth files.

tinydl never unpickles (see ``serialization.py``), so a torchvision ``.pth`` file is
converted once, by PyTorch itself in its safe mode (``torch.load(weights_only=True)``,
which refuses anything but tensors and plain containers), into an .npz:

    tinydl convert-weights resnet50-0676ba61.pth resnet50.npz
    model = models.create('resnet50', weights='resnet50.npz')

The torchvision-compatible models (resnets, vggs, alexnet_tv, inception_v3) use
torchvision's parameter names, so the converted state dict loads unchanged.
"""
import os
import zipfile
from collections import OrderedDict

import numpy as np

from ..tensor import Tensor

__all__ = ["load_state_dict_file", "convert_torch_weights"]


def _is_torch_file(path):
    """torch.save writes a zip holding a pickle (``<name>/data.pkl``); td.save an .npz."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(name.endswith("data.pkl") for name in z.namelist())


def _unwrap(obj):
    """The state dict inside what a file holds: a tinydl Trainer checkpoint ('model'),
    the common {'state_dict': ...} wrapper, or the state dict itself."""
    from ..train import _FORMAT as TRAINER_FORMAT
    if isinstance(obj, dict):
        if obj.get("format") == TRAINER_FORMAT and isinstance(obj.get("model"), dict):
            return obj["model"]
        if isinstance(obj.get("state_dict"), dict):
            return obj["state_dict"]
    return obj


def load_state_dict_file(path):
    """The state dict (name -> array) in ``path``: a ``td.save`` file (a state dict or a
    Trainer checkpoint) or a plain .npz of arrays. PyTorch .pth files are refused with
    the command that converts them."""
    from .serialization import load
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"weights: no file at {path}")
    if _is_torch_file(path) or not zipfile.is_zipfile(path):
        raise ValueError(f"weights: {path} is not an .npz file (a PyTorch .pth file?); tinydl never "
                         f"unpickles: convert it first with `tinydl convert-weights {path} OUT.npz`")
    state = _unwrap(load(path))
    if not isinstance(state, dict) or not all(isinstance(v, (np.ndarray, Tensor)) for v in state.values()):
        raise ValueError(f"weights: {path} holds no state dict (a dict of parameter name -> array)")
    return state


def convert_torch_weights(src, dst, overwrite=False):
    """Read PyTorch's ``src`` (.pth / .pt: a state dict, or {'state_dict': ...}) with
    ``torch.load(weights_only=True)`` and write it as a tinydl .npz ``dst`` (atomically;
    an existing ``dst`` is kept unless ``overwrite``). Returns (number of tensors, of
    values, the names of the entries skipped: those that are no tensor, as nested dicts)."""
    from .serialization import save
    src, dst = os.fspath(src), os.fspath(dst)
    if not os.path.exists(src):
        raise FileNotFoundError(f"convert-weights: no file at {src}")
    if os.path.isdir(dst):        # --force replaces a file, never a folder (the rename would fail at the end)
        raise FileExistsError(f"convert-weights: {dst} is a folder; give the .npz file to write")
    if os.path.exists(dst) and not overwrite:
        raise FileExistsError(f"convert-weights: {dst} exists; pass --force to replace it")
    try:
        import torch
    except ImportError:
        raise ImportError("convert-weights: reading a .pth file needs PyTorch (pip install torch); "
                          "tinydl itself never unpickles") from None
    try:
        obj = torch.load(src, map_location="cpu", weights_only=True)
    except Exception as exc:   # not a torch file, or one holding more than tensors
        raise ValueError(f"convert-weights: PyTorch cannot read {src} as weights only "
                         f"({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
    state = _unwrap(obj)
    if not isinstance(state, dict) or not any(torch.is_tensor(v) for v in state.values()):
        raise ValueError(f"convert-weights: {src} holds no state dict (a dict of name -> tensor)")
    # bfloat16 (many published checkpoints) has no NumPy dtype: it becomes float32, exactly
    arrays = OrderedDict((k, (v.float() if v.dtype == torch.bfloat16 else v).detach().cpu().numpy())
                         for k, v in state.items() if torch.is_tensor(v))
    skipped = [str(k) for k, v in state.items() if not torch.is_tensor(v)]    # reported, never silently lost
    save(arrays, dst)
    return len(arrays), sum(a.size for a in arrays.values()), skipped
