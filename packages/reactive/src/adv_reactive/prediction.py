"""What :meth:`adv_reactive.ReactivePPD.predict` returns: the PPD and its diagnostics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["PurifiedInputs", "ReactivePrediction"]


@dataclass(frozen=True)
class ReactivePrediction:
    """The reactive PPD at a batch of test inputs ``x'``, with purification diagnostics.

    Attributes:
        probs: Classification: ``(B, C)`` reactive PPD ``p(y | x')`` (eq. 4 or 5); ``None``
            for regression.
        mean: Regression: ``(B, K)`` (or ``(B,)``, as the model's output) mean of the
            Gaussian-mixture PPD; ``None`` for classification.
        var: Regression: its variance ``s² + Σ w f² − mean²``; ``None`` for classification.
        ess: ``(B,)`` effective sample size ``1 / Σ w²`` of the purification weights: in
            ``[1, N]`` with keys shared by every draw, ``[1, M·N]`` with per-draw keys
            (online); offline, the mean over draws of each draw's ESS over ``N`` inputs.
        log_normalizer: ``(B, M)`` per draw ``log Σ_i exp(−‖x' − μ_mi‖² / 2σ²)``.
        log_marginal_likelihood: ``(B, M)`` the marginal channel likelihood of each draw,
            ``log L_m = log (1/N) Σ_i N(x'; μ_mi, σ² I)`` (nats).
        draw_weights: ``(B, M)`` ``softmax_m(log L_m)``: the test-time posterior weight of
            each draw. The online PPD weights the draws by it; the offline PPD does not (it
            weights them ``1/M``). Uniform with keys shared by every draw.
        top_k_indices: ``(B, k)`` int64 indices of the training inputs with the largest
            posterior weight ``p(x = x_i | x')`` (summed over draws), sorted; ``None``
            unless asked for.
        top_k_weights: ``(B, k)`` those weights; ``None`` unless asked for.
    """

    probs: Tensor | None
    mean: Tensor | None
    var: Tensor | None
    ess: Tensor
    log_normalizer: Tensor
    log_marginal_likelihood: Tensor
    draw_weights: Tensor
    top_k_indices: Tensor | None = None
    top_k_weights: Tensor | None = None

    @property
    def log_probs(self) -> Tensor | None:
        """Classification: ``(B, C)`` log-probabilities of the PPD (``None`` for regression)."""
        if self.probs is None:
            return None
        return self.probs.clamp_min(torch.finfo(self.probs.dtype).tiny).log()


class PurifiedInputs(NamedTuple):
    """The most probable clean training inputs behind each test input.

    Attributes:
        inputs: ``(B, k, *input_shape)`` the training inputs ``x_i`` (not the channel means).
        weights: ``(B, k)`` their posterior weights ``p(x = x_i | x')``, decreasing.
        indices: ``(B, k)`` int64 indices into the training set.
    """

    inputs: Tensor
    weights: Tensor
    indices: Tensor
