"""Options of the named channels (``str`` enums that also accept plain strings)."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Task"]


class Task(StrEnum):
    """The prediction task a named channel is built for."""

    CLASSIFICATION = "classification"
    """Class scores ``(B, C)``; images in ``[0, 1]`` by default."""
    REGRESSION = "regression"
    """A Gaussian ``(mean, var)``; unbounded (standardised) inputs by default."""
