"""Shared setup of the tests of ``bench/``: the bench scripts and ``benchlib`` importable."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

BENCH = Path(__file__).resolve().parents[2] / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))


def _load_script(name: str) -> ModuleType:
    """Import ``bench/<name>.py`` as a module (the scripts are not a package)."""
    module_name = f"bench_script_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def restore_torch_threads():
    """Scripts set the process's torch thread count: put it back after the test."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def bench_script():
    """``bench_script("regression")``: the module of ``bench/regression.py``, imported once."""
    return _load_script
