"""The examples in the docstrings run and print what they claim."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import adv_reactive

MODULES = [
    m.name
    for m in pkgutil.iter_modules(adv_reactive.__path__, prefix="adv_reactive.")
    if not m.name.rsplit(".", 1)[-1].startswith("_")
]


@pytest.mark.parametrize("name", ["adv_reactive", *MODULES])
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
