"""Attack-agnostic channels: isotropic Gaussian noise and the identity (paper, SM-5.1).

``x' = x + σ ξ``, ``ξ ~ N(0, I)``; ``σ = 0`` is the exact identity. The density
``N(x'; x, σ² I)`` is what randomized smoothing and the reactive defence use. The noise is
not clamped to the valid input range (the density would no longer be Gaussian).
"""

from __future__ import annotations

import torch
from torch import Tensor

from adv_channels._checks import check_scalar
from adv_channels.base import Predictive
from adv_channels.gaussian import GaussianFamilyChannel

__all__ = ["GaussianChannel", "IdentityChannel"]


class GaussianChannel(GaussianFamilyChannel):
    """Isotropic Gaussian noise ``x' ~ N(x, σ² I)``; reads neither ``y`` nor ``target``.

    Args:
        sigma: Noise standard deviation ``σ >= 0`` (input units, per element). ``σ = 0``
            gives the identity (a point mass: no density).

    Shape:
        - x: ``(B, *)``; output: ``(B, *)``; ``log_prob``: ``(B,)``.

    Examples:
        >>> ch = GaussianChannel(sigma=0.25)
        >>> x = torch.zeros(3, 4)
        >>> x_adv = ch.sample(x, generator=torch.Generator().manual_seed(0))
        >>> ch.log_prob(x_adv, x).shape
        torch.Size([3])
    """

    def __init__(self, sigma: float) -> None:
        super().__init__()
        self.sigma = check_scalar(sigma, "sigma")

    @property
    def has_density(self) -> bool:
        """``σ > 0``."""
        return self.sigma > 0

    def loc_scale(
        self,
        x: Tensor,
        y: Tensor | None,
        target: Predictive | None,
        *,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, float]:
        """``μ = x``, ``σ`` the fixed noise level."""
        return x, self.sigma

    def extra_repr(self) -> str:
        """The options, for ``repr``."""
        return f"sigma={self.sigma}"


class IdentityChannel(GaussianChannel):
    """The clean channel ``x' = x``, with optional Gaussian augmentation ``x' ~ N(x, σ₀² I)``.

    Paper, SM-5.1: the non-adversarial component of the mixtures OS50, MIX, NN50
    and of adversarial training. ``σ₀ = 0`` (default) returns a copy of ``x`` exactly.

    Args:
        sigma0: Augmentation noise ``σ₀ >= 0``; default ``0.0``.

    Examples:
        >>> x = torch.rand(2, 3)
        >>> bool(torch.equal(IdentityChannel().sample(x), x))
        True
    """

    def __init__(self, sigma0: float = 0.0) -> None:
        super().__init__(check_scalar(sigma0, "sigma0"))

    @property
    def sigma0(self) -> float:
        """The augmentation noise ``σ₀`` (the same as :attr:`sigma`)."""
        return self.sigma

    def extra_repr(self) -> str:
        """The options, for ``repr``."""
        return f"sigma0={self.sigma}"
