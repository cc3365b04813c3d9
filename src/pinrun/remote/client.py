"""The narrow interface pinrun needs from an object store, and its folder implementation.

A remote is a flat namespace of immutable objects: pinrun only ever creates
an object if it is absent (``put_new``), reads whole objects or byte ranges,
and lists by prefix. Every name pinrun writes is the BLAKE3 digest of the
bytes it holds, so two writers racing to create the same name write the same
bytes, and nothing is ever overwritten: no lock and no compare-and-swap is
needed for a push to be safe beside any number of other pushes.

S3-compatible stores are in :mod:`pinrun.remote.s3` (through obstore, which
is imported only when such a remote is used); a folder on a shared disk is
here. Keep this interface small, so the client can be swapped.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol

from pinrun.errors import InputError, RemoteError

__all__ = ["MAX_OBJECT", "FolderClient", "ObjectClient", "check_key"]

#: No object pinrun reads whole (a marker, an index entry) is larger than this.
MAX_OBJECT = 256 << 20


class ObjectClient(Protocol):
    """What pinrun asks of a remote's object store."""

    #: How the remote is shown in messages (its URL, without secrets).
    url: str

    def get(self, key: str) -> bytes | None:
        """The whole object, or None when it does not exist."""

    def get_ranges(self, key: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        """The bytes ``[start, end)`` of each range (a short read is an error)."""

    def put_new(self, key: str, data: bytes) -> bool:
        """Create the object unless it exists; False when it already did."""

    def list(self, prefix: str) -> Iterator[tuple[str, int]]:
        """``(key, size)`` of every object whose key starts with ``prefix``."""


_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_./")


def check_key(key: str, where: str = "the remote") -> str:
    """``key`` if it is a name pinrun writes (lowercase, digits, ``-_./``), else an error.

    Keys listed from a remote are someone else's text: checked before they
    name a file or a request.
    """
    if (not key or len(key) > 512 or not set(key) <= _KEY_CHARS or key.startswith("/")
            or any(part in ("", ".", "..") for part in key.split("/"))):
        raise RemoteError(where, f"it holds an object named {key[:80]!r}, which pinrun "
                          "never writes; is this a pinrun remote?")
    return key


class FolderClient:
    """A remote in a folder (a shared disk): objects are files, created atomically.

    A new object is written to a temporary file and then hard-linked into
    place, which fails if the name exists: readers never see half a file,
    and of two writers of one name, exactly one creates it.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = root.as_uri()
        if root.exists() and not root.is_dir():
            raise InputError(f"remote {root} is a file, not a folder; give a folder")

    def _path(self, key: str) -> Path:
        return self.root / check_key(key, self.url)

    def get(self, key: str) -> bytes | None:
        try:
            # Not following a FIFO or device someone put there: it could block forever.
            fd = os.open(self._path(key), os.O_RDONLY | os.O_NONBLOCK)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise RemoteError(self.url, f"reading {key} failed ({exc.strerror})") from None
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_OBJECT:
                raise RemoteError(self.url, f"{key} is not a file pinrun wrote (a special "
                                  "file, or larger than any object pinrun writes)")
            return handle.read()

    def get_ranges(self, key: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        out = []
        try:
            fd = os.open(self._path(key), os.O_RDONLY | os.O_NONBLOCK)
            with os.fdopen(fd, "rb") as handle:
                if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                    raise RemoteError(self.url, f"{key} is not a file pinrun wrote")
                for start, end in ranges:
                    handle.seek(start)
                    data = handle.read(end - start)
                    if len(data) != end - start:
                        raise RemoteError(self.url, f"{key} is shorter than its index says "
                                          f"(it ends before byte {end})")
                    out.append(data)
        except FileNotFoundError:
            raise RemoteError(self.url, f"{key} is missing, though an index names it") from None
        except OSError as exc:
            raise RemoteError(self.url, f"reading {key} failed ({exc.strerror})") from None
        return out

    def put_new(self, key: str, data: bytes) -> bool:
        target = self._path(key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=target.parent)
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.chmod(tmp, 0o644)
                os.link(tmp, target)
            except FileExistsError:
                return False
            finally:
                os.unlink(tmp)
        except OSError as exc:
            raise RemoteError(self.url, f"writing {key} failed ({exc.strerror})") from None
        return True

    def list(self, prefix: str) -> Iterator[tuple[str, int]]:
        folder = self.root / prefix.rpartition("/")[0]
        if not folder.is_dir():
            return
        base = len(str(self.root)) + 1
        try:
            names = sorted(folder.rglob("*"))
        except OSError as exc:
            raise RemoteError(self.url, f"listing {prefix} failed ({exc.strerror})") from None
        for path in names:
            key = str(path)[base:]
            if path.is_file() and key.startswith(prefix) and not path.name.startswith(".tmp-"):
                yield key, path.stat().st_size
