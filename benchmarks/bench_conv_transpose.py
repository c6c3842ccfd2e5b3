"""ConvTranspose2d per layer and per route against PyTorch (CPU), each library alone in its process.

    python benchmarks/bench_conv_transpose.py [--rounds 3] [--only TEXT]

For the upsampling layers of the zoo's decoders (DCGAN-style 4x4 stride 2, FCN's 8x and
32x, U-Net's 2x2, the 3x3 stride 2 with output padding, stride 1) it times the forward and
the forward + backward (dL/dx, dL/dW, dL/db) in a tinydl child, once with the dispatcher's
choice ('auto') and once with each fast route (td.backends.ROUTES but the textbook
'reference' and 'im2col') forced where it applies, and in a PyTorch child. The parent alternates the two children ``--rounds`` times, keeps
each row's best time and prints tinydl / PyTorch. See bench_alone.py for why each
library runs alone.
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from _timing import best_time, print_table          # noqa: E402

# (label, N, C_in, C_out, H = W, kernel, stride, padding, output_padding)
LAYERS = [
    ("64->32 4x4 s2 p1 16x16 N32", 32, 64, 32, 16, 4, 2, 1, 0),       # bench_alone.py's row
    ("128->64 4x4 s2 p1 16x16 N16", 16, 128, 64, 16, 4, 2, 1, 0),
    ("256->128 4x4 s2 p1 8x8 N16", 16, 256, 128, 8, 4, 2, 1, 0),
    ("512->256 4x4 s2 p1 4x4 N64 (DCGAN's first)", 64, 512, 256, 4, 4, 2, 1, 0),
    ("64->32 4x4 s2 p1 32x32 N8", 8, 64, 32, 32, 4, 2, 1, 0),
    ("64->3 4x4 s2 p1 32x32 N16 (to RGB)", 16, 64, 3, 32, 4, 2, 1, 0),
    ("64->32 3x3 s2 p1 op1 16x16 N16", 16, 64, 32, 16, 3, 2, 1, 1),
    ("64->32 2x2 s2 16x16 N16 (U-Net's)", 16, 64, 32, 16, 2, 2, 0, 0),
    ("21->21 k16 s8 p4 16x16 N4 (FCN-8s' 8x)", 4, 21, 21, 16, 16, 8, 4, 0),
    ("21->21 k64 s32 p16 7x7 N1 (FCN-32s)", 1, 21, 21, 7, 64, 32, 16, 0),
    ("64->64 3x3 s1 p1 16x16 N16", 16, 64, 64, 16, 3, 1, 1, 0),
]


def cases(name, only):
    """{row name: callable} for one library; the other is never imported."""
    if name == "tinydl":
        import tinydl as lib
        lib.backends.cpu.tune()
        functional, routes = lib.nn.functional, ("auto",) + lib.backends.ROUTES["conv_transpose2d"][2:]
    else:
        import torch as lib
        functional, routes = lib.nn.functional, ("torch",)
        # As in a process that has run a while (bench_alone.py's child, by its earlier rows):
        # freeing a 16 MB block raises glibc's mmap threshold (its dynamic maximum is 32 MB),
        # after which this op's buffers are reused instead of mapped afresh (without it:
        # 2.3-2.7x PyTorch's forward time on the first layer).
        lib.ones(1 << 22).sum()
    rows = {}
    for label, n, c_in, c_out, hw, k, s, p, op in LAYERS:
        if only and only not in label:
            continue
        rng = np.random.default_rng(0)
        x, w, b = (lib.tensor(a, requires_grad=True) for a in (
            rng.standard_normal((n, c_in, hw, hw), dtype=np.float32),
            rng.standard_normal((c_in, c_out, k, k), dtype=np.float32) * 0.1,
            rng.standard_normal(c_out, dtype=np.float32)))
        size = (hw - 1) * s - 2 * p + k + op
        g = lib.tensor(rng.standard_normal((n, c_out, size, size), dtype=np.float32))

        def fwd(x=x, w=w, b=b, s=s, p=p, op=op):
            return functional.conv_transpose2d(x, w, b, stride=s, padding=p, output_padding=op)

        def fwd_bwd(fwd=fwd, g=g, inputs=(x, w, b)):
            for t in inputs:
                t.grad = None
            fwd().backward(g)
        for route in routes:
            if name == "tinydl" and route != "auto":
                with lib.backends.route(conv_transpose2d=route), lib.backends.record_routes() as taken:
                    fwd()
                if taken != [("conv_transpose2d", route)]:
                    continue                                      # it does not apply here
            rows[f"{label} | {route}"] = (route, fwd, fwd_bwd)
    return rows, (lib.backends.route if name == "tinydl" else None)


def child(name, only):
    rows, force = cases(name, only)
    times = {}
    for key, (route, fwd, fwd_bwd) in rows.items():
        for part, fn in (("fwd", fwd), ("fwd+bwd", fwd_bwd)):
            def run(fn=fn, route=route):
                if force and route != "auto":
                    with force(conv_transpose2d=route):
                        fn()
                else:
                    fn()
            times[f"{key} | {part}"] = best_time(run, repeat=3, warmup=1, min_seconds=0.25)
    print(json.dumps(times))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="tinydl/PyTorch child pairs (best kept)")
    parser.add_argument("--only", metavar="TEXT", help="only the layers whose label contains TEXT")
    parser.add_argument("--child", choices=("tinydl", "torch"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child, args.only)
    from tinydl.backends.cpu import wide_vector_environment
    envs = {"tinydl": wide_vector_environment(), "torch": None}      # tinydl's as the tinydl command runs
    best = {"tinydl": {}, "torch": {}}
    for r in range(args.rounds):
        for lib in (("tinydl", "torch") if r % 2 == 0 else ("torch", "tinydl")):     # each first in turn
            command = [sys.executable, os.path.abspath(__file__), "--child", lib]
            command += ["--only", args.only] if args.only else []
            done = subprocess.run(command, capture_output=True, text=True, check=True, env=envs[lib])
            for key, t in json.loads(done.stdout.strip().splitlines()[-1]).items():
                best[lib][key] = min(t, best[lib].get(key, float("inf")))
    rows = []
    for key, t in best["tinydl"].items():
        label, route, part = key.split(" | ")
        theirs = best["torch"][f"{label} | torch | {part}"]
        rows.append((label, route, part, f"{1e3 * t:.2f}", f"{1e3 * theirs:.2f}", f"{t / theirs:.2f}x"))
    print(f"each library alone in its own process; best of {args.rounds} children; float32")
    print_table(rows, ("layer", "route", "part", "tinydl ms", "torch ms", "ratio"))


if __name__ == "__main__":
    main()
