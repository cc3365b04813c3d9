"""Module-level classes for the codec tests.

The codec stores classes as ``module:QualName`` and imports them back, so the
classes its tests encode must live at module level in an importable module.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, NamedTuple

import pydantic


class Color(enum.Enum):
    """A plain Enum with mixed value types."""

    RED = "red"
    GREEN = "green"
    BLUE = 3


class Priority(enum.IntEnum):
    """An IntEnum: equal to ints, but must come back as itself."""

    LOW = 1
    HIGH = 2


class Perm(enum.Flag):
    """A Flag: members combine into composite values such as ``R | W``."""

    R = 4
    W = 2
    X = 1


@dataclasses.dataclass(frozen=True)
class Point:
    """A frozen (hashable) dataclass."""

    x: int
    y: float


@dataclasses.dataclass
class Record:
    """A mutable dataclass holding arbitrary values."""

    name: str
    tags: list[Any]
    created: Any = None


@dataclasses.dataclass
class Counted:
    """A dataclass whose ``__post_init__`` changes state (decoding must not rerun it)."""

    count: int

    def __post_init__(self) -> None:
        self.count += 1


class Pair(NamedTuple):
    """A NamedTuple."""

    left: Any
    right: Any


class Model(pydantic.BaseModel):
    """A pydantic model holding an arbitrary payload."""

    name: str
    count: int = 0
    payload: Any = None


class ExtraModel(pydantic.BaseModel):
    """A pydantic model that keeps undeclared fields."""

    model_config = pydantic.ConfigDict(extra="allow")

    kind: str


class Opaque:
    """A class the codec knows nothing about."""


# ---------------------------------------------------------- register_type


class Temperature:
    """A user type stored through a registered codec."""

    def __init__(self, kelvin: float) -> None:
        self.kelvin = kelvin

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Temperature) and other.kelvin == self.kelvin

    def __hash__(self) -> int:
        return hash(self.kelvin)


class Money:
    """A registered base class: its subclasses are stored with its codec."""

    def __init__(self, cents: int, currency: str) -> None:
        self.cents = cents
        self.currency = currency


class Euro(Money):
    """A subclass of a registered class, never registered itself."""

    def __init__(self, cents: int) -> None:
        super().__init__(cents, "EUR")


class TokenA:
    """First class competing for a codec name."""


class TokenB:
    """Second class competing for a codec name."""
