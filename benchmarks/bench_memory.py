"""Peak memory of a training step, tinydl and PyTorch (CPU), each alone in its own process.

    python benchmarks/bench_memory.py [--net resnet20] [--batch 128] [--rounds 2]

What is measured, in every child process (one library imported, nothing else):

1. the model, its SGD-with-momentum optimizer and one batch are built, and one warm-up
   step runs (kernels load, optimizer state appears);
2. the memory a step leaves behind is handed back: Python's garbage, tinydl's reused
   scratch and column buffers (so that the measured step pays for them again) and
   glibc's free heap (``malloc_trim``);
3. the resident set then is the baseline (model, optimizer state, batch, code);
   the kernel's high-water mark is reset (``/proc/self/clear_refs``);
4. two more steps run; the step's peak is the high-water mark (VmHWM) minus the baseline.

So the figure is what one step needs on top of what the process holds anyway: the
activations kept for backward, the gradients and the temporaries of both passes.
``--net resnet20-inplace-relu`` runs ResNet-20 with ReLUs that overwrite their input (both
libraries), as torchvision writes its ResNets; ``--net leaky-pool`` a small stack of conv, batch
norm, leaky ReLU and max pooling, whose activations only some ops keep.
tinydl's child calls ``td.backends.cpu.tune()``, as the CLI does. Linux only.
"""
import argparse
import ctypes
import ctypes.util
import gc
import json
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from _nets import leaky_pool_net, lenet5, resnet20, resnet50      # noqa: E402
from _timing import print_table                   # noqa: E402
from bench_alone import LIBRARIES, library       # noqa: E402

NETS = {"resnet20": (resnet20, (3, 32, 32)), "resnet50": (resnet50, (3, 224, 224)),
        "lenet5": (lambda lib, functional: lenet5(lib), (1, 32, 32)),
        "leaky-pool": (lambda lib, functional: leaky_pool_net(lib), (3, 32, 32)),
        "resnet20-inplace-relu": (lambda lib, functional: resnet20(lib, functional, inplace=True), (3, 32, 32))}


def _status_kib(field):
    """A VmXXX line of /proc/self/status, in KiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"bench_memory: no {field} in /proc/self/status (Linux only)")


def _hand_back_free_memory(name):
    """Free what the last step left for reuse, so the next step's peak counts it again."""
    gc.collect()
    if name == "tinydl":
        from tinydl.kernels import release_buffers
        release_buffers()
    ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim(0)


def child(name, net, batch, steps=2):
    """Print, as JSON, the step's peak above the baseline and the baseline, in MiB."""
    tensor, nn, F, optim = library(name)
    make, shape = NETS[net]
    rng = np.random.default_rng(0)
    model = make(nn, F)
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    xb = tensor(rng.standard_normal((batch,) + shape, dtype=np.float32))
    yb = tensor(rng.integers(0, 10, batch))

    def step():
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()
    _hand_back_free_memory(name)
    baseline = _status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")                             # resets VmHWM to the current VmRSS
    for _ in range(steps):
        step()
    peak = _status_kib("VmHWM")
    print(json.dumps({"step_peak_mib": (peak - baseline) / 1024, "baseline_mib": baseline / 1024}))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--net", choices=sorted(NETS), default="resnet20")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=2, help="child pairs; the smallest peak is kept")
    parser.add_argument("--child", choices=LIBRARIES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child, args.net, args.batch)
    best = {}
    for _ in range(args.rounds):
        for lib in LIBRARIES:
            done = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", lib, "--net", args.net,
                                   "--batch", str(args.batch)], capture_output=True, text=True, check=True)
            got = json.loads(done.stdout.strip().splitlines()[-1])
            if lib not in best or got["step_peak_mib"] < best[lib]["step_peak_mib"]:
                best[lib] = got
    total = {lib: best[lib]["step_peak_mib"] + best[lib]["baseline_mib"] for lib in LIBRARIES}
    rows = [(f"{args.net} train step batch {args.batch}: peak above baseline, MiB",
             f"{best['tinydl']['step_peak_mib']:.0f}", f"{best['torch']['step_peak_mib']:.0f}",
             f"{best['tinydl']['step_peak_mib'] / best['torch']['step_peak_mib']:.2f}x"),
            ("baseline (model, optimizer, batch, code), MiB", f"{best['tinydl']['baseline_mib']:.0f}",
             f"{best['torch']['baseline_mib']:.0f}", "-"),
            ("the process's peak: baseline + step, MiB", f"{total['tinydl']:.0f}", f"{total['torch']:.0f}",
             f"{total['tinydl'] / total['torch']:.2f}x")]
    print(f"each library alone in its own process; the smallest peak of {args.rounds} children")
    print_table(rows, ("case", "tinydl", "torch", "ratio"))


if __name__ == "__main__":
    main()
