"""The bounded map of what a process read once (artifacts.kept)."""

from __future__ import annotations

from pinrun.artifacts.kept import Kept
from tests.helpers import race


def test_the_oldest_entry_goes_first_and_the_bound_holds() -> None:
    """Full: putting a new key drops the oldest one, never more than ``most`` are kept."""
    kept: Kept[str, int] = Kept(3)
    for n, key in enumerate("abcd"):
        assert kept.put(key, n) == n
    assert len(kept) == 3
    assert kept.get("a") is None
    assert [kept.get(key) for key in "bcd"] == [1, 2, 3]


def test_threads_filling_it_at_once_never_raise() -> None:
    """Eight threads putting and getting past the bound: no KeyError, no RuntimeError."""
    kept: Kept[int, int] = Kept(16)
    errors: list[BaseException] = []

    def work(offset: int) -> None:
        try:
            for n in range(5000):
                kept.put(offset * 10_000 + n, n)
                kept.get(offset * 10_000 + n - 1)
        except BaseException as exc:
            errors.append(exc)

    race(work, 8)
    assert errors == []
    assert len(kept) <= 16 + 8  # each thread may add its key as another drops one
