"""Draw the tutorial's pictures into docs/learn/figures/ (or the folder given).

    python docs/learn/make_figures.py [OUT_DIR]

diamond.png      the graph of chapter 2's diamond (td.utils.draw_graph)
small_net.png    the graph of a small CNN's loss, parameters named
grad_norms.png   |dL/dW| per layer of a 10-hidden-layer MLP, sigmoid against ReLU

Each comes from a few lines of tinydl on a fixed seed, in a second or two.
"""
import pathlib
import sys

import numpy as np

import tinydl as td
import tinydl.nn as nn
import tinydl.nn.functional as F

FIGURES = pathlib.Path(__file__).resolve().parent / "figures"


def diamond(path):
    x = td.tensor([0.5, -1.0, 2.0], dtype=td.float64, requires_grad=True)
    a = x.exp()
    loss = ((a * 2.0) * (a * 3.0)).sum()
    return td.utils.draw_graph(loss, path, params={"x": x}, title="loss = sum(2e^x * 3e^x): a feeds two ops")


def small_net(path):
    td.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(4 * 4 * 4, 10))
    images, labels = td.randn(8, 1, 8, 8), td.randint(0, 10, (8,))
    loss = F.cross_entropy(model(images), labels)
    return td.utils.draw_graph(loss, path, params=model, title="cross_entropy(model(images), labels)")


def _grad_norms(activation, init, depth=10, width=64):
    td.manual_seed(0)
    layers = []
    for _ in range(depth):
        layers += [nn.Linear(width, width), activation()]
    net = nn.Sequential(nn.Linear(784, width), *layers, nn.Linear(width, 10))
    for m in net:
        if isinstance(m, nn.Linear):
            init(m.weight)
            nn.init.zeros_(m.bias)
    x, y = td.rand(100, 784), td.randint(0, 10, (100,))
    F.cross_entropy(net(x), y).backward()
    return [float(np.linalg.norm(m.weight.grad.numpy())) for m in net if isinstance(m, nn.Linear)]


def grad_norms(path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from tinydl.utils.plot import save_figure

    runs = {"sigmoid (Xavier init)": _grad_norms(nn.Sigmoid, nn.init.xavier_normal_),
            "ReLU (He init)": _grad_norms(nn.ReLU, lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"))}
    fig = Figure(figsize=(6, 3.4))
    FigureCanvasAgg(fig)
    ax = fig.add_axes([0.12, 0.15, 0.84, 0.74])
    for label, norms in runs.items():
        ax.semilogy(range(1, len(norms) + 1), norms, marker="o", label=label)
    ax.set_xlabel("layer (1 = next to the input)")
    ax.set_ylabel("|dL/dW|")
    ax.set_title("gradient norm per layer after one backward, 12 linear layers", fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def main(out_dir=FIGURES):
    out_dir = pathlib.Path(out_dir)
    return [pathlib.Path(draw(out_dir / f"{draw.__name__}.png")) for draw in (diamond, small_net, grad_norms)]


if __name__ == "__main__":
    for written in main(*sys.argv[1:]):
        print("wrote", written)
