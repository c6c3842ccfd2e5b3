"""im2col / col2im speed: NumPy reference vs Numba vs PyTorch's unfold / fold (CPU).

    python benchmarks/bench_im2col.py [--dtype float32|float64] [--repeat 10]

For each convolution shape it builds the column matrix of the input with
  * im2col_reference  (NumPy, kh*kw strided slice copies; the readable version)
  * im2col_numba      into a reused workspace buffer (what conv2d does)
  * im2col_numba      into a fresh np.empty each call (shows the page-fault cost)
  * the row layout (N*Ho*Wo, C*kh*kw) that DeZero/Chainer build, in NumPy,
    for comparison with our (C*kh*kw, N*Ho*Wo) layout
  * torch.nn.functional.unfold (allocates its result every call)
and folds a column matrix back with col2im_reference / col2im_numba / torch fold.
Times are the best of --repeat runs in milliseconds; ratios > 1 mean Numba wins.
The machine is shared and noisy: the load average is printed with the table.
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import tinydl as td  # noqa: E402
import tinydl.kernels as K  # noqa: E402

td.backends.cpu.tune()  # before torch's import: OMP_WAIT_POLICY reaches the one OpenMP runtime
from _timing import best_time, print_table  # noqa: E402

import numba  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as TF  # noqa: E402

# (name, N, C_in, C_out, k, padding, H)
SHAPES = [
    ("1->6 5x5 32x32 N64", 64, 1, 6, 5, 0, 32),
    ("16->16 3x3 p1 32x32 N64", 64, 16, 16, 3, 1, 32),
    ("64->64 3x3 p1 56x56 N16", 16, 64, 64, 3, 1, 56),
    ("256->256 3x3 p1 14x14 N16", 16, 256, 256, 3, 1, 14),
]


def row_layout_numpy(x, k, p):
    """DeZero/Chainer-style im2col: (N, C, kh, kw, Ho, Wo) then transposed to rows (N*Ho*Wo, C*kh*kw)."""
    N, C, H, W = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    Ho, Wo = H + 2 * p - k + 1, W + 2 * p - k + 1
    col = np.empty((N, C, k, k, Ho, Wo), x.dtype)
    for i in range(k):
        for j in range(k):
            col[:, :, i, j] = xp[:, :, i : i + Ho, j : j + Wo]
    return col.transpose(0, 4, 5, 1, 2, 3).reshape(N * Ho * Wo, -1)


def ms(fn, repeat):
    return best_time(fn, repeat=repeat, warmup=2) * 1e3


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--repeat", type=int, default=10)
    args = ap.parse_args()
    dtype = np.dtype(args.dtype)
    rng = np.random.default_rng(0)

    print(f"dtype {dtype}, numba threads {numba.get_num_threads()}, torch threads {torch.get_num_threads()}, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, load average {os.getloadavg()[0]:.2f}")
    im_rows, col_rows = [], []
    for name, N, C, _, k, p, H in SHAPES:
        x = rng.standard_normal((N, C, H, H)).astype(dtype)
        xt = torch.from_numpy(x)
        Ho, Wo = K.conv_output_size((H, H), k, 1, p)
        cols_shape = (C * k * k, N * Ho * Wo)
        ws = lambda: K.workspace(cols_shape, dtype, "bench.cols")  # noqa: E731
        np.testing.assert_array_equal(K.im2col_numba(x, k, 1, p, out=ws()), K.im2col_reference(x, k, 1, p))

        t_ref = ms(lambda: K.im2col_reference(x, k, 1, p), args.repeat)
        t_nb = ms(lambda: K.im2col_numba(x, k, 1, p, out=ws()), args.repeat)
        t_fresh = ms(lambda: K.im2col_numba(x, k, 1, p), args.repeat)
        t_row = ms(lambda: row_layout_numpy(x, k, p), args.repeat)
        t_torch = ms(lambda: TF.unfold(xt, k, padding=p), args.repeat)
        im_rows.append((name, f"{cols_shape[0] * cols_shape[1] * dtype.itemsize / 2**20:.0f}",
                        f"{t_ref:.2f}", f"{t_nb:.2f}", f"{t_fresh:.2f}", f"{t_row:.2f}", f"{t_torch:.2f}",
                        f"{t_ref / t_nb:.1f}x", f"{t_row / t_nb:.1f}x", f"{t_torch / t_nb:.2f}x"))

        cols = rng.standard_normal(cols_shape).astype(dtype)
        # torch.fold wants (N, C*k*k, Ho*Wo): rearrange once, outside the timing.
        cols_t = torch.from_numpy(np.ascontiguousarray(cols.reshape(C * k * k, N, Ho * Wo).transpose(1, 0, 2)))
        img = np.empty(x.shape, dtype)
        np.testing.assert_array_equal(K.col2im_numba(cols, x.shape, k, 1, p),
                                      K.col2im_reference(cols, x.shape, k, 1, p))
        c_ref = ms(lambda: K.col2im_reference(cols, x.shape, k, 1, p), args.repeat)
        c_nb = ms(lambda: K.col2im_numba(cols, x.shape, k, 1, p, out=img), args.repeat)
        c_torch = ms(lambda: TF.fold(cols_t, (H, H), k, padding=p), args.repeat)
        col_rows.append((name, f"{c_ref:.2f}", f"{c_nb:.2f}", f"{c_torch:.2f}",
                         f"{c_ref / c_nb:.1f}x", f"{c_torch / c_nb:.2f}x"))

    print("\nim2col (ms, best of %d)" % args.repeat)
    print_table(im_rows, header=("shape", "cols MB", "reference", "numba ws", "numba fresh", "row layout",
                                 "torch unfold", "ref/numba", "row/numba", "torch/numba"))
    print("\ncol2im (ms, best of %d)" % args.repeat)
    print_table(col_rows, header=("shape", "reference", "numba", "torch fold", "ref/numba", "torch/numba"))
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
