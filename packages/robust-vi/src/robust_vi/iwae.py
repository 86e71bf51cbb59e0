"""The importance-weighted (IWAE) bound of the exact robust ELBO (paper, SM-3).

``L_K(φ) = E_q[Σ_n log (1/K) Σ_k p(y_n | x'_{nk}, β)] − KL(q ‖ p)``, ``x'_{nk} ~ p(x'|x_n, β)``:
between the surrogate ELBO (``K = 1``) and the exact ELBO (``K → ∞``), non-decreasing in
``K`` in expectation (Burda et al. 2015). Computed with log-sum-exp.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from adv_channels import Channel
from bnn_core import GaussianLikelihood, Task
from robust_vi.objective import Objective

__all__ = ["IWAEBound", "iwae_elbo"]


class IWAEBound(Objective):
    """The negative IWAE bound per data point, with ``K`` channel draws per point.

    On the same draws it is never below the surrogate's value (the log of a mean is at
    least the mean of the logs), so as a loss it is never above the surrogate's loss.

    Args:
        num_channel_samples: ``K >= 1``. Default ``5``.
        num_posterior_samples: ``S >= 1``. Default ``1``.
        task: ``"classification"`` (default) or ``"regression"``.
        likelihood: Regression: the Gaussian likelihood (default ``model.likelihood``).

    Shape:
        - x: ``(B, *)``; y: ``(B,)``; output: a scalar.

    Examples:
        >>> loss = IWAEBound(num_channel_samples=10)(model, channel, x, y, dataset_size=60_000)
    """

    def __init__(
        self,
        *,
        num_channel_samples: int = 5,
        num_posterior_samples: int = 1,
        task: Task | str = Task.CLASSIFICATION,
        likelihood: GaussianLikelihood | None = None,
    ) -> None:
        super().__init__(
            num_channel_samples=num_channel_samples,
            num_posterior_samples=num_posterior_samples,
            task=task,
            likelihood=likelihood,
        )

    def bound(self, log_lik: Tensor) -> Tensor:
        """``log (1/K) Σ_k p_k = logsumexp_k log p_k − log K``: ``(K, B) → (B,)``."""
        return torch.logsumexp(log_lik, dim=0) - math.log(log_lik.shape[0])


def iwae_elbo(
    model: nn.Module,
    channel: Channel,
    x: Tensor,
    y: Tensor,
    *,
    dataset_size: int,
    num_channel_samples: int = 5,
    num_posterior_samples: int = 1,
    kl_weight: float = 1.0,
    task: Task | str = Task.CLASSIFICATION,
    likelihood: GaussianLikelihood | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The negative IWAE bound per data point (paper, SM-3), to minimise.

    ``−[(N/B) Σ_b (1/S) Σ_s log (1/K) Σ_k p(y_b | x'_{sbk}, β_s) − w KL(q ‖ p)] / N``.

    Args:
        model: A network with Bayesian layers.
        channel: The adversarial channel.
        x: Clean inputs ``(B, *)``.
        y: Labels ``(B,)`` or regression targets.
        dataset_size: ``N >= B``.
        num_channel_samples: ``K >= 1`` channel draws per point. Default ``5``.
        num_posterior_samples: ``S >= 1`` posterior draws.
        kl_weight: ``w >= 0``.
        task: ``"classification"`` or ``"regression"``.
        likelihood: Regression: the Gaussian likelihood (default ``model.likelihood``).
        generator: Random stream for all draws.

    Returns:
        A scalar (nats per data point) with the pathwise gradient.
    """
    objective = IWAEBound(
        num_channel_samples=num_channel_samples,
        num_posterior_samples=num_posterior_samples,
        task=task,
        likelihood=likelihood,
    )
    return objective(
        model, channel, x, y, dataset_size=dataset_size, kl_weight=kl_weight, generator=generator
    )
