"""Multi-layer perceptrons: the notes' first MNIST network (seed 000).

The notes' fully connected net is 28*28 -> 28*28 -> 10:
784*784 + 784*10 = 622,496 weights (plus 794 biases).
"""
import tinydl.nn as nn

from models import register


class MLP(nn.Module):
    """Flatten, then Linear-ReLU for each hidden width, then a Linear classifier."""

    def __init__(self, in_features=784, hidden=(784,), num_classes=10, bias=True):
        super().__init__()
        layers = [nn.Flatten()]
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h, bias=bias), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, num_classes, bias=bias))
        self.layers = nn.Sequential(*layers)

    def forward(self, x):
        return self.layers(x)


@register
def mlp(num_classes=10, in_features=784, hidden=784, bias=True):
    """The notes' MLP 784-784-10 (``hidden`` may be an int or a tuple of widths)."""
    hidden = (hidden,) if isinstance(hidden, int) else tuple(hidden)
    return MLP(in_features, hidden, num_classes, bias)
