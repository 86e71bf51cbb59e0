"""Tests of ``bench/benchlib/timing.py``: which repeats are summarised, and how (no real timing)."""

from __future__ import annotations

import itertools

import pytest

from benchlib import timing


def fake_clock(monkeypatch: pytest.MonkeyPatch, durations: list[float]) -> None:
    """Make ``perf_counter`` pairs (start, stop) measure the given durations in order."""
    stamps = []
    now = 0.0
    for d in durations:
        stamps += [now, now + d]
        now += d + 100.0
    it = iter(stamps)
    monkeypatch.setattr(timing.time, "perf_counter", lambda: next(it))


def test_summarise_min_and_median() -> None:
    assert timing.summarise([3.0, 1.0, 2.0, 10.0], "min") == 1.0
    assert timing.summarise([3.0, 1.0, 2.0, 10.0], "median") == 2.5
    assert timing.summarise([4.0]) == 4.0  # min by default


@pytest.mark.parametrize(("samples", "statistic"), [([1.0], "mean"), ([], "min")])
def test_summarise_rejects(samples: list[float], statistic: str) -> None:
    with pytest.raises(ValueError, match="statistic|no timing"):
        timing.summarise(samples, statistic)


def test_interleaved_round_robin_and_statistic(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    fns = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    # Rounds run a then b: a takes 5, 1, 3 and b takes 2, 8, 4 (one contended round each).
    fake_clock(monkeypatch, [5.0, 2.0, 1.0, 8.0, 3.0, 4.0])
    got = timing.interleaved_times(fns, repeats=3, warmup=2, statistic="min")
    assert got == {"a": 1.0, "b": 2.0}
    assert calls == ["a", "a", "b", "b"] + ["a", "b"] * 3  # warm-up, then round-robin
    fake_clock(monkeypatch, [5.0, 2.0, 1.0, 8.0, 3.0, 4.0])
    got = timing.interleaved_times(fns, repeats=3, warmup=0, statistic="median")
    assert got == {"a": 3.0, "b": 4.0}


def test_interleaved_rejects_unknown_statistic() -> None:
    counter = itertools.count()
    with pytest.raises(ValueError, match="statistic must be one of"):
        timing.interleaved_times({"a": lambda: next(counter)}, statistic="p90")
    assert next(counter) == 0  # rejected before running anything
