"""A stopwatch for reports (how long a replay took): the one clock the verifier reads.

``perf_counter`` is bound when this module is imported, so a stand-in the guards
put on ``time.perf_counter`` for a replayed step is never what it reads.
"""

from __future__ import annotations

from collections.abc import Callable
from time import perf_counter as _perf_counter

__all__ = ["stopwatch"]


def stopwatch() -> Callable[[], float]:
    """Start a stopwatch: the returned function gives the seconds elapsed since."""
    started = _perf_counter()
    return lambda: _perf_counter() - started
