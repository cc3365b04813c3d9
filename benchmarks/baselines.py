"""The implementations compared: pinrun, and three baselines with the same pipeline.

Every implementation stores the same thing for a value: the canonical JSON
(``orjson.dumps`` with sorted keys), named by BLAKE3-256 of ``b"value\\0"`` +
those bytes (pinrun's digest, so all of them produce identical keys), and
compressed with zstd level 3. Reads decompress, re-hash, compare with the
key and decode with orjson, so every read is integrity-checked.

The baselines' loops are written inline (local names, no helper call per
object), as hand-written code without any abstraction would be:

* :class:`RawLmdb` -- the pipeline straight into ``lmdb`` (one write
  transaction per batch, ``sync=True``: fsync on commit, as pinrun).
* :class:`SqliteWal` -- SQLite in WAL mode, ``synchronous=FULL`` (fsync of the
  WAL on commit), table ``(digest BLOB PRIMARY KEY, data BLOB)``, one
  transaction per batch of ``INSERT OR IGNORE``.
* :class:`FsObjects` -- one file per object as git's loose objects
  (``objects/ab/cdef...``), written to a temporary file then ``os.replace``-d;
  an object already present is skipped. Durability: one ``syncfs(2)`` of the
  file system per batch (the equivalent of one fsync per commit; an fsync per
  file, which git does not do by default, would be far slower).
"""

from __future__ import annotations

import ctypes
import itertools
import os
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final, Protocol

import blake3
import lmdb
import orjson
import zstandard

from pinrun.artifacts import codec
from pinrun.artifacts.digest import Digest
from pinrun.artifacts.store import Store

__all__ = [
    "IMPLEMENTATIONS",
    "VALUE_TAG",
    "FsObjects",
    "ObjectStore",
    "PinrunStore",
    "RawLmdb",
    "SqliteWal",
    "open_impl",
    "record_bytes",
]

#: pinrun's kind tag for values, hashed before the canonical bytes.
VALUE_TAG: Final = b"value\0"
ZSTD_LEVEL: Final = 3
_SORT: Final = orjson.OPT_SORT_KEYS
# Virtual address space only; large enough that the baseline never grows its map.
_RAW_MAP_SIZE: Final = 1 << 36


class ObjectStore(Protocol):
    """What the ingest and read benchmarks drive."""

    name: str

    def ingest(self, values: Sequence[Any], batch_size: int) -> list[Any]:
        """Store every value, committing once per ``batch_size``; returns the keys in order."""
        ...

    def read(self, keys: Sequence[Any]) -> Any:
        """Fetch, verify and decode the values under ``keys``; returns the last value.

        Decoded values are dropped as soon as the next one is read (as a reader that
        processes one object at a time would), so no round piles up millions of
        objects for the garbage collector to walk.
        """
        ...

    def close(self) -> None:
        """Release the store."""
        ...


class IntegrityError(Exception):
    """A baseline read bytes that do not hash to the key they were stored under."""


class RawLmdb:
    """The pipeline done inline into one LMDB database (no header, no abstraction)."""

    name = "raw-lmdb"

    def __init__(self, folder: Path, durable: bool = True) -> None:
        self.env = lmdb.open(str(folder), map_size=_RAW_MAP_SIZE, subdir=True,
                             sync=durable, metasync=durable, readahead=False)

    def ingest(self, values: Sequence[Any], batch_size: int) -> list[bytes]:
        """Encode, hash, compress and put every value; one transaction per batch."""
        dumps, hasher = orjson.dumps, blake3.blake3
        compress = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress
        keys: list[bytes] = []
        append = keys.append
        for start in range(0, len(values), batch_size):
            with self.env.begin(write=True) as txn:
                put = txn.put
                for value in values[start : start + batch_size]:
                    canonical = dumps(value, option=_SORT)
                    h = hasher(VALUE_TAG)
                    h.update(canonical)
                    key = h.digest()
                    put(key, compress(canonical), overwrite=False)
                    append(key)
        return keys

    def read(self, keys: Sequence[bytes]) -> Any:
        """Fetch, decompress, verify and decode each key, in one read transaction."""
        loads, hasher = orjson.loads, blake3.blake3
        decompress = zstandard.ZstdDecompressor().decompress
        value: Any = None
        with self.env.begin() as txn:
            get = txn.get
            for key in keys:
                stored = get(key)
                if stored is None:
                    raise KeyError(key.hex())
                canonical = decompress(stored)
                h = hasher(VALUE_TAG)
                h.update(canonical)
                if h.digest() != key:
                    raise IntegrityError(key.hex())
                value = loads(canonical)
        return value

    def close(self) -> None:
        """Close the environment."""
        self.env.close()


class SqliteWal:
    """SQLite, WAL journal, one table of (digest, zstd bytes)."""

    name = "sqlite-wal"

    def __init__(self, folder: Path, durable: bool = True) -> None:
        self.conn = sqlite3.connect(folder / "objects.sqlite", isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'OFF'}")
        self.conn.execute("CREATE TABLE IF NOT EXISTS objects "
                          "(digest BLOB PRIMARY KEY, data BLOB)")

    def ingest(self, values: Sequence[Any], batch_size: int) -> list[bytes]:
        """Encode, hash, compress every value; INSERT OR IGNORE, one transaction per batch."""
        dumps, hasher = orjson.dumps, blake3.blake3
        compress = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress
        execute, executemany = self.conn.execute, self.conn.executemany
        keys: list[bytes] = []
        append = keys.append
        for start in range(0, len(values), batch_size):
            rows: list[tuple[bytes, bytes]] = []
            add_row = rows.append
            for value in values[start : start + batch_size]:
                canonical = dumps(value, option=_SORT)
                h = hasher(VALUE_TAG)
                h.update(canonical)
                key = h.digest()
                add_row((key, compress(canonical)))
                append(key)
            execute("BEGIN")
            executemany("INSERT OR IGNORE INTO objects (digest, data) VALUES (?, ?)", rows)
            execute("COMMIT")
        return keys

    def read(self, keys: Sequence[bytes]) -> Any:
        """SELECT, decompress, verify and decode each key, in one read transaction."""
        loads, hasher = orjson.loads, blake3.blake3
        decompress = zstandard.ZstdDecompressor().decompress
        execute = self.conn.execute
        query = "SELECT data FROM objects WHERE digest = ?"
        value: Any = None
        execute("BEGIN")
        try:
            for key in keys:
                canonical = decompress(execute(query, (key,)).fetchone()[0])
                h = hasher(VALUE_TAG)
                h.update(canonical)
                if h.digest() != key:
                    raise IntegrityError(key.hex())
                value = loads(canonical)
        finally:
            execute("COMMIT")
        return value

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()


def _load_libc() -> Any:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:  # pragma: no cover - not Linux
        return None


_LIBC: Final = _load_libc()


def syncfs(folder: str) -> None:
    """Flush the whole file system holding ``folder`` (``syncfs(2)``, else ``sync(2)``)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        if _LIBC is None or not hasattr(_LIBC, "syncfs") or _LIBC.syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


class FsObjects:
    """One zstd file per object under ``objects/ab/cdef...``, as git's loose objects."""

    name = "fs-objects"

    def __init__(self, folder: Path, durable: bool = True) -> None:
        self.root = str(folder / "objects")
        os.makedirs(self.root, exist_ok=True)
        self.durable = durable
        self._tmp_names = itertools.count()

    def ingest(self, values: Sequence[Any], batch_size: int) -> list[bytes]:
        """Encode, hash, compress, write temp + rename per object; syncfs per batch."""
        dumps, hasher = orjson.dumps, blake3.blake3
        compress = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress
        root, exists, replace = self.root, os.path.exists, os.replace
        fs_open, fs_write, fs_close = os.open, os.write, os.close
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        made = set(os.listdir(root))
        tmp_names = self._tmp_names
        pid = os.getpid()
        keys: list[bytes] = []
        append = keys.append
        for start in range(0, len(values), batch_size):
            for value in values[start : start + batch_size]:
                canonical = dumps(value, option=_SORT)
                h = hasher(VALUE_TAG)
                h.update(canonical)
                key = h.digest()
                append(key)
                name = key.hex()
                fan = name[:2]
                final = f"{root}/{fan}/{name[2:]}"
                if fan not in made:
                    os.mkdir(f"{root}/{fan}")
                    made.add(fan)
                elif exists(final):
                    continue
                data = compress(canonical)
                tmp = f"{root}/{fan}/tmp_{pid}_{next(tmp_names)}"
                fd = fs_open(tmp, flags, 0o444)
                try:
                    if fs_write(fd, data) != len(data):
                        raise OSError(f"short write to {tmp}")
                finally:
                    fs_close(fd)
                replace(tmp, final)
            if self.durable:
                syncfs(root)
        return keys

    def read(self, keys: Sequence[bytes]) -> Any:
        """Open, read, decompress, verify and decode each object file."""
        loads, hasher = orjson.loads, blake3.blake3
        decompress = zstandard.ZstdDecompressor().decompress
        root = self.root
        value: Any = None
        for key in keys:
            name = key.hex()
            with open(f"{root}/{name[:2]}/{name[2:]}", "rb") as f:
                canonical = decompress(f.read())
            h = hasher(VALUE_TAG)
            h.update(canonical)
            if h.digest() != key:
                raise IntegrityError(name)
            value = loads(canonical)
        return value

    def close(self) -> None:
        """Nothing to release."""


class PinrunStore:
    """pinrun's public API: ``Store.batch()`` + ``put_value``; ``get_value`` / ``load_many``."""

    name = "pinrun"

    def __init__(self, folder: Path, durable: bool = True) -> None:
        self.store = Store.open(folder, create=True, durable=durable)

    def ingest(self, values: Sequence[Any], batch_size: int) -> list[Digest]:
        """``put_value`` every value, one ``store.batch()`` (one transaction) per batch."""
        digests: list[Digest] = []
        append = digests.append
        for start in range(0, len(values), batch_size):
            with self.store.batch() as batch:
                put_value = batch.put_value
                for value in values[start : start + batch_size]:
                    append(put_value(value))
        return digests

    def read(self, keys: Sequence[Digest]) -> Any:
        """``store.get_value`` per key (each a verified read in its own transaction)."""
        get_value = self.store.get_value
        value: Any = None
        for key in keys:
            value = get_value(key)
        return value

    def read_many(self, keys: list[Digest]) -> Any:
        """``store.load_many`` (one transaction, verified) then ``codec.decode`` each payload."""
        decode = codec.decode
        value: Any = None
        for _, payload in self.store.load_many(keys):
            value = decode(payload)
        return value

    def close(self) -> None:
        """Close the store."""
        self.store.close()


#: The ingest implementations, baselines first so pinrun's ratios can be computed.
IMPLEMENTATIONS: Final[dict[str, Callable[[Path, bool], ObjectStore]]] = {
    RawLmdb.name: RawLmdb,
    SqliteWal.name: SqliteWal,
    FsObjects.name: FsObjects,
    PinrunStore.name: PinrunStore,
}


def open_impl(name: str, folder: Path, durable: bool = True) -> ObjectStore:
    """A new instance of the implementation ``name`` on ``folder``."""
    return IMPLEMENTATIONS[name](folder, durable)


def record_bytes(store: Store) -> tuple[int, int]:
    """(number of records, sum of their sizes in bytes) in a pinrun store."""
    count = total = 0
    for _, record in store.iter_records():
        count += 1
        total += len(record)
    return count, total
