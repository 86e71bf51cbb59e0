"""Shared pytest configuration for every package's tests.

Each test starts from a fixed seed (an autouse fixture, never at import time), so random
tests are reproducible; tests that need their own stream build a ``torch.Generator``.
"""

from __future__ import annotations

import os
import random

import pytest
import torch

# Tests run on a 2-core CPU: keep torch from oversubscribing it.
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _seed_everything() -> None:
    random.seed(0)
    torch.manual_seed(0)
    try:
        import numpy as np

        np.random.seed(0)
    except ImportError:  # numpy is optional for most packages
        pass


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
