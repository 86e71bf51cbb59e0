"""Shared helpers for bnn_core's tests (as fixtures: test modules do not import each other).

``layer_case`` parametrises a test over a list of layer configurations; ``twin`` builds
the deterministic reference of a layer; ``make_mlp``/``mlp`` give a tiny Bayesian MLP.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bnn_core import BayesConv2d, BayesianModule, BayesLinear


@dataclass(frozen=True)
class LayerCase:
    """A Bayesian layer factory, the input shape it takes, and its deterministic twin."""

    build: Callable[..., BayesianModule]
    input_shape: tuple[int, ...]

    def layer(self, dtype: torch.dtype = torch.float64, **kwargs: object) -> BayesianModule:
        return self.build(dtype=dtype, **kwargs)

    def input(self, dtype: torch.dtype = torch.float64, batch: int = 3) -> torch.Tensor:
        return torch.randn(batch, *self.input_shape, dtype=dtype)


LAYER_CASES = [
    pytest.param(LayerCase(lambda **kw: BayesLinear(5, 3, **kw), (5,)), id="linear"),
    pytest.param(
        LayerCase(lambda **kw: BayesLinear(4, 2, bias=False, **kw), (4,)), id="linear-nobias"
    ),
    pytest.param(
        LayerCase(lambda **kw: BayesConv2d(2, 3, 3, padding=1, **kw), (2, 5, 6)), id="conv"
    ),
    pytest.param(
        LayerCase(
            lambda **kw: BayesConv2d(4, 2, (3, 2), stride=2, groups=2, bias=False, **kw),
            (4, 7, 6),
        ),
        id="conv-strided-grouped-nobias",
    ),
    pytest.param(
        LayerCase(
            lambda **kw: BayesConv2d(2, 2, 3, padding=1, padding_mode="reflect", **kw), (2, 5, 5)
        ),
        id="conv-reflect",
    ),
    pytest.param(
        LayerCase(lambda **kw: BayesConv2d(1, 2, 3, padding="same", dilation=2, **kw), (1, 6, 7)),
        id="conv-same-dilated",
    ),
]


def deterministic_twin(
    layer: BayesianModule, weight: torch.Tensor | None = None, bias: torch.Tensor | None = None
) -> Callable[[torch.Tensor], torch.Tensor]:
    """The layer's operation written with torch.nn.functional only, for given weights.

    An independent reference: it does not call ``layer.linear_op``.
    """
    weight = layer.weight_mu if weight is None else weight
    bias = layer.bias_mu if bias is None else bias
    if isinstance(layer, BayesLinear):
        return lambda x: F.linear(x, weight, bias)
    assert isinstance(layer, BayesConv2d)
    conv = nn.Conv2d(
        layer.in_channels,
        layer.out_channels,
        layer.kernel_size,
        stride=layer.stride,
        padding=layer.padding,
        dilation=layer.dilation,
        groups=layer.groups,
        bias=layer.bias_mu is not None,
        padding_mode=layer.padding_mode,
        dtype=weight.dtype,
    )

    def run(x: torch.Tensor) -> torch.Tensor:
        return conv._conv_forward(x, weight, bias)

    return run


def tiny_mlp(dtype: torch.dtype = torch.float64, init_sigma: float = 0.3) -> nn.Sequential:
    """A two-layer Bayesian MLP (4 → 6 → 3) with a visible posterior spread."""
    return nn.Sequential(
        BayesLinear(4, 6, init_sigma=init_sigma, dtype=dtype),
        nn.Tanh(),
        BayesLinear(6, 3, init_sigma=init_sigma, dtype=dtype),
    )


@pytest.fixture
def mlp() -> nn.Sequential:
    return tiny_mlp()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # Any test taking a ``layer_case`` argument runs once per entry of LAYER_CASES.
    if "layer_case" in metafunc.fixturenames:
        metafunc.parametrize("layer_case", LAYER_CASES)


@pytest.fixture
def twin() -> Callable[..., Callable[[torch.Tensor], torch.Tensor]]:
    return deterministic_twin


@pytest.fixture
def make_mlp() -> Callable[..., nn.Sequential]:
    return tiny_mlp
