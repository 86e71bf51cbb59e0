"""Per-point log-likelihoods against torch.distributions."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Categorical, Normal

from bnn_core import GaussianLikelihood
from robust_vi import log_likelihood


def test_classification_is_the_categorical_log_probability():
    g = torch.Generator().manual_seed(0)
    logits, y = torch.randn(6, 4, generator=g), torch.randint(0, 4, (6,), generator=g)
    torch.testing.assert_close(log_likelihood(logits, y), Categorical(logits=logits).log_prob(y))


@pytest.mark.parametrize("target_shape", [(5,), (5, 1)])
def test_regression_is_the_gaussian_with_learned_noise(target_shape):
    lik = GaussianLikelihood(0.7)
    mean = torch.randn(5, 1)
    y = torch.randn(target_shape)
    ref = Normal(mean[:, 0], 0.7).log_prob(y.reshape(5))
    got = log_likelihood(mean, y, "regression", lik)
    torch.testing.assert_close(got, ref)
    assert got.requires_grad  # differentiable in s


def test_errors():
    with pytest.raises(ValueError, match="likelihood"):
        log_likelihood(torch.zeros(3, 1), torch.zeros(3), "regression")
    with pytest.raises(ValueError, match=r"\(B, C\)"):
        log_likelihood(torch.zeros(3), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="task"):
        log_likelihood(torch.zeros(3, 2), torch.zeros(3, dtype=torch.long), "ranking")
