"""Randomized smoothing on classifiers whose smoothed version has a closed form."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from adv_reactive.binomial import clopper_pearson_lower
from adv_reactive.smoothing import (
    ABSTAIN,
    certified_accuracy,
    certify,
    class_counts,
    eval_mode,
    predict,
)

SIGMA = 0.5
W = torch.tensor([3.0, -4.0])  # ‖w‖ = 5
B = 0.5


class Linear2(nn.Module):
    """Binary linear classifier: logits (0, w·x + b), i.e. class 1 iff w·x + b > 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = x @ W + B
        return torch.stack([torch.zeros_like(score), score], dim=1)


def _smoothed_p1(x: torch.Tensor) -> torch.Tensor:
    """P(f(x + η) = 1) = Φ((w·x + b) / (σ‖w‖)): the closed form of the smoothed classifier."""
    z = (x.double() @ W.double() + B) / (SIGMA * W.norm().double())
    return torch.special.ndtr(z)


def _distance(x: torch.Tensor) -> torch.Tensor:
    return (x.double() @ W.double() + B).abs() / W.norm().double()


X = torch.tensor([[0.2, 0.1], [1.0, 1.0], [0.0, -0.5], [-0.3, 0.4]])


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_counts_follow_the_closed_form() -> None:
    n = 40_000
    counts = class_counts(
        Linear2(), X, sigma=SIGMA, num_samples=n, batch_size=8192, generator=_gen()
    )
    assert counts.shape == (4, 2) and (counts.sum(1) == n).all()
    p = _smoothed_p1(X)
    se = torch.sqrt(p * (1 - p) / n)
    assert ((counts[:, 1] / n - p).abs() < 5 * se + 1e-12).all()


def test_counts_mix_inputs_within_a_batch() -> None:
    # Batches straddle inputs (37 draws, batches of 50): each draw must count for its input.
    def nearest_centre(x: torch.Tensor) -> torch.Tensor:
        centres = torch.tensor([[10.0, 0.0], [-10.0, 0.0], [0.0, 10.0]])
        return -torch.cdist(x, centres)

    x = torch.tensor([[10.0, 0.0], [0.0, 10.0], [-10.0, 0.0], [0.0, 10.0], [10.0, 0.0]])
    counts = class_counts(
        nearest_centre, x, sigma=0.1, num_samples=37, batch_size=50, generator=_gen(1)
    )
    expected = torch.zeros(5, 3, dtype=torch.long)
    expected[torch.arange(5), torch.tensor([0, 2, 1, 2, 0])] = 37
    assert torch.equal(counts, expected)


def test_certify_linear_classifier_radius() -> None:
    # Radius σΦ⁻¹(p_A) is below the distance to the hyperplane (w.p. 1 − α) and near it
    # for large n: the exact certified radius of a smoothed linear classifier is the distance.
    n = 100_000
    cert = certify(Linear2(), X, sigma=SIGMA, n0=100, n=n, batch_size=20_000, generator=_gen(2))
    truth = (X @ W + B > 0).long()
    assert torch.equal(cert.label, truth)
    dist = _distance(X)
    assert (cert.radius <= dist).all()
    # p_A is within a few binomial standard errors of the true p; so is the radius.
    p = torch.maximum(_smoothed_p1(X), 1 - _smoothed_p1(X))
    pdf = torch.exp(-0.5 * (dist / SIGMA) ** 2) / math.sqrt(2 * math.pi)
    slack = SIGMA * 6 * torch.sqrt(p * (1 - p) / n) / pdf
    assert (cert.radius >= dist - slack).all()
    assert (cert.p_lower <= p).all()
    torch.testing.assert_close(
        cert.p_lower,
        clopper_pearson_lower(cert.counts.gather(1, cert.label[:, None])[:, 0], n, 0.001),
    )


def test_certify_abstains_on_the_decision_boundary() -> None:
    on_boundary = torch.tensor([[0.0, 0.125]])  # w·x + b = 0: p = 1/2
    cert = certify(Linear2(), on_boundary, sigma=SIGMA, n0=100, n=10_000, generator=_gen(3))
    assert cert.label.item() == ABSTAIN and cert.radius.item() == 0.0
    assert cert.p_lower.item() < 0.5


def test_predict_linear_classifier_and_abstain() -> None:
    far = torch.tensor([[1.0, 1.0], [0.0, -0.5]])  # p far from 1/2: confident
    on_boundary = torch.tensor([[0.0, 0.125]] * 3)  # p = 1/2: must abstain
    got = predict(Linear2(), torch.cat([far, on_boundary]), sigma=SIGMA, n=2000, generator=_gen(4))
    assert got[:2].tolist() == (far @ W + B > 0).long().tolist()
    assert (got[2:] == ABSTAIN).all()


def test_predict_abstains_with_too_few_draws() -> None:
    # p(class 1) = Φ(0.1 / 0.5) ≈ 0.58: 10 draws cannot reject p = 1/2 at alpha = 0.001.
    x = torch.tensor([[0.0, 0.1]])
    assert predict(Linear2(), x, sigma=SIGMA, n=10, generator=_gen(5)).item() == ABSTAIN


def test_multiclass_and_probability_outputs() -> None:
    # A PPD-style classifier returning log-probabilities over 3 classes, constant in x.
    class Constant(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.log(torch.tensor([[0.1, 0.7, 0.2]])).expand(x.shape[0], 3)

    cert = certify(Constant(), torch.zeros(2, 5), sigma=1.0, n0=10, n=1000, generator=_gen(6))
    assert cert.label.tolist() == [1, 1]
    # n_A = n: p_A = alpha^(1/n) exactly, radius = σ Φ⁻¹(p_A) with σ = 1.
    expected = torch.special.ndtri(torch.tensor(0.001, dtype=torch.float64) ** (1 / 1000))
    torch.testing.assert_close(cert.radius, expected.expand(2))


def test_eval_mode_is_used_and_restored() -> None:
    seen: list[bool] = []

    class Probe(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.drop = nn.Dropout(0.5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(self.training or self.drop.training)
            return torch.stack([x[:, 0], -x[:, 0]], dim=1)

    net = Probe().train()
    class_counts(net, torch.zeros(2, 3), sigma=1.0, num_samples=4)
    assert seen and not any(seen)
    assert net.training and net.drop.training
    with pytest.raises(RuntimeError), eval_mode(net):
        raise RuntimeError
    assert net.training and net.drop.training  # restored on error too


def test_plain_callables_and_generators_reproduce() -> None:
    def clf(x: torch.Tensor) -> torch.Tensor:
        return torch.stack([x.sum(1), -x.sum(1)], dim=1)

    a = class_counts(clf, X, sigma=1.0, num_samples=100, generator=_gen(7))
    b = class_counts(clf, X, sigma=1.0, num_samples=100, generator=_gen(7))
    assert torch.equal(a, b)


def test_certified_accuracy_curve() -> None:
    label = torch.tensor([0, 1, ABSTAIN, 2, 1])
    radius = torch.tensor([0.5, 1.0, 0.0, 0.2, 2.0])
    target = torch.tensor([0, 0, 1, 2, 1])
    got = certified_accuracy(label, radius, target, [0.0, 0.2, 0.5, 1.0, 2.0, 3.0])
    # Correct and certified: inputs 0 (r=0.5), 3 (r=0.2), 4 (r=2.0).
    torch.testing.assert_close(got, torch.tensor([3, 3, 2, 1, 1, 0], dtype=torch.float64) / 5)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        pytest.param({"sigma": 0.0}, ValueError, "sigma must be a positive", id="sigma_zero"),
        pytest.param({"sigma": math.inf}, ValueError, "sigma must be a positive", id="sigma_inf"),
        pytest.param({"n": 0}, ValueError, "num_samples must be a positive", id="n_zero"),
        pytest.param({"n": 2.5}, TypeError, "num_samples must be a positive", id="n_float"),
        pytest.param({"batch_size": "8"}, TypeError, "batch_size must be a", id="batch_str"),
        pytest.param({"alpha": 0.0}, ValueError, "alpha must be in", id="alpha_zero"),
        pytest.param({"batch_size": 0}, ValueError, "batch_size must be a positive", id="batch"),
        pytest.param({"generator": 3}, TypeError, "generator must be a torch.Generator", id="gen"),
    ],
)
def test_predict_errors(kwargs: dict[str, object], error: type[Exception], match: str) -> None:
    args: dict[str, object] = {"sigma": SIGMA, "n": 10, **kwargs}
    with pytest.raises(error, match=match):
        predict(Linear2(), X, **args)  # type: ignore[arg-type]


def test_input_and_classifier_errors() -> None:
    with pytest.raises(ValueError, match="noise is drawn on the input's device"):
        predict(Linear2(), X.to("meta"), sigma=SIGMA, n=5, generator=_gen())
    with pytest.raises(ValueError, match="x holds NaN"):
        certify(Linear2(), X * math.nan, sigma=SIGMA, n0=5, n=5)
    with pytest.raises(TypeError, match="x must be a floating-point tensor"):
        certify(Linear2(), X.long(), sigma=SIGMA, n0=5, n=5)
    with pytest.raises(ValueError, match=r"classifier must return \(b, C\)"):
        predict(lambda x: x.sum(1), X, sigma=SIGMA, n=5)
    with pytest.raises(ValueError, match="C >= 2"):
        predict(lambda x: x[:, :1], X, sigma=SIGMA, n=5)
    with pytest.raises(ValueError, match=r"must all have shape \(B,\)"):
        certified_accuracy(torch.zeros(3), torch.zeros(2), torch.zeros(3), [0.0])
    with pytest.raises(ValueError, match="non-negative"):
        certified_accuracy(torch.zeros(3), torch.zeros(3), torch.zeros(3), [-1.0])
