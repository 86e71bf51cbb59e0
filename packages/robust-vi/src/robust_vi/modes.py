"""Switching a module's train/eval flag for a block, restoring every submodule's flag after."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

__all__ = ["training_mode"]


@contextmanager
def training_mode(module: nn.Module, mode: bool) -> Iterator[nn.Module]:
    """Context manager: ``module.train(mode)`` inside, each submodule's own flag restored on exit.

    The previous flags come back even if the block raises.

    Args:
        module: Any module.
        mode: ``True`` for training mode, ``False`` for evaluation mode.

    Yields:
        ``module``.

    Examples:
        >>> net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout())
        >>> with training_mode(net, False):
        ...     net.training
        False
    """
    previous = [(m, m.training) for m in module.modules()]
    try:
        module.train(mode)
        yield module
    finally:
        for m, flag in previous:
            m.training = flag
