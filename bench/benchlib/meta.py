"""Provenance recorded with every benchmark or reproduction result."""

from __future__ import annotations

import datetime as _dt
import importlib.metadata as _md
import os
import platform
import subprocess
from pathlib import Path

import torch

from benchlib import allocator

_DISTRIBUTIONS = (
    "bnn-core",
    "adv-attacks",
    "adv-channels",
    "robust-vi",
    "adv-reactive",
    "advbayes-data",
    "torch",
    "triton",
    "torchvision",
)


def git_revision() -> str:
    """Return the current git commit (with ``-dirty`` if the tree has changes), or ``unknown``."""
    root = Path(__file__).resolve().parents[2]
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return "unknown"
    if not rev:
        return "unknown"
    return rev + ("-dirty" if dirty else "")


def versions() -> dict[str, str]:
    """Installed versions of the project's packages and of torch, triton and torchvision."""
    out = {"python": platform.python_version()}
    for name in _DISTRIBUTIONS:
        try:
            out[name] = _md.version(name)
        except _md.PackageNotFoundError:
            out[name] = "not installed"
    return out


def device_name(device: torch.device) -> str:
    """Human-readable name of ``device`` (GPU model, or the CPU and its thread count)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    return f"{cpu} CPU, {torch.get_num_threads()} torch threads, {os.cpu_count()} cores"


def provenance(device: torch.device) -> dict[str, object]:
    """Everything a result file records about where and with what it was produced."""
    return {
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "git": git_revision(),
        "device": str(device),
        "device_name": device_name(device),
        "versions": versions(),
        "platform": platform.platform(),
        "allocator": allocator.state(),
    }
