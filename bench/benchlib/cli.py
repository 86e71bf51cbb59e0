"""Command-line pieces shared by ``bench/mnist.py`` and ``bench/regression.py``."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from benchlib.allocator import keep_freed_memory, state


def add_run_arguments(
    parser: argparse.ArgumentParser, *, out: Path, threads: int | None, threads_help: str
) -> None:
    """Add the options every reproduction script has (device, data, run directory, ...).

    Args:
        parser: The script's parser.
        out: Default parent folder of the run directories.
        threads: Default torch intra-op thread count (``None``: torch's default).
        threads_help: Why that default.
    """
    parser.add_argument("--eps", nargs="+", type=float, default=None, help="attack strengths (L2)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument("--threads", type=int, default=threads, help=threads_help)
    parser.add_argument("--data-dir", type=Path, default=None, help="local dataset folder")
    parser.add_argument("--download", action="store_true", help="download missing datasets")
    parser.add_argument("--run", default=None, help="run name (default: the profile's name)")
    parser.add_argument("--out", type=Path, default=out, help="parent of the run directories")
    parser.add_argument("--fresh", action="store_true", help="discard cached models and rows")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_allocator_argument(parser, default="warm")


def add_allocator_argument(parser: argparse.ArgumentParser, *, default: str) -> None:
    """Add ``--allocator warm|default`` (see :mod:`benchlib.allocator`) with ``default``."""
    parser.add_argument(
        "--allocator",
        choices=("warm", "default"),
        default=default,
        help="warm: glibc malloc keeps freed memory instead of page-faulting it back in every "
        "step (about 20%% faster on CPU; benchlib/allocator.py); default: the C library's "
        f"malloc as it comes. This script uses {default!r} unless told",
    )


def parse_setting(current: object, value: str, *, optional_int: bool = False) -> object:
    """Parse the ``VALUE`` of ``--set KEY=VALUE`` into the type of the setting's ``current``.

    Tuples take comma-separated items (of the type of their first item, floats when empty);
    ``optional_int`` settings take an integer or ``none``.

    Raises:
        ValueError: When ``value`` does not parse.
    """
    if isinstance(current, tuple):
        kind = str if current and isinstance(current[0], str) else float
        return tuple(kind(v) for v in value.split(",") if v)
    if optional_int:
        return None if value.lower() == "none" else int(value)
    if isinstance(current, bool):
        if value.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"expected true or false; got {value!r}")
        return value.lower() in ("true", "1")
    return type(current)(value)


def apply_allocator(choice: str) -> str:
    """Make glibc keep freed memory when ``choice`` is ``"warm"`` (see ``--allocator``).

    Returns:
        The allocator's state in words (:func:`benchlib.allocator.state`).
    """
    return keep_freed_memory() if choice == "warm" else state()


def apply_threads(threads: int | None) -> None:
    """Set torch's intra-op CPU thread count when one is given."""
    if threads is not None:
        if threads < 1:
            raise SystemExit(f"--threads must be >= 1; got {threads}")
        torch.set_num_threads(threads)
