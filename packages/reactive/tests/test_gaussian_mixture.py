"""The regression reactive PPD (a Gaussian mixture) against float64 brute forces."""

from __future__ import annotations

import math

import pytest
import torch

from adv_reactive import reactive_aggregate, reactive_gaussian_log_prob
from adv_reactive.gaussian_mixture import mixture_moments, moment_values

MODES = ["online", "offline"]
LAYOUTS = [pytest.param(False, id="shared_keys"), pytest.param(True, id="per_draw_keys")]


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _problem(per_draw: bool, num_out: int, dtype=torch.float64, seed: int = 0):
    g = _gen(seed)
    num_q, num_keys, dim, num_draws = 5, 40, 6, 3
    shape = (num_draws, num_keys, dim) if per_draw else (num_keys, dim)
    keys = torch.rand(shape, generator=g, dtype=torch.float64)
    base = keys if not per_draw else keys[0]
    queries = base[:num_q] + 0.2 * torch.randn(num_q, dim, generator=g, dtype=torch.float64)
    means = 2.0 * torch.randn(num_draws, num_keys, num_out, generator=g, dtype=torch.float64)
    targets = torch.randn(num_q, num_out, generator=g, dtype=torch.float64)
    return queries.to(dtype), targets.to(dtype), keys.to(dtype), means.to(dtype)


def _mixture_brute_force(queries, targets, keys, means, sigma, noise_var, mode):
    """log Σ_{m,i} w_mi N(y; f_mi, s² I) with w from eqs. 4/5, every density materialised."""
    q, y, f = queries.double(), targets.double(), means.double()
    k = keys.double()
    if k.dim() == 2:
        k = k.expand(f.shape[0], *k.shape)
    dens = torch.distributions.Normal(k[None], sigma).log_prob(q[:, None, None, :]).sum(-1).exp()
    if mode == "online":
        w = dens / dens.sum(dim=(1, 2), keepdim=True)
    else:
        w = dens / dens.sum(dim=2, keepdim=True) / f.shape[0]
    comp = torch.distributions.Normal(f[None], math.sqrt(noise_var))
    comp_dens = comp.log_prob(y[:, None, None, :]).sum(-1).exp()  # (B, M, N)
    log_p = (w * comp_dens).sum(dim=(1, 2)).log()
    mean = torch.einsum("bmi,mik->bk", w, f)
    var = noise_var + torch.einsum("bmi,mik->bk", w, f.square()) - mean.square()
    return log_p, mean, var


@pytest.mark.parametrize("num_out", [1, 2])
@pytest.mark.parametrize("per_draw", LAYOUTS)
@pytest.mark.parametrize("mode", MODES)
def test_log_prob_matches_brute_force(mode: str, per_draw: bool, num_out: int) -> None:
    q, y, k, f = _problem(per_draw, num_out)
    got = reactive_gaussian_log_prob(
        q, y, k, f, sigma=0.5, noise_var=0.3, mode=mode, backend="torch", chunk_size=16
    )
    ref, _, _ = _mixture_brute_force(q, y, k, f, 0.5, 0.3, mode)
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("per_draw", LAYOUTS)
@pytest.mark.parametrize("mode", MODES)
def test_moments_from_the_aggregation_match_brute_force(mode: str, per_draw: bool) -> None:
    q, y, k, f = _problem(per_draw, 2)
    offset = f.mean(dim=(0, 1))
    res = reactive_aggregate(q, k, moment_values(f, offset), sigma=0.5, mode=mode)
    mean, var = mixture_moments(res.output, offset, 0.3)
    _, ref_mean, ref_var = _mixture_brute_force(q, y, k, f, 0.5, 0.3, mode)
    torch.testing.assert_close(mean, ref_mean, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(var, ref_var, rtol=1e-10, atol=1e-10)


def test_centring_keeps_the_variance_accurate_in_float32() -> None:
    # Means near 1e4 with a spread of 1e-1: uncentred E[f²] − E[f]² loses every digit in
    # float32 (ε·1e8 ≈ 10 ≫ 1e-2); centred values keep it.
    q, _, k, f = _problem(False, 1, dtype=torch.float32)
    f = 1e4 + 0.1 * f
    _, _, ref_var = _mixture_brute_force(q, q[:, :1], k, f, 0.5, 1e-3, "online")
    offset = f.double().mean(dim=(0, 1)).float()
    res = reactive_aggregate(q, k, moment_values(f, offset), sigma=0.5)
    _, var = mixture_moments(res.output, offset, 1e-3)
    torch.testing.assert_close(var.double(), ref_var, rtol=1e-3, atol=1e-5)
    naive = reactive_aggregate(q, k, torch.cat((f, f.square()), dim=-1), sigma=0.5).output
    naive_var = 1e-3 + naive[:, 1:] - naive[:, :1].square()
    assert (naive_var.double() - ref_var).abs().max() > 1e-2  # the guard: centring matters


def test_online_equals_offline_with_shared_keys() -> None:
    q, y, k, f = _problem(False, 1)
    on = reactive_gaussian_log_prob(q, y, k, f, sigma=0.4, noise_var=0.2, mode="online")
    off = reactive_gaussian_log_prob(q, y, k, f, sigma=0.4, noise_var=0.2, mode="offline")
    torch.testing.assert_close(on, off, rtol=1e-12, atol=1e-12)


def test_extreme_sigma_stays_finite_and_exact() -> None:
    # σ = 1e-3: the densities underflow without log space; the nearest key dominates.
    q, y, k, f = _problem(True, 1)
    got = reactive_gaussian_log_prob(q, y, k, f, sigma=1e-3, noise_var=0.3, mode="online")
    d2 = (q[:, None, None, :] - k[None]).square().sum(-1)  # (B, M, N)
    flat = d2.flatten(1).argmin(dim=1)
    m, i = flat // k.shape[1], flat % k.shape[1]
    nearest = f[m, i]  # (B, 1)
    ref = torch.distributions.Normal(nearest, math.sqrt(0.3)).log_prob(y).sum(-1)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-6)


def test_gradcheck_in_queries_and_targets() -> None:
    q, y, k, f = _problem(True, 1)
    q = q[:2].clone().requires_grad_(True)
    y = y[:2].clone().requires_grad_(True)

    def fn(q_: torch.Tensor, y_: torch.Tensor) -> torch.Tensor:
        return reactive_gaussian_log_prob(q_, y_, k, f, sigma=0.5, noise_var=0.3, mode="offline")

    assert torch.autograd.gradcheck(fn, (q, y), fast_mode=True)


def test_targets_of_shape_b_are_accepted_for_one_output() -> None:
    q, y, k, f = _problem(False, 1)
    a = reactive_gaussian_log_prob(q, y, k, f, sigma=0.5, noise_var=0.3)
    b = reactive_gaussian_log_prob(q, y[:, 0], k, f, sigma=0.5, noise_var=0.3)
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        pytest.param({"noise_var": 0.0}, ValueError, "noise_var", id="noise_var-zero"),
        pytest.param({"noise_var": "a"}, TypeError, "noise_var", id="noise_var-type"),
        pytest.param({"sigma": -1.0}, ValueError, "sigma", id="sigma-negative"),
        pytest.param({"mode": "both"}, ValueError, "mode", id="mode"),
    ],
)
def test_bad_options(kwargs: dict, error: type, match: str) -> None:
    q, y, k, f = _problem(False, 1)
    options = {"sigma": 0.5, "noise_var": 0.3, **kwargs}
    with pytest.raises(error, match=match):
        reactive_gaussian_log_prob(q, y, k, f, **options)


def test_bad_shapes() -> None:
    q, y, k, f = _problem(True, 1)
    with pytest.raises(ValueError, match="targets"):
        reactive_gaussian_log_prob(q, y[:3], k, f, sigma=0.5, noise_var=0.3)
    with pytest.raises(ValueError, match="means"):
        reactive_gaussian_log_prob(q, y, k, f[0], sigma=0.5, noise_var=0.3)
    with pytest.raises(ValueError, match=r"\(M, N\)"):
        reactive_gaussian_log_prob(q, y, k, f[:2], sigma=0.5, noise_var=0.3)
    with pytest.raises(ValueError, match="feature dimension"):
        reactive_gaussian_log_prob(q[:, :4], y, k, f, sigma=0.5, noise_var=0.3)
