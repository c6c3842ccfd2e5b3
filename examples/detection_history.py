"""The notes' history of two-stage detectors, measured: R-CNN -> SPP-net -> Fast R-CNN -> Faster R-CNN.

All four train from scratch on the same synthetic set (``SyntheticDetection``:
128 x 128 images with 1-3 rectangles, ellipses and triangles; train images from
seed 0, test images from seed 1) with the same small backbone (Faster R-CNN's
stride-8 conv stack, 8-16-32-64 channels by default) and the same fc 256-256
head, and are scored by PASCAL VOC mAP@0.5 on the test images:

* R-CNN (``models.create('rcnn', backbone='small')``): selective search
  proposals, each warped to 56 x 56 (4 px of context) and run through the CNN;
  the CNN fine-tuned as a 4-way softmax (32 RoIs per image, 25% positive); then
  per-class linear SVMs with hard negative mining on fc7 and per-class ridge box
  regression on pool5; NMS per class.
* SPP-net (``spp_det``): the same, but the convs run once per image and each
  proposal is pooled from the conv map by a 1-2-3-6 spatial pyramid.
* Fast R-CNN (``fast_rcnn``): convs once, RoI pooling 7 x 7, softmax and box
  regression trained together (multi-task loss), no SVMs.
* Faster R-CNN (``faster_rcnn``, via ``examples/train_faster_rcnn.py``): the
  proposals come from its own RPN; no selective search at all.

The first three share the selective search proposals (``mode='fast'``),
computed once per image; their test time per image includes them (as in the
papers' timings), and the table shows that part too. Training time includes R-CNN's
and SPP-net's feature extraction and SVM/regressor fitting, not the proposals of
the training images (a one-off cost, printed separately). For R-CNN and SPP-net
the table also gives the mAP of their fine-tuned softmax used directly, without
SVMs or box regression (the notes' question: why train SVMs at all?).

    python examples/detection_history.py                                  # a few minutes on 2 cores
    python examples/detection_history.py --figure docs/figures/detection_history.png
    python examples/detection_history.py --num-train 1000 --steps 1500 --channels 16 32 64 128
    python examples/detection_history.py --methods rcnn fast_rcnn --device cuda

Writes ``--out``/history.json and ``--out``/history.png (mAP against test time
per image, and training time), and prints the table (markdown).
"""
import argparse
import json
import math
import pathlib
import sys
import time

import numpy as np

import models
import tinydl as td
from tinydl import optim
from tinydl.backend import to_host
from tinydl.data import DataLoader
from tinydl.data.shapes_detection import SyntheticDetection, collate_detection
from tinydl.train import step_batches
from tinydl.utils.plot import save_figure
from tinydl.vision.metrics import mean_average_precision
from tinydl.vision.ops import selective_search

# the sibling example holds Faster R-CNN's recipe, evaluate and lr_factor
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import train_faster_rcnn  # noqa: E402

METHODS = ("rcnn", "spp_det", "fast_rcnn", "faster_rcnn")
NAMES = {"rcnn": "R-CNN", "spp_det": "SPP-net", "fast_rcnn": "Fast R-CNN", "faster_rcnn": "Faster R-CNN"}
YEARS = {"rcnn": 2014, "spp_det": 2014, "fast_rcnn": 2015, "faster_rcnn": 2015}


class WithProposals:
    """A dataset wrapper: each target also carries the image's proposals ('proposals')."""

    def __init__(self, dataset, proposals):
        self.dataset, self.proposals = dataset, proposals

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        image, target = self.dataset[index]
        return image, dict(target, proposals=self.proposals[index])


def compute_proposals(dataset, mode, max_proposals, quiet):
    """Selective search boxes of every image, and the seconds per image."""
    start = time.perf_counter()
    boxes = []
    for i in range(len(dataset)):
        image, _, _ = dataset.draw(i)
        boxes.append(selective_search(image, mode=mode, max_proposals=max_proposals))
    seconds = (time.perf_counter() - start) / max(len(dataset), 1)
    if not quiet:
        print(f"  selective search ({mode}): {np.mean([len(b) for b in boxes]):.0f} boxes, "
              f"{1000 * seconds:.0f} ms per image")
    return boxes, seconds


def train(model, loader, steps, lr, warmup, lr_factor):
    """AdamW with warm-up and cosine decay, as train_faster_rcnn.py; ``model(images,
    proposals, targets)`` returns the losses. Returns seconds."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = optim.AdamW(params, lr=lr, weight_decay=1e-4)
    scheduler = optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, steps, warmup))
    model.train()
    start = time.perf_counter()
    for step, (images, targets) in enumerate(step_batches(loader, steps)):
        losses = model(images, [t["proposals"] for t in targets], targets)
        total = sum(losses.values())
        opt.zero_grad()
        total.backward()
        opt.step()
        scheduler.step()
        if not math.isfinite(total.item()):
            raise FloatingPointError(f"detection_history: non-finite loss at step {step}")
    return time.perf_counter() - start


def evaluate(model, dataset, proposals, device):
    """(mAP@0.5, network seconds per image), one image at a time (as a detector runs)."""
    model.eval()
    detections, truths = [], []
    seconds = 0.0
    with td.no_grad():
        for i in range(len(dataset)):
            image, target = dataset[i]
            images = td.tensor(image[None], device=device)
            start = time.perf_counter()
            out = model(images, [proposals[i]])[0]
            boxes, scores, labels = (to_host(out[k].array) for k in ("boxes", "scores", "labels"))
            seconds += time.perf_counter() - start
            detections.append((boxes, scores, labels))
            truths.append((target["boxes"], target["labels"]))
    mAP, _ = mean_average_precision(detections, truths, iou_threshold=0.5, num_classes=model.num_classes)
    return mAP, seconds / max(len(dataset), 1)


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument("--num-train", type=int, default=150, help="training images (seed --seed)")
    p.add_argument("--num-test", type=int, default=40, help="test images (seed --seed + 1)")
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--channels", type=int, nargs=4, default=[8, 16, 32, 64], help="the small backbone's stages")
    p.add_argument("--steps", type=int, default=200, help="optimizer steps of each network (2 images each)")
    p.add_argument("--batch-size", type=int, default=2, help="images per step")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--ss-mode", choices=("fast", "quality", "single"), default="fast")
    p.add_argument("--max-proposals", type=int, default=2000, help="selective search boxes kept per image")
    p.add_argument("--svm-c", type=float, default=1e-3, help="the SVMs' C (R-CNN's 0.001)")
    p.add_argument("--svm-images", type=int, default=None,
                   help="training images whose features train the SVMs and regressors (default: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path("runs/detection_history"))
    p.add_argument("--figure", type=pathlib.Path, default=None, help="also write the figure here")
    p.add_argument("--quiet", action="store_true")
    return p


def draw_figure(rows, path):
    """mAP against test time per image (log scale), and training time per method."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter
    fig = Figure(figsize=(10, 3.8))                 # an Agg canvas, not pyplot: no display, no backend switch
    FigureCanvasAgg(fig)
    a, b = fig.subplots(1, 2)
    for r in rows:
        a.scatter(r["test_ms"], r["mAP50"], s=60)
        a.annotate(f"{r['name']} ({r['year']})", (r["test_ms"], r["mAP50"]), textcoords="offset points",
                   xytext=(6, 4))
    a.set_xscale("log")
    a.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))   # 50, 100, 200, 500 ...
    a.xaxis.set_major_formatter(ScalarFormatter())                 # as plain numbers, not 10^2
    a.xaxis.set_minor_formatter(NullFormatter())
    a.set_xlabel("test time per image, ms (proposals included; log scale)")
    a.set_ylabel("mAP@0.5")
    a.set_ylim(0, 1)
    a.grid(alpha=0.3)
    names = [r["name"] for r in rows]
    b.bar(names, [r["train_s"] for r in rows], color="tab:gray")
    b.set_ylabel("training time, s")
    b.tick_params(axis="x", labelrotation=15)
    fig.suptitle("Two-stage detectors on synthetic shapes, same backbone")
    fig.tight_layout()
    return save_figure(fig, path)


def main(argv=None):
    args = build_parser().parse_args(argv)
    say = (lambda *a: None) if args.quiet else print
    size = (args.image_size, args.image_size)
    train_set = SyntheticDetection(args.num_train, size, seed=args.seed)
    test_set = SyntheticDetection(args.num_test, size, seed=args.seed + 1)
    options = dict(num_classes=train_set.num_classes, backbone="small", channels=tuple(args.channels))
    rows = []
    train_props = test_props = None
    ss_train_ms = ss_test_ms = 0.0
    if any(m != "faster_rcnn" for m in args.methods):
        say("proposals:")
        train_props, s = compute_proposals(train_set, args.ss_mode, args.max_proposals, args.quiet)
        ss_train_ms = 1000 * s
        test_props, s = compute_proposals(test_set, args.ss_mode, args.max_proposals, args.quiet)
        ss_test_ms = 1000 * s
    for method in args.methods:
        say(f"{NAMES[method]}:")
        warmup = max(args.steps // 10, 1)
        if method == "faster_rcnn":
            result = train_faster_rcnn.main(["--steps", str(args.steps), "--num-train", str(args.num_train),
                                 "--num-test", str(args.num_test), "--batch-size", str(args.batch_size),
                                 "--image-size", str(args.image_size), "--lr", str(args.lr),
                                 "--warmup", str(warmup), "--channels", *map(str, args.channels),
                                 "--no-flip", "--seed", str(args.seed), "--device", args.device,
                                 "--out", str(args.out / "faster_rcnn"), "--quiet"])
            row = dict(mAP50=result["mAP50"], train_s=result["train_seconds"],
                       net_ms=1000 * result["eval_seconds"] / args.num_test, proposal_ms=0.0, softmax_mAP50=None)
        else:
            td.manual_seed(args.seed)
            model = models.create(method, **options).to(args.device)
            loader = DataLoader(WithProposals(train_set, train_props), batch_size=args.batch_size, shuffle=True,
                                drop_last=True, collate_fn=collate_detection, seed=args.seed, device=args.device)
            train_s = train(model, loader, args.steps, args.lr, warmup, train_faster_rcnn.lr_factor)
            softmax_mAP = None
            if method in ("rcnn", "spp_det"):
                # the notes' question: the fine-tuned softmax as the classifier, before the SVMs
                softmax_mAP, _ = evaluate(model, test_set, test_props, args.device)
                say(f"  mAP@0.5 with the fine-tuned softmax (no SVMs, no box regression): {softmax_mAP:.3f}")
                start = time.perf_counter()
                n = len(train_set) if args.svm_images is None else min(args.svm_images, len(train_set))
                fit_loader = DataLoader(WithProposals(train_set, train_props), batch_size=1,
                                        collate_fn=collate_detection, device=args.device)
                batches = ((images, [t["proposals"] for t in targets], targets)
                           for _, (images, targets) in zip(range(n), fit_loader))
                report = model.fit_detectors(batches, C=args.svm_c)
                train_s += time.perf_counter() - start
                say(f"  SVMs and regressors: {report}")
            mAP, net_s = evaluate(model, test_set, test_props, args.device)
            row = dict(mAP50=mAP, train_s=train_s, net_ms=1000 * net_s, proposal_ms=ss_test_ms,
                       softmax_mAP50=softmax_mAP)
        row.update(method=method, name=NAMES[method], year=YEARS[method],
                   test_ms=row["net_ms"] + row["proposal_ms"])
        say(f"  mAP@0.5 {row['mAP50']:.3f}, training {row['train_s']:.0f} s, "
            f"test {row['test_ms']:.0f} ms per image ({row['proposal_ms']:.0f} of them selective search)")
        rows.append(row)

    table = ["| detector | proposals | mAP@0.5 | softmax instead of SVMs | training | test time per image |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        source = "RPN (its own)" if r["method"] == "faster_rcnn" else f"selective search ({args.ss_mode})"
        split = f" ({r['net_ms']:.0f} network)" if r["proposal_ms"] else ""
        softmax = "-" if r["softmax_mAP50"] is None else f"{r['softmax_mAP50']:.3f}"
        table.append(f"| {r['name']} ({r['year']}) | {source} | {r['mAP50']:.3f} | {softmax} | {r['train_s']:.0f} s | "
                     f"{r['test_ms']:.0f} ms{split} |")
    say("\n".join(table))
    if train_props is not None:
        say(f"(selective search on the training images: {ss_train_ms:.0f} ms per image, not counted above)")
    args.out.mkdir(parents=True, exist_ok=True)
    figure = draw_figure(rows, args.out / "history.png")
    if args.figure is not None:
        draw_figure(rows, args.figure)
    (args.out / "history.json").write_text(json.dumps(dict(rows=rows, args=vars(args), table=table,
                                                           selective_search_train_ms=ss_train_ms), indent=1,
                                                      default=str))
    return dict(rows=rows, table=table, figure=str(figure))


if __name__ == "__main__":
    main()
