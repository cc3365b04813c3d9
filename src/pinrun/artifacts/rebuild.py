"""Rebuilding a stored value or snapshot, in memory the machine can hold.

A stored state is a DAG: two keys holding equal large values name one
object, and a bundle can be crafted so that a few kilobytes of trees name
each other over and over (a tree of 100 entries naming one tree of 100
entries naming one tree... is 10^10 values five levels down). The digests
and shapes of such trees are all valid, so only the size of what they
rebuild tells them apart.

A rebuild keeps the set of trees (and chunks) it has expanded. As long as
none comes back, the value it builds is no larger than the objects it read.
The first time one comes back, the size of the whole rebuild is measured
before anything more is built, one read per distinct object (a repeated
object is measured once), and a rebuild that would not fit in this
machine's memory (:data:`MAX_REBUILT_SIZE`) is refused with
:class:`~pinrun.errors.OversizedValueError` (a ``CorruptObjectError``)
instead of filling it.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from typing import Any, Final

from pinrun.artifacts import codec
from pinrun.artifacts.digest import Digest, Kind
from pinrun.artifacts.trees import CHUNK_SIZE, ObjectSource, _checked_pages, _tree
from pinrun.errors import CorruptObjectError, OversizedValueError

__all__ = ["MAX_REBUILT_SIZE", "load_entries", "load_entry", "load_snapshot", "rebuilt_size"]


def _physical_memory() -> int:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # pragma: no cover - not on Linux/macOS
        return 64 << 30


#: The most one rebuild whose trees name an object twice may hold: the machine's
#: memory. A value that large could not be held anyway, so none that could is refused.
MAX_REBUILT_SIZE: int = _physical_memory()
#: What one entry of a rebuilt map is counted as, beside its value (key, slot, object).
ENTRY_SIZE: Final = 64


#: In a rebuild's set once the rebuild was measured (no digest is empty).
_MEASURED: Final = b""


def load_entry(source: ObjectSource, digest: Digest) -> Any:
    """Rebuild the value stored under ``digest`` by :func:`~pinrun.artifacts.trees.store_entry`.

    Raises :class:`~pinrun.errors.CorruptObjectError` for a tree that is not
    valid, and :class:`~pinrun.errors.OversizedValueError` for one whose trees name
    an object twice and would rebuild more than :data:`MAX_REBUILT_SIZE`.
    """
    return _load(source, digest, digest, (set(), (digest,)))


def load_snapshot(source: ObjectSource, digest: Digest) -> dict[str, Any]:
    """Rebuild a whole snapshot stored by :func:`~pinrun.artifacts.trees.store_snapshot`."""
    state = _load(source, digest, digest, (set(), (digest,)))
    if type(state) is not dict:
        raise CorruptObjectError(digest, None, "it is not a snapshot tree")
    return state


def load_entries(source: ObjectSource, entries: Mapping[str, Digest]) -> dict[str, Any]:
    """:func:`load_entry` of each of ``entries`` (a state's keys), as one rebuild: what
    the values' trees name again across keys is measured with all of them."""
    scope: _Scope = (set(), tuple(entries.values()))
    return {key: _load(source, digest, digest, scope) for key, digest in entries.items()}


#: One rebuild: the raw digests of the trees and chunks it expanded, and what it makes.
_Scope = tuple[set[bytes], tuple[Digest, ...]]


def _load(source: ObjectSource, digest: Digest, top: Digest, scope: _Scope) -> Any:
    """The value under ``digest``, part of the rebuild of ``top`` (one of what ``scope``
    makes)."""
    kind, payload = source.load(digest)
    if kind is Kind.VALUE:
        return codec.decode(payload)
    if kind is Kind.BLOB:
        return payload
    if kind is Kind.TREE:
        tree = _tree(digest, payload)
        _expand(source, digest, top, scope)
        if tree["type"] == "chunks":
            return _gather(source, digest, tree, top, scope)
        if tree["type"] == "pages":
            out: dict[str, Any] = {}
            for _, page in _checked_pages(digest, tree,
                                          lambda page: _load(source, page, top, scope)):
                out.update(page)
            return out
        return {key: _load(source, child, top, scope)
                for key, child in tree["entries"].items()}
    raise CorruptObjectError(digest, None, f"a {kind.value} object is not a state value")


def _expand(source: ObjectSource, digest: Digest, top: Digest, scope: _Scope) -> None:
    """Note that ``digest`` is expanded; at the rebuild's first repeat, measure all of it."""
    seen, tops = scope
    raw = digest.raw
    if raw not in seen:
        seen.add(raw)
        return
    if _MEASURED in seen:
        return
    seen.add(_MEASURED)  # once: the measure covers every object the rebuild will expand
    size = rebuilt_size(source, *tops)
    if size > MAX_REBUILT_SIZE:
        raise OversizedValueError(top, size, MAX_REBUILT_SIZE)


def _gather(source: ObjectSource, digest: Digest, tree: dict[str, Any], top: Digest,
            scope: _Scope) -> bytes:
    """The bytes a chunk tree holds, each chunk checked before it is appended."""
    size: int = tree["size"]
    out = io.BytesIO()
    mine: set[bytes] = set()  # a chunk repeated in its own tree is a run of equal bytes
    for index, chunk in enumerate(tree["chunks"]):
        if chunk.raw not in mine:
            mine.add(chunk.raw)
            _expand(source, chunk, top, scope)  # one another tree named too is a repeat
        kind, data = source.load(chunk)
        if kind is not Kind.BLOB or len(data) != min(CHUNK_SIZE, size - index * CHUNK_SIZE):
            raise CorruptObjectError(digest, None, f"its chunk {index} ({chunk.short}) is not "
                                     "a blob of the size its place says")
        out.write(data)
    # getvalue() hands over the buffer when it is exactly full: no copy at the end.
    return out.getvalue()


def rebuilt_size(source: ObjectSource, *digests: Digest) -> int:
    """About how many bytes rebuilding each of ``digests`` makes: values' and blobs'
    sizes, a chunk tree's size, :data:`ENTRY_SIZE` per map entry. Each distinct object
    is read once, however many trees name it; a chunk tree's chunks are not read."""
    sizes: dict[bytes, int] = {}
    # Children before parents, without recursion (a crafted chain may be deep).
    stack: list[tuple[Digest, list[Digest] | None, int]] = [(d, None, 0) for d in digests]
    while stack:
        current, children, own = stack.pop()
        if current.raw in sizes:
            continue
        if children is not None:  # its children are measured: add them up
            sizes[current.raw] = own + sum(sizes[child.raw] for child in children)
            continue
        kind, payload = source.load(current)
        if kind is not Kind.TREE:
            sizes[current.raw] = len(payload)
            continue
        tree = _tree(current, payload)
        if tree["type"] == "chunks":
            sizes[current.raw] = tree["size"]
            continue
        named: list[Digest] = (tree["pages"] if tree["type"] == "pages"
                               else list(tree["entries"].values()))
        stack.append((current, named, ENTRY_SIZE * len(named)))
        stack.extend((child, None, 0) for child in named if child.raw not in sizes)
    return sum(sizes[digest.raw] for digest in digests)
