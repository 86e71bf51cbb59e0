from __future__ import annotations

import pytest
import torch
from torch.distributions import Normal

from adv_channels import GaussianChannel, IdentityChannel, NoDensityError


def test_gaussian_log_prob_matches_torch_normal():
    ch = GaussianChannel(sigma=0.3)
    x = torch.rand(4, 2, 3, dtype=torch.float64)
    x_adv = ch.sample(x, generator=torch.Generator().manual_seed(0))
    ref = Normal(x, 0.3).log_prob(x_adv).flatten(1).sum(1)
    torch.testing.assert_close(ch.log_prob(x_adv, x), ref)
    torch.testing.assert_close(ch.mean(x), x)


def test_gaussian_samples_have_the_right_mean_and_covariance(moments):
    n, sigma = 20_000, 0.4
    x0 = torch.tensor([0.2, -1.0, 3.0, 0.5], dtype=torch.float64)
    x = x0.expand(n, 4)
    samples = GaussianChannel(sigma).sample(x, generator=torch.Generator().manual_seed(1))
    moments(samples, x0, sigma)


def test_moment_check_can_fail(moments):
    x = torch.zeros(5000, 3, dtype=torch.float64)
    samples = GaussianChannel(0.5).sample(x, generator=torch.Generator().manual_seed(1))
    with pytest.raises(AssertionError, match="covariance"):
        moments(samples, torch.zeros(3, dtype=torch.float64), 0.45)
    with pytest.raises(AssertionError, match="mean"):
        moments(samples, torch.full((3,), 0.05, dtype=torch.float64), 0.5)


def test_identity_is_exact_and_augmentation_is_gaussian():
    x = torch.rand(3, 4)
    out = IdentityChannel().sample(x)
    assert torch.equal(out, x) and out.data_ptr() != x.data_ptr()
    assert not IdentityChannel().has_density
    with pytest.raises(NoDensityError):
        IdentityChannel().log_prob(x, x)
    ch = IdentityChannel(sigma0=0.2)
    assert ch.has_density and ch.sigma0 == 0.2
    g = torch.Generator().manual_seed(0)
    x_adv = ch.sample(x, generator=g)
    assert not torch.equal(x_adv, x)
    torch.testing.assert_close(x_adv, x + 0.2 * torch.randn(3, 4, generator=g.manual_seed(0)))


def test_noise_is_not_clamped():
    x = torch.ones(2000, 1)
    x_adv = GaussianChannel(0.5).sample(x, generator=torch.Generator().manual_seed(0))
    assert (x_adv > 1).float().mean() > 0.4


def test_sampling_is_reparameterised_in_x():
    x = torch.rand(3, 4, requires_grad=True)
    GaussianChannel(0.3).sample(x).sum().backward()
    torch.testing.assert_close(x.grad, torch.ones(3, 4))


def test_forward_is_sample_and_y_target_are_ignored():
    ch = GaussianChannel(0.1)
    x, y = torch.rand(3, 2), torch.tensor([0, 1, 2])
    a = ch(x, y, lambda t: t, generator=torch.Generator().manual_seed(3))
    b = ch.sample(x, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert not ch.needs_target and not ch.learnable
    assert ch.adversary_step(lambda t: t, x, y) is None


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: GaussianChannel(-0.1), ValueError, "sigma must be >= 0"),
        (lambda: GaussianChannel(float("nan")), ValueError, "sigma must be finite"),
        (lambda: GaussianChannel("0.1"), TypeError, "sigma must be a real number"),
        (lambda: IdentityChannel(-1.0), ValueError, "sigma0"),
    ],
)
def test_bad_options(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_bad_inputs():
    ch = GaussianChannel(0.1)
    x = torch.rand(3, 4)
    with pytest.raises(ValueError, match="y must hold one label per example"):
        ch.sample(x, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="x_adv must have the shape of x"):
        ch.log_prob(torch.rand(3, 5), x)
    with pytest.raises(TypeError, match="x must be a floating-point tensor"):
        ch.sample(torch.ones(3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="NaN"):
        ch.sample(torch.full((2, 2), float("nan")))
    with pytest.raises(TypeError, match="x must be a tensor"):
        ch.sample([[0.0]])
