import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import entropy as scipy_entropy

from bnn_core import (
    accuracy,
    brier_score,
    expected_calibration_error,
    gaussian_mixture_nll,
    gaussian_nll,
    mutual_information,
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


def test_ece_bin_count_matters_hand_case() -> None:
    # conf 0.4 and right, conf 0.9 and wrong: one bin |0.5 − 0.65| = 0.15; two bins
    # ½ |1 − 0.4| + ½ |0 − 0.9| = 0.75
    probs = torch.tensor([[0.4, 0.3, 0.3], [0.9, 0.05, 0.05]], dtype=torch.float64)
    y = torch.tensor([0, 1])
    assert expected_calibration_error(probs.log(), y, 1).item() == pytest.approx(0.15)
    assert expected_calibration_error(probs.log(), y, 2).item() == pytest.approx(0.75)


def test_brier_score_hand_cases_and_brute_force() -> None:
    probs = torch.tensor([[0.5, 0.5, 0.0], [0.7, 0.2, 0.1], [0.0, 1.0, 0.0]], dtype=torch.float64)
    y = torch.tensor([0, 0, 0])
    # (½² + ½²), (0.3² + 0.2² + 0.1²), (1² + 1²): a confident wrong answer scores 2
    expected = torch.tensor([0.5, 0.14, 2.0], dtype=torch.float64)
    torch.testing.assert_close(brier_score(probs.log(), y, reduction="none"), expected)
    assert brier_score(probs.log(), y).item() == pytest.approx(float(expected.mean()))
    assert brier_score(torch.zeros(1, 4), torch.tensor([2])).item() == pytest.approx(0.75)
    logits = torch.randn(50, 6, dtype=torch.float64)
    labels = torch.randint(0, 6, (50,))
    p = logits.softmax(-1).numpy()
    ref = sum(((p[i] - np.eye(6)[labels[i]]) ** 2).sum() for i in range(50)) / 50
    assert brier_score(logits, labels).item() == pytest.approx(ref, abs=1e-12)


def test_mutual_information_hand_cases() -> None:
    # identical draws: no epistemic uncertainty, whatever their entropy
    same = torch.tensor([0.3, 1.2, -0.4], dtype=torch.float64).expand(4, 1, 3)
    assert mutual_information(same).item() == pytest.approx(0.0, abs=1e-12)

    # two draws (0.5, 0.5) and (0.9, 0.1): H[(0.7, 0.3)] − ½ (H[(½, ½)] + H[(0.9, 0.1)])
    def h(*p: float) -> float:
        return -sum(q * math.log(q) for q in p)

    draws = torch.tensor([[[0.5, 0.5]], [[0.9, 0.1]]], dtype=torch.float64).log()
    ref = h(0.7, 0.3) - 0.5 * (h(0.5, 0.5) + h(0.9, 0.1))
    assert mutual_information(draws).item() == pytest.approx(ref, abs=1e-12)
    # two confident opposite draws: log 2, the most that two draws can give
    opposite = torch.tensor([[[30.0, -30.0]], [[-30.0, 30.0]]], dtype=torch.float64)
    assert mutual_information(opposite).item() == pytest.approx(math.log(2), abs=1e-10)


def test_mutual_information_against_numpy_and_bounds() -> None:
    logits = torch.randn(7, 20, 5, dtype=torch.float64) * 2
    p = logits.softmax(-1).numpy()
    mean = p.mean(axis=0)
    ref = scipy_entropy(mean, axis=-1) - scipy_entropy(p, axis=-1).mean(axis=0)
    mi = mutual_information(logits, reduction="none")
    np.testing.assert_allclose(mi.numpy(), ref, atol=1e-12)
    ppd = torch.tensor(mean).log()
    assert (mi >= 0).all() and (mi <= predictive_entropy(ppd, reduction="none") + 1e-12).all()
    assert (mi <= math.log(7) + 1e-12).all()
    assert mutual_information(logits, reduction="sum").item() == pytest.approx(ref.sum())
    with pytest.raises(ValueError, match="draw_outputs must have 3 dimensions"):
        mutual_information(torch.randn(4, 3))


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
