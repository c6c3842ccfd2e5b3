"""kernels.release_buffers(): the memory the kernels keep between calls goes back, and the
next calls still compute right (benchmarks/bench_memory.py calls it before measuring)."""
import numpy as np
import pytest

import tinydl as td
import tinydl.nn.functional as F
from tinydl import kernels as K


def test_release_buffers_empties_the_workspace():
    key = "test_release_buffers.ws"
    before = K.workspace((64,), np.float32, key)
    try:
        K.release_buffers()
        assert not np.shares_memory(before, K.workspace((64,), np.float32, key))   # a fresh buffer
    finally:
        K.clear_workspace(key)


def test_a_convolution_after_release_buffers_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(shape) for shape in ((4, 8, 9, 9), (8, 8, 3, 3), (4, 8, 6, 6))]
    t_x, t_w = (torch.tensor(a, requires_grad=True) for a in arrays[:2])
    t_y = torch.nn.functional.conv2d(t_x, t_w, stride=2, padding=2)
    t_y.backward(torch.tensor(arrays[2]))
    for _ in range(2):                       # the second run finds no buffer kept for it
        x, w = (td.tensor(a, requires_grad=True) for a in arrays[:2])
        with td.backends.route(conv2d="chunked"):
            y = F.conv2d(x, w, stride=2, padding=2)
        y.backward(td.tensor(arrays[2]))
        K.release_buffers()
        for ours, theirs in ((y, t_y), (x.grad, t_x.grad), (w.grad, t_w.grad)):
            np.testing.assert_allclose(ours.detach().numpy(), theirs.detach().numpy(), rtol=1e-10, atol=1e-10)
