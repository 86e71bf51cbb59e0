"""Incomplete beta, Clopper–Pearson bound and binomial test against scipy (a test-only oracle)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from adv_reactive.binomial import betainc, binomial_test, clopper_pearson_lower

scipy_special = pytest.importorskip("scipy.special")
scipy_stats = pytest.importorskip("scipy.stats")


@pytest.mark.parametrize(
    ("a", "b"),
    [
        pytest.param(0.5, 0.5, id="arcsine"),
        pytest.param(1.0, 1.0, id="uniform"),
        pytest.param(2.0, 7.0, id="small"),
        pytest.param(300.0, 80.0, id="medium"),
        pytest.param(99_900.0, 101.0, id="large_skewed"),
        pytest.param(50_000.0, 50_001.0, id="large_balanced"),
    ],
)
def test_betainc_matches_scipy(a: float, b: float) -> None:
    mean, sd = a / (a + b), np.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))
    grid = np.concatenate(
        [np.linspace(0, 1, 41), np.clip(mean + sd * np.linspace(-6, 6, 41), 0, 1)]
    )
    got = betainc(a, b, torch.from_numpy(grid)).numpy()
    want = scipy_special.betainc(a, b, grid)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-14)


def test_betainc_small_cases_by_hand() -> None:
    # I_x(1, 1) = x; I_x(a, 1) = x^a; I_{1/2}(2, 3) = P(Bin(4, 1/2) >= 2) = 11/16.
    x = torch.linspace(0, 1, 11, dtype=torch.float64)
    torch.testing.assert_close(betainc(1.0, 1.0, x), x)
    torch.testing.assert_close(betainc(3.0, 1.0, x), x**3)
    assert betainc(2.0, 3.0, 0.5).item() == pytest.approx(11 / 16, rel=1e-14)


N_BIG = 100_000


@pytest.mark.parametrize("alpha", [0.001, 0.05])
@pytest.mark.parametrize(
    ("successes", "trials"),
    [
        pytest.param([1, 3, 7, 10], 10, id="n10"),
        pytest.param([1, 17, 50, 99, 100], 100, id="n100"),
        pytest.param([1, 10, 500, 50_000, 99_000, 99_900, 99_999], N_BIG, id="n100000"),
    ],
)
def test_clopper_pearson_matches_scipy_beta_ppf(
    successes: list[int], trials: int, alpha: float
) -> None:
    k = np.array(successes, dtype=float)
    got = clopper_pearson_lower(torch.tensor(successes), trials, alpha).numpy()
    want = scipy_stats.beta.ppf(alpha, k, trials - k + 1)
    np.testing.assert_allclose(got, want, rtol=1e-9)


def test_clopper_pearson_edges_and_properties() -> None:
    n = 1000
    k = torch.arange(0, n + 1)
    bound = clopper_pearson_lower(k, n, 0.001)
    assert bound[0] == 0  # no successes: the bound is 0
    assert bound[-1].item() == pytest.approx(0.001 ** (1 / n), rel=1e-14)  # Beta(n, 1) closed form
    assert (bound.diff() > 0).all()  # increasing in k
    assert (bound < k / n + 1e-15).all()  # a lower bound lies below the estimate
    looser = clopper_pearson_lower(k, n, 1e-6)
    assert (looser[1:] < bound[1:]).all()  # smaller alpha, lower bound


def test_clopper_pearson_coverage() -> None:
    # Over many binomial draws, the bound exceeds the true p in at most ~alpha of them.
    gen = torch.Generator().manual_seed(0)
    p, n, alpha = 0.7, 200, 0.05
    draws = torch.binomial(torch.full((4000,), float(n)), torch.full((4000,), p), generator=gen)
    misses = (clopper_pearson_lower(draws, n, alpha) > p).double().mean().item()
    assert misses <= alpha


@pytest.mark.parametrize("trials", [1, 2, 15, 100, 1001])
def test_binomial_test_matches_scipy(trials: int) -> None:
    k = torch.arange(0, trials + 1)
    got = binomial_test(k, trials).numpy()
    want = np.array([scipy_stats.binomtest(int(i), trials, 0.5).pvalue for i in k])
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-300)


def test_binomial_test_large_counts() -> None:
    k = torch.tensor([49_000, 49_900, 50_000, 50_100, 50_500, 51_000])
    got = binomial_test(k, N_BIG).numpy()
    want = np.array([scipy_stats.binomtest(int(i), N_BIG, 0.5).pvalue for i in k])
    np.testing.assert_allclose(got, want, rtol=1e-8)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        pytest.param(lambda: clopper_pearson_lower(5, 4), "successes <= trials", id="k_gt_n"),
        pytest.param(lambda: clopper_pearson_lower(-1, 4), "0 <= successes", id="k_negative"),
        pytest.param(lambda: clopper_pearson_lower(1.5, 4), "whole numbers", id="k_fraction"),
        pytest.param(lambda: clopper_pearson_lower(1, 4, alpha=1.0), "alpha", id="alpha_one"),
        pytest.param(lambda: clopper_pearson_lower(0, 0), "trials >= 1", id="no_trials"),
        pytest.param(lambda: binomial_test(3, 2), "successes <= trials", id="test_k_gt_n"),
        pytest.param(lambda: betainc(0.0, 1.0, 0.5), "a > 0", id="betainc_a"),
        pytest.param(lambda: betainc(1.0, 1.0, 1.5), "x in", id="betainc_x"),
    ],
)
def test_errors(call: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()  # type: ignore[operator]


def test_type_errors() -> None:
    with pytest.raises(TypeError, match="successes must be a number"):
        clopper_pearson_lower("3", 10)  # type: ignore[arg-type]
