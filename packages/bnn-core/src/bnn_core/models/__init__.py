"""The paper's architectures, Bayesian or deterministic (``bayesian=False``)."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from bnn_core.models._config import FASTEST_MEMORY_FORMAT, fastest_memory_format
from bnn_core.models.cifar_cnn import cifar_cnn
from bnn_core.models.mnist_cnn import mnist_cnn
from bnn_core.models.regression_mlp import RegressionMLP, regression_mlp
from bnn_core.models.resnet18 import BasicBlock, ResNet, resnet18

__all__ = [
    "ARCHITECTURES",
    "FASTEST_MEMORY_FORMAT",
    "BasicBlock",
    "RegressionMLP",
    "ResNet",
    "cifar_cnn",
    "fastest_memory_format",
    "mnist_cnn",
    "regression_mlp",
    "resnet18",
]

ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "mnist_cnn": mnist_cnn,
    "regression_mlp": regression_mlp,
    "cifar_cnn": cifar_cnn,
    "resnet18": resnet18,
}
"""Builders by name, as recorded in a saved model's configuration."""
