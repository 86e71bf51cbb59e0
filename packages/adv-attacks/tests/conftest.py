"""Shared predictives for the adv-attacks tests.

Tiny models with hand-derivable gradients (linear softmax, Gaussian regressor), a stochastic
ensemble standing in for a Bayesian network's posterior predictive (PPD), and a small CNN.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn


def flat_norm(t: Tensor, norm: str = "l2") -> Tensor:
    """Per-example norm, computed independently of adv_attacks.norms."""
    flat = t.reshape(t.shape[0], -1)
    if norm == "l2":
        return flat.pow(2).sum(dim=1).sqrt()
    return flat.abs().max(dim=1).values


class GaussianLinearEnsemble(nn.Module):
    """PPD of a Bayesian linear softmax classifier with fixed draws ``W_m = μ + σ ξ_m``.

    ``forward`` returns the PPD log-probabilities ``log (1/M) Σ_m softmax(W_m x + b_m)``
    (the predictive protocol); ``resample`` draws fresh ``ξ`` and counts its calls.
    """

    def __init__(self, d: int, c: int, m: int, sigma: float, *, dtype=torch.float64, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.weight_mu = nn.Parameter(torch.randn(c, d, generator=g, dtype=dtype))
        self.bias_mu = nn.Parameter(torch.randn(c, generator=g, dtype=dtype))
        self.sigma = sigma
        self.num_samples = m
        self.register_buffer("xi_w", torch.randn(m, c, d, generator=g, dtype=dtype))
        self.register_buffer("xi_b", torch.randn(m, c, generator=g, dtype=dtype))
        self.resample_calls = 0

    def resample(self, generator: torch.Generator | None = None) -> None:
        self.resample_calls += 1
        kw = {"generator": generator, "dtype": self.xi_w.dtype}
        self.xi_w = torch.randn(self.xi_w.shape, **kw)
        self.xi_b = torch.randn(self.xi_b.shape, **kw)

    def weights(self) -> tuple[Tensor, Tensor]:
        """Per-draw weights ``(M, C, D)`` and biases ``(M, C)``."""
        return (
            self.weight_mu + self.sigma * self.xi_w,
            self.bias_mu + self.sigma * self.xi_b,
        )

    def draw_logits(self, x: Tensor) -> Tensor:
        w, b = self.weights()
        return torch.einsum("mcd,bd->mbc", w, x.flatten(1)) + b[:, None, :]

    def forward(self, x: Tensor) -> Tensor:
        lp = F.log_softmax(self.draw_logits(x), dim=-1)
        return torch.logsumexp(lp, dim=0) - math.log(self.num_samples)


class GaussianRegressor(nn.Module):
    """Gaussian predictive: ``mean = w·x + b``, ``var = softplus(v·x) + 0.1``, shapes ``(B,)``."""

    def __init__(self, d: int, *, dtype=torch.float64, seed=0, column: bool = False):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = nn.Parameter(torch.randn(d, generator=g, dtype=dtype))
        self.b = nn.Parameter(torch.randn((), generator=g, dtype=dtype))
        self.v = nn.Parameter(torch.randn(d, generator=g, dtype=dtype))
        self.column = column

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = x.flatten(1)
        mean = x @ self.w + self.b
        var = F.softplus(x @ self.v) + 0.1
        if self.column:
            return mean.unsqueeze(1), var.unsqueeze(1)
        return mean, var


def small_cnn(seed: int = 0, scale: float = 1.0, dtype=torch.float32) -> nn.Module:
    """conv(1→4, 3×3)·ReLU·avgpool 2·flatten·dense(→10) on 1×10×10 inputs (MNIST CNN in small)."""
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 10),
    )
    with torch.no_grad():
        net[-1].weight.mul_(scale)
    return net.to(dtype)


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
def cnn() -> nn.Module:
    return small_cnn()


@pytest.fixture
def images() -> tuple[Tensor, Tensor]:
    """A batch of 6 images in [0, 1] and labels for :func:`small_cnn`."""
    g = torch.Generator().manual_seed(2)
    return torch.rand(6, 1, 10, 10, generator=g), torch.randint(0, 10, (6,), generator=g)


# Helpers as session-scoped fixtures: with --import-mode=importlib a conftest cannot be
# imported by name, and session scope keeps them usable from hypothesis tests.
@pytest.fixture(scope="session")
def norm_of():
    return flat_norm


@pytest.fixture(scope="session")
def ensemble_cls():
    return GaussianLinearEnsemble


@pytest.fixture(scope="session")
def regressor_cls():
    return GaussianRegressor


@pytest.fixture(scope="session")
def make_cnn():
    return small_cnn


def _template_data(n: int, seed: int) -> tuple[Tensor, Tensor]:
    """1×10×10 images in [0, 1]: one fixed random template per class, plus noise."""
    g = torch.Generator().manual_seed(1234)
    templates = torch.randn(10, 1, 10, 10, generator=g)
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (n,), generator=g)
    x = 0.5 + 0.15 * templates[y] + 0.15 * torch.randn(n, 1, 10, 10, generator=g)
    return x.clamp(0.0, 1.0), y


@pytest.fixture(scope="session")
def trained_cnn() -> tuple[nn.Module, Tensor, Tensor]:
    """:func:`small_cnn` trained for 40 full-batch Adam steps on 10-class template images.

    Returns the network (eval mode, frozen by seed), and 48 held-out images with their
    labels; deterministic (seeded data, seeded initialisation, single-threaded order).
    """
    net = small_cnn(seed=0)
    x, y = _template_data(256, seed=1)
    opt = torch.optim.Adam(net.parameters(), lr=0.02)
    for _ in range(40):
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    net.eval()
    x_test, y_test = _template_data(48, seed=2)
    return net, x_test, y_test
