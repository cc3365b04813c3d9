"""Compaction: rewrite ``data.mdb`` without its free pages, and swap it in safely.

LMDB never gives space back to the disk: pages freed by gc, or left behind
while a long reader kept them from being reused, stay in the file. A compact
copy (``mdb_env_copy2`` with ``MDB_CP_COMPACT``) holds only the pages in use.

The swap is safe because nobody else has the store open: every process
holding the store open keeps a shared flock on ``open.lock``
(:mod:`pinrun.artifacts.lmdb_env`), and compaction takes it exclusively or
refuses. Openers meanwhile wait on the lock. Then:

1. the compact copy is written to ``compact.tmp/`` inside the store, synced,
   and checked like ``fsck`` does (every page, object, ref and reference),
   with the same objects and refs as the store;
2. the store's environment is closed, the copy renamed over ``data.mdb``
   (one atomic rename), the folder synced, and the stale ``lock.mdb``
   removed (LMDB makes a new one);
3. the store is opened again on the new file.

A crash before the rename leaves the old store as it was (and a leftover
``compact.tmp/``, removed by the next compaction); a crash after it leaves
the new one, complete and synced.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from pinrun.artifacts.fsck import fsck
from pinrun.artifacts.lmdb_env import open_environment, release_environment
from pinrun.artifacts.store import Store
from pinrun.errors import StoreError, StoreInUseError, StoreReadOnlyError

__all__ = ["TEMP_DIRNAME", "CompactReport", "compact", "take_exclusive"]

#: Where the compact copy is built, inside the store folder.
TEMP_DIRNAME: Final = "compact.tmp"


@dataclass(frozen=True)
class CompactReport:
    """What compaction did: the size of ``data.mdb`` before and after."""

    before_bytes: int
    after_bytes: int

    @property
    def saved_bytes(self) -> int:
        """How much smaller the file became."""
        return self.before_bytes - self.after_bytes


def compact(store: Store) -> CompactReport:
    """Rewrite the store's data file without free pages and swap it in (see the module doc).

    Raises :class:`StoreInUseError` when another process (or another handle
    in this one) has the store open, and leaves everything as it was.
    """
    env = store.environment
    lock_fd = take_exclusive(store, "compaction rewrites its data file")
    # The exclusive lock must outlive the environment's own descriptor, which
    # closes with it: a duplicate shares the lock and is closed last.
    held = os.dup(lock_fd)
    durable = env.durable
    closed = False
    try:
        data_file = store.path / "data.mdb"
        before = data_file.stat().st_size
        temp = store.path / TEMP_DIRNAME
        shutil.rmtree(temp, ignore_errors=True)
        temp.mkdir()
        env.handle.copy(str(temp), compact=True)
        _sync_file(temp / "data.mdb")
        _verify_copy(store, temp)
        store._closed = closed = True
        release_environment(env)  # unmaps the old file; the lock stays held by `held`
        os.replace(temp / "data.mdb", data_file)
        # Its reader table describes the old file; LMDB makes a new one at open.
        (store.path / "lock.mdb").unlink(missing_ok=True)
        _sync_dir(store.path)
        shutil.rmtree(temp, ignore_errors=True)
        after = data_file.stat().st_size
    finally:
        if not closed:
            fcntl.flock(lock_fd, fcntl.LOCK_SH)  # nothing swapped: back to sharing
        os.close(held)
        if closed:
            store._env = open_environment(store.path, durable=durable)
            store._closed = False
    return CompactReport(before, after)


def take_exclusive(store: Store, why: str) -> int:
    """Take the store's ``open.lock`` exclusively, or raise: :class:`StoreInUseError` when
    another process (or another handle in this one) has the store open,
    :class:`StoreReadOnlyError` (saying ``why`` it must be written) when it is read-only.

    Returns the lock's descriptor; the caller gives the lock back with
    ``fcntl.flock(fd, fcntl.LOCK_SH)`` (the descriptor is the environment's own).
    """
    env = store.environment
    if env.readonly:
        raise StoreReadOnlyError(store.path, why)
    if env._refcount > 1:
        raise StoreInUseError(store.path, "another handle in this process")
    lock_fd = env._open_lock_fd
    if lock_fd is None:
        raise StoreReadOnlyError(store.path, "its open.lock cannot be created")
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fcntl.flock(lock_fd, fcntl.LOCK_SH)  # Linux dropped it on the failed upgrade
        raise StoreInUseError(store.path) from None
    return lock_fd


def _verify_copy(store: Store, temp: Path) -> None:
    """The copy passes every fsck check and holds what the store holds."""
    with Store.open(temp, readonly=True) as copy:
        report = fsck(copy)
        same = (copy.object_count() == store.object_count() and copy.refs() == store.refs())
    (temp / "open.lock").unlink(missing_ok=True)
    (temp / "lock.mdb").unlink(missing_ok=True)
    if not report.ok or not same:
        what = report.problems[0].detail if report.problems else "other objects or refs"
        raise StoreError(f"the compact copy of the store at {store.path} does not check out "
                         f"({what}); the store was left as it was. Run `pinrun fsck` on it.")


def _sync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
