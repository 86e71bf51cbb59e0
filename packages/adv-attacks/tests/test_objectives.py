from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from adv_attacks import Objective, ObjectiveSpec, attack_success, objective_values, read_output
from adv_attacks.predictive import RegressionOutput


def _logits(b=5, c=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return 3 * torch.randn(b, c, generator=g, dtype=torch.float64)


def test_objective_enum_accepts_plain_strings():
    assert ObjectiveSpec("cw").objective is Objective.CW
    assert Objective("entropy") is Objective.ENTROPY
    with pytest.raises(ValueError, match="objective must be one of 'nll', 'mse', 'cw'"):
        ObjectiveSpec("hinge")


def test_nll_is_cross_entropy_and_logits_equal_log_probs():
    z = _logits()
    y = torch.tensor([0, 1, 2, 3, 0])
    ref = F.cross_entropy(z, y, reduction="none")
    got = objective_values(read_output(z, 5), y, "nll")
    torch.testing.assert_close(got, ref)
    from_lp = objective_values(read_output(F.log_softmax(z, -1), 5), y, "nll")
    torch.testing.assert_close(from_lp, ref)


def _cw_brute(lp, y, kappa, targeted=False):
    out = []
    for b in range(lp.shape[0]):
        others = max(float(lp[b, k]) for k in range(lp.shape[1]) if k != int(y[b]))
        margin = float(lp[b, y[b]]) - others if targeted else others - float(lp[b, y[b]])
        out.append(min(margin, kappa))
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("kappa", [0.0, 0.7, 50.0])
@pytest.mark.parametrize("targeted", [False, True])
def test_cw_matches_brute_force(kappa, targeted):
    z = _logits(b=8, c=5)
    y = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2])
    lp = F.log_softmax(z, -1)
    got = objective_values(read_output(z, 8), y, "cw", kappa=kappa, targeted=targeted)
    torch.testing.assert_close(got, _cw_brute(lp, y, kappa, targeted))


def test_cw_masks_true_class_not_multiplies_by_one_minus_onehot():
    # Log-probabilities are all negative: max((1 - onehot) * lp) picks the masked 0 of the
    # true class, the bug SPEC §2 warns about. The masked max must not.
    z = torch.tensor([[2.0, 1.0, -1.0], [0.0, 3.0, 1.0]], dtype=torch.float64)
    y = torch.tensor([0, 1])
    lp = F.log_softmax(z, -1)
    onehot = F.one_hot(y, 3).double()
    buggy = ((1 - onehot) * lp).amax(1) - (lp * onehot).sum(1)
    got = objective_values(read_output(z, 2), y, "cw", kappa=10.0)
    torch.testing.assert_close(got, torch.tensor([1.0 - 2.0, 1.0 - 3.0], dtype=torch.float64))
    assert not torch.allclose(got, buggy)


def test_entropy_matches_scipy_and_sign():
    z = _logits(b=6, c=5)
    p = F.softmax(z, -1).numpy()
    ref = torch.tensor(stats.entropy(p, axis=1), dtype=torch.float64)
    out = read_output(z, 6)
    torch.testing.assert_close(objective_values(out, None, "entropy"), ref)
    torch.testing.assert_close(objective_values(out, None, "entropy", entropy_sign=-1), -ref)


def test_entropy_with_zero_probability_class_is_finite_with_finite_gradient():
    lp = torch.tensor([[math.log(0.5), math.log(0.5), -math.inf]], dtype=torch.float64)
    lp.requires_grad_(True)
    h = objective_values(read_output(lp, 1), None, "entropy")
    torch.testing.assert_close(h, torch.tensor([math.log(2.0)], dtype=torch.float64))
    (g,) = torch.autograd.grad(h.sum(), lp)
    assert torch.isfinite(g).all()


def _regression(b=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    mean = torch.randn(b, generator=g, dtype=torch.float64)
    var = torch.rand(b, generator=g, dtype=torch.float64) + 0.2
    y = torch.randn(b, generator=g, dtype=torch.float64)
    return RegressionOutput(mean, var), y


def test_regression_objectives_against_torch_distributions():
    out, y = _regression()
    normal = torch.distributions.Normal(out.mean, out.var.sqrt())
    torch.testing.assert_close(objective_values(out, y, "nll"), -normal.log_prob(y))
    torch.testing.assert_close(objective_values(out, y, "mse"), (y - out.mean) ** 2)
    log_std = normal.entropy() - 0.5 * math.log(2 * math.pi * math.e)
    torch.testing.assert_close(objective_values(out, None, "entropy"), log_std)
    torch.testing.assert_close(objective_values(out, None, "entropy", entropy_sign=-1), -log_std)
    torch.testing.assert_close(
        objective_values(out, y, "mse", targeted=True), -((y - out.mean) ** 2)
    )
    torch.testing.assert_close(objective_values(out, y, "nll", targeted=True), normal.log_prob(y))


def test_targeted_nll_is_log_prob_of_target():
    z = _logits()
    t = torch.tensor([3, 2, 1, 0, 3])
    got = objective_values(read_output(z, 5), t, "nll", targeted=True)
    torch.testing.assert_close(got, F.log_softmax(z, -1)[torch.arange(5), t])


def test_objectives_undefined_for_the_task_raise():
    out, y = _regression()
    with pytest.raises(ValueError, match="objective='cw' needs a classification"):
        objective_values(out, y, "cw")
    z = read_output(_logits(), 5)
    with pytest.raises(ValueError, match="objective='mse' needs a regression"):
        objective_values(z, torch.zeros(5, dtype=torch.long), "mse")
    with pytest.raises(ValueError, match="at least 2 classes"):
        objective_values(read_output(torch.zeros(3, 1), 3), torch.zeros(3, dtype=torch.long), "cw")
    with pytest.raises(ValueError, match="needs labels"):
        objective_values(z, None, "nll")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kappa": -0.1}, "kappa must be finite and >= 0"),
        ({"kappa": math.inf}, "kappa must be finite"),
        ({"entropy_sign": 0}, "entropy_sign must be"),
        ({"entropy_sign": 2}, "entropy_sign must be"),
        ({"objective": "entropy", "targeted": True}, "targeted=True is not defined"),
    ],
)
def test_bad_options_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ObjectiveSpec(**kwargs)


def test_attack_success():
    z = torch.tensor([[2.0, 0.0], [0.0, 2.0], [3.0, 1.0]])
    out = read_output(z, 3)
    y = torch.tensor([0, 0, 1])
    assert attack_success(out, y).tolist() == [False, True, True]
    assert attack_success(out, y, targeted=True).tolist() == [True, False, False]
    reg, _ = _regression()
    with pytest.raises(ValueError, match="classification"):
        attack_success(reg, y)
