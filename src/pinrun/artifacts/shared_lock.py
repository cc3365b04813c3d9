"""A lock with a shared side, taken around every store transaction, and an exclusive
side, taken to resize the LMDB map (which must have no transaction open in the
process).

The shared side is taken and left several times a replay and a record, so it
is made of operations the interpreter does at once (appending to and removing
from a list), not of a mutex: ~1k instructions a hold, against ~8k for a mutex,
a condition and a thread-local count (~2 % of a replay). The exclusive side,
taken only when the map grows, waits with a mutex and a condition.

How they meet: a reader appends its thread's id to :attr:`SharedExclusiveLock.readers`,
then looks at ``exclusive``. A resizer sets ``exclusive`` and waits, under the
mutex, until ``readers`` is empty. So either the reader saw ``exclusive`` set
(it takes its id back out, wakes the resizer, and waits for the resize to end),
or the resizer sees the reader's id (and waits for it to leave). A reader
leaving while a resizer waits wakes it under the mutex, which the resizer holds
from its look at ``readers`` until it waits: no wake-up is lost.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["SharedExclusiveLock"]


class SharedExclusiveLock:
    """Many holders of the shared side at once (a thread may hold it several times), or
    one of the exclusive side."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        #: The id of each thread holding the shared side, once per hold.
        self.readers: list[int] = []
        #: Set while a resizer holds the exclusive side, or waits for the readers to leave.
        self.exclusive = False
        #: Resizers waiting for the readers to leave (the last one wakes them).
        self._waiting = 0

    def acquire_shared(self) -> None:
        """Hold the shared side (waiting while a resize is under way)."""
        ident = threading.get_ident()
        readers = self.readers
        readers.append(ident)
        if self.exclusive:  # a resize holds, or waits: step aside until it ends
            readers.remove(ident)
            self._after_resize(ident)

    def _after_resize(self, ident: int) -> None:
        """Wake the resizer (it may have seen ``ident``), wait for its end, then hold."""
        with self._cond:
            self._cond.notify_all()
            while self.exclusive:
                self._cond.wait()
            self.readers.append(ident)

    def release_shared(self) -> None:
        """Leave the shared side (once per :meth:`acquire_shared` of this thread)."""
        self.readers.remove(threading.get_ident())
        if self._waiting:
            with self._cond:
                self._cond.notify_all()

    def held_by_this_thread(self) -> bool:
        """True while this thread holds the shared side (so it must not wait to resize)."""
        return threading.get_ident() in self.readers

    @contextmanager
    def exclusive_side(self) -> Iterator[None]:
        """Hold the exclusive side for the block: no shared holder meanwhile."""
        with self._cond:
            while self.exclusive:  # another resize
                self._cond.wait()
            self.exclusive = True
            self._waiting += 1
            try:
                while self.readers:
                    self._cond.wait()
            except BaseException:
                self.exclusive = False
                self._cond.notify_all()
                raise
            finally:
                self._waiting -= 1
        try:
            yield
        finally:
            with self._cond:
                self.exclusive = False
                self._cond.notify_all()
