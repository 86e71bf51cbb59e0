import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import entropy as scipy_entropy

from bnn_core import (
    accuracy,
    expected_calibration_error,
    gaussian_mixture_nll,
    gaussian_nll,
    nll,
    predictive_entropy,
    rmse,
)


def test_accuracy_hand_case_and_reductions() -> None:
    outputs = torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    y = torch.tensor([1, 1, 1])
    assert accuracy(outputs, y).item() == pytest.approx(2 / 3)
    assert accuracy(outputs, y, "sum").item() == 2
    torch.testing.assert_close(
        accuracy(outputs, y, reduction="none"), torch.tensor([1.0, 0.0, 1.0])
    )


def test_nll_same_for_logits_and_log_probs() -> None:
    logits = torch.randn(6, 4, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    ref = F.cross_entropy(logits, y)
    torch.testing.assert_close(nll(logits, y), ref)
    torch.testing.assert_close(nll(logits.log_softmax(-1), y), ref)
    torch.testing.assert_close(nll(logits, y, "sum"), ref * 6)


def test_predictive_entropy_against_scipy_and_edge_cases() -> None:
    logits = torch.randn(5, 7, dtype=torch.float64)
    ref = scipy_entropy(logits.softmax(-1).numpy(), axis=-1)
    torch.testing.assert_close(predictive_entropy(logits, "none"), torch.from_numpy(ref))
    uniform = torch.zeros(2, 4)
    torch.testing.assert_close(predictive_entropy(uniform), torch.tensor(math.log(4)))
    one_hot = torch.tensor([[0.0, -math.inf, -math.inf]], requires_grad=True)
    h = predictive_entropy(one_hot)
    assert h.item() == 0.0
    h.backward()
    assert torch.isfinite(one_hot.grad).all()


def _ece_reference(probs: np.ndarray, labels: np.ndarray, bins: int) -> float:
    """Guo et al. (2017), written with a Python loop over bins (lo, hi]."""
    conf = probs.max(1)
    pred = probs.argmax(1)
    total = 0.0
    edges = np.linspace(0.0, 1.0, bins + 1)
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        in_bin = (conf > lo) & (conf <= hi)
        if in_bin.any():
            total += in_bin.mean() * abs(
                (pred[in_bin] == labels[in_bin]).mean() - conf[in_bin].mean()
            )
    return total


@pytest.mark.parametrize("bins", [1, 5, 15])
def test_ece_against_a_loop_reference(bins: int) -> None:
    logits = torch.randn(200, 5, dtype=torch.float64) * 2
    y = torch.randint(0, 5, (200,))
    ref = _ece_reference(logits.softmax(-1).numpy(), y.numpy(), bins)
    assert expected_calibration_error(logits, y, bins).item() == pytest.approx(ref, abs=1e-12)


def test_ece_hand_cases() -> None:
    # confident and right: 0; confident (p = 0.9) and always wrong: 0.9
    right = torch.tensor([[math.log(0.9), math.log(0.1)]] * 4)
    assert expected_calibration_error(
        right, torch.zeros(4, dtype=torch.long)
    ).item() == pytest.approx(0.1)
    assert expected_calibration_error(
        right, torch.ones(4, dtype=torch.long)
    ).item() == pytest.approx(0.9)


def test_regression_metrics() -> None:
    pred = torch.tensor([[1.0], [2.0], [4.0]], dtype=torch.float64)
    y = torch.tensor([1.0, 3.0, 2.0], dtype=torch.float64)
    assert rmse(pred, y).item() == pytest.approx(math.sqrt(5 / 3))
    var = torch.tensor([[0.5], [1.0], [2.0]], dtype=torch.float64)
    ref = F.gaussian_nll_loss(pred, y[:, None], var, full=True)
    torch.testing.assert_close(gaussian_nll(pred, var, y), ref)
    # a mixture of identical components is that component
    means = pred[None].expand(4, 3, 1)
    torch.testing.assert_close(gaussian_mixture_nll(means, 0.5, y), gaussian_nll(pred, 0.5, y))


def test_errors() -> None:
    outputs = torch.randn(3, 4)
    with pytest.raises(ValueError, match=r"target must hold class indices in \[0, 3\]"):
        nll(outputs, torch.tensor([0, 1, 4]))
    with pytest.raises(TypeError, match="target must have an integer dtype"):
        accuracy(outputs, torch.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match=r"target must have shape \(3,\)"):
        nll(outputs, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="outputs must have 2 dimensions"):
        predictive_entropy(torch.randn(3))
    with pytest.raises(ValueError, match="outputs contains NaN"):
        nll(torch.full((1, 2), float("nan")), torch.tensor([0]))
    with pytest.raises(ValueError, match="reduction must be one of"):
        nll(outputs, torch.tensor([0, 1, 2]), reduction="avg")
    with pytest.raises(ValueError, match="num_bins"):
        expected_calibration_error(outputs, torch.tensor([0, 1, 2]), num_bins=0)
    with pytest.raises(ValueError, match="target must have the shape of pred"):
        rmse(torch.zeros(3, 2), torch.zeros(3))
