import math

import numpy as np
import pytest
import torch
from torch import nn

from bnn_core import BayesLinear, mnist_cnn, posterior_summary
from bnn_core.diagnostics import QUANTILES, quantiles
from bnn_core.priors import softplus_inverse


@pytest.mark.parametrize("n", [1, 2, 7, 1000])
def test_quantiles_match_numpy_linear(n: int) -> None:
    values = torch.randn(n, dtype=torch.float64)
    got = quantiles(values)
    for name, level in QUANTILES.items():
        assert got[name] == pytest.approx(float(np.quantile(values.numpy(), level)), abs=1e-12)


def test_quantiles_errors() -> None:
    with pytest.raises(ValueError, match="at least one"):
        quantiles(torch.zeros(0))
    with pytest.raises(TypeError, match="floating"):
        quantiles(torch.arange(3))
    with pytest.raises(ValueError, match="must be in"):
        quantiles(torch.zeros(3), {"bad": 1.5})


def test_posterior_summary_hand_case() -> None:
    layer = BayesLinear(2, 1)  # weight (1, 2), bias (1,): three variational weights
    with torch.no_grad():
        layer.weight_mu.copy_(torch.tensor([[1.0, -2.0]]))
        layer.bias_mu.fill_(0.5)
        # weight σ (0.5, 1), bias σ 2
        layer.weight_rho.copy_(torch.tensor([[softplus_inverse(0.5), softplus_inverse(1.0)]]))
        layer.bias_rho.fill_(softplus_inverse(2.0))
    model = nn.Sequential(nn.Flatten(), layer)
    summary = posterior_summary(model)
    assert list(summary) == ["1"]
    s = summary["1"]
    assert s["numel"] == 3
    assert s["sigma"]["min"] == pytest.approx(0.5, rel=1e-5)
    assert s["sigma"]["median"] == pytest.approx(1.0, rel=1e-5)
    assert s["sigma"]["max"] == pytest.approx(2.0, rel=1e-5)
    # log σ = (−log 2, 0, log 2): population std = log 2 · √(2/3)
    assert s["log_sigma_std"] == pytest.approx(math.log(2) * math.sqrt(2 / 3), rel=1e-5)
    # |μ|/σ = (2, 2, 0.25)
    assert s["snr"]["min"] == pytest.approx(0.25, rel=1e-5)
    assert s["snr"]["median"] == pytest.approx(2.0, rel=1e-5)
    # closed form against N(0, 1): Σ −log σ + (σ² + μ²)/2 − ½
    kl = sum(-math.log(v) + (v * v + m * m) / 2 - 0.5 for v, m in [(0.5, 1), (1, -2), (2, 0.5)])
    assert s["kl"] == pytest.approx(kl, rel=1e-5)


def test_posterior_summary_of_a_fresh_model_has_no_spread() -> None:
    model = mnist_cnn(init_sigma=0.05)
    summary = posterior_summary(model)
    assert list(summary) == ["0", "3", "7"]
    total = 0.0
    for layer in summary.values():
        assert layer["sigma"]["min"] == pytest.approx(0.05, rel=1e-5)
        assert layer["sigma"]["max"] == pytest.approx(0.05, rel=1e-5)
        assert layer["log_sigma_std"] == pytest.approx(0.0, abs=1e-6)
        total += layer["kl"]
    from bnn_core import kl_divergence

    assert total == pytest.approx(float(kl_divergence(model).detach()), rel=1e-5)
    assert posterior_summary(nn.Linear(2, 2)) == {}
