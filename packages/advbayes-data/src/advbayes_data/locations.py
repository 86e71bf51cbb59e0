"""Where datasets are looked for: the ``data_dir`` argument, ``$ADVBAYES_DATA``, the user cache.

Every loader searches these roots in this order and uses the first one that holds all of a
dataset's files (in one of the dataset's layouts, e.g. ``<root>/MNIST/raw``):

1. the ``data_dir`` argument (the bench scripts' ``--data-dir``), when given;
2. the directory named by the environment variable ``ADVBAYES_DATA``, when set;
3. the user cache, ``$XDG_CACHE_HOME/advbayes`` when ``XDG_CACHE_HOME`` is set, else
   ``~/.cache/advbayes``.

Downloads go to the ``data_dir`` argument when one is given, else to the user cache (never to
``$ADVBAYES_DATA``, which may be a shared read-only copy).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ENV_VAR",
    "ORIGIN_ARGUMENT",
    "ORIGIN_CACHE",
    "ORIGIN_ENV",
    "DataRoot",
    "cache_dir",
    "data_roots",
    "download_root",
]

ENV_VAR = "ADVBAYES_DATA"
"""The environment variable naming a local data directory (searched after ``data_dir``)."""

ORIGIN_ARGUMENT = "data_dir argument (the scripts' --data-dir)"
ORIGIN_ENV = f"${ENV_VAR}"
ORIGIN_CACHE = "user cache"


@dataclass(frozen=True)
class DataRoot:
    """One directory searched for datasets.

    Attributes:
        path: The directory (it may not exist).
        origin: Where it came from: ``ORIGIN_ARGUMENT``, ``ORIGIN_ENV`` or ``ORIGIN_CACHE``.
    """

    path: Path
    origin: str


def cache_dir() -> Path:
    """The user cache for downloaded datasets.

    Returns:
        ``$XDG_CACHE_HOME/advbayes`` when ``XDG_CACHE_HOME`` is set and non-empty, else
        ``~/.cache/advbayes``. The directory is not created.
    """
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "advbayes"


def _as_path(data_dir: str | os.PathLike[str]) -> Path:
    if not isinstance(data_dir, (str, os.PathLike)):
        raise TypeError(
            f"data_dir must be a str or os.PathLike (a directory) or None, "
            f"got {type(data_dir).__name__}"
        )
    path = Path(data_dir).expanduser()
    if str(data_dir).strip() == "":
        raise ValueError("data_dir must name a directory, got an empty string")
    if path.exists() and not path.is_dir():
        raise ValueError(f"data_dir must be a directory, got the file {path}")
    return path


def data_roots(data_dir: str | os.PathLike[str] | None = None) -> list[DataRoot]:
    """The directories searched for datasets, in order (see the module docstring).

    Args:
        data_dir: An explicit directory (the scripts' ``--data-dir``), searched first.

    Returns:
        ``data_dir`` (when given), ``$ADVBAYES_DATA`` (when set and non-empty), the user cache;
        a directory listed twice is kept once, at its first place.

    Raises:
        TypeError: ``data_dir`` is not a str, os.PathLike or None.
        ValueError: ``data_dir`` is empty or names a file.

    Examples:
        >>> [r.origin for r in data_roots("data")]  # doctest: +SKIP
        ["data_dir argument (the scripts' --data-dir)", '$ADVBAYES_DATA', 'user cache']
    """
    roots: list[DataRoot] = []
    if data_dir is not None:
        roots.append(DataRoot(_as_path(data_dir), ORIGIN_ARGUMENT))
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        roots.append(DataRoot(Path(env).expanduser(), ORIGIN_ENV))
    roots.append(DataRoot(cache_dir(), ORIGIN_CACHE))
    unique: list[DataRoot] = []
    seen: set[Path] = set()
    for root in roots:
        key = root.path.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(root)
    return unique


def download_root(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where a download is written: ``data_dir`` when given, else the user cache.

    Raises:
        TypeError: ``data_dir`` is not a str, os.PathLike or None.
        ValueError: ``data_dir`` is empty or names a file.
    """
    return _as_path(data_dir) if data_dir is not None else cache_dir()
