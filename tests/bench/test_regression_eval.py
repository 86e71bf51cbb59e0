"""Tests of ``bench/benchlib/regression_eval.py`` against float64 brute force and closed forms."""

from __future__ import annotations

import math

import pytest
import torch

from adv_channels import GaussianChannel
from adv_reactive import ReactivePPD
from benchlib.regression_eval import (
    RegressionScores,
    draw_scores,
    in_original_units,
    reactive_scores,
    stable_generator,
)
from bnn_core import regression_mlp


def brute_force(draws: torch.Tensor, noise_var: float, y: torch.Tensor) -> tuple[float, ...]:
    """RMSE, mixture NLL and mean std from the definitions, one example at a time (float64)."""
    draws, y = draws.double(), y.double()
    m = draws.shape[0]
    sq_err, nll, std = 0.0, 0.0, 0.0
    for b in range(draws.shape[1]):
        f = [float(v) for v in draws[:, b]]
        mean = sum(f) / m
        density = (
            sum(
                math.exp(-((float(y[b]) - fm) ** 2) / (2 * noise_var))
                / math.sqrt(2 * math.pi * noise_var)
                for fm in f
            )
            / m
        )
        sq_err += (mean - float(y[b])) ** 2
        nll -= math.log(density)
        std += math.sqrt(noise_var + sum((fm - mean) ** 2 for fm in f) / m)
    n = draws.shape[1]
    return math.sqrt(sq_err / n), nll / n, std / n


@pytest.mark.parametrize("m", [1, 2, 7])
def test_draw_scores_match_brute_force(m):
    g = torch.Generator().manual_seed(m)
    draws = torch.randn(m, 9, generator=g)
    y = torch.randn(9, generator=g)
    got = draw_scores(draws, 0.3, y)
    want = brute_force(draws, 0.3, y)
    assert (got.rmse, got.nll, got.std) == pytest.approx(want, rel=1e-5)


def test_one_draw_is_the_gaussian_nll_and_accepts_a_trailing_dim():
    f = torch.tensor([[0.5, -1.0]])
    y = torch.tensor([0.0, 1.0])
    got = draw_scores(f.unsqueeze(-1), 4.0, y)
    closed = 0.5 * math.log(2 * math.pi * 4.0) + (0.25 + 4.0) / (2 * 4.0) / 2
    assert got.nll == pytest.approx(closed)
    assert got.std == pytest.approx(2.0)
    assert got.rmse == pytest.approx(math.sqrt((0.25 + 4.0) / 2))


def test_draw_scores_reject_bad_shapes():
    with pytest.raises(ValueError, match="draws"):
        draw_scores(torch.zeros(3), 1.0, torch.zeros(3))
    with pytest.raises(ValueError, match="y must have shape"):
        draw_scores(torch.zeros(2, 3), 1.0, torch.zeros(4))


def test_original_units_equal_scores_computed_in_original_units():
    g = torch.Generator().manual_seed(1)
    draws, y = torch.randn(5, 11, generator=g), torch.randn(11, generator=g)
    mu, tau = 22.3, 9.7
    standard = draw_scores(draws, 0.2, y)
    original = draw_scores(mu + tau * draws.double(), 0.2 * tau**2, mu + tau * y.double())
    converted = in_original_units(standard, tau)
    assert converted["rmse_original"] == pytest.approx(original.rmse, rel=1e-5)
    assert converted["nll_original"] == pytest.approx(original.nll, rel=1e-5)
    assert converted["std_original"] == pytest.approx(original.std, rel=1e-5)
    assert set(standard.as_dict(tau)) == {"rmse", "nll", "std", *converted}
    with pytest.raises(ValueError, match="y_scale"):
        in_original_units(RegressionScores(1.0, 1.0, 1.0), 0.0)


def test_reactive_scores_match_the_weighted_mixture():
    g = torch.Generator().manual_seed(2)
    model = regression_mlp(3, bayesian=False).double()
    x_train = torch.randn(20, 3, generator=g, dtype=torch.float64)
    x_test = torch.randn(6, 3, generator=g, dtype=torch.float64)
    y = torch.randn(6, generator=g, dtype=torch.float64)
    sigma = 0.8
    reactive = ReactivePPD(model, GaussianChannel(sigma), task="regression", num_samples=2)
    reactive.fit(x_train)
    got = reactive_scores(reactive, x_test, y)

    with torch.no_grad():
        f = model(x_train).squeeze(-1)
        s2 = float(model.likelihood.variance)
    sq_err = nll = std = 0.0
    for b in range(len(y)):
        logw = -((x_test[b] - x_train) ** 2).sum(-1) / (2 * sigma**2)
        w = torch.softmax(logw, 0)
        mean = float((w * f).sum())
        var = s2 + float((w * (f - mean) ** 2).sum())
        dens = float((w * torch.exp(-((y[b] - f) ** 2) / (2 * s2))).sum()) / math.sqrt(
            2 * math.pi * s2
        )
        sq_err += (mean - float(y[b])) ** 2
        nll -= math.log(dens)
        std += math.sqrt(var)
    n = len(y)
    want = (math.sqrt(sq_err / n), nll / n, std / n)
    assert (got.rmse, got.nll, got.std) == pytest.approx(want, rel=1e-6)


def test_stable_generator_depends_only_on_its_parts():
    a = torch.rand(4, generator=stable_generator(torch.device("cpu"), "draws", "wine", 0))
    b = torch.rand(4, generator=stable_generator(torch.device("cpu"), "draws", "wine", 0))
    c = torch.rand(4, generator=stable_generator(torch.device("cpu"), "draws", "wine", 1))
    assert torch.equal(a, b) and not torch.equal(a, c)
