"""Binomial confidence bounds and tests for randomized smoothing, in float64 PyTorch.

Randomized smoothing (Cohen et al. 2019; paper, Proposition 3.5) needs the one-sided Clopper–Pearson
lower bound of a binomial proportion (CERTIFY) and a two-sided binomial test (PREDICT). Both reduce
to the regularised incomplete beta function ``I_x(a, b)``, which PyTorch lacks: it is
computed here with the continued fraction of Numerical Recipes (§6.4, modified Lentz),
vectorised over tensors, so scipy is not a runtime dependency.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["betainc", "binomial_test", "clopper_pearson_lower"]

_EPS = 1e-15
_TINY = 1e-300
_MAX_ITER = 100_000


def _as_f64(x: Tensor | float | int, name: str, device: torch.device | None = None) -> Tensor:
    if isinstance(x, bool) or not isinstance(x, Tensor | float | int):
        raise TypeError(f"{name} must be a number or a tensor; got {type(x).__name__}")
    return torch.as_tensor(x, dtype=torch.float64, device=device)


def _log_beta(a: Tensor, b: Tensor) -> Tensor:
    return torch.lgamma(a) + torch.lgamma(b) - torch.lgamma(a + b)


def _continued_fraction(a: Tensor, b: Tensor, x: Tensor) -> Tensor:
    """Lentz evaluation of the continued fraction of ``I_x(a, b)`` (converges for small x)."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = torch.ones_like(x)
    d = 1.0 - qab * x / qap
    d = torch.where(d.abs() < _TINY, torch.full_like(d, _TINY), d).reciprocal()
    h = d.clone()
    done = torch.zeros_like(x, dtype=torch.bool)
    for m in range(1, _MAX_ITER + 1):
        m2 = 2.0 * m
        for aa in (
            m * (b - m) * x / ((qam + m2) * (a + m2)),
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
        ):
            d = 1.0 + aa * d
            d = torch.where(d.abs() < _TINY, torch.full_like(d, _TINY), d).reciprocal()
            c = 1.0 + aa / c
            c = torch.where(c.abs() < _TINY, torch.full_like(c, _TINY), c)
            delta = d * c
            h = torch.where(done, h, h * delta)
        done |= (delta - 1.0).abs() < _EPS
        if m % 8 == 0 and bool(done.all()):
            break
    return h


def betainc(a: Tensor | float, b: Tensor | float, x: Tensor | float) -> Tensor:
    """Regularised incomplete beta function ``I_x(a, b)`` (the CDF of ``Beta(a, b)`` at x).

    Args:
        a: First shape parameter, ``a > 0`` (broadcast with ``b`` and ``x``).
        b: Second shape parameter, ``b > 0``.
        x: Where to evaluate, in ``[0, 1]``.

    Returns:
        float64 tensor of ``I_x(a, b)``, on the device of the tensor arguments.

    Examples:
        >>> betainc(2.0, 3.0, 0.5)  # P(Bin(4, 0.5) >= 2) = 11/16
        tensor(0.6875, dtype=torch.float64)
    """
    device = next((t.device for t in (a, b, x) if isinstance(t, Tensor)), None)
    a, b, x = (_as_f64(t, n, device) for t, n in ((a, "a"), (b, "b"), (x, "x")))
    a, b, x = torch.broadcast_tensors(a, b, x)
    if not bool(((a > 0) & (b > 0)).all()):
        raise ValueError("betainc needs a > 0 and b > 0")
    if not bool(((x >= 0) & (x <= 1)).all()):
        raise ValueError("betainc needs x in [0, 1]")
    # Use the symmetry I_x(a, b) = 1 − I_{1−x}(b, a) where the fraction converges slowly.
    flip = x >= (a + 1.0) / (a + b + 2.0)
    aa, bb = torch.where(flip, b, a), torch.where(flip, a, b)
    xx = torch.where(flip, 1.0 - x, x)
    inner = xx.clamp(1e-300, 1.0 - 1e-16)  # avoid log(0); the edges are set below
    log_front = aa * torch.log(inner) + bb * torch.log1p(-inner) - _log_beta(aa, bb) - torch.log(aa)
    part = torch.exp(log_front) * _continued_fraction(aa, bb, inner)
    out = torch.where(flip, 1.0 - part, part)
    out = torch.where(x == 0, torch.zeros_like(out), out)
    return torch.where(x == 1, torch.ones_like(out), out)


def _check_counts(successes: Tensor, trials: Tensor) -> None:
    if not bool((successes == successes.round()).all() and (trials == trials.round()).all()):
        raise ValueError("successes and trials must be whole numbers")
    if not bool(((successes >= 0) & (successes <= trials) & (trials >= 1)).all()):
        raise ValueError("need 0 <= successes <= trials and trials >= 1")


def clopper_pearson_lower(
    successes: Tensor | int, trials: Tensor | int, alpha: float = 0.001
) -> Tensor:
    """One-sided ``(1 − α)`` Clopper–Pearson lower confidence bound of a binomial proportion.

    The ``α``-quantile of ``Beta(k, n − k + 1)`` (``0`` when ``k = 0``), as in CERTIFY of
    Cohen et al. (2019) (docs/theory.md, 'The reactive defence'). Found by safeguarded Newton steps
    on ``log I_x`` (concave in ``x``), to about 1e-12 relative precision.

    Args:
        successes: Count(s) ``k`` (whole numbers, ``0 <= k <= n``).
        trials: Number(s) of trials ``n >= 1`` (broadcast with ``successes``).
        alpha: Error probability, in ``(0, 1)``.

    Returns:
        float64 tensor of lower bounds ``p_A`` in ``[0, 1)``.

    Examples:
        >>> clopper_pearson_lower(10, 10, alpha=0.5)  # closed form: alpha ** (1 / n)
        tensor(0.9330, dtype=torch.float64)
    """
    if not (isinstance(alpha, float | int) and 0 < alpha < 1):
        raise ValueError(f"alpha must be in (0, 1); got {alpha!r}")
    device = next((t.device for t in (successes, trials) if isinstance(t, Tensor)), None)
    k = _as_f64(successes, "successes", device)
    n = _as_f64(trials, "trials", device)
    k, n = torch.broadcast_tensors(k, n)
    _check_counts(k, n)
    a = k.clamp(min=1.0)  # k = 0 is set to 0 at the end
    b = n - k + 1.0
    log_alpha = torch.log(torch.tensor(alpha, dtype=torch.float64, device=k.device))
    lo = torch.zeros_like(a)
    hi = torch.ones_like(a)
    x = a / (a + b)  # the mean: a starting point inside (0, 1)
    for _ in range(200):
        cdf = betainc(a, b, x)
        g = torch.log(cdf) - log_alpha
        lo = torch.where(g < 0, x, lo)
        hi = torch.where(g >= 0, x, hi)
        log_pdf = (a - 1.0) * torch.log(x) + (b - 1.0) * torch.log1p(-x) - _log_beta(a, b)
        step = g / torch.exp(log_pdf - torch.log(cdf))  # g / (d log I / dx)
        new = x - step
        bad = ~torch.isfinite(new) | (new <= lo) | (new >= hi)
        new = torch.where(bad, 0.5 * (lo + hi), new)
        converged = (new - x).abs() <= 1e-13 * x
        x = new
        if bool(converged.all()):
            break
    closed = torch.pow(torch.tensor(alpha, dtype=torch.float64, device=k.device), 1.0 / n)
    x = torch.where(k == n, closed, x)  # Beta(n, 1): the quantile is alpha^(1/n) exactly
    return torch.where(k == 0, torch.zeros_like(x), x)


def binomial_test(successes: Tensor | int, trials: Tensor | int) -> Tensor:
    """Two-sided p-value of the exact binomial test of ``k`` successes in ``n`` trials at ½.

    For ``p = ½`` the distribution is symmetric, so the p-value (outcomes at most as likely
    as ``k``, the convention of ``scipy.stats.binomtest``) is
    ``min(1, 2 P(X >= max(k, n − k)))``. Used by PREDICT of Cohen et al. (2019) (docs/theory.md,
    'The reactive defence'), with ``k = c₁`` and ``n = c₁ + c₂`` (the top two counts).

    Args:
        successes: Count(s) ``k``.
        trials: Number(s) of trials ``n >= 1``.

    Returns:
        float64 tensor of p-values in ``(0, 1]``.

    Examples:
        >>> binomial_test(9, 10)  # 2 * (10 + 1) / 1024
        tensor(0.0215, dtype=torch.float64)
    """
    device = next((t.device for t in (successes, trials) if isinstance(t, Tensor)), None)
    k = _as_f64(successes, "successes", device)
    n = _as_f64(trials, "trials", device)
    k, n = torch.broadcast_tensors(k, n)
    _check_counts(k, n)
    top = torch.maximum(k, n - k)  # >= n/2 >= 1/2, so top >= 1
    tail = betainc(top, n - top + 1.0, torch.full_like(top, 0.5))  # P(Bin(n, ½) >= top)
    return (2.0 * tail).clamp(max=1.0)
