"""The exceptions raised by the loaders: data not found, and a checksum mismatch."""

from __future__ import annotations

__all__ = ["ChecksumError", "DatasetNotFoundError"]


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are not in any local directory, and were not (or could not be) downloaded.

    The message says which files to download, from where, and where to put them (the
    ``data_dir`` argument / the scripts' ``--data-dir``, ``$ADVBAYES_DATA``, or the user cache).
    """


class ChecksumError(RuntimeError):
    """A file's digest differs from the published one (corrupt, truncated or another version).

    The message names the file, the algorithm, the expected and the actual digest.
    """
