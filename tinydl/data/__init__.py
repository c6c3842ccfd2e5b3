"""Datasets and loading."""
from .mnist import read_idx, load_mnist
from .digits import load_digits_28
