"""Smoke test of ``bench/channels.py`` on a tiny configuration, and its summary logic."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("mlxtend")

from .conftest import _load_script  # noqa: E402

TINY = [
    "--no-progress",
    "--threads",
    "1",
    "--seeds",
    "0",
    "1",
    "--monitor-size",
    "10",
    "--recipes",
    "AT-PGD",
    "AMO50",
    "AMO50-J",
    "--set",
    "epochs=1",
    "train_size=128",
    "test_size=10",
    "eval_samples=2",
    "attack_steps=2",
]


def test_study_writes_table_plot_bar_and_overfitting(tmp_path, restore_torch_threads):
    channels = _load_script("channels")
    assert channels.main(["--out", str(tmp_path), "--run", "tiny", *TINY]) == 0
    run = tmp_path / "tiny"
    payload = json.loads((run / "results.json").read_text())
    assert {"summary", "pareto_front", "bar_met_by", "catastrophic_overfitting"} <= set(payload)
    rows = payload["rows"]
    assert {r["model"] for r in rows} == {"BL", "AT-PGD", "AMO50", "AMO50-J"}  # BL added
    assert payload["bar_attack"] == "PGD"  # no AA in this run
    assert {r["attack"] for r in rows} == {"Clean", "PGD"}
    assert {r["train_seed"] for r in rows} == {0, 1}
    text = (run / "pareto.md").read_text()
    assert "| AMO50" in text and "The bar (against AT-PGD" in text and "Bar met by" in text
    assert (run / "pareto.png").stat().st_size > 0
    # BL's time is the unit; the monitor ran on every model but BL
    assert payload["summary"]["BL"]["time"][0] == pytest.approx(1.0)
    hist = payload["training_history"]
    assert "co_multi_step_accuracy" in hist["AMO50-s0"][0]
    assert "co_multi_step_accuracy" not in hist["BL-s0"][0]
    # a rerun loads the cached models and rows; --report-only summarises what exists
    assert channels.main(["--out", str(tmp_path), "--run", "tiny", *TINY]) == 0
    more = [*TINY[:3], "--report-only", "--seeds", "0", "1", "2", *TINY[6:]]
    assert channels.main(["--out", str(tmp_path), "--run", "tiny", *more]) == 0
    again = json.loads((run / "results.json").read_text())
    assert again["summary"]["AMO50"]["seeds"][0] == 2  # seed 2 was never trained
    assert not (run / "models" / "BL-s2.pt").exists()


def test_pareto_front_and_bar_on_hand_made_numbers():
    channels = _load_script("channels")

    def s(acc, nll, time):
        return {"PGD/accuracy": (acc, 0.0), "PGD/nll": (nll, 0.0), "time": (time, 0.0)}

    stats = {
        "BL": s(0.0, 5.0, 1.0),
        "AT-PGD": s(0.6, 1.2, 3.0),
        "MIX": s(0.55, 1.0, 1.5),  # cheaper, slightly less robust: on the front
        "A": s(0.62, 1.1, 2.5),  # meets the bar
        "B": s(0.65, 1.3, 2.0),  # more robust and cheaper, but a higher NLL
        "C": s(0.70, 1.0, 3.5),  # slower than AT-PGD
    }
    assert sorted(channels.pareto_front(stats, "PGD")) == ["B", "BL", "C", "MIX"]
    passing, lines = channels.bar_check(stats, "PGD")
    assert passing == ["A"]
    assert len(lines) == 4 and all(("MEETS" in ln) == ln.startswith("- A:") for ln in lines)


def test_attacks_come_from_the_shared_registry_including_aa(tmp_path, restore_torch_threads):
    channels = _load_script("channels")
    from benchlib.evaluate import ATTACK_FUNCTIONS

    assert channels.parse_args(["--attacks", "AA"]).attacks == ["AA"]
    assert set(channels.parse_args([]).attacks) <= set(ATTACK_FUNCTIONS)
    tiny = [
        *TINY[:5],
        "--monitor-size",
        "0",
        "--recipes",
        "BL",
        "--attacks",
        "PGD",
        "AA",
        *TINY[TINY.index("--set") :],
        "aa_steps=2",
        "aa_queries=10",
        "aa_targets=1",
        "aa_eot=1",
    ]
    assert channels.main(["--out", str(tmp_path), "--run", "aa", *tiny]) == 0
    payload = json.loads((tmp_path / "aa" / "results.json").read_text())
    assert payload["bar_attack"] == "AA"  # the bar is judged under the ensemble when it ran
    rows = payload["rows"]
    assert {r["attack"] for r in rows} == {"Clean", "PGD", "AA"}
    aa = [r for r in rows if r["attack"] == "AA"]
    pgd = {r["seed"]: r for r in rows if r["attack"] == "PGD"}
    # AA is the per-example worst case of an ensemble: never more accurate than clean
    clean = {r["seed"]: r for r in rows if r["attack"] == "Clean"}
    assert all(r["accuracy"] <= clean[r["seed"]]["accuracy"] + 1e-9 for r in aa)
    assert len(aa) == len(pgd) and "| AA acc (ε=2)" in (tmp_path / "aa" / "pareto.md").read_text()


def test_recipes_beyond_the_default_study_can_be_chosen():
    channels = _load_script("channels")
    default = channels.parse_args([]).recipes
    assert "AMO-J" in default and "AMO-J2" not in default  # half resolution: on request
    assert channels.parse_args(["--recipes", "AMO-J2", "AMO50-J2"]).recipes == [
        "AMO-J2",
        "AMO50-J2",
    ]
    with pytest.raises(SystemExit):  # a reactive defence is not a training recipe
        channels.parse_args(["--recipes", "onPure"])


def test_generator_ablation_runs_through_the_study(tmp_path, restore_torch_threads):
    ablation = _load_script("amortised_ablation")
    tiny = [*TINY[:6], "--monitor-size", "0", *TINY[TINY.index("--set") :]]
    recipes = ["--recipes", "AMO-J2-nodil", "AMO-J-gain"]
    assert ablation.main(["--out", str(tmp_path), *tiny, *recipes]) == 0
    payload = json.loads((tmp_path / "ablation" / "results.json").read_text())
    assert {r["model"] for r in payload["rows"]} == {"BL", "AMO-J2-nodil", "AMO-J-gain"}
    x, y = torch.rand(3, 1, 28, 28), torch.tensor([0, 4, 9])
    g = torch.randn(3, 1, 28, 28)
    for net in (ablation.WithoutContext(), ablation.WithoutContext(dilated=False)):
        d, s = net(x, y, g)
        assert d.shape == s.shape == x.shape
        torch.testing.assert_close(d, 2.0 * g)  # the refinement starts at zero
    d, s = ablation.GainOnly()(x, y, g)
    torch.testing.assert_close(d, 2.0 * g)
    assert s.shape == x.shape
