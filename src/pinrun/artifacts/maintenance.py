"""Keeping a store healthy: ``fsck`` checks it, ``gc`` sweeps it, ``stats`` measures it.

``gc`` keeps every object reachable from a ref. It marks from the refs it
reads first, in chunks of short read transactions (writers go on meanwhile,
and no long reader keeps LMDB from reusing freed pages, which would make the
file grow), then, inside one write transaction, marks again from every ref
as it is then (objects never change, so what was marked stays marked and
only new roots need walking) and deletes the rest. A digest found missing
while marking (another gc may have swept it) is looked up again inside that
transaction: marked from if it came back, an error if what names it is still
there. A writer that commits objects together with the ref that names them
(as a :class:`~pinrun.artifacts.store.WriteBatch` does) can never lose them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

from pinrun.artifacts.batch import next_gc_generation
from pinrun.artifacts.dictionary import format_dictionary
from pinrun.artifacts.digest import DIGEST_SIZE, Digest, Kind
from pinrun.artifacts.fsck import FsckReport, Problem, Progress, fsck
from pinrun.artifacts.lmdb_env import ChunkedReader
from pinrun.artifacts.objects import open_record, read_header, record_dictionary
from pinrun.artifacts.store import DICTIONARY_REF, Store
from pinrun.artifacts.trees import references
from pinrun.errors import MissingObjectError, PinrunError

__all__ = [
    "FsckReport", "GcReport", "Problem", "Progress", "StoreStats", "fsck", "gc", "live_bytes",
    "stats",
]


@dataclass(frozen=True)
class GcReport:
    """What ``gc`` did (or, with ``dry_run``, would do)."""

    examined: int
    reachable: int
    deleted: int
    freed_bytes: int
    dry_run: bool


#: A holder: what names an object (``ref 'NAME'`` or a digest's hex) and that digest, if any.
Holder = tuple[str, Digest | None]
OnMissing = Callable[[Holder, Digest], None]


def _raise_missing(holder: Holder, digest: Digest) -> None:
    raise MissingObjectError(digest, holder[0])


def _mark(load_record: Callable[[Digest], bytes | None], roots: Iterable[tuple[Holder, Digest]],
          marked: set[bytes], on_missing: OnMissing = _raise_missing) -> None:
    stack = [(holder, digest) for holder, digest in roots if digest.raw not in marked]
    while stack:
        holder, digest = stack.pop()
        if digest.raw in marked:
            continue
        record = load_record(digest)
        if record is None:
            on_missing(holder, digest)
            continue
        kind = read_header(digest, record).kind
        marked.add(digest.raw)
        here: Holder = (digest.hex, digest)
        dictionary = record_dictionary(record)
        if dictionary is not None and dictionary.raw not in marked:
            stack.append((here, dictionary))
        if kind is Kind.BLOB or kind is Kind.VALUE:
            continue
        _, payload = open_record(digest, record, partial(_payload, load_record, holder=digest))
        stack.extend((here, child) for child in references(kind, payload)
                     if child.raw not in marked)


def _payload(load_record: Callable[[Digest], bytes | None], digest: Digest, *,
             holder: Digest) -> bytes:
    record = load_record(digest)
    if record is None:
        raise MissingObjectError(digest, holder.hex)
    return open_record(digest, record)[1]


def _roots(store: Store, txn: Any, refs_db: Any) -> list[tuple[Holder, Digest]]:
    """Every ref's target: a damaged ref stops gc (``StoreDamagedError``), which must not
    delete what the ref's true target reaches."""
    roots: list[tuple[Holder, Digest]] = []
    for key, value in txn.cursor(db=refs_db):
        name, target = store.decode_ref(key, value)
        roots.append(((f"ref {name!r}", None), target))
    return roots


def gc(store: Store, *, dry_run: bool = False) -> GcReport:
    """Delete every object no ref reaches; ``dry_run`` only counts them."""
    env = store.environment
    objects_db, refs_db = env.dbs["objects"], env.dbs["refs"]
    marked: set[bytes] = set()
    # digest seen missing while marking -> what named it
    unresolved: dict[bytes, Holder] = {}

    def note_missing(holder: Holder, digest: Digest) -> None:
        unresolved.setdefault(digest.raw, holder)

    with env.read() as txn:
        roots = _roots(store, txn, refs_db)
    with ChunkedReader(env, "objects") as reader:
        _mark(lambda digest: reader.get(digest.raw), roots, marked, note_missing)
    if dry_run:
        if unresolved:
            raw, holder = next(iter(unresolved.items()))
            raise MissingObjectError(Digest(raw), holder[0])
        examined = doomed = freed = 0
        for key, record in store.iter_records():
            examined += 1
            if key not in marked:
                doomed += 1
                freed += len(record)
        return GcReport(examined, examined - doomed, doomed, freed, dry_run=True)

    def sweep(txn: Any) -> GcReport:
        final = set(marked)  # a retry after map growth starts again from the first marks

        def load(digest: Digest) -> bytes | None:
            record: bytes | None = txn.get(digest.raw, db=objects_db)
            return record

        current = _roots(store, txn, refs_db)
        for raw, holder in unresolved.items():
            if load(Digest(raw)) is not None:
                current.append((holder, Digest(raw)))  # it came back: keep what it reaches
            elif holder[1] is not None and load(holder[1]) is not None:
                raise MissingObjectError(Digest(raw), holder[0])  # an object without its child
            # else: named by a ref, which is walked again just below (and fails
            # there if it still names it), or by an object gone with it
        _mark(load, current, final)
        doomed: list[bytes] = []
        examined = freed = 0
        for key, record in txn.cursor(db=objects_db):
            examined += 1
            if key not in final:
                doomed.append(key)
                freed += len(record)
        # Writers that skip looking up what they saw stored read it (KnownPins): in the
        # same transaction as the deletes, so none sees them gone under its generation.
        next_gc_generation(txn, env)
        for key in doomed:
            txn.delete(key, db=objects_db)
        return GcReport(examined, examined - len(doomed), len(doomed), freed, dry_run=False)

    return env.write(sweep)


@dataclass(frozen=True)
class StoreStats:
    """Sizes and ratios of a store."""

    objects: dict[str, int]
    raw_bytes: dict[str, int]
    stored_bytes: dict[str, int]
    refs: int
    offered_objects: int
    offered_raw_bytes: int
    file_bytes: int
    map_bytes: int
    #: The compression dictionary new small objects use, if one was trained.
    dictionary: Digest | None = None
    #: How many records are compressed with a dictionary.
    dictionary_records: int = 0
    #: Whether the store holds pinrun's own format dictionary (a 2 KiB blob, among
    #: ``objects``): small records are compressed with it until the store trains one.
    format_dictionary: bool = False
    #: Bytes of the data file's pages in use; the rest of ``file_bytes`` is free
    #: pages LMDB reuses but never returns (``pinrun gc --compact`` does).
    live_bytes: int = 0

    @property
    def total_objects(self) -> int:
        """Objects in the store."""
        return sum(self.objects.values())

    @property
    def total_raw_bytes(self) -> int:
        """Uncompressed size of every stored object."""
        return sum(self.raw_bytes.values())

    @property
    def total_stored_bytes(self) -> int:
        """On-disk record size of every stored object (headers included)."""
        return sum(self.stored_bytes.values())

    @property
    def compression_ratio(self) -> float:
        """Raw bytes per stored byte (above 1 means compression saved space)."""
        return self.total_raw_bytes / self.total_stored_bytes if self.total_stored_bytes else 1.0

    @property
    def dedup_ratio(self) -> float:
        """Bytes writers offered per unique byte kept (above 1 means dedup saved space)."""
        raw = self.total_raw_bytes
        return self.offered_raw_bytes / raw if raw else 1.0

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "objects": self.objects, "raw_bytes": self.raw_bytes,
            "stored_bytes": self.stored_bytes, "total_objects": self.total_objects,
            "total_raw_bytes": self.total_raw_bytes,
            "total_stored_bytes": self.total_stored_bytes,
            "compression_ratio": round(self.compression_ratio, 4),
            "dedup_ratio": round(self.dedup_ratio, 4), "refs": self.refs,
            "offered_objects": self.offered_objects,
            "offered_raw_bytes": self.offered_raw_bytes, "file_bytes": self.file_bytes,
            "map_bytes": self.map_bytes,
            "dictionary": self.dictionary.hex if self.dictionary else None,
            "dictionary_records": self.dictionary_records, "live_bytes": self.live_bytes,
            "format_dictionary": self.format_dictionary,
        }


def stats(store: Store) -> StoreStats:
    """Count objects by kind with their raw and stored sizes (reads headers only)."""
    objects = {kind.value: 0 for kind in Kind}
    raw = dict.fromkeys(objects, 0)
    stored = dict.fromkeys(objects, 0)
    dictionary_records = 0
    format_raw = format_dictionary().digest.raw
    holds_format = False
    for key, record in store.iter_records():
        if len(key) != DIGEST_SIZE:
            continue
        try:
            info = read_header(Digest(key), record)
        except PinrunError:
            continue  # fsck reports it; stats only measures
        objects[info.kind.value] += 1
        holds_format = holds_format or key == format_raw
        dictionary_records += info.codec == "zstd+dict"
        raw[info.kind.value] += info.raw_size
        stored[info.kind.value] += info.stored_size
    counters = store.counters()
    data_file = store.path / "data.mdb"
    return StoreStats(
        objects=objects, raw_bytes=raw, stored_bytes=stored, refs=len(store.refs()),
        offered_objects=counters["offered_objects"],
        offered_raw_bytes=counters["offered_raw_bytes"],
        file_bytes=data_file.stat().st_size if data_file.exists() else 0,
        map_bytes=store.environment.map_size,
        dictionary=store.get_ref(DICTIONARY_REF), dictionary_records=dictionary_records,
        live_bytes=live_bytes(store), format_dictionary=holds_format,
    )


def live_bytes(store: Store) -> int:
    """Bytes of the data file's pages in use: the meta pages and every database's tree."""
    env = store.environment
    main = env.handle.stat()
    pages = 2 + main["branch_pages"] + main["leaf_pages"] + main["overflow_pages"]
    with env.read() as txn:
        for db in env.dbs.values():
            found = txn.stat(db)
            pages += found["branch_pages"] + found["leaf_pages"] + found["overflow_pages"]
    return int(pages * main["psize"])
