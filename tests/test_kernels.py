"""Tests of tinydl/kernels: im2col/col2im, the pooling kernels and the batch-norm kernels.

* the NumPy reference, the Numba and (on a GPU) the CuPy versions must agree
  exactly, in float32 and float64;
* the reference itself is checked against PyTorch (unfold/fold, max_pool2d with
  indices, max_unpool2d, avg_pool2d) and against the adjoint identity
  <im2col(x), c> == <x, col2im(c)>;
* the batch-norm kernels: Numba equals the NumPy reference to rounding (their
  sums may add in another order), the reference equals a float64 oracle, and
  the statistics stay accurate when a channel's mean dwarfs its spread.
"""
import importlib

import numpy as np
import pytest

import tinydl as td
from tinydl import kernels as K
from tinydl.args import pair
from tinydl.kernels import _dispatch

# The package re-exports the function ``im2col``, which hides the submodule of
# the same name as an attribute; fetch the module itself for monkeypatching.
im2col_mod = importlib.import_module("tinydl.kernels.im2col")

torch = pytest.importorskip("torch")
import torch.nn.functional as TF  # noqa: E402

DTYPES = [np.float32, np.float64]

# (x_shape, kernel, stride, padding, dilation); padding may be int, (ph, pw) or (t, b, l, r).
CONV_CASES = [
    ((2, 3, 7, 9), 3, 1, 1, 1),  # odd sizes, 'same'
    ((2, 3, 7, 9), 3, 1, 0, 1),  # no padding
    ((2, 2, 8, 8), 2, 3, 0, 1),  # stride > kernel: gaps between windows
    ((1, 2, 9, 7), 3, 2, 2, 1),  # padding k-1, batch 1
    ((2, 3, 9, 10), 3, 1, 2, 2),  # dilation
    ((2, 2, 11, 9), (3, 2), (2, 3), (1, 0), (2, 3)),  # everything rectangular
    ((3, 4, 5, 6), 1, 1, 0, 1),  # 1x1
    ((2, 3, 6, 6), 1, 2, 1, 1),  # 1x1 strided, padding only read as pad_value
    ((2, 2, 5, 4), (5, 4), 1, 0, 1),  # kernel = input size: one output
    ((1, 1, 1, 1), 3, 1, 1, 1),  # 1x1 image, 3x3 kernel
    ((2, 3, 7, 8), 4, 1, (1, 2, 2, 1), 1),  # asymmetric: 'same' with an even kernel
    ((2, 2, 7, 7), 3, 2, (0, 2, 1, 3), 1),  # asymmetric, extra bottom/right (ceil_mode-like)
    # stride 1 with the width kept takes the Numba kernel's whole-plane copy:
    ((2, 2, 6, 5), 3, 1, (0, 0, 1, 1), 1),  # fewer rows than the input
    ((1, 2, 4, 3), (1, 5), 1, (0, 0, 2, 2), 1),  # kernel wider than the image
    ((2, 1, 5, 4), 3, 1, 3, 3),  # dilation 3 on a 4-wide image: shifts of most of a row
    ((2, 2, 3, 4), 3, 1, (2, 2, 1, 1), (2, 1)),  # some taps read only padding rows
]


def case_id(case):
    return "x{}-k{}-s{}-p{}-d{}".format(*case).replace(" ", "")


def rand(shape, dtype, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def make_input(shape, dtype, contiguous=True, seed=0):
    """An input of ``shape``; non-contiguous means a transposed view of (N, C, W, H)."""
    if contiguous:
        return rand(shape, dtype, seed)
    N, C, H, W = shape
    x = rand((N, C, W, H), dtype, seed).transpose(0, 1, 3, 2)
    assert not x.flags.c_contiguous or H * W == 1
    return x


def out_hw(case):
    shape, k, s, p, d = case
    return K.conv_output_size(shape[2:], k, s, p, d)


# ----------------------------------------------------------------------------- im2col / col2im
@pytest.fixture(params=["row kernels", "per-element kernels"])
def numba_kernels(request, monkeypatch):
    """Runs a test with each family of Numba im2col/col2im kernels (chosen by size)."""
    monkeypatch.setattr(im2col_mod, "SMALL_SIZE", -1 if request.param == "row kernels" else 1 << 62)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONV_CASES, ids=case_id)
def test_im2col_numba_equals_reference(case, dtype, numba_kernels):
    shape, k, s, p, d = case
    for contiguous in (True, False):
        x = make_input(shape, dtype, contiguous)
        for pad_value in (0.0, -np.inf):
            ref = K.im2col_reference(x, k, s, p, d, pad_value=pad_value)
            fast = K.im2col_numba(x, k, s, p, d, pad_value=pad_value)
            assert fast.dtype == ref.dtype == dtype
            np.testing.assert_array_equal(fast, ref)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONV_CASES, ids=case_id)
def test_col2im_numba_equals_reference(case, dtype, numba_kernels):
    shape, k, s, p, d = case
    Ho, Wo = out_hw(case)
    kh, kw = pair(k)
    cols = rand((shape[1] * kh * kw, shape[0] * Ho * Wo), dtype, seed=1)
    ref = K.col2im_reference(cols, shape, k, s, p, d)
    fast = K.col2im_numba(cols, shape, k, s, p, d)
    assert fast.shape == ref.shape == shape and fast.dtype == ref.dtype == dtype
    np.testing.assert_array_equal(fast, ref)  # same summation order: bit-identical


def torch_unfold(x, k, s, p, d):
    """PyTorch's unfold rearranged to our (C*kh*kw, N*Ho*Wo) layout; uneven padding by np.pad."""
    pt, pb, pl, pr = _dispatch.padding4(p)
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    u = TF.unfold(torch.from_numpy(xp), pair(k), dilation=pair(d), stride=pair(s))
    return u.numpy().transpose(1, 0, 2).reshape(u.shape[1], -1)


@pytest.mark.parametrize("case", CONV_CASES, ids=case_id)
def test_im2col_matches_torch_unfold(case):
    shape, k, s, p, d = case
    x = rand(shape, np.float64)
    np.testing.assert_array_equal(K.im2col_reference(x, k, s, p, d), torch_unfold(x, k, s, p, d))


@pytest.mark.parametrize("case", CONV_CASES, ids=case_id)
def test_col2im_matches_torch_fold(case):
    shape, k, s, p, d = case
    N, C, H, W = shape
    pt, pb, pl, pr = _dispatch.padding4(p)
    Ho, Wo = out_hw(case)
    kh, kw = pair(k)
    cols = rand((C * kh * kw, N * Ho * Wo), np.float64, seed=2)
    # torch.fold wants (N, C*kh*kw, L); fold into the padded size, then crop.
    t = torch.from_numpy(np.ascontiguousarray(cols.reshape(C * kh * kw, N, Ho * Wo).transpose(1, 0, 2)))
    folded = TF.fold(t, (H + pt + pb, W + pl + pr), (kh, kw), dilation=pair(d), stride=pair(s))
    expected = folded.numpy()[:, :, pt : pt + H, pl : pl + W]
    np.testing.assert_allclose(K.col2im_reference(cols, shape, k, s, p, d), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("impl", ["reference", "numba"])
@pytest.mark.parametrize("case", CONV_CASES, ids=case_id)
def test_col2im_is_adjoint_of_im2col(case, impl):
    shape, k, s, p, d = case
    im2col = getattr(K, f"im2col_{impl}")
    col2im = getattr(K, f"col2im_{impl}")
    x = rand(shape, np.float64, seed=3)
    cols_x = im2col(x, k, s, p, d)
    c = rand(cols_x.shape, np.float64, seed=4)
    lhs = np.vdot(cols_x, c)
    rhs = np.vdot(x, col2im(c, shape, k, s, p, d))
    assert abs(lhs - rhs) <= 1e-10 * (1 + abs(lhs))


def test_layout_formula():
    """One element spelled out, so the documented layout is pinned down."""
    x = rand((2, 3, 6, 7), np.float64)
    k, s, p, d = (3, 2), (2, 1), (1, 2, 0, 1), (1, 2)
    cols = K.im2col(x, k, s, p, d)
    Ho, Wo = K.conv_output_size((6, 7), k, s, p, d)
    assert cols.shape == (3 * 3 * 2, 2 * Ho * Wo)
    n, c, i, j, ho, wo = 1, 2, 2, 1, 1, 3
    h, w = ho * 2 - 1 + i * 1, wo * 1 - 0 + j * 2
    assert cols[(c * 3 + i) * 2 + j, (n * Ho + ho) * Wo + wo] == x[n, c, h, w]


def test_bad_geometry_raises():
    x = np.zeros((1, 1, 3, 3), np.float32)
    with pytest.raises(ValueError):
        K.im2col(x, 5)  # window larger than the input
    with pytest.raises(ValueError):
        K.im2col(x, 3, padding=(1, 2, 3))
    with pytest.raises(ValueError):
        K.im2col(x[0], 3)  # not 4-D


# ----------------------------------------------------------------------------- dispatch / buffers
def test_dispatch_respects_env(monkeypatch):
    calls = []
    monkeypatch.setattr(im2col_mod, "im2col_reference", lambda *a, **k: calls.append("ref"))
    monkeypatch.setattr(im2col_mod, "im2col_numba", lambda *a, **k: calls.append("numba"))
    monkeypatch.setattr(im2col_mod, "col2im_reference", lambda *a, **k: calls.append("ref"))
    monkeypatch.setattr(im2col_mod, "col2im_numba", lambda *a, **k: calls.append("numba"))
    x = np.zeros((1, 1, 3, 3), np.float32)
    with td.backends.reference(False):
        K.im2col(x, 2)
        K.col2im(x, x.shape, 1)
        K.im2col(x.astype(np.float16), 2)  # not a compiled dtype -> reference
    with td.backends.reference():
        K.im2col(x, 2)
        K.col2im(x, x.shape, 1)
    assert calls == ["numba", "numba", "ref", "ref", "ref"]


@pytest.mark.parametrize("impl", ["reference", "numba"])
def test_out_buffer_is_used(impl):
    x = rand((2, 3, 5, 5), np.float32)
    im2col = getattr(K, f"im2col_{impl}")
    col2im = getattr(K, f"col2im_{impl}")
    buf = np.full(3 * 9 * 2 * 25, np.nan, np.float32)  # flat is fine: only size/order matter
    cols = im2col(x, 3, 1, 1, 1, out=buf)
    assert np.shares_memory(cols, buf) and cols.shape == (27, 50)
    np.testing.assert_array_equal(cols, K.im2col_reference(x, 3, 1, 1, 1))
    img = np.full(x.shape, np.nan, np.float32)
    back = col2im(cols, x.shape, 3, 1, 1, 1, out=img)
    assert np.shares_memory(back, img)  # img is overwritten, not added to
    np.testing.assert_array_equal(img, K.col2im_reference(cols, x.shape, 3, 1, 1, 1))
    with pytest.raises(ValueError):
        im2col(x, 3, 1, 1, 1, out=np.empty(27 * 50, np.float64))  # wrong dtype
    with pytest.raises(ValueError):
        im2col(x, 3, 1, 1, 1, out=np.empty(27 * 49, np.float32))  # wrong size


def test_workspace_reuses_memory():
    key = "test_kernels.ws"
    try:
        a = K.workspace((4, 5), np.float32, key)
        b = K.workspace((2, 3), np.float32, key)  # smaller: same memory
        assert a.shape == (4, 5) and b.shape == (2, 3) and np.shares_memory(a, b)
        c = K.workspace((10, 10), np.float32, key)  # larger: grows
        d = K.workspace((10, 10), np.float32, key)
        assert np.shares_memory(c, d) and not np.shares_memory(a, c)
        e = K.workspace((10, 10), np.float64, key)  # other dtype: new buffer
        assert e.dtype == np.float64 and not np.shares_memory(d, e)
        assert not np.shares_memory(e, K.workspace((10, 10), np.float64, key + "2"))
    finally:
        K.clear_workspace(key)
        K.clear_workspace(key + "2")


# ----------------------------------------------------------------------------- max pooling
# (x_shape, kernel, stride, padding, dilation, ceil_mode)
POOL_CASES = [
    ((2, 3, 8, 8), 2, None, 0, 1, False),
    ((2, 3, 9, 7), 3, 2, 1, 1, False),
    ((2, 3, 9, 7), 3, 2, 1, 1, True),  # ceil_mode adds a partial window
    ((1, 2, 10, 11), 3, 2, 0, 1, True),
    ((2, 2, 11, 10), (3, 2), (2, 1), (1, 1), (2, 1), False),  # dilation, rectangular
    ((2, 2, 12, 13), 3, 3, 1, 2, True),
    ((2, 2, 6, 6), 2, 3, 1, 1, True),  # stride > kernel
    ((1, 1, 5, 5), 5, 1, 2, 1, False),  # padding = k // 2, overlapping heavily
    ((3, 2, 7, 7), 1, 2, 0, 1, True),
]


def pool_id(case):
    return "x{}-k{}-s{}-p{}-d{}-ceil{}".format(*case).replace(" ", "")


def distinct(shape, dtype, seed=0):
    """Tie-free values: a random permutation, so argmax has one answer."""
    n = int(np.prod(shape))
    return (np.random.default_rng(seed).permutation(n).reshape(shape) / n - 0.5).astype(dtype)


def torch_max_pool(x, k, s, p, d, ceil):
    y, idx = TF.max_pool2d(torch.from_numpy(x), k, s, p, d, ceil_mode=ceil, return_indices=True)
    return y.numpy(), idx.numpy()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", POOL_CASES, ids=pool_id)
def test_max_pool_forward_matches_torch(case, dtype):
    shape, k, s, p, d, ceil = case
    x = distinct(shape, dtype)
    y_t, i_t = torch_max_pool(x, k, s, p, d, ceil)
    for impl in (K.max_pool2d_forward_reference, K.max_pool2d_forward_numba):
        y, idx = impl(x, k, s, p, d, ceil)
        assert y.dtype == dtype and idx.dtype == np.int64
        np.testing.assert_array_equal(y, y_t)
        np.testing.assert_array_equal(idx, i_t)


@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool_non_contiguous_and_special_values(dtype):
    """-inf windows, NaN and ties follow PyTorch's scan in both paths."""
    x = distinct((2, 2, 7, 8), dtype)
    x[0, 0, :3, :3] = -np.inf  # a padded corner window with only -inf pixels
    x[0, 1, 2, 2] = np.nan
    x[0, 1, 2, 3] = np.nan  # two NaNs in one window: the last one wins
    x[1, 0] = 0.25  # all ties: the first pixel of each window wins
    view = np.ascontiguousarray(x.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)  # same values, strided
    assert not view.flags.c_contiguous
    y_t, i_t = torch_max_pool(x, 3, 2, 1, 1, True)
    for impl in (K.max_pool2d_forward_reference, K.max_pool2d_forward_numba):
        y, idx = impl(view, 3, 2, 1, 1, True)
        np.testing.assert_array_equal(y, y_t)  # NaN == NaN for assert_array_equal
        np.testing.assert_array_equal(idx, i_t)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k, s, p, d, ceil", [(2, 2, 0, 1, False), (3, 2, 0, 1, False), (3, 1, 0, 2, False),
                                              (2, 3, 0, 1, False), (2, 2, 0, 1, True), (3, 2, 1, 1, False),
                                              (3, 1, 1, 2, True), (3, 2, 1, 3, False), (2, 2, 1, 1, True)])
def test_max_pool_interior_kernel_special_values(monkeypatch, k, s, p, d, ceil, dtype):
    """Windows wholly inside the image take the kernel with the window size compiled
    in (kernels/pool.py); it must keep PyTorch's scan: -inf windows, the last NaN,
    the first of ties. Windows that reach the padding or run off the edge in
    ceil_mode take the general kernel, which skips the inner block."""
    pool_mod = importlib.import_module("tinydl.kernels.pool")
    x = distinct((2, 3, 9, 11), dtype)
    x[0, 0, :4, :4] = -np.inf
    x[0, 1, 2, 2] = x[0, 1, 2, 3] = x[0, 1, 3, 2] = np.nan
    x[1, 0] = 0.25
    x[1, 2, ::2] = -0.0
    x[1, 1, :, -1] = np.nan                                          # NaN in the border windows too
    calls = []
    general, interior = pool_mod._max_pool_kernel, pool_mod._interior_max_pool_kernel
    monkeypatch.setattr(pool_mod, "_max_pool_kernel", lambda *a: (calls.append("general"), general(*a)))
    monkeypatch.setattr(pool_mod, "_interior_max_pool_kernel",
                        lambda *geometry: (calls.append("interior"), interior(*geometry))[1])
    y_t, i_t = torch_max_pool(x, k, s, p, d, ceil)
    y, idx = K.max_pool2d_forward_numba(x, k, s, p, d, ceil)
    np.testing.assert_array_equal(y, y_t)
    np.testing.assert_array_equal(idx, i_t)
    ho, wo = y.shape[2:]
    all_inside = p == 0 and (ho - 1) * s + (k - 1) * d < 9 and (wo - 1) * s + (k - 1) * d < 11
    assert calls == ["interior"] if all_inside else calls == ["interior", "general"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", POOL_CASES, ids=pool_id)
def test_max_pool_backward(case, dtype):
    shape, k, s, p, d, ceil = case
    x = distinct(shape, dtype, seed=1)
    _, idx = K.max_pool2d_forward(x, k, s, p, d, ceil)
    gy = rand(idx.shape, dtype, seed=2)
    ref = K.max_pool2d_backward_reference(gy, idx, shape)
    fast = K.max_pool2d_backward_numba(gy, idx, shape)
    assert fast.dtype == ref.dtype == dtype
    np.testing.assert_array_equal(fast, ref)  # same accumulation order
    xt = torch.from_numpy(x).requires_grad_()
    TF.max_pool2d(xt, k, s, p, d, ceil_mode=ceil).backward(torch.from_numpy(gy))
    tol = 1e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(ref, xt.grad.numpy(), rtol=tol, atol=tol)


@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("bad", [-1, 36])
def test_max_pool_backward_refuses_an_index_outside_the_plane(monkeypatch, bad, parallel):
    """The Numba kernel checks each index as it scatters (and writes nothing outside the
    plane), in the parallel kernel and in its serial twin."""
    pool_mod = importlib.import_module("tinydl.kernels.pool")
    if parallel:                                  # below PARALLEL_MIN_SIZE the twin runs
        monkeypatch.setattr(pool_mod, "for_this_thread", lambda kernel, size: kernel)
    gy, idx = np.ones((2, 3, 3, 3), np.float32), np.zeros((2, 3, 3, 3), np.int64)
    idx[1, 2, 2, 1] = bad
    with pytest.raises(IndexError, match="out of range for a 6x6 plane"):
        K.max_pool2d_backward_numba(gy, idx, (2, 3, 6, 6))
    idx[1, 2, 2, 1] = 35
    assert K.max_pool2d_backward_numba(gy, idx, (2, 3, 6, 6)).sum() == gy.sum()


def test_max_pool_checks_padding():
    with pytest.raises(ValueError):
        K.max_pool2d_forward(np.zeros((1, 1, 6, 6), np.float32), 2, 2, 2)  # torch refuses too


# ----------------------------------------------------------------------------- max unpool
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", [((2, 3, 8, 8), 2, 2, 0), ((2, 2, 9, 7), 3, 2, 1), ((1, 2, 7, 7), 2, 2, 0)])
def test_max_unpool_matches_torch(case, dtype):
    shape, k, s, p = case
    x = distinct(shape, dtype)
    y, idx = TF.max_pool2d(torch.from_numpy(x), k, s, p, return_indices=True)
    out_size = shape[2:]  # the pre-pooling size (needed when it is odd)
    expected = TF.max_unpool2d(y, idx, k, s, p, output_size=out_size).numpy()
    got = K.max_unpool2d_forward(y.numpy(), idx.numpy(), out_size)
    np.testing.assert_array_equal(got, expected)
    # backward: a gather of the upstream gradient at the switches
    gy = rand(expected.shape, dtype, seed=5)
    yt = y.clone().requires_grad_()
    TF.max_unpool2d(yt, idx, k, s, p, output_size=out_size).backward(torch.from_numpy(gy))
    np.testing.assert_array_equal(K.max_unpool2d_backward(gy, idx.numpy()), yt.grad.numpy())


def test_max_unpool_rejects_bad_indices():
    x = np.ones((1, 1, 2, 2), np.float32)
    with pytest.raises(IndexError):
        K.max_unpool2d_forward(x, np.full((1, 1, 2, 2), 16, np.int64), (4, 4))


# ----------------------------------------------------------------------------- avg pooling
# (x_shape, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override)
AVG_CASES = [
    ((2, 3, 8, 8), 2, None, 0, False, True, None),
    ((2, 3, 9, 7), 3, 2, 1, False, True, None),
    ((2, 3, 9, 7), 3, 2, 1, False, False, None),
    ((2, 3, 9, 7), 3, 2, 1, True, True, None),  # overhang not counted, padding counted
    ((2, 3, 9, 7), 3, 2, 1, True, False, None),
    ((1, 2, 10, 11), (3, 2), (2, 3), (1, 1), True, True, None),
    ((1, 2, 6, 6), 2, 3, 1, True, False, None),
    ((2, 2, 7, 7), 3, 2, 1, True, True, 5),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", AVG_CASES, ids=lambda c: "x{}-k{}-s{}-p{}-ceil{}-cip{}-div{}".format(*c))
def test_avg_pool_matches_torch(case, dtype):
    shape, k, s, p, ceil, cip, div = case
    x = rand(shape, dtype)
    args = (k, s, p, ceil, cip, div)
    xt = torch.from_numpy(x).requires_grad_()
    yt = TF.avg_pool2d(xt, k, s, p, ceil_mode=ceil, count_include_pad=cip, divisor_override=div)
    y = K.avg_pool2d_forward(x, *args)
    tol = 1e-6 if dtype == np.float32 else 1e-12
    assert y.dtype == dtype
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=tol, atol=tol)
    gy = rand(y.shape, dtype, seed=6)
    yt.backward(torch.from_numpy(gy))
    gx = K.avg_pool2d_backward(gy, shape, *args)
    assert gx.dtype == dtype
    np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=tol, atol=tol)


def test_avg_pool_divisor_example():
    # H = W = 5, k = 3, s = 2, p = 1, ceil_mode: windows start at -1, 1, 3 and the
    # last one [3, 6) overhangs the padded input [-1, 6) by nothing, so counts with
    # padding are 3, 3, 3 and real counts 2, 3, 2.
    np.testing.assert_array_equal(K.avg_pool2d_divisor((5, 5), 3, 2, 1, True, True), np.full((3, 3), 9.0))
    np.testing.assert_array_equal(K.avg_pool2d_divisor((5, 5), 3, 2, 1, True, False),
                                  np.outer([2, 3, 2], [2, 3, 2]))
    # H = 6: windows at -1, 1, 3, 5; the last, [5, 8), is cut at 6 + 1 = 7 -> 2 with padding.
    np.testing.assert_array_equal(K.avg_pool2d_divisor((6, 6), 3, 2, 1, True, True)[:, 0], [3 * 3, 9, 9, 2 * 3])


# ----------------------------------------------------------------------------- GPU (CuPy)
def _cupy_or_skip():
    cupy = pytest.importorskip("cupy", reason="CuPy is not installed")
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # no driver / no device
        pytest.skip(f"no CUDA device: {e}")
    if n == 0:
        pytest.skip("no CUDA device")
    return cupy


@pytest.mark.gpu
class TestCupyKernels:
    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize("case", CONV_CASES, ids=case_id)
    def test_im2col_col2im(self, case, dtype):
        cp = _cupy_or_skip()
        shape, k, s, p, d = case
        x = make_input(shape, dtype, contiguous=False)
        cols_ref = K.im2col_reference(x, k, s, p, d, pad_value=-np.inf)
        cols_gpu = K.im2col(cp.asarray(x), k, s, p, d, pad_value=-np.inf)  # dispatches to CuPy
        assert isinstance(cols_gpu, cp.ndarray) and cols_gpu.dtype == dtype
        np.testing.assert_array_equal(cp.asnumpy(cols_gpu), cols_ref)
        c = rand(cols_ref.shape, dtype, seed=1)
        img_gpu = K.col2im_cupy(cp.asarray(c), shape, k, s, p, d)
        np.testing.assert_array_equal(cp.asnumpy(img_gpu), K.col2im_reference(c, shape, k, s, p, d))

    @pytest.mark.parametrize("case", POOL_CASES, ids=pool_id)
    def test_pooling(self, case):
        cp = _cupy_or_skip()
        shape, k, s, p, d, ceil = case
        x = distinct(shape, np.float32)
        y, idx = K.max_pool2d_forward(cp.asarray(x), k, s, p, d, ceil)
        y_ref, idx_ref = K.max_pool2d_forward_reference(x, k, s, p, d, ceil)
        np.testing.assert_array_equal(cp.asnumpy(y), y_ref)
        np.testing.assert_array_equal(cp.asnumpy(idx), idx_ref)
        gy = rand(idx_ref.shape, np.float32, seed=2)
        gx = K.max_pool2d_backward(cp.asarray(gy), idx, shape)  # atomics: order may vary
        np.testing.assert_allclose(cp.asnumpy(gx), K.max_pool2d_backward_reference(gy, idx_ref, shape),
                                   rtol=1e-6, atol=1e-6)
        up = K.max_unpool2d_forward(cp.asarray(y_ref), idx, shape[2:])
        np.testing.assert_array_equal(cp.asnumpy(up), K.max_unpool2d_forward(y_ref, idx_ref, shape[2:]))
        g_up = rand(shape, np.float32, seed=3)
        np.testing.assert_array_equal(cp.asnumpy(K.max_unpool2d_backward(cp.asarray(g_up), idx)),
                                      K.max_unpool2d_backward(g_up, idx_ref))
        if d == 1:
            ya = K.avg_pool2d_forward(cp.asarray(x), k, s, p, ceil, False)
            np.testing.assert_allclose(cp.asnumpy(ya), K.avg_pool2d_forward(x, k, s, p, ceil, False),
                                       rtol=1e-6, atol=1e-6)

    @pytest.mark.parametrize("dtype", DTYPES)
    def test_max_pool_special_values_and_float64(self, dtype):
        """The CUDA scan keeps PyTorch's rules: -inf windows, the last NaN, first of ties."""
        cp = _cupy_or_skip()
        x = distinct((2, 2, 7, 8), dtype)
        x[0, 0, :3, :3] = -np.inf
        x[0, 1, 2, 2] = x[0, 1, 2, 3] = np.nan
        x[1, 0] = 0.25
        view = cp.asarray(x).transpose(0, 1, 3, 2).copy().transpose(0, 1, 3, 2)   # strided on the GPU
        y, idx = K.max_pool2d_forward(view, 3, 2, 1, 1, True)
        y_t, i_t = torch_max_pool(x, 3, 2, 1, 1, True)
        assert y.dtype == dtype and idx.dtype == np.int64
        np.testing.assert_array_equal(cp.asnumpy(y), y_t)
        np.testing.assert_array_equal(cp.asnumpy(idx), i_t)


# ----------------------------------------------------------------------------- batch-norm kernels
# tinydl.kernels does not re-export these (yet): use the module.
norm_mod = importlib.import_module("tinydl.kernels.norm")

BN_SHAPES = [(5, 3), (1, 2, 7), (4, 3, 5, 6), (2, 3, 2, 3, 4), (3, 1, 1, 1), (7, 4, 3, 1)]


def _bn_arrays(shape, dtype, seed, contiguous=True):
    rng = np.random.default_rng(seed)
    c = shape[1]
    if contiguous:
        x = rng.standard_normal(shape) * 2 + rng.standard_normal(c).reshape((1, c) + (1,) * (len(shape) - 2))
    else:                                   # a transposed view: the kernels must copy or cope
        x = rng.standard_normal(shape[::-1]).T
    g = rng.standard_normal(shape)
    vecs = [rng.standard_normal(c) for _ in range(4)]
    return [a.astype(dtype) for a in [x, g] + vecs]


def _bn_tol(dtype):
    return dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("contiguous", [True, False], ids=["contiguous", "transposed"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", BN_SHAPES, ids=str)
def test_batch_norm_kernels_numba_equal_reference(shape, dtype, contiguous):
    x, g, mean, a, k, b = _bn_arrays(shape, dtype, seed=1, contiguous=contiguous)
    tol = _bn_tol(dtype)
    pairs = [
        (norm_mod.batch_norm_stats_numba(x), norm_mod.batch_norm_stats_reference(x)),
        (norm_mod.batch_norm_affine_numba(x, mean, a, b), norm_mod.batch_norm_affine_reference(x, mean, a, b)),
        (norm_mod.batch_norm_grad_sums_numba(g, x, mean), norm_mod.batch_norm_grad_sums_reference(g, x, mean)),
        (norm_mod.batch_norm_input_grad_numba(g, x, mean, a, k, b), norm_mod.batch_norm_input_grad_reference(g, x, mean, a, k, b)),
    ]
    for got, want in pairs:
        got, want = (got, want) if isinstance(got, tuple) else ((got,), (want,))
        for u, v in zip(got, want):
            assert u.dtype == dtype and u.shape == v.shape
            np.testing.assert_allclose(u, v, **tol)


@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_norm_reference_matches_float64_formulas(dtype):
    x, g, mean, a, k, b = _bn_arrays((3, 4, 5, 2), dtype, seed=2)
    x64, g64 = x.astype(np.float64), g.astype(np.float64)
    c = lambda v: v.astype(np.float64).reshape(1, -1, 1, 1)     # noqa: E731
    tol = _bn_tol(dtype)
    m, v = norm_mod.batch_norm_stats(x)
    np.testing.assert_allclose(m, x64.mean(axis=(0, 2, 3)), **tol)
    np.testing.assert_allclose(v, x64.var(axis=(0, 2, 3)), **tol)
    np.testing.assert_allclose(norm_mod.batch_norm_affine(x, mean, a, b), (x64 - c(mean)) * c(a) + c(b), **tol)
    s1, s2 = norm_mod.batch_norm_grad_sums(g, x, mean)
    np.testing.assert_allclose(s1, g64.sum(axis=(0, 2, 3)), **tol)
    np.testing.assert_allclose(s2, (g64 * (x64 - c(mean))).sum(axis=(0, 2, 3)), **tol)
    np.testing.assert_allclose(norm_mod.batch_norm_input_grad(g, x, mean, a, k, b),
                               g64 * c(a) + (x64 - c(mean)) * c(k) + c(b), **tol)


@pytest.mark.gpu
@pytest.mark.parametrize("contiguous", [True, False], ids=["contiguous", "transposed"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", BN_SHAPES, ids=str)
def test_batch_norm_cuda_kernels_equal_reference(shape, dtype, contiguous):
    cp = _cupy_or_skip()
    arrays = _bn_arrays(shape, dtype, seed=1, contiguous=contiguous)
    x, g, mean, a, k, b = arrays

    def on_gpu(v):      # the transposed cases get a strided view on the GPU too
        d = cp.asarray(v)
        return d.T.copy().T if not contiguous and v.ndim > 1 else d
    xg, gg, mg, ag, kg, bg = (on_gpu(v) for v in arrays)
    tol = _bn_tol(dtype)
    pairs = [
        (norm_mod.batch_norm_stats(xg), norm_mod.batch_norm_stats_reference(x)),
        (norm_mod.batch_norm_affine(xg, mg, ag, bg), norm_mod.batch_norm_affine_reference(x, mean, a, b)),
        (norm_mod.batch_norm_grad_sums(gg, xg, mg), norm_mod.batch_norm_grad_sums_reference(g, x, mean)),
        (norm_mod.batch_norm_input_grad(gg, xg, mg, ag, kg, bg),
         norm_mod.batch_norm_input_grad_reference(g, x, mean, a, k, b)),
    ]
    for got, want in pairs:
        got, want = (got, want) if isinstance(got, tuple) else ((got,), (want,))
        for u, v in zip(got, want):
            assert isinstance(u, cp.ndarray) and u.dtype == dtype and u.shape == v.shape
            np.testing.assert_allclose(cp.asnumpy(u), v, **tol)


def _stats_impl(impl):
    if impl != "cupy":
        return getattr(norm_mod, f"batch_norm_stats_{impl}")
    cp = _cupy_or_skip()
    return lambda x: [cp.asnumpy(v) for v in norm_mod.batch_norm_stats_cupy(cp.asarray(x))]


@pytest.mark.parametrize("impl", ["reference", "numba", pytest.param("cupy", marks=pytest.mark.gpu)])
def test_batch_norm_stats_survive_a_large_offset(impl):
    # sum(x^2)/m - mean^2 would lose every digit here (mean^2 / var = 1e8 > 1/eps of float32)
    rng = np.random.default_rng(3)
    x64 = rng.standard_normal((64, 2, 16, 16)) + np.array([1e4, -3e3]).reshape(1, 2, 1, 1)
    mean, var = _stats_impl(impl)(x64.astype(np.float32))
    x64 = x64.astype(np.float32).astype(np.float64)                 # the values it was given
    np.testing.assert_allclose(mean, x64.mean(axis=(0, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(var, x64.var(axis=(0, 2, 3)), rtol=1e-4)


def test_batch_norm_dispatch(monkeypatch):
    calls = []
    monkeypatch.setattr(norm_mod, "batch_norm_stats_reference", lambda x, dtype=None: calls.append("ref"))
    monkeypatch.setattr(norm_mod, "batch_norm_stats_numba", lambda x, dtype=None: calls.append("numba"))
    x = np.zeros((2, 3, 4), np.float32)
    with td.backends.reference(False):
        norm_mod.batch_norm_stats(x)
        norm_mod.batch_norm_stats(x.astype(np.float16))             # not a compiled dtype
        norm_mod.batch_norm_stats(x[:, :, 0])                       # (N, C): NumPy is faster
    with td.backends.reference():
        norm_mod.batch_norm_stats(x)
    assert calls == ["numba", "ref", "ref", "ref"]


# The fused route (one call a direction, kernels/norm.py) against the op's passes, through the op.
def _batch_norm_through_the_op(route, x, g, weight, bias, running, training, residual=None, relu=False,
                               device="cpu", ran=None):
    """y, the gradients of x, weight, bias and the residual, and the running buffers after one
    step, with ``route`` forced (``ran``: the route that must be recorded, default ``route``)."""
    on = (lambda a: a) if device == "cpu" else (lambda a: td.backend.to_device(a, device))   # noqa: E731
    leaves = [None if a is None else td.Tensor(on(a), requires_grad=True) for a in (x, weight, bias, residual)]
    buffers = [None if a is None else td.Tensor(on(a.copy())) for a in running]
    scope = td.backends.reference() if route == "reference" else td.backends.route(batch_norm=route)
    with scope, td.backends.record_routes() as taken:
        if relu:
            y = td.nn.functional.batch_norm_relu(leaves[0], *buffers, *leaves[1:3], training=training, momentum=0.1,
                                                 eps=1e-5, residual=leaves[3])
        else:
            y = td.nn.functional.batch_norm(leaves[0], *buffers, *leaves[1:3], training=training, momentum=0.1,
                                            eps=1e-5)
        y.backward(td.Tensor(on(g)))
    assert ("batch_norm", ran or route) in taken, taken
    out = [y.detach()] + [t.grad for t in leaves if t is not None] + [b for b in buffers if b is not None]
    return [td.backend.to_host(t.array) for t in out]


FUSED_BN_CASES = [  # (shape, contiguous, training, affine, tracked, relu, residual)
    ((4, 3, 5, 6), True, True, True, True, False, False), ((4, 3, 5, 6), False, True, True, True, True, False),
    ((2, 3, 2, 3, 4), True, True, False, True, True, True), ((1, 2, 7), True, True, True, False, False, False),
    ((7, 4, 3, 1), True, False, True, True, True, True), ((3, 5, 2, 2), False, False, False, True, False, False),
    ((1, 1, 9, 9), True, True, True, True, True, False), ((4, 3, 5, 6), False, True, True, True, True, True)]
FUSED_BN_FIELDS = "shape, contiguous, training, affine, tracked, relu, residual"


def _fused_bn_args(shape, contiguous, training, affine, tracked, relu, residual, dtype):
    x, g, weight, bias, rm, rv = _bn_arrays(shape, dtype, seed=3, contiguous=contiguous)
    r = _bn_arrays(shape, dtype, seed=4, contiguous=contiguous)[0] if residual else None
    return (x, g, weight if affine else None, bias if affine else None,
            (rm, np.abs(rv) + 0.5) if tracked else (None, None), training, r, relu)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(FUSED_BN_FIELDS, FUSED_BN_CASES, ids=str)
def test_fused_batch_norm_route_equals_the_passes(shape, contiguous, training, affine, tracked, relu, residual,
                                                  dtype):
    args = _fused_bn_args(shape, contiguous, training, affine, tracked, relu, residual, dtype)
    fused = _batch_norm_through_the_op("fused", *args)
    for route in ("numba", "reference"):
        for u, v in zip(fused, _batch_norm_through_the_op(route, *args)):
            assert u.dtype == dtype and u.shape == v.shape
            np.testing.assert_allclose(u, v, **_bn_tol(dtype), err_msg=route)


def test_batch_norm_takes_the_passes_where_the_fused_route_does_not_apply():
    x = np.random.default_rng(0).standard_normal((4, 3, 5, 5)).astype(np.float32)
    c = np.ones(3, np.float32)
    route = norm_mod.batch_norm_route
    assert route(x, c, c, c, c) == "fused" and route(x, None, None, None, None) == "fused"
    assert route(x[:, :, 0, 0], c, c, c, c) is None                     # (N, C): NumPy's reductions
    assert route(x.astype(np.float16), None, None, None, None) is None  # not a compiled dtype
    assert route(x, c, c, c, None) is None                              # one running buffer
    assert route(x, c, c, np.ones(6, np.float32)[::2], c) is None       # a strided buffer
    assert route(x[:0], c, c, c, c) is None                             # an empty batch
    with td.backends.reference():
        assert route(x, c, c, c, c) is None
    with td.backends.route(batch_norm="numba"):
        assert route(x, c, c, c, c) is None


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(FUSED_BN_FIELDS, FUSED_BN_CASES, ids=str)
def test_fused_batch_norm_route_on_cuda(shape, contiguous, training, affine, tracked, relu, residual, dtype):
    _cupy_or_skip()
    args = _fused_bn_args(shape, contiguous, training, affine, tracked, relu, residual, dtype)
    fused = _batch_norm_through_the_op("fused", *args, device="cuda")
    passes = _batch_norm_through_the_op("numba", *args, device="cuda", ran="cuda")    # the CUDA passes
    for u, v, w in zip(fused, passes, _batch_norm_through_the_op("fused", *args)):
        assert u.dtype == dtype and u.shape == v.shape
        np.testing.assert_allclose(u, v, **_bn_tol(dtype), err_msg="the CUDA passes")
        np.testing.assert_allclose(u, w, **_bn_tol(dtype), err_msg="the CPU's fused route")
