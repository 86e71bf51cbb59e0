"""Is the posterior learned? Per-layer summaries of a mean-field posterior.

A mean-field posterior ``q(β) = Π_j N(μ_j, σ_j²)`` whose ``σ`` the data set shows a wide
spread of ``σ`` inside a layer (weights the likelihood pins down get small ``σ``, the rest
drift towards the prior) and different levels between layers. A posterior whose ``σ`` all
sit at one value, set by the optimiser's step cap rather than by the data, behaves as a
point estimate (see docs/theory.md, "Training the posterior").
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from bnn_core._checks import check_module
from bnn_core.layers.base import bayesian_modules

__all__ = ["QUANTILES", "posterior_summary", "quantiles"]

QUANTILES: dict[str, float] = {
    "min": 0.0,
    "q05": 0.05,
    "q25": 0.25,
    "median": 0.5,
    "q75": 0.75,
    "q95": 0.95,
    "max": 1.0,
}
"""The quantiles reported by :func:`posterior_summary` (name → level)."""


def quantiles(values: Tensor, levels: dict[str, float] | None = None) -> dict[str, float]:
    """Quantiles of all elements of ``values`` with linear interpolation (as ``torch.quantile``).

    Works on any number of elements (``torch.quantile`` is limited to 2²⁴), by sorting.

    Args:
        values: A non-empty floating tensor of any shape.
        levels: ``{name: level in [0, 1]}``; default :data:`QUANTILES`.

    Returns:
        ``{name: quantile}`` as Python floats.

    Examples:
        >>> quantiles(torch.tensor([1.0, 2.0, 3.0, 4.0]), {"median": 0.5})
        {'median': 2.5}
    """
    if not isinstance(values, Tensor) or not values.is_floating_point():
        raise TypeError("values must be a floating torch.Tensor")
    if values.numel() == 0:
        raise ValueError("values must hold at least one element")
    levels = QUANTILES if levels is None else levels
    flat = values.detach().reshape(-1).to(torch.float64).sort().values
    n = flat.numel()
    out = {}
    for name, level in levels.items():
        if not 0.0 <= level <= 1.0:
            raise ValueError(f"quantile level {name!r} must be in [0, 1]; got {level}")
        pos = level * (n - 1)
        lo = math.floor(pos)
        hi = min(lo + 1, n - 1)
        frac = pos - lo
        out[name] = float(flat[lo] + frac * (flat[hi] - flat[lo]))
    return out


@torch.no_grad()
def posterior_summary(model: nn.Module) -> dict[str, dict[str, Any]]:
    """Per Bayesian layer: how spread its ``σ`` are, how well determined its weights, its KL.

    For every :class:`~bnn_core.BayesianModule` (weight and bias together):

    - ``numel``: the number of variational weights;
    - ``sigma``: quantiles of ``σ = softplus(ρ)`` (:data:`QUANTILES`);
    - ``log_sigma_std``: the standard deviation of ``log σ`` across the layer's weights (``0``
      when every ``σ`` is the same: the spread the data gave ``σ``);
    - ``snr``: quantiles of the signal-to-noise ratio ``|μ| / σ`` (Blundell et al. 2015,
      §5.1: weights with a low ratio can be pruned);
    - ``kl``: the layer's ``KL(q ‖ p)`` in nats.

    Args:
        model: Any module; a model without Bayesian layers gives ``{}``.

    Returns:
        ``{layer_name: {"numel", "sigma", "log_sigma_std", "snr", "kl"}}`` of Python numbers,
        in the order of ``model.named_modules()`` (JSON-ready).

    Examples:
        >>> from bnn_core import mnist_cnn
        >>> summary = posterior_summary(mnist_cnn())
        >>> list(summary), round(summary["0"]["sigma"]["median"], 4)
        (['0', '3', '7'], 0.001)
    """
    check_module(model)
    out: dict[str, dict[str, Any]] = {}
    for name, layer in bayesian_modules(model):
        sigmas, snrs = [], []
        for _, mu, rho in layer.variational_parameters():
            sigma = torch.nn.functional.softplus(rho.detach()).reshape(-1)
            sigmas.append(sigma)
            snrs.append(mu.detach().reshape(-1).abs() / sigma)
        sigma = torch.cat(sigmas)
        log_sigma = sigma.to(torch.float64).log()
        out[name or "<model>"] = {
            "numel": int(sigma.numel()),
            "sigma": quantiles(sigma),
            "log_sigma_std": float(log_sigma.std(unbiased=False)),
            "snr": quantiles(torch.cat(snrs)),
            "kl": float(layer.kl()),
        }
    return out
