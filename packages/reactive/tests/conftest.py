"""Shared helpers of the adv_reactive tests: float64 brute forces written from the SPEC.

Tests reach them through the fixtures at the end (conftest modules are not importable under
``--import-mode=importlib``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn


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


# -- ReactivePPD: tiny Bayesian networks and eqs. 4 and 5 written out in float64 ----------------

INPUT_SHAPE = (1, 2, 3)  # D = 6


def tiny_classifier(num_classes: int = 3, *, init_sigma: float = 0.5, seed: int = 0) -> nn.Module:
    """Flatten · BayesLinear(6, 8) · ReLU · BayesLinear(8, C), float64, spread-out posterior."""
    from bnn_core import BayesLinear

    torch.manual_seed(seed)
    d = math.prod(INPUT_SHAPE)
    model = nn.Sequential(
        nn.Flatten(),
        BayesLinear(d, 8, init_sigma=init_sigma, dtype=torch.float64),
        nn.ReLU(),
        BayesLinear(8, num_classes, init_sigma=init_sigma, dtype=torch.float64),
    )
    with torch.no_grad():  # larger means: confident, input-dependent predictions
        model[1].weight_mu.mul_(3.0)
        model[3].weight_mu.mul_(3.0)
    return model


def tiny_regressor(*, init_sigma: float = 0.5, noise: float = 0.3, seed: int = 0) -> nn.Module:
    """bnn_core's regression MLP on 6 inputs (hidden 8), float64, with a learned noise s."""
    from bnn_core import regression_mlp

    torch.manual_seed(seed)
    model = regression_mlp(
        math.prod(INPUT_SHAPE), hidden=8, init_noise=noise, init_sigma=init_sigma
    )
    return model.double()


def manual_forward(model: nn.Module, draws: Mapping[str, Tensor], m: int, x: Tensor) -> Tensor:
    """The model's output under draw ``m``, by hand: F.linear with the drawn weights."""
    body, prefix = (model.body, "body.") if hasattr(model, "body") else (model, "")
    h = x.reshape(x.shape[0], -1)
    for name, layer in body.named_children():
        if isinstance(layer, nn.Flatten):
            continue
        if isinstance(layer, nn.ReLU):
            h = F.relu(h)
            continue
        h = F.linear(h, draws[f"{prefix}{name}.weight"][m], draws[f"{prefix}{name}.bias"][m])
    return h


def eq45(x_adv: Tensor, keys: Tensor, preds: Tensor, sigma: float, mode: str) -> dict[str, Tensor]:
    """Eqs. 4 and 5 of the paper as written, in float64, materialising every k_mi.

    ``keys`` ``(M, N, D)`` are the channel means μ_mi (repeat shared keys per draw) and
    ``preds`` ``(M, N, C)`` the per-draw values P_mi. Returns the PPD ``(B, C)``, the
    weights ``w`` ``(B, M, N)`` that multiply P_mi, the marginal channel likelihoods
    ``L`` ``(B, M)``, the ESS over (m, i) pairs and the posterior weight of each input.
    """
    q = x_adv.double().reshape(x_adv.shape[0], 1, 1, -1)
    mu = keys.double()[None]
    k = torch.distributions.Normal(mu, sigma).log_prob(q).sum(-1).exp()  # (B, M, N) densities
    p = preds.double()
    num_draws, num_train = p.shape[:2]
    if mode == "online":
        w = k / k.sum(dim=(1, 2), keepdim=True)  # eq. 4: one normalisation over (m, i)
    else:
        w = k / k.sum(dim=2, keepdim=True) / num_draws  # eq. 5: per draw, draws averaged
    out = torch.einsum("bmi,mic->bc", w, p)
    return {
        "output": out,
        "weights": w,
        "likelihood": k.sum(2) / num_train,
        "posterior": w.sum(1),
    }


@pytest.fixture(scope="session")
def reactive_models() -> dict[str, Callable[..., nn.Module]]:
    """Builders of the tiny float64 Bayesian classifier and regressor (inputs (B, 1, 2, 3))."""
    return {"classification": tiny_classifier, "regression": tiny_regressor}


@pytest.fixture(scope="session")
def by_hand() -> Callable[..., Tensor]:
    """:func:`manual_forward`: a model's output under one stored draw, with F.linear."""
    return manual_forward


@pytest.fixture(scope="session")
def eqs_4_5() -> Callable[..., dict[str, Tensor]]:
    """:func:`eq45`: eqs. 4 and 5 written out in float64 from materialised densities."""
    return eq45
