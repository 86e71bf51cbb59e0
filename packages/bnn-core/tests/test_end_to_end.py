"""End to end: variational inference with bnn_core recovers a known posterior and learns."""

import math

import pytest
import torch
from torch import nn

from bnn_core import (
    BayesLinear,
    PosteriorPredictive,
    accuracy,
    forward_samples,
    gaussian_log_prob,
    kl_divergence,
    nll,
    ppd_log_probs,
)


def _fit_conjugate(steps: int, draws: int) -> tuple[float, float, float, float]:
    """Mean-field VI on y = w·x + N(0, s²), prior w ~ N(0, 1): the exact posterior is Gaussian.

    The mean-field family contains it, so the ELBO optimum is the exact posterior
    N(m, v), v = 1 / (1 + Σx²/s²), m = v Σxy / s².
    """
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(20, 1, generator=gen, dtype=torch.float64)
    s = 0.5
    y = 0.7 * x[:, 0] + s * torch.randn(20, generator=gen, dtype=torch.float64)
    v = 1.0 / (1.0 + (x.square().sum() / s**2).item())
    m = v * (x[:, 0] @ y).item() / s**2
    layer = BayesLinear(1, 1, bias=False, init_sigma=0.3, dtype=torch.float64)
    with torch.no_grad():
        layer.weight_mu.zero_()  # the prior mean: the same start whatever the global seed
    opt = torch.optim.Adam(layer.parameters(), lr=0.03)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.01 ** (1 / steps))
    for _ in range(steps):
        opt.zero_grad()
        means = forward_samples(layer, x, draws, generator=gen)[..., 0]  # (M, N)
        expected_ll = torch.stack([gaussian_log_prob(f, s**2, y) for f in means]).mean(0).sum()
        (kl_divergence(layer) - expected_ll).backward()
        opt.step()
        sched.step()
    return layer.weight_mu.item(), layer.weight_sigma.item(), m, math.sqrt(v)


def test_vi_recovers_the_conjugate_posterior() -> None:
    mu, sigma, m, sd = _fit_conjugate(steps=500, draws=16)
    assert mu == pytest.approx(m, abs=0.15 * sd)
    assert sigma == pytest.approx(sd, rel=0.15)


@pytest.mark.slow
def test_vi_recovers_the_conjugate_posterior_tightly() -> None:
    mu, sigma, m, sd = _fit_conjugate(steps=3000, draws=64)
    assert mu == pytest.approx(m, abs=0.05 * sd)
    assert sigma == pytest.approx(sd, rel=0.05)


def test_elbo_training_learns_a_toy_classifier() -> None:
    gen = torch.Generator().manual_seed(1)
    centers = torch.tensor([[2.0, 0.0], [-2.0, 0.0], [0.0, 2.5]])
    y = torch.randint(0, 3, (300,), generator=gen)
    x = centers[y] + 0.8 * torch.randn(300, 2, generator=gen)
    model = nn.Sequential(BayesLinear(2, 16, init_sigma=0.01), nn.ReLU(), BayesLinear(16, 3))
    opt = torch.optim.Adam(model.parameters(), lr=0.03)
    for _ in range(150):
        opt.zero_grad()
        log_probs = ppd_log_probs(forward_samples(model, x, 2, generator=gen))
        loss = nll(log_probs, y) + kl_divergence(model) / len(x)
        loss.backward()
        opt.step()
    ppd = PosteriorPredictive(model, 10, generator=gen)
    with torch.no_grad():
        assert accuracy(ppd(x), y).item() > 0.9
