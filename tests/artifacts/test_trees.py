"""Merkle snapshots: structure sharing, subtrees, chunked blobs."""

from __future__ import annotations

import os
from typing import Any

import pytest

from pinrun.artifacts import trees
from pinrun.artifacts.digest import Kind
from pinrun.artifacts.store import Store
from pinrun.errors import CorruptObjectError, UnsupportedValueError


def _state(changed: int = 0) -> dict[str, Any]:
    return {
        "order_id": "A1",
        "items": [{"sku": f"S{n}", "qty": n} for n in range(50)],
        "rate": 1.0 + changed,
        "raw": b"\x00\x01" * 100,
        "when": (2024, 1, 1),
    }


def test_snapshot_round_trip(store: Store) -> None:
    """A snapshot reads back equal to the state, types included."""
    state = _state()
    root = store.put_snapshot(state)
    assert store.get_snapshot(root) == state
    assert store.info(root).kind is Kind.TREE


def test_equal_states_give_equal_roots(store: Store) -> None:
    """The same state built in another key order has the same root digest."""
    state = _state()
    shuffled = dict(reversed(list(state.items())))
    assert store.put_snapshot(state) == store.put_snapshot(shuffled)


def test_changing_one_key_writes_one_value_and_one_tree(store: Store) -> None:
    """A second snapshot that differs in one key stores only that value and the new tree."""
    store.put_snapshot(_state(0))
    with store.batch() as batch:
        root = batch.put_snapshot(_state(1))
    assert batch.new_objects == 2
    entries = trees.tree_entries(store, root)
    assert set(entries) == set(_state())


def test_large_nested_map_becomes_subtree(store: Store) -> None:
    """A nested dict larger than the threshold is a tree of its own, shared across snapshots."""
    big = {f"k{n}": "v" * 100 for n in range(2 * trees.SUBTREE_THRESHOLD // 100)}
    root1 = store.put_snapshot({"big": big, "small": 1})
    entry = trees.tree_entries(store, root1)["big"]
    assert store.info(entry).kind is Kind.TREE
    with store.batch() as batch:
        batch.put_snapshot({"big": {**big, "k0": "changed"}, "small": 1})
    assert batch.new_objects == 3  # the changed value, the big subtree, the root
    assert store.get_snapshot(root1)["big"] == big


def test_large_blob_is_chunked(store: Store) -> None:
    """bytes above the chunk threshold are split, and reassemble exactly."""
    data = os.urandom(trees.CHUNK_THRESHOLD + 12345)
    root = store.put_snapshot({"payload": data})
    entry = trees.tree_entries(store, root)["payload"]
    assert store.info(entry).kind is Kind.TREE
    assert store.get_snapshot(root)["payload"] == data
    chunks = list(trees.references(*store.load(entry)))
    assert len(chunks) == -(-len(data) // trees.CHUNK_SIZE)


def test_snapshot_keys_must_be_strings(store: Store) -> None:
    """A snapshot with a non-string top-level key is refused, naming the key."""
    with pytest.raises(UnsupportedValueError, match="snapshot keys must be strings"):
        store.put_snapshot({1: "x"})  # type: ignore[dict-item]


def test_value_is_not_a_snapshot(store: Store) -> None:
    """Reading a plain value as a snapshot is a clear error."""
    digest = store.put_value([1, 2])
    with pytest.raises(CorruptObjectError, match="not a snapshot"):
        store.get_snapshot(digest)
    with pytest.raises(CorruptObjectError, match="expected a snapshot tree"):
        trees.tree_entries(store, digest)


def test_references_of_leaves_are_empty(store: Store) -> None:
    """Values and blobs reference nothing, even when a value holds a digest."""
    inner = store.put_value("x")
    holder = store.put_value({"d": inner})
    assert list(trees.references(*store.load(holder))) == []
    root = store.put_snapshot({"a": 1, "$odd key": 2})
    assert len(list(trees.references(*store.load(root)))) == 2
