"""A bounded map of what a process read once: pinned flows, sources, event lists.

A digest names one content forever, so what was read (and checked) under it
may be kept for the process instead of read again at every replay. Each
such cache is a :class:`Kept`: it holds at most ``most`` entries, dropping
the oldest when full, and tolerates several threads (replays run from
threads, ``record_async``, Dask thread workers): two of them evicting at
once, or one reading while another evicts, never raises.
"""

from __future__ import annotations

from contextlib import suppress
from typing import Generic, TypeVar

__all__ = ["Kept"]

K = TypeVar("K")
V = TypeVar("V")


class Kept(Generic[K, V]):
    """At most ``most`` entries, the oldest dropped first; safe from several threads."""

    def __init__(self, most: int) -> None:
        self._items: dict[K, V] = {}
        self._most = most

    def get(self, key: K) -> V | None:
        """The value kept under ``key``, or None (one look: nothing to race with)."""
        return self._items.get(key)

    def put(self, key: K, value: V) -> V:
        """Keep ``value`` under ``key`` (dropping the oldest entry when full); returns it."""
        items = self._items
        while len(items) >= self._most:
            # Another thread may drop the same entry, or change the map, meanwhile:
            # then look again (the bound holds but for the puts under way).
            with suppress(KeyError, RuntimeError, StopIteration):
                del items[next(iter(items))]
        items[key] = value
        return value

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        """Forget everything kept."""
        self._items.clear()
