"""The amortised (denoiser) reactive PPD: closed-form posterior, PGD recovery, save/load."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from adv_channels import GaussianChannel, PGDChannel
from adv_reactive import ABC, DenoisingPPD, DrawPredictive, GaussianDenoiser, ReactivePPD
from bnn_core import BayesLinear

SHAPE = (1, 2, 3)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_denoiser_learns_the_gaussian_posterior_of_the_clean_input():
    """x ~ N(0, τ²), x' = x + σξ: p(x | x') = N(τ²/(τ²+σ²) x', τ²σ²/(τ²+σ²)) (closed form)."""
    torch.manual_seed(0)
    model = nn.Sequential(BayesLinear(2, 3, init_sigma=0.1))
    tau, sigma = 1.0, 0.5
    x = tau * torch.randn(2000, 2, generator=_gen(0))
    dppd = DenoisingPPD(
        model,
        GaussianChannel(sigma),
        num_samples=2,
        epochs=15,
        hidden=16,
        depth=1,
        batch_size=200,
        lr=1e-2,
        generator=_gen(1),
    ).fit(x)
    q = torch.linspace(-1.0, 1.0, 5)[:, None].expand(5, 2).contiguous()
    mean, std = dppd.denoise(q)
    shrink = tau**2 / (tau**2 + sigma**2)
    torch.testing.assert_close(mean, shrink * q, atol=0.08, rtol=0)
    torch.testing.assert_close(
        std, torch.full_like(std, math.sqrt(shrink) * sigma), atol=0, rtol=0.15
    )
    # the training NLL approaches the posterior's entropy, D/2 log(2πe s²)
    entropy = math.log(2 * math.pi * math.e * shrink * sigma**2)
    assert dppd.losses[-1] < dppd.losses[0] and abs(dppd.losses[-1] - entropy) < 0.1


def _corners() -> tuple[torch.Tensor, torch.Tensor]:
    corners = torch.tensor(
        [[a, b, c, a, b, c] for a in (0.0, 1.0) for b in (0.0, 1.0) for c in (0.0, 1.0)],
        dtype=torch.float64,
    ).reshape(8, *SHAPE)
    return corners, torch.arange(8) % 3


def test_denoiser_and_abc_recover_the_clean_input_behind_pgd(reactive_models):
    model = reactive_models["classification"]()
    corners, labels = _corners()
    channel = PGDChannel(eps=0.25, sigma=0.02, steps=3)
    x_train, y_train = corners.repeat(32, 1, 1, 1), labels.repeat(32)
    dppd = DenoisingPPD(
        model,
        channel,
        num_samples=3,
        epochs=25,
        hidden=32,
        batch_size=64,
        lr=1e-2,
        generator=_gen(2),
    ).fit(x_train, y_train)
    abc = ReactivePPD(
        model, channel, mode="offline", num_samples=3, generator=_gen(2), abc=ABC(simulations=2)
    )
    abc.fit(corners, labels)
    under_draw = DrawPredictive(model, abc.draws, 1)  # a fresh attack under a posterior draw
    x_adv = channel.sample(corners, labels, under_draw, generator=_gen(7))
    mean, _ = dppd.denoise(x_adv)
    nearest = torch.cdist(mean.flatten(1), corners.flatten(1)).argmin(dim=1)
    assert torch.equal(nearest, torch.arange(8))
    err_denoised = (mean - corners).flatten(1).norm(dim=1).mean()
    err_attacked = (x_adv - corners).flatten(1).norm(dim=1).mean()
    assert float(err_denoised) < float(err_attacked), (err_denoised, err_attacked)
    clean_label = abc.values.mean(0).argmax(1)  # the posterior predictive at the clean inputs
    assert torch.equal(dppd(x_adv).argmax(1), clean_label)
    assert torch.equal(abc(x_adv).argmax(1), clean_label)
    # differentiable: adaptive attacks get gradients through the sampled clean inputs
    x = x_adv.clone().requires_grad_(True)
    dppd(x)[:, 0].sum().backward()
    assert (
        x.grad is not None and bool(torch.isfinite(x.grad).all()) and bool(x.grad.abs().sum() > 0)
    )


def test_save_load_round_trip(reactive_models, tmp_path):
    model = reactive_models["classification"]()
    corners, labels = _corners()
    dppd = DenoisingPPD(
        model, GaussianChannel(0.1), num_samples=2, epochs=2, hidden=8, generator=_gen(0)
    ).fit(corners, labels)
    path = tmp_path / "den.pt"
    dppd.save(path)
    loaded = DenoisingPPD.load(path, model=model, generator=_gen(5))
    dppd.generator = _gen(5)
    torch.testing.assert_close(loaded(corners), dppd(corners), rtol=0, atol=0)
    for k, v in dppd.draws.items():
        torch.testing.assert_close(loaded.draws[k], v, rtol=0, atol=0)
    with pytest.raises(ValueError, match="not a file saved by DenoisingPPD.save"):
        torch.save({"format": "x"}, tmp_path / "bad.pt")
        DenoisingPPD.load(tmp_path / "bad.pt", model=model)


def test_denoiser_errors(reactive_models):
    model = reactive_models["classification"]()
    with pytest.raises(TypeError, match="without sample"):
        DenoisingPPD(model, nn.Identity())
    with pytest.raises(ValueError, match="num_denoised"):
        DenoisingPPD(model, GaussianChannel(0.1), num_denoised=0)
    with pytest.raises(ValueError, match="epochs"):
        DenoisingPPD(model, GaussianChannel(0.1), epochs=0)
    with pytest.raises(RuntimeError, match="not fitted"):
        DenoisingPPD(model, GaussianChannel(0.1))(torch.rand(2, *SHAPE, dtype=torch.float64))
    with pytest.raises(ValueError, match="dim must be a positive int"):
        GaussianDenoiser(0)
