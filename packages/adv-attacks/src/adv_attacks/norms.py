"""Threat models: L2 balls and L∞ boxes, and the geometric steps PGD takes in them.

All helpers work per example on a batch ``(B, *)``: norms are over every non-batch
dimension, budgets ``eps`` are ``(B,)`` tensors, and nothing here allocates more than a
few tensors of the input's size. The attacks are described in docs/theory.md, 'Attacks'.
"""

from __future__ import annotations

from enum import StrEnum

import torch
from torch import Tensor

__all__ = ["Norm", "per_example_norm", "random_in_ball"]


class Norm(StrEnum):
    """The norm bounding a perturbation ``‖x' - x‖ ≤ ε``."""

    L2 = "l2"
    """Euclidean ball; steps along ``g / ‖g‖₂``, projection ``δ ← δ · min(1, ε / ‖δ‖₂)``."""
    LINF = "linf"
    """Box ``|δ_i| ≤ ε``; steps along ``sign(g)``, projection by an elementwise clamp."""


def per_example_norm(t: Tensor, norm: Norm | str = Norm.L2) -> Tensor:
    """Norm of each example of a batch.

    Args:
        t: A batch, shape ``(B, *)``.
        norm: ``"l2"`` or ``"linf"``.

    Returns:
        Shape ``(B,)``.

    Examples:
        >>> per_example_norm(torch.tensor([[3.0, 4.0], [0.0, -1.0]]))
        tensor([5., 1.])
    """
    flat = t.reshape(t.shape[0], -1)
    if Norm(norm) is Norm.L2:
        return torch.linalg.vector_norm(flat, dim=1)
    return flat.abs().amax(dim=1) if flat.shape[1] else flat.new_zeros(flat.shape[0])


def _unsqueeze_like(v: Tensor, x: Tensor) -> Tensor:
    """View a ``(B,)`` tensor as ``(B, 1, ..., 1)`` so that it broadcasts against ``x``."""
    return v.reshape((v.shape[0],) + (1,) * (x.ndim - 1))


def ascend(x: Tensor, g: Tensor, step_size: Tensor, norm: Norm) -> Tensor:
    """In place: ``x ← x + η d`` per example, ``d`` the unit steepest-ascent direction.

    ``d = g / ‖g‖₂`` (L2) or ``sign(g)`` (L∞). ``g = 0`` gives no move, never NaN, for any
    ``η``; so does an L2 gradient too small for ``η / ‖g‖₂`` to exist in the dtype
    (``‖g‖₂ < η / finfo.max``, ~1e-38 in float32), whose direction is lost to rounding
    anyway. Returns ``x``.

    Args:
        x: Iterates ``(B, *)``; modified in place.
        g: Gradients, same shape.
        step_size: ``η`` per example, ``(B,)``.
        norm: The threat model.

    The L2 scale ``η / ‖g‖`` is formed on ``(B,)`` so that only one pass over the batch is
    needed; where it is not finite (``‖g‖ = 0``: ``η/0 = inf``, and ``inf · 0`` would be NaN)
    it is set to 0. Where it is finite, ``|g_i| η / ‖g‖ <= η`` cannot overflow.
    """
    if norm is Norm.LINF:
        return x.addcmul_(g.sign(), _unsqueeze_like(step_size, x))
    scale = step_size / per_example_norm(g)
    scale = torch.where(torch.isfinite(scale), scale, torch.zeros_like(scale))
    return x.addcmul_(g, _unsqueeze_like(scale, x))


def project(delta: Tensor, eps: Tensor, norm: Norm) -> Tensor:
    """Project perturbations onto their balls in place and return them.

    Args:
        delta: Perturbations ``(B, *)``; modified in place.
        eps: Budgets, shape ``(B,)``, ``>= 0``.
        norm: The ball.

    L2: ``δ ← δ · min(1, ε / ‖δ‖)`` (``δ = 0`` stays 0, also for ``ε = 0``); L∞: clamp to
    ``[-ε, ε]`` elementwise.
    """
    if norm is Norm.LINF:
        e = _unsqueeze_like(eps, delta)
        return torch.clamp(delta, min=-e, max=e, out=delta)
    tiny = torch.finfo(delta.dtype).tiny
    factor = (eps / per_example_norm(delta).clamp_min(tiny)).clamp_max(1.0)
    return delta.mul_(_unsqueeze_like(factor, delta))


def random_in_ball(
    x: Tensor,
    eps: Tensor,
    norm: Norm | str = Norm.L2,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Perturbations drawn uniformly in each example's ball (PGD's random start).

    L2: direction uniform on the sphere (a normalised Gaussian) and radius ``ε · u^{1/d}``,
    ``u ~ U(0, 1)``, ``d`` the number of features, which is uniform in the ball (in high
    dimension nearly all of its volume lies close to the sphere). L∞: ``U(-ε, ε)`` per entry.

    Args:
        x: The batch the perturbations are for, shape ``(B, *)``; only its shape, dtype and
            device are read.
        eps: Budgets, shape ``(B,)``.
        norm: ``"l2"`` or ``"linf"``.
        generator: Random stream; it may live on another device than ``x`` (e.g. a CPU
            generator for a CUDA batch, which makes the draw identical on both devices).

    Returns:
        Perturbations with ``x``'s shape, dtype and device.

    Examples:
        >>> x = torch.zeros(2, 3, 4)
        >>> d = random_in_ball(x, torch.tensor([1.0, 0.0]))
        >>> bool(per_example_norm(d)[0] <= 1.0), float(per_example_norm(d)[1])
        (True, 0.0)
    """
    norm = Norm(norm)
    dev = generator.device if generator is not None else x.device
    b = x.shape[0]
    d = x[0].numel() if b else 0
    if norm is Norm.LINF:
        u = torch.rand((b, d), generator=generator, device=dev, dtype=x.dtype).to(x.device)
        delta = (2.0 * u - 1.0).reshape(x.shape)
        return delta.mul_(_unsqueeze_like(eps, delta))
    z = torch.randn((b, d), generator=generator, device=dev, dtype=x.dtype).to(x.device)
    u = torch.rand((b,), generator=generator, device=dev, dtype=x.dtype).to(x.device)
    tiny = torch.finfo(x.dtype).tiny
    radius = eps * u.pow(1.0 / max(d, 1))
    scale = radius / per_example_norm(z).clamp_min(tiny)
    return (z * scale.unsqueeze(1)).reshape(x.shape)
