"""Is the conv2d dispatcher's choice the fastest on this CPU? Each layer, each route, in the step.

    python benchmarks/bench_routes.py [--net resnet20|resnet50|lenet5] [--rounds 5] [--only "3x3 s2"]

The dispatcher (tinydl/kernels/conv.py) picks a route from thresholds measured on the
machines we had. On another CPU (an Intel Xeon, where OpenBLAS's products and Numba's
kernels speed up by different factors) a threshold may sit in the wrong place. This
script times whole training steps of one of bench_alone.py's networks with one layer
forced onto each route that can compute it (the other layers keep the dispatcher's
choice), so every route is timed where it will run: in the step, its caches cold from
the layers before it. The candidates of a layer take turns, ``--rounds`` times, and
each keeps its best step. A row ends with ``<--`` where another route made the step
faster than the dispatcher's choice by more than ``--margin`` (default 2%).

Layers with the same arguments (ResNet's repeated blocks) count as one: forcing a
route forces it on all of them. Step times include everything else the step does, so
the differences between routes are the layer's share.
"""
import argparse
import collections
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import tinydl as td                                    # noqa: E402
import tinydl.nn as nn                                 # noqa: E402
import tinydl.nn.functional as F                       # noqa: E402
from tinydl.kernels import conv as conv_routes         # noqa: E402
from tinydl.ops import conv as conv_op                 # noqa: E402
from _nets import lenet5, resnet20, resnet50           # noqa: E402

# bench_alone.py's training-step rows: network, input shape, batch
NETS = {"lenet5": (lambda: lenet5(nn), (1, 32, 32), 64),
        "resnet20": (lambda: resnet20(nn, F), (3, 32, 32), 128),
        "resnet50": (lambda: resnet50(nn, F), (3, 224, 224), 8)}


class LayerRoutes:
    """Wraps the conv2d dispatcher: notes each call signature's choice and the routes that
    apply to it, and hands out the route ``force[signature]`` instead where one is set."""

    def __init__(self, dispatcher):
        self.dispatcher = dispatcher
        self.layers = collections.OrderedDict()        # signature -> (chosen, candidates)
        self.force = {}
        self.forced_calls = 0                           # how often a forced route was handed out

    def __call__(self, x, weight_shape, geometry, needs):
        key = (tuple(x.shape), tuple(weight_shape), geometry[1], geometry[2], tuple(needs))
        chosen = self.dispatcher(x, weight_shape, geometry, needs)
        if key not in self.layers:
            routes = [r for r in conv_routes.CONV2D_ROUTES if r.applies(x, weight_shape, geometry, needs)]
            self.layers[key] = (chosen.name if chosen else "im2col", {r.name: r for r in routes})
        name = self.force.get(key)
        if name is None:
            return chosen
        self.forced_calls += 1
        return None if name == "im2col" else self.layers[key][1][name]   # im2col: the textbook op


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--net", choices=sorted(NETS), default="resnet20")
    parser.add_argument("--rounds", type=int, default=5, help="turns of each layer's candidates (best kept)")
    parser.add_argument("--margin", type=float, default=0.02, help="flag a faster route beyond this share of the step")
    parser.add_argument("--only", metavar="TEXT", help="only the layers whose label (as printed) contains TEXT")
    args = parser.parse_args(argv)

    td.backends.cpu.tune()
    make, shape, batch = NETS[args.net]
    rng = np.random.default_rng(0)
    model = make()
    opt = td.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    xb = td.tensor(rng.standard_normal((batch,) + shape, dtype=np.float32))
    yb = td.tensor(rng.integers(0, 10, batch))

    def step():
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()

    def timed_step():
        """One step, after a quarter second of steps on the same routes: the forced route's
        first call fills its buffers, and OpenBLAS's threads, woken by the previous
        candidate, spin for about 0.1 s and would take the cores of the steps after it."""
        warm = time.perf_counter()
        step()
        while time.perf_counter() - warm < 0.25:
            step()
        start = time.perf_counter()
        step()
        return time.perf_counter() - start

    routes = LayerRoutes(conv_op.conv2d_route)
    conv_op.conv2d_route = routes                       # the op looks its dispatcher up at each call
    try:
        step()
        print(f"{args.net} training step, batch {batch}; best step in ms with the layer on each route "
              f"(the dispatcher's choice in [ ]), {args.rounds} rounds")
        for key, (chosen, candidates) in routes.layers.items():
            (n, c, h, w), (k, _, kh, kw), stride, padding, _ = key
            label = f"{c}->{k} {kh}x{kw} s{stride[0]} {h}x{w} N{n}"
            if args.only and args.only not in label:
                continue
            names = list(candidates) + ["im2col"]
            best = {name: float("inf") for name in names}
            for _ in range(args.rounds):
                for name in names:
                    routes.force[key] = name
                    calls = routes.forced_calls
                    best[name] = min(best[name], timed_step())
                    if routes.forced_calls == calls:        # the op no longer asks this dispatcher
                        raise RuntimeError("bench_routes: tinydl.ops.conv.Conv2d did not call "
                                           "tinydl.ops.conv.conv2d_route; nothing was forced")
            del routes.force[key]
            cells = " ".join(f"[{name}]={t * 1e3:.1f}" if name == chosen else f"{name}={t * 1e3:.1f}"
                             for name, t in best.items())
            fastest = min(best, key=best.get)
            flag = ""
            if best[fastest] < best[chosen] * (1 - args.margin):
                flag = f"  <-- {fastest}: {(best[chosen] - best[fastest]) * 1e3:.1f} ms less"
            print(f"{label}: {cells}{flag}", flush=True)
    finally:
        conv_op.conv2d_route = routes.dispatcher


if __name__ == "__main__":
    main()
