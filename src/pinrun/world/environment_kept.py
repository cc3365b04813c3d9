"""The environment variables put back as they were after a block: a verify worker's
replay of one run, so that what its steps set never reaches the next run.

The kept-code check sees a run that changed the environment, and the next run then
imports its code afresh; but that import reads the process's environment, and a module
that reads a variable when imported (not a step's read, so nothing is noted) would see
the previous run's. Read as the raw bytes CPython's ``os.environ`` keeps (one dict copy
a run, ~1 us); the variables are set back through the real mapping only when one
differs, so ``putenv`` and ``unsetenv`` keep the process's own environment in step.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any

__all__ = ["environment_put_back"]


@contextmanager
def environment_put_back() -> Iterator[None]:
    """Within the block, change the environment at will: after it, each variable is as
    it was before (set again, or removed), through the real ``os.environ`` (the guards'
    stand-in, when up, passes for it)."""
    real: MutableMapping[str, str] = getattr(os.environ, "unguarded", os.environ)
    held = getattr(real, "_data", None)
    before: dict[Any, Any] = held.copy() if type(held) is dict else dict(real)
    try:
        yield
    finally:
        now = held if type(held) is dict else dict(real)
        if now != before:
            _set_back(real, before, dict(now))


def _set_back(real: MutableMapping[str, str], before: dict[Any, Any],
              now: dict[Any, Any]) -> None:
    """Make ``real`` hold ``before`` again (both keyed as ``real`` keeps them: raw bytes,
    or text)."""
    def text(item: bytes | str) -> str:
        return os.fsdecode(item) if isinstance(item, bytes) else item

    for key in now.keys() - before.keys():
        real.pop(text(key), None)
    for key, value in before.items():
        if now.get(key) != value:
            real[text(key)] = text(value)
