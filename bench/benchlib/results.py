"""Tidy result rows, stored as they are produced so that an interrupted run resumes.

Every evaluation produces one row: ``{"model", "attack", "eps", "seed", <metrics>}``. Rows
are appended to ``rows.jsonl`` in the run directory as soon as they exist; on a rerun the
rows already there are skipped. ``results.json`` is written at the end with the
configuration, provenance, wall times and every row.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

Row = dict[str, Any]
RowKey = tuple[str, str, float, int]


def row_key(model: str, attack: str, eps: float, seed: int) -> RowKey:
    """The identity of a row: which model, attack, strength and seed (test set)."""
    return (model, attack, round(float(eps), 6), int(seed))


class RowStore:
    """Append-only store of result rows backed by a JSON-lines file.

    Args:
        path: The ``rows.jsonl`` file; created on first write, read if it exists.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._rows: dict[RowKey, Row] = {}
        if path.exists():
            lines = [line for line in path.read_text().splitlines() if line.strip()]
            for i, line in enumerate(lines):
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as err:
                    if i < len(lines) - 1:
                        raise ValueError(
                            f"{path}: row {i + 1} is not JSON ({err}); delete that line or "
                            "start the run again with --fresh"
                        ) from None
                    # the process died while appending its last row: drop the partial line
                    # (the file is rewritten, so that the next row starts on a line of its own)
                    warnings.warn(
                        f"{path}: dropped a partial last row (an interrupted write)", stacklevel=2
                    )
                    path.write_text("".join(f"{kept}\n" for kept in lines[:-1]))
                    break
                self._rows[row_key(row["model"], row["attack"], row["eps"], row["seed"])] = row

    def __contains__(self, key: RowKey) -> bool:
        return key in self._rows

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[Row]:
        return iter(self._rows.values())

    def get(self, key: RowKey) -> Row | None:
        """The stored row for ``key``, if any."""
        return self._rows.get(key)

    def add(self, row: Row) -> None:
        """Store ``row`` (replacing one with the same key) and append it to the file."""
        key = row_key(row["model"], row["attack"], row["eps"], row["seed"])
        clean = {k: _jsonable(v) for k, v in row.items()}
        self._rows[key] = clean
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as fh:
            fh.write(json.dumps(clean) + "\n")

    def rows(self) -> list[Row]:
        """All rows, in insertion order."""
        return list(self._rows.values())


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else (1e308 if value > 0 else -1e308)
    if hasattr(value, "item"):
        return _jsonable(value.item())
    return value


def write_results(
    path: Path,
    *,
    config: dict[str, Any],
    provenance: dict[str, Any],
    wall_times: dict[str, float],
    rows: Iterable[Row],
    extra: dict[str, Any] | None = None,
) -> None:
    """Write ``results.json``: configuration, provenance, wall times and every row."""
    payload = {
        "config": config,
        "provenance": provenance,
        "wall_times_s": {k: round(v, 2) for k, v in wall_times.items()},
        **(extra or {}),
        "rows": list(rows),
    }
    path.write_text(json.dumps(payload, indent=2))
