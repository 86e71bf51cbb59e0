"""The README's quick start (robust_vi's Trainer and recipe) runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

README = Path(__file__).resolve().parents[2] / "README.md"


def _quick_start() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Quick start", 1)
    if len(section) < 2:
        pytest.skip("the README has no 'Quick start' section")
    match = re.search(r"```python\n(.*?)```", section[1], flags=re.DOTALL)
    assert match, "the README's quick start has no python block"
    return match.group(1)


def _run(code: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert "robust_vi" in code
    torch.manual_seed(0)
    namespace: dict[str, object] = {}
    exec(compile(code, str(README), "exec"), namespace)  # noqa: S102 - our own README
    history = namespace["history"]
    assert isinstance(history, list) and len(history) == 1
    assert {"loss", "train_accuracy"} <= set(history[0])
    printed = capsys.readouterr().out.strip()
    assert 0.0 <= float(printed.removeprefix("tensor(").removesuffix(")")) <= 1.0


def test_quick_start_runs_on_a_smaller_batch(capsys):
    """The quick start with 32 instead of 256 images (the full one is ``slow`` on a CPU)."""
    code = _quick_start()
    small = re.sub(r"\b256\b", "32", code)
    assert small != code, "the quick start no longer builds 256 stand-in images: update this test"
    _run(small, capsys)


@pytest.mark.slow
def test_quick_start_runs_as_written(capsys):
    _run(_quick_start(), capsys)
