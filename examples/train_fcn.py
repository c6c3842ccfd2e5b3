"""Train FCN-8s (and, with --compare, FCN-32s) on synthetic shapes: semantic segmentation on a CPU.

The data are ``tinydl.data.shapes_segmentation.SyntheticSegmentation``: 64x64
colour images with 1-3 filled rectangles, ellipses and triangles of random
colours on a textured background, and a label per pixel (4 classes with the
background). The network is ``models.fcn8s(backbone='small')``: FCN's design
(fc6/fc7 as convolutions, bilinear-initialised transposed convolutions, skips
from pool4 and pool3 aligned by crops) at CPU size, with batch norm so that it
trains from scratch in minutes. Adam, cosine-annealed lr, random horizontal
flips. Test images are drawn with another seed, so they are new drawings.

Metrics: pixel accuracy and mean IoU over the classes
(``tinydl.vision.metrics.mean_iou``). The figure shows test images, their
ground truth and the prediction(s), colour-coded (black background, red
rectangle, green ellipse, yellow triangle). FCN-32s upsamples the stride-32
scores in one step and gives blobby shapes; the skips of FCN-8s bring back
corners and thin parts.

    python examples/train_fcn.py                                   # fcn8s, a few minutes
    python examples/train_fcn.py --compare --figure docs/figures/fcn.png
    python examples/train_fcn.py --model fcn16s --epochs 20 --train-size 2000
"""
import argparse
import json
import pathlib
import time

import numpy as np

import models
import tinydl as td
import tinydl.nn.functional as F
from tinydl import optim
from tinydl.data.shapes_segmentation import SyntheticSegmentation, colorize_mask
from tinydl.vision.metrics import mean_iou


def make_split(size, image_size, seed):
    """(images float32 (N, 3, H, W), masks int64 (N, H, W)) of SyntheticSegmentation(size, seed)."""
    ds = SyntheticSegmentation(size, image_size=image_size, seed=seed)
    images, masks = zip(*(ds[i] for i in range(size)))
    return np.stack(images), np.stack(masks), ds.classes


def predict(model, images, batch_size, device):
    """Arg-max class per pixel, (N, H, W) int64 on the host."""
    model.eval()
    out = []
    with td.no_grad():
        for s in range(0, len(images), batch_size):
            x = td.tensor(images[s:s + batch_size], device=device)
            out.append(model(x).argmax(dim=1).cpu().numpy())
    return np.concatenate(out).astype(np.int64)


def evaluate(model, images, masks, num_classes, batch_size, device):
    pred = predict(model, images, batch_size, device)
    miou, per_class = mean_iou(pred, masks, num_classes)
    return dict(pixel_acc=float((pred == masks).mean()), mean_iou=miou, per_class_iou=per_class.tolist()), pred


def train(name, args, train_data, test_data, num_classes, log=print):
    """Train ``models.<name>`` with Adam (or SGD); returns (model, test metrics, test predictions)."""
    td.manual_seed(args.seed)
    model = models.create(name, num_classes=num_classes, backbone=args.backbone, dropout=args.dropout)
    model = model.to(args.device)
    params = [p for p in model.parameters() if p.requires_grad]
    if args.optimizer == "adam":
        opt = optim.Adam(params, lr=args.lr, weight_decay=args.weight_decay)
    else:
        opt = optim.SGD(params, lr=args.lr, momentum=0.9, weight_decay=args.weight_decay)
    sched = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs)
    images, masks = train_data
    rng = np.random.default_rng(args.seed)
    n_params = sum(p.numel() for p in params)
    log(f"{name} ({args.backbone}): {n_params:,} trainable parameters, crops {model.crops}")
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        model.train()
        order = rng.permutation(len(images))
        total, batches = 0.0, 0
        # full batches only (the rest waits for the next epoch's shuffle): a last batch
        # of one image would leave batch norm a single value per channel on small maps
        for s in range(0, max(len(order) - args.batch_size, 0) + 1, args.batch_size):
            idx = order[s:s + args.batch_size]
            x, y = images[idx], masks[idx]
            if args.flip:          # the same horizontal flip of image and mask
                flip = rng.random(len(idx)) < 0.5
                x, y = x.copy(), y.copy()
                x[flip], y[flip] = x[flip][..., ::-1], y[flip][..., ::-1]
            x, y = td.tensor(x, device=args.device), td.tensor(y, device=args.device)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, batches = total + loss.item(), batches + 1
        sched.step()
        log(f"{name} epoch {epoch:2d}/{args.epochs}  train loss {total / batches:.4f}  "
            f"({time.perf_counter() - start:.0f}s)")
    seconds = time.perf_counter() - start
    metrics, pred = evaluate(model, *test_data, num_classes, args.batch_size, args.device)
    metrics.update(train_seconds=seconds, train_loss=total / batches)
    log(f"{name}: test pixel accuracy {100 * metrics['pixel_acc']:.2f}%  mean IoU {100 * metrics['mean_iou']:.2f}%  "
        f"per class {', '.join(f'{100 * v:.1f}' for v in metrics['per_class_iou'])}  (trained in {seconds:.0f}s)")
    return model, metrics, pred


def figure(path, images, masks, preds, labels, num_show, scale=3):
    """Rows: image, ground truth, one per prediction; ``num_show`` test images side by side."""
    import cv2
    k = min(num_show, len(images))
    rows = [np.concatenate([(images[i].transpose(1, 2, 0) * 255).round().astype(np.uint8) for i in range(k)], 1),
            np.concatenate([colorize_mask(masks[i]) for i in range(k)], 1)]
    rows += [np.concatenate([colorize_mask(p[i]) for i in range(k)], 1) for p in preds]
    names = ["image", "ground truth"] + labels
    h = images.shape[2]
    gap = np.full((2, rows[0].shape[1], 3), 255, np.uint8)
    grid = np.concatenate([r for row in rows for r in (row, gap)][:-1], 0)
    grid = cv2.resize(grid, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    font, font_scale = cv2.FONT_HERSHEY_SIMPLEX, 0.45
    width = max(cv2.getTextSize(name, font, font_scale, 1)[0][0] for name in names) + 10
    margin = np.full((grid.shape[0], width, 3), 255, np.uint8)
    for j, name in enumerate(names):
        y = int((j * (h + 2) + h / 2) * scale) + 5
        cv2.putText(margin, name, (4, y), font, font_scale, (0, 0, 0), 1, cv2.LINE_AA)
    out = np.concatenate([margin, grid], 1)
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(out, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    return path


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=("fcn8s", "fcn16s", "fcn32s"), default="fcn8s")
    p.add_argument("--compare", action="store_true", help="also train fcn32s with the same settings")
    p.add_argument("--backbone", choices=("small", "vgg16"), default="small")
    p.add_argument("--train-size", type=int, default=2000)
    p.add_argument("--test-size", type=int, default=128)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    p.add_argument("--lr", type=float, default=5e-3, help="initial lr (cosine-annealed per epoch)")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--flip", action=argparse.BooleanOptionalAction, default=True,
                   help="random horizontal flips of image and mask")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path("runs/train_fcn"))
    p.add_argument("--figure", type=pathlib.Path, default=None,
                   help="where to write the figure (default OUT/fcn.png), e.g. docs/figures/fcn.png")
    p.add_argument("--num-show", type=int, default=8, help="test images in the figure")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    size = (args.image_size, args.image_size)
    *train_data, classes = make_split(args.train_size, size, seed=args.seed)
    *test_data, _ = make_split(args.test_size, size, seed=args.seed + 1000)
    print(f"SyntheticSegmentation {size[0]}x{size[1]}: {args.train_size} train / {args.test_size} test images, "
          f"classes {classes}")
    names = [args.model] + (["fcn32s"] if args.compare and args.model != "fcn32s" else [])
    results, preds = {}, []
    for name in names:
        _, results[name], pred = train(name, args, train_data, test_data, len(classes))
        preds.append(pred)
    fig = figure(args.figure or args.out / "fcn.png", test_data[0], test_data[1], preds,
                 [f"{n} ({100 * results[n]['mean_iou']:.0f}% mIoU)" for n in names], args.num_show)
    print(f"figure: {fig}")
    result = dict(results[args.model], model=args.model, classes=list(classes), figure=str(fig))
    if len(names) > 1:
        result["compare"] = {n: results[n] for n in names[1:]}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "metrics.json").write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
