"""The learned channel's budget: a smooth squashing of a perturbation into the ``ε``-ball.

The library's choice where the paper is silent (docs/theory.md, 'The adversarial channel'): the
learned mean perturbation is scaled so that ``‖m‖₂ ≤ ε``, so that learned and attack-based channels
share a budget. We use the radial ``ε·tanh`` squashing

``m = ε tanh(‖m̃‖₂ / ε) · m̃ / ‖m̃‖₂``

of the generator's raw output ``m̃`` (norm over all non-batch dimensions): the direction is
kept, the norm becomes ``ε tanh(‖m̃‖/ε) < ε``; near 0 it is the identity (``m ≈ m̃``), so small
perturbations are not distorted, and it is smooth everywhere (``m̃ = 0`` maps to 0 with
Jacobian ``I``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from adv_attacks import per_example_norm
from adv_channels._checks import check_scalar

__all__ = ["squash_to_ball"]


def squash_to_ball(m: Tensor, eps: float) -> Tensor:
    """Squash each example's perturbation into the L2 ball of radius ``eps``.

    ``m ↦ ε tanh(‖m‖₂/ε) m/‖m‖₂`` per example (identity Jacobian at 0; ``eps = 0`` gives 0).

    Args:
        m: Raw perturbations ``(B, *)``.
        eps: Radius ``ε >= 0``.

    Returns:
        Same shape, each example with L2 norm ``ε tanh(‖m‖/ε) < ε``; differentiable.

    Examples:
        >>> m = torch.tensor([[3.0, 4.0], [0.003, 0.004]])
        >>> out = squash_to_ball(m, 1.0)
        >>> out.norm(dim=1)  # tanh(5), tanh(0.005)
        tensor([0.9999, 0.0050])
    """
    eps = check_scalar(eps, "eps")
    if eps == 0.0:
        return m * 0.0
    r = per_example_norm(m)
    safe = r.clamp_min(torch.finfo(m.dtype).tiny)
    factor = torch.where(r > 0, eps * torch.tanh(safe / eps) / safe, torch.ones_like(r))
    return m * factor.view((-1,) + (1,) * (m.ndim - 1))
