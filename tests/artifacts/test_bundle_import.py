"""Importing bundles: proven from a private copy, committed in parts when large."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from pinrun.artifacts import bundle_import
from pinrun.artifacts.bundle import export_bundle, import_bundle, scan_bundle
from pinrun.artifacts.digest import Digest
from pinrun.artifacts.maintenance import fsck
from pinrun.artifacts.store import Store
from pinrun.errors import BundleError


def _many(store: Store, count: int) -> dict[str, Digest]:
    refs = {}
    with store.batch() as batch:
        for index in range(count):
            digest = batch.put_snapshot({"n": index, "payload": os.urandom(3000).hex()})
            refs[f"tags/t{index}"] = digest
            batch.set_ref(f"tags/t{index}", digest)
    return refs


def test_a_large_bundle_commits_in_parts_and_arrives_whole(
        store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a small part size, every object and every ref still arrives, and fsck is clean."""
    refs = _many(store, 40)
    path = tmp_path / "many.pinrun"
    exported = export_bundle(store, None, path)
    monkeypatch.setattr(bundle_import, "COMMIT_CHUNK", 4096)
    writes: list[int] = []
    with Store.open(tmp_path / "fresh", create=True) as fresh:
        real_write = fresh.environment.write

        def counting_write(operation: Any) -> Any:
            writes.append(1)
            return real_write(operation)

        monkeypatch.setattr(fresh.environment, "write", counting_write)
        report = import_bundle(fresh, path)
        assert len(writes) > 10  # it really was committed in parts
        assert report.new_objects == exported.objects
        assert fresh.refs() == refs
        assert fsck(fresh).ok


def test_objects_collected_between_parts_are_added_again(
        store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A gc between two parts removes what no ref names yet; the last part restores it."""
    refs = _many(store, 12)
    path = tmp_path / "many.pinrun"
    export_bundle(store, None, path)
    monkeypatch.setattr(bundle_import, "COMMIT_CHUNK", 4096)
    from pinrun.artifacts.maintenance import gc

    with Store.open(tmp_path / "fresh", create=True) as fresh:
        env = fresh.environment
        real_write = env.write
        calls = 0

        def write_then_collect(operation: Any) -> Any:
            nonlocal calls
            result = real_write(operation)
            calls += 1
            if calls == 3:  # after some parts, before the refs: a concurrent gc
                monkeypatch.setattr(env, "write", real_write)
                assert gc(fresh).deleted > 0
                monkeypatch.setattr(env, "write", write_then_collect)
            return result

        monkeypatch.setattr(env, "write", write_then_collect)
        import_bundle(fresh, path)
        assert fresh.refs() == refs
        assert fsck(fresh).ok
        for digest in refs.values():
            assert fresh.get_snapshot(digest)["payload"]


def test_what_is_committed_is_what_was_proven(store: Store, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A bundle file rewritten after its scan cannot slip unproven bytes into the store."""
    _many(store, 3)
    path = tmp_path / "b.pinrun"
    export_bundle(store, None, path)
    original = path.read_bytes()
    real_scan = bundle_import._scan

    def scan_then_tamper(*args: Any) -> Any:
        result = real_scan(*args)
        tampered = bytearray(original)
        tampered[len(tampered) // 2] ^= 0xFF
        path.write_bytes(bytes(tampered))  # changed between proof and commit
        return result

    monkeypatch.setattr(bundle_import, "_scan", scan_then_tamper)
    with Store.open(tmp_path / "fresh", create=True) as fresh:
        import_bundle(fresh, path)
        assert fsck(fresh).ok  # the proven copy was committed, not the altered file


def test_scan_alone_needs_no_store_and_refuses_what_is_not_self_contained(
        store: Store, tmp_path: Path) -> None:
    """scan_bundle proves a complete bundle without a store, and refuses a dangling one."""
    from pinrun.artifacts import codec
    from pinrun.artifacts.digest import Kind
    from tests.hostile import honest, write_bundle

    _many(store, 2)
    path = tmp_path / "b.pinrun"
    export_bundle(store, None, path)
    assert len(scan_bundle(path).records) > 0
    absent = Digest(bytes(range(32)))
    tree = honest(Kind.TREE, codec.encode({"type": "map", "entries": {"k": absent}}))
    dangling = write_bundle(tmp_path / "d.pinrun", [tree], refs={"tags/d": tree[0].hex})
    with pytest.raises(BundleError, match="neither in the bundle nor in the store"):
        scan_bundle(dangling)
    truncated = tmp_path / "t.pinrun"
    truncated.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(BundleError, match="truncated"):
        scan_bundle(truncated)


def test_bundles_are_written_with_the_users_file_mode(store: Store, tmp_path: Path) -> None:
    """A bundle gets 0666 less the umask, like any file the user makes (not mkstemp's 0600)."""
    _many(store, 1)
    old = os.umask(0o022)
    try:
        export_bundle(store, None, tmp_path / "shared.pinrun")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "shared.pinrun").stat().st_mode) == 0o644


def test_a_run_ref_must_name_the_record_of_that_run(store: Store, tmp_path: Path) -> None:
    """runs/<id> naming a record of another run is refused by import and reported by fsck."""
    from pinrun.artifacts import codec
    from pinrun.artifacts.digest import Kind

    with store.batch() as batch:
        snapshot = batch.put_snapshot({"a": 1})
        record = {"format": 1, "id": "20261206T000000000-aaaaaa", "flow": "f",
                  "status": "succeeded", "inputs": snapshot, "state": snapshot,
                  "timing": None, "steps": []}
        digest = batch.put(Kind.RUN, codec.encode(record))
        batch.set_ref("runs/20261206T000000000-bbbbbb", digest)  # not its own id
    report = fsck(store)
    assert [p.kind for p in report.problems] == ["bad-ref"]
    assert "20261206T000000000-aaaaaa" in report.problems[0].detail
    path = tmp_path / "b.pinrun"
    export_bundle(store, None, path)
    with Store.open(tmp_path / "fresh", create=True) as fresh:
        with pytest.raises(BundleError, match="does not name a run record of that run"):
            import_bundle(fresh, path)
        assert fresh.refs() == {}
        assert fresh.object_count() == 0
