"""The notes' small CNNs: parameter counts, shapes, and (slow) MNIST training.

Training uses the shared MNIST test split (10,000 images): the first 8,000
train, the last 2,000 evaluate. Each training test takes ~10-20 s on 2 cores.
"""
import numpy as np
import pytest

import models
import tinydl as td
from tinydl import optim
from tinydl.data import load_mnist
from tinydl.train import fit


def _count(model):
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------- the notes' numbers
def test_lenet5_has_61706_parameters():
    """001: 156 + 2,416 + 48,120 + 10,164 + 850."""
    model = models.create("lenet5")
    assert _count(model) == 61_706
    per_layer = [p.numel() for p in model.parameters()]
    assert per_layer == [150, 6, 2400, 16, 48000, 120, 10080, 84, 840, 10]
    assert _count(models.create("lenet5", activation="tanh", pool="avg")) == 61_706


def test_seed_cnn_has_9064_weights_without_biases():
    """000: (3*3)*8 + (3*3*8)*16 + 7*7*16*10 = 9,064."""
    assert _count(models.create("seed_cnn", bias=False)) == 9_064
    assert _count(models.create("seed_cnn")) == 9_064 + 8 + 16 + 10


def test_lenet_tf_layers_and_count():
    """001's TensorFlow variant: 5x5x1x32 + 32, 5x5x32x64 + 64, 3136x512 + 512, 512x10 + 10."""
    model = models.create("lenet_tf")
    assert _count(model) == (25 * 32 + 32) + (25 * 32 * 64 + 64) + (3136 * 512 + 512) + (512 * 10 + 10)


@pytest.mark.parametrize("name, options, shape", [
    ("lenet5", {}, (3, 1, 32, 32)),
    ("lenet5", dict(in_size=28, activation="tanh", pool="avg"), (3, 1, 28, 28)),
    ("lenet_tf", {}, (3, 1, 28, 28)),
    ("seed_cnn", {}, (3, 1, 28, 28)),
])
def test_models_map_images_to_10_logits(name, options, shape):
    td.manual_seed(0)
    model = models.create(name, **options)
    x = td.tensor(np.random.default_rng(0).random(shape, dtype=np.float32), requires_grad=True)
    y = model(x)
    assert y.shape == (shape[0], 10) and y.dtype == np.float32
    y.backward(td.tensor(np.random.default_rng(1).standard_normal(y.shape).astype(np.float32)))
    assert all(p.grad is not None and p.grad.dtype == np.float32 for p in model.parameters())
    assert x.grad.shape == shape


def test_lenet5_feature_map_sizes():
    """001: 32 -> conv 28x28x6 -> pool 14x14x6 -> conv 10x10x16 -> pool 5x5x16."""
    model = models.create("lenet5")
    shapes = []
    x = td.zeros(1, 1, 32, 32)
    for layer in model.features:
        x = layer(x)
        shapes.append(x.shape[1:])
    assert shapes[::3] == [(6, 28, 28), (16, 10, 10)]
    assert shapes[2] == (6, 14, 14) and shapes[-1] == (16, 5, 5)


# ---------------------------------------------------------------- training on MNIST
def _mnist(mnist_dir, pad=0):
    images, labels = load_mnist(mnist_dir, train=False)
    if pad:
        images = np.pad(images, ((0, 0), (pad, pad), (pad, pad)))
    return (images[:8000], labels[:8000]), (images[8000:], labels[8000:])


def _train(model, train, test, epochs, lr=0.05):
    opt = optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    scheduler = optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.2)
    return fit(model, opt, train, test, epochs=epochs, batch_size=64, scheduler=scheduler, log=None)


@pytest.mark.slow
def test_lenet5_reaches_97_percent_on_mnist(mnist_dir):
    """LeNet-5 (max pool + ReLU) on MNIST padded to 32x32, SGD momentum 0.9, lr 0.05 /5 after 3 epochs."""
    train, test = _mnist(mnist_dir, pad=2)
    td.manual_seed(0)
    history = _train(models.create("lenet5"), train, test, epochs=6)
    assert history[-1]["test_acc"] >= 0.97, history[-1]
    assert history[-1]["train_loss"] < 0.2 * history[0]["train_loss"]


@pytest.mark.slow
def test_seed_cnn_learns_mnist(mnist_dir):
    """The notes' 9k-weight CNN (000) on 28x28 MNIST."""
    train, test = _mnist(mnist_dir)
    td.manual_seed(0)
    history = _train(models.create("seed_cnn"), train, test, epochs=5)
    assert history[-1]["test_acc"] >= 0.96, history[-1]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
