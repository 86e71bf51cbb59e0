"""Per-point log-likelihoods against torch.distributions."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Categorical, Normal

from adv_channels import IdentityChannel
from bnn_core import GaussianLikelihood
from robust_vi import log_likelihood, surrogate_elbo


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
    for bad in (torch.tensor([0, 1, 2]), torch.tensor([0, -1, 1])):  # 2 logits: [0, 2)
        with pytest.raises(ValueError, match=r"class indices in \[0, 2\)"):
            log_likelihood(torch.zeros(3, 2), bad)


def test_label_range_error_reaches_the_objectives(images, small_cnn):
    x, y = images  # 3 classes
    with pytest.raises(ValueError, match=r"class indices in \[0, 3\)"):
        surrogate_elbo(small_cnn(), IdentityChannel(), x, y + 3, dataset_size=600)
