"""The consistent ratio-of-means gradient estimator of the exact robust ELBO (paper, SM-4).

The exact ELBO ``E_q[Σ_n log E_{x'} p(y_n | x', β)] − KL`` has a pathwise gradient that is a
ratio of expectations. With posterior draws ``β_s`` and channel draws ``x'_{sk}``, per point

``∇φ ≈ (1/S) Σ_s [Σ_k ∇φ p(y | x'_{sk}, β_s)] / [Σ_k p(y | x'_{sk}, β_s)]
     = (1/S) Σ_s Σ_k w_{sk} ∇φ log p(y | x'_{sk}, β_s)``,  ``w_{sk} = p_{sk} / Σ_j p_{sj}``,

biased for finite ``K`` and consistent as ``K → ∞``. It is implemented in this ratio form
(normalised weights, held constant, times the per-draw log-likelihoods), not by
differentiating a log-sum-exp; on the same draws it equals the gradient of the IWAE bound.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from adv_channels import Channel
from bnn_core import GaussianLikelihood, Task
from robust_vi.objective import Objective

__all__ = ["RatioOfMeans", "ratio_of_means"]


class RatioOfMeans(Objective):
    """A loss whose gradient is the ratio-of-means estimator of the exact ELBO's gradient.

    The loss *value* is the IWAE estimate of the exact ELBO on the same draws (a number to
    monitor); its *gradient* is ``−(1/N)`` times the ratio-of-means estimate (module
    docstring) plus the KL gradient, through the detached weights ``w_{sk}``.

    Args:
        num_channel_samples: ``K >= 1``. Default ``10``.
        num_posterior_samples: ``S >= 1``. Default ``1``.
        task: ``"classification"`` (default) or ``"regression"``.
        likelihood: Regression: the Gaussian likelihood (default ``model.likelihood``).

    Shape:
        - x: ``(B, *)``; y: ``(B,)``; output: a scalar.

    Examples:
        >>> objective = RatioOfMeans(num_channel_samples=20, num_posterior_samples=4)
        >>> objective(model, channel, x, y, dataset_size=60_000).backward()  # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        num_channel_samples: int = 10,
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
        """Value ``log (1/K) Σ_k p_k``, gradient ``Σ_k w_k ∇ log p_k``: ``(K, B) → (B,)``."""
        log_lik_const = log_lik.detach()
        log_total = torch.logsumexp(log_lik_const, dim=0)  # log Σ_j p_j
        # p_k / Σ_j p_j, held constant (exp of a difference: torch.softmax over a leading
        # dimension is far slower on a busy multi-threaded CPU for these small tensors).
        weights = (log_lik_const - log_total).exp()
        carrier = (weights * log_lik).sum(dim=0)
        value = log_total - math.log(log_lik.shape[0])
        return value + (carrier - carrier.detach())


def ratio_of_means(
    model: nn.Module,
    channel: Channel,
    x: Tensor,
    y: Tensor,
    *,
    dataset_size: int,
    num_channel_samples: int = 10,
    num_posterior_samples: int = 1,
    kl_weight: float = 1.0,
    task: Task | str = Task.CLASSIFICATION,
    likelihood: GaussianLikelihood | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """A loss carrying the ratio-of-means gradient of the negative exact ELBO (paper, SM-4).

    Args:
        model: A network with Bayesian layers.
        channel: The adversarial channel (reparameterised, for the pathwise gradient).
        x: Clean inputs ``(B, *)``.
        y: Labels ``(B,)`` or regression targets.
        dataset_size: ``N >= B``.
        num_channel_samples: ``K >= 1`` channel draws per point. Default ``10``.
        num_posterior_samples: ``S >= 1`` posterior draws.
        kl_weight: ``w >= 0``.
        task: ``"classification"`` or ``"regression"``.
        likelihood: Regression: the Gaussian likelihood (default ``model.likelihood``).
        generator: Random stream for all draws.

    Returns:
        A scalar: value = the IWAE estimate (per point, negated), gradient = the
        ratio-of-means estimate (negated, per point).
    """
    objective = RatioOfMeans(
        num_channel_samples=num_channel_samples,
        num_posterior_samples=num_posterior_samples,
        task=task,
        likelihood=likelihood,
    )
    return objective(
        model, channel, x, y, dataset_size=dataset_size, kl_weight=kl_weight, generator=generator
    )
