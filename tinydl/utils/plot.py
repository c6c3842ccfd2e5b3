"""Training curves as a PNG: loss and accuracy per epoch, one run or several.

``plot_curves(history, "run/curves.png")`` draws one subplot per key family
("loss", "acc", ...). Inside a subplot each run gets one colour; its train
column is a solid line and its test (or val) column a dashed one, so a glance
tells over-fitting (the two lines part) from under-fitting (both stay high).

``history`` is what ``tinydl.train`` returns: a list of per-epoch dicts such as
``{"epoch": 1, "train_loss": 0.9, "test_loss": 0.8, "train_acc": 0.7, ...}``.
To compare runs (SGD vs momentum, with and without dropout), pass a dict
``{label: history}``.

The figure is drawn on matplotlib's Agg canvas (no display needed) and
written atomically: to a temporary file in the same folder, then renamed over
the target, so a reader never sees half a PNG.
"""
import os

from .serialization import atomic_file

__all__ = ["plot_curves", "save_figure"]

# (column prefix, line style, legend suffix): train solid, held-out dashed.
_SPLITS = (("train", "-", "train"), ("test", "--", "test"), ("val", "--", "val"))


def _normalise(histories):
    """Return ``{label: [row, ...]}`` from one history or a dict of them."""
    if isinstance(histories, dict):
        runs = {str(label): list(rows) for label, rows in histories.items()}
    else:
        runs = {"": list(histories)}
    for label, rows in runs.items():
        for row in rows:
            if not isinstance(row, dict):
                raise TypeError(f"plot_curves: run {label!r} has a row of type {type(row).__name__}; "
                                "each row must be a dict like {'epoch': 1, 'train_loss': ...}")
    return runs


def _series(rows, column):
    """(epochs, values) of the rows that have ``column`` (epoch defaults to 1, 2, ...)."""
    xs, ys = [], []
    for i, row in enumerate(rows):
        value = row.get(column)
        if value is None:
            continue
        xs.append(row.get("epoch", i + 1))
        ys.append(float(value))
    return xs, ys


def plot_curves(histories, path, keys=("loss", "acc"), title=None):
    """Draw per-epoch curves and write them to ``path`` as a PNG; return ``path``.

    histories: a list of per-epoch dict rows (one run) or ``{label: rows}``.
    keys: the families to draw, one subplot each: family ``k`` plots the columns
        ``train_k`` (solid) and ``test_k`` / ``val_k`` (dashed) of every run.
        A family no run has is skipped; if none is present a ValueError names
        the columns that were available.
    title: optional figure title.
    """
    # A Figure on an Agg canvas, not pyplot: no display needed, and the backend a user
    # chose (a notebook's) is left alone.
    from matplotlib import rcParams
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    runs = _normalise(histories)
    if isinstance(keys, str):
        keys = (keys,)
    present = []
    for key in keys:
        if any(_series(rows, f"{split}_{key}")[0] for rows in runs.values() for split, _, _ in _SPLITS):
            present.append(key)
    if not present:
        columns = sorted({c for rows in runs.values() for row in rows for c in row})
        raise ValueError(f"plot_curves: none of the key families {tuple(keys)} has data "
                         f"(expected columns like 'train_{keys[0]}'); the rows have columns {columns}")

    # fixed margins: tight_layout would measure every label and costs more than the drawing
    fig = Figure(figsize=(5 * len(present), 3.6))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(present), squeeze=False,
                        gridspec_kw=dict(left=0.1 / len(present) ** 0.5, right=0.98, bottom=0.14,
                                         top=0.86 if title else 0.95, wspace=0.25))
    colours = rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, key in zip(axes[0], present):
        for i, (label, rows) in enumerate(runs.items()):
            colour = colours[i % len(colours)]
            for split, style, name in _SPLITS:
                xs, ys = _series(rows, f"{split}_{key}")
                if xs:
                    legend = f"{label} {name}".strip()
                    ax.plot(xs, ys, linestyle=style, color=colour, marker="o", markersize=3, label=legend)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)

    return save_figure(fig, path)


def save_figure(fig, path, dpi=100):
    """Write a matplotlib Figure to ``path`` as a PNG, atomically (a temporary file in
    the same folder, renamed over the target); returns ``path``."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with atomic_file(path) as f:
        fig.savefig(f, format="png", dpi=dpi)
    return path
