"""tinydl and PyTorch (CPU), each timed alone in its own process: the fair comparison.

    python benchmarks/bench_alone.py [--rounds 3] [--repeat 5] [--against OTHER_CHECKOUT]

In one process the two libraries share one OpenMP runtime, and tinydl's tuning (see
_timing.py) would change how PyTorch's idle threads wait, or put tinydl on Numba's slower
workqueue pool. Here every child process imports one library only: PyTorch keeps its
defaults, tinydl calls td.backends.cpu.tune() as its CLI does. It times the rows of
bench_conv.py (the same shapes and the same random data, from the same seed),
plus a transposed convolution, and prints them as JSON. The parent alternates a
tinydl child and a PyTorch child ``--rounds`` times, so both see the same machine
load (each child first in turn). It keeps each row's best time and prints the ratio
tinydl / PyTorch. With ``--against DIR`` a child of another checkout joins every round:
before/after a change.
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from _nets import CONV_SHAPES, lenet5, resnet20, resnet50, tiny_ops    # noqa: E402
from _timing import best_time, print_table          # noqa: E402

LIBRARIES = ("tinydl", "torch")


def library(name):
    """(tensor, nn, functional, optim) of one library; the other is never imported."""
    if name == "tinydl":
        import tinydl
        import tinydl.nn.functional
        tinydl.backends.cpu.tune()
        return tinydl.tensor, tinydl.nn, tinydl.nn.functional, tinydl.optim
    import torch
    import torch.nn.functional
    return torch.tensor, torch.nn, torch.nn.functional, torch.optim


def cases(name):
    """{row name: (callable, repeat)}, built the same way for either library."""
    tensor, nn, F, optim = library(name)
    rng = np.random.default_rng(0)

    def rand(*shape):
        return rng.standard_normal(shape, dtype=np.float32)

    rows = {}

    def forward_and_backward(label, op, inputs, grad, repeat=5):
        def fwd():
            op(*inputs)

        def fwd_bwd():
            for t in inputs:
                t.grad = None
            op(*inputs).backward(grad)
        rows[label + " fwd"] = (fwd, repeat)
        rows[label + " fwd+bwd"] = (fwd_bwd, repeat)

    for ci, co, k, p, hw, n in CONV_SHAPES:
        x, w, b = rand(n, ci, hw, hw), rand(co, ci, k, k) * 0.1, rand(co)
        g = rand(n, co, hw + 2 * p - k + 1, hw + 2 * p - k + 1)
        forward_and_backward(f"conv {ci}->{co} {k}x{k}" + (f" p{p}" if p else "") + f" {hw}x{hw} N{n}",
                             lambda x, w, b, p=p: F.conv2d(x, w, b, padding=p),
                             [tensor(a, requires_grad=True) for a in (x, w, b)], tensor(g))
    # FCN's and SuperPoint-style decoders' 2x upsampling (not one of issue #3's rows)
    x, w, b = rand(32, 64, 16, 16), rand(64, 32, 4, 4) * 0.1, rand(32)
    forward_and_backward("conv_transpose 64->32 4x4 s2 p1 16x16 N32",
                         lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2, padding=1),
                         [tensor(a, requires_grad=True) for a in (x, w, b)], tensor(rand(32, 32, 32, 32)))
    # MobileNet's depthwise 3x3 (not one of issue #3's rows)
    x, w = rand(16, 128, 56, 56), rand(128, 1, 3, 3)
    forward_and_backward("depthwise 3x3 p1 128x56x56 N16",
                         lambda x, w: F.conv2d(x, w, padding=1, groups=128),
                         [tensor(a, requires_grad=True) for a in (x, w)], tensor(rand(16, 128, 56, 56)))
    x = rng.permutation(64 * 64 * 32 * 32).reshape(64, 64, 32, 32).astype(np.float32)
    forward_and_backward("max_pool2d 2x2 64x64x32x32", lambda x: F.max_pool2d(x, 2),
                         [tensor(x, requires_grad=True)], tensor(rand(64, 64, 16, 16)))

    for label, make, shape, batch, repeat in (
            ("LeNet-5 train step batch 64", lambda lib, functional: lenet5(lib), (1, 32, 32), 64, 5),
            ("ResNet-20 train step batch 128", resnet20, (3, 32, 32), 128, 3),
            ("ResNet-50 train step batch 8 224x224", resnet50, (3, 224, 224), 8, 1),
            ("overhead: ResNet-20 train step batch 1 8x8", resnet20, (3, 8, 8), 1, 20)):
        model = make(nn, F)
        opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        xb, yb = tensor(rand(batch, *shape)), tensor(rng.integers(0, 10, batch))

        def step(model=model, opt=opt, xb=xb, yb=yb):
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
        rows[label] = (step, repeat)
    x, g = tensor(rand(4), requires_grad=True), tensor(rand(4))

    def tiny():
        x.grad = None
        tiny_ops(x).backward(g)
    rows["overhead: 400 tiny elementwise ops fwd+bwd"] = (tiny, 20)
    return rows


def child(name, repeat_scale, only=None):
    """Time every row (containing ``only``) once, best of its repeats; print the seconds as JSON."""
    # At least a quarter second per row: a 1 ms row then gets ~200 runs instead of 5, and
    # its best time no longer depends on whether one of five runs hit a quiet moment.
    times = {label: best_time(fn, repeat=max(1, round(repeat * repeat_scale)), warmup=2, min_seconds=0.25)
             for label, (fn, repeat) in cases(name).items() if only is None or only in label}
    print(json.dumps(times))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="tinydl/PyTorch child pairs (best kept)")
    parser.add_argument("--repeat", type=float, default=1.0, help="scale every row's runs per child")
    parser.add_argument("--against", metavar="DIR",
                        help="another tinydl checkout (say, a worktree of the commit before a change), "
                             "timed in the same rounds: its times and the ratio this / that")
    parser.add_argument("--only", metavar="TEXT", help="only the rows whose name contains TEXT")
    parser.add_argument("--wide-vectors", choices=("auto", "on", "off"), default="auto",
                        help="NUMBA_CPU_FEATURES=td.backends.cpu.wide_vector_features() for tinydl's child: "
                             "'auto' where the tinydl command sets it (Intel's AVX-512 cores; see "
                             "tinydl/backends/cpu.py), 'on' wherever there is AVX-512, 'off' never. "
                             "An --against child runs as the tinydl command does")
    parser.add_argument("--child", choices=LIBRARIES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child, args.repeat, args.only)

    script = os.path.abspath(__file__)
    only = ["--only", args.only] if args.only else []
    children = {lib: [sys.executable, script, "--child", lib] + only for lib in LIBRARIES}
    if args.against:
        children["against"] = [sys.executable, os.path.join(args.against, "benchmarks", "bench_alone.py"),
                               "--child", "tinydl"] + only
    from tinydl.backends.cpu import wide_vector_environment, wide_vector_features
    as_the_command = wide_vector_environment()                # None: this process's environment
    envs = {lib: as_the_command for lib in children}
    envs["torch"] = None
    if args.wide_vectors != "auto":                           # `--wide-vectors off --against .`: without / with
        features = wide_vector_features() if args.wide_vectors == "on" else None
        envs["tinydl"] = {k: v for k, v in os.environ.items() if k != "NUMBA_CPU_FEATURES"}
        if features is not None:
            envs["tinydl"]["NUMBA_CPU_FEATURES"] = features
    for lib in children:
        if lib != "torch":
            wide = (envs[lib] or os.environ).get("NUMBA_CPU_FEATURES")
            print(f"NUMBA_CPU_FEATURES for the {lib} child:", "unset (Numba's own for this CPU)" if wide is None
                  else "the host's, -prefer-256-bit" if wide == wide_vector_features() else wide)
    best = {lib: {} for lib in children}
    order = list(children.items())
    for r in range(args.rounds):
        # each child first in turn: none always runs right after the same other one
        for lib, command in order[r % len(order):] + order[:r % len(order)]:
            done = subprocess.run(command + ["--repeat", str(args.repeat)], capture_output=True, text=True,
                                  check=True, env=envs[lib])
            for label, t in json.loads(done.stdout.strip().splitlines()[-1]).items():
                best[lib][label] = min(t, best[lib].get(label, float("inf")))
        # after every round: a run stopped by a time limit (run_cpu_checks.sh's budget) still tells
        print_best(best, r + 1, args.against)


def print_best(best, rounds, against):
    """The table of the best times so far, over ``rounds`` children of each library."""
    header = ("case", "tinydl ms", "torch ms", "ratio")
    rows = [(label, f"{1e3 * t:.2f}", f"{1e3 * best['torch'][label]:.2f}", f"{t / best['torch'][label]:.2f}x")
            for label, t in best["tinydl"].items()]
    if against:
        header += ("against ms", "this / against")
        rows = [row + ((f"{1e3 * best['against'][row[0]]:.2f}", f"{best['tinydl'][row[0]] / best['against'][row[0]]:.3f}")
                       if row[0] in best["against"] else ("-", "-")) for row in rows]
    print(f"each library alone in its own process, default threads; best of {rounds} children")
    print_table(rows, header)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
