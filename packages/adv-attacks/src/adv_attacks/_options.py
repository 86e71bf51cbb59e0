"""Coercion of user options (plain strings or ``str`` enums) to enum members."""

from __future__ import annotations

from enum import StrEnum
from typing import TypeVar

E = TypeVar("E", bound=StrEnum)


def coerce_option(enum_cls: type[E], value: object, name: str) -> E:
    """Return ``value`` as a member of ``enum_cls``, accepting members and their string values.

    Raises:
        ValueError: If ``value`` names no member; the message lists the valid choices.
    """
    if isinstance(value, enum_cls):
        return value
    try:
        return enum_cls(value)
    except ValueError:
        choices = ", ".join(repr(m.value) for m in enum_cls)
        raise ValueError(f"{name} must be one of {choices}; got {value!r}") from None
