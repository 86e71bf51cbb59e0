"""What a perf section receives and returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class Context:
    """Run-wide settings handed to every section.

    Attributes:
        device: Where to run.
        quick: Smaller sizes and fewer repeats (a smoke run, seconds not minutes).
        repeats: Timed rounds per measurement.
        seed: Seed for any random data.
        statistic: How the rounds are summarised: ``"min"`` or ``"median"`` (see
            :mod:`benchlib.timing`).
    """

    device: torch.device
    quick: bool = False
    repeats: int = 5
    seed: int = 0
    statistic: str = "min"


@dataclass
class Figure:
    """One measured figure.

    Attributes:
        key: Stable identifier, ``<section>.<what>``.
        value: The number.
        unit: ``x`` for ratios, ``s``, ``ms``, ``img/s``, ``GB``, ``%`` ...
        goal: The target from the issue, e.g. ``<= 1.2``, or empty.
        note: What was measured, in words.
    """

    key: str
    value: float
    unit: str
    goal: str = ""
    note: str = ""
    extra: dict[str, object] = field(default_factory=dict)

    def meets_goal(self) -> bool | None:
        """Whether ``value`` meets ``goal`` (``None`` when there is no goal)."""
        if not self.goal:
            return None
        op, _, num = self.goal.partition(" ")
        target = float(num)
        return {
            "<=": self.value <= target,
            ">=": self.value >= target,
            "<": self.value < target,
            ">": self.value > target,
        }[op]


def layout_speedups(
    prefix: str, times: dict[str, float], bayes_name: str, bayes_what: str
) -> list[Figure]:
    """The channels-last speed-ups of a section's round-robin (``> 1``: channels-last faster).

    ``times`` holds the contiguous and channels-last timings under ``det``/``cl_det``
    (deterministic network) and ``loop``/``cl_loop`` (Bayesian network, draws looped);
    the figures are ``<prefix>.det_speedup`` and ``<prefix>.<bayes_name>``.
    """
    return [
        Figure(
            f"{prefix}.det_speedup",
            times["det"] / times["cl_det"],
            "x",
            note="deterministic step: contiguous time / channels-last time (> 1: CL faster)",
        ),
        Figure(
            f"{prefix}.{bayes_name}",
            times["loop"] / times["cl_loop"],
            "x",
            note=f"{bayes_what}: contiguous time / channels-last time (> 1: CL faster)",
        ),
    ]
