"""ZFNet's experiments on MNIST: feature evolution, occlusion sensitivity, invariance.

Zeiler & Fergus (notes 001, "ZF Net", sections 4, 5 and 7 of the paper) asked three
more questions of a trained net, beside the deconvnet pictures
(``examples/deconvnet_visualize.py``):

1. **Feature evolution during training** ("可视化最强 activation 的演化过程"): for a
   few units of each layer, the strongest activation over a set of images, projected
   back to pixels by the deconvnet, after epochs 1, 2, 5, ... Lower layers settle in a
   few epochs, higher ones later.
2. **Occlusion sensitivity** ("利用遮挡某些部位来学习 CNN 是学习 object 本身还是周围环境"):
   slide a grey square over an image and map (b) the total activation of the top
   layer's strongest feature map, (c) the probability of the true class and (d) the
   class the net gives, for every position of the square. If the net looks at the
   object, hiding the object (not the background) makes the probability drop.
3. **Invariance** ("对于平移和缩放是准线性的...旋转的不变性较差"): shift an image
   vertically, scale it and rotate it step by step, and plot the distance between the
   transformed and the original image's features at the first and the top layer (as a
   fraction of the original's norm) and the probability of the true class.

The net is the ZFNet-shaped MiniZF of ``deconvnet_visualize.py`` (conv1 7x7,
conv2 5x5, conv3 3x3, 2x2 max pools, one fc) with its deconvnet, trained on MNIST; the
images are chosen as in that script (with only the 10k test set here: a fixed
permutation, the first ``--n-train`` to train, the next ``--n-probe`` to probe). The
library pieces are ``tinydl.utils.occlusion_sensitivity`` and
``tinydl.utils.invariance_curve``; the pictures of units use
``tinydl.utils.visualize`` (``top_activations``, ``deconv_projections``).

Writes to ``--out`` (default runs/zfnet_experiments): evolution.png, occlusion.png,
invariance.png and results.json; ``--figures DIR`` also writes the three PNGs there
as zfnet_<name>.png (docs/figures for the README).

    python examples/zfnet_experiments.py                  # ~1-2 min on 2 CPU cores
    python examples/zfnet_experiments.py --epochs 10 --evolution-epochs 1 2 5 10
"""
import argparse
import json
import pathlib
import sys
import time

import numpy as np

import tinydl as td
import tinydl.optim as optim
from tinydl.data import DataLoader, TensorDataset
from tinydl.train import Trainer
from tinydl.utils import invariance_curve, occlusion_sensitivity
from tinydl.utils.plot import save_figure
from tinydl.utils.visualize import deconv_projections, to_numpy, top_activations

HERE = pathlib.Path(__file__).resolve().parent


# the sibling example holds MiniZF, the data split and the activation helpers
sys.path.insert(0, str(HERE))
import deconvnet_visualize as deconvnet  # noqa: E402


# ================================================================ 1. feature evolution
def evolution(model, snapshots, probe, layers, n_units, device):
    """{'units': [(layer, channel)], 'epochs': [...], 'cells': [[(projection, image, value)]]}:
    for each unit (the most active ones of the final net) and each saved epoch, the
    deconvnet projection of its strongest activation over ``probe`` and the image that
    caused it."""
    final = {k: v.detach().clone() for k, v in model.state_dict().items()}
    units = []
    for layer in layers:
        acts = deconvnet.layer_activations(model, probe, layer, device)
        units += [(layer, c) for c in deconvnet.pick_channels(acts, n_units)]
    epochs = sorted(snapshots)
    cells = [[None] * len(epochs) for _ in units]
    for j, epoch in enumerate(epochs):
        model.load_state_dict(snapshots[epoch])
        for layer in layers:
            acts = deconvnet.layer_activations(model, probe, layer, device)
            for i, (name, channel) in enumerate(units):
                if name != layer:
                    continue
                idx, pos, val = top_activations(acts, channel, 1)
                proj = deconv_projections(model, deconvnet.as_input(probe[idx], device), layer, channel, pos)
                cells[i][j] = (to_numpy(proj)[0, 0], probe[idx[0]], float(val[0]))
    model.load_state_dict(final)
    return {"units": units, "epochs": epochs, "cells": cells}


def draw_evolution(result, path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    units, epochs, cells = result["units"], result["epochs"], result["cells"]
    fig = Figure(figsize=(1.1 * len(epochs) + 1.2, 1.1 * len(units) + 0.6))
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(units), len(epochs), squeeze=False,
                        gridspec_kw=dict(left=0.16, right=0.99, top=0.92, bottom=0.02, wspace=0.08, hspace=0.12))
    for i, (layer, channel) in enumerate(units):
        for j, epoch in enumerate(epochs):
            ax = axes[i, j]
            proj, _, value = cells[i][j]
            ax.imshow(proj, cmap="gray")           # each projection on its own scale, as ZF's figures
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"epoch {epoch}", fontsize=8)
            if j == 0:
                ax.set_ylabel(f"{layer}\nch {channel}", fontsize=8)
    fig.suptitle("strongest activation over the probe images, projected to pixels", fontsize=9)
    return save_figure(fig, path)


# ================================================================ 2. occlusion
def occlusion(model, images, labels, patch, stride, fill, device, top_layer="relu3"):
    """Per image: the three maps of ZF's Fig. 7 and the unoccluded probability."""
    rows = []
    for image, label in zip(images, labels):
        x = deconvnet.as_input(image[None], device)
        with td.no_grad():
            model.eval()
            maps = model.forward_features(x, until=top_layer)
            channel = int(to_numpy(maps.sum(dim=(2, 3)))[0].argmax())   # the strongest feature map
            prob0 = float(to_numpy(model(x).softmax(dim=1))[0, label])

        def feature_total(t, c=channel):
            return model.forward_features(t, until=top_layer)[:, c].sum(dim=(1, 2)).reshape(-1, 1)

        activation = occlusion_sensitivity(feature_total, x, 0, patch, stride, fill, softmax=False)
        prob, classes = occlusion_sensitivity(model, x, int(label), patch, stride, fill, return_classes=True)
        rows.append(dict(image=image, label=int(label), channel=channel, prob0=prob0, activation=activation,
                         prob=prob, classes=classes))
    return rows


def draw_occlusion(rows, patch, stride, fill, path, top_layer="relu3"):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle
    fig = Figure(figsize=(10.5, 2.4 * len(rows) + 0.5))
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(rows), 4, squeeze=False,
                        gridspec_kw=dict(left=0.03, right=0.97, top=0.9, bottom=0.03, wspace=0.35, hspace=0.35))
    cmap10 = "tab10"
    for i, r in enumerate(rows):
        ax = axes[i, 0]
        ax.imshow(r["image"], cmap="gray")
        ax.add_patch(Rectangle((-0.5, -0.5), patch, patch, color=(fill, fill, fill), ec="red"))
        ax.set_title(f"(a) label {r['label']}, p={r['prob0']:.2f}", fontsize=8)
        # the maps have one entry per occluder position: show them over the occluder centres' range
        shift = (patch - 1) / 2
        extent = (shift - stride / 2, shift + stride * (r["prob"].shape[1] - 0.5),
                  shift + stride * (r["prob"].shape[0] - 0.5), shift - stride / 2)
        for ax, key, title, kw in ((axes[i, 1], "activation", f"(b) {top_layer} ch {r['channel']} total",
                                    dict(cmap="viridis")),
                                   (axes[i, 2], "prob", f"(c) p(true class {r['label']})",
                                    dict(cmap="jet", vmin=0, vmax=1)),
                                   (axes[i, 3], "classes", "(d) most probable class",
                                    dict(cmap=cmap10, vmin=-0.5, vmax=9.5))):
            im = ax.imshow(r[key], extent=extent, interpolation="nearest", **kw)
            ax.set_xlim(-0.5, 27.5)
            ax.set_ylim(27.5, -0.5)
            ax.set_title(title, fontsize=8)
            cbar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
            cbar.ax.tick_params(labelsize=6)
            if key == "classes":
                cbar.set_ticks(range(10))
        for ax in axes[i]:
            ax.tick_params(labelsize=6)
    fig.suptitle(f"occluding a {patch}x{patch} square (value {fill:.2f}), stride {stride}: map value at the "
                 "square's centre", fontsize=9)
    return save_figure(fig, path)


# ================================================================ 3. invariance
TRANSFORMS = {"translate": ("vertical translation (pixels)", np.arange(-10, 11, 1)),
              "scale": ("scale", np.round(np.linspace(0.5, 1.6, 12), 2)),
              "rotate": ("rotation (degrees)", np.arange(0, 361, 15))}


def invariance(model, images, labels, device, layers=("relu1", "relu3")):
    x = deconvnet.as_input(images, device)
    features = {layer: (lambda t, layer=layer: model.forward_features(t, until=layer)) for layer in layers}
    return {name: invariance_curve(model, x, labels, name, values, features=features)
            for name, (_, values) in TRANSFORMS.items()}


def draw_invariance(curves, labels, path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    layers = list(next(iter(curves.values()))["distance"])
    fig = Figure(figsize=(11, 2.5 * (len(layers) + 1) + 0.4))
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(layers) + 1, len(curves), squeeze=False,
                        gridspec_kw=dict(left=0.07, right=0.98, top=0.93, bottom=0.07, wspace=0.25, hspace=0.4))
    for j, (name, c) in enumerate(curves.items()):
        for i, layer in enumerate(layers):
            ax = axes[i, j]
            ax.plot(c["values"], c["distance"][layer] / c["norm"][layer][None], marker=".", markersize=3)
            ax.set_ylabel(f"{layer}: |f(Tx) - f(x)| / |f(x)|", fontsize=7)
        ax = axes[-1, j]
        ax.plot(c["values"], c["prob"], marker=".", markersize=3)
        ax.set_ylabel("p(true class)", fontsize=7)
        ax.set_ylim(-0.03, 1.03)
        ax.set_xlabel(TRANSFORMS[name][0], fontsize=8)
        axes[0, j].set_title(name, fontsize=9)
        for ax in axes[:, j]:
            ax.grid(True, alpha=0.3)
            ax.tick_params(labelsize=7)
    axes[-1, 0].legend([f"digit {int(y)}" for y in labels], fontsize=7)
    fig.suptitle("invariance: first and top layer's features and the output, one line per image", fontsize=9)
    return save_figure(fig, path)


# ================================================================ main
def first_correct(model, images, labels, n, device):
    """Indices of the first ``n`` images the model classifies correctly, one per class where possible."""
    with td.no_grad():
        model.eval()
        pred = to_numpy(model(deconvnet.as_input(images, device)).argmax(dim=1))
    ok = np.flatnonzero(pred == labels)
    chosen, seen = [], set()
    for i in ok:                        # different digits first, then any
        if int(labels[i]) not in seen and len(chosen) < n:
            chosen.append(int(i))
            seen.add(int(labels[i]))
    chosen += [int(i) for i in ok if int(i) not in chosen][:n - len(chosen)]
    return np.asarray(chosen[:n], dtype=np.int64)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=None,
                   help="folder with the MNIST IDX files (default: $TINYDL_MNIST_DIR or ../shared/data/mnist)")
    p.add_argument("--n-train", type=int, default=4000)
    p.add_argument("--n-probe", type=int, default=1000, help="images searched for each unit's strongest activation")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--evolution-epochs", type=int, nargs="+", default=[1, 2, 3, 5],
                   help="epochs after which the units are pictured (ZF: 1 2 5 10 20 30 40 64)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--widths", nargs=3, type=int, default=[16, 32, 32], help="channels of conv1..conv3")
    p.add_argument("--layers", nargs="+", default=["relu1", "relu2", "relu3"],
                   help="layers whose units' evolution is drawn")
    p.add_argument("--units", type=int, default=2, help="units per layer in the evolution figure")
    p.add_argument("--n-occlusion", type=int, default=3, help="images in the occlusion figure")
    p.add_argument("--patch", type=int, default=8, help="occluder side (pixels)")
    p.add_argument("--stride", type=int, default=1, help="occluder step (pixels)")
    p.add_argument("--n-invariance", type=int, default=5, help="images in the invariance curves (ZF: 5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--out", default="runs/zfnet_experiments")
    p.add_argument("--figures", default=None, help="also write the PNGs here as zfnet_<name>.png (docs/figures)")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    args = p.parse_args(argv)
    bad = [e for e in args.evolution_epochs if not 1 <= e <= args.epochs]
    if bad:
        p.error(f"--evolution-epochs {bad} outside 1..--epochs {args.epochs}")
    return args


def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    data_dir = pathlib.Path(args.data_dir) if args.data_dir else deconvnet.default_data_dir()
    (train_x, train_y), (probe_x, probe_y), desc = deconvnet.load_images(data_dir, args.n_train, args.n_probe)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    td.manual_seed(args.seed)
    model = deconvnet.MiniZF(widths=tuple(args.widths)).to(args.device)
    for layer in args.layers:
        if layer not in model.layer_names:
            raise ValueError(f"--layers: unknown layer {layer!r}; MiniZF has {', '.join(model.layer_names)}")
    optimizer = optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)
    trainer = Trainer(model, optimizer,
                      DataLoader(TensorDataset(train_x, train_y), batch_size=args.batch_size, shuffle=True,
                                 seed=args.seed),
                      DataLoader(TensorDataset(probe_x, probe_y), batch_size=500, seed=0),
                      device=args.device, log=None, seed=args.seed)
    snapshots = {}
    for epoch in range(1, args.epochs + 1):     # one epoch at a time, to keep a copy of the weights
        trainer.fit(epoch)
        if not args.quiet:
            print(trainer.format_row(trainer.history[-1], args.epochs))
        if epoch in args.evolution_epochs:
            snapshots[epoch] = {k: v.detach().clone() for k, v in model.state_dict().items()}
    train_seconds = time.perf_counter() - start
    model.eval()

    evo = evolution(model, snapshots, probe_x, args.layers, args.units, args.device)
    fill = float(train_x.mean()) / 255.0           # ZF's grey square: the mean pixel
    picked = first_correct(model, probe_x, probe_y, max(args.n_occlusion, args.n_invariance), args.device)
    occ = occlusion(model, probe_x[picked[:args.n_occlusion]], probe_y[picked[:args.n_occlusion]], args.patch,
                    args.stride, fill, args.device)
    inv_idx = picked[:args.n_invariance]
    curves = invariance(model, probe_x[inv_idx], probe_y[inv_idx], args.device)

    files = {"evolution": draw_evolution(evo, out / "evolution.png"),
             "occlusion": draw_occlusion(occ, args.patch, args.stride, fill, out / "occlusion.png"),
             "invariance": draw_invariance(curves, probe_y[inv_idx], out / "invariance.png")}
    if args.figures:
        for name in ("evolution", "occlusion", "invariance"):
            files[f"figure_{name}"] = save_figure_copy(files[name], pathlib.Path(args.figures) / f"zfnet_{name}.png")

    last = trainer.history[-1]
    summary = dict(
        images=desc, test_acc=float(last["test_acc"]), test_loss=float(last["test_loss"]),
        train_seconds=train_seconds,
        evolution=[dict(layer=layer, channel=int(c), epochs=evo["epochs"],
                        peak=[cell[2] for cell in evo["cells"][i]])
                   for i, (layer, c) in enumerate(evo["units"])],
        occlusion=[dict(label=r["label"], prob_unoccluded=r["prob0"], prob_min=float(r["prob"].min()),
                        prob_max=float(r["prob"].max()), feature_channel=r["channel"],
                        positions=list(r["prob"].shape),
                        share_of_positions_misclassified=float((r["classes"] != r["label"]).mean()))
                   for r in occ],
        invariance={name: dict(values=c["values"].tolist(), labels=probe_y[inv_idx].tolist(),
                               prob=c["prob"].T.tolist(), mean_prob=c["prob"].mean(axis=1).tolist(),
                               accuracy=c["correct"].mean(axis=1).tolist(),
                               relative_distance={k: (d / c["norm"][k][None]).mean(axis=1).tolist()
                                                  for k, d in c["distance"].items()})
                    for name, c in curves.items()},
        files={k: str(v) for k, v in files.items()})
    summary["seconds"] = time.perf_counter() - start
    (out / "results.json").write_text(json.dumps(summary, indent=1))
    print(f"images: {desc}")
    print(f"MiniZF {args.epochs} epochs: probe accuracy {100 * summary['test_acc']:.1f}% "
          f"({train_seconds:.0f} s training, {summary['seconds']:.0f} s in all); pictures in {out}")
    for r in summary["occlusion"]:
        print(f"occlusion, digit {r['label']}: p(true) {r['prob_unoccluded']:.3f} unoccluded, "
              f"{r['prob_min']:.3f} at the worst square; {100 * r['share_of_positions_misclassified']:.0f}% of "
              "the positions change the answer")
    for name, c in summary["invariance"].items():
        acc = np.asarray(c["accuracy"])
        print(f"{name}: accuracy {', '.join(f'{v:g}:{a:.1f}' for v, a in zip(c['values'], acc))}")
    return summary


def save_figure_copy(src, dst):
    """Copy a written PNG to ``dst`` (atomically: a temporary file, then a rename)."""
    from tinydl.utils.serialization import atomic_file
    dst.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(dst, "wb") as f:
        f.write(pathlib.Path(src).read_bytes())
    return dst


if __name__ == "__main__":
    main()
