"""TRADES and ALP penalties (SPEC §4) against hand computations."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Categorical, Normal, kl_divergence

from adv_channels import at_channel
from bnn_core import GaussianLikelihood
from robust_vi import ALPPenalty, TradesPenalty, alp_penalty, trades_penalty


def test_trades_penalty_is_the_categorical_kl_clean_first():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    ref = kl_divergence(Categorical(logits=a), Categorical(logits=b))
    torch.testing.assert_close(trades_penalty(a, b), ref)
    assert not torch.allclose(trades_penalty(b, a), ref)  # not symmetric: clean first


def test_trades_penalty_small_case_by_hand():
    # p = (½, ½), q = softmax(0, log 3) = (¼, ¾): KL = ½ log 2 + ½ log(2/3).
    out = trades_penalty(torch.zeros(1, 2), torch.tensor([[0.0, math.log(3.0)]]))
    torch.testing.assert_close(out, torch.tensor([0.5 * math.log(2.0) + 0.5 * math.log(2 / 3)]))


def test_trades_penalty_with_a_zero_probability_class():
    clean = torch.tensor([[0.0, float("-inf")]])
    out = trades_penalty(clean, torch.tensor([[0.0, 0.0]]))
    torch.testing.assert_close(out, torch.tensor([math.log(2.0)]))


def test_alp_penalty_is_the_squared_logit_distance():
    a = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    b = torch.tensor([[0.0, 2.0, 5.0], [1.0, 1.0, 1.0]])
    torch.testing.assert_close(alp_penalty(a, b), torch.tensor([5.0, 3.0]))


def test_regression_penalties():
    lik = GaussianLikelihood(0.5)
    mean_x, mean_star = torch.tensor([[0.3], [1.0]]), torch.tensor([[0.0], [1.5]])
    s = lik.scale.detach()
    ref = kl_divergence(Normal(mean_x[:, 0], s), Normal(mean_star[:, 0], s))
    got = TradesPenalty(eps=1.0).values(mean_x, mean_star, lik)
    torch.testing.assert_close(got, ref.detach(), rtol=1e-6, atol=1e-7)
    alp = ALPPenalty(at_channel(eps=1.0)).values(mean_x, mean_star, lik)
    torch.testing.assert_close(alp, torch.tensor([0.09, 0.25]))


def test_shape_errors():
    with pytest.raises(ValueError, match="clean_logits"):
        trades_penalty(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="clean_logits"):
        alp_penalty(torch.zeros(2, 3), torch.zeros(3, 3))
    with pytest.raises(TypeError, match="adversary"):
        ALPPenalty("at")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="eps"):
        TradesPenalty(eps=-1.0)
