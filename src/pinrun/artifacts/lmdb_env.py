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

Damage never reaches LMDB unchecked where it can be avoided: the data file's
meta pages are read with plain file reads before it is mapped (a truncated
file is refused instead of killing the process with SIGBUS), and every
``lmdb.Error`` on a read or a write becomes a
:class:`~pinrun.errors.StoreError` saying what happened. A store this process
may not write is opened read-only, so the commands that only read still work.

A durable store's commit is one device flush: its pages are written and
flushed, then its meta page is written without a flush of its own (LMDB's
``metasync=False``). LMDB stays consistent whatever happens; a power loss (not
a killed process: the page is with the kernel) may undo the last commit
only, since the next commit's flush carries it. Closing the environment
flushes that last meta page, so a command that ends loses nothing.

A durable store's file is also kept written ahead of its last page in use
(zeros, a quarter of what is in use, 64 KiB to 2 MiB; see
:class:`_WriteAhead`): a commit that only overwrites written blocks needs no
journal commit of the file system to be durable, where one that makes the
file longer does (on ext4, a second device flush). The zeros are written
from the end of the file only, and only inside a write transaction, so
nothing LMDB wrote or will read is ever touched.

Every process holding the environment open also holds a shared ``flock`` on
``open.lock`` in the folder: compaction takes it exclusively (nobody else may
have the old file mapped when a compacted one replaces it), and an opener
that finds ``lock.mdb`` gone while others hold it knows the store lost its
reader table under a running process.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import threading
from collections.abc import Callable
from contextlib import ExitStack, suppress
from pathlib import Path
from typing import Any, Final, TypeVar

import lmdb

from pinrun.artifacts.lmdb_meta import check_data_file
from pinrun.artifacts.shared_lock import SharedExclusiveLock
from pinrun.errors import NoSpaceError, StoreDamagedError, StoreError, StoreReadOnlyError

__all__ = ["DB_NAMES", "OPEN_LOCK", "ChunkedReader", "Environment", "open_environment",
           "refuse_links"]

T = TypeVar("T")

#: The named databases of a store.
DB_NAMES: Final = ("objects", "refs", "meta")
DEFAULT_MAP_SIZE: Final = 1 << 30  # virtual address space only: the file grows as data does
_MAX_GROWTH_ATTEMPTS: Final = 40
#: The file every process holding the store open keeps a shared flock on.
OPEN_LOCK: Final = "open.lock"
_PERMISSION_ERRNOS: Final = (errno.EACCES, errno.EROFS, errno.EPERM)


#: How often an open is tried when other processes keep growing the map meanwhile.
_RESIZE_TRIES = 5


class Environment:
    """One open LMDB environment with the store's named databases."""

    def __init__(self, path: Path, map_size: int, durable: bool, readonly: bool = False) -> None:
        self.path = path
        self.durable = durable
        self._lock = SharedExclusiveLock()
        self._refcount = 0
        self._closed = False
        #: A durable commit's meta page not flushed yet (close flushes it).
        self._meta_unsynced = False
        #: The process that opened this environment; LMDB handles do not survive fork.
        self.pid = current_pid()
        data_file = path / "data.mdb"
        refuse_links(path, ("data.mdb", "lock.mdb", OPEN_LOCK))
        self._open_lock_fd = _hold_open_lock(path)
        try:
            if data_file.exists():
                check_data_file(data_file)  # before LMDB maps it: no SIGBUS on a short file
                self._refuse_lost_lock_file(path)
            self._env, self.readonly = self._open_lmdb(path, map_size, readonly)
            self._readonly_reason = ("opened read-only" if readonly
                                     else "no permission to write its files")
        except BaseException:
            _release_open_lock(self._open_lock_fd)
            raise
        try:
            self.dbs = self._open_databases()
            #: LMDB's main database, which names the others. Every commit rewrites its
            #: page (the roots of the databases it changed), so the store's counters
            #: live there: updating them dirties no page of their own.
            self.main_db = self._env.open_db(None)
        except BaseException:
            self.close()
            raise
        #: The map size as this handle last set or adopted it: only this class resizes the
        #: map, so a write reads it here rather than building ``env.info()`` each time.
        self._map_size = int(self._env.info()["map_size"])
        self._ahead = (_WriteAhead(data_file, int(self._env.stat()["psize"]))
                       if durable and not self.readonly else None)

    def _refuse_lost_lock_file(self, path: Path) -> None:
        # A fresh lock.mdb beside a used data.mdb while other processes hold
        # the store open: theirs was deleted, and with it the reader table
        # that keeps a writer from reusing pages a reader still reads.
        if (path / "lock.mdb").exists() or self._open_lock_fd is None \
                or _nobody_else_holds(self._open_lock_fd):
            return
        raise StoreDamagedError(path, "lock.mdb was deleted while another process had the "
                                "store open, so LMDB can no longer keep its readers and "
                                "writers apart; stop every process using the store, then "
                                "check it with `pinrun fsck`")

    @staticmethod
    def _open_resized(path: Path, options: dict[str, Any]) -> Any:
        """``lmdb.open`` for writing, again when another process grew the map while it
        opened (MDB_MAP_RESIZED: a fresh open takes the map's new size)."""
        for _ in range(_RESIZE_TRIES - 1):
            try:
                return lmdb.open(str(path), create=True, **options)
            except lmdb.MapResizedError:
                continue
        return lmdb.open(str(path), create=True, **options)

    def _open_lmdb(self, path: Path, map_size: int, readonly: bool) -> tuple[Any, bool]:
        """The LMDB handle, read-only when asked or when writing is not permitted."""
        options: dict[str, Any] = {
            "map_size": map_size, "max_dbs": len(DB_NAMES) + 2, "subdir": True,
            # One flush per commit (see the module's docstring): the meta page rides
            # with the next commit's flush, or close's.
            "readahead": False, "sync": self.durable, "metasync": False,
            "max_readers": 254,
        }
        if not readonly:
            try:
                return self._open_resized(path, options), False
            except lmdb.Error as exc:
                if getattr(exc, "code", None) not in _PERMISSION_ERRNOS \
                        or not (path / "data.mdb").exists():
                    raise _open_error(path, exc) from exc
        try:
            return lmdb.open(str(path), readonly=True, create=False, **options), True
        except lmdb.Error as exc:
            if getattr(exc, "code", None) not in _PERMISSION_ERRNOS:
                raise _open_error(path, exc) from exc
        # lock.mdb cannot be written either (an archived store, another user's
        # store): read without LMDB's reader table; nobody can write it meanwhile.
        try:
            return lmdb.open(str(path), readonly=True, create=False, lock=False, **options), True
        except lmdb.Error as exc:
            raise _open_error(path, exc) from exc

    def _open_databases(self) -> dict[str, Any]:
        if self.readonly:
            try:
                # Without a transaction py-lmdb opens them in one of its own that
                # keeps the handles (a read transaction given here would not).
                return {name: self._env.open_db(name.encode(), create=False)
                        for name in DB_NAMES}
            except lmdb.NotFoundError as exc:
                raise StoreDamagedError(self.path, "its data file has no pinrun databases "
                                        "(it is another LMDB file, or its main page is "
                                        "damaged)") from exc
            except lmdb.Error as exc:
                raise _read_error(self.path, exc) from exc
        # py-lmdb keeps database handles only from a write transaction, so opening
        # a store waits, briefly, for a commit in progress; reads after that never do.
        for _ in range(_MAX_GROWTH_ATTEMPTS):
            try:
                with self._env.begin(write=True) as txn:
                    return {name: self._env.open_db(name.encode(), txn=txn) for name in DB_NAMES}
            except lmdb.MapResizedError:
                self._env.set_mapsize(0)  # another process grew the map while we opened
            except lmdb.Error as exc:
                raise _write_error(self.path, "open the databases of", exc) from exc
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
        if write and self.readonly:
            raise StoreReadOnlyError(self.path, self._readonly_reason)
        try:
            # (db, parent, write; buffers stays False: positional, as py-lmdb parses keywords
            # slowly, and every read and commit begins here.)
            return self._env.begin(None, None, write)
        except lmdb.MapResizedError:
            return None
        except lmdb.Error as exc:
            if write:
                raise _write_error(self.path, "write to", exc) from exc
            raise _read_error(self.path, exc) from exc

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
        with self._lock.exclusive_side():
            self._env.set_mapsize(0)
            self._map_size = self.map_size

    def _grow(self, seen_size: int) -> None:
        self._refuse_nested_resize()
        with self._lock.exclusive_side():
            if self.map_size == seen_size:  # another thread may have grown it already
                self._env.set_mapsize(seen_size * 2)
            self._map_size = self.map_size

    def get(self, db_name: str, key: bytes) -> bytes | None:
        """One value from a named database, in its own short read transaction."""
        # What a _Reading block does, written out: most of a replay's reads are these.
        db = self.dbs[db_name]
        lock = self._lock
        while True:
            lock.acquire_shared()
            try:
                txn = self._begin(write=False)
                if txn is not None:
                    try:
                        # (Positional: py-lmdb parses keywords at ~a third of a get.)
                        value: bytes | None = txn.get(key, None, db)
                    except lmdb.Error as exc:
                        raise _read_error(self.path, exc) from exc
                    finally:
                        txn.abort()
                    return value
            finally:
                lock.release_shared()
            self._adopt_new_size()  # another process grew the map: open it again

    def read(self) -> _Reading:
        """A read-only transaction: a consistent snapshot of the whole store
        (``with env.read() as txn``).

        An ``lmdb.Error`` raised in the block (a damaged page met by a cursor
        or a lookup) leaves it as a :class:`StoreDamagedError`.
        """
        return _Reading(self)

    def write(self, operation: Callable[[Any], T]) -> T:
        """Run ``operation(txn)`` in one write transaction and commit it.

        When the map is full the transaction is aborted, the map doubled and
        ``operation`` called again: it must compute nothing it cannot redo.
        """
        for _ in range(_MAX_GROWTH_ATTEMPTS):
            seen_size = self._map_size  # (_begin checks that the store is open)
            # The shared lock by plain calls: a commit per durable step pays for no
            # context-manager generator.
            self._lock.acquire_shared()
            try:
                txn = self._begin(write=True)
                if txn is not None:
                    try:
                        result = operation(txn)
                        if self._ahead is not None:
                            self._ahead.keep(self._env)
                        txn.commit()
                        self._meta_unsynced = self.durable
                    except lmdb.MapFullError:
                        txn.abort()
                    except lmdb.Error as exc:
                        txn.abort()
                        raise _write_error(self.path, "write to", exc) from exc
                    except BaseException:
                        txn.abort()
                        raise
                    else:
                        return result
            finally:
                self._lock.release_shared()
            if txn is None:
                self._adopt_new_size()
            else:
                self._grow(seen_size)
        raise StoreError(f"the store in {self.path} could not grow its map to fit a write; "
                         "check free disk space")

    def sync(self) -> None:
        """Flush everything to disk (for stores opened with ``durable=False``)."""
        if self.readonly:
            return
        try:
            self._env.sync(True)
        except lmdb.Error as exc:
            raise _write_error(self.path, "sync", exc) from exc
        self._meta_unsynced = False

    @property
    def handle(self) -> Any:
        """The py-lmdb environment itself (for maintenance: copies, page counts)."""
        self._check_open()
        return self._env

    def close(self) -> None:
        if self._meta_unsynced and not self._closed:
            # The last commit's meta page (see the docstring); when the flush fails, that
            # commit stays what the kernel holds, as after a kill.
            with suppress(lmdb.Error):
                self._env.sync(True)
        self._closed = True
        self._env.close()
        if self._ahead is not None:
            self._ahead.close()
        _release_open_lock(self._open_lock_fd)
        self._open_lock_fd = None

    def abandon_after_fork(self) -> None:
        """In a forked child: drop the inherited handle so the child can open its own."""
        self._closed = True
        self._env.close()
        if self._ahead is not None:
            self._ahead.close()  # (the child's copy of the descriptor: the parent's stays)
        # The flock belongs to the open file, shared with the parent: closing
        # the child's copy of the descriptor leaves the parent's lock alone.
        if self._open_lock_fd is not None:
            os.close(self._open_lock_fd)
            self._open_lock_fd = None


class _Reading:
    """:meth:`Environment.read`'s block: a class, not a generator (every read of a
    replay, a listing or a seed pass enters one)."""

    __slots__ = ("_env", "_txn")

    def __init__(self, env: Environment) -> None:
        self._env = env
        self._txn: Any = None

    def __enter__(self) -> Any:
        env = self._env
        while True:
            env._lock.acquire_shared()
            try:
                txn = env._begin(write=False)
            except BaseException:
                env._lock.release_shared()
                raise
            if txn is not None:
                self._txn = txn
                return txn
            env._lock.release_shared()
            env._adopt_new_size()  # another process grew the map: open it again

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 traceback: Any) -> None:
        try:
            self._txn.abort()
        finally:
            self._txn = None
            self._env._lock.release_shared()
        if isinstance(exc, lmdb.Error):
            raise _read_error(self._env.path, exc) from exc


#: How far ahead of its last page in use a durable store's file is written: this share
#: of what is in use, within the bounds below; written again once half of it is used.
#: (The bound above keeps the commit that writes it, and its flush, short: 1 MiB of
#: zeros at most, once per ~700 durable steps of the benchmark's flow.)
_AHEAD_SHARE: Final = 4
_AHEAD_MIN: Final = 64 * 1024
_AHEAD_MAX: Final = 2 << 20
_ZEROS: Final = bytes(1 << 20)


class _WriteAhead:
    """Keeps a durable store's data file written (with zeros) past its last page in use.

    LMDB appends a page past the end of the file whenever its free pages run
    out, and a file made longer is, to ext4, a change of its size and block
    map: the commit's ``fdatasync`` then commits the file system's journal too,
    a second device flush (about one durable step in four did). With the file
    written ahead, a commit overwrites blocks that exist and flushes once. (What
    a transaction allocates is known only to LMDB, so the look is at the pages
    committed before it: a commit larger than what is ahead still makes the
    file longer itself, and the next one writes ahead again.)
    """

    def __init__(self, data_file: Path, page_size: int) -> None:
        self._page_size = page_size
        #: The end of the file as last seen or written here (it never shrinks under an
        #: open store: only compaction replaces the file, with every handle closed).
        self._end = 0
        try:
            self._fd: int | None = os.open(data_file, os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            self._fd = None  # an optimisation only: the store works without it

    def keep(self, env: Any) -> None:
        """Inside a write transaction: write zeros past the end when little is left.

        The write lock keeps every other writer out, so the end of the file
        seen here is past every page LMDB has written or will read; zeros go
        after it only, and pages LMDB writes there later overwrite them.
        """
        if self._fd is None:
            return
        info = env.info()
        used = (int(info["last_pgno"]) + 1) * self._page_size
        want = min(max(used // _AHEAD_SHARE, _AHEAD_MIN), _AHEAD_MAX)
        if self._end - used >= want // 2:
            return
        try:
            self._end = os.fstat(self._fd).st_size
            if self._end - used >= want // 2:
                return
            target = min(used + want, int(info["map_size"]))  # LMDB maps no page beyond
            target -= target % self._page_size
            while self._end < target:
                self._end += os.pwrite(self._fd, _ZEROS[:min(target - self._end, len(_ZEROS))],
                                       self._end)
        except OSError:
            return  # a full disk, say: LMDB's own write will say so, as it always has

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class ChunkedReader:
    """Lookups in one database over a series of short read transactions, ``chunk`` each.

    For long walks (gc's marking, export) over immutable objects: any snapshot
    answers a lookup the same way (or not at all, once a gc swept it), and no
    long reader keeps LMDB from reusing freed pages, which would grow the file
    beside a writer. Values are copies, valid after their transaction ends.
    Use as a context manager.
    """

    def __init__(self, env: Environment, db_name: str, chunk: int = 512) -> None:
        self._env = env
        self._db = env.dbs[db_name]
        self._chunk = chunk
        self._stack = ExitStack()
        self._txn: Any = None
        self._count = 0

    def get(self, key: bytes) -> bytes | None:
        """The value under ``key``, or ``None``."""
        if self._txn is None or self._count >= self._chunk:
            self._stack.close()
            self._txn = self._stack.enter_context(self._env.read())
            self._count = 0
        self._count += 1
        value: bytes | None = self._txn.get(key, db=self._db)
        return value

    def __enter__(self) -> ChunkedReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()
        self._txn = None


def refuse_links(folder: Path, names: tuple[str, ...]) -> None:
    """Raise :class:`StoreDamagedError` if a store file is a symlink or not a regular file.

    A store folder may come from someone else: LMDB would write its lock table
    through a ``lock.mdb`` link (and a data file through a ``data.mdb`` one)
    into any file the user can write. The folder itself may be a link.
    """
    for name in names:
        try:
            mode = os.lstat(folder / name).st_mode
        except FileNotFoundError:
            continue
        if not stat.S_ISREG(mode):
            what = "a symbolic link" if stat.S_ISLNK(mode) else "not a regular file"
            raise StoreDamagedError(folder, f"{name} is {what}, and pinrun never reads or "
                                    "writes a store's files through one")


def _hold_open_lock(folder: Path) -> int | None:
    """Open ``open.lock`` and take a shared flock on it (waits while a compaction runs).

    ``None`` when the file can be neither created nor opened (a read-only
    folder without one): such a store cannot be compacted under us anyway.
    """
    path = folder / OPEN_LOCK
    fd = None
    for flags in (os.O_RDWR | os.O_CREAT, os.O_RDONLY):
        try:
            fd = os.open(path, flags | os.O_CLOEXEC | os.O_NOFOLLOW, 0o666)
            break
        except OSError:
            continue
    if fd is None:
        return None
    fcntl.flock(fd, fcntl.LOCK_SH)
    return fd


def _nobody_else_holds(fd: int) -> bool:
    """True when no other open file holds the flock ``fd`` holds shared (keeps it shared)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        # Linux drops the shared lock before it tries the exclusive one: take it back.
        fcntl.flock(fd, fcntl.LOCK_SH)
        return False
    fcntl.flock(fd, fcntl.LOCK_SH)
    return True


def _release_open_lock(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)  # closing the last descriptor of the open file releases the flock


def _open_error(path: Path, exc: lmdb.Error) -> StoreError:
    code = getattr(exc, "code", None)
    if code in _PERMISSION_ERRNOS:
        return StoreError(f"cannot open the store database in {path}: {exc}. Check that the "
                          "folder and its files are readable.")
    if isinstance(exc, lmdb.DiskError) or code == errno.ENOSPC:
        return NoSpaceError(path)
    if isinstance(exc, (lmdb.InvalidError, lmdb.CorruptedError, lmdb.VersionMismatchError,
                        lmdb.PanicError, lmdb.PageNotFoundError)):
        return StoreDamagedError(path, f"LMDB refuses its data file ({exc})")
    return StoreError(f"cannot open the store database in {path}: {exc}. Check that the "
                      "folder is readable and writable.")


def _read_error(path: Path, exc: lmdb.Error) -> StoreError:
    """What an ``lmdb.Error`` met while reading means: the data file is damaged."""
    return StoreDamagedError(path, f"LMDB could not read it ({exc})")


def _write_error(path: Path, action: str, exc: lmdb.Error) -> StoreError:
    code = getattr(exc, "code", None)
    if isinstance(exc, lmdb.DiskError) or code == errno.ENOSPC:
        return NoSpaceError(path)
    if isinstance(exc, lmdb.ReadonlyError) or code in _PERMISSION_ERRNOS:
        return StoreReadOnlyError(path, str(exc))
    if isinstance(exc, (lmdb.CorruptedError, lmdb.PageNotFoundError, lmdb.PanicError,
                        lmdb.InvalidError)):
        return StoreDamagedError(path, f"LMDB could not {action} it ({exc})")
    return StoreError(f"could not {action} the store at {path}: {exc}. Check the free disk "
                      "space and the file permissions; nothing of this operation was kept.")


def current_pid() -> int:
    """This process's id, known without asking the system each time (a store checks it
    on every use, to notice a fork): updated in a forked child."""
    return _PID[0]


_PID = [os.getpid()]
os.register_at_fork(after_in_child=lambda: _PID.__setitem__(0, os.getpid()))


# Owned by its users (refcounted) and by this process (pid-checked); keyed by path, not code.
_ENVIRONMENTS: dict[Path, Environment] = {}
_REGISTRY_LOCK = threading.Lock()


def open_environment(path: Path, map_size: int | None = None, durable: bool = True,
                     readonly: bool = False) -> Environment:
    """The process's environment for ``path``, opened on first use.

    ``readonly=True`` opens it for reading only; a store this process may not
    write is opened that way by itself.
    """
    key = path.resolve()
    with _REGISTRY_LOCK:
        env = _ENVIRONMENTS.get(key)
        if env is not None and env.pid != current_pid():
            # A forked child must not use its parent's handle. Closing it here
            # releases py-lmdb's "already open in this process" guard; the
            # parent's own handle, locks and reader slots are unaffected.
            env.abandon_after_fork()
            env = None
        if env is None:
            env = Environment(key, map_size or DEFAULT_MAP_SIZE, durable, readonly)
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
