"""A small supervised training loop for classifiers (the CLI and tests use it).

Kept deliberately plain: shuffle, slice a batch, forward, loss, backward, step;
evaluate in eval mode under no_grad.
"""
import time

import numpy as np

from . import backend
from .autograd import no_grad
from .nn import functional as F
from .tensor import Tensor


def _to_batch(images, device):
    """uint8 images (N, H, W) or (N, C, H, W) -> float32 tensor in [0, 1], NCHW, on device."""
    x = images.astype(np.float32) / 255.0
    if x.ndim == 3:
        x = x[:, None]
    return Tensor(backend.to_device(x, device))


def evaluate(model, images, labels, batch_size=500, device="cpu"):
    """(mean loss, accuracy) of ``model`` on uint8 images and int labels."""
    model.eval()
    total_loss, correct = 0.0, 0
    with no_grad():
        for start in range(0, len(images), batch_size):
            x = _to_batch(images[start:start + batch_size], device)
            y = Tensor(backend.to_device(labels[start:start + batch_size], device))
            logits = model(x)
            total_loss += F.cross_entropy(logits, y, reduction="sum").item()
            correct += int((logits.argmax(dim=1) == y).sum().item())
    return total_loss / len(images), correct / len(images)


def fit(model, optimizer, train, test, epochs=10, batch_size=64, device="cpu", seed=0,
        scheduler=None, log=print):
    """Train ``model`` on ``train`` = (uint8 images, int labels); returns a list of per-epoch dicts."""
    images, labels = train
    rng = np.random.default_rng(seed)
    history = []
    for epoch in range(1, epochs + 1):
        model.train()
        order = rng.permutation(len(images))
        start_time, running, seen = time.perf_counter(), 0.0, 0
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            x = _to_batch(images[idx], device)
            y = Tensor(backend.to_device(labels[idx], device))
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            running += loss.item() * len(idx)
            seen += len(idx)
        if scheduler is not None:
            scheduler.step()
        test_loss, test_acc = evaluate(model, *test, device=device)
        row = dict(epoch=epoch, train_loss=running / seen, test_loss=test_loss, test_acc=test_acc,
                   seconds=time.perf_counter() - start_time)
        history.append(row)
        if log:
            log(f"epoch {epoch:3d}  train loss {row['train_loss']:.4f}  test loss {test_loss:.4f}  "
                f"test acc {100 * test_acc:.2f}%  ({row['seconds']:.1f}s)")
    return history
