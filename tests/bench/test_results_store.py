"""Result rows: NaN and infinite metrics in the tables, a partial last row, the bar's strength."""

from __future__ import annotations

import json
import math

import pytest

from benchlib.report import summarise, table_at_strength
from benchlib.results import RowStore

from .conftest import _load_script


def _row(model: str, seed: int, nll: float | None, eps: float = 1.0) -> dict:
    return {"model": model, "attack": "PGD", "eps": eps, "seed": seed, "nll": nll}


def test_a_nan_seed_shows_in_its_cell_and_is_never_bold():
    # MIX's second seed diverged (NaN, stored as null): the mean used to be taken over the
    # two other seeds, silently
    rows = [_row("MIX", 0, 0.5), _row("MIX", 1, None), _row("MIX", 2, 0.7)]
    rows += [_row("BL", s, v) for s, v in enumerate((2.0, 2.2, 2.4))]
    mean, std, n = summarise(rows, "nll")[("MIX", "PGD", 1.0)]
    assert math.isnan(mean) and math.isnan(std) and n == 3
    table = table_at_strength(
        rows, metric="nll", eps=1.0, models=["BL", "MIX"], attacks=["PGD"], best="min"
    )
    assert "| BL | **2.20 (0.20)** |" in table and "| MIX | nan (nan) |" in table


def test_stored_infinities_are_infinite_and_missing_metrics_are_skipped():
    rows = [_row("BL", 0, 1e308), _row("BL", 1, 3.0), {**_row("AT", 0, 1.0), "nll": 1.0}]
    rows.append({"model": "AT", "attack": "PGD", "eps": 1.0, "seed": 1})  # no nll at all
    summary = summarise(rows, "nll")
    assert summary[("BL", "PGD", 1.0)][0] == math.inf
    assert summary[("AT", "PGD", 1.0)] == (1.0, 0.0, 1)


def test_a_partial_last_row_is_dropped_and_the_run_resumes(tmp_path):
    path = tmp_path / "rows.jsonl"
    good = [_row("BL", 0, 1.0), _row("BL", 1, 2.0)]
    path.write_text("".join(json.dumps(r) + "\n" for r in good) + '{"model": "BL", "att')
    with pytest.warns(UserWarning, match="partial last row"):
        store = RowStore(path)
    assert len(store) == 2
    store.add(_row("BL", 2, 3.0))
    assert len(RowStore(path)) == 3  # the new row starts on a line of its own


def test_a_corrupt_row_before_the_last_is_an_error(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text("not json\n" + json.dumps(_row("BL", 0, 1.0)) + "\n")
    with pytest.raises(ValueError, match="row 1 is not JSON"):
        RowStore(path)


def test_the_bar_strength_does_not_depend_on_the_grid_order():
    mnist = _load_script("mnist")
    rows = [
        {"model": "BL", "attack": "PGD", "eps": e, "seed": 0, "accuracy": a}
        for e, a in ((1.0, 0.05), (2.0, 0.02), (3.0, 0.0), (0.5, 0.4))
    ]
    assert mnist.bar_strength(rows, (1.0, 2.0, 3.0)) == 1.0
    assert mnist.bar_strength(rows, (3.0, 2.0, 1.0, 0.5)) == 1.0
    assert mnist.bar_strength(rows, (0.5,)) is None
