from __future__ import annotations

import pytest
import torch

from adv_channels import (
    GaussianChannel,
    IdentityChannel,
    LearnedChannel,
    MixtureChannel,
    OneStepChannel,
    PGDChannel,
    at50_channel,
    at_channel,
    mix_channel,
    nn50_channel,
    nn_channel,
    os50_channel,
    os_channel,
    pgd_at50_channel,
    pgd_at_channel,
)


def _describe(ch):
    if isinstance(ch, MixtureChannel):
        return [(w, _describe(c)) for w, c in zip(ch.weights, ch.components, strict=True)]
    if isinstance(ch, OneStepChannel | PGDChannel):
        return (type(ch).__name__, ch.objective.value, ch.eps, ch.sigma, ch.clamp)
    if isinstance(ch, GaussianChannel):
        return (type(ch).__name__, ch.sigma)
    return type(ch).__name__


def test_mix_classification_is_the_papers_mixture():
    ch = mix_channel(eps=2.0, sigma=0.2)
    assert ch.stratified and ch.has_density and ch.needs_target
    one = ("OneStepChannel",)
    assert _describe(ch) == [
        (0.4, ("IdentityChannel", 0.2)),
        (0.2, (*one, "nll", 2.0, 0.2, (0.0, 1.0))),
        (0.2, (*one, "cw", 2.0, 0.2, (0.0, 1.0))),
        (0.2, (*one, "entropy", 2.0, 0.2, (0.0, 1.0))),
    ]
    assert ch.components[3].attack.spec.entropy_sign == 1


def test_mix_regression_is_the_papers_mixture():
    ch = mix_channel("regression", eps=0.5, sigma=0.1, sigma0=0.0)
    assert _describe(ch) == [
        (0.4, ("IdentityChannel", 0.0)),
        (0.6, ("OneStepChannel", "mse", 0.5, 0.1, None)),
    ]


def test_os_os50_at():
    assert _describe(os_channel(eps=2.0, sigma=0.3)) == (
        "OneStepChannel",
        "nll",
        2.0,
        0.3,
        (0.0, 1.0),
    )
    assert _describe(os50_channel(eps=2.0, sigma=0.3)) == [
        (0.5, ("IdentityChannel", 0.0)),
        (0.5, ("OneStepChannel", "nll", 2.0, 0.3, (0.0, 1.0))),
    ]
    at = at_channel(eps=2.0)
    assert at.sigma == 0.0 and not at.has_density and not at.differentiable
    at50 = at50_channel(eps=2.0)
    assert at50.stratified and _describe(at50) == [
        (0.5, ("IdentityChannel", 0.0)),
        (0.5, ("OneStepChannel", "nll", 2.0, 0.0, (0.0, 1.0))),
    ]
    pgd = pgd_at_channel(eps=2.0, steps=7)
    assert pgd.sigma == 0.0 and pgd.attack.steps == 7 and pgd.attack.random_start
    assert isinstance(pgd_at50_channel(eps=2.0).components[1], PGDChannel)


def test_nn_channels():
    conv = nn_channel((1, 10, 10), eps=2.0, sigma_max=0.3, num_classes=10)
    assert isinstance(conv, LearnedChannel) and conv.clamp == (0.0, 1.0)
    dense = nn_channel((8,), eps=1.0, sigma_max=0.2, num_classes=None)
    assert dense.clamp is None and dense.num_classes is None
    nn50 = nn50_channel((8,), eps=1.0, sigma_max=0.2, num_classes=None)
    assert isinstance(nn50.components[0], IdentityChannel) and nn50.learnable
    with pytest.raises(ValueError, match="input_shape"):
        nn_channel((1, 10), eps=1.0, sigma_max=0.2, num_classes=3)


def test_every_named_channel_samples_on_a_cnn(cnn, images):
    x, y = images
    channels = [
        os_channel(eps=1.0, sigma=0.1),
        os50_channel(eps=1.0, sigma=0.1),
        mix_channel(eps=1.0, sigma=0.1),
        nn_channel((1, 10, 10), eps=1.0, sigma_max=0.1, num_classes=10),
        nn50_channel((1, 10, 10), eps=1.0, sigma_max=0.1, num_classes=10),
        at_channel(eps=1.0),
        at50_channel(eps=1.0),
        pgd_at_channel(eps=1.0, steps=2),
        pgd_at50_channel(eps=1.0, steps=2),
    ]
    for ch in channels:
        x_adv = ch.sample(x, y, cnn, generator=torch.Generator().manual_seed(0))
        assert x_adv.shape == x.shape and torch.isfinite(x_adv).all(), ch
        assert not torch.equal(x_adv, x), ch


def test_nn50_adversary_step_trains_the_learned_half(cnn, images):
    x, y = images
    ch = nn50_channel((1, 10, 10), eps=1.0, sigma_max=0.1, num_classes=10)
    before = [p.detach().clone() for p in ch.parameters()]
    loss = ch.adversary_step(cnn, x, y)
    assert loss is not None and loss.ndim == 0
    assert any(not torch.equal(a, p) for a, p in zip(before, ch.parameters(), strict=True))
    assert mix_channel(eps=1.0, sigma=0.1).adversary_step(cnn, x, y) is None


def test_bad_options():
    with pytest.raises(ValueError, match="task must be one of"):
        mix_channel("ranking", eps=1.0, sigma=0.1)
    with pytest.raises(ValueError, match="sigma must be >= 0"):
        mix_channel(eps=1.0, sigma=-0.1)
    with pytest.raises(TypeError):
        os_channel(eps=1.0)  # sigma is required
