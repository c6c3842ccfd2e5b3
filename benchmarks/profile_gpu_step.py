"""Where a training step's time goes on the GPU: GPU busy time vs wall time, launches,
the costliest kernels, and the costliest Python functions.

    python benchmarks/profile_gpu_step.py [--model resnet20] [--batch 128] [--steps 10]
        [--batch-norm fused|numba] [--optimizer sgd|adam] [--adam fused_cuda|single_tensor]

``--batch-norm numba`` forces batch norm's passes (on the GPU: the CUDA kernels of each
pass and the (C,)-vector steps between them) instead of its fused route: the launches
per step with each say what the fusion saves; ``--adam`` does the same for Adam's step.
(Both fused routes are forced here: on the GPU they are not yet the default.)

GPU activity is read through PyTorch's profiler (CUPTI sees every kernel and copy in
the process, CuPy's included). A step whose GPU busy time is far below its wall time
is bound by Python and launch overhead, not by the kernels.
"""
import argparse
import cProfile
import io
import os
import pstats
import sys
import time
from collections import defaultdict

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import models                                # noqa: E402
import tinydl as td                          # noqa: E402
import tinydl.nn.functional as F             # noqa: E402
from tinydl import optim                     # noqa: E402


def make_step(model_name, batch, size, optimizer="sgd"):
    model = models.create(model_name).to("cuda")
    rng = np.random.default_rng(0)
    classes = 1000 if model_name.startswith(("resnet18", "resnet34", "resnet50", "resnet101")) else 10
    x = td.tensor(rng.standard_normal((batch, 3, size, size)).astype(np.float32), device="cuda")
    y = td.tensor(rng.integers(0, classes, batch), device="cuda")
    opt = (optim.SGD(model.parameters(), lr=0.01, momentum=0.9) if optimizer == "sgd"
           else optim.Adam(model.parameters(), lr=1e-3))

    def step():
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return step


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--batch-norm", choices=("fused", "numba"), default="fused",
                        help="batch norm's route (numba: the op's passes, CUDA kernels on the GPU)")
    parser.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd")
    parser.add_argument("--adam", choices=("fused_cuda", "single_tensor"), default="fused_cuda",
                        help="Adam's route: one kernel a parameter, or its plain update")
    args = parser.parse_args(argv)
    with td.backends.route(batch_norm=args.batch_norm, adam=args.adam):
        profile_step(args)


def profile_step(args):
    import torch
    from torch.profiler import ProfilerActivity, profile

    step = make_step(args.model, args.batch, args.size, args.optimizer)
    for _ in range(3):
        step()
    td.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    td.cuda.synchronize()
    wall = (time.perf_counter() - t0) / args.steps

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(args.steps):
            step()
        td.cuda.synchronize()
        torch.cuda.synchronize()
    per_kernel = defaultdict(lambda: [0, 0.0])
    for e in prof.events():
        if e.device_type.name == "CUDA":
            per_kernel[e.name][0] += 1
            per_kernel[e.name][1] += e.device_time_total if hasattr(e, "device_time_total") else e.cuda_time_total
    launches = sum(c for c, _ in per_kernel.values()) / args.steps
    busy = sum(t for _, t in per_kernel.values()) / args.steps / 1e3
    print(f"{args.model} batch {args.batch} {args.size}x{args.size}, batch norm {args.batch_norm}, "
          f"{args.optimizer}{f' ({args.adam})' if args.optimizer == 'adam' else ''}: wall {1e3 * wall:.2f} ms/step, "
          f"GPU busy {busy:.2f} ms/step ({100 * busy / (1e3 * wall):.0f}%), "
          f"{launches:.0f} kernels+copies/step ({1e3 * wall / max(launches, 1) * 1e3:.1f} us wall each)")
    print(f"{'count/step':>10}  {'ms/step':>8}  kernel")
    for name, (count, total) in sorted(per_kernel.items(), key=lambda kv: -kv[1][1])[:args.top]:
        print(f"{count / args.steps:10.1f}  {total / args.steps / 1e3:8.3f}  {name[:110]}")

    pr = cProfile.Profile()
    pr.enable()
    for _ in range(args.steps):
        step()
    td.cuda.synchronize()
    pr.disable()
    s = io.StringIO()
    pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(args.top)
    print(s.getvalue()[-6000:])


if __name__ == "__main__":
    main()
