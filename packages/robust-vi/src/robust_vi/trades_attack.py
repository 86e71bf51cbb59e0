"""The inner maximisation of TRADES: the input that most changes the predictive (paper, Sec. 3.4).

TRADES (Zhang et al. 2019) finds ``x* = argmax_{x' ∈ B_ε(x)} KL(p(· | x) ‖ p(· | x'))`` by
projected gradient ascent started at ``x + 0.001 ξ``, ``ξ ~ N(0, I)`` (the reference
implementation), with the clean predictive ``p(· | x)`` held fixed. No label is used.
Steps follow the PGD of docs/theory.md, 'Attacks': ``x ← clip(Π_ε(x + η g/‖g‖₂))`` (L∞:
``η sign(g)``), with ``η = 2.5 ε / T`` by default.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from adv_attacks import (
    ClassificationOutput,
    Norm,
    PredictiveOutput,
    RegressionOutput,
    frozen_parameters,
    per_example_norm,
    read_output,
)
from adv_channels import standard_normal
from robust_vi._checks import (
    as_enum,
    check_clamp,
    check_float,
    check_in_range,
    check_positive_int,
)

__all__ = ["START_NOISE", "predictive_kl", "trades_attack"]

START_NOISE = 0.001
"""Standard deviation of the random start ``x + 0.001 ξ`` (the TRADES reference code)."""


def predictive_kl(reference: PredictiveOutput, other: PredictiveOutput) -> Tensor:
    """Per-example ``KL(reference ‖ other)`` between two predictives read at a batch.

    Classification: ``Σ_c p_c (log p_c − log q_c)`` (terms with ``p_c = 0`` are 0).
    Gaussian regression: ``½ [log(v₁/v₀) + (v₀ + (m₀ − m₁)²)/v₁ − 1]``.

    Args:
        reference: The first argument of the KL (e.g. the clean predictive).
        other: The second (e.g. at the perturbed input), the same kind and batch.

    Returns:
        ``(B,)`` divergences in nats, ``>= 0``.

    Examples:
        >>> p = read_output(torch.tensor([[0.0, 0.0]]), 1)
        >>> q = read_output(torch.tensor([[0.0, 1.0]]), 1)
        >>> predictive_kl(p, q)  # ½ log(½ / σ(-1)) + ½ log(½ / σ(1))
        tensor([0.1201])
    """
    if isinstance(reference, ClassificationOutput) and isinstance(other, ClassificationOutput):
        lp, lq = reference.log_probs, other.log_probs
        p = lp.exp()
        terms = torch.where(p > 0, p * (lp - lq), torch.zeros_like(p))
        return terms.sum(dim=-1)
    if isinstance(reference, RegressionOutput) and isinstance(other, RegressionOutput):
        m0, v0, m1, v1 = reference.mean, reference.var, other.mean, other.var
        return 0.5 * (torch.log(v1 / v0) + (v0 + (m0 - m1).square()) / v1 - 1.0)
    raise TypeError("predictive_kl needs two outputs of the same kind (classification/regression)")


def trades_attack(
    predictive: Callable[[Tensor], object],
    x: Tensor,
    *,
    eps: float,
    steps: int = 10,
    step_size: float | None = None,
    norm: Norm | str = Norm.L2,
    clamp: tuple[float, float] | None = (0.0, 1.0),
    generator: torch.Generator | None = None,
) -> Tensor:
    """TRADES' adversarial input: maximise ``KL(p(·|x) ‖ p(·|x'))`` over the ``ε``-ball.

    The predictive's parameters are left out of autograd during the search (and restored);
    its ``training`` flag is not changed. The caller's ``x`` is never modified.

    Args:
        predictive: ``predictive(x) -> (B, C)`` logits/log-probabilities or ``(mean, var)``
            (docs/architecture.md), e.g. a :class:`~robust_vi.PosteriorDraw`.
        x: Clean inputs ``(B, *)``.
        eps: Budget ``ε >= 0`` (input units).
        steps: ``T >= 1`` ascent steps. Default ``10`` (the reference's).
        step_size: ``η``; default ``2.5 ε / T``.
        norm: ``"l2"`` (default) or ``"linf"``.
        clamp: Valid input range, default ``(0.0, 1.0)``; ``None`` for unbounded inputs.
        generator: Random stream for the start ``x + 0.001 ξ``.

    Returns:
        ``x*`` (detached), same shape, dtype and device as ``x``, with
        ``‖x* − x‖ ≤ ε`` and inside ``clamp``.

    Examples:
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
        >>> x_star = trades_attack(net, torch.rand(2, 1, 2, 2), eps=0.5)
        >>> bool(((x_star - 0.5).abs() <= 0.5).all())
        True
    """
    eps = check_float(eps, "eps")
    steps = check_positive_int(steps, "steps")
    eta = 2.5 * eps / steps if step_size is None else check_float(step_size, "step_size")
    norm = as_enum(Norm, norm, "norm")
    clamp = check_clamp(clamp)
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError("x must be a floating-point tensor")
    check_in_range(x, clamp)
    x = x.detach()
    view = (-1,) + (1,) * (x.ndim - 1)
    tiny = torch.finfo(x.dtype).tiny

    def project(point: Tensor) -> Tensor:
        delta = point - x
        if norm is Norm.LINF:
            delta = delta.clamp(-eps, eps)
        else:
            factor = (eps / per_example_norm(delta).clamp_min(tiny)).clamp_max(1.0)
            delta = delta * factor.view(view)
        point = x + delta
        return point if clamp is None else point.clamp(*clamp)

    with torch.inference_mode(False), frozen_parameters(predictive):
        with torch.no_grad():
            reference = read_output(predictive(x), x.shape[0])
        x_adv = project(x + START_NOISE * standard_normal(x, generator))
        for _ in range(steps):
            with torch.enable_grad():
                xr = x_adv.detach().requires_grad_(True)
                out = read_output(predictive(xr), x.shape[0])
                (g,) = torch.autograd.grad(predictive_kl(reference, out).sum(), xr)
            with torch.no_grad():
                if norm is Norm.LINF:
                    direction = g.sign()
                else:
                    direction = g / per_example_norm(g).clamp_min(tiny).view(view)
                x_adv = project(x_adv + eta * direction)
    return x_adv.detach()
