from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from advbayes_data import Standardizer


def test_fit_matches_float64_numpy():
    rng = np.random.default_rng(0)
    data = rng.normal(3.0, 7.0, (50, 4))
    scaler = Standardizer.fit(data)
    np.testing.assert_allclose(scaler.mean.numpy(), data.mean(0), rtol=1e-6)
    np.testing.assert_allclose(scaler.std.numpy(), data.std(0, ddof=0), rtol=1e-6)
    z = scaler.transform(torch.from_numpy(data))
    np.testing.assert_allclose(z.mean(0).numpy(), 0.0, atol=1e-6)
    np.testing.assert_allclose(z.std(0, unbiased=False).numpy(), 1.0, atol=1e-6)


def test_by_hand():
    scaler = Standardizer.fit(np.array([1.0, 3.0]))  # mean 2, population std 1
    assert scaler.mean.shape == () and float(scaler.mean) == 2.0 and float(scaler.std) == 1.0
    assert scaler.transform(torch.tensor([5.0])).item() == 3.0


def test_constant_column_maps_to_zero():
    data = np.array([[1.0, 4.0], [3.0, 4.0]])
    scaler = Standardizer.fit(data)
    assert scaler.std[1] == 1.0
    assert torch.all(scaler.transform(torch.from_numpy(data))[:, 1] == 0)


def test_inverse_round_trip_keeps_dtype():
    scaler = Standardizer.fit(np.random.default_rng(1).normal(size=(20, 3)) * 5 + 2)
    x = torch.randn(6, 3, dtype=torch.float64)
    back = scaler.inverse(scaler.transform(x))
    assert back.dtype == torch.float64
    torch.testing.assert_close(back, x)


def test_original_unit_gaussian_nll_and_rmse_identities():
    # NLL_y = NLL_z + log(std) and RMSE_y = std * RMSE_z, checked against torch.distributions.
    rng = np.random.default_rng(2)
    y_train = rng.normal(200.0, 40.0, 100)
    scaler = Standardizer.fit(y_train)
    y = torch.tensor(rng.normal(200.0, 40.0, 30))
    mean_z = torch.randn(30, dtype=torch.float64)
    var_z = torch.rand(30, dtype=torch.float64) + 0.1
    z = scaler.transform(y)
    nll_z = -torch.distributions.Normal(mean_z, var_z.sqrt()).log_prob(z).mean()
    mean_y, var_y = scaler.inverse(mean_z), scaler.inverse_variance(var_z)
    nll_y = -torch.distributions.Normal(mean_y, var_y.sqrt()).log_prob(y).mean()
    torch.testing.assert_close(nll_y, nll_z + scaler.log_scale.double(), rtol=1e-6, atol=1e-6)
    rmse_z = (mean_z - z).square().mean().sqrt()
    rmse_y = (mean_y - y).square().mean().sqrt()
    torch.testing.assert_close(rmse_y, rmse_z * scaler.std.double(), rtol=1e-6, atol=1e-6)
    assert math.isclose(float(scaler.log_scale), math.log(float(scaler.std)), rel_tol=1e-6)


def test_bad_input():
    with pytest.raises(ValueError, match="finite"):
        Standardizer.fit(np.array([[1.0], [np.nan]]))
    with pytest.raises(ValueError, match="shape"):
        Standardizer.fit(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="shape"):
        Standardizer.fit(np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="positive"):
        Standardizer(torch.zeros(2), torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="same shape"):
        Standardizer(torch.zeros(2), torch.ones(3))
