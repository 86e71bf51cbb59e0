"""Mean-field Gaussian layers: the base class, the dense layer and the 2-D convolution."""

from __future__ import annotations

from bnn_core.layers.base import DEFAULT_INIT_SIGMA, BayesianModule, bayesian_modules, is_bayesian
from bnn_core.layers.conv import BayesConv2d
from bnn_core.layers.linear import BayesLinear

__all__ = [
    "DEFAULT_INIT_SIGMA",
    "BayesConv2d",
    "BayesLinear",
    "BayesianModule",
    "bayesian_modules",
    "is_bayesian",
]
