"""The single-draw predictive and its output tape."""

from __future__ import annotations

import pytest
import torch

from adv_reactive import DrawPredictive
from bnn_core import sample_weights


def _draws(model, num_draws: int = 3):
    return {
        k: v.detach()
        for k, v in sample_weights(model, num_draws, torch.Generator().manual_seed(0)).items()
    }


def test_classification_output_is_the_draws_logits(reactive_models, by_hand) -> None:
    model = reactive_models["classification"]()
    draws = _draws(model)
    x = torch.rand(4, 1, 2, 3, dtype=torch.float64)
    for m in range(3):
        torch.testing.assert_close(DrawPredictive(model, draws, m)(x), by_hand(model, draws, m, x))


def test_regression_output_is_mean_and_noise_variance(reactive_models, by_hand) -> None:
    model = reactive_models["regression"]()
    draws = _draws(model)
    x = torch.rand(4, 1, 2, 3, dtype=torch.float64).flatten(1)
    mean, var = DrawPredictive(model, draws, 2, task="regression", noise_var=0.09)(x)
    torch.testing.assert_close(mean, by_hand(model, draws, 2, x))
    torch.testing.assert_close(var, torch.full_like(mean, 0.09))


def test_tape_returns_outputs_only_for_exactly_the_recorded_inputs(reactive_models) -> None:
    model = reactive_models["classification"]()
    pred = DrawPredictive(model, _draws(model), 1)
    x = torch.rand(6, 1, 2, 3, dtype=torch.float64)
    with pred.recording() as tape:
        a, b = pred(x[:4]), pred(x[4:])
    pred(x)  # not recorded
    torch.testing.assert_close(tape.outputs_for(x), torch.cat((a, b)))
    assert len(tape.inputs) == 2
    assert tape.outputs_for(x[:5]) is None
    assert tape.outputs_for(x + 1e-9) is None
    with pred.recording() as tape:
        pred(x)
        pred(x)  # more than the batch: not reusable
    assert tape.outputs_for(x) is None


def test_errors(reactive_models) -> None:
    model = reactive_models["classification"]()
    draws = _draws(model)
    with pytest.raises(ValueError, match="index"):
        DrawPredictive(model, draws, 3)
    with pytest.raises(ValueError, match="noise_var"):
        DrawPredictive(model, draws, 0, task="regression")
    with pytest.raises(ValueError, match="task"):
        DrawPredictive(model, draws, 0, task="ranking")
