r"""Direct convolution on the CPU: conv2d, forward and backward, with no column matrix.

Why
---
im2col + GEMM (kernels/im2col.py) copies every input value kh*kw times into the
columns, then multiplies. With many channels the GEMM is most of the time and
the copy pays for itself. With few (LeNet's 6 and 16, ResNet-20's first stage's
16) OpenBLAS runs a product of so few rows at a fraction of its speed, and
writing and reading the columns costs as much as the product. Multiplying
straight from the input, as PyTorch's oneDNN kernels do, needs neither
(benchmarks/bench_alone.py: the conv 1->6 and 16->16 rows).

The wide-row trick
------------------
Pad one image to (C, Hp, Wp) and flatten each padded channel plane. With stride
1, output pixel (r, j) reads the input at (r + i*dh, j + jj*dw) for tap (c, i, jj),
which in the flat image is position  q + off(c, i, jj)  with

    q = r*Wp + j,        off(c, i, jj) = c*Hp*Wp + i*dh*Wp + jj*dw.

So if we compute an output at every flat position q < span = (Ho-1)*Wp + Wo,
including the Wp - Wo positions per row that wrap around into the next row (they
are computed and thrown away), each tap becomes ONE long contiguous loop:

    acc[q] += W[o, c, i, jj] * plane[q + off(c, i, jj)]        for all q < span

Long unit-stride loops are what LLVM vectorises well; short per-row loops pay the
loop set-up on every row.
The forward runs in blocks of four output channels times three vectors of positions
(kernels/simd.py): twelve running sums that stay in registers while every tap is
added, each loaded input vector feeding four of them, then stored once into acc.
(Passes of three taps over rows of sums in memory, which LLVM vectorised on its own,
loaded and stored a sum for every three multiply-adds. Against them, two threads,
"AMD EPYC": LeNet-5's 6->16 5x5 on 14x14 at batch 64 in 0.26 ms instead of 0.31,
ResNet-20's 16->16 3x3 at batch 128 in 3.17 instead of 3.44.)
The valid positions of acc (j < Wo in every row) are then copied into y.

Strides: phase planes
---------------------
With stride s (along both axes, say), output pixel (r, j) reads padded row
r*s + a for a tap at row offset a = i*dh. Write a = s*(a // s) + a % s: it is
row r + a // s of the plane of the padded rows whose number is a % s modulo s,
a "phase plane". So split every padded channel into its s*s phase planes
(hq = ceil(hp / s) rows, wq columns; the copy into the plane does it) and the
tap reads phase plane (a % s, b % s) at a shift of (a // s, b // s) with stride
1: the wide rows and the blocks above run unchanged, with

    off(c, i, jj) = ((c*s + a % s)*s + b % s)*hq*wq + (a // s)*wq + b // s.

No tap is added and none is wasted (unlike one stride-1 convolution over the
phases as channels, which pads a 3x3 kernel to 2x2 on each of 4 phases: 16 taps).

Backward
--------
dL/dx is itself a stride-1 convolution: of gy, padded to the "full" size, with
the kernel flipped and its channel axes swapped (derived in ops/conv.py,
Conv2d's docstring), so ``conv2d_direct`` computes it too. dL/dW is, on the same
wide rows, a dot product of gy (0 at the wrapped positions) with the shifted
plane for every (output channel, tap) pair: ``conv2d_direct_weight_grad``, for
any stride. (A strided layer's dL/dx is left to the GEMM and col2im: its phases
are convolutions of few taps each, and they ran 1.7x slower; so is a "valid"
layer's whose gy fills less than half of its padded plane, as LeNet's second:
kernels/conv.py, Direct.input_grad_on_direct.)

Groups: output o reads only its group's C/groups channels, so its taps' offsets
start at that group's first plane. Four outputs share a block (and their loads)
when they are in the same group; otherwise (depthwise convolutions: one output
per group) a block takes one output.

Where it is used: the 'direct' route of kernels/conv.py, on the CPU, for
convolutions with few channels per group. The sums run in another order than
the GEMM's, so results agree with the im2col path to rounding, not bit for bit;
the tests compare both with PyTorch. Its NumPy reference is the textbook op
(``td.backends.reference()``).
"""
import functools

import numpy as np

from ._dispatch import njit, numba, prange, runs_serial
from ._memory import gather_flat
from .simd import fma, lanes, load, splat, store
from .im2col import conv_output_size

TAPS_PER_PASS = 3        # dL/dW's passes are written out for three taps ...
OUTPUTS_PER_BLOCK = 4    # ... and, like the forward's blocks, four output channels


def _geometry(x_shape, weight_shape, padding, dilation, stride):
    """A phase plane's size (hq, wq), the output's (ho, wo), and the taps' offsets (T
    rounded up to a multiple of TAPS_PER_PASS; the extra taps point at offset 0 with
    weight 0)."""
    return _plane_geometry(tuple(x_shape[2:]), tuple(weight_shape[1:]), tuple(padding), tuple(dilation),
                           tuple(stride))


@functools.lru_cache(maxsize=256)    # a layer asks again every step: the offsets are built once
def _plane_geometry(hw, weight_taps, padding, dilation, stride):
    h, w = hw
    c, kh, kw = weight_taps                          # c = C/groups: the channels one output reads
    pt, pb, pl, pr = padding
    (dh, dw), (sh, sw) = dilation, stride
    hp, wp = h + pt + pb, w + pl + pr
    hq, wq = -(-hp // sh), -(-wp // sw)              # each of a channel's sh*sw phase planes
    ho, wo = conv_output_size(hw, (kh, kw), stride, padding, dilation)
    a, b = np.arange(kh) * dh, np.arange(kw) * dw    # tap (i, jj) reads padded row r*sh + a[i] ...
    phase = (np.arange(c)[:, None, None] * sh + a[None, :, None] % sh) * sw + b[None, None, :] % sw
    t = c * kh * kw
    offsets = np.zeros(_round_up(t, TAPS_PER_PASS), dtype=np.int64)
    offsets[:t] = (phase * (hq * wq) + (a[None, :, None] // sh) * wq + b[None, None, :] // sw).reshape(-1)
    offsets.flags.writeable = False                  # shared by every call with this geometry
    return (hq, wq), (ho, wo), offsets


@njit(inline="always")
def _round_up(value, multiple):
    return -(-value // multiple) * multiple


# Buffers and accumulator rows start on a cache line: left to the allocator, speed varied by process.
_ALIGN_BYTES = 64
_ALIGN_SLACK = 16                                    # elements: 64 bytes even for float32


@njit(inline="always")
def _aligned_zeros(n, dtype):
    """n zeros, starting on a cache line."""
    buffer = np.zeros(n + _ALIGN_SLACK, dtype=dtype)
    skip = (-buffer.ctypes.data) % _ALIGN_BYTES // buffer.itemsize
    return buffer[skip:skip + n]


@njit(inline="always")
def _aligned_rows(rows, length, dtype):
    """A (rows, length rounded up to 16) array of zeros whose every row starts on a cache line."""
    stride = _round_up(length, _ALIGN_SLACK)
    return _aligned_zeros(rows * stride, dtype).reshape((rows, stride))


def _shares(work, n):
    """Into how many shares to split the n images: one per thread, or a single
    one where ``runs_serial(work)``. A single share runs on the serial twin."""
    return 1 if runs_serial(work) else min(n, numba.get_num_threads())


def _run(kernel, shares, *args):
    (kernel.serial if shares == 1 else kernel)(shares, *args)


@njit(inline="always")
def _copy_into_padded(plane, x, n, pt, pl, hq, wq, sh, sw):
    """Image n of x (N, C, H, W), padded, into plane (C*sh*sw*hq*wq,) as its phase planes:
    padded pixel (a, b) of channel c goes to plane (c*sh + a % sh)*sw + b % sw, at row
    a // sh, column b // sw. With stride 1, one plane per channel: the padded image. The
    padding's places hold zeros from the plane's allocation and are never written."""
    _, C, H, W = x.shape
    x_flat = x.reshape(-1)
    for c in range(C):
        for r in range(H):
            src = ((n * C + c) * H + r) * W
            if sh == 1 and sw == 1:      # the row as it is (through the loop below: 10% slower, 16->16 32x32)
                gather_flat(plane, (c * hq + r + pt) * wq + pl, x_flat, src, W, 1)
                continue
            a = r + pt
            row = (c * sh + a % sh) * sw * hq * wq + (a // sh) * wq
            for phase in range(sw):                  # x's columns first, first + sw, ... land in it
                first = (phase - pl) % sw
                gather_flat(plane, row + phase * hq * wq + (first + pl) // sw, x_flat, src + first,
                            (W - first + sw - 1) // sw, sw)


@njit(inline="always")
def _outputs_per_block(c_out, groups):
    """OUTPUTS_PER_BLOCK if outputs o, o+1, ... (o a multiple of it) always read the same
    input channels, else 1. With one group they do (the last ones are padded with zero
    rows of the taps); with several, when each group's outputs are a multiple of it."""
    return OUTPUTS_PER_BLOCK if groups == 1 or (c_out // groups) % OUTPUTS_PER_BLOCK == 0 else 1


@njit(inline="always")
def _group_base(o, c_out, c, groups, channel_size):
    """Where the channels that output o reads start in the plane (channel_size each)."""
    return (o // (c_out // groups)) * (c // groups) * channel_size


# ---------------------------------------------------------------- forward
# A block: four outputs (or one) times three vectors of wide-row positions, summed over
# every tap in twelve (or three) vectors that stay in registers, then stored once (the
# module's docstring and kernels/simd.py say why).
VECTORS_PER_BLOCK = 3


@njit(inline="always")
def _four_outputs_block(plane, base, offsets, taps, bias, o, q, acc):
    """acc[k, q + p] = bias[o+k] + sum_t taps[o+k, t] * plane[base + offsets[t] + q + p]
    for k < 4 and p < 3 vectors (four outputs that read the same channels: one load feeds four)."""
    n = lanes(plane)
    a0 = a1 = a2 = splat(bias[o])
    b0 = b1 = b2 = splat(bias[o + 1])
    c0 = c1 = c2 = splat(bias[o + 2])
    d0 = d1 = d2 = splat(bias[o + 3])
    wa, wb, wc, wd = taps[o], taps[o + 1], taps[o + 2], taps[o + 3]
    for t in range(taps.shape[1]):
        s = base + offsets[t] + q
        v0, v1, v2 = load(plane, s), load(plane, s + n), load(plane, s + 2 * n)
        w = splat(wa[t])
        a0, a1, a2 = fma(w, v0, a0), fma(w, v1, a1), fma(w, v2, a2)
        w = splat(wb[t])
        b0, b1, b2 = fma(w, v0, b0), fma(w, v1, b1), fma(w, v2, b2)
        w = splat(wc[t])
        c0, c1, c2 = fma(w, v0, c0), fma(w, v1, c1), fma(w, v2, c2)
        w = splat(wd[t])
        d0, d1, d2 = fma(w, v0, d0), fma(w, v1, d1), fma(w, v2, d2)
    for row, (v0, v1, v2) in ((acc[0], (a0, a1, a2)), (acc[1], (b0, b1, b2)),
                              (acc[2], (c0, c1, c2)), (acc[3], (d0, d1, d2))):
        store(row, q, v0)
        store(row, q + n, v1)
        store(row, q + 2 * n, v2)


@njit(inline="always")
def _one_output_block(plane, base, offsets, w, b, q, row):
    """row[q + p] = b + sum_t w[t] * plane[base + offsets[t] + q + p]  for p < 3 vectors."""
    n = lanes(plane)
    a0 = a1 = a2 = splat(b)
    for t in range(w.shape[0]):
        s = base + offsets[t] + q
        u = splat(w[t])
        a0, a1, a2 = fma(u, load(plane, s), a0), fma(u, load(plane, s + n), a1), fma(u, load(plane, s + 2 * n), a2)
    store(row, q, a0)
    store(row, q + n, a1)
    store(row, q + 2 * n, a2)


@njit(parallel=True, cache=True)
def _direct_conv_kernel(shares, x, taps, offsets, bias, pt, pl, hq, wq, sh, sw, groups, y):
    # x (N, C, H, W) and y (N, C_out, Ho, Wo) contiguous; taps (C_out rounded up to a
    # multiple of 4, T rounded up to a multiple of 3): W reshaped, zero-padded; offsets (T,):
    # off(c, i, jj) of each tap within its group's channels (0 for the padding
    # taps); bias rounded up like taps. Stride (sh, sw): phase planes of hq x wq.
    N, C = x.shape[0], x.shape[1]
    c_out, Ho, Wo = y.shape[1], y.shape[2], y.shape[3]
    y_flat = y.reshape(-1)
    block = VECTORS_PER_BLOCK * lanes(y_flat)
    span = _round_up((Ho - 1) * wq + Wo, block)                 # whole blocks: the rest is thrown away
    channel_size = sh * sw * hq * wq
    for share in prange(shares):                     # one share of the images per thread
        plane = _aligned_zeros(C * channel_size + block, x.dtype)    # the borders stay 0: the padding
        acc = _aligned_rows(4, span, x.dtype)
        step = _outputs_per_block(c_out, groups)
        for n in range(share * N // shares, (share + 1) * N // shares):
            _copy_into_padded(plane, x, n, pt, pl, hq, wq, sh, sw)
            for o in range(0, c_out, step):
                base = _group_base(o, c_out, C, groups, channel_size)
                for q in range(0, span, block):
                    if step == OUTPUTS_PER_BLOCK:
                        _four_outputs_block(plane, base, offsets, taps, bias, o, q, acc)
                    else:
                        _one_output_block(plane, base, offsets, taps[o], bias[o], q, acc[0])
                for k in range(min(step, c_out - o)):
                    for r in range(Ho):
                        gather_flat(y_flat, ((n * c_out + o + k) * Ho + r) * Wo, acc[k], r * wq, Wo, 1)


def conv2d_direct(x, weight, bias, padding, dilation, groups=1, stride=(1, 1)):
    """y = conv2d(x, weight) + bias, on the CPU with Numba.

    ``x`` (N, C, H, W), ``weight`` (C_out, C/groups, kh, kw), ``bias`` (C_out,) or
    None, ``padding`` (top, bottom, left, right), ``dilation`` (dh, dw), ``stride``
    (sh, sw); float32 or float64. Returns a new contiguous (N, C_out, Ho, Wo) array."""
    n, c_out, t = x.shape[0], weight.shape[0], weight[0].size
    (hq, wq), (ho, wo), offsets = _geometry(x.shape, weight.shape, padding, dilation, stride)
    rows = _round_up(c_out, OUTPUTS_PER_BLOCK)
    taps = np.zeros((rows, offsets.size), dtype=x.dtype)
    taps[:c_out, :t] = weight.reshape(c_out, t)
    b = np.zeros(rows, dtype=x.dtype)
    if bias is not None:
        b[:c_out] = bias
    y = np.empty((n, c_out, ho, wo), dtype=x.dtype)
    # A multiply-add costs about an eighth of what one element costs the
    # memory-bound kernels that PARALLEL_MIN_SIZE was measured on.
    _run(_direct_conv_kernel, _shares(n * c_out * ho * wo * t // 8, n),
         np.ascontiguousarray(x), taps, offsets, b, padding[0], padding[2], hq, wq, stride[0], stride[1], groups, y)
    return y


# ---------------------------------------------------------------- dL/dW
# Each (output, tap) pair sums gy times the shifted plane over the wide rows of every
# image. The sums stay vectors (one partial sum per lane) from image to image and are
# added across their lanes once, at the end. Adding them up per image, as LLVM's
# vectorised reductions did, cost as much as the products on LeNet-5's 10x10 rows:
# its second layer's dL/dW took 0.41 ms against 0.33 (two threads, "AMD EPYC").
@njit(inline="always")
def _four_outputs_dot(wide, plane, base, offsets, t, span, o, sums):
    """sums[o+k] lanes of tap t+j += wide[o+k, q + lane] * plane[base + offsets[t+j] + q + lane]
    over q < span, for k < 4 and j < 3: twelve vector sums in registers, stored back once."""
    n = lanes(plane)
    s0, s1, s2 = base + offsets[t], base + offsets[t + 1], base + offsets[t + 2]
    ra, rb, rc, rd = sums[o], sums[o + 1], sums[o + 2], sums[o + 3]
    a0, a1, a2 = load(ra, t * n), load(ra, (t + 1) * n), load(ra, (t + 2) * n)
    b0, b1, b2 = load(rb, t * n), load(rb, (t + 1) * n), load(rb, (t + 2) * n)
    c0, c1, c2 = load(rc, t * n), load(rc, (t + 1) * n), load(rc, (t + 2) * n)
    d0, d1, d2 = load(rd, t * n), load(rd, (t + 1) * n), load(rd, (t + 2) * n)
    ga, gb, gc, gd = wide[o], wide[o + 1], wide[o + 2], wide[o + 3]
    for q in range(0, span, n):
        v0, v1, v2 = load(plane, s0 + q), load(plane, s1 + q), load(plane, s2 + q)
        g = load(ga, q)
        a0, a1, a2 = fma(g, v0, a0), fma(g, v1, a1), fma(g, v2, a2)
        g = load(gb, q)
        b0, b1, b2 = fma(g, v0, b0), fma(g, v1, b1), fma(g, v2, b2)
        g = load(gc, q)
        c0, c1, c2 = fma(g, v0, c0), fma(g, v1, c1), fma(g, v2, c2)
        g = load(gd, q)
        d0, d1, d2 = fma(g, v0, d0), fma(g, v1, d1), fma(g, v2, d2)
    for row, (v0, v1, v2) in ((ra, (a0, a1, a2)), (rb, (b0, b1, b2)), (rc, (c0, c1, c2)), (rd, (d0, d1, d2))):
        store(row, t * n, v0)
        store(row, (t + 1) * n, v1)
        store(row, (t + 2) * n, v2)


@njit(inline="always")
def _one_output_dot(g, plane, base, offsets, t, span, row):
    """The same for one output: row's lanes of taps t..t+2 += g[q + lane] * plane[...]."""
    n = lanes(plane)
    s0, s1, s2 = base + offsets[t], base + offsets[t + 1], base + offsets[t + 2]
    a0, a1, a2 = load(row, t * n), load(row, (t + 1) * n), load(row, (t + 2) * n)
    for q in range(0, span, n):
        u = load(g, q)
        a0, a1, a2 = fma(u, load(plane, s0 + q), a0), fma(u, load(plane, s1 + q), a1), fma(u, load(plane, s2 + q), a2)
    store(row, t * n, a0)
    store(row, (t + 1) * n, a1)
    store(row, (t + 2) * n, a2)


@njit(parallel=True, cache=True)
def _direct_weight_grad_kernel(shares, x, gy, offsets, pt, pl, hq, wq, sh, sw, groups, gw_shares):
    # gw_shares (shares, C_out rounded up to a multiple of 4, T rounded up to a multiple of 3):
    # one partial dL/dW per thread, summed by the caller.
    N, C = x.shape[0], x.shape[1]
    c_out, Ho, Wo = gy.shape[1], gy.shape[2], gy.shape[3]
    gy_flat = gy.reshape(-1)
    n_lanes = lanes(gy_flat)
    span = _round_up((Ho - 1) * wq + Wo, n_lanes)
    taps = offsets.shape[0]
    channel_size = sh * sw * hq * wq
    for share in prange(shares):
        plane = _aligned_zeros(C * channel_size + n_lanes, x.dtype)
        wide = _aligned_rows(gw_shares.shape[1], span, x.dtype)     # gy on the wide rows: 0 where j >= Wo
        sums = np.zeros((gw_shares.shape[1], taps * n_lanes), dtype=x.dtype)   # lane by lane
        for n in range(share * N // shares, (share + 1) * N // shares):
            _copy_into_padded(plane, x, n, pt, pl, hq, wq, sh, sw)
            for o in range(c_out):
                for r in range(Ho):
                    gather_flat(wide[o], r * wq, gy_flat, ((n * c_out + o) * Ho + r) * Wo, Wo, 1)
            step = _outputs_per_block(c_out, groups)
            for o in range(0, c_out, step):
                base = _group_base(o, c_out, C, groups, channel_size)
                for t in range(0, taps, 3):
                    if step == OUTPUTS_PER_BLOCK:
                        _four_outputs_dot(wide, plane, base, offsets, t, span, o, sums)
                    else:
                        _one_output_dot(wide[o], plane, base, offsets, t, span, sums[o])
        gw_shares[share] = sums.reshape((gw_shares.shape[1], taps, n_lanes)).sum(axis=2)


def conv2d_direct_weight_grad(x, gy, kernel_size, padding, dilation, groups=1, stride=(1, 1)):
    """dL/dW of ``conv2d_direct`` for the upstream gradient ``gy`` (N, C_out, Ho, Wo):

        dL/dW[o, c, i, jj] = sum_{n, r, j} gy[n, o, r, j] * xpad[n, c, r*sh + i*dh, j*sw + jj*dw]

    On the wide rows this is a dot product of gy (0 at the wrapped positions)
    with the shifted plane (the phase planes, for a stride), for every (output
    channel, tap) pair:
        dL/dW[o, tap] = sum_n sum_{q < span} gy_wide[n, o, q] * plane_n[q + off(tap)]
    Each thread sums its share of the images; the shares are added at the end."""
    n, c = x.shape[0], x.shape[1] // groups
    c_out = gy.shape[1]
    kh, kw = kernel_size
    t = c * kh * kw
    (hq, wq), _, offsets = _geometry(x.shape, (c_out, c, kh, kw), padding, dilation, stride)
    shares = _shares(gy.size * t // 8, n)
    gw = np.empty((shares, _round_up(c_out, OUTPUTS_PER_BLOCK), offsets.size), dtype=x.dtype)
    gy = np.ascontiguousarray(gy, dtype=x.dtype)        # the kernel sizes its vectors by one dtype
    _run(_direct_weight_grad_kernel, shares, np.ascontiguousarray(x), gy, offsets,
         padding[0], padding[2], hq, wq, stride[0], stride[1], groups, gw)
    return gw.sum(axis=0)[:c_out, :t].reshape(c_out, c, kh, kw)
