"""Merkle snapshots: a state stored as a tree of its keys.

A snapshot of ``{"a": 1, "b": {...}}`` is a ``tree`` object mapping each key
to the digest of its value. A nested dict whose encoding exceeds
:data:`SUBTREE_THRESHOLD` becomes a tree of its own, recursively, and a
``bytes`` value is stored as a raw blob, split into chunks above
:data:`CHUNK_THRESHOLD`. Two snapshots that differ in one key therefore share
every object but the changed value and the trees above it, and a diff only
descends where digests differ.

A snapshot whose small values add up past 64 KiB is paged
(:mod:`pinrun.artifacts.snapshot_pages`): its small values sit inline in
pages of about 64 KiB, not one object each.

Tree payloads are canonical values: ``{"type": "map", "entries": {key:
digest}}``, ``{"type": "pages", "pages": [digest, ...], "size": n}`` or
``{"type": "chunks", "chunks": [digest, ...], "size": n}``.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final, Protocol

from pinrun.artifacts import codec, shapes
from pinrun.artifacts.codec import BytesEntry
from pinrun.artifacts.digest import Digest, Kind, compute_digest
from pinrun.artifacts.snapshot_pages import (
    INLINE_LIMIT,
    PAGE_SPLIT,
    PAGE_TARGET,
    PAGED_ABOVE,
    Entry,
    Inline,
    PageCache,
    inline,
    put_pages,
    store_entries,
    store_inline_keys,
)
from pinrun.errors import CorruptObjectError, PinrunError, UnsupportedValueError

__all__ = [
    "CHUNK_SIZE",
    "CHUNK_THRESHOLD",
    "EARLIER_LAYOUTS",
    "INLINE_LIMIT",
    "MAX_BYTES_SIZE",
    "PAGE_SPLIT",
    "PAGE_TARGET",
    "SUBTREE_THRESHOLD",
    "Entry",
    "Inline",
    "ObjectSink",
    "ObjectSource",
    "bytes_entry",
    "bytes_head",
    "check_structure",
    "encode_entry",
    "may_differ_from_earlier",
    "references",
    "snapshot_entries",
    "snapshot_pages",
    "store_blob",
    "store_entries",
    "store_entry",
    "store_snapshot",
    "store_snapshot_key_by_key",
    "store_snapshot_per_key",
    "tree_entries",
]

#: A nested dict whose canonical encoding is larger than this is stored as a subtree.
SUBTREE_THRESHOLD: Final = 64 * 1024
#: ``bytes`` values at least this large are split into chunks.
CHUNK_THRESHOLD: Final = 4 * 1024 * 1024
#: The size of each chunk of a large blob.
CHUNK_SIZE: Final = 1024 * 1024
#: The largest ``bytes`` value stored or rebuilt: a chunk tree saying more is refused unread.
MAX_BYTES_SIZE: Final = 2048 * 1024 * 1024

_page_cuts: Callable[[bytes, int], tuple[int, list[tuple[int, int]]] | None] | None = None
_inline_entries: Callable[[dict[str, Any], dict[str, bytes], int],
                          tuple[dict[str, Inline], list[str]] | None] | None = None
_inline_into: Callable[[dict[str, Any], dict[str, bytes], int, dict[str, Entry]],
                       int | None] | None = None
#: A snapshot of at least this many keys puts its inline entries straight into the
#: caller's (see store_snapshot); a smaller one makes them a dict first, as it always did.
_INTO_FROM: Final = 64
try:
    # Where a large nested map's pages end, found in its encoding, and a wide snapshot's
    # inline entries, made in C (setup.py builds it where a compiler exists); without
    # it, the Python code below does the same.
    from pinrun.artifacts._speedups import inline_entries as _compiled_inline_entries
    from pinrun.artifacts._speedups import inline_into as _compiled_inline_into
    from pinrun.artifacts._speedups import page_cuts as _compiled_page_cuts
except ImportError:  # pragma: no cover - exercised on machines without a compiler
    pass
else:
    _page_cuts = _compiled_page_cuts
    _inline_entries = _compiled_inline_entries  # type: ignore[assignment]  # C Inline is Inline
    _inline_into = _compiled_inline_into

_DIGEST_REF: Final = re.compile(rb'\{"\$digest":"([0-9a-f]{64})"\}')


class ObjectSink(Protocol):
    """Where new objects go (a write batch)."""

    def put(self, kind: Kind, payload: bytes, digest: Digest | None = None) -> Digest:
        """Queue ``payload`` as ``kind``; ``digest``, when given, is its digest already."""


class ObjectSource(Protocol):
    """Where stored objects come from, verified (a store or a read transaction)."""

    def load(self, digest: Digest) -> tuple[Kind, bytes]: ...


def _pieces(data: bytes) -> list[memoryview]:
    """The chunks of a large blob, as views of it (nothing copied)."""
    view = memoryview(data)
    return [view[start : start + CHUNK_SIZE] for start in range(0, len(data), CHUNK_SIZE)]


def _chunks_payload(chunks: Iterator[Digest] | list[Digest] | tuple[Digest, ...],
                    size: int) -> bytes:
    return codec.encode({"type": "chunks", "chunks": list(chunks), "size": size})


def _check_bytes_size(size: int, path: str) -> None:
    if size > MAX_BYTES_SIZE:
        raise UnsupportedValueError(path, "bytes", f"it is {size:,} bytes long, over the "
                                    f"{MAX_BYTES_SIZE >> 20:,} MiB pinrun stores as one value")


def bytes_entry(value: bytes, path: str = "value") -> BytesEntry:
    """The in-memory encoding of a ``bytes`` state value (see :class:`BytesEntry`).

    Hashes the value once, as :func:`store_blob` stores it: the stand-in names
    the digest the value's entry will have, and :func:`store_entry` reuses the
    chunk digests instead of hashing again.
    """
    _check_bytes_size(len(value), path)
    if len(value) < CHUNK_THRESHOLD:
        chunks: tuple[Digest, ...] = ()
        digest = compute_digest(Kind.BLOB, value)
    else:
        chunks = tuple(compute_digest(Kind.BLOB, piece) for piece in _pieces(value))
        digest = compute_digest(Kind.TREE, _chunks_payload(chunks, len(value)))
    entry = BytesEntry(BytesEntry.MARKER + digest.raw)
    entry.value = value
    entry.chunks = chunks
    return entry


def encode_entry(value: Any, root: str = "value") -> bytes:
    """A state value's encoding as the engine keeps it beside the value.

    The canonical encoding (:func:`~pinrun.artifacts.codec.encode`), except
    for ``bytes``, which are stored as blobs and never pass through JSON: their
    encoding is a :class:`BytesEntry` (no base64, no copy). Either one
    :func:`~pinrun.artifacts.codec.decode` turns back into the value, and two
    encodings of one value are equal.
    """
    if type(value) is bytes:
        return bytes_entry(value, root)
    return codec.encode(value, root=root)


def store_blob(sink: ObjectSink, data: bytes, path: str = "value",
               known: BytesEntry | None = None) -> Digest:
    """Store raw bytes: one blob, or a chunk tree when large.

    The chunks are views of ``data``, never copies. ``known``: the value's
    :class:`BytesEntry`, whose digests are then not computed again.
    """
    if known is not None and known.value is data:
        digest = Digest(bytes(known)[len(BytesEntry.MARKER):])
        if not known.chunks:
            return sink.put(Kind.BLOB, data, digest)
        for piece, chunk in zip(_pieces(data), known.chunks, strict=True):
            sink.put(Kind.BLOB, piece, chunk)  # type: ignore[arg-type]  # a view: no copy
        return sink.put(Kind.TREE, _chunks_payload(known.chunks, len(data)), digest)
    _check_bytes_size(len(data), path)
    if len(data) < CHUNK_THRESHOLD:
        return sink.put(Kind.BLOB, bytes(data))  # a bytearray becomes bytes; bytes stay
    # (a view of bytes: the batch keeps it, as immutable as the value)
    chunks = [sink.put(Kind.BLOB, piece) for piece in  # type: ignore[arg-type]
              _pieces(bytes(data) if type(data) is not bytes else data)]
    return sink.put(Kind.TREE, _chunks_payload(chunks, len(data)))


def store_entry(sink: ObjectSink, value: Any, path: str, payload: bytes | None = None) -> Digest:
    """Store one state value under the right shape; ``path`` names it in errors.

    ``payload`` is the value's encoding when the caller has it already (from
    :func:`encode_entry`).
    """
    if type(value) is bytes:
        return store_blob(sink, value, path,
                          payload if type(payload) is BytesEntry else None)
    if payload is None:
        payload = codec.encode(value, root=path)
    if len(payload) > SUBTREE_THRESHOLD and type(value) is dict and (
        _plain_object(payload) or all(type(key) is str for key in value)
    ):
        return _store_map(sink, value, path, payload)
    return sink.put(Kind.VALUE, payload)


def _plain_object(payload: bytes) -> bool:
    """Whether a dict's encoding is a plain JSON object: then its keys are all strings
    (a map with any other key, or one starting with ``$``, is a ``$map`` tag)."""
    return payload[:2] == b'{"' and payload[2:3] != b"$"


def _store_map(sink: ObjectSink, value: dict[str, Any], path: str, payload: bytes) -> Digest:
    """A large nested map: in pages of many keys, or key by key when its entries are big.

    Keys are cut into pages where the CRC-32 of a key (in sorted order) has
    its low bits clear, so a page holds about :data:`PAGE_TARGET` encoded
    bytes, the same keys give the same pages, and a change to one key
    rewrites one page. Maps whose entries average half a page or more, and
    any page that encodes past :data:`PAGE_SPLIT`, are stored key by key
    (a ``map`` tree), so a large value inside keeps its own entry.
    """
    spread = PAGE_TARGET * len(value) // max(len(payload), 1)
    if spread < 2:
        return store_snapshot_per_key(sink, value, root=path)
    mask = (1 << (spread.bit_length() - 1)) - 1  # about 1 cut per `spread` keys
    cut = _page_cuts(payload, mask) if _page_cuts is not None else None
    if cut is not None and cut[0] == len(value):
        return _store_sliced(sink, value, path, payload, cut[1])
    pages: list[Digest] = []
    page: dict[str, Any] = {}
    crc32 = zlib.crc32
    for key in sorted(value):
        page[key] = value[key]
        if not crc32(key.encode("utf-8", "surrogatepass")) & mask:
            pages.append(_store_page(sink, page, path))
            page = {}
    if page:
        pages.append(_store_page(sink, page, path))
    return put_pages(sink, pages, len(value))


def _store_sliced(sink: ObjectSink, value: dict[str, Any], path: str, payload: bytes,
                  cuts: list[tuple[int, int]]) -> Digest:
    """:func:`_store_map`'s pages cut from the map's own encoding, ``payload``.

    A canonical encoding of a map is its members in sorted key order, and a
    page's is ``{`` + its members + ``}``: a slice of the map's, byte for
    byte (values encode the same wherever they sit). ``cuts`` holds, per page
    ending at a cut key, that key's index and where its member ends.
    """
    pages: list[Digest] = []
    keys: list[str] | None = None  # sorted only if a page is too large to be one value
    start, first_key = 1, 0  # the page's first byte (after "{"), and its first key's index
    if not cuts or cuts[-1][0] != len(value) - 1:
        cuts = [*cuts, (len(value) - 1, len(payload) - 1)]  # the last page, up to "}"
    view = memoryview(payload)
    for last_key, end in cuts:
        page = b"".join((b"{", view[start:end], b"}"))  # one copy (a slice is one more)
        if len(page) > PAGE_SPLIT and last_key > first_key:
            keys = keys if keys is not None else sorted(value)
            pages.append(store_snapshot_per_key(
                sink, {key: value[key] for key in keys[first_key:last_key + 1]}, root=path))
        else:
            pages.append(sink.put(Kind.VALUE, page))
        start, first_key = end + 1, last_key + 1
    return put_pages(sink, pages, len(value))


def _store_page(sink: ObjectSink, page: dict[str, Any], path: str) -> Digest:
    payload = codec.encode(page, root=path)
    if len(payload) > PAGE_SPLIT and len(page) > 1:
        return store_snapshot_per_key(sink, page, root=path)
    return sink.put(Kind.VALUE, payload)


def store_snapshot(sink: ObjectSink, state: Mapping[str, Any], root: str = "state",
                   payloads: Mapping[str, bytes] | None = None,
                   entries_out: dict[str, Entry] | None = None, *,
                   kept_pages: PageCache | None = None) -> Digest:
    """Store a mapping of string keys as a tree; returns the tree's digest.

    ``payloads`` may hold the canonical encodings of some values already;
    ``entries_out`` receives each key's :data:`Entry` (for :func:`store_entries`);
    ``kept_pages``: the pages stored before, reused where the same (see
    :func:`store_entries`).
    A small value is kept inline (stored in its page, or as its own object
    when the snapshot is small: :func:`store_entries` decides), a large one
    or ``bytes`` is stored now, as :func:`store_entry` does.
    """
    known = payloads if payloads is not None else {}
    if _inline_into is not None and type(entries_out) is dict and type(state) is dict and \
            type(known) is dict and len(state) >= _INTO_FROM:
        # A wide snapshot whose values are all inline: their entries go straight into
        # entries_out (no dict of their own, no merge of it), and its tree is stored
        # from there. (None, entries_out untouched: as below.)
        inline_size = _inline_into(state, known, INLINE_LIMIT, entries_out)
        if inline_size is not None:
            return store_inline_keys(sink, entries_out, codec.sorted_keys(state), inline_size,
                                     kept_pages)
    made = _inline_entries(state, known, INLINE_LIMIT) if _inline_entries is not None \
        and type(state) is dict and type(known) is dict else None
    if made is not None:
        # The small values whose encodings are known, made inline in one pass in C;
        # the others (to encode, large, bytes, keys JSON escapes) as below.
        entries: dict[str, Entry] = made[0]  # type: ignore[assignment]  # (dict invariance)
        rest: Iterator[tuple[str, Any]] = ((key, state[key]) for key in made[1])
    else:
        entries, rest = {}, _string_keyed(state, root)
    for key, value in rest:
        payload = known.get(key)
        if type(value) is not bytes:
            if payload is None:
                payload = codec.encode(value, root=f"{root}[{key!r}]")
            if len(payload) <= INLINE_LIMIT:
                kept = inline(key, payload)
                if kept is not None:
                    entries[key] = kept
                    continue
        entries[key] = store_entry(sink, value, f"{root}[{key!r}]", payload)
    if entries_out is not None:
        entries_out.update(entries)
    return store_entries(sink, entries, kept_pages)


def _string_keyed(state: Mapping[str, Any], root: str) -> Iterator[tuple[str, Any]]:
    """``state``'s items, each key checked to be a string (what a snapshot's keys are)."""
    for key, value in state.items():
        if type(key) is not str:
            raise UnsupportedValueError(f"{root} key {key!r}", type(key).__qualname__,
                                        "snapshot keys must be strings")
        yield key, value


def store_snapshot_per_key(sink: ObjectSink, state: Mapping[str, Any], root: str = "state",
                           payloads: Mapping[str, bytes] | None = None) -> Digest:
    """A ``map`` tree of one object per key: a nested map whose entries are large, and
    every snapshot as pinrun stored it before top-level pages (see :data:`EARLIER_LAYOUTS`)."""
    entries: dict[str, Entry] = {}
    known = payloads if payloads is not None else {}
    for key, value in _string_keyed(state, root):
        entries[key] = store_entry(sink, value, f"{root}[{key!r}]", known.get(key))
    return store_entries(sink, entries)  # digests only: always a map tree


def store_snapshot_key_by_key(sink: ObjectSink, state: Mapping[str, Any],
                              root: str = "state",
                              payloads: Mapping[str, bytes] | None = None) -> Digest:
    """:func:`store_snapshot` as pinrun stored it before pages: a large nested map is a
    map tree of one entry per key, recursively. Replay digests outputs this way too
    when a recording made then differs from today's layout, so equal values
    still match (nothing recorded is decoded for that)."""
    entries: dict[str, Digest] = {}
    known = payloads if payloads is not None else {}
    for key, value in state.items():
        path = f"{root}[{key!r}]"
        payload = known.get(key)
        if type(value) is dict and all(type(name) is str for name in value):
            if type(payload) is not bytes:
                payload = codec.encode(value, root=path)
            if len(payload) > SUBTREE_THRESHOLD:
                entries[key] = store_snapshot_key_by_key(sink, value, path)
                continue
        entries[key] = store_entry(sink, value, path, payload)
    return store_entries(sink, entries)


#: Ways pinrun stored a snapshot before, newest first: replay digests replayed outputs
#: in each when the recorded digest is not today's, so equal values still match.
EARLIER_LAYOUTS: Final = (store_snapshot_per_key, store_snapshot_key_by_key)


def may_differ_from_earlier(payloads: Mapping[str, bytes]) -> bool:
    """Whether a snapshot of values encoded as ``payloads`` may be stored differently
    today than in an :data:`EARLIER_LAYOUTS` one (paged, or holding a large map)."""
    total = 0
    for key, payload in payloads.items():
        if len(payload) > SUBTREE_THRESHOLD:
            return True
        total += len(payload) + 6 * len(key) + 3  # at most its page member's size
    return total > PAGED_ABOVE


def _tree(digest: Digest, payload: bytes) -> dict[str, Any]:
    try:
        tree = codec.decode(payload)
    except PinrunError:
        tree = None
    kind = tree.get("type") if type(tree) is dict else None
    shaped = (
        (kind == "map" and type(tree.get("entries")) is dict
         and all(type(k) is str and type(v) is Digest for k, v in tree["entries"].items()))
        or (kind == "pages" and type(tree.get("pages")) is list and tree["pages"]
            and all(type(p) is Digest for p in tree["pages"]) and type(tree.get("size")) is int
            and tree["size"] > 0 and len(tree) == 3)
        or (kind == "chunks" and type(tree.get("chunks")) is list
            and all(type(c) is Digest for c in tree["chunks"]) and type(tree.get("size")) is int
            and _chunks_fit(tree["size"], len(tree["chunks"])))
    ) if tree is not None else False
    if not shaped:
        raise CorruptObjectError(digest, None, "it is stored as a tree but is not a valid tree")
    checked: dict[str, Any] = tree
    return checked


def _chunks_fit(size: int, count: int) -> bool:
    """A chunk tree's size is one pinrun can hold, and its chunks exactly cover it.

    pinrun has always cut blobs in :data:`CHUNK_SIZE` pieces, so a tree whose
    count and size disagree, or that names more than :data:`MAX_BYTES_SIZE`
    (a crafted one, naming one small chunk many times), is refused before a
    byte of it is gathered.
    """
    return 0 <= size <= MAX_BYTES_SIZE and count == -(-size // CHUNK_SIZE)


def _checked_pages(digest: Digest, tree: dict[str, Any],
                   load: Callable[[Digest], Any]) -> Iterator[tuple[Digest, dict[str, Any]]]:
    """The pages of a ``pages`` tree in order, each ``load``-ed into a map of string keys,
    every key after the previous page's (so no page adds a key twice), and together
    as many keys as the tree counts."""
    count = 0
    last: str | None = None
    for index, page_digest in enumerate(tree["pages"]):
        page = load(page_digest)
        # A page pinrun wrote holds its keys in order: its first and last are its least
        # and greatest (one walk in C); any other is checked key by key.
        span = codec.key_span(page) if type(page) is dict else None
        if span is None:
            if type(page) is not dict or not page or not all(type(k) is str for k in page):
                raise CorruptObjectError(digest, None, f"its page {index} is not a map of keys")
            span = min(page), max(page)
        if last is not None and span[0] <= last:
            raise CorruptObjectError(digest, None, f"its page {index} does not follow the "
                                     "page before it")
        last = span[1]
        count += len(page)
        yield page_digest, page
    if count != tree["size"]:
        raise CorruptObjectError(digest, None, "its pages do not hold the keys it counts")


def snapshot_pages(source: ObjectSource,
                   digest: Digest) -> Iterator[tuple[Digest | None, dict[str, Entry]]]:
    """A snapshot's entries without loading what has an object of its own, page by page:
    ``(page digest, entries)`` for a paged snapshot, ``(None, entries)`` for a map tree.

    The one reader of the snapshot layout for those that name keys (``show
    --values``, resume): an inline value comes as an :class:`Inline` (its
    encoding made again from the decoded page), any other as its digest.
    """
    kind, payload = source.load(digest)
    tree = _tree(digest, payload) if kind is Kind.TREE else None
    if tree is None or tree["type"] == "chunks":
        raise CorruptObjectError(digest, None, f"expected a snapshot tree, found a "
                                 f"{'chunk tree' if tree is not None else kind.value}")
    if tree["type"] == "map":
        yield None, dict(tree["entries"])
        return
    yield from _checked_pages(digest, tree, lambda page: _page_entries(source, page))


def _page_entries(source: ObjectSource, digest: Digest) -> Any:
    kind, payload = source.load(digest)
    if kind is Kind.TREE:
        tree = _tree(digest, payload)
        return dict(tree["entries"]) if tree["type"] == "map" else None
    if kind is not Kind.VALUE:
        return None
    page = codec.decode(payload)
    if type(page) is not dict:
        return None
    entries: dict[str, Entry] = {}
    for key, value in page.items():
        kept = inline(key, codec.encode(value)) if type(key) is str else None
        if kept is None:
            raise CorruptObjectError(digest, None, f"its key {key!r} cannot be held in a page")
        entries[key] = kept
    return entries


def snapshot_entries(source: ObjectSource, digest: Digest) -> dict[str, Entry]:
    """Every key of a snapshot and its :data:`Entry` (see :func:`snapshot_pages`)."""
    out: dict[str, Entry] = {}
    for _, entries in snapshot_pages(source, digest):
        out.update(entries)
    return out


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


def bytes_head(source: ObjectSource, digest: Digest, limit: int) -> tuple[int, bytes] | None:
    """``(size, first bytes)`` of a ``bytes`` entry (a blob or a chunk tree), reading at
    most its first chunk; None when ``digest`` holds something else (for display)."""
    kind, payload = source.load(digest)
    if kind is Kind.BLOB:
        return len(payload), payload[:limit]
    if kind is not Kind.TREE:
        return None
    tree = _tree(digest, payload)
    if tree["type"] != "chunks":
        return None
    chunks: list[Digest] = tree["chunks"]
    first = source.load(chunks[0])[1][:limit] if chunks else b""
    return tree["size"], first


def references(kind: Kind, payload: bytes) -> Iterator[Digest]:
    """The digests an object points to (blobs and values point to nothing)."""
    if kind is Kind.BLOB or kind is Kind.VALUE:
        return
    # Structured objects are canonical JSON; a digest in them is always the
    # tag {"$digest":"<hex>"}, and a quote inside user text is escaped, so a
    # byte scan finds exactly the references without decoding.
    for match in _DIGEST_REF.finditer(payload):
        yield Digest(bytes.fromhex(match.group(1).decode("ascii")))
