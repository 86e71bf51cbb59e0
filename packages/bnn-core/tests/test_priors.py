import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal, kl_divergence

from bnn_core import GaussianPrior
from bnn_core.priors import log_softplus, softplus_inverse


@pytest.mark.parametrize("loc, scale", [(0.0, 1.0), (0.3, 0.1), (-1.0, 2.5)])
def test_kl_matches_torch_distributions(loc: float, scale: float) -> None:
    mu = torch.randn(50, dtype=torch.float64)
    rho = torch.empty(50, dtype=torch.float64).uniform_(-8.0, 2.0)
    ours = GaussianPrior(loc, scale).kl(mu, rho)
    ref = kl_divergence(
        Normal(mu, F.softplus(rho)),
        Normal(torch.tensor(loc, dtype=torch.float64), torch.tensor(scale, dtype=torch.float64)),
    )
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)


def test_kl_is_zero_at_the_prior_and_positive_elsewhere() -> None:
    prior = GaussianPrior(0.5, 0.7)
    rho = torch.full((3,), softplus_inverse(0.7), dtype=torch.float64)
    mu = torch.full((3,), 0.5, dtype=torch.float64)
    torch.testing.assert_close(prior.kl(mu, rho), torch.zeros(3, dtype=torch.float64))
    assert (prior.kl(mu + 0.1, rho) > 0).all()


def test_kl_stays_finite_for_tiny_sigma() -> None:
    # softplus(-120) underflows in float32; the KL must still be finite with finite gradients.
    rho = torch.tensor([-120.0, -30.0, -5.0], requires_grad=True)
    mu = torch.zeros(3, requires_grad=True)
    kl = GaussianPrior().kl(mu, rho)
    assert torch.isfinite(kl).all()
    # log(1/σ) ≈ −ρ for very negative ρ
    torch.testing.assert_close(kl[0], torch.tensor(120.0 - 0.5), rtol=1e-6, atol=1e-4)
    kl.sum().backward()
    assert torch.isfinite(rho.grad).all() and torch.isfinite(mu.grad).all()


def test_log_softplus_matches_direct_formula_and_gradcheck() -> None:
    rho = torch.tensor([-60.0, -37.5, -36.5, -20.0, -3.0, 0.0, 4.0], dtype=torch.float64)
    ref = torch.log(F.softplus(rho))
    torch.testing.assert_close(log_softplus(rho), ref, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(log_softplus, (rho.clone().requires_grad_(),))


def test_kl_gradcheck() -> None:
    prior = GaussianPrior(0.2, 0.5)
    mu = torch.randn(4, dtype=torch.float64, requires_grad=True)
    rho = torch.randn(4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(prior.kl, (mu, rho))


def test_log_prob_matches_normal() -> None:
    prior = GaussianPrior(-0.4, 1.7)
    v = torch.randn(10, dtype=torch.float64)
    ref = Normal(torch.tensor(-0.4, dtype=torch.float64), 1.7).log_prob(v)
    torch.testing.assert_close(prior.log_prob(v), ref)


@pytest.mark.parametrize("sigma", [1e-6, 1e-3, 0.5, 3.0, 40.0])
def test_softplus_inverse_round_trip(sigma: float) -> None:
    rho = softplus_inverse(sigma)
    assert F.softplus(torch.tensor(rho, dtype=torch.float64)).item() == pytest.approx(
        sigma, rel=1e-12
    )


@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        ({"scale": 0.0}, ValueError, "scale"),
        ({"scale": -1.0}, ValueError, "scale"),
        ({"scale": math.inf}, ValueError, "scale"),
        ({"scale": math.nan}, ValueError, "scale"),
        ({"scale": "1"}, TypeError, "scale"),
        ({"scale": True}, TypeError, "scale"),
        ({"loc": math.nan}, ValueError, "loc"),
        ({"loc": None}, TypeError, "loc"),
    ],
)
def test_prior_rejects_bad_arguments(kwargs: dict, error: type, name: str) -> None:
    with pytest.raises(error, match=name):
        GaussianPrior(**kwargs)


def test_softplus_inverse_rejects_non_positive() -> None:
    with pytest.raises(ValueError, match="sigma"):
        softplus_inverse(0.0)
