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
    w = torch.randn(4, 5, generator=torch.Generator().manual_seed(0))

    def predictive(x):  # images (B, 1, 2, 2), 5 classes (APGD-T of AA needs at least 4)
        return torch.log_softmax(x.flatten(1) @ w, -1)

    x = torch.full((5, 1, 2, 2), 0.5)
    y = torch.zeros(5, dtype=torch.long)
    settings = AttackSettings(steps=5, aa_steps=5, aa_targets=2, aa_queries=20, aa_eot=1)
    g = torch.Generator().manual_seed(1)
    for name in ATTACK_FUNCTIONS:
        x_adv = attack(predictive, x, y, name, 0.3, settings, generator=g)
        assert (x_adv - x).flatten(1).norm(dim=1).max() <= 0.3 + 1e-5  # in its L2 ball

    # ENT- lowers the entropy that ENT raises
    def entropy(z):
        lp = predictive(z)
        return -(lp.exp() * lp).sum(-1).mean()

    low = attack(predictive, x, y, "ENT-", 0.3, settings, generator=g)
    high = attack(predictive, x, y, "ENT", 0.3, settings, generator=g)
    assert entropy(low) < entropy(x) < entropy(high)
    with pytest.raises(ValueError, match="XYZ"):
        attack(predictive, x, y, "XYZ", 0.3, settings)


def test_train_or_load_runs_callbacks_seeds_the_build_and_reloads_any_module(tmp_path):
    import dataclasses
    import json

    import torch
    from torch import nn

    from adv_channels import IdentityChannel
    from benchlib.experiment import RunDirectory, TrainSpec, train_or_load
    from robust_vi import AdversarialTraining

    def build():  # no bnn_core builder: saved without an architecture configuration
        return nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.1), nn.Linear(8, 3))

    seen = []

    def callback(trainer, record):
        seen.append(record["epoch"])
        record["cb"] = 1.0

    spec = TrainSpec(
        name="m", build=build, recipe=AdversarialTraining(), channel=IdentityChannel(),
        epochs=2, lr=1e-2, lr_decay=1.0, batch_size=8, seed=0, init_seed=7,
    )  # fmt: skip
    g = torch.Generator().manual_seed(0)
    data = (torch.rand(16, 4, generator=g), torch.randint(0, 3, (16,), generator=g))
    run, cpu = RunDirectory(tmp_path / "a"), torch.device("cpu")
    torch.manual_seed(123)  # the global state must not matter: init_seed decides
    model, meta = train_or_load(spec, data, run, cpu, progress=False, callbacks=[callback])
    assert len(seen) == 2 and all(h["cb"] == 1.0 for h in meta["history"])
    torch.manual_seed(456)
    other, _ = train_or_load(dataclasses.replace(spec, name="n"), data, run, cpu, progress=False)
    for a, b in zip(model.state_dict().values(), other.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)  # same init seed and data: the same network
    stamp = (run.models / "m.pt").stat().st_mtime_ns
    seen.clear()
    again, meta2 = train_or_load(spec, data, run, cpu, callbacks=[callback])
    assert seen == [] and (run.models / "m.pt").stat().st_mtime_ns == stamp  # not retrained
    assert meta2 == json.loads((run.models / "m.json").read_text())
    for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)  # loaded into a fresh build
    assert not again.training


def _args(tmp_path, run):
    return argparse.Namespace(
        device="cpu", threads=None, allocator="default", out=tmp_path, run=run, fresh=False,
        no_progress=True,
    )  # fmt: skip


def test_session_finished_reads_only_finished_models(tmp_path):
    run_dir = tmp_path / "r"
    s = Session.start(_args(tmp_path, "r"), P("quick", 1, (1.0,)), guarded=())
    assert s.finished("m") is None
    s.run.models.mkdir(parents=True)
    (s.run.models / "m.json").write_text('{"history": [], "train_time_s": 1.0}')
    assert s.finished("m") is None  # no weights yet
    (s.run.models / "m.pt").write_bytes(b"")
    assert s.finished("m") == {"history": [], "train_time_s": 1.0} == s.train_meta["m"]
    assert run_dir.exists()


def test_training_and_attack_settings_read_the_profile():
    from benchlib.evaluate import attack_settings
    from benchlib.experiment import training_settings

    @dataclass(frozen=True)
    class Q:
        epochs: int = 3
        lr: float = 0.1
        lr_decay: float = 0.9
        batch_size: int = 4
        seed: int = 5
        attack_steps: int = 7
        aa_steps: int = 2

    assert training_settings(Q()) == dict(epochs=3, lr=0.1, lr_decay=0.9, batch_size=4, seed=5)
    s = attack_settings(Q(), clamp=None)
    assert (s.steps, s.aa_steps, s.aa_queries, s.clamp) == (7, 2, AttackSettings.aa_queries, None)
