"""Bundles: one file carrying a set of roots and every object they reach.

Layout (all integers little-endian)::

    b"PINRUN-BUNDLE\\n"  magic, then one byte: bundle format version (1)
    u32 + JSON          manifest: {"format", "pinrun", "refs": {name: hex}, "roots": [hex]}
    repeated:           b"\\x01", 32-byte digest, u64 record length, the stored record
    b"\\x00"             end of records
    u64                 number of records
    32 bytes            BLAKE3 of every byte before these 32

Records are the store's own (header plus compressed payload), so export and
import copy bytes without recompressing. Import proves every record against
its digest, the checksum, and that every reference resolves, all before one
transaction makes the objects and refs visible together: a bad bundle writes
nothing.
"""

from __future__ import annotations

import os
import struct
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO, Any, Final

import blake3
import orjson

from pinrun.artifacts.digest import DIGEST_SIZE, Digest
from pinrun.artifacts.objects import EncodedObject, open_record, read_header, record_dictionary
from pinrun.artifacts.store import Store, WriteBatch
from pinrun.artifacts.trees import check_structure, references
from pinrun.errors import BundleError, InputError, MissingObjectError, PinrunError

__all__ = ["ExportReport", "ImportReport", "export_bundle", "import_bundle"]

MAGIC: Final = b"PINRUN-BUNDLE\n"
#: Refs under this prefix belong to pinrun itself and never travel in bundles.
INTERNAL_REF_PREFIX: Final = "pinrun/"
BUNDLE_FORMAT: Final = 1
_U32: Final = struct.Struct("<I")
_U64: Final = struct.Struct("<Q")
_RECORD: Final = b"\x01"
_END: Final = b"\x00"
_MAX_MANIFEST: Final = 64 * 1024 * 1024
_MAX_RECORD: Final = 1 << 34


@dataclass(frozen=True)
class ExportReport:
    """What went into a bundle."""

    path: Path
    objects: int
    bytes: int
    refs: dict[str, Digest]
    roots: list[Digest]


@dataclass(frozen=True)
class ImportReport:
    """What a bundle brought into the store."""

    objects: int
    new_objects: int
    refs: dict[str, Digest]
    roots: list[Digest]


def _split_roots(store: Store, roots: Sequence[str] | None) -> tuple[dict[str, Digest],
                                                                      list[Digest]]:
    if roots is None:
        # pinrun's own refs (the compression dictionary) stay home: the records
        # that need a dictionary carry it by digest anyway.
        return {name: d for name, d in store.refs().items()
                if not name.startswith(INTERNAL_REF_PREFIX)}, []
    refs: dict[str, Digest] = {}
    digests: list[Digest] = []
    for text in roots:
        target = store.get_ref(text) if "/" in text else None
        if target is not None:
            refs[text] = target
        else:
            digests.append(store.resolve(text))
    return refs, digests


#: Called as ``progress(done, total)``; ``total`` is 0 while it is not known yet.
Progress = Callable[[int, int], None]


def _no_progress(done: int, total: int) -> None:
    pass


def export_bundle(store: Store, roots: Sequence[str] | None, path: str | Path,
                  progress: Progress = _no_progress) -> ExportReport:
    """Write ``roots`` (ref names or digests; ``None`` for every ref) and all they reach.

    ``progress(objects_written, 0)`` is called as the export goes.
    """
    out = Path(path)
    if out.is_dir():
        raise InputError(f"{out} is a folder; give the bundle's file name, "
                         f"e.g. {out / 'runs.pinrun'}")
    refs, digests = _split_roots(store, roots)
    env = store.environment
    objects_db = env.dbs["objects"]
    manifest = orjson.dumps({
        "format": BUNDLE_FORMAT, "pinrun": _version(),
        "refs": {name: d.hex for name, d in sorted(refs.items())},
        "roots": [d.hex for d in digests],
    }, option=orjson.OPT_SORT_KEYS)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    count = 0
    try:
        with os.fdopen(fd, "wb") as handle, env.read() as txn:
            writer = _HashingWriter(handle)
            writer.write(MAGIC + bytes([BUNDLE_FORMAT]) + _U32.pack(len(manifest)) + manifest)
            start = [(f"ref {n!r}", d) for n, d in sorted(refs.items())]
            start += [("the export roots", d) for d in digests]
            seen: set[bytes] = set()
            queue = list(reversed(start))
            while queue:
                holder, digest = queue.pop()
                if digest.raw in seen:
                    continue
                seen.add(digest.raw)
                record = txn.get(digest.raw, db=objects_db)
                if record is None:
                    raise MissingObjectError(digest, holder)
                # Verified on the way out: a corrupt object is never exported. A
                # dictionary is read in this same transaction (a nested read could
                # have to wait for a map resize that this open transaction blocks).
                kind, payload = open_record(digest, record,
                                            partial(_payload_in, txn, objects_db, digest))
                writer.write(_RECORD + digest.raw + _U64.pack(len(record)) + record)
                count += 1
                if count % 256 == 0:
                    progress(count, 0)
                children = sorted(set(references(kind, payload)))
                dictionary = record_dictionary(record)
                if dictionary is not None:
                    children.insert(0, dictionary)
                queue.extend((digest.hex, c) for c in reversed(children) if c.raw not in seen)
            writer.write(_END + _U64.pack(count))
            handle.write(writer.hasher.digest())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, out)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return ExportReport(out, count, out.stat().st_size, refs, digests)


def _payload_in(txn: Any, objects_db: Any, holder: Digest, digest: Digest) -> bytes:
    record = txn.get(digest.raw, db=objects_db)
    if record is None:
        raise MissingObjectError(digest, holder.hex)
    return open_record(digest, record)[1]


class _HashingWriter:
    def __init__(self, handle: IO[bytes]) -> None:
        self.handle = handle
        self.hasher = blake3.blake3()

    def write(self, data: bytes) -> None:
        self.hasher.update(data)
        self.handle.write(data)


class _Reader:
    """Reads exact byte counts, hashing as it goes; a short read means truncation."""

    def __init__(self, handle: IO[bytes], name: str, progress: Progress = _no_progress,
                 total: int = 0) -> None:
        self.handle = handle
        self.name = name
        self.hasher = blake3.blake3()
        self.offset = 0
        self._progress = progress
        self._total = total
        self._reported = 0

    def take(self, size: int, what: str, hashed: bool = True) -> bytes:
        data = self.handle.read(size)
        if len(data) != size:
            raise BundleError(self.name, f"the file is truncated: it ends at byte "
                              f"{self.offset + len(data)} while reading {what}")
        if hashed:
            self.hasher.update(data)
        self.offset += size
        if self.offset - self._reported >= 1 << 20:
            self._reported = self.offset
            self._progress(self.offset, self._total)
        return data


def _read_manifest(reader: _Reader) -> dict[str, Any]:
    head = reader.take(len(MAGIC) + 1, "the header")
    if head[: len(MAGIC)] != MAGIC:
        raise BundleError(reader.name, "it is not a pinrun bundle (wrong magic bytes)")
    if head[-1] != BUNDLE_FORMAT:
        raise BundleError(reader.name, f"bundle format {head[-1]} is not supported "
                          f"(this pinrun reads format {BUNDLE_FORMAT})")
    (size,) = _U32.unpack(reader.take(4, "the manifest size"))
    if size > _MAX_MANIFEST:
        raise BundleError(reader.name, f"its manifest claims {size} bytes, which is implausible")
    text = reader.take(size, "the manifest")  # outside the try: its own errors are clear
    try:
        manifest = orjson.loads(text)
        refs = {str(k): Digest.from_hex(v) for k, v in manifest["refs"].items()}
        roots = [Digest.from_hex(v) for v in manifest["roots"]]
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError, PinrunError) as exc:
        raise BundleError(reader.name, f"its manifest is malformed ({exc})") from None
    return {"refs": refs, "roots": roots}


def _read_objects(reader: _Reader, store: Store) -> tuple[list[EncodedObject],
                                                         dict[Digest, str]]:
    """Every record, verified, and what each one references (child -> first holder)."""
    raw: list[tuple[Digest, bytes]] = []
    while True:
        tag = reader.take(1, "a record tag")
        if tag == _END:
            break
        if tag != _RECORD:
            raise BundleError(reader.name, f"unexpected byte {tag!r} at offset "
                              f"{reader.offset - 1}")
        digest = Digest(reader.take(DIGEST_SIZE, "a digest"))
        (size,) = _U64.unpack(reader.take(8, "a record size"))
        if size > _MAX_RECORD:
            raise BundleError(reader.name, f"record {digest.hex} claims {size} bytes")
        raw.append((digest, reader.take(size, f"object {digest.hex}")))
    # Verify once everything is read: a record compressed with a dictionary
    # may come before the dictionary, which is then found in the bundle.
    by_digest = dict(raw)

    def load_dictionary(wanted: Digest) -> bytes:
        record = by_digest.get(wanted)
        if record is None:
            return store._load_dictionary(wanted)
        return open_record(wanted, record)[1]

    objects: list[EncodedObject] = []
    needed: dict[Digest, str] = {}
    for digest, record in raw:
        try:
            kind, payload = open_record(digest, record, load_dictionary)
            check_structure(digest, kind, payload)
        except PinrunError as exc:
            raise BundleError(reader.name, f"object {digest.hex} is not what it claims to be "
                              f"({exc}); the bundle was altered or damaged") from None
        objects.append(EncodedObject(digest, kind, record, read_header(digest, record).raw_size))
        for child in references(kind, payload):
            needed.setdefault(child, digest.hex)
        dictionary = record_dictionary(record)
        if dictionary is not None:
            needed.setdefault(dictionary, digest.hex)
    return objects, needed


def import_bundle(store: Store, path: str | Path, *, force: bool = False,
                  progress: Progress = _no_progress) -> ImportReport:
    """Verify a bundle completely, then add its objects and refs in one transaction.

    A ref that already points elsewhere is a conflict unless ``force`` is set.
    ``progress(bytes_verified, bundle_size)`` is called as records are checked.
    """
    source = Path(path)
    try:
        handle = source.open("rb")
    except OSError as exc:
        raise InputError(f"cannot read bundle {source}: {exc.strerror}.") from exc
    with handle:
        reader = _Reader(handle, str(source), progress, source.stat().st_size)
        manifest = _read_manifest(reader)
        objects, needed = _read_objects(reader, store)
        (count,) = _U64.unpack(reader.take(8, "the record count"))
        expected_sum = reader.hasher.digest()
        checksum = reader.take(32, "the checksum", hashed=False)
        if handle.read(1):
            raise BundleError(str(source), "there are extra bytes after the checksum")
    if count != len(objects):
        raise BundleError(str(source), f"it holds {len(objects)} records but says {count}")
    if checksum != expected_sum:
        raise BundleError(str(source), "its checksum does not match its content")
    _check_closure(store, str(source), objects, needed, manifest)
    batch = WriteBatch(store)
    for obj in objects:
        batch.add(obj)
    refs: dict[str, Digest] = {name: target for name, target in manifest["refs"].items()
                               if not name.startswith(INTERNAL_REF_PREFIX)}
    for name, target in refs.items():
        current = store.get_ref(name)
        if current is not None and current != target and not force:
            raise InputError(f"ref {name!r} already points to {current.hex}, and the bundle "
                             f"sets it to {target.hex}. Nothing was imported; use --force to "
                             "overwrite the ref.")
        batch.set_ref(name, target, expected=current)
    new = batch.commit()
    return ImportReport(len(objects), new, refs, manifest["roots"])


def _check_closure(store: Store, name: str, objects: list[EncodedObject],
                   needed: dict[Digest, str], manifest: dict[str, Any]) -> None:
    present = {obj.digest for obj in objects}
    for ref, target in manifest["refs"].items():
        needed.setdefault(target, f"ref {ref!r}")
    for root in manifest["roots"]:
        needed.setdefault(root, "a bundle root")
    for digest, holder in needed.items():
        if digest not in present and not store.has(digest):
            raise BundleError(name, f"object {digest.hex}, referenced by {holder}, is neither "
                              "in the bundle nor in the store")


def _version() -> str:
    from pinrun import __version__

    return __version__
