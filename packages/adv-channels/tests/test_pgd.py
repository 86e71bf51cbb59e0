from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from adv_attacks import pgd
from adv_channels import NoDensityError, PGDChannel


def test_point_mass_is_adv_attacks_pgd_with_the_same_stream(cnn, images, norm_of):
    x, y = images
    ch = PGDChannel(eps=1.0, sigma=0.0, steps=5)
    a = ch.sample(x, y, cnn, generator=torch.Generator().manual_seed(0))
    b = pgd(cnn, x, y, eps=1.0, steps=5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
    assert (norm_of(a - x) <= 1.0 + 1e-5).all() and a.min() >= 0 and a.max() <= 1
    # random start on: another stream, another start
    c = ch.sample(x, y, cnn, generator=torch.Generator().manual_seed(1))
    assert not torch.equal(a, c)


def test_noise_after_pgd_is_standard_gaussian(linear_model, moments):
    n = 8000
    x = torch.full((n, 6), 0.5, dtype=torch.float64)
    y = torch.zeros(n, dtype=torch.long)
    kw = dict(eps=0.4, steps=3, random_start=False, clamp=None)
    point = PGDChannel(sigma=0.0, **kw).sample(x, y, linear_model)
    noisy = PGDChannel(sigma=0.25, **kw).sample(
        x, y, linear_model, generator=torch.Generator().manual_seed(2)
    )
    moments(noisy - point, torch.zeros(6, dtype=torch.float64), 0.25)


def test_simulator_only(cnn, images):
    x, y = images
    ch = PGDChannel(eps=1.0, sigma=0.2, steps=2)
    assert not ch.has_density and ch.needs_target
    with pytest.raises(NoDensityError, match="no density"):
        ch.log_prob(x, x, y, cnn)
    with pytest.raises(NoDensityError, match="simulator"):
        ch.mean(x, y, cnn)
    with pytest.raises(NotImplementedError):
        ch.log_prob(x, x, y, cnn)


def test_gradients_reach_the_model_through_samples(cnn, images):
    x, y = images
    x_adv = PGDChannel(eps=1.0, sigma=0.1, steps=2).sample(x, y, cnn)
    F.cross_entropy(cnn(x_adv), y).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in cnn.parameters())


def test_errors(cnn, images):
    x, y = images
    with pytest.raises(ValueError, match="pass target="):
        PGDChannel(eps=1.0, sigma=0.1).sample(x, y)
    with pytest.raises(ValueError, match="steps must be >= 1"):
        PGDChannel(eps=1.0, sigma=0.1, steps=0)
    with pytest.raises(ValueError, match="step_size must be >= 0"):
        PGDChannel(eps=1.0, sigma=0.1, step_size=-1.0)
    with pytest.raises(ValueError, match="sigma must be >= 0"):
        PGDChannel(eps=1.0, sigma=-0.1)
