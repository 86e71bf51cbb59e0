"""The one-step attack (PGD1): a single normalised gradient step of size ε (paper, Section 4.1)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, overload

import torch
from torch import Tensor

from adv_attacks.base import Attack, AttackProblem, AttackResult, Budget, Clamp
from adv_attacks.norms import Norm
from adv_attacks.objectives import Objective, ObjectiveSpec

__all__ = ["OneStep", "one_step"]


class OneStep(Attack):
    """One normalised gradient step: ``x' = clip(x + ε g / ‖g‖₂)``, ``g = ∇_x J(x, y)``.

    The paper's PGD1 (Section 4.1; docs/theory.md, 'Attacks'). ``g = 0`` where ``‖g‖ = 0`` (the
    example is left unchanged). With ``norm="linf"`` the step is ``ε · sign(g)`` (FGSM). No
    projection is needed: the step has norm ``ε`` exactly (up to rounding); clamping to the valid
    range only shortens it.

    Args:
        eps: Budget ``ε >= 0``, a float or a ``(B,)`` tensor.
        norm: ``"l2"`` (default) or ``"linf"``.
        objective: ``"nll"`` (default), ``"mse"``, ``"cw"`` or ``"entropy"``.
        clamp: Valid input range, default ``(0.0, 1.0)``; ``None`` for unbounded inputs.
        kappa: CW confidence κ (``objective="cw"``).
        entropy_sign: ``+1`` raises the entropy, ``-1`` lowers it (``objective="entropy"``).
        targeted: Ascend towards the targets ``y`` (``nll``, ``mse``, ``cw``).
        eot: Call ``predictive.resample(generator=...)`` before the step.
        chunk_size: Examples per forward/backward pass; ``None``: whole batch on
            accelerators, cache-sized chunks on the CPU (see :class:`~adv_attacks.base.Attack`).

    Shape:
        - x: ``(B, *)``; y: ``(B,)``; output: ``(B, *)``.

    Examples:
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
        >>> x = torch.rand(2, 1, 2, 2)
        >>> x_adv = OneStep(eps=0.1)(net, x, torch.tensor([0, 2]))
        >>> x_adv.shape
        torch.Size([2, 1, 2, 2])
    """

    def __init__(
        self,
        *,
        eps: Budget,
        norm: Norm | str = Norm.L2,
        objective: Objective | str = Objective.NLL,
        clamp: Clamp = (0.0, 1.0),
        kappa: float = 0.0,
        entropy_sign: int = 1,
        targeted: bool = False,
        eot: bool = False,
        chunk_size: int | None = None,
    ) -> None:
        super().__init__(eps=eps, norm=norm, clamp=clamp, eot=eot, chunk_size=chunk_size)
        self.spec = ObjectiveSpec(
            objective, kappa=kappa, entropy_sign=entropy_sign, targeted=targeted
        )

    @property
    def specs(self) -> tuple[ObjectiveSpec, ...]:
        """The single objective."""
        return (self.spec,)

    def _perturb(self, problem: AttackProblem, generator: torch.Generator | None) -> Tensor:
        if self.eot:
            problem.resample(generator)
        g, _ = problem.gradient(problem.x, self.spec, at_clean=True)
        x_adv = problem.x.clone()
        return problem.step(x_adv, g, problem.eps)


@overload
def one_step(
    predictive: Callable[[Tensor], object],
    x: Tensor,
    y: Tensor | None = None,
    *,
    eps: Budget,
    norm: Norm | str = ...,
    objective: Objective | str = ...,
    clamp: Clamp = ...,
    generator: torch.Generator | None = ...,
    kappa: float = ...,
    entropy_sign: int = ...,
    targeted: bool = ...,
    eot: bool = ...,
    chunk_size: int | None = ...,
    return_info: Literal[False] = ...,
) -> Tensor: ...


@overload
def one_step(
    predictive: Callable[[Tensor], object],
    x: Tensor,
    y: Tensor | None = None,
    *,
    eps: Budget,
    norm: Norm | str = ...,
    objective: Objective | str = ...,
    clamp: Clamp = ...,
    generator: torch.Generator | None = ...,
    kappa: float = ...,
    entropy_sign: int = ...,
    targeted: bool = ...,
    eot: bool = ...,
    chunk_size: int | None = ...,
    return_info: Literal[True],
) -> AttackResult: ...


def one_step(
    predictive: Callable[[Tensor], object],
    x: Tensor,
    y: Tensor | None = None,
    *,
    eps: Budget,
    norm: Norm | str = Norm.L2,
    objective: Objective | str = Objective.NLL,
    clamp: Clamp = (0.0, 1.0),
    generator: torch.Generator | None = None,
    kappa: float = 0.0,
    entropy_sign: int = 1,
    targeted: bool = False,
    eot: bool = False,
    chunk_size: int | None = None,
    return_info: bool = False,
) -> Tensor | AttackResult:
    """One-step attack (PGD1) ``x' = clip(x + ε g / ‖g‖₂)``; see :class:`OneStep`.

    Args:
        predictive: Logits/log-probabilities ``(B, C)`` or ``(mean, var)``; see
            :mod:`adv_attacks.predictive`.
        x: Clean inputs ``(B, *)``, never modified.
        y: Labels ``(B,)``, targets if ``targeted``, or ``None`` (the clean prediction).
        eps: Budget ``ε >= 0``, a float or a ``(B,)`` tensor.
        norm: ``"l2"`` or ``"linf"`` (``ε · sign(g)``, FGSM).
        objective: ``"nll"``, ``"mse"``, ``"cw"`` or ``"entropy"``.
        clamp: Valid input range or ``None``.
        generator: Random stream for ``resample`` when ``eot``.
        kappa: CW confidence κ.
        entropy_sign: ``+1`` or ``-1``.
        targeted: Move towards the targets ``y``.
        eot: Resample the posterior draws before the step.
        chunk_size: Examples per forward/backward pass; ``None``: whole batch on
            accelerators, cache-sized chunks on the CPU (see :class:`~adv_attacks.base.Attack`).
        return_info: Return an :class:`AttackResult` with per-example objective and success.

    Returns:
        The adversarial batch, or an :class:`AttackResult`.

    Examples:
        >>> net = torch.nn.Linear(5, 3)
        >>> x = torch.rand(8, 5)
        >>> x_adv = one_step(net, x, eps=0.5, clamp=None)
        >>> bool(((x_adv - x).norm(dim=1) - 0.5).abs().max() < 1e-5)
        True
    """
    attack = OneStep(
        eps=eps,
        norm=norm,
        objective=objective,
        clamp=clamp,
        kappa=kappa,
        entropy_sign=entropy_sign,
        targeted=targeted,
        eot=eot,
        chunk_size=chunk_size,
    )
    return attack(predictive, x, y, generator=generator, return_info=return_info)
