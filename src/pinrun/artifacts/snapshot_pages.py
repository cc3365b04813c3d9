"""Large snapshots in pages: small values kept inline, many keys to an object.

A snapshot of a few keys is a ``map`` tree naming one object per key (see
:mod:`pinrun.artifacts.trees`). A snapshot whose small values together
encode past :data:`~pinrun.artifacts.trees.SUBTREE_THRESHOLD` is stored
like a large nested map instead: a ``pages`` tree of content-defined pages
of about :data:`PAGE_TARGET` bytes, each page the canonical encoding of the
map of its keys (a ``value``). One object per ~64 KiB, not one per key, and
no digest per small value.

A value too large to sit in a page (a ``bytes`` value, or one encoding past
:data:`INLINE_LIMIT`) keeps its own object, and is a page of its own (a
``map`` tree of one key), so it is still shared between snapshots and the
small values around it stay inline. A key that the canonical codec escapes
(``$...``, a lone surrogate) does the same.

The engine keeps one :data:`Entry` per state key: the digest of the key's
own object, or an :class:`Inline` carrying the bytes the key adds to a page.
A page's payload is those bytes joined, which is exactly ``codec.encode`` of
the page's map (sorted keys, compact JSON), so it is built without encoding
any value again.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Any, Final, TypeAlias

import orjson

from pinrun.artifacts import codec
from pinrun.artifacts.digest import TREE_KIND, VALUE_KIND, Digest, Kind

if TYPE_CHECKING:
    from pinrun.artifacts.trees import ObjectSink

__all__ = ["INLINE_LIMIT", "PAGE_SPLIT", "PAGE_TARGET", "Entry", "Inline", "PageCache",
           "inline", "put_pages", "store_entries", "store_inline_keys"]

#: A large map (nested or a whole snapshot) is stored in pages of about this many bytes.
PAGE_TARGET: Final = 64 * 1024
#: A page that encodes larger than this is stored key by key instead (as a map tree).
PAGE_SPLIT: Final = 1024 * 1024
#: A top-level value encoding larger than this keeps an object of its own.
INLINE_LIMIT: Final = 16 * 1024
#: Snapshots whose inline values encode to at most this many bytes keep one object per key.
PAGED_ABOVE: Final = 64 * 1024
#: What a digest entry is counted as when pages are sized (``"key":{"$digest":"..."}``).
_DIGEST_ENTRY_SIZE: Final = 90


class _Inline:
    """A small state value as its snapshot's page holds it: ``"key":<encoding>``."""

    __slots__ = ("cut", "member", "start")

    def __init__(self, member: bytes, start: int, cut: int) -> None:
        #: The key's JSON, a colon, and the value's canonical encoding.
        self.member = member
        #: Where the value's encoding starts in :attr:`member`.
        self.start = start
        #: The CRC-32 of the key, which decides where pages end.
        self.cut = cut

    @property
    def payload(self) -> bytes:
        """The value's canonical encoding."""
        return self.member[self.start:]

    def __repr__(self) -> str:
        return f"Inline({self.member[:40]!r})"


_speedups: ModuleType | None
try:
    # The class in C, with the loops below that make and join its instances (setup.py
    # builds it where a compiler exists; the Python code here is the reference).
    from pinrun.artifacts import _speedups
except ImportError:  # pragma: no cover - exercised on machines without a compiler
    _speedups = None

if TYPE_CHECKING:
    Inline = _Inline
else:
    Inline = _speedups.Inline if _speedups is not None else _Inline

#: One state key's entry in a snapshot: its own object's digest, or inline.
Entry: TypeAlias = Digest | Inline
#: The pages a run stored, by their first key: ``[entries, payload, digest]`` (the
#: page's :class:`Inline` entries, the very objects, in order; its bytes; its digest).
#: An Inline never changes and the record holds it, so a page whose entries are the
#: same objects is the same bytes: the state's pages at a commit are mostly the ones
#: its previous commit (or the step's outputs) stored, found here and not joined and
#: hashed again. Filled by :func:`~pinrun.artifacts._speedups.page_plan` (C only).
PageCache: TypeAlias = dict[str, list[Any]]


def inline(key: str, payload: bytes) -> Inline | None:
    """The inline entry of a value encoded as ``payload``; None when ``key`` is one the
    codec escapes (``$...``, a lone surrogate), which then keeps an entry of its own."""
    if key[:1] == "$":
        return None
    try:
        quoted = orjson.dumps(key)
    except TypeError:  # a lone surrogate: the codec writes the key in another form
        return None
    return Inline(quoted + b":" + payload, len(quoted) + 1, zlib.crc32(quoted))


def store_entries(sink: ObjectSink, entries: Mapping[str, Entry],
                  kept_pages: PageCache | None = None) -> Digest:
    """Store the tree of a snapshot whose entries are made (digests stored or queued,
    inline values carried): one object per key when small, else pages.

    Pages end after a key whose CRC-32 has its low bits clear, so a page holds
    about :data:`PAGE_TARGET` bytes, the same keys give the same pages, and a
    change to one value rewrites one page (and the tree above it).

    ``kept_pages``: the pages stored before (by this run), kept with their payload and
    digest: a page holding the very same entries is queued again as it was, not
    joined and hashed again (see :data:`PageCache`).
    """
    if _speedups is not None and type(entries) is dict:
        inline_size, own = _speedups.inline_sizes(entries)
    else:
        inline_size = own = 0
        for entry in entries.values():
            if type(entry) is Inline:
                inline_size += len(entry.member)
            else:
                own += 1
    return _store_sized(sink, entries, None, (inline_size, own), kept_pages)


def store_inline_keys(sink: ObjectSink, entries: dict[str, Entry], keys: list[str],
                      inline_size: int, kept_pages: PageCache | None = None) -> Digest:
    """:func:`store_entries` of the snapshot of ``keys`` (sorted), whose entries are all
    :class:`Inline`, ``inline_size`` member bytes together, and held in ``entries``,
    which may hold other keys too (the run's entries, where they were put straight)."""
    return _store_sized(sink, entries, keys, (inline_size, 0), kept_pages)


def _store_sized(sink: ObjectSink, entries: Mapping[str, Entry], keys: list[str] | None,
                 sizes: tuple[int, int], kept_pages: PageCache | None) -> Digest:
    """:func:`store_entries` once its entries are sized (``sizes``: their inline members'
    bytes, and how many have an object of their own): the snapshot holds ``keys``
    (sorted; None: every key of ``entries``)."""
    inline_size, own = sizes
    count = len(entries) if keys is None else len(keys)
    spread = 0
    if inline_size > PAGED_ABOVE:
        total = inline_size + _DIGEST_ENTRY_SIZE * own
        spread = PAGE_TARGET * count // max(total, 1)
    if spread < 2:  # few keys, or large ones: one object per key
        return _store_map(sink, entries if keys is None else
                          {key: entries[key] for key in keys})
    mask = (1 << (spread.bit_length() - 1)) - 1  # about 1 cut per `spread` keys
    if keys is None:
        keys = codec.sorted_keys(entries)
    if _speedups is not None and type(entries) is dict:
        return _store_planned(sink, entries, _speedups.page_plan(keys, entries, mask,
                                                                 PAGE_SPLIT, kept_pages),
                              len(keys))
    pages: list[Digest] = []
    start = 0
    for index, key in enumerate(keys):
        entry = entries[key]
        if type(entry) is Inline:
            if not entry.cut & mask:
                pages.append(_store_page(sink, keys[start:index + 1], entries))
                start = index + 1
            continue
        # A value with its own object is a page of its own: the small values around
        # it stay inline, and its neighbours' pages do not depend on its size.
        if start < index:
            pages.append(_store_page(sink, keys[start:index], entries))
        pages.append(_store_map(sink, {key: entry}))
        start = index + 1
    if start < len(keys):
        pages.append(_store_page(sink, keys[start:], entries))
    return put_pages(sink, pages, len(keys))


def _store_planned(sink: ObjectSink, entries: dict[str, Entry],
                   plan: list[bytes | tuple[str, ...] | list[Any]], count: int) -> Digest:
    """:func:`store_entries`' pages as :func:`~pinrun.artifacts._speedups.page_plan`
    cuts and joins them (the same pages as the loop there): a page's payload, the
    keys of a page stored as a map tree, or a page's record in the cache (its
    entries, payload and digest, None until it is first stored)."""
    pages: list[Digest] = []
    for item in plan:
        if isinstance(item, bytes):
            pages.append(sink.put(Kind.VALUE, item))
        elif isinstance(item, list):
            digest = item[2]
            if digest is None:
                digest = item[2] = sink.put(Kind.VALUE, item[1])
            else:  # queued again (its commit sets it aside when the store holds it)
                sink.put(Kind.VALUE, item[1], digest)
            pages.append(digest)
        else:
            pages.append(_store_map(sink, {key: entries[key] for key in item}))
    return put_pages(sink, pages, count)


def _store_map(sink: ObjectSink, entries: Mapping[str, Entry]) -> Digest:
    """A ``map`` tree of one object per key (inline values stored as their own now)."""
    put_map = getattr(sink, "put_map", None)
    if put_map is not None:  # a run's ValueDigests: the same objects, queued in one loop
        return put_map(entries)  # type: ignore[no-any-return]
    digests: dict[str, Digest] = {}
    for key, entry in entries.items():
        digests[key] = sink.put(VALUE_KIND, entry.payload) if type(entry) is Inline else \
            entry  # type: ignore[assignment]  # not Inline: a Digest (mypy keeps the union)
    return sink.put(TREE_KIND, codec.encode_digest_map({"type": "map"}, "entries", digests))


def _store_page(sink: ObjectSink, keys: list[str], entries: Mapping[str, Entry]) -> Digest:
    members = [entry.member for entry in (entries[key] for key in keys)
               if type(entry) is Inline]
    if len(members) == len(keys):
        payload = b"{" + b",".join(members) + b"}"
        if len(payload) <= PAGE_SPLIT:
            return sink.put(Kind.VALUE, payload)
    return _store_map(sink, {key: entries[key] for key in keys})


def put_pages(sink: ObjectSink, pages: list[Digest], size: int) -> Digest:
    """Store the tree of a map kept in ``pages`` (their digests, in key order) that holds
    ``size`` keys: ``{"type": "pages", ...}``."""
    return sink.put(Kind.TREE, codec.encode({"type": "pages", "pages": pages, "size": size}))
