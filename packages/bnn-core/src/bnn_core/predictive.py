"""The posterior predictive distribution (PPD) of a Bayesian network (paper, Section 3.1).

Classification: ``p(y | x, D) ≈ (1/M) Σ_m softmax(f_{β_m}(x))``, returned as
log-probabilities ``logsumexp_m log_softmax(f_m) − log M`` (probabilities are averaged,
never logits). Regression: the mixture ``(1/M) Σ_m N(y; f_m(x), s²)``, returned as its
moment-matched Gaussian ``(mean, var)`` with ``var = s² + Var_m f_m(x)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from bnn_core._checks import (
    as_enum,
    check_generator,
    check_module,
    check_positive_int,
    check_tensor,
    model_device,
)
from bnn_core.enums import SamplingMethod, Task
from bnn_core.likelihood import GaussianLikelihood
from bnn_core.sampling import _sampled_parameters, draw_noise, forward_samples, weights_from_noise

__all__ = ["PosteriorPredictive", "ppd_log_probs", "regression_ppd"]


def ppd_log_probs(logits: Tensor) -> Tensor:
    """Log-probabilities of the classification PPD from per-draw logits.

    ``log p(y | x, D) = logsumexp_m log_softmax(logits_m) − log M`` (docs/theory.md,
    'Bayesian neural networks'): the log of the *mean probabilities*, not of mean logits.
    Differentiable in ``logits``.

    Args:
        logits: ``(M, B, C)`` per-draw logits (or log-probabilities).

    Returns:
        ``(B, C)`` log-probabilities whose exponentials sum to 1 over ``C``.

    Examples:
        >>> ppd_log_probs(torch.tensor([[[0.0, 10.0]], [[10.0, 0.0]]])).exp()
        tensor([[0.5000, 0.5000]])
    """
    check_tensor(logits, "logits", min_ndim=2, floating=True)
    return torch.logsumexp(logits.log_softmax(dim=-1), dim=0) - math.log(logits.shape[0])


def regression_ppd(means: Tensor, noise_var: Tensor | float) -> tuple[Tensor, Tensor]:
    """Mean and variance of the regression PPD from per-draw means.

    The PPD is the mixture ``(1/M) Σ_m N(f_m, s²)``; its exact moments are
    ``mean = (1/M) Σ_m f_m`` and ``var = s² + (1/M) Σ_m (f_m − mean)²`` (docs/theory.md, 'Bayesian
    neural networks').

    Args:
        means: ``(M, B, ...)`` per-draw predictions ``f_m(x)``.
        noise_var: The observation-noise variance ``s² >= 0`` (float or tensor
            broadcastable to ``means[0]``).

    Returns:
        ``(mean, var)``, each of shape ``means.shape[1:]``.
    """
    check_tensor(means, "means", min_ndim=2, floating=True)
    if isinstance(noise_var, Tensor):
        check_tensor(noise_var, "noise_var", floating=True)
        try:
            fits = torch.broadcast_shapes(noise_var.shape, means.shape[1:]) == means.shape[1:]
        except RuntimeError:
            fits = False
        if not fits:
            raise ValueError(
                f"noise_var of shape {tuple(noise_var.shape)} must broadcast to the shape of "
                f"one draw's means {tuple(means.shape[1:])} without enlarging it (a (B, 1) "
                "variance against (M, B) means would give a (B, B) variance)"
            )
        if bool((noise_var < 0).any()):
            raise ValueError("noise_var must be >= 0")
    elif not isinstance(noise_var, int | float) or isinstance(noise_var, bool) or noise_var < 0:
        raise ValueError(f"noise_var must be a float >= 0 or a tensor; got {noise_var!r}")
    mean = means.mean(dim=0)
    var = means.var(dim=0, correction=0) + noise_var
    return mean, var


class PosteriorPredictive(nn.Module):
    """The Monte Carlo posterior predictive of a model with Bayesian layers.

    Implements the *predictive protocol* of ``docs/architecture.md``: calling it on a
    batch returns ``(B, C)`` PPD log-probabilities (classification) or a Gaussian
    ``(mean, var)`` (regression), differentiable in the input (for attacks) and in the
    variational parameters (for training). The ``M`` weight draws are fixed (their noise
    ``ε`` is stored; the weights ``μ + σ ⊙ ε`` are rebuilt from the current parameters at
    each call) until :meth:`resample` draws new ones. Layers in ``"mean"`` mode at call
    time use their ``μ``. The wrapped model's train/eval flag is never changed, and its
    sampling modes only for the duration of a call.

    Args:
        model: A module containing :class:`bnn_core.BayesianModule` layers (a
            deterministic model gives its own softmax, repeated over draws).
        num_samples: The number of posterior draws ``M >= 1``. Default ``10``.
        task: ``"classification"`` (default) or ``"regression"``.
        likelihood: Regression only: the :class:`GaussianLikelihood` giving ``s²``;
            default ``model.likelihood``.
        generator: Randomness for the draws (also the default for :meth:`resample`).
        method: How draws are evaluated: ``"vmap"``, ``"loop"`` or ``"auto"`` (default;
            see :func:`bnn_core.forward_samples`).

    Shape:
        - Input: ``(B, ...)``, whatever ``model`` accepts.
        - Output (classification): ``(B, C)`` log-probabilities.
        - Output (regression): ``(mean, var)``, each of the model output's shape, e.g.
          ``(B, 1)``.

    Examples:
        >>> model = mnist_cnn()
        >>> ppd = PosteriorPredictive(model, num_samples=10)
        >>> log_probs = ppd(torch.rand(4, 1, 28, 28))  # (4, 10)
        >>> ppd.resample()  # new draws, e.g. between attack steps (EOT)
    """

    def __init__(
        self,
        model: nn.Module,
        num_samples: int = 10,
        *,
        task: Task | str = Task.CLASSIFICATION,
        likelihood: GaussianLikelihood | None = None,
        generator: torch.Generator | None = None,
        method: SamplingMethod | str = SamplingMethod.AUTO,
    ) -> None:
        super().__init__()
        self.model = check_module(model)
        self._num_samples = check_positive_int(num_samples, "num_samples")
        self.task = as_enum(Task, task, "task")
        self.method = as_enum(SamplingMethod, method, "method")
        if self.task is Task.REGRESSION:
            if likelihood is None:
                likelihood = getattr(model, "likelihood", None)
                if likelihood is None:
                    raise ValueError(
                        "task='regression' needs a GaussianLikelihood: pass likelihood= or "
                        "give the model a .likelihood attribute"
                    )
            if not isinstance(likelihood, GaussianLikelihood):
                raise TypeError(
                    f"likelihood must be a GaussianLikelihood; got {type(likelihood).__name__}"
                )
        elif likelihood is not None:
            raise ValueError("likelihood is only used with task='regression'")
        self.likelihood = likelihood
        device = model_device(model) or torch.device("cpu")
        self.generator = check_generator(generator, device)
        self._noise: dict[str, Tensor] = {}
        self.resample()

    @property
    def num_samples(self) -> int:
        """The number of posterior draws ``M``."""
        return self._num_samples

    @property
    def forward_passes(self) -> int:
        """Passes of the network per call, ``M`` (the predictive protocol's optional hint).

        A call keeps ``M`` sets of activations alive for the backward pass; attacks on the
        CPU size their chunks of the batch by it (docs/architecture.md).
        """
        return self._num_samples

    def resample(self, generator: torch.Generator | None = None) -> None:
        """Draw ``M`` new posterior samples (held until the next call).

        Args:
            generator: Randomness for the new draws; default the constructor's
                ``generator`` (continuing its stream), else the global RNG.
        """
        gen = self.generator if generator is None else generator
        self._noise = draw_noise(self.model, self._num_samples, gen, all_layers=True)

    def _weights(self) -> dict[str, Tensor]:
        active = _sampled_parameters(self.model)
        weights = {}
        for key, eps in self._noise.items():
            if key not in active:
                continue  # the layer is in mean mode now
            mu = active[key][0]
            if eps.device != mu.device or eps.dtype != mu.dtype:
                eps = eps.to(device=mu.device, dtype=mu.dtype)
                self._noise[key] = eps  # the model moved: move the same draws with it
            weights[key] = eps
        return weights_from_noise(self.model, weights)

    def draws(self, x: Tensor) -> Tensor:
        """Per-draw model outputs at ``x``: ``(M, B, ...)`` (logits, or regression means)."""
        return forward_samples(
            self.model, x, self._num_samples, weights=self._weights(), method=self.method
        )

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        """The PPD at ``x``: log-probabilities, or ``(mean, var)`` for regression."""
        out = self.draws(x)
        if self.task is Task.CLASSIFICATION:
            if out.dim() < 3:
                raise ValueError(
                    "task='classification' needs model(x) of shape (B, C); "
                    f"got {tuple(out.shape[1:])}"
                )
            return ppd_log_probs(out)
        assert self.likelihood is not None
        return regression_ppd(out, self.likelihood.variance)

    def extra_repr(self) -> str:
        """The configuration shown by ``repr``."""
        return (
            f"num_samples={self._num_samples}, task={self.task.value!r}, "
            f"method={self.method.value!r}"
        )
