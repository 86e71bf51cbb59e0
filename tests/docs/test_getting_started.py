"""The getting-started guide's code runs as written (its blocks continue one another)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "getting-started.md"


def test_getting_started_runs(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("mlxtend")
    blocks = re.findall(r"```python\n(.*?)```", GUIDE.read_text(encoding="utf-8"), re.DOTALL)
    assert len(blocks) >= 5
    namespace: dict[str, object] = {}
    for i, block in enumerate(blocks):
        exec(compile(block, f"{GUIDE}:block{i}", "exec"), namespace)  # noqa: S102
    out = capsys.readouterr().out
    assert "BL" in out and "MIX" in out
    certificate = namespace["certificate"]
    assert certificate.label.shape == (4,)
