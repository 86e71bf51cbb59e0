"""Mean-field Bayesian neural networks (docs/theory.md).

Layers with mean-field Gaussian posteriors (:class:`BayesLinear`, :class:`BayesConv2d`),
their closed-form KL to a Gaussian prior, per-model sampling modes, many posterior draws
in one call (batched or looped), the posterior predictive, metrics, the paper's
architectures, conversion of deterministic networks, and saving/loading.

Examples:
    >>> import torch
    >>> import torch.nn.functional as F
    >>> from bnn_core import PosteriorPredictive, forward_samples, kl_divergence, mnist_cnn, nll
    >>> model = mnist_cnn()
    >>> x, y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
    >>> logits = forward_samples(model, x, 4)  # (4, 8, 10)
    >>> nll_term = F.cross_entropy(logits.flatten(0, 1), y.repeat(4))
    >>> elbo_loss = nll_term + kl_divergence(model) / 60_000  # negative ELBO per point
    >>> test_nll = nll(PosteriorPredictive(model, num_samples=10)(x), y)
"""

from __future__ import annotations

from bnn_core._version import __version__
from bnn_core.convert import to_bayesian
from bnn_core.diagnostics import posterior_summary
from bnn_core.enums import Reduction, SampleMode, SamplingMethod, Task
from bnn_core.kl import kl_divergence
from bnn_core.layers import (
    DEFAULT_INIT_SIGMA,
    BayesConv2d,
    BayesianModule,
    BayesLinear,
    bayesian_modules,
    is_bayesian,
)
from bnn_core.likelihood import GaussianLikelihood, gaussian_log_prob, gaussian_mixture_log_prob
from bnn_core.metrics import (
    accuracy,
    brier_score,
    expected_calibration_error,
    gaussian_mixture_nll,
    gaussian_nll,
    mutual_information,
    nll,
    predictive_entropy,
    rmse,
)
from bnn_core.models import (
    ARCHITECTURES,
    RegressionMLP,
    ResNet,
    cifar_cnn,
    mnist_cnn,
    regression_mlp,
    resnet18,
)
from bnn_core.modes import get_sample_modes, sample_mode, set_sample_mode
from bnn_core.predictive import PosteriorPredictive, ppd_log_probs, regression_ppd
from bnn_core.priors import GaussianPrior
from bnn_core.sampling import (
    draw_noise,
    forward_samples,
    resolve_method,
    sample_weights,
    weights_from_noise,
)
from bnn_core.serialization import load_model, save_model

__all__ = [
    "ARCHITECTURES",
    "DEFAULT_INIT_SIGMA",
    "BayesConv2d",
    "BayesLinear",
    "BayesianModule",
    "GaussianLikelihood",
    "GaussianPrior",
    "PosteriorPredictive",
    "Reduction",
    "RegressionMLP",
    "ResNet",
    "SampleMode",
    "SamplingMethod",
    "Task",
    "__version__",
    "accuracy",
    "bayesian_modules",
    "brier_score",
    "cifar_cnn",
    "draw_noise",
    "expected_calibration_error",
    "forward_samples",
    "gaussian_log_prob",
    "gaussian_mixture_log_prob",
    "gaussian_mixture_nll",
    "gaussian_nll",
    "get_sample_modes",
    "is_bayesian",
    "kl_divergence",
    "load_model",
    "mnist_cnn",
    "mutual_information",
    "nll",
    "posterior_summary",
    "ppd_log_probs",
    "predictive_entropy",
    "regression_mlp",
    "regression_ppd",
    "resnet18",
    "resolve_method",
    "rmse",
    "sample_mode",
    "sample_weights",
    "save_model",
    "set_sample_mode",
    "to_bayesian",
    "weights_from_noise",
]
