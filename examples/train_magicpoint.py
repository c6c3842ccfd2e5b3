"""Train MagicPoint (SuperPoint's detector) on synthetic shapes, on the CPU.

The data: ``SyntheticShapes`` (tinydl/data/synthetic.py), the notes' 120 x 160
grey drawings -- lines, polygons, stars, checkerboards, cubes, ellipses -- whose
corners are known exactly. Training images are indices of seed 0, drawn at
64 x 80 by default (``--train-size``: a quarter of the pixels, so four times the
steps in the same time; the network is fully convolutional), test images come
from seed 1 at 120 x 160 (never seen). The target of each image is SuperPoint's 15 x 20
label: per 8x8 cell the position 0..63 of its keypoint, or 64 (the dustbin)
when it has none; a cell with several keypoints takes one *at random*, drawn
anew every time the image is used, as the notes describe.

The network: ``models.magicpoint`` -- the VGG-style encoder to 1/8 and the
65-channel detector head; loss: per-cell softmax cross-entropy (log-softmax,
stable); heatmap: softmax, dustbin dropped, depth-to-space. The default is a
narrow version (channels 16-32-32-64, head 128, batch norm) so that it trains
in a few minutes on a CPU; ``--channels 64 64 128 128 --head-channels 256`` is the
paper's. Adam with a cosine learning-rate decay.

Reported on the test images: precision and recall of the detected corners
(heatmap >= ``--threshold`` (0.015, about 1/65, the authors' value), NMS radius
4; a detection is correct within ``--distance`` (2) pixels of a true corner,
one to one: ``tinydl.vision.metrics.keypoint_precision_recall``).

Writes ``--out``/heatmaps/*.png (image, heatmap), ``--out``/magicpoint.png
(test images: true corners red circles, detections green dots) and
``--out``/metrics.json; ``--figure PATH`` writes the figure there too.

    python examples/train_magicpoint.py                          # a few minutes on a CPU
    python examples/train_magicpoint.py --figure docs/figures/magicpoint.png
    python examples/train_magicpoint.py --channels 64 64 128 128 --head-channels 256 --no-batch-norm \
        --train-size 120 160 --batch-size 32 --lr 1e-3 --steps 20000 --device cuda      # the paper's net
"""
import argparse
import json
import pathlib
import time

import numpy as np

import tinydl as td
from models.superpoint import detect_keypoints, detector_loss, logits_to_heatmap, magicpoint
from tinydl import optim
from tinydl.data import DataLoader
from tinydl.train import step_batches
from tinydl.data.synthetic import SyntheticShapes, keypoints_to_label
from tinydl.vision.metrics import keypoint_precision_recall

from tqdm import tqdm


def collate_keypoints(batch):
    """Images stacked (N, H, W) uint8; keypoints kept as a list (their counts differ)."""
    return td.tensor(np.stack([img for img, _ in batch])), [kp for _, kp in batch]


def to_input(images, device):
    """uint8 (N, H, W) -> float32 (N, 1, H, W) in [0, 1] on ``device``."""
    return (images.to(device).float() * (1.0 / 255)).unsqueeze(1)


@td.no_grad()
def predict(model, dataset, args):
    """Heatmaps (N, H, W) NumPy, detected points and the true keypoints, per test image."""
    model.eval()
    heatmaps, points, truths = [], [], []
    for images, keypoints in DataLoader(dataset, batch_size=32, collate_fn=collate_keypoints):
        heat = logits_to_heatmap(model(to_input(images, args.device)))
        pts, _ = detect_keypoints(heat, threshold=args.threshold, nms_radius=args.nms_radius, border=0)
        heatmaps.append(heat.cpu().numpy())
        points += [td.backend.to_host(p.array) for p in pts]
        truths += keypoints
    return np.concatenate(heatmaps), points, truths


def colour_heatmap(heat):
    """A (H, W) probability map as a BGR image (JET colour map, sqrt for visibility)."""
    import cv2
    return cv2.applyColorMap(np.uint8(255 * np.sqrt(np.clip(heat, 0, 1))), cv2.COLORMAP_JET)


def draw_points(image, detected, true, zoom=2):
    """Grey image enlarged ``zoom`` times; true corners red circles, detections green dots."""
    import cv2
    img = cv2.cvtColor(cv2.resize(image, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST),
                       cv2.COLOR_GRAY2BGR)
    at = lambda p: tuple(int(v) for v in np.rint((np.asarray(p) + 0.5) * zoom - 0.5))  # noqa: E731
    for p in true:
        cv2.circle(img, at(p), 5, (0, 0, 255), 1, cv2.LINE_AA)
    for p in detected:
        cv2.circle(img, at(p), 2, (0, 220, 0), -1, cv2.LINE_AA)
    return img


def write_figures(dataset, heatmaps, points, truths, out, figure=None, count=6):
    import cv2
    (out / "heatmaps").mkdir(parents=True, exist_ok=True)
    tiles = []
    for i in range(min(count, len(dataset))):
        image, _ = dataset[i]
        drawn = draw_points(image, points[i], truths[i])
        heat = cv2.resize(colour_heatmap(heatmaps[i]), drawn.shape[1::-1], interpolation=cv2.INTER_NEAREST)
        cv2.imwrite(str(out / "heatmaps" / f"{i:02d}_{dataset.primitive(i)}.png"), np.hstack([drawn, heat]))
        tiles.append(cv2.copyMakeBorder(drawn, 2, 2, 2, 2, cv2.BORDER_CONSTANT, value=(255, 255, 255)))
    rows = [np.hstack(tiles[k:k + 3]) for k in range(0, len(tiles), 3)]
    if len(rows) > 1 and rows[-1].shape != rows[0].shape:
        rows[-1] = np.pad(rows[-1], ((0, 0), (0, rows[0].shape[1] - rows[-1].shape[1]), (0, 0)),
                          constant_values=255)
    grid = np.vstack(rows)
    legend = np.full((22, grid.shape[1], 3), 255, np.uint8)
    cv2.putText(legend, "true corners", (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 255), 1, cv2.LINE_AA)
    cv2.putText(legend, "detected", (140, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 170, 0), 1, cv2.LINE_AA)
    grid = np.vstack([legend, grid])
    paths = [out / "magicpoint.png"] + ([pathlib.Path(figure)] if figure else [])
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), grid, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    return paths


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num-train", type=int, default=10000, help="distinct training drawings")
    p.add_argument("--num-test", type=int, default=120)
    p.add_argument("--train-size", type=int, nargs=2, default=[64, 80], metavar=("H", "W"),
                   help="training image size (small: 4x fewer pixels per step than the test size)")
    p.add_argument("--image-size", type=int, nargs=2, default=[120, 160], metavar=("H", "W"),
                   help="test image size (the notes': 120 x 160)")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--channels", type=int, nargs=4, default=[16, 32, 32, 64],
                   help="encoder widths (the paper: 64 64 128 128)")
    p.add_argument("--head-channels", type=int, default=128, help="detector head width (the paper: 256)")
    p.add_argument("--no-batch-norm", action="store_true", help="the paper's net has no batch norm")
    p.add_argument("--threshold", type=float, default=0.015, help="detection threshold (SuperPoint: 0.015)")
    p.add_argument("--nms-radius", type=int, default=4)
    p.add_argument("--distance", type=float, default=2.0, help="pixels within which a detection is correct")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--out", default="runs/train_magicpoint")
    p.add_argument("--figure", default=None, help="also write the figure here (docs/figures/magicpoint.png)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    td.manual_seed(args.seed)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    size = tuple(args.train_size)
    train = SyntheticShapes(args.num_train, image_size=size, seed=0)
    test = SyntheticShapes(args.num_test, image_size=tuple(args.image_size), seed=1)

    model = magicpoint(channels=args.channels, head_channels=args.head_channels,
                       batch_norm=not args.no_batch_norm).to(args.device)
    optimizer = optim.Adam(model.parameters(), lr=args.lr)
    schedule = optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.steps)    # stepped per batch
    loader = DataLoader(train, batch_size=args.batch_size, shuffle=True, drop_last=True, seed=args.seed,
                        collate_fn=collate_keypoints)
    label_rng = np.random.default_rng(args.seed)      # which keypoint a crowded cell keeps: new each time

    start, losses = time.perf_counter(), []
    model.train()
    with tqdm(total=args.steps, desc="magicpoint", leave=False) as bar:
        for images, keypoints in step_batches(loader, args.steps, bar):
            labels = np.stack([keypoints_to_label(kp, size, rng=label_rng) for kp in keypoints])
            loss = detector_loss(model(to_input(images, args.device)), td.tensor(labels, device=args.device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
    train_seconds = time.perf_counter() - start

    heatmaps, points, truths = predict(model, test, args)
    precision, recall = keypoint_precision_recall(points, truths, distance=args.distance)
    metrics = {"precision": precision, "recall": recall, "threshold": args.threshold,
               "distance": args.distance, "mean_detections": float(np.mean([len(p) for p in points])),
               "mean_true_corners": float(np.mean([len(t) for t in truths])),
               "first_loss": float(np.mean(losses[:10])), "final_loss": float(np.mean(losses[-20:])),
               "steps": args.steps, "train_seconds": round(train_seconds, 1)}
    files = write_figures(test, heatmaps, points, truths, out, args.figure)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(f"precision {precision:.3f}, recall {recall:.3f} (threshold {args.threshold}, within {args.distance} px; "
          f"{metrics['mean_detections']:.1f} detections / {metrics['mean_true_corners']:.1f} corners per image); "
          f"loss {metrics['first_loss']:.2f} -> {metrics['final_loss']:.3f}; {args.steps} steps in "
          f"{train_seconds:.0f} s; wrote {', '.join(map(str, files))}")
    return metrics


if __name__ == "__main__":
    main()
