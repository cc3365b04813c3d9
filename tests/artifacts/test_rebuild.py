"""Rebuilding a stored DAG: what its trees name again is measured, not filled into memory."""

from __future__ import annotations

import pytest

from pinrun.artifacts import codec, rebuild
from pinrun.artifacts.digest import Digest, Kind
from pinrun.artifacts.store import Store
from pinrun.errors import OversizedValueError
from tests.helpers import traced_peak

MiB = 1024 * 1024


def tree_naming_one_tree(store: Store, levels: int, width: int) -> Digest:
    """``levels`` map trees, each of ``width`` entries all naming the tree below:
    ``width ** levels`` values from a few kilobytes of objects."""
    digest = store.put_value(1)
    for _ in range(levels):
        payload = codec.encode({"type": "map", "entries": {f"k{i}": digest
                                                           for i in range(width)}})
        with store.batch() as batch:
            digest = batch.put(Kind.TREE, payload)
    return digest


def test_trees_naming_one_tree_over_and_over_are_refused_before_they_are_built(
        store: Store) -> None:
    """10^10 values from five tiny trees: refused at the first repeat, in little memory."""
    digest = tree_naming_one_tree(store, levels=5, width=100)

    def load() -> None:  # (it used to run until memory ran out)
        with pytest.raises(OversizedValueError, match="over and over"):
            store.get_snapshot(digest)

    assert traced_peak(load) < 4 * MiB


def test_the_size_of_a_dag_is_measured_once_per_object(store: Store) -> None:
    """Each distinct object is read once, however many trees name it."""
    digest = tree_naming_one_tree(store, levels=3, width=10)
    one = len(codec.encode(1))
    reads: list[Digest] = []

    class Counting:
        def load(self, wanted: Digest) -> tuple[Kind, bytes]:
            reads.append(wanted)
            return store.load(wanted)

    size = rebuild.rebuilt_size(Counting(), digest)
    assert size == 1000 * one + (1000 + 100 + 10) * rebuild.ENTRY_SIZE
    assert len(reads) == len(set(reads)) == 4


def test_equal_large_values_under_two_keys_rebuild_as_two_values(store: Store) -> None:
    """A shared subtree (an honest DAG) is measured, fits, and comes back as two dicts."""
    big = {f"key{i:05d}": "x" * 40 for i in range(3000)}  # well past 64 KiB: a subtree
    digest = store.put_snapshot({"a": big, "b": dict(big)})
    state = store.get_snapshot(digest)
    assert state == {"a": big, "b": big}
    assert state["a"] is not state["b"]


def test_an_honest_dag_past_the_limit_is_refused(store: Store,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The same shared subtree, with a limit below its size: the repeat was measured."""
    big = {f"key{i:05d}": "x" * 40 for i in range(3000)}
    digest = store.put_snapshot({"a": big, "b": dict(big)})
    monkeypatch.setattr(rebuild, "MAX_REBUILT_SIZE", 100_000)
    with pytest.raises(OversizedValueError, match="would rebuild"):
        store.get_snapshot(digest)


def test_chunk_trees_sharing_a_chunk_are_measured(store: Store,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Two blobs sharing their first chunk: two chunk trees naming one chunk."""
    head = bytes(range(256)) * 4096  # 1 MiB
    first, second = head + b"a" * 4 * MiB, head + b"b" * 4 * MiB
    digest = store.put_snapshot({"first": first, "second": second})
    assert store.get_snapshot(digest) == {"first": first, "second": second}
    monkeypatch.setattr(rebuild, "MAX_REBUILT_SIZE", 8 * MiB)
    with pytest.raises(OversizedValueError, match="would rebuild"):
        store.get_snapshot(digest)


def test_a_load_naming_nothing_twice_is_never_measured(store: Store,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A blob of equal chunks (8 MiB of zeros: one chunk named eight times) and a nested
    subtree load with the limit at one byte: only a repeat across trees is measured."""
    nested = {f"key{i:05d}": i for i in range(8000)}
    digest = store.put_snapshot({"zeros": bytes(8 * MiB), "nested": nested})
    monkeypatch.setattr(rebuild, "MAX_REBUILT_SIZE", 1)
    assert store.get_snapshot(digest) == {"zeros": bytes(8 * MiB), "nested": nested}


def test_a_state_loaded_key_by_key_is_one_rebuild(store: Store,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """load_entries (resume's rebuilt state): two keys whose blobs share a chunk are
    measured together, as one snapshot of them would be."""
    head = bytes(range(256)) * 4096  # 1 MiB
    first, second = head + b"a" * 4 * MiB, head + b"b" * 4 * MiB
    entries = {"first": store.put_blob(first), "second": store.put_blob(second)}
    assert rebuild.load_entries(store, entries) == {"first": first, "second": second}
    monkeypatch.setattr(rebuild, "MAX_REBUILT_SIZE", 8 * MiB)
    assert store.get_value(entries["first"]) == first  # alone, each fits
    with pytest.raises(OversizedValueError, match="would rebuild"):
        rebuild.load_entries(store, entries)
