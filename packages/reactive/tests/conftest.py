"""Shared helpers of the adv_reactive tests: float64 brute forces written from the SPEC.

Tests reach them through the fixtures at the end (conftest modules are not importable under
``--import-mode=importlib``).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor


def brute_force(
    queries: Tensor, keys: Tensor, values: Tensor, sigma: float, mode: str
) -> dict[str, Tensor]:
    """Eqs. 4 and 5 of the paper, materialising every difference, in float64 log space.

    ``keys`` is ``(N, D)`` (shared: the same keys for every draw) or ``(M, N, D)``;
    ``values`` is ``(M, N, C)``. Returns the output ``(B, C)``, the per-draw log normaliser
    ``(B, M)``, the ESS ``(B,)`` and the marginal posterior weight of each training input
    ``(B, N)``.
    """
    q = queries.double()
    v = values.double()
    num_draws = v.shape[0]
    k = keys.double()
    if k.dim() == 2:
        k = k.expand(num_draws, *k.shape)
    diff = q[:, None, None, :] - k[None]  # (B, M, N, D)
    log_k = -(diff**2).sum(-1) / (2 * sigma**2)  # log k_bmi up to a constant, (B, M, N)
    log_norm = torch.logsumexp(log_k, dim=2)  # (B, M)
    if mode == "online":
        flat = log_k.flatten(1)
        w = torch.softmax(flat, dim=1).view_as(log_k)  # one normalisation over (m, i)
        out = torch.einsum("bmi,mic->bc", w, v)
        if keys.dim() == 2:  # N shared keys: the ESS counts keys, not (m, i) pairs
            ess = 1.0 / (w.sum(1) ** 2).sum(1)
        else:
            ess = 1.0 / (w**2).flatten(1).sum(1)
        posterior = w.sum(1)
    else:
        w = torch.softmax(log_k, dim=2)  # one normalisation per draw
        out = torch.einsum("bmi,mic->bc", w, v) / num_draws
        ess = (1.0 / (w**2).sum(2)).mean(1)
        posterior = w.sum(1) / num_draws
    return {"output": out, "log_normalizer": log_norm, "ess": ess, "posterior": posterior}


def make_problem(
    num_q: int,
    num_keys: int,
    dim: int,
    num_values: int,
    num_draws: int,
    *,
    per_draw: bool,
    generator: torch.Generator,
    dtype: torch.dtype = torch.float32,
) -> tuple[Tensor, Tensor, Tensor]:
    """Random queries near random keys, and per-draw class probabilities as values."""
    shape = (num_draws, num_keys, dim) if per_draw else (num_keys, dim)
    keys = torch.rand(shape, generator=generator, dtype=torch.float64)
    base = keys if not per_draw else keys[0]
    pick = torch.randint(0, num_keys, (num_q,), generator=generator)
    queries = base[pick] + 0.3 * torch.randn(num_q, dim, generator=generator, dtype=torch.float64)
    logits = 2 * torch.randn(num_draws, num_keys, num_values, generator=generator)
    values = torch.softmax(logits.double(), dim=-1)
    return queries.to(dtype), keys.to(dtype), values.to(dtype)


@pytest.fixture(scope="session")
def reference() -> Callable[..., dict[str, Tensor]]:
    """:func:`brute_force`: eqs. 4 and 5 in float64, materialising every difference."""
    return brute_force


@pytest.fixture(scope="session")
def problem() -> Callable[..., tuple[Tensor, Tensor, Tensor]]:
    """:func:`make_problem`: random queries, keys and per-draw class probabilities."""
    return make_problem
