"""Point-estimate adversarial training, the MAP limit (SPEC §4): the standard AT losses."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from adv_attacks import pgd
from adv_channels import at50_channel, at_channel, os_channel, pgd_at_channel
from robust_vi import AdversarialTraining, adversarial_training


def fgm_l2(net, x, y, eps):
    """Goodfellow's fast gradient step in L2 (SPEC §2's one-step), clamped to [0, 1]."""
    xr = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(net(xr), y, reduction="sum"), xr)
    norm = g.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    return (x + eps * g / norm).clamp(0.0, 1.0).detach()


def test_deterministic_one_step_channel_gives_the_fgm_loss(images, small_cnn):
    net = small_cnn(bayesian=False)
    x, y = images
    loss = adversarial_training(net, at_channel(eps=1.5), x, y, dataset_size=1000)
    ref = F.cross_entropy(net(fgm_l2(net, x, y, 1.5)), y)
    torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-6)


def test_the_papers_at_is_half_clean_half_one_step(images, small_cnn):
    net = small_cnn(bayesian=False)
    x, y = images
    channel = at50_channel(eps=1.5)
    loss = adversarial_training(
        net, channel, x, y, dataset_size=100, generator=torch.Generator().manual_seed(4)
    )
    # The same stratified assignment (exactly B/2 attacked), then Goodfellow's loss.
    comp = channel.assign(len(x), generator=torch.Generator().manual_seed(4))
    assert int(comp.sum()) == len(x) // 2
    attacked = comp.view(-1, 1, 1, 1) == 1
    x_mixed = torch.where(attacked, fgm_l2(net, x, y, 1.5), x)
    ref = F.cross_entropy(net(x_mixed), y)
    torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-6)


def test_multi_step_channel_gives_madrys_loss(images, small_cnn):
    net = small_cnn(bayesian=False)
    x, y = images
    loss = adversarial_training(
        net,
        pgd_at_channel(eps=1.0, steps=5),
        x,
        y,
        dataset_size=100,
        generator=torch.Generator().manual_seed(6),
    )
    x_adv = pgd(net, x, y, eps=1.0, steps=5, generator=torch.Generator().manual_seed(6))
    torch.testing.assert_close(loss, F.cross_entropy(net(x_adv), y), rtol=1e-5, atol=1e-6)


def test_a_bayesian_model_is_trained_at_its_posterior_mean(images, small_cnn):
    bnn = small_cnn(init_sigma=0.2)
    twin = small_cnn(bayesian=False)
    with torch.no_grad():
        for i in (0, 3, 7):
            twin[i].weight.copy_(bnn[i].weight_mu)
            twin[i].bias.copy_(bnn[i].bias_mu)
    x, y = images
    loss = adversarial_training(bnn, at_channel(eps=1.0), x, y, dataset_size=100)
    ref = adversarial_training(twin, at_channel(eps=1.0), x, y, dataset_size=100)
    torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-6)
    loss.backward()
    assert bnn[0].weight_rho.grad is None  # flat prior, point estimate: no σ, no KL
    assert bnn[0].weight_mu.grad is not None
    assert bnn[0].sample_mode.value == "sample"  # the mode is restored


def test_rejects_a_stochastic_channel(images, small_cnn):
    net = small_cnn(bayesian=False)
    x, y = images
    with pytest.raises(ValueError, match="deterministic"):
        adversarial_training(net, os_channel(eps=1.0, sigma=0.1), x, y, dataset_size=100)


def test_no_kl_and_a_per_point_loss(images, small_cnn):
    net = small_cnn(bayesian=False)
    x, y = images
    result = AdversarialTraining().evaluate(net, at_channel(eps=0.0), x, y, dataset_size=10**6)
    assert result.kl == 0
    torch.testing.assert_close(result.loss, F.cross_entropy(net(x), y))  # ε = 0: clean CE
