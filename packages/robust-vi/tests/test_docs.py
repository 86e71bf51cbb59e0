"""The examples in the docstrings run and print what they claim.

Examples may use these names without defining them: ``torch``, ``mnist_cnn``,
``PosteriorPredictive``, ``read_output``, ``model`` (a Bayesian MNIST CNN), ``net`` (its
deterministic twin), ``x``/``y`` (eight MNIST-shaped images and labels), ``channel`` (MIX).
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest
import torch

import robust_vi
from adv_attacks import read_output
from adv_channels import mix_channel
from bnn_core import PosteriorPredictive, mnist_cnn

MODULES = [
    m.name
    for m in pkgutil.iter_modules(robust_vi.__path__, prefix="robust_vi.")
    if not m.name.rsplit(".", 1)[-1].startswith("_")
]


def _globs() -> dict[str, object]:
    g = torch.Generator().manual_seed(0)
    return {
        "torch": torch,
        "mnist_cnn": mnist_cnn,
        "PosteriorPredictive": PosteriorPredictive,
        "read_output": read_output,
        "model": mnist_cnn(),
        "net": mnist_cnn(bayesian=False),
        "x": torch.rand(8, 1, 28, 28, generator=g),
        "y": torch.randint(0, 10, (8,), generator=g),
        "channel": mix_channel(eps=2.0, sigma=0.2),
    }


@pytest.mark.parametrize("name", ["robust_vi", *MODULES])
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, extraglobs=_globs(), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_public_names_are_exported():
    for name in robust_vi.__all__:
        assert hasattr(robust_vi, name), name
