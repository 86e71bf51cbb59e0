"""The ratio-of-means gradient (SPEC §4, SM-4): IWAE's gradient on the same draws, consistent."""

from __future__ import annotations

import torch

from adv_channels import GaussianChannel, mix_channel
from robust_vi import RatioOfMeans, iwae_elbo, ratio_of_means, surrogate_elbo


def _grads(loss, model):
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.autograd.grad(loss, params)


def test_equals_the_iwae_gradient_on_the_same_draws(images, small_cnn):
    model = small_cnn(init_sigma=0.1)
    with torch.no_grad():
        model[7].weight_mu.mul_(4.0)  # unequal weights p_k / Σ_j p_j
    x, y = images
    channel = mix_channel(eps=1.5, sigma=0.3)  # attack-based: the target is each draw β_s
    kw = {"dataset_size": 100, "num_channel_samples": 4, "num_posterior_samples": 2}
    rom = ratio_of_means(model, channel, x, y, generator=torch.Generator().manual_seed(1), **kw)
    iwae = iwae_elbo(model, channel, x, y, generator=torch.Generator().manual_seed(1), **kw)
    torch.testing.assert_close(rom, iwae)  # the value is the IWAE estimate
    for a, b in zip(_grads(rom, model), _grads(iwae, model), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)


def test_with_one_channel_draw_it_is_the_surrogate_gradient(images, small_cnn):
    model = small_cnn(init_sigma=0.1)
    x, y = images
    channel = GaussianChannel(0.3)
    rom = ratio_of_means(
        model,
        channel,
        x,
        y,
        dataset_size=24,
        num_channel_samples=1,
        generator=torch.Generator().manual_seed(2),
    )
    sur = surrogate_elbo(
        model, channel, x, y, dataset_size=24, generator=torch.Generator().manual_seed(2)
    )
    torch.testing.assert_close(rom, sur)
    for a, b in zip(_grads(rom, model), _grads(sur, model), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_the_ratio_form_weights_the_per_draw_gradients():
    """One point, one draw: the gradient is Σ_k w_k ∇ log p_k with w = softmax(log p)."""
    logp = torch.tensor([[-1.0], [-3.0], [-0.5]], requires_grad=True)
    value = RatioOfMeans(num_channel_samples=3).bound(logp)
    (g,) = torch.autograd.grad(value.sum(), logp)
    p = torch.tensor([-1.0, -3.0, -0.5]).exp()
    torch.testing.assert_close(g[:, 0], p / p.sum())
    torch.testing.assert_close(value, torch.logsumexp(logp.detach(), 0) - torch.tensor(3.0).log())


def test_consistent_for_the_exact_elbo_gradient_on_the_conjugate_toy(toy):
    """On y = β x' + noise with x' ~ N(x, σ_c²) the exact ELBO is known (quadrature).

    The ratio-of-means gradient (and IWAE's, equal on the same draws) is biased for finite
    K; its error against the exact gradient shrinks as K grows (paper SM-4).
    """
    x, y = toy.data()
    channel = GaussianChannel(toy.sigma_c)
    reference = toy.model()
    exact = toy.grad(toy.exact_loss(reference, x, y), reference)
    errors = {}
    for k in (1, 4, 32):
        model = toy.model()
        kw = {
            "dataset_size": len(x),
            "num_channel_samples": k,
            "num_posterior_samples": 1000,
            "task": "regression",
        }
        rom = ratio_of_means(model, channel, x, y, generator=torch.Generator().manual_seed(k), **kw)
        g_rom = toy.grad(rom, model)
        iwae = iwae_elbo(model, channel, x, y, generator=torch.Generator().manual_seed(k), **kw)
        torch.testing.assert_close(toy.grad(iwae, model), g_rom)
        errors[k] = (g_rom - exact).norm().item()
    scale = exact.norm().item()
    # Measured over seeds: about 5x, 0.2–0.5x and 0.01–0.05x |exact| for K = 1, 4, 32;
    # the Monte Carlo noise of 1000 posterior draws is a few percent.
    assert errors[1] > 3 * errors[4] > 9 * errors[32]
    assert errors[32] < 0.15 * scale
