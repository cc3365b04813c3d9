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


_SMALL = st.text(max_size=8) | st.integers() | st.binary(max_size=4) | st.just("x" * 40)


@settings(max_examples=120, deadline=None)
@given(st.dictionaries(st.text(max_size=5) | st.sampled_from(["$a", 'q"', "\u00e9", "\ud800"]),
                       _SMALL, max_size=12),
       st.dictionaries(st.text(max_size=5), st.integers(), max_size=6), st.booleans(),
       st.booleans())
def test_inline_into_is_inline_entries_put_into_the_dict(
        state: dict[str, Any], held: dict[str, Any], reorder: bool, missing: bool) -> None:
    """inline_into puts exactly inline_entries' entries into the dict, as update() would
    (order too), and says their size; or it says None and leaves the dict as it was."""
    payloads: dict[str, bytes] = {}
    for key, value in state.items():
        payloads[key] = value if type(value) is bytes else trees.encode_entry(value)
    if reorder:
        payloads = dict(reversed(list(payloads.items())))
    if missing and payloads:
        payloads.pop(next(iter(payloads)))
    into: dict[str, Any] = {key: trees.Inline(b'"x":1', 4, 0) for key in held}
    before = list(into.items())
    size = _speedups.inline_into(state, payloads, 30, into)
    made = _speedups.inline_entries(state, payloads, 30)
    if size is None:
        assert list(into.items()) == before
        assert made is None or made[1]
        return
    assert made is not None
    assert not made[1]
    expected = dict(before)
    expected.update(made[0])
    assert list(into) == list(expected)
    assert {key: into[key].member for key in made[0]} == \
        {key: entry.member for key, entry in made[0].items()}
    assert size == sum(len(entry.member) for entry in made[0].values())


def test_a_wide_snapshot_put_straight_into_the_entries_is_the_same_tree(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """store_snapshot with entries_out: the same tree, objects and entries whether the
    entries go straight into entries_out or through a dict of their own."""
    state = _wide(3000)
    payloads = {key: trees.encode_entry(value) for key, value in state.items()}
    runs = []
    for straight in (True, False):
        if not straight:
            monkeypatch.setattr(trees, "_inline_into", None)
        sink = _Sink()
        out: dict[str, trees.Entry] = {"zz": compute_digest(Kind.VALUE, b"1"), "k00005": b"x"}  # type: ignore[dict-item]
        digest = trees.store_snapshot(sink, state, payloads=payloads, entries_out=out)
        runs.append((digest, sink.objects, list(out), [
            getattr(entry, "member", entry) for entry in out.values()]))
    assert runs[0] == runs[1]


def test_inline_into_declines_what_it_cannot_read_safely() -> None:
    """Payloads in another order with a key that is not an exact str (whose __eq__ could
    run mid-walk) are declined; so are the wrong types and a dict put into itself."""

    class Sly(str):
        __hash__ = str.__hash__

    state = {f"k{i}": i for i in range(10)}
    payloads: dict[str, bytes] = {key: str(value).encode() for key, value in state.items()}
    into: dict[str, Any] = {}
    assert _speedups.inline_into(state, dict(reversed(payloads.items())), 100, into) is not None
    odd = dict(reversed(payloads.items()))
    odd[Sly("k0")] = odd.pop("k0")
    into = {}
    assert _speedups.inline_into(state, odd, 100, into) is None
    assert into == {}
    assert _speedups.inline_into(state, payloads, 100, state) is None
    with pytest.raises(TypeError):
        _speedups.inline_into(state, payloads, 100, [])  # type: ignore[arg-type]
