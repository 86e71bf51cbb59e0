"""``bench/publish.py`` copies runs into docs/results, and copes with none."""

from __future__ import annotations

import json

from .conftest import _load_script


def test_publishes_existing_runs_and_lists_missing_ones(tmp_path):
    publish = _load_script("publish")
    run = tmp_path / "results" / "bounds" / "quick"
    run.mkdir(parents=True)
    (run / "tables.md").write_text("# Bounds\n\n## Table 5\n\n| K |\n|---|\n| 1 |\n")
    (run / "paper_vs_ours.md").write_text("# Paper\n")
    (run / "table5_bounds.png").write_bytes(b"\x89PNG")
    (run / "results.json").write_text(json.dumps({"provenance": {"git": "abc123"}}))
    docs = tmp_path / "docs"
    (docs / "results").mkdir(parents=True)
    (docs / "results" / "stale.md").write_text("old")  # replaced, not kept
    found = publish.publish(tmp_path / "results", docs, "quick")
    assert found["bounds"] == run and found["mnist"] is None
    page = (docs / "results" / "bounds.md").read_text()
    assert "## Bounds" in page and "### Table 5" in page  # headings demoted under the title
    assert "![table5_bounds](bounds/table5_bounds.png)" in page
    assert (docs / "results" / "bounds" / "table5_bounds.png").exists()
    index = (docs / "results" / "index.md").read_text()
    assert "[bounds](bounds.md)" in index and "abc123" in index
    assert "not run yet: `uv run bench/mnist.py`" in index
    assert not (docs / "results" / "stale.md").exists()


def test_a_script_with_its_own_tables_file(tmp_path):
    # the channels study writes pareto.md, not tables.md
    publish = _load_script("publish")
    run = tmp_path / "results" / "channels" / "quick"
    run.mkdir(parents=True)
    (run / "pareto.md").write_text("# Channels study\n\n| Recipe |\n|---|\n| AMO |\n")
    config = {"config": {"attacks": ["PGD", "AA"]}, "provenance": {"git": "abc"}}
    (run / "results.json").write_text(json.dumps(config))
    found = publish.publish(tmp_path / "results", tmp_path / "docs", "quick")
    assert found["channels"] == run
    page = (tmp_path / "docs" / "results" / "channels.md").read_text()
    assert "## Channels study" in page
    assert "`uv run bench/channels.py --profile quick --attacks PGD AA`" in page


def test_no_results_still_writes_an_index_without_links(tmp_path):
    publish = _load_script("publish")
    publish.publish(tmp_path / "results", tmp_path / "docs", "quick")
    index = (tmp_path / "docs" / "results" / "index.md").read_text()
    assert "](" not in index.split("| script |")[1]  # no link to a page that does not exist
