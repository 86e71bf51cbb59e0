"""One posterior draw ``β = μ + σ ⊙ ε`` as a predictive: the attack target and the scorer.

Robust VI evaluates the channel and the likelihood at the *same* draw ``β`` (paper, Section 3.3):
the one-step direction is taken at ``β`` and the channel's samples ``x'`` are scored by
``p(y | x', β)``. :class:`PosteriorDraw` stores the noise ``ε`` of one draw and rebuilds
``w = μ + softplus(ρ) ⊙ ε`` at each call, so gradients reach ``μ`` and ``ρ`` (pathwise) —
or nothing, while an attack has the parameters frozen. It is the one-draw special case of
:class:`bnn_core.PosteriorPredictive` without the per-call checks and the PPD reduction
(logits are returned as they are), which costs about 0.6 ms per call on the MNIST CNN:
four calls per MIX training step (``bench/perf.py``, section ``robust_vi``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.func import functional_call

from bnn_core import GaussianLikelihood, Task, draw_noise, sample_mode, weights_from_noise
from robust_vi._checks import as_enum, check_module

__all__ = ["PosteriorDraw"]


class PosteriorDraw(nn.Module):
    """A single reparameterised posterior draw of a Bayesian model, held fixed.

    Implements the predictive protocol of ``docs/architecture.md``: calling it returns the
    ``(B, C)`` logits of the draw (classification) or the Gaussian ``(mean, var)`` with
    ``var = s²`` (regression). Layers in ``"mean"`` mode at construction use their ``μ``
    (a model entirely in mean mode, or a deterministic one, is its own point estimate).
    The model's sampling modes are changed only for the duration of a call, its
    train/eval flag never.

    Args:
        model: A module with :class:`bnn_core.BayesianModule` layers (or none).
        task: ``"classification"`` (default) or ``"regression"``.
        likelihood: Regression: the Gaussian likelihood giving ``s²``.
        generator: Randomness for the noise ``ε`` (on the model's device).

    Shape:
        - Input: ``(B, ...)``, whatever ``model`` accepts.
        - Output: ``(B, C)`` logits, or ``(mean, var)`` each of the model output's shape.

    Examples:
        >>> draw = PosteriorDraw(model, generator=torch.Generator().manual_seed(0))
        >>> draw(x).shape  # the same draw at every call
        torch.Size([8, 10])
        >>> bool(torch.equal(draw(x), draw(x)))
        True
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        task: Task | str = Task.CLASSIFICATION,
        likelihood: GaussianLikelihood | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.model = check_module(model)
        self.task = as_enum(Task, task, "task")
        if self.task is Task.REGRESSION and likelihood is None:
            raise ValueError("task='regression' needs the GaussianLikelihood: pass likelihood=")
        self.likelihood = likelihood
        self.noise = draw_noise(model, 1, generator)

    def weights(self) -> dict[str, Tensor]:
        """The draw's weights ``μ + σ ⊙ ε`` keyed as the model's ``*_mu`` parameters."""
        drawn = weights_from_noise(self.model, self.noise)
        return {key + "_mu": w[0] for key, w in drawn.items()}

    def outputs(self, x: Tensor) -> Tensor:
        """The model's raw outputs under this draw: logits or predicted means."""
        with sample_mode(self.model, "mean"):
            if not self.noise:
                return self.model(x)
            return functional_call(self.model, self.weights(), (x,))

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        """Logits (classification) or ``(mean, s²)`` (regression) at ``x``."""
        out = self.outputs(x)
        if self.task is Task.CLASSIFICATION:
            return out
        assert self.likelihood is not None
        return out, self.likelihood.variance.expand_as(out)
