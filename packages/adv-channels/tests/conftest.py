"""Shared models and helpers for the adv-channels tests.

Tiny predictives with hand-derivable gradients (a float64 linear softmax classifier, a
Gaussian regressor), a small CNN on 1×10×10 images, and Monte Carlo moment checks whose
tolerances follow from the sample size.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn


def flat_norm(t: Tensor) -> Tensor:
    """Per-example L2 norm, computed independently of the package."""
    return t.reshape(t.shape[0], -1).pow(2).sum(dim=1).sqrt()


def check_gaussian_moments(samples: Tensor, mean: Tensor, std: Tensor | float, z: float = 5.0):
    """Empirical mean and covariance of draws ``(n, d)`` against ``N(mean, diag std²)``.

    Tolerances from the sample size: a sample mean has standard error ``σ/√n``; a sample
    covariance entry ``σ_i σ_j √((1 + δ_ij)/n)`` (Gaussian fourth moments). ``z`` standard
    errors leave room for the ``d + d²`` entries checked at once.
    """
    n, d = samples.shape
    std = torch.as_tensor(std, dtype=samples.dtype).expand(d)
    emp_mean = samples.mean(0)
    assert ((emp_mean - mean).abs() <= z * std / math.sqrt(n)).all(), "mean"
    centred = samples - emp_mean
    cov = centred.T @ centred / (n - 1)
    ref = torch.diag(std.square())
    se = torch.outer(std, std) * ((1.0 + torch.eye(d, dtype=samples.dtype)) / n).sqrt()
    assert ((cov - ref).abs() <= z * se).all(), "covariance"


class GaussianRegressor(nn.Module):
    """Gaussian predictive: ``mean = w·x + b``, ``var = softplus(v·x) + 0.1``, shapes ``(B,)``."""

    def __init__(self, d: int, *, dtype=torch.float64, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = nn.Parameter(torch.randn(d, generator=g, dtype=dtype))
        self.b = nn.Parameter(torch.randn((), generator=g, dtype=dtype))
        self.v = nn.Parameter(torch.randn(d, generator=g, dtype=dtype))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = x.flatten(1)
        return x @ self.w + self.b, F.softplus(x @ self.v) + 0.1


def small_cnn(seed: int = 0) -> nn.Module:
    """conv(1→4, 3×3)·ReLU·avgpool 2·flatten·dense(→10) on 1×10×10 inputs."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(4 * 4 * 4, 10)
    )


@pytest.fixture
def linear_model() -> nn.Linear:
    """A float64 linear softmax classifier on 6 features, 4 classes."""
    g = torch.Generator().manual_seed(1)
    net = nn.Linear(6, 4).double()
    with torch.no_grad():
        net.weight.copy_(torch.randn(4, 6, generator=g, dtype=torch.float64))
        net.bias.copy_(torch.randn(4, generator=g, dtype=torch.float64))
    return net


@pytest.fixture
def tabular() -> tuple[Tensor, Tensor]:
    """Five float64 inputs in [0, 1] with 6 features and labels for :func:`linear_model`."""
    g = torch.Generator().manual_seed(3)
    return torch.rand(5, 6, generator=g, dtype=torch.float64), torch.tensor([0, 1, 2, 3, 0])


@pytest.fixture
def cnn() -> nn.Module:
    return small_cnn()


@pytest.fixture
def images() -> tuple[Tensor, Tensor]:
    """A batch of 6 images in [0, 1] and labels for :func:`small_cnn`."""
    g = torch.Generator().manual_seed(2)
    return torch.rand(6, 1, 10, 10, generator=g), torch.randint(0, 10, (6,), generator=g)


# Helpers as session fixtures: with --import-mode=importlib a conftest is not importable.
@pytest.fixture(scope="session")
def norm_of():
    return flat_norm


@pytest.fixture(scope="session")
def moments():
    return check_gaussian_moments


@pytest.fixture(scope="session")
def regressor_cls():
    return GaussianRegressor


@pytest.fixture(scope="session")
def make_cnn():
    return small_cnn
