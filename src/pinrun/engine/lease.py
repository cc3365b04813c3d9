"""Who is recording a run right now: a lock file per active run.

A recorder holds an exclusive ``flock`` on ``<store>/leases/<run id>.lock``
while it writes. The operating system drops the lock when the process dies,
however it dies, so a run whose record still says ``running`` but whose lease
nobody holds was interrupted: ``pinrun resume`` may take it over. The files
are not part of the store's content; a stale one is harmless and removed by
the next recorder that finishes or takes the run over.
"""

from __future__ import annotations

import fcntl
import os
import re
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
        self.path.parent.mkdir(exist_ok=True)
        if self.path.parent.is_symlink():  # lease files are made and deleted only in the store
            raise StoreDamagedError(store_path, f"{LEASE_FOLDER}/ is a symbolic link, and "
                                    "pinrun never makes or deletes lease files through one")
        self._fd: int | None = None
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
        # The pid over whatever a killed holder left, then cut to it: never truncated to
        # zero first, which makes ext4 flush the file's data when it is closed (a second
        # device flush per run, for a file deleted unread).
        holder = f"{os.getpid()}\n".encode()
        os.pwrite(self._fd, holder, 0)
        os.ftruncate(self._fd, len(holder))

    def release(self) -> None:
        """Give the run up (idempotent). The record must be final before this."""
        if self._fd is None:
            return
        # Unlink before unlocking: a checker that opens the file afterwards sees no lease.
        self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> RunLease:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


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
