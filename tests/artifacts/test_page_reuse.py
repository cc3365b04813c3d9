"""A run's pages kept and reused: the same objects and digests as a fresh build."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pinrun.artifacts import _speedups, snapshot_pages, trees
from pinrun.artifacts.digest import Digest, Kind, compute_digest
from pinrun.artifacts.snapshot_pages import PageCache


class _Sink:
    """Keeps what is put (each digest checked), and counts the payloads it had to hash."""

    def __init__(self) -> None:
        self.objects: dict[Digest, tuple[Kind, bytes]] = {}
        self.hashed = 0

    def put(self, kind: Kind, payload: bytes, digest: Digest | None = None) -> Digest:
        made = compute_digest(kind, payload)
        assert digest is None or digest == made
        self.hashed += digest is None
        self.objects[made] = (kind, payload)
        return made


def _entries(state: dict[str, Any], sink: _Sink) -> dict[str, trees.Entry]:
    entries: dict[str, trees.Entry] = {}
    trees.store_snapshot(sink, state, entries_out=entries)
    return entries


def _fresh(entries: dict[str, trees.Entry]) -> tuple[Digest, dict[Digest, tuple[Kind, bytes]]]:
    """The tree and the objects of ``entries`` stored with no pages kept."""
    sink = _Sink()
    return snapshot_pages.store_entries(sink, dict(entries)), sink.objects


def _wide(count: int = 8000) -> dict[str, Any]:
    return {f"k{i:05d}": {"id": i, "name": f"item {i}", "qty": i % 7} for i in range(count)}


def test_a_state_changed_in_a_few_keys_reuses_the_pages_it_kept() -> None:
    """The next commit's state queues its unchanged pages with their digests (no hash)."""
    pages: PageCache = {}
    sink = _Sink()
    entries = _entries(_wide(), sink)
    first = snapshot_pages.store_entries(sink, entries, pages)
    assert first == _fresh(entries)[0]
    assert len(pages) > 5
    assert all(record[2] is not None for record in pages.values())
    changed = dict(entries)
    changed.update(_entries({"k01234": "changed", "zz-new": 1}, _Sink()))
    again = _Sink()
    digest = snapshot_pages.store_entries(again, changed, pages)
    assert (digest, again.objects) == _fresh(changed)
    assert again.hashed <= 3  # the changed page, the grown last page, the tree
    # And the very same entries again: nothing hashed but the tree.
    same = _Sink()
    assert snapshot_pages.store_entries(same, changed, pages) == digest
    assert same.hashed == 1


# Edits to a wide state: set a key to a small value, a large one (its own object) or
# bytes, or drop a key; keys near each other, so pages split, join and move.
_EDITS = st.lists(st.tuples(st.integers(0, 8199), st.sampled_from(
    ["small", "other", "large", "bytes", "drop", "long"])), max_size=12)


def _edited(state: dict[str, Any], edits: list[tuple[int, str]]) -> dict[str, Any]:
    out = dict(state)
    for index, how in edits:
        key = f"k{index:05d}"
        if how == "drop":
            out.pop(key, None)
        else:
            out[key] = {"small": index, "other": [index, "x"], "large": "y" * 20_000,
                        "bytes": b"raw", "long": "z" * 3000}[how]
    return out


@settings(max_examples=60, deadline=None)
@given(st.lists(_EDITS, min_size=1, max_size=4))
def test_pages_kept_through_many_edits_store_what_a_fresh_build_stores(
        rounds: list[list[tuple[int, str]]]) -> None:
    """However a state changes between commits, its pages, objects and tree digest are
    the ones a build without kept pages makes (and a store_snapshot of the state)."""
    pages: PageCache = {}
    state = _wide()
    entries = _entries(state, _Sink())
    for number, edits in enumerate(rounds):
        sink = _Sink()
        digest = snapshot_pages.store_entries(sink, entries, pages)
        assert (digest, sink.objects) == _fresh(entries)
        assert digest == trees.store_snapshot(_Sink(), state)
        state = _edited(state, edits)
        # The engine's way: the changed keys' entries made anew, the others kept as they are.
        entries = {key: entries[key] for key in state if key in entries}
        entries.update(_entries({key: state[key] for key in {f"k{i:05d}" for i, _ in edits}
                                 if key in state}, _Sink()))
        if number % 2:  # the keys in order, or not (the engine's are not, mostly)
            entries = dict(sorted(entries.items()))


def test_a_page_record_is_reused_only_for_the_same_entry_objects() -> None:
    """Equal entries that are other objects make the page again (same bytes, new record)."""
    pages: PageCache = {}
    entries = _entries(_wide(), _Sink())
    snapshot_pages.store_entries(_Sink(), entries, pages)
    records = dict(pages)
    copies = _entries(_wide(), _Sink())  # equal values, new Inline objects
    sink = _Sink()
    assert snapshot_pages.store_entries(sink, copies, pages) == _fresh(entries)[0]
    assert sink.hashed == len(records) + 1
    assert all(pages[key] is not record for key, record in records.items())


def test_page_plan_with_a_cache_returns_records_and_key_tuples() -> None:
    """A cached plan: inline pages as [entries, payload, digest] records, the rest as before."""
    entries = _entries(_wide(200), _Sink())
    entries["k00100"] = compute_digest(Kind.VALUE, b"1")
    keys = sorted(entries)
    cache: dict[str, Any] = {}
    plan = _speedups.page_plan(keys, entries, 0x7, 1 << 20, cache)
    assert ("k00100",) in plan
    records = [item for item in plan if type(item) is list]
    assert records
    assert all(record[2] is None for record in records)
    assert [record[1] for record in records] == [
        item for item in _speedups.page_plan(keys, entries, 0x7, 1 << 20)
        if type(item) is bytes]
    assert [id(record) for record in records] == [id(record) for record in cache.values()]
    assert _speedups.page_plan(keys, entries, 0x7, 1 << 20, cache) == plan  # found again
    assert all(a is b for a, b in zip(_speedups.page_plan(keys, entries, 0x7, 1 << 20, cache),
                                      plan, strict=True) if type(a) is list)
    with pytest.raises(TypeError):
        _speedups.page_plan(keys, entries, 0x7, 1 << 20, [])  # type: ignore[arg-type]


def test_page_plan_is_the_same_whatever_the_order_of_the_entries() -> None:
    """The entries read in the dict's own order where it matches the keys (no look-up), by
    look-up elsewhere: the same plan for a dict in key order, mostly in it, or not at all."""
    import random

    entries = _entries(_wide(3000), _Sink())
    entries["zz"] = compute_digest(Kind.VALUE, b"1")  # a key of its own object, last
    keys = sorted(entries)
    expected = _speedups.page_plan(keys, entries, 0x7, 1 << 20)
    items = list(entries.items())
    orders = [items, items[-1:] + items[:-1], items[::-1], items[:1500:2] + items[1:1500:2] +
              items[1500:], random.Random(5).sample(items, len(items))]
    for order in orders:
        assert _speedups.page_plan(keys, dict(order), 0x7, 1 << 20) == expected


def test_inline_entries_are_the_same_whatever_the_order_of_the_encodings() -> None:
    """inline_entries reads the encodings side by side when in the state's order, by
    look-up otherwise: the same entries either way."""
    state = _wide(500)
    payloads = {key: trees.encode_entry(value) for key, value in state.items()}
    made = _speedups.inline_entries(state, payloads, 16384)
    assert made is not None
    for order in (dict(reversed(list(payloads.items()))), dict(list(payloads.items())[::2])):
        again = _speedups.inline_entries(state, order, 16384)
        assert again is not None
        assert {key: entry.member for key, entry in again[0].items()} == {
            key: made[0][key].member for key in again[0]}
        assert sorted([*again[0], *again[1]]) == sorted(state)


def test_a_kept_page_past_a_smaller_split_is_cut_as_before() -> None:
    """A kept page is reused unsized only while it fits the split it is planned with: past
    a smaller one its keys are a tuple again, as without a cache."""
    entries = _entries(_wide(200), _Sink())
    keys = sorted(entries)
    cache: dict[str, Any] = {}
    kept: list[Any] = _speedups.page_plan(keys, entries, 0x7, 1 << 20, cache)
    largest = max(len(record[1]) for record in kept)
    again = _speedups.page_plan(keys, entries, 0x7, largest - 1, cache)
    assert again == _speedups.page_plan(keys, entries, 0x7, largest - 1, {})
    assert any(type(item) is tuple for item in again)


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=12) | st.integers(),
                       min_size=1, max_size=30))
def test_inline_sizes_are_the_members_sizes(state: dict[str, Any]) -> None:
    """The size an entry keeps is its member's, made by inline_entries, Inline() or
    inline(), whatever its key (non-ASCII, escaped, '$')."""
    entries = _entries(state, _Sink())
    made = [entry for entry in entries.values() if type(entry) is snapshot_pages.Inline]
    made += [snapshot_pages.Inline(entry.member, entry.start, entry.cut) for entry in made]
    for entry in made:
        assert _speedups.inline_sizes({"k": entry}) == (len(entry.member), 0)
    assert _speedups.inline_sizes(entries) == (
        sum(len(entry.member) for entry in entries.values()
            if type(entry) is snapshot_pages.Inline),
        sum(type(entry) is not snapshot_pages.Inline for entry in entries.values()))
