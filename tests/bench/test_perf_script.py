"""Tests of ``bench/perf.py``'s section isolation (no section is run: the child is faked)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from .conftest import _load_script

perf = _load_script("perf")


def fake_child(calls: list[list[str]], returncode: int = 0):
    """A stand-in for ``subprocess.run`` that writes one figure per section to ``--json``.

    Other commands (``git``, for the provenance) go to the real ``subprocess.run``.
    """
    real = subprocess.run

    def run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess:
        if "--no-isolate" not in cmd:
            return real(cmd, **kwargs)
        calls.append(cmd)
        section = cmd[cmd.index("--sections") + 1]
        figure = {"value": 1.5, "unit": "x", "goal": "<= 2", "note": section, "extra": {"a": 1}}
        out = Path(cmd[cmd.index("--json") + 1])
        out.write_text(json.dumps({"figures": {f"{section}.ratio": figure}}))
        return subprocess.CompletedProcess(cmd, returncode)

    return run


def test_each_section_runs_in_its_own_process(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr(perf.subprocess, "run", fake_child(calls))
    out = tmp_path / "perf.json"
    argv = ["--sections", "attacks", "reactive", "--quick", "--repeats", "3"]
    assert perf.main([*argv, "--statistic", "median", "--json", str(out)]) == 0
    assert [c[c.index("--sections") + 1] for c in calls] == ["attacks", "reactive"]
    for cmd in calls:  # every option reaches the child, which must not isolate again
        assert "--no-isolate" in cmd and "--quick" in cmd
        assert cmd[cmd.index("--repeats") + 1] == "3"
        assert cmd[cmd.index("--statistic") + 1] == "median"
        assert cmd[cmd.index("--allocator") + 1] == "default"
    payload = json.loads(out.read_text())
    assert payload["settings"]["isolated_sections"] is True
    assert payload["settings"]["statistic"] == "median"
    fig = payload["figures"]["reactive.ratio"]
    assert (fig["value"], fig["goal"], fig["met"], fig["extra"]) == (1.5, "<= 2", True, {"a": 1})


def test_a_failing_section_stops_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(perf.subprocess, "run", fake_child([], returncode=3))
    with pytest.raises(SystemExit, match="section 'attacks' failed"):
        perf.main(["--sections", "attacks", "reactive"])
