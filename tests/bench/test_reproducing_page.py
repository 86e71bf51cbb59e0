"""Every command on the 'Reproducing the paper' page is accepted by its script's parser."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from .conftest import _load_script

PAGE = Path(__file__).resolve().parents[2] / "docs" / "reproducing.md"

COMMANDS = re.findall(r"^uv run bench/(\w+)\.py(.*?)(?:\s+#.*)?$", PAGE.read_text(), re.M)


def test_the_page_shows_each_script():
    scripts = {p.stem for p in (PAGE.parents[1] / "bench").glob("*.py")}
    assert {"mnist", "regression", "perf"} <= scripts
    assert {name for name, _ in COMMANDS} == scripts


def test_the_page_lists_every_table_and_figure_of_the_paper():
    section = PAGE.read_text().split("Every table and figure")[1].split("Figures 1 and 2")[0]
    found: dict[str, set[int]] = {"Table": set(), "Figure": set()}
    for kind, numbers in re.findall(r"(Table|Figure)s? ([\d, ]+)", section):
        found[kind] |= {int(n) for n in re.findall(r"\d+", numbers)}
    assert found == {"Table": set(range(1, 11)), "Figure": set(range(3, 10))}


@pytest.mark.parametrize(("script", "args"), COMMANDS, ids=[" ".join(c) for c in COMMANDS])
def test_command_parses(script, args):
    module = _load_script(script)
    if script == "publish":
        return  # no parse_args: its options are --run, --results, --docs
    ns = module.parse_args(shlex.split(args))
    if script == "mnist" and ns.set:
        module._override(module.PROFILES[ns.profile], ns.set)  # the settings exist
