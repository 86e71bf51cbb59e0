"""TRADES' inner maximisation: inside the ball, raises the KL, leaves the model alone."""

from __future__ import annotations

import pytest
import torch

from adv_attacks import per_example_norm, read_output
from robust_vi import TradesPenalty, predictive_kl, trades_attack


@pytest.fixture
def net(small_cnn):
    model = small_cnn(bayesian=False)
    with torch.no_grad():
        model[7].weight.mul_(5.0)
    return model


@pytest.mark.parametrize(("norm", "eps"), [("l2", 1.0), ("linf", 0.1)])
def test_stays_in_the_ball_and_range_and_raises_the_kl(net, images, norm, eps):
    x, _ = images
    x0 = x.clone()
    x_star = trades_attack(
        net, x, eps=eps, steps=5, norm=norm, generator=torch.Generator().manual_seed(0)
    )
    assert torch.equal(x, x0)
    delta = (x_star - x).flatten(1)
    size = delta.norm(dim=1) if norm == "l2" else delta.abs().amax(dim=1)
    assert bool((size <= eps + 1e-5).all())
    assert bool((x_star >= 0).all()) and bool((x_star <= 1).all())
    with torch.no_grad():
        clean = read_output(net(x), len(x))
        kl_star = predictive_kl(clean, read_output(net(x_star), len(x)))
        start = x + 0.001 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
        kl_start = predictive_kl(clean, read_output(net(start.clamp(0, 1)), len(x)))
    assert kl_star.mean() > 10 * kl_start.mean()
    assert bool((kl_star >= kl_start - 1e-6).all())


def test_leaves_the_model_untouched(net, images):
    x, _ = images
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    trades_attack(net, x, eps=1.0, steps=2)
    assert net.training
    assert all(p.requires_grad and p.grad is None for p in net.parameters())
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k])


def test_zero_budget_returns_the_clean_input(net, images):
    x, _ = images
    torch.testing.assert_close(trades_attack(net, x, eps=0.0, steps=2), x)


def test_regression_predictive_kl():
    from adv_attacks import RegressionOutput

    p = RegressionOutput(torch.tensor([0.0]), torch.tensor([1.0]))
    q = RegressionOutput(torch.tensor([1.0]), torch.tensor([4.0]))
    # ½ [log 4 + (1 + 1)/4 − 1]
    torch.testing.assert_close(predictive_kl(p, q), torch.tensor([0.5 * (1.3862944 + 0.5 - 1)]))


def test_errors(net, images):
    x, _ = images
    with pytest.raises(ValueError, match="steps"):
        trades_attack(net, x, eps=1.0, steps=0)
    with pytest.raises(ValueError, match="eps"):
        trades_attack(net, x, eps=-0.1)
    with pytest.raises(ValueError, match="norm"):
        trades_attack(net, x, eps=0.1, norm="l3")
    # outside the range, clamping after projection would leave the ε-ball: refused
    with pytest.raises(ValueError, match=r"outside clamp=\(0.0, 1.0\)"):
        trades_attack(net, x + 2.0, eps=0.1)
    with pytest.raises(ValueError, match="low < high"):
        trades_attack(net, x, eps=0.1, clamp=(1.0, 0.0))
    with pytest.raises(TypeError, match="clamp must be a"):
        trades_attack(net, x, eps=0.1, clamp=0.5)
    with pytest.raises(ValueError, match="low < high"):
        TradesPenalty(eps=0.1, clamp=(1.0, 0.0))


def test_unbounded_inputs_stay_in_the_ball(net, images):
    x, _ = images
    x = 3.0 * x - 1.0  # like standardised inputs, outside [0, 1]
    x_star = trades_attack(net, x, eps=0.1, clamp=None)
    assert (per_example_norm(x_star - x) <= 0.1 + 1e-6).all()
