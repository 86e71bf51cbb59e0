"""ENT: PGD on the predictive entropy (raise it, or lower it with ``entropy_sign=-1``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, overload

import torch
from torch import Tensor

from adv_attacks.base import AttackResult, Budget, Clamp
from adv_attacks.norms import Norm
from adv_attacks.objectives import Objective
from adv_attacks.pgd import PGD

__all__ = ["EntropyAttack", "entropy_attack"]


class EntropyAttack(PGD):
    """ENT: :class:`~adv_attacks.pgd.PGD` ascending ``entropy_sign · H[p(· | x')]``.

    Paper, Section 4.1; docs/theory.md, 'Attacks'. Raising the entropy (``+1``, the paper's ENT)
    makes predictions uncertain; lowering it (``-1``) makes them over-confident, e.g. to slip
    out-of-distribution inputs past an entropy-based detector. Regression: the log predictive
    standard deviation. Labels are not needed; ``y``, if given, only serves the success mask of
    ``return_info``.

    Args:
        eps: Budget ``ε >= 0``, a float or a ``(B,)`` tensor.
        norm: ``"l2"`` (default) or ``"linf"``.
        clamp: Valid input range, default ``(0.0, 1.0)``; ``None`` for unbounded inputs.
        steps: ``T``, default 50.
        step_size: ``η``; default ``2.5 ε / T``.
        random_start: Start uniformly in the ball; default on.
        entropy_sign: ``+1`` (raise, default) or ``-1`` (lower).
        eot: Resample the predictive's posterior draws before every step.
        chunk_size: Examples per forward/backward pass; ``None``: whole batch on
            accelerators, cache-sized chunks on the CPU (see :class:`~adv_attacks.base.Attack`).

    Shape:
        - x: ``(B, *)``; output: ``(B, *)``.

    Examples:
        >>> net = torch.nn.Linear(5, 3)
        >>> x_adv = EntropyAttack(eps=0.5, steps=5)(net, torch.rand(4, 5))
        >>> x_adv.shape
        torch.Size([4, 5])
    """

    def __init__(
        self,
        *,
        eps: Budget,
        norm: Norm | str = Norm.L2,
        clamp: Clamp = (0.0, 1.0),
        steps: int = 50,
        step_size: Budget | None = None,
        random_start: bool = True,
        entropy_sign: int = 1,
        eot: bool = False,
        chunk_size: int | None = None,
    ) -> None:
        super().__init__(
            eps=eps,
            norm=norm,
            objective=Objective.ENTROPY,
            clamp=clamp,
            steps=steps,
            step_size=step_size,
            random_start=random_start,
            entropy_sign=entropy_sign,
            eot=eot,
            chunk_size=chunk_size,
        )


@overload
def entropy_attack(
    predictive: Callable[[Tensor], object],
    x: Tensor,
    y: Tensor | None = None,
    *,
    eps: Budget,
    norm: Norm | str = ...,
    clamp: Clamp = ...,
    generator: torch.Generator | None = ...,
    steps: int = ...,
    step_size: Budget | None = ...,
    random_start: bool = ...,
    entropy_sign: int = ...,
    eot: bool = ...,
    chunk_size: int | None = ...,
    return_info: Literal[False] = ...,
) -> Tensor: ...


@overload
def entropy_attack(
    predictive: Callable[[Tensor], object],
    x: Tensor,
    y: Tensor | None = None,
    *,
    eps: Budget,
    norm: Norm | str = ...,
    clamp: Clamp = ...,
    generator: torch.Generator | None = ...,
    steps: int = ...,
    step_size: Budget | None = ...,
    random_start: bool = ...,
    entropy_sign: int = ...,
    eot: bool = ...,
    chunk_size: int | None = ...,
    return_info: Literal[True],
) -> AttackResult: ...


def entropy_attack(
    predictive: Callable[[Tensor], object],
    x: Tensor,
    y: Tensor | None = None,
    *,
    eps: Budget,
    norm: Norm | str = Norm.L2,
    clamp: Clamp = (0.0, 1.0),
    generator: torch.Generator | None = None,
    steps: int = 50,
    step_size: Budget | None = None,
    random_start: bool = True,
    entropy_sign: int = 1,
    eot: bool = False,
    chunk_size: int | None = None,
    return_info: bool = False,
) -> Tensor | AttackResult:
    """ENT: PGD on ``entropy_sign`` times the predictive entropy; see :class:`EntropyAttack`.

    Args:
        predictive: Logits/log-probabilities ``(B, C)`` or ``(mean, var)``.
        x: Clean inputs ``(B, *)``, never modified.
        y: Optional labels, used only for the success mask of ``return_info``.
        eps: Budget ``ε >= 0``, a float or a ``(B,)`` tensor.
        norm: ``"l2"`` or ``"linf"``.
        clamp: Valid input range or ``None``.
        generator: Random stream for the random start and ``resample``.
        steps: ``T``, default 50.
        step_size: ``η``; default ``2.5 ε / T``.
        random_start: Start uniformly in the ball.
        entropy_sign: ``+1`` (raise) or ``-1`` (lower).
        eot: Resample the posterior draws before every step.
        chunk_size: Examples per forward/backward pass; ``None``: whole batch on
            accelerators, cache-sized chunks on the CPU (see :class:`~adv_attacks.base.Attack`).
        return_info: Return an :class:`AttackResult` (objective = the signed entropy).

    Returns:
        The adversarial batch, or an :class:`AttackResult`.
    """
    attack = EntropyAttack(
        eps=eps,
        norm=norm,
        clamp=clamp,
        steps=steps,
        step_size=step_size,
        random_start=random_start,
        entropy_sign=entropy_sign,
        eot=eot,
        chunk_size=chunk_size,
    )
    return attack(predictive, x, y, generator=generator, return_info=return_info)
