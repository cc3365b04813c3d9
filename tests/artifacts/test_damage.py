"""Damaged stores: fsck finds the damage, and nothing crashes or lies about it."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import lmdb
import pytest

from pinrun.artifacts.fsck import fsck
from pinrun.artifacts.fsck_child import fsck_isolated
from pinrun.artifacts.store import Store
from pinrun.errors import NoSpaceError, StoreDamagedError, StoreError
from tests.damage_trials import OUTCOMES, run_trials, table
from tests.helpers import SRC, store_held_open

PAGE = 4096
P_BRANCH = 0x01
P_LEAF = 0x02


def _pinrun(store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(SRC))
    return subprocess.run([sys.executable, "-m", "pinrun", "--store", str(store), *args],
                          capture_output=True, text=True, env=env, check=False, timeout=120)


def _filled(path: Path, values: int = 600) -> None:
    with Store.open(path, create=True) as store, store.batch() as batch:
        for n in range(values):
            batch.set_ref(f"tags/v{n}", batch.put_value({"n": n, "pad": "p" * (n % 90)}))


def _pages(data_file: Path) -> list[tuple[int, bytes]]:
    raw = data_file.read_bytes()
    return [(n, raw[n * PAGE:(n + 1) * PAGE]) for n in range(2, len(raw) // PAGE)]


def _nodes(page: bytes) -> list[int]:
    lower = struct.unpack_from("<H", page, 12)[0]
    return [struct.unpack_from("<H", page, 16 + 2 * i)[0] for i in range((lower - 16) // 2)]


def _objects_branch(data_file: Path) -> tuple[int, bytes]:
    """A branch page of the objects database (its separator keys are 32-byte digests)."""
    for number, page in _pages(data_file):
        flags = struct.unpack_from("<H", page, 10)[0]
        nodes = _nodes(page) if flags == P_BRANCH else []
        if len(nodes) > 2 and struct.unpack_from("<H", page, nodes[1] + 6)[0] == 32:
            return number, page
    raise AssertionError("no branch page of the objects database")


def _hide_keys_behind_a_branch(data_file: Path) -> None:
    """Raise one separator key of a branch page: the leaves stay whole, lookups go astray."""
    number, page = _objects_branch(data_file)
    nodes = _nodes(page)
    second = page[nodes[2] + 8:nodes[2] + 40]
    raised = (int.from_bytes(second, "big") - 1).to_bytes(32, "big")
    with data_file.open("r+b") as f:
        f.seek(number * PAGE + nodes[1] + 8)
        f.write(raised)


def test_fsck_reports_keys_a_lookup_cannot_find_as_index_damage(store_path: Path) -> None:
    """A damaged branch over intact leaves: the walk sees keys that lookups miss; fsck says so."""
    _filled(store_path)
    _hide_keys_behind_a_branch(store_path / "data.mdb")
    with Store.open(store_path, readonly=True) as store:
        report = fsck(store, structure=False)
    kinds = {p.kind for p in report.problems}
    assert "index" in kinds, report.problems
    assert all(p.kind in ("index", "missing") for p in report.problems)


def test_the_fsck_command_fails_on_index_damage(store_path: Path) -> None:
    """`pinrun fsck` exits 3 on a store whose index hides objects, where it once said ok."""
    _filled(store_path)
    _hide_keys_behind_a_branch(store_path / "data.mdb")
    result = _pinrun(store_path, "fsck")
    assert result.returncode == 3, result.stdout + result.stderr
    assert "index" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_a_crash_while_checking_becomes_store_damaged(store_path: Path) -> None:
    """A zeroed leaf makes LMDB abort the scan: fsck prints what it found and `store damaged`."""
    _filled(store_path)
    data_file = store_path / "data.mdb"
    leaf = next(n for n, page in _pages(data_file)
                if struct.unpack_from("<H", page, 10)[0] == P_LEAF and len(_nodes(page)) > 5
                and struct.unpack_from("<H", page, _nodes(page)[0] + 6)[0] == 32)
    with data_file.open("r+b") as f:
        f.seek(leaf * PAGE)
        f.write(bytes(PAGE))
    result = _pinrun(store_path, "fsck")
    assert result.returncode == 3
    assert "Traceback" not in result.stdout + result.stderr
    assert "structure" in result.stdout  # the page-level pass found it before LMDB read it
    errors = result.stderr.strip().splitlines()
    assert len(errors) <= 1
    assert all(line.startswith("pinrun: error: store damaged: ") for line in errors)


def test_fsck_isolated_agrees_with_fsck_on_a_healthy_store(store: Store) -> None:
    """The child-process check reports what the in-process one does: nothing, on a sound store."""
    store.set_ref("tags/x", store.put_snapshot({"a": 1, "b": [1, 2]}))
    report = fsck_isolated(store.path)
    assert report.ok, report.problems
    assert (report.objects_checked, report.refs_checked) == (fsck(store).objects_checked, 1)
    assert report.structure_checked
    assert report.aborted is None


def test_bad_refs_and_meta_entries_are_reported(store: Store) -> None:
    """fsck checks the refs and meta databases too: bad names, short digests, unknown keys."""
    env = store.environment
    store.set_ref("tags/good", store.put_value("kept"))

    def damage(txn: object) -> None:
        txn.put(b"tags/\xff\xfe", bytes(32), db=env.dbs["refs"])  # type: ignore[attr-defined]
        txn.put(b"tags/short", b"12345", db=env.dbs["refs"])  # type: ignore[attr-defined]
        txn.put(b"surprise", b"?", db=env.dbs["meta"])  # type: ignore[attr-defined]

    env.write(damage)
    report = fsck(store)
    assert sorted(p.kind for p in report.problems) == ["bad-ref", "bad-ref", "meta"]
    with pytest.raises(StoreDamagedError, match="holds 5 bytes, not 36"):
        store.refs()


def test_a_truncated_data_file_is_refused_at_open(store_path: Path) -> None:
    """A data.mdb shorter than its pages in use is refused before LMDB can map it (no SIGBUS)."""
    _filled(store_path)
    data_file = store_path / "data.mdb"
    os.truncate(data_file, data_file.stat().st_size // 2)
    with pytest.raises(StoreDamagedError, match="truncated"):
        Store.open(store_path)
    result = _pinrun(store_path, "runs")
    assert result.returncode == 3
    assert result.stderr.startswith("pinrun: error: store damaged: data.mdb is truncated")
    os.truncate(data_file, 0)
    with pytest.raises(StoreDamagedError, match="empty"):
        Store.open(store_path)


def test_a_lock_file_deleted_under_a_running_process_is_damage(store_path: Path) -> None:
    """lock.mdb removed while another process has the store open: damaged, not 'no store'."""
    _filled(store_path, 10)
    with store_held_open(store_path):
        (store_path / "lock.mdb").unlink()
        result = _pinrun(store_path, "stats")
        assert result.returncode == 3
        assert "lock.mdb was deleted" in result.stderr
        assert "no pinrun store" not in result.stderr
    time.sleep(0.1)
    assert _pinrun(store_path, "stats").returncode == 0  # alone again, the store opens


def test_disk_full_says_no_space_left(store: Store) -> None:
    """An LMDB disk-full error is a NoSpaceError saying so, not a raw lmdb error."""
    env = store.environment

    def full(txn: object) -> None:
        raise lmdb.DiskError("mdb_txn_commit", 28)

    with pytest.raises(NoSpaceError, match="no space left"):
        env.write(full)


def test_store_errors_survive_pickling(tmp_path: Path) -> None:
    """The new store errors keep their message and fields through pickle (verify's pools)."""
    import pickle

    for error in (StoreDamagedError(tmp_path, "a page is gone"), NoSpaceError(tmp_path)):
        copy = pickle.loads(pickle.dumps(error))
        assert (type(copy), str(copy)) == (type(error), str(error))
        assert isinstance(copy, StoreError)


@pytest.mark.slow
def test_damage_trials_never_crash_nor_pass_silently(tmp_path: Path) -> None:
    """Bit flips, zeroed pages, truncations of data.mdb: every one detected or harmless."""
    trials = run_trials(60, seed=20261206, workdir=tmp_path, runs=6)
    bad = [t for t in trials if t.outcome in ("silent", "crashed")]
    assert not bad, "\n".join(f"{t.outcome}: {t.damage}: {t.detail}" for t in bad) + \
        "\n" + table(trials)
    assert {t.outcome for t in trials} <= set(OUTCOMES)
    assert any(t.outcome == "detected" for t in trials)
