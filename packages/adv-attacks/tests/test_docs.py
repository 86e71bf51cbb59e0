"""The examples in the docstrings run and print what they claim."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import adv_attacks

MODULES = [
    m.name
    for m in pkgutil.iter_modules(adv_attacks.__path__, prefix="adv_attacks.")
    if not m.name.rsplit(".", 1)[-1].startswith("_")
]


@pytest.mark.parametrize("name", ["adv_attacks", *MODULES])
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
