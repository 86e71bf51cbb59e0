"""AA in the attack registry: its version per predictive, and its row is the ensemble's."""

from __future__ import annotations

import pytest
import torch

from adv_attacks import robust_accuracy
from adv_channels import OneStepChannel
from adv_reactive import ReactivePPD
from benchlib.evaluate import ATTACK_FUNCTIONS, AttackSettings, attack, ensemble_version
from bnn_core import PosteriorPredictive, mnist_cnn

SETTINGS = AttackSettings(aa_steps=5, aa_targets=2, aa_queries=20, aa_eot=2)


def test_version_follows_the_predictive():
    bnn = PosteriorPredictive(mnist_cnn(bayesian=True), num_samples=2)
    point = PosteriorPredictive(mnist_cnn(bayesian=False), num_samples=2)
    reactive = ReactivePPD(mnist_cnn(bayesian=True), OneStepChannel(eps=1.0, sigma=1.0))
    assert ensemble_version(bnn, SETTINGS) == "rand"  # redraws its weights
    assert ensemble_version(point, SETTINGS) == "standard"  # every draw the same network
    assert ensemble_version(reactive, SETTINGS) == "standard"  # draws fixed at fit
    assert ensemble_version(torch.nn.Linear(2, 2), SETTINGS) == "standard"
    forced = AttackSettings(aa_version="standard")
    assert ensemble_version(bnn, forced) == "standard"


def _tiny_classifier() -> torch.nn.Module:
    g = torch.Generator().manual_seed(3)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 5))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    return net


@pytest.mark.parametrize("eps", [0.3, 1.0])
def test_aa_row_is_robust_accuracys_worst_case(eps):
    net = _tiny_classifier()
    x = torch.rand(40, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    y = net(x).argmax(1)
    y[:5] = (y[:5] + 1) % 5  # a few misclassified at the clean input
    x_adv = attack(net, x, y, "AA", eps, SETTINGS, generator=torch.Generator().manual_seed(7))
    scored = float((net(x_adv).argmax(1) == y).float().mean())
    ref = robust_accuracy(
        net,
        x,
        y,
        eps,
        "l2",
        steps=5,
        n_targets=2,
        n_queries=20,
        clamp=(0.0, 1.0),
        generator=torch.Generator().manual_seed(7),
        progress=False,
    )
    assert scored == pytest.approx(ref.accuracy, abs=1e-6)
    assert ref.accuracy < 35 / 40  # the attack did something: the check can fail
    delta = (x_adv - x).flatten(1).norm(dim=1)
    assert bool((delta <= eps + 1e-5).all()) and x_adv.min() >= 0 and x_adv.max() <= 1
    assert ATTACK_FUNCTIONS["AA"] is not None


def test_aa_on_a_regression_predictive_is_refused():
    class Reg(torch.nn.Module):
        def forward(self, x):
            m = x.flatten(1).sum(1, keepdim=True)
            return m, torch.ones_like(m)

    x = torch.rand(4, 1, 4, 4)
    with pytest.raises(ValueError, match="classification"):
        attack(Reg(), x, torch.zeros(4, dtype=torch.long), "AA", 0.5, SETTINGS)
