"""CIFAR-10 from its python pickles (``cifar-10-batches-py``), read with a restricted unpickler.

The batches are pickles: :func:`read_cifar_batch` only lets them rebuild numpy arrays and
plain Python containers, so a tampered file cannot run code, and ``verify`` (the default)
checks each batch's md5 (torchvision's) before it is read.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from advbayes_data.classification_data import ClassificationData
from advbayes_data.download import download_url, extract_archive_members
from advbayes_data.sources import DatasetSource, FileSpec, fetch

__all__ = ["CIFAR10_CLASSES", "CIFAR10_SOURCE", "load_cifar10", "read_cifar_batch"]

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
"""CIFAR-10's class names, indexed by label (as in ``batches.meta``)."""

_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
_ARCHIVE = "cifar-10-python.tar.gz"
_ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"  # torchvision's tgz_md5
_BATCH_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}

CIFAR10_SOURCE = DatasetSource(
    name="CIFAR-10",
    layouts=("cifar-10-batches-py",),
    files=tuple(
        FileSpec(
            names=(name,),
            urls=(_URL,),
            digests={name: {"md5": md5}},
            archive_member=f"cifar-10-batches-py/{name}",
        )
        for name, md5 in _BATCH_MD5.items()
    ),
    how_to_download=(
        "that fetches cifar-10-python.tar.gz with pooch (md5-checked, cached) into data_dir "
        "or the user cache and copies out its batches."
    ),
)
"""CIFAR-10's six batch files (from ``cifar-10-python.tar.gz``), their layout and md5s."""

_ARRAY = np.zeros(1)
# The reconstructors numpy's pickles name (protocol <= 4 and protocol 5), taken from numpy
# itself rather than from its private modules.
_NUMPY_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}
for _module in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _NUMPY_GLOBALS[(_module, "_reconstruct")] = _ARRAY.__reduce__()[0]
for _module in ("numpy.core.numeric", "numpy._core.numeric"):
    _NUMPY_GLOBALS[(_module, "_frombuffer")] = _ARRAY.__reduce_ex__(5)[0]


class _ArrayUnpickler(pickle.Unpickler):
    """An unpickler that can only rebuild numpy arrays and builtin containers."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _NUMPY_GLOBALS:
            return _NUMPY_GLOBALS[(module, name)]
        if (module, name) == ("_codecs", "encode"):  # protocol-2 pickles of bytes
            import codecs

            return codecs.encode
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR batch")


def read_cifar_batch(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 python batch (``data_batch_k`` or ``test_batch``).

    Args:
        path: The pickle: a dict with ``b"data"`` (``(N, 3072)`` uint8, channel-major rows)
            and ``b"labels"`` (``N`` ints in ``[0, 9]``).

    Returns:
        ``(images, labels)``: ``(N, 3, 32, 32)`` uint8 and ``(N,)`` int64.

    Raises:
        ValueError: The file is not such a pickle (wrong keys, shapes, types or labels), or
            it asks to rebuild anything but numpy arrays.

    Examples:
        >>> images, labels = read_cifar_batch("cifar-10-batches-py/test_batch")  # doctest: +SKIP
        >>> images.shape  # doctest: +SKIP
        (10000, 3, 32, 32)
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            batch = _ArrayUnpickler(fh, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as err:
        raise ValueError(f"{path}: not a CIFAR-10 batch pickle: {err}") from err
    if not isinstance(batch, dict):
        raise ValueError(f"{path}: expected a pickled dict, got {type(batch).__name__}")
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in batch or "labels" not in batch:
        raise ValueError(f"{path}: expected keys b'data' and b'labels', got {sorted(batch)}")
    data = np.asarray(batch["data"])
    labels = np.asarray(batch["labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ValueError(f"{path}: expected (N, 3072) uint8 data, got {data.shape} of {data.dtype}")
    if labels.ndim != 1 or labels.shape[0] != data.shape[0]:
        raise ValueError(f"{path}: expected {data.shape[0]} labels, got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer) or (
        labels.size and (labels.min() < 0 or labels.max() > 9)
    ):
        raise ValueError(f"{path}: labels must be integers in [0, 9]")
    return data.reshape(-1, 3, 32, 32).copy(), labels.astype(np.int64)


def _download(root: Path) -> None:
    """Fetch the archive with pooch (md5-checked, cached) and copy out the six batches."""
    archive = download_url(_URL, Path(root) / _ARCHIVE, md5=_ARCHIVE_MD5)
    members = [f"cifar-10-batches-py/{name}" for name in _BATCH_MD5]
    extract_archive_members(archive, members, root)


def load_cifar10(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    download: bool = False,
    verify: bool = True,
) -> ClassificationData:
    """CIFAR-10 (Krizhevsky 2009): 50,000 training and 10,000 test colour images.

    Args:
        data_dir: A directory searched first (the scripts' ``--data-dir``), then
            ``$ADVBAYES_DATA``, then the user cache; each must hold ``cifar-10-batches-py/``
            (torchvision's layout: the extracted ``cifar-10-python.tar.gz``).
        download: When nothing local is found, download the archive (163 MB) with pooch
            (md5-checked, cached, with progress) into ``data_dir`` (or the user cache) and
            copy out its batches. Off by default.
        verify: Check each batch's md5 before reading it (recommended: the batches are
            pickles).

    Returns:
        ``x_train`` ``(50000, 3, 32, 32)`` and ``x_test`` ``(10000, 3, 32, 32)`` float32 in
        ``[0, 1]`` (pixel / 255); int64 labels in ``[0, 9]`` (names in ``CIFAR10_CLASSES``).

    Raises:
        DatasetNotFoundError: No local copy, and no download (disabled or failed).
        ChecksumError: A batch differs from its published md5.
        ValueError: A batch is not a valid CIFAR-10 pickle.

    Examples:
        >>> data = load_cifar10(download=True)  # doctest: +SKIP
    """
    paths = fetch(
        CIFAR10_SOURCE,
        data_dir,
        download=download,
        verify=verify,
        downloader=_download,
    )
    batches = [read_cifar_batch(p) for p in paths]
    train, test = batches[:-1], batches[-1]

    def as_tensors(images: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(images).to(torch.float32).div_(255.0), torch.from_numpy(labels)

    x_train, y_train = as_tensors(
        np.concatenate([b[0] for b in train]), np.concatenate([b[1] for b in train])
    )
    x_test, y_test = as_tensors(*test)
    return ClassificationData("cifar10", x_train, y_train, x_test, y_test, CIFAR10_CLASSES)
