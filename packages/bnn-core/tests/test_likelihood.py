import math

import pytest
import torch
from torch.distributions import Categorical, MixtureSameFamily, Normal

from bnn_core import GaussianLikelihood, gaussian_log_prob, gaussian_mixture_log_prob


def test_log_prob_matches_normal_and_sums_output_dims() -> None:
    mean = torch.randn(4, 3, dtype=torch.float64)
    target = torch.randn(4, 3, dtype=torch.float64)
    var = torch.rand(4, 3, dtype=torch.float64) + 0.1
    ref = Normal(mean, var.sqrt()).log_prob(target).sum(-1)
    torch.testing.assert_close(gaussian_log_prob(mean, var, target), ref)
    ref_scalar = Normal(mean, math.sqrt(0.3)).log_prob(target).sum(-1)
    torch.testing.assert_close(gaussian_log_prob(mean, 0.3, target), ref_scalar)


def test_column_mean_accepts_flat_target_but_never_broadcasts() -> None:
    mean = torch.randn(5, 1, dtype=torch.float64)
    target = torch.randn(5, dtype=torch.float64)
    torch.testing.assert_close(
        gaussian_log_prob(mean, 1.0, target), gaussian_log_prob(mean, 1.0, target[:, None])
    )
    with pytest.raises(ValueError, match="target must have the shape of mean"):
        gaussian_log_prob(mean, 1.0, torch.randn(5, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="var of shape"):
        gaussian_log_prob(mean, torch.ones(5, dtype=torch.float64), target)


def test_mixture_log_prob_against_torch_mixture() -> None:
    means = torch.randn(6, 4, dtype=torch.float64) * 2
    target = torch.randn(4, dtype=torch.float64)
    mixture = MixtureSameFamily(
        Categorical(torch.full((4, 6), 1 / 6, dtype=torch.float64)),
        Normal(means.T, math.sqrt(0.4)),
    )
    torch.testing.assert_close(
        gaussian_mixture_log_prob(means, 0.4, target), mixture.log_prob(target)
    )


def test_mixture_is_stable_far_in_the_tails() -> None:
    means = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
    out = gaussian_mixture_log_prob(means, 1e-4, torch.tensor([50.0], dtype=torch.float64))
    assert torch.isfinite(out).all()
    # dominated by the nearest component: log(½ N(50; 1, 1e-4))
    ref = math.log(0.5) + Normal(1.0, 0.01).log_prob(torch.tensor(50.0, dtype=torch.float64))
    torch.testing.assert_close(out[0], ref)


def test_learned_noise_module() -> None:
    lik = GaussianLikelihood(0.7, dtype=torch.float64)
    assert lik.scale.item() == pytest.approx(0.7, rel=1e-12)
    assert lik.variance.item() == pytest.approx(0.49, rel=1e-12)
    mean = torch.randn(3, 1, dtype=torch.float64)
    y = torch.randn(3, dtype=torch.float64)
    torch.testing.assert_close(lik(mean, y), Normal(mean[:, 0], 0.7).log_prob(y))
    lik.log_prob(mean, y).sum().backward()
    assert lik.noise_rho.grad is not None and lik.noise_rho.grad != 0


def test_gradcheck() -> None:
    mean = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    var = (torch.rand(3, 2, dtype=torch.float64) + 0.5).requires_grad_()
    target = torch.randn(3, 2, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda m, v: gaussian_log_prob(m, v, target), (mean, var))
    means = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda m: gaussian_mixture_log_prob(m, 0.5, target[:, 0]), (means,)
    )


def test_errors() -> None:
    m = torch.zeros(2)
    with pytest.raises(ValueError, match="var"):
        gaussian_log_prob(m, 0.0, m)
    with pytest.raises(ValueError, match="var must be > 0"):
        gaussian_log_prob(m, torch.tensor([1.0, -1.0]), m)
    with pytest.raises(ValueError, match="target contains NaN"):
        gaussian_log_prob(m, 1.0, torch.tensor([0.0, float("nan")]))
    with pytest.raises(TypeError, match="target must have a floating-point dtype"):
        gaussian_log_prob(m, 1.0, torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="means must have at least 2 dimensions"):
        gaussian_mixture_log_prob(m, 1.0, m)
    with pytest.raises(ValueError, match="init_scale"):
        GaussianLikelihood(0.0)
