"""Shared helpers of the robust-vi tests, as fixtures (test modules do not import each other).

``make_images``/``images``: a learnable toy image problem; ``small_cnn``: the paper's MNIST CNN
at 12×12; ``toy``: the conjugate linear-Gaussian model of the paper's SM-2 with its exact
(quadrature) robust ELBO.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bnn_core import (
    BayesLinear,
    GaussianLikelihood,
    GaussianPrior,
    RegressionMLP,
    draw_noise,
    forward_samples,
    kl_divergence,
    mnist_cnn,
    weights_from_noise,
)

IMAGE = 12
"""Side of the small images used in the tests (the MNIST CNN accepts >= 10)."""


def make_images(n: int, num_classes: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A learnable toy image problem: class ``c`` lights up horizontal band ``c``, plus noise.

    Returns ``x`` of shape ``(n, 1, 12, 12)`` in ``[0, 1]`` and labels ``(n,)``.
    """
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, num_classes, (n,), generator=g)
    x = 0.25 * torch.rand(n, 1, IMAGE, IMAGE, generator=g)
    band = IMAGE // num_classes
    for c in range(num_classes):
        rows = slice(c * band, (c + 1) * band)
        x[y == c, :, rows, :] += 0.6
    return x.clamp(0.0, 1.0), y


def small_cnn(
    *, bayesian: bool = True, num_classes: int = 3, seed: int = 0, init_sigma: float = 1e-2
) -> nn.Module:
    """The paper's MNIST CNN at 12×12, seeded."""
    torch.manual_seed(seed)
    return mnist_cnn(num_classes, image_size=IMAGE, bayesian=bayesian, init_sigma=init_sigma)


# -- the conjugate linear-Gaussian toy (paper SM-2) ---------------------------------------
#
# y = β x' + N(0, σ_y²), channel x' ~ N(x, σ_c²) independent of β, prior β ~ N(0, σ_β²),
# q(β) = N(m, s²). The channel integral is analytic:
# p(y | x, β) = ∫ N(y; β x', σ_y²) N(x'; x, σ_c²) dx' = N(y; β x, σ_y² + β² σ_c²).

TOY_SIGMA_Y, TOY_SIGMA_C, TOY_SIGMA_BETA = 0.5, 1.0, 2.0


def toy_data() -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.tensor([[0.5], [1.0], [1.5], [2.0], [-1.0], [2.5]], dtype=torch.float64)
    y = torch.tensor([0.4, 1.3, 1.2, 2.4, -0.9, 2.1], dtype=torch.float64)
    return x, y


def toy_model(m: float = 0.9, s: float = 0.15) -> RegressionMLP:
    """``f_β(x) = β x`` with ``q(β) = N(m, s²)`` and the fixed noise ``σ_y`` (float64)."""
    layer = BayesLinear(
        1, 1, bias=False, prior=GaussianPrior(0.0, TOY_SIGMA_BETA), dtype=torch.float64
    )
    with torch.no_grad():
        layer.weight_mu.fill_(m)
        layer.weight_rho.fill_(math.log(math.expm1(s)))
    likelihood = GaussianLikelihood(TOY_SIGMA_Y, dtype=torch.float64)
    likelihood.noise_rho.requires_grad_(False)
    return RegressionMLP(layer, likelihood)


def toy_exact_loss(model: RegressionMLP, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The negative exact robust ELBO per point, by 80-point Gauss–Hermite quadrature.

    ``−(1/N) [Σ_n E_q log N(y_n; β x_n, σ_y² + β² σ_c²) − KL(q ‖ p)]``, differentiable in
    ``(m, ρ)`` (the nodes are ``β = m + s √2 t``).
    """
    nodes, weights = np.polynomial.hermite.hermgauss(80)
    t = torch.tensor(nodes, dtype=torch.float64)
    w = torch.tensor(weights, dtype=torch.float64) / math.sqrt(math.pi)
    mu = model.body.weight_mu[0, 0]
    s = F.softplus(model.body.weight_rho[0, 0])
    beta = (mu + s * math.sqrt(2.0) * t)[:, None]
    var = TOY_SIGMA_Y**2 + beta.square() * TOY_SIGMA_C**2
    log_p = -0.5 * ((y[None] - beta * x[:, 0][None]).square() / var + torch.log(2 * math.pi * var))
    expected = (w[:, None] * log_p).sum(dim=0).sum()
    return -(expected - model.body.kl()) / len(x)


def toy_grad(loss: torch.Tensor, model: RegressionMLP) -> torch.Tensor:
    """``(∂loss/∂m, ∂loss/∂ρ)``."""
    gm, gr = torch.autograd.grad(loss, [model.body.weight_mu, model.body.weight_rho])
    return torch.stack([gm.reshape(()), gr.reshape(())])


@dataclass(frozen=True)
class Toy:
    """The conjugate toy: data, model factory, exact loss and its gradient."""

    data: Callable[[], tuple[torch.Tensor, torch.Tensor]]
    model: Callable[..., RegressionMLP]
    exact_loss: Callable[[RegressionMLP, torch.Tensor, torch.Tensor], torch.Tensor]
    grad: Callable[[torch.Tensor, RegressionMLP], torch.Tensor]
    sigma_c: float


def hand_loss(model, x, y, sigma, k, s, n, seed, *, bound="mean", regression=False):
    """A bound by hand on the Gaussian channel ``x' = x + σ ξ``, replaying the objectives' draws.

    Per posterior draw: the weight noise ``ε`` (one ``randn`` for all layers), then ``ξ`` for
    the ``K`` stacked copies of the batch; ``bound`` is ``"mean"`` (surrogate) or ``"lse"``
    (IWAE) over the ``K`` log-likelihoods.
    """
    gen = torch.Generator().manual_seed(seed)
    b = x.shape[0]
    terms = []
    for _ in range(s):
        weights = weights_from_noise(model, draw_noise(model, 1, gen, all_layers=True))
        x_rep = torch.cat([x] * k)
        x_adv = x_rep + sigma * torch.randn(x_rep.shape, generator=gen, dtype=x.dtype)
        out = forward_samples(model, x_adv, weights=weights)[0]
        if regression:
            var = model.likelihood.variance
            y_rep = torch.cat([y] * k)
            log_p = torch.distributions.Normal(out[:, 0], var.sqrt()).log_prob(y_rep)
        else:
            log_p = -F.cross_entropy(out, torch.cat([y] * k), reduction="none")
        log_p = log_p.view(k, b)
        if bound == "mean":
            terms.append(log_p.mean(dim=0))
        else:
            terms.append(torch.logsumexp(log_p, dim=0) - math.log(k))
    data = torch.stack(terms).mean(dim=0)
    return -data.mean() + kl_divergence(model) / n


@pytest.fixture(name="hand_loss")
def _hand_loss() -> Callable[..., torch.Tensor]:
    return hand_loss


@pytest.fixture(name="make_images")
def _make_images() -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    return make_images


@pytest.fixture(name="small_cnn")
def _small_cnn() -> Callable[..., nn.Module]:
    return small_cnn


@pytest.fixture
def images() -> tuple[torch.Tensor, torch.Tensor]:
    return make_images(24)


@pytest.fixture
def toy() -> Iterator[Toy]:
    """The toy, run single-threaded: thousands of tiny ops, which on a busy CPU are much
    slower when each wakes a thread pool (the previous thread count is restored)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield Toy(toy_data, toy_model, toy_exact_loss, toy_grad, TOY_SIGMA_C)
    finally:
        torch.set_num_threads(threads)
