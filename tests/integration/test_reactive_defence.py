"""adv_reactive's ReactivePPD on bnn_core models, adv_channels channels and adv_attacks attacks.

Cross-package checks of the reactive defence (SPEC §5): inputs drawn from the very channel
the defence assumes are purified back to the training input and posterior draw that
produced them; adaptive attacks run through the defended predictor; the fitted defence
survives a save/load cycle next to bnn_core's model file; randomized smoothing composes
with it.
"""

from __future__ import annotations

import pytest
import torch

bnn_core = pytest.importorskip("bnn_core")
from adv_attacks import pgd, pgd_plus  # noqa: E402
from adv_channels import GaussianChannel, OneStepChannel  # noqa: E402
from adv_reactive import DrawPredictive, ReactivePPD, certify  # noqa: E402

NUM_DRAWS = 4


def _model(seed: int = 0):
    torch.manual_seed(seed)
    model = bnn_core.mnist_cnn(image_size=12, init_sigma=0.3)
    with torch.no_grad():  # scale the dense layer's mean up: confident, non-trivial PPD
        model[7].weight_mu.mul_(4.0)
    return model


def _data(n: int = 120, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 12, 12, generator=g), torch.randint(0, 10, (n,), generator=g)


def _fit(model, channel, **kwargs) -> ReactivePPD:
    x, y = _data()
    gen = torch.Generator().manual_seed(2)
    return ReactivePPD(model, channel, num_samples=NUM_DRAWS, generator=gen, **kwargs).fit(x, y)


def test_inputs_from_the_channel_are_purified_to_their_source_and_draw():
    model = _model()
    channel = OneStepChannel(eps=1.0, sigma=0.05)
    rppd = _fit(model, channel)
    x, y = _data()
    idx = torch.tensor([3, 17, 42, 99])
    draw = torch.tensor([0, 1, 2, 3])
    gen = torch.Generator().manual_seed(7)
    # x' ~ p(x' | x_i, β_m): the channel attacks training input i under posterior draw m.
    x_adv = torch.cat(
        [
            channel.sample(
                x[i : i + 1], y[i : i + 1], DrawPredictive(model, rppd.draws, int(m)), generator=gen
            )
            for i, m in zip(idx, draw, strict=True)
        ]
    )
    pred = rppd.predict(x_adv, top_k=1)
    assert torch.equal(pred.top_k_indices[:, 0], idx)  # the clean input behind x'
    # Online: the test-time Bayesian update singles out the draw that explains x' ...
    assert bool((pred.draw_weights[torch.arange(4), draw] > 0.9).all()), pred.draw_weights
    # ... so the PPD is that draw's prediction at the clean input.
    torch.testing.assert_close(pred.probs, rppd.values[draw, idx], atol=0.05, rtol=0)
    # Offline keeps every draw: the average over draws of the prediction at x_i.
    rppd.mode = "offline"
    offline = rppd.predict(x_adv).probs
    torch.testing.assert_close(offline, rppd.values[:, idx].mean(0), atol=0.05, rtol=0)


def test_adaptive_attacks_target_the_defended_classifier():
    # σ large enough that many training inputs share the weight: the PPD moves with x'.
    rppd = _fit(_model(), GaussianChannel(2.0))
    x, y = _data()
    x_test = (x[:6] + 0.1 * torch.randn(6, 1, 12, 12)).clamp(0, 1)
    x_adv = pgd(rppd, x_test, y[:6], eps=1.0, steps=5, random_start=False)
    assert bool(((x_adv - x_test).flatten(1).norm(dim=1) <= 1.0 + 1e-5).all())
    assert rppd.nll(x_adv, y[:6]) > rppd.nll(x_test, y[:6])
    x_plus = pgd_plus(rppd, x_test, y[:6], eps=1.0, nll_steps=2, entropy_steps=2)
    assert bool(((x_plus - x_test).flatten(1).norm(dim=1) <= 1.0 + 1e-5).all())


def test_adaptive_attack_on_the_regression_defence():
    torch.manual_seed(0)
    model = bnn_core.regression_mlp(5, init_sigma=0.3)
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(80, 5, generator=g), torch.randn(80, generator=g)
    channel = OneStepChannel(eps=0.5, sigma=0.3, objective="mse", clamp=None)
    rppd = ReactivePPD(model, channel, num_samples=NUM_DRAWS, task="regression").fit(x, y)
    x_adv = pgd(rppd, x[:8], y[:8], eps=0.5, steps=5, objective="nll", clamp=None)
    assert bool(((x_adv - x[:8]).norm(dim=1) <= 0.5 + 1e-5).all())
    assert rppd.nll(x_adv, y[:8]) > rppd.nll(x[:8], y[:8])


def test_save_and_reload_next_to_the_model(tmp_path):
    model = _model()
    rppd = _fit(model, OneStepChannel(eps=1.0, sigma=0.3))
    bnn_core.save_model(model, tmp_path / "model.pt")
    rppd.save(tmp_path / "reactive.pt")
    reloaded_model = bnn_core.load_model(tmp_path / "model.pt")
    loaded = ReactivePPD.load(tmp_path / "reactive.pt", model=reloaded_model)
    x_test = _data(5, seed=9)[0]
    torch.testing.assert_close(loaded(x_test), rppd(x_test), rtol=0, atol=0)
    # Refitting with the same seed reproduces the fitted state exactly.
    refit = _fit(reloaded_model, loaded.channel)
    for name in ("keys", "values"):
        torch.testing.assert_close(getattr(refit, name), getattr(rppd, name), rtol=0, atol=0)


def test_randomized_smoothing_composes_with_the_reactive_defence():
    rppd = _fit(_model(), GaussianChannel(0.5))
    x_test = _data(3, seed=9)[0]
    cert = certify(
        rppd, x_test, sigma=0.25, n0=8, n=64, alpha=0.01, generator=torch.Generator().manual_seed(0)
    )
    assert cert.label.shape == (3,) and bool((cert.radius >= 0).all())
