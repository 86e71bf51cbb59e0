"""The surrogate ELBO (SPEC §4): the plain ELBO on the identity channel, K and S draws."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from adv_channels import GaussianChannel, IdentityChannel, mix_channel, os_channel
from bnn_core import (
    forward_samples,
    kl_divergence,
    regression_mlp,
    sample_weights,
)
from robust_vi import SurrogateELBO, surrogate_elbo


def test_identity_channel_gives_the_plain_elbo(images, small_cnn):
    model = small_cnn()
    x, y = images
    loss = surrogate_elbo(
        model, IdentityChannel(), x, y, dataset_size=100, generator=torch.Generator().manual_seed(3)
    )
    # The plain minibatch ELBO with the same weight draw: (1/N)[(N/B) Σ_b CE_b + KL].
    weights = sample_weights(model, 1, generator=torch.Generator().manual_seed(3))
    logits = forward_samples(model, x, weights=weights)[0]
    plain = F.cross_entropy(logits, y) + kl_divergence(model) / 100
    torch.testing.assert_close(loss, plain, rtol=1e-6, atol=1e-6)
    g_loss = torch.autograd.grad(loss, list(model.parameters()))
    g_plain = torch.autograd.grad(plain, list(model.parameters()))
    for a, b in zip(g_loss, g_plain, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(("k", "s"), [(1, 1), (3, 1), (2, 3)])
def test_k_channel_draws_and_s_posterior_draws_by_hand(images, small_cnn, hand_loss, k, s):
    model = small_cnn()
    x, y = images
    loss = surrogate_elbo(
        model,
        GaussianChannel(0.3),
        x,
        y,
        dataset_size=50,
        num_channel_samples=k,
        num_posterior_samples=s,
        generator=torch.Generator().manual_seed(5),
    )
    ref = hand_loss(model, x, y, 0.3, k, s, 50, seed=5)
    torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-6)


def test_regression_uses_the_gaussian_likelihood_with_learned_noise(hand_loss):
    torch.manual_seed(0)
    model = regression_mlp(3, init_noise=0.7, init_sigma=0.05)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(10, 3, generator=g), torch.randn(10, generator=g)
    loss = surrogate_elbo(
        model,
        GaussianChannel(0.2),
        x,
        y,
        dataset_size=40,
        num_channel_samples=2,
        task="regression",
        generator=torch.Generator().manual_seed(2),
    )
    ref = hand_loss(model, x, y, 0.2, 2, 1, 40, seed=2, regression=True)
    torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-6)
    (g_noise,) = torch.autograd.grad(loss, [model.likelihood.noise_rho])
    assert g_noise.abs() > 0  # the noise s is learned


def test_kl_weight_scales_only_the_kl(images, small_cnn):
    model = small_cnn()
    x, y = images
    ch = IdentityChannel()

    def run(w):
        return SurrogateELBO().evaluate(
            model,
            ch,
            x,
            y,
            dataset_size=64,
            kl_weight=w,
            generator=torch.Generator().manual_seed(0),
        )

    full, half, none = run(1.0), run(0.5), run(0.0)
    torch.testing.assert_close(none.loss, -none.data_term)
    torch.testing.assert_close(full.loss - half.loss, 0.5 * full.kl / 64)
    torch.testing.assert_close(full.kl, kl_divergence(model).detach())


def test_gradients_are_pathwise_and_reach_mu_and_rho(images, small_cnn):
    model = small_cnn(init_sigma=0.05)
    x, y = images
    channel = mix_channel(eps=1.0, sigma=0.2)
    loss = surrogate_elbo(
        model, channel, x, y, dataset_size=24, generator=torch.Generator().manual_seed(0)
    )
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert all(p.requires_grad for p in model.parameters())


def test_same_generator_same_loss_and_the_mode_is_left_alone(images, small_cnn):
    model = small_cnn()
    model.eval()
    x, y = images
    ch = mix_channel(eps=1.0, sigma=0.2)
    a = surrogate_elbo(model, ch, x, y, dataset_size=24, generator=torch.Generator().manual_seed(9))
    b = surrogate_elbo(model, ch, x, y, dataset_size=24, generator=torch.Generator().manual_seed(9))
    assert torch.equal(a, b)
    assert not model.training
    assert all(layer.sample_mode.value == "sample" for layer in (model[0], model[3], model[7]))


@pytest.mark.parametrize("differentiable", [False, True])
def test_attack_channels_run_inside_inference_mode(images, small_cnn, differentiable):
    # evaluating the objective under inference_mode failed inside the one-step attack
    x, y = images
    model = small_cnn()
    mix = mix_channel(eps=1.0, sigma=0.1)
    one = os_channel(eps=1.0, sigma=0.1, differentiable=differentiable)
    for channel in (mix, one):
        args = (model, channel, x, y)
        kw = {"dataset_size": 600}
        ref = surrogate_elbo(*args, **kw, generator=torch.Generator().manual_seed(0))
        with torch.inference_mode():
            got = surrogate_elbo(*args, **kw, generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(got, ref.detach())
