"""Pinned code a process keeps loaded from one replay to the next, while no run changes it.

Pinned replay imports a run's code from the store, never from disk. Importing
it afresh for every replay isolates the runs completely, but costs more than
the replay itself: every module runs again, every step is built again, and
the hidden-state watch classifies new places. So the modules one replay
loaded serve the next replay of the same flow pin, project and entry, put
back as they are, when that replay left everything as the import made it
(:func:`state_of`): an allow-list walk of everything the project's modules hold
(:func:`~pinrun.world.code_state.code_state`) compares equal, and so does what an
import may set for the whole process (the global random generators, the loggers,
the decimal context, the environment, warning filters, ``sys.path``, the working
folder), the replay imported no project module of its own, and no thread it
started is still alive. When any of it cannot be compared by its contents (a
socket, an array, a generator, a thread-local, a pool with live workers), or
anything differs, the modules are dropped and the next replay imports the code
afresh: a run that changes its code's state never reaches another run's replay.

Kept code is taken out while a replay uses it, so two threads replaying the
same pin each load their own. What no walk reaches is the same for fresh and
kept code: the state of installed packages, loaded once per process either way.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Final

from pinrun.artifacts.digest import Digest
from pinrun.world.code_state import code_state, process_state, threads_alive
from pinrun.world.hidden_state import forget_places

__all__ = ["MOST_KEPT", "KeptCode", "drop", "put_back", "state_of", "take"]

#: Loaded pinned code kept at most, per process (a verify worker replays a few flows).
MOST_KEPT: Final = 4

#: (flow pin, project root, entry, project context): what loaded the code.
KeptKey = tuple[Digest, Path, str, object]


@dataclass
class KeptCode:
    """Pinned code one replay loaded, to put back for the next."""

    #: The modules that left with the replay's block (pinned, and project ones it imported).
    modules: dict[str, ModuleType]
    #: What the project's modules and the process held right after the import
    #: (:func:`state_of`).
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


def state_of(modules: Sequence[ModuleType]) -> tuple[Any, ...] | None:
    """What kept code must find unchanged: everything ``modules`` hold
    (:func:`~pinrun.world.code_state.code_state`), what an import may set for the whole
    process (:func:`~pinrun.world.code_state.process_state`) and the threads alive (one a
    step started may still write after the replay); None when the modules hold
    something that cannot be compared (their code is never kept)."""
    held = code_state(modules)
    if held is None:
        return None
    return (held, process_state(), threads_alive())


def drop(modules: Iterable[ModuleType]) -> None:
    """Let go of modules no replay will use again (the watch forgets their places)."""
    forget_places(list(modules))
