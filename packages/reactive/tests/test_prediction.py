"""The prediction record: log-probabilities stay finite and differentiable at zero."""

from __future__ import annotations

import torch

from adv_reactive import ReactivePrediction


def _prediction(probs=None, mean=None, var=None) -> ReactivePrediction:
    z = torch.zeros(2, 3)
    return ReactivePrediction(
        probs=probs, mean=mean, var=var, ess=torch.ones(2), log_normalizer=z,
        log_marginal_likelihood=z, draw_weights=torch.full((2, 3), 1 / 3),
    )  # fmt: skip


def test_log_probs_of_underflowed_probabilities_are_finite_with_finite_gradients():
    probs = torch.tensor([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]], requires_grad=True)
    log_probs = _prediction(probs).log_probs
    torch.testing.assert_close(log_probs[0, :2], torch.full((2,), 0.5).log())
    assert torch.isfinite(log_probs).all()
    (grad,) = torch.autograd.grad(log_probs.sum(), probs)
    assert torch.isfinite(grad).all()


def test_regression_predictions_have_no_log_probs():
    assert _prediction(mean=torch.zeros(2), var=torch.ones(2)).log_probs is None
