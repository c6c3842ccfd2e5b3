"""Hot loops on raw arrays (NumPy or CuPy), never on Tensors.

Each kernel has a NumPy reference (the readable one), a Numba version (parallel,
compiled, cached on disk) and, where it matters, a CuPy version; the
un-suffixed name dispatches: CuPy array -> CuPy, otherwise Numba unless
``td.backends.reference()`` (or ``TINYDL_NO_NUMBA=1``) asks for the reference. All
paths give the same numbers (bit-identical on the CPU).

    im2col / col2im        convolution as GEMM; layout in ``kernels/im2col.py``
    conv                   the convolution ops' fast routes and their dispatcher
    winograd               3x3 stride-1 convolution as Winograd F(2x2, 3x3) (CPU)
    winograd_f4            the same as Winograd F(4x4, 3x3): fewer multiplies, more rounding (CPU)
    winograd_transpose     a transposed convolution with kernel 2x its stride, Winograd F(3x3, 2x2) (CPU)
    direct_conv            convolution with few channels, no columns (CPU)
    simd                   explicit SIMD vectors for the Numba kernels (direct_conv, the Winograd transforms)
    subpixel               a transposed convolution's col2im and im2col by output phases (CPU)
    pool                   max pool (+indices, backward), max unpool, avg pool
    norm                   batch-norm per-channel statistics, affine, input gradient
    detection              NMS, RoI max pooling (forward and backward)
    workspace              reusable scratch buffers for the big column matrices
                           (``release_buffers()`` frees them)
    run_chunks             a convolution's chunks of images spread over the cores
    activation             ReLU forward and backward (fused, parallel)
    loss                   softmax cross-entropy on (N, C) logits, one loop a direction (CPU)
    optim                  fused optimizer steps (CUDA)
"""
from ._dispatch import clear_workspace, use_numba, workspace
from ._threads import chunk_workers, run_chunks, worker_key
from .im2col import (
    col2im,
    col2im_cupy,
    col2im_numba,
    col2im_reference,
    conv_output_size,
    im2col,
    im2col_cupy,
    im2col_numba,
    im2col_reference,
)
from .pool import (
    avg_pool2d_backward,
    avg_pool2d_divisor,
    avg_pool2d_forward,
    empty_windows,
    max_pool2d_backward,
    max_pool2d_backward_numba,
    max_pool2d_backward_reference,
    max_pool2d_forward,
    max_pool2d_forward_numba,
    max_pool2d_forward_reference,
    max_unpool2d_backward,
    max_unpool2d_forward,
    pool_geometry,
    pool_output_size,
)
from .activation import (
    relu_backward,
    relu_backward_numba,
    relu_backward_reference,
    relu_forward,
    relu_forward_numba,
    relu_forward_reference,
)
from .norm import batch_norm_affine, batch_norm_grad_sums, batch_norm_input_grad, batch_norm_stats
from .detection import nms_kernel, roi_pool_backward, roi_pool_forward


def release_buffers():
    """Free the memory the kernels keep for reuse between calls (the workspace); the next
    calls allocate afresh."""
    clear_workspace()
