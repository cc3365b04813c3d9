"""The store: content-addressed objects and named refs in one LMDB folder.

Reading::

    with pinrun.open_store() as store:          # .pinrun/ found upward from here
        state = store.get_snapshot(digest)

Writing goes through a batch, committed as one transaction when the block
ends (and discarded if it raises), so a logical operation's objects and the
refs that name them appear together or not at all::

    with store.batch() as batch:
        root = batch.put_snapshot({"order_id": "A1", "items": [...]})
        batch.set_ref("snapshots/latest", root)

Everything is encoded, hashed and compressed before the transaction starts;
the transaction only copies bytes, which keeps the write lock short.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from pinrun.artifacts import codec, rebuild, shapes
from pinrun.artifacts.batch import (
    _OFFERED_BYTES,
    _OFFERED_OBJECTS,
    DICTIONARY_REF,
    WriteBatch,
    read_counter,
)
from pinrun.artifacts.dictionary import (
    DICTIONARY_MAX_PAYLOAD,
    DICTIONARY_MIN_PAYLOAD,
    TRAINING_SAMPLES,
    Dictionary,
    dictionary_for,
    train_dictionary,
)
from pinrun.artifacts.digest import DIGEST_SIZE, Digest, Kind, checked_digest, validate_prefix
from pinrun.artifacts.discovery import default_store_path, find_store
from pinrun.artifacts.lmdb_env import (
    Environment,
    current_pid,
    open_environment,
    release_environment,
)
from pinrun.artifacts.objects import (
    EncodedObject,
    RecordInfo,
    check_record,
    open_record,
    read_header,
    unpack_record,
)
from pinrun.artifacts.refs import (
    ANY,
    RefExpectation,
    is_ref_name,
    stored_ref,
    stored_ref_problem,
    validate_ref_name,
)
from pinrun.errors import (
    AmbiguousDigestError,
    CorruptObjectError,
    InputError,
    MissingObjectError,
    StoreDamagedError,
    StoreError,
    StoreNotFoundError,
    UnknownDigestError,
    UnknownRefError,
)

__all__ = ["DICTIONARY_REF", "Store", "WriteBatch", "open_store"]

#: The format a new store is made in: 2, whose refs carry a check (see
#: :mod:`pinrun.artifacts.refs`). Format 1 stores are read and written as they are until
#: ``pinrun upgrade`` (:mod:`pinrun.artifacts.upgrade`).
STORE_FORMAT: Final = b"2"
#: The format before refs carried checks.
UNCHECKED_REFS_FORMAT: Final = b"1"
#: Every format this pinrun reads and writes.
STORE_FORMATS: Final = (UNCHECKED_REFS_FORMAT, STORE_FORMAT)
# Digests of structured objects whose shape this handle has checked already.
_SHAPES_REMEMBERED: Final = 65536
# Refs read per transaction by Store.iter_refs: few at first (a listing of the
# newest runs stops early), more once a caller keeps reading.
_REF_CHUNK_FIRST: Final = 64
_REF_CHUNK_MOST: Final = 4096
# Raw bytes a user stored: not what a dictionary of pinrun's records learns from.
_BLOB_CODE: Final = Kind.BLOB.code


class Store:
    """A pinrun store folder, open for reading and writing.

    Safe to share between threads; several processes may open the same folder
    at once. Use :func:`open_store` (or ``Store.open``) rather than the
    constructor, and close it (or use it as a context manager) when done.
    """

    def __init__(self, path: Path, env: Environment) -> None:
        self.path = path
        self._env = env
        self._closed = False
        self._shapes_checked: set[bytes] = set()
        #: Pins (code, step, flow, environment objects) this process committed or found
        #: stored: a commit looks them up only inside its transaction (see commit_batch).
        self.known_pins = KnownPins()
        #: Whether refs are stored with a check (a store of format 2; set at open).
        self.checks_refs = True

    # ------------------------------------------------------------ lifecycle

    @classmethod
    def open(
        cls,
        path: str | Path | None = None,
        *,
        create: bool = False,
        map_size: int | None = None,
        durable: bool = True,
        readonly: bool = False,
    ) -> Store:
        """Open the store at ``path``, or the one found upward from the working directory.

        ``create=True`` makes the folder when it does not exist. ``map_size``
        sets the initial LMDB map (it grows by itself). ``durable=False``
        skips the fsync at each commit: faster, but a power cut may lose the
        latest commits (never corrupting older ones). ``readonly=True`` opens
        it for reading only (a store this process may not write is opened so
        by itself); writes then raise :class:`StoreReadOnlyError`.
        """
        folder = Path(path) if path is not None else find_store(Path.cwd())
        data_file = folder / "data.mdb"
        if data_file.is_file() and not create and data_file.stat().st_size == 0:
            # LMDB would make an empty store of it: what was there is gone.
            raise StoreDamagedError(folder, "its data.mdb is empty (truncated to 0 bytes)")
        if not data_file.exists():
            if not create:
                raise StoreNotFoundError(str(folder), searched_upward=False)
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create a store at {folder}: {exc.strerror}. "
                                 "Choose a writable folder.") from exc
        elif not folder.is_dir():
            raise StoreNotFoundError(str(folder), searched_upward=False)
        env = open_environment(folder, map_size=map_size, durable=durable,
                               readonly=readonly and not create)
        store = cls(_absolute(folder), env)
        try:
            store._check_format(create)
        except BaseException:
            store.close()
            raise
        return store

    def _check_format(self, create: bool) -> None:
        meta = self._env.dbs["meta"]

        def check(txn: Any) -> bytes | None:
            found: bytes | None = txn.get(b"format", db=meta)
            if found is None and create:
                txn.put(b"format", STORE_FORMAT, db=meta)
                return STORE_FORMAT
            return found

        with self._env.read() as txn:
            found: bytes | None = txn.get(b"format", db=meta)
            holds_data = any(txn.stat(self._env.dbs[name])["entries"]
                             for name in ("objects", "refs"))
        if found is None and create:
            found = self._env.write(check)  # the write lock only to create a store
        if found is None and holds_data:
            raise StoreDamagedError(self.path, "its format marker is gone while it holds "
                                    "objects or refs (its meta database is damaged)")
        if found is None:
            raise StoreNotFoundError(str(self.path), searched_upward=False)
        if found not in STORE_FORMATS:
            raise StoreError(f"the store at {self.path} has format "
                             f"{found[:16].decode(errors='replace')!r}, which this pinrun "
                             "cannot read; upgrade pinrun (or, if no newer pinrun wrote it, "
                             "its format marker is damaged: `pinrun fsck` checks it).")
        self.checks_refs = found != UNCHECKED_REFS_FORMAT

    def close(self) -> None:
        """Release the store; other handles to the same folder stay open."""
        if not self._closed:
            self._closed = True
            if self._env.pid == current_pid():  # a forked child never closes its parent's handle
                release_environment(self._env)

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    @property
    def environment(self) -> Environment:
        """The LMDB environment (for maintenance code in this package)."""
        if self._closed:
            raise StoreError(f"the store at {self.path} was closed; open it again to use it.")
        if self._env.pid != current_pid():
            # Inherited through fork: LMDB handles must not cross a fork, so the
            # child opens its own (the parent's are left alone, never closed here).
            self._env = open_environment(self.path, durable=self._env.durable,
                                         readonly=self._env.readonly)
        return self._env

    @property
    def durable(self) -> bool:
        """Whether every commit is synced to disk (``durable=True`` at open)."""
        return self.environment.durable

    def sync(self) -> None:
        """Force what was committed to disk (a no-op in effect for durable stores)."""
        self.environment.sync()

    # --------------------------------------------------------------- writes

    @contextmanager
    def batch(self) -> Iterator[WriteBatch]:
        """A :class:`WriteBatch` committed when the block ends without an error."""
        batch = WriteBatch(self)
        yield batch
        if not batch.committed:
            batch.commit()

    def put_value(self, value: Any) -> Digest:
        """Store one value in its own transaction; returns its digest."""
        with self.batch() as batch:
            return batch.put_value(value)

    def put_blob(self, data: bytes) -> Digest:
        """Store raw bytes in their own transaction; returns their digest."""
        with self.batch() as batch:
            return batch.put_blob(data)

    def put_snapshot(self, state: Mapping[str, Any]) -> Digest:
        """Store a state snapshot in its own transaction; returns the tree digest."""
        with self.batch() as batch:
            return batch.put_snapshot(state)

    def put_objects(self, objects: list[EncodedObject]) -> int:
        """Store already-built records in one transaction; returns how many were new."""
        batch = WriteBatch(self)
        for obj in objects:
            batch.add(obj)
        return batch.commit()

    # ---------------------------------------------------------- dictionary

    def _load_dictionary(self, digest: Digest, txn: Any = None) -> bytes:
        """The dictionary's blob, read in ``txn`` when given (a write transaction's own
        reads: no second transaction in this thread), else in a read of its own."""
        record = (self.environment.get("objects", digest.raw) if txn is None
                  else txn.get(digest.raw, db=self.environment.dbs["objects"]))
        if record is None:
            raise MissingObjectError(digest, referenced_by="a record compressed with it")
        kind, payload = open_record(digest, record)  # a dictionary is never dict-compressed
        if kind is not Kind.BLOB:
            raise CorruptObjectError(digest, None, f"records use it as a dictionary, but it "
                                     f"is a {kind.value}")
        return payload

    def current_dictionary(self) -> Dictionary | None:
        """The dictionary new small objects are compressed with, if one was trained."""
        target = self.get_ref(DICTIONARY_REF)
        return dictionary_for(target, self._load_dictionary) if target is not None else None

    def dictionary_named(self, raw: bytes | None, txn: Any = None) -> Dictionary | None:
        """The dictionary the dictionary ref's value ``raw`` names (read by the caller in
        its own transaction, ``txn``: given when that is a write transaction, which then
        reads the dictionary too), or None when there is none."""
        if raw is None:
            return None
        target = self.decode_ref(DICTIONARY_REF.encode(), raw)[1]
        if txn is None:
            return dictionary_for(target, self._load_dictionary)
        return dictionary_for(target, lambda digest: self._load_dictionary(digest, txn))

    def train_dictionary(self) -> Digest | None:
        """Train a compression dictionary on a sample of the small records already stored
        (of every kind but ``blob``: a recording store's small records are mostly its trees
        and run records, which a dictionary of values alone compresses worse than none).

        New small objects are compressed with it from then on (existing records
        keep theirs). The first batch with enough small objects trains one by
        itself; this is for stores that grew through many small batches.
        Returns the dictionary's digest, or ``None`` when there are too few
        small values to learn from.
        """
        samples: list[bytes] = []
        for key, record in self.iter_records():
            if len(key) == 32 and record[1] != _BLOB_CODE \
                    and DICTIONARY_MIN_PAYLOAD <= len(record) <= DICTIONARY_MAX_PAYLOAD:
                samples.append(self.load(Digest(key))[1])
                if len(samples) >= TRAINING_SAMPLES:
                    break
        if len(samples) < TRAINING_SAMPLES // 4:
            return None
        dictionary = train_dictionary(samples)
        with self.batch() as batch:
            batch.put(Kind.BLOB, dictionary.data)
            batch.set_ref(DICTIONARY_REF, dictionary.digest)
        return dictionary.digest

    # ---------------------------------------------------------------- reads

    def load(self, digest: Digest) -> tuple[Kind, bytes]:
        """An object's kind and payload, verified against its digest."""
        record = self.environment.get("objects", digest.raw)
        if record is None:
            raise MissingObjectError(digest)
        return open_record(digest, record, self._load_dictionary)

    def load_many(self, digests: list[Digest], *, proven: bool = True,
                  ) -> list[tuple[Kind, bytes]]:
        """Like :meth:`load` for many objects, read in one transaction.

        With ``proven=False`` the payloads are decompressed and their sizes checked, but
        not hashed: for a reader whose answer is only a hint that a later, proven read
        confirms (``verify``'s seed pass), never for data anything rests on.
        """
        env = self.environment  # first: in a forked child this opens the child's handle
        objects_db = env.dbs["objects"]
        with env.read() as txn:
            get = txn.get  # (positional arguments: py-lmdb parses keywords slowly)
            records = [get(d.raw, None, objects_db) for d in digests]
        out = []
        opened = open_record if proven else unpack_record
        for digest, record in zip(digests, records, strict=True):
            if record is None:
                raise MissingObjectError(digest)
            out.append(opened(digest, record, self._load_dictionary))
        return out

    def check_many(self, objects: Mapping[Digest, tuple[Kind, bytes | None]]) -> None:
        """Prove each object stored whole, read in one transaction: ``objects`` maps
        each digest to its kind and payload, when the caller has them and hashed them
        to that digest itself (then the stored record is compared with them, not
        hashed again: :func:`~pinrun.artifacts.objects.check_record`), else to
        ``(kind, None)`` (read and re-hashed, as :meth:`load` does). A missing or
        damaged object raises what :meth:`load` raises for it."""
        self.check_many_raw({digest.raw: made for digest, made in objects.items()})

    def check_many_raw(self, objects: Mapping[bytes, tuple[Kind, bytes | None]]) -> None:
        """:meth:`check_many` of objects named by their raw digests (a replay's: bytes
        are cheaper keys than :class:`Digest` objects)."""
        env = self.environment  # first: in a forked child this opens the child's handle
        objects_db = env.dbs["objects"]
        with env.read() as txn:
            get = txn.get  # (positional arguments: py-lmdb parses keywords slowly)
            records = [(raw, get(raw, None, objects_db)) for raw in objects]
        load_dictionary = self._load_dictionary
        for raw, record in records:
            # (Digest(raw) checks raw first: a key of another size raises as it should.)
            digest = checked_digest(raw) if type(raw) is bytes and len(raw) == DIGEST_SIZE \
                else Digest(raw)
            if record is None:
                raise MissingObjectError(digest)
            kind, payload = objects[raw]
            if payload is None:
                open_record(digest, record, load_dictionary)
            else:
                check_record(digest, record, kind, payload, load_dictionary)

    def get_object(self, digest: Digest, kind: Kind) -> Any:
        """The decoded payload of an object that must be of ``kind`` (a step, a flow...)."""
        found, payload = self.load(digest)
        if found is not kind:
            raise CorruptObjectError(digest, None, f"expected a {kind.value} object, found a "
                                     f"{found.value} one")
        value = codec.decode(payload)
        # Damaged before it was hashed, or crafted. Once per digest and handle: a
        # digest names one content forever, and load() re-hashes it at every read.
        if kind in shapes.SHAPED_KINDS and digest.raw not in self._shapes_checked:
            shapes.check_shape(digest, kind, value)
            if len(self._shapes_checked) >= _SHAPES_REMEMBERED:
                self._shapes_checked.clear()
            self._shapes_checked.add(digest.raw)
        return value

    def get_value(self, digest: Digest) -> Any:
        """The value stored under ``digest`` (a value, blob or snapshot)."""
        return rebuild.load_entry(self, digest)

    def get_snapshot(self, digest: Digest) -> dict[str, Any]:
        """The state a snapshot tree holds."""
        return rebuild.load_snapshot(self, digest)

    def has(self, digest: Digest) -> bool:
        """True when the object is stored (without verifying it)."""
        with self.environment.read() as txn:
            return txn.get(digest.raw, db=self._env.dbs["objects"]) is not None

    def info(self, digest: Digest) -> RecordInfo:
        """What an object's header says: kind, compression, sizes."""
        with self.environment.read() as txn:
            record = txn.get(digest.raw, db=self._env.dbs["objects"])
        if record is None:
            raise MissingObjectError(digest)
        return read_header(digest, record)

    def resolve(self, text: str) -> Digest:
        """The digest a ref name, a full digest or a unique prefix (>= 6 hex) names.

        A name that is a set ref wins; a name that is not hexadecimal is a ref
        name, and an unknown one raises :class:`~pinrun.errors.UnknownRefError`.
        """
        cleaned = text.strip()
        is_hex = bool(cleaned) and all(ch in "0123456789abcdefABCDEF" for ch in cleaned)
        try:
            target = self.get_ref(cleaned)
        except InputError:
            target = None  # not even a valid ref name: treat it as a digest below
        if target is not None:
            return target
        if not is_hex and ("/" in cleaned or cleaned.isidentifier()):
            raise UnknownRefError(cleaned)
        prefix = validate_prefix(cleaned)  # raises the precise error for anything else
        matches = self._match_prefix(prefix, limit=6)
        if not matches:
            raise UnknownDigestError(prefix)
        if len(matches) > 1:
            raise AmbiguousDigestError(prefix, matches)
        return matches[0]

    def _match_prefix(self, prefix: str, limit: int) -> list[Digest]:
        start = bytes.fromhex(prefix + "0" * (len(prefix) % 2))  # lowest key with this prefix
        found: list[Digest] = []
        with self.environment.read() as txn:
            cursor = txn.cursor(db=self._env.dbs["objects"])
            if cursor.set_range(start):
                for key in cursor.iternext(keys=True, values=False):
                    if not key.hex().startswith(prefix):
                        break
                    found.append(Digest(key))
                    if len(found) >= limit:
                        break
        return found

    def iter_records(self, chunk: int = 1024) -> Iterator[tuple[bytes, bytes]]:
        """Every stored (key, raw record), in key order.

        Records are read ``chunk`` at a time, each chunk in its own short read
        transaction, so the caller may write to the store while iterating (a
        paused iterator holds no transaction). Objects added or removed
        meanwhile may or may not be seen. Keys are raw 32-byte digests in a
        healthy store; ``fsck`` reports any other.
        """
        objects_db = self.environment.dbs["objects"]
        after: bytes | None = None
        while True:
            with self.environment.read() as txn:
                cursor = txn.cursor(db=objects_db)
                found = cursor.set_range(after) if after is not None else cursor.first()
                if found and after is not None and cursor.key() == after:
                    found = cursor.next()
                rows: list[tuple[bytes, bytes]] = []
                while found and len(rows) < chunk:
                    rows.append((cursor.key(), cursor.value()))
                    found = cursor.next()
            yield from rows
            if not found or not rows:
                return
            after = rows[-1][0]

    def object_count(self) -> int:
        """How many objects the store holds."""
        with self.environment.read() as txn:
            return int(txn.stat(self._env.dbs["objects"])["entries"])

    def counters(self) -> dict[str, int]:
        """Running totals of what writers offered (duplicates included)."""
        env = self.environment
        # Kept in the main database; a store written by an older pinrun holds part of
        # each total in ``meta`` (see batch.COUNTER_KEYS).
        dbs = (env.dbs["meta"], env.main_db)
        with env.read() as txn:
            return {
                "offered_objects": sum(read_counter(txn, db, _OFFERED_OBJECTS) for db in dbs),
                "offered_raw_bytes": sum(read_counter(txn, db, _OFFERED_BYTES) for db in dbs),
            }

    # ----------------------------------------------------------------- refs

    def get_ref(self, name: str) -> Digest | None:
        """The digest ``name`` points to, or ``None`` when unset."""
        key = validate_ref_name(name).encode()
        raw = self.environment.get("refs", key)
        return self.decode_ref(key, raw)[1] if raw is not None else None

    def get_refs(self, names: list[str]) -> list[Digest | None]:
        """:meth:`get_ref` of each name, read in one transaction."""
        keys = [validate_ref_name(name).encode() for name in names]
        with self.environment.read() as txn:
            raws = [txn.get(key, db=self._env.dbs["refs"]) for key in keys]
        return [self.decode_ref(key, raw)[1] if raw is not None else None
                for key, raw in zip(keys, raws, strict=True)]

    def ref(self, name: str) -> Digest:
        """The digest ``name`` points to; :class:`UnknownRefError` when unset."""
        target = self.get_ref(name)
        if target is None:
            raise UnknownRefError(name)
        return target

    def refs(self, prefix: str = "", *, skip_damaged: bool = False) -> dict[str, Digest]:
        """Every ref whose name starts with ``prefix``, sorted by name.

        A damaged ref raises :class:`StoreDamagedError`, or with ``skip_damaged``
        is left out (for a listing that goes on without it: fsck names it).
        """
        out: dict[str, Digest] = {}
        with self.environment.read() as txn:
            cursor = txn.cursor(db=self._env.dbs["refs"])
            low = prefix.encode()
            if cursor.set_range(low):
                for key, raw in cursor:
                    if not key.startswith(low):
                        break
                    try:
                        name, target = self.decode_ref(key, raw)
                    except StoreDamagedError:
                        if skip_damaged:
                            continue
                        raise
                    out[name] = target
        return out

    def iter_refs(self, prefix: str = "", *, reverse: bool = False
                  ) -> Iterator[tuple[str, Digest]]:
        """Each ref whose name starts with ``prefix``, in name order (``reverse``: last first).

        Lazy, unlike :meth:`refs`: what a caller stops reading is never read,
        so the newest runs (``runs/<id>`` sorts by time) cost the same in a
        store of a thousand runs as in one of a million. Refs are read a few
        at a time, each batch in its own short read transaction (the first
        small, later ones larger), so the caller may write meanwhile; refs
        set or deleted while iterating may or may not be seen.
        """
        low = prefix.encode()
        # The first key past every key with the prefix (damaged ones too, which a listing
        # must meet and refuse); None: past the end of the database.
        high = _successor(low)
        after: bytes | None = None  # the last key yielded; the next batch starts past it
        chunk = _REF_CHUNK_FIRST
        while True:
            with self.environment.read() as txn:
                cursor = txn.cursor(db=self._env.dbs["refs"])
                rows = (self._refs_backward(cursor, after if after is not None else high,
                                            low, chunk) if reverse else
                        self._refs_forward(cursor, after if after is not None else low,
                                           after is not None, low, chunk))
            for key, raw in rows:
                yield self.decode_ref(key, raw)
            if len(rows) < chunk:
                return
            after = rows[-1][0]
            chunk = min(chunk * 4, _REF_CHUNK_MOST)

    @staticmethod
    def _refs_forward(cursor: Any, start: bytes, skip_start: bool, low: bytes,
                      chunk: int) -> list[tuple[bytes, bytes]]:
        """Up to ``chunk`` (key, value) rows from ``start`` up, while they have prefix ``low``."""
        rows: list[tuple[bytes, bytes]] = []
        found = cursor.set_range(start)
        if found and skip_start and cursor.key() == start:
            found = cursor.next()
        while found and len(rows) < chunk:
            key = cursor.key()
            if not key.startswith(low):
                break
            rows.append((key, cursor.value()))
            found = cursor.next()
        return rows

    @staticmethod
    def _refs_backward(cursor: Any, bound: bytes | None, low: bytes,
                       chunk: int) -> list[tuple[bytes, bytes]]:
        """Up to ``chunk`` rows below ``bound`` (exclusive; None: from the last key),
        downward, while they have ``low``."""
        rows: list[tuple[bytes, bytes]] = []
        # The first key >= bound, then one back; past the end of the database, the last key.
        found = cursor.prev() if bound is not None and cursor.set_range(bound) \
            else cursor.last()
        while found and len(rows) < chunk:
            key = cursor.key()
            if not key.startswith(low):
                break
            rows.append((key, cursor.value()))
            found = cursor.prev()
        return rows

    def decode_ref(self, key: bytes, raw: bytes) -> tuple[str, Digest]:
        """A ref's name and target as stored under ``key``; ``StoreDamagedError`` when the
        key is no ref name, or its value no digest (and check, format 2) of that name."""
        problem = stored_ref_problem(key, raw, self.checks_refs)
        if problem is None:
            try:
                name = key.decode()
            except UnicodeDecodeError:
                problem = "has a name that is not UTF-8"
            else:
                if is_ref_name(name):
                    return name, Digest(raw[:DIGEST_SIZE])
                problem = "is no valid ref name"
        elif not self.checks_refs and self.refresh_format():
            return self.decode_ref(key, raw)  # upgraded since this handle read its format
        raise StoreDamagedError(self.path, f"ref {key[:64]!r} {problem}")

    def refresh_format(self, txn: Any = None) -> bool:
        """Read the format marker again (in ``txn`` when given): a handle that could not
        hold ``open.lock`` (a read-only folder) may see its store upgraded under it.
        Returns whether the store's refs carry checks now."""
        meta = self._env.dbs["meta"]
        if txn is not None:
            found = txn.get(b"format", None, meta)
        else:
            with self._env.read() as reader:
                found = reader.get(b"format", None, meta)
        self.checks_refs = found not in (None, UNCHECKED_REFS_FORMAT)
        return self.checks_refs

    def stored_ref(self, key: bytes, target: bytes) -> bytes:
        """The value this store keeps for ref ``key`` (UTF-8) -> raw digest ``target``."""
        return stored_ref(key, target, self.checks_refs)

    def set_ref(self, name: str, digest: Digest, *, expected: RefExpectation = ANY) -> None:
        """Point ``name`` at ``digest`` (compare-and-swap when ``expected`` is given)."""
        batch = WriteBatch(self)
        batch.set_ref(name, digest, expected=expected)
        batch.commit()

    def delete_ref(self, name: str, *, expected: RefExpectation = ANY) -> None:
        """Remove ``name`` (compare-and-swap when ``expected`` is given)."""
        batch = WriteBatch(self)
        batch.delete_ref(name, expected=expected)
        batch.commit()


def _successor(prefix: bytes) -> bytes | None:
    """The least key greater than every key starting with ``prefix`` (None: there is none,
    the prefix is empty or all 0xff)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])


class KnownPins:
    """The raw digests of objects a process saw committed: bounded, it forgets them all
    when it grows past its bound (the pins of the flows a process records now are few).

    Each set is tagged with the store's gc generation (see
    :func:`~pinrun.artifacts.batch.read_gc_generation`) its commits read: only ``gc``
    deletes objects, and it moves the generation on in the transaction that deletes, so
    while a commit reads the same generation every digest in the set is still stored
    and need not be looked up (:meth:`stored_at`)."""

    __slots__ = ("_state",)
    _BOUND = 4096

    def __init__(self) -> None:
        # (gc generation, digests): replaced whole, so a reader never pairs a set with
        # another generation than the one its digests were stored at.
        self._state: tuple[int, set[bytes]] = (-1, set())

    def __contains__(self, raw: object) -> bool:
        return raw in self._state[1]

    def unknown_bytes(self, pending: Mapping[bytes, tuple[object, bytes]]) -> int:
        """The payload bytes of the ``pending`` objects (raw digest -> (kind, payload))
        not known to be stored (one loop here, not a method call per object)."""
        seen = self._state[1]
        return sum([len(item[1]) for raw, item in pending.items() if raw not in seen])

    def stored_at(self, generation: int) -> set[bytes] | frozenset[bytes]:
        """The digests known to be stored in a transaction that reads gc generation
        ``generation`` (none when another was read when they were noted)."""
        noted, seen = self._state
        return seen if noted == generation else frozenset()

    def remember(self, digests: Iterable[bytes], generation: int = -1) -> None:
        """Note ``digests`` as stored, by a commit that read gc generation ``generation``
        (-1: unknown, never a generation a commit reads)."""
        noted, seen = self._state
        if noted != generation or len(seen) > self._BOUND:
            self._state = (generation, set(digests))
        else:
            seen.update(digests)


def _absolute(folder: Path) -> Path:
    """``folder`` made absolute with its parents resolved, but not itself.

    A ``.pinrun`` that is a symlink to storage elsewhere keeps its name and
    place, so the project it belongs to (the folder holding it) stays found.
    """
    if folder.name in ("", ".", ".."):
        return folder.resolve()
    return folder.absolute().parent.resolve() / folder.name


def open_store(
    path: str | Path | None = None, *, create: bool = False, durable: bool = True,
    readonly: bool = False,
) -> Store:
    """Open a store: ``path``, else ``$PINRUN_STORE``, else ``.pinrun/`` found upward.

    With ``create=True`` and no path, a store is made in ``./.pinrun`` if none exists there.
    ``readonly=True`` opens it for reading only.
    """
    folder = default_store_path(str(path) if path is not None else None, for_create=create)
    return Store.open(folder, create=create, durable=durable, readonly=readonly)
