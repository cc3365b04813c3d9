"""Project-local helpers that the fixture steps call from another module."""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass

TAX_RATE = 0.2


def net(amount: float) -> float:
    """The amount after tax."""
    return amount * (1 - TAX_RATE)


def is_even(n: int) -> bool:
    """Mutually recursive with is_odd."""
    return True if n == 0 else is_odd(n - 1)


def is_odd(n: int) -> bool:
    """Mutually recursive with is_even."""
    return False if n == 0 else is_even(n - 1)


@functools.cache
def cached_square(x: int) -> int:
    """A helper behind a caching wrapper."""
    return x * x


class Color(enum.Enum):
    """A project enum: its members are canonical values."""

    RED = 1
    GREEN = 2


@dataclass(frozen=True)
class Money:
    """A project class with a method and a generated __init__."""

    amount: float
    currency: str

    def rounded(self) -> float:
        """The amount to cents."""
        return round(self.amount, 2)
