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
    assert {name for name, _ in COMMANDS} == {"mnist", "regression", "perf"}


@pytest.mark.parametrize(("script", "args"), COMMANDS, ids=[" ".join(c) for c in COMMANDS])
def test_command_parses(script, args):
    module = _load_script(script)
    ns = module.parse_args(shlex.split(args))
    if script == "mnist" and ns.set:
        module._override(module.PROFILES[ns.profile], ns.set)  # the settings exist
