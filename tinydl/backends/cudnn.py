"""``td.backends.cudnn``: NVIDIA's cuDNN for the GPU's convolutions, as ``torch.backends.cudnn``.

``td.backends.cudnn.enabled = True`` makes conv2d on 'cuda' run on cuDNN where it can
(kernels/cudnn.py: libcudnn, from ``pip install 'tinydl[gpu-cudnn]'``); ``tinydl train
--cudnn`` sets it. It is off by default, unlike PyTorch's, until a GPU has run the route:
tinydl's own kernels are the default, and ``td.backends.route(conv2d='cudnn')`` forces cuDNN
for a block either way.
"""

__all__ = ["enabled", "deterministic", "is_available", "version"]

#: run conv2d on cuDNN where it can (set by the user or the CLI: a process-wide choice)
enabled = False
#: only algorithms that give the same bits every run (cuDNN's own flag on each; no atomics)
deterministic = False


def is_available():
    """Can cuDNN run here: CuPy, a GPU, and libcudnn loadable?"""
    from ..kernels import cudnn
    return cudnn.available()


def version():
    """cuDNN's version number (e.g. 91900 for 9.19.0), or None."""
    from ..kernels import cudnn
    return cudnn.version()
