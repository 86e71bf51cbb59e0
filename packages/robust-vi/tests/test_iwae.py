"""The IWAE bound (SPEC §4): log-sum-exp by hand, above the surrogate, growing with K."""

from __future__ import annotations

import pytest
import torch

from adv_channels import GaussianChannel, mix_channel
from robust_vi import IWAEBound, SurrogateELBO, iwae_elbo, surrogate_elbo


@pytest.mark.parametrize(("k", "s"), [(1, 1), (4, 1), (3, 2)])
def test_log_mean_exp_by_hand(images, small_cnn, hand_loss, k, s):
    model = small_cnn(init_sigma=0.05)
    x, y = images
    loss = iwae_elbo(
        model,
        GaussianChannel(0.4),
        x,
        y,
        dataset_size=30,
        num_channel_samples=k,
        num_posterior_samples=s,
        generator=torch.Generator().manual_seed(7),
    )
    ref = hand_loss(model, x, y, 0.4, k, s, 30, seed=7, bound="lse")
    torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("k", [1, 3, 8])
def test_surrogate_never_exceeds_iwae_on_the_same_draws(images, small_cnn, k):
    model = small_cnn(init_sigma=0.1)
    with torch.no_grad():
        model[7].weight_mu.mul_(5.0)  # confident predictions: a wide spread of log p over x'
    x, y = images
    channel = mix_channel(eps=1.5, sigma=0.3)
    for seed in range(5):
        surrogate = surrogate_elbo(
            model,
            channel,
            x,
            y,
            dataset_size=24,
            num_channel_samples=k,
            generator=torch.Generator().manual_seed(seed),
        )
        iwae = iwae_elbo(
            model,
            channel,
            x,
            y,
            dataset_size=24,
            num_channel_samples=k,
            generator=torch.Generator().manual_seed(seed),
        )
        # As losses (negated bounds): IWAE bound >= surrogate bound  <=>  loss <= loss.
        if k == 1:
            torch.testing.assert_close(iwae, surrogate)
        else:
            assert iwae < surrogate


def test_per_point_terms_are_ordered_too(toy):
    x, y = toy.data()
    model = toy.model()
    channel = GaussianChannel(toy.sigma_c)
    for seed in range(3):
        n = len(x)
        sur = SurrogateELBO(num_channel_samples=6, task="regression").evaluate(
            model, channel, x, y, dataset_size=n, generator=torch.Generator().manual_seed(seed)
        )
        iwae = IWAEBound(num_channel_samples=6, task="regression").evaluate(
            model, channel, x, y, dataset_size=n, generator=torch.Generator().manual_seed(seed)
        )
        assert iwae.data_term >= sur.data_term
        torch.testing.assert_close(iwae.kl, sur.kl)


def test_iwae_grows_with_k_towards_the_exact_elbo(toy):
    """E[IWAE_K] is non-decreasing in K and tends to the exact ELBO (Burda et al. 2015)."""
    x, y = toy.data()
    model = toy.model()
    channel = GaussianChannel(toy.sigma_c)
    exact = toy.exact_loss(model, x, y).item()
    losses = []
    for k in (1, 2, 8, 32):
        with torch.no_grad():
            loss = iwae_elbo(
                model,
                channel,
                x,
                y,
                dataset_size=len(x),
                num_channel_samples=k,
                num_posterior_samples=400,
                task="regression",
                generator=torch.Generator(device="cpu").manual_seed(k),
            )
        losses.append(loss.item())
    # Seeded Monte Carlo over 400 posterior draws: the gaps between consecutive K are far
    # larger than the noise (about 0.01 here).
    assert losses[0] > losses[1] + 0.2 > losses[2] + 0.3 > losses[3] + 0.3
    assert losses[3] > exact - 0.05
    assert losses[3] - exact < 0.05
