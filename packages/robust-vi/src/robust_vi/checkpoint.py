"""Writing and reading trainer checkpoints atomically (one file per directory)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import torch

__all__ = ["CHECKPOINT_NAME", "load_checkpoint", "save_checkpoint"]

CHECKPOINT_NAME = "checkpoint.pt"
"""The file name of the checkpoint inside a trainer's ``checkpoint_dir``."""

_TMP_PREFIX, _TMP_SUFFIX = ".checkpoint-", ".tmp"  # a save's temporary file


def save_checkpoint(state: dict[str, Any], directory: str | os.PathLike[str]) -> Path:
    """Write ``state`` to ``directory/checkpoint.pt`` atomically.

    The state is written to a temporary file in the same directory, flushed to disk
    (``fsync``) and then renamed over the old checkpoint (and the directory synced), so
    neither an interrupted process nor a crash of the machine leaves a truncated checkpoint
    behind. Temporary files that an interrupted save left are removed by the next one; the
    file gets the usual permissions (``0o666`` less the umask).

    Args:
        state: Tensors, numbers, strings and (nested) dicts/lists of them.
        directory: Created if missing.

    Returns:
        The checkpoint's path.

    Examples:
        >>> path = save_checkpoint({"epoch": 3}, tmp_dir)  # doctest: +SKIP
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / CHECKPOINT_NAME
    # open(..., "xb") rather than mkstemp: the file gets the usual 0o666-less-umask mode
    # (mkstemp's 0o600 would survive the rename)
    tmp = directory / f"{_TMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex}{_TMP_SUFFIX}"
    try:
        with open(tmp, "xb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _sync_directory(directory)
    for stale in directory.glob(f"{_TMP_PREFIX}*{_TMP_SUFFIX}"):  # left by a killed save
        stale.unlink(missing_ok=True)
    return target


def _sync_directory(directory: Path) -> None:
    """Make the rename durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_checkpoint(
    directory: str | os.PathLike[str], map_location: torch.device | str | None = None
) -> dict[str, Any] | None:
    """Read ``directory/checkpoint.pt`` (``None`` if there is none).

    Loaded with ``weights_only=True``: only tensors and plain containers, never code.

    Args:
        directory: The trainer's checkpoint directory.
        map_location: Where to put the tensors (as for :func:`torch.load`).

    Returns:
        The saved state, or ``None``.
    """
    path = Path(directory) / CHECKPOINT_NAME
    if not path.is_file():
        return None
    state = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{path} does not hold a trainer checkpoint")
    return state
