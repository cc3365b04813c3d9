"""The LMDB environment under a store: opening, transactions, and map growth.

LMDB maps the database into memory at a fixed size. When a write does not fit,
:meth:`Environment.write` aborts it, doubles the map and runs it again, so
every write is given as a function of its transaction that can safely run
twice. When another process has grown the map, LMDB refuses to begin a
transaction here (``MapResizedError``) until this process adopts the new size.

Resizing is only allowed while this process has no transaction open, so
every transaction holds a shared lock and a resize takes it exclusively.
LMDB also forbids opening one environment twice in a process: environments
are shared per folder and per process (a forked child opens its own).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, TypeVar

import lmdb

from pinrun.errors import StoreError

__all__ = ["DB_NAMES", "Environment", "open_environment"]

T = TypeVar("T")

#: The named databases of a store.
DB_NAMES: Final = ("objects", "refs", "meta")
DEFAULT_MAP_SIZE: Final = 1 << 30  # virtual address space only: the file grows as data does
_MAX_GROWTH_ATTEMPTS: Final = 40


class _SharedExclusiveLock:
    """Many holders of the shared side at once, or one of the exclusive side.

    The shared side is taken around every transaction, so it is plain method
    calls on one mutex rather than context-manager generators.
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._cond = threading.Condition(self._mutex)
        self._shared = 0
        self._exclusive = False
        self._held = threading.local()  # how many shared holds this thread has

    def acquire_shared(self) -> None:
        self._mutex.acquire()
        try:
            while self._exclusive:
                self._cond.wait()
            self._shared += 1
        finally:
            self._mutex.release()
        self._held.count = getattr(self._held, "count", 0) + 1

    def release_shared(self) -> None:
        self._held.count -= 1
        self._mutex.acquire()
        try:
            self._shared -= 1
            if self._shared == 0:
                self._cond.notify_all()
        finally:
            self._mutex.release()

    def held_by_this_thread(self) -> bool:
        """True while this thread is inside a transaction (so it must not wait to resize)."""
        return getattr(self._held, "count", 0) > 0

    @contextmanager
    def shared(self) -> Iterator[None]:
        self.acquire_shared()
        try:
            yield
        finally:
            self.release_shared()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            while self._exclusive or self._shared:
                self._cond.wait()
            self._exclusive = True
        try:
            yield
        finally:
            with self._cond:
                self._exclusive = False
                self._cond.notify_all()


class Environment:
    """One open LMDB environment with the store's named databases."""

    def __init__(self, path: Path, map_size: int, durable: bool) -> None:
        self.path = path
        self.durable = durable
        self._lock = _SharedExclusiveLock()
        self._refcount = 0
        self._closed = False
        #: The process that opened this environment; LMDB handles do not survive fork.
        self.pid = os.getpid()
        try:
            self._env = lmdb.open(
                str(path), map_size=map_size, max_dbs=len(DB_NAMES) + 2, subdir=True,
                create=True, readahead=False, sync=durable, metasync=durable, max_readers=254,
            )
            self.dbs = self._open_databases()
        except lmdb.Error as exc:
            raise StoreError(f"cannot open the store database in {path}: {exc}. Check that "
                             "the folder is readable and writable.") from exc

    def _open_databases(self) -> dict[str, Any]:
        # py-lmdb keeps database handles only from a write transaction, so opening
        # a store waits, briefly, for a commit in progress; reads after that never do.
        for _ in range(_MAX_GROWTH_ATTEMPTS):
            try:
                with self._env.begin(write=True) as txn:
                    return {name: self._env.open_db(name.encode(), txn=txn) for name in DB_NAMES}
            except lmdb.MapResizedError:
                self._env.set_mapsize(0)  # another process grew the map while we opened
        raise StoreError(f"cannot open the databases of the store in {self.path}: its map "
                         "kept being resized by another process; try again.")

    @property
    def map_size(self) -> int:
        """The current size of the memory map in bytes."""
        self._check_open()
        return int(self._env.info()["map_size"])

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"the store at {self.path} was closed; open it again to use it.")

    def _begin(self, write: bool) -> Any:
        self._check_open()
        try:
            return self._env.begin(write=write, buffers=False)
        except lmdb.MapResizedError:
            return None

    def _refuse_nested_resize(self) -> None:
        # Waiting here for our own outer transaction to end would never return.
        if self._lock.held_by_this_thread():
            raise StoreError(
                f"the store at {self.path} must resize its map, but this thread is inside "
                "another transaction on it; this is a pinrun bug, please report it "
                "(then retry: the resize will succeed outside the transaction)."
            )

    def _adopt_new_size(self) -> None:
        # Another process grew the map: size 0 means "take the size on disk".
        self._refuse_nested_resize()
        with self._lock.exclusive():
            self._env.set_mapsize(0)

    def _grow(self, seen_size: int) -> None:
        self._refuse_nested_resize()
        with self._lock.exclusive():
            if self.map_size == seen_size:  # another thread may have grown it already
                self._env.set_mapsize(seen_size * 2)

    def get(self, db_name: str, key: bytes) -> bytes | None:
        """One value from a named database, in its own short read transaction."""
        db = self.dbs[db_name]
        while True:
            self._lock.acquire_shared()
            try:
                txn = self._begin(write=False)
                if txn is not None:
                    try:
                        value: bytes | None = txn.get(key, db=db)
                        return value
                    finally:
                        txn.abort()
            finally:
                self._lock.release_shared()
            self._adopt_new_size()

    @contextmanager
    def read(self) -> Iterator[Any]:
        """A read-only transaction: a consistent snapshot of the whole store."""
        while True:
            with self._lock.shared():
                txn = self._begin(write=False)
                if txn is not None:
                    try:
                        yield txn
                    finally:
                        txn.abort()
                    return
            self._adopt_new_size()

    def write(self, operation: Callable[[Any], T]) -> T:
        """Run ``operation(txn)`` in one write transaction and commit it.

        When the map is full the transaction is aborted, the map doubled and
        ``operation`` called again: it must compute nothing it cannot redo.
        """
        for _ in range(_MAX_GROWTH_ATTEMPTS):
            seen_size = self.map_size
            with self._lock.shared():
                txn = self._begin(write=True)
                if txn is not None:
                    try:
                        result = operation(txn)
                        txn.commit()
                    except lmdb.MapFullError:
                        txn.abort()
                    except lmdb.Error as exc:
                        txn.abort()
                        raise _store_error(self.path, "write to", exc) from exc
                    except BaseException:
                        txn.abort()
                        raise
                    else:
                        return result
                    resized = False
                else:
                    resized = True
            if resized:
                self._adopt_new_size()
            else:
                self._grow(seen_size)
        raise StoreError(f"the store in {self.path} could not grow its map to fit a write; "
                         "check free disk space")

    def sync(self) -> None:
        """Flush everything to disk (for stores opened with ``durable=False``)."""
        self._env.sync(True)

    def close(self) -> None:
        self._closed = True
        self._env.close()

    def abandon_after_fork(self) -> None:
        """In a forked child: drop the inherited handle so the child can open its own."""
        self._closed = True
        self._env.close()


def _store_error(path: Path, action: str, exc: Exception) -> StoreError:
    return StoreError(f"could not {action} the store at {path}: {exc}. Check the free disk "
                      "space and the file permissions; nothing of this operation was kept.")


_ENVIRONMENTS: dict[Path, Environment] = {}
_REGISTRY_LOCK = threading.Lock()


def open_environment(path: Path, map_size: int | None = None, durable: bool = True) -> Environment:
    """The process's environment for ``path``, opened on first use."""
    key = path.resolve()
    with _REGISTRY_LOCK:
        env = _ENVIRONMENTS.get(key)
        if env is not None and env.pid != os.getpid():
            # A forked child must not use its parent's handle. Closing it here
            # releases py-lmdb's "already open in this process" guard; the
            # parent's own handle, locks and reader slots are unaffected.
            env.abandon_after_fork()
            env = None
        if env is None:
            env = Environment(key, map_size or DEFAULT_MAP_SIZE, durable)
            _ENVIRONMENTS[key] = env
        elif env.durable != durable:
            # One LMDB environment per file and process: its sync mode is fixed
            # at open, so a second handle cannot quietly get another one.
            raise StoreError(
                f"the store at {key} is already open in this process with "
                f"durable={env.durable}; open every handle with the same durability "
                "(or close the other handle first)."
            )
        env._refcount += 1
        return env


def release_environment(env: Environment) -> None:
    """Drop one user of ``env``; the last one closes it."""
    with _REGISTRY_LOCK:
        env._refcount -= 1
        if env._refcount <= 0 and _ENVIRONMENTS.get(env.path) is env:
            del _ENVIRONMENTS[env.path]
            env.close()
