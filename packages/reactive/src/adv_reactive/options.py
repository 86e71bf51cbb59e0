"""Options of the reactive aggregation: normalisation mode and compute back end."""

from __future__ import annotations

from enum import StrEnum
from typing import TypeVar

__all__ = ["AggregationMode", "Backend", "coerce_option"]

E = TypeVar("E", bound=StrEnum)


class AggregationMode(StrEnum):
    """How the channel-density weights over training inputs and posterior draws are normalised.

    Eqs. 4 and 5 of the paper (Section 3.2).
    """

    ONLINE = "online"
    """Eq. 4: one softmax over all ``M·N`` (draw, training input) pairs, so each posterior draw
    is reweighted by its marginal channel likelihood ``L_m`` (a Bayesian update at test time)."""

    OFFLINE = "offline"
    """Eq. 5: one softmax over the ``N`` training inputs per draw, averaged over the ``M``
    draws (no reweighting of the draws)."""


class Backend(StrEnum):
    """Which implementation computes the streaming aggregation."""

    AUTO = "auto"
    """The fused Triton kernel where it can run (CUDA tensors with Triton importable, or
    ``TRITON_INTERPRET=1``), otherwise PyTorch."""

    TORCH = "torch"
    """Plain PyTorch, chunked over keys: any device."""

    TRITON = "triton"
    """The fused Triton kernel; an error where it cannot run."""


def coerce_option(enum_cls: type[E], value: object, name: str) -> E:
    """Return ``value`` as a member of ``enum_cls``, accepting members and their string values.

    Args:
        enum_cls: The ``StrEnum`` to coerce to.
        value: A member of ``enum_cls`` or its string value.
        name: The argument's name, for the error message.

    Returns:
        The enum member.

    Raises:
        ValueError: If ``value`` names no member; the message lists the valid choices.

    Examples:
        >>> coerce_option(AggregationMode, "online", "mode")
        <AggregationMode.ONLINE: 'online'>
    """
    if isinstance(value, enum_cls):
        return value
    try:
        return enum_cls(value)
    except ValueError:
        choices = ", ".join(repr(m.value) for m in enum_cls)
        raise ValueError(f"{name} must be one of {choices}; got {value!r}") from None
