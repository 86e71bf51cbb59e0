"""Score regression predictives under attack: RMSE, NLL and predictive std (docs/theory.md).

Three kinds of regression predictive are scored, all on standardised targets:

* a BNN's posterior predictive, from the per-draw means ``f_m(x')`` of *the same fixed
  draws the attack aimed at*: RMSE of the PPD mean ``(1/M) Σ_m f_m``, NLL of the exact
  mixture ``(1/M) Σ_m N(y; f_m, s²)`` (:func:`bnn_core.gaussian_mixture_nll`) and the mean
  predictive standard deviation ``sqrt(s² + Var_m f_m)`` (:func:`draw_scores`);
* a point estimate (AT): the same with ``M = 1``, i.e. the Gaussian NLL ``N(y; f, s²)``;
* a reactive PPD (onPure/offPure): RMSE of its mean, the exact reactive-mixture NLL
  (``ReactivePPD.log_prob``) and the std of its moment-matched Gaussian
  (:func:`reactive_scores`).

Scores in the original target units follow from the training statistics ``y = μ + τ z``:
``RMSE_y = τ RMSE_z``, ``NLL_y = NLL_z + log τ``, ``std_y = τ std_z``
(:func:`in_original_units`).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from bnn_core import gaussian_mixture_nll, regression_ppd

__all__ = [
    "RegressionScores",
    "draw_scores",
    "in_original_units",
    "reactive_scores",
    "stable_generator",
]


@dataclass(frozen=True)
class RegressionScores:
    """The metrics of one regression predictive on one (attacked) test set.

    Attributes:
        rmse: Root mean squared error of the predictive mean (target units).
        nll: Mean negative log-likelihood of the targets (nats per point).
        std: Mean predictive standard deviation (target units).
    """

    rmse: float
    nll: float
    std: float

    def as_dict(self, y_scale: float | None = None) -> dict[str, float]:
        """The scores, plus ``*_original`` versions when the target scale ``τ`` is given."""
        out = asdict(self)
        if y_scale is not None:
            out.update(in_original_units(self, y_scale))
        return out


def _targets(y: Tensor, like: Tensor) -> Tensor:
    if y.dim() != 1 or y.shape[0] != like.shape[0]:
        raise ValueError(f"y must have shape ({like.shape[0]},); got {tuple(y.shape)}")
    return y


def draw_scores(draws: Tensor, noise_var: Tensor | float, y: Tensor) -> RegressionScores:
    """Scores of the regression PPD ``(1/M) Σ_m N(f_m, s²)`` from its per-draw means.

    Args:
        draws: ``(M, B)`` or ``(M, B, 1)`` per-draw means ``f_m(x')`` (``M = 1`` for a point
            estimate: the NLL is then the plain Gaussian one).
        noise_var: The observation-noise variance ``s² > 0``.
        y: ``(B,)`` targets.

    Returns:
        RMSE of the mixture mean, the exact mixture NLL and the mean of
        ``sqrt(s² + Var_m f_m)`` (population variance over draws).

    Example:
        >>> draws = torch.tensor([[0.0, 1.0], [2.0, 1.0]])  # M = 2, B = 2
        >>> draw_scores(draws, 1.0, torch.tensor([1.0, 1.0])).rmse
        0.0
    """
    if draws.dim() == 3 and draws.shape[-1] == 1:
        draws = draws.squeeze(-1)
    if draws.dim() != 2:
        raise ValueError(f"draws must have shape (M, B) or (M, B, 1); got {tuple(draws.shape)}")
    y = _targets(y, draws[0])
    mean, var = regression_ppd(draws, noise_var)
    return RegressionScores(
        rmse=float((mean - y).square().mean().sqrt()),
        nll=float(gaussian_mixture_nll(draws, noise_var, y)),
        std=float(var.sqrt().mean()),
    )


def reactive_scores(reactive: torch.nn.Module, x_adv: Tensor, y: Tensor) -> RegressionScores:
    """Scores of a regression ``ReactivePPD`` at ``x_adv``, with its exact mixture NLL.

    Args:
        reactive: A fitted :class:`adv_reactive.ReactivePPD` with ``task="regression"``
            (its current ``mode`` is used).
        x_adv: ``(B, D)`` test inputs.
        y: ``(B,)`` targets.

    Returns:
        RMSE of the reactive mean, ``−mean log p(y | x')`` of the weighted Gaussian mixture
        and the mean standard deviation of its moment-matched Gaussian.
    """
    with torch.no_grad():
        mean, var = reactive(x_adv)
        mean, var = mean.reshape(-1), var.reshape(-1)
        y = _targets(y, mean)
        nll = reactive.nll(x_adv, y)
    return RegressionScores(
        rmse=float((mean - y).square().mean().sqrt()),
        nll=float(nll),
        std=float(var.sqrt().mean()),
    )


def in_original_units(scores: RegressionScores, y_scale: float) -> dict[str, float]:
    """``rmse_original``, ``nll_original`` and ``std_original`` for targets ``y = μ + τ z``.

    Args:
        scores: Scores on the standardised target ``z``.
        y_scale: ``τ > 0``, the training targets' standard deviation.

    Example:
        >>> in_original_units(RegressionScores(0.5, 1.0, 0.4), 2.0)["rmse_original"]
        1.0
    """
    if not (y_scale > 0 and math.isfinite(y_scale)):
        raise ValueError(f"y_scale must be a finite float > 0; got {y_scale!r}")
    return {
        "rmse_original": scores.rmse * y_scale,
        "nll_original": scores.nll + math.log(y_scale),
        "std_original": scores.std * y_scale,
    }


def stable_generator(device: torch.device, *parts: object) -> torch.Generator:
    """A generator on ``device`` seeded from ``parts``: stable across runs and processes."""
    text = "/".join(str(p) for p in parts)
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    return torch.Generator(device=device).manual_seed(seed)
