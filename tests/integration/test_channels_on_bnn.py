"""adv_channels on bnn_core models: a Bayesian model in "sample" mode and its PPD (SPEC §3–4)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

bnn_core = pytest.importorskip("bnn_core")
from adv_channels import OneStepChannel, mix_channel, nn50_channel  # noqa: E402


def _model(seed: int = 0, init_sigma: float = 0.1):
    torch.manual_seed(seed)
    return bnn_core.mnist_cnn(image_size=12, init_sigma=init_sigma)


def _data(b: int = 6):
    g = torch.Generator().manual_seed(1)
    return torch.rand(b, 1, 12, 12, generator=g), torch.randint(0, 10, (b,), generator=g)


def _variational_params(model):
    return {n: p for n, p in model.named_parameters() if n.endswith(("_mu", "_rho"))}


def test_pathwise_gradient_reaches_mu_and_rho_through_samples():
    model = _model()
    x, y = _data()
    x_adv = OneStepChannel(eps=1.0, sigma=0.1).sample(x, y, model)  # one posterior draw
    assert x_adv.grad_fn is None
    F.cross_entropy(model(x_adv), y).backward()  # another draw: the likelihood term
    for name, p in _variational_params(model).items():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_differentiable_step_depends_on_the_posterior_parameters():
    model = _model()
    x, y = _data()
    ch = OneStepChannel(eps=1.0, sigma=0.0, clamp=None, differentiable=True)
    x_adv = ch.sample(x, y, model)
    params = _variational_params(model)
    grads = torch.autograd.grad(x_adv.square().sum(), list(params.values()), allow_unused=True)
    assert all(g is not None and g.abs().sum() > 0 for g in grads)


def test_channel_on_the_ppd_with_fixed_draws_is_deterministic():
    model = _model()
    ppd = bnn_core.PosteriorPredictive(
        model, num_samples=4, generator=torch.Generator().manual_seed(3)
    )
    x, y = _data()
    ch = OneStepChannel(eps=1.0, sigma=0.2)
    torch.testing.assert_close(ch.mean(x, y, ppd), ch.mean(x, y, ppd))
    x_adv = ch.sample(x, y, ppd, generator=torch.Generator().manual_seed(0))
    lp = ch.log_prob(x_adv, x, y, ppd)
    ref = torch.distributions.Normal(ch.mean(x, y, ppd), 0.2).log_prob(x_adv).flatten(1).sum(1)
    torch.testing.assert_close(lp, ref)
    # In "sample" mode each call draws new weights: the attack point moves.
    assert not torch.allclose(ch.mean(x, y, model), ch.mean(x, y, model))


def test_mix_on_a_bayesian_model_leaves_it_untouched():
    model = _model()
    modes = bnn_core.get_sample_modes(model)
    model.train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    x, y = _data(10)
    x_adv = mix_channel(eps=1.0, sigma=0.1).sample(x, y, model)
    assert x_adv.shape == x.shape
    assert model.training and bnn_core.get_sample_modes(model) == modes
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n]) and p.grad is None and p.requires_grad


def test_nn50_adversary_step_against_a_bayesian_model():
    model = _model()
    x, y = _data(8)
    ch = nn50_channel((1, 12, 12), eps=1.0, sigma_max=0.2, num_classes=10)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    loss = ch.adversary_step(model, x, y, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(loss)
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n]) and p.grad is None
