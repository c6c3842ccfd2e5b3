"""LeNet-5 and the notes' small MNIST CNNs (seeds 000 and 001).

``lenet5``   LeCun et al. 1998 as described in the notes (001): a 32x32x1 input,
             conv 6@5x5 (no padding) -> 28x28x6, 2x2 pool -> 14x14x6,
             conv 16@5x5 -> 10x10x16, 2x2 pool -> 5x5x16,
             fc 400->120, fc 120->84, fc 84->10.
             Parameters: 156 + 2,416 + 48,120 + 10,164 + 850 = 61,706.
             The modern default is max pooling + ReLU; ``pool='avg',
             activation='tanh'`` gives the original's average pooling and tanh
             (without its trainable subsampling coefficients and partial C3
             connection table, which the notes do not use either).
             MNIST's 28x28 digits are zero-padded by 2 to 32x32 (or pass
             ``in_size=28`` and the first conv pads by 2 itself).
``lenet_tf`` the notes' TensorFlow variant (mnist_inference.py in 001) on a
             28x28x1 input: conv 32@5x5 'SAME' + ReLU, 2x2 max pool ->
             14x14x32, conv 64@5x5 'SAME' + ReLU, 2x2 max pool -> 7x7x64,
             fc 3136->512 + ReLU, dropout, fc 512->10.
``seed_cnn`` the notes' PyTorch MNIST CNN (000): conv(1,8,3x3,p1) -> relu ->
             maxpool2 -> conv(8,16,3x3,p1) -> relu -> maxpool2 -> fc(7*7*16 -> 10);
             (3*3)*8 + (3*3*8)*16 + 7*7*16*10 = 9,064 weights without biases.
"""
import tinydl.nn as nn

from models import register

__all__ = ["LeNet5", "LeNetTF", "SeedCNN", "lenet5", "lenet_tf", "seed_cnn"]


def _activation(name):
    if name == "relu":
        return nn.ReLU()
    if name == "tanh":
        return nn.Tanh()
    if name == "sigmoid":
        return nn.Sigmoid()
    raise ValueError(f"activation must be 'relu', 'tanh' or 'sigmoid', got {name!r}")


def _pool(name):
    if name == "max":
        return nn.MaxPool2d(2)
    if name == "avg":
        return nn.AvgPool2d(2)
    raise ValueError(f"pool must be 'max' or 'avg', got {name!r}")


class LeNet5(nn.Module):
    """features: C1 conv-act-S2 pool-C3 conv-act-S4 pool; classifier: F5-act-F6-act-output."""

    def __init__(self, num_classes=10, in_channels=1, in_size=32, activation="relu", pool="max"):
        super().__init__()
        if in_size not in (28, 32):
            raise ValueError(f"LeNet5: in_size must be 32 (the paper's) or 28 (padded by the first conv), "
                             f"got {in_size}")
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5, padding=(32 - in_size) // 2), _activation(activation), _pool(pool),
            nn.Conv2d(6, 16, 5), _activation(activation), _pool(pool),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * 5 * 5, 120), _activation(activation),
            nn.Linear(120, 84), _activation(activation),
            nn.Linear(84, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


class LeNetTF(nn.Module):
    """The notes' TensorFlow LeNet variant: two 5x5 'SAME' convs (32, 64) with 2x2 max
    pools, fc 512, dropout (p=0.5 in training, as the notes' ``tf.nn.dropout(fc1, 0.5)``), fc."""

    def __init__(self, num_classes=10, in_channels=1, dropout=0.5):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, 5, padding="same"), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 5, padding="same"), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(7 * 7 * 64, 512), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(512, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


class SeedCNN(nn.Module):
    """The notes' small CNN for 28x28 MNIST (see the module docstring)."""

    def __init__(self, num_classes=10, in_channels=1, bias=True):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 8, 3, padding=1, bias=bias), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1, bias=bias), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(7 * 7 * 16, num_classes, bias=bias))

    def forward(self, x):
        return self.classifier(self.features(x))


@register
def lenet5(num_classes=10, in_channels=1, in_size=32, activation="relu", pool="max"):
    """LeNet-5 (61,706 parameters); ``activation='tanh', pool='avg'`` for the 1998 original."""
    return LeNet5(num_classes, in_channels, in_size, activation, pool)


@register
def lenet_tf(num_classes=10, in_channels=1, dropout=0.5):
    """The notes' TensorFlow LeNet variant (28x28 input, 32/64 5x5 SAME convs, fc 512, dropout)."""
    return LeNetTF(num_classes, in_channels, dropout)


@register
def seed_cnn(num_classes=10, in_channels=1, bias=True):
    """The notes' small MNIST CNN: 9,064 weights without biases (``bias=False``)."""
    return SeedCNN(num_classes, in_channels, bias)
