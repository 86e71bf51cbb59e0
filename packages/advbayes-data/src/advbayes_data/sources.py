"""A dataset's files: their names, layouts, origins and digests; finding them, or fetching them.

A :class:`DatasetSource` lists the files a dataset needs (:class:`FileSpec`), the layouts they
may sit in under a data root (e.g. ``MNIST/raw``), and how to download them. :func:`fetch`
searches the roots of :func:`advbayes_data.locations.data_roots` in order, downloads when
allowed and nothing local was found, and otherwise raises
:class:`~advbayes_data.errors.DatasetNotFoundError` with a message saying what to download from
where and where to put it.
"""

from __future__ import annotations

import os
import urllib.error
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from advbayes_data.checksum import verify_checksum
from advbayes_data.errors import ChecksumError, DatasetNotFoundError
from advbayes_data.locations import (
    ENV_VAR,
    ORIGIN_ARGUMENT,
    ORIGIN_CACHE,
    ORIGIN_ENV,
    DataRoot,
    cache_dir,
    data_roots,
    download_root,
)

__all__ = ["DatasetSource", "FileSpec", "fetch", "locate"]


@dataclass(frozen=True, eq=False)
class FileSpec:
    """One file a dataset needs.

    Attributes:
        names: The accepted local names, preferred first (e.g. the ``.gz`` and the
            uncompressed IDX file); ``names[0]`` is what a download writes.
        urls: Where ``names[0]`` (or, with ``archive_member``, the archive holding it) can be
            downloaded: mirrors, tried in order.
        digests: Per local name, the published digests, ``{"sha256": hex}`` and/or
            ``{"md5": hex}``; sha256 is checked when both are known.
        archive_member: When ``urls`` point to a tar archive, the member holding ``names[0]``.
    """

    names: tuple[str, ...]
    urls: tuple[str, ...] = ()
    digests: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    archive_member: str | None = None

    @property
    def filename(self) -> str:
        """The preferred local name (what a download writes)."""
        return self.names[0]

    def digest(self, name: str) -> tuple[str, str] | None:
        """The ``(algorithm, hex digest)`` checked for a local file of this name, if known."""
        known = self.digests.get(name, {})
        for algorithm in ("sha256", "md5"):
            if algorithm in known:
                return algorithm, known[algorithm]
        return None

    def verify(self, path: Path) -> None:
        """Check a local copy against its published digest (no-op when none is known).

        Raises:
            ChecksumError: The digest differs.
        """
        known = self.digest(path.name)
        if known is not None:
            verify_checksum(path, known[1], known[0])


@dataclass(frozen=True, eq=False)
class DatasetSource:
    """Everything needed to find or fetch one dataset's files.

    Attributes:
        name: The dataset's name in messages, e.g. ``"MNIST"``.
        layouts: Sub-directories of a data root that may hold the files, preferred first
            (``""`` is the root itself); downloads write to ``layouts[0]``.
        files: The files needed.
        how_to_download: One sentence for the not-found message (e.g. the torchvision call).
    """

    name: str
    layouts: tuple[str, ...]
    files: tuple[FileSpec, ...]
    how_to_download: str = ""

    def find_in(self, root: Path) -> list[Path] | None:
        """The files under one root (first complete layout), or None when some are missing."""
        for layout in self.layouts:
            folder = root / layout if layout else root
            if not folder.is_dir():
                continue
            found: list[Path] = []
            for spec in self.files:
                path = next((folder / n for n in spec.names if (folder / n).is_file()), None)
                if path is None:
                    break
                found.append(path)
            else:
                return found
        return None

    def not_found(self, roots: Sequence[DataRoot], reason: str) -> DatasetNotFoundError:
        """The error saying what to download, from where, and where to put it."""
        lines = [f"{self.name}: the data files were not found locally ({reason})."]
        lines.append("Files needed (any one of the names on a line will do):")
        for spec in self.files:
            names = spec.filename + "".join(f" or {n}" for n in spec.names[1:])
            where = " or ".join(spec.urls) if spec.urls else "no known URL"
            if spec.archive_member is not None:
                where = f"extract {spec.archive_member} from {where}"
            else:
                where = f"from {where}"
            digest = spec.digest(spec.filename)
            check = f" ({digest[0]} {digest[1]})" if digest else ""
            lines.append(f"  - {names}: {where}{check}")
        subdir = f"{self.layouts[0]}/" if self.layouts[0] else ""
        lines.append(
            f"Put them in <DIR>/{subdir} where <DIR> is one of these directories, "
            "searched in this order:"
        )
        arg = next((r.path for r in roots if r.origin == ORIGIN_ARGUMENT), None)
        env = os.environ.get(ENV_VAR, "").strip()
        places = [
            (arg, ORIGIN_ARGUMENT, "not given"),
            (Path(env).expanduser() if env else None, ORIGIN_ENV, "not set"),
            (cache_dir(), ORIGIN_CACHE, ""),
        ]
        for number, (path, origin, missing) in enumerate(places, start=1):
            if path is None:
                lines.append(f"  {number}. {origin}: {missing}")
            else:
                state = "exists" if path.is_dir() else "does not exist"
                lines.append(f"  {number}. {origin}: {path}  [{state}]")
        hint = "Or call the loader with download=True (the scripts' --download) while online"
        hint += f"; {self.how_to_download}" if self.how_to_download else "."
        lines.append(hint)
        return DatasetNotFoundError("\n".join(lines))


def locate(
    source: DatasetSource,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    verify: bool = True,
) -> list[Path] | None:
    """The dataset's files from the first root holding all of them, or None.

    Args:
        source: The dataset.
        data_dir: An explicit directory, searched before ``$ADVBAYES_DATA`` and the cache.
        verify: Check each file found against its published digest.

    Returns:
        One path per ``source.files`` entry, or None when no root holds them all.

    Raises:
        ChecksumError: ``verify`` and a file found differs from its published digest.
    """
    for root in data_roots(data_dir):
        found = source.find_in(root.path)
        if found is not None:
            if verify:
                for spec, path in zip(source.files, found, strict=True):
                    spec.verify(path)
            return found
    return None


def fetch(
    source: DatasetSource,
    data_dir: str | os.PathLike[str] | None,
    *,
    download: bool,
    verify: bool,
    downloader: Callable[[Path], None],
) -> list[Path]:
    """Find the dataset's files locally, else download them (when allowed), else explain.

    Args:
        source: The dataset.
        data_dir: An explicit directory (the scripts' ``--data-dir``); also where downloads go
            when given, else the user cache.
        download: Whether to download when nothing local is found.
        verify: Check files against their published digests.
        downloader: Called with the download root; writes the files under
            ``root / source.layouts[0]``.

    Returns:
        One path per ``source.files`` entry.

    Raises:
        DatasetNotFoundError: Nothing local and ``download`` is False, or the download failed
            (no network, no torchvision); the message says what to get from where.
        ChecksumError: A local or downloaded file differs from its published digest.
    """
    roots = data_roots(data_dir)
    found = locate(source, data_dir, verify=verify)
    if found is not None:
        return found
    if not download:
        raise source.not_found(roots, "download=False")
    target = download_root(data_dir)
    try:
        downloader(target)
    except (ChecksumError, DatasetNotFoundError):
        raise
    except (OSError, urllib.error.URLError, RuntimeError, ImportError, ValueError) as err:
        reason = f"download failed: {type(err).__name__}: {err}"
        raise source.not_found(roots, reason) from err
    found = source.find_in(target)
    if found is None:
        raise source.not_found(roots, f"downloaded into {target}, but files are still missing")
    if verify:
        for spec, path in zip(source.files, found, strict=True):
            spec.verify(path)
    return found
