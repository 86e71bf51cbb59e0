"""The shared harness: profile overrides, the evaluation grid's resume, model reuse."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import pytest

from benchlib.evaluate import ATTACK_FUNCTIONS, AttackSettings, attack
from benchlib.harness import Session, apply_overrides, run_grid, select_profile
from benchlib.results import RowStore


@dataclass(frozen=True)
class P:
    name: str
    epochs: int
    eps_grid: tuple[float, ...]
    train_size: int | None = None
    flag: bool = False


def test_overrides_parse_into_the_fields_types_and_pass_others_through():
    p, rest = apply_overrides(
        P("quick", 3, (1.0,)),
        ["epochs=5", "eps_grid=3,1", "train_size=none", "flag=true", "lr=0.1"],
        optional_ints=("train_size",),
        passthrough=("lr",),
    )
    assert (p.epochs, p.eps_grid, p.train_size, p.flag) == (5, (3.0, 1.0), None, True)
    assert rest == ["lr=0.1"]
    with pytest.raises(SystemExit, match="unknown setting 'epoch'"):
        apply_overrides(p, ["epoch=1"])
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        apply_overrides(p, ["epochs"])
    with pytest.raises(SystemExit, match="epochs=x"):
        apply_overrides(p, ["epochs=x"])


def test_select_profile_sorts_and_dedupes_the_grid_and_takes_eps():
    profiles = {"quick": P("quick", 3, (2.0, 1.0, 2.0))}
    args = argparse.Namespace(profile="quick", set=[], eps=None)
    assert select_profile(profiles, args).eps_grid == (1.0, 2.0)
    args = argparse.Namespace(profile="quick", set=["epochs=1"], eps=[3.0, 0.5])
    assert select_profile(profiles, args) == P("quick", 1, (0.5, 3.0))


def test_run_grid_scores_only_missing_tasks(tmp_path):
    store = RowStore(tmp_path / "rows.jsonl")
    calls = []

    def score(task):
        calls.append(task)
        return {"accuracy": 0.5}

    tasks = [("BL", "Clean", 0.0, 0), ("BL", "PGD", 1.0, 0)]
    run_grid(tasks[:1], score, store, progress=False)
    run_grid(tasks, score, RowStore(tmp_path / "rows.jsonl"), progress=False)
    assert calls == tasks  # the first task was not scored twice
    row = RowStore(tmp_path / "rows.jsonl").rows()[1]
    assert list(row)[:5] == ["model", "attack", "eps", "seed", "accuracy"] and "time_s" in row


def test_session_reuses_only_finished_models(tmp_path):
    src = tmp_path / "src" / "models"
    src.mkdir(parents=True)
    (src / "BL.pt").write_bytes(b"x")
    (src / "BL.json").write_text("{}")
    (src / "MIX.pt").write_bytes(b"x")  # no .json: unfinished
    args = argparse.Namespace(
        device="cpu", threads=None, allocator="default", out=tmp_path, run="r", fresh=False,
        no_progress=True,
    )  # fmt: skip
    session = Session.start(args, P("quick", 1, (1.0,)), guarded=("epochs",))
    assert session.reuse_models(tmp_path / "src", ["BL", "MIX", "NN"]) == ["BL"]
    assert session.reuse_models(tmp_path / "src", ["BL"]) == []  # already here
    assert (tmp_path / "r" / "models" / "BL.json").exists()


def test_attack_registry_dispatches_and_refuses_unknown_names():
    import torch

    assert {"PGD1", "PGD", "PGD+", "ENT", "ENT-"} <= set(ATTACK_FUNCTIONS)
    w = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))

    def predictive(x):
        return torch.log_softmax(x @ w, -1)

    x = torch.full((5, 4), 0.5)
    y = torch.zeros(5, dtype=torch.long)
    settings = AttackSettings(steps=5)
    g = torch.Generator().manual_seed(1)
    for name in ATTACK_FUNCTIONS:
        x_adv = attack(predictive, x, y, name, 0.3, settings, generator=g)
        assert (x_adv - x).norm(dim=1).max() <= 0.3 + 1e-5  # stays in its L2 ball

    # ENT- lowers the entropy that ENT raises
    def entropy(z):
        lp = predictive(z)
        return -(lp.exp() * lp).sum(-1).mean()

    low = attack(predictive, x, y, "ENT-", 0.3, settings, generator=g)
    high = attack(predictive, x, y, "ENT", 0.3, settings, generator=g)
    assert entropy(low) < entropy(x) < entropy(high)
    with pytest.raises(ValueError, match="AA"):
        attack(predictive, x, y, "AA", 0.3, settings)
