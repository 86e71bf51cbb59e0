"""The Gaussian likelihood of regression models, with a learned observation noise.

The learned noise is the library's choice where the paper is silent (docs/theory.md, 'Bayesian
neural networks').
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bnn_core._checks import check_positive_float, check_tensor
from bnn_core.priors import softplus_inverse

__all__ = [
    "GaussianLikelihood",
    "gaussian_log_prob",
    "gaussian_mixture_log_prob",
    "match_target",
]

_LOG_2PI = math.log(2.0 * math.pi)


def match_target(pred: Tensor, target: Tensor, pred_name: str = "mean") -> Tensor:
    """Check ``target`` against a regression prediction and return it in ``pred``'s shape.

    Shapes must be equal, except that a ``(B,)`` target is accepted for a ``(B, 1)``
    prediction (it is viewed as ``(B, 1)``): never a silent ``(B, B)`` broadcast.
    """
    check_tensor(target, "target", floating=True)
    if target.shape == pred.shape:
        return target
    if pred.dim() == target.dim() + 1 and pred.shape[-1] == 1 and pred.shape[:-1] == target.shape:
        return target.unsqueeze(-1)
    raise ValueError(
        f"target must have the shape of {pred_name} {tuple(pred.shape)}; got {tuple(target.shape)}"
    )


def _as_variance(var: Tensor | float, like: Tensor) -> Tensor:
    if isinstance(var, Tensor):
        check_tensor(var, "var", floating=True)
        if bool((var <= 0).any()):
            raise ValueError("var must be > 0 everywhere")
        try:
            shape = torch.broadcast_shapes(var.shape, like.shape)
        except RuntimeError:
            shape = None
        if shape != like.shape:
            raise ValueError(
                f"var of shape {tuple(var.shape)} must broadcast to {tuple(like.shape)}"
            )
        return var
    return torch.as_tensor(check_positive_float(var, "var"), dtype=like.dtype, device=like.device)


def _sum_trailing(values: Tensor, batch_dims: int) -> Tensor:
    if values.dim() == batch_dims:
        return values
    return values.flatten(batch_dims).sum(-1)


def gaussian_log_prob(mean: Tensor, var: Tensor | float, target: Tensor) -> Tensor:
    """Per-example Gaussian log-density ``log N(y; mean, var)``, summed over output dims.

    Args:
        mean: Predicted means ``(B,)`` or ``(B, D...)``.
        var: Variances, ``> 0``: a float or a tensor broadcastable to ``mean``.
        target: Observed ``y``, shape of ``mean`` (or ``(B,)`` for a ``(B, 1)`` mean).

    Returns:
        ``(B,)`` log-densities (nats).

    Examples:
        >>> gaussian_log_prob(torch.zeros(2), 1.0, torch.zeros(2))  # −½ log 2π each
        tensor([-0.9189, -0.9189])
    """
    check_tensor(mean, "mean", min_ndim=1, floating=True)
    target = match_target(mean, target)
    variance = _as_variance(var, mean)
    log_density = -0.5 * ((target - mean).square() / variance + torch.log(variance) + _LOG_2PI)
    return _sum_trailing(log_density, 1)


def gaussian_mixture_log_prob(means: Tensor, var: Tensor | float, target: Tensor) -> Tensor:
    """Per-example log-density of the equal-weight Gaussian mixture of a regression PPD.

    ``log (1/M) Σ_m N(y; f_m, s²)`` (docs/theory.md, 'Bayesian neural networks'), computed with
    ``logsumexp``; for multi-output models each component is the product over output dimensions.

    Args:
        means: Per-draw means ``(M, B)`` or ``(M, B, D...)``.
        var: Observation-noise variance ``s² > 0`` (float or tensor broadcastable to
            ``means``).
        target: Observed ``y``, shape ``means.shape[1:]`` (or ``(B,)`` for ``(M, B, 1)``).

    Returns:
        ``(B,)`` log-densities (nats).
    """
    check_tensor(means, "means", min_ndim=2, floating=True)
    target = match_target(means[0], target, "means[0]")
    variance = _as_variance(var, means)
    log_density = -0.5 * ((target - means).square() / variance + torch.log(variance) + _LOG_2PI)
    per_draw = _sum_trailing(log_density, 2)  # (M, B)
    return torch.logsumexp(per_draw, dim=0) - math.log(means.shape[0])


class GaussianLikelihood(nn.Module):
    """``p(y | x, β) = N(y; f_β(x), s²)`` with a learned noise scale ``s = softplus(ρ_s)``.

    The observation noise is a point estimate (learned by maximising the ELBO), shared
    by all examples and output dimensions (the library's choice where the paper is silent;
    docs/theory.md, 'Bayesian neural networks').

    Args:
        init_scale: Initial ``s > 0`` (for standardised targets ``1.0`` is the prior
            guess). Default ``1.0``.
        device: Where to create the parameter.
        dtype: Its dtype.

    Examples:
        >>> lik = GaussianLikelihood(init_scale=0.5)
        >>> lik.log_prob(torch.zeros(4, 1), torch.zeros(4)).shape
        torch.Size([4])
    """

    def __init__(
        self,
        init_scale: float = 1.0,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        rho = softplus_inverse(check_positive_float(init_scale, "init_scale"))
        self.noise_rho = nn.Parameter(torch.tensor(rho, device=device, dtype=dtype))

    @property
    def scale(self) -> Tensor:
        """The noise standard deviation ``s`` (a scalar tensor)."""
        return F.softplus(self.noise_rho)

    @property
    def variance(self) -> Tensor:
        """The noise variance ``s²`` (a scalar tensor)."""
        return self.scale.square()

    def log_prob(self, mean: Tensor, target: Tensor) -> Tensor:
        """``log N(target; mean, s²)`` per example, summed over output dims: ``(B,)``."""
        return gaussian_log_prob(mean, self.variance, target)

    def forward(self, mean: Tensor, target: Tensor) -> Tensor:
        """Alias of :meth:`log_prob`."""
        return self.log_prob(mean, target)

    def extra_repr(self) -> str:
        """The configuration shown by ``repr``."""
        return f"scale={self.scale.item():.4g}"
