"""Small values a run stores again and again, digested once per run.

A recorded run names each state value in several trees: the outputs of the
step that wrote it, the inputs of every step that reads it, and the state at
each commit. Each of those trees stores the value as its own object (a small
snapshot keeps one object per key), and each store would hash the same bytes
again. :class:`ValueDigests` stands in front of the run's write batches and
keeps the digest of every small ``value`` payload it has seen, so a value is
hashed once per run however many trees name it. Every object is still queued
in the batch being filled (its commit still sets aside what the store
holds), with the digest :func:`~pinrun.artifacts.digest.compute_digest`
gives for it: the objects, the trees and their digests are the same.

A wide state's pages are kept too (a :data:`~pinrun.artifacts.snapshot_pages.PageCache`):
the state stored at a commit is mostly the pages its previous commit, or the
step's outputs, stored, which are then queued again with their payload and
digest instead of being joined and hashed again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from pinrun.artifacts import codec
from pinrun.artifacts.digest import TREE_KIND, VALUE_KIND, Digest, Kind, compute_digest
from pinrun.artifacts.objects import SMALLEST_MAX_RAW_SIZE
from pinrun.artifacts.snapshot_pages import INLINE_LIMIT, PAGED_ABOVE, Inline, PageCache
from pinrun.artifacts.store import WriteBatch
from pinrun.artifacts.trees import Entry, store_entries, store_snapshot

__all__ = ["KEPT_PAYLOAD", "ValueDigests", "digest_few_inline"]

#: Payloads up to this many bytes are kept with their digest (a state value's page
#: entry is at most 16 KiB; most are a few dozen bytes).
KEPT_PAYLOAD: Final = 4096
#: At most this many are kept; when full, the run starts again from none.
_MOST: Final = 4096
#: At most this many pages are kept (about 64 MiB: pages hold about 64 KiB); when more,
#: the run starts again from none. The pages kept are mostly the state's own (the
#: bytes of its values' encodings, which the engine holds beside them anyway).
_MOST_PAGES: Final = 1024
_inline_sizes: Callable[[dict[str, Entry]], tuple[int, int]] | None
_inline_entries: Callable[[dict[str, Any], dict[str, bytes], int],
                          tuple[dict[str, Any], list[str]] | None] | None
_put_map: Callable[..., tuple[Digest, int, int] | None] | None
try:
    from pinrun.artifacts._speedups import inline_entries as _inline_entries
    from pinrun.artifacts._speedups import inline_sizes as _inline_sizes
    from pinrun.artifacts._speedups import put_map as _put_map
except ImportError:  # pragma: no cover - exercised on machines without a compiler
    _inline_sizes = _inline_entries = _put_map = None
#: Snapshots of fewer keys take put_snapshot's shortcut (a wider one's entries go
#: straight into the caller's in store_snapshot, with no dict of their own).
_FEW_KEYS: Final = 64
#: A map tree's fields besides its entries (codec.encode_digest_map's ``fields``).
_MAP: Final = {"type": "map"}
#: The kinds a map tree's objects are made as, with the tags hashed before them.
_MAP_KINDS: Final = (VALUE_KIND, VALUE_KIND.tag, TREE_KIND, TREE_KIND.tag)
#: What digest_few_inline's caller already holds: nothing (its own dict says).
_NONE_HELD: Final = frozenset[bytes]()


def digest_few_inline(state: Mapping[str, Any], payloads: Mapping[str, bytes],
                      objects: dict[bytes, tuple[Kind, bytes]], known: dict[bytes, Digest]
                      ) -> Digest | None:
    """The digest :func:`~pinrun.artifacts.trees.store_snapshot` gives ``state`` when it
    is a few keys whose values are all inline and their encodings all in ``payloads``
    (a step's outputs), made in C as :meth:`ValueDigests.put_snapshot` makes it: each
    object store_snapshot would store is added to ``objects`` (raw digest -> kind and
    payload) unless there already, and ``known`` keeps small payloads' digests as
    :meth:`ValueDigests.put` does. None, with nothing added to ``objects``, when
    store_snapshot must answer (no compiler, more or larger values, a key the C code
    leaves to Python): a replay digests its steps' outputs here, storing nothing."""
    if _put_map is None or _inline_entries is None or _inline_sizes is None or \
            type(state) is not dict or type(payloads) is not dict or len(state) >= _FEW_KEYS:
        return None
    made = _inline_entries(state, payloads, INLINE_LIMIT)
    if made is None or made[1] or _inline_sizes(made[0])[0] > PAGED_ABOVE:
        return None
    done = _put_map(made[0], known, objects, _NONE_HELD, Digest, _MAP_KINDS,
                    (KEPT_PAYLOAD, _MOST, SMALLEST_MAX_RAW_SIZE), compute_digest)
    return done[0] if done is not None else None


class ValueDigests:
    """The object sink of one run's trees: each small ``value`` payload digested once.

    Owned by one recording (its :class:`~pinrun.engine.run.Recorder`): it is
    dropped with the run, and a digest names one content forever, so nothing it
    keeps can go stale.
    """

    __slots__ = ("_batch", "_known", "_pages")

    def __init__(self) -> None:
        self._known: dict[bytes, Digest] = {}
        self._batch: WriteBatch | None = None
        self._pages: PageCache = {}

    def put(self, kind: Kind, payload: bytes, digest: Digest | None = None) -> Digest:
        """Queue ``payload`` in the current batch, with its digest (kept, for a small value)."""
        if digest is None and kind is VALUE_KIND and type(payload) is bytes \
                and len(payload) <= KEPT_PAYLOAD:
            known = self._known
            digest = known.get(payload)
            if digest is None:
                if len(known) >= _MOST:
                    known.clear()
                digest = known[payload] = compute_digest(kind, payload)
        assert self._batch is not None  # set by put_snapshot / put_entries before any put
        return self._batch.put(kind, payload, digest)

    def put_map(self, entries: Mapping[str, Entry]) -> Digest:
        """Queue a ``map`` tree of one object per key and each inline value's object;
        the tree's digest. What :func:`~pinrun.artifacts.snapshot_pages.store_entries`
        does for a small snapshot (the same objects: each value as :meth:`put` queues
        it, then the tree), in one loop and one call to the batch: a step's inputs
        and outputs trees are each a few keys, where the calls through :meth:`put`
        to :meth:`WriteBatch.put` cost more than the dict operations they make."""
        assert self._batch is not None  # set by put_snapshot / put_entries before any put
        made = self._batch.put_map_of(entries, self._known, KEPT_PAYLOAD, _MOST)  # in C
        if made is not None:
            return made
        known = self._known
        items: list[tuple[Kind, bytes, Digest]] = []
        digests: dict[str, Digest] = {}
        for key, entry in entries.items():
            if type(entry) is not Inline:
                digests[key] = entry  # type: ignore[assignment]  # not Inline: a Digest
                continue
            payload = entry.payload
            digest = known.get(payload)
            if digest is None:
                digest = compute_digest(VALUE_KIND, payload)
                if len(payload) <= KEPT_PAYLOAD:
                    if len(known) >= _MOST:
                        known.clear()
                    known[payload] = digest
            items.append((VALUE_KIND, payload, digest))
            digests[key] = digest
        payload = codec.encode_digest_map(_MAP, "entries", digests)
        tree = compute_digest(TREE_KIND, payload)
        items.append((TREE_KIND, payload, tree))
        self._batch.put_known(items)
        return tree

    def put_snapshot(self, batch: WriteBatch, state: Mapping[str, Any], *, root: str,
                     payloads: Mapping[str, bytes] | None = None,
                     entries_out: dict[str, Entry] | None = None) -> Digest:
        """:meth:`WriteBatch.put_snapshot <pinrun.artifacts.store.WriteBatch.put_snapshot>`
        into ``batch``, each small value digested once per run."""
        self._batch = batch
        if _inline_entries is not None and type(state) is dict and type(payloads) is dict \
                and type(entries_out) is dict and len(state) < _FEW_KEYS:
            # A step's outputs, the run's inputs: a few keys, each value's encoding known.
            # When every one is inline, what store_snapshot makes of them (their entries,
            # then store_entries), without its calls down to put_map.
            made = _inline_entries(state, payloads, INLINE_LIMIT)
            if made is not None and not made[1]:
                entries_out.update(made[0])
                return self.put_entries(batch, made[0])
        return store_snapshot(self, state, root=root, payloads=payloads,
                              entries_out=entries_out, kept_pages=self._kept_pages())

    def put_entries(self, batch: WriteBatch, entries: Mapping[str, Entry]) -> Digest:
        """:meth:`WriteBatch.put_entries <pinrun.artifacts.store.WriteBatch.put_entries>`
        into ``batch``, each small value digested once per run."""
        self._batch = batch
        if _inline_sizes is not None and type(entries) is dict and \
                _inline_sizes(entries)[0] <= PAGED_ABOVE:
            # What store_entries decides for so few inline bytes (one object per key: a
            # map tree), without its calls down to put_map: a step's inputs, the state.
            made = batch.put_map_of(entries, self._known, KEPT_PAYLOAD, _MOST)
            if made is not None:
                return made
        return store_entries(self, entries, self._kept_pages())

    def _kept_pages(self) -> PageCache:
        """The pages kept so far (none again once there are too many)."""
        if len(self._pages) >= _MOST_PAGES:
            self._pages.clear()
        return self._pages
