"""Importing a bundle: verify everything in a streaming pass, then commit it whole.

A bundle may come from anyone, so import holds at most one record in memory
at a time and never allocates what a record merely claims:

1. **Scan.** Read the file once, record by record: every header is checked
   against its kind's size limit, every record is proven against its digest
   (large values and blobs by hashing their decompressed stream in pieces,
   structural records in full, with their shape), and the references each
   one makes are noted. The file's checksum is computed on the way. Records
   compressed with a dictionary the bundle carries later are proven once
   that dictionary has been found, by seeking back to them.
2. **Closure.** Every referenced digest must be in the bundle or the store.
3. **Commit.** One write transaction reads the file again and copies the
   records in, re-hashing the whole file; if it is not byte-identical to the
   scanned one, the transaction is aborted. Refs are set in the same
   transaction, so a bundle's objects and refs appear together, or nothing
   does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

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
from pinrun.artifacts.objects import (
    RecordInfo,
    open_record,
    read_header,
    record_dictionary,
    verify_record,
)
from pinrun.artifacts.refs import check_expected
from pinrun.artifacts.store import Store
from pinrun.artifacts.trees import check_structure, references
from pinrun.errors import BundleError, InputError, MissingObjectError, PinrunError

__all__ = ["BundleScan", "ImportReport", "import_bundle", "scan_bundle"]

# Structural records are decoded whole to check their shape and find their
# references. One that would inflate past this and more than _MAX_RATIO times
# its stored size is not one pinrun wrote (digests and source text compress a
# few times at most): it is refused before it is decompressed.
_MATERIALIZE_LIMIT: Final = 8 << 20
_MAX_RATIO: Final = 64


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
    #: Each record's digest, kind and raw size, in file order.
    records: list[tuple[Digest, Kind, int]] = field(default_factory=list)
    checksum: bytes = b""
    size: int = 0


def _fail(path: Path, reason: str) -> BundleError:
    return BundleError(str(path), reason)


class _Scanner:
    """The verifying pass over one open bundle file."""

    def __init__(self, handle: IO[bytes], path: Path, store: Store | None,
                 progress: Progress) -> None:
        self.handle = handle
        self.path = path
        self.store = store
        self.reader = Reader(handle, str(path), progress, path.stat().st_size)
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
            scan.records.append((digest, *self._check(digest, record, offset)))
        (count,) = U64.unpack(self.reader.take(8, "the record count"))
        scan.checksum = self.reader.hasher.digest()
        if self.reader.take(32, "the checksum", hashed=False) != scan.checksum:
            raise _fail(self.path, "its checksum does not match its content")
        if self.handle.read(1):
            raise _fail(self.path, "there are extra bytes after the checksum")
        if count != len(scan.records):
            raise _fail(self.path, f"it holds {len(scan.records)} records but says {count}")
        scan.size = self.reader.offset + 32
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
            self._prove(digest, record, info)
        except BundleError:
            raise
        except PinrunError as exc:
            raise _fail(self.path, f"object {digest.hex} is not what it claims to be ({exc}); "
                        "the bundle was altered or damaged") from None
        return info.kind, info.raw_size

    def _prove(self, digest: Digest, record: bytes, info: RecordInfo) -> None:
        kind = info.kind
        if info.raw_size > _MATERIALIZE_LIMIT:
            if kind is Kind.BLOB or kind is Kind.VALUE:
                verify_record(digest, record, self._dictionary)  # streamed: nothing held
                return
            if info.raw_size > _MAX_RATIO * len(record):
                raise _fail(self.path, f"object {digest.hex} is a {kind.value} that claims to "
                            f"inflate {info.raw_size // max(len(record), 1):,} times, which "
                            "pinrun never writes")
        kind, payload = open_record(digest, record, self._dictionary)
        check_structure(digest, kind, payload)
        for child in references(kind, payload):
            self.needed.setdefault(child, digest.hex)

    def _read_at(self, offset: int, size: int) -> bytes:
        position = self.handle.tell()
        try:
            self.handle.seek(offset)
            data = self.handle.read(size)
        finally:
            self.handle.seek(position)
        if len(data) != size:
            raise _fail(self.path, "the file changed while it was being read")
        return data

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
        for root in manifest.roots:
            self.needed.setdefault(root, "a bundle root")
        for digest, holder in self.needed.items():
            if digest in self.offsets:
                continue
            if self.store is None or not self.store.has(digest):
                raise _fail(self.path, f"object {digest.hex}, referenced by {holder}, is "
                            "neither in the bundle nor in the store")


def _open(path: Path) -> IO[bytes]:
    try:
        return path.open("rb")
    except OSError as exc:
        raise InputError(f"cannot read bundle {path}: {exc.strerror}.") from exc


def scan_bundle(path: str | Path, store: Store | None = None,
                progress: Progress = no_progress) -> BundleScan:
    """Verify a bundle completely without writing anything.

    With ``store=None`` the bundle must be self-contained (as for a store
    that does not exist yet). Raises :class:`~pinrun.errors.BundleError`.
    """
    source = Path(path)
    with _open(source) as handle:
        return _Scanner(handle, source, store, progress).run()


def import_bundle(store: Store, path: str | Path, *, force: bool = False,
                  progress: Progress = no_progress, scan: BundleScan | None = None
                  ) -> ImportReport:
    """Verify a bundle completely, then add its objects and refs in one transaction.

    A ref that already points elsewhere is a conflict unless ``force`` is set.
    ``progress(bytes_verified, bundle_size)`` is called as records are checked.
    ``scan``: a :func:`scan_bundle` result for this file, when the caller has
    one (the commit re-checks that the file is still the one scanned).
    """
    source = Path(path)
    if scan is None:
        scan = scan_bundle(source, store, progress)
    refs = {name: target for name, target in scan.manifest.refs.items()
            if not name.startswith(INTERNAL_REF_PREFIX)}
    if not force:
        for name, target in refs.items():
            current = store.get_ref(name)
            if current is not None and current != target:
                raise InputError(f"ref {name!r} already points to {current.hex}, and the "
                                 f"bundle sets it to {target.hex}. Nothing was imported; use "
                                 "--force to overwrite the ref.")
    env = store.environment
    objects_db, refs_db, meta_db = (env.dbs[n] for n in ("objects", "refs", "meta"))
    expected = {name: store.get_ref(name) for name in refs}

    def operation(txn: Any) -> int:
        # Redone from the start if the map must grow: it reads the file again.
        with _open(source) as handle:
            reader = Reader(handle, str(source))
            read_manifest(reader)
            added = 0
            for digest, _kind, _raw in scan.records:
                reader.take(1 + DIGEST_SIZE, "a record")
                (size,) = U64.unpack(reader.take(8, "a record size"))
                if size > MAX_RECORD:
                    raise _fail(source, "the file changed while it was being imported")
                added += bool(txn.put(digest.raw, reader.take(size, "a record"),
                                      db=objects_db, overwrite=False))
            reader.take(9, "the record count")
            if reader.hasher.digest() != scan.checksum:
                raise _fail(source, "the file changed while it was being imported")
        for name, target in refs.items():
            raw = txn.get(name.encode(), db=refs_db)
            check_expected(name, expected[name], Digest(raw) if raw else None)
            txn.put(name.encode(), target.raw, db=refs_db)
        _add_counter(txn, meta_db, _OFFERED_OBJECTS, len(scan.records))
        _add_counter(txn, meta_db, _OFFERED_BYTES, sum(raw for _, _, raw in scan.records))
        return added

    new = env.write(operation)
    return ImportReport(len(scan.records), new, refs, scan.manifest.roots)
