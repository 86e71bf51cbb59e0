"""The factorised Gaussian prior over weights and biases (paper, SM-6.1.1)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from bnn_core._checks import check_finite_float, check_positive_float

__all__ = ["GaussianPrior", "log_softplus", "softplus_inverse"]


@dataclass(frozen=True)
class GaussianPrior:
    """A factorised Gaussian prior ``p(w_j) = N(loc, scale²)`` on every weight and bias.

    The paper uses ``N(0, 1)`` (SM-6.1.1); both numbers are configurable.

    Attributes:
        loc: Prior mean. Default ``0.0``.
        scale: Prior standard deviation, ``> 0``. Default ``1.0``.

    Examples:
        >>> prior = GaussianPrior(scale=0.1)
        >>> mu, rho = torch.zeros(3), torch.zeros(3)
        >>> prior.kl(mu, rho).shape
        torch.Size([3])
    """

    loc: float = 0.0
    scale: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "loc", check_finite_float(self.loc, "loc"))
        object.__setattr__(self, "scale", check_positive_float(self.scale, "scale"))

    def kl(self, mu: Tensor, rho: Tensor) -> Tensor:
        """Elementwise ``KL(N(μ, σ²) ‖ N(loc, scale²))`` with ``σ = softplus(ρ)``.

        ``KL = log(scale/σ) + (σ² + (μ − loc)²) / (2 scale²) − 1/2``.

        Args:
            mu: Posterior means.
            rho: Posterior scale parameters, same shape as ``mu``.

        Returns:
            The KL of every element (nats), shape of ``mu``.
        """
        sigma = F.softplus(rho)
        var_ratio = (sigma.square() + (mu - self.loc).square()) / (2.0 * self.scale**2)
        return math.log(self.scale) - log_softplus(rho) + var_ratio - 0.5

    def log_prob(self, value: Tensor) -> Tensor:
        """Elementwise log-density ``log N(value; loc, scale²)`` (nats)."""
        z = (value - self.loc) / self.scale
        return -0.5 * z.square() - math.log(self.scale) - 0.5 * math.log(2.0 * math.pi)

    def to_dict(self) -> dict[str, float]:
        """The prior as a plain dict (for saving a model's configuration)."""
        return {"loc": self.loc, "scale": self.scale}


_LOG_SOFTPLUS_SWITCH = -37.0


def log_softplus(rho: Tensor) -> Tensor:
    """``log(softplus(ρ))``, accurate (and with finite gradients) for very negative ``ρ``.

    Below ``ρ = −37``, ``log softplus(ρ) = ρ − e^ρ/2 + O(e^{2ρ}) = ρ`` to float64 precision
    (``e^{−37} < 10^{−16}``); above, the direct formula is used. The double ``where`` keeps the
    unused branch from producing ``inf · 0 = NaN`` gradients.
    """
    small = rho < _LOG_SOFTPLUS_SWITCH
    safe = torch.where(small, torch.zeros_like(rho), rho)
    return torch.where(small, rho, torch.log(F.softplus(safe)))


def softplus_inverse(sigma: float) -> float:
    """The ``ρ`` with ``softplus(ρ) = σ``: ``log(expm1(σ))`` (``σ > 0``)."""
    sigma = check_positive_float(sigma, "sigma")
    if sigma > 20.0:
        return sigma + math.log(-math.expm1(-sigma))
    return math.log(math.expm1(sigma))
