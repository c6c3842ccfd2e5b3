"""Plain vs residual nets of depth 20 and 56: the degradation problem (He et al. 2015, Fig. 1/6).

The notes (000, 002, 003): a deeper *plain* net -- the same stack of conv/BN/ReLU layers,
no shortcuts -- has a *higher training error* than a shallower one. That is not
over-fitting (the training error itself is worse) but an optimisation difficulty. The
residual version of the same nets, y = relu(F(x) + x), does not degrade: the extra
blocks only have to learn F = 0 to pass their input on, so the deeper ResNet trains at
least as well as the shallower one.

This script trains plain-20, ResNet-20, plain-56 and ResNet-56 (the paper's CIFAR nets,
models/resnet.py: 16/32/64 channels, shortcut option A) with *identical* settings (the
same data order, schedule and seed) and plots, as the paper's Fig. 6 does, each one's
training error (solid: the running error of the last few iterations, in train mode)
and test error (dashed, after each epoch) against the iteration, plain nets on the
left, residual nets on the right.

Defaults are CPU-sized: the shared MNIST subset padded to 32x32 (the t10k files; the
first 2,000 of its first 8,000 images to train, the first 1,000 of its last 2,000 to
test), 3 epochs of batch 32 (189 iterations), SGD with Nesterov momentum 0.9, lr 0.03,
weight decay 1e-4, lr / 10 at 50% and again at 75% of the iterations (the paper's
schedule, compressed). The four nets take ~8 CPU-minutes on one core (three quarters
of it the two 56-layer nets); ``--depths 20`` alone takes ~2. The paper's own setting
on CIFAR-10 is behind flags:

    python examples/plain_vs_residual.py                                   # MNIST subset, ~8 minutes
    python examples/plain_vs_residual.py --dataset cifar10 --data-dir ~/data/cifar10 \\
        --train-size 0 --test-size 0 --epochs 160 --batch-size 128 --lr 0.1 --schedule paper \\
        --augment --device cuda                                            # the paper's setting

(``--dataset cifar10`` reads the binary version, ``cifar-10-batches-bin``;
``--train-size 0`` / ``--test-size 0`` mean all images; ``--augment`` is the paper's
4-pixel shifts and horizontal flips.)
"""
import argparse
import json
import pathlib
import sys
import time

import numpy as np

# the sibling example holds the MNIST split and the training loop both scripts share
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from resnet_mnist import default_data_dir, mnist_split, train  # noqa: E402

import models  # noqa: E402
import tinydl as td  # noqa: E402
from tinydl.data.datasets import CIFAR10  # noqa: E402
from tinydl.utils.plot import plot_curves  # noqa: E402

# one colour per depth, the same in both panels
COLOURS = {20: "tab:blue", 32: "tab:green", 44: "tab:purple", 56: "tab:red", 110: "black"}


def load_data(dataset, data_dir, train_size, test_size):
    """((train images, labels), (test images, labels), in_channels); sizes 0/None mean all."""
    train_size, test_size = train_size or None, test_size or None
    if dataset == "mnist":
        train_part, test_part = mnist_split(data_dir or default_data_dir(), "subset", pad=2,
                                            train_size=train_size, test_size=test_size)
        return train_part, test_part, 1
    if dataset == "cifar10":
        parts = []
        for is_train, size in ((True, train_size), (False, test_size)):
            ds = CIFAR10(root=data_dir, train=is_train)
            parts.append((ds.data[:size], ds.targets[:size]))
        return parts[0], parts[1], 3
    raise ValueError(f"plain_vs_residual: dataset must be 'mnist' or 'cifar10', got {dataset!r}")


def add_errors(history, steps_per_epoch):
    """Per-epoch rows with training error and test error (1 - accuracy) and the iteration
    count at the epoch's end added.

    ``train_acc`` is the running accuracy of the epoch's training steps (train mode),
    as the paper's training-error curves are."""
    return [dict(row, train_err=1.0 - row["train_acc"], test_err=1.0 - row["test_acc"],
                 iteration=row["epoch"] * steps_per_epoch) for row in history]


def smoothed_error(step_log, window):
    """(iterations, training error of the last ``window`` steps) from a ``train`` step log."""
    err = 1.0 - np.array([s["acc"] for s in step_log])
    sums = np.concatenate([[0.0], np.cumsum(err)])
    ends = np.arange(1, len(err) + 1)
    starts = np.maximum(0, ends - window)
    return ends, (sums[ends] - sums[starts]) / (ends - starts)


def plot_degradation(histories, step_logs, path, title=None, window=None):
    """Two panels as the paper's Fig. 6: plain nets left, ResNets right, one colour per
    depth; training error (solid, the mean over the last ``window`` steps) against the
    iteration, test error (dashed, after each epoch). ``histories`` and ``step_logs``:
    {'plain20': rows, ...} as ``add_errors`` and ``train(step_log=...)`` give them."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for ax, family, heading in ((axes[0], "plain", "plain nets"), (axes[1], "resnet", "ResNets")):
        for name, rows in histories.items():
            if not name.startswith(family):
                continue
            depth = int(name[len(family):])
            label = f"{'plain' if family == 'plain' else 'ResNet'}-{depth}"
            colour = COLOURS.get(depth)
            steps = step_logs[name]
            w = window or max(1, len(steps) // 12)
            xs, ys = smoothed_error(steps, w)
            ax.plot(xs, 100 * ys, "-", color=colour, linewidth=1.2, label=f"{label} train")
            ax.plot([r["iteration"] for r in rows], [100 * r["test_err"] for r in rows], "--", color=colour,
                    marker="o", markersize=4, linewidth=2, label=f"{label} test")
        ax.set_title(heading)
        ax.set_xlabel("iteration")
        ax.set_yscale("log")             # errors fall by orders of magnitude; log keeps the gaps readable
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("error (%)")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", choices=("mnist", "cifar10"), default="mnist")
    p.add_argument("--data-dir", type=pathlib.Path, default=None,
                   help="MNIST: the IDX folder (default $TINYDL_MNIST_DIR or ../shared/data/mnist); "
                        "CIFAR-10: the folder with cifar-10-batches-bin/ (default the tinydl cache)")
    p.add_argument("--depths", type=int, nargs="+", default=[20, 56], help="6n + 2 depths to compare")
    p.add_argument("--train-size", type=int, default=2000, help="first N training images (0: all)")
    p.add_argument("--test-size", type=int, default=1000, help="first N test images (0: all)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.03)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--schedule", choices=("paper", "onecycle", "constant"), default="paper",
                   help="per step; paper: lr/10 at 50%% and again at 75%% of the steps")
    p.add_argument("--augment", action="store_true", help="random 4-pixel shifts + horizontal flips (CIFAR)")
    p.add_argument("--shortcut", choices=("A", "B", "C"), default="A", help="the ResNets' shortcut option")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path("runs/plain_vs_residual"))
    p.add_argument("--figure", type=pathlib.Path, default=None,
                   help="also write the figure here (e.g. docs/figures/plain_vs_residual.png)")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    train_data, test_data, in_channels = load_data(args.dataset, args.data_dir, args.train_size, args.test_size)
    print(f"{args.dataset}: {len(train_data[0])} train / {len(test_data[0])} test images; {args.epochs} epochs, "
          f"batch {args.batch_size}, SGD lr {args.lr} momentum {args.momentum} wd {args.weight_decay}, "
          f"schedule {args.schedule}")
    shift, flip = (4, True) if args.augment else (0, False)

    histories, step_logs, summary = {}, {}, {}
    steps_per_epoch = -(-len(train_data[0]) // args.batch_size)
    for depth in args.depths:
        for family in ("plain", "resnet"):
            name = f"{family}{depth}"
            td.manual_seed(args.seed)            # the same initial draws for every net
            kwargs = dict(shortcut=args.shortcut) if family == "resnet" else {}
            model = models.create(name, num_classes=10, in_channels=in_channels, **kwargs).to(args.device)
            start = time.perf_counter()
            step_logs[name] = []
            rows = train(model, train_data, test_data, args.epochs, args.batch_size, "sgd", args.lr,
                         args.momentum, args.weight_decay, args.schedule, shift=shift, flip=flip,
                         device=args.device, seed=args.seed, name=f"{name:9s}", step_log=step_logs[name])
            histories[name] = add_errors(rows, steps_per_epoch)
            last = histories[name][-1]
            summary[name] = dict(train_loss=last["train_loss"], train_err=last["train_err"],
                                 test_loss=last["test_loss"], test_err=last["test_err"],
                                 seconds=time.perf_counter() - start)

    print(f"\n{'net':10s} {'train loss':>10s} {'train err':>10s} {'test err':>9s} {'time':>7s}")
    for name, s in summary.items():
        print(f"{name:10s} {s['train_loss']:10.4f} {100 * s['train_err']:9.2f}% {100 * s['test_err']:8.2f}% "
              f"{s['seconds']:6.0f}s")

    args.out.mkdir(parents=True, exist_ok=True)
    title = (f"{args.dataset}, {len(train_data[0])} training images, {args.epochs} epochs of {steps_per_epoch} "
             f"iterations (solid: training error, dashed: test error)")
    figures = [plot_degradation(histories, step_logs, args.out / "plain_vs_residual.png", title)]
    if args.figure is not None:
        figures.append(plot_degradation(histories, step_logs, args.figure, title))
    plot_curves(histories, args.out / "curves.png", keys=("loss", "err"))
    record = dict(args={k: str(v) for k, v in vars(args).items()}, summary=summary, histories=histories,
                  steps=step_logs)
    (args.out / "history.json").write_text(json.dumps(record, indent=1))
    for f in figures:
        print(f"figure: {f}")
    return summary


if __name__ == "__main__":
    main()
