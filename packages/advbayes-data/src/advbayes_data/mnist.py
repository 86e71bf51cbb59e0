"""MNIST and FashionMNIST from their IDX files (parsed here: torchvision is only the downloader).

Files are looked for under ``<root>/MNIST/raw`` or ``<root>/MNIST`` (``FashionMNIST/...`` for
FashionMNIST), gzip-compressed or not, in the roots of
:func:`advbayes_data.locations.data_roots`; that is torchvision's layout, so a torchvision
download directory works as ``data_dir``.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import numpy as np
import torch

from advbayes_data.classification_data import ClassificationData
from advbayes_data.download import torchvision_download
from advbayes_data.errors import ChecksumError
from advbayes_data.idx import read_idx
from advbayes_data.sources import DatasetSource, FileSpec, fetch

__all__ = [
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_SOURCE",
    "MNIST_CLASSES",
    "MNIST_SOURCE",
    "load_fashion_mnist",
    "load_mnist",
]

MNIST_CLASSES = tuple(str(d) for d in range(10))
"""MNIST's class names: the digits ``"0"`` to ``"9"``."""

FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
"""FashionMNIST's class names, indexed by label."""

PUBLISHED_SIZES = (60_000, 10_000)
"""Training and test images of MNIST and FashionMNIST, checked when ``verify=True``."""

_STEMS = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

# torchvision's mirrors; digests: sha256 and md5 of the .gz files (the md5s are torchvision's)
# and md5 of the decompressed files (the official ones).
_MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
_MNIST_DIGESTS = {
    "train-images-idx3-ubyte": (
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "6bbc9ace898e44ae57da46a324031adb",
    ),
    "train-labels-idx1-ubyte": (
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "d53e105ee54ea40749a09fcbcd1e9432",
        "a25bea736e30d166cdddb491f175f624",
    ),
    "t10k-images-idx3-ubyte": (
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "9fb629c4189551a2d022fa330f9573f3",
        "2646ac647ad5339dbf082846283269ea",
    ),
    "t10k-labels-idx1-ubyte": (
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        "ec29112dd5afa0611ce80d1b7f02629c",
        "27ae3e4e09519cfbb04c329615203637",
    ),
}
_FASHION_MIRRORS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
_FASHION_GZ_MD5 = {
    "train-images-idx3-ubyte": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte": "bb300cfdad3c16e7a12a480ee83cd310",
}


def _mnist_spec(stem: str) -> FileSpec:
    gz_sha256, gz_md5, raw_md5 = _MNIST_DIGESTS[stem]
    return FileSpec(
        names=(f"{stem}.gz", stem),
        urls=tuple(f"{mirror}{stem}.gz" for mirror in _MNIST_MIRRORS),
        digests={f"{stem}.gz": {"sha256": gz_sha256, "md5": gz_md5}, stem: {"md5": raw_md5}},
    )


def _fashion_spec(stem: str) -> FileSpec:
    return FileSpec(
        names=(f"{stem}.gz", stem),
        urls=tuple(f"{mirror}{stem}.gz" for mirror in _FASHION_MIRRORS),
        digests={f"{stem}.gz": {"md5": _FASHION_GZ_MD5[stem]}},
    )


MNIST_SOURCE = DatasetSource(
    name="MNIST",
    layouts=("MNIST/raw", "MNIST"),
    files=tuple(_mnist_spec(stem) for stem in _STEMS),
    how_to_download=(
        "that runs torchvision.datasets.MNIST(data_dir or the user cache, download=True)."
    ),
)
"""MNIST's four IDX files, their layouts and digests."""

FASHION_MNIST_SOURCE = DatasetSource(
    name="FashionMNIST",
    layouts=("FashionMNIST/raw", "FashionMNIST"),
    files=tuple(_fashion_spec(stem) for stem in _STEMS),
    how_to_download=(
        "that runs torchvision.datasets.FashionMNIST(data_dir or the user cache, download=True)."
    ),
)
"""FashionMNIST's four IDX files, their layouts and digests."""


def _images(array: np.ndarray, path: Path) -> torch.Tensor:
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[1:] != (28, 28):
        raise ValueError(
            f"{path}: expected (N, 28, 28) uint8 images, got {array.shape} of {array.dtype}"
        )
    return torch.from_numpy(array).unsqueeze(1).to(torch.float32).div_(255.0)


def _labels(array: np.ndarray, path: Path, count: int) -> torch.Tensor:
    if array.dtype != np.uint8 or array.ndim != 1 or array.shape[0] != count:
        raise ValueError(
            f"{path}: expected ({count},) uint8 labels (one per image), got {array.shape} of "
            f"{array.dtype}"
        )
    if count and int(array.max()) > 9:
        raise ValueError(f"{path}: labels must lie in [0, 9], found {int(array.max())}")
    return torch.from_numpy(array.astype(np.int64))


def _load_idx_dataset(
    source: DatasetSource,
    torchvision_class: str,
    name: str,
    classes: tuple[str, ...],
    data_dir: str | os.PathLike[str] | None,
    download: bool,
    verify: bool,
) -> ClassificationData:
    paths = fetch(
        source,
        data_dir,
        download=download,
        verify=verify,
        downloader=partial(torchvision_download, torchvision_class),
    )
    train_images, train_labels, test_images, test_labels = paths
    x_train = _images(read_idx(train_images), train_images)
    x_test = _images(read_idx(test_images), test_images)
    y_train = _labels(read_idx(train_labels), train_labels, x_train.shape[0])
    y_test = _labels(read_idx(test_labels), test_labels, x_test.shape[0])
    if verify:  # also where no digest is known (uncompressed FashionMNIST files)
        for what, path, got, want in (
            ("training", train_images, x_train.shape[0], PUBLISHED_SIZES[0]),
            ("test", test_images, x_test.shape[0], PUBLISHED_SIZES[1]),
        ):
            if got != want:
                raise ChecksumError(
                    f"{path}: {got} {what} images, the published {source.name} has {want} "
                    "(verify=False to load other IDX files)"
                )
    return ClassificationData(name, x_train, y_train, x_test, y_test, classes)


def load_mnist(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    download: bool = False,
    verify: bool = True,
) -> ClassificationData:
    """MNIST (LeCun et al. 1998): 60,000 training and 10,000 test digits.

    Args:
        data_dir: A directory searched first (the scripts' ``--data-dir``), then
            ``$ADVBAYES_DATA``, then the user cache; each in the layouts ``MNIST/raw`` and
            ``MNIST``, with ``.gz`` or uncompressed IDX files.
        download: When nothing local is found, download through torchvision into
            ``data_dir`` (or the user cache). Off by default.
        verify: Check the files against the published digests (sha256 of the ``.gz`` files,
            md5 of the uncompressed ones).

    Returns:
        ``x_train`` ``(60000, 1, 28, 28)`` and ``x_test`` ``(10000, 1, 28, 28)`` float32 in
        ``[0, 1]`` (pixel / 255), ``y_train``/``y_test`` int64 in ``[0, 9]``.

    Raises:
        DatasetNotFoundError: No local copy, and no download (disabled or failed); the message
            says which files to get from where and where to put them.
        ChecksumError: A file differs from its published digest.
        ValueError: A file is not a valid IDX file of the expected shape.

    Examples:
        >>> data = load_mnist("~/data")  # doctest: +SKIP
        >>> data.x_train.shape  # doctest: +SKIP
        torch.Size([60000, 1, 28, 28])
    """
    return _load_idx_dataset(
        MNIST_SOURCE, "MNIST", "mnist", MNIST_CLASSES, data_dir, download, verify
    )


def load_fashion_mnist(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    download: bool = False,
    verify: bool = True,
) -> ClassificationData:
    """FashionMNIST (Xiao et al. 2017): 60,000 training and 10,000 test clothing images.

    Used for the selective-prediction experiment (paper, Section 4.2, 'Downstream Task: Selective
    Accuracy'). Same layout rules as :func:`load_mnist`, under ``FashionMNIST/raw`` or
    ``FashionMNIST``; ``verify`` checks the md5 of the ``.gz`` files (torchvision's; none is
    published for the uncompressed ones, so for those it checks the image counts, 60,000 and
    10,000).

    Returns:
        ``x_train`` ``(60000, 1, 28, 28)``, ``x_test`` ``(10000, 1, 28, 28)`` float32 in
        ``[0, 1]``; int64 labels in ``[0, 9]`` (names in ``FASHION_MNIST_CLASSES``).

    Raises:
        DatasetNotFoundError: No local copy, and no download (disabled or failed).
        ChecksumError: A file differs from its published digest.
        ValueError: A file is not a valid IDX file of the expected shape.

    Examples:
        >>> data = load_fashion_mnist(download=True)  # doctest: +SKIP
    """
    return _load_idx_dataset(
        FASHION_MNIST_SOURCE,
        "FashionMNIST",
        "fashion-mnist",
        FASHION_MNIST_CLASSES,
        data_dir,
        download,
        verify,
    )
