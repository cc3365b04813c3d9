"""The state of a run whose newest commit did not store it: rebuilt from its links.

A durable step's commit writes a link of the run record (see
:mod:`pinrun.engine.records`); most name no state, so that commit writes one
object (a page) less. The run's state after such a commit is then the state
the newest link before it stored (or, with none, the run's inputs: its state
before the first step), with the outputs of every step since merged over it in
the order the steps were recorded: exactly how the recorder merged them (a
step that failed merged nothing).

The state is rebuilt as the recorder held it: each key's entry (a small value
inline, anything else by the digest of its own object), so the snapshot's
digest comes out the one the recorder would have stored at that commit, and
no value is decoded for it (a user type the process does not have would not
encode back the same). Only trees and objects' headers are read, and the
payloads of small values where the state may be paged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pinrun.artifacts import codec
from pinrun.artifacts.digest import Digest, Kind, compute_digest
from pinrun.artifacts.rebuild import load_entries
from pinrun.artifacts.snapshot_pages import (
    INLINE_LIMIT,
    PAGED_ABOVE,
    Entry,
    Inline,
    inline,
    store_entries,
)
from pinrun.artifacts.store import Store
from pinrun.artifacts.trees import snapshot_entries

if TYPE_CHECKING:
    from pinrun.engine.records import RunRecord

__all__ = ["rebuild_state", "state_values"]


class _DigestsOnly:
    """An object sink that stores nothing: each object's digest, as a store would give."""

    __slots__ = ()

    def put(self, kind: Kind, payload: bytes, digest: Digest | None = None) -> Digest:
        return digest if digest is not None else compute_digest(kind, payload)


def rebuild_state(store: Store, links: Sequence[RunRecord]) -> tuple[Digest, dict[str, Entry]]:
    """The state after ``links`` (a run's chain, oldest first): its digest and entries."""
    from pinrun.engine.records import NO_STATE  # (records imports this module)

    newest = next((index for index in range(len(links) - 1, -1, -1)
                   if links[index].state is not NO_STATE), -1)
    # With none stored, the state before the first step: the run's inputs.
    entries = snapshot_entries(store, links[newest].state if newest >= 0 else links[0].inputs)
    for link in links[newest + 1:]:
        for step in link.steps:
            if step.outputs is not None:
                entries.update(snapshot_entries(store, step.outputs))
    _as_recorded(store, entries)
    return store_entries(_DigestsOnly(), entries), entries


def _as_recorded(store: Store, entries: dict[str, Entry]) -> None:
    """Make ``entries`` (read from stored trees) the recorder's: a small value that a
    tree of one object per key names by digest was inline in the recorder's hands.

    That decides whether the snapshot is paged, so its digest; a snapshot that is
    a map tree either way has the same digest with either entry, so the values are
    read only when their sizes (from the objects' headers) could make it paged.
    """
    inline_size = 0
    small: list[tuple[str, Digest]] = []
    for key, entry in entries.items():
        if type(entry) is not Digest:
            inline_size += len(entry.member)  # type: ignore[union-attr]  # (an Inline)
            continue
        info = store.info(entry)
        if info.kind is Kind.VALUE and info.raw_size <= INLINE_LIMIT:
            small.append((key, entry))
            inline_size += 6 * len(key) + 3 + info.raw_size  # at most its member's size
    if inline_size <= PAGED_ABOVE:
        return  # a map tree of one object per key, whichever entries
    for key, digest in small:
        kind, payload = store.load(digest)
        kept = inline(key, payload) if kind is Kind.VALUE else None
        if kept is not None:
            entries[key] = kept


def state_values(store: Store, entries: Mapping[str, Entry]) -> dict[str, Any]:
    """The values of a rebuilt state's ``entries`` (as a stored snapshot reads)."""
    # The stored values as one rebuild (what their trees name again is measured with all).
    loaded = load_entries(store, {key: entry for key, entry in entries.items()
                                  if isinstance(entry, Digest)})
    return {key: codec.decode(entry.payload) if type(entry) is Inline else loaded[key]
            for key, entry in entries.items()}
