"""Local smoothness penalties ``R(β; x, y)`` of the generalised posteriors (paper, eq. 15).

* **ALP** (Kannan et al. 2018): ``R = ‖z(x) − z(x*)‖²₂`` on the logits ``z``, with ``x*``
  from a deterministic adversarial channel.
* **TRADES** (Zhang et al. 2019): ``R = KL(p(· | x, β) ‖ p(· | x*, β))``, clean first, with
  ``x*`` maximising this KL from ``x + 0.001 ξ`` (:func:`robust_vi.trades_attack`).

Both are evaluated at the same posterior draw ``β`` as the likelihood term. For regression
the logits are the predicted means (ALP) and the predictive is ``N(f_β(x), s²)``, so the
TRADES KL is ``(f_β(x) − f_β(x*))² / (2 s²)``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor

from adv_attacks import Norm
from adv_channels import Channel
from bnn_core import GaussianLikelihood
from robust_vi._checks import (
    as_enum,
    check_channel,
    check_clamp,
    check_float,
    check_positive_int,
)
from robust_vi.trades_attack import trades_attack

__all__ = ["ALPPenalty", "Penalty", "TradesPenalty", "alp_penalty", "trades_penalty"]


def trades_penalty(clean_logits: Tensor, adversarial_logits: Tensor) -> Tensor:
    """``KL(softmax(z(x)) ‖ softmax(z(x*)))`` per example (nats), differentiable in both.

    Args:
        clean_logits: ``(B, C)`` logits (or log-probabilities) at the clean inputs.
        adversarial_logits: ``(B, C)`` at ``x*``.

    Returns:
        ``(B,)``, ``>= 0``.

    Examples:
        >>> trades_penalty(torch.zeros(1, 2), torch.tensor([[0.0, 1.0]]))
        tensor([0.1201])
    """
    if clean_logits.shape != adversarial_logits.shape or clean_logits.ndim != 2:
        raise ValueError(
            "clean_logits and adversarial_logits must both be (B, C); got "
            f"{tuple(clean_logits.shape)} and {tuple(adversarial_logits.shape)}"
        )
    lp = clean_logits.log_softmax(dim=-1)
    lq = adversarial_logits.log_softmax(dim=-1)
    p = lp.exp()
    return torch.where(p > 0, p * (lp - lq), torch.zeros_like(p)).sum(dim=-1)


def alp_penalty(clean_logits: Tensor, adversarial_logits: Tensor) -> Tensor:
    """``‖z(x) − z(x*)‖²₂`` per example (squared L2 over all non-batch dimensions).

    Args:
        clean_logits: ``(B, C)`` logits (regression: predicted means) at the clean inputs.
        adversarial_logits: The same at ``x*``.

    Returns:
        ``(B,)``.

    Examples:
        >>> alp_penalty(torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 0.0]]))
        tensor([5.])
    """
    if clean_logits.shape != adversarial_logits.shape or clean_logits.ndim < 1:
        raise ValueError(
            "clean_logits and adversarial_logits must have the same (B, ...) shape; got "
            f"{tuple(clean_logits.shape)} and {tuple(adversarial_logits.shape)}"
        )
    diff = (clean_logits - adversarial_logits).reshape(clean_logits.shape[0], -1)
    return diff.square().sum(dim=1)


class Penalty(ABC):
    """A local smoothness penalty: how ``x*`` is found and how ``R`` is computed."""

    @abstractmethod
    def adversarial_input(
        self, predictive: object, x: Tensor, y: Tensor, generator: torch.Generator | None
    ) -> Tensor:
        """``x*`` for the clean batch ``x`` under the current draw ``β`` (``predictive``)."""

    @abstractmethod
    def values(
        self, clean: Tensor, adversarial: Tensor, likelihood: GaussianLikelihood | None
    ) -> Tensor:
        """``R_b`` ``(B,)`` from the model's outputs at ``x`` and at ``x*``."""


class TradesPenalty(Penalty):
    """TRADES: ``KL(p(· | x, β) ‖ p(· | x*, β))`` with the KL-maximising ``x*``.

    Args:
        eps: Budget ``ε >= 0`` of the search.
        steps: Ascent steps ``T >= 1``. Default ``10``.
        step_size: ``η``; default ``2.5 ε / T``.
        norm: ``"l2"`` (default) or ``"linf"``.
        clamp: Valid input range; default ``(0.0, 1.0)``, ``None`` for unbounded inputs.

    Examples:
        >>> penalty = TradesPenalty(eps=2.0)
    """

    def __init__(
        self,
        *,
        eps: float,
        steps: int = 10,
        step_size: float | None = None,
        norm: Norm | str = Norm.L2,
        clamp: tuple[float, float] | None = (0.0, 1.0),
    ) -> None:
        self.eps = check_float(eps, "eps")
        self.steps = check_positive_int(steps, "steps")
        self.step_size = None if step_size is None else check_float(step_size, "step_size")
        self.norm = as_enum(Norm, norm, "norm")
        self.clamp = check_clamp(clamp)

    def adversarial_input(
        self, predictive: object, x: Tensor, y: Tensor, generator: torch.Generator | None
    ) -> Tensor:
        """Maximise the KL from ``x + 0.001 ξ`` (:func:`robust_vi.trades_attack`)."""
        return trades_attack(
            predictive,  # type: ignore[arg-type]
            x,
            eps=self.eps,
            steps=self.steps,
            step_size=self.step_size,
            norm=self.norm,
            clamp=self.clamp,
            generator=generator,
        )

    def values(
        self, clean: Tensor, adversarial: Tensor, likelihood: GaussianLikelihood | None
    ) -> Tensor:
        """Categorical KL of the softmaxes, or ``(f(x) − f(x*))² / (2 s²)`` for regression."""
        if likelihood is None:
            return trades_penalty(clean, adversarial)
        diff = (clean - adversarial).reshape(clean.shape[0], -1)
        return diff.square().sum(dim=1) / (2.0 * likelihood.variance)

    def __repr__(self) -> str:
        return (
            f"TradesPenalty(eps={self.eps}, steps={self.steps}, step_size={self.step_size}, "
            f"norm={self.norm.value!r}, clamp={self.clamp})"
        )


class ALPPenalty(Penalty):
    """ALP: ``‖z(x) − z(x*)‖²`` with ``x*`` from a deterministic adversarial channel.

    Args:
        adversary: The channel giving ``x*`` (e.g. :func:`adv_channels.at_channel`: the
            deterministic one-step attack), evaluated at the same draw ``β``.

    Examples:
        >>> from adv_channels import at_channel
        >>> penalty = ALPPenalty(at_channel(eps=2.0))
    """

    def __init__(self, adversary: Channel) -> None:
        self.adversary = check_channel(adversary, "adversary")

    def adversarial_input(
        self, predictive: object, x: Tensor, y: Tensor, generator: torch.Generator | None
    ) -> Tensor:
        """``x* ~ adversary(x, y, β)`` (a point mass for the paper's ALP)."""
        return self.adversary.sample(x, y, predictive, generator=generator)  # type: ignore[arg-type]

    def values(
        self, clean: Tensor, adversarial: Tensor, likelihood: GaussianLikelihood | None
    ) -> Tensor:
        """Squared L2 distance of the logits (regression: of the predicted means)."""
        return alp_penalty(clean, adversarial)

    def __repr__(self) -> str:
        return f"ALPPenalty(adversary={self.adversary!r})"
