"""Gaussian channels ``x' = μ(x, y, β) + σ ⊙ ξ``, ``ξ ~ N(0, I)``: the shared machinery.

Every channel with a known density in this package is of this form (paper, SM-5): identity and
isotropic Gaussian (``μ = x``), one-step (``μ`` = the attack point), learned (``μ = x + m``,
per-element ``σ = exp ℓ``). Sampling is reparameterised, so gradients flow from ``x'`` to
``μ`` and ``σ``. The noise is never clamped: where inputs have a valid range only ``μ`` (the
attack point) is clamped, so that ``N(x'; μ, diag σ²)`` stays the exact density.
"""

from __future__ import annotations

import math
from abc import abstractmethod

import torch
from torch import Tensor

from adv_channels._checks import check_x, check_x_adv, check_y
from adv_channels.base import Channel, NoDensityError, Predictive

__all__ = ["GaussianFamilyChannel", "diag_normal_log_prob", "gaussian_sample", "standard_normal"]

_LOG_2PI = math.log(2.0 * math.pi)


def gaussian_sample(
    loc: Tensor, scale: Tensor | float, x: Tensor, generator: torch.Generator | None
) -> Tensor:
    """``x' = μ + σ ⊙ ξ`` for a channel's location and scale at the clean batch ``x``.

    ``σ = 0`` (a float) is the point mass: ``μ`` itself, copied if it is ``x``, so that the
    caller's tensor is never returned.
    """
    if isinstance(scale, float) and scale == 0.0:
        return loc.clone() if loc is x else loc
    return loc + scale * standard_normal(x, generator)


def standard_normal(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Standard normal noise of ``x``'s shape, dtype and device.

    Args:
        x: The batch the noise is for; only its shape, dtype and device are read.
        generator: Random stream; it may live on another device than ``x`` (e.g. a CPU
            generator for a CUDA batch, which makes the draw identical on both devices).

    Returns:
        ``ξ ~ N(0, I)``, shape ``x.shape``.

    Examples:
        >>> g = torch.Generator().manual_seed(0)
        >>> standard_normal(torch.zeros(2, 3), g).shape
        torch.Size([2, 3])
    """
    dev = generator.device if generator is not None else x.device
    xi = torch.randn(x.shape, generator=generator, device=dev, dtype=x.dtype)
    return xi.to(x.device)


def diag_normal_log_prob(value: Tensor, loc: Tensor, scale: Tensor | float) -> Tensor:
    """Log-density of ``N(loc, diag scale²)`` per example, summed over non-batch dimensions.

    ``log p = -½ Σ ((v - μ)/σ)² - Σ log σ - (D/2) log 2π``, ``D`` the features per example.

    Args:
        value: Points ``(B, *)``.
        loc: Means ``(B, *)``.
        scale: Standard deviations ``> 0``: a float or a tensor broadcastable to ``loc``.

    Returns:
        Shape ``(B,)``.

    Examples:
        >>> v = torch.tensor([[0.0, 1.0]])
        >>> lp = diag_normal_log_prob(v, torch.zeros(1, 2), 1.0)
        >>> ref = torch.distributions.Normal(0.0, 1.0).log_prob(v).sum(1)
        >>> bool(torch.allclose(lp, ref))
        True
    """
    b = value.shape[0]
    d = value[0].numel() if b else 0
    z = (value - loc) / scale
    quad = -0.5 * z.reshape(b, -1).square().sum(dim=1)
    if isinstance(scale, Tensor):
        log_det = torch.log(scale).expand_as(value).reshape(b, -1).sum(dim=1)
    else:
        log_det = d * math.log(scale)
    return quad - log_det - 0.5 * d * _LOG_2PI


class GaussianFamilyChannel(Channel):
    """A channel ``x' = μ + σ ⊙ ξ`` with ``μ, σ`` from :meth:`loc_scale` (paper, SM-5).

    Subclasses implement :meth:`loc_scale` and :attr:`has_density` (true where ``σ > 0``);
    this class provides :meth:`sample`, :meth:`log_prob` and :meth:`mean`. ``σ = 0`` is the
    point mass at ``μ`` (deterministic; no density, but :meth:`mean` is ``μ``).
    """

    @abstractmethod
    def loc_scale(
        self,
        x: Tensor,
        y: Tensor | None,
        target: Predictive | None,
        *,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor | float]:
        """The Gaussian's location ``μ`` ``(B, *)`` and scale ``σ`` (a float or a tensor).

        Called with a validated ``x`` and ``y``.
        """

    def sample(
        self,
        x: Tensor,
        y: Tensor | None = None,
        target: Predictive | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Draw ``x' = μ + σ ⊙ ξ`` (reparameterised); see :meth:`Channel.sample`.

        Shape:
            - x: ``(B, *)``; y: ``(B,)``; output: ``(B, *)``.
        """
        x = check_x(x)
        y = check_y(y, x)
        loc, scale = self.loc_scale(x, y, target, generator=generator)
        return gaussian_sample(loc, scale, x, generator)

    def log_prob(
        self,
        x_adv: Tensor,
        x: Tensor,
        y: Tensor | None = None,
        target: Predictive | None = None,
    ) -> Tensor:
        """Log-density ``log N(x_adv; μ(x, y, β), diag σ²)`` per example.

        Args:
            x_adv: Observed inputs ``(B, *)``.
            x: Clean inputs ``(B, *)``.
            y: Labels, as for :meth:`sample`.
            target: The predictive (attack-based channels), as for :meth:`sample`.

        Returns:
            Shape ``(B,)``, differentiable in ``x_adv`` and in ``μ``, ``σ``.

        Raises:
            NoDensityError: If ``σ = 0`` (a point mass).
        """
        x = check_x(x)
        x_adv = check_x_adv(x_adv, x)
        y = check_y(y, x)
        if not self.has_density:
            raise NoDensityError(
                f"{type(self).__name__} with sigma = 0 is a point mass: it has no density"
            )
        loc, scale = self.loc_scale(x, y, target)
        return diag_normal_log_prob(x_adv, loc, scale)

    def mean(
        self,
        x: Tensor,
        y: Tensor | None = None,
        target: Predictive | None = None,
    ) -> Tensor:
        """The location ``μ(x, y, β) = E[x' | x, β]``, shape ``(B, *)``."""
        x = check_x(x)
        y = check_y(y, x)
        loc, _ = self.loc_scale(x, y, target)
        return loc.clone() if loc is x else loc
