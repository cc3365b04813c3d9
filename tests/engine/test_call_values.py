"""How an effect's arguments are kept and shown: bounded, and calling nothing they define."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import uuid

from pinrun.engine.call_values import call_difference, call_problem, describe_call, preview


class Colour(enum.Enum):
    """An enum, shown by member name."""

    RED = 1


@dataclasses.dataclass
class Order:
    """A dataclass, shown by its fields."""

    id: str
    total: decimal.Decimal


class Loud:
    """An object whose repr must never run."""

    def __repr__(self) -> str:
        raise AssertionError("preview called __repr__")


def test_values_read_as_python() -> None:
    """Datetimes, Decimals, UUIDs, enums and dataclasses read as a Python user writes them."""
    when = dt.datetime(2026, 12, 6, 8, 0, tzinfo=dt.UTC)
    ticket = uuid.UUID(int=7)
    shown = preview([when, decimal.Decimal("1.10"), ticket, Colour.RED,
                     Order("A1", decimal.Decimal("2"))], limit=400)
    assert shown == ("[datetime.datetime(2026, 12, 6, 8, 0, tzinfo=datetime.timezone.utc), "
                     "Decimal('1.10'), UUID('00000000-0000-0000-0000-000000000007'), "
                     "Colour.RED, Order(id='A1', total=Decimal('2'))]")


def test_nothing_the_value_defines_is_called() -> None:
    """An unknown object shows as its type; its own __repr__ never runs."""
    assert preview({"x": Loud()}) == "{'x': <Loud>}"


def test_previews_are_bounded() -> None:
    """Long strings, long lists and deep nesting are cut, with the cut said."""
    assert len(preview("a" * 10_000, limit=50)) == 50
    assert preview(list(range(20))) == "[0, 1, 2, 3, 4, 5, 6, 7, ... 12 more]"
    deep: list[object] = []
    for _ in range(50):
        deep = [deep]
    assert "..." in preview(deep)
    assert preview(2 ** 5000) == "<int of 5001 bits>"


def test_a_call_reads_as_code() -> None:
    """A kept call renders as name(args, key=value); a large one by preview and size;
    an older record's by its digest."""
    assert describe_call("fetch", {"args": ["EUR"], "kwargs": {"day": 3}}) == \
        "fetch('EUR', day=3)"
    assert describe_call("put", {"preview": "[['zz", "size": 70_000}) == \
        "put(<arguments of 70,000 bytes, kept as a preview: [['zz>)"
    assert describe_call("old", None, "ab12") == "old(<arguments not recorded; digest ab12>)"
    assert describe_call("evil\x1b[2J", None) == \
        "evil\\x1b[2J(<arguments not recorded; no digest>)"


def test_kept_calls_are_checked() -> None:
    """A record's call is one of the two known forms, or a problem is named."""
    assert call_problem(None) is None
    assert call_problem({"args": [1], "kwargs": {}}) is None
    assert call_problem({"preview": "x", "size": 3}) is None
    assert call_problem([1]) is not None
    assert call_problem({"args": [1]}) is not None
    assert call_problem({"args": [], "kwargs": {1: 2}}) is not None
    assert call_problem({"preview": "x", "size": -1}) is not None


def test_call_difference_names_each_argument_that_differs() -> None:
    """Positional and keyword arguments that differ are named with both values; equal
    calls differ in nothing; a call kept as a preview cannot be compared."""
    recorded = {"args": ["EUR", 3, {"a": 1}], "kwargs": {"day": 3, "fast": True}}
    asked = {"args": ["USD", 3, {"a": 1}], "kwargs": {"day": 4, "slow": True}}
    assert call_difference(asked, recorded) == [
        "argument 1: 'EUR' -> 'USD'", "day: 3 -> 4", "fast: True -> (absent)",
        "slow: (absent) -> True"]
    assert call_difference(recorded, recorded) == []
    assert call_difference({"args": [1, 2], "kwargs": {}}, {"args": [1], "kwargs": {}}) == [
        "argument 2: (absent) -> 2"]
    assert call_difference(asked, {"preview": "[...]", "size": 70000}) is None
    assert call_difference(asked, None) is None
