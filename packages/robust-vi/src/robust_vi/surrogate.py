"""The surrogate ELBO, the paper's main objective (paper, eq. 11).

``L_sur(φ) = E_q[Σ_n E_{x'~p(x'|x_n,β)} log p(y_n | x', β)] − KL(q ‖ p)``, a lower bound of
the exact ELBO (Jensen) whose unconstrained optimum is the Gibbs posterior
``q*(β) ∝ p(β) exp(Σ_n E_{x'} log p(y_n | x', β))``. The inner expectation is estimated
with ``K`` channel draws per point: ``T_b = (1/K) Σ_k log p(y_b | x'_{bk}, β)``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from adv_channels import Channel
from bnn_core import GaussianLikelihood, Task
from robust_vi.objective import Objective

__all__ = ["SurrogateELBO", "surrogate_elbo"]


class SurrogateELBO(Objective):
    """The negative surrogate ELBO per data point, with ``K`` channel draws per point.

    With the identity channel (``x' = x``) it is the plain (negative) ELBO of BL.

    Args:
        num_channel_samples: ``K >= 1``. Default ``1`` (the paper's choice).
        num_posterior_samples: ``S >= 1``. Default ``1``.
        task: ``"classification"`` (default) or ``"regression"``.
        likelihood: Regression: the Gaussian likelihood (default ``model.likelihood``).

    Shape:
        - x: ``(B, *)``; y: ``(B,)``; output: a scalar.

    Examples:
        >>> from adv_channels import mix_channel
        >>> objective = SurrogateELBO(num_channel_samples=5)
        >>> loss = objective(model, mix_channel(eps=2.0, sigma=0.2), x, y, dataset_size=60_000)
        >>> loss.backward()  # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        num_channel_samples: int = 1,
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
        """``(1/K) Σ_k log p_k``: ``(K, B) → (B,)``."""
        return log_lik.mean(dim=0)


def surrogate_elbo(
    model: nn.Module,
    channel: Channel,
    x: Tensor,
    y: Tensor,
    *,
    dataset_size: int,
    num_channel_samples: int = 1,
    num_posterior_samples: int = 1,
    kl_weight: float = 1.0,
    task: Task | str = Task.CLASSIFICATION,
    likelihood: GaussianLikelihood | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The negative surrogate ELBO per data point (paper, eq. 11), to minimise.

    ``−[(N/B) Σ_b (1/S) Σ_s (1/K) Σ_k log p(y_b | x'_{sbk}, β_s) − w KL(q ‖ p)] / N`` with
    ``β_s ~ q`` and ``x'_{sbk} ~ p(x' | x_b, β_s)`` pathwise.

    Args:
        model: A network with Bayesian layers (:mod:`bnn_core`).
        channel: The adversarial channel (:mod:`adv_channels`).
        x: Clean inputs ``(B, *)``.
        y: Labels ``(B,)`` or regression targets.
        dataset_size: ``N >= B``.
        num_channel_samples: ``K >= 1`` channel draws per point.
        num_posterior_samples: ``S >= 1`` posterior draws.
        kl_weight: ``w >= 0``, the KL weight (``1``: the ELBO).
        task: ``"classification"`` or ``"regression"``.
        likelihood: Regression: the Gaussian likelihood (default ``model.likelihood``).
        generator: Random stream for all draws.

    Returns:
        A scalar (nats per data point) with the pathwise gradient.

    Examples:
        >>> from adv_channels import IdentityChannel
        >>> loss = surrogate_elbo(mnist_cnn(), IdentityChannel(), x, y, dataset_size=60_000)
    """
    objective = SurrogateELBO(
        num_channel_samples=num_channel_samples,
        num_posterior_samples=num_posterior_samples,
        task=task,
        likelihood=likelihood,
    )
    return objective(
        model, channel, x, y, dataset_size=dataset_size, kl_weight=kl_weight, generator=generator
    )
