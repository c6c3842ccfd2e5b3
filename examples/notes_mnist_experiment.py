"""The notes' MNIST experiment (seed 000, "Pytorch MNIST分类"), re-run on tinydl.

What the notes did: train on 1,000 MNIST images and test on 200, with two nets --
the MLP 784-784-10 (622,496 weights) and the CNN conv(1,8)-relu-pool-conv(8,16)-
relu-pool-fc (9,064 weights) -- and compare plain SGD and SGD with momentum over a
grid of learning rates. They report, for the CNN:

    lr 0.1               train loss 0.0533   test loss 0.1158
    lr 0.01              train loss 0.0978   test loss 0.0816
    lr 0.01, momentum .9 train loss 0.06866  test loss 0.06981

Settings the notes do not give, and what this script uses instead:
- the learning-rate grid: {1, 0.1, 0.01, 0.001} x momentum {0, 0.9} (issue #4);
- epochs and batch size: the notes compare with PyTorch's MNIST example, whose
  SGD version (before 2019) trained 10 epochs with batch size 64; so do we
  (``--epochs``, ``--batch-size``);
- loss: that example's log_softmax + nll_loss, i.e. ``F.cross_entropy``; train
  loss is the mean over the last epoch's batches (what a training log shows),
  train accuracy is measured after training, in eval mode;
- inputs in [0, 1] (the notes: "原数据就是0~1之间的浮点数"), no mean/std shift;
- which images: with the 60k training files present (``--split official``) the
  first 1,000 training and the first 200 test images; with only the 10k test set
  (this repository's shared data, ``--split test-only``) a fixed permutation
  (``numpy.random.default_rng(0)``) of the 10,000 test images, whose first 1,000
  are the training set and the next 200 the test set (disjoint). ``auto`` picks
  ``official`` when the training files are there.

Every run of one model starts from the same initial weights (``td.manual_seed``
before building it) and sees batches in the same order, so rows differ only in
lr and momentum. A run that blows up is reported in the table (NaN, diverged or
stuck at chance), not raised.

    python examples/notes_mnist_experiment.py                       # 16 runs, ~30 s of CPU time
    python examples/notes_mnist_experiment.py --models cnn --lrs 0.01 --momenta 0 0.9
    python examples/notes_mnist_experiment.py --epochs 50 --figure docs/figures/notes_mnist_curves.png
"""
import argparse
import json
import math
import os
import pathlib
import sys
import time

import numpy as np

import tinydl as td
import tinydl.optim as optim
from tinydl.data.mnist import load_mnist
from tinydl.train import fit
from tinydl.utils.plot import plot_curves

from models.lenet import seed_cnn
from models.mlp import mlp

REPO = pathlib.Path(__file__).resolve().parents[1]
MODELS = {"mlp": ("MLP 784-784-10", mlp), "cnn": ("CNN conv8-conv16-fc", seed_cnn)}

# The notes' reported CNN numbers: (model, lr, momentum) -> (train loss, test loss).
NOTES = {("cnn", 0.1, 0.0): (0.0533, 0.1158),
         ("cnn", 0.01, 0.0): (0.0978, 0.0816),
         ("cnn", 0.01, 0.9): (0.06866, 0.06981)}
CHANCE_LOSS = math.log(10)  # cross-entropy of a uniform guess over 10 classes


def default_data_dir():
    """$TINYDL_MNIST_DIR, else the shared folder beside the repository (../shared/data/mnist)."""
    return pathlib.Path(os.environ.get("TINYDL_MNIST_DIR", REPO.parent / "shared" / "data" / "mnist"))


def _has_train_files(root):
    return any((root / name).exists() for name in ("train-images-idx3-ubyte.gz", "train-images-idx3-ubyte"))


def load_split(data_dir, n_train=1000, n_test=200, split="auto"):
    """((train images, labels), (test images, labels), description); see the module docstring."""
    root = pathlib.Path(data_dir)
    if split == "auto":
        split = "official" if _has_train_files(root) else "test-only"
    if split == "official":
        tr_x, tr_y = load_mnist(root, train=True)
        te_x, te_y = load_mnist(root, train=False)
        if n_train > len(tr_x) or n_test > len(te_x):
            raise ValueError(f"asked for {n_train} train / {n_test} test images; MNIST has {len(tr_x)} / {len(te_x)}")
        desc = f"first {n_train} images of the 60k training set, first {n_test} of the 10k test set"
        return (tr_x[:n_train], tr_y[:n_train]), (te_x[:n_test], te_y[:n_test]), desc
    if split != "test-only":
        raise ValueError(f"split must be 'auto', 'official' or 'test-only', got {split!r}")
    x, y = load_mnist(root, train=False)
    if n_train + n_test > len(x):
        raise ValueError(f"test-only split: {n_train} + {n_test} images asked for, the test set has {len(x)}")
    order = np.random.default_rng(0).permutation(len(x))
    tr, te = order[:n_train], order[n_train:n_train + n_test]
    desc = (f"10k test set only: a fixed permutation (numpy default_rng(0)) of its 10,000 images, "
            f"the first {n_train} for training and the next {n_test} for testing (disjoint)")
    return (x[tr], y[tr]), (x[te], y[te]), desc


def accuracy(model, images, labels, device, batch_size=500):
    """Accuracy of ``model`` on uint8 images, in eval mode (the final train accuracy)."""
    model.eval()
    correct = 0
    with td.no_grad():
        for s in range(0, len(images), batch_size):
            x = td.tensor(images[s:s + batch_size, None].astype(np.float32) / 255.0, device=device)
            pred = model(x).argmax(dim=1).numpy_view()
            correct += int((pred == labels[s:s + batch_size]).sum())
    return correct / len(images)


def status_of(row):
    """'NaN': a loss went non-finite; 'diverged': the final train loss is worse than a
    uniform guess (> ln 10); 'chance': test accuracy <= 15% (the commonest digit is
    ~11% of the test images; e.g. every ReLU died); 'slow': still learning but the
    train loss is within 0.3 of ln 10 (the notes' "太小则太慢"); '' otherwise."""
    if not all(math.isfinite(row[k]) for k in ("train_loss", "test_loss")):
        return "NaN"
    if row["train_loss"] > CHANCE_LOSS + 0.05:
        return "diverged"
    if row["test_acc"] <= 0.15:
        return "chance"
    if row["train_loss"] > CHANCE_LOSS - 0.3:
        return "slow"
    return ""


def run_one(model_name, lr, momentum, train, test, args):
    """Train one grid cell; return (summary row, per-epoch history)."""
    td.manual_seed(args.seed)                    # same initial weights for every cell of a model
    model = MODELS[model_name][1]().to(args.device)
    optimizer = optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    start = time.perf_counter()
    nan_epoch = None
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):   # lr 1 may overflow: reported, not warned
        try:
            history = fit(model, optimizer, train, test, epochs=args.epochs, batch_size=args.batch_size,
                          device=args.device, seed=args.seed, log=None)
        except FloatingPointError as err:
            # tinydl.train stops a run whose training loss became NaN/inf; here that is a
            # result (the notes' "太大则无法收敛"), so record it and go on with the grid.
            history = err.history                # the epochs that finished
            nan_epoch = len(history) + 1
        train_acc = accuracy(model, *train, args.device)
    seconds = time.perf_counter() - start
    nan = float("nan")
    last = history[-1] if history and nan_epoch is None else {}
    row = dict(model=model_name, lr=lr, momentum=momentum, train_loss=float(last.get("train_loss", nan)),
               train_acc=train_acc, test_loss=float(last.get("test_loss", nan)),
               test_acc=float(last.get("test_acc", nan)), seconds=seconds, epochs_run=len(history))
    if nan_epoch is None:
        row["status"] = status_of(row)
    else:
        row["status"] = "NaN" if nan_epoch == "?" else f"NaN in epoch {nan_epoch}"
    notes = NOTES.get((model_name, lr, momentum))
    row["notes_train_loss"], row["notes_test_loss"] = notes if notes else (None, None)
    return row, history


def _num(v, digits=4):
    if v is None:
        return ""
    if not math.isfinite(v):
        return "NaN" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return f"{v:.{digits}f}" if abs(v) < 1000 else f"{v:.3g}"


def _pct(v):
    return f"{100 * v:.1f}%" if math.isfinite(v) else "NaN"


def format_table(rows):
    """A Markdown table of the runs (our numbers beside the notes' where they have them)."""
    head = ("| model | lr | momentum | train loss | train acc | test loss | test acc | "
            "notes: train loss | notes: test loss | status | time (s) |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        lines.append(f"| {r['model']} | {r['lr']:g} | {r['momentum']:g} | {_num(r['train_loss'])} | "
                     f"{_pct(r['train_acc'])} | {_num(r['test_loss'])} | {_pct(r['test_acc'])} | "
                     f"{_num(r['notes_train_loss'], 5)} | {_num(r['notes_test_loss'], 5)} | {r['status']} | "
                     f"{r['seconds']:.1f} |")
    return "\n".join(lines)


def _for_plot(history, clip):
    """Rows for the curves with losses above ``clip`` (or NaN) left out, so one
    diverging run does not flatten every other curve to the bottom of the plot."""
    out = []
    for row in history:
        row = dict(row)
        for k in ("train_loss", "test_loss"):
            if k in row and not (math.isfinite(row[k]) and row[k] <= clip):
                row[k] = None
        out.append(row)
    return out


def write_curves(histories, out_dir, models, momenta, clip):
    """One PNG per (model, momentum) with every lr as a curve; returns the paths."""
    paths = []
    for m in models:
        for mom in momenta:
            runs = {f"lr={lr:g}": _for_plot(h, clip) for (mm, lr, mo), h in histories.items()
                    if mm == m and mo == mom and h}      # a run stopped by NaN in epoch 1 has no rows
            if not runs:
                continue
            path = out_dir / f"curves_{m}_momentum{mom:g}.png"
            title = f"{MODELS[m][0]}, SGD momentum {mom:g} (losses > {clip:g} not drawn)"
            paths.append(plot_curves(runs, path, keys=("loss", "acc"), title=title))
    return paths


def combine_pngs(paths, path, ncol=2, max_width=1400):
    """Lay the per-(model, momentum) PNGs out on one image (the README figure)."""
    import cv2
    from tinydl.utils.visualize import save_image, stack_panels

    panels = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths]
    image = stack_panels(panels, ncol=min(ncol, len(panels)))
    if image.shape[1] > max_width:
        image = cv2.resize(image, None, fx=max_width / image.shape[1], fy=max_width / image.shape[1],
                           interpolation=cv2.INTER_AREA)
    # 16 levels per channel: invisible on anti-aliased line plots, and it halves the PNG
    # (the README figure should stay under 200 KB)
    step = 16
    image = np.minimum(255, (image.astype(np.int32) + step // 2) // step * step).astype(np.uint8)
    return save_image(image, path)


def results_markdown(table, args, split_desc, total_seconds):
    """results.md: the settings, the table, the run time."""
    return f"""Command: `python examples/notes_mnist_experiment.py {' '.join(args.argv)}`

- images: {split_desc};
- {args.epochs} epochs, batch size {args.batch_size}, plain cross-entropy, inputs in [0, 1],
  the same initial weights (seed {args.seed}) for every cell of a model;
- train loss: mean over the last epoch's batches; train accuracy: measured after training
  (eval mode); test loss / accuracy on the {args.n_test} test images;
- status: "NaN" a loss became non-finite; "diverged" final train loss > ln 10 (worse than a
  uniform guess); "chance" test accuracy <= 15%; "slow" train loss still within 0.3 of ln 10.

{table}

Total {total_seconds:.1f} s on `{args.device}`.
"""


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=None,
                   help="folder with the MNIST IDX files (default: $TINYDL_MNIST_DIR or ../shared/data/mnist)")
    p.add_argument("--split", default="auto", choices=("auto", "official", "test-only"),
                   help="which images to use (see the module docstring)")
    p.add_argument("--n-train", type=int, default=1000)
    p.add_argument("--n-test", type=int, default=200)
    p.add_argument("--models", nargs="+", default=["mlp", "cnn"], choices=sorted(MODELS))
    p.add_argument("--lrs", nargs="+", type=float, default=[1.0, 0.1, 0.01, 0.001])
    p.add_argument("--momenta", nargs="+", type=float, default=[0.0, 0.9])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--out", default="runs/notes_mnist_experiment", help="folder for curves and results")
    p.add_argument("--figure", default=None, help="also write the combined curves PNG here "
                                                  "(docs/figures/notes_mnist_curves.png for the README)")
    p.add_argument("--clip", type=float, default=3.0, help="losses above this are left out of the plots")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return args


def main(argv=None):
    args = parse_args(argv)
    from tqdm import tqdm

    data_dir = pathlib.Path(args.data_dir) if args.data_dir else default_data_dir()
    train, test, split_desc = load_split(data_dir, args.n_train, args.n_test, args.split)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    grid = [(m, lr, mom) for m in args.models for mom in args.momenta for lr in args.lrs]
    rows, histories = [], {}
    start = time.perf_counter()
    for m, lr, mom in tqdm(grid, desc="notes MNIST grid", disable=args.quiet, file=sys.stderr):
        row, history = run_one(m, lr, mom, train, test, args)
        rows.append(row)
        histories[(m, lr, mom)] = history
    total = time.perf_counter() - start

    table = format_table(rows)
    print(f"images: {split_desc}")
    print(table)
    print(f"total {total:.1f} s")

    files = write_curves(histories, out, args.models, args.momenta, args.clip)
    if files:
        panels = list(files)
        files.append(combine_pngs(panels, out / "notes_mnist_curves.png"))
        if args.figure:
            files.append(combine_pngs(panels, args.figure))
    (out / "results.md").write_text(results_markdown(table, args, split_desc, total), encoding="utf-8")
    (out / "results.json").write_text(json.dumps(
        dict(split=split_desc, seconds=total, rows=rows,
             histories={f"{m} lr={lr:g} momentum={mom:g}": h for (m, lr, mom), h in histories.items()}),
        indent=1, allow_nan=True), encoding="utf-8")
    return dict(rows=rows, table=table, split=split_desc, seconds=total, files=[str(f) for f in files])


if __name__ == "__main__":
    main()
