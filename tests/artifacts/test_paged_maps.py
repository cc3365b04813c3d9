"""Large nested maps are stored in pages of many keys, read back whole, and checked."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pinrun.artifacts import codec, trees
from pinrun.artifacts.digest import Digest, Kind
from pinrun.artifacts.maintenance import fsck
from pinrun.artifacts.store import Store
from pinrun.errors import CorruptObjectError


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A fresh store on disk."""
    with Store.open(tmp_path / "store", create=True) as opened:
        yield opened


def _table(keys: int) -> dict[str, Any]:
    return {f"k{i:06d}": {"id": i, "name": f"item {i}", "qty": i % 7} for i in range(keys)}


def _tree(store: Store, digest: trees.Entry) -> dict[str, Any]:
    assert type(digest) is Digest  # a large map has an object of its own
    kind, payload = store.load(digest)
    assert kind is Kind.TREE
    tree: dict[str, Any] = codec.decode(payload)
    return tree


def test_a_wide_nested_map_is_stored_in_pages_and_reads_back(store: Store) -> None:
    """100,000 small entries make about a hundred pages, not 100,000 objects."""
    state = {"table": _table(100_000), "n": 1}
    with store.batch() as batch:
        entries: dict[str, trees.Entry] = {}
        root = batch.put_snapshot(state, entries_out=entries)
    assert batch.new_objects < 1000
    tree = _tree(store, entries["table"])
    assert tree["type"] == "pages"
    assert tree["size"] == 100_000
    assert 20 < len(tree["pages"]) < 1000
    assert store.get_snapshot(root) == state


def test_changing_one_key_rewrites_one_page(store: Store) -> None:
    """The same keys cut into the same pages: one changed entry makes one new page."""
    table = _table(50_000)
    with store.batch() as batch:
        first = batch.put_snapshot({"table": table})
    changed = dict(table)
    changed["k012345"] = {"id": -1}
    with store.batch() as batch:
        second = batch.put_snapshot({"table": changed})
    assert first != second
    assert batch.new_objects == 3  # the page, the pages tree, the snapshot tree
    assert store.get_snapshot(second)["table"] == changed


def test_maps_of_large_entries_stay_key_by_key(store: Store) -> None:
    """Entries of half a page or more keep a map tree: each large value its own entry."""
    big = {f"k{i}": "x" * 40_000 for i in range(4)}
    with store.batch() as batch:
        entries: dict[str, trees.Entry] = {}
        batch.put_snapshot({"big": big}, entries_out=entries)
    assert _tree(store, entries["big"])["type"] == "map"


def test_a_page_too_large_is_stored_key_by_key(store: Store) -> None:
    """One large bytes value among many small keys lands in a key-by-key page: a blob."""
    table: dict[str, Any] = _table(20_000)
    table["k010000"] = b"\x01" * (3 << 20)
    table["$odd key"] = (1, 2)
    table["\udcff surrogate"] = {3}
    with store.batch() as batch:
        entries: dict[str, trees.Entry] = {}
        root = batch.put_snapshot({"table": table}, entries_out=entries)
    pages = _tree(store, entries["table"])["pages"]
    kinds = [store.info(page).kind for page in pages]
    assert Kind.TREE in kinds
    assert Kind.VALUE in kinds
    back = store.get_snapshot(root)["table"]
    assert back == table
    assert type(back["k010000"]) is bytes


def test_key_by_key_maps_from_older_stores_still_read(store: Store) -> None:
    """A nested map written as a map tree of one entry per key (pinrun before pages)."""
    table = _table(2000)
    with store.batch() as batch:
        nested = trees.store_snapshot_per_key(batch, table)  # the old layout of a nested map
        root = batch.put_entries({"table": nested})
    assert store.get_snapshot(root) == {"table": table}


def _pages_tree(store: Store, pages: list[dict[str, Any]], size: int) -> Digest:
    with store.batch() as batch:
        digests = [batch.put_value(page) for page in pages]
        return batch.put(Kind.TREE, codec.encode({"type": "pages", "pages": digests,
                                                  "size": size}))


@pytest.mark.parametrize(("pages", "size", "reason"), [
    ([{"a": 1, "b": 2}, {"b": 3}], 2, "does not follow"),
    ([{"a": 1}, {"a": 1}], 1, "does not follow"),
    ([{"a": 1}, {"b": 2}], 5, "do not hold the keys"),
    ([{"a": 1}, [1, 2]], 2, "not a map of keys"),
    ([{"a": 1}, {}], 1, "not a map of keys"),
])
def test_crafted_pages_trees_are_refused(store: Store, pages: list[Any], size: int,
                                          reason: str) -> None:
    """Pages that overlap, repeat, miscount or are not maps are corrupt, not merged."""
    digest = _pages_tree(store, pages, size)
    with pytest.raises(CorruptObjectError, match=reason):
        store.get_value(digest)


def test_a_malformed_pages_tree_is_refused_by_fsck(store: Store) -> None:
    """A pages tree with no pages, or an unknown field, fails the tree's shape check."""
    with store.batch() as batch:
        empty = batch.put(Kind.TREE, codec.encode({"type": "pages", "pages": [], "size": 0}))
    with pytest.raises(CorruptObjectError, match="not a valid tree"):
        store.get_value(empty)
    assert any(p.digest == empty and p.kind == "corrupt" for p in fsck(store).problems)
