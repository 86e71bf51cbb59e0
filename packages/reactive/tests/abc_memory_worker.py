"""Peak memory of an ABC ReactivePPD's fit and prediction in a fresh process (test_abc.py).

A PGD channel (2 steps) on a tiny linear Bayesian model with D = 16 inputs, M = 2 draws and
S = 2 simulations per pair: the stored keys are M·S·N·D floats. Prints
``<fit RSS growth, MB> <stored state, MB> <predict RSS growth, MB> <size of one B×(M·S·N)×D
float32 tensor, MB>``.

Usage: ``python abc_memory_worker.py NUM_TRAIN``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import torch

from adv_channels import PGDChannel
from adv_reactive import ABC, ReactivePPD
from bnn_core import BayesLinear

DIM, DRAWS, SIMS, BATCH = 16, 2, 2, 256


def _peak_rss_mb() -> float:
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024


def _reset_peak() -> float:
    Path("/proc/self/clear_refs").write_text("5")
    return _peak_rss_mb()


def main(num_train: int) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = torch.nn.Sequential(BayesLinear(DIM, 10, init_sigma=0.1))
    x = torch.rand(num_train, DIM)
    y = torch.randint(0, 10, (num_train,))
    x_test = torch.rand(BATCH, DIM)
    channel = PGDChannel(eps=0.5, sigma=0.1, steps=2)
    abc = ABC(simulations=SIMS)
    warm = ReactivePPD(model, channel, num_samples=DRAWS, abc=abc).fit(x[:2048], y[:2048])
    warm(x_test)  # one-off allocations
    rppd = ReactivePPD(model, channel, num_samples=DRAWS, abc=abc)
    before = _reset_peak()
    rppd.fit(x, y)
    fit_growth = _peak_rss_mb() - before
    state = (rppd.keys, rppd.key_sq_norms, rppd.values, rppd.inputs)
    stored = sum(t.numel() * t.element_size() for t in state) / 2**20
    before = _reset_peak()
    for mode in ("online", "offline"):
        rppd.mode = mode
        with torch.no_grad():
            rppd.predict(x_test, top_k=3)
    predict_growth = _peak_rss_mb() - before
    b_n_d = BATCH * DRAWS * SIMS * num_train * DIM * 4 / 2**20
    print(f"{fit_growth:.1f} {stored:.1f} {predict_growth:.1f} {b_n_d:.1f}")


if __name__ == "__main__":
    main(int(sys.argv[1]))
