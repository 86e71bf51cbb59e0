"""The paper's regression network with a Gaussian likelihood (paper, SM-6.1.1)."""

from __future__ import annotations

from torch import Tensor, nn

from bnn_core._checks import check_positive_int
from bnn_core.enums import SampleMode
from bnn_core.layers.base import DEFAULT_INIT_SIGMA
from bnn_core.likelihood import GaussianLikelihood
from bnn_core.models._config import finish
from bnn_core.priors import GaussianPrior

__all__ = ["RegressionMLP", "regression_mlp"]


class RegressionMLP(nn.Module):
    """A network predicting a mean, plus the Gaussian likelihood ``N(y; f(x), s²)``.

    Attributes:
        body: The network ``x ↦ f(x)``, output ``(B, out_features)``.
        likelihood: The :class:`~bnn_core.GaussianLikelihood` with the learned noise ``s``.
    """

    def __init__(self, body: nn.Module, likelihood: GaussianLikelihood) -> None:
        super().__init__()
        self.body = body
        self.likelihood = likelihood

    def forward(self, x: Tensor) -> Tensor:
        """The predicted mean ``f(x)``, ``(B, out_features)``."""
        return self.body(x)


def regression_mlp(
    in_features: int,
    *,
    hidden: int = 16,
    out_features: int = 1,
    init_noise: float = 1.0,
    bayesian: bool = True,
    prior: GaussianPrior | None = None,
    init_sigma: float = DEFAULT_INIT_SIGMA,
    sample_mode: SampleMode | str = SampleMode.SAMPLE,
) -> RegressionMLP:
    """The paper's regression MLP: ``dense(d→16) · ReLU · dense(16→16) · ReLU · dense(16→1)``.

    The forward pass gives the mean ``(B, 1)``; ``model.likelihood`` is a
    :class:`~bnn_core.GaussianLikelihood` whose noise ``s = softplus(ρ_s)`` is learned
    (a point estimate, also in the Bayesian model: the library's choice where the paper is silent;
    docs/theory.md, 'Bayesian neural networks').

    Args:
        in_features: Input dimension ``d``.
        hidden: Units of each hidden layer. Default ``16``.
        out_features: Output dimension. Default ``1``.
        init_noise: Initial noise scale ``s``. Default ``1.0`` (standardised targets).
        bayesian: Bayesian dense layers (default) or the deterministic twin.
        prior: Prior of the Bayesian layers. Default ``GaussianPrior(0, 1)``.
        init_sigma: Initial posterior standard deviation. Default ``1e-3``.
        sample_mode: Initial sampling mode of the Bayesian layers. Default ``"sample"``.

    Shape:
        - Input: ``(B, in_features)``.
        - Output: ``(B, out_features)`` means.

    Examples:
        >>> model = regression_mlp(8)
        >>> mean, var = PosteriorPredictive(model, 10, task="regression")(torch.randn(4, 8))
    """
    check_positive_int(in_features, "in_features")
    check_positive_int(hidden, "hidden")
    check_positive_int(out_features, "out_features")
    body = nn.Sequential(
        nn.Linear(in_features, hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, out_features),
    )
    model = RegressionMLP(body, GaussianLikelihood(init_noise))
    kwargs = {
        "in_features": in_features,
        "hidden": hidden,
        "out_features": out_features,
        "init_noise": init_noise,
    }
    out = finish(
        model,
        "regression_mlp",
        kwargs,
        bayesian=bayesian,
        prior=prior,
        init_sigma=init_sigma,
        sample_mode=sample_mode,
    )
    assert isinstance(out, RegressionMLP)
    return out
