"""PGD+ (Feng et al. 2024): PGD on ``nll``, then PGD on ``+entropy`` in the same ball."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, overload

import torch
from torch import Tensor

from adv_attacks.base import (
    Attack,
    AttackProblem,
    AttackResult,
    Budget,
    Clamp,
    check_budget,
    check_steps,
    per_example,
)
from adv_attacks.norms import Norm
from adv_attacks.objectives import Objective, ObjectiveSpec
from adv_attacks.pgd import default_step_size, run_pgd

__all__ = ["PGDPlus", "pgd_plus"]


class PGDPlus(Attack):
    """PGD+: ``nll_steps`` PGD steps on ``objective`` then ``entropy_steps`` on the entropy.

    Paper, Section 4.1 (Feng et al. 2024): 25 steps on ``nll`` followed by 25 steps on ``+entropy``,
    same ball, the second phase continuing from the first one's last iterate, so that the
    input is both misclassified and made uncertain. One random start (default on) before
    the first phase. The default step is ``η = 2.5 ε / T`` with ``T`` the total number of
    steps (50), the same step as 50-step PGD (the library's choice where the paper is silent;
    docs/theory.md, 'Attacks').

    Args:
        eps: Budget ``ε >= 0``, a float or a ``(B,)`` tensor.
        norm: ``"l2"`` (default) or ``"linf"``.
        objective: First-phase objective, default ``"nll"`` (``"cw"``/``"mse"`` possible).
        clamp: Valid input range, default ``(0.0, 1.0)``; ``None`` for unbounded inputs.
        nll_steps: Steps of the first phase, default 25.
        entropy_steps: Steps of the entropy phase, default 25.
        step_size: ``η`` for both phases; default ``2.5 ε / (nll_steps + entropy_steps)``.
        random_start: Start uniformly in the ball.
        kappa: CW confidence κ, if the first phase uses ``"cw"``.
        entropy_sign: ``+1`` (default, the paper's PGD+) raises the entropy, ``-1`` lowers it.
        eot: Resample the predictive's posterior draws before every step.
        chunk_size: Examples per forward/backward pass; ``None``: whole batch on
            accelerators, cache-sized chunks on the CPU (see :class:`~adv_attacks.base.Attack`).

    Shape:
        - x: ``(B, *)``; y: ``(B,)``; output: ``(B, *)``.

    Examples:
        >>> net = torch.nn.Linear(5, 3)
        >>> x_adv = PGDPlus(eps=0.5, nll_steps=3, entropy_steps=3)(net, torch.rand(4, 5))
        >>> x_adv.shape
        torch.Size([4, 5])
    """

    def __init__(
        self,
        *,
        eps: Budget,
        norm: Norm | str = Norm.L2,
        objective: Objective | str = Objective.NLL,
        clamp: Clamp = (0.0, 1.0),
        nll_steps: int = 25,
        entropy_steps: int = 25,
        step_size: Budget | None = None,
        random_start: bool = True,
        kappa: float = 0.0,
        entropy_sign: int = 1,
        eot: bool = False,
        chunk_size: int | None = None,
    ) -> None:
        super().__init__(eps=eps, norm=norm, clamp=clamp, eot=eot, chunk_size=chunk_size)
        self.nll_steps = check_steps(nll_steps, "nll_steps")
        self.entropy_steps = check_steps(entropy_steps, "entropy_steps")
        if step_size is not None:
            check_budget(step_size, "step_size")
        self.step_size = step_size
        self.random_start = bool(random_start)
        self.first = ObjectiveSpec(objective, kappa=kappa)
        if self.first.objective is Objective.ENTROPY:
            raise ValueError("PGD+'s first phase needs a label objective: 'nll', 'mse' or 'cw'")
        self.second = ObjectiveSpec(Objective.ENTROPY, entropy_sign=entropy_sign)

    @property
    def specs(self) -> tuple[ObjectiveSpec, ...]:
        """The first-phase objective, then the entropy."""
        return (self.first, self.second)

    def _perturb(self, problem: AttackProblem, generator: torch.Generator | None) -> Tensor:
        if self.step_size is None:
            eta = default_step_size(problem.eps, self.nll_steps + self.entropy_steps)
        else:
            eta = per_example(self.step_size, "step_size", problem.x)
        x_adv = problem.start(self.random_start, generator)
        for spec, steps, at_clean in (
            (self.first, self.nll_steps, not self.random_start),
            (self.second, self.entropy_steps, False),
        ):
            x_adv = run_pgd(
                problem,
                x_adv,
                spec,
                steps=steps,
                step_size=eta,
                eot=self.eot,
                generator=generator,
                at_clean=at_clean,
            )
        return x_adv


@overload
def pgd_plus(
    predictive: Callable[[Tensor], object],
    x: Tensor,
    y: Tensor | None = None,
    *,
    eps: Budget,
    norm: Norm | str = ...,
    objective: Objective | str = ...,
    clamp: Clamp = ...,
    generator: torch.Generator | None = ...,
    nll_steps: int = ...,
    entropy_steps: int = ...,
    step_size: Budget | None = ...,
    random_start: bool = ...,
    kappa: float = ...,
    entropy_sign: int = ...,
    eot: bool = ...,
    chunk_size: int | None = ...,
    return_info: Literal[False] = ...,
) -> Tensor: ...


@overload
def pgd_plus(
    predictive: Callable[[Tensor], object],
    x: Tensor,
    y: Tensor | None = None,
    *,
    eps: Budget,
    norm: Norm | str = ...,
    objective: Objective | str = ...,
    clamp: Clamp = ...,
    generator: torch.Generator | None = ...,
    nll_steps: int = ...,
    entropy_steps: int = ...,
    step_size: Budget | None = ...,
    random_start: bool = ...,
    kappa: float = ...,
    entropy_sign: int = ...,
    eot: bool = ...,
    chunk_size: int | None = ...,
    return_info: Literal[True],
) -> AttackResult: ...


def pgd_plus(
    predictive: Callable[[Tensor], object],
    x: Tensor,
    y: Tensor | None = None,
    *,
    eps: Budget,
    norm: Norm | str = Norm.L2,
    objective: Objective | str = Objective.NLL,
    clamp: Clamp = (0.0, 1.0),
    generator: torch.Generator | None = None,
    nll_steps: int = 25,
    entropy_steps: int = 25,
    step_size: Budget | None = None,
    random_start: bool = True,
    kappa: float = 0.0,
    entropy_sign: int = 1,
    eot: bool = False,
    chunk_size: int | None = None,
    return_info: bool = False,
) -> Tensor | AttackResult:
    """PGD+ (Feng et al. 2024): PGD on ``nll`` then on ``+entropy``; see :class:`PGDPlus`.

    Args:
        predictive: Logits/log-probabilities ``(B, C)`` or ``(mean, var)``.
        x: Clean inputs ``(B, *)``, never modified.
        y: Labels ``(B,)`` or ``None`` (the clean prediction).
        eps: Budget ``ε >= 0``, a float or a ``(B,)`` tensor.
        norm: ``"l2"`` or ``"linf"``.
        objective: First-phase objective (default ``"nll"``).
        clamp: Valid input range or ``None``.
        generator: Random stream for the random start and ``resample``.
        nll_steps: First-phase steps (25).
        entropy_steps: Entropy-phase steps (25).
        step_size: ``η``; default ``2.5 ε / (nll_steps + entropy_steps)``.
        random_start: Start uniformly in the ball.
        kappa: CW confidence κ.
        entropy_sign: ``+1`` or ``-1``.
        eot: Resample the posterior draws before every step.
        chunk_size: Examples per forward/backward pass; ``None``: whole batch on
            accelerators, cache-sized chunks on the CPU (see :class:`~adv_attacks.base.Attack`).
        return_info: Return an :class:`AttackResult` (objective = the signed entropy).

    Returns:
        The adversarial batch, or an :class:`AttackResult`.
    """
    attack = PGDPlus(
        eps=eps,
        norm=norm,
        objective=objective,
        clamp=clamp,
        nll_steps=nll_steps,
        entropy_steps=entropy_steps,
        step_size=step_size,
        random_start=random_start,
        kappa=kappa,
        entropy_sign=entropy_sign,
        eot=eot,
        chunk_size=chunk_size,
    )
    return attack(predictive, x, y, generator=generator, return_info=return_info)
