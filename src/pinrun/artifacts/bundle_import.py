"""Importing a bundle: verify everything in a streaming pass, then commit it whole.

A bundle may come from anyone, so import holds at most one record in memory
at a time and never allocates what a record merely claims:

1. **Scan.** Read the file once, record by record, copying it to a private
   temporary file as it goes: every header is checked against its kind's
   size limit, every record is proven against its digest (large values and
   blobs by hashing their decompressed stream in pieces, structural records
   in full, with their shape), and the references each one makes are noted.
   The file's checksum is computed on the way. Records compressed with a
   dictionary the bundle carries later are proven once that dictionary has
   been found, from the copy.
2. **Closure.** Every referenced digest must be in the bundle or the store.
3. **Commit**, from the private copy, so what is written is exactly what was
   proven even if the bundle file changes meanwhile. A bundle up to
   :data:`COMMIT_CHUNK` bytes commits in one transaction. A larger one first
   adds its objects in transactions of about that size (LMDB keeps a
   transaction's pages in memory), then a last transaction re-adds any that
   a concurrent ``gc`` collected, adds the rest and sets the refs. Objects
   no ref names yet are invisible to every reader and collected by ``gc``,
   so the refs, and the runs they name, still appear whole or not at all.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

from pinrun.artifacts import codec, shapes
from pinrun.artifacts.batch import _OFFERED_BYTES, _OFFERED_OBJECTS, _add_counter
from pinrun.artifacts.bundle_format import (
    END_TAG,
    INTERNAL_REF_PREFIX,
    MAX_RECORD,
    RECORD_TAG,
    U64,
    Manifest,
    Progress,
    Reader,
    no_progress,
    read_manifest,
)
from pinrun.artifacts.digest import DIGEST_SIZE, Digest, Kind
from pinrun.artifacts.objects import open_record, read_header, record_dictionary
from pinrun.artifacts.proof import prove_record
from pinrun.artifacts.refs import check_expected
from pinrun.artifacts.store import Store
from pinrun.errors import BundleError, InputError, MissingObjectError, PinrunError

__all__ = ["COMMIT_CHUNK", "BundleScan", "ImportReport", "import_bundle",
           "import_bundle_into_new", "scan_bundle"]

#: Record bytes written per write transaction when a bundle is committed in parts.
COMMIT_CHUNK: Final = 32 << 20


@dataclass(frozen=True)
class ImportReport:
    """What a bundle brought into the store."""

    objects: int
    new_objects: int
    refs: dict[str, Digest]
    roots: list[Digest]


@dataclass
class BundleScan:
    """What the scanning pass proved about a bundle file."""

    path: Path
    manifest: Manifest
    #: Each record's digest, kind, raw size, and offset and length in the file.
    records: list[tuple[Digest, Kind, int, int, int]] = field(default_factory=list)
    checksum: bytes = b""
    size: int = 0


def _fail(path: Path, reason: str) -> BundleError:
    return BundleError(str(path), reason)


class _Scanner:
    """The verifying pass over one open bundle file."""

    def __init__(self, handle: IO[bytes], path: Path, store: Store | None,
                 progress: Progress, copy: IO[bytes]) -> None:
        self.handle = handle
        self.copy = copy  # what is proven is read back from here, never from the file again
        self.path = path
        self.store = store
        self.reader = Reader(handle, str(path), progress, path.stat().st_size, copy)
        self.offsets: dict[Digest, tuple[int, int]] = {}  # digest -> (offset, length)
        self.needed: dict[Digest, str] = {}  # referenced digest -> first holder
        self.deferred: list[tuple[Digest, int, int]] = []  # awaiting their dictionary

    def run(self) -> BundleScan:
        scan = BundleScan(self.path, read_manifest(self.reader))
        while True:
            tag = self.reader.take(1, "a record tag")
            if tag == END_TAG:
                break
            if tag != RECORD_TAG:
                raise _fail(self.path, f"unexpected byte {tag!r} at offset "
                            f"{self.reader.offset - 1}")
            digest = Digest(self.reader.take(DIGEST_SIZE, "a digest"))
            (size,) = U64.unpack(self.reader.take(8, "a record size"))
            if size > MAX_RECORD:
                raise _fail(self.path, f"record {digest.hex} claims {size:,} bytes, more than "
                            "any record pinrun writes")
            offset = self.reader.offset
            record = self.reader.take(size, f"object {digest.hex}")
            if digest in self.offsets:
                raise _fail(self.path, f"object {digest.hex} appears twice")
            self.offsets[digest] = (offset, size)
            scan.records.append((digest, *self._check(digest, record, offset), offset, size))
        (count,) = U64.unpack(self.reader.take(8, "the record count"))
        scan.checksum = self.reader.hasher.digest()
        if self.reader.take(32, "the checksum", hashed=False) != scan.checksum:
            raise _fail(self.path, "its checksum does not match its content")
        if self.handle.read(1):
            raise _fail(self.path, "there are extra bytes after the checksum")
        if count != len(scan.records):
            raise _fail(self.path, f"it holds {len(scan.records)} records but says {count}")
        scan.size = self.reader.offset + 32
        self.copy.flush()
        for digest, offset, size in self.deferred:
            self._check(digest, self._read_at(offset, size), offset, deferred=True)
        self._check_closure(scan.manifest)
        return scan

    def _check(self, digest: Digest, record: bytes, offset: int,
               deferred: bool = False) -> tuple[Kind, int]:
        try:
            info = read_header(digest, record)
            dictionary = record_dictionary(record)
            if dictionary is not None:
                self.needed.setdefault(dictionary, digest.hex)
                if not deferred and dictionary not in self.offsets:
                    self.deferred.append((digest, offset, len(record)))  # proven later
                    return info.kind, info.raw_size
            self._prove(digest, record)
        except BundleError:
            raise
        except PinrunError as exc:
            raise _fail(self.path, f"object {digest.hex} is not what it claims to be ({exc}); "
                        "the bundle was altered or damaged") from None
        return info.kind, info.raw_size

    def _prove(self, digest: Digest, record: bytes) -> None:
        _, children = prove_record(digest, record, self._dictionary)
        for child in children:
            self.needed.setdefault(child, digest.hex)

    def _read_at(self, offset: int, size: int) -> bytes:
        self.copy.flush()
        return _read_copy(self.copy, offset, size)

    def _dictionary(self, wanted: Digest) -> bytes:
        place = self.offsets.get(wanted)
        if place is not None:
            kind, payload = open_record(wanted, self._read_at(*place))
            if kind is not Kind.BLOB:
                raise _fail(self.path, f"object {wanted.hex} is used as a dictionary but is "
                            f"a {kind.value}")
            return payload
        if self.store is None:
            raise MissingObjectError(wanted, referenced_by="a record compressed with it")
        return self.store._load_dictionary(wanted)

    def _check_closure(self, manifest: Manifest) -> None:
        for ref, target in manifest.refs.items():
            self.needed.setdefault(target, f"ref {ref!r}")
            if ref.startswith(shapes.RUN_REF_PREFIX):
                self._check_run_ref(ref, target)
        for root in manifest.roots:
            self.needed.setdefault(root, "a bundle root")
        for digest, holder in self.needed.items():
            if digest in self.offsets:
                continue
            if self.store is None or not self.store.has(digest):
                raise _fail(self.path, f"object {digest.hex}, referenced by {holder}, is "
                            "neither in the bundle nor in the store")


    def _check_run_ref(self, ref: str, target: Digest) -> None:
        """A ``runs/<id>`` ref must name a run record of run ``<id>`` (ids name lease files)."""
        place = self.offsets.get(target)
        try:
            if place is not None:
                kind, payload = open_record(target, self._read_at(*place), self._dictionary)
            elif self.store is not None and self.store.has(target):
                kind, payload = self.store.load(target)
            else:
                return  # reported as missing by the closure check
            problem = shapes.run_ref_problem(ref, kind, codec.decode_tagged(payload))
        except PinrunError as exc:
            problem = str(exc)
        if problem is not None:
            raise _fail(self.path, f"ref {ref!r} does not name a run record of that run "
                        f"({problem})")


def _read_copy(copy: IO[bytes], offset: int, size: int) -> bytes:
    """``size`` bytes at ``offset`` of the private copy (positioned reads: no shared seek)."""
    import os

    data = os.pread(copy.fileno(), size, offset)
    if len(data) != size:
        raise BundleError(getattr(copy, "name", "bundle copy"), "its private copy is short")
    return data


def _open(path: Path) -> IO[bytes]:
    try:
        return path.open("rb")
    except OSError as exc:
        raise InputError(f"cannot read bundle {path}: {exc.strerror}.") from exc


def _scan(path: Path, store: Store | None, progress: Progress, copy: IO[bytes]) -> BundleScan:
    with _open(path) as handle:
        return _Scanner(handle, path, store, progress, copy).run()


def scan_bundle(path: str | Path, store: Store | None = None,
                progress: Progress = no_progress) -> BundleScan:
    """Verify a bundle completely without writing anything to a store.

    With ``store=None`` the bundle must be self-contained (as for a store
    that does not exist yet). Raises :class:`~pinrun.errors.BundleError`.
    """
    with tempfile.TemporaryFile(prefix="pinrun-bundle-") as copy:
        return _scan(Path(path), store, progress, copy)


def import_bundle(store: Store, path: str | Path, *, force: bool = False,
                  progress: Progress = no_progress,
                  also_refs: Mapping[str, Digest] | None = None) -> ImportReport:
    """Verify a bundle completely, then add its objects and refs to the store.

    A ref that already points elsewhere is a conflict unless ``force`` is set.
    ``progress(bytes_verified, bundle_size)`` is called as records are checked.
    Peak memory is about one record (or one :data:`COMMIT_CHUNK`), whatever
    the bundle's size; the disk holds a private copy of it meanwhile.
    ``also_refs`` are set in the same transaction as the bundle's refs (pinrun's
    own refs included, such as where pulled runs came from); their targets must
    be in the store already.
    """
    with tempfile.TemporaryFile(prefix="pinrun-bundle-") as copy:
        scan = _scan(Path(path), store, progress, copy)
        return _import_scanned(store, copy, scan, force, dict(also_refs or {}))


def import_bundle_into_new(path: str | Path, make_store: Callable[[], Store], *,
                           progress: Progress = no_progress) -> ImportReport:
    """Prove a self-contained bundle, and only then call ``make_store`` and commit to it.

    For a store that does not exist yet: a refused bundle leaves none behind,
    and the bundle is read and proven once, as :func:`import_bundle` does.
    """
    with tempfile.TemporaryFile(prefix="pinrun-bundle-") as copy:
        scan = _scan(Path(path), None, progress, copy)
        return _import_scanned(make_store(), copy, scan, force=False)


def _import_scanned(store: Store, copy: IO[bytes], scan: BundleScan,
                    force: bool, also_refs: dict[str, Digest] | None = None) -> ImportReport:
    refs = {name: target for name, target in scan.manifest.refs.items()
            if not name.startswith(INTERNAL_REF_PREFIX)}
    expected = {name: store.get_ref(name) for name in refs}
    if not force:
        for name, target in refs.items():
            current = expected[name]
            if current is not None and current != target:
                raise InputError(f"ref {name!r} already points to {current.hex}, and the "
                                 f"bundle sets it to {target.hex}. Nothing was imported; "
                                 "use --force to overwrite the ref.")
    new = _commit(store, copy, scan, refs, expected, also_refs=also_refs or {})
    return ImportReport(len(scan.records), new, refs, scan.manifest.roots)


def _commit(store: Store, copy: IO[bytes], scan: BundleScan, refs: dict[str, Digest],
            expected: dict[str, Digest | None], *, also_refs: dict[str, Digest]) -> int:
    """Copy the proven records in, in parts if large, with the refs in the last part."""
    env = store.environment
    objects_db, refs_db = env.dbs["objects"], env.dbs["refs"]
    parts: list[list[tuple[Digest, Kind, int, int, int]]] = [[]]
    size = 0
    for entry in scan.records:
        if size + entry[4] > COMMIT_CHUNK and parts[-1]:
            parts.append([])
            size = 0
        parts[-1].append(entry)
        size += entry[4]

    def put_all(txn: Any, entries: list[tuple[Digest, Kind, int, int, int]]) -> int:
        added = 0
        for digest, _kind, _raw, offset, length in entries:
            added += bool(txn.put(digest.raw, _read_copy(copy, offset, length),
                                  db=objects_db, overwrite=False))
        return added

    added = 0
    for part in parts[:-1]:
        added += env.write(lambda txn, part=part: put_all(txn, part))  # type: ignore[misc]
    earlier = [entry for part in parts[:-1] for entry in part]

    def finish(txn: Any) -> int:
        cursor = txn.cursor(db=objects_db)
        # A gc between the parts collected what no ref named yet: add it again.
        vanished = [entry for entry in earlier if not cursor.set_key(entry[0].raw)]
        done = put_all(txn, vanished) + put_all(txn, parts[-1])
        for name, target in refs.items():
            key = name.encode()
            raw = txn.get(key, db=refs_db)
            check_expected(name, expected[name], store.decode_ref(key, raw)[1] if raw else None)
            txn.put(key, store.stored_ref(key, target.raw), db=refs_db)
        for name, target in also_refs.items():
            if not cursor.set_key(target.raw):
                raise MissingObjectError(target, f"ref {name!r}")
            key = name.encode()
            txn.put(key, store.stored_ref(key, target.raw), db=refs_db)
        _add_counter(txn, env.main_db, _OFFERED_OBJECTS, len(scan.records))
        _add_counter(txn, env.main_db, _OFFERED_BYTES, sum(entry[2] for entry in scan.records))
        return done

    return added + int(env.write(finish))
