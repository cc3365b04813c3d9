"""Merkle snapshots: a state stored as a tree of its keys.

A snapshot of ``{"a": 1, "b": {...}}`` is a ``tree`` object mapping each key
to the digest of its value. A nested dict whose encoding exceeds
:data:`SUBTREE_THRESHOLD` becomes a tree of its own, recursively, and a
``bytes`` value is stored as a raw blob, split into chunks above
:data:`CHUNK_THRESHOLD`. Two snapshots that differ in one key therefore share
every object but the changed value and the trees above it, and a diff only
descends where digests differ.

Tree payloads are canonical values: ``{"type": "map", "entries": {key:
digest}}`` or ``{"type": "chunks", "chunks": [digest, ...], "size": n}``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any, Final, Protocol

from pinrun.artifacts import codec, shapes
from pinrun.artifacts.digest import Digest, Kind
from pinrun.errors import CorruptObjectError, PinrunError, UnsupportedValueError

__all__ = [
    "CHUNK_SIZE",
    "CHUNK_THRESHOLD",
    "SUBTREE_THRESHOLD",
    "ObjectSink",
    "ObjectSource",
    "check_structure",
    "load_entry",
    "load_snapshot",
    "references",
    "store_blob",
    "store_entries",
    "store_entry",
    "store_snapshot",
    "tree_entries",
]

#: A nested dict whose canonical encoding is larger than this is stored as a subtree.
SUBTREE_THRESHOLD: Final = 64 * 1024
#: ``bytes`` values at least this large are split into chunks.
CHUNK_THRESHOLD: Final = 4 * 1024 * 1024
#: The size of each chunk of a large blob.
CHUNK_SIZE: Final = 1024 * 1024

_DIGEST_REF: Final = re.compile(rb'\{"\$digest":"([0-9a-f]{64})"\}')


class ObjectSink(Protocol):
    """Where new objects go (a write batch)."""

    def put(self, kind: Kind, payload: bytes) -> Digest: ...


class ObjectSource(Protocol):
    """Where stored objects come from, verified (a store or a read transaction)."""

    def load(self, digest: Digest) -> tuple[Kind, bytes]: ...


def store_blob(sink: ObjectSink, data: bytes) -> Digest:
    """Store raw bytes: one blob, or a chunk tree when large."""
    if len(data) < CHUNK_THRESHOLD:
        return sink.put(Kind.BLOB, bytes(data))
    view = memoryview(data)
    chunks = [
        sink.put(Kind.BLOB, bytes(view[start : start + CHUNK_SIZE]))
        for start in range(0, len(data), CHUNK_SIZE)
    ]
    payload = codec.encode({"type": "chunks", "chunks": chunks, "size": len(data)})
    return sink.put(Kind.TREE, payload)


def store_entry(sink: ObjectSink, value: Any, path: str, payload: bytes | None = None) -> Digest:
    """Store one state value under the right shape; ``path`` names it in errors.

    ``payload`` is the value's canonical encoding when the caller has it already.
    """
    if type(value) is bytes:
        return store_blob(sink, value)
    if payload is None:
        payload = codec.encode(value, root=path)
    if (
        len(payload) > SUBTREE_THRESHOLD
        and type(value) is dict
        and all(type(key) is str for key in value)
    ):
        return store_snapshot(sink, value, root=path)
    return sink.put(Kind.VALUE, payload)


def store_snapshot(sink: ObjectSink, state: Mapping[str, Any], root: str = "state",
                   payloads: Mapping[str, bytes] | None = None,
                   entries_out: dict[str, Digest] | None = None) -> Digest:
    """Store a mapping of string keys as a tree; returns the tree's digest.

    ``payloads`` may hold the canonical encodings of some values already;
    ``entries_out`` receives each key's entry digest (for :func:`store_entries`).
    """
    entries: dict[str, Digest] = {}
    known = payloads if payloads is not None else {}
    for key, value in state.items():
        if type(key) is not str:
            raise UnsupportedValueError(f"{root} key {key!r}", type(key).__qualname__,
                                        "snapshot keys must be strings")
        entries[key] = store_entry(sink, value, f"{root}[{key!r}]", known.get(key))
    if entries_out is not None:
        entries_out.update(entries)
    return store_entries(sink, entries)


def store_entries(sink: ObjectSink, entries: Mapping[str, Digest]) -> Digest:
    """Store the tree of a snapshot whose entries are stored already, by their digests."""
    return sink.put(Kind.TREE, codec.encode_digest_map({"type": "map"}, "entries", entries))


def _tree(digest: Digest, payload: bytes) -> dict[str, Any]:
    try:
        tree = codec.decode(payload)
    except PinrunError:
        tree = None
    kind = tree.get("type") if type(tree) is dict else None
    shaped = (
        (kind == "map" and type(tree.get("entries")) is dict
         and all(type(k) is str and type(v) is Digest for k, v in tree["entries"].items()))
        or (kind == "chunks" and type(tree.get("chunks")) is list
            and all(type(c) is Digest for c in tree["chunks"]) and type(tree.get("size")) is int)
    ) if tree is not None else False
    if not shaped:
        raise CorruptObjectError(digest, None, "it is stored as a tree but is not a valid tree")
    checked: dict[str, Any] = tree
    return checked


def check_structure(digest: Digest, kind: Kind, payload: bytes) -> None:
    """Raise :class:`CorruptObjectError` unless the payload parses as its kind requires.

    A digest proves the bytes are the ones written, not that what was written
    makes sense (a bundle can be crafted); fsck and import check both. Run,
    step, flow, env and code objects are checked field by field
    (:mod:`pinrun.artifacts.shapes`).
    """
    if kind is Kind.BLOB:
        return
    if kind is Kind.TREE:
        _tree(digest, payload)
        return
    if kind in shapes.SHAPED_KINDS:  # runs, steps, flows, environments, code: every field
        shapes.parse(digest, kind, payload)
        return
    try:
        codec.decode_tagged(payload)
    except PinrunError as exc:
        raise CorruptObjectError(digest, None, f"its {kind.value} payload does not parse "
                                 f"({exc})") from None


def tree_entries(source: ObjectSource, digest: Digest) -> dict[str, Digest]:
    """The key -> digest mapping of a ``map`` tree, without loading the values."""
    kind, payload = source.load(digest)
    tree = _tree(digest, payload) if kind is Kind.TREE else None
    if tree is None or tree["type"] != "map":
        raise CorruptObjectError(digest, None, f"expected a snapshot tree, found a {kind.value}")
    return dict(tree["entries"])


def load_entry(source: ObjectSource, digest: Digest) -> Any:
    """Rebuild the value stored under ``digest`` by :func:`store_entry`."""
    kind, payload = source.load(digest)
    if kind is Kind.VALUE:
        return codec.decode(payload)
    if kind is Kind.BLOB:
        return payload
    if kind is Kind.TREE:
        tree = _tree(digest, payload)
        if tree["type"] == "chunks":
            data = b"".join(source.load(chunk)[1] for chunk in tree["chunks"])
            if len(data) != tree["size"]:
                raise CorruptObjectError(digest, None, "its chunks do not add up to its size")
            return data
        return {key: load_entry(source, child) for key, child in tree["entries"].items()}
    raise CorruptObjectError(digest, None, f"a {kind.value} object is not a state value")


def load_snapshot(source: ObjectSource, digest: Digest) -> dict[str, Any]:
    """Rebuild a whole snapshot stored by :func:`store_snapshot`."""
    state = load_entry(source, digest)
    if type(state) is not dict:
        raise CorruptObjectError(digest, None, "it is not a snapshot tree")
    return state


def references(kind: Kind, payload: bytes) -> Iterator[Digest]:
    """The digests an object points to (blobs and values point to nothing)."""
    if kind is Kind.BLOB or kind is Kind.VALUE:
        return
    # Structured objects are canonical JSON; a digest in them is always the
    # tag {"$digest":"<hex>"}, and a quote inside user text is escaped, so a
    # byte scan finds exactly the references without decoding.
    for match in _DIGEST_REF.finditer(payload):
        yield Digest(bytes.fromhex(match.group(1).decode("ascii")))
