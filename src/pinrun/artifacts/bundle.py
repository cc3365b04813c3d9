"""Bundles: one file carrying a set of roots and every object they reach.

The file format is in :mod:`pinrun.artifacts.bundle_format`; importing, which
proves a bundle from someone else before anything is written, is in
:mod:`pinrun.artifacts.bundle_import`. This module writes bundles.

Export walks from the roots in short read transactions (a long one would make
the store's file grow beside any writer, as LMDB cannot reuse pages a reader
may still see), verifies every record on the way out, and writes a temporary
file that replaces the target only once it is complete.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO, Final

from pinrun.artifacts.bundle_format import (
    INTERNAL_REF_PREFIX,
    MAGIC,
    RECORD_TAG,
    U64,
    Progress,
    Writer,
    no_progress,
    user_file_mode,
    write_end,
    write_head,
)
from pinrun.artifacts.bundle_import import (
    BundleScan,
    ImportReport,
    import_bundle,
    import_bundle_into_new,
    scan_bundle,
)
from pinrun.artifacts.digest import Digest
from pinrun.artifacts.lmdb_env import ChunkedReader
from pinrun.artifacts.objects import open_record, record_dictionary
from pinrun.artifacts.proof import prove_record
from pinrun.artifacts.store import Store
from pinrun.errors import InputError, MissingObjectError

__all__ = [
    "MAGIC",
    "BundleScan",
    "ExportReport",
    "ImportReport",
    "export_bundle",
    "import_bundle",
    "import_bundle_into_new",
    "scan_bundle",
    "write_pack",
]

# Objects read per read transaction during export.
_EXPORT_CHUNK: Final = 512


@dataclass(frozen=True)
class ExportReport:
    """What went into a bundle."""

    path: Path
    objects: int
    bytes: int
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


def export_bundle(store: Store, roots: Sequence[str] | None, path: str | Path,
                  progress: Progress = no_progress) -> ExportReport:
    """Write ``roots`` (ref names or digests; ``None`` for every ref) and all they reach.

    ``progress(objects_written, 0)`` is called as the export goes. Objects
    are immutable, so reading them over several transactions is safe; only a
    ``gc`` that runs meanwhile and collects what a moved ref left behind can
    make an export fail (with ``MissingObjectError``; run it again).
    """
    out = Path(path)
    if out.is_dir():
        raise InputError(f"{out} is a folder; give the bundle's file name, "
                         f"e.g. {out / 'runs.pinrun'}")
    refs, digests = _split_roots(store, roots)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            writer = Writer(handle)
            write_head(writer, refs, digests)
            start = [(f"ref {n!r}", d) for n, d in sorted(refs.items())]
            start += [("the export roots", d) for d in digests]
            count = _write_records(store, writer, start, progress)
            write_end(writer, count)
            handle.flush()
            os.chmod(tmp_name, user_file_mode())  # mkstemp made it private (0600)
            os.fsync(handle.fileno())
        os.replace(tmp_name, out)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return ExportReport(out, count, out.stat().st_size, refs, digests)


def write_pack(store: Store, roots: Sequence[Digest], present: AbstractSet[bytes],
               handle: IO[bytes]) -> list[tuple[Digest, int, int]]:
    """Write a pack: what ``roots`` reach, less what ``present`` holds, in the bundle format.

    ``present`` is what the receiver has already, with all it reaches (a
    remote's packs are closed that way), so the walk does not descend into
    it. Returns each record's digest, offset and length in the file, for the
    pack's index. Nothing is written when every root is present.
    """
    writer = Writer(handle)
    write_head(writer, {}, roots)
    table: list[tuple[Digest, int, int]] = []
    write_end(writer, _write_records(store, writer, [("the pushed runs", d) for d in roots],
                                     no_progress, present=present, table=table))
    return table


def _write_records(store: Store, writer: Writer, start: list[tuple[str, Digest]],
                   progress: Progress, *, present: AbstractSet[bytes] = frozenset(),
                   table: list[tuple[Digest, int, int]] | None = None) -> int:
    """Walk from ``start`` depth-first, writing each object once; returns how many.

    Every record is proven against its digest on the way out (a corrupt object
    is never exported). Objects in ``present`` are skipped with all they reach;
    ``table`` receives each written record's digest, offset and length.
    """
    seen: set[bytes] = set(present)
    queue = list(reversed(start))
    count = 0
    with ChunkedReader(store.environment, "objects", _EXPORT_CHUNK) as reader:

        def read(digest: Digest, holder: str) -> bytes:
            record = reader.get(digest.raw)
            if record is None:
                raise MissingObjectError(digest, holder)
            return record

        while queue:
            holder, digest = queue.pop()
            if digest.raw in seen:
                continue
            seen.add(digest.raw)
            record = read(digest, holder)
            _, references = prove_record(digest, record, partial(_dictionary, read, digest),
                                         shape=False)
            head = RECORD_TAG + digest.raw + U64.pack(len(record))
            if table is not None:
                table.append((digest, writer.offset + len(head), len(record)))
            writer.write(head + record)
            count += 1
            if count % 256 == 0:
                progress(count, 0)
            children = sorted(set(references))
            dictionary = record_dictionary(record)
            if dictionary is not None:
                children.insert(0, dictionary)
            queue.extend((digest.hex, c) for c in reversed(children) if c.raw not in seen)
    return count


def _dictionary(read: Callable[[Digest, str], bytes], holder: Digest, wanted: Digest) -> bytes:
    """The payload of the dictionary a record names (read like every other record)."""
    return open_record(wanted, read(wanted, holder.hex))[1]
