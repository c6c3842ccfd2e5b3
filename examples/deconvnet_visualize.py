"""ZFNet's deconvnet on MNIST: what do the units of a trained conv net respond to?

Zeiler & Fergus (notes 001, "ZF Net"): to see what a unit of layer L has learnt,
find the images that excite it most, keep only that one activation, and run the
network backwards down to the pixels:

    unpooling   put each value back where the max-pool's *switch* says its maximum
                came from, zeros elsewhere ("反向池化");
    ReLU        keep the reconstruction positive, as the forward maps were;
    filtering   convolve with the same filters transposed (``conv_transpose2d`` with
                the conv's own weight).

Full ZFNet (224x224 colour, 62M weights) is not CPU-trainable in minutes, so this
script trains a ZFNet-shaped net at MNIST scale -- conv1 16@7x7, conv2 32@5x5,
conv3 32@3x3, 2x2 max pools, one fc -- and uses the deconvnet that ZFNet and
AlexNet share in ``models/alexnet.py`` (``forward_features(x, return_switches=True)``
and ``deconvnet(y, switches)``), so the projection code is the model zoo's own.

The deconvnet unpools with ``F.max_pool2d_transpose`` (the adjoint of the
pooling): with ZFNet's overlapping 3x3/2 windows a pixel that is the maximum of
several windows gets the sum of their reconstructions, never a zero written over
it. 2x2 pools simply keep this MNIST-scale net small.

Images (only the 10k MNIST test set ships with this repository): a fixed
permutation (``numpy.random.default_rng(0)``) of the 10,000 test images; the first
``--n-train`` train the net and the next ``--n-probe`` (disjoint) are searched for
each unit's top-9 activations. With the 60k training files in ``--data-dir``, the
net trains on the first ``--n-train`` training images and probes the test set.

Writes to ``--out`` (default runs/deconvnet_visualize): filters.png (conv1),
feature_maps_<layer>.png (one digit), deconv_<layer>.png (per channel: nine
projections, then the nine images) and deconvnet.png, all of them on one page
(``--figure docs/figures/deconvnet.png`` copies it for the README).

    python examples/deconvnet_visualize.py                 # ~1 min on one CPU core
    python examples/deconvnet_visualize.py --layers relu2 relu3 --n-channels 6 --epochs 5
"""
import argparse
import os
import pathlib
import time

import numpy as np

import tinydl as td
import tinydl.nn as nn
import tinydl.optim as optim
from tinydl.data.mnist import load_mnist
from tinydl.train import fit
from tinydl.utils.visualize import (deconv_projections, feature_map_grid, filter_grid, label_image,
                                    make_grid, save_image, stack_panels, top_activations)

# The deconvnet of ZFNet/AlexNet: forward_features(..., return_switches=True) records
# the pooling switches and layer sizes, deconvnet(y, switches) goes back down.
from models.alexnet import ConvNetWithDeconv

REPO = pathlib.Path(__file__).resolve().parents[1]


class MiniZF(ConvNetWithDeconv):
    """ZFNet's layer pattern at MNIST scale (1x28x28 in):

        conv1 c1@7x7 p3 -> 28x28, ReLU, max pool 2x2 -> 14x14
        conv2 c2@5x5 p2 -> 14x14, ReLU, max pool 2x2 -> 7x7
        conv3 c3@3x3 p1 -> 7x7,   ReLU
        fc    c3*7*7 -> 10

    ``blocks`` trims it: ``blocks=1`` keeps conv1-relu1-pool1 (a one-layer net).
    """

    def __init__(self, num_classes=10, widths=(16, 32, 32), blocks=3, in_channels=1, in_size=28):
        super().__init__()
        if not 1 <= blocks <= 3:
            raise ValueError(f"MiniZF: blocks must be 1, 2 or 3, got {blocks}")
        c1, c2, c3 = widths
        spec = [(nn.Conv2d(in_channels, c1, 7, padding=3), True),
                (nn.Conv2d(c1, c2, 5, padding=2), True),
                (nn.Conv2d(c2, c3, 3, padding=1), False)][:blocks]
        named, size = [], in_size
        for i, (conv, pool) in enumerate(spec, start=1):
            named += [(f"conv{i}", conv), (f"relu{i}", nn.ReLU())]
            if pool:
                named.append((f"pool{i}", nn.MaxPool2d(2)))    # disjoint windows: see the module docstring
                size //= 2
        self.layer_names = tuple(name for name, _ in named)
        self.features = nn.Sequential(*[layer for _, layer in named])
        self.avgpool = nn.Identity()
        self.classifier = nn.Sequential(nn.Linear(spec[-1][0].out_channels * size * size, num_classes))


def default_data_dir():
    """$TINYDL_MNIST_DIR, else the shared folder beside the repository (../shared/data/mnist)."""
    return pathlib.Path(os.environ.get("TINYDL_MNIST_DIR", REPO.parent / "shared" / "data" / "mnist"))


def load_images(data_dir, n_train, n_probe):
    """((train images, labels), (probe images, labels), description); see the module docstring."""
    root = pathlib.Path(data_dir)
    if (root / "train-images-idx3-ubyte.gz").exists() or (root / "train-images-idx3-ubyte").exists():
        tr_x, tr_y = load_mnist(root, train=True)
        te_x, te_y = load_mnist(root, train=False)
        return ((tr_x[:n_train], tr_y[:n_train]), (te_x[:n_probe], te_y[:n_probe]),
                f"first {n_train} training images; top activations over the first {n_probe} test images")
    x, y = load_mnist(root, train=False)
    if n_train + n_probe > len(x):
        raise ValueError(f"{n_train} train + {n_probe} probe images asked for; the test set has {len(x)}")
    order = np.random.default_rng(0).permutation(len(x))
    tr, pr = order[:n_train], order[n_train:n_train + n_probe]
    return ((x[tr], y[tr]), (x[pr], y[pr]),
            f"10k test set only, permuted with default_rng(0): {n_train} images to train, "
            f"the next {n_probe} searched for top activations")


def as_input(images, device):
    """uint8 (N, 28, 28) -> float32 (N, 1, 28, 28) in [0, 1] on ``device``."""
    return td.tensor(images[:, None].astype(np.float32) / 255.0, device=device)


def layer_activations(model, images, layer, device, batch_size=500):
    """(N, C, H, W) host array of ``layer``'s output over uint8 images."""
    model.eval()
    out = []
    with td.no_grad():
        for s in range(0, len(images), batch_size):
            out.append(model.forward_features(as_input(images[s:s + batch_size], device), until=layer).numpy_view())
    return np.concatenate(out)


def pick_channels(acts, n):
    """The ``n`` channels whose strongest response over the probe set is largest (live units)."""
    peak = acts.max(axis=(0, 2, 3))
    return [int(c) for c in np.argsort(-peak, kind="stable")[:n]]


def deconv_panel(model, probe, layer, acts, channels, device, k=9, zoom=2):
    """For each channel: a 3x3 grid of projections beside a 3x3 grid of its top images
    (``acts``: the layer's output over ``probe``, from ``layer_activations``)."""
    panels, summary = [], []
    nrow = int(np.ceil(np.sqrt(k)))
    for c in channels:
        idx, pos, val = top_activations(acts, c, k)
        proj = deconv_projections(model, as_input(probe[idx], device), layer, c, pos)
        proj = proj.numpy_view()
        big = lambda a: a.repeat(zoom, axis=-2).repeat(zoom, axis=-1)  # noqa: E731
        left = make_grid(big(proj), nrow=nrow, padding=2, normalize=True, scale_each=True, pad_value=255)
        right = make_grid(big(probe[idx]), nrow=nrow, padding=2, pad_value=255)
        gap = np.full((left.shape[0], 4), 255, np.uint8)
        panels.append(label_image(np.concatenate([left, gap, right], axis=1), f"{layer} ch {c}"))
        summary.append(dict(layer=layer, channel=c, images=idx.tolist(), values=[float(v) for v in val]))
    return panels, summary


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=None,
                   help="folder with the MNIST IDX files (default: $TINYDL_MNIST_DIR or ../shared/data/mnist)")
    p.add_argument("--n-train", type=int, default=3000)
    p.add_argument("--n-probe", type=int, default=2000, help="images searched for each unit's top activations")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--widths", nargs=3, type=int, default=[16, 32, 32], help="channels of conv1..conv3")
    p.add_argument("--layers", nargs="+", default=["relu2", "relu3"],
                   help="layers whose units are projected (names from MiniZF.layer_names)")
    p.add_argument("--n-channels", type=int, default=4, help="channels shown per layer (the most active ones)")
    p.add_argument("--top-k", type=int, default=9)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--out", default="runs/deconvnet_visualize")
    p.add_argument("--figure", default=None, help="also write the combined PNG here (docs/figures/deconvnet.png)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    data_dir = pathlib.Path(args.data_dir) if args.data_dir else default_data_dir()
    train, probe, desc = load_images(data_dir, args.n_train, args.n_probe)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    td.manual_seed(args.seed)
    model = MiniZF(widths=tuple(args.widths)).to(args.device)
    for layer in args.layers:
        if layer not in model.layer_names:
            raise ValueError(f"--layers: unknown layer {layer!r}; MiniZF has {', '.join(model.layer_names)}")
    optimizer = optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)
    history = fit(model, optimizer, train, probe, epochs=args.epochs, batch_size=args.batch_size,
                  device=args.device, seed=args.seed, log=print)
    train_seconds = time.perf_counter() - start
    model.eval()

    files = []
    # conv1's filters: ZF's check that the first layer has no dead or purely high-frequency filters
    filters = filter_grid(model.features[0].weight, zoom=4)
    files.append(save_image(filters, out / "filters.png"))
    page = [label_image(filters, "conv1 filters")]

    # every channel of relu1 and relu2 for one probe digit
    digit = probe[0][:1]
    page.append(label_image(make_grid(digit[:, None].repeat(4, 2).repeat(4, 3), nrow=1, padding=2,
                                      pad_value=255), f"input ({int(probe[1][0])})"))
    with td.no_grad():
        for layer, zoom in (("relu1", 2), ("relu2", 4)):
            maps = model.forward_features(as_input(digit, args.device), until=layer)
            grid = feature_map_grid(maps, nrow=8, zoom=zoom)
            files.append(save_image(grid, out / f"feature_maps_{layer}.png"))
            page.append(label_image(grid, f"{layer} maps"))

    summary = []
    deconv_rows = []
    for layer in args.layers:
        acts = layer_activations(model, probe[0], layer, args.device)
        channels = pick_channels(acts, args.n_channels)
        panels, info = deconv_panel(model, probe[0], layer, acts, channels, args.device, args.top_k)
        summary += info
        grid = stack_panels(panels, ncol=len(panels))
        files.append(save_image(grid, out / f"deconv_{layer}.png"))
        deconv_rows.append(grid)

    top = stack_panels(page, ncol=len(page))
    figure = stack_panels([top] + deconv_rows, ncol=1)
    files.append(save_image(figure, out / "deconvnet.png"))
    if args.figure:
        files.append(save_image(figure, args.figure))
    seconds = time.perf_counter() - start
    last = history[-1]
    print(f"images: {desc}")
    print(f"MiniZF {args.epochs} epochs: probe-set accuracy {100 * last['test_acc']:.1f}%, "
          f"training {train_seconds:.1f} s, total {seconds:.1f} s; pictures in {out}")
    return dict(test_acc=float(last["test_acc"]), test_loss=float(last["test_loss"]),
                train_loss=float(last["train_loss"]), projections=summary, files=[str(f) for f in files],
                seconds=seconds, train_seconds=train_seconds, images=desc)


if __name__ == "__main__":
    main()
