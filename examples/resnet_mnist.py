"""Train the CIFAR ResNet-20 (He et al. 2015, section 4.2) on MNIST padded to 32x32.

The network is the paper's CIFAR-10 ResNet-20 -- conv 3x3 16, three stages of three
BasicBlocks with 16/32/64 channels, global average pooling, fc 10, shortcut option A --
with a 1-channel first conv (``in_channels=1``: 269,434 parameters instead of
269,722), so MNIST goes in as it is, zero-padded from 28x28 to 32x32 (2 pixels each
side) to give the 32 -> 16 -> 8 feature maps the design assumes.

Data (default ``--split subset``): the 10,000-image MNIST *test* set (the ``t10k``
files), first 8,000 images to train on, last 2,000 to test on. ``--split full``
trains on the 60,000 training images and tests on the 10,000 test images (all four
IDX files in ``--data-dir``).

Default recipe: ONE epoch -- 250 steps of batch 32 -- of Adam with a one-cycle
learning rate: up from ~0 to 3e-3 over the first 10% of the steps, then linearly
down to ~0. It reaches >= 98% on the 2,000 test images (what
tests/test_resnet_mnist.py asserts); the run prints its accuracy and time. With a
budget this short the *schedule* matters most: runs that keep the lr constant for
the first of two epochs test at 82-94% after that epoch (the weights still jump
around a minimum), while a lr that ends near 0 settles into it. So the learning
rate changes after every step, not every epoch: this script runs its own loop (a
dozen lines, ``train`` below) and steps a ``LambdaLR`` per batch, as one does with
PyTorch's ``OneCycleLR``.

    python examples/resnet_mnist.py                         # shared subset, 1 epoch
    python examples/resnet_mnist.py --optimizer sgd --lr 0.1 --batch-size 64 --epochs 2   # SGD instead
    python examples/resnet_mnist.py --split full --data-dir ~/data/mnist --epochs 5 --shift 2 --device cuda
"""
import argparse
import json
import os
import pathlib
import sys
import time

import numpy as np

import models
import tinydl as td
import tinydl.nn.functional as F
from tinydl import optim
from tinydl.data import load_mnist
from tinydl.train import evaluate

SHARED_MNIST = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


def default_data_dir():
    """``$TINYDL_MNIST_DIR``, else the shared folder next to the repository."""
    return pathlib.Path(os.environ.get("TINYDL_MNIST_DIR", SHARED_MNIST))


# ---------------------------------------------------------------- data
def mnist_split(data_dir, split="subset", pad=2, train_size=None, test_size=None):
    """((train images, labels), (test images, labels)): uint8 (N, 28 + 2 pad, 28 + 2 pad).

    ``split='subset'``: the t10k files, first 8,000 train / last 2,000 test (the two
    parts never share an image). ``split='full'``: the official 60,000 / 10,000.
    ``train_size`` / ``test_size`` keep only the first images of each part.
    """
    if split == "subset":
        images, labels = load_mnist(data_dir, train=False)
        train, test = (images[:8000], labels[:8000]), (images[8000:], labels[8000:])
    elif split == "full":
        train, test = load_mnist(data_dir, train=True), load_mnist(data_dir, train=False)
    else:
        raise ValueError(f"mnist_split: split must be 'subset' or 'full', got {split!r}")
    out = []
    for (x, y), size in ((train, train_size), (test, test_size)):
        if size is not None:
            x, y = x[:size], y[:size]
        if pad:
            # zeros around the digit: MNIST's background is already 0
            x = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
        out.append((x, y))
    return tuple(out)


def random_shift(images, max_shift, rng, flip=False):
    """Each image translated by its own random (dy, dx) in [-max_shift, max_shift],
    the uncovered border filled with zeros; with ``flip``, half of them also mirrored
    left-right (the paper's CIFAR augmentation is ``max_shift=4, flip=True``).
    uint8 (N, H, W) or (N, H, W, C) in, the same shape and dtype out."""
    if max_shift <= 0 and not flip:
        return images
    n, h, w = images.shape[:3]
    s = max(int(max_shift), 0)
    border = ((0, 0), (s, s), (s, s)) + ((0, 0),) * (images.ndim - 3)
    padded = np.pad(images, border)
    dy, dx = rng.integers(0, 2 * s + 1, size=(2, n))
    mirror = rng.random(n) < 0.5 if flip else np.zeros(n, bool)
    out = np.empty_like(images)
    for i in range(n):
        crop = padded[i, dy[i]:dy[i] + h, dx[i]:dx[i] + w]
        out[i] = crop[:, ::-1] if mirror[i] else crop
    return out


def to_batch(images, device):
    """uint8 (N, H, W) or (N, H, W, C) -> float32 Tensor (N, C, H, W) in [0, 1] on ``device``."""
    x = images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2)
    return td.tensor(np.ascontiguousarray(x, dtype=np.float32) / np.float32(255), device=device)


# ---------------------------------------------------------------- learning-rate schedules
def lr_factor(schedule, total_steps, warmup=0.1):
    """The multiplier of the base lr at step s (0-based) of ``total_steps``, for LambdaLR.

    'onecycle': linear warm-up from ~0 to 1 over the first ``warmup`` of the steps, then
                linear decay to 0 at the last step (a big lr moves fast, a vanishing
                one settles into the minimum);
    'paper':    1, then / 10 at 50% and again at 75% of the steps (the paper's CIFAR
                schedule: lr 0.1, / 10 at 32k and 48k of 64k iterations);
    'constant': 1.
    """
    rise = max(1, round(warmup * total_steps))
    if schedule == "onecycle":
        return lambda s: (s + 1) / rise if s < rise else max(0.0, (total_steps - s) / (total_steps - rise + 1))
    if schedule == "paper":
        return lambda s: 1.0 if s < total_steps // 2 else (0.1 if s < (3 * total_steps) // 4 else 0.01)
    if schedule == "constant":
        return lambda s: 1.0
    raise ValueError(f"lr_factor: schedule must be 'onecycle', 'paper' or 'constant', got {schedule!r}")


def make_optimizer(name, params, lr, momentum=0.9, weight_decay=0.0):
    """'sgd' (with Nesterov momentum when momentum > 0) or 'adam'."""
    if name == "sgd":
        return optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=momentum > 0)
    if name == "adam":
        return optim.Adam(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"make_optimizer: optimizer must be 'sgd' or 'adam', got {name!r}")


# ---------------------------------------------------------------- the loop
def train(model, train_data, test_data, epochs=1, batch_size=32, optimizer="adam", lr=3e-3, momentum=0.9,
          weight_decay=0.0, schedule="onecycle", shift=0, flip=False, device="cpu", seed=0, log=print, name="",
          step_log=None):
    """Train ``model`` on uint8 ``train_data`` = (images, labels), the lr changing every step;
    evaluate on ``test_data`` after each epoch. Returns one row per epoch: epoch, lr (at the
    epoch's end), train_loss and train_acc (running means over the epoch's steps, in train
    mode, as the paper's training-error curves), test_loss, test_acc, seconds.
    ``step_log``: a list to append {step, loss, acc} to after every step (finer curves).
    """
    images, labels = train_data
    steps_per_epoch = -(-len(images) // batch_size)
    opt = make_optimizer(optimizer, model.parameters(), lr, momentum, weight_decay)
    scheduler = optim.lr_scheduler.LambdaLR(opt, lr_factor(schedule, epochs * steps_per_epoch))
    rng = np.random.default_rng(seed)
    history = []
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        epoch_images = random_shift(images, shift, rng, flip)      # fresh shifts every epoch
        order = rng.permutation(len(images))
        model.train()                        # batch norm normalises with the batch's statistics
        loss_sum, correct = 0.0, 0
        batches = range(0, len(order), batch_size)
        if sys.stderr.isatty():
            from tqdm import tqdm
            batches = tqdm(batches, desc=f"{name}epoch {epoch}", leave=False)
        for first in batches:
            idx = order[first:first + batch_size]
            x, y = to_batch(epoch_images[idx], device), td.tensor(labels[idx], device=device)
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            scheduler.step()                 # per step: the schedule is a function of the step count
            step_loss, step_correct = loss.item(), int((logits.argmax(dim=1) == y).sum().item())
            loss_sum += step_loss * len(idx)
            correct += step_correct
            if step_log is not None:
                step_log.append(dict(step=len(step_log) + 1, loss=step_loss, acc=step_correct / len(idx)))
        test_loss, test_acc = evaluate(model, *test_data, device=device)
        row = dict(epoch=epoch, lr=opt.param_groups[0]["lr"], train_loss=loss_sum / len(order),
                   train_acc=correct / len(order), test_loss=test_loss, test_acc=test_acc,
                   seconds=time.perf_counter() - start)
        history.append(row)
        if log:
            log(f"{name}epoch {epoch:2d}/{epochs}  train loss {row['train_loss']:.4f} acc "
                f"{100 * row['train_acc']:.2f}%  test loss {test_loss:.4f} acc {100 * test_acc:.2f}%  "
                f"({row['seconds']:.1f}s)")
    return history


# ---------------------------------------------------------------- command line
def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet20", help="a CIFAR ResNet/plain net of models/resnet.py")
    p.add_argument("--data-dir", type=pathlib.Path, default=None,
                   help="folder with the MNIST IDX files (default: $TINYDL_MNIST_DIR or ../shared/data/mnist)")
    p.add_argument("--split", choices=("subset", "full"), default="subset",
                   help="subset: t10k first 8,000 train / last 2,000 test; full: 60,000 / 10,000")
    p.add_argument("--train-size", type=int, default=None, help="keep only the first N training images")
    p.add_argument("--test-size", type=int, default=None, help="keep only the first N test images")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    p.add_argument("--lr", type=float, default=3e-3, help="the peak (onecycle) or initial learning rate")
    p.add_argument("--momentum", type=float, default=0.9, help="SGD only")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--schedule", choices=("onecycle", "paper", "constant"), default="onecycle",
                   help="per step: onecycle = warm-up then linear decay to 0; paper = /10 at 50%% and 75%%")
    p.add_argument("--shift", type=int, default=0, help="random translations of up to N pixels (augmentation)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path("runs/resnet_mnist"))
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    data_dir = args.data_dir or default_data_dir()
    train_data, test_data = mnist_split(data_dir, args.split, pad=2, train_size=args.train_size,
                                        test_size=args.test_size)
    print(f"MNIST ({args.split}) padded to 32x32: {len(train_data[0])} train / {len(test_data[0])} test images")

    td.manual_seed(args.seed)
    model = models.create(args.model, num_classes=10, in_channels=1).to(args.device)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{args.model}: {n_params:,} parameters; {args.optimizer} lr {args.lr} ({args.schedule}), "
          f"weight decay {args.weight_decay}, batch {args.batch_size}, {args.epochs} epoch(s), shift {args.shift}")

    start = time.perf_counter()
    history = train(model, train_data, test_data, args.epochs, args.batch_size, args.optimizer, args.lr,
                    args.momentum, args.weight_decay, args.schedule, shift=args.shift, device=args.device,
                    seed=args.seed)
    seconds = time.perf_counter() - start
    final = history[-1]
    print(f"final test accuracy {100 * final['test_acc']:.2f}% ({len(test_data[0])} images) after "
          f"{args.epochs} epoch(s); total time {seconds:.1f}s")

    result = dict(model=args.model, params=n_params, test_acc=final["test_acc"], test_loss=final["test_loss"],
                  train_loss=final["train_loss"], epochs=args.epochs, seconds=seconds)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "history.json").write_text(json.dumps(dict(args={k: str(v) for k, v in vars(args).items()},
                                                           result=result, history=history), indent=1))
    return result


if __name__ == "__main__":
    main()
