"""MLP training step, tinydl vs PyTorch (CPU), same data, same run.

    python benchmarks/bench_mlp.py

One step = forward, cross-entropy, backward, SGD-momentum update, batch 64,
float32. Prints milliseconds per step and the ratio tinydl / PyTorch.
"""
import os
import sys

import numpy as np
# torch before tinydl: each library in its own default thread settings (see _timing.py)
import torch

sys.path.insert(0, os.path.dirname(__file__))
import tinydl as td                      # noqa: E402

td.backends.cpu.tune()
import tinydl.nn as nn                   # noqa: E402
import tinydl.nn.functional as F         # noqa: E402
from _timing import best_time, print_table  # noqa: E402


def tinydl_step(widths, batch):
    layers = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    model = nn.Sequential(*layers[:-1])
    opt = td.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    rng = np.random.default_rng(0)
    x = td.tensor(rng.random((batch, widths[0]), dtype=np.float32))
    y = td.tensor(rng.integers(0, widths[-1], batch))

    def step():
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return step


def torch_step(widths, batch):
    layers = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers[:-1])
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.random((batch, widths[0]), dtype=np.float32))
    y = torch.tensor(rng.integers(0, widths[-1], batch))

    def step():
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return step


def main():
    rows = []
    for widths in [(784, 256, 10), (784, 784, 10)]:
        for batch in (64, 256):
            t_td = best_time(tinydl_step(widths, batch), repeat=50)
            t_pt = best_time(torch_step(widths, batch), repeat=50)
            name = "-".join(map(str, widths)) + f" batch {batch}"
            rows.append((name, f"{1e3 * t_td:.3f}", f"{1e3 * t_pt:.3f}", f"{t_td / t_pt:.2f}x"))
    print(f"MLP training step (forward + backward + SGD momentum), float32, "
          f"torch threads {torch.get_num_threads()}")
    print_table(rows)


if __name__ == "__main__":
    main()
