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

import os
import struct
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from pinrun.artifacts import codec, trees
from pinrun.artifacts.dictionary import (
    DICTIONARY_MAX_PAYLOAD,
    DICTIONARY_MIN_PAYLOAD,
    TRAINING_SAMPLES,
    Dictionary,
    dictionary_for,
    train_dictionary,
)
from pinrun.artifacts.digest import Digest, Kind, compute_digest, validate_prefix
from pinrun.artifacts.discovery import default_store_path, find_store
from pinrun.artifacts.lmdb_env import Environment, open_environment, release_environment
from pinrun.artifacts.objects import (
    EncodedObject,
    RecordInfo,
    build_records,
    open_record,
    read_header,
)
from pinrun.artifacts.refs import ANY, RefExpectation, check_expected, validate_ref_name
from pinrun.errors import (
    AmbiguousDigestError,
    CorruptObjectError,
    InputError,
    MissingObjectError,
    StoreError,
    StoreNotFoundError,
    UnknownDigestError,
    UnknownRefError,
)

__all__ = ["Store", "WriteBatch", "open_store"]

STORE_FORMAT: Final = b"1"
#: The ref naming the compression dictionary new small objects use.
DICTIONARY_REF: Final = "pinrun/zstd-dictionary"
_COUNTER: Final = struct.Struct("<Q")
_OFFERED_OBJECTS: Final = b"stats.offered_objects"
_OFFERED_BYTES: Final = b"stats.offered_raw_bytes"


class WriteBatch:
    """Objects and ref updates that commit together in one transaction.

    Payloads are hashed as they are added (so their digests are known at
    once) and compressed only at :meth:`commit`, after the objects the store
    already holds are set aside: a re-stored snapshot costs no compression.
    Adding the same object twice stores it once; objects already in the store
    are never rewritten.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._pending: dict[Digest, tuple[Kind, bytes]] = {}
        self._prebuilt: dict[Digest, EncodedObject] = {}
        self._refs: list[tuple[str, Digest | None, RefExpectation]] = []
        self._offered_objects = 0
        self._offered_bytes = 0
        self.committed = False
        #: After commit: how many objects were new to the store.
        self.new_objects = 0

    def put(self, kind: Kind, payload: bytes, digest: Digest | None = None) -> Digest:
        """Queue a payload of the given kind (already canonical bytes); returns its digest.

        ``digest``: the payload's digest when the caller computed it before
        (pinned code is put at every run); it must be ``compute_digest(kind, payload)``.
        """
        if digest is None:
            digest = compute_digest(kind, payload)
        self._offered_objects += 1
        self._offered_bytes += len(payload)
        if digest not in self._pending:
            self._pending[digest] = (kind, payload)
        return digest

    def add(self, obj: EncodedObject) -> Digest:
        """Queue an already-built record (as read from a bundle); returns its digest."""
        self._offered_objects += 1
        self._offered_bytes += obj.raw_size
        self._prebuilt.setdefault(obj.digest, obj)
        return obj.digest

    def put_value(self, value: Any, *, root: str = "value") -> Digest:
        """Queue one canonically encoded value."""
        return self.put(Kind.VALUE, codec.encode(value, root=root))

    def put_blob(self, data: bytes) -> Digest:
        """Queue raw bytes (chunked into a tree when large)."""
        return trees.store_blob(self, data)

    def put_snapshot(self, state: Mapping[str, Any], *, root: str = "state",
                     payloads: Mapping[str, bytes] | None = None,
                     entries_out: dict[str, Digest] | None = None) -> Digest:
        """Queue a state as a Merkle tree of its keys; returns the tree digest.

        ``payloads``: canonical encodings of values the caller already made
        (``codec.encode(state[key])``), which are then not encoded again.
        ``entries_out`` receives the digest of each key's entry.
        """
        return trees.store_snapshot(self, state, root=root, payloads=payloads,
                                    entries_out=entries_out)

    def put_entries(self, entries: Mapping[str, Digest]) -> Digest:
        """Queue the tree of a snapshot whose entries are already stored (or queued)."""
        return trees.store_entries(self, entries)

    def set_ref(self, name: str, digest: Digest, *, expected: RefExpectation = ANY) -> None:
        """Point ``name`` at ``digest`` on commit, if the ref still equals ``expected``.

        ``expected=None`` means the ref must not exist yet; the default accepts
        any current value. A mismatch raises :class:`~pinrun.errors.RefConflictError`
        at commit and nothing in the batch is written.
        """
        self._refs.append((validate_ref_name(name), digest, expected))

    def delete_ref(self, name: str, *, expected: RefExpectation = ANY) -> None:
        """Remove ``name`` on commit, if it still equals ``expected``."""
        self._refs.append((validate_ref_name(name), None, expected))

    def commit(self) -> int:
        """Write everything in one transaction; returns the number of new objects."""
        if self.committed:
            raise RuntimeError("this batch was already committed")
        self.new_objects = self._store._commit(self)
        self.committed = True
        return self.new_objects


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

    # ------------------------------------------------------------ lifecycle

    @classmethod
    def open(
        cls,
        path: str | Path | None = None,
        *,
        create: bool = False,
        map_size: int | None = None,
        durable: bool = True,
    ) -> Store:
        """Open the store at ``path``, or the one found upward from the working directory.

        ``create=True`` makes the folder when it does not exist. ``map_size``
        sets the initial LMDB map (it grows by itself). ``durable=False``
        skips the fsync at each commit: faster, but a power cut may lose the
        latest commits (never corrupting older ones).
        """
        folder = Path(path) if path is not None else find_store(Path.cwd())
        data_file = folder / "data.mdb"
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
        env = open_environment(folder, map_size=map_size, durable=durable)
        store = cls(folder.resolve(), env)
        store._check_format(create)
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
        if found is None and create:
            found = self._env.write(check)  # the write lock only to create a store
        if found is None:
            raise StoreNotFoundError(str(self.path), searched_upward=False)
        if found != STORE_FORMAT:
            raise StoreError(f"the store at {self.path} has format {found.decode()!r}, which "
                             "this pinrun cannot read; upgrade pinrun.")

    def close(self) -> None:
        """Release the store; other handles to the same folder stay open."""
        if not self._closed:
            self._closed = True
            if self._env.pid == os.getpid():  # a forked child never closes its parent's handle
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
        if self._env.pid != os.getpid():
            # Inherited through fork: LMDB handles must not cross a fork, so the
            # child opens its own (the parent's are left alone, never closed here).
            self._env = open_environment(self.path, durable=self._env.durable)
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

    def _commit(self, batch: WriteBatch) -> int:
        env = self.environment
        objects_db, refs_db, meta_db = (env.dbs[n] for n in ("objects", "refs", "meta"))
        pending = batch._pending
        # Set aside what is already stored, then compress the rest: all before
        # the write transaction, which only copies bytes.
        with env.read() as txn:
            stored = [d for d in pending if txn.get(d.raw, db=objects_db) is not None]
        stored_set = set(stored)
        new_items = [(d.raw, kind, payload) for d, (kind, payload) in pending.items()
                     if d not in stored_set]
        dictionary = self.current_dictionary()
        trained = dictionary is None and _worth_training(new_items)
        if trained:
            dictionary = train_dictionary(_training_samples(p for _, _, p in new_items))
        records = build_records(new_items, dictionary)
        records += [(obj.digest.raw, obj.record) for obj in batch._prebuilt.values()]
        refs = batch._refs

        def operation(txn: Any) -> int:
            # Check every ref first, so a conflict writes nothing at all.
            for name, target, expected in refs:
                current_raw = txn.get(name.encode(), db=refs_db)
                check_expected(name, expected, Digest(current_raw) if current_raw else None)
                if target is not None and target not in pending \
                        and target not in batch._prebuilt \
                        and txn.get(target.raw, db=objects_db) is None:
                    raise MissingObjectError(target, referenced_by=f"ref {name!r}")
            # An object seen as stored may have been collected since: write it now.
            vanished = [d for d in stored if txn.get(d.raw, db=objects_db) is None]
            extra = build_records([(d.raw, *pending[d]) for d in vanished], dictionary)
            if dictionary is not None and txn.get(dictionary.digest.raw, db=objects_db) is None:
                # The records name their dictionary: it is written with them.
                extra += build_records([(dictionary.digest.raw, Kind.BLOB, dictionary.data)])
            if trained and txn.get(DICTIONARY_REF.encode(), db=refs_db) is None:
                assert dictionary is not None
                txn.put(DICTIONARY_REF.encode(), dictionary.digest.raw, db=refs_db)
                _add_counter(txn, meta_db, _OFFERED_OBJECTS, 1)  # it is stored: count it
                _add_counter(txn, meta_db, _OFFERED_BYTES, len(dictionary.data))
            _, added = txn.cursor(db=objects_db).putmulti(records + extra, overwrite=False)
            for name, target, _ in refs:
                if target is None:
                    txn.delete(name.encode(), db=refs_db)
                else:
                    txn.put(name.encode(), target.raw, db=refs_db)
            if batch._offered_objects:
                _add_counter(txn, meta_db, _OFFERED_OBJECTS, batch._offered_objects)
                _add_counter(txn, meta_db, _OFFERED_BYTES, batch._offered_bytes)
            return int(added)

        return env.write(operation)

    # ---------------------------------------------------------- dictionary

    def _load_dictionary(self, digest: Digest) -> bytes:
        record = self.environment.get("objects", digest.raw)
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

    def train_dictionary(self) -> Digest | None:
        """Train a compression dictionary on a sample of the small values already stored.

        New small objects are compressed with it from then on (existing records
        keep theirs). The first batch with enough small objects trains one by
        itself; this is for stores that grew through many small batches.
        Returns the dictionary's digest, or ``None`` when there are too few
        small values to learn from.
        """
        samples: list[bytes] = []
        for key, record in self.iter_records():
            if len(key) == 32 and record[1] == Kind.VALUE.code \
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

    def load_many(self, digests: list[Digest]) -> list[tuple[Kind, bytes]]:
        """Like :meth:`load` for many objects, read in one transaction."""
        env = self.environment  # first: in a forked child this opens the child's handle
        objects_db = env.dbs["objects"]
        with env.read() as txn:
            records = [txn.get(d.raw, db=objects_db) for d in digests]
        out = []
        for digest, record in zip(digests, records, strict=True):
            if record is None:
                raise MissingObjectError(digest)
            out.append(open_record(digest, record, self._load_dictionary))
        return out

    def get_object(self, digest: Digest, kind: Kind) -> Any:
        """The decoded payload of an object that must be of ``kind`` (a step, a flow...)."""
        found, payload = self.load(digest)
        if found is not kind:
            raise CorruptObjectError(digest, None, f"expected a {kind.value} object, found a "
                                     f"{found.value} one")
        return codec.decode(payload)

    def get_value(self, digest: Digest) -> Any:
        """The value stored under ``digest`` (a value, blob or snapshot)."""
        return trees.load_entry(self, digest)

    def get_snapshot(self, digest: Digest) -> dict[str, Any]:
        """The state a snapshot tree holds."""
        return trees.load_snapshot(self, digest)

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
        meta = self._env.dbs["meta"]
        with self.environment.read() as txn:
            return {
                "offered_objects": _read_counter(txn, meta, _OFFERED_OBJECTS),
                "offered_raw_bytes": _read_counter(txn, meta, _OFFERED_BYTES),
            }

    # ----------------------------------------------------------------- refs

    def get_ref(self, name: str) -> Digest | None:
        """The digest ``name`` points to, or ``None`` when unset."""
        with self.environment.read() as txn:
            raw = txn.get(validate_ref_name(name).encode(), db=self._env.dbs["refs"])
        return Digest(raw) if raw is not None else None

    def ref(self, name: str) -> Digest:
        """The digest ``name`` points to; :class:`UnknownRefError` when unset."""
        target = self.get_ref(name)
        if target is None:
            raise UnknownRefError(name)
        return target

    def refs(self, prefix: str = "") -> dict[str, Digest]:
        """Every ref whose name starts with ``prefix``, sorted by name."""
        out: dict[str, Digest] = {}
        with self.environment.read() as txn:
            cursor = txn.cursor(db=self._env.dbs["refs"])
            if cursor.set_range(prefix.encode()):
                for key, raw in cursor:
                    name = key.decode()
                    if not name.startswith(prefix):
                        break
                    out[name] = Digest(raw)
        return out

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


def _worth_training(items: list[tuple[bytes, Kind, bytes]]) -> bool:
    """A batch with enough small payloads to learn a dictionary from."""
    small = sum(1 for _, _, p in items
                if DICTIONARY_MIN_PAYLOAD <= len(p) <= DICTIONARY_MAX_PAYLOAD)
    return small >= TRAINING_SAMPLES


def _training_samples(payloads: Iterator[bytes]) -> list[bytes]:
    small = [p for p in payloads if DICTIONARY_MIN_PAYLOAD <= len(p) <= DICTIONARY_MAX_PAYLOAD]
    step = max(1, len(small) // TRAINING_SAMPLES)
    return small[::step][:TRAINING_SAMPLES]


def _read_counter(txn: Any, db: Any, key: bytes) -> int:
    raw = txn.get(key, db=db)
    return int(_COUNTER.unpack(raw)[0]) if raw else 0


def _add_counter(txn: Any, db: Any, key: bytes, amount: int) -> None:
    txn.put(key, _COUNTER.pack(_read_counter(txn, db, key) + amount), db=db)


def open_store(
    path: str | Path | None = None, *, create: bool = False, durable: bool = True
) -> Store:
    """Open a store: ``path``, else ``$PINRUN_STORE``, else ``.pinrun/`` found upward.

    With ``create=True`` and no path, a store is made in ``./.pinrun`` if none exists there.
    """
    folder = default_store_path(str(path) if path is not None else None, for_create=create)
    return Store.open(folder, create=create, durable=durable)
