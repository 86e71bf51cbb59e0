"""Smoke tests of ``bench/regression.py`` on a tiny synthetic Wine table (no network, seconds)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

WINE_HEADER = (
    '"fixed acidity";"volatile acidity";"citric acid";"residual sugar";"chlorides";'
    '"free sulfur dioxide";"total sulfur dioxide";"density";"pH";"sulphates";"alcohol";'
    '"quality"'
)
ROW_KEYS = {"dataset", "model", "attack", "eps", "seed", "rmse", "nll", "std"}


def write_synthetic_wine(folder, rows: int = 150) -> None:
    """A wine-format CSV (``;``-separated, quoted header, 11 inputs and ``quality``)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, 11)) + 5.0
    quality = np.clip(np.round(5.5 + x[:, 10] - x[:, 1] + 0.3 * rng.normal(size=rows)), 3, 8)
    lines = [WINE_HEADER]
    lines += [
        ";".join(f"{v:.4f}" for v in xi) + f";{int(q)}" for xi, q in zip(x, quality, strict=True)
    ]
    (folder / "uci").mkdir(parents=True)
    (folder / "uci" / "winequality-red.csv").write_text("\n".join(lines) + "\n")


@pytest.fixture
def regression(bench_script, restore_torch_threads):
    return bench_script("regression")


@pytest.fixture
def isolated_data(monkeypatch, tmp_path):
    """No data anywhere but what a test writes: no $ADVBAYES_DATA, an empty user cache."""
    monkeypatch.delenv("ADVBAYES_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path


SMOKE = [
    "--datasets",
    "wine",
    "--no-verify",
    "--no-progress",
    "--eps",
    "0.5",
    "1.0",
    "--set",
    "epochs=1",
    "num_splits=2",
    "attack_steps=2",
    "eval_samples=2",
    "reactive_samples=2",
    "reactive_train_size=40",
]


def test_smoke_run_writes_rows_tables_plots_and_caches_models(regression, isolated_data, capsys):
    data = isolated_data / "data"
    write_synthetic_wine(data)
    out = isolated_data / "out"
    args = SMOKE + ["--data-dir", str(data), "--out", str(out), "--run", "smoke"]
    assert regression.main(args) == 0
    run = out / "smoke"
    result = json.loads((run / "results.json").read_text())
    rows = result["rows"]
    # 2 splits x (4 proactive + 2 reactive) x (Clean + 4 attacks x 2 strengths) + adaptive PGD
    assert len(rows) == 2 * (6 * 9 + 2 * 2)
    for row in rows:
        assert ROW_KEYS <= set(row)
        assert row["dataset"] == "wine" and row["seed"] in (0, 1)
        for key in ("rmse", "nll", "std", "rmse_original", "nll_original", "std_original"):
            assert math.isfinite(row[key])
        assert row["rmse"] >= 0 and row["std"] > 0
    models = {r["model"] for r in rows}
    assert models == {"BL", "MIX", "NN50", "AT", "onPure", "offPure"} | {
        "onPure (adaptive)",
        "offPure (adaptive)",
    }
    assert {r["attack"] for r in rows} == {"Clean", "PGD1", "PGD", "PGD+", "ENT"}
    assert {r["eps"] for r in rows if r["attack"] != "Clean"} == {0.5, 1.0}
    assert result["config"]["data"]["wine"]["epochs"] == 1
    assert "versions" in result["provenance"] and "train/wine/BL" in result["wall_times_s"]
    for name in ("tables.md", "paper_vs_ours.md", "wine_rmse_vs_strength.png"):
        assert (run / name).stat().st_size > 0
    assert (run / "wine_nll_vs_strength.png").read_bytes()[:4] == b"\x89PNG"
    tables = (run / "tables.md").read_text()
    assert "## Table 3: RMSE (Wine)" in tables and "## Table 4: NLL (Wine)" in tables
    comparison = (run / "paper_vs_ours.md").read_text()
    assert "Wine: RMSE" in comparison and "0.75 /" in comparison  # the paper's BL clean RMSE

    # Rerun: finished models and rows are reused, nothing is retrained or re-scored.
    cached = {p.name: p.stat().st_mtime_ns for p in (run / "models").glob("*.pt")}
    assert len(cached) == 2 * 4
    rows_file = (run / "rows" / "wine.jsonl").read_text()
    capsys.readouterr()
    assert regression.main(args) == 0
    assert {p.name: p.stat().st_mtime_ns for p in (run / "models").glob("*.pt")} == cached
    assert (run / "rows" / "wine.jsonl").read_text() == rows_file
    assert "0 s evaluating" in capsys.readouterr().out


def test_rerun_with_other_settings_needs_fresh(regression, isolated_data):
    data = isolated_data / "data"
    write_synthetic_wine(data)
    base = ["--data-dir", str(data), "--out", str(isolated_data / "out"), "--run", "r"]
    tiny = ["--models", "AT", "--attacks", "Clean"]
    assert regression.main(SMOKE + base + tiny) == 0
    with pytest.raises(SystemExit, match="other settings"):
        regression.main(SMOKE + ["seed=1"] + base + tiny)


def test_missing_data_exits_with_the_loaders_message(regression, isolated_data):
    empty = isolated_data / "empty"
    empty.mkdir()
    with pytest.raises(SystemExit) as info:
        regression.main(["--datasets", "wine", "--data-dir", str(empty), "--no-progress"])
    message = str(info.value.code)
    assert message.startswith("wine: ") and "winequality-red.csv" in message


def test_checksums_are_verified_unless_disabled(regression, isolated_data):
    data = isolated_data / "data"
    write_synthetic_wine(data)
    with pytest.raises(SystemExit, match="sha256"):
        regression.main(["--datasets", "wine", "--data-dir", str(data), "--no-progress"])


def test_set_overrides_every_dataset_or_one(regression):
    quick = regression.PROFILES["quick"]
    p = regression._override(quick, ["epochs=3", "housing.train_size=none", "eps_grid=1,2"])
    assert {s.epochs for s in p.data.values()} == {3}
    assert p.data["housing"].train_size is None
    assert p.data["wine"].lr == quick.data["wine"].lr
    assert p.eps_grid == (1.0, 2.0)
    for bad in ("nope=1", "wine.nope=1", "mars.epochs=1", "epochs", "epochs=x"):
        with pytest.raises(SystemExit):
            regression._override(quick, [bad])


def test_table_strength_falls_back_to_the_nearest_grid_value(regression):
    quick = regression.PROFILES["quick"]
    assert regression.table_strength(quick) == quick.table_eps
    other = regression._override(quick, ["eps_grid=0.5,2.5"])
    assert regression.table_strength(other) == 0.5


def test_evaluation_tasks_cover_the_grid_and_adaptive_rows(regression):
    p = regression._override(regression.PROFILES["quick"], ["eps_grid=1,2"])
    tasks = regression.evaluation_tasks(p, ["BL", "onPure"], ["Clean", "PGD", "ENT"], split=1)
    assert ("BL", "Clean", 0.0, 1) in tasks and ("onPure", "ENT", 2.0, 1) in tasks
    adaptive = [t for t in tasks if t[0].endswith("(adaptive)")]
    assert adaptive == [("onPure (adaptive)", "PGD", 1.0, 1), ("onPure (adaptive)", "PGD", 2.0, 1)]
    assert len(tasks) == 2 * (1 + 2 * 2) + 2
