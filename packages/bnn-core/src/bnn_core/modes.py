"""Selecting how Bayesian layers sample: per model, permanently or within a ``with`` block."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

from bnn_core._checks import as_enum, check_module
from bnn_core.enums import SampleMode
from bnn_core.layers.base import bayesian_modules

__all__ = ["get_sample_modes", "sample_mode", "set_sample_mode"]


def set_sample_mode(model: nn.Module, mode: SampleMode | str) -> nn.Module:
    """Set the sampling mode of every Bayesian layer in ``model`` (in place).

    A model without Bayesian layers is left as it is (it is its own posterior mean).

    Args:
        model: Any module.
        mode: ``"sample"``, ``"local"`` or ``"mean"`` (see :class:`bnn_core.SampleMode`).

    Returns:
        ``model``, for chaining.

    Examples:
        >>> model = set_sample_mode(mnist_cnn(), "mean")  # a point estimate from now on
    """
    check_module(model)
    mode = as_enum(SampleMode, mode, "mode")
    for _, layer in bayesian_modules(model):
        layer.sample_mode = mode
    return model


def get_sample_modes(model: nn.Module) -> dict[str, SampleMode]:
    """The sampling mode of every Bayesian layer, keyed by the layer's qualified name."""
    check_module(model)
    return {name: layer.sample_mode for name, layer in bayesian_modules(model)}


@contextmanager
def sample_mode(model: nn.Module, mode: SampleMode | str) -> Iterator[nn.Module]:
    """Context manager: set every Bayesian layer's mode, restore each layer's on exit.

    The previous per-layer modes come back even if the block raises.

    Args:
        model: Any module.
        mode: ``"sample"``, ``"local"`` or ``"mean"``.

    Yields:
        ``model``.

    Examples:
        >>> model = mnist_cnn()
        >>> with sample_mode(model, "mean"):
        ...     logits = model(torch.rand(2, 1, 28, 28))  # deterministic
    """
    check_module(model)
    mode = as_enum(SampleMode, mode, "mode")
    layers = [layer for _, layer in bayesian_modules(model)]
    previous = [layer.sample_mode for layer in layers]
    try:
        for layer in layers:
            layer.sample_mode = mode
        yield model
    finally:
        for layer, old in zip(layers, previous, strict=True):
            layer.sample_mode = old
