"""Options of bnn_core as ``str`` enums (each also accepts the plain string).

Every function that takes one of these options accepts either the enum member or its
string value, e.g. ``set_sample_mode(model, "mean")`` or
``set_sample_mode(model, SampleMode.MEAN)``.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Reduction", "SampleMode", "SamplingMethod", "Task"]


class SampleMode(StrEnum):
    """How a Bayesian layer turns its variational posterior into a forward pass.

    See docs/theory.md, 'Bayesian neural networks'.
    """

    SAMPLE = "sample"
    """Fresh reparameterised weights ``w = μ + σ ⊙ ε`` at every forward, shared by the batch."""

    LOCAL = "local"
    """Local reparameterisation: sample the pre-activations, independently per example."""

    MEAN = "mean"
    """The posterior mean ``μ``: a deterministic point estimate."""


class SamplingMethod(StrEnum):
    """How :func:`bnn_core.forward_samples` evaluates ``M`` posterior draws."""

    VMAP = "vmap"
    """One batched pass (``torch.func.vmap`` over ``functional_call``): faster on GPUs."""

    LOOP = "loop"
    """A Python loop over the draws: faster on small CPUs (activations stay in cache)."""

    AUTO = "auto"
    """The faster of the two for the input's device (loop on CPU, vmap on CUDA)."""


class Task(StrEnum):
    """What a posterior predictive returns."""

    CLASSIFICATION = "classification"
    """``(B, C)`` log-probabilities of the PPD."""

    REGRESSION = "regression"
    """``(mean, var)`` of the moment-matched Gaussian PPD."""


class Reduction(StrEnum):
    """How a metric reduces its per-example values."""

    MEAN = "mean"
    """Average over examples."""

    SUM = "sum"
    """Sum over examples."""

    NONE = "none"
    """Per-example values, shape ``(B,)``."""
