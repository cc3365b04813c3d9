"""Pinned code a process keeps loaded from one replay to the next, while no run changes it.

Pinned replay imports a run's code from the store, never from disk. Importing
it afresh for every replay isolates the runs completely, but costs more than
the replay itself: every module runs again, every step is built again, and
the hidden-state watch classifies new places. So the modules one replay
loaded serve the next replay of the same flow pin, project and entry, put
back as they are, when that replay left them as it found them
(:class:`CodeReuse`):

* the hidden-state watch (module globals, class attributes, mutable defaults
  and caches: :mod:`pinrun.world.hidden_state`) saw nothing change between
  the replay's start and its end, a cache filling up included;
* the watch sees into every place (a module-level object no snapshot can
  read, a client or a socket, could change unseen);
* the closure cells and attributes of the project's functions
  (:mod:`pinrun.world.code_cells`) hold the same objects, none of which can
  change in place;
* the replay ran to its end (one that raised may have stopped halfway
  through a change).

Otherwise the modules are dropped and the next replay imports the code
afresh: a run that changes module state can never reach the next run's
replay. Replays with the guards off watch nothing, so they never keep code.
Kept code is taken out while a replay uses it, so two threads replaying the
same pin each load their own. What no watch reaches is left out: state held
by installed packages (loaded once per process, pinned or not), and objects
reached only from inside other objects the codec reads (a snapshot covers
what it encodes).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Final

from pinrun.artifacts.digest import Digest
from pinrun.world.code_cells import CodeCells
from pinrun.world.hidden_state import Look, Watch, forget_places

__all__ = ["CodeReuse", "KeptCode", "drop", "put_back", "take"]

#: Loaded pinned code kept at most, per process (a verify worker replays a few flows).
MOST_KEPT: Final = 4

#: (flow pin, project root, entry, project context): what loaded the code.
KeptKey = tuple[Digest, Path, str, object]


class CodeReuse:
    """One replay's look at its pinned code's state as it begins and as it ends, and what
    follows: whether the code may serve the next replay (:attr:`clean`)."""

    __slots__ = ("_cells_start", "_start", "_watch", "cells", "clean")

    def __init__(self, cells: CodeCells | None = None) -> None:
        #: The project functions' closure cells and attributes (found at the first replay).
        self.cells = cells
        #: Whether the replay left the code as it found it (set by :meth:`end`).
        self.clean = False
        self._watch: Watch | None = None
        self._start: Look = ()
        self._cells_start: tuple[object, ...] = ()

    def begin(self, watch: Watch | None, modules: Sequence[ModuleType]) -> None:
        """The replay starts (``watch``: its hidden-state watch; None when guards are off,
        and then the code is never kept)."""
        if watch is None:
            return
        if self.cells is None:
            self.cells = CodeCells(modules)
        self._watch = watch
        self._start = watch.look()
        self._cells_start = self.cells.look()

    def end(self) -> None:
        """The replay ran to its end: look again, and judge."""
        watch, cells = self._watch, self.cells
        if watch is None or cells is None:
            return
        found, held = watch.look(), cells.look()
        self.clean = not watch.changes(self._start, found) and \
            watch.blind_to(found) is None and cells.same(self._cells_start, held) and \
            cells.blind_to(held) is None


@dataclass
class KeptCode:
    """Pinned code one replay loaded, to put back for the next."""

    #: The modules that left with the replay's block (pinned, and project ones it imported).
    modules: dict[str, ModuleType] = field(default_factory=dict)
    #: The project functions' closure cells and attributes (found once).
    cells: CodeCells | None = None


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
