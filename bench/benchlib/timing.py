"""Timing helpers: repeated, interleaved runs on the CPU, CUDA-synchronised on GPUs.

Which statistic summarises the repeats matters on a shared machine: contention from other
tenants only ever *adds* time, and it hits a function with a large working set (ten
posterior draws' activations) harder than a small one, so the median of a few repeats
moves by 10-30% between runs. The minimum estimates the uncontended cost (the reasoning of
:mod:`timeit`); ``bench/perf.py`` reports minima by default and medians with
``--statistic median``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence

import torch

STATISTICS: dict[str, Callable[[Sequence[float]], float]] = {
    "min": min,
    "median": statistics.median,
}
"""How repeated timings are summarised (see the module docstring)."""


def summarise(samples: Sequence[float], statistic: str = "min") -> float:
    """``min`` or ``median`` of ``samples`` (seconds).

    Raises:
        ValueError: For an unknown ``statistic`` or no samples.
    """
    _check_statistic(statistic)
    if not samples:
        raise ValueError("no timing samples to summarise")
    return float(STATISTICS[statistic](samples))


def _check_statistic(statistic: str) -> None:
    if statistic not in STATISTICS:
        raise ValueError(f"statistic must be one of {sorted(STATISTICS)}; got {statistic!r}")


def _sync(device: torch.device | None) -> None:
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_times(
    fns: dict[str, Callable[[], object]],
    *,
    repeats: int = 5,
    warmup: int = 1,
    device: torch.device | None = None,
    statistic: str = "min",
) -> dict[str, float]:
    """Times of several functions measured round-robin, so that machine noise hits all.

    Ratios between the returned times are what the benchmarks report: on a shared, noisy
    machine they are far more stable than absolute times.

    Args:
        fns: Zero-argument callables by name.
        repeats: Timed rounds; each round runs every function once, in order.
        warmup: Untimed runs of each function first.
        device: Synchronised after each run when it is a CUDA device.
        statistic: ``"min"`` (default) or ``"median"`` over the rounds (module docstring).

    Returns:
        Seconds per call, by name.
    """
    _check_statistic(statistic)  # before running anything
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    _sync(device)
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for key, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            _sync(device)
            samples[key].append(time.perf_counter() - t0)
    return {k: summarise(v, statistic) for k, v in samples.items()}
