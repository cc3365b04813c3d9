"""Functions a test runs in a process of pinrun.world.processes.worker_pool."""

from __future__ import annotations

import atexit
import os
from pathlib import Path


def nothing() -> None:
    """An initializer with nothing to do."""


class _WritesWhenFreed:
    def __init__(self, marker: Path) -> None:
        # Kept here: modules' globals are gone by the time a torn-down interpreter frees this.
        self.marker, self.open, self.close = str(marker), os.open, os.close
        self.flags = os.O_CREAT | os.O_WRONLY

    def __del__(self) -> None:
        self.close(self.open(self.marker, self.flags))


#: What the task leaves behind, freed only if the interpreter is torn down.
_KEPT: list[_WritesWhenFreed] = []


def leave_behind(folder: str) -> str:
    """Keep an object that writes ``freed`` when freed, and register an exit hook that
    writes ``hook``."""
    _KEPT.append(_WritesWhenFreed(Path(folder) / "freed"))
    atexit.register((Path(folder) / "hook").write_text, "ran")
    return "left"


def close_stdout(folder: str) -> str:
    """Leave behind what :func:`leave_behind` does, with the process's stdout closed."""
    import sys

    leave_behind(folder)
    sys.stdout.close()
    return "closed"


def close_stdout_and_hook(folder: str) -> str:
    """Register an exit hook that writes ``hook``, close stdout, and return."""
    import sys

    atexit.register((Path(folder) / "hook").write_text, "ran")
    sys.stdout.close()
    return "closed"
