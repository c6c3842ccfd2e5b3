"""CUDA kernels of tinydl/kernels/detection.py (CuPy) against the CPU paths.

Oracles: the Numba RoI pooling kernel (forward must agree exactly: values and
argmax; backward up to the order of the atomic adds), nms_reference / nms_numba
(NMS must keep exactly the same boxes in the same order, ties in score
included), the NumPy suppression bitmask (the CUDA mask must agree bit for
bit), and torchvision's CUDA ops when torchvision is importable.

Every test but the first needs CuPy and a GPU (marked ``gpu``: skipped without
one). The first checks the host half of the bitmask NMS -- the mask layout and
the greedy scan -- on NumPy, so it runs everywhere.
"""
import numpy as np
import pytest

import tinydl as td
from tinydl.kernels import detection as K
from tinydl.vision.ops import batched_nms, nms, roi_pool

gpu = pytest.mark.gpu
DTYPES = [np.float32, np.float64]


def cupy():
    return td.backend.cupy_module()


def host(a):
    return td.backend.to_host(a)


def assert_same(name, got, want, context=""):
    """Exact equality (NaN == NaN); on failure list the first mismatching positions."""
    got, want = host(got), host(want)
    assert got.shape == want.shape, f"{name}: shape {got.shape} != {want.shape} {context}"
    same = got == want
    if got.dtype.kind == "f":
        same |= np.isnan(got) & np.isnan(want)
    bad = np.argwhere(~same)
    if len(bad):
        rows = "\n".join(f"  at {tuple(int(v) for v in p)}: got {got[tuple(p)]!r}, want {want[tuple(p)]!r}"
                         for p in bad[:12])
        raise AssertionError(f"{name}: {len(bad)} of {got.size} elements differ {context}\n{rows}")


# ============================================================ inputs
def random_boxes(rng, n, integer=False):
    xy = rng.uniform(0, 100, (n, 2))
    wh = rng.uniform(1, 40, (n, 2))
    b = np.concatenate([xy, xy + wh], axis=1)
    return np.round(b) if integer else b


def nms_case(rng, n, dtype, integer=False):
    """Boxes with many score ties (+0.0 and -0.0 among them), duplicates, a degenerate
    pair (0/0 IoU) and a pair at IoU exactly 0.5."""
    boxes = random_boxes(rng, n, integer).astype(dtype)
    scores = rng.integers(-2, 6, n).astype(dtype)          # few values: ties decided by index
    if n >= 8:
        scores[scores == 0] = np.where(rng.uniform(size=int((scores == 0).sum())) < 0.5, -0.0, 0.0)
        boxes[3] = boxes[1]                                # duplicate box
        boxes[4] = boxes[5] = [5, 5, 5, 5]                 # zero-area pair: IoU 0/0 never suppresses
        boxes[6], boxes[7] = [0, 0, 3, 1], [1, 0, 4, 1]    # IoU 2 / (3 + 3 - 2) = 0.5 exactly
    return boxes, scores


def roi_case(rng, dtype, n=2, c=5, h=13, w=17, k=24, scale=0.5):
    """Feature map with a NaN, a -inf and a plateau (ties), and RoIs covering the whole
    map, one cell, halves (C rounding), entirely off the map (all bins empty), partly
    off it, and random ones (many longer than the map: partly outside)."""
    x = rng.normal(size=(n, c, h, w)).astype(dtype)
    x[0, 1, 2, 3] = np.nan
    x[1, 0, 4, 4] = -np.inf
    x[0, 2, 1:5, 1:5] = 0.25                               # plateau: the first cell wins
    xy = rng.uniform(-4, 2 * w, (k, 2))
    wh = rng.uniform(0, 2 * w, (k, 2))
    rois = np.concatenate([rng.integers(0, n, (k, 1)), xy, xy + wh], axis=1).astype(dtype)
    rois[0] = [0, 0, 0, 2 * w - 2, 2 * h - 2]             # the whole map
    rois[1] = [1, 3, 3, 3, 3]                              # a single cell
    rois[2] = [0, 1.5, 2.5, 9.5, 5.0]                      # halves: rounded away from zero
    rois[3] = [1, 4 * w, 4 * h, 5 * w, 5 * h]              # entirely off the map
    rois[4] = [0, -10, -6, 4, 3]                           # partly off the top-left
    rois[5] = [1, 2 * w - 6, 2 * h - 4, 2 * w + 30, 2 * h + 9]   # partly off the bottom-right
    rois[6] = [0, 0, 0, 2, 2 * h - 2]                      # thin: more bins than columns (they overlap)
    return x, rois, scale


# ============================================================ host half (CPU)
def test_bitmask_nms_on_numpy_matches_reference():
    """mask layout (bit j % 64 of word j // 64) + greedy scan == the greedy NMS, on NumPy;
    n around the 64-box word edges, with and without categories."""
    rng = np.random.default_rng(0)
    for n in (0, 1, 2, 63, 64, 65, 129, 300):
        boxes, scores = nms_case(rng, n, np.float64, integer=n == 129)
        cats = rng.integers(0, 3, n)
        for thr in (0.0, 0.3, 0.5, 0.7):
            for idxs in (None, cats):
                got = K.nms_bitmask(boxes, scores, thr, idxs)
                want = K.nms_reference(boxes, scores, thr, idxs)
                assert got.dtype == np.int64
                assert got.tolist() == want.tolist(), (n, thr, idxs is not None)
    m = K._nms_mask_numpy(np.array([[0, 0, 2, 2.0]] * 70), np.zeros(70, np.int64), 0.5)
    assert m.shape == (70, 2) and m.dtype == np.uint64
    assert m[0, 0] == np.uint64(2**64 - 2) and m[0, 1] == np.uint64(2**6 - 1)   # boxes 1..63 | 64..69
    assert m[69].tolist() == [0, 0]


# ============================================================ RoI pooling
def roi_forward_both(x, rois, out, scale):
    cp = cupy()
    y, a = K.roi_pool_forward(cp.asarray(x), cp.asarray(rois), out, scale)
    assert isinstance(y, cp.ndarray) and isinstance(a, cp.ndarray)
    assert y.dtype == x.dtype and a.dtype == np.int64 and y.shape == (len(rois), x.shape[1]) + out
    y_nb, a_nb = K.roi_pool_forward_numba(x, rois, out, scale)
    return y, a, y_nb, a_nb


@gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("out", [(2, 2), (3, 4), (7, 7), (1, 5), (20, 3)])
def test_roi_pool_forward_cuda_equals_numba(dtype, out):
    rng = np.random.default_rng(1)
    x, rois, scale = roi_case(rng, dtype)
    y, a, y_nb, a_nb = roi_forward_both(x, rois, out, scale)
    ctx = f"(dtype {np.dtype(dtype).name}, output {out}; positions are (k, c, ph, pw))"
    assert_same("roi_pool y", y, y_nb, ctx)
    assert_same("roi_pool argmax", a, a_nb, ctx)
    assert (a_nb == -1).any() and (a_nb >= 0).any()        # the case has empty and full bins
    # the dispatcher took the CUDA kernel, which was compiled once and cached
    assert ("roi_pool_forward", np.dtype(dtype)) in K._cuda_kernels


@gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("out", [(2, 2), (7, 7)])
def test_roi_pool_backward_cuda_equals_numba(dtype, out):
    cp = cupy()
    rng = np.random.default_rng(2)
    x, rois, scale = roi_case(rng, dtype)
    y, a, y_nb, a_nb = roi_forward_both(x, rois, out, scale)
    gy = rng.normal(size=y_nb.shape).astype(dtype)
    batch = rois[:, 0].astype(np.int64)
    gx = K.roi_pool_backward(cp.asarray(gy), a, cp.asarray(batch), x.shape)
    assert isinstance(gx, cp.ndarray) and gx.dtype == dtype and gx.shape == x.shape
    want = K.roi_pool_backward_numba(gy, a_nb, batch, x.shape)
    # cells reached by at most one bin must match exactly; sums of several
    # only up to rounding (the atomic adds come in any order)
    hits = K.roi_pool_backward_reference(np.ones_like(gy), a_nb, batch, x.shape)
    single = hits <= 1
    assert_same("roi_pool gx (cells with <= 1 contribution)", host(gx)[single], want[single],
                f"(dtype {np.dtype(dtype).name}, output {out}; positions index the flattened cells)")
    assert (hits > 1).any()                                # the case has overlapping RoIs
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(host(gx), want, **tol, err_msg=f"roi_pool gx, output {out}")


@gpu
def test_roi_pool_cuda_edge_cases():
    cp = cupy()
    rng = np.random.default_rng(3)
    x, rois, scale = roi_case(rng, np.float32)
    # no RoI at all: empty outputs, zero gradient
    y, a = K.roi_pool_forward_cupy(cp.asarray(x), cp.asarray(rois[:0]), (2, 2), scale)
    assert y.shape == (0, 5, 2, 2) and a.shape == (0, 5, 2, 2)
    gx = K.roi_pool_backward_cupy(y, a, cp.zeros(0, dtype=cp.int64), x.shape)
    assert gx.shape == x.shape and not bool(gx.any())
    # a non-contiguous feature map (a transposed view) gives the same answer
    xt = cp.asarray(np.ascontiguousarray(x.transpose(0, 1, 3, 2))).transpose(0, 1, 3, 2)
    assert not xt.flags.c_contiguous
    y, a = K.roi_pool_forward(xt, cp.asarray(rois), (3, 3), scale)
    y_nb, a_nb = K.roi_pool_forward_numba(x, rois, (3, 3), scale)
    assert_same("roi_pool y (non-contiguous x)", y, y_nb)
    assert_same("roi_pool argmax (non-contiguous x)", a, a_nb)
    # float16 has no CUDA kernel: the gathering reference runs on the GPU instead
    y16, a16 = K.roi_pool_forward(cp.asarray(x.astype(np.float16)), cp.asarray(rois.astype(np.float16)), (2, 2), scale)
    assert y16.dtype == np.float16 and isinstance(y16, cp.ndarray)


@gpu
def test_roi_pool_cuda_64bit_offsets():
    """A feature map of more than 2**31 elements: the RoI in the last image, far corner,
    is addressed past 2**31 (32-bit offsets would wrap and read/write the wrong cells)."""
    cp = cupy()
    N, C, H, W = 2, 2, 16384, 32768 + 64                  # 2.15e9 elements, 8.6 GB in float32
    if cp.cuda.Device().mem_info[0] < 2.3 * N * C * H * W * 4:
        pytest.skip("needs ~20 GB of free GPU memory")
    x = cp.zeros((N, C, H, W), dtype=cp.float32)
    patch = np.random.default_rng(4).normal(size=(C, 8, 8)).astype(np.float32)
    x[1, :, H - 8:, W - 8:] = cp.asarray(patch)
    rois = cp.asarray(np.array([[1, W - 8, H - 8, W - 1, H - 1]], np.float32))
    y, a = K.roi_pool_forward(x, rois, (2, 2), 1.0)
    want = patch.reshape(C, 2, 4, 2, 4).max(axis=(2, 4))
    assert_same("roi_pool y (far corner of a > 2**31-element map)", y[0], want)
    gy = cp.ones_like(y)
    gx = K.roi_pool_backward(gy, a, rois[:, 0].astype(cp.int64), x.shape)
    del x
    corner = host(gx[1, :, H - 8:, W - 8:])
    assert corner.sum() == 2 * 2 * C and float(gx.sum()) == 2 * 2 * C   # every bin landed in the corner
    for c in range(C):
        for ph in range(2):
            for pw in range(2):
                block = patch[c, 4 * ph:4 * ph + 4, 4 * pw:4 * pw + 4]
                i, j = np.unravel_index(block.argmax(), block.shape)
                assert corner[c, 4 * ph + i, 4 * pw + j] == 1, (c, ph, pw)


@gpu
def test_roi_pool_op_on_cuda_equals_cpu():
    """The public op end to end (forward, backward) on 'cuda' equals 'cpu'."""
    rng = np.random.default_rng(5)
    x, rois, scale = roi_case(rng, np.float64)
    gy = rng.normal(size=(len(rois), x.shape[1], 3, 3))
    grads = {}
    for device in ("cpu", "cuda"):
        xt = td.tensor(x, requires_grad=True, device=device)
        y = roi_pool(xt, td.tensor(rois, device=device), (3, 3), scale)
        y.backward(td.tensor(gy, device=device))
        grads[device] = (y.detach().cpu().numpy(), xt.grad.cpu().numpy())
    assert_same("roi_pool op y, cuda vs cpu", grads["cuda"][0], grads["cpu"][0])
    np.testing.assert_allclose(grads["cuda"][1], grads["cpu"][1], rtol=1e-12, atol=1e-12)


# ============================================================ NMS
def decode_bits(mask, i):
    """Positions j whose bit is set in row i of a (n, words) uint64 mask."""
    row = np.asarray(mask[i], dtype=np.uint64)
    return [64 * w + s for w in range(len(row)) for s in range(64) if (int(row[w]) >> s) & 1]


@gpu
def test_argsort_descending_cuda_equals_numpy():
    """Stable, ties by index, -0.0 tied with +0.0, NaN last: CuPy's radix sort must give NumPy's order."""
    cp = cupy()
    rng = np.random.default_rng(10)
    for dtype in DTYPES:
        s = rng.integers(-3, 4, 5000).astype(dtype)
        zeros = np.nonzero(s == 0)[0]
        s[zeros[::2]] = -0.0
        s[rng.integers(0, 5000, 40)] = np.nan
        s[rng.integers(0, 5000, 20)] = -np.nan
        s[:3] = [np.inf, -np.inf, np.nan]
        want = K.argsort_descending(np, s)
        got = K.argsort_descending(cp, cp.asarray(s))
        assert_same(f"argsort_descending ({np.dtype(dtype).name}; positions in the sorted order)", got, want)


@gpu
@pytest.mark.parametrize("n", [1, 2, 63, 64, 65, 300])
def test_nms_cuda_mask_equals_numpy_bit_for_bit(n):
    cp = cupy()
    rng = np.random.default_rng(6)
    boxes, scores = nms_case(rng, n, np.float64, integer=n == 65)
    if n >= 8:
        boxes[2, 0] = np.nan                               # NaN corner: IoU NaN, never suppresses
    for idxs in (None, rng.integers(0, 3, n)):
        order, b, cat = K._prepare(boxes, scores, idxs)
        for thr in (-1.0, 0.0, 0.5, 0.7, 1.0):
            got = host(K._nms_mask_cupy(cp.asarray(b), cp.asarray(cat), thr))
            want = K._nms_mask_numpy(b, cat, thr)
            assert got.dtype == np.uint64 and got.shape == want.shape == (n, (n + 63) // 64)
            rows = np.nonzero((got != want).any(axis=1))[0]
            if len(rows):
                detail = "\n".join(f"  box {i}: suppresses {sorted(set(decode_bits(got, i)) ^ set(decode_bits(want, i)))}"
                                   f" in one mask but not the other" for i in rows[:8])
                raise AssertionError(f"nms mask (n {n}, thr {thr}, idxs {idxs is not None}): "
                                     f"{len(rows)} rows differ (positions in score order)\n{detail}")


@gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [0, 1, 2, 8, 64, 65, 500, 12000])
def test_nms_cuda_equals_numba_and_reference(dtype, n):
    cp = cupy()
    rng = np.random.default_rng(7)
    boxes, scores = nms_case(rng, n, dtype, integer=n == 500)
    cats = rng.integers(0, 4, n)
    for thr in (0.0, 0.5, 0.7):
        for idxs in (None, cats):
            got = K.nms_kernel(cp.asarray(boxes), cp.asarray(scores), thr,
                               None if idxs is None else cp.asarray(idxs))
            assert isinstance(got, cp.ndarray) and got.dtype == np.int64 and got.ndim == 1
            want = K.nms_numba(boxes, scores, thr, idxs)
            ctx = f"(n {n}, {np.dtype(dtype).name}, thr {thr}, idxs {idxs is not None})"
            got = host(got)
            if got.tolist() != want.tolist():
                first = next((p for p, (g, w) in enumerate(zip(got, want)) if g != w), min(len(got), len(want)))
                raise AssertionError(f"nms {ctx}: kept {len(got)} boxes, want {len(want)}; first difference at "
                                     f"position {first}: got {got[first:first + 5].tolist()}, "
                                     f"want {want[first:first + 5].tolist()}")
            if n <= 500:
                assert want.tolist() == K.nms_reference(boxes, scores, thr, idxs).tolist()


@gpu
def test_nms_cuda_hand_example_and_public_api():
    cp = cupy()
    boxes = np.array([[0, 0, 3, 1], [1, 0, 4, 1], [0, 0, 3, 1], [10, 10, 12, 12]], dtype=np.float32)
    scores = np.array([1.0, 0.9, 1.0, 0.1], dtype=np.float32)   # IoU(0, 1) = 0.5; 2 duplicates 0
    b, s = td.tensor(boxes, device="cuda"), td.tensor(scores, device="cuda")
    for thr, want in ((0.5, [0, 1, 3]), (0.49, [0, 3]), (1.0, [0, 2, 1, 3])):
        out = nms(b, s, thr)
        assert out.device == td.backend.Device("cuda", 0) and out.dtype == np.int64
        assert out.cpu().numpy().tolist() == want, thr
    out = batched_nms(b, s, td.tensor(np.array([0, 1, 0, 0]), device="cuda"), 0.49)
    assert out.cpu().numpy().tolist() == [0, 1, 3]
    empty = K.nms_kernel(cp.zeros((0, 4), cp.float32), cp.zeros(0, cp.float32), 0.5)
    assert isinstance(empty, cp.ndarray) and empty.shape == (0,) and empty.dtype == np.int64


# ============================================================ torchvision (second oracle)
def torchvision_cuda():
    torch = pytest.importorskip("torch")
    tv = pytest.importorskip("torchvision")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA here")
    return torch, tv


@gpu
def test_nms_cuda_matches_torchvision():
    """float64 boxes (torchvision computes a float32 box's IoU in float32, we in float64:
    with thousands of pairs one may fall between the two roundings of the threshold)
    and distinct scores (torchvision's sort is not stable: ties could differ)."""
    torch, tv = torchvision_cuda()
    cp = cupy()
    rng = np.random.default_rng(8)
    for n in (1, 100, 3000):
        boxes = random_boxes(rng, n)
        scores = rng.permutation(n).astype(np.float64)
        cats = rng.integers(0, 5, n)
        for thr in (0.3, 0.7):
            tb, ts = torch.from_numpy(boxes).cuda(), torch.from_numpy(scores).cuda()
            want = tv.ops.nms(tb, ts, thr).cpu().numpy()
            got = host(K.nms_kernel(cp.asarray(boxes), cp.asarray(scores), thr))
            np.testing.assert_array_equal(got, want, err_msg=f"nms vs torchvision (n {n}, thr {thr})")
            want = tv.ops.batched_nms(tb, ts, torch.from_numpy(cats).cuda(), thr).cpu().numpy()
            got = host(K.nms_kernel(cp.asarray(boxes), cp.asarray(scores), thr, cp.asarray(cats)))
            np.testing.assert_array_equal(got, want, err_msg=f"batched_nms vs torchvision (n {n}, thr {thr})")


@gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("out", [(2, 2), (7, 7)])
def test_roi_pool_cuda_matches_torchvision(dtype, out):
    torch, tv = torchvision_cuda()
    cp = cupy()
    rng = np.random.default_rng(9)
    x, rois, scale = roi_case(rng, dtype)
    x[0, 1, 2, 3] = 0.0                                    # no NaN: torchvision's CUDA max need not skip it
    y, a = K.roi_pool_forward(cp.asarray(x), cp.asarray(rois), out, scale)
    tx = torch.from_numpy(x).cuda().requires_grad_(True)
    ty = tv.ops.roi_pool(tx, torch.from_numpy(rois).cuda(), out, scale)
    assert_same("roi_pool y vs torchvision", y, ty.detach().cpu().numpy(), f"(output {out})")
    gy = rng.normal(size=ty.shape).astype(dtype)
    ty.backward(torch.from_numpy(gy).cuda())
    gx = K.roi_pool_backward(cp.asarray(gy), a, cp.asarray(rois[:, 0].astype(np.int64)), x.shape)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(host(gx), tx.grad.cpu().numpy(), **tol, err_msg=f"roi_pool gx vs torchvision {out}")
