"""One posterior draw as a predictive: bnn_core's one-draw PPD, cheaper, differentiable."""

from __future__ import annotations

import pytest
import torch

from bnn_core import PosteriorPredictive, regression_mlp, sample_mode
from robust_vi import PosteriorDraw


def test_is_the_one_draw_posterior_predictive(images, small_cnn):
    model = small_cnn(init_sigma=0.2)
    x, _ = images
    draw = PosteriorDraw(model, generator=torch.Generator().manual_seed(4))
    ppd = PosteriorPredictive(model, 1, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(draw(x), ppd.draws(x)[0])
    torch.testing.assert_close(draw(x).log_softmax(-1), ppd(x))
    assert torch.equal(draw(x), draw(x))  # held fixed
    other = PosteriorDraw(model, generator=torch.Generator().manual_seed(5))
    assert not torch.allclose(draw(x), other(x))


def test_gradients_reach_mu_and_rho_unless_frozen(images, small_cnn):
    model = small_cnn(init_sigma=0.2)
    x, _ = images
    draw = PosteriorDraw(model)
    gm, gr = torch.autograd.grad(draw(x).sum(), [model[0].weight_mu, model[0].weight_rho])
    assert gm.abs().sum() > 0 and gr.abs().sum() > 0
    for p in model.parameters():
        p.requires_grad_(False)
    assert not draw(x).requires_grad
    for p in model.parameters():
        p.requires_grad_(True)


def test_mean_mode_layers_use_their_means(images, small_cnn):
    model = small_cnn(init_sigma=0.2)
    x, _ = images
    with sample_mode(model, "mean"):
        draw = PosteriorDraw(model)
        ref = model(x)
    assert draw.noise == {}
    torch.testing.assert_close(draw(x), ref)
    assert model[0].sample_mode.value == "sample"


def test_regression_gives_mean_and_noise_variance():
    torch.manual_seed(0)
    model = regression_mlp(3, init_noise=0.5)
    x = torch.randn(4, 3)
    draw = PosteriorDraw(
        model, task="regression", likelihood=model.likelihood, generator=torch.Generator()
    )
    mean, var = draw(x)
    assert mean.shape == var.shape == (4, 1)
    torch.testing.assert_close(var, torch.full((4, 1), 0.25))
    with pytest.raises(ValueError, match="likelihood"):
        PosteriorDraw(model, task="regression")
    with pytest.raises(TypeError, match="Module"):
        PosteriorDraw("model")  # type: ignore[arg-type]
