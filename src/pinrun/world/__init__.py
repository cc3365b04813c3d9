"""The outside world: the one place pinrun reads the clock and fresh entropy.

The engine and the replay verifier never import a clock, randomness or network
module (a test enforces it); they receive a :class:`World` and record what it
answered. Tests pass a fixed world to make recording itself deterministic.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import uuid
from typing import Protocol

__all__ = ["SystemWorld", "World", "make_random", "make_uuid4"]


class World(Protocol):
    """Where fresh answers come from while recording."""

    def now(self) -> dt.datetime:
        """The current time, timezone-aware."""
        ...

    def entropy(self, size: int) -> bytes:
        """``size`` fresh random bytes."""
        ...


class SystemWorld:
    """The real world: the system clock (UTC) and the operating system's entropy."""

    def now(self) -> dt.datetime:
        """The current UTC time."""
        return dt.datetime.now(dt.UTC)

    def entropy(self, size: int) -> bytes:
        """Bytes from ``os.urandom``."""
        return os.urandom(size)


def make_random(seed: int) -> random.Random:
    """A pseudo-random generator from a recorded seed: the same seed, the same sequence."""
    return random.Random(seed)


def make_uuid4(raw: bytes) -> uuid.UUID:
    """A version-4 UUID from 16 recorded bytes."""
    return uuid.UUID(bytes=raw[:16], version=4)
