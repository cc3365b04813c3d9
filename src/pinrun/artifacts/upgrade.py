"""Upgrading a store to the newest format, in place and in one transaction.

Format 2 stores each ref with a check (see :mod:`pinrun.artifacts.refs`); a
store made by a pinrun before it is format 1, and this pinrun reads and writes
it as it is, so that an older pinrun sharing it keeps working. ``pinrun
upgrade`` rewrites every ref with its check and sets the format marker in one
LMDB write transaction: the store is upgraded whole or not at all. It needs
the store to itself (as compaction does): a process that opened it as format 1
would go on writing refs without checks. An older pinrun then refuses the
store, asking to be upgraded.

The check is computed over each ref as it is found, so an upgrade seals a
name that was already damaged: run ``pinrun fsck`` first.
"""

from __future__ import annotations

import fcntl
from typing import Any

from pinrun.artifacts.compact import take_exclusive
from pinrun.artifacts.refs import ref_name_problem, stored_ref, stored_ref_problem
from pinrun.artifacts.store import STORE_FORMAT, UNCHECKED_REFS_FORMAT, Store
from pinrun.data_classes import data_class
from pinrun.errors import StoreDamagedError, StoreError
from pinrun.safe_text import printable

__all__ = ["UpgradeReport", "upgrade"]


@data_class(frozen=True)
class UpgradeReport:
    """What an upgrade did: the store's format before and after, and the refs rewritten."""

    format_before: int
    format_after: int
    refs_rewritten: int

    @property
    def upgraded(self) -> bool:
        """Whether the store changed (False when it was in the newest format already)."""
        return self.format_before != self.format_after


def upgrade(store: Store) -> UpgradeReport:
    """Bring ``store`` to the newest format (see the module's docstring).

    Raises :class:`~pinrun.errors.StoreInUseError` when another process or
    handle has it open, and :class:`~pinrun.errors.StoreDamagedError`, changing
    nothing, when a ref is not a valid name and a digest.
    """
    newest = int(STORE_FORMAT)
    if store.checks_refs:
        return UpgradeReport(newest, newest, 0)
    env = store.environment
    lock_fd = take_exclusive(store, "upgrading rewrites its refs")
    try:
        meta, refs_db = env.dbs["meta"], env.dbs["refs"]

        def rewrite(txn: Any) -> int:
            found = txn.get(b"format", db=meta)
            if found != UNCHECKED_REFS_FORMAT:  # (it was read at open; the lock holds it)
                raise StoreError(f"the store at {store.path} changed format while it was "
                                 "being upgraded; run `pinrun upgrade` again.")
            rows = list(txn.cursor(db=refs_db))
            for key, value in rows:
                _refuse_damage(store, key, value)
            for key, value in rows:
                txn.put(key, stored_ref(key, value, True), db=refs_db)
            txn.put(b"format", STORE_FORMAT, db=meta)
            return len(rows)

        rewritten = int(env.write(rewrite))
        store.checks_refs = True
    finally:
        fcntl.flock(lock_fd, fcntl.LOCK_SH)
    return UpgradeReport(int(UNCHECKED_REFS_FORMAT), newest, rewritten)


def _refuse_damage(store: Store, key: bytes, value: bytes) -> None:
    """Refuse a ref the upgrade would otherwise seal as it is: a bad name or value."""
    try:
        problem = ref_name_problem(key.decode())
    except UnicodeDecodeError:
        problem = "its name is not UTF-8"
    problem = problem or stored_ref_problem(key, value, False)
    if problem is not None:
        raise StoreDamagedError(store.path, f"the ref stored under "
                                f"{printable(repr(key[:64]))} is damaged ({problem}), so the "
                                "store was not upgraded")
