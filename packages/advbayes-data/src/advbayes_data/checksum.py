"""File digests (sha256, md5) and their verification against published values."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from advbayes_data.errors import ChecksumError

__all__ = ["file_digest", "sha256sum", "verify_checksum"]

_ALGORITHMS = ("sha256", "md5")
_CHUNK = 1 << 20


def file_digest(path: str | os.PathLike[str], algorithm: str = "sha256") -> str:
    """The hex digest of a file's bytes, read in 1 MiB chunks.

    Args:
        path: The file.
        algorithm: ``"sha256"`` (default) or ``"md5"``.

    Returns:
        The lower-case hex digest (64 characters for sha256, 32 for md5).

    Raises:
        ValueError: ``algorithm`` is not one of ``"sha256"``, ``"md5"``.
        FileNotFoundError: ``path`` does not exist.

    Examples:
        >>> file_digest("train-images-idx3-ubyte.gz", "md5")  # doctest: +SKIP
        'f68b3c2dcbeaaa9fbdd348bbdeb94873'
    """
    if algorithm not in _ALGORITHMS:
        raise ValueError(f"algorithm must be one of {_ALGORITHMS}, got {algorithm!r}")
    digest = hashlib.new(algorithm, usedforsecurity=algorithm != "md5")
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sha256sum(path: str | os.PathLike[str]) -> str:
    """The sha256 hex digest of a file (``sha256sum`` on the command line).

    Examples:
        >>> sha256sum("uci/winequality-red.csv")  # doctest: +SKIP
        '4a402cf041b025d4566d954c3b9ba8635a3a8a01e039005d97d6a710278cf05e'
    """
    return file_digest(path, "sha256")


def verify_checksum(path: str | os.PathLike[str], expected: str, algorithm: str = "sha256") -> None:
    """Check a file against a published digest.

    Args:
        path: The file.
        expected: The published hex digest (case-insensitive).
        algorithm: ``"sha256"`` (default) or ``"md5"``.

    Raises:
        ChecksumError: The digests differ; the message names the file, the expected and the
            actual digest.
        ValueError: ``expected`` is not a hex digest of the algorithm's length.

    Examples:
        >>> verify_checksum("uci/cal_housing.data", "a2b44dcc...")  # doctest: +SKIP
    """
    lengths = {"sha256": 64, "md5": 32}
    if algorithm not in lengths:
        raise ValueError(f"algorithm must be one of {_ALGORITHMS}, got {algorithm!r}")
    expected = expected.strip().lower()
    if len(expected) != lengths[algorithm] or any(c not in "0123456789abcdef" for c in expected):
        raise ValueError(
            f"expected must be a {lengths[algorithm]}-character hex {algorithm} digest, "
            f"got {expected!r}"
        )
    actual = file_digest(path, algorithm)
    if actual != expected:
        raise ChecksumError(
            f"{Path(path)}: {algorithm} mismatch: expected {expected}, got {actual}. The file is "
            "corrupt, truncated or a different version: delete it and download it again, or pass "
            "verify=False to skip the check."
        )
