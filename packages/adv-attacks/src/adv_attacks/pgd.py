"""Projected gradient ascent (PGD) in L2 and L∞ balls (paper, Section 4.1; Madry et al. 2018)."""

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
from adv_attacks.objectives import Objective, ObjectiveSpec, attack_success
from adv_attacks.predictive import ClassificationOutput

__all__ = ["PGD", "pgd", "default_step_size", "run_pgd"]

STEP_FACTOR = 2.5
"""Default step size ``η = 2.5 ε / T`` for ``T`` steps.

The library's choice where the paper is silent (docs/theory.md, 'Attacks').
"""


def default_step_size(eps: Tensor, steps: int) -> Tensor:
    """The default PGD step ``η = 2.5 ε / T``, per example.

    The library's choice where the paper is silent (docs/theory.md, 'Attacks').
    """
    return eps * (STEP_FACTOR / steps)


def run_pgd(
    problem: AttackProblem,
    x_adv: Tensor,
    spec: ObjectiveSpec,
    *,
    steps: int,
    step_size: Tensor,
    eot: bool = False,
    early_stop: bool = False,
    generator: torch.Generator | None = None,
    at_clean: bool = False,
) -> Tensor:
    """Run ``steps`` projected steps ``x ← clip(Π_ε(x + η d(∇J)))`` from ``x_adv``.

    The loop shared by :class:`PGD`, :class:`~adv_attacks.pgd_plus.PGDPlus` and
    :class:`~adv_attacks.entropy.EntropyAttack`; the caller has validated everything.

    Args:
        problem: The validated batch and predictive.
        x_adv: The first iterate ``(B, *)``, inside the ball and range; its buffer is reused.
        spec: The objective to ascend.
        steps: ``T >= 1``.
        step_size: ``η`` per example, ``(B,)``.
        eot: Resample the predictive's posterior draws before every step.
        early_stop: Classification only: an example stops moving once the prediction at its
            current iterate succeeds (misclassified, or equal to the target); the loop ends
            when every example has succeeded.
        generator: Random stream for ``resample``.
        at_clean: ``x_adv`` is the clean batch (no random start): missing labels come from
            the first forward pass instead of an extra one.

    Returns:
        The last iterate ``(B, *)``.
    """
    done: Tensor | None = None
    for t in range(steps):
        if eot:
            problem.resample(generator)
        g, out = problem.gradient(x_adv, spec, at_clean=at_clean and t == 0)
        eta = step_size
        if early_stop:
            if not isinstance(out, ClassificationOutput):
                raise ValueError("early_stop needs a classification predictive")
            hit = attack_success(out, problem.labels(), targeted=spec.targeted)
            done = hit if done is None else done | hit
            if bool(done.all()):
                break
            eta = step_size * (~done).to(step_size.dtype)
        x_adv = problem.step(x_adv, g, eta)
    return x_adv


class PGD(Attack):
    """Projected gradient ascent on an objective, in an L2 ball or an L∞ box.

    Paper, Section 4.1; docs/theory.md, 'Attacks': start at ``x`` or uniformly in the ball
    (``random_start``, default on), then ``T`` steps
    ``x ← clip(Π_ε(x + η g / max(‖g‖₂, tiny)))``: step, project onto the ball
    (``δ ← δ · min(1, ε / ‖δ‖)``), clamp to the valid range. L∞ steps along ``sign(g)`` and
    clamps ``δ`` elementwise to ``[-ε, ε]``. Default step ``η = 2.5 ε / T`` (the library's
    choice where the paper is silent).

    Args:
        eps: Budget ``ε >= 0``, a float or a ``(B,)`` tensor.
        norm: ``"l2"`` (default) or ``"linf"``.
        objective: ``"nll"`` (default), ``"mse"``, ``"cw"`` or ``"entropy"``.
        clamp: Valid input range, default ``(0.0, 1.0)``; ``None`` for unbounded inputs.
        steps: ``T``, default 50.
        step_size: ``η`` (float or ``(B,)`` tensor); default ``2.5 ε / T``.
        random_start: Start uniformly in the ball (clamped to the range); default on.
        kappa: CW confidence κ.
        entropy_sign: ``+1`` raises the entropy, ``-1`` lowers it.
        targeted: Ascend towards the targets ``y`` (``nll``, ``mse``, ``cw``).
        eot: Resample the predictive's posterior draws before every step.
        chunk_size: Examples per forward/backward pass; ``None``: whole batch on
            accelerators, cache-sized chunks on the CPU (see :class:`~adv_attacks.base.Attack`).
        early_stop: Stop moving an example once it is misclassified (or hits its target).

    Shape:
        - x: ``(B, *)``; y: ``(B,)``; output: ``(B, *)``.

    Examples:
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
        >>> x = torch.rand(2, 1, 2, 2)
        >>> x_adv = PGD(eps=0.3, steps=10)(net, x, torch.tensor([0, 2]))
        >>> bool(((x_adv - x).flatten(1).norm(dim=1) <= 0.3 + 1e-6).all())
        True
    """

    def __init__(
        self,
        *,
        eps: Budget,
        norm: Norm | str = Norm.L2,
        objective: Objective | str = Objective.NLL,
        clamp: Clamp = (0.0, 1.0),
        steps: int = 50,
        step_size: Budget | None = None,
        random_start: bool = True,
        kappa: float = 0.0,
        entropy_sign: int = 1,
        targeted: bool = False,
        eot: bool = False,
        chunk_size: int | None = None,
        early_stop: bool = False,
    ) -> None:
        super().__init__(eps=eps, norm=norm, clamp=clamp, eot=eot, chunk_size=chunk_size)
        self.steps = check_steps(steps)
        if step_size is not None:
            check_budget(step_size, "step_size")
        self.step_size = step_size
        self.random_start = bool(random_start)
        self.early_stop = bool(early_stop)
        self.spec = ObjectiveSpec(
            objective, kappa=kappa, entropy_sign=entropy_sign, targeted=targeted
        )

    @property
    def specs(self) -> tuple[ObjectiveSpec, ...]:
        """The single objective."""
        return (self.spec,)

    def _step_size(self, problem: AttackProblem, total_steps: int) -> Tensor:
        if self.step_size is None:
            return default_step_size(problem.eps, total_steps)
        return per_example(self.step_size, "step_size", problem.x)

    def _perturb(self, problem: AttackProblem, generator: torch.Generator | None) -> Tensor:
        eta = self._step_size(problem, self.steps)
        x_adv = problem.start(self.random_start, generator)
        return run_pgd(
            problem,
            x_adv,
            self.spec,
            steps=self.steps,
            step_size=eta,
            eot=self.eot,
            early_stop=self.early_stop,
            generator=generator,
            at_clean=not self.random_start,
        )


@overload
def pgd(
    predictive: Callable[[Tensor], object],
    x: Tensor,
    y: Tensor | None = None,
    *,
    eps: Budget,
    norm: Norm | str = ...,
    objective: Objective | str = ...,
    clamp: Clamp = ...,
    generator: torch.Generator | None = ...,
    steps: int = ...,
    step_size: Budget | None = ...,
    random_start: bool = ...,
    kappa: float = ...,
    entropy_sign: int = ...,
    targeted: bool = ...,
    eot: bool = ...,
    chunk_size: int | None = ...,
    early_stop: bool = ...,
    return_info: Literal[False] = ...,
) -> Tensor: ...


@overload
def pgd(
    predictive: Callable[[Tensor], object],
    x: Tensor,
    y: Tensor | None = None,
    *,
    eps: Budget,
    norm: Norm | str = ...,
    objective: Objective | str = ...,
    clamp: Clamp = ...,
    generator: torch.Generator | None = ...,
    steps: int = ...,
    step_size: Budget | None = ...,
    random_start: bool = ...,
    kappa: float = ...,
    entropy_sign: int = ...,
    targeted: bool = ...,
    eot: bool = ...,
    chunk_size: int | None = ...,
    early_stop: bool = ...,
    return_info: Literal[True],
) -> AttackResult: ...


def pgd(
    predictive: Callable[[Tensor], object],
    x: Tensor,
    y: Tensor | None = None,
    *,
    eps: Budget,
    norm: Norm | str = Norm.L2,
    objective: Objective | str = Objective.NLL,
    clamp: Clamp = (0.0, 1.0),
    generator: torch.Generator | None = None,
    steps: int = 50,
    step_size: Budget | None = None,
    random_start: bool = True,
    kappa: float = 0.0,
    entropy_sign: int = 1,
    targeted: bool = False,
    eot: bool = False,
    chunk_size: int | None = None,
    early_stop: bool = False,
    return_info: bool = False,
) -> Tensor | AttackResult:
    """PGD attack (L2 or L∞); see :class:`PGD` for the update and every option.

    Args:
        predictive: Logits/log-probabilities ``(B, C)`` or ``(mean, var)``.
        x: Clean inputs ``(B, *)``, never modified.
        y: Labels ``(B,)``, targets if ``targeted``, or ``None`` (the clean prediction).
        eps: Budget ``ε >= 0``, a float or a ``(B,)`` tensor.
        norm: ``"l2"`` or ``"linf"``.
        objective: ``"nll"``, ``"mse"``, ``"cw"`` or ``"entropy"``.
        clamp: Valid input range or ``None``.
        generator: Random stream for the random start and ``resample``.
        steps: ``T``, default 50.
        step_size: ``η``; default ``2.5 ε / T``.
        random_start: Start uniformly in the ball.
        kappa: CW confidence κ.
        entropy_sign: ``+1`` or ``-1``.
        targeted: Move towards the targets ``y``.
        eot: Resample the posterior draws before every step.
        chunk_size: Examples per forward/backward pass; ``None``: whole batch on
            accelerators, cache-sized chunks on the CPU (see :class:`~adv_attacks.base.Attack`).
        early_stop: Freeze examples once misclassified (or on target).
        return_info: Return an :class:`AttackResult` with per-example objective and success.

    Returns:
        The adversarial batch, or an :class:`AttackResult`.

    Examples:
        >>> net = torch.nn.Linear(5, 3)
        >>> x = torch.rand(8, 5)
        >>> res = pgd(net, x, eps=0.5, norm="linf", steps=5, return_info=True)
        >>> res.x_adv.shape, res.success.dtype
        (torch.Size([8, 5]), torch.bool)
    """
    attack = PGD(
        eps=eps,
        norm=norm,
        objective=objective,
        clamp=clamp,
        steps=steps,
        step_size=step_size,
        random_start=random_start,
        kappa=kappa,
        entropy_sign=entropy_sign,
        targeted=targeted,
        eot=eot,
        early_stop=early_stop,
        chunk_size=chunk_size,
    )
    return attack(predictive, x, y, generator=generator, return_info=return_info)
