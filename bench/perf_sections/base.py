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
