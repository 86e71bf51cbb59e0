"""Generalised posteriors with a local smoothness penalty (paper, eq. 15; Knoblauch et al. 2022).

``L(φ) = E_q[Σ_n E_{x'} log p(y_n | x', β) − λ Σ_n R(β; x_n, y_n)] − KL(q ‖ p)``: the
surrogate ELBO with a data-dependent penalty of weight ``λ >= 0``. With a point estimate
(flat prior, ``point_estimate=True``) it is the usual training objective of **TRADES**
(identity channel, ``R`` = the TRADES KL) or **ALP** (the AT channel, ``R`` = logit
pairing); see :mod:`robust_vi.penalties`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from adv_channels import Channel
from bnn_core import GaussianLikelihood, Task
from robust_vi._checks import check_float
from robust_vi.objective import Objective
from robust_vi.penalties import Penalty
from robust_vi.posterior_draw import PosteriorDraw

__all__ = ["GeneralisedELBO", "generalised_elbo"]


class GeneralisedELBO(Objective):
    """The negative surrogate ELBO plus ``λ`` times a smoothness penalty, per data point.

    ``loss = −mean_b (1/K) Σ_k log p(y_b | x'_{bk}, β) + λ mean_b R_b + w KL / N`` (the KL
    term is absent for a point estimate). ``x*`` and ``R`` use the same draw ``β`` as the
    likelihood; the clean inputs, the ``K`` channel draws and ``x*`` go through one forward
    pass.

    Args:
        penalty: A :class:`~robust_vi.TradesPenalty` or :class:`~robust_vi.ALPPenalty`.
        weight: ``λ >= 0`` (TRADES' ``β``, ALP's logit-pairing weight).
        num_channel_samples: ``K >= 1``. Default ``1``.
        num_posterior_samples: ``S >= 1``. Default ``1``.
        task: ``"classification"`` (default) or ``"regression"``.
        likelihood: Regression: the Gaussian likelihood (default ``model.likelihood``).
        point_estimate: The MAP limit (posterior mean, flat prior). Default ``False``.

    Examples:
        >>> from adv_channels import IdentityChannel
        >>> from robust_vi import TradesPenalty
        >>> trades = GeneralisedELBO(TradesPenalty(eps=2.0), weight=6.0, point_estimate=True)
        >>> loss = trades(net, IdentityChannel(), x, y, dataset_size=60_000)
    """

    def __init__(
        self,
        penalty: Penalty,
        *,
        weight: float,
        num_channel_samples: int = 1,
        num_posterior_samples: int = 1,
        task: Task | str = Task.CLASSIFICATION,
        likelihood: GaussianLikelihood | None = None,
        point_estimate: bool = False,
    ) -> None:
        super().__init__(
            num_channel_samples=num_channel_samples,
            num_posterior_samples=num_posterior_samples,
            task=task,
            likelihood=likelihood,
            point_estimate=point_estimate,
        )
        if not isinstance(penalty, Penalty):
            raise TypeError(
                "penalty must be a robust_vi Penalty (TradesPenalty, ALPPenalty); got "
                f"{type(penalty).__name__}"
            )
        self.penalty_fn = penalty
        self.penalty_weight = check_float(weight, "weight")

    def bound(self, log_lik: Tensor) -> Tensor:
        """``(1/K) Σ_k log p_k`` (the surrogate's term)."""
        return log_lik.mean(dim=0)

    def extra_inputs(
        self,
        predictive: PosteriorDraw,
        x: Tensor,
        y: Tensor,
        generator: torch.Generator | None,
    ) -> list[Tensor]:
        """The clean batch and ``x*``."""
        return [x, self.penalty_fn.adversarial_input(predictive, x, y, generator)]

    def penalty(
        self, outputs: list[Tensor], likelihood: GaussianLikelihood | None
    ) -> Tensor | None:
        """``R_b`` from the outputs at ``x`` and ``x*``."""
        clean, adversarial = outputs
        return self.penalty_fn.values(clean, adversarial, likelihood)

    def extra_repr(self) -> str:
        """The configuration, for ``repr``."""
        return f"{self.penalty_fn!r}, weight={self.penalty_weight}, " + super().extra_repr()


def generalised_elbo(
    model: nn.Module,
    channel: Channel,
    x: Tensor,
    y: Tensor,
    *,
    dataset_size: int,
    penalty: Penalty,
    weight: float,
    num_channel_samples: int = 1,
    num_posterior_samples: int = 1,
    point_estimate: bool = False,
    kl_weight: float = 1.0,
    task: Task | str = Task.CLASSIFICATION,
    likelihood: GaussianLikelihood | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The negative generalised-posterior objective per data point (paper, eq. 15), to minimise.

    Args:
        model: A network (Bayesian unless ``point_estimate``).
        channel: The channel of the likelihood term (identity for TRADES, the AT channel
            for ALP).
        x: Clean inputs ``(B, *)``.
        y: Labels ``(B,)`` or regression targets.
        dataset_size: ``N >= B``.
        penalty: :class:`~robust_vi.TradesPenalty` or :class:`~robust_vi.ALPPenalty`.
        weight: ``λ >= 0``.
        num_channel_samples: ``K >= 1``.
        num_posterior_samples: ``S >= 1``.
        point_estimate: The MAP limit (no KL, posterior mean).
        kl_weight: ``w >= 0``.
        task: ``"classification"`` or ``"regression"``.
        likelihood: Regression: the Gaussian likelihood (default ``model.likelihood``).
        generator: Random stream for all draws.

    Returns:
        A scalar with the pathwise gradient.
    """
    objective = GeneralisedELBO(
        penalty,
        weight=weight,
        num_channel_samples=num_channel_samples,
        num_posterior_samples=num_posterior_samples,
        task=task,
        likelihood=likelihood,
        point_estimate=point_estimate,
    )
    return objective(
        model, channel, x, y, dataset_size=dataset_size, kl_weight=kl_weight, generator=generator
    )
