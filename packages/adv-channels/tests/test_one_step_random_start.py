"""The one-step channel's random-start option (Wong et al. 2020): start, step origin, fusing."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from adv_attacks import AttackProblem, random_in_ball
from adv_channels import IdentityChannel, MixtureChannel, NoDensityError, OneStepChannel, os_channel
from adv_channels.one_step import sample_one_steps


def _reference(w, b, x, y, eps, alpha, delta, clamp):
    """Float64 by hand: ``x₀ = clip(x + δ)``, ``x₁ = clip(Π_ε(x₀ + α g(x₀)/‖g(x₀)‖))``."""
    x0 = x + delta
    if clamp is not None:
        x0 = x0.clamp(*clamp)
    p = F.softmax(x0 @ w.T + b, dim=-1)
    g = (p - F.one_hot(y, w.shape[0]).to(x.dtype)) @ w  # ∇ -log softmax_y at x₀
    x1 = x0 + alpha * g / g.norm(dim=1, keepdim=True)
    d = x1 - x
    d = d * (eps / d.norm(dim=1, keepdim=True)).clamp(max=1.0)
    x1 = x + d
    return x1.clamp(*clamp) if clamp is not None else x1


@pytest.mark.parametrize("clamp", [None, (0.0, 1.0)])
def test_point_is_the_step_from_the_random_start(linear_model, tabular, clamp):
    x, y = tabular
    w, b = linear_model.weight.detach(), linear_model.bias.detach()
    ch = OneStepChannel(eps=0.7, sigma=0.0, clamp=clamp, random_start=True)
    assert ch.step_size == pytest.approx(1.25 * 0.7)
    out = ch.sample(x, y, linear_model, generator=torch.Generator().manual_seed(5))
    delta = random_in_ball(x, torch.full((5,), 0.7), generator=torch.Generator().manual_seed(5))
    ref = _reference(w, b, x, y, 0.7, 0.875, delta, clamp)
    torch.testing.assert_close(out, ref)
    # the origin matters: the step from x lands elsewhere
    at_x = OneStepChannel(eps=0.7, sigma=0.0, clamp=clamp).sample(x, y, linear_model)
    assert (out - at_x).norm(dim=1).min() > 1e-3


def test_start_and_point_stay_in_the_ball(cnn, images, norm_of):
    x, y = images
    ch = OneStepChannel(eps=1.5, sigma=0.0, random_start=True, step_size=4.0)
    for seed in range(5):
        out = ch.sample(x, y, cnn, generator=torch.Generator().manual_seed(seed))
        assert (norm_of(out - x) <= 1.5 + 1e-5).all()
        assert out.min() >= 0 and out.max() <= 1
    # α large: every unclamped point is projected onto the sphere
    free = OneStepChannel(eps=1.5, sigma=0.0, clamp=None, random_start=True, step_size=4.0)
    out = free.sample(x, y, cnn, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(norm_of(out - x), torch.full((x.shape[0],), 1.5))


def test_generator_reproducible_and_noise_after(cnn, images):
    x, y = images
    ch = OneStepChannel(eps=1.0, sigma=0.2, random_start=True)
    a = ch.sample(x, y, cnn, generator=torch.Generator().manual_seed(3))
    b = ch.sample(x, y, cnn, generator=torch.Generator().manual_seed(3))
    c = ch.sample(x, y, cnn, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)
    assert not ch.has_density
    with pytest.raises(NoDensityError):
        ch.log_prob(a, x, y, cnn)
    with pytest.raises(NoDensityError):
        ch.mean(x, y, cnn)


def test_fused_mixture_equals_each_component_alone(cnn):
    g = torch.Generator().manual_seed(7)
    x, y = torch.rand(12, 1, 10, 10, generator=g), torch.randint(0, 10, (12,), generator=g)
    parts = [
        OneStepChannel(eps=1.0, sigma=0.0, objective=o, random_start=True)
        for o in ("nll", "cw", "entropy")
    ]
    assert parts[0].fuses_with(parts[1])
    assert not parts[0].fuses_with(OneStepChannel(eps=1.0, sigma=0.0))  # other origin
    shorter = OneStepChannel(eps=1.0, sigma=0.0, random_start=True, step_size=0.5)
    assert not parts[0].fuses_with(shorter)
    route = torch.tensor([0, 1, 2] * 4)
    fused = sample_one_steps(parts, route, x, y, cnn, generator=torch.Generator().manual_seed(1))
    # the same starts, drawn for the whole batch at once
    delta = random_in_ball(x, torch.ones(12), generator=torch.Generator().manual_seed(1))
    for k, ch in enumerate(parts):
        idx = (route == k).nonzero().squeeze(1)
        start = (x + delta).clamp(0, 1)[idx]
        # the step from that start: a one-step attack at x₀ with step α, projected onto B_ε(x)
        problem = AttackProblem(
            cnn, x[idx], y[idx], eps=1.0, norm="l2", clamp=(0.0, 1.0), specs=(ch.attack.spec,)
        )
        grad, _ = problem.gradient(start, ch.attack.spec)
        ref = problem.step(start.clone(), grad, torch.full((len(idx),), 1.25))
        torch.testing.assert_close(fused[idx], ref)
    mix = MixtureChannel([IdentityChannel(), *parts], [0.4, 0.2, 0.2, 0.2])
    out = mix.sample(x, y, cnn, generator=torch.Generator().manual_seed(2))
    assert out.shape == x.shape


def test_options_and_errors():
    assert "random_start=True" in repr(os_channel(eps=2.0, sigma=0.1, random_start=True))
    with pytest.raises(ValueError, match="step_size"):
        OneStepChannel(eps=1.0, sigma=0.0, step_size=1.0)
    with pytest.raises(ValueError, match="random_start"):
        OneStepChannel(eps=1.0, sigma=0.0, random_start=True, differentiable=True)
    with pytest.raises(ValueError, match="step_size"):
        OneStepChannel(eps=1.0, sigma=0.0, random_start=True, step_size=-1.0)
