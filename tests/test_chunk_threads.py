"""run_chunks (tinydl/kernels/_threads.py): a convolution's chunks of images on all
cores at once, each worker with serial kernels and single-threaded OpenBLAS.

The chunked convolutions themselves are compared with torch in
tests/test_conv_layers.py (test_chunked_and_rebuilt_columns_match_torch, and here
with more chunks than workers, float64).
"""
import importlib
import threading

import numpy as np
import pytest
import torch

import tinydl as td
import tinydl.nn.functional as F
from tinydl.kernels import _dispatch, _threads, chunk_workers, run_chunks

im2col_mod = importlib.import_module("tinydl.kernels.im2col")

needs_workers = pytest.mark.skipif(chunk_workers(8) < 2, reason="one core, Numba off or no OpenBLAS controls: "
                                                                 "run_chunks runs in the calling thread")


BIG = 1 << 40            # a size that would take the parallel kernels outside a worker


def _blas_threads():
    return _threads._blas_controls()[1]()


@needs_workers
def test_every_chunk_once_on_several_threads_with_serial_kernels():
    before = _blas_threads()
    seen, lock = [], threading.Lock()

    def work(chunk, worker):
        with lock:
            seen.append((chunk, worker, threading.get_ident(), _dispatch.in_chunk_worker(),
                         _dispatch.for_this_thread(im2col_mod._im2col_kernel, BIG), _blas_threads()))

    run_chunks(work, list(range(7)))
    assert sorted(c for c, *_ in seen) == list(range(7))
    assert {w for _, w, *_ in seen} == set(range(chunk_workers(7)))
    assert len({t for _, _, t, *_ in seen}) == chunk_workers(7)          # one thread per worker
    assert all(active and kernel is im2col_mod._im2col_kernel.serial and blas == 1
               for *_, active, kernel, blas in seen)
    assert _blas_threads() == before                                  # restored afterwards
    assert not _dispatch.in_chunk_worker()
    assert _dispatch.for_this_thread(im2col_mod._im2col_kernel, BIG) is im2col_mod._im2col_kernel


def test_small_work_runs_on_one_thread():
    kernel, size = im2col_mod._im2col_kernel, _dispatch.PARALLEL_MIN_SIZE
    assert _dispatch.for_this_thread(kernel, size - 1) is kernel.serial
    assert _dispatch.for_this_thread(kernel, size) is kernel


@needs_workers
def test_a_workers_exception_reaches_the_caller_and_leaves_things_as_they_were():
    before = _blas_threads()

    def work(chunk, worker):
        if chunk == 3:
            raise ValueError("chunk 3 failed")

    with pytest.raises(ValueError, match="chunk 3 failed"):
        run_chunks(work, list(range(6)))
    assert _blas_threads() == before
    done = []
    run_chunks(lambda chunk, worker: done.append(chunk), list(range(4)))   # the workers are free again
    assert sorted(done) == list(range(4))


def test_concurrent_callers_each_get_all_their_chunks():
    """A second thread calling run_chunks while the workers are busy runs its chunks itself."""
    results = {}

    def caller(name):
        out = np.zeros(40)

        def work(chunk, worker):
            out[chunk] = np.sqrt(chunk) + len(name)
        for _ in range(20):
            run_chunks(work, list(range(40)))
        results[name] = out

    threads = [threading.Thread(target=caller, args=(name,)) for name in ("a", "bb")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for name, out in results.items():
        np.testing.assert_array_equal(out, np.sqrt(np.arange(40)) + len(name))


def test_no_workers_without_numba_or_without_tuning(monkeypatch):
    with td.backends.reference():
        assert chunk_workers(8) == 1
    monkeypatch.setattr(_threads, "WORKERS_ALLOWED", False)          # as before td.backends.cpu.tune()
    assert chunk_workers(8) == 1


def serial_and_parallel(monkeypatch, compute):
    """compute() run once with every kernel on one thread, once with every kernel parallel."""
    monkeypatch.setattr(_dispatch, "PARALLEL_MIN_SIZE", BIG)
    serial = compute()
    monkeypatch.setattr(_dispatch, "PARALLEL_MIN_SIZE", 0)
    return serial, compute()


@pytest.mark.parametrize("name, shape, kwargs", [
    ("shifted planes", (5, 3, 6, 7), dict(kernel_size=3, stride=1, padding=1, dilation=1)),
    ("wide: planes serially, rows in parallel", (2, 2, 5, 33),
     dict(kernel_size=3, stride=1, padding=(2, 0, 1, 1), dilation=(1, 1))),
    ("general", (5, 3, 9, 40), dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2))),
])
def test_serial_twins_are_bit_identical_im2col(monkeypatch, name, shape, kwargs):
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    cols = im2col_mod.im2col_reference(x, **kwargs)
    serial, parallel = serial_and_parallel(monkeypatch, lambda: (im2col_mod.im2col_numba(x, **kwargs),
                                                                 im2col_mod.col2im_numba(cols, shape, **kwargs)))
    for a, b in zip(serial, parallel):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(serial[0], cols)


def _fused_batch_norm(x, g, weight, bias):
    """The fused batch-norm route's outputs, training then evaluation (the buffers updated in
    place), then with a residual and a ReLU."""
    from tinydl.kernels import norm
    running = [np.zeros(x.shape[1], x.dtype), np.ones(x.shape[1], x.dtype)]
    out = []
    for training, residual in ((True, None), (False, None), (True, g[::-1].copy())):
        relu = residual is not None
        y, saved = norm.batch_norm_forward_fused_numba(x, weight, bias, *running, training, 0.1, 1e-5, residual, relu)
        out += [y, *saved, *running, *norm.batch_norm_backward_fused_numba(
            g, x, saved, training, True, True, y if relu else None, relu)]
    return [a for a in out if a is not None]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_serial_twins_are_bit_identical_relu_pool_batch_norm(monkeypatch, dtype):
    from tinydl.kernels import activation, norm, pool
    rng = np.random.default_rng(1)
    x, g = (rng.standard_normal((3, 4, 9, 10)).astype(dtype) for _ in range(2))
    mean, a, k, b = (rng.standard_normal(4).astype(dtype) for _ in range(4))

    def compute():
        y, idx = pool.max_pool2d_forward_numba(x, 2)
        return (activation.relu_forward_numba(x), activation.relu_backward_numba(g, x),
                pool.max_pool2d_backward_numba(y, idx, x.shape),
                *norm.batch_norm_stats_numba(x), norm.batch_norm_affine_numba(x, mean, a, b),
                *norm.batch_norm_grad_sums_numba(g, x, mean), norm.batch_norm_input_grad_numba(g, x, mean, a, k, b),
                *_fused_batch_norm(x, g, a, b))
    serial, parallel = serial_and_parallel(monkeypatch, compute)
    for s, p in zip(serial, parallel):
        assert s.dtype == p.dtype
        np.testing.assert_array_equal(s, p)


@pytest.mark.parametrize("kwargs, w_shape", [
    (dict(padding=1), (4, 4, 3, 3)),                                       # backward from gy's columns
    (dict(stride=2, padding=1), (6, 4, 3, 3)),                             # columns of x kept, col2im
    (dict(padding=1), (6, 4, 3, 3)),                                       # stride 1, columns of x kept
])
@pytest.mark.usefixtures("forced_route_runs")
def test_chunked_convolution_on_the_workers_matches_torch(monkeypatch, kwargs, w_shape):
    from tinydl.kernels.conv import Chunked
    monkeypatch.setattr(Chunked, "chunk_bytes", 1)                       # one image per chunk: 9 chunks
    rng = np.random.default_rng(3)
    x, w, b = rng.standard_normal((9, 4, 8, 7)), rng.standard_normal(w_shape), rng.standard_normal(w_shape[0])
    xo, wo, bo = (td.tensor(a, requires_grad=True) for a in (x, w, b))
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    route = "gy_columns" if w_shape[0] == 4 else "chunked"
    with td.backends.route(conv2d=route), td.backends.record_routes() as taken:
        yo = F.conv2d(xo, wo, bo, **kwargs)
        g = rng.standard_normal(yo.shape)
        yo.backward(td.tensor(g))
    assert taken == [("conv2d", route)]
    yt = torch.nn.functional.conv2d(xt, wt, bt, **kwargs)
    yt.backward(torch.tensor(g))
    for ours, theirs in ((yo, yt), (xo.grad, xt.grad), (wo.grad, wt.grad), (bo.grad, bt.grad)):
        np.testing.assert_allclose(ours.detach().numpy(), theirs.detach().numpy(), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kwargs, w_shape, x_needs_grad", [
    (dict(stride=2, padding=1, output_padding=1), (4, 3, 3, 3), True),
    (dict(stride=2, groups=2, dilation=2), (4, 2, 3, 2), True),
    (dict(stride=3, padding=1, output_padding=2), (4, 5, 2, 2), False),   # extra rows; dL/dW only
])
@pytest.mark.usefixtures("forced_route_runs")
def test_chunked_transposed_convolution_on_the_workers_matches_torch(monkeypatch, kwargs, w_shape, x_needs_grad):
    from tinydl.kernels.conv import Chunked
    monkeypatch.setattr(Chunked, "chunk_bytes", 1)                       # one image per chunk: 9 chunks
    rng = np.random.default_rng(4)
    c_out = w_shape[1] * kwargs.get("groups", 1)
    x, w, b = rng.standard_normal((9, 4, 6, 5)), rng.standard_normal(w_shape), rng.standard_normal(c_out)
    xo, xt = td.tensor(x, requires_grad=x_needs_grad), torch.tensor(x, requires_grad=x_needs_grad)
    wo, bo = (td.tensor(a, requires_grad=True) for a in (w, b))
    wt, bt = (torch.tensor(a, requires_grad=True) for a in (w, b))
    with td.backends.route(conv_transpose2d="chunked"), td.backends.record_routes() as taken:
        yo = F.conv_transpose2d(xo, wo, bo, **kwargs)
        g = rng.standard_normal(yo.shape)
        yo.backward(td.tensor(g))
    assert taken == [("conv_transpose2d", "chunked")]
    yt = torch.nn.functional.conv_transpose2d(xt, wt, bt, **kwargs)
    yt.backward(torch.tensor(g))
    pairs = [(yo, yt), (wo.grad, wt.grad), (bo.grad, bt.grad)] + ([(xo.grad, xt.grad)] if x_needs_grad else [])
    for ours, theirs in pairs:
        np.testing.assert_allclose(ours.detach().numpy(), theirs.detach().numpy(), rtol=1e-10, atol=1e-10)
    assert x_needs_grad or xo.grad is None


@needs_workers
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows, split", [(96, False), (256, True)])
def test_linear_products_on_one_thread_or_split_over_the_workers_match_torch(dtype, rows, split, monkeypatch):
    """kernels/matmul.py: Linear's three products against torch's linear, on one thread
    (96 x 600 x 120: OpenBLAS would thread it) or with their rows split over the workers
    (256 rows: M*N*K above SPLIT_PRODUCT_MIN)."""
    from tinydl.kernels import matmul as M
    handed_out = []
    monkeypatch.setattr(M, "run_chunks", lambda work, chunks: (handed_out.append(len(chunks)),
                                                               run_chunks(work, chunks)))
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((rows, 600)), rng.standard_normal((120, 600)), rng.standard_normal(120)
    x, w, b = (a.astype(dtype) for a in (x, w, b))
    gy = rng.standard_normal((rows, 120)).astype(dtype)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    torch.nn.functional.linear(tx, tw, tb).backward(torch.tensor(gy))
    xs, ws, bs = (td.tensor(a, requires_grad=True) for a in (x, w, b))
    y = F.linear(xs, ws, bs)
    y.backward(td.tensor(gy))
    assert handed_out == ([chunk_workers(rows), chunk_workers(rows), chunk_workers(120)] if split else [])
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(y.array, torch.nn.functional.linear(tx, tw, tb).detach().numpy(), **tol)
    for ours, theirs in ((xs, tx), (ws, tw), (bs, tb)):
        assert ours.grad.dtype == dtype
        np.testing.assert_allclose(ours.grad.array, theirs.grad.numpy(), **tol)


@needs_workers
def test_single_threaded_blas_sets_one_thread_and_restores_unless_run_chunks_owns_the_setting(monkeypatch):
    calls = []
    monkeypatch.setattr(_threads, "_blas_controls", lambda: (calls.append, lambda: 7))
    with _threads.single_threaded_blas():
        assert calls == [1]
    assert calls == [1, 7]
    calls.clear()
    with _threads._busy:                       # a run_chunks in flight owns OpenBLAS's setting
        with _threads.single_threaded_blas():
            pass
    assert calls == []


@needs_workers
@pytest.mark.usefixtures("routes_on_small_shapes")
@pytest.mark.parametrize("stride", [(1, 1), (2, 2), (2, 1)])
def test_pointwise_route_with_images_on_every_worker_matches_torch(stride):
    """The 1x1 route's per-worker shares (the strided copy into x3, the products, the dL/dW
    shares) on a batch of 7 from a non-contiguous input, float64, against torch."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((7, 6, 9, 20))[..., ::2]                    # (7, 6, 9, 10), not contiguous
    w, gy_shape = rng.standard_normal((5, 6, 1, 1)), (7, 5) + tuple(-(-n // s) for n, s in zip((9, 10), stride))
    gy = rng.standard_normal(gy_shape)
    xs, ws = td.Tensor(x, requires_grad=True), td.tensor(w, requires_grad=True)     # Tensor: x as it is
    assert not xs.array.flags.c_contiguous
    with td.backends.record_routes() as taken:      # first: no copy of x lies freed in memory yet
        y = F.conv2d(xs, ws, stride=stride)
    assert taken == [("conv2d", "pointwise")]
    y.backward(td.tensor(gy))
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    torch.nn.functional.conv2d(tx, tw, stride=stride).backward(torch.tensor(gy))
    np.testing.assert_allclose(y.array, torch.nn.functional.conv2d(tx, tw, stride=stride).detach().numpy(),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(xs.grad.array, tx.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ws.grad.array, tw.grad.numpy(), rtol=1e-12, atol=1e-12)
