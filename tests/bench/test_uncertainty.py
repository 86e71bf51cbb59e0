"""Selective accuracy and AUROC against brute force and hand-computed cases."""

from __future__ import annotations

import itertools

import pytest
import torch

from benchlib.uncertainty import auroc, selective_accuracy


def brute_auroc(scores, positive):
    pos = [s for s, p in zip(scores.tolist(), positive.tolist(), strict=True) if p]
    neg = [s for s, p in zip(scores.tolist(), positive.tolist(), strict=True) if not p]
    total = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in itertools.product(pos, neg))
    return total / (len(pos) * len(neg))


def test_auroc_matches_pairwise_count_with_ties():
    g = torch.Generator().manual_seed(3)
    for _ in range(20):
        scores = torch.randint(0, 5, (30,), generator=g).float()  # many ties
        positive = torch.rand(30, generator=g) < 0.4
        positive[0], positive[1] = True, False
        assert auroc(scores, positive) == pytest.approx(brute_auroc(scores, positive))


def test_auroc_extremes_and_bad_input():
    positive = torch.tensor([False, False, True, True])
    assert auroc(torch.tensor([0.0, 1.0, 2.0, 3.0]), positive) == 1.0
    assert auroc(torch.tensor([3.0, 2.0, 1.0, 0.0]), positive) == 0.0
    assert auroc(torch.ones(4), positive) == 0.5
    with pytest.raises(ValueError, match="both"):
        auroc(torch.ones(3), torch.ones(3).bool())
    with pytest.raises(ValueError, match="positive must have shape"):
        auroc(torch.ones(3), torch.ones(2).bool())


def test_selective_accuracy_hand_case():
    # kept (lowest-entropy half): indices 0, 3, 1 (0.1, 0.15, 0.5); 3 is OOD -> an error
    u = torch.tensor([0.1, 0.5, 0.9, 0.15, 0.7, 0.6])
    correct = torch.tensor([True, True, True, True, False, True])
    ood = torch.tensor([False, False, False, True, True, False])
    out = selective_accuracy(u, correct, ood)
    assert out["selective_accuracy"] == pytest.approx(2 / 3)
    assert out["kept_ood_fraction"] == pytest.approx(1 / 3) and out["kept"] == 3.0


def test_selective_accuracy_ties_are_stable_and_ood_never_counts():
    u = torch.zeros(4)
    ood = torch.tensor([True, False, False, False])
    out = selective_accuracy(u, torch.ones(4).bool(), ood)  # keeps 0 and 1
    assert out["selective_accuracy"] == 0.5 and out["kept_ood_fraction"] == 0.5
    with pytest.raises(ValueError, match="keep"):
        selective_accuracy(u, torch.ones(4).bool(), ood, keep=0.0)
    with pytest.raises(ValueError, match="NaN"):
        selective_accuracy(torch.tensor([float("nan"), 0.0]), torch.ones(2).bool(), ood[:2])
