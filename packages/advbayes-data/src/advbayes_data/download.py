"""Downloading through ``pooch``: mirrors, checksum verification, caching and atomic writes.

Files are fetched with :func:`pooch.retrieve` (the downloader scipy and scikit-image use):
hash-checked, cached (a file already in place with the right digest is not fetched again),
written to a temporary file and moved into place only once complete and verified (an
interrupted download restarts that file and never leaves a truncated one), with a progress
bar. Nothing here runs unless a loader is called with ``download=True``; the tests never reach
the network (``file://`` URLs are copied by a local downloader).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import tarfile
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pooch

from advbayes_data.errors import ChecksumError

__all__ = [
    "DOWNLOAD_TIMEOUT_S",
    "download_url",
    "extract_archive_members",
    "extract_member",
    "socket_timeout",
    "torchvision_download",
]

DOWNLOAD_TIMEOUT_S = 30.0
"""Seconds a connection or a read may stall before a download gives up (not a total limit)."""

_USER_AGENT = "advbayes-data (https://github.com/; dataset loader)"
_CHUNK = 1 << 20


@contextmanager
def socket_timeout(seconds: float) -> Iterator[None]:
    """Set the default socket timeout for the duration of the block, then restore it.

    Used around third-party downloaders (torchvision) that open URLs without a timeout.

    Args:
        seconds: The timeout in seconds, > 0.

    Examples:
        >>> with socket_timeout(30.0):  # doctest: +SKIP
        ...     torchvision.datasets.MNIST(root, download=True)
    """
    if not seconds > 0:
        raise ValueError(f"seconds must be > 0, got {seconds!r}")
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _copy_file_url(url: str, output_file: Any, pooch_obj: Any = None) -> None:
    """A pooch downloader for ``file://`` URLs (local mirrors, and the tests)."""
    source = Path(urllib.request.url2pathname(urllib.parse.urlparse(url).path))
    with open(source, "rb") as src:
        if isinstance(output_file, str | os.PathLike):
            with open(output_file, "wb") as fh:
                shutil.copyfileobj(src, fh, _CHUNK)
        else:
            shutil.copyfileobj(src, output_file, _CHUNK)


def _downloader(url: str, timeout: float, progress: bool) -> Callable[..., None]:
    if urllib.parse.urlparse(url).scheme == "file":
        return _copy_file_url
    bar = progress and importlib.util.find_spec("tqdm") is not None  # pooch's bar needs tqdm
    return pooch.HTTPDownloader(
        progressbar=bar, timeout=timeout, headers={"User-Agent": _USER_AGENT}
    )


def download_url(
    urls: str | Sequence[str],
    dest: str | os.PathLike[str],
    *,
    sha256: str | None = None,
    md5: str | None = None,
    timeout: float = DOWNLOAD_TIMEOUT_S,
    progress: bool = True,
) -> Path:
    """Download a file with ``pooch``, trying mirrors in order, verifying and caching it.

    The bytes go to a temporary file beside ``dest`` and are moved to ``dest`` only once
    complete and verified, so an interrupted download never leaves a truncated file under the
    real name; a ``dest`` already present with the expected digest is not downloaded again
    (without a digest, any present ``dest`` is kept).

    Args:
        urls: One URL or several mirrors of the same file, tried in order.
        dest: The file to write (its directory is created).
        sha256: The expected sha256 hex digest, when published.
        md5: The expected md5 hex digest, when published (checked when ``sha256`` is None).
        timeout: Seconds a connection or a read may stall (default ``DOWNLOAD_TIMEOUT_S``).
        progress: Show pooch's progress bar (when ``tqdm`` is installed).

    Returns:
        ``dest`` as a Path.

    Raises:
        ChecksumError: Every mirror answered, and at least one answered with wrong bytes.
        OSError: No mirror could be reached; the message lists each URL and its error.
        ValueError: ``urls`` is empty or ``timeout`` is not positive.

    Examples:
        >>> download_url(  # doctest: +SKIP
        ...     "https://archive.ics.uci.edu/ml/machine-learning-databases/wine-quality/"
        ...     "winequality-red.csv",
        ...     "data/uci/winequality-red.csv",
        ...     sha256="4a402cf041b025d4566d954c3b9ba8635a3a8a01e039005d97d6a710278cf05e",
        ... )
    """
    url_list = [urls] if isinstance(urls, str) else list(urls)
    if not url_list:
        raise ValueError("urls must name at least one URL")
    if not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    algorithm, digest = ("sha256", sha256) if sha256 is not None else ("md5", md5)
    known = None if digest is None else f"{algorithm}:{digest.lower()}"
    errors: list[str] = []
    checksum_failed = False
    for url in url_list:
        try:
            pooch.retrieve(
                url,
                known_hash=known,
                fname=dest.name,
                path=dest.parent,
                downloader=_downloader(url, timeout, progress),
            )
        except ValueError as err:
            if known is None or "hash" not in str(err).lower():
                errors.append(f"{url}: {type(err).__name__}: {err}")
                continue
            checksum_failed = True
            errors.append(f"{url}: {algorithm} mismatch: expected {digest} ({err})")
        except OSError as err:  # requests' errors are OSErrors too
            errors.append(f"{url}: {type(err).__name__}: {err}")
        else:
            return dest
    detail = "\n  ".join(errors)
    message = f"could not download {dest.name}; tried:\n  {detail}"
    if checksum_failed:
        raise ChecksumError(message)
    raise OSError(message)


def extract_member(
    archive: str | os.PathLike[str], member: str, dest: str | os.PathLike[str]
) -> Path:
    """Copy one regular file out of a tar archive (gzip or plain) to ``dest``, atomically.

    Only the named member's bytes are read, so a hostile archive cannot write elsewhere.

    Args:
        archive: The ``.tar``/``.tgz`` file.
        member: The member's path inside the archive, e.g.
            ``"CaliforniaHousing/cal_housing.data"``.
        dest: The file to write.

    Returns:
        ``dest`` as a Path.

    Raises:
        ValueError: The archive has no regular file named ``member``, or is not a tar archive.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    try:
        with tarfile.open(archive, "r:*") as tar:
            try:
                info = tar.getmember(member)
            except KeyError:
                raise ValueError(f"archive {archive} has no member {member!r}") from None
            source = tar.extractfile(info) if info.isfile() else None
            if source is None:
                raise ValueError(f"archive member {member!r} of {archive} is not a regular file")
            with source, open(part, "wb") as fh:
                shutil.copyfileobj(source, fh, _CHUNK)
        os.replace(part, dest)
    except tarfile.TarError as err:
        raise ValueError(f"{archive} is not a readable tar archive: {err}") from err
    finally:
        part.unlink(missing_ok=True)
    return dest


def extract_archive_members(
    archive: str | os.PathLike[str], members: Sequence[str], root: str | os.PathLike[str]
) -> list[Path]:
    """Copy ``members`` of a tar archive to ``root/<member>`` (see :func:`extract_member`).

    Returns:
        The written paths, in the order of ``members``.
    """
    root = Path(root)
    return [extract_member(archive, m, root / m) for m in members]


def torchvision_download(class_name: str, root: str | os.PathLike[str]) -> None:
    """Download a torchvision dataset (its mirrors and md5s) under ``root``, with a timeout.

    ``MNIST`` and ``FashionMNIST`` land in ``root/<class_name>/raw``, ``CIFAR10`` in
    ``root/cifar-10-batches-py``. torchvision reports its own progress while downloading.

    Args:
        class_name: ``"MNIST"``, ``"FashionMNIST"`` or ``"CIFAR10"``.
        root: The download root.

    Raises:
        ImportError: torchvision is not installed (``pip install 'advbayes-data[vision]'``).
        RuntimeError: torchvision could not download or verify the files.
        OSError: The network failed.
    """
    if class_name not in ("MNIST", "FashionMNIST", "CIFAR10"):
        raise ValueError(
            f"class_name must be 'MNIST', 'FashionMNIST' or 'CIFAR10', got {class_name!r}"
        )
    try:
        from torchvision import datasets
    except ImportError as err:
        raise ImportError(
            "torchvision is needed to download image datasets: pip install 'advbayes-data[vision]'"
        ) from err
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    with socket_timeout(DOWNLOAD_TIMEOUT_S):
        getattr(datasets, class_name)(str(root), train=True, download=True)
