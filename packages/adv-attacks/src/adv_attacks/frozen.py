"""Leaving a model's parameters out of autograd while it is attacked."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

__all__ = ["frozen_parameters"]


@contextmanager
def frozen_parameters(model: object) -> Iterator[None]:
    """Turn ``requires_grad`` off for every parameter of ``model``; restore it on exit.

    An attack differentiates with respect to the input only; with the parameters out of
    autograd the backward pass skips their gradients and the forward saves fewer tensors
    (measured in ``bench/perf.py``, section ``attacks``). The previous flags are restored
    even if the body raises; parameters' ``.grad`` are never touched. Anything that is not
    an ``nn.Module`` (a plain function) is left alone.

    Args:
        model: The predictive; only ``nn.Module`` instances are affected.

    Examples:
        >>> net = nn.Linear(3, 2)
        >>> with frozen_parameters(net):
        ...     net.weight.requires_grad
        False
        >>> net.weight.requires_grad
        True
    """
    if not isinstance(model, nn.Module):
        yield
        return
    frozen = [p for p in model.parameters() if p.requires_grad]
    try:
        for p in frozen:
            p.requires_grad_(False)
        yield
    finally:
        for p in frozen:
            p.requires_grad_(True)
