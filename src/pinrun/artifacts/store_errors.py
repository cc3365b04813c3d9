"""Errors about the store's files themselves: damaged, read-only, full, in use.

All are :class:`~pinrun.errors.StoreError` subclasses (CLI exit code 3)::

    StoreError
    ├── StoreDamagedError     the LMDB files are damaged (.path, .detail)
    ├── StoreReadOnlyError    a write was asked of a store this process may only read (.path)
    ├── NoSpaceError          the disk holding the store is full (.path)
    └── StoreInUseError       compaction refused: another process has the store open (.path)

Each keeps its constructor arguments so it survives pickling (verify sends
errors across process pools).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pinrun.errors import StoreError

__all__ = ["NoSpaceError", "StoreDamagedError", "StoreInUseError", "StoreReadOnlyError"]


class StoreDamagedError(StoreError):
    """The store's LMDB files are damaged: a truncated file, a broken page, a lost lock file."""

    def __init__(self, path: str | Path, detail: str) -> None:
        self.path = str(path)
        self.detail = detail
        super().__init__(
            f"store damaged: {detail} (store at {self.path}). Nothing was changed; run "
            "`pinrun fsck` to list what is damaged, then restore the store from a backup "
            "or re-import its runs from bundles."
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.path, self.detail)


class StoreReadOnlyError(StoreError):
    """A write was asked of a store that this process can only read."""

    def __init__(self, path: str | Path, reason: str = "") -> None:
        self.path = str(path)
        self.reason = reason
        why = f" ({reason})" if reason else ""
        super().__init__(
            f"the store at {self.path} is read-only for this process{why}: commands that "
            "only read it work, but nothing can be written. Use a writable copy, or ask "
            "for write permission on the folder and its files."
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.path, self.reason)


class NoSpaceError(StoreError):
    """The disk holding the store is full."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        super().__init__(
            f"no space left on the device holding the store at {self.path}: nothing of "
            "this operation was kept. Check the free disk space and make room (`pinrun gc "
            "--compact` returns the store's unused space to the disk), then retry."
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.path,)


class StoreInUseError(StoreError):
    """Compaction needs the store to itself, and another process has it open."""

    def __init__(self, path: str | Path, who: str = "another process") -> None:
        self.path = str(path)
        self.who = who
        super().__init__(
            f"cannot compact the store at {self.path}: {who} has it open, and a compacted "
            "store can only replace the old one when nobody else uses it. Stop the other "
            "pinrun processes on this store (runs, verify, workers), then retry."
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.path, self.who)
