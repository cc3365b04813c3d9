"""Who is recording a run right now: a lock file per active run.

A recorder holds an exclusive ``flock`` on ``<store>/leases/<run id>.lock``
while it writes. The operating system drops the lock when the process dies,
however it dies, so a run whose record still says ``running`` but whose lease
nobody holds was interrupted: ``pinrun resume`` may take it over. The files
are not part of the store's content; a stale one is harmless and removed by
the next recorder that finishes or takes the run over.

Making a file is the dear part of a lease (an inode made and freed per run:
~45-230 us of system time on ext4, a fifth of a durable step's CPU in a
5-step run). So a process keeps the file of a lease it released as a spare
(``leases/.spare-<pid>.lock``, one per folder, a name no run id has) with its
descriptor open, and its next lease links that file at the run's path (a hard
link never replaces a file there) and locks it: no file is made. A spare is
this process's alone (forgotten in a forked child), removed when the process
exits; one left by a killed process is harmless, as a stale lease is.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import re
import stat
import threading
from pathlib import Path
from typing import Final

from pinrun.errors import RunBusyError, StoreDamagedError, UnsafeRunIdError

__all__ = ["LEASE_FOLDER", "RunBusyError", "RunLease", "UnsafeRunIdError", "is_live"]

LEASE_FOLDER = "leases"
# A lease file is named after its run: only a plain name (one path component,
# no "..", no separator, no control character) may become one. Run records
# are checked when read; this is the last line, should an id slip through.
_PLAIN_ID: Final = re.compile(r"[0-9A-Za-z][0-9A-Za-z_.-]{0,127}")
# Never follow a symbolic link planted where a lease file should be.
_NOFOLLOW: Final = getattr(os, "O_NOFOLLOW", 0)


def _lease_path(store_path: Path, run_id: str) -> Path:
    if type(run_id) is not str or _PLAIN_ID.fullmatch(run_id) is None:
        raise UnsafeRunIdError(str(run_id))
    return store_path / LEASE_FOLDER / f"{run_id}.lock"


class RunLease:
    """The exclusive right to write run ``run_id``; release it when done."""

    def __init__(self, store_path: Path, run_id: str) -> None:
        self.path = _lease_path(store_path, run_id)
        folder = str(self.path.parent)
        _check_folder(store_path, folder)
        self._folder = folder
        self._fd: int | None = _SPARES.lock_at(folder, str(self.path), run_id)
        self._spare = self._fd is not None
        self._pid = os.getpid()
        while self._fd is None:
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR | _NOFOLLOW, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise RunBusyError(run_id) from None
            # The holder before us unlinks the file before it unlocks: if we locked
            # a file that is no longer the one at the path, try again on the new one.
            try:
                current = os.stat(self.path).st_ino
            except FileNotFoundError:
                current = None
            if current == os.fstat(fd).st_ino:
                self._fd = fd
            else:
                os.close(fd)
        if not self._spare:  # (a spare holds this process's pid already)
            # The pid over whatever a killed holder left, then cut to it: never truncated
            # to zero first, which makes ext4 flush the file's data when it is closed (a
            # second device flush per run, for a file deleted unread).
            holder = f"{os.getpid()}\n".encode()
            os.pwrite(self._fd, holder, 0)
            os.ftruncate(self._fd, len(holder))

    def release(self) -> None:
        """Give the run up (idempotent). The record must be final before this."""
        fd = self._fd
        if fd is None:
            return
        self._fd = None
        if os.getpid() != self._pid:
            # A forked child releasing its parent's lease: the file and the lock are the
            # parent's (an unlock would drop the parent's lock too; a close does not).
            _unlink(str(self.path))
            os.close(fd)
            return
        # Off the path before unlocking: a checker that opens it afterwards sees no lease.
        # The file goes on as this process's spare (renamed: still never a lease of a
        # run), or is deleted.
        _SPARES.release(self._folder, str(self.path), fd, spare=self._spare)

    def __enter__(self) -> RunLease:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def _check_folder(store_path: Path, folder: str) -> None:
    """Make the lease folder if it is missing; refuse one that is a symbolic link (lease
    files are made and deleted only in the store). One ``lstat`` when it is there."""
    try:
        mode = os.lstat(folder).st_mode
    except FileNotFoundError:
        with contextlib.suppress(FileExistsError):  # made by another process meanwhile
            os.mkdir(folder)
        mode = os.lstat(folder).st_mode
    if stat.S_ISLNK(mode):
        raise StoreDamagedError(store_path, f"{LEASE_FOLDER}/ is a symbolic link, and "
                                "pinrun never makes or deletes lease files through one")
    if not stat.S_ISDIR(mode):
        raise FileExistsError(f"{folder} is not a folder")


class _Spares:
    """This process's spare lease files: per lease folder, one released file kept with
    its descriptor open (unlocked), for the next lease in that folder to link and lock.

    A folder's spare is taken by one lease at a time (the others make a file, as without
    spares), so no two leases of this process ever share a file, and so a lock.
    """

    #: Lease folders with a spare kept at once (a process records in a few stores).
    _FOLDERS: Final = 8

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # folder -> its spare's descriptor, or None while a lease holds the spare. A
        # folder is here exactly while its spare's name (_name) is this process's file.
        self._spares: dict[str, int | None] = {}
        #: Folders whose file system refused a hard link (made files only).
        self._no_links: set[str] = set()

    @staticmethod
    def _name(folder: str) -> str:
        return f"{folder}/.spare-{os.getpid()}.lock"

    def lock_at(self, folder: str, path: str, run_id: str) -> int | None:
        """``folder``'s spare linked at ``path`` and locked: the lease's descriptor; None
        when there is no spare free, or a file is at ``path`` already (the caller then
        opens that one, as without a spare)."""
        with self._lock:
            fd = self._spares.get(folder)
            if fd is None:
                return None
            self._spares[folder] = None  # taken
        spare = self._name(folder)
        try:
            os.link(spare, path, follow_symlinks=False)  # never over a file at the path
        except FileExistsError:
            self._set(folder, fd)
            return None
        except FileNotFoundError:  # the spare was deleted (by hand, say)
            self._drop(folder, fd)
            return None
        except OSError:  # a file system without hard links: no spares there
            self._drop(folder, fd)
            with self._lock:
                self._no_links.add(folder)
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            # Another lease of this run opened the new link and locked it first: the
            # file is its lease now, never this process's spare again.
            self._drop(folder, fd)
            raise RunBusyError(run_id) from None
        try:
            same = os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # unlinked by another process meanwhile: make a file as usual
            fcntl.flock(fd, fcntl.LOCK_UN)
            self._set(folder, fd)
            return None
        return fd

    def release(self, folder: str, path: str, fd: int, *, spare: bool) -> None:
        """Give up the lease ``fd`` holds on ``path``: off the path, then unlocked; kept as
        ``folder``'s spare (``spare``: it is that spare) when the folder has none."""
        if not spare:
            with self._lock:
                spare = folder not in self._spares and folder not in self._no_links
                if spare:
                    self._spares[folder] = None  # its name is about to be this file
            if spare:
                try:
                    os.replace(path, self._name(folder))  # off the path, atomically
                except OSError:
                    with self._lock:
                        del self._spares[folder]
                    spare = False
            if not spare:
                _unlink(path)
                os.close(fd)  # closing drops the lock
                return
        else:
            _unlink(path)  # the spare's own name stays
        fcntl.flock(fd, fcntl.LOCK_UN)
        self._set(folder, fd)

    def _set(self, folder: str, fd: int) -> None:
        """``fd`` is ``folder``'s spare again, free; the oldest folders' spares beyond
        :attr:`_FOLDERS` are deleted."""
        evicted: list[tuple[str, int]] = []
        with self._lock:
            self._spares.pop(folder, None)
            self._spares[folder] = fd  # (the newest last)
            for old in list(self._spares)[:max(0, len(self._spares) - self._FOLDERS)]:
                old_fd = self._spares[old]
                if old_fd is not None:
                    del self._spares[old]
                    evicted.append((old, old_fd))
        for old, old_fd in evicted:
            _unlink(self._name(old))
            os.close(old_fd)

    def _drop(self, folder: str, fd: int) -> None:
        """Give up ``folder``'s spare (taken by the caller): its name deleted, closed."""
        with self._lock:
            self._spares.pop(folder, None)
        _unlink(self._name(folder))
        os.close(fd)

    def remove_all(self) -> None:
        """Delete every free spare (at exit)."""
        with self._lock:
            free = [(folder, fd) for folder, fd in self._spares.items() if fd is not None]
            for folder, _ in free:
                del self._spares[folder]
        for folder, fd in free:
            _unlink(self._name(folder))
            os.close(fd)

    def forget(self) -> None:
        """In a forked child: the spares are the parent's (its names, its locks)."""
        spares, self._spares = self._spares, {}
        self._lock = threading.Lock()
        for fd in spares.values():
            if fd is not None:
                os.close(fd)  # the parent's own descriptors stay open


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


_SPARES = _Spares()
atexit.register(_SPARES.remove_all)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_SPARES.forget)


def is_live(store_path: Path, run_id: str) -> bool:
    """Whether some process holds the lease of run ``run_id`` now."""
    try:
        fd = os.open(_lease_path(store_path, run_id), os.O_RDONLY | _NOFOLLOW)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops the shared lock we may have taken
    return False
