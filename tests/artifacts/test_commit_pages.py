"""What a commit writes: the store's counters ride in LMDB's main database, so a
commit of objects and refs dirties no page of the meta database; and a durable store's
file is kept written ahead of its pages, so a commit rarely makes it longer."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import lmdb

from pinrun.artifacts.batch import COUNTER_KEYS
from pinrun.artifacts.compact import compact
from pinrun.artifacts.digest import Digest
from pinrun.artifacts.lmdb_meta import read_head
from pinrun.artifacts.maintenance import fsck, stats
from pinrun.artifacts.store import Store

_U64 = struct.Struct("<Q")


def _database_records(store: Store) -> dict[bytes, bytes]:
    """The main database's record of each named database (its root page, its counts)."""
    env = store.environment
    with env.read() as txn:
        return {name: txn.get(name, db=env.main_db) for name in (b"objects", b"refs", b"meta")}


def test_a_commit_of_objects_and_refs_leaves_the_meta_database_untouched(store: Store) -> None:
    """A batch of objects and a ref rewrites the objects and refs databases, never meta's."""
    with store.batch() as batch:
        batch.set_ref("runs/first", batch.put_value({"warm": 1}))
    before = _database_records(store)
    with store.batch() as batch:
        batch.set_ref("runs/first", batch.put_value({"step": 2}))
    after = _database_records(store)
    assert after[b"meta"] == before[b"meta"]
    assert after[b"objects"] != before[b"objects"]
    assert after[b"refs"] != before[b"refs"]


def test_counters_are_kept_in_the_main_database(store: Store) -> None:
    """What writers offer is counted in the main database, and nothing of it in meta."""
    store.put_value("one")
    store.put_value("one")  # offered twice, stored once
    env = store.environment
    with env.read() as txn:
        in_main = [txn.get(key, db=env.main_db) for key in COUNTER_KEYS]
        in_meta = [txn.get(key, db=env.dbs["meta"]) for key in COUNTER_KEYS]
    assert in_meta == [None, None]
    assert in_main[0] is not None
    assert _U64.unpack(in_main[0])[0] == 2
    assert store.counters()["offered_objects"] == 2


def test_counters_an_older_pinrun_kept_in_meta_add_to_the_totals(tmp_path: Path) -> None:
    """A store whose meta database holds counters (as older pinruns wrote them) reports
    their sum with the new ones, and checks out clean."""
    path = tmp_path / "old"
    with Store.open(path, create=True) as store:
        env = store.environment

        def legacy(txn: Any) -> None:
            for key, amount in zip(COUNTER_KEYS, (40, 4000), strict=True):
                txn.put(key, _U64.pack(amount), db=env.dbs["meta"])

        env.write(legacy)
        raw = b"x" * 50
        store.put_blob(raw)
        assert store.counters() == {"offered_objects": 41, "offered_raw_bytes": 4050}
        assert stats(store).offered_objects == 41
        assert fsck(store).ok


def test_compaction_and_the_page_check_keep_the_counters(store: Store) -> None:
    """A compacted store keeps its counters, and LMDB's page check accepts them."""
    for n in range(20):
        store.put_value({"n": n, "pad": "p" * n})
    counted = store.counters()
    compact(store)
    with Store.open(store.path) as reopened:
        assert reopened.counters() == counted
        report = fsck(reopened)
        assert report.ok
        assert report.structure_checked


def test_raw_lmdb_sees_the_counters_beside_the_named_databases(store: Store) -> None:
    """The main database holds the three named databases and the counters, nothing else."""
    store.put_value("x")
    path = store.path
    store.close()
    env = lmdb.open(str(path), readonly=True, lock=False, max_dbs=5, subdir=True)
    try:
        with env.begin() as txn:
            keys = sorted(key for key, _ in txn.cursor())
    finally:
        env.close()
    assert keys == sorted([b"meta", b"objects", b"refs", *COUNTER_KEYS])


def _sizes(store: Store) -> tuple[int, int]:
    """(bytes of the data file, bytes of its pages in use)."""
    data_file = store.path / "data.mdb"
    return data_file.stat().st_size, read_head(data_file).used_bytes


def test_a_durable_store_keeps_its_file_written_ahead_of_its_pages(store: Store) -> None:
    """After each durable commit the file reaches past its last page in use, so 100 small
    commits make it longer only once or twice (LMDB alone: 7 times)."""
    lengths = []
    for n in range(100):
        store.put_value({"step": n, "pad": "x" * 300})
        size, used = _sizes(store)
        assert size > used
        lengths.append(size)
    assert len(set(lengths)) <= 3
    assert fsck(store).ok


def test_the_file_written_ahead_grows_with_the_store(store: Store) -> None:
    """A store that outgrows what was written ahead is written ahead again (a commit
    larger than what is ahead makes the file longer itself; the next one writes ahead
    again), every object stays readable and the page check passes over the zeros."""
    blobs = [os.urandom(200_000) for _ in range(12)]  # incompressible: 2.4 MB of pages
    lengths = set()
    digests = []
    for n, blob in enumerate(blobs):
        digests.append(store.put_value(blob))
        store.put_value(n)  # a small commit after the large one
        size, used = _sizes(store)
        assert size - used >= 32 * 1024
        lengths.add(size)
    assert used > 2_400_000
    assert len(lengths) > 1
    assert [store.get_value(d) for d in digests] == blobs
    report = fsck(store)
    assert report.ok
    assert report.structure_checked


def test_a_store_opened_not_durable_writes_nothing_ahead(tmp_path: Path) -> None:
    """Only a durable store writes ahead (a store that is not synced gains nothing by it)."""
    with Store.open(tmp_path / "fast", create=True, durable=False) as fast:
        fast.put_value("x")
        size, used = _sizes(fast)
    assert size == used


def test_writers_in_two_processes_never_lose_a_page_to_the_zeros(tmp_path: Path) -> None:
    """Two processes committing into one durable store in turns (each writing ahead when
    its turn needs it) keep every object of both, and the store checks out clean."""
    path = tmp_path / "shared"
    Store.open(path, create=True).close()
    script = (
        "import sys; from pinrun.artifacts.store import Store\n"
        "with Store.open(sys.argv[1]) as s:\n"
        "    for n in range(40):\n"
        "        s.put_blob(sys.argv[2].encode() * (n * 997 + 5000))\n"
        "        print(s.put_value([sys.argv[2], n]).hex, flush=True)\n")
    children = [subprocess.Popen([sys.executable, "-c", script, str(path), tag],
                                 stdout=subprocess.PIPE, text=True) for tag in ("a", "b")]
    outputs = [child.communicate(timeout=120)[0].split() for child in children]
    assert [child.returncode for child in children] == [0, 0]
    with Store.open(path) as store:
        for tag, lines in zip(("a", "b"), outputs, strict=True):
            assert [store.get_value(Digest.from_hex(h)) for h in lines] == \
                [[tag, n] for n in range(40)]
        assert fsck(store).ok
