"""adv_attacks on bnn_core's posterior predictive (cross-package, SPEC §1–2)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

bnn_core = pytest.importorskip("bnn_core")
from adv_attacks import one_step, pgd, pgd_plus  # noqa: E402


def _model(init_sigma: float, seed: int = 0):
    torch.manual_seed(seed)
    model = bnn_core.mnist_cnn(image_size=12, init_sigma=init_sigma)
    with torch.no_grad():  # scale the dense layer's mean up: confident, non-trivial PPD
        model[7].weight_mu.mul_(4.0)
    return model


def _data(b=6):
    g = torch.Generator().manual_seed(1)
    return torch.rand(b, 1, 12, 12, generator=g), torch.randint(0, 10, (b,), generator=g)


def test_one_step_follows_the_gradient_of_the_mean_probabilities():
    model = _model(init_sigma=0.3)
    ppd = bnn_core.PosteriorPredictive(
        model, num_samples=5, generator=torch.Generator().manual_seed(2)
    )
    x, y = _data()
    # Reference from the per-draw logits: -log (1/M) Σ_m softmax(f_m(x))_y.
    xr = x.clone().requires_grad_(True)
    probs = F.softmax(ppd.draws(xr), dim=-1).mean(0)
    (g,) = torch.autograd.grad(-probs[torch.arange(6), y].log().sum(), xr)
    g_unit = g / g.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    x_adv = one_step(ppd, x, y, eps=0.5, clamp=None)
    torch.testing.assert_close(x_adv - x, 0.5 * g_unit, atol=1e-5, rtol=1e-4)
    # Averaged logits would give another step.
    xr = x.clone().requires_grad_(True)
    (g2,) = torch.autograd.grad(F.cross_entropy(ppd.draws(xr).mean(0), y, reduction="sum"), xr)
    g2_unit = g2 / g2.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    assert not torch.allclose(x_adv - x, 0.5 * g2_unit, atol=1e-3)


def test_vanishing_sigma_equals_the_deterministic_mean_network():
    x, y = _data()
    for sigma, close in ((1e-8, True), (0.5, False)):
        model = _model(init_sigma=sigma)
        ppd = bnn_core.PosteriorPredictive(model, num_samples=4)

        def mean_net(t, model=model):
            with bnn_core.sample_mode(model, "mean"):
                return model(t)

        kw = dict(eps=1.0, steps=5, random_start=False)
        a, d = pgd(ppd, x, y, **kw), pgd(mean_net, x, y, **kw)
        assert torch.allclose(a, d, atol=1e-5) is close


@pytest.mark.parametrize("method", ["vmap", "loop"])
def test_eot_is_seeded_and_state_is_untouched(method):
    model = _model(init_sigma=0.3).train()
    ppd = bnn_core.PosteriorPredictive(model, num_samples=3, method=method)
    x, y = _data()
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    modes = bnn_core.get_sample_modes(model)
    runs = [
        pgd_plus(
            ppd,
            x,
            y,
            eps=1.0,
            nll_steps=2,
            entropy_steps=2,
            eot=True,
            generator=torch.Generator().manual_seed(5),
        )
        for _ in range(2)
    ]
    assert torch.equal(runs[0], runs[1])
    fixed = pgd_plus(
        ppd, x, y, eps=1.0, nll_steps=2, entropy_steps=2, generator=torch.Generator().manual_seed(5)
    )
    assert not torch.allclose(runs[0], fixed)
    assert model.training and bnn_core.get_sample_modes(model) == modes
    for n, p in model.named_parameters():
        assert torch.equal(p, params[n]) and p.requires_grad and p.grad is None


def test_regression_ppd():
    torch.manual_seed(0)
    model = bnn_core.regression_mlp(4, init_sigma=0.3)
    ppd = bnn_core.PosteriorPredictive(model, num_samples=5, task="regression")
    x, y = torch.randn(8, 4), torch.randn(8)
    for objective in ("nll", "mse", "entropy"):
        res = pgd(ppd, x, y, eps=0.5, steps=5, objective=objective, clamp=None, return_info=True)
        assert res.x_adv.shape == x.shape and res.success is None
        assert torch.isfinite(res.objective).all()
    _, var = ppd(x)
    _, var_adv = ppd(pgd(ppd, x, eps=0.5, steps=5, objective="entropy", clamp=None))
    assert (var_adv.log() > var.log()).all()
    with pytest.raises(ValueError, match="objective='cw' needs a classification"):
        pgd(ppd, x, y, eps=0.5, objective="cw", clamp=None)
