"""Generalised posteriors (SPEC §4): TRADES and ALP objectives against hand computations."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from adv_channels import IdentityChannel, at50_channel, at_channel
from bnn_core import draw_noise, forward_samples, kl_divergence, weights_from_noise
from robust_vi import ALPPenalty, GeneralisedELBO, TradesPenalty, generalised_elbo, trades_attack


def _fgm_l2(net, x, y, eps):
    xr = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(net(xr), y, reduction="sum"), xr)
    return (x + eps * g / g.flatten(1).norm(dim=1).view(-1, 1, 1, 1)).clamp(0, 1).detach()


def _kl(a, b):
    """Batch-mean KL(softmax(a) ‖ softmax(b)) with F.kl_div (input = log q, target = p)."""
    return F.kl_div(b.log_softmax(-1), a.softmax(-1), reduction="batchmean")


def test_trades_is_clean_ce_plus_beta_times_the_batch_mean_kl(images, small_cnn):
    net = small_cnn(bayesian=False)
    with torch.no_grad():
        net[7].weight.mul_(4.0)
    x, y = images
    beta = 6.0
    loss = generalised_elbo(
        net,
        IdentityChannel(),
        x,
        y,
        dataset_size=100,
        penalty=TradesPenalty(eps=1.0, steps=4),
        weight=beta,
        point_estimate=True,
        generator=torch.Generator().manual_seed(2),
    )
    x_star = trades_attack(net, x, eps=1.0, steps=4, generator=torch.Generator().manual_seed(2))
    logits = net(x)
    ref = F.cross_entropy(logits, y) + beta * _kl(logits, net(x_star))
    torch.testing.assert_close(loss, ref, rtol=1e-4, atol=1e-5)
    assert _kl(logits, net(x_star)) > 1e-3  # the penalty is not trivially zero


def test_trades_on_a_posterior_uses_the_same_draw_for_all_terms(images, small_cnn):
    model = small_cnn(init_sigma=0.1)
    x, y = images
    loss = generalised_elbo(
        model,
        IdentityChannel(),
        x,
        y,
        dataset_size=50,
        penalty=TradesPenalty(eps=1.0, steps=3),
        weight=2.0,
        generator=torch.Generator().manual_seed(5),
    )
    gen = torch.Generator().manual_seed(5)
    weights = weights_from_noise(model, draw_noise(model, 1, gen, all_layers=True))

    def f(inputs):
        return forward_samples(model, inputs, weights=weights)[0]

    x_star = trades_attack(f, x, eps=1.0, steps=3, generator=gen)
    logits = f(x)
    ref = F.cross_entropy(logits, y) + 2.0 * _kl(logits, f(x_star)) + kl_divergence(model) / 50
    torch.testing.assert_close(loss, ref, rtol=1e-4, atol=1e-5)


def test_alp_is_the_at_loss_plus_lambda_times_the_squared_logit_distance(images, small_cnn):
    net = small_cnn(bayesian=False)
    x, y = images
    channel = at50_channel(eps=1.5)
    loss = generalised_elbo(
        net,
        channel,
        x,
        y,
        dataset_size=100,
        penalty=ALPPenalty(at_channel(eps=1.5)),
        weight=0.5,
        point_estimate=True,
        generator=torch.Generator().manual_seed(3),
    )
    comp = channel.assign(len(x), generator=torch.Generator().manual_seed(3))
    x_adv = _fgm_l2(net, x, y, 1.5)
    x_mixed = torch.where(comp.view(-1, 1, 1, 1) == 1, x_adv, x)
    pairing = (net(x) - net(x_adv)).square().sum(dim=1).mean()
    ref = F.cross_entropy(net(x_mixed), y) + 0.5 * pairing
    torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-6)


def test_penalty_reported_and_weight_zero_is_the_surrogate(images, small_cnn):
    model = small_cnn()
    x, y = images
    objective = GeneralisedELBO(TradesPenalty(eps=0.5, steps=2), weight=0.0)
    result = objective.evaluate(
        model, IdentityChannel(), x, y, dataset_size=24, generator=torch.Generator().manual_seed(0)
    )
    assert result.penalty is not None and result.penalty >= 0
    torch.testing.assert_close(result.loss, -result.data_term + result.kl / 24)


def test_errors():
    with pytest.raises(ValueError, match="weight"):
        GeneralisedELBO(TradesPenalty(eps=1.0), weight=-0.1)
    with pytest.raises(TypeError, match="penalty"):
        GeneralisedELBO("trades", weight=1.0)  # type: ignore[arg-type]
