"""Data: datasets, transforms and the DataLoader, with PyTorch/torchvision's names.

    import tinydl.data as data
    import tinydl.data.transforms as T

    train = data.MNIST(train=True, transform=T.ToTensor(), download=True)
    loader = data.DataLoader(train, batch_size=64, shuffle=True, prefetch=2)
    for images, labels in loader:          # (64, 1, 28, 28) float32, (64,) int64
        ...

OpenCV is needed only by what decodes or draws images (ImageFolder, CUB200,
SyntheticShapes, Digits, Resize and the other warps); ``import tinydl`` works
without it.
"""
from .mnist import read_idx, load_mnist
from .digits import load_digits_28
from .dataset import (Dataset, IterableDataset, TensorDataset, StackDataset, Subset, ConcatDataset, ChainDataset,
                      random_split)
from .dataloader import (DataLoader, Sampler, SequentialSampler, RandomSampler, SubsetRandomSampler,
                         WeightedRandomSampler, BatchSampler, default_collate, default_convert, get_worker_info,
                         WorkerInfo)
from .distributed import DistributedSampler
from .datasets import (data_home, download_url, DownloadError, ChecksumError, imread, read_cifar_binary,
                       MNIST, FashionMNIST, CIFAR10, CIFAR100, ImageFolder, CUB200, Digits, IMG_EXTENSIONS)
from .synthetic import (SyntheticShapes, PRIMITIVES, keypoints_to_heatmap, keypoints_to_label,
                        label_to_heatmap, SyntheticContours, CONTOUR_SHAPES, resample_contour, box_octagon,
                        box_diamond, contour_to_mask, contour_iou)
from .shapes_detection import SyntheticDetection, collate_detection, DETECTION_SHAPES
from .shapes_segmentation import SyntheticSegmentation, colorize_mask, SEGMENTATION_PALETTE, SHAPE_CLASSES
from . import transforms

__all__ = [
    "read_idx", "load_mnist", "load_digits_28",
    "Dataset", "IterableDataset", "TensorDataset", "StackDataset", "Subset", "ConcatDataset", "ChainDataset",
    "random_split",
    "DataLoader", "Sampler", "SequentialSampler", "RandomSampler", "SubsetRandomSampler", "BatchSampler",
    "WeightedRandomSampler", "DistributedSampler",
    "default_collate", "default_convert", "get_worker_info", "WorkerInfo",
    "data_home", "download_url", "DownloadError", "ChecksumError", "imread", "read_cifar_binary",
    "MNIST", "FashionMNIST", "CIFAR10", "CIFAR100", "ImageFolder", "CUB200", "Digits", "IMG_EXTENSIONS",
    "SyntheticShapes", "PRIMITIVES", "keypoints_to_heatmap", "keypoints_to_label", "label_to_heatmap",
    "SyntheticContours", "CONTOUR_SHAPES", "resample_contour", "box_octagon", "box_diamond", "contour_to_mask",
    "contour_iou", "SyntheticDetection", "collate_detection", "DETECTION_SHAPES",
    "SyntheticSegmentation", "colorize_mask", "SEGMENTATION_PALETTE", "SHAPE_CLASSES",
    "transforms",
]
