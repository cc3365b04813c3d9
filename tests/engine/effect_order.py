"""Lets a test choose the order in which threads of a step reach ``ctx.effect``.

Lives outside the test projects, so their pinned code uses this module as a
library: the order a test sets here holds in pinned and workdir replays alike.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

_turns = threading.Condition()
_order: list[object] = []
#: How many items of the order have had their turn (a list: changed in place).
_done = [0]


def set_order(order: Sequence[object]) -> None:
    """The calls go in this order from now on (one call per item)."""
    with _turns:
        _order[:] = list(order)
        _done[0] = 0


@contextmanager
def turn(item: object) -> Iterator[None]:
    """Wait until it is ``item``'s turn; the next item's turn comes when this one ends."""
    with _turns:
        if not _turns.wait_for(lambda: _done[0] < len(_order) and _order[_done[0]] == item,
                               timeout=10):
            raise TimeoutError(f"{item!r} never got its turn in {_order}")
    try:
        yield
    finally:
        with _turns:
            _done[0] += 1
            _turns.notify_all()
