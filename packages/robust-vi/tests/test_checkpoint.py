"""Atomic checkpoint files."""

from __future__ import annotations

import os
import stat

import pytest
import torch

from robust_vi import CHECKPOINT_NAME, load_checkpoint, save_checkpoint


def test_round_trip_and_missing(tmp_path):
    assert load_checkpoint(tmp_path) is None
    gen = torch.Generator().manual_seed(3)
    state = {"epoch": 2, "w": torch.arange(4.0), "gen": gen.get_state(), "history": [{"a": 1.0}]}
    path = save_checkpoint(state, tmp_path / "run")
    assert path.name == CHECKPOINT_NAME
    back = load_checkpoint(tmp_path / "run")
    assert back["epoch"] == 2 and back["history"] == [{"a": 1.0}]
    assert torch.equal(back["w"], state["w"]) and torch.equal(back["gen"], state["gen"])
    save_checkpoint({"epoch": 3}, tmp_path / "run")  # overwrites, leaves no temporary file
    assert [p.name for p in (tmp_path / "run").iterdir()] == [CHECKPOINT_NAME]


def test_a_failed_write_keeps_the_old_checkpoint(tmp_path):
    save_checkpoint({"epoch": 1}, tmp_path)
    with pytest.raises(Exception):  # noqa: B017 - whatever pickling raises
        save_checkpoint({"epoch": 2, "bad": lambda: None}, tmp_path)
    assert load_checkpoint(tmp_path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT_NAME]


def test_not_a_checkpoint(tmp_path):
    torch.save([1, 2], tmp_path / CHECKPOINT_NAME)
    with pytest.raises(ValueError, match="checkpoint"):
        load_checkpoint(tmp_path)


def test_a_killed_saves_leftover_is_removed_and_modes_follow_the_umask(tmp_path):
    (tmp_path / ".checkpoint-123-dead.tmp").write_bytes(b"half a checkpoint")  # a kill -9
    path = save_checkpoint({"epoch": 1}, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT_NAME]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0o600


def test_the_file_is_synced_before_the_rename(tmp_path, monkeypatch):
    calls = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(
        os, "replace", lambda a, b: (calls.append("replace"), real_replace(a, b))[1]
    )
    save_checkpoint({"epoch": 1}, tmp_path)
    assert calls[:2] == ["fsync", "replace"] and calls.count("fsync") >= 1
