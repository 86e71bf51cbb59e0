import torch
from torch import nn

from bnn_core import BayesLinear, GaussianLikelihood, is_bayesian, regression_mlp


def test_architecture_and_likelihood() -> None:
    model = regression_mlp(8)
    body = model.body
    assert [type(m) for m in body] == [BayesLinear, nn.ReLU, BayesLinear, nn.ReLU, BayesLinear]
    assert [(m.in_features, m.out_features) for m in body if isinstance(m, BayesLinear)] == [
        (8, 16),
        (16, 16),
        (16, 1),
    ]
    assert isinstance(model.likelihood, GaussianLikelihood)
    assert model.likelihood.scale.item() == 1.0
    assert model(torch.randn(5, 8)).shape == (5, 1)


def test_deterministic_twin_keeps_the_likelihood() -> None:
    model = regression_mlp(3, bayesian=False, init_noise=0.2)
    assert not is_bayesian(model)
    assert abs(model.likelihood.scale.item() - 0.2) < 1e-6
