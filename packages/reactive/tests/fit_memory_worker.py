"""Measures the peak memory of ReactivePPD.fit in a fresh process (see test_reactive_ppd.py).

A fresh process keeps the measurement free of what earlier tests left in the allocator.
Prints ``<peak RSS growth during fit, MB> <bytes of the stored state, MB> <peak RSS, MB>``.

Usage: ``python fit_memory_worker.py NUM_TRAIN NUM_DRAWS``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import torch

from adv_channels import OneStepChannel
from adv_reactive import ReactivePPD
from bnn_core import BayesLinear


def _peak_rss_mb() -> float:
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024


def main(num_train: int, num_draws: int) -> None:
    torch.set_num_threads(1)  # a memory measurement: one thread is plenty (and robust)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), BayesLinear(784, 10, init_sigma=0.1))
    x = torch.rand(num_train, 1, 28, 28)  # MNIST-shaped
    y = torch.randint(0, 10, (num_train,))
    channel = OneStepChannel(eps=1.0, sigma=0.5, chunk_size=1024)  # few attack calls
    ReactivePPD(model, channel, num_samples=2).fit(x[:2048], y[:2048])  # one-off allocations
    rppd = ReactivePPD(model, channel, num_samples=num_draws)
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak to the current RSS
    before = _peak_rss_mb()
    rppd.fit(x, y)
    growth = _peak_rss_mb() - before
    state = (rppd.keys, rppd.key_sq_norms, rppd.values, rppd.inputs)
    stored = sum(t.numel() * t.element_size() for t in state) / 2**20
    print(f"{growth:.1f} {stored:.1f} {_peak_rss_mb():.1f}")


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
