"""Proving one stored record in bounded memory: its digest, and its shape where it has one.

``import`` and ``fsck`` both prove every record they meet, and a record may
come from someone else. Values and blobs larger than :data:`MATERIALIZE_LIMIT`
are proven as a stream (they reference nothing and have no shape to check);
a structural record (tree, run, step, flow, env, code) is decoded whole to
check its shape and find its references, unless it would inflate past that
limit and more than :data:`MAX_RATIO` times its stored size, which no record
pinrun writes does (digests and source text compress a few times at most).
"""

from __future__ import annotations

from typing import Final

from pinrun.artifacts.digest import Digest, Kind
from pinrun.artifacts.objects import DictionaryLoader, open_record, read_header, verify_record
from pinrun.artifacts.trees import check_structure, references
from pinrun.errors import CorruptObjectError

__all__ = ["MATERIALIZE_LIMIT", "MAX_RATIO", "prove_record"]

#: Payloads up to this size are decompressed whole to be checked.
MATERIALIZE_LIMIT: Final = 8 << 20
#: The most a structural record larger than the limit may inflate.
MAX_RATIO: Final = 64


def prove_record(digest: Digest, record: bytes | memoryview,
                 load_dictionary: DictionaryLoader | None = None, *,
                 shape: bool = True) -> tuple[Kind, list[Digest]]:
    """Check ``record`` against ``digest`` (and its kind's shape); its kind and references.

    Raises :class:`~pinrun.errors.CorruptObjectError` (or the header's
    ``ObjectFormatError``) for a record that is not what it claims to be.
    ``shape=False`` proves the bytes only (export copies what a store holds;
    judging its shape is for whoever reads it: import, fsck).
    """
    info = read_header(digest, record)
    if info.raw_size > MATERIALIZE_LIMIT:
        if info.kind is Kind.BLOB or info.kind is Kind.VALUE:
            verify_record(digest, record, load_dictionary)
            return info.kind, []
        if info.raw_size > MAX_RATIO * len(record):
            raise CorruptObjectError(digest, None, f"it is a {info.kind.value} that claims to "
                                     f"inflate {info.raw_size // max(len(record), 1):,} times, "
                                     "which pinrun never writes")
    kind, payload = open_record(digest, record, load_dictionary)
    if shape:
        check_structure(digest, kind, payload)
    return kind, list(references(kind, payload))
