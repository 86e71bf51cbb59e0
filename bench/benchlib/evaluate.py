"""Attack a predictive and score it: the evaluation grid of the paper (SPEC §6).

Attacks at test time are PGD1 (one normalised gradient step), PGD (``T`` steps, random
start), PGD+ (``T/2`` steps on the NLL then ``T/2`` on the entropy, Feng et al. 2024) and
ENT (PGD raising the predictive entropy), all in L2 balls, white box: each aims at the
predictive it is given (a BNN's posterior predictive, a reactive PPD, ...).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from adv_attacks import entropy_attack, one_step, pgd, pgd_plus

ATTACKS = ("Clean", "PGD1", "PGD", "PGD+", "ENT")
"""The paper's attacks, in its column order."""


@dataclass(frozen=True)
class AttackSettings:
    """How hard the test-time attacks work.

    Attributes:
        steps: Steps of PGD and ENT; PGD+ uses ``steps // 2`` on each objective (the paper:
            50, i.e. 25 + 25).
        random_start: Start PGD-type attacks uniformly in the ball (SPEC §2 choice).
        clamp: Valid input range, or ``None`` for unbounded (standardised tabular) inputs.
        objective: The label objective of PGD1, PGD and the first half of PGD+: ``"nll"``
            (classification) or ``"mse"``/``"nll"`` for regression.
    """

    steps: int = 50
    random_start: bool = True
    clamp: tuple[float, float] | None = (0.0, 1.0)
    objective: str = "nll"


def attack(
    predictive: Callable[[Tensor], object],
    x: Tensor,
    y: Tensor,
    name: str,
    eps: float,
    settings: AttackSettings,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Return the batch ``x`` attacked by ``name`` at L2 strength ``eps`` (``Clean``: ``x``)."""
    common = {"eps": eps, "clamp": settings.clamp, "generator": generator}
    if name == "Clean" or eps == 0:
        return x
    if name == "PGD1":
        return one_step(predictive, x, y, objective=settings.objective, **common)
    if name == "PGD":
        return pgd(
            predictive,
            x,
            y,
            steps=settings.steps,
            random_start=settings.random_start,
            objective=settings.objective,
            **common,
        )
    if name == "PGD+":
        half = max(1, settings.steps // 2)
        return pgd_plus(
            predictive,
            x,
            y,
            nll_steps=half,
            entropy_steps=half,
            random_start=settings.random_start,
            objective=settings.objective,
            **common,
        )
    if name == "ENT":
        return entropy_attack(
            predictive, x, y, steps=settings.steps, random_start=settings.random_start, **common
        )
    raise ValueError(f"attack must be one of {ATTACKS}; got {name!r}")


def batched(fn: Callable[[Tensor, Tensor], Tensor], x: Tensor, y: Tensor, size: int) -> Tensor:
    """Apply ``fn(x_chunk, y_chunk)`` over chunks of ``size`` examples and concatenate."""
    return torch.cat([fn(x[i : i + size], y[i : i + size]) for i in range(0, len(x), size)])
