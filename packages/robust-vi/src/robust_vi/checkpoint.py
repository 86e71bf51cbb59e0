"""Writing and reading trainer checkpoints atomically (one file per directory)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

__all__ = ["CHECKPOINT_NAME", "load_checkpoint", "save_checkpoint"]

CHECKPOINT_NAME = "checkpoint.pt"
"""The file name of the checkpoint inside a trainer's ``checkpoint_dir``."""


def save_checkpoint(state: dict[str, Any], directory: str | os.PathLike[str]) -> Path:
    """Write ``state`` to ``directory/checkpoint.pt`` atomically.

    The state is written to a temporary file in the same directory and then renamed over
    the old checkpoint, so an interruption never leaves a truncated checkpoint behind.

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
    fd, tmp = tempfile.mkstemp(prefix=".checkpoint-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


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
