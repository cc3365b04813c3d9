"""Pinned code a process keeps loaded from one replay to the next, while no run changes it.

Pinned replay imports a run's code from the store, never from disk. Importing
it afresh for every replay isolates the runs completely, but costs more than
the replay itself: every module runs again, every step is built again, and
the hidden-state watch classifies new places. So the modules one replay
loaded serve the next replay of the same flow pin, project and entry, put
back as they are, when that replay left the project's code exactly as it
found it right after the import: :func:`~pinrun.world.code_state.code_state`
of the project's modules, an allow-list walk of everything they hold, compares
equal, and the replay imported no project module of its own. When any of it
cannot be compared by its contents (a socket, an array, a generator, a
thread-local), or anything differs, the modules are dropped and the next replay
imports the code afresh: a run that changes its code's state never reaches
another run's replay.

Kept code is taken out while a replay uses it, so two threads replaying the
same pin each load their own. What no walk reaches is the same for fresh and
kept code: the state of installed packages, loaded once per process either way.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Final

from pinrun.artifacts.digest import Digest
from pinrun.world.hidden_state import forget_places

__all__ = ["MOST_KEPT", "KeptCode", "drop", "put_back", "take"]

#: Loaded pinned code kept at most, per process (a verify worker replays a few flows).
MOST_KEPT: Final = 4

#: (flow pin, project root, entry, project context): what loaded the code.
KeptKey = tuple[Digest, Path, str, object]


@dataclass
class KeptCode:
    """Pinned code one replay loaded, to put back for the next."""

    #: The modules that left with the replay's block (pinned, and project ones it imported).
    modules: dict[str, ModuleType]
    #: What the project's modules held right after the import (``code_state``).
    state: tuple[Any, ...]


_KEPT: OrderedDict[KeptKey, KeptCode] = OrderedDict()
_LOCK = threading.Lock()


def take(key: KeptKey) -> KeptCode | None:
    """The code kept for ``key``, taken out (no other replay uses it meanwhile), or None."""
    with _LOCK:
        return _KEPT.pop(key, None)


def put_back(key: KeptKey, kept: KeptCode) -> None:
    """Keep ``kept`` for the next replay of ``key`` (dropping the oldest when full)."""
    with _LOCK:
        _KEPT[key] = kept
        dropped = [_KEPT.popitem(last=False)[1] for _ in range(len(_KEPT) - MOST_KEPT)]
    for old in dropped:
        drop(old.modules.values())


def drop(modules: Iterable[ModuleType]) -> None:
    """Let go of modules no replay will use again (the watch forgets their places)."""
    forget_places(list(modules))
