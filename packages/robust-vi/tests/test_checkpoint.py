"""Atomic checkpoint files."""

from __future__ import annotations

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
