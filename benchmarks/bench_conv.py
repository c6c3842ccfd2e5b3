"""Convolution, pooling and CNN training steps: tinydl vs PyTorch, same run, same device.

    python benchmarks/bench_conv.py [--repeat 5] [--rounds 4]
    python benchmarks/bench_conv.py --device cuda [--tf32] [--resnet50] [--cuda-graph] [--cudnn]

Rows (float32, NCHW), in the order they run:
  one training step (forward, cross-entropy, backward, SGD momentum) of
      LeNet-5 at batch 64 and CIFAR ResNet-20 (option-A shortcuts) at batch 128;
  conv2d forward, and forward + backward (dL/dx, dL/dW, dL/db), on
      1->6 5x5 32x32 batch 64 (LeNet-5's C1), 16->16 3x3 p1 32x32 batch 64,
      64->64 3x3 p1 56x56 batch 16, 256->256 3x3 p1 14x14 batch 16;
  max_pool2d 2x2 on 64x64x32x32, forward and forward + backward.
Each row prints milliseconds (best of all runs) and the ratio tinydl / PyTorch, as it
is measured and again in the table at the end.
tinydl and PyTorch alternate in rounds, so on a busy machine both see the same
load. The target: every conv row and both training steps <= 1.5x PyTorch.

On 'cuda' tinydl runs on CuPy (im2col kernels + cuBLAS) and PyTorch on cuDNN;
every timed call ends with a device synchronise, so the times are wall times of
finished work. Like with like: TF32 is off on both sides (PyTorch's cuDNN and matmul
flags off; CuPy's CUPY_TF32 unset), or with ``--tf32`` on for both (those flags on, and
CUPY_TF32=1 for CuPy's products and tinydl's own cuBLAS handle, set before CuPy loads). ``--resnet50`` adds a ResNet-50 training step at
batch 64 on 224x224 images (the tinydl model zoo's against torchvision's).
``--cuda-graph`` adds the training steps again with tinydl's whole step captured as a
CUDA graph and replayed (``td.cuda.GraphedStep``), against PyTorch's eager step; ``--cudnn``
runs tinydl's convolutions on cuDNN (kernels/cudnn.py), as PyTorch's run.
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
# torch before tinydl: each library in its own default thread settings (see _timing.py)
import torch                             # noqa: E402
import torch.nn.functional as TF         # noqa: E402
import tinydl as td                      # noqa: E402

td.backends.cpu.tune()
import tinydl.nn as nn                   # noqa: E402
import tinydl.nn.functional as F         # noqa: E402
from _nets import CONV_SHAPES, lenet5, resnet20  # noqa: E402
from _timing import best_time, print_table  # noqa: E402

RNG = np.random.default_rng(0)


def rand(*shape):
    return RNG.standard_normal(shape, dtype=np.float32)


DEVICE = "cpu"


def on_device(lib_tensor, array, requires_grad=False):
    """``array`` as a tinydl or torch tensor on the benchmark's device."""
    return lib_tensor(array, device=DEVICE, requires_grad=requires_grad)


def synchronize():
    """Wait for both libraries' queued GPU work (no-op on the CPU)."""
    if DEVICE == "cuda":
        td.cuda.synchronize()
        torch.cuda.synchronize()


def finished(fn):
    """``fn`` followed by a device synchronise, so timings count finished work."""
    def run():
        fn()
        synchronize()
    return run


# ---------------------------------------------------------------- single ops
def conv_cases(ci, co, k, p, hw, n):
    """(tinydl fwd, torch fwd, tinydl fwd+bwd, torch fwd+bwd) closures for one conv shape."""
    x, w, b = rand(n, ci, hw, hw), rand(co, ci, k, k) * 0.1, rand(co)
    tx, tw, tb = (on_device(td.tensor, a, True) for a in (x, w, b))
    px, pw, pb = (on_device(torch.tensor, a, True) for a in (x, w, b))
    ho = hw + 2 * p - k + 1
    g = rand(n, co, ho, ho)
    tg, pg = on_device(td.tensor, g), on_device(torch.tensor, g)

    def td_fwd():
        F.conv2d(tx, tw, tb, padding=p)

    def pt_fwd():
        TF.conv2d(px, pw, pb, padding=p)

    def td_fb():
        tx.grad = tw.grad = tb.grad = None
        F.conv2d(tx, tw, tb, padding=p).backward(tg)

    def pt_fb():
        px.grad = pw.grad = pb.grad = None
        TF.conv2d(px, pw, pb, padding=p).backward(pg)
    return td_fwd, pt_fwd, td_fb, pt_fb


def pool_cases(n, c, hw):
    x = RNG.permutation(n * c * hw * hw).reshape(n, c, hw, hw).astype(np.float32)
    tx, px = on_device(td.tensor, x, True), on_device(torch.tensor, x, True)
    g = rand(n, c, hw // 2, hw // 2)
    tg, pg = on_device(td.tensor, g), on_device(torch.tensor, g)

    def td_fb():
        tx.grad = None
        F.max_pool2d(tx, 2).backward(tg)

    def pt_fb():
        px.grad = None
        TF.max_pool2d(px, 2).backward(pg)
    return (lambda: F.max_pool2d(tx, 2)), (lambda: TF.max_pool2d(px, 2)), td_fb, pt_fb


# ---------------------------------------------------------------- networks, built twice
def resnet50(lib, functional):
    """ResNet-50 (bottleneck blocks, projection shortcuts): the model zoo's for tinydl,
    torchvision's for PyTorch; both have 25,557,032 parameters."""
    if lib is nn:
        import models
        return models.create("resnet50")
    import torchvision
    return torchvision.models.resnet50()


def train_steps(make, shape, batch, classes=10, graphed=False):
    """(tinydl step, torch step) for the network ``make(lib, functional)`` on random data;
    ``graphed``: tinydl's step captured as a CUDA graph and replayed (td.cuda.GraphedStep),
    PyTorch's eager, as a user runs it."""
    x, y = rand(batch, *shape), RNG.integers(0, classes, batch)
    steps = []
    for lib, functional, tensor, optim, loss_fn in (
            (nn, F, td.tensor, td.optim, F.cross_entropy),
            (torch.nn, TF, torch.tensor, torch.optim, TF.cross_entropy)):
        model = make(lib, functional).to(DEVICE)
        opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        xb, yb = on_device(tensor, x), on_device(tensor, y)

        def step(model=model, opt=opt, xb=xb, yb=yb, loss_fn=loss_fn):
            loss = loss_fn(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            return loss
        if graphed and lib is nn:
            graph = td.cuda.GraphedStep(lambda x, y, step=step: step(xb=td.Tensor(x), yb=td.Tensor(y)))
            steps.append(lambda graph=graph, xb=xb, yb=yb: graph(xb.array, yb.array))
        else:
            steps.append(step)
    n_params = sum(p.numel() for p in make(nn, F).parameters())
    return [finished(s) for s in steps], n_params


# ---------------------------------------------------------------- timing
def race(td_fn, pt_fn, repeat, rounds):
    """Best time of each, alternating ``rounds`` times (both see the same machine load)."""
    t_td = t_pt = float("inf")
    for r in range(rounds):
        warm = 2 if r == 0 else 0
        t_td = min(t_td, best_time(finished(td_fn), repeat=repeat, warmup=warm))
        t_pt = min(t_pt, best_time(finished(pt_fn), repeat=repeat, warmup=warm))
    return t_td, t_pt


def row(name, t_td, t_pt):
    """One row of the table, also printed as soon as it is measured (a run stopped by a
    time limit, as run_gpu_checks.sh's budget, still tells)."""
    cells = (name, f"{1e3 * t_td:.2f}", f"{1e3 * t_pt:.2f}", f"{t_td / t_pt:.2f}x")
    print("  ".join(cells), flush=True)
    return cells


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per round (best kept)")
    parser.add_argument("--rounds", type=int, default=4, help="alternating tinydl/torch rounds")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--tf32", action="store_true",
                        help="TF32 tensor cores on for both libraries (PyTorch's flags, CUPY_TF32=1); off by default")
    parser.add_argument("--resnet50", action="store_true", help="add a ResNet-50 step, batch 64, 224x224")
    parser.add_argument("--cudnn", action="store_true",
                        help="on cuda, tinydl's convolutions on cuDNN (td.backends.cudnn.enabled)")
    parser.add_argument("--cuda-graph", action="store_true",
                        help="on cuda, add the training steps with tinydl's step replayed as a CUDA graph")
    args = parser.parse_args(argv)
    global DEVICE
    DEVICE = args.device
    if DEVICE == "cuda":
        if "cupy" in sys.modules and args.tf32 != (os.environ.get("CUPY_TF32", "0") != "0"):
            raise SystemExit("bench_conv.py: CuPy was loaded before --tf32 could set CUPY_TF32")
        os.environ["CUPY_TF32"] = "1" if args.tf32 else "0"     # read when CuPy loads, just below
        td.cuda.synchronize()          # a clear error here when CuPy or the GPU is missing
        if args.cudnn:
            if not td.backends.cudnn.is_available():
                raise SystemExit("bench_conv.py --cudnn: cuDNN cannot run here (pip install 'tinydl[gpu-cudnn]')")
            td.backends.cudnn.enabled = True
        torch.backends.cudnn.benchmark = True
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = args.tf32
    td.manual_seed(0)
    torch.manual_seed(0)

    rows = []                   # the training steps first: the rows a time limit must not cut
    (td_step, pt_step), n_lenet = train_steps(lambda lib, f: lenet5(lib), (1, 32, 32), 64)
    rows.append(row(f"LeNet-5 train step batch 64 ({n_lenet:,} params)",
                    *race(td_step, pt_step, args.repeat, args.rounds)))
    (td_step, pt_step), n_resnet = train_steps(resnet20, (3, 32, 32), 128)
    rows.append(row(f"ResNet-20 train step batch 128 ({n_resnet:,} params)",
                    *race(td_step, pt_step, max(1, args.repeat // 2), args.rounds)))
    if args.resnet50:
        (td_step, pt_step), n_r50 = train_steps(resnet50, (3, 224, 224), 64, classes=1000)
        rows.append(row(f"ResNet-50 train step batch 64 ({n_r50:,} params)",
                        *race(td_step, pt_step, max(1, args.repeat // 2), args.rounds)))
    if DEVICE == "cuda" and args.cuda_graph:     # tinydl's step as one CUDA graph, PyTorch's eager
        for name, make, shape, batch, classes in (("LeNet-5", lambda lib, f: lenet5(lib), (1, 32, 32), 64, 10),
                                                  ("ResNet-20", resnet20, (3, 32, 32), 128, 10)) + (
                (("ResNet-50", resnet50, (3, 224, 224), 64, 1000),) if args.resnet50 else ()):
            try:
                (td_step, pt_step), _ = train_steps(make, shape, batch, classes, graphed=True)
                rows.append(row(f"{name} train step batch {batch}, tinydl CUDA graph",
                                *race(td_step, pt_step, args.repeat, args.rounds)))
            except Exception as exc:        # the eager rows above still stand
                print(f"{name} CUDA graph: {type(exc).__name__}: {exc}", flush=True)
    for ci, co, k, p, hw, n in CONV_SHAPES:
        td_fwd, pt_fwd, td_fb, pt_fb = conv_cases(ci, co, k, p, hw, n)
        name = f"conv {ci}->{co} {k}x{k}" + (f" p{p}" if p else "") + f" {hw}x{hw} N{n}"
        rows.append(row(name + " fwd", *race(td_fwd, pt_fwd, args.repeat, args.rounds)))
        rows.append(row(name + " fwd+bwd", *race(td_fb, pt_fb, args.repeat, args.rounds)))
    td_fwd, pt_fwd, td_fb, pt_fb = pool_cases(64, 64, 32)
    rows.append(row("max_pool2d 2x2 64x64x32x32 fwd", *race(td_fwd, pt_fwd, args.repeat, args.rounds)))
    rows.append(row("max_pool2d 2x2 64x64x32x32 fwd+bwd", *race(td_fb, pt_fb, args.repeat, args.rounds)))

    if DEVICE == "cuda":
        import cupy
        print(f"float32, NCHW on {torch.cuda.get_device_name()}: CuPy {cupy.__version__}"
              f"{f', tinydl on cuDNN {td.backends.cudnn.version()}' if args.cudnn else ''}, torch "
              f"{torch.__version__} (cuDNN {torch.backends.cudnn.version()}, TF32 "
              f"{'on' if args.tf32 else 'off'} for both); best of {args.rounds} x {args.repeat} runs")
        print_table(rows)
        return
    import numba
    from threadpoolctl import threadpool_info
    blas = [f"{i['internal_api']} {i['num_threads']}" for i in threadpool_info() if i["user_api"] == "blas"]
    print(f"float32, NCHW; threads: torch {torch.get_num_threads()}, numba {numba.get_num_threads()}, "
          f"numpy BLAS {', '.join(blas) or '?'}; best of {args.rounds} x {args.repeat} runs")
    print_table(rows)


if __name__ == "__main__":
    main()
