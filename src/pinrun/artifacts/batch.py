"""Write batches: objects and ref changes queued, then committed in one transaction.

Everything is encoded, hashed and compressed before the transaction starts;
the transaction only copies bytes, which keeps the write lock short. Objects
the store already holds are set aside and never rewritten.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from pinrun.artifacts import codec, trees
from pinrun.artifacts.dictionary import (
    DICTIONARY_MAX_PAYLOAD,
    DICTIONARY_MIN_PAYLOAD,
    TRAINING_SAMPLES,
    Dictionary,
    format_dictionary,
    train_dictionary,
)
from pinrun.artifacts.digest import TREE_KIND, VALUE_KIND, Digest, Kind, compute_digest
from pinrun.artifacts.objects import (
    CODEC_ZSTD_DICT,
    SMALLEST_MAX_RAW_SIZE,
    EncodedObject,
    PlainRecord,
    assembled,
    build_pending_records,
    build_records,
    check_payload_size,
)
from pinrun.artifacts.refs import ANY, RefExpectation, check_expected, validate_ref_name
from pinrun.errors import MissingObjectError

if TYPE_CHECKING:
    from pinrun.artifacts.lmdb_env import Environment
    from pinrun.artifacts.store import Store

__all__ = ["COUNTER_KEYS", "DICTIONARY_REF", "GC_GENERATION_KEY", "WriteBatch", "commit_batch",
           "next_gc_generation", "read_counter", "read_gc_generation"]

#: The ref naming the compression dictionary new small objects use.
DICTIONARY_REF: Final = "pinrun/zstd-dictionary"
_COUNTER: Final = struct.Struct("<Q")
_OFFERED_OBJECTS: Final = b"stats.offered_objects"
_OFFERED_BYTES: Final = b"stats.offered_raw_bytes"
#: The store's running totals. They are kept in LMDB's main database (see
#: :attr:`~pinrun.artifacts.lmdb_env.Environment.main_db`); stores written before
#: kept them in ``meta``, and a total is what both hold.
COUNTER_KEYS: Final = (_OFFERED_OBJECTS, _OFFERED_BYTES)


class WriteBatch:
    """Objects and ref updates that commit together in one transaction.

    Payloads are hashed as they are added (so their digests are known at
    once) and compressed only at :meth:`commit`, after the objects the store
    already holds are set aside: a re-stored snapshot costs no compression.
    Adding the same object twice stores it once; objects already in the store
    are never rewritten.
    """

    def __init__(self, store: Store, *, held: set[bytes] | frozenset[bytes] = frozenset()
                 ) -> None:
        self._store = store
        #: Raw digests of objects the writer knows this batch's commit finds stored
        #: (see :meth:`put`): counted as offered, never queued nor looked up.
        self._held = held
        # Keyed by the digests' raw bytes: hashed in C (a Digest's hash is a Python call).
        self._pending: dict[bytes, tuple[Kind, bytes]] = {}
        self._prebuilt: dict[Digest, EncodedObject] = {}
        self._refs: list[tuple[str, Digest | None, RefExpectation]] = []
        # Keys of queued records the writer said are short-lived (see store_as_is).
        self._as_is: set[bytes] = set()
        self._offered_objects = 0
        self._offered_bytes = 0
        self.committed = False
        #: After commit: how many objects were new to the store.
        self.new_objects = 0

    def put(self, kind: Kind, payload: bytes, digest: Digest | None = None) -> Digest:
        """Queue a payload of the given kind (already canonical bytes); returns its digest.

        ``digest``: the payload's digest when the caller computed it before
        (pinned code is put at every run); it must be ``compute_digest(kind, payload)``.
        An object the batch was told is held (``WriteBatch(store, held=...)``: the
        writer knows the commit finds it stored) is counted as offered and not queued.
        """
        if len(payload) > SMALLEST_MAX_RAW_SIZE:  # (Kind.value and its hash cost a call each)
            check_payload_size(kind, len(payload), kind.value)
        if digest is None:
            digest = compute_digest(kind, payload)
        self._offered_objects += 1
        self._offered_bytes += len(payload)
        raw = digest.raw
        if raw not in self._held:
            self._pending.setdefault(raw, (kind, payload))
        return digest

    def put_known(self, items: Sequence[tuple[Kind, bytes, Digest]]) -> None:
        """:meth:`put` of each ``(kind, payload, digest)``, in one call: a tree's values
        and the tree itself (the per-call cost of :meth:`put`, a few thousand
        instructions, is most of what queueing a small object costs). Each ``digest``
        must be ``compute_digest(kind, payload)``."""
        held, pending = self._held, self._pending
        count = size = 0
        try:
            for kind, payload, digest in items:
                length = len(payload)
                if length > SMALLEST_MAX_RAW_SIZE:
                    check_payload_size(kind, length, kind.value)
                count += 1
                size += length
                raw = digest.raw
                if raw not in held:
                    pending.setdefault(raw, (kind, payload))
        finally:  # an object over its limit raises as put would: those before it are queued
            self._offered_objects += count
            self._offered_bytes += size

    def put_map_of(self, entries: Mapping[str, trees.Entry], known: dict[bytes, Digest],
                   kept: int, most: int) -> Digest | None:
        """Queue a ``map`` tree of ``entries`` (each inline value's object, then the tree)
        in C, as :meth:`ValueDigests.put_map <pinrun.engine.value_digests.ValueDigests.put_map>`
        does (``known``: its kept digests, ``kept`` and ``most`` its bounds); the tree's
        digest, or None when the caller's Python path must do it (no compiler, a key or
        an entry the C code leaves to Python, a payload whose size needs checking):
        nothing is queued then."""
        if _put_map is None or type(entries) is not dict:
            return None
        done = _put_map(entries, known, self._pending, self._held, Digest, _MAP_KINDS,
                        (kept, most, SMALLEST_MAX_RAW_SIZE), compute_digest)
        if done is None:
            return None
        tree, count, size = done
        self._offered_objects += count
        self._offered_bytes += size
        return tree

    def offered(self) -> Iterator[bytes]:
        """The raw digests of the objects queued so far (after :meth:`commit`: each one
        is stored, new or set aside as already there)."""
        return iter(self._pending)

    def store_as_is(self, digest: Digest) -> None:
        """Store the queued object ``digest`` uncompressed if it is small (under
        :data:`~pinrun.artifacts.objects.AS_IS_BELOW` bytes): a record that is garbage
        soon (a running run's link and state, written at every durable step), where
        compressing costs more than the bytes it saves. Its digest is the same either way.
        """
        self._as_is.add(digest.raw)

    def add(self, obj: EncodedObject) -> Digest:
        """Queue an already-built record (as read from a bundle); returns its digest."""
        self._offered_objects += 1
        self._offered_bytes += obj.raw_size
        self._prebuilt.setdefault(obj.digest, obj)
        return obj.digest

    def put_value(self, value: Any, *, root: str = "value") -> Digest:
        """Queue one canonically encoded value."""
        payload = codec.encode(value, root=root)
        check_payload_size(VALUE_KIND, len(payload), root)
        return self.put(VALUE_KIND, payload)

    def put_blob(self, data: bytes) -> Digest:
        """Queue raw bytes (chunked into a tree when large)."""
        return trees.store_blob(self, data)

    def put_snapshot(self, state: Mapping[str, Any], *, root: str = "state",
                     payloads: Mapping[str, bytes] | None = None,
                     entries_out: dict[str, trees.Entry] | None = None) -> Digest:
        """Queue a state as a Merkle tree of its keys; returns the tree digest.

        ``payloads``: canonical encodings of values the caller already made
        (``codec.encode(state[key])``), which are then not encoded again.
        ``entries_out`` receives each key's entry (see :func:`trees.store_snapshot`).
        """
        return trees.store_snapshot(self, state, root=root, payloads=payloads,
                                    entries_out=entries_out)

    def put_entries(self, entries: Mapping[str, trees.Entry]) -> Digest:
        """Queue the tree of a snapshot whose entries are made (stored, queued or inline)."""
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
        self.new_objects = commit_batch(self._store, self)
        self.committed = True
        return self.new_objects



#: The kinds a map tree's objects are queued as, with the tags hashed before them.
_MAP_KINDS: Final = (VALUE_KIND, VALUE_KIND.tag, TREE_KIND, TREE_KIND.tag)
_put_map: Callable[..., tuple[Digest, int, int] | None] | None
try:
    from pinrun.artifacts._speedups import put_map as _put_map
except ImportError:  # pragma: no cover - exercised on machines without a compiler
    _put_map = None


def commit_batch(store: Store, batch: WriteBatch) -> int:
    """Write a batch in one transaction (see :meth:`WriteBatch.commit`); new objects."""
    if len(batch._pending) < TRAINING_SAMPLES and \
            store.known_pins.unknown_bytes(batch._pending) <= IN_TRANSACTION_MAX_BYTES:
        return _commit_small(store, batch)
    return _commit_large(store, batch)


#: A batch whose objects not known to be stored hold at most this many payload bytes is
#: looked up and compressed inside its write transaction (:func:`_commit_small`).
IN_TRANSACTION_MAX_BYTES: Final = 128 * 1024


def _commit_small(store: Store, batch: WriteBatch) -> int:
    """A small batch (a recorded run's, a durable step's): every object looked up once,
    inside the write transaction, and only the new ones compressed there.

    A read transaction before it, to compress outside the write lock, would cost more
    than it saves here: its own begin and end, and a second lookup of every object
    (a run's few small records compress in tens of microseconds). Fewer than
    ``TRAINING_SAMPLES`` objects never train a dictionary.
    """
    env = store.environment
    objects_db, refs_db = env.dbs["objects"], env.dbs["refs"]
    pending = batch._pending
    prebuilt = [(obj.digest.raw, obj.record) for obj in batch._prebuilt.values()]

    generation = -1
    # The dictionary's digest, when this commit's records use it (stored once it commits).
    dictionary_used: list[bytes] = []

    def operation(txn: Any) -> int:
        nonlocal generation
        dictionary_used.clear()
        _check_refs(txn, batch, objects_db, refs_db)
        get = txn.get  # (positional arguments: py-lmdb parses keywords slowly)
        # Pins this process saw committed at the gc generation read now are still there
        # (only gc deletes, and it moves the generation on): one get instead of theirs.
        # Not in a format 1 store: an older pinrun's gc may share it, not moving it.
        generation = read_gc_generation(txn, env)
        stored = store.known_pins.stored_at(generation) if store.checks_refs else _NOTHING
        new_items = [(raw, kind, payload) for raw, (kind, payload) in pending.items()
                     if raw not in stored and get(raw, None, objects_db) is None]
        records: list[tuple[bytes, bytes | PlainRecord]] = []
        if new_items:
            dictionary = store.dictionary_named(get(_DICTIONARY_KEY, None, refs_db), txn) \
                or format_dictionary()
            records = build_pending_records(new_items, dictionary, batch._as_is)
            # (Known stored at this gc generation: no look-up. Remembered below once used.)
            if dictionary.digest.raw not in stored and _uses_dictionary(records):
                records += _dictionary_record(txn, dictionary, objects_db, True)
                dictionary_used.append(dictionary.digest.raw)
        return _write(txn, batch, [*records, *prebuilt], env)

    added = env.write(operation)
    _remember_pins(store, pending, generation, dictionary_used)
    return added


def _commit_large(store: Store, batch: WriteBatch) -> int:
    """A large batch: looked up and compressed before its write transaction, which then
    only copies bytes (and looks again at what it counted as stored)."""
    env = store.environment
    objects_db, refs_db, counters_db = env.dbs["objects"], env.dbs["refs"], env.main_db
    pending = batch._pending
    # Set aside what is already stored, then compress the rest: all before
    # the write transaction, which only copies bytes. Pinned code, steps and flows this
    # process saw stored are not looked up again here: the transaction checks every
    # object it counts as stored anyway (one may have been collected since).
    known = store.known_pins
    with env.read() as txn:
        stored = [raw for raw in pending if raw in known
                  or txn.get(raw, db=objects_db) is not None]
        dictionary_raw = txn.get(_DICTIONARY_KEY, db=refs_db)
    stored_set = set(stored)
    new_items = [(raw, kind, payload) for raw, (kind, payload) in pending.items()
                 if raw not in stored_set]
    dictionary = store.dictionary_named(dictionary_raw)
    trained = dictionary is None and _worth_training(new_items)
    if trained:
        dictionary = train_dictionary(_training_samples(p for _, _, p in new_items))
    elif dictionary is None:
        dictionary = format_dictionary()
    # A large record stored as is is assembled only as it is written (assembled()).
    records: list[tuple[bytes, bytes | PlainRecord]] = build_pending_records(
        new_items, dictionary, batch._as_is)
    # (Its own dictionary is written when a record built here uses it, or it was trained.)
    uses_dictionary = trained or _uses_dictionary(records)
    records += [(obj.digest.raw, obj.record) for obj in batch._prebuilt.values()]

    generation = -1

    def operation(txn: Any) -> int:
        nonlocal generation
        generation = read_gc_generation(txn, env)
        _check_refs(txn, batch, objects_db, refs_db)
        # An object seen as stored may have been collected since: write it now.
        vanished = [raw for raw in stored if txn.get(raw, db=objects_db) is None]
        extra = build_records([(raw, *pending[raw]) for raw in vanished], dictionary)
        extra += _dictionary_record(txn, dictionary, objects_db,
                                    uses_dictionary or _uses_dictionary(extra))
        if trained and txn.get(_DICTIONARY_KEY, db=refs_db) is None:
            assert dictionary is not None
            txn.put(_DICTIONARY_KEY, store.stored_ref(_DICTIONARY_KEY, dictionary.digest.raw),
                    db=refs_db)
            _add_counter(txn, counters_db, _OFFERED_OBJECTS, 1)  # it is stored: count it
            _add_counter(txn, counters_db, _OFFERED_BYTES, len(dictionary.data))
        return _write(txn, batch, [*records, *extra], env)

    added = env.write(operation)
    _remember_pins(store, pending, generation)
    return added


def _remember_pins(store: Store, pending: dict[bytes, tuple[Kind, bytes]],
                   generation: int, also: Sequence[bytes] = ()) -> None:
    """Note the batch's pins as stored, once committed by a transaction that read gc
    generation ``generation``: what this process knows to be stored (a batch's bytes not
    known to be stored decide how it commits; a small commit that reads the same
    generation does not look them up again). ``also``: other digests the commit stored
    (the dictionary its records use)."""
    store.known_pins.remember([*(raw for raw, (kind, _) in pending.items()
                                 if kind.code in _PIN_CODES), *also], generation)


#: In LMDB's main database: how many times ``gc`` swept the store (it adds one in the
#: transaction that deletes). Only gc deletes objects, so what a commit saw stored is
#: still there while the generation it read stays the same (see KnownPins).
GC_GENERATION_KEY: Final = b"gc.generation"


def read_gc_generation(txn: Any, env: Environment) -> int:
    """The store's gc generation as ``txn`` sees it (0 before any gc counted one)."""
    raw = txn.get(GC_GENERATION_KEY, None, env.main_db)
    return int(_COUNTER.unpack(raw)[0]) if raw is not None and len(raw) == 8 else 0


def next_gc_generation(txn: Any, env: Environment) -> None:
    """Move the gc generation on (in the write transaction that deletes objects)."""
    txn.put(GC_GENERATION_KEY, _COUNTER.pack(read_gc_generation(txn, env) + 1),
            db=env.main_db)


_DICTIONARY_KEY: Final = DICTIONARY_REF.encode()
_NOTHING: Final[frozenset[bytes]] = frozenset()


def _uses_dictionary(records: Sequence[tuple[bytes, bytes | PlainRecord]]) -> bool:
    """Whether a record :func:`build_pending_records` built is compressed with its
    dictionary (a record stored as is may still be a PlainRecord)."""
    return any(type(record) is bytes and record[2] == CODEC_ZSTD_DICT for _, record in records)


def _dictionary_record(txn: Any, dictionary: Dictionary | None, objects_db: Any, used: bool,
                       ) -> list[tuple[bytes, bytes]]:
    """The dictionary's own record when records of this commit use it (``used``; or it was
    trained now, and the ref names it) and it is not stored yet: records compressed with
    it name it, so it is written with them. (A store none of whose records use the format
    dictionary never holds it.)"""
    if dictionary is None or not used \
            or txn.get(dictionary.digest.raw, None, objects_db) is not None:
        return []
    return build_records([(dictionary.digest.raw, Kind.BLOB, dictionary.data)])


def _check_refs(txn: Any, batch: WriteBatch, objects_db: Any, refs_db: Any) -> None:
    """Check every ref change first, so a conflict writes nothing at all."""
    store = batch._store
    if batch._refs and not store.checks_refs:
        store.refresh_format(txn)  # upgraded since this handle opened it (a lockless one)
    for name, target, expected in batch._refs:
        key = name.encode()
        current_raw = txn.get(key, None, refs_db)  # (positional: see _commit_small)
        # The usual answers told by bytes (a durable step's commit checks its run's ref):
        # the value is decoded, and the check called, only for a mismatch's error.
        if not (expected is ANY or (current_raw is None if expected is None
                                    else store.stored_ref(key, expected.raw) == current_raw)):
            check_expected(name, expected,
                           store.decode_ref(key, current_raw)[1] if current_raw else None)
        if target is not None and target.raw not in batch._pending \
                and target not in batch._prebuilt \
                and txn.get(target.raw, None, objects_db) is None:
            raise MissingObjectError(target, referenced_by=f"ref {name!r}")


def _write(txn: Any, batch: WriteBatch, records: list[tuple[bytes, bytes | PlainRecord]],
           env: Environment) -> int:
    """Put the records (never over a stored one), set the refs, add to the counters;
    returns how many records were new."""
    objects_db, refs_db, counters_db = env.dbs["objects"], env.dbs["refs"], env.main_db
    # (Positional arguments where a commit per durable step calls: py-lmdb parses keywords
    # slowly. put's are key, value, dupdata, overwrite, append, db; putmulti's items,
    # dupdata, overwrite.)
    _, added = txn.cursor(objects_db).putmulti(assembled(records), True, False)
    stored_ref = batch._store.stored_ref
    for name, target, _ in batch._refs:
        key = name.encode()
        if target is None:
            txn.delete(key, db=refs_db)
        else:
            txn.put(key, stored_ref(key, target.raw), True, True, False, refs_db)
    if batch._offered_objects:
        # In the main database, whose page the commit writes anyway (a durable step's
        # commit is a device flush of every page it dirtied). Inline: two every commit.
        get, put, pack, unpack = txn.get, txn.put, _COUNTER.pack, _COUNTER.unpack
        for key, amount in ((_OFFERED_OBJECTS, batch._offered_objects),
                            (_OFFERED_BYTES, batch._offered_bytes)):
            raw = get(key, None, counters_db)
            put(key, pack((unpack(raw)[0] if raw else 0) + amount), True, True, False,
                counters_db)
    return int(added)


#: The kinds every run offers again (its pins and, mostly, its environment): worth
#: remembering as stored.
_PIN_CODES: Final = frozenset(kind.code for kind in (Kind.CODE, Kind.STEP, Kind.FLOW, Kind.ENV))


def _worth_training(items: list[tuple[bytes, Kind, bytes]]) -> bool:
    """A batch with enough small payloads to learn a dictionary from."""
    small = sum(1 for _, _, p in items
                if DICTIONARY_MIN_PAYLOAD <= len(p) <= DICTIONARY_MAX_PAYLOAD)
    return small >= TRAINING_SAMPLES


def _training_samples(payloads: Iterator[bytes]) -> list[bytes]:
    small = [p for p in payloads if DICTIONARY_MIN_PAYLOAD <= len(p) <= DICTIONARY_MAX_PAYLOAD]
    step = max(1, len(small) // TRAINING_SAMPLES)
    return small[::step][:TRAINING_SAMPLES]


def read_counter(txn: Any, db: Any, key: bytes) -> int:
    """The counter ``key`` as held in the database ``db`` (0 when it is not there)."""
    raw = txn.get(key, db=db)
    return int(_COUNTER.unpack(raw)[0]) if raw else 0


def _add_counter(txn: Any, db: Any, key: bytes, amount: int) -> None:
    """Add ``amount`` to counter ``key`` (``db``: the environment's ``main_db``)."""
    txn.put(key, _COUNTER.pack(read_counter(txn, db, key) + amount), db=db)
