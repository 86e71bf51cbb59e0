"""The adversarially robust Gibbs posterior (paper, Section 3.4; Sabanayagam et al. 2025).

Keep the variational posterior ``q`` but use a deterministic worst-case channel
``x' = x + δ*``, ``δ* = argmax_{‖δ‖≤ε} ℓ(β; x + δ, y)``: the surrogate ELBO's unconstrained
optimum is then ``q ∝ p(β) exp(−Σ_n max_δ ℓ(β; x_n + δ, y_n))``. With a point mass one
channel draw per point is exact, so ``K = 1``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from adv_channels import Channel
from bnn_core import GaussianLikelihood, Task
from robust_vi._checks import require_deterministic
from robust_vi.objective import Objective

__all__ = ["RobustGibbs", "robust_gibbs"]


class RobustGibbs(Objective):
    """The negative surrogate ELBO under a deterministic worst-case channel, per data point.

    The channel must be a point mass (e.g. :func:`adv_channels.pgd_at_channel` or
    :func:`adv_channels.at_channel`); one known to add noise is rejected.

    Args:
        num_posterior_samples: ``S >= 1``. Default ``1``.
        task: ``"classification"`` (default) or ``"regression"``.
        likelihood: Regression: the Gaussian likelihood (default ``model.likelihood``).

    Examples:
        >>> from adv_channels import pgd_at_channel
        >>> loss = RobustGibbs()(model, pgd_at_channel(eps=2.0), x, y, dataset_size=60_000)
    """

    def __init__(
        self,
        *,
        num_posterior_samples: int = 1,
        task: Task | str = Task.CLASSIFICATION,
        likelihood: GaussianLikelihood | None = None,
    ) -> None:
        super().__init__(
            num_channel_samples=1,
            num_posterior_samples=num_posterior_samples,
            task=task,
            likelihood=likelihood,
        )

    def check_channel(self, channel: Channel) -> None:
        """Reject channels known to be stochastic."""
        require_deterministic(channel, "the robust Gibbs posterior")

    def bound(self, log_lik: Tensor) -> Tensor:
        """``log p(y | x + δ*, β)``: ``(1, B) → (B,)``."""
        return log_lik[0]


def robust_gibbs(
    model: nn.Module,
    channel: Channel,
    x: Tensor,
    y: Tensor,
    *,
    dataset_size: int,
    num_posterior_samples: int = 1,
    kl_weight: float = 1.0,
    task: Task | str = Task.CLASSIFICATION,
    likelihood: GaussianLikelihood | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The negative robust-Gibbs objective per data point (paper, Section 3.4), to minimise.

    ``−[(N/B) Σ_b (1/S) Σ_s log p(y_b | x_b + δ*_{sb}, β_s) − w KL(q ‖ p)] / N``, the attack
    ``δ*`` computed at each posterior draw ``β_s``.

    Args:
        model: A network with Bayesian layers.
        channel: A deterministic worst-case channel (point mass).
        x: Clean inputs ``(B, *)``.
        y: Labels ``(B,)`` or regression targets.
        dataset_size: ``N >= B``.
        num_posterior_samples: ``S >= 1``.
        kl_weight: ``w >= 0``.
        task: ``"classification"`` or ``"regression"``.
        likelihood: Regression: the Gaussian likelihood (default ``model.likelihood``).
        generator: Random stream for all draws.

    Returns:
        A scalar with the pathwise gradient.
    """
    objective = RobustGibbs(
        num_posterior_samples=num_posterior_samples, task=task, likelihood=likelihood
    )
    return objective(
        model, channel, x, y, dataset_size=dataset_size, kl_weight=kl_weight, generator=generator
    )
