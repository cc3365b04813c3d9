"""gc and stats: what is kept, what is swept, and what is counted."""

from __future__ import annotations

import pytest

from pinrun.artifacts.maintenance import fsck, gc, stats
from pinrun.artifacts.store import Store
from pinrun.errors import MissingObjectError


def test_gc_sweeps_only_unreachable(store: Store) -> None:
    """gc deletes what no ref reaches and keeps every object of a referenced snapshot."""
    kept = store.put_snapshot({"a": 1, "b": [2, 3]})
    store.set_ref("snaps/kept", kept)
    dropped = store.put_snapshot({"c": "only here"})
    loose = store.put_value("loose")
    report = gc(store)
    assert (report.examined, report.reachable, report.deleted) == (6, 3, 3)
    assert report.freed_bytes > 0
    assert store.get_snapshot(kept) == {"a": 1, "b": [2, 3]}
    assert not store.has(dropped)
    assert not store.has(loose)
    assert fsck(store).ok


def test_gc_dry_run_deletes_nothing(store: Store) -> None:
    """A dry run reports what it would sweep and leaves the store as it was."""
    store.put_value("loose")
    store.set_ref("tags/x", store.put_value("kept"))
    report = gc(store, dry_run=True)
    assert (report.deleted, report.reachable, report.dry_run) == (1, 1, True)
    assert store.object_count() == 2


def test_gc_keeps_objects_shared_with_a_deleted_ref(store: Store) -> None:
    """Deleting one ref frees only what no other ref still reaches."""
    one = store.put_snapshot({"shared": "s" * 100, "own": 1})
    two = store.put_snapshot({"shared": "s" * 100, "own": 2})
    store.set_ref("snaps/1", one)
    store.set_ref("snaps/2", two)
    store.delete_ref("snaps/1")
    assert gc(store).deleted == 2  # tree one and its value 1
    assert store.get_snapshot(two)["shared"] == "s" * 100


def test_gc_refuses_when_a_reachable_object_is_missing(store: Store) -> None:
    """gc stops, naming the missing object, rather than sweep from a broken graph."""
    root = store.put_snapshot({"a": "alpha"})
    store.set_ref("snaps/x", root)
    child = store.put_value("alpha")
    env = store.environment
    env.write(lambda txn: txn.delete(child.raw, db=env.dbs["objects"]))
    store.put_value("loose")
    with pytest.raises(MissingObjectError) as caught:
        gc(store)
    assert caught.value.digest == child
    assert store.object_count() == 2


def test_stats_counts_kinds_ratios(store: Store) -> None:
    """stats counts objects by kind, and dedup rises when the same data is offered again."""
    state = {"text": "word " * 2000, "n": 1}
    store.put_snapshot(state)
    store.put_snapshot(state)
    store.put_blob(b"b" * 10)
    figures = stats(store)
    assert figures.objects["tree"] == 1
    assert figures.objects["value"] == 2
    assert figures.objects["blob"] == 1
    assert figures.total_objects == 4
    assert figures.compression_ratio > 10
    assert figures.dedup_ratio == pytest.approx(
        figures.offered_raw_bytes / figures.total_raw_bytes)
    assert 1.9 < figures.dedup_ratio < 2.1
    assert figures.as_dict()["total_objects"] == 4
