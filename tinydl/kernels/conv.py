"""The fast routes of the convolution ops, and the one dispatcher that picks them.

``tinydl/ops/conv.py`` holds the textbook Conv2d and ConvTranspose2d (im2col, one
matrix product, col2im). Each route here computes the same numbers another way, on
raw arrays, with the op's interface::

    route.forward(x, weight, bias, geometry, needs)       -> y, saved
    route.backward(x, weight, saved, gy, geometry, needs) -> dL/dx, dL/dW
    (ConvTranspose2d's routes: forward(x, weight, bias, geometry, y_shape) -> y,
     backward(x, weight, gy, geometry, needs) -> dL/dx, dL/dW)

``geometry`` is (kernel, stride, padding (top, bottom, left, right), dilation, groups)
and ``needs`` the op's ``needs_input_grad``. The routes of Conv2d:

    pointwise   1x1 unpadded: one matrix product per image, no columns (any device)
    winograd_f4 3x3, stride 1, one group, 32 channels or more, many tiles: Winograd
                F(4x4, 3x3), kernels/winograd_f4.py, 4x fewer multiplies than the GEMM (CPU)
    winograd    the same, fewer tiles: Winograd F(2x2, 3x3), kernels/winograd.py, 2.25x
                fewer multiplies than the GEMM (CPU)
    direct      few channels per group: kernels/direct_conv.py, no columns (CPU; a
                strided layer's dL/dx is chunked's)
    gy_columns  stride 1, one group: both gradients from the columns of gy, so the
                forward keeps no columns (CPU)
    chunked     im2col + GEMM a chunk of images at a time, into reused buffers; on the
                CPU the chunks run on all cores at once (kernels/_threads.py); backward
                rebuilds each chunk's columns for dL/dW (any device)

``conv2d_route`` picks the first route that applies and is the fast choice for the
call (the thresholds were measured: benchmarks/bench_alone.py and, for the transposed
convolution, benchmarks/bench_conv_transpose.py); ``td.backends`` can
force a route or the textbook op (``reference()``), and records which ran.

The routes of ConvTranspose2d (``conv_transpose2d_route``, the same way):

    winograd    kernel twice the stride (4x4 stride 2), dilation 1, one group, padding
                below the kernel: every output phase a 2x2 kernel, all of them one
                stride-1 convolution done as Winograd F(3x3, 2x2),
                kernels/winograd_transpose.py, 16 multiplies where there were 36; taken
                on stride 2 with enough tiles that waste little (CPU)
    as_conv2d   stride 1: the convolution it is (W flipped), all three products on the
                conv2d routes; taken where those give it Winograd or direct (CPU)
    subpixel    dilation 1: chunked's products, but col2im and gy's im2col one output
                phase at a time, contiguous (kernels/subpixel.py); not taken for a 4x4
                s2 kernel on x narrower than 8 (CPU)
    chunked     GEMM + col2im a chunk of images at a time, on all cores; backward is
                Chunked.convolve on gy, whose columns give dL/dW (any device)
"""
import math

import numpy as np

from .. import backends
from ..backend import get_array_module
from . import winograd, winograd_f4, winograd_transpose
from ._dispatch import use_numba, workspace
from ._threads import accumulate, add_up, chunk_workers, per_worker, run_chunks, worker_key
from .cudnn import CudnnConv
from .direct_conv import conv2d_direct, conv2d_direct_weight_grad
from .im2col import col2im, conv_output_size, im2col
from .matmul import matmul, own_cublas
from .subpixel import fold_phases, unfold_phases, wide_pitch, wide_rows

__all__ = ["conv2d_route", "conv_transpose2d_route", "CONV2D_ROUTES", "CONV_TRANSPOSE2D_ROUTES"]


# ---------------------------------------------------------------- shared pieces
def grouped(a, groups):
    """(G*M, P) -> (G, M, P): a free view; group g's rows are one contiguous block."""
    return a.reshape(groups, a.shape[0] // groups, a.shape[1])


def gemm(a, b, out=None):
    """Batched over groups: (G, M, K) @ (G, K, P) -> (G, M, P); a plain 2-D GEMM when G = 1."""
    if a.shape[0] == 1:
        return matmul(a[0], b[0], out=None if out is None else out[0])[None]
    return matmul(a, b, out=out)


def _scratch(xp, shape, dtype, key):
    """A reused buffer on the CPU (valid until the next request with ``key``); fresh on the GPU."""
    return workspace(shape, dtype, key) if xp is np else xp.empty(shape, dtype=dtype)


def _channels_first(x, key):
    """(N, C, H, W) -> (C, N*H*W), copied into a scratch buffer: the layout of cols' columns."""
    xp = get_array_module(x)
    n, c, h, w = x.shape
    out = _scratch(xp, (c, n, h * w), x.dtype, key)
    out[...] = x.reshape(n, c, h * w).transpose(1, 0, 2)
    return out.reshape(c, n * h * w)


def _batch_first(y2, out, bias=None):
    """y2 (C, N*L) + bias into ``out`` (N, C, ...); the bias goes in before the transposing
    copy, where NumPy's broadcast add is slow."""
    n, c, l = out.shape[0], out.shape[1], math.prod(out.shape[2:])
    if bias is not None:
        y2 += bias.reshape(c, 1)
    out.reshape(n, c, l)[...] = y2.reshape(c, n, l).transpose(1, 0, 2)
    return out


def _full_padding_fits(padding, kernel, dilation):
    """Is the padding no wider than the dilated kernel? Then gy padded to the "full"
    size (dilation*(k-1) - padding on each side) is never cropped."""
    pt, pb, pl, pr = padding
    return max(pt, pb) <= dilation[0] * (kernel[0] - 1) and max(pl, pr) <= dilation[1] * (kernel[1] - 1)


def full_padding(geometry):
    """The "full" padding (top, bottom, left, right) of the convolution that is a stride-1
    convolution's adjoint: the dilated kernel's reach less the padding, on each side."""
    (kh, kw), _, (pt, pb, pl, pr), (dh, dw), _ = geometry
    return dh * (kh - 1) - pt, dh * (kh - 1) - pb, dw * (kw - 1) - pl, dw * (kw - 1) - pr


def full_convolution(weight, geometry):
    """dL/dx of a stride-1 convolution as a convolution of gy (ops/conv.py, Conv2d's
    docstring): gy's "full" padding, and W' (C, C_out/G, kh, kw) = group g's block of W,
    flipped, with its two channel axes swapped."""
    (kh, kw), groups = geometry[0], geometry[4]
    full = full_padding(geometry)
    c_out, c_per_group = weight.shape[:2]
    blocks = weight.reshape(groups, c_out // groups, c_per_group, kh, kw)[..., ::-1, ::-1]
    flipped = blocks.transpose(0, 2, 1, 3, 4).reshape(groups * c_per_group, c_out // groups, kh, kw)
    return full, get_array_module(weight).ascontiguousarray(flipped)


# ---------------------------------------------------------------- chunks of images
def _batch_chunks(xp, n, bytes_per_image, chunk_bytes):
    """Slices of the batch with at most ``chunk_bytes`` of columns each (one image at
    least), of near-equal sizes, as many for every worker; columns of half a chunk or
    more are split among the workers even when one chunk would hold them."""
    if xp is not np or n == 0:
        return [slice(0, n)]
    per_chunk = max(1, min(n, chunk_bytes // max(bytes_per_image, 1)))
    count = -(-n // per_chunk)
    if count == 1 and n * bytes_per_image < chunk_bytes // 2:
        return [slice(0, n)]
    workers = chunk_workers(n)
    count = min(n, -(-count // workers) * workers)
    bounds = [i * n // count for i in range(count + 1)]
    return [slice(a, b) for a, b in zip(bounds, bounds[1:])]


def _tile_chunks(route, x, tiles, tile_numbers):
    """Slices of the batch for a Winograd route: ``route.chunk_bytes`` of transformed tiles
    (``tiles`` (th, tw) per image, ``tile_numbers`` numbers each), ``route.chunk_tiles`` at
    least, and never the whole batch in one chunk when it has several images: one chunk
    would run the parallel kernels and threaded OpenBLAS in turn (512->512 7x7 N8, two
    threads: 3-6x slower)."""
    tile_bytes = tile_numbers * x.itemsize
    image_bytes = tiles[0] * tiles[1] * tile_bytes
    chunk_bytes = max(route.chunk_bytes, route.chunk_tiles * tile_bytes)
    return _batch_chunks(np, x.shape[0], image_bytes, min(chunk_bytes, x.shape[0] * image_bytes))


class Chunked:
    """im2col + one GEMM per group, a chunk of images at a time, spread over the cores."""

    name = "chunked"
    chunk_bytes = 4 << 20          # columns per chunk: still in cache when the GEMM reads them

    @staticmethod
    def applies(x, weight_shape, geometry, needs):
        return True

    wins = applies

    @classmethod
    def convolve(cls, x, weight, bias, geometry, with_columns=None):
        """y = conv2d(x, weight) + bias. ``with_columns(cols, s, worker)`` sees each chunk's
        columns while they are in cache. The backward builds them again, next to its GEMM:
        that costs no measurable time (ResNet-20 b128 / ResNet-50 b8 steps within 0.4%) and
        keeping them from forward to backward costs memory."""
        (kh, kw), stride, padding, dilation, groups = geometry
        xp = get_array_module(x)
        n, c_out = x.shape[0], weight.shape[0]
        ho, wo = conv_output_size(x.shape[2:], (kh, kw), stride, padding, dilation)
        k, l = x.shape[1] * kh * kw, ho * wo
        w3 = weight.reshape(groups, c_out // groups, -1)
        y = xp.empty((n, c_out, ho, wo), dtype=x.dtype)

        def convolve_chunk(s, worker):
            shape = (k, (s.stop - s.start) * l)
            cols = im2col(x[s], (kh, kw), stride, padding, dilation,
                          out=_scratch(xp, shape, x.dtype, worker_key("conv2d.cols", worker)))
            y2 = gemm(w3, grouped(cols, groups), out=_scratch(xp, (groups, c_out // groups, shape[1]), x.dtype,
                                                                worker_key("conv2d.y", worker)))
            _batch_first(y2.reshape(c_out, -1), y[s], bias)
            if with_columns is not None:
                with_columns(cols, s, worker)

        run_chunks(convolve_chunk, _batch_chunks(xp, n, k * l * x.itemsize, cls.chunk_bytes))
        return y

    @classmethod
    def forward(cls, x, weight, bias, geometry, needs):
        return cls.convolve(x, weight, bias, geometry), None

    @classmethod
    def backward(cls, x, weight, _, gy, geometry, needs):
        kernel, stride, padding, dilation, groups = geometry
        xp = get_array_module(gy)
        n, c_out = gy.shape[:2]
        k, l = x.shape[1] * kernel[0] * kernel[1], gy.shape[2] * gy.shape[3]
        w3 = weight.reshape(groups, c_out // groups, -1)
        gx = xp.empty(x.shape, dtype=gy.dtype) if needs[0] else None
        gw_parts = {}                                                      # worker -> its share of dL/dW

        def backward_chunk(s, worker):
            m = s.stop - s.start
            gy2 = grouped(_channels_first(gy[s], worker_key("conv2d.gy", worker)), groups)
            if needs[1]:
                cols = im2col(x[s], kernel, stride, padding, dilation,
                              out=_scratch(xp, (k, m * l), x.dtype, worker_key("conv2d.cols", worker)))
                accumulate(gw_parts, worker, gemm(gy2, grouped(cols, groups).swapaxes(1, 2)))
            if needs[0]:
                dcols = gemm(w3.swapaxes(1, 2), gy2, out=_scratch(xp, (groups, k // groups, m * l), gy.dtype,
                                                                  worker_key("conv2d.dcols", worker)))
                col2im(dcols.reshape(k, -1), (m,) + x.shape[1:], kernel, stride, padding, dilation, out=gx[s])

        run_chunks(backward_chunk, _batch_chunks(xp, n, k * l * gy.itemsize, cls.chunk_bytes))
        gw = add_up(gw_parts, xp, weight.shape, gy.dtype) if needs[1] else None
        return gx, gw


class GyColumns:
    """Stride 1, one group: dL/dx as the full convolution of gy with W' (chunked), whose
    columns of gy also give dL/dW: (dL/dW')^T = gcols @ x^T. The forward keeps no columns."""

    name = "gy_columns"

    @staticmethod
    def applies(x, weight_shape, geometry, needs):
        kernel, stride, padding, dilation, groups = geometry
        return (get_array_module(x) is np and needs[0] and groups == 1 and stride == (1, 1)
                and _full_padding_fits(padding, kernel, dilation))

    @staticmethod
    def wins(x, weight_shape, geometry, needs):
        """When gy's columns are no bigger than x's (3x3 'same' layers, not unpadded 5x5 ones)."""
        kernel, stride, padding, dilation, _ = geometry
        ho, wo = conv_output_size(x.shape[2:], kernel, stride, padding, dilation)
        return weight_shape[0] * x.shape[2] * x.shape[3] <= weight_shape[1] * ho * wo

    @staticmethod
    def forward(x, weight, bias, geometry, needs):
        return Chunked.convolve(x, weight, bias, geometry), None

    @staticmethod
    def backward(x, weight, _, gy, geometry, needs):
        (kh, kw), _, _, dilation, _ = geometry
        xp = get_array_module(gy)
        full, flipped = full_convolution(weight, geometry)
        gw_parts = {}                                                      # worker -> its share of (dL/dW')^T

        def weight_grad(gcols, s, worker):
            accumulate(gw_parts, worker, gcols @ _channels_first(x[s], worker_key("conv2d.x", worker)).T)

        gx = Chunked.convolve(gy, flipped, None, ((kh, kw), (1, 1), full, dilation, 1),
                              with_columns=weight_grad if needs[1] else None)
        gw = None
        if needs[1]:
            gw_flipped = add_up(gw_parts, xp, (flipped[0].size, x.shape[1]), gy.dtype)   # (C_out*kh*kw, C)
            gw = xp.ascontiguousarray(gw_flipped.reshape(-1, kh, kw, x.shape[1])[:, ::-1, ::-1].transpose(0, 3, 1, 2))
        return gx, gw


class Winograd:
    """3x3, stride 1, one group, many channels: Winograd F(2x2, 3x3), kernels/winograd.py
    (16 multiplies per 2x2 outputs instead of 36), a chunk of images at a time, on all cores."""

    name = "winograd"
    algorithm = winograd.F23       # its tile transforms (WinogradF4: F(4x4, 3x3)'s), run by kernels/winograd.py
    chunk_bytes = 1 << 20          # transformed tiles (points x channels x tiles) per chunk ...
    chunk_tiles = 512              # ... but at least this many tiles (a narrow GEMM rereads U)
    min_tiles = 48                 # in the batch; with fewer, U's and dU's passes cost more than is saved
    min_channels = 32              # in and out; with fewer, Direct (or gy_columns) is faster

    @staticmethod
    def applies(x, weight_shape, geometry, needs):
        kernel, stride, padding, dilation, groups = geometry
        return (get_array_module(x) is np and use_numba(x.dtype) and tuple(kernel) == (3, 3)
                and stride == (1, 1) and dilation == (1, 1) and groups == 1 and max(padding) <= 2)

    @classmethod
    def wins(cls, x, weight_shape, geometry, needs):
        """From 32 channels on: at 32 its forward + backward took 0.50-0.96x direct's time
        (8x8 to 56x56 planes, batch 8 to 128, two threads), at 16 1.2-1.5x; with 32 to 64
        channels in and out 0.61-0.96x the faster of gy_columns and chunked (32->128 on
        32x32: 1.06x); from 40 on it beat gy_columns and direct 1.3-2x. And with enough
        tiles in the batch: at 32 tiles (256 or 512 channels) it was 0-10% slower than
        gy_columns, at 49 30% faster."""
        th, tw = winograd.tile_counts(conv_output_size(x.shape[2:], (3, 3), 1, geometry[2]))
        return min(weight_shape[:2]) >= cls.min_channels and x.shape[0] * th * tw >= cls.min_tiles

    @classmethod
    def _chunks(cls, x, weight, out_hw):
        return _tile_chunks(cls, x, cls.algorithm.tile_counts(out_hw), cls.algorithm.points * max(weight.shape[:2]))

    @classmethod
    def forward(cls, x, weight, bias, geometry, needs):
        padding = geometry[2]
        x = np.ascontiguousarray(x)
        u = winograd.transform_weight(weight, cls.algorithm)
        b = np.zeros(weight.shape[0], dtype=x.dtype) if bias is None else bias
        y = np.empty((x.shape[0], weight.shape[0]) + conv_output_size(x.shape[2:], (3, 3), 1, padding), x.dtype)
        run_chunks(lambda s, worker: winograd.forward_images(x[s], u, b, padding, y[s], worker, cls.algorithm),
                   cls._chunks(x, weight, y.shape[2:]))
        return y, None

    @classmethod
    def backward(cls, x, weight, _, gy, geometry, needs):
        padding = geometry[2]
        if not (needs[0] or needs[1]):
            return None, None
        x, gy = np.ascontiguousarray(x), np.ascontiguousarray(gy)
        u = winograd.transform_weight(weight, cls.algorithm)
        gx = np.empty(x.shape, dtype=gy.dtype) if needs[0] else None
        du_parts = {}                                                      # worker -> its share of dU

        def backward_chunk(s, worker):
            add = worker in du_parts
            if needs[1] and not add:
                du_parts[worker] = winograd.tile_buffer(*weight.shape[:2], gy.dtype,
                                                        worker_key(f"{cls.name}.du", worker), cls.algorithm.points)
            winograd.backward_images(x[s], u, gy[s], padding, None if gx is None else gx[s],
                                     du_parts.get(worker), add, worker, cls.algorithm)

        run_chunks(backward_chunk, cls._chunks(x, weight, gy.shape[2:]))
        return gx, (winograd.weight_grad([du_parts[w] for w in sorted(du_parts)], cls.algorithm) if needs[1] else None)


class WinogradF4(Winograd):
    """3x3, stride 1, one group, many channels: Winograd F(4x4, 3x3), kernels/winograd_f4.py
    (36 multiplies per 4x4 outputs instead of 144; 5-15 times F(2x2, 3x3)'s float32
    rounding error), a chunk of images at a time, on all cores."""

    name = "winograd_f4"
    algorithm = winograd_f4.F43
    chunk_bytes = 1 << 19          # smaller chunks than F(2x2)'s (its tiles are 2.25x larger): forward +
    chunk_tiles = 128              # backward 0.76-1.0x the time with 1 MiB / 512 on ResNet-20's and -50's layers
    min_tiles = 96                 # 4x4 tiles in the batch, where they cover no more outputs than 2x2 ones ...
    min_tiles_padded = 384         # ... and where a 4x4 grid overhangs the output further (14x14: 31% more)

    @classmethod
    def wins(cls, x, weight_shape, geometry, needs):
        """Against F(2x2, 3x3), forward + backward, two threads, "AMD EPYC": 0.69-0.90x from
        98 tiles on that cover the output as 2x2 tiles do (ResNet-20's 32->32 16x16 and
        64->64 8x8 at batch 128: 0.84-0.94x; 128->128 28x28 N2 to N8 0.80-0.90x; 512->512
        7x7 N64 0.82x), 1.0x at 128 (64->64 16x16 N8), 1.33-1.47x at 64 (8x8 N16); where
        the 4x4 grid overhangs more (14x14 planes) 1.03x at 256 tiles (256->256 N16),
        0.90x at 512 (N32). Few tiles make narrow GEMMs that reread U, 2.25x F(2x2)'s."""
        if min(weight_shape[:2]) < cls.min_channels:
            return False
        out_hw = conv_output_size(x.shape[2:], (3, 3), 1, geometry[2])
        th, tw = winograd_f4.tile_counts(out_hw)
        th2, tw2 = winograd.tile_counts(out_hw)
        overhang = 16 * th * tw > 4 * th2 * tw2
        return x.shape[0] * th * tw >= (cls.min_tiles_padded if overhang else cls.min_tiles)


class Direct:
    """Few channels per group: kernels/direct_conv.py, no columns anywhere. A strided
    layer runs y and dL/dW there on its phase planes, and dL/dx as Chunked does (GEMM +
    col2im: 4.2 ms against the phases' 7.0 for ResNet-20's 16->32 stride 2, batch 128);
    so does a layer whose gy is less than half of its "full"-padded plane (see
    ``input_grad_on_direct``)."""

    name = "direct"
    max_channels = 32              # per group; beyond it im2col + OpenBLAS is faster
    strided_max_out = 64           # output channels per group of a strided layer ...
    strided_min_plane = 256        # ... and output pixels per plane (shorter wide rows lose)

    @staticmethod
    def applies(x, weight_shape, geometry, needs):
        kernel, stride, padding, dilation, _ = geometry
        return (get_array_module(x) is np and use_numba(x.dtype)
                and (stride != (1, 1) or not needs[0] or _full_padding_fits(padding, kernel, dilation)))

    @classmethod
    def wins(cls, x, weight_shape, geometry, needs):
        """Strided, against chunked (two threads): y in 0.50-0.93x its time and dL/dW in
        0.25-0.77x with up to 32 input channels and planes of 16x16 or more (docs/
        performance.md); on 8x8 planes 0.7-1.4x, and from 64 input channels 0.6-1.8x."""
        (c_out, c_per_group), stride, groups = weight_shape[:2], geometry[1], geometry[4]
        if stride == (1, 1):
            return c_out // groups <= cls.max_channels and (not needs[0] or c_per_group <= cls.max_channels)
        ho, wo = conv_output_size(x.shape[2:], geometry[0], stride, geometry[2], geometry[3])
        return (c_per_group <= cls.max_channels and c_out // groups <= cls.strided_max_out
                and ho * wo >= cls.strided_min_plane)

    @staticmethod
    def input_grad_on_direct(gy_shape, geometry):
        """dL/dx as a convolution of gy on the direct kernels: stride 1, and gy at least
        half of its "full"-padded plane. A "valid" 5x5 on LeNet's 14x14 pads gy's 10x10
        to 18x18, and there chunked's GEMM + col2im took 0.59-0.70x the time (3x3 and 5x5
        layers padded to their size: 1.4-4.2x)."""
        if geometry[1] != (1, 1):
            return False
        pt, pb, pl, pr = full_padding(geometry)
        ho, wo = gy_shape[2:]
        return 2 * ho * wo >= (ho + pt + pb) * (wo + pl + pr)

    @staticmethod
    def forward(x, weight, bias, geometry, needs):
        _, stride, padding, dilation, groups = geometry
        return conv2d_direct(x, weight, bias, padding, dilation, groups, stride), None

    @classmethod
    def backward(cls, x, weight, _, gy, geometry, needs):
        kernel, stride, padding, dilation, groups = geometry
        gy = np.ascontiguousarray(gy)                     # once, for both kernels
        gx = gw = None
        if needs[0] and not cls.input_grad_on_direct(gy.shape, geometry):
            gx = Chunked.backward(x, weight, None, gy, geometry, (True, False))[0]
        elif needs[0]:
            full, flipped = full_convolution(weight, geometry)
            gx = conv2d_direct(gy, flipped, None, full, dilation, groups)
        if needs[1]:
            gw = conv2d_direct_weight_grad(x, gy, kernel, padding, dilation, groups, stride)
        return gx, gw


class Pointwise:
    """1x1, unpadded, one group: x subsampled by the stride is (N, C, L), and
        y[n] = W2 @ x_s[n] + b,   dL/dx_s[n] = W2^T @ gy[n],   dL/dW2 = sum_n gy[n] @ x_s[n]^T
    per-image products straight into NCHW: no columns, no transposing copies, no col2im.
    On the CPU each core takes a share of the images, with single-threaded products
    (kernels/_threads.py), as the other routes do: ResNet-50's 1x1 layers at batch 8 ran
    1-13% faster alone that way than as products threaded by OpenBLAS, up to 3x on a busy
    machine, and in a step OpenBLAS's threads no longer spin against Numba's kernels."""

    name = "pointwise"

    @staticmethod
    def applies(x, weight_shape, geometry, needs):
        kernel, _, padding, _, groups = geometry
        return kernel == (1, 1) and padding == (0, 0, 0, 0) and groups == 1

    wins = applies

    @staticmethod
    def forward(x, weight, bias, geometry, needs):
        xp, (sh, sw) = get_array_module(x), geometry[1]
        n, c = x.shape[:2]
        x_s = x[:, :, ::sh, ::sw]
        ho, wo = x_s.shape[2:]
        w2 = weight.reshape(weight.shape[0], c)
        copy = not x_s.flags.c_contiguous
        x3 = xp.empty((n, c, ho * wo), dtype=x.dtype) if copy else x_s.reshape(n, c, ho * wo)
        y = xp.empty((n, w2.shape[0], ho * wo), dtype=x.dtype)

        def forward_chunk(s, worker):
            if copy:
                x3[s].reshape(x_s[s].shape)[...] = x_s[s]
            matmul(w2, x3[s], out=y[s])
            if bias is not None:
                y[s] += bias.reshape(1, -1, 1)

        run_chunks(forward_chunk, per_worker(n) if xp is np else [slice(0, n)])
        return y.reshape(n, w2.shape[0], ho, wo), x3

    @staticmethod
    def backward(x, weight, x3, gy, geometry, needs):
        xp, (sh, sw) = get_array_module(gy), geometry[1]
        n, c_out = gy.shape[:2]
        gy3 = xp.ascontiguousarray(gy).reshape(n, c_out, x3.shape[2])
        w2t = weight.reshape(c_out, -1).T
        gx_s = xp.empty(x3.shape, dtype=gy.dtype) if needs[0] else None
        gw_parts = {}                                                      # worker -> its share of dL/dW

        def backward_chunk(s, worker):
            if needs[0]:
                matmul(w2t, gy3[s], out=gx_s[s])
            if needs[1]:
                accumulate(gw_parts, worker, _image_products_sum(gy3[s], x3[s]))

        run_chunks(backward_chunk, per_worker(n) if xp is np else [slice(0, n)])
        gx = gw = None
        if needs[0]:
            gx_s = gx_s.reshape((n, x3.shape[1]) + gy.shape[2:])
            if (sh, sw) == (1, 1):
                gx = gx_s
            else:
                gx = xp.zeros(x.shape, dtype=gy.dtype)
                gx[:, :, ::sh, ::sw] = gx_s
        if needs[1]:
            gw = add_up(gw_parts, xp, weight.shape, gy.dtype)
        return gx, gw


def _image_products_sum(a, b):
    """sum_n a[n] @ b[n]^T for a (N, M, L), b (N, K, L). On the CPU with L >= 128 as N
    products added up: tensordot's one product first copies both into (M, N*L) and
    (N*L, K), which costs more than it saves there (ResNet-50's 1x1 layers, 1 thread:
    0.40-0.84x the time at L = 784 to 3136, 0.92-0.99x at 196, 1.2-1.3x at 49)."""
    xp = get_array_module(a)
    if xp is not np and own_cublas():       # a CUDA graph's products: all through matmul
        return matmul(a, b.swapaxes(1, 2)).sum(axis=0)
    if xp is not np or a.shape[2] < 128 or a.shape[0] == 0:
        return xp.tensordot(a, b, axes=([0, 2], [0, 2]))
    total = a[0] @ b[0].T
    product = np.empty_like(total)
    for n in range(1, a.shape[0]):
        total += np.matmul(a[n], b[n].T, out=product)
    return total


class ChunkedTranspose:
    """ConvTranspose2d a chunk of images at a time, on all cores: forward GEMM + col2im per
    chunk; backward is Chunked.convolve on gy (dL/dx), whose columns give dL/dW."""

    name = "chunked"

    @staticmethod
    def applies(x, weight_shape, geometry, needs):
        return True

    wins = applies

    @staticmethod
    def forward(x, weight, bias, geometry, y_shape):
        kernel, stride, padding, dilation, groups = geometry
        xp = get_array_module(x)
        n, c_in, h, w = x.shape
        w3 = weight.reshape(groups, c_in // groups, -1)                    # (G, C_in/G, K/G)
        k = w3.shape[0] * w3.shape[2]
        y = xp.empty(y_shape, dtype=x.dtype)

        def forward_chunk(s, worker):
            x2 = grouped(_channels_first(x[s], worker_key("conv_transpose2d.x", worker)), groups)
            cols = gemm(w3.swapaxes(1, 2), x2, out=_scratch(xp, (groups, k // groups, x2.shape[2]), x.dtype,
                                                            worker_key("conv_transpose2d.cols", worker)))
            col2im(cols.reshape(k, -1), y[s].shape, kernel, stride, padding, dilation, out=y[s])
            if bias is not None:            # while the chunk is in the cache, on its worker
                y[s] += bias.reshape(1, -1, 1, 1)

        run_chunks(forward_chunk, _batch_chunks(xp, n, k * h * w * x.itemsize, Chunked.chunk_bytes))
        return y

    @staticmethod
    def backward(x, weight, gy, geometry, needs):
        groups = geometry[4]
        gw_parts = {}                                                      # worker -> its share of dL/dW

        def weight_grad(gcols, s, worker):
            x2 = grouped(_channels_first(x[s], worker_key("conv_transpose2d.x", worker)), groups)
            accumulate(gw_parts, worker, gemm(x2, grouped(gcols, groups).swapaxes(1, 2)))

        # dL/dx is computed even when only dL/dW is wanted: its columns give dL/dW
        gx = Chunked.convolve(gy, weight, None, geometry, with_columns=weight_grad if needs[1] else None)
        gw = add_up(gw_parts, get_array_module(gy), weight.shape, gy.dtype) if needs[1] else None
        return (gx if needs[0] else None), gw


class ConvolutionTranspose:
    """Stride 1, on the CPU: a stride-1 transposed convolution is a convolution (Conv2d's
    dL/dx, ops/conv.py), so all three of its products run on the conv2d routes:

        y     = conv2d(x, W')          W' = W flipped, its channel axes swapped; "full" padding
        dL/dx = conv2d(gy, W)          the op's own padding
        dL/dW = that convolution's dL/dW, with gy as its input and x as its upstream gradient

    Taken where the forward's convolution gets the Winograd or the direct route (a 3x3
    layer with many channels, or few channels), as the deconvnet's 3x3 projections
    (models/alexnet.py). Against subpixel, both forced, one process, min of 15 (AMD EPYC,
    two threads), forward / forward and backward: 64->64 3x3 16x16 N16 1.38 / 4.41 ms
    against 2.02 / 6.48; 384->256 3x3 13x13 N8 9.56 / 27.8 against 12.7 / 41.0; 16->16
    3x3 32x32 N64 1.86 / 5.60 against 2.88 / 11.0."""

    name = "as_conv2d"
    fast_routes = ("winograd_f4", "winograd", "direct")    # beyond them: subpixel's GEMM again

    @staticmethod
    def _conv2d(x, weight_shape, geometry, needs):
        """The conv2d route the dispatcher would take for this call (not recorded; chunked
        when no other applies, never the textbook op)."""
        return next((r for r in CONV2D_ROUTES if r.applies(x, weight_shape, geometry, needs)
                     and r.wins(x, weight_shape, geometry, needs)), None)

    @staticmethod
    def _forward_geometry(weight_shape, geometry):
        """The convolution y = conv2d(x, W'): W''s shape and its geometry."""
        kernel, _, _, dilation, groups = geometry
        c_in, c_out_per_group = weight_shape[:2]
        return ((c_out_per_group * groups, c_in // groups) + tuple(kernel),
                (tuple(kernel), (1, 1), full_padding(geometry), dilation, groups))

    @classmethod
    def applies(cls, x, weight_shape, geometry, needs):
        kernel, stride, padding, dilation, _ = geometry
        if not (get_array_module(x) is np and use_numba(x.dtype) and stride == (1, 1)
                and _full_padding_fits(padding, kernel, dilation)):
            return False
        route = cls._conv2d(x, *cls._forward_geometry(weight_shape, geometry), (False, False, False))
        return route.name in cls.fast_routes

    wins = applies

    @classmethod
    def forward(cls, x, weight, bias, geometry, y_shape):
        _, flipped = full_convolution(weight, geometry)
        conv_geometry = cls._forward_geometry(weight.shape, geometry)[1]
        no_grads = (False, False, False)
        return cls._conv2d(x, flipped.shape, conv_geometry, no_grads).forward(x, flipped, bias, conv_geometry,
                                                                             no_grads)[0]

    @classmethod
    def backward(cls, x, weight, gy, geometry, needs):
        # The adjoint convolution, gy -> x, on any conv2d route (chunked takes every call). Its
        # route keeps no state from its forward: never 'pointwise', since with a 1x1 kernel the
        # forward's route is pointwise and this one is not taken.
        conv_geometry = (geometry[0], (1, 1)) + tuple(geometry[2:])
        route = cls._conv2d(gy, weight.shape, conv_geometry, (False, needs[1], False))
        gx = route.forward(gy, weight, None, conv_geometry, (False, False, False))[0] if needs[0] else None
        gw = route.backward(gy, weight, None, x, conv_geometry, (False, True, False))[1] if needs[1] else None
        return gx, gw


class WinogradTranspose:
    """Kernel twice the stride (DCGAN's and FCN's 4x4 stride 2), one group, on the CPU: the
    output phases' 2x2 kernels as one stride-1 convolution in Winograd F(3x3, 2x2)
    (kernels/winograd_transpose.py derives it), a chunk of images at a time, on all cores.

    Why: the subpixel route spends its time in products that already run at the core's
    peak; this one makes 16 multiplies per 3x3 outputs of each phase where the columns
    make 36, in 16 GEMMs ((s*s*C_out, C_in) @ (C_in, tiles)) that run about as fast. On
    benchmarks/bench_alone.py's 64->32 4x4 s2 16x16 N32 layer (AMD EPYC, two threads) the
    forward and backward took 9.7 ms against subpixel's 11.3, the forward 3.2 against 3.8.

    Where it loses: the tiles cover Z (at stride 2, one row and one column longer than x
    with padding 1, as long as x or shorter from padding 2 on) in steps of 3, and what they
    cover past it is products thrown away. With x 4, 6 or 12 pixels high or wide (a quarter
    or more thrown away) it was 1.2-5x slower than subpixel; at 8, 16 or 32 (1/8 or less)
    0.6-0.9x the time, given 288 tiles or more in the batch (at 144, 1.15-1.2x: narrow
    GEMMs). Also slower: stride 4 (on par at 16x16, 1.2x at 8x8), stride 8 and 32 (FCN-8s'
    and 32s' upsampling: 1.1x and 2.3-2.7x). Measured per layer with the routes forced
    (benchmarks/bench_conv_transpose.py)."""

    name = "winograd"
    chunk_bytes = 1 << 20          # transformed tiles (16 x channels x tiles) per chunk ...
    chunk_tiles = 256              # ... but at least this many tiles
    max_waste = 0.15               # the share of a side past x the tiles may cover
    min_channels = 3
    min_tiles = 256                # in the batch; with fewer, the GEMMs are too narrow

    @staticmethod
    def applies(x, weight_shape, geometry, needs):
        kernel, stride, padding, dilation, groups = geometry
        return (get_array_module(x) is np and use_numba(x.dtype) and dilation == (1, 1) and groups == 1
                and tuple(kernel) == (2 * stride[0], 2 * stride[1])
                and padding[0] < kernel[0] and padding[2] < kernel[1])

    @classmethod
    def wins(cls, x, weight_shape, geometry, needs):
        """On stride 2, the one measured, where the tiles waste little and are enough."""
        kernel, stride, (pt, pb, pl, pr), _, _ = geometry
        if stride != (2, 2) or min(weight_shape[:2]) < cls.min_channels:
            return False
        (h, w), (kh, kw) = x.shape[2:], kernel
        out_hw = ((h - 1) * 2 + kh - pt - pb, (w - 1) * 2 + kw - pl - pr)
        th, tw = winograd_transpose.phase_geometry(tuple(stride), (pt, pl), out_hw).tiles
        return (x.shape[0] * th * tw >= cls.min_tiles
                and 3 * th <= (1 + cls.max_waste) * h and 3 * tw <= (1 + cls.max_waste) * w)

    @classmethod
    def _chunks(cls, x, weight, phases):
        channels = max(weight.shape[0], weight.shape[1] * phases.phases)     # C_in, K'
        return _tile_chunks(cls, x, phases.tiles, 16 * channels)

    @classmethod
    def forward(cls, x, weight, bias, geometry, y_shape):
        _, stride, padding, _, _ = geometry
        phases = winograd_transpose.phase_geometry(tuple(stride), tuple(padding[::2]), tuple(y_shape[2:]))
        x = np.ascontiguousarray(x)
        u = winograd_transpose.transform_weight(weight, phases)
        b = np.zeros(y_shape[1], dtype=x.dtype) if bias is None else bias
        y = np.empty(y_shape, dtype=x.dtype)
        run_chunks(lambda s, worker: winograd_transpose.forward_images(x[s], u, b, phases, y[s], worker),
                   cls._chunks(x, weight, phases))
        return y

    @classmethod
    def backward(cls, x, weight, gy, geometry, needs):
        _, stride, padding, _, _ = geometry
        if not (needs[0] or needs[1]):
            return None, None
        phases = winograd_transpose.phase_geometry(tuple(stride), tuple(padding[::2]), tuple(gy.shape[2:]))
        x, gy = np.ascontiguousarray(x), np.ascontiguousarray(gy)
        u = winograd_transpose.transform_weight(weight, phases)
        gx = np.empty(x.shape, dtype=gy.dtype) if needs[0] else None
        du_parts = {}                                                      # worker -> its share of dU

        def backward_chunk(s, worker):
            add = worker in du_parts
            if needs[1] and not add:
                du_parts[worker] = winograd.tile_buffer(*u.shape[1:], gy.dtype, worker_key("winograd_t.du", worker))
            winograd_transpose.backward_images(x[s], u, gy[s], phases, None if gx is None else gx[s],
                                               du_parts.get(worker), add, worker)

        run_chunks(backward_chunk, cls._chunks(x, weight, phases))
        gw = None
        if needs[1]:
            gw = winograd_transpose.weight_grad([du_parts[w] for w in sorted(du_parts)], phases, weight.shape)
        return gx, gw


class SubpixelTranspose:
    """Dilation 1, on the CPU: ChunkedTranspose's products, but col2im and the backward's
    im2col one output phase at a time (kernels/subpixel.py derives it).

    Along one axis, tap i of input pixel h lands on output (h + u)*s + v, with
    i - p = u*s + v: every tap writes one phase v of the output (the pixels o = v mod s)
    at a fixed shift u. So y is s_h*s_w independent interleaved sub-images, each a sum of
    a few shifted rows of the columns. Per chunk of images:

        forward   cols = W^T @ x                 (C_out*kh*kw, C_in) @ (C_in, N*H*Wp), x on
                                                 wide rows (zero-padded to Wp columns)
                  y[phase v] = sum of its taps' rows of cols, each shifted by its u
        backward  the op's adjoint is a strided convolution of gy with W:
                  gcols = im2col(gy)             every row a shifted copy of one phase of gy
                  dL/dx = W @ gcols              (C_in, C_out*kh*kw) @ (C_out*kh*kw, N*H*W)
                  (dL/dW)^T = gcols @ x^T        dL/dW[c, (o,i,j)] = sum over n, h, w of
                                                 x[n,c,h,w] * gy[n, o, h*s-p+i, w*s-p+j]
    ((dL/dW)^T in this order: 5.7 ms against 7.2 as x @ gcols^T on the 64->32 4x4 s2 layer.)

    Why this way, on that layer (N32, one thread, AMD EPYC): the phase-wise col2im takes
    1.0 ms where col2im takes 1.7, and gy's im2col 1.0 where im2col takes 2.0; s*s small
    convolutions (x with each phase's sub-kernel) took 9.4 ms for the forward, more than
    GEMM + col2im's 9.0: their products have only C_out rows, and x's columns are built
    once per phase. The pad
    columns cost the forward's product (Wp - W)/W more: beyond ``max_pad_share`` (x
    narrower than 16) the forward is ChunkedTranspose's, faster there on most layers
    measured. Against chunked, the route wins or ties on DCGAN's 4x4 s2 p1, 3x3 s2 p1
    op1, FCN's k16 s8 and k64 s32 and stride 1; U-Net's 2x2 s2 forward alone is 4% slower,
    its forward + backward on par. With a 4x4 s2 kernel on x narrower than ``min_width``
    chunked is taken: its backward was 11-29% faster there (512->256 4x4 s2 p1 on 4x4 N64,
    256->256 on 2x2 N8), on par at 8x8 (benchmarks/bench_conv_transpose.py)."""

    name = "subpixel"
    chunk_bytes = 3 << 20          # columns per chunk: fewer chunks cost less Python, larger ones miss the cache
    max_pad_share = 1 / 16
    min_width = 8

    @staticmethod
    def applies(x, weight_shape, geometry, needs):
        return get_array_module(x) is np and use_numba(x.dtype) and geometry[3] == (1, 1)

    @classmethod
    def wins(cls, x, weight_shape, geometry, needs):
        kernel, stride = geometry[:2]
        return x.shape[3] >= cls.min_width or (kernel[1], stride[1]) != (4, 2)

    @classmethod
    def forward(cls, x, weight, bias, geometry, y_shape):
        kernel, stride, padding, _, groups = geometry
        n, c_in, h, w = x.shape
        pitch = wide_pitch(kernel[1], stride[1], padding[2], w, y_shape[3])
        if pitch - w > cls.max_pad_share * w:
            return ChunkedTranspose.forward(x, weight, bias, geometry, y_shape)
        w3 = weight.reshape(groups, c_in // groups, -1)                    # (G, C_in/G, K/G)
        k = w3.shape[0] * w3.shape[2]
        y = np.empty(y_shape, dtype=x.dtype)

        def forward_chunk(s, worker):
            x2 = grouped(wide_rows(x[s], _scratch(np, (c_in, s.stop - s.start, h, pitch), x.dtype,
                                                  worker_key("conv_transpose2d.x", worker))), groups)
            size = k * x2.shape[2]
            cols = _scratch(np, (size + 2 * pitch,), x.dtype, worker_key("conv_transpose2d.cols", worker))
            cols[:pitch] = cols[-pitch:] = 0                    # what a shifted read off the first and last row finds
            gemm(w3.swapaxes(1, 2), x2, out=cols[pitch:-pitch].reshape(groups, k // groups, -1))
            fold_phases(cols, (h, w), kernel, stride, padding[::2], y[s], bias)

        run_chunks(forward_chunk, _batch_chunks(np, n, k * h * pitch * x.itemsize, cls.chunk_bytes))
        return y

    @classmethod
    def backward(cls, x, weight, gy, geometry, needs):
        kernel, stride, padding, _, groups = geometry
        n, c_in, h, w = x.shape
        k = gy.shape[1] * kernel[0] * kernel[1]
        w3 = weight.reshape(groups, c_in // groups, -1)
        gx = np.empty(x.shape, dtype=gy.dtype) if needs[0] else None
        gw_parts = {}                                                      # worker -> its share of (dL/dW)^T

        def backward_chunk(s, worker):
            m = s.stop - s.start
            gcols = grouped(unfold_phases(gy[s], (h, w), kernel, stride, padding[::2], out=_scratch(
                np, (k, m * h * w), gy.dtype, worker_key("conv_transpose2d.gcols", worker))), groups)
            if needs[1]:
                x2 = grouped(_channels_first(x[s], worker_key("conv_transpose2d.x", worker)), groups)
                accumulate(gw_parts, worker, gemm(gcols, x2.swapaxes(1, 2)))
            if needs[0]:
                gx2 = gemm(w3, gcols, out=_scratch(np, (groups, c_in // groups, m * h * w), gy.dtype,
                                                   worker_key("conv_transpose2d.gx", worker)))
                _batch_first(gx2.reshape(c_in, -1), gx[s])

        run_chunks(backward_chunk, _batch_chunks(np, n, k * h * w * gy.itemsize, cls.chunk_bytes))
        gw = None
        if needs[1]:
            gw_t = add_up(gw_parts, np, (groups, k // groups, c_in // groups), gy.dtype)
            gw = np.ascontiguousarray(gw_t.swapaxes(1, 2)).reshape(weight.shape)
        return gx, gw


# ---------------------------------------------------------------- the dispatcher
CONV2D_ROUTES = (Pointwise, WinogradF4, Winograd, Direct, GyColumns, Chunked)        # in order of preference
CONV_TRANSPOSE2D_ROUTES = (WinogradTranspose, ConvolutionTranspose, SubpixelTranspose, ChunkedTranspose)


#: Up to this many elements of columns (the whole batch's), a CPU Conv2d runs its textbook
#: op, one im2col and one product: there a route's chunks, buffers and workers cost more
#: than they save (batch 1 on 2x2 to 8x8 planes: 1.1-2.4x faster; benchmarks/bench_alone.py's
#: ResNet-20 batch 1 row).
TEXTBOOK_MAX_COLUMNS = 1 << 14


def _choose(op, routes, x, *args, textbook_wins=False):
    """The first route that applies and wins (or the forced one, where it applies);
    None for the op's own textbook code. Tells ``td.backends.record_routes``."""
    forced = backends.forced_route(op)
    chosen = None
    if not backends.is_reference() and forced != "im2col":
        if forced:
            chosen = next((r for r in routes if r.name == forced and r.applies(x, *args)), None)
        if chosen is None and not textbook_wins:
            chosen = next((r for r in routes if r.applies(x, *args) and r.wins(x, *args)), None)
    name = chosen.name if chosen else ("im2col" if use_numba(x.dtype) or get_array_module(x) is not np
                                       else "reference")
    backends.note_route(op, name)
    return chosen


def conv2d_route(x, weight_shape, geometry, needs):
    """The route for this Conv2d call (see the module docstring), or None for the textbook op.
    On the GPU, cuDNN first where it is enabled or forced (kernels/cudnn.py)."""
    if type(x) is not np.ndarray and CudnnConv.applies(x, weight_shape, geometry, needs):
        backends.note_route("conv2d", "cudnn")
        return CudnnConv
    kernel, stride, padding, dilation, _ = geometry
    columns = x.shape[1] * math.prod(kernel) * x.shape[0] * math.prod(
        conv_output_size(x.shape[2:], kernel, stride, padding, dilation))
    small = get_array_module(x) is np and columns <= TEXTBOOK_MAX_COLUMNS
    return _choose("conv2d", CONV2D_ROUTES, x, weight_shape, geometry, needs, textbook_wins=small)


def conv_transpose2d_route(x, weight_shape, geometry, needs):
    """The route for this ConvTranspose2d call, or None for the textbook op."""
    return _choose("conv_transpose2d", CONV_TRANSPOSE2D_ROUTES, x, weight_shape, geometry, needs)
