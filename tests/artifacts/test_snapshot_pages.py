"""A snapshot of many small top-level values is stored in pages, read back whole by every
reader, reached by fsck, gc and bundles, and a crafted one is refused as corrupt."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pinrun.artifacts import codec, snapshot_pages, trees
from pinrun.artifacts.bundle import export_bundle
from pinrun.artifacts.bundle_import import import_bundle
from pinrun.artifacts.digest import Digest, Kind
from pinrun.artifacts.maintenance import fsck, gc
from pinrun.artifacts.store import Store
from pinrun.errors import CorruptObjectError


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A fresh store on disk."""
    with Store.open(tmp_path / "store", create=True) as opened:
        yield opened


def _wide(keys: int) -> dict[str, Any]:
    return {f"k{i:06d}": {"id": i, "name": f"item {i}", "qty": i % 7} for i in range(keys)}


@dataclasses.dataclass
class Point:
    """A registered-by-default dataclass value inside a page."""

    x: int
    y: tuple[int, ...]


def test_a_page_is_the_canonical_encoding_of_its_map() -> None:
    """Joined inline members are byte for byte codec.encode of the page's map."""
    values: dict[str, Any] = {
        "plain": {"a": [1, 2.5, None, True]}, "é": "ünïcode", "quote\"key": "a\\b",
        "tab\tkey": {"$x": 1}, "nested": {"$digest": "not one"}, "tuple": (1, (2, 3)),
        "set": frozenset({3, 1}), "bytes": {"inner": b"\x00\xff"}, "point": Point(1, (2,)),
        "big": 2**70, "neg": -0.0, "empty": {}, "emoji": "\U0001f600",
    }
    members = []
    for key in sorted(values):
        kept = snapshot_pages.inline(key, codec.encode(values[key]))
        assert kept is not None
        members.append(kept.member)
    assert b"{" + b",".join(members) + b"}" == codec.encode(values)


def test_keys_the_codec_escapes_are_not_inline() -> None:
    """A $-key or a lone surrogate keeps an object of its own."""
    assert snapshot_pages.inline("$map", b"1") is None
    assert snapshot_pages.inline("a\ud800", b"1") is None


def test_a_wide_state_is_a_few_hundred_objects_and_reads_back(store: Store) -> None:
    """100,000 small top-level values take pages of many keys, not one object each."""
    state = {**_wide(100_000), "blob": b"\x01" * 100, "large": "x" * 40_000,
             "$escaped": 1}
    with store.batch() as batch:
        entries: dict[str, trees.Entry] = {}
        root = batch.put_snapshot(state, entries_out=entries)
    assert batch.new_objects < 1000
    assert store.get_object(root, Kind.TREE)["type"] == "pages"
    assert type(entries["blob"]) is Digest
    assert type(entries["large"]) is Digest
    assert type(entries["k000001"]) is trees.Inline
    assert store.get_snapshot(root) == state
    listed = trees.snapshot_entries(store, root)
    assert set(listed) == set(state)
    assert listed["blob"] == entries["blob"]
    assert codec.decode(listed["k000007"].payload) == state["k000007"]  # type: ignore[union-attr]


def test_small_states_keep_one_object_per_key(store: Store) -> None:
    """A few small values: the map tree of before, with the same digest as before."""
    state = {"a": 1, "b": {"c": [1, 2]}, "d": "text"}
    with store.batch() as batch:
        root = batch.put_snapshot(state)
        per_key = trees.store_snapshot_per_key(batch, state)
    assert root == per_key
    assert set(trees.tree_entries(store, root)) == {"a", "b", "d"}


def test_changing_one_key_rewrites_one_page(store: Store) -> None:
    """Two wide states differing in one key share all pages but one."""
    state = _wide(20_000)
    with store.batch() as batch:
        first = batch.put_snapshot(state)
    state["k010000"] = {"changed": True}
    with store.batch() as batch:
        second = batch.put_snapshot(state)
    pages = [store.get_object(d, Kind.TREE)["pages"] for d in (first, second)]
    assert len(pages[0]) == len(pages[1]) > 10
    assert sum(a != b for a, b in zip(*pages, strict=True)) == 1


def test_fsck_gc_and_bundles_reach_every_page(store: Store, tmp_path: Path) -> None:
    """A paged snapshot behind a ref: fsck clean, gc keeps it, a bundle carries it."""
    state = {**_wide(5_000), "blob": b"\x02" * 10}
    with store.batch() as batch:
        root = batch.put_snapshot(state)
        batch.set_ref("snaps/wide", root)
    assert store.get_object(root, Kind.TREE)["type"] == "pages"
    assert not fsck(store).problems
    gc(store)
    assert store.get_snapshot(root) == state
    export_bundle(store, ["snaps/wide"], tmp_path / "wide.bundle")
    with Store.open(tmp_path / "other", create=True) as other:
        import_bundle(other, tmp_path / "wide.bundle")
        assert other.get_snapshot(root) == state
        assert not fsck(other).problems


def _crafted(store: Store, pages: list[tuple[Kind, bytes]], size: int) -> Digest:
    with store.batch() as batch:
        digests = [batch.put(kind, payload) for kind, payload in pages]
        return batch.put(Kind.TREE, codec.encode({"type": "pages", "pages": digests,
                                                  "size": size}))


@pytest.mark.parametrize(("pages", "size", "reason"), [
    ([(Kind.VALUE, b'{"a":1,"b":2}'), (Kind.VALUE, b'{"b":3}')], 3, "does not follow"),
    # A page whose keys are out of order is told by its least and greatest key, not its ends.
    ([(Kind.VALUE, b'{"c":1,"a":2}'), (Kind.VALUE, b'{"b":3}')], 3, "does not follow"),
    ([(Kind.VALUE, b'{"a":1}'), (Kind.VALUE, b"[1]")], 2, "not a map of keys"),
    ([(Kind.VALUE, b'{"a":1}')], 2, "do not hold the keys"),
    ([(Kind.BLOB, b"raw")], 1, "not a map of keys"),
    ([(Kind.TREE, codec.encode({"type": "chunks", "chunks": [], "size": 0}))], 1,
     "not a map of keys"),
])
def test_crafted_snapshot_pages_are_refused(store: Store, pages: list[tuple[Kind, bytes]],
                                            size: int, reason: str) -> None:
    """Every reader of a paged snapshot refuses a crafted one as corrupt, never a KeyError."""
    digest = _crafted(store, pages, size)
    with pytest.raises(CorruptObjectError, match=reason):
        trees.snapshot_entries(store, digest)
    with pytest.raises(CorruptObjectError):
        store.get_snapshot(digest)


def test_a_page_out_of_key_order_reads_as_before(store: Store) -> None:
    """A crafted page whose keys are not in order, but all before the next page's, reads
    as it always did (its keys are then compared one by one, not read off its ends)."""
    digest = _crafted(store, [(Kind.VALUE, b'{"b":1,"a":2}'), (Kind.VALUE, b'{"c":3}')], 3)
    assert store.get_snapshot(digest) == {"b": 1, "a": 2, "c": 3}
    assert list(trees.snapshot_entries(store, digest)) == ["b", "a", "c"]


def test_key_span() -> None:
    """The least and greatest key of a dict whose keys are exact str in order, else None."""
    assert codec.key_span({"a": 1, "b": 2, "\u00e9": 3}) == ("a", "\u00e9")
    assert codec.key_span({"b": 1, "a": 2}) is None
    assert codec.key_span({}) is None
    assert codec.key_span({"a": 1, 2: 3}) is None  # type: ignore[dict-item]
