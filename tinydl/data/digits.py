"""scikit-learn's bundled 8x8 handwritten digits, scaled to MNIST's 28x28 frame.

It ships with scikit-learn (1,797 images), so a first training run needs no
network. Each 8x8 image (values 0..16) is enlarged to 20x20 and centred in a
28x28 frame, as MNIST centres its digits in a 20x20 box.
"""
import numpy as np


def load_digits_28():
    """(images uint8 (1797, 28, 28), labels int64 (1797,))."""
    try:
        import cv2
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise ImportError("the offline digits need scikit-learn and OpenCV: "
                          "pip install 'tinydl[train]'") from exc
    digits = load_digits()
    small = (digits.images * (255.0 / 16.0)).astype(np.float32)
    images = np.zeros((len(small), 28, 28), np.uint8)
    for i, img in enumerate(small):
        images[i, 4:24, 4:24] = np.clip(cv2.resize(img, (20, 20), interpolation=cv2.INTER_LINEAR), 0, 255)
    return images, digits.target.astype(np.int64)
