"""Train Deep Snake to pull an initial octagon onto a shape's outline, on the CPU.

The data: ``SyntheticContours`` (tinydl/data/synthetic.py), 64 x 64 grey images
with one filled ellipse, polygon or star on a noisy background. Each sample
gives the initial contour a detector would give (Deep Snake's octagon, built
from a box and extreme points jittered by 5% of the box size) and the true
outline, both resampled to V vertices (40 here, 128 in the paper) that
correspond one to one. Training images are indices 0..N-1 of seed 0, test
images come from seed 1.

The network: ``models.deep_snake`` -- a small CNN giving features at 1/4 of the
image, then ``--iterations`` snakes (8 CircConv-BN-ReLU blocks, dilations
1,1,1,1,2,2,4,4, fusion by a max over the vertices, 1x1 prediction head),
each moving every vertex by a predicted offset. Loss: smooth L1 on the vertices
of every iteration. Adam with a cosine learning-rate decay.

Reported on the test images: the mean vertex error (pixels, vertex k against
true vertex k) of the initial and of the final contours, and the mask IoU of
each against the shape's true mask (``contour_iou`` at 1/16-pixel precision;
the true contour itself, with only V vertices, reaches ``iou_true_contour``).

Writes ``--out``/deep_snake.png (test images enlarged 4x: initial contour red,
prediction green, true outline blue) and ``--out``/metrics.json; ``--figure PATH``
writes the figure there too.

    python examples/train_deep_snake.py                          # a few minutes on a CPU
    python examples/train_deep_snake.py --figure docs/figures/deep_snake.png
    python examples/train_deep_snake.py --num-vertices 128 --state-dim 128 --steps 5000 --device cuda  # paper-sized
"""
import argparse
import json
import pathlib
import time

import numpy as np

import tinydl as td
from models.deep_snake import DeepSnake, snake_loss
from tinydl import optim
from tinydl.data import DataLoader
from tinydl.train import step_batches
from tinydl.data.synthetic import SyntheticContours, contour_to_mask

from tqdm import tqdm


def to_input(images, device):
    """uint8 (N, H, W) -> float32 (N, 1, H, W) in [0, 1] on ``device``."""
    return (images.to(device).float() * (1.0 / 255)).unsqueeze(1)


def build_model(args):
    return DeepSnake(in_channels=1, feature_channels=args.feature_channels,
                     backbone_channels=tuple(args.backbone_channels), iterations=args.iterations,
                     state_dim=args.state_dim, fusion_dim=2 * args.state_dim,
                     head_dims=(2 * args.state_dim, 64))


@td.no_grad()
def predict(model, dataset, batch_size, device):
    """Initial and predicted contours (N, V, 2) NumPy arrays for the whole dataset."""
    model.eval()
    inits, preds = [], []
    for images, init, _ in DataLoader(dataset, batch_size=batch_size):
        out = model(to_input(images, device), init.to(device))[-1]
        inits.append(init.numpy())
        preds.append(out.cpu().numpy())
    return np.concatenate(inits), np.concatenate(preds)


def evaluate(model, dataset, batch_size=32, device="cpu"):
    """Mean vertex error and mask IoU, before (initial contour) and after (prediction)."""
    inits, preds = predict(model, dataset, batch_size, device)
    truths = np.stack([dataset[i][2] for i in range(len(dataset))])
    iou = {"init": [], "pred": [], "true": []}
    for i in range(len(dataset)):
        mask = dataset.draw(i)["mask"].astype(bool)
        for key, contour in (("init", inits[i]), ("pred", preds[i]), ("true", truths[i])):
            m = contour_to_mask(contour, mask.shape).astype(bool)
            iou[key].append((m & mask).sum() / max((m | mask).sum(), 1))
    err = lambda c: float(np.linalg.norm(c - truths, axis=2).mean())   # noqa: E731
    return {"vertex_error_init": err(inits), "vertex_error_pred": err(preds),
            "iou_init": float(np.mean(iou["init"])), "iou_pred": float(np.mean(iou["pred"])),
            "iou_true_contour": float(np.mean(iou["true"]))}, inits, preds


def draw_figure(dataset, inits, preds, path, count=8, zoom=4):
    """A row of test images, each enlarged ``zoom`` times, with the three contours drawn."""
    import cv2
    tiles = []
    for i in range(min(count, len(dataset))):
        sample = dataset.draw(i)
        img = cv2.resize(sample["image"], None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST)
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
        for contour, colour in ((sample["contour"], (255, 80, 0)), (inits[i], (0, 0, 255)),
                                (preds[i], (0, 200, 0))):
            pts = np.rint((np.asarray(contour) + 0.5) * zoom * 16).astype(np.int32)   # pixel centres, 1/16 px
            cv2.polylines(img, [pts], True, colour, 1, cv2.LINE_AA, shift=4)
        tiles.append(cv2.copyMakeBorder(img, 2, 2, 2, 2, cv2.BORDER_CONSTANT, value=(255, 255, 255)))
    rows = [np.hstack(tiles[k:k + 4]) for k in range(0, len(tiles), 4)]
    if len(rows) > 1 and rows[-1].shape != rows[0].shape:
        rows[-1] = np.pad(rows[-1], ((0, 0), (0, rows[0].shape[1] - rows[-1].shape[1]), (0, 0)),
                          constant_values=255)
    figure = np.vstack(rows)
    legend = np.full((22, figure.shape[1], 3), 255, np.uint8)
    x = 6
    for text, colour in (("initial", (0, 0, 255)), ("predicted", (0, 200, 0)), ("true", (255, 80, 0))):
        cv2.putText(legend, text, (x, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1, cv2.LINE_AA)
        x += 12 * len(text) + 20
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.vstack([legend, figure]), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    return path


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num-train", type=int, default=2000)
    p.add_argument("--num-test", type=int, default=200)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--num-vertices", type=int, default=40, help="V (the paper: 128)")
    p.add_argument("--init", default="octagon", choices=("octagon", "diamond"))
    p.add_argument("--jitter", type=float, default=0.05, help="box / extreme-point noise, fraction of the box")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--iterations", type=int, default=3, help="deformation steps (the paper: 3)")
    p.add_argument("--state-dim", type=int, default=64, help="snake width (the paper: 128)")
    p.add_argument("--feature-channels", type=int, default=32)
    p.add_argument("--backbone-channels", nargs="+", type=int, default=[16, 32, 32],
                   help="CNN stage widths; each stage after the first halves the size")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--out", default="runs/train_deep_snake")
    p.add_argument("--figure", default=None, help="also write the figure here (docs/figures/deep_snake.png)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    td.manual_seed(args.seed)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    common = dict(image_size=(args.image_size, args.image_size), num_vertices=args.num_vertices,
                  init=args.init, jitter=args.jitter)
    train = SyntheticContours(args.num_train, seed=0, **common)
    test = SyntheticContours(args.num_test, seed=1, **common)

    model = build_model(args).to(args.device)
    optimizer = optim.Adam(model.parameters(), lr=args.lr)
    schedule = optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.steps)    # stepped per batch
    loader = DataLoader(train, batch_size=args.batch_size, shuffle=True, drop_last=True, seed=args.seed)

    start, losses = time.perf_counter(), []
    model.train()
    with tqdm(total=args.steps, desc="deep snake", leave=False) as bar:
        for images, init, contour in step_batches(loader, args.steps, bar):
            preds = model(to_input(images, args.device), init.to(args.device))
            loss = snake_loss(preds, contour.to(args.device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
    train_seconds = time.perf_counter() - start

    metrics, inits, preds = evaluate(model, test, device=args.device)
    metrics.update(train_seconds=round(train_seconds, 1), steps=args.steps,
                   final_loss=float(np.mean(losses[-20:])), num_vertices=args.num_vertices)
    files = [draw_figure(test, inits, preds, out / "deep_snake.png")]
    if args.figure:
        files.append(draw_figure(test, inits, preds, args.figure))
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(f"vertex error {metrics['vertex_error_init']:.2f} px -> {metrics['vertex_error_pred']:.2f} px, "
          f"mask IoU {metrics['iou_init']:.3f} -> {metrics['iou_pred']:.3f} "
          f"(true {args.num_vertices}-vertex contour: {metrics['iou_true_contour']:.3f}); "
          f"{args.steps} steps in {train_seconds:.0f} s; wrote {', '.join(map(str, files))}")
    return metrics


if __name__ == "__main__":
    main()
