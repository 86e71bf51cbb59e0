"""Point-estimate adversarial training, the MAP limit of robust VI (paper, Prop. 3.4, eq. 14).

With a flat prior (no KL term), a point estimate ``β̂`` and a deterministic channel
``x' = x + δ*``, maximising the robust posterior is ``min_β Σ_n ℓ(β; x_n + δ*_n, y_n)``:
adversarial training (Madry et al. 2018 with a PGD channel). The paper's AT baseline uses
minibatches of ½ clean + ½ deterministic one-step attacks
(:func:`adv_channels.at50_channel`); AT-PGD the multi-step channel
(:func:`adv_channels.pgd_at_channel`). The model is a deterministic network or a Bayesian
one evaluated at its posterior mean (``"mean"`` mode: only the means ``μ`` are trained).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from adv_channels import Channel
from bnn_core import GaussianLikelihood, Task
from robust_vi._checks import require_deterministic
from robust_vi.objective import Objective

__all__ = ["AdversarialTraining", "adversarial_training"]


class AdversarialTraining(Objective):
    """The adversarial-training loss ``mean_b ℓ(β̂; x'_b, y_b)`` on a deterministic channel.

    ``ℓ`` is the negative log-likelihood (cross-entropy; Gaussian NLL for regression). The
    attack is computed at the point estimate itself (the posterior mean).

    Args:
        task: ``"classification"`` (default) or ``"regression"``.
        likelihood: Regression: the Gaussian likelihood (default ``model.likelihood``).

    Examples:
        >>> from adv_channels import at50_channel
        >>> net = mnist_cnn(bayesian=False)
        >>> loss = AdversarialTraining()(net, at50_channel(eps=2.0), x, y, dataset_size=60_000)
    """

    def __init__(
        self,
        *,
        task: Task | str = Task.CLASSIFICATION,
        likelihood: GaussianLikelihood | None = None,
    ) -> None:
        super().__init__(task=task, likelihood=likelihood, point_estimate=True)

    def check_channel(self, channel: Channel) -> None:
        """Reject channels known to be stochastic."""
        require_deterministic(channel, "adversarial training")

    def bound(self, log_lik: Tensor) -> Tensor:
        """``log p(y | x', β̂)``: ``(1, B) → (B,)``."""
        return log_lik[0]


def adversarial_training(
    model: nn.Module,
    channel: Channel,
    x: Tensor,
    y: Tensor,
    *,
    dataset_size: int,
    task: Task | str = Task.CLASSIFICATION,
    likelihood: GaussianLikelihood | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The adversarial-training loss (the MAP limit, paper eq. 14), to minimise.

    ``(1/B) Σ_b −log p(y_b | x'_b, β̂)``, ``x'_b`` from the deterministic ``channel``
    attacking ``β̂`` (the posterior mean of a Bayesian model, or a deterministic network).
    No KL term (flat prior); ``dataset_size`` is only checked, since the loss is already
    per point.

    Args:
        model: A deterministic network or a Bayesian one (evaluated in ``"mean"`` mode).
        channel: A deterministic channel, e.g. :func:`adv_channels.at50_channel`.
        x: Clean inputs ``(B, *)``.
        y: Labels ``(B,)`` or regression targets.
        dataset_size: ``N >= B``.
        task: ``"classification"`` or ``"regression"``.
        likelihood: Regression: the Gaussian likelihood (default ``model.likelihood``).
        generator: Random stream (mixture assignment, random starts).

    Returns:
        A scalar: the mean cross-entropy (Gaussian NLL) on the channel's inputs.

    Examples:
        >>> from adv_channels import at_channel
        >>> loss = adversarial_training(net, at_channel(eps=2.0), x, y, dataset_size=len(x))
    """
    objective = AdversarialTraining(task=task, likelihood=likelihood)
    return objective(model, channel, x, y, dataset_size=dataset_size, generator=generator)
