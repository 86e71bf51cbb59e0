"""The examples in the docstrings run and print what they claim."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import adv_channels

MODULES = [
    m.name
    for m in pkgutil.iter_modules(adv_channels.__path__, prefix="adv_channels.")
    if not m.name.rsplit(".", 1)[-1].startswith("_")
]


@pytest.mark.parametrize("name", ["adv_channels", *MODULES])
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_public_names_are_exported():
    for name in adv_channels.__all__:
        assert hasattr(adv_channels, name), name
