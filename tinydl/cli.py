"""``tinydl train``: train a zoo model from the command line.

With no arguments it trains the notes' MLP (784-784-10) on scikit-learn's
bundled digits, so it runs offline. ``--dataset mnist --data-dir DIR`` reads
MNIST IDX files; when only the 10,000-image test split is there, it trains on
the first 8,000 of those and tests on the last 2,000.
"""
import argparse
import pathlib
import sys

import numpy as np


def _load_dataset(args):
    from .data import load_digits_28, load_mnist
    if args.dataset == "digits":
        images, labels = load_digits_28()
        order = np.random.default_rng(0).permutation(len(images))
        cut = len(images) - 300
        return (images[order[:cut]], labels[order[:cut]]), (images[order[cut:]], labels[order[cut:]]), \
            f"digits: {cut} train / 300 test images (scikit-learn's bundled set, 28x28)"
    root = pathlib.Path(args.data_dir).expanduser()
    try:
        train = load_mnist(root, train=True)
        test = load_mnist(root, train=False)
        return train, test, f"MNIST: {len(train[0])} train / {len(test[0])} test images"
    except FileNotFoundError:
        images, labels = load_mnist(root, train=False)
        return (images[:8000], labels[:8000]), (images[8000:], labels[8000:]), \
            "MNIST: only the test split found; training on its first 8,000 images, testing on the last 2,000"


def _build_optimizer(args, params):
    from . import optim
    if args.optimizer == "sgd":
        return optim.SGD(params, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)
    if args.optimizer == "nesterov":
        return optim.SGD(params, lr=args.lr, momentum=args.momentum or 0.9, nesterov=True,
                         weight_decay=args.weight_decay)
    cls = {"adam": optim.Adam, "adamw": optim.AdamW, "adagrad": optim.Adagrad,
           "rmsprop": optim.RMSprop, "adadelta": optim.Adadelta}[args.optimizer]
    return cls(params, lr=args.lr, weight_decay=args.weight_decay)


def train(args):
    import models
    import tinydl as td
    td.manual_seed(args.seed)
    train_set, test_set, about = _load_dataset(args)
    print(about)
    model = models.create(args.model, num_classes=10)
    model.to(args.device)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model {args.model}: {n_params:,} parameters, device {args.device}")
    optimizer = _build_optimizer(args, model.parameters())
    from .train import fit
    history = fit(model, optimizer, train_set, test_set, epochs=args.epochs, batch_size=args.batch_size,
                  device=args.device, seed=args.seed)
    print(f"final test accuracy: {100 * history[-1]['test_acc']:.2f}%")
    return history


def main(argv=None):
    parser = argparse.ArgumentParser(prog="tinydl", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    p = sub.add_parser("train", help="train a model of the zoo")
    p.add_argument("model", nargs="?", default="mlp", help="zoo name (default: mlp, the notes' 784-784-10)")
    p.add_argument("--dataset", choices=["digits", "mnist"], default="digits")
    p.add_argument("--data-dir", default="~/.cache/tinydl/mnist", help="folder with the MNIST IDX files")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--optimizer", choices=["sgd", "nesterov", "adam", "adamw", "adagrad", "rmsprop", "adadelta"],
                   default="sgd")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.command != "train":
        parser.print_help()
        return 0 if args.command is None else 2
    train(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
