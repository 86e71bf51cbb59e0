"""Options: str enums that also accept plain strings, with clear errors."""

from __future__ import annotations

import pytest

from adv_reactive.options import AggregationMode, Backend, coerce_option


@pytest.mark.parametrize(
    ("enum_cls", "value", "member"),
    [
        (AggregationMode, "online", AggregationMode.ONLINE),
        (AggregationMode, AggregationMode.OFFLINE, AggregationMode.OFFLINE),
        (Backend, "triton", Backend.TRITON),
        (Backend, Backend.AUTO, Backend.AUTO),
    ],
)
def test_coerce_accepts_members_and_strings(enum_cls: type, value: object, member: object) -> None:
    assert coerce_option(enum_cls, value, "x") is member
    assert member == str(member.value)  # type: ignore[attr-defined]


def test_coerce_names_the_argument_and_the_choices() -> None:
    with pytest.raises(ValueError, match=r"mode must be one of 'online', 'offline'; got 'eq4'"):
        coerce_option(AggregationMode, "eq4", "mode")
