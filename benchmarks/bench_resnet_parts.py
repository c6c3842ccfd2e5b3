"""ResNet-20's parts, tinydl vs PyTorch (CPU), interleaved in one process: medians.

    python benchmarks/bench_resnet_parts.py [--rounds 15] [--threads 1] [--only bn,conv,step]

Rows (float32, batch 128, CIFAR-sized):
  batch norm (training mode, affine, running stats) forward + backward on the
      three stage shapes (128,16,32,32), (128,32,16,16), (128,64,8,8);
  every distinct 3x3 convolution of ResNet-20 (no bias), forward + backward:
      3->16 and 16->16 at 32x32, 16->32 stride 2, 32->32 at 16x16,
      32->64 stride 2, 64->64 at 8x8;
  one training step of ResNet-20 (the network of bench_conv.py).
Each round runs every candidate once, in turn, so on a busy machine all of
them see the same load; the table shows the median over the rounds and the
ratio tinydl / PyTorch. Thread counts are pinned (``--threads``, default 1) for
OpenBLAS, Numba and torch alike, so the ratio compares one core with one core.

The clock is the process's CPU time by default (``--clock cpu``): on a shared
machine a millisecond-long call either gets a core or waits several
milliseconds for one, and wall-clock medians jumped 5x between runs; CPU time
counts only the work done (every thread of the process, so with more than one
thread it is the total over the cores, not the elapsed time). ``--clock wall``
gives elapsed time, the right measure on an idle machine.
"""
import argparse
import os
import statistics
import sys
import time

_THREADS = "1"
if "--threads" in sys.argv:         # must be set before numpy / numba / torch load their pools
    _THREADS = sys.argv[sys.argv.index("--threads") + 1]
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = _THREADS

import numpy as np                   # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
# torch before tinydl: each library in its own default thread settings (see _timing.py)
import torch                         # noqa: E402
import torch.nn.functional as TF     # noqa: E402
import tinydl as td                  # noqa: E402

td.backends.cpu.tune()
import tinydl.nn.functional as F     # noqa: E402
from _timing import print_table      # noqa: E402
from _nets import resnet20            # noqa: E402
from bench_conv import train_steps    # noqa: E402

RNG = np.random.default_rng(0)


def rand(*shape):
    return RNG.standard_normal(shape, dtype=np.float32)


def interleaved_medians(fns, rounds, clock=time.process_time, warmup=2):
    """Median seconds of each callable, running them in turn ``rounds`` times."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    times = [[] for _ in fns]
    for _ in range(rounds):
        for fn, ts in zip(fns, times):
            t0 = clock()
            fn()
            ts.append(clock() - t0)
    return [statistics.median(ts) for ts in times]


def bn_pair(shape):
    """(tinydl, torch) batch norm forward + backward closures, training mode."""
    c = shape[1]
    x, g = rand(*shape) * 2 + 0.5, rand(*shape)
    w, b = RNG.uniform(0.5, 1.5, c).astype(np.float32), rand(c)
    pairs = []
    for lib, fn, tensor in ((td, F.batch_norm, td.tensor), (torch, TF.batch_norm, torch.tensor)):
        tx, tw, tb, tg = tensor(x, requires_grad=True), tensor(w, requires_grad=True), \
            tensor(b, requires_grad=True), tensor(g)
        rm, rv = tensor(np.zeros(c, np.float32)), tensor(np.ones(c, np.float32))

        def step(tx=tx, tw=tw, tb=tb, tg=tg, rm=rm, rv=rv, fn=fn):
            tx.grad = tw.grad = tb.grad = None
            fn(tx, rm, rv, tw, tb, True, 0.1, 1e-5).backward(tg)
        pairs.append(step)
    return pairs


def conv_pair(ci, co, hw, stride, n=128):
    """(tinydl, torch) 3x3 conv (padding 1, no bias) forward + backward closures."""
    ho = (hw - 1) // stride + 1
    x, w, g = rand(n, ci, hw, hw), rand(co, ci, 3, 3) * 0.1, rand(n, co, ho, ho)
    pairs = []
    for fn, tensor in ((F.conv2d, td.tensor), (TF.conv2d, torch.tensor)):
        tx, tw, tg = tensor(x, requires_grad=True), tensor(w, requires_grad=True), tensor(g)

        def step(tx=tx, tw=tw, tg=tg, fn=fn):
            tx.grad = tw.grad = None
            fn(tx, tw, None, stride, 1).backward(tg)
        pairs.append(step)
    return pairs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds (median kept)")
    parser.add_argument("--threads", type=int, default=1, help="threads for BLAS, Numba and torch")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                        help="process CPU time (robust under load) or wall-clock time")
    parser.add_argument("--only", default="bn,conv,step", help="comma-separated subset of bn,conv,step")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    td.manual_seed(0)
    torch.manual_seed(0)
    parts = set(args.only.split(","))

    cases = []
    if "bn" in parts:
        for shape in ((128, 16, 32, 32), (128, 32, 16, 16), (128, 64, 8, 8)):
            cases.append((f"batch_norm fwd+bwd {shape}", bn_pair(shape)))
    if "conv" in parts:
        for ci, co, hw, s in ((3, 16, 32, 1), (16, 16, 32, 1), (16, 32, 32, 2), (32, 32, 16, 1),
                              (32, 64, 16, 2), (64, 64, 8, 1)):
            cases.append((f"conv3x3 {ci}->{co} {hw}x{hw}" + (f" s{s}" if s > 1 else "") + " N128 fwd+bwd",
                          conv_pair(ci, co, hw, s)))
    if "step" in parts:
        (td_step, pt_step), _ = train_steps(resnet20, (3, 32, 32), 128)
        cases.append(("ResNet-20 train step batch 128", (td_step, pt_step)))

    rows = []
    for name, (td_fn, pt_fn) in cases:
        rounds = args.rounds if "step" not in name else max(3, args.rounds // 2)
        clock = time.process_time if args.clock == "cpu" else time.perf_counter
        t_td, t_pt = interleaved_medians([td_fn, pt_fn], rounds, clock)
        rows.append((name, f"{1e3 * t_td:.2f}", f"{1e3 * t_pt:.2f}", f"{t_td / t_pt:.2f}x"))
    print(f"float32; {args.threads} thread(s) each for OpenBLAS, Numba, torch; {args.clock} time, median of "
          f"{args.rounds} interleaved rounds ({max(3, args.rounds // 2)} for the step)")
    print_table(rows)


if __name__ == "__main__":
    main()
